"""Batch forms: same final state as one-by-one, per-request counts, refusals with .index.

Covers the contract's one-kind calls and the mixed-kind ``requests_batch`` on
the kernel's public vectors and on random streams, refusals mid-batch, the
software-pipelined ``find_first_batch`` against ``find_first``, and ``nbytes``.
"""

from __future__ import annotations

import errno
import random
from typing import Any

import numpy as np
import pytest

from gpuvm_core import REQ_MADVISE, REQ_MAP, REQ_UNMAP, GpuVm, GpuvmError, RefGpuVm
from gpuvm_core.conformance import bundled_vectors, iter_cases

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
    with pytest.raises(TypeError, match="offset"):   # floats: refused, as scalar floats are
        vm.sm_map_batch([0], [PAGE], [1], [0.5])
    with pytest.raises(GpuvmError):
        vm.sm_unmap_batch([0, 0], [PAGE])
    assert vm.state() == []
    with pytest.raises(TypeError, match="range"):
        vm.sm_map_batch([0], [float(PAGE)], [None], [0])
    assert vm.state() == []
    # lists of Python ints (beyond int64 too) and None handles are accepted
    assert vm.sm_map_batch([0], [PAGE], [None], [(1 << 64) - 1]).tolist() == [1]
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


# ----------------------------------------------------------------------------
# batch == single on the kernel's vector files (tests/data/gpuvm-public.jsonl.gz)

_CODES = {"map": REQ_MAP, "unmap": REQ_UNMAP, "madvise": REQ_MADVISE}
U64 = (1 << 64) - 1


def _vm_of(case: dict[str, Any]) -> GpuVm:
    v = case["vm"]
    return GpuVm(v["start"], v["range"], reserve_addr=v["reserve_addr"],
                 reserve_range=v["reserve_range"])


def _arrays(steps: list[dict[str, Any]]) -> tuple[np.ndarray, ...]:
    return (np.array([_CODES[s["call"]] for s in steps], dtype=np.uint8),
            np.array([s["addr"] for s in steps], dtype=np.uint64),
            np.array([s["range"] for s in steps], dtype=np.uint64),
            np.array([-1 if s["obj"] is None else s["obj"] for s in steps], dtype=np.int64),
            np.array([s["offset"] for s in steps], dtype=np.uint64))


def _state_lists(vm: GpuVm) -> list[list[Any]]:
    return [list(t) for t in vm.state()]


def _run_mixed(vm: GpuVm, steps: list[dict[str, Any]]) -> list[tuple[int, list[list[Any]]]]:
    """Feed ``steps`` to requests_batch; on a refusal continue after it.

    Returns (index of the step whose kernel state must now hold, our state) at
    every stop: each refusal (state after the step before it) and the end.
    """
    out = []
    start = 0
    kinds, addr, rng, obj, off = _arrays(steps)
    while start < len(steps):
        try:
            counts = vm.requests_batch(kinds[start:], addr[start:], rng[start:], obj[start:],
                                       off[start:])
        except GpuvmError as e:
            assert e.index is not None
            i = start + e.index
            assert steps[i]["result"] == errno.errorcode[e.errno or 0], steps[i]
            assert all(s["result"] == "ok" for s in steps[start:i])
            out.append((i, _state_lists(vm)))
            start = i + 1
            continue
        assert counts.tolist() == [len(s["ops"]) for s in steps[start:]]
        assert all(s["result"] == "ok" for s in steps[start:])
        out.append((len(steps), _state_lists(vm)))
        break
    return out


def _run_per_kind(vm: GpuVm, steps: list[dict[str, Any]]) -> None:
    """The contract's one-kind batch calls, one call per run of equal kinds, refusals skipped."""
    i = 0
    while i < len(steps):
        j = i
        while j < len(steps) and steps[j]["call"] == steps[i]["call"]:
            j += 1
        run = steps[i:j]
        _, a, r, o, f = _arrays(run)
        try:
            if steps[i]["call"] == "map":
                counts = vm.sm_map_batch(a, r, o, f)
            elif steps[i]["call"] == "unmap":
                counts = vm.sm_unmap_batch(a, r)
            else:
                assert all(s["obj"] is None and s["offset"] == 0 for s in run)
                counts = vm.madvise_batch(a, r)
        except GpuvmError as e:
            assert e.index is not None
            assert run[e.index]["result"] != "ok"
            i += e.index + 1
            continue
        assert counts.tolist() == [len(s["ops"]) for s in run]
        i = j


