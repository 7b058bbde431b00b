"""GPU SVM notifiers: fixed-size, aligned intervals that hold SVM ranges.

Kernel: struct drm_gpusvm_notifier and drm_gpusvm_notifier_{alloc,insert,
remove,find,invalidate}() in drivers/gpu/drm/drm_gpusvm.c.

A notifier covers ``[align_down(addr, size), align_up(addr+1, size))`` for the
first fault address that needed it, registers one MMU interval notifier on the
process address space for that interval, and keeps its ranges ordered by
address (the kernel's interval tree + list). It is removed, and its MMU
interval notifier unregistered, when its last range is removed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pysvm.mm.interval_tree import IntervalTree
from pysvm.mm.mmap import Mm
from pysvm.mm.mmu_notifier import IntervalNotifier, NotifierRange

if TYPE_CHECKING:
    from pysvm.drm.gpusvm import SvmRange

__all__ = ["SvmNotifier"]


class SvmNotifier:
    """One drm_gpusvm notifier.

    Kernel: struct drm_gpusvm_notifier.
    """

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end
        self._ranges: IntervalTree[SvmRange] = IntervalTree()
        self.mmu: IntervalNotifier | None = None
        self.removed = False

    def __repr__(self) -> str:
        return f"<SvmNotifier [{self.start:#x}, {self.end:#x}) {len(self._ranges)} ranges>"

    def __len__(self) -> int:
        return len(self._ranges)

    def register(self, mm: Mm,
                 invalidate: Callable[[SvmNotifier, NotifierRange], None]) -> None:
        """Hook this notifier into the address space.

        Kernel: mmu_interval_notifier_insert() in drm_gpusvm_range_find_or_insert();
        the callback is drm_gpusvm_notifier_invalidate() which calls the
        driver's ops->invalidate with the notifier lock held.
        """
        def cb(_mni: IntervalNotifier, nrange: NotifierRange, _seq: int) -> None:
            invalidate(self, nrange)
        self.mmu = mm.interval_notifier_insert(self.start, self.end, cb)

    def unregister(self, mm: Mm) -> None:
        """Kernel: mmu_interval_notifier_remove()."""
        if self.mmu is not None:
            mm.interval_notifier_remove(self.mmu)
        self.removed = True

    def read_begin(self) -> int:
        """Kernel: mmu_interval_read_begin() on this notifier."""
        return self.mmu.read_begin() if self.mmu is not None else 0

    def read_retry(self, seq: int) -> bool:
        """Kernel: mmu_interval_read_retry() on this notifier."""
        return self.mmu.read_retry(seq) if self.mmu is not None else False

    # ----------------------------------------------------------- ranges
    def insert(self, rng: SvmRange) -> None:
        """Kernel: drm_gpusvm_range_insert()."""
        self._ranges.insert(rng.start, rng.end, rng)

    def remove(self, rng: SvmRange) -> None:
        """Kernel: __drm_gpusvm_range_remove()."""
        if self._ranges.get(rng.start) is rng:
            self._ranges.pop(rng.start)

    def ranges(self, start: int, end: int) -> Iterator[SvmRange]:
        """Ranges intersecting ``[start, end)`` in address order (a snapshot).

        Kernel: drm_gpusvm_for_each_range_safe(). O(log n + k).
        """
        return iter(self._ranges.overlapping(start, end))

    def ranges_list(self, start: int, end: int) -> list[SvmRange]:
        """:meth:`ranges` as a list (a snapshot; empty when none intersects)."""
        return self._ranges.overlapping(start, end)

    def find(self, start: int, end: int) -> SvmRange | None:
        """First range intersecting ``[start, end)``. Kernel: drm_gpusvm_range_find()."""
        return self._ranges.first(start, end)
