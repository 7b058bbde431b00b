"""mremap() and mprotect() of the process address space (pysvm.mm.mmap.Mm).

Kernel: mm/mremap.c (check_mremap_params(), check_prep_vma(), remap_move(), mremap_to(),
mremap_at(), move_vma(), move_page_tables()) and mm/mprotect.c (do_mprotect_pkey(),
change_protection()).
"""

from __future__ import annotations

import errno

import pytest
from mm_helpers import FakeOwner

from pysvm.errors import XeError
from pysvm.mm.mmap import (
    MREMAP_DONTUNMAP,
    MREMAP_FIXED,
    MREMAP_MAYMOVE,
    PAGE_SIZE,
    TASK_SIZE,
    Mm,
    Page,
)
from pysvm.mm.mmu_notifier import IntervalNotifier, NotifierRange, NotifyEvent
from pysvm.world import World

P = PAGE_SIZE
A = 0x10_0000_0000
B = 0x20_0000_0000
MOVE = MREMAP_MAYMOVE | MREMAP_FIXED
SZ_1M = 1 << 20
SZ_2M = 2 << 20




def _mm(size: int = 4 * P) -> tuple[Mm, list[NotifierRange]]:
    mm = Mm()
    mm.mmap(A, size)
    seen: list[NotifierRange] = []

    def cb(n: IntervalNotifier, r: NotifierRange, seq: int) -> None:
        seen.append(r)

    mm.interval_notifier_insert(0, 1 << 48, cb)
    return mm, seen


def _state(mm: Mm) -> tuple[object, ...]:
    return (tuple((v.start, v.end, v.read_only, v.anonymous) for v in mm.vmas()),
            tuple(sorted((a, id(p.run), p.idx, p.value) for a, p in mm.populated_pages())))


# -- the argument checks, in check_mremap_params() order ---------------------------
@pytest.mark.parametrize("args, code", [
    ((A, 4 * P, 4 * P, 8, 0), errno.EINVAL),                        # unknown flag
    ((A + 1, 4 * P, 4 * P, MOVE | 8, B), errno.EINVAL),             # flag before alignment
    ((A + 1, 4 * P, 4 * P, MOVE, B), errno.EINVAL),                 # addr unaligned
    ((A, 4 * P, 0, MOVE, B + 1), errno.EINVAL),                     # new_len 0
    ((A, 4 * P, TASK_SIZE + P, MREMAP_MAYMOVE, 0), errno.EINVAL),   # new_len past TASK_SIZE
    ((A, 4 * P, 4 * P, MOVE, TASK_SIZE - 2 * P), errno.EINVAL),     # target past TASK_SIZE
    ((A, 4 * P, 4 * P, MOVE, B + 1), errno.EINVAL),                 # new_addr unaligned
    ((A, 4 * P, 4 * P, MREMAP_FIXED, B), errno.EINVAL),             # fixed without maymove
    ((A, 4 * P, 4 * P, MREMAP_DONTUNMAP, B), errno.EINVAL),         # dontunmap w/o maymove
    ((A, 4 * P, 8 * P, MOVE | MREMAP_DONTUNMAP, B), errno.EINVAL),  # dontunmap resizes
    ((A, 4 * P, 4 * P, MOVE, A + 2 * P), errno.EINVAL),             # overlap
    ((B, 4 * P, 4 * P, MOVE, A + 8 * P), errno.EFAULT),             # nothing at addr
    ((A - P, 4 * P, 4 * P, MOVE, B), errno.EFAULT),                 # starts in a hole
    ((A + 2 * P, 4 * P, 8 * P, MOVE, B), errno.EFAULT),             # crosses the VMA end
    ((A, 0, 4 * P, MOVE, B), errno.EINVAL),                         # duplicate a private map
    ((B, 4 * P, 8 * P, MREMAP_MAYMOVE, 0), errno.EFAULT),           # grow: nothing at addr
    ((A, 4 * P, 8 * P, 0, 0), errno.ENOMEM),                        # grow, blocked, no move
    ((A, -1, 4 * P, 0, 0), errno.EINVAL),                           # not an unsigned value
])
def test_bad_arguments_get_the_kernels_errno_and_change_nothing(
        args: tuple[int, int, int, int, int], code: int) -> None:
    mm, seen = _mm()
    mm.mmap(A + 4 * P, P)                 # a neighbour: growing in place is blocked
    mm.cpu_write(A, 4 * P, 3)
    before = _state(mm)
    with pytest.raises(XeError) as ei:
        mm.mremap(*args)
    assert ei.value.errno == code, ei.value
    assert _state(mm) == before
    assert seen == []


