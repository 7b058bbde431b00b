"""Non-overlapping intervals ``[start, end)`` mapped to objects, on the compiled VA tree.

Kernel: the interval trees the MMU notifiers and drm_gpusvm keep
(include/linux/interval_tree_generic.h: INTERVAL_TREE_DEFINE, used by
mm/mmu_notifier.c for interval notifiers and by drivers/gpu/drm/drm_gpusvm.c for
notifiers and ranges). The model stores the intervals in :class:`gpuvm_core.GpuVm`
(drm_gpuvm.c's own augmented rbtree, compiled), so a lookup is one call into C:
``find_first`` for the first interval overlapping a span, ``va_range`` for all of
them in address order. The objects themselves live in a dict keyed by start.

Intervals must not overlap (the users guarantee it: notifiers are aligned,
fixed-size windows; ranges in one notifier never overlap) and must lie in
``[0, 2**64 - 1)``.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Final, Generic, TypeVar

from gpuvm_core import GpuVa, GpuVm

__all__ = ["IntervalTree"]

T = TypeVar("T")

_SPAN: Final = (1 << 64) - 1

_addr = operator.attrgetter("addr")     # a tree node's start, read in C


class IntervalTree(Generic[T]):
    """``[start, end) -> item`` for non-overlapping intervals."""

    __slots__ = ("_vm", "_items", "_nodes", "_find_first", "_hit_start", "_hit_end", "_hit")

    def __init__(self) -> None:
        self._vm = GpuVm(0, _SPAN)
        self._items: dict[int, T] = {}          # start -> item
        self._nodes: dict[int, GpuVa] = {}      # start -> its node in the tree
        self._find_first = self._vm.find_first  # the hot lookup, bound once
        # The interval the last lookup found (empty: none): consecutive lookups mostly
        # land in the same notifier, range or VMA, and an address inside it needs no
        # search (the intervals do not overlap, so it is the lowest one overlapping).
        self._hit_start = 0
        self._hit_end = 0
        self._hit: T | None = None

    def __len__(self) -> int:
        return len(self._items)

    def insert(self, start: int, end: int, item: T) -> None:
        """Add ``item`` over ``[start, end)`` (raises gpuvm_core.GpuvmError(EEXIST) on overlap)."""
        va = self._vm.insert(start, end - start)
        self._items[start] = item
        self._nodes[start] = va

    def get(self, start: int) -> T | None:
        """The item whose interval starts exactly at ``start``."""
        return self._items.get(start)

    def pop(self, start: int) -> T | None:
        """Remove and return the item starting at ``start`` (None: there is none)."""
        if start not in self._items:
            return None
        if start == self._hit_start:
            self._hit_start = self._hit_end = 0
            self._hit = None
        self._vm.remove(self._nodes.pop(start))
        return self._items.pop(start)

    def first(self, start: int, end: int) -> T | None:
        """The lowest item overlapping ``[start, end)``. Kernel: interval_tree_iter_first()."""
        if end > _SPAN:
            end = _SPAN
        if end <= start:
            return None
        if self._hit_start <= start < self._hit_end:
            return self._hit
        va = self._find_first(start, end - start)
        if va is None:
            return None
        s = va.addr
        item = self._items[s]
        self._hit_start = s
        self._hit_end = va.end
        self._hit = item
        return item

    def overlapping(self, start: int, end: int) -> list[T]:
        """Every item overlapping ``[start, end)`` in address order (a snapshot)."""
        if end > _SPAN:
            end = _SPAN
        if end <= start:
            return []
        if self._hit_start <= start and end <= self._hit_end:
            return [self._hit]  # type: ignore[list-item]
        va = self._find_first(start, end - start)
        if va is None:
            return []
        if va.end >= end:       # the common case: one interval covers the rest of the span
            return [self._items[va.addr]]
        return list(map(self._items.__getitem__, map(_addr, self._vm.va_range(start, end - start))))

    def values(self) -> Iterator[T]:
        """Every item in address order (a snapshot)."""
        return iter(list(map(self._items.__getitem__, map(_addr, self._vm))))
