"""Per-event counter deltas for the timeline panel (shared by the simulator and the plots).

Kernel: none (bookkeeping of the summary counters after each event).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TIMELINE_COUNTERS", "TimelinePoint"]

#: The summary counters a timeline shows.
TIMELINE_COUNTERS = ("faults", "retries", "migrations_to_vram", "migrations_to_system")


@dataclass
class TimelinePoint:
    """Per-event counters for the timeline panel (deltas, not totals).

    Kernel: none (bookkeeping of the engine's outputs).
    """

    i: int
    ev: str
    result: str
    faults: int = 0
    retries: int = 0
    migrations_to_vram: int = 0
    migrations_to_system: int = 0
