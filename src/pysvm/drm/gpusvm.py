"""GPU SVM ranges: chunk selection, find-or-insert, get_pages, removal.

Kernel: drivers/gpu/drm/drm_gpusvm.c (struct drm_gpusvm, drm_gpusvm_range,
drm_gpusvm_range_find_or_insert, drm_gpusvm_range_chunk_size,
drm_gpusvm_range_get_pages, drm_gpusvm_range_unmap_pages,
drm_gpusvm_range_remove, drm_gpusvm_range_set_unmapped) plus the Xe
extension fields of struct xe_svm_range (tile_present, tile_invalidated,
the garbage-collector link).

Chunk selection
---------------
For a fault at ``f`` the chunk sizes are tried largest first (2 MiB, 64 KiB,
4 KiB). A candidate ``[align_down(f, c), align_up(f+1, c))`` is accepted when
it lies inside the CPU VMA, the notifier and the GPU VMA. If it is bigger than
4 KiB it is refused in favour of the next smaller size when it would overlap an
existing range, or when it is no bigger than ``check_pages_threshold`` and not
all its CPU pages are populated. Nothing fits -> EINVAL.

Partial unmapping of ranges
---------------------------
A range is never split. When the CPU unmaps part of it, the notifier marks the
whole range ``unmapped`` (and ``partial_unmap``), the garbage collector unbinds
and removes it, and the next GPU fault creates new, smaller ranges that fit
what is still mapped. Splitting would need to split device allocations and DMA
mappings under the notifier lock; dropping and re-faulting is simpler and the
partial case is rare.
"""

from __future__ import annotations

import errno
import operator
from collections.abc import Callable, Iterator
from typing import Final, Protocol

from pysvm.drm.gpusvm_notifier import SvmNotifier
from pysvm.errors import XeError
from pysvm.mm.interval_tree import IntervalTree
from pysvm.mm.mmap import DevmemOwner, Mm, PageSnap
from pysvm.mm.mmu_notifier import NotifierRange

__all__ = [
    "SZ_4K", "SZ_64K", "SZ_2M", "CHUNK_SIZES", "SvmRange", "GpuSvm", "GpuSvmCtx",
    "range_chunk_size",
]

SZ_4K: Final = 4 << 10
SZ_64K: Final = 64 << 10
SZ_2M: Final = 2 << 20
#: Kernel: the chunk list Xe hands drm_gpusvm_init(), largest first.
CHUNK_SIZES: tuple[int, ...] = (SZ_2M, SZ_64K, SZ_4K)

_run_alloc = operator.attrgetter("alloc")     # a run's device allocation (None: system)


class GpuSvmCtx:
    """Per-operation options. Kernel: struct drm_gpusvm_ctx.

    A plain class with its own ``__init__`` rather than a dataclass: one is made per GPU
    fault, and in a compiled install a dataclass's generated ``__init__`` would be the
    one interpreted function on that path.
    """

    __slots__ = ("read_only", "devmem_possible", "devmem_only", "check_pages_threshold",
                 "timeslice_ms", "allow_mixed")

    def __init__(self, read_only: bool = False, devmem_possible: bool = False,
                 devmem_only: bool = False, check_pages_threshold: int = 0,
                 timeslice_ms: int = 0, allow_mixed: bool = False) -> None:
        self.read_only = read_only
        self.devmem_possible = devmem_possible
        self.devmem_only = devmem_only
        self.check_pages_threshold = check_pages_threshold
        self.timeslice_ms = timeslice_ms
        self.allow_mixed = allow_mixed

    def __repr__(self) -> str:
        return (f"GpuSvmCtx(read_only={self.read_only}, devmem_possible={self.devmem_possible}, "
                f"devmem_only={self.devmem_only}, "
                f"check_pages_threshold={self.check_pages_threshold}, "
                f"timeslice_ms={self.timeslice_ms}, allow_mixed={self.allow_mixed})")


class DevmemPagemap(Protocol):
    """What a range remembers of the device memory its pages are in (range->pages.dpagemap)."""

    @property
    def name(self) -> str: ...


