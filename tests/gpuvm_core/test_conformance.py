"""The compiled core replays all kernel-recorded public vectors exactly."""

from __future__ import annotations

from gpuvm_core import GpuVm, RefGpuVm
from gpuvm_core.conformance import bundled_vectors, iter_cases, run_file


def test_all_public_vectors_pass() -> None:
    rep = run_file(iter_cases(bundled_vectors()), GpuVm)
    assert rep.failed == 0, [(f.case_id, f.step, f.message[:300]) for f in rep.failures[:3]]
    assert rep.passed == 2011


def test_compiled_is_not_the_reference() -> None:
    assert GpuVm is not RefGpuVm
    assert type(GpuVm(0, 1 << 20)).__module__ == "gpuvm_core._core"


def test_check_after_every_vector_step() -> None:
    # replay the first cases step by step and run the invariant check after each
    for n, case in enumerate(iter_cases(bundled_vectors())):
        if n >= 300:
            break
        v = case["vm"]
        vm = GpuVm(v["start"], v["range"], reserve_addr=v["reserve_addr"],
                   reserve_range=v["reserve_range"])
        for step in case["steps"]:
            if step["result"] != "ok":
                continue
            if step["call"] == "map":
                ops = vm.sm_map_ops_create(step["addr"], step["range"], step["obj"], step["offset"])
            elif step["call"] == "madvise":
                ops = vm.madvise_ops_create(step["addr"], step["range"], step["obj"],
                                            step["offset"])
            else:
                ops = vm.sm_unmap_ops_create(step["addr"], step["range"])
            vm.apply(ops)
            vm.check()
