"""The process address space: anonymous CPU memory and its page table.

Kernel: struct mm_struct with its VMAs (mmap/munmap, mremap() of mm/mremap.c,
mprotect() of mm/mprotect.c), the page table, the calls into the MMU interval
notifiers (:mod:`pysvm.mm.mmu_notifier`), hmm_range_fault() of mm/hmm.c and
migrate_vma_pages() of mm/migrate_device.c.

Model
-----
* Memory is counted in 4 KiB pages; a page's contents are one ``int``.
* Physical pages are made in runs: a :class:`PageRun` is the pages one operation
  made together (one populate of a span, one migration, one copy back to system
  memory), with their values in one list and one ``alloc`` (the VRAM allocation
  holding them, the kernel's device-private pages with their zone-device data;
  None for system pages). A physical page is ``(run, index)``. The page table
  keeps, per 2 MiB block, two lists of 512 slots: the run of each slot's page and
  its index in the run. Migration installs a *new* run, so a GPU mapping that still
  holds the old entries is *stale* and a check can tell (:meth:`Mm.same_slots`;
  :meth:`Mm.page_at` is the truth). :class:`Page` is a view of one page (equal
  views: the same page).
* A page that was never touched is not populated; it reads as 0 and
  populating it (CPU touch, GPU fault, migration) creates a zero page.
* Each page has a dirty state (``PageRun.state``, one byte per page; counted by
  :meth:`Mm.smaps`): ``PAGE_DIRTY`` when the kernel would count it dirty (the PTE's
  dirty bit or the folio's PG_dirty, as fs/proc/task_mmu.c smaps does),
  ``PAGE_ZERO`` for a page a read fault populated (the kernel maps the shared zero
  page there: mm/memory.c do_anonymous_page() without FAULT_FLAG_WRITE), else
  ``PAGE_CLEAN``. A CPU store dirties the page. A device's page collection
  (:meth:`Mm.hmm_range_fault`) with ``write`` faults a missing or zero page as a
  write (mm/hmm.c hmm_pte_need_fault() -> hmm_vma_fault() with FAULT_FLAG_WRITE):
  the page becomes dirty even when the GPU only reads, because drm_gpusvm.c
  drm_gpusvm_get_pages() asks for write access on every VMA that is not read-only
  (Xe passes ``ctx.read_only = xe_vma_read_only(vma)``, never the access type); a
  present, writable page stays as it is. Device writes never dirty a page: the
  GPU writes through its own mappings, not the CPU page table. Migration carries the
  state: mm/migrate_device.c migrate_vma_collect_pmd() moves a dirty PTE's bit to
  the folio and folio_migrate_flags() copies PG_dirty to the device page (a zero page
  migrates as a new, clean device page); back in system memory mm/migrate.c
  remove_migration_pte() installs a clean PTE, so the new page is dirty only if the
  device page carried PG_dirty from a dirty system page: a page the GPU wrote in
  VRAM comes back clean.
* Whole spans are handled as slices: a write of fresh memory is one new run
  holding the value, a read of one run's consecutive pages is one slice of its
  values, a migration of a range is one new run and two slice stores.
* ``mmap`` over existing mappings behaves as ``MAP_FIXED``: the old mappings
  are unmapped first (firing the notifiers), as Linux does.
* ``mremap`` moves page-table entries, so a page (a device page included)
  keeps its identity (its run and index) and its owner hears the new address
  (:meth:`DevmemOwner.pages_moved`); ``mprotect`` toggles ``read_only``.
* MMU interval notifiers are called synchronously with an
  :class:`NotifierRange` whose ``event`` is a :class:`NotifyEvent`; each call
  bumps the notifier's sequence number (mmu_interval_read_begin/retry).

Differences from the kernel: no locking, no huge pages, no file mappings
(``anonymous=False`` exists only so the "not anonymous" refusals can be
exercised), no zero-page sharing (a zero page is a page of its own in state
``PAGE_ZERO``, and a write fault on it keeps the page where the kernel's copy on
write installs a new one), no fork/COW, no swap and no MADV_FREE (nothing in the
model reads the dirty state; it is kept so that it can be inspected). Each process has its own
:class:`Mm` (the composition root keeps one per process); nothing is shared
between two of them but the devices' memory their pages may live in.
"""

from __future__ import annotations

import bisect
import errno
import operator
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Protocol, cast

from pysvm.errors import XeError
from pysvm.mm.interval_tree import IntervalTree
from pysvm.mm.mmu_notifier import Callback, IntervalNotifier, NotifierRange, NotifyEvent

__all__ = ["PAGE_SHIFT", "PAGE_SIZE", "PAGE_CLEAN", "PAGE_DIRTY", "PAGE_ZERO", "entry_pages",
           "MAX_ACCESS_BYTES", "MAX_READ_BYTES", "CpuVma", "Mm",
           "Page", "PageRun", "PageSnap", "idx_range", "entry_values", "DevmemOwner",
           "FaultedPages", "check_access_size", "MREMAP_MAYMOVE", "MREMAP_FIXED",
           "MREMAP_DONTUNMAP", "TASK_SIZE", "HMM_RANGE_DEFAULT_TIMEOUT_MS"]

PAGE_SHIFT: Final = 12
PAGE_SIZE: Final = 1 << PAGE_SHIFT

#: The most bytes one CPU or GPU access event may touch: 64 GiB. The kernel has no such
#: limit (a load or a store is the process's own business), but the model keeps state for
#: every page an access touches, so one event is bounded in time and memory here; a larger
#: span is refused with EINVAL before anything changes (split it into several events).
#: Mapping and unmapping are lazy and have no such limit.
MAX_ACCESS_BYTES: Final = 64 << 30

#: The most bytes one *reading* event (``cpu_read``, ``gpu_access`` op read) may cover:
#: 4 GiB, i.e. at most 1 Mi values in the result's ``data`` (one per 4 KiB page).
MAX_READ_BYTES: Final = 4 << 30

#: How long a device's page collection keeps repeating hmm_range_fault() while it answers
#: -EBUSY, in ms. Kernel: include/linux/hmm.h HMM_RANGE_DEFAULT_TIMEOUT, the bound of
#: drm_gpusvm.c drm_gpusvm_get_pages()'s retry loop (``time_after(jiffies, timeout)``).
HMM_RANGE_DEFAULT_TIMEOUT_MS: Final = 1000


def check_access_size(size: int, what: str, *, reads: bool) -> None:
    """EINVAL if one access of ``size`` bytes is more than the model serves in one event
    (:data:`MAX_READ_BYTES` for reads that return one value per page, else
    :data:`MAX_ACCESS_BYTES`). Kernel: none (a model bound, see the constants)."""
    limit = MAX_READ_BYTES if reads else MAX_ACCESS_BYTES
    if size > limit:
        raise XeError(errno.EINVAL, f"{what}: {size:#x} bytes in one event; the model serves at "
                      f"most {limit >> 30} GiB per {'read' if reads else 'access'} "
                      "(split it into several events)")
U64_MAX: Final = (1 << 64) - 1

#: mremap() flags (include/uapi/linux/mman.h).
MREMAP_MAYMOVE: Final = 1
MREMAP_FIXED: Final = 2
MREMAP_DONTUNMAP: Final = 4

#: The top of the user address space on x86-64 with 4-level page tables (TASK_SIZE_MAX in
#: arch/x86/include/asm/page_64_types.h): mremap() refuses a new length or a new address
#: that reaches past it.
TASK_SIZE: Final = (1 << 47) - (1 << 12)

#: Where the model starts looking for a free gap when mremap() must choose the address
#: itself: the default vm.mmap_min_addr (mm/Kconfig DEFAULT_MMAP_MIN_ADDR, 64 KiB on x86).
_MMAP_MIN_ADDR: Final = 0x10000

# The page table is a dict of blocks of 512 page slots (2 MiB of address space, one
# page-table page's worth), so walking a span is list slicing, not one dict entry and
# one int key per 4 KiB page.
_BSHIFT: Final = 9
_BLOCK: Final = 1 << _BSHIFT
_BMASK: Final = _BLOCK - 1


#: A page's dirty state (``PageRun.state``): clean, dirty, or the zero page a read fault
#: maps (clean and read-only: a write fault replaces it). Kernel: pte_dirty() ||
#: folio_test_dirty(), as fs/proc/task_mmu.c smaps_account() counts Private_Dirty;
#: is_zero_pfn() for the zero page.
PAGE_CLEAN: Final = 0
PAGE_DIRTY: Final = 1
PAGE_ZERO: Final = 2
_DIRTY1: Final = b"\x01"
_ZERO1: Final = b"\x02"
#: Migration to a device: a zero page becomes a new clean device page (migrate_vma_collect_pmd()
#: collects the zero pfn as an empty source), a dirty one carries PG_dirty.
_TO_DEVICE: Final = bytes([0, 1, 0]) + bytes(range(3, 256))