class GpuSvmOps(Protocol):
    """The driver's callbacks. Kernel: struct drm_gpusvm_ops (Xe: xe_svm_gpusvm_ops) plus the
    zdd/dev_pagemap lookups drm_gpusvm.c makes on device pages.
    """

    def invalidate(self, notifier: SvmNotifier, nrange: NotifierRange) -> None:
        """Kernel: drm_gpusvm_ops.invalidate (xe_svm_invalidate)."""

    def page_pagemap(self, alloc: DevmemOwner) -> DevmemPagemap:
        """The pagemap of a device page's allocation (zdd->devmem_allocation->dpagemap)."""

    def pagemap_get(self, dpagemap: DevmemPagemap | None) -> None:
        """Newest: drm_pagemap_get() of range->pages.dpagemap (NULL-safe)."""

    def pagemap_put(self, dpagemap: DevmemPagemap | None) -> None:
        """Newest: drm_pagemap_put() of range->pages.dpagemap (NULL-safe)."""

    def devmem_evict(self, mm: Mm, start: int, end: int) -> int:
        """Move the device pages of ``[start, end)`` to system memory; pages moved.

        Kernel: drm_gpusvm_range_evict() (migrate_vma over device-private pages, each
        migrated by its pagemap's migrate_to_ram).
        """


class SvmRange:
    """One SVM range: a chunk-sized, chunk-aligned span of a CPU-mirror VMA.

    Kernel: struct drm_gpusvm_range (+ struct drm_gpusvm_pages flags) extended
    by struct xe_svm_range.
    """

    __slots__ = ("notifier", "start", "end", "migrate_devmem", "unmapped", "partial_unmap",
                 "has_devmem_pages", "has_dma_mapping", "pages", "dpagemap", "pages_uniform",
                 "notifier_seq", "tile_present", "tile_invalidated", "removed", "gc_queued")

    def __init__(self, notifier: SvmNotifier, start: int, end: int,
                 migrate_devmem: bool) -> None:
        self.notifier = notifier
        self.start = start
        self.end = end
        # drm_gpusvm_pages_flags
        self.migrate_devmem = migrate_devmem
        self.unmapped = False
        self.partial_unmap = False
        self.has_devmem_pages = False
        self.has_dma_mapping = False
        self.pages: PageSnap | None = None     # the "DMA mapping": pages the GPU uses
        self.dpagemap: DevmemPagemap | None = None   # whose device memory holds the pages
        #: Every page of ``pages`` has the same ``alloc`` (all system pages, or all of one
        #: allocation): what get_pages saw, so an access need not look again (the model's
        #: note, no kernel field).
        self.pages_uniform = False
        self.notifier_seq = 0
        # xe_svm_range
        self.tile_present = 0
        self.tile_invalidated = 0
        self.removed = False
        self.gc_queued = False

    @property
    def size(self) -> int:
        return self.end - self.start

    def __repr__(self) -> str:
        return (f"<SvmRange [{self.start:#x}, {self.end:#x}) valid={self.pages_valid} "
                f"present={self.tile_present} inval={self.tile_invalidated} "
                f"unmapped={self.unmapped}>")

    @property
    def pages_valid(self) -> bool:
        """Kernel: drm_gpusvm_pages_valid(): has_devmem_pages || has_dma_mapping."""
        return self.has_devmem_pages or self.has_dma_mapping

    def in_vram(self) -> bool:
        """Kernel: xe_svm_range_in_vram() (advisory)."""
        return self.has_devmem_pages

    def is_valid(self, tile: int, devmem_only: bool) -> bool:
        """Bound on ``tile``, not invalidated, and in VRAM when required.

        Kernel: xe_svm_range_is_valid().
        """
        return (self.tile_present & ~self.tile_invalidated) >> tile & 1 == 1 and (
            not devmem_only or self.has_devmem_pages)

    def location(self) -> str:
        """``"system"`` or the name of the device whose VRAM backs the pages."""
        if self.has_devmem_pages and self.dpagemap is not None:
            return self.dpagemap.name
        return "system"


