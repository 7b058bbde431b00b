"""Objects made by hand (``cls.__new__(cls)`` without ``__init__``), pickled or
copied, and VA ids across the 32-bit wrap: each works or raises cleanly.

Before: ``OpRemap.__new__(OpRemap)`` or an ``OpUnmap`` without a VA crashed
``apply()`` and ``as_dict()`` (segfault); after 2**32 inserts a VA id met the
reserved node's id (a VA became invisible, ``check()`` failed, the reserved
node became removable).
"""

from __future__ import annotations

import copy
import errno
import pickle
from typing import Any

import pytest

from gpuvm_core import GpuVa, GpuVm, GpuvmError, OpMap, OpPrefetch, OpRemap, Ops, OpUnmap
from gpuvm_core._core import GpuVmIterator

PAGE = 0x1000
ID_MAX = (1 << 32) - 1


def _poke(obj: Any) -> list[str]:
    """Use every public attribute and method that takes no argument; record outcomes."""
    out = []
    for name in dir(obj):
        if name.startswith("_") and name not in ("__repr__", "__len__", "__iter__",
                                                  "__bool__", "__hash__"):
            continue
        try:
            attr = getattr(obj, name)
            if callable(attr) and name not in ("type",):
                attr()
            out.append(f"{name}:ok")
        except (TypeError, GpuvmError, ValueError) as e:
            out.append(f"{name}:{type(e).__name__}")
    return out


@pytest.mark.parametrize("cls", [OpMap, OpUnmap, OpRemap, OpPrefetch, GpuVa, Ops, GpuVm,
                                 GpuVmIterator])
def test_new_without_init_never_crashes(cls: type) -> None:
    obj = cls.__new__(cls)
    outcomes = _poke(obj)
    assert outcomes
    vm = GpuVm(0, 1 << 20)
    if cls in (OpUnmap, OpRemap, OpPrefetch):
        assert all(o.endswith((":ok", ":TypeError")) for o in outcomes), outcomes
        if cls is not OpPrefetch:
            with pytest.raises(TypeError, match="without __init__"):
                vm.apply([obj])
            with pytest.raises(TypeError, match="without __init__"):
                obj.as_dict()
        else:
            with pytest.raises(TypeError, match="without __init__"):
                obj.as_dict()
        for f in (pickle.dumps, copy.copy, copy.deepcopy):
            with pytest.raises(TypeError):
                f(obj)
    elif cls is OpMap:
        assert obj.as_dict() == {"op": "map", "addr": 0, "range": 0, "obj": 0, "offset": 0}
        assert vm.apply([obj]) == 0  # a zero-length VA at 0 (a hand-made OpMap is valid)
        vm.check()
    elif cls is GpuVa:
        assert not obj.alive and not obj.reserved
        with pytest.raises(GpuvmError) as ei:
            vm.remove(obj)
        assert ei.value.errno == errno.ENOENT
        with pytest.raises(GpuvmError):
            vm.apply([OpUnmap(obj)])
    elif cls is Ops:
        assert len(obj) == 0 and list(obj) == []
        with pytest.raises(GpuvmError) as ei:
            vm.apply(obj)
        assert ei.value.errno == errno.ESTALE
    elif cls is GpuVm:
        assert len(obj) == 0 and obj.state() == [] and obj.find_first(0, 1) is None
        with pytest.raises(GpuvmError):  # a VM of range 0 holds nothing
            obj.insert(0, PAGE)
        obj.check()
    else:
        assert list(obj) == []
    vm.check()


def test_remap_with_handmade_unmap_is_refused() -> None:
    vm = GpuVm(0, 1 << 20)
    rm = OpRemap(None, OpMap(0, PAGE), OpUnmap.__new__(OpUnmap))
    with pytest.raises(TypeError, match="without __init__"):
        vm.apply([rm])
    with pytest.raises(TypeError):
        rm.as_dict()
    assert "no unmap" in repr(rm)
    assert vm.state() == []


