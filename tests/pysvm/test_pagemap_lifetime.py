"""Pagemap refcount, device hold and module lifetimes (spec 6.1-6.3)."""

from __future__ import annotations

import errno

import pytest

from pysvm.drm.pagemap import (
    Pagemap,
    PagemapState,
    PagemapUseAfterFree,
    Zdd,
    pagemap_get,
    pagemap_get_unless_zero,
    pagemap_put,
)
from pysvm.errors import XeError
from pysvm.xe.lifetime import check_pagemap_invariants
from pysvm.xe.pagemap import PagemapSystem


def _state(p: Pagemap) -> PagemapState:
    """The state, read through a call so that mypy does not narrow it across asserts."""
    return p.state


@pytest.fixture
def sys_() -> PagemapSystem:
    s = PagemapSystem()
    s.add_device("gpu0")
    return s


def test_create_takes_device_and_module(sys_: PagemapSystem) -> None:
    prov = sys_.provider("gpu0")
    assert prov.device.refcount == 1 and prov.module.refcount == 0
    p = prov.find_or_create()
    assert p.ref == 1 and p.dev_hold is not None
    assert prov.device.refcount == 2 and prov.module.refcount == 1
    check_pagemap_invariants(sys_)


def test_refcount_returns_to_zero_and_hold_deferred(sys_: PagemapSystem) -> None:
    prov = sys_.provider("gpu0")
    p = prov.find_or_create()
    assert p.get() is p and p.ref == 2
    p.put()
    p.put()
    assert p.ref == 0 and _state(p) is PagemapState.INACTIVE
    # The hold is detached but the device/module refs drop only when the worker runs.
    assert p.dev_hold is None and len(sys_.unhold_list) == 1
    assert prov.module.refcount == 1 and prov.device.refcount == 2
    check_pagemap_invariants(sys_)
    assert sys_.run_workers() == {"destroyed": 0, "unheld": 1}
    assert prov.module.refcount == 0 and prov.device.refcount == 1
    check_pagemap_invariants(sys_)


def test_use_after_release_raises(sys_: PagemapSystem) -> None:
    p = sys_.provider("gpu0").find_or_create()
    p.put()
    with pytest.raises(PagemapUseAfterFree):
        p.get()
    with pytest.raises(PagemapUseAfterFree):
        p.put()
    with pytest.raises(PagemapUseAfterFree):
        p.populate_mm(0, 4096)
    assert p.get_unless_zero() is None
    assert p.ref == 0
    check_pagemap_invariants(sys_)


def test_null_safe_helpers(sys_: PagemapSystem) -> None:
    assert pagemap_get(None) is None
    assert pagemap_get_unless_zero(None) is None
    pagemap_put(None)
    p = sys_.provider("gpu0").find_or_create()
    assert pagemap_get(p) is p and p.ref == 2
    assert pagemap_get_unless_zero(p) is p and p.ref == 3
    for _ in range(3):
        pagemap_put(p)
    assert p.ref == 0


def test_populate_errors(sys_: PagemapSystem) -> None:
    prov = sys_.provider("gpu0")
    p = prov.find_or_create()
    p.populate_mm(0, 8192)
    assert p.populate_allowed()
    with pytest.raises(XeError) as e:
        p.populate_mm(0, 8192, mm_alive=False)
    assert e.value.errno == errno.EFAULT
    with pytest.raises(XeError) as e:
        p.populate_mm(8192, 8192)
    assert e.value.errno == errno.EINVAL
    prov.unbind()
    assert not p.populate_allowed()
    with pytest.raises(XeError) as e:
        p.populate_mm(0, 8192)
    assert e.value.errno == errno.ENODEV
    assert p.ref == 1


def test_unbind_keeps_device_and_module_while_held() -> None:
    s = PagemapSystem()
    prov = s.add_device("gpu1")
    user = prov.find_or_create()       # e.g. another device's VM
    page_hold = Zdd(user, npages=4)    # device pages migrated to gpu1
    assert user.ref == 2
    prov.unbind()
    assert prov.device.unplugged and not prov.device.freed
    assert prov.device.refcount == 1   # probe ref gone, the hold remains
    with pytest.raises(XeError) as e:
        prov.rmmod()
    assert e.value.errno == errno.EBUSY and prov.module.loaded
    with pytest.raises(XeError) as e:
        prov.find_or_create()
    assert e.value.errno == errno.ENODEV
    user.put()
    assert user.ref == 1 and _state(user) is PagemapState.ACTIVE
    page_hold.page_free(3)
    assert not prov.device.freed and user.ref == 1
    page_hold.page_free(1)
    # Last ref on an unplugged device: destroyed directly (queued: atomic flavour).
    assert _state(user) is PagemapState.DESTROYING and page_hold.detached
    assert not prov.device.freed and prov.module.refcount == 1
    with pytest.raises(XeError):
        prov.rmmod()
    check_pagemap_invariants(s)
    s.run_workers()
    assert _state(user) is PagemapState.FREED
    assert prov.device.freed and prov.module.refcount == 0
    prov.rmmod()
    assert not prov.module.loaded
    check_pagemap_invariants(s)
    assert s.alive() == []


