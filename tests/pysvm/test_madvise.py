"""madvise: validation order and errno, splits, inheritance, per-type effects, invalidation."""

from __future__ import annotations

import errno

import pytest
from xe_helpers import MIRROR, FakeSvm, K, M, layout, make_bo, make_vm, tree_matches

from pysvm.attr import AtomicAccess, BindFlag, MemRangeAttr
from pysvm.errors import XeError
from pysvm.madvise import MadviseArgs, madvise

A, P, PAT = MemRangeAttr.ATOMIC, MemRangeAttr.PREFERRED_LOC, MemRangeAttr.PAT


def mirror_vm(profile: str = "6.18", **kw: object):  # type: ignore[no-untyped-def]
    vm = make_vm(profile, **kw)  # type: ignore[arg-type]
    vm.bind_map(0, 1 * M, flags=MIRROR, pat_index=3)
    return vm


def err(vm, **kw) -> int:  # type: ignore[no-untyped-def]
    before = [(v.addr, v.range, v.attr) for v in vm]
    with pytest.raises(XeError) as ei:
        madvise(vm, MadviseArgs(**kw))
    assert [(v.addr, v.range, v.attr) for v in vm] == before  # refused before any change
    return ei.value.errno or 0


# -- validation, in the kernel's order ---------------------------------------

@pytest.mark.parametrize("kw, why", [
    (dict(start=K + 1, range=K, type=A), "start unaligned"),
    (dict(start=0, range=K + 1, type=A), "range unaligned"),
    (dict(start=0, range=0, type=A), "zero range"),
    (dict(start=0, range=K, type=7), "unknown type"),
    (dict(start=0, range=K, type=P, devmem_fd=-2), "fd < -1"),
    (dict(start=0, range=K, type=P, migration_policy=2), "policy > 1"),
    (dict(start=0, range=K, type=P, region_instance=1), "pad (6.18)"),
    (dict(start=0, range=K, type=P, union_reserved=1), "preferred_loc reserved"),
    (dict(start=0, range=K, type=A, val=4), "atomic > CPU"),
    (dict(start=0, range=K, type=A, val=1, pad=1), "atomic pad"),
    (dict(start=0, range=K, type=A, val=1, union_reserved=5), "atomic reserved"),
    (dict(start=0, range=K, type=PAT, val=32), "pat out of table"),
    (dict(start=0, range=K, type=PAT, val=25), "pat reserved entry"),
    (dict(start=0, range=K, type=PAT, val=1, pad=1), "pat pad"),
    (dict(start=0, range=K, type=PAT, val=1, union_reserved=1), "pat reserved"),
    (dict(start=0, range=K, type=A, val=1, reserved=(0, 1)), "reserved[1]"),
    (dict(start=0, range=K, type=A, val=1, reserved=(1, 0)), "reserved[0]"),
])
def test_validation_einval(kw: dict, why: str) -> None:
    vm = mirror_vm()
    assert err(vm, **kw) == errno.EINVAL, why
    assert layout(vm) == [(0, M)]


def test_validation_order_alignment_before_type() -> None:
    vm = mirror_vm()
    with pytest.raises(XeError, match="not 4 KiB aligned"):
        madvise(vm, MadviseArgs(start=1, range=K, type=99))


def test_killed_vm_enoent_after_flush() -> None:
    vm = mirror_vm()
    vm.svm = FakeSvm()
    vm.kill()
    assert err(vm, start=0, range=K, type=A, val=1) == errno.ENOENT
    assert vm.svm.calls == [("flush",)]
    # bad args are still EINVAL on a killed VM: args are checked first
    assert err(vm, start=0, range=0, type=A) == errno.EINVAL


def test_newest_region_instance_rule() -> None:
    vm = mirror_vm("newest")
    assert err(vm, start=0, range=K, type=P, devmem_fd=0, region_instance=1) == errno.EINVAL
    assert err(vm, start=0, range=K, type=P, devmem_fd=-1, region_instance=2) == errno.EINVAL


def test_newest_devmem_fd_resolution_errors() -> None:
    from pysvm.device import Device
    vm = mirror_vm("newest")
    w = vm.world
    assert err(vm, start=0, range=K, type=P, devmem_fd=99, region_instance=1) == errno.ENOENT
    gpu1 = Device("gpu1", 256 * M, True, False, fd=w.next_fd())
    w.devices["gpu1"] = gpu1
    assert err(vm, start=0, range=K, type=P, devmem_fd=gpu1.fd, region_instance=0) == errno.ENOENT
    assert err(vm, start=0, range=K, type=P, devmem_fd=gpu1.fd, region_instance=1) == errno.ENOLINK
    w.links.add(frozenset(("gpu0", "gpu1")))
    gpu1.unbound = True
    assert err(vm, start=0, range=K, type=P, devmem_fd=gpu1.fd, region_instance=1) == errno.ENODEV
    gpu1.unbound = False
    assert madvise(vm, MadviseArgs(0, K, P, devmem_fd=gpu1.fd, region_instance=1)) == [[0, K]]
    assert vm.find_vma_by_addr(0).attr.preferred_loc.devmem_fd == gpu1.fd  # type: ignore[union-attr]
    igpu = Device("igpu", 0, False, False, fd=w.next_fd())
    w.devices["igpu"] = igpu
    assert err(vm, start=0, range=K, type=P, devmem_fd=igpu.fd, region_instance=1) == errno.ENOENT