def _expected(steps: list[dict[str, Any]], upto: int) -> list[list[Any]]:
    """The kernel's state after steps[:upto] (a refused step leaves the state unchanged)."""
    for s in reversed(steps[:upto]):
        if s["result"] == "ok":
            return [list(t) for t in s["state"]]
    return []


def test_batch_equals_single_on_public_vectors() -> None:
    cases = list(iter_cases(bundled_vectors()))
    assert len(cases) == 2011
    refusals = per_kind_checked = 0
    for case in cases:
        steps = [s for s in case["steps"] if s["call"] != "prefetch"]
        if not steps:
            continue
        # the single path (its ops match the kernel: test_conformance)
        single = _vm_of(case)
        for s in steps:
            try:
                if s["call"] == "map":
                    ops = single.sm_map_ops_create(s["addr"], s["range"], s["obj"], s["offset"])
                elif s["call"] == "unmap":
                    ops = single.sm_unmap_ops_create(s["addr"], s["range"])
                else:
                    ops = single.madvise_ops_create(s["addr"], s["range"], s["obj"], s["offset"])
            except GpuvmError:
                continue
            single.apply(ops)
        # the mixed batch, stopping at every refusal
        vm = _vm_of(case)
        stops = _run_mixed(vm, steps)
        refusals += len(stops) - 1
        for upto, st in stops:
            assert st == _expected(steps, upto), (case["id"], upto)
        assert vm.state() == single.state(), case["id"]
        vm.check()
        # the contract's one-kind calls (madvise_batch has no object argument)
        if all(s["call"] != "madvise" or (s["obj"] is None and s["offset"] == 0)
               for s in steps):
            vm2 = _vm_of(case)
            _run_per_kind(vm2, steps)
            assert vm2.state() == single.state(), case["id"]
            per_kind_checked += 1
    assert refusals > 50  # the invalid-* categories refuse mid-sequence
    assert per_kind_checked > 1500


# ----------------------------------------------------------------------------
# batch == single on random streams (small dense VMs, reserved nodes, zero lengths, u64 edges)


