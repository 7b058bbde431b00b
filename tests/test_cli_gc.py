"""The CLI raises CPython's collector thresholds while a command runs, and only then."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from pysvm.cli import main as cli_main


def test_thresholds_raised_during_a_command_and_restored_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int, int]] = []
    real_run = cli_main.replay.run

    def spy(args: object) -> int:
        seen.append(gc.get_threshold())
        return int(real_run(args))

    trace = tmp_path / "t.jsonl"
    trace.write_text(json.dumps({"ev": "mmap", "addr": 1 << 32, "size": 1 << 21}) + "\n")
    before = gc.get_threshold()
    monkeypatch.setattr(cli_main.replay, "run", spy)
    assert cli_main.main(["replay", str(trace)]) == 0
    assert seen == [cli_main._GC_THRESHOLDS]
    assert gc.get_threshold() == before


def test_thresholds_restored_when_the_command_fails(tmp_path: Path) -> None:
    before = gc.get_threshold()
    assert cli_main.main(["replay", str(tmp_path / "missing.jsonl")]) == 2
    assert gc.get_threshold() == before
