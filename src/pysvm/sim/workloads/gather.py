"""Random gather: the GPU reads 64 KiB pieces at random places of a large table.

Kernel paths: a fault at any address inserts the largest chunk that fits around it
(drivers/gpu/drm/drm_gpusvm.c: drm_gpusvm_range_chunk_size() picks 2 MiB inside a
2 MiB-aligned buffer), so a 64 KiB read migrates 2 MiB to VRAM
(xe_svm_alloc_vram() -> drm_pagemap_populate_mm()): the workload stats report the
bytes the GPU touched next to the bytes migrated (the amplification). Later hits in
a chunk already in VRAM raise no fault. With ``--vram-mib`` below the table size the
random order defeats the LRU (xe_svm_bo_evict() evicts chunks that are hit again).

Real application: embedding-table lookups, graph traversal (BFS / PageRank over a
CSR in shared memory), hash joins: little locality and large tables.
"""

from __future__ import annotations

from pysvm.sim.workloads.base import CHUNK, Driver, Workload

__all__ = ["Gather"]

PIECE = 64 * 1024


class Gather(Workload):
    """``passes`` x (chunks in the table) reads of 64 KiB at seeded random offsets."""

    name = "gather"
    title = "GPU reads 64 KiB at random offsets of a table (2 MiB migrated per miss)"
    default_passes = 2
    passes_meaning = "gathers per 2 MiB of table"

    def body(self, drv: Driver, passes: int) -> int:
        n = drv.cfg.size // CHUNK
        table = drv.carve(n)
        self.buffers = [table]
        vm = self.vms[0]
        with drv.phase("cpu-init"):
            drv.mmap(table.addr, table.size)
            for i in range(n):
                drv.cpu_write(table.chunk(i), CHUNK)
        pieces = table.size // PIECE
        touches = passes * n
        with drv.phase("gpu-gather"):
            for _ in range(touches):
                p = drv.rng.randrange(pieces)
                drv.gpu(vm, "read", table.addr + p * PIECE, PIECE)
        drv.stats["gpu_bytes_touched"] = touches * PIECE
        return table.size
