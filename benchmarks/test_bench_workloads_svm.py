"""Each ``pysvm simulate --workload`` pattern at a fixed size through the SVM model.

The figure is the wall time of one whole run (setup, the pattern, teardown) on a
fresh :class:`pysvm.World`; ``extra_info`` holds the events, events per second and
the counters, which must be the same in every round (a faster model must not change
them). The size is ``PYSVM_BENCH_WORKLOAD_MIB`` (default 64 MiB; 1024 is the size
docs/workloads.md reports); ``--benchmark-disable`` runs each once, untimed.

    pytest benchmarks/test_bench_workloads_svm.py --benchmark-group-by=group
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from pysvm.sim.workloads import WORKLOADS, WorkloadConfig, run_workload

SIZE_MIB = int(os.environ.get("PYSVM_BENCH_WORKLOAD_MIB", "64"))


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_workload_svm(benchmark: Any, name: str) -> None:
    cfg = WorkloadConfig(name, size_mib=SIZE_MIB)
    summaries: list[dict[str, int]] = []

    def once() -> None:
        res = run_workload(cfg)
        assert res.ok, (res.mismatches[:3], res.unexpected[:3])
        summaries.append(res.engine_summary)

    benchmark.group = f"SVM workloads {SIZE_MIB} MiB"
    benchmark.pedantic(once, rounds=int(os.environ.get("PYSVM_BENCH_ROUNDS", "1")),
                       iterations=1)
    assert all(s == summaries[0] for s in summaries)
    s = summaries[0]
    benchmark.extra_info.update({
        "size_mib": SIZE_MIB, "events": s["events"], "faults": s["faults"],
        "bytes_to_vram": s["bytes_to_vram"], "bytes_to_system": s["bytes_to_system"]})
