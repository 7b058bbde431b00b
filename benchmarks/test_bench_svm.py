"""SVM-layer benchmarks: trace replays through the whole model (pysvm), not the core.

* ``first_touch_1gib``: :func:`benchmarks.svm_traces.first_touch` at 1 GiB: the CPU
  writes 1 GiB of fresh memory, the GPU writes it (512 first-touch faults of 2 MiB, each
  migrated to VRAM), reads it back, increments it with atomics; then munmap.
* ``default_sim``: the trace ``pysvm simulate --record`` writes with its defaults
  (2,583 events, ~23,000 GPU faults, VRAM pressure on two devices), recorded once per
  session.

Each round replays the trace on a fresh :class:`pysvm.trace.engine.Engine` (made in
pytest-benchmark's ``setup`` hook, not timed) and checks the replay's counters, so a
faster model that changed behaviour fails instead of being timed. The file also runs
against an older checkout (its ``pysvm.trace.Engine`` and ``pysvm.cli``) so the
ratios in docs/benchmarks-svm.md come from one session. Use
``--benchmark-timer time.process_time`` on a shared machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from benchmarks.svm_traces import default_sim, first_touch

try:
    from pysvm.trace.engine import Engine
except ImportError:             # an older checkout: pysvm.trace was one module
    from pysvm.trace import Engine  # type: ignore[attr-defined,no-redef]


def _replay(engine: Any, lines: list[bytes]) -> dict[str, int]:
    errors = 0
    for out in engine.run(lines):
        errors += out["result"] != "ok"
    summary: dict[str, int] = engine.summary()
    assert summary["errors"] == errors
    return summary


def _bench(benchmark: Any, lines: list[bytes], group: str) -> dict[str, int]:
    benchmark.group = group
    results: list[dict[str, int]] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (Engine(),), {}

    def target(engine: Any) -> None:
        results.append(_replay(engine, lines))

    benchmark.pedantic(target, setup=setup, rounds=3, iterations=1, warmup_rounds=0)
    benchmark.extra_info["events"] = len(lines)
    if benchmark.stats is not None:       # None under --benchmark-disable
        benchmark.extra_info["events_per_s"] = len(lines) / benchmark.stats.stats.median
    assert all(r == results[0] for r in results), "replays of one trace differ"
    return results[0]


@pytest.fixture(scope="module")
def sim_trace(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """The default simulation's trace: $PYSVM_BENCH_SIM_TRACE if set (so two checkouts
    replay the very same file), else recorded now."""
    given = os.environ.get("PYSVM_BENCH_SIM_TRACE")
    path = Path(given) if given else tmp_path_factory.mktemp("svm") / "sim.jsonl"
    if not given:
        default_sim(path)
    return path.read_bytes().splitlines()


def test_first_touch_1gib(benchmark: Any) -> None:
    lines = [ln.encode() for ln in first_touch(1)]
    s = _bench(benchmark, lines, "svm first touch 1 GiB")
    assert s["errors"] == 0
    assert s["faults"] == 512 and s["retries"] == 0
    assert s["migrations_to_vram"] == 512 and s["bytes_to_vram"] == 1 << 30
    assert s["migrations_to_system"] == 0


def test_default_sim(benchmark: Any, sim_trace: list[bytes]) -> None:
    s = _bench(benchmark, sim_trace, "svm default simulation trace")
    assert s["events"] == len(sim_trace)
    # The recorded run's own counters (its summary line is the replay's, by design).
    assert s["faults"] > 10_000 and s["migrations_to_vram"] > 10_000, json.dumps(s)
