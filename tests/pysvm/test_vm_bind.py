"""Bind map/unmap: uapi numbers, argument order, VMA kinds and flags, REMAP inheritance,
EBUSY, find_vma_by_addr, the attribute query and vm_kill.

Kernel: drivers/gpu/drm/xe/xe_vm.c (vm_bind_ioctl_check_args(), xe_vm_bind_ioctl(),
vm_bind_ioctl_ops_parse(), xe_vm_find_vma_by_addr(), xe_vm_query_vmas_attrs_ioctl()).
"""

from __future__ import annotations

import errno
from typing import Any

import pytest
from xe_helpers import (
    MIRROR,
    FakeSvm,
    K,
    M,
    attr_key,
    layout,
    make_bo,
    make_vm,
    snapshot,
    tree_matches,
)

from pysvm.errors import XeError
from pysvm.xe.attr import (
    CONSULT_MEM_ADVISE_PREF_LOC,
    AtomicAccess,
    BindFlag,
    BindOp,
    MemRangeAttr,
    MigrationPolicy,
    PreferredLocFd,
    PurgeableState,
    XeIoctl,
)
from pysvm.xe.vm import Vm
from pysvm.xe.vm_madvise import MadviseArgs, madvise
from pysvm.xe.vma import CREATE_MASK, VmaFlag


def test_uapi_numbers_match_kernel_header() -> None:
    # include/uapi/drm/xe_drm.h (igt-gpu-tools 436864374b copy): CHECK_PXP took
    # bit 4, so CPU_ADDR_MIRROR is bit 5; AUTORESET 6, DECOMPRESS 7
    assert [int(f) for f in BindFlag] == [1, 2, 4, 8, 16, 32, 64, 128]
    assert BindFlag.CHECK_PXP == 1 << 4 and BindFlag.CPU_ADDR_MIRROR == 1 << 5
    assert BindFlag.MADVISE_AUTORESET == 1 << 6 and BindFlag.DECOMPRESS == 1 << 7
    assert [int(o) for o in BindOp] == [0, 1, 2, 3, 4]
    assert [int(t) for t in MemRangeAttr] == [0, 1, 2, 3]
    assert int(MemRangeAttr.PURGEABLE_STATE) == 3
    assert (PurgeableState.WILLNEED, PurgeableState.DONTNEED) == (0, 1)
    assert (PreferredLocFd.DEFAULT_DEVICE, PreferredLocFd.DEFAULT_SYSTEM) == (0, -1)
    assert [int(p) for p in MigrationPolicy] == [0, 1]
    assert [int(a) for a in AtomicAccess] == [0, 1, 2, 3]
    assert (int(XeIoctl.MADVISE), int(XeIoctl.VM_QUERY_MEM_RANGE_ATTRS)) == (0x0C, 0x0D)
    assert int(XeIoctl.VM_BIND) == 0x05 and CONSULT_MEM_ADVISE_PREF_LOC == -1


def test_vma_flag_bits_match_kernel() -> None:
    # xe_vm_types.h: XE_VMA_* = DRM_GPUVA_USERBITS (1 << 2) << n
    assert VmaFlag.READ_ONLY == 1 << 2 and VmaFlag.DESTROYED == 1 << 3
    assert VmaFlag.DUMPABLE == 1 << 10 and VmaFlag.SYSTEM_ALLOCATOR == 1 << 11
    assert VmaFlag.MADV_AUTORESET == 1 << 12 and VmaFlag.SPARSE == 1 << 1
    assert CREATE_MASK == (1 << 2) | (1 << 10) | (1 << 11) | (1 << 1) | (1 << 12)


# -- argument checks, in the kernel's order --------------------------------------