def test_region_released_only_if_device_present() -> None:
    s = PagemapSystem()
    a, b = s.add_device("a"), s.add_device("b")
    released: list[str] = []
    for prov in (a, b):
        prov.on_region_release.append(lambda p: released.append(p.provider.name))
    pa, pb = a.find_or_create(), b.find_or_create()
    pa.put()
    a.shrinker.scan(1)
    s.run_workers()
    b.unbind()
    pb.put()
    s.run_workers()
    assert released == ["a"]  # b's devm teardown already released its region


def test_rmmod_unbinds_idle_device() -> None:
    s = PagemapSystem()
    prov = s.add_device("gpu0")
    p = prov.find_or_create()
    with pytest.raises(XeError) as e:
        prov.rmmod()
    assert e.value.errno == errno.EBUSY and not prov.unbound   # state unchanged
    p.put()
    with pytest.raises(XeError):
        prov.rmmod()      # the hold is only dropped by the deferred worker
    s.run_workers()
    prov.rmmod()
    assert prov.unbound and not prov.module.loaded and prov.device.freed
    assert _state(p) is PagemapState.FREED   # the cached inactive pagemap died with the cache
    check_pagemap_invariants(s)


def test_zdd_refuses_over_free(sys_: PagemapSystem) -> None:
    p = sys_.provider("gpu0").find_or_create()
    z = Zdd(p, 2)
    with pytest.raises(PagemapUseAfterFree):
        z.page_free(3)
    z.page_free(2)
    with pytest.raises(PagemapUseAfterFree):
        z.page_free(1)
    with pytest.raises(XeError):
        Zdd(p, 0)
    assert p.ref == 1


def test_module_exit_flushes_and_reports_leftovers() -> None:
    s = PagemapSystem()
    prov = s.add_device("gpu0")
    p = prov.find_or_create()
    q = s.add_device("gpu1").find_or_create()
    q.put()
    leftovers = s.module_exit()
    assert not s.unhold_list                       # flushed
    assert len(leftovers) == 1 and "gpu0" in leftovers[0]
    with pytest.raises(PagemapUseAfterFree):
        p.put()
    assert p.ref == 1
    with pytest.raises(XeError):
        s.add_device("gpu2")


def test_own_ref_profile_drops_provider_ref_at_unbind() -> None:
    s = PagemapSystem()
    prov = s.add_device("gpu0", own_ref=True)
    p = prov.local_pagemap()
    assert p is not None and p.ref == 1
    user = p.get()
    prov.unbind()
    assert user.ref == 1 and _state(user) is PagemapState.ACTIVE
    user.put()
    s.run_workers()
    assert prov.device.freed and s.alive() == []


@pytest.mark.parametrize("own_ref", [True, False])
def test_provider_holds_or_users_hold_per_profile(own_ref: bool) -> None:
    # own_ref (6.18: the provider holds its pagemap) and users_hold (newest: VMs and range
    # pages hold it) are one fact fixed at probe; the device hold takes the module only
    # when users hold the pagemap.
    s = PagemapSystem()
    prov = s.add_device("gpu0", own_ref=own_ref)
    assert prov.own_ref is own_ref and prov.users_hold is not own_ref
    p = prov.find_or_create()
    assert p.dev_hold is not None and p.dev_hold.module_ref is not own_ref


@pytest.mark.parametrize(("state", "ref"), [(PagemapState.DESTROYING, 1),
                                            (PagemapState.FREED, 1),
                                            (PagemapState.ACTIVE, 0)])
def test_get_and_put_of_a_dead_pagemap_raise_and_change_nothing(state: PagemapState,
                                                                 ref: int) -> None:
    # get()/put() skip the liveness check only for an ACTIVE pagemap with references; a
    # destroyed one (forced here with a count that alone would pass) or one whose last
    # reference was put still refuses both.
    s = PagemapSystem()
    p = s.add_device("gpu0").find_or_create()
    p.state, p.ref = state, ref
    for op in (p.get, p.put):
        with pytest.raises(PagemapUseAfterFree):
            op()
        assert p.ref == ref and _state(p) is state


