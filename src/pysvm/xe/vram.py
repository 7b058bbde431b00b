"""Per-device VRAM: capacity, allocations, device-resident pages.

Kernel: the VRAM region of a tile (struct xe_vram_region with its TTM VRAM
manager) and the device-memory allocation backing migrated SVM pages
(struct drm_pagemap_devmem embedded in an xe_bo, plus the drm_pagemap_zdd that
every device page points at).

Model
-----
A :class:`Vram` has a byte capacity and an LRU-ordered set of
:class:`VramAllocation`. An allocation is created for one SVM range at a time
(size = range size) and owns the device pages migrated into it (the one
:class:`pysvm.mm.mmap.PageRun` its migration made, whose ``alloc`` is the allocation).
When its last page goes away (migrated back, munmapped) the allocation is
released: its bytes return to the VRAM and its pagemap reference is dropped
(the zdd's last put). Allocating more than is free first evicts the least
recently used allocations to system memory, as TTM eviction does
(xe_svm_bo_evict -> drm_pagemap_evict_to_ram); when that is not enough the
allocation fails with ENOMEM. Page values are never lost: eviction copies each
page to a new system page before freeing the device page.
"""

from __future__ import annotations

import errno
import itertools
import operator
from collections import Counter, OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

from pysvm.drm.pagemap import Zdd
from pysvm.errors import XeError
from pysvm.mm.mmap import (
    HMM_RANGE_DEFAULT_TIMEOUT_MS,
    PAGE_SHIFT,
    PAGE_SIZE,
    Mm,
    Page,
    PageRun,
    idx_range,
)
from pysvm.mm.mmu_notifier import NotifyEvent

if TYPE_CHECKING:
    from pysvm.xe.device import Device

__all__ = ["Vram", "VramAllocation", "devm_owner", "evict_range", "evict_to_ram",
           "migrate_to_ram", "page_device", "DevicePages"]

_ids = itertools.count(1)


def devm_owner(device: Device, tile: int = 0) -> object:
    """The device-private page owner of ``device``'s VRAM (tile ``tile``'s).

    Kernel: xe_svm_devm_owner() (6.18: the xe device itself; newest: the owner of the
    tile's pagemap, xe_pagemap_create(), so peers in one group share pages directly).
    """
    pm = device.pagemap if tile == 0 else device.tile_pagemap(tile)
    if pm is None:
        return device
    peer = pm.device_peer       # 6.18: DevicePagemap.owner without the property call
    owner = peer.owner if peer is not None else pm.owner
    return owner if owner is not None else device


def page_device(page: Page | None) -> Device | None:
    """The device whose VRAM holds ``page`` (None for a system page or no page)."""
    alloc = page.alloc if page is not None else None
    return alloc.device if isinstance(alloc, VramAllocation) else None


