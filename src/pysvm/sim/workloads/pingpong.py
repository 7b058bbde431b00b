"""Two GPUs ping-ponging one buffer: each round device 0 then device 1 updates it all.

Kernel paths: two fault-mode VMs, one per device, both mirroring the same process
(drm_gpusvm_init() over one mm). Device 0's atomics migrate each chunk into its VRAM
(xe_svm_handle_pagefault(), drm_pagemap_populate_mm()); device 1's atomics then find
pages that are device-private to another owner: its fault path cannot migrate
device-private pages directly (drm_pagemap_migrate_to_devmem() collects system pages
only, MIGRATE_VMA_SELECT_SYSTEM), and drm_gpusvm_get_pages() -> hmm_range_fault() with
device 1's owner faults the foreign pages back to RAM through device 0's
dev_pagemap_ops.migrate_to_ram (drm_pagemap_migrate_to_ram()). Each round therefore moves
the whole buffer through system memory twice; faults, retries and failed faults show how
the handler (its retry loop in __xe_svm_handle_pagefault()) copes.

Real application: a two-GPU pipeline or data-parallel job that hands the same
shared-memory buffer back and forth (halo exchange, a model split across devices)
without peer mappings.
"""

from __future__ import annotations

from pysvm.sim.workloads.base import CHUNK, Driver, Workload

__all__ = ["PingPong", "PingPongTiles"]


class PingPong(Workload):
    """``passes`` rounds: vm0 (gpu0) rewrites the buffer, then vm1 (gpu1) does."""

    name = "ping-pong"
    title = "two GPUs alternately rewrite one buffer"
    devices = 2
    default_passes = 3
    passes_meaning = "rounds"

    def turns(self) -> list[tuple[str, str, int | None]]:
        """Who rewrites the buffer in a round, in order: (phase label, VM, tile)."""
        return [(f"gpu{k}", vm, None) for k, vm in enumerate(self.vms)]

    def body(self, drv: Driver, passes: int) -> int:
        n = drv.cfg.size // CHUNK
        buf = drv.carve(n)
        self.buffers = [buf]
        with drv.phase("cpu-init"):
            drv.mmap(buf.addr, buf.size)
            for i in range(n):
                drv.cpu_write(buf.chunk(i), CHUNK)
        for r in range(passes):
            for label, vm, tile in self.turns():
                with drv.phase(f"round {r + 1}: {label}"):
                    for i in range(n):
                        drv.gpu(vm, "write", buf.chunk(i), CHUNK, tile=tile)
        with drv.phase("cpu-readback"):
            for i in range(n):
                drv.cpu_read(buf.chunk(i), CHUNK)
        return buf.size


class PingPongTiles(PingPong):
    """``passes`` rounds on one device with two tiles: tile 0 rewrites the buffer, then
    tile 1 does, through one VM.

    Kernel paths: the fault arrives for the GT of the tile that ran the kernel
    (xe_pagefault.c, gt_to_tile()) and the handler serves it for that tile
    (xe_svm_handle_pagefault(vm, vma, gt, ...)): the range is valid per tile
    (xe_svm_range_is_valid(range, tile, ...)) and a fault rebinds BIT(tile->id) only.
    Both tiles' pages have one owner, so what differs is whether a range already in the
    other tile's VRAM must move: v6.18 xe_svm_range_needs_migrate_to_vram() asks only
    whether it is in VRAM at all (xe_svm_range_in_vram()), so tile 1 maps tile 0's VRAM
    in place; the newer driver asks whether it is in the faulting tile's pagemap
    (xe_svm_range_has_pagemap() against xe_tile_local_pagemap(tile)), so tile 1 moves
    it (drm_gpusvm_range_evict() then drm_pagemap_populate_mm() on its own VRAM).

    Real application: a kernel split across the two tiles of one card (a multi-tile
    data-centre GPU) taking turns on one shared-memory buffer.
    """

    name = "ping-pong-tiles"
    title = "the two tiles of one GPU alternately rewrite one buffer"
    devices = 1
    tiles = 2

    def turns(self) -> list[tuple[str, str, int | None]]:
        return [(f"tile{t}", self.vms[0], t) for t in range(self.tiles)]
