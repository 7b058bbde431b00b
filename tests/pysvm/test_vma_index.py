"""The VMA indexes on the compiled range map: the process's CPU VMAs (pysvm.mm.mmap.Mm, an
IntervalTree keyed in page numbers) and an Xe VM's VMAs (pysvm.xe.vm.Vm, a dict beside its
gpuvm tree), each against a brute-force list.

Kernel: mm/mmap.c vma_lookup(), mm/mremap.c, mm/mprotect.c for the CPU side;
drivers/gpu/drm/drm_gpuvm.c drm_gpuvm_for_each_va_range() and xe_vm.c
xe_vm_close_and_put() for the GPU side.
"""

from __future__ import annotations

import errno
import random

import pytest
from xe_helpers import MIRROR, K, layout, make_vm, tree_matches

from pysvm.errors import XeError
from pysvm.mm.mmap import (
    MREMAP_DONTUNMAP,
    MREMAP_FIXED,
    MREMAP_MAYMOVE,
    PAGE_SIZE,
    TASK_SIZE,
    CpuVma,
    Mm,
)

P = PAGE_SIZE
LOW = 0x10_0000_0000                 # a 64-page window where the VMAs keep colliding
TOP = (1 << 64) - 64 * P            # the last 64 pages of the 64-bit space
MIN_ADDR = 0x10000                   # where the model looks for a free gap (mmap_min_addr)

Iv = tuple[int, int, bool]           # (start, end, read_only)


class RefMm:
    """CPU VMAs as a plain sorted list, every operation by brute force. Follows the
    semantics Mm documents (MAP_FIXED mmap, splitting munmap/mprotect, mremap's cases);
    no page contents, no notifiers."""

    def __init__(self) -> None:
        self.v: list[Iv] = []

    def find(self, addr: int) -> Iv | None:
        return next((iv for iv in self.v if iv[0] <= addr < iv[1]), None)

    def over(self, s: int, e: int) -> list[Iv]:
        return [iv for iv in self.v if iv[0] < e and s < iv[1]]

    def cut(self, s: int, e: int) -> None:
        if e <= s:
            return
        out: list[Iv] = []
        for a, b, ro in self.v:
            if b <= s or e <= a:
                out.append((a, b, ro))
                continue
            if a < s:
                out.append((a, s, ro))
            if e < b:
                out.append((e, b, ro))
        self.v = sorted(out)

    def add(self, s: int, e: int, ro: bool) -> None:
        assert not self.over(s, e)
        self.v = sorted([*self.v, (s, e, ro)])

    def mmap(self, s: int, n: int, ro: bool) -> None:
        self.cut(s, s + n)
        self.add(s, s + n, ro)

    def mprotect(self, s: int, n: int, ro: bool) -> None:
        e = s + n
        a = s
        while a < e:
            iv = self.find(a)
            if iv is None:
                raise XeError(errno.ENOMEM, "hole")
            a = iv[1]
        for a, b, old in self.over(s, e):
            if old == ro:
                continue
            self.cut(a, b)
            if a < s:
                self.add(a, s, old)
            self.add(max(a, s), min(b, e), ro)
            if e < b:
                self.add(e, b, old)

    def free_gap(self, n: int, hint: int) -> int:
        a = max(hint, MIN_ADDR)
        while True:
            hit = self.over(a, a + n)
            if not hit:
                break
            a = max(iv[1] for iv in hit)
        if a + n > TASK_SIZE:
            raise XeError(errno.ENOMEM, "no gap")
        return a

    def move(self, src: int, n: int, dst: int, new_n: int, ro: bool, dontunmap: bool) -> None:
        self.add(dst, dst + new_n, ro)
        if not dontunmap:
            self.cut(src, src + n)

    def mremap(self, addr: int, old: int, new: int, flags: int, new_addr: int) -> int:
        """Only page-aligned, in-range arguments (the generator makes no others)."""
        target = bool(flags & (MREMAP_FIXED | MREMAP_DONTUNMAP))
        dontunmap = bool(flags & MREMAP_DONTUNMAP)
        if target and addr < new_addr + new and new_addr < addr + old:
            raise XeError(errno.EINVAL, "overlap")
        if flags & MREMAP_FIXED and old == new:          # remap_move(): piece by piece
            pieces = self.over(addr, addr + old)
            if not pieces or pieces[0][0] > addr:
                raise XeError(errno.EFAULT, "hole")
            for a, b, ro in pieces:
                s, e = max(a, addr), min(b, addr + old)
                d = new_addr + (s - addr)
                self.cut(d, d + e - s)
                self.move(s, e - s, d, e - s, ro, dontunmap)
            return new_addr
        iv = self.find(addr)
        if iv is None:
            raise XeError(errno.EFAULT, "not mapped")
        if (new > old or target) and min(old, new) > iv[1] - addr:
            raise XeError(errno.EFAULT, "crosses the end")
        if target:
            if flags & MREMAP_FIXED:
                self.cut(new_addr, new_addr + new)
            if new < old:
                self.cut(addr + new, addr + old)
                old = new
            iv = self.find(addr)
            assert iv is not None
            dst = new_addr if flags & MREMAP_FIXED else self.free_gap(new, new_addr)
            self.move(addr, old, dst, new, iv[2], dontunmap)
            return dst
        if new <= old:
            self.cut(addr + new, addr + old)
            return addr
        end = addr + old
        if iv[1] == end and end + new - old <= TASK_SIZE and not self.over(end, end + new - old):
            self.cut(iv[0], iv[1])
            self.add(iv[0], addr + new, iv[2])
            return addr
        if not flags & MREMAP_MAYMOVE:
            raise XeError(errno.ENOMEM, "cannot grow")
        dst = self.free_gap(new, 0)
        self.move(addr, old, dst, new, iv[2], False)
        return dst


