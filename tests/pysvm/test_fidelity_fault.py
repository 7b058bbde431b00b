"""Regression tests for the GPU side of issue 14's divergences: userptr VMAs map the
process's pages, BO and userptr VMAs go through xe_pagefault_handle_vma()'s atomic check.
Each test names the kernel function whose behaviour it pins down."""

from __future__ import annotations

import errno

import pytest
from test_fidelity import BUF, K, M, _errno, _world

from pysvm import World

# -- userptr VMAs (xe_pagefault_handle_vma, xe_vma_userptr_pin_pages) ---------------------

def test_userptr_gpu_sees_and_changes_process_memory() -> None:
    w = _world()
    cpu = 0x7000_0000
    w.mmap(addr=cpu, size=64 * 1024)
    w.cpu_write(addr=cpu, size=2 * K, value=9)
    w.bind(vm="vm0", op="map_userptr", addr=BUF, range=64 * 1024, offset=cpu, pat_index=1)
    out = w.gpu_access(vm="vm0", addr=BUF, size=2 * K, op="read")
    assert out["data"] == [9, 9] and out["faults"] == 1      # first access pins and binds
    w.gpu_access(vm="vm0", addr=BUF + K, size=K, op="write", value=3)
    assert w.cpu_read(addr=cpu, size=2 * K)["data"] == [9, 3]


def test_userptr_atomic_needing_vram_is_eacces() -> None:
    # xe_pagefault_handle_vma(): needs_vram && xe_vma_is_userptr(vma) -> -EACCES
    w = _world()
    cpu = 0x7000_0000
    w.mmap(addr=cpu, size=64 * 1024)
    w.bind(vm="vm0", op="map_userptr", addr=BUF, range=64 * 1024, offset=cpu, pat_index=1)
    assert _errno(w.gpu_access, vm="vm0", addr=BUF, size=K, op="atomic") == errno.EACCES
    assert w.cpu_read(addr=cpu, size=K)["data"] == [0]


def test_userptr_pin_of_unmapped_memory_is_efault() -> None:
    # xe_vm.c new_vma(): MAP_USERPTR pins the pages at bind (xe_vma_userptr_pin_pages());
    # memory the process has not mapped is EFAULT there and the new VMA is destroyed, so
    # the VM is unchanged (this test asserted a successful bind before the pin was
    # modelled).
    w = _world()
    before = w.query(vm="vm0")["vmas"]
    assert _errno(w.bind, vm="vm0", op="map_userptr", addr=BUF, range=64 * 1024,
                  offset=0x7000_0000, pat_index=1) == errno.EFAULT
    assert w.query(vm="vm0")["vmas"] == before
    w.mmap(addr=0x7000_0000, size=32 * 1024)          # half of it is not enough
    assert _errno(w.bind, vm="vm0", op="map_userptr", addr=BUF, range=64 * 1024,
                  offset=0x7000_0000, pat_index=1) == errno.EFAULT
    assert w.query(vm="vm0")["vmas"] == before


def test_userptr_pin_asks_write_access_unless_the_vma_is_read_only() -> None:
    # xe_userptr.c xe_vma_userptr_pin_pages(): ctx.read_only = xe_vma_read_only(vma), so
    # drm_gpusvm_get_pages() asks hmm_range_fault() for HMM_PFN_REQ_WRITE on a writable
    # VMA: over read-only memory that is EPERM (mm/hmm.c hmm_vma_fault()) and the bind
    # changes nothing; a read-only VMA pins it. The pin's write fault populates and
    # dirties the pages (do_anonymous_page()); a read-only pin maps the zero page.
    w = _world()
    cpu = 0x7000_0000
    w.mmap(addr=cpu, size=64 * 1024, read_only=True)
    before = w.query(vm="vm0")["vmas"]
    assert _errno(w.bind, vm="vm0", op="map_userptr", addr=BUF, range=64 * 1024,
                  offset=cpu, pat_index=1) == errno.EPERM
    assert w.query(vm="vm0")["vmas"] == before
    assert w.smaps(addr=cpu, size=64 * 1024)["zero"] == 0
    w.bind(vm="vm0", op="map_userptr", addr=BUF, range=64 * 1024, offset=cpu, pat_index=1,
           flags=["read_only"])
    assert w.smaps(addr=cpu, size=64 * 1024)["zero"] == 64
    cpu2 = 0x7100_0000
    w.mmap(addr=cpu2, size=64 * 1024)
    w.bind(vm="vm0", op="map_userptr", addr=BUF + M, range=64 * 1024, offset=cpu2,
           pat_index=1)
    s = w.smaps(addr=cpu2, size=64 * 1024)
    assert s["private_dirty"] == 64 and s["zero"] == 0


def test_userptr_repin_of_unmapped_memory_is_efault() -> None:
    # The bind pinned mapped memory; munmap fires the userptr's notifier
    # (xe_userptr.c vma_userptr_invalidate(): fault mode -> xe_vm_invalidate_vma()), the next
    # access faults, and xe_pagefault_handle_vma()'s repin (xe_vma_userptr_pin_pages()) of
    # the vanished memory is EFAULT.
    w = _world()
    w.mmap(addr=0x7000_0000, size=64 * 1024)
    w.bind(vm="vm0", op="map_userptr", addr=BUF, range=64 * 1024, offset=0x7000_0000,
           pat_index=1)
    assert w.gpu_access(vm="vm0", addr=BUF, size=K, op="read")["faults"] == 1
    w.munmap(addr=0x7000_0000, size=K)
    assert _errno(w.gpu_access, vm="vm0", addr=BUF + K, size=K, op="read") == errno.EFAULT


