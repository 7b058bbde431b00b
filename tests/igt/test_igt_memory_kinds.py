"""MAP_SHARED, file-backed and mlock()ed buffers in the ported xe_exec_system_allocator modes."""

from __future__ import annotations

import pytest

from pysvm.igt import select
from pysvm.igt.runner import run_scenario
from pysvm.igt.scenario import Scenario


def _build(name: str, profile: str = "6.18") -> Scenario:
    st = next(iter(select(["xe_exec_system_allocator"], [name])))
    assert st.build is not None, (name, st.skip)
    return st.build(profile)


def _mmaps(sc: Scenario) -> list[dict[str, object]]:
    return [s.ev for s in sc.steps if s.ev["ev"] == "mmap"]


@pytest.mark.parametrize("profile", ["6.18", "newest"])
@pytest.mark.parametrize("name,field", [("once-mmap-shared", "shared"),
                                        ("once-mmap-shared-nomemset", "shared"),
                                        ("once-mmap-prefetch-shared", "shared"),
                                        ("once-mmap-file", "file"),
                                        ("once-mmap-file-mlock", "file"),
                                        ("once-mmap-huge", "file"),
                                        ("twice-mmap-huge-nomemset", "file")])
def test_non_anonymous_buffers_never_reach_vram(name: str, field: str, profile: str) -> None:
    """shmem and file pages are not migrated (drm_pagemap / migrate_vma_collect skip them)."""
    sc = _build(name, profile)
    assert [m.get(field) for m in _mmaps(sc)] == [True]
    status, msg, _, ctr = run_scenario(sc)
    assert status == "passed", msg
    assert ctr["migrations_to_vram"] == 0 and ctr["bytes_to_vram"] == 0
    # the GPU still wrote the value and the CPU read it back from system memory
    assert any(s.ev["ev"] == "gpu_access" and s.ev["op"] == "write" for s in sc.steps)


def test_private_mlocked_buffer_still_migrates() -> None:
    """try_to_migrate_one() has no VM_LOCKED bail-out: locked anonymous pages move to VRAM."""
    status, msg, _, ctr = run_scenario(_build("once-malloc-mlock"))
    assert status == "passed", msg
    assert ctr["migrations_to_vram"] == 1


def test_mlock_populates_before_the_first_gpu_touch() -> None:
    """Without memset, mlock()'s populate is the only CPU touch before the mirror bind."""
    evs = [s.ev for s in _build("once-malloc-mlock-nomemset").steps]
    bind = next(i for i, e in enumerate(evs) if e["ev"] == "bind")
    assert [e["ev"] for e in evs[:bind]][-2:] == ["mmap", "cpu_write"]
    shared = [s.ev for s in _build("once-mmap-file-mlock-nomemset").steps]
    bind = next(i for i, e in enumerate(shared) if e["ev"] == "bind")
    assert shared[bind - 1]["ev"] == "cpu_read"      # read faults on a shared mapping


def test_new_mmap_buffers_after_the_first_are_map_shared() -> None:
    sc = _build("many-mmap-new")
    flags = [bool(m.get("shared")) for m in _mmaps(sc)]
    assert flags[0] is False and len(flags) > 2 and all(flags[1:])
    status, msg, _, ctr = run_scenario(sc)
    assert status == "passed", msg
    # only the first (private) buffer ever migrates
    assert ctr["migrations_to_vram"] == 1


def test_a_wrong_shared_flag_would_be_caught() -> None:
    """The zero-migration check can fail: the same buffer mapped private migrates."""
    sc = _build("once-mmap-shared-nomemset")
    k = next(i for i, s in enumerate(sc.steps) if s.ev["ev"] == "mmap")
    st = sc.steps[k]
    ev = {key: v for key, v in st.ev.items() if key != "shared"}
    sc.steps[k] = type(st)(ev, st.want, st.data, st.stop_on, st.why)
    _, _, _, ctr = run_scenario(sc)
    assert ctr["migrations_to_vram"] == 1


def test_hugetlb_buffers_are_2mib_file_mappings() -> None:
    """MAP_HUGETLB: IGT rounds the buffer to 2 MiB; hugetlbfs backs it with a file."""
    for name in ("once-mmap-huge", "many-mmap-free-huge", "threads-many-mmap-new-huge"):
        sc = _build(name)
        first = _mmaps(sc)[0]
        assert first.get("file") is True, name
        assert first["addr"] % (2 << 20) == 0 and first["size"] % (2 << 20) == 0, name
        status, msg, _, ctr = run_scenario(sc)
        assert status == "passed", (name, msg)
    # one huge buffer, nothing else: no page of it ever reaches VRAM
    assert run_scenario(_build("once-mmap-huge"))[3]["migrations_to_vram"] == 0


def test_docs_counts_match_the_listing() -> None:
    """docs/igt.md's ported count and per-reason table are what --list gives."""
    import re
    from collections import Counter
    from pathlib import Path

    from pysvm.igt import all_subtests

    doc = (Path(__file__).resolve().parents[2] / "docs" / "igt.md").read_text()
    subs = all_subtests()
    ported = sum(st.build is not None for st in subs)
    m = re.search(r"([\d,]+) are ported \(", doc)
    assert m is not None and int(m.group(1).replace(",", "")) == ported
    listed = Counter(st.skip for st in subs if st.skip)
    table = {}
    for ln in doc.split("| reason (as `--list` prints it) |", 1)[1].splitlines()[2:]:
        if not ln.startswith("|"):
            break
        reason, n, _ = (c.strip() for c in ln.strip("|").rsplit("|", 2))
        table[reason] = int(n.replace(",", ""))
    assert sum(table.values()) == sum(listed.values()) == len(subs) - ported
    for reason, n in listed.items():
        key = reason if reason in table else next(r for r in table if "(...)" in r
                                                   and reason.startswith(r.split(" (...)")[0]))
        assert table[key] == n, reason
