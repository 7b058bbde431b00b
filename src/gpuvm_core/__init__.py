"""gpuvm_core: the Linux kernel's DRM GPUVM VA tree and split/merge op generator.

``GpuVm`` is the compiled core; ``RefGpuVm`` (in :mod:`gpuvm_core._reference`)
is a short pure-Python model of the same API used as the test oracle.
Kernel: drivers/gpu/drm/drm_gpuvm.c.
"""

from ._common import GpuvmError, OpType
from ._reference import RefGpuVa, RefGpuVm

# TEMPORARY (bootstrap): until the compiled core lands, GpuVm is the reference.
# The core's author replaces these two lines with `from ._core import ...`.
GpuVm = RefGpuVm
GpuVa = RefGpuVa

__all__ = ["GpuVa", "GpuVm", "GpuvmError", "OpType", "RefGpuVa", "RefGpuVm"]
