"""More than one process (issue 16): each has its own address space and VMs, all share
the devices.

Kernel: a VM mirrors the mm of the process whose file created it
(drivers/gpu/drm/xe/xe_svm.c xe_svm_init() passes current->mm to drm_gpusvm_init());
a process exit tears its mm down first (kernel/exit.c do_exit(): exit_mm() ->
mm/mmap.c exit_mmap(), whose mmu_notifier_release() -> mm/mmu_notifier.c
mn_itree_release() sends MMU_NOTIFY_RELEASE, then unmap_vmas() MMU_NOTIFY_UNMAP), then
closes its files (exit_files() -> drivers/gpu/drm/xe/xe_device.c xe_file_close() ->
xe_vm_close_and_put() per VM). VRAM is the device's, so one process's migration can
evict another's range (xe_svm_bo_evict() -> drm_pagemap_evict_to_ram()).
"""

from __future__ import annotations

import errno

import pytest

from pysvm import World, XeError
from pysvm.mm.mmap import Mm
from pysvm.mm.mmu_notifier import NotifyEvent

MIB = 1 << 20
A = 0x10_0000_0000
MIRROR = {"op": "map", "addr": 0, "range": 1 << 48, "flags": ["cpu_addr_mirror"]}


def _world(vram_mib: int = 256, profile: str = "6.18") -> World:
    w = World(profile)
    w.device(name="gpu0", vram_mib=vram_mib)
    w.process_start(name="child")
    for proc in ("main", "child"):
        w.vm_create(vm=f"vm_{proc}", device="gpu0", fault_mode=True, process=proc)
        w.bind(vm=f"vm_{proc}", **MIRROR)
    return w


@pytest.mark.parametrize("profile", ["6.18", "newest"])
def test_same_address_different_data(profile: str) -> None:
    w = _world(profile=profile)
    w.mmap(addr=A, size=2 * MIB)
    w.mmap(addr=A, size=2 * MIB, process="child")
    w.cpu_write(addr=A, size=4096, value=7)
    w.cpu_write(addr=A, size=4096, value=9, process="child")
    assert w.cpu_read(addr=A, size=4096) == {"data": [7]}
    assert w.cpu_read(addr=A, size=4096, process="child") == {"data": [9]}
    # each VM's faults see its own process's pages
    assert w.gpu_access(vm="vm_main", addr=A, size=4096, op="read")["data"] == [7]
    assert w.gpu_access(vm="vm_child", addr=A, size=4096, op="read")["data"] == [9]
    w.gpu_access(vm="vm_child", addr=A, size=4096, op="write", value=11)
    assert w.cpu_read(addr=A, size=4096) == {"data": [7]}
    assert w.cpu_read(addr=A, size=4096, process="child") == {"data": [11]}
    assert w.processes["child"].mm is not w.mm
    w.check_invariants()


def test_a_vm_faults_only_in_its_own_address_space() -> None:
    w = _world()
    w.mmap(addr=A, size=2 * MIB, process="child")       # mapped in the child only
    with pytest.raises(XeError) as ei:
        w.gpu_access(vm="vm_main", addr=A, size=4096, op="write", value=1)
    assert ei.value.errno in (errno.EFAULT, errno.ENOENT)
    assert w.gpu_access(vm="vm_child", addr=A, size=4096, op="write", value=1)["faults"] == 1
    assert w.cpu_read(addr=A, size=4096, process="child") == {"data": [1]}
    with pytest.raises(XeError) as ei:
        w.cpu_read(addr=A, size=4096)                    # main has nothing there
    assert ei.value.errno == errno.EFAULT


def test_munmap_in_one_process_does_not_touch_the_other() -> None:
    w = _world()
    for proc in ("main", "child"):
        w.mmap(addr=A, size=2 * MIB, process=proc)
        w.gpu_access(vm=f"vm_{proc}", addr=A, size=4096, op="write", value=5)
    w.munmap(addr=A, size=2 * MIB, process="child")
    w.run_workers()
    assert [r["unmapped"] for r in w.ranges(vm="vm_main")["ranges"]] == [False]
    assert w.ranges(vm="vm_child")["ranges"] == []
    assert w.gpu_access(vm="vm_main", addr=A, size=4096, op="read") == {
        "faults": 0, "retries": 0, "data": [5]}


