"""Iterative stencil: a grid swept by the GPU many times (reuse), two buffers swapped.

Kernel paths: the first sweep faults every chunk in (xe_svm_handle_pagefault(),
drm_gpusvm_range_find_or_insert(), drm_pagemap_populate_mm()); later sweeps find valid
ranges with their PTEs in place and raise no fault at all, as long as the grid fits in
VRAM. When it does not (``--vram-mib`` below the working set), each sweep evicts what
the next one needs (xe_svm_bo_evict() -> drm_pagemap_evict_to_ram(): the MMU notifier
invalidates the GPU mapping, xe_svm_invalidate()) and faults it back: the thrash ratio
grows with the number of iterations instead of staying at 1.

Real application: a Jacobi / heat-equation / lattice-Boltzmann solver with its grids
in malloc()ed memory, iterating on the GPU and reading the result on the CPU once.
"""

from __future__ import annotations

from pysvm.sim.workloads.base import CHUNK, Driver, Workload

__all__ = ["Stencil"]


class Stencil(Workload):
    """Each iteration reads chunks i-1, i, i+1 of grid A and writes chunk i of grid B."""

    name = "stencil"
    title = "GPU sweeps two grids back and forth (reuse); VRAM = working set"
    default_passes = 4
    passes_meaning = "iterations"

    def body(self, drv: Driver, passes: int) -> int:
        n = drv.cfg.size // (2 * CHUNK)
        a, b = drv.carve(n), drv.carve(n)
        self.buffers = [a, b]
        vm = self.vms[0]
        with drv.phase("cpu-init"):
            for buf in (a, b):
                drv.mmap(buf.addr, buf.size)
            for i in range(n):
                drv.cpu_write(a.chunk(i), CHUNK)
        for it in range(passes):
            with drv.phase(f"iteration {it + 1}"):
                for i in range(n):
                    lo, hi = max(0, i - 1), min(n, i + 2)
                    drv.gpu(vm, "read", a.chunk(lo), (hi - lo) * CHUNK)
                    drv.gpu(vm, "write", b.chunk(i), CHUNK)
            a, b = b, a
        with drv.phase("cpu-readback"):
            for i in range(n):
                drv.cpu_read(a.chunk(i), CHUNK)
        return 2 * n * CHUNK
