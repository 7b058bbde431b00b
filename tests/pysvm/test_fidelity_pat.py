"""The PAT rules of 7.0: XE_COH_2WAY entries and the optimised-L2-flush rule (issue 14).

Kernel (7.0, bvanassche/linux 84bd6185 xe_vm.c and the xe_vm_madvise.c with
madvise_purgeable()): vm_bind_ioctl_check_args() (the XE_WARN_ON for a coherency mode
above XE_COH_2WAY; L2-flush-optimised device, MAP_USERPTR or CPU_ADDR_MIRROR, pat_index
not 19 and not 2-way: EINVAL), xe_vm_bind_ioctl_validate_bo() (the same for an imported
BO), madvise_args_are_sane() (the XE_WARN_ON) and xe_vm_madvise_ioctl() (the rule over
CPU-mirror/userptr VMAs right after get_vmas(), over imported BOs in the drm_exec loop;
both after the split, which stays). v6.18: no XE_COH_2WAY (a mode above
XE_COH_AT_LEAST_1WAY is the XE_WARN_ON, EINVAL) and no L2 rule.
"""

from __future__ import annotations

import errno

import pytest
from test_fidelity import BUF, K, M, _errno, _exc

from pysvm import World
from pysvm.xe.device import DEFAULT_PAT_COH, L2_FLUSH_PAT_INDEX

#: The Xe2 table with its 2-way entries (XE2_PAT() coherency field 3: 2, 7, 23, 27, 31)
#: reported as XE_COH_2WAY, index 19 made a valid 1-way entry as in the Xe3p table
#: (xe_pat.c xe3p_lpg_pat_table[19]), and index 6 an unknown mode 4.
TWO_WAY = (2, 7, 23, 27, 31)
PAT_7_0 = [3 if i in TWO_WAY else 2 if i == 19 else 4 if i == 6 else c
           for i, c in enumerate(DEFAULT_PAT_COH)]
ONE_WAY, NON_COH, UNKNOWN = 1, 0, 6


def _world(profile: str, *, l2: bool = True, mirror: bool = True) -> World:
    w = World(profile)
    w.device(name="gpu0", pat_coh=PAT_7_0, l2_flush_optimized=l2)
    w.vm_create(vm="vm0", device="gpu0", fault_mode=True)
    w.mmap(addr=BUF, size=16 * M)
    if mirror:
        w.bind(vm="vm0", op="map", addr=BUF, range=4 * M, flags=["cpu_addr_mirror"],
               pat_index=L2_FLUSH_PAT_INDEX)
    return w


def _vmas(w: World) -> list[tuple[int, int, int]]:
    return [(v["addr"], v["range"], v["attrs"]["pat_index"]) for v in w.query(vm="vm0")["vmas"]]


def test_the_table_as_given() -> None:
    w = _world("7.0")
    dev = w.devices["gpu0"]
    assert dev.n_pat_entries == 32 and dev.pat_coh_mode(2) == 3 and dev.pat_coh_mode(19) == 2
    assert L2_FLUSH_PAT_INDEX == 19


def test_6_18_refuses_a_2way_entry_at_bind_and_madvise() -> None:
    """v6.18 vm_bind_ioctl_check_args() / madvise_args_are_sane(): XE_WARN_ON(coh_mode >
    XE_COH_AT_LEAST_1WAY) -> EINVAL; nothing changes."""
    w = _world("6.18", l2=False)
    before = _vmas(w)
    e = _exc(w.bind, vm="vm0", op="map", addr=BUF + 8 * M, range=M, flags=["cpu_addr_mirror"],
             pat_index=TWO_WAY[0])
    assert e.errno == errno.EINVAL and "unknown coherency mode 3" in str(e)
    e = _exc(w.madvise, vm="vm0", addr=BUF, range=M, type="pat", val=TWO_WAY[1])
    assert e.errno == errno.EINVAL and "unknown coherency mode 3" in str(e)
    assert _vmas(w) == before