def test_6_18_positive_fd_is_stored_unresolved() -> None:
    vm = mirror_vm()
    assert madvise(vm, MadviseArgs(0, K, P, devmem_fd=1234)) == [[0, K]]
    assert vm.find_vma_by_addr(0).attr.preferred_loc.devmem_fd == 1234  # type: ignore[union-attr]


# -- splits -------------------------------------------------------------------

def attrs(vm):  # type: ignore[no-untyped-def]
    return [(v.addr, v.range, v.attr.atomic_access, v.attr.pat_index) for v in vm]


def test_split_middle_inherits() -> None:
    vm = mirror_vm()
    madvise(vm, MadviseArgs(0, M, PAT, val=1))          # whole VMA: no split
    assert layout(vm) == [(0, M)]
    madvise(vm, MadviseArgs(64 * K, 64 * K, A, val=2))   # D6: prev + next + map
    assert attrs(vm) == [(0, 64 * K, 0, 1), (64 * K, 64 * K, 2, 1), (128 * K, M - 128 * K, 0, 1)]
    assert all(v.is_cpu_addr_mirror() and v.attr.default_pat_index == 3 for v in vm)
    assert tree_matches(vm)


def test_split_left_and_right_aligned() -> None:
    vm = mirror_vm()
    madvise(vm, MadviseArgs(0, 64 * K, A, val=1))          # D3: a == A, e > E
    assert layout(vm) == [(0, 64 * K), (64 * K, M - 64 * K)]
    madvise(vm, MadviseArgs(M - 64 * K, 64 * K, A, val=3))  # D4: a < A, e == E
    assert attrs(vm) == [(0, 64 * K, 1, 3), (64 * K, M - 128 * K, 0, 3), (M - 64 * K, 64 * K, 3, 3)]
    assert tree_matches(vm)


def test_split_across_two_vmas_pieces_keep_their_own_attrs() -> None:
    vm = mirror_vm()
    madvise(vm, MadviseArgs(0, 128 * K, A, val=1))   # pages [0,128) atomic 1, [128,256) atomic 0
    madvise(vm, MadviseArgs(64 * K, 128 * K, PAT, val=2))   # D5 then D9
    assert attrs(vm) == [(0, 64 * K, 1, 3), (64 * K, 64 * K, 1, 2),
                         (128 * K, 64 * K, 0, 2), (192 * K, 64 * K, 0, 3)]
    assert tree_matches(vm)


def test_no_split_when_boundaries_coincide_and_gaps_ignored() -> None:
    vm = make_vm()
    vm.bind_map(0, 64 * K, flags=MIRROR)
    vm.bind_map(128 * K, 64 * K, flags=MIRROR)
    assert madvise(vm, MadviseArgs(0, 256 * K, A, val=1)) == [[0, 64 * K], [128 * K, 64 * K]]
    assert layout(vm) == [(0, 64 * K), (128 * K, 64 * K)]
    assert madvise(vm, MadviseArgs(64 * K, 64 * K, A, val=1)) == []  # only a gap


def test_bo_vma_not_split_but_changed_whole() -> None:
    vm = make_vm()
    bo = make_bo(vm, "bo1", 256 * K, ("vram", "system"))
    vm.bind_map(0, 256 * K, bo=bo)
    vm.bind_map(256 * K, 256 * K, flags=MIRROR)
    inv = madvise(vm, MadviseArgs(128 * K, 256 * K, A, val=2))
    assert layout(vm) == [(0, 256 * K), (256 * K, 128 * K), (384 * K, 128 * K)]
    assert inv == [[0, 256 * K], [256 * K, 128 * K]]
    assert vm.find_vma_by_addr(0).attr.atomic_access == 2  # type: ignore[union-attr]
    assert bo.atomic_access == 2 and bo.cpu_unmaps == 1    # VRAM BO -> GLOBAL zaps CPU maps
    assert tree_matches(vm)


def test_split_unmaps_straddling_svm_ranges() -> None:
    vm = mirror_vm()
    vm.svm = FakeSvm([(0, 64 * K), (64 * K, 128 * K), (512 * K, 576 * K)])
    madvise(vm, MadviseArgs(96 * K, 32 * K, A, val=1))
    # cut-out of the REMAP is [96K, 128K): only the straddling range goes
    assert ("unmap", 96 * K, 128 * K) in vm.svm.calls
    assert vm.svm.ranges == [(0, 64 * K), (512 * K, 576 * K)]