@pytest.mark.parametrize("profile", ["6.18", "newest"])
def test_one_process_migration_evicts_the_others_range_and_keeps_its_data(
        profile: str) -> None:
    """Two 2 MiB SVM ranges fill the 4 MiB of VRAM; the child's third migration evicts the
    least recently used range, main's, whose value comes back intact."""
    w = _world(vram_mib=4, profile=profile)
    w.mmap(addr=A, size=4 * MIB)
    w.mmap(addr=A, size=4 * MIB, process="child")
    w.cpu_write(addr=A, size=4 * MIB, value=100)
    w.cpu_write(addr=A, size=4 * MIB, value=200, process="child")
    w.gpu_access(vm="vm_main", addr=A, size=4096, op="atomic")
    w.gpu_access(vm="vm_child", addr=A, size=4096, op="atomic")
    assert [r["location"] for r in w.ranges(vm="vm_main")["ranges"]] == ["gpu0"]
    w.gpu_access(vm="vm_child", addr=A + 2 * MIB, size=4096, op="atomic")
    assert w.summary()["evictions_pressure"] == 1
    assert [r["location"] for r in w.ranges(vm="vm_main")["ranges"]] == ["system"]
    assert [r["location"] for r in w.ranges(vm="vm_child")["ranges"]] == ["gpu0", "gpu0"]
    assert w.cpu_read(addr=A, size=8192) == {"data": [101, 100]}
    assert w.cpu_read(addr=A, size=8192, process="child") == {"data": [201, 200]}
    assert w.cpu_read(addr=A + 2 * MIB, size=4096, process="child") == {"data": [201]}
    # main's GPU view faults again and sees its own value
    assert w.gpu_access(vm="vm_main", addr=A, size=4096, op="read")["data"] == [101]
    w.check_invariants()


def test_exit_tears_the_address_space_down_then_closes_the_vms() -> None:
    w = _world(vram_mib=4)
    w.mmap(addr=A, size=4 * MIB, process="child")
    w.gpu_access(vm="vm_child", addr=A, size=4096, op="atomic")
    w.gpu_access(vm="vm_child", addr=A + 2 * MIB, size=4096, op="atomic")
    vram = w.devices["gpu0"].vram
    assert vram is not None and vram.used == 4 * MIB
    child_mm = w.processes["child"].mm
    assert w.process_exit(process="child") == {"unmapped": 4 * MIB, "vms_closed": 1}
    assert vram.used == 0                       # the freed device pages gave VRAM back
    assert not child_mm.alive and not list(child_mm.vmas())
    assert child_mm.notifier_count() == 0       # the VM's close removed its notifiers
    assert "vm_child" not in w.vms and "child" not in w.processes
    assert w.summary()["processes_exited"] == 1
    for call in (lambda: w.cpu_read(addr=A, size=4096, process="child"),
                 lambda: w.mmap(addr=A, size=4096, process="child"),
                 lambda: w.vm_create(vm="v2", device="gpu0", process="child"),
                 lambda: w.process_exit(process="child")):
        with pytest.raises(XeError) as ei:
            call()
        assert ei.value.errno == errno.ESRCH
    with pytest.raises(XeError) as ei:
        w.gpu_access(vm="vm_child", addr=A, size=4096, op="read")
    assert ei.value.errno == errno.ENOENT
    w.run_workers()                             # the GC work the UNMAP queued runs harmlessly
    w.check_invariants()
    # main is untouched and its VM still works
    w.mmap(addr=A, size=2 * MIB)
    assert w.gpu_access(vm="vm_main", addr=A, size=4096, op="write", value=3)["faults"] == 1
    assert w.teardown() == {"leftovers": []}


def test_exit_sends_release_then_unmap() -> None:
    """mm/mmap.c exit_mmap(): MMU_NOTIFY_RELEASE over everything, then UNMAP per VMA."""
    mm = Mm()
    mm.mmap(A, 8192)
    mm.mmap(A + 4 * MIB, 4096)
    seen: list[tuple[int, int, NotifyEvent]] = []
    mm.interval_notifier_insert(0, 1 << 48,
                                lambda n, r, seq: seen.append((r.start, r.end, r.event)))
    mm.cpu_write(A, 8192, 1)
    assert mm.exit_mmap() == 8192 + 4096
    assert seen == [(0, 1 << 64, NotifyEvent.RELEASE), (A, A + 8192, NotifyEvent.UNMAP),
                    (A + 4 * MIB, A + 4 * MIB + 4096, NotifyEvent.UNMAP)]
    assert not mm.alive and mm.page_at(A) is None and mm.find_vma(A) is None
    assert mm.exit_mmap() == 0


