"""IGT-style SVM scenarios (spec section 7), both kernel profiles.

* xe_exec_system_allocator partial-munmap family:
  ``partial-{,middle-,atomic-,atomic-middle-}{munmap,remap}-{cpu-fault,no-cpu-fault}``;
* xe_madvise atomic group: ``atomic-device``, ``atomic-global``, ``atomic-cpu``;
* madvise followed by faults: preferred location device/system, migration to VRAM
  and back, ``madvise-no-range-invalidate-same-attr``,
  ``madvise-range-invalidate-change-attr``, madvise splitting a bound range;
* eviction under VRAM pressure and on request; CPU access to device pages.

Every event goes through :class:`svm_helpers.Sim`, which checks the data of every
page, the SVM invariants and the pagemap invariants after each one.
"""

from __future__ import annotations

import pytest
from svm_helpers import BUF, DEFAULT_ATTRS, SZ_2M, SZ_64K, K, Sim, attrs

PROFILES = ("6.18", "newest")
HALF = SZ_2M // 2


def _partial_setup(profile: str, atomic: bool) -> Sim:
    """A 2 MiB mirror buffer with non-default attributes, fully GPU-written (in VRAM)."""
    s = Sim(profile, autoreset=True)
    s.mmap(BUF, SZ_2M)
    s.cpu_write(BUF, SZ_2M, 5)
    s.madvise(BUF, SZ_2M, "atomic", val=2)           # GLOBAL: attrs are not default
    out = s.gpu("atomic" if atomic else "write", BUF, SZ_2M, value=7)
    assert out["result"] == "ok" and out["faults"] == 1
    assert s.spans() == [(BUF, SZ_2M, "gpu0")]
    return s


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("middle", [False, True], ids=["half", "middle"])
@pytest.mark.parametrize("remap", [False, True], ids=["munmap", "remap"])
@pytest.mark.parametrize("cpu_fault", [False, True], ids=["no-cpu-fault", "cpu-fault"])
@pytest.mark.parametrize("atomic", [False, True], ids=["write", "atomic"])
def test_partial_munmap(profile: str, middle: bool, remap: bool, cpu_fault: bool,
                        atomic: bool) -> None:
    s = _partial_setup(profile, atomic)
    first = 6 if atomic else 7
    hole = BUF + (SZ_2M // 4 if middle else 0)
    s.munmap(hole, HALF)
    # The notifier marked the whole 2 MiB range unmapped and queued it; nothing collected yet.
    assert s.ranges() == [{"addr": BUF, "range": SZ_2M, "location": "system",
                           "unmapped": True}]
    assert [r.start for r in s.svm.gc_list] == [BUF]
    survivors = [(a, n) for a, n in ((BUF, hole - BUF), (hole + HALF, BUF + SZ_2M - hole - HALF))
                 if n]
    if remap:
        s.mmap(hole, HALF)                              # new memory reads 0
    if cpu_fault:
        for a, n in survivors:
            assert s.cpu_read(a, n) == [first] * (n // K)   # CPU faults device pages back
    # GPU touches the surviving part again: GC first (unbind, remove, set_default_attr ->
    # EAGAIN), VMA looked up again, new smaller ranges.
    a0, n0 = survivors[0]
    out = s.gpu("atomic" if atomic else "write", a0, n0, value=9)
    st = s.svm.fault_log[-out["faults"]]               # the first fault of this access
    newest = profile == "newest"
    if atomic and not cpu_fault and not newest:
        # 6.18: a fresh range whose pages all sit in VRAM cannot be migrated
        # (migrate_vma_setup() collects no device page: -EFAULT), but a devmem-only fault
        # with tries left goes on to get_pages (xe_svm.c __xe_svm_handle_pagefault()),
        # which takes the device's own VRAM pages as they are: the fault succeeds.
        assert st.migration_failures >= 1 and "migrate:EFAULT" in st.reasons
    assert out["result"] == "ok", out
    assert st.gc_eagain == 1 and st.outer_iterations == 2 and "outer-eagain" in st.reasons
    assert out["retries"] >= 1
    # The old range is gone; every new range lies inside what is still mapped.
    spans = s.spans()
    assert spans and all(a >= a0 and a + n <= a0 + n0 for a, n, _ in spans)
    assert all(size in (SZ_64K, K) for _, size, _ in spans)   # 2 MiB no longer fits
    want = first + 1 if atomic else 9
    assert s.cpu_read(a0, n0) == [want] * (n0 // K)
    # The attributes of the collected 2 MiB span went back to default (6.18: always;
    # newest: the mirror was bound with AUTORESET, and default neighbours were absorbed).
    vmas = s.query(BUF, SZ_2M)
    assert all(attrs(v) == DEFAULT_ATTRS for v in vmas), vmas
    if newest:
        assert len(vmas) == 1 and vmas[0]["range"] == 1 << 47   # merged back into one
    else:
        assert [(v["addr"], v["range"]) for v in vmas] == [(BUF, SZ_2M)]   # reset in place
    for a, n in survivors[1:]:
        out = s.gpu("atomic" if atomic else "write", a, n, value=9)
        assert out["result"] == "ok", out
    if remap:
        out = s.gpu("write", hole, HALF, value=11)
        assert out["result"] == "ok"
        assert s.cpu_read(hole, HALF) == [11] * (HALF // K)
    else:
        out = s.gpu("read", hole, K)
        assert out["result"] == "ENOENT"               # the GPU may not see freed memory
        assert out["fault_addr"] == hole


@pytest.mark.parametrize("profile", PROFILES)
def test_partial_munmap_without_autoreset_keeps_attributes(profile: str) -> None:
    s = Sim(profile)
    s.mmap(BUF, SZ_2M)
    s.madvise(BUF, SZ_2M, "atomic", val=2)
    s.gpu("write", BUF, SZ_2M, value=3)
    s.munmap(BUF, HALF)
    out = s.gpu("write", BUF + HALF, HALF, value=4)
    assert out["result"] == "ok"
    first = s.svm.fault_log[-out["faults"]]
    vmas = s.query(BUF, SZ_2M)
    # both releases (v6.18 included): no AUTORESET on the VMA -> set_default_attr does
    # nothing, no EAGAIN
    assert first.gc_eagain == 0 and first.outer_iterations == 1
    assert [attrs(v)["atomic"] for v in vmas] == [2]


# ------------------------------------------------------------------ atomics per policy


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("policy", [1, 2], ids=["atomic-device", "atomic-global"])
def test_atomic_device_and_global(profile: str, policy: int) -> None:
    s = Sim(profile)
    s.mmap(BUF, SZ_64K)
    s.madvise(BUF, SZ_64K, "atomic", val=policy)
    for _ in range(100):                               # 100 CPU increments
        v = s.cpu_read(BUF)[0]
        s.cpu_write(BUF, K, v + 1)
    out = s.gpu("atomic", BUF)
    assert out["result"] == "ok" and out["faults"] == 1
    assert [loc for _, _, loc in s.spans()] == ["gpu0"]   # fault-driven migration to VRAM
    assert s.gpu("read", BUF)["data"] == [101]
    assert s.cpu_read(BUF) == [101]                    # CPU read migrates it back
    assert [loc for _, _, loc in s.spans()] == ["system"]


@pytest.mark.parametrize("profile", PROFILES)
def test_atomic_cpu_is_refused_and_value_unchanged(profile: str) -> None:
    s = Sim(profile)
    s.mmap(BUF, SZ_64K)
    s.madvise(BUF, SZ_64K, "atomic", val=3)            # DRM_XE_ATOMIC_CPU
    out = s.gpu("atomic", BUF)
    assert out["result"] == "EACCES" and "atomic policy is CPU" in out["message"]
    assert s.ranges() == []                            # refused before any range exists
    assert s.cpu_read(BUF) == [0]
    s.cpu_write(BUF, K, 41)
    assert s.gpu("atomic", BUF)["result"] == "EACCES"
    assert s.cpu_read(BUF) == [41]
    assert s.gpu("write", BUF, value=42)["result"] == "ok"   # plain writes still work


@pytest.mark.parametrize("profile", PROFILES)
def test_atomic_device_with_smem_atomics_stays_in_system_memory(profile: str) -> None:
    s = Sim(profile, smem_atomics=True)
    s.mmap(BUF, SZ_64K)
    s.madvise(BUF, SZ_64K, "atomic", val=1)
    s.madvise(BUF, SZ_64K, "preferred_loc", devmem_fd=-1)
    assert s.gpu("atomic", BUF)["result"] == "ok"
    assert [loc for _, _, loc in s.spans()] == ["system"]   # need_vram_for_atomic() == 0
    s.madvise(BUF, SZ_64K, "atomic", val=2)              # GLOBAL always needs VRAM
    assert s.gpu("atomic", BUF)["result"] == "ok"
    assert [loc for _, _, loc in s.spans()] == ["gpu0"]
    assert s.cpu_read(BUF) == [2]


@pytest.mark.parametrize("profile", PROFILES)
def test_atomic_on_integrated_device_needs_no_vram(profile: str) -> None:
    s = Sim(profile, discrete=False)
    s.mmap(BUF, SZ_64K)
    s.madvise(BUF, SZ_64K, "atomic", val=2)
    assert s.gpu("atomic", BUF, SZ_64K)["result"] == "ok"
    assert [loc for _, _, loc in s.spans()] == ["system"]
    assert s.cpu_read(BUF, SZ_64K) == [1] * 16


# ---------------------------------------------------------- madvise followed by faults


@pytest.mark.parametrize("profile", PROFILES)
def test_preferred_location_device_then_system(profile: str) -> None:
    s = Sim(profile)
    s.mmap(BUF, SZ_2M)
    s.cpu_write(BUF, SZ_2M, 3)
    s.madvise(BUF, SZ_2M, "preferred_loc", devmem_fd=0)
    assert s.gpu("read", BUF)["result"] == "ok"
    assert s.spans() == [(BUF, SZ_2M, "gpu0")]
    out = s.madvise(BUF, SZ_2M, "preferred_loc", devmem_fd=-1)
    assert out["invalidated"] == [[BUF, SZ_2M]]          # changed attr: GPU mapping zapped
    out = s.gpu("read", BUF)
    assert out["faults"] == 1 and out["data"] == [3]
    # Only the PTEs were zapped: the range's pages are still valid, so get_pages takes
    # its fast path and the fault rebinds the device pages where they are (both kernels).
    assert s.spans() == [(BUF, SZ_2M, "gpu0")]
    s.ok({"ev": "invalidate", "addr": BUF, "size": K, "event": "clear"})   # DMA pages gone
    out = s.gpu("read", BUF)
    assert out["faults"] == 1 and out["data"] == [3]
    if profile == "6.18":
        # 6.18 has one device-private page owner: device pages are mapped where they are.
        assert s.spans() == [(BUF, SZ_2M, "gpu0")]
    else:
        # newest: a system target means no page owner (xe_svm_private_page_owner(vm,
        # true) == NULL), so hmm_range_fault brings the pages back to system memory.
        assert s.spans() == [(BUF, SZ_2M, "system")]
    assert s.cpu_read(BUF, SZ_2M) == [3] * 512


@pytest.mark.parametrize("profile", PROFILES)
def test_system_preferred_never_migrates_and_device_does(profile: str) -> None:
    s = Sim(profile)
    s.mmap(BUF, SZ_2M)
    s.madvise(BUF, SZ_2M, "preferred_loc", devmem_fd=-1)
    s.gpu("write", BUF, SZ_2M, value=8)
    assert s.spans() == [(BUF, SZ_2M, "system")]
    assert s.world.stats["migrations_to_vram"] == 0
    s.madvise(BUF, SZ_2M, "preferred_loc", devmem_fd=0)
    s.gpu("read", BUF)
    assert s.spans() == [(BUF, SZ_2M, "gpu0")]
    assert s.world.stats["migrations_to_vram"] == 1
    assert s.gpu("read", BUF + SZ_2M - K)["data"] == [8]


@pytest.mark.parametrize("profile", PROFILES)
def test_same_attribute_skips_invalidation(profile: str) -> None:
    """madvise-no-range-invalidate-same-attr: same atomic attr twice -> no refault."""
    s = Sim(profile)
    s.mmap(BUF, SZ_64K)
    s.cpu_write(BUF, SZ_64K, 0)       # populated, so a 64 KiB chunk is allowed
    assert s.madvise(BUF, SZ_64K, "atomic", val=2)["invalidated"] == [[BUF, SZ_64K]]
    assert s.gpu("atomic", BUF, SZ_64K)["faults"] == 1
    assert s.madvise(BUF, SZ_64K, "atomic", val=2)["invalidated"] == []
    out = s.gpu("atomic", BUF, SZ_64K)
    assert out["faults"] == 0                           # the mapping survived
    assert s.cpu_read(BUF, SZ_64K) == [2] * 16


@pytest.mark.parametrize("profile", PROFILES)
def test_changed_attribute_invalidates_and_refaults(profile: str) -> None:
    """madvise-range-invalidate-change-attr."""
    s = Sim(profile)
    s.mmap(BUF, SZ_64K)
    s.cpu_write(BUF, SZ_64K, 0)
    s.madvise(BUF, SZ_64K, "atomic", val=2)
    s.gpu("atomic", BUF, SZ_64K)
    out = s.madvise(BUF, SZ_64K, "atomic", val=1)
    assert out["invalidated"] == [[BUF, SZ_64K]]
    r = s.svm.gpusvm.range_find(BUF)
    assert r is not None and r.tile_invalidated == 1
    out = s.gpu("atomic", BUF, SZ_64K)
    assert out["faults"] == 1 and out["result"] == "ok"
    assert s.cpu_read(BUF, SZ_64K) == [2] * 16


@pytest.mark.parametrize("profile", PROFILES)
def test_madvise_split_destroys_straddling_range(profile: str) -> None:
    """Spec 6.7 erratum 1: the madvise split evicts and destroys ranges it cuts."""
    s = Sim(profile)
    s.mmap(BUF, SZ_2M)
    s.gpu("write", BUF, SZ_2M, value=6)
    assert s.spans() == [(BUF, SZ_2M, "gpu0")]
    s.madvise(BUF + SZ_64K, SZ_64K, "atomic", val=2)
    assert s.spans() == []                               # gone at once, not via the GC
    assert s.world.stats["migrations_to_system"] == 1    # evicted first: nothing lost
    assert s.gpu("read", BUF + SZ_64K)["data"] == [6]
    assert s.cpu_read(BUF, SZ_2M) == [6] * 512


# ----------------------------------------------------------------------- eviction


@pytest.mark.parametrize("profile", PROFILES)
def test_eviction_under_vram_pressure(profile: str) -> None:
    s = Sim(profile, vram_mib=2)
    a, b = BUF, BUF + SZ_2M
    s.mmap(a, 2 * SZ_2M)
    s.gpu("write", a, SZ_2M, value=1)
    assert s.spans() == [(a, SZ_2M, "gpu0")]
    s.gpu("write", b, SZ_2M, value=2)                   # needs the whole VRAM: a is evicted
    assert s.spans() == [(a, SZ_2M, "system"), (b, SZ_2M, "gpu0")]
    assert s.world.stats["evictions_pressure"] == 1
    vram = s.world.devices["gpu0"].vram
    assert vram.used == SZ_2M == vram.capacity
    assert s.gpu("read", a + K)["data"] == [1]           # refault: a back, b evicted
    assert s.cpu_read(b, K) == [2]


@pytest.mark.parametrize("profile", PROFILES)
def test_eviction_on_request_and_refault(profile: str) -> None:
    s = Sim(profile)
    s.mmap(BUF, SZ_2M)
    s.gpu("write", BUF, SZ_2M, value=4)
    out = s.ok({"ev": "evict", "device": "gpu0"})
    assert out["pages"] == 512
    assert s.spans() == [(BUF, SZ_2M, "system")]
    r = s.svm.gpusvm.range_find(BUF)
    assert r is not None and r.tile_invalidated == 1    # zapped by the MIGRATE event
    out = s.gpu("read", BUF, SZ_2M)
    assert out["faults"] == 1 and set(out["data"]) == {4}
    assert s.spans() == [(BUF, SZ_2M, "gpu0")]
    assert s.world.devices["gpu0"].vram.used == SZ_2M


@pytest.mark.parametrize("profile", PROFILES)
def test_vram_smaller_than_the_range(profile: str) -> None:
    """1 MiB of VRAM, 2 MiB range: reads and writes fall back to system memory."""
    s = Sim(profile, vram_mib=1)
    s.mmap(BUF, SZ_2M)
    out = s.gpu("write", BUF, SZ_2M, value=5)
    assert out["result"] == "ok"
    assert s.spans() == [(BUF, SZ_2M, "system")]
    st = s.last_fault()
    assert st.migration_failures == 1 and "migrate:ENOMEM" in st.reasons
    out = s.gpu("atomic", BUF)
    # Both releases: the failed devmem-only migration goes on to get_pages (xe_svm.c
    # __xe_svm_handle_pagefault(), `goto get_pages` in v6.18 too), which accepts the valid
    # system pages; the handler succeeds, the atomic faults again, forever.
    assert out["result"] == "ETIME" and "faulted 3 times" in out["message"]
    assert s.cpu_read(BUF) == [5]


@pytest.mark.parametrize("profile", PROFILES)
def test_cpu_access_migrates_device_pages_back(profile: str) -> None:
    s = Sim(profile)
    s.mmap(BUF, SZ_2M)
    s.gpu("write", BUF, SZ_2M, value=12)
    vram = s.world.devices["gpu0"].vram
    assert vram.used == SZ_2M
    assert s.cpu_read(BUF + 3 * K) == [12]               # whole allocation window comes back
    assert vram.used == 0 and s.mm.stats["cpu_faults_on_device_pages"] == 1
    assert s.spans() == [(BUF, SZ_2M, "system")]
    s.gpu("write", BUF, K, value=13)                     # back to VRAM
    s.cpu_write(BUF + K, K, 14)                          # CPU store on a device page
    assert s.gpu("read", BUF, 2 * K)["data"] == [13, 14]
    assert s.cpu_read(BUF, 3 * K) == [13, 14, 12]
