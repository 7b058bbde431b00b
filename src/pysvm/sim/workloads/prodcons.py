"""Producer/consumer between CPU and GPU: the CPU fills an input buffer, the GPU turns it
into an output buffer, the CPU consumes the output; repeated over the same buffers.

Kernel paths: the GPU's reads and writes migrate the chunks to VRAM
(xe_svm_handle_pagefault() -> drm_pagemap_populate_mm()); the CPU's next writes to the
input and reads of the output touch device-private pages, so each 4 KiB CPU fault
migrates back through the device's dev_pagemap_ops.migrate_to_ram
(drivers/gpu/drm/drm_pagemap.c: drm_pagemap_migrate_to_ram(), which moves the faulting
range's pages, invalidating the GPU mapping through the MMU notifier ->
drivers/gpu/drm/xe/xe_svm.c: xe_svm_invalidate()). Every round moves both buffers
both ways: the thrash ratio is about 2 per round.

Real application: a frame / batch pipeline (decode on the CPU, infer on the GPU, post-
process on the CPU) whose staging buffers are ordinary malloc() memory.
"""

from __future__ import annotations

from pysvm.sim.workloads.base import CHUNK, Driver, Workload

__all__ = ["ProducerConsumer"]


class ProducerConsumer(Workload):
    """``passes`` rounds of CPU produce -> GPU transform -> CPU consume."""

    name = "producer-consumer"
    title = "CPU writes input, GPU transforms it, CPU reads output; repeated"
    default_passes = 4
    passes_meaning = "rounds"

    def body(self, drv: Driver, passes: int) -> int:
        n = drv.cfg.size // (2 * CHUNK)
        src, dst = drv.carve(n), drv.carve(n)
        self.buffers = [src, dst]
        vm = self.vms[0]
        with drv.phase("mmap"):
            for buf in (src, dst):
                drv.mmap(buf.addr, buf.size)
        for r in range(passes):
            with drv.phase(f"round {r + 1}: cpu-produce"):
                for i in range(n):
                    drv.cpu_write(src.chunk(i), CHUNK)
            with drv.phase(f"round {r + 1}: gpu-transform"):
                for i in range(n):
                    drv.gpu(vm, "read", src.chunk(i), CHUNK)
                    drv.gpu(vm, "write", dst.chunk(i), CHUNK)
            with drv.phase(f"round {r + 1}: cpu-consume"):
                for i in range(n):
                    drv.cpu_read(dst.chunk(i), CHUNK)
        return src.size + dst.size
