"""The atomic-enable (AE) bit of the GPU page-table entries a bind writes.

Kernel: drivers/gpu/drm/xe/xe_pt.c. xe_vma_create() (xe_vm.c) flags every VMA with
XE_VMA_ATOMIC_PTE_BIT on a device whose ``info.has_atomic_enable_pte_bit`` is set (the
modelled device is an Xe2 part: xe_pci.c XE2_GFX_FEATURES sets it, as PVC's descriptor
does), and
xe_pt_stage_bind() then ORs XE_USM_PPGTT_PTE_AE into a leaf PTE only where
xe_atomic_for_vram() (the page is in this device's VRAM) or xe_atomic_for_system()
(anything else: system memory, or another device's VRAM reached over P2P, which
xe_res_is_vram() does not count as VRAM) allows it. A GPU atomic through a PTE
without the bit raises a page fault even though the page is mapped; the fault
handler then decides (xe_svm_handle_pagefault() / xe_pagefault_handle_vma() with
xe_vma_need_vram_for_atomic()).

The bit is computed here from the VMA's current attribute and placement when the GPU
accesses the page, not stored at bind time: every change of ``attr.atomic_access``
that madvise makes also zaps the VMA's PTEs (madvise_atomic() clears
``skip_invalidation`` exactly when the value changes, then
xe_vm_invalidate_madvise_range()), so the next access rebinds with the new attribute
anyway, and a range or BO that changes placement is rebound too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pysvm.xe.attr import AtomicAccess

if TYPE_CHECKING:
    from pysvm.xe.device import Device
    from pysvm.xe.vma import Vma

__all__ = ["atomic_for_vram", "atomic_for_system", "pte_atomic"]

_CPU = int(AtomicAccess.CPU)
_DEVICE = int(AtomicAccess.DEVICE)


def atomic_for_vram(vma: Vma) -> bool:
    """AE on a PTE into this device's VRAM: always, unless the VMA's atomic attribute
    is CPU. Kernel: xe_pt.c xe_atomic_for_vram()."""
    return vma.attr.atomic_access != _CPU


def atomic_for_system(device: Device, vma: Vma, lr_mode: bool = True) -> bool:
    """AE on a PTE into system memory.

    Kernel: xe_pt.c xe_atomic_for_system(): never without
    ``has_device_atomics_on_smem`` (``Device.smem_atomics``) or when the VMA's attribute
    is CPU; always when it is DEVICE; otherwise (UNDEFINED, GLOBAL) on an integrated
    device, in a VM that is not in long-running mode, or for a BO with a single
    placement. Every VM that can fault is in LR mode (xe_vm_create_ioctl() refuses
    FAULT_MODE without LR_MODE), which is what ``lr_mode`` defaults to.
    """
    atomic = vma.attr.atomic_access
    if not device.smem_atomics or atomic == _CPU:
        return False
    if atomic == _DEVICE:
        return True
    bo = vma.bo
    return (not device.discrete or not lr_mode
            or (bo is not None and len(set(bo.placements)) == 1))


def pte_atomic(device: Device, vma: Vma, in_vram: bool) -> bool:
    """Whether a PTE of ``vma`` into VRAM of ``device`` (``in_vram``) or elsewhere
    carries the AE bit. Kernel: xe_pt_stage_bind() (default_vram_pte /
    default_system_pte, both gated on XE_VMA_ATOMIC_PTE_BIT)."""
    if in_vram:
        return atomic_for_vram(vma)
    return atomic_for_system(device, vma)
