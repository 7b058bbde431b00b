"""Streaming: every input byte is read once by the GPU, every output byte written once.

Kernel paths: the first GPU touch of each 2 MiB chunk faults
(drivers/gpu/drm/xe/xe_svm.c: xe_svm_handle_pagefault() -> __xe_svm_handle_pagefault()),
inserts one range (drivers/gpu/drm/drm_gpusvm.c: drm_gpusvm_range_find_or_insert(),
drm_gpusvm_range_chunk_size() picks 2 MiB), migrates it to VRAM (xe_svm_alloc_vram() ->
drivers/gpu/drm/drm_pagemap.c: drm_pagemap_populate_mm() -> drm_pagemap_migrate_to_devmem())
and maps it (drm_gpusvm_get_pages(), xe_vm_range_rebind()). Once VRAM is full every new
range's VRAM BO makes TTM evict the least recently used one (xe_svm_bo_evict() ->
drm_pagemap_evict_to_ram()). The CPU readback of the output faults each device page
home (drm_pagemap_migrate_to_ram()).

Real application: a STREAM-style kernel (``out[i] = f(in[i])``) or an inference pass
over weights larger than VRAM, with buffers from malloc() and no prefetch. A thrash
ratio near 1 per direction is the best SVM can do here; the reuse is nil, so every
byte the GPU touches crosses the bus at least once.
"""

from __future__ import annotations

from pysvm.sim.workloads.base import CHUNK, Driver, Workload

__all__ = ["Stream"]


class Stream(Workload):
    """Read the input half once, write the output half once, read the output back."""

    name = "stream"
    title = "GPU reads an input once and writes an output once (no reuse); VRAM = half"
    passes_apply = False

    def default_vram_mib(self, size_mib: int) -> int:
        # The point is a stream larger than VRAM: by default VRAM holds half of it.
        return size_mib // 2

    def body(self, drv: Driver, passes: int) -> int:
        n = drv.cfg.size // (2 * CHUNK)       # chunks per half
        src, dst = drv.carve(n), drv.carve(n)
        self.buffers = [src, dst]
        vm = self.vms[0]
        with drv.phase("cpu-init"):
            for buf in (src, dst):
                drv.mmap(buf.addr, buf.size)
            for i in range(n):
                drv.cpu_write(src.chunk(i), CHUNK)
        with drv.phase("gpu-stream"):
            for i in range(n):
                drv.gpu(vm, "read", src.chunk(i), CHUNK)
                drv.gpu(vm, "write", dst.chunk(i), CHUNK)
        with drv.phase("cpu-readback"):
            for i in range(n):
                drv.cpu_read(dst.chunk(i), CHUNK)
        return src.size + dst.size
