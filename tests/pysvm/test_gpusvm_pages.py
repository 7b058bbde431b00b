"""drm_gpusvm_get_pages() as pysvm.drm.gpusvm.GpuSvm.range_get_pages models it: which
mixes of system and device pages it accepts, and what it records of them
(SvmRange.pages_uniform, which lets a GPU access skip looking at each page's allocation)."""

from __future__ import annotations

import errno

import pytest
from mm_helpers import FakeOwner

from pysvm.drm.gpusvm import GpuSvm, GpuSvmCtx, SvmRange
from pysvm.drm.gpusvm_notifier import SvmNotifier
from pysvm.errors import XeError
from pysvm.mm.mmap import PAGE_SIZE, DevmemOwner, Mm
from pysvm.mm.mmu_notifier import NotifierRange

P = PAGE_SIZE
M2 = 2 << 20
A = 0x40_0000_0000


class Ops:
    """The driver side (xe_svm_gpusvm_ops) reduced to what get_pages calls."""

    def invalidate(self, notifier: SvmNotifier, nrange: NotifierRange) -> None:
        pass

    def page_pagemap(self, alloc: DevmemOwner) -> FakeOwner:
        assert isinstance(alloc, FakeOwner)
        return alloc

    def pagemap_get(self, dpagemap: object) -> None:
        pass

    def pagemap_put(self, dpagemap: object) -> None:
        pass

    def devmem_evict(self, mm: Mm, start: int, end: int) -> int:
        return 0


def _range(layout: str) -> tuple[GpuSvm, SvmRange]:
    """A 2 MiB range whose pages follow ``layout``, one letter per 512 KiB quarter:
    ``s`` system pages, ``a`` / ``b`` device pages of two allocations of one owner."""
    mm = Mm()
    mm.mmap(A, M2)
    mm.cpu_write(A, M2, 7)
    a, b = FakeOwner(), FakeOwner()
    q = M2 // 4
    for k, c in enumerate(layout):
        if c != "s":
            mm.migrate_vma_pages(A + k * q, A + (k + 1) * q, a if c == "a" else b)
    svm = GpuSvm(mm, 0, 1 << 47, 1 << 30, Ops(), owner=FakeOwner.owner)
    return svm, svm.range_find_or_insert(A, 0, 1 << 47, GpuSvmCtx())


@pytest.mark.parametrize("layout", ["ssss", "aaaa"])
def test_pages_of_one_kind_are_uniform(layout: str) -> None:
    svm, r = _range(layout)
    assert r.size == M2
    svm.range_get_pages(r, GpuSvmCtx())
    assert r.pages is not None and len(r.pages) == M2 // P
    assert r.pages_uniform
    assert r.has_devmem_pages == (layout == "aaaa")
    svm.range_unmap_pages(r)
    assert not r.pages_uniform and r.pages is None


@pytest.mark.parametrize(("layout", "why"), [("aaas", "device and system"),
                                             ("saaa", "different memory"),
                                             ("aabb", "different memory")])
def test_mixed_pages_refused_unless_allowed(layout: str, why: str) -> None:
    # drm_gpusvm.c drm_gpusvm_get_pages(): without ctx->allow_mixed a system page after a
    # device page is -EOPNOTSUPP, and so is any change of pagemap after the first page
    # (a device page after a system one included).
    svm, r = _range(layout)
    with pytest.raises(XeError) as ei:
        svm.range_get_pages(r, GpuSvmCtx())
    assert ei.value.errno == errno.EOPNOTSUPP and why in str(ei.value)
    assert r.pages is None and not r.pages_uniform
    svm.range_get_pages(r, GpuSvmCtx(allow_mixed=True))
    assert r.pages is not None and not r.pages_uniform


def test_devmem_only_refuses_system_pages() -> None:
    svm, r = _range("ssss")
    with pytest.raises(XeError) as ei:
        svm.range_get_pages(r, GpuSvmCtx(devmem_only=True))
    assert ei.value.errno == errno.EFAULT
