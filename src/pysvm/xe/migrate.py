"""Moving SVM pages between system memory and device VRAM.

Kernel: drivers/gpu/drm/drm_pagemap.c (drm_pagemap_populate_mm,
drm_pagemap_migrate_to_devmem, drm_pagemap_evict_to_ram, the CPU-fault
migrate_to_ram callback) and xe_drm_pagemap_populate_mm() in xe_svm.c.

Every move fires the MMU notifiers with ``MMU_NOTIFY_MIGRATE`` over the pages
moved (migrate_vma_setup / migrate_device_range do), so GPU mappings of the
old pages are zapped before the page table changes. A move copies each page's
value into a new page (one new :class:`pysvm.mm.mmap.PageRun` per move) and installs
it, then frees the old page; values are never lost or duplicated.

Pagemap references: one clear place. An allocation's zdd
(:class:`pysvm.drm.pagemap.Zdd`, made by :func:`populate_mm`) takes a reference on its
device's pagemap and drops it when the allocation's last device page is gone
(:meth:`pysvm.xe.vram.VramAllocation.release`). The moves back to system memory
(CPU fault, eviction) live with the allocation in :mod:`pysvm.xe.vram`.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from pysvm.drm.pagemap import Zdd
from pysvm.errors import XeError
from pysvm.mm.mmap import PAGE_SHIFT, PAGE_SIZE, Mm
from pysvm.mm.mmu_notifier import NotifyEvent
from pysvm.xe.vram import VramAllocation, evict_to_ram

if TYPE_CHECKING:
    from pysvm.xe.device import Device

__all__ = ["populate_mm", "migrate_to_devmem", "evict_device"]


def evict_device(device: Device, tile: int | None = None) -> int:
    """Evict every allocation in ``device``'s VRAM (the ``evict`` trace event): every
    tile's, tile by tile, or only tile ``tile``'s.

    Kernel: TTM eviction of all VRAM BOs (xe_bo_evict_all for suspend, or
    memory pressure), each SVM BO through xe_svm_bo_evict(); each tile's VRAM region
    has its own TTM manager (xe_ttm_vram_mgr per struct xe_vram_region), so one tile's
    eviction leaves the other's memory alone. Returns pages moved.
    """
    n = 0
    for vram in device.vrams if tile is None else device.vrams[tile:tile + 1]:
        for alloc in list(vram.allocations.values()):
            n += evict_to_ram(alloc)
            vram.stats["evictions_requested"] += 1
    return n


def migrate_to_devmem(alloc: VramAllocation, mm: Mm, start: int, end: int,
                      timeslice_ms: int, *, newest: bool = False) -> None:
    """Migrate ``[start, end)`` into the allocation ``alloc``.

    Kernel: drm_pagemap_migrate_to_devmem(). Missing CPU VMA -> ENOENT; span outside it ->
    EINVAL; not anonymous -> EBUSY. migrate_vma_setup() collects system and not yet
    populated pages only (MIGRATE_VMA_SELECT_SYSTEM; the newest code adds
    SELECT_DEVICE_COHERENT but, per its FIXME, not SELECT_DEVICE_PRIVATE, so device pages
    are never collected, not even this pagemap's own). The migration is all or nothing:

    * 6.18: no page collected -> EFAULT, some but not all -> EBUSY. So a span whose pages
      are all device pages already fails with EFAULT.
    * newest: no page or only some collected -> EBUSY ("raced or unknown device pages");
      the caller (xe_svm_alloc_vram) then evicts the range and tries once more.

    Unpopulated pages are migrated as zero pages. The caller's allocation is consumed on
    error (released here).
    """
    try:
        vma = mm.find_vma(start)
        if vma is None:
            raise XeError(errno.ENOENT, f"migrate: no CPU VMA at {start:#x}")
        if end > vma.end or start < vma.start:
            raise XeError(errno.EINVAL, f"migrate: [{start:#x}, {end:#x}) crosses the CPU VMA")
        if not vma.anonymous:
            raise XeError(errno.EBUSY, "migrate: CPU VMA is not anonymous")
        npages = (end - start) // PAGE_SIZE
        collected = mm.collectable(start, end)
        if collected == 0:
            raise XeError(errno.EBUSY if newest else errno.EFAULT,
                          f"migrate: no page of [{start:#x}, {end:#x}) can be collected "
                          "(all are device pages)")
        if collected != npages:
            raise XeError(errno.EBUSY, f"migrate: only {collected} of {npages} pages of "
                          f"[{start:#x}, {end:#x}) can be collected (the others are device "
                          "pages)")
        mm.invalidate(start, end, NotifyEvent.MIGRATE, alloc.owner)
        alloc.pages.set_run(start, mm.migrate_vma_run(start, end, alloc))
    except XeError:
        alloc.release()
        raise
    alloc.timeslice_ms = timeslice_ms
    if alloc.zdd is not None:   # drm_pagemap_migrate_to_devmem(): upon success, now + slice
        clock = alloc.vram.device.clock
        alloc.zdd.timeslice_expiration = clock.note_deadline(clock.now_ms + timeslice_ms)
    st = alloc.vram.stats
    st["migrations_to_vram"] += 1
    st["bytes_to_vram"] += (end - start)


def populate_mm(device: Device, mm: Mm, start: int, end: int, timeslice_ms: int = 0, *,
                newest: bool = False, tile: int = 0) -> None:
    """Allocate VRAM on ``device``'s tile ``tile`` for ``[start, end)`` and migrate into it.

    Kernel: drm_pagemap_populate_mm() -> xe_drm_pagemap_populate_mm() on the tile's
    pagemap (6.18: the tile's vr->dpagemap; newest: the xe_pagemap of the tile's
    xe_vram_region, allocating with XE_BO_FLAG_VRAM(vr)):
    unplugged provider -> ENODEV; dead mm -> EFAULT; VRAM allocation failure
    (after eviction under pressure, in that tile's VRAM only) -> ENOMEM; then
    migrate_to_devmem's errors (``newest`` selects which kernel's page collection rules
    apply).
    """
    # The tile's pagemap handle is fixed once the device is probed (attach_device()), so
    # the one looked up here is also the one the zdd below holds.
    pm = device.pagemap if tile == 0 else device.tile_pagemap(tile)
    if device.unbound:
        raise XeError(errno.ENODEV, f"{device.name}: device is unbound")
    if pm is not None and not pm.populate_allowed():   # may itself raise XeError(ENODEV)
        raise XeError(errno.ENODEV, f"{device.name}: pagemap cannot populate (device gone)")
    if not mm.alive:
        raise XeError(errno.EFAULT, "populate: address space is gone")
    if tile >= len(device.vrams):
        raise XeError(errno.ENODEV, f"{device.name} has no VRAM"
                      + (f" on tile {tile}" if device.vrams else ""))
    vram = device.vrams[tile]
    if start % PAGE_SIZE or end % PAGE_SIZE or end <= start:
        raise XeError(errno.EINVAL, f"populate: bad span [{start:#x}, {end:#x})")
    alloc = vram.alloc(mm, start, end - start)
    if pm is not None:     # drm_pagemap_zdd_alloc(): the zdd holds the tile's pagemap
        alloc.zdd = Zdd(pm, (end - start) // PAGE_SIZE)
    migrate_to_devmem(alloc, mm, start, end, timeslice_ms, newest=newest)


def page_index(addr: int) -> int:
    return addr >> PAGE_SHIFT
