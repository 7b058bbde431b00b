"""Hypothesis properties of the split/merge generators, for both implementations.

Each property is stated from the kernel's rules (drivers/gpu/drm/drm_gpuvm.c,
``__drm_gpuvm_sm_map`` / ``__drm_gpuvm_sm_unmap`` / prefetch) in a form that
does not reuse the code under test: the expected pieces, keep flags and
layouts are derived here from a per-address model of the VM.

Layouts are random non-overlapping VAs (with and without objects, offsets
anywhere in u64 including just below 2**64) in a 64-unit VM placed at 0, in
the middle, or just below the top of the u64 space, sometimes with a
kernel-reserved node. Requests have a positive range (zero-length requests
have their own explicit tests in test_edges.py). The number of examples comes
from the hypothesis profile (tests/conftest.py: dev / ci / nightly).
"""

from __future__ import annotations

import errno
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuvm_core import GpuVm, GpuvmError, RefGpuVm

IMPLS = [pytest.param(GpuVm, id="core"), pytest.param(RefGpuVm, id="reference")]

U64 = 1 << 64
SIZE = 64                                   # VM size in units
BASES = [0, 0x10000, U64 - 0x10000]         # VM start: bottom, middle, near the top

VA = tuple[int, int, int | None, int]       # (addr, range, obj, offset)

offsets = st.one_of(st.integers(0, 64), st.integers(0, U64 - 1), st.integers(U64 - 16, U64 - 1))
objs = st.sampled_from([None, 1, 2])


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, list[VA], tuple[int, int]]:
    """(VM start, layout, (reserve_addr, reserve_range)) with the layout clear of the node."""
    base = draw(st.sampled_from(BASES))
    reserve = (0, 0)
    if draw(st.booleans()):
        # the node may stick out of the VM's end: the kernel inserts it unchecked
        reserve = (base + draw(st.integers(0, SIZE)), draw(st.integers(1, 4)))
    layout: list[VA] = []
    pos = 0
    for gap, length, obj, off in draw(st.lists(
            st.tuples(st.integers(0, 3), st.integers(1, 8), objs, offsets), max_size=12)):
        pos += gap
        if pos + length > SIZE:
            break
        a = base + pos
        pos += length
        if reserve[1] and a < reserve[0] + reserve[1] and reserve[0] < a + length:
            continue
        layout.append((a, length, obj, off))
    return base, layout, reserve


def make(impl: Any, base: int, layout: list[VA], reserve: tuple[int, int]) -> Any:
    vm = impl(base, SIZE, reserve_addr=reserve[0], reserve_range=reserve[1])
    for v in layout:
        vm.insert(*v)
    assert vm.state() == layout
    return vm


def draw_request(data: st.DataObject, base: int, layout: list[VA]) -> tuple[int, int, int | None,
                                                                            int]:
    if len(layout) > 0 and data.draw(st.booleans()):
        # near an existing VA, often strictly inside it (the split-in-three shape)
        va_a, va_r, _, _ = data.draw(st.sampled_from(layout))
        start = min(max(va_a - base + data.draw(st.integers(-2, va_r + 1)), 0), SIZE - 1)
    else:
        start = data.draw(st.integers(0, SIZE - 1))
    rng = data.draw(st.one_of(st.integers(1, min(4, SIZE - start)), st.integers(1, SIZE - start)))
    a = base + start
    q = data.draw(objs)
    # Often continue an existing VA's offset at the request address, so that
    # keep=true cases (same object, lined-up offsets) are common.
    if len(layout) > 0 and data.draw(st.booleans()):
        va_a, _, va_o, va_f = data.draw(st.sampled_from(layout))
        f = (va_f + a - va_a) % U64
        if data.draw(st.booleans()):
            q = va_o
    else:
        f = data.draw(offsets)
    return a, rng, q, f


def cover(vas: list[VA]) -> dict[int, tuple[int | None, int]]:
    """Address -> (object, offset at that address) for every covered address."""
    out: dict[int, tuple[int | None, int]] = {}
    for a, r, o, f in vas:
        for x in range(a, a + r):
            assert x not in out, "overlapping VAs"
            out[x] = (o, (f + x - a) % U64)
    return out


def hits(vas: list[VA], a: int, e: int) -> list[VA]:
    """VAs meeting [a, e), in address order."""
    return [v for v in vas if v[0] < e and a < v[0] + v[1]]


