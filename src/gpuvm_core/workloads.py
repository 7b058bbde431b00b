"""The benchmark workloads W1-W4 as numpy request arrays, and their runners.

The four workloads (see docs/benchmarks.md) are defined by a seeded
splitmix64 stream, so every implementation (the kernel's C compiled in
userspace, the compiled core, the pure-Python reference, third-party interval
containers) replays the same requests. Here the stream is generated with
numpy in one vectorised pass: splitmix64's state after ``k`` steps is
``seed + k * GAMMA (mod 2**64)``, so the ``k``-th output does not depend on the
previous outputs and uint64 arithmetic (which wraps mod 2**64) computes all of
them at once.

* populate(N): map ``[i * 128 KiB, +64 KiB)`` with object ``(i mod 64) + 1``
  (W3: no object), ``i = 0..N-1``; not timed.
* W1 map_random: draw r1, r2, r3 per request; map ``addr = (r1 mod 2N) * 64 KiB``,
  ``range = (1 + r2 mod 4) * 64 KiB``, object ``(r3 mod 64) + 1``, offset 0.
* W2 unmap_random: the same draws; even requests map (as W1), odd ones unmap.
* W3 madvise_random: populate without objects, then madvise as W1 (no object).
* W4 lookup: draw only r1; ``find_first(r1 mod (N * 128 KiB), 1)``.

Every workload restarts the stream at seed 42. The VM spans ``[0, 2**48)`` with
no reserved node.

Kernel: the same streams are timed on the kernel's own drivers/gpu/drm/drm_gpuvm.c
compiled in userspace by :mod:`gpuvm_core.kernel` (:func:`time_kernel`;
drm_gpuvm_sm_map_ops_create(),
drm_gpuvm_sm_unmap_ops_create(), drm_gpuvm_madvise_ops_create(),
drm_gpuva_find_first()).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "GAMMA",
    "KIB64",
    "KIB128",
    "VM_RANGE",
    "WORKLOADS",
    "Requests",
    "splitmix64",
    "populate",
    "workload",
    "new_vm",
    "run_single",
    "run_batch",
    "time_single",
    "time_batch",
    "time_kernel",
    "CLOCKS",
    "MemoryReport",
    "memory_per_mapping",
]

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

GAMMA = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
KIB64 = 64 << 10
KIB128 = 128 << 10
#: The VM of every workload: [0, 2**48), no reserved node.
VM_RANGE = 1 << 48
#: Workload number -> short name.
WORKLOADS = {1: "map_random", 2: "unmap_random", 3: "madvise_random", 4: "lookup"}
#: Request kind -> code of ``GpuVm.requests_batch`` (gpuvm_core.REQ_MAP, ...).
KIND_CODES = {"map": 0, "unmap": 1, "madvise": 2}
#: Code of a lookup in ``Requests.codes`` (not a requests_batch kind).
LOOKUP_CODE = 255


def splitmix64(count: int, seed: int = 42) -> U64:
    """The first ``count`` outputs of splitmix64 seeded with ``seed``.

    Kernel: none (the workloads' PRNG; first outputs for seed 42
    are 0xbdd732262feb6e95, 0x28efe333b266f103, 0x47526757130f9f52).
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, not {count}")
    k = np.arange(1, count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = k * np.uint64(GAMMA) + np.uint64(seed & ((1 << 64) - 1))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
        out: U64 = z ^ (z >> np.uint64(31))
    return out


@dataclass(frozen=True)
class Requests:
    """One request stream as parallel numpy arrays (the batch API's inputs).

    ``kind`` is ``"map"``, ``"unmap"``, ``"madvise"`` or ``"lookup"`` per request
    (W2 mixes map and unmap); ``obj`` is -1 for "no object".
    """

    kind: npt.NDArray[np.str_]
    addr: U64
    range: U64
    obj: I64
    offset: U64

    def __len__(self) -> int:
        return len(self.addr)

    @cached_property
    def codes(self) -> npt.NDArray[np.uint8]:
        """``kind`` as the uint8 codes of ``GpuVm.requests_batch`` (lookup = LOOKUP_CODE)."""
        out = np.full(len(self.kind), LOOKUP_CODE, dtype=np.uint8)
        for name, code in KIND_CODES.items():
            out[self.kind == name] = code
        return out

    @cached_property
    def lists(self) -> tuple[frozenset[str], list[str], list[int], list[int], list[int | None],
                             list[int]]:
        """The kinds present and the columns as Python lists (``obj`` None for -1), made
        once before any clock starts, so the single-request loops time the calls only."""
        kind = self.kind.tolist()
        return (frozenset(kind), kind, self.addr.tolist(), self.range.tolist(),
                [None if o < 0 else o for o in self.obj.tolist()], self.offset.tolist())

    @cached_property
    def code_list(self) -> list[int]:
        """``codes`` as a Python list, made before any clock starts: the mixed
        single-request loop (W2) dispatches on these small ints, as the kernel's C
        loop switches on its codes, rather than comparing kind strings."""
        out: list[int] = self.codes.tolist()
        return out

    def select(self, kind: str) -> Requests:
        """The sub-stream of one kind, in order."""
        m = self.kind == kind
        return _ready(Requests(self.kind[m], self.addr[m], self.range[m], self.obj[m],
                               self.offset[m]))

    def tuples(self) -> list[tuple[str, int, int, int | None, int]]:
        """The requests as Python tuples ``(kind, addr, range, obj, offset)``."""
        return [(str(k), int(a), int(r), None if o < 0 else int(o), int(f))
                for k, a, r, o, f in zip(self.kind.tolist(), self.addr.tolist(),
                                         self.range.tolist(), self.obj.tolist(),
                                         self.offset.tolist(), strict=True)]


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"N must be >= 1, not {n}")


