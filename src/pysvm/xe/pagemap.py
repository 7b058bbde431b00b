"""The Xe pagemap glue: providers (devices offering VRAM pagemaps), the subsystem state,
the device's pagemap handle and the references Xe users hold.

Kernel: the xe_pagemap parts of drivers/gpu/drm/xe/xe_svm.c (xe_pagemap_create,
xe_pagemap_find_or_create, xe_tile_local_pagemap, xe_svm_get_pagemaps/xe_svm_put_pagemaps,
xe_pagemap_destroy_work), xe_pci_remove() for unbind, delete_module() for rmmod.
"""

from __future__ import annotations

import errno
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pysvm.drm.pagemap import (
    DevHold,
    DrmDevice,
    DrmModule,
    Pagemap,
    PagemapState,
    PagemapUseAfterFree,
)
from pysvm.drm.pagemap_util import (
    Owner,
    OwnerList,
    PagemapCache,
    PagemapShrinker,
    Peer,
)
from pysvm.errors import XeError

if TYPE_CHECKING:
    from pysvm.xe.device import Device
    from pysvm.xe.vram import Vram

__all__ = ["DevicePagemap", "PagemapSystem", "Provider", "attach_device", "range_pagemap_get",
           "range_pagemap_put", "svm_get_pagemaps", "svm_put_pagemaps"]

# --------------------------------------------------------------------------------------------
# Providers and the whole subsystem
# --------------------------------------------------------------------------------------------


