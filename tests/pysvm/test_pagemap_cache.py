"""Per-tile pagemap cache and shrinker (spec 6.4), including the shrinker race."""

from __future__ import annotations

import errno

import pytest

from pysvm.drm.pagemap import Pagemap, PagemapState, PagemapUseAfterFree
from pysvm.drm.pagemap_util import SHRINK_EMPTY, SHRINK_STOP
from pysvm.errors import XeError
from pysvm.xe.lifetime import check_pagemap_invariants
from pysvm.xe.pagemap import PagemapSystem


def _state(p: Pagemap) -> PagemapState:
    """The state, read through a call so that mypy does not narrow it across asserts."""
    return p.state


def _sys(tiles: int = 1) -> PagemapSystem:
    s = PagemapSystem()
    s.add_device("gpu0", tiles=tiles)
    return s


def test_active_lookup_returns_same_with_new_ref() -> None:
    s = _sys()
    prov = s.provider("gpu0")
    p = prov.find_or_create()
    assert prov.find_or_create() is p and p.ref == 2
    assert prov.local_pagemap() is p and p.ref == 2   # no ref kept
    assert s.stats["pagemaps_created"] == 1


def test_inactive_is_revived_with_new_hold() -> None:
    s = _sys()
    prov = s.provider("gpu0")
    p = prov.find_or_create()
    first_hold = p.dev_hold
    p.put()
    assert prov.shrinker.count() == 1 and prov.local_pagemap() is None
    q = prov.find_or_create()
    assert q is p and p.ref == 1 and _state(p) is PagemapState.ACTIVE
    assert p.dev_hold is not None and p.dev_hold is not first_hold
    assert prov.shrinker.count() == SHRINK_EMPTY
    assert s.stats["cache_revived"] == 1 and s.stats["pagemaps_created"] == 1
    # Old hold still queued + new hold live: 2 module refs until the worker runs.
    assert prov.module.refcount == 2
    check_pagemap_invariants(s)
    s.run_workers()
    assert prov.module.refcount == 1
    check_pagemap_invariants(s)


def test_shrinker_count_scan() -> None:
    s = _sys(tiles=3)
    prov = s.provider("gpu0")
    ps = [prov.find_or_create(t) for t in range(3)]
    assert prov.shrinker.count() == SHRINK_EMPTY
    assert prov.shrinker.scan(5) == SHRINK_STOP
    for p in ps:
        p.put()
    assert prov.shrinker.count() == 3
    assert prov.shrinker.scan(2) == 2
    assert [_state(p) for p in ps] == [PagemapState.DESTROYING, PagemapState.DESTROYING,
                                     PagemapState.INACTIVE]
    assert prov.caches[0].slot is None and prov.caches[2].slot is ps[2]
    check_pagemap_invariants(s)
    s.run_workers()
    assert ps[0].state is PagemapState.FREED
    # A lookup on a reclaimed tile creates a fresh pagemap.
    fresh = prov.find_or_create(0)
    assert fresh is not ps[0] and s.stats["pagemaps_created"] == 4
    assert prov.shrinker.scan(0) == 1   # do/while: at least one is taken
    check_pagemap_invariants(s)


def test_shrinker_wins_race_lookup_returns_none_then_creates() -> None:
    """Scan unlists the pagemap; before it clears the slot, a lookup runs: cancel fails, the
    lookup clears the slot and creates a new pagemap. Then scan clears the slot unconditionally
    (drm_pagemap_shrinker_scan at 939faf71), dropping the new pagemap from the cache."""
    s = _sys()
    prov = s.provider("gpu0")
    old = prov.find_or_create()
    old.put()
    got: list[Pagemap] = []

    def racing_lookup(p: Pagemap) -> None:
        cache = prov.caches[0]
        cache.lock_lookup()
        try:
            assert cache.get_from_cache() is None   # shrinker won
            assert cache.slot is None
        finally:
            cache.unlock_lookup()
        got.append(prov.find_or_create())

    s.inject("shrinker.after_unlist", racing_lookup)
    assert prov.shrinker.scan(1) == 1
    new = got[0]
    assert new is not old and new.ref == 1 and _state(new) is PagemapState.ACTIVE
    assert _state(old) is PagemapState.DESTROYING
    # Kernel behaviour reproduced: the slot was cleared after the new pagemap was set.
    assert prov.caches[0].slot is None
    assert prov.local_pagemap() is None
    # Releasing the orphan puts it on the shrinker list although no slot points at it.
    new.put()
    with pytest.raises(AssertionError, match="listed but not cached"):
        check_pagemap_invariants(s)
    assert prov.shrinker.scan(1) == 1
    s.run_workers()
    check_pagemap_invariants(s)