# -- BO VMAs go through the fault path's atomic check (xe_pagefault_handle_vma) ---------

@pytest.mark.parametrize("profile", ["6.18", "7.0"])
def test_bo_atomic_with_atomic_cpu_is_eacces(profile: str) -> None:
    # xe_vma_need_vram_for_atomic(): DRM_XE_ATOMIC_CPU -> -EACCES
    w = _world(profile)
    w.bo_create(bo="b", device="gpu0", size=M, placement=["system"])
    w.bind(vm="vm0", op="map", addr=BUF, range=M, bo="b")
    w.madvise(vm="vm0", addr=BUF, range=M, type="atomic", val=3)     # DRM_XE_ATOMIC_CPU
    assert _errno(w.gpu_access, vm="vm0", addr=BUF, size=K, op="atomic") == errno.EACCES
    out = w.gpu_access(vm="vm0", addr=BUF, size=K, op="read")
    assert out["data"] == [0]
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="write", value=4)
    assert w.gpu_access(vm="vm0", addr=BUF, size=K, op="read")["data"] == [4]


# -- read-only, shared and file-backed mmaps (drm_gpusvm_range_find_or_insert,
#    __xe_svm_handle_pagefault) ------------------------------------------------------------

def _mirror_world() -> World:
    w = _world()
    w.bind(vm="vm0", op="map", addr=BUF, range=8 * M, flags=["cpu_addr_mirror"])
    return w


def test_read_only_mmap_is_eperm_for_every_gpu_access_of_a_writable_gpu_vma() -> None:
    # the context's read_only comes from the GPU VMA: a writable mirror VMA over a CPU VMA
    # without VM_WRITE is -EPERM in drm_gpusvm_range_find_or_insert(), reads included
    w = _mirror_world()
    w.mmap(addr=BUF, size=2 * M, read_only=True)
    assert _errno(w.gpu_access, vm="vm0", addr=BUF, size=K, op="read") == errno.EPERM
    # a read-only GPU VMA over it reads fine
    w.bind(vm="vm0", op="map", addr=BUF + 4 * M, range=2 * M,
           flags=["cpu_addr_mirror", "read_only"])
    w.mmap(addr=BUF + 4 * M, size=2 * M, read_only=True)
    assert w.gpu_access(vm="vm0", addr=BUF + 4 * M, size=K, op="read")["data"] == [0]


@pytest.mark.parametrize("kind", ["shared", "file"])
def test_non_anonymous_mmaps_never_migrate(kind: str) -> None:
    # migrate_devmem = devmem_possible && vma_is_anonymous(): reads and writes are served
    # from system memory; an atomic that needs VRAM is EACCES
    w = _mirror_world()
    w.mmap(addr=BUF, size=2 * M, **{kind: True})  # type: ignore[arg-type]
    w.cpu_write(addr=BUF, size=K, value=2)
    assert w.gpu_access(vm="vm0", addr=BUF, size=K, op="read")["data"] == [2]
    assert {r["location"] for r in w.ranges(vm="vm0")["ranges"]} == {"system"}
    assert _errno(w.gpu_access, vm="vm0", addr=BUF, size=K, op="atomic") == errno.EACCES
    w.prefetch(vm="vm0", addr=BUF, range=2 * M, region="vram")
    assert {r["location"] for r in w.ranges(vm="vm0")["ranges"]} == {"system"}


def test_userptr_notifier_lives_as_long_as_its_vma() -> None:
    # xe_userptr.c: xe_userptr_setup() inserts the userptr's MMU interval notifier when the
    # VMA is created and xe_userptr_remove() drops it only when the VMA is destroyed, so
    # it outlives the CPU mapping; the fuzz oracle's "nothing left" check allows for it.
    from pysvm.fuzz.target import check_events

    cpu = 0x7000_0000
    events = [
        {"ev": "device", "name": "gpu0", "vram_mib": 64},
        {"ev": "vm_create", "vm": "vm0", "device": "gpu0", "fault_mode": True},
        {"ev": "mmap", "addr": cpu, "size": 64 * 1024},
        {"ev": "bind", "vm": "vm0", "op": "map_userptr", "addr": BUF, "range": 64 * 1024,
         "offset": cpu, "pat_index": 1},
        {"ev": "munmap", "addr": cpu, "size": 64 * 1024},
        {"ev": "run_workers"},
    ]
    assert check_events(events) is None
    w = _world()
    w.mmap(addr=cpu, size=64 * 1024)
    w.bind(vm="vm0", op="map_userptr", addr=BUF, range=64 * 1024, offset=cpu, pat_index=1)
    assert w.mm.notifier_count() == 1
    w.munmap(addr=cpu, size=64 * 1024)
    assert w.mm.notifier_count() == 1
    w.bind(vm="vm0", op="unmap", addr=BUF, range=64 * 1024)
    assert w.mm.notifier_count() == 0
