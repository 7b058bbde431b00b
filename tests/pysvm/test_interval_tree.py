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
