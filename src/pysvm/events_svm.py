"""Trace handlers of the SVM layer (TRACE.md): CPU memory, GPU access, GC, eviction.

Events: ``mmap``, ``munmap``, ``cpu_write``, ``cpu_read``, ``gpu_access``,
``prefetch``, ``ranges``, ``gc``, ``evict``, ``inject``, and the project's
additions ``invalidate`` (a non-unmap MMU notifier event) and ``fault_guard``
(the opt-in livelock guard); see docs/svm.md.

Injection points for ``inject`` (pysvm.svm.INJECTION_POINTS):
``fault.start`` (before the GC of each inner iteration), ``fault.after_find_range``,
``fault.after_migrate`` (after a successful migration), ``fault.after_get_pages``
and ``fault.before_bind``. The injected event runs once, the next time any
VM's fault handler reaches the point, as an asynchronous CPU munmap, eviction
or invalidation would. Its output line is reported in the ``gpu_access``
result under ``"injected"``.

Kernel: none directly; each handler names the kernel path it drives.
"""

from __future__ import annotations

import errno
from typing import Any

from .errors import XeError, errno_name
from .migrate import evict_device
from .mm import PAGE_SIZE, NotifyEvent
from .svm import INJECTION_POINTS, Svm, get_mm, world_vram
from .trace import Engine, choice, handler, opt_int, req_int, req_str, req_u64

__all__: list[str] = []

_MAX_VALUE = (1 << 63) - 1


def _svm(engine: Engine, ev: dict[str, Any]) -> Svm:
    name = req_str(ev, "vm")
    vm = engine.world.vms.get(name)
    if vm is None:
        raise XeError(errno.ENOENT, f"no VM named {name!r}")
    svm: Svm | None = vm.svm
    if svm is None:
        raise XeError(errno.EINVAL, f"VM {name!r} is not in fault mode (no SVM)")
    return svm


def _svms(engine: Engine) -> list[Svm]:
    return [vm.svm for vm in engine.world.vms.values() if vm.svm is not None]


def _span(ev: dict[str, Any], key: str = "size") -> tuple[int, int]:
    return req_u64(ev, "addr"), req_u64(ev, key)


@handler("mmap")
def ev_mmap(engine: Engine, ev: dict[str, Any]) -> None:
    """Kernel: mmap(MAP_FIXED|MAP_ANONYMOUS)."""
    addr, size = _span(ev)
    get_mm(engine.world).mmap(addr, size)
    return None


@handler("munmap")
def ev_munmap(engine: Engine, ev: dict[str, Any]) -> None:
    """Kernel: munmap() -> MMU_NOTIFY_UNMAP -> xe_svm_invalidate."""
    addr, size = _span(ev)
    get_mm(engine.world).munmap(addr, size)
    return None


@handler("cpu_write")
def ev_cpu_write(engine: Engine, ev: dict[str, Any]) -> None:
    """A CPU store to every page (device pages fault back: migrate_to_ram)."""
    addr, size = _span(ev)
    value = opt_int(ev, "value", 0, -_MAX_VALUE - 1, _MAX_VALUE)
    get_mm(engine.world).cpu_write(addr, size, value)
    return None


@handler("cpu_read")
def ev_cpu_read(engine: Engine, ev: dict[str, Any]) -> dict[str, Any]:
    """A CPU load of every page; adds ``data``."""
    addr, size = _span(ev)
    return {"data": get_mm(engine.world).cpu_read(addr, size)}


@handler("gpu_access")
def ev_gpu_access(engine: Engine, ev: dict[str, Any]) -> dict[str, Any]:
    """The device touches every page (xe_pagefault -> xe_svm_handle_pagefault)."""
    svm = _svm(engine, ev)
    addr, size = _span(ev)
    op = choice(ev, "op", ("read", "write", "atomic"))
    value = opt_int(ev, "value", 0, -_MAX_VALUE - 1, _MAX_VALUE)
    before = {id(s): len(s.injection_log) for s in _svms(engine)}
    try:
        out = svm.gpu_access(addr, size, op, value)
    except XeError as e:
        # The engine would drop faults/retries on a raised error; report them
        # with the errno ourselves and count the error as the engine does.
        engine.world.stats["errors"] += 1
        out = {"result": errno_name(e.errno or errno.EINVAL), "message": e.strerror,
               "faults": getattr(e, "faults", 0), "retries": getattr(e, "retries", 0)}
        if getattr(e, "fault_addr", None) is not None:
            out["fault_addr"] = e.fault_addr  # type: ignore[attr-defined]
    fired = [f for s in _svms(engine) for f in s.injection_log[before.get(id(s), 0):]]
    if fired:
        out["injected"] = [{"at": p, "fault_addr": fa,
                            **(r if isinstance(r, dict) else {"result": str(r)})}
                           for p, r, fa in fired]
    return out


