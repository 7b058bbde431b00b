"""The regression corpus, ``tests/fuzz/corpus/*.jsonl``, replayed on both implementations.

Every line is one case in the vector format (shared/vectors/README.md, plus
``prefetch`` steps): hand-picked kernel quirks, the shrunk outputs of the
planted-bug runs (both from ``make_corpus.py``), and every failure the fuzzer
ever found (``python -m gpuvm_core.fuzz --corpus tests/fuzz/corpus``). A case
that fails here is a regression of a bug that was found once.

Kernel: drivers/gpu/drm/drm_gpuvm.c (the behaviour the cases pin; the kernel
facts checked below are named with the function they come from).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gpuvm_core import GpuVm, RefGpuVm
from gpuvm_core.conformance import check_case, iter_cases, run_case

from . import make_corpus

CORPUS = Path(__file__).resolve().parent / "corpus"
P = 0x1000
TOP = 1 << 64

CASES: list[dict[str, Any]] = [c for path in sorted(CORPUS.glob("*.jsonl"))
                               for c in iter_cases(path)]
BY_ID = {c["id"]: c for c in CASES}


def _named(stem: str) -> dict[str, Any]:
    (case,) = [c for cid, c in BY_ID.items() if cid.startswith(f"corpus-{stem}-")]
    return case


@pytest.mark.parametrize("impl", [GpuVm, RefGpuVm], ids=["core", "reference"])
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_corpus_case_replays(case: dict[str, Any], impl: Any) -> None:
    res = run_case(case, impl)
    assert res.ok, f"{case['id']} step {res.step}: {res.message}\n  ({case.get('note', '')})"


def test_corpus_is_well_formed_and_seeded() -> None:
    assert len(BY_ID) == len(CASES), "duplicate case ids"
    for c in CASES:
        assert check_case(c) is None, c["id"]
    assert {p.name for p in CORPUS.glob("*.jsonl")} >= {"handpicked.jsonl", "planted.jsonl"}
    ids = " ".join(BY_ID)
    for planted in ("middle-split-offset", "vm-end-bound", "touching-neighbour",
                    "zero-length-last", "core-debug-fault-1"):
        assert f"corpus-planted-{planted}-" in ids
    # what the hand-picked part is for: each of these is in it
    zero_mid = [c for c in CASES
                if any(s["range"] == 0 and s["result"] == "ok" for s in c["steps"][:-1])]
    vm_top = [c for c in CASES if c["vm"]["start"] + c["vm"]["range"] == TOP]
    near_top = [c for c in CASES if c["vm"]["start"] + c["vm"]["range"] > TOP - (1 << 32)]
    reserved = [c for c in CASES if c["vm"]["reserve_range"]]
    calls = {s["call"] for c in CASES for s in c["steps"]}
    failures = [c for c in CASES if any(s.get("apply_failures") for s in c["steps"])]
    assert len(zero_mid) >= 5 and vm_top and len(near_top) >= 4 and len(reserved) >= 5
    assert calls == {"map", "unmap", "madvise", "prefetch"} and failures


def test_corpus_files_match_make_corpus() -> None:
    """The seeded files are exactly what make_corpus.py writes (edit the script, not the files)."""
    assert make_corpus.main(["--check"]) == 0


# ---------------------------------------------------------------------------
# A few recorded results pinned to the kernel source, so a corpus regenerated
# from a broken reference cannot pass unnoticed.


def test_vm_ending_at_2_64_refuses_everything() -> None:
    # drm_gpuvm_in_mm_range(): mm_start + mm_range wraps to 0, so end <= mm_end never holds
    case = _named("top-vm-ends-at-2^64")
    for s in case["steps"]:
        if s["call"] == "prefetch":  # drm_gpuvm_prefetch_ops_create(): no range check
            assert s["result"] == "ok" and s["ops"] == []
        else:
            assert s["result"] == "EINVAL", s
        assert s["state"] == []


def test_zero_length_va_at_0_grows_into_a_mapping() -> None:
    # a zero-length VA at 0 has last = 2^64-1 (interval tree), the walk meets it,
    # and __drm_gpuvm_sm_map()'s "addr < req_addr" branch keeps [addr, req_addr)
    case = _named("zero-at-0-grows")
    first, second = case["steps"][0], case["steps"][1]
    assert first["state"] == [[0, 0, None, 0]]
    remap = second["ops"][0]
    assert remap["op"] == "remap" and remap["prev"] == {"addr": 0, "range": 8 * P, "obj": None,
                                                        "offset": 0}
    assert remap["next"] is None
    assert second["state"] == [[0, 8 * P, None, 0], [8 * P, 2 * P, 1, 0]]


def test_prefetch_lists_the_reserved_node() -> None:
    # drm_gpuvm_prefetch_ops_create() walks drm_gpuvm_for_each_va_range(), kernel node included
    start = _named("reserved-at-start")
    assert {"op": "prefetch", "addr": 0, "range": P, "obj": None, "offset": 0} in \
        start["steps"][-1]["ops"]
    above = _named("reserved-outside-above")
    assert {"op": "prefetch", "addr": 64 * P, "range": 2 * P, "obj": None, "offset": 0} in \
        above["steps"][1]["ops"]


def test_zero_length_map_at_the_reserved_node_fails_its_insert() -> None:
    # range_valid(0, 0) holds (kstart < end is 0 < 0), but drm_gpuva_insert() of [0, 0)
    # searches [0, 2^64-1] and meets the kernel node: the map op's insert fails
    step = _named("reserved-at-start")["steps"][2]
    assert step["call"] == "map" and step["range"] == 0 and step["result"] == "ok"
    assert step["apply_failures"] == 1


def test_madvise_never_touches_bo_backed_vas() -> None:
    # __drm_gpuvm_sm_map(madvise=true) skips VAs with a GEM object
    case = _named("madvise-inside-bo")
    assert [s["ops"] for s in case["steps"] if s["call"] == "madvise"] == [[], []]