#: Up to this many interval notifiers, :meth:`Mm.invalidate` scans them all (cheaper
#: than two bisections and a sort); past it, it bisects the starts.
_NOTIFIER_SCAN = 16


class PageRun:
    """Consecutive physical pages made together (one populate, one migration, one
    eviction copy): ``values[k]`` is the contents of its page ``k``; ``alloc`` names the
    VRAM allocation holding them (None: system pages).

    A physical page is ``(run, k)``. Every operation that makes new physical pages makes
    a new run, so a GPU mapping that still holds an older run's entries is *stale* (its
    writes go to pages the CPU no longer maps), as it would be through an old struct page.

    ``state[k]`` is page ``k``'s dirty state (``PAGE_CLEAN``, ``PAGE_DIRTY``,
    ``PAGE_ZERO``; see the module's notes).

    Kernel: a batch of struct pages (system) or device-private ZONE_DEVICE pages sharing
    one drm_pagemap_zdd (the migrate_vma_pages() of one drm_pagemap_migrate_to_devmem()).
    Identity is the object's (no ``__eq__``): the page table compares runs with ``is``.
    """

    __slots__ = ("values", "alloc", "state")

    def __init__(self, values: list[int], alloc: DevmemOwner | None = None,
                 state: bytearray | None = None) -> None:
        self.values = values
        self.alloc = alloc
        #: Per page: PAGE_CLEAN, PAGE_DIRTY or PAGE_ZERO (default: all clean).
        self.state = state if state is not None else bytearray(len(values))

    def __repr__(self) -> str:
        where = "sys" if self.alloc is None else f"dev:{self.alloc!r}"
        return f"PageRun({len(self.values)} pages, {where})"


class FaultedPages:
    """What :meth:`Mm.hmm_range_fault` found: the pages, one per 4 KiB, as the page
    table's entries (``runs[k]``, ``idx[k]``: page ``idx[k]`` of run ``runs[k]``), and
    what the walk learnt about them on the way. ``uniform`` True: every page's ``alloc``
    is ``alloc`` (None: all system pages); False: not known (the caller looks at each).

    A plain class with its own ``__init__`` (one is made per device page collection; in
    a compiled install a named tuple's constructor is an interpreted function)."""

    __slots__ = ("runs", "idx", "alloc", "uniform")

    def __init__(self, runs: list[PageRun], idx: list[int], alloc: DevmemOwner | None,
                 uniform: bool) -> None:
        self.runs = runs
        self.idx = idx
        self.alloc = alloc
        self.uniform = uniform

    @property
    def pages(self) -> list[Page]:
        """The pages as :class:`Page` views (one object per page: for tests and checks)."""
        return [Page.of(r, x) for r, x in zip(self.runs, self.idx, strict=True)]

_UNSEEN = object()      # hmm_range_fault() has not met a page yet


def _blocks(lo: int, hi: int) -> tuple[tuple[int, int, int, int], ...]:
    """Split the page numbers ``[lo, hi)`` by block: ``(block, i, j, pfn of slot i)``.

    A span inside one block (every SVM range is: ranges are chunk aligned and no chunk
    is larger than a block) is answered without a loop."""
    b = lo >> _BSHIFT
    if hi > lo and (hi - 1) >> _BSHIFT == b:
        i = lo & _BMASK
        return ((b, i, i + hi - lo, lo),)
    out: list[tuple[int, int, int, int]] = []
    pfn = lo
    while pfn < hi:
        b = pfn >> _BSHIFT
        i = pfn & _BMASK
        j = min(_BLOCK, i + hi - pfn)
        out.append((b, i, j, pfn))
        pfn += j - i
    return tuple(out)


class DevmemOwner(Protocol):
    """What a device page's allocation must offer the address space."""

    @property
    def owner(self) -> object:
        """The device-private owner of the page (hmm_range_fault compares it)."""

    def migrate_to_ram(self, mm: Mm, addr: int) -> None: ...

    def clock_ms(self) -> int:
        """The machine's virtual time in ms (kernel: get_jiffies_64())."""

    def wait_timeslice(self, *, cpu: bool = False) -> int:
        """Let the clock run until this allocation's atomic timeslice is over, counting
        the wait (as the CPU's with ``cpu``, else as a device's hmm_range_fault());
        returns the ms waited (0 when it is over already, or there is none).
        Kernel: drm_pagemap.c __drm_pagemap_migrate_to_ram() declines while
        get_jiffies_64() is before zdd->devmem_allocation->timeslice_expiration; the CPU
        (do_swap_page()) or mm/hmm.c hmm_range_fault() faults the page again until it no
        longer does."""

    def page_freed(self, page: Page, addr: int | None = None) -> None: ...

    def pages_freed(self, freed: list[tuple[int, Page]]) -> None:
        """``page_freed`` for each ``(addr, page)`` in order, in one call."""

    def run_freed(self, addr: int, runs: list[PageRun], idx: list[int]) -> None:
        """``pages_freed`` of the pages ``(runs[k], idx[k])`` mapped at ``addr``,
        ``addr + 4 KiB``, ... (a run of consecutive addresses, given as the page table
        holds them: no object per page)."""

    def pages_moved(self, moved: list[tuple[int, int, Page]]) -> None:
        """Each ``(old_addr, new_addr, page)``: the page is now mapped at ``new_addr``
        (mremap() moved its page-table entry; the page itself is unchanged)."""


class Page:
    """One physical page holding one int, seen as page ``idx`` of a :class:`PageRun`;
    ``alloc`` is set for device pages. A view: two views of the same page are ``==``
    (and hash alike), and ``value`` reads and writes the page itself.

    ``Page(value, alloc)`` makes a new physical page (a run of one).

    Kernel: struct page (system) / a device-private ZONE_DEVICE page whose
    zone_device_data points at the drm_pagemap_zdd of its allocation.
    """

    __slots__ = ("run", "idx")

    def __init__(self, value: int = 0, alloc: DevmemOwner | None = None, *,
                 run: PageRun | None = None, idx: int = 0) -> None:
        if run is None:
            run = PageRun([value], alloc)
            idx = 0
        self.run = run
        self.idx = idx

    @staticmethod
    def of(run: PageRun, idx: int) -> Page:
        """The view of page ``idx`` of ``run``."""
        return Page(run=run, idx=idx)

    @property
    def value(self) -> int:
        return self.run.values[self.idx]

    @value.setter
    def value(self, v: int) -> None:
        self.run.values[self.idx] = v

    @property
    def alloc(self) -> DevmemOwner | None:
        return self.run.alloc

    @property
    def is_device(self) -> bool:
        return self.run.alloc is not None

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Page) and other.run is self.run
                and other.idx == self.idx)

    def __hash__(self) -> int:
        return hash((id(self.run), self.idx))

    def __repr__(self) -> str:
        where = "sys" if self.alloc is None else f"dev:{self.alloc!r}"
        return f"Page({self.value}, {where})"


#: 0, 1, 2, ...: page indices are sliced from here, so every slot holding index k shares
#: one int object (ints past 256 are not cached by CPython) and a compare is a slice.
_IDX = list(range(4 * _BLOCK))


def idx_range(i: int, j: int) -> list[int]:
    """``list(range(i, j))``, its ints shared with every other such list."""
    return _IDX[i:j] if j <= len(_IDX) else list(range(i, j))


def _one_run(rs: list[PageRun | None], xs: list[int]) -> int:
    """When the entries ``rs``/``xs`` are consecutive pages of one run, the index of the
    first; else -1. (C-level list operations only.)"""
    n = len(rs)
    r = rs[0]
    if r is None or rs.count(r) != n:
        return -1
    x0 = xs[0]
    if xs[-1] - x0 != n - 1 or (n > 2 and xs != idx_range(x0, x0 + n)):
        return -1
    return x0


def entry_pages(rs: list[PageRun | None], xs: list[int]) -> tuple[list[int], bytearray]:
    """The values and the dirty states of the pages ``(rs[k], xs[k])`` (0 and
    ``PAGE_CLEAN`` where ``rs[k]`` is None: not populated), as :func:`entry_values`."""
    n = len(rs)
    if not n or rs.count(None) == n:
        return [0] * n, bytearray(n)
    x0 = _one_run(rs, xs)
    if x0 >= 0:
        r = cast("PageRun", rs[0])
        return r.values[x0:x0 + n], r.state[x0:x0 + n]
    return ([r.values[x] if r is not None else 0 for r, x in zip(rs, xs, strict=True)],
            bytearray([r.state[x] if r is not None else 0 for r, x in zip(rs, xs, strict=True)]))


