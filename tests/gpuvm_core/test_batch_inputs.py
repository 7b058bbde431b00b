"""What the batch calls accept: exact integer vectors, read-only ones included;
everything else is refused with an error naming the argument, before the VM
changes. And the scratch buffer gives memory back after a large request.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpuvm_core import REQ_MAP, GpuVm, GpuvmError

PAGE = 0x1000


def _ro(a: np.ndarray) -> np.ndarray:
    b = a.copy()
    b.setflags(write=False)
    return b


def test_read_only_arrays_are_accepted(tmp_path: Path) -> None:
    # Before: "buffer source array is read-only" although the calls only read.
    n = 16
    addr = np.arange(n, dtype=np.uint64) * 2 * PAGE
    np.save(tmp_path / "addr.npy", addr)
    mapped = np.load(tmp_path / "addr.npy", mmap_mode="r")
    frombuf = np.frombuffer(addr.tobytes(), dtype=np.uint64)
    rng = np.broadcast_to(np.uint64(PAGE), (n,))
    obj = _ro(np.ones(n, np.int64))
    off = np.broadcast_to(np.uint64(0), (n,))
    for a in (mapped, frombuf, _ro(addr)):
        vm = GpuVm(0, 1 << 30)
        assert vm.sm_map_batch(a, rng, obj, off).tolist() == [1] * n
        assert vm.madvise_batch(a, rng).tolist() == [0] * n
        res = vm.find_first_batch(a, np.broadcast_to(np.uint64(1), (n,)))
        assert res["found"].all()
        assert vm.requests_batch(_ro(np.full(n, REQ_MAP, np.uint8)), a, rng, obj, off).sum() \
            == 2 * n  # unmap-with-keep + map per request
        assert vm.sm_unmap_batch(a, rng).tolist() == [1] * n
        assert vm.state() == []
        vm.check()
    del mapped


BAD: list[tuple[str, Any, type[Exception], str]] = [
    ("float64", np.array([0.0, 4096.0]), TypeError, "float64"),
    ("float32", np.array([0, 4096], np.float32), TypeError, "float32"),
    ("float list", [0, 4096.0], TypeError, "not an integer"),
    ("complex", np.array([0, 4096], np.complex128), TypeError, "complex"),
    ("bool", np.array([True, False]), TypeError, "bool"),
    ("datetime", np.array(["2020-01-01", "2020-01-02"], "datetime64[D]"), TypeError,
     "datetime64"),
    ("timedelta", np.array([1, 2], "timedelta64[s]"), TypeError, "timedelta64"),
    ("str", np.array(["0", "1"]), TypeError, "<U1"),
    ("masked", np.ma.masked_array([0, 4096], mask=[False, True]), TypeError, "masked"),
    ("2-D", np.zeros((2, 1), np.uint64), ValueError, "one-dimensional"),
    ("nested list", [[0], [4096]], ValueError, "one-dimensional"),
    ("ragged", np.array([[0], [1, 2]], dtype=object), ValueError, "one-dimensional"),
    ("None in addr", [0, None], TypeError, "not an integer"),
    ("bool in list", [0, True], TypeError, "not an integer"),
]


@pytest.mark.parametrize("what", ["addr", "range", "offset", "obj"])
@pytest.mark.parametrize(("name", "bad", "exc", "msg"), BAD, ids=[b[0] for b in BAD])
def test_non_integer_vectors_are_refused_naming_the_argument(
        what: str, name: str, bad: Any, exc: type[Exception], msg: str) -> None:
    if what == "obj" and name == "None in addr":
        return  # None is a valid handle (no object) in obj
    vm = GpuVm(0, 1 << 30)
    args = {"addr": [0, 4 * PAGE], "range": [PAGE, PAGE], "obj": [1, 2], "offset": [0, 0]}
    args[what] = bad
    with pytest.raises(exc) as ei:
        vm.sm_map_batch(args["addr"], args["range"], args["obj"], args["offset"])
    assert what in str(ei.value) and msg in str(ei.value)
    with pytest.raises(exc):
        vm.requests_batch([0, 0], args["addr"], args["range"], args["obj"], args["offset"])
    if what in ("addr", "range"):
        with pytest.raises(exc):
            vm.find_first_batch(args["addr"], args["range"])
        with pytest.raises(exc):
            vm.sm_unmap_batch(args["addr"], args["range"])
    assert vm.state() == []


@pytest.mark.parametrize(("kind", "exc", "msg"), [
    (np.array(["map", "mäp"]), GpuvmError, "'mäp'"),
    (np.array([b"map", "m\u00e4p".encode()]), GpuvmError, "b'm\\xc3\\xa4p'"),
    (np.array([0.0, 1.0]), TypeError, "float64"),
    (np.ma.masked_array([0, 1]), TypeError, "masked"),
    (np.zeros((2, 1), np.uint8), ValueError, "one-dimensional"),
    ([0, "map"], GpuvmError, "kind[0]"),   # numpy makes this a str array: '0' is no name
    ([0, None], TypeError, "not an integer"),
])
def test_bad_kinds_are_refused_naming_kind(kind: Any, exc: type[Exception], msg: str) -> None:
    # Before: a non-ASCII bytes kind ended in UnicodeDecodeError.
    vm = GpuVm(0, 1 << 30)
    with pytest.raises(exc) as ei:
        vm.requests_batch(kind, [0, 4 * PAGE], [PAGE, PAGE], [1, 2], [0, 0])
    assert "kind" in str(ei.value) and msg in str(ei.value)
    if exc is GpuvmError:
        assert ei.value.errno == errno.EINVAL
    assert vm.state() == []


def test_exact_integers_are_accepted() -> None:
    vm = GpuVm(0, (1 << 64) - 1)
    big = (1 << 64) - PAGE
    # Python ints beyond int64 stay exact; None handles; any integer dtype
    assert vm.sm_map_batch([0, 1 << 63], [PAGE, PAGE], [None, 3], [big, 0]).tolist() == [1, 1]
    assert vm.state() == [(0, PAGE, None, big), (1 << 63, PAGE, 3, 0)]
    assert vm.sm_unmap_batch(np.array([0], np.int32), np.array([PAGE], np.uint16)).tolist() \
        == [1]
    assert vm.requests_batch(np.array([b"unmap"]), [1 << 63], [PAGE], [-1], [0]).tolist() == [1]
    assert vm.state() == []


def test_scratch_buffer_gives_memory_back_after_a_large_request() -> None:
    # Before: one unmap of 10^6 VAs left 136 MiB in an empty VM.
    n = 100_000
    vm = GpuVm(0, 1 << 40)
    empty = vm.nbytes
    vm.sm_map_batch(np.arange(n, dtype=np.uint64) * 2 * PAGE, np.full(n, PAGE, np.uint64),
                    np.ones(n, np.int64), np.zeros(n, np.uint64))
    ops = vm.sm_unmap_ops_create(0, 1 << 40)
    assert len(ops) == n
    vm.apply(ops)
    del ops
    assert len(vm) == 0
    # what is left: the chunk index's capacity and SCRATCH_KEEP records (the
    # scratch alone held n * 136 bytes = 13.6 MB for the unmap)
    assert vm.nbytes < empty + 128 * 1024, vm.nbytes
    # the batch path too
    vm.sm_map_batch(np.arange(n, dtype=np.uint64) * 2 * PAGE, np.full(n, PAGE, np.uint64),
                    np.ones(n, np.int64), np.zeros(n, np.uint64))
    vm.sm_unmap_batch([0], [1 << 40])
    assert vm.nbytes < empty + 128 * 1024, vm.nbytes
    vm.check()
