"""What one GPU fault cost, and the errors a fault ends in.

Kernel: the per-fault XE_GT_STATS_ID_SVM_* counters that xe_svm_handle_pagefault()
(drivers/gpu/drm/xe/xe_svm.c) adds to, and the errno it returns; the fault itself is
struct xe_pagefault (drivers/gpu/drm/xe/xe_pagefault_types.h).

This module is plain Python in every install (see :mod:`pysvm.compiled`): an
``OSError`` subclass cannot be a compiled class, and callers catch, subclass and
pickle these errors like any other ``XeError``.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from pysvm.errors import XeError

__all__ = ["FaultStats", "FaultError", "FaultLivelockError"]


class FaultError(XeError):
    """A GPU fault the handler could not service: the errno, a message and its FaultStats."""

    def __init__(self, err: int, message: str, stats: FaultStats) -> None:
        super().__init__(err, message)
        self.stats = stats


class FaultLivelockError(FaultError):
    """The caller-set livelock guard stopped a fault loop that did not converge."""

    def __init__(self, addr: int, iterations: int, stats: FaultStats) -> None:
        super().__init__(errno.ELOOP, f"livelock guard: GPU fault at {addr:#x} still not "
                         f"serviced after {iterations} loop iterations (the kernel would keep "
                         f"retrying); reasons: {stats.reasons[-8:]}", stats)


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
