"""Kernel profiles: where the modelled kernels behave differently.

``"6.18"`` is the v6.18 release (the default; its autoreset rule is still
6.18-rc1's); ``"7.0"`` is mainline as stored (multi-device pagemaps, neighbour
absorption, purgeable-state madvise); ``"newest"`` is an alias of the newest
modelled release. One code path consults these decisions; there are not two
copies of the driver. docs/profiles.md lists every difference with the kernel
commit and function behind it.

Kernel: no single counterpart; each field names the code that differs.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Profile", "PROFILES", "V6_18", "V7_0", "get_profile"]


@dataclass(frozen=True)
class Profile:
    """The set of kernel-version decisions the model consults."""

    name: str
    #: GC resets attributes only of VMAs flagged XE_VMA_MADV_AUTORESET; the
    #: DRM_XE_VM_BIND_FLAG_MADVISE_AUTORESET bind flag exists (both arrived
    #: together). Kernel: xe_svm_range_set_default_attr(), vm_bind_ioctl_check_args().
    autoreset_gating: bool
    #: xe_vm_find_cpu_addr_mirror_vma_range(): absorb default-attr mirror neighbours.
    absorb_neighbours: bool
    #: madvise preferred_loc may name another device's VRAM (devmem_fd > 0);
    #: preferred_mem_loc.pad is region_instance (MBZ unless devmem_fd > 0).
    #: Kernel: xe_madvise_details_init(), madvise_args_are_sane().
    multi_device: bool
    #: newest: UNMAP ops over live SVM ranges are allowed (ALLOW_SVM_UNMAP).
    allow_svm_unmap: bool
    #: newest: range lock + "removed" check in the fault loop.
    range_removed_check: bool
    #: madvise type DRM_XE_VMA_ATTR_PURGEABLE_STATE (3) exists.
    #: Kernel: madvise_args_are_sane(), madvise_purgeable().
    purgeable_type: bool = False
    #: madvise PAT: an integrated device refuses a COH_NONE PAT index over
    #: CPU-mirror / userptr VMAs. Kernel: check_pat_args_are_sane().
    igpu_coh_none_check: bool = False
    #: The fault handler stores the VMA of each serviced fault in
    #: vm->usm.last_fault_vma, and xe_vm_find_vma_by_addr() returns it first (also on
    #: a banned VM). Kernel: xe_pagefault_service() (6.18); gone in 7.0's
    #: xe_pagefault.c, which never writes the field.
    last_fault_vma_cache: bool = True


#: v6.18 (7d0a66e4) except one decision: the release already has
#: DRM_XE_VM_BIND_FLAG_MADVISE_AUTORESET and xe_svm_range_set_default_attr() skips VMAs
#: without XE_VMA_MADV_AUTORESET, while this profile keeps the 6.18-rc1 rule (torvalds
#: 002f817d xe_vm_madvise.c / 0131514f xe_svm.c: no flag, the GC resets every VMA).
#: docs/profiles.md records it as a known divergence.
V6_18 = Profile("6.18", autoreset_gating=False, absorb_neighbours=False, multi_device=False,
                allow_svm_unmap=False, range_removed_check=False, purgeable_type=False,
                igpu_coh_none_check=False, last_fault_vma_cache=True)
#: mainline as stored (docs/profiles.md lists the trees each decision was read from).
#: The last-fault-VMA cache stays on: the stored xe_vm.c (bvanassche 84bd6185) still
#: reads and clears vm->usm.last_fault_vma while the newest stored xe_pagefault.c never
#: writes it, and the two may not come from one tree (docs/profiles.md).
V7_0 = Profile("7.0", autoreset_gating=True, absorb_neighbours=True, multi_device=True,
               allow_svm_unmap=True, range_removed_check=True, purgeable_type=True,
               igpu_coh_none_check=True, last_fault_vma_cache=True)

#: Profiles by the name a trace's ``config`` gives; ``"newest"`` is an alias of the
#: newest modelled release.
PROFILES: dict[str, Profile] = {"6.18": V6_18, "7.0": V7_0, "newest": V7_0}


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (ValueError naming the choices otherwise)."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
