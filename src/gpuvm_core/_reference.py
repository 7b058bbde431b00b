"""A short, obviously-correct pure-Python model of drm_gpuvm.

This is the oracle for the differential tests and the fuzz harness, and the
"hand-written sortedcontainers range map" baseline in the benchmarks. It has
the same public API as :class:`gpuvm_core.GpuVm`, and
follows the kernel's code shape line for line rather than aiming for speed.
docs/gpuvm.md explains the model with diagrams; in short:

* A VM is the span ``[start, start+range)`` holding non-overlapping VAs
  ``(addr, range, obj, offset)`` plus an optional kernel-reserved node that
  blocks requests and is never listed.
* ``sm_map_ops_create`` (drm_gpuvm_sm_map_ops_create) returns the ops that
  make room for a new VA and map it: an ``unmap`` per VA inside the request, a
  ``remap`` (keep the part below and/or above) for a VA sticking out, then the
  ``map`` of the request, last. ``keep`` says the old VA's object and offset
  continue into the request. ``sm_unmap_ops_create``
  (drm_gpuvm_sm_unmap_ops_create) is the same without the map.
  ``madvise_ops_create`` (drm_gpuvm_madvise_ops_create) only splits
  object-less VAs at the request's edges (remap + map pairs, never unmap).
  ``apply`` (drm_gpuva_map / _remap / _unmap) performs them.
* Kernel quirks are kept: ``range == 0`` is a valid request (it splits a VA
  strictly containing ``addr``), all arithmetic wraps at 2**64 (a zero-length
  VA at 0 meets every query), ``find_prev`` / ``find_next`` may return the VA
  at ``start`` / at ``end + 1``.

Data layout
-----------
Every VA is a :class:`RefGpuVa` with an insertion sequence number ``seq``.
The kernel keeps VAs in an interval tree ordered by start address (equal
starts: the later insert goes right) and an address-ordered list. We keep:

* ``_all``: every VA (the kernel-reserved node included) sorted by
  ``(addr, seq)`` -- the kernel's list order;
* ``_main``: the VAs with ``range > 0``, sorted by ``addr``. They never
  overlap, so their inclusive ``last`` grows with ``addr`` and a bisect finds
  the first one reaching a query;
* ``_zero``: the zero-length VAs, whose ``last = addr - 1`` (mod 2**64) breaks
  that monotony. They only come from range-0 requests, so a scan is fine.

``find_first`` is the kernel's interval-tree ``iter_first``: the first VA in
list order whose inclusive interval ``[addr, last]`` intersects the query.

Kernel: drivers/gpu/drm/drm_gpuvm.c (torvalds/linux cb9f145f).
"""

from __future__ import annotations

import errno
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

from sortedcontainers import SortedKeyList

from ._common import GpuvmError, OpType, SmSteps, check_obj, check_u64

__all__ = [
    "RefGpuVm",
    "RefGpuVa",
    "RefOpMap",
    "RefOpRemap",
    "RefOpUnmap",
    "RefOpPrefetch",
    "RefOps",
]

MASK = (1 << 64) - 1


class RefGpuVa:
    """One mapping. Kernel: struct drm_gpuva."""

    __slots__ = ("addr", "range", "obj", "offset", "seq", "vm", "reserved")

    def __init__(self, addr: int, range: int, obj: int | None, offset: int) -> None:  # noqa: A002
        self.addr = addr
        self.range = range
        self.obj = obj
        self.offset = offset
        self.seq = -1
        self.vm: RefGpuVm | None = None
        self.reserved = False

    @property
    def end(self) -> int:
        """Exclusive end, wrapped to u64. Kernel: ``va.addr + va.range``."""
        return (self.addr + self.range) & MASK

    @property
    def last(self) -> int:
        """Inclusive last address used by the interval tree. Kernel: GPUVA_LAST()."""
        return (self.addr + self.range - 1) & MASK

    def as_tuple(self) -> tuple[int, int, int | None, int]:
        """``(addr, range, obj, offset)``: va.va.addr/range, va.gem.obj/offset."""
        return (self.addr, self.range, self.obj, self.offset)

    def __repr__(self) -> str:
        return (f"GpuVa(addr={self.addr:#x}, range={self.range:#x}, obj={self.obj}, "
                f"offset={self.offset:#x})")


