"""A seeded, built-in SVM workload run through the trace engine.

Kernel: none directly. This is the userspace side of what the Xe SVM code
serves: a process (think of a Level Zero / SYCL application using shared
virtual memory) that mirrors its whole CPU address space into a GPU VM with
one ``DRM_XE_VM_BIND_FLAG_CPU_ADDR_MIRROR`` bind, then allocates, advises
(``DRM_IOCTL_XE_MADVISE``), runs GPU kernels that fault pages in
(``xe_svm_handle_pagefault()``), touches the same pages from the CPU, frees
parts of its heap (MMU notifier UNMAP events, the SVM garbage collector),
and runs out of VRAM (eviction).

Overview
--------
The simulation *generates* events of the trace format (docs/trace-format.md)
and feeds them one by one to :meth:`pysvm.World.execute`. It never reaches into
the model's objects: everything it learns comes back in the per-event output
dicts, exactly as ``pysvm replay`` would print them. Hence

* ``--record FILE`` writes the events it executed, in order, and
  ``pysvm replay FILE`` reproduces the run (same engine summary) by
  construction;
* the plot (:mod:`pysvm.plot.render`) of a simulation and of its recorded trace are
  the same picture.

Data integrity
--------------
The simulator keeps a *shadow* of every 4 KiB page it wrote (one int per
page, as the model stores them): ``cpu_write`` and GPU ``write`` set the
value, GPU ``atomic`` adds one, ``mmap`` makes pages read as 0. Every
``cpu_read`` and GPU ``read`` output is compared page by page with the
shadow, whatever migrations, evictions, garbage collection and unbinds
happened in between. A GPU write/atomic that the engine refuses (for example
``EACCES`` for a GPU atomic on memory advised ``atomic=cpu``) may have
touched some of its pages before the failing fault, so those pages are
marked unknown and rewritten from the CPU straight away, never guessed.

Determinism
-----------
One ``random.Random(seed)`` drives every choice; the engine is deterministic
(the model has no timers and no threads), so a seed names a run.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterable
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Protocol

from pysvm.timeline import TIMELINE_COUNTERS, TimelinePoint
from pysvm.world import EVENTS, World

__all__ = [
    "ATOMICS",
    "MIGRATION_POLICIES",
    "PREFERRED_LOCS",
    "SimConfig",
    "SimResult",
    "Simulation",
    "TimelinePoint",
    "fmt_bytes",
    "format_summary",
    "simulate",
]

PAGE = 4096
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

#: Where the heap starts in the process address space (1 GiB: clear of NULL
#: and easy to read on a MiB axis).
HEAP_BASE = 1 * GiB
#: The CPU address mirror covers the x86-64 user address space [0, 2^47),
#: as a userspace runtime binds it.
MIRROR_RANGE = 1 << 47

#: --preferred-loc choices -> what madvise preferred_loc asks for.
PREFERRED_LOCS = ("device", "system", "peer", "mixed")
#: --migration-policy choices -> DRM_XE_MIGRATE_* values (uapi numbers, include/uapi/drm/xe_drm.h).
MIGRATION_POLICIES: dict[str, int] = {"all": 0, "system-only": 1}
#: --atomics choices -> DRM_XE_ATOMIC_* values (uapi numbers, include/uapi/drm/xe_drm.h).
ATOMICS: dict[str, int] = {"undefined": 0, "device": 1, "global": 2, "cpu": 3}
ATOMIC_NAMES = {v: k for k, v in ATOMICS.items()}

#: Results of a GPU atomic whose range could not be moved to VRAM (see _gpu_kernel).
ATOMIC_FAULT_FAILURES = ("EBUSY", "ENOMEM", "EFAULT", "ETIME")

#: Upper bound of --steps (about an hour of simulation).
MAX_STEPS = 10_000_000

#: PAT indices the simulated application advises (small indices exist on
#: every Xe platform's table; the default at bind time is 0).
PAT_CHOICES = (0, 1, 2, 3)

#: Counters of the engine summary that the timeline follows per event.


@dataclass(frozen=True)
class SimConfig:
    """Knobs of the built-in workload; every default is a sensible demo.

    Kernel: none (userspace workload parameters).
    """

    steps: int = 2500
    seed: int = 1
    profile: str = "6.18"
    devices: int = 2
    vram_mib: int = 16
    heap_mib: int = 64
    preferred_loc: str = "mixed"
    migration_policy: str = "all"
    atomics: str = "mixed"
    unbind: bool = False
    #: Tiles per device (xe->info.tile_count, 1 or 2): with two, each GPU kernel runs on
    #: one of the device's tiles, drawn at random, and faults migrate to that tile's VRAM.
    tiles: int = 1
    #: Collect per-event counters for a timeline plot (costs a summary per event).
    timeline: bool = False

    def validate(self) -> None:
        """Raise ValueError with one clear sentence for an impossible configuration."""
        if not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"--steps must be in [1, {MAX_STEPS}], got {self.steps}")
        if self.devices not in (1, 2):
            raise ValueError(f"--devices must be 1 or 2, got {self.devices}")
        if self.tiles not in (1, 2):
            raise ValueError(f"--tiles must be 1 or 2 (XE_MAX_TILES_PER_DEVICE), "
                             f"got {self.tiles}")
        if not 1 <= self.vram_mib <= 1 << 20:
            raise ValueError(f"--vram-mib must be in [1, 1048576], got {self.vram_mib}")
        if not 4 <= self.heap_mib <= 16 * 1024:
            raise ValueError(f"--size must be in [4, 16384] MiB, got {self.heap_mib}")
        if self.profile not in ("6.18", "newest"):
            raise ValueError(f"unknown profile {self.profile!r}; choose 6.18 or newest")
        if self.preferred_loc not in PREFERRED_LOCS:
            raise ValueError(f"unknown --preferred-loc {self.preferred_loc!r}; "
                             f"choose one of {', '.join(PREFERRED_LOCS)}")
        if self.migration_policy not in MIGRATION_POLICIES:
            raise ValueError(f"unknown --migration-policy {self.migration_policy!r}; "
                             f"choose one of {', '.join(MIGRATION_POLICIES)}")
        if self.atomics not in (*ATOMICS, "mixed"):
            raise ValueError(f"unknown --atomics {self.atomics!r}; "
                             f"choose one of {', '.join((*ATOMICS, 'mixed'))}")
        if self.preferred_loc == "peer" and self.devices < 2:
            raise ValueError("--preferred-loc peer needs --devices 2 (a second device's VRAM)")
        if self.unbind and self.devices < 2:
            raise ValueError("--unbind needs --devices 2 (the peer device is unbound, "
                             "the VM's own device keeps running)")

    def command_line(self) -> str:
        """The ``pysvm simulate`` options that reproduce this configuration."""
        dflt = SimConfig()
        flags = {"steps": "--steps", "seed": "--seed", "profile": "--profile",
                 "devices": "--devices", "vram_mib": "--vram-mib", "heap_mib": "--size",
                 "preferred_loc": "--preferred-loc", "migration_policy": "--migration-policy",
                 "atomics": "--atomics", "tiles": "--tiles"}
        parts = ["pysvm simulate"]
        for key, flag in flags.items():
            val = getattr(self, key)
            if val != getattr(dflt, key) or key == "seed":
                parts.append(f"{flag} {val}")
        if self.unbind:
            parts.append("--unbind")
        return " ".join(parts)


@dataclass
class SimResult:
    """What a simulation run produced.

    Kernel: none.
    """

    config: SimConfig
    engine_summary: dict[str, Any]
    sim: dict[str, Any]
    vmas: list[dict[str, Any]]
    ranges: list[dict[str, Any]]
    devices: list[str]
    timeline: list[TimelinePoint] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def as_json(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "summary": self.engine_summary,
                "simulation": self.sim, "integrity": "verified" if self.ok else "MISMATCH",
                "mismatches": self.mismatches[:20]}


class IntegrityError(Exception):
    """A read returned a value that differs from the last one written."""


@dataclass
class _Buffer:
    addr: int
    npages: int

    @property
    def end(self) -> int:
        return self.addr + self.npages * PAGE


class _Shadow:
    """The simulator's own copy of the heap's page values.

    ``mapped[p]`` says page p of the heap is mmapped; ``value[p]`` is the last
    value written, or None when unknown (after a refused GPU write).
    """

    def __init__(self, base: int, npages: int) -> None:
        self.base = base
        self.npages = npages
        self.mapped = bytearray(npages)
        self.value: list[int | None] = [0] * npages

    def page(self, addr: int) -> int:
        return (addr - self.base) // PAGE

    def mmap(self, addr: int, size: int) -> None:
        p = self.page(addr)
        for q in range(p, p + size // PAGE):
            self.mapped[q] = 1
            self.value[q] = 0

    def munmap(self, addr: int, size: int) -> None:
        p = self.page(addr)
        for q in range(p, p + size // PAGE):
            self.mapped[q] = 0
            self.value[q] = 0

    def write(self, addr: int, size: int, value: int) -> None:
        p = self.page(addr)
        for q in range(p, p + size // PAGE):
            self.value[q] = value

    def atomic_inc(self, addr: int, size: int) -> None:
        p = self.page(addr)
        for q in range(p, p + size // PAGE):
            v = self.value[q]
            self.value[q] = None if v is None else v + 1

    def forget(self, addr: int, size: int) -> None:
        p = self.page(addr)
        for q in range(p, p + size // PAGE):
            self.value[q] = None

    def check(self, addr: int, data: list[int]) -> tuple[int, list[str]]:
        """Compare read data with the shadow: (pages checked, mismatch messages)."""
        p = self.page(addr)
        bad: list[str] = []
        checked = 0
        for k, got in enumerate(data):
            want = self.value[p + k]
            if want is None:
                continue
            checked += 1
            if got != want:
                bad.append(f"page {addr + k * PAGE:#x}: read {got}, last written {want}")
        return checked, bad


#: An action is a generator: it yields events and receives each one's output.
_Action = Generator[dict[str, Any], dict[str, Any], None]


class EventRunner(Protocol):
    """What the workload drives: :class:`pysvm.World` (or a test double)."""

    def execute(self, ev: object) -> dict[str, Any]:
        """Run one event (a trace line as a dict); return its output line."""

    def summary(self) -> dict[str, int]:
        """The run's counters."""


