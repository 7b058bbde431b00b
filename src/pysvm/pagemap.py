"""drm_pagemap lifetimes: refcounts, device holds, the per-tile cache, the shrinker, owner groups.

Kernel: drivers/gpu/drm/drm_pagemap.c, drivers/gpu/drm/drm_pagemap_util.c and the xe_pagemap
parts of drivers/gpu/drm/xe/xe_svm.c (newest code seen: torvalds 10dd1eaa / 939faf71).

Overview
--------
A :class:`Pagemap` (``struct drm_pagemap``) describes one VRAM tile's device-private memory. It is
reference counted. Every live pagemap owns a :class:`DevHold`, which holds a reference on the
provider's drm device (:class:`DrmDevice`) and on the provider driver's module
(:class:`DrmModule`); so the provider device and its module cannot go away while anyone holds the
pagemap, even after the device was unbound.

When the last reference is put (``drm_pagemap_release``)::

    ref 1 -> 0:  detach the DevHold
                 shrinker_add: device unplugged or no cache -> destroy now (atomic flavour)
                               else -> append to the shrinker list, signal "queued" (INACTIVE)
                 push the DevHold on the unhold list           (dropped by run_workers())

States of a pagemap::

    ACTIVE (ref > 0) --put--> INACTIVE (ref 0, cached, on shrinker list) --lookup--> ACTIVE
         |                         |  shrinker scan / cache teardown
         +--put, no cache/unplugged+--> DESTROYING (xe destroy work queued) --run_workers--> FREED
                                                                  (or FREED directly, non-atomic)

Cache lookup (``xe_pagemap_find_or_create``): lock, ``get_from_cache``; on NULL create a new
pagemap and ``set_pagemap``; unlock. ``get_from_cache`` returns an active pagemap with a new ref,
NULL for an empty slot, and for an inactive one waits for "queued", then tries to take it back off
the shrinker list: success -> reinit (new DevHold, ref 1); the shrinker got there first -> clear
the slot and return NULL (the caller creates a fresh pagemap).

Owner groups (``drm_pagemap_acquire_owner``): peers on one :class:`OwnerList` are kept grouped by
owner; a new peer joins the first group all of whose members it has an interconnect with, at the
end of that group; otherwise it gets a new owner at the tail.

Differences from the kernel
---------------------------
* No threads: deferred work (the global unhold worker, Xe's pagemap destroy work) runs only in
  :meth:`PagemapSystem.run_workers`. A cache lookup that would have to wait for a concurrent
  release to queue the pagemap cannot wait in a single-threaded model; it returns
  ``XeError(EINTR)``, which is what the kernel's interruptible wait returns when a signal arrives.
  Races are reproduced with :meth:`PagemapSystem.inject` at named points.
* The kernel ignores ``try_module_get()`` failure and puts the module anyway; here a hold remembers
  whether it got the module reference and puts it only then.
* ``rmmod`` refusing with ``EBUSY`` while a device hold exists is a model rule (the kernel's
  ``delete_module`` answers ``EWOULDBLOCK``; open files pin the module too).
* Any get/put on a released or freed pagemap raises :class:`PagemapUseAfterFree` (a RuntimeError):
  in the kernel that is a refcount warning or a use after free, never a quiet success.
* ``own_ref=True`` models the pre-cache Xe design (``xe_devm_add``/``xe_devm_release``, 6.18 era):
  the provider holds its tile pagemap from probe until unbind. With ``own_ref=False`` (newest) only
  users (SVM VMs, VMAs, ranges, device pages) hold it and an unused pagemap goes to the shrinker.
"""

from __future__ import annotations

import errno
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .errors import XeError

__all__ = [
    "SHRINK_EMPTY",
    "SHRINK_STOP",
    "DevHold",
    "DrmDevice",
    "DrmModule",
    "Owner",
    "OwnerList",
    "Pagemap",
    "PagemapCache",
    "PagemapShrinker",
    "PagemapState",
    "PagemapSystem",
    "PagemapUseAfterFree",
    "Peer",
    "Provider",
    "Zdd",
    "DevicePagemap",
    "attach_device",
    "check_pagemap_invariants",
    "pagemap_get",
    "pagemap_get_unless_zero",
    "pagemap_put",
    "system_for",
]

#: Kernel: SHRINK_EMPTY (~0UL - 1), what count_objects() returns when there is nothing to free.
SHRINK_EMPTY = (1 << 64) - 2
#: Kernel: SHRINK_STOP (~0UL), what scan_objects() returns when it freed nothing.
SHRINK_STOP = (1 << 64) - 1


class PagemapUseAfterFree(RuntimeError):
    """A get/put/populate on a pagemap (or device, module) whose last reference is gone.

    Kernel: a refcount_t saturation warning or a use after free; never a silent success.
    """


# --------------------------------------------------------------------------------------------
# Provider driver module and drm device
# --------------------------------------------------------------------------------------------


