"""The fuzz runner: seeds, sharding over worker processes, progress and the summary.

It knows nothing about GPUVM: it drives any :class:`~gpuvm_core.fuzz.target.Target`
(``make_case(rng)`` / ``run_case(case)``, optionally ``case_steps``,
``shrink`` and ``save``), so the SVM-level target of ``pysvm fuzz`` reuses
seeds, sharding, progress and the summary line.

Reproducibility: case ``i`` of seed ``K`` is generated from
``random.Random(f"{K}:{i}")``; worker ``j`` of ``J`` runs cases ``j, j+J, ...``.
A run is time-bounded, so a longer run covers a superset of a shorter one's
cases.

Kernel: none (test infrastructure).
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .oracle import Failure, short_tb

__all__ = ["Summary", "case_rng", "handle_failure", "parse_seed", "run", "run_shard"]


def parse_seed(text: str | int) -> int:
    """A seed from the command line: decimal, ``0x`` hex, a bare hex commit id, or any text."""
    if isinstance(text, int):
        return text
    s = text.strip()
    try:
        return int(s, 0)
    except ValueError:
        pass
    try:
        return int(s, 16)
    except ValueError:
        return int(hashlib.sha256(s.encode()).hexdigest()[:16], 16)


@dataclass
class Summary:
    """What a run did."""

    seed: int
    cases: int = 0
    steps: int = 0
    failures: int = 0
    elapsed: float = 0.0
    #: one entry per failure: seed, case index, failure text, shrunk steps, written path
    found: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.cases} cases, {self.steps} steps, {self.failures} failures "
                f"(seed {self.seed}, {self.elapsed:.1f} s)")


def case_rng(seed: int, index: int) -> random.Random:
    return random.Random(f"{seed}:{index}")


def _worker(target: Any, seed: int, shard: int, jobs: int, deadline: float,
            out_dir: str | None, shrink_seconds: float, max_cases: int | None,
            counters: Any, stop: Any) -> dict[str, Any]:
    """Run cases ``shard, shard+jobs, ...`` until the deadline, a stop, or a failure."""
    steps_of = getattr(target, "case_steps", None)
    cases = steps = 0
    index = shard
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not stop.is_set():
        if max_cases is not None and index >= max_cases:
            break
        case = target.make_case(case_rng(seed, index))
        f = target.run_case(case)
        cases += 1
        n = steps_of(case) if steps_of else 1
        steps += n
        counters.add(1, n)
        if f is not None:
            stop.set()
            found.append(handle_failure(target, case, f, seed, index, out_dir, shrink_seconds))
            break
        index += jobs
    return {"cases": cases, "steps": steps, "found": found}


def handle_failure(target: Any, case: Any, f: Failure, seed: int, index: int,
                    out_dir: str | None, shrink_seconds: float) -> dict[str, Any]:
    info: dict[str, Any] = {"seed": seed, "case": index, "failure": str(f)}
    shrink = getattr(target, "shrink", None)
    small, small_f = case, f
    if shrink is not None:
        small, small_f = shrink(case, f, time.monotonic() + shrink_seconds)
    info["shrunk"] = str(small_f)
    steps_of = getattr(target, "case_steps", None)
    info["shrunk_steps"] = steps_of(small) if steps_of else None
    save = getattr(target, "save", None)
    if save is not None and out_dir is not None:
        info["path"] = str(save(small, small_f, Path(out_dir), f"{seed}-{index}"))
    return info


class _LocalCounters:
    def __init__(self) -> None:
        self.cases = 0
        self.steps = 0

    def add(self, c: int, s: int) -> None:
        self.cases += c
        self.steps += s

    def get(self) -> tuple[int, int]:
        return self.cases, self.steps


class _SharedCounters:
    def __init__(self, ctx: Any) -> None:
        self._c = ctx.Value("q", 0)
        self._s = ctx.Value("q", 0)

    def add(self, c: int, s: int) -> None:
        with self._c.get_lock():
            self._c.value += c
        with self._s.get_lock():
            self._s.value += s

    def get(self) -> tuple[int, int]:
        return int(self._c.value), int(self._s.value)


class _LocalStop:
    def __init__(self) -> None:
        self.flag = False

    def set(self) -> None:
        self.flag = True

    def is_set(self) -> bool:
        return self.flag


class _Progress:
    """A status line every ``every`` seconds (stderr; CI logs keep it)."""

    def __init__(self, counters: Any, seconds: float, every: float, stream: TextIO | None
                 ) -> None:
        self.counters, self.seconds, self.every, self.stream = counters, seconds, every, stream
        self.t0 = time.monotonic()
        self.next = self.t0 + every

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.stream is None or (now < self.next and not force):
            return
        self.next = now + self.every
        c, s = self.counters.get()
        print(f"fuzz: {now - self.t0:6.1f}/{self.seconds:.0f} s  {c} cases  {s} steps",
              file=self.stream, flush=True)


class _ProgressCounters(_LocalCounters):
    def __init__(self, progress_every: float, seconds: float, stream: TextIO | None) -> None:
        super().__init__()
        self.progress = _Progress(self, seconds, progress_every, stream)

    def add(self, c: int, s: int) -> None:
        super().add(c, s)
        self.progress.tick()


def _proc_main(target_factory: Callable[[], Any], seed: int, shard: int, jobs: int,
               deadline: float, out_dir: str | None, shrink_seconds: float,
               max_cases: int | None, counters: Any, stop: Any, results: Any) -> None:
    # Ctrl-C reaches the whole process group: only the parent acts on it (it stops
    # and terminates the workers), so no worker prints a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        res = _worker(target_factory(), seed, shard, jobs, deadline, out_dir, shrink_seconds,
                      max_cases, counters, stop)
    except Exception as e:  # noqa: BLE001 - a harness crash must reach the parent
        res = {"cases": 0, "steps": 0, "found": [], "error": short_tb(e)}
    results.put(res)


def run(target_factory: Callable[[], Any], *, seconds: float, seed: int, jobs: int = 1,
        out_dir: str | Path | None = "fuzz-failures", shrink_seconds: float = 30.0,
        max_cases: int | None = None, progress_every: float = 10.0,
        progress: TextIO | None = sys.stderr) -> Summary:
    """Fuzz ``target_factory()`` for ``seconds`` from ``seed``; stop at the first failure.

    Parameters
    ----------
    target_factory
        Builds the :class:`Target` (called once per worker process, so it
        need not be picklable when ``jobs == 1``; with ``jobs > 1`` workers
        are forked where the platform allows).
    seconds, seed, jobs
        Time budget, seed, and number of worker processes (seed-sharded).
    out_dir
        Where the shrunk failing case is written (``None``: not written).
    max_cases
        Stop after this many cases (case indices ``0 .. max_cases-1``).

    Kernel: none (test infrastructure).
    """
    t0 = time.monotonic()
    deadline = t0 + seconds
    summary = Summary(seed=seed)
    out = None if out_dir is None else str(out_dir)
    if jobs <= 1:
        counters = _ProgressCounters(progress_every, seconds, progress)
        res = _worker(target_factory(), seed, 0, 1, deadline, out, shrink_seconds, max_cases,
                      counters, _LocalStop())
        results = [res]
    else:
        methods = mp.get_all_start_methods()
        ctx: Any = mp.get_context("fork" if "fork" in methods else methods[0])
        shared = _SharedCounters(ctx)
        stop = ctx.Event()
        queue = ctx.Queue()
        procs = [ctx.Process(target=_proc_main, args=(target_factory, seed, j, jobs, deadline,
                                                      out, shrink_seconds, max_cases, shared,
                                                      stop, queue), daemon=True)
                 for j in range(jobs)]
        for p in procs:
            p.start()
        prog = _Progress(shared, seconds, progress_every, progress)
        results = []
        try:
            while len(results) < jobs:
                try:
                    results.append(queue.get(timeout=1.0))
                except Exception:  # noqa: BLE001 - queue.Empty: just a tick
                    if not any(p.is_alive() for p in procs) and queue.empty():
                        break
                prog.tick()
        except KeyboardInterrupt:
            # Stop the workers before the interruption goes on to the caller.
            stop.set()
            for p in procs:
                p.terminate()
            for p in procs:
                p.join(timeout=5)
            raise
        for p in procs:
            p.join(timeout=5)
        if len(results) < jobs:
            raise RuntimeError(f"{jobs - len(results)} fuzz worker(s) died without a result")
    for r in results:
        if "error" in r:
            raise RuntimeError(f"fuzz worker crashed: {r['error']}")
        summary.cases += r["cases"]
        summary.steps += r["steps"]
        summary.found.extend(r["found"])
    summary.failures = len(summary.found)
    summary.elapsed = time.monotonic() - t0
    return summary


def run_shard(target: Any, *, seed: int, shard: int, shards: int, seconds: float,
              max_cases: int | None = None, shrink_seconds: float = 30.0,
              max_failures: int | None = None) -> dict[str, Any]:
    """One shard of a fuzz campaign: cases ``shard, shard+shards, ...`` of ``seed``.

    Unlike :func:`run`, a shard does not stop at its first failure: it shrinks
    each one and goes on until ``seconds`` have passed (measured here, in the
    worker), case ``max_cases`` is reached, or ``max_failures`` were found.
    Returns the shard's statistics and, per failure, the shrunk case (an
    object the target can ``save``) with its :class:`Failure`, so the caller
    can deduplicate failures by their shrunk case. Nothing is written.

    Kernel: none (test infrastructure).
    """
    t0 = time.monotonic()
    deadline = t0 + seconds
    steps_of = getattr(target, "case_steps", None)
    shrink = getattr(target, "shrink", None)
    cases = steps = 0
    index = shard
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if max_cases is not None and index >= max_cases:
            break
        if max_failures is not None and len(found) >= max_failures:
            break
        case = target.make_case(case_rng(seed, index))
        f = target.run_case(case)
        cases += 1
        steps += steps_of(case) if steps_of else 1
        if f is not None:
            small, small_f = case, f
            if shrink is not None:
                small, small_f = shrink(case, f, time.monotonic() + shrink_seconds)
            found.append({"case": index, "failure": str(f), "kind": small_f.kind,
                          "shrunk_case": small, "shrunk_failure": small_f,
                          "shrunk_steps": steps_of(small) if steps_of else None})
        index += shards
    return {"shard": shard, "cases": cases, "steps": steps,
            "seconds": time.monotonic() - t0, "found": found}


# ----------------------------------------------------------------------------