class Simulation:
    """The seeded workload driving a trace engine, with a shadow for integrity checks.

    Kernel: none; it exercises xe_vm_bind (CPU-address-mirror), xe_vm_madvise_ioctl(),
    xe_svm_handle_pagefault(), xe_svm_garbage_collector(), eviction and device unbind
    through the trace engine.

    Parameters
    ----------
    config : SimConfig
    engine : an :class:`EventRunner` (``execute(event) -> dict``, ``summary() -> dict``);
        default a fresh :class:`pysvm.World`.
    record : text file to which every executed event is written as one JSON line.
    available : names of the events the engine implements; features whose
        events are missing are skipped with a note in the summary.
    """

    def __init__(self, config: SimConfig, engine: EventRunner | None = None,
                 record: IO[str] | None = None, available: Iterable[str] | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
        config.validate()
        self.cfg = config
        self.engine: EventRunner = engine if engine is not None else World()
        self.record = record
        self.available = set(available) if available is not None else set(EVENTS)
        self.progress = progress
        self.rng = random.Random(config.seed)
        self.devices = [f"gpu{k}" for k in range(config.devices)]
        self.vm = "vm0"
        self.shadow = _Shadow(HEAP_BASE, config.heap_mib * MiB // PAGE)
        self.buffers: list[_Buffer] = []
        self.holes: list[tuple[int, int]] = []   # munmapped pieces of live buffers
        self.stats: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.mismatches: list[str] = []
        self.notes: list[str] = []
        self.timeline: list[TimelinePoint] = []
        self.n_events = 0
        self._value = 0
        self._last_counts: dict[str, int] = {}
        self._unbound: set[str] = set()
        self._skip_noted: set[str] = set()
        self.final_vmas: list[dict[str, Any]] = []
        self.final_ranges: list[dict[str, Any]] = []

    # -- plumbing -----------------------------------------------------------------------

    def _can(self, ev: str, feature: str) -> bool:
        if ev in self.available:
            return True
        if ev not in self._skip_noted:
            self._skip_noted.add(ev)
            self.notes.append(f"{feature}: not available (the engine has no {ev!r} event)")
        return False

    def _exec(self, ev: dict[str, Any]) -> dict[str, Any]:
        if self.record is not None:
            self.record.write(json.dumps(ev, separators=(",", ":")) + "\n")
        out: dict[str, Any] = self.engine.execute(ev)
        i = self.n_events
        self.n_events += 1
        self.stats[f"ev_{ev['ev']}"] += 1
        result = str(out.get("result", "?"))
        if result != "ok":
            self.errors[f"{ev['ev']}:{result}"] += 1
        if self.cfg.timeline:
            counts = self.engine.summary()
            pt = TimelinePoint(i=i, ev=ev["ev"], result=result)
            for key in TIMELINE_COUNTERS:
                now = int(counts.get(key, 0))
                setattr(pt, key, now - self._last_counts.get(key, 0))
                self._last_counts[key] = now
            self.timeline.append(pt)
        if result == "ok" and "data" in out:
            checked, bad = self.shadow.check(int(ev["addr"]), list(out["data"]))
            self.stats["pages_verified"] += checked
            self.stats["reads_verified"] += 1
            for msg in bad:
                self.mismatches.append(f"event {i} ({ev['ev']}): {msg}")
        return out

    def _expect_ok(self, ev: dict[str, Any], out: dict[str, Any]) -> None:
        if out.get("result") != "ok":
            msg = f"event {self.n_events - 1} {json.dumps(ev)} -> {out.get('result')}"
            if out.get("message"):
                msg += f": {out['message']}"
            self.unexpected.append(msg)

    def _run_action(self, action: _Action) -> None:
        try:
            ev = next(action)
            while True:
                out = self._exec(ev)
                ev = action.send(out)
        except StopIteration:
            pass

    def _next_value(self) -> int:
        self._value += 1
        return self._value

    # -- heap model -------------------------------------------------------------------

    def _alloc_addr(self, npages: int, align: int) -> int | None:
        """First fit in the heap at `align` (bytes), among live buffers."""
        limit = self.shadow.base + self.shadow.npages * PAGE
        cand = self.shadow.base
        for b in sorted(self.buffers, key=lambda b: b.addr):
            cand = -(-cand // align) * align
            if cand + npages * PAGE <= b.addr:
                return cand
            cand = max(cand, b.end)
        cand = -(-cand // align) * align
        return cand if cand + npages * PAGE <= limit else None

    def _mapped_run(self, buf: _Buffer, max_pages: int) -> tuple[int, int] | None:
        """A random run of mapped pages inside buf: (addr, size) or None."""
        sh = self.shadow
        p0 = sh.page(buf.addr)
        mapped = [k for k in range(buf.npages) if sh.mapped[p0 + k]]
        if not mapped:
            return None
        start = self.rng.choice(mapped)
        want = self.rng.randint(1, max_pages)
        n = 0
        while n < want and start + n < buf.npages and sh.mapped[p0 + start + n]:
            n += 1
        return buf.addr + start * PAGE, n * PAGE

    def _pick_buffer(self) -> _Buffer | None:
        return self.rng.choice(self.buffers) if self.buffers else None

    # -- actions ------------------------------------------------------------------------

    def _setup(self) -> _Action:
        cfg = self.cfg
        out = yield {"ev": "config", "profile": cfg.profile}
        self._expect_ok({"ev": "config"}, out)
        for name in self.devices:
            ev = {"ev": "device", "name": name, "vram_mib": cfg.vram_mib, "discrete": True,
                  "smem_atomics": False}
            if cfg.tiles > 1:
                ev["tiles"] = cfg.tiles
            self._expect_ok(ev, (yield ev))
        if len(self.devices) == 2 and self._can("link", "device interconnect"):
            ev = {"ev": "link", "a": self.devices[0], "b": self.devices[1]}
            self._expect_ok(ev, (yield ev))
        ev = {"ev": "vm_create", "vm": self.vm, "device": self.devices[0], "fault_mode": True}
        self._expect_ok(ev, (yield ev))
        ev = {"ev": "bind", "vm": self.vm, "op": "map", "addr": 0, "range": MIRROR_RANGE,
              "flags": ["cpu_addr_mirror"], "pat_index": 0}
        self._expect_ok(ev, (yield ev))

    def _alloc(self) -> _Action:
        rng = self.rng
        # Sizes a GPU application allocates: many small objects, some big arrays.
        kind = rng.choices(["tiny", "small", "medium", "large"], weights=[2, 4, 4, 2])[0]
        if kind == "tiny":
            npages, align = rng.randint(1, 15), PAGE
        elif kind == "small":
            npages, align = 16 * rng.randint(1, 15), 64 * KiB
        elif kind == "medium":
            npages, align = 512 * rng.randint(1, 3), 2 * MiB
        else:
            npages, align = 512 * rng.randint(4, 8), 2 * MiB
        addr = self._alloc_addr(npages, align)
        if addr is None:
            return
        size = npages * PAGE
        ev = {"ev": "mmap", "addr": addr, "size": size}
        out = yield ev
        self._expect_ok(ev, out)
        if out.get("result") != "ok":
            return
        self.shadow.mmap(addr, size)
        buf = _Buffer(addr, npages)
        self.buffers.append(buf)
        self.stats["allocations"] += 1
        # The application initialises its buffer from the CPU.
        yield from self._cpu_write(addr, size)

    def _cpu_write(self, addr: int, size: int) -> _Action:
        value = self._next_value()
        ev = {"ev": "cpu_write", "addr": addr, "size": size, "value": value}
        out = yield ev
        self._expect_ok(ev, out)
        if out.get("result") == "ok":
            self.shadow.write(addr, size, value)
        else:
            self.shadow.forget(addr, size)

    def _cpu_access(self) -> _Action:
        buf = self._pick_buffer()
        run = buf and self._mapped_run(buf, 256)
        if not run:
            return
        addr, size = run
        if self.rng.random() < 0.5:
            yield from self._cpu_write(addr, size)
        else:
            ev = {"ev": "cpu_read", "addr": addr, "size": size}
            self._expect_ok(ev, (yield ev))

    def _gpu_kernel(self) -> _Action:
        buf = self._pick_buffer()
        run = buf and self._mapped_run(buf, 1024)
        if not run:
            return
        addr, size = run
        op = self.rng.choices(["read", "write", "atomic"], weights=[5, 4, 2])[0]
        ev: dict[str, Any] = {"ev": "gpu_access", "vm": self.vm, "addr": addr, "size": size,
                              "op": op}
        if op == "write":
            ev["value"] = self._next_value()
        if self.cfg.tiles > 1:          # the GT of one of the device's tiles runs it
            ev["tile"] = self.rng.randrange(self.cfg.tiles)
        out = yield ev
        self.stats["gpu_kernels"] += 1
        if out.get("result") == "ok":
            if op == "write":
                self.shadow.write(addr, size, int(ev["value"]))
            elif op == "atomic":
                self.shadow.atomic_inc(addr, size)
            return
        err = str(out.get("result"))
        if op == "atomic" and err == "EACCES":
            # need_vram_for_atomic(): atomic=cpu on a discrete device refuses GPU atomics.
            self.stats["gpu_atomics_refused"] += 1
        elif op == "atomic" and err in ATOMIC_FAULT_FAILURES:
            # A GPU atomic needs its whole range in VRAM (devmem_only). When the migration
            # cannot happen (VRAM short, pages it cannot collect) the fault handler gives up
            # after its retries (EBUSY/ENOMEM; 6.18: EFAULT when no page could be collected),
            # or, newest, binds system pages and the atomic faults again until the job
            # times out (ETIME). The kernel's answers: counted, not hidden, not unexpected.
            self.stats["gpu_atomic_faults_failed"] += 1
        else:
            self._expect_ok(ev, out)
        if op != "read":
            # Pages before the failing fault may have been written: re-establish them.
            self.shadow.forget(addr, size)
            yield from self._cpu_write(addr, size)

    def _preferred_loc(self) -> tuple[Any, str]:
        mode = self.cfg.preferred_loc
        if mode == "mixed":
            # 6.18 has no multi-device preferred_loc: a mixed workload does not ask for it
            # there (--preferred-loc peer still does, and counts the refusals).
            peer = len(self.devices) == 2 and self.cfg.profile != "6.18"
            mode = self.rng.choice(["device", "system"] + (["peer"] if peer else []))
        if mode == "device":
            return 0, "device"
        if mode == "system":
            return -1, "system"
        return self.devices[1], "peer"

    def _madvise(self) -> _Action:
        buf = self._pick_buffer()
        if buf is None:
            return
        # Advise the whole buffer or a 64 KiB-aligned piece of it.
        if self.rng.random() < 0.6 or buf.npages < 32:
            addr, size = buf.addr, buf.npages * PAGE
        else:
            first = self.rng.randrange(0, buf.npages // 16) * 16
            n = 16 * self.rng.randint(1, max(1, (buf.npages - first) // 16))
            addr, size = buf.addr + first * PAGE, min(n, buf.npages - first) * PAGE
        kind = self.rng.choices(["preferred_loc", "atomic", "pat"], weights=[5, 3, 2])[0]
        ev: dict[str, Any] = {"ev": "madvise", "vm": self.vm, "addr": addr, "range": size,
                              "type": kind}
        if kind == "preferred_loc":
            fd, label = self._preferred_loc()
            ev["devmem_fd"] = fd
            ev["migration_policy"] = MIGRATION_POLICIES[self.cfg.migration_policy]
            self.stats[f"madvise_preferred_{label}"] += 1
        elif kind == "atomic":
            mode = self.cfg.atomics
            if mode == "mixed":
                mode = self.rng.choices(list(ATOMICS), weights=[1, 4, 2, 1])[0]
            ev["val"] = ATOMICS[mode]
            self.stats[f"madvise_atomic_{mode}"] += 1
        else:
            ev["val"] = self.rng.choice(PAT_CHOICES)
            self.stats["madvise_pat"] += 1
        out = yield ev
        if kind == "preferred_loc" and ev["devmem_fd"] in self._unbound \
                and out.get("result") == "ENODEV":
            self.stats["madvise_enodev_after_unbind"] += 1
            return
        if kind == "preferred_loc" and isinstance(ev["devmem_fd"], str) \
                and self.cfg.profile == "6.18" and out.get("result") == "EINVAL":
            # 6.18 has no multi-device preferred_loc; count the refusal, do not hide it.
            self.stats["madvise_peer_refused_6.18"] += 1
            return
        self._expect_ok(ev, out)

    def _partial_munmap(self) -> _Action:
        buf = self._pick_buffer()
        if buf is None or buf.npages < 2:
            return
        # Unmap an interior piece (as free() of a chunk of a large heap arena does).
        first = self.rng.randrange(0, buf.npages)
        n = self.rng.randint(1, max(1, min(buf.npages - first, buf.npages // 2)))
        addr, size = buf.addr + first * PAGE, n * PAGE
        ev = {"ev": "munmap", "addr": addr, "size": size}
        out = yield ev
        self._expect_ok(ev, out)
        if out.get("result") == "ok":
            self.shadow.munmap(addr, size)
            self.holes.append((addr, size))
            self.stats["partial_munmaps"] += 1

    def _remap_hole(self) -> _Action:
        if not self.holes:
            return
        addr, size = self.holes.pop(self.rng.randrange(len(self.holes)))
        if not any(b.addr <= addr < b.end for b in self.buffers):
            return
        ev = {"ev": "mmap", "addr": addr, "size": size}
        out = yield ev
        self._expect_ok(ev, out)
        if out.get("result") == "ok":
            self.shadow.mmap(addr, size)
            self.stats["remaps"] += 1

    def _free(self) -> _Action:
        if len(self.buffers) < 4:
            return
        buf = self.buffers.pop(self.rng.randrange(len(self.buffers)))
        ev = {"ev": "munmap", "addr": buf.addr, "size": buf.npages * PAGE}
        out = yield ev
        self._expect_ok(ev, out)
        self.shadow.munmap(buf.addr, buf.npages * PAGE)
        self.holes = [h for h in self.holes if not buf.addr <= h[0] < buf.end]
        self.stats["frees"] += 1

    def _prefetch(self) -> _Action:
        if not self._can("prefetch", "prefetch"):
            return
        buf = self._pick_buffer()
        run = buf and self._mapped_run(buf, 512)
        if not run:
            return
        addr, size = run
        region = self.rng.choice(["vram", "system"])
        ev = {"ev": "prefetch", "vm": self.vm, "addr": addr, "range": size, "region": region}
        out = yield ev
        if out.get("result") != "ok":
            # Prefetch is advice; a refusal (no VRAM left, range not migratable) is counted.
            self.stats[f"prefetch_{out.get('result')}"] += 1

    def _gc(self) -> _Action:
        if not self._can("gc", "explicit garbage collection"):
            return
        ev = {"ev": "gc", "vm": self.vm}
        self._expect_ok(ev, (yield ev))

    def _evict(self) -> _Action:
        if not self._can("evict", "VRAM eviction"):
            return
        dev = self.rng.choice([d for d in self.devices if d not in self._unbound])
        ev = {"ev": "evict", "device": dev}
        self._expect_ok(ev, (yield ev))

    def _unbind(self) -> _Action:
        if not self._can("unbind_device", "device unbind"):
            return
        dev = self.devices[-1]
        ev = {"ev": "unbind_device", "device": dev}
        out = yield ev
        self._expect_ok(ev, out)
        if out.get("result") == "ok":
            self._unbound.add(dev)
            self.stats["devices_unbound"] += 1
        if self._can("run_workers", "deferred workers"):
            ev = {"ev": "run_workers"}
            self._expect_ok(ev, (yield ev))

    def _final_snapshot(self) -> _Action:
        ev = {"ev": "query", "vm": self.vm}   # no addr/range: the whole VM
        out = yield ev
        self._expect_ok(ev, out)
        self.final_vmas = list(out.get("vmas", []))
        if self._can("ranges", "SVM range listing"):
            ev = {"ev": "ranges", "vm": self.vm}
            out = yield ev
            self._expect_ok(ev, out)
            self.final_ranges = list(out.get("ranges", []))

    # -- the run ------------------------------------------------------------------------

    def run(self) -> SimResult:
        """Run the workload to the end and return its result (never raises on a mismatch)."""
        cfg = self.cfg
        t0 = time.perf_counter()
        self._run_action(self._setup())
        actions: list[tuple[Callable[[], _Action], int]] = [
            (self._alloc, 6), (self._gpu_kernel, 30), (self._cpu_access, 14),
            (self._madvise, 10), (self._partial_munmap, 3), (self._remap_hole, 3),
            (self._free, 2), (self._prefetch, 3), (self._gc, 2), (self._evict, 1),
        ]
        funcs = [a for a, _ in actions]
        weights = [w for _, w in actions]
        unbind_at = cfg.steps // 2 if cfg.unbind else -1
        for step in range(cfg.steps):
            if step == unbind_at:
                self._run_action(self._unbind())
            elif len(self.buffers) < 3:
                self._run_action(self._alloc())
            else:
                self._run_action(self.rng.choices(funcs, weights)[0]())
            if self.progress is not None:
                self.progress(step)
        self._run_action(self._final_snapshot())
        wall = time.perf_counter() - t0
        summary = dict(self.engine.summary())
        sim: dict[str, Any] = {
            "steps": cfg.steps, "events": self.n_events, "wall_s": round(wall, 3),
            "events_per_s": round(self.n_events / wall) if wall > 0 else 0,
            "vmas_alive": len(self.final_vmas), "ranges_alive": len(self.final_ranges),
            "ranges_in_vram": sum(1 for r in self.final_ranges if r.get("location") != "system"),
            "pages_verified": self.stats["pages_verified"],
            "reads_verified": self.stats["reads_verified"],
            "workload": {k: v for k, v in sorted(self.stats.items())
                         if not k.startswith(("ev_", "pages_", "reads_"))},
            "events_by_type": {k[3:]: v for k, v in sorted(self.stats.items())
                               if k.startswith("ev_")},
            "results_not_ok": dict(sorted(self.errors.items())),
            "unexpected": self.unexpected[:20],
            "unexpected_count": len(self.unexpected),
            "notes": self.notes,
        }
        return SimResult(config=cfg, engine_summary=summary, sim=sim, vmas=self.final_vmas,
                         ranges=self.final_ranges, devices=list(self.devices),
                         timeline=self.timeline, mismatches=self.mismatches)


def simulate(config: SimConfig, record: IO[str] | None = None,
             progress: Callable[[int], None] | None = None,
             engine: EventRunner | None = None) -> SimResult:
    """Run the built-in workload once (see :class:`Simulation`).

    Kernel: none.
    """
    return Simulation(config, engine=engine, record=record, progress=progress).run()


def fmt_bytes(n: int) -> str:
    """A byte count for people: B, KiB, MiB or GiB."""
    if n >= GiB:
        return f"{n / GiB:.2f} GiB"
    if n >= MiB:
        return f"{n / MiB:.1f} MiB"
    if n >= KiB:
        return f"{n / KiB:.0f} KiB"
    return f"{n} B"


#: Workload counters of refusals the kernel gives for this workload -> why, in a few words.
REFUSAL_REASONS = {
    "gpu_atomics_refused": "GPU atomic refused (EACCES): atomic=cpu advice or range not "
                           "migratable",
    "gpu_atomic_faults_failed": "GPU atomic could not get its range into VRAM "
                                "(EBUSY, ENOMEM, EFAULT or ETIME)",
    "madvise_peer_refused_6.18": "madvise of peer VRAM refused (EINVAL): 6.18 has local or "
                                 "system only",
    "madvise_enodev_after_unbind": "madvise of the unbound device's VRAM refused (ENODEV)",
}


def _unbound_device(res: SimResult) -> str:
    """The name of the device ``--unbind`` unbinds (the last one)."""
    return res.devices[-1] if res.devices else "?"


def format_summary(res: SimResult) -> str:
    """The human-readable end-of-run summary.

    Kernel: none.
    """
    s, e, c = res.sim, res.engine_summary, res.config
    g = e.get
    devs = f"{c.devices} discrete device{'s' if c.devices > 1 else ''}"
    if c.tiles > 1:
        devs += f" x {c.tiles} tiles"
    lines = [
        f"pysvm simulate: seed {c.seed}, profile {c.profile}, {devs} x {c.vram_mib} MiB VRAM, "
        f"heap {c.heap_mib} MiB, {c.steps} steps",
        f"  policies      preferred_loc {c.preferred_loc}, migration_policy "
        f"{c.migration_policy}, atomics {c.atomics}" + (", unbind gpu1 half-way" if c.unbind
                                                        else ""),
        f"  events        {s['events']} in {s['wall_s']:.2f} s ({s['events_per_s']} events/s)",
        f"  GPU faults    {g('faults', 0)} (retries {g('retries', 0)}, "
        f"failed {g('faults_failed', 0)})",
        f"  migrations    to VRAM {g('migrations_to_vram', 0)} "
        f"({fmt_bytes(int(g('bytes_to_vram', 0)))}), to system {g('migrations_to_system', 0)} "
        f"({fmt_bytes(int(g('bytes_to_system', 0)))})",
        f"  GC            {g('gc_runs', 0)} runs, {g('vmas_reset', 0)} VMA attribute resets",
        f"  alive         {s['vmas_alive']} VMAs, {s['ranges_alive']} SVM ranges "
        f"({s['ranges_in_vram']} in VRAM)"
        + (f", {e['pagemaps_alive']} pagemaps" if "pagemaps_alive" in e else ""),
    ]
    w = s["workload"]
    lines.append(
        f"  workload      {w.get('allocations', 0)} allocations, {w.get('gpu_kernels', 0)} GPU "
        f"kernels, {w.get('partial_munmaps', 0)} partial munmaps, {w.get('remaps', 0)} re-mmaps, "
        f"{w.get('frees', 0)} frees")
    if w.get("devices_unbound"):
        lines.append(f"  unbind        {_unbound_device(res)} unbound at step {c.steps // 2} "
                     "(its VRAM evicted to system memory)")
    if s["results_not_ok"]:
        lines.append("  refused       " + ", ".join(f"{k} x{v}"
                                                   for k, v in s["results_not_ok"].items()))
        for key, why in REFUSAL_REASONS.items():
            if w.get(key):
                lines.append(f"                {w[key]:>5} x {why}")
    for note in s["notes"]:
        lines.append(f"  note          {note}")
    if s["unexpected_count"]:
        lines.append(f"  UNEXPECTED    {s['unexpected_count']} events failed that the workload "
                     "expected to succeed; first:")
        lines.extend(f"    {m}" for m in s["unexpected"][:5])
    if res.ok:
        lines.append(f"  DATA INTEGRITY VERIFIED: {s['pages_verified']} pages in "
                     f"{s['reads_verified']} reads matched the last value written")
    else:
        lines.append(f"  DATA INTEGRITY FAILED: {len(res.mismatches)} pages differ from the last "
                     "value written; first:")
        lines.extend(f"    {m}" for m in res.mismatches[:10])
    return "\n".join(lines)
