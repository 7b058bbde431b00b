"""The SVM GPU page-fault handler and its retry loops.

Kernel: xe_svm_handle_pagefault() / __xe_svm_handle_pagefault() and
xe_vma_need_vram_for_atomic() (drivers/gpu/drm/xe/xe_svm.c, xe_vm.c).

Fault order (one inner iteration)
---------------------------------
::

    fault.start -> collect garbage -> find or insert range -> fault.after_find_range
      -> [range valid? done] -> migrate to VRAM if the policy says so -> fault.after_migrate
      -> get pages -> fault.after_get_pages -> fault.before_bind -> bind -> done

Retry reasons::

          +--------------------- EAGAIN from GC (VMAs changed) --------------+
          |                                                                  v
    [outer: need_vram_for_atomic] -> [inner iteration] --EAGAIN--> re-look-up VMA (none: EINVAL)
                                         |  ^
          VRAM alloc failed (tries left) |  | get_pages EOPNOTSUPP/EFAULT/EPERM (budget)
          removed range (newest)         |  | bind EAGAIN (pages invalidated)
                                         +--+

Budgets, as in the kernel: ``migrate_try_count`` is 3 when the access must be
in device memory (``devmem_only``: an atomic on discrete that needs VRAM),
else 1; each migration attempt and each get-pages / bind retry doubles the
timeslice. Get-pages failures retry without bound unless ``devmem_only``;
bind ``EAGAIN`` retries and the outer ``EAGAIN`` loop are unbounded in the
kernel too. Nothing here caps them silently: :attr:`pysvm.xe.svm.Svm.
max_fault_iterations` is an opt-in guard that raises
:class:`FaultLivelockError` naming the fault.

Injection points (``fault.start``, ``fault.after_find_range``,
``fault.after_migrate``, ``fault.after_get_pages``, ``fault.before_bind``) run
work queued with :meth:`pysvm.xe.svm.Svm.inject` once, the way an asynchronous
CPU munmap, eviction or invalidation would land at that moment.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Final

from pysvm.drm.gpusvm import SZ_64K, GpuSvmCtx, SvmRange
from pysvm.errors import XeError
from pysvm.xe.attr import AtomicAccess
from pysvm.xe.migrate import populate_mm
from pysvm.xe.pagefault_errors import FaultError, FaultLivelockError
from pysvm.xe.pagefault_types import FaultStats
from pysvm.xe.vram import VramAllocation, devm_owner

if TYPE_CHECKING:
    from pysvm.xe.device import Device
    from pysvm.xe.svm import Svm
    from pysvm.xe.vma import Vma
    from pysvm.xe.vram import Vram

__all__ = ["handle_vma", "resolve_target", "need_vram_for_atomic", "handle_pagefault",
           "FaultStats", "FaultError",
           "FaultLivelockError", "alloc_vram", "needs_migrate",
           "range_valid", "remember_fault_vma", "svm_owner"]

_ATOMIC_DEVICE: Final = int(AtomicAccess.DEVICE)
_ATOMIC_CPU: Final = int(AtomicAccess.CPU)


def need_vram_for_atomic(device: Device, vma: Vma, atomic: bool) -> int:
    """1 if the access must be served from VRAM, 0 if not.

    Kernel: xe_vma_need_vram_for_atomic(): not discrete or not atomic -> 0;
    DEVICE -> 1 unless device atomics on system memory are supported;
    GLOBAL/UNDEFINED/other -> 1; CPU -> raises XeError(EACCES). Both profiles
    read the BO's atomic attribute (bo->attr.atomic_access, which
    madvise_atomic() sets) for a BO-backed VMA, the VMA's own otherwise: v6.18
    xe_vm.c already has it (it came with the commit that added
    check_bo_args_are_sane() and the BO branch of madvise_atomic() to
    xe_vm_madvise.c, both in v6.18). The SVM fault handler only ever passes CPU-mirror VMAs
    (no BO); the BO case is the kernel's handle_vma_pagefault() path
    (xe_pagefault.c), whose fault is not simulated: :func:`pysvm.hw.gpu.gpu_access`
    reads and writes BO pages directly.
    """
    if not device.discrete or not atomic:
        return 0
    attr = vma.attr.atomic_access
    if vma.bo is not None:
        # xe_vm.c xe_vma_need_vram_for_atomic() (v6.18 and mainline): a BO VMA's answer
        # comes from bo->attr.atomic_access
        attr = vma.bo.atomic_access
    if attr == _ATOMIC_DEVICE:
        return 0 if device.smem_atomics else 1
    if attr == _ATOMIC_CPU:
        raise XeError(errno.EACCES, f"atomic GPU access to a VMA whose atomic policy is CPU "
                      f"(VMA {vma.start:#x}+{vma.end - vma.start:#x})")
    return 1


def _resolve_target(svm: Svm, vma: Vma, tile: int = 0) -> Vram | None:
    """The VRAM (one tile's region) the VMA prefers for an access from ``tile``, or None
    (system).

    Kernel: xe_vma_resolve_pagemap(vma, tile) (6.18: -1 -> system, 0 -> the faulting
    tile's local VRAM on discrete (tile_local_pagemap()), anything else -> system; newest:
    the madvised pagemap first, i.e. another device's or another tile's region named by
    fd and region_instance, else the same -1/0 rules with xe_tile_local_pagemap()).
    """
    loc = vma.attr.preferred_loc
    fd = loc.devmem_fd
    if fd == -1:
        return None
    dev = svm.device
    if fd == 0:
        return dev.vrams[tile] if dev.discrete else None
    if svm.vm.profile.multi_device:
        other = svm.host.device_by_fd(fd)
        if other is not None and other.discrete:
            pm = loc.pagemap
            t = pm.tile if pm is not None else 0
            return other.vrams[t] if t < len(other.vrams) else None
    return None


#: The public name of the preferred-location resolution (PREFETCH to pref_loc uses it).
resolve_target = _resolve_target


def _has_pagemap(r: SvmRange, target: Vram | None) -> bool:
    """The range's pages are device pages of ``target`` (one tile's VRAM).

    Kernel: xe_svm_range_has_pagemap() (newest: range->pages.dpagemap == dpagemap; every
    tile has its own pagemap, so another tile's VRAM of the same device is not it).
    """
    return r.in_vram() and r.dpagemap is target


def range_valid(svm: Svm, r: SvmRange, devmem_only: bool, target: Vram | None,
                tile: int = 0) -> bool:
    """Kernel: xe_svm_range_is_valid(range, tile, ...): bound on the faulting ``tile`` and
    not invalidated there, and when ``devmem_only`` in device memory (6.18: any VRAM,
    any tile's, xe_svm_range_in_vram(); newest: the target pagemap,
    xe_svm_range_has_pagemap())."""
    if not r.is_valid(tile, False):
        return False
    if not devmem_only:
        return True
    if svm.host.profile.range_removed_check:
        return _has_pagemap(r, target)
    return r.in_vram()


def needs_migrate(svm: Svm, r: SvmRange, target: Vram | None) -> bool:
    """Kernel: xe_svm_range_needs_migrate_to_vram() (4K migration supported).

    6.18: not if the range is in VRAM already (xe_svm_range_in_vram: any tile's VRAM, so
    a range in tile 1's VRAM stays there when tile 0 faults and is mapped in place);
    newest: not if its pages are in the target pagemap already (xe_svm_range_has_pagemap:
    pages in another tile's VRAM are moved to the faulting tile's).
    """
    if not r.migrate_devmem or target is None:
        return False
    if svm.host.profile.range_removed_check:
        return not _has_pagemap(r, target)
    return not r.in_vram()


def alloc_vram(svm: Svm, r: SvmRange, target: Vram, ctx: GpuSvmCtx) -> None:
    """Kernel: xe_svm_alloc_vram() into ``target`` (one tile's VRAM).

    6.18: drm_pagemap_populate_mm() on the faulting tile's VRAM (tile_local_pagemap()),
    nothing else. Newest: first a scan (drm_gpusvm_scan_mm) - every page already in the
    target pagemap -> 0 without allocating; then populate, and on EBUSY exactly one retry
    after evicting the range to system memory.
    """
    newest = svm.host.profile.range_removed_check
    if newest and _all_pages_in(svm, r, target):
        return
    dev, tile = target.device, target.tile
    try:
        populate_mm(dev, svm.mm, r.start, r.end, ctx.timeslice_ms, newest=newest, tile=tile)
    except XeError as e:
        if e.errno != errno.EBUSY or not newest:
            raise
        svm.gpusvm.range_evict(r)
        populate_mm(dev, svm.mm, r.start, r.end, ctx.timeslice_ms, newest=newest, tile=tile)


def _all_pages_in(svm: Svm, r: SvmRange, target: Vram) -> bool:
    """Kernel: drm_gpusvm_scan_mm() == DRM_GPUSVM_SCAN_EQUAL (every page in the pagemap)."""
    runs, _ = svm.mm.slots(r.start, r.end)
    return None not in runs and all(
        isinstance(al := run.alloc, VramAllocation) and al.vram is target
        for run in set(runs) if run is not None)


def _guard(svm: Svm, st: FaultStats) -> None:
    cap = svm.max_fault_iterations
    if cap is not None and st.inner_iterations + st.outer_iterations > cap:
        raise FaultLivelockError(st.addr, st.inner_iterations + st.outer_iterations, st)


def _inner(svm: Svm, vma: Vma, addr: int, need_vram: bool, st: FaultStats, tile: int) -> int:
    """One call of the inner handler; returns 0 or an errno (EAGAIN: re-look-up).

    Kernel: __xe_svm_handle_pagefault(). Profile differences (6.18 torvalds 0131514f,
    newest kernel-patches/bpf 508444b9): newest resolves the target pagemap before the
    range lookup and uses it as the page owner filter (system target: no owner, so
    get_pages brings device pages back to system memory), checks the "removed" flag under
    the range lock, and compares validity and migration need against the target
    pagemap. Both go straight to get_pages (which fixes mixed placements up) after a
    failed migration of a devmem-only fault with tries left (v6.18 has that `goto
    get_pages` too).
    """
    dev = svm.device
    discrete = dev.discrete
    newest = svm.host.profile.range_removed_check
    ctx = GpuSvmCtx(read_only=vma.read_only(), devmem_possible=discrete,
                    check_pages_threshold=SZ_64K if discrete else 0,
                    devmem_only=need_vram and discrete,
                    timeslice_ms=dev.atomic_svm_timeslice_ms if (need_vram and discrete) else 0)
    migrate_try_count = 3 if ctx.devmem_only else 1
    # injection point -> pending work; checked here so a point with none costs no call
    inj = svm.host.injections
    first = True
    while True:
        if not first:
            st.reasons.append("retry")
        first = False
        st.inner_iterations += 1
        st.timeslice_ms = ctx.timeslice_ms
        if svm.max_fault_iterations is not None:
            _guard(svm, st)
        if inj["fault.start"]:
            svm.fire("fault.start")
        err = svm.garbage_collector()
        if err:
            if err == errno.EAGAIN:
                st.gc_eagain += 1
                st.reasons.append("gc-eagain")
            else:
                st.reasons.append(f"gc:{errno.errorcode.get(err, err)}")
            return err
        # 6.18 xe_svm_alloc_vram(tile) / newest xe_tile_local_pagemap(tile) for a
        # devmem-only fault: the faulting tile's VRAM
        target = dev.vrams[tile] if ctx.devmem_only else _resolve_target(svm, vma, tile)
        if newest:
            # xe_svm_private_page_owner(vm, !dpagemap)
            svm.gpusvm.owner = svm_owner(svm) if target is not None else None
        else:
            svm.gpusvm.owner = svm_owner(svm)
        try:
            r = svm.gpusvm.range_find_or_insert(max(addr, vma.start), vma.start, vma.end, ctx)
        except XeError as e:
            st.reasons.append(f"find-or-insert:{e.name}")
            return e.errno or errno.EINVAL
        if inj["fault.after_find_range"]:
            svm.fire("fault.after_find_range")
        if newest and r.removed:
            st.reasons.append("range-removed")
            continue
        if ctx.devmem_only and not r.migrate_devmem:
            st.reasons.append("not-migratable")
            return errno.EACCES
        if range_valid(svm, r, ctx.devmem_only, target, tile):
            return 0
        migrate_try_count -= 1
        if migrate_try_count >= 0 and target is not None and needs_migrate(svm, r, target):
            st.migrations += 1
            try:
                alloc_vram(svm, r, target, ctx)
                err = 0
            except XeError as e:
                err = e.errno or errno.ENOMEM
            ctx.timeslice_ms <<= 1
            if err:
                st.migration_failures += 1
                st.reasons.append(f"migrate:{errno.errorcode.get(err, err)}")
                if not (migrate_try_count or not ctx.devmem_only):
                    return err
                if not ctx.devmem_only:
                    continue
                # devmem_only, tries left: get_pages fixes mixed placements up
            else:
                if inj["fault.after_migrate"]:
                    svm.fire("fault.after_migrate")
        try:
            svm.gpusvm.range_get_pages(r, ctx)
            err = 0
        except XeError as e:
            err = e.errno or errno.EFAULT
            if err == errno.EOPNOTSUPP:
                svm.gpusvm.range_evict(r)
        if err and err in (errno.EOPNOTSUPP, errno.EFAULT, errno.EPERM):
            st.get_pages_failures += 1
            st.reasons.append(f"get-pages:{errno.errorcode.get(err, err)}")
            ctx.timeslice_ms <<= 1
            if migrate_try_count > 0 or not ctx.devmem_only:
                continue
        if err:
            return err
        if inj["fault.after_get_pages"]:
            svm.fire("fault.after_get_pages")
        if inj["fault.before_bind"]:
            svm.fire("fault.before_bind")
        try:
            svm.range_rebind(r, 1 << tile)     # xe_vm_range_rebind(..., BIT(tile->id))
        except XeError as e:
            if e.errno == errno.EAGAIN:
                st.bind_eagain += 1
                st.reasons.append("bind-eagain")
                ctx.timeslice_ms <<= 1
                continue
            return e.errno or errno.EINVAL
        return 0


def svm_owner(svm: Svm) -> object:
    """The VM's device-private page owner. Kernel: newer driver
    xe_svm_private_page_owner(): ``vm->svm.peer.owner`` (the group the VM joined in
    xe_svm_init()); 6.18 xe_svm_devm_owner() of the VM's device."""
    peer = svm.peer
    if peer is not None and peer.owner is not None:
        return peer.owner
    return devm_owner(svm.device)


def handle_pagefault(svm: Svm, vma: Vma, addr: int, atomic: bool,
                     tile: int = 0) -> FaultStats:
    """Service one GPU page fault on a CPU-address-mirror VMA, raised by ``tile``'s GT.

    Kernel: xe_svm_handle_pagefault(): need_vram_for_atomic, the inner
    handler, and on EAGAIN a fresh VMA lookup by address (none -> EINVAL) and
    another round, without bound.

    Returns the fault's :class:`FaultStats` (also appended to ``svm.fault_log``
    and counted in ``world.stats``). Raises XeError with the kernel's errno
    when the fault cannot be serviced: a :class:`FaultError` carrying the stats.
    """
    st = FaultStats(addr, atomic)
    stats = svm.host.stats
    stats["faults"] += 1
    outer_fault = svm.current_fault
    svm.current_fault = addr
    try:
        while True:
            st.outer_iterations += 1
            if svm.max_fault_iterations is not None:
                _guard(svm, st)
            # (only an atomic can need VRAM: xe_vma_need_vram_for_atomic() answers 0 for
            # anything else before it looks at the VMA)
            need = need_vram_for_atomic(svm.device, vma, atomic) if atomic else 0
            err = _inner(svm, vma, addr, bool(need), st, tile)
            if err == errno.EAGAIN:
                st.reasons.append("outer-eagain")
                found = svm.vm.find_vma_by_addr(addr)
                if found is None:
                    err = errno.EINVAL
                    raise XeError(err, f"GPU fault at {addr:#x}: no VMA after re-lookup")
                vma = found
                continue
            if err:
                raise XeError(err, f"GPU fault at {addr:#x} failed: "
                              f"{'; '.join(st.reasons[-4:]) or errno.errorcode.get(err, err)}")
            return st
    except FaultError as e:
        st.result = e.errno or 0
        raise
    except XeError as e:
        st.result = e.errno or 0
        raise FaultError(st.result, e.strerror or "", st) from e
    finally:
        svm.current_fault = outer_fault
        stats["retries"] += st.retries
        stats["migration_attempts"] += st.migrations
        if st.result:
            stats["faults_failed"] += 1
        svm.fault_log.append(st)


def handle_vma(svm: Svm, vma: Vma, addr: int, atomic: bool, tile: int = 0) -> None:
    """Service one GPU page fault on a BO, userptr or NULL VMA: check the atomic, bind.

    Kernel: xe_pagefault_handle_vma() (xe_pagefault.c): ``needs_vram =
    xe_vma_need_vram_for_atomic()``; a negative answer (atomic attribute CPU) is
    returned as it is (EACCES), and a userptr VMA that would need VRAM is EACCES (its
    pages are the process's, they cannot move); otherwise the VMA is validated (a BO
    that must serve the atomic from VRAM is moved there, xe_bo_migrate(); a BO without
    a VRAM placement is EINVAL, xe_bo_can_migrate()) and rebound on the faulting tile
    (xe_vma_rebind()). A userptr VMA is (re)pinned first: its CPU pages are faulted in
    (xe_vma_userptr_pin_pages -> hmm_range_fault, errno of the pin: EFAULT for an
    unmapped page). Counted in
    ``faults`` (and ``faults_failed`` when refused) as the SVM handler counts its faults.
    """
    stats = svm.host.stats
    stats["faults"] += 1
    try:
        bo = vma.bo
        if bo is not None and bo.purge_state and svm.vm.profile.purgeable_type:
            # 7.0 xe_pagefault_begin(): a DONTNEED or purged BO is EACCES (no scratch
            # page is modelled)
            raise XeError(errno.EACCES, f"GPU fault at {addr:#x}: BO {bo.name} is "
                          f"{'DONTNEED' if bo.purge_state == 1 else 'purged'}")
        need = need_vram_for_atomic(svm.device, vma, atomic)
        if need and vma.is_userptr():
            raise XeError(errno.EACCES, f"GPU atomic at {addr:#x} on a userptr VMA needs VRAM "
                          "(a userptr's pages cannot migrate)")
        if vma.is_userptr():
            vma.userptr_pin_pages(svm.mm)
        if need and bo is not None:
            # xe_pagefault_begin() (v6.18: xe_gt_pagefault.c xe_pf_begin()) with
            # need_vram_move: xe_bo_migrate(bo, tile VRAM placement) (xe_bo.c): 0 when the
            # BO is there already, -EINVAL when !xe_bo_can_migrate() (no VRAM placement)
            if not bo.is_vram and not bo.flag_vram:
                raise XeError(errno.EINVAL, f"GPU atomic at {addr:#x} needs VRAM: BO "
                              f"{bo.name} has no VRAM placement (xe_bo_migrate -EINVAL)")
            bo.resident = "vram"
    except XeError:
        stats["faults_failed"] += 1
        raise
    # xe_pagefault_handle_vma() -> xe_vma_rebind(vm, vma, BIT(tile->id)): the faulting
    # tile only
    vma.tile_present |= 1 << tile
    vma.tile_invalidated &= ~(1 << tile)


def remember_fault_vma(svm: Svm, vma: Vma) -> None:
    """After a successful fault the VM caches the VMA the fault *started* with.

    Kernel: xe_pagefault.c stores ``vm->usm.last_fault_vma = vma`` with the VMA it looked
    up before calling xe_svm_handle_pagefault(). When the garbage collector inside the
    fault replaced that VMA (set_default_attr's split or re-allocation; xe_vm_remove_vma()
    had cleared the cache then), the pointer stored is the destroyed VMA's: a dangling
    pointer that the next xe_vm_find_vma_by_addr() dereferences (vma_matches()). The model
    stores it too and counts it (``last_fault_vma_dangling``); its lookup ignores a cached
    VMA that is no longer in the tree, so nothing here reads freed memory.
    """
    vm = svm.vm
    if not vm.host.profile.last_fault_vma_cache:
        return
    vm.last_fault_vma = vma
    if not vm.killed and vm.find_vma_by_addr(vma.start) is not vma:
        svm.host.stats["last_fault_vma_dangling"] += 1
