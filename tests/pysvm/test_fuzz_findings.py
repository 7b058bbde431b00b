"""SVM fuzz findings, kept as regression cases: every trace in ``fuzz_findings/`` must
pass every check of the SVM fuzz oracle (``pysvm fuzz --replay FILE``).

* ``svm-6.18-link-peer-vram-atomic.jsonl`` (CI fuzz, seed 128652347160820): two linked
  discrete devices under the 6.18 profile; gpu1 faults a range into its VRAM, gpu0's VM
  prefetches the same range and then runs a GPU atomic there. The model let the ``link``
  merge the two devices' page owners in 6.18 too, so gpu0's range mapped gpu1's device
  pages in place, counted as "in VRAM" by xe_svm_range_in_vram() but without the PTE's
  atomic-enable bit (not gpu0's own VRAM), and the atomic refaulted until ETIME. v6.18
  has one owner per device (xe_svm.c: xe_svm_devm_owner() returns the xe device, used as
  the pagemap owner in xe_devm_add() and as the fault's device_private_page_owner), so
  hmm_range_fault() moves gpu1's pages to system memory and the atomic migrates the range
  into gpu0's VRAM. Owner groups across linked devices exist only in the newer driver
  (drm_pagemap_util.c: drm_pagemap_acquire_owner()).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pysvm.fuzz.target import check_events, load_trace
from pysvm.world import World

FINDINGS = Path(__file__).parent / "fuzz_findings"


@pytest.mark.parametrize("path", sorted(FINDINGS.glob("*.jsonl")), ids=lambda p: p.stem)
def test_finding_passes_every_check(path: Path) -> None:
    failure = check_events(load_trace(path))
    assert failure is None, failure


def _linked(profile: str) -> World:
    w = World()
    w.config(profile=profile)
    for name in ("gpu0", "gpu1"):
        w.device(name=name, vram_mib=64)
    w.link(a="gpu0", b="gpu1")
    for i in range(2):
        w.vm_create(vm=f"vm{i}", device=f"gpu{i}", fault_mode=True)
        w.bind(vm=f"vm{i}", op="map", addr=0, range=1 << 47, flags=["cpu_addr_mirror"],
               pat_index=0)
    return w


@pytest.mark.parametrize(("profile", "shared"), [("6.18", False), ("7.0", True)])
def test_link_joins_owner_groups_only_in_the_newer_driver(profile: str, shared: bool) -> None:
    w = _linked(profile)
    owners = [w.vms[f"vm{i}"].svm.gpusvm.owner for i in range(2)]
    assert (owners[0] is owners[1]) is shared
    assert w.linked("gpu0", "gpu1")        # the link itself is still recorded


def test_6_18_prefetch_to_system_then_atomic_migrates_to_own_vram() -> None:
    """The finding's shape: the prefetch's hmm_range_fault() (gpu0's owner) faults gpu1's
    pages home, so gpu0's atomic finds system pages and migrates them to its VRAM."""
    w = _linked("6.18")
    base = 1 << 30
    w.mmap(addr=base, size=2 << 20)
    w.gpu_access(vm="vm1", addr=base, size=4096, op="read")
    w.prefetch(vm="vm0", addr=base, range=1 << 20, region="system")
    r = w.vms["vm0"].svm.gpusvm.range_find(base + 4096)
    assert r is not None and r.location() == "system"
    out = w.gpu_access(vm="vm0", addr=base + 4096, size=4096, op="atomic")
    assert out["faults"] == 1
    r = w.vms["vm0"].svm.gpusvm.range_find(base + 4096)
    assert r is not None and r.location() == "gpu0"
