"""Page dirty state and the smaps event (pysvm.mm.mmap, fs/proc/task_mmu.c semantics).

What a page's state becomes along each path the model has, read from the kernel:
a CPU store dirties; a read fault maps the zero page (not counted by smaps); a device's
page collection that asks for write access faults a missing or zero page as a write
(dirty) and leaves a present writable page alone; migration carries PG_dirty both ways,
and a page the GPU wrote in VRAM comes back clean.
"""

from __future__ import annotations

import errno
import random

import pytest

from pysvm import World, XeError
from pysvm.mm.mmap import PAGE_CLEAN, PAGE_DIRTY, PAGE_SIZE, PAGE_ZERO, Mm

P = PAGE_SIZE
A = 2 << 20
MIB2 = 2 << 20
KB = P >> 10


def _zero_counts(d: dict[str, int]) -> dict[str, int]:
    return {k: v // KB for k, v in d.items()}


def _state(mm: Mm, addr: int) -> int | None:
    page = mm.page_at(addr)
    return None if page is None else page.run.state[page.idx]


def test_read_fault_maps_zero_pages_that_smaps_does_not_count() -> None:
    mm = Mm()
    mm.mmap(A, 8 * P)
    assert mm.cpu_read(A, 2 * P) == [0, 0]
    assert _state(mm, A) == PAGE_ZERO and _state(mm, A + 2 * P) is None
    assert _zero_counts(mm.smaps(A, A + 8 * P)) == {
        "rss": 0, "anonymous": 0, "private_clean": 0, "private_dirty": 0, "device": 0,
        "zero": 2}


def test_cpu_store_dirties_fresh_zero_and_clean_pages() -> None:
    mm = Mm()
    mm.mmap(A, 8 * P)
    mm.cpu_read(A, 4 * P)                   # zero pages
    mm.cpu_write(A + P, 2 * P, 5)           # two of them written: a write fault each
    mm.cpu_write(A + 6 * P, P, 6)           # a fresh page
    assert [_state(mm, A + k * P) for k in range(8)] == [
        PAGE_ZERO, PAGE_DIRTY, PAGE_DIRTY, PAGE_ZERO, None, None, PAGE_DIRTY, None]
    got = _zero_counts(mm.smaps(A, A + 8 * P))
    assert got["rss"] == 3 and got["private_dirty"] == 3 and got["zero"] == 2
    assert got["private_clean"] == 0


@pytest.mark.parametrize("write", [True, False])
def test_device_collection_write_fault_dirties_missing_and_zero_pages(write: bool) -> None:
    """mm/hmm.c: with HMM_PFN_REQ_WRITE a missing page or the read-only zero page faults
    as a write (do_anonymous_page() / wp_page_copy(): dirty); without it a missing page
    gets the zero page. A present dirty page stays dirty."""
    mm = Mm()
    mm.mmap(A, 8 * P)
    mm.cpu_read(A, 2 * P)                   # pages 0, 1: zero
    mm.cpu_write(A + 2 * P, P, 1)           # page 2: dirty
    mm.hmm_range_fault(A, A + 8 * P, write=write, owner=None)
    want = PAGE_DIRTY if write else PAGE_ZERO
    assert [_state(mm, A + k * P) for k in range(8)] == [
        want, want, PAGE_DIRTY, want, want, want, want, want]


def test_read_only_vma_collection_never_writes() -> None:
    mm = Mm()
    mm.mmap(A, 4 * P, read_only=True)
    with pytest.raises(XeError) as ei:
        mm.hmm_range_fault(A, A + 4 * P, write=True, owner=None)
    assert ei.value.errno == errno.EPERM
    assert mm.smaps(A, A + 4 * P)["zero"] == 0       # refused before anything changed
    mm.hmm_range_fault(A, A + 4 * P, write=False, owner=None)
    assert mm.smaps(A, A + 4 * P)["zero"] == 4 * KB


def test_mremap_moves_the_state_with_the_page() -> None:
    mm = Mm()
    mm.mmap(A, 4 * P)
    mm.cpu_write(A, P, 3)
    mm.cpu_read(A + P, P)
    new = 64 << 20
    assert mm.mremap(A, 4 * P, 4 * P, 3, new) == new      # MAYMOVE | FIXED
    assert _state(mm, new) == PAGE_DIRTY and _state(mm, new + P) == PAGE_ZERO
    assert mm.smaps(A, A + 4 * P)["rss"] == 0
    assert mm.smaps(new, new + 4 * P)["private_dirty"] == KB


def _world() -> World:
    w = World()
    w.device(name="igpu", discrete=False)
    w.device(name="dgpu", vram_mib=64)
    for vm, dev in (("vi", "igpu"), ("vd", "dgpu")):
        w.vm_create(vm=vm, device=dev, fault_mode=True)
        w.bind(vm=vm, op="map", addr=0, range=1 << 47, flags=["cpu_addr_mirror"])
    return w


def test_gpu_read_fault_on_a_writable_vma_dirties_the_whole_range() -> None:
    """drm_gpusvm_get_pages() asks for write access unless the GPU VMA is read-only, so
    a GPU read of 4 pages populates and dirties the range's 2 MiB (integrated device:
    the pages stay in system memory)."""
    w = _world()
    w.mmap(addr=A, size=MIB2)
    assert w.gpu_access(vm="vi", addr=A, size=4 * P, op="read")["data"] == [0] * 4
    s = w.smaps(addr=A, size=MIB2)
    assert s["rss"] == s["private_dirty"] == 2048 and s["zero"] == 0


def test_a_page_the_gpu_wrote_in_vram_comes_back_clean() -> None:
    """Migration carries PG_dirty (migrate_vma_collect_pmd(), folio_migrate_flags()) and
    remove_migration_pte() installs a clean PTE: only the pages dirty before they left
    come back dirty, though the GPU wrote every one (the data is there all the same)."""
    w = _world()
    w.mmap(addr=A, size=MIB2)
    w.cpu_write(addr=A, size=2 * P, value=7)
    w.gpu_access(vm="vd", addr=A, size=MIB2, op="write", value=9)
    s = w.smaps(addr=A, size=MIB2)
    assert (s["rss"], s["device"], s["private_dirty"], s["private_clean"]) == (
        2048, 2048, 8, 2040)
    assert w.cpu_read(addr=A, size=4 * P)["data"] == [9] * 4
    s = w.smaps(addr=A, size=MIB2)
    assert (s["rss"], s["device"], s["private_dirty"], s["private_clean"]) == (
        2048, 0, 8, 2040)


def test_smaps_refusals_change_nothing() -> None:
    w = _world()
    w.mmap(addr=A, size=MIB2)
    for kw, code in (({"addr": A + 1, "size": P}, errno.EINVAL),
                     ({"addr": A, "size": 0}, errno.EINVAL),
                     ({"addr": A, "size": P + 1}, errno.EINVAL),
                     ({"addr": A, "size": P, "process": "nobody"}, errno.ESRCH)):
        with pytest.raises(XeError) as ei:
            w.smaps(**kw)  # type: ignore[arg-type]
        assert ei.value.errno == code
    assert w.smaps(addr=0, size=1 << 40)["rss"] == 0


@pytest.mark.parametrize("seed", range(6))
def test_random_cpu_and_device_accesses_against_a_page_reference(seed: int) -> None:
    """A per-page reference of the rules, against the model's state and smaps."""
    rng = random.Random(seed)
    n = 96
    mm = Mm()
    mm.mmap(A, n * P)
    ref: dict[int, int] = {}                # page -> state (absent: not populated)
    for _ in range(60):
        lo = rng.randrange(n)
        hi = rng.randrange(lo, min(n, lo + 40)) + 1
        a, e = A + lo * P, A + hi * P
        op = rng.choice(["read", "write", "hmm_w", "hmm_r", "munmap"])
        if op == "read":
            mm.cpu_read(a, e - a)
            for k in range(lo, hi):
                ref.setdefault(k, PAGE_ZERO)
        elif op == "write":
            mm.cpu_write(a, e - a, rng.randrange(100))
            for k in range(lo, hi):
                ref[k] = PAGE_DIRTY
        elif op in ("hmm_w", "hmm_r"):
            write = op == "hmm_w"
            mm.hmm_range_fault(a, e, write=write, owner=None)
            for k in range(lo, hi):
                st = ref.get(k)
                if st is None:
                    ref[k] = PAGE_DIRTY if write else PAGE_ZERO
                elif st == PAGE_ZERO and write:
                    ref[k] = PAGE_DIRTY
        else:
            mm.munmap(a, e - a)
            mm.mmap(a, e - a)
            for k in range(lo, hi):
                ref.pop(k, None)
        assert {k: _state(mm, A + k * P) for k in range(n)} == {
            k: ref.get(k) for k in range(n)}
        got = mm.smaps(A, A + n * P)
        states = list(ref.values())
        assert got == {"rss": (len(states) - states.count(PAGE_ZERO)) * KB,
                       "anonymous": (len(states) - states.count(PAGE_ZERO)) * KB,
                       "private_clean": states.count(PAGE_CLEAN) * KB,
                       "private_dirty": states.count(PAGE_DIRTY) * KB, "device": 0,
                       "zero": states.count(PAGE_ZERO) * KB}


@pytest.mark.parametrize("seed", range(4))
def test_random_migrations_carry_the_state(seed: int) -> None:
    """Four 2 MiB regions on a discrete device (each one SVM range, the allocation a CPU
    fault brings back whole): GPU accesses migrate a region to VRAM, CPU accesses and
    evictions bring it back, and a per-page reference of the migration rules must match
    smaps after every step (a zero page leaves as a clean device page, a dirty one stays
    dirty, nothing the GPU does dirties a page)."""
    rng = random.Random(seed)
    w = _world()
    regions = [A + k * MIB2 for k in range(4)]
    for base in regions:
        w.mmap(addr=base, size=MIB2)
    n = MIB2 // P
    ref = {base: [None] * n for base in regions}    # per page: state, None not populated
    in_vram = dict.fromkeys(regions, False)
    for _ in range(40):
        base = rng.choice(regions)
        lo = rng.randrange(n)
        hi = min(n, lo + rng.choice((1, 3, 64)))
        pages = ref[base]
        op = rng.choice(["cpu_read", "cpu_write", "gpu_read", "gpu_write", "evict", "remap"])
        if op in ("cpu_read", "cpu_write"):
            in_vram[base] = False                   # the whole allocation comes back
            if op == "cpu_read":
                w.cpu_read(addr=base + lo * P, size=(hi - lo) * P)
                for k in range(lo, hi):
                    if pages[k] is None:
                        pages[k] = PAGE_ZERO
            else:
                w.cpu_write(addr=base + lo * P, size=(hi - lo) * P, value=rng.randrange(9))
                pages[lo:hi] = [PAGE_DIRTY] * (hi - lo)
        elif op in ("gpu_read", "gpu_write"):
            w.gpu_access(vm="vd", addr=base + lo * P, size=(hi - lo) * P, op=op[4:],
                         value=5)
            if not in_vram[base]:                   # the range migrates, every page of it
                pages[:] = [PAGE_DIRTY if s == PAGE_DIRTY else PAGE_CLEAN for s in pages]
                in_vram[base] = True
        elif op == "evict":
            w.evict(device="dgpu")
            in_vram = dict.fromkeys(regions, False)
        else:
            w.munmap(addr=base, size=MIB2)
            w.mmap(addr=base, size=MIB2)
            pages[:] = [None] * n
            in_vram[base] = False
        for b in regions:
            st = [s for s in ref[b] if s is not None]
            rss = (len(st) - st.count(PAGE_ZERO)) * KB
            got = w.smaps(addr=b, size=MIB2)
            assert got == {"rss": rss, "anonymous": rss,
                           "private_clean": st.count(PAGE_CLEAN) * KB,
                           "private_dirty": st.count(PAGE_DIRTY) * KB,
                           "device": rss if in_vram[b] else 0,
                           "zero": st.count(PAGE_ZERO) * KB}, (seed, op, b)