class DrmModule:
    """The provider driver's kernel module: a reference count and a loaded flag.

    Kernel: struct module with try_module_get()/module_put()/delete_module().
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.refcount = 0
        self.loaded = True

    def try_get(self) -> bool:
        """Kernel: try_module_get() - fails once the module is unloading/unloaded."""
        if not self.loaded:
            return False
        self.refcount += 1
        return True

    def put(self) -> None:
        """Kernel: module_put()."""
        if self.refcount <= 0:
            raise PagemapUseAfterFree(f"module {self.name}: put without a reference")
        self.refcount -= 1

    def unload(self) -> None:
        """Unload the module; ``EBUSY`` while referenced (model rule, see the module docstring).

        Kernel: delete_module() (which answers EWOULDBLOCK for a referenced module).
        """
        if not self.loaded:
            raise XeError(errno.ENOENT, f"module {self.name} is not loaded")
        if self.refcount:
            raise XeError(errno.EBUSY, f"module {self.name} is in use: {self.refcount} reference(s)"
                          " (a drm_pagemap device hold; run_workers drops released holds)")
        self.loaded = False


class DrmDevice:
    """The provider's drm_device: refcounted, unpluggable, freed at its last put.

    Kernel: struct drm_device with drm_dev_get()/drm_dev_put()/drm_dev_unplug()/drm_dev_enter().
    The probe (driver bind) owns the initial reference and drops it at unbind.
    """

    def __init__(self, name: str, module: DrmModule) -> None:
        self.name = name
        self.module = module
        self.refcount = 1
        self.unplugged = False
        self.freed = False
        #: Run once at the final put (the driver's drmm release actions).
        self.on_release: list[Callable[[], None]] = []

    def enter(self) -> bool:
        """Kernel: drm_dev_enter() - False once the device is unplugged."""
        return not self.unplugged

    def get(self) -> None:
        """Kernel: drm_dev_get()."""
        if self.freed or self.refcount <= 0:
            raise PagemapUseAfterFree(f"drm device {self.name}: get after release")
        self.refcount += 1

    def put(self) -> None:
        """Kernel: drm_dev_put(); the device is released (drm_dev_release) at zero."""
        if self.freed or self.refcount <= 0:
            raise PagemapUseAfterFree(f"drm device {self.name}: put after release")
        self.refcount -= 1
        if self.refcount == 0:
            self.freed = True
            for cb in self.on_release:
                cb()


class DevHold:
    """A pagemap's hold on its provider device and module, dropped by the unhold worker.

    Kernel: struct drm_pagemap_dev_hold, drm_pagemap_dev_hold(), drm_pagemap_dev_unhold_work().
    ``take_module=False`` is for the 6.18 profile's provider-owned pagemap: that kernel had no
    device hold at all, and a module reference held by the module's own device would make
    unloading it impossible; the model keeps only the device reference there.
    """

    def __init__(self, device: DrmDevice, pagemap: Pagemap, take_module: bool = True) -> None:
        self.device = device
        self.pagemap_id = pagemap.id
        self.module_ref = device.module.try_get() if take_module else False
        device.get()
        self.released = False

    def unhold(self) -> None:
        """Drop the device and module references (run by the deferred worker)."""
        if self.released:
            raise PagemapUseAfterFree(f"device hold of pagemap #{self.pagemap_id} dropped twice")
        self.released = True
        self.device.put()
        if self.module_ref:
            self.device.module.put()


# --------------------------------------------------------------------------------------------
# Owner groups
# --------------------------------------------------------------------------------------------


class Owner:
    """An interconnect group: devices whose peers share it can use each other's pages directly.

    Kernel: struct drm_pagemap_owner (a kref).
    """

    _next_id = 0

    def __init__(self) -> None:
        Owner._next_id += 1
        self.id = Owner._next_id
        self.ref = 1

    def __repr__(self) -> str:
        return f"Owner(#{self.id}, ref={self.ref})"


@dataclass(eq=False)
class Peer:
    """A participant in an owner list (an SVM VM or a pagemap), tied to one device.

    Kernel: struct drm_pagemap_peer (xe_peer with kind VM or pagemap).
    """

    device: str
    kind: str = "vm"
    name: str = ""
    owner: Owner | None = None
    #: The list joined; like the kernel's peer->list it is kept after leaving, so a second
    #: release can be told apart from "never joined".
    list: OwnerList | None = None

    @property
    def joined(self) -> bool:
        """True while the peer is a member of an owner group."""
        return self.owner is not None


class OwnerList:
    """All peers, kept grouped by owner, in join order within a group.

    Kernel: struct drm_pagemap_owner_list, drm_pagemap_acquire_owner(),
    drm_pagemap_release_owner().
    """

    def __init__(self) -> None:
        self.peers: list[Peer] = []

    def acquire(self, peer: Peer, has_interconnect: Callable[[Peer, Peer], bool]) -> Owner:
        """Join the first group all of whose members ``peer`` has an interconnect with.

        Kernel: drm_pagemap_acquire_owner(). Walks the list group by group; the new peer goes at
        the end of the first qualifying group (owner ref + 1), else a new owner (ref 1) is made
        and the peer is appended at the tail. O(n) calls of ``has_interconnect``.
        """
        if peer.joined:
            raise XeError(errno.EINVAL, f"peer {peer.name or peer.device} already joined a group")
        chosen: Owner | None = None
        insert_at = len(self.peers)
        i = 0
        while i < len(self.peers):
            owner = self.peers[i].owner
            j = i
            ok = True
            while j < len(self.peers) and self.peers[j].owner is owner:
                if ok and not has_interconnect(peer, self.peers[j]):
                    ok = False
                j += 1
            if ok:
                chosen, insert_at = owner, j
                break
            i = j
        if chosen is None:
            chosen = Owner()
            self.peers.append(peer)
        else:
            chosen.ref += 1
            self.peers.insert(insert_at, peer)
        peer.owner = chosen
        peer.list = self
        return chosen

    def release(self, peer: Peer) -> None:
        """Leave the group; the owner is freed when its last peer leaves. No-op if never joined.

        Kernel: drm_pagemap_release_owner(). It returns early only when ``peer->list`` is NULL
        (never joined) and does not clear ``peer->list``, so a second release would unlink the
        peer and drop the owner reference twice; here that raises
        :class:`PagemapUseAfterFree` and changes nothing.
        """
        if peer.list is None:
            return
        if peer.list is not self:
            raise XeError(errno.EINVAL, "peer belongs to another owner list")
        owner = peer.owner
        if owner is None:
            raise PagemapUseAfterFree(f"peer {peer.name or peer.device} released twice (the "
                                      "kernel would unlink it and put its owner twice)")
        self.peers.remove(peer)
        owner.ref -= 1
        peer.owner = None

    def groups(self) -> list[list[Peer]]:
        """The peers grouped by owner, in list order."""
        out: list[list[Peer]] = []
        for p in self.peers:
            if out and out[-1][0].owner is p.owner:
                out[-1].append(p)
            else:
                out.append([p])
        return out


# --------------------------------------------------------------------------------------------
# The pagemap
# --------------------------------------------------------------------------------------------


class PagemapState(Enum):
    ACTIVE = "active"          # ref > 0
    RELEASING = "releasing"    # ref 0, release running, not yet queued on the shrinker
    INACTIVE = "inactive"      # ref 0, cached, on the shrinker list
    DESTROYING = "destroying"  # destroy work queued (atomic/reclaim context)
    FREED = "freed"


class Pagemap:
    """One VRAM tile's device-private memory, reference counted.

    Kernel: struct drm_pagemap embedded in struct xe_pagemap; drm_pagemap_init(),
    drm_pagemap_get(), drm_pagemap_get_unless_zero(), drm_pagemap_put(), drm_pagemap_release(),
    drm_pagemap_reinit(), drm_pagemap_destroy(), drm_pagemap_populate_mm().

    ``owner`` is the pagemap's interconnect owner (its device-private page owner).
    """

    _next_id = 0

    def __init__(self, provider: Provider, tile: int = 0) -> None:
        Pagemap._next_id += 1
        self.id = Pagemap._next_id
        self.provider = provider
        self.system = provider.system
        self.tile = tile
        self.ref = 0
        self.dev_hold: DevHold | None = None
        self.cache: PagemapCache | None = None
        self.on_shrink_list = False
        self.state = PagemapState.ACTIVE
        self.peer = Peer(provider.name, "pagemap", f"{provider.name}.tile{tile}")
        self.reinit()  # drm_pagemap_init(): ref 1 + dev_hold
        self.system.owners.acquire(self.peer, self.system.has_interconnect)
        self.system.all_pagemaps.append(self)
        self.system.stat("pagemaps_created")

    def __repr__(self) -> str:
        return (f"Pagemap(#{self.id} {self.provider.name}.tile{self.tile} ref={self.ref} "
                f"{self.state.value})")

    # -- refcount --------------------------------------------------------------------------

    def _check_alive(self, what: str) -> None:
        if self.state in (PagemapState.FREED, PagemapState.DESTROYING):
            raise PagemapUseAfterFree(f"{what} on {self!r}: the pagemap was destroyed")
        if self.ref <= 0:
            raise PagemapUseAfterFree(f"{what} on {self!r}: its last reference was put")

    @property
    def owner(self) -> Owner | None:
        """The interconnect owner (None once the pagemap left its group at destroy)."""
        return self.peer.owner

    def get(self) -> Pagemap:
        """Take a reference. Kernel: drm_pagemap_get() (kref_get on a zero count is a bug)."""
        self._check_alive("get")
        self.ref += 1
        return self

    def get_unless_zero(self) -> Pagemap | None:
        """A reference unless the count is already zero. Kernel: drm_pagemap_get_unless_zero()."""
        if self.state is PagemapState.FREED:
            raise PagemapUseAfterFree(f"get_unless_zero on {self!r}: the pagemap was freed")
        if self.ref <= 0:
            return None
        self.ref += 1
        return self

    def put(self) -> None:
        """Drop a reference; release at zero. Kernel: drm_pagemap_put() / drm_pagemap_release()."""
        self._check_alive("put")
        if self.ref == 1 and self.system.exited:
            raise PagemapUseAfterFree(f"last put of {self!r} after the drm_pagemap module exited")
        self.ref -= 1
        if self.ref == 0:
            self._release()

    def _release(self) -> None:
        hold = self.dev_hold
        assert hold is not None
        self.dev_hold = None
        self.state = PagemapState.RELEASING
        self.system.fire("release.before_shrinker_add", self)
        self.system.shrinker_add(self)
        self.system.unhold_list.append(hold)
        self.system.stat("pagemaps_released")

    def reinit(self) -> None:
        """New device hold and ref 1 (for a cached pagemap coming back). Kernel:
        drm_pagemap_reinit(); the allocation failure (-ENOMEM) is injectable as
        ``pagemap.reinit``."""
        if self.dev_hold is not None:
            raise PagemapUseAfterFree(f"reinit of {self!r} which still has a device hold")
        if self.system.fire("pagemap.reinit", self) == "ENOMEM":
            raise XeError(errno.ENOMEM, f"reinit of {self!r}: device hold allocation failed")
        self.dev_hold = DevHold(self.provider.device, self, take_module=self.provider.users_hold)
        self.ref = 1
        self.state = PagemapState.ACTIVE

    # -- destroy ---------------------------------------------------------------------------

    def destroy(self, atomic_or_reclaim: bool) -> None:
        """Kernel: drm_pagemap_destroy() -> xe_pagemap_destroy(): deferred to a workqueue in
        atomic/reclaim context, else immediate."""
        if self.state in (PagemapState.FREED, PagemapState.DESTROYING):
            raise PagemapUseAfterFree(f"destroy of {self!r} twice")
        if self.ref:
            raise PagemapUseAfterFree(f"destroy of {self!r} while referenced")
        if atomic_or_reclaim:
            self.state = PagemapState.DESTROYING
            self.system.destroy_queue.append(self)
        else:
            self._destroy_work()

    def _destroy_work(self) -> None:
        """Kernel: xe_pagemap_destroy_work(): unmap the device pages and release the memory
        region if the device is still present; leave the owner group; free."""
        if self.provider.device.enter():
            for cb in self.provider.on_region_release:
                cb(self)
        self.system.owners.release(self.peer)
        self.cache = None
        self.state = PagemapState.FREED
        self.system.stat("pagemaps_destroyed")

    # -- population ------------------------------------------------------------------------

    def populate_allowed(self) -> bool:
        """True while new device pages may be populated from this pagemap (provider bound)."""
        return self.state is PagemapState.ACTIVE and self.ref > 0 and self.provider.device.enter()

    def populate_mm(self, start: int, end: int, mm_alive: bool = True) -> None:
        """Check a population request. Kernel: drm_pagemap_populate_mm() + xe populate_mm.

        Raises
        ------
        PagemapUseAfterFree
            the caller holds no reference (the pagemap was released).
        XeError(EFAULT)
            the address space is gone (mmget_not_zero failed).
        XeError(ENODEV)
            the provider device was unbound.
        XeError(EINVAL)
            ``start >= end``.
        """
        self._check_alive("populate_mm")
        if not mm_alive:
            raise XeError(errno.EFAULT, "populate_mm: the process address space is gone")
        if not self.provider.device.enter():
            raise XeError(errno.ENODEV, f"populate_mm: device {self.provider.name} was unbound")
        if start >= end:
            raise XeError(errno.EINVAL, f"populate_mm: empty range [{start:#x}, {end:#x})")


def pagemap_get(p: Pagemap | None) -> Pagemap | None:
    """NULL-safe get. Kernel: drm_pagemap_get()."""
    return p.get() if p is not None else None


def pagemap_get_unless_zero(p: Pagemap | None) -> Pagemap | None:
    """NULL-safe get_unless_zero. Kernel: drm_pagemap_get_unless_zero()."""
    return p.get_unless_zero() if p is not None else None


def pagemap_put(p: Pagemap | None) -> None:
    """NULL-safe put. Kernel: drm_pagemap_put()."""
    if p is not None:
        p.put()


class Zdd:
    """Zone-device data: one device allocation's hold on its pagemap, shared by its pages.

    Kernel: struct drm_pagemap_zdd (drm_pagemap_zdd_alloc/get/put): holds a pagemap reference
    from migration to device memory until the last device page is freed.
    """

    def __init__(self, pagemap: Pagemap, npages: int) -> None:
        if npages <= 0:
            raise XeError(errno.EINVAL, f"zdd for {npages} pages")
        self.pagemap = pagemap.get()
        self.pages = npages
        self.detached = False

    def page_free(self, n: int = 1) -> None:
        """``n`` device pages were freed (migrated back, evicted, or unmapped)."""
        if self.detached or n <= 0 or n > self.pages:
            raise PagemapUseAfterFree(f"zdd: freeing {n} of {self.pages} pages (detached="
                                      f"{self.detached})")
        self.pages -= n
        if self.pages == 0:
            self.detached = True
            self.pagemap.put()


# --------------------------------------------------------------------------------------------
# Cache and shrinker
# --------------------------------------------------------------------------------------------


class PagemapShrinker:
    """One per provider device: the list of inactive (ref 0) cached pagemaps.

    Kernel: struct drm_pagemap_shrinker, drm_pagemap_shrinker_count()/_scan()/_fini().
    """

    def __init__(self, device: DrmDevice) -> None:
        self.device = device
        self.pagemaps: list[Pagemap] = []
        self.alive = True

    def _check_alive(self, what: str) -> None:
        if not self.alive:
            raise PagemapUseAfterFree(f"{what} on the pagemap shrinker of {self.device.name}, "
                                      "which was freed at unbind")

    def count(self) -> int:
        """Kernel: drm_pagemap_shrinker_count(): number listed, or SHRINK_EMPTY."""
        self._check_alive("count")
        return len(self.pagemaps) or SHRINK_EMPTY

    def scan(self, nr_to_scan: int) -> int:
        """Pop up to ``nr_to_scan`` pagemaps from the head, clear their cache slot, destroy them
        (atomic flavour). Returns the number freed, or SHRINK_STOP if none.

        Kernel: drm_pagemap_shrinker_scan(). Like the kernel's do/while, at least one entry is
        taken if the list is not empty.
        """
        self._check_alive("scan")
        scanned = 0
        while self.pagemaps:
            p = self.pagemaps.pop(0)
            p.on_shrink_list = False
            scanned += 1
            # Kernel interleaving point: the pagemap is off the list, the slot not yet cleared.
            p.system.fire("shrinker.after_unlist", p)
            cache = p.cache
            assert cache is not None
            # Cleared unconditionally, as the kernel does (see the race test).
            cache.slot = None
            p.provider.system.stat("shrinker_freed")
            p.destroy(True)
            if scanned >= nr_to_scan:
                break
        return scanned if scanned else SHRINK_STOP

    def cancel(self, p: Pagemap) -> bool:
        """Take ``p`` off the list; False if the shrinker already took it.

        Kernel: drm_pagemap_shrinker_cancel().
        """
        self._check_alive("cancel")
        if not p.on_shrink_list:
            return False
        self.pagemaps.remove(p)
        p.on_shrink_list = False
        return True

    def fini(self) -> int:
        """Device teardown; returns how many pagemaps were still listed (the kernel warns).

        Kernel: drm_pagemap_shrinker_fini(): WARN if the count is not zero, then free the
        shrinker. Nothing destroys a pagemap still listed here (only a cache slot's inactive
        pagemap is destroyed by the cache teardown), so such a pagemap is leaked: it stays
        INACTIVE on this dead list and :func:`check_pagemap_invariants` reports it.
        """
        self._check_alive("fini")
        self.alive = False
        return len(self.pagemaps)


class PagemapCache:
    """One pagemap slot (one VRAM tile): empty, active, or inactive on the shrinker list.

    Kernel: struct drm_pagemap_cache; drm_pagemap_get_from_cache(),
    drm_pagemap_cache_set_pagemap(), drm_pagemap_get_from_cache_if_active(),
    drm_pagemap_cache_fini().
    """

    def __init__(self, shrinker: PagemapShrinker) -> None:
        self.shrinker = shrinker
        self.slot: Pagemap | None = None
        self.queued = False  # completion: the slot's inactive pagemap is on the shrinker list
        self.locked = False
        self.alive = True    # False once fini() ran (the kernel frees the cache there)

    def lock_lookup(self) -> None:
        """Kernel: drm_pagemap_cache_lock_lookup() (interruptible; not re-entrant)."""
        if not self.alive:
            raise PagemapUseAfterFree("lookup in a pagemap cache that was freed at unbind")
        if self.locked:
            raise XeError(errno.EINTR, "pagemap cache lookup lock already held (would deadlock)")
        self.locked = True

    def unlock_lookup(self) -> None:
        """Kernel: drm_pagemap_cache_unlock_lookup()."""
        self.locked = False

    def get_from_cache(self) -> Pagemap | None:
        """Active -> new ref; empty -> None; inactive -> revive it, or None if the shrinker won.

        Kernel: drm_pagemap_get_from_cache(). Must be called with the lookup lock held.

        Raises
        ------
        XeError(EINTR)
            the slot's pagemap is being released but not yet queued (the kernel would wait
            interruptibly; a single-threaded model can only be interrupted).
        XeError(ENOMEM)
            reinit failed; the pagemap was destroyed.
        """
        if not self.locked:
            raise RuntimeError("get_from_cache without the lookup lock")
        p = self.slot
        if p is None:
            return None
        got = p.get_unless_zero()
        if got is not None:
            return got
        if not self.queued:
            raise XeError(errno.EINTR, f"interrupted waiting for {p!r} to be queued on the "
                          "shrinker")
        if self.shrinker.cancel(p):
            self.slot = None
            try:
                p.reinit()
            except XeError:
                p.destroy(False)
                raise
            self.set_pagemap(p)
            p.system.stat("cache_revived")
            return p
        self.slot = None
        return None

    def set_pagemap(self, p: Pagemap) -> None:
        """Kernel: drm_pagemap_cache_set_pagemap() (warns if the slot was occupied)."""
        if not self.locked:
            raise RuntimeError("set_pagemap without the lookup lock")
        if self.slot is not None and self.slot is not p:
            raise RuntimeError(f"cache slot already holds {self.slot!r}")
        p.cache = self
        self.slot = p
        self.queued = False

    def get_from_cache_if_active(self) -> Pagemap | None:
        """Kernel: drm_pagemap_get_from_cache_if_active(): a ref only if ref > 0."""
        return pagemap_get_unless_zero(self.slot)

    def fini(self) -> None:
        """Device removal: destroy an inactive, still-listed pagemap (non-atomic).

        Kernel: drm_pagemap_cache_fini(), a devm action. Only a pagemap it can take off the
        shrinker list (so an inactive one) is destroyed; an active one keeps its (now
        dangling) cache pointer and is destroyed directly at its last put, because
        drm_pagemap_shrinker_add() sees the unplugged device first. Then the cache is freed.
        """
        if not self.alive:
            raise PagemapUseAfterFree("pagemap cache torn down twice")
        p = self.slot
        if p is not None and self.shrinker.cancel(p):
            self.slot = None
            p.destroy(False)
        self.alive = False


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
        #: The device's own place in the owner list (its SVM VMs' peer kind), stable across
        #: pagemap reclaim so page ownership does not change identity.
        self.peer = Peer(name, "vm", f"{name}.device")
        system.owners.acquire(self.peer, system.has_interconnect)
        self.own_ref = own_ref
        self.device.on_release.append(self._device_released)
        if own_ref:
            for t in range(len(self.caches)):
                self.own_refs[t] = self.find_or_create(t)

    @property
    def unbound(self) -> bool:
        return self.device.unplugged

    @property
    def users_hold(self) -> bool:
        """True in the newest profile: SVM VMs and range pages hold pagemap references
        (xe_svm_get_pagemaps, drm_gpusvm_get_pages); False in the 6.18 profile, where the
        provider itself holds its pagemap from probe to unbind."""
        return not self.own_ref

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
        memory, pysvm.migrate) runs right after the unplug, before the devm teardown.

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
    fn: Callable[[Pagemap], Any]
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

    def inject(self, point: str, fn: Callable[[Pagemap], Any], once: bool = True) -> None:
        """Run ``fn(pagemap)`` when the code reaches ``point``: ``release.before_shrinker_add``
        (ref is 0, not yet queued), ``shrinker.after_unlist`` (scan took it off the list, has
        not cleared the cache slot yet), ``pagemap.reinit`` (return "ENOMEM" to fail it)."""
        if point not in ("release.before_shrinker_add", "shrinker.after_unlist", "pagemap.reinit"):
            raise XeError(errno.EINVAL, f"unknown pagemap injection point {point!r}")
        self.hooks[point] = _Hook(fn, once)

    def fire(self, point: str, p: Pagemap) -> Any:
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

    def snapshot(self) -> list[dict[str, Any]]:
        """The ``pagemaps`` trace event's list (TRACE.md), in creation order."""
        out: list[dict[str, Any]] = []
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
    """What ``Device.pagemap`` holds: a stable handle on the device's tile-0 pagemap.

    ``get()`` takes a reference on the tile's pagemap (``find_or_create`` when nobody holds
    one, a plain ``drm_pagemap_get`` on the held one otherwise, so copying a reference works
    after unbind as in the kernel); ``put()`` drops one. All outstanding references are on one
    pagemap at a time (it cannot be reclaimed while referenced). The holders:
    ``pysvm.migrate._pagemap_get``/``_pagemap_put`` (one per device allocation, the zdd),
    the VMA attributes of ``pysvm.attr``/``pysvm.madvise`` (preferred_loc.dpagemap),
    :func:`svm_get_pagemaps` (SVM VMs) and :func:`range_pagemap_get` (range pages).

    Kernel: the drm_pagemap pointer users hold (zdd->dpagemap, vma->attr.preferred_loc.dpagemap,
    vm->svm.pagemaps[], range->pages.dpagemap).
    """

    def __init__(self, provider: Provider, tile: int = 0) -> None:
        self.provider = provider
        self.tile = tile
        self.refs: list[Pagemap] = []

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
        """The device's interconnect owner (stable across pagemap reclaim)."""
        return self.provider.peer.owner

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


