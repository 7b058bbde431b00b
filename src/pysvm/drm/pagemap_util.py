"""drm_pagemap_util: owner groups, the per-device shrinker and the per-tile pagemap cache.

Kernel: drivers/gpu/drm/drm_pagemap_util.c (drm_pagemap_acquire_owner,
drm_pagemap_release_owner, struct drm_pagemap_shrinker, struct drm_pagemap_cache,
drm_pagemap_get_from_cache, drm_pagemap_cache_set_pagemap, drm_pagemap_shrinker_add).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final

from pysvm.errors import PagemapUseAfterFree, XeError

if TYPE_CHECKING:
    from pysvm.drm.pagemap import DrmDevice, Pagemap

__all__ = ["SHRINK_EMPTY", "SHRINK_STOP", "Owner", "OwnerList", "PagemapCache",
           "PagemapShrinker", "Peer"]

#: Kernel: SHRINK_EMPTY (~0UL - 1), what count_objects() returns when there is nothing to free.
SHRINK_EMPTY: Final = (1 << 64) - 2
#: Kernel: SHRINK_STOP (~0UL), what scan_objects() returns when it freed nothing.
SHRINK_STOP: Final = (1 << 64) - 1



class Owner:
    """An interconnect group: devices whose peers share it can use each other's pages directly.

    Kernel: struct drm_pagemap_owner (a kref).
    """

    _next_id: ClassVar[int] = 0

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
        return self.slot.get_unless_zero() if self.slot is not None else None

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


