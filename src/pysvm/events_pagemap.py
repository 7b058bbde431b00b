"""Trace handlers for devices' pagemap lifetimes: link, unbind_device, rmmod, run_workers,
pagemaps, and the project's extension ``teardown``.

Kernel: the events stand for PCI topology (P2P links), driver unbind (xe_pci_remove), module
unload (delete_module), the deferred work queues (drm_pagemap_work, xe destroy_wq, the SVM
garbage-collector work), a debugfs-like listing of drm_pagemaps, and process exit followed by
unloading every driver (``teardown``). See TRACE.md and docs/pagemap.md.

Importing this module registers :func:`pysvm.pagemap.attach_device` as a device-init hook, so
every ``device`` event gets a pagemap provider and ``device.pagemap``, and
:func:`pysvm.pagemap.svm_get_pagemaps` as a VM-init hook (newest profile: a fault-mode VM
holds its device's pagemaps, as xe_svm_init() does).
"""

from __future__ import annotations

import errno
from typing import Any

from .device import DEVICE_INIT_HOOKS, Device
from .errors import XeError
from .pagemap import attach_device, svm_get_pagemaps, system_for, teardown_world
from .trace import Engine, handler, req_str
from .vm import VM_INIT_HOOKS, Vm
from .world import World

__all__ = ["ev_link", "ev_unbind_device", "ev_rmmod", "ev_run_workers", "ev_pagemaps",
           "ev_teardown"]


def _device_init_hook(world: Any, device: Device) -> None:
    attach_device(world, device)


def _vm_init_hook(vm: Vm) -> None:
    svm_get_pagemaps(vm)


def _registered(hooks: list[Any], name: str) -> bool:
    return any(getattr(h, "__qualname__", "") == name
               and getattr(h, "__module__", "") == __name__ for h in hooks)


if not _registered(DEVICE_INIT_HOOKS, "_device_init_hook"):
    DEVICE_INIT_HOOKS.append(_device_init_hook)
if not _registered(VM_INIT_HOOKS, "_vm_init_hook"):
    VM_INIT_HOOKS.append(_vm_init_hook)


def _pagemaps_alive(world: World) -> dict[str, int]:
    return {"pagemaps_alive": len(system_for(world).alive())}


def _ensure_summary(world: World) -> None:
    if _pagemaps_alive not in world.summary_hooks:
        world.summary_hooks.append(_pagemaps_alive)


def _device(engine: Engine, ev: dict[str, Any], key: str = "device") -> Device:
    name = req_str(ev, key)
    dev = engine.world.devices.get(name)
    if dev is None:
        raise XeError(errno.ENOENT, f"no device named {name!r}")
    s = system_for(engine.world)
    if name not in s.providers:  # created before this module was imported
        attach_device(engine.world, dev)
    _ensure_summary(engine.world)
    return dev


def _evict(dev: Device) -> int:
    try:
        from .migrate import evict_device
    except ModuleNotFoundError as e:  # no migration layer: nothing can be resident
        if e.name != "pysvm.migrate":
            raise
        return 0
    return int(evict_device(dev))


@handler("link")
def ev_link(engine: Engine, ev: dict[str, Any]) -> dict[str, Any]:
    """Kernel: PCI P2P reachability (xe_has_interconnect) between two devices."""
    a, b = _device(engine, ev, "a"), _device(engine, ev, "b")
    system_for(engine.world).link(a.name, b.name)
    engine.world.links.add(frozenset((a.name, b.name)))
    return {}


@handler("unbind_device")
def ev_unbind_device(engine: Engine, ev: dict[str, Any]) -> dict[str, Any]:
    """Kernel: xe_pci_remove(): unplug, migrate device pages to RAM, devm teardown."""
    dev = _device(engine, ev)
    prov = system_for(engine.world).provider(dev.name)
    if prov.unbound:
        raise XeError(errno.ENODEV, f"device {dev.name} is already unbound")
    moved: list[int] = []
    dev.unbound = True
    prov.unbind(evict=lambda: moved.append(_evict(dev)))
    return {"evicted_pages": sum(moved)}


@handler("rmmod")
def ev_rmmod(engine: Engine, ev: dict[str, Any]) -> dict[str, Any]:
    """Model rule: EBUSY while a pagemap device hold pins the provider module (TRACE.md)."""
    dev = _device(engine, ev)
    prov = system_for(engine.world).provider(dev.name)
    if not prov.module.loaded:
        raise XeError(errno.ENOENT, f"module of {dev.name} is not loaded")
    if prov.module.refcount:
        raise XeError(errno.EBUSY, f"module of {dev.name} is in use: {prov.module.refcount} "
                      "pagemap device hold(s) (run_workers drops released holds)")
    out: dict[str, Any] = {}
    if not prov.unbound:
        out.update(ev_unbind_device(engine, ev) or {})   # with the eviction of its pages
    prov.rmmod()
    return out


@handler("run_workers")
def ev_run_workers(engine: Engine, ev: dict[str, Any]) -> dict[str, Any]:
    """Kernel: the queued work items (GC work, xe pagemap destroy work, drm_pagemap unhold)."""
    _ensure_summary(engine.world)
    other = engine.world.run_workers()
    res = system_for(engine.world).run_workers()
    return {"work_items": other, "pagemaps_destroyed": res["destroyed"],
            "holds_dropped": res["unheld"]}


@handler("pagemaps")
def ev_pagemaps(engine: Engine, ev: dict[str, Any]) -> dict[str, Any]:
    """The live drm_pagemaps: device, refcount, cached (inactive on the shrinker), device_held."""
    _ensure_summary(engine.world)
    return {"pagemaps": system_for(engine.world).snapshot()}


@handler("teardown")
def ev_teardown(engine: Engine, ev: dict[str, Any]) -> dict[str, Any]:
    """Project extension: close every VM, evict, run the work, unload every driver module and
    the drm_pagemap module (:func:`pysvm.pagemap.teardown_world`). Result adds ``leftovers``
    (what was still referenced; empty when everything was released). Ends the simulation."""
    _ensure_summary(engine.world)
    return {"leftovers": teardown_world(engine.world)}
