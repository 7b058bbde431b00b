"""Moving SVM pages between system memory and device VRAM.

Kernel: drivers/gpu/drm/drm_pagemap.c (drm_pagemap_populate_mm,
drm_pagemap_migrate_to_devmem, drm_pagemap_evict_to_ram, the CPU-fault
migrate_to_ram callback) and xe_drm_pagemap_populate_mm() in xe_svm.c.

Every move fires the MMU notifiers with ``MMU_NOTIFY_MIGRATE`` over the pages
moved (migrate_vma_setup / migrate_device_range do), so GPU mappings of the
old pages are zapped before the page table changes. A move copies each page's
value into a new :class:`pysvm.mm.Page` and installs it, then frees the old
page; values are never lost or duplicated.

Pagemap references: one clear place. An allocation takes a reference on its
device's pagemap when it is created (:func:`_pagemap_get`) and drops it when
its last device page is gone (:func:`_pagemap_put`, called by
:meth:`pysvm.vram.Vram.free`). The pagemap layer (pysvm.pagemap) plugs in through
``device.pagemap`` (``get()``/``put()``/``populate_allowed()``).
"""

from __future__ import annotations

import errno
from typing import Any

from .errors import XeError
from .mm import PAGE_SHIFT, PAGE_SIZE, Mm, NotifyEvent, Page
from .vram import VramAllocation, get_vram

__all__ = [
    "populate_mm", "migrate_to_devmem", "migrate_to_ram", "evict_to_ram", "evict_range",
    "evict_device", "_pagemap_get", "_pagemap_put",
]


def _pagemap_get(device: Any) -> None:
    """Take the reference a device allocation holds on its pagemap.

    Kernel: drm_pagemap_get() in drm_pagemap_zdd_alloc().
    """
    pm = getattr(device, "pagemap", None)
    if pm is not None and hasattr(pm, "get"):
        pm.get()


def _pagemap_put(device: Any) -> None:
    """Drop the reference taken by :func:`_pagemap_get`.

    Kernel: drm_pagemap_put() in drm_pagemap_zdd_destroy().
    """
    pm = getattr(device, "pagemap", None)
    if pm is not None and hasattr(pm, "put"):
        pm.put()


def _check_populate_allowed(device: Any) -> None:
    pm = getattr(device, "pagemap", None)
    if getattr(device, "unbound", False):
        raise XeError(errno.ENODEV, f"{getattr(device, 'name', '?')}: device is unbound")
    if pm is not None and hasattr(pm, "populate_allowed"):
        ok = pm.populate_allowed()      # may itself raise XeError(ENODEV)
        if ok is False:
            raise XeError(errno.ENODEV, f"{getattr(device, 'name', '?')}: pagemap cannot "
                          "populate (device gone)")


def _move_to_system(mm: Mm, alloc: VramAllocation, addrs: list[int]) -> int:
    """Copy the given device pages of ``alloc`` to new system pages."""
    addrs = sorted(a for a in addrs if a in alloc.pages)
    if not addrs:
        return 0
    # One notifier call per contiguous run, before the page table changes.
    run_start = prev = addrs[0]
    for a in [*addrs[1:], None]:
        if a is None or a != prev + PAGE_SIZE:
            mm.invalidate(run_start, prev + PAGE_SIZE, NotifyEvent.MIGRATE, alloc.owner)
            if a is not None:
                run_start = a
        if a is not None:
            prev = a
    moved = 0
    for a in addrs:
        old = alloc.pages.get(a)
        if old is None:
            continue
        if mm.page_at(a) is old:
            mm.set_page(a, Page(old.value))
        moved += 1
        alloc.page_freed(old)
    st = alloc.vram.stats
    st["migrations_to_system"] += 1
    st["bytes_to_system"] += moved * PAGE_SIZE
    return moved


def migrate_to_ram(mm: Mm, addr: int, alloc: VramAllocation) -> None:
    """CPU fault on a device page: bring the allocation's window back.

    Kernel: drm_pagemap_migrate_to_ram() (dev_pagemap_ops.migrate_to_ram):
    the window is ``addr`` aligned down to the allocation size, clamped to the
    CPU VMA; every device page of this owner in it is migrated to system
    memory. (The kernel may return early while the allocation's timeslice runs;
    see :meth:`pysvm.mm.Mm._cpu_fault`.) Failure would be SIGBUS.
    """
    vma = mm.find_vma(addr)
    if vma is None:
        raise XeError(errno.EFAULT, f"CPU fault at {addr:#x}: no CPU VMA (SIGBUS)")
    size = max(alloc.size, PAGE_SIZE)
    start = max(addr - addr % size, vma.start)
    end = min(addr - addr % size + size, vma.end)
    by_alloc: dict[int, tuple[VramAllocation, list[int]]] = {}
    for a in range(start, end, PAGE_SIZE):
        p = mm.page_at(a)
        if p is not None and p.alloc is not None and p.alloc.owner is alloc.owner:
            by_alloc.setdefault(p.alloc.id, (p.alloc, []))[1].append(a)
    if not by_alloc:            # the page moved meanwhile: still make progress
        _move_to_system(mm, alloc, [addr - addr % PAGE_SIZE])
    for al, addrs in by_alloc.values():
        _move_to_system(mm, al, addrs)


