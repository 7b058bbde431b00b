"""The peers reach the kernel's final layout where they claim to (see benchmarks/peers.py)."""

from __future__ import annotations

import pytest

from benchmarks.peers import PEERS, new_peer
from gpuvm_core import RefGpuVm
from gpuvm_core.workloads import new_vm, run_single, workload


@pytest.mark.parametrize(("name", "w"), [(name, w) for name, (_, ws) in PEERS.items() for w in ws])
def test_peers_agree(name: str, w: int) -> None:
    n, m = 40, 600
    peer, ref = new_peer(name, n, w), new_vm(RefGpuVm, n, w)
    reqs = workload(w, n, m)
    hits_peer, hits_ref = run_single(peer, reqs), run_single(ref, reqs)
    assert peer.state() == ref.state()
    assert len(peer) == len(ref)
    if w == 4:
        assert hits_peer == hits_ref > 0


def test_portion_refuses_madvise() -> None:
    with pytest.raises(ValueError, match="cannot express W3"):
        new_peer("portion", 10, 3)
