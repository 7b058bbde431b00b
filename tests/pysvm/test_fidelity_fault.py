"""Regression tests for the GPU side of issue 14's divergences: userptr VMAs map the
process's pages, BO and userptr VMAs go through xe_pagefault_handle_vma()'s atomic check.
Each test names the kernel function whose behaviour it pins down."""

from __future__ import annotations

import errno

import pytest
from test_fidelity import BUF, K, M, _errno, _world

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
    w = _world()
    w.bind(vm="vm0", op="map_userptr", addr=BUF, range=64 * 1024, offset=0x7000_0000,
           pat_index=1)
    assert _errno(w.gpu_access, vm="vm0", addr=BUF, size=K, op="read") == errno.EFAULT


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