# ----------------------------------------------------------------------------
# Operations. Kernel: struct drm_gpuva_op_{map,remap,unmap,prefetch}.


def _va_dict(addr: int, range: int, obj: int | None, offset: int) -> dict[str, Any]:  # noqa: A002
    return {"addr": addr, "range": range, "obj": obj, "offset": offset}


class RefOpMap:
    """Create a VA with exactly these values. Kernel: drm_gpuva_op_map."""

    __slots__ = ("addr", "range", "obj", "offset")
    type = OpType.MAP

    def __init__(self, addr: int, range: int, obj: int | None, offset: int) -> None:  # noqa: A002
        self.addr, self.range, self.obj, self.offset = addr, range, obj, offset

    def as_dict(self) -> dict[str, Any]:
        """The vector-format record of a DRM_GPUVA_OP_MAP op."""
        return {"op": "map", **_va_dict(self.addr, self.range, self.obj, self.offset)}

    def __repr__(self) -> str:
        return f"OpMap({self.as_dict()})"


class RefOpUnmap:
    """Remove ``va``; ``keep`` is the kernel's merge hint. Kernel: drm_gpuva_op_unmap."""

    __slots__ = ("va", "keep")
    type = OpType.UNMAP

    def __init__(self, va: RefGpuVa, keep: bool) -> None:
        self.va, self.keep = va, keep

    addr = property(lambda self: self.va.addr)
    range = property(lambda self: self.va.range)
    obj = property(lambda self: self.va.obj)
    offset = property(lambda self: self.va.offset)

    def _fields(self) -> dict[str, Any]:
        return {**_va_dict(*self.va.as_tuple()), "keep": self.keep}

    def as_dict(self) -> dict[str, Any]:
        """The vector-format record of a DRM_GPUVA_OP_UNMAP op."""
        return {"op": "unmap", **self._fields()}

    def __repr__(self) -> str:
        return f"OpUnmap({self.as_dict()})"


class RefOpRemap:
    """Replace ``unmap.va`` by ``prev`` and/or ``next``. Kernel: drm_gpuva_op_remap."""

    __slots__ = ("prev", "next", "unmap")
    type = OpType.REMAP

    def __init__(self, prev: RefOpMap | None, next: RefOpMap | None, unmap: RefOpUnmap) -> None:  # noqa: A002
        self.prev, self.next, self.unmap = prev, next, unmap

    def as_dict(self) -> dict[str, Any]:
        """The vector-format record of a DRM_GPUVA_OP_REMAP op."""

        def piece(m: RefOpMap | None) -> dict[str, Any] | None:
            return None if m is None else _va_dict(m.addr, m.range, m.obj, m.offset)

        return {
            "op": "remap",
            "prev": piece(self.prev),
            "next": piece(self.next),
            "unmap": self.unmap._fields(),
        }

    def __repr__(self) -> str:
        return f"OpRemap({self.as_dict()})"


class RefOpPrefetch:
    """Prefetch ``va``. Kernel: drm_gpuva_op_prefetch."""

    __slots__ = ("va",)
    type = OpType.PREFETCH

    def __init__(self, va: RefGpuVa) -> None:
        self.va = va

    addr = property(lambda self: self.va.addr)
    range = property(lambda self: self.va.range)
    obj = property(lambda self: self.va.obj)
    offset = property(lambda self: self.va.offset)

    def as_dict(self) -> dict[str, Any]:
        """The record of a DRM_GPUVA_OP_PREFETCH op (same fields as a map)."""
        return {"op": "prefetch", **_va_dict(*self.va.as_tuple())}