def test_a_fixed_move_carries_the_pages_and_notifies_unmap_of_the_old_span() -> None:
    mm, seen = _mm()
    mm.cpu_write(A, 2 * P, 7)             # two pages populated, two never touched
    pages = mm.pages(A, A + 4 * P)
    mm.mmap(B, 4 * P)                     # the target is mapped: MREMAP_FIXED unmaps it
    seen.clear()
    assert mm.mremap(A, 4 * P, 4 * P, MOVE, B) == B
    assert mm.pages(B, B + 4 * P) == pages            # the same Page objects
    assert mm.pages(A, A + 4 * P) == [None] * 4
    assert mm.find_vma(A) is None
    vma = mm.find_vma(B)
    assert vma is not None and (vma.start, vma.end) == (B, B + 4 * P)
    # do_munmap() of the target, move_page_tables(), then unmap_source_vma().
    assert [(r.start, r.end, r.event) for r in seen] == [
        (B, B + 4 * P, NotifyEvent.UNMAP), (A, A + 4 * P, NotifyEvent.UNMAP),
        (A, A + 4 * P, NotifyEvent.UNMAP)]
    assert mm.cpu_read(B, 4 * P) == [7, 7, 0, 0]


def test_device_pages_move_and_their_owner_hears_the_new_addresses() -> None:
    mm, _ = _mm()
    mm.cpu_write(A, 4 * P, 5)
    owner = FakeOwner()
    dev = mm.migrate_vma_pages(A + P, A + 3 * P, owner)
    assert mm.mremap(A, 4 * P, 4 * P, MOVE, B) == B
    assert [mm.page_at(B + P), mm.page_at(B + 2 * P)] == dev      # still device pages
    assert owner.moved == [(A + P, B + P, dev[0]), (A + 2 * P, B + 2 * P, dev[1])]
    assert owner.freed == []                  # moving frees nothing
    assert mm.stats["cpu_faults_on_device_pages"] == 0


def test_dontunmap_leaves_the_old_span_mapped_and_empty() -> None:
    mm, seen = _mm()
    mm.cpu_write(A, 4 * P, 9)
    seen.clear()
    assert mm.mremap(A, 4 * P, 4 * P, MOVE | MREMAP_DONTUNMAP, B) == B
    # Only move_page_tables() notifies: the target held no mapping and the source stays.
    assert [(r.start, r.end, r.event) for r in seen] == [(A, A + 4 * P, NotifyEvent.UNMAP)]
    old = mm.find_vma(A)
    assert old is not None and (old.start, old.end) == (A, A + 4 * P)
    assert mm.pages(A, A + 4 * P) == [None] * 4
    assert mm.cpu_read(A, 4 * P) == [0] * 4          # an empty anonymous mapping
    assert mm.cpu_read(B, 4 * P) == [9] * 4


def test_dontunmap_alone_takes_new_addr_as_a_hint() -> None:
    mm, _ = _mm()
    mm.mmap(B, P)                            # the hint is taken: the next gap is used
    got = mm.mremap(A, 4 * P, 4 * P, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, B)
    assert got == B + P
    assert mm.mremap(A, 4 * P, 4 * P, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, B + 64 * P) \
        == B + 64 * P


def test_a_fixed_move_takes_every_vma_in_the_span_and_keeps_the_gaps() -> None:
    mm, _ = _mm(2 * P)
    mm.mmap(A + 3 * P, 2 * P, read_only=True)
    mm.cpu_write(A, 2 * P, 1)
    assert mm.mremap(A, 5 * P, 5 * P, MOVE, B) == B
    assert [(v.start - B, v.end - B, v.read_only) for v in mm.vmas()] == [
        (0, 2 * P, False), (3 * P, 5 * P, True)]
    assert mm.cpu_read(B, 2 * P) == [1, 1]


