"""Bind map/unmap: argument checks, VMA kinds, flags, REMAP inheritance, EBUSY."""

from __future__ import annotations

import errno

import pytest
from xe_helpers import MIRROR, FakeSvm, K, M, layout, make_bo, make_vm, tree_matches

from pysvm.attr import BindFlag, MemRangeAttr
from pysvm.errors import XeError
from pysvm.madvise import MadviseArgs, madvise
from pysvm.vma import CREATE_MASK, VmaFlag


def test_flag_bits_match_kernel() -> None:
    assert VmaFlag.READ_ONLY == 1 << 2 and VmaFlag.SYSTEM_ALLOCATOR == 1 << 11
    assert VmaFlag.DUMPABLE == 1 << 10 and VmaFlag.MADV_AUTORESET == 1 << 12
    assert CREATE_MASK == (1 << 2) | (1 << 10) | (1 << 11) | (1 << 1) | (1 << 12)
    assert BindFlag.CPU_ADDR_MIRROR == 1 << 4 and BindFlag.NULL == 1 << 2


@pytest.mark.parametrize("kw, why", [
    (dict(addr=0, range=K, flags=MIRROR), "mirror needs fault mode"),
    (dict(addr=K + 1, range=K, flags=BindFlag.NULL), "unaligned addr"),
    (dict(addr=0, range=K + 1, flags=BindFlag.NULL), "unaligned range"),
    (dict(addr=0, range=0, flags=BindFlag.NULL), "zero range"),
    (dict(addr=0, range=K), "no bo/null/mirror"),
    (dict(addr=0, range=K, flags=BindFlag.NULL, offset=K), "offset with null"),
    (dict(addr=0, range=K, flags=BindFlag.NULL, pat_index=32), "pat out of table"),
    (dict(addr=0, range=K, flags=BindFlag.NULL, pat_index=20), "reserved pat"),
    (dict(addr=1 << 48, range=K, flags=BindFlag.NULL), "beyond VM"),
    (dict(addr=0, range=K, userptr=True, pat_index=0), "userptr with non-coherent PAT"),
])
def test_bind_einval(kw: dict, why: str) -> None:
    vm = make_vm(fault_mode=False)
    with pytest.raises(XeError) as ei:
        vm.bind_map(**kw)
    assert ei.value.errno == errno.EINVAL, why
    assert len(vm) == 0 and len(vm.gpuvm) == 0


def test_bo_checks() -> None:
    vm = make_vm()
    bo = make_bo(vm, "bo1", 64 * K, ("vram",))
    for kw in (dict(addr=0, range=128 * K, bo=bo), dict(addr=0, range=64 * K, bo=bo, offset=K),
               dict(addr=0, range=K, bo=bo, flags=BindFlag.NULL)):
        with pytest.raises(XeError) as ei:
            vm.bind_map(**kw)  # type: ignore[arg-type]
        assert ei.value.errno == errno.EINVAL
    assert len(vm) == 0


def test_autoreset_per_profile() -> None:
    with pytest.raises(XeError, match="does not exist"):
        make_vm("6.18").bind_map(0, K, flags=MIRROR | BindFlag.MADVISE_AUTORESET)
    vm = make_vm("newest")
    with pytest.raises(XeError, match="needs cpu_addr_mirror"):
        vm.bind_map(0, K, flags=BindFlag.NULL | BindFlag.MADVISE_AUTORESET)
    (v,) = vm.bind_map(0, K, flags=MIRROR | BindFlag.MADVISE_AUTORESET)
    assert v.flags & VmaFlag.MADV_AUTORESET and v.is_cpu_addr_mirror()


def test_killed_vm_enoent() -> None:
    vm = make_vm()
    vm.kill()
    for call in (lambda: vm.bind_map(0, K, flags=MIRROR), lambda: vm.bind_unmap(0, K)):
        with pytest.raises(XeError) as ei:
            call()
        assert ei.value.errno == errno.ENOENT


def test_default_attrs_for_every_map() -> None:
    vm = make_vm()
    bo = make_bo(vm, "bo1", 64 * K, ("system",))
    (v,) = vm.bind_map(0, 64 * K, bo=bo, pat_index=2)
    assert v.has_default_mem_attrs() and v.attr.pat_index == v.attr.default_pat_index == 2
    assert v.attr.preferred_loc.devmem_fd == 0 and v.attr.atomic_access == 0


