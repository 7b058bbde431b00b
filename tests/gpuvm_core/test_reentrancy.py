"""Python code that runs in the middle of a GpuVm call: finalizers run by the
cyclic garbage collector, gc callbacks and generators.

Each reproducer ends in the right result or a clean error (EBUSY for the call
made from inside another call, RuntimeError for an iterator whose VM changed)
and the VM passes ``check()`` - never a crash, a corrupted tree or ops that are
not the ones asked for. The rule: docs/threads.md. Run also under the
sanitizer build (.ci/run).
"""

from __future__ import annotations

import errno
import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gpuvm_core import GpuVm, GpuvmError, OpMap, OpUnmap, RefGpuVm

PAGE = 0x1000


@pytest.fixture
def eager_gc() -> Iterator[None]:
    """Collect at every allocation, so finalizers run inside the core's calls."""
    old = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.collect()


class Finalizer:
    """An object in a reference cycle whose __del__ runs ``action`` (from the cyclic GC).

    Each one, when finalized, leaves a successor while the budget lasts, so
    with ``eager_gc`` a finalizer runs at almost every allocation of the calls
    that follow - inside the core's walks and builds.
    """

    log: list[str] = []
    budget = 0

    def __init__(self, action: Callable[[], object]) -> None:
        self.action = action
        self.me = self  # cycle: only the cyclic collector frees it

    def __del__(self) -> None:
        if Finalizer.budget > 0:
            Finalizer.budget -= 1
            Finalizer(self.action)
        try:
            self.action()
            Finalizer.log.append("ok")
        except GpuvmError as e:
            Finalizer.log.append(errno.errorcode[e.errno or 0])
        except RuntimeError as e:  # an iterator of the finalizer's own saw a change
            Finalizer.log.append(f"RuntimeError: {e}")


def _seed(vm: GpuVm, n: int, step: int = 2) -> None:
    for i in range(n):
        vm.insert(i * step * PAGE, PAGE, i, 0)


def _arm(n: int, action: Callable[[], object]) -> None:
    Finalizer.budget = n - 1
    Finalizer(action)


def _mutator(vm: GpuVm, counter: list[int]) -> Callable[[], object]:
    """Alternately empty the VM's low part (chunks are freed) and refill it."""
    def act() -> None:
        counter[0] += 1
        if counter[0] % 2:
            vm.sm_unmap_batch([0], [1 << 30])
        else:
            n = 3 + counter[0] % 5  # fewer than a walk has passed: stale positions
            vm.sm_map_batch([i * 2 * PAGE for i in range(n)], [PAGE] * n, [1] * n, [0] * n)
    return act


@pytest.mark.parametrize("reader", ["list", "state", "va_range", "for-loop"])
def test_finalizers_mutating_during_a_walk(eager_gc: None, reader: str) -> None:
    # Before: list(vm)/state()/va_range() read past a chunk when a __del__ run by
    # the cyclic GC changed the VM mid-walk (segfault). Now the finalizer's call
    # gets EBUSY while a walk holds the guard, and a lazy iterator that sees a
    # change between two steps raises RuntimeError; the VM stays consistent.
    vm = GpuVm(0, 1 << 40)
    _seed(vm, 300)
    counter = [0]
    Finalizer.log = []
    outcomes = {"complete": 0, "changed": 0}
    for _ in range(30):
        _arm(20, _mutator(vm, counter))
        try:
            if reader == "list":
                got = [va.as_tuple() for va in list(vm)]
            elif reader == "state":
                got = vm.state()
            elif reader == "va_range":
                got = [va.as_tuple() for va in vm.va_range(0, 1 << 40)]
            else:
                got = []
                for va in vm:
                    got.append(va.as_tuple())
                    _arm(1, _mutator(vm, counter))
        except RuntimeError as e:
            assert "changed during iteration" in str(e)
            outcomes["changed"] += 1
        else:
            outcomes["complete"] += 1
            # a complete walk is one consistent snapshot: sorted, no overlaps, all VAs
            assert got == sorted(got)
            assert all(a + r <= b for (a, r, _, _), (b, _, _, _) in zip(got, got[1:], strict=False))
        vm.check()
    gc.collect()
    vm.check()
    assert Finalizer.log, "the finalizers never ran"
    assert set(Finalizer.log) <= {"ok", "EBUSY"}
    if reader in ("state", "va_range"):
        assert outcomes["changed"] == 0  # one guarded call: never torn
    assert outcomes["complete"] + outcomes["changed"] == 30


def test_finalizer_building_ops_never_overwrites_another_list(eager_gc: None) -> None:
    # Before: every op list of a VM was built in one shared scratch buffer; a
    # finalizer building another list at the wrong moment overwrote it (a map
    # came back as 3 unmap ops; apply() emptied the VM). Now the finalizer's
    # build gets EBUSY and every list is the one asked for: the core mirrors
    # the reference VM step by step.
    vm = GpuVm(0, 1 << 32)
    ref = RefGpuVm(0, 1 << 32)
    for v in (vm, ref):
        for i in range(64):
            v.insert(i * 4 * PAGE, 2 * PAGE, i, 0)
    made: list[object] = []
    Finalizer.log = []

    def build_other() -> None:
        made.append(vm.sm_unmap_ops_create(0, 1 << 32))

    for i in range(200):
        _arm(5, build_other)
        a, r = (i * 7 % 250) * PAGE, (1 + i % 9) * PAGE
        ops = vm.sm_map_ops_create(a, r, 1000 + i, 0)
        want = ref.sm_map_ops_create(a, r, 1000 + i, 0)
        assert ops.as_dicts() == [op.as_dict() for op in want]
        assert vm.apply(ops) == ref.apply(want)
        assert vm.state() == ref.state()
    vm.check()
    gc.collect()
    assert "EBUSY" in Finalizer.log or made  # the finalizers ran (refused or between calls)
    assert set(Finalizer.log) <= {"ok", "EBUSY"}


