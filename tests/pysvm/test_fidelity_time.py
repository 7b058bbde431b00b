"""The virtual clock and the atomic timeslice (issue 14: time in a trace).

Kernel: drivers/gpu/drm/xe/xe_svm.c __xe_svm_handle_pagefault() (ctx.timeslice_ms is
xe->atomic_svm_timeslice_ms when the fault needs VRAM and devmem is possible, else 0;
doubled on each retry); drivers/gpu/drm/drm_pagemap.c drm_pagemap_migrate_to_devmem()
(timeslice_expiration = jiffies + timeslice on success), __drm_pagemap_migrate_to_ram()
(returns 0 without migrating while jiffies are before the expiration: the CPU faults
again) and drm_pagemap_evict_to_ram() (no such check); xe_device.c xe_device_create()
(default 5 ms), xe_debugfs.c atomic_svm_timeslice_ms (sets it).
"""

from __future__ import annotations

import errno

import pytest
from test_fidelity import BUF, K, M, _errno

from pysvm import World, XeError
from pysvm.clock import Clock
from pysvm.xe.device import ATOMIC_SVM_TIMESLICE_MS

PROFILES = ("6.18", "7.0")


def _world(profile: str, **dev: object) -> World:
    w = World(profile)
    w.device(name="gpu0", vram_mib=64, **dev)
    w.vm_create(vm="vm0", device="gpu0", fault_mode=True)
    w.mmap(addr=BUF, size=8 * M)
    w.bind(vm="vm0", op="map", addr=BUF, range=8 * M, flags=["cpu_addr_mirror"])
    w.cpu_write(addr=BUF, size=8 * M, value=7)
    return w


def _now(w: World) -> int:
    return int(w.advance(ms=0)["now_ms"])


def test_the_default_timeslice_is_the_kernels() -> None:
    assert ATOMIC_SVM_TIMESLICE_MS == 5
    w = _world("6.18")
    assert w.devices["gpu0"].atomic_svm_timeslice_ms == 5


@pytest.mark.parametrize("profile", PROFILES)
def test_a_cpu_touch_waits_until_the_atomic_timeslice_expires(profile: str) -> None:
    """__drm_pagemap_migrate_to_ram(): before the expiration the CPU fault migrates
    nothing and repeats; the model lets the clock run to the expiration, then migrates."""
    w = _world(profile, atomic_svm_timeslice_ms=20)
    assert w.gpu_access(vm="vm0", addr=BUF, size=K, op="atomic")["faults"] == 1
    assert w.advance(ms=8) == {"now_ms": 8}
    assert w.cpu_read(addr=BUF, size=K) == {"data": [8]}      # 7 + the atomic increment
    assert _now(w) == 20
    assert (w.stats["cpu_timeslice_waits"], w.stats["cpu_timeslice_wait_ms"]) == (1, 12)
    assert w.stats["migrations_to_system"] == 1


@pytest.mark.parametrize("profile", PROFILES)
def test_no_wait_once_the_timeslice_is_over(profile: str) -> None:
    w = _world(profile, atomic_svm_timeslice_ms=20)
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="atomic")
    w.advance(ms=20)                                  # time_before64(20, 20) is false
    w.cpu_write(addr=BUF, size=K, value=1)
    assert _now(w) == 20 and w.stats["cpu_timeslice_waits"] == 0
    assert w.cpu_read(addr=BUF, size=K) == {"data": [1]}


@pytest.mark.parametrize("profile", PROFILES)
def test_eviction_is_not_held_back_by_the_timeslice(profile: str) -> None:
    """drm_pagemap_evict_to_ram() has no fault page and no timeslice check."""
    w = _world(profile, atomic_svm_timeslice_ms=1000)
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="atomic")
    assert w.evict(device="gpu0")["pages"] > 0
    assert _now(w) == 0
    assert w.cpu_read(addr=BUF, size=K) == {"data": [8]}      # already in system memory
    assert _now(w) == 0 and w.stats["cpu_timeslice_waits"] == 0


