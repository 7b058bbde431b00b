"""What one GPU fault cost.

Kernel: the per-fault XE_GT_STATS_ID_SVM_* counters that xe_svm_handle_pagefault()
(drivers/gpu/drm/xe/xe_svm.c) adds to, and the errno it returns; the fault itself is
struct xe_pagefault (drivers/gpu/drm/xe/xe_pagefault_types.h).

The errors a fault ends in are in :mod:`pysvm.xe.pagefault_errors`.
"""

from __future__ import annotations

from typing import Final

__all__ = ["FaultStats"]

_FIELDS: Final = ("addr", "atomic", "outer_iterations", "inner_iterations", "migrations",
                  "migration_failures", "get_pages_failures", "bind_eagain", "gc_eagain",
                  "timeslice_ms", "result", "reasons")


class FaultStats:
    """What one GPU fault cost. Kernel: the XE_GT_STATS_ID_SVM_* counters, per fault.

    A plain class with its own ``__init__`` rather than a dataclass: one is made per GPU
    fault, and in a compiled install a dataclass's generated ``__init__`` would be the
    one interpreted function on that path.
    """

    __slots__ = _FIELDS

    def __init__(self, addr: int, atomic: bool) -> None:
        self.addr = addr
        self.atomic = atomic
        self.outer_iterations = 0
        self.inner_iterations = 0
        self.migrations = 0
        self.migration_failures = 0
        self.get_pages_failures = 0
        self.bind_eagain = 0
        self.gc_eagain = 0
        self.timeslice_ms = 0
        self.result = 0
        self.reasons: list[str] = []

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in _FIELDS)
        return f"FaultStats({fields})"

    @property
    def retries(self) -> int:
        """Loop iterations beyond the first (outer and inner)."""
        outer = self.outer_iterations - 1
        inner = self.inner_iterations - self.outer_iterations
        return (outer if outer > 0 else 0) + (inner if inner > 0 else 0)