def test_7_0_accepts_2way_and_refuses_above_it() -> None:
    """7.0: XE_COH_2WAY is valid; XE_WARN_ON(coh_mode > XE_COH_2WAY) -> EINVAL."""
    w = _world("7.0", l2=False)
    w.bind(vm="vm0", op="map", addr=BUF + 8 * M, range=M, flags=["cpu_addr_mirror"],
           pat_index=TWO_WAY[0])
    assert w.madvise(vm="vm0", addr=BUF, range=M, type="pat", val=TWO_WAY[2]) is not None
    before = _vmas(w)
    e = _exc(w.bind, vm="vm0", op="map", addr=BUF + 12 * M, range=M,
             flags=["cpu_addr_mirror"], pat_index=UNKNOWN)
    assert e.errno == errno.EINVAL and "unknown coherency mode 4" in str(e)
    e = _exc(w.madvise, vm="vm0", addr=BUF, range=M, type="pat", val=UNKNOWN)
    assert e.errno == errno.EINVAL and "unknown coherency mode 4" in str(e)
    assert _vmas(w) == before


def test_l2_flush_device_binds_mirror_and_userptr_only_with_19_or_2way() -> None:
    """vm_bind_ioctl_check_args() (7.0): xe_device_is_l2_flush_optimized() &&
    (MAP_USERPTR || CPU_ADDR_MIRROR) && pat_index != 19 && coh_mode != XE_COH_2WAY."""
    w = _world("7.0", mirror=False)
    for op, flags in (("map", ["cpu_addr_mirror"]), ("map_userptr", [])):
        e = _exc(w.bind, vm="vm0", op=op, addr=BUF, range=M, flags=flags, pat_index=ONE_WAY,
                 offset=BUF if op == "map_userptr" else 0)
        assert e.errno == errno.EINVAL and "optimised L2 flush" in str(e)
    assert _vmas(w) == []
    # the userptr XE_COH_NONE check (B25) comes first
    e = _exc(w.bind, vm="vm0", op="map_userptr", addr=BUF, range=M, pat_index=NON_COH,
             offset=BUF)
    assert "userptr needs a coherent PAT index" in str(e)
    w.bind(vm="vm0", op="map", addr=BUF, range=M, flags=["cpu_addr_mirror"],
           pat_index=L2_FLUSH_PAT_INDEX)
    w.bind(vm="vm0", op="map", addr=BUF + 8 * M, range=M, flags=["cpu_addr_mirror"],
           pat_index=TWO_WAY[0])          # apart: 7.0 absorbs default mirror neighbours
    w.bind(vm="vm0", op="map_userptr", addr=BUF + 2 * M, range=M, offset=BUF + 2 * M,
           pat_index=TWO_WAY[1])
    w.bind(vm="vm0", op="map_userptr", addr=BUF + 3 * M, range=M, offset=BUF + 3 * M,
           pat_index=L2_FLUSH_PAT_INDEX)
    assert len(_vmas(w)) == 4


def test_l2_flush_rule_needs_the_capability_and_7_0() -> None:
    for profile, l2 in (("7.0", False), ("6.18", True)):
        w = _world(profile, l2=l2, mirror=False)
        w.bind(vm="vm0", op="map", addr=BUF, range=M, flags=["cpu_addr_mirror"],
               pat_index=ONE_WAY)
        w.bind(vm="vm0", op="map_userptr", addr=BUF + M, range=M, offset=BUF + M,
               pat_index=ONE_WAY)
        assert len(_vmas(w)) == 2, profile