def test_resizing_in_place_and_by_moving() -> None:
    mm, _ = _mm()
    mm.cpu_write(A, 4 * P, 4)
    assert mm.mremap(A, 4 * P, 4 * P) == A                      # same size: nothing
    assert mm.mremap(A, 4 * P, 2 * P) == A                      # shrink: the tail goes
    assert [(v.start, v.end) for v in mm.vmas()] == [(A, A + 2 * P)]
    assert mm.mremap(A, 2 * P, 6 * P) == A                      # grow in place
    assert mm.cpu_read(A, 6 * P) == [4, 4, 0, 0, 0, 0]
    mm.mmap(A + 6 * P, P)
    new = mm.mremap(A, 6 * P, 8 * P, MREMAP_MAYMOVE)            # blocked: moves
    assert new != A and mm.find_vma(A) is None
    assert mm.cpu_read(new, 8 * P) == [4, 4] + [0] * 6
    got = mm.mremap(new, 8 * P, 2 * P, MOVE, B)                 # shrink and move
    assert got == B and mm.find_vma(new) is None
    assert mm.cpu_read(B, 2 * P) == [4, 4]


def test_lengths_are_rounded_up_to_pages() -> None:
    mm, _ = _mm()
    assert mm.mremap(A, 4 * P - 1, 4 * P - 100, MOVE, B) == B
    vma = mm.find_vma(B)
    assert vma is not None and vma.end == B + 4 * P


def test_the_protection_moves_with_the_mapping() -> None:
    mm, _ = _mm()
    mm.mprotect(A, 4 * P, read_only=True)
    mm.mremap(A, 4 * P, 4 * P, MOVE, B)
    with pytest.raises(XeError) as ei:
        mm.cpu_write(B, P, 1)
    assert ei.value.errno == errno.EFAULT


# -- mprotect -----------------------------------------------------------------------
def test_mprotect_splits_notifies_and_keeps_the_pages() -> None:
    mm, seen = _mm()
    mm.cpu_write(A, 4 * P, 6)
    owner = FakeOwner()
    dev = mm.migrate_vma_pages(A + P, A + 2 * P, owner)
    seen.clear()
    mm.mprotect(A + P, 2 * P, read_only=True)
    assert [(v.start - A, v.end - A, v.read_only) for v in mm.vmas()] == [
        (0, P, False), (P, 3 * P, True), (3 * P, 4 * P, False)]
    assert [(r.start, r.end, r.event) for r in seen] == [
        (A + P, A + 3 * P, NotifyEvent.PROTECTION_VMA)]
    assert mm.page_at(A + P) == dev[0]                 # the device page stays in VRAM
    with pytest.raises(XeError):
        mm.cpu_write(A + 2 * P, P, 1)
    with pytest.raises(XeError) as ei:
        mm.hmm_range_fault(A + P, A + 2 * P, write=True, owner=None)
    assert ei.value.errno == errno.EPERM
    seen.clear()
    mm.mprotect(A, 4 * P, read_only=True)      # only the parts that change are notified
    assert [(r.start, r.end) for r in seen] == [(A, A + P), (A + 3 * P, A + 4 * P)]
    seen.clear()
    mm.mprotect(A, 4 * P, read_only=False)
    mm.cpu_write(A, 4 * P, 2)
    assert mm.cpu_read(A, 4 * P) == [2] * 4


@pytest.mark.parametrize("addr, size, code", [
    (A + 1, P, errno.EINVAL),            # unaligned start
    (A, 8 * P, errno.ENOMEM),            # runs past the mapping
    (A - P, 2 * P, errno.ENOMEM),        # starts in a hole
    ((1 << 64) - P, 2 * P, errno.ENOMEM),    # wraps
])
def test_mprotect_refusals_change_nothing(addr: int, size: int, code: int) -> None:
    mm, seen = _mm()
    before = _state(mm)
    with pytest.raises(XeError) as ei:
        mm.mprotect(addr, size, read_only=True)
    assert ei.value.errno == code
    assert _state(mm) == before and seen == []