class DevicePages:
    """The live device pages of one allocation: address -> page.

    The pages sit where the allocation was made as one slot per 4 KiB of its span, kept
    as the page table keeps them: two lists, the run of each slot's page (None: no live
    page there) and its index in the run, and a count. A migration fills the span with
    one run (:meth:`set_run`), so freeing or evicting a whole range is a slice compare
    and a slice store. A page that mremap() carried out of the span (:meth:`move`) is kept
    in a dict beside the slots: the kernel's device page does not know its CPU address
    at all, so wherever it is mapped it stays the allocation's.

    Offers the mapping operations the model uses (``get``, ``in``, ``len``, truth,
    iteration over addresses in order, ``items``, item set and delete), pages given and
    returned as :class:`pysvm.mm.mmap.Page` views.
    """

    __slots__ = ("start", "_runs", "_idx", "_n", "_away")

    def __init__(self, start: int, size: int) -> None:
        self.start = start
        n = max(size >> PAGE_SHIFT, 1)
        self._runs: list[PageRun | None] = [None] * n
        self._idx: list[int] = [0] * n
        self._n = 0
        #: Pages mapped outside the span (moved there by mremap()), by address.
        self._away: dict[int, Page] = {}

    def _index(self, addr: int) -> int:
        i = (addr - self.start) >> PAGE_SHIFT
        return i if 0 <= i < len(self._runs) and not addr & (PAGE_SIZE - 1) else -1

    def _page(self, i: int) -> Page | None:
        r = self._runs[i]
        return Page.of(r, self._idx[i]) if r is not None else None

    def get(self, addr: int) -> Page | None:
        i = self._index(addr)
        return self._page(i) if i >= 0 else self._away.get(addr)

    def holds(self, addr: int, runs: list[PageRun | None], idx: list[int]) -> bool:
        """Whether the pages ``(runs[k], idx[k])`` mapped at ``addr + k * 4 KiB`` are all
        live pages of this allocation at those addresses (slice compares when the span is
        inside the allocation's own; page by page for pages mremap() moved away)."""
        i = self._index(addr)
        j = i + len(runs)
        if i >= 0 and j <= len(self._runs):
            return self._runs[i:j] == runs and self._idx[i:j] == idx
        return all(r is not None and self.get(addr + (k << PAGE_SHIFT)) == Page.of(r, x)
                   for k, (r, x) in enumerate(zip(runs, idx, strict=True)))

    def __contains__(self, addr: object) -> bool:
        return isinstance(addr, int) and self.get(addr) is not None

    def __len__(self) -> int:
        return self._n + len(self._away)

    def __bool__(self) -> bool:
        return self._n > 0 or bool(self._away)

    def __iter__(self) -> Iterator[int]:
        return iter([a for a, _ in self.items()])

    def items(self) -> list[tuple[int, Page]]:
        start, idx = self.start, self._idx
        out = [(start + (i << PAGE_SHIFT), Page.of(r, idx[i]))
               for i, r in enumerate(self._runs) if r is not None]
        if self._away:
            out = sorted([*out, *self._away.items()], key=operator.itemgetter(0))
        return out

    def __setitem__(self, addr: int, page: Page) -> None:
        i = self._index(addr)
        if i < 0:
            if addr & (PAGE_SIZE - 1):
                raise KeyError(f"{addr:#x} is not page aligned")
            self._away[addr] = page
            return
        if self._runs[i] is None:
            self._n += 1
        self._runs[i] = page.run
        self._idx[i] = page.idx

    def __delitem__(self, addr: int) -> None:
        i = self._index(addr)
        if i < 0:
            del self._away[addr]
            return
        if self._runs[i] is None:
            raise KeyError(addr)
        self._runs[i] = None
        self._n -= 1

    def live(self, addrs: list[int]) -> list[tuple[int, Page]]:
        """``(addr, page)`` for each of ``addrs`` that holds a live page, in address order."""
        runs, start, n, away = self._runs, self.start, len(self._runs), self._away
        out: list[tuple[int, Page]] = []
        for a in sorted(addrs):
            i = (a - start) >> PAGE_SHIFT
            if 0 <= i < n and not a & (PAGE_SIZE - 1):
                if runs[i] is not None:
                    out.append((a, Page.of(cast("PageRun", runs[i]), self._idx[i])))
            elif a in away:
                out.append((a, away[a]))
        return out

    def runs(self) -> list[tuple[int, int]] | None:
        """The live pages as runs ``[i, j)`` of slot indices, in address order; None when a
        page lives outside the span (mremap() moved it): then only :meth:`items` knows
        their order."""
        if self._away:
            return None
        n = len(self._runs)
        if self._n == n:
            return [(0, n)]
        if not self._n:
            return []
        return self._live_runs(0, n)

    def _live_runs(self, i: int, j: int) -> list[tuple[int, int]]:
        """The slots of ``[i, j)`` holding a live page, as runs ``[a, b)`` of slot
        indices in order."""
        sl = self._runs[i:j]
        if None not in sl:
            return [(i, j)] if i < j else []
        out: list[tuple[int, int]] = []
        k0 = -1
        for k, r in enumerate(sl, i):
            if r is None:
                if k0 >= 0:
                    out.append((k0, k))
                    k0 = -1
            elif k0 < 0:
                k0 = k
        if k0 >= 0:
            out.append((k0, j))
        return out

    def moved_away(self) -> bool:
        """Whether a page lives outside the span (mremap() moved it there)."""
        return bool(self._away)

    def runs_in(self, start: int, end: int) -> list[tuple[int, int]]:
        """:meth:`runs_among` the addresses of ``[start, end)`` (no page away): the slots
        of the span holding a live page, as runs ``[i, j)`` of slot indices."""
        i = max((start - self.start) >> PAGE_SHIFT, 0)
        j = min((end - self.start) >> PAGE_SHIFT, len(self._runs))
        if i >= j:
            return []
        return self._live_runs(i, j)

    def runs_among(self, addrs: list[int]) -> list[tuple[int, int]] | None:
        """The slots among the distinct ``addrs`` that hold a live page, as runs ``[i, j)``
        of slot indices in address order (what :meth:`runs` is for the whole span); None
        when a page lives outside the span: then only :meth:`live` knows them."""
        if self._away:
            return None
        slots, start, n = self._runs, self.start, len(self._runs)
        idx = [i for a in sorted(addrs)
               if 0 <= (i := (a - start) >> PAGE_SHIFT) < n and not a & (PAGE_SIZE - 1)
               and slots[i] is not None]
        if not idx or idx[-1] - idx[0] == len(idx) - 1:     # none, or one run
            return [(idx[0], idx[-1] + 1)] if idx else []
        out: list[tuple[int, int]] = []
        i0 = prev = idx[0]
        for i in idx[1:]:
            if i != prev + 1:
                out.append((i0, prev + 1))
                i0 = i
            prev = i
        out.append((i0, prev + 1))
        return out

    def entries_in_runs(self, runs: list[tuple[int, int]]
                        ) -> tuple[list[int], list[PageRun], list[int]]:
        """The slots of ``runs`` that still hold a page, in address order, as three lists:
        addresses, page runs, page indices (what :meth:`live` answers over the runs'
        addresses, without a per-address lookup or a view per page when a run is whole)."""
        slots, idx, start = self._runs, self._idx, self.start
        addrs: list[int] = []
        rs: list[PageRun] = []
        xs: list[int] = []
        for i, j in runs:
            sl = slots[i:j]
            a = start + (i << PAGE_SHIFT)
            if None in sl:
                for k, r in enumerate(sl, i):
                    if r is not None:
                        addrs.append(a + ((k - i) << PAGE_SHIFT))
                        rs.append(r)
                        xs.append(idx[k])
            else:
                addrs.extend(range(a, start + (j << PAGE_SHIFT), PAGE_SIZE))
                rs.extend(cast("list[PageRun]", sl))
                xs.extend(idx[i:j])
        return addrs, rs, xs

    def clear_runs(self, runs: list[tuple[int, int]]) -> bool:
        """Empty every slot of ``runs``: :meth:`discard` of the pages
        :meth:`entries_in_runs` names when nothing moved them since (each is at its own
        slot). Returns whether any page
        is left (the truth of ``self`` afterwards)."""
        slots = self._runs
        for i, j in runs:
            self._n -= (j - i) - slots[i:j].count(None)
            slots[i:j] = [None] * (j - i)
        return self._n > 0 or bool(self._away)

    def discard(self, freed: list[tuple[int, Page]]) -> None:
        """Drop each ``(addr, page)`` whose slot holds that page; a page found elsewhere
        is searched for, as ``page_freed`` does."""
        if freed:                       # the common case: a run of pages at their slots
            a0 = freed[0][0]
            if (freed[-1][0] == a0 + ((len(freed) - 1) << PAGE_SHIFT)
                    and self._clear_in_place(a0, [p.run for _, p in freed],
                                             [p.idx for _, p in freed])):
                return
        self._discard_each(freed)

    def discard_entries(self, addr: int, runs: list[PageRun], idx: list[int]) -> None:
        """:meth:`discard` of the pages ``(runs[k], idx[k])`` mapped at ``addr``,
        ``addr + 4 KiB``, ... (given as the page table holds them): when each is at its
        own slot, one slice compare and one slice store."""
        if not self._clear_in_place(addr, runs, idx):
            self._discard_each([(addr + (k << PAGE_SHIFT), Page.of(r, x))
                                for k, (r, x) in enumerate(zip(runs, idx, strict=True))])

    def _clear_in_place(self, addr: int, runs: list[PageRun], idx: list[int]) -> bool:
        """Empty the slots of the pages mapped at ``addr``, ``addr + 4 KiB``, ... when each
        is at its own slot (True); otherwise change nothing (False)."""
        slots = self._runs
        i = (addr - self.start) >> PAGE_SHIFT
        j = i + len(runs)
        if (self._away or i < 0 or j > len(slots) or addr & (PAGE_SIZE - 1)
                or slots[i:j] != runs or self._idx[i:j] != idx):
            return False
        slots[i:j] = [None] * (j - i)
        self._n -= j - i
        return True

    def _discard_each(self, freed: list[tuple[int, Page]]) -> None:
        for a, page in freed:
            if self.get(a) != page:
                a = next((b for b, p in self.items() if p == page), -1)
            if a >= 0:
                del self[a]

    def set_run(self, addr: int, run: PageRun) -> None:
        """Install every page of ``run`` at ``addr``, ``addr + 4 KiB``, ... (the run one
        migration made)."""
        n = len(run.values)
        self.set_entries(addr, [run] * n, idx_range(0, n))

    def set_entries(self, addr: int, runs: list[PageRun], idx: list[int]) -> None:
        """Install the pages ``(runs[k], idx[k])`` at ``addr``, ``addr + 4 KiB``, ...
        (KeyError, changing nothing, when that leaves the allocation's span)."""
        slots = self._runs
        i = (addr - self.start) >> PAGE_SHIFT
        j = i + len(runs)
        if not 0 <= i < len(slots) or j > len(slots) or addr & (PAGE_SIZE - 1):
            raise KeyError(f"{addr:#x}+{len(runs)} pages is outside the allocation")
        self._n += slots[i:j].count(None)
        slots[i:j] = runs
        self._idx[i:j] = idx

    def move(self, moved: list[tuple[int, int, Page]]) -> None:
        """Each ``(old, new, page)`` whose page is at ``old`` is now at ``new``: every old
        entry goes first, so a page may land where another one left."""
        landed = [(new, page) for old, new, page in moved if self.get(old) == page]
        for old, _, page in moved:
            if self.get(old) == page:
                del self[old]
        for new, page in landed:
            self[new] = page


