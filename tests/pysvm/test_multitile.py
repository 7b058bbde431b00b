"""Devices with more than one tile: each tile has its own GT, VRAM region and VRAM pagemap.

Every rule below cites the kernel function it follows (drivers/gpu/drm/xe/ unless said
otherwise). 6.18 is Linux v6.18; 7.0 is mainline as stored (the multi-device xe_svm.c).
A one-tile device must behave exactly as before: the golden traces and the default
simulation replay (tests/pysvm/test_trace_replay.py) cover that.
"""

from __future__ import annotations

import errno
from typing import Any

import pytest

import pysvm
from pysvm.drm.gpusvm import SvmRange
from pysvm.trace.engine import Engine

BUF = 1 << 30
MIB = 1 << 20
PROFILES = ("6.18", "7.0")


def _world(profile: str, *, tiles: int = 2, vram_mib: int = 64) -> pysvm.World:
    w = pysvm.World(profile)
    w.device(name="gpu0", vram_mib=vram_mib, tiles=tiles)
    w.vm_create(vm="vm0", device="gpu0", fault_mode=True)
    w.bind(vm="vm0", op="map", addr=0, range=1 << 47, flags=["cpu_addr_mirror", "autoreset"])
    w.mmap(addr=BUF, size=2 * MIB)
    w.cpu_write(addr=BUF, size=8192, value=41)
    return w


def _range(w: pysvm.World, addr: int = BUF) -> SvmRange:
    svm = w.vms["vm0"].svm
    assert svm is not None
    r = svm.gpusvm.range_find(addr)
    assert r is not None
    return r


def _valid_tiles(r: SvmRange) -> int:
    return r.tile_present & ~r.tile_invalidated


def _loc(w: pysvm.World, vm: str = "vm0") -> list[Any]:
    return [r["location"] for r in w.ranges(vm=vm)["ranges"]]


# ------------------------------------------------------------------ device and bad input


def test_each_tile_has_its_own_vram_of_vram_mib() -> None:
    # xe_vram_probe() sizes each tile's region (tile k = region instance k+1,
    # xe_tile_to_vr()); vram_mib is per tile, so a one-tile device means what it meant
    w = pysvm.World()
    w.device(name="gpu0", vram_mib=64, tiles=2)
    dev = w.devices["gpu0"]
    assert [v.tile for v in dev.vrams] == [0, 1]
    assert [v.capacity for v in dev.vrams] == [64 * MIB, 64 * MIB]
    assert dev.vram is dev.vrams[0]
    assert [pm.tile for pm in dev.pagemaps] == [0, 1] and dev.pagemap is dev.pagemaps[0]
    w.device(name="gpu1", vram_mib=64)
    assert len(w.devices["gpu1"].vrams) == 1 and w.devices["gpu1"].vram is not None


@pytest.mark.parametrize("tiles", [0, 3, 255])
def test_bad_tile_count_is_einval_and_changes_nothing(tiles: int) -> None:
    # XE_MAX_TILES_PER_DEVICE (xe_device_types.h) is 2; a device has at least its root tile
    w = pysvm.World()
    with pytest.raises(pysvm.XeError) as e:
        w.device(name="gpu0", tiles=tiles)
    assert e.value.errno == errno.EINVAL
    assert f"tiles {tiles}" in str(e.value) and "XE_MAX_TILES_PER_DEVICE" in str(e.value)
    assert not w.devices
    assert w.device(name="gpu0") == {"fd": 3}        # the refused call took no fd


def test_gpu_access_on_a_tile_the_device_lacks_is_einval_naming_it() -> None:
    w = _world("6.18", tiles=1)
    before = w.stats["faults"]
    with pytest.raises(pysvm.XeError) as e:
        w.gpu_access(vm="vm0", addr=BUF, size=4096, op="read", tile=1)
    assert e.value.errno == errno.EINVAL and "no tile 1" in str(e.value)
    assert w.stats["faults"] == before and _loc(w) == []
    w2 = _world("6.18")
    with pytest.raises(pysvm.XeError) as e:
        w2.gpu_access(vm="vm0", addr=BUF, size=4096, op="read", tile=2)
    assert e.value.errno == errno.EINVAL and "no tile 2" in str(e.value)