def evict_to_ram(alloc: VramAllocation) -> int:
    """Move every remaining page of ``alloc`` to system memory.

    Kernel: drm_pagemap_evict_to_ram() (up to 3 attempts until "detached";
    here one attempt always detaches). Returns the number of pages moved.

    Raises XeError(EFAULT) when the owning address space is gone.
    """
    if alloc.released or alloc.detached:
        return 0
    if not alloc.mm.alive:
        raise XeError(errno.EFAULT, "evict: address space is gone")
    n = _move_to_system(alloc.mm, alloc, list(alloc.pages))
    if not alloc.detached:      # pragma: no cover - defensive: the model always detaches
        raise XeError(errno.EBUSY, f"evict: {alloc!r} still has pages")
    return n


def evict_range(mm: Mm, start: int, end: int) -> int:
    """Move every device page in ``[start, end)`` back to system memory.

    Kernel: drm_gpusvm_range_evict() (hmm_range_fault with no device owner,
    which migrates every device-private page to RAM).
    """
    by_alloc: dict[int, tuple[VramAllocation, list[int]]] = {}
    for a in range(start, end, PAGE_SIZE):
        p = mm.page_at(a)
        if p is not None and p.alloc is not None:
            by_alloc.setdefault(p.alloc.id, (p.alloc, []))[1].append(a)
    return sum(_move_to_system(mm, al, addrs) for al, addrs in by_alloc.values())


def evict_device(device: Any) -> int:
    """Evict every allocation in ``device``'s VRAM (the ``evict`` trace event).

    Kernel: TTM eviction of all VRAM BOs (xe_bo_evict_all for suspend, or
    memory pressure), each SVM BO through xe_svm_bo_evict(). Returns pages moved.
    """
    vram = get_vram(device)
    if vram is None:
        return 0
    n = 0
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
        collected = 0
        for a in range(start, end, PAGE_SIZE):
            p = mm.page_at(a)
            if p is None or p.alloc is None:
                collected += 1
        if collected == 0:
            raise XeError(errno.EBUSY if newest else errno.EFAULT,
                          f"migrate: no page of [{start:#x}, {end:#x}) can be collected "
                          "(all are device pages)")
        if collected != npages:
            raise XeError(errno.EBUSY, f"migrate: only {collected} of {npages} pages of "
                          f"[{start:#x}, {end:#x}) can be collected (the others are device "
                          "pages)")
        mm.invalidate(start, end, NotifyEvent.MIGRATE, alloc.owner)
        for a in range(start, end, PAGE_SIZE):
            old = mm.page_at(a)
            page = Page(old.value if old is not None else 0, alloc)
            alloc.pages[a] = page
            mm.set_page(a, page)
    except XeError:
        alloc.release()
        raise
    alloc.timeslice_ms = timeslice_ms
    st = alloc.vram.stats
    st["migrations_to_vram"] += 1
    st["bytes_to_vram"] += (end - start)


def populate_mm(device: Any, mm: Mm, start: int, end: int, timeslice_ms: int = 0, *,
                newest: bool = False) -> None:
    """Allocate VRAM on ``device`` for ``[start, end)`` and migrate into it.

    Kernel: drm_pagemap_populate_mm() -> xe_drm_pagemap_populate_mm():
    unplugged provider -> ENODEV; dead mm -> EFAULT; VRAM allocation failure
    (after eviction under pressure) -> ENOMEM; then migrate_to_devmem's errors
    (``newest`` selects which kernel's page collection rules apply).
    """
    _check_populate_allowed(device)
    if not mm.alive:
        raise XeError(errno.EFAULT, "populate: address space is gone")
    vram = get_vram(device)
    if vram is None:
        raise XeError(errno.ENODEV, f"{getattr(device, 'name', '?')} has no VRAM")
    if start % PAGE_SIZE or end % PAGE_SIZE or end <= start:
        raise XeError(errno.EINVAL, f"populate: bad span [{start:#x}, {end:#x})")
    alloc = vram.alloc(mm, start, end - start)
    _pagemap_get(device)
    migrate_to_devmem(alloc, mm, start, end, timeslice_ms, newest=newest)


def page_index(addr: int) -> int:
    return addr >> PAGE_SHIFT