class VramAllocation:
    """Device memory backing one migrated SVM range.

    Kernel: struct drm_pagemap_devmem (xe_bo->devmem_allocation) + its zdd.
    """

    __slots__ = ("id", "vram", "mm", "start", "size", "pages", "timeslice_ms", "released",
                 "zdd")

    def __init__(self, vram: Vram, mm: Mm, start: int, size: int) -> None:
        self.id = next(_ids)
        self.vram = vram
        self.mm = mm
        self.start = start
        self.size = size
        self.pages = DevicePages(start, size)     # address -> live device page
        self.timeslice_ms = 0
        self.released = False
        #: The zdd: holds the device's pagemap from migration until the last device page is
        #: freed (set by :func:`pysvm.xe.migrate.populate_mm`; None without a pagemap).
        self.zdd: Zdd | None = None

    @property
    def device(self) -> Device:
        return self.vram.device

    @property
    def owner(self) -> object:
        """:func:`devm_owner` of the tile's VRAM (asked on every notifier call and page
        walk, so written out here). Read anew each time: a link event regroups owners."""
        vram = self.vram
        device = vram.device
        tile = vram.tile
        pm = device.pagemap if tile == 0 else device.tile_pagemap(tile)
        if pm is None:
            return device
        peer = pm.device_peer
        owner = peer.owner if peer is not None else pm.owner
        return owner if owner is not None else device

    @property
    def detached(self) -> bool:
        """Kernel: completion of zdd->devmem_allocation->detached."""
        return not self.pages

    def __repr__(self) -> str:
        return f"<alloc {self.id} {self.vram.device_name} {self.start:#x}+{self.size:#x}>"

    def migrate_to_ram(self, mm: Mm, addr: int) -> None:
        """CPU fault on one of our pages. Kernel: drm_pagemap_migrate_to_ram()."""
        migrate_to_ram(mm, addr, self)

    def clock_ms(self) -> int:
        """The machine's virtual time (kernel: get_jiffies_64())."""
        return self.device.clock.now_ms

    def wait_timeslice(self, *, cpu: bool = False) -> int:
        """The CPU (``cpu``) or a device's hmm_range_fault() met one of our pages while
        its atomic timeslice runs: let the clock run to the expiration, counted as
        ``cpu_timeslice_waits`` / ``cpu_timeslice_wait_ms`` or ``hmm_timeslice_waits`` /
        ``hmm_timeslice_wait_ms``; returns the ms waited. Kernel: drm_pagemap.c
        __drm_pagemap_migrate_to_ram() declines (time_before64(get_jiffies_64(),
        zdd->devmem_allocation->timeslice_expiration)) and the CPU or mm/hmm.c
        hmm_range_fault() repeats the fault until it no longer does."""
        zdd = self.zdd
        clock = self.vram.device.clock
        if zdd is None or not clock.before(zdd.timeslice_expiration):
            return 0
        waited = clock.wait_until(zdd.timeslice_expiration)
        st = self.vram.stats
        who = "cpu" if cpu else "hmm"
        st[f"{who}_timeslice_waits"] += 1
        st[f"{who}_timeslice_wait_ms"] += waited
        return waited

    def page_freed(self, page: Page, addr: int | None = None) -> None:
        """A device page was freed. Kernel: drm_pagemap_page_free() -> zdd put.

        ``addr``, when the caller knows where the page was mapped, saves the search.
        """
        if addr is not None and self.pages.get(addr) == page:
            del self.pages[addr]
        else:
            for a, p in self.pages.items():
                if p == page:
                    del self.pages[a]
                    break
        if not self.pages:
            self.release()

    def pages_freed(self, freed: list[tuple[int, Page]]) -> None:
        """Several device pages were freed, in address order: the same as
        :meth:`page_freed` for each, in one call (the release, when the last page
        goes, touches neither the pages nor the page table, so it may come last)."""
        self.pages.discard(freed)
        if not self.pages:
            self.release()

    def run_freed(self, addr: int, runs: list[PageRun], idx: list[int]) -> None:
        """:meth:`pages_freed` of the pages ``(runs[k], idx[k])`` mapped at consecutive
        addresses from ``addr``."""
        self.pages.discard_entries(addr, runs, idx)
        if not self.pages:
            self.release()

    def pages_moved(self, moved: list[tuple[int, int, Page]]) -> None:
        """mremap() moved some of our pages to new CPU addresses (old, new, page).

        Kernel: nothing happens to the device page: mm/mremap.c move_ptes() moves the
        device-private swap entry as it is and the page's zone_device_data (the zdd) does
        not record an address. Only the model's address-keyed bookkeeping follows.
        """
        self.pages.move(moved)

    def release(self) -> None:
        """Return the memory and drop the pagemap reference (once).

        Kernel: drm_pagemap_zdd_destroy() -> devmem_release (xe_svm_devmem_release).
        """
        if self.released:
            return
        self.released = True
        vram = self.vram        # the bytes go back to the VRAM (out of its LRU)
        if vram.allocations.pop(self.id, None) is not None:
            vram.used -= self.size
        zdd = self.zdd
        if zdd is not None and not zdd.detached:
            zdd.page_free(zdd.pages)     # the zdd's last put drops the pagemap


