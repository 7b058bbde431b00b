"""Helpers shared by the Xe-layer tests (not a test module)."""

from __future__ import annotations

from typing import Any

from pysvm.world import World
from pysvm.xe.attr import BindFlag, VmaMemAttr
from pysvm.xe.bo import Bo
from pysvm.xe.device import DEFAULT_PAT_COH, Device
from pysvm.xe.vm import Vm
from pysvm.xe.vma import Vma

K = 4096
M = 1 << 20
MIRROR = BindFlag.CPU_ADDR_MIRROR


class FakeSvm:
    """Records the Vm -> Svm hook calls; ``ranges`` are [start, end) pairs."""

    def __init__(self, ranges: list[tuple[int, int]] | None = None) -> None:
        self.ranges = list(ranges or [])
        self.calls: list[tuple[Any, ...]] = []

    def garbage_collector_flush(self) -> None:
        self.calls.append(("flush",))

    def has_ranges(self, start: int, end: int) -> bool:
        return any(s < end and start < e for s, e in self.ranges)

    def invalidate_range(self, start: int, end: int) -> list[tuple[int, int]]:
        self.calls.append(("invalidate", start, end))
        return [(s, e - s) for s, e in self.ranges if s < end and start < e]

    def unmap_address_range(self, start: int, end: int) -> None:
        self.calls.append(("unmap", start, end))
        self.ranges = [(s, e) for s, e in self.ranges if not (s < end and start < e)]


class FakePagemap:
    """A refcounted stand-in for a drm_pagemap (get/put only)."""

    owner = None

    def __init__(self) -> None:
        self.refs = 1

    def populate_allowed(self) -> bool:
        return True

    def get(self) -> None:
        self.refs += 1

    def put(self) -> None:
        assert self.refs > 0, "pagemap reference dropped twice"
        self.refs -= 1


def make_vm(profile: str = "6.18", *, fault_mode: bool = True, smem_atomics: bool = False,
            discrete: bool = True, pat_coh: tuple[int, ...] = DEFAULT_PAT_COH) -> Vm:
    w = World(profile)
    dev = Device("gpu0", 256 * M if discrete else 0, discrete, smem_atomics, fd=w.next_fd(),
                 pat_coh=pat_coh)
    w.devices["gpu0"] = dev
    vm = Vm(w, "vm0", dev, fault_mode)
    w.vms["vm0"] = vm
    return vm


def make_bo(vm: Vm, name: str, size: int, placements: tuple[str, ...]) -> Bo:
    bo = Bo(name, vm.host.next_handle(), vm.device, size, placements)
    vm.host.bos[name] = bo
    return bo


def layout(vm: Vm) -> list[tuple[int, int]]:
    return [(v.addr, v.range) for v in vm]


def tree_matches(vm: Vm) -> bool:
    """The Vma index and the gpuvm tree hold the same intervals."""
    return [(va.addr, va.range) for va in vm.gpuvm] == layout(vm)


def attr_key(a: VmaMemAttr) -> tuple[int, int, int, int, int, int]:
    """Every field of xe_vma_mem_attr as plain values (pagemap by identity)."""
    return (a.preferred_loc.devmem_fd, a.preferred_loc.migration_policy,
            id(a.preferred_loc.pagemap) if a.preferred_loc.pagemap is not None else 0,
            a.atomic_access, a.default_pat_index, a.pat_index)


def vma_key(v: Vma) -> tuple[Any, ...]:
    return (v.addr, v.range, int(v.flags), v.bo.name if v.bo else None, v.offset, v.userptr,
            attr_key(v.attr), v.tile_present, v.tile_invalidated)


def snapshot(vm: Vm) -> tuple[Any, ...]:
    """Everything a refused request must leave untouched, as plain values."""
    return (tuple(vma_key(v) for v in vm),
            tuple((va.addr, va.range, va.obj, va.offset) for va in vm.gpuvm),
            tuple((b.name, b.atomic_access, b.cpu_unmaps) for b in vm.host.bos.values()),
            vm.killed, tuple(sorted(vm.host.stats.items())))