def _write_fault_zero(rs: list[PageRun], xs: list[int]) -> None:
    """A write fault on each zero page among ``(rs[k], xs[k])``: it becomes dirty.
    Kernel: mm/memory.c do_wp_page() -> wp_page_copy() (the model keeps the page)."""
    if not rs:
        return
    r0 = rs[0]
    if rs.count(r0) == len(rs):         # one run (a populate's or a migration's)
        if PAGE_ZERO not in r0.state:
            return
    elif not any(PAGE_ZERO in r.state for r in set(rs)):
        return
    for r, x in zip(rs, xs, strict=True):
        st = r.state
        if st[x] == PAGE_ZERO:
            st[x] = PAGE_DIRTY


def entry_values(rs: list[PageRun | None], xs: list[int]) -> list[int]:
    """The values of the pages ``(rs[k], xs[k])`` (0 where ``rs[k]`` is None: not
    populated): one slice when they are consecutive pages of one run."""
    n = len(rs)
    if not n or rs.count(None) == n:
        return [0] * n
    x0 = _one_run(rs, xs)
    if x0 >= 0:
        return cast("PageRun", rs[0]).values[x0:x0 + n]
    return [r.values[x] if r is not None else 0 for r, x in zip(rs, xs, strict=True)]


class PageSnap:
    """The pages a device captured over a span (what drm_gpusvm_get_pages() DMA-maps):
    the page-table entries as they were, ``runs[k]``/``idx[k]`` for page ``k``. When one
    run covers the span with consecutive pages (the common case) ``run``/``x0`` say so,
    and an access is one slice of ``run.values``.

    Accesses through the snapshot reach the captured pages, whatever the page table maps
    now: through a stale snapshot a write goes to pages the CPU no longer sees (lost), as
    a device writing through a stale DMA mapping would. :meth:`Mm.same_slots` tells
    whether it is still current.
    """

    __slots__ = ("runs", "idx", "run", "x0")

    def __init__(self, runs: list[PageRun], idx: list[int]) -> None:
        self.runs = runs
        self.idx = idx
        x0 = _one_run(runs, idx) if runs else -1      # type: ignore[arg-type]
        self.run: PageRun | None = runs[0] if x0 >= 0 else None
        self.x0 = x0

    def __len__(self) -> int:
        return len(self.runs)

    def __getitem__(self, k: int) -> Page:
        """Page ``k`` as a view."""
        return Page.of(self.runs[k], self.idx[k])

    def __iter__(self) -> Iterator[Page]:
        return iter([Page.of(r, x) for r, x in zip(self.runs, self.idx, strict=True)])

    def replace(self, k: int, page: Page) -> None:
        """Make entry ``k`` point at ``page`` (a model of a driver bug: see
        :mod:`pysvm.fuzz.planted`)."""
        self.runs[k] = page.run
        self.idx[k] = page.idx
        self.run = None
        self.x0 = -1

    def allocs(self, i: int = 0, j: int | None = None) -> set[DevmemOwner | None]:
        """The distinct ``alloc`` of pages ``[i, j)``."""
        if self.run is not None:
            return {self.run.alloc}
        return {r.alloc for r in set(self.runs[i:j])}

    def read(self, i: int, j: int) -> list[int]:
        """The values of pages ``[i, j)``."""
        run = self.run
        if run is not None:
            return run.values[self.x0 + i:self.x0 + j]
        return entry_values(self.runs[i:j], self.idx[i:j])      # type: ignore[arg-type]

    def write(self, i: int, j: int, value: int) -> None:
        """Store ``value`` in pages ``[i, j)``."""
        run = self.run
        if run is not None:
            run.values[self.x0 + i:self.x0 + j] = [value] * (j - i)
            return
        for r, x in zip(self.runs[i:j], self.idx[i:j], strict=True):
            r.values[x] = value

    def increment(self, i: int, j: int) -> None:
        """Add one to pages ``[i, j)`` (atomic increments)."""
        run = self.run
        if run is not None:
            a, b = self.x0 + i, self.x0 + j
            v = run.values
            v[a:b] = [x + 1 for x in v[a:b]]
            return
        for r, x in zip(self.runs[i:j], self.idx[i:j], strict=True):
            r.values[x] += 1


@dataclass
class CpuVma:
    """A CPU mapping ``[start, end)``.

    Kernel: struct vm_area_struct (VM_WRITE, vma_is_anonymous()).
    """

    start: int
    end: int
    read_only: bool = False
    anonymous: bool = True


def _check_span(addr: int, size: int, what: str) -> None:
    if not isinstance(addr, int) or not isinstance(size, int):
        raise XeError(errno.EINVAL, f"{what}: addr and size must be integers")
    if addr < 0 or size <= 0 or addr + size > U64_MAX + 1:
        raise XeError(errno.EINVAL, f"{what}: [{addr:#x}, +{size:#x}) is not a valid span")
    if addr % PAGE_SIZE or size % PAGE_SIZE:
        raise XeError(errno.EINVAL, f"{what}: addr {addr:#x} and size {size:#x} must be "
                      f"4 KiB aligned")


