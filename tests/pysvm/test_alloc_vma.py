"""xe_vm_alloc_vma(is_madvise=false): the CPU-mirror re-allocation, and neighbour
absorption (xe_vm_find_cpu_addr_mirror_vma_range, newest profile).

Kernel: drivers/gpu/drm/xe/xe_vm.c, xe_vm_alloc_vma() / xe_vm_alloc_cpu_addr_mirror_vma().
"""

from __future__ import annotations

import errno

import pytest
from xe_helpers import (
    MIRROR,
    FakeSvm,
    K,
    attr_key,
    layout,
    make_bo,
    make_vm,
    snapshot,
    tree_matches,
)

from pysvm.errors import XeError
from pysvm.xe.attr import BindFlag, MemRangeAttr
from pysvm.xe.vm import Vm
from pysvm.xe.vm_madvise import MadviseArgs, madvise
from pysvm.xe.vma import VmaFlag

AUTORESET = BindFlag.MADVISE_AUTORESET


def split3(profile: str = "6.18") -> Vm:
    """[0,64K) atomic 1 | [64K,192K) pat 2 | [192K,256K) atomic 3; default PAT 3."""
    vm = make_vm(profile)
    flags = MIRROR | (AUTORESET if profile == "newest" else BindFlag(0))
    vm.bind_map(0, 256 * K, flags=flags, pat_index=3)
    madvise(vm, MadviseArgs(0, 64 * K, MemRangeAttr.ATOMIC, val=1))
    madvise(vm, MadviseArgs(64 * K, 128 * K, MemRangeAttr.PAT, val=2))
    madvise(vm, MadviseArgs(192 * K, 64 * K, MemRangeAttr.ATOMIC, val=3))
    return vm


def test_one_default_vma_exactly_covering_neighbours_trimmed_keep_attrs() -> None:
    vm = split3()
    left_attr = attr_key(vm.find_vma_by_addr(0).attr)  # type: ignore[union-attr]
    right_attr = attr_key(vm.find_vma_by_addr(192 * K).attr)  # type: ignore[union-attr]
    new = vm.alloc_cpu_addr_mirror_vma(32 * K, 192 * K)
    assert (new.addr, new.range) == (32 * K, 192 * K)
    assert layout(vm) == [(0, 32 * K), (32 * K, 192 * K), (224 * K, 32 * K)]
    left, mid, right = list(vm)
    assert attr_key(left.attr) == left_attr and attr_key(right.attr) == right_attr
    assert left.attr.atomic_access == 1 and right.attr.atomic_access == 3
    assert mid is new and mid.has_default_mem_attrs() and mid.attr.default_pat_index == 3
    assert mid.is_cpu_addr_mirror() and all(v.is_cpu_addr_mirror() for v in vm)
    assert tree_matches(vm) and vm.host.stats["mirror_vma_allocs"] == 1


def test_flags_and_default_pat_from_replaced_vma() -> None:
    vm = make_vm("newest")
    vm.bind_map(0, 64 * K, flags=MIRROR | AUTORESET | BindFlag.READONLY | BindFlag.DUMPABLE,
                pat_index=4)
    madvise(vm, MadviseArgs(0, 64 * K, MemRangeAttr.PAT, val=1))
    madvise(vm, MadviseArgs(0, 64 * K, MemRangeAttr.ATOMIC, val=2))
    new = vm.alloc_cpu_addr_mirror_vma(0, 64 * K)   # UNMAP + MAP over the same span
    assert new.flags == (VmaFlag.SYSTEM_ALLOCATOR | VmaFlag.MADV_AUTORESET
                         | VmaFlag.READ_ONLY | VmaFlag.DUMPABLE)
    assert new.attr.pat_index == new.attr.default_pat_index == 4
    assert new.attr.atomic_access == 0 and new.has_default_mem_attrs()


