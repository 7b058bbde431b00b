"""Trace handlers of the Xe layer: config, device, vm_create, bo_create, bind,
madvise, query, vm_kill.

Kernel: the ioctls these events stand for (xe_vm_create_ioctl,
xe_gem_create_ioctl, xe_vm_bind_ioctl, xe_vm_madvise_ioctl,
xe_vm_query_vmas_attrs_ioctl) and xe_vm_kill().
"""

from __future__ import annotations

import errno
from typing import Any

from .attr import BindFlag, MemRangeAttr
from .bo import PLACEMENTS, Bo
from .device import DEVICE_INIT_HOOKS, Device
from .errors import XeError
from .madvise import MadviseArgs, madvise
from .profile import PROFILES
from .trace import (
    U64_MAX,
    Engine,
    choice,
    handler,
    opt_bool,
    opt_int,
    opt_list,
    opt_str,
    opt_u64,
    req_int,
    req_str,
    req_u64,
)
from .vm import DEFAULT_VA_BITS, Vm
from .vma import Vma

MIB = 1 << 20

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


def get_vm(engine: Engine, ev: dict[str, Any]) -> Vm:
    """The VM named by ev["vm"]; EINVAL if there is none (xe_vm_lookup failing)."""
    name = req_str(ev, "vm")
    vm = engine.world.vms.get(name)
    if vm is None:
        raise XeError(errno.EINVAL, f"no VM named {name!r}")
    return vm


def get_device(engine: Engine, ev: dict[str, Any], key: str = "device") -> Device:
    """The device named by ev[key]; ENOENT if there is none."""
    name = req_str(ev, key)
    dev = engine.world.devices.get(name)
    if dev is None:
        raise XeError(errno.ENOENT, f"no device named {name!r}")
    return dev


@handler("config")
def ev_config(engine: Engine, ev: dict[str, Any]) -> dict[str, Any]:
    """Choose the kernel profile (before the first device). Kernel: none."""
    w = engine.world
    name = choice(ev, "profile", PROFILES, default="6.18")
    if name != w.profile.name and (w.devices or w.vms):
        raise XeError(errno.EBUSY, "config: the profile can only change before the first device")
    w.set_profile(name)
    return {"profile": name}


