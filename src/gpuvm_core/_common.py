"""Errors and argument checks shared by the compiled core and the reference.

Every refused request raises :class:`GpuvmError`, an :class:`OSError` whose
``errno`` is the kernel's errno for the same refusal, so callers can write
``except GpuvmError as e: if e.errno == errno.EEXIST: ...`` exactly as driver
code checks ``-EEXIST``.
"""

from __future__ import annotations

import errno as _errno
import operator
from enum import IntEnum
from typing import Protocol, TypeVar

__all__ = ["GpuvmError", "OpType", "SmSteps", "U64_MAX", "OBJ_MAX", "check_u64", "check_obj"]

U64_MAX = (1 << 64) - 1
#: Object handles are stored as int64 in the compiled core (-1 = no object).
OBJ_MAX = (1 << 63) - 1


class OpType(IntEnum):
    """Kind of a split/merge operation. Kernel: enum drm_gpuva_op_type."""

    MAP = 0
    REMAP = 1
    UNMAP = 2
    PREFETCH = 3
    DRIVER = 4


_MapT = TypeVar("_MapT", contravariant=True)
_RemapT = TypeVar("_RemapT", contravariant=True)
_UnmapT = TypeVar("_UnmapT", contravariant=True)


class SmSteps(Protocol[_MapT, _RemapT, _UnmapT]):
    """The callbacks of ``sm_map`` / ``sm_unmap``, generic in the op classes of the VM
    that calls them (the compiled core's ``SmSteps[OpMap, OpRemap, OpUnmap]``, the
    reference's ``SmSteps[RefOpMap, RefOpRemap, RefOpUnmap]``). Return values are
    ignored; to abort, raise.

    Kernel: the sm_step_map / sm_step_remap / sm_step_unmap members of struct
    drm_gpuvm_ops.
    """

    def sm_step_map(self, op: _MapT, /) -> object:
        """Kernel: drm_gpuvm_ops.sm_step_map."""

    def sm_step_remap(self, op: _RemapT, /) -> object:
        """Kernel: drm_gpuvm_ops.sm_step_remap."""

    def sm_step_unmap(self, op: _UnmapT, /) -> object:
        """Kernel: drm_gpuvm_ops.sm_step_unmap."""


class GpuvmError(OSError):
    """A request the kernel would refuse; ``.errno`` is the kernel's errno.

    Kernel: the negative errno returned by drm_gpuvm functions (``-EINVAL``,
    ``-EEXIST``, ...). The VM is unchanged when this is raised.
    """

    def __init__(self, err: int, message: str, index: int | None = None) -> None:
        super().__init__(err, message)
        #: For batch calls: the index of the refused request, else ``None``.
        self.index = index

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno or 0, str(self.errno))
        where = "" if self.index is None else f" (request {self.index})"
        return f"[{name}] {self.strerror}{where}"


def check_u64(value: object, what: str) -> int:
    """Return ``value`` as an int in [0, 2**64) or raise.

    Non-integers (``bool`` included) raise ``TypeError``; integers outside u64
    raise :class:`GpuvmError` with ``EINVAL``. Nothing is ever truncated.
    Kernel counterpart: none -- every drm_gpuvm argument is a ``u64`` by type,
    so this is where Python's unbounded ints are held to that type.
    """
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, not bool")
    v = operator.index(value)  # type: ignore[arg-type]
    if v < 0 or v > U64_MAX:
        raise GpuvmError(_errno.EINVAL, f"{what}={v} is outside the unsigned 64-bit range")
    return v


def check_obj(value: object) -> int | None:
    """Return ``value`` as an object handle (``None`` or an int in [0, 2**63)) or raise.

    Kernel counterpart: the ``struct drm_gem_object *`` of a VA or request
    (``None`` is a NULL object). Handles are compared by value, as the kernel
    compares pointers; the compiled core stores them as int64, hence the bound.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("obj must be None or an integer handle, not bool")
    v = operator.index(value)  # type: ignore[arg-type]
    if v < 0 or v > OBJ_MAX:
        raise GpuvmError(_errno.EINVAL, f"obj={v} is outside [0, 2**63): handles are int64")
    return v
