"""Helpers for the SVM tests (not a test module).

:class:`Sim` drives a simulated machine through trace events and checks,
after every single event, everything :class:`pysvm.fuzz.target.SvmChecker` checks:
the shadow copy of every page against the CPU page table and every read,
``Svm.check_invariants()`` (no GPU mapping of memory the CPU no longer maps,
no range outside a CPU-mirror VMA), the VRAM accounting, the pagemap
lifetime invariants, the attribute reset after every garbage collection, and
that failed faults carry a documented errno. So data integrity is asserted
after every step of every test that uses it.
"""

from __future__ import annotations

from typing import Any

import pytest

from pysvm.fuzz.oracle import Fail as _Fail
from pysvm.fuzz.oracle import SvmChecker
from pysvm.mm.mmap import Mm
from pysvm.world import World
from pysvm.xe.pagefault import FaultStats
from pysvm.xe.svm import Svm
from pysvm.xe.vm import Vm

K = 4096          # one page
M = 1 << 20
SZ_64K = 64 << 10
SZ_2M = 2 * M
MIRROR = 1 << 47
#: A 2 MiB-aligned place for test buffers.
BUF = 1 << 30
POINTS = ("fault.start", "fault.after_find_range", "fault.after_migrate",
          "fault.after_get_pages", "fault.before_bind")


class Sim:
    """One machine: devices, a fault-mode VM ``vm0`` on ``gpu0`` mirroring all of [0, 2^47)."""

    def __init__(self, profile: str = "6.18", *, vram_mib: int = 64, devices: int = 1,
                 link: bool = False, autoreset: bool = False, smem_atomics: bool | None = None,
                 discrete: bool = True, guard: int | None = 1000) -> None:
        self.checker = SvmChecker()
        self.ev({"ev": "config", "profile": profile})
        for i in range(devices):
            dev: dict[str, Any] = {"ev": "device", "name": f"gpu{i}", "discrete": discrete}
            if smem_atomics is not None:        # else the platform's default
                dev["smem_atomics"] = smem_atomics
            dev["vram_mib"] = vram_mib if discrete else 0
            self.ev(dev)
        if link:
            self.ev({"ev": "link", "a": "gpu0", "b": "gpu1"})
        self.ev({"ev": "vm_create", "vm": "vm0", "device": "gpu0", "fault_mode": True})
        flags = ["cpu_addr_mirror"] + (["autoreset"] if autoreset else [])
        self.ev({"ev": "bind", "vm": "vm0", "op": "map", "addr": 0, "range": MIRROR,
                 "flags": flags, "pat_index": 0})
        if guard:
            self.ev({"ev": "fault_guard", "vm": "vm0", "max_iterations": guard})

    # -- events -------------------------------------------------------------

    def ev(self, ev: dict[str, Any]) -> dict[str, Any]:
        """Execute one event with every check; a broken check fails the test."""
        try:
            return self.checker.step(ev)
        except _Fail as f:
            pytest.fail(f"{ev}: {f.kind}: {f}")

    def ok(self, ev: dict[str, Any]) -> dict[str, Any]:
        out = self.ev(ev)
        assert out["result"] == "ok", out
        return out

    def mmap(self, addr: int, size: int) -> None:
        self.ok({"ev": "mmap", "addr": addr, "size": size})

    def munmap(self, addr: int, size: int) -> None:
        self.ok({"ev": "munmap", "addr": addr, "size": size})

    def cpu_write(self, addr: int, size: int, value: int) -> None:
        self.ok({"ev": "cpu_write", "addr": addr, "size": size, "value": value})

    def cpu_read(self, addr: int, size: int = K) -> list[int]:
        data: list[int] = self.ok({"ev": "cpu_read", "addr": addr, "size": size})["data"]
        return data

    def gpu(self, op: str, addr: int, size: int = K, value: int = 0,
            vm: str = "vm0") -> dict[str, Any]:
        ev: dict[str, Any] = {"ev": "gpu_access", "vm": vm, "addr": addr, "size": size,
                              "op": op}
        if op == "write":
            ev["value"] = value
        return self.ev(ev)

    def madvise(self, addr: int, size: int, typ: str, **kw: Any) -> dict[str, Any]:
        return self.ev({"ev": "madvise", "vm": "vm0", "addr": addr, "range": size,
                        "type": typ, **kw})

    def inject(self, at: str, event: dict[str, Any]) -> None:
        self.ok({"ev": "inject", "at": at, "event": event})

    def ranges(self) -> list[dict[str, Any]]:
        r: list[dict[str, Any]] = self.ok({"ev": "ranges", "vm": "vm0"})["ranges"]
        return r

    def spans(self) -> list[tuple[int, int, str]]:
        """(addr, size, location) of every SVM range."""
        return [(r["addr"], r["range"], r["location"]) for r in self.ranges()]

    def query(self, addr: int, size: int) -> list[dict[str, Any]]:
        v: list[dict[str, Any]] = self.ok({"ev": "query", "vm": "vm0", "addr": addr,
                                           "range": size})["vmas"]
        return v

    def gc(self) -> bool:
        return bool(self.ok({"ev": "gc", "vm": "vm0"})["eagain"])

    # -- objects --------------------------------------------------------------

    @property
    def world(self) -> World:
        return self.checker.engine.world

    @property
    def vm(self) -> Vm:
        return self.world.vms["vm0"]

    @property
    def svm(self) -> Svm:
        s: Svm = self.vm.svm
        return s

    @property
    def mm(self) -> Mm:
        m: Mm = self.world.mm
        return m

    def last_fault(self) -> FaultStats:
        return self.svm.fault_log[-1]

    def shadow(self, addr: int) -> int:
        return self.checker.shadow[addr]


def attrs(vma: dict[str, Any]) -> dict[str, Any]:
    a: dict[str, Any] = vma["attrs"]
    return a


DEFAULT_ATTRS = {"devmem_fd": 0, "migration_policy": 0, "atomic": 0, "pat_index": 0,
                 "default_pat_index": 0}
