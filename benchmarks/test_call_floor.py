"""The call-floor stand-in (benchmarks/call_floor.py) answers exactly what the core does,
so ``run_single`` over it runs the same loop as over the core, minus the core's work."""

from __future__ import annotations

import pytest

import gpuvm_core
from benchmarks.call_floor import FloorRow, answers, format_rows
from gpuvm_core.workloads import new_vm, run_single, workload

pytest.importorskip("Cython", reason="the stand-in is compiled with Cython at run time")


@pytest.fixture(scope="module")
def floor_mod():  # type: ignore[no-untyped-def]
    from benchmarks.call_floor import build_floor

    return build_floor()


@pytest.mark.parametrize("w", [1, 2, 3, 4])
def test_floor_loop_returns_what_the_core_returns(floor_mod, w: int) -> None:  # type: ignore[no-untyped-def]
    n, m = 200, 3000
    reqs = workload(w, n, m)
    ans = answers(w, n, reqs)
    core = run_single(new_vm(gpuvm_core.GpuVm, n, w), reqs)
    assert run_single(floor_mod.FloorVm(ans), reqs) == core == sum(ans)
    if w == 4:
        assert set(ans) == {0, 1}     # hits and misses both present
    elif w == 3:
        assert set(ans) == {0}        # W3's aligned madvises never split a VA: empty lists
    else:
        assert max(ans) >= 2          # multi-op requests present


def test_floor_vm_reads_arguments_like_the_core(floor_mod) -> None:  # type: ignore[no-untyped-def]
    vm = floor_mod.FloorVm([1, 0])
    with pytest.raises(OverflowError):
        vm.find_first(-1, 1)
    with pytest.raises(TypeError):
        vm.sm_map_ops_create("0", 1)
    with pytest.raises(TypeError):
        vm.apply([])
    va = vm.find_first(0x1000, 1)
    assert va is not None and va.vm is vm
    assert vm.find_first(0x1000, 1) is None


def test_format_rows() -> None:
    rows = format_rows([FloorRow(1000, "W4 lookup", 100.0, 90.0, 150.0),
                        FloorRow(1000, "W3 madvise_random", None, 200.0, 350.0)])
    assert rows[2] == "| 1,000 | W4 lookup | 100 | 90 | 150 | 60 | 0.90 | 1.50 |"
    assert rows[3] == "| 1,000 | W3 madvise_random | - | 200 | 350 | 150 | - | - |"
