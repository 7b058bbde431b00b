"""Owner groups: interconnect admission (spec 6.5), ENOLINK."""

from __future__ import annotations

import errno

import pytest

from pysvm.drm.pagemap import PagemapUseAfterFree
from pysvm.drm.pagemap_util import OwnerList, Peer
from pysvm.errors import XeError
from pysvm.xe.lifetime import check_pagemap_invariants
from pysvm.xe.pagemap import PagemapSystem


def _ic(pairs: set[frozenset[str]]):  # type: ignore[no-untyped-def]
    def f(a: Peer, b: Peer) -> bool:
        return a.device == b.device or frozenset((a.device, b.device)) in pairs
    return f


def test_join_requires_interconnect_with_every_member() -> None:
    ol = OwnerList()
    links = {frozenset(("a", "b")), frozenset(("b", "c"))}
    pa, pb, pc = Peer("a"), Peer("b"), Peer("c")
    oa = ol.acquire(pa, _ic(links))
    assert ol.acquire(pb, _ic(links)) is oa and oa.ref == 2
    oc = ol.acquire(pc, _ic(links))        # linked to b but not to a
    assert oc is not oa and oc.ref == 1
    assert [[p.device for p in g] for g in ol.groups()] == [["a", "b"], ["c"]]


def test_first_qualifying_group_and_grouped_insertion() -> None:
    ol = OwnerList()
    links = {frozenset(("x", "y")), frozenset(("x", "z"))}
    py, pz = Peer("y"), Peer("z")
    oy = ol.acquire(py, _ic(links))
    oz = ol.acquire(pz, _ic(links))
    assert oy is not oz
    px = Peer("x")
    assert ol.acquire(px, _ic(links)) is oy          # first group wins
    assert [p.device for p in ol.peers] == ["y", "x", "z"]   # inserted at the end of its group
    py2 = Peer("y", name="second")
    assert ol.acquire(py2, _ic(links)) is oy
    assert [p.device for p in ol.peers] == ["y", "x", "y", "z"]
    assert oy.ref == 3


def test_release_drops_owner_and_is_noop_when_not_joined() -> None:
    ol = OwnerList()
    p1, p2 = Peer("a"), Peer("a")
    o = ol.acquire(p1, _ic(set()))
    ol.acquire(p2, _ic(set()))
    ol.release(p1)
    assert o.ref == 1 and p1.owner is None and not p1.joined
    assert p1.list is ol               # kept, as the kernel keeps peer->list
    never = Peer("a")
    ol.release(never)                  # never joined: no-op
    assert o.ref == 1 and ol.peers == [p2]
    # A second release would unlink and put the owner twice in the kernel: clear error,
    # nothing changes.
    with pytest.raises(PagemapUseAfterFree, match="released twice"):
        ol.release(p1)
    assert o.ref == 1 and ol.peers == [p2]
    ol.release(p2)
    assert o.ref == 0 and ol.peers == []
    # Re-joining after leaving is allowed (a fresh owner here); joining twice is refused.
    o2 = ol.acquire(p1, _ic(set()))
    assert o2 is not o and o2.ref == 1
    with pytest.raises(XeError) as e:
        ol.acquire(p1, _ic(set()))
    assert e.value.errno == errno.EINVAL and o2.ref == 1 and ol.peers == [p1]


def test_pagemap_peers_and_enolink() -> None:
    s = PagemapSystem()
    s.add_device("gpu0")
    s.add_device("gpu1")
    s.add_device("gpu2")
    s.link("gpu0", "gpu1")
    vm_peer = Peer("gpu0", "vm", "vm0")
    s.owners.acquire(vm_peer, s.has_interconnect)
    p1 = s.provider("gpu1").find_or_create()
    p2 = s.provider("gpu2").find_or_create()
    assert p1.owner is vm_peer.owner
    s.require_same_owner(vm_peer, p1)
    with pytest.raises(XeError) as e:
        s.require_same_owner(vm_peer, p2)
    assert e.value.errno == errno.ENOLINK
    check_pagemap_invariants(s)
    # Destroy leaves the group.
    owner = p1.owner
    # Only peers that joined: vm0 (xe_svm_init()) and the gpu1 pagemap (xe_pagemap_create());
    # the newer driver has no device-level peer, so probe and link add no member.
    assert owner is not None and owner.ref == 2
    assert s.provider("gpu0").peer.owner is None and s.provider("gpu2").peer.owner is None
    assert p2.owner is not None and p2.owner is not owner
    p1.put()
    s.provider("gpu1").shrinker.scan(1)
    s.run_workers()
    assert owner.ref == 1 and p1.owner is None
    check_pagemap_invariants(s)


def test_link_validation() -> None:
    s = PagemapSystem()
    s.add_device("gpu0")
    with pytest.raises(XeError) as e:
        s.link("gpu0", "gpu9")
    assert e.value.errno == errno.ENOENT
    with pytest.raises(XeError) as e:
        s.link("gpu0", "gpu0")
    assert e.value.errno == errno.EINVAL
    assert s.links == set()


@pytest.mark.parametrize("profile", ["6.18", "newest"])
def test_allocation_owner_is_read_anew_after_a_link_regroups_owners(profile: str) -> None:
    # The page owner of an allocation's pages (xe_svm_devm_owner()) is looked up each time,
    # never kept: a link event regroups the owners while pages sit in VRAM.
    from pysvm.trace.engine import Engine
    from pysvm.xe.vram import devm_owner

    eng = Engine()
    base, size = 0x100000, 0x40000
    for ev in [{"ev": "config", "profile": profile},
               {"ev": "device", "name": "gpu0", "vram_mib": 16, "discrete": True},
               {"ev": "device", "name": "gpu1", "vram_mib": 16, "discrete": True},
               {"ev": "vm_create", "vm": "vm0", "device": "gpu0", "fault_mode": True},
               {"ev": "bind", "vm": "vm0", "op": "map", "addr": 0, "range": 1 << 40,
                "flags": ["cpu_addr_mirror"], "pat_index": 0},
               {"ev": "mmap", "addr": base, "size": size},
               {"ev": "gpu_access", "vm": "vm0", "addr": base, "size": size, "op": "write",
                "value": 3}]:
        assert eng.execute(ev)["result"] == "ok", ev
    dev = eng.world.devices["gpu0"]
    assert dev.vram is not None and dev.pagemap is not None
    allocs = list(dev.vram.allocations.values())
    before = devm_owner(dev)
    assert allocs and before is dev.pagemap.owner and before is not dev
    assert all(a.owner is before for a in allocs)
    assert eng.execute({"ev": "link", "a": "gpu0", "b": "gpu1"})["result"] == "ok"
    after = devm_owner(dev)
    assert after is dev.pagemap.owner and after is not dev
    assert all(a.owner is after for a in allocs)
    # The peer that decides (6.18 the device's, newest the held pagemap's) leaves its
    # group and joins again: the allocations' owner follows at once.
    s = eng.world.pagemaps_system
    current = dev.pagemap.current
    assert current is not None
    peer = s.provider("gpu0").peer if profile == "6.18" else current.peer
    s.owners.release(peer)
    assert devm_owner(dev) is dev and all(a.owner is dev for a in allocs)
    s.owners.acquire(peer, s.has_interconnect)
    assert peer.owner is not None and devm_owner(dev) is peer.owner
    assert all(a.owner is peer.owner for a in allocs)
