"""The Xe madvise ioctl: argument checks, VMA split, per-type effects, invalidation.

Kernel: drivers/gpu/drm/xe/xe_vm_madvise.c (torvalds 002f817d and 33fe111a
for "6.18", bvanassche 84bd6185 for "newest"); the split itself is
xe_vm_alloc_madvise_vma() in xe_vm.c (see :mod:`pysvm.xe.vm`).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pysvm.errors import XeError
from pysvm.xe.attr import (
    PAGE_SIZE,
    AtomicAccess,
    CohMode,
    MemRangeAttr,
    MigrationPolicy,
    PreferredLocFd,
    PurgeableState,
)

if TYPE_CHECKING:
    from pysvm.xe.device import Device
    from pysvm.xe.pagemap import DevicePagemap
    from pysvm.xe.vm import Vm
    from pysvm.xe.vma import Vma

__all__ = ["MadviseArgs", "madvise", "check_args", "check_retained", "purgeable_retained"]


@dataclass
class MadviseArgs:
    """The ioctl argument. Kernel: struct drm_xe_madvise (the union flattened).

    ``devmem_fd`` is the signed view of preferred_mem_loc.devmem_fd;
    ``region_instance`` is preferred_mem_loc's u16 after migration_policy
    (``pad`` in the 6.18 uapi, ``region_instance`` in the newest); ``pad`` is
    the u32 pad of atomic / pat_index / purge_state_val; ``union_reserved`` the
    member's trailing u64 (reserved, or purge_state_val.retained_ptr: all
    members share its offset, which is why 6.18 can check ``atomic.reserved``
    for a preferred_loc request); ``reserved`` = reserved[2]; ``val`` is
    atomic.val / pat_index.val / purge_state_val.val.
    """

    start: int
    range: int
    type: int
    devmem_fd: int = 0
    migration_policy: int = 0
    region_instance: int = 0
    val: int = 0
    pad: int = 0
    union_reserved: int = 0
    reserved: tuple[int, int] = (0, 0)
    # -- the purgeable retained pointer (7.0; only read when union_reserved != 0) --
    #: the u32 the pointer holds before the call (the kernel requires 0)
    retained_init: int = 0
    #: "read": get_user() faults; "write": the pointer reads but put_user() faults
    retained_fault: str = ""


def check_args(vm: Vm, a: MadviseArgs) -> None:
    """Raise EINVAL for the first insane argument, in the kernel's order.

    Order: start aligned, range aligned, range >= 4 KiB, the per-type checks
    (preferred_loc: fd >= -1, [newest] region_instance only with fd > 0,
    policy <= 1, [6.18] pad, reserved; atomic: val <= CPU, pad, reserved;
    pat: index in the table, entry not reserved, coherency mode known, pad,
    reserved; [newest] purgeable: val WILLNEED/DONTNEED, pad), unknown type,
    then reserved[0..1]. Nothing is changed. Kernel: madvise_args_are_sane().
    """
    prof = vm.profile

    def bad(msg: str) -> XeError:
        return XeError(errno.EINVAL, f"madvise: {msg}")

    if a.start % PAGE_SIZE:
        raise bad(f"start {a.start:#x} is not 4 KiB aligned")
    if a.range % PAGE_SIZE:
        raise bad(f"range {a.range:#x} is not 4 KiB aligned")
    if a.range < PAGE_SIZE:
        raise bad("range is smaller than 4 KiB")
    if a.type == MemRangeAttr.PREFERRED_LOC:
        if a.devmem_fd < PreferredLocFd.DEFAULT_SYSTEM:
            raise bad(f"devmem_fd {a.devmem_fd} < -1")
        if prof.multi_device and a.devmem_fd <= 0 and a.region_instance:
            raise bad("region_instance must be 0 unless devmem_fd names a device")
        if a.migration_policy > MigrationPolicy.ONLY_SYSTEM_PAGES:
            raise bad(f"migration_policy {a.migration_policy} > 1")
        if not prof.multi_device and a.region_instance:
            raise bad("preferred_mem_loc.pad must be 0")
        if a.union_reserved:
            raise bad("preferred_mem_loc.reserved must be 0")
    elif a.type == MemRangeAttr.ATOMIC:
        if a.val > AtomicAccess.CPU:
            raise bad(f"atomic val {a.val} > {int(AtomicAccess.CPU)}")
        if a.pad:
            raise bad("atomic.pad must be 0")
        if a.union_reserved:
            raise bad("atomic.reserved must be 0")
    elif a.type == MemRangeAttr.PAT:
        dev = vm.device
        if a.val >= dev.n_pat_entries:
            # newest: an explicit check; 6.18 reads past the PAT table here
            # (WARN_ON only) -- the model refuses instead (docs/model.md).
            raise bad(f"pat_index {a.val} >= {dev.n_pat_entries} entries")
        coh = dev.pat_coh_mode(a.val)
        if coh == CohMode.INVALID:
            raise bad(f"pat_index {a.val} is a reserved PAT entry")
        if coh > prof.max_coh_mode:
            raise bad(f"pat_index {a.val} has an unknown coherency mode {coh}")
        if a.pad:
            raise bad("pat_index.pad must be 0")
        if a.union_reserved:
            raise bad("pat_index.reserved must be 0")
    elif a.type == MemRangeAttr.PURGEABLE_STATE and prof.purgeable_type:
        if a.val not in (PurgeableState.WILLNEED, PurgeableState.DONTNEED):
            raise bad(f"purgeable state {a.val} is neither WILLNEED (0) nor DONTNEED (1)")
        if a.pad:
            raise bad("purge_state_val.pad must be 0")
    else:
        raise bad(f"unknown attribute type {a.type}")
    if a.reserved[0] or a.reserved[1]:
        raise bad("reserved[] must be 0")


def _resolve_pagemap(vm: Vm, a: MadviseArgs) -> tuple[Device | None, DevicePagemap | None]:
    """Newest: the device and pagemap named by (devmem_fd > 0, region_instance), the
    pagemap referenced (the caller puts it when the ioctl ends).

    Kernel: xe_devmem_fd_to_dpagemap() / the owner check in xe_vm_madvise_ioctl().
    """
    host = vm.host
    dev = host.device_by_fd(a.devmem_fd)
    if dev is None:
        raise XeError(errno.ENOENT, f"madvise: devmem_fd {a.devmem_fd} is not an xe device file")
    # Kernel order (xe_drm_pagemap_from_fd): the file is checked, then the device must
    # still be present (drm_dev_enter: ENODEV), then the region (xe_devmem_open: ENOENT).
    if dev.unbound:
        raise XeError(errno.ENODEV, f"madvise: device {dev.name} is unbound")
    # xe_svm.c xe_devmem_open(): tile_id = region_instance - 1 must be < info.tile_count
    # (ENOENT; region_instance 0 wraps to a huge tile_id) and the tile a VRAM region of
    # mem_region_mask (ENOENT)
    if a.region_instance == 0 or a.region_instance - 1 >= dev.tiles:
        raise XeError(errno.ENOENT, f"madvise: device {dev.name} has no VRAM region_instance "
                      f"{a.region_instance} (VRAM tiles are 1-based"
                      + (f"; it has {dev.tiles} tiles)" if dev.tiles > 1 else ")"))
    if not dev.discrete or dev.vram_bytes == 0:
        raise XeError(errno.ENOENT, f"madvise: device {dev.name} has no VRAM")
    pm = dev.tile_pagemap(a.region_instance - 1)
    if pm is not None and not pm.populate_allowed():
        raise XeError(errno.ENODEV, f"madvise: device {dev.name}'s pagemap is going away")
    own = vm.device
    # xe_devmem_open() -> xe_pagemap_find_or_create(): the target pagemap is found or made
    # (a new one joins the owner list in xe_pagemap_create()) and referenced; the caller
    # holds that reference to the end of the ioctl (xe_madvise_details_fini())
    if pm is not None:
        pm.get()
    # xe_madvise_details_init(): the pagemap's owner against the VM's (vm->svm.peer.owner,
    # the group the VM joined in xe_svm_init(), in creation order)
    peer = vm.svm.peer if vm.svm is not None else None
    if peer is not None:
        mine = peer.owner
    else:
        mine = own.pagemap.owner if own.pagemap is not None else None
    theirs = pm.owner if pm is not None else None
    same = (mine is theirs) if (mine is not None and theirs is not None) else host.linked(
        own.name, dev.name)
    # Only a fault-mode VM joins an owner group (xe_svm_init() calls
    # drm_pagemap_acquire_owner() in its XE_VM_FLAG_FAULT_MODE branch); a non-fault VM's
    # vm->svm.peer.owner stays NULL, which no device pagemap's owner equals.
    if not vm.fault_mode:
        same = False
    if not same:
        # The kernel decides this only after xe_devmem_open() found or created the
        # target pagemap, and then drops that reference: a refused call can leave an
        # idle pagemap in the target's cache.
        if pm is not None:
            pm.put()
        why = (f"VM {vm.name} is not in fault mode, so it joined no owner group"
               if not vm.fault_mode else "no interconnect")
        raise XeError(errno.ENOLINK, f"madvise: {dev.name}'s VRAM is not in {own.name}'s "
                      f"pagemap owner group ({why})")
    return dev, pm


def _preferred_loc(vm: Vm, vmas: list[Vma], a: MadviseArgs, pm: DevicePagemap | None) -> None:
    """Kernel: madvise_preferred_mem_loc()."""
    for v in vmas:
        loc = v.attr.preferred_loc
        if not v.is_cpu_addr_mirror() or (loc.devmem_fd == a.devmem_fd
                                          and loc.migration_policy == a.migration_policy):
            v.skip_invalidation = True
            continue
        v.skip_invalidation = False
        loc.devmem_fd = a.devmem_fd
        loc.migration_policy = a.migration_policy
        if vm.profile.multi_device:
            old = loc.pagemap
            if pm is not None:
                pm.get()
            loc.pagemap = pm
            if old is not None:
                old.put()


def _atomic(vm: Vm, vmas: list[Vma], a: MadviseArgs) -> None:
    """Kernel: madvise_atomic()."""
    smem_atomics = vm.device.smem_atomics
    for v in vmas:
        if v.is_userptr() and not (a.val == AtomicAccess.DEVICE and smem_atomics):
            v.skip_invalidation = True
            continue
        v.skip_invalidation = v.attr.atomic_access == a.val
        v.attr.atomic_access = a.val
        bo = v.bo
        if bo is None or bo.atomic_access == a.val:
            continue
        v.skip_invalidation = False
        bo.atomic_access = a.val
        if bo.is_vram and a.val in (AtomicAccess.CPU, AtomicAccess.GLOBAL):
            bo.cpu_unmaps += 1   # ttm_bo_unmap_virtual(): next CPU access migrates


def _pat(vmas: list[Vma], a: MadviseArgs) -> None:
    """Kernel: madvise_pat_index()."""
    for v in vmas:
        if v.attr.pat_index == a.val:
            v.skip_invalidation = True
        else:
            v.skip_invalidation = False
            v.attr.pat_index = a.val


def _check_bo_atomic(vm: Vm, vmas: list[Vma], val: int) -> None:
    """Kernel: check_bo_args_are_sane()."""
    for v in vmas:
        bo = v.bo
        if bo is None:
            continue
        if val == AtomicAccess.CPU and not bo.flag_system:
            raise XeError(errno.EINVAL, f"madvise: atomic CPU needs a system placement "
                          f"(BO {bo.name})")
        if val == AtomicAccess.DEVICE and not bo.flag_vram and not (
                bo.flag_system and vm.device.smem_atomics):
            raise XeError(errno.EINVAL, f"madvise: atomic DEVICE needs a VRAM placement or "
                          f"device atomics on system memory (BO {bo.name})")
        if val == AtomicAccess.GLOBAL and not (bo.flag_system and bo.flag_vram):
            raise XeError(errno.EINVAL, f"madvise: atomic GLOBAL needs system and VRAM "
                          f"placements (BO {bo.name})")


def _invalidate(vm: Vm, start: int, end: int) -> list[list[int]]:
    """Zap GPU mappings of every VMA in range not marked skip_invalidation.

    Returns [addr, range] per VMA processed. Kernel: xe_vm_invalidate_madvise_range()
    / xe_zap_ptes_in_madvise_range().
    """
    out: list[list[int]] = []
    for v in vm.vmas_in(start, end):
        if v.skip_invalidation or v.is_null():
            continue
        if v.is_cpu_addr_mirror():
            if vm.svm is not None:
                vm.svm.invalidate_range(v.start, v.end)
        else:
            v.tile_invalidated |= v.tile_present
        out.append([v.addr, v.range])
    if out:
        vm.host.stats["madvise_invalidations"] += len(out)
    return out


def _check_pat_l2_flush(vm: Vm, vmas: list[Vma], pat_index: int, *, imported: bool) -> None:
    """7.0, a device with the optimised L2 flush: a PAT index other than 19 and not 2-way
    coherent is refused over CPU-mirror / userptr VMAs (``imported`` False) or over
    imported BOs (``imported`` True), after the split, which stays.

    Kernel: xe_vm_madvise_ioctl(): ``madvise_range.has_svm_userptr_vmas &&
    xe_device_is_l2_flush_optimized() && pat_index != 19 && coh_mode != XE_COH_2WAY``
    right after get_vmas(); the imported-BO test in the drm_exec loop over BO VMAs,
    after check_pat_args_are_sane() and the BO atomic check.
    """
    dev = vm.device
    if not dev.l2_flush_refuses(pat_index):
        return
    for v in vmas:
        hit = (v.bo is not None and v.bo.imported) if imported else \
            (v.bo is None and (v.is_cpu_addr_mirror() or v.is_userptr()))
        if hit:
            kind = f"imported BO {v.bo.name}" if v.bo is not None else "CPU-cached VMA"
            raise XeError(errno.EINVAL, f"madvise: device {dev.name} has the optimised L2 "
                          f"flush: pat_index {pat_index} (not 19, not 2-way coherent) over "
                          f"{kind} {v.addr:#x}+{v.range:#x}")


def _check_pat_igpu(vm: Vm, vmas: list[Vma], pat_index: int) -> None:
    """Newest: an integrated device refuses a COH_NONE PAT over CPU-cached memory.

    CPU-mirror and userptr VMAs are always CPU-cached, so they are refused;
    the kernel also refuses BOs with WB (or unknown) CPU caching, which the
    model cannot check (BOs carry no cpu_caching) -- BO VMAs pass.
    Kernel: check_pat_args_are_sane().
    """
    dev = vm.device
    if dev.discrete or dev.pat_coh_mode(pat_index) != CohMode.NONE:
        return
    for v in vmas:
        if v.bo is None and (v.is_cpu_addr_mirror() or v.is_userptr()):
            raise XeError(errno.EINVAL, f"madvise: non-coherent pat_index {pat_index} over "
                          f"CPU-cached VMA {v.addr:#x}+{v.range:#x} on integrated device "
                          f"{dev.name}")


def _purgeable(vmas: list[Vma], val: int) -> list[list[int]]:
    """Set each BO VMA's purgeable state; the BO's follows its WILLNEED VMAs over every VM.
    Nothing is invalidated (skip_invalidation for all). Purged BOs are skipped (terminal);
    :func:`purgeable_retained` tells whether one was met.

    Kernel (7.0): madvise_purgeable() (xe_vm_madvise.c): non-BO VMAs skipped; WILLNEED
    on a DONTNEED VMA -> xe_bo_willneed_get_locked(); DONTNEED on a WILLNEED VMA ->
    xe_bo_willneed_put_locked()."""
    for v in vmas:
        bo = v.bo
        if bo is None or bo.purge_state == 2:
            continue
        if val == PurgeableState.WILLNEED and v.purgeable:
            v.purgeable = 0
            bo.willneed_get()
        elif val == PurgeableState.DONTNEED and not v.purgeable:
            v.purgeable = 1
            bo.willneed_put()
    return []


def check_retained(a: MadviseArgs) -> None:
    """The retained pointer's read, before the GC flush and the VM lock: EFAULT if it
    cannot be read, EINVAL if it does not hold 0. Nothing is changed.

    Kernel (7.0): xe_vm_madvise_ioctl() ``do_retained``: get_user() -> -EFAULT, then
    ``retained != 0`` -> -EINVAL (after madvise_args_are_sane(), before xe_svm_flush())."""
    if a.retained_fault == "read":
        raise XeError(errno.EFAULT, f"madvise: retained_ptr {a.union_reserved:#x} cannot "
                      "be read")
    if a.retained_init:
        raise XeError(errno.EINVAL, f"madvise: *retained_ptr is {a.retained_init}, must be "
                      "0 before the call")


def purgeable_retained(vm: Vm, start: int, end: int) -> int:
    """The ``retained`` value the purgeable madvise writes back: 0 if a BO in the range
    was purged, 1 otherwise. Kernel (7.0): xe_vm_madvise_ioctl() ``retained =
    !has_purged_bo`` put to purge_state_val.retained_ptr after the locks are dropped."""
    return int(not any(v.bo is not None and v.bo.purge_state == 2
                       for v in vm.vmas_in(start, end)))


def madvise(vm: Vm, a: MadviseArgs) -> list[list[int]]:
    """Apply one memory-range attribute to [start, start+range) of ``vm``.

    Order: argument checks (EINVAL, nothing changed), GC flush, closed/banned
    VM (ENOENT), newest devmem_fd resolution (ENOENT/ENODEV/ENOLINK), VMA
    split, collection (none: return), newest iGPU PAT check and BO atomic
    checks (EINVAL; the split is kept, as in the kernel), per-type effect,
    invalidation. Returns the invalidated [addr, range] list.

    The 7.0 purgeable type sets per-VMA purgeable state (:func:`_purgeable`).
    Kernel: xe_vm_madvise_ioctl().
    """
    check_args(vm, a)
    if a.type == MemRangeAttr.PURGEABLE_STATE and a.union_reserved:
        check_retained(a)
    if vm.svm is not None:
        vm.svm.garbage_collector_flush()
    if vm.killed:
        raise XeError(errno.ENOENT, f"madvise: VM {vm.name} is closed or banned (killed)")
    pm: DevicePagemap | None = None
    if a.type == MemRangeAttr.PREFERRED_LOC and a.devmem_fd > 0 and vm.profile.multi_device:
        _, pm = _resolve_pagemap(vm, a)
    try:
        return _apply(vm, a, pm)
    finally:
        if pm is not None:
            pm.put()        # xe_madvise_details_fini(): drm_pagemap_put()


def _apply(vm: Vm, a: MadviseArgs, pm: DevicePagemap | None) -> list[list[int]]:
    """The rest of xe_vm_madvise_ioctl() after the pagemap resolution."""
    vm.alloc_madvise_vma(a.start, a.range)
    end = a.start + a.range
    vmas = vm.vmas_in(a.start, end)
    if vmas:
        if a.type == MemRangeAttr.PAT and vm.profile.coh_2way:
            _check_pat_l2_flush(vm, vmas, a.val, imported=False)
        if a.type == MemRangeAttr.PAT and vm.profile.igpu_coh_none_check:
            _check_pat_igpu(vm, vmas, a.val)
        if a.type == MemRangeAttr.ATOMIC and any(v.bo is not None for v in vmas):
            _check_bo_atomic(vm, vmas, a.val)
        if a.type == MemRangeAttr.PAT and vm.profile.coh_2way:
            _check_pat_l2_flush(vm, vmas, a.val, imported=True)
    vm.host.stats["madvise_calls"] += 1     # calls that succeeded
    if a.type == MemRangeAttr.PURGEABLE_STATE:
        return _purgeable(vmas, a.val)
    if not vmas:
        return []
    if a.type == MemRangeAttr.PREFERRED_LOC:
        _preferred_loc(vm, vmas, a, pm)
    elif a.type == MemRangeAttr.ATOMIC:
        _atomic(vm, vmas, a)
    else:
        _pat(vmas, a)
    return _invalidate(vm, a.start, end)