@handler("device")
def ev_device(engine: Engine, ev: dict[str, Any]) -> dict[str, Any]:
    """A device with one VRAM tile; result adds its file's ``fd``.

    Kernel: the xe PCI probe plus an open() of the device file.
    """
    w = engine.world
    name = req_str(ev, "name")
    discrete = opt_bool(ev, "discrete", True)
    vram_mib = opt_int(ev, "vram_mib", 256 if discrete else 0, 0, U64_MAX // MIB)
    smem_atomics = opt_bool(ev, "smem_atomics", False)
    if name in w.devices:
        raise XeError(errno.EEXIST, f"device {name!r} already exists")
    if discrete and vram_mib == 0:
        raise XeError(errno.EINVAL, "device: a discrete device needs vram_mib > 0")
    if not discrete and vram_mib:
        raise XeError(errno.EINVAL, "device: an integrated device has no VRAM (vram_mib must be 0)")
    dev = Device(name, vram_mib * MIB, discrete, smem_atomics, fd=w.next_fd())
    w.devices[name] = dev
    for hook in DEVICE_INIT_HOOKS:
        hook(w, dev)
    return {"fd": dev.fd}


@handler("vm_create")
def ev_vm_create(engine: Engine, ev: dict[str, Any]) -> None:
    """Kernel: xe_vm_create_ioctl() (FAULT_MODE flag = ``fault_mode``)."""
    w = engine.world
    name = req_str(ev, "vm")
    dev = get_device(engine, ev)
    fault_mode = opt_bool(ev, "fault_mode", False)
    va_bits = opt_int(ev, "va_bits", DEFAULT_VA_BITS, 32, 57)
    if name in w.vms:
        raise XeError(errno.EEXIST, f"VM {name!r} already exists")
    w.vms[name] = Vm(w, name, dev, fault_mode, va_bits=va_bits)
    return None


@handler("bo_create")
def ev_bo_create(engine: Engine, ev: dict[str, Any]) -> None:
    """Kernel: xe_gem_create_ioctl() (placement = the region mask)."""
    w = engine.world
    name = req_str(ev, "bo")
    dev = get_device(engine, ev)
    size = req_u64(ev, "size")
    placement = opt_list(ev, "placement") or ["system"]
    if name in w.bos:
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
    w.bos[name] = Bo(name, w.next_handle(), dev, size, tuple(placement))
    return None


@handler("bind")
def ev_bind(engine: Engine, ev: dict[str, Any]) -> dict[str, Any] | None:
    """Kernel: xe_vm_bind_ioctl() with one bind op (map, map_userptr or unmap)."""
    vm = get_vm(engine, ev)
    op = choice(ev, "op", ("map", "unmap", "map_userptr"))
    addr = req_u64(ev, "addr")
    rng = req_u64(ev, "range")
    if op == "unmap":
        vm.bind_unmap(addr, rng)
        return None
    flags = BindFlag(0)
    for f in opt_list(ev, "flags"):
        if not isinstance(f, str) or f not in BIND_FLAGS:
            raise XeError(errno.EINVAL, f"bind: unknown flag {f!r}; use {sorted(BIND_FLAGS)}")
        flags |= BIND_FLAGS[f]
    pat_index = opt_int(ev, "pat_index", 0, 0, 0xFFFF)
    offset = opt_u64(ev, "offset", 0)
    bo_name = opt_str(ev, "bo")
    # an unknown name stays a string: the kernel looks the handle up only
    # after the argument, VM-state and VM-range checks (ENOENT there)
    bo: Bo | str | None = bo_name
    if bo_name is not None:
        bo = engine.world.bos.get(bo_name, bo_name)
    vm.bind_map(addr, rng, flags=flags, pat_index=pat_index, bo=bo, offset=offset,
                userptr=op == "map_userptr")
    return None


def _devmem_fd(engine: Engine, ev: dict[str, Any]) -> tuple[int, int]:
    """(devmem_fd, region_instance) from a trace madvise event."""
    v = ev.get("devmem_fd", 0)
    if isinstance(v, str):
        dev = engine.world.devices.get(v)
        if dev is None:
            raise XeError(errno.ENOENT, f"madvise: devmem_fd names no device {v!r}")
        return dev.fd, opt_int(ev, "region_instance", 1, 0, 0xFFFF)
    fd = opt_int(ev, "devmem_fd", 0, -(1 << 31), (1 << 32) - 1)
    if fd >= 1 << 31:
        fd -= 1 << 32     # the kernel reads the u32 as s32
    return fd, opt_int(ev, "region_instance", 0, 0, 0xFFFF)


@handler("madvise")
def ev_madvise(engine: Engine, ev: dict[str, Any]) -> dict[str, Any]:
    """Kernel: xe_vm_madvise_ioctl(); result adds ``invalidated``."""
    vm = get_vm(engine, ev)
    addr = req_u64(ev, "addr")
    rng = req_u64(ev, "range")
    t = ev.get("type")
    if isinstance(t, str):
        if t not in MADVISE_TYPES:
            raise XeError(errno.EINVAL, f"madvise: unknown type {t!r}; use {sorted(MADVISE_TYPES)}")
        typ = int(MADVISE_TYPES[t])
    else:
        typ = req_int(ev, "type", 0, (1 << 32) - 1)
    fd, region = _devmem_fd(engine, ev) if typ == MemRangeAttr.PREFERRED_LOC else (0, 0)
    reserved = opt_list(ev, "reserved") or [0, 0]
    if len(reserved) != 2:
        raise XeError(errno.EINVAL, 'madvise: "reserved" must hold two integers')
    args = MadviseArgs(
        start=addr, range=rng, type=typ, devmem_fd=fd,
        migration_policy=opt_int(ev, "migration_policy", 0, 0, 0xFFFF),
        region_instance=region,
        val=opt_int(ev, "val", 0, 0, (1 << 32) - 1),
        pad=opt_int(ev, "pad", 0, 0, (1 << 32) - 1),
        union_reserved=opt_u64(ev, "union_reserved", 0),
        reserved=(_as_u64(reserved[0]), _as_u64(reserved[1])))
    return {"invalidated": madvise(vm, args)}


def _as_u64(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= U64_MAX:
        raise XeError(errno.EINVAL, 'madvise: "reserved" must hold two u64 integers')
    return v


def _fd_out(engine: Engine, fd: int) -> int | str:
    if fd > 0:
        dev = engine.world.device_by_fd(fd)
        if dev is not None:
            return dev.name
    return fd


def vma_dict(engine: Engine, v: Vma) -> dict[str, Any]:
    """A VMA as the query event reports it."""
    a = v.attr
    out: dict[str, Any] = {
        "addr": v.addr, "range": v.range, "flags": v.flag_names(),
        "attrs": {"devmem_fd": _fd_out(engine, a.preferred_loc.devmem_fd),
                  "migration_policy": a.preferred_loc.migration_policy,
                  "atomic": a.atomic_access, "pat_index": a.pat_index,
                  "default_pat_index": a.default_pat_index}}
    if v.bo is not None:
        out["bo"] = v.bo.name
        out["offset"] = v.offset
    elif v.is_userptr():
        out["userptr"] = v.offset
    return out


@handler("query")
def ev_query(engine: Engine, ev: dict[str, Any]) -> dict[str, Any]:
    """The memory-range attribute query; ``range`` defaults to the rest of the VM.

    Kernel: xe_vm_query_vmas_attrs_ioctl() (which has no range checks).
    """
    vm = get_vm(engine, ev)
    addr = opt_u64(ev, "addr", 0)
    rng = opt_u64(ev, "range", vm.size - addr if addr < vm.size else 0)
    return {"vmas": [vma_dict(engine, v) for v in vm.query(addr, rng)]}


@handler("vm_kill")
def ev_vm_kill(engine: Engine, ev: dict[str, Any]) -> None:
    """Kernel: xe_vm_kill() (the VM is banned: bind and madvise give ENOENT)."""
    get_vm(engine, ev).kill()
    return None