def attach_device(world: Any, device: Any) -> Provider:
    """Probe ``device`` (a :class:`pysvm.device.Device`) in the world's pagemap system and
    fill ``device.pagemap`` (None for an integrated device). Registered as a device-init hook
    by :mod:`pysvm.events_pagemap`."""
    s = system_for(world)
    discrete = bool(getattr(device, "discrete", True)) and int(
        getattr(device, "vram_bytes", 1) or 0) > 0
    prof = getattr(world, "profile", None)
    own_ref = prof is not None and not getattr(prof, "multi_device", True)
    prov = s.add_device(str(device.name), discrete=discrete, own_ref=own_ref)
    device.pagemap = DevicePagemap(prov) if discrete else None
    return prov


_SYSTEMS: weakref.WeakKeyDictionary[Any, PagemapSystem] = weakref.WeakKeyDictionary()


def system_for(world: Any) -> PagemapSystem:
    """The pagemap state of a simulated machine (created on first use; shares world.stats)."""
    if isinstance(world, PagemapSystem):
        return world
    sys_ = _SYSTEMS.get(world)
    if sys_ is None:
        stats = getattr(world, "stats", None)
        sys_ = PagemapSystem(stats=stats) if isinstance(stats, Counter) else PagemapSystem()
        _SYSTEMS[world] = sys_
    return sys_


