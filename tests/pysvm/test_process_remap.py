"""mremap() and mprotect() in more than one process.

Kernel: both act on the calling task's address space (mm/mremap.c do_mremap() and
mm/mprotect.c do_mprotect_pkey() take current->mm), so only the interval notifiers of
that mm hear the MMU_NOTIFY_UNMAP / MMU_NOTIFY_PROTECTION_VMA: a VM mirrors the mm of the
process that created it (drivers/gpu/drm/xe/xe_svm.c xe_svm_init() hands current->mm to
drm_gpusvm_init()). A userptr bind pins and watches pages of the binding process's mm
(drivers/gpu/drm/xe/xe_userptr.c xe_userptr_setup(), xe_vma_userptr_pin_pages()).
"""

from __future__ import annotations

import errno
from typing import Any

import pytest

from pysvm import World, XeError

MIB = 1 << 20
A = 0x10_0000_0000
B = 0x20_0000_0000
MIRROR = {"op": "map", "addr": 0, "range": 1 << 48, "flags": ["cpu_addr_mirror"]}
MOVE = ["maymove", "fixed"]


def _world(profile: str = "6.18") -> World:
    w = World(profile)
    w.device(name="gpu0", vram_mib=64)
    w.process_start(name="child")
    for proc in ("main", "child"):
        w.vm_create(vm=f"vm_{proc}", device="gpu0", fault_mode=True, process=proc)
        w.bind(vm=f"vm_{proc}", **MIRROR)
        w.mmap(addr=A, size=2 * MIB, process=proc)
        w.cpu_write(addr=A, size=4096, value=1 if proc == "main" else 2, process=proc)
        w.gpu_access(vm=f"vm_{proc}", addr=A, size=4096, op="read")
    return w


def _ranges(w: World, vm: str) -> list[tuple[int, bool]]:
    return [(r["addr"], r["unmapped"]) for r in w.ranges(vm=vm)["ranges"]]


@pytest.mark.parametrize("profile", ["6.18", "newest"])
def test_mremap_moves_only_the_named_process_pages(profile: str) -> None:
    w = _world(profile)
    main_ranges = _ranges(w, "vm_main")
    assert w.mremap(addr=A, old_size=2 * MIB, new_size=2 * MIB, flags=MOVE, new_addr=B,
                    process="child") == {"addr": B}
    assert w.cpu_read(addr=B, size=4096, process="child") == {"data": [2]}
    with pytest.raises(XeError) as ei:
        w.cpu_read(addr=A, size=4096, process="child")
    assert ei.value.errno == errno.EFAULT
    # main's mapping, page and GPU range are untouched; the child's range was unmapped
    assert w.cpu_read(addr=A, size=4096) == {"data": [1]}
    assert _ranges(w, "vm_main") == main_ranges == [(A, False)]
    assert (A, True) in _ranges(w, "vm_child")
    assert w.gpu_access(vm="vm_child", addr=B, size=4096, op="read")["data"] == [2]
    w.check_invariants()


def test_mprotect_makes_only_the_named_process_read_only() -> None:
    w = _world()
    w.mprotect(addr=A, size=4096, read_only=True, process="child")
    with pytest.raises(XeError) as ei:
        w.cpu_write(addr=A, size=4096, value=5, process="child")
    assert ei.value.errno == errno.EFAULT
    with pytest.raises(XeError) as ei:
        w.gpu_access(vm="vm_child", addr=A, size=4096, op="write", value=5)
    assert ei.value.errno == errno.EPERM
    w.cpu_write(addr=A, size=4096, value=5)                  # main's page stays writable
    w.gpu_access(vm="vm_main", addr=A, size=4096, op="write", value=6)
    assert w.cpu_read(addr=A, size=4096) == {"data": [6]}
    assert w.cpu_read(addr=A, size=4096, process="child") == {"data": [2]}


def test_a_process_that_is_not_live_is_esrch_and_nothing_changes() -> None:
    w = _world()
    before = w.summary()["errors"]
    for call in (lambda: w.mremap(addr=A, old_size=4096, new_size=4096, flags=MOVE,
                                  new_addr=B, process="nobody"),
                 lambda: w.mprotect(addr=A, size=4096, read_only=True, process="nobody")):
        with pytest.raises(XeError) as ei:
            call()
        assert ei.value.errno == errno.ESRCH
    assert w.summary()["errors"] == before + 2
    for proc, value in (("main", 1), ("child", 2)):
        w.cpu_write(addr=A, size=4096, value=value + 10, process=proc)   # still writable
        assert w.cpu_read(addr=A, size=4096, process=proc) == {"data": [value + 10]}


