"""A reference VM with a planted off-by-one, to prove the harness finds bugs.

Kernel: __drm_gpuvm_sm_map() -- the case where the request falls strictly
inside one VA, which is split into a ``prev`` and a ``next`` piece. The
planted bug gives ``next`` an offset one too high (a classic off-by-one in
``offset + ls_range + req_range``).
"""

from __future__ import annotations

from gpuvm_core._reference import RefGpuVm, RefOpRemap, RefOps

MASK = (1 << 64) - 1


class OffByOneVm(RefGpuVm):
    """RefGpuVm whose map walker mis-computes the upper piece's offset on a middle split."""

    def _sm_map(self, req_addr: int, req_range: int, req_obj: int | None, req_offset: int,
                madvise: bool) -> RefOps:
        ops = super()._sm_map(req_addr, req_range, req_obj, req_offset, madvise)
        if not madvise:
            for op in ops:
                if isinstance(op, RefOpRemap) and op.prev is not None and op.next is not None:
                    op.next.offset = (op.next.offset + 1) & MASK
        return ops
