"""populate(N) cost and resident memory per mapping, per implementation.

Times the untimed-elsewhere populate (N append-only maps in address order;
the kernel's anchor: ~86 ns/request at N=1e3, ~270 ns at 1e5 and 1e6) and
records in ``extra_info`` the bytes per mapping after populate(N) and after
W1 (:func:`gpuvm_core.workloads.memory_per_mapping`: the RSS growth of a
*fresh* child process that builds its request arrays first and feeds the VM
in small slices, so harness arrays are not counted; plus the core's exact
``nbytes``). The kernel's whole-process peak RSS was 123.8 MiB at N=1e6
(~130 B/mapping upper bound).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import gpuvm_core
from benchmarks.peers import IntervalTreeVm
from gpuvm_core.workloads import VM_RANGE, memory_per_mapping, populate, run_batch, run_single


@pytest.mark.parametrize("impl", ["core-single", "core-batch", "reference", "intervaltree"])
def test_populate(benchmark: Any, impl: str, n: int) -> None:
    benchmark.group = f"populate N={n:,}"
    reqs = populate(n)
    factory: Any = {"reference": gpuvm_core.RefGpuVm, "intervaltree": IntervalTreeVm}.get(
        impl, gpuvm_core.GpuVm)
    loop = run_batch if impl == "core-batch" else run_single
    vms: list[Any] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        vms.clear()
        return (factory(0, VM_RANGE),), {}

    def target(vm: Any) -> None:
        loop(vm, reqs)
        vms.append(vm)

    benchmark.pedantic(target, setup=setup, rounds=1 if n >= 100_000 else 3, iterations=1)
    assert len(vms[-1]) == n
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["ns_per_request"] = benchmark.stats.stats.median * 1e9 / n
    if impl == "core-batch":
        return  # same structure as core-single; measured once
    if impl == "intervaltree":
        out = subprocess.run([sys.executable, "-m", "benchmarks.peers", "rss", "intervaltree",
                              str(n)], capture_output=True, text=True, check=True, timeout=900)
        per = float(out.stdout.split()[-1])
    else:
        mem = memory_per_mapping("core" if impl == "core-single" else "reference", n,
                                 m=200_000 if impl == "core-single" else 2_000)
        per = mem.rss_populate
        benchmark.extra_info["rss_bytes_per_mapping_after_w1"] = mem.rss_w1
        if mem.nbytes_populate is not None:
            benchmark.extra_info["nbytes_per_mapping"] = mem.nbytes_populate
            benchmark.extra_info["nbytes_per_mapping_after_w1"] = mem.nbytes_w1
    benchmark.extra_info["rss_bytes_per_mapping"] = per
    # Below ~1e5 mappings the growth may fit in pages the allocator already holds.
    assert per > 0 if n >= 100_000 else per >= 0
