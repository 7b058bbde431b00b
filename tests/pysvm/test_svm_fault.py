"""The fault handler's decisions and errnos: need_vram_for_atomic, the outer re-lookup,
the budgets, and what a failing fault reports.

Kernel: xe_vma_need_vram_for_atomic() (xe_vm.c), xe_svm_handle_pagefault() and
__xe_svm_handle_pagefault() (xe_svm.c, 6.18 and newest).
"""

from __future__ import annotations

import errno

import pytest
from svm_helpers import BUF, SZ_2M, SZ_64K, K, Sim

from pysvm.errors import XeError
from pysvm.xe.pagefault import need_vram_for_atomic

PROFILES = ("6.18", "newest")


@pytest.mark.parametrize(("discrete", "smem_atomics", "policy", "atomic", "want"), [
    (True, False, 0, True, 1),      # UNDEFINED
    (True, False, 1, True, 1),      # DEVICE without device atomics on system memory
    (True, True, 1, True, 0),       # DEVICE with them
    (True, True, 2, True, 1),       # GLOBAL always
    (True, False, 2, False, 0),     # not an atomic access
    (False, True, 2, True, 0),      # integrated (always has device atomics on smem)
    (False, True, 3, True, 0),      # integrated: CPU policy is not even looked at
])
def test_need_vram_for_atomic(discrete: bool, smem_atomics: bool, policy: int,
                              atomic: bool, want: int) -> None:
    s = Sim("6.18", discrete=discrete, smem_atomics=smem_atomics)
    s.mmap(BUF, SZ_64K)
    s.madvise(BUF, SZ_64K, "atomic", val=policy)
    vma = s.vm.find_vma_by_addr(BUF)
    assert vma is not None
    assert need_vram_for_atomic(s.vm.device, vma, atomic) == want


def test_need_vram_for_atomic_cpu_policy_is_eacces() -> None:
    s = Sim("6.18")
    s.mmap(BUF, SZ_64K)
    s.madvise(BUF, SZ_64K, "atomic", val=3)
    vma = s.vm.find_vma_by_addr(BUF)
    assert vma is not None
    with pytest.raises(XeError) as e:
        need_vram_for_atomic(s.vm.device, vma, True)
    assert e.value.errno == errno.EACCES


@pytest.mark.parametrize("profile", PROFILES)
def test_fault_statistics_of_a_plain_fault(profile: str) -> None:
    s = Sim(profile)
    s.mmap(BUF, SZ_2M)
    out = s.gpu("write", BUF, K, value=1)
    st = s.last_fault()
    assert (out["faults"], out["retries"]) == (1, 0)
    assert (st.outer_iterations, st.inner_iterations, st.migrations, st.result) == (1, 1, 1, 0)
    assert st.timeslice_ms == 0                    # not devmem-only
    assert s.world.stats["faults"] == 1 and s.world.stats["faults_failed"] == 0
    out = s.gpu("atomic", BUF, K)                  # already valid in VRAM: no fault
    assert out["faults"] == 0


@pytest.mark.parametrize("profile", PROFILES)
def test_devmem_only_fault_has_three_tries_and_a_timeslice(profile: str) -> None:
    s = Sim(profile, vram_mib=1)                   # a 2 MiB range never fits
    s.mmap(BUF, SZ_2M)
    s.cpu_write(BUF, SZ_2M, 1)
    out = s.gpu("atomic", BUF, K)
    st = s.svm.fault_log[0]
    assert st.migrations == 3 and st.migration_failures == 3
    assert out["result"] == "ENOMEM" and st.result == errno.ENOMEM
    assert s.world.stats["faults_failed"] == 1
    # Both releases (v6.18 xe_svm.c __xe_svm_handle_pagefault() has the same `goto
    # get_pages`): each failed try with tries left goes to get_pages, which refuses the
    # fresh range's system pages (drm_gpusvm_get_pages(), devmem_only: -EFAULT) and
    # doubles the timeslice again; the last failed try returns its errno.
    assert st.timeslice_ms == 5 << 4 and st.get_pages_failures == 2
    assert s.cpu_read(BUF) == [1]


