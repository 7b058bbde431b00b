"""Reference VMs with planted off-by-one bugs, to prove the harness finds bugs.

Each class is :class:`RefGpuVm` with exactly one classic mistake, chosen so
that together they need different parts of the generator to show up:

* :class:`OffByOneVm` -- ``__drm_gpuvm_sm_map()``, a request strictly inside
  one VA (split into ``prev`` and ``next``): ``next`` gets an offset one too
  high (``offset + ls_range + req_range + 1``). Needs a middle split.
* :class:`EndBoundVm` -- ``drm_gpuvm_in_mm_range()`` with ``end < mm_end``
  instead of ``end <= mm_end``: a request ending exactly at the VM's end is
  refused. Needs a request that touches the top of the VM.
* :class:`TouchingVm` -- the range walk (``drm_gpuvm_for_each_va_range``)
  starts one address low, so a VA that *ends* exactly where the request
  starts is treated as overlapping it. Needs adjacent VAs.
* :class:`ZeroLastVm` -- a zero-length VA's inclusive last address taken as
  ``addr`` instead of ``addr - 1`` (``addr + max(range, 1) - 1``), which
  loses the kernel's wrap-around: a zero-length VA at address 0 has last
  address 2^64-1 in the interval tree and so meets every later request. Needs
  a zero-length map mid-sequence (rare in the generator: see test timings).

Kernel: drivers/gpu/drm/drm_gpuvm.c (the functions named above).
"""

from __future__ import annotations

from collections.abc import Iterator

from gpuvm_core._reference import RefGpuVa, RefGpuVm, RefOpRemap, RefOps

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


class EndBoundVm(RefGpuVm):
    """RefGpuVm refusing requests that end exactly at the VM's end (``<`` for ``<=``)."""

    def _range_valid(self, addr: int, range: int) -> bool:  # noqa: A002
        if range and addr + range == (self.mm_start + self.mm_range) & MASK:
            return False
        return super()._range_valid(addr, range)


class TouchingVm(RefGpuVm):
    """RefGpuVm whose range walk also visits the VA ending exactly at the request's start."""

    def _va_range(self, start: int, end: int) -> Iterator[RefGpuVa]:
        return super()._va_range((start - 1) & MASK if start else start, end)


class _ClampedZeroVa(RefGpuVa):
    __slots__ = ()

    @property
    def last(self) -> int:
        return (self.addr + max(self.range, 1) - 1) & MASK


class ZeroLastVm(RefGpuVm):
    """RefGpuVm giving zero-length VAs the last address ``addr`` (no wrap below ``addr``)."""

    def _link(self, va: RefGpuVa) -> None:
        if va.range == 0 and type(va) is RefGpuVa:
            va.__class__ = _ClampedZeroVa
        super()._link(va)


#: every planted class, by the name the tests use
PLANTED: dict[str, type[RefGpuVm]] = {
    "middle-split-offset": OffByOneVm,
    "vm-end-bound": EndBoundVm,
    "touching-neighbour": TouchingVm,
    "zero-length-last": ZeroLastVm,
}