@pytest.mark.parametrize("kw, msg", [
    (dict(addr=0, range=K, flags=MIRROR), "needs a fault-mode VM"),
    (dict(addr=K + 1, range=K, flags=BindFlag.NULL), "4 KiB aligned"),
    (dict(addr=0, range=K + 1, flags=BindFlag.NULL), "4 KiB aligned"),
    (dict(addr=0, range=0, flags=BindFlag.NULL), "range non-zero"),
    (dict(addr=0, range=K), "needs a BO, null or cpu_addr_mirror"),
    (dict(addr=0, range=K, flags=BindFlag.NULL, offset=K), "offset must be 0"),
    (dict(addr=0, range=K, flags=BindFlag.NULL, pat_index=32), "32 >= 32 entries"),
    (dict(addr=0, range=K, flags=BindFlag.NULL, pat_index=16), "reserved PAT entry"),
    (dict(addr=1 << 48, range=K, flags=BindFlag.NULL), "outside the VM"),
    (dict(addr=0, range=K, userptr=True, pat_index=0), "coherent PAT"),
    (dict(addr=0, range=K, userptr=True, pat_index=1, flags=BindFlag.NULL), "not userptr"),
    (dict(addr=0, range=K, flags=BindFlag.NULL | BindFlag.DECOMPRESS), "decompress"),
])
def test_bind_einval_changes_nothing(kw: dict[str, Any], msg: str) -> None:
    vm = make_vm(fault_mode=False)
    before = snapshot(vm)
    with pytest.raises(XeError) as ei:
        vm.bind_map(**kw)
    assert ei.value.errno == errno.EINVAL and msg in str(ei.value)
    assert snapshot(vm) == before and len(vm.gpuvm) == 0


def test_bind_order_mirror_then_pat_then_combinations_then_alignment() -> None:
    vm = make_vm(fault_mode=False)
    bo = make_bo(vm, "bo1", 64 * K, ("vram",))
    cases: list[tuple[dict[str, Any], str]] = [
        (dict(flags=MIRROR, pat_index=40, bo=bo, addr=1), "fault-mode"),
        (dict(flags=BindFlag.NULL, pat_index=40, bo=bo, addr=1), ">= 32 entries"),
        (dict(flags=BindFlag.NULL, pat_index=0, bo=bo, addr=1), "a BO cannot be given"),
        (dict(flags=BindFlag.NULL, pat_index=0, addr=1, offset=K), "offset must be 0"),
        (dict(flags=BindFlag.NULL, pat_index=0, addr=1), "4 KiB aligned"),
    ]
    for kw, msg in cases:
        with pytest.raises(XeError, match=msg):
            vm.bind_map(range=K, **kw)


def test_killed_vm_enoent_before_vm_range_after_alignment() -> None:
    vm = make_vm()
    vm.kill()
    for call in (lambda: vm.bind_map(0, K, flags=MIRROR), lambda: vm.bind_unmap(0, K),
                 lambda: vm.bind_map(1 << 48, K, flags=MIRROR),   # outside the VM too
                 lambda: vm.bind_unmap(1 << 48, K)):
        with pytest.raises(XeError) as ei:
            call()
        assert ei.value.errno == errno.ENOENT
    with pytest.raises(XeError) as ei:
        vm.bind_map(1, K, flags=MIRROR)            # arguments first: EINVAL
    assert ei.value.errno == errno.EINVAL


def test_unknown_bo_is_enoent_only_after_argument_and_range_checks() -> None:
    vm = make_vm()
    with pytest.raises(XeError, match="4 KiB aligned"):
        vm.bind_map(1, K, bo="ghost")
    with pytest.raises(XeError, match="a BO cannot be given"):
        vm.bind_map(0, K, bo="ghost", flags=MIRROR)
    with pytest.raises(XeError, match="outside the VM"):
        vm.bind_map(1 << 48, K, bo="ghost")
    with pytest.raises(XeError) as ei:
        vm.bind_map(0, K, bo="ghost")
    assert ei.value.errno == errno.ENOENT and len(vm) == 0


def test_bo_checks() -> None:
    vm = make_vm()
    bo = make_bo(vm, "bo1", 64 * K, ("vram",))
    for kw in (dict(addr=0, range=128 * K, bo=bo), dict(addr=0, range=64 * K, bo=bo, offset=K),
               dict(addr=0, range=K, bo=bo, flags=BindFlag.NULL)):
        with pytest.raises(XeError) as ei:
            vm.bind_map(**kw)  # type: ignore[arg-type]
        assert ei.value.errno == errno.EINVAL
    assert len(vm) == 0


@pytest.mark.parametrize("profile", ["6.18", "newest"])
def test_autoreset_per_profile(profile: str) -> None:
    # v6.18 already has DRM_XE_VM_BIND_FLAG_MADVISE_AUTORESET (xe_drm.h, xe_svm.c)
    vm = make_vm(profile)
    with pytest.raises(XeError, match="autoreset needs a cpu_addr_mirror map") as e:
        vm.bind_map(0, K, flags=BindFlag.NULL | BindFlag.MADVISE_AUTORESET)
    assert e.value.errno == errno.EINVAL
    (v,) = vm.bind_map(0, K, flags=MIRROR | BindFlag.MADVISE_AUTORESET)
    assert v.flags & VmaFlag.MADV_AUTORESET and v.is_cpu_addr_mirror()


