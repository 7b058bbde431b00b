"""pysvm.World as the public API: one method per event, same results as replay."""

from __future__ import annotations

import errno
import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pysvm
from pysvm import World, XeError
from pysvm.mm.mmap import MAX_ACCESS_BYTES, MAX_READ_BYTES
from pysvm.trace.engine import Engine
from pysvm.xe.pagefault import need_vram_for_atomic

TRACES = Path(__file__).parent / "traces"
GOLDEN = sorted(p for p in TRACES.glob("*.jsonl") if not p.name.endswith(".expected.jsonl"))


def _call(w: World, ev: dict[str, Any]) -> dict[str, Any] | None:
    """Run ``ev`` through the World method of its name; None if the fields cannot be passed
    as keyword arguments (a missing required field or an unknown one)."""
    name = ev.get("ev")
    fields = {k: v for k, v in ev.items() if k != "ev"}
    method = getattr(w, name, None) if isinstance(name, str) and name in pysvm.EVENTS else None
    if method is None:
        return None
    try:
        inspect.signature(method).bind(**fields)
    except TypeError:
        return None
    out: dict[str, Any] = {"ev": name, "result": "ok"}
    try:
        out.update(method(**fields))
    except XeError as e:
        out.update({"result": e.name, "message": e.strerror, **e.details})
    return out


def test_every_event_is_a_keyword_only_method() -> None:
    assert len(pysvm.EVENTS) == 38
    for name in pysvm.EVENTS:
        sig = inspect.signature(getattr(World, name))
        params = [p for p in sig.parameters.values() if p.name != "self"]
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[:-1]), name
        assert params[-1].kind is inspect.Parameter.VAR_KEYWORD, name   # unknown: EINVAL


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_world_methods_give_the_trace_results(path: Path) -> None:
    """Each golden trace, event by event, through the methods and through replay."""
    via_methods, via_engine = World(), Engine()
    checked = 0
    for raw in path.read_bytes().splitlines():
        if not raw.strip():
            continue
        want = via_engine.execute_line(raw)
        try:
            ev = json.loads(raw)
        except ValueError:
            via_methods.note_bad_line()
            continue
        got = _call(via_methods, ev) if isinstance(ev, dict) else None
        if got is None:
            # Not expressible as a call (missing/unknown field): replay refuses it.
            assert want["result"] == "EINVAL", (ev, want)
            via_methods.execute(ev)          # keep the two machines' counters in step
            continue
        assert got == want, ev
        checked += 1
    assert checked > 0
    assert via_methods.summary() == via_engine.summary()


def test_a_fresh_interpreter_importing_only_pysvm_runs_every_event() -> None:
    prog = """
import pysvm
w = pysvm.World()
w.config(profile="newest")
w.device(name="gpu0", vram_mib=16)
w.device(name="gpu1", vram_mib=16)
w.link(a="gpu0", b="gpu1")
w.vm_create(vm="vm0", device="gpu0", fault_mode=True)
w.vm_create(vm="vmx", device="gpu1")
w.bo_create(bo="bo0", device="gpu1", size=65536, placement=["vram", "system"])
w.bind(vm="vmx", op="map", addr=0x100000, range=65536, bo="bo0")
w.bind(vm="vm0", op="map", addr=0, range=1 << 47, flags=["cpu_addr_mirror"])
w.fault_guard(vm="vm0", max_iterations=1000)
w.mmap(addr=1 << 30, size=1 << 21)
w.cpu_write(addr=1 << 30, size=8192, value=5)
w.madvise(vm="vm0", addr=1 << 30, range=1 << 21, type="preferred_loc", devmem_fd="gpu1")
w.query(vm="vm0", addr=1 << 30, range=4096)
w.inject(at="fault.before_bind", event={"ev": "invalidate", "addr": 1 << 30, "size": 4096})
w.gpu_access(vm="vm0", addr=1 << 30, size=8192, op="write", value=9)
w.prefetch(vm="vm0", addr=1 << 30, range=1 << 21, region="system")
w.invalidate(addr=1 << 30, size=4096)
assert w.cpu_read(addr=1 << 30, size=8192) == {"data": [9, 9]}
w.ranges(vm="vm0")
w.evict(device="gpu0")
w.munmap(addr=1 << 30, size=1 << 21)
w.mmap(addr=1 << 33, size=8192)
w.mprotect(addr=1 << 33, size=4096, read_only=True)
assert w.mremap(addr=1 << 33, old_size=8192, new_size=8192, flags=["maymove", "fixed"],
                new_addr=1 << 34) == {"addr": 1 << 34}
w.gc(vm="vm0")
assert w.advance(ms=3) == {"now_ms": 3}
assert w.vm_get_property(vm="vm0") == {"size": 0}
w.bind_array(vm="vmx", binds=[{"op": "unmap", "addr": 0x100000, "range": 65536},
                              {"op": "map", "addr": 0x100000, "range": 65536, "bo": "bo0"}])
w.vm_kill(vm="vmx")
w.process_start(name="p1")
w.mmap(addr=1 << 33, size=8192, process="p1")
w.mprotect(addr=1 << 33, size=4096, read_only=True, process="p1")
assert w.mremap(addr=1 << 33, old_size=8192, new_size=8192, flags=["maymove", "fixed"],
                new_addr=1 << 35, process="p1") == {"addr": 1 << 35}
assert w.process_exit(process="p1") == {"unmapped": 8192, "vms_closed": 0}
w.run_workers()
w.pagemaps()
w.unbind_device(device="gpu1")
try:
    w.rmmod(device="gpu1")       # vm0's VMA still prefers gpu1: its pagemap pins the module
except pysvm.XeError as e:
    assert e.name == "EBUSY", e
assert w.teardown() == {"leftovers": []}
s = w.summary()
assert s["events"] == 41 and s["errors"] == 1, s          # 40 calls + the injected one
print("ok", len(pysvm.EVENTS))
"""
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", "38"]