class Vram:
    """One VRAM tile's memory.

    Kernel: struct xe_vram_region + the TTM VRAM manager's capacity. ``tile`` is the
    tile it belongs to (region instance ``tile + 1``, xe_tile_to_vr()); ``name`` is how
    range locations name it (the device's name; ``<device>.tile<k>`` on a device with
    more than one tile).
    """

    def __init__(self, device: Device, capacity: int, stats: Counter[str] | None = None,
                 tile: int = 0, name: str | None = None) -> None:
        if capacity < 0:
            raise XeError(errno.EINVAL, f"VRAM capacity {capacity} is negative")
        self.device = device
        self.tile = tile
        self.name = name if name is not None else device.name
        self.capacity = capacity
        self.used = 0
        self.allocations: OrderedDict[int, VramAllocation] = OrderedDict()
        self.stats: Counter[str] = stats if stats is not None else Counter()

    @property
    def device_name(self) -> str:
        return self.device.name

    @property
    def free_bytes(self) -> int:
        return self.capacity - self.used

    def touch(self, alloc: VramAllocation) -> None:
        """Mark an allocation most recently used (TTM LRU bump)."""
        if alloc.id in self.allocations:
            self.allocations.move_to_end(alloc.id)

    def alloc(self, mm: Mm, start: int, size: int,
              keep: tuple[VramAllocation, ...] = ()) -> VramAllocation:
        """Reserve ``size`` bytes, evicting LRU allocations under pressure.

        Kernel: xe_bo_create_locked(VRAM) in xe_drm_pagemap_populate_mm(), with
        TTM evicting other SVM allocations through xe_svm_bo_evict().

        Raises XeError(ENOMEM) when even after eviction the memory does not fit.
        """
        if size > self.capacity:
            raise XeError(errno.ENOMEM, f"{self.device_name}: {size:#x} bytes exceed the "
                          f"VRAM capacity {self.capacity:#x}")
        # Evict from the least recently used end until the request fits, one victim at a
        # time: each is the first allocation in LRU order not kept and not tried yet.
        # (Copying the whole LRU for each allocation under pressure made a long run
        # quadratic in the number of allocations.) The same victims, in the same order, as
        # walking a snapshot taken here: nothing reorders the LRU while it runs, evicting
        # one allocation releases no other (only its own last page frees it) and makes
        # none.
        tried: set[int] = set()
        allocations = self.allocations
        while self.capacity - self.used < size:
            victim = next((v for v in allocations.values()
                           if v.id not in tried and v not in keep), None)
            if victim is None:
                break
            tried.add(victim.id)
            evict_to_ram(victim)
            self.stats["evictions_pressure"] += 1
        if self.capacity - self.used < size:
            raise XeError(errno.ENOMEM, f"{self.device_name}: out of VRAM ({self.free_bytes:#x} "
                          f"free, {size:#x} needed)")
        a = VramAllocation(self, mm, start, size)
        self.allocations[a.id] = a
        self.used += size
        return a

    def resident_pages(self) -> int:
        return sum(len(a.pages) for a in self.allocations.values())