def test_mprotect_of_zero_bytes_does_nothing() -> None:
    mm, seen = _mm()
    mm.mprotect(B, 0, read_only=True)         # not even the mapping check
    assert seen == [] and not mm.find_vma(A).read_only    # type: ignore[union-attr]


# -- the World: events, device pages in VRAM, the SVM ranges ------------------------
def _world(profile: str) -> World:
    w = World(profile)
    w.device(name="gpu0", vram_mib=64)
    w.vm_create(vm="v", device="gpu0", fault_mode=True)
    w.bind(vm="v", op="map", addr=0, range=1 << 47, flags=["cpu_addr_mirror"])
    w.mmap(addr=A, size=SZ_2M)
    w.cpu_write(addr=A, size=SZ_2M, value=5)
    w.gpu_access(vm="v", addr=A, size=2 * P, op="write", value=11)    # the range -> VRAM
    return w


@pytest.mark.parametrize("profile", ["6.18", "newest"])
def test_vram_pages_stay_in_vram_and_follow_the_move(profile: str) -> None:
    w = _world(profile)
    vram = w.devices["gpu0"].vram
    assert vram is not None
    (alloc,) = vram.allocations.values()
    assert alloc.start == A and len(alloc.pages) == SZ_2M // P
    out = w.mremap(addr=A, old_size=SZ_2M, new_size=SZ_2M, flags=["maymove", "fixed"],
                   new_addr=B)
    assert out == {"addr": B}
    # The old range saw MMU_NOTIFY_UNMAP: unmapped, waiting for the collector.
    assert w.ranges(vm="v")["ranges"] == [
        {"addr": A, "range": SZ_2M, "location": "system", "unmapped": True}]
    assert list(vram.allocations.values()) == [alloc]       # nothing migrated or freed
    assert alloc.pages.get(A) is None and alloc.pages.get(B) == w.mm.page_at(B)
    assert sorted(alloc.pages) == list(range(B, B + SZ_2M, P))
    got = w.gpu_access(vm="v", addr=B, size=3 * P, op="read")
    assert got["data"] == [11, 11, 5]
    assert vram.stats["migrations_to_system"] == 0           # read in place, in VRAM
    assert w.ranges(vm="v")["ranges"] == [
        {"addr": B, "range": SZ_2M, "location": "gpu0", "unmapped": False}]
    w.check_invariants()
    # Eviction finds the pages at their new addresses.
    assert w.evict(device="gpu0")["pages"] == SZ_2M // P
    assert vram.used == 0 and alloc.released
    assert w.cpu_read(addr=B, size=3 * P)["data"] == [11, 11, 5]


def test_a_moved_allocation_is_released_when_its_pages_are_unmapped() -> None:
    w = _world("6.18")
    vram = w.devices["gpu0"].vram
    assert vram is not None
    w.mremap(addr=A + SZ_1M, old_size=SZ_1M, new_size=SZ_1M, flags=["maymove", "fixed"],
             new_addr=B)                       # half the allocation moves away
    (alloc,) = vram.allocations.values()
    assert len(alloc.pages) == SZ_2M // P
    w.munmap(addr=A, size=SZ_1M)
    assert not alloc.released and len(alloc.pages) == SZ_1M // P
    w.munmap(addr=B, size=SZ_1M)               # the last pages, at their new address
    assert alloc.released and vram.used == 0


def test_cpu_access_after_the_move_faults_the_device_pages_back() -> None:
    w = _world("6.18")
    w.mremap(addr=A, old_size=SZ_2M, new_size=SZ_2M, flags=["maymove", "fixed", "dontunmap"],
             new_addr=B)
    assert w.cpu_read(addr=A, size=2 * P)["data"] == [0, 0]      # the old span: empty
    assert w.cpu_read(addr=B, size=2 * P)["data"] == [11, 11]
    assert w.mm.stats["cpu_faults_on_device_pages"] >= 1
    vram = w.devices["gpu0"].vram
    assert vram is not None and vram.used == 0                # migrate_to_ram took it all


