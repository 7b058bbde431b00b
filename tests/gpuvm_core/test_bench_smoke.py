"""`pysvm bench` at a tiny size: the CLI, its table and its JSON cannot rot."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pysvm.cli.main import main


def test_bench_tiny_run_prints_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, "-m", "pysvm", "bench", "--sizes", "50,1e2",
                          "--m", "300", "--ref-m", "100", "--clock", "cpu", "--json", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert any("ns/request" in ln and "x vs ref" in ln for ln in lines)
    for w in ("W1 map_random", "W2 unmap_random", "W3 madvise_random", "W4 lookup"):
        table = [ln for ln in lines if re.match(r"\s*[\d,]+\s+W\d ", ln)]
        assert sum(w in ln for ln in table) == 6  # 2 sizes x (single, batch, reference)
        assert sum(ln.strip().startswith(w + ":") for ln in lines) == 1  # its growth line
    assert "Bytes per mapping" in res.stdout and "Growth of ns/request" in res.stdout
    data = json.loads(out.read_text())
    assert data["clock"] == "cpu"
    rows = data["rows"]
    assert len(rows) == 24
    assert {r["path"] for r in rows} == {"single", "batch", "reference"}
    assert all(r["ns_per_request"] > 0 for r in rows)
    # every core row has a ratio to the reference; same final VA count on both core paths
    by_key = {(r["n"], r["workload"], r["path"]): r for r in rows}
    for (n, w, p), r in by_key.items():
        if p != "reference":
            assert r["vs_reference"] > 0
        if p == "single":
            assert r["final_len"] == by_key[n, w, "batch"]["final_len"]
    mem = data["bytes_per_mapping"]
    assert set(mem) == {"core", "reference"} and set(mem["core"]) == {"50", "100"}
    core = mem["core"]["100"]
    assert core["vas_populate"] == 100 and core["vas_w1"] > 0
    # the structure's own count: 36 B per slot (addr, range, obj, offset, id) plus index arrays
    assert 36 <= core["nbytes_populate"] < 100 and core["nbytes_w1"] >= 36
    assert mem["reference"]["100"]["nbytes_populate"] is None


def test_bench_markdown_subset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--sizes", "1e3", "--workloads", "w4", "--m", "200", "--ref-m", "0",
                 "--repeat", "2", "--no-memory", "--markdown", "--no-progress"]) == 0
    out = capsys.readouterr().out
    table = [ln for ln in out.splitlines() if ln.startswith("|")]
    assert len(table) == 4  # header, rule, single, batch
    assert "| 1,000 | W4 lookup | single | 200 |" in table[2]
    # no kernel tree given: no kernel column and no kernel figure from anywhere else
    assert "kernel column absent" in out and "vs kernel" not in table[0]


@pytest.mark.parametrize(("argv", "msg"), [
    (["--sizes", "abc"], "must be a number"),
    (["--sizes", "1.5"], "whole number"),
    (["--workloads", "W9"], "unknown workload"),
    (["--m", "0"], "--m must be"),
    (["--repeat", "0"], "--repeat must be"),
])
def test_bench_bad_input_is_one_line(argv: list[str], msg: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", *argv, "--no-memory", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pysvm bench: error:") and msg in err and "\n" not in err


def test_bench_bad_json_path_refused_before_measuring(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A directory as --json is refused up front, not after minutes of benchmarking."""
    from pysvm.cli import bench

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("measured before checking --json")

    monkeypatch.setattr(bench, "measure", boom)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()
    assert main(["bench", "--sizes", "1e6", "--no-progress", "--json", "adir"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["pysvm bench: error: is a directory, not a file: adir"]