def test_trace_fields_tiles_and_tile() -> None:
    # the trace format: device.tiles, gpu_access.tile, evict.tile (schema-checked)
    eng = Engine()
    out = [eng.execute(ev) for ev in (
        {"ev": "device", "name": "gpu0", "vram_mib": 64, "tiles": 2},
        {"ev": "vm_create", "vm": "vm0", "device": "gpu0", "fault_mode": True},
        {"ev": "bind", "vm": "vm0", "op": "map", "addr": 0, "range": 1 << 47,
         "flags": ["cpu_addr_mirror"]},
        {"ev": "mmap", "addr": BUF, "size": 2 * MIB},
        {"ev": "gpu_access", "vm": "vm0", "addr": BUF, "size": 4096, "op": "read", "tile": 1},
        {"ev": "ranges", "vm": "vm0"},
        {"ev": "gpu_access", "vm": "vm0", "addr": BUF, "size": 4096, "op": "read", "tile": 2},
        {"ev": "evict", "device": "gpu0", "tile": 5},
        {"ev": "evict", "device": "gpu0", "tile": 1},
        {"ev": "device", "name": "gpu1", "tiles": 3},
    )]
    assert [o["result"] for o in out] == ["ok"] * 6 + ["EINVAL", "EINVAL", "ok", "EINVAL"]
    assert out[5]["ranges"][0]["location"] == "gpu0.tile1"
    assert out[8]["pages"] == 512


# ------------------------------------------------------------------ faults per tile


@pytest.mark.parametrize("profile", PROFILES)
def test_a_fault_binds_only_the_faulting_tile(profile: str) -> None:
    # xe_pagefault.c: the fault arrives for one GT, gt_to_tile(); __xe_svm_handle_pagefault()
    # migrates to that tile's VRAM (6.18 xe_svm_alloc_vram(tile) -> tile_local_pagemap();
    # 7.0 xe_vma_resolve_pagemap(vma, tile) -> xe_tile_local_pagemap()) and rebinds with
    # BIT(tile->id) only (xe_vm_range_rebind())
    w = _world(profile)
    assert w.gpu_access(vm="vm0", addr=BUF, size=4096, op="write", value=7, tile=1) == {
        "faults": 1, "retries": 0}
    r = _range(w)
    assert _valid_tiles(r) == 0b10
    assert _loc(w) == ["gpu0.tile1"]
    dev = w.devices["gpu0"]
    assert dev.vrams[1].used == 2 * MIB and dev.vrams[0].used == 0


def test_618_two_tiles_fault_the_same_range_in_place() -> None:
    # v6.18 xe_svm_range_needs_migrate_to_vram(): xe_svm_range_in_vram() -> no migration
    # when the range is in any VRAM; every tile's pagemap has the device as page owner
    # (xe_svm_devm_owner(xe) in xe_devm_add()), so get_pages maps tile 0's pages in place
    w = _world("6.18")
    w.gpu_access(vm="vm0", addr=BUF, size=4096, op="write", value=7, tile=0)
    r = _range(w)
    assert _valid_tiles(r) == 0b01 and _loc(w) == ["gpu0.tile0"]
    out = w.gpu_access(vm="vm0", addr=BUF, size=8192, op="read", tile=1)
    assert out == {"faults": 1, "retries": 0, "data": [7, 41]}
    assert w.stats["migrations_to_vram"] == 1           # no second migration
    assert _valid_tiles(r) == 0b11 and _loc(w) == ["gpu0.tile0"]
    # both tiles now read without faulting
    assert w.gpu_access(vm="vm0", addr=BUF, size=8192, op="read", tile=0)["faults"] == 0
    assert w.gpu_access(vm="vm0", addr=BUF, size=8192, op="read", tile=1)["faults"] == 0
    # an atomic from tile 1 needs VRAM (devmem_only): 6.18 xe_svm_range_is_valid() accepts
    # any VRAM, and the PTE is VRAM for the same device (xe_drm_pagemap_device_map():
    # pgmap_dev == dev -> XE_INTERCONNECT_VRAM), so nothing faults or moves
    assert w.gpu_access(vm="vm0", addr=BUF, size=4096, op="atomic", tile=1)["faults"] == 0
    assert _loc(w) == ["gpu0.tile0"]
    w.check_invariants()


