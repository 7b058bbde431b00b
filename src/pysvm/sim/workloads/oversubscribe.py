"""Oversubscription: a working set a fixed ratio larger than VRAM, swept cyclically.

Kernel paths: every pass updates each 2 MiB chunk with a GPU atomic, which on a discrete
device needs the range in VRAM (drivers/gpu/drm/xe/xe_svm.c:
xe_svm_range_needs_migrate_to_vram(), the devmem_only fault context), so every chunk not
in VRAM faults and migrates (xe_svm_alloc_vram() -> drivers/gpu/drm/drm_pagemap.c:
drm_pagemap_populate_mm()), and once VRAM is full the new BO makes TTM evict the least
recently used chunk (xe_svm_bo_evict() -> drm_pagemap_evict_to_ram(), MMU notifier ->
xe_svm_invalidate()). A cyclic sweep over more than VRAM is LRU's worst case: each chunk
is evicted just before it is needed again, so from the second pass on every chunk
moves both ways, whatever the ratio above 1.

Real application: a training or simulation job whose tensors / fields exceed device
memory and rely on SVM to page them (``oversubscribe-1.25x`` .. ``-4x``).
"""

from __future__ import annotations

from pysvm.sim.workloads.base import CHUNK, Driver, Workload

__all__ = ["RATIOS", "Oversubscribe"]

#: The ratios (working set / VRAM) named by ``oversubscribe-<ratio>x``.
RATIOS = ("1.25", "1.5", "2", "4")


class Oversubscribe(Workload):
    """``passes`` cyclic sweeps of GPU atomics over a buffer ``ratio`` times VRAM."""

    title = "GPU atomics sweep a working set {ratio}x VRAM (LRU worst case)"
    default_passes = 3
    vram_applies = False

    def __init__(self, ratio: str) -> None:
        self.ratio = ratio
        self.name = f"oversubscribe-{ratio}x"
        self.title = self.title.format(ratio=ratio)

    def default_vram_mib(self, size_mib: int) -> int:
        # VRAM = working set / ratio, down to whole 2 MiB chunks.
        return int(size_mib / float(self.ratio)) // 2 * 2

    def body(self, drv: Driver, passes: int) -> int:
        n = drv.cfg.size // CHUNK
        buf = drv.carve(n)
        self.buffers = [buf]
        vm = self.vms[0]
        with drv.phase("cpu-init"):
            drv.mmap(buf.addr, buf.size)
            for i in range(n):
                drv.cpu_write(buf.chunk(i), CHUNK)
        for p in range(passes):
            with drv.phase(f"pass {p + 1}"):
                for i in range(n):
                    drv.gpu(vm, "atomic", buf.chunk(i), CHUNK)
        with drv.phase("cpu-readback"):
            for i in range(n):
                drv.cpu_read(buf.chunk(i), CHUNK)
        return buf.size
