"""What one GPU fault cost.

Kernel: the per-fault XE_GT_STATS_ID_SVM_* counters that xe_svm_handle_pagefault()
(drivers/gpu/drm/xe/xe_svm.c) adds to, and the errno it returns; the fault itself is
struct xe_pagefault (drivers/gpu/drm/xe/xe_pagefault_types.h).

The errors a fault ends in are in :mod:`pysvm.xe.pagefault_errors`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FaultStats"]


@dataclass(slots=True)
class FaultStats:
    """What one GPU fault cost. Kernel: the XE_GT_STATS_ID_SVM_* counters, per fault."""

    addr: int
    atomic: bool
    outer_iterations: int = 0
    inner_iterations: int = 0
    migrations: int = 0
    migration_failures: int = 0
    get_pages_failures: int = 0
    bind_eagain: int = 0
    gc_eagain: int = 0
    timeslice_ms: int = 0
    result: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def retries(self) -> int:
        """Loop iterations beyond the first (outer and inner)."""
        outer = self.outer_iterations - 1
        inner = self.inner_iterations - self.outer_iterations
        return (outer if outer > 0 else 0) + (inner if inner > 0 else 0)
