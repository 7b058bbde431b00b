"""GEM buffer objects with placements and an atomic attribute.

Kernel: struct xe_bo (flags XE_BO_FLAG_SYSTEM / XE_BO_FLAG_VRAM0, attr.atomic_access).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pysvm.xe.attr import AtomicAccess

if TYPE_CHECKING:
    from pysvm.xe.device import Device

__all__ = ["Bo", "PLACEMENTS", "PURGE_WILLNEED", "PURGE_DONTNEED", "PURGE_PURGED",
           "PURGE_NAMES"]

PLACEMENTS = ("vram", "system")

#: Bo.purge_state values. Kernel: XE_MADV_PURGEABLE_WILLNEED / _DONTNEED / _PURGED.
PURGE_WILLNEED, PURGE_DONTNEED, PURGE_PURGED = 0, 1, 2
PURGE_NAMES = ("willneed", "dontneed", "purged")


@dataclass(eq=False)
class Bo:
    """A buffer object. ``handle`` is the gpuvm object id. Kernel: struct xe_bo."""

    name: str
    handle: int
    device: Device
    size: int
    placements: tuple[str, ...]
    atomic_access: int = int(AtomicAccess.UNDEFINED)
    #: number of CPU-mapping zaps (ttm_bo_unmap_virtual) madvise issued
    cpu_unmaps: int = 0
    extra: dict[str, object] = field(default_factory=dict)
    #: where the BO lives now: ``"vram"`` or ``"system"``; None = its first placement.
    #: Changed by xe_bo_migrate() (PREFETCH of a BO VMA, a fault needing VRAM).
    resident: str | None = None
    #: purgeable state (7.0): 0 WILLNEED, 1 DONTNEED, 2 purged (terminal).
    #: Kernel: bo->madv_purgeable (xe_bo.h).
    purge_state: int = 0
    #: VMAs in WILLNEED state over all VMs (xe_bo_willneed_get/put_locked()).
    willneed: int = 0
    #: VMAs of the BO over all VMs.
    vma_count: int = 0
    #: drm_xe_gem_create.cpu_caching: "wb", "wc", or None when the trace did not say
    #: (then the bind's caching rules are not checked). Kernel: bo->cpu_caching.
    cpu_caching: str | None = None
    #: an imported dma-buf: no cpu_caching at all (bo->cpu_caching == 0).
    imported: bool = False

    def willneed_get(self) -> None:
        """A WILLNEED VMA appears: 0 -> 1 makes a DONTNEED BO WILLNEED (not a purged
        one). Kernel: xe_bo_willneed_get_locked()."""
        self.willneed += 1
        if self.willneed == 1 and self.purge_state == PURGE_DONTNEED:
            self.purge_state = PURGE_WILLNEED

    def willneed_put(self) -> None:
        """A WILLNEED VMA goes away or becomes DONTNEED: 1 -> 0 makes the BO DONTNEED
        if it still has VMAs. Kernel: xe_bo_willneed_put_locked()."""
        self.willneed -= 1
        if self.willneed == 0 and self.vma_count and self.purge_state == PURGE_WILLNEED:
            self.purge_state = PURGE_DONTNEED

    @property
    def flag_system(self) -> bool:
        """Kernel: bo->flags & XE_BO_FLAG_SYSTEM."""
        return "system" in self.placements

    @property
    def flag_vram(self) -> bool:
        """Kernel: bo->flags & (XE_BO_FLAG_VRAM0 | XE_BO_FLAG_VRAM1)."""
        return "vram" in self.placements

    @property
    def is_vram(self) -> bool:
        """Currently resident in VRAM (first placement until migrated). Kernel: xe_bo_is_vram()."""
        where = self.resident if self.resident is not None else self.placements[0]
        return where == "vram" and self.device.discrete
