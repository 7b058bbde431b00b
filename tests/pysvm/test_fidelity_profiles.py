"""Profile decisions fixed for issue 14: each profile follows its release's source.

* 6.18 (v6.18, 7d0a66e4): DRM_XE_VM_BIND_FLAG_MADVISE_AUTORESET exists (include/uapi/drm/
  xe_drm.h) and drivers/gpu/drm/xe/xe_svm.c xe_svm_range_set_default_attr() returns early
  for a VMA without XE_VMA_MADV_AUTORESET (the 6.18-rc1 rule reset every VMA).
* 7.0: no last-fault-VMA cache: drivers/gpu/drm/xe/xe_pagefault.c xe_pagefault_service()
  stores nothing and drivers/gpu/drm/xe/xe_vm.c xe_vm_find_vma_by_addr() is
  xe_vm_find_overlapping_vma() alone; 6.18's xe_pagefault_service() stores
  vm->usm.last_fault_vma and its lookup answers from it first.
"""

from __future__ import annotations

import errno

import pytest
from test_fidelity import BUF, K, M, _errno

from pysvm import World
from pysvm.xe.profile import V6_18, V7_0

ATOMIC_GLOBAL = 2


def _world(profile: str, flags: list[str]) -> World:
    w = World(profile)
    w.device(name="gpu0")
    w.vm_create(vm="vm0", device="gpu0", fault_mode=True)
    w.bind(vm="vm0", op="map", addr=BUF, range=2 * M, flags=flags)
    # a hole between the two: 7.0 would absorb a default mirror neighbour at bind time
    w.bind(vm="vm0", op="map", addr=BUF + 4 * M, range=2 * M,
           flags=[*flags, "autoreset"])
    w.mmap(addr=BUF, size=6 * M)
    return w


def _atomic(w: World, addr: int) -> int:
    (vma,) = w.query(vm="vm0", addr=addr, range=K)["vmas"]
    value = vma["attrs"]["atomic"]
    assert isinstance(value, int)
    return value


def test_profiles_record_the_decisions() -> None:
    assert V6_18.autoreset_gating and V7_0.autoreset_gating
    assert V6_18.last_fault_vma_cache and not V7_0.last_fault_vma_cache


@pytest.mark.parametrize("profile", ["6.18", "7.0"])
def test_6_18_accepts_the_autoreset_flag_and_resets_only_its_vmas(profile: str) -> None:
    w = _world(profile, ["cpu_addr_mirror"])
    for base in (BUF, BUF + 4 * M):
        w.madvise(vm="vm0", addr=base, range=2 * M, type="atomic", val=ATOMIC_GLOBAL)
        w.gpu_access(vm="vm0", addr=base, size=K, op="read")
    w.munmap(addr=BUF, size=6 * M)
    w.gc(vm="vm0")
    assert _atomic(w, BUF) == ATOMIC_GLOBAL          # no AUTORESET: attributes kept
    assert _atomic(w, BUF + 4 * M) == 0              # AUTORESET: reset to the default


def test_7_0_lookup_has_no_last_fault_cache_on_a_killed_vm() -> None:
    # 6.18: the cached VMA answers the lookup on a banned VM and the collector refuses
    # (ENOENT); 7.0: the overlapping-VMA lookup finds nothing on a banned VM (EINVAL)
    got = {}
    for profile in ("6.18", "7.0"):
        w = World(profile)
        w.device(name="gpu0")
        w.vm_create(vm="vm0", device="gpu0", fault_mode=True)
        w.bind(vm="vm0", op="map", addr=BUF, range=2 * M, flags=["cpu_addr_mirror"])
        w.mmap(addr=BUF, size=2 * M)
        w.gpu_access(vm="vm0", addr=BUF, size=K, op="write", value=1)
        assert (w.vms["vm0"].last_fault_vma is not None) == (profile == "6.18")
        w.vm_kill(vm="vm0")
        w.invalidate(addr=BUF, size=K)
        got[profile] = _errno(w.gpu_access, vm="vm0", addr=BUF, size=K, op="read")
    assert got == {"6.18": errno.ENOENT, "7.0": errno.EINVAL}