RefOp = RefOpMap | RefOpRemap | RefOpUnmap | RefOpPrefetch


class RefOps(list[RefOp]):
    """An op list, valid only while its VM is unchanged. Kernel: drm_gpuva_ops."""

    def __init__(self, vm: RefGpuVm) -> None:
        super().__init__()
        self.vm = vm
        self.generation = vm._generation

    def as_dicts(self) -> list[dict[str, Any]]:
        """Every op's :meth:`as_dict`, in list order (drm_gpuva_for_each_op)."""
        return [op.as_dict() for op in self]


#: The callback object of :meth:`RefGpuVm.sm_map` / ``sm_unmap`` (the shared protocol).
RefSmSteps = SmSteps[RefOpMap, RefOpRemap, RefOpUnmap]


# ----------------------------------------------------------------------------


class RefGpuVm:
    """A GPU VA space. Kernel: struct drm_gpuvm."""

    def __init__(
        self,
        start: int,
        range: int,  # noqa: A002
        *,
        reserve_addr: int = 0,
        reserve_range: int = 0,
    ) -> None:
        self.mm_start = check_u64(start, "start")
        self.mm_range = check_u64(range, "range")
        self.reserve_addr = check_u64(reserve_addr, "reserve_addr")
        self.reserve_range = check_u64(reserve_range, "reserve_range")
        self._seq = itertools.count()
        self._generation = 0
        self._all: SortedKeyList = SortedKeyList(key=lambda va: (va.addr, va.seq))
        self._main: SortedKeyList = SortedKeyList(key=lambda va: va.addr)
        self._zero: list[RefGpuVa] = []
        self._count = 0
        self.kernel_node: RefGpuVa | None = None
        # drm_gpuvm_init(): the reserved node goes in without range_valid()
        # (it may lie outside the VM), and only when its end does not wrap;
        # range_valid() still consults reserve_addr/reserve_range either way.
        if self.reserve_range and self.reserve_addr + self.reserve_range <= MASK:
            node = RefGpuVa(self.reserve_addr, self.reserve_range, None, 0)
            node.reserved = True
            self._link(node)
            self.kernel_node = node

    # -- validity ---------------------------------------------------------

    def range_valid(self, addr: int, range: int) -> bool:  # noqa: A002
        """Kernel: drm_gpuvm_range_valid()."""
        addr, range = check_u64(addr, "addr"), check_u64(range, "range")
        return self._range_valid(addr, range)

    def _range_valid(self, addr: int, range: int) -> bool:  # noqa: A002
        if addr + range > MASK:  # check_add_overflow
            return False
        end = addr + range
        mm_end = (self.mm_start + self.mm_range) & MASK
        if not (addr >= self.mm_start and end <= mm_end):
            return False
        kstart, krange = self.reserve_addr, self.reserve_range
        kend = (kstart + krange) & MASK
        return not (krange and addr < kend and kstart < end)

    # -- the tree -----------------------------------------------------------

    def _iter_first(self, start: int, last: int) -> RefGpuVa | None:
        """First VA in list order whose [addr, last] meets [start, last]."""
        best: RefGpuVa | None = None
        i = self._main.bisect_key_right(start) - 1
        if i >= 0 and self._main[i].last >= start:
            best = self._main[i]
        elif i + 1 < len(self._main):
            best = self._main[i + 1]
        for z in self._zero:
            if z.last >= start and (best is None or (z.addr, z.seq) < (best.addr, best.seq)):
                best = z
        if best is not None and best.addr <= last:
            return best
        return None

    def _link(self, va: RefGpuVa) -> None:
        va.seq = next(self._seq)
        va.vm = self
        self._all.add(va)
        if va.range:
            self._main.add(va)
        else:
            self._zero.append(va)
        if not va.reserved:
            self._count += 1
        self._generation += 1

    def _unlink(self, va: RefGpuVa) -> None:
        self._all.remove(va)
        if va.range:
            self._main.remove(va)
        else:
            self._zero.remove(va)
        va.vm = None
        self._count -= 1
        self._generation += 1

    def _insert(self, va: RefGpuVa) -> None:
        if not self._range_valid(va.addr, va.range):
            raise GpuvmError(
                errno.EINVAL,
                f"[{va.addr:#x}, +{va.range:#x}) is not a valid range for this VM "
                "(overflow, outside the VM, or over the reserved node)",
            )
        if self._iter_first(va.addr, va.last) is not None:
            raise GpuvmError(errno.EEXIST,
                             f"[{va.addr:#x}, +{va.range:#x}) overlaps an existing VA")
        self._link(va)

    def insert(self, addr: int, range: int, obj: int | None = None, offset: int = 0) -> RefGpuVa:  # noqa: A002
        """Kernel: drm_gpuva_insert()."""
        va = RefGpuVa(check_u64(addr, "addr"), check_u64(range, "range"), check_obj(obj),
                      check_u64(offset, "offset"))
        self._insert(va)
        return va

    def remove(self, va: RefGpuVa) -> None:
        """Kernel: drm_gpuva_remove()."""
        if va.reserved:
            raise GpuvmError(errno.EINVAL, "the kernel-reserved node cannot be removed")
        if va.vm is not self:
            raise GpuvmError(errno.ENOENT, f"{va!r} is not in this VM")
        self._unlink(va)

    def find_first(self, addr: int, range: int) -> RefGpuVa | None:  # noqa: A002
        """Kernel: drm_gpuva_find_first()."""
        addr, range = check_u64(addr, "addr"), check_u64(range, "range")
        return self._iter_first(addr, (addr + range - 1) & MASK)

    def find(self, addr: int, range: int) -> RefGpuVa | None:  # noqa: A002
        """Kernel: drm_gpuva_find()."""
        va = self.find_first(addr, range)
        if va is not None and va.addr == addr and va.range == range:
            return va
        return None

    def find_prev(self, start: int) -> RefGpuVa | None:
        """Kernel: drm_gpuva_find_prev(). Quirk: may return a VA covering ``start``."""
        start = check_u64(start, "start")
        if not self._range_valid((start - 1) & MASK, 1):
            return None
        return self._iter_first((start - 1) & MASK, start)

    def find_next(self, end: int) -> RefGpuVa | None:
        """Kernel: drm_gpuva_find_next(). Quirk: may return a VA starting at ``end + 1``."""
        end = check_u64(end, "end")
        if not self._range_valid(end, 1):
            return None
        return self._iter_first(end, (end + 1) & MASK)

    def interval_empty(self, addr: int, range: int) -> bool:  # noqa: A002
        """Kernel: drm_gpuvm_interval_empty()."""
        return self.find_first(addr, range) is None

    def _va_range(self, start: int, end: int) -> Iterator[RefGpuVa]:
        """Kernel: drm_gpuvm_for_each_va_range() (the reserved node included)."""
        va = self._iter_first(start, (end - 1) & MASK)  # find_first(start, end - start)
        if va is None:
            return
        i = self._all.index(va)
        while i < len(self._all) and self._all[i].addr < end:
            yield self._all[i]
            i += 1

    def __iter__(self) -> Iterator[RefGpuVa]:
        """Kernel: drm_gpuvm_for_each_va() (address order), reserved node skipped."""
        return (va for va in list(self._all) if not va.reserved)

    def __len__(self) -> int:
        """Number of VAs, reserved node excluded (the VAs holding a drm_gpuvm ref)."""
        return self._count

    def va_range(self, addr: int, range: int) -> list[RefGpuVa]:  # noqa: A002
        """Kernel: drm_gpuvm_for_each_va_range(addr, addr+range), reserved node excluded."""
        addr, range = check_u64(addr, "addr"), check_u64(range, "range")
        return [va for va in self._va_range(addr, (addr + range) & MASK) if not va.reserved]

    def state(self) -> list[tuple[int, int, int | None, int]]:
        """Every VA as a tuple, in iteration order: the vectors' ``state``."""
        return [va.as_tuple() for va in self]

    # -- split / merge ------------------------------------------------------

    def _sm_map(self, req_addr: int, req_range: int, req_obj: int | None, req_offset: int,
                madvise: bool) -> RefOps:
        """Kernel: __drm_gpuvm_sm_map()."""
        ops = RefOps(self)
        if not self._range_valid(req_addr, req_range):
            raise GpuvmError(errno.EINVAL, _invalid_msg(self, req_addr, req_range))
        req_end = req_addr + req_range
        req = RefOpMap(req_addr, req_range, req_obj, req_offset)
        # map: the request is always the last op; madvise: only once a boundary
        # split "arms" it (op_map starts NULL in the kernel)
        final: RefOpMap | None = None if madvise else req
        for va in list(self._va_range(req_addr, req_end)):
            obj, offset, addr, range_ = va.obj, va.offset, va.addr, va.range
            end = (addr + range_) & MASK
            if madvise and obj is not None:
                continue
            merge = obj is not None
            if addr == req_addr:
                merge = merge and obj == req_obj and offset == req_offset
                if end == req_end:
                    if not madvise:
                        ops.append(RefOpUnmap(va, merge))
                    break
                if end < req_end:
                    if not madvise:
                        ops.append(RefOpUnmap(va, merge))
                    continue
                nxt = RefOpMap(req_end, (range_ - req_range) & MASK, obj,
                               (offset + req_range) & MASK)
                ops.append(RefOpRemap(None, nxt, RefOpUnmap(va, merge)))
                if madvise:
                    final = req
                break
            if addr < req_addr:
                ls_range = req_addr - addr
                prev = RefOpMap(addr, ls_range, obj, offset)
                merge = merge and obj == req_obj and (offset + ls_range) & MASK == req_offset
                if end == req_end:
                    ops.append(RefOpRemap(prev, None, RefOpUnmap(va, merge)))
                    if madvise:
                        final = req
                    break
                if end < req_end:
                    ops.append(RefOpRemap(prev, None, RefOpUnmap(va, merge)))
                    if madvise:
                        ops.append(RefOpMap(req_addr, (end - req_addr) & MASK, None, 0))
                    continue
                nxt = RefOpMap(req_end, (end - req_end) & MASK, obj,
                               (offset + ls_range + req_range) & MASK)
                ops.append(RefOpRemap(prev, nxt, RefOpUnmap(va, merge)))
                if madvise:
                    final = req
                break
            # addr > req_addr
            merge = merge and obj == req_obj and offset == (req_offset + (addr - req_addr)) & MASK
            if end == req_end:
                if not madvise:
                    ops.append(RefOpUnmap(va, merge))
                break
            if end < req_end:
                if not madvise:
                    ops.append(RefOpUnmap(va, merge))
                continue
            nxt = RefOpMap(req_end, (end - req_end) & MASK, obj, (offset + req_end - addr) & MASK)
            ops.append(RefOpRemap(None, nxt, RefOpUnmap(va, merge)))
            if madvise:
                ops.append(RefOpMap(addr, (req_end - addr) & MASK, None, 0))
                return ops
            break
        if final is not None:
            ops.append(final)
        return ops

    def sm_map_ops_create(self, addr: int, range: int, obj: int | None = None,  # noqa: A002
                          offset: int = 0) -> RefOps:
        """Kernel: drm_gpuvm_sm_map_ops_create()."""
        return self._sm_map(check_u64(addr, "addr"), check_u64(range, "range"), check_obj(obj),
                            check_u64(offset, "offset"), False)

    def madvise_ops_create(self, addr: int, range: int, obj: int | None = None,  # noqa: A002
                           offset: int = 0) -> RefOps:
        """Kernel: drm_gpuvm_madvise_ops_create()."""
        return self._sm_map(check_u64(addr, "addr"), check_u64(range, "range"), check_obj(obj),
                            check_u64(offset, "offset"), True)

    def sm_unmap_ops_create(self, addr: int, range: int) -> RefOps:  # noqa: A002
        """Kernel: drm_gpuvm_sm_unmap_ops_create() / __drm_gpuvm_sm_unmap()."""
        req_addr, req_range = check_u64(addr, "addr"), check_u64(range, "range")
        if not self._range_valid(req_addr, req_range):
            raise GpuvmError(errno.EINVAL, _invalid_msg(self, req_addr, req_range))
        req_end = req_addr + req_range
        ops = RefOps(self)
        for va in list(self._va_range(req_addr, req_end)):
            end = (va.addr + va.range) & MASK
            prev = (RefOpMap(va.addr, req_addr - va.addr, va.obj, va.offset)
                    if va.addr < req_addr else None)
            nxt = (RefOpMap(req_end, end - req_end, va.obj, (va.offset + req_end - va.addr) & MASK)
                   if end > req_end else None)
            if prev is not None or nxt is not None:
                ops.append(RefOpRemap(prev, nxt, RefOpUnmap(va, False)))
            else:
                ops.append(RefOpUnmap(va, False))
        return ops

    def prefetch_ops_create(self, addr: int, range: int) -> RefOps:  # noqa: A002
        """Kernel: drm_gpuvm_prefetch_ops_create() (no range check; may list the reserved node)."""
        addr, range = check_u64(addr, "addr"), check_u64(range, "range")
        ops = RefOps(self)
        for va in self._va_range(addr, (addr + range) & MASK):
            ops.append(RefOpPrefetch(va))
        return ops

    def sm_map(self, steps: RefSmSteps, addr: int, range: int, obj: int | None = None,  # noqa: A002
               offset: int = 0) -> None:
        """Kernel: drm_gpuvm_sm_map(): call ``steps.sm_step_*`` for each op in order.

        Like the kernel, a ``steps`` object lacking any of the three callbacks
        is refused with EINVAL before anything else happens.
        """
        _require_steps(steps, ("sm_step_map", "sm_step_remap", "sm_step_unmap"))
        _dispatch(steps, self.sm_map_ops_create(addr, range, obj, offset))

    def sm_unmap(self, steps: RefSmSteps, addr: int, range: int) -> None:  # noqa: A002
        """Kernel: drm_gpuvm_sm_unmap() (needs sm_step_remap and sm_step_unmap only)."""
        _require_steps(steps, ("sm_step_remap", "sm_step_unmap"))
        _dispatch(steps, self.sm_unmap_ops_create(addr, range))

    # -- applying ops ---------------------------------------------------------

    def apply(self, ops: Sequence[RefOp]) -> int:
        """Apply ``ops`` in order; return how many inserts the tree refused.

        Kernel: drm_gpuva_map() / drm_gpuva_remap() / drm_gpuva_unmap().

        A list from the op generators is refused with ESTALE once the VM has
        changed. A plain sequence of op objects is checked before anything is
        applied: an unmap/remap naming a VA that is not in this VM (removed,
        another VM's, or named twice) is refused with ENOENT, one naming the
        kernel-reserved node with EINVAL (drm_gpuva_remove refuses that node),
        and the VM is left unchanged.
        """
        if isinstance(ops, RefOps) and (ops.vm is not self or ops.generation != self._generation):
            raise GpuvmError(errno.ESTALE, "op list is stale: the VM changed since it was created")
        named: set[int] = set()
        for op in ops:
            if isinstance(op, RefOpRemap | RefOpUnmap):
                va = op.unmap.va if isinstance(op, RefOpRemap) else op.va
                if va.reserved and va.vm is self:
                    raise GpuvmError(errno.EINVAL, "an op names the kernel-reserved node, "
                                                   "which cannot be removed")
                if va.vm is not self or id(va) in named:
                    raise GpuvmError(errno.ENOENT,
                                     f"an op names {va!r}, which is not (or no longer) in this VM")
                named.add(id(va))
            elif not isinstance(op, RefOpMap | RefOpPrefetch):
                raise TypeError(f"not an op of this VM type: {op!r}")
        failed = 0

        def put(m: RefOpMap) -> None:
            nonlocal failed
            try:
                self._insert(RefGpuVa(m.addr, m.range, m.obj, m.offset))
            except GpuvmError:
                failed += 1

        for op in ops:
            if isinstance(op, RefOpMap):
                put(op)
            elif isinstance(op, RefOpRemap):
                self._unlink(op.unmap.va)
                if op.prev is not None:
                    put(op.prev)
                if op.next is not None:
                    put(op.next)
            elif isinstance(op, RefOpUnmap):
                self._unlink(op.va)
        return failed

    # -- batch forms (loops here; the compiled core runs them in C) ---------------

    def sm_map_batch(self, addr: Any, range: Any, obj: Any, offset: Any) -> list[int]:  # noqa: A002
        """For each request: drm_gpuvm_sm_map_ops_create, then apply; op counts.

        ``obj < 0`` means no object. A refused request raises with ``.index``;
        the requests before it stay applied.
        """
        out = []
        for i, (a, r, o, f) in enumerate(zip(addr, range, obj, offset, strict=True)):
            out.append(_batch_step(i, lambda a=a, r=r, o=o, f=f: self.sm_map_ops_create(
                int(a), int(r), None if int(o) < 0 else int(o), int(f)), self))
        return out

    def sm_unmap_batch(self, addr: Any, range: Any) -> list[int]:  # noqa: A002
        """For each request: drm_gpuvm_sm_unmap_ops_create, then apply; op counts."""
        return [_batch_step(i, lambda a=a, r=r: self.sm_unmap_ops_create(int(a), int(r)), self)
                for i, (a, r) in enumerate(zip(addr, range, strict=True))]

    def madvise_batch(self, addr: Any, range: Any) -> list[int]:  # noqa: A002
        """For each request: drm_gpuvm_madvise_ops_create (no object), then apply."""
        return [_batch_step(i, lambda a=a, r=r: self.madvise_ops_create(int(a), int(r)), self)
                for i, (a, r) in enumerate(zip(addr, range, strict=True))]

    def find_first_batch(self, addr: Any, range: Any) -> list[RefGpuVa | None]:  # noqa: A002
        """drm_gpuva_find_first for each query (a list here, a numpy array in the core)."""
        return [self.find_first(int(a), int(r)) for a, r in zip(addr, range, strict=True)]


