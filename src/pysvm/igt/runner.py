"""Run a subtest's scenario on the model and judge it the way IGT would."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .scenario import ANY_ERROR, Scenario
from .target import counters, execute, new_target

__all__ = ["PROFILES", "Subtest", "Result", "run_subtest", "record_trace"]

#: The kernel behaviours the model can take (the trace ``config`` event).
PROFILES = ("6.18", "newest")


@dataclass(frozen=True)
class Subtest:
    """One IGT subtest: its exact name and either a scenario builder or a skip reason."""

    suite: str
    name: str
    build: Callable[[str], Scenario] | None = None
    skip: str | None = None
    benchmark: bool = False
    #: The profiles the subtest applies to, and why not the others.
    profiles: tuple[str, ...] = PROFILES
    profile_note: str = ""

    @property
    def status(self) -> str:
        return "ported" if self.build is not None else f"skipped: {self.skip}"


@dataclass
class Result:
    suite: str
    name: str
    profile: str
    status: str                     # "passed" | "failed" | "skipped"
    message: str = ""
    steps: int = 0
    seconds: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"suite": self.suite, "name": self.name, "profile": self.profile,
                               "status": self.status, "steps": self.steps,
                               "seconds": round(self.seconds, 4)}
        if self.message:
            out["message"] = self.message
        if self.counters:
            out["counters"] = self.counters
        return out


def _describe(k: int, ev: dict[str, Any], why: str) -> str:
    brief = {key: v for key, v in ev.items() if key not in ("event",)}
    return f"step {k} {json.dumps(brief)}" + (f" ({why})" if why else "")


def run_scenario(sc: Scenario) -> tuple[str, str, int, dict[str, int]]:
    """Execute every step; return (status, message, steps run, model counters)."""
    target = new_target()
    for k, step in enumerate(sc.steps):
        out = execute(target, step.ev)
        res = out.get("result")
        if res != "ok" and (step.stop_on == ANY_ERROR or res in step.stop_on):
            return "passed", f"IGT stops here on {res} (as it accepts)", k + 1, counters(target)
        if res not in step.want:
            msg = out.get("message", "")
            return ("failed", f"{_describe(k, step.ev, step.why)}: result {res}, IGT expects "
                    f"{'/'.join(step.want)}" + (f" ({msg})" if msg else ""), k + 1,
                    counters(target))
        if step.data is not None and tuple(out.get("data", ())) != step.data:
            got = out.get("data", [])
            pairs = enumerate(zip(got, step.data, strict=False))
            bad = next((i for i, (a, b) in pairs if a != b), None)
            where = f" first difference at page {bad}" if bad is not None else ""
            return ("failed", f"{_describe(k, step.ev, step.why)}: read back "
                    f"{len(got)} pages not equal to what was written{where}", k + 1,
                    counters(target))
        if step.faults is not None and out.get("faults") != step.faults:
            return ("failed", f"{_describe(k, step.ev, step.why)}: {out.get('faults')} GPU "
                    f"faults, IGT expects {step.faults}", k + 1, counters(target))
        if step.addr is not None and out.get("addr") != step.addr:
            return ("failed", f"{_describe(k, step.ev, step.why)}: returned address "
                    f"{out.get('addr')}, IGT expects {step.addr}", k + 1, counters(target))
        if step.pat is not None:
            pats = [v.get("attrs", {}).get("pat_index") for v in out.get("vmas", [])]
            if not pats or any(x != step.pat for x in pats):
                return ("failed", f"{_describe(k, step.ev, step.why)}: pat_index per VMA "
                        f"{pats}, IGT expects {step.pat}", k + 1, counters(target))
    return "passed", "", len(sc.steps), counters(target)


def record_trace(sc: Scenario, path: str) -> None:
    """Write the scenario's events as a JSON Lines trace (temp file, then rename)."""
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for ev in sc.events():
                f.write(json.dumps(ev) + "\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run_subtest(st: Subtest, profile: str, record_dir: str | None = None) -> Result:
    """Build and run one subtest on one profile (a skipped subtest is not run)."""
    if st.build is None:
        return Result(st.suite, st.name, profile, "skipped", st.skip or "")
    if profile not in st.profiles:
        return Result(st.suite, st.name, profile, "skipped", st.profile_note)
    t0 = time.perf_counter()
    sc = st.build(profile)
    if record_dir is not None:
        record_trace(sc, os.path.join(record_dir, st.suite, f"{st.name}@{profile}.jsonl"))
    status, msg, n, ctr = run_scenario(sc)
    if status == "passed" and sc.noop and not msg:
        msg = "IGT itself returns before touching the GPU for this combination"
    return Result(st.suite, st.name, profile, status, msg, n, time.perf_counter() - t0,
                  ctr if st.benchmark else {})
