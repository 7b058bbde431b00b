"""An Xe VM: the drm_gpuvm VA tree of VMAs, bind map/unmap and the VMA splits.

The tree is ``gpuvm_core.GpuVm``; this module turns its op lists into VMAs the
way vm_bind_ioctl_ops_parse() / xe_vma_op_commit() do: REMAP pieces keep the
attributes and the CREATE_MASK flags of the VMA they were cut from, new MAPs
get default attributes (bind), the cut VMA's attributes (madvise) or default
attributes with the replaced VMA's default PAT (CPU-mirror re-allocation).
Every refusal is decided before the tree changes, so a refused request
leaves the VM exactly as it was.

Kernel: drivers/gpu/drm/xe/xe_vm.c.
"""

from __future__ import annotations

import errno
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from gpuvm_core import GpuVm, GpuvmError, Ops
from pysvm.errors import XeError
from pysvm.xe.attr import PAGE_SIZE, BindFlag, CohMode, VmaMemAttr
from pysvm.xe.vma import CREATE_MASK, Vma, VmaFlag

if TYPE_CHECKING:
    from pysvm.mm.mmap import Mm
    from pysvm.mm.mmu_notifier import IntervalNotifier, NotifierRange
    from pysvm.xe.bo import Bo
    from pysvm.xe.device import Device
    from pysvm.xe.host import XeHost
    from pysvm.xe.profile import Profile
    from pysvm.xe.svm import Svm
    from pysvm.xe.vm_faults import FaultEntry

__all__ = ["Vm", "BindOpArgs", "DEFAULT_VA_BITS"]

#: Xe VM size is 1 << xe->info.va_bits; 48 on the modelled platform.
DEFAULT_VA_BITS: Final = 48


# One parsed op: (old VMA removed or None, new VMAs inserted).
_Parsed = list[tuple[Vma | None, list[Vma]]]


_NO_FLAGS = BindFlag(0)

_addr = operator.attrgetter("addr")     # a GpuVa's start, read in C


@dataclass(frozen=True)
class BindOpArgs:
    """One struct drm_xe_vm_bind_op of an array of binds: ``op`` is ``"map"``,
    ``"map_userptr"`` or ``"unmap"``; ``bo`` a BO, the name of none (ENOENT at lookup) or
    None."""

    op: str
    addr: int
    range: int
    flags: BindFlag = _NO_FLAGS
    pat_index: int = 0
    bo: Bo | str | None = None
    offset: int = 0


def _aligned(x: int) -> bool:
    return x % PAGE_SIZE == 0


