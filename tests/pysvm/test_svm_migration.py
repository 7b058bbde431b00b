"""Chunk selection, VRAM placement and migration, two devices.

Kernel: drm_gpusvm_range_chunk_size(), drm_pagemap_migrate_to_devmem() (6.18 and
newest page-collection rules), xe_svm_alloc_vram() (newest scan + evict-and-retry),
xe_svm_range_is_valid()/needs_migrate (newest: against the target pagemap),
prefetch. Events run under svm_helpers.Sim (data and invariants after each one).
"""

from __future__ import annotations

import errno

import pytest
from svm_helpers import BUF, SZ_2M, SZ_64K, K, Sim

from pysvm.errors import XeError
from pysvm.mm.mmap import Mm
from pysvm.xe.migrate import populate_mm

PROFILES = ("6.18", "newest")


# ------------------------------------------------------------------ chunk selection


@pytest.mark.parametrize("profile", PROFILES)
def test_chunk_sizes(profile: str) -> None:
    s = Sim(profile)
    s.mmap(BUF, SZ_2M)
    s.cpu_write(BUF, SZ_2M, 1)
    s.gpu("read", BUF + 5 * K)
    assert s.spans() == [(BUF, SZ_2M, "gpu0")]                # 2 MiB fits everything
    s.mmap(BUF + SZ_2M, SZ_64K + K)                           # a CPU VMA of 64K + 4K
    s.cpu_write(BUF + SZ_2M, SZ_64K + K, 2)
    s.gpu("read", BUF + SZ_2M + K)
    s.gpu("read", BUF + SZ_2M + SZ_64K)
    assert s.spans()[1:] == [(BUF + SZ_2M, SZ_64K, "gpu0"),    # 2M does not fit the CPU VMA
                             (BUF + SZ_2M + SZ_64K, K, "gpu0")]   # only 4K fits at its end


@pytest.mark.parametrize("profile", PROFILES)
def test_unpopulated_64k_falls_back_to_4k_and_overlap_avoided(profile: str) -> None:
    s = Sim(profile)
    s.mmap(BUF, SZ_64K)                                       # 2M does not fit
    s.gpu("write", BUF, K, value=1)                           # 64K chunk not populated
    assert s.spans() == [(BUF, K, "gpu0")]
    s.cpu_write(BUF, SZ_64K, 3)                               # now every page is present
    s.gpu("read", BUF + 2 * K)                                # but the 64K chunk overlaps
    assert [n for _, n, _ in s.spans()] == [K, K]


# ----------------------------------------------------------- migration rules per kernel


def test_migrate_to_devmem_collection_rules() -> None:
    from pysvm.xe.device import Device
    dev = Device("gpu0", 64 << 20, True, False, fd=3)
    for newest in (False, True):
        mm = Mm()
        mm.mmap(BUF, 2 * SZ_64K)
        mm.cpu_write(BUF, 2 * SZ_64K, 7)
        populate_mm(dev, mm, BUF, BUF + SZ_64K, newest=newest)
        with pytest.raises(XeError) as e:                      # every page a device page
            populate_mm(dev, mm, BUF, BUF + SZ_64K, newest=newest)
        assert e.value.errno == (errno.EBUSY if newest else errno.EFAULT)
        with pytest.raises(XeError) as e:                      # half of them
            populate_mm(dev, mm, BUF + SZ_64K // 2, BUF + SZ_64K + SZ_64K // 2,
                        newest=newest)
        assert e.value.errno == errno.EBUSY
        assert dev.vram is not None and dev.vram.used == SZ_64K   # failed tries consumed
        assert mm.cpu_read(BUF, 2 * SZ_64K) == [7] * 32
        assert dev.vram.used == 0