def test_world_mremap_and_mprotect_events_refuse_bad_input() -> None:
    w = _world("6.18")
    with pytest.raises(XeError) as ei:
        w.mremap(addr=A, old_size=SZ_2M, new_size=SZ_2M, flags=["fixed"], new_addr=B)
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(XeError) as ei:
        w.mremap(addr=A, old_size=SZ_2M, new_size=SZ_2M, flags=["sideways"])
    assert ei.value.errno == errno.EINVAL and "flags" in str(ei.value)
    with pytest.raises(XeError) as ei:
        w.mprotect(addr=B, size=P, read_only=True)
    assert ei.value.errno == errno.ENOMEM
    out = w.execute({"ev": "mremap", "addr": A, "old_size": SZ_2M, "new_size": SZ_2M,
                     "flags": ["maymove", "fixed"], "new_addr": B})
    assert out == {"ev": "mremap", "result": "ok", "addr": B}
    out = w.execute({"ev": "mprotect", "addr": B, "size": SZ_2M, "read_only": True})
    assert out == {"ev": "mprotect", "result": "ok"}
    out = w.execute({"ev": "gpu_access", "vm": "v", "addr": B, "size": P, "op": "write",
                     "value": 1})
    assert out["result"] == "EPERM"


def test_device_pages_bookkeeping_follows_moves_out_of_and_back_into_the_span() -> None:
    from pysvm.xe.vram import DevicePages
    dp = DevicePages(A, 4 * P)
    pages = [Page(k) for k in range(4)]
    dp.set_entries(A, [p.run for p in pages], [p.idx for p in pages])
    dp.move([(A, B, pages[0]), (A + P, B + P, pages[1]), (A + 2 * P, A + 9 * P, Page(9))])
    assert len(dp) == 4 and dp.get(A) is None and dp.get(B) is pages[0]
    assert dp.get(A + 2 * P) == pages[2]           # not the page named: it stays
    assert list(dp) == [A + 2 * P, A + 3 * P, B, B + P]
    assert dp.live([B + P, A, A + 3 * P]) == [(A + 3 * P, pages[3]), (B + P, pages[1])]
    dp.move([(B, A + P, pages[0])])                 # back inside the span, another slot
    assert dp.get(A + P) == pages[0] and B not in dp
    dp.discard([(B + P, pages[1]), (A + 5 * P, pages[3])])    # the second one is searched
    assert dp.items() == [(A + P, pages[0]), (A + 2 * P, pages[2])]
    del dp[A + P]
    del dp[A + 2 * P]
    assert not dp and len(dp) == 0
    with pytest.raises(KeyError):
        del dp[B]


def test_device_pages_discard_entries_matches_discard_of_the_same_pairs() -> None:
    # DevicePages.discard_entries(addr, runs, idx) is discard() of (addr + k * 4 KiB, page k):
    # its one-slice path (each page at its own slot) and its fallback (a page moved
    # away, a page that is not the one at the slot, a run past the span) agree with it.
    from pysvm.xe.vram import DevicePages

    def fresh() -> tuple[DevicePages, list[Page]]:
        dp = DevicePages(A, 8 * P)
        pages = [Page(k) for k in range(8)]
        dp.set_entries(A, [p.run for p in pages], [p.idx for p in pages])
        return dp, pages

    def cases(pages: list[Page]) -> list[tuple[int, list[Page]]]:
        return [(A, pages[:8]), (A + 2 * P, pages[2:5]),
                (A + P, [pages[1], pages[3]]),               # pages[3] is not at A + 2P
                (A + 6 * P, pages[6:8] + [Page(99)]),        # runs past the span
                (A + 3 * P + 1, pages[3:4])]                 # not page aligned
    for k in range(5):
        dp, pages = fresh()
        ref, rpages = fresh()
        addr, run = cases(pages)[k]
        raddr, rrun = cases(rpages)[k]
        dp.discard_entries(addr, [p.run for p in run], [p.idx for p in run])
        ref.discard(list(zip(range(raddr, raddr + len(rrun) * P, P), rrun, strict=True)))
        assert [(a, p.value) for a, p in dp.items()] == \
            [(a, p.value) for a, p in ref.items()], k
        assert len(dp) == len(ref)
    dp, pages = fresh()
    dp.move([(A, B, pages[0])])                   # away: the slice path is not taken
    dp.discard_entries(B, [pages[0].run], [pages[0].idx])
    assert B not in dp and len(dp) == 7
