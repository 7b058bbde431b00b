"""Per-device VRAM: capacity, allocations, device-resident pages.

Kernel: the VRAM region of a tile (struct xe_vram_region with its TTM VRAM
manager) and the device-memory allocation backing migrated SVM pages
(struct drm_pagemap_devmem embedded in an xe_bo, plus the drm_pagemap_zdd that
every device page points at).

Model
-----
A :class:`Vram` has a byte capacity and an LRU-ordered set of
:class:`VramAllocation`. An allocation is created for one SVM range at a time
(size = range size) and owns the device pages migrated into it (each a
:class:`pysvm.mm.Page` whose ``alloc`` is the allocation, holding its value).
When its last page goes away (migrated back, munmapped) the allocation is
released: its bytes return to the VRAM and its pagemap reference is dropped
(the zdd's last put). Allocating more than is free first evicts the least
recently used allocations to system memory, as TTM eviction does
(xe_svm_bo_evict -> drm_pagemap_evict_to_ram); when that is not enough the
allocation fails with ENOMEM. Page values are never lost: eviction copies each
page to a new system page before freeing the device page.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
from collections import Counter, OrderedDict
from typing import Any

from .errors import XeError
from .mm import Mm, Page

__all__ = ["Vram", "VramAllocation", "get_vram", "devm_owner"]

_ids = itertools.count(1)


def devm_owner(device: Any) -> object:
    """The device-private page owner of ``device``'s VRAM.

    Kernel: xe_svm_devm_owner() (6.18: the xe device itself; newest: the
    pagemap owner group, so peers in one group share pages directly).
    """
    pm = getattr(device, "pagemap", None)
    owner = getattr(pm, "owner", None) if pm is not None else None
    return owner if owner is not None else device


class VramAllocation:
    """Device memory backing one migrated SVM range.

    Kernel: struct drm_pagemap_devmem (xe_bo->devmem_allocation) + its zdd.
    """

    def __init__(self, vram: Vram, mm: Mm, start: int, size: int) -> None:
        self.id = next(_ids)
        self.vram = vram
        self.mm = mm
        self.start = start
        self.size = size
        self.pages: dict[int, Page] = {}      # address -> live device page
        self.timeslice_ms = 0
        self.released = False

    @property
    def device(self) -> Any:
        return self.vram.device

    @property
    def owner(self) -> object:
        return devm_owner(self.vram.device)

    @property
    def detached(self) -> bool:
        """Kernel: completion of zdd->devmem_allocation->detached."""
        return not self.pages

    def __repr__(self) -> str:
        return f"<alloc {self.id} {self.vram.device_name} {self.start:#x}+{self.size:#x}>"

    def migrate_to_ram(self, mm: Mm, addr: int) -> None:
        """CPU fault on one of our pages. Kernel: drm_pagemap_migrate_to_ram()."""
        from .migrate import migrate_to_ram
        migrate_to_ram(mm, addr, self)

    def page_freed(self, page: Page) -> None:
        """A device page was freed. Kernel: drm_pagemap_page_free() -> zdd put."""
        for addr, p in list(self.pages.items()):
            if p is page:
                del self.pages[addr]
                break
        if not self.pages:
            self.release()

    def release(self) -> None:
        """Return the memory and drop the pagemap reference (once).

        Kernel: drm_pagemap_zdd_destroy() -> devmem_release (xe_svm_devmem_release).
        """
        if self.released:
            return
        self.released = True
        self.vram.free(self)


class Vram:
    """One VRAM tile's memory.

    Kernel: struct xe_vram_region + the TTM VRAM manager's capacity.
    """

    def __init__(self, device: Any, capacity: int, stats: Counter[str] | None = None) -> None:
        if capacity < 0:
            raise XeError(errno.EINVAL, f"VRAM capacity {capacity} is negative")
        self.device = device
        self.capacity = capacity
        self.used = 0
        self.allocations: OrderedDict[int, VramAllocation] = OrderedDict()
        self.stats: Counter[str] = stats if stats is not None else Counter()

    @property
    def device_name(self) -> str:
        return str(getattr(self.device, "name", "?"))

    @property
    def free_bytes(self) -> int:
        return self.capacity - self.used

    def touch(self, alloc: VramAllocation) -> None:
        """Mark an allocation most recently used (TTM LRU bump)."""
        if alloc.id in self.allocations:
            self.allocations.move_to_end(alloc.id)

    def alloc(self, mm: Mm, start: int, size: int,
              keep: tuple[VramAllocation, ...] = ()) -> VramAllocation:
        """Reserve ``size`` bytes, evicting LRU allocations under pressure.

        Kernel: xe_bo_create_locked(VRAM) in xe_drm_pagemap_populate_mm(), with
        TTM evicting other SVM allocations through xe_svm_bo_evict().

        Raises XeError(ENOMEM) when even after eviction the memory does not fit.
        """
        if size > self.capacity:
            raise XeError(errno.ENOMEM, f"{self.device_name}: {size:#x} bytes exceed the "
                          f"VRAM capacity {self.capacity:#x}")
        from .migrate import evict_to_ram
        for victim in list(self.allocations.values()):
            if self.free_bytes >= size:
                break
            if victim in keep:
                continue
            evict_to_ram(victim)
            self.stats["evictions_pressure"] += 1
        if self.free_bytes < size:
            raise XeError(errno.ENOMEM, f"{self.device_name}: out of VRAM ({self.free_bytes:#x} "
                          f"free, {size:#x} needed)")
        a = VramAllocation(self, mm, start, size)
        self.allocations[a.id] = a
        self.used += size
        return a

    def free(self, alloc: VramAllocation) -> None:
        if self.allocations.pop(alloc.id, None) is not None:
            self.used -= alloc.size
            from .migrate import _pagemap_put
            _pagemap_put(self.device)

    def resident_pages(self) -> int:
        return sum(len(a.pages) for a in self.allocations.values())


def get_vram(device: Any) -> Vram | None:
    """The device's :class:`Vram` (created on first use); None for integrated.

    Reads ``device.vram_bytes`` (or ``vram_mib``) and ``device.discrete`` and
    stores the result in ``device.vram``.
    """
    v = getattr(device, "vram", None)
    if isinstance(v, Vram):
        return v
    if not getattr(device, "discrete", True):
        return None
    cap = getattr(device, "vram_bytes", None)
    if cap is None:
        cap = int(getattr(device, "vram_mib", 0)) << 20
    vram = Vram(device, int(cap))
    with contextlib.suppress(AttributeError):   # slotted foreign objects
        device.vram = vram
    return vram
