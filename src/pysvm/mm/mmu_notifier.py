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
from typing import Any, NamedTuple

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


class NotifierRange(NamedTuple):
    """One invalidation: ``[start, end)`` and its reason (immutable).

    Kernel: struct mmu_notifier_range. A named tuple: one is made per invalidation,
    and a tuple is several times cheaper to build than a frozen dataclass.
    """

    start: int
    end: int
    event: NotifyEvent
    owner: Any = None       # (Any, not object: mypyc resolves a NamedTuple's annotations by name)


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
