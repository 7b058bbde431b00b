"""Peers: what a Python user would reach for instead of gpuvm_core.

Two adapters give the workload runners the slice of the ``GpuVm`` surface they
call (``sm_map_ops_create``/``sm_unmap_ops_create``/``madvise_ops_create`` +
``apply``, ``find_first``, ``*_batch``, ``len``, iteration), built on
third-party interval containers. Where a peer cannot express the kernel's
semantics exactly, the adapter says so here rather than pretending.

* :class:`IntervalTreeVm` (``intervaltree``): a map is ``chop(addr, end)`` +
  ``addi(addr, end, (obj, offset))``; ``chop``'s ``datafunc`` moves the offset
  of the upper piece of a split mapping, so the final layout equals the
  kernel's (tested in ``test_peers_agree``). An unmap is ``chop``. W3's
  madvise on mappings without an object is ``slice(addr)`` + ``slice(end)``
  (a split at both request ends, no new mapping: exact for W3, whose VM holds
  only object-less mappings; it would wrongly split mappings that *have* an
  object, which the kernel's madvise leaves alone). No op list exists: no
  ``keep`` flag, no remap records, so the "build ops" part of a request is
  free for this peer, and it cannot tell a driver what to bind.
* :class:`PortionVm` (``portion.IntervalDict``): values are keys, so two
  equal values anywhere in the space become ONE entry (a disjunction of
  intervals). To keep mappings apart the stored value is
  ``(obj, offset - addr)``, which also keeps offsets right across splits; the
  VA count is the number of atomic intervals. Each assignment scans every
  stored entry (O(n) per request), so it only runs at small N. No op lists,
  and no madvise (a split without a value change is not expressible: equal
  values merge), so W3 is not offered for portion.

Kernel: none (comparison baselines for drivers/gpu/drm/drm_gpuvm.c).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import portion as P  # type: ignore[import-untyped]
from intervaltree import Interval, IntervalTree  # type: ignore[import-untyped]

__all__ = ["IntervalTreeVm", "PortionVm", "PEERS"]


class PeerVa(NamedTuple):
    addr: int
    range: int
    obj: int | None
    offset: int


class _Deferred:
    """A request recorded by ``*_ops_create`` and carried out by ``apply``."""

    __slots__ = ("kind", "addr", "end", "obj", "offset")

    def __init__(self, kind: str, addr: int, end: int, obj: int | None, offset: int) -> None:
        self.kind, self.addr, self.end, self.obj, self.offset = kind, addr, end, obj, offset

    def __len__(self) -> int:  # "ops" count: unknown to the peer; 1 per request
        return 1


class _PeerBase:
    def __init__(self, start: int, range: int) -> None:  # noqa: A002
        pass

    def __len__(self) -> int:
        raise NotImplementedError

    def __iter__(self) -> Iterator[PeerVa]:
        raise NotImplementedError

    def sm_map_ops_create(self, addr: int, range: int, obj: int | None = None,  # noqa: A002
                          offset: int = 0) -> _Deferred:
        return _Deferred("map", addr, addr + range, obj, offset)

    def sm_unmap_ops_create(self, addr: int, range: int) -> _Deferred:  # noqa: A002
        return _Deferred("unmap", addr, addr + range, None, 0)

    def madvise_ops_create(self, addr: int, range: int, obj: int | None = None,  # noqa: A002
                           offset: int = 0) -> _Deferred:
        return _Deferred("madvise", addr, addr + range, obj, offset)

    def apply(self, ops: _Deferred) -> int:
        getattr(self, "_" + ops.kind)(ops)
        return 0

    # Batch forms: loops (neither peer has a bulk split/merge).
    def sm_map_batch(self, addr: Any, range: Any, obj: Any, offset: Any) -> list[int]:  # noqa: A002
        for a, r, o, f in zip(addr.tolist(), range.tolist(), obj.tolist(), offset.tolist(),
                              strict=True):
            self.apply(self.sm_map_ops_create(a, r, None if o < 0 else o, f))
        return [1] * len(addr)

    def sm_unmap_batch(self, addr: Any, range: Any) -> list[int]:  # noqa: A002
        for a, r in zip(addr.tolist(), range.tolist(), strict=True):
            self.apply(self.sm_unmap_ops_create(a, r))
        return [1] * len(addr)

    def madvise_batch(self, addr: Any, range: Any) -> list[int]:  # noqa: A002
        for a, r in zip(addr.tolist(), range.tolist(), strict=True):
            self.apply(self.madvise_ops_create(a, r))
        return [1] * len(addr)

    def find_first(self, addr: int, range: int) -> PeerVa | None:  # noqa: A002
        raise NotImplementedError

    def find_first_batch(self, addr: Any, range: Any) -> list[PeerVa | None]:  # noqa: A002
        return [self.find_first(a, r) for a, r in zip(addr.tolist(), range.tolist(), strict=True)]

    def state(self) -> list[tuple[int, int, int | None, int]]:
        return [(va.addr, va.range, va.obj, va.offset) for va in self]


class IntervalTreeVm(_PeerBase):
    """A VA space on ``intervaltree.IntervalTree``; data = ``(obj, offset)``."""

    def __init__(self, start: int, range: int) -> None:  # noqa: A002
        self.tree = IntervalTree()

    def _map(self, op: _Deferred) -> None:
        self._chop(op)
        self.tree.addi(op.addr, op.end, (op.obj, op.offset))

    def _chop(self, op: _Deferred) -> None:
        # chop() hands datafunc the original interval; the upper piece starts
        # at the cut point `end`, so its offset moves by (end - iv.begin).
        end = op.end

        def datafunc(iv: Interval, islower: bool) -> tuple[int | None, int]:
            obj, offset = iv.data
            return (obj, offset) if islower else (obj, offset + (end - iv.begin))

        self.tree.chop(op.addr, op.end, datafunc)

    _unmap = _chop

    def _madvise(self, op: _Deferred) -> None:
        for point in (op.addr, op.end):
            def datafunc(iv: Interval, islower: bool, p: int = point) -> tuple[int | None, int]:
                obj, offset = iv.data
                return (obj, offset) if islower else (obj, offset + (p - iv.begin))

            self.tree.slice(point, datafunc)

    def find_first(self, addr: int, range: int) -> PeerVa | None:  # noqa: A002
        hits = self.tree.at(addr) if range == 1 else self.tree.overlap(addr, addr + range)
        if not hits:
            return None
        iv = min(hits)
        return PeerVa(iv.begin, iv.end - iv.begin, iv.data[0], iv.data[1])

    def populate_fast(self, addr: Any, range: Any, obj: Any) -> None:
        """Bulk-build (untimed populate): one balanced build instead of N inserts."""
        self.tree = IntervalTree(Interval(a, a + r, (None if o < 0 else o, 0))
                                 for a, r, o in zip(addr.tolist(), range.tolist(), obj.tolist(),
                                                    strict=True))

    def __iter__(self) -> Iterator[PeerVa]:
        for iv in sorted(self.tree):
            yield PeerVa(iv.begin, iv.end - iv.begin, iv.data[0], iv.data[1])

    def __len__(self) -> int:
        return len(self.tree)


class PortionVm(_PeerBase):
    """A VA space on ``portion.IntervalDict``; value = ``(obj, offset - addr)``."""

    def __init__(self, start: int, range: int) -> None:  # noqa: A002
        self.d = P.IntervalDict()

    def _map(self, op: _Deferred) -> None:
        self.d[P.closedopen(op.addr, op.end)] = (op.obj, op.offset - op.addr)

    def _unmap(self, op: _Deferred) -> None:
        del self.d[P.closedopen(op.addr, op.end)]

    def _madvise(self, op: _Deferred) -> None:
        raise NotImplementedError("portion cannot split without merging equal values (see module)")

    def find_first(self, addr: int, range: int) -> PeerVa | None:  # noqa: A002
        if range != 1:
            raise NotImplementedError("point lookups only")
        v = self.d.get(addr)
        if v is None:
            return None
        for iv in self.d.find(v):
            if iv.lower <= addr < iv.upper:
                return PeerVa(iv.lower, iv.upper - iv.lower, v[0], v[1] + iv.lower)
        return None

    def __iter__(self) -> Iterator[PeerVa]:
        vas = [PeerVa(iv.lower, iv.upper - iv.lower, v[0], v[1] + iv.lower)
               for key, v in self.d.items() for iv in key]
        return iter(sorted(vas))

    def __len__(self) -> int:
        return sum(len(key) for key in self.d)


#: name -> (factory, workloads it can express)
PEERS: dict[str, tuple[type[_PeerBase], tuple[int, ...]]] = {
    "intervaltree": (IntervalTreeVm, (1, 2, 3, 4)),
    "portion": (PortionVm, (1, 2, 4)),
}


def new_peer(name: str, n: int, w: int) -> _PeerBase:
    """A fresh peer VM populated for workload ``w`` (populate is untimed)."""
    from gpuvm_core.workloads import VM_RANGE, populate, run_batch

    factory, ok = PEERS[name]
    if w not in ok:
        raise ValueError(f"{name} cannot express W{w}")
    vm = factory(0, VM_RANGE)
    pop = populate(n, null_obj=(w == 3))
    if isinstance(vm, IntervalTreeVm):
        vm.populate_fast(pop.addr, pop.range, pop.obj)
    else:
        run_batch(vm, pop)
    return vm


def _rss_child(name: str, n: int) -> float:
    from gpuvm_core.workloads import _rss_bytes, _settle, populate

    pop = populate(n)
    _settle()
    before = _rss_bytes()
    vm = PEERS[name][0](0, 1 << 48)
    if isinstance(vm, IntervalTreeVm):
        vm.populate_fast(pop.addr, pop.range, pop.obj)
    else:
        from gpuvm_core.workloads import run_batch

        run_batch(vm, pop)
    _settle()
    after = _rss_bytes()
    assert len(vm) == n
    return (after - before) / n


if __name__ == "__main__":  # python -m benchmarks.peers rss intervaltree N
    import sys

    if len(sys.argv) != 4 or sys.argv[1] != "rss":
        raise SystemExit("usage: python -m benchmarks.peers rss intervaltree|portion N")
    print(f"{_rss_child(sys.argv[2], int(sys.argv[3])):.1f}")
