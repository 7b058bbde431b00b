"""Kernel profiles: where the modelled kernels behave differently.

``"6.18"`` is the Xe madvise series as merged for 6.18 (the default);
``"newest"`` is the newest code seen (multi-device pagemaps, AUTORESET,
neighbour absorption). One code path consults these decisions; there are not
two copies of the driver. See docs/model.md for the kernel sources behind each
decision.

Kernel: no single counterpart; each field names the code that differs.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Profile", "PROFILES", "get_profile"]


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


PROFILES: dict[str, Profile] = {
    "6.18": Profile("6.18", autoreset_gating=False, absorb_neighbours=False, multi_device=False,
                    allow_svm_unmap=False, range_removed_check=False, purgeable_type=False,
                    igpu_coh_none_check=False),
    "newest": Profile("newest", autoreset_gating=True, absorb_neighbours=True, multi_device=True,
                      allow_svm_unmap=True, range_removed_check=True, purgeable_type=True,
                      igpu_coh_none_check=True),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (ValueError naming the choices otherwise)."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