# -- per-type effects and skip_invalidation -------------------------------------

def test_skip_invalidation_same_value_twice() -> None:
    for t, val in ((A, 1), (PAT, 2)):
        vm = mirror_vm()
        vm.svm = FakeSvm()
        assert madvise(vm, MadviseArgs(0, 64 * K, t, val=val)) == [[0, 64 * K]]
        assert ("invalidate", 0, 64 * K) in vm.svm.calls
        assert madvise(vm, MadviseArgs(0, 64 * K, t, val=val)) == []
    vm = mirror_vm()
    assert madvise(vm, MadviseArgs(0, K, P, devmem_fd=-1, migration_policy=1)) == [[0, K]]
    assert madvise(vm, MadviseArgs(0, K, P, devmem_fd=-1, migration_policy=1)) == []
    assert madvise(vm, MadviseArgs(0, K, P, devmem_fd=-1, migration_policy=0)) == [[0, K]]


def test_preferred_loc_only_on_mirror_vmas() -> None:
    vm = make_vm()
    bo = make_bo(vm, "bo1", 64 * K, ("vram",))
    vm.bind_map(0, 64 * K, bo=bo)
    vm.bind_map(64 * K, 64 * K, flags=MIRROR)
    assert madvise(vm, MadviseArgs(0, 128 * K, P, devmem_fd=-1)) == [[64 * K, 64 * K]]
    assert vm.find_vma_by_addr(0).attr.preferred_loc.devmem_fd == 0  # type: ignore[union-attr]


def test_pat_applies_to_every_kind_except_null_invalidation() -> None:
    vm = make_vm()
    bo = make_bo(vm, "bo1", 64 * K, ("system",))
    vm.bind_map(0, 64 * K, bo=bo, pat_index=0)
    vm.bind_map(64 * K, 64 * K, flags=BindFlag.NULL)
    inv = madvise(vm, MadviseArgs(0, 128 * K, PAT, val=1))
    assert inv == [[0, 64 * K]]                    # NULL VMA changed but never invalidated
    assert [v.attr.pat_index for v in vm] == [1, 1]
    assert [v.attr.default_pat_index for v in vm] == [0, 0]


def test_atomic_userptr_skipped_unless_device_with_smem_atomics() -> None:
    for smem, val, changed in ((False, 1, False), (True, 1, True), (True, 2, False)):
        vm = make_vm(smem_atomics=smem)
        vm.bind_map(0, 64 * K, pat_index=1, userptr=True)
        inv = madvise(vm, MadviseArgs(0, 64 * K, A, val=val))
        assert (inv != []) is changed
        assert (vm.find_vma_by_addr(0).attr.atomic_access == val) is changed  # type: ignore[union-attr]


@pytest.mark.parametrize("placements, smem, val, ok", [
    (("vram",), False, AtomicAccess.CPU, False),
    (("system",), False, AtomicAccess.CPU, True),
    (("system",), False, AtomicAccess.DEVICE, False),
    (("system",), True, AtomicAccess.DEVICE, True),
    (("vram",), False, AtomicAccess.DEVICE, True),
    (("vram",), False, AtomicAccess.GLOBAL, False),
    (("system",), False, AtomicAccess.GLOBAL, False),
    (("vram", "system"), False, AtomicAccess.GLOBAL, True),
    (("vram",), False, AtomicAccess.UNDEFINED, True),
])
def test_bo_atomic_checks(placements: tuple[str, ...], smem: bool, val: int, ok: bool) -> None:
    vm = make_vm(smem_atomics=smem)
    bo = make_bo(vm, "bo1", 64 * K, placements)
    vm.bind_map(0, 64 * K, bo=bo)
    if ok:
        madvise(vm, MadviseArgs(0, 64 * K, A, val=int(val)))
        assert bo.atomic_access == val
    else:
        with pytest.raises(XeError) as ei:
            madvise(vm, MadviseArgs(0, 64 * K, A, val=int(val)))
        assert ei.value.errno == errno.EINVAL
        assert bo.atomic_access == 0 and vm.find_vma_by_addr(0).attr.atomic_access == 0  # type: ignore[union-attr]


def test_bo_atomic_differs_from_vma_forces_invalidation() -> None:
    vm = make_vm()
    bo = make_bo(vm, "bo1", 64 * K, ("vram", "system"))
    vm.bind_map(0, 64 * K, bo=bo)
    madvise(vm, MadviseArgs(0, 64 * K, A, val=2))
    bo.atomic_access = 0                      # BO attr changed behind the VMA's back
    assert madvise(vm, MadviseArgs(0, 64 * K, A, val=2)) == [[0, 64 * K]]


def test_flush_called_first() -> None:
    vm = mirror_vm()
    vm.svm = FakeSvm()
    madvise(vm, MadviseArgs(0, K, A, val=1))
    assert vm.svm.calls[0] == ("flush",)