def test_a_userptr_bind_pins_the_binding_process_pages() -> None:
    w = World()
    w.device(name="gpu0", vram_mib=64)
    w.process_start(name="child")
    w.vm_create(vm="vm_child", device="gpu0", fault_mode=True, process="child")
    w.mmap(addr=A, size=64 * 1024, process="child")          # mapped in the child only
    w.cpu_write(addr=A, size=4096, value=9, process="child")
    w.bind(vm="vm_child", op="map_userptr", addr=B, range=64 * 1024, offset=A, pat_index=1)
    assert w.processes["child"].mm.notifier_count() == 1 and w.mm.notifier_count() == 0
    assert w.gpu_access(vm="vm_child", addr=B, size=4096, op="read")["data"] == [9]
    # main did not map A: its userptr bind there is EFAULT (the pin fails)
    w.vm_create(vm="vm_main", device="gpu0", fault_mode=True)
    with pytest.raises(XeError) as ei:
        w.bind(vm="vm_main", op="map_userptr", addr=B, range=64 * 1024, offset=A,
               pat_index=1)
    assert ei.value.errno == errno.EFAULT
    assert w.process_exit(process="child")["vms_closed"] == 1
    assert w.mm.notifier_count() == 0


def _events() -> list[dict[str, Any]]:
    evs: list[dict[str, Any]] = [{"ev": "device", "name": "gpu0", "vram_mib": 16},
                                 {"ev": "process_start", "name": "child"}]
    for proc in ("main", "child"):
        evs += [{"ev": "vm_create", "vm": f"vm_{proc}", "device": "gpu0", "fault_mode": True,
                 "process": proc},
                {"ev": "bind", "vm": f"vm_{proc}", **MIRROR},
                {"ev": "mmap", "addr": A, "size": 2 * MIB, "process": proc},
                {"ev": "cpu_write", "addr": A, "size": 8192,
                 "value": 100 if proc == "main" else 200, "process": proc},
                {"ev": "gpu_access", "vm": f"vm_{proc}", "addr": A, "size": 4096,
                 "op": "atomic"}]
    evs += [{"ev": "mprotect", "addr": A, "size": 2 * MIB, "read_only": True,
             "process": "child"},
            {"ev": "mremap", "addr": A, "old_size": 2 * MIB, "new_size": 2 * MIB,
             "flags": MOVE, "new_addr": B, "process": "child"},
            {"ev": "cpu_write", "addr": B, "size": 4096, "value": 7, "process": "child"},
            {"ev": "cpu_write", "addr": A, "size": 4096, "value": 8},
            {"ev": "gpu_access", "vm": "vm_child", "addr": B, "size": 8192, "op": "read"},
            {"ev": "gpu_access", "vm": "vm_child", "addr": B, "size": 4096, "op": "write",
             "value": 3},
            {"ev": "gpu_access", "vm": "vm_main", "addr": A, "size": 8192, "op": "read"},
            {"ev": "cpu_read", "addr": B, "size": 8192, "process": "child"},
            {"ev": "mprotect", "addr": B, "size": 2 * MIB, "read_only": False,
             "process": "child"},
            {"ev": "cpu_write", "addr": B, "size": 4096, "value": 7, "process": "child"},
            {"ev": "process_exit", "process": "child"},
            {"ev": "cpu_read", "addr": A, "size": 8192},
            {"ev": "munmap", "addr": A, "size": 2 * MIB},
            {"ev": "run_workers"},
            {"ev": "teardown"}]
    return evs


def test_the_fuzz_oracle_follows_each_process_moves_and_protection() -> None:
    """The child's shadow moves to B and turns read-only there (its CPU write is EFAULT,
    its GPU write EPERM), main's stays at A and writable."""
    from pysvm.fuzz.target import check_events

    assert check_events(_events()) is None


def test_the_fuzz_oracle_catches_an_mremap_in_the_wrong_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted bug: mremap and mprotect act in main's address space whatever they name."""
    from pysvm.fuzz.target import check_events

    real = World.process_by_name

    def wrong(self: World, name: str) -> Any:
        import inspect
        caller = inspect.stack()[1].function
        return real(self, "main" if caller in ("_ev_mremap", "_ev_mprotect") else name)

    monkeypatch.setattr(World, "process_by_name", wrong)
    fail = check_events(_events())
    assert fail is not None, "the oracle did not notice"
