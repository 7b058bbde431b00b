"""madvise: validation rules in kernel order, refusals after the split, splits D1-D9,
attribute inheritance, per-type effects and skip_invalidation.

Kernel: drivers/gpu/drm/xe/xe_vm_madvise.c (madvise_args_are_sane(),
xe_vm_madvise_ioctl()), xe_vm.c (xe_vm_alloc_madvise_vma()).
"""

from __future__ import annotations

import errno
from typing import Any

import pytest
from xe_helpers import (
    MIRROR,
    FakePagemap,
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
from pysvm.xe.attr import AtomicAccess, BindFlag, CohMode, MemRangeAttr
from pysvm.xe.device import DEFAULT_PAT_COH, Device
from pysvm.xe.vm import Vm
from pysvm.xe.vm_madvise import MadviseArgs, madvise
from pysvm.xe.vma import CREATE_MASK, VmaFlag

P, A, PAT, PURGE = (MemRangeAttr.PREFERRED_LOC, MemRangeAttr.ATOMIC, MemRangeAttr.PAT,
                    MemRangeAttr.PURGEABLE_STATE)

#: A PAT table with one entry (index 5) whose coherency mode is beyond
#: AT_LEAST_1WAY, to reach the kernel's "unknown coherency mode" warning.
#: index 5 reports coherency mode 4: above XE_COH_2WAY (7.0) and above
#: XE_COH_AT_LEAST_1WAY (6.18), so the XE_WARN_ON check refuses it in both.
ODD_PAT = tuple(4 if i == 5 else c for i, c in enumerate(DEFAULT_PAT_COH))


def mirror_vm(profile: str = "6.18", **kw: Any) -> Vm:
    vm = make_vm(profile, **kw)
    vm.bind_map(0, 1 * M, flags=MIRROR, pat_index=3)
    return vm


def refuse(vm: Vm, args: MadviseArgs) -> XeError:
    """madvise must fail and leave every VMA, the tree, BOs and counters as they were."""
    before = snapshot(vm)
    with pytest.raises(XeError) as ei:
        madvise(vm, args)
    assert snapshot(vm) == before
    return ei.value


# -- argument rules, one test per rule, in the kernel's order -------------------
#
# Each chain lists the rules madvise_args_are_sane() applies to one type, in
# order: (rule id, fields that break it, words of its message). A rule's test
# breaks that rule and every later rule of its chain at once (where fields do
# not collide the earlier value wins), so it fails if the model checked a later
# rule first.

COMMON = [
    ("start-aligned", {"start": K + 1}, "start 0x1001 is not 4 KiB aligned"),
    ("range-aligned", {"range": K + 1}, "range 0x1001 is not 4 KiB aligned"),
    ("range-min", {"range": 0}, "range is smaller than 4 KiB"),
]
TAIL = [("reserved", {"reserved": (0, 1)}, "reserved[] must be 0")]

CHAINS: dict[str, list[tuple[str, dict[str, Any], str]]] = {
    "6.18/preferred_loc": COMMON + [
        ("fd-min", {"devmem_fd": -2}, "devmem_fd -2 < -1"),
        ("policy-max", {"migration_policy": 2}, "migration_policy 2 > 1"),
        ("loc-pad", {"region_instance": 1}, "preferred_mem_loc.pad must be 0"),
        ("loc-reserved", {"union_reserved": 1}, "preferred_mem_loc.reserved must be 0"),
    ] + TAIL,
    "newest/preferred_loc": COMMON + [
        ("fd-min", {"devmem_fd": -2}, "devmem_fd -2 < -1"),
        ("region-instance", {"devmem_fd": -1, "region_instance": 1},
         "region_instance must be 0 unless devmem_fd names a device"),
        ("policy-max", {"migration_policy": 2}, "migration_policy 2 > 1"),
        ("loc-reserved", {"union_reserved": 1}, "preferred_mem_loc.reserved must be 0"),
    ] + TAIL,
    "6.18/atomic": COMMON + [
        ("atomic-max", {"val": 4}, "atomic val 4 > 3"),
        ("atomic-pad", {"pad": 1}, "atomic.pad must be 0"),
        ("atomic-reserved", {"union_reserved": 5}, "atomic.reserved must be 0"),
    ] + TAIL,
    "6.18/pat": COMMON + [
        ("pat-table", {"val": 32}, "pat_index 32 >= 32 entries"),
        ("pat-reserved-entry", {"val": 19}, "pat_index 19 is a reserved PAT entry"),
        ("pat-coh-unknown", {"val": 5}, "pat_index 5 has an unknown coherency mode 4"),
        ("pat-pad", {"pad": 1}, "pat_index.pad must be 0"),
        ("pat-reserved", {"union_reserved": 1}, "pat_index.reserved must be 0"),
    ] + TAIL,
    "6.18/unknown-type": COMMON + [
        ("unknown-type", {"type": 7}, "unknown attribute type 7"),
    ] + TAIL,
    "6.18/purgeable-is-unknown": COMMON + [
        ("unknown-type", {"type": 3}, "unknown attribute type 3"),
    ] + TAIL,
    "newest/purgeable": COMMON + [
        ("purge-val", {"val": 2}, "purgeable state 2 is neither WILLNEED"),
        ("purge-pad", {"pad": 1}, "purge_state_val.pad must be 0"),
    ] + TAIL,
}
BASE_TYPE = {"preferred_loc": P, "atomic": A, "pat": PAT, "unknown-type": A,
             "purgeable-is-unknown": A, "purgeable": PURGE}
BASE_VAL = {"pat": 1}   # a valid, coherent PAT index


def chain_cases() -> list[Any]:
    out = []
    for chain, rules in CHAINS.items():
        for k, (rule, _, msg) in enumerate(rules):
            out.append(pytest.param(chain, k, msg, id=f"{chain}:{k}:{rule}"))
    return out


def chain_args(chain: str, k: int, *, later: bool) -> MadviseArgs:
    kind = chain.split("/")[1]
    fields: dict[str, Any] = {"start": 0, "range": 64 * K, "type": int(BASE_TYPE[kind]),
                              "val": BASE_VAL.get(kind, 0)}
    broken: dict[str, Any] = {}
    for _, brk, _ in CHAINS[chain][k:] if later else CHAINS[chain][k:k + 1]:
        for f, v in brk.items():
            broken.setdefault(f, v)
    fields.update(broken)
    return MadviseArgs(**fields)


@pytest.mark.pure_model   # a duck-typed fake (xe_helpers)
@pytest.mark.parametrize("chain, k, msg", chain_cases())
def test_rule_alone(chain: str, k: int, msg: str) -> None:
    """Breaking one rule: EINVAL with that rule's message, nothing changed, no GC flush."""
    vm = mirror_vm(chain.split("/")[0], pat_coh=ODD_PAT)
    vm.svm = FakeSvm()
    e = refuse(vm, chain_args(chain, k, later=False))
    assert e.errno == errno.EINVAL and msg in str(e)
    assert vm.svm.calls == []      # arguments are checked before the GC flush


@pytest.mark.parametrize("chain, k, msg", chain_cases())
def test_rule_order(chain: str, k: int, msg: str) -> None:
    """Breaking a rule and all later ones at once reports the earliest (kernel order)."""
    vm = mirror_vm(chain.split("/")[0], pat_coh=ODD_PAT)
    e = refuse(vm, chain_args(chain, k, later=True))
    assert e.errno == errno.EINVAL and msg in str(e)


def test_6_18_preferred_loc_reserved_is_the_shared_union_slot() -> None:
    # 002f817d checks atomic.reserved for a preferred_loc request; it is the same
    # u64 as preferred_mem_loc.reserved, so one field models both
    vm = mirror_vm()
    assert "reserved" in str(refuse(vm, MadviseArgs(0, K, P, union_reserved=1 << 63)))


def test_valid_args_with_every_optional_field_zero_pass() -> None:
    vm = mirror_vm()
    for t, val in ((P, 0), (A, 3), (PAT, 4)):
        madvise(vm, MadviseArgs(0, K, t, val=val))


# -- refusals after the argument checks ----------------------------------------

@pytest.mark.pure_model   # a duck-typed fake (xe_helpers)
def test_killed_vm_enoent_after_flush() -> None:
    vm = mirror_vm()
    vm.svm = FakeSvm()
    vm.kill()
    e = refuse(vm, MadviseArgs(0, K, A, val=1))
    assert e.errno == errno.ENOENT and vm.svm.calls == [("flush",)]
    # bad arguments still win over the killed VM: they are checked first
    assert refuse(vm, MadviseArgs(0, 0, A)).errno == errno.EINVAL


def test_range_beyond_vm_refused_by_the_split() -> None:
    vm = mirror_vm()
    e = refuse(vm, MadviseArgs(vm.size - K, 2 * K, A, val=1))
    assert e.errno == errno.EINVAL


def test_newest_devmem_fd_resolution_errors() -> None:
    vm = mirror_vm("newest")
    w = vm.host
    assert refuse(vm, MadviseArgs(0, K, P, devmem_fd=99, region_instance=1)).errno == errno.ENOENT
    gpu1 = Device("gpu1", 256 * M, True, False, fd=w.next_fd())
    w.devices["gpu1"] = gpu1
    assert refuse(vm, MadviseArgs(0, K, P, devmem_fd=gpu1.fd,
                                  region_instance=0)).errno == errno.ENOENT
    assert refuse(vm, MadviseArgs(0, K, P, devmem_fd=gpu1.fd,
                                  region_instance=2)).errno == errno.ENOENT
    assert refuse(vm, MadviseArgs(0, K, P, devmem_fd=gpu1.fd,
                                  region_instance=1)).errno == errno.ENOLINK
    w.links.add(frozenset(("gpu0", "gpu1")))
    gpu1.unbound = True
    assert refuse(vm, MadviseArgs(0, K, P, devmem_fd=gpu1.fd,
                                  region_instance=1)).errno == errno.ENODEV
    # xe_drm_pagemap_from_fd() checks the device (drm_dev_enter) before the region
    # (xe_devmem_open), so an unbound device answers ENODEV even for a bad region.
    assert refuse(vm, MadviseArgs(0, K, P, devmem_fd=gpu1.fd,
                                  region_instance=2)).errno == errno.ENODEV
    gpu1.unbound = False
    assert madvise(vm, MadviseArgs(0, K, P, devmem_fd=gpu1.fd, region_instance=1)) == [[0, K]]
    v = vm.find_vma_by_addr(0)
    assert v is not None and v.attr.preferred_loc.devmem_fd == gpu1.fd
    igpu = Device("igpu", 0, False, False, fd=w.next_fd())
    w.devices["igpu"] = igpu
    assert refuse(vm, MadviseArgs(0, K, P, devmem_fd=igpu.fd,
                                  region_instance=1)).errno == errno.ENOENT


def test_6_18_positive_fd_is_stored_unresolved() -> None:
    vm = mirror_vm()
    assert madvise(vm, MadviseArgs(0, K, P, devmem_fd=1234)) == [[0, K]]
    v = vm.find_vma_by_addr(0)
    assert v is not None and v.attr.preferred_loc.devmem_fd == 1234


@pytest.mark.pure_model   # a duck-typed fake (xe_helpers)
def test_newest_purgeable_changes_no_svm_state() -> None:
    # 7.0 madvise_purgeable(): non-BO VMAs are skipped and nothing is invalidated
    vm = mirror_vm("newest")
    vm.svm = FakeSvm()
    assert madvise(vm, MadviseArgs(0, K, PURGE, val=1, union_reserved=0xDEAD000)) == []
    assert all(v.purgeable == 0 for v in vm)


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
        assert refuse(vm, MadviseArgs(0, 64 * K, A, val=int(val))).errno == errno.EINVAL


def test_bo_atomic_refusal_comes_after_the_split() -> None:
    vm = make_vm()
    bo = make_bo(vm, "bo1", 64 * K, ("vram",))
    vm.bind_map(0, 64 * K, bo=bo)
    vm.bind_map(64 * K, 128 * K, flags=MIRROR, pat_index=2)
    with pytest.raises(XeError) as ei:
        madvise(vm, MadviseArgs(0, 128 * K, A, val=int(AtomicAccess.CPU)))
    assert ei.value.errno == errno.EINVAL
    # the mirror VMA stays split at 128K (as in the kernel), with old attributes
    assert layout(vm) == [(0, 64 * K), (64 * K, 64 * K), (128 * K, 64 * K)]
    assert [v.attr.atomic_access for v in vm] == [0, 0, 0] and bo.atomic_access == 0
    assert [v.attr.default_pat_index for v in vm][1:] == [2, 2] and tree_matches(vm)


def test_newest_igpu_coh_none_pat_refused_over_mirror_after_split() -> None:
    vm = make_vm("newest", discrete=False)
    vm.bind_map(0, 128 * K, flags=MIRROR, pat_index=1)
    assert vm.device.pat_coh_mode(0) == CohMode.NONE
    with pytest.raises(XeError) as ei:
        madvise(vm, MadviseArgs(0, 64 * K, PAT, val=0))
    assert ei.value.errno == errno.EINVAL and "integrated" in str(ei.value)
    assert layout(vm) == [(0, 64 * K), (64 * K, 64 * K)]      # split kept
    assert [v.attr.pat_index for v in vm] == [1, 1]
    assert madvise(vm, MadviseArgs(0, 64 * K, PAT, val=2)) == [[0, 64 * K]]  # coherent: fine


def test_igpu_coh_none_rule_is_newest_only_and_igpu_only() -> None:
    for profile, discrete in (("6.18", False), ("newest", True)):
        vm = make_vm(profile, discrete=discrete)
        vm.bind_map(0, 64 * K, flags=MIRROR, pat_index=1)
        assert madvise(vm, MadviseArgs(0, 64 * K, PAT, val=0)) == [[0, 64 * K]]
    vm = make_vm("newest", discrete=False)      # NULL and BO VMAs are not refused
    bo = make_bo(vm, "bo1", 64 * K, ("system",))
    vm.bind_map(0, 64 * K, bo=bo, pat_index=1)
    vm.bind_map(64 * K, 64 * K, flags=BindFlag.NULL, pat_index=1)
    assert madvise(vm, MadviseArgs(0, 128 * K, PAT, val=0)) == [[0, 64 * K]]


# -- the split: every shape of drm_gpuvm_madvise_ops_create on a mirror VMA -----
#
# The VMA V = [64K, 192K) is a CPU-mirror VMA bound read-only and dumpable with
# PAT 3, then given non-default values in every attribute field. Each request
# [A, E) places V in one row of the D1..D9 table (spec 2.6). ``inside`` lists
# the pieces that must carry the new atomic value; all pieces must keep V's
# flags, default_pat_index and other attribute values.

V0, V1 = 64 * K, 192 * K
SHAPES = [
    ("D1", (V0, V1), [(V0, V1 - V0)], [0]),
    ("D2", (V0, 256 * K), [(V0, V1 - V0)], [0]),
    ("D3", (V0, 128 * K), [(V0, 64 * K), (128 * K, 64 * K)], [0]),
    ("D4", (128 * K, V1), [(V0, 64 * K), (128 * K, 64 * K)], [1]),
    ("D5", (128 * K, 256 * K), [(V0, 64 * K), (128 * K, 64 * K)], [1]),
    ("D6", (96 * K, 160 * K), [(V0, 32 * K), (96 * K, 64 * K), (160 * K, 32 * K)], [1]),
    ("D7", (0, V1), [(V0, V1 - V0)], [0]),
    ("D8", (0, 256 * K), [(V0, V1 - V0)], [0]),
    ("D9", (0, 128 * K), [(V0, 64 * K), (128 * K, 64 * K)], [0]),
]


def shaped_vm(profile: str = "6.18") -> tuple[Vm, FakePagemap | None]:
    vm = make_vm(profile)
    flags = MIRROR | BindFlag.READONLY | BindFlag.DUMPABLE
    if profile == "newest":
        flags |= BindFlag.MADVISE_AUTORESET
    vm.bind_map(V0, V1 - V0, flags=flags, pat_index=3)
    (v,) = list(vm)
    v.attr.preferred_loc.devmem_fd = -1
    v.attr.preferred_loc.migration_policy = 1
    v.attr.atomic_access = int(AtomicAccess.GLOBAL)
    v.attr.pat_index = 2
    pm = None
    if profile == "newest":
        pm = FakePagemap()
        pm.get()                     # the VMA's reference
        v.attr.preferred_loc.pagemap = pm
    return vm, pm


@pytest.mark.pure_model   # a duck-typed fake (xe_helpers)
@pytest.mark.parametrize("profile", ["6.18", "newest"])
@pytest.mark.parametrize("shape, req, pieces, inside", SHAPES, ids=[s[0] for s in SHAPES])
def test_split_shape(profile: str, shape: str, req: tuple[int, int],
                     pieces: list[tuple[int, int]], inside: list[int]) -> None:
    vm, pm = shaped_vm(profile)
    (old,) = list(vm)
    flags, old_attr = old.flags, attr_key(old.attr)
    start, end = req
    inv = madvise(vm, MadviseArgs(start, end - start, A, val=int(AtomicAccess.CPU)))
    assert layout(vm) == pieces and tree_matches(vm)
    assert inv == [list(pieces[i]) for i in inside]
    assert vm.host.stats["madvise_splits"] == (0 if len(pieces) == 1 else 1)
    for i, v in enumerate(vm):
        assert v.flags == flags & CREATE_MASK and v.is_cpu_addr_mirror() and v.read_only()
        want = list(old_attr)
        if i in inside:
            want[3] = int(AtomicAccess.CPU)
        assert attr_key(v.attr) == tuple(want), (shape, i)
        assert v.attr.preferred_loc.pagemap is pm       # the same pagemap, referenced
    if pm is not None:
        # the test's reference plus one per piece: copies take a reference and
        # the destroyed VMA drops its own
        assert pm.refs == 1 + len(pieces)


def test_two_remaps_in_one_request_each_piece_keeps_its_own_vma() -> None:
    vm = make_vm()
    vm.bind_map(0, 64 * K, flags=MIRROR, pat_index=1)
    vm.bind_map(64 * K, 64 * K, flags=MIRROR | BindFlag.READONLY, pat_index=2)
    vm.bind_map(128 * K, 64 * K, flags=MIRROR | BindFlag.DUMPABLE, pat_index=4)
    inv = madvise(vm, MadviseArgs(32 * K, 128 * K, PAT, val=0))   # D5, D8, D9
    assert layout(vm) == [(0, 32 * K), (32 * K, 32 * K), (64 * K, 64 * K),
                          (128 * K, 32 * K), (160 * K, 32 * K)]
    assert inv == [[32 * K, 32 * K], [64 * K, 64 * K], [128 * K, 32 * K]]
    assert [v.attr.default_pat_index for v in vm] == [1, 1, 2, 4, 4]
    assert [v.attr.pat_index for v in vm] == [1, 0, 0, 0, 4]
    assert [bool(v.flags & VmaFlag.READ_ONLY) for v in vm] == [0, 0, 1, 0, 0]
    assert [bool(v.flags & VmaFlag.DUMPABLE) for v in vm] == [0, 0, 0, 1, 1]
    assert vm.host.stats["madvise_splits"] == 2 and tree_matches(vm)


def test_no_split_when_boundaries_coincide_and_gaps_ignored() -> None:
    vm = make_vm()
    vm.bind_map(0, 64 * K, flags=MIRROR)
    vm.bind_map(128 * K, 64 * K, flags=MIRROR)
    assert madvise(vm, MadviseArgs(0, 256 * K, A, val=1)) == [[0, 64 * K], [128 * K, 64 * K]]
    assert layout(vm) == [(0, 64 * K), (128 * K, 64 * K)]
    before = snapshot(vm)
    assert madvise(vm, MadviseArgs(64 * K, 64 * K, A, val=1)) == []   # only a gap
    assert snapshot(vm)[:4] == before[:4]


def test_madvise_never_merges() -> None:
    vm = mirror_vm()
    madvise(vm, MadviseArgs(64 * K, 64 * K, A, val=1))
    madvise(vm, MadviseArgs(64 * K, 64 * K, A, val=0))       # back to default values
    assert layout(vm) == [(0, 64 * K), (64 * K, 64 * K), (128 * K, M - 128 * K)]
    assert all(v.has_default_mem_attrs() for v in vm)


@pytest.mark.parametrize("bo_at, req, whole", [
    ("start", (128 * K, 256 * K), (0, 256 * K)),         # BO straddles the request start
    ("end", (128 * K, 256 * K), (256 * K, 256 * K)),     # BO straddles the request end
    ("inside", (64 * K, 64 * K), (0, 256 * K)),          # request strictly inside the BO
])
def test_bo_vma_not_split_but_changed_whole(bo_at: str, req: tuple[int, int],
                                            whole: tuple[int, int]) -> None:
    vm = make_vm()
    bo = make_bo(vm, "bo1", 256 * K, ("vram", "system"))
    if bo_at == "end":
        vm.bind_map(0, 256 * K, flags=MIRROR)
        vm.bind_map(256 * K, 256 * K, bo=bo)
    else:
        vm.bind_map(0, 256 * K, bo=bo)
        vm.bind_map(256 * K, 256 * K, flags=MIRROR)
    inv = madvise(vm, MadviseArgs(req[0], req[1], A, val=2))
    bo_vma = next(v for v in vm if v.bo is not None)
    assert (bo_vma.addr, bo_vma.range) == whole and bo_vma.offset == 0
    assert bo_vma.attr.atomic_access == 2 and list(whole) in inv
    assert bo.atomic_access == 2 and bo.cpu_unmaps == 1   # VRAM BO -> GLOBAL zaps CPU maps
    for v in vm:
        if v.bo is None:     # mirror pieces inside the request changed, outside not
            assert (v.attr.atomic_access == 2) == (req[0] <= v.addr < req[0] + req[1])
    assert tree_matches(vm)


def test_null_vma_is_split_and_keeps_sparse() -> None:
    vm = make_vm()
    vm.bind_map(0, 128 * K, flags=BindFlag.NULL, pat_index=1)
    inv = madvise(vm, MadviseArgs(32 * K, 32 * K, PAT, val=2))
    assert layout(vm) == [(0, 32 * K), (32 * K, 32 * K), (64 * K, 64 * K)]
    assert all(v.is_null() for v in vm) and inv == []       # NULL VMAs never invalidated
    assert [v.attr.pat_index for v in vm] == [1, 2, 1]


def test_userptr_vma_split_is_efault_and_unwound() -> None:
    # Kernel: drm_gpuvm_madvise_ops_create() gives the piece inside the request a MAP
    # op with only a VA (gem.offset 0); new_vma() (xe_vm.c) pins a userptr at CPU
    # address 0, which fails with EFAULT, and xe_vm_alloc_vma() unwinds the split.
    vm = make_vm()
    vm.host.mm.mmap(0x7000_0000, 128 * K)         # new_vma() pins the userptr at bind
    vm.bind_map(0, 128 * K, userptr=True, offset=0x7000_0000, pat_index=1)
    before = [(v.addr, v.range, v.offset, v.attr.pat_index) for v in vm]
    with pytest.raises(XeError) as ei:
        madvise(vm, MadviseArgs(32 * K, 32 * K, PAT, val=2))
    assert ei.value.errno == errno.EFAULT
    assert [(v.addr, v.range, v.offset, v.attr.pat_index) for v in vm] == before
    # a madvise covering the whole userptr VMA splits nothing and succeeds
    madvise(vm, MadviseArgs(0, 128 * K, PAT, val=2))
    assert [(v.addr, v.attr.pat_index) for v in vm] == [(0, 2)]


@pytest.mark.pure_model   # a duck-typed fake (xe_helpers)
def test_split_unmaps_straddling_svm_ranges() -> None:
    vm = mirror_vm()
    vm.svm = FakeSvm([(0, 64 * K), (64 * K, 128 * K), (512 * K, 576 * K)])
    madvise(vm, MadviseArgs(96 * K, 32 * K, A, val=1))
    # the REMAP's cut-out is [96K, 128K): only the range straddling it goes
    assert ("unmap", 96 * K, 128 * K) in vm.svm.calls
    assert vm.svm.ranges == [(0, 64 * K), (512 * K, 576 * K)]


# -- per-type effects and skip_invalidation --------------------------------------

@pytest.mark.parametrize("t, first, other", [
    (A, {"val": 1}, {"val": 2}),
    (PAT, {"val": 1}, {"val": 2}),
    (P, {"devmem_fd": -1, "migration_policy": 1}, {"devmem_fd": -1, "migration_policy": 0}),
    (P, {"devmem_fd": -1}, {"devmem_fd": 0}),
])
@pytest.mark.pure_model   # a duck-typed fake (xe_helpers)
def test_skip_invalidation_on_mirror(t: int, first: dict[str, Any],
                                     other: dict[str, Any]) -> None:
    vm = mirror_vm()
    vm.svm = FakeSvm()
    req = (64 * K, 64 * K)

    def inval_calls() -> int:
        return sum(1 for c in vm.svm.calls if c[0] == "invalidate")

    assert madvise(vm, MadviseArgs(req[0], req[1], t, **first)) == [list(req)]
    assert inval_calls() == 1
    assert madvise(vm, MadviseArgs(req[0], req[1], t, **first)) == []      # same value: skipped
    assert inval_calls() == 1
    assert vm.find_vma_by_addr(req[0]).skip_invalidation  # type: ignore[union-attr]
    assert madvise(vm, MadviseArgs(req[0], req[1], t, **other)) == [list(req)]   # changed: listed
    assert inval_calls() == 2 and vm.svm.calls[-1] == ("invalidate", 64 * K, 128 * K)


def test_skip_invalidation_on_bo_vma_marks_tiles_invalidated() -> None:
    vm = make_vm(fault_mode=False)
    bo = make_bo(vm, "bo1", 64 * K, ("vram", "system"))
    (v,) = vm.bind_map(0, 64 * K, bo=bo, pat_index=1)
    assert v.tile_present == 1 and v.tile_invalidated == 0
    assert madvise(vm, MadviseArgs(0, 64 * K, PAT, val=1)) == []    # unchanged PAT
    assert v.tile_invalidated == 0
    assert madvise(vm, MadviseArgs(0, 64 * K, P, devmem_fd=-1)) == []  # not a mirror
    assert madvise(vm, MadviseArgs(0, 64 * K, PAT, val=2)) == [[0, 64 * K]]
    assert v.tile_invalidated == 1
    assert madvise(vm, MadviseArgs(0, 64 * K, A, val=2)) == [[0, 64 * K]]
    assert madvise(vm, MadviseArgs(0, 64 * K, A, val=2)) == []


def test_preferred_loc_only_on_mirror_vmas() -> None:
    vm = make_vm()
    bo = make_bo(vm, "bo1", 64 * K, ("vram",))
    vm.bind_map(0, 64 * K, bo=bo)
    vm.bind_map(64 * K, 64 * K, flags=MIRROR)
    assert madvise(vm, MadviseArgs(0, 128 * K, P, devmem_fd=-1)) == [[64 * K, 64 * K]]
    v = vm.find_vma_by_addr(0)
    assert v is not None and v.attr.preferred_loc.devmem_fd == 0


def test_pat_applies_to_every_kind_null_never_invalidated() -> None:
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
        vm.host.mm.mmap(0x7000_0000, 64 * K)      # new_vma() pins the userptr at bind
        vm.bind_map(0, 64 * K, pat_index=1, userptr=True, offset=0x7000_0000)
        inv = madvise(vm, MadviseArgs(0, 64 * K, A, val=val))
        assert (inv != []) is changed
        v = vm.find_vma_by_addr(0)
        assert v is not None and (v.attr.atomic_access == val) is changed


def test_bo_atomic_differs_from_vma_forces_invalidation() -> None:
    vm = make_vm()
    bo = make_bo(vm, "bo1", 64 * K, ("vram", "system"))
    vm.bind_map(0, 64 * K, bo=bo)
    madvise(vm, MadviseArgs(0, 64 * K, A, val=2))
    bo.atomic_access = 0                      # BO attr changed behind the VMA's back
    assert madvise(vm, MadviseArgs(0, 64 * K, A, val=2)) == [[0, 64 * K]]
    assert bo.atomic_access == 2


@pytest.mark.pure_model   # a duck-typed fake (xe_helpers)
def test_flush_called_first_and_counters() -> None:
    vm = mirror_vm()
    vm.svm = FakeSvm()
    madvise(vm, MadviseArgs(0, K, A, val=1))
    assert vm.svm.calls[0] == ("flush",)
    s = vm.host.stats
    assert (s["madvise_calls"], s["madvise_splits"], s["madvise_invalidations"]) == (1, 1, 1)


@pytest.mark.pure_model   # a duck-typed fake (xe_helpers)
def test_newest_preferred_loc_pagemap_references() -> None:
    vm = mirror_vm("newest")
    w = vm.host
    gpu1 = Device("gpu1", 256 * M, True, False, fd=w.next_fd())
    gpu1.pagemap = FakePagemap()
    w.devices["gpu1"] = gpu1
    w.links.add(frozenset(("gpu0", "gpu1")))
    pm = gpu1.pagemap
    madvise(vm, MadviseArgs(0, 128 * K, P, devmem_fd=gpu1.fd, region_instance=1))
    assert pm.refs == 2                       # the VMA [0, 128K) holds one
    madvise(vm, MadviseArgs(32 * K, 32 * K, A, val=1))   # split: 3 pieces hold one each
    assert pm.refs == 4
    madvise(vm, MadviseArgs(0, 128 * K, P, devmem_fd=-1))  # dropped by all three
    assert pm.refs == 1
