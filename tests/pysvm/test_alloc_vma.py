"""xe_vm_alloc_vma(is_madvise=false): the CPU-mirror re-allocation and neighbour absorption."""

from __future__ import annotations

import errno

import pytest
from xe_helpers import MIRROR, FakeSvm, K, layout, make_vm, tree_matches

from pysvm.attr import BindFlag, MemRangeAttr
from pysvm.errors import XeError
from pysvm.madvise import MadviseArgs, madvise
from pysvm.vma import VmaFlag


def split3(profile: str = "6.18"):  # type: ignore[no-untyped-def]
    vm = make_vm(profile)
    flags = MIRROR | (BindFlag.MADVISE_AUTORESET if profile == "newest" else BindFlag(0))
    vm.bind_map(0, 256 * K, flags=flags, pat_index=3)
    madvise(vm, MadviseArgs(0, 64 * K, MemRangeAttr.ATOMIC, val=1))
    madvise(vm, MadviseArgs(64 * K, 128 * K, MemRangeAttr.PAT, val=2))
    madvise(vm, MadviseArgs(192 * K, 64 * K, MemRangeAttr.ATOMIC, val=3))
    return vm


def test_one_default_vma_exactly_covering_neighbours_trimmed() -> None:
    vm = split3()
    new = vm.alloc_cpu_addr_mirror_vma(32 * K, 192 * K)
    assert (new.addr, new.range) == (32 * K, 192 * K)
    assert layout(vm) == [(0, 32 * K), (32 * K, 192 * K), (224 * K, 32 * K)]
    left, mid, right = list(vm)
    assert left.attr.atomic_access == 1 and right.attr.atomic_access == 3   # trimmed keep attrs
    assert mid.has_default_mem_attrs() and mid.attr.default_pat_index == 3
    assert mid.is_cpu_addr_mirror()
    assert tree_matches(vm)


def test_flags_and_default_pat_from_replaced_vma() -> None:
    vm = make_vm("newest")
    vm.bind_map(0, 64 * K, flags=MIRROR | BindFlag.MADVISE_AUTORESET, pat_index=4)
    madvise(vm, MadviseArgs(0, 64 * K, MemRangeAttr.PAT, val=1))
    new = vm.alloc_cpu_addr_mirror_vma(0, 64 * K)   # UNMAP + MAP over the same span
    assert new.flags & VmaFlag.MADV_AUTORESET and new.is_cpu_addr_mirror()
    assert new.attr.pat_index == new.attr.default_pat_index == 4
    assert new.attr.atomic_access == 0


def test_reset_attrs_in_place() -> None:
    vm = split3()
    v = vm.find_vma_by_addr(64 * K)
    assert v is not None and not v.has_default_mem_attrs()
    v.reset_attrs()
    assert v.has_default_mem_attrs() and v.attr.pat_index == 3


def test_hole_refused_state_unchanged() -> None:
    vm = make_vm()
    with pytest.raises(XeError) as ei:
        vm.alloc_cpu_addr_mirror_vma(0, 64 * K)
    assert ei.value.errno == errno.EINVAL and len(vm) == 0 and len(vm.gpuvm) == 0


@pytest.mark.parametrize("profile, ok", [("6.18", False), ("newest", True)])
def test_svm_unmap_allowed_only_newest(profile: str, ok: bool) -> None:
    vm = split3(profile)
    vm.svm = FakeSvm([(64 * K, 128 * K)])
    before = layout(vm)
    if ok:
        vm.alloc_cpu_addr_mirror_vma(64 * K, 128 * K)   # UNMAP of the middle VMA
        assert ("unmap", 64 * K, 192 * K) in vm.svm.calls
    else:
        with pytest.raises(XeError) as ei:
            vm.alloc_cpu_addr_mirror_vma(64 * K, 128 * K)
        assert ei.value.errno == errno.EBUSY and layout(vm) == before


def test_remap_with_live_ranges_is_ebusy_in_both_profiles() -> None:
    for profile in ("6.18", "newest"):
        vm = split3(profile)
        vm.svm = FakeSvm([(100 * K, 104 * K)])
        with pytest.raises(XeError) as ei:
            vm.alloc_cpu_addr_mirror_vma(96 * K, 16 * K)
        assert ei.value.errno == errno.EBUSY


def test_find_cpu_addr_mirror_vma_range_absorbs_default_neighbours() -> None:
    vm = make_vm("newest")
    vm.bind_map(0, 256 * K, flags=MIRROR)
    madvise(vm, MadviseArgs(64 * K, 64 * K, MemRangeAttr.ATOMIC, val=1))
    assert vm.find_cpu_addr_mirror_vma_range(64 * K, 128 * K) == (0, 256 * K)
    madvise(vm, MadviseArgs(128 * K, 64 * K, MemRangeAttr.ATOMIC, val=1))
    assert vm.find_cpu_addr_mirror_vma_range(64 * K, 128 * K) == (0, 128 * K)
    # merge back: re-allocate the widened span as one default VMA
    madvise(vm, MadviseArgs(64 * K, 128 * K, MemRangeAttr.ATOMIC, val=0))
    s, e = vm.find_cpu_addr_mirror_vma_range(64 * K, 128 * K)
    vm.alloc_cpu_addr_mirror_vma(s, e - s)
    assert (s, e) == (0, 192 * K)
    assert layout(vm) == [(0, 192 * K), (192 * K, 64 * K)]
    assert all(v.has_default_mem_attrs() for v in vm)