def test_a_misspelt_keyword_is_einval_naming_it_as_in_a_trace() -> None:
    w = World()
    w.device(name="gpu0", vram_mib=64)
    w.vm_create(vm="vm0", device="gpu0", fault_mode=True)
    with pytest.raises(XeError) as e:
        w.madvise(vm="vm0", addr=1, range=4096, type="atomic", value=2)
    assert e.value.errno == 22 and e.value.strerror == 'unknown field "value" in madvise'
    line = {"ev": "madvise", "vm": "vm0", "addr": 1, "range": 4096, "type": "atomic",
            "value": 2}
    assert Engine(World()).execute(line)["message"] == e.value.strerror
    with pytest.raises(XeError, match='unknown field "vaule" in cpu_write'):
        w.cpu_write(addr=0, size=4096, vaule=3)
    with pytest.raises(TypeError):
        w.mmap(addr=0)                                   # a missing required keyword


def test_a_refusal_changes_nothing_and_names_the_errno() -> None:
    w = World()
    w.device(name="gpu0")
    before = (dict(w.devices), w.summary()["pagemaps_alive"], w.next_fd())
    with pytest.raises(XeError) as e:
        w.device(name="gpu0", vram_mib=8)
    assert e.value.errno == 17 and "already exists" in str(e.value)
    with pytest.raises(XeError) as e:
        w.vm_create(vm="v", device="gpu0", va_bits=99)
    assert e.value.errno == 22 and '"va_bits"' in e.value.strerror
    assert dict(w.devices) == before[0] and not w.vms
    assert w.summary()["pagemaps_alive"] == before[1]
    assert w.next_fd() == before[2] + 1              # no fd was taken by the refusals


def test_summary_counters_are_present_and_a_read_only_event_changes_none() -> None:
    w = World()
    s0 = w.summary()
    assert s0["pagemaps_alive"] == 0 and set(pysvm.SUMMARY_KEYS) <= set(s0)
    w.device(name="gpu0")                  # 6.18: the device holds its tile's pagemap
    s1 = w.summary()
    assert s1["pagemaps_alive"] == 1
    w.pagemaps()
    s2 = w.summary()
    assert {k: v for k, v in s2.items() if k != "events"} == \
        {k: v for k, v in s1.items() if k != "events"}
    assert s2["events"] == s1["events"] + 1


def test_simulate_one_device_reports_its_pagemap() -> None:
    from pysvm.sim.workload import SimConfig, simulate
    res = simulate(SimConfig(steps=60, seed=1, devices=1))
    assert res.ok
    assert res.engine_summary["pagemaps_alive"] == 1