def _batch_step(i: int, make: Any, vm: RefGpuVm) -> int:
    try:
        ops = make()
    except GpuvmError as e:
        raise GpuvmError(e.errno or errno.EINVAL, e.strerror or "", index=i) from None
    vm.apply(ops)
    return len(ops)


def _require_steps(steps: object, names: tuple[str, ...]) -> None:
    missing = [n for n in names if not callable(getattr(steps, n, None))]
    if missing:
        raise GpuvmError(errno.EINVAL, f"the steps object has no {', '.join(missing)}")


def _dispatch(steps: RefSmSteps, ops: RefOps) -> None:
    for op in ops:
        if isinstance(op, RefOpMap):
            steps.sm_step_map(op)
        elif isinstance(op, RefOpRemap):
            steps.sm_step_remap(op)
        elif isinstance(op, RefOpUnmap):
            steps.sm_step_unmap(op)


def _invalid_msg(vm: RefGpuVm, addr: int, range: int) -> str:  # noqa: A002
    if addr + range > MASK:
        why = "addr + range overflows u64"
    elif not vm._range_valid(addr, range) and vm.reserve_range and not (
        addr < vm.mm_start or addr + range > ((vm.mm_start + vm.mm_range) & MASK)
    ):
        why = "it overlaps the kernel-reserved node"
    else:
        why = f"it is outside the VM [{vm.mm_start:#x}, +{vm.mm_range:#x})"
    return f"request [{addr:#x}, +{range:#x}) is invalid: {why}"
