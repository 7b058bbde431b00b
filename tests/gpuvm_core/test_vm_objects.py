"""GpuVm as a Python object: pickling, copying, ``addr in vm``, ``vm[addr]``,
repr, and conversion to and from numpy structured arrays (docs/gpuvm.md)."""

from __future__ import annotations

import copy
import errno
import pickle

import numpy as np
import pytest

from gpuvm_core import GpuVm, GpuvmError
from gpuvm_core._core import VA_DTYPE
from gpuvm_core.workloads import new_vm, workload

PAGE = 0x1000


def _quirky() -> GpuVm:
    """A VM with a reserved node, zero-length VAs (two at one address) and objects."""
    vm = GpuVm(0, 1 << 40, reserve_addr=0, reserve_range=PAGE)
    vm.insert(0x10000, 0, 4, 1)
    vm.insert(0x10000, 0, 5, 2)       # list order among equal addresses matters
    vm.insert(0x10000, 0x3000, None, 0)
    vm.insert(0x20000, PAGE, (1 << 63) - 1, (1 << 64) - PAGE)
    return vm


def _same(a: GpuVm, b: GpuVm) -> None:
    assert a.state() == b.state() and len(a) == len(b)
    assert (a.mm_start, a.mm_range, a.reserve_addr, a.reserve_range) == \
        (b.mm_start, b.mm_range, b.reserve_addr, b.reserve_range)
    assert (a.kernel_node is None) == (b.kernel_node is None)
    b.check()


def test_pickle_round_trip() -> None:
    vm = _quirky()
    back = pickle.loads(pickle.dumps(vm))
    _same(vm, back)
    assert back.kernel_node is not None and back.kernel_node.as_tuple() == (0, PAGE, None, 0)
    # the copy is independent and fully working
    back.apply(back.sm_map_ops_create(0x11000, PAGE, 9, 0))
    assert vm.state() != back.state()
    vm.check()


def test_pickle_is_compact() -> None:
    vm = new_vm(GpuVm, 10_000, 1)
    blob = pickle.dumps(vm, protocol=pickle.HIGHEST_PROTOCOL)
    assert len(blob) < 10_000 * 32 + 1024  # one 32-byte row per VA plus a header
    _same(vm, pickle.loads(blob))


def test_copy_and_deepcopy_keep_ids_and_views() -> None:
    vm = _quirky()
    va = vm[0x20000]
    c = copy.copy(vm)
    _same(vm, c)
    assert not isinstance(c, type(None)) and c is not vm
    # ops of the original are stale for the copy (and the other way round)
    ops = vm.sm_unmap_ops_create(0x10000, 0x3000)
    with pytest.raises(GpuvmError) as ei:
        c.apply(ops)
    assert ei.value.errno == errno.ESTALE
    # deepcopy of a structure holding the VM and its views maps the views onto the copy
    vm2, va2 = copy.deepcopy([vm, va])
    assert va2.vm is vm2 and va2.alive and va2.as_tuple() == va.as_tuple()
    vm2.remove(va2)
    assert va.alive and not va2.alive and len(vm2) == len(vm) - 1
    # a view copied on its own still names the original VM
    assert copy.deepcopy(va).vm is vm
    vm.check()
    vm2.check()


def test_contains_and_getitem() -> None:
    vm = _quirky()
    assert 0x10000 in vm and 0x12FFF in vm and 0x13000 not in vm
    assert vm[0x12FFF].as_tuple() == (0x10000, 0x3000, None, 0)
    assert vm[0x20000].obj == (1 << 63) - 1
    for miss in (0, PAGE - 1, 0x13000, 0x21000, (1 << 64) - 1):
        assert miss not in vm  # the reserved node and gaps are not VAs covering miss
        with pytest.raises(KeyError):
            vm[miss]
    assert -1 not in vm and (1 << 64) not in vm
    with pytest.raises(KeyError):
        vm[-1]
    for bad in (1.0, "1", None, True):
        with pytest.raises(TypeError):
            bad in vm  # noqa: B015
        with pytest.raises(TypeError):
            vm[bad]  # type: ignore[index]
    # a zero-length VA covers nothing, even the one at 0 that meets every interval
    z = GpuVm(0, 1 << 20)
    z.insert(0, 0)
    assert 0 not in z and z.find_first(5, 1) is not None


def test_repr() -> None:
    assert repr(GpuVm(0, 1 << 20)) == "GpuVm(start=0x0, range=0x100000) with 0 VAs"
    assert repr(_quirky()) == ("GpuVm(start=0x0, range=0x10000000000, reserve_addr=0x0, "
                               "reserve_range=0x1000) with 4 VAs")


def test_to_numpy_and_back() -> None:
    vm = _quirky()
    arr = vm.to_numpy()
    assert arr.dtype == VA_DTYPE and len(arr) == 4
    assert [tuple(int(x) for x in row) for row in arr.tolist()] == \
        [(a, r, -1 if o is None else o, f) for a, r, o, f in vm.state()]
    back = GpuVm.from_numpy(arr, 0, 1 << 40, reserve_addr=0, reserve_range=PAGE)
    _same(vm, back)
    # rows in any order come back in address order; equal addresses keep their order
    shuffled = arr[[3, 0, 2, 1]]
    assert GpuVm.from_numpy(shuffled, 0, 1 << 40).state() == [
        (0x10000, 0, 4, 1), (0x10000, 0x3000, None, 0), (0x10000, 0, 5, 2),
        (0x20000, PAGE, (1 << 63) - 1, (1 << 64) - PAGE)]
    # a big VM, read-only input
    big = new_vm(GpuVm, 50_000, 1)
    big.sm_map_batch(*(getattr(workload(1, 50_000, 20_000), f)
                       for f in ("addr", "range", "obj", "offset")))
    a = big.to_numpy()
    a.setflags(write=False)
    _same(big, GpuVm.from_numpy(a, big.mm_start, big.mm_range))


def test_from_numpy_refuses_bad_rows() -> None:
    def rows(*r: tuple[int, int, int, int]) -> np.ndarray:
        return np.array(list(r), dtype=VA_DTYPE)

    cases = [
        (rows((0, PAGE, 1, 0), (PAGE // 2, PAGE, 1, 0)), errno.EEXIST, 1),
        (rows((0, PAGE, 1, 0), (1 << 30, PAGE, 1, 0)), errno.EINVAL, 1),   # outside the VM
        (rows((0, PAGE, -2, 0)), errno.EINVAL, 0),                          # bad handle
    ]
    for arr, err, index in cases:
        with pytest.raises(GpuvmError) as ei:
            GpuVm.from_numpy(arr, 0, 1 << 20)
        assert ei.value.errno == err and ei.value.index == index
    with pytest.raises(GpuvmError) as ei:  # a row over the reserved node
        GpuVm.from_numpy(rows((0, PAGE, 1, 0)), 0, 1 << 20, reserve_addr=0, reserve_range=PAGE)
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(TypeError, match="missing: obj, offset"):
        GpuVm.from_numpy(np.zeros(2, dtype=[("addr", "u8"), ("range", "u8")]), 0, 1 << 20)
    with pytest.raises(TypeError):
        GpuVm.from_numpy([(0, PAGE, 1, 0)], 0, 1 << 20)  # type: ignore[arg-type]
    # overlapping zero-length VAs are fine (they overlap nothing)
    ok = GpuVm.from_numpy(rows((0, PAGE, 1, 0), (0, 0, 2, 0), (PAGE, 0, 3, 0)), 0, 1 << 20)
    assert len(ok) == 3
    ok.check()
