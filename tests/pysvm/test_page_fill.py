"""The page table's slice paths (pysvm.mm.mmap.Mm): a CPU write over whole 2 MiB blocks
makes one run of pages holding the value, reads and migrations of one run are slices;
everything a caller can observe must be what a page-by-page table would give.

Checked against a plain reference (address -> value, populated or not) over random
sequences of CPU writes and reads, migrations to a device and back, munmap/mmap, mremap
and the page-level accessors.
"""

from __future__ import annotations

import random

import pytest
from mm_helpers import FakeOwner

from pysvm.mm.mmap import MREMAP_FIXED, MREMAP_MAYMOVE, PAGE_SIZE, Mm, Page

P = PAGE_SIZE
BLOCK = 512 * P            # 2 MiB: one page-table block
A = 0x10_0000_0000         # the mapping: 4 blocks
N = 4 * BLOCK // P
B = 0x20_0000_0000         # an mremap target




def _span(rng: random.Random) -> tuple[int, int]:
    """A page span inside the mapping, often whole blocks (the filled path)."""
    if rng.random() < 0.5:
        lo = rng.randrange(4)
        hi = rng.randrange(lo + 1, 5)
        return A + lo * BLOCK, (hi - lo) * BLOCK
    lo = rng.randrange(N)
    n = rng.randrange(1, N - lo + 1)
    return A + lo * P, n * P


@pytest.mark.parametrize("seed", range(40))
def test_filled_blocks_read_as_the_page_table_would(seed: int) -> None:
    _scenario(seed, set())


