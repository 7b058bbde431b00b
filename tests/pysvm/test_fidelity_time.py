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
from pysvm.mm.mmap import HMM_RANGE_DEFAULT_TIMEOUT_MS
from pysvm.xe.device import ATOMIC_SVM_TIMESLICE_MS
from pysvm.xe.vram import evict_range

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


def _two_devices(profile: str, timeslice_ms: int, *, link: bool = False) -> World:
    """gpu0 (fault VM vm0 mirroring 8 MiB, pages migrated by its atomics carry
    ``timeslice_ms``) and gpu1 (fault VM vm1, nothing bound yet)."""
    w = World(profile)
    w.device(name="gpu0", vram_mib=64, atomic_svm_timeslice_ms=timeslice_ms)
    w.device(name="gpu1", vram_mib=64)
    if link:
        w.link(a="gpu0", b="gpu1")
    w.vm_create(vm="vm0", device="gpu0", fault_mode=True)
    w.vm_create(vm="vm1", device="gpu1", fault_mode=True)
    w.mmap(addr=BUF, size=8 * M)
    w.bind(vm="vm0", op="map", addr=BUF, range=8 * M, flags=["cpu_addr_mirror"])
    w.cpu_write(addr=BUF, size=8 * M, value=7)
    return w


@pytest.mark.parametrize("profile", PROFILES)
def test_another_devices_fault_waits_for_the_timeslice(profile: str) -> None:
    """A GPU fault of gpu1 over gpu0's pages: drm_gpusvm.c drm_gpusvm_get_pages() ->
    hmm_range_fault() faults the foreign device page, __drm_pagemap_migrate_to_ram()
    declines until the expiration and hmm_range_fault() repeats the fault (6.18); in 7.0
    xe_svm_alloc_vram()'s drm_gpusvm_range_evict() goes through the same hmm_range_fault()
    first. Either way the clock runs to the expiration, counted apart from CPU waits."""
    w = _two_devices(profile, 20)
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="atomic")              # expires at 20
    w.advance(ms=5)
    w.bind(vm="vm1", op="map", addr=BUF, range=8 * M, flags=["cpu_addr_mirror"])
    assert w.gpu_access(vm="vm1", addr=BUF, size=K, op="read")["data"] == [8]
    assert _now(w) == 20
    assert (w.stats["hmm_timeslice_waits"], w.stats["hmm_timeslice_wait_ms"]) == (1, 15)
    assert w.stats["cpu_timeslice_waits"] == 0
    # once over, the next foreign fault waits for nothing
    w.gpu_access(vm="vm0", addr=BUF + 2 * M, size=K, op="atomic")      # expires at 40
    w.advance(ms=20)
    assert w.gpu_access(vm="vm1", addr=BUF + 2 * M, size=K, op="read")["data"] == [8]
    assert _now(w) == 40 and w.stats["hmm_timeslice_waits"] == 1


def test_a_linked_peer_reading_in_place_does_not_wait() -> None:
    """7.0: gpu1 linked to gpu0 shares its pagemap owner (drm_pagemap_acquire_owner()), and
    vm1 prefers gpu0's VRAM, so nothing migrates and hmm_range_fault() returns gpu0's
    pages as they are: no migrate_to_ram, no timeslice."""
    w = _two_devices("7.0", 20, link=True)
    w.bind(vm="vm1", op="map", addr=BUF, range=8 * M, flags=["cpu_addr_mirror"])
    w.madvise(vm="vm1", addr=BUF, range=8 * M, type="preferred_loc", devmem_fd="gpu0")
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="atomic")
    assert w.gpu_access(vm="vm1", addr=BUF, size=K, op="read")["data"] == [8]
    assert (_now(w), w.stats["hmm_timeslice_waits"], w.stats["migrations_to_system"]) \
        == (0, 0, 0)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("timeslice_ms", [1000, 1001])
def test_a_wait_past_hmm_range_default_timeout_is_ebusy(profile: str, timeslice_ms: int) -> None:
    """drm_gpusvm_get_pages() repeats hmm_range_fault()'s -EBUSY (which follows every
    migration the walk caused) only while !time_after(jiffies, start +
    HMM_RANGE_DEFAULT_TIMEOUT); a timeslice, settable through debugfs, can be longer. Here
    a userptr bind of gpu1 (xe_vma_userptr_pin_pages() -> drm_gpusvm_get_pages()) waits
    for gpu0's page: 1000 ms is not after the timeout, 1001 ms is, and the bind fails
    with EBUSY (the page it waited for is in system memory by then)."""
    w = _two_devices(profile, timeslice_ms)
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="atomic")
    if timeslice_ms <= HMM_RANGE_DEFAULT_TIMEOUT_MS:
        w.bind(vm="vm1", op="map_userptr", addr=BUF, range=M, offset=BUF, pat_index=27)
        assert len(w.query(vm="vm1")["vmas"]) == 1
    else:
        assert _errno(w.bind, vm="vm1", op="map_userptr", addr=BUF, range=M, offset=BUF,
                      pat_index=27) == errno.EBUSY
        assert w.query(vm="vm1")["vmas"] == []
    assert _now(w) == timeslice_ms
    assert (w.stats["hmm_timeslice_waits"], w.stats["migrations_to_system"]) == (1, 1)
    assert w.cpu_read(addr=BUF, size=K) == {"data": [8]} and _now(w) == timeslice_ms


