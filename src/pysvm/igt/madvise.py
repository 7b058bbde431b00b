"""xe_madvise: the purgeable-BO group and the atomic-attribute group.

The suite (igt-gpu-tools tests/intel/xe_madvise.c) has two groups. Eight
subtests mark BOs DONTNEED/WILLNEED and expect the kernel to purge them under
memory pressure, to refuse mmap() and new binds of a DONTNEED BO, and to track
the state per VMA; the model has no purgeable BOs, so they are skipped. The
three atomic subtests bind the whole VA as CPU-address mirror, advise the
access mode of one page (DEVICE, GLOBAL, CPU) and run an MI_ATOMIC_INC batch
that lives in that same page; they are ported.
"""

from __future__ import annotations

from functools import partial

from .runner import Subtest
from .scenario import PAGE, Scenario

__all__ = ["SUITE", "subtests", "EXPECTED_COUNT"]

SUITE = "xe_madvise"

#: 8 purgeable subtests + 3 atomic subtests (two igt_subtest_group blocks).
EXPECTED_COUNT = 11

R_PURGEABLE = ("purgeable BOs (DRM_XE_VMA_PURGEABLE_STATE, purge under memory pressure) "
               "are not modelled")

PURGEABLE = ("dontneed-before-mmap", "purged-mmap-blocked", "dontneed-after-mmap",
             "dontneed-before-exec", "dontneed-after-exec", "per-vma-tracking",
             "per-vma-protection", "partial-unbind-dontneed")

#: atomic-<mode>: the uapi atomic value (DRM_XE_ATOMIC_*).
ATOMIC = (("atomic-device", 1), ("atomic-global", 2), ("atomic-cpu", 3))

#: The page the suite allocates (aligned_alloc of xe_bb_size(sizeof(struct))).
BUF = 0x10_0000_0000


def _build_atomic(mode: int, profile: str) -> Scenario:
    s = Scenario(profile)
    s.device("gpu0")
    vm = s.vm("vm0")
    s.mmap(BUF, PAGE)
    s.cpu_write(BUF, PAGE, 0, why="memset(data, 0)")
    s.bind_mirror(vm, why="bind the whole VA as CPU-address mirror")
    s.madvise(vm, BUF, PAGE, "atomic", val=mode)
    if mode == 2:
        for _ in range(100):
            s.cpu_write(BUF, PAGE, s.mem[BUF // PAGE] + 1, why="CPU atomic increment")
        s.cpu_check(BUF, PAGE, why="100 CPU increments")
    s.cpu_touch(BUF, 16, why="CPU writes the MI_ATOMIC_INC batch next to the counter")
    s.gpu(vm, "read", BUF, why="GPU fetches the batch")
    if mode == 3:
        s.gpu(vm, "atomic", BUF, 4, want=("EACCES",),
              why="atomic access CPU: the fault handler refuses GPU atomics")
    else:
        s.gpu(vm, "atomic", BUF, 4, why="MI_ATOMIC_INC")
    s.cpu_check(BUF, 4, why="the counter as IGT expects it")
    s.unbind(vm, want=("ok", "EBUSY"),
             why="unbind of the whole VA (IGT ignores the result)")
    return s


def subtests() -> list[Subtest]:
    out = [Subtest(SUITE, name, skip=R_PURGEABLE) for name in PURGEABLE]
    out += [Subtest(SUITE, name, partial(_build_atomic, mode)) for name, mode in ATOMIC]
    return out