class Vm:
    """A GPU VM of one device. Kernel: struct xe_vm.

    ``svm`` is the SVM state of a fault-mode VM (:class:`pysvm.xe.svm.Svm`, made by the
    composition root right after the VM, as xe_vm_create() calls xe_svm_init());
    None otherwise;
    ``killed`` mirrors xe_vm_kill() (closed-or-banned: further binds and
    madvise fail with ENOENT).
    """

    def __init__(self, host: XeHost, name: str, device: Device, fault_mode: bool, *,
                 va_bits: int = DEFAULT_VA_BITS, mm: Mm | None = None) -> None:
        self.host = host
        #: The address space of the process that created the VM (its ioctls' current->mm:
        #: a userptr bind pins and watches pages there, drivers/gpu/drm/xe/xe_userptr.c
        #: xe_userptr_setup()); the host's (main) process's when none is given.
        self.mm: Mm = host.mm if mm is None else mm
        self.name = name
        self.device = device
        self.fault_mode = fault_mode
        self.size = 1 << va_bits
        self.gpuvm = GpuVm(0, self.size)
        #: addr -> Vma for every VA in ``gpuvm``; every ordered walk goes through the tree
        #: (drm_gpuvm's rbtree and list), this only turns a GpuVa back into its Vma.
        self._vmas: dict[int, Vma] = {}
        self.svm: Svm | None = None
        self.killed = False
        self.last_fault_vma: Vma | None = None
        #: while an array of binds runs: the ops committed so far, for the unwind
        #: (vm_bind_ioctl_ops_unwind()); None otherwise
        self._journal: list[_Parsed] | None = None
        #: 7.0: failed GPU faults saved for DRM_XE_VM_GET_PROPERTY(FAULTS)
        #: (vm->faults.list; pysvm.xe.vm_faults).
        self.fault_entries: list[FaultEntry] = []

    # -- lookup -------------------------------------------------------------

    @property
    def profile(self) -> Profile:
        """The kernel profile of the machine this VM lives in."""
        return self.host.profile

    def __iter__(self) -> Iterator[Vma]:
        """The VMAs in address order (a snapshot). Kernel: drm_gpuvm_for_each_va()."""
        return iter(list(map(self._vmas.__getitem__, map(_addr, self.gpuvm))))

    def __len__(self) -> int:
        return len(self._vmas)

    def vmas_in(self, start: int, end: int) -> list[Vma]:
        """VMAs intersecting [start, end) in address order.

        Kernel: drm_gpuvm_for_each_va_range(). Precisely: every VMA with ``addr < end``
        and ``end > start``, so for ``end <= start`` the VMA holding ``start`` when it
        also starts below ``end`` (at most one), else none.
        """
        if end <= start:
            if not 0 <= start < self.size:
                return []
            va = self.gpuvm.find_first(start, 1)
            return [self._vmas[va.addr]] if va is not None and va.addr < end else []
        lo, hi = max(start, 0), min(end, self.size)
        if hi <= lo:
            return []
        va = self.gpuvm.find_first(lo, hi - lo)
        if va is None:
            return []
        if va.end >= hi:        # the common case: one VMA covers the rest of the span
            return [self._vmas[va.addr]]
        return list(map(self._vmas.__getitem__, map(_addr, self.gpuvm.va_range(lo, hi - lo))))

    def find_vma_by_addr(self, addr: int) -> Vma | None:
        """The VMA overlapping the 4 KiB window [addr, addr + 4 KiB), or None.

        The cached last-fault VMA wins if it overlaps that window (not only if
        it contains ``addr``); otherwise the lowest VMA overlapping the window,
        which is None on a closed or banned (killed) VM. For page-aligned
        addresses this is "the VMA containing addr"; for an unaligned address
        it may be the next VMA (xe_vm_find_cpu_addr_mirror_vma_range() passes
        ``end + 1``, so a VMA one 4 KiB hole beyond ``end`` is found).
        Kernel: xe_vm_find_vma_by_addr() (vma_matches(),
        xe_vm_find_overlapping_vma()).
        """
        cached = self.last_fault_vma
        if (cached is not None and self._vmas.get(cached.addr) is cached
                and addr <= cached.end - 1 and addr + PAGE_SIZE - 1 >= cached.addr):
            return cached
        if self.killed:
            return None
        va = self.gpuvm.find_first(addr, PAGE_SIZE)
        return None if va is None else self._vmas.get(va.addr)

    def vma_at(self, addr: int) -> Vma | None:
        """The VMA containing ``addr`` as the GPU's page tables see it: no last-fault
        cache and no closed/banned test (a killed VM's page tables stay).

        Kernel: none (the hardware walks the page tables; only a fault asks the
        driver, through :meth:`find_vma_by_addr`)."""
        va = self.gpuvm.find_first(addr, 1)
        return None if va is None else self._vmas.get(va.addr)

    def query(self, start: int, range: int) -> list[Vma]:  # noqa: A002
        """VMAs the kernel's memory-range-attribute query reports, in address order.

        The kernel checks neither alignment nor the VM's size nor a closed VM
        here: it walks drm_gpuvm_for_each_va_range(start, start + range), so a
        zero ``range`` reports the VMA straddling ``start`` (if any) and u64
        wrap-around follows the interval-tree arithmetic. Each VMA yields
        start, end, devmem_fd, migration_policy, atomic and pat_index (not
        default_pat_index or flags, which the trace adds).
        Kernel: xe_vm_query_vmas_attrs_ioctl() / get_mem_attrs().
        """
        ops = self._ops(lambda: self.gpuvm.prefetch_ops_create(start, range))
        return [self._vmas[op.as_dict()["addr"]] for op in ops]

    def _check_alive(self) -> None:
        if self.killed:
            raise XeError(errno.ENOENT, f"VM {self.name} is closed or banned (killed)")

    def close(self) -> None:
        """Close the VM for good: its SVM state is torn down and every VMA destroyed.

        Kernel: xe_vm_close_and_put() (xe_vm.c): xe_vm_close() (the VM counts as
        closed from here: binds, madvise and faults refuse it), xe_svm_close() (SVM
        ranges unbound and removed, the VM's pagemap references dropped), then every
        VMA taken out of the VA tree (drm_gpuvm_for_each_va_safe() -> xe_vm_remove_vma())
        and destroyed (preferred_loc references dropped; a WILLNEED VMA puts its BO's
        willneed hold). Device pages stay with their zdd until the CPU touches them.
        """
        self.kill()
        if self.svm is not None and not self.svm.closed:
            self.svm.close()
        for va in list(self.gpuvm):
            v = self._vmas[va.addr]
            self.gpuvm.remove(va)                     # xe_vm_remove_vma()
            if v.bo is not None:
                v.bo.vma_count -= 1
                if not v.purgeable:
                    v.bo.willneed_put()
            v.flags |= VmaFlag.DESTROYED
            v.attr.release()
            self._userptr_notifier_remove(v)
        self._vmas.clear()
        self.last_fault_vma = None

    def kill(self) -> None:
        """Ban the VM; later binds, madvise and faults fail. Kernel: xe_vm_kill()."""
        if not self.killed:
            self.killed = True
            self.host.stats["vms_killed"] += 1

    # -- op parsing and commit ---------------------------------------------

    def _svm_has_ranges(self, start: int, end: int) -> bool:
        return self.svm is not None and start < end and bool(self.svm.has_ranges(start, end))

    def _ops(self, make: Callable[[], Ops]) -> Ops:
        try:
            return make()
        except GpuvmError as e:
            raise XeError(e.errno or errno.EINVAL, str(e)) from None

    def _remap_pieces(self, d: dict[str, Any], old: Vma) -> tuple[list[Vma], int, int]:
        """New VMAs for a REMAP's prev/next, each inheriting old's attrs and flags."""
        flags = VmaFlag(old.flags & CREATE_MASK)
        pieces: list[Vma] = []
        start, end = old.start, old.end
        for key in ("prev", "next"):
            m = d[key]
            if m is None:
                continue
            v = Vma(self, m["addr"], m["range"], old.bo, m["offset"], flags, old.attr.copy(),
                    userptr=old.userptr)
            v.tile_present = old.tile_present
            v.purgeable = old.purgeable
            pieces.append(v)
            if key == "prev":
                start = m["addr"] + m["range"]
            else:
                end = m["addr"]
        return pieces, start, end

    def _commit(self, ops: Ops, parsed: _Parsed) -> None:
        failed = self.gpuvm.apply(ops)
        if failed:  # cannot happen for a freshly generated list; never hide it
            raise RuntimeError(f"gpuvm refused {failed} inserts of a fresh op list")
        for old, news in parsed:
            if old is not None:
                if old.bo is not None:
                    old.bo.vma_count -= 1
                    if not old.purgeable:
                        old.bo.willneed_put()
                del self._vmas[old.addr]
                old.flags |= VmaFlag.DESTROYED
                if self._journal is None:   # in an array: after the last op (or restored)
                    old.attr.release()
                    self._userptr_notifier_remove(old)
                if self.last_fault_vma is old:
                    self.last_fault_vma = None
            for v in news:
                if v.bo is not None:
                    v.bo.vma_count += 1
                    if not v.purgeable:
                        v.bo.willneed_get()
                self._vmas[v.addr] = v
                if v.is_userptr():
                    self._userptr_notifier_insert(v)
        if self._journal is not None:
            self._journal.append(parsed)

    def _unwind(self, journal: list[_Parsed]) -> None:
        """Undo committed ops, newest first: the VMAs they made leave the tree and the
        ones they replaced come back, with their attributes, flags and BO accounting.
        Kernel: vm_bind_ioctl_ops_unwind() (xe_vm.c), run by xe_vm_bind_ioctl() when
        any op of the array fails after earlier ops were parsed."""
        for parsed in reversed(journal):
            for _, news in reversed(parsed):
                for v in news:
                    va = self.gpuvm.find(v.addr, v.range)
                    assert va is not None, v
                    self.gpuvm.remove(va)
                    del self._vmas[v.addr]
                    v.flags |= VmaFlag.DESTROYED
                    v.attr.release()
                    self._userptr_notifier_remove(v)
                    if v.bo is not None:
                        v.bo.vma_count -= 1
                        if not v.purgeable:
                            v.bo.willneed_put()
                    if self.last_fault_vma is v:
                        self.last_fault_vma = None
            for old, _ in reversed(parsed):
                if old is None:
                    continue
                self.gpuvm.insert(old.addr, old.range,
                                  old.bo.handle if old.bo is not None else None, old.offset)
                self._vmas[old.addr] = old
                old.flags &= ~VmaFlag.DESTROYED
                if old.bo is not None:
                    old.bo.vma_count += 1
                    if not old.purgeable:
                        old.bo.willneed_get()

    def _userptr_notifier_insert(self, v: Vma) -> None:
        """Give a userptr VMA its MMU interval notifier over its CPU range.

        Kernel: xe_vma_create() -> xe_userptr.c xe_userptr_setup() ->
        mmu_interval_notifier_insert() with vma_userptr_invalidate() as callback.
        """
        mm = self.mm
        if mm.alive and v.notifier is None:
            v.notifier = mm.interval_notifier_insert(
                v.offset, v.offset + v.range,
                lambda n, nrange, seq: self._userptr_invalidate(v, n, nrange, seq))

    def _userptr_notifier_remove(self, v: Vma) -> None:
        """Kernel: xe_vma_destroy_late() -> xe_userptr_remove() ->
        mmu_interval_notifier_remove()."""
        if v.notifier is not None:
            self.mm.interval_notifier_remove(v.notifier)
            v.notifier = None

    def _userptr_invalidate(self, v: Vma, n: IntervalNotifier, nrange: NotifierRange,
                            seq: int) -> None:
        """The CPU pages under a userptr VMA change (munmap, migration, reclaim, ...).

        Kernel: xe_userptr.c vma_userptr_invalidate() -> __vma_userptr_invalidate(): in
        fault mode a VMA bound before (userptr->initial_bind; here: PTEs present) has its
        PTEs zapped by xe_vm_invalidate_vma() (tile_invalidated = tile_mask), so the next
        GPU access faults and xe_pagefault_handle_vma() repins it. Outside fault mode the
        VMA goes on vm->userptr.invalidated for the exec / rebind worker to repin and
        rebind; that worker is not modelled, the PTEs are left as they are.
        """
        if self.fault_mode and v.tile_present and not v.flags & VmaFlag.DESTROYED:
            v.tile_invalidated |= v.tile_present

    @staticmethod
    def _discard(parsed: _Parsed) -> None:
        for _, news in parsed:
            for v in news:
                v.attr.release()

    def _parse_remove(self, d: dict[str, Any], parsed: _Parsed, *, madvise: bool,
                      allow_svm_unmap: bool) -> Vma:
        """Parse one REMAP or UNMAP op (vm_bind_ioctl_ops_parse); return the old VMA."""
        if d["op"] == "remap":
            old: Vma = self._vmas[d["unmap"]["addr"]]
            pieces, s, e = self._remap_pieces(d, old)
            parsed.append((old, pieces))
            if old.is_cpu_addr_mirror() and self._svm_has_ranges(s, e):
                if madvise:
                    assert self.svm is not None
                    self.svm.unmap_address_range(s, e)
                else:
                    raise XeError(errno.EBUSY, f"SVM ranges still live in [{s:#x}, {e:#x}) of "
                                  f"CPU-mirror VMA {old.addr:#x}+{old.range:#x}")
            return old
        gone: Vma = self._vmas[d["addr"]]
        parsed.append((gone, []))
        # ALLOW_SVM_UNMAP only lifts the EBUSY: the ranges stay (the VMA that
        # replaces this one covers them); nothing is unmapped
        if (gone.is_cpu_addr_mirror() and not allow_svm_unmap
                and self._svm_has_ranges(gone.start, gone.end)):
            raise XeError(errno.EBUSY, f"SVM ranges still live in CPU-mirror VMA "
                          f"{gone.addr:#x}+{gone.range:#x}")
        return gone


    # -- bind argument stages (shared by one bind and an array of binds) ------

    def _check_map_args(self, addr: int, range: int, *, flags: BindFlag,  # noqa: A002
                        pat_index: int, bo: Bo | str | None, offset: int,
                        userptr: bool) -> None:
        """One MAP / MAP_USERPTR op's checks in vm_bind_ioctl_check_args() (xe_vm.c), in
        its order; all EINVAL except 7.0 DECOMPRESS (EOPNOTSUPP). Nothing is changed."""
        is_null = bool(flags & BindFlag.NULL)
        is_mirror = bool(flags & BindFlag.CPU_ADDR_MIRROR)
        has_obj = bo is not None
        what = f"bind map [{addr:#x}, +{range:#x})"
        dev = self.device
        if is_mirror and not self.fault_mode:
            raise XeError(errno.EINVAL, f"{what}: cpu_addr_mirror needs a fault-mode VM")
        if pat_index >= dev.n_pat_entries:
            raise XeError(errno.EINVAL,
                          f"{what}: pat_index {pat_index} >= {dev.n_pat_entries} entries")
        coh = dev.pat_coh_mode(pat_index)
        if coh == CohMode.INVALID:
            raise XeError(errno.EINVAL, f"{what}: pat_index {pat_index} is a reserved PAT entry")
        if coh > self.profile.max_coh_mode:
            raise XeError(errno.EINVAL,
                          f"{what}: pat_index {pat_index} has an unknown coherency mode {coh}")
        if flags & BindFlag.MADVISE_AUTORESET and not self.profile.autoreset_gating:
            raise XeError(errno.EINVAL, f"{what}: the autoreset flag does not exist in kernel "
                          f"{self.profile.name}")
        if flags & BindFlag.DECOMPRESS:
            if not self.profile.decompress_flag:
                raise XeError(errno.EINVAL, f"{what}: the decompress flag does not exist in "
                              f"kernel {self.profile.name}")
            raise XeError(errno.EOPNOTSUPP, f"{what}: the decompress flag is not modelled")
        if has_obj and (is_null or is_mirror):
            raise XeError(errno.EINVAL, f"{what}: a BO cannot be given with null/cpu_addr_mirror")
        if offset and (is_null or is_mirror):
            raise XeError(errno.EINVAL, f"{what}: offset must be 0 with null/cpu_addr_mirror")
        if userptr and (is_null or is_mirror):
            raise XeError(errno.EINVAL, f"{what}: null/cpu_addr_mirror need op map, not userptr")
        if not has_obj and not userptr and not is_null and not is_mirror:
            raise XeError(errno.EINVAL, f"{what}: a map needs a BO, null or cpu_addr_mirror")
        if userptr and has_obj:
            raise XeError(errno.EINVAL, f"{what}: a userptr map takes no BO")
        if userptr and coh == CohMode.NONE:
            raise XeError(errno.EINVAL, f"{what}: userptr needs a coherent PAT index")
        if self.profile.coh_2way and (userptr or is_mirror) and dev.l2_flush_refuses(pat_index):
            raise XeError(errno.EINVAL, f"{what}: device {dev.name} has the optimised L2 "
                          f"flush: a userptr/cpu_addr_mirror map needs pat_index 19 or a "
                          f"2-way coherent one, not {pat_index}")
        if flags & BindFlag.MADVISE_AUTORESET and (not is_mirror or userptr):
            raise XeError(errno.EINVAL, f"{what}: autoreset needs a cpu_addr_mirror map")
        if not (_aligned(addr) and _aligned(offset) and _aligned(range)) or range == 0:
            raise XeError(errno.EINVAL, f"{what}: addr, range and offset must be 4 KiB aligned "
                          "and range non-zero")

    def _check_in_vm(self, what: str, addr: int, range: int) -> None:  # noqa: A002
        """xe_vm_bind_ioctl(): ``range > vm->size || addr > vm->size - range`` EINVAL."""
        if range > self.size or addr > self.size - range:
            raise XeError(errno.EINVAL, f"{what}: outside the VM (size {self.size:#x})")

    def _check_map_bo(self, addr: int, range: int, *, pat_index: int,  # noqa: A002
                      bo: Bo | str | None, offset: int) -> None:
        """xe_vm_bind_ioctl(): drm_gem_object_lookup() ENOENT, then
        xe_vm_bind_ioctl_validate_bo() EINVAL."""
        what = f"bind map [{addr:#x}, +{range:#x})"
        dev = self.device
        coh = dev.pat_coh_mode(pat_index)
        if isinstance(bo, str):
            raise XeError(errno.ENOENT, f"{what}: no BO named {bo!r}")
        if bo is not None:
            if bo.device is not dev:
                raise XeError(errno.ENOENT,
                              f"{what}: BO {bo.name} belongs to device {bo.device.name}")
            if range > bo.size or offset > bo.size - range:
                raise XeError(errno.EINVAL, f"{what}: offset {offset:#x} + range exceeds BO "
                              f"{bo.name} size {bo.size:#x}")
            if bo.cpu_caching == "wb" and coh == CohMode.NONE:
                # xe_vm_bind_ioctl_validate_bo(): a WB-cached BO needs a coherent PAT
                raise XeError(errno.EINVAL, f"{what}: BO {bo.name} is CPU-cached (WB) but "
                              f"pat_index {pat_index} is not coherent")
            if bo.imported and coh == CohMode.NONE:
                # xe_vm_bind_ioctl_validate_bo(): an imported BO's caching is unknown
                raise XeError(errno.EINVAL, f"{what}: imported BO {bo.name} has no CPU "
                              f"caching mode; pat_index {pat_index} is not coherent")
            if bo.imported and self.profile.coh_2way and dev.l2_flush_refuses(pat_index):
                # xe_vm_bind_ioctl_validate_bo() (7.0): the optimised L2 flush rule
                raise XeError(errno.EINVAL, f"{what}: imported BO {bo.name} on device "
                              f"{dev.name} with the optimised L2 flush needs pat_index 19 "
                              f"or a 2-way coherent one, not {pat_index}")

    # -- bind ---------------------------------------------------------------

    def bind_map(self, addr: int, range: int, *, flags: BindFlag = _NO_FLAGS,  # noqa: A002
                 pat_index: int = 0, bo: Bo | str | None = None, offset: int = 0,
                 userptr: bool = False) -> list[Vma]:
        """Map [addr, addr+range): a BO, a userptr, a NULL or a CPU-address-mirror VMA.

        Refusals in the kernel's order: vm_bind_ioctl_check_args() (mirror
        needs a fault-mode VM; PAT index in the table, not reserved, known
        coherency; then the flag/op/object combinations; then alignment), all
        ``EINVAL``; a closed or banned VM ``ENOENT``; outside the VM
        ``EINVAL``; the BO lookup ``ENOENT``; xe_vm_bind_ioctl_validate_bo()
        (range and offset inside the BO) ``EINVAL``; live SVM ranges in a
        cut-out ``EBUSY``. ``bo`` may be a string: a handle that names no BO
        -- it counts as "an object was given" for the argument checks and
        fails with ``ENOENT`` only where the kernel looks it up. CHECK_PXP is
        accepted and has no effect (no BO is PXP-protected in the model);
        DECOMPRESS is an unknown flag in 6.18 (``EINVAL``) and not modelled in
        the newest profile (``EOPNOTSUPP``). A BO created with cpu_caching WB,
        or an imported one, refuses a COH_NONE PAT index (``EINVAL``); a BO
        whose trace gave no cpu_caching is not checked.
        The tree update follows vm_bind_ioctl_ops_create()/_parse() with
        drm_gpuvm_sm_map_ops_create(): every new MAP gets default attributes
        with ``pat_index`` as its default PAT. In the newest profile a
        CPU-mirror map is first widened over default-attribute mirror
        neighbours (:meth:`find_cpu_addr_mirror_vma_range`, so they merge into
        the new VMA, taking its flags and PAT) and may UNMAP mirror VMAs that
        still have SVM ranges (ALLOW_SVM_UNMAP). Returns the VMA(s) the MAP made.
        Kernel: xe_vm_bind_ioctl() with DRM_XE_VM_BIND_OP_MAP / MAP_USERPTR.
        """
        what = f"bind map [{addr:#x}, +{range:#x})"
        self._check_map_args(addr, range, flags=flags, pat_index=pat_index, bo=bo,
                             offset=offset, userptr=userptr)
        self._check_alive()
        self._check_in_vm(what, addr, range)
        self._check_map_bo(addr, range, pat_index=pat_index, bo=bo, offset=offset)
        is_null = bool(flags & BindFlag.NULL)
        is_mirror = bool(flags & BindFlag.CPU_ADDR_MIRROR)
        dev = self.device
        if bo is not None:
            assert not isinstance(bo, str)
            if self.profile.purgeable_type and bo.purge_state:
                # xe_vma_create() (7.0): a new WILLNEED VMA on a DONTNEED BO is EBUSY,
                # on a purged BO EINVAL
                raise XeError(errno.EBUSY if bo.purge_state == 1 else errno.EINVAL,
                              f"{what}: BO {bo.name} is "
                              f"{'DONTNEED' if bo.purge_state == 1 else 'purged'}")
        vflags = VmaFlag(0)
        if flags & BindFlag.READONLY:
            vflags |= VmaFlag.READ_ONLY
        if is_null:
            vflags |= VmaFlag.SPARSE
        if is_mirror:
            vflags |= VmaFlag.SYSTEM_ALLOCATOR
        if flags & BindFlag.DUMPABLE:
            vflags |= VmaFlag.DUMPABLE
        if flags & BindFlag.MADVISE_AUTORESET:
            vflags |= VmaFlag.MADV_AUTORESET
        immediate = bool(flags & BindFlag.IMMEDIATE) or not self.fault_mode
        map_start, map_end = addr, addr + range
        allow_svm_unmap = False
        if is_mirror and self.profile.absorb_neighbours:
            # newest: a mirror bind swallows default-attr mirror neighbours
            # (vm_bind_ioctl_ops_create) and may UNMAP VMAs with SVM ranges
            map_start, map_end = self.find_cpu_addr_mirror_vma_range(map_start, map_end)
            allow_svm_unmap = True
        ops = self._ops(lambda: self.gpuvm.sm_map_ops_create(
            map_start, map_end - map_start, bo.handle if bo is not None else None, offset))
        parsed: _Parsed = []
        created: list[Vma] = []
        try:
            for op in ops:
                d = op.as_dict()
                if d["op"] == "map":
                    v = Vma(self, d["addr"], d["range"], bo, d["offset"], vflags,
                            VmaMemAttr.default(pat_index), userptr=userptr)
                    if userptr:
                        # xe_vm.c new_vma(): a new userptr VMA is pinned at once; its error
                        # (EFAULT: no CPU VMA there; EPERM: a writable VMA over read-only
                        # memory) destroys the VMA and vm_bind_ioctl_ops_unwind() undoes
                        # the ops before it: nothing changes
                        v.userptr_pin_pages(self.mm)
                    if immediate and not is_mirror and not is_null:
                        # xe_vma_create() sets vma->tile_mask to every tile (for_each_tile);
                        # the bind's page-table update runs for each tile of that mask
                        v.tile_present = dev.tile_mask
                    parsed.append((None, [v]))
                    created.append(v)
                else:
                    self._parse_remove(d, parsed, madvise=False,
                                       allow_svm_unmap=allow_svm_unmap)
        except XeError:
            self._discard(parsed)
            raise
        self._commit(ops, parsed)
        self.host.stats["binds"] += 1
        return created

    def bind_unmap(self, addr: int, range: int) -> None:  # noqa: A002
        """Unmap [addr, addr+range), trimming VMAs that straddle its ends.

        Refusals in the kernel's order: alignment / zero range ``EINVAL``,
        closed or banned VM ``ENOENT``, outside the VM ``EINVAL``, a
        CPU-mirror VMA (or cut-out part) with live SVM ranges ``EBUSY``.
        Trimmed pieces keep the attributes and CREATE_MASK flags of the VMA
        they were cut from. Kernel: xe_vm_bind_ioctl() with DRM_XE_VM_BIND_OP_UNMAP
        (drm_gpuvm_sm_unmap_ops_create + vm_bind_ioctl_ops_parse).
        """
        what = f"bind unmap [{addr:#x}, +{range:#x})"
        self._check_unmap_args(addr, range)
        self._check_alive()
        self._check_in_vm(what, addr, range)
        ops = self._ops(lambda: self.gpuvm.sm_unmap_ops_create(addr, range))
        parsed: _Parsed = []
        try:
            for op in ops:
                self._parse_remove(op.as_dict(), parsed, madvise=False, allow_svm_unmap=False)
        except XeError:
            self._discard(parsed)
            raise
        self._commit(ops, parsed)
        self.host.stats["unbinds"] += 1

    # -- an array of binds (DRM_IOCTL_XE_VM_BIND with num_binds > 1) ----------

    @staticmethod
    def _check_unmap_args(addr: int, range: int) -> None:  # noqa: A002
        """An UNMAP op's alignment checks in vm_bind_ioctl_check_args(): EINVAL."""
        if not (_aligned(addr) and _aligned(range)) or range == 0:
            raise XeError(errno.EINVAL, f"bind unmap [{addr:#x}, +{range:#x}): addr and "
                          "range must be 4 KiB aligned and range non-zero")

    def bind_array(self, ops: Sequence[BindOpArgs]) -> None:
        """Several bind ops in one ioctl, refused as a whole before any change by every
        argument-stage check, stage by stage over all ops as the kernel orders them:

        1. vm_bind_ioctl_check_args(): each op's checks (EINVAL; 7.0 DECOMPRESS
           EOPNOTSUPP), op 0 first - a bad op k refuses the array even when ops before it
           are fine;
        2. the closed/banned VM (ENOENT), once;
        3. each op inside the VM (EINVAL);
        4. each op's BO: drm_gem_object_lookup() (ENOENT), xe_vm_bind_ioctl_validate_bo()
           (EINVAL).

        An empty array passes stage 2 and ends as 0 (``-ENODATA`` turned into 0 after the
        fences are signalled). Then each op is created and parsed in order
        (vm_bind_ioctl_ops_create(), vm_bind_ioctl_ops_parse()) with the same VMA effects
        as one bind. When an op fails there (live SVM ranges EBUSY, a DONTNEED or purged
        BO in xe_vma_create() EBUSY / EINVAL), the earlier ops are unwound
        (vm_bind_ioctl_ops_unwind()) and nothing is left changed. Not modelled: the
        allocation failures (ENOBUFS from xe_vma_ops_alloc() for an array, ENOMEM) and
        the vector copy (EFAULT), memory and pointer faults the trace cannot ask for.
        Kernel: xe_vm_bind_ioctl() (xe_vm.c).
        """
        for o in ops:
            if o.op == "unmap":
                self._check_unmap_args(o.addr, o.range)
            else:
                self._check_map_args(o.addr, o.range, flags=o.flags, pat_index=o.pat_index,
                                     bo=o.bo, offset=o.offset, userptr=o.op == "map_userptr")
        self._check_alive()
        for i, o in enumerate(ops):
            self._check_in_vm(f"bind op {i} [{o.addr:#x}, +{o.range:#x})", o.addr, o.range)
        for o in ops:
            if o.op != "unmap" and o.bo is not None:
                self._check_map_bo(o.addr, o.range, pat_index=o.pat_index, bo=o.bo,
                                   offset=o.offset)
        # Each op is created and parsed (committed into the tree) in order; when one
        # fails, every earlier op is unwound and the ioctl fails with its errno
        # (xe_vm_bind_ioctl(): goto unwind_ops -> vm_bind_ioctl_ops_unwind()).
        stats = self.host.stats
        counted = {k: stats[k] for k in ("binds", "unbinds") if k in stats}
        journal: list[_Parsed] = []
        self._journal = journal
        try:
            for o in ops:
                if o.op == "unmap":
                    self.bind_unmap(o.addr, o.range)
                else:
                    self.bind_map(o.addr, o.range, flags=o.flags, pat_index=o.pat_index,
                                  bo=o.bo, offset=o.offset, userptr=o.op == "map_userptr")
        except XeError:
            self._unwind(journal)
            for k in ("binds", "unbinds"):   # the failed ioctl counts no bind
                if k in counted:
                    stats[k] = counted[k]
                else:
                    stats.pop(k, None)
            raise
        finally:
            self._journal = None
        for parsed in journal:          # the replaced VMAs are destroyed only now
            for old, _ in parsed:
                if old is not None:
                    old.attr.release()
                    self._userptr_notifier_remove(old)

    # -- xe_vm_alloc_vma ----------------------------------------------------

    def alloc_madvise_vma(self, start: int, range: int) -> None:  # noqa: A002
        """Split VMAs at start and start+range; pieces keep their VMA's attrs.

        BO-backed VMAs are not split. SVM ranges in a cut-out part are
        unmapped at once (xe_svm_unmap_address_range). Splitting a userptr VMA
        fails with EFAULT and changes nothing: drm_gpuvm_madvise_ops_create()'s
        MAP op has no gem.offset, so new_vma() pins the userptr at CPU address 0
        and xe_vm_alloc_vma() unwinds.
        Kernel: xe_vm_alloc_madvise_vma() -> xe_vm_alloc_vma(is_madvise=true).
        """
        ops = self._ops(lambda: self.gpuvm.madvise_ops_create(start, range))
        parsed: _Parsed = []
        cut: Vma | None = None
        for op in ops:
            d = op.as_dict()
            if d["op"] == "remap":
                cut = self._parse_remove(d, parsed, madvise=True, allow_svm_unmap=False)
            elif d["op"] == "map":
                if cut is None:
                    raise RuntimeError("madvise op list: MAP without a preceding REMAP")
                if cut.is_userptr():
                    # the madvise MAP carries only the VA (gem.offset 0), so new_vma()
                    # creates a userptr VMA at CPU address 0 whose pin fails
                    self._discard(parsed)
                    raise XeError(errno.EFAULT, f"madvise [{start:#x}, +{range:#x}) splits "
                                  f"userptr VMA {cut.start:#x}: the new piece would pin CPU "
                                  "address 0 (EFAULT), the split is unwound")
                v = Vma(self, d["addr"], d["range"], None, d["offset"],
                        VmaFlag(cut.flags & CREATE_MASK), cut.attr.copy(), userptr=cut.userptr)
                v.tile_present = cut.tile_present
                parsed.append((None, [v]))
                cut = None
            else:
                raise RuntimeError(f"madvise op list holds a {d['op']} op")
        if parsed:
            self._commit(ops, parsed)
            self.host.stats["madvise_splits"] += sum(1 for old, _ in parsed if old is not None)

    def alloc_cpu_addr_mirror_vma(self, start: int, range: int) -> Vma:  # noqa: A002
        """Replace whatever covers [start, start+range) by one default-attr CPU-mirror VMA.

        Neighbours outside the range are trimmed and keep their attributes; the
        new VMA takes CREATE_MASK flags and default_pat_index from the last
        VMA it replaces (the last UNMAP/REMAP of the op list). UNMAP of a VMA
        with live SVM ranges is allowed only in the newest profile
        (ALLOW_SVM_UNMAP; the ranges are left alone); a REMAP whose cut-out
        still holds SVM ranges fails with EBUSY in both. Over a hole (no VMA
        replaced) the kernel would use an uninitialised default PAT and no
        mirror flag; the model refuses with EINVAL instead.
        Kernel: xe_vm_alloc_cpu_addr_mirror_vma() -> xe_vm_alloc_vma(is_madvise=false).
        """
        self._check_alive()
        ops = self._ops(lambda: self.gpuvm.sm_map_ops_create(start, range, None, 0))
        parsed: _Parsed = []
        last: Vma | None = None
        new: Vma | None = None
        try:
            for op in ops:
                d = op.as_dict()
                if d["op"] == "map":
                    if last is None:
                        raise XeError(errno.EINVAL, f"no VMA covers [{start:#x}, +{range:#x}) to "
                                      "re-allocate as CPU mirror")
                    pat = last.attr.default_pat_index
                    new = Vma(self, d["addr"], d["range"], None, 0,
                              VmaFlag(last.flags & CREATE_MASK), VmaMemAttr.default(pat))
                    parsed.append((None, [new]))
                else:
                    last = self._parse_remove(d, parsed, madvise=False,
                                              allow_svm_unmap=self.profile.allow_svm_unmap)
        except XeError:
            self._discard(parsed)
            raise
        assert new is not None
        self._commit(ops, parsed)
        self.host.stats["mirror_vma_allocs"] += 1
        return new

    def find_cpu_addr_mirror_vma_range(self, start: int, end: int) -> tuple[int, int]:
        """Widen [start, end) over default-attr CPU-mirror neighbours (for merging).

        Newest profile only (6.18 has no such function: the span comes back
        unchanged). The left neighbour is looked up at ``start - 4 KiB``, the
        right one at ``end + 1`` through :meth:`find_vma_by_addr`'s 4 KiB
        window, so -- a kernel quirk kept here -- a default mirror VMA that
        starts one 4 KiB hole after ``end`` is absorbed too (and a following
        re-allocation fills the hole), while a hole before ``start`` is not
        crossed. Kernel: xe_vm_find_cpu_addr_mirror_vma_range() (newest).
        """
        if not self.profile.absorb_neighbours:
            return start, end
        if start >= PAGE_SIZE:
            prev = self.find_vma_by_addr(start - PAGE_SIZE)
            if prev is not None and prev.is_cpu_addr_mirror() and prev.has_default_mem_attrs():
                start = prev.start
        if end < self.size:
            nxt = self.find_vma_by_addr(end + 1)
            if nxt is not None and nxt.is_cpu_addr_mirror() and nxt.has_default_mem_attrs():
                end = nxt.end
        return start, end