class Mm:
    """One process address space.

    Kernel: struct mm_struct + mmap()/munmap() + the CPU page fault path.
    """

    def __init__(self) -> None:
        #: The CPU VMAs in the compiled interval tree, keyed in page numbers: every VMA is
        #: page aligned, and the tree's span stops one byte short of 2**64, so the top page
        #: of the address space fits in page units only. Kernel: mm->mm_mt (the maple tree).
        self._vmas: IntervalTree[CpuVma] = IntervalTree()
        self._last_vma: CpuVma | None = None      # find_vma's cache (dropped with its VMA)
        #: The page table: pfn >> 9 -> (runs, idx), two lists of 512 slots (2 MiB): slot k
        #: maps page ``idx[k]`` of run ``runs[k]`` (None: not populated; ``idx[k]`` is then
        #: meaningless). Kernel: the PTEs of one page-table page.
        self._pt: dict[int, tuple[list[PageRun | None], list[int]]] = {}
        #: The interval notifiers sorted by start, ties in registration order (the
        #: order :meth:`invalidate` calls them in), their starts, and an upper bound of
        #: their lengths: notifiers may overlap, so a lookup bisects the starts from
        #: ``start - longest`` to ``end``.
        self._by_start: list[IntervalNotifier] = []
        self._starts: list[int] = []
        self._longest = 0
        self.alive = True                         # mmget_not_zero() succeeds
        self.stats: dict[str, int] = {"cpu_faults_on_device_pages": 0}

    # ---------------------------------------------------------------- VMAs
    def vmas(self) -> Iterator[CpuVma]:
        """Every CPU VMA in address order (a snapshot)."""
        return self._vmas.values()

    def find_vma(self, addr: int) -> CpuVma | None:
        """The CPU VMA containing ``addr`` or None.

        Kernel: vma_lookup() (mm/mmap.c: mtree_load() on the maple tree). The last VMA
        found is tried first (what mm/vmacache.c did before the maple tree); it is the
        answer only while it is still in the tree (:meth:`_vma_remove` drops it).
        """
        last = self._last_vma
        if last is not None and last.start <= addr < last.end:
            return last
        if addr < 0:
            return None
        pfn = addr >> PAGE_SHIFT
        vma = self._vmas.first(pfn, pfn + 1)
        if vma is not None:
            self._last_vma = vma
        return vma

    def _overlapping(self, start: int, end: int) -> list[CpuVma]:
        """The VMAs overlapping ``[start, end)`` in address order (a snapshot)."""
        return self._vmas.overlapping(max(start, 0) >> PAGE_SHIFT, -(-end // PAGE_SIZE))

    def _vma_insert(self, vma: CpuVma) -> None:
        """Put ``vma`` in the tree (its span is free: the callers unmapped it first)."""
        self._vmas.insert(vma.start >> PAGE_SHIFT, vma.end >> PAGE_SHIFT, vma)

    def _vma_remove(self, vma: CpuVma) -> None:
        """Take ``vma`` out of the tree, and out of find_vma's cache."""
        self._vmas.pop(vma.start >> PAGE_SHIFT)
        if self._last_vma is vma:
            self._last_vma = None

    def mmap(self, addr: int, size: int, *, read_only: bool = False,
             anonymous: bool = True) -> CpuVma:
        """Map anonymous memory at exactly ``[addr, addr+size)`` (MAP_FIXED).

        Kernel: do_mmap() with MAP_FIXED|MAP_ANONYMOUS: existing mappings in
        the span are unmapped first (firing MMU_NOTIFY_UNMAP).

        Raises
        ------
        XeError(EINVAL) for unaligned, empty or overflowing spans.
        """
        _check_span(addr, size, "mmap")
        self.munmap(addr, size)
        vma = CpuVma(addr, addr + size, read_only, anonymous)
        self._vma_insert(vma)
        return vma

    def munmap(self, addr: int, size: int) -> int:
        """Unmap ``[addr, addr+size)``; returns the number of bytes unmapped.

        Kernel: do_vmi_munmap(): per affected VMA the MMU notifiers see an
        UNMAP event over the part removed, then the pages are freed (a freed
        device page drops its allocation's reference). Unmapping a hole is
        not an error.
        """
        _check_span(addr, size, "munmap")
        end = addr + size
        done = 0
        for vma in self._overlapping(addr, end):
            s, e = max(vma.start, addr), min(vma.end, end)
            self.invalidate(s, e, NotifyEvent.UNMAP)
            self._drop_pages(s >> PAGE_SHIFT, e >> PAGE_SHIFT)
            self._vma_remove(vma)
            if vma.start < s:
                self._vma_insert(CpuVma(vma.start, s, vma.read_only, vma.anonymous))
            if e < vma.end:
                self._vma_insert(CpuVma(e, vma.end, vma.read_only, vma.anonymous))
            done += e - s
        return done

    # ------------------------------------------------------------ mremap
    def mremap(self, addr: int, old_len: int, new_len: int, flags: int = 0,
               new_addr: int = 0) -> int:
        """Move and/or resize the mapping at ``addr``; return its (new) address.

        Kernel: mm/mremap.c SYSCALL_DEFINE5(mremap) -> do_mremap(). Lengths are rounded up
        to whole pages. The argument checks run first and in check_mremap_params() order,
        every one EINVAL: an unknown flag, ``addr`` not page aligned, ``new_len`` 0 or past
        :data:`TASK_SIZE`; then, when ``MREMAP_FIXED`` or ``MREMAP_DONTUNMAP`` names a
        target: ``new_addr + new_len`` past TASK_SIZE, ``new_addr`` not page aligned, no
        ``MREMAP_MAYMOVE``, DONTUNMAP with ``old_len != new_len``, the two spans overlapping.

        * ``MREMAP_FIXED`` with equal lengths is a pure move (remap_move()): every VMA in
          ``[addr, addr + old_len)`` moves, the gaps between them kept; EFAULT when no VMA
          starts at or before ``addr`` there.
        * Otherwise the VMA containing ``addr`` must exist (EFAULT, check_prep_vma()), and
          when the call maps anything new (a target address or growth) the old span must
          lie inside that VMA (EFAULT); ``old_len`` 0 (duplicating a mapping) is EINVAL.
        * mremap_to() (a target given): with ``MREMAP_FIXED`` the target span is unmapped
          first (do_munmap(), MMU_NOTIFY_UNMAP); a shrink unmaps the tail; then the VMA
          moves. ``MREMAP_DONTUNMAP`` alone takes ``new_addr`` as a hint.
        * mremap_at(): same size does nothing; a shrink unmaps the tail; growth extends the
          VMA in place when the space after it is free, else moves it if
          ``MREMAP_MAYMOVE`` (ENOMEM if not).

        A move (move_vma()) sends MMU_NOTIFY_UNMAP over the old span (move_page_tables()
        calls mmu_notifier_invalidate_range_start() before it moves any entry), copies the
        VMA with its protection (copy_vma()) and moves every page-table entry: system pages
        and device pages alike keep their (run, index) entry, so a device-private page stays in
        VRAM and its owner hears :meth:`DevmemOwner.pages_moved` (move_ptes() moves the
        device-private swap entry as it is). Then the old span is unmapped
        (unmap_source_vma(): a second UNMAP over now empty page tables) unless
        ``MREMAP_DONTUNMAP``: then the old VMA stays, empty (dontunmap_complete()), and an
        anonymous one reads as zero pages.

        Every error is raised before anything changes. Differences from the kernel: a
        chosen address is the first free gap at or above the hint (or 64 KiB), where the
        kernel searches top-down below mmap_base; after ``MREMAP_DONTUNMAP`` of a shared
        or file mapping the old span is empty here, where the kernel would fault the same
        file pages back in; the UNMAP notification covers exactly the old span (the
        kernel's try_realign_addr() may start it at the PMD boundary below when no other
        mapping lies in between); no mlock, accounting or map-count limits.
        """
        for name, v in (("addr", addr), ("old_len", old_len), ("new_len", new_len),
                        ("flags", flags), ("new_addr", new_addr)):
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= U64_MAX:
                raise XeError(errno.EINVAL, f"mremap: {name} must be an unsigned 64-bit "
                              "integer")
        old_len = -(-old_len // PAGE_SIZE) * PAGE_SIZE      # PAGE_ALIGN()
        new_len = -(-new_len // PAGE_SIZE) * PAGE_SIZE
        # check_mremap_params()
        if flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP):
            raise XeError(errno.EINVAL, f"mremap: unknown flags {flags:#x}")
        if addr % PAGE_SIZE:
            raise XeError(errno.EINVAL, f"mremap: addr {addr:#x} is not page aligned")
        if not new_len:
            raise XeError(errno.EINVAL, "mremap: new_len is 0")
        if new_len > TASK_SIZE:
            raise XeError(errno.EINVAL, f"mremap: new_len {new_len:#x} exceeds TASK_SIZE")
        target = bool(flags & (MREMAP_FIXED | MREMAP_DONTUNMAP))
        if target:
            if new_addr > TASK_SIZE - new_len:
                raise XeError(errno.EINVAL, f"mremap: [{new_addr:#x}, +{new_len:#x}) ends past "
                              "TASK_SIZE")
            if new_addr % PAGE_SIZE:
                raise XeError(errno.EINVAL, f"mremap: new_addr {new_addr:#x} is not page "
                              "aligned")
            if not flags & MREMAP_MAYMOVE:
                raise XeError(errno.EINVAL, "mremap: MREMAP_FIXED/MREMAP_DONTUNMAP need "
                              "MREMAP_MAYMOVE")
            if flags & MREMAP_DONTUNMAP and old_len != new_len:
                raise XeError(errno.EINVAL, "mremap: MREMAP_DONTUNMAP cannot resize")
            if addr + old_len > new_addr and new_addr + new_len > addr:
                raise XeError(errno.EINVAL, "mremap: the old and new spans overlap")
        dontunmap = bool(flags & MREMAP_DONTUNMAP)
        if flags & MREMAP_FIXED and old_len == new_len:
            return self._remap_move(addr, old_len, new_addr, dontunmap)
        # do_mremap() -> vma_lookup() + check_prep_vma()
        vma = self.find_vma(addr)
        if vma is None:
            raise XeError(errno.EFAULT, f"mremap: {addr:#x} is not mapped")
        if new_len > old_len or target:           # vrm_will_map_new()
            if not old_len:
                raise XeError(errno.EINVAL, "mremap: old_len 0 (duplicating a mapping) is "
                              "refused for private mappings and not modelled for shared ones")
            if min(old_len, new_len) > vma.end - addr:
                raise XeError(errno.EFAULT, f"mremap: [{addr:#x}, +{old_len:#x}) crosses the "
                              f"end of its VMA at {vma.end:#x}")
        if target:                                # mremap_to()
            return self._mremap_to(addr, old_len, new_len, new_addr, flags)
        # mremap_at()
        if new_len == old_len:
            return addr
        if new_len < old_len:                     # shrink_vma()
            self.munmap(addr + new_len, old_len - new_len)
            return addr
        end, grow = addr + old_len, new_len - old_len
        if vma.end == end and end + grow <= TASK_SIZE and not self._overlapping(end, end + grow):
            # expand_vma_in_place() -> vma_merge_extend()
            self._vma_remove(vma)
            self._vma_insert(CpuVma(vma.start, end + grow, vma.read_only, vma.anonymous))
            return addr
        if not flags & MREMAP_MAYMOVE:
            raise XeError(errno.ENOMEM, f"mremap: [{addr:#x}, +{new_len:#x}) cannot grow in "
                          "place and MREMAP_MAYMOVE is not set")
        dst = self._unmapped_area(new_len, 0)     # vrm_set_new_addr() -> get_unmapped_area()
        return self._move_vma(vma, addr, old_len, dst, new_len, dontunmap=False)

    def _unmapped_area(self, length: int, hint: int) -> int:
        """A free span of ``length`` bytes: ``[hint, hint + length)`` when free, else the
        first free gap above the hint. Kernel: get_unmapped_area() (which searches
        top-down; any free gap behaves the same in the model). ENOMEM when none fits."""
        a = max(hint, _MMAP_MIN_ADDR)
        for vma in self._overlapping(a, TASK_SIZE):
            if vma.start >= a + length:
                break
            a = max(a, vma.end)
        if a + length > TASK_SIZE:
            raise XeError(errno.ENOMEM, f"mremap: no free {length:#x} bytes of address space")
        return a

    def _mremap_to(self, addr: int, old_len: int, new_len: int, new_addr: int,
                   flags: int) -> int:
        """Kernel: mm/mremap.c mremap_to() (arguments already checked)."""
        if flags & MREMAP_FIXED:
            self.munmap(new_addr, new_len)        # do_munmap() of the target first
        if new_len < old_len:                     # shrink_vma(), then move what is left
            self.munmap(addr + new_len, old_len - new_len)
            old_len = new_len
        vma = self.find_vma(addr)
        assert vma is not None and addr + old_len <= vma.end
        dst = new_addr if flags & MREMAP_FIXED else self._unmapped_area(new_len, new_addr)
        return self._move_vma(vma, addr, old_len, dst, new_len,
                              dontunmap=bool(flags & MREMAP_DONTUNMAP))

    def _remap_move(self, addr: int, length: int, new_addr: int, dontunmap: bool) -> int:
        """Kernel: mm/mremap.c remap_move(): each VMA of ``[addr, addr + length)`` moves on
        its own (mremap_to() with MREMAP_FIXED), the gaps between them kept; EFAULT when
        the span starts in a hole or holds no VMA. Every model VMA may take part
        (vma_multi_allowed(): no userfaultfd, no custom get_unmapped_area here)."""
        end = addr + length
        vmas = self._overlapping(addr, end)
        if not vmas or vmas[0].start > addr:
            raise XeError(errno.EFAULT, f"mremap: {addr:#x} is not mapped")
        plan: list[tuple[int, int, int]] = []
        dst, last_end = new_addr, None
        for vma in vmas:
            a = max(vma.start, addr)
            n = min(end, vma.end) - a
            dst += vma.start - last_end if last_end is not None else 0
            last_end = vma.end
            plan.append((a, n, dst))
            dst += n
        flags = MREMAP_MAYMOVE | MREMAP_FIXED | (MREMAP_DONTUNMAP if dontunmap else 0)
        for a, n, d in plan:
            self._mremap_to(a, n, n, d, flags)
        return new_addr

    def _move_vma(self, vma: CpuVma, addr: int, old_len: int, new_addr: int, new_len: int, *,
                  dontunmap: bool) -> int:
        """Kernel: mm/mremap.c move_vma() -> copy_vma_and_data() (copy_vma(),
        move_page_tables()), then unmap_source_vma() or dontunmap_complete()."""
        self.invalidate(addr, addr + old_len, NotifyEvent.UNMAP)
        self._vma_insert(CpuVma(new_addr, new_addr + new_len, vma.read_only, vma.anonymous))
        self._move_pages(addr, new_addr, old_len)
        if not dontunmap:
            self.munmap(addr, old_len)
        return new_addr

    def _move_pages(self, src: int, dst: int, length: int) -> None:
        """Move the page-table entries of ``[src, src + length)`` to ``dst`` (the target
        entries are empty). Kernel: move_ptes() / move_normal_pmd(): the entry moves, the
        page (a device-private one included) is untouched; each device page's owner is told
        the new address in one call per owner."""
        pt = self._pt
        rs, xs = self.slots(src, src + length)
        for b, i, j, _ in _blocks(src >> PAGE_SHIFT, (src + length) >> PAGE_SHIFT):
            blk = pt.get(b)
            if blk is not None:
                blk[0][i:j] = [None] * (j - i)
                if blk[0].count(None) == _BLOCK:
                    del pt[b]
        if rs.count(None) == len(rs):
            return
        k0 = 0
        for blk, i, j, _ in self._block_slots(dst, dst + length):
            n = j - i
            blk[0][i:j] = rs[k0:k0 + n]
            blk[1][i:j] = xs[k0:k0 + n]
            k0 += n
        moved: dict[int, tuple[DevmemOwner, list[tuple[int, int, Page]]]] = {}
        for run in dict.fromkeys(rs):           # owners in the order their pages come
            if run is None or run.alloc is None:
                continue
            owner = run.alloc
            lst = moved.setdefault(id(owner), (owner, []))[1]
            lst.extend([(src + (k << PAGE_SHIFT), dst + (k << PAGE_SHIFT), Page.of(run, xs[k]))
                        for k, r in enumerate(rs) if r is run])
        for owner, moves in moved.values():
            moves.sort(key=operator.itemgetter(0))
            owner.pages_moved(moves)

    # ----------------------------------------------------------- mprotect
    def mprotect(self, addr: int, size: int, *, read_only: bool) -> None:
        """Make ``[addr, addr + size)`` read-only or read-write.

        Kernel: mm/mprotect.c do_mprotect_pkey(): EINVAL for an unaligned ``addr``; a
        length of 0 does nothing; the length is rounded up to whole pages and a span that
        wraps is ENOMEM, as is any part of the span not mapped. mprotect_fixup() splits the
        VMAs at the span's ends and leaves those whose protection is already right alone;
        for the others change_protection() sends MMU_NOTIFY_PROTECTION_VMA over the span
        (change_pud_range()), so GPU mappings there are zapped (xe_svm_invalidate()
        queues nothing for the collector). Pages stay where they are: a device-private
        page stays in VRAM (change_pte_range() only makes its swap entry read-only).

        Differences from the kernel: a hole is found before anything changes (the kernel
        changes the VMAs before the hole, then returns ENOMEM); the notification covers
        each changed VMA's part of the span even where no page table is populated (the
        kernel starts it at the first populated PUD). No PROT_NONE or PROT_EXEC.
        """
        if not isinstance(addr, int) or not isinstance(size, int) or addr < 0 or size < 0:
            raise XeError(errno.EINVAL, "mprotect: addr and size must be unsigned integers")
        if addr % PAGE_SIZE:
            raise XeError(errno.EINVAL, f"mprotect: addr {addr:#x} is not page aligned")
        if not size:
            return
        end = addr + -(-size // PAGE_SIZE) * PAGE_SIZE
        if end > U64_MAX + 1:
            raise XeError(errno.ENOMEM, f"mprotect: [{addr:#x}, +{size:#x}) wraps")
        a = addr
        for vma in self._overlapping(addr, end):
            if vma.start > a:
                break
            a = vma.end
        if a < end:
            raise XeError(errno.ENOMEM, f"mprotect: {a:#x} is not mapped")
        for vma in self._overlapping(addr, end):
            if vma.read_only == read_only:
                continue
            s, e = max(vma.start, addr), min(vma.end, end)
            self._vma_remove(vma)
            if vma.start < s:
                self._vma_insert(CpuVma(vma.start, s, vma.read_only, vma.anonymous))
            self._vma_insert(CpuVma(s, e, read_only, vma.anonymous))
            if e < vma.end:
                self._vma_insert(CpuVma(e, vma.end, vma.read_only, vma.anonymous))
            self.invalidate(s, e, NotifyEvent.PROTECTION_VMA)

    def _drop_pages(self, lo: int, hi: int) -> None:
        """Free the pages ``[lo, hi)`` (page numbers) in address order; a device page's
        owner hears run_freed."""
        pt = self._pt
        blo, bhi = lo >> _BSHIFT, ((hi - 1) >> _BSHIFT) + 1
        # Walk whichever is smaller: the span's blocks or the populated blocks (a 2^63-byte
        # mapping has 2^42 blocks but only those ever touched).
        keys = (range(blo, bhi) if bhi - blo <= len(pt)
                else sorted(b for b in pt if blo <= b < bhi))
        for b in keys:
            blk = pt.get(b)
            if blk is None:
                continue
            i = max(lo - (b << _BSHIFT), 0)
            j = min(hi - (b << _BSHIFT), _BLOCK)
            rs = blk[0][i:j]
            xs = blk[1][i:j]
            blk[0][i:j] = [None] * (j - i)
            if blk[0].count(None) == _BLOCK:
                del pt[b]
            distinct = set(rs)
            if all(r is None or r.alloc is None for r in distinct):
                continue                     # system pages only: freeing them tells nobody
            base = ((b << _BSHIFT) + i) << PAGE_SHIFT
            r0 = rs[0]
            if len(distinct) == 1 and r0 is not None and r0.alloc is not None:
                r0.alloc.run_freed(base, rs, xs)        # type: ignore[arg-type]
                continue
            # Consecutive device pages of one allocation are handed over in one call.
            owner: DevmemOwner | None = None
            k0 = 0
            for k, r in enumerate(rs):
                alloc = r.alloc if r is not None else None
                if alloc is not owner:
                    if owner is not None:
                        owner.run_freed(base + (k0 << PAGE_SHIFT), rs[k0:k],  # type: ignore[arg-type]
                                        xs[k0:k])
                    owner = alloc
                    k0 = k
            if owner is not None:
                owner.run_freed(base + (k0 << PAGE_SHIFT), rs[k0:], xs[k0:])  # type: ignore[arg-type]

    def exit_mmap(self) -> int:
        """The last user of the address space is gone: tear every mapping down; returns
        the bytes unmapped.

        Kernel: mm/mmap.c exit_mmap(), reached from kernel/exit.c do_exit() ->
        exit_mm() -> mmput() once mm_users drops to 0 (so mmget_not_zero() fails from
        the start: ``alive`` is False before any notifier runs). It first calls
        mmu_notifier_release(): mm/mmu_notifier.c mn_itree_release() invalidates every
        interval notifier with MMU_NOTIFY_RELEASE over the whole address space; then
        unmap_vmas() sends MMU_NOTIFY_UNMAP over each VMA and frees its pages (a freed
        device page drops its allocation's reference), and the VMAs are removed. The
        notifiers stay registered: their owners remove them (a driver holding the mm
        with mmgrab(), as drm_gpusvm_init() does, does so when its file is closed).
        A second call finds nothing to unmap.
        """
        self.alive = False
        self.invalidate(0, U64_MAX + 1, NotifyEvent.RELEASE)
        done = 0
        for vma in self._vmas.values():
            self.invalidate(vma.start, vma.end, NotifyEvent.UNMAP)
            self._drop_pages(vma.start >> PAGE_SHIFT, vma.end >> PAGE_SHIFT)
            self._vma_remove(vma)
            done += vma.end - vma.start
        return done

    # ------------------------------------------------------------ notifiers
    def interval_notifier_insert(self, start: int, end: int,
                                 callback: Callback) -> IntervalNotifier:
        """Kernel: mmu_interval_notifier_insert()."""
        if not self.alive:
            raise XeError(errno.EFAULT, "address space is gone")
        n = IntervalNotifier(start, end, callback)
        # After the equal starts, as include/linux/interval_tree_generic.h's insert goes
        # right on a tie: the tree's in-order walk meets them in registration order.
        k = bisect.bisect_right(self._starts, start)
        self._starts.insert(k, start)
        self._by_start.insert(k, n)
        if end - start > self._longest:
            self._longest = end - start
        return n

    def interval_notifier_remove(self, n: IntervalNotifier) -> None:
        """Kernel: mmu_interval_notifier_remove()."""
        if not n.removed:
            k = bisect.bisect_left(self._starts, n.start)
            by_start = self._by_start
            while by_start[k] is not n:
                k += 1
            del by_start[k]
            del self._starts[k]
            if not by_start:
                self._longest = 0
            n.removed = True

    def notifier_count(self) -> int:
        return len(self._by_start)

    def invalidate(self, start: int, end: int, event: NotifyEvent,
                   owner: object = None) -> None:
        """Call every interval notifier intersecting ``[start, end)`` in start order,
        equal starts in the order they were registered.

        Kernel: mmu_notifier_invalidate_range_start() -> mm/mmu_notifier.c
        mn_itree_invalidate(), which walks the interval tree (interval_tree_iter_first()
        / interval_tree_iter_next(): in-order, so by start) calling each
        mmu_interval_notifier_ops.invalidate. The notifiers are those registered when the
        call starts; one removed by an earlier callback is not called.
        """
        by_start = self._by_start
        if len(by_start) > _NOTIFIER_SCAN:
            # A notifier intersecting [start, end) starts below ``end`` and ends above
            # ``start``, so it starts above ``start - longest``.
            starts = self._starts
            hits = by_start[bisect.bisect_right(starts, start - self._longest):
                            bisect.bisect_left(starts, end)]
        else:                   # a few: one pass over all of them
            hits = by_start[:]
        nrange = NotifierRange(start, end, event, owner)
        for n in hits:
            if n.removed or n.end <= start or n.start >= end:
                continue
            n.invalidate_seq += 1
            n.callback(n, nrange, n.invalidate_seq)

    # ----------------------------------------------------------- page table
    def page_at(self, addr: int) -> Page | None:
        """The page currently mapped at ``addr`` (None: not populated), as a view."""
        pfn = addr >> PAGE_SHIFT
        blk = self._pt.get(pfn >> _BSHIFT)
        if blk is None:
            return None
        r = blk[0][pfn & _BMASK]
        return Page.of(r, blk[1][pfn & _BMASK]) if r is not None else None

    def set_page(self, addr: int, page: Page) -> None:
        """Install ``page`` at ``addr`` (used by migration)."""
        pfn = addr >> PAGE_SHIFT
        blk = self._pt.get(pfn >> _BSHIFT)
        if blk is None:
            blk = self._pt[pfn >> _BSHIFT] = ([None] * _BLOCK, [0] * _BLOCK)
        blk[0][pfn & _BMASK] = page.run
        blk[1][pfn & _BMASK] = page.idx

    def slots(self, start: int, end: int) -> tuple[list[PageRun | None], list[int]]:
        """The page-table entries over ``[start, end)``, one per 4 KiB, as two new lists
        (runs, None: not populated; and page indices, 0 where not populated)."""
        pt = self._pt
        rs: list[PageRun | None] = []
        xs: list[int] = []
        for b, i, j, _ in _blocks(start >> PAGE_SHIFT, end >> PAGE_SHIFT):
            blk = pt.get(b)
            if blk is None:
                rs.extend([None] * (j - i))
                xs.extend([0] * (j - i))
            else:
                rs.extend(blk[0][i:j])
                xs.extend(blk[1][i:j])
        return rs, xs

    def same_slots(self, start: int, runs: list[PageRun], idx: list[int]) -> bool:
        """Whether the page table maps exactly ``runs``/``idx`` from ``start`` on (the
        pages a device captured are still the ones mapped): C-level list compares."""
        rs, xs = self.slots(start, start + (len(runs) << PAGE_SHIFT))
        return rs == runs and xs == idx

    def pages(self, start: int, end: int) -> list[Page | None]:
        """The pages mapped over ``[start, end)``, one per 4 KiB (None: not populated),
        as views."""
        rs, xs = self.slots(start, end)
        return [Page.of(r, x) if r is not None else None for r, x in zip(rs, xs, strict=True)]

    def migrate_vma_run(self, start: int, end: int, alloc: DevmemOwner) -> PageRun:
        """Replace every page of ``[start, end)`` by a new device page of ``alloc`` holding
        the same value (an unpopulated page migrates as a zero page): one new run, page
        ``k`` at ``start + k * 4 KiB``; return it.

        Kernel: migrate_vma_pages() + migrate_vma_finalize() (mm/migrate_device.c), after
        the driver copied the data. The caller invalidated the span first
        (migrate_vma_setup() does, with MMU_NOTIFY_MIGRATE).
        """
        values, states = entry_pages(*self.slots(start, end))
        run = PageRun(values, alloc, states.translate(_TO_DEVICE))
        k = 0
        for blk, i, j, _ in self._block_slots(start, end):
            blk[0][i:j] = [run] * (j - i)
            blk[1][i:j] = idx_range(k, k + j - i)
            k += j - i
        return run

    def migrate_vma_pages(self, start: int, end: int, alloc: DevmemOwner) -> list[Page]:
        """:meth:`migrate_vma_run`, the new pages as views."""
        run = self.migrate_vma_run(start, end, alloc)
        return [Page.of(run, k) for k in range(len(run.values))]

    def _block_slots(self, start: int, end: int) -> Iterator[
            tuple[tuple[list[PageRun | None], list[int]], int, int, int]]:
        """The page-table blocks over ``[start, end)`` (created when missing) as
        ``(block, i, j, pfn of slot i)``: the span's entries are ``block[0][i:j]`` and
        ``block[1][i:j]``. Each block is created as the walk reaches it (a caller that stops
        early creates no more)."""
        lo, hi = start >> PAGE_SHIFT, end >> PAGE_SHIFT
        pt = self._pt
        for b, i, j, pfn in _blocks(lo, hi):
            blk = pt.get(b)
            if blk is None:
                blk = pt[b] = ([None] * _BLOCK, [0] * _BLOCK)
            yield blk, i, j, pfn

    def migrate_pages_to_system(self, moves: list[tuple[int, Page]]) -> None:
        """:meth:`migrate_entries_to_system` of ``(addr, device page)`` pairs."""
        self.migrate_entries_to_system([a for a, _ in moves], [p.run for _, p in moves],
                                       [p.idx for _, p in moves])

    def migrate_entries_to_system(self, addrs: list[int], runs: list[PageRun],
                                  idx: list[int]) -> None:
        """For each device page ``(runs[k], idx[k])`` still mapped at ``addrs[k]``, install
        a new system page with its value (the new pages are one new run).

        Kernel: migrate_vma_pages() + migrate_vma_finalize() for device-private source
        pages (drm_pagemap_migrate_to_ram(), drm_pagemap_evict_to_ram()) after the copy.
        The caller invalidated the span first (MMU_NOTIFY_MIGRATE).
        """
        if not addrs:
            return
        pt = self._pt
        # The common case: a run of consecutive pages inside one block, each still mapped
        # where it was: one slice compare and one slice store per list.
        n = len(addrs)
        lo = addrs[0] >> PAGE_SHIFT
        hi = lo + n
        blk = pt.get(lo >> _BSHIFT)
        if (blk is not None and (hi - 1) >> _BSHIFT == lo >> _BSHIFT
                and addrs[-1] >> PAGE_SHIFT == hi - 1):
            i = lo & _BMASK
            j = i + n
            if blk[0][i:j] == runs and blk[1][i:j] == idx:
                values, states = entry_pages(runs, idx)     # type: ignore[arg-type]
                new = PageRun(values, None, states)
                blk[0][i:j] = [new] * n
                blk[1][i:j] = idx_range(0, n)
                return
        still: list[tuple[int, int, int]] = []
        for a, r, x in zip(addrs, runs, idx, strict=True):
            pfn = a >> PAGE_SHIFT
            b = pt.get(pfn >> _BSHIFT)
            if b is not None and b[0][pfn & _BMASK] is r and b[1][pfn & _BMASK] == x:
                still.append((a, r.values[x], r.state[x]))
        if still:
            new = PageRun([v for _, v, _ in still], None, bytearray([d for _, _, d in still]))
            for k, (a, _, _) in enumerate(still):
                pfn = a >> PAGE_SHIFT
                b = pt[pfn >> _BSHIFT]
                b[0][pfn & _BMASK] = new
                b[1][pfn & _BMASK] = k

    def populated_count(self) -> int:
        """How many pages are populated (C-level counts, no object per page)."""
        return sum(_BLOCK - rs.count(None) for rs, _ in self._pt.values())

    def populated_pages(self) -> Iterator[tuple[int, Page]]:
        """Every populated page as ``(address, page)``, in no particular order."""
        return iter([(((b << _BSHIFT) + i) << PAGE_SHIFT, Page.of(r, xs[i]))
                     for b, (rs, xs) in self._pt.items()
                     for i, r in enumerate(rs) if r is not None])

    def populated(self, addr: int) -> bool:
        return self.page_at(addr) is not None

    def _populate(self, addr: int) -> Page:
        pfn = addr >> PAGE_SHIFT
        blk = self._pt.get(pfn >> _BSHIFT)
        if blk is None:
            blk = self._pt[pfn >> _BSHIFT] = ([None] * _BLOCK, [0] * _BLOCK)
        k = pfn & _BMASK
        r = blk[0][k]
        if r is None:                   # as a read fault would: the zero page (a store
            r = blk[0][k] = PageRun([0], None, bytearray(_ZERO1))   # dirties it next)
            blk[1][k] = 0
        return Page.of(r, blk[1][k])

    def _require_mapped(self, addr: int, size: int, write: bool, what: str) -> None:
        a, end = addr, addr + size
        while a < end:
            vma = self.find_vma(a)
            if vma is None:
                raise XeError(errno.EFAULT, f"{what}: {a:#x} is not mapped (SIGSEGV)")
            if write and vma.read_only:
                raise XeError(errno.EFAULT, f"{what}: {a:#x} is read-only (SIGSEGV)")
            a = vma.end

    def _cpu_fault(self, addr: int) -> Page:
        """Touch one page from the CPU, migrating a device page back first.

        Kernel: handle_mm_fault() -> do_swap_page() -> dev_pagemap_ops
        .migrate_to_ram() for a device-private entry. drm_pagemap.c
        __drm_pagemap_migrate_to_ram() declines while the allocation's atomic timeslice
        runs and the CPU faults again until it is over: the model lets the virtual clock
        run to the expiration (``wait_timeslice``, counted as ``cpu_timeslice_waits`` /
        ``cpu_timeslice_wait_ms``), then migrates. The pages of an access are met in
        address order, so a later page an earlier fault's window already moved waits for
        nothing; eviction (drm_pagemap_evict_to_ram(), no fault page) never waits.
        """
        for _ in range(4):
            page = self._populate(addr)
            alloc = page.alloc
            if alloc is None:
                return page
            self.stats["cpu_faults_on_device_pages"] += 1
            alloc.wait_timeslice(cpu=True)
            alloc.migrate_to_ram(self, addr)
        raise XeError(errno.EFAULT, f"CPU fault at {addr:#x}: device page did not migrate "
                      "back (SIGBUS)")

    def cpu_read(self, addr: int, size: int) -> list[int]:
        """Read every page of ``[addr, addr+size)``: one value per page.

        Kernel: a CPU load; faults device-resident pages back to system memory.
        Raises XeError(EFAULT) (SIGSEGV) when part of the span is unmapped.
        """
        _check_span(addr, size, "cpu_read")
        check_access_size(size, "cpu_read", reads=True)
        self._require_mapped(addr, size, False, "cpu_read")
        out: list[int] = []
        for blk, i, j, pfn in self._block_slots(addr, addr + size):
            n = j - i
            rs = blk[0][i:j]
            if rs.count(None) == n:         # fresh memory populates as zero pages
                blk[0][i:j] = [PageRun([0] * n, None, bytearray(_ZERO1 * n))] * n
                blk[1][i:j] = idx_range(0, n)
                out.extend([0] * n)
                continue
            if None not in rs and all(r.alloc is None for r in set(rs)):  # type: ignore[union-attr]
                out.extend(entry_values(rs, blk[1][i:j]))   # system pages: no fault
                continue
            runs, idx = blk
            k = i
            while k < j:
                r = runs[k]
                if r is None:
                    runs[k] = PageRun([0], None, bytearray(_ZERO1))
                    idx[k] = 0
                    out.append(0)
                elif r.alloc is None:
                    out.append(r.values[idx[k]])
                else:
                    out.append(self._cpu_fault((pfn + k - i) << PAGE_SHIFT).value)
                    # The fault brought a window back: the rest of the block may be one
                    # run of system pages now, read as a slice.
                    rest = runs[k + 1:j]
                    if rest:
                        x0 = _one_run(rest, idx[k + 1:j])
                        r0 = rest[0]
                        if x0 >= 0 and r0 is not None and r0.alloc is None:
                            out.extend(r0.values[x0:x0 + j - k - 1])
                            break
                k += 1
        return out

    def cpu_write(self, addr: int, size: int, value: int) -> None:
        """Store ``value`` in every page of ``[addr, addr+size)``.

        Kernel: a CPU store; faults device-resident pages back to system memory.
        Raises XeError(EFAULT) for unmapped or read-only memory (state unchanged).
        """
        _check_span(addr, size, "cpu_write")
        check_access_size(size, "cpu_write", reads=False)
        self._require_mapped(addr, size, True, "cpu_write")
        for blk, i, j, pfn in self._block_slots(addr, addr + size):
            n = j - i
            rs = blk[0][i:j]
            if rs.count(None) == n:                 # fresh memory: one new run
                blk[0][i:j] = [PageRun([value] * n, None, bytearray(_DIRTY1 * n))] * n
                blk[1][i:j] = idx_range(0, n)
                continue
            if None not in rs:
                xs = blk[1][i:j]
                x0 = _one_run(rs, xs)
                r0 = rs[0]
                assert r0 is not None
                if x0 >= 0 and r0.alloc is None:     # one run of system pages: in place
                    r0.values[x0:x0 + n] = [value] * n
                    r0.state[x0:x0 + n] = _DIRTY1 * n
                    continue
            runs, idx = blk
            for k in range(i, j):
                r = runs[k]
                if r is None:
                    runs[k] = PageRun([value], None, bytearray(_DIRTY1))
                    idx[k] = 0
                elif r.alloc is None:
                    r.values[idx[k]] = value
                    r.state[idx[k]] = PAGE_DIRTY
                else:
                    page = self._cpu_fault((pfn + k - i) << PAGE_SHIFT)
                    page.run.values[page.idx] = value
                    page.run.state[page.idx] = PAGE_DIRTY

    def smaps(self, start: int, end: int) -> dict[str, int]:
        """What /proc/PID/smaps would add up over the CPU VMAs' parts inside ``[start,
        end)``, in kB: ``rss``, ``anonymous``, ``private_clean``, ``private_dirty``; and
        two counts smaps has no field for: ``device`` (the part of ``rss`` in device
        memory) and ``zero`` (zero pages, which smaps does not count at all).

        Kernel: fs/proc/task_mmu.c smaps_pte_entry() -> smaps_account() ->
        smaps_page_accumulate(). A present page counts in Rss and, mapped once,
        in Private_Dirty when pte_dirty() or folio_test_dirty(), else in Private_Clean;
        the zero page is skipped (vm_normal_page() returns NULL for it); a device-private
        entry counts as present (Rss, Private_*) with the folio's PG_dirty alone deciding
        dirty; an empty entry counts nothing. Every page here is anonymous and mapped
        once (no fork), so Shared_* and Pss add nothing smaps does not say already.
        """
        rss = dev = zero = dirty = anon = 0
        pt = self._pt
        for vma in self._overlapping(start, end):
            lo = max(start, vma.start) >> PAGE_SHIFT
            hi = min(end, vma.end) >> PAGE_SHIFT
            vrss = 0
            for b, i, j, _ in _blocks(lo, hi):
                blk = pt.get(b)
                if blk is None:
                    continue
                rs, xs = blk[0][i:j], blk[1][i:j]
                x0 = _one_run(rs, xs)
                if x0 >= 0:
                    r0 = cast("PageRun", rs[0])
                    seg = r0.state[x0:x0 + j - i]
                    z = seg.count(PAGE_ZERO)
                    n = j - i - z
                    zero += z
                    vrss += n
                    dirty += seg.count(PAGE_DIRTY)
                    if r0.alloc is not None:
                        dev += n
                    continue
                for r, x in zip(rs, xs, strict=True):
                    if r is None:
                        continue
                    st = r.state[x]
                    if st == PAGE_ZERO:
                        zero += 1
                        continue
                    vrss += 1
                    if st == PAGE_DIRTY:
                        dirty += 1
                    if r.alloc is not None:
                        dev += 1
            rss += vrss
            if vma.anonymous:
                anon += vrss
        kb = PAGE_SIZE >> 10
        return {"rss": rss * kb, "anonymous": anon * kb, "private_clean": (rss - dirty) * kb,
                "private_dirty": dirty * kb, "device": dev * kb, "zero": zero * kb}

    def collectable(self, start: int, end: int) -> int:
        """How many pages of ``[start, end)`` are system pages or not populated (what
        migrate_vma_setup() with MIGRATE_VMA_SELECT_SYSTEM collects)."""
        pt = self._pt
        n = 0
        for b, i, j, _ in _blocks(start >> PAGE_SHIFT, end >> PAGE_SHIFT):
            blk = pt.get(b)
            if blk is None:             # never touched: all collectable
                n += j - i
                continue
            rs = blk[0][i:j]
            for r in set(rs):
                if r is None or r.alloc is None:
                    n += rs.count(r)
        return n

    def check_pages(self, start: int, end: int) -> bool:
        """True iff every page of ``[start, end)`` is populated (no faulting).

        Kernel: drm_gpusvm_check_pages() (hmm_range_fault without fault flags).
        """
        pt = self._pt
        for b, i, j, _ in _blocks(start >> PAGE_SHIFT, end >> PAGE_SHIFT):
            blk = pt.get(b)
            if blk is None or None in blk[0][i:j]:
                return False
        return True

    def hmm_range_fault(self, start: int, end: int, *, write: bool,
                        owner: object) -> FaultedPages:
        """Fault in ``[start, end)`` for a device and return its pages.

        Kernel: hmm_range_fault() with HMM_PFN_REQ_FAULT (| WRITE): missing
        pages are populated; device-private pages whose pagemap owner is not
        ``owner`` are migrated back to system memory first; pages of ``owner``
        are returned as they are.

        Time: such a page's migrate_to_ram declines while its allocation's atomic
        timeslice runs (drm_pagemap.c __drm_pagemap_migrate_to_ram()) and mm/hmm.c
        hmm_vma_fault() answers -EBUSY, so hmm_range_fault() walks again until the
        expiration: the model lets the clock run to it (``wait_timeslice``), then
        migrates. Each migration invalidates the caller's notifier, so the walk returns
        -EBUSY and drm_gpusvm.c drm_gpusvm_get_pages() (which every caller here stands
        for) tries again only while ``time_after(jiffies, timeout)`` is false, the
        timeout being HMM_RANGE_DEFAULT_TIMEOUT after it started: once a migration ends
        later than that, the collection fails with EBUSY (pages moved so far stay in
        system memory, as in the kernel).

        Raises
        ------
        XeError(EFAULT) if the mm is gone or a page is not inside a CPU VMA,
        XeError(EPERM) for a write fault on a read-only VMA,
        XeError(EBUSY) when waiting out timeslices took longer than
        :data:`HMM_RANGE_DEFAULT_TIMEOUT_MS`.
        """
        if not self.alive:
            raise XeError(errno.EFAULT, "address space is gone")
        a = start
        while a < end:
            vma = self.find_vma(a)
            if vma is None:
                raise XeError(errno.EFAULT, f"hmm_range_fault: {a:#x} is not mapped")
            if write and vma.read_only:
                raise XeError(errno.EPERM, f"hmm_range_fault: {a:#x} is read-only")
            a = vma.end
        lo = start >> PAGE_SHIFT
        b = lo >> _BSHIFT
        if ((end - 1) >> (PAGE_SHIFT + _BSHIFT)) == b:
            # The common case: a span inside one block, every page present and of one
            # allocation that needs no move.
            blk = self._pt.get(b)
            if blk is not None:
                i = lo & _BMASK
                j = i + ((end - start) >> PAGE_SHIFT)
                rs = blk[0][i:j]
                r0 = rs[0]
                if r0 is not None and rs.count(r0) == j - i:     # one run (a migration's)
                    allocs = {r0.alloc}
                elif None not in rs:
                    allocs = {r.alloc for r in set(rs)}      # type: ignore[union-attr]
                else:
                    allocs = set()
                if len(allocs) == 1:
                    only = allocs.pop()
                    if only is None or only.owner is owner:
                        xs = blk[1][i:j]
                        if write and only is None:
                            _write_fault_zero(rs, xs)           # type: ignore[arg-type]
                        return FaultedPages(rs, xs, only, True)  # type: ignore[arg-type]
        runs: list[PageRun] = []
        idxs: list[int] = []
        owners: dict[int, object] = {}      # per allocation, looked up once per call
        started: int | None = None          # the clock when the first foreign page is met
        seen: object = _UNSEEN              # the one allocation of every page so far
        uniform = True
        for blk, i, j, pfn in self._block_slots(start, end):
            rs = blk[0][i:j]
            if None not in rs:
                allocs = {r.alloc for r in set(rs)}      # type: ignore[union-attr]
                if len(allocs) == 1:
                    only = allocs.pop()
                    if only is None or only.owner is owner:
                        runs.extend(rs)             # type: ignore[arg-type]
                        idxs.extend(blk[1][i:j])
                        if seen is _UNSEEN:
                            seen = only
                        elif seen is not only:
                            uniform = False
                        continue
            uniform = False                 # page by page from here: not tracked
            brs, bxs = blk
            for k in range(i, j):
                r = brs[k]
                if r is None:           # do_anonymous_page(): dirty on a write fault
                    r = brs[k] = PageRun([0], None, bytearray(_DIRTY1 if write else _ZERO1))
                    bxs[k] = 0
                elif r.alloc is not None:
                    alloc = r.alloc
                    key = id(alloc)
                    if key not in owners:
                        owners[key] = alloc.owner
                    if owners[key] is not owner:
                        a = (pfn + k - i) << PAGE_SHIFT
                        if started is None:
                            started = alloc.clock_ms()
                        alloc.wait_timeslice()
                        alloc.migrate_to_ram(self, a)
                        if alloc.clock_ms() - started > HMM_RANGE_DEFAULT_TIMEOUT_MS:
                            raise XeError(errno.EBUSY, f"hmm_range_fault: {a:#x} waited "
                                          f"{alloc.clock_ms() - started} ms for atomic "
                                          f"timeslices, past HMM_RANGE_DEFAULT_TIMEOUT "
                                          f"({HMM_RANGE_DEFAULT_TIMEOUT_MS} ms)")
                        p = self._populate(a)
                        r = p.run
                        runs.append(r)
                        idxs.append(p.idx)
                        continue
                runs.append(r)
                idxs.append(bxs[k])
        if write:
            _write_fault_zero(runs, idxs)
        if seen is _UNSEEN:
            return FaultedPages(runs, idxs, None, False)
        return FaultedPages(runs, idxs, cast("DevmemOwner | None", seen), uniform)
