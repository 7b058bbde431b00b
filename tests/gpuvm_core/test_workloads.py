"""W1-W4 request streams (bench/WORKLOADS.md) and the runners the benchmarks use."""

from __future__ import annotations

import numpy as np
import pytest

from gpuvm_core import GpuVm, RefGpuVm
from gpuvm_core.workloads import (
    KIB64,
    KIB128,
    Requests,
    populate,
    run_batch,
    run_single,
    splitmix64,
    time_single,
    workload,
)

MASK = (1 << 64) - 1


def _splitmix64_py(count: int, seed: int = 42) -> list[int]:
    """WORKLOADS.md's scalar generator, written out independently of the numpy one."""
    out, s = [], seed
    for _ in range(count):
        s = (s + 0x9E3779B97F4A7C15) & MASK
        z = s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        out.append(z ^ (z >> 31))
    return out


def test_first_three_values() -> None:
    assert splitmix64(3).tolist() == [0xBDD732262FEB6E95, 0x28EFE333B266F103, 0x47526757130F9F52]


def test_numpy_stream_matches_scalar_generator() -> None:
    assert splitmix64(5000).tolist() == _splitmix64_py(5000)
    assert splitmix64(4, seed=7).tolist() == _splitmix64_py(4, seed=7)
    assert splitmix64(0).tolist() == []


def _workload_py(w: int, n: int, m: int) -> list[tuple[object, ...]]:
    """The reference generator of WORKLOADS.md, on the scalar stream."""
    r = iter(_splitmix64_py(3 * m))
    out: list[tuple[object, ...]] = []
    for j in range(m):
        if w == 4:
            out.append(("lookup", next(r) % (n * KIB128), 1, None, 0))
            continue
        r1, r2, r3 = next(r), next(r), next(r)
        addr, rng, obj = (r1 % (2 * n)) * KIB64, (1 + r2 % 4) * KIB64, (r3 % 64) + 1
        if w == 1 or (w == 2 and j % 2 == 0):
            out.append(("map", addr, rng, obj, 0))
        elif w == 2:
            out.append(("unmap", addr, rng, None, 0))
        else:
            out.append(("madvise", addr, rng, None, 0))
    return out


@pytest.mark.parametrize("w", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [1, 1000, 10**6])
def test_requests_match_reference_generator(w: int, n: int) -> None:
    assert workload(w, n, 500).tuples() == _workload_py(w, n, 500)


def test_populate() -> None:
    p = populate(3)
    assert p.tuples() == [("map", 0, KIB64, 1, 0), ("map", KIB128, KIB64, 2, 0),
                          ("map", 2 * KIB128, KIB64, 3, 0)]
    assert populate(65).obj[64] == 1
    assert (populate(4, null_obj=True).obj == -1).all()


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_sizes_are_refused(bad: int) -> None:
    with pytest.raises(ValueError):
        workload(1, bad, 10)
    with pytest.raises(ValueError):
        populate(bad)
    with pytest.raises(ValueError, match="W5"):
        workload(5, 10, 10)


@pytest.mark.parametrize("n", [1000, 100_000, 1_000_000])
def test_w4_hit_count(n: int) -> None:
    # The populated VAs are [i*128K, +64K): a lookup hits exactly when the
    # address lies in the first half of its 128 KiB slot (WORKLOADS.md: 100,167).
    addr = workload(4, n).addr
    assert int(np.count_nonzero(addr % np.uint64(KIB128) < np.uint64(KIB64))) == 100_167


@pytest.mark.parametrize(("w", "expected"), [(1, 1136), (2, 546), (3, 1000), (4, 1000)])
def test_sanity_va_counts_n1000(w: int, expected: int) -> None:
    """VA counts at the end of the 200,000-request loop, N=1,000 (WORKLOADS.md)."""
    vm = GpuVm(0, 1 << 48)
    run_batch(vm, populate(1000, null_obj=(w == 3)))
    assert len(vm) == 1000
    res = run_batch(vm, workload(w, 1000))
    assert len(vm) == expected
    if w == 4:
        assert res == 100_167


def _state(vm: object) -> list[tuple[int, int, int | None, int]]:
    return [(va.addr, va.range, va.obj, va.offset) for va in vm]  # type: ignore[attr-defined]


