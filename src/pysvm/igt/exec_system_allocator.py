"""xe_exec_system_allocator: every subtest, generated from the suite's own tables.

The suite (igt-gpu-tools tests/intel/xe_exec_system_allocator.c) runs one
routine, ``test_exec``, over a grid: 25 templates (``once``, ``twice``,
``many``, ``threads-*``, ``process-*``, ...) that fix the number of exec
queues, execs, buffer size and stride, times 75 buffer modes (``malloc``,
``mmap-remap``, ``new-race-nomemset``, ...) that are bit masks of behaviour
flags. Around the grid stand the partial-munmap family, the madvise and PAT
families, eviction, benchmarks and a few single subtests. The tables below
restate that structure in this project's own terms; :func:`subtests` expands
them into the exact IGT names and, for each, a scenario builder or the reason
the model cannot express it.

How one exec becomes trace events (``_TestExec``): the CPU writes the batch
into the buffer (a store to the batch's page that keeps the data dword as it
is; with the atomic batch it first stores the value minus one), the GPU
fetches the batch (a ``gpu_access`` read whose data must equal what the CPU
wrote) and stores the value (a ``gpu_access`` write, or an atomic increment),
and the CPU reads the value back (``cpu_read`` that must return it). User
fences are not modelled: the model has no sync objects, and IGT's fences live
in MAP_SHARED memory or in a BO mapped at a fixed CPU address (no sync objects to
signal them), so their pages are left out of the scenarios.

Threads become a deterministic round-robin of their exec iterations; the
model has no engines, so a template that IGT runs once per hardware engine
runs once here, and a threaded template runs :data:`N_THREADS` threads.

Processes (``process-*``, ``processes-evict-*``) are :data:`N_PROCESSES` child
processes, each with its own address space, its own device file and VM and its
own page shadow (:meth:`pysvm.igt.scenario.Scenario.process`), sharing the
device and its VRAM; their iterations interleave round-robin too. A child
starts with an empty address space: IGT's children are fork()ed, but none of
them touches what it inherited.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

from .runner import Subtest
from .scenario import ANY_ERROR, PAGE, ProcessScenario, Scenario, page_span

__all__ = ["SUITE", "subtests", "SECTIONS", "TEMPLATES", "EXPECTED_COUNT"]

SUITE = "xe_exec_system_allocator"

SZ_64K = 64 << 10
SZ_1M = 1 << 20
SZ_2M = 2 << 20
SZ_4M = 4 << 20
SZ_8M = 8 << 20
SZ_64M = 64 << 20

#: struct test_exec_data: 32-dword batch, pad, vm_sync, exec_sync, data, expected.
STRUCT = 160
DATA_OFF = 152
#: struct batch_data (many_allocs): 16-dword batch, pad, data, expected.
BATCH_DATA_OFF = 72
#: xe_bb_size(): the request plus the command streamer prefetch, page aligned
#: (assumed 512 bytes and a 4 KiB default alignment: an Xe2 discrete GPU).
CS_PREFETCH = 512
DEFAULT_ALIGN = PAGE
#: glibc serves allocations at least this large with mmap() and unmaps them on free().
MMAP_THRESHOLD = 128 << 10
#: Threads a ``threads-*`` template interleaves (IGT: one per hardware engine).
N_THREADS = 2
#: Child processes ``processes()`` / ``processes_evict()`` fork (IGT: one per hardware
#: engine; two engines on one GT here, as for the threads).
N_PROCESSES = 2
N_MULTI_FAULT = 4

# Behaviour flags of a buffer mode (names follow the suite's).
MMAP = 1 << 0
NEW = 1 << 1
BO_UNMAP = 1 << 2
FREE = 1 << 3
BUSY = 1 << 4
BO_MAP = 1 << 5
RACE = 1 << 6
SKIP_MEMSET = 1 << 7
FAULT = 1 << 8
FILE_BACKED = 1 << 9
LOCK = 1 << 10
MMAP_SHARED = 1 << 11
HUGE_PAGE = 1 << 12
SHARED_ALLOC = 1 << 13
FORK_READ = 1 << 14
FORK_READ_AFTER = 1 << 15
MREMAP = 1 << 16
DONTUNMAP = 1 << 17
READ_ONLY_REMAP = 1 << 18
SYNC_EXEC = 1 << 19
EVERY_OTHER_CHECK = 1 << 20
MULTI_FAULT = 1 << 21
PREFETCH = 1 << 22
PREFETCH_BENCHMARK = 1 << 25
PREFETCH_SYS_BENCHMARK = 1 << 26
MADVISE_SWIZZLE = 1 << 27
MADVISE_OP = 1 << 28
ATOMIC_BATCH = 1 << 29
MIGRATE_ALL_PAGES = 1 << 30
PREFERRED_LOC_ATOMIC_DEVICE = 1 << 31
PREFERRED_LOC_ATOMIC_GL = 1 << 32
PREFERRED_LOC_ATOMIC_CPU = 1 << 33
MADVISE_MULTI_VMA = 1 << 34
MADVISE_SPLIT_VMA = 1 << 35
MADVISE_ATOMIC_VMA = 1 << 36
PREFETCH_SPLIT_VMA = 1 << 37
PREFETCH_CHANGE_ATTR = 1 << 38
PREFETCH_SAME_ATTR = 1 << 39
PREFERRED_LOC_ATOMIC_UND = 1 << 40
MADVISE_ATOMIC_DEVICE = 1 << 41
MADVISE_PAT_INDEX = 1 << 42

#: The 75 buffer modes, in the suite's order.
SECTIONS: tuple[tuple[str, int], ...] = (
    ("malloc", 0),
    ("malloc-madvise", MADVISE_SWIZZLE),
    ("malloc-prefetch", PREFETCH),
    ("malloc-prefetch-madvise", PREFETCH | MADVISE_SWIZZLE),
    ("malloc-multi-fault", MULTI_FAULT),
    ("malloc-fork-read", FORK_READ),
    ("malloc-fork-read-after", FORK_READ | FORK_READ_AFTER),
    ("malloc-mlock", LOCK),
    ("malloc-race", RACE),
    ("malloc-prefetch-race", RACE | PREFETCH),
    ("malloc-busy", BUSY),
    ("malloc-bo-unmap", BO_UNMAP),
    ("mmap", MMAP),
    ("mmap-prefetch", MMAP | PREFETCH),
    ("mmap-remap", MMAP | MREMAP),
    ("mmap-remap-madvise", MMAP | MREMAP | MADVISE_SWIZZLE),
    ("mmap-remap-dontunmap", MMAP | MREMAP | DONTUNMAP),
    ("mmap-remap-ro", MMAP | MREMAP | READ_ONLY_REMAP),
    ("mmap-remap-ro-dontunmap", MMAP | MREMAP | DONTUNMAP | READ_ONLY_REMAP),
    ("mmap-remap-eocheck", MMAP | MREMAP | EVERY_OTHER_CHECK),
    ("mmap-remap-dontunmap-eocheck", MMAP | MREMAP | DONTUNMAP | EVERY_OTHER_CHECK),
    ("mmap-remap-ro-eocheck", MMAP | MREMAP | READ_ONLY_REMAP | EVERY_OTHER_CHECK),
    ("mmap-remap-ro-dontunmap-eocheck",
     MMAP | MREMAP | DONTUNMAP | READ_ONLY_REMAP | EVERY_OTHER_CHECK),
    ("mmap-huge", MMAP | HUGE_PAGE),
    ("mmap-shared", MMAP | LOCK | MMAP_SHARED),
    ("mmap-prefetch-shared", MMAP | LOCK | MMAP_SHARED | PREFETCH),
    ("mmap-shared-remap", MMAP | LOCK | MMAP_SHARED | MREMAP),
    ("mmap-shared-remap-dontunmap", MMAP | LOCK | MMAP_SHARED | MREMAP | DONTUNMAP),
    ("mmap-shared-remap-eocheck", MMAP | LOCK | MMAP_SHARED | MREMAP | EVERY_OTHER_CHECK),
    ("mmap-shared-remap-dontunmap-eocheck",
     MMAP | LOCK | MMAP_SHARED | MREMAP | DONTUNMAP | EVERY_OTHER_CHECK),
    ("mmap-mlock", MMAP | LOCK),
    ("mmap-file", MMAP | FILE_BACKED),
    ("mmap-file-mlock", MMAP | LOCK | FILE_BACKED),
    ("mmap-race", MMAP | RACE),
    ("free", NEW | FREE),
    ("free-madvise", NEW | FREE | MADVISE_SWIZZLE),
    ("free-race", NEW | FREE | RACE),
    ("new", NEW),
    ("new-madvise", NEW | MADVISE_SWIZZLE),
    ("new-prefetch", NEW | PREFETCH),
    ("new-race", NEW | RACE),
    ("new-bo-map", NEW | BO_MAP),
    ("new-busy", NEW | BUSY),
    ("mmap-free", MMAP | NEW | FREE),
    ("mmap-free-madvise", MMAP | NEW | FREE | MADVISE_SWIZZLE),
    ("mmap-free-huge", MMAP | NEW | FREE | HUGE_PAGE),
    ("mmap-free-race", MMAP | NEW | FREE | RACE),
    ("mmap-new", MMAP | NEW),
    ("mmap-new-madvise", MMAP | NEW | MADVISE_SWIZZLE),
    ("mmap-new-huge", MMAP | NEW | HUGE_PAGE),
    ("mmap-new-race", MMAP | NEW | RACE),
    ("malloc-nomemset", SKIP_MEMSET),
    ("malloc-mlock-nomemset", SKIP_MEMSET | LOCK),
    ("malloc-race-nomemset", SKIP_MEMSET | RACE),
    ("malloc-busy-nomemset", SKIP_MEMSET | BUSY),
    ("malloc-bo-unmap-nomemset", SKIP_MEMSET | BO_UNMAP),
    ("mmap-nomemset", SKIP_MEMSET | MMAP),
    ("mmap-huge-nomemset", SKIP_MEMSET | MMAP | HUGE_PAGE),
    ("mmap-shared-nomemset", SKIP_MEMSET | MMAP | MMAP_SHARED),
    ("mmap-mlock-nomemset", SKIP_MEMSET | MMAP | LOCK),
    ("mmap-file-nomemset", SKIP_MEMSET | MMAP | FILE_BACKED),
    ("mmap-file-mlock-nomemset", SKIP_MEMSET | MMAP | LOCK | FILE_BACKED),
    ("mmap-race-nomemset", SKIP_MEMSET | MMAP | RACE),
    ("free-nomemset", SKIP_MEMSET | NEW | FREE),
    ("free-race-nomemset", SKIP_MEMSET | NEW | FREE | RACE),
    ("new-nomemset", SKIP_MEMSET | NEW),
    ("new-race-nomemset", SKIP_MEMSET | NEW | RACE),
    ("new-bo-map-nomemset", SKIP_MEMSET | NEW | BO_MAP),
    ("new-busy-nomemset", SKIP_MEMSET | NEW | BUSY),
    ("mmap-free-nomemset", SKIP_MEMSET | MMAP | NEW | FREE),
    ("mmap-free-huge-nomemset", SKIP_MEMSET | MMAP | NEW | FREE | HUGE_PAGE),
    ("mmap-free-race-nomemset", SKIP_MEMSET | MMAP | NEW | FREE | RACE),
    ("mmap-new-nomemset", SKIP_MEMSET | MMAP | NEW),
    ("mmap-new-huge-nomemset", SKIP_MEMSET | MMAP | NEW | HUGE_PAGE),
    ("mmap-new-race-nomemset", SKIP_MEMSET | MMAP | NEW | RACE),
)


@dataclass(frozen=True)
class Template:
    """One row of the grid: how ``test_exec`` is driven for every buffer mode."""

    prefix: str
    runner: str             # "exec" | "threads" | "threads-shared-vm" | "process"
    n_exec_queues: int
    n_execs: int
    bo_size: int
    stride: int


#: The 25 templates, in the suite's order (each is followed by "-<mode>").
TEMPLATES: tuple[Template, ...] = (
    Template("once", "exec", 1, 1, 0, 0),
    Template("once-large", "exec", 1, 1, SZ_2M, 0),
    Template("twice", "exec", 1, 2, 0, 0),
    Template("twice-large", "exec", 1, 2, SZ_2M, 0),
    Template("many", "exec", 1, 128, 0, 0),
    Template("many-stride", "exec", 1, 128, 0, 256),
    Template("many-execqueues", "exec", 16, 128, 0, 0),
    Template("many-large", "exec", 1, 128, SZ_2M, 0),
    Template("many-64k", "exec", 1, 128, SZ_64K, 0),
    Template("many-large-execqueues", "exec", 16, 128, SZ_2M, 0),
    Template("threads-many", "threads", 1, 128, 0, 0),
    Template("threads-many-stride", "threads", 1, 128, 0, 256),
    Template("threads-many-execqueues", "threads", 16, 128, 0, 0),
    Template("threads-many-large", "threads", 1, 128, SZ_2M, 0),
    Template("threads-many-large-execqueues", "threads", 16, 128, SZ_2M, 0),
    Template("threads-shared-vm-many", "threads-shared-vm", 1, 128, 0, 0),
    Template("threads-shared-vm-many-stride", "threads-shared-vm", 1, 128, 0, 256),
    Template("threads-shared-vm-many-execqueues", "threads-shared-vm", 16, 128, 0, 0),
    Template("threads-shared-vm-many-large", "threads-shared-vm", 1, 128, SZ_2M, 0),
    Template("threads-shared-vm-many-large-execqueues", "threads-shared-vm", 16, 128, SZ_2M, 0),
    Template("process-many", "process", 1, 128, 0, 0),
    Template("process-many-stride", "process", 1, 128, 0, 256),
    Template("process-many-execqueues", "process", 16, 128, 0, 0),
    Template("process-many-large", "process", 1, 128, SZ_2M, 0),
    Template("process-many-large-execqueues", "process", 16, 128, SZ_2M, 0),
)

#: The partial-munmap family: (name, cpu_fault, remap, middle, atomic).
PARTIAL: tuple[tuple[str, bool, bool, bool, bool], ...] = tuple(
    (f"{'atomic-' if a else ''}{'middle-' if m else ''}{'remap' if r else 'munmap'}-"
     f"{'cpu-fault' if c else 'no-cpu-fault'}", c, r, m, a)
    for a in (False, True) for m in (False, True) for r in (False, True)
    for c in (True, False))

#: madvise-<name>: the flags of each madvise scenario.
MADVISE_SECTIONS: tuple[tuple[str, int], ...] = (
    ("atomic-inc", MADVISE_OP | MADVISE_ATOMIC_DEVICE | ATOMIC_BATCH),
    ("preffered-loc-sram-migrate-pages",
     MADVISE_OP | MADVISE_SWIZZLE | MIGRATE_ALL_PAGES | ATOMIC_BATCH),
    ("preffered-loc-atomic-vram", MADVISE_OP | PREFERRED_LOC_ATOMIC_DEVICE | ATOMIC_BATCH),
    ("preffered-loc-atomic-gl", MADVISE_OP | PREFERRED_LOC_ATOMIC_GL | ATOMIC_BATCH),
    ("preffered-loc-atomic-cpu", MADVISE_OP | PREFERRED_LOC_ATOMIC_CPU | ATOMIC_BATCH),
    ("preffered-loc-atomic-und", MADVISE_OP | PREFERRED_LOC_ATOMIC_UND | ATOMIC_BATCH),
    ("multi-vma", MADVISE_OP | MADVISE_MULTI_VMA | ATOMIC_BATCH),
    ("split-vma", MADVISE_OP | MADVISE_SPLIT_VMA | ATOMIC_BATCH),
    ("atomic-vma", MADVISE_OP | MADVISE_ATOMIC_VMA | ATOMIC_BATCH),
    ("split-vma-with-mapping", MADVISE_OP | PREFETCH | PREFETCH_SPLIT_VMA | ATOMIC_BATCH),
    ("range-invalidate-change-attr",
     MADVISE_OP | PREFETCH | PREFETCH_CHANGE_ATTR | ATOMIC_BATCH),
    ("no-range-invalidate-same-attr",
     MADVISE_OP | PREFETCH | PREFETCH_SAME_ATTR | ATOMIC_BATCH),
)

#: PAT indices of an Xe2 discrete GPU (graphics IP 20.01) as IGT's lib/intel_pat.c
#: chooses them: uc 3, wt 15, wb 2, uc-comp 12, max 31 - 4 (a workaround reserves
#: the last four entries on IP 20.01).
PAT_WB, PAT_WT, PAT_UC, PAT_UC_COMP, PAT_MAX = 2, 15, 3, 12, 27

#: pat-index-<name>: (name, multi_vma, pat index).
PAT_SECTIONS: tuple[tuple[str, bool, int], ...] = (
    ("madvise-pat-idx-wb-single-vma", False, PAT_WB),
    ("madvise-pat-idx-wb-multi-vma", True, PAT_WB),
    ("madvise-pat-idx-wt-single-vma", False, PAT_WT),
    ("madvise-pat-idx-wt-multi-vma", True, PAT_WT),
    ("madvise-pat-idx-uc-single-vma", False, PAT_UC),
    ("madvise-pat-idx-uc-multi-vma", True, PAT_UC),
    ("madvise-pat-idx-uc-comp-single-vma", False, PAT_UC_COMP),
    ("madvise-pat-idx-uc-comp-multi-vma", True, PAT_UC_COMP),
    ("madvise-max-pat-index-single-vma", False, PAT_MAX),
    ("madvise-max-pat-index-multi-vma", True, PAT_MAX),
)

#: Five shared-allocation thread subtests: (name, flags, shared vm).
SHARED_ALLOC_THREADS: tuple[tuple[str, int, bool], ...] = (
    ("threads-shared-vm-shared-alloc-many-stride-malloc", SHARED_ALLOC, True),
    ("threads-shared-vm-shared-alloc-many-stride-malloc-race", RACE | SHARED_ALLOC, True),
    ("threads-shared-alloc-many-stride-malloc", SHARED_ALLOC, False),
    ("threads-shared-alloc-many-stride-malloc-sync", SHARED_ALLOC | SYNC_EXEC, False),
    ("threads-shared-alloc-many-stride-malloc-race", RACE | SHARED_ALLOC, False),
)

#: The grid (25 x 75) plus the 57 standalone subtests listed in the source:
#: 2 prefetch benchmarks, 5 shared-allocation thread runs, fault, 16 partial,
#: unaligned-alloc, 5 fault benchmarks, 2 evict, 2 processes-evict, 12 madvise,
#: 10 pat-index and compute.
EXPECTED_COUNT = 25 * 75 + 2 + 5 + 1 + 16 + 1 + 5 + 2 + 2 + 12 + 10 + 1

# -- skip reasons (shared with docs/igt.md) ----------------------------------------
R_FORK = "fork() (a child mm sharing the pages copy-on-write) is not modelled"
R_BO_CPU_MAP = "a CPU mmap() of a BO (xe_bo_map_fixed) is not modelled"
R_SAME_PAGE = ("threads store different dwords of one 4 KiB page before any reads "
               "back, and the model holds one value per page")
R_COMPUTE = "GPU compute kernels (EU threads) are not modelled"


def _bb_size(size: int) -> int:
    return page_span(0, size + CS_PREFETCH)[1]


# -- memory allocation as glibc does it ------------------------------------------
def _malloc(s: Scenario, size: int, align: int) -> int:
    """aligned_alloc(): mmap()ed (and unmapped on free) from MMAP_THRESHOLD up, else heap."""
    key = (page_span(0, size)[1], align)
    free = s.aspace.heap.get(key)
    if free:
        addr = free.pop()
        if size >= MMAP_THRESHOLD:
            s.mmap(addr, size)          # the kernel hands back the hole just unmapped
        return addr
    addr = s.aspace.reserve(size, align)
    s.mmap(addr, size)
    return addr


def _free(s: Scenario, addr: int, size: int, align: int) -> None:
    if size >= MMAP_THRESHOLD:
        s.munmap(addr, size)
    s.aspace.heap.setdefault((page_span(0, size)[1], align), []).append(addr)


def _mlock(s: Scenario, addr: int, size: int, *, private: bool) -> None:
    """mlock(): fault in every page of the range; VM_LOCKED changes nothing else here.

    Kernel: mm/mlock.c do_mlock() sets VM_LOCKED and __mm_populate() faults the
    range in through mm/gup.c populate_vma_page_range(), a write fault
    (FOLL_WRITE) for a private writable mapping and a read fault for a shared
    one. A locked page is still migratable: mm/rmap.c try_to_migrate_one()
    has no VM_LOCKED bail-out (only try_to_unmap_one() has, for reclaim) and
    just drains the mlock batch, so drm_pagemap's migrate_vma_setup() moves
    it to VRAM like any anonymous page. The model has no reclaim or swap, so
    staying resident needs nothing more than the populate.
    """
    if private:
        s.cpu_touch(addr, size, why="mlock(): populate (write faults, private mapping)")
    else:
        s.cpu_check(addr, size, why="mlock(): populate (read faults, shared mapping)")


def _setup(s: Scenario, vram_mib: int = 256) -> None:
    s.device("gpu0", vram_mib=vram_mib)


def _new_vm(s: Scenario) -> str:
    vm = s.vm(s.name("vm"))
    s.bind_mirror(vm, why="bind the whole VA as CPU-address mirror (system allocator)")
    return vm


# -- test_exec ----------------------------------------------------------------------
def _parse_madvise(s: Scenario, vm: str, data: int, bo_size: int, flags: int,
                   pat: int | None) -> None:
    """The madvise calls the suite makes before the first exec for its MADVISE_OP flags."""
    def migrate_pages(addr: int, size: int) -> None:
        s.madvise(vm, addr, size, "preferred_loc", devmem_fd=-1, migration_policy=0)

    if flags & MADVISE_ATOMIC_DEVICE:
        s.madvise(vm, data, bo_size, "atomic", val=1)
    for bit, val in ((PREFERRED_LOC_ATOMIC_UND, 0), (PREFERRED_LOC_ATOMIC_DEVICE, 1),
                     (PREFERRED_LOC_ATOMIC_GL, 2), (PREFERRED_LOC_ATOMIC_CPU, 3)):
        if flags & bit:
            migrate_pages(data, bo_size)
            s.madvise(vm, data, bo_size, "atomic", val=val)
    size = page_span(0, bo_size)[1] if bo_size else bo_size
    if flags & MADVISE_MULTI_VMA:
        s.madvise(vm, data + size // 2, size // 2, "atomic", val=1)
        s.madvise(vm, data + size // 2, size // 2, "pat", val=PAT_WB)
        s.madvise(vm, data + size, size, "atomic", val=1)
        s.madvise(vm, data, size, "pat", val=PAT_WB)
    if flags & MADVISE_SPLIT_VMA:
        bo = s.name("bo")
        s.bo(bo, size, ["vram"])
        s.bind_bo(vm, bo, data + size // 2, size // 2)
        s.bind_mirror(vm, data + size // 2, size // 2, why="mirror replaces the BO binding")
        s.madvise(vm, data, size // 2, "atomic", val=2)
    if flags & MADVISE_PAT_INDEX:
        assert pat is not None
        if flags & MADVISE_MULTI_VMA:
            s.madvise(vm, data + size, size // 2, "pat", val=pat)
            s.madvise(vm, data, size, "pat", val=pat)
            s.madvise(vm, data + size // 2, size // 4, "pat", val=pat)
        else:
            s.madvise(vm, data, size, "pat", val=pat)
        s.query(vm, data, size, pat=pat, why=f"every VMA in the range reports pat_index {pat}")


def _prefetch_op(s: Scenario, vm: str, addr: int, data: int, bo_size: int, flags: int) -> None:
    """The per-exec madvise/prefetch sequence of the three PREFETCH_* madvise scenarios."""
    size = page_span(0, bo_size)[1]
    if flags & PREFETCH_SPLIT_VMA:
        s.prefetch(vm, addr, size, "system")
        s.query(vm, addr, size)
        s.madvise(vm, data, size // 2, "preferred_loc", devmem_fd=-1, migration_policy=0)
        s.query(vm, addr, size)
    elif flags & PREFETCH_SAME_ATTR:
        s.madvise(vm, data, bo_size, "atomic", val=2)
        s.query(vm, addr, bo_size)
        # Region "consult the preferred location": still the default (this device's VRAM).
        s.prefetch(vm, addr, bo_size, "vram", why="prefetch to the advised location")
        s.madvise(vm, data, bo_size // 2, "atomic", val=2)
    elif flags & PREFETCH_CHANGE_ATTR:
        # The suite's prefetch and second madvise sit inside its error branch, so
        # only the first madvise and the query run.
        s.madvise(vm, data, bo_size, "atomic", val=2)
        s.query(vm, addr, bo_size)


@dataclass
class _Exec:
    """Arguments of one test_exec call."""

    n_execs: int
    bo_size: int
    stride: int
    flags: int
    vm: str | None = None
    alloc: int | None = None
    pat: int | None = None
    #: Destroy the VM test_exec created at the end (IGT always does, ``if (free_vm)
    #: xe_vm_destroy()``; ported where it is visible: before a child process exits).
    free_vm: bool = False


def test_exec_noop(p: _Exec) -> bool:
    """True when the suite's test_exec returns before doing anything for these arguments."""
    if p.flags & MULTI_FAULT and not p.bo_size:
        return True
    if p.flags & SHARED_ALLOC:
        return True
    return bool(p.flags & EVERY_OTHER_CHECK and p.n_execs & 1)