# --------------------------------------------------------------------------------------------
# Users' references that live in other layers (SVM VMs, range pages)
# --------------------------------------------------------------------------------------------

_VM_HOLDS: weakref.WeakKeyDictionary[Any, list[DevicePagemap]] = weakref.WeakKeyDictionary()


def svm_get_pagemaps(vm: Any) -> None:
    """An SVM VM takes a reference on every VRAM pagemap of its own device.

    Kernel: xe_svm_get_pagemaps() from xe_svm_init(), fault-mode VMs only, newest code (in the
    6.18 profile the device itself holds its pagemap). The pagemap is found or created (so an
    idle cached one is revived); ``ENODEV`` for an unbound device. Registered as a VM-init hook
    by :mod:`pysvm.events_pagemap`. ``EEXIST`` if the VM already holds them.
    """
    if not getattr(vm, "fault_mode", False):
        return
    dp = getattr(getattr(vm, "device", None), "pagemap", None)
    if not isinstance(dp, DevicePagemap) or not dp.provider.users_hold:
        return
    if vm in _VM_HOLDS:
        raise XeError(errno.EEXIST, f"VM {getattr(vm, 'name', '?')} already holds its pagemaps")
    dp.get()
    _VM_HOLDS[vm] = [dp]


def svm_put_pagemaps(vm: Any) -> None:
    """Drop the references of :func:`svm_get_pagemaps`; a no-op for a VM holding none.

    Kernel: xe_svm_put_pagemaps() from xe_svm_close() (it clears each pointer after the put,
    so a second call does nothing).
    """
    for dp in _VM_HOLDS.pop(vm, []):
        dp.put()


