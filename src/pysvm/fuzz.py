"""``pysvm fuzz``: random SVM interleavings, checked after every step.

Overview
--------
A *case* is a trace (TRACE.md events, the same JSON objects ``pysvm replay``
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
every driver, which must leave nothing referenced). :class:`SvmChecker`
replays it through :class:`pysvm.trace.Engine` and, after every event, checks

* data: a shadow copy of every page (one int each) against what the CPU page
  table holds, every ``cpu_read`` / GPU ``read`` against the shadow, and no
  populated page outside a CPU mapping; a write that failed half way is
  accounted for page by page (``fault_addr``), as is an injected event
  firing in the middle of a GPU access (its ``fault_addr``);
* ``Svm.check_invariants()`` of every VM (no GPU mapping of memory the CPU
  no longer maps, no range outside a CPU-mirror VMA, no overlap);
* the device memory: every device page belongs to a live allocation, VRAM
  accounting adds up and stays within capacity;
* ``pysvm.pagemap.check_pagemap_invariants`` (lifetimes: refcounts, device
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

import errno
import json
import re
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuvm_core.fuzz import Chooser, Failure

__all__ = ["SvmTarget", "SvmChecker", "HEAP", "HEAP_SIZE", "load_trace", "save_trace"]

PAGE = 4096
SZ_64K = 64 << 10
SZ_2M = 2 << 20
#: Where the fuzzed heap lives and how big it is (two 2 MiB chunks).
HEAP = 1 << 30
HEAP_SIZE = 2 * SZ_2M
HEAP_PAGES = HEAP_SIZE // PAGE
#: The CPU-address mirror covers the x86-64 user address space.
MIRROR = 1 << 47
INJECTION_POINTS = ("fault.start", "fault.after_find_range", "fault.after_migrate",
                    "fault.after_get_pages", "fault.before_bind")

Case = dict[str, Any]
#: Fault-loop iterations the checker allows a VM whose trace set no fault_guard.
SAFETY_GUARD = 10_000

#: errnos a failing GPU access may report, by situation (see SvmChecker._check_gpu_errno).
_UNMAPPED_OK = frozenset({"ENOENT", "EFAULT"})      # CPU memory gone at the fault address
_NO_VMA_OK = frozenset({"EINVAL"})                  # no GPU VMA at the fault address
_ATOMIC_OK = frozenset({"EFAULT", "EBUSY", "ENOMEM", "ENODEV"})
_ATOMIC_CPU = 3                                     # DRM_XE_ATOMIC_CPU


class _Fail(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _short_tb(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return f"{type(e).__name__}: {e}{where}"


# ----------------------------------------------------------------------------
# Checking a trace


class SvmChecker:
    """Replay events through a fresh engine, checking everything after each one.

    ``run(events)`` returns ``None`` or the first :class:`Failure`. The checker
    keeps the shadow of page contents and the queue of pending injections.

    Kernel: none (test oracle).
    """

    def __init__(self) -> None:
        from pysvm.trace import Engine
        from pysvm.world import World

        self.engine = Engine(World())
        self.shadow: dict[int, int] = {}
        self.pending: dict[str, deque[dict[str, Any]]] = {p: deque() for p in INJECTION_POINTS}
        self.gc_problems: list[str] = []
        #: VMs killed by the newest kernel's set_default_attr widening quirk (not a failure).
        self.quirk_killed: set[str] = set()
        self._hooked: set[int] = set()

    # -- the run ------------------------------------------------------------

    def run(self, events: list[dict[str, Any]]) -> Failure | None:
        for i, ev in enumerate(events):
            try:
                self.step(ev)
            except _Fail as f:
                return Failure(i, f.kind, f"{ev.get('ev')}: {f}")
            except Exception as e:  # noqa: BLE001 - a model crash is a finding
                return Failure(i, "crash", f"{ev.get('ev')}: {_short_tb(e)}")
        return None

    def step(self, ev: dict[str, Any]) -> dict[str, Any]:
        out = self.engine.execute(dict(ev))
        self._hook_vms()
        self._check_result(ev, out)
        if self.gc_problems:
            msg = self.gc_problems[0]
            self.gc_problems.clear()
            raise _Fail("attrs", msg)
        self.check_world()
        if ev.get("ev") == "run_workers" and not self.shadow:
            self.check_empty()
        return out

    # -- results and the shadow ----------------------------------------------

    def _check_result(self, ev: dict[str, Any], out: dict[str, Any]) -> None:
        name = ev.get("ev")
        res = out.get("result")
        if name == "inject":
            self._expect(out, {"ok"})
            inner = ev["event"]
            self.pending[ev["at"]].append(inner)
            return
        if name == "gpu_access":
            self._gpu_access(ev, out)
            return
        if name == "teardown":
            self._expect(out, {"ok"})
            if out.get("leftovers"):
                raise _Fail("teardown", f"left after full teardown: {out['leftovers']}")
            return
        self._plain(ev, out)
        vm = self.engine.world.vms.get(str(ev.get("vm")))
        if vm is not None and vm.name in self.quirk_killed and res in ("ENOENT", "EBUSY"):
            return      # a killed VM refuses everything (ENOENT); the kill itself was EBUSY
        if name in ("config", "device", "vm_create", "link", "fault_guard", "pagemaps",
                    "ranges", "evict", "run_workers", "mmap", "munmap", "invalidate", "gc",
                    "unbind_device"):
            self._expect(out, {"ok"})
        elif name == "bind":
            ok = {"ok", "EBUSY"}
            if ev.get("op") == "unmap":
                ok = {"ok", "EBUSY"}
            self._expect(out, ok)
        elif name == "madvise":
            self._expect(out, {"ok", "ENODEV", "ENOLINK", "EINVAL"})
        elif name == "prefetch":
            self._expect(out, {"ok", "ENOENT", "EFAULT", "ENOMEM", "EBUSY", "ENODEV"})
        elif name == "rmmod":
            self._expect(out, {"ok", "EBUSY", "ENOENT"})
        elif name in ("cpu_write", "cpu_read"):
            pass  # checked by _plain
        elif res != "ok":
            raise _Fail("result", f"unexpected {res}: {out.get('message')}")

    @staticmethod
    def _expect(out: dict[str, Any], ok: set[str]) -> None:
        if out.get("result") not in ok:
            raise _Fail("result", f"result {out.get('result')} (expected one of "
                        f"{sorted(ok)}): {out.get('message')}")

    def _mapped(self, addr: int, size: int) -> bool:
        return all(a in self.shadow for a in range(addr, addr + size, PAGE))

    def _plain(self, ev: dict[str, Any], out: dict[str, Any], injected: bool = False) -> None:
        """Apply a non-GPU event's effect on the shadow (and check reads)."""
        name = ev.get("ev")
        ok = out.get("result") == "ok"
        if name == "mmap" and ok:
            for a in range(ev["addr"], ev["addr"] + ev["size"], PAGE):
                self.shadow[a] = 0
        elif name == "munmap" and ok:
            for a in range(ev["addr"], ev["addr"] + ev["size"], PAGE):
                self.shadow.pop(a, None)
        elif name in ("cpu_write", "cpu_read"):
            mapped = self._mapped(ev["addr"], ev["size"])
            want = "ok" if mapped else "EFAULT"
            if out.get("result") != want:
                raise _Fail("result", f"{'injected ' if injected else ''}{name} of "
                            f"[{ev['addr']:#x}, +{ev['size']:#x}) gave {out.get('result')}, "
                            f"expected {want} ({'mapped' if mapped else 'not mapped'}): "
                            f"{out.get('message')}")
            if not ok:
                return
            for i, a in enumerate(range(ev["addr"], ev["addr"] + ev["size"], PAGE)):
                if name == "cpu_write":
                    self.shadow[a] = ev.get("value", 0)
                elif out["data"][i] != self.shadow[a]:
                    raise _Fail("data", f"cpu_read at {a:#x} returned {out['data'][i]}, "
                                f"last value written was {self.shadow[a]}")

    def _gpu_access(self, ev: dict[str, Any], out: dict[str, Any]) -> None:
        op, addr, size = ev["op"], ev["addr"], ev["size"]
        value = ev.get("value", 0)
        end = addr + size
        ok = out.get("result") == "ok"
        stop = end if ok else int(out.get("fault_addr", addr))
        data = out.get("data") if ok else None
        cur = addr
        for rec in out.get("injected", []):
            q = self.pending.get(rec.get("at", ""))
            if not q:
                raise _Fail("inject", f"an injection fired at {rec.get('at')} that was not "
                            "pending")
            inner = q.popleft()
            if rec.get("ev") != inner.get("ev"):
                raise _Fail("inject", f"injection at {rec.get('at')} ran {rec.get('ev')}, "
                            f"queued was {inner.get('ev')}")
            fa = rec.get("fault_addr")
            if fa is None or not addr <= fa < end:
                raise _Fail("inject", f"injection fired outside this access (fault {fa})")
            self._gpu_pages(op, cur, max(cur, fa), value, data, addr)
            cur = max(cur, fa)
            self._expect_injected(inner, rec)
            self._plain(inner, rec, injected=True)
        if cur > stop:
            raise _Fail("gpu", f"the access failed at {stop:#x} before a later injection")
        self._gpu_pages(op, cur, stop, value, data, addr)
        if not ok:
            self._check_gpu_errno(ev, out, stop)

    @staticmethod
    def _expect_injected(inner: dict[str, Any], rec: dict[str, Any]) -> None:
        name = inner.get("ev")
        if name in ("cpu_write", "cpu_read"):
            return  # checked against the shadow in _plain
        if rec.get("result") != "ok":
            raise _Fail("result", f"injected {name} gave {rec.get('result')}: "
                        f"{rec.get('message')}")

    def _gpu_pages(self, op: str, lo: int, hi: int, value: int, data: list[int] | None,
                   base: int) -> None:
        for a in range(lo, hi, PAGE):
            if a not in self.shadow:
                raise _Fail("gpu", f"GPU {op} of {a:#x} succeeded but the CPU does not map it")
            if op == "write":
                self.shadow[a] = value
            elif op == "atomic":
                self.shadow[a] += 1
            elif data is not None and data[(a - base) // PAGE] != self.shadow[a]:
                raise _Fail("data", f"GPU read at {a:#x} returned {data[(a - base) // PAGE]}, "
                            f"last value written was {self.shadow[a]}")

    def _check_gpu_errno(self, ev: dict[str, Any], out: dict[str, Any], f: int) -> None:
        res = str(out.get("result"))
        vm = self.engine.world.vms.get(ev["vm"])
        if res == "ELOOP":
            raise _Fail("livelock", f"fault at {f:#x}: {out.get('message')}")
        if vm is None or (vm.killed and res == "ENOENT"):
            return
        if vm.name in self.quirk_killed and res == "EBUSY":
            return      # the collector inside this fault hit the widening quirk
        if vm is not None:
            vma = vm.find_vma_by_addr(f)
            if vma is None or not vma.is_cpu_addr_mirror():
                if res in _NO_VMA_OK:
                    return
                raise _Fail("errno", f"GPU {ev['op']} at {f:#x} with no mirror VMA gave {res}: "
                            f"{out.get('message')}")
            if ev["op"] == "atomic" and res == "EACCES":
                if vma.attr.atomic_access == _ATOMIC_CPU:
                    return
                raise _Fail("errno", f"GPU atomic at {f:#x} gave EACCES but the VMA's atomic "
                            f"policy is {vma.attr.atomic_access}, not CPU")
        if f not in self.shadow:
            if res in _UNMAPPED_OK:
                return
            raise _Fail("errno", f"GPU {ev['op']} at CPU-unmapped {f:#x} gave {res} (expected "
                        f"one of {sorted(_UNMAPPED_OK)}): {out.get('message')}")
        if ev["op"] == "atomic" and res in _ATOMIC_OK:
            return
        if ev["op"] == "atomic" and res == "ETIME" and vm is not None \
                and vm.profile.range_removed_check:
            return      # newest: endless atomic refault when VRAM cannot hold the range
        raise _Fail("errno", f"GPU {ev['op']} at CPU-mapped {f:#x} failed with {res}: "
                    f"{out.get('message')}")

    # -- global checks -------------------------------------------------------

    def _hook_vms(self) -> None:
        for vm in self.engine.world.vms.values():
            svm = vm.svm
            if svm is not None and id(svm) not in self._hooked:
                self._hooked.add(id(svm))
                svm.gc_hooks.append(self._gc_hook)
                if svm.max_fault_iterations is None:
                    # Do not loop forever inside the checker when a trace sets no guard;
                    # a later fault_guard event (0 = none) overrides this.
                    svm.max_fault_iterations = SAFETY_GUARD

    def _gc_hook(self, svm: Any, start: int, end: int, err: int) -> None:
        """After each set_default_attr: the span's VMA has default attributes."""
        if err not in (0, errno.EAGAIN):
            if err == errno.EBUSY and svm.vm.profile.absorb_neighbours:
                # Kernel quirk (newest), reproduced: the neighbour lookup at end + 1 can
                # widen the reset over a still-mapped VMA tail with live ranges; the
                # re-allocation fails with EBUSY and the VM is killed. See docs/svm.md.
                self.quirk_killed.add(svm.vm.name)
                return
            self.gc_problems.append(f"set_default_attr [{start:#x}, {end:#x}) failed with "
                                    f"{errno.errorcode.get(err, err)} (VM killed: "
                                    f"{svm.vm.killed})")
            return
        vma = svm.vm.find_vma_by_addr(start)
        if vma is None or not vma.is_cpu_addr_mirror():
            self.gc_problems.append(f"after collecting [{start:#x}, {end:#x}) no CPU-mirror "
                                    f"VMA covers it ({vma})")
            return
        if not (vma.start <= start and end <= vma.end):
            self.gc_problems.append(f"after collecting [{start:#x}, {end:#x}) the VMA "
                                    f"{vma} does not cover it")
        from pysvm.vma import VmaFlag
        must = (not svm.vm.profile.autoreset_gating) or bool(vma.flags & VmaFlag.MADV_AUTORESET)
        if must and not vma.has_default_mem_attrs():
            self.gc_problems.append(f"after collecting the fully unmapped range [{start:#x}, "
                                    f"{end:#x}) its VMA {vma} keeps non-default attributes "
                                    f"({svm.vm.profile.name})")

    def check_world(self) -> None:
        w = self.engine.world
        for vm in w.vms.values():
            if vm.killed and vm.name not in self.quirk_killed:
                raise _Fail("killed", f"VM {vm.name} was killed")
            if vm.svm is not None:
                try:
                    vm.svm.check_invariants()
                except AssertionError as e:
                    raise _Fail("invariant", f"{vm.name}: {e}") from None
        self._check_memory()
        if w.devices:
            from pysvm.pagemap import check_pagemap_invariants
            try:
                check_pagemap_invariants(w)
            except AssertionError as e:
                raise _Fail("pagemap", str(e)) from None

    def _check_memory(self) -> None:
        w = self.engine.world
        mm = w.mm
        if mm is None:
            if self.shadow:
                raise _Fail("data", "pages mapped but no address space")
            return
        mapped = sum(v.end - v.start for v in mm.vmas()) // PAGE
        if mapped != len(self.shadow):
            raise _Fail("data", f"the CPU maps {mapped} pages, the shadow {len(self.shadow)}")
        for a, want in self.shadow.items():
            page = mm.page_at(a)
            got = page.value if page is not None else 0
            if got != want:
                raise _Fail("data", f"page {a:#x} holds {got} ({page!r}), last value written "
                            f"was {want}")
        allocs: dict[int, Any] = {}
        for a, page in mm.populated_pages():
            if a not in self.shadow:
                raise _Fail("data", f"populated page {a:#x} outside every CPU mapping")
            al = page.alloc
            if al is not None:
                if al.released or al.pages.get(a) is not page:
                    raise _Fail("vram", f"device page {a:#x} of a released or foreign "
                                f"allocation {al!r}")
                allocs[id(al)] = al
        for dev in w.devices.values():
            vram = getattr(dev, "vram", None)
            if vram is None or not hasattr(vram, "allocations"):
                continue
            used = sum(al.size for al in vram.allocations.values())
            if used != vram.used or vram.used > vram.capacity:
                raise _Fail("vram", f"{dev.name}: used {vram.used:#x}, allocations {used:#x}, "
                            f"capacity {vram.capacity:#x}")
            for al in vram.allocations.values():
                if not al.pages:
                    raise _Fail("vram", f"{dev.name}: allocation {al!r} without pages kept")

    def check_empty(self) -> None:
        """With no CPU memory left and the workers run: nothing of the SVM state remains.

        No range, no notifier (gpusvm or MMU), nothing queued for collection, no VRAM in
        use (every device allocation went with its last page).
        """
        w = self.engine.world
        for vm in w.vms.values():
            svm = vm.svm
            if svm is None or vm.killed:
                continue
            left = list(svm.gpusvm.ranges())
            if left or svm.gpusvm.notifier_count() or svm.gc_list:
                raise _Fail("teardown", f"{vm.name}: {len(left)} range(s), "
                            f"{svm.gpusvm.notifier_count()} notifier(s), {len(svm.gc_list)} "
                            "queued range(s) left after everything was unmapped and collected")
        if w.mm is not None and w.mm.notifier_count() and not any(
                vm.killed for vm in w.vms.values()):
            raise _Fail("teardown", f"{w.mm.notifier_count()} MMU notifier(s) still registered")
        for dev in w.devices.values():
            vram = getattr(dev, "vram", None)
            if vram is not None and int(getattr(vram, "used", 0)):
                raise _Fail("teardown", f"{dev.name}: {vram.used:#x} bytes of VRAM still in use")


# ----------------------------------------------------------------------------
# Generating cases


@dataclass
class _Ctx:
    profile: str
    two: bool
    vms: list[str]
    value: int = 1
    unbound: bool = False


def _span(rng: Chooser) -> tuple[int, int]:
    """A heap span: pages, 64 KiB chunks or the IGT partial-munmap shapes."""
    k = rng.randint(0, 9)
    if k <= 4:
        first = rng.randint(0, HEAP_PAGES - 1)
        n = rng.randint(1, min(rng.choice((1, 4, 16, 64)), HEAP_PAGES - first))
        return HEAP + first * PAGE, n * PAGE
    if k <= 7:
        chunks = HEAP_SIZE // SZ_64K
        first = rng.randint(0, chunks - 1)
        n = rng.randint(1, min(4, chunks - first))
        return HEAP + first * SZ_64K, n * SZ_64K
    block = HEAP + rng.randint(0, HEAP_SIZE // SZ_2M - 1) * SZ_2M
    shape = rng.randint(0, 3)
    if shape == 0:
        return block, SZ_2M // 2                       # first half
    if shape == 1:
        return block + SZ_2M // 2, SZ_2M // 2          # second half
    if shape == 2:
        return block + SZ_2M // 4, SZ_2M // 2          # middle half
    return block, SZ_2M                                # whole


def _value(ctx: _Ctx) -> int:
    ctx.value += 1
    return ctx.value * 10


def _async_event(rng: Chooser, ctx: _Ctx) -> dict[str, Any]:
    """An event that can land in the middle of a fault (CPU side, eviction)."""
    k = rng.randint(0, 9)
    addr, size = _span(rng)
    if k <= 3:
        return {"ev": "munmap", "addr": addr, "size": size}
    if k == 4:
        return {"ev": "mmap", "addr": addr, "size": size}
    if k == 5:
        return {"ev": "cpu_write", "addr": addr, "size": size, "value": _value(ctx)}
    if k <= 7:
        return {"ev": "evict", "device": rng.choice(("gpu0", "gpu1") if ctx.two else ("gpu0",))}
    return {"ev": "invalidate", "addr": addr, "size": size,
            "event": rng.choice(("clear", "protection_vma", "migrate"))}


def _step(rng: Chooser, ctx: _Ctx) -> dict[str, Any]:
    r = rng.randint(0, 99)
    vm = rng.choice(ctx.vms)
    addr, size = _span(rng)
    if r < 28:
        op = rng.choice(("read", "read", "write", "write", "atomic"))
        size = min(size, 16 * PAGE) if rng.randint(0, 3) else size
        ev: dict[str, Any] = {"ev": "gpu_access", "vm": vm, "addr": addr, "size": size, "op": op}
        if op == "write":
            ev["value"] = _value(ctx)
        return ev
    if r < 36:
        return {"ev": "cpu_write", "addr": addr, "size": size, "value": _value(ctx)}
    if r < 42:
        return {"ev": "cpu_read", "addr": addr, "size": size}
    if r < 47:
        return {"ev": "munmap", "addr": addr, "size": size}
    if r < 53:
        return {"ev": "mmap", "addr": addr, "size": size}
    if r < 63:
        t = rng.randint(0, 2)
        if t == 0:
            locs: list[Any] = [0, 0, -1]
            if ctx.two and ctx.profile == "newest":
                locs.append("gpu1")
            return {"ev": "madvise", "vm": vm, "addr": addr, "range": size,
                    "type": "preferred_loc", "devmem_fd": rng.choice(locs),
                    "migration_policy": rng.randint(0, 1)}
        if t == 1:
            return {"ev": "madvise", "vm": vm, "addr": addr, "range": size, "type": "atomic",
                    "val": rng.randint(0, 3)}
        return {"ev": "madvise", "vm": vm, "addr": addr, "range": size, "type": "pat",
                "val": rng.choice((0, 1, 2))}
    if r < 67:
        return {"ev": "prefetch", "vm": vm, "addr": addr, "range": size,
                "region": rng.choice(("vram", "system"))}
    if r < 71:
        return {"ev": "evict", "device": rng.choice(("gpu0", "gpu1") if ctx.two else ("gpu0",))}
    if r < 82:
        return {"ev": "inject", "at": rng.choice(INJECTION_POINTS),
                "event": _async_event(rng, ctx)}
    if r < 85:
        return {"ev": "gc", "vm": vm}
    if r < 88:
        return {"ev": "invalidate", "addr": addr, "size": size,
                "event": rng.choice(("clear", "protection_vma", "migrate"))}
    if r < 90:
        return {"ev": "ranges", "vm": vm}
    if r < 92:
        return {"ev": "run_workers"}
    if r < 96:
        flags = ["cpu_addr_mirror"]
        if ctx.profile == "newest" and rng.randint(0, 1):
            flags.append("autoreset")
        if rng.randint(0, 2) == 0:
            return {"ev": "bind", "vm": vm, "op": "unmap", "addr": addr, "range": size}
        return {"ev": "bind", "vm": vm, "op": "map", "addr": addr, "range": size,
                "flags": flags, "pat_index": 0}
    if ctx.two and not ctx.unbound and rng.randint(0, 1) == 0:
        ctx.unbound = True
        if "vm1" in ctx.vms:
            ctx.vms.remove("vm1")
        return {"ev": "unbind_device", "device": "gpu1"}
    if ctx.two and ctx.unbound:
        return {"ev": "rmmod", "device": "gpu1"}
    return {"ev": "gc", "vm": vm}


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
        ev: list[dict[str, Any]] = [{"ev": "config", "profile": profile},
                                    {"ev": "device", "name": "gpu0",
                                     "vram_mib": rng.choice((1, 2, 4, 64))}]
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
            if profile == "newest" and rng.randint(0, 1):
                flags.append("autoreset")
            ev += [{"ev": "vm_create", "vm": vm, "device": dev, "fault_mode": True},
                   {"ev": "bind", "vm": vm, "op": "map", "addr": 0, "range": MIRROR,
                    "flags": flags, "pat_index": 0},
                   {"ev": "fault_guard", "vm": vm, "max_iterations": self.guard}]
        ev.append({"ev": "mmap", "addr": HEAP, "size": HEAP_SIZE})
        ctx = _Ctx(profile, two, vms)
        for _ in range(rng.randint(4, self.max_steps)):
            step = _step(rng, ctx)
            if step["ev"] in self.exclude or (
                    step["ev"] == "inject" and step["event"]["ev"] in self.exclude):
                continue
            ev.append(step)
        ev.append({"ev": "munmap", "addr": HEAP, "size": HEAP_SIZE})
        for vm, _dev in specs:
            ev.append({"ev": "gc", "vm": vm})
        for vm, _dev in specs:
            ev.append({"ev": "bind", "vm": vm, "op": "unmap", "addr": 0, "range": MIRROR})
        ev += [{"ev": "run_workers"}, {"ev": "pagemaps"}]
        if self.teardown_event and _has_event("teardown"):
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
        path.with_suffix(".txt").write_text(
            f"{failure}\nreplay:  pysvm replay {path}\ncheck:   pysvm fuzz --replay {path}\n",
            encoding="utf-8")
        return path


def _signature(f: Failure) -> tuple[str, str, tuple[str, ...]]:
    """What must stay the same while shrinking: the kind, the event, the errno names."""
    ev = f.message.split(":", 1)[0]
    return f.kind, ev, tuple(sorted(set(re.findall(r"\bE[A-Z]{2,}\b", f.message))))


def _has_event(name: str) -> bool:
    from pysvm.trace import HANDLERS, _load_handlers
    _load_handlers()
    return name in HANDLERS


def check_events(events: list[dict[str, Any]]) -> Failure | None:
    """Run ``events`` through a fresh :class:`SvmChecker`; the first failure or None."""
    try:
        checker = SvmChecker()
    except Exception as e:  # noqa: BLE001
        return Failure(-1, "crash", _short_tb(e))
    return checker.run(events)


def save_trace(events: list[dict[str, Any]], path: str | Path) -> Path:
    """Write events as a TRACE.md JSON Lines file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events),
                 encoding="utf-8")
    return p


def load_trace(path: str | Path) -> list[dict[str, Any]]:
    """Read a TRACE.md JSON Lines file (blank lines skipped)."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
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
