"""The model's virtual clock: the jiffies the kernel reads, advanced only by the trace.

Kernel: get_jiffies_64() (include/linux/jiffies.h) where drm_pagemap.c reads it:
drm_pagemap_migrate_to_devmem() stores ``timeslice_expiration = now + timeslice``,
__drm_pagemap_migrate_to_ram() declines to migrate while ``now`` is before it. The model
counts whole milliseconds (msecs_to_jiffies() with HZ=1000). Nothing here reads wall
time: the clock starts at 0 and moves only when a trace event advances it (the
``advance`` event) or when a CPU access waits out a timeslice, so the same trace always
gives the same output.
"""

from __future__ import annotations

import errno
from typing import Final

from pysvm.errors import XeError

__all__ = ["Clock", "MAX_ADVANCE_MS"]

#: The most one ``advance`` may move the clock (about 68 years in ms; keeps it in u64).
MAX_ADVANCE_MS: Final = 1 << 41


class Clock:
    """Milliseconds since the run started. Kernel: get_jiffies_64() at HZ=1000."""

    __slots__ = ("now_ms", "horizon_ms")

    def __init__(self) -> None:
        self.now_ms = 0
        #: The latest deadline ever noted (:meth:`note_deadline`): while ``now_ms`` is past
        #: it, no timeslice can still be running and callers may skip looking for one.
        self.horizon_ms = 0

    def note_deadline(self, t_ms: int) -> int:
        """Record a deadline (a timeslice expiration) and return it."""
        if t_ms > self.horizon_ms:
            self.horizon_ms = t_ms
        return t_ms

    def advance(self, ms: int) -> int:
        """Move time forward by ``ms`` (>= 0); returns the new time."""
        if ms < 0 or ms > MAX_ADVANCE_MS:
            raise XeError(errno.EINVAL, f"clock: cannot advance by {ms} ms "
                          f"(0 <= ms <= {MAX_ADVANCE_MS})")
        self.now_ms += ms
        return self.now_ms

    def before(self, t_ms: int) -> bool:
        """Kernel: time_before64(get_jiffies_64(), t)."""
        return self.now_ms < t_ms

    def wait_until(self, t_ms: int) -> int:
        """Let time pass until ``t_ms``; returns how many ms that took (0 if already past)."""
        waited = max(0, t_ms - self.now_ms)
        self.now_ms += waited
        return waited