def _contiguous(addrs: list[int]) -> list[tuple[int, int]]:
    """The spans ``[start, end)`` of contiguous pages among the sorted ``addrs``."""
    spans: list[tuple[int, int]] = []
    for a in addrs:
        if spans and spans[-1][1] == a:
            spans[-1] = (spans[-1][0], a + PAGE_SIZE)
        else:
            spans.append((a, a + PAGE_SIZE))
    return spans


def _move_to_system(mm: Mm, alloc: VramAllocation, addrs: list[int] | None = None, *,
                    runs: list[tuple[int, int]] | None = None) -> int:
    """Copy device pages of ``alloc`` to new system pages: those at the distinct ``addrs``,
    or every page of ``runs`` (``alloc.pages.runs()``: an allocation without pages
    outside its span, as an eviction of the whole allocation asks; the runs are the
    notifier spans as they are).
    """
    pages = alloc.pages
    if runs is None:            # while every page is at its own slot, as runs too
        runs = pages.runs_among(addrs or [])
    # One notifier call per contiguous run, before the page table changes.
    if runs is not None:
        if not runs:
            return 0
        start = pages.start
        for i, j in runs:
            mm.invalidate(start + (i << PAGE_SHIFT), start + (j << PAGE_SHIFT),
                          NotifyEvent.MIGRATE, alloc.owner)
        # The pages still there after the notifiers ran go: a system copy replaces each
        # one the page table still maps, then the device pages are freed in address order.
        at, rs, xs = pages.entries_in_runs(runs)
        mm.migrate_entries_to_system(at, rs, xs)
        moved = len(at)
        # pages_freed() of every page left in the runs, each still at its own slot (the
        # copy leaves the allocation's slots alone)
        if not pages.clear_runs(runs):
            alloc.release()
    else:                       # a page lives outside the span: address by address
        addrs = [a for a, _ in pages.live(addrs or [])]
        if not addrs:
            return 0
        for s, e in _contiguous(addrs):
            mm.invalidate(s, e, NotifyEvent.MIGRATE, alloc.owner)
        live = pages.live(addrs)
        mm.migrate_pages_to_system(live)
        moved = len(live)
        alloc.pages_freed(live)
    st = alloc.vram.stats
    st["migrations_to_system"] += 1
    st["bytes_to_system"] += moved * PAGE_SIZE
    return moved