def test_race_orphan_is_leaked_at_unbind() -> None:
    """After the race above, the orphan is on the shrinker list but in no cache slot. At
    unbind the cache teardown only looks at its slot, the shrinker teardown only warns, so the
    orphan is never destroyed (drm_pagemap_cache_fini / drm_pagemap_shrinker_fini at
    939faf71): a leak that the invariants and module exit report."""
    s = _sys()
    prov = s.provider("gpu0")
    old = prov.find_or_create()
    old.put()
    got: list[Pagemap] = []

    def racing_lookup(p: Pagemap) -> None:
        got.append(prov.find_or_create())

    s.inject("shrinker.after_unlist", racing_lookup)
    prov.shrinker.scan(1)
    orphan = got[0]
    orphan.put()                      # listed, not cached
    s.run_workers()
    prov.unbind()
    assert prov.leftover_listed == 1 and not prov.shrinker.alive
    assert _state(orphan) is PagemapState.INACTIVE and orphan.on_shrink_list
    assert prov.device.freed          # no hold pins it: the leaked pagemap outlives it
    with pytest.raises(AssertionError, match="outlives its drm device"):
        check_pagemap_invariants(s)
    with pytest.raises(PagemapUseAfterFree):
        prov.shrinker.scan(1)         # the kernel freed the shrinker at unbind
    left = s.module_exit()
    assert len(left) == 1 and "leaked" in left[0] and f"#{orphan.id}" in left[0]


def test_shrinker_and_cache_unusable_after_unbind() -> None:
    s = _sys()
    prov = s.provider("gpu0")
    prov.unbind()
    for op in (prov.shrinker.count, lambda: prov.shrinker.scan(1), prov.shrinker.fini,
               prov.caches[0].lock_lookup, prov.caches[0].fini):
        with pytest.raises(PagemapUseAfterFree):
            op()
    check_pagemap_invariants(s)


def test_lookup_while_release_not_yet_queued_is_eintr() -> None:
    s = _sys()
    prov = s.provider("gpu0")
    p = prov.find_or_create()
    seen: list[int] = []

    def lookup(pm: Pagemap) -> None:
        with pytest.raises(XeError) as e:
            prov.find_or_create()
        seen.append(e.value.errno or 0)

    s.inject("release.before_shrinker_add", lookup)
    p.put()
    assert seen == [errno.EINTR]
    assert _state(p) is PagemapState.INACTIVE and not prov.caches[0].locked
    assert prov.find_or_create() is p


def test_reinit_failure_destroys() -> None:
    s = _sys()
    prov = s.provider("gpu0")
    p = prov.find_or_create()
    p.put()
    s.inject("pagemap.reinit", lambda pm: "ENOMEM")
    with pytest.raises(XeError) as e:
        prov.find_or_create()
    assert e.value.errno == errno.ENOMEM
    assert _state(p) is PagemapState.FREED and prov.caches[0].slot is None
    s.run_workers()
    check_pagemap_invariants(s)
    assert prov.find_or_create() is not p


def test_cache_fini_destroys_only_inactive() -> None:
    s = _sys(tiles=2)
    prov = s.provider("gpu0")
    active = prov.find_or_create(0)
    inactive = prov.find_or_create(1)
    inactive.put()
    prov.unbind()
    assert _state(inactive) is PagemapState.FREED    # non-atomic destroy at teardown
    assert _state(active) is PagemapState.ACTIVE and active.ref == 1
    assert prov.leftover_listed == 0
    check_pagemap_invariants(s)
    active.put()
    assert _state(active) is PagemapState.DESTROYING  # device gone: no caching
    s.run_workers()
    assert prov.device.freed
    check_pagemap_invariants(s)


def test_set_pagemap_refuses_occupied_slot() -> None:
    s = _sys()
    prov = s.provider("gpu0")
    p = prov.find_or_create()
    cache = prov.caches[0]
    other = Pagemap(prov, 0)
    cache.lock_lookup()
    with pytest.raises(RuntimeError):
        cache.set_pagemap(other)
    cache.unlock_lookup()
    assert cache.slot is p
    with pytest.raises(RuntimeError):
        cache.get_from_cache()     # lookup lock not held
