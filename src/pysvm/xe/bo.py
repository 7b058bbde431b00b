"""GEM buffer objects with placements and an atomic attribute.

Kernel: struct xe_bo (flags XE_BO_FLAG_SYSTEM / XE_BO_FLAG_VRAM0, attr.atomic_access).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pysvm.xe.attr import AtomicAccess

if TYPE_CHECKING:
    from pysvm.xe.device import Device

__all__ = ["Bo", "PLACEMENTS"]

PLACEMENTS = ("vram", "system")


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
