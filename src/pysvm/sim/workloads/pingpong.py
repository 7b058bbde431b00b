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

__all__ = ["PingPong"]


class PingPong(Workload):
    """``passes`` rounds: vm0 (gpu0) rewrites the buffer, then vm1 (gpu1) does."""

    name = "ping-pong"
    title = "two GPUs alternately rewrite one buffer"
    devices = 2
    default_passes = 3
    passes_meaning = "rounds"

    def body(self, drv: Driver, passes: int) -> int:
        n = drv.cfg.size // CHUNK
        buf = drv.carve(n)
        self.buffers = [buf]
        with drv.phase("cpu-init"):
            drv.mmap(buf.addr, buf.size)
            for i in range(n):
                drv.cpu_write(buf.chunk(i), CHUNK)
        for r in range(passes):
            for k, vm in enumerate(self.vms):
                with drv.phase(f"round {r + 1}: gpu{k}"):
                    for i in range(n):
                        drv.gpu(vm, "write", buf.chunk(i), CHUNK)
        with drv.phase("cpu-readback"):
            for i in range(n):
                drv.cpu_read(buf.chunk(i), CHUNK)
        return buf.size
