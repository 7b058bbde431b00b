"""A simulated Xe device with one or more tiles, each with its own VRAM.

Kernel: struct xe_device / struct xe_tile (the fields the model needs:
IS_DGFX, info.has_device_atomics_on_smem, the PAT table, info.tile_count and each
tile's VRAM region).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from pysvm.clock import Clock
from pysvm.errors import XeError
from pysvm.xe.attr import CohMode
from pysvm.xe.vram import Vram

if TYPE_CHECKING:
    from pysvm.xe.pagemap import DevicePagemap

__all__ = ["Device", "DEFAULT_PAT_COH", "ATOMIC_SVM_TIMESLICE_MS", "L2_FLUSH_PAT_INDEX",
           "MAX_TILES_PER_DEVICE", "check_tile_count"]

MIB: Final = 1 << 20

#: Kernel: xe_device_types.h XE_MAX_TILES_PER_DEVICE (XE_GT1 + 1): at most two tiles.
MAX_TILES_PER_DEVICE: Final = 2

#: Kernel: xe_device.c xe_device_create() sets xe->atomic_svm_timeslice_ms to 5; the
#: debugfs file atomic_svm_timeslice_ms (xe_debugfs.c) changes it at run time.
ATOMIC_SVM_TIMESLICE_MS: Final = 5

#: The PAT index a device with the optimised L2 flush accepts for CPU-cached memory
#: besides 2-way coherent ones. Kernel (7.0): ``pat_index != 19 && coh_mode !=
#: XE_COH_2WAY`` in xe_vm.c vm_bind_ioctl_check_args(), xe_vm_bind_ioctl_validate_bo()
#: and xe_vm_madvise.c xe_vm_madvise_ioctl().
L2_FLUSH_PAT_INDEX: Final = 19

#: Coherency mode per PAT index of the modelled platform: the Xe2 table (32 entries).
#: Entries 16-19 are reserved and left all-zero (coherency 0: INVALID); entries whose
#: XE2_PAT coh_mode is 1-way (2) or 2-way (3) read as AT_LEAST_1WAY (1, 2, 4, 5, 7, 22,
#: 23, 26, 27, 30, 31); every other entry is non-coherent.
#: Kernel: xe_pat.c xe2_pat_table[] and the XE2_PAT() macro's coh_mode, read by
#: xe_pat_index_get_coh_mode() as xe->pat.table[i].coh_mode.
_XE2_COHERENT = frozenset((1, 2, 4, 5, 7, 22, 23, 26, 27, 30, 31))
DEFAULT_PAT_COH: tuple[int, ...] = tuple(
    int(CohMode.INVALID) if 16 <= i <= 19 else
    int(CohMode.AT_LEAST_1WAY) if i in _XE2_COHERENT else int(CohMode.NONE)
    for i in range(32))


def check_tile_count(name: str, tiles: int) -> None:
    """EINVAL unless an xe device can have ``tiles`` tiles (1 to
    :data:`MAX_TILES_PER_DEVICE`)."""
    if not 1 <= tiles <= MAX_TILES_PER_DEVICE:
        raise XeError(errno.EINVAL, f"device {name}: tiles {tiles} (an xe device has 1 to "
                      f"{MAX_TILES_PER_DEVICE}, XE_MAX_TILES_PER_DEVICE)")


@dataclass(eq=False)
class Device:
    """One GPU. Kernel: struct xe_device with ``tiles`` struct xe_tile (info.tile_count,
    at most :data:`MAX_TILES_PER_DEVICE`; every tile is iterated by for_each_tile()).

    ``vram_bytes`` is the size of each tile's VRAM region. ``vrams`` holds one
    :class:`~pysvm.xe.vram.Vram` per tile (tile ``k`` is VRAM region instance ``k + 1``,
    xe_tile_to_vr()), empty for an integrated device; ``vram`` is tile 0's (None for an
    integrated device). ``pagemaps`` holds the handle on each tile's drm_pagemap, set by
    the composition root when it probes the device in the pagemap subsystem
    (:func:`pysvm.xe.pagemap.attach_device`); ``pagemap`` is tile 0's, None for an
    integrated device. ``fd`` is the number the
    model gives this device's open file (used as a madvise ``devmem_fd``).
    ``atomic_svm_timeslice_ms`` is the minimum time pages migrated for a GPU atomic stay
    in VRAM before a CPU fault may take them back (kernel: xe->atomic_svm_timeslice_ms).
    ``l2_flush_optimized`` is the 7.0 capability behind xe_device_is_l2_flush_optimized():
    such a device needs PAT index 19 (:data:`L2_FLUSH_PAT_INDEX`) or a 2-way coherent entry
    for memory the CPU caches (userptr, CPU mirror, imported BOs).
    ``clock`` is the machine's virtual clock (kernel: jiffies), shared by every device
    the composition root makes.
    """

    name: str
    vram_bytes: int
    discrete: bool
    smem_atomics: bool
    fd: int
    tiles: int = 1
    pat_coh: tuple[int, ...] = DEFAULT_PAT_COH
    vram: Vram | None = field(init=False, default=None)
    vrams: list[Vram] = field(init=False, default_factory=list)
    pagemap: DevicePagemap | None = None
    pagemaps: list[DevicePagemap] = field(default_factory=list)
    unbound: bool = False
    atomic_svm_timeslice_ms: int = ATOMIC_SVM_TIMESLICE_MS
    l2_flush_optimized: bool = False
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        check_tile_count(self.name, self.tiles)
        # (set here, not only as field defaults: a compiled dataclass leaves init=False
        # fields unset until __post_init__ assigns them)
        self.vram = None
        self.vrams = []
        # Kernel: xe_vram_probe() sizes each tile's VRAM region at probe (for_each_tile).
        if self.discrete:
            self.vrams = [Vram(self, self.vram_bytes, tile=t,
                               name=self.name if self.tiles == 1 else f"{self.name}.tile{t}")
                          for t in range(self.tiles)]
            self.vram = self.vrams[0]

    @property
    def tile_mask(self) -> int:
        """Every tile's bit. Kernel: xe_vma_create() sets vma->tile_mask with
        for_each_tile(); the PREFETCH of vm_bind_ioctl_ops_create() builds the same mask."""
        return (1 << self.tiles) - 1

    def tile_pagemap(self, tile: int) -> DevicePagemap | None:
        """The handle on tile ``tile``'s VRAM pagemap (None when it has none): ``pagemap``
        for tile 0, ``pagemaps[tile]`` otherwise. Kernel: 6.18 tile_local_pagemap(),
        newest xe_tile_local_pagemap()."""
        if tile == 0:
            return self.pagemap
        return self.pagemaps[tile] if tile < len(self.pagemaps) else None

    def check_tile(self, tile: int, what: str) -> None:
        """EINVAL naming ``tile`` when this device has no such tile."""
        if not 0 <= tile < self.tiles:
            raise XeError(errno.EINVAL, f"{what}: device {self.name} has no tile {tile} "
                          f"(it has {self.tiles}: 0..{self.tiles - 1})")

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

    def l2_flush_refuses(self, pat_index: int) -> bool:
        """7.0: this device has the optimised L2 flush and ``pat_index`` is neither 19
        nor 2-way coherent, so CPU-cached memory may not use it. Kernel:
        xe_device_is_l2_flush_optimized() && pat_index != 19 && coh_mode != XE_COH_2WAY."""
        return (self.l2_flush_optimized and pat_index != L2_FLUSH_PAT_INDEX
                and self.pat_coh_mode(pat_index) != CohMode.TWO_WAY)
