"""A simulated Xe device with one VRAM tile.

Kernel: struct xe_device / struct xe_tile (the fields the model needs:
IS_DGFX, info.has_device_atomics_on_smem, the PAT table, tile VRAM).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .attr import CohMode

__all__ = ["Device", "DEFAULT_PAT_COH", "DEVICE_INIT_HOOKS"]

MIB = 1 << 20

#: Coherency mode per PAT index of the modelled platform (an Xe2-shaped table of
#: 32 entries: index 0 and 3+ non-coherent, 1-2 coherent, 20-31 reserved).
#: Kernel: xe->pat.table[i].coh_mode, read by xe_pat_index_get_coh_mode().
DEFAULT_PAT_COH: tuple[int, ...] = tuple(
    int(CohMode.INVALID) if i >= 20 else
    int(CohMode.AT_LEAST_1WAY) if i in (1, 2) else int(CohMode.NONE)
    for i in range(32))


@dataclass(eq=False)
class Device:
    """One GPU. Kernel: struct xe_device with a single struct xe_tile.

    ``vram`` and ``pagemap`` are filled by the SVM layer (pysvm.vram) and the
    pagemap layer (pysvm.pagemap);
    ``pagemap`` stays None for an integrated device. ``fd`` is the number the
    model gives this device's open file (used as a madvise ``devmem_fd``).
    """

    name: str
    vram_bytes: int
    discrete: bool
    smem_atomics: bool
    fd: int
    tile_id: int = 0
    pat_coh: tuple[int, ...] = DEFAULT_PAT_COH
    vram: Any = None
    pagemap: Any = None
    unbound: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_pat_entries(self) -> int:
        """Kernel: xe->pat.n_entries."""
        return len(self.pat_coh)

    def pat_coh_mode(self, pat_index: int) -> int:
        """Coherency of a PAT index; INVALID for out-of-table indices.

        Kernel: xe_pat_index_get_coh_mode().
        """
        if 0 <= pat_index < len(self.pat_coh):
            return self.pat_coh[pat_index]
        return int(CohMode.INVALID)


#: Called as hook(world, device) after a device is created (the SVM and pagemap
#: layers attach ``vram`` and ``pagemap``).
DEVICE_INIT_HOOKS: list[Callable[[Any, Device], None]] = []