def test_pickle_and_copy_of_real_ops() -> None:
    vm = GpuVm(0, 1 << 20)
    vm.insert(0, 4 * PAGE, 1, 0)
    (remap, mp) = vm.sm_map_ops_create(PAGE, PAGE, 2, 0)
    # OpMap is plain data: it pickles and copies
    assert pickle.loads(pickle.dumps(mp)).as_dict() == mp.as_dict()
    assert copy.deepcopy(mp).as_dict() == mp.as_dict()
    # ops naming a VA are views of a live VM: copying works, pickling is refused
    for op in (remap, remap.unmap, OpPrefetch(remap.unmap.va)):
        assert copy.copy(op).as_dict() == op.as_dict()
        assert copy.deepcopy(op).as_dict() == op.as_dict()
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(op)
    ops = vm.sm_map_ops_create(PAGE, PAGE, 2, 0)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(ops)
    assert copy.copy(ops) is ops
    with pytest.raises(TypeError):
        pickle.dumps(iter(vm))
    # the copies apply like the originals
    assert vm.apply([copy.copy(remap), copy.deepcopy(mp)]) == 0
    assert vm.state() == [(0, PAGE, 1, 0), (PAGE, PAGE, 2, 0), (2 * PAGE, 2 * PAGE, 1, 2 * PAGE)]
    vm.check()


# ----------------------------------------------------------------------------
# VA ids across the 32-bit wrap


def test_ids_wrap_onto_neither_live_vas_nor_the_reserved_node() -> None:
    vm = GpuVm(0, 1 << 40, reserve_addr=0, reserve_range=PAGE)
    knode = vm.kernel_node
    assert knode is not None
    old = [vm.insert((10 + i) * PAGE, PAGE, i, 0) for i in range(100)]  # ids 2..101
    vm._debug_set_next_id(ID_MAX - 50)
    new = [vm.insert((1000 + i) * PAGE, PAGE, i, 0) for i in range(400)]  # wraps
    assert vm._next_id > 100  # the counter restarted at 1 and skipped every live id
    vm.check()  # no duplicate ids
    assert len(vm) == 500 and len(list(vm)) == 500
    assert all(va.alive for va in old + new)
    assert vm.kernel_node == knode and vm.kernel_node.reserved
    assert sum(va.reserved for va in vm) == 0
    with pytest.raises(GpuvmError) as ei:
        vm.remove(vm.kernel_node)
    assert ei.value.errno == errno.EINVAL
    # views made before the wrap still name their VAs exactly
    for va in old[::7]:
        vm.remove(va)
        assert not va.alive
    vm.check()
    # batch inserts across a second wrap, with remaps and unmaps
    vm._debug_set_next_id(ID_MAX - 3)
    vm.sm_map_batch([(2000 + i) * PAGE for i in range(300)], [2 * PAGE] * 300, [1] * 300,
                    [0] * 300)
    vm.sm_unmap_batch([(2000 + i) * PAGE + PAGE // 2 for i in range(0, 300, 3)], [16] * 100)
    vm.check()
    assert vm.kernel_node is not None
    assert vm.state() == [va.as_tuple() for va in vm]


def test_set_next_id_onto_a_live_id_skips_it() -> None:
    vm = GpuVm(0, 1 << 30, reserve_addr=0, reserve_range=PAGE)  # reserved node: id 1
    a = vm.insert(PAGE, PAGE)  # id 2
    vm._debug_set_next_id(1)
    b = vm.insert(2 * PAGE, PAGE)  # ids 1 and 2 are live: gets 3
    assert vm._next_id == 4
    vm.check()
    vm.remove(a)
    assert b.alive and not a.alive
    for bad in (0, 1 << 32, -1):
        with pytest.raises((ValueError, GpuvmError)):
            vm._debug_set_next_id(bad)
