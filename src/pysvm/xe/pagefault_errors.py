"""The errors a GPU fault ends in: the kernel's errno with the fault's :class:`FaultStats`.

Kernel: the negative errno xe_svm_handle_pagefault() (drivers/gpu/drm/xe/xe_svm.c)
returns to xe_pagefault_service().

This module stays plain Python in every install (see :mod:`pysvm.compiled`): an
``OSError`` subclass cannot be a compiled class, and callers catch, subclass and pickle
these errors like any other ``XeError``.
"""

from __future__ import annotations

import errno

from pysvm.errors import XeError
from pysvm.xe.pagefault_types import FaultStats

__all__ = ["FaultError", "FaultLivelockError"]


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