def test_exec_skip(p: _Exec) -> str | None:
    """Why the model cannot express test_exec for these arguments (None if it can)."""
    f = p.flags
    if f & FORK_READ:
        return R_FORK
    if f & BO_MAP and p.n_execs >= 2:
        return R_BO_CPU_MAP
    if f & SYNC_EXEC:
        return R_SAME_PAGE
    return None


def _test_exec(s: Scenario, p: _Exec) -> Iterator[str | None]:
    """The scenario of one test_exec call; yields after each exec (threads interleave)."""
    flags, n_execs, stride = p.flags, p.n_execs, p.stride
    orig_size = p.bo_size
    bo_size = p.bo_size
    if test_exec_noop(p):
        return
    if flags & MULTI_FAULT:
        bo_size *= N_MULTI_FAULT
    aligned = orig_size or DEFAULT_ALIGN
    own_vm = p.vm is None
    vm = p.vm or s.vm(s.name("vm"))
    if not bo_size:
        bo_size = _bb_size(STRUCT * n_execs * (stride or 1))
    if flags & HUGE_PAGE:
        aligned = -(-aligned // SZ_2M) * SZ_2M
        bo_size = -(-bo_size // SZ_2M) * SZ_2M
    if p.alloc is not None:
        data = p.alloc
    else:
        if flags & MMAP:
            data = s.aspace.reserve(bo_size, aligned)
            # MAP_HUGETLB: mm/hugetlb.c hugetlb_file_setup() backs the mapping with a
            # hugetlbfs file, so it is a file mapping (not vma_is_anonymous()), and
            # mm/migrate_device.c migrate_vma_setup() refuses is_vm_hugetlb_page()
            # VMAs: its pages stay in system memory, like any file mapping here.
            s.mmap(data, bo_size, shared=bool(flags & MMAP_SHARED),
                   file=bool(flags & (FILE_BACKED | HUGE_PAGE)))
        else:
            data = _malloc(s, bo_size, aligned)
        if not flags & SKIP_MEMSET:
            s.cpu_write(data, bo_size, 5, why="memset(data, 5)")
        if flags & LOCK:
            _mlock(s, data, bo_size, private=not flags & (MMAP_SHARED | FILE_BACKED))
    if own_vm:
        s.bind_mirror(vm, why="bind the whole VA as CPU-address mirror (system allocator)")
    addr = data
    if flags & MADVISE_OP:
        _parse_madvise(s, vm, data, bo_size, flags, p.pat)
    if flags & BO_UNMAP:
        bo = s.name("bo")
        s.bo(bo, page_span(0, bo_size)[1], ["vram"])
        s.bind_bo(vm, bo, addr, page_span(0, bo_size)[1])
        s.bind_mirror(vm, addr, page_span(0, bo_size)[1],
                      why="mirror bind over the BO binding replaces it")
    region = "vram"
    if flags & PREFETCH and not flags & FAULT and flags & (RACE | FILE_BACKED | LOCK
                                                          | MMAP_SHARED | HUGE_PAGE):
        region = "system"
        s.prefetch(vm, addr, bo_size, "system")
    pending: list[int] = []
    eocheck = bool(flags & EVERY_OTHER_CHECK)
    next_data: int | None = None        # EVERY_OTHER_CHECK: where the next remap goes
    next_value = 0                      # ... and the value its pre-written batch stores
    prev_idx = 0
    for i in range(n_execs):
        idx = i * stride if stride else i
        next_idx = (i + 1) * stride if stride else i + 1
        batch = addr + idx * STRUCT
        sdi = batch + DATA_OFF
        fault_inject = bool(flags & FAULT) and i == n_execs // 2
        if flags & MADVISE_SWIZZLE:
            s.madvise(vm, data, bo_size, "preferred_loc", devmem_fd=-1 if i % 2 == 0 else 0,
                      migration_policy=0, why="swizzle the preferred location")
        # EVERY_OTHER_CHECK: an odd exec runs the batch the previous one wrote (it moved
        # with the buffer) and stores the value chosen then.
        value = next_value if eocheck and i % 2 else s.fresh(idx)
        targets = ([sdi + j * orig_size for j in range(N_MULTI_FAULT)]
                   if flags & MULTI_FAULT else [sdi])
        atomic = bool(flags & ATOMIC_BATCH)
        if atomic:
            s.cpu_write(targets[-1], 4, value - 1, why="data = value - 1 for MI_ATOMIC_INC")
        if not eocheck or i % 2 == 0:
            s.cpu_touch(batch, 4 * 16, why="CPU writes the batch")
        if eocheck and i % 2 == 0:
            # The buffer's next home (__aligned_alloc(): a PROT_NONE mapping, which the
            # model maps plainly: nothing touches it before mremap() replaces it), and the
            # next exec's batch, written now into this buffer, storing at its offset there.
            next_data = s.aspace.reserve(bo_size, aligned)
            s.mmap(next_data, bo_size)
            _parse_madvise(s, vm, data, bo_size, flags, p.pat)
            next_value = s.fresh(next_idx)
            s.cpu_touch(addr + next_idx * STRUCT, 4 * 16,
                        why="CPU writes the next exec's batch (it stores into the next buffer)")
        if flags & PREFETCH and not flags & (MULTI_FAULT | EVERY_OTHER_CHECK):
            _prefetch_op(s, vm, addr, data, bo_size, flags)
        if flags & RACE:
            s.cpu_touch(batch + 144, 8, why="exec_sync = 0 (the fence lives in the buffer)")
        if flags & PREFETCH and not flags & FAULT and (region == "vram" or flags & NEW):
            s.prefetch(vm, addr, bo_size, region, why="prefetch before the exec")
        if fault_inject:
            s.gpu(vm, "read", batch * 2, want=("ENOENT", "EFAULT"),
                  why="exec at a bad batch address: the fault must fail")
        else:
            stop = ANY_ERROR if flags & (PREFERRED_LOC_ATOMIC_CPU | PREFERRED_LOC_ATOMIC_UND) \
                else ()
            if flags & RACE:
                s.inject("fault.after_get_pages",
                         {"ev": "cpu_read", "addr": page_span(sdi, 4)[0], "size": PAGE},
                         why="CPU polls the fence in the same page while the GPU faults")
            s.gpu(vm, "read", batch, why="GPU fetches the batch the CPU wrote")
            for k, t in enumerate(targets):
                last = k == len(targets) - 1
                if atomic and last:
                    s.gpu(vm, "atomic", t, 4, stop_on=stop, why="MI_ATOMIC_INC")
                else:
                    s.gpu(vm, "write", t, 4, value, stop_on=stop, why="MI_STORE_DWORD_IMM")
            if flags & MREMAP:
                old = data
                data = _remap(s, old, bo_size, aligned, flags, next_data)
                next_data = None
                targets = [t - old + data for t in targets]
                addr = data
            if not eocheck or i % 2:
                for t in targets:
                    s.cpu_check(t, 4, why="the CPU reads back the value the GPU wrote")
                if eocheck:
                    s.cpu_check(addr + prev_idx * STRUCT + DATA_OFF, 4,
                                why="and the value of the previous exec (one value per "
                                "page in the model: the page's last store)")
        prev_idx = idx
        yield None
        if flags & NEW:
            if flags & MMAP:
                if flags & FREE:
                    s.munmap(data, bo_size)
                else:
                    pending.append(data)
                data = s.aspace.reserve(bo_size)
                s.mmap(data, bo_size, shared=True)     # MAP_SHARED|MAP_ANONYMOUS
            else:
                if flags & FREE:
                    _free(s, data, bo_size, aligned)
                else:
                    pending.append(data)
                data = _malloc(s, bo_size, aligned)
            addr = data
            if not flags & SKIP_MEMSET:
                s.cpu_write(data, bo_size, 5, why="memset(new buffer, 5)")
    if flags & BUSY:
        s.unbind(vm, want=("EBUSY",),
                 why="unbinding the system allocator with live SVM ranges must fail")
    for old in pending:
        if flags & MMAP:
            s.munmap(old, bo_size)
        else:
            _free(s, old, bo_size, aligned)
    if flags & MMAP:
        s.munmap(data, bo_size)
    elif p.alloc is None:
        _free(s, data, bo_size, aligned)
    if p.free_vm and own_vm:
        s.add({"ev": "vm_destroy", "vm": vm}, why="xe_vm_destroy() at the end of test_exec")


def _remap(s: Scenario, old: int, bo_size: int, aligned: int, flags: int,
           next_data: int | None) -> int:
    """The MREMAP step after an exec: move the buffer to a new aligned address; return it.

    IGT: mprotect(old, PROT_READ) first for READ_ONLY_REMAP, then
    mremap(old, bo_size, bo_size, MREMAP_MAYMOVE | MREMAP_FIXED [| MREMAP_DONTUNMAP], new)
    onto a fresh __aligned_alloc() reservation (or the one EVERY_OTHER_CHECK made before
    the exec), mprotect(new, PROT_READ | PROT_WRITE) again, and with DONTUNMAP an munmap
    of the old span that stayed behind. Kernel: mm/mremap.c move_vma() carries the pages,
    device pages in VRAM included; the old span's SVM ranges see MMU_NOTIFY_UNMAP
    (move_page_tables()) and go to the garbage collector (xe_svm_invalidate()), so the
    next GPU access faults at the new address.
    """
    ro = bool(flags & READ_ONLY_REMAP)
    if ro:
        s.mprotect(old, bo_size, read_only=True, why="mprotect(old, PROT_READ)")
    new = next_data
    if new is None:
        new = s.aspace.reserve(bo_size, aligned)
        s.mmap(new, bo_size)       # __aligned_alloc(): PROT_NONE in IGT, untouched here
    s.mremap(old, bo_size, new, dontunmap=bool(flags & DONTUNMAP),
             why="move the buffer; its pages (in VRAM or not) move with it")
    if ro:
        s.mprotect(new, bo_size, read_only=False, why="mprotect(new, PROT_READ | PROT_WRITE)")
    if flags & DONTUNMAP:
        s.munmap(old, bo_size)
    return new


#: What a thread or process yields to wait at a barrier (pthread_barrier_wait()).
BARRIER = "barrier"


def _run_all(gens: list[Iterator[str | None]]) -> None:
    """Round-robin: one exec iteration of each live thread (or process) in turn; one that
    yields :data:`BARRIER` waits until every live one has reached it."""
    live: list[Iterator[str | None]] = list(gens)
    parked: list[Iterator[str | None]] = []
    while live or parked:
        if not live:                      # everyone is at the barrier: release them
            live, parked = parked, []
        nxt: list[Iterator[str | None]] = []
        for g in live:
            try:
                r = next(g)
            except StopIteration:
                continue
            (parked if r == BARRIER else nxt).append(g)
        live = nxt


def _child(c: ProcessScenario, body: Iterator[str | None]) -> Iterator[str | None]:
    """A child process: its body (each step of it a round-robin turn), then drm_close_driver()
    and exit()."""
    yield from body
    c.exit(why="drm_close_driver(), then the child exits")


def _build_exec(p: _Exec, profile: str) -> Scenario:
    s = Scenario(profile)
    _setup(s)
    s.noop = test_exec_noop(p)
    _run_all([_test_exec(s, p)])
    return s


def _build_threads(t: Template, flags: int, shared_vm: bool, profile: str) -> Scenario:
    s = Scenario(profile)
    _setup(s)
    vm = _new_vm(s) if shared_vm else None
    alloc = None
    if flags & SHARED_ALLOC:
        size = _bb_size(STRUCT * t.stride * t.n_execs * N_THREADS)
        alloc = _malloc(s, size, SZ_2M)
        s.cpu_write(alloc, size, 5, why="memset(shared allocation, 5)")
        flags &= ~SHARED_ALLOC
    ps = [_Exec(t.n_execs, t.bo_size, t.stride, flags, vm,
                None if alloc is None else alloc + k * STRUCT) for k in range(N_THREADS)]
    s.noop = all(test_exec_noop(p) for p in ps)
    _run_all([_test_exec(s, p) for p in ps])
    if shared_vm and flags & MMAP and vm is not None:
        s.unbind(vm, want=("ok", "EBUSY"), why="IGT retries while EBUSY")
        s.add({"ev": "gc", "vm": vm}, why="the garbage collector runs between the retries")
        s.unbind(vm, why="after the collector ran, the unbind must succeed")
    return s


def _build_processes(t: Template, flags: int, profile: str) -> Scenario:
    """processes(): each child opens its own device file (drm_open_driver) and runs
    test_exec with its own VM in its own address space; the children start together
    (a shared go flag) and their exec iterations interleave."""
    s = Scenario(profile)
    _setup(s)
    ps = [_Exec(t.n_execs, t.bo_size, t.stride, flags, free_vm=True)
          for _ in range(N_PROCESSES)]
    s.noop = all(test_exec_noop(p) for p in ps)
    children = [s.process(f"child{k}") for k in range(N_PROCESSES)]
    _run_all([_child(c, _test_exec(c, p)) for c, p in zip(children, ps, strict=True)])
    return s


def _grid(t: Template, name: str, flags: int) -> Subtest:
    full = f"{t.prefix}-{name}"
    p = _Exec(t.n_execs, t.bo_size, t.stride, flags)
    if t.runner == "exec":
        why = None if test_exec_noop(p) else test_exec_skip(p)
        if why:
            return Subtest(SUITE, full, skip=why)
        return Subtest(SUITE, full, partial(_build_exec, p))
    if t.runner == "process":
        # processes() returns at once for FORK_READ; it runs FILE_BACKED (threads() does not)
        if flags & FORK_READ or test_exec_noop(p):
            return Subtest(SUITE, full, partial(_build_noop))
        why = test_exec_skip(p)
        if why:
            return Subtest(SUITE, full, skip=why)
        return Subtest(SUITE, full, partial(_build_processes, t, flags))
    if flags & (FILE_BACKED | FORK_READ):
        return Subtest(SUITE, full, partial(_build_noop))
    why = None if test_exec_noop(p) else test_exec_skip(p)
    if why:
        return Subtest(SUITE, full, skip=why)
    return Subtest(SUITE, full, partial(_build_threads, t, flags,
                                        t.runner == "threads-shared-vm"))


def _build_noop(profile: str) -> Scenario:
    s = Scenario(profile)
    _setup(s)
    s.noop = True
    return s


# -- partial-* ----------------------------------------------------------------------
def _build_partial(cpu_fault: bool, remap: bool, middle: bool, atomic: bool,
                   profile: str) -> Scenario:
    s = Scenario(profile)
    _setup(s)
    vm = s.vm(s.name("vm"))
    size = SZ_2M
    off = size // 4 if middle else 0
    old = s.aspace.reserve(size, size)
    s.mmap(old, size)
    s.cpu_write(old, size, 5, why="memset(data, 5)")
    s.bind_mirror(vm, why="bind the whole VA as CPU-address mirror")
    bases = [old, old + off + size // 2]
    values = [s.fresh(0), s.fresh(1)]
    sdis = [bases[0] + DATA_OFF, bases[1] + STRUCT + DATA_OFF]
    batches = [bases[0], bases[1] + STRUCT]
    for i in range(2):
        if atomic:
            s.cpu_write(sdis[i], 4, values[i] - 1, why="data = value - 1 for MI_ATOMIC_INC")
        s.cpu_touch(batches[i], 64, why="CPU writes the batch")
    new = None
    for i in range(2):
        s.gpu(vm, "read", batches[i], why="GPU fetches the batch")
        s.gpu(vm, "atomic" if atomic else "write", sdis[i], 4, values[i],
              why="MI_ATOMIC_INC" if atomic else "MI_STORE_DWORD_IMM")
        if new is not None:
            s.gpu(vm, "write", new, 8, 0xDEADBEEF, why="the exec's user fence lands in the "
                  "remapped memory")
        if i or cpu_fault:
            s.cpu_check(sdis[i], 4, why="read back the value")
        if not i:
            s.munmap(old + off, size // 2)
            if remap:
                new = old + off
                s.mmap(new, size // 2)
    return s


# -- many_allocs ---------------------------------------------------------------------
def _touch_all_pages(s: Scenario, vm: str, a: int, alloc_size: int, stride: int) -> None:
    """touch_all_pages(): the CPU writes every batch first, then the GPU runs them one by
    one (each stores a new value)."""
    n_writes = alloc_size // stride
    values = [s.fresh(k) for k in range(n_writes)]
    s.cpu_touch(a, alloc_size, why="CPU writes every batch")
    for k in range(n_writes):
        s.gpu(vm, "read", a + k * stride, why="GPU fetches the batch")
        s.gpu(vm, "write", a + k * stride + BATCH_DATA_OFF, 4, values[k])


def _many_allocs(s: Scenario, total: int, alloc_size: int, stride: int, *,
                 benchmark: bool = False, check_threads: int = 0,
                 same_page: bool = False) -> None:
    vm = _new_vm(s)
    n = 1 if benchmark else (9 * (total // alloc_size)) // 8
    allocs = []
    for _ in range(n):
        a = _malloc(s, alloc_size, SZ_2M)
        allocs.append(a)
        _touch_all_pages(s, vm, a, alloc_size, stride)
    for a in allocs:
        n_writes = alloc_size // stride
        if check_threads and not same_page:
            # Thread t reads every n-th write, starting at t: interleave them in turn.
            for k in range(n_writes):
                s.cpu_check(a + k * stride + BATCH_DATA_OFF, 4)
        elif check_threads:
            for k in range(n_writes):
                for _ in range(check_threads):
                    s.cpu_check(a + k * stride + BATCH_DATA_OFF, 4,
                                why="every thread reads the same page, then a barrier")
        elif stride == PAGE:
            s.cpu_check(a, alloc_size, why="check every page")
        else:
            for k in range(n_writes):
                s.cpu_check(a + k * stride + BATCH_DATA_OFF, 4)
        _free(s, a, alloc_size, SZ_2M)


def _process_evict(c: ProcessScenario, total: int, alloc_size: int,
                   stride: int) -> Iterator[str | None]:
    """process_evict() -> many_allocs() in a child: its own VM; allocations of
    ``alloc_size`` touched every ``stride`` until its share of VRAM overflows by an eighth
    (one round-robin turn each), the barrier (every child has touched everything), then
    check_all_pages() and free() per allocation, xe_vm_destroy()."""
    vm = _new_vm(c)
    n = (9 * (total // alloc_size)) // 8
    allocs = []
    for _ in range(n):
        a = _malloc(c, alloc_size, SZ_2M)
        allocs.append(a)
        _touch_all_pages(c, vm, a, alloc_size, stride)
        yield None
    yield BARRIER
    for a in allocs:
        for k in range(alloc_size // stride):
            c.cpu_check(a + k * stride + BATCH_DATA_OFF, 4,
                        why="the value survived the other child's evictions")
        _free(c, a, alloc_size, SZ_2M)
        yield None
    c.add({"ev": "vm_destroy", "vm": vm}, why="xe_vm_destroy() at the end of many_allocs")


def _build_processes_evict(alloc_size: int, stride: int, vram_mib: int,
                           profile: str) -> Scenario:
    """processes_evict(): one child per engine, each given the visible VRAM divided by the
    engines of its GT (xe_visible_vram_size() / n_engine_gt)."""
    s = Scenario(profile)
    _setup(s, vram_mib)
    total = (vram_mib << 20) // N_PROCESSES
    children = [s.process(f"child{k}") for k in range(N_PROCESSES)]
    _run_all([_child(c, _process_evict(c, total, alloc_size, stride)) for c in children])
    return s


def _build_many_allocs(total: int, alloc_size: int, stride: int, benchmark: bool,
                       check_threads: int, same_page: bool, vram_mib: int,
                       profile: str) -> Scenario:
    s = Scenario(profile)
    _setup(s, vram_mib)
    _many_allocs(s, total, alloc_size, stride, benchmark=benchmark,
                 check_threads=check_threads, same_page=same_page)
    return s


# -- the whole suite ----------------------------------------------------------------
#: VRAM of the modelled device in the eviction scenarios (MiB): IGT sizes its
#: allocations from the visible VRAM, so a small VRAM keeps the run short.
EVICT_VRAM_MIB = 64
#: The same for processes-evict-*: each of the N_PROCESSES children gets half of it, and
#: IGT's integer arithmetic, (9 * (share / 8 MiB)) / 8 allocations, overflows a 68 MiB
#: share (9 allocations, 72 MiB) but not a 32 MiB one (4). In the round-robin the
#: children alternate allocations of four 2 MiB ranges; with 136 MiB (68 ranges) the first
#: allocation that does not fit is the second child's last, and the LRU range it evicts
#: is the first child's (with 128 MiB each child would only evict its own oldest range).
PROCESSES_EVICT_VRAM_MIB = 136


def subtests() -> list[Subtest]:
    """Every subtest of the suite, in the suite's order."""
    out: list[Subtest] = []
    for name, flags in SECTIONS:
        for t in TEMPLATES:
            out.append(_grid(t, name, flags))
    for name, flags in (("prefetch-benchmark", PREFETCH | PREFETCH_BENCHMARK),
                        ("prefetch-sys-benchmark",
                         PREFETCH | PREFETCH_BENCHMARK | PREFETCH_SYS_BENCHMARK)):
        out.append(Subtest(SUITE, name, partial(_build_prefetch_bench, flags),
                           benchmark=True))
    for name, flags, shared_vm in SHARED_ALLOC_THREADS:
        t = Template(name, "threads", 1, 128, 0, 256)
        why = R_SAME_PAGE if flags & SYNC_EXEC else None
        out.append(Subtest(SUITE, name, skip=why) if why else
                   Subtest(SUITE, name, partial(_build_threads, t, flags, shared_vm)))
    out.append(Subtest(SUITE, "fault", partial(_build_exec, _Exec(1, SZ_2M, 0, FAULT))))
    for name, c, r, m, a in PARTIAL:
        out.append(Subtest(SUITE, f"partial-{name}", partial(_build_partial, c, r, m, a)))
    out.append(Subtest(SUITE, "unaligned-alloc",
                       partial(_build_many_allocs, (SZ_1M + SZ_1M // 2) * 8,
                               SZ_1M + SZ_1M // 2, PAGE, False, 0, False, 256)))
    out.append(Subtest(SUITE, "fault-benchmark",
                       partial(_build_many_allocs, SZ_64M, SZ_64M, PAGE, True, 0, False, 256),
                       benchmark=True))
    out.append(Subtest(SUITE, "fault-threads-benchmark",
                       partial(_build_many_allocs, SZ_64M, SZ_64M, PAGE, True, 8, False, 256),
                       benchmark=True))
    out.append(Subtest(SUITE, "fault-threads-same-page-benchmark",
                       partial(_build_many_allocs, SZ_64M, SZ_64M, PAGE, True, 8, True, 256),
                       benchmark=True))
    out.append(Subtest(SUITE, "fault-process-benchmark", skip=R_FORK, benchmark=True))
    out.append(Subtest(SUITE, "fault-process-same-page-benchmark", skip=R_FORK,
                       benchmark=True))
    out.append(Subtest(SUITE, "evict-malloc",
                       partial(_build_many_allocs, EVICT_VRAM_MIB << 20, SZ_8M, SZ_1M, False,
                               0, False, EVICT_VRAM_MIB)))
    out.append(Subtest(SUITE, "evict-malloc-mix-bo", skip=R_BO_CPU_MAP))
    out.append(Subtest(SUITE, "processes-evict-malloc",
                       partial(_build_processes_evict, SZ_8M, SZ_1M,
                               PROCESSES_EVICT_VRAM_MIB)))
    out.append(Subtest(SUITE, "processes-evict-malloc-mix-bo", skip=R_BO_CPU_MAP))
    for name, flags in MADVISE_SECTIONS:
        out.append(Subtest(SUITE, f"madvise-{name}",
                           partial(_build_exec, _Exec(1, SZ_64K, 0, flags))))
    for name, multi, pat in PAT_SECTIONS:
        flags = MADVISE_OP | MADVISE_PAT_INDEX | (MADVISE_MULTI_VMA if multi else 0)
        out.append(Subtest(SUITE, f"pat-index-{name}",
                           partial(_build_exec, _Exec(1, SZ_4M, 0, flags, pat=pat))))
    out.append(Subtest(SUITE, "compute", skip=R_COMPUTE))
    return out


def _build_prefetch_bench(flags: int, profile: str) -> Scenario:
    """128 execs on a 64 MiB buffer, prefetched to VRAM before each (and back after)."""
    s = Scenario(profile)
    _setup(s)
    vm = _new_vm(s)
    size = SZ_64M
    data = _malloc(s, size, size)
    s.cpu_write(data, size, 5, why="memset(data, 5)")
    for i in range(128):
        batch = data + i * STRUCT
        value = s.fresh(i)
        s.cpu_touch(batch, 64, why="CPU writes the batch")
        s.prefetch(vm, data, size, "vram", why="timed prefetch to VRAM")
        s.gpu(vm, "read", batch)
        s.gpu(vm, "write", batch + DATA_OFF, 4, value)
        s.cpu_check(batch + DATA_OFF, 4)
        if flags & PREFETCH_SYS_BENCHMARK:
            s.prefetch(vm, data, size, "system", why="timed prefetch back to system memory")
        else:
            s.cpu_write(data, size, 5, why="memset(data, 5) after the check")
    return s