def test_decompress_per_profile() -> None:
    with pytest.raises(XeError) as ei:
        make_vm("newest").bind_map(0, K, flags=BindFlag.NULL | BindFlag.DECOMPRESS)
    assert ei.value.errno == errno.EOPNOTSUPP


def test_check_pxp_accepted_without_effect() -> None:
    vm = make_vm()
    bo = make_bo(vm, "bo1", 64 * K, ("vram",))
    (v,) = vm.bind_map(0, 64 * K, bo=bo, flags=BindFlag.CHECK_PXP)
    assert v.flags == VmaFlag(0)


@pytest.mark.parametrize("bflag, vflag", [
    (BindFlag.READONLY, VmaFlag.READ_ONLY), (BindFlag.DUMPABLE, VmaFlag.DUMPABLE),
    (BindFlag.NULL, VmaFlag.SPARSE), (MIRROR, VmaFlag.SYSTEM_ALLOCATOR),
])
def test_bind_flags_become_vma_flags(bflag: BindFlag, vflag: VmaFlag) -> None:
    vm = make_vm()
    extra = BindFlag.NULL if bflag in (BindFlag.READONLY, BindFlag.DUMPABLE) else BindFlag(0)
    (v,) = vm.bind_map(0, K, flags=bflag | extra)
    assert v.flags & vflag


def test_default_attrs_for_every_map() -> None:
    vm = make_vm()
    bo = make_bo(vm, "bo1", 64 * K, ("system",))
    (v,) = vm.bind_map(0, 64 * K, bo=bo, pat_index=2)
    assert v.has_default_mem_attrs() and v.attr.pat_index == v.attr.default_pat_index == 2
    assert v.attr.preferred_loc.devmem_fd == 0 and v.attr.atomic_access == 0


def test_unmap_middle_keeps_attrs_and_flags() -> None:
    vm = make_vm()
    vm.bind_map(0, 256 * K, flags=MIRROR | BindFlag.READONLY | BindFlag.DUMPABLE, pat_index=1)
    madvise(vm, MadviseArgs(0, 256 * K, MemRangeAttr.ATOMIC, val=3))
    madvise(vm, MadviseArgs(0, 256 * K, MemRangeAttr.PAT, val=2))
    madvise(vm, MadviseArgs(0, 256 * K, MemRangeAttr.PREFERRED_LOC, devmem_fd=-1,
                            migration_policy=1))
    (old,) = list(vm)
    want = attr_key(old.attr)
    vm.bind_unmap(64 * K, 64 * K)
    assert layout(vm) == [(0, 64 * K), (128 * K, 128 * K)]
    for v in vm:
        assert attr_key(v.attr) == want
        assert v.flags == MIRROR_FLAGS_RO_DUMP
    assert tree_matches(vm) and vm.host.stats["unbinds"] == 1


MIRROR_FLAGS_RO_DUMP = VmaFlag.SYSTEM_ALLOCATOR | VmaFlag.READ_ONLY | VmaFlag.DUMPABLE


def test_map_over_bo_keeps_offsets_and_attrs() -> None:
    vm = make_vm()
    bo = make_bo(vm, "bo1", 256 * K, ("vram", "system"))
    vm.bind_map(0, 256 * K, bo=bo, pat_index=1)
    madvise(vm, MadviseArgs(0, 256 * K, MemRangeAttr.ATOMIC, val=2))
    vm.bind_map(64 * K, 64 * K, flags=BindFlag.NULL, pat_index=4)
    got = [(v.addr, v.range, v.bo.name if v.bo else None, v.offset, v.is_null(),
            v.attr.atomic_access, v.attr.default_pat_index) for v in vm]
    assert got == [(0, 64 * K, "bo1", 0, False, 2, 1),
                   (64 * K, 64 * K, None, 0, True, 0, 4),
                   (128 * K, 128 * K, "bo1", 128 * K, False, 2, 1)]
    assert tree_matches(vm)


def test_identical_remap_replaces_vma() -> None:
    vm = make_vm()
    bo = make_bo(vm, "bo1", 64 * K, ("vram",))
    vm.bind_map(0, 64 * K, bo=bo, pat_index=1)
    madvise(vm, MadviseArgs(0, 64 * K, MemRangeAttr.PAT, val=2))
    vm.bind_map(0, 64 * K, bo=bo, pat_index=1)        # UNMAP(keep) + MAP: fresh default attrs
    (v,) = list(vm)
    assert v.attr.pat_index == 1