class Provider:
    """A device providing VRAM pagemaps: its drm device, module, shrinker and per-tile caches.

    Kernel: xe_device (usm.dpagemap_shrinker) + xe_tile VRAM regions (dpagemap_cache);
    xe_pagemap_find_or_create(), xe_tile_local_pagemap(), xe_pagemap_create().
    """

    def __init__(self, system: PagemapSystem, name: str, tiles: int = 1, discrete: bool = True,
                 own_ref: bool = False) -> None:
        self.system = system
        self.name = name
        self.module = DrmModule(name)
        self.device = DrmDevice(name, self.module)
        self.discrete = discrete
        self.shrinker = PagemapShrinker(self.device)
        self.caches: list[PagemapCache] = (
            [PagemapCache(self.shrinker) for _ in range(tiles)] if discrete else [])
        #: Called with the pagemap when its memory region is released (device still present).
        self.on_region_release: list[Callable[[Pagemap], None]] = []
        self.own_refs: list[Pagemap | None] = [None] * len(self.caches)
        self.leftover_listed = 0
        #: 6.18 (``own_ref``): the device's own place in the owner list, stable across
        #: pagemap reclaim, standing for xe_svm_devm_owner(xe) (the device is the page owner
        #: of all its VRAM). The newer driver has no device-level peer: each fault-mode VM
        #: (xe_svm_init()) and each pagemap (xe_pagemap_create()) joins the owner list
        #: itself, in creation order, so this one never joins there.
        self.peer = Peer(name, "vm", f"{name}.device")
        if own_ref:
            system.owners.acquire(self.peer, system.has_interconnect)
        #: True in the newest profile: SVM VMs and range pages hold pagemap references
        #: (xe_svm_get_pagemaps, drm_gpusvm_get_pages); False in the 6.18 profile, where the
        #: provider itself holds its pagemap from probe to unbind (``own_ref``). Fixed at
        #: probe; a plain attribute because every fault's range pages and page owner read it.
        self.users_hold = not own_ref
        self.device.on_release.append(self._device_released)
        if own_ref:
            for t in range(len(self.caches)):
                self.own_refs[t] = self.find_or_create(t)

    @property
    def own_ref(self) -> bool:
        """The 6.18 profile's provider-owned pagemap (xe_devm_add() .. xe_devm_release())."""
        return not self.users_hold

    @property
    def unbound(self) -> bool:
        return self.device.unplugged

    def _device_released(self) -> None:
        """The drm device's final put. Kernel: the xe_device_destroy() drmm action destroys
        xe->destroy_wq, which first runs any queued xe_pagemap_destroy_work, so no pagemap of
        this device outlives it in the destroy queue. The device's own owner-list peer (the
        model's stand-in for its SVM VMs) leaves its group here."""
        self._drain_destroy_queue()
        self.system.owners.release(self.peer)

    def _drain_destroy_queue(self) -> None:
        """Run this provider's queued xe_pagemap_destroy_work items now."""
        s = self.system
        mine = [p for p in s.destroy_queue if p.provider is self]
        s.destroy_queue = [p for p in s.destroy_queue if p.provider is not self]
        for p in mine:
            p._destroy_work()

    def find_or_create(self, tile: int = 0) -> Pagemap:
        """A referenced pagemap for ``tile``: active, revived from the cache, or new.

        Kernel: xe_pagemap_find_or_create() (drm_pagemap_from_fd() gives -ENODEV for an
        unplugged device; integrated devices have no VRAM pagemap -> -ENOENT).
        """
        if not self.device.enter():
            raise XeError(errno.ENODEV, f"device {self.name} was unbound")
        if not 0 <= tile < len(self.caches):
            raise XeError(errno.ENOENT, f"device {self.name} has no VRAM tile {tile}")
        cache = self.caches[tile]
        cache.lock_lookup()
        try:
            p = cache.get_from_cache()
            if p is None:
                p = Pagemap(self, tile)
                cache.set_pagemap(p)
            return p
        finally:
            cache.unlock_lookup()

    def local_pagemap(self, tile: int = 0) -> Pagemap | None:
        """The tile's active pagemap without taking a reference (None if none is active).

        Kernel: xe_tile_local_pagemap().
        """
        if not 0 <= tile < len(self.caches):
            return None
        p = self.caches[tile].get_from_cache_if_active()
        if p is not None:
            p.put()
        return p

    def unbind(self, evict: Callable[[], object] | None = None) -> None:
        """Driver unbind: unplug, drop the provider's own refs, tear down caches and shrinker,
        drop the probe's device reference. Users keep their pagemap refs (and so the device and
        module, via the device holds). ``evict`` (moving resident device pages to system
        memory, pysvm.xe.migrate) runs right after the unplug, before the devm teardown.

        Kernel: xe_pci_remove() -> drm_dev_unplug() + devm actions (xe_devm_release,
        drm_pagemap_cache_fini, drm_pagemap_shrinker_fini) + the final drm_dev_put.
        """
        if self.device.unplugged:
            raise XeError(errno.ENODEV, f"device {self.name} is already unbound")
        self.device.unplugged = True
        if evict is not None:
            evict()  # devm_memunmap_pages: resident device pages migrate to system memory
        for t, p in enumerate(self.own_refs):
            if p is not None:
                self.own_refs[t] = None
                p.put()
        for cache in self.caches:
            cache.fini()
        self.leftover_listed = self.shrinker.fini()
        self.device.put()
        self.system.stat("devices_unbound")

    def rmmod(self) -> None:
        """Unload the provider's module: EBUSY while a device hold pins it; unbinds first.

        Kernel: delete_module() -> pci_unregister_driver() (model rule, see module docstring).
        """
        if self.module.refcount:
            self.module.unload()  # raises EBUSY, state unchanged
        if not self.device.unplugged:
            self.unbind()
        # The module's code runs the destroy work, so no queued destroy of its pagemaps may
        # outlive it. In the newest profile a device hold pins the module until that work
        # ran (EBUSY above); in the 6.18 profile the provider's own pagemap takes no module
        # reference (the 6.18 kernel had no device hold: the pagemap lived and died with the
        # device), so the unload itself finishes the destroy work its unbind queued.
        self._drain_destroy_queue()
        self.module.unload()

    def pagemaps(self) -> list[Pagemap]:
        return [p for p in self.system.all_pagemaps
                if p.provider is self and p.state is not PagemapState.FREED]


@dataclass
class _Hook:
    fn: Callable[[Pagemap], object]
    once: bool = True