def range_chunk_size(fault_addr: int, chunk_sizes: tuple[int, ...], cpu_start: int,
                     cpu_end: int, notifier: SvmNotifier, gpuva_start: int, gpuva_end: int,
                     check_pages_threshold: int,
                     check_pages: Callable[[int, int], bool]) -> int | None:
    """The chunk size for a new range at ``fault_addr``, or None if none fits.

    Kernel: drm_gpusvm_range_chunk_size().

    Examples
    --------
    A fault at 0x201000 in a CPU and GPU VMA covering [0, 4 MiB) and a 512 MiB
    notifier, no ranges yet: 2 MiB fits -> the range is [0x200000, 0x400000).
    With a 1 MiB GPU VMA [0x200000, 0x300000) only 64 KiB fits.
    """
    i = 0
    while i < len(chunk_sizes):
        c = chunk_sizes[i]
        start = fault_addr - fault_addr % c
        end = start + c         # align_up(fault_addr + 1, c): the chunk holding fault_addr
        if (start >= cpu_start and end <= cpu_end and start >= notifier.start
                and end <= notifier.end and start >= gpuva_start and end <= gpuva_end):
            if end - start != SZ_4K:
                if notifier.find(start, end) is not None:
                    i += 1
                    continue
                if end - start <= check_pages_threshold and not check_pages(start, end):
                    i += 1
                    continue
            return end - start
        i += 1
    return None


