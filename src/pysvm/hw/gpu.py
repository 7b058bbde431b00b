"""The simulated GPU: engines reading, writing and atomically updating memory.

Kernel: the hardware side of drivers/gpu/drm/xe/xe_pagefault.c: an access whose PTE is
missing or invalidated raises a page fault that the driver services
(xe_pagefault -> xe_svm_handle_pagefault for CPU-address-mirror VMAs, here
:func:`pysvm.xe.pagefault.handle_pagefault`); an atomic to memory the PTE does not
allow atomics on faults too. BO, userptr and NULL VMAs fault into
xe_pagefault_handle_vma() (:func:`pysvm.xe.pagefault.handle_vma`) when their PTEs are
missing or refuse the atomic; a userptr VMA's pages are the process's pages.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from pysvm.errors import XeError
from pysvm.mm.mmap import PAGE_SHIFT, PAGE_SIZE, check_access_size
from pysvm.xe.pagefault import (
    FaultError,
    handle_pagefault,
    handle_vma,
    need_vram_for_atomic,
    range_valid,
    remember_fault_vma,
)

if TYPE_CHECKING:
    from pysvm.xe.svm import Svm
    from pysvm.xe.vma import Vma

__all__ = ["GPU_REFAULTS", "gpu_access"]

#: How often :func:`gpu_access` lets the GPU fault again on one page after the fault
#: handler reported success. Kernel (newest, 508444b9): a devmem-only (atomic) fault
#: whose migration fails with tries left goes to get_pages, whose fast path accepts the
#: range's valid system pages, so the handler rebinds them and returns 0; the atomic
#: still lacks VRAM and faults again, each time with a fresh try budget. When the
#: migration can never succeed (VRAM smaller than the range) that is an endless
#: GPU-level loop, reported here as ETIME (the job timing out) after this many rounds.
GPU_REFAULTS = 3


def _bo_page(vma: Vma, a: int) -> tuple[str, int]:
    assert vma.bo is not None
    return vma.bo.name, (vma.offset + (a - vma.start)) // PAGE_SIZE


def _needs_fault(svm: Svm, vma: Vma, atomic: bool, discrete: bool, bit: int) -> bool:
    """Whether the GPU faults on a BO/userptr VMA: no valid PTE on this tile, or an
    atomic the PTE does not allow (xe_pt.c sets the atomic-enable bit only where
    xe_vma_need_vram_for_atomic() is satisfied: attribute not CPU, VRAM where needed)."""
    if not vma.tile_present & ~vma.tile_invalidated & bit:
        return True
    if not (atomic and discrete):
        return False
    try:
        need = need_vram_for_atomic(svm.device, vma, True, svm.vm.profile.range_removed_check)
    except XeError:
        return True
    return bool(need) and not (vma.bo is not None and vma.bo.is_vram)


def _fault_lookup(svm: Svm, a: int) -> Vma:
    """The driver's VMA lookup for a fault: on a killed VM only the last-fault cache
    (profile 6.18) answers; no VMA -> EINVAL. Kernel: xe_pagefault_service() ->
    xe_vm_find_vma_by_addr()."""
    found = svm.vm.find_vma_by_addr(a)
    if found is None:
        svm.host.stats["faults"] += 1
        svm.host.stats["faults_failed"] += 1
        raise XeError(errno.EINVAL, f"GPU fault at {a:#x}: the VM finds no VMA"
                      + (" (it is killed)" if svm.vm.killed else ""))
    return found


def _data_access(svm: Svm, vma: Vma, a: int, op: str, value: int, data: list[int]) -> None:
    """Read, write or increment one page of a BO or userptr VMA.

    A BO page lives in ``svm.bo_data``; a userptr page is the process's own page at
    ``userptr + (a - start)`` (the pages xe_vma_userptr_pin_pages() pinned with
    hmm_range_fault(), device pages migrated back to system memory first), so the CPU
    sees GPU writes and the GPU sees CPU writes."""
    if vma.is_userptr():
        cpu = vma.offset + (a - vma.start)
        page = svm.mm.hmm_range_fault(cpu, cpu + PAGE_SIZE, write=op != "read", owner=None)[0]
        if op == "read":
            data.append(page.value)
        elif op == "write":
            page.value = value
        else:
            page.value += 1
        return
    key = _bo_page(vma, a)
    cur = svm.bo_data.get(key, 0)
    if op == "read":
        data.append(cur)
    elif op == "write":
        svm.bo_data[key] = value
    else:
        svm.bo_data[key] = cur + 1


def gpu_access(svm: Svm, addr: int, size: int, op: str, value: int = 0) -> dict[str, object]:
    """The device reads, writes or atomically increments ``[addr, addr+size)``.

    Kernel: the GPU's view: a missing or invalidated PTE raises a page fault
    (xe_pagefault -> xe_svm_handle_pagefault for CPU-mirror VMAs); an atomic to
    a range outside VRAM on a discrete device that needs VRAM for atomics
    faults too (the PTE lacks the atomic bit). No VMA -> EINVAL; a write to a
    read-only VMA -> EPERM (xe_pagefault's access check).
    """
    if op not in ("read", "write", "atomic"):
        raise XeError(errno.EINVAL, f"gpu_access op {op!r}: choose read, write or atomic")
    if size <= 0 or addr % PAGE_SIZE or size % PAGE_SIZE:
        raise XeError(errno.EINVAL, f"gpu_access [{addr:#x}, +{size:#x}) must be 4 KiB "
                      "aligned and non-empty")
    check_access_size(size, "gpu_access", reads=op == "read")
    vm = svm.vm
    faults = retries = 0
    data: list[int] = []
    atomic = op == "atomic"
    discrete = svm.device.discrete
    bit = 1 << svm.tile
    a = addr
    end = addr + size
    try:
        while a < end:
            # The GPU walks its page tables: a killed (banned) VM keeps them
            # (xe_vm_kill() stops exec queues only), so mapped pages still work.
            vma = vm.vma_at(a)
            if vma is None:
                raise XeError(errno.EINVAL, f"GPU access at {a:#x}: no VMA")
            if op != "read" and vma.read_only():
                raise XeError(errno.EPERM, f"GPU {op} at {a:#x}: VMA is read-only")
            if not vma.is_cpu_addr_mirror():
                if vma.is_null():
                    if op == "read":
                        data.append(0)
                    a += PAGE_SIZE
                    continue
                if _needs_fault(svm, vma, atomic, discrete, bit):
                    faults += 1
                    found = _fault_lookup(svm, a)
                    if found.is_cpu_addr_mirror():   # the cache answered another VMA
                        raise XeError(errno.EINVAL, f"GPU fault at {a:#x}: lookup found a "
                                      "different VMA")
                    handle_vma(svm, found, a, atomic)
                    remember_fault_vma(svm, found)
                _data_access(svm, vma, a, op, value, data)
                a += PAGE_SIZE
                continue
            spins = 0
            last_reasons: list[str] = []
            while True:
                r = svm.gpusvm.range_find(a)
                ok = r is not None and r.is_valid(svm.tile, False)
                if (ok and atomic and discrete and r is not None
                        and not range_valid(svm, r, True, svm.device)):
                    try:
                        ok = need_vram_for_atomic(svm.device, vma, True,
                                                  vm.profile.range_removed_check) == 0
                    except XeError:
                        ok = False
                if ok:
                    break
                if spins >= GPU_REFAULTS:
                    if atomic and r is not None and r.is_valid(svm.tile, False):
                        # The kernel's answer, not a model bug: see GPU_REFAULTS.
                        raise XeError(errno.ETIME, f"GPU atomic at {a:#x} faulted {spins} "
                                      "times: the fault handler binds the range but cannot "
                                      f"move it to {svm.device.name}'s VRAM "
                                      f"({'; '.join(last_reasons[-3:])}), so the atomic "
                                      "faults again; the GPU job would time out")
                    raise RuntimeError(f"model bug: fault at {a:#x} reported success "
                                       f"{spins} times but the mapping is still invalid")
                spins += 1
                faults += 1
                if vm.killed:
                    vma = _fault_lookup(svm, a)
                st = handle_pagefault(svm, vma, a, atomic)
                remember_fault_vma(svm, vma)
                last_reasons = st.reasons
                retries += st.retries
                vma = vm.find_vma_by_addr(a) or vma
            assert r is not None and r.pages is not None
            # Every further page of this range inside this VMA would find the same VMA and
            # the same valid range without faulting (nothing changes between them), so
            # serve the whole span at once: one lookup per range, not per page.
            span_end = min(end, r.end, vma.end) if vm.vma_at(a) is vma else a + 1
            i = (a - r.start) >> PAGE_SHIFT
            j = i + max((span_end - a) >> PAGE_SHIFT, 1)
            pages = r.pages
            if op == "read":
                data.extend([p.value for p in pages[i:j]])
            elif op == "write":
                for p in pages[i:j]:
                    p.value = value
            else:
                for p in pages[i:j]:
                    p.value += 1
            a += (j - i) << PAGE_SHIFT
    except XeError as e:
        if isinstance(e, FaultError):
            retries += e.stats.retries
        e.details.update(faults=faults, retries=retries, fault_addr=a)
        raise
    out: dict[str, object] = {"faults": faults, "retries": retries}
    if op == "read":
        out["data"] = data
    return out
