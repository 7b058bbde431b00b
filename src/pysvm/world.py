"""The composition root: one simulated machine, and the public API of the model.

A :class:`World` builds and wires the layers explicitly: the processes, each with its
own address space (:class:`pysvm.mm.mmap.Mm`; every trace starts with one, ``main``),
the drm_pagemap subsystem (:class:`pysvm.xe.pagemap.
PagemapSystem`), and for each ``device`` event a :class:`pysvm.xe.device.Device`
probed in that subsystem, for each fault-mode ``vm_create`` a :class:`pysvm.xe.vm.Vm`
with its :class:`pysvm.xe.svm.Svm` (mirroring the address space of the process that
created it) and the VM's pagemap references. Nothing is
registered by importing a module; the lower layers call back up only through the
Protocols they declare (:class:`pysvm.xe.host.XeHost`, implemented here;
:class:`pysvm.drm.gpusvm.GpuSvmOps`, implemented by ``Svm``;
:class:`pysvm.drm.pagemap.PagemapProvider`, implemented by the Xe pagemap glue).

Every trace event is a public method of the same name taking the event's fields as
keyword arguments and returning the result fields as a dict (what ``pysvm replay``
prints for it, without ``i``, ``ev`` and ``result``). The arguments are validated by
the same schema as a trace line (:mod:`pysvm.trace.schema`): an unknown or misspelt
keyword is refused with EINVAL naming it, as an unknown field is; a missing required
one is Python's TypeError. A refusal raises
:class:`pysvm.XeError` (errno in ``.errno``, message in ``.strerror``) and leaves the
model unchanged (a failed ``gpu_access`` keeps the faults it serviced before the one
that failed, as the hardware would; they are in ``XeError.details``).

Kernel: no single counterpart; it groups what a trace names (devices, VMs,
BOs, the process) with the work queues the kernel runs later (GC work, pagemap
unhold), and each method names the kernel path it drives.
"""

from __future__ import annotations

import errno
import itertools
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from msgspec import UnsetType

from pysvm.clock import Clock
from pysvm.drm.pagemap_util import SHRINK_EMPTY, SHRINK_STOP, Peer
from pysvm.errors import XeError, errno_name
from pysvm.hw.gpu import gpu_access
from pysvm.mm.mmap import MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE, PAGE_SIZE, Mm
from pysvm.mm.mmu_notifier import NotifyEvent
from pysvm.trace import schema as S
from pysvm.trace.results import SUMMARY_KEYS
from pysvm.trace.schema import Event, TraceDecodeError, convert, decode_object
from pysvm.xe.attr import BindFlag, MemRangeAttr
from pysvm.xe.bo import PURGE_DONTNEED, PURGE_PURGED, Bo
from pysvm.xe.device import (
    ATOMIC_SVM_TIMESLICE_MS,
    DEFAULT_PAT_COH,
    Device,
    check_tile_count,
)
from pysvm.xe.host import INJECTION_POINTS
from pysvm.xe.lifetime import check_pagemap_invariants, teardown
from pysvm.xe.migrate import evict_device
from pysvm.xe.pagefault import svm_owner
from pysvm.xe.pagemap import PagemapSystem, attach_device, svm_get_pagemaps
from pysvm.xe.profile import Profile, get_profile
from pysvm.xe.svm import Svm
from pysvm.xe.vm import DEFAULT_VA_BITS, BindOpArgs, Vm
from pysvm.xe.vm_faults import get_property as vm_get_property
from pysvm.xe.vm_madvise import MadviseArgs, madvise, purgeable_retained
from pysvm.xe.vma import Vma

__all__ = ["World", "Process", "MAIN_PROCESS", "SUMMARY_KEYS", "EVENTS", "U64_MAX"]

#: The process every trace starts with; events that name no process act in it.
MAIN_PROCESS = S.MAIN_PROCESS

U64_MAX = (1 << 64) - 1
MIB = 1 << 20

Result = dict[str, Any]

BIND_FLAGS: dict[str, BindFlag] = {
    "read_only": BindFlag.READONLY,
    "immediate": BindFlag.IMMEDIATE,
    "null": BindFlag.NULL,
    "dumpable": BindFlag.DUMPABLE,
    "cpu_addr_mirror": BindFlag.CPU_ADDR_MIRROR,
    "autoreset": BindFlag.MADVISE_AUTORESET,
}

MADVISE_TYPES = {"preferred_loc": MemRangeAttr.PREFERRED_LOC, "atomic": MemRangeAttr.ATOMIC,
                 "pat": MemRangeAttr.PAT, "purgeable_state": MemRangeAttr.PURGEABLE_STATE}

#: ``invalidate`` event names -> MMU notifier events (UNMAP is what munmap sends).
NOTIFY_EVENTS = {"clear": NotifyEvent.CLEAR, "protection_vma": NotifyEvent.PROTECTION_VMA,
                 "protection_page": NotifyEvent.PROTECTION_PAGE,
                 "soft_dirty": NotifyEvent.SOFT_DIRTY, "migrate": NotifyEvent.MIGRATE,
                 "exclusive": NotifyEvent.EXCLUSIVE}


#: ``mremap`` flag names -> MREMAP_* bits (include/uapi/linux/mman.h).
MREMAP_FLAGS = {"maymove": MREMAP_MAYMOVE, "fixed": MREMAP_FIXED, "dontunmap": MREMAP_DONTUNMAP}


def _fields(**kw: object) -> dict[str, object]:
    """Keyword arguments -> event fields: ``None`` means "not given" (the trace default)."""
    return {k: v for k, v in kw.items() if v is not None}


@dataclass(eq=False)
class Process:
    """One user process: its address space and the VMs it created.

    Kernel: a struct task_struct with its struct mm_struct and its open device file
    (struct xe_file, whose xef->vm.xa holds the VMs made through it:
    drivers/gpu/drm/xe/xe_vm.c xe_vm_create_ioctl()). The model keeps one file per process
    and device implicitly: a VM names its device and its process.
    """

    name: str
    mm: Mm
    #: Names of the live VMs this process created, in creation order.
    vms: list[str] = field(default_factory=list)