def populate(n: int, null_obj: bool = False) -> Requests:
    """The N populate map requests (not timed). Kernel: see module docstring."""
    _check_n(n)
    i = np.arange(n, dtype=np.uint64)
    if null_obj:
        obj = np.full(n, -1, dtype=np.int64)
    else:
        obj = (i % np.uint64(64) + np.uint64(1)).astype(np.int64)
    return _ready(Requests(np.full(n, "map"), i * np.uint64(KIB128),
                           np.full(n, KIB64, dtype=np.uint64), obj, np.zeros(n, dtype=np.uint64)))


def _ready(reqs: Requests) -> Requests:
    """Compute the kind codes now, so no timed loop pays for them."""
    reqs.codes  # noqa: B018 (cached_property)
    reqs.lists  # noqa: B018
    reqs.code_list  # noqa: B018
    return reqs


def workload(w: int, n: int, m: int = 200_000) -> Requests:
    """The ``m`` timed requests of workload ``w`` (1..4) at size ``n``.

    Kernel: see module docstring.
    """
    _check_n(n)
    if w not in WORKLOADS:
        raise ValueError(f"unknown workload W{w}: choose 1, 2, 3 or 4")
    if m < 0:
        raise ValueError(f"M must be >= 0, not {m}")
    zeros = np.zeros(m, dtype=np.uint64)
    if w == 4:
        r1 = splitmix64(m)
        return _ready(Requests(np.full(m, "lookup"), r1 % np.uint64(n * KIB128),
                               np.ones(m, dtype=np.uint64), np.full(m, -1, dtype=np.int64), zeros))
    r = splitmix64(3 * m).reshape(m, 3)
    addr = (r[:, 0] % np.uint64(2 * n)) * np.uint64(KIB64)
    rng = (np.uint64(1) + r[:, 1] % np.uint64(4)) * np.uint64(KIB64)
    obj = (r[:, 2] % np.uint64(64) + np.uint64(1)).astype(np.int64)
    if w == 1:
        kind = np.full(m, "map")
    elif w == 2:
        kind = np.where(np.arange(m) % 2 == 0, "map", "unmap")
        obj[1::2] = -1
    else:
        kind = np.full(m, "madvise")
        obj[:] = -1
    return _ready(Requests(kind, addr, rng, obj, zeros))


