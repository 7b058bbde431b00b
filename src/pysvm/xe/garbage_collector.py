"""The SVM garbage collector and the attribute reset after a full unmap.

Kernel: xe_svm_garbage_collector(), __xe_svm_garbage_collector() and
xe_svm_range_set_default_attr() in drivers/gpu/drm/xe/xe_svm.c.

Ranges are queued (once each) by the MMU notifier on an UNMAP event. The
collector pops them in queue order; for each it unbinds the GPU mapping and
removes the range, then asks :func:`set_default_attr` to give the unmapped
span default attributes again. ``EAGAIN`` from the reset ("VMAs changed, your
VMA pointer may be stale") is remembered and returned at the end; any other
error is returned at once. A failed VMA split kills the VM.

Profiles (pysvm.xe.profile): both act only on VMAs flagged MADV_AUTORESET (bound
with DRM_XE_VM_BIND_FLAG_MADVISE_AUTORESET; v6.18 final already has the flag).
``6.18`` then resets the VMA in place when it is exactly the range, else splits a
default CPU-mirror VMA out for the range; ``7.0`` widens over default-attribute
CPU-mirror neighbours and replaces the whole widened span by one VMA.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from pysvm.errors import XeError

if TYPE_CHECKING:
    from pysvm.xe.svm import Svm

__all__ = ["garbage_collector", "set_default_attr"]


def set_default_attr(svm: Svm, start: int, end: int) -> int:
    """Reset attributes of the span a collected range covered.

    Kernel: xe_svm_range_set_default_attr(). Returns 0, ``errno.EAGAIN``
    (VMAs changed) or another errno (the VM was killed when a split failed).
    """
    vm = svm.vm
    vma = vm.find_vma_by_addr(start)
    if vma is None:
        return errno.EINVAL
    stats = svm.host.stats
    if vm.profile.autoreset_gating and not vma.madv_autoreset():
        # both releases: a VMA bound without DRM_XE_VM_BIND_FLAG_MADVISE_AUTORESET keeps
        # its attributes (v6.18 and 7.0 xe_svm_range_set_default_attr())
        return 0
    if not vm.profile.absorb_neighbours:
        # 6.18: reset in place, or re-allocate exactly the collected range
        if vma.has_default_mem_attrs():
            return 0
        if vma.start == start and vma.end == end:
            vma.reset_attrs()
            stats["vmas_reset"] += 1
            return errno.EAGAIN
        return _alloc_default_vma(svm, start, end)
    # 7.0: widened over default-attribute mirror neighbours
    had_default = vma.has_default_mem_attrs()
    if had_default:
        start, end = vma.start, vma.end
    elif vma.start == start and vma.end == end:
        vma.reset_attrs()
        stats["vmas_reset"] += 1
    start, end = vm.find_cpu_addr_mirror_vma_range(start, end)
    if start == vma.start and end == vma.end and had_default:
        return 0
    return _alloc_default_vma(svm, start, end)


def _alloc_default_vma(svm: Svm, start: int, end: int) -> int:
    """One default CPU-mirror VMA for exactly ``[start, end)``; EAGAIN, or the errno.

    Kernel: xe_vm_alloc_cpu_addr_mirror_vma() from set_default_attr; when it
    fails the kernel warns and kills the VM.
    """
    vm = svm.vm
    try:
        vm.alloc_cpu_addr_mirror_vma(start, end - start)
    except XeError as e:
        svm.host.stats["gc_split_failures"] += 1
        vm.kill()
        return e.errno or errno.EINVAL
    svm.host.stats["vmas_reset"] += 1
    return errno.EAGAIN


def garbage_collector(svm: Svm) -> int:
    """Collect every queued range; return 0, ``errno.EAGAIN`` or an errno.

    Kernel: xe_svm_garbage_collector(): closed or banned VM -> ENOENT.
    """
    vm = svm.vm
    if vm.killed:
        return errno.ENOENT
    ret = 0
    ran = False
    while svm.gc_list:
        rng = svm.gc_list.pop(0)
        rng.gc_queued = False
        ran = True
        start, end = rng.start, rng.end
        svm.range_collect(rng)
        err = set_default_attr(svm, start, end)
        for hook in svm.gc_hooks:
            hook(svm, start, end, err)
        if err == errno.EAGAIN:
            ret = errno.EAGAIN
        elif err:
            return err
    if ran:
        svm.host.stats["gc_runs"] += 1
    return ret