def test_the_last_replaced_vma_supplies_flags_and_default_pat() -> None:
    # several VMAs replaced: the MAP takes CREATE_MASK flags and default PAT of
    # the last UNMAP/REMAP in the op list (the highest-addressed one)
    vm = make_vm()
    vm.bind_map(0, 64 * K, flags=MIRROR | BindFlag.READONLY, pat_index=1)
    vm.bind_map(64 * K, 64 * K, flags=MIRROR | BindFlag.DUMPABLE, pat_index=4)
    new = vm.alloc_cpu_addr_mirror_vma(0, 96 * K)   # UNMAP [0,64K), REMAP [64K,128K)
    assert new.attr.default_pat_index == new.attr.pat_index == 4
    assert new.flags == VmaFlag.SYSTEM_ALLOCATOR | VmaFlag.DUMPABLE
    tail = vm.find_vma_by_addr(96 * K)
    assert tail is not None and (tail.addr, tail.range) == (96 * K, 32 * K)
    assert tail.attr.default_pat_index == 4 and tail.flags & VmaFlag.DUMPABLE


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


def test_killed_vm_refused() -> None:
    vm = split3()
    vm.kill()
    before = snapshot(vm)
    with pytest.raises(XeError) as ei:
        vm.alloc_cpu_addr_mirror_vma(0, 64 * K)
    assert ei.value.errno == errno.ENOENT and snapshot(vm) == before


@pytest.mark.pure_model   # a duck-typed fake
@pytest.mark.parametrize("profile, ok", [("6.18", False), ("newest", True)])
def test_svm_unmap_allowed_only_newest(profile: str, ok: bool) -> None:
    vm = split3(profile)
    vm.svm = FakeSvm([(64 * K, 128 * K)])
    before = snapshot(vm)
    if ok:
        vm.alloc_cpu_addr_mirror_vma(64 * K, 128 * K)   # UNMAP of the middle VMA
        # ALLOW_SVM_UNMAP only lifts the EBUSY: the ranges are not touched
        assert vm.svm.calls == [] and vm.svm.ranges == [(64 * K, 128 * K)]
        assert layout(vm) == [(0, 64 * K), (64 * K, 128 * K), (192 * K, 64 * K)]
    else:
        with pytest.raises(XeError) as ei:
            vm.alloc_cpu_addr_mirror_vma(64 * K, 128 * K)
        assert ei.value.errno == errno.EBUSY and snapshot(vm) == before


@pytest.mark.pure_model   # a duck-typed fake
def test_remap_with_live_ranges_is_ebusy_in_both_profiles() -> None:
    for profile in ("6.18", "newest"):
        vm = split3(profile)
        vm.svm = FakeSvm([(100 * K, 104 * K)])
        before = snapshot(vm)
        with pytest.raises(XeError) as ei:
            vm.alloc_cpu_addr_mirror_vma(96 * K, 16 * K)
        assert ei.value.errno == errno.EBUSY and snapshot(vm) == before


# -- neighbour absorption (newest) --------------------------------------------------

def test_absorbs_default_mirror_neighbours_and_merges_back() -> None:
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


def test_6_18_does_not_absorb() -> None:
    vm = make_vm("6.18")
    vm.bind_map(0, 256 * K, flags=MIRROR)
    madvise(vm, MadviseArgs(64 * K, 64 * K, MemRangeAttr.ATOMIC, val=1))
    assert vm.find_cpu_addr_mirror_vma_range(64 * K, 128 * K) == (64 * K, 128 * K)


def test_only_default_cpu_mirror_neighbours_are_absorbed() -> None:
    vm = make_vm("newest")
    bo = make_bo(vm, "bo1", 64 * K, ("vram",))
    vm.bind_map(0, 64 * K, bo=bo)                          # default attrs, but a BO
    vm.bind_map(64 * K, 64 * K, flags=MIRROR)
    vm.bind_map(128 * K, 64 * K, flags=BindFlag.NULL)      # default attrs, but NULL
    assert vm.find_cpu_addr_mirror_vma_range(64 * K, 128 * K) == (64 * K, 128 * K)
    vm2 = make_vm("newest")
    vm2.bind_map(0, 192 * K, flags=MIRROR, pat_index=1)
    madvise(vm2, MadviseArgs(0, 64 * K, MemRangeAttr.PAT, val=2))       # non-default
    madvise(vm2, MadviseArgs(128 * K, 64 * K, MemRangeAttr.PAT, val=1))  # = default PAT
    assert vm2.find_cpu_addr_mirror_vma_range(64 * K, 128 * K) == (64 * K, 192 * K)