@pytest.mark.parametrize("profile, expect", [("6.18", 0), ("newest", 0)])
def test_need_vram_for_atomic_reads_the_bo_attribute_in_both_profiles(
        profile: str, expect: int) -> None:
    """Kernel: xe_vma_need_vram_for_atomic() switches on bo->attr.atomic_access for a
    BO-backed VMA, in v6.18 too (it came with the commit that put check_bo_args_are_sane()
    and the BO branch of madvise_atomic() into v6.18's xe_vm_madvise.c); this test
    expected the VMA's attribute in 6.18 before."""
    w = World(profile)
    w.device(name="gpu0", smem_atomics=True)
    w.vm_create(vm="vm0", device="gpu0")
    w.bo_create(bo="bo0", device="gpu0", size=65536, placement=["vram"])
    w.bind(vm="vm0", op="map", addr=0x100000, range=65536, bo="bo0")
    vm = w.vms["vm0"]
    vma = vm.find_vma_by_addr(0x100000)
    assert vma is not None and vma.bo is not None
    vma.bo.atomic_access = 1                     # DRM_XE_ATOMIC_DEVICE on the BO: no VRAM
    vma.attr.atomic_access = 2                   # DRM_XE_ATOMIC_GLOBAL on the VMA: VRAM
    assert need_vram_for_atomic(w.devices["gpu0"], vma, True) == expect
    vma.bo.atomic_access = 3                     # DRM_XE_ATOMIC_CPU on the BO
    with pytest.raises(XeError) as e:
        need_vram_for_atomic(w.devices["gpu0"], vma, True)
    assert e.value.errno == 13


def test_mmap_and_munmap_of_2_pow_63_bytes_are_quick() -> None:
    """Issue 12: a 2^63-byte mapping used to walk 2^51 page slots in munmap (and in the
    munmap a MAP_FIXED mmap starts with); only populated pages are walked now."""
    w = World()
    w.mmap(addr=0, size=1 << 63)
    w.cpu_write(addr=5 << 12, size=8192, value=3)
    assert w.cpu_read(addr=5 << 12, size=8192) == {"data": [3, 3]}
    w.mmap(addr=0, size=1 << 63)                         # MAP_FIXED over it: pages go
    assert w.cpu_read(addr=5 << 12, size=4096) == {"data": [0]}
    w.munmap(addr=0, size=1 << 63)
    assert not list(w.mm.vmas()) and not list(w.mm.populated_pages())



@pytest.mark.parametrize(("event", "size"), [
    ("cpu_read", 1 << 40),                      # 1 TiB: used to end in MemoryError, then hang
    ("cpu_read", MAX_READ_BYTES + 4096),
    ("cpu_write", MAX_ACCESS_BYTES + 4096),
    ("gpu_read", MAX_READ_BYTES + 4096),
    ("gpu_write", 1 << 40),
])
def test_an_access_larger_than_one_event_serves_is_refused_and_changes_nothing(
        event: str, size: int) -> None:
    """Issue 12: huge accesses are refused in bounded time (EINVAL naming the limit) before
    anything is populated; the limits themselves still work."""
    w = World()
    w.device(name="gpu0", vram_mib=64)
    w.vm_create(vm="vm0", device="gpu0", fault_mode=True)
    w.bind(vm="vm0", op="map", addr=0, range=1 << 47, flags=["cpu_addr_mirror"])
    w.mmap(addr=1 << 40, size=1 << 41)
    before = w.summary()
    with pytest.raises(XeError) as e:
        if event.startswith("cpu_"):
            getattr(w, event)(addr=1 << 40, size=size)
        else:
            w.gpu_access(vm="vm0", addr=1 << 40, size=size, op=event[4:], value=1)
    assert e.value.errno == errno.EINVAL and "GiB per" in str(e.value)
    assert not list(w.mm.populated_pages())
    assert {k: v for k, v in w.summary().items() if k not in ("events", "errors")} == \
        {k: v for k, v in before.items() if k not in ("events", "errors")}


def test_the_access_limits_are_inclusive() -> None:
    w = World()
    w.mmap(addr=1 << 40, size=MAX_READ_BYTES)
    w.cpu_write(addr=1 << 40, size=MAX_READ_BYTES, value=7)
    data = w.cpu_read(addr=1 << 40, size=MAX_READ_BYTES)["data"]
    assert len(data) == MAX_READ_BYTES // 4096 and set(data) == {7}


def test_replay_refuses_a_huge_read_with_einval() -> None:
    eng = Engine()
    out = [eng.execute_line(line) for line in (
        '{"ev": "mmap", "addr": 4096, "size": 1099511627776}',
        '{"ev": "cpu_read", "addr": 4096, "size": 1099511627776}')]
    assert out[0]["result"] == "ok"
    assert out[1]["result"] == "EINVAL" and "split it" in out[1]["message"]
