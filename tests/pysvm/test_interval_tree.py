"""IntervalTree (the SVM layer's interval lookups on gpuvm_core) against a brute-force list,
and GpuSvm.range_find's last-range hint against a removed range."""

from __future__ import annotations

import random

import pytest
from svm_helpers import BUF, SZ_2M, K, Sim

from gpuvm_core import GpuvmError
from pysvm.mm.interval_tree import IntervalTree


def _brute(ivs: dict[int, tuple[int, int]], start: int, end: int) -> list[int]:
    return [s for s, (_, e) in sorted(ivs.items()) if s < end and start < e]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_interval_tree_matches_brute_force(seed: int) -> None:
    rnd = random.Random(seed)
    tree: IntervalTree[int] = IntervalTree()
    ivs: dict[int, tuple[int, int]] = {}          # start -> (start, end)
    for _ in range(3000):
        s = rnd.randrange(0, 1 << 16) * K
        e = s + rnd.choice((K, 16 * K, 512 * K))
        if rnd.random() < 0.6:
            if _brute(ivs, s, e):
                with pytest.raises(GpuvmError):
                    tree.insert(s, e, s)
            else:
                tree.insert(s, e, s)
                ivs[s] = (s, e)
        elif ivs:
            victim = rnd.choice(sorted(ivs))
            assert tree.pop(victim) == victim
            del ivs[victim]
            assert tree.pop(victim) is None
        q_end = s + rnd.choice((1, K, 64 * K, 4 << 20))
        want = _brute(ivs, s, q_end)
        assert tree.overlapping(s, q_end) == want
        assert tree.first(s, q_end) == (want[0] if want else None)
        assert tree.get(s) == (s if s in ivs else None)
        assert len(tree) == len(ivs)
    assert list(tree.values()) == sorted(ivs)
    assert tree.overlapping(0, 1 << 64) == sorted(ivs)     # clamped to the tree's span
    assert tree.overlapping(5 * K, 5 * K) == []
    assert tree.first(5 * K, 4 * K) is None


@pytest.mark.parametrize("seed", [4, 5])
def test_lookups_near_the_last_hit_match_brute_force(seed: int) -> None:
    """Queries that stay near one interval (the tree answers them from its last hit),
    with that interval removed and re-inserted with another end in between."""
    rnd = random.Random(seed)
    tree: IntervalTree[tuple[int, int]] = IntervalTree()
    ivs: dict[int, tuple[int, int]] = {}
    for k in range(0, 64, 2):
        ivs[k * 64 * K] = (k * 64 * K, (k + 1) * 64 * K)
        tree.insert(k * 64 * K, (k + 1) * 64 * K, ivs[k * 64 * K])
    for _ in range(4000):
        base = rnd.choice(sorted(ivs)) if ivs else 0
        s = base + rnd.randrange(-2, 80) * K
        e = s + rnd.choice((1, K, 8 * K, 64 * K))
        if s < 0:
            continue
        want = [ivs[x] for x in _brute(ivs, s, e)]
        assert tree.first(s, e) == (want[0] if want else None)
        assert tree.overlapping(s, e) == want
        if rnd.random() < 0.1 and ivs:
            victim = rnd.choice(sorted(ivs))
            assert tree.pop(victim) == ivs.pop(victim)
            if rnd.random() < 0.7:              # back, shorter or longer
                nxt = min((x for x in ivs if x > victim), default=1 << 40)
                end = min(victim + rnd.choice((4, 32, 64, 100)) * K, nxt)
                ivs[victim] = (victim, end)
                tree.insert(victim, end, ivs[victim])


def test_range_find_hint_never_returns_a_removed_range() -> None:
    s = Sim()
    s.mmap(BUF, SZ_2M)
    s.gpu("write", BUF, K, value=1)
    gpusvm = s.svm.gpusvm
    old = gpusvm.range_find(BUF)
    assert old is not None and gpusvm.range_find(BUF + K) is old     # the hint answers
    s.munmap(BUF, SZ_2M)
    s.gc()
    assert old.removed
    assert gpusvm.range_find(BUF) is None          # the removed hint is not returned
    s.mmap(BUF, SZ_2M)
    s.gpu("write", BUF, K, value=2)
    new = gpusvm.range_find(BUF)
    assert new is not None and new is not old and not new.removed
    assert s.gpu("read", BUF, K)["data"] == [2]
