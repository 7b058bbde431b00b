"""Two devices, device 0 using device 1's VRAM, device 1 unbound (the reviewers' scenario).

Driven at the pagemap + migration level (pysvm.mm / pysvm.migrate from E, D's Device) because
the SVM fault path's trace events are not registered yet; tests/pysvm/traces/unbind_peer.jsonl
is the same scenario as a trace.
"""

from __future__ import annotations

import errno

import pytest

from pysvm.device import Device
from pysvm.errors import XeError
from pysvm.migrate import evict_device, populate_mm
from pysvm.mm import Mm
from pysvm.pagemap import (
    DevicePagemap,
    PagemapState,
    PagemapUseAfterFree,
    attach_device,
    check_pagemap_invariants,
    system_for,
)
from pysvm.world import World

MIB = 1 << 20
PAGE = 4096


def _world() -> tuple[World, Device, Device, Mm]:
    w = World("newest")
    devs = []
    for i in range(2):
        d = Device(f"gpu{i}", 64 * MIB, True, False, fd=w.next_fd())
        w.devices[d.name] = d
        attach_device(w, d)
        devs.append(d)
    system_for(w).link("gpu0", "gpu1")
    mm = Mm()
    w.mm = mm
    return w, devs[0], devs[1], mm


def _pm(d: Device) -> DevicePagemap:
    assert isinstance(d.pagemap, DevicePagemap)
    return d.pagemap


def test_peer_memory_survives_unbind_with_data_and_refs() -> None:
    w, gpu0, gpu1, mm = _world()
    s = system_for(w)
    base, size = 0x100000, 16 * PAGE
    mm.mmap(base, size)
    mm.cpu_write(base, size, 7)
    # gpu0's VM holds gpu1's pagemap (a madvise preferred_loc = gpu1 VMA reference).
    _pm(gpu1).get()
    populate_mm(gpu1, mm, base, base + size)           # device pages on gpu1
    pm1 = _pm(gpu1).current
    assert pm1 is not None and pm1.ref == 2            # VMA ref + allocation (zdd) ref
    assert _pm(gpu0).owner is _pm(gpu1).owner          # linked: one owner group
    mm.cpu_write(base, PAGE, 8)                        # CPU fault migrates back and writes
    assert pm1.ref == 1                                # the allocation's ref went with it
    populate_mm(gpu1, mm, base, base + size)           # device 0 runs out of gpu1's VRAM again
    assert _pm(gpu1).current is pm1 and pm1.ref == 2
    check_pagemap_invariants(w)

    # Unbind gpu1: evict, unplug, devm teardown; the VMA still references the pagemap.
    gpu1.unbound = True
    evicted: list[int] = []
    s.provider("gpu1").unbind(evict=lambda: evicted.append(evict_device(gpu1)))
    assert evicted == [16]
    assert mm.cpu_read(base, 2 * PAGE) == [8, 7]       # nothing lost
    assert pm1.ref == 1 and pm1.state is PagemapState.ACTIVE
    prov1 = s.provider("gpu1")
    assert not prov1.device.freed and prov1.module.refcount == 1
    with pytest.raises(XeError) as e:
        populate_mm(gpu1, mm, base, base + size)      # migration to the dead pagemap
    assert e.value.errno == errno.ENODEV
    with pytest.raises(XeError) as e:
        pm1.populate_mm(base, base + size)
    assert e.value.errno == errno.ENODEV
    # Fallback: gpu0's own VRAM still works, data intact.
    populate_mm(gpu0, mm, base, base + size)
    assert mm.cpu_read(base, 3 * PAGE) == [8, 7, 7]
    with pytest.raises(XeError) as e:
        prov1.rmmod()
    assert e.value.errno == errno.EBUSY
    check_pagemap_invariants(w)

    # The VMA drops its reference: destroyed directly (device gone), hold dropped by worker.
    _pm(gpu1).put()
    assert pm1.state is PagemapState.DESTROYING
    assert not prov1.device.freed
    with pytest.raises(XeError):
        prov1.rmmod()
    s.run_workers()
    assert prov1.device.freed and prov1.module.refcount == 0
    prov1.rmmod()
    with pytest.raises(PagemapUseAfterFree):
        _pm(gpu1).put()
    # gpu0 unaffected.
    evict_device(gpu0)
    assert mm.cpu_read(base, 2 * PAGE) == [8, 7]
    s.run_workers()
    check_pagemap_invariants(w)
    assert [p.provider.name for p in s.alive()] == ["gpu0"]   # inactive, cached
    assert s.snapshot() == [{"device": "gpu0", "refcount": 0, "cached": True,
                             "device_held": False}]


def test_allocation_refs_return_to_zero() -> None:
    w, gpu0, _, mm = _world()
    mm.mmap(0, 8 * PAGE)
    populate_mm(gpu0, mm, 0, 4 * PAGE)
    populate_mm(gpu0, mm, 4 * PAGE, 8 * PAGE)
    pm = _pm(gpu0).current
    assert pm is not None and pm.ref == 2
    evict_device(gpu0)
    assert pm.ref == 0 and pm.state is PagemapState.INACTIVE
    s = system_for(w)
    assert len(s.unhold_list) == 1
    s.run_workers()
    check_pagemap_invariants(w)
    assert s.provider("gpu0").module.refcount == 0


def test_unbind_peer_trace_pagemap_lines() -> None:
    """Replay traces/unbind_peer.jsonl and check the lines this layer answers for (the SVM
    events' own results are E's to check)."""
    import json
    from pathlib import Path

    from pysvm.trace import Engine

    path = Path(__file__).parent / "traces" / "unbind_peer.jsonl"
    eng = Engine()
    out = list(eng.run(path.read_text().splitlines()))
    by_i = {o["i"]: o for o in out}
    assert by_i[3]["result"] == "ok"                                  # link
    pm_before = by_i[11]["pagemaps"]
    gpu1 = [p for p in pm_before if p["device"] == "gpu1"]
    assert gpu1 and gpu1[0]["refcount"] >= 1 and gpu1[0]["device_held"]   # VMA's madvise ref
    assert by_i[12]["result"] == "ok"                                 # unbind_device
    assert by_i[13]["result"] == "EBUSY"                              # held by the VMA's ref
    gpu1_after = [p for p in by_i[17]["pagemaps"] if p["device"] == "gpu1"]
    assert gpu1_after and not gpu1_after[0]["cached"]                 # never cached once unbound
    assert by_i[19]["result"] == "ok" and by_i[19]["holds_dropped"] >= 1
    assert not [p for p in by_i[20]["pagemaps"] if p["device"] == "gpu1"]
    assert by_i[21]["result"] == "ok"                                 # rmmod after the worker
    check_pagemap_invariants(eng.world)
    json.dumps(out)  # every line serialisable
