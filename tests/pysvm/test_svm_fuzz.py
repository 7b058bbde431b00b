"""``pysvm fuzz``: the SVM target runs clean, finds planted bugs, writes replayable traces.

Each planted bug is a realistic mistake in the SVM layer; the fuzzer must find it
within a small, fixed number of cases (seeded, so the test is deterministic), shrink
it, and write a trace that ``pysvm replay`` replays and ``pysvm fuzz --replay``
reports as the same kind of failure.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from gpuvm_core.fuzz import run
from pysvm.cli.main import main
from pysvm.fuzz.planted import planted
from pysvm.fuzz.target import SvmTarget, SvmTargetFactory, check_events, load_trace


def test_clean_run_every_check_passes() -> None:
    summary = run(SvmTargetFactory(max_steps=40), seconds=600,
                  seed=20260, max_cases=40, out_dir=None, progress=None)
    assert summary.failures == 0, summary.found
    assert summary.cases == 40 and summary.steps > 40 * 10


def test_rmmod_keeps_the_pagemap_invariants() -> None:
    """rmmod unbinds first; the destroy work that queues must not outlive the module."""
    events: list[dict[str, Any]] = [{"ev": "device", "name": "gpu1", "vram_mib": 1},
              {"ev": "rmmod", "device": "gpu1"}]
    assert check_events(events) is None


def _first_failure(target: SvmTarget, seed: str, limit: int) -> tuple[Any, Any]:
    for i in range(limit):
        case = target.make_case(random.Random(f"{seed}:{i}"))
        f = target.run_case(case)
        if f is not None:
            return case, f
    raise AssertionError(f"planted bug not found in {limit} cases")


@pytest.mark.parametrize(("bug", "kind"), [
    ("gc-skips-set_default_attr", "attrs"),
    ("get_pages-drops-a-page", "invariant"),
    ("fast-path-keeps-old-seqno", "livelock"),
    ("eviction-loses-a-value", "data"),
])
@pytest.mark.pure_model   # plants a bug
def test_planted_bug_is_found_and_replayable(bug: str, kind: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    # The bugs are pysvm.fuzz.planted's: the same ones a campaign plants in its workers.
    with planted(bug):
        target = SvmTarget(max_steps=40)
        case, failure = _first_failure(target, "planted", 60)
        assert failure.kind == kind, failure
        small, small_f = target.shrink(case, failure, deadline=float("inf"))
        assert small_f.kind == kind and len(small["events"]) <= len(case["events"])
        path = target.save(small, small_f, tmp_path, "planted")
        assert path.read_text().count("\n") == len(small["events"])
        assert str(small_f) in path.with_suffix(".txt").read_text()
        # The written trace reproduces the failure with the checks on...
        again = check_events(load_trace(path))
        assert again is not None and again.kind == kind
        assert main(["fuzz", "--replay", str(path)]) == 1
        assert f"FAIL at event {again.step}: {kind}" in capsys.readouterr().out
        # ...and replays as an ordinary trace.
        assert main(["replay", str(path)]) == 0
    # Without the planted bug the same trace passes every check.
    assert check_events(load_trace(path)) is None


@pytest.mark.pure_model   # plants a bug
def test_runner_reports_seed_and_writes_the_case(tmp_path: Path) -> None:
    with planted("gc-skips-set_default_attr"):
        summary = run(SvmTargetFactory(max_steps=40, profile="6.18"),
                      seconds=600, seed=7, max_cases=60, out_dir=tmp_path, shrink_seconds=20,
                      progress=None)
    assert summary.failures == 1
    found = summary.found[0]
    assert found["seed"] == 7 and "attrs" in found["failure"]
    assert Path(found["path"]).exists() and found["path"].startswith(str(tmp_path))


def test_cli_fuzz_summary_line_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", "--seconds", "30", "--seed", "5", "--max-cases", "3", "-q"]) == 0
    out = capsys.readouterr().out
    assert "svm: 3 cases" in out and "0 failures (seed 5" in out
    with pytest.raises(SystemExit) as e:      # an argparse type error: usage exit
        main(["fuzz", "--seconds", "0"])
    assert e.value.code == 2
    assert "--seconds: must be a finite number > 0" in capsys.readouterr().err


def test_cases_are_deterministic_per_seed() -> None:
    t = SvmTarget()
    a = t.make_case(random.Random("9:4"))
    b = t.make_case(random.Random("9:4"))
    assert a == b
    assert t.case_steps(a) == len(a["events"]) > 10