def _scenario(seed: int, uniform_seen: set[bool]) -> None:
    """Random writes, reads, migrations, unmaps, mremaps and hmm_range_fault() calls
    checked against a dict of values; ``uniform_seen`` collects, for each
    ``FaultedPages.uniform`` answer, whether it was about system pages."""
    rng = random.Random(seed)
    mm = Mm()
    mm.mmap(A, 4 * BLOCK)
    ref: dict[int, int] = {}            # page index -> value (present: populated)
    dev = FakeOwner()
    for _ in range(30):
        op = rng.choice(["write", "write", "read", "migrate", "munmap", "mremap", "page_at",
                         "hmm"])
        addr, size = _span(rng)
        lo, n = (addr - A) // P, size // P
        if op == "write":
            v = rng.randrange(1, 1000)
            mm.cpu_write(addr, size, v)
            ref.update({k: v for k in range(lo, lo + n)})
        elif op == "read":
            assert mm.cpu_read(addr, size) == [ref.get(k, 0) for k in range(lo, lo + n)]
            ref.update({k: ref.get(k, 0) for k in range(lo, lo + n)})
        elif op == "migrate":
            before = mm.collectable(addr, addr + size)
            want = sum(1 for k in range(lo, lo + n)
                       if (p := mm.page_at(A + k * P)) is None or p.alloc is None)
            assert before == want
            if before == n:
                new = mm.migrate_vma_pages(addr, addr + size, dev)
                assert [p.value for p in new] == [ref.get(k, 0) for k in range(lo, lo + n)]
                assert all(mm.page_at(addr + i * P) == p for i, p in enumerate(new))
                assert all(p.alloc is dev for p in new)
                ref.update({k: ref.get(k, 0) for k in range(lo, lo + n)})
        elif op == "hmm":
            # hmm_range_fault() keeps the device's pages for their owner and brings them
            # back for another; what it says of the pages (FaultedPages.uniform) is true.
            keep = rng.random() < 0.7
            got = mm.hmm_range_fault(addr, addr + size, write=True,
                                     owner=dev.owner if keep else None)
            assert all(mm.page_at(addr + i * P) == p for i, p in enumerate(got.pages))
            assert [p.value for p in got.pages] == [ref.get(k, 0) for k in range(lo, lo + n)]
            allocs = {p.alloc for p in got.pages}
            if got.uniform:
                assert allocs == {got.alloc}
                uniform_seen.add(got.alloc is None)
            if not keep:
                assert allocs == {None}
            ref.update({k: ref.get(k, 0) for k in range(lo, lo + n)})
        elif op == "munmap":
            mm.munmap(addr, size)
            mm.mmap(addr, size)
            for k in range(lo, lo + n):
                ref.pop(k, None)
        elif op == "mremap":
            mm.mremap(A, 4 * BLOCK, 4 * BLOCK, MREMAP_MAYMOVE | MREMAP_FIXED, B)
            mm.mremap(B, 4 * BLOCK, 4 * BLOCK, MREMAP_MAYMOVE | MREMAP_FIXED, A)
        else:
            a = A + rng.randrange(N) * P
            p = mm.page_at(a)
            k = (a - A) // P
            assert (p is None) == (k not in ref)
            assert p is None or p.value == ref[k]
            assert mm.page_at(a) == p           # the same page on every look
        # what the page table holds, page by page
        assert mm.check_pages(A, A + 4 * BLOCK) == (len(ref) == N)
    for k in range(N):
        p = mm.page_at(A + k * P)
        assert (p is None) == (k not in ref), k
        assert p is None or p.value == ref[k]
    assert sorted((a - A) // P for a, _ in mm.populated_pages()) == sorted(ref)


def test_hmm_range_fault_said_uniform_for_system_and_device_pages() -> None:
    # The randomized test above checks every uniform answer; it must meet both kinds
    # (all system pages, all one allocation's) for those checks to mean anything.
    seen: set[bool] = set()
    for seed in range(40):
        _scenario(seed, seen)
    assert seen == {True, False}


def test_whole_block_write_is_one_run_of_real_pages() -> None:
    mm = Mm()
    mm.mmap(A, 2 * BLOCK)
    mm.cpu_write(A, 2 * BLOCK, 7)
    assert mm.check_pages(A, A + 2 * BLOCK)
    assert mm.cpu_read(A + BLOCK - P, 2 * P) == [7, 7]
    assert mm.collectable(A, A + 2 * BLOCK) == 1024
    first = mm.page_at(A + P)
    assert first is not None and first.value == 7 and first.alloc is None
    first.value = 9                     # a write through the view changes that page only
    assert mm.cpu_read(A, 3 * P) == [7, 9, 7]
    # migrating the other block makes its device pages from the values in one run
    dev = FakeOwner()
    new = mm.migrate_vma_pages(A + BLOCK, A + 2 * BLOCK, dev)
    assert len(new) == 512 and {p.value for p in new} == {7}
    assert mm.collectable(A, A + 2 * BLOCK) == 512
    # a CPU read faults them back (the owner's migrate_to_ram)
    assert mm.cpu_read(A + BLOCK, P) == [7]
    mm.munmap(A, 2 * BLOCK)
    assert len(dev.freed) == 511
    assert not mm.check_pages(A, A + P)
    assert list(mm.populated_pages()) == []


def test_fresh_block_read_populates_zero_pages() -> None:
    mm = Mm()
    mm.mmap(A, BLOCK + P)
    assert mm.cpu_read(A, BLOCK + P) == [0] * 513
    assert mm.check_pages(A, A + BLOCK + P)
    page = mm.page_at(A + 5 * P)
    assert page is not None and page.value == 0


@pytest.mark.parametrize("seed", range(30))
def test_migrate_pages_to_system_follows_the_per_page_rule(seed: int) -> None:
    """Mm.migrate_pages_to_system() replaces each given device page that is still mapped
    at its address by a new system page holding its value, and leaves every other slot
    alone, whatever the list looks like: a run in address order (the one-slice path), a
    run spanning two blocks, pages moved meanwhile, a shuffled or repeated list."""
    rng = random.Random(seed)
    mm = Mm()
    mm.mmap(A, 4 * BLOCK)
    dev = FakeOwner()
    lo = rng.randrange(N - 600)
    n = rng.randrange(1, 600)
    addr = A + lo * P
    mm.cpu_write(addr, n * P, 7)
    mm.cpu_write(addr + rng.randrange(n) * P, P, 9)
    pages = mm.migrate_vma_pages(addr, addr + n * P, dev)
    moves = list(zip(range(addr, addr + n * P, P), pages, strict=True))
    shape = rng.choice(["run", "run", "stale", "shuffled", "repeated", "gap"])
    if shape == "stale":        # one page was replaced since: it must stay as it is now
        k = rng.randrange(n)
        mm.set_page(moves[k][0], Page(pages[k].value, dev))
    elif shape == "shuffled":
        rng.shuffle(moves)
    elif shape == "repeated":
        k = rng.randrange(n)
        moves.insert(k, moves[k])
        moves.pop()
    elif shape == "gap" and n > 2:
        del moves[rng.randrange(1, n - 1)]
    before = {a: mm.page_at(a) for a in range(addr, addr + n * P, P)}
    want = {a: (p.value, None) if any(m[0] == a and m[1] == p for m in moves) else p
            for a, p in before.items()}
    mm.migrate_pages_to_system(moves)
    for a, w in want.items():
        got = mm.page_at(a)
        assert got is not None
        if isinstance(w, tuple):
            assert got != before[a] and (got.value, got.alloc) == w, hex(a)
        else:
            assert got == w, hex(a)
