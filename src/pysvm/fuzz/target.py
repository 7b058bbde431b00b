"""The SVM fuzz target for :func:`gpuvm_core.fuzz.run`: cases, shrinking, saving.

Overview
--------
A *case* is a trace (trace events, the same JSON objects ``pysvm replay``
reads): a set-up (profile ``6.18`` or ``newest``, one or two discrete devices
with small VRAM, maybe linked, one or two fault-mode VMs bound as CPU-address
mirrors, the livelock guard, a 4 MiB heap), then a random interleaving of

* ``mmap`` (re-mmap, MAP_FIXED) / ``munmap`` of pages, 64 KiB chunks and the
  IGT partial-munmap shapes (half, middle half, whole 2 MiB),
* ``cpu_write`` / ``cpu_read``, ``gpu_access`` read / write / atomic,
* ``madvise`` of all three types (preferred location: this device, system,
  the peer device), ``prefetch`` to VRAM or system, ``evict``, ``invalidate``,
* ``inject`` of a munmap, re-mmap, CPU write, eviction or invalidation at every
  fault-handler injection point, ``gc``, CPU-mirror re-binds,
* ``unbind_device`` / ``rmmod`` of the second device, ``run_workers``,

and a teardown (munmap everything, collect, unbind the mirrors, run the
workers, then the pagemap layer's ``teardown`` event: close every VM, unload
every driver, which must leave nothing referenced). :class:`pysvm.fuzz.oracle.SvmChecker`
replays it through :class:`pysvm.trace.engine.Engine` and, after every event, checks

* data: a shadow copy of every page (one int each) against what the CPU page
  table holds, every ``cpu_read`` / GPU ``read`` against the shadow, and no
  populated page outside a CPU mapping; a write that failed half way is
  accounted for page by page (``fault_addr``), as is an injected event
  firing in the middle of a GPU access (its ``fault_addr``);
* ``Svm.check_invariants()`` of every VM (no GPU mapping of memory the CPU
  no longer maps, no range outside a CPU-mirror VMA, no overlap);
* the device memory: every device page belongs to a live allocation, VRAM
  accounting adds up and stays within capacity;
* ``pysvm.drm.pagemap.check_pagemap_invariants`` (lifetimes: refcounts, device
  holds, no device or module freed while referenced);
* after every garbage-collector attribute reset: the VMA covering the
  collected range has default attributes (6.18 always; newest when the VMA
  carries AUTORESET);
* results: every fault either succeeds or fails with a documented errno for
  its situation (a read or write of CPU-mapped memory in a mirror VMA must
  succeed; ``ELOOP`` from the livelock guard is always a failure); no VM is
  ever killed (except by the newest kernel's neighbour-widening quirk, which
  the model reproduces; see docs/svm.md);
* after the teardown: no range, no notifier, no VRAM in use once everything
  is unmapped and the workers ran; after ``teardown`` no leftovers at all
  (every pagemap freed, every device and module released).

On a failure the case is shrunk (events dropped while the same kind of failure
remains) and written as a trace file; ``pysvm replay FILE`` replays it and
``pysvm fuzz --replay FILE`` replays it with all the checks above. The runner
is :func:`gpuvm_core.fuzz.run` (seeds, ``--jobs`` sharding, progress, the
summary line), so the same seed gives the same cases.

Kernel: none (test infrastructure around drivers/gpu/drm/xe/xe_svm.c,
drm_gpusvm.c and drm_pagemap.c as modelled by this package).
"""


from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuvm_core.fuzz import Chooser, Failure
from pysvm.fuzz.generator import HEAP, HEAP_SIZE, MIRROR, PAGE, Ctx, step
from pysvm.fuzz.oracle import SvmChecker, short_tb
from pysvm.outputs import atomic_text, read_text

__all__ = ["SvmTarget", "SvmTargetFactory", "check_events", "load_trace", "save_trace"]

Case = dict[str, Any]


