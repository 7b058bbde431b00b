"""The process subtests of xe_exec_system_allocator (issue 16): each child has its own
address space, device file and VM; they share the device and its VRAM.

IGT: tests/intel/xe_exec_system_allocator.c processes() / process() (each child
drm_open_driver()s and runs test_exec() with its own VM) and processes_evict() /
process_evict() (each child runs many_allocs() over its share of the visible VRAM).
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from pysvm.igt import select
from pysvm.igt.runner import run_scenario
from pysvm.igt.scenario import Scenario
from pysvm.world import World

SUITE = "xe_exec_system_allocator"


def _build(name: str, profile: str = "6.18") -> Scenario:
    st = next(st for st in select([SUITE], [name]) if st.name == name)
    assert st.build is not None, st.skip
    return st.build(profile)


def test_children_map_the_same_addresses_in_their_own_address_spaces() -> None:
    sc = _build("process-many-malloc")
    evs = sc.events()
    assert [e["name"] for e in evs if e["ev"] == "process_start"] == ["child0", "child1"]
    maps: dict[str, list[int]] = {}
    for e in evs:
        if e["ev"] == "mmap":
            maps.setdefault(e["process"], []).append(e["addr"])
    assert maps["child0"] == maps["child1"]          # fork()ed children: the same layout
    vms = {e["vm"]: e["process"] for e in evs if e["ev"] == "vm_create"}
    assert sorted(vms.values()) == ["child0", "child1"]
    # every CPU event names its process, and each child's GPU accesses use its own VM
    assert all("process" in e for e in evs if e["ev"] in ("mmap", "munmap", "cpu_write",
                                                           "cpu_read"))
    # the children interleave: the first child does not finish before the second starts
    order = [vms[e["vm"]] for e in evs if e["ev"] == "gpu_access"]
    assert order[:4] == ["child0", "child0", "child1", "child1"]
    # each destroys its VM and exits at the end
    tail = [(e["ev"], e.get("process", e.get("vm"))) for e in evs[-4:]]
    assert [t[0] for t in tail] == ["vm_destroy", "process_exit", "vm_destroy",
                                    "process_exit"]
    status, msg, _, ctr = run_scenario(sc)
    assert status == "passed", msg
    assert ctr["processes_started"] == ctr["processes_exited"] == 2


def test_a_child_reading_the_other_childs_memory_would_be_caught() -> None:
    """The two children store different values at the same addresses: a read-back in the
    wrong address space fails."""
    sc = _build("process-many-malloc")
    k = next(i for i, s in enumerate(sc.steps)
             if s.ev["ev"] == "cpu_read" and s.ev["process"] == "child1" and s.data)
    step = sc.steps[k]
    sc.steps[k] = dataclasses.replace(step, ev={**step.ev, "process": "child0"})
    status, msg, _, _ = run_scenario(sc)
    assert status == "failed" and "cpu_read" in msg, msg


@pytest.mark.parametrize("profile", ["6.18", "newest"])
def test_processes_evict_evicts_the_other_childs_ranges(profile: str) -> None:
    """With 9 allocations of 8 MiB per child over a 68 MiB share of 136 MiB, the VRAM
    overflows on the second child's last allocation, whose migration evicts the first
    child's oldest ranges; their values must still read back (the scenario's checks)."""
    sc = _build("processes-evict-malloc", profile)
    w = World()
    owner: dict[str, str] = {}
    cross = Counter[str]()

    def in_vram() -> dict[str, int]:
        return {vm: sum(r["location"] != "system" for r in w.vms[vm].svm.ranges_info())
                for vm in owner if vm in w.vms and w.vms[vm].svm is not None}

    for step in sc.steps:
        ev = step.ev
        before = in_vram() if ev["ev"] == "gpu_access" else {}
        out = w.execute(ev)
        assert out["result"] in step.want, (ev, out)
        if step.data is not None:
            assert tuple(out["data"]) == step.data, ev
        if ev["ev"] == "vm_create":
            owner[ev["vm"]] = ev["process"]
        if ev["ev"] == "gpu_access":
            after = in_vram()
            for vm, n in before.items():
                if vm != ev["vm"] and after.get(vm, 0) < n:
                    cross[f"{owner[ev['vm']]} evicted {owner[vm]}"] += 1
    assert w.summary()["evictions_pressure"] > 0
    assert cross["child1 evicted child0"] > 0, cross