class World:
    """One simulated machine: devices, VMs and BOs by name, the process address space,
    the drm_pagemap subsystem and the deferred work; one method per trace event.

    >>> from pysvm import World
    >>> w = World()
    >>> w.device(name="gpu0")
    {'fd': 3}
    """

    def __init__(self, profile: str | Profile = "6.18") -> None:
        #: The modelled kernel version (:mod:`pysvm.xe.profile`); set by ``config``.
        self.profile: Profile = (profile if isinstance(profile, Profile)
                                 else get_profile(profile))
        #: Every counter of the run (the summary adds the computed ones).
        self.stats: Counter[str] = Counter()
        #: The virtual clock (kernel: jiffies); only trace events move it, never wall time.
        self.clock = Clock()
        #: Devices, VMs and BOs by the names the events gave them.
        self.devices: dict[str, Device] = {}
        self.vms: dict[str, Vm] = {}
        self.bos: dict[str, Bo] = {}
        #: The live processes by name, in start order; ``main`` runs the trace.
        self.processes: dict[str, Process] = {MAIN_PROCESS: Process(MAIN_PROCESS, Mm())}
        self._main_mm = self.processes[MAIN_PROCESS].mm
        #: The drm_pagemap subsystem: providers, pagemaps, owner groups, work lists.
        self.pagemaps_system = PagemapSystem(stats=self.stats)
        #: Device pairs joined by a fast interconnect (the ``link`` event).
        self.links: set[frozenset[str]] = set()
        #: The queue of work the kernel would run later; only :meth:`run_workers` runs it.
        self.deferred: list[tuple[str, Callable[[], object]]] = []
        #: Injection point -> work the next fault handler to get there fires once.
        self.injections: dict[str, list[Callable[[], object]]] = {
            p: [] for p in INJECTION_POINTS}
        self._fds = itertools.count(3)       # 0-2 are stdio in a real process
        self._handles = itertools.count(1)

    @property
    def mm(self) -> Mm:
        """The main process's address space (what events naming no process act in); after
        ``main`` exited, its torn-down one until a new ``main`` starts."""
        return self._main_mm

    # -- the rest of the XeHost Protocol (profile, stats, injections are attributes) ---

    def device_by_fd(self, fd: int) -> Device | None:
        """The device whose file has number ``fd`` (None if no device has it)."""
        for dev in self.devices.values():
            if dev.fd == fd:
                return dev
        return None

    def linked(self, a: str, b: str) -> bool:
        """Whether devices ``a`` and ``b`` are the same or joined by a ``link``."""
        return a == b or frozenset((a, b)) in self.links

    def queue_work(self, name: str, fn: Callable[[], object]) -> None:
        """Queue deferred work; it runs only in :meth:`run_workers`. Kernel: queue_work()."""
        self.deferred.append((name, fn))

    # -- running events --------------------------------------------------------------------

    def execute(self, ev: object) -> Result:
        """Run one event given as a mapping (a parsed trace line); return the output line
        without ``"i"``: ``{"ev", "result", ...}``. A refusal is an errno result with a
        ``"message"``, never an exception; ``"ev"`` is null unless the event named a string.
        """
        try:
            event = decode_object(ev)
        except TraceDecodeError as e:
            self.note_bad_line()
            return {"ev": e.ev, "result": "EINVAL", "message": e.strerror}
        return self.run_event(event)

    def run_event(self, event: Event) -> Result:
        """Run one decoded event (:mod:`pysvm.trace.schema`); return its output line."""
        name = _tag(event)
        out: Result = {"ev": name, "result": "ok"}
        try:
            out.update(self._dispatch(event))
        except XeError as e:
            out["result"] = errno_name(e.errno or errno.EINVAL)
            out["message"] = e.strerror
            out.update(e.details)
        return out

    def apply(self, name: str, fields: Mapping[str, Any]) -> Result:
        """Run event ``name`` with ``fields`` (keyword arguments: a trace line's fields
        without ``"ev"``); return the result fields or raise :class:`XeError`. The fields
        are validated by the same schema as a trace line (EINVAL naming the field). Counts
        the event (and a refusal) in the summary, as replay does."""
        try:
            event = convert(name, fields)
        except TraceDecodeError:
            self.note_bad_line()
            raise
        return self._dispatch(event)

    def _dispatch(self, event: Event) -> Result:
        self.stats["events"] += 1
        try:
            return _HANDLERS[type(event)](self, event)
        except XeError:
            self.stats["errors"] += 1
            raise

    def note_bad_line(self) -> None:
        """Count an input line that could not be decoded (an event refused with EINVAL)."""
        self.stats["events"] += 1
        self.stats["errors"] += 1

    # -- summary -------------------------------------------------------------------------

    def summary(self) -> dict[str, int]:
        """:data:`SUMMARY_KEYS` (0 if untouched), then every other counter. The computed
        counters (``pagemaps_alive``) are always present and current."""
        out: dict[str, int] = {k: 0 for k in SUMMARY_KEYS}
        out.update(self.stats)
        out["pagemaps_alive"] = len(self.pagemaps_system.alive())
        return out

    # -- lookups -------------------------------------------------------------------------

    def next_fd(self) -> int:
        """The next device file number (3, 4, ...: 0-2 are stdio)."""
        return next(self._fds)

    def next_handle(self) -> int:
        """The next GEM handle (the gpuvm object id of a BO)."""
        return next(self._handles)

    def _vm(self, name: str, missing: int = errno.EINVAL) -> Vm:
        vm = self.vms.get(name)
        if vm is None:
            raise XeError(missing, f"no VM named {name!r}")
        return vm

    def _svm(self, name: str) -> Svm:
        vm = self._vm(name, errno.ENOENT)
        if vm.svm is None:
            raise XeError(errno.EINVAL, f"VM {name!r} is not in fault mode (no SVM)")
        return vm.svm

    def process_by_name(self, name: str) -> Process:
        """The live process ``name``; ESRCH (no such process) if none."""
        p = self.processes.get(name)
        if p is None:
            raise XeError(errno.ESRCH, f"no live process named {name!r}")
        return p

    def _device(self, name: str) -> Device:
        dev = self.devices.get(name)
        if dev is None:
            raise XeError(errno.ENOENT, f"no device named {name!r}")
        return dev

    def svms(self) -> Iterator[Svm]:
        """The SVM state of every fault-mode VM, in creation order."""
        return (vm.svm for vm in self.vms.values() if vm.svm is not None)

    def check_invariants(self) -> None:
        """Assert every model invariant (SVM mappings, pagemap lifetimes); AssertionError
        names the first broken one. Tests and the fuzzer call this after each event."""
        for svm in self.svms():
            svm.check_invariants()
        check_pagemap_invariants(self.pagemaps_system, self.devices, self.vms)

    # ====================================================================================
    # The events. Each public method validates its fields exactly as a trace line's are
    # validated (both go through the _ev_* handler below it).
    # ====================================================================================

    def config(self, *, profile: str = "6.18",
               **unknown: object) -> Result:
        """Choose the kernel profile (``"6.18"`` or ``"newest"``) before the first device.

        Kernel: none (which kernel the model behaves as)."""
        return self.apply("config", {"profile": profile, **unknown})

    def _ev_config(self, ev: S.ConfigEvent) -> Result:
        name = ev.profile
        if get_profile(name) is not self.profile and (self.devices or self.vms):
            raise XeError(errno.EBUSY, "config: the profile can only change before the first "
                          "device")
        self.profile = get_profile(name)
        return {"profile": name}
    def device(self, *, name: str, discrete: bool = True, vram_mib: int | None = None,
               smem_atomics: bool | None = None,
               atomic_svm_timeslice_ms: int = ATOMIC_SVM_TIMESLICE_MS,
               l2_flush_optimized: bool = False, pat_coh: list[int] | None = None,
               tiles: int = 1, **unknown: object) -> Result:
        """A device with ``tiles`` tiles (1 or 2, XE_MAX_TILES_PER_DEVICE), each with its own
        VRAM of ``vram_mib`` (default 256 on discrete, 0 otherwise) and its own VRAM pagemap;
        the result is its file's ``fd``. ``atomic_svm_timeslice_ms`` is how
        long pages migrated for a GPU atomic stay in VRAM before a CPU fault may take them
        back (xe->atomic_svm_timeslice_ms, default 5, set through debugfs).
        ``l2_flush_optimized`` and ``pat_coh`` (the coherency mode of each PAT index;
        default the Xe2 table) shape the 7.0 PAT rules.

        Kernel: the xe PCI probe (xe_pci_probe, xe_vram_probe, the tile's pagemap set-up)
        plus an open() of the device file."""
        return self.apply("device", _fields(name=name, discrete=discrete, vram_mib=vram_mib,
                                            smem_atomics=smem_atomics,
                                            atomic_svm_timeslice_ms=atomic_svm_timeslice_ms,
                                            l2_flush_optimized=l2_flush_optimized,
                                            pat_coh=pat_coh, tiles=tiles, **unknown))

    def _ev_device(self, ev: S.DeviceEvent) -> Result:
        name, discrete = ev.name, ev.discrete
        vram_mib = _given(ev.vram_mib, 256 if discrete else 0)
        if name in self.devices:
            raise XeError(errno.EEXIST, f"device {name!r} already exists")
        if discrete and vram_mib == 0:
            raise XeError(errno.EINVAL, "device: a discrete device needs vram_mib > 0")
        if not discrete and vram_mib:
            raise XeError(errno.EINVAL, "device: an integrated device has no VRAM "
                          "(vram_mib must be 0)")
        # Kernel: xe_pci.c xe_info_init() sets info.has_device_atomics_on_smem on every
        # platform except PVC, and PVC is discrete: an integrated device always has it.
        smem_atomics = (not discrete) if isinstance(ev.smem_atomics, UnsetType) \
            else ev.smem_atomics
        if not discrete and not smem_atomics:
            raise XeError(errno.EINVAL, "device: an integrated device always has device "
                          "atomics on system memory (smem_atomics cannot be false)")
        check_tile_count(name, ev.tiles)       # before an fd is taken
        if self.pagemaps_system.exited:
            raise XeError(errno.ENODEV, "the drm_pagemap module has exited")
        pat_coh = DEFAULT_PAT_COH if isinstance(ev.pat_coh, UnsetType) else tuple(ev.pat_coh)
        dev = Device(name, vram_mib * MIB, discrete, smem_atomics, fd=self.next_fd(),
                     pat_coh=pat_coh, atomic_svm_timeslice_ms=ev.atomic_svm_timeslice_ms,
                     l2_flush_optimized=ev.l2_flush_optimized, clock=self.clock,
                     tiles=ev.tiles)
        for vram in dev.vrams:
            vram.stats = self.stats          # migration counters go to the summary
        attach_device(self.pagemaps_system, dev, own_ref=not self.profile.multi_device)
        self.devices[name] = dev
        return {"fd": dev.fd}
    def vm_create(self, *, vm: str, device: str, fault_mode: bool = False,
                  va_bits: int = DEFAULT_VA_BITS, process: str = MAIN_PROCESS,
                  **unknown: object) -> Result:
        """A GPU VM on ``device``, made by ``process``; a fault-mode VM gets its SVM state
        over that process's address space (and, newest profile, references on its device's
        pagemaps).

        Kernel: xe_vm_create_ioctl() (DRM_XE_VM_CREATE_FLAG_FAULT_MODE) -> xe_svm_init()
        (drm_gpusvm_init() with current->mm) -> xe_svm_get_pagemaps()."""
        return self.apply("vm_create", _fields(vm=vm, device=device, fault_mode=fault_mode,
                                               va_bits=va_bits, process=process, **unknown))

    def _ev_vm_create(self, ev: S.VmCreateEvent) -> Result:
        proc = self.process_by_name(ev.process)
        dev = self._device(ev.device)
        if ev.vm in self.vms:
            raise XeError(errno.EEXIST, f"VM {ev.vm!r} already exists")
        vm = Vm(self, ev.vm, dev, ev.fault_mode, va_bits=ev.va_bits, mm=proc.mm)
        if ev.fault_mode:
            # drivers/gpu/drm/xe/xe_svm.c xe_svm_init(): the gpusvm mirrors current->mm,
            # the address space of the process whose file made the VM
            vm.svm = Svm(vm, proc.mm)
            if self.profile.multi_device:
                # newer xe_svm_init(): the VM joins the owner list (drm_pagemap_acquire_owner
                # with xe_has_interconnect) before xe_svm_get_pagemaps() creates the pagemaps,
                # so groups follow the order VMs and pagemaps are made in
                owners = self.pagemaps_system.owners
                vm.svm.peer = Peer(dev.name, "vm", ev.vm)
                owners.acquire(vm.svm.peer, self.pagemaps_system.has_interconnect)
            try:
                svm_get_pagemaps(vm.svm.pagemaps, dev)
            except XeError:
                vm.svm.close()       # xe_svm_init(): put the pagemaps, release the owner
                raise
            vm.svm.gpusvm.owner = svm_owner(vm.svm)
        self.vms[ev.vm] = vm
        proc.vms.append(ev.vm)
        return {}
    def bo_create(self, *, bo: str, device: str, size: int,
                  placement: list[str] | None = None, cpu_caching: str | None = None,
                  imported: bool = False,
                  **unknown: object) -> Result:
        """A buffer object of ``size`` bytes; ``placement`` lists ``"system"`` and/or
        ``"vram"`` (default ``["system"]``). Kernel: xe_gem_create_ioctl()."""
        return self.apply("bo_create", _fields(bo=bo, device=device, size=size,
                                               placement=placement, cpu_caching=cpu_caching,
                                               imported=imported, **unknown))

    def _ev_bo_create(self, ev: S.BoCreateEvent) -> Result:
        dev = self._device(ev.device)
        size = ev.size
        placement = list(ev.placement) or ["system"]
        if ev.bo in self.bos:
            raise XeError(errno.EEXIST, f"BO {ev.bo!r} already exists")
        if size == 0 or size % 4096:
            raise XeError(errno.EINVAL,
                          f"bo_create: size {size:#x} must be a non-zero multiple of 4 KiB")
        if len(set(placement)) != len(placement):
            raise XeError(errno.EINVAL, "bo_create: a placement is listed twice")
        if "vram" in placement and not dev.discrete:
            raise XeError(errno.EINVAL, f"bo_create: device {dev.name} has no VRAM")
        if ev.imported and not isinstance(ev.cpu_caching, UnsetType):
            raise XeError(errno.EINVAL, "bo_create: an imported BO has no cpu_caching")
        b = Bo(ev.bo, self.next_handle(), dev, size, tuple(placement))
        b.cpu_caching = None if isinstance(ev.cpu_caching, UnsetType) else ev.cpu_caching
        b.imported = ev.imported
        self.bos[ev.bo] = b
        return {}
    def bind(self, *, vm: str, op: str, addr: int, range: int,  # noqa: A002
             flags: list[str] | None = None, pat_index: int = 0, bo: str | None = None,
             offset: int = 0,
             **unknown: object) -> Result:
        """One bind operation: ``op`` is ``"map"``, ``"map_userptr"`` or ``"unmap"``;
        ``flags`` from ``read_only``, ``immediate``, ``null``, ``dumpable``,
        ``cpu_addr_mirror``, ``autoreset``. Kernel: xe_vm_bind_ioctl()."""
        return self.apply("bind", _fields(vm=vm, op=op, addr=addr, range=range, flags=flags,
                                          pat_index=pat_index, bo=bo, offset=offset, **unknown))

    def _ev_bind(self, ev: S.BindEvent) -> Result:
        vm = self._vm(ev.vm)
        if ev.op == "unmap":
            vm.bind_unmap(ev.addr, ev.range)
            return {}
        flags = BindFlag(0)
        for f in ev.flags:
            flags |= BIND_FLAGS[f]
        # an unknown name stays a string: the kernel looks the handle up only
        # after the argument, VM-state and VM-range checks (ENOENT there)
        bo: Bo | str | None = None
        if not isinstance(ev.bo, UnsetType):
            bo = self.bos.get(ev.bo, ev.bo)
        vm.bind_map(ev.addr, ev.range, flags=flags, pat_index=ev.pat_index, bo=bo,
                    offset=ev.offset, userptr=ev.op == "map_userptr")
        return {}
    def madvise(self, *, vm: str, addr: int, range: int, type: str | int,  # noqa: A002
                devmem_fd: int | str | None = None, region_instance: int | None = None,
                migration_policy: int = 0, val: int = 0, pad: int = 0,
                union_reserved: int = 0, reserved: list[int] | None = None,
                extensions: int = 0, retained_init: int = 0,
                retained_fault: str | None = None,
                **unknown: object) -> Result:
        """Set a memory-range attribute: ``type`` is ``"preferred_loc"``, ``"atomic"``,
        ``"pat"``, ``"purgeable_state"`` or the uapi number; ``devmem_fd`` may name a
        device (then ``region_instance`` defaults to 1). The result lists the
        ``invalidated`` [addr, size] spans; a purgeable_state with a retained pointer
        (``union_reserved``) adds ``retained``, and ``retained_init`` / ``retained_fault``
        describe that pointer. Kernel: xe_vm_madvise_ioctl()."""
        return self.apply("madvise", _fields(
            vm=vm, addr=addr, range=range, type=type, devmem_fd=devmem_fd,
            region_instance=region_instance, migration_policy=migration_policy, val=val,
            pad=pad, union_reserved=union_reserved, reserved=reserved, extensions=extensions,
            retained_init=retained_init, retained_fault=retained_fault, **unknown))

    def _devmem_fd(self, ev: S.MadviseEvent) -> tuple[int, int]:
        v = ev.devmem_fd
        if isinstance(v, str):
            dev = self.devices.get(v)
            if dev is None:
                raise XeError(errno.ENOENT, f"madvise: devmem_fd names no device {v!r}")
            return dev.fd, _given(ev.region_instance, 1)
        fd = v - (1 << 32) if v >= 1 << 31 else v     # the kernel reads the u32 as s32
        return fd, _given(ev.region_instance, 0)

    def _ev_madvise(self, ev: S.MadviseEvent) -> Result:
        vm = self._vm(ev.vm)
        typ = int(MADVISE_TYPES[ev.type]) if isinstance(ev.type, str) else ev.type
        fd, region = self._devmem_fd(ev) if typ == MemRangeAttr.PREFERRED_LOC else (0, 0)
        args = MadviseArgs(
            start=ev.addr, range=ev.range, type=typ, devmem_fd=fd,
            migration_policy=ev.migration_policy, region_instance=region, val=ev.val,
            pad=ev.pad, union_reserved=ev.union_reserved,
            reserved=(ev.reserved[0], ev.reserved[1]), retained_init=ev.retained_init,
            retained_fault=ev.retained_fault if isinstance(ev.retained_fault, str) else "")
        out: Result = {"invalidated": madvise(vm, args)}
        if typ == MemRangeAttr.PURGEABLE_STATE and ev.union_reserved:
            # xe_madvise_purgeable_retained_to_user(): after the locks are dropped, so a
            # fault here is EFAULT with the madvise already in effect
            if ev.retained_fault == "write":
                raise XeError(errno.EFAULT, f"madvise: retained_ptr {ev.union_reserved:#x} "
                              "cannot be written (the madvise took effect)")
            out["retained"] = purgeable_retained(vm, ev.addr, ev.addr + ev.range)
        return out

    def query(self, *, vm: str, addr: int = 0, range: int | None = None,
              **unknown: object) -> Result:  # noqa: A002
        """The VMAs over ``[addr, addr + range)`` (default: to the end of the VM) with their
        attributes. Kernel: xe_vm_query_vmas_attrs_ioctl() (which has no range checks)."""
        return self.apply("query", _fields(vm=vm, addr=addr, range=range, **unknown))

    def _ev_query(self, ev: S.QueryEvent) -> Result:
        vm = self._vm(ev.vm)
        addr = ev.addr
        rng = _given(ev.range, vm.size - addr if addr < vm.size else 0)
        return {"vmas": [self.vma_dict(v) for v in vm.query(addr, rng)]}
    def vma_dict(self, v: Vma) -> Result:
        """A VMA as the ``query`` event reports it."""
        a = v.attr
        fd = a.preferred_loc.devmem_fd
        dev = self.device_by_fd(fd) if fd > 0 else None
        out: Result = {
            "addr": v.addr, "range": v.range, "flags": v.flag_names(),
            "attrs": {"devmem_fd": dev.name if dev is not None else fd,
                      "migration_policy": a.preferred_loc.migration_policy,
                      "atomic": a.atomic_access, "pat_index": a.pat_index,
                      "default_pat_index": a.default_pat_index}}
        if v.bo is not None:
            out["bo"] = v.bo.name
            out["offset"] = v.offset
        elif v.is_userptr():
            out["userptr"] = v.offset
        if v.bo is not None and v.bo.purge_state == PURGE_PURGED:
            out["purgeable"] = "purged"
        elif v.purgeable:
            out["purgeable"] = "dontneed"
        return out

    def vm_kill(self, *, vm: str,
                **unknown: object) -> Result:
        """Ban the VM (bind and madvise then give ENOENT). Kernel: xe_vm_kill()."""
        return self.apply("vm_kill", {"vm": vm, **unknown})

    def _ev_vm_kill(self, ev: S.VmKillEvent) -> Result:
        self._vm(ev.vm).kill()
        return {}
    # -- the process's CPU side -----------------------------------------------------------

    def mmap(self, *, addr: int, size: int, read_only: bool = False, shared: bool = False,
             file: bool = False, process: str = MAIN_PROCESS, **unknown: object) -> Result:
        """Map memory at ``addr`` in ``process``: private anonymous unless ``shared`` or
        ``file``; ``read_only`` without PROT_WRITE. Kernel: mmap(MAP_FIXED|MAP_ANONYMOUS)."""
        return self.apply("mmap", {"addr": addr, "size": size, "read_only": read_only,
                                   "shared": shared, "file": file, "process": process,
                                   **unknown})

    def _ev_mmap(self, ev: S.MmapEvent) -> Result:
        self.process_by_name(ev.process).mm.mmap(ev.addr, ev.size, read_only=ev.read_only,
                                                 anonymous=not (ev.shared or ev.file))
        return {}
    def munmap(self, *, addr: int, size: int, process: str = MAIN_PROCESS,
               **unknown: object) -> Result:
        """Unmap memory of ``process``. Kernel: munmap() -> MMU_NOTIFY_UNMAP ->
        xe_svm_invalidate()."""
        return self.apply("munmap", {"addr": addr, "size": size, "process": process,
                                     **unknown})

    def _ev_munmap(self, ev: S.MunmapEvent) -> Result:
        self.process_by_name(ev.process).mm.munmap(ev.addr, ev.size)
        return {}

    def mremap(self, *, addr: int, old_size: int, new_size: int,
               flags: list[str] | None = None, new_addr: int = 0,
               process: str = MAIN_PROCESS, **unknown: object) -> Result:
        """Move and/or resize the mapping at ``addr`` of ``process`` (``flags``: maymove,
        fixed, dontunmap); the result's ``addr`` is where it is now. Pages, device pages
        included, move with it. Kernel: mm/mremap.c do_mremap() on current->mm."""
        return self.apply("mremap", {"addr": addr, "old_size": old_size,
                                     "new_size": new_size, "flags": flags or [],
                                     "new_addr": new_addr, "process": process, **unknown})

    def _ev_mremap(self, ev: S.MremapEvent) -> Result:
        flags = 0
        for f in ev.flags:
            flags |= MREMAP_FLAGS[f]
        mm = self.process_by_name(ev.process).mm
        return {"addr": mm.mremap(ev.addr, ev.old_size, ev.new_size, flags, ev.new_addr)}

    def mprotect(self, *, addr: int, size: int, read_only: bool,
                 process: str = MAIN_PROCESS, **unknown: object) -> Result:
        """Make ``[addr, addr + size)`` of ``process`` read-only or read-write. Kernel:
        mm/mprotect.c do_mprotect_pkey() on current->mm -> MMU_NOTIFY_PROTECTION_VMA ->
        xe_svm_invalidate()."""
        return self.apply("mprotect", {"addr": addr, "size": size, "read_only": read_only,
                                       "process": process, **unknown})

    def _ev_mprotect(self, ev: S.MprotectEvent) -> Result:
        self.process_by_name(ev.process).mm.mprotect(ev.addr, ev.size, read_only=ev.read_only)
        return {}

    def cpu_write(self, *, addr: int, size: int, value: int = 0,
                  process: str = MAIN_PROCESS, **unknown: object) -> Result:
        """A CPU store of ``value`` to every page of ``process``'s memory (device pages
        fault back to RAM first: drm_pagemap_migrate_to_ram())."""
        return self.apply("cpu_write", {"addr": addr, "size": size, "value": value,
                                        "process": process, **unknown})

    def _ev_cpu_write(self, ev: S.CpuWriteEvent) -> Result:
        self.process_by_name(ev.process).mm.cpu_write(ev.addr, ev.size, ev.value)
        return {}
    def cpu_read(self, *, addr: int, size: int, process: str = MAIN_PROCESS,
                 **unknown: object) -> Result:
        """A CPU load of every page of ``process``'s memory; the result's ``data`` has one
        value per page."""
        return self.apply("cpu_read", {"addr": addr, "size": size, "process": process,
                                       **unknown})

    def _ev_cpu_read(self, ev: S.CpuReadEvent) -> Result:
        return {"data": self.process_by_name(ev.process).mm.cpu_read(ev.addr, ev.size)}

    def smaps(self, *, addr: int, size: int, process: str = MAIN_PROCESS,
              **unknown: object) -> Result:
        """What /proc/PID/smaps says of ``process``'s memory in a range, in kB: ``rss``,
        ``anonymous``, ``private_clean``, ``private_dirty``, and the model's ``device`` and
        ``zero`` (fs/proc/task_mmu.c smaps_account())."""
        return self.apply("smaps", {"addr": addr, "size": size, "process": process,
                                    **unknown})

    def _ev_smaps(self, ev: S.SmapsEvent) -> Result:
        mm, start, end = self._cpu_span(ev.process, ev.addr, ev.size, "smaps")
        return dict(mm.smaps(start, end))

    def _cpu_span(self, process: str, addr: int, size: int, what: str) -> tuple[Mm, int, int]:
        """The process's address space and ``[addr, addr + size)``: ESRCH for no such
        process, EINVAL unless 4 KiB aligned, non-empty and below 2^64."""
        mm = self.process_by_name(process).mm
        if addr % PAGE_SIZE or size % PAGE_SIZE or size == 0 or addr + size > 1 << 64:
            raise XeError(errno.EINVAL, f"{what} [{addr:#x}, +{size:#x}) must be 4 KiB "
                          "aligned and non-empty")
        return mm, addr, addr + size

    def advance(self, *, ms: int, **unknown: object) -> Result:
        """Let ``ms`` milliseconds of virtual time pass; the result's ``now_ms`` is the
        clock after it. Kernel: jiffies, as drm_pagemap.c reads them for the atomic
        timeslice."""
        return self.apply("advance", {"ms": ms, **unknown})

    def _ev_advance(self, ev: S.AdvanceEvent) -> Result:
        return {"now_ms": self.clock.advance(ev.ms)}
    def invalidate(self, *, addr: int, size: int, event: str = "clear",
                   process: str = MAIN_PROCESS, **unknown: object) -> Result:
        """An MMU notifier invalidation that is not an unmap (the CPU mapping stays).

        Kernel: mmu_notifier_invalidate_range_start() with e.g. MMU_NOTIFY_CLEAR
        (page reclaim, madvise(MADV_DONTNEED) zapping, KSM) or
        MMU_NOTIFY_PROTECTION_VMA (mprotect): xe_svm_invalidate() zaps the GPU
        mappings and unmaps the DMA pages, but queues nothing for the garbage
        collector, so the next GPU access faults and rebinds the same range.
        Page contents are unchanged."""
        return self.apply("invalidate", {"addr": addr, "size": size, "event": event,
                                         "process": process, **unknown})

    def _ev_invalidate(self, ev: S.InvalidateEvent) -> Result:
        mm, start, end = self._cpu_span(ev.process, ev.addr, ev.size, "invalidate")
        mm.invalidate(start, end, NOTIFY_EVENTS[ev.event])
        return {}
    # -- the GPU side ---------------------------------------------------------------------

    def gpu_access(self, *, vm: str, addr: int, size: int, op: str,
                   value: int = 0, tile: int = 0,
                   **unknown: object) -> Result:
        """The device reads, writes or atomically increments every page; faults are
        serviced by the SVM fault handler. The result has ``faults``, ``retries``, ``data``
        (reads) and ``injected`` (outputs of injected events that fired). A failed fault
        raises XeError whose ``details`` hold ``faults``, ``retries`` and ``fault_addr``.
        ``tile`` is the tile whose GT runs the access (default 0).

        Kernel: the GPU's page fault -> xe_pagefault -> xe_svm_handle_pagefault()."""
        return self.apply("gpu_access", {"vm": vm, "addr": addr, "size": size, "op": op,
                                         "value": value, **({"tile": tile} if tile else {}),
                                         **unknown})

    def _ev_gpu_access(self, ev: S.GpuAccessEvent) -> Result:
        svm = self._svm(ev.vm)
        before = {id(s): len(s.injection_log) for s in self.svms()}
        try:
            out: Result = dict(gpu_access(svm, ev.addr, ev.size, ev.op, ev.value, ev.tile))
        except XeError as e:
            e.details.setdefault("faults", 0)
            e.details.setdefault("retries", 0)
            fired = self._fired(before)
            if fired:
                e.details["injected"] = fired
            raise
        fired = self._fired(before)
        if fired:
            out["injected"] = fired
        return out
    def _fired(self, before: dict[int, int]) -> list[Result]:
        fired = [f for s in self.svms() for f in s.injection_log[before.get(id(s), 0):]]
        return [{"at": p, "fault_addr": fa, **(r if isinstance(r, dict) else {"result": str(r)})}
                for p, r, fa in fired]

    def prefetch(self, *, vm: str, addr: int, range: int, region: str | int,
                 **unknown: object) -> Result:  # noqa: A002
        """Create, place and bind the SVM ranges of ``[addr, addr + range)``; ``region`` is
        ``"vram"``, ``"system"``, ``"pref_loc"`` (each VMA's madvised preferred location)
        or a region instance number; BO VMAs in the range migrate there. The result
        counts ``ranges_bound``.

        Kernel: DRM_XE_VM_BIND_OP_PREFETCH on CPU-mirror VMAs."""
        return self.apply("prefetch", {"vm": vm, "addr": addr, "range": range,
                                       "region": region, **unknown})

    def _ev_prefetch(self, ev: S.PrefetchEvent) -> Result:
        svm = self._svm(ev.vm)
        return {"ranges_bound": svm.prefetch(ev.addr, ev.addr + ev.range, ev.region)}
    def ranges(self, *, vm: str,
               **unknown: object) -> Result:
        """The VM's SVM ranges: ``addr``, ``range``, ``location``, ``unmapped``."""
        return self.apply("ranges", {"vm": vm, **unknown})

    def _ev_ranges(self, ev: S.RangesEvent) -> Result:
        return {"ranges": self._svm(ev.vm).ranges_info()}
    def gc(self, *, vm: str,
           **unknown: object) -> Result:
        """Run the VM's SVM garbage collector now; ``eagain`` if VMAs changed.

        Kernel: xe_svm_garbage_collector()."""
        return self.apply("gc", {"vm": vm, **unknown})

    def _ev_gc(self, ev: S.GcEvent) -> Result:
        err = self._svm(ev.vm).garbage_collector()
        if err and err != errno.EAGAIN:
            raise XeError(err, f"garbage collector failed ({errno_name(err)})")
        return {"eagain": err == errno.EAGAIN}
    def evict(self, *, device: str, tile: int | None = None,
              **unknown: object) -> Result:
        """Move every page out of the device's VRAM (only tile ``tile``'s when given); the
        result counts ``pages``.

        Kernel: TTM eviction -> xe_svm_bo_evict() -> drm_pagemap_evict_to_ram()."""
        return self.apply("evict", _fields(device=device, tile=tile, **unknown))

    def _ev_evict(self, ev: S.EvictEvent) -> Result:
        dev = self._device(ev.device)
        tile = None if isinstance(ev.tile, UnsetType) else ev.tile
        if tile is not None:
            dev.check_tile(tile, "evict")
        return {"pages": evict_device(dev, tile)}
    def fault_guard(self, *, vm: str, max_iterations: int,
                    **unknown: object) -> Result:
        """Set (or with 0, clear) the VM's livelock guard: a fault still not serviced after
        ``max_iterations`` loop rounds fails with ELOOP naming why it kept retrying. Without
        a guard the fault loop is unbounded, as in the kernel."""
        return self.apply("fault_guard", {"vm": vm, "max_iterations": max_iterations, **unknown})

    def _ev_fault_guard(self, ev: S.FaultGuardEvent) -> Result:
        svm = self._svm(ev.vm)
        svm.max_fault_iterations = ev.max_iterations or None
        return {"max_iterations": ev.max_iterations}
    def inject(self, *, at: str, event: Mapping[str, Any],
               **unknown: object) -> Result:
        """Queue ``event`` (a trace event as a dict, with ``"ev"``) to run once, the next
        time any VM's fault handler reaches point ``at`` (``fault.start``,
        ``fault.after_find_range``, ``fault.after_migrate``, ``fault.after_get_pages``,
        ``fault.before_bind``), as an asynchronous munmap, eviction or invalidation would."""
        return self.apply("inject", {"at": at, "event": event, **unknown})

    def _ev_inject(self, ev: S.InjectEvent) -> Result:
        inner = ev.event
        name = _tag(inner)
        if name in ("inject", "gpu_access", "prefetch"):
            raise XeError(errno.EINVAL, f"inject: a {name!r} event cannot be injected "
                          "(the fault handler holds the VM lock)")
        svm = next(self.svms(), None)
        if svm is None:
            raise XeError(errno.EINVAL, "inject: no fault-mode VM exists yet")
        svm.inject(ev.at, lambda: self.run_event(inner))
        return {}
    # -- devices' pagemap lifetimes -------------------------------------------------------

    def link(self, *, a: str, b: str,
             **unknown: object) -> Result:
        """Join two devices by a fast interconnect. In the newer driver (profile 7.0)
        their pagemaps then share an owner group; in 6.18 every device is its own page
        owner (xe_svm.c: xe_svm_devm_owner()), so the link changes no owner there.

        Kernel: PCI P2P reachability (xe_has_interconnect)."""
        return self.apply("link", {"a": a, "b": b, **unknown})

    def _ev_link(self, ev: S.LinkEvent) -> Result:
        a, b = self._device(ev.a), self._device(ev.b)
        if self.profile.multi_device:
            self.pagemaps_system.link(a.name, b.name)
        self.links.add(frozenset((a.name, b.name)))
        return {}
    def unbind_device(self, *, device: str,
                      **unknown: object) -> Result:
        """Unbind the driver from the device; its device pages migrate to RAM
        (``evicted_pages``). Kernel: xe_pci_remove()."""
        return self.apply("unbind_device", {"device": device, **unknown})

    def _ev_unbind_device(self, ev: S.UnbindDeviceEvent) -> Result:
        return self._unbind(self._device(ev.device))
    def _unbind(self, dev: Device) -> Result:
        prov = self.pagemaps_system.provider(dev.name)
        if prov.unbound:
            raise XeError(errno.ENODEV, f"device {dev.name} is already unbound")
        moved: list[int] = []
        dev.unbound = True
        prov.unbind(evict=lambda: moved.append(evict_device(dev)))
        return {"evicted_pages": sum(moved)}

    def rmmod(self, *, device: str,
              **unknown: object) -> Result:
        """Unload the device's driver module (unbinding it first); EBUSY while a pagemap
        device hold pins the module. Kernel: delete_module()."""
        return self.apply("rmmod", {"device": device, **unknown})

    def _ev_rmmod(self, ev: S.RmmodEvent) -> Result:
        dev = self._device(ev.device)
        prov = self.pagemaps_system.provider(dev.name)
        if not prov.module.loaded:
            raise XeError(errno.ENOENT, f"module of {dev.name} is not loaded")
        if prov.module.refcount:
            raise XeError(errno.EBUSY, f"module of {dev.name} is in use: "
                          f"{prov.module.refcount} pagemap device hold(s) (run_workers drops "
                          "released holds)")
        out: Result = {}
        if not prov.unbound:
            out.update(self._unbind(dev))      # with the eviction of its pages
        prov.rmmod()
        return out

    def run_workers(self, **unknown: object) -> Result:
        """Run the queued work: GC work, xe pagemap destroy work, drm_pagemap unhold.
        The result counts ``work_items``, ``pagemaps_destroyed`` and ``holds_dropped``."""
        return self.apply("run_workers", dict(unknown))

    def _ev_run_workers(self, ev: S.RunWorkersEvent) -> Result:
        other = self.run_deferred()
        res = self.pagemaps_system.run_workers()
        return {"work_items": other, "pagemaps_destroyed": res["destroyed"],
                "holds_dropped": res["unheld"]}

    def run_deferred(self) -> int:
        """Run the machine's queued work in FIFO order (work queued meanwhile runs too);
        return how many items ran. Kernel: the work queues' workers."""
        n = 0
        while self.deferred:
            _, fn = self.deferred.pop(0)
            fn()
            n += 1
        return n

    def pagemaps(self, **unknown: object) -> Result:
        """The live drm_pagemaps: ``device``, ``refcount``, ``cached`` (inactive on the
        shrinker), ``device_held``."""
        return self.apply("pagemaps", dict(unknown))

    def _ev_pagemaps(self, ev: S.PagemapsEvent) -> Result:
        return {"pagemaps": self.pagemaps_system.snapshot()}

    def teardown(self, **unknown: object) -> Result:
        """Process exit, then unload every driver module and the drm_pagemap module; the
        result's ``leftovers`` lists whatever was still referenced (empty when clean).
        Ends the simulation."""
        return self.apply("teardown", dict(unknown))

    def _ev_teardown(self, ev: S.TeardownEvent) -> Result:
        out = {"leftovers": teardown(self.pagemaps_system, self.devices, self.vms,
                                     self.run_deferred)}
        for proc in self.processes.values():
            proc.vms.clear()             # teardown closed every VM
        return out

    def query_mem_range_attrs(self, *, vm: str, start: int = 0, range: int = 0,  # noqa: A002
                              num_mem_ranges: int = 0, sizeof_mem_range_attr: int = 0,
                              vector: bool = False, **unknown: object) -> Result:
        """The memory-range-attribute query with its two-call protocol (count, then
        fill). Kernel: xe_vm_query_vmas_attrs_ioctl()."""
        return self.apply("query_mem_range_attrs", {
            "vm": vm, "start": start, "range": range, "num_mem_ranges": num_mem_ranges,
            "sizeof_mem_range_attr": sizeof_mem_range_attr, "vector": vector, **unknown})

    def _ev_query_mem_range_attrs(self, ev: S.QueryMemRangeAttrsEvent) -> Result:
        n, size = ev.num_mem_ranges, ev.sizeof_mem_range_attr
        if (n == 0 and (ev.vector or size)) or (
                n > 0 and (not ev.vector or size != MEM_RANGE_ATTR_SIZE)):
            raise XeError(errno.EINVAL, "query_mem_range_attrs: num_mem_ranges "
                          f"{n}, sizeof_mem_range_attr {size}, vector {ev.vector}: a count "
                          "call passes 0, 0 and no vector; a fill call passes a vector and "
                          f"{MEM_RANGE_ATTR_SIZE}")
        vm = self._vm(ev.vm)
        vmas = vm.query(ev.start, ev.range)
        if n == 0:
            return {"num_mem_ranges": len(vmas), "sizeof_mem_range_attr": MEM_RANGE_ATTR_SIZE}
        if len(vmas) > n:
            raise XeError(errno.ENOSPC, f"query_mem_range_attrs: {len(vmas)} VMAs in the "
                          f"range, the vector has {n} entries")
        out = [{"start": v.start, "end": v.end,
                "devmem_fd": v.attr.preferred_loc.devmem_fd,
                "migration_policy": v.attr.preferred_loc.migration_policy,
                "atomic": v.attr.atomic_access, "pat_index": v.attr.pat_index} for v in vmas]
        return {"num_mem_ranges": len(out), "sizeof_mem_range_attr": size, "mem_ranges": out}

    def shrink(self, *, device: str, nr_to_scan: int = 128,
               **unknown: object) -> Result:
        """Run the device's pagemap shrinker once (count, then scan up to ``nr_to_scan``);
        the result has ``listed`` and ``freed``. Kernel: drm_pagemap_shrinker_count() /
        drm_pagemap_shrinker_scan()."""
        return self.apply("shrink", {"device": device, "nr_to_scan": nr_to_scan, **unknown})

    def _ev_shrink(self, ev: S.ShrinkEvent) -> Result:
        dev = self._device(ev.device)
        shrinker = self.pagemaps_system.provider(dev.name).shrinker
        if not shrinker.alive:
            raise XeError(errno.ENODEV, f"shrink: device {dev.name} is unbound")
        n = shrinker.count()
        if n == SHRINK_EMPTY:
            return {"listed": 0, "freed": 0}
        freed = shrinker.scan(ev.nr_to_scan)
        return {"listed": n, "freed": 0 if freed == SHRINK_STOP else freed}

    def vm_destroy(self, *, vm: str,
                   **unknown: object) -> Result:
        """Destroy VM ``vm``: SVM state torn down, VMAs destroyed, the name freed.
        Kernel: xe_vm_destroy_ioctl() -> xe_vm_close_and_put() -> xe_svm_close()."""
        return self.apply("vm_destroy", {"vm": vm, **unknown})

    def _ev_vm_destroy(self, ev: S.VmDestroyEvent) -> Result:
        vm = self._vm(ev.vm, errno.ENOENT)
        vm.close()
        del self.vms[ev.vm]
        for proc in self.processes.values():
            if ev.vm in proc.vms:
                proc.vms.remove(ev.vm)
        self.stats["vms_destroyed"] += 1
        return {}

    def bo_purge(self, *, bo: str,
                 **unknown: object) -> Result:
        """The shrinker purges DONTNEED BO ``bo`` now (7.0); the result counts the VMAs
        whose GPU mappings were ``zapped``. Kernel: xe_bo_shrink() purge ->
        xe_bo_move_notify()."""
        return self.apply("bo_purge", {"bo": bo, **unknown})

    def _ev_bo_purge(self, ev: S.BoPurgeEvent) -> Result:
        if not self.profile.purgeable_type:
            raise XeError(errno.EINVAL, f"bo_purge: kernel {self.profile.name} has no "
                          "purgeable BOs")
        b = self.bos.get(ev.bo)
        if b is None:
            raise XeError(errno.ENOENT, f"bo_purge: no BO named {ev.bo!r}")
        if b.purge_state != PURGE_DONTNEED:
            raise XeError(errno.EBUSY, f"bo_purge: BO {b.name} is not DONTNEED")
        b.purge_state = PURGE_PURGED
        zapped = 0
        for vm in self.vms.values():
            for v in vm:
                if v.bo is b and v.tile_present & ~v.tile_invalidated:
                    v.tile_invalidated |= v.tile_present
                    zapped += 1
        for svm in self.svms():
            for key in [k for k in svm.bo_data if k[0] == b.name]:
                del svm.bo_data[key]
        self.stats["bos_purged"] += 1
        return {"zapped": zapped}

    # -- an array of binds (issue 14, P3-B) -----------------------------------------------

    def bind_array(self, *, vm: str, binds: list[dict[str, object]],
                   **unknown: object) -> Result:
        """Several bind ops in one ioctl (each a dict of bind's fields without ``vm``),
        refused as a whole by any argument-stage check. Kernel: xe_vm_bind_ioctl() with
        num_binds > 1."""
        return self.apply("bind_array", {"vm": vm, "binds": binds, **unknown})

    def _ev_bind_array(self, ev: S.BindArrayEvent) -> Result:
        vm = self._vm(ev.vm)
        ops: list[BindOpArgs] = []
        for b in ev.binds:
            flags = BindFlag(0)
            for f in b.flags:
                flags |= BIND_FLAGS[f]
            bo: Bo | str | None = None
            if not isinstance(b.bo, UnsetType):
                bo = self.bos.get(b.bo, b.bo)
            ops.append(BindOpArgs(b.op, b.addr, b.range, flags, b.pat_index, bo, b.offset))
        vm.bind_array(ops)
        return {}

    # -- DRM_IOCTL_XE_VM_GET_PROPERTY (issue 14) ------------------------------------------

    def vm_get_property(self, *, vm: str, property: int = 0, size: int = 0,  # noqa: A002
                        data: bool = True, extensions: int = 0, pad: int = 0,
                        reserved: tuple[int, int, int] = (0, 0, 0),
                        **unknown: object) -> Result:
        """The VM's saved failed faults with the two-call protocol (size 0 counts, then
        a multiple of 48 fills); 7.0 only. Kernel: xe_vm_get_property_ioctl()."""
        return self.apply("vm_get_property", {
            "vm": vm, "property": property, "size": size, "data": data,
            "extensions": extensions, "pad": pad, "reserved": reserved, **unknown})

    def _ev_vm_get_property(self, ev: S.VmGetPropertyEvent) -> Result:
        if not self.profile.vm_get_property:
            # drm_ioctl() (drivers/gpu/drm/drm_ioctl.c): an ioctl number past the
            # driver's table is -EINVAL
            raise XeError(errno.EINVAL, f"vm_get_property: kernel {self.profile.name} has "
                          "no DRM_IOCTL_XE_VM_GET_PROPERTY")
        if ev.extensions or ev.pad or any(ev.reserved):
            raise XeError(errno.EINVAL, "vm_get_property: extensions, pad and reserved "
                          "must be 0")
        vm = self.vms.get(ev.vm)
        if vm is None:
            raise XeError(errno.ENOENT, f"vm_get_property: no VM named {ev.vm!r}")
        return vm_get_property(vm, ev.property, ev.size, ev.data)

    # -- more than one process (issue 16) -------------------------------------------------

    def process_start(self, *, name: str, **unknown: object) -> Result:
        """Start process ``name`` with an empty address space of its own; it shares the
        devices. Kernel: a new task with a new mm_struct (kernel/fork.c mm_alloc())."""
        return self.apply("process_start", {"name": name, **unknown})

    def _ev_process_start(self, ev: S.ProcessStartEvent) -> Result:
        if ev.name in self.processes:
            raise XeError(errno.EEXIST, f"process_start: a live process is named {ev.name!r}")
        proc = self.processes[ev.name] = Process(ev.name, Mm())
        if ev.name == MAIN_PROCESS:
            self._main_mm = proc.mm
        self.stats["processes_started"] += 1
        return {}

    def process_exit(self, *, process: str, **unknown: object) -> Result:
        """Process ``process`` exits: its address space is torn down (``unmapped`` bytes),
        then its device files close, closing its VMs (``vms_closed``).

        Kernel: kernel/exit.c do_exit(): exit_mm() -> mmput() -> exit_mmap(), then
        exit_files() -> xe_file_close() -> xe_vm_close_and_put() per VM."""
        return self.apply("process_exit", {"process": process, **unknown})

    def _ev_process_exit(self, ev: S.ProcessExitEvent) -> Result:
        proc = self.process_by_name(ev.process)
        # kernel/exit.c do_exit(): exit_mm() comes before exit_files(), so the VMs still
        # see the address space go (mm/mmap.c exit_mmap(): MMU_NOTIFY_RELEASE, then
        # MMU_NOTIFY_UNMAP per VMA, the pages freed) before the file's close closes them.
        unmapped = proc.mm.exit_mmap()
        # drivers/gpu/drm/xe/xe_device.c xe_file_close(): xe_vm_close_and_put() for each VM
        # in xef->vm.xa
        closed = 0
        for name in proc.vms:
            vm = self.vms.pop(name, None)
            if vm is not None:
                vm.close()
                closed += 1
        proc.vms.clear()
        del self.processes[proc.name]
        self.stats["processes_exited"] += 1
        return {"unmapped": unmapped, "vms_closed": closed}