@dataclass
class PagemapSystem:
    """Everything the drm_pagemap helper module holds globally, per simulated machine.

    Kernel: drm_pagemap_unhold_list + drm_pagemap_work, xe destroy_wq, the global xe owner
    list, drm_pagemap_exit(); plus the model's device links (PCI P2P predicate).
    """

    stats: Counter[str] = field(default_factory=Counter)
    providers: dict[str, Provider] = field(default_factory=dict)
    owners: OwnerList = field(default_factory=OwnerList)
    links: set[frozenset[str]] = field(default_factory=set)
    unhold_list: list[DevHold] = field(default_factory=list)
    destroy_queue: list[Pagemap] = field(default_factory=list)
    all_pagemaps: list[Pagemap] = field(default_factory=list)
    exited: bool = False
    hooks: dict[str, _Hook] = field(default_factory=dict)

    def stat(self, key: str, n: int = 1) -> None:
        self.stats[key] += n

    # -- injection -------------------------------------------------------------------------

    def inject(self, point: str, fn: Callable[[Pagemap], object], once: bool = True) -> None:
        """Run ``fn(pagemap)`` when the code reaches ``point``: ``release.before_shrinker_add``
        (ref is 0, not yet queued), ``shrinker.after_unlist`` (scan took it off the list, has
        not cleared the cache slot yet), ``pagemap.reinit`` (return "ENOMEM" to fail it)."""
        if point not in ("release.before_shrinker_add", "shrinker.after_unlist", "pagemap.reinit"):
            raise XeError(errno.EINVAL, f"unknown pagemap injection point {point!r}")
        self.hooks[point] = _Hook(fn, once)

    def fire(self, point: str, p: Pagemap) -> object:
        hook = self.hooks.get(point)
        if hook is None:
            return None
        if hook.once:
            del self.hooks[point]
        return hook.fn(p)

    # -- devices ---------------------------------------------------------------------------

    def add_device(self, name: str, tiles: int = 1, discrete: bool = True,
                   own_ref: bool = False) -> Provider:
        """Probe a device. ``EEXIST`` for a duplicate name."""
        if self.exited:
            raise XeError(errno.ENODEV, "the drm_pagemap module has exited")
        if name in self.providers:
            raise XeError(errno.EEXIST, f"device {name!r} already exists")
        prov = Provider(self, name, tiles, discrete, own_ref)
        self.providers[name] = prov
        return prov

    def provider(self, name: str) -> Provider:
        try:
            return self.providers[name]
        except KeyError:
            raise XeError(errno.ENOENT, f"no device named {name!r}") from None

    def link(self, a: str, b: str) -> None:
        """Declare a fast interconnect between two devices (PCI P2P distance >= 0)."""
        self.provider(a)
        self.provider(b)
        if a == b:
            raise XeError(errno.EINVAL, f"cannot link device {a!r} to itself")
        self.links.add(frozenset((a, b)))
        # Model rule: a link is a probe-time fact in the kernel (PCI topology); traces declare
        # it after the devices, so peers of the two devices re-join their groups now.
        for peer in [q for q in self.owners.peers if q.device in (a, b)]:
            self.owners.release(peer)
            self.owners.acquire(peer, self.has_interconnect)

    def has_interconnect(self, p1: Peer, p2: Peer) -> bool:
        """Kernel: xe_has_interconnect(): same device, or a P2P path between the devices."""
        return p1.device == p2.device or frozenset((p1.device, p2.device)) in self.links

    def require_same_owner(self, vm_peer: Peer, p: Pagemap) -> None:
        """``ENOLINK`` unless ``p``'s owner is the VM's. Kernel: xe_vm_madvise_ioctl() check."""
        if vm_peer.owner is None or p.owner is not vm_peer.owner:
            raise XeError(errno.ENOLINK, f"pagemap of {p.provider.name} is not in the VM's "
                          f"interconnect group (device {vm_peer.device})")

    # -- shrinker_add (called at release) ----------------------------------------------------

    def shrinker_add(self, p: Pagemap) -> None:
        """Kernel: drm_pagemap_shrinker_add(): list the pagemap on its cache's shrinker, or
        destroy it now (atomic flavour) if the device is unplugged or there is no cache."""
        cache = p.cache
        if not p.provider.device.enter() or cache is None:
            if cache is not None and cache.slot is p:
                cache.slot = None
            p.destroy(True)
            return
        cache.shrinker.pagemaps.append(p)
        p.on_shrink_list = True
        p.state = PagemapState.INACTIVE
        cache.queued = True

    # -- deferred work ---------------------------------------------------------------------

    def run_workers(self) -> dict[str, int]:
        """Run queued destroy work, then the unhold worker (device + module puts).

        Kernel: xe destroy_wq (xe_pagemap_destroy_work), drm_pagemap_dev_unhold_work().
        """
        destroyed = 0
        while self.destroy_queue:
            self.destroy_queue.pop(0)._destroy_work()
            destroyed += 1
        unheld = 0
        while self.unhold_list:
            self.unhold_list.pop(0).unhold()
            unheld += 1
        self.all_pagemaps = [p for p in self.all_pagemaps if p.state is not PagemapState.FREED]
        return {"destroyed": destroyed, "unheld": unheld}

    def module_exit(self) -> list[str]:
        """Unload the drm_pagemap helper: flush the workers and report what is still held.

        Kernel: drm_pagemap_exit() (flush_work; WARN and disable the work if items remain).
        Returns one line per pagemap that still holds a device (its release would queue work
        on a disabled worker) or that was leaked on a torn-down shrinker; after exit any
        last put raises.
        """
        self.run_workers()
        leftovers: list[str] = []
        for p in self.all_pagemaps:
            if p.dev_hold is not None:
                leftovers.append(f"{p!r} still holds device {p.provider.name} and its module")
            elif p.state is not PagemapState.FREED and not p.provider.shrinker.alive:
                leftovers.append(f"{p!r} leaked: still listed on the freed shrinker of "
                                 f"{p.provider.name}")
        self.exited = True
        return leftovers

    # -- views -----------------------------------------------------------------------------

    def alive(self) -> list[Pagemap]:
        return [p for p in self.all_pagemaps if p.state is not PagemapState.FREED]

    def snapshot(self) -> list[dict[str, object]]:
        """The ``pagemaps`` event's list (docs/trace-format.md), in creation order."""
        out: list[dict[str, object]] = []
        for p in self.alive():
            out.append({
                "device": p.provider.name,
                "refcount": p.ref,
                "cached": p.state is PagemapState.INACTIVE,
                "device_held": p.dev_hold is not None,
            })
        return out

    def held_devices(self) -> Iterator[DevHold]:
        for p in self.all_pagemaps:
            if p.dev_hold is not None:
                yield p.dev_hold
        yield from self.unhold_list


