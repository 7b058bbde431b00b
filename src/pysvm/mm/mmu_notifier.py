"""MMU interval notifiers: who is told when the CPU page tables change.

Kernel: mm/mmu_notifier.c and include/linux/mmu_notifier.h (enum
mmu_notifier_event, struct mmu_notifier_range, struct mmu_interval_notifier,
mmu_interval_read_begin()/mmu_interval_read_retry()). The address space
(:class:`pysvm.mm.mmap.Mm`) keeps the list and calls them synchronously.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

__all__ = ["Callback", "IntervalNotifier", "NotifierRange", "NotifyEvent"]


class NotifyEvent(IntEnum):
    """Why the CPU page tables change.

    Kernel: enum mmu_notifier_event (include/linux/mmu_notifier.h), same order.
    """

    UNMAP = 0
    CLEAR = 1
    PROTECTION_VMA = 2
    PROTECTION_PAGE = 3
    SOFT_DIRTY = 4
    RELEASE = 5
    MIGRATE = 6
    EXCLUSIVE = 7


class NotifierRange:
    """One invalidation: ``[start, end)`` and its reason (read-only by convention).

    Kernel: struct mmu_notifier_range. A plain class with its own ``__init__``: one is
    made per invalidation, and in a compiled install this builds in C where a named
    tuple's constructor is an interpreted function. Equal when all four fields are.
    """

    __slots__ = ("start", "end", "event", "owner")

    def __init__(self, start: int, end: int, event: NotifyEvent, owner: object = None) -> None:
        self.start = start
        self.end = end
        self.event = event
        self.owner = owner

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NotifierRange):
            return NotImplemented
        return (self.start == other.start and self.end == other.end
                and self.event == other.event and self.owner == other.owner)

    def __hash__(self) -> int:
        return hash((self.start, self.end, self.event))

    def __repr__(self) -> str:
        return (f"NotifierRange(start={self.start:#x}, end={self.end:#x}, "
                f"event={self.event!r}, owner={self.owner!r})")


Callback = Callable[["IntervalNotifier", NotifierRange, int], None]


@dataclass(eq=False, slots=True)
class IntervalNotifier:
    """An MMU interval notifier over ``[start, end)``.

    Kernel: struct mmu_interval_notifier; ``invalidate_seq`` plays the role of
    the sequence used by mmu_interval_read_begin()/mmu_interval_read_retry().
    """

    start: int
    end: int
    callback: Callback
    invalidate_seq: int = 0
    removed: bool = field(default=False)

    def read_begin(self) -> int:
        """Kernel: mmu_interval_read_begin()."""
        return self.invalidate_seq

    def read_retry(self, seq: int) -> bool:
        """Kernel: mmu_interval_read_retry()."""
        return self.invalidate_seq != seq