def vm_pagemap_holds(vm: Any) -> list[DevicePagemap]:
    """The pagemaps ``vm`` holds through :func:`svm_get_pagemaps` (a copy)."""
    return list(_VM_HOLDS.get(vm, []))


def _range_dp(device: Any) -> DevicePagemap | None:
    dp = getattr(device, "pagemap", None)
    if isinstance(dp, DevicePagemap) and dp.provider.users_hold:
        return dp
    return None


def range_pagemap_get(device: Any) -> None:
    """A range's pages were found in ``device``'s VRAM: take a pagemap reference.

    Kernel: drm_gpusvm_get_pages() (newest: drm_pagemap_get() on the pages' pagemap, then
    drm_pagemap_put() of the previous range->pages.dpagemap). NULL-safe; a no-op in the 6.18
    profile, where the range pointer was not reference counted.
    """
    dp = _range_dp(device) if device is not None else None
    if dp is not None:
        dp.get()


def range_pagemap_put(device: Any) -> None:
    """Drop :func:`range_pagemap_get`'s reference. Kernel: __drm_gpusvm_unmap_pages()."""
    dp = _range_dp(device) if device is not None else None
    if dp is not None:
        dp.put()


# --------------------------------------------------------------------------------------------
# Lifetime invariants and teardown
# --------------------------------------------------------------------------------------------