class DevicePagemap:
    """What ``Device.pagemaps[tile]`` holds (``Device.pagemap``: tile 0's): a stable handle
    on that tile's pagemap, made once when the device is probed (:func:`attach_device`).

    ``get()`` takes a reference on the tile's pagemap (``find_or_create`` when nobody holds
    one, a plain ``drm_pagemap_get`` on the held one otherwise, so copying a reference works
    after unbind as in the kernel); ``put()`` drops one. All outstanding references are on one
    pagemap at a time (it cannot be reclaimed while referenced). The holders:
    the zdd of each device allocation (:class:`pysvm.drm.pagemap.Zdd`, made by
    :func:`pysvm.xe.migrate.populate_mm`, put when the allocation's last page goes),
    the VMA attributes of ``pysvm.xe.attr``/``pysvm.xe.vm_madvise`` (preferred_loc.dpagemap),
    :func:`svm_get_pagemaps` (SVM VMs) and :func:`range_pagemap_get` (range pages).

    Kernel: the drm_pagemap pointer users hold (zdd->dpagemap, vma->attr.preferred_loc.dpagemap,
    vm->svm.pagemaps[], range->pages.dpagemap).
    """

    def __init__(self, provider: Provider, tile: int = 0) -> None:
        self.provider = provider
        self.tile = tile
        self.refs: list[Pagemap] = []
        #: 6.18 (``own_ref``): the provider's device-level peer, whose owner is the page owner
        #: of this memory whatever pagemap is current (xe_svm_devm_owner(xe)); None in the
        #: newer driver, where the current pagemap's own peer decides. Fixed at probe, like
        #: the provider's peer and profile; the owner itself is always read from the peer.
        self.device_peer: Peer | None = None if provider.users_hold else provider.peer

    @property
    def name(self) -> str:
        return self.provider.name

    @property
    def current(self) -> Pagemap | None:
        """The pagemap the outstanding references are on, else the tile's active one."""
        return self.refs[-1] if self.refs else self.provider.local_pagemap(self.tile)

    @property
    def refcount(self) -> int:
        p = self.current
        return p.ref if p is not None else 0

    @property
    def owner(self) -> Owner | None:
        """The page owner of this tile's device memory: 6.18 the device's (stable across
        pagemap reclaim); newer driver the pagemap's own (xe_pagemap_create():
        ``pagemap->owner = xpagemap->peer.owner``), None while no pagemap exists."""
        peer = self.device_peer
        if peer is not None:
            return peer.owner
        p = self.current
        return p.owner if p is not None else None

    def get(self) -> DevicePagemap:
        """Kernel: drm_pagemap_get() (or xe_pagemap_find_or_create() for the first user)."""
        if self.refs:
            p = self.refs[-1].get()
        else:
            p = self.provider.find_or_create(self.tile)
        self.refs.append(p)
        return self

    def put(self) -> None:
        """Kernel: drm_pagemap_put()."""
        if not self.refs:
            raise PagemapUseAfterFree(f"put on {self.provider.name}'s pagemap without a reference")
        self.refs.pop().put()

    def populate_allowed(self) -> bool:
        """False once the provider was unbound (populate -> ENODEV)."""
        return self.provider.device.enter() and self.provider.module.loaded

    def __repr__(self) -> str:
        return f"DevicePagemap({self.provider.name}, refs={len(self.refs)})"