def test_70_two_tiles_fault_the_same_range_and_it_moves() -> None:
    # 7.0 xe_svm_range_needs_migrate_to_vram(): not xe_svm_range_has_pagemap(range,
    # dpagemap) with the faulting tile's pagemap -> migrate; xe_svm_alloc_vram(): the scan
    # (drm_gpusvm_scan_mm) is not EQUAL, populate collects no page (device pages are not
    # selected) -> EBUSY -> drm_gpusvm_range_evict() and one retry. The migration's
    # notifier zaps tile 0's PTEs (xe_svm_invalidate: every tile in tile_present)
    w = _world("7.0")
    w.gpu_access(vm="vm0", addr=BUF, size=4096, op="write", value=7, tile=0)
    r = _range(w)
    out = w.gpu_access(vm="vm0", addr=BUF, size=8192, op="read", tile=1)
    assert out == {"faults": 1, "retries": 0, "data": [7, 41]}
    assert w.stats["migrations_to_vram"] == 2
    assert _loc(w) == ["gpu0.tile1"] and _valid_tiles(r) == 0b10
    dev = w.devices["gpu0"]
    assert dev.vrams[0].used == 0 and dev.vrams[1].used == 2 * MIB
    # tile 0 faults again and takes it back
    assert w.gpu_access(vm="vm0", addr=BUF, size=8192, op="read", tile=0)["faults"] == 1
    assert _loc(w) == ["gpu0.tile0"] and _valid_tiles(r) == 0b01
    w.check_invariants()


def test_70_atomic_from_the_other_tile_migrates_to_its_vram() -> None:
    # 7.0 __xe_svm_handle_pagefault(): devmem_only -> dpagemap = xe_tile_local_pagemap(tile);
    # xe_svm_range_is_valid() then needs xe_svm_range_has_pagemap(range, dpagemap)
    w = _world("7.0")
    w.gpu_access(vm="vm0", addr=BUF, size=4096, op="read", tile=0)
    w.gpu_access(vm="vm0", addr=BUF, size=4096, op="read", tile=1)
    w.gpu_access(vm="vm0", addr=BUF, size=4096, op="read", tile=0)
    assert _loc(w) == ["gpu0.tile0"]
    assert w.gpu_access(vm="vm0", addr=BUF, size=4096, op="atomic", tile=1)["faults"] == 1
    assert _loc(w) == ["gpu0.tile1"]
    assert w.cpu_read(addr=BUF, size=4096) == {"data": [42]}


@pytest.mark.parametrize("profile", PROFILES)
def test_bo_fault_rebinds_the_faulting_tile_only(profile: str) -> None:
    # xe_pagefault_handle_vma() -> xe_vma_rebind(vm, vma, BIT(tile->id))
    w = _world(profile)
    w.bo_create(bo="b", device="gpu0", size=65536, placement=["system", "vram"])
    w.bind(vm="vm0", op="map", addr=1 << 40, range=65536, bo="b")
    w.gpu_access(vm="vm0", addr=1 << 40, size=4096, op="write", value=3, tile=1)
    v = w.vms["vm0"].find_vma_by_addr(1 << 40)
    assert v is not None and v.tile_present & ~v.tile_invalidated == 0b10
    assert w.gpu_access(vm="vm0", addr=1 << 40, size=4096, op="read", tile=0) == {
        "faults": 1, "retries": 0, "data": [3]}
    assert v.tile_present & ~v.tile_invalidated == 0b11


@pytest.mark.parametrize("profile", PROFILES)
def test_immediate_bind_of_a_bo_maps_every_tile(profile: str) -> None:
    # xe_vma_create(): vma->tile_mask gets every tile (for_each_tile); the bind updates the
    # page tables of each tile in the mask. The trace has no exec queue, so the mask is
    # always the VMA's.
    w = pysvm.World(profile)
    w.device(name="gpu0", vram_mib=64, tiles=2)
    w.vm_create(vm="vm0", device="gpu0")               # not fault mode: binds are immediate
    w.bo_create(bo="b", device="gpu0", size=65536)
    w.bind(vm="vm0", op="map", addr=1 << 40, range=65536, bo="b")
    v = w.vms["vm0"].find_vma_by_addr(1 << 40)
    assert v is not None and v.tile_present == 0b11


# ------------------------------------------------------------------ invalidation


@pytest.mark.parametrize("profile", PROFILES)
def test_cpu_invalidation_zaps_every_tile(profile: str) -> None:
    # xe_svm_invalidate() -> xe_svm_range_notifier_event_begin(): for_each_tile() whose PTEs
    # of the range were live, zapped and set in tile_invalidated
    w = _world(profile)
    w.prefetch(vm="vm0", addr=BUF, range=2 * MIB, region=1)    # bound on both tiles
    r = _range(w)
    assert _valid_tiles(r) == 0b11
    w.invalidate(addr=BUF, size=4096)
    assert r.tile_invalidated == 0b11 and _valid_tiles(r) == 0
    for t in (0, 1):
        assert w.gpu_access(vm="vm0", addr=BUF, size=4096, op="read", tile=t)["faults"] == 1


