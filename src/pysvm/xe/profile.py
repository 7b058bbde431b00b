"""Kernel profiles: where the modelled kernels behave differently.

``"6.18"`` is the v6.18 release (the default); ``"7.0"`` is mainline as stored
(multi-device pagemaps, neighbour absorption, purgeable-state madvise, no last-fault
VMA cache, VM_GET_PROPERTY); ``"newest"`` is an alias of the newest
modelled release. One code path consults these decisions; there are not two
copies of the driver. docs/profiles.md lists every difference with the kernel
commit and function behind it.

Kernel: no single counterpart; each field names the code that differs.
"""

from __future__ import annotations

from dataclasses import dataclass

from pysvm.xe.attr import CohMode

__all__ = ["Profile", "PROFILES", "V6_18", "V7_0", "get_profile"]


@dataclass(frozen=True)
class Profile:
    """The set of kernel-version decisions the model consults."""

    name: str
    #: GC resets attributes only of VMAs flagged XE_VMA_MADV_AUTORESET; the
    #: DRM_XE_VM_BIND_FLAG_MADVISE_AUTORESET bind flag exists (both arrived
    #: together; v6.18 has them, 6.18-rc1 did not). Kernel:
    #: xe_svm_range_set_default_attr(), vm_bind_ioctl_check_args().
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
    #: a banned VM). Kernel: xe_pagefault_service() and xe_vm_find_vma_by_addr() (6.18);
    #: gone from both in 7.0 (xe_pagefault_service() never writes it,
    #: xe_vm_find_vma_by_addr() is xe_vm_find_overlapping_vma() alone).
    last_fault_vma_cache: bool = True
    #: DRM_XE_VM_BIND_FLAG_DECOMPRESS (bit 7) is in SUPPORTED_FLAGS (EOPNOTSUPP where
    #: compression is unavailable; unknown flag, EINVAL, before). Kernel:
    #: vm_bind_ioctl_check_args().
    decompress_flag: bool = False
    #: DRM_IOCTL_XE_VM_GET_PROPERTY exists and failed faults are saved per VM for its
    #: FAULTS property. Kernel: xe_vm_get_property_ioctl(), xe_pagefault_save_to_vm().
    vm_get_property: bool = False
    #: XE_COH_2WAY is a valid PAT coherency mode (above it: the WARN, EINVAL), and on a
    #: device with the optimised L2 flush userptr / CPU-mirror binds, imported BOs and
    #: madvise PAT over them need pat_index 19 or a 2-way entry. Kernel (84bd6185):
    #: vm_bind_ioctl_check_args(), xe_vm_bind_ioctl_validate_bo(); xe_vm_madvise.c
    #: madvise_args_are_sane(), xe_vm_madvise_ioctl(). 6.18: above AT_LEAST_1WAY is EINVAL.
    coh_2way: bool = False

    @property
    def max_coh_mode(self) -> int:
        """The largest PAT coherency mode the bind and madvise checks accept: XE_COH_2WAY
        with ``coh_2way`` (7.0), else XE_COH_AT_LEAST_1WAY (6.18). Kernel: the XE_WARN_ON
        in vm_bind_ioctl_check_args() and madvise_args_are_sane()."""
        return int(CohMode.TWO_WAY if self.coh_2way else CohMode.AT_LEAST_1WAY)


#: v6.18 (7d0a66e4). Its xe_svm.c xe_svm_range_set_default_attr() returns early for a VMA
#: without XE_VMA_MADV_AUTORESET and its xe_drm.h defines
#: DRM_XE_VM_BIND_FLAG_MADVISE_AUTORESET, so the GC resets only VMAs bound with that flag
#: (the 6.18-rc1 rule - no flag, every VMA reset - is not what the release does).
V6_18 = Profile("6.18", autoreset_gating=True, absorb_neighbours=False, multi_device=False,
                allow_svm_unmap=False, range_removed_check=False, purgeable_type=False,
                igpu_coh_none_check=False, last_fault_vma_cache=True, decompress_flag=False)
#: mainline as stored (docs/profiles.md lists the trees each decision was read from).
#: No last-fault-VMA cache: in one tree (kernel-patches/bpf) xe_vm.c 23930d50's
#: xe_vm_find_vma_by_addr() is a plain xe_vm_find_overlapping_vma() and xe_pagefault.c
#: 64455314's xe_pagefault_service() stores nothing (it takes vm->lock for reading).
V7_0 = Profile("7.0", autoreset_gating=True, absorb_neighbours=True, multi_device=True,
               allow_svm_unmap=True, range_removed_check=True, purgeable_type=True,
               igpu_coh_none_check=True, last_fault_vma_cache=False, decompress_flag=True,
               vm_get_property=True, coh_2way=True)

#: Profiles by the name a trace's ``config`` gives; ``"newest"`` is an alias of the
#: newest modelled release.
PROFILES: dict[str, Profile] = {"6.18": V6_18, "7.0": V7_0, "newest": V7_0}


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (ValueError naming the choices otherwise)."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