def _random_vm(rnd: random.Random) -> tuple[GpuVm, int, int]:
    start = rnd.choice([0, PAGE, (1 << 64) - 300 * PAGE])
    size = rnd.choice([16, 40, 300]) * PAGE
    if rnd.random() < 0.4:
        ka = start + rnd.randrange(0, size // PAGE) * PAGE
        kr = rnd.randrange(1, 4) * PAGE
        return GpuVm(start, size, reserve_addr=ka, reserve_range=kr), start, size
    return GpuVm(start, size), start, size


def _random_stream(rnd: random.Random, start: int, size: int, n: int) -> tuple[np.ndarray, ...]:
    kinds, addr, rng, obj, off = [], [], [], [], []
    pages = size // PAGE
    for _ in range(n):
        kinds.append(rnd.choice([REQ_MAP, REQ_MAP, REQ_UNMAP, REQ_MADVISE]))
        a = start + rnd.randrange(0, pages) * PAGE
        r = rnd.choice([0, 1, 1, 2, 3, 5, 9]) * PAGE
        if rnd.random() < 0.02:
            r = U64 - a + 1 if a else PAGE  # a + r == 2**64: overflow (EINVAL)
        addr.append(a)
        rng.append(r)
        obj.append(rnd.choice([-1, -1, 1, 2, 7]))
        off.append(rnd.choice([0, PAGE, U64 - PAGE + 1]))
    return (np.array(kinds, np.uint8), np.array(addr, np.uint64), np.array(rng, np.uint64),
            np.array(obj, np.int64), np.array(off, np.uint64))


def _single(vm: GpuVm, k: int, a: int, r: int, o: int, f: int) -> int:
    ob = None if o < 0 else o
    if k == REQ_MAP:
        ops = vm.sm_map_ops_create(a, r, ob, f)
    elif k == REQ_UNMAP:
        ops = vm.sm_unmap_ops_create(a, r)
    else:
        ops = vm.madvise_ops_create(a, r, ob, f)
    vm.apply(ops)
    return len(ops)


@pytest.mark.parametrize("seed", range(40))
def test_requests_batch_equals_single_on_random_streams(seed: int) -> None:
    rnd = random.Random(seed)
    vm, start, size = _random_vm(rnd)
    one, _, _ = (GpuVm(start, size, reserve_addr=vm.reserve_addr,
                       reserve_range=vm.reserve_range), 0, 0)
    k, a, r, o, f = _random_stream(rnd, start, size, 300)
    pos = 0
    while pos < len(k):
        try:
            counts = vm.requests_batch(k[pos:], a[pos:], r[pos:], o[pos:], f[pos:])
            refused = None
        except GpuvmError as e:
            assert e.index is not None and e.errno == errno.EINVAL
            refused = pos + e.index
            counts = None
        stop = len(k) if refused is None else refused
        want = [_single(one, int(k[i]), int(a[i]), int(r[i]), int(o[i]), int(f[i]))
                for i in range(pos, stop)]
        if counts is not None:
            assert counts.tolist() == want
        assert vm.state() == one.state()
        if refused is not None:
            # the single path refuses the same request, and nothing changes
            before = one.state()
            with pytest.raises(GpuvmError) as ei:
                _single(one, int(k[refused]), int(a[refused]), int(r[refused]),
                        int(o[refused]), int(f[refused]))
            assert ei.value.errno == errno.EINVAL and one.state() == before
        pos = stop + 1
    vm.check()


def test_refused_request_mid_mixed_batch_keeps_earlier_ones() -> None:
    vm = GpuVm(0, 64 * PAGE)
    k = np.array([REQ_MAP, REQ_MAP, REQ_UNMAP, REQ_MADVISE, REQ_MAP, REQ_MAP], np.uint8)
    a = np.array([0, 8 * PAGE, 2 * PAGE, 9 * PAGE, 60 * PAGE, 20 * PAGE], np.uint64)
    r = np.array([4 * PAGE, 4 * PAGE, PAGE, PAGE, 8 * PAGE, PAGE], np.uint64)
    o = np.array([1, -1, -1, -1, 3, 4], np.int64)
    f = np.zeros(6, np.uint64)
    with pytest.raises(GpuvmError) as ei:
        vm.requests_batch(k, a, r, o, f)
    assert ei.value.errno == errno.EINVAL and ei.value.index == 4
    assert "request 4" in str(ei.value)
    # map, map, unmap (split of the first VA), madvise (split of the object-less VA)
    assert vm.state() == [(0, 2 * PAGE, 1, 0), (3 * PAGE, PAGE, 1, 3 * PAGE),
                          (8 * PAGE, PAGE, None, 0), (9 * PAGE, PAGE, None, 0),
                          (10 * PAGE, 2 * PAGE, None, 2 * PAGE)]
    # the request after the refused one was not applied
    assert vm.find_first(20 * PAGE, PAGE) is None


def test_requests_batch_kinds_are_checked_before_anything() -> None:
    vm = GpuVm(0, 64 * PAGE)
    z = np.zeros(3, np.uint64)
    one = np.full(3, PAGE, np.uint64)
    for bad, idx in (([0, 3, 0], 1), ([0, 0, -1], 2), (["map", "remap", "map"], 1)):
        with pytest.raises(GpuvmError) as ei:
            vm.requests_batch(bad, z, one, np.ones(3, np.int64), z)
        assert ei.value.errno == errno.EINVAL and ei.value.index == idx
    with pytest.raises(TypeError, match="kind"):
        vm.requests_batch([0, 0.5, 0], z, one, np.ones(3, np.int64), z)
    with pytest.raises(GpuvmError):
        vm.requests_batch([0, 0], z, one, np.ones(3, np.int64), z)  # lengths differ
    assert vm.state() == []
    # names work as well as codes; an empty batch does nothing
    assert vm.requests_batch(["map", "unmap"], [0, 0], [2 * PAGE, PAGE], [5, -1],
                             [0, 0]).tolist() == [1, 1]
    assert vm.state() == [(PAGE, PAGE, 5, PAGE)]
    assert vm.requests_batch([], [], [], [], []).tolist() == []


# ----------------------------------------------------------------------------
# find_first_batch == find_first, on VMs of many chunks (the pipelined path) and
# with zero-length VAs (the exact fallback)


@pytest.mark.parametrize("zero_len", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_find_first_batch_matches_find_first(seed: int, zero_len: bool) -> None:
    rnd = random.Random(seed)
    vm = GpuVm(0, 1 << 40)
    n = rnd.choice([1, 7, 500, 5000])
    addrs = sorted(rnd.sample(range(1, 4 * n + 8), n))
    vm.sm_map_batch(np.array(addrs, np.uint64) * PAGE,
                    np.array([rnd.choice([1, 2]) * PAGE for _ in addrs], np.uint64),
                    np.array([rnd.choice([-1, 3]) for _ in addrs], np.int64),
                    np.zeros(n, np.uint64))
    if zero_len:
        # a zero-length map inside a VA leaves a zero-length VA behind (kernel quirk)
        for a in rnd.sample(addrs, min(3, n)):
            vm.apply(vm.sm_map_ops_create(a * PAGE + 5, 0, 9, 0))
        assert any(va.range == 0 for va in vm)
    q_addr = [rnd.randrange(0, (4 * n + 12) * PAGE) for _ in range(3000)]
    q_addr += [a * PAGE for a in addrs[:200]] + [a * PAGE - 1 for a in addrs[:200]]
    q_addr += [0, U64, U64 - PAGE]
    q_rng = [rnd.choice([0, 1, 1, PAGE, 5 * PAGE, U64]) for _ in q_addr]
    res = vm.find_first_batch(np.array(q_addr, np.uint64), np.array(q_rng, np.uint64))
    for i, (qa, qr) in enumerate(zip(q_addr, q_rng, strict=True)):
        va = vm.find_first(qa, qr)
        row = res[i]
        if va is None:
            assert not row["found"] and int(row["obj"]) == -1, (qa, qr)
        else:
            assert row["found"], (qa, qr)
            assert (int(row["addr"]), int(row["range"]), int(row["offset"])) == (
                va.addr, va.range, va.offset)
            assert int(row["obj"]) == (-1 if va.obj is None else va.obj)


def test_find_first_batch_on_empty_vm() -> None:
    res = GpuVm(0, 1 << 20).find_first_batch([0, 5, U64], [1, 0, 1])  # a list: exact u64
    assert not res["found"].any() and (res["obj"] == -1).all()


# ----------------------------------------------------------------------------
# memory accounting


def test_nbytes_accounts_for_the_structure() -> None:
    from gpuvm_core._core import CHUNK_SLOTS

    vm = GpuVm(0, 1 << 48)
    assert vm.nbytes == 0
    n = 10 * CHUNK_SLOTS + 3
    vm.sm_map_batch(np.arange(n, dtype=np.uint64) * 2 * PAGE, np.full(n, PAGE, np.uint64),
                    np.ones(n, np.int64), np.zeros(n, np.uint64))
    st = vm.memory_stats()
    assert st["slots_used"] == n and st["chunks"] == 11  # appends fill chunks completely
    assert st["nbytes"] == vm.nbytes
    per_slot = 8 * 4 + 4  # addr, range, obj, offset (8 B each) + a 4-byte id
    assert n * per_slot < vm.nbytes < n * per_slot * 1.2 + 4096
    assert vm.__sizeof__() > vm.nbytes
    # splitting every VA in two at most doubles the chunks (fill stays >= 1/2)
    vm.sm_unmap_batch(np.arange(n, dtype=np.uint64) * 2 * PAGE + PAGE // 2,
                      np.full(n, PAGE // 4, np.uint64))
    st = vm.memory_stats()
    assert st["slots_used"] == 2 * n and 0.5 <= st["fill"] <= 1.0
    vm.check()


def test_other_threads_get_ebusy_while_a_batch_runs_without_the_gil() -> None:
    # The batch loops release the GIL; another thread touching the same VM
    # meanwhile must get EBUSY (never a crash or a half-updated answer).
    import threading

    from gpuvm_core.workloads import new_vm, workload

    vm = new_vm(GpuVm, 20_000, 1)
    reqs = workload(1, 20_000, 400_000)
    done = threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            vm.sm_map_batch(reqs.addr, reqs.range, reqs.obj, reqs.offset)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            done.set()

    t = threading.Thread(target=worker)
    t.start()
    busy = answered = 0
    while not done.is_set():
        try:
            vm.find_first(0, 1)
            answered += 1
        except GpuvmError as e:
            assert e.errno == errno.EBUSY
            busy += 1
    t.join()
    assert not errors
    assert busy + answered > 0
    vm.check()
    assert vm.find_first(0, 1) is not None  # idle again afterwards
