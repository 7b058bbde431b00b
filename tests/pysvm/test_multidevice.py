"""Two devices, device 0 executing out of device 1's memory, device 1 unbound (the reviewers'
scenario), driven through the trace engine with the lifetime invariants checked after every
event; the same scenario as the golden trace traces/unbind_peer.jsonl (compared exactly);
owner groups and ENOLINK end to end; teardown of whole multi-device simulations.

To regenerate the golden output after an intended change:
``python -m pysvm replay tests/pysvm/traces/unbind_peer.jsonl
> tests/pysvm/traces/unbind_peer.expected.jsonl`` (then re-read the semantic checks below).
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest

from pysvm.cli.main import main
from pysvm.drm.pagemap import Pagemap, PagemapState, PagemapUseAfterFree
from pysvm.errors import XeError
from pysvm.sim.workload import SimConfig, Simulation
from pysvm.trace.engine import Engine
from pysvm.xe.migrate import populate_mm
from pysvm.xe.pagemap import DevicePagemap, svm_put_pagemaps

TRACES = Path(__file__).parent / "traces"
BASE, SIZE = 0x100000, 0x40000          # 256 KiB = four 64 KiB SVM ranges, 64 pages
NPAGES = SIZE // 4096


def _state(p: Pagemap) -> PagemapState:
    """The state, read through a call so that mypy does not narrow it across asserts."""
    return p.state


class CheckedEngine(Engine):
    """The trace engine with the pagemap lifetime invariants checked after every event."""

    checks = 0

    def execute(self, ev: Any) -> dict[str, Any]:
        out = super().execute(ev)
        self.world.check_invariants()
        self.checks += 1
        return out


def _do(eng: Engine, result: str = "ok", **ev: Any) -> dict[str, Any]:
    out = eng.execute(ev)
    assert out["result"] == result, out
    return out


def _setup(link: bool = True) -> CheckedEngine:
    eng = CheckedEngine()
    _do(eng, ev="config", profile="newest")
    for name in ("gpu0", "gpu1"):
        _do(eng, ev="device", name=name, vram_mib=64, discrete=True)
    if link:
        _do(eng, ev="link", a="gpu0", b="gpu1")
    _do(eng, ev="vm_create", vm="vm0", device="gpu0", fault_mode=True)
    _do(eng, ev="bind", vm="vm0", op="map", addr=0, range=1 << 40, flags=["cpu_addr_mirror"],
        pat_index=0)
    _do(eng, ev="mmap", addr=BASE, size=SIZE)
    _do(eng, ev="cpu_write", addr=BASE, size=SIZE, value=5)
    return eng


def _dp(eng: Engine, name: str) -> DevicePagemap:
    dp = eng.world.devices[name].pagemap
    assert isinstance(dp, DevicePagemap)
    return dp


def _locations(eng: Engine) -> list[str]:
    return [r["location"] for r in _do(eng, ev="ranges", vm="vm0")["ranges"]]


def _peer_advise(eng: Engine, result: str = "ok") -> dict[str, Any]:
    return _do(eng, result, ev="madvise", vm="vm0", addr=BASE, range=SIZE, type="preferred_loc",
               devmem_fd="gpu1", migration_policy=0)


def test_reviewers_scenario_unbind_peer_while_executing() -> None:
    eng = _setup()
    w = eng.world
    vm = w.vms["vm0"]
    gpu0, gpu1 = w.devices["gpu0"], w.devices["gpu1"]
    s = w.pagemaps_system
    prov1 = s.provider("gpu1")
    # The SVM VM holds its own device's pagemap (xe_svm_get_pagemaps).
    assert list(vm.svm.pagemaps) == [_dp(eng, "gpu0")] and _dp(eng, "gpu0").refcount == 1

    # Device 0 executes out of device 1's memory.
    _peer_advise(eng)
    assert _do(eng, ev="gpu_access", vm="vm0", addr=BASE, size=SIZE, op="write",
               value=9)["faults"] == 4
    assert _locations(eng) == ["gpu1"] * 4
    pm1 = _dp(eng, "gpu1").current
    assert isinstance(pm1, Pagemap)
    # VMA preferred_loc + 4 allocations (zdd) + 4 ranges' pages.
    assert pm1.ref == 9 and _state(pm1) is PagemapState.ACTIVE
    out = _do(eng, ev="gpu_access", vm="vm0", addr=BASE, size=SIZE, op="read")
    assert out["data"] == [9] * NPAGES and out["faults"] == 0

    # Unbind device 1 while device 0 is using its memory.
    assert _do(eng, ev="unbind_device", device="gpu1")["evicted_pages"] == NPAGES
    assert pm1.ref == 1 and _state(pm1) is PagemapState.ACTIVE      # only the VMA's reference
    assert prov1.device.unplugged and not prov1.device.freed      # kept by the device hold
    assert prov1.device.refcount == 1 and prov1.module.refcount == 1 and prov1.module.loaded
    assert _do(eng, "EBUSY", ev="rmmod", device="gpu1")
    assert prov1.module.loaded and not prov1.device.freed
    # New populations on the dead pagemap fail with ENODEV ...
    with pytest.raises(XeError) as e:
        populate_mm(gpu1, w.mm, BASE, BASE + SIZE)
    assert e.value.errno == errno.ENODEV
    with pytest.raises(XeError) as e:
        pm1.populate_mm(BASE, BASE + SIZE)
    assert e.value.errno == errno.ENODEV
    # ... and device 0's faults fall back to system memory and complete with correct results.
    out = _do(eng, ev="gpu_access", vm="vm0", addr=BASE, size=SIZE, op="write", value=11)
    assert out["faults"] == 4 and out["retries"] == 4
    for st in list(vm.svm.fault_log)[-4:]:
        assert "migrate:ENODEV" in st.reasons, st.reasons
    assert _locations(eng) == ["system"] * 4
    assert _do(eng, ev="cpu_read", addr=BASE, size=SIZE)["data"] == [11] * NPAGES
    assert pm1.ref == 1 and not prov1.device.freed                # nothing freed while held
    # A new advice naming the dead device fails and changes nothing.
    _peer_advise(eng, "ENODEV")
    attrs = _do(eng, ev="query", vm="vm0", addr=BASE, range=SIZE)["vmas"][0]["attrs"]
    assert attrs["devmem_fd"] == "gpu1" and pm1.ref == 1

    # The VMA lets go: destroyed directly (device gone), device and module held until the
    # deferred worker runs.
    _do(eng, ev="madvise", vm="vm0", addr=BASE, range=SIZE, type="preferred_loc", devmem_fd=-1,
        migration_policy=0)
    assert pm1.ref == 0 and _state(pm1) is PagemapState.DESTROYING
    assert not prov1.device.freed and prov1.module.refcount == 1
    _do(eng, "EBUSY", ev="rmmod", device="gpu1")
    out = _do(eng, ev="run_workers")
    assert out["pagemaps_destroyed"] == 1 and out["holds_dropped"] == 1
    assert _state(pm1) is PagemapState.FREED and prov1.device.freed
    assert prov1.module.refcount == 0
    _do(eng, ev="rmmod", device="gpu1")
    assert not prov1.module.loaded
    _do(eng, "ENOENT", ev="rmmod", device="gpu1")

    # Use after release: a clear error, never a silent success.
    for op in (pm1.get, pm1.get_unless_zero, pm1.put, _dp(eng, "gpu1").put):
        with pytest.raises(PagemapUseAfterFree):
            op()

    # Device 0 keeps running, in its own VRAM now (atomics need device memory).
    out = _do(eng, ev="gpu_access", vm="vm0", addr=BASE, size=SIZE, op="atomic")
    assert _locations(eng) == ["gpu0"] * 4
    assert _do(eng, ev="cpu_read", addr=BASE, size=SIZE)["data"] == [12] * NPAGES
    assert gpu0.pagemap is not None and not s.provider("gpu0").unbound

    assert _do(eng, ev="teardown")["leftovers"] == []
    assert s.alive() == [] and s.owners.peers == [] and not s.unhold_list
    for prov in s.providers.values():
        assert prov.device.freed and prov.module.refcount == 0 and not prov.module.loaded
    assert eng.checks > 20


def test_unbind_peer_trace_replays_to_the_golden_output(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    trace = TRACES / "unbind_peer.jsonl"
    expected_text = trace.with_suffix(".expected.jsonl").read_text()
    assert main(["replay", str(trace)]) == 0
    got_text = capsys.readouterr().out
    assert got_text == expected_text, "output differs from unbind_peer.expected.jsonl"

    # The golden file itself says what the scenario is about (so regenerating it cannot
    # silently bless a wrong behaviour).
    events = [json.loads(x) for x in trace.read_text().splitlines()]
    out = [json.loads(x) for x in expected_text.splitlines()]
    assert len(out) == len(events) + 1 and "summary" in out[-1]
    by = {o["i"]: o for o in out[:-1]}

    def first(ev: str, **match: Any) -> int:
        return next(i for i, e in enumerate(events)
                    if e["ev"] == ev and all(e.get(k) == v for k, v in match.items()))

    unbind = first("unbind_device")
    teardown = first("teardown")
    before = [i for i, e in enumerate(events) if e["ev"] == "ranges" and i < unbind]
    assert {r["location"] for r in by[before[0]]["ranges"]} == {"gpu1"}
    pm_before = {p["device"]: p for p in by[unbind - 2]["pagemaps"]}
    assert pm_before["gpu1"]["refcount"] == 9 and pm_before["gpu0"]["refcount"] == 1
    assert by[unbind]["result"] == "ok" and by[unbind]["evicted_pages"] == 64
    pm_after = {p["device"]: p for p in by[unbind + 1]["pagemaps"]}
    assert pm_after["gpu1"] == {"device": "gpu1", "refcount": 1, "cached": False,
                                "device_held": True}
    assert by[unbind + 2]["result"] == "EBUSY"
    fallback = by[unbind + 3]
    assert fallback["result"] == "ok" and fallback["retries"] == 4
    assert {r["location"] for r in by[unbind + 4]["ranges"]} == {"system"}
    assert by[unbind + 5]["data"] == [11] * 64
    assert by[unbind + 6]["result"] == "ENODEV"
    rmmods = [by[i]["result"] for i, e in enumerate(events) if e["ev"] == "rmmod"]
    assert rmmods == ["EBUSY", "EBUSY", "ok"]
    workers = by[first("run_workers")]
    assert workers["pagemaps_destroyed"] == 1 and workers["holds_dropped"] == 1
    assert by[teardown]["leftovers"] == [] and by[teardown + 1]["pagemaps"] == []
    assert out[-1]["summary"]["pagemaps_alive"] == 0


def test_owner_groups_end_to_end_enolink_without_link() -> None:
    eng = _setup(link=False)
    s = eng.world.pagemaps_system
    vm_peer = eng.world.vms["vm0"].svm.peer    # xe_svm_init(): the VM joined the owner list
    assert vm_peer is not None and vm_peer.owner is not None
    out = _peer_advise(eng, "ENOLINK")
    assert "interconnect" in out["message"]
    attrs = _do(eng, ev="query", vm="vm0", addr=BASE, range=SIZE)["vmas"][0]["attrs"]
    assert attrs["devmem_fd"] == 0                   # nothing changed
    assert _dp(eng, "gpu1").refs == []
    # The kernel opens (finds or creates) gpu1's pagemap before it compares owners and
    # puts it again on ENOLINK, so the refused call leaves it idle in gpu1's cache.
    pms = {p["device"]: p for p in _do(eng, ev="pagemaps")["pagemaps"]}
    assert pms["gpu1"]["refcount"] == 0 and pms["gpu1"]["cached"] is True
    cached = s.provider("gpu1").caches[0].slot
    assert cached is not None and cached.owner is not vm_peer.owner
    # Linked: one group, the advice is accepted and device 0 runs out of device 1's VRAM.
    _do(eng, ev="link", a="gpu0", b="gpu1")
    assert cached.owner is vm_peer.owner
    _peer_advise(eng)
    _do(eng, ev="gpu_access", vm="vm0", addr=BASE, size=SIZE, op="write", value=3)
    assert _locations(eng) == ["gpu1"] * 4
    assert _do(eng, ev="teardown")["leftovers"] == []


def test_vm_on_an_unbound_device_is_enodev() -> None:
    eng = _setup()
    _do(eng, ev="unbind_device", device="gpu1")
    _do(eng, "ENODEV", ev="vm_create", vm="vm1", device="gpu1", fault_mode=True)
    assert "vm1" not in eng.world.vms
    assert _do(eng, ev="teardown")["leftovers"] == []


def test_invariants_catch_unaccounted_and_leaked_references() -> None:
    eng = _setup()
    _peer_advise(eng)
    _do(eng, ev="gpu_access", vm="vm0", addr=BASE, size=SIZE, op="write", value=1)
    dp1 = _dp(eng, "gpu1")
    dp1.get()                                            # a reference nobody accounts for
    with pytest.raises(AssertionError, match="holder"):
        eng.world.check_invariants()
    dp1.put()
    eng.world.check_invariants()
    vm = eng.world.vms["vm0"]
    held = list(vm.svm.pagemaps)
    refs = [dp.refcount for dp in held]
    assert held
    vm.svm.closed = True                                 # a close without xe_svm_close's put
    with pytest.raises(AssertionError, match="SVM closed but it still holds"):
        eng.world.check_invariants()
    vm.svm.closed = False
    vm.svm.close()                                       # the real close puts them
    assert list(vm.svm.pagemaps) == [] and [dp.refcount for dp in held] == [r - 1 for r in refs]
    eng.world.check_invariants()
    svm_put_pagemaps(vm.svm.pagemaps)                    # idempotent, as in the kernel
    eng.world.check_invariants()
    assert eng.world.teardown()["leftovers"] == []


def test_teardown_reports_what_is_still_referenced() -> None:
    eng = _setup()
    _peer_advise(eng)
    _do(eng, ev="gpu_access", vm="vm0", addr=BASE, size=SIZE, op="write", value=1)
    stray = _dp(eng, "gpu1").get()                       # never put
    left = eng.world.teardown()["leftovers"]
    assert any("rmmod gpu1" in x and "EBUSY" in x for x in left), left
    assert any("still holds device gpu1" in x for x in left), left
    assert not any("gpu0" in x for x in left), left
    assert stray.refs and stray.refs[0].ref == 1


@pytest.mark.parametrize(("profile", "preferred_loc"),
                         [("newest", "peer"), ("newest", "mixed"), ("6.18", "mixed")])
def test_simulation_with_unbind_tears_down_to_zero(profile: str, preferred_loc: str) -> None:
    eng = CheckedEngine()
    cfg = SimConfig(steps=250, seed=7, profile=profile, devices=2, unbind=True,
                    preferred_loc=preferred_loc)
    res = Simulation(cfg, engine=eng).run()
    w = eng.world
    s = w.pagemaps_system
    assert w.stats["devices_unbound"] == 1 and eng.checks > 250
    assert res.ok, res.mismatches[:5]                    # no data lost across the unbind
    assert s.alive(), "the simulation should leave live pagemaps for teardown to release"
    assert w.teardown()["leftovers"] == []
    w.check_invariants()
    assert s.alive() == [] and not s.unhold_list and not s.destroy_queue
    assert s.owners.peers == []
    for p in s.all_pagemaps:
        assert p.ref == 0 and p.dev_hold is None
    for prov in s.providers.values():
        assert prov.device.freed and prov.device.refcount == 0
        assert prov.module.refcount == 0 and not prov.module.loaded
    for dev in w.devices.values():
        assert dev.pagemap is None or dev.pagemap.refs == []
        assert dev.vram is None or not dev.vram.allocations
