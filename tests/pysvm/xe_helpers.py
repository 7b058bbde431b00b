"""Helpers shared by the Xe-layer tests (not a test module)."""

from __future__ import annotations

from typing import Any

from pysvm.attr import BindFlag
from pysvm.bo import Bo
from pysvm.device import Device
from pysvm.vm import Vm
from pysvm.world import World

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


def make_vm(profile: str = "6.18", *, fault_mode: bool = True, smem_atomics: bool = False,
            discrete: bool = True) -> Vm:
    w = World(profile)
    dev = Device("gpu0", 256 * M if discrete else 0, discrete, smem_atomics, fd=w.next_fd())
    w.devices["gpu0"] = dev
    vm = Vm(w, "vm0", dev, fault_mode)
    w.vms["vm0"] = vm
    return vm


def make_bo(vm: Vm, name: str, size: int, placements: tuple[str, ...]) -> Bo:
    bo = Bo(name, vm.world.next_handle(), vm.device, size, placements)
    vm.world.bos[name] = bo
    return bo


def layout(vm: Vm) -> list[tuple[int, int]]:
    return [(v.addr, v.range) for v in vm]


def tree_matches(vm: Vm) -> bool:
    """The Vma index and the gpuvm tree hold the same intervals."""
    return [(va.addr, va.range) for va in vm.gpuvm] == layout(vm)