@pytest.mark.parametrize("factory", [GpuVm, RefGpuVm], ids=["core", "reference"])
@pytest.mark.parametrize("w", [1, 2, 3])
def test_batch_and_single_paths_agree(factory: type, w: int) -> None:
    n, m = 64, 3000
    a, b = factory(0, 1 << 48), factory(0, 1 << 48)
    pop = populate(n, null_obj=(w == 3))
    run_single(a, pop)
    run_batch(b, pop)
    assert _state(a) == _state(b)
    reqs = workload(w, n, m)
    ops_single = run_single(a, reqs)
    ops_batch = run_batch(b, reqs)
    assert _state(a) == _state(b)
    assert ops_single == ops_batch
    if w != 3:
        assert _state(a) != [(va[0], va[1], va[2], va[3]) for va in pop.tuples()]


@pytest.mark.parametrize("w", [1, 2, 3])
def test_core_matches_reference_on_workloads(w: int) -> None:
    n, m = 200, 4000
    a, b = GpuVm(0, 1 << 48), RefGpuVm(0, 1 << 48)
    pop = populate(n, null_obj=(w == 3))
    run_batch(a, pop)
    run_batch(b, pop)
    reqs = workload(w, n, m)
    assert run_batch(a, reqs) == run_single(b, reqs)
    assert _state(a) == _state(b)


def test_batch_lookup_hits_match_single() -> None:
    vm = GpuVm(0, 1 << 48)
    run_batch(vm, populate(100))
    reqs = workload(4, 100, 2000)
    hits = run_single(vm, reqs)
    assert hits == run_batch(vm, reqs)
    expected = int(np.count_nonzero(reqs.addr % np.uint64(KIB128) < np.uint64(KIB64)))
    assert hits == expected


def test_timing_reports_loop() -> None:
    t = time_single(RefGpuVm, 1, 50, 200)
    assert t.requests == 200 and t.seconds > 0 and t.ns_per_request > 0
    assert t.final_len >= 50 and t.result > 0


def test_run_single_mixed_kinds_dispatch_on_codes() -> None:
    # W2-style mixed streams are dispatched on the integer kind codes: each request must
    # reach the call of its own kind (a madvise sent as an unmap would remove the VA)
    kind = np.array(["map", "madvise", "unmap", "map", "madvise", "unmap"])
    addr = np.array([0x10000, 0x10000, 0x18000, 0x40000, 0x40000, 0x90000], dtype=np.uint64)
    rng = np.array([0x10000, 0x8000, 0x4000, 0x10000, 0x10000, 0x1000], dtype=np.uint64)
    obj = np.array([3, -1, -1, -1, -1, -1], dtype=np.int64)
    reqs = Requests(kind, addr, rng, obj, np.zeros(6, dtype=np.uint64))
    vm, by_hand = GpuVm(0, 1 << 48), GpuVm(0, 1 << 48)
    total = run_single(vm, reqs)
    expect = 0
    for ops in (by_hand.sm_map_ops_create(0x10000, 0x10000, 3, 0),):
        expect += len(ops)
        by_hand.apply(ops)
    for make in (lambda: by_hand.madvise_ops_create(0x10000, 0x8000),
                 lambda: by_hand.sm_unmap_ops_create(0x18000, 0x4000),
                 lambda: by_hand.sm_map_ops_create(0x40000, 0x10000, None, 0),
                 lambda: by_hand.madvise_ops_create(0x40000, 0x10000),
                 lambda: by_hand.sm_unmap_ops_create(0x90000, 0x1000)):
        ops = make()
        expect += len(ops)
        by_hand.apply(ops)
    assert total == expect == 3   # map; unmap -> one remap (prev + next); map; no more
    assert _state(vm) == _state(by_hand) == [(0x10000, 0x8000, 3, 0), (0x1c000, 0x4000, 3, 0xc000),
                                             (0x40000, 0x10000, None, 0)]


@pytest.mark.parametrize("other", ["lookup", "prefetch"])
def test_run_single_refuses_other_kinds_in_a_mix(other: str) -> None:
    kind = np.array(["map", other])
    reqs = Requests(kind, np.array([0, 0x1000], dtype=np.uint64),
                    np.array([0x1000, 0x1000], dtype=np.uint64), np.array([-1, -1], dtype=np.int64),
                    np.zeros(2, dtype=np.uint64))
    vm = GpuVm(0, 1 << 48)
    with pytest.raises(ValueError, match="cannot mix"):
        run_single(vm, reqs)
    assert len(vm) == 0
