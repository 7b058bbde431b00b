"""Whole-machine pagemap lifetime invariants and teardown.

Kernel: no single counterpart: the order of process exit (xe_svm_close, VMA destruction),
TTM eviction, the deferred work, xe_pci_remove() and drm_pagemap_exit(), and the refcount
rules of drivers/gpu/drm/drm_pagemap.c checked across every holder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from pysvm.drm.pagemap import PagemapState
from pysvm.errors import XeError
from pysvm.xe.migrate import evict_device
from pysvm.xe.pagemap import PagemapSystem, svm_put_pagemaps
from pysvm.xe.vram import Vram

if TYPE_CHECKING:
    from pysvm.xe.device import Device
    from pysvm.xe.vm import Vm

__all__ = ["check_pagemap_invariants", "teardown"]

# --------------------------------------------------------------------------------------------
# Lifetime invariants and teardown
# --------------------------------------------------------------------------------------------


def _expected_holders(s: PagemapSystem, devices: Mapping[str, Device],
                      vms: Mapping[str, Vm]) -> dict[str, int]:
    """Per device, the pagemap references its users hold now, counted from the world.

    One per live VRAM allocation of the device (zdd), per VMA whose preferred_loc names the
    device's pagemap, per VM hold (:func:`svm_get_pagemaps`), per SVM range whose pages are in
    the device's VRAM (newest profile). O(allocations + VMAs + ranges).
    """
    counts = {name: 0 for name in s.providers}
    by_dp: dict[int, str] = {}
    for name, dev in devices.items():
        for dp in dev.pagemaps:      # one handle per tile
            by_dp[id(dp)] = name
        if dev.pagemaps and name in counts:
            counts[name] += sum(len(v.allocations) for v in dev.vrams)
    for vm in vms.values():
        svm = vm.svm
        for dp in (svm.pagemaps if svm is not None else []):
            counts[dp.provider.name] += 1
        if svm is not None and svm.closed:
            assert not svm.pagemaps, (
                f"VM {vm.name}: SVM closed but it still holds its pagemaps (xe_svm_close "
                "puts them: call pysvm.drm.pagemap.svm_put_pagemaps)")
        for vma in vm:
            pm = vma.attr.preferred_loc.pagemap
            if pm is not None:
                assert id(pm) in by_dp, f"{vma!r} holds a pagemap of no known device: {pm!r}"
                counts[by_dp[id(pm)]] += 1
        if svm is not None:
            for r in svm.gpusvm.ranges():
                d = r.dpagemap      # the tile VRAM (pysvm.xe.vram.Vram) holding the pages
                rdev = d.device if isinstance(d, Vram) else None
                if rdev is not None and rdev.pagemap is not None \
                        and rdev.pagemap.provider.users_hold:
                    counts[rdev.name] += 1
    return counts


def check_pagemap_invariants(s: PagemapSystem, devices: Mapping[str, Device] | None = None,
                             vms: Mapping[str, Vm] | None = None) -> None:
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
      * given devices and VMs: the handle's references = the holders found in the world (VRAM
        allocations, VMAs' preferred_loc, SVM VMs, SVM ranges), and a closed SVM holds none;
    Owner groups
      * owner refcounts equal their member counts, groups are contiguous, and every member
        has joined.
    """
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
    expected = (_expected_holders(s, devices, vms or {}) if devices is not None else None)
    for name, prov in s.providers.items():
        dev = devices.get(name) if devices is not None else None
        dps = dev.pagemaps if dev is not None else []
        handle_refs = [q for dp in dps for q in dp.refs]
        for dp in dps:
            assert all(q is dp.refs[0] for q in dp.refs), (
                f"device {name} tile {dp.tile}: handle references spread over several "
                "pagemaps")
        own = sum(1 for q in prov.own_refs if q is not None)
        if dps:
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


def teardown(s: PagemapSystem, devices: Mapping[str, Device], vms: dict[str, Vm],
             run_workers: Callable[[], object]) -> list[str]:
    """Tear a whole simulated machine down and report what is left (``[]`` when clean).

    In kernel order: every VM is closed (xe_svm_close: SVM ranges unmapped and removed, the
    VM's pagemap references dropped; then its VMAs are destroyed, dropping preferred_loc
    references), device memory is evicted to system memory (the zdd references go), the
    deferred work runs (``run_workers``: the machine's work queue), every provider module is
    unloaded (unbinding its device), the work runs again and the drm_pagemap module exits.
    Afterwards every pagemap is freed, every device freed, every module refcount zero, and
    the owner list empty, unless something leaked, which the returned lines say.
    """
    problems: list[str] = []
    for vm in list(vms.values()):
        svm = vm.svm
        if svm is not None:
            if not svm.closed:
                svm.close()
            svm_put_pagemaps(svm.pagemaps)
        for vma in vm:
            vma.attr.release()
        vm.kill()
    vms.clear()
    for dev in devices.values():
        evict_device(dev)
    run_workers()
    s.run_workers()
    for name, prov in s.providers.items():
        if not prov.module.loaded:
            continue
        try:
            prov.rmmod()
        except XeError as e:
            problems.append(f"rmmod {name}: {e}")
        probed = devices.get(name)
        if probed is not None and prov.unbound:
            probed.unbound = True
    run_workers()
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