def _expected_holders(world: Any, s: PagemapSystem) -> dict[str, int]:
    """Per device, the pagemap references its users hold now, counted from the world.

    One per live VRAM allocation of the device (zdd), per VMA whose preferred_loc names the
    device's pagemap, per VM hold (:func:`svm_get_pagemaps`), per SVM range whose pages are in
    the device's VRAM (newest profile). O(allocations + VMAs + ranges).
    """
    devices = getattr(world, "devices", {})
    counts = {name: 0 for name in s.providers}
    by_dp: dict[int, str] = {}
    for name, dev in devices.items():
        dp = getattr(dev, "pagemap", None)
        if isinstance(dp, DevicePagemap):
            by_dp[id(dp)] = name
            vram = getattr(dev, "vram", None)
            allocs = getattr(vram, "allocations", None)
            if allocs is not None and name in counts:
                counts[name] += len(allocs)
    for vm in getattr(world, "vms", {}).values():
        for dp in _VM_HOLDS.get(vm, []):
            counts[dp.provider.name] += 1
        svm = getattr(vm, "svm", None)
        if svm is not None and getattr(svm, "closed", False):
            assert vm not in _VM_HOLDS, (
                f"VM {vm.name}: SVM closed but it still holds its pagemaps (xe_svm_close "
                "puts them: call pysvm.pagemap.svm_put_pagemaps)")
        for vma in vm:
            pm = vma.attr.preferred_loc.pagemap
            if pm is not None:
                assert id(pm) in by_dp, f"{vma!r} holds a pagemap of no known device: {pm!r}"
                counts[by_dp[id(pm)]] += 1
        if svm is not None:
            for r in svm.gpusvm.ranges():
                d = r.dpagemap
                if d is not None and _range_dp(d) is not None:
                    counts[d.name] += 1
    return counts