def test_integrated_device_has_no_pagemap() -> None:
    s = PagemapSystem()
    prov = s.add_device("igpu", discrete=False)
    assert prov.local_pagemap() is None
    with pytest.raises(XeError) as e:
        prov.find_or_create()
    assert e.value.errno == errno.ENOENT


def test_unbind_twice_and_unknown_device() -> None:
    s = PagemapSystem()
    prov = s.add_device("gpu0")
    prov.unbind()
    with pytest.raises(XeError) as e:
        prov.unbind()
    assert e.value.errno == errno.ENODEV
    with pytest.raises(XeError) as e:
        s.provider("nope")
    assert e.value.errno == errno.ENOENT
    with pytest.raises(XeError) as e:
        s.add_device("gpu0")
    assert e.value.errno == errno.EEXIST


def test_get_unless_zero_states(sys_: PagemapSystem) -> None:
    prov = sys_.provider("gpu0")
    p = prov.find_or_create()
    assert p.get_unless_zero() is p and p.ref == 2          # active: a new reference
    p.put()
    p.put()
    assert _state(p) is PagemapState.INACTIVE
    assert p.get_unless_zero() is None and p.ref == 0       # zero: refused, nothing changes
    assert prov.caches[0].get_from_cache_if_active() is None
    prov.shrinker.scan(1)
    assert _state(p) is PagemapState.DESTROYING
    assert p.get_unless_zero() is None
    sys_.run_workers()
    assert _state(p) is PagemapState.FREED
    with pytest.raises(PagemapUseAfterFree):
        p.get_unless_zero()                                 # freed memory: an error
    check_pagemap_invariants(sys_)


def test_device_release_drains_queued_destroy(sys_: PagemapSystem) -> None:
    """A shrinker-queued destroy still pending when the device goes away runs at the device's
    final put (xe_device_destroy destroys xe->destroy_wq, which drains it), so no pagemap
    outlives its device, whatever order the deferred work runs in."""
    prov = sys_.provider("gpu0")
    p = prov.find_or_create()
    p.put()
    sys_.run_workers()                  # the hold is dropped: nothing pins the module
    assert prov.shrinker.scan(1) == 1
    assert _state(p) is PagemapState.DESTROYING and sys_.destroy_queue == [p]
    prov.rmmod()                        # unbind: the probe's put frees the device
    assert prov.device.freed and not prov.module.loaded
    assert _state(p) is PagemapState.FREED and sys_.destroy_queue == []
    assert sys_.owners.peers == []
    check_pagemap_invariants(sys_)


def test_own_ref_profile_provider_ref_does_not_pin_the_module() -> None:
    """6.18 profile: the device holds its pagemap from probe to unbind; that hold keeps the
    drm device but no module reference, so the module can be unloaded (which unbinds)."""
    s = PagemapSystem()
    prov = s.add_device("gpu0", own_ref=True)
    p = prov.local_pagemap()
    assert p is not None and p.ref == 1 and prov.module.refcount == 0
    assert prov.device.refcount == 2
    check_pagemap_invariants(s)
    prov.rmmod()
    # The last ref dropped at unbind queued the destroy (device gone); the module's unload
    # finishes that work, so no pagemap outlives the module (checked right away).
    assert _state(p) is PagemapState.FREED and not prov.module.loaded
    assert not prov.device.freed
    check_pagemap_invariants(s)
    s.run_workers()                  # the deferred hold still keeps the drm device until now
    assert prov.device.freed
    check_pagemap_invariants(s)


def test_module_exit_reports_live_holds_only() -> None:
    s = PagemapSystem()
    a, b = s.add_device("a"), s.add_device("b")
    pa = a.find_or_create()
    pb = b.find_or_create()
    pb.put()                        # inactive, cached: no hold after the flush
    left = s.module_exit()
    assert left == [f"{pa!r} still holds device a and its module"]
    assert not s.unhold_list and s.exited


def test_invariants_detect_broken_refcounts(sys_: PagemapSystem) -> None:
    prov = sys_.provider("gpu0")
    p = prov.find_or_create()
    check_pagemap_invariants(sys_)
    prov.device.refcount += 1           # a device reference nobody holds
    with pytest.raises(AssertionError, match="device gpu0: refcount"):
        check_pagemap_invariants(sys_)
    prov.device.refcount -= 1
    prov.module.refcount += 1
    with pytest.raises(AssertionError, match="module gpu0"):
        check_pagemap_invariants(sys_)
    prov.module.refcount -= 1
    assert p.owner is not None
    p.owner.ref += 1
    with pytest.raises(AssertionError, match="members"):
        check_pagemap_invariants(sys_)
    p.owner.ref -= 1
    check_pagemap_invariants(sys_)
