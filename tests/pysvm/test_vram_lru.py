"""Eviction under VRAM pressure (pysvm.xe.vram.Vram.alloc): the least recently used
allocations go first, one at a time, skipping the kept ones, until the request fits, as
TTM's LRU eviction does for xe_svm_bo_evict(); each victim counts in
``evictions_pressure``. Checked against a plain list model of the LRU."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from pysvm.errors import XeError
from pysvm.mm.mmap import PAGE_SIZE, Mm
from pysvm.xe.vram import Vram, VramAllocation

# A SimpleNamespace stands in for the device, which a compiled Vram refuses.
pytestmark = pytest.mark.pure_model

A = 0x10_0000_0000
K4 = PAGE_SIZE


def _populate(vram: Vram, mm: Mm, addr: int, npages: int) -> VramAllocation:
    alloc = vram.alloc(mm, addr, npages * K4)
    alloc.pages.set_run(addr, mm.migrate_vma_run(addr, addr + npages * K4, alloc))
    return alloc


def _reference(lru: list[tuple[int, int]], capacity: int, size: int,
               keep: set[int]) -> tuple[list[int], bool]:
    """The victims (ids, in order) and whether the request then fits, for an LRU of
    ``(id, bytes)`` from least to most recently used."""
    used = sum(b for _, b in lru)
    victims = []
    for aid, b in lru:
        if capacity - used >= size:
            break
        if aid in keep:
            continue
        victims.append(aid)
        used -= b
    return victims, capacity - used >= size


@pytest.mark.parametrize("seed", range(40))
def test_pressure_evicts_the_lru_prefix_that_is_not_kept(seed: int) -> None:
    rng = random.Random(seed)
    mm = Mm()
    mm.mmap(A, 1 << 30)
    capacity = rng.randrange(8, 33) * K4
    vram = Vram(SimpleNamespace(pagemap=None, name="gpu0"), capacity)  # type: ignore[arg-type]
    allocs: list[VramAllocation] = []
    addr = A
    while True:                                     # fill it (no pressure yet)
        n = rng.randrange(1, 5)
        if vram.capacity - vram.used < n * K4:
            break
        allocs.append(_populate(vram, mm, addr, n))
        addr += n * K4
    lru = [(a.id, a.size) for a in vram.allocations.values()]
    assert [i for i, _ in lru] == [a.id for a in allocs]
    keep = tuple(rng.sample(allocs, rng.randrange(0, min(3, len(allocs)) + 1)))
    size = rng.randrange(1, capacity // K4 + 1) * K4
    want, fits = _reference(lru, capacity, size, {a.id for a in keep})
    before = dict(vram.stats)
    try:
        new = vram.alloc(mm, addr, size, keep=keep)
    except XeError:
        assert not fits
        new = None
    else:
        assert fits
    evicted = [a.id for a in allocs if a.released]
    assert evicted == want
    assert vram.stats["evictions_pressure"] - before.get("evictions_pressure", 0) == len(want)
    left = [a.id for a in vram.allocations.values()]
    assert left == [i for i, _ in lru if i not in want] + ([new.id] if new else [])
    for a in allocs:                                # evicted values came home intact
        if a.released:
            assert mm.page_at(a.start) is not None and mm.page_at(a.start).alloc is None
