"""Batch forms: same final state as one-by-one, per-request counts, refusals with .index."""

from __future__ import annotations

import errno
import random

import numpy as np
import pytest

from gpuvm_core import GpuVm, GpuvmError, RefGpuVm

PAGE = 0x1000


def _reqs(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rnd = random.Random(seed)
    a = np.array([rnd.randrange(0, 256) * PAGE for _ in range(n)], dtype=np.uint64)
    r = np.array([rnd.randrange(0, 6) * PAGE for _ in range(n)], dtype=np.uint64)
    o = np.array([rnd.choice([-1, 1, 2, 3]) for _ in range(n)], dtype=np.int64)
    f = np.array([rnd.choice([0, PAGE, (1 << 64) - PAGE]) for _ in range(n)], dtype=np.uint64)
    return a, r, o, f


@pytest.mark.parametrize("seed", range(5))
def test_sm_map_batch_matches_one_by_one(seed: int) -> None:
    a, r, o, f = _reqs(seed, 400)
    vm, ref = GpuVm(0, 300 * PAGE), RefGpuVm(0, 300 * PAGE)
    counts = vm.sm_map_batch(a, r, o, f)
    want = ref.sm_map_batch(a, r, o, f)
    assert counts.dtype == np.int64 and counts.tolist() == want
    assert vm.state() == ref.state()
    vm.check()
    # unmap and madvise batches
    assert vm.sm_unmap_batch(a[:100], r[:100]).tolist() == ref.sm_unmap_batch(a[:100], r[:100])
    assert vm.state() == ref.state()
    assert vm.madvise_batch(a[100:200], r[100:200]).tolist() == ref.madvise_batch(
        a[100:200], r[100:200])
    assert vm.state() == ref.state()
    vm.check()


def test_refused_request_reports_index_and_keeps_earlier() -> None:
    vm = GpuVm(0, 16 * PAGE)
    a = np.array([0, PAGE, 20 * PAGE, 2 * PAGE], dtype=np.uint64)
    r = np.array([PAGE, PAGE, PAGE, PAGE], dtype=np.uint64)
    o = np.array([1, 1, 1, 1], dtype=np.int64)
    f = np.zeros(4, dtype=np.uint64)
    with pytest.raises(GpuvmError) as ei:
        vm.sm_map_batch(a, r, o, f)
    assert ei.value.errno == errno.EINVAL and ei.value.index == 2
    assert vm.state() == [(0, PAGE, 1, 0), (PAGE, PAGE, 1, 0)]


def test_bad_arrays_refused_before_anything_applies() -> None:
    vm = GpuVm(0, 16 * PAGE)
    with pytest.raises(GpuvmError) as ei:
        vm.sm_map_batch([0, -PAGE], [PAGE, PAGE], [1, 1], [0, 0])
    assert ei.value.errno == errno.EINVAL and ei.value.index == 1
    with pytest.raises(GpuvmError) as ei:
        vm.sm_map_batch([0, 1 << 64], [PAGE, PAGE], [1, 1], [0, 0])
    assert ei.value.index == 1
    with pytest.raises(GpuvmError):
        vm.sm_map_batch([0], [PAGE], [-2], [0])
    with pytest.raises(GpuvmError):
        vm.sm_map_batch([0], [PAGE], [1], [0.5])
    with pytest.raises(GpuvmError):
        vm.sm_unmap_batch([0, 0], [PAGE])
    assert vm.state() == []
    # lossless conversions are accepted: lists of Python ints, floats that are integers
    assert vm.sm_map_batch([0], [float(PAGE)], [None], [(1 << 64) - 1]).tolist() == [1]
    assert vm.state() == [(0, PAGE, None, (1 << 64) - 1)]


def test_find_first_batch() -> None:
    vm = GpuVm(0, 1 << 30)
    vm.sm_map_batch(np.arange(0, 64, 2, dtype=np.uint64) * PAGE, np.full(32, PAGE, np.uint64),
                    np.arange(32, dtype=np.int64) - 1, np.zeros(32, np.uint64))
    q = np.arange(0, 70, dtype=np.uint64) * PAGE + 5
    res = vm.find_first_batch(q, np.ones(70, np.uint64))
    assert set(res.dtype.names or ()) == {"found", "addr", "range", "obj", "offset"}
    for i, addr in enumerate(q.tolist()):
        va = vm.find_first(addr, 1)
        row = res[i]
        assert bool(row["found"]) == (va is not None)
        if va is None:
            assert int(row["obj"]) == -1
        else:
            assert (int(row["addr"]), int(row["range"]), int(row["offset"])) == (
                va.addr, va.range, va.offset)
            assert int(row["obj"]) == (-1 if va.obj is None else va.obj)
    assert res["found"].sum() == 32
    assert len(vm.find_first_batch([], [])) == 0
