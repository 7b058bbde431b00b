"""Errors raised by the Xe model: an OSError carrying the kernel's errno.

Kernel: the negative errno values returned by xe_vm_madvise_ioctl(),
xe_svm_handle_pagefault(), drm_pagemap_*() and friends.
"""

from __future__ import annotations

import errno as _errno

__all__ = ["PagemapUseAfterFree", "XeError", "errno_name"]


#: Numbers with two names where Python's table picks the one the kernel does
#: not use: the kernel returns EOPNOTSUPP (95; ENOTSUP is its libc alias) and
#: EDEADLK (35; EDEADLOCK is the alias).
_KERNEL_NAMES = {_errno.EOPNOTSUPP: "EOPNOTSUPP", _errno.EDEADLK: "EDEADLK"}


def errno_name(err: int) -> str:
    """``errno.EINVAL`` -> ``"EINVAL"``: the kernel's name, as trace output uses it.

    An unknown number gives ``"E<number>"``.
    """
    if err in _KERNEL_NAMES:
        return _KERNEL_NAMES[err]
    return _errno.errorcode.get(err, f"E{err}")


class XeError(OSError):
    """A refusal with the kernel's errno and a message that says what was wrong."""

    def __init__(self, err: int, message: str) -> None:
        super().__init__(err, message)
        #: Result fields reported with the refusal (a failed ``gpu_access`` reports the
        #: faults it took, ``fault_addr`` ...); empty for most refusals.
        self.details: dict[str, object] = {}

    @property
    def name(self) -> str:
        """The errno's kernel name, e.g. ``"EINVAL"``."""
        return errno_name(self.errno or 0)

    def __str__(self) -> str:
        return f"[{self.name}] {self.strerror}"


class PagemapUseAfterFree(RuntimeError):
    """A get/put/populate on a pagemap (or device, module) whose last reference is gone.

    Kernel: a refcount_t saturation warning or a use after free; never a silent success.
    """