def test_madvise_invalidation_zaps_every_tile() -> None:
    # xe_vm_madvise.c xe_vm_invalidate_madvise_range() -> xe_svm_ranges_zap_ptes_in_range():
    # for_each_tile() with a live PTE of the range
    w = _world("6.18")
    w.gpu_access(vm="vm0", addr=BUF, size=4096, op="read", tile=0)
    w.gpu_access(vm="vm0", addr=BUF, size=4096, op="read", tile=1)
    r = _range(w)
    assert _valid_tiles(r) == 0b11
    out = w.madvise(vm="vm0", addr=BUF, range=2 * MIB, type="atomic", val=2)
    assert out["invalidated"] == [[BUF, 2 * MIB]]
    assert _valid_tiles(r) == 0 and r.tile_invalidated == 0b11


# ------------------------------------------------------------------ prefetch and madvise


@pytest.mark.parametrize("profile", PROFILES)
def test_prefetch_to_region_2_is_tile_1_and_binds_every_tile(profile: str) -> None:
    # xe_vm.c prefetch_ranges(): region k -> &xe->tiles[region_to_mem_type[k] -
    # XE_PL_VRAM0] (tile k-1); vm_bind_ioctl_ops_create() builds the op's tile_mask from
    # every tile and the range is bound on each (xe_svm_range_validate() with that mask)
    w = _world(profile)
    assert w.prefetch(vm="vm0", addr=BUF, range=2 * MIB, region=2) == {"ranges_bound": 1}
    assert _loc(w) == ["gpu0.tile1"]
    r = _range(w)
    assert _valid_tiles(r) == 0b11
    # valid on every tile and where it is asked: left alone
    assert w.prefetch(vm="vm0", addr=BUF, range=2 * MIB, region=2) == {"ranges_bound": 0}
    assert w.gpu_access(vm="vm0", addr=BUF, size=8192, op="read", tile=0) == {
        "faults": 0, "retries": 0, "data": [41, 41]}
    # now ask for tile 0: 6.18 xe_svm_range_validate() compares has_devmem_pages with
    # "a VRAM region was asked" (true: left alone); 7.0 compares range->pages.dpagemap
    # with tile 0's pagemap (differs: migrated)
    moved = profile == "7.0"
    assert w.prefetch(vm="vm0", addr=BUF, range=2 * MIB, region=1) == {
        "ranges_bound": int(moved)}
    assert _loc(w) == ["gpu0.tile0" if moved else "gpu0.tile1"]


@pytest.mark.parametrize("profile", PROFILES)
def test_prefetch_region_past_the_tiles_is_einval(profile: str) -> None:
    # vm_bind_ioctl_check_args(): the region must be a bit of xe->info.mem_region_mask
    # (system + one bit per tile with VRAM)
    w = _world(profile)
    with pytest.raises(pysvm.XeError) as e:
        w.prefetch(vm="vm0", addr=BUF, range=2 * MIB, region=3)
    assert e.value.errno == errno.EINVAL and "VRAM tiles: 2" in str(e.value)
    w1 = _world(profile, tiles=1)
    with pytest.raises(pysvm.XeError) as e:
        w1.prefetch(vm="vm0", addr=BUF, range=2 * MIB, region=2)
    assert e.value.errno == errno.EINVAL


def test_70_madvise_region_instance_2_prefers_tile_1() -> None:
    # 7.0 xe_svm.c xe_devmem_open(): tile_id = region_instance - 1 (< tile_count, else
    # ENOENT); xe_vma_resolve_pagemap() returns the madvised pagemap first, so a fault from
    # tile 0 migrates into tile 1's VRAM
    w = _world("7.0")
    w.madvise(vm="vm0", addr=BUF, range=2 * MIB, type="preferred_loc", devmem_fd="gpu0",
              region_instance=2)
    assert w.gpu_access(vm="vm0", addr=BUF, size=4096, op="read", tile=0)["faults"] == 1
    assert _loc(w) == ["gpu0.tile1"]
    with pytest.raises(pysvm.XeError) as e:
        w.madvise(vm="vm0", addr=BUF, range=2 * MIB, type="preferred_loc", devmem_fd="gpu0",
                  region_instance=3)
    assert e.value.errno == errno.ENOENT and "it has 2 tiles" in str(e.value)
    # DRM_XE_CONSULT_MEM_ADVISE_PREF_LOC resolves against the root tile but the madvised
    # pagemap wins (xe_vma_resolve_pagemap(vma, xe_device_get_root_tile()))
    w.evict(device="gpu0")
    assert w.prefetch(vm="vm0", addr=BUF, range=2 * MIB, region="pref_loc") == {
        "ranges_bound": 1}
    assert _loc(w) == ["gpu0.tile1"]
    w.check_invariants()


