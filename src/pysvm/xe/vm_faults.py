"""The per-VM list of failed GPU page faults and DRM_IOCTL_XE_VM_GET_PROPERTY(FAULTS).

Kernel (7.0 only; 6.18 has neither the list nor the ioctl):

* drivers/gpu/drm/xe/xe_pagefault.c xe_pagefault_queue_work(): when
  xe_pagefault_service() fails (and the access is not a prefetch),
  xe_pagefault_save_to_vm() looks the VM up by ASID - any VM, fault mode or not - and
  calls xe_vm_add_fault_entry_pf() (xe_vm.c), which appends an entry (address, 4 KiB
  precision, access type, fault type, fault level) to ``vm->faults.list`` unless the
  list already holds MAX_FAULTS_SAVED_PER_VM (50) entries: later faults are dropped.
  A fault that succeeds is not recorded. The list is only emptied when the VM is
  closed (xe_vm_clear_fault_entries()); reading it does not consume it.
* xe_vm.c xe_vm_get_property_ioctl(): non-zero ``reserved[0..2]``, ``extensions`` or
  ``pad`` -> EINVAL; no VM with this id -> ENOENT (not EINVAL as in bind or madvise);
  xe_vm_get_property_helper(): a property other than FAULTS -> EINVAL; ``size == 0``
  -> ``size`` becomes ``sizeof(struct xe_vm_fault) * len`` (the count call);
  otherwise ``size`` larger than that or not a multiple of the entry size -> EINVAL;
  fill_faults() copies the first ``size / entry`` entries, oldest first, and a
  ``copy_to_user()`` that faults is EFAULT. The address is canonicalised
  (xe_device_canonicalize_addr(): sign extension from bit va_bits - 1).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pysvm.errors import XeError

if TYPE_CHECKING:
    from pysvm.xe.vm import Vm

__all__ = ["FaultEntry", "MAX_FAULTS_SAVED_PER_VM", "FAULT_ENTRY_SIZE", "PROPERTY_FAULTS",
           "ACCESS_READ", "ACCESS_WRITE", "ACCESS_ATOMIC", "FAULT_NOT_PRESENT",
           "FAULT_WRITE_ACCESS", "FAULT_ATOMIC_ACCESS", "record_failed_fault",
           "get_property"]

#: Kernel: xe_vm.h MAX_FAULTS_SAVED_PER_VM.
MAX_FAULTS_SAVED_PER_VM = 50
#: sizeof(struct xe_vm_fault) (xe_drm.h): u64 address, u32 address_precision, four u8
#: (access_type, fault_type, fault_level and one more byte), u64 reserved[4].
FAULT_ENTRY_SIZE = 48
#: Kernel: DRM_XE_VM_GET_PROPERTY_FAULTS.
PROPERTY_FAULTS = 0
#: struct xe_vm_fault access_type values (FAULT_ACCESS_TYPE_*), by ``gpu_access`` op.
ACCESS_READ, ACCESS_WRITE, ACCESS_ATOMIC = 0, 1, 2
#: struct xe_vm_fault fault_type values (FAULT_TYPE_*).
FAULT_NOT_PRESENT, FAULT_WRITE_ACCESS, FAULT_ATOMIC_ACCESS = 0, 1, 2
_PRECISION_4K = 4096
_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class FaultEntry:
    """One saved failed fault. Kernel: struct xe_vm_fault_entry (xe_vm_types.h).

    ``fault_level`` is the page-table level the walk stopped at; the model has no
    page-table levels and always reports 0 (the PTE level)."""

    address: int
    access_type: int
    fault_type: int
    fault_level: int = 0
    address_precision: int = _PRECISION_4K


def record_failed_fault(vm: Vm, address: int, access_type: int, fault_type: int) -> bool:
    """Save a failed fault on ``vm`` (7.0); False when not saved (6.18, or the list is
    full). Kernel: xe_pagefault_save_to_vm() -> xe_vm_add_fault_entry_pf()."""
    if not vm.profile.vm_get_property:
        return False
    if len(vm.fault_entries) >= MAX_FAULTS_SAVED_PER_VM:
        return False
    vm.fault_entries.append(FaultEntry(address & ~(_PRECISION_4K - 1), access_type,
                                       fault_type))
    return True


def _canonical(vm: Vm, addr: int) -> int:
    """Kernel: xe_device_canonicalize_addr(): sign_extend64(addr, va_bits - 1)."""
    top = vm.size.bit_length() - 2          # va_bits - 1
    if addr >> top & 1:
        addr |= _U64 & ~((1 << (top + 1)) - 1)
    return addr


def get_property(vm: Vm, prop: int, size: int, data: bool) -> dict[str, object]:
    """The helper and fill step of the ioctl on a VM already looked up.

    Kernel: xe_vm.c xe_vm_get_property_helper() and fill_faults(); the argument checks
    and the lookup are the caller's (xe_vm_get_property_ioctl())."""
    if prop != PROPERTY_FAULTS:
        raise XeError(errno.EINVAL, f"vm_get_property: unknown property {prop} "
                      f"(only {PROPERTY_FAULTS}, FAULTS)")
    total = FAULT_ENTRY_SIZE * len(vm.fault_entries)
    if size == 0:
        return {"size": total}
    if size > total or size % FAULT_ENTRY_SIZE:
        raise XeError(errno.EINVAL, f"vm_get_property: size {size} must be a multiple of "
                      f"{FAULT_ENTRY_SIZE} and at most {total} ({len(vm.fault_entries)} "
                      "saved faults)")
    if not data:
        raise XeError(errno.EFAULT, "vm_get_property: copy_to_user() to the data pointer "
                      "faulted")
    count = size // FAULT_ENTRY_SIZE
    faults = [{"address": _canonical(vm, e.address), "address_precision": e.address_precision,
               "access_type": e.access_type, "fault_type": e.fault_type,
               "fault_level": e.fault_level} for e in vm.fault_entries[:count]]
    return {"size": size, "faults": faults}
