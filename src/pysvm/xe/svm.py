"""Per-VM SVM state: the gpusvm, the notifier callback, GC queue, prefetch.

Kernel: struct xe_vm.svm and xe_svm_init(), xe_svm_invalidate(),
xe_svm_unmap_address_range(), xe_svm_ranges_zap_ptes_in_range(),
xe_svm_has_mapping(), xe_vm_range_rebind()/unbind() (drivers/gpu/drm/xe/).

An :class:`Svm` is made for every fault-mode VM by the composition root
(:meth:`pysvm.World.vm_create`, as xe_vm_create() calls xe_svm_init()), with the
process address space it mirrors. It is also the driver's side of the drm_gpusvm
ops table (:class:`pysvm.drm.gpusvm.GpuSvmOps`: invalidate, the pagemap of device
pages, eviction).

GPU mappings of SVM ranges are modelled by ``range.tile_present`` /
``range.tile_invalidated`` and the page-table entries ``range.pages`` captured by
get_pages (a :class:`pysvm.mm.mmap.PageSnap`): the GPU reads and writes the pages
those entries name. The invariant that
:meth:`Svm.check_invariants` verifies after every step in tests and the fuzzer
is that every *valid* GPU mapping points at exactly the pages the CPU page
table holds now (so no GPU mapping of unmapped or moved memory survives).
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from pysvm.drm.gpusvm import DevmemPagemap, GpuSvm, GpuSvmCtx, SvmRange
from pysvm.drm.gpusvm_notifier import SvmNotifier
from pysvm.drm.pagemap_util import Peer
from pysvm.errors import XeError
from pysvm.mm.mmap import PAGE_SIZE, DevmemOwner, Mm
from pysvm.mm.mmu_notifier import NotifierRange, NotifyEvent
from pysvm.xe.garbage_collector import garbage_collector
from pysvm.xe.host import INJECTION_POINTS
from pysvm.xe.pagefault import alloc_vram, needs_migrate, resolve_target, svm_owner
from pysvm.xe.pagemap import range_pagemap_get, range_pagemap_put, svm_put_pagemaps
from pysvm.xe.vram import Vram, VramAllocation, devm_owner, evict_range

if TYPE_CHECKING:
    from pysvm.xe.host import XeHost
    from pysvm.xe.pagefault import FaultStats
    from pysvm.xe.pagemap import DevicePagemap
    from pysvm.xe.vm import Vm

__all__ = ["Svm", "INJECTION_POINTS", "NOTIFIER_SIZE"]

#: Kernel: xe_modparam.svm_notifier_size (MiB) default 512.
NOTIFIER_SIZE: Final = 512 << 20


class Svm:
    """SVM state of one fault-mode VM.

    Kernel: struct xe_vm::svm (gpusvm + garbage_collector) and xe_svm_init().
    """

    def __init__(self, vm: Vm, mm: Mm) -> None:
        self.vm = vm
        self.host: XeHost = vm.host
        self.mm = mm
        self.device = vm.device
        self.gpusvm = GpuSvm(self.mm, 0, vm.size, NOTIFIER_SIZE, self,
                             owner=devm_owner(vm.device))
        #: The device pagemaps this VM holds (newest profile). Kernel: vm->svm.pagemaps[].
        self.pagemaps: list[DevicePagemap] = []
        #: Newer driver: the VM's place in the owner list (vm->svm.peer), joined by the
        #: composition root at creation (xe_svm_init()) and left at close; None in 6.18.
        self.peer: Peer | None = None
        self.gc_list: list[SvmRange] = []
        self._gc_work_queued = False
        #: (point, result, fault address) of every injected event that fired.
        self.injection_log: list[tuple[str, object, int | None]] = []
        #: Address of the GPU fault being serviced (None outside the fault handler).
        self.current_fault: int | None = None
        #: Called as hook(svm, start, end, err) after each set_default_attr of the GC
        #: (tests and the fuzzer check the attribute reset there).
        self.gc_hooks: list[Callable[[Svm, int, int, int], None]] = []
        #: Optional livelock guard: max fault-loop iterations per fault (None: unbounded,
        #: as in the kernel). Exceeding it raises pysvm.xe.pagefault.FaultLivelockError.
        self.max_fault_iterations: int | None = None
        self.fault_log: deque[FaultStats] = deque(maxlen=4096)
        self.bo_data: dict[tuple[str, int], int] = {}
        self.closed = False

    # ------------------------------------------------------------ hooks
    @property
    def injections(self) -> dict[str, list[Callable[[], object]]]:
        """Injection point -> work fired once when any VM's fault handler gets there.

        Shared by every VM of the machine (the host's): an asynchronous CPU event
        does not pick its VM.
        """
        return self.host.injections

    def inject(self, point: str, fn: Callable[[], object]) -> None:
        """Fire ``fn`` the next time the fault handler reaches ``point``."""
        if point not in self.injections:
            raise XeError(errno.EINVAL, f"unknown injection point {point!r}; choose one of "
                          f"{', '.join(INJECTION_POINTS)}")
        self.injections[point].append(fn)

    def fire(self, point: str) -> None:
        """Run (and forget) the work injected at ``point``."""
        inj = self.host.injections
        todo = inj[point]
        if not todo:
            return
        inj[point] = []
        for fn in todo:
            self.host.stats["injections_fired"] += 1
            res: object
            try:
                res = fn()
            except XeError as e:
                res = e
            self.injection_log.append((point, res, self.current_fault))

    # ------------------------------------------ drm_gpusvm ops (GpuSvmOps)
    def page_pagemap(self, alloc: DevmemOwner) -> DevmemPagemap:
        """The tile VRAM holding a device page (zdd->devmem_allocation->dpagemap: each
        tile's VRAM region has its own pagemap)."""
        assert isinstance(alloc, VramAllocation), alloc
        return alloc.vram

    def pagemap_get(self, dpagemap: DevmemPagemap | None) -> None:
        """Newest: the range's pages hold their pagemap (drm_gpusvm_get_pages). The
        dpagemap this driver hands drm_gpusvm is always a tile's :class:`Vram`."""
        assert dpagemap is None or isinstance(dpagemap, Vram), dpagemap
        range_pagemap_get(dpagemap)

    def pagemap_put(self, dpagemap: DevmemPagemap | None) -> None:
        """Drop :meth:`pagemap_get`'s reference (__drm_gpusvm_unmap_pages)."""
        assert dpagemap is None or isinstance(dpagemap, Vram), dpagemap
        range_pagemap_put(dpagemap)

    def devmem_evict(self, mm: Mm, start: int, end: int) -> int:
        """Kernel: drm_gpusvm_range_evict() (device pages back to system memory)."""
        return evict_range(mm, start, end)

    def invalidate(self, notifier: SvmNotifier, nrange: NotifierRange) -> None:
        """Kernel: xe_svm_invalidate() (with the notifier_event_begin/end helpers)."""
        ranges = notifier.ranges_list(max(notifier.start, nrange.start),
                                      min(notifier.end, nrange.end))
        if not ranges:
            return
        closed = self.closed
        if not closed:
            stats = self.host.stats
            for r in ranges:
                if r.unmapped or not r.tile_present:
                    continue
                r.tile_invalidated |= r.tile_present
                stats["gpu_invalidations"] += 1
        # The kernel widens [adj_start, adj_end) to the ranges it zapped and walks the
        # ranges of the widened span again; ranges never overlap, so no other range
        # intersects the widened span: the walk meets the same ranges.
        unmap = not closed and nrange.event == NotifyEvent.UNMAP
        unmap_pages = self.gpusvm.range_unmap_pages
        for r in ranges:
            unmap_pages(r)
            if unmap:
                self._gc_add(r, nrange)

    def _gc_add(self, r: SvmRange, nrange: NotifierRange) -> None:
        """Kernel: xe_svm_garbage_collector_add_range()."""
        self.gpusvm.range_set_unmapped(r, nrange)
        if not r.gc_queued:
            r.gc_queued = True
            self.gc_list.append(r)
        if not self._gc_work_queued:
            self._gc_work_queued = True
            self.host.queue_work(f"svm_gc:{self.vm.name}", self._gc_work)

    def _gc_work(self) -> int:
        """Kernel: xe_svm_garbage_collector_work_func()."""
        self._gc_work_queued = False
        return self.garbage_collector()

    # ------------------------------------------------------------- GC
    def garbage_collector(self) -> int:
        """Run the collector now. Kernel: xe_svm_garbage_collector()."""
        if not self.gc_list and not self.vm.killed:
            return 0        # nothing queued: the collector's loop would not run
        return garbage_collector(self)

    def garbage_collector_flush(self) -> int:
        """Kernel: xe_svm_flush() (flush_work of the GC work) as madvise does."""
        if not self.gc_list:
            return 0
        return self.garbage_collector()

    def range_unbind(self, r: SvmRange) -> None:
        """Zap the range's GPU mapping on every tile. Kernel: xe_vm_range_unbind()."""
        r.tile_present = 0
        r.tile_invalidated = 0

    def range_collect(self, r: SvmRange) -> None:
        """Unbind and remove one range. Kernel: __xe_svm_garbage_collector()."""
        self.range_unbind(r)
        self.gpusvm.range_remove(r)
        self.host.stats["ranges_removed"] += 1

    def range_rebind(self, r: SvmRange, tile_mask: int) -> None:
        """Bind the range's pages on the tiles of ``tile_mask``.

        Kernel: xe_vm_range_rebind(vm, vma, range, tile_mask) (a fault passes
        BIT(tile->id); PREFETCH every tile); its pre-commit check
        (xe_pt_svm_pre_commit) answers EAGAIN when the pages were invalidated
        after get_pages.
        """
        if r.removed or not r.pages_valid or r.notifier.read_retry(r.notifier_seq):
            raise XeError(errno.EAGAIN, "range pages were invalidated before bind")
        r.tile_present |= tile_mask
        r.tile_invalidated &= ~tile_mask

    # ------------------------------------------------- Vm <-> Svm hooks
    def has_ranges(self, start: int, end: int) -> bool:
        """Kernel: xe_svm_has_mapping()."""
        return self.gpusvm.has_mapping(start, end)

    def invalidate_range(self, start: int, end: int) -> list[tuple[int, int]]:
        """Zap GPU mappings of SVM ranges in ``[start, end)``; (addr, size) of each.

        Kernel: xe_svm_ranges_zap_ptes_in_range() (madvise invalidation): for_each_tile()
        whose PTEs of the range are live, zapped and marked in tile_invalidated.
        """
        out: list[tuple[int, int]] = []
        for r in self.gpusvm.ranges(start, end):
            live = r.tile_present & ~r.tile_invalidated
            if live:
                r.tile_invalidated |= live
                out.append((r.start, r.size))
        return out

    def unmap_address_range(self, start: int, end: int) -> None:
        """Evict and destroy ranges only partly inside ``[start, end)``.

        Kernel: xe_svm_unmap_address_range().
        """
        discrete = self.device.discrete
        for r in list(self.gpusvm.ranges(start, end)):
            if start > r.start or end < r.end:
                if discrete and r.in_vram():
                    self.gpusvm.range_evict(r)
                self.range_collect(r)
                if r.gc_queued:
                    r.gc_queued = False
                    self.gc_list.remove(r)

    def close(self) -> None:
        """Tear the SVM state down. Kernel: xe_svm_close() + xe_svm_fini().

        xe_svm_close() also drops the VM's references on its device's pagemaps
        (xe_svm_put_pagemaps; a no-op when the VM holds none).
        """
        self.closed = True
        for r in list(self.gpusvm.ranges()):
            self.range_unbind(r)
        self.gpusvm.fini()
        self.gc_list.clear()
        svm_put_pagemaps(self.pagemaps)
        peer = self.peer
        if peer is not None and peer.list is not None and peer.joined:
            peer.list.release(peer)      # drm_pagemap_release_owner(&vm->svm.peer)

    # -------------------------------------------------------- prefetch
    def _find_vma_start(self, a: int, stop: int) -> int | None:
        """Start of the first CPU VMA in ``[a, stop)``, None if there is none.

        Kernel: xe_svm_find_vma_start() -> drm_gpusvm_find_vma_start()
        (find_vma_intersection(); ULONG_MAX when none)."""
        for cv in self.mm.vmas():
            if cv.end > a and cv.start < stop:
                return max(cv.start, a)
        return None

    def _prefetch_range_valid(self, r: SvmRange, target: Vram | None) -> bool:
        """Whether PREFETCH leaves ``r`` alone: bound on every tile and not invalidated,
        and already where the prefetch asks.

        Kernel: xe_svm.c xe_svm_range_validate() as xe_vm.c vm_bind_ioctl_ops_create()
        calls it (tile_mask: every tile of the device, for_each_tile()). v6.18 compares
        range->base.pages.flags.has_devmem_pages with ``!!tile`` (a VRAM region, or a
        pref_loc that resolved to a pagemap); mainline compares range->pages.dpagemap
        with the asked pagemap (NULL: system memory).
        """
        mask = self.device.tile_mask
        if r.tile_present & ~r.tile_invalidated & mask != mask:
            return False
        if self.vm.profile.range_removed_check:     # mainline pagemap comparison
            return r.dpagemap is target
        return r.has_devmem_pages == (target is not None)

    def prefetch(self, start: int, end: int, region: str | int) -> int:
        """PREFETCH ``[start, end)`` to ``region``; returns the SVM ranges bound.

        Kernel: xe_vm_bind_ioctl() with DRM_XE_VM_BIND_OP_PREFETCH, in its order:
        vm_bind_ioctl_check_args() (the region must be a bit of the device's
        mem_region_mask: ``"vram"`` on an integrated device is EINVAL; then
        alignment, EINVAL); a closed or banned VM ENOENT; the VM-size check
        (``range > vm->size || addr > vm->size - range``) EINVAL; then per VMA
        (drm_gpuvm_prefetch_ops_create()):

        * CPU-mirror VMAs: vm_bind_ioctl_ops_create() walks
          xe_svm_range_find_or_insert() over the span; where the CPU has no
          mapping (ENOENT) it continues at xe_svm_find_vma_start(), and stops
          the VMA when no CPU VMA is left in it; other errors are returned.
          Then prefetch_ranges(): migrate each range (xe_svm_alloc_vram() for
          VRAM, xe_svm_range_migrate_to_smem() for system memory) and get its
          pages. A range already bound where it is asked for is skipped
          (xe_svm_range_validate(): not migrated, bound or counted). A failed
          VRAM allocation, or get_pages failing with
          EOPNOTSUPP/EFAULT/EPERM, is -ENODATA: the ioctl stops, binds nothing
          and returns 0 (xe_vm_bind_ioctl() skips the unwind for ENODATA), so
          the ranges made stay unpopulated or unbound;
        * userptr VMAs: their pages are pinned (vm_bind_ioctl_ops_parse(),
          the pin's errno);
        * BO VMAs: op_lock_and_prep() -> xe_bo_migrate() to the region
          (EINVAL when the BO's placements do not include it);
        * NULL VMAs: nothing.

        Otherwise every range is bound (ops_execute).

        ``region`` is ``"system"``, ``"vram"`` (this device's tile-0 VRAM, region 1), a
        prefetch_mem_region_instance number (0 system, ``k`` tile ``k - 1``'s VRAM:
        prefetch_ranges() takes &xe->tiles[region_to_mem_type[region] - XE_PL_VRAM0]; an
        instance that is not a bit of mem_region_mask is EINVAL) or ``"pref_loc"``
        (DRM_XE_CONSULT_MEM_ADVISE_PREF_LOC: each CPU-mirror VMA goes where its
        madvised preferred location resolves, xe_vma_resolve_pagemap() with the root
        tile: -1 system, 0 tile 0's VRAM on a discrete device, an fd: 6.18 system, 7.0
        the VRAM region that fd and region_instance named). The ranges are bound on
        every tile (the PREFETCH op's tile_mask).
        ``"pref_loc"`` over a BO VMA is refused with EINVAL: the kernel indexes
        region_to_mem_type[] with -1 there (reads past the table).
        """
        discrete = self.device.discrete
        vram_tile = 0
        if isinstance(region, int):
            tiles = self.device.tiles if discrete else 0
            if region > tiles:
                raise XeError(errno.EINVAL, f"prefetch: region instance {region} is not in "
                              f"{self.device.name}'s mem_region_mask (VRAM tiles: {tiles})")
            vram_tile = max(region - 1, 0)
            region = "vram" if region else "system"
        if region not in ("vram", "system", "pref_loc"):
            raise XeError(errno.EINVAL, f"prefetch region {region!r}: choose vram, system, "
                          "pref_loc or an instance number")
        if region == "vram" and not discrete:
            raise XeError(errno.EINVAL, f"prefetch: {self.device.name} has no VRAM "
                          "(region not in mem_region_mask)")
        if start % PAGE_SIZE or end % PAGE_SIZE or end <= start:
            raise XeError(errno.EINVAL, f"prefetch [{start:#x}, {end:#x}) must be 4 KiB "
                          "aligned and non-empty")
        vm = self.vm
        if vm.killed:
            raise XeError(errno.ENOENT, f"VM {vm.name} is killed")
        rng = end - start
        if rng > vm.size or start > vm.size - rng:
            raise XeError(errno.EINVAL, f"prefetch [{start:#x}, {end:#x}): outside the VM "
                          f"(size {vm.size:#x})")
        self.garbage_collector()
        self.gpusvm.owner = svm_owner(self)
        # vm_bind_ioctl_ops_create(): the ranges of each CPU-mirror VMA
        work: list[tuple[SvmRange, GpuSvmCtx, Vram | None]] = []
        bos = []
        for v in vm.vmas_in(start, end):
            if v.is_userptr():
                v.userptr_pin_pages(self.mm)
                continue
            if v.bo is not None:
                if region == "pref_loc":
                    raise XeError(errno.EINVAL, f"prefetch pref_loc over BO VMA {v.start:#x}: "
                                  "the kernel indexes region_to_mem_type[-1] here (not modelled)")
                bos.append(v.bo)
                continue
            if not v.is_cpu_addr_mirror():
                continue
            target: Vram | None
            if region == "pref_loc":
                target = resolve_target(self, v, 0)    # xe_device_get_root_tile()
            else:
                target = self.device.vrams[vram_tile] if region == "vram" else None
            ctx = GpuSvmCtx(read_only=v.read_only(), devmem_possible=discrete,
                            check_pages_threshold=0)
            a = max(start, v.start)
            stop = min(end, v.end)
            while a < stop:
                try:
                    r = self.gpusvm.range_find_or_insert(a, v.start, v.end, ctx)
                except XeError as e:
                    if e.errno != errno.ENOENT:
                        raise
                    nxt = self._find_vma_start(a, stop)
                    if nxt is None:
                        break
                    a = nxt
                    continue
                if self._prefetch_range_valid(r, target):
                    # vm_bind_ioctl_ops_create(): "PREFETCH - RANGE IS VALID", the range
                    # is not queued (not migrated, not bound, not counted)
                    a = r.end
                    continue
                work.append((r, ctx, target))
                a = r.end
        # prefetch_ranges()
        for r, ctx, target in work:
            if target is None and r.in_vram():
                self.gpusvm.range_evict(r)
            if target is not None and needs_migrate(self, r, target):
                try:
                    alloc_vram(self, r, target, ctx)
                except XeError:
                    self.host.stats["prefetch_enodata"] += 1
                    return 0
            try:
                self.gpusvm.range_get_pages(r, ctx)
            except XeError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EFAULT, errno.EPERM):
                    raise
                self.host.stats["prefetch_enodata"] += 1
                return 0
        # ops_execute(): op_lock_and_prep() migrates the BOs, then everything is bound
        for bo in bos:
            if bo.purge_state and vm.profile.purgeable_type:
                # 7.0 vma_lock_and_validate() check_purged: DONTNEED EBUSY, purged EINVAL
                raise XeError(errno.EBUSY if bo.purge_state == 1 else errno.EINVAL,
                              f"prefetch: BO {bo.name} is "
                              f"{'DONTNEED' if bo.purge_state == 1 else 'purged'}")
            if region not in bo.placements:
                raise XeError(errno.EINVAL, f"prefetch: BO {bo.name} cannot be placed in "
                              f"{region} (placements {list(bo.placements)})")
        for bo in bos:
            bo.resident = region
        mask = self.device.tile_mask    # the op's tile_mask: every tile (xe_vma_create())
        for v in vm.vmas_in(start, end):
            if v.bo is not None or v.is_userptr():
                v.tile_present |= mask
                v.tile_invalidated &= ~mask
        for r, ctx, _ in work:
            # a later range's migration may have invalidated an earlier range's pages
            # (eviction under VRAM pressure): the bind sees the notifier sequence move
            # and the pages are fetched again, as the exec retry of ops_execute does
            for _ in range(3):
                try:
                    self.range_rebind(r, mask)
                    break
                except XeError as e:
                    if e.errno != errno.EAGAIN:
                        raise
                    self.gpusvm.range_get_pages(r, ctx)
            else:
                raise XeError(errno.EAGAIN, f"prefetch: range {r.start:#x} kept being "
                              "invalidated before its bind")
        return len(work)

    # ------------------------------------------------------ GPU access
    def ranges_info(self) -> list[dict[str, object]]:
        """The ``ranges`` event's list: address, size, location, unmapped flag."""
        return [{"addr": r.start, "range": r.size, "location": r.location(),
                 "unmapped": r.unmapped} for r in self.gpusvm.ranges()]

    def check_invariants(self) -> None:
        """Assert the SVM model's invariants (tests and the fuzzer call this).

        * every range lies inside one CPU-mirror VMA and its notifier;
        * ranges do not overlap;
        * a range valid on a tile maps exactly the pages the CPU page table
          holds now (no GPU mapping of unmapped or moved memory);
        * a range that is not unmapped/queued lies inside CPU-mapped memory or
          holds no valid mapping;
        * a range that says its pages are uniform (``pages_uniform``) has them all of one
          allocation, or all system pages.
        """
        prev_end = -1
        for r in self.gpusvm.ranges():
            assert r.start >= prev_end, f"overlapping ranges at {r.start:#x}"
            prev_end = r.end
            assert r.notifier.start <= r.start and r.end <= r.notifier.end, r
            if not self.vm.killed:      # a killed VM answers no VMA lookups
                vma = self.vm.find_vma_by_addr(r.start)
                assert vma is not None and vma.is_cpu_addr_mirror(), \
                    f"range {r} not inside a CPU-mirror VMA ({vma})"
                assert vma.start <= r.start and r.end <= vma.end, \
                    f"range {r} crosses VMA {vma}"
            if r.tile_present & ~r.tile_invalidated:
                assert r.pages is not None, f"bound range {r} has no pages"
                if not self.mm.same_slots(r.start, r.pages.runs, r.pages.idx):
                    for i, a in enumerate(range(r.start, r.end, PAGE_SIZE)):
                        cur = self.mm.page_at(a)
                        assert cur == r.pages[i], (
                            f"stale GPU mapping at {a:#x} in {r}: GPU page {r.pages[i]!r}, "
                            f"CPU page {cur!r}")
            if r.pages_uniform:
                assert r.pages is not None and len(r.pages.allocs()) <= 1, \
                    f"range {r} says its pages are of one allocation, they are not"
        for r in self.gc_list:
            assert r.unmapped and not r.removed, r
