"""The pysvm console script: help, conformance, and one-line errors for bad input."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pysvm.cli import COMMANDS, main

DATA = Path(__file__).parent / "data" / "gpuvm-public.jsonl.gz"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pysvm", *args], capture_output=True, text=True,
                          timeout=300)


def test_help_lists_every_command() -> None:
    res = run_cli("--help")
    assert res.returncode == 0
    for name in COMMANDS:
        assert name in res.stdout


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def _small_file(tmp_path: Path, n: int = 40) -> Path:
    out = tmp_path / "small.jsonl"
    with gzip.open(DATA, "rt") as src, out.open("w") as dst:
        for _, line in zip(range(n), src, strict=False):
            dst.write(line)
    return out


def test_conformance_counts_and_final_line(tmp_path: Path) -> None:
    res = run_cli("conformance", str(_small_file(tmp_path)), "--impl", "both")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().splitlines()[-1] == "80 passed, 0 failed"
    assert "doc-map" in res.stdout


def test_conformance_reports_a_wrong_vector(tmp_path: Path) -> None:
    # Corrupt the kernel's recorded state of one case: the replay must notice.
    with gzip.open(DATA, "rt") as fh:
        case = json.loads(fh.readline())
    case["steps"][0]["state"][0][3] += 4096
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(case) + "\n")
    res = run_cli("conformance", str(bad))
    assert res.returncode == 1
    assert res.stdout.strip().splitlines()[-1] == "0 passed, 1 failed"
    assert "state differs" in res.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["conformance", "/no/such/file.jsonl"], "no such file"),
        (["conformance", "--impl", "nope"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line(args: list[str], needle: str) -> None:
    res = run_cli(*args)
    assert res.returncode == 2
    assert needle in res.stderr
    assert "Traceback" not in res.stderr


def test_garbage_file_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "garbage.jsonl"
    p.write_text("{not json\n")
    res = run_cli("conformance", str(p))
    assert res.returncode == 2
    assert "not JSON" in res.stderr and "Traceback" not in res.stderr
