"""gpuvm_core: the Linux kernel's DRM GPUVM VA tree and split/merge op generator.

``GpuVm`` is the compiled core (:mod:`gpuvm_core._core`); ``RefGpuVm`` (in
:mod:`gpuvm_core._reference`) is a short pure-Python model of the same API
used as the test oracle.
Kernel: drivers/gpu/drm/drm_gpuvm.c.
"""

from ._common import GpuvmError, OpType
from ._core import (
    FIND_DTYPE,
    REQ_MADVISE,
    REQ_MAP,
    REQ_UNMAP,
    GpuVa,
    GpuVm,
    OpMap,
    OpPrefetch,
    OpRemap,
    Ops,
    OpUnmap,
)
from ._reference import RefGpuVa, RefGpuVm

__all__ = [
    "FIND_DTYPE",
    "REQ_MADVISE",
    "REQ_MAP",
    "REQ_UNMAP",
    "GpuVa",
    "GpuVm",
    "GpuvmError",
    "OpMap",
    "OpPrefetch",
    "OpRemap",
    "OpType",
    "OpUnmap",
    "Ops",
    "RefGpuVa",
    "RefGpuVm",
]