@dataclass
class SvmTarget:
    """The SVM fuzz target for :func:`gpuvm_core.fuzz.run`.

    ``max_steps`` bounds the random part of a case; ``guard`` is the livelock
    guard (fault-loop iterations) every VM gets; ``profile`` forces one kernel
    profile (default: both, chosen per case).

    Kernel: none (test infrastructure).
    """

    max_steps: int = 60
    guard: int = 400
    profile: str | None = None
    #: End each case with the pagemap layer's ``teardown`` event (close every VM, unload
    #: every driver) and require it to report no leftovers.
    teardown_event: bool = True
    #: Event names never generated (e.g. while a known failure elsewhere is being fixed).
    exclude: tuple[str, ...] = ()
    name: str = "svm"

    def make_case(self, rng: Chooser) -> Case:
        profile = self.profile or rng.choice(("6.18", "newest"))
        two = rng.randint(0, 2) == 0
        tiles = 2 if rng.randint(0, 3) == 0 else 1
        gpu0: dict[str, Any] = {"ev": "device", "name": "gpu0",
                                "vram_mib": rng.choice((1, 2, 4, 64))}
        if tiles > 1:
            gpu0["tiles"] = tiles
        ev: list[dict[str, Any]] = [{"ev": "config", "profile": profile}, gpu0]
        vms = ["vm0"]
        if two:
            ev.append({"ev": "device", "name": "gpu1", "vram_mib": rng.choice((1, 2, 4))})
            if rng.randint(0, 1):
                ev.append({"ev": "link", "a": "gpu0", "b": "gpu1"})
        specs = [("vm0", "gpu0")]
        if two and rng.randint(0, 1):
            specs.append(("vm1", "gpu1"))
            vms.append("vm1")
        for vm, dev in specs:
            flags = ["cpu_addr_mirror"]
            if rng.randint(0, 1):       # both releases have the flag (v6.18 included)
                flags.append("autoreset")
            ev += [{"ev": "vm_create", "vm": vm, "device": dev, "fault_mode": True},
                   {"ev": "bind", "vm": vm, "op": "map", "addr": 0, "range": MIRROR,
                    "flags": flags, "pat_index": 0},
                   {"ev": "fault_guard", "vm": vm, "max_iterations": self.guard}]
        ev.append({"ev": "mmap", "addr": HEAP, "size": HEAP_SIZE})
        ctx = Ctx(profile, two, vms, tiles=tiles)
        for _ in range(rng.randint(4, self.max_steps)):
            ev1 = step(rng, ctx)
            if ev1["ev"] in self.exclude or (
                    ev1["ev"] == "inject" and ev1["event"]["ev"] in self.exclude):
                continue
            ev.append(ev1)
        ev.append({"ev": "munmap", "addr": HEAP, "size": HEAP_SIZE})
        for vm, _dev in specs:
            ev.append({"ev": "gc", "vm": vm})
        for vm, _dev in specs:
            ev.append({"ev": "bind", "vm": vm, "op": "unmap", "addr": 0, "range": MIRROR})
        ev += [{"ev": "run_workers"}, {"ev": "pagemaps"}]
        if self.teardown_event:
            ev.append({"ev": "teardown"})
        return {"events": ev}

    def case_steps(self, case: Case) -> int:
        return len(case["events"])

    def run_case(self, case: Case) -> Failure | None:
        return check_events(case["events"])

    def shrink(self, case: Case, failure: Failure, deadline: float) -> tuple[Case, Failure]:
        """Drop events (ddmin style) while a failure of the same kind remains."""
        best = list(case["events"])
        best_f = failure
        want = _signature(failure)
        if failure.step < len(best):
            best = best[: failure.step + 1]

        def attempt(evs: list[dict[str, Any]]) -> bool:
            nonlocal best, best_f
            if time.monotonic() > deadline or not evs:
                return False
            f = check_events(evs)
            if f is not None and _signature(f) == want:
                best, best_f = (evs[: f.step + 1] if f.step < len(evs) else evs), f
                return True
            return False

        changed = True
        while changed and time.monotonic() < deadline:
            changed = False
            size = max(1, len(best) // 2)
            while size >= 1:
                j = 0
                while j < len(best):
                    if any(e.get("ev") == "fault_guard" for e in best[j:j + size]):
                        j += size           # keep the guard: replay must not loop forever
                        continue
                    if attempt(best[:j] + best[j + size:]):
                        changed = True
                    else:
                        j += size
                size //= 2
            for j, e in enumerate(best):      # simplify sizes
                if "size" in e and e["size"] > PAGE:
                    c = dict(e, size=max(PAGE, e["size"] // 2 // PAGE * PAGE))
                    if attempt(best[:j] + [c] + best[j + 1:]):
                        changed = True
        return {"events": best}, best_f

    def save(self, case: Case, failure: Failure, out_dir: Path, tag: str) -> Path:
        """Write the case as a trace ``svm-<tag>.jsonl`` (+ ``.txt`` with the failure)."""
        path = Path(out_dir) / f"svm-{tag}.jsonl"
        save_trace(case["events"], path)
        with atomic_text(path.with_suffix(".txt")) as f:
            f.write(f"{failure}\nreplay:  pysvm replay {path}\n"
                    f"check:   pysvm fuzz --replay {path}\n")
        return path


def _signature(f: Failure) -> tuple[str, str, tuple[str, ...]]:
    """What must stay the same while shrinking: the kind, the event, the errno names."""
    ev = f.message.split(":", 1)[0]
    return f.kind, ev, tuple(sorted(set(re.findall(r"\bE[A-Z]{2,}\b", f.message))))


def check_events(events: list[dict[str, Any]]) -> Failure | None:
    """Run ``events`` through a fresh :class:`SvmChecker`; the first failure or None."""
    try:
        checker = SvmChecker()
    except Exception as e:  # noqa: BLE001
        return Failure(-1, "crash", short_tb(e))
    return checker.run(events)


def save_trace(events: list[dict[str, Any]], path: str | Path) -> Path:
    """Write events as a trace (JSON Lines, docs/trace-format.md)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic_text(p) as f:       # never half a trace, even on Ctrl-C
        f.write("".join(json.dumps(e, separators=(",", ":")) + "\n"
                        for e in events))
    return p


def load_trace(path: str | Path) -> list[dict[str, Any]]:
    """Read a trace (JSON Lines, blank lines skipped)."""
    out = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if line.strip():
            ev = json.loads(line)
            if not isinstance(ev, dict):
                raise ValueError(f"{path}:{n}: an event must be a JSON object")
            out.append(ev)
    return out


@dataclass
class SvmTargetFactory:
    """Picklable factory for worker processes."""

    max_steps: int = 60
    profile: str | None = None
    exclude: tuple[str, ...] = ()

    def __call__(self) -> SvmTarget:
        return SvmTarget(max_steps=self.max_steps, profile=self.profile, exclude=self.exclude)
