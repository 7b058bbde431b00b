"""What every application workload shares: its options, the event driver, the shadow copy
of the data, per-phase counters and the result.

Kernel: none directly (the userspace side). Each workload module says which real
application pattern it stands for and which kernel paths it drives.

A workload, like the built-in simulation (:mod:`pysvm.sim.workload`), only *emits
trace events* and reads their outputs: :meth:`Driver.exec` hands each event to
:meth:`pysvm.World.execute`, writes it to the ``--record`` file first, and checks
every page a ``cpu_read`` or GPU ``read`` returns against the shadow. ``pysvm replay``
of the recording therefore reproduces the run's counters by construction.

Granularity: every touch covers whole 2 MiB chunks (the largest SVM range size,
``drm_gpusvm_range_chunk_size()``) or, for the random gather, a 64 KiB piece of one;
buffers are 2 MiB aligned so each chunk is one SVM range. The number of events grows
linearly with ``--size`` (one or a few per 2 MiB per pass), never per 4 KiB page.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from pysvm.sim.workload import HEAP_BASE, MIRROR_RANGE, PAGE, EventRunner
from pysvm.world import World

__all__ = [
    "CHUNK",
    "MAX_SIZE_MIB",
    "MiB",
    "SCHEMA_VERSION",
    "Buffer",
    "Driver",
    "PhaseCounters",
    "Shadow",
    "WorkloadConfig",
    "WorkloadResult",
]

MiB = 1 << 20
GiB = 1 << 30
#: One SVM range of the largest chunk size Xe registers (drm_gpusvm_init() chunk list).
CHUNK = 2 * MiB
PAGES_PER_CHUNK = CHUNK // PAGE
#: Largest --size a workload accepts (64 GiB; the shadow costs 9 bytes per 4 KiB page).
MAX_SIZE_MIB = 64 * 1024
#: Smallest --size: four 2 MiB chunks, so every workload has at least one chunk per part.
MIN_SIZE_MIB = 8
#: Version of the ``--json`` document of ``pysvm simulate`` (workloads and the default run).
SCHEMA_VERSION = 1

#: The counters reported for every run and every phase, in this order. ``evictions``
#: is the model's ``evictions_pressure``: VRAM allocations TTM evicted to make room
#: (xe_svm_bo_evict() -> drm_pagemap_evict_to_ram()).
REPORTED = ("faults", "retries", "faults_failed", "migrations_to_vram", "migrations_to_system",
            "bytes_to_vram", "bytes_to_system", "evictions", "gc_runs", "errors")

#: Results of a GPU atomic whose range could not be moved to VRAM: the fault handler's
#: own answer after its retries (xe_svm_handle_pagefault(): EBUSY, ENOMEM, 6.18 EFAULT
#: when drm_pagemap_migrate_to_devmem() collected no page; newest ETIME when the job
#: keeps faulting). Counted as kernel answers, not as workload errors.
ATOMIC_FAULT_FAILURES = ("EBUSY", "ENOMEM", "EFAULT", "ETIME")


@dataclass(frozen=True)
class WorkloadConfig:
    """Options of one application workload run (``pysvm simulate --workload NAME``).

    Kernel: none (userspace workload parameters).

    ``vram_mib`` 0 means the workload's own default (see its ``default_vram_mib``);
    ``passes`` 0 means its default number of passes / rounds / iterations.
    """

    workload: str
    size_mib: int = 64
    seed: int = 1
    profile: str = "6.18"
    vram_mib: int = 0
    passes: int = 0

    def validate(self) -> None:
        """Raise ValueError with one clear sentence for an impossible configuration."""
        if not MIN_SIZE_MIB <= self.size_mib <= MAX_SIZE_MIB or self.size_mib % 2:
            raise ValueError(f"--size must be an even number of MiB in [{MIN_SIZE_MIB}, "
                             f"{MAX_SIZE_MIB}] for a workload, got {self.size_mib}")
        if self.profile not in ("6.18", "newest"):
            raise ValueError(f"unknown profile {self.profile!r}; choose 6.18 or newest")
        if not 0 <= self.vram_mib <= 1 << 20:
            raise ValueError(f"--vram-mib must be in [1, 1048576], got {self.vram_mib}")
        if not 0 <= self.passes <= 1000:
            raise ValueError(f"--passes must be in [1, 1000], got {self.passes}")
        if not 0 <= self.seed < 1 << 63:
            raise ValueError(f"--seed must be in [0, 2^63), got {self.seed}")

    @property
    def size(self) -> int:
        return self.size_mib * MiB


@dataclass(frozen=True)
class Buffer:
    """A 2 MiB-aligned buffer the application mmapped: ``chunks`` 2 MiB chunks at ``addr``."""

    addr: int
    chunks: int

    @property
    def size(self) -> int:
        return self.chunks * CHUNK

    def chunk(self, i: int) -> int:
        """The address of chunk ``i``."""
        return self.addr + i * CHUNK


class Shadow:
    """The workload's own copy of every heap page's value (numpy, one int64 per 4 KiB page).

    ``known[p]`` is False where the value cannot be predicted (after a GPU write the
    engine refused half-way); such pages are rewritten before they are read again.
    """

    def __init__(self, base: int, size: int) -> None:
        self.base = base
        n = size // PAGE
        self.value: npt.NDArray[np.int64] = np.zeros(n, dtype=np.int64)
        self.known: npt.NDArray[np.bool_] = np.ones(n, dtype=np.bool_)

    def _span(self, addr: int, size: int) -> slice:
        p = (addr - self.base) // PAGE
        return slice(p, p + size // PAGE)

    def write(self, addr: int, size: int, value: int) -> None:
        s = self._span(addr, size)
        self.value[s] = value
        self.known[s] = True

    def atomic_inc(self, addr: int, size: int) -> None:
        self.value[self._span(addr, size)] += 1

    def forget(self, addr: int, size: int) -> None:
        self.known[self._span(addr, size)] = False

    def check(self, addr: int, data: list[int]) -> tuple[int, list[str]]:
        """Compare read data with the shadow: (pages checked, first mismatch messages)."""
        s = self._span(addr, len(data) * PAGE)
        got = np.asarray(data, dtype=np.int64)
        want, known = self.value[s], self.known[s]
        bad = np.flatnonzero(known & (got != want))
        msgs = [f"page {addr + int(k) * PAGE:#x}: read {int(got[k])}, last written "
                f"{int(want[k])}" for k in bad[:5]]
        if len(bad) > 5:
            msgs.append(f"... and {len(bad) - 5} more pages in this read")
        return int(known.sum()), msgs


@dataclass
class PhaseCounters:
    """The counters one phase of a workload changed (differences of the engine summary)."""

    name: str
    events: int = 0
    counters: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "events": self.events, "counters": self.counters}


def reported(summary: dict[str, int]) -> dict[str, int]:
    """The :data:`REPORTED` counters out of an engine summary (0 when absent)."""
    out = {k: int(summary.get(k, 0)) for k in REPORTED}
    out["evictions"] = int(summary.get("evictions_pressure", 0))
    return out


@dataclass
class WorkloadResult:
    """What a workload run produced.

    Kernel: none.
    """

    config: WorkloadConfig
    vram_mib: int
    devices: int
    working_set: int
    passes: int
    engine_summary: dict[str, int]
    phases: list[PhaseCounters]
    sim: dict[str, Any]
    stats: dict[str, int]
    mismatches: list[str]
    unexpected: list[str]
    #: Tiles per device (``vram_mib`` is each tile's).
    tiles: int = 1

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.unexpected

    @property
    def counters(self) -> dict[str, int]:
        return reported(self.engine_summary)

    @property
    def thrash_ratio(self) -> float:
        """Bytes migrated both ways over the working set (1.0: each byte moved once)."""
        c = self.counters
        return round((c["bytes_to_vram"] + c["bytes_to_system"]) / self.working_set, 4)

    def as_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "workload": self.config.workload,
            "config": {**asdict(self.config), "vram_mib": self.vram_mib,
                       "passes": self.passes, "devices": self.devices,
                       "tiles": self.tiles},
            "working_set_bytes": self.working_set,
            "counters": {**self.counters, "thrash_ratio": self.thrash_ratio},
            "phases": [p.as_json() for p in self.phases],
            "summary": self.engine_summary,
            "simulation": self.sim,
            "workload_stats": self.stats,
            "integrity": "verified" if not self.mismatches else "MISMATCH",
            "mismatches": self.mismatches[:20],
            "unexpected": self.unexpected[:20],
        }


class Driver:
    """Runs a workload's events through the engine: record, execute, check, count.

    Kernel: none (it plays the application and reads what the trace engine answers).
    """

    def __init__(self, cfg: WorkloadConfig, engine: EventRunner | None = None,
                 record: IO[str] | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
        self.cfg = cfg
        self.engine: EventRunner = engine if engine is not None else World()
        self.record = record
        self.progress = progress
        self.rng = random.Random(cfg.seed)
        self.shadow = Shadow(HEAP_BASE, cfg.size)
        self.stats: Counter[str] = Counter()
        self.mismatches: list[str] = []
        self.unexpected: list[str] = []
        self.phases: list[PhaseCounters] = []
        self.n_events = 0
        self._value = 0
        self._next_addr = HEAP_BASE

    # -- plumbing --------------------------------------------------------------------

    def run_event(self, ev: dict[str, Any], expect_ok: bool = True) -> dict[str, Any]:
        """Record and run one event; check the data it read; note an unexpected errno."""
        if self.record is not None:
            self.record.write(json.dumps(ev, separators=(",", ":")) + "\n")
        out: dict[str, Any] = self.engine.execute(ev)
        i = self.n_events
        self.n_events += 1
        if out.get("result") == "ok":
            data = out.get("data")
            if data is not None:
                checked, bad = self.shadow.check(int(ev["addr"]), list(data))
                self.stats["pages_verified"] += checked
                self.stats["reads_verified"] += 1
                self.mismatches.extend(f"event {i} ({ev['ev']}): {m}" for m in bad)
        elif expect_ok:
            msg = f"event {i} {json.dumps(ev)} -> {out.get('result')}"
            if out.get("message"):
                msg += f": {out['message']}"
            self.unexpected.append(msg)
        if self.progress is not None:
            self.progress(self.n_events)
        return out

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Count what the events inside the block changed under the phase ``name``."""
        before = self.engine.summary()
        n0 = self.n_events
        try:
            yield
        finally:
            after = self.engine.summary()
            diff = {k: int(after[k]) - int(before.get(k, 0)) for k in after
                    if k != "pagemaps_alive" and int(after[k]) != int(before.get(k, 0))}
            if "evictions_pressure" in diff:
                diff["evictions"] = diff["evictions_pressure"]
            self.phases.append(PhaseCounters(name, self.n_events - n0, dict(sorted(diff.items()))))

    def next_value(self) -> int:
        self._value += 1
        return self._value

    # -- the application's calls -----------------------------------------------------

    def setup(self, devices: list[str], vram_mib: int, vms: list[tuple[str, str]],
              link: bool = False, tiles: int = 1) -> None:
        """Profile, devices (each with ``tiles`` tiles of ``vram_mib`` VRAM), fault-mode
        VMs each bound as a CPU-address mirror."""
        self.run_event({"ev": "config", "profile": self.cfg.profile})
        for d in devices:
            ev: dict[str, Any] = {"ev": "device", "name": d, "vram_mib": vram_mib,
                                  "discrete": True, "smem_atomics": False}
            if tiles > 1:
                ev["tiles"] = tiles
            self.run_event(ev)
        if link and len(devices) == 2:
            self.run_event({"ev": "link", "a": devices[0], "b": devices[1]})
        for vm, dev in vms:
            self.run_event({"ev": "vm_create", "vm": vm, "device": dev, "fault_mode": True})
            self.run_event({"ev": "bind", "vm": vm, "op": "map", "addr": 0, "range": MIRROR_RANGE,
                       "flags": ["cpu_addr_mirror"], "pat_index": 0})

    def carve(self, chunks: int) -> Buffer:
        """The next free 2 MiB-aligned piece of the heap (no event)."""
        buf = Buffer(self._next_addr, chunks)
        limit = HEAP_BASE + self.cfg.size
        if buf.addr + buf.size > limit:
            raise ValueError(f"workload bug: {chunks} chunks exceed the {self.cfg.size_mib} "
                             "MiB heap")
        self._next_addr += buf.size
        return buf

    def mmap(self, addr: int, size: int) -> None:
        out = self.run_event({"ev": "mmap", "addr": addr, "size": size})
        if out.get("result") == "ok":
            self.shadow.write(addr, size, 0)

    def munmap(self, addr: int, size: int) -> None:
        out = self.run_event({"ev": "munmap", "addr": addr, "size": size})
        if out.get("result") == "ok":
            self.shadow.forget(addr, size)

    def cpu_write(self, addr: int, size: int) -> None:
        value = self.next_value()
        out = self.run_event({"ev": "cpu_write", "addr": addr, "size": size, "value": value})
        if out.get("result") == "ok":
            self.shadow.write(addr, size, value)
        else:
            self.shadow.forget(addr, size)

    def cpu_read(self, addr: int, size: int) -> None:
        self.run_event({"ev": "cpu_read", "addr": addr, "size": size})

    def gpu(self, vm: str, op: str, addr: int, size: int, tile: int | None = None) -> None:
        """One GPU kernel touching ``[addr, addr+size)``: read, write or atomic (on the
        GT of ``tile``, when given)."""
        ev: dict[str, Any] = {"ev": "gpu_access", "vm": vm, "addr": addr, "size": size,
                              "op": op}
        if op == "write":
            ev["value"] = self.next_value()
        if tile is not None:
            ev["tile"] = tile
        out = self.run_event(ev, expect_ok=op != "atomic")
        self.stats[f"gpu_{op}s"] += 1
        result = str(out.get("result"))
        if op == "atomic" and result != "ok":
            if result in ATOMIC_FAULT_FAILURES:
                self.stats[f"gpu_atomics_failed_{result}"] += 1
            else:
                self.unexpected.append(f"event {self.n_events - 1} {json.dumps(ev)} -> "
                                       f"{result}: {out.get('message', '')}")
        if out.get("result") == "ok":
            if op == "write":
                self.shadow.write(addr, size, int(ev["value"]))
            elif op == "atomic":
                self.shadow.atomic_inc(addr, size)
        elif op != "read":
            # Pages before the failing fault may have changed: re-establish them from the
            # CPU so that no later read is checked against a guess.
            self.shadow.forget(addr, size)
            self.cpu_write(addr, size)

    def gc(self, vm: str) -> None:
        self.run_event({"ev": "gc", "vm": vm})

    def finish(self, working_set: int, vram_mib: int, devices: int, passes: int,
               wall: float, tiles: int = 1) -> WorkloadResult:
        summary = dict(self.engine.summary())
        sim = {"events": self.n_events, "wall_s": round(wall, 3),
               "events_per_s": round(self.n_events / wall) if wall > 0 else 0,
               "pages_verified": self.stats["pages_verified"],
               "reads_verified": self.stats["reads_verified"]}
        stats = {k: v for k, v in sorted(self.stats.items())
                 if k not in ("pages_verified", "reads_verified")}
        return WorkloadResult(config=self.cfg, vram_mib=vram_mib, devices=devices,
                              working_set=working_set, passes=passes, engine_summary=summary,
                              phases=self.phases, sim=sim, stats=stats,
                              mismatches=self.mismatches, unexpected=self.unexpected,
                              tiles=tiles)


