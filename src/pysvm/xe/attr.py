"""Xe uapi constants and per-VMA memory attributes.

Every number here was checked against the kernel's uapi header
(include/uapi/drm/xe_drm.h; the newest copy read is intel-gpu/igt-gpu-tools
436864374b include/drm-uapi/xe_drm.h, the merged bind flags also in
gregkh/linux 3394ade2 and intel-lab-lkp/linux 01254d40). The attribute record
mirrors ``struct xe_vma_mem_attr`` (drivers/gpu/drm/xe/xe_vm_types.h).

Kernel: include/uapi/drm/xe_drm.h, struct xe_vma_mem_attr.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pysvm.xe.pagemap import DevicePagemap

__all__ = [
    "MemRangeAttr",
    "PreferredLocFd",
    "MigrationPolicy",
    "AtomicAccess",
    "PurgeableState",
    "BindFlag",
    "BindOp",
    "XeIoctl",
    "CohMode",
    "PreferredLoc",
    "VmaMemAttr",
    "PAGE_SIZE",
    "CONSULT_MEM_ADVISE_PREF_LOC",
]

#: XE_PAGE_SIZE / SZ_4K: the alignment unit of bind and madvise.
PAGE_SIZE: Final = 4096

#: ``drm_xe_vm_bind_op.prefetch_mem_region_instance`` value meaning "prefetch to
#: the madvised preferred location". Kernel: DRM_XE_CONSULT_MEM_ADVISE_PREF_LOC (-1).
CONSULT_MEM_ADVISE_PREF_LOC: Final = -1


class XeIoctl(IntEnum):
    """Xe ioctl command numbers (offsets from DRM_COMMAND_BASE).

    Kernel: DRM_XE_* in xe_drm.h (DRM_IOCTL_XE_MADVISE is DRM_XE_MADVISE,
    DRM_IOCTL_XE_VM_QUERY_MEM_RANGE_ATTRS is DRM_XE_VM_QUERY_MEM_RANGE_ATTRS).
    """

    DEVICE_QUERY = 0x00
    GEM_CREATE = 0x01
    GEM_MMAP_OFFSET = 0x02
    VM_CREATE = 0x03
    VM_DESTROY = 0x04
    VM_BIND = 0x05
    EXEC_QUEUE_CREATE = 0x06
    EXEC_QUEUE_DESTROY = 0x07
    EXEC_QUEUE_GET_PROPERTY = 0x08
    EXEC = 0x09
    WAIT_USER_FENCE = 0x0A
    OBSERVATION = 0x0B
    MADVISE = 0x0C
    VM_QUERY_MEM_RANGE_ATTRS = 0x0D


class MemRangeAttr(IntEnum):
    """``drm_xe_madvise.type``. Kernel: DRM_XE_MEM_RANGE_ATTR_* and
    DRM_XE_VMA_ATTR_PURGEABLE_STATE (3, newest uapi only; the model checks its
    arguments but does not model purging, see docs/model.md).
    """

    PREFERRED_LOC = 0
    ATOMIC = 1
    PAT = 2
    PURGEABLE_STATE = 3


class PreferredLocFd(IntEnum):
    """Special ``devmem_fd`` values. Kernel: DRM_XE_PREFERRED_LOC_DEFAULT_*."""

    DEFAULT_DEVICE = 0
    DEFAULT_SYSTEM = -1


class MigrationPolicy(IntEnum):
    """Kernel: DRM_XE_MIGRATE_ALL_PAGES / DRM_XE_MIGRATE_ONLY_SYSTEM_PAGES."""

    ALL_PAGES = 0
    ONLY_SYSTEM_PAGES = 1


class AtomicAccess(IntEnum):
    """Kernel: DRM_XE_ATOMIC_UNDEFINED / DEVICE / GLOBAL / CPU."""

    UNDEFINED = 0
    DEVICE = 1
    GLOBAL = 2
    CPU = 3


class PurgeableState(IntEnum):
    """``purge_state_val.val`` (newest uapi).

    Kernel: DRM_XE_VMA_PURGEABLE_STATE_WILLNEED / _DONTNEED.
    """

    WILLNEED = 0
    DONTNEED = 1


class BindFlag(IntFlag):
    """``drm_xe_vm_bind_op.flags``. Kernel: DRM_XE_VM_BIND_FLAG_*.

    CHECK_PXP took bit 4 when PXP was merged, so CPU_ADDR_MIRROR is bit 5 in
    every released header (patch mails before that rebase show 1 << 4).
    MADVISE_AUTORESET (bit 6) and DECOMPRESS (bit 7) exist only in the newest
    uapi. The model accepts neither CHECK_PXP nor DECOMPRESS in a bind.
    """

    READONLY = 1 << 0
    IMMEDIATE = 1 << 1
    NULL = 1 << 2
    DUMPABLE = 1 << 3
    CHECK_PXP = 1 << 4
    CPU_ADDR_MIRROR = 1 << 5
    MADVISE_AUTORESET = 1 << 6
    DECOMPRESS = 1 << 7


class BindOp(IntEnum):
    """``drm_xe_vm_bind_op.op``. Kernel: DRM_XE_VM_BIND_OP_*."""

    MAP = 0
    UNMAP = 1
    MAP_USERPTR = 2
    UNMAP_ALL = 3
    PREFETCH = 4


class CohMode(IntEnum):
    """Coherency mode of a PAT entry; 0 marks an invalid entry. Kernel: XE_COH_*.

    ``TWO_WAY`` is the 7.0 XE_COH_2WAY (xe_pat.h; 7.0 names 2 XE_COH_1WAY); v6.18 has
    no such mode, so an entry reporting it is above XE_COH_AT_LEAST_1WAY there and the
    bind / madvise checks refuse it (their XE_WARN_ON). Larger values are unknown in
    both releases.
    """

    INVALID = 0
    NONE = 1
    AT_LEAST_1WAY = 2
    TWO_WAY = 3


@dataclass
class PreferredLoc:
    """Where the VMA's pages should live. Kernel: xe_vma_mem_attr.preferred_loc.

    ``devmem_fd`` is the raw (signed) fd number the user gave; ``pagemap`` is
    the newest kernel's resolved drm_pagemap (a reference is held), else None.
    """

    devmem_fd: int = int(PreferredLocFd.DEFAULT_DEVICE)
    migration_policy: int = int(MigrationPolicy.ALL_PAGES)
    pagemap: DevicePagemap | None = None


@dataclass
class VmaMemAttr:
    """Memory attributes of one VMA. Kernel: struct xe_vma_mem_attr."""

    preferred_loc: PreferredLoc = field(default_factory=PreferredLoc)
    atomic_access: int = int(AtomicAccess.UNDEFINED)
    default_pat_index: int = 0
    pat_index: int = 0

    @classmethod
    def default(cls, pat_index: int) -> VmaMemAttr:
        """The attributes vm_bind_ioctl_ops_parse() gives every new MAP.

        Kernel: default_attr in vm_bind_ioctl_ops_parse().
        """
        return cls(PreferredLoc(), int(AtomicAccess.UNDEFINED), pat_index, pat_index)

    def copy(self) -> VmaMemAttr:
        """A copy taking its own pagemap reference. Kernel: xe_vma_mem_attr_copy()."""
        pm = self.preferred_loc.pagemap
        if pm is not None:
            pm.get()
        return VmaMemAttr(PreferredLoc(self.preferred_loc.devmem_fd,
                                       self.preferred_loc.migration_policy, pm),
                          self.atomic_access, self.default_pat_index, self.pat_index)

    def release(self) -> None:
        """Drop the pagemap reference. Kernel: xe_vma_mem_attr_fini()."""
        pm = self.preferred_loc.pagemap
        self.preferred_loc.pagemap = None
        if pm is not None:
            pm.put()

    def is_default(self) -> bool:
        """Kernel: xe_vma_has_default_mem_attrs() (the same four fields)."""
        return (self.atomic_access == AtomicAccess.UNDEFINED
                and self.pat_index == self.default_pat_index
                and self.preferred_loc.devmem_fd == PreferredLocFd.DEFAULT_DEVICE
                and self.preferred_loc.migration_policy == MigrationPolicy.ALL_PAGES)