@pytest.mark.parametrize("profile", PROFILES)
def test_a_fault_that_needs_no_vram_sets_no_timeslice(profile: str) -> None:
    """__xe_svm_handle_pagefault(): timeslice_ms is 0 unless need_vram && devmem_possible;
    a GPU write still migrates to VRAM (the preferred location) but the CPU need not wait."""
    w = _world(profile, atomic_svm_timeslice_ms=1000)
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="write", value=3)
    assert w.stats["migrations_to_vram"] == 1
    assert w.cpu_read(addr=BUF, size=K) == {"data": [3]}
    assert _now(w) == 0 and w.stats["cpu_timeslice_waits"] == 0


@pytest.mark.parametrize("profile", PROFILES)
def test_a_zero_timeslice_from_debugfs_never_waits(profile: str) -> None:
    w = _world(profile, atomic_svm_timeslice_ms=0)
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="atomic")
    assert w.cpu_read(addr=BUF, size=K) == {"data": [8]}
    assert _now(w) == 0 and w.stats["cpu_timeslice_waits"] == 0


@pytest.mark.parametrize("profile", PROFILES)
def test_each_allocation_has_its_own_expiration_met_in_address_order(profile: str) -> None:
    """Two 2 MiB allocations migrated 3 ms apart: one CPU read over both waits for the
    first one's expiration, then for the second one's (each fault page's own zdd)."""
    w = _world(profile, atomic_svm_timeslice_ms=10)
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="atomic")              # expires at 10
    w.advance(ms=3)
    w.gpu_access(vm="vm0", addr=BUF + 2 * M, size=K, op="atomic")      # expires at 13
    w.advance(ms=2)
    data = w.cpu_read(addr=BUF, size=4 * M)["data"]
    assert data[0] == 8 and data[512] == 8 and data.count(7) == 1022
    assert _now(w) == 13
    assert (w.stats["cpu_timeslice_waits"], w.stats["cpu_timeslice_wait_ms"]) == (2, 8)


@pytest.mark.parametrize("profile", PROFILES)
def test_a_refused_cpu_access_waits_for_nothing(profile: str) -> None:
    w = _world(profile, atomic_svm_timeslice_ms=10)
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="atomic")
    # the span runs past the CPU mapping: SIGSEGV (EFAULT), nothing changes
    assert _errno(w.cpu_read, addr=BUF + 8 * M - K, size=2 * K) == errno.EFAULT
    assert _errno(w.cpu_read, addr=BUF, size=9 * M) == errno.EFAULT
    assert _now(w) == 0 and w.stats["cpu_timeslice_waits"] == 0


def test_the_clock_only_moves_forward_and_bad_input_changes_nothing() -> None:
    w = _world("6.18")
    assert w.advance(ms=5) == {"now_ms": 5}
    assert _errno(w.advance, ms=-1) == errno.EINVAL
    assert _errno(w.advance, ms=1 << 42) == errno.EINVAL
    assert _errno(w.advance, ms=1, when=3) == errno.EINVAL
    assert _now(w) == 5
    c = Clock()
    with pytest.raises(XeError) as ei:
        c.advance(-1)
    assert ei.value.errno == errno.EINVAL and c.now_ms == 0
    assert c.wait_until(7) == 7 and c.wait_until(3) == 0 and c.now_ms == 7
    assert c.before(8) and not c.before(7)


def test_same_trace_same_clock() -> None:
    """Deterministic: no wall time anywhere, two runs end at the same virtual time."""
    ends = []
    for _ in range(2):
        w = _world("7.0", atomic_svm_timeslice_ms=4)
        w.gpu_access(vm="vm0", addr=BUF, size=K, op="atomic")
        w.cpu_read(addr=BUF, size=K)
        ends.append((_now(w), dict(w.stats)))
    assert ends[0] == ends[1] and ends[0][0] == 4
