"""The simulated GPU: engines reading, writing and atomically updating memory.

Kernel: the hardware side of drivers/gpu/drm/xe/xe_pagefault.c: an access whose PTE is
missing or invalidated raises a page fault that the driver services
(xe_pagefault -> xe_svm_handle_pagefault for CPU-address-mirror VMAs, here
:func:`pysvm.xe.pagefault.handle_pagefault`); an atomic to memory the PTE does not
allow atomics on faults too: the PTE's atomic-enable bit is set only where
xe_pt.c allows it (:func:`pysvm.xe.pt.pte_atomic`), so an atomic through a mapping a
read made earlier can fault. BO, userptr and NULL VMAs fault into
xe_pagefault_handle_vma() (:func:`pysvm.xe.pagefault.handle_vma`) when their PTEs are
missing or refuse the atomic; a userptr VMA's pages are the process's pages.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Final

from pysvm.errors import XeError
from pysvm.mm.mmap import PAGE_SHIFT, PAGE_SIZE, check_access_size
from pysvm.xe.pagefault import (
    FaultError,
    handle_pagefault,
    handle_vma,
    remember_fault_vma,
)
from pysvm.xe.pt import pte_atomic
from pysvm.xe.vm_faults import (
    ACCESS_ATOMIC,
    ACCESS_READ,
    ACCESS_WRITE,
    FAULT_ATOMIC_ACCESS,
    FAULT_NOT_PRESENT,
    FAULT_WRITE_ACCESS,
    record_failed_fault,
)
from pysvm.xe.vram import VramAllocation

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
GPU_REFAULTS: Final = 3


#: struct xe_vm_fault access_type of each ``gpu_access`` op (FAULT_ACCESS_TYPE_*).
ACCESS_BY_OP = {"read": ACCESS_READ, "write": ACCESS_WRITE, "atomic": ACCESS_ATOMIC}


def _bo_page(vma: Vma, a: int) -> tuple[str, int]:
    assert vma.bo is not None
    return vma.bo.name, (vma.offset + (a - vma.start)) // PAGE_SIZE


def _needs_fault(svm: Svm, vma: Vma, atomic: bool, bit: int) -> bool:
    """Whether the GPU faults on a BO/userptr VMA: no valid PTE on this tile, or an
    atomic through a PTE without the atomic-enable bit (xe_pt.c xe_pt_stage_bind():
    xe_atomic_for_vram() for a BO in VRAM, xe_atomic_for_system() for a BO in system
    memory and for a userptr's pages)."""
    if not vma.tile_present & ~vma.tile_invalidated & bit:
        return True
    if not atomic:
        return False
    in_vram = vma.bo is not None and vma.bo.is_vram
    return not pte_atomic(svm.device, vma, in_vram)


def _alloc_atomic(svm: Svm, vma: Vma, alloc: object) -> bool:
    """Whether the PTE of a CPU-mirror page whose ``alloc`` is ``alloc`` allows GPU
    atomics: it is "VRAM" only when the page is in this device's VRAM (xe_res_is_vram():
    XE_INTERCONNECT_VRAM; another device's VRAM is reached over P2P and counts as
    system). Kernel: xe_pt.c xe_pt_stage_bind_entry() (default_vram_pte /
    default_system_pte)."""
    dev = alloc.device if isinstance(alloc, VramAllocation) else None
    return pte_atomic(svm.device, vma, dev is svm.device)


def _why_no_atomic(svm: Svm, vma: Vma, reasons: list[str]) -> str:
    """Why a refault loop cannot end: the VRAM move failed, or nothing would set the bit
    (an integrated device: xe_vma_need_vram_for_atomic() is 0 without IS_DGFX, and the
    rebind uses the same xe_atomic_for_system() answer)."""
    if svm.device.discrete:
        return (f"it cannot be moved to {svm.device.name}'s VRAM: "
                + ("; ".join(reasons[-3:]) or "the attribute does not ask for VRAM"))
    return (f"atomic attribute {vma.attr.atomic_access} on integrated {svm.device.name}: "
            "xe_atomic_for_system() refuses it and the handler sees nothing to migrate")


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
        page = svm.mm.hmm_range_fault(cpu, cpu + PAGE_SIZE, write=op != "read", owner=None).pages[0]
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


def gpu_access(svm: Svm, addr: int, size: int, op: str, value: int = 0,
               tile: int = 0) -> dict[str, object]:
    """The device's tile ``tile`` reads, writes or atomically increments
    ``[addr, addr+size)``.

    The access runs on that tile's GT: its PTEs are the tile's (``tile_present`` bit
    ``tile``), and a fault arrives for that GT (xe_pagefault.c: gt_to_tile()), so the
    handler validates, migrates to and rebinds on that tile
    (xe_svm_handle_pagefault(vm, vma, gt, ...)). A tile the device lacks is EINVAL.

    Kernel: the GPU's view: a missing or invalidated PTE raises a page fault
    (xe_pagefault -> xe_svm_handle_pagefault for CPU-mirror VMAs); an atomic through
    a PTE without the atomic-enable bit faults too (xe_pt.c, :mod:`pysvm.xe.pt`). No
    VMA -> EINVAL; a write to a read-only VMA -> EPERM (xe_pagefault's access check).
    A fault the handler reports as serviced but that leaves the access still faulting
    (the atomic bit cannot be set) repeats; after :data:`GPU_REFAULTS` rounds the
    access fails with ETIME (the GPU job timing out).
    """
    if op not in ("read", "write", "atomic"):
        raise XeError(errno.EINVAL, f"gpu_access op {op!r}: choose read, write or atomic")
    if size <= 0 or addr % PAGE_SIZE or size % PAGE_SIZE:
        raise XeError(errno.EINVAL, f"gpu_access [{addr:#x}, +{size:#x}) must be 4 KiB "
                      "aligned and non-empty")
    check_access_size(size, "gpu_access", reads=op == "read")
    svm.device.check_tile(tile, "gpu_access")
    vm = svm.vm
    faults = retries = 0
    data: list[int] = []
    atomic = op == "atomic"
    bit = 1 << tile
    a = addr
    end = addr + size
    pf_type: int | None = None      # the kind of the fault being serviced, if any
    try:
        while a < end:
            # The GPU walks its page tables: a killed (banned) VM keeps them
            # (xe_vm_kill() stops exec queues only), so mapped pages still work.
            vma = vm.vma_at(a)
            if vma is None:
                pf_type = FAULT_NOT_PRESENT
                raise XeError(errno.EINVAL, f"GPU access at {a:#x}: no VMA")
            if op != "read" and vma.read_only():
                pf_type = FAULT_WRITE_ACCESS
                raise XeError(errno.EPERM, f"GPU {op} at {a:#x}: VMA is read-only")
            if not vma.is_cpu_addr_mirror():
                if vma.is_null():
                    if op == "read":
                        data.append(0)
                    a += PAGE_SIZE
                    continue
                spins = 0
                while _needs_fault(svm, vma, atomic, bit):
                    if spins >= GPU_REFAULTS:
                        # xe_pagefault_handle_vma() rebinds an atomic fault every time,
                        # but the rebind computes the same atomic-enable bit (xe_pt.c):
                        # the GPU faults again until the job times out.
                        raise XeError(errno.ETIME, f"GPU atomic at {a:#x} faulted {spins} "
                                      "times: the fault handler rebinds the VMA but its PTE "
                                      "still lacks the atomic-enable bit "
                                      f"({_why_no_atomic(svm, vma, [])}); the GPU job would "
                                      "time out")
                    spins += 1
                    faults += 1
                    pf_type = (FAULT_NOT_PRESENT
                               if not vma.tile_present & ~vma.tile_invalidated & bit
                               else FAULT_ATOMIC_ACCESS)
                    found = _fault_lookup(svm, a)
                    if found.is_cpu_addr_mirror():   # the cache answered another VMA
                        raise XeError(errno.EINVAL, f"GPU fault at {a:#x}: lookup found a "
                                      "different VMA")
                    handle_vma(svm, found, a, atomic, tile)
                    remember_fault_vma(svm, found)
                _data_access(svm, vma, a, op, value, data)
                a += PAGE_SIZE
                continue
            spins = 0
            last_reasons: list[str] = []
            # Does ``vma`` still hold ``a`` as the page tables see it (``vm.vma_at(a) is
            # vma``)? Yes while no fault ran: it was just looked up that way.
            span_ok = True
            while True:
                r = svm.gpusvm.range_find(a)
                valid = r is not None and r.is_valid(tile, False)
                ok = valid
                if ok and atomic and r is not None and r.pages is not None:
                    # A mapped page still faults for an atomic when its PTE lacks the
                    # atomic-enable bit (xe_pt.c); the handler decides what happens.
                    ok = _alloc_atomic(svm, vma,
                                       r.pages.runs[(a - r.start) >> PAGE_SHIFT].alloc)
                if ok:
                    break
                if spins >= GPU_REFAULTS:
                    if atomic and r is not None and r.is_valid(tile, False):
                        # The kernel's answer, not a model bug: see GPU_REFAULTS.
                        raise XeError(errno.ETIME, f"GPU atomic at {a:#x} faulted {spins} "
                                      "times: the fault handler reports the range bound, "
                                      "but its PTE still lacks the atomic-enable bit "
                                      f"({_why_no_atomic(svm, vma, last_reasons)}), so the "
                                      "atomic faults again; the GPU job would time out")
                    raise RuntimeError(f"model bug: fault at {a:#x} reported success "
                                       f"{spins} times but the mapping is still invalid")
                spins += 1
                faults += 1
                pf_type = FAULT_ATOMIC_ACCESS if valid else FAULT_NOT_PRESENT
                if vm.killed:
                    vma = _fault_lookup(svm, a)
                st = handle_pagefault(svm, vma, a, atomic, tile)
                remember_fault_vma(svm, vma)
                last_reasons = st.reasons
                retries += st.retries
                after = vm.find_vma_by_addr(a)
                if after is not None and not vm.killed:
                    # A live VM's lookup answers the VMA of the tree holding page ``a`` (the
                    # cached one only if it is still in the tree and holds it; VMAs are
                    # page aligned and do not overlap): the one vm.vma_at(a) finds.
                    vma = after
                    span_ok = True
                else:
                    vma = after or vma
                    span_ok = vm.vma_at(a) is vma
            assert r is not None and r.pages is not None
            # Every further page of this range inside this VMA would find the same VMA and
            # the same valid range without faulting (nothing changes between them), so
            # serve the whole span at once: one lookup per range, not per page.
            span_end = min(end, r.end, vma.end) if span_ok else a + 1
            i = (a - r.start) >> PAGE_SHIFT
            j = i + max((span_end - a) >> PAGE_SHIFT, 1)
            pages = r.pages
            if atomic and not r.pages_uniform:
                # stop the span before the first page whose PTE refuses the atomic: it
                # faults on the next round (the page at ``i`` was checked above). The
                # answer depends only on the page's allocation, so ask once per distinct
                # allocation and walk the pages only when one of them refuses. (A range
                # whose pages are all of one allocation, or all system pages, answers as
                # the page at ``i`` did: no look needed.)
                refused = {al for al in pages.allocs(i + 1, j)
                           if not _alloc_atomic(svm, vma, al)}
                if refused:
                    runs = pages.runs
                    for k in range(i + 1, j):
                        if runs[k].alloc in refused:
                            j = k
                            break
            if op == "read":
                data.extend(pages.read(i, j))
            elif op == "write":
                pages.write(i, j, value)
            else:
                pages.increment(i, j)
            a += (j - i) << PAGE_SHIFT
    except XeError as e:
        if isinstance(e, FaultError):
            retries += e.stats.retries
        if pf_type is not None and e.errno != errno.ETIME:
            # 7.0: the failed fault is saved on the VM (xe_pagefault_queue_work() ->
            # xe_pagefault_save_to_vm()); ETIME is the job timing out after faults that
            # each succeeded, so nothing is saved for it
            record_failed_fault(vm, a, ACCESS_BY_OP[op], pf_type)
        e.details.update(faults=faults, retries=retries, fault_addr=a)
        raise
    out: dict[str, object] = {"faults": faults, "retries": retries}
    if op == "read":
        out["data"] = data
    return out
