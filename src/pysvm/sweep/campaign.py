"""A whole sweep: expand the grid, skip runs already in the table, run the rest, save.

Kernel: none (userspace tooling).

The results table is the sweep's memory: a run whose key is already in the
output table is not run again, so re-running the same command after an
interruption (or with more seeds or grid values) runs only what is missing.
The table is rewritten atomically every ``checkpoint_s`` seconds while runs
complete, at the end, and when the sweep is interrupted or a run fails - in
every case a complete table of the runs finished so far, never a partial file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pysvm.outputs import OutputLog, is_stdio

from .config import SweepConfig, SweepConfigError
from .executors import Executor, run_tasks
from .grid import Run, expand
from .runner import MODEL_VERSION, Scalar, default_params, run_simulation
from .table import ResultsTableError, read_rows, write_rows

__all__ = ["SweepState", "check_counters", "run_sweep"]

Row = dict[str, Scalar]
Task = tuple[dict[str, Scalar], int]


@dataclass
class SweepState:
    """How far a sweep got; filled in as it goes, readable after an interruption.

    Kernel: none.
    """

    total: int = 0
    skipped: int = 0
    done: int = 0
    #: Rows of this sweep's grid (old and new), in grid order once finished.
    rows: list[Row] = field(default_factory=list)
    #: Rows in the table that are not points of this sweep (kept, not reported).
    other_rows: int = 0
    rows_saved: int = 0
    wall_s: float = 0.0
    log: OutputLog = field(default_factory=OutputLog)


def _run_task(task: Task) -> dict[str, Scalar]:
    """Executed in a worker: one simulation (top level, so workers import it by name)."""
    params, seed = task
    return run_simulation(params, seed)


def check_counters(config: SweepConfig,
                   probe: Callable[[dict[str, Scalar], int], dict[str, Scalar]] = run_simulation
                   ) -> None:
    """Refuse ``[report] counters`` that no run reports, before the sweep runs.

    Uses one run of a single step: the counters a run reports are the same
    names whatever its length (only ``workload_*``, ``ev_*``, ``not_ok_*``
    depend on what happened, and a missing one reads as 0).
    """
    params = default_params()
    params["steps"] = 1
    known = set(probe(params, 1))
    prefixes = ("workload_", "ev_", "not_ok_")
    bad = [c for c in config.counters if c not in known and not c.startswith(prefixes)]
    if bad:
        raise SweepConfigError(f"{config.source}: [report] counters: unknown "
                               f"{', '.join(map(repr, bad))}; known: "
                               f"{', '.join(sorted(known))} and workload_*, ev_*, not_ok_*")


def run_sweep(config: SweepConfig, output: str | os.PathLike[str], executor: Executor,
              progress: bool = False, checkpoint_s: float = 30.0,
              state: SweepState | None = None) -> SweepState:
    """Run every run of ``config`` not yet in ``output``; the table ends up with all of them."""
    state = SweepState() if state is None else state
    out = os.fspath(output)
    if is_stdio(out):
        raise SweepConfigError("-o -: a sweep writes a Parquet table it can resume from; "
                               "give a file name")
    directory = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(directory):
        raise SweepConfigError(f"-o {out}: directory {directory} does not exist")
    if os.path.isdir(out):
        raise SweepConfigError(f"-o {out}: is a directory; give the table's file name")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise SweepConfigError(f"-o {out}: cannot write in {directory} (permission denied)")
    existing = read_rows(out)
    versions = sorted({str(r.get("model_version")) for r in existing} - {MODEL_VERSION})
    if versions:
        raise ResultsTableError(f"{out} holds runs of pysvm {', '.join(versions)}, this is "
                                f"{MODEL_VERSION}: results of different models are not mixed; "
                                f"give another -o")
    runs = expand(config)
    by_key: dict[str, Row] = {str(r["run_key"]): r for r in existing}
    wanted = {r.key for r in runs}
    todo: list[Run] = [r for r in runs if r.key not in by_key]
    state.total = len(runs)
    state.skipped = len(runs) - len(todo)
    state.other_rows = sum(1 for k in by_key if k not in wanted)

    t0 = time.perf_counter()
    last_save = t0
    new_rows: list[Row] = []

    def save() -> None:
        if new_rows:
            write_rows([*existing, *new_rows], out, log=state.log)
            state.rows_saved = len(existing) + len(new_rows)

    def on_result(index: int, counters: dict[str, Scalar]) -> None:
        nonlocal last_save
        run = todo[index]
        row: Row = {"run_key": run.key, "seed": run.seed, **run.params, **counters,
                    "model_version": MODEL_VERSION}
        new_rows.append(row)
        by_key[run.key] = row
        state.done += 1
        now = time.perf_counter()
        if now - last_save >= checkpoint_s:
            save()
            last_save = now

    tasks: list[Task] = [(r.params, r.seed) for r in todo]
    try:
        if tasks:
            run_tasks(executor, _run_task, tasks, on_result, progress=progress, desc="sweep")
        else:
            executor.shutdown(cancel=False)
    finally:
        state.wall_s = time.perf_counter() - t0
        # Interrupted or not, the table holds every finished run (atomically).
        save()
        state.rows = [by_key[r.key] for r in runs if r.key in by_key]
    if not new_rows:
        state.rows_saved = len(existing)
    return state
