"""The SVM traces in tests/pysvm/traces/svm_*.jsonl.

Each replays byte for byte to its ``.expected.jsonl`` (regenerate with
``pysvm replay tests/pysvm/traces/svm_NAME.jsonl > tests/pysvm/traces/svm_NAME.expected.jsonl``
after a deliberate behaviour change, and review the diff), and passes every check
of ``pysvm fuzz --replay`` (shadow data, invariants, pagemap lifetimes, errnos).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pysvm.cli.main import main
from pysvm.fuzz.target import check_events, load_trace

TRACES = Path(__file__).parent / "traces"
SVM_TRACES = sorted(TRACES.glob("svm_*.jsonl"))
SVM_TRACES = [p for p in SVM_TRACES if not p.name.endswith(".expected.jsonl")]


def test_there_are_svm_traces() -> None:
    names = {p.stem for p in SVM_TRACES}
    assert {"svm_partial_munmap", "svm_inject_points", "svm_newest_gc_widen"} <= names


@pytest.mark.parametrize("path", SVM_TRACES, ids=lambda p: p.stem)
def test_trace_replays_to_its_expected_output(path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(path)]) == 0
    got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    want = [json.loads(line) for line in
            path.with_name(path.stem + ".expected.jsonl").read_text().splitlines()]
    assert got == want


@pytest.mark.parametrize("path", SVM_TRACES, ids=lambda p: p.stem)
def test_trace_passes_every_fuzz_check(path: Path) -> None:
    assert check_events(load_trace(path)) is None
