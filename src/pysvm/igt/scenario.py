"""A scenario: the trace events one IGT subtest issues, with the checks IGT makes.

The model holds one integer per 4 KiB page (docs/trace-format.md), so a
scenario keeps a shadow of every page it mapped: what the page must read back
after each CPU store, GPU store and GPU atomic. Every check compares the
model's answer with that shadow; a GPU store whose IGT counterpart is read back
by the CPU gets a ``cpu_read`` step that must return exactly the shadow value.

Steps carry the results IGT accepts (``want``) and, where IGT gives up without
failing (a fence that times out on purpose, then ``goto cleanup``), the results
that end the scenario as passed (``stop_on``).

A child process (:meth:`Scenario.process`) is a :class:`ProcessScenario`: its
steps go into the parent's list, naming the process in every event that acts in
an address space (``vm_create`` included: the VM mirrors its creator's address
space), and it keeps its own address-space layout and page shadow.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PAGE", "ANY_ERROR", "Step", "Scenario", "ProcessScenario", "AddressSpace",
           "PROCESS_EVENTS"]

PAGE = 4096
#: ``stop_on`` value: any non-ok result ends the scenario (IGT accepts every failure).
ANY_ERROR = ("*",)
#: The events that act in one process's address space (their ``process`` field).
PROCESS_EVENTS = frozenset({"mmap", "munmap", "mremap", "mprotect", "cpu_write", "cpu_read",
                            "invalidate", "vm_create"})
#: Largest value a trace event accepts for a page.
_VALUE_MASK = (1 << 62) - 1


def page_span(addr: int, size: int) -> tuple[int, int]:
    """The page-aligned ``(start, size)`` covering ``[addr, addr + size)``."""
    start = addr & ~(PAGE - 1)
    end = (addr + max(size, 1) + PAGE - 1) & ~(PAGE - 1)
    return start, end - start


@dataclass(frozen=True)
class Step:
    """One trace event and what IGT accepts from it."""

    ev: dict[str, Any]
    want: tuple[str, ...] = ("ok",)
    data: tuple[int, ...] | None = None
    stop_on: tuple[str, ...] = ()
    why: str = ""
    #: For a ``query``: the pat_index every reported VMA must carry.
    pat: int | None = None
    #: For a ``gpu_access``: the number of GPU faults IGT expects (None: any).
    faults: int | None = None
    #: For an ``mremap``: the address the call must return (None: any).
    addr: int | None = None


@dataclass
class AddressSpace:
    """Where a scenario places its CPU allocations (a bump allocator with guard gaps).

    Kernel: get_unmapped_area() picks a free gap; any free gap gives the same
    behaviour in the model, so addresses only need to be distinct and aligned.
    ``heap`` holds small allocations glibc keeps after free() (reused by the
    next allocation of the same size and alignment).
    """

    next_addr: int = 0x10_0000_0000
    heap: dict[tuple[int, int], list[int]] = field(default_factory=dict)

    def reserve(self, size: int, align: int = PAGE) -> int:
        align = max(align, PAGE)
        addr = (self.next_addr + align - 1) & ~(align - 1)
        self.next_addr = addr + page_span(0, size)[1] + 0x20_0000   # 2 MiB guard gap
        return addr


class Scenario:
    """The steps of one subtest and the page shadow used to derive their checks."""

    def __init__(self, profile: str) -> None:
        self.profile = profile
        self.steps: list[Step] = []
        self.mem: dict[int, int] = {}
        self.aspace = AddressSpace()
        self.counter = 0
        self.serial = 0
        self.noop = False
        self.add({"ev": "config", "profile": profile})

    # -- bookkeeping -------------------------------------------------------
    def add(self, ev: dict[str, Any], *, want: Iterable[str] = ("ok",),
            data: Iterable[int] | None = None, stop_on: Iterable[str] = (),
            why: str = "", pat: int | None = None, faults: int | None = None,
            addr: int | None = None) -> None:
        self.steps.append(Step(ev, tuple(want), None if data is None else tuple(data),
                               tuple(stop_on), why, pat, faults, addr))

    def fresh(self, idx: int = 0) -> int:
        """A new value to store (IGT: a random number shifted left 12, or'ed with the index)."""
        self.counter += 1
        return ((self.counter * 0x9E3779B1) << 12 | (idx & 0xFFF)) & _VALUE_MASK

    def name(self, prefix: str) -> str:
        """A new object name (``vm0``, ``bo1``, ...), unique in this scenario."""
        self.serial += 1
        return f"{prefix}{self.serial}"

    def _pages(self, addr: int, size: int) -> range:
        start, n = page_span(addr, size)
        return range(start // PAGE, (start + n) // PAGE)

    # -- setup -------------------------------------------------------------
    def device(self, name: str = "gpu0", vram_mib: int = 256, **extra: Any) -> None:
        self.add({"ev": "device", "name": name, "vram_mib": vram_mib, **extra})

    def vm(self, name: str, device: str = "gpu0") -> str:
        self.add({"ev": "vm_create", "vm": name, "device": device, "fault_mode": True})
        return name

    def bind_mirror(self, vm: str, addr: int = 0, size: int = 1 << 48, *,
                    want: Iterable[str] = ("ok",), why: str = "") -> None:
        self.add({"ev": "bind", "vm": vm, "op": "map", "addr": addr, "range": size,
                  "flags": ["cpu_addr_mirror"]}, want=want, why=why)

    def unbind(self, vm: str, addr: int = 0, size: int = 1 << 48, *,
               want: Iterable[str] = ("ok",), why: str = "") -> None:
        self.add({"ev": "bind", "vm": vm, "op": "unmap", "addr": addr, "range": size},
                 want=want, why=why)

    def bo(self, name: str, size: int, placement: list[str], device: str = "gpu0") -> None:
        self.add({"ev": "bo_create", "bo": name, "device": device, "size": size,
                  "placement": placement})

    def bind_bo(self, vm: str, bo: str, addr: int, size: int, offset: int = 0) -> None:
        self.add({"ev": "bind", "vm": vm, "op": "map", "addr": addr, "range": size,
                  "bo": bo, "offset": offset})

    def madvise(self, vm: str, addr: int, size: int, kind: str, *,
                want: Iterable[str] = ("ok",), why: str = "", **fields: Any) -> None:
        self.add({"ev": "madvise", "vm": vm, "addr": addr, "range": size, "type": kind,
                  **fields}, want=want, why=why)

    def prefetch(self, vm: str, addr: int, size: int, region: str, *,
                 want: Iterable[str] = ("ok",), why: str = "") -> None:
        start, n = page_span(addr, size)
        self.add({"ev": "prefetch", "vm": vm, "addr": start, "range": n, "region": region},
                 want=want, why=why)

    # -- CPU ---------------------------------------------------------------
    def mmap(self, addr: int, size: int, *, shared: bool = False, file: bool = False) -> None:
        """MAP_FIXED mmap(); ``shared`` is MAP_SHARED|MAP_ANONYMOUS (shmem), ``file`` a file."""
        start, n = page_span(addr, size)
        ev: dict[str, Any] = {"ev": "mmap", "addr": start, "size": n}
        if shared:
            ev["shared"] = True
        if file:
            ev["file"] = True
        self.add(ev)
        for p in self._pages(start, n):
            self.mem[p] = 0

    def munmap(self, addr: int, size: int) -> None:
        start, n = page_span(addr, size)
        self.add({"ev": "munmap", "addr": start, "size": n})
        for p in self._pages(start, n):
            self.mem.pop(p, None)

    def mremap(self, old: int, size: int, new: int, *, dontunmap: bool = False,
               why: str = "") -> None:
        """mremap(old, size, size, MREMAP_MAYMOVE | MREMAP_FIXED [| MREMAP_DONTUNMAP], new),
        which must return ``new``: every page's value moves to the same offset from
        ``new``; with ``dontunmap`` the old span stays mapped, empty (zero pages)."""
        start, n = page_span(old, size)
        dst = page_span(new, size)[0]
        flags = ["maymove", "fixed", *(["dontunmap"] if dontunmap else [])]
        self.add({"ev": "mremap", "addr": start, "old_size": n, "new_size": n, "flags": flags,
                  "new_addr": dst}, why=why, addr=dst)
        moved = {p: self.mem.pop(p) for p in self._pages(start, n) if p in self.mem}
        for p in self._pages(dst, n):
            self.mem.pop(p, None)
        shift = (dst - start) // PAGE
        for p, v in moved.items():
            self.mem[p + shift] = v
            if dontunmap:
                self.mem[p] = 0

    def mprotect(self, addr: int, size: int, *, read_only: bool, why: str = "") -> None:
        """mprotect(addr, size, PROT_READ [| PROT_WRITE]); page contents do not change."""
        start, n = page_span(addr, size)
        self.add({"ev": "mprotect", "addr": start, "size": n, "read_only": read_only}, why=why)

    def cpu_write(self, addr: int, size: int, value: int, why: str = "") -> None:
        start, n = page_span(addr, size)
        self.add({"ev": "cpu_write", "addr": start, "size": n, "value": value}, why=why)
        for p in self._pages(start, n):
            self.mem[p] = value

    def cpu_touch(self, addr: int, size: int, why: str = "") -> None:
        """A CPU store that leaves the checked dword as it is (writing a batch next to it)."""
        pages = list(self._pages(addr, size))
        run: list[int] = []
        for p in pages + [-1]:
            if run and (p != run[-1] + 1 or self.mem.get(p) != self.mem.get(run[0])):
                self.cpu_write(run[0] * PAGE, len(run) * PAGE, self.mem.get(run[0], 0), why)
                run = []
            if p >= 0:
                run.append(p)

    def cpu_check(self, addr: int, size: int, why: str = "") -> None:
        start, n = page_span(addr, size)
        want = [self.mem.get(p, 0) for p in self._pages(start, n)]
        self.add({"ev": "cpu_read", "addr": start, "size": n}, data=want, why=why)

    # -- GPU ---------------------------------------------------------------
    def gpu(self, vm: str, op: str, addr: int, size: int = 1, value: int = 0, *,
            want: Iterable[str] = ("ok",), stop_on: Iterable[str] = (),
            check_read: bool = True, faults: int | None = None, why: str = "") -> None:
        start, n = page_span(addr, size)
        ev: dict[str, Any] = {"ev": "gpu_access", "vm": vm, "addr": start, "size": n, "op": op}
        if op == "write":
            ev["value"] = value
        wanted = tuple(want)
        data = None
        if op == "read" and check_read and wanted == ("ok",):
            data = [self.mem.get(p, 0) for p in self._pages(start, n)]
        self.add(ev, want=wanted, data=data, stop_on=stop_on, why=why, faults=faults)
        if "ok" in wanted:
            for p in self._pages(start, n):
                if op == "write":
                    self.mem[p] = value
                elif op == "atomic":
                    self.mem[p] = self.mem.get(p, 0) + 1

    def query(self, vm: str, addr: int, size: int, *, pat: int | None = None,
              why: str = "") -> None:
        self.add({"ev": "query", "vm": vm, "addr": addr, "range": size}, why=why, pat=pat)

    def inject(self, at: str, ev: dict[str, Any], why: str = "") -> None:
        self.add({"ev": "inject", "at": at, "event": ev}, why=why)

    def events(self) -> list[dict[str, Any]]:
        return [s.ev for s in self.steps]

    # -- processes -----------------------------------------------------------
    def process(self, name: str) -> ProcessScenario:
        """Start child process ``name`` (a ``process_start`` step) and return the view
        its steps go through."""
        self.add({"ev": "process_start", "name": name})
        return ProcessScenario(self, name)


class ProcessScenario(Scenario):
    """The steps of one child process: its own address space (the same layout as its
    parent's, so its allocations land at the same addresses) and its own page shadow;
    values, names and the step list are its parent's."""

    def __init__(self, parent: Scenario, process: str) -> None:
        # Not Scenario.__init__: that would add a config step.
        self.parent = parent
        self.process_name = process
        self.profile = parent.profile
        self.steps = parent.steps
        self.mem = {}
        self.aspace = AddressSpace()
        self.counter = 0
        self.serial = 0
        self.noop = False

    def add(self, ev: dict[str, Any], *, want: Iterable[str] = ("ok",),
            data: Iterable[int] | None = None, stop_on: Iterable[str] = (),
            why: str = "", pat: int | None = None, faults: int | None = None,
            addr: int | None = None) -> None:
        ev = self._in_process(ev)
        if ev["ev"] == "inject":
            ev = {**ev, "event": self._in_process(ev["event"])}
        self.parent.add(ev, want=want, data=data, stop_on=stop_on, why=why, pat=pat,
                        faults=faults, addr=addr)

    def _in_process(self, ev: dict[str, Any]) -> dict[str, Any]:
        return {**ev, "process": self.process_name} if ev["ev"] in PROCESS_EVENTS else ev

    def fresh(self, idx: int = 0) -> int:
        return self.parent.fresh(idx)

    def name(self, prefix: str) -> str:
        return self.parent.name(prefix)

    def exit(self, why: str = "") -> None:
        """The process exits (its address space torn down, its files closed)."""
        self.parent.add({"ev": "process_exit", "process": self.process_name}, why=why)
        self.mem.clear()