def migrate_to_ram(mm: Mm, addr: int, alloc: VramAllocation) -> None:
    """CPU fault on a device page: bring the allocation's window back.

    Kernel: drm_pagemap_migrate_to_ram() -> __drm_pagemap_migrate_to_ram()
    (dev_pagemap_ops.migrate_to_ram): the window is ``addr`` aligned down to the
    allocation size, clamped to the CPU VMA; migrate_vma_setup() collects the owner's
    device pages in it, but drm_pagemap_migrate_populate_ram_pfn() gives a system page
    only to those whose zone_device_data is the fault page's zdd, so only the pages of
    the faulting allocation move (the others are restored by migrate_vma_finalize()).
    v6.18 and mainline agree on this. (The kernel returns early while the allocation's
    timeslice runs; the callers wait it out first: Mm._cpu_fault() for the CPU,
    :meth:`pysvm.mm.mmap.Mm.hmm_range_fault` for a device.) Failure would be SIGBUS.
    """
    vma = mm.find_vma(addr)
    if vma is None:
        raise XeError(errno.EFAULT, f"CPU fault at {addr:#x}: no CPU VMA (SIGBUS)")
    size = max(alloc.size, PAGE_SIZE)
    start = max(addr - addr % size, vma.start)
    end = min(addr - addr % size + size, vma.end)
    rs = mm.slots(start, end)[0]
    r0 = rs[0] if rs else None
    if (r0 is not None and r0.alloc is alloc and rs.count(r0) == len(rs)
            and not alloc.pages.moved_away()):
        # The common case: the window is all this allocation's pages, each at its slot
        # or gone from it: the slots tell the runs without a look per address.
        _move_to_system(mm, alloc, runs=alloc.pages.runs_in(start, end))
        return
    addrs = [a for a, r in zip(range(start, end, PAGE_SIZE), rs, strict=False)
             if r is not None and r.alloc is alloc]
    if not addrs:               # the page moved meanwhile: still make progress
        addrs = [addr - addr % PAGE_SIZE]
    _move_to_system(mm, alloc, addrs)


