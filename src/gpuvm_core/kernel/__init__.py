"""The kernel oracle: a kernel tree's own drm_gpuvm.c, compiled in userspace.

:func:`load_oracle` compiles ``drivers/gpu/drm/drm_gpuvm.c`` and
``lib/rbtree.c`` of a kernel tree (with the tree's own drm_gpuvm.h and
rbtree/interval-tree headers) against the project's shim headers
(:mod:`gpuvm_core.kernel.build`) and returns a :class:`KernelOracle`, a
VM factory whose :class:`KernelGpuVm` answers the core's API
(:mod:`gpuvm_core.kernel.oracle`). The conformance recorder, the fuzz
harness and the benchmarks use it as the third implementation beside the
compiled core and the pure-Python reference; see docs/kernel-oracle.md.

Kernel: drivers/gpu/drm/drm_gpuvm.c, unchanged.
"""

from .build import KERNEL_FILES, KernelTreeError, OracleBuild, build_oracle, cache_root
from .oracle import KernelGpuVa, KernelGpuVm, KernelOp, KernelOps, KernelOracle, load_oracle

__all__ = ["KERNEL_FILES", "KernelGpuVa", "KernelGpuVm", "KernelOp", "KernelOps",
           "KernelOracle", "KernelTreeError", "OracleBuild", "build_oracle", "cache_root",
           "load_oracle"]
