"""The SVM fuzz oracle: replay a trace and check everything after every event.

What it checks is listed in :mod:`pysvm.fuzz` (data against a shadow copy, SVM
invariants, device memory accounting, pagemap lifetimes, the garbage collector's
attribute reset, documented errnos, an empty machine after the teardown).

Kernel: none (a test oracle around drivers/gpu/drm/xe/xe_svm.c, drm_gpusvm.c and
drm_pagemap.c as modelled by this package).
"""

from __future__ import annotations

import errno
import traceback
from collections import deque
from pathlib import Path
from typing import Any

from gpuvm_core.fuzz import Failure
from pysvm.mm.mmap import entry_values
from pysvm.trace.engine import Engine
from pysvm.world import MAIN_PROCESS, World
from pysvm.xe.host import INJECTION_POINTS
from pysvm.xe.lifetime import check_pagemap_invariants
from pysvm.xe.svm import Svm
from pysvm.xe.vma import VmaFlag
from pysvm.xe.vram import VramAllocation

__all__ = ["SvmChecker", "SAFETY_GUARD", "Fail", "short_tb"]

PAGE = 4096
#: Fault-loop iterations the checker allows a VM whose trace set no fault_guard.
SAFETY_GUARD = 10_000

#: errnos a failing GPU access may report, by situation (see SvmChecker._check_gpu_errno).
_UNMAPPED_OK = frozenset({"ENOENT", "EFAULT"})      # CPU memory gone at the fault address
_NO_VMA_OK = frozenset({"EINVAL"})                  # no GPU VMA at the fault address
_ATOMIC_OK = frozenset({"EFAULT", "EBUSY", "ENOMEM", "ENODEV"})
_ATOMIC_CPU = 3                                     # DRM_XE_ATOMIC_CPU