def test_the_6_18_gpu_fault_past_the_timeout_fails_with_ebusy() -> None:
    """xe_svm.c __xe_svm_handle_pagefault(): an -EBUSY from xe_svm_range_get_pages() is not
    one of the errors it retries, so the fault fails with it."""
    w = _two_devices("6.18", 1500)
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="atomic")
    w.bind(vm="vm1", op="map", addr=BUF, range=8 * M, flags=["cpu_addr_mirror"])
    assert _errno(w.gpu_access, vm="vm1", addr=BUF, size=K, op="read") == errno.EBUSY
    assert _now(w) == 1500


@pytest.mark.parametrize("profile", PROFILES)
def test_range_evict_waits_for_the_timeslice_but_not_past_the_timeout(profile: str) -> None:
    """drm_gpusvm_range_evict() is hmm_range_fault() with no owner, so each device page
    goes through migrate_to_ram and its timeslice; it stops repeating the walk once jiffies
    are past HMM_RANGE_DEFAULT_TIMEOUT (-EBUSY, ignored by its xe_svm.c callers). One
    eviction over two allocations both expiring at 1001: the wait for the first ends past
    the timeout, so only the first moves."""
    w = _two_devices(profile, 1001)
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="atomic")
    w.gpu_access(vm="vm0", addr=BUF + 2 * M, size=K, op="atomic")
    mm = w.processes["main"].mm
    assert evict_range(mm, BUF, BUF + 4 * M) == 512 and _now(w) == 1001
    assert (w.stats["hmm_timeslice_waits"], w.stats["hmm_timeslice_wait_ms"]) == (1, 1001)
    assert w.stats["migrations_to_system"] == 1
    # the second one's timeslice is over too now: it moves without a wait
    assert evict_range(mm, BUF, BUF + 4 * M) == 512 and _now(w) == 1001
    assert w.stats["hmm_timeslice_waits"] == 1
    # the range's own eviction (drm_gpusvm_range_evict) waits the same way
    w.gpu_access(vm="vm0", addr=BUF + 4 * M, size=K, op="atomic")      # expires at 2002
    w.advance(ms=2)
    gpusvm = w.vms["vm0"].svm.gpusvm
    rng = next(r for r in gpusvm.ranges() if r.start == BUF + 4 * M)
    assert gpusvm.range_evict(rng) == 512 and _now(w) == 2002
    assert (w.stats["hmm_timeslice_waits"], w.stats["hmm_timeslice_wait_ms"]) == (2, 2000)


def test_a_cpu_fault_moves_only_the_fault_pages_allocation() -> None:
    """drm_pagemap.c __drm_pagemap_migrate_to_ram(): migrate_vma_setup() collects the
    owner's device pages of the whole window, but drm_pagemap_migrate_populate_ram_pfn()
    gives RAM only to pages whose zone_device_data is the fault page's zdd (v6.18 and
    mainline alike). gpu1's 64 KiB allocation inside gpu0's 2 MiB window has the same
    owner (linked in 7.0; 6.18 has no owner groups, so only 7.0 can build this) and stays
    in VRAM when the CPU touches gpu0's page."""
    w = _two_devices("7.0", 0, link=True)
    w.bind(vm="vm1", op="map", addr=BUF + M, range=64 * K, flags=["cpu_addr_mirror"])
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="atomic")
    w.gpu_access(vm="vm1", addr=BUF + M, size=K, op="write", value=5)
    assert w.ranges(vm="vm1")["ranges"][0]["location"] == "gpu1"
    before = w.stats["migrations_to_system"]
    assert w.cpu_read(addr=BUF, size=K) == {"data": [8]}
    assert w.stats["migrations_to_system"] == before + 1
    assert w.ranges(vm="vm1")["ranges"][0]["location"] == "gpu1"
    assert w.cpu_read(addr=BUF + M, size=K) == {"data": [5]}
    assert w.ranges(vm="vm1")["ranges"][0]["location"] == "system"
