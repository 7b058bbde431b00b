"""The single-call fast paths (exact ints, pooled op records, free lists) keep the checked
semantics: every value on either side of a fast-path boundary gives the same answer or the
same error as the checked path, and op lists longer than the inline records work."""

from __future__ import annotations

import errno
import gc

import pytest

from gpuvm_core import GpuVm, GpuvmError, OpUnmap


class IntSub(int):
    pass


class Index:
    def __init__(self, v: int) -> None:
        self.v = v

    def __index__(self) -> int:
        return self.v


U64 = (1 << 64) - 1


@pytest.mark.parametrize("value", [0, 1, (1 << 62), (1 << 63) - 1, 1 << 63, U64])
def test_u64_boundaries_accepted_the_same_way(value: int) -> None:
    vm = GpuVm(0, U64)
    for v in (value, IntSub(value), Index(value)):
        assert vm.range_valid(v, 0) == vm.range_valid(value, 0)
        assert vm.find_first(v, 1) is None


@pytest.mark.parametrize("value", [-1, -(1 << 63), 1 << 64, (1 << 64) + 5])
def test_u64_out_of_range_refused(value: int) -> None:
    vm = GpuVm(0, 1 << 40)
    for v in (value, IntSub(value), Index(value)):
        with pytest.raises(GpuvmError) as ei:
            vm.sm_map_ops_create(v, 0x1000)
        assert ei.value.errno == errno.EINVAL
        assert "outside the unsigned 64-bit range" in str(ei.value)
    with pytest.raises(TypeError):
        vm.sm_map_ops_create(True, 0x1000)


@pytest.mark.parametrize("obj", [0, 1, (1 << 63) - 1])
def test_obj_fast_path_matches_checked(obj: int) -> None:
    for o in (obj, IntSub(obj), Index(obj)):
        vm = GpuVm(0, 1 << 40)
        vm.apply(vm.sm_map_ops_create(0x1000, 0x1000, o, 0))
        assert [va.obj for va in vm] == [obj]


@pytest.mark.parametrize("obj", [-1, -2, 1 << 63, 1 << 64])
def test_obj_out_of_range_refused(obj: int) -> None:
    vm = GpuVm(0, 1 << 40)
    with pytest.raises(GpuvmError) as ei:
        vm.sm_map_ops_create(0x1000, 0x1000, obj, 0)
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(TypeError):
        vm.sm_map_ops_create(0x1000, 0x1000, False, 0)
    assert len(vm) == 0


# Where the inline int reader (gpuvm_small_u64) changes how it reads a value: CPython
# stores ints in 30-bit digits (one digit below 2**30, two below 2**60; 3.12+ reads only
# one-digit "compact" ints inline), beyond that the checked path takes over.
DIGIT_EDGES = [0, 1, (1 << 30) - 1, 1 << 30, (1 << 30) + 1, (1 << 31) + 12345,
               (1 << 60) - 1, 1 << 60, (1 << 60) + 1, (1 << 62) + 7]


@pytest.mark.parametrize("value", DIGIT_EDGES)
def test_inline_int_reader_exact_at_digit_edges(value: int) -> None:
    # every field of the per-request entry points reads back exactly, and the same as
    # through the checked path (an int subclass, an __index__ object)
    for v in (value, IntSub(value), Index(value)):
        vm = GpuVm(0, U64)
        vm.insert(value, 0x2000)     # madvise lists ops only over existing object-less VAs
        ops = vm.madvise_ops_create(v, 0x1000, v, v)
        assert [type(o).__name__ for o in ops] == ["OpRemap", "OpMap"]
        assert ops[1].as_dict() == {"op": "map", "addr": value, "range": 0x1000,
                                    "obj": value, "offset": value}
        vm = GpuVm(0, U64)
        (op,) = vm.sm_map_ops_create(v, 0x1000, v, v)
        assert (op.addr, op.range, op.obj, op.offset) == (value, 0x1000, value, value)
        vm.apply(vm.sm_map_ops_create(v, 0x1000, v, v))
        va = vm.find_first(v, 1)
        assert va is not None and va.as_tuple() == (value, 0x1000, value, value)
        assert vm.find_first(value + 0x1000, v) is None
        ops = vm.sm_unmap_ops_create(v, 0x1000)
        assert [o.addr for o in ops if isinstance(o, OpUnmap)] == [value]
        assert vm.apply(ops) == 0 and len(vm) == 0


def test_inline_int_reader_leaves_others_to_the_checked_path() -> None:
    vm = GpuVm(0, U64)
    for bad in (True, False, 1.0, "1"):
        with pytest.raises(TypeError):
            vm.find_first(bad, 1)
        with pytest.raises(TypeError):
            vm.sm_unmap_ops_create(0, bad)
    for neg in (-1, -(1 << 30), -(1 << 31), -(1 << 60)):
        with pytest.raises(GpuvmError) as ei:
            vm.madvise_ops_create(0, 0x1000, None, neg)
        assert ei.value.errno == errno.EINVAL
        with pytest.raises(GpuvmError) as ei:
            vm.sm_map_ops_create(0, 0x1000, neg, 0)
        assert ei.value.errno == errno.EINVAL
    assert len(vm) == 0


