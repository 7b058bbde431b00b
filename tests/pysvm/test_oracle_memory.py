"""The fuzz oracle's memory check (pysvm.fuzz.oracle.SvmChecker._check_memory) reads the
page table one CPU mapping at a time; each of its findings still fires: a wrong value, a
mapped page missing from the shadow, a populated page outside every mapping, and a device
page its allocation does not hold."""

from __future__ import annotations

from typing import Any

import pytest

from pysvm.fuzz.oracle import Fail, SvmChecker
from pysvm.mm.mmap import Page
from pysvm.world import MAIN_PROCESS

A = 0x4000_0000
K = 4096
M = 1 << 20


def _checker() -> tuple[SvmChecker, Any]:
    """A device, a CPU-mirror VM, 2 MiB mapped and written, half of it moved to VRAM."""
    c = SvmChecker()
    for ev in ({"ev": "device", "name": "gpu0", "vram_mib": 16},
               {"ev": "vm_create", "vm": "vm0", "device": "gpu0", "fault_mode": True},
               {"ev": "bind", "vm": "vm0", "op": "map", "addr": 0, "range": 1 << 47,
                "flags": ["cpu_addr_mirror"]},
               {"ev": "mmap", "addr": A, "size": 2 * M},
               {"ev": "cpu_write", "addr": A, "size": 2 * M, "value": 7},
               {"ev": "madvise", "vm": "vm0", "addr": A, "range": M, "type": "preferred_loc",
                "devmem_fd": 0},
               {"ev": "gpu_access", "vm": "vm0", "addr": A, "size": M, "op": "write",
                "value": 9}):
        c.step(ev)
    mm = c.engine.world.processes[MAIN_PROCESS].mm
    page = mm.page_at(A)
    assert page is not None and page.alloc is not None, "the GPU write did not migrate"
    c._check_memory()                                   # clean as built
    return c, mm


def test_a_wrong_value_is_data() -> None:
    c, mm = _checker()
    mm.page_at(A + M + 5 * K).value = 123               # a system page
    with pytest.raises(Fail, match=r"holds 123.*last value written was 7") as e:
        c._check_memory()
    assert e.value.kind == "data"


def test_a_wrong_device_page_value_is_data() -> None:
    c, mm = _checker()
    mm.page_at(A + 3 * K).value = 1                     # a device page
    with pytest.raises(Fail, match="holds 1") as e:
        c._check_memory()
    assert e.value.kind == "data"


def test_a_mapped_page_missing_from_the_shadow_is_data() -> None:
    c, _ = _checker()
    shadow = c.shadows[MAIN_PROCESS]
    del shadow[A + 7 * K]
    shadow[A + 4 * M] = 0                               # same count, wrong page
    with pytest.raises(Fail, match="not in the shadow") as e:
        c._check_memory()
    assert e.value.kind == "data"


def test_a_populated_page_outside_every_mapping_is_data() -> None:
    c, mm = _checker()
    mm.set_page(A + 8 * M, Page(0))
    with pytest.raises(Fail, match="outside every CPU mapping") as e:
        c._check_memory()
    assert e.value.kind == "data"


def test_a_device_page_its_allocation_does_not_hold_is_vram() -> None:
    c, mm = _checker()
    page = mm.page_at(A + 2 * K)
    assert page is not None and page.alloc is not None
    mm.set_page(A + 2 * K, Page(9, page.alloc))        # same value, another device page
    with pytest.raises(Fail, match="released or foreign allocation") as e:
        c._check_memory()
    assert e.value.kind == "vram"
