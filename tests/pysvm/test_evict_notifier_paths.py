"""The fast paths of eviction (drm_pagemap_evict_to_ram()) and of the MMU notifier walk
(mm/mmu_notifier.c mn_itree_invalidate()) give what the general paths give."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest

from pysvm.mm import mmap as mmap_mod
from pysvm.mm.mmap import PAGE_SIZE, Mm, Page
from pysvm.mm.mmu_notifier import IntervalNotifier, NotifierRange, NotifyEvent
from pysvm.xe import vram as vram_mod
from pysvm.xe.vram import DevicePages, Vram, VramAllocation, evict_to_ram

A = 0x10_0000_0000
K4 = PAGE_SIZE


# === DevicePages runs =========================================================================

def _run_addrs(runs: list[tuple[int, int]]) -> list[int]:
    """The addresses of the slots in ``runs`` of a DevicePages at ``A``."""
    return [A + k * K4 for i, j in runs for k in range(i, j)]


@pytest.mark.parametrize("seed", range(20))
def test_runs_and_entries_in_runs_match_items_and_live(seed: int) -> None:
    rnd = random.Random(seed)
    n = rnd.choice([1, 2, 7, 16, 64])
    dp = DevicePages(A, n * K4)
    for k in range(n):
        if rnd.random() < 0.6:
            dp[A + k * K4] = Page(k)
    runs = dp.runs()
    assert runs is not None
    addrs = [a for a, _ in dp.items()]
    assert _run_addrs(runs) == addrs
    # runs are maximal: neither touching nor empty
    assert all(i < j for i, j in runs)
    assert all(j0 < i1 for (_, j0), (i1, _) in zip(runs, runs[1:], strict=False))
    assert _entries_as_pages(dp, runs) == dp.live(addrs)
    # runs_among(): the same runs over any distinct addresses, in or out of the span,
    # aligned or not, in any order
    cand = [A + k * K4 for k in range(-2, n + 2)] + [A + 1, A + 5 * K4 + 8]
    for _ in range(5):
        sub = rnd.sample(cand, rnd.randrange(len(cand) + 1))
        among = dp.runs_among(sub)
        assert among is not None and _run_addrs(among) == [a for a, _ in dp.live(sub)]
        assert all(i < j for i, j in among)
        assert all(j0 < i1 for (_, j0), (i1, _) in zip(among, among[1:], strict=False))
    assert dp.runs_among(addrs) == runs and dp.runs_among([]) == []
    # holes punched after the runs were taken are skipped, as live() skips them
    for a in addrs[::3]:
        del dp[a]
    assert _entries_as_pages(dp, runs) == dp.live(addrs)
    other = DevicePages(A, n * K4)
    for a, p in dp.items():
        other[a] = p
    for part in (runs[:1], runs):       # first one run, then all
        other.discard(other.live(_run_addrs(part)))
        assert dp.clear_runs(part) is bool(other)    # its answer: any page left
        assert dp.items() == other.items() and len(dp) == len(other)
    assert not dp and len(dp) == 0


def _entries_as_pages(dp: DevicePages, runs: list[tuple[int, int]]) -> list[tuple[int, Page]]:
    at, rs, xs = dp.entries_in_runs(runs)
    return [(a, Page.of(r, x)) for a, r, x in zip(at, rs, xs, strict=True)]


def _set_pages(dp: DevicePages, addr: int, pages: list[Page]) -> None:
    dp.set_entries(addr, [p.run for p in pages], [p.idx for p in pages])


def test_set_entries_installs_inside_the_allocation_only() -> None:
    dp = DevicePages(A, 4 * K4)
    pages = [Page(k) for k in range(2)]
    for addr, n in [(A - K4, 1), (A + 4 * K4, 0), (A + 4 * K4, 1), (A + 3 * K4, 2),
                    (A + 1, 1)]:                  # before, at/after the end, unaligned
        with pytest.raises(KeyError):
            _set_pages(dp, addr, pages[:n])
        assert not dp and dp.items() == []       # changes nothing
    _set_pages(dp, A + 2 * K4, pages)
    _set_pages(dp, A + 3 * K4, pages[1:])           # over a live page: counted once
    assert dp.items() == [(A + 2 * K4, pages[0]), (A + 3 * K4, pages[1])] and len(dp) == 2
    _set_pages(dp, A + 4 * K4 - K4, [])             # an empty span inside: nothing to do
    assert len(dp) == 2


def test_runs_is_none_when_a_page_lives_outside_the_span() -> None:
    dp = DevicePages(A, 4 * K4)
    dp[A] = Page(1)
    dp.move([(A, A + 64 * K4, dp.get(A))])      # as mremap() carries it
    assert dp.runs() is None and dp.runs_among([A, A + 64 * K4]) is None
    assert DevicePages(A, 4 * K4).runs() == []


# === evict_to_ram =============================================================================

def _setup(holes: list[int], npages: int = 16) -> tuple[Mm, VramAllocation,
                                                         list[tuple[int, int]]]:
    """An allocation of ``npages`` device pages (values 100 + k) with the pages at
    ``holes`` moved home first; a notifier over the span records each call."""
    mm = Mm()
    mm.mmap(A, npages * K4)
    device = SimpleNamespace(pagemap=None, name="gpu0")
    vram = Vram(device, 64 * npages * K4)   # type: ignore[arg-type]
    mm.cpu_write(A, npages * K4, 0)
    for k in range(npages):
        mm.cpu_write(A + k * K4, K4, 100 + k)
    alloc = vram.alloc(mm, A, npages * K4)
    alloc.pages.set_run(A, mm.migrate_vma_run(A, A + npages * K4, alloc))
    for k in holes:
        vram_mod._move_to_system(mm, alloc, [A + k * K4])
    calls: list[tuple[int, int]] = []

    def record(n: IntervalNotifier, r: NotifierRange, seq: int) -> None:
        assert r.event is NotifyEvent.MIGRATE
        calls.append((r.start, r.end))
    mm.interval_notifier_insert(A, A + npages * K4, record)
    return mm, alloc, calls


@pytest.mark.pure_model   # fakes or a patched model function
@pytest.mark.parametrize("holes", [[], [0], [15], [3, 4, 9], [0, 2, 4, 6, 8, 10, 12, 14]])
def test_evicting_a_whole_allocation_takes_the_runs_of_the_general_path(
        holes: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    results = []
    for general in (False, True):
        with monkeypatch.context() as m:
            if general:         # the address-by-address walk of a moved-away page
                m.setattr(DevicePages, "runs", lambda self: None)
                m.setattr(DevicePages, "runs_among", lambda self, addrs: None)
            mm, alloc, calls = _setup(holes)
            moved = evict_to_ram(alloc)
            pages = mm.pages(A, A + 16 * K4)
            results.append((moved, calls, [p.value if p else None for p in pages],
                            [p.alloc if p else None for p in pages], alloc.released,
                            alloc.vram.used, dict(alloc.vram.stats)))
    assert results[0] == results[1]
    moved, calls, values, allocs, released, used, _ = results[0]
    assert moved == 16 - len(holes)
    assert values == [100 + k for k in range(16)]
    assert allocs == [None] * 16 and released and used == 0
    # one notifier call per run of device pages
    expect = []
    k = 0
    while k < 16:
        if k in holes:
            k += 1
            continue
        j = k
        while j < 16 and j not in holes:
            j += 1
        expect.append((A + k * K4, A + j * K4))
        k = j
    assert calls == expect


@pytest.mark.pure_model   # fakes or a patched model function
@pytest.mark.parametrize("seed", range(12))
def test_moving_some_addresses_by_runs_matches_the_address_walk(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # _move_to_system(addrs) (a CPU fault's window, evict_range()) goes by the runs of the
    # addresses' live slots while every page is at its own slot: the same notifier calls,
    # pages, counters and release as the address-by-address walk, also when a notifier
    # callback frees pages of the allocation meanwhile.
    rnd = random.Random(seed)
    holes = rnd.sample(range(16), rnd.randrange(4))
    addrs = rnd.sample([A + k * K4 for k in range(-1, 18)], rnd.randrange(1, 19))
    steal = rnd.choice([[], [rnd.randrange(16)]])
    results = []
    for general in (False, True):
        with monkeypatch.context() as m:
            if general:
                m.setattr(DevicePages, "runs_among", lambda self, addrs: None)
            mm, alloc, calls = _setup(holes)
            stolen: list[int] = []

            def free_one(n: IntervalNotifier, r: NotifierRange, seq: int,
                         mm: Mm = mm, alloc: VramAllocation = alloc,
                         stolen: list[int] = stolen) -> None:
                if steal and not stolen:
                    stolen.append(A + steal[0] * K4)
                    vram_mod._move_to_system(mm, alloc, list(stolen))
            mm.interval_notifier_insert(A, A + 16 * K4, free_one)
            moved = vram_mod._move_to_system(mm, alloc, list(addrs))
            pages = mm.pages(A, A + 16 * K4)
            results.append((moved, calls, [p.value if p else None for p in pages],
                            [p.alloc is alloc if p else None for p in pages],
                            [(a, p.value) for a, p in alloc.pages.items()],
                            alloc.released, alloc.vram.used,
                            dict(alloc.vram.stats)))
    assert results[0] == results[1]
    assert [p for p, mine in zip(results[0][2], results[0][3], strict=True) if not mine] \
        == [100 + k for k in range(16) if not results[0][3][k]]     # no value lost


@pytest.mark.pure_model   # fakes or a patched model function
def test_a_notifier_that_frees_pages_is_honoured_by_the_fast_path() -> None:
    # The pages freed by a notifier callback (as a CPU fault inside would) are not moved
    # again: the live pages are read after the notifiers ran.
    mm, alloc, _ = _setup([])
    freed: list[int] = []

    def free_two(n: IntervalNotifier, r: NotifierRange, seq: int) -> None:
        if not freed:
            freed.extend([A + 2 * K4, A + 3 * K4])
            vram_mod._move_to_system(mm, alloc, list(freed))
    mm.interval_notifier_insert(A, A + K4, free_two)
    assert evict_to_ram(alloc) == 14
    assert [p.value for p in mm.pages(A, A + 16 * K4) if p] == [100 + k for k in range(16)]
    assert alloc.released


@pytest.mark.pure_model   # fakes or a patched model function
def test_the_planted_eviction_bug_still_fires_on_eviction() -> None:
    from pysvm.fuzz.planted import planted
    mm, alloc, _ = _setup([5])
    with planted("eviction-loses-a-value"):
        evict_to_ram(alloc)
    page = mm.page_at(A)
    assert page is not None and page.value == 0


# === Mm.invalidate ============================================================================

@pytest.fixture(params=[0, 10**9], ids=["bisect", "scan"])
def notifier_walk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mm.invalidate() always bisecting the notifier starts, or always scanning them."""
    monkeypatch.setattr(mmap_mod, "_NOTIFIER_SCAN", request.param)


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.usefixtures("notifier_walk")
def test_invalidate_calls_every_intersecting_notifier_in_start_order(seed: int) -> None:
    rnd = random.Random(seed)
    mm = Mm()
    calls: list[tuple[int, int, int]] = []
    live: list[tuple[int, IntervalNotifier]] = []

    def cb(idx: int) -> Any:
        def f(n: IntervalNotifier, r: NotifierRange, seq: int) -> None:
            calls.append((idx, seq, r.start))
        return f
    for step in range(200):
        if live and rnd.random() < 0.3:
            _, n = live.pop(rnd.randrange(len(live)))
            mm.interval_notifier_remove(n)
            mm.interval_notifier_remove(n)          # a second remove changes nothing
            continue
        if rnd.random() < 0.5:
            s = rnd.randrange(0, 64) * K4
            e = s + rnd.choice([0, 1, 2, 5, 40]) * K4
            live.append((step, mm.interval_notifier_insert(s, e, cb(step))))
            continue
        s = rnd.randrange(0, 80) * K4
        e = s + rnd.randrange(1, 20) * K4
        before = {id(n): n.invalidate_seq for _, n in live}
        calls.clear()
        mm.invalidate(s, e, NotifyEvent.UNMAP)
        # mn_itree_invalidate()'s in-order interval tree walk: by start, ties in
        # registration order (interval_tree_generic.h inserts an equal start to the right)
        expect = [(idx, before[id(n)] + 1, s)
                  for idx, n in sorted(live, key=lambda t: (t[1].start, t[0]))
                  if n.end > s and n.start < e]
        assert calls == expect
        assert mm.notifier_count() == len(live)