def test_pooled_op_records_are_not_shared() -> None:
    # short lists take record blocks from a pool: many live lists at once (more than the
    # pool holds) each keep their own records, and blocks given back are reused cleanly
    vm = GpuVm(0, 1 << 40)
    for i in range(100):
        vm.insert(0x10000 * i, 0x8000, i + 1, 0)
    live = [vm.sm_unmap_ops_create(0x10000 * i, 0x10000 * (1 + i % 3)) for i in range(90)]
    for i, ops in enumerate(live):
        assert [o.addr for o in ops if isinstance(o, OpUnmap)] == \
            [0x10000 * j for j in range(i, min(i + 1 + i % 3, 100))]
    del live
    gc.collect()
    for _ in range(3):
        empty = vm.sm_unmap_ops_create(0x7000000, 0x1000)
        assert len(empty) == 0 and list(empty) == [] and vm.apply(empty) == 0
        ops = vm.sm_unmap_ops_create(0x20000, 0x10000)
        assert [o.addr for o in ops if isinstance(o, OpUnmap)] == [0x20000]
    assert vm.apply(ops) == 0 and len(vm) == 99


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 17])
def test_op_lists_around_the_inline_size(k: int) -> None:
    # k mappings under one unmap: k ops (up to OPS_INLINE records in a pooled block, more
    # in a block of their own)
    vm = GpuVm(0, 1 << 40)
    for i in range(k):
        vm.insert(0x10000 * i, 0x8000, i + 1, 0)
    ops = vm.sm_unmap_ops_create(0, 0x10000 * k)
    assert len(ops) == k
    assert all(isinstance(op, OpUnmap) for op in ops)
    assert [op.addr for op in ops if isinstance(op, OpUnmap)] == [0x10000 * i for i in range(k)]
    assert vm.apply(ops) == 0
    assert len(vm) == 0
    del ops
    gc.collect()


def test_free_listed_objects_start_clean() -> None:
    # Ops and GpuVa come from free lists: a reused object must not carry old state
    vm = GpuVm(0, 1 << 40)
    vm.insert(0x1000, 0x1000, 7, 0)
    for _ in range(50):
        ops = vm.sm_map_ops_create(0x1000, 0x1000, 7, 0)
        assert [type(op).__name__ for op in ops] == ["OpUnmap", "OpMap"]
        empty = vm.sm_unmap_ops_create(0x100000, 0x1000)
        assert len(empty) == 0 and list(empty) == []
        va = vm.find_first(0x1000, 1)
        assert va is not None and va.as_tuple() == (0x1000, 0x1000, 7, 0)
        del ops, empty, va
    assert vm.find_first(0x5000, 1) is None


@pytest.mark.parametrize("zero_len", [False, True])
def test_remap_prev_in_place_same_as_unlink_and_insert(zero_len: bool) -> None:
    # apply rewrites the remapped VA's slot in place when that provably equals unlink +
    # insert (no zero-length VA present); with one present it takes the two-step path
    vm = GpuVm(0, 1 << 40)
    vm.insert(0x10000, 0x10000, 5, 0x100)
    if zero_len:
        vm.insert(0x90000, 0, None, 0)
    old = vm.find_first(0x10000, 1)
    assert old is not None
    g0 = vm.generation
    ops = vm.sm_map_ops_create(0x18000, 0x4000, 9, 0)   # middle: remap (prev + next) + map
    stale = vm.sm_unmap_ops_create(0x10000, 0x1000)
    assert [type(op).__name__ for op in ops] == ["OpRemap", "OpMap"]
    assert vm.apply(ops) == 0
    assert vm.generation == g0 + 4      # unlink, link prev, link next, link map
    got = [(va.addr, va.range, va.obj, va.offset) for va in vm if va.range]
    assert got == [(0x10000, 0x8000, 5, 0x100), (0x18000, 0x4000, 9, 0),
                   (0x1c000, 0x4000, 5, 0x100 + 0xc000)]
    assert not old.alive
    new = vm.find_first(0x10000, 1)
    assert new is not None and new.alive and new != old
    with pytest.raises(GpuvmError) as ei:
        vm.apply(stale)
    assert ei.value.errno == errno.ESTALE
    # remap with a prev piece only (the request covers the VA's tail)
    g1 = vm.generation
    ops = vm.sm_unmap_ops_create(0x14000, 0x4000)
    assert vm.apply(ops) == 0
    assert vm.generation == g1 + 2
    assert [(va.addr, va.range) for va in vm if va.range][0] == (0x10000, 0x4000)