@pytest.mark.parametrize("profile", PROFILES)
def test_failures_name_their_page_and_errno(profile: str) -> None:
    s = Sim(profile)
    s.mmap(BUF, 2 * K)
    out = s.gpu("write", BUF, 3 * K, value=4)      # third page not CPU-mapped
    assert out["result"] == "ENOENT" and out["fault_addr"] == BUF + 2 * K
    assert "find-or-insert:ENOENT" in out["message"]
    assert s.cpu_read(BUF, 2 * K) == [4, 4]        # the first two pages were written
    s.ok({"ev": "bind", "vm": "vm0", "op": "unmap", "addr": BUF + SZ_2M, "range": SZ_64K})
    out = s.gpu("read", BUF + SZ_2M, K)
    assert out["result"] == "EINVAL" and "no VMA" in out["message"]


@pytest.mark.parametrize("profile", PROFILES)
def test_outer_relookup_finds_the_new_vma(profile: str) -> None:
    """After set_default_attr split the VMA the fault started with, the outer loop
    continues with the VMA the lookup returns now (xe_vm_find_vma_by_addr)."""
    s = Sim(profile, autoreset=True)
    s.mmap(BUF, 2 * SZ_2M)
    s.madvise(BUF, 2 * SZ_2M, "atomic", val=2)
    s.gpu("read", BUF, K)
    s.gpu("read", BUF + SZ_2M, K)
    before = s.vm.find_vma_by_addr(BUF + SZ_2M)
    s.munmap(BUF, SZ_2M)
    s.ok({"ev": "invalidate", "addr": BUF + SZ_2M, "size": K})
    out = s.gpu("read", BUF + SZ_2M, K)
    assert out["result"] == "ok"
    st = s.last_fault()
    assert st.gc_eagain == 1 and st.outer_iterations == 2
    after = s.vm.find_vma_by_addr(BUF + SZ_2M)
    assert after is not before                     # the split replaced it
    if profile == "6.18":
        # The kernel then caches the VMA the fault started with: the destroyed one.
        assert s.vm.last_fault_vma is before
        assert s.world.stats["last_fault_vma_dangling"] == 1
    else:       # 7.0 has no last-fault cache (xe_pagefault_service() stores nothing)
        assert s.vm.last_fault_vma is None
        assert s.world.stats["last_fault_vma_dangling"] == 0
    assert s.vm.find_vma_by_addr(BUF + SZ_2M) is after     # the model ignores it


@pytest.mark.parametrize("profile", ["6.18", "7.0"])
def test_killed_vm_keeps_mapped_pages_and_fails_new_faults(profile: str) -> None:
    """Kernel: xe_vm_kill() (xe_vm.c) sets XE_VM_FLAG_BANNED and kills preempt-fence exec
    queues only, so pages already bound keep working; a new fault looks the VMA up with
    xe_vm_find_vma_by_addr(), whose xe_vm_find_overlapping_vma() finds nothing on a banned
    VM (EINVAL in xe_pagefault_service()); in 6.18 the last-fault VMA cache answers first,
    and the SVM handler's garbage collector then refuses the banned VM
    (xe_svm_garbage_collector(): ENOENT)."""
    s = Sim(profile)              # 7.0: no last-fault cache (xe_pagefault_service())
    s.mmap(BUF, SZ_2M)
    assert s.gpu("write", BUF, K, value=7)["result"] == "ok"     # mapped, cached
    s.checker.engine.execute({"ev": "vm_kill", "vm": "vm0"})
    s.checker.quirk_killed.add("vm0")                 # a deliberate kill, not a finding
    out = s.ev({"ev": "gpu_access", "vm": "vm0", "addr": BUF, "size": K, "op": "read"})
    assert out["result"] == "ok" and out["data"] == [7] and out["faults"] == 0
    n = len(s.svm.fault_log)
    s.checker.engine.execute({"ev": "invalidate", "addr": BUF, "size": K})
    out = s.ev({"ev": "gpu_access", "vm": "vm0", "addr": BUF, "size": K, "op": "read"})
    want = "ENOENT" if profile == "6.18" else "EINVAL"
    assert out["result"] == want, out
    assert len(s.svm.fault_log) == n + (1 if profile == "6.18" else 0)




def test_bad_gpu_access_arguments_change_nothing() -> None:
    s = Sim("6.18")
    s.mmap(BUF, K)
    for ev in ({"op": "poke"}, {"size": 0}, {"addr": BUF + 1}):
        full = {"ev": "gpu_access", "vm": "vm0", "addr": BUF, "size": K, "op": "read", **ev}
        assert s.checker.engine.execute(full)["result"] == "EINVAL"
    assert s.ranges() == [] and s.world.stats["faults"] == 0