def pieces(v: VA, a: int, e: int) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The parts of ``v`` below ``a`` and above ``e`` that a split keeps (kernel rule)."""
    va_a, va_r, o, f = v
    va_e = va_a + va_r
    prev = {"addr": va_a, "range": a - va_a, "obj": o, "offset": f} if va_a < a else None
    nxt = ({"addr": e, "range": va_e - e, "obj": o, "offset": (f + e - va_a) % U64}
           if va_e > e else None)
    return prev, nxt


def old_of(op: dict[str, Any]) -> VA:
    u = op["unmap"] if op["op"] == "remap" else op
    return (u["addr"], u["range"], u["obj"], u["offset"])


def as_va(d: dict[str, Any]) -> VA:
    return (d["addr"], d["range"], d["obj"], d["offset"])


def valid(base: int, reserve: tuple[int, int], a: int, r: int) -> bool:
    """The request is inside the VM and clear of the reserved node (no overflow here)."""
    ks, kr = reserve
    return base <= a and a + r <= base + SIZE and not (kr and a < ks + kr and ks < a + r)


def refused_unchanged(vm: Any, fn: Any, *args: Any) -> None:
    before = vm.state()
    with pytest.raises(GpuvmError) as ei:
        fn(*args)
    assert ei.value.errno == errno.EINVAL
    assert vm.state() == before


# ---------------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@given(scenarios(), st.data())
def test_map_ops_and_resulting_layout(impl: Any, scen: Any, data: st.DataObject) -> None:
    base, layout, reserve = scen
    vm = make(impl, base, layout, reserve)
    a, r, q, f = draw_request(data, base, layout)
    e = a + r
    if not valid(base, reserve, a, r):
        refused_unchanged(vm, vm.sm_map_ops_create, a, r, q, f)
        return
    ops = vm.sm_map_ops_create(a, r, q, f)
    got = [op.as_dict() for op in ops]
    kinds = [op["op"] for op in got]

    # exactly one map, last, and it is the request; at most two remaps
    assert kinds.count("map") == 1 and kinds[-1] == "map"
    assert got[-1] == {"op": "map", "addr": a, "range": r, "obj": q, "offset": f}
    assert kinds.count("remap") <= 2

    # one unmap/remap per overlapped VA, ascending; remap iff the VA sticks out
    touched = hits(layout, a, e)
    assert [old_of(op) for op in got[:-1]] == touched
    for i, (op, v) in enumerate(zip(got[:-1], touched, strict=True)):
        prev, nxt = pieces(v, a, e)
        if prev is None and nxt is None:
            assert op["op"] == "unmap"
        else:
            assert op["op"] == "remap" and (op["prev"], op["next"]) == (prev, nxt)
        if prev is not None:
            assert i == 0                  # only the first VA can stick out below
        if nxt is not None:
            assert i == len(touched) - 1   # only the last VA can stick out above
        # keep: same non-null object and the old VA's offset, carried to any
        # address, equals the request's offset at that address
        keep = v[2] is not None and v[2] == q and (v[3] - v[0]) % U64 == (f - a) % U64
        keep_got = op["unmap"]["keep"] if op["op"] == "remap" else op["keep"]
        assert keep_got is keep

    # applying the ops yields the requested layout
    before = cover(layout)
    assert vm.apply(ops) == 0
    after_state = vm.state()
    kept = [v for v in layout if v not in touched]
    split = [as_va(p) for v in touched for p in pieces(v, a, e) if p is not None]
    assert after_state == sorted(kept + split + [(a, r, q, f)])
    after = cover(after_state)
    for x in range(base - 4, base + SIZE + 4):
        if a <= x < e:
            assert after[x] == (q, (f + x - a) % U64)
        else:
            assert after.get(x) == before.get(x)


@pytest.mark.parametrize("impl", IMPLS)
@given(scenarios(), st.data())
def test_unmap_clears_range_only(impl: Any, scen: Any, data: st.DataObject) -> None:
    base, layout, reserve = scen
    vm = make(impl, base, layout, reserve)
    a, r, _, _ = draw_request(data, base, layout)
    e = a + r
    if not valid(base, reserve, a, r):
        refused_unchanged(vm, vm.sm_unmap_ops_create, a, r)
        return
    ops = vm.sm_unmap_ops_create(a, r)
    got = [op.as_dict() for op in ops]
    touched = hits(layout, a, e)
    assert [old_of(op) for op in got] == touched
    for op, v in zip(got, touched, strict=True):
        prev, nxt = pieces(v, a, e)
        if prev is None and nxt is None:
            assert op == {"op": "unmap", **dict(zip(("addr", "range", "obj", "offset"), v,
                                                    strict=True)), "keep": False}
        else:
            assert op["op"] == "remap" and (op["prev"], op["next"]) == (prev, nxt)
            assert op["unmap"]["keep"] is False
    before = cover(layout)
    assert vm.apply(ops) == 0
    kept = [v for v in layout if v not in touched]
    split = [as_va(p) for v in touched for p in pieces(v, a, e) if p is not None]
    assert vm.state() == sorted(kept + split)
    after = cover(vm.state())
    for x in range(base - 4, base + SIZE + 4):
        assert after.get(x) == (None if a <= x < e else before.get(x))


@pytest.mark.parametrize("impl", IMPLS)
@given(scenarios(), st.data())
def test_madvise_splits_only_null_vas_at_request_edges(impl: Any, scen: Any,
                                                       data: st.DataObject) -> None:
    base, layout, reserve = scen
    vm = make(impl, base, layout, reserve)
    a, r, q, f = draw_request(data, base, layout)
    e = a + r
    if not valid(base, reserve, a, r):
        refused_unchanged(vm, vm.madvise_ops_create, a, r, q, f)
        return
    ops = vm.madvise_ops_create(a, r, q, f)
    got = [op.as_dict() for op in ops]
    kinds = [op["op"] for op in got]
    assert kinds in ([], ["remap", "map"], ["remap", "map", "remap", "map"])

    # the split VAs: exactly the object-less VAs crossing a request edge
    crossing = [v for v in layout
                if v[2] is None and (v[0] < a < v[0] + v[1] or v[0] < e < v[0] + v[1])]
    assert [old_of(op) for op in got if op["op"] == "remap"] == crossing
    maps = []
    for i in range(0, len(got), 2):
        remap, mp = got[i], got[i + 1]
        v = old_of(remap)
        assert (remap["prev"], remap["next"]) == pieces(v, a, e)
        assert remap["unmap"]["keep"] is False
        va_a, va_e = v[0], v[0] + v[1]
        if va_a <= a and va_e >= e:
            want = (a, r, q, f)              # the VA spans the request: the map is the request
        elif va_a < a:
            want = (a, va_e - a, None, 0)    # fill from the request start to the VA end
        else:
            want = (va_a, e - va_a, None, 0)  # fill from the VA start to the request end
        assert as_va(mp) == want
        maps.append(want)

    before = cover(layout)
    assert vm.apply(ops) == 0
    after_state = vm.state()
    split = [as_va(p) for v in crossing for p in pieces(v, a, e) if p is not None]
    assert after_state == sorted([v for v in layout if v not in crossing] + split + maps)
    # object-backed VAs are never touched
    assert [v for v in after_state if v[2] is not None and v not in maps] == \
        [v for v in layout if v[2] is not None]
    # the covered addresses are the same; outside the request nothing changed;
    # inside, an object-less request keeps every address object-less
    after = cover(after_state)
    assert after.keys() == before.keys()
    for x in before:
        if not a <= x < e:
            assert after[x] == before[x]
        elif q is None or before[x][0] is not None:
            assert after[x][0] == before[x][0]
    # new VA boundaries only at the request's edges
    def edges(vas: list[VA]) -> set[int]:
        return {p for v in vas for p in (v[0], v[0] + v[1])}
    assert edges(after_state) - edges(layout) <= {a, e}


@pytest.mark.parametrize("impl", IMPLS)
@given(scenarios(), st.integers(-4, SIZE + 4), st.integers(1, SIZE + 8))
def test_prefetch_lists_intersecting_vas(impl: Any, scen: Any, start: int, rng: int) -> None:
    # drm_gpuvm_prefetch_ops_create: no range check (may reach outside the VM),
    # and it walks the tree, so the reserved node is listed when it intersects.
    base, layout, reserve = scen
    vm = make(impl, base, layout, reserve)
    a = max(base + start, 0)
    every = sorted(layout + ([(reserve[0], reserve[1], None, 0)] if reserve[1] else []))
    want = [{"op": "prefetch", "addr": v[0], "range": v[1], "obj": v[2], "offset": v[3]}
            for v in hits(every, a, a + rng)]
    assert [op.as_dict() for op in vm.prefetch_ops_create(a, rng)] == want
    assert vm.state() == layout


@pytest.mark.parametrize("impl", IMPLS)
@given(st.sampled_from(BASES), st.integers(0, U64 - 1), st.integers(0, U64 - 1),
       st.integers(0, U64 - 1), st.integers(0, 8), st.data())
def test_range_valid_rules(impl: Any, base: int, far_a: int, far_r: int, ks: int, kr: int,
                           data: st.DataObject) -> None:
    # drm_gpuvm_range_valid: no u64 overflow of addr+range; inside
    # [mm_start, mm_start+mm_range); not meeting the reserved node. Requests
    # are drawn near the VM edges and anywhere in u64.
    ks = data.draw(st.sampled_from([ks, base + 8]))
    vm = impl(base, SIZE, reserve_addr=ks, reserve_range=kr)
    near = st.integers(max(base - 4, 0), min(base + SIZE + 4, U64 - 1))
    a = data.draw(st.one_of(near, st.just(far_a)))
    r = data.draw(st.one_of(st.integers(0, SIZE + 8), st.just(far_r), st.just(U64 - a)))
    r = min(r, U64 - 1)
    kend = (ks + kr) % U64
    want = (a + r < U64 and a >= base and a + r <= base + SIZE
            and not (kr and a < kend and ks < a + r))
    assert vm.range_valid(a, r) is want
    for fn in (vm.sm_map_ops_create, vm.madvise_ops_create):
        if want:
            fn(a, r)
        else:
            refused_unchanged(vm, fn, a, r)
    if not want:
        refused_unchanged(vm, vm.sm_unmap_ops_create, a, r)
        refused_unchanged(vm, vm.insert, a, r)