# ----------------------------------------------------------------------------
# Runners: one request = build the ops list + apply it + drop it.


def new_vm(factory: Callable[..., Any], n: int, w: int) -> Any:
    """A fresh VM ``[0, 2**48)`` populated for workload ``w`` (W3: no objects)."""
    vm = factory(0, VM_RANGE)
    pop = populate(n, null_obj=(w == 3))
    if hasattr(vm, "run_requests"):  # the kernel oracle: its own C loop
        vm.run_requests(pop.codes, pop.addr, pop.range, pop.obj, pop.offset)
    else:
        run_batch(vm, pop)  # same final state as one by one
    return vm


def run_single(vm: Any, reqs: Requests) -> int:
    """Issue ``reqs`` one by one through the op-list API; return ops applied (W4: hits).

    Kernel: drm_gpuvm_sm_map_ops_create() / _sm_unmap_ops_create() /
    _madvise_ops_create() + drm_gpuva_map/remap/unmap + drm_gpuva_ops_free();
    drm_gpuva_find_first() for lookups.
    """
    total = 0
    apply = vm.apply
    kinds, kind, addr, rng, obj, off = reqs.lists
    if kinds == {"lookup"}:
        ff = vm.find_first
        for a in addr:
            if ff(a, 1) is not None:
                total += 1
        return total
    if kinds == {"map"}:
        mk = vm.sm_map_ops_create
        for a, r, o, f in zip(addr, rng, obj, off, strict=True):
            ops = mk(a, r, o, f)
            apply(ops)
            total += len(ops)
        return total
    if kinds == {"madvise"}:
        mk = vm.madvise_ops_create
        for a, r in zip(addr, rng, strict=True):
            ops = mk(a, r)
            apply(ops)
            total += len(ops)
        return total
    bad = kinds - KIND_CODES.keys()
    if bad:
        raise ValueError(f"run_single: cannot mix {sorted(bad)} with other request kinds")
    mk, um, ma = vm.sm_map_ops_create, vm.sm_unmap_ops_create, vm.madvise_ops_create
    c_map, c_unmap = KIND_CODES["map"], KIND_CODES["unmap"]
    for c, a, r, o, f in zip(reqs.code_list, addr, rng, obj, off, strict=True):
        if c == c_map:
            ops = mk(a, r, o, f)
        elif c == c_unmap:
            ops = um(a, r)
        else:  # madvise: the only other code once other kinds are refused above
            ops = ma(a, r)
        apply(ops)
        total += len(ops)
    return total


def _runs(kind: npt.NDArray[np.str_]) -> list[tuple[str, int, int]]:
    """Maximal runs of equal kinds: (kind, start, stop), computed in one numpy pass."""
    n = len(kind)
    if n == 0:
        return []
    cuts = (np.flatnonzero(kind[1:] != kind[:-1]) + 1).tolist()
    starts, stops = [0, *cuts], [*cuts, n]
    names = kind[starts].tolist()
    return list(zip(names, starts, stops, strict=True))


def run_batch(vm: Any, reqs: Requests) -> int:
    """Issue ``reqs`` through the batch API (numpy in and out); return ops applied (W4: hits).

    One kind only: the contract's call for it (``sm_map_batch``,
    ``sm_unmap_batch``, ``madvise_batch``, ``find_first_batch``). Mixed
    map/unmap/madvise (W2): one ``requests_batch`` call when the VM has it (the
    compiled core), else one call per run of equal kinds, in order (the
    reference and the peers). Per-request counts are summed and dropped at once.

    Kernel: a loop of drm_gpuvm_sm_map_ops_create() (etc.) + apply per request.
    """
    if len(reqs) == 0:
        return 0
    codes = reqs.codes
    addr, rng, obj, off = reqs.addr, reqs.range, reqs.obj, reqs.offset
    if not (codes == codes[0]).all():
        mixed = getattr(vm, "requests_batch", None)
        if mixed is not None and not (codes == LOOKUP_CODE).any():
            return int(np.asarray(mixed(codes, addr, rng, obj, off)).sum())
        runs = _runs(reqs.kind)
    else:
        runs = [(str(reqs.kind[0]), 0, len(reqs))]
    total = 0
    for k, s, e in runs:
        if k == "map":
            total += _total(vm.sm_map_batch(addr[s:e], rng[s:e], obj[s:e], off[s:e]))
        elif k == "unmap":
            total += _total(vm.sm_unmap_batch(addr[s:e], rng[s:e]))
        elif k == "madvise":
            total += _total(vm.madvise_batch(addr[s:e], rng[s:e]))
        elif k == "lookup":
            total += _hits(vm.find_first_batch(addr[s:e], rng[s:e]))
        else:
            raise ValueError(f"unknown request kind {k!r}")
    return total


