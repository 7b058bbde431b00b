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