def test_right_lookup_at_end_plus_one_crosses_a_4k_hole() -> None:
    # Kernel quirk: the right neighbour is looked up at end + 1 through a 4 KiB
    # window, so a default mirror VMA starting one 4 KiB hole after end is
    # absorbed; the left lookup (start - 4 KiB) does not cross a hole.
    vm = make_vm("newest")                                 # K is one 4 KiB page
    vm.bind_map(0, 15 * K, flags=MIRROR)                   # one-page hole [15K, 16K)
    vm.bind_map(16 * K, 16 * K, flags=MIRROR)
    vm.bind_map(33 * K, 15 * K, flags=MIRROR)              # one-page hole [32K, 33K)
    assert vm.find_cpu_addr_mirror_vma_range(16 * K, 32 * K) == (16 * K, 48 * K)
    s, e = vm.find_cpu_addr_mirror_vma_range(16 * K, 32 * K)
    vm.alloc_cpu_addr_mirror_vma(s, e - s)                 # fills the right hole
    assert layout(vm) == [(0, 15 * K), (16 * K, 32 * K)]
    vm.bind_map(50 * K, 2 * K, flags=MIRROR)               # two-page hole: not crossed
    assert vm.find_cpu_addr_mirror_vma_range(16 * K, 48 * K) == (16 * K, 48 * K)


# -- newest: a CPU-mirror bind absorbs default mirror neighbours too ----------------

def test_newest_mirror_bind_merges_default_mirror_neighbours() -> None:
    vm = make_vm("newest")
    vm.bind_map(0, 64 * K, flags=MIRROR | AUTORESET, pat_index=3)
    vm.bind_map(128 * K, 64 * K, flags=MIRROR, pat_index=4)
    (new,) = vm.bind_map(64 * K, 64 * K, flags=MIRROR, pat_index=1)
    # one VMA over all three, with the bind's flags and PAT (the neighbours'
    # AUTORESET flag and default PATs are gone)
    assert layout(vm) == [(0, 192 * K)] and (new.addr, new.range) == (0, 192 * K)
    assert new.flags == VmaFlag.SYSTEM_ALLOCATOR and new.attr.default_pat_index == 1
    assert tree_matches(vm)


def test_newest_mirror_bind_keeps_non_default_or_non_mirror_neighbours() -> None:
    vm = make_vm("newest")
    bo = make_bo(vm, "bo1", 64 * K, ("vram",))
    vm.bind_map(0, 64 * K, flags=MIRROR, pat_index=3)
    madvise(vm, MadviseArgs(0, 64 * K, MemRangeAttr.ATOMIC, val=1))     # not default
    vm.bind_map(128 * K, 64 * K, bo=bo)
    vm.bind_map(64 * K, 64 * K, flags=MIRROR)
    assert layout(vm) == [(0, 64 * K), (64 * K, 64 * K), (128 * K, 64 * K)]


def test_6_18_mirror_bind_does_not_merge() -> None:
    vm = make_vm("6.18")
    vm.bind_map(0, 64 * K, flags=MIRROR)
    vm.bind_map(64 * K, 64 * K, flags=MIRROR)
    assert layout(vm) == [(0, 64 * K), (64 * K, 64 * K)]


@pytest.mark.pure_model   # a duck-typed fake
@pytest.mark.parametrize("profile, ok", [("6.18", False), ("newest", True)])
def test_mirror_bind_over_vma_with_svm_ranges(profile: str, ok: bool) -> None:
    vm = make_vm(profile)
    vm.bind_map(64 * K, 64 * K, flags=MIRROR, pat_index=2)
    vm.svm = FakeSvm([(64 * K, 80 * K)])
    before = snapshot(vm)
    if ok:   # ALLOW_SVM_UNMAP: the covered VMA goes, its ranges stay
        vm.bind_map(0, 256 * K, flags=MIRROR)
        assert layout(vm) == [(0, 256 * K)] and vm.svm.ranges == [(64 * K, 80 * K)]
    else:
        with pytest.raises(XeError) as ei:
            vm.bind_map(0, 256 * K, flags=MIRROR)
        assert ei.value.errno == errno.EBUSY and snapshot(vm) == before