def test_apply_is_all_or_nothing_when_finalizers_remove_vas(eager_gc: None) -> None:
    # Before: apply(list) validated the VAs, then a finalizer could remove one
    # before it was applied: ENOENT after earlier ops were applied. Now the
    # check and the apply run in one guarded call.
    Finalizer.log = []
    for round_ in range(40):
        vm = GpuVm(0, 1 << 32)
        vas = [vm.insert(i * 2 * PAGE, PAGE, i, 0) for i in range(32)]
        ops: list[object] = [OpUnmap(va) for va in vas[:16]]
        ops += [OpMap((100 + i) * PAGE, PAGE, 7, 0) for i in range(8)]
        victims = list(vas[:16])

        def remove_one(victims: list[Any] = victims, vm: GpuVm = vm) -> None:
            if victims:
                vm.remove(victims.pop())

        _arm(3 + round_ % 5, remove_one)
        before = vm.state()
        try:
            failed = vm.apply(ops)
        except GpuvmError as e:
            assert e.errno == errno.ENOENT
            # refused before anything changed (a finalizer may have removed VAs
            # before the guard was taken: those removals are its own calls)
            now = vm.state()
            assert set(now) <= set(before)
            assert all((va.addr, va.range, va.obj, va.offset) in now for va in vas[16:])
            assert all(s[0] < 100 * PAGE for s in now)  # none of the maps happened
        else:
            assert failed == 0
            st = vm.state()
            assert [s for s in st if s[0] >= 100 * PAGE] == [((100 + i) * PAGE, PAGE, 7, 0)
                                                               for i in range(8)]
            assert all(va.as_tuple() not in st for va in vas[:16])
        vm.check()
    gc.collect()
    assert set(Finalizer.log) <= {"ok", "EBUSY", "ENOENT"}


def test_generator_mutating_before_apply_leaves_the_vm_unchanged() -> None:
    # An iterable of ops is turned into a list before the guard is taken; a
    # generator that changes the VM meanwhile only makes the check refuse the
    # ops that name removed VAs (ENOENT, nothing applied).
    vm = GpuVm(0, 1 << 32)
    vas = [vm.insert(i * 2 * PAGE, PAGE, i, 0) for i in range(4)]

    def gen() -> Iterator[object]:
        yield OpMap(64 * PAGE, PAGE, 9, 0)
        yield OpUnmap(vas[0])
        vm.remove(vas[0])  # the generator's own call: allowed (no call is running)
        yield OpUnmap(vas[1])

    with pytest.raises(GpuvmError) as ei:
        vm.apply(gen())
    assert ei.value.errno == errno.ENOENT
    assert vm.state() == [va.as_tuple() for va in vas[1:]]
    vm.check()


def test_gc_callback_calling_the_vm_gets_ebusy(eager_gc: None) -> None:
    # gc.callbacks run inside whatever call allocated: every VM call from there
    # while another VM call is running is refused, the outer call completes.
    vm = GpuVm(0, 1 << 40)
    _seed(vm, 500)
    seen: list[str] = []

    def cb(phase: str, info: dict[str, int]) -> None:
        if phase != "start":
            return
        for call in (lambda: vm.find_first(0, 1), lambda: vm.insert(1 << 35, PAGE),
                     lambda: vm.sm_map_batch([1 << 36], [PAGE], [1], [0]), vm.check,
                     lambda: vm.state(), lambda: vm.nbytes):
            try:
                call()
                seen.append("ok")
            except GpuvmError as e:
                seen.append(errno.errorcode[e.errno or 0])

    gc.callbacks.append(cb)
    try:
        vas = vm.va_range(0, 1 << 40)
        snap = vm.state()
        ops = vm.sm_map_ops_create(0, 64 * PAGE, 3, 0)
        vm.apply(ops)
    finally:
        gc.callbacks.remove(cb)
    assert "EBUSY" in seen
    assert set(seen) <= {"ok", "EBUSY", "EEXIST"}
    assert len(vas) >= 500 and snap == sorted(snap)
    vm.check()


def test_reentrant_call_from_an_op_repr_gets_ebusy() -> None:
    # apply() builds its ENOENT message with repr(op) while it holds the guard:
    # a subclass whose __repr__ uses the VM is refused, the error still clean.
    vm = GpuVm(0, 1 << 32)
    va = vm.insert(0, PAGE)
    vm.remove(va)
    seen: list[int] = []

    class Nosy(OpUnmap):
        def __repr__(self) -> str:
            try:
                vm.state()
            except GpuvmError as e:
                seen.append(e.errno or 0)
            return "Nosy()"

    with pytest.raises(GpuvmError) as ei:
        vm.apply([Nosy(va)])
    assert ei.value.errno == errno.ENOENT and seen == [errno.EBUSY]
    assert vm.state() == []


def test_iterator_raises_after_a_change_like_dict() -> None:
    vm = GpuVm(0, 1 << 32)
    _seed(vm, 3)
    it = iter(vm)
    first = next(it)
    vm.insert(1 << 20, PAGE)
    with pytest.raises(RuntimeError, match="changed during iteration"):
        next(it)
    with pytest.raises(StopIteration):  # finished, as a dict iterator is
        next(it)
    # an unchanged VM iterates to the end; removing after the loop is fine
    assert [va.addr for va in vm] == [0, 2 * PAGE, 4 * PAGE, 1 << 20]
    assert first.addr == 0
    for va in list(vm):
        vm.remove(va)
    assert len(vm) == 0 and list(vm) == []