def test_unmap_middle_keeps_attrs_and_flags() -> None:
    vm = make_vm()
    vm.bind_map(0, 256 * K, flags=MIRROR | BindFlag.READONLY, pat_index=1)
    madvise(vm, MadviseArgs(0, 256 * K, MemRangeAttr.ATOMIC, val=3))
    vm.bind_unmap(64 * K, 64 * K)
    assert layout(vm) == [(0, 64 * K), (128 * K, 128 * K)]
    for v in vm:
        assert v.attr.atomic_access == 3 and v.attr.default_pat_index == 1
        assert v.is_cpu_addr_mirror() and v.read_only()
    assert tree_matches(vm)


def test_map_over_bo_keeps_offsets() -> None:
    vm = make_vm()
    bo = make_bo(vm, "bo1", 256 * K, ("vram",))
    vm.bind_map(0, 256 * K, bo=bo)
    vm.bind_map(64 * K, 64 * K, flags=BindFlag.NULL)
    got = [(v.addr, v.range, v.bo.name if v.bo else None, v.offset, v.is_null()) for v in vm]
    assert got == [(0, 64 * K, "bo1", 0, False), (64 * K, 64 * K, None, 0, True),
                   (128 * K, 128 * K, "bo1", 128 * K, False)]
    assert tree_matches(vm)


def test_identical_remap_replaces_vma() -> None:
    vm = make_vm()
    bo = make_bo(vm, "bo1", 64 * K, ("vram",))
    vm.bind_map(0, 64 * K, bo=bo, pat_index=1)
    madvise(vm, MadviseArgs(0, 64 * K, MemRangeAttr.PAT, val=2))
    vm.bind_map(0, 64 * K, bo=bo, pat_index=1)        # UNMAP(keep) + MAP: fresh default attrs
    (v,) = list(vm)
    assert v.attr.pat_index == 1


def test_ebusy_when_svm_ranges_live() -> None:
    vm = make_vm()
    vm.bind_map(0, 256 * K, flags=MIRROR)
    vm.svm = FakeSvm([(64 * K, 128 * K)])
    bo = make_bo(vm, "bo1", 64 * K, ("vram",))
    with pytest.raises(XeError) as ei:
        vm.bind_map(64 * K, 64 * K, bo=bo)        # REMAP cut-out holds a range
    assert ei.value.errno == errno.EBUSY
    with pytest.raises(XeError) as ei:
        vm.bind_unmap(0, 256 * K)                 # UNMAP of a mirror with ranges
    assert ei.value.errno == errno.EBUSY
    assert layout(vm) == [(0, 256 * K)] and tree_matches(vm)
    vm.bind_map(128 * K, 64 * K, bo=bo)           # cut-out free of ranges: fine
    assert layout(vm) == [(0, 128 * K), (128 * K, 64 * K), (192 * K, 64 * K)]


def test_immediate_and_non_fault_bind_present_on_gpu() -> None:
    vm = make_vm(fault_mode=False)
    bo = make_bo(vm, "bo1", M, ("system",))
    (v,) = vm.bind_map(0, M, bo=bo)
    assert v.tile_present == 1
    vm2 = make_vm()
    bo2 = make_bo(vm2, "bo2", M, ("system",))
    assert vm2.bind_map(0, M, bo=bo2)[0].tile_present == 0
    assert vm2.bind_map(M, M, bo=bo2, flags=BindFlag.IMMEDIATE)[0].tile_present == 1


def test_find_vma_by_addr() -> None:
    vm = make_vm()
    vm.bind_map(64 * K, 64 * K, flags=MIRROR)
    assert vm.find_vma_by_addr(60 * K) is None
    assert vm.find_vma_by_addr(64 * K).addr == 64 * K  # type: ignore[union-attr]
    assert vm.find_vma_by_addr(124 * K) is not None
    assert vm.find_vma_by_addr(128 * K) is None
    # kernel quirk: the lookup is [addr, addr + 4K), so an unaligned address just
    # below a VMA finds it (callers pass page addresses)
    assert vm.find_vma_by_addr(64 * K - 1) is not None