#: sizeof(struct drm_xe_mem_range_attr). Kernel: include/uapi/drm/xe_drm.h.
MEM_RANGE_ATTR_SIZE = 64


def _given(value: int | UnsetType, default: int) -> int:
    """An optional field's value, ``default`` when the event left it out."""
    return default if isinstance(value, UnsetType) else value


def _tag(event: Event) -> str:
    tag = event.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


_Handler = Callable[[World, Any], Result]     # each takes its own event Struct

#: Event Struct -> handler, in the order the trace format lists the events.
_HANDLERS: dict[type[Event], _Handler] = {
    S.ConfigEvent: World._ev_config, S.DeviceEvent: World._ev_device,
    S.VmCreateEvent: World._ev_vm_create, S.BoCreateEvent: World._ev_bo_create,
    S.BindEvent: World._ev_bind, S.MadviseEvent: World._ev_madvise,
    S.QueryEvent: World._ev_query, S.VmKillEvent: World._ev_vm_kill,
    S.MmapEvent: World._ev_mmap, S.MunmapEvent: World._ev_munmap,
    S.MremapEvent: World._ev_mremap, S.MprotectEvent: World._ev_mprotect,
    S.CpuWriteEvent: World._ev_cpu_write, S.CpuReadEvent: World._ev_cpu_read,
    S.SmapsEvent: World._ev_smaps,
    S.GpuAccessEvent: World._ev_gpu_access, S.PrefetchEvent: World._ev_prefetch,
    S.RangesEvent: World._ev_ranges, S.GcEvent: World._ev_gc, S.EvictEvent: World._ev_evict,
    S.InvalidateEvent: World._ev_invalidate, S.FaultGuardEvent: World._ev_fault_guard,
    S.InjectEvent: World._ev_inject, S.LinkEvent: World._ev_link,
    S.UnbindDeviceEvent: World._ev_unbind_device, S.RmmodEvent: World._ev_rmmod,
    S.RunWorkersEvent: World._ev_run_workers, S.PagemapsEvent: World._ev_pagemaps,
    S.TeardownEvent: World._ev_teardown, S.BoPurgeEvent: World._ev_bo_purge,
    S.VmDestroyEvent: World._ev_vm_destroy,
    S.QueryMemRangeAttrsEvent: World._ev_query_mem_range_attrs,
    S.ShrinkEvent: World._ev_shrink,
    S.BindArrayEvent: World._ev_bind_array,
    S.VmGetPropertyEvent: World._ev_vm_get_property,

    S.ProcessStartEvent: World._ev_process_start, S.ProcessExitEvent: World._ev_process_exit,
    S.AdvanceEvent: World._ev_advance,
}

#: Every trace event name (each is a :class:`World` method of the same name).
EVENTS: tuple[str, ...] = tuple(S.EVENTS)
assert tuple(S.EVENTS.values()) == tuple(_HANDLERS), "one handler per schema event, in order"
