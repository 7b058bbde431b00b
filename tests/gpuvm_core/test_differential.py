"""Differential tests: the compiled core against the pure-Python oracle, op for op."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuvm_core import GpuVm, GpuvmError, RefGpuVm

MASK = (1 << 64) - 1


def _do(vm: Any, call: str, a: int, r: int, o: int | None, f: int) -> Any:
    try:
        if call == "map":
            ops = vm.sm_map_ops_create(a, r, o, f)
        elif call == "madvise":
            ops = vm.madvise_ops_create(a, r, o, f)
        elif call == "unmap":
            ops = vm.sm_unmap_ops_create(a, r)
        elif call == "prefetch":
            ops = vm.prefetch_ops_create(a, r)
        else:
            va = vm.insert(a, r, o, f)
            return ("insert", va.as_tuple())
    except GpuvmError as e:
        return ("err", e.errno)
    dicts = [op.as_dict() for op in ops]
    failed = vm.apply(ops)
    return ("ok", dicts, failed)


def _compare(vm: GpuVm, ref: RefGpuVm, probes: list[int]) -> None:
    assert vm.state() == ref.state()
    assert len(vm) == len(ref)
    for p in probes:
        for rng in (0, 1, 0x1000, 0x10000):
            a = vm.find_first(p, rng)
            b = ref.find_first(p, rng)
            assert (a and a.as_tuple()) == (b and b.as_tuple()), (p, rng)
            a = vm.find(p, rng)
            b = ref.find(p, rng)
            assert (a and a.as_tuple()) == (b and b.as_tuple()), (p, rng)
        for fn in ("find_prev", "find_next"):
            a = getattr(vm, fn)(p)
            b = getattr(ref, fn)(p)
            assert (a and a.as_tuple()) == (b and b.as_tuple()), (fn, p)
        assert vm.range_valid(p, 0x3000) == ref.range_valid(p, 0x3000)
        assert [v.as_tuple() for v in vm.va_range(p, 0x8000)] == [
            v.as_tuple() for v in ref.va_range(p, 0x8000)]


def _scenario(seed: int, steps: int, start: int, size: int, page: int,
              reserve: tuple[int, int]) -> None:
    rnd = random.Random(seed)
    vm = GpuVm(start, size, reserve_addr=reserve[0], reserve_range=reserve[1])
    ref = RefGpuVm(start, size, reserve_addr=reserve[0], reserve_range=reserve[1])
    npages = max(1, size // page)
    calls = ["map"] * 5 + ["unmap"] * 3 + ["madvise"] * 3 + ["prefetch", "insert"]
    for _ in range(steps):
        call = rnd.choice(calls)
        a = (start + rnd.randrange(-2, npages + 2) * page) & MASK
        r = rnd.choice([0, 0, 1, 2, 3, 5, 8]) * page
        if rnd.random() < 0.05:
            r = rnd.randrange(1 << 64)
        o = rnd.choice([None, None, 1, 2, 3]) if call != "madvise" else None
        f = rnd.choice([0, page, 2 * page, MASK - page + 1, rnd.randrange(1 << 64)])
        assert _do(vm, call, a, r, o, f) == _do(ref, call, a, r, o, f), (seed, call, a, r, o, f)
        vm.check()
    probes = [(start + i * page // 2) & MASK for i in range(-2, 2 * npages + 2)] + [0, MASK]
    _compare(vm, ref, probes)


@pytest.mark.parametrize("seed", range(40))
def test_random_small_space(seed: int) -> None:
    _scenario(seed, 300, 0x10000, 0x40000, 0x1000, (0, 0))


@pytest.mark.parametrize("seed", range(20))
def test_random_with_reserved_node(seed: int) -> None:
    _scenario(1000 + seed, 300, 0, 0x40000, 0x1000, (0x20000, 0x3000))


@pytest.mark.parametrize("seed", range(10))
def test_random_top_of_u64(seed: int) -> None:
    # The VM ends at 2**64-1, the highest end that does not wrap. (A VM ending
    # at exactly 2**64 has mm_end == 0 and refuses every request; that is
    # test_edges.py::test_vm_reaching_2_64_accepts_nothing.)
    _scenario(2000 + seed, 300, MASK - 0x40000, 0x40000, 0x1000, (0, 0))


@pytest.mark.parametrize("seed", range(5))
def test_random_many_chunks(seed: int) -> None:
    # enough VAs to split and merge many 128-slot chunks
    _scenario(3000 + seed, 3000, 0, 0x1000 * 2000, 0x1000, (0, 0))


def test_zero_length_at_zero_intersects_everything() -> None:
    vm, ref = GpuVm(0, 1 << 20), RefGpuVm(0, 1 << 20)
    for v in (vm, ref):
        assert _do(v, "map", 0, 0, 1, 0)[0] == "ok"
    assert vm.state() == ref.state() == [(0, 0, 1, 0)]
    found = vm.find_first(0x5000, 1)
    assert found is not None and found.as_tuple() == (0, 0, 1, 0)
    assert _do(vm, "map", 0x1000, 0x1000, 2, 0) == _do(ref, "map", 0x1000, 0x1000, 2, 0)
    assert vm.state() == ref.state()
    vm.check()


def test_zero_length_tie_order_is_insertion_order() -> None:
    vm, ref = GpuVm(0, 1 << 20), RefGpuVm(0, 1 << 20)
    both: list[Any] = [vm, ref]
    for v in both:
        v.apply(v.sm_map_ops_create(0x1000, 0x3000, 7, 0))
        v.apply(v.sm_map_ops_create(0x2000, 0, 8, 0))   # leaves a zero-length VA at 0x2000
        v.apply(v.sm_map_ops_create(0x2000, 0, 9, 0))
    assert vm.state() == ref.state()
    assert any(t[1] == 0 for t in vm.state())
    for p in range(0, 0x5000, 0x800):
        a, b = vm.find_first(p, 0x800), ref.find_first(p, 0x800)
        assert (a and a.as_tuple()) == (b and b.as_tuple())
    vm.check()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["map", "unmap", "madvise"]),
                          st.integers(0, 15), st.integers(0, 6), st.sampled_from([None, 1, 2]),
                          st.integers(0, 3)), max_size=30))
def test_hypothesis_sequences(reqs: list[tuple[str, int, int, int | None, int]]) -> None:
    vm, ref = GpuVm(0x1000, 0x10000), RefGpuVm(0x1000, 0x10000)
    for call, a, r, o, f in reqs:
        args = (call, 0x1000 + a * 0x1000, r * 0x1000, o if call != "madvise" else None, f * 0x1000)
        assert _do(vm, *args) == _do(ref, *args)
        vm.check()
    assert vm.state() == ref.state()
