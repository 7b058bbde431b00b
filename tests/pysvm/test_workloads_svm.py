"""Application workloads (pysvm simulate --workload): replay, determinism, integrity,
the counters each pattern must produce, scaling of the event count, and the CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pysvm.sim.workload import SimConfig, simulate
from pysvm.sim.workloads import (
    SCHEMA_VERSION,
    WORKLOADS,
    WorkloadConfig,
    WorkloadResult,
    format_workload_summary,
    run_workload,
)
from pysvm.trace.engine import Engine
from pysvm.world import World

MiB = 1 << 20
CHUNK = 2 * MiB


def run(name: str, size_mib: int = 16, **kw: Any) -> tuple[WorkloadResult, list[str]]:
    rec = io.StringIO()
    res = run_workload(WorkloadConfig(name, size_mib=size_mib, **kw), record=rec)
    return res, rec.getvalue().splitlines()


def replay_summary(lines: list[str]) -> dict[str, int]:
    eng = Engine()
    outs = list(eng.run(lines))
    assert len(outs) == len(lines)
    return eng.summary()


def phase(res: WorkloadResult, name: str) -> dict[str, int]:
    (p,) = [p for p in res.phases if p.name == name]
    return p.counters


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_each_workload_replays_to_the_same_counters(name: str) -> None:
    res, lines = run(name)
    assert res.ok, (res.mismatches[:3], res.unexpected[:3])
    assert res.sim["pages_verified"] > 0 and res.sim["reads_verified"] > 0
    assert res.counters["faults"] > 0 and res.counters["bytes_to_vram"] > 0
    assert len(lines) == res.sim["events"] == res.engine_summary["events"]
    assert replay_summary(lines) == res.engine_summary
    # The comparison can fail: without the first GPU access that faulted, it differs.
    k = next(i for i, ln in enumerate(lines) if '"gpu_access"' in ln)
    assert replay_summary(lines[:k] + lines[k + 1:]) != res.engine_summary
    # Phases partition the run: their counters add up to the totals.
    for key in ("faults", "bytes_to_vram", "bytes_to_system", "events"):
        assert sum(p.counters.get(key, 0) for p in res.phases) == res.engine_summary[key]
    assert sum(p.events for p in res.phases) == res.sim["events"]


@pytest.mark.parametrize("name", ["gather", "ping-pong", "free-no-munmap"])
def test_deterministic_per_options(name: str) -> None:
    a, la = run(name, seed=5)
    b, lb = run(name, seed=5)
    assert la == lb
    ja, jb = a.as_json(), b.as_json()
    for j in (ja, jb):
        del j["simulation"]["wall_s"], j["simulation"]["events_per_s"]
    assert ja == jb


def test_gather_seed_changes_the_offsets() -> None:
    _, la = run("gather", seed=1)
    _, lb = run("gather", seed=2)
    assert la != lb and len(la) == len(lb)


def test_every_touch_is_chunk_granular_and_events_scale_linearly() -> None:
    small, lines = run("stream", size_mib=16)
    big, _ = run("stream", size_mib=32)
    for ln in lines:
        ev = json.loads(ln)
        if ev["ev"] in ("cpu_write", "cpu_read", "gpu_access"):
            assert ev["size"] % CHUNK == 0, ev
    # setup + teardown are fixed; the rest is 4 events per 2 MiB pair of chunks.
    assert big.sim["events"] - small.sim["events"] == 4 * (32 - 16) // 4
    _, glines = run("gather", size_mib=16)
    assert all(json.loads(ln)["size"] == 64 * 1024 for ln in glines
               if json.loads(ln)["ev"] == "gpu_access")


def test_stream_moves_each_input_byte_once() -> None:
    res, _ = run("stream", size_mib=16)      # VRAM 8 MiB: the output evicts the input
    assert res.vram_mib == 8
    c = phase(res, "gpu-stream")
    assert c["faults"] == 8 and c["bytes_to_vram"] == 16 * MiB
    assert c["evictions"] > 0 and c["bytes_to_system"] > 0


def test_stencil_reuse_faults_only_in_the_first_iteration() -> None:
    res, _ = run("stencil", size_mib=16, passes=3)
    assert phase(res, "iteration 1")["faults"] == 8
    assert phase(res, "iteration 2").get("faults", 0) == 0
    assert phase(res, "iteration 3").get("faults", 0) == 0
    # With half the VRAM every iteration faults again (thrashing).
    small, _ = run("stencil", size_mib=16, passes=3, vram_mib=8)
    assert phase(small, "iteration 3")["faults"] > 0
    assert small.thrash_ratio > res.thrash_ratio


@pytest.mark.parametrize("ratio,vram", [("1.25", 12), ("1.5", 10), ("2", 8), ("4", 4)])
def test_oversubscription_sets_vram_and_thrashes_every_pass(ratio: str, vram: int) -> None:
    res, _ = run(f"oversubscribe-{ratio}x", size_mib=16, passes=2)
    assert res.vram_mib == vram
    p2 = phase(res, "pass 2")
    # A cyclic sweep over more than VRAM: LRU evicts each chunk just before its reuse.
    assert p2["faults"] == 8 and p2["bytes_to_vram"] == 16 * MiB and p2["evictions"] == 8


def test_ping_pong_profiles_differ() -> None:
    old, _ = run("ping-pong", size_mib=16, passes=2)
    new, _ = run("ping-pong", size_mib=16, passes=2, profile="newest")
    for res in (old, new):
        assert phase(res, "round 2: gpu0")["bytes_to_vram"] == 16 * MiB
    # 6.18: gpu1 cannot take gpu0's device pages; they go home and gpu1 maps system memory.
    assert phase(old, "round 2: gpu1").get("bytes_to_vram", 0) == 0
    assert phase(old, "round 2: gpu1")["bytes_to_system"] == 16 * MiB
    assert new.counters["bytes_to_vram"] > old.counters["bytes_to_vram"]


def test_ping_pong_between_tiles_moves_only_in_the_newer_driver() -> None:
    old, lines = run("ping-pong-tiles", size_mib=16, passes=2)
    new, _ = run("ping-pong-tiles", size_mib=16, passes=2, profile="newest")
    assert old.ok and new.ok
    assert old.tiles == new.tiles == 2 and old.as_json()["config"]["tiles"] == 2
    assert json.loads(lines[1])["tiles"] == 2          # one device with two tiles
    assert {json.loads(ln).get("tile") for ln in lines
            if json.loads(ln)["ev"] == "gpu_access"} == {0, 1}
    for res in (old, new):
        c = phase(res, "round 1: tile0")
        assert c["faults"] == 8 and c["bytes_to_vram"] == 16 * MiB
        # tile 1's PTEs are its own: it faults on every chunk (rebind BIT(tile->id))
        assert phase(res, "round 1: tile1")["faults"] == 8
    # 6.18 xe_svm_range_in_vram(): tile 0's VRAM will do, tile 1 maps it in place; later
    # rounds find both tiles bound and fault no more.
    assert phase(old, "round 1: tile1").get("bytes_to_vram", 0) == 0
    assert phase(old, "round 2: tile0").get("faults", 0) == 0
    assert phase(old, "round 2: tile1").get("faults", 0) == 0
    # newest xe_svm_range_has_pagemap(): only the faulting tile's pagemap will do, so every
    # round moves the buffer out of one tile's VRAM and into the other's.
    for name in ("round 1: tile1", "round 2: tile0", "round 2: tile1"):
        c = phase(new, name)
        assert c["faults"] == 8 and c["bytes_to_vram"] == c["bytes_to_system"] == 16 * MiB
    assert "1 discrete device x 2 tiles x 16 MiB VRAM" in format_workload_summary(old)


def test_free_without_munmap_storms_where_munmap_does_not() -> None:
    keep, _ = run("free-no-munmap", size_mib=16, passes=3)
    unmap, _ = run("free-munmap", size_mib=16, passes=3)
    # Round 3 reuses round 1's object: its dead pages are still in VRAM and the CPU's
    # initialisation migrates them home (8 MiB object minus the 2 MiB read back).
    assert phase(keep, "round 3: malloc+cpu-init")["bytes_to_system"] == 6 * MiB
    assert phase(unmap, "round 3: malloc+cpu-init").get("bytes_to_system", 0) == 0
    assert keep.counters["bytes_to_system"] > unmap.counters["bytes_to_system"]
    assert unmap.counters["gc_runs"] > keep.counters["gc_runs"]


class CorruptingEngine:
    """The real model, but the n-th read returns one wrong page."""

    def __init__(self, n: int) -> None:
        self.world = World()
        self.n = n
        self.reads = 0

    def execute(self, ev: object) -> dict[str, Any]:
        out: dict[str, Any] = self.world.execute(ev)
        if "data" in out:
            self.reads += 1
            if self.reads == self.n:
                out["data"] = [out["data"][0] + 1, *out["data"][1:]]
        return out

    def summary(self) -> dict[str, int]:
        return self.world.summary()


def test_integrity_check_catches_a_wrong_page() -> None:
    res = run_workload(WorkloadConfig("stencil", size_mib=8, passes=1),
                       engine=CorruptingEngine(3))
    assert not res.ok and len(res.mismatches) == 1
    assert "DATA INTEGRITY FAILED" in format_workload_summary(res)
    assert res.as_json()["integrity"] == "MISMATCH"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pysvm", *args], capture_output=True,
                          text=True, timeout=300)


def test_cli_json_record_and_replay(tmp_path: Path) -> None:
    trace = tmp_path / "w.jsonl"
    out = run_cli("simulate", "--workload", "producer-consumer", "--size", "8", "--passes",
                  "2", "--json", "-q", "--record", str(trace))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["workload"] == "producer-consumer" and data["integrity"] == "verified"
    assert data["working_set_bytes"] == 8 * MiB
    c = data["counters"]
    assert c["thrash_ratio"] == (c["bytes_to_vram"] + c["bytes_to_system"]) / (8 * MiB)
    assert [p["name"] for p in data["phases"]][:3] == ["setup", "mmap", "round 1: cpu-produce"]
    rep = run_cli("replay", str(trace))
    assert json.loads(rep.stdout.splitlines()[-1]) == {"summary": data["summary"]}
    text = run_cli("simulate", "--workload", "producer-consumer", "--size", "8", "--passes",
                   "2", "-q")
    assert text.returncode == 0
    for needle in ("GPU faults", "migrations    to VRAM", "evictions", "thrash", "phases",
                   "round 2: gpu-transform", "DATA INTEGRITY VERIFIED"):
        assert needle in text.stdout, needle


def test_default_json_gains_only_the_schema_version() -> None:
    out = run_cli("simulate", "--steps", "200", "--seed", "3", "--json", "-q")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data.pop("schema_version") == SCHEMA_VERSION
    ref = simulate(SimConfig(steps=200, seed=3)).as_json()
    assert data["summary"] == ref["summary"]
    assert set(data) == set(ref)


@pytest.mark.parametrize("args,msg", [
    (["--workload", "stream", "--steps", "10"], "--steps does not apply to --workload"),
    (["--workload", "stream", "--passes", "2"], "--passes does not apply"),
    (["--workload", "oversubscribe-2x", "--vram-mib", "4"], "--vram-mib does not apply"),
    (["--workload", "stencil", "--size", "7"], "--size must be an even number"),
    (["--workload", "stencil", "--size", "1000000"], "--size must be an even number"),
    (["--passes", "2"], "--passes needs --workload"),
    (["--workload", "gather", "--plot", "x.png"], "--plot and --timeline do not apply"),
])
def test_cli_refuses_options_that_do_not_apply(args: list[str], msg: str) -> None:
    out = run_cli("simulate", *args)
    assert out.returncode == 2 and msg in out.stderr, out.stderr
    assert out.stdout == ""


def test_cli_unknown_workload_names_the_choices() -> None:
    out = run_cli("simulate", "--workload", "nope")
    assert out.returncode == 2 and "oversubscribe-1.25x" in out.stderr
