"""free() without munmap(): GPU scratch buffers from a malloc arena that keeps its pages.

Kernel paths: free() of a chunk in a malloc arena returns nothing to the kernel, so no
MMU_NOTIFY_UNMAP is sent (xe_svm_invalidate() never hears of it), the SVM ranges stay
valid and the dead data stays in VRAM. Two costs follow. (1) When malloc() hands the
same addresses out again and the CPU initialises the new object, every touch of a
page still in VRAM is a CPU fault that migrates it home
(drivers/gpu/drm/drm_pagemap.c: drm_pagemap_migrate_to_ram()): copying data nobody
will read - the migration storm seen on real systems. (2) Dead ranges occupy VRAM,
so new GPU work makes TTM evict them when VRAM is short (``--vram-mib`` below
the arena) (xe_svm_bo_evict() -> drm_pagemap_evict_to_ram()),
copying dead data again. ``free-munmap`` is the same program with an allocator that
returns the memory (munmap(): MMU_NOTIFY_UNMAP -> xe_svm_invalidate() ->
xe_svm_garbage_collector() frees the ranges and their VRAM), for comparison.

Real application: an application (or a framework's caching allocator on top of
malloc) that uses large malloc()ed temporaries for GPU kernels and frees them each step.
"""

from __future__ import annotations

from pysvm.sim.workloads.base import CHUNK, Driver, Workload

__all__ = ["FreeMunmap", "FreeNoMunmap"]

#: The arena holds two scratch objects (double buffering); round r reuses slot r % 2,
#: the chunk freed two rounds before (malloc hands freed chunks out again).
SLOTS = 2


class FreeNoMunmap(Workload):
    """``passes`` rounds: malloc a scratch object, CPU init, GPU atomics, CPU reads one
    chunk of the result, free() (pages stay mapped and resident)."""

    name = "free-no-munmap"
    title = "scratch buffers freed without munmap: dead data in VRAM, CPU fault storms"
    default_passes = 8
    passes_meaning = "rounds"
    #: free() unmaps the object (the allocator returns it to the kernel).
    unmap_on_free = False

    def body(self, drv: Driver, passes: int) -> int:
        per = drv.cfg.size // CHUNK // SLOTS
        arena = drv.carve(per * SLOTS)
        self.buffers = [arena]
        vm = self.vms[0]
        if not self.unmap_on_free:
            with drv.phase("arena-mmap"):
                drv.mmap(arena.addr, arena.size)
        for r in range(passes):
            obj = arena.addr + (r % SLOTS) * per * CHUNK
            size = per * CHUNK
            with drv.phase(f"round {r + 1}: malloc+cpu-init"):
                if self.unmap_on_free:
                    drv.mmap(obj, size)
                for i in range(per):
                    drv.cpu_write(obj + i * CHUNK, CHUNK)
            with drv.phase(f"round {r + 1}: gpu"):
                for i in range(per):
                    drv.gpu(vm, "atomic", obj + i * CHUNK, CHUNK)
            with drv.phase(f"round {r + 1}: cpu-result+free"):
                drv.cpu_read(obj, CHUNK)
                if self.unmap_on_free:
                    drv.munmap(obj, size)
                drv.stats["frees"] += 1
        return per * SLOTS * CHUNK


class FreeMunmap(FreeNoMunmap):
    """The same rounds, with free() returning the object to the kernel (munmap)."""

    name = "free-munmap"
    title = "the free-no-munmap program with free() unmapping (the baseline)"
    unmap_on_free = True
