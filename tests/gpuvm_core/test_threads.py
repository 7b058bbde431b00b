"""Several threads on one GpuVm: one caller at a time, enforced (docs/threads.md).

A call that meets another one running on the same VM gets EBUSY, an iterator
whose VM changed raises RuntimeError, and the VM is never corrupted. (Sharing a
VM between threads correctly needs the caller's own lock; these tests show what
happens without one.) Short runs: they must pass on a loaded 2-core machine
and under the sanitizer build.
"""

from __future__ import annotations

import errno
import gc
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from gpuvm_core import GpuVm, GpuvmError, OpMap

PAGE = 0x1000
SECONDS = 0.6


def _run_threads(*targets: Callable[[threading.Event], None], seconds: float = SECONDS,
                 until: Callable[[], bool] | None = None) -> list[BaseException]:
    """Run ``targets`` in threads for ``seconds``; with ``until``, go on (up to 30 s) until
    it holds, so a test that needs every thread to have made progress does not depend on
    how loaded the machine is."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def wrap(f: Callable[[threading.Event], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                f(stop)
            except BaseException as e:  # reported to the test
                errors.append(e)
                stop.set()
        return run

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    old = __import__("sys").getswitchinterval()
    __import__("sys").setswitchinterval(1e-5)  # switch threads often
    try:
        for t in threads:
            t.start()
        stop.wait(seconds)
        deadline = time.monotonic() + 30
        while until is not None and not until() and not stop.is_set() \
                and time.monotonic() < deadline:
            stop.wait(0.05)
        stop.set()
        for t in threads:
            t.join()
    finally:
        __import__("sys").setswitchinterval(old)
    return errors


def _tolerate(counts: dict[str, int], call: Callable[[], object]) -> None:
    try:
        call()
        counts["ok"] = counts.get("ok", 0) + 1
    except GpuvmError as e:
        assert e.errno in (errno.EBUSY, errno.EEXIST, errno.ENOENT, errno.ESTALE), e
        name = errno.errorcode[e.errno or 0]
        counts[name] = counts.get(name, 0) + 1
    except RuntimeError as e:
        assert "changed during iteration" in str(e)
        counts["changed"] = counts.get("changed", 0) + 1


@pytest.fixture
def vm() -> Iterator[GpuVm]:
    v = GpuVm(0, 1 << 40)
    v.sm_map_batch(np.arange(2000, dtype=np.uint64) * 2 * PAGE, np.full(2000, PAGE, np.uint64),
                   np.arange(2000, dtype=np.int64), np.zeros(2000, np.uint64))
    yield v
    v.check()


def test_readers_iterating_while_writers_mutate(vm: GpuVm) -> None:
    # Before: a thread walking list(vm)/state()/va_range() while another thread
    # changed the VM read past a chunk (crash in 0.4-1.7 s). Now each walk is
    # complete or ends in a clean error, and the tree stays consistent.
    reads: dict[str, int] = {}
    writes: dict[str, int] = {}
    rng = np.random.default_rng(1)

    def reader(stop: threading.Event) -> None:
        while not stop.is_set():
            _tolerate(reads, lambda: [va.addr for va in vm])
            _tolerate(reads, vm.state)
            _tolerate(reads, lambda: vm.va_range(0, 1 << 30))
            _tolerate(reads, lambda: vm.find_first_batch(np.arange(64, dtype=np.uint64) * PAGE,
                                                         np.ones(64, np.uint64)))

    def writer(stop: threading.Event) -> None:
        while not stop.is_set():
            a = rng.integers(0, 4000, 256, dtype=np.uint64) * PAGE
            _tolerate(writes, lambda a=a: vm.sm_map_batch(a, np.full(256, PAGE, np.uint64),
                                                      np.ones(256, np.int64),
                                                      np.zeros(256, np.uint64)))
            _tolerate(writes, lambda a=a: vm.apply(vm.sm_unmap_ops_create(int(a[0]), 8 * PAGE)))
            _tolerate(writes, lambda a=a: vm.insert(int(a[1]) + (1 << 35), PAGE))

    assert not _run_threads(reader, reader, writer,
                            until=lambda: reads.get("ok", 0) > 0 and writes.get("ok", 0) > 0)
    assert reads.get("ok", 0) > 0 and writes.get("ok", 0) > 0
    vm.check()


def test_gc_pause_lets_another_thread_in(vm: GpuVm) -> None:
    # Before: a finalizer that never touches the VM but lets the GIL go (here:
    # a sleep in a gc callback) allowed another thread to change the VM in the
    # middle of a walk. Now that thread gets EBUSY while the walk holds the
    # guard, and a lazy iterator raises on its next step.
    counts: dict[str, int] = {}
    other: dict[str, int] = {}

    def pause(phase: str, info: dict[str, int]) -> None:
        time.sleep(0)  # drop the GIL in the middle of whatever call allocated

    def walker(stop: threading.Event) -> None:
        while not stop.is_set():
            _tolerate(counts, lambda: list(vm))
            _tolerate(counts, vm.state)

    def mutator(stop: threading.Event) -> None:
        # empty the VM (its chunks are freed), refill a few VAs, refill all
        while not stop.is_set():
            _tolerate(other, lambda: vm.sm_unmap_batch([0], [1 << 40]))
            _tolerate(other, lambda: vm.sm_map_batch([0, 2 * PAGE], [PAGE] * 2, [1] * 2, [0] * 2))
            _tolerate(other, lambda: vm.sm_map_batch(
                np.arange(2000, dtype=np.uint64) * 2 * PAGE, np.full(2000, PAGE, np.uint64),
                np.ones(2000, np.int64), np.zeros(2000, np.uint64)))

    old = gc.get_threshold()
    gc.set_threshold(50, 1, 1)
    gc.callbacks.append(pause)
    try:
        assert not _run_threads(
            walker, mutator, until=lambda: counts.get("ok", 0) > 0 and other.get("ok", 0) > 0)
    finally:
        gc.callbacks.remove(pause)
        gc.set_threshold(*old)
    assert counts.get("ok", 0) > 0 and other.get("ok", 0) > 0
    vm.check()


def test_generator_releasing_the_gil_cannot_race_a_batch(vm: GpuVm) -> None:
    # Before: apply(iterable) checked for a running batch before consuming the
    # iterable; a generator that let the GIL go let another thread start a
    # batch and both changed the tree at once (check() failed, heap corrupted).
    # Now the iterable is consumed first and the guard taken after: the apply
    # gets EBUSY, or applies all its ops, or is refused whole (ENOENT).
    counts: dict[str, int] = {}
    batches: dict[str, int] = {}
    rng = np.random.default_rng(2)
    OPS = 128  # two new chunks per apply: both threads grow the chunk index

    def gen(base: int) -> Iterator[OpMap]:
        for i in range(OPS):
            if i % 8 == 0:
                time.sleep(0)  # the GIL goes to the batch thread
            yield OpMap(base + i * PAGE, PAGE, 5, 0)

    def applier(stop: threading.Event) -> None:
        k = 0
        while not stop.is_set():
            k += 1
            base = (1 << 37) + k * 2 * OPS * PAGE
            _tolerate(counts, lambda base=base: vm.apply(gen(base)))

    def batcher(stop: threading.Event) -> None:
        while not stop.is_set():
            a = rng.integers(0, 4000, 2048, dtype=np.uint64) * PAGE
            _tolerate(batches, lambda a=a: vm.sm_map_batch(a, np.full(2048, PAGE, np.uint64),
                                                       np.ones(2048, np.int64),
                                                       np.zeros(2048, np.uint64)))

    assert not _run_threads(
        applier, batcher, until=lambda: counts.get("ok", 0) > 0 and batches.get("ok", 0) > 0)
    assert counts.get("ok", 0) > 0 and batches.get("ok", 0) > 0
    vm.check()
    # every apply that returned applied all the maps of its generator
    hi = [s for s in vm.state() if s[0] >= 1 << 37]
    assert len(hi) == OPS * counts["ok"]


def test_batch_in_one_thread_everything_else_ebusy(vm: GpuVm) -> None:
    # While a batch runs without the GIL every other entry point is refused.
    from gpuvm_core.workloads import workload

    reqs = workload(1, 2000, 300_000)
    done = threading.Event()
    ran: list[bool] = []

    def batch() -> None:
        try:
            while True:  # the batch itself gets EBUSY if it starts during a call below
                try:
                    vm.sm_map_batch(reqs.addr, reqs.range, reqs.obj, reqs.offset)
                    ran.append(True)
                    return
                except GpuvmError as e:
                    assert e.errno == errno.EBUSY
                    time.sleep(0)
        finally:
            done.set()

    seen: dict[str, int] = {}
    t = threading.Thread(target=batch)
    t.start()
    calls = [lambda: vm.find_first(0, 1), lambda: vm.find(0, PAGE), lambda: vm.find_prev(PAGE),
             lambda: vm.find_next(PAGE), lambda: vm.interval_empty(0, PAGE),
             lambda: vm.insert(1 << 39, PAGE), lambda: list(vm), vm.state,
             lambda: vm.va_range(0, PAGE), lambda: vm.kernel_node,
             lambda: vm.sm_map_ops_create(0, PAGE), lambda: vm.madvise_ops_create(0, PAGE),
             lambda: vm.sm_unmap_ops_create(0, PAGE), lambda: vm.prefetch_ops_create(0, PAGE),
             lambda: vm.apply([]), lambda: vm.sm_unmap_batch([0], [PAGE]),
             lambda: vm.find_first_batch([0], [1]), lambda: vm.nbytes, vm.memory_stats,
             vm.check]
    deadline = time.monotonic() + 60
    while not done.is_set():
        assert time.monotonic() < deadline, f"the batch never got the VM: {seen}"
        for c in calls:
            _tolerate(seen, c)
        # Leave a gap with no call running: on an idle machine the batch thread could
        # otherwise only wake up inside one of the calls above and get EBUSY every time.
        time.sleep(0.001)
    t.join()
    assert ran and seen.get("EBUSY", 0) > 0, seen
    vm.check()
