"""One table-driven test per split/merge shape of drm_gpuvm, for both implementations.

Sources: the "Split and Merge" and "Madvise Logic - Splitting and Traversal"
DOC sections of drivers/gpu/drm/drm_gpuvm.c (torvalds/linux cb9f145f), and the
code of ``__drm_gpuvm_sm_map`` / ``__drm_gpuvm_sm_unmap`` at that commit. The
diagram numbers below are the kernel's; the geometries are restated in our own
words. Every expected op list and final layout in this file was written out by
hand from the kernel's rules; nothing here is computed by the code under test.

Units: one "page" of the kernel's diagrams is ``P`` bytes, page 0 sits at
``BASE``. ``N`` is the old VA's object offset (the diagrams' ``n``); ``pg(k)``
is the address of page ``k``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from gpuvm_core import GpuVm, RefGpuVm

IMPLS = [pytest.param(GpuVm, id="core"), pytest.param(RefGpuVm, id="reference")]

P = 0x1000
BASE = 0x10_0000
N = 0x40_0000        # the diagrams' bo_offset n
M_OFF = 0x90_0000    # the diagrams' bo_offset m (unrelated to n)
A_OBJ, B_OBJ = 1, 2  # the diagrams' BOs "a" and "b"
VM_RANGE = 1 << 32

Layout = list[tuple[int, int, int | None, int]]


def pg(k: int) -> int:
    return BASE + k * P


def va(addr: int, rng: int, obj: int | None, off: int) -> dict[str, Any]:
    return {"addr": addr, "range": rng, "obj": obj, "offset": off}


def MAP(addr: int, rng: int, obj: int | None, off: int) -> dict[str, Any]:  # noqa: N802
    return {"op": "map", **va(addr, rng, obj, off)}


def UNMAP(addr: int, rng: int, obj: int | None, off: int, keep: bool) -> dict[str, Any]:  # noqa: N802
    return {"op": "unmap", **va(addr, rng, obj, off), "keep": keep}


def REMAP(prev: dict[str, Any] | None, nxt: dict[str, Any] | None,  # noqa: N802
          old: tuple[int, int, int | None, int], keep: bool) -> dict[str, Any]:
    return {"op": "remap", "prev": prev, "next": nxt, "unmap": {**va(*old), "keep": keep}}


def build(impl: Any, layout: Layout, **kw: int) -> Any:
    vm = impl(0, VM_RANGE, **kw)
    for a, r, o, f in layout:
        vm.insert(a, r, o, f)
    return vm


def run(vm: Any, call: str, a: int, r: int, obj: int | None = None, off: int = 0) -> list[Any]:
    if call == "map":
        ops = vm.sm_map_ops_create(a, r, obj, off)
    elif call == "madvise":
        ops = vm.madvise_ops_create(a, r, obj, off)
    else:
        ops = vm.sm_unmap_ops_create(a, r)
    got = [op.as_dict() for op in ops]
    assert vm.apply(ops) == 0
    return got


# ---------------------------------------------------------------------------
# MAP: the 15 diagrams of "Split and Merge".
#
# Each diagram has one old VA and one request. ``ops(o, q, f, k)`` and
# ``final(o, q, f)`` give the expected op list and layout for an old VA of
# object ``o`` and a request of object ``q`` at offset ``f`` with keep ``k``.
# ``contig`` is the request offset that continues the old VA's offset at the
# request address (pages relative to n), used by the variants below.


@dataclass(frozen=True)
class MapDiagram:
    num: int
    shape: str                       # the case of the spec's M1..M9 table it exercises
    old: tuple[int, int, int]        # (first page, pages, offset in pages relative to n)
    req: tuple[int, int]             # (first page, pages)
    drawn: tuple[int, int, bool]     # as drawn: request object, request offset, keep
    contig: int                      # request offset continuing the old VA, pages rel. to n
    ops: Callable[[int | None, int | None, int, bool], list[dict[str, Any]]]
    final: Callable[[int | None, int | None, int], Layout]


DIAGRAMS = [
    # 1) request identical to the old VA, same BO and offset: unmap(keep) + map.
    MapDiagram(1, "M1", (0, 1, 0), (0, 1), (A_OBJ, N, True), 0,
               lambda o, q, f, k: [UNMAP(pg(0), P, o, N, k), MAP(pg(0), P, q, f)],
               lambda o, q, f: [(pg(0), P, q, f)]),
    # 2) identical range, other offset: replaced, keep false.
    MapDiagram(2, "M1", (0, 1, 0), (0, 1), (A_OBJ, M_OFF, False), 0,
               lambda o, q, f, k: [UNMAP(pg(0), P, o, N, k), MAP(pg(0), P, q, f)],
               lambda o, q, f: [(pg(0), P, q, f)]),
    # 3) identical range, other BO: replaced, keep false.
    MapDiagram(3, "M1", (0, 1, 0), (0, 1), (B_OBJ, N, False), 0,
               lambda o, q, f, k: [UNMAP(pg(0), P, o, N, k), MAP(pg(0), P, q, f)],
               lambda o, q, f: [(pg(0), P, q, f)]),
    # 4) the old VA is the lower part of the request: replaced. The DOC says
    #    "replace"; the code also reports keep=true when BO and offset line up.
    MapDiagram(4, "M2", (0, 1, 0), (0, 2), (A_OBJ, N, True), 0,
               lambda o, q, f, k: [UNMAP(pg(0), P, o, N, k), MAP(pg(0), 2 * P, q, f)],
               lambda o, q, f: [(pg(0), 2 * P, q, f)]),
    # 5) the request is the lower part of the old VA, other BO: the old VA's
    #    upper part survives as `next`, its offset advanced by one page.
    MapDiagram(5, "M3", (0, 2, 0), (0, 1), (B_OBJ, N, False), 0,
               lambda o, q, f, k: [REMAP(None, va(pg(1), P, o, N + P), (pg(0), 2 * P, o, N), k),
                                   MAP(pg(0), P, q, f)],
               lambda o, q, f: [(pg(0), P, q, f), (pg(1), P, o, N + P)]),
    # 6) same geometry as 5, same BO and offset: keep.
    MapDiagram(6, "M3", (0, 2, 0), (0, 1), (A_OBJ, N, True), 0,
               lambda o, q, f, k: [REMAP(None, va(pg(1), P, o, N + P), (pg(0), 2 * P, o, N), k),
                                   MAP(pg(0), P, q, f)],
               lambda o, q, f: [(pg(0), P, q, f), (pg(1), P, o, N + P)]),
    # 7) the request is the upper part of the old VA, other BO: the lower part
    #    survives as `prev` with its offset unchanged.
    MapDiagram(7, "M4", (0, 2, 0), (1, 1), (B_OBJ, M_OFF, False), 1,
               lambda o, q, f, k: [REMAP(va(pg(0), P, o, N), None, (pg(0), 2 * P, o, N), k),
                                   MAP(pg(1), P, q, f)],
               lambda o, q, f: [(pg(0), P, o, N), (pg(1), P, q, f)]),
    # 8) same geometry as 7, same BO, request offset n+1: keep.
    MapDiagram(8, "M4", (0, 2, 0), (1, 1), (A_OBJ, N + P, True), 1,
               lambda o, q, f, k: [REMAP(va(pg(0), P, o, N), None, (pg(0), 2 * P, o, N), k),
                                   MAP(pg(1), P, q, f)],
               lambda o, q, f: [(pg(0), P, o, N), (pg(1), P, q, f)]),
    # 9) the request overlaps the old VA's upper part and goes beyond it, other BO.
    MapDiagram(9, "M5", (0, 2, 0), (1, 2), (B_OBJ, M_OFF, False), 1,
               lambda o, q, f, k: [REMAP(va(pg(0), P, o, N), None, (pg(0), 2 * P, o, N), k),
                                   MAP(pg(1), 2 * P, q, f)],
               lambda o, q, f: [(pg(0), P, o, N), (pg(1), 2 * P, q, f)]),
    # 10) same geometry as 9, same BO, offset continuing: keep.
    MapDiagram(10, "M5", (0, 2, 0), (1, 2), (A_OBJ, N + P, True), 1,
               lambda o, q, f, k: [REMAP(va(pg(0), P, o, N), None, (pg(0), 2 * P, o, N), k),
                                   MAP(pg(1), 2 * P, q, f)],
               lambda o, q, f: [(pg(0), P, o, N), (pg(1), 2 * P, q, f)]),
    # 11) the request sits strictly inside the old VA, other BO: split in
    #     three; the upper piece's offset is n+2 (two pages above the old start).
    MapDiagram(11, "M6", (0, 3, 0), (1, 1), (B_OBJ, M_OFF, False), 1,
               lambda o, q, f, k: [REMAP(va(pg(0), P, o, N), va(pg(2), P, o, N + 2 * P),
                                         (pg(0), 3 * P, o, N), k),
                                   MAP(pg(1), P, q, f)],
               lambda o, q, f: [(pg(0), P, o, N), (pg(1), P, q, f), (pg(2), P, o, N + 2 * P)]),
    # 12) same geometry as 11, same BO, offset n+1: keep.
    MapDiagram(12, "M6", (0, 3, 0), (1, 1), (A_OBJ, N + P, True), 1,
               lambda o, q, f, k: [REMAP(va(pg(0), P, o, N), va(pg(2), P, o, N + 2 * P),
                                         (pg(0), 3 * P, o, N), k),
                                   MAP(pg(1), P, q, f)],
               lambda o, q, f: [(pg(0), P, o, N), (pg(1), P, q, f), (pg(2), P, o, N + 2 * P)]),
    # 13) the old VA (at page 1, offset n+1) is the upper part of the request:
    #     replaced; keep=true because n + 1 page lines up with the request.
    MapDiagram(13, "M7", (1, 1, 1), (0, 2), (A_OBJ, N, True), 0,
               lambda o, q, f, k: [UNMAP(pg(1), P, o, N + P, k), MAP(pg(0), 2 * P, q, f)],
               lambda o, q, f: [(pg(0), 2 * P, q, f)]),
    # 14) the old VA sits strictly inside the request: replaced (keep as in 13).
    MapDiagram(14, "M8", (1, 1, 1), (0, 3), (A_OBJ, N, True), 0,
               lambda o, q, f, k: [UNMAP(pg(1), P, o, N + P, k), MAP(pg(0), 3 * P, q, f)],
               lambda o, q, f: [(pg(0), 3 * P, q, f)]),
    # 15) the request overlaps the old VA's lower part and starts below it,
    #     other BO. The DOC draws the surviving piece with offset n+2; the
    #     code gives n+1 (the old VA starts at page 1, the piece at page 2:
    #     one page in). We test the code; the kernel-recorded vectors agree.
    MapDiagram(15, "M9", (1, 2, 0), (0, 2), (B_OBJ, M_OFF, False), -1,
               lambda o, q, f, k: [REMAP(None, va(pg(2), P, o, N + P), (pg(1), 2 * P, o, N), k),
                                   MAP(pg(0), 2 * P, q, f)],
               lambda o, q, f: [(pg(0), 2 * P, q, f), (pg(2), P, o, N + P)]),
]

# Variants: (name, old object, request object, request offset(d), keep).
# keep is true only when both objects are the same non-null BO and the offsets
# continue; two null objects never give keep (the kernel starts from "old VA
# has an object").
VARIANTS: list[tuple[str, int | None, int | None, Callable[[MapDiagram], int], bool | None]] = [
    ("asdrawn", A_OBJ, None, lambda d: d.drawn[1], None),   # request obj/keep from the diagram
    ("otherbo", A_OBJ, B_OBJ, lambda d: N + d.contig * P, False),
    ("noncontig", A_OBJ, A_OBJ, lambda d: N + (d.contig + 5) * P, False),
    ("contig", A_OBJ, A_OBJ, lambda d: N + d.contig * P, True),
    ("nullold", None, A_OBJ, lambda d: N + d.contig * P, False),
    ("nullreq", A_OBJ, None, lambda d: N + d.contig * P, False),
    ("nullboth", None, None, lambda d: N + d.contig * P, False),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("variant", VARIANTS, ids=[v[0] for v in VARIANTS])
@pytest.mark.parametrize("d", DIAGRAMS, ids=[f"diagram{d.num:02d}-{d.shape}" for d in DIAGRAMS])
def test_map_diagram(impl: Any, variant: Any, d: MapDiagram) -> None:
    name, old_obj, req_obj, req_off_of, keep = variant
    if name == "asdrawn":
        req_obj, _, keep = d.drawn
    req_off = req_off_of(d)
    first, pages, rel = d.old
    vm = build(impl, [(pg(first), pages * P, old_obj, N + rel * P)])
    got = run(vm, "map", pg(d.req[0]), d.req[1] * P, req_obj, req_off)
    assert got == d.ops(old_obj, req_obj, req_off, keep)
    assert vm.state() == d.final(old_obj, req_obj, req_off)
    # the neighbourhood is untouched: nothing below page 0 or above page 3
    assert vm.interval_empty(0, pg(0)) and vm.interval_empty(pg(3), VM_RANGE - pg(3))


# Map requests over several VAs (the diagrams combined): any number of unmaps,
# at most two remaps (first and last VA), the map last; gaps produce nothing.
MULTI_MAP = [
    # old VAs: [0,2) a n | [3,4) b | [4,6) a n+4 (gap at page 2); request [1,5) obj 3
    ("remap-unmap-remap",
     [(pg(0), 2 * P, 1, N), (pg(3), P, 2, M_OFF), (pg(4), 2 * P, 1, N + 4 * P)],
     (pg(1), 4 * P, 3, 0),
     [REMAP(va(pg(0), P, 1, N), None, (pg(0), 2 * P, 1, N), False),
      UNMAP(pg(3), P, 2, M_OFF, False),
      REMAP(None, va(pg(5), P, 1, N + 5 * P), (pg(4), 2 * P, 1, N + 4 * P), False),
      MAP(pg(1), 4 * P, 3, 0)],
     [(pg(0), P, 1, N), (pg(1), 4 * P, 3, 0), (pg(5), P, 1, N + 5 * P)]),
    # same layout, request with BO 1 continuing the first VA: keep only where
    # the old offset lines up (first and last VA), not for BO 2.
    ("keep-per-va",
     [(pg(0), 2 * P, 1, N), (pg(3), P, 2, M_OFF), (pg(4), 2 * P, 1, N + 4 * P)],
     (pg(1), 4 * P, 1, N + P),
     [REMAP(va(pg(0), P, 1, N), None, (pg(0), 2 * P, 1, N), True),
      UNMAP(pg(3), P, 2, M_OFF, False),
      REMAP(None, va(pg(5), P, 1, N + 5 * P), (pg(4), 2 * P, 1, N + 4 * P), True),
      MAP(pg(1), 4 * P, 1, N + P)],
     [(pg(0), P, 1, N), (pg(1), 4 * P, 1, N + P), (pg(5), P, 1, N + 5 * P)]),
    # request aligned on both ends over three adjacent VAs: M2, M8, M7 -> three unmaps
    ("aligned-unmaps",
     [(pg(0), P, 1, 0), (pg(1), P, None, 0), (pg(2), P, 2, 0)],
     (pg(0), 3 * P, 4, 0),
     [UNMAP(pg(0), P, 1, 0, False), UNMAP(pg(1), P, None, 0, False),
      UNMAP(pg(2), P, 2, 0, False), MAP(pg(0), 3 * P, 4, 0)],
     [(pg(0), 3 * P, 4, 0)]),
    # request in a gap between two VAs (touching both): only the map
    ("gap-only",
     [(pg(0), P, 1, 0), (pg(2), P, 1, 0)],
     (pg(1), P, 1, 0),
     [MAP(pg(1), P, 1, 0)],
     [(pg(0), P, 1, 0), (pg(1), P, 1, 0), (pg(2), P, 1, 0)]),
    # empty VM
    ("empty", [], (pg(0), P, None, 0), [MAP(pg(0), P, None, 0)], [(pg(0), P, None, 0)]),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("layout", "req", "ops", "final"), [m[1:] for m in MULTI_MAP],
                         ids=[m[0] for m in MULTI_MAP])
def test_map_multi(impl: Any, layout: Layout, req: tuple[int, int, int | None, int],
                   ops: list[dict[str, Any]], final: Layout) -> None:
    vm = build(impl, layout)
    assert run(vm, "map", *req) == ops
    assert vm.state() == final


# ---------------------------------------------------------------------------
# UNMAP: the same 15 geometries as unmap requests (``__drm_gpuvm_sm_unmap``).
# A VA sticking out below keeps a `prev` piece, one sticking out above keeps a
# `next` piece; fully covered VAs are unmapped. keep is always false.
# ``ops(o)`` / ``final(o)``: old VA of object ``o``.

UNMAP_SHAPES: list[tuple[int, tuple[int, int, int], tuple[int, int],
                         Callable[[int | None], list[dict[str, Any]]],
                         Callable[[int | None], Layout]]] = [
    (1, (0, 1, 0), (0, 1), lambda o: [UNMAP(pg(0), P, o, N, False)], lambda o: []),
    (2, (0, 1, 0), (0, 1), lambda o: [UNMAP(pg(0), P, o, N, False)], lambda o: []),
    (3, (0, 1, 0), (0, 1), lambda o: [UNMAP(pg(0), P, o, N, False)], lambda o: []),
    (4, (0, 1, 0), (0, 2), lambda o: [UNMAP(pg(0), P, o, N, False)], lambda o: []),
    (5, (0, 2, 0), (0, 1),
     lambda o: [REMAP(None, va(pg(1), P, o, N + P), (pg(0), 2 * P, o, N), False)],
     lambda o: [(pg(1), P, o, N + P)]),
    (6, (0, 2, 0), (0, 1),
     lambda o: [REMAP(None, va(pg(1), P, o, N + P), (pg(0), 2 * P, o, N), False)],
     lambda o: [(pg(1), P, o, N + P)]),
    (7, (0, 2, 0), (1, 1),
     lambda o: [REMAP(va(pg(0), P, o, N), None, (pg(0), 2 * P, o, N), False)],
     lambda o: [(pg(0), P, o, N)]),
    (8, (0, 2, 0), (1, 1),
     lambda o: [REMAP(va(pg(0), P, o, N), None, (pg(0), 2 * P, o, N), False)],
     lambda o: [(pg(0), P, o, N)]),
    (9, (0, 2, 0), (1, 2),
     lambda o: [REMAP(va(pg(0), P, o, N), None, (pg(0), 2 * P, o, N), False)],
     lambda o: [(pg(0), P, o, N)]),
    (10, (0, 2, 0), (1, 2),
     lambda o: [REMAP(va(pg(0), P, o, N), None, (pg(0), 2 * P, o, N), False)],
     lambda o: [(pg(0), P, o, N)]),
    (11, (0, 3, 0), (1, 1),
     lambda o: [REMAP(va(pg(0), P, o, N), va(pg(2), P, o, N + 2 * P), (pg(0), 3 * P, o, N),
                      False)],
     lambda o: [(pg(0), P, o, N), (pg(2), P, o, N + 2 * P)]),
    (12, (0, 3, 0), (1, 1),
     lambda o: [REMAP(va(pg(0), P, o, N), va(pg(2), P, o, N + 2 * P), (pg(0), 3 * P, o, N),
                      False)],
     lambda o: [(pg(0), P, o, N), (pg(2), P, o, N + 2 * P)]),
    (13, (1, 1, 1), (0, 2), lambda o: [UNMAP(pg(1), P, o, N + P, False)], lambda o: []),
    (14, (1, 1, 1), (0, 3), lambda o: [UNMAP(pg(1), P, o, N + P, False)], lambda o: []),
    # diagram 15 geometry: the surviving upper piece is one page into the old VA: n+1
    (15, (1, 2, 0), (0, 2),
     lambda o: [REMAP(None, va(pg(2), P, o, N + P), (pg(1), 2 * P, o, N), False)],
     lambda o: [(pg(2), P, o, N + P)]),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("old_obj", [A_OBJ, None], ids=["obj", "null"])
@pytest.mark.parametrize(("num", "old", "req", "ops", "final"), UNMAP_SHAPES,
                         ids=[f"diagram{u[0]:02d}" for u in UNMAP_SHAPES])
def test_unmap_shape(impl: Any, old_obj: int | None, num: int, old: tuple[int, int, int],
                     req: tuple[int, int], ops: Callable[[int | None], list[dict[str, Any]]],
                     final: Callable[[int | None], Layout]) -> None:
    first, pages, rel = old
    vm = build(impl, [(pg(first), pages * P, old_obj, N + rel * P)])
    assert run(vm, "unmap", pg(req[0]), req[1] * P) == ops(old_obj)
    assert vm.state() == final(old_obj)


def test_unmap_many_vas_one_op_each_in_address_order() -> None:
    for impl in (GpuVm, RefGpuVm):
        # [0,2) sticks out below, [2,3) and [4,5) inside, [5,8) sticks out above; gap at 3
        vm = build(impl, [(pg(0), 2 * P, 1, N), (pg(2), P, None, 0), (pg(4), P, 2, 0),
                          (pg(5), 3 * P, None, 9 * P)])
        assert run(vm, "unmap", pg(1), 5 * P) == [
            REMAP(va(pg(0), P, 1, N), None, (pg(0), 2 * P, 1, N), False),
            UNMAP(pg(2), P, None, 0, False),
            UNMAP(pg(4), P, 2, 0, False),
            REMAP(None, va(pg(6), 2 * P, None, 10 * P), (pg(5), 3 * P, None, 9 * P), False),
        ]
        assert vm.state() == [(pg(0), P, 1, N), (pg(6), 2 * P, None, 10 * P)]
        # nothing in range: an empty list, nothing changes
        assert run(vm, "unmap", pg(2), 3 * P) == []
        assert vm.state() == [(pg(0), P, 1, N), (pg(6), 2 * P, None, 10 * P)]


# ---------------------------------------------------------------------------
# MADVISE: the spec's D1..D9 shapes (section 2.6), each named with the map
# diagram that has the same geometry. Madvise only splits VAs without an
# object, never unmaps, and keep is always false. A split at one boundary is
# followed by a MAP: the request itself when the split VA covers the whole
# request (D3, D4, D6), otherwise a "fill" MAP of the part of that VA inside
# the request with obj None and offset 0 (D5, D9). VAs fully inside the
# request and gaps get nothing.
#
# ``ops(q, f)`` / ``final(q, f)``: request of object ``q`` at offset ``f``; the
# old VA has no object. With an object-backed old VA every shape gives [] and
# the layout is unchanged (tested below for all of them).

Q_OBJ, Q_OFF = 7, 0x7000_0000  # a non-null request object for the madvise-reqobj variant

MADVISE_SHAPES: list[tuple[str, int, tuple[int, int, int], tuple[int, int],
                           Callable[[int | None, int], list[dict[str, Any]]],
                           Callable[[int | None, int], Layout]]] = [
    # D1: same range -> nothing
    ("D1", 1, (0, 1, 0), (0, 1), lambda q, f: [], lambda q, f: [(pg(0), P, None, N)]),
    # D2: VA is the lower part of the request -> nothing, and no final map
    ("D2", 4, (0, 1, 0), (0, 2), lambda q, f: [], lambda q, f: [(pg(0), P, None, N)]),
    # D3: request is the lower part of the VA -> remap(next) + map(request)
    ("D3", 5, (0, 2, 0), (0, 1),
     lambda q, f: [REMAP(None, va(pg(1), P, None, N + P), (pg(0), 2 * P, None, N), False),
                   MAP(pg(0), P, q, f)],
     lambda q, f: [(pg(0), P, q, f), (pg(1), P, None, N + P)]),
    # D4: request is the upper part of the VA -> remap(prev) + map(request)
    ("D4", 7, (0, 2, 0), (1, 1),
     lambda q, f: [REMAP(va(pg(0), P, None, N), None, (pg(0), 2 * P, None, N), False),
                   MAP(pg(1), P, q, f)],
     lambda q, f: [(pg(0), P, None, N), (pg(1), P, q, f)]),
    # D5: VA sticks out below, request goes beyond it -> remap(prev) + fill map
    #     of [request start, VA end) with obj None, offset 0 (not the request's)
    ("D5", 9, (0, 2, 0), (1, 2),
     lambda q, f: [REMAP(va(pg(0), P, None, N), None, (pg(0), 2 * P, None, N), False),
                   MAP(pg(1), P, None, 0)],
     lambda q, f: [(pg(0), P, None, N), (pg(1), P, None, 0)]),
    # D6: request strictly inside the VA -> remap(prev, next) + map(request)
    #     (DOC "Madvise Logic" case 1)
    ("D6", 11, (0, 3, 0), (1, 1),
     lambda q, f: [REMAP(va(pg(0), P, None, N), va(pg(2), P, None, N + 2 * P),
                         (pg(0), 3 * P, None, N), False),
                   MAP(pg(1), P, q, f)],
     lambda q, f: [(pg(0), P, None, N), (pg(1), P, q, f), (pg(2), P, None, N + 2 * P)]),
    # D7: VA is the upper part of the request -> nothing
    ("D7", 13, (1, 1, 1), (0, 2), lambda q, f: [], lambda q, f: [(pg(1), P, None, N + P)]),
    # D8: VA strictly inside the request -> nothing
    ("D8", 14, (1, 1, 1), (0, 3), lambda q, f: [], lambda q, f: [(pg(1), P, None, N + P)]),
    # D9: VA sticks out above, request starts below it -> remap(next) + fill
    #     map of [VA start, request end) with obj None, offset 0
    ("D9", 15, (1, 2, 0), (0, 2),
     lambda q, f: [REMAP(None, va(pg(2), P, None, N + P), (pg(1), 2 * P, None, N), False),
                   MAP(pg(1), P, None, 0)],
     lambda q, f: [(pg(1), P, None, 0), (pg(2), P, None, N + P)]),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("q", "f"), [(None, 0), (None, Q_OFF), (Q_OBJ, Q_OFF)],
                         ids=["off0", "offm", "reqobj"])
@pytest.mark.parametrize(("name", "num", "old", "req", "ops", "final"), MADVISE_SHAPES,
                         ids=[f"{m[0]}-diagram{m[1]:02d}" for m in MADVISE_SHAPES])
def test_madvise_shape(impl: Any, q: int | None, f: int, name: str, num: int,
                       old: tuple[int, int, int], req: tuple[int, int],
                       ops: Callable[[int | None, int], list[dict[str, Any]]],
                       final: Callable[[int | None, int], Layout]) -> None:
    first, pages, rel = old
    vm = build(impl, [(pg(first), pages * P, None, N + rel * P)])
    assert run(vm, "madvise", pg(req[0]), req[1] * P, q, f) == ops(q, f)
    assert vm.state() == final(q, f)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("name", "num", "old", "req", "ops", "final"), MADVISE_SHAPES,
                         ids=[f"{m[0]}-diagram{m[1]:02d}" for m in MADVISE_SHAPES])
def test_madvise_skips_object_backed_va(impl: Any, name: str, num: int,
                                        old: tuple[int, int, int], req: tuple[int, int],
                                        ops: Any, final: Any) -> None:
    # An old VA with a GEM object is skipped entirely: no op, not split, even
    # when it straddles a request boundary (Xe keeps BO VMAs whole).
    first, pages, rel = old
    layout: Layout = [(pg(first), pages * P, A_OBJ, N + rel * P)]
    vm = build(impl, layout)
    assert run(vm, "madvise", pg(req[0]), req[1] * P, Q_OBJ, Q_OFF) == []
    assert vm.state() == layout


# The layouts of the kernel's "Madvise Logic - Splitting and Traversal" DOC
# (numbered as there), with the middle VA gpuva2 without object ("mid-null") or
# with one ("mid-obj"). gpuva1 = [0,4), gpuva2 = [4,6), gpuva3 = [6,10); the
# outer two have no object. Offsets: gpuva1 n, gpuva2 m, gpuva3 n+10 pages.
G1 = (pg(0), 4 * P, None, N)
G3 = (pg(6), 4 * P, None, N + 10 * P)


def _g2(mid_obj: int | None) -> tuple[int, int, int | None, int]:
    return (pg(4), 2 * P, mid_obj, M_OFF)


MADV_DOC = [
    # 2) start inside gpuva1, end inside gpuva3: remap1, map1, remap2, map2;
    #    gpuva2 (fully inside) untouched.
    ("2-across-three", (pg(2), 6 * P),
     lambda g2: [REMAP(va(pg(0), 2 * P, None, N), None, G1, False),
                 MAP(pg(2), 2 * P, None, 0),
                 REMAP(None, va(pg(8), 2 * P, None, N + 12 * P), G3, False),
                 MAP(pg(6), 2 * P, None, 0)],
     lambda g2: [(pg(0), 2 * P, None, N), (pg(2), 2 * P, None, 0), g2,
                 (pg(6), 2 * P, None, 0), (pg(8), 2 * P, None, N + 12 * P)]),
    # 3a) start aligned with gpuva1, end inside gpuva3: one remap + one map
    ("3a-start-aligned", (pg(0), 8 * P),
     lambda g2: [REMAP(None, va(pg(8), 2 * P, None, N + 12 * P), G3, False),
                 MAP(pg(6), 2 * P, None, 0)],
     lambda g2: [G1, g2, (pg(6), 2 * P, None, 0), (pg(8), 2 * P, None, N + 12 * P)]),
    # 3b) start inside gpuva1, end aligned with gpuva3's start: one remap + one map
    ("3b-end-aligned", (pg(2), 4 * P),
     lambda g2: [REMAP(va(pg(0), 2 * P, None, N), None, G1, False),
                 MAP(pg(2), 2 * P, None, 0)],
     lambda g2: [(pg(0), 2 * P, None, N), (pg(2), 2 * P, None, 0), g2, G3]),
    # 4) both ends on VA boundaries: nothing
    ("4-aligned", (pg(0), 10 * P), lambda g2: [], lambda g2: [G1, g2, G3]),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mid_obj", [None, B_OBJ], ids=["mid-null", "mid-obj"])
@pytest.mark.parametrize(("name", "req", "ops", "final"), MADV_DOC, ids=[m[0] for m in MADV_DOC])
def test_madvise_doc_layouts(impl: Any, mid_obj: int | None, name: str, req: tuple[int, int],
                             ops: Any, final: Any) -> None:
    g2 = _g2(mid_obj)
    vm = build(impl, [G1, g2, G3])
    # the request's own obj/offset never shows up in these shapes: both maps are fills
    assert run(vm, "madvise", *req, Q_OBJ, Q_OFF) == ops(g2)
    assert vm.state() == final(g2)


@pytest.mark.parametrize("impl", IMPLS)
def test_madvise_doc_1_and_5(impl: Any) -> None:
    # 1) request inside one VA: one remap (prev and next) and one map, the map
    #    being the request itself (obj/offset included)
    vm = build(impl, [G1])
    assert run(vm, "madvise", pg(1), 2 * P, Q_OBJ, Q_OFF) == [
        REMAP(va(pg(0), P, None, N), va(pg(3), P, None, N + 3 * P), G1, False),
        MAP(pg(1), 2 * P, Q_OBJ, Q_OFF)]
    assert vm.state() == [(pg(0), P, None, N), (pg(1), 2 * P, Q_OBJ, Q_OFF),
                          (pg(3), P, None, N + 3 * P)]
    # 5) empty tree: nothing
    vm = build(impl, [])
    assert run(vm, "madvise", pg(0), 10 * P) == []
    assert vm.state() == []


@pytest.mark.parametrize("impl", IMPLS)
def test_madvise_mixed_object_and_null_boundaries(impl: Any) -> None:
    # null VA straddles the start, BO VA straddles the end: only the null one
    # is split (D5); the BO VA is skipped, so the fill map stops at its end.
    layout = [(pg(0), 4 * P, None, N), (pg(4), 4 * P, A_OBJ, M_OFF)]
    vm = build(impl, layout)
    assert run(vm, "madvise", pg(2), 4 * P) == [
        REMAP(va(pg(0), 2 * P, None, N), None, (pg(0), 4 * P, None, N), False),
        MAP(pg(2), 2 * P, None, 0)]
    assert vm.state() == [(pg(0), 2 * P, None, N), (pg(2), 2 * P, None, 0),
                          (pg(4), 4 * P, A_OBJ, M_OFF)]
    # BO VA straddles the start, null VA straddles the end: D9 only
    layout = [(pg(0), 4 * P, A_OBJ, M_OFF), (pg(4), 4 * P, None, N)]
    vm = build(impl, layout)
    assert run(vm, "madvise", pg(2), 4 * P) == [
        REMAP(None, va(pg(6), 2 * P, None, N + 2 * P), (pg(4), 4 * P, None, N), False),
        MAP(pg(4), 2 * P, None, 0)]
    assert vm.state() == [(pg(0), 4 * P, A_OBJ, M_OFF), (pg(4), 2 * P, None, 0),
                          (pg(6), 2 * P, None, N + 2 * P)]