def test_newest_scan_skips_migration_when_already_there() -> None:
    """A fresh range over pages already in the target VRAM: newest scans and binds them
    (no migration try); 6.18 tries to migrate and fails (see the partial-munmap tests)."""
    for profile, failures in (("newest", 0), ("6.18", 1)):
        s = Sim(profile)
        s.mmap(BUF, SZ_2M)
        s.gpu("write", BUF, SZ_2M, value=1)
        s.munmap(BUF + SZ_2M // 2, SZ_2M // 2)
        moved = s.world.stats["migrations_to_vram"]
        out = s.gpu("read", BUF + SZ_64K, K)
        assert out["result"] == "ok" and out["data"] == [1]
        st = s.last_fault()
        assert st.migration_failures == failures and out["retries"] == failures
        assert s.world.stats["migrations_to_vram"] == moved      # nothing moved
        assert s.spans() == [(BUF + SZ_64K, SZ_64K, "gpu0")]


# ------------------------------------------------------------------------ VRAM


@pytest.mark.parametrize("profile", PROFILES)
def test_vram_returns_when_device_pages_are_freed(profile: str) -> None:
    s = Sim(profile)
    s.mmap(BUF, SZ_2M)
    s.gpu("write", BUF, SZ_2M, value=3)
    vram = s.world.devices["gpu0"].vram
    assert vram.used == SZ_2M and len(vram.allocations) == 1
    s.munmap(BUF, SZ_2M - K)                                   # all but the last page
    assert vram.used == SZ_2M                                   # one device page keeps it
    s.munmap(BUF + SZ_2M - K, K)
    assert vram.used == 0 and not vram.allocations
    s.ok({"ev": "run_workers"})
    assert s.ranges() == []


@pytest.mark.parametrize("profile", PROFILES)
def test_prefetch_to_vram_and_back(profile: str) -> None:
    s = Sim(profile)
    s.mmap(BUF, 2 * SZ_2M)
    s.cpu_write(BUF, 2 * SZ_2M, 9)
    out = s.ok({"ev": "prefetch", "vm": "vm0", "addr": BUF, "range": 2 * SZ_2M,
                "region": "vram"})
    assert out["ranges_bound"] == 2
    assert s.spans() == [(BUF, SZ_2M, "gpu0"), (BUF + SZ_2M, SZ_2M, "gpu0")]
    assert s.gpu("read", BUF, 2 * SZ_2M)["faults"] == 0         # bound before the GPU ran
    s.ok({"ev": "prefetch", "vm": "vm0", "addr": BUF, "range": SZ_2M, "region": "system"})
    assert s.spans()[0] == (BUF, SZ_2M, "system")
    assert s.gpu("read", BUF)["faults"] == 0
    assert s.cpu_read(BUF + SZ_2M, K) == [9]


# ------------------------------------------------------------------ two devices


def test_newest_peer_placement_atomic_and_unbind() -> None:
    s = Sim("newest", devices=2, link=True)
    s.mmap(BUF, SZ_2M)
    s.cpu_write(BUF, SZ_2M, 4)
    s.madvise(BUF, SZ_2M, "preferred_loc", devmem_fd="gpu1")
    s.gpu("write", BUF, K, value=5)
    assert s.spans() == [(BUF, SZ_2M, "gpu1")]                  # device 0 runs out of gpu1
    # An atomic needs device 0's own VRAM: newest checks validity against the target
    # pagemap, so the range moves from gpu1 to gpu0.
    assert s.gpu("atomic", BUF, K)["result"] == "ok"
    assert s.spans() == [(BUF, SZ_2M, "gpu0")]
    s.ok({"ev": "invalidate", "addr": BUF, "size": K})
    s.ok({"ev": "evict", "device": "gpu0"})
    s.gpu("read", BUF, K)                                      # preferred gpu1 again
    assert s.spans() == [(BUF, SZ_2M, "gpu1")]
    out = s.ok({"ev": "unbind_device", "device": "gpu1"})
    assert out["evicted_pages"] == 512                         # nothing lost on unbind
    assert s.spans() == [(BUF, SZ_2M, "system")]
    out = s.gpu("read", BUF, 2 * K)                            # populate on gpu1: ENODEV
    assert out["result"] == "ok" and out["data"] == [6, 4]
    assert "migrate:ENODEV" in s.last_fault().reasons
    assert s.spans() == [(BUF, SZ_2M, "system")]               # fell back to system memory
    s.munmap(BUF, SZ_2M)
    s.ok({"ev": "run_workers"})


def test_newest_unlinked_peer_is_refused() -> None:
    s = Sim("newest", devices=2)
    s.mmap(BUF, SZ_2M)
    assert s.madvise(BUF, SZ_2M, "preferred_loc", devmem_fd="gpu1")["result"] == "ENOLINK"
    s.gpu("write", BUF, K, value=1)
    assert s.spans() == [(BUF, SZ_2M, "gpu0")]


def test_two_vms_share_one_address_space() -> None:
    """vm0 on gpu0 and vm1 on gpu1 mirror the same process memory: each device's
    migration invalidates the other's mapping and the data stays coherent."""
    s = Sim("6.18", devices=2)
    s.ok({"ev": "vm_create", "vm": "vm1", "device": "gpu1", "fault_mode": True})
    s.ok({"ev": "bind", "vm": "vm1", "op": "map", "addr": 0, "range": 1 << 47,
          "flags": ["cpu_addr_mirror"], "pat_index": 0})
    s.mmap(BUF, SZ_2M)
    s.gpu("write", BUF, K, value=1)
    assert s.ranges()[0]["location"] == "gpu0"
    vm1 = s.world.vms["vm1"].svm
    # gpu1's fault cannot migrate gpu0's device pages (6.18: not collectable -> EFAULT);
    # its get_pages, with gpu1 as page owner, brings them back to system memory instead,
    # which zaps vm0's mapping through the MIGRATE notifier.
    assert s.gpu("read", BUF, K, vm="vm1")["data"] == [1]
    assert "migrate:EFAULT" in vm1.fault_log[-1].reasons
    assert vm1.ranges_info()[0]["location"] == "system"
    assert s.svm.gpusvm.range_find(BUF) is not None
    assert not s.svm.gpusvm.range_find(BUF).is_valid(0, False)   # type: ignore[union-attr]
    s.ok({"ev": "invalidate", "addr": BUF, "size": K})
    s.gpu("write", BUF, K, value=2, vm="vm1")                  # now it migrates to gpu1
    assert vm1.ranges_info()[0]["location"] == "gpu1"
    assert s.gpu("read", BUF, K)["data"] == [2]
    assert s.cpu_read(BUF) == [2]