def check_pagemap_invariants(world: Any) -> None:
    """Lifetime invariants, for tests and fuzzers: raises AssertionError naming the first
    broken one. Cost: linear in pagemaps + holds, plus (given a World) allocations, VMAs and
    SVM ranges; no copying of page data.

    Structure
      * an ACTIVE pagemap has ref > 0 and a device hold; any other state has ref 0, no hold;
      * a pagemap is on a shrinker list iff it is INACTIVE, and then it is its cache's slot;
      * a DESTROYING/FREED pagemap is in no live cache slot;
    Nothing released while referenced
      * a pagemap that is not FREED has its drm device alive (not freed) and its module loaded
        (this also catches a pagemap leaked on a shrinker torn down at unbind);
      * every device hold (live or queued for the unhold worker) is on a live device;
      * each device's refcount = probe reference (while bound) + device holds; each module's
        refcount = the holds that took a module reference; an unloaded module has none;
    Every reference accounted for
      * all of a device handle's references are on one pagemap, and the sum of the device's
        pagemap refcounts = the handle's references + the provider's own references;
      * given a World: the handle's references = the holders found in the world (VRAM
        allocations, VMAs' preferred_loc, SVM VMs, SVM ranges), and a closed SVM holds none;
    Owner groups
      * owner refcounts equal their member counts, groups are contiguous, and every member
        has joined.
    """
    s = system_for(world)
    holds = list(s.held_devices())
    live_caches = {id(c) for prov in s.providers.values() for c in prov.caches if c.alive}
    refsum: dict[str, int] = {name: 0 for name in s.providers}
    for p in s.all_pagemaps:
        prov = p.provider
        if p.state is not PagemapState.FREED:
            assert not prov.device.freed, (
                f"{p!r} outlives its drm device {prov.name} (leaked or released too early)")
            assert prov.module.loaded, f"{p!r} outlives the module of {prov.name}"
        if p.state is PagemapState.ACTIVE:
            assert p.ref > 0 and p.dev_hold is not None, f"{p!r}: active without ref/hold"
        else:
            assert p.ref == 0 and p.dev_hold is None, f"{p!r}: inactive with ref/hold"
        assert p.on_shrink_list == (p.state is PagemapState.INACTIVE), f"{p!r}: shrink list"
        if p.on_shrink_list:
            assert p in prov.shrinker.pagemaps, f"{p!r}: flag says listed, list disagrees"
            assert p.cache is not None and p.cache.slot is p, f"{p!r}: listed but not cached"
        if p.state in (PagemapState.FREED, PagemapState.DESTROYING):
            assert p.cache is None or id(p.cache) not in live_caches or p.cache.slot is not p, \
                f"{p!r}: destroyed but still cached"
        refsum[prov.name] += p.ref
    for prov in s.providers.values():
        dev_holds = [h for h in holds if h.device is prov.device]
        assert not (prov.device.freed and dev_holds), f"device {prov.name} freed while held"
        expect = len(dev_holds) + (0 if prov.device.unplugged else 1)
        assert prov.device.refcount == expect, (
            f"device {prov.name}: refcount {prov.device.refcount}, expected {expect} "
            f"({len(dev_holds)} hold(s), {'unbound' if prov.device.unplugged else 'bound'})")
        mod = sum(1 for h in dev_holds if h.module_ref)
        assert prov.module.refcount == mod, (
            f"module {prov.name}: refcount {prov.module.refcount}, expected {mod}")
        assert prov.module.loaded or mod == 0, f"module {prov.name} unloaded while held"
        for sp in prov.shrinker.pagemaps:
            assert sp.state is PagemapState.INACTIVE, f"{sp!r} listed but not inactive"
    devices = getattr(world, "devices", None)
    expected = _expected_holders(world, s) if isinstance(devices, dict) else None
    for name, prov in s.providers.items():
        dev = devices.get(name) if isinstance(devices, dict) else None
        dp = getattr(dev, "pagemap", None)
        handle_refs = dp.refs if isinstance(dp, DevicePagemap) else []
        assert all(q is handle_refs[0] for q in handle_refs), (
            f"device {name}: handle references spread over several pagemaps")
        own = sum(1 for q in prov.own_refs if q is not None)
        if isinstance(dp, DevicePagemap):
            assert refsum[name] == len(handle_refs) + own, (
                f"device {name}: pagemap refcounts sum to {refsum[name]}, but "
                f"{len(handle_refs)} handle reference(s) + {own} own")
        if expected is not None:
            assert len(handle_refs) == expected[name], (
                f"device {name}: {len(handle_refs)} pagemap reference(s) taken, but the world "
                f"shows {expected[name]} holder(s) (allocations, VMAs, SVM VMs, ranges)")
    seen: set[int] = set()
    for group in s.owners.groups():
        owner = group[0].owner
        assert owner is not None, f"peer {group[0].name} listed without an owner"
        assert owner.id not in seen, f"owner {owner!r} split into two groups"
        seen.add(owner.id)
        assert owner.ref == len(group), f"{owner!r}: ref != {len(group)} members"


