"""Kernel corner cases, each with its reason, and refusals, for both implementations.

Zero-length requests, u64 wrap-around, the range_valid rules, the quirks of
find_prev / find_next, the kernel-reserved node, and every refusal (errno and
an unchanged VM). Expected values are derived by hand from
drivers/gpu/drm/drm_gpuvm.c (torvalds/linux cb9f145f); see docs/gpuvm.md for
the model. Two kernel facts explain most of what follows:

* The tree's overlap query uses *inclusive* intervals ``[addr, addr+range-1]``
  computed in u64. For ``range == 0`` that is ``[addr, addr-1]``: it meets only
  a VA that contains both ``addr-1`` and ``addr``; at ``addr == 0`` it wraps to
  ``[0, 2**64-1]`` and meets everything.
* ``drm_gpuvm_range_valid`` rejects only u64 overflow of ``addr+range``, a
  range outside ``[mm_start, mm_start+mm_range)`` and overlap with the
  reserved node; ``range == 0`` is accepted (drivers reject it at the ioctl).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

import pytest

from gpuvm_core import GpuVm, GpuvmError, RefGpuVm

IMPLS = [pytest.param(GpuVm, id="core"), pytest.param(RefGpuVm, id="reference")]
U64 = 1 << 64
M = U64 - 1


def t(v: Any) -> Any:
    return None if v is None else v.as_tuple()


def ops_of(vm: Any, call: str, *args: Any) -> tuple[list[dict[str, Any]], int]:
    fn = {"map": vm.sm_map_ops_create, "unmap": vm.sm_unmap_ops_create,
          "madvise": vm.madvise_ops_create}[call]
    ops = fn(*args)
    got = [op.as_dict() for op in ops]
    return got, vm.apply(ops)


def piece(a: int, r: int, o: int | None, f: int) -> dict[str, Any]:
    return {"addr": a, "range": r, "obj": o, "offset": f}


# ---------------------------------------------------------------------------
# Zero-length requests


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_length_map_inside_a_va_splits_it(impl: Any) -> None:
    # find_first(A, 0) queries [A, A-1], which meets the VA strictly containing
    # A; the walker sees it start below A and end above E (= A): the middle
    # split (M6). The zero-length VA then goes in (its own query [A, A-1] meets
    # nothing any more) and is listed after the piece that starts at A.
    vm = impl(0, 1 << 20)
    vm.insert(0x1000, 0x3000, 1, 0x10)
    got, failed = ops_of(vm, "map", 0x2000, 0, 1, 0x1010)
    assert got == [
        {"op": "remap", "prev": piece(0x1000, 0x1000, 1, 0x10),
         "next": piece(0x2000, 0x2000, 1, 0x1010),
         "unmap": {**piece(0x1000, 0x3000, 1, 0x10), "keep": True}},   # offsets line up
        {"op": "map", **piece(0x2000, 0, 1, 0x1010)}]
    assert failed == 0
    assert vm.state() == [(0x1000, 0x1000, 1, 0x10), (0x2000, 0x2000, 1, 0x1010),
                          (0x2000, 0, 1, 0x1010)]


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_length_unmap_and_madvise_inside_a_va_split_it(impl: Any) -> None:
    # Same query as above: an unmap of nothing still splits the VA in two.
    vm = impl(0, 1 << 20)
    vm.insert(0x1000, 0x3000, None, 0x10)
    got, _ = ops_of(vm, "unmap", 0x2000, 0)
    assert got == [{"op": "remap", "prev": piece(0x1000, 0x1000, None, 0x10),
                    "next": piece(0x2000, 0x2000, None, 0x1010),
                    "unmap": {**piece(0x1000, 0x3000, None, 0x10), "keep": False}}]
    assert vm.state() == [(0x1000, 0x1000, None, 0x10), (0x2000, 0x2000, None, 0x1010)]
    # madvise inside an object-less VA: the D6 shape, and the final map is the
    # zero-length request itself (with its object)
    vm = impl(0, 1 << 20)
    vm.insert(0x1000, 0x3000, None, 0x10)
    got, _ = ops_of(vm, "madvise", 0x2000, 0, 5, 0x50)
    assert got == [{"op": "remap", "prev": piece(0x1000, 0x1000, None, 0x10),
                    "next": piece(0x2000, 0x2000, None, 0x1010),
                    "unmap": {**piece(0x1000, 0x3000, None, 0x10), "keep": False}},
                   {"op": "map", **piece(0x2000, 0, 5, 0x50)}]
    assert vm.state() == [(0x1000, 0x1000, None, 0x10), (0x2000, 0x2000, None, 0x1010),
                          (0x2000, 0, 5, 0x50)]
    # ... but an object-backed VA is skipped by madvise, zero length or not
    vm = impl(0, 1 << 20)
    vm.insert(0x1000, 0x3000, 1, 0)
    assert ops_of(vm, "madvise", 0x2000, 0) == ([], 0)


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_length_at_a_boundary_splits_nothing(impl: Any) -> None:
    # At a VA's start (or end) no VA contains both A-1 and A: nothing to split.
    vm = impl(0, 1 << 20)
    vm.insert(0x1000, 0x1000, 1, 0)
    assert ops_of(vm, "unmap", 0x1000, 0) == ([], 0)
    assert ops_of(vm, "unmap", 0x2000, 0) == ([], 0)
    got, failed = ops_of(vm, "map", 0x1000, 0, 2, 0)
    assert got == [{"op": "map", **piece(0x1000, 0, 2, 0)}] and failed == 0
    # ties at one address: insertion order, so the zero-length VA comes second
    assert vm.state() == [(0x1000, 0x1000, 1, 0), (0x1000, 0, 2, 0)]


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_length_va_is_only_reached_by_requests_strictly_around_it(impl: Any) -> None:
    # A zero-length VA at X has the interval [X, X-1]: a query [s, l] meets it
    # only when s < X <= l. Requests starting at X, or ending at X, never see it.
    X = 0x4000
    vm = impl(0, 1 << 20)
    vm.apply(vm.sm_map_ops_create(X, 0, 3, 0))
    assert vm.state() == [(X, 0, 3, 0)]
    assert vm.find_first(X, 0x1000) is None and vm.find_first(0x3000, 0x1000) is None
    assert t(vm.find_first(0x3000, 0x1001)) == (X, 0, 3, 0)
    assert vm.find(X, 0) is None            # find() goes through find_first: not found either
    assert ops_of(vm, "unmap", X, 0x1000) == ([], 0)
    assert ops_of(vm, "unmap", 0x3000, 0x1000) == ([], 0)
    got, _ = ops_of(vm, "map", X, 0x1000, 4, 0)
    assert got == [{"op": "map", **piece(X, 0x1000, 4, 0)}]
    assert vm.state() == [(X, 0, 3, 0), (X, 0x1000, 4, 0)]
    # a request with s < X < E removes it (M8: starts above the request, ends below)
    got, _ = ops_of(vm, "unmap", X - 0x1000, 0x3000)
    assert got == [{"op": "unmap", **piece(X, 0, 3, 0), "keep": False},
                   {"op": "unmap", **piece(X, 0x1000, 4, 0), "keep": False}]
    assert vm.state() == []


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("zobj", [1, None], ids=["obj", "null"])
def test_zero_length_va_at_zero_meets_everything(impl: Any, zobj: int | None) -> None:
    # At address 0 the zero-length interval is [0, 2**64-1]: every query meets it.
    def fresh() -> Any:
        vm = impl(0, 1 << 20)
        got, failed = ops_of(vm, "map", 0, 0, zobj, 7)   # empty tree: the insert succeeds
        assert got == [{"op": "map", **piece(0, 0, zobj, 7)}] and failed == 0
        return vm

    vm = fresh()
    assert t(vm.find_first(0x50000, 1)) == (0, 0, zobj, 7)
    assert not vm.interval_empty(0x70000, 0x1000)
    before = vm.state()
    with pytest.raises(GpuvmError) as ei:                 # every insert overlaps it
        vm.insert(0x10000, 0x1000)
    assert ei.value.errno == errno.EEXIST and vm.state() == before
    # Another zero-length map at 0: the walk visits nothing (it stops at addr < 0),
    # the op list is just the map, and the tree refuses its insert (the oddity
    # the vectors record as apply_failures: 1).
    assert ops_of(vm, "map", 0, 0, 9, 9) == ([{"op": "map", **piece(0, 0, 9, 9)}], 1)
    assert vm.state() == before
    # A map at A > 0: the zero-length VA starts below A and its end (0) is below
    # E, so it is the "starts below, ends inside" case (M5) and its kept `prev`
    # piece is [0, A): the remap turns it into a real mapping below the request.
    vm = fresh()
    got, failed = ops_of(vm, "map", 0x3000, 0x1000, 2, 5)
    assert got == [{"op": "remap", "prev": piece(0, 0x3000, zobj, 7), "next": None,
                    "unmap": {**piece(0, 0, zobj, 7), "keep": False}},
                   {"op": "map", **piece(0x3000, 0x1000, 2, 5)}]
    assert failed == 0 and vm.state() == [(0, 0x3000, zobj, 7), (0x3000, 0x1000, 2, 5)]
    # keep is computed as usual: same object, 7 + 0x3000 == request offset
    if zobj is not None:
        vm = fresh()
        got, _ = ops_of(vm, "map", 0x3000, 0x1000, zobj, 7 + 0x3000)
        assert got[0]["unmap"]["keep"] is True
    # ... and an unmap at A > 0 likewise *creates* [0, A)
    vm = fresh()
    got, failed = ops_of(vm, "unmap", 0x3000, 0x1000)
    assert got == [{"op": "remap", "prev": piece(0, 0x3000, zobj, 7), "next": None,
                    "unmap": {**piece(0, 0, zobj, 7), "keep": False}}]
    assert failed == 0 and vm.state() == [(0, 0x3000, zobj, 7)]
    # a request starting at 0 sees it as "same start, ends inside" (M2): unmapped
    vm = fresh()
    assert ops_of(vm, "unmap", 0, 0x1000) == (
        [{"op": "unmap", **piece(0, 0, zobj, 7), "keep": False}], 0)
    assert vm.state() == []
    # madvise at A > 0: an object-backed one is skipped; an object-less one is
    # D5, whose fill map spans [A, 0) = 2**64 - A units: its insert overflows
    # u64 and is refused while applying
    vm = fresh()
    got, failed = ops_of(vm, "madvise", 0x3000, 0x1000)
    if zobj is not None:
        assert (got, failed) == ([], 0) and vm.state() == [(0, 0, zobj, 7)]
    else:
        assert got == [{"op": "remap", "prev": piece(0, 0x3000, None, 7), "next": None,
                        "unmap": {**piece(0, 0, None, 7), "keep": False}},
                       {"op": "map", **piece(0x3000, U64 - 0x3000, None, 0)}]
        assert failed == 1 and vm.state() == [(0, 0x3000, None, 7)]


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_length_validity_at_edges(impl: Any) -> None:
    # [A, A) is inside the VM even at A == mm_end (end <= mm_end), and clear
    # of the reserved node at its start or end, but not strictly inside it.
    vm = impl(0x1000, 0x10000, reserve_addr=0x8000, reserve_range=0x1000)
    assert vm.range_valid(0x11000, 0) and not vm.range_valid(0x11001, 0)
    assert vm.range_valid(0x1000, 0) and not vm.range_valid(0xfff, 0)
    assert vm.range_valid(0x8000, 0) and vm.range_valid(0x9000, 0)
    assert not vm.range_valid(0x8001, 0)
    vm.insert(0x11000, 0)
    vm.insert(0x8000, 0)
    assert vm.state() == [(0x8000, 0, None, 0), (0x11000, 0, None, 0)]


# ---------------------------------------------------------------------------
# u64 wrap-around and range_valid


@pytest.mark.parametrize("impl", IMPLS)
def test_range_valid_overflow_rules(impl: Any) -> None:
    # VM [0, 2**64-1): the largest VM whose end does not wrap.
    vm = impl(0, M)
    assert vm.range_valid(M - 0x1000, 0x1000)       # ends exactly at mm_end
    assert not vm.range_valid(M - 0xfff, 0x1000)    # addr+range == 2**64: an overflow
    assert not vm.range_valid(1, M)                 # also exactly 2**64
    assert not vm.range_valid(M, 1)
    assert vm.range_valid(M, 0) and vm.range_valid(0, M)
    assert not vm.range_valid(0x1000, M)            # wraps far past 2**64
    for call in ("map", "unmap", "madvise"):
        with pytest.raises(GpuvmError) as ei:
            ops_of(vm, call, M - 0xfff, 0x1000)
        assert ei.value.errno == errno.EINVAL and "overflows" in str(ei.value)
    va = vm.insert(M - 0x1000, 0x1000, 1, M)        # the last unit below 2**64-1
    assert va.end == M
    assert t(vm.find_next(M - 1)) == (M - 0x1000, 0x1000, 1, M)
    assert vm.find_next(M) is None                  # [M, M+1) overflows
    assert vm.find_prev(0) is None                  # start-1 wraps to 2**64-1: [M, M+1) overflows


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("span", [0x10_0000, 0x20_0000], ids=["ends-at-2**64", "ends-past-2**64"])
def test_vm_reaching_2_64_accepts_nothing(impl: Any, span: int) -> None:
    # drm_gpuvm_init only WARNs when start+range overflows; mm_start+mm_range
    # then wraps to a small number and no request has end <= that and
    # addr >= mm_start: the VM is unusable (kernel behaviour, kept).
    vm = impl(U64 - 0x10_0000, span)
    for a, r in ((U64 - 0x10_0000, 0x1000), (U64 - 0x10_0000, 0), (M, 0)):
        assert not vm.range_valid(a, r)
        for call in ("map", "unmap", "madvise"):
            with pytest.raises(GpuvmError) as ei:
                ops_of(vm, call, a, r)
            assert ei.value.errno == errno.EINVAL
        with pytest.raises(GpuvmError):
            vm.insert(a, r)
    assert vm.find_prev(M) is None and vm.find_next(U64 - 0x10_0000) is None
    assert vm.state() == []


@pytest.mark.parametrize("impl", IMPLS)
def test_offsets_wrap_mod_2_64(impl: Any) -> None:
    # Object offsets are u64 and the pieces' offsets are computed with wrap.
    f = U64 - 0x1000
    vm = impl(0, 1 << 20)
    vm.insert(0x1000, 0x4000, 1, f)
    # request at +0x2000 with offset 0x1000: f + 0x2000 wraps to 0x1000 -> keep
    got, _ = ops_of(vm, "map", 0x3000, 0x1000, 1, 0x1000)
    assert got[0] == {"op": "remap", "prev": piece(0x1000, 0x2000, 1, f),
                      "next": piece(0x4000, 0x1000, 1, 0x2000),      # f + 0x3000 wrapped
                      "unmap": {**piece(0x1000, 0x4000, 1, f), "keep": True}}
    assert vm.state() == [(0x1000, 0x2000, 1, f), (0x3000, 0x1000, 1, 0x1000),
                          (0x4000, 0x1000, 1, 0x2000)]
    # unmap's next piece wraps the same way
    vm = impl(0, 1 << 20)
    vm.insert(0x1000, 0x4000, None, f)
    got, _ = ops_of(vm, "unmap", 0x1000, 0x1800)
    assert got == [{"op": "remap", "prev": None, "next": piece(0x2800, 0x2800, None, 0x800),
                    "unmap": {**piece(0x1000, 0x4000, None, f), "keep": False}}]


@pytest.mark.parametrize("impl", IMPLS)
def test_prefetch_has_no_range_check_and_wraps(impl: Any) -> None:
    # drm_gpuvm_prefetch_ops_create does not call range_valid; it walks from
    # find_first(addr, range) while va.addr < addr+range (computed in u64).
    vm = impl(0x1000, 1 << 20)
    for a in (0x1000, 0x3000, 0x5000):
        vm.insert(a, 0x1000, 1, a)

    def pf(a: int, r: int) -> list[int]:
        return [op.as_dict()["addr"] for op in vm.prefetch_ops_create(a, r)]

    assert pf(0, 1 << 30) == [0x1000, 0x3000, 0x5000]    # reaches outside the VM
    assert pf(0x3800, 0) == [0x3000]                      # range 0: the VA strictly around it
    assert pf(0x3000, 0) == []
    # the end wraps to 0x37ff: only the VA found first (around 0x3800) is listed,
    # the walk stops at the next VA (0x5000 >= 0x37ff)
    assert pf(0x3800, M) == [0x3000]
    # [0, 0) queries [0, 2**64-1], meets the first VA, but the walk needs addr < 0: empty
    assert pf(0, 0) == []


@pytest.mark.parametrize("impl", IMPLS)
def test_reserved_node_with_wrapping_end(impl: Any) -> None:
    # drm_gpuvm_init inserts the node only when its end does not overflow, but
    # range_valid still tests against it with the wrapped end (kend = 0x2000).
    vm = impl(0, M, reserve_addr=M - 0xfff, reserve_range=0x3000)
    assert vm.kernel_node is None
    assert vm.prefetch_ops_create(0, M).as_dicts() == []     # not in the tree
    assert vm.range_valid(0x1000, 0x1000)                  # ends below kstart: clear
    assert not vm.range_valid(0x1000, M - 0x1000)          # addr < kend and end > kstart
    assert vm.range_valid(0x2000, M - 0x2000)              # addr == kend: clear
    vm.insert(0, M - 0x1000, 1, 0)                         # end <= kstart: allowed


# ---------------------------------------------------------------------------
# find_prev / find_next and the reserved node


def _quirk_vm(impl: Any) -> Any:
    # X [0x2000, 0x3000) and Y [0x3000, 0x4000) adjacent; gap; Z [0x5001, 0x6000);
    # reserved node [0x8000, 0x9000); VM [0x1000, 0x101000).
    vm = impl(0x1000, 1 << 20, reserve_addr=0x8000, reserve_range=0x1000)
    for a, r in ((0x2000, 0x1000), (0x3000, 0x1000), (0x5001, 0xfff)):
        vm.insert(a, r, 1, a)
    return vm


X, Y, Z = (0x2000, 0x1000, 1, 0x2000), (0x3000, 0x1000, 1, 0x3000), (0x5001, 0xfff, 1, 0x5001)
KNODE = (0x8000, 0x1000, None, 0)


@pytest.mark.parametrize("impl", IMPLS)
def test_find_prev_quirks(impl: Any) -> None:
    # drm_gpuva_find_prev(start): NULL unless [start-1, start) is a valid
    # range, else the first VA meeting the inclusive [start-1, start].
    vm = _quirk_vm(impl)
    assert t(vm.find_prev(0x3000)) == X            # the VA ending at start (intended use)
    assert t(vm.find_prev(0x2000)) == X            # quirk: nothing ends at start, the VA
                                                   # *starting* at start is returned
    assert vm.find_prev(0x4800) is None            # gap on both sides
    assert vm.find_prev(0x1000) is None            # start-1 outside the VM
    assert vm.find_prev(0x9000) is None            # start-1 inside the reserved node
    assert t(vm.find_prev(0x8000)) == KNODE        # quirk: the reserved node itself
    assert vm.find_prev(0) is None                 # start-1 wraps to 2**64-1


@pytest.mark.parametrize("impl", IMPLS)
def test_find_next_quirks(impl: Any) -> None:
    # drm_gpuva_find_next(end): NULL unless [end, end+1) is a valid range,
    # else the first VA meeting the inclusive [end, end+1].
    vm = _quirk_vm(impl)
    assert t(vm.find_next(0x3000)) == Y            # the VA starting at end (intended use)
    assert t(vm.find_next(0x2800)) == X            # quirk: a VA covering end is returned
    assert vm.find_next(0x4000) is None            # gap
    assert t(vm.find_next(0x5000)) == Z            # quirk: a VA starting at end+1
    assert t(vm.find_next(0x7fff)) == KNODE        # quirk: ... even the reserved node
    assert vm.find_next(0x8000) is None            # end inside the reserved node
    assert vm.find_next(0x101000) is None          # end == mm_end: [end, end+1) outside
    assert vm.find_next(0x100fff) is None          # valid, nothing there
    assert vm.find_next(M) is None                 # end+1 overflows


@pytest.mark.parametrize("impl", IMPLS)
def test_reserved_node(impl: Any) -> None:
    vm = _quirk_vm(impl)
    # hidden from iteration, len() and state(), but it is in the tree
    assert len(vm) == 3 and vm.state() == [X, Y, Z]
    assert t(vm.find_first(0x7000, 0x2000)) == KNODE and not vm.interval_empty(0x8800, 1)
    assert vm.find(0x8000, 0x1000) is not None
    assert [op.as_dict()["addr"] for op in vm.prefetch_ops_create(0x7000, 0x3000)] == [0x8000]
    # requests meeting it are EINVAL (range_valid), not EEXIST, for insert too;
    # requests touching its edges are fine
    for a, r in ((0x8000, 0x1000), (0x7800, 0x1000), (0x8800, 0x1000), (0x7000, 0x3000)):
        for call in ("map", "unmap", "madvise"):
            with pytest.raises(GpuvmError) as ei:
                ops_of(vm, call, a, r)
            assert ei.value.errno == errno.EINVAL and "reserved" in str(ei.value)
        with pytest.raises(GpuvmError) as ei:
            vm.insert(a, r)
        assert ei.value.errno == errno.EINVAL
    assert ops_of(vm, "map", 0x7000, 0x1000, 2, 0)[1] == 0
    assert ops_of(vm, "map", 0x9000, 0x1000, 2, 0)[1] == 0
    # removing it is refused (the kernel WARNs and does nothing); nothing changes
    before = vm.state()
    node = vm.kernel_node
    assert node is not None and node.reserved
    with pytest.raises(GpuvmError) as ei:
        vm.remove(node)
    assert ei.value.errno == errno.EINVAL
    assert vm.state() == before and t(vm.find_first(0x8000, 1)) == KNODE
    # a zero-length VA at 0 would meet every VA: the node is enough to refuse it
    vm0 = impl(0, 1 << 20, reserve_addr=0x8000, reserve_range=0x1000)
    with pytest.raises(GpuvmError) as ei:
        vm0.insert(0, 0)
    assert ei.value.errno == errno.EEXIST


@pytest.mark.parametrize("impl", IMPLS)
def test_reserved_node_outside_the_vm_is_still_inserted(impl: Any) -> None:
    # drm_gpuvm_init inserts it with __drm_gpuva_insert, without range_valid.
    vm = impl(0x10000, 0x10000, reserve_addr=0x1000, reserve_range=0x1000)
    assert t(vm.kernel_node) == (0x1000, 0x1000, None, 0)
    assert t(vm.find_first(0, 0x10000)) == (0x1000, 0x1000, None, 0)
    assert vm.state() == [] and vm.range_valid(0x10000, 0x10000)


# ---------------------------------------------------------------------------
# Refusals: errno, and the VM left exactly as it was


def _vm(impl: Any) -> Any:
    vm = impl(0x1000, 1 << 20, reserve_addr=0x80000, reserve_range=0x1000)
    vm.insert(0x2000, 0x2000, 1, 0x10)
    vm.insert(0x6000, 0x1000, None, 0)
    return vm


BIG = 1 << 64
BAD_VALUES: list[tuple[str, object, type[BaseException] | int]] = [
    ("negative", -1, errno.EINVAL),
    ("2**64", BIG, errno.EINVAL),
    ("huge", 1 << 100, errno.EINVAL),
    ("float", 4096.0, TypeError),
    ("str", "4096", TypeError),
    ("None", None, TypeError),
    ("bool", True, TypeError),
]

# name -> call taking (vm, value) that puts ``value`` in one u64 argument
U64_ARGS: dict[str, Callable[[Any, Any], Any]] = {
    "map.addr": lambda vm, v: vm.sm_map_ops_create(v, 0x1000, 1, 0),
    "map.range": lambda vm, v: vm.sm_map_ops_create(0x10000, v, 1, 0),
    "map.offset": lambda vm, v: vm.sm_map_ops_create(0x10000, 0x1000, 1, v),
    "madvise.addr": lambda vm, v: vm.madvise_ops_create(v, 0x1000),
    "madvise.range": lambda vm, v: vm.madvise_ops_create(0x2000, v),
    "madvise.offset": lambda vm, v: vm.madvise_ops_create(0x2000, 0x1000, None, v),
    "unmap.addr": lambda vm, v: vm.sm_unmap_ops_create(v, 0x1000),
    "unmap.range": lambda vm, v: vm.sm_unmap_ops_create(0x2000, v),
    "prefetch.addr": lambda vm, v: vm.prefetch_ops_create(v, 0x1000),
    "prefetch.range": lambda vm, v: vm.prefetch_ops_create(0x2000, v),
    "insert.addr": lambda vm, v: vm.insert(v, 0x1000),
    "insert.range": lambda vm, v: vm.insert(0x10000, v),
    "insert.offset": lambda vm, v: vm.insert(0x10000, 0x1000, 1, v),
    "find.addr": lambda vm, v: vm.find(v, 0x1000),
    "find_first.range": lambda vm, v: vm.find_first(0x2000, v),
    "find_prev": lambda vm, v: vm.find_prev(v),
    "find_next": lambda vm, v: vm.find_next(v),
    "range_valid.addr": lambda vm, v: vm.range_valid(v, 1),
    "interval_empty.range": lambda vm, v: vm.interval_empty(0x2000, v),
    "va_range.addr": lambda vm, v: vm.va_range(v, 0x1000),
}


def _refused(vm: Any, call: Callable[[], Any], want: type[BaseException] | int) -> None:
    before, n, node = vm.state(), len(vm), t(vm.kernel_node)
    if isinstance(want, int):
        with pytest.raises(GpuvmError) as ei:
            call()
        assert ei.value.errno == want
        assert str(ei.value)                      # a message saying what was wrong
    else:
        with pytest.raises(want):
            call()
    assert vm.state() == before and len(vm) == n and t(vm.kernel_node) == node


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("bad", "value", "want"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
@pytest.mark.parametrize("where", list(U64_ARGS))
def test_u64_arguments_refused_never_truncated(impl: Any, where: str, bad: str, value: object,
                                               want: type[BaseException] | int) -> None:
    # A truncated 2**64 would be 0 and -1 would be 2**64-1: both are valid
    # values here, so a silent conversion would not raise.
    vm = _vm(impl)
    _refused(vm, lambda: U64_ARGS[where](vm, value), want)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("value", "want"), [(-1, errno.EINVAL), (1 << 63, errno.EINVAL),
                                             (BIG, errno.EINVAL), (1.0, TypeError),
                                             ("1", TypeError), (True, TypeError),
                                             (False, TypeError)])
@pytest.mark.parametrize("call", ["map", "madvise", "insert"])
def test_object_handles_refused(impl: Any, call: str, value: object,
                                want: type[BaseException] | int) -> None:
    # handles are None or ints in [0, 2**63) (int64 storage in the compiled core)
    vm = _vm(impl)
    fn = {"map": lambda: vm.sm_map_ops_create(0x10000, 0x1000, value, 0),
          "madvise": lambda: vm.madvise_ops_create(0x10000, 0x1000, value, 0),
          "insert": lambda: vm.insert(0x10000, 0x1000, value, 0)}[call]
    _refused(vm, fn, want)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("field", ["start", "range", "reserve_addr", "reserve_range"])
@pytest.mark.parametrize(("value", "want"), [(-1, errno.EINVAL), (BIG, errno.EINVAL),
                                             (1.5, TypeError), (True, TypeError)])
def test_constructor_refuses_bad_values(impl: Any, field: str, value: object,
                                        want: type[BaseException] | int) -> None:
    kw: dict[str, object] = {"start": 0, "range": 1 << 20, "reserve_addr": 0x1000,
                             "reserve_range": 0x1000, field: value}
    if isinstance(want, int):
        with pytest.raises(GpuvmError) as ei:
            impl(kw.pop("start"), kw.pop("range"), **kw)
        assert ei.value.errno == want and field in str(ei.value)
    else:
        with pytest.raises(want):
            impl(kw.pop("start"), kw.pop("range"), **kw)


# Kernel refusals: (what, call on the VM of _vm(), errno)
REFUSALS: list[tuple[str, Callable[[Any], Any], int]] = [
    ("map below the VM", lambda vm: vm.sm_map_ops_create(0, 0x2000, 1, 0), errno.EINVAL),
    ("map above the VM", lambda vm: vm.sm_map_ops_create(0x100800, 0x1000), errno.EINVAL),
    ("map overflow", lambda vm: vm.sm_map_ops_create(M, 2), errno.EINVAL),
    ("map over reserved", lambda vm: vm.sm_map_ops_create(0x7f000, 0x2000), errno.EINVAL),
    ("madvise outside", lambda vm: vm.madvise_ops_create(0x100000, 0x2000), errno.EINVAL),
    ("madvise over reserved", lambda vm: vm.madvise_ops_create(0x80000, 1), errno.EINVAL),
    ("unmap outside", lambda vm: vm.sm_unmap_ops_create(0x800, 0x1000), errno.EINVAL),
    ("unmap overflow", lambda vm: vm.sm_unmap_ops_create(0x2000, M), errno.EINVAL),
    ("insert overlap", lambda vm: vm.insert(0x3000, 0x1000), errno.EEXIST),
    ("insert identical", lambda vm: vm.insert(0x2000, 0x2000, 1, 0x10), errno.EEXIST),
    ("insert over reserved", lambda vm: vm.insert(0x80000, 0x1000), errno.EINVAL),
    ("insert outside", lambda vm: vm.insert(0x100000, 0x2000), errno.EINVAL),
    ("remove reserved", lambda vm: vm.remove(vm.kernel_node), errno.EINVAL),
    ("sm_map callbacks on a bad request",
     lambda vm: vm.sm_map(object(), 0, 0x2000), errno.EINVAL),
    ("sm_unmap callbacks on a bad request",
     lambda vm: vm.sm_unmap(object(), M, 2), errno.EINVAL),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("what", "call", "err"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_kernel_refusals_keep_the_vm(impl: Any, what: str, call: Callable[[Any], Any],
                                     err: int) -> None:
    vm = _vm(impl)
    _refused(vm, lambda: call(vm), err)


@pytest.mark.parametrize("impl", IMPLS)
def test_stale_and_foreign_ops_and_dead_vas_refused(impl: Any) -> None:
    vm = _vm(impl)
    ops = vm.sm_map_ops_create(0x3000, 0x1000, 2, 0)
    vm.insert(0x20000, 0x1000)                     # the VM changes: ops are stale
    _refused(vm, lambda: vm.apply(ops), errno.ESTALE)
    other = _vm(impl)
    _refused(vm, lambda: vm.apply(other.sm_unmap_ops_create(0x2000, 0x1000)), errno.ESTALE)
    ops = vm.sm_unmap_ops_create(0x6000, 0x1000)
    vm.apply(ops)
    _refused(vm, lambda: vm.apply(ops), errno.ESTALE)  # applying twice
    va = vm.find(0x20000, 0x1000)
    vm.remove(va)
    _refused(vm, lambda: vm.remove(va), errno.ENOENT)


@pytest.mark.parametrize("impl", [pytest.param(GpuVm, id="core"),
                                  pytest.param(RefGpuVm, id="reference")])
def test_callbacks_missing_refused_before_anything(impl: Any) -> None:
    # drm_gpuvm_sm_map() returns -EINVAL when the driver's ops lack any of
    # sm_step_map / sm_step_remap / sm_step_unmap (sm_unmap: remap / unmap),
    # before walking the tree: no callback runs, the VM is unchanged.
    vm = impl(0, 1 << 20)
    vm.insert(0, 0x2000, 1, 0)
    calls: list[str] = []

    class RemapOnly:
        def sm_step_remap(self, op: Any) -> None:
            calls.append("remap")
            vm.apply([op])

    _refused(vm, lambda: vm.sm_map(RemapOnly(), 0x1000, 0x1000, 2, 0), errno.EINVAL)
    _refused(vm, lambda: vm.sm_unmap(RemapOnly(), 0x1000, 0x1000), errno.EINVAL)
    assert calls == []


def _op_types(impl: Any) -> tuple[Any, Any, Any]:
    if impl is GpuVm:
        from gpuvm_core import OpMap, OpRemap, OpUnmap
        return OpMap, OpRemap, OpUnmap
    from gpuvm_core._reference import RefOpMap, RefOpRemap, RefOpUnmap
    return RefOpMap, RefOpRemap, RefOpUnmap


@pytest.mark.parametrize("impl", [pytest.param(GpuVm, id="core"),
                                  pytest.param(RefGpuVm, id="reference")])
def test_plain_op_list_naming_a_dead_va_changes_nothing(impl: Any) -> None:
    op_map, op_remap, op_unmap = _op_types(impl)
    vm = _vm(impl)
    va = vm.insert(0x30000, 0x1000)
    vm.remove(va)
    live = vm.find(0x2000, 0x2000)
    for ops in ([op_unmap(va, False)],
                [op_map(0x40000, 0x1000, None, 0), op_unmap(va, False)],
                [op_remap(op_map(0x2000, 0x1000, 1, 0x10), None, op_unmap(live, False)),
                 op_unmap(live, False)]):                       # the same VA twice
        _refused(vm, lambda ops=ops: vm.apply(ops), errno.ENOENT)  # type: ignore[misc]


@pytest.mark.parametrize("impl", [pytest.param(GpuVm, id="core"),
                                  pytest.param(RefGpuVm, id="reference")])
def test_plain_op_list_cannot_remove_the_reserved_node(impl: Any) -> None:
    # drm_gpuva_unmap -> drm_gpuva_remove WARNs and keeps the kernel node;
    # here the op list is refused and the node stays in the tree.
    op_map, op_remap, op_unmap = _op_types(impl)
    vm = _vm(impl)
    node = vm.kernel_node
    for ops in ([op_unmap(node, False)],
                [op_remap(op_map(0x80000, 0x800, None, 0), None, op_unmap(node, False))]):
        _refused(vm, lambda ops=ops: vm.apply(ops), errno.EINVAL)  # type: ignore[misc]
        assert t(vm.find_first(0x80000, 1)) == (0x80000, 0x1000, None, 0)
