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

from pysvm.simulate import HEAP_BASE, MIRROR_RANGE, PAGE, SimConfig, Simulation, simulate

MiB = 1 << 20


class PageEngine:
    """A test double that models only the CPU/GPU page data of TRACE.md events.

    It is the smallest engine against which the generator can be checked without the
    real Xe model: it refuses access to unmapped pages (EFAULT) and malformed events
    (EINVAL), so a generator bug shows up as an unexpected error. `corrupt_at` makes
    the n-th read return a wrong value, to prove the integrity check can fail.
    """

    def __init__(self, corrupt_at: int = -1, atomic_cpu_refuses: bool = False) -> None:
        self.pages: dict[int, int] = {}
        self.stats: Counter[str] = Counter()
        self.reads = 0
        self.corrupt_at = corrupt_at
        self.atomic_cpu_refuses = atomic_cpu_refuses
        self.cpu_atomic: set[int] = set()

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
    ({"devices": 3}, "--devices"), ({"steps": 0}, "--steps"),
    ({"unbind": True, "devices": 1}, "--unbind needs"),
    ({"preferred_loc": "peer", "devices": 1}, "peer needs"),
    ({"profile": "5.0"}, "profile"), ({"heap_mib": 1}, "--size"),
])
def test_bad_config_is_refused(kw: dict[str, Any], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        SimConfig(**kw).validate()


# -- against the real trace engine ---------------------------------------------------------

def _engine_ready() -> bool:
    try:
        import pysvm.trace  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


real = pytest.mark.skipif(not _engine_ready(), reason="pysvm.trace not landed yet")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pysvm", *args], capture_output=True,
                          text=True, timeout=300)


@real
def test_real_engine_run_verifies_data() -> None:
    res = simulate(SimConfig(steps=400, seed=3))
    assert res.ok, res.mismatches[:3]
    assert res.sim["pages_verified"] > 0
    assert res.engine_summary.get("faults", 0) > 0


@real
def test_record_then_replay_gives_identical_summary(tmp_path: Path) -> None:
    trace = tmp_path / "run.jsonl"
    sim = run_cli("simulate", "--steps", "300", "--seed", "4", "--json", "--quiet",
                  "--record", str(trace))
    assert sim.returncode == 0, sim.stderr
    summary = json.loads(sim.stdout)["summary"]
    rep = run_cli("replay", str(trace))
    assert rep.returncode == 0, rep.stderr
    last = json.loads(rep.stdout.strip().splitlines()[-1])
    assert last["summary"] == summary
    n_events = json.loads(sim.stdout)["simulation"]["events"]
    assert len(rep.stdout.strip().splitlines()) == n_events + 1


@pytest.mark.parametrize("args, msg", [
    (["--devices", "1", "--unbind"], "--unbind needs --devices 2"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--timeline"], "--timeline needs --plot"),
    (["--record", "/nonexistent-dir/x.jsonl", "--steps", "1"], "cannot write"),
])
def test_cli_bad_input_one_line(args: list[str], msg: str) -> None:
    res = run_cli("simulate", *args)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and msg in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
