"""Xe VMAs: a gpuva plus XE_VMA_* flags and memory attributes.

Kernel: struct xe_vma (drivers/gpu/drm/xe/xe_vm_types.h).
"""

from __future__ import annotations

from enum import IntFlag
from typing import TYPE_CHECKING, Final

from pysvm.xe.attr import VmaMemAttr

if TYPE_CHECKING:
    from pysvm.mm.mmap import Mm
    from pysvm.mm.mmu_notifier import IntervalNotifier
    from pysvm.xe.bo import Bo
    from pysvm.xe.vm import Vm

__all__ = ["VmaFlag", "Vma", "CREATE_MASK", "FLAG_NAMES"]

_USERBITS: Final = 1 << 2  # DRM_GPUVA_USERBITS


class VmaFlag(IntFlag):
    """gpuva flags with the kernel's bit values. Kernel: DRM_GPUVA_* and XE_VMA_*."""

    INVALIDATED = 1 << 0          # DRM_GPUVA_INVALIDATED
    SPARSE = 1 << 1               # DRM_GPUVA_SPARSE (Xe: a NULL binding)
    READ_ONLY = _USERBITS << 0
    DESTROYED = _USERBITS << 1
    ATOMIC_PTE_BIT = _USERBITS << 2
    PTE_4K = _USERBITS << 3
    PTE_2M = _USERBITS << 4
    PTE_1G = _USERBITS << 5
    PTE_64K = _USERBITS << 6
    PTE_COMPACT = _USERBITS << 7
    DUMPABLE = _USERBITS << 8
    SYSTEM_ALLOCATOR = _USERBITS << 9   # the CPU-address-mirror kind
    MADV_AUTORESET = _USERBITS << 10    # newest only
    CPU_ADDR_MIRROR = _USERBITS << 9    # the same value: an alias of SYSTEM_ALLOCATOR


#: Kernel: XE_VMA_CREATE_MASK -- flags carried to VMAs that replace a VMA.
CREATE_MASK = (VmaFlag.READ_ONLY | VmaFlag.DUMPABLE | VmaFlag.SYSTEM_ALLOCATOR
               | VmaFlag.SPARSE | VmaFlag.MADV_AUTORESET)

#: Trace names of the flags a query reports, in output order.
# Plain-int masks for the predicates on the fault path: ``int.__and__`` on the IntFlag
# value skips enum's __and__ (which builds a new flag object per test).
_SYSTEM_ALLOCATOR: Final = int(VmaFlag.SYSTEM_ALLOCATOR)
_SPARSE: Final = int(VmaFlag.SPARSE)
_READ_ONLY: Final = int(VmaFlag.READ_ONLY)
_MADV_AUTORESET: Final = int(VmaFlag.MADV_AUTORESET)
_and = int.__and__

FLAG_NAMES: tuple[tuple[VmaFlag, str], ...] = (
    (VmaFlag.SYSTEM_ALLOCATOR, "cpu_addr_mirror"),
    (VmaFlag.SPARSE, "null"),
    (VmaFlag.READ_ONLY, "read_only"),
    (VmaFlag.MADV_AUTORESET, "autoreset"),
    (VmaFlag.DUMPABLE, "dumpable"),
)