def attach_device(system: PagemapSystem, device: Device, *, own_ref: bool) -> Provider:
    """Probe ``device`` in the pagemap subsystem and fill ``device.pagemap`` (None for an
    integrated device). ``own_ref``: the 6.18 profile's provider-owned pagemap.

    Kernel: xe_pagemap_shrinker_create() / the tile's pagemap cache set up at probe
    (newest), xe_devm_add() (6.18). Called by the composition root for every device.
    """
    discrete = device.discrete and device.vram_bytes > 0
    prov = system.add_device(device.name, tiles=device.tiles, discrete=discrete,
                             own_ref=own_ref)
    # one handle per tile's VRAM pagemap (6.18 xe_devm_add() per tile; newest the tile's
    # dpagemap_cache, xe_pagemap_cache_create()); they share the device's owner-list peer:
    # xe_svm.c xe_has_interconnect() answers true for two peers on the same device
    device.pagemaps = [DevicePagemap(prov, t) for t in range(device.tiles)] if discrete else []
    device.pagemap = device.pagemaps[0] if discrete else None
    return prov


# --------------------------------------------------------------------------------------------
# Users' references that live in other Xe objects (SVM VMs, range pages)
# --------------------------------------------------------------------------------------------


def svm_get_pagemaps(holds: list[DevicePagemap], device: Device) -> None:
    """An SVM VM takes a reference on every VRAM pagemap of its own device (into ``holds``,
    the VM's ``svm.pagemaps``).

    Kernel: xe_svm_get_pagemaps() from xe_svm_init(), fault-mode VMs only, newest code (in the
    6.18 profile the device itself holds its pagemap). The pagemap is found or created (so an
    idle cached one is revived); ``ENODEV`` for an unbound device. ``EEXIST`` if the VM
    already holds them.
    """
    dp = device.pagemap
    if dp is None or not dp.provider.users_hold:
        return
    if holds:
        raise XeError(errno.EEXIST, f"a VM of {device.name} already holds its pagemaps")
    # for_each_tile() with a VRAM region: one reference per tile (vm->svm.pagemaps[id])
    for tdp in device.pagemaps:
        tdp.get()
        holds.append(tdp)


def svm_put_pagemaps(holds: list[DevicePagemap]) -> None:
    """Drop the references of :func:`svm_get_pagemaps`; a no-op for a VM holding none.

    Kernel: xe_svm_put_pagemaps() from xe_svm_close() (it clears each pointer after the put,
    so a second call does nothing).
    """
    while holds:
        holds.pop(0).put()


def _range_dp(vram: Vram) -> DevicePagemap | None:
    device, tile = vram.device, vram.tile    # Device.tile_pagemap(), tile 0 written out
    dp = device.pagemap if tile == 0 else device.tile_pagemap(tile)
    if dp is not None and dp.provider.users_hold:
        return dp
    return None


def range_pagemap_get(vram: Vram | None) -> None:
    """A range's pages were found in ``vram`` (one tile's VRAM): take a reference on that
    tile's pagemap.

    Kernel: drm_gpusvm_get_pages() (newest: drm_pagemap_get() on the pages' pagemap, then
    drm_pagemap_put() of the previous range->pages.dpagemap). NULL-safe; a no-op in the 6.18
    profile, where the range pointer was not reference counted.
    """
    dp = _range_dp(vram) if vram is not None else None
    if dp is not None:
        dp.get()


def range_pagemap_put(vram: Vram | None) -> None:
    """Drop :func:`range_pagemap_get`'s reference. Kernel: __drm_gpusvm_unmap_pages()."""
    dp = _range_dp(vram) if vram is not None else None
    if dp is not None:
        dp.put()
