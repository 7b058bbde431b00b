"""``pysvm fuzz`` campaigns: shards on the sweep executors, findings and shards as Parquet.

The planted bug (``--plant``, :mod:`pysvm.fuzz.planted`) is applied inside each
worker, so a finding proves the worker really ran the buggy model: on the
local process pool and on a local Ray cluster. Failures that shrink to the
same case are one finding.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from gpuvm_core.fuzz import Failure
from pysvm.cli.main import main
from pysvm.fuzz.campaign import Findings, ShardTask, run_shard_task, vector_key
from pysvm.fuzz.planted import PLANTED, planted
from pysvm.fuzz.target import check_events, load_trace
from pysvm.xe import garbage_collector

PLANT = "gc-skips-set_default_attr"
COMMON = ["--seed", "0", "--max-steps", "40", "--profile", "6.18", "--shrink-seconds", "5",
          "-q"]


def _tables(d: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return (pq.read_table(d / "findings.parquet").to_pylist(),
            pq.read_table(d / "shards.parquet").to_pylist())


def _check_campaign(d: Path, out: Path, shards: int, max_cases: int) -> list[dict[str, Any]]:
    findings, shard_rows = _tables(d)
    assert sorted(r["shard"] for r in shard_rows) == list(range(shards))
    assert sum(r["cases"] for r in shard_rows) == max_cases     # every case index ran once
    assert all(r["steps"] > r["cases"] * 10 and r["seconds"] > 0 for r in shard_rows)
    # Deduplicated: one row per distinct shrunk case, occurrences add up to the failures.
    assert findings, "the planted bug was not found"
    assert len({r["vector_key"] for r in findings}) == len(findings)
    assert sum(r["occurrences"] for r in findings) == sum(r["failures"] for r in shard_rows)
    for r in findings:
        assert r["target"] == "svm" and r["kind"] == "attrs" and r["plant"] == PLANT
        assert r["seed"] == 0 and r["case"] % shards == r["shard"]
        # The row's shrunk case is the written trace, and it reproduces the failure ...
        path = Path(r["path"])
        assert path.parent == out and path.read_text() .count("\n") == r["shrunk_steps"]
        with planted(PLANT):
            again = check_events(load_trace(path))
        assert again is not None and again.kind == "attrs"
        # ... only with the bug planted.
        assert check_events(load_trace(path)) is None
    return findings


@pytest.mark.pure_model   # plants a bug
def test_campaign_on_a_process_pool_finds_the_planted_bug(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    d, out = tmp_path / "data", tmp_path / "failures"
    rc = main(["fuzz", *COMMON, "--seconds", "120", "--max-cases", "12", "--jobs", "2",
               "--executor", "process", "--data", str(d), "--out", str(out), "--plant", PLANT])
    text = capsys.readouterr().out
    assert rc == 1, text
    findings = _check_campaign(d, out, shards=2, max_cases=12)
    assert f"{len(findings)} distinct finding(s) (seed 0, 2 shards)" in text
    assert f"findings.parquet ({len(findings)} rows)" in text
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]
    # The plant was applied in the workers only: this process's model is untouched.
    assert garbage_collector.set_default_attr.__name__ == "set_default_attr"


def test_clean_campaign_writes_empty_findings_and_shard_rows(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    d = tmp_path / "data"
    assert main(["fuzz", *COMMON, "--seconds", "120", "--max-cases", "6", "--shards", "3",
                 "--data", str(d), "--out", str(tmp_path / "f")]) == 0
    findings, shard_rows = _tables(d)
    assert findings == [] and len(shard_rows) == 3
    assert [r["cases"] for r in sorted(shard_rows, key=lambda r: r["shard"])] == [2, 2, 2]
    assert "0 failures, 0 distinct finding(s)" in capsys.readouterr().out
    assert not (tmp_path / "f").exists()


def test_a_seed_past_two_to_the_63_fits_the_tables(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # A text seed hashes to any 64-bit value ('session22' to 17995806749198228670): the
    # seed columns are unsigned, so the tables of such a campaign are written (a signed
    # column lost a 15-minute campaign's tables at the end).
    d = tmp_path / "data"
    args = [a if a != "0" else "session22" for a in COMMON]
    assert main(["fuzz", *args, "--seconds", "60", "--max-cases", "2", "--shards", "2",
                 "--data", str(d), "--out", str(tmp_path / "f")]) == 0
    findings, shard_rows = _tables(d)
    assert findings == [] and [r["seed"] for r in shard_rows] == [17995806749198228670] * 2
    assert "seed 17995806749198228670 (from 'session22')" in capsys.readouterr().out
    rows = Findings()
    task = ShardTask("svm", seed=(1 << 64) - 1, shard=0, shards=1, seconds=1)
    rows.add(task, {"cases": 1, "steps": 2, "seconds": 0.1, "found": [
        {"case": 0, "failure": "x", "kind": "attrs", "shrunk_case": {"events": []},
         "shrunk_failure": Failure(0, "attrs", "x"), "shrunk_steps": 0}]})
    from pysvm.fuzz.campaign import FINDING_COLUMNS, write_table
    write_table(rows.finding_rows(), FINDING_COLUMNS, tmp_path / "f.parquet")
    assert pq.read_table(tmp_path / "f.parquet").to_pylist()[0]["seed"] == (1 << 64) - 1


def test_same_shrunk_case_is_one_finding() -> None:
    task = ShardTask("svm", seed=3, shard=1, shards=2, seconds=1)
    case = {"events": [{"ev": "gc", "vm": "vm0"}]}
    other = {"events": [{"ev": "gc", "vm": "vm1"}]}
    f = Failure(0, "attrs", "gc: x")

    def found(index: int, c: dict[str, Any]) -> dict[str, Any]:
        return {"case": index, "failure": "step 9: attrs: gc: x", "kind": "attrs",
                "shrunk_case": c, "shrunk_failure": f, "shrunk_steps": 1}

    fs = Findings()
    assert fs.add(task, {"cases": 4, "steps": 40, "seconds": 0.5,
                         "found": [found(7, case), found(3, case)]}) == [vector_key("svm", case)]
    assert fs.add(task, {"cases": 1, "steps": 9, "seconds": 0.1,
                         "found": [found(5, other)]}) == [vector_key("svm", other)]
    rows = fs.finding_rows()
    assert [(r["case"], r["occurrences"]) for r in rows] == [(3, 2), (5, 1)]  # first case kept
    assert rows[0]["shrunk"] == '{"ev":"gc","vm":"vm0"}\n'
    assert [s["failures"] for s in fs.shards] == [2, 1]
    assert vector_key("svm", case) != vector_key("gpuvm", case)


@pytest.mark.pure_model   # plants a bug
def test_shard_task_runs_its_slice_and_restores_the_model() -> None:
    res = run_shard_task(ShardTask("svm", seed=0, shard=1, shards=3, seconds=60, max_cases=9,
                                   max_steps=20, plant=PLANT, profile="6.18"))
    assert res["cases"] == 3 and res["shard"] == 1
    assert all(f["case"] in (1, 4, 7) for f in res["found"])
    assert garbage_collector.set_default_attr.__name__ == "set_default_attr"
    assert set(PLANTED) >= {PLANT}


def test_gpuvm_target_campaign(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "data"
    assert main(["fuzz", "--target", "gpuvm", "--seconds", "60", "--max-cases", "20",
                 "--shards", "2", "--data", str(d), "-q"]) == 0
    findings, shard_rows = _tables(d)
    assert findings == [] and {r["target"] for r in shard_rows} == {"gpuvm"}
    assert sum(r["cases"] for r in shard_rows) == 20


@pytest.mark.parametrize(("argv", "msg"), [
    (["--exclude-event", "nosuch"], "--exclude-event: unknown event 'nosuch'"),
    (["--exclude-event", "munmapp"], "(did you mean 'munmap'?)"),
    (["--out", "-"], "'-' (standard output) cannot hold them"),
    (["--data", "-"], "'-' cannot hold them"),
    (["--plant", PLANT], "--plant needs a campaign"),
    (["--plant", PLANT, "--target", "gpuvm", "--data", "x"], "use --target svm or all"),
])
@pytest.mark.pure_model   # plants a bug
def test_campaign_options_refused(argv: list[str], msg: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pysvm fuzz: error: ") and msg in err


@pytest.mark.pure_model   # plants a bug
def test_campaign_on_a_local_ray_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    ray = pytest.importorskip("ray", reason="Ray is in the test extra")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    d, out = tmp_path / "data", tmp_path / "failures"
    # A local cluster of 2 CPUs (2 worker processes) started for this campaign alone.
    rc = main(["fuzz", *COMMON, "--seconds", "120", "--max-cases", "12", "--executor", "ray",
               "--jobs", "2", "--data", str(d), "--out", str(out), "--plant", PLANT])
    text = capsys.readouterr().out
    assert rc == 1, text
    assert "2 shard(s) on ray" in text
    findings = _check_campaign(d, out, shards=2, max_cases=12)
    # Same seed, same shards: the same cases fail, per shard, as on the process pool.
    # (Not compared by shrunk vector: shrinking is bounded by --shrink-seconds, so on a
    # loaded machine it may stop at different points and deduplicate differently.)
    d2 = tmp_path / "data2"
    main(["fuzz", *COMMON, "--seconds", "120", "--max-cases", "12", "--jobs", "2",
          "--data", str(d2), "--out", str(tmp_path / "f2"), "--plant", PLANT])

    def per_shard(rows: list[dict[str, Any]]) -> list[tuple[Any, Any, Any]]:
        return sorted((r["shard"], r["cases"], r["failures"]) for r in rows)
    assert per_shard(_tables(d)[1]) == per_shard(_tables(d2)[1])
    assert {r["kind"] for r in findings} == {r["kind"] for r in _tables(d2)[0]}
    workers = {r["worker"] for r in _tables(d)[1]}
    assert all(w.split(":")[1] != str(os.getpid()) for w in workers)
    assert not ray.is_initialized()


@pytest.mark.parametrize("extra", [[], ["--data", "DATA"]])
def test_sigint_during_fuzz_jobs_2_prints_no_traceback(tmp_path: Path, extra: list[str]
                                                       ) -> None:
    extra = [str(tmp_path / "data") if a == "DATA" else a for a in extra]
    exe = Path(sys.executable).with_name("pysvm")
    proc = subprocess.Popen([str(exe), "fuzz", "--seconds", "120", "--jobs", "2",
                             "--out", str(tmp_path / "f"), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=tmp_path)
    time.sleep(5)          # the workers are up and running cases
    os.killpg(proc.pid, signal.SIGINT)         # like Ctrl-C: the whole process group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err, err
    assert "interrupted" in err
    if extra:
        assert "no output file was written" in err or "kept" in err
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