def test_refusals_change_nothing() -> None:
    w = _world()
    before = (dict(w.processes), dict(w.vms))
    with pytest.raises(XeError) as ei:
        w.process_start(name="child")
    assert ei.value.errno == errno.EEXIST
    with pytest.raises(XeError) as ei:
        w.vm_create(vm="v", device="gpu0", fault_mode=True, process="nobody")
    assert ei.value.errno == errno.ESRCH
    with pytest.raises(XeError) as ei:
        w.invalidate(addr=A, size=4096, process="nobody")
    assert ei.value.errno == errno.ESRCH
    with pytest.raises(XeError) as ei:
        w.process_exit(process="nobody")
    assert ei.value.errno == errno.ESRCH
    assert (dict(w.processes), dict(w.vms)) == before
    assert w.summary()["errors"] == 4


def test_vm_destroy_forgets_the_vm_so_exit_closes_nothing_twice() -> None:
    w = _world()
    w.vm_destroy(vm="vm_child")
    assert w.processes["child"].vms == []
    assert w.process_exit(process="child") == {"unmapped": 0, "vms_closed": 0}
    w.vm_create(vm="vm_child", device="gpu0", fault_mode=True)   # the name is free again
    assert w.processes["main"].vms == ["vm_main", "vm_child"]


def test_main_can_exit_and_a_name_can_start_again() -> None:
    w = _world()
    w.mmap(addr=A, size=4096)
    assert w.process_exit(process="main") == {"unmapped": 4096, "vms_closed": 1}
    with pytest.raises(XeError) as ei:
        w.cpu_read(addr=A, size=4096)          # events naming no process act in main
    assert ei.value.errno == errno.ESRCH
    w.process_start(name="main")
    w.mmap(addr=A, size=4096)
    assert w.cpu_read(addr=A, size=4096) == {"data": [0]}   # a fresh, empty address space
    assert w.mm is w.processes["main"].mm


def _two_process_events() -> list[dict[str, object]]:
    evs: list[dict[str, object]] = [
        {"ev": "device", "name": "gpu0", "vram_mib": 4},
        {"ev": "process_start", "name": "child"},
        {"ev": "process_start", "name": "child"},                 # EEXIST
        {"ev": "cpu_read", "addr": A, "size": 4096, "process": "ghost"},   # ESRCH
    ]
    for proc in ("main", "child"):
        evs += [{"ev": "vm_create", "vm": f"vm_{proc}", "device": "gpu0", "fault_mode": True,
                 "process": proc},
                {"ev": "bind", "vm": f"vm_{proc}", **MIRROR},
                {"ev": "mmap", "addr": A, "size": 4 * MIB, "process": proc},
                {"ev": "cpu_write", "addr": A, "size": 4 * MIB,
                 "value": 100 if proc == "main" else 200, "process": proc}]
    evs += [{"ev": "gpu_access", "vm": "vm_main", "addr": A, "size": 4096, "op": "atomic"},
            {"ev": "gpu_access", "vm": "vm_child", "addr": A, "size": 4096, "op": "atomic"},
            {"ev": "gpu_access", "vm": "vm_child", "addr": A + 2 * MIB, "size": 4096,
             "op": "write", "value": 7},
            {"ev": "gpu_access", "vm": "vm_main", "addr": A, "size": 8192, "op": "read"},
            {"ev": "cpu_read", "addr": A, "size": 8192, "process": "child"},
            {"ev": "process_exit", "process": "child"},
            {"ev": "cpu_read", "addr": A, "size": 8192},
            {"ev": "munmap", "addr": A, "size": 4 * MIB},
            {"ev": "run_workers"},
            {"ev": "teardown"}]
    return evs


def test_the_fuzz_oracle_checks_each_process_against_its_own_shadow() -> None:
    from pysvm.fuzz.target import check_events

    assert check_events(_two_process_events()) is None


def test_the_fuzz_oracle_catches_a_process_mix_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted bug: every event acts in main's address space whatever it names."""
    from pysvm.fuzz.target import check_events

    real = World.process_by_name
    monkeypatch.setattr(World, "process_by_name",
                        lambda self, name: real(self, name) and real(self, "main"))
    fail = check_events(_two_process_events())
    assert fail is not None and fail.kind == "data", fail