def _ivs(mm: Mm) -> list[Iv]:
    return [(v.start, v.end, v.read_only) for v in mm.vmas()]


def _check_lookups(mm: Mm, ref: RefMm, rnd: random.Random, base: int) -> None:
    """find_vma at VMA edges and random addresses; the answer is a VMA now in the tree."""
    live = list(mm.vmas())
    probes = [base + rnd.randrange(-2 * P, 66 * P) for _ in range(6)]
    for a, b, _ in ref.v:
        probes += [a, b - 1, b, a - 1]
    for addr in probes:
        got = mm.find_vma(addr)
        want = ref.find(addr)
        assert (None if got is None else (got.start, got.end, got.read_only)) == want, addr
        assert got is None or any(got is v for v in live), "a VMA no longer in the tree"


def _span(rnd: random.Random, base: int) -> tuple[int, int]:
    s = base + rnd.randrange(0, 60) * P
    return s, rnd.randrange(1, min(16, (base + 64 * P - s) // P) + 1) * P


@pytest.mark.parametrize("seed", range(6))
def test_mm_vmas_match_a_brute_force_list(seed: int) -> None:
    rnd = random.Random(seed)
    mm, ref = Mm(), RefMm()
    flag_sets = (0, MREMAP_MAYMOVE, MREMAP_MAYMOVE | MREMAP_FIXED,
                 MREMAP_MAYMOVE | MREMAP_DONTUNMAP,
                 MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP)
    for step in range(400):
        base = TOP if rnd.random() < 0.2 else LOW
        op = rnd.choice(("mmap", "mmap", "munmap", "mprotect", "mremap", "mremap"))
        if op == "mremap":
            base = LOW       # a FIXED target must lie below TASK_SIZE
        s, n = _span(rnd, base)
        before = _ivs(mm)
        err: tuple[int | None, int | None] = (None, None)
        got: int | None = None
        want: int | None = None
        if op == "mmap":
            ro = rnd.random() < 0.3
            mm.mmap(s, n, read_only=ro)
            ref.mmap(s, n, ro)
        elif op == "munmap":
            mm.munmap(s, n)
            ref.cut(s, s + n)
        elif op == "mprotect":
            ro = rnd.random() < 0.5
            try:
                mm.mprotect(s, n, read_only=ro)
            except XeError as e:
                err = (e.errno, None)
            try:
                ref.mprotect(s, n, ro)
            except XeError as e:
                err = (err[0], e.errno)
        else:
            flags = rnd.choice(flag_sets)
            new = n if flags & MREMAP_DONTUNMAP else rnd.randrange(1, 17) * P
            new_addr = LOW + rnd.randrange(0, 64 - new // P + 1) * P
            try:
                got = mm.mremap(s, n, new, flags, new_addr)
            except XeError as e:
                err = (e.errno, None)
            try:
                want = ref.mremap(s, n, new, flags, new_addr)
            except XeError as e:
                err = (err[0], e.errno)
            assert got == want, (step, op)
        assert err[0] == err[1], (step, op, err)
        if err[0] is not None:
            assert _ivs(mm) == before, "a refused call changed the VMAs"
        assert _ivs(mm) == ref.v, (step, op, s, n)
        _check_lookups(mm, ref, rnd, base)
    assert mm.exit_mmap() == sum(b - a for a, b, _ in ref.v)
    assert list(mm.vmas()) == [] and mm.find_vma(LOW) is None


def test_mm_vmas_at_the_top_of_the_64_bit_space() -> None:
    """A VMA may end at 2**64; the tree (whose span stops one byte short) holds it in pages."""
    mm = Mm()
    top = mm.mmap((1 << 64) - 2 * P, 2 * P)
    assert mm.find_vma((1 << 64) - 1) is top and mm.find_vma((1 << 64) - 2 * P) is top
    assert mm.find_vma((1 << 64) - 2 * P - 1) is None and mm.find_vma(1 << 64) is None
    mm.mprotect((1 << 64) - P, P, read_only=True)
    assert _ivs(mm) == [((1 << 64) - 2 * P, (1 << 64) - P, False),
                        ((1 << 64) - P, 1 << 64, True)]
    last = mm.find_vma((1 << 64) - 1)
    assert last is not None and last.read_only
    with pytest.raises(XeError) as ei:
        mm.mprotect((1 << 64) - P, 2 * P, read_only=False)      # wraps
    assert ei.value.errno == errno.ENOMEM
    assert mm.munmap((1 << 64) - 4 * P, 4 * P) == 2 * P
    assert _ivs(mm) == [] and mm.find_vma((1 << 64) - 1) is None


def test_mm_find_vma_edges_and_empty() -> None:
    mm = Mm()
    assert mm.find_vma(0) is None and mm.find_vma(-1) is None and mm.find_vma(LOW) is None
    assert list(mm.vmas()) == [] and mm.munmap(LOW, P) == 0
    v = mm.mmap(LOW, 2 * P)
    assert mm.find_vma(LOW + 2 * P) is None            # the end is outside
    assert mm.find_vma(LOW + 2 * P - 1) is v and mm.find_vma(LOW - 1) is None
    assert mm.find_vma(-1) is None                     # the cached VMA does not answer


def test_mm_find_vma_cache_drops_a_replaced_vma() -> None:
    """The cached VMA answers only while it is in the tree: a VMA unmapped and mapped again
    over the same span is a new object, and the lookup returns that one."""
    mm = Mm()
    old = mm.mmap(LOW, 4 * P)
    assert mm.find_vma(LOW + P) is old                 # now cached
    new = mm.mmap(LOW, 4 * P)                          # MAP_FIXED over it
    assert new is not old and mm.find_vma(LOW + P) is new
    mm.mprotect(LOW + P, P, read_only=True)            # splits the cached VMA
    mid = mm.find_vma(LOW + P)
    assert mid is not None and mid is not new and mid.read_only
    assert (mid.start, mid.end) == (LOW + P, LOW + 2 * P)
    head = mm.find_vma(LOW)
    assert isinstance(head, CpuVma) and (head.start, head.end, head.read_only) == (
        LOW, LOW + P, False)


# -- the Xe VM's VMAs ------------------------------------------------------------------

def _brute_vmas_in(vmas: list[tuple[int, int]], start: int, end: int) -> list[int]:
    """What Vm.vmas_in() answers: every VMA with ``addr < end`` and ``end > start``."""
    return [a for a, r in vmas if a < end and a + r > start]


@pytest.mark.parametrize("seed", range(3))
def test_vm_vmas_in_and_iteration_match_a_brute_force_list(seed: int) -> None:
    rnd = random.Random(seed)
    vm = make_vm()
    size = vm.size
    for _ in range(150):
        a = rnd.randrange(0, 64) * 16 * K
        n = rnd.randrange(1, 9) * 16 * K
        if rnd.random() < 0.15:
            a = size - n                               # the top of the VM
        if rnd.random() < 0.6:
            vm.bind_map(a, n, flags=MIRROR)
        else:
            vm.bind_unmap(a, n)
        assert tree_matches(vm) and len(vm) == len(vm.gpuvm)
        vmas = layout(vm)
        assert vmas == sorted(vmas)
        for _ in range(8):
            s = rnd.choice((rnd.randrange(-16 * K, 1 << 20), size - rnd.randrange(0, 1 << 20)))
            e = s + rnd.choice((-K, 0, 1, K, 64 * K, 1 << 20, 1 << 50))
            got = [v.addr for v in vm.vmas_in(s, e)]
            assert got == _brute_vmas_in(vmas, s, e), (s, e)
        for v in vm:
            assert vm.vma_at(v.addr) is v and vm.vma_at(v.end - 1) is v
    assert vm.vmas_in(0, size + (1 << 20)) == list(vm)


def test_vm_vmas_in_empty_span_keeps_the_straddling_vma() -> None:
    """vmas_in(start, end) with end <= start answers the VMA holding start if it also
    starts below end (the walk's own arithmetic), else nothing."""
    vm = make_vm()
    assert vm.vmas_in(0, 1 << 30) == [] and list(vm) == []
    vm.bind_map(16 * K, 32 * K, flags=MIRROR)
    v = vm.vmas_in(16 * K, 48 * K)
    assert len(v) == 1
    assert vm.vmas_in(32 * K, 20 * K) == v              # 16K < 20K, and it holds 32K
    assert vm.vmas_in(32 * K, 16 * K) == []             # starts at 16K, not below it
    assert vm.vmas_in(48 * K, 47 * K) == []             # 48K is outside it
    assert vm.vmas_in(-K, 0) == [] and vm.vmas_in(-K, 16 * K + 1) == v
    assert vm.vmas_in(vm.size, vm.size + K) == []


def test_vm_close_empties_the_gpuvm_tree_too() -> None:
    """xe_vm_close_and_put() takes every VMA out of the VA tree (xe_vm_remove_vma())."""
    vm = make_vm()
    vm.bind_map(0, 64 * K, flags=MIRROR)
    vm.bind_map(128 * K, 64 * K, flags=MIRROR)
    vmas = list(vm)
    vm.close()
    assert list(vm) == [] and len(vm) == 0 and len(vm.gpuvm) == 0
    assert vm.vmas_in(0, 1 << 30) == [] and vm.vma_at(0) is None
    assert all(v.flags & v.flags.DESTROYED for v in vmas)