def _total(counts: Any) -> int:
    if isinstance(counts, np.ndarray):
        return int(counts.sum())
    return int(sum(counts))


def _hits(res: Any) -> int:
    if isinstance(res, np.ndarray) and res.dtype.names and "found" in res.dtype.names:
        return int(np.count_nonzero(res["found"]))
    return sum(1 for x in res if x is not None)  # the reference returns a list of VAs


@dataclass(frozen=True)
class Timing:
    """Wall time of one timed loop."""

    seconds: float
    requests: int
    result: int  # ops applied (W1-W3) or hits (W4)
    final_len: int

    @property
    def ns_per_request(self) -> float:
        return self.seconds * 1e9 / max(self.requests, 1)


#: Clocks for the timed loops: ``wall`` (time.perf_counter: what a user waits) and
#: ``cpu`` (time.thread_time: CPU time of this thread only; on a shared machine it
#: leaves out the time other processes held the core, though not their cache
#: pressure). The same on a quiet machine.
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}


def _timed(loop: Callable[[Any, Requests], int], factory: Callable[..., Any], w: int, n: int,
           m: int, clock: str) -> Timing:
    now = CLOCKS[clock]
    vm = new_vm(factory, n, w)
    reqs = workload(w, n, m)
    t0 = now()
    res = loop(vm, reqs)
    dt = now() - t0
    return Timing(dt, m, res, len(vm))


def time_single(factory: Callable[..., Any], w: int, n: int, m: int,
                clock: str = "wall") -> Timing:
    """Populate a fresh VM (untimed), then time ``run_single`` over W``w``."""
    return _timed(run_single, factory, w, n, m, clock)


def time_batch(factory: Callable[..., Any], w: int, n: int, m: int,
               clock: str = "wall") -> Timing:
    """Populate a fresh VM (untimed), then time ``run_batch`` over W``w``."""
    return _timed(run_batch, factory, w, n, m, clock)


def time_kernel(oracle: Callable[..., Any], w: int, n: int, m: int,
                clock: str = "wall") -> Timing:
    """Populate a fresh kernel-oracle VM (untimed), then time W``w`` in the oracle's C loop.

    ``oracle`` is a :class:`gpuvm_core.kernel.KernelOracle`. The loop and its
    clock run in C (``oracle_run``: ops_create + drm_gpuva_map/remap/unmap +
    drm_gpuva_ops_free per request, drm_gpuva_find_first() for W4), so the
    figure is the kernel code's alone, with no Python call inside.
    """
    vm = new_vm(oracle, n, w)
    reqs = workload(w, n, m)
    seconds, result, _ = vm.run_requests(reqs.codes, reqs.addr, reqs.range, reqs.obj,
                                         reqs.offset, clock)
    return Timing(seconds, m, result, len(vm))


# ----------------------------------------------------------------------------
# Memory: resident-set growth of a fresh process.

def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * _page_size()


def _page_size() -> int:
    import os

    return os.sysconf("SC_PAGE_SIZE")


def _settle() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc malloc_trim),
    so an RSS reading counts live memory only, not pages that freed temporaries
    left resident (which later allocations would reuse and hide)."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS figures are upper-bound noisy
        pass