class GpuSvm:
    """The SVM state of one GPU VM: notifiers and their ranges.

    Kernel: struct drm_gpusvm. ``invalidate`` is the driver's
    ``drm_gpusvm_ops.invalidate`` (Xe: xe_svm_invalidate), called for every
    MMU notifier event over a notifier's interval.
    """

    def __init__(self, mm: Mm, mm_start: int, mm_range: int, notifier_size: int,
                 ops: GpuSvmOps,
                 owner: object = None,
                 chunk_sizes: tuple[int, ...] = CHUNK_SIZES) -> None:
        self.mm = mm
        self.mm_start = mm_start
        self.mm_range = mm_range
        self.notifier_size = notifier_size
        self.chunk_sizes = chunk_sizes
        self.owner = owner
        self.ops = ops
        self._notifiers: IntervalTree[SvmNotifier] = IntervalTree()
        self._last_found: SvmRange | None = None     # range_find's hint

    # --------------------------------------------------------- notifiers
    def notifiers(self, start: int, end: int) -> list[SvmNotifier]:
        """Notifiers intersecting ``[start, end)``. Kernel: drm_gpusvm_for_each_notifier."""
        return self._notifiers.overlapping(start, end)

    def notifier_find(self, start: int, end: int) -> SvmNotifier | None:
        """Kernel: drm_gpusvm_notifier_find()."""
        return self._notifiers.first(start, end)

    def notifier_count(self) -> int:
        return len(self._notifiers)

    def ranges(self, start: int = 0, end: int = 1 << 64) -> Iterator[SvmRange]:
        """Every range intersecting ``[start, end)`` in address order (snapshot)."""
        out: list[SvmRange] = []
        for n in self.notifiers(start, end):
            out.extend(n.ranges(start, end))
        return iter(out)

    def range_find(self, addr: int) -> SvmRange | None:
        """The range containing ``addr``. Kernel: drm_gpusvm_range_find() after
        drm_gpusvm_notifier_find().

        The range found last is tried first: while it is not removed it is in its
        notifier's tree, and ranges never overlap, so when it contains ``addr`` it is
        the answer the two tree lookups would give.
        """
        r = self._last_found
        if r is not None and not r.removed and r.start <= addr < r.end:
            return r
        n = self._notifiers.first(addr, addr + 1)
        r = n.find(addr, addr + 1) if n is not None else None
        if r is not None:
            self._last_found = r
        return r

    def has_mapping(self, start: int, end: int) -> bool:
        """Kernel: drm_gpusvm_has_mapping(): any range intersecting ``[start, end)``."""
        return next(self.ranges(start, end), None) is not None

    # ------------------------------------------------------ find_or_insert
    def range_find_or_insert(self, fault_addr: int, gpuva_start: int, gpuva_end: int,
                             ctx: GpuSvmCtx) -> SvmRange:
        """The range containing ``fault_addr``, created if needed.

        Kernel: drm_gpusvm_range_find_or_insert().

        Raises
        ------
        XeError(EINVAL) address outside the GPU SVM span, or no chunk fits;
        XeError(EFAULT) the address space is gone; XeError(ENOENT) no CPU VMA
        at the address; XeError(EPERM) a writable GPU mapping of a read-only
        CPU VMA. A notifier created for this call is removed again on error.
        """
        if fault_addr < self.mm_start or fault_addr > self.mm_start + self.mm_range:
            raise XeError(errno.EINVAL, f"fault address {fault_addr:#x} outside the GPU SVM span")
        if not self.mm.alive:
            raise XeError(errno.EFAULT, "address space is gone")
        notifier = self._notifiers.first(fault_addr, fault_addr + 1)    # notifier_find()
        created = notifier is None
        if notifier is None:
            ns = self.notifier_size
            nstart = fault_addr - fault_addr % ns
            notifier = SvmNotifier(nstart, nstart + ns)
            notifier.register(self.mm, self.ops.invalidate)
        try:
            vas = self.mm.find_vma(fault_addr)
            if vas is None:
                raise XeError(errno.ENOENT, f"no CPU mapping at {fault_addr:#x}")
            if not ctx.read_only and vas.read_only:
                raise XeError(errno.EPERM, f"CPU mapping at {fault_addr:#x} is read-only but "
                              "the GPU mapping is writable")
            rng = notifier.find(fault_addr, fault_addr + 1)
            if rng is not None:
                self._last_found = rng
                return rng
            migrate_devmem = ctx.devmem_possible and vas.anonymous
            size = range_chunk_size(
                fault_addr, self.chunk_sizes, vas.start, vas.end, notifier, gpuva_start,
                gpuva_end, ctx.check_pages_threshold,
                self.mm.check_pages)
            if size is None:
                raise XeError(errno.EINVAL, f"no chunk size fits a range at {fault_addr:#x} "
                              f"(GPU VMA [{gpuva_start:#x}, {gpuva_end:#x}), CPU VMA "
                              f"[{vas.start:#x}, {vas.end:#x}))")
        except XeError:
            if created:
                notifier.unregister(self.mm)
            raise
        rstart = fault_addr - fault_addr % size
        rng = SvmRange(notifier, rstart, rstart + size, migrate_devmem)
        notifier.insert(rng)
        if created:
            self._notifiers.insert(notifier.start, notifier.end, notifier)
        self._last_found = rng
        return rng

    # ------------------------------------------------------------- pages
    def range_get_pages(self, rng: SvmRange, ctx: GpuSvmCtx) -> None:
        """Fault in and "DMA-map" the range's pages for the GPU.

        Kernel: drm_gpusvm_range_get_pages() / drm_gpusvm_get_pages().

        Raises
        ------
        XeError(EFAULT) address space gone, a page not mapped, the range marked
        unmapped, or a system page when ``devmem_only``;
        XeError(EPERM) write access to read-only CPU memory;
        XeError(EOPNOTSUPP) pages mixed between system and device memory or
        between two device allocations (``allow_mixed`` false).
        """
        # read_begin() / read_retry() on the notifier's MMU interval notifier, read in
        # place (a notifier that never registered has none: sequence 0, no retry)
        mmu = rng.notifier.mmu
        mm = self.mm
        for _ in range(64):
            seq = mmu.invalidate_seq if mmu is not None else 0
            if rng.has_devmem_pages or rng.has_dma_mapping:     # pages_valid
                # The kernel's fast path still records the fresh sequence number
                # (goto set_seqno), so a later bind's read_retry compares against it.
                rng.notifier_seq = seq
                return
            if not mm.alive:
                raise XeError(errno.EFAULT, "address space is gone")
            got = mm.hmm_range_fault(rng.start, rng.end, write=not ctx.read_only,
                                     owner=self.owner)
            runs, idx, alloc, uniform = got.runs, got.idx, got.alloc, got.uniform
            if rng.unmapped:
                raise XeError(errno.EFAULT, f"range [{rng.start:#x}, {rng.end:#x}) was unmapped")
            if mmu is not None and mmu.invalidate_seq != seq:
                continue
            if not uniform:             # the walk did not tell: look at each page
                allocs = list(map(_run_alloc, runs))
                alloc = allocs[0] if allocs else None
                uniform = allocs.count(alloc) == len(allocs)
            pages_uniform = uniform
            # All system pages or all of one allocation pass the per-page checks below
            # (unless system pages must be device pages): skip them.
            uniform = uniform and (alloc is not None or not ctx.devmem_only)
            if not uniform:
                alloc = None
            for i, run in enumerate(() if uniform else runs):
                if run.alloc is not None:
                    if i > 0 and run.alloc is not alloc and not ctx.allow_mixed:
                        raise XeError(errno.EOPNOTSUPP, "range mixes pages of different "
                                      "memory (device pages not all from one allocation)")
                    alloc = run.alloc
                else:
                    if alloc is not None and not ctx.allow_mixed:
                        raise XeError(errno.EOPNOTSUPP, "range mixes device and system pages")
                    if ctx.devmem_only:
                        raise XeError(errno.EFAULT, "system page in a range that must be in "
                                      "device memory")
            rng.pages = PageSnap(runs, idx)
            rng.pages_uniform = pages_uniform
            rng.has_dma_mapping = True
            rng.has_devmem_pages = alloc is not None
            old = rng.dpagemap
            # newest: the pages hold their pagemap (drm_pagemap_get/put are NULL-safe,
            # so a range without device pages makes no call)
            if alloc is not None:
                dpagemap = rng.dpagemap = self.ops.page_pagemap(alloc)
                self.ops.pagemap_get(dpagemap)
            else:
                rng.dpagemap = None
            if old is not None:
                self.ops.pagemap_put(old)
            rng.notifier_seq = seq
            return
        raise XeError(errno.EBUSY, "get_pages: CPU mappings kept changing")  # pragma: no cover

    def range_unmap_pages(self, rng: SvmRange) -> None:
        """Forget the range's DMA mapping. Kernel: drm_gpusvm_range_unmap_pages()."""
        rng.pages = None
        rng.pages_uniform = False
        rng.has_dma_mapping = False
        rng.has_devmem_pages = False
        old, rng.dpagemap = rng.dpagemap, None
        if old is not None:     # drm_pagemap_put(NULL) does nothing
            self.ops.pagemap_put(old)

    def range_set_unmapped(self, rng: SvmRange, nrange: NotifierRange) -> None:
        """Kernel: drm_gpusvm_range_set_unmapped()."""
        rng.unmapped = True
        if nrange.start > rng.start or nrange.end < rng.end:
            rng.partial_unmap = True

    def range_evict(self, rng: SvmRange) -> int:
        """Move every device page of the range to system memory.

        Kernel: drm_gpusvm_range_evict().
        """
        return self.ops.devmem_evict(self.mm, rng.start, rng.end)

    def range_remove(self, rng: SvmRange) -> None:
        """Remove a range; drop its notifier when it was the last one.

        Kernel: drm_gpusvm_range_remove().
        """
        notifier = rng.notifier
        if rng.removed:
            return
        self.range_unmap_pages(rng)
        notifier.remove(rng)
        rng.removed = True
        if len(notifier) == 0:
            notifier.unregister(self.mm)
            if self._notifiers.get(notifier.start) is notifier:
                self._notifiers.pop(notifier.start)

    def fini(self) -> None:
        """Remove every range and notifier. Kernel: drm_gpusvm_fini()."""
        for rng in list(self.ranges()):
            self.range_remove(rng)