def test_70_vm_holds_a_reference_on_every_tile_pagemap() -> None:
    # 7.0 xe_svm_get_pagemaps(): for_each_tile() with a VRAM region,
    # xe_pagemap_find_or_create() on the tile's cache; xe_svm_put_pagemaps() at close
    w = _world("7.0")
    dev = w.devices["gpu0"]
    svm = w.vms["vm0"].svm
    assert svm is not None
    assert [dp.tile for dp in svm.pagemaps] == [0, 1]
    assert [dp.refcount for dp in dev.pagemaps] == [1, 1]
    # every tile's pagemap has the device's owner (xe_has_interconnect(): same device)
    assert dev.pagemaps[0].owner is dev.pagemaps[1].owner is not None
    w.gpu_access(vm="vm0", addr=BUF, size=4096, op="read", tile=1)
    # + the zdd of the allocation and the range's pages (drm_gpusvm_get_pages)
    assert [dp.refcount for dp in dev.pagemaps] == [1, 3]
    w.check_invariants()


# ------------------------------------------------------------------ eviction


@pytest.mark.parametrize("profile", PROFILES)
def test_evicting_one_tile_leaves_the_other(profile: str) -> None:
    # each tile's VRAM region has its own TTM manager (xe_ttm_vram_mgr.c); xe_svm_bo_evict()
    # -> drm_pagemap_evict_to_ram() moves only that region's BOs
    w = _world(profile)
    w.mmap(addr=BUF + 2 * MIB, size=2 * MIB)
    w.prefetch(vm="vm0", addr=BUF, range=2 * MIB, region=1)
    w.prefetch(vm="vm0", addr=BUF + 2 * MIB, range=2 * MIB, region=2)
    assert _loc(w) == ["gpu0.tile0", "gpu0.tile1"]
    assert w.evict(device="gpu0", tile=0) == {"pages": 512}
    assert _loc(w) == ["system", "gpu0.tile1"]
    assert w.cpu_read(addr=BUF, size=4096) == {"data": [41]}
    assert w.evict(device="gpu0") == {"pages": 512}
    assert _loc(w) == ["system", "system"]


@pytest.mark.parametrize("profile", PROFILES)
def test_vram_pressure_on_one_tile_evicts_only_that_tile(profile: str) -> None:
    # xe_drm_pagemap_populate_mm(): xe_bo_create_locked(XE_BO_FLAG_VRAM(vr)) for the tile's
    # region; TTM makes room by evicting BOs of that region only
    w = _world(profile, vram_mib=4)
    for i in range(1, 4):
        w.mmap(addr=BUF + 2 * i * MIB, size=2 * MIB)
    # faults bind only the faulting tile (unlike PREFETCH, which binds every tile)
    w.gpu_access(vm="vm0", addr=BUF, size=4 * MIB, op="read", tile=1)          # fills tile 1
    w.gpu_access(vm="vm0", addr=BUF + 4 * MIB, size=4 * MIB, op="read", tile=0)  # fills tile 0
    assert _loc(w) == ["gpu0.tile1"] * 2 + ["gpu0.tile0"] * 2
    assert w.stats["evictions_pressure"] == 0
    # a fault from tile 0 on a tile-1 range (7.0 migrates to tile 0; 6.18 maps in place)
    assert w.gpu_access(vm="vm0", addr=BUF, size=4096, op="read", tile=0)["faults"] == 1
    dev = w.devices["gpu0"]
    if profile == "7.0":
        assert w.stats["evictions_pressure"] == 1   # tile 0 made room: its LRU range went
        assert _loc(w) == ["gpu0.tile0", "gpu0.tile1", "system", "gpu0.tile0"]
    else:
        assert w.stats["evictions_pressure"] == 0
        assert _loc(w) == ["gpu0.tile1"] * 2 + ["gpu0.tile0"] * 2
    assert dev.vrams[1].used == 4 * MIB - 2 * MIB * (profile == "7.0")
    assert dev.vrams[0].used == 4 * MIB
    w.check_invariants()
