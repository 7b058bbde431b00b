"""Cost growth: W1 per-request time at the largest N over the smallest (target <= 3x).

The benchmark times W1 at the largest ``--bench-sizes`` N (group ``growth W1``,
one entry per core path); the smallest N is timed once with the same clock in
the same process, and ``extra_info["growth"]`` holds the ratio (the kernel's
own growth, measured in the same run, is in ``pysvm bench --kernel-tree`` and
``python -m benchmarks.report --kernel-tree``). Nothing here asserts on time:
the ratio is reported, the docs discuss it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import gpuvm_core
from gpuvm_core.workloads import new_vm, run_batch, run_single, workload


@pytest.mark.parametrize("path", ["core-single", "core-batch"])
def test_growth_w1(benchmark: Any, request: pytest.FixtureRequest,
                   settings: dict[str, int], path: str) -> None:
    from benchmarks.conftest import bench_sizes

    sizes = bench_sizes(request.config)
    if len(sizes) < 2:
        pytest.skip("growth needs two sizes (--bench-sizes)")
    lo, hi = sizes[0], sizes[-1]
    m = settings["m"]
    loop = run_batch if path == "core-batch" else run_single
    benchmark.group = f"growth W1 N={lo:,} -> N={hi:,}"

    def small() -> float:
        vm, reqs = new_vm(gpuvm_core.GpuVm, lo, 1), workload(1, lo, m)
        t0 = time.perf_counter()
        loop(vm, reqs)
        return (time.perf_counter() - t0) * 1e9 / m

    lo_ns = min(small() for _ in range(settings["rounds"]))
    reqs = workload(1, hi, m)
    benchmark.pedantic(lambda vm: loop(vm, reqs),
                       setup=lambda: ((new_vm(gpuvm_core.GpuVm, hi, 1),), {}),
                       rounds=settings["rounds"], iterations=1, warmup_rounds=0)
    assert lo_ns > 0
    if benchmark.stats is None:  # --benchmark-disable: ran once, untimed
        return
    hi_ns = benchmark.stats.stats.min * 1e9 / m
    benchmark.extra_info.update({"ns_per_request_small_n": lo_ns, "ns_per_request_large_n": hi_ns,
                                 "growth": hi_ns / lo_ns, "n_small": lo, "n_large": hi})
