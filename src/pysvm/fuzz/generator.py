"""The SVM fuzz case generator: a set-up, then random interleavings of trace events.

What a case holds is listed in :mod:`pysvm.fuzz`. Every event is a plain trace event
(a dict), so a case is a trace ``pysvm replay`` reads.

Kernel: none (test infrastructure).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpuvm_core.fuzz import Chooser
from pysvm.xe.host import INJECTION_POINTS

__all__ = ["HEAP", "HEAP_SIZE", "HEAP_PAGES", "MIRROR", "RANDOM_EVENTS", "Ctx", "step", "PAGE",
           "SZ_2M", "SZ_64K"]

#: The events :func:`step` draws (directly or injected inside a fault), the names
#: ``pysvm fuzz --exclude-event`` accepts.
RANDOM_EVENTS = ("bind", "cpu_read", "cpu_write", "evict", "gc", "gpu_access", "inject",
                 "invalidate", "madvise", "mmap", "munmap", "prefetch", "ranges", "rmmod",
                 "run_workers", "unbind_device")

PAGE = 4096
SZ_64K = 64 << 10
SZ_2M = 2 << 20
#: Where the fuzzed heap lives and how big it is (two 2 MiB chunks).
HEAP = 1 << 30
HEAP_SIZE = 2 * SZ_2M
HEAP_PAGES = HEAP_SIZE // PAGE
#: The CPU-address mirror covers the x86-64 user address space.
MIRROR = 1 << 47


@dataclass
class Ctx:
    profile: str
    two: bool
    vms: list[str]
    value: int = 1
    unbound: bool = False
    #: gpu0's tiles (1 or 2; gpu1 always has one): vm0's accesses, prefetches and gpu0's
    #: evictions name a tile when there are two.
    tiles: int = 1


def _evict(rng: Chooser, ctx: Ctx) -> dict[str, Any]:
    """An eviction of a device's VRAM: every tile's, or with two tiles sometimes one."""
    dev = rng.choice(("gpu0", "gpu1") if ctx.two else ("gpu0",))
    ev: dict[str, Any] = {"ev": "evict", "device": dev}
    if dev == "gpu0" and ctx.tiles > 1 and rng.randint(0, 1):
        ev["tile"] = rng.randint(0, ctx.tiles - 1)
    return ev


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


def _value(ctx: Ctx) -> int:
    ctx.value += 1
    return ctx.value * 10


def _async_event(rng: Chooser, ctx: Ctx) -> dict[str, Any]:
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
        return _evict(rng, ctx)
    return {"ev": "invalidate", "addr": addr, "size": size,
            "event": rng.choice(("clear", "protection_vma", "migrate"))}


def step(rng: Chooser, ctx: Ctx) -> dict[str, Any]:
    r = rng.randint(0, 99)
    vm = rng.choice(ctx.vms)
    addr, size = _span(rng)
    if r < 28:
        op = rng.choice(("read", "read", "write", "write", "atomic"))
        size = min(size, 16 * PAGE) if rng.randint(0, 3) else size
        ev: dict[str, Any] = {"ev": "gpu_access", "vm": vm, "addr": addr, "size": size, "op": op}
        if op == "write":
            ev["value"] = _value(ctx)
        if vm == "vm0" and ctx.tiles > 1:
            ev["tile"] = rng.randint(0, ctx.tiles - 1)
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
        regions: list[Any] = ["vram", "system"]
        if vm == "vm0" and ctx.tiles > 1:
            regions.append(2)           # prefetch_mem_region_instance 2: tile 1's VRAM
        return {"ev": "prefetch", "vm": vm, "addr": addr, "range": size,
                "region": rng.choice(regions)}
    if r < 71:
        return _evict(rng, ctx)
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
        if rng.randint(0, 1):           # both releases have the flag (v6.18 included)
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