def teardown_world(world: Any) -> list[str]:
    """Tear a whole simulated machine down and report what is left (``[]`` when clean).

    In kernel order: every VM is closed (xe_svm_close: SVM ranges unmapped and removed, the
    VM's pagemap references dropped; then its VMAs are destroyed, dropping preferred_loc
    references), device memory is evicted to system memory (the zdd references go), the
    deferred work runs, every provider module is unloaded (unbinding its device), the work
    runs again and the drm_pagemap module exits. Afterwards every pagemap is freed, every
    device freed, every module refcount zero, and the owner list empty, unless something
    leaked, which the returned lines say.
    """
    s = system_for(world)
    problems: list[str] = []
    vms = getattr(world, "vms", {})
    for vm in list(vms.values()):
        svm = getattr(vm, "svm", None)
        if svm is not None and not getattr(svm, "closed", False):
            svm.close()
        svm_put_pagemaps(vm)
        for vma in vm:
            vma.attr.release()
        if hasattr(vm, "kill"):
            vm.kill()
    vms.clear()
    from .migrate import evict_device
    for dev in getattr(world, "devices", {}).values():
        evict_device(dev)
    if hasattr(world, "run_workers"):
        world.run_workers()
    s.run_workers()
    for name, prov in s.providers.items():
        if not prov.module.loaded:
            continue
        try:
            prov.rmmod()
        except XeError as e:
            problems.append(f"rmmod {name}: {e}")
        dev = getattr(world, "devices", {}).get(name)
        if dev is not None and prov.unbound:
            dev.unbound = True
    if hasattr(world, "run_workers"):
        world.run_workers()
    problems += s.module_exit()
    for p in s.all_pagemaps:
        if p.state is not PagemapState.FREED:
            problems.append(f"{p!r} not freed")
    for prov in s.providers.values():
        if not prov.device.freed:
            problems.append(f"drm device {prov.name}: refcount {prov.device.refcount}, not freed")
        if prov.module.refcount:
            problems.append(f"module {prov.name}: refcount {prov.module.refcount}")
    if s.owners.peers:
        problems.append(f"owner list not empty: {[q.name for q in s.owners.peers]}")
    return problems
