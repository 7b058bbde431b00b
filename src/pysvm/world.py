"""The composition root: one simulated machine, and the public API of the model.

A :class:`World` builds and wires the layers explicitly: the process address space
(:class:`pysvm.mm.mmap.Mm`), the drm_pagemap subsystem (:class:`pysvm.xe.pagemap.
PagemapSystem`), and for each ``device`` event a :class:`pysvm.xe.device.Device`
probed in that subsystem, for each fault-mode ``vm_create`` a :class:`pysvm.xe.vm.Vm`
with its :class:`pysvm.xe.svm.Svm` and the VM's pagemap references. Nothing is
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
import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pysvm.errors import XeError, errno_name
from pysvm.hw.gpu import gpu_access
from pysvm.mm.mmap import PAGE_SIZE, Mm
from pysvm.mm.mmu_notifier import NotifyEvent
from pysvm.trace.schema import Event, TraceDecodeError, as_kwargs, convert, decode_object
from pysvm.xe.attr import BindFlag, MemRangeAttr
from pysvm.xe.bo import PLACEMENTS, Bo
from pysvm.xe.device import Device
from pysvm.xe.host import INJECTION_POINTS
from pysvm.xe.lifetime import check_pagemap_invariants, teardown
from pysvm.xe.migrate import evict_device
from pysvm.xe.pagemap import PagemapSystem, attach_device, svm_get_pagemaps
from pysvm.xe.profile import PROFILES, Profile, get_profile
from pysvm.xe.svm import Svm
from pysvm.xe.vm import DEFAULT_VA_BITS, Vm
from pysvm.xe.vm_madvise import MadviseArgs, madvise
from pysvm.xe.vma import Vma

__all__ = ["World", "SUMMARY_KEYS", "EVENTS", "U64_MAX"]

#: Counters always present in the trace summary (0 when nothing happened).
SUMMARY_KEYS = ("events", "errors", "faults", "retries", "migrations_to_vram",
                "migrations_to_system", "bytes_to_vram", "bytes_to_system", "gc_runs",
                "vmas_reset", "pagemaps_alive")

U64_MAX = (1 << 64) - 1
MIB = 1 << 20
_MAX_VALUE = (1 << 63) - 1

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


# -- field checks: what a trace line's fields must be (missing or ill-typed -> EINVAL) --------


def _get(ev: Mapping[str, Any], key: str) -> Any:
    if key not in ev:
        raise XeError(errno.EINVAL, f'missing field "{key}"')
    return ev[key]


def _as_int(key: str, v: Any, lo: int | None, hi: int | None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise XeError(errno.EINVAL, f'field "{key}" must be an integer, not {json.dumps(v)}')
    if lo is not None and v < lo:
        raise XeError(errno.EINVAL, f'field "{key}" = {v} is below {lo}')
    if hi is not None and v > hi:
        raise XeError(errno.EINVAL, f'field "{key}" = {v} is above {hi}')
    return v


def _int(ev: Mapping[str, Any], key: str, lo: int | None = None, hi: int | None = None,
         default: int | None = None) -> int:
    if key not in ev and default is not None:
        return default
    return _as_int(key, _get(ev, key), lo, hi)


def _u64(ev: Mapping[str, Any], key: str, default: int | None = None) -> int:
    return _int(ev, key, 0, U64_MAX, default)


def _str(ev: Mapping[str, Any], key: str) -> str:
    v = _get(ev, key)
    if not isinstance(v, str):
        raise XeError(errno.EINVAL, f'field "{key}" must be a string, not {json.dumps(v)}')
    return v


def _bool(ev: Mapping[str, Any], key: str, default: bool) -> bool:
    if key not in ev:
        return default
    v = ev[key]
    if not isinstance(v, bool):
        raise XeError(errno.EINVAL, f'field "{key}" must be true or false, not {json.dumps(v)}')
    return v


def _list(ev: Mapping[str, Any], key: str) -> list[Any]:
    if key not in ev:
        return []
    v = ev[key]
    if not isinstance(v, list | tuple):
        raise XeError(errno.EINVAL, f'field "{key}" must be a list, not {json.dumps(v)}')
    return list(v)


def _choice(ev: Mapping[str, Any], key: str, choices: tuple[str, ...],
            default: str | None = None) -> str:
    v = _str(ev, key) if (key in ev or default is None) else default
    if v not in choices:
        raise XeError(errno.EINVAL, f'field "{key}" = {v!r}: expected one of {list(choices)}')
    return v


def _fields(**kw: object) -> dict[str, object]:
    """Keyword arguments -> event fields: ``None`` means "not given" (the trace default)."""
    return {k: v for k, v in kw.items() if v is not None}


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
        #: Devices, VMs and BOs by the names the events gave them.
        self.devices: dict[str, Device] = {}
        self.vms: dict[str, Vm] = {}
        self.bos: dict[str, Bo] = {}
        #: The simulated process's address space (every fault-mode VM mirrors it).
        self.mm = Mm()
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
            out.update(self._dispatch(name, event))
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
        return self._dispatch(name, event)

    def _dispatch(self, name: str, event: Event) -> Result:
        self.stats["events"] += 1
        try:
            kwargs = {k: v for k, v in as_kwargs(event).items() if v is not None}
            return _HANDLERS[name](self, kwargs)
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

    def _ev_config(self, ev: Mapping[str, Any]) -> Result:
        name = _choice(ev, "profile", tuple(PROFILES), default="6.18")
        if name != self.profile.name and (self.devices or self.vms):
            raise XeError(errno.EBUSY, "config: the profile can only change before the first "
                          "device")
        self.profile = get_profile(name)
        return {"profile": name}

    def device(self, *, name: str, discrete: bool = True, vram_mib: int | None = None,
               smem_atomics: bool = False,
               **unknown: object) -> Result:
        """A device with one VRAM tile (``vram_mib`` defaults to 256 on discrete, 0
        otherwise); the result is its file's ``fd``.

        Kernel: the xe PCI probe (xe_pci_probe, xe_vram_probe, the tile's pagemap set-up)
        plus an open() of the device file."""
        return self.apply("device", _fields(name=name, discrete=discrete, vram_mib=vram_mib,
                                            smem_atomics=smem_atomics, **unknown))

    def _ev_device(self, ev: Mapping[str, Any]) -> Result:
        name = _str(ev, "name")
        discrete = _bool(ev, "discrete", True)
        vram_mib = _int(ev, "vram_mib", 0, U64_MAX // MIB, 256 if discrete else 0)
        smem_atomics = _bool(ev, "smem_atomics", False)
        if name in self.devices:
            raise XeError(errno.EEXIST, f"device {name!r} already exists")
        if discrete and vram_mib == 0:
            raise XeError(errno.EINVAL, "device: a discrete device needs vram_mib > 0")
        if not discrete and vram_mib:
            raise XeError(errno.EINVAL, "device: an integrated device has no VRAM "
                          "(vram_mib must be 0)")
        if self.pagemaps_system.exited:
            raise XeError(errno.ENODEV, "the drm_pagemap module has exited")
        dev = Device(name, vram_mib * MIB, discrete, smem_atomics, fd=self.next_fd())
        if dev.vram is not None:
            dev.vram.stats = self.stats          # migration counters go to the summary
        attach_device(self.pagemaps_system, dev, own_ref=not self.profile.multi_device)
        self.devices[name] = dev
        return {"fd": dev.fd}

    def vm_create(self, *, vm: str, device: str, fault_mode: bool = False,
                  va_bits: int = DEFAULT_VA_BITS,
                  **unknown: object) -> Result:
        """A GPU VM on ``device``; a fault-mode VM gets its SVM state (and, newest profile,
        references on its device's pagemaps).

        Kernel: xe_vm_create_ioctl() (DRM_XE_VM_CREATE_FLAG_FAULT_MODE) -> xe_svm_init()
        -> xe_svm_get_pagemaps()."""
        return self.apply("vm_create", _fields(vm=vm, device=device, fault_mode=fault_mode,
                                               va_bits=va_bits, **unknown))

    def _ev_vm_create(self, ev: Mapping[str, Any]) -> Result:
        name = _str(ev, "vm")
        dev = self._device(_str(ev, "device"))
        fault_mode = _bool(ev, "fault_mode", False)
        va_bits = _int(ev, "va_bits", 32, 57, DEFAULT_VA_BITS)
        if name in self.vms:
            raise XeError(errno.EEXIST, f"VM {name!r} already exists")
        vm = Vm(self, name, dev, fault_mode, va_bits=va_bits)
        if fault_mode:
            vm.svm = Svm(vm, self.mm)
            svm_get_pagemaps(vm.svm.pagemaps, dev)
        self.vms[name] = vm
        return {}

    def bo_create(self, *, bo: str, device: str, size: int,
                  placement: list[str] | None = None,
                  **unknown: object) -> Result:
        """A buffer object of ``size`` bytes; ``placement`` lists ``"system"`` and/or
        ``"vram"`` (default ``["system"]``). Kernel: xe_gem_create_ioctl()."""
        return self.apply("bo_create", _fields(bo=bo, device=device, size=size,
                                               placement=placement, **unknown))

    def _ev_bo_create(self, ev: Mapping[str, Any]) -> Result:
        name = _str(ev, "bo")
        dev = self._device(_str(ev, "device"))
        size = _u64(ev, "size")
        placement = _list(ev, "placement") or ["system"]
        if name in self.bos:
            raise XeError(errno.EEXIST, f"BO {name!r} already exists")
        if size == 0 or size % 4096:
            raise XeError(errno.EINVAL,
                          f"bo_create: size {size:#x} must be a non-zero multiple of 4 KiB")
        for p in placement:
            if p not in PLACEMENTS:
                raise XeError(errno.EINVAL,
                              f"bo_create: unknown placement {p!r}; use {list(PLACEMENTS)}")
        if len(set(placement)) != len(placement):
            raise XeError(errno.EINVAL, "bo_create: a placement is listed twice")
        if "vram" in placement and not dev.discrete:
            raise XeError(errno.EINVAL, f"bo_create: device {dev.name} has no VRAM")
        self.bos[name] = Bo(name, self.next_handle(), dev, size, tuple(placement))
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

    def _ev_bind(self, ev: Mapping[str, Any]) -> Result:
        vm = self._vm(_str(ev, "vm"))
        op = _choice(ev, "op", ("map", "unmap", "map_userptr"))
        addr = _u64(ev, "addr")
        rng = _u64(ev, "range")
        if op == "unmap":
            vm.bind_unmap(addr, rng)
            return {}
        flags = BindFlag(0)
        for f in _list(ev, "flags"):
            if not isinstance(f, str) or f not in BIND_FLAGS:
                raise XeError(errno.EINVAL,
                              f"bind: unknown flag {f!r}; use {sorted(BIND_FLAGS)}")
            flags |= BIND_FLAGS[f]
        pat_index = _int(ev, "pat_index", 0, 0xFFFF, 0)
        offset = _u64(ev, "offset", 0)
        bo_name = _str(ev, "bo") if "bo" in ev else None
        # an unknown name stays a string: the kernel looks the handle up only
        # after the argument, VM-state and VM-range checks (ENOENT there)
        bo: Bo | str | None = bo_name
        if bo_name is not None:
            bo = self.bos.get(bo_name, bo_name)
        vm.bind_map(addr, rng, flags=flags, pat_index=pat_index, bo=bo, offset=offset,
                    userptr=op == "map_userptr")
        return {}

    def madvise(self, *, vm: str, addr: int, range: int, type: str | int,  # noqa: A002
                devmem_fd: int | str | None = None, region_instance: int | None = None,
                migration_policy: int = 0, val: int = 0, pad: int = 0,
                union_reserved: int = 0, reserved: list[int] | None = None,
                **unknown: object) -> Result:
        """Set a memory-range attribute: ``type`` is ``"preferred_loc"``, ``"atomic"``,
        ``"pat"``, ``"purgeable_state"`` or the uapi number; ``devmem_fd`` may name a
        device (then ``region_instance`` defaults to 1). The result lists the
        ``invalidated`` [addr, size] spans. Kernel: xe_vm_madvise_ioctl()."""
        return self.apply("madvise", _fields(
            vm=vm, addr=addr, range=range, type=type, devmem_fd=devmem_fd,
            region_instance=region_instance, migration_policy=migration_policy, val=val,
            pad=pad, union_reserved=union_reserved, reserved=reserved, **unknown))

    def _devmem_fd(self, ev: Mapping[str, Any]) -> tuple[int, int]:
        v = ev.get("devmem_fd", 0)
        if isinstance(v, str):
            dev = self.devices.get(v)
            if dev is None:
                raise XeError(errno.ENOENT, f"madvise: devmem_fd names no device {v!r}")
            return dev.fd, _int(ev, "region_instance", 0, 0xFFFF, 1)
        fd = _int(ev, "devmem_fd", -(1 << 31), (1 << 32) - 1, 0)
        if fd >= 1 << 31:
            fd -= 1 << 32     # the kernel reads the u32 as s32
        return fd, _int(ev, "region_instance", 0, 0xFFFF, 0)

    def _ev_madvise(self, ev: Mapping[str, Any]) -> Result:
        vm = self._vm(_str(ev, "vm"))
        addr = _u64(ev, "addr")
        rng = _u64(ev, "range")
        t = ev.get("type")
        if isinstance(t, str):
            if t not in MADVISE_TYPES:
                raise XeError(errno.EINVAL,
                              f"madvise: unknown type {t!r}; use {sorted(MADVISE_TYPES)}")
            typ = int(MADVISE_TYPES[t])
        else:
            typ = _int(ev, "type", 0, (1 << 32) - 1)
        fd, region = self._devmem_fd(ev) if typ == MemRangeAttr.PREFERRED_LOC else (0, 0)
        reserved = _list(ev, "reserved") or [0, 0]
        if len(reserved) != 2:
            raise XeError(errno.EINVAL, 'madvise: "reserved" must hold two integers')
        args = MadviseArgs(
            start=addr, range=rng, type=typ, devmem_fd=fd,
            migration_policy=_int(ev, "migration_policy", 0, 0xFFFF, 0),
            region_instance=region,
            val=_int(ev, "val", 0, (1 << 32) - 1, 0),
            pad=_int(ev, "pad", 0, (1 << 32) - 1, 0),
            union_reserved=_u64(ev, "union_reserved", 0),
            reserved=(_reserved_u64(reserved[0]), _reserved_u64(reserved[1])))
        return {"invalidated": madvise(vm, args)}

    def query(self, *, vm: str, addr: int = 0, range: int | None = None,
              **unknown: object) -> Result:  # noqa: A002
        """The VMAs over ``[addr, addr + range)`` (default: to the end of the VM) with their
        attributes. Kernel: xe_vm_query_vmas_attrs_ioctl() (which has no range checks)."""
        return self.apply("query", _fields(vm=vm, addr=addr, range=range, **unknown))

    def _ev_query(self, ev: Mapping[str, Any]) -> Result:
        vm = self._vm(_str(ev, "vm"))
        addr = _u64(ev, "addr", 0)
        rng = _u64(ev, "range", vm.size - addr if addr < vm.size else 0)
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
        return out

    def vm_kill(self, *, vm: str,
                **unknown: object) -> Result:
        """Ban the VM (bind and madvise then give ENOENT). Kernel: xe_vm_kill()."""
        return self.apply("vm_kill", {"vm": vm, **unknown})

    def _ev_vm_kill(self, ev: Mapping[str, Any]) -> Result:
        self._vm(_str(ev, "vm")).kill()
        return {}

    # -- the process's CPU side -----------------------------------------------------------

    def mmap(self, *, addr: int, size: int,
             **unknown: object) -> Result:
        """Map anonymous memory at ``addr``. Kernel: mmap(MAP_FIXED|MAP_ANONYMOUS)."""
        return self.apply("mmap", {"addr": addr, "size": size, **unknown})

    def _ev_mmap(self, ev: Mapping[str, Any]) -> Result:
        self.mm.mmap(_u64(ev, "addr"), _u64(ev, "size"))
        return {}

    def munmap(self, *, addr: int, size: int,
               **unknown: object) -> Result:
        """Unmap memory. Kernel: munmap() -> MMU_NOTIFY_UNMAP -> xe_svm_invalidate()."""
        return self.apply("munmap", {"addr": addr, "size": size, **unknown})

    def _ev_munmap(self, ev: Mapping[str, Any]) -> Result:
        self.mm.munmap(_u64(ev, "addr"), _u64(ev, "size"))
        return {}

    def cpu_write(self, *, addr: int, size: int, value: int = 0,
                  **unknown: object) -> Result:
        """A CPU store of ``value`` to every page (device pages fault back to RAM first:
        drm_pagemap_migrate_to_ram())."""
        return self.apply("cpu_write", {"addr": addr, "size": size, "value": value, **unknown})

    def _ev_cpu_write(self, ev: Mapping[str, Any]) -> Result:
        addr, size = _u64(ev, "addr"), _u64(ev, "size")
        value = _int(ev, "value", -_MAX_VALUE - 1, _MAX_VALUE, 0)
        self.mm.cpu_write(addr, size, value)
        return {}

    def cpu_read(self, *, addr: int, size: int,
                 **unknown: object) -> Result:
        """A CPU load of every page; the result's ``data`` has one value per page."""
        return self.apply("cpu_read", {"addr": addr, "size": size, **unknown})

    def _ev_cpu_read(self, ev: Mapping[str, Any]) -> Result:
        return {"data": self.mm.cpu_read(_u64(ev, "addr"), _u64(ev, "size"))}

    def invalidate(self, *, addr: int, size: int, event: str = "clear",
                   **unknown: object) -> Result:
        """An MMU notifier invalidation that is not an unmap (the CPU mapping stays).

        Kernel: mmu_notifier_invalidate_range_start() with e.g. MMU_NOTIFY_CLEAR
        (page reclaim, madvise(MADV_DONTNEED) zapping, KSM) or
        MMU_NOTIFY_PROTECTION_VMA (mprotect): xe_svm_invalidate() zaps the GPU
        mappings and unmaps the DMA pages, but queues nothing for the garbage
        collector, so the next GPU access faults and rebinds the same range.
        Page contents are unchanged."""
        return self.apply("invalidate", {"addr": addr, "size": size, "event": event, **unknown})

    def _ev_invalidate(self, ev: Mapping[str, Any]) -> Result:
        addr, size = _u64(ev, "addr"), _u64(ev, "size")
        kind = _choice(ev, "event", tuple(NOTIFY_EVENTS), default="clear")
        if addr % PAGE_SIZE or size % PAGE_SIZE or size == 0 or addr + size > 1 << 64:
            raise XeError(errno.EINVAL, f"invalidate [{addr:#x}, +{size:#x}) must be 4 KiB "
                          "aligned and non-empty")
        self.mm.invalidate(addr, addr + size, NOTIFY_EVENTS[kind])
        return {}

    # -- the GPU side ---------------------------------------------------------------------

    def gpu_access(self, *, vm: str, addr: int, size: int, op: str,
                   value: int = 0,
                   **unknown: object) -> Result:
        """The device reads, writes or atomically increments every page; faults are
        serviced by the SVM fault handler. The result has ``faults``, ``retries``, ``data``
        (reads) and ``injected`` (outputs of injected events that fired). A failed fault
        raises XeError whose ``details`` hold ``faults``, ``retries`` and ``fault_addr``.

        Kernel: the GPU's page fault -> xe_pagefault -> xe_svm_handle_pagefault()."""
        return self.apply("gpu_access", {"vm": vm, "addr": addr, "size": size, "op": op,
                                         "value": value, **unknown})

    def _ev_gpu_access(self, ev: Mapping[str, Any]) -> Result:
        svm = self._svm(_str(ev, "vm"))
        addr, size = _u64(ev, "addr"), _u64(ev, "size")
        op = _choice(ev, "op", ("read", "write", "atomic"))
        value = _int(ev, "value", -_MAX_VALUE - 1, _MAX_VALUE, 0)
        before = {id(s): len(s.injection_log) for s in self.svms()}
        try:
            out: Result = dict(gpu_access(svm, addr, size, op, value))
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

    def prefetch(self, *, vm: str, addr: int, range: int, region: str,
                 **unknown: object) -> Result:  # noqa: A002
        """Create, place (``region`` ``"vram"`` or ``"system"``) and bind the SVM ranges of
        ``[addr, addr + range)``; the result counts ``ranges_bound``.

        Kernel: DRM_XE_VM_BIND_OP_PREFETCH on CPU-mirror VMAs."""
        return self.apply("prefetch", {"vm": vm, "addr": addr, "range": range,
                                       "region": region, **unknown})

    def _ev_prefetch(self, ev: Mapping[str, Any]) -> Result:
        svm = self._svm(_str(ev, "vm"))
        addr, rng = _u64(ev, "addr"), _u64(ev, "range")
        region = _choice(ev, "region", ("vram", "system"))
        return {"ranges_bound": svm.prefetch(addr, addr + rng, region)}

    def ranges(self, *, vm: str,
               **unknown: object) -> Result:
        """The VM's SVM ranges: ``addr``, ``range``, ``location``, ``unmapped``."""
        return self.apply("ranges", {"vm": vm, **unknown})

    def _ev_ranges(self, ev: Mapping[str, Any]) -> Result:
        return {"ranges": self._svm(_str(ev, "vm")).ranges_info()}

    def gc(self, *, vm: str,
           **unknown: object) -> Result:
        """Run the VM's SVM garbage collector now; ``eagain`` if VMAs changed.

        Kernel: xe_svm_garbage_collector()."""
        return self.apply("gc", {"vm": vm, **unknown})

    def _ev_gc(self, ev: Mapping[str, Any]) -> Result:
        err = self._svm(_str(ev, "vm")).garbage_collector()
        if err and err != errno.EAGAIN:
            raise XeError(err, f"garbage collector failed ({errno_name(err)})")
        return {"eagain": err == errno.EAGAIN}

    def evict(self, *, device: str,
              **unknown: object) -> Result:
        """Move every page out of the device's VRAM; the result counts ``pages``.

        Kernel: TTM eviction -> xe_svm_bo_evict() -> drm_pagemap_evict_to_ram()."""
        return self.apply("evict", {"device": device, **unknown})

    def _ev_evict(self, ev: Mapping[str, Any]) -> Result:
        return {"pages": evict_device(self._device(_str(ev, "device")))}

    def fault_guard(self, *, vm: str, max_iterations: int,
                    **unknown: object) -> Result:
        """Set (or with 0, clear) the VM's livelock guard: a fault still not serviced after
        ``max_iterations`` loop rounds fails with ELOOP naming why it kept retrying. Without
        a guard the fault loop is unbounded, as in the kernel."""
        return self.apply("fault_guard", {"vm": vm, "max_iterations": max_iterations, **unknown})

    def _ev_fault_guard(self, ev: Mapping[str, Any]) -> Result:
        svm = self._svm(_str(ev, "vm"))
        n = _int(ev, "max_iterations", 0, 1 << 31)
        svm.max_fault_iterations = n or None
        return {"max_iterations": n}

    def inject(self, *, at: str, event: Mapping[str, Any],
               **unknown: object) -> Result:
        """Queue ``event`` (a trace event as a dict, with ``"ev"``) to run once, the next
        time any VM's fault handler reaches point ``at`` (``fault.start``,
        ``fault.after_find_range``, ``fault.after_migrate``, ``fault.after_get_pages``,
        ``fault.before_bind``), as an asynchronous munmap, eviction or invalidation would."""
        return self.apply("inject", {"at": at, "event": event, **unknown})

    def _ev_inject(self, ev: Mapping[str, Any]) -> Result:
        at = _choice(ev, "at", INJECTION_POINTS)
        inner = ev.get("event")
        if not isinstance(inner, dict) or not isinstance(inner.get("ev"), str):
            raise XeError(errno.EINVAL,
                          'inject: field "event" must be an event object with "ev"')
        if inner["ev"] in ("inject", "gpu_access", "prefetch"):
            raise XeError(errno.EINVAL, f"inject: a {inner['ev']!r} event cannot be injected "
                          "(the fault handler holds the VM lock)")
        svm = next(self.svms(), None)
        if svm is None:
            raise XeError(errno.EINVAL, "inject: no fault-mode VM exists yet")
        queued = dict(inner)
        svm.inject(at, lambda: self.execute(queued))
        return {}

    # -- devices' pagemap lifetimes -------------------------------------------------------

    def link(self, *, a: str, b: str,
             **unknown: object) -> Result:
        """Join two devices by a fast interconnect (their pagemaps then share an owner).

        Kernel: PCI P2P reachability (xe_has_interconnect)."""
        return self.apply("link", {"a": a, "b": b, **unknown})

    def _ev_link(self, ev: Mapping[str, Any]) -> Result:
        a, b = self._device(_str(ev, "a")), self._device(_str(ev, "b"))
        self.pagemaps_system.link(a.name, b.name)
        self.links.add(frozenset((a.name, b.name)))
        return {}

    def unbind_device(self, *, device: str,
                      **unknown: object) -> Result:
        """Unbind the driver from the device; its device pages migrate to RAM
        (``evicted_pages``). Kernel: xe_pci_remove()."""
        return self.apply("unbind_device", {"device": device, **unknown})

    def _ev_unbind_device(self, ev: Mapping[str, Any]) -> Result:
        return self._unbind(self._device(_str(ev, "device")))

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

    def _ev_rmmod(self, ev: Mapping[str, Any]) -> Result:
        dev = self._device(_str(ev, "device"))
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

    def _ev_run_workers(self, ev: Mapping[str, Any]) -> Result:
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

    def _ev_pagemaps(self, ev: Mapping[str, Any]) -> Result:
        return {"pagemaps": self.pagemaps_system.snapshot()}

    def teardown(self, **unknown: object) -> Result:
        """Process exit, then unload every driver module and the drm_pagemap module; the
        result's ``leftovers`` lists whatever was still referenced (empty when clean).
        Ends the simulation."""
        return self.apply("teardown", dict(unknown))

    def _ev_teardown(self, ev: Mapping[str, Any]) -> Result:
        return {"leftovers": teardown(self.pagemaps_system, self.devices, self.vms,
                                      self.run_deferred)}


def _tag(event: Event) -> str:
    tag = event.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def _reserved_u64(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= U64_MAX:
        raise XeError(errno.EINVAL, 'madvise: "reserved" must hold two u64 integers')
    return v


_Handler = Callable[[World, Mapping[str, Any]], Result]

#: Event name -> handler, in the order the trace format lists them.
_HANDLERS: dict[str, _Handler] = {
    "config": World._ev_config, "device": World._ev_device, "vm_create": World._ev_vm_create,
    "bo_create": World._ev_bo_create, "bind": World._ev_bind, "madvise": World._ev_madvise,
    "query": World._ev_query, "vm_kill": World._ev_vm_kill, "mmap": World._ev_mmap,
    "munmap": World._ev_munmap, "cpu_write": World._ev_cpu_write,
    "cpu_read": World._ev_cpu_read, "gpu_access": World._ev_gpu_access,
    "prefetch": World._ev_prefetch, "ranges": World._ev_ranges, "gc": World._ev_gc,
    "evict": World._ev_evict, "invalidate": World._ev_invalidate,
    "fault_guard": World._ev_fault_guard, "inject": World._ev_inject,
    "link": World._ev_link, "unbind_device": World._ev_unbind_device,
    "rmmod": World._ev_rmmod, "run_workers": World._ev_run_workers,
    "pagemaps": World._ev_pagemaps, "teardown": World._ev_teardown,
}

#: Every trace event name (each is a :class:`World` method of the same name).
EVENTS: tuple[str, ...] = tuple(_HANDLERS)
