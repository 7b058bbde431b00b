"""Kernel profiles: where the modelled kernels behave differently.

``"6.18"`` is the Xe madvise series as merged for 6.18 (the default);
``"newest"`` is the newest code seen (multi-device pagemaps, AUTORESET,
neighbour absorption). One code path consults these decisions; there are not
two copies of the driver. See spec/KERNEL-SPEC.md sections 3-4.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Profile", "PROFILES", "get_profile"]


@dataclass(frozen=True)
class Profile:
    name: str
    #: GC resets attributes only of VMAs flagged XE_VMA_MADV_AUTORESET.
    autoreset_gating: bool
    #: xe_vm_find_cpu_addr_mirror_vma_range(): absorb default-attr mirror neighbours.
    absorb_neighbours: bool
    #: madvise preferred_loc may name another device's VRAM (devmem_fd > 0).
    multi_device: bool
    #: newest: UNMAP ops over live SVM ranges are allowed (ALLOW_SVM_UNMAP).
    allow_svm_unmap: bool
    #: newest: range lock + "removed" check in the fault loop.
    range_removed_check: bool


PROFILES: dict[str, Profile] = {
    "6.18": Profile("6.18", autoreset_gating=False, absorb_neighbours=False, multi_device=False,
                    allow_svm_unmap=False, range_removed_check=False),
    "newest": Profile("newest", autoreset_gating=True, absorb_neighbours=True, multi_device=True,
                      allow_svm_unmap=True, range_removed_check=True),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