# -- an array of binds is all or nothing (xe_vm_bind_ioctl -> vm_bind_ioctl_ops_unwind) --

def _layout(w: World) -> list[tuple[int, int, list[str], int]]:
    return [(v["addr"], v["range"], v["flags"], v["attrs"]["atomic"])
            for v in w.query(vm="vm0", addr=0, range=1 << 47)["vmas"]]


@pytest.mark.parametrize("profile", ["6.18", "7.0"])
def test_bind_array_unwinds_earlier_ops_when_a_later_op_fails(profile: str) -> None:
    # op 0 splits the mirror VMA and maps a NULL VMA, op 1 unmaps a mirror VMA that has a
    # live SVM range: EBUSY in vm_bind_ioctl_ops_parse(), so op 0 is unwound too
    w = World(profile)
    w.device(name="gpu0")
    w.vm_create(vm="vm0", device="gpu0", fault_mode=True)
    w.bind(vm="vm0", op="map", addr=BUF, range=4 * M, flags=["cpu_addr_mirror"])
    w.madvise(vm="vm0", addr=BUF, range=4 * M, type="atomic", val=ATOMIC_GLOBAL)
    w.mmap(addr=BUF, size=4 * M)
    w.gpu_access(vm="vm0", addr=BUF + 2 * M, size=K, op="write", value=7)
    before, stats = _layout(w), dict(w.stats)
    ops: list[dict[str, object]] = [
        {"op": "map", "addr": BUF, "range": 64 * K, "flags": ["null"]},
        {"op": "unmap", "addr": BUF + 2 * M, "range": 2 * M}]
    assert _errno(w.bind_array, vm="vm0", binds=ops) == errno.EBUSY
    assert _layout(w) == before
    def counters(d: dict[str, int]) -> dict[str, int]:
        return {k: n for k, n in d.items() if k not in ("events", "errors")}

    assert counters(dict(w.stats)) == counters(stats)        # no bind counted
    assert w.gpu_access(vm="vm0", addr=BUF + 2 * M, size=K, op="read")["data"] == [7]
    # the same op 0 alone goes through: the unwind, not a refusal, kept it out
    w.bind_array(vm="vm0", binds=ops[:1])
    assert _layout(w)[0][:3] == (BUF, 64 * K, ["null"])


def test_bind_array_unwind_restores_bo_accounting() -> None:
    # 7.0: op 0 replaces BO a's VMA by BO b's, op 1 maps a DONTNEED BO: EBUSY in
    # xe_vma_create(); a's VMA comes back and both BOs' counts are as before
    w = World("7.0")
    w.device(name="gpu0")
    w.vm_create(vm="vm0", device="gpu0")
    for name in ("a", "b", "c"):
        w.bo_create(bo=name, device="gpu0", size=M, placement=["system"])
    w.bind(vm="vm0", op="map", addr=BUF, range=M, bo="a")
    w.bind(vm="vm0", op="map", addr=BUF + 4 * M, range=M, bo="c")
    w.madvise(vm="vm0", addr=BUF + 4 * M, range=M, type="purgeable_state", val=1)
    bos = w.bos
    counts = {n: (bos[n].vma_count, bos[n].willneed, bos[n].purge_state) for n in "abc"}
    ops: list[dict[str, object]] = [
        {"op": "map", "addr": BUF, "range": M, "bo": "b"},
        {"op": "map", "addr": BUF + 8 * M, "range": M, "bo": "c"}]
    assert _errno(w.bind_array, vm="vm0", binds=ops) == errno.EBUSY
    assert {n: (bos[n].vma_count, bos[n].willneed, bos[n].purge_state)
            for n in "abc"} == counts
    (vma,) = w.query(vm="vm0", addr=BUF, range=M)["vmas"]
    assert vma["bo"] == "a"