@pytest.mark.pure_model   # a duck-typed fake
def test_ebusy_when_svm_ranges_live() -> None:
    vm = make_vm()
    vm.bind_map(0, 256 * K, flags=MIRROR)
    vm.svm = FakeSvm([(64 * K, 128 * K)])
    bo = make_bo(vm, "bo1", 64 * K, ("vram",))
    before = snapshot(vm)
    with pytest.raises(XeError) as ei:
        vm.bind_map(64 * K, 64 * K, bo=bo)        # REMAP cut-out holds a range
    assert ei.value.errno == errno.EBUSY
    with pytest.raises(XeError) as ei:
        vm.bind_unmap(0, 256 * K)                 # UNMAP of a mirror with ranges
    assert ei.value.errno == errno.EBUSY
    assert snapshot(vm) == before and tree_matches(vm)
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


# -- xe_vm_find_vma_by_addr -------------------------------------------------------

def test_find_vma_by_addr_window() -> None:
    vm = make_vm()
    vm.bind_map(64 * K, 64 * K, flags=MIRROR)
    assert vm.find_vma_by_addr(60 * K) is None
    assert vm.find_vma_by_addr(64 * K).addr == 64 * K  # type: ignore[union-attr]
    assert vm.find_vma_by_addr(124 * K) is not None
    assert vm.find_vma_by_addr(128 * K) is None
    # the lookup window is [addr, addr + 4K): an unaligned address just below a
    # VMA finds it (callers normally pass page addresses)
    assert vm.find_vma_by_addr(64 * K - 1) is not None


def two_vmas_and_cache() -> Vm:
    vm = make_vm()
    vm.bind_map(0, K, flags=MIRROR)
    vm.bind_map(K, K, flags=MIRROR | BindFlag.READONLY)
    vm.last_fault_vma = vm.find_vma_by_addr(K)
    return vm


def test_cached_fault_vma_wins_when_its_window_overlaps() -> None:
    vm = two_vmas_and_cache()
    # [1, 4K + 1) overlaps both VMAs: the cached second VMA wins (vma_matches())
    v = vm.find_vma_by_addr(1)
    assert v is not None and v.addr == K
    vm.last_fault_vma = None
    v = vm.find_vma_by_addr(1)
    assert v is not None and v.addr == 0            # otherwise the lowest overlapping


def test_killed_vm_lookup_only_through_the_cache() -> None:
    vm = two_vmas_and_cache()
    vm.kill()
    assert vm.find_vma_by_addr(0) is None            # xe_vm_find_overlapping_vma: NULL
    v = vm.find_vma_by_addr(K)
    assert v is not None and v.addr == K             # the cached VMA is still returned


def test_destroyed_cached_vma_is_not_returned() -> None:
    vm = two_vmas_and_cache()
    vm.bind_unmap(K, K)
    assert vm.last_fault_vma is None and vm.find_vma_by_addr(K) is None


# -- the memory-range attribute query ---------------------------------------------

def query_vm() -> Vm:
    vm = make_vm()
    vm.bind_map(4 * K, 12 * K, flags=MIRROR)
    vm.bind_map(16 * K, 4 * K, flags=MIRROR)
    vm.bind_map(64 * K, 4 * K, flags=MIRROR)
    return vm


@pytest.mark.parametrize("start, rng, want", [
    (0, 128 * K, [4 * K, 16 * K, 64 * K]),
    (8 * K, 0, [4 * K]),              # zero range: the VMA straddling start
    (4 * K, 0, []),                   # ... none when a VMA starts there
    (16 * K, 4 * K, [16 * K]),
    (12 * K, 8 * K, [4 * K, 16 * K]),
    (32 * K, 1 << 60, [64 * K]),      # beyond the VM: no range check
    (8 * K, (1 << 64) - 4 * K, []),   # wraps: the interval-tree arithmetic
])
def test_query_iterates_like_the_kernel(start: int, rng: int, want: list[int]) -> None:
    vm = query_vm()
    assert [v.addr for v in vm.query(start, rng)] == want


def test_query_works_on_a_killed_vm() -> None:
    vm = query_vm()
    vm.kill()
    assert len(vm.query(0, 128 * K)) == 3


def test_kill_is_counted_once() -> None:
    vm = make_vm()
    vm.kill()
    vm.kill()
    assert vm.killed and vm.host.stats["vms_killed"] == 1