class Vma:
    """One VMA of a VM. Kernel: struct xe_vma.

    ``addr``/``range`` are gpuva.va; ``bo``/``offset`` gpuva.gem (for a
    userptr VMA ``offset`` is the CPU address, as the kernel keeps it in
    gem.offset); ``flags`` gpuva.flags (:class:`VmaFlag`); ``attr`` the
    xe_vma_mem_attr; ``skip_invalidation``, ``tile_present`` and
    ``tile_invalidated`` the fields of the same names.
    """

    __slots__ = ("vm", "addr", "range", "start", "end", "bo", "offset", "flags", "attr",
                 "userptr", "skip_invalidation", "tile_present", "tile_invalidated",
                 "purgeable", "notifier")

    def __init__(self, vm: Vm, addr: int, range: int, bo: Bo | None, offset: int,  # noqa: A002
                 flags: VmaFlag, attr: VmaMemAttr, *, userptr: bool = False) -> None:
        self.vm = vm
        # A VMA's span is fixed at creation (a split or merge makes new VMAs, as
        # drm_gpuvm's remap does), so its ends are stored, not computed on each read.
        self.addr = addr
        self.range = range
        #: Kernel: xe_vma_start().
        self.start = addr
        #: Kernel: xe_vma_end() (exclusive).
        self.end = addr + range
        self.bo = bo
        self.offset = offset
        self.flags = flags
        self.attr = attr
        self.userptr = userptr
        self.skip_invalidation = False
        self.tile_present = 0
        self.tile_invalidated = 0
        #: 7.0: this VMA's purgeable state (0 WILLNEED, 1 DONTNEED); new VMAs are
        #: WILLNEED (vm_bind_ioctl_ops_parse()), split pieces inherit it.
        self.purgeable = 0
        #: a userptr VMA's MMU interval notifier over its CPU range while it is in the
        #: VM's tree (xe_userptr.c xe_userptr_setup() / xe_userptr_remove()); None else.
        self.notifier: IntervalNotifier | None = None

    def is_cpu_addr_mirror(self) -> bool:
        """Kernel: xe_vma_is_cpu_addr_mirror()."""
        return _and(self.flags, _SYSTEM_ALLOCATOR) != 0

    def is_null(self) -> bool:
        """Kernel: xe_vma_is_null()."""
        return _and(self.flags, _SPARSE) != 0

    def is_userptr(self) -> bool:
        """Kernel: xe_vma_is_userptr()."""
        return self.userptr

    def userptr_pin_pages(self, mm: Mm) -> None:
        """Fault in the CPU pages this userptr VMA maps (``offset`` is their address).

        Kernel: xe_userptr.c xe_vma_userptr_pin_pages(): drm_gpusvm_get_pages() with
        ``ctx.read_only = xe_vma_read_only(vma)`` and no device page owner, so it asks
        for write access unless the VMA is read-only (the pages it populates are dirty)
        and device pages come back to system memory first. Raises XeError: EFAULT where
        no CPU VMA is, EPERM for a writable VMA over read-only memory.
        """
        mm.hmm_range_fault(self.offset, self.offset + self.range,
                           write=not self.read_only(), owner=None)

    def read_only(self) -> bool:
        """Kernel: xe_vma_read_only()."""
        return _and(self.flags, _READ_ONLY) != 0

    def madv_autoreset(self) -> bool:
        """Bound with DRM_XE_VM_BIND_FLAG_MADVISE_AUTORESET. Kernel: the
        XE_VMA_MADV_AUTORESET test of xe_svm_range_set_default_attr()."""
        return _and(self.flags, _MADV_AUTORESET) != 0

    def has_no_bo(self) -> bool:
        """Kernel: xe_vma_has_no_bo()."""
        return self.bo is None

    def has_default_mem_attrs(self) -> bool:
        """Kernel: xe_vma_has_default_mem_attrs()."""
        return self.attr.is_default()

    def reset_attrs(self) -> None:
        """Reset attributes in place (pat_index := default_pat_index).

        Kernel: the attribute reset in xe_svm_range_set_default_attr().
        """
        pat = self.attr.default_pat_index
        self.attr.release()
        self.attr = VmaMemAttr.default(pat)

    def flag_names(self) -> list[str]:
        """The trace names of this VMA's flags, in :data:`FLAG_NAMES` order."""
        return [name for bit, name in FLAG_NAMES if _and(self.flags, bit)]

    def __repr__(self) -> str:
        return (f"Vma({self.addr:#x}+{self.range:#x} flags={self.flag_names()} "
                f"bo={self.bo.name if self.bo else None})")