class Fail(Exception):
    """A broken check: ``kind`` names which (data, invariant, pagemap, ...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def short_tb(e: BaseException) -> str:
    """One line: the exception and where it was raised."""
    tb = traceback.extract_tb(e.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return f"{type(e).__name__}: {e}{where}"


class SvmChecker:
    """Replay events through a fresh engine, checking everything after each one.

    ``run(events)`` returns ``None`` or the first :class:`Failure`. The checker
    keeps the shadow of page contents (one per live process: ``shadows``; ``shadow`` is
    the main process's) and the queue of pending injections.

    Kernel: none (test oracle).
    """

    def __init__(self) -> None:
        self.engine = Engine(World())
        #: Per live process: address -> the value its page must hold.
        self.shadows: dict[str, dict[int, int]] = {MAIN_PROCESS: {}}
        #: Per live process: its pages mapped without write permission (mmap read_only,
        #: mprotect); they move with mremap like the shadow's pages.
        self.read_onlys: dict[str, set[int]] = {MAIN_PROCESS: set()}
        #: VM name -> the process that created it (whose address space it mirrors).
        self.vm_process: dict[str, str] = {}
        self.pending: dict[str, deque[dict[str, Any]]] = {p: deque() for p in INJECTION_POINTS}
        self.gc_problems: list[str] = []
        #: VMs killed by the newest kernel's set_default_attr widening quirk (not a failure).
        self.quirk_killed: set[str] = set()
        self._hooked: set[int] = set()

    @property
    def shadow(self) -> dict[int, int]:
        """The main process's shadow (empty once it exited)."""
        return self.shadows.get(MAIN_PROCESS, {})

    @property
    def read_only(self) -> set[int]:
        """The main process's read-only pages (empty once it exited)."""
        return self.read_onlys.get(MAIN_PROCESS, set())

    def _shadow_of(self, ev: dict[str, Any]) -> dict[int, int]:
        """The shadow of the process a CPU event names (ESRCH was expected if none)."""
        return self.shadows[str(ev.get("process", MAIN_PROCESS))]

    def _read_only_of(self, ev: dict[str, Any]) -> set[int]:
        """The read-only pages of the process a CPU event names."""
        return self.read_onlys[str(ev.get("process", MAIN_PROCESS))]

    # -- the run ------------------------------------------------------------

    def run(self, events: list[dict[str, Any]]) -> Failure | None:
        for i, ev in enumerate(events):
            try:
                self.step(ev)
            except Fail as f:
                return Failure(i, f.kind, f"{ev.get('ev')}: {f}")
            except Exception as e:  # noqa: BLE001 - a model crash is a finding
                return Failure(i, "crash", f"{ev.get('ev')}: {short_tb(e)}")
        return None

    def step(self, ev: dict[str, Any]) -> dict[str, Any]:
        out = self.engine.execute(dict(ev))
        self._hook_vms()
        self._check_result(ev, out)
        if self.gc_problems:
            msg = self.gc_problems[0]
            self.gc_problems.clear()
            raise Fail("attrs", msg)
        self.check_world()
        if ev.get("ev") == "run_workers" and not any(self.shadows.values()):
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
                raise Fail("teardown", f"left after full teardown: {out['leftovers']}")
            return
        if self._processes(ev, out):
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
        elif name == "mprotect":
            self._expect(out, {"ok", "EINVAL", "ENOMEM"})     # unit-tested in tests/pysvm
        elif name == "mremap":
            self._expect(out, {"ok", "EINVAL", "EFAULT", "ENOMEM"})
        elif name == "rmmod":
            self._expect(out, {"ok", "EBUSY", "ENOENT"})
        elif name in ("cpu_write", "cpu_read"):
            pass  # checked by _plain
        elif res != "ok":
            raise Fail("result", f"unexpected {res}: {out.get('message')}")

    def _processes(self, ev: dict[str, Any], out: dict[str, Any]) -> bool:
        """Process lifetimes: start, exit, and events naming a process that is not live
        (ESRCH). True when the event is fully checked here."""
        name = ev.get("ev")
        if name == "process_start":
            live = ev["name"] in self.shadows
            self._expect(out, {"EEXIST"} if live else {"ok"})
            if not live:
                self.shadows[ev["name"]] = {}
                self.read_onlys[ev["name"]] = set()
            return True
        proc = ev.get("process", MAIN_PROCESS) if name != "process_exit" else ev["process"]
        if name not in ("process_exit", "vm_create", "mmap", "munmap", "mremap", "mprotect",
                        "cpu_write", "cpu_read", "invalidate"):
            return False
        if proc not in self.shadows:
            self._expect(out, {"ESRCH"})
            return True
        if name == "process_exit":
            self._expect(out, {"ok"})
            del self.shadows[proc]
            del self.read_onlys[proc]
            for vm in [v for v, p in self.vm_process.items() if p == proc]:
                del self.vm_process[vm]
            return True
        if name == "vm_create" and out.get("result") == "ok":
            self.vm_process[ev["vm"]] = proc
        return False

    @staticmethod
    def _expect(out: dict[str, Any], ok: set[str]) -> None:
        if out.get("result") not in ok:
            raise Fail("result", f"result {out.get('result')} (expected one of "
                        f"{sorted(ok)}): {out.get('message')}")

    def _plain(self, ev: dict[str, Any], out: dict[str, Any], injected: bool = False) -> None:
        """Apply a non-GPU event's effect on the shadow (and check reads)."""
        name = ev.get("ev")
        ok = out.get("result") == "ok"
        if name not in ("mmap", "munmap", "mremap", "mprotect", "cpu_write", "cpu_read"):
            return
        if injected and self._processes(ev, out):
            return
        shadow, read_only = self._shadow_of(ev), self._read_only_of(ev)
        if name == "mmap" and ok:
            for a in range(ev["addr"], ev["addr"] + ev["size"], PAGE):
                shadow[a] = 0
                (read_only.add if ev.get("read_only") else read_only.discard)(a)
        elif name == "munmap" and ok:
            for a in range(ev["addr"], ev["addr"] + ev["size"], PAGE):
                shadow.pop(a, None)
                read_only.discard(a)
        elif name == "mprotect" and ok:
            end = ev["addr"] + -(-ev["size"] // PAGE) * PAGE
            for a in range(ev["addr"], end, PAGE):
                (read_only.add if ev["read_only"] else read_only.discard)(a)
        elif name == "mremap":
            if ok:
                self._mremap(ev, out["addr"], shadow, read_only)
        elif name in ("cpu_write", "cpu_read"):
            mapped = all(a in shadow for a in range(ev["addr"], ev["addr"] + ev["size"], PAGE))
            if mapped and name == "cpu_write" and any(
                    a in read_only for a in range(ev["addr"], ev["addr"] + ev["size"], PAGE)):
                mapped = False      # a store to a read-only page is a SIGSEGV too
            want = "ok" if mapped else "EFAULT"
            if out.get("result") != want:
                raise Fail("result", f"{'injected ' if injected else ''}{name} of "
                            f"[{ev['addr']:#x}, +{ev['size']:#x}) gave {out.get('result')}, "
                            f"expected {want} ({'mapped' if mapped else 'not mapped'}): "
                            f"{out.get('message')}")
            if not ok:
                return
            for i, a in enumerate(range(ev["addr"], ev["addr"] + ev["size"], PAGE)):
                if name == "cpu_write":
                    shadow[a] = ev.get("value", 0)
                elif out["data"][i] != shadow[a]:
                    raise Fail("data", f"cpu_read at {a:#x} returned {out['data'][i]}, "
                                f"last value written was {shadow[a]}")

    @staticmethod
    def _mremap(ev: dict[str, Any], new: int, shadow: dict[int, int],
                read_only: set[int]) -> None:
        """A process's shadow and read-only set after a successful mremap() that returned
        ``new``: the pages of the old span that were mapped move to the same offsets from
        ``new`` (a pure move keeps the gaps), growth maps zero pages, the old span goes
        (or, with dontunmap, stays as zero pages) and a fixed target span was unmapped
        first."""
        addr = ev["addr"]
        old = -(-ev["old_size"] // PAGE) * PAGE
        size = -(-ev["new_size"] // PAGE) * PAGE
        flags = ev.get("flags", [])
        keep = min(old, size)
        moved = {k: (shadow[addr + k], addr + k in read_only)
                 for k in range(0, old, PAGE) if addr + k in shadow}
        ro_all = any(r for _, r in moved.values())
        if new != addr or "fixed" in flags:
            if "fixed" in flags:
                for a in range(new, new + size, PAGE):
                    shadow.pop(a, None)
                    read_only.discard(a)
            for k in moved:
                if "dontunmap" in flags:
                    shadow[addr + k] = 0
                else:
                    shadow.pop(addr + k, None)
                    read_only.discard(addr + k)
        else:
            for k in range(size, old, PAGE):
                shadow.pop(addr + k, None)
                read_only.discard(addr + k)
        for k in range(0, size, PAGE):
            if k < keep and k not in moved:
                continue                    # a gap between the moved mappings
            value, ro = moved.get(k, (0, ro_all))
            shadow[new + k] = value
            (read_only.add if ro else read_only.discard)(new + k)

    def _gpu_access(self, ev: dict[str, Any], out: dict[str, Any]) -> None:
        op, addr, size = ev["op"], ev["addr"], ev["size"]
        value = ev.get("value", 0)
        end = addr + size
        ok = out.get("result") == "ok"
        stop = end if ok else int(out.get("fault_addr", addr))
        data = out.get("data") if ok else None
        shadow = self.shadows.get(self.vm_process.get(ev["vm"], MAIN_PROCESS), {})
        cur = addr
        for rec in out.get("injected", []):
            q = self.pending.get(rec.get("at", ""))
            if not q:
                raise Fail("inject", f"an injection fired at {rec.get('at')} that was not "
                            "pending")
            inner = q.popleft()
            if rec.get("ev") != inner.get("ev"):
                raise Fail("inject", f"injection at {rec.get('at')} ran {rec.get('ev')}, "
                            f"queued was {inner.get('ev')}")
            fa = rec.get("fault_addr")
            if fa is None or not addr <= fa < end:
                raise Fail("inject", f"injection fired outside this access (fault {fa})")
            self._gpu_pages(shadow, op, cur, max(cur, fa), value, data, addr)
            cur = max(cur, fa)
            self._expect_injected(inner, rec)
            self._plain(inner, rec, injected=True)
        if cur > stop:
            raise Fail("gpu", f"the access failed at {stop:#x} before a later injection")
        self._gpu_pages(shadow, op, cur, stop, value, data, addr)
        if not ok:
            self._check_gpu_errno(ev, out, stop, shadow)

    @staticmethod
    def _expect_injected(inner: dict[str, Any], rec: dict[str, Any]) -> None:
        name = inner.get("ev")
        if name in ("cpu_write", "cpu_read"):
            return  # checked against the shadow in _plain
        if rec.get("result") != "ok":
            raise Fail("result", f"injected {name} gave {rec.get('result')}: "
                        f"{rec.get('message')}")

    @staticmethod
    def _gpu_pages(shadow: dict[int, int], op: str, lo: int, hi: int, value: int,
                   data: list[int] | None, base: int) -> None:
        """The GPU access's effect on the shadow of the VM's process (and its reads)."""
        for a in range(lo, hi, PAGE):
            if a not in shadow:
                raise Fail("gpu", f"GPU {op} of {a:#x} succeeded but the CPU does not map it")
            if op == "write":
                shadow[a] = value
            elif op == "atomic":
                shadow[a] += 1
            elif data is not None and data[(a - base) // PAGE] != shadow[a]:
                raise Fail("data", f"GPU read at {a:#x} returned {data[(a - base) // PAGE]}, "
                            f"last value written was {shadow[a]}")

    def _check_gpu_errno(self, ev: dict[str, Any], out: dict[str, Any], f: int,
                         shadow: dict[int, int]) -> None:
        res = str(out.get("result"))
        vm = self.engine.world.vms.get(ev["vm"])
        if res == "ELOOP":
            raise Fail("livelock", f"fault at {f:#x}: {out.get('message')}")
        if vm is None or (vm.killed and res == "ENOENT"):
            return
        if vm.name in self.quirk_killed and res == "EBUSY":
            return      # the collector inside this fault hit the widening quirk
        if vm is not None:
            vma = vm.find_vma_by_addr(f)
            if vma is None or not vma.is_cpu_addr_mirror():
                if res in _NO_VMA_OK:
                    return
                raise Fail("errno", f"GPU {ev['op']} at {f:#x} with no mirror VMA gave {res}: "
                            f"{out.get('message')}")
            if ev["op"] == "atomic" and res == "EACCES":
                if vma.attr.atomic_access == _ATOMIC_CPU:
                    return
                raise Fail("errno", f"GPU atomic at {f:#x} gave EACCES but the VMA's atomic "
                            f"policy is {vma.attr.atomic_access}, not CPU")
        if f not in shadow:
            if res in _UNMAPPED_OK:
                return
            raise Fail("errno", f"GPU {ev['op']} at CPU-unmapped {f:#x} gave {res} (expected "
                        f"one of {sorted(_UNMAPPED_OK)}): {out.get('message')}")
        read_only = self.read_onlys.get(self.vm_process.get(ev["vm"], MAIN_PROCESS), set())
        if f in read_only and res == "EPERM":
            # drivers/gpu/drm/drm_gpusvm.c drm_gpusvm_range_find_or_insert(): a CPU VMA
            # without VM_WRITE is EPERM for any access of a GPU VMA that is not read-only
            # (reads too); hmm_range_fault() also refuses a write fault there
            return
        if ev["op"] == "atomic" and res in _ATOMIC_OK:
            return
        if ev["op"] == "atomic" and res == "ETIME":
            # both releases: a devmem-only fault whose migration fails with tries left
            # goes to get_pages (xe_svm.c __xe_svm_handle_pagefault()), which accepts the
            # range's valid system pages; the atomic refaults until the job times out
            return
        raise Fail("errno", f"GPU {ev['op']} at CPU-mapped {f:#x} failed with {res}: "
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

    def _gc_hook(self, svm: Svm, start: int, end: int, err: int) -> None:
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
        must = (not svm.vm.profile.autoreset_gating) or bool(vma.flags & VmaFlag.MADV_AUTORESET)
        if must and not vma.has_default_mem_attrs():
            self.gc_problems.append(f"after collecting the fully unmapped range [{start:#x}, "
                                    f"{end:#x}) its VMA {vma} keeps non-default attributes "
                                    f"({svm.vm.profile.name})")

    def check_world(self) -> None:
        w = self.engine.world
        for vm in w.vms.values():
            if vm.killed and vm.name not in self.quirk_killed:
                raise Fail("killed", f"VM {vm.name} was killed")
            if vm.svm is not None:
                try:
                    vm.svm.check_invariants()
                except AssertionError as e:
                    raise Fail("invariant", f"{vm.name}: {e}") from None
        self._check_memory()
        if w.devices:
            try:
                check_pagemap_invariants(w.pagemaps_system, w.devices, w.vms)
            except AssertionError as e:
                raise Fail("pagemap", str(e)) from None

    def _check_memory(self) -> None:
        w = self.engine.world
        if set(w.processes) != set(self.shadows):
            raise Fail("process", f"live processes {sorted(w.processes)}, the checker's "
                        f"{sorted(self.shadows)}")
        for proc, shadow in self.shadows.items():
            self._check_address_space(proc, shadow)
        for dev in w.devices.values():
            for vram in dev.vrams:                  # each tile's VRAM region
                used = sum(al.size for al in vram.allocations.values())
                if used != vram.used or vram.used > vram.capacity:
                    raise Fail("vram", f"{vram.name}: used {vram.used:#x}, allocations "
                                f"{used:#x}, capacity {vram.capacity:#x}")
                for kept in vram.allocations.values():
                    if not kept.pages:
                        raise Fail("vram", f"{vram.name}: allocation {kept!r} without pages "
                                   "kept")

    def _check_address_space(self, proc: str, shadow: dict[int, int]) -> None:
        """One process's pages against its shadow; its device pages are live ones."""
        mm = self.engine.world.processes[proc].mm
        where = "" if proc == MAIN_PROCESS else f" (process {proc})"
        mapped = sum(v.end - v.start for v in mm.vmas()) // PAGE
        if mapped != len(shadow):
            raise Fail("data", f"the CPU maps {mapped} pages, the shadow {len(shadow)}{where}")
        # Every mapped page holds the shadow's value, read from the page table one CPU
        # mapping at a time (no object per page); with the count above, the shadow covers
        # exactly the mapped pages.
        populated = 0
        for v in mm.vmas():
            rs, xs = mm.slots(v.start, v.end)
            populated += len(rs) - rs.count(None)
            addrs = range(v.start, v.end, PAGE)
            want = list(map(shadow.get, addrs))
            got = entry_values(rs, xs)
            if got != want:
                k = next(k for k, (g, w) in enumerate(zip(got, want, strict=True)) if g != w)
                if want[k] is None:
                    raise Fail("data", f"mapped page {addrs[k]:#x} is not in the shadow{where}")
                raise Fail("data", f"page {addrs[k]:#x} holds {got[k]} "
                           f"({mm.page_at(addrs[k])!r}), last value written was "
                           f"{want[k]}{where}")
            # device pages: live pages of a live allocation of this process, at this address
            for run in {r for r in rs if r is not None and r.alloc is not None}:
                al = run.alloc
                if not isinstance(al, VramAllocation):
                    continue
                k0 = rs.index(run)
                m = rs.count(run)
                if rs[k0:k0 + m].count(run) == m:           # one stretch: one compare
                    ks = [k0]
                    held = al.pages.holds(addrs[k0], rs[k0:k0 + m], xs[k0:k0 + m])
                else:
                    ks = [k for k, r in enumerate(rs) if r is run]
                    held = all(al.pages.holds(addrs[k], [run], [xs[k]]) for k in ks)
                if al.released or al.mm is not mm or not held:
                    raise Fail("vram", f"device page {addrs[ks[0]]:#x} of a released or "
                               f"foreign allocation {al!r}{where}")
        if populated != mm.populated_count():
            outside = next(a for a, _ in mm.populated_pages() if a not in shadow)
            raise Fail("data", f"populated page {outside:#x} outside every CPU mapping{where}")

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
                raise Fail("teardown", f"{vm.name}: {len(left)} range(s), "
                            f"{svm.gpusvm.notifier_count()} notifier(s), {len(svm.gc_list)} "
                            "queued range(s) left after everything was unmapped and collected")
        # a userptr VMA keeps its MMU notifier while it exists, mapped memory or not
        # (xe_userptr.c: removed only when the VMA is destroyed)
        userptr = sum(1 for vm in w.vms.values() for v in vm if v.notifier is not None)
        mmu = sum(proc.mm.notifier_count() for proc in w.processes.values()) - userptr
        if mmu and not any(vm.killed for vm in w.vms.values()):
            raise Fail("teardown", f"{mmu} MMU notifier(s) still registered (all processes)")
        for dev in w.devices.values():
            for vram in dev.vrams:
                if vram.used:
                    raise Fail("teardown", f"{vram.name}: {vram.used:#x} bytes of VRAM still "
                               "in use")