def test_l2_flush_device_refuses_an_imported_bo_but_not_a_native_one() -> None:
    """xe_vm_bind_ioctl_validate_bo() (7.0): an imported BO (import_attach) on an
    L2-flush-optimised device needs pat_index 19 or a 2-way entry; a native BO does not."""
    w = _world("7.0", mirror=False)
    w.bo_create(bo="imp", device="gpu0", size=M, imported=True)
    w.bo_create(bo="own", device="gpu0", size=M, cpu_caching="wb")
    e = _exc(w.bind, vm="vm0", op="map", addr=BUF, range=M, bo="imp", pat_index=ONE_WAY)
    assert e.errno == errno.EINVAL and "imported BO imp" in str(e)
    assert _vmas(w) == []
    w.bind(vm="vm0", op="map", addr=BUF, range=M, bo="own", pat_index=ONE_WAY)
    w.bind(vm="vm0", op="map", addr=BUF + M, range=M, bo="imp", pat_index=TWO_WAY[0])
    w.bind(vm="vm0", op="map", addr=BUF + 2 * M, range=M, bo="imp", pat_index=19)
    assert len(_vmas(w)) == 3
    w6 = _world("6.18", mirror=False)
    w6.bo_create(bo="imp", device="gpu0", size=M, imported=True)
    w6.bind(vm="vm0", op="map", addr=BUF, range=M, bo="imp", pat_index=ONE_WAY)


def test_l2_flush_madvise_over_mirror_refused_after_the_split() -> None:
    """xe_vm_madvise_ioctl() (7.0): has_svm_userptr_vmas && l2 flush optimised &&
    pat_index != 19 && not 2-way -> EINVAL after xe_vm_alloc_madvise_vma(), whose split
    stays; the PAT itself is not applied."""
    w = _world("7.0")
    p19 = L2_FLUSH_PAT_INDEX
    assert _vmas(w) == [(BUF, 4 * M, p19)]
    e = _exc(w.madvise, vm="vm0", addr=BUF + M, range=M, type="pat", val=ONE_WAY)
    assert e.errno == errno.EINVAL and "optimised L2 flush" in str(e)
    assert _vmas(w) == [(BUF, M, p19), (BUF + M, M, p19), (BUF + 2 * M, 2 * M, p19)]
    w.madvise(vm="vm0", addr=BUF + M, range=M, type="pat", val=TWO_WAY[0])
    w.madvise(vm="vm0", addr=BUF + 2 * M, range=M, type="pat", val=TWO_WAY[1])
    assert [p for *_, p in _vmas(w)] == [p19, TWO_WAY[0], TWO_WAY[1], p19]


def test_l2_flush_madvise_over_bos_refuses_only_imported_ones() -> None:
    """xe_vm_madvise_ioctl() (7.0): in the loop over BO VMAs, an imported BO with a PAT
    index that is not 19 and not 2-way -> EINVAL; a native BO VMA takes the PAT."""
    w = _world("7.0", mirror=False)
    w.bo_create(bo="imp", device="gpu0", size=M, imported=True)
    w.bo_create(bo="own", device="gpu0", size=M, cpu_caching="wb")
    w.bind(vm="vm0", op="map", addr=BUF, range=M, bo="own", pat_index=ONE_WAY)
    w.bind(vm="vm0", op="map", addr=BUF + M, range=M, bo="imp", pat_index=TWO_WAY[0])
    w.madvise(vm="vm0", addr=BUF, range=M, type="pat", val=4)          # 1-way, native BO
    e = _exc(w.madvise, vm="vm0", addr=BUF, range=2 * M, type="pat", val=ONE_WAY)
    assert e.errno == errno.EINVAL and "imported BO imp" in str(e)
    assert [p for *_, p in _vmas(w)] == [4, TWO_WAY[0]]
    assert _errno(w.madvise, vm="vm0", addr=BUF + M, range=M, type="pat",
                  val=ONE_WAY) == errno.EINVAL
    w.madvise(vm="vm0", addr=BUF + M, range=M, type="pat", val=19)
    assert [p for *_, p in _vmas(w)] == [4, 19]


@pytest.mark.parametrize("bad", [[], [1] * 65, [16], [-1]])
def test_a_bad_pat_table_is_refused(bad: list[int]) -> None:
    w = World("7.0")
    assert _errno(w.device, name="gpu0", pat_coh=bad) == errno.EINVAL
    assert w.devices == {}
    assert K == 4096
