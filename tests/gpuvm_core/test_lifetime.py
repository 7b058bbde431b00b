"""GpuVa views, op-list staleness, callbacks and the planted-bug hook (compiled core).

The reserved node and every refusal are tested for both implementations in
test_edges.py."""

from __future__ import annotations

import errno
import gc

import pytest

from gpuvm_core import GpuVa, GpuVm, GpuvmError, OpMap, OpRemap, OpType, OpUnmap, _core


def test_view_of_removed_va_is_refused() -> None:
    vm = GpuVm(0, 1 << 20)
    va = vm.insert(0x1000, 0x1000, 3, 0)
    assert va.alive
    vm.remove(va)
    assert not va.alive
    with pytest.raises(GpuvmError) as ei:
        vm.remove(va)
    assert ei.value.errno == errno.ENOENT
    # a new VA at the same place is a different VA: the old view does not name it
    va2 = vm.insert(0x1000, 0x1000, 3, 0)
    assert va2 != va and not va.alive
    with pytest.raises(GpuvmError):
        vm.remove(va)
    assert len(vm) == 1
    vm.remove(va2)
    assert len(vm) == 0


def test_view_outlives_its_vm_and_keeps_values() -> None:
    vm = GpuVm(0, 1 << 20)
    va = vm.insert(0x2000, 0x3000, None, 5)
    del vm
    gc.collect()
    assert va.as_tuple() == (0x2000, 0x3000, None, 5)
    assert va.end == 0x5000 and va.last == 0x4fff


def test_gpuva_cannot_be_constructed() -> None:
    with pytest.raises(TypeError):
        GpuVa()


def test_view_from_other_vm_is_refused() -> None:
    a, b = GpuVm(0, 1 << 20), GpuVm(0, 1 << 20)
    va = a.insert(0, 0x1000)
    b.insert(0, 0x1000)
    with pytest.raises(GpuvmError) as ei:
        b.remove(va)
    assert ei.value.errno == errno.ENOENT
    assert len(b) == 1


def test_stale_ops_refused_state_unchanged() -> None:
    vm = GpuVm(0, 1 << 20)
    vm.apply(vm.sm_map_ops_create(0, 0x4000, 1, 0))
    ops = vm.sm_map_ops_create(0x1000, 0x1000, 2, 0)
    vm.insert(0x10000, 0x1000)  # the VM changes
    before = vm.state()
    with pytest.raises(GpuvmError) as ei:
        vm.apply(ops)
    assert ei.value.errno == errno.ESTALE
    assert vm.state() == before
    # applying twice is stale too
    ops = vm.sm_unmap_ops_create(0, 0x1000)
    vm.apply(ops)
    with pytest.raises(GpuvmError):
        vm.apply(ops)
    # ops of another VM
    other = GpuVm(0, 1 << 20)
    with pytest.raises(GpuvmError):
        other.apply(vm.sm_map_ops_create(0x30000, 0x1000))


def test_plain_op_list_and_callbacks() -> None:
    vm = GpuVm(0, 1 << 20)
    vm.apply([OpMap(0, 0x3000, 1, 0)])
    va = vm.find(0, 0x3000)
    assert va is not None
    seen: list[OpType] = []

    class Steps:
        def sm_step_map(self, op: OpMap) -> None:
            seen.append(op.type)
            vm.apply([op])

        def sm_step_remap(self, op: OpRemap) -> None:
            seen.append(op.type)
            vm.apply([op])

        def sm_step_unmap(self, op: OpUnmap) -> None:
            seen.append(op.type)
            vm.apply([op])

    vm.sm_map(Steps(), 0x1000, 0x1000, 2, 0)
    assert seen == [OpType.REMAP, OpType.MAP]
    assert vm.state() == [(0, 0x1000, 1, 0), (0x1000, 0x1000, 2, 0), (0x2000, 0x1000, 1, 0x2000)]
    seen.clear()
    vm.sm_unmap(Steps(), 0, 0x3000)
    assert seen == [OpType.UNMAP] * 3 and len(vm) == 0
    # an op naming a VA that is gone
    with pytest.raises(GpuvmError) as ei:
        vm.apply([OpUnmap(va, False)])
    assert ei.value.errno == errno.ENOENT
    vm.check()


@pytest.mark.debug_build
def test_planted_fault_changes_m6_only() -> None:
    def run() -> list[tuple[int, int, int | None, int]]:
        vm = GpuVm(0, 1 << 20)
        vm.apply(vm.sm_map_ops_create(0, 0x4000, 1, 0x100000))
        vm.apply(vm.sm_map_ops_create(0x1000, 0x1000, 2, 0))  # M6: split in the middle
        return vm.state()

    good = run()
    assert good[-1] == (0x2000, 0x2000, 1, 0x102000)
    _core._debug_set_fault(1)
    try:
        bad = run()
    finally:
        _core._debug_set_fault(0)
    assert bad[-1] == (0x2000, 0x2000, 1, 0x102001)
    assert bad[:-1] == good[:-1]
    assert run() == good
    with pytest.raises(ValueError):
        _core._debug_set_fault(7)