def timed() -> Callable[[], float]:
    """A stopwatch: call the result for the seconds since it started."""
    t0 = time.perf_counter()
    return lambda: time.perf_counter() - t0


class Workload:
    """One application pattern. Subclasses set the class attributes and :meth:`body`.

    Kernel: none (each subclass's docstring names the kernel paths it exercises).
    """

    #: The ``--workload`` name.
    name: str = ""
    #: One line for ``--help`` and the summary.
    title: str = ""
    #: Devices (each with its own fault-mode VM ``vm<k>`` on ``gpu<k>``).
    devices: int = 1
    #: Tiles per device (each with ``--vram-mib`` of VRAM).
    tiles: int = 1
    #: Default of ``--passes`` and what a pass is.
    default_passes: int = 1
    passes_meaning: str = "passes"
    #: Whether ``--passes`` may change (False: the pattern is fixed, e.g. read once).
    passes_apply: bool = True
    #: Whether ``--vram-mib`` may change (False: the VRAM follows from the name).
    vram_applies: bool = True

    def default_vram_mib(self, size_mib: int) -> int:
        """VRAM per device when ``--vram-mib`` is not given (default: the working set)."""
        return size_mib

    def body(self, drv: Driver, passes: int) -> int:
        """Run the application's phases (after setup, before teardown); return the
        working set in bytes and leave the buffers in ``self.buffers`` for teardown."""
        raise NotImplementedError

    def resolve(self, cfg: WorkloadConfig) -> tuple[int, int]:
        """(VRAM MiB per device, passes) for ``cfg``; ValueError when an option does not apply."""
        if cfg.vram_mib and not self.vram_applies:
            raise ValueError(f"--vram-mib does not apply to --workload {self.name} (its name "
                             "sets VRAM from the working set)")
        if cfg.passes and not self.passes_apply:
            raise ValueError(f"--passes does not apply to --workload {self.name}")
        vram = cfg.vram_mib or self.default_vram_mib(cfg.size_mib)
        vram = max(2, vram)
        return vram, cfg.passes or self.default_passes

    def run(self, cfg: WorkloadConfig, engine: EventRunner | None = None,
            record: IO[str] | None = None,
            progress: Callable[[int], None] | None = None) -> WorkloadResult:
        """Set up the machine, run :meth:`body`, unmap everything, collect; the result."""
        cfg.validate()
        vram, passes = self.resolve(cfg)
        clock = timed()
        drv = Driver(cfg, engine=engine, record=record, progress=progress)
        devices = [f"gpu{k}" for k in range(self.devices)]
        self.vms = [f"vm{k}" for k in range(self.devices)]
        self.buffers: list[Buffer] = []
        with drv.phase("setup"):
            drv.setup(devices, vram, list(zip(self.vms, devices, strict=True)),
                      tiles=self.tiles)
        working_set = self.body(drv, passes)
        with drv.phase("teardown"):
            # munmap() sends MMU_NOTIFY_UNMAP (xe_svm_invalidate() queues the ranges);
            # the gc event runs xe_svm_garbage_collector() as the next fault would.
            for buf in self.buffers:
                drv.munmap(buf.addr, buf.size)
            for vm in self.vms:
                drv.gc(vm)
        return drv.finish(working_set, vram, self.devices, passes, clock(), tiles=self.tiles)
