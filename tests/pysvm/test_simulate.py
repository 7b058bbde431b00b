"""The built-in workload: determinism, trace validity, integrity checking, CLI, record/replay."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pysvm.sim.workload import (
    HEAP_BASE,
    MIRROR_RANGE,
    PAGE,
    SimConfig,
    Simulation,
    format_summary,
    simulate,
)

MiB = 1 << 20


class PageEngine:
    """A test double that models only the CPU/GPU page data of TRACE.md events.

    It is the smallest engine against which the generator can be checked without the
    real Xe model: it refuses access to unmapped pages (EFAULT) and malformed events
    (EINVAL), so a generator bug shows up as an unexpected error. `corrupt_at` makes
    the n-th read return a wrong value, to prove the integrity check can fail.
    """

    def __init__(self, corrupt_at: int = -1, atomic_cpu_refuses: bool = False,
                 atomic_errno: str | None = None) -> None:
        self.pages: dict[int, int] = {}
        self.stats: Counter[str] = Counter()
        self.reads = 0
        self.corrupt_at = corrupt_at
        self.atomic_cpu_refuses = atomic_cpu_refuses
        self.cpu_atomic: set[int] = set()
        self.atomic_errno = atomic_errno

    def _span(self, ev: dict[str, Any], key: str = "size") -> range:
        addr, size = ev["addr"], ev[key]
        assert isinstance(addr, int) and isinstance(size, int)
        assert addr % PAGE == 0 and size % PAGE == 0 and size > 0, ev
        return range(addr // PAGE, (addr + size) // PAGE)

    def execute(self, ev: dict[str, Any]) -> dict[str, Any]:
        self.stats["events"] += 1
        name = ev["ev"]
        out: dict[str, Any] = {"ev": name, "result": "ok"}
        if name == "mmap":
            for p in self._span(ev):
                self.pages[p] = 0
        elif name == "munmap":
            for p in self._span(ev):
                self.pages.pop(p, None)
                self.cpu_atomic.discard(p)
        elif name in ("cpu_write", "cpu_read", "gpu_access"):
            span = self._span(ev)
            if any(p not in self.pages for p in span):
                return {"ev": name, "result": "EFAULT"}
            op = "write" if name == "cpu_write" else "read" if name == "cpu_read" else ev["op"]
            if name == "gpu_access":
                self.stats["faults"] += 1
            if op == "atomic" and self.atomic_cpu_refuses and any(p in self.cpu_atomic
                                                                   for p in span):
                return {"ev": name, "result": "EACCES", "faults": 1, "retries": 0}
            if op == "atomic" and self.atomic_errno:
                # The first page was incremented before the fault handler gave up.
                self.pages[span[0]] += 1
                return {"ev": name, "result": self.atomic_errno, "faults": 1, "retries": 3}
            for p in span:
                if op == "write":
                    self.pages[p] = ev["value"]
                elif op == "atomic":
                    self.pages[p] += 1
            if op == "read":
                data = [self.pages[p] for p in span]
                self.reads += 1
                if self.reads == self.corrupt_at:
                    data[0] += 1000
                out["data"] = data
        elif name == "madvise":
            if ev["type"] == "atomic" and ev["val"] == 3:
                self.cpu_atomic.update(self._span(ev, "range"))
            out["invalidated"] = []
        elif name == "query":
            out["vmas"] = [{"addr": 0, "range": MIRROR_RANGE, "flags": ["cpu_addr_mirror"],
                            "attrs": {"devmem_fd": 0, "migration_policy": 0, "atomic": 0,
                                      "pat_index": 0, "default_pat_index": 0}}]
        elif name == "ranges":
            out["ranges"] = []
        return out

    def summary(self) -> dict[str, Any]:
        return dict(self.stats)


ALL_EVENTS = {"config", "device", "link", "vm_create", "mmap", "munmap", "cpu_write", "cpu_read",
              "bind", "madvise", "query", "gpu_access", "prefetch", "ranges", "gc", "evict",
              "unbind_device", "run_workers"}


def run_fake(cfg: SimConfig, **kw: Any) -> tuple[Any, list[dict[str, Any]]]:
    rec = io.StringIO()
    sim = Simulation(cfg, engine=PageEngine(**kw), record=rec, available=ALL_EVENTS)
    res = sim.run()
    return res, [json.loads(line) for line in rec.getvalue().splitlines()]


def _u64(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 1 << 64


def check_event(ev: dict[str, Any], cfg: SimConfig) -> None:
    """The fields TRACE.md requires for each event the generator emits, with their types."""
    heap_end = HEAP_BASE + cfg.heap_mib * MiB
    name = ev["ev"]
    if name in ("mmap", "munmap", "cpu_write", "cpu_read", "gpu_access"):
        assert _u64(ev["addr"]) and _u64(ev["size"]) and ev["size"] > 0
        assert ev["addr"] >= HEAP_BASE and ev["addr"] + ev["size"] <= heap_end, ev
    if name in ("madvise", "prefetch"):
        assert _u64(ev["addr"]) and _u64(ev["range"]) and ev["range"] >= PAGE
        assert ev["addr"] % PAGE == 0 and ev["range"] % PAGE == 0
        assert ev["addr"] >= HEAP_BASE and ev["addr"] + ev["range"] <= heap_end, ev
    if name == "cpu_write":
        assert isinstance(ev["value"], int)
    if name == "gpu_access":
        assert ev["vm"] == "vm0" and ev["op"] in ("read", "write", "atomic")
        assert ("value" in ev) == (ev["op"] == "write")
    if name == "madvise":
        assert ev["type"] in ("preferred_loc", "atomic", "pat")
        if ev["type"] == "preferred_loc":
            assert ev["devmem_fd"] in (0, -1) or ev["devmem_fd"] == "gpu1"
            assert ev["migration_policy"] in (0, 1)
        else:
            assert isinstance(ev["val"], int) and 0 <= ev["val"] <= 3
    if name == "prefetch":
        assert ev["region"] in ("vram", "system")
    if name == "device":
        assert isinstance(ev["name"], str) and ev["vram_mib"] == cfg.vram_mib
        assert ev["discrete"] is True and isinstance(ev["smem_atomics"], bool)
    if name == "bind":
        assert ev["op"] == "map" and ev["flags"] == ["cpu_addr_mirror"] and "bo" not in ev
    if name in ("evict", "unbind_device"):
        assert ev["device"] in ("gpu0", "gpu1")
    assert name in ALL_EVENTS, name


def test_same_seed_same_events_other_seed_other_events() -> None:
    cfg = SimConfig(steps=300, seed=5)
    res_a, ev_a = run_fake(cfg)
    res_b, ev_b = run_fake(cfg)
    _, ev_c = run_fake(SimConfig(steps=300, seed=6))
    assert ev_a == ev_b
    assert ev_a != ev_c
    assert res_a.engine_summary == res_b.engine_summary


@pytest.mark.parametrize("cfg", [
    SimConfig(steps=600, seed=1),
    SimConfig(steps=600, seed=2, devices=1, preferred_loc="device", atomics="device"),
    SimConfig(steps=600, seed=3, unbind=True, preferred_loc="peer", profile="newest"),
    SimConfig(steps=400, seed=4, heap_mib=8, preferred_loc="system", atomics="cpu"),
], ids=["default", "one-device", "unbind-peer", "tiny-heap-cpu-atomics"])
def test_events_follow_trace_format_and_touch_only_mapped_pages(cfg: SimConfig) -> None:
    res, events = run_fake(cfg)
    assert events[0] == {"ev": "config", "profile": cfg.profile}
    for ev in events:
        check_event(ev, cfg)
    # PageEngine answers EFAULT for an access to an unmapped page: none expected.
    assert res.sim["unexpected"] == [], res.sim["unexpected"]
    assert res.ok and res.sim["pages_verified"] > 1000
    kinds = Counter(ev["ev"] for ev in events)
    for name in ("mmap", "munmap", "cpu_write", "cpu_read", "gpu_access", "madvise"):
        assert kinds[name] > 0, name
    assert (kinds["unbind_device"] == 1) == cfg.unbind
    assert res.sim["events"] == len(events)


def test_integrity_check_catches_a_wrong_read() -> None:
    res, _ = run_fake(SimConfig(steps=300, seed=9), corrupt_at=25)
    assert not res.ok
    assert len(res.mismatches) == 1 and "last written" in res.mismatches[0]


def test_refused_gpu_atomic_is_counted_and_data_reestablished() -> None:
    res, events = run_fake(SimConfig(steps=800, seed=11, atomics="cpu"),
                           atomic_cpu_refuses=True)
    assert res.sim["workload"].get("gpu_atomics_refused", 0) > 0
    assert res.ok and res.sim["unexpected"] == []
    # After each refusal the simulator rewrites the pages from the CPU.
    for k, ev in enumerate(events[:-1]):
        if ev["ev"] == "gpu_access" and ev["op"] == "atomic" and \
                events[k + 1]["ev"] == "cpu_write" and events[k + 1]["addr"] == ev["addr"]:
            break
    else:
        pytest.fail("no cpu_write followed a refused GPU atomic")


@pytest.mark.parametrize("err", ["EBUSY", "ENOMEM", "EFAULT", "ETIME"])
def test_failed_gpu_atomic_fault_is_counted_not_unexpected(err: str) -> None:
    res, _ = run_fake(SimConfig(steps=500, seed=12), atomic_errno=err)
    assert res.sim["workload"]["gpu_atomic_faults_failed"] > 0
    assert res.sim["results_not_ok"][f"gpu_access:{err}"] > 0
    assert res.sim["unexpected"] == [] and res.ok     # the touched page was re-established
    text = format_summary(res)
    assert "could not get its range into VRAM" in text and "UNEXPECTED" not in text


def test_other_gpu_failures_stay_unexpected() -> None:
    res, _ = run_fake(SimConfig(steps=300, seed=12), atomic_errno="EINVAL")
    assert res.sim["unexpected_count"] > 0
    assert "UNEXPECTED" in format_summary(res)


def _devmem_fds(events: list[dict[str, Any]]) -> set[Any]:
    return {ev["devmem_fd"] for ev in events
            if ev["ev"] == "madvise" and ev["type"] == "preferred_loc"}


def test_mixed_placement_asks_for_the_peer_only_where_the_profile_has_it() -> None:
    _, old = run_fake(SimConfig(steps=600, seed=3, profile="6.18"))
    _, new = run_fake(SimConfig(steps=600, seed=3, profile="newest"))
    assert _devmem_fds(old) == {0, -1}
    assert _devmem_fds(new) == {0, -1, "gpu1"}
    _, asked = run_fake(SimConfig(steps=300, seed=3, profile="6.18", preferred_loc="peer"))
    assert _devmem_fds(asked) == {"gpu1"}


@pytest.mark.parametrize(("policy", "value"), [("all", 0), ("system-only", 1)])
def test_migration_policy_reaches_every_preferred_loc_madvise(policy: str, value: int) -> None:
    _, events = run_fake(SimConfig(steps=400, seed=8, migration_policy=policy))
    values = {ev["migration_policy"] for ev in events
              if ev["ev"] == "madvise" and ev["type"] == "preferred_loc"}
    assert values == {value}


@pytest.mark.parametrize("cfg", [
    SimConfig(), SimConfig(seed=9, steps=40, profile="newest", devices=2, vram_mib=8,
                           heap_mib=16, preferred_loc="peer", migration_policy="system-only",
                           atomics="cpu", unbind=True),
    SimConfig(steps=40, tiles=2),
])
def test_command_line_reproduces_the_config(cfg: SimConfig) -> None:
    import argparse

    from pysvm.cli.simulate import add_sim_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    words = cfg.command_line().split()
    assert words[:2] == ["pysvm", "simulate"]
    assert config_from_args(parser.parse_args(words[2:])) == cfg


def test_missing_engine_feature_is_noted_not_hidden() -> None:
    rec = io.StringIO()
    avail = ALL_EVENTS - {"unbind_device", "prefetch"}
    res = Simulation(SimConfig(steps=400, seed=2, unbind=True), engine=PageEngine(),
                     record=rec, available=avail).run()
    notes = " | ".join(res.sim["notes"])
    assert "device unbind: not available" in notes
    assert "prefetch: not available" in notes
    assert '"unbind_device"' not in rec.getvalue()


@pytest.mark.parametrize("kw, msg", [
    ({"devices": 3}, "--devices"), ({"steps": 0}, "--steps"), ({"steps": 10**8}, "--steps"),
    ({"migration_policy": "some"}, "--migration-policy"), ({"atomics": "x"}, "--atomics"),
    ({"unbind": True, "devices": 1}, "--unbind needs"),
    ({"preferred_loc": "peer", "devices": 1}, "peer needs"),
    ({"profile": "5.0"}, "profile"), ({"heap_mib": 1}, "--size"),
    ({"tiles": 0}, "--tiles"), ({"tiles": 3}, "--tiles"),
])
def test_bad_config_is_refused(kw: dict[str, Any], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        SimConfig(**kw).validate()


# -- against the real trace engine ---------------------------------------------------------

def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pysvm", *args], capture_output=True,
                          text=True, timeout=300)


def test_real_engine_run_verifies_data() -> None:
    res = simulate(SimConfig(steps=400, seed=3))
    assert res.ok, res.mismatches[:3]
    assert res.sim["pages_verified"] > 0
    assert res.engine_summary.get("faults", 0) > 0


class RecordingEngine:
    """The real engine, keeping every output line the simulation saw."""

    def __init__(self) -> None:
        from pysvm.trace.engine import Engine

        self.engine = Engine()
        self.outputs: list[dict[str, Any]] = []

    def execute(self, ev: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self.engine.execute(ev)
        self.outputs.append(out)
        return out

    def summary(self) -> dict[str, Any]:
        return dict(self.engine.summary())


def replay_lines(trace: Path) -> list[dict[str, Any]]:
    rep = run_cli("replay", str(trace))
    assert rep.returncode == 0 and rep.stderr == "", rep.stderr
    return [json.loads(line) for line in rep.stdout.splitlines()]


@pytest.mark.parametrize("cfg", [
    SimConfig(steps=300, seed=4),
    SimConfig(steps=300, seed=5, profile="newest", preferred_loc="peer", unbind=True,
              timeline=True),
    SimConfig(steps=300, seed=6, tiles=2),
], ids=["6.18", "newest-peer-unbind-timeline", "two-tiles"])
def test_replay_of_the_recording_reproduces_every_output(tmp_path: Path, cfg: SimConfig) -> None:
    trace = tmp_path / "run.jsonl"
    eng = RecordingEngine()
    with trace.open("w") as fh:
        res = simulate(cfg, record=fh, engine=eng)
    lines = replay_lines(trace)
    # Every per-event line (data read, faults, errno, invalidated ranges, ...) is the same.
    assert [{k: v for k, v in ln.items() if k != "i"} for ln in lines[:-1]] == eng.outputs
    assert lines[-1] == {"summary": res.engine_summary}
    # ... and the run did real work, so the equality is not between two empty summaries.
    s = res.engine_summary
    assert s["events"] == res.sim["events"] == len(lines) - 1
    assert s["faults"] > 100 and s["migrations_to_vram"] > 0 and s["migrations_to_system"] > 0
    assert s["gc_runs"] > 0 and res.sim["pages_verified"] > 1000
    assert lines[-3]["ev"] == "query" and lines[-3]["vmas"] == res.vmas
    assert lines[-2]["ev"] == "ranges" and lines[-2]["ranges"] == res.ranges


def test_record_then_replay_gives_identical_summary(tmp_path: Path) -> None:
    trace = tmp_path / "run.jsonl"
    sim = run_cli("simulate", "--steps", "300", "--seed", "4", "--json", "--quiet",
                  "--record", str(trace))
    assert sim.returncode == 0, sim.stderr
    data = json.loads(sim.stdout)
    assert data["integrity"] == "verified"
    lines = replay_lines(trace)
    assert lines[-1] == {"summary": data["summary"]}
    assert len(lines) == data["simulation"]["events"] + 1
    assert data["summary"]["faults"] > 0 and data["summary"]["bytes_to_vram"] > 0
    # The comparison can fail: drop one GPU kernel that faulted and the summary differs.
    events = trace.read_text().splitlines()
    k = next(i for i, ln in enumerate(lines[:-1]) if ln["ev"] == "gpu_access"
             and ln.get("faults", 0) > 0)
    trace.write_text("\n".join(events[:k] + events[k + 1:]) + "\n")
    assert replay_lines(trace)[-1]["summary"] != data["summary"]


def test_human_summary_names_every_counter(tmp_path: Path) -> None:
    trace = tmp_path / "run.jsonl"
    res = run_cli("simulate", "--steps", "400", "--seed", "2", "--devices", "2", "--unbind",
                  "--profile", "newest", "--record", str(trace))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for needle in ("GPU faults", "retries", "migrations    to VRAM", "to system", "GC ",
                   "VMA attribute resets", "VMAs", "SVM ranges", "events/s",
                   "gpu1 unbound at step 200", "DATA INTEGRITY VERIFIED",
                   f"recorded      {sum(1 for _ in trace.open())} events to {trace}"):
        assert needle in out, needle
    faults = int(out.split("GPU faults")[1].split()[0])
    assert faults == replay_lines(trace)[-1]["summary"]["faults"]


@pytest.mark.parametrize("profile", ["6.18", "newest"])
def test_two_tiles_run_kernels_on_both_and_keep_the_data(profile: str) -> None:
    # --tiles 2: each device is made with two tiles (xe->info.tile_count), each GPU kernel
    # names the tile whose GT runs it, and faults fill that tile's VRAM.
    rec = io.StringIO()
    eng = RecordingEngine()
    res = simulate(SimConfig(steps=400, seed=8, profile=profile, tiles=2), record=rec,
                   engine=eng)
    assert res.ok, res.mismatches[:3]
    events = [json.loads(line) for line in rec.getvalue().splitlines()]
    assert [ev.get("tiles") for ev in events if ev["ev"] == "device"] == [2, 2]
    kernels = [ev for ev in events if ev["ev"] == "gpu_access"]
    assert {ev["tile"] for ev in kernels} == {0, 1}
    # ranges live in both tiles' VRAM at the end (range locations name the tile)
    assert {"gpu0.tile0", "gpu0.tile1"} <= {r["location"] for r in res.ranges}
    assert len(eng.engine.world.devices["gpu0"].vrams) == 2
    assert "2 discrete devices x 2 tiles x 16 MiB VRAM" in format_summary(res)
    one = [json.loads(line) for line in _record(SimConfig(steps=400, seed=8,
                                                           profile=profile)).splitlines()]
    assert not any("tile" in ev or "tiles" in ev for ev in one)    # one tile: as before


def _record(cfg: SimConfig) -> str:
    rec = io.StringIO()
    simulate(cfg, record=rec)
    return rec.getvalue()
