"""drm_pagemap: a VRAM region's refcounted handle, its device and module holds, and the zdd.

Kernel: drivers/gpu/drm/drm_pagemap.c (drm_pagemap_init/get/put/release/reinit/destroy,
drm_pagemap_dev_hold, drm_pagemap_populate_mm, struct drm_pagemap_zdd).

A pagemap calls its driver only through the two Protocols declared here,
:class:`PagemapProvider` (the driver's per-device side, like ``struct drm_pagemap_ops`` plus
the device it lives on) and :class:`PagemapSubsystem` (the helper module's global lists and
the driver's destroy queue); :mod:`pysvm.xe.pagemap` implements both.
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
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, ClassVar, Protocol

from pysvm.drm.pagemap_util import OwnerList, Peer
from pysvm.errors import PagemapUseAfterFree, XeError

if TYPE_CHECKING:
    from pysvm.drm.pagemap_util import Owner, PagemapCache, PagemapShrinker

__all__ = ["DevHold", "DrmDevice", "DrmModule", "Pagemap", "PagemapProvider", "PagemapRef",
           "PagemapState", "PagemapSubsystem", "PagemapUseAfterFree", "Zdd", "pagemap_get",
           "pagemap_get_unless_zero", "pagemap_put"]


class PagemapSubsystem(Protocol):
    """What a pagemap needs from the helper module's global state and its driver's queues.

    Kernel: drm_pagemap_unhold_list, the xe destroy_wq, the owner list, drm_pagemap_exit().
    """

    owners: OwnerList
    all_pagemaps: list[Pagemap]
    unhold_list: list[DevHold]
    destroy_queue: list[Pagemap]
    exited: bool

    def stat(self, key: str, n: int = 1) -> None: ...

    def fire(self, point: str, p: Pagemap) -> object: ...

    def shrinker_add(self, p: Pagemap) -> None: ...

    def has_interconnect(self, p1: Peer, p2: Peer) -> bool: ...


class PagemapProvider(Protocol):
    """The driver side of a pagemap (the device providing the memory).

    Kernel: what drm_pagemap_init() is handed: the drm_device, the driver's ops
    (here ``on_region_release``: xe_pagemap_destroy_work's memunmap).
    """

    name: str
    device: DrmDevice
    module: DrmModule
    shrinker: PagemapShrinker
    on_region_release: list[Callable[[Pagemap], None]]

    @property
    def system(self) -> PagemapSubsystem: ...

    @property
    def users_hold(self) -> bool: ...


class PagemapRef(Protocol):
    """Anything handing out references on a pagemap (a :class:`Pagemap` or a driver handle)."""

    def get(self) -> object: ...

    def put(self) -> None: ...

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

    _next_id: ClassVar[int] = 0

    def __init__(self, provider: PagemapProvider, tile: int = 0) -> None:
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
        if self.ref <= 0 or self.state is not PagemapState.ACTIVE:  # else alive: no check call
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
        if self.ref <= 0 or self.state is not PagemapState.ACTIVE:  # else alive: no check call
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

    def __init__(self, pagemap: PagemapRef, npages: int) -> None:
        if npages <= 0:
            raise XeError(errno.EINVAL, f"zdd for {npages} pages")
        pagemap.get()
        self.pagemap = pagemap
        self.pages = npages
        self.detached = False
        #: Kernel: zdd->devmem_allocation->timeslice_expiration, in the model's virtual ms
        #: (drm_pagemap_migrate_to_devmem() sets it on success; 0: no timeslice).
        self.timeslice_expiration = 0

    def page_free(self, n: int = 1) -> None:
        """``n`` device pages were freed (migrated back, evicted, or unmapped)."""
        if self.detached or n <= 0 or n > self.pages:
            raise PagemapUseAfterFree(f"zdd: freeing {n} of {self.pages} pages (detached="
                                      f"{self.detached})")
        self.pages -= n
        if self.pages == 0:
            self.detached = True
            self.pagemap.put()