@dataclass(frozen=True)
class MemoryReport:
    """Memory per mapping of one implementation at size N, measured in a fresh process.

    ``rss_*``: growth of the process's resident set from just before the VM is
    created, divided by the VAs held at that point: everything the structure
    costs, allocator headers, slack and page granularity included
    (meaningless below ~10^4 mappings). ``nbytes_*``: the structure's own
    exact count (``GpuVm.nbytes``; None for implementations without one).
    ``*_populate``: after populate(N); ``*_w1``: after populate(N) + W1's
    200,000 random maps, whose splits lower the chunks' fill factor.
    """

    impl: str
    n: int
    vas_populate: int
    rss_populate: float
    nbytes_populate: float | None
    vas_w1: int
    rss_w1: float
    nbytes_w1: float | None


#: Requests per batch call when feeding the memory measurement: the per-request
#: count arrays the batch calls return stay small (32 KiB) and are dropped at
#: once, so the RSS delta measures the structure, not the harness.
_FEED = 4096


def _feed(vm: Any, reqs: Requests) -> None:
    for s in range(0, len(reqs), _FEED):
        e = min(s + _FEED, len(reqs))
        run_batch(vm, Requests(reqs.kind[s:e], reqs.addr[s:e], reqs.range[s:e], reqs.obj[s:e],
                               reqs.offset[s:e]))


def memory_per_mapping(impl: str, n: int, m: int = 200_000,
                       timeout: float = 900.0) -> MemoryReport:
    """Measure :class:`MemoryReport` for ``impl`` ("core" or "reference") in a child process.

    The child builds every request array first, records its RSS, creates the
    VM, feeds populate(N) and then W1 through the batch API in slices of
    4,096 requests, and records RSS (and ``vm.nbytes``) after each. Linux only.
    """
    import json
    import subprocess
    import sys

    if impl not in ("core", "reference"):
        raise ValueError(f"impl must be 'core' or 'reference', not {impl!r}")
    _check_n(n)
    out = subprocess.run([sys.executable, "-m", "gpuvm_core.workloads", "memory", impl, str(n),
                          str(m)], capture_output=True, text=True, timeout=timeout, check=True)
    return MemoryReport(**json.loads(out.stdout.splitlines()[-1]))


def rss_per_mapping(impl: str, n: int, timeout: float = 900.0) -> float:
    """Resident bytes per mapping after populate(N) (see :func:`memory_per_mapping`)."""
    return memory_per_mapping(impl, n, m=0, timeout=timeout).rss_populate


def _memory_child(impl: str, n: int, m: int) -> MemoryReport:
    import gpuvm_core

    factory = gpuvm_core.GpuVm if impl == "core" else gpuvm_core.RefGpuVm
    pop, w1 = populate(n), workload(1, n, m)
    warm = factory(0, VM_RANGE)
    _feed(warm, populate(4))
    del warm
    _settle()
    before = _rss_bytes()
    vm = factory(0, VM_RANGE)
    _feed(vm, pop)
    _settle()
    rss_pop, vas_pop = _rss_bytes() - before, len(vm)
    nb_pop = getattr(vm, "nbytes", None)
    _feed(vm, w1)
    _settle()
    rss_w1, vas_w1 = _rss_bytes() - before, len(vm)
    nb_w1 = getattr(vm, "nbytes", None)
    return MemoryReport(impl, n, vas_pop, rss_pop / vas_pop,
                        None if nb_pop is None else nb_pop / vas_pop,
                        vas_w1, rss_w1 / vas_w1, None if nb_w1 is None else nb_w1 / vas_w1)


if __name__ == "__main__":  # python -m gpuvm_core.workloads memory core|reference N [M]
    import json as _json
    import sys as _sys
    from dataclasses import asdict as _asdict

    if len(_sys.argv) not in (4, 5) or _sys.argv[1] != "memory":
        raise SystemExit("usage: python -m gpuvm_core.workloads memory core|reference N [M]")
    _m = int(_sys.argv[4]) if len(_sys.argv) == 5 else 200_000
    print(_json.dumps(_asdict(_memory_child(_sys.argv[2], int(_sys.argv[3]), _m))))