def evict_to_ram(alloc: VramAllocation) -> int:
    """Move every remaining page of ``alloc`` to system memory.

    Kernel: drm_pagemap_evict_to_ram() (up to 3 attempts until "detached";
    here one attempt always detaches). Returns the number of pages moved.

    Raises XeError(EFAULT) when the owning address space is gone.
    """
    if alloc.released:
        return 0
    pages = alloc.pages
    runs = pages.runs()         # [] exactly when no page is left
    if runs == []:
        return 0
    mm = alloc.mm
    if not mm.alive:
        raise XeError(errno.EFAULT, "evict: address space is gone")
    if runs is None:            # a page lives outside the span: the general walk
        n = _move_to_system(mm, alloc, list(pages))
    else:                       # the slots give the runs directly
        n = _move_to_system(mm, alloc, runs=runs)
    # _move_to_system() releases the allocation exactly when its last page went, so an
    # unreleased one still has pages.
    if not alloc.released:      # pragma: no cover - defensive: the model always detaches
        raise XeError(errno.EBUSY, f"evict: {alloc!r} still has pages")
    return n


def evict_range(mm: Mm, start: int, end: int) -> int:
    """Move every device page in ``[start, end)`` back to system memory.

    Kernel: drm_gpusvm_range_evict() (hmm_range_fault with no device owner,
    which migrates every device-private page to RAM).

    Time: that hmm_range_fault() goes through each page's migrate_to_ram, so an
    allocation whose atomic timeslice still runs is waited for like a CPU fault
    (:meth:`VramAllocation.wait_timeslice`; __drm_pagemap_migrate_to_ram() declines until
    the expiration). drm_gpusvm_range_evict() stops repeating the walk once jiffies are
    past HMM_RANGE_DEFAULT_TIMEOUT from its start (-EBUSY, which the xe_svm.c callers
    ignore): allocations after the one whose migration ended past it stay in VRAM.
    """
    by_alloc: dict[int, tuple[VramAllocation, list[int]]] = {}
    for a, r in zip(range(start, end, PAGE_SIZE), mm.slots(start, end)[0], strict=False):
        al = r.alloc if r is not None else None
        if isinstance(al, VramAllocation):
            by_alloc.setdefault(al.id, (al, []))[1].append(a)
    moved = 0
    started: int | None = None
    for v, addrs in by_alloc.values():
        if started is None:
            started = v.clock_ms()
        v.wait_timeslice()
        moved += _move_to_system(mm, v, addrs)
        if v.clock_ms() - started > HMM_RANGE_DEFAULT_TIMEOUT_MS:
            break
    return moved


