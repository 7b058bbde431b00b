"""xe_multigpu_svm: cross-GPU SVM scenarios over every ordered pair of GPUs.

The suite (tests/intel/xe_multigpu_svm.c in mkahola/igt) opens every Xe GPU,
gives each a fault-mode VM whose whole VA is a CPU-address mirror, and runs
one routine per flag for each ordered pair (src, dst) of GPUs. Batches are
small BOs bound at the CPU address of their own mmap ("punching a gap" in the
mirror) and re-covered by the mirror afterwards; the data lives in malloc()ed
memory both GPUs reach through SVM. A preferred-location madvise names either
the GPU's own VRAM or, for the ``conflict`` variants, the peer's.

Here two discrete GPUs joined by a fast interconnect (``link``) form the one
ordered pair in each direction. Copies (the blitter's MEM_COPY) become a GPU
read of the source pages, whose data must be what was last stored there, and
a GPU store of the same value into the destination pages. "Concurrent"
submissions to both GPUs alternate deterministically, GPU 0 first.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from .runner import Subtest
from .scenario import PAGE, Scenario

__all__ = ["SUITE", "subtests", "EXPECTED_COUNT", "SECTIONS"]

SUITE = "xe_multigpu_svm"

PREFETCH = 1 << 1
XGPU_ACCESS = 1 << 2
ATOMIC_OP = 1 << 3
COH_OP = 1 << 4
COH_FAIL = 1 << 5
PERF_OP = 1 << 6
PERF_REM_COPY = 1 << 7
PFAULT_OP = 1 << 8
CONC_ACCESS = 1 << 9
CONFLICT = 1 << 10

#: mgpu-<name>: the flags, in the suite's order (19 subtests).
SECTIONS: tuple[tuple[str, int], ...] = (
    ("xgpu-access-basic", XGPU_ACCESS),
    ("xgpu-access-prefetch", PREFETCH | XGPU_ACCESS),
    ("atomic-op-basic", ATOMIC_OP),
    ("atomic-op-prefetch", PREFETCH | ATOMIC_OP),
    ("atomic-op-conflict", CONFLICT | ATOMIC_OP),
    ("coherency-basic", COH_OP),
    ("coherency-fail-basic", COH_OP | COH_FAIL),
    ("coherency-prefetch", PREFETCH | COH_OP),
    ("coherency-conflict", CONFLICT | COH_OP),
    ("coherency-fail-prefetch", PREFETCH | COH_OP | COH_FAIL),
    ("latency-basic", PERF_OP),
    ("latency-copy-basic", PERF_OP | PERF_REM_COPY),
    ("latency-prefetch", PREFETCH | PERF_OP),
    ("latency-copy-prefetch", PREFETCH | PERF_OP | PERF_REM_COPY),
    ("pagefault-basic", PFAULT_OP),
    ("pagefault-prefetch", PREFETCH | PFAULT_OP),
    ("pagefault-conflict", CONFLICT | PFAULT_OP),
    ("concurrent-access-basic", CONC_ACCESS),
    ("concurrent-access-prefetch", PREFETCH | CONC_ACCESS),
)

EXPECTED_COUNT = 19

GPUS = ("gpu0", "gpu1")
SZ_2M = 2 << 20
COPY_SIZE = 64 << 20
BATCH_SIZE = 8 << 10
ATOMIC_OP_VAL = 56
BATCH_VALUE = 60
NUM_ITER = 200
PATTERN = 0x67676767

R_NOT_618 = ("profile 6.18 has no preferred location in another device's VRAM (a madvise "
             "devmem_fd naming a device with a region instance came after 6.18)")
R_PEER_PREFETCH = ("a prefetch into the peer GPU's VRAM (the advised location of another "
                   "device) is not expressible: the trace prefetch names only this "
                   "device's VRAM or system memory")


class _Pair:
    """One run of a routine for an ordered pair: each GPU's VM and the helpers."""

    def __init__(self, s: Scenario, gpu: str, xgpu: str) -> None:
        self.s = s
        self.gpu, self.xgpu = gpu, xgpu
        self.vms: dict[str, str] = {}
        self.batches: list[tuple[str, int]] = []
        for g in (gpu, xgpu):
            vm = s.vm(s.name("vm"), g)
            s.bind_mirror(vm, why="bind the whole VA as CPU-address mirror")
            self.vms[g] = vm

    def alloc(self, size: int = PAGE) -> int:
        """aligned_alloc(2 MiB, size)."""
        addr = self.s.aspace.reserve(size, SZ_2M)
        self.s.mmap(addr, size)
        return addr

    def batch(self, gpu: str) -> None:
        """A batch BO bound at the CPU address of its mmap, later re-covered by the mirror."""
        s = self.s
        bo = s.name("bo")
        addr = s.aspace.reserve(BATCH_SIZE)
        s.bo(bo, BATCH_SIZE, ["vram"], gpu)
        s.bind_bo(self.vms[gpu], bo, addr, BATCH_SIZE)
        self.batches.append((gpu, addr))

    def madvise_exec(self, gpu: str, xgpu: str, addr: int, flags: int) -> None:
        """The preferred-location advice (own VRAM, or the peer's if conflict), then prefetch."""
        s = self.s
        target = xgpu if flags & CONFLICT else gpu
        s.madvise(self.vms[gpu], addr, PAGE, "preferred_loc", devmem_fd=target,
                  migration_policy=0, why=f"prefer {target}'s VRAM")
        if flags & PREFETCH:
            s.prefetch(self.vms[gpu], addr, PAGE, "vram", why="prefetch to the advised VRAM")

    def copy(self, gpu: str, src: int, dst: int, size: int = PAGE,
             faults: int | None = None) -> None:
        s, vm = self.s, self.vms[gpu]
        value = s.mem.get(src // PAGE, 0)
        s.gpu(vm, "read", src, size, faults=faults, why="MEM_COPY reads the source")
        s.gpu(vm, "write", dst, size, value, faults=faults, why="MEM_COPY writes the copy")

    def finish(self) -> None:
        for gpu, addr in self.batches:
            self.s.bind_mirror(self.vms[gpu], addr, BATCH_SIZE,
                               why="batch_fini: the mirror re-covers the batch")


def _xgpu_access(p: _Pair, flags: int) -> None:
    s = p.s
    src, dst = p.alloc(COPY_SIZE), p.alloc(COPY_SIZE)
    p.batch(p.gpu)
    s.cpu_write(src, COPY_SIZE, PATTERN, why="memset(src, 0x67)")
    s.cpu_write(dst, COPY_SIZE, 0, why="memset(dst, 0)")
    s.madvise(p.vms[p.gpu], dst, COPY_SIZE, "preferred_loc", devmem_fd=p.xgpu,
              migration_policy=0, why="the copy's destination prefers the peer's VRAM")
    p.copy(p.gpu, src, dst, COPY_SIZE)
    s.cpu_check(dst, COPY_SIZE, why="memcmp(src, dst)")


def _atomic_op(p: _Pair, flags: int) -> None:
    s = p.s
    addr, dst = p.alloc(), p.alloc()
    s.cpu_write(addr, 8, ATOMIC_OP_VAL - 1)
    p.batch(p.gpu)
    p.madvise_exec(p.gpu, p.xgpu, addr, flags)
    s.gpu(p.vms[p.gpu], "atomic", addr, 4, why="GPU1 MI_ATOMIC_INC")
    p.batch(p.xgpu)
    p.madvise_exec(p.xgpu, p.gpu, dst, flags)
    p.copy(p.xgpu, addr, dst)
    s.cpu_check(dst, 4, why="GPU2's copy of GPU1's increment")
    p.batch(p.xgpu)
    p.madvise_exec(p.xgpu, p.gpu, dst, flags)
    s.gpu(p.vms[p.xgpu], "atomic", dst, 4, why="GPU2 MI_ATOMIC_INC")
    p.batch(p.gpu)
    p.madvise_exec(p.gpu, p.xgpu, addr, flags)
    p.copy(p.gpu, dst, addr)
    s.cpu_check(addr, 4, why="GPU1's copy of GPU2's increment")


def _coherency(p: _Pair, flags: int) -> None:
    s = p.s
    addr, dst = p.alloc(), p.alloc()
    p.batch(p.gpu)
    p.madvise_exec(p.gpu, p.xgpu, addr, flags)
    s.gpu(p.vms[p.gpu], "write", addr, 4, BATCH_VALUE, why="GPU1 stores the value")
    p.batch(p.xgpu)
    p.madvise_exec(p.xgpu, p.gpu, dst, flags)
    p.copy(p.xgpu, addr, dst)
    s.cpu_check(dst, 4, why="GPU2's copy of GPU1's store")
    if flags & COH_FAIL:
        s.cpu_write(addr, 8, 0)
        p.batch(p.gpu)
        p.batch(p.xgpu)
        s.gpu(p.vms[p.gpu], "write", addr, 4, BATCH_VALUE + 10, why="GPU1's racing store")
        s.gpu(p.vms[p.xgpu], "write", addr, 4, BATCH_VALUE + 20, why="GPU2's racing store")
        result = p.alloc()
        s.cpu_write(result, 8, 0xDEADBEEF)
        p.batch(p.xgpu)
        p.madvise_exec(p.xgpu, p.gpu, result, flags)
        p.copy(p.xgpu, addr, result)
        s.cpu_check(result, 4, why="the later store wins in this interleaving")


def _latency(p: _Pair, flags: int) -> None:
    s = p.s
    addr, dst = p.alloc(), p.alloc()
    p.batch(p.gpu)
    p.madvise_exec(p.gpu, p.xgpu, addr, flags)
    s.gpu(p.vms[p.gpu], "write", addr, 1020, BATCH_VALUE, why="255 dword stores")
    if not flags & PERF_REM_COPY:
        p.batch(p.gpu)
        p.madvise_exec(p.gpu, p.xgpu, addr, flags)
        s.gpu(p.vms[p.gpu], "write", addr, 1020, BATCH_VALUE, why="255 dword stores again")
    p.batch(p.xgpu)
    p.madvise_exec(p.xgpu, p.gpu, dst, flags)
    p.copy(p.xgpu, addr, dst)
    s.cpu_check(dst, 4, why="GPU2's copy")


def _pagefault(p: _Pair, flags: int) -> None:
    s = p.s
    addr, dst = p.alloc(), p.alloc()
    s.cpu_write(addr, PAGE, 0, why="memset(data, 0)")
    none = 0 if flags & PREFETCH else None
    p.batch(p.gpu)
    p.madvise_exec(p.gpu, p.xgpu, addr, flags)
    s.gpu(p.vms[p.gpu], "write", addr, 4, BATCH_VALUE, faults=none,
          why="with prefetch GPU1's store must not fault")
    p.batch(p.xgpu)
    s.madvise(p.vms[p.xgpu], addr, PAGE, "preferred_loc", devmem_fd=p.xgpu,
              migration_policy=0)
    if flags & PREFETCH:
        s.prefetch(p.vms[p.xgpu], addr, PAGE, "vram", why="prefetch the source to GPU2")
    p.madvise_exec(p.xgpu, p.gpu, dst, flags)
    p.copy(p.xgpu, addr, dst, faults=none)


def _concurrent(p: _Pair, flags: int) -> None:
    s = p.s
    addr = p.alloc()
    s.cpu_write(addr, 8, 0)
    p.batch(p.gpu)
    p.batch(p.xgpu)
    for g in (p.gpu, p.xgpu):
        s.madvise(p.vms[g], addr, PAGE, "atomic", val=2)
        s.madvise(p.vms[g], addr, PAGE, "preferred_loc", devmem_fd=g, migration_policy=0)
    if flags & PREFETCH:
        for g in (p.gpu, p.xgpu):
            s.prefetch(p.vms[g], addr, PAGE, "vram")
    for _ in range(NUM_ITER):
        s.gpu(p.vms[p.gpu], "atomic", addr, 4, why="GPU1 MI_ATOMIC_INC")
        s.gpu(p.vms[p.xgpu], "atomic", addr, 4, why="GPU2 MI_ATOMIC_INC")
    result = p.alloc()
    s.cpu_write(result, PAGE, 0xDEDEDEDE)
    p.batch(p.gpu)
    p.copy(p.gpu, addr, result)
    s.cpu_check(result, 4, why=f"{2 * NUM_ITER} increments")


ROUTINES: tuple[tuple[int, Callable[[_Pair, int], None]], ...] = (
    (XGPU_ACCESS, _xgpu_access), (ATOMIC_OP, _atomic_op), (COH_OP, _coherency),
    (PERF_OP, _latency), (PFAULT_OP, _pagefault), (CONC_ACCESS, _concurrent))


def _build(flags: int, profile: str) -> Scenario:
    s = Scenario(profile)
    for g in GPUS:
        s.device(g)
    s.add({"ev": "link", "a": GPUS[0], "b": GPUS[1]})
    for bit, fn in ROUTINES:
        if not flags & bit:
            continue
        for src in GPUS:
            for dst in GPUS:
                if src == dst:
                    continue
                p = _Pair(s, src, dst)
                fn(p, flags)
                p.finish()
    return s


def subtests() -> list[Subtest]:
    out = []
    for name, flags in SECTIONS:
        full = f"mgpu-{name}"
        if flags & XGPU_ACCESS and flags & PREFETCH:
            out.append(Subtest(SUITE, full, skip=R_PEER_PREFETCH))
        else:
            out.append(Subtest(SUITE, full, partial(_build, flags),
                               benchmark=bool(flags & PERF_OP), profiles=("newest",),
                               profile_note=R_NOT_618))
    return out