@handler("prefetch")
def ev_prefetch(engine: Engine, ev: dict[str, Any]) -> dict[str, Any]:
    """Kernel: DRM_XE_VM_BIND_OP_PREFETCH on CPU-mirror VMAs."""
    svm = _svm(engine, ev)
    addr, rng = _span(ev, "range")
    region = choice(ev, "region", ("vram", "system"))
    return {"ranges_bound": svm.prefetch(addr, addr + rng, region)}


@handler("ranges")
def ev_ranges(engine: Engine, ev: dict[str, Any]) -> dict[str, Any]:
    """List the VM's SVM ranges."""
    return {"ranges": _svm(engine, ev).ranges_info()}


@handler("gc")
def ev_gc(engine: Engine, ev: dict[str, Any]) -> dict[str, Any]:
    """Run the garbage collector now. Kernel: xe_svm_garbage_collector()."""
    svm = _svm(engine, ev)
    err = svm.garbage_collector()
    if err and err != errno.EAGAIN:
        raise XeError(err, f"garbage collector failed ({errno_name(err)})")
    return {"eagain": err == errno.EAGAIN}


@handler("evict")
def ev_evict(engine: Engine, ev: dict[str, Any]) -> dict[str, Any]:
    """Move every page out of a device's VRAM. Kernel: TTM evict -> xe_svm_bo_evict."""
    name = req_str(ev, "device")
    dev = engine.world.devices.get(name)
    if dev is None:
        raise XeError(errno.ENOENT, f"no device named {name!r}")
    world_vram(engine.world, dev)
    get_mm(engine.world)
    return {"pages": evict_device(dev)}


#: ``invalidate`` event names -> MMU notifier events (UNMAP is what munmap sends).
_NOTIFY_EVENTS = {"clear": NotifyEvent.CLEAR, "protection_vma": NotifyEvent.PROTECTION_VMA,
                  "protection_page": NotifyEvent.PROTECTION_PAGE,
                  "soft_dirty": NotifyEvent.SOFT_DIRTY, "migrate": NotifyEvent.MIGRATE,
                  "exclusive": NotifyEvent.EXCLUSIVE}


@handler("invalidate")
def ev_invalidate(engine: Engine, ev: dict[str, Any]) -> None:
    """An MMU notifier invalidation that is not an unmap (the CPU mapping stays).

    Kernel: mmu_notifier_invalidate_range_start() with e.g. MMU_NOTIFY_CLEAR
    (page reclaim, madvise(MADV_DONTNEED) zapping, KSM) or
    MMU_NOTIFY_PROTECTION_VMA (mprotect): xe_svm_invalidate() zaps the GPU
    mappings and unmaps the DMA pages, but queues nothing for the garbage
    collector, so the next GPU access faults and rebinds the same range.
    ``event`` defaults to ``"clear"``. Page contents are unchanged.
    """
    addr, size = _span(ev)
    kind = choice(ev, "event", tuple(_NOTIFY_EVENTS), default="clear")
    if addr % PAGE_SIZE or size % PAGE_SIZE or size == 0 or addr + size > 1 << 64:
        raise XeError(errno.EINVAL, f"invalidate [{addr:#x}, +{size:#x}) must be 4 KiB "
                      "aligned and non-empty")
    get_mm(engine.world).invalidate(addr, addr + size, _NOTIFY_EVENTS[kind])
    return None


@handler("fault_guard")
def ev_fault_guard(engine: Engine, ev: dict[str, Any]) -> dict[str, Any]:
    """Set (or with 0, clear) the VM's livelock guard: ``max_iterations`` fault-loop rounds.

    A fault still not serviced after that many outer + inner iterations fails with
    ``ELOOP`` and a message listing why it kept retrying. Without a guard the fault
    loop is unbounded, as in the kernel (nothing caps retries silently).
    """
    svm = _svm(engine, ev)
    n = req_int(ev, "max_iterations", 0, 1 << 31)
    svm.max_fault_iterations = n or None
    return {"max_iterations": n}


@handler("inject")
def ev_inject(engine: Engine, ev: dict[str, Any]) -> None:
    """Queue an event to fire at a named fault-handler point."""
    at = choice(ev, "at", INJECTION_POINTS)
    inner = ev.get("event")
    if not isinstance(inner, dict) or not isinstance(inner.get("ev"), str):
        raise XeError(errno.EINVAL, 'inject: field "event" must be an event object with "ev"')
    if inner["ev"] in ("inject", "gpu_access", "prefetch"):
        raise XeError(errno.EINVAL, f"inject: a {inner['ev']!r} event cannot be injected "
                      "(the fault handler holds the VM lock)")
    svms = [vm.svm for vm in engine.world.vms.values() if vm.svm is not None]
    if not svms:
        raise XeError(errno.EINVAL, "inject: no fault-mode VM exists yet")
    svms[0].inject(at, lambda: engine.execute(dict(inner)))
    return None