@pytest.mark.usefixtures("notifier_walk")
def test_a_notifier_removed_by_an_earlier_callback_is_not_called() -> None:
    mm = Mm()
    seen: list[str] = []
    second: list[IntervalNotifier] = []

    def first(n: IntervalNotifier, r: NotifierRange, seq: int) -> None:
        seen.append("first")
        mm.interval_notifier_remove(second[0])
        mm.interval_notifier_insert(0, 8 * K4, lambda *_: seen.append("late"))
    mm.interval_notifier_insert(0, 8 * K4, first)
    second.append(mm.interval_notifier_insert(4 * K4, 16 * K4, lambda *_: seen.append("second")))
    mm.invalidate(5 * K4, 6 * K4, NotifyEvent.UNMAP)
    assert seen == ["first"]            # not the removed one, not the one added meanwhile
    mm.invalidate(5 * K4, 6 * K4, NotifyEvent.UNMAP)
    assert seen == ["first", "first", "late"]


@pytest.mark.usefixtures("notifier_walk")
def test_invalidate_meets_a_lower_start_first_whatever_the_registration_order() -> None:
    # mm/mmu_notifier.c mn_itree_invalidate() walks the interval tree in order: a notifier
    # registered later but starting lower is called first.
    mm = Mm()
    seen: list[str] = []
    mm.interval_notifier_insert(8 * K4, 16 * K4, lambda *_: seen.append("high, first in"))
    mm.interval_notifier_insert(0, 16 * K4, lambda *_: seen.append("low, second in"))
    mm.interval_notifier_insert(8 * K4, 9 * K4, lambda *_: seen.append("high, third in"))
    mm.invalidate(8 * K4, 9 * K4, NotifyEvent.UNMAP)
    assert seen == ["low, second in", "high, first in", "high, third in"]
