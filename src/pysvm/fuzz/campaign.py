"""Fuzz campaigns: seeds sharded over workers, findings and shard statistics as rows.

Kernel: none (test infrastructure).

A campaign is a list of :class:`ShardTask` (one per shard: which target,
which seed, which slice of case indices, how long). :func:`run_shard_task` is
the worker function - top-level and importable, so any executor can run it
(the local process pool or a Ray cluster of ``pysvm.sweep.executors``); it
builds the target in the worker, applies a planted bug there if asked
(:mod:`pysvm.fuzz.planted`), and runs :func:`gpuvm_core.fuzz.run_shard`.

:class:`Findings` collects the shards' results in the parent and
deduplicates failures by their *shrunk* case: two failures that shrink to the
same events are one finding (its ``occurrences`` counts them). Its rows are
what ``pysvm fuzz --data DIR`` writes to ``DIR/findings.parquet`` and
``DIR/shards.parquet`` (see docs/fuzzing.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gpuvm_core.fuzz import Failure, run_shard
from gpuvm_core.fuzz.cli import _GpuvmTargetFactory

from .planted import planted
from .target import SvmTargetFactory

__all__ = ["FINDING_COLUMNS", "SHARD_COLUMNS", "TARGETS", "Findings", "ShardTask", "run_shard_task",
           "vector_key", "vector_text", "write_table"]

#: What ``--target`` names: the SVM model, the drm_gpuvm core (differential).
TARGETS = ("svm", "gpuvm")

Scalar = int | float | str | bool | None


@dataclass(frozen=True)
class ShardTask:
    """One shard of a campaign: cases ``shard, shard+shards, ...`` of ``seed``.

    Kernel: none.
    """

    target: str
    seed: int
    shard: int
    shards: int
    seconds: float
    max_cases: int | None = None
    shrink_seconds: float = 30.0
    max_failures: int | None = None
    max_steps: int = 60
    profile: str | None = None
    exclude: tuple[str, ...] = ()
    plant: str | None = None


def make_target(task: ShardTask) -> Any:
    """The fuzz target a task names, built in the worker."""
    if task.target == "svm":
        return SvmTargetFactory(task.max_steps, task.profile, task.exclude)()
    if task.target == "gpuvm":
        return _GpuvmTargetFactory("core", 0)()
    raise ValueError(f"unknown fuzz target {task.target!r}; choose one of {', '.join(TARGETS)}")


def run_shard_task(task: ShardTask) -> dict[str, Any]:
    """Worker side: run one shard; statistics and its failures with their shrunk cases."""
    with planted(task.plant):
        target = make_target(task)
        res = run_shard(target, seed=task.seed, shard=task.shard, shards=task.shards,
                        seconds=task.seconds, max_cases=task.max_cases,
                        shrink_seconds=task.shrink_seconds, max_failures=task.max_failures)
    res["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    return res


def vector_text(case: Any) -> str:
    """A shrunk case as text: a trace (JSON Lines) for svm, one JSON object for gpuvm."""
    if isinstance(case, dict) and "events" in case:
        return "".join(json.dumps(e, separators=(",", ":"), sort_keys=True) + "\n"
                       for e in case["events"])
    return json.dumps(case, separators=(",", ":"), sort_keys=True) + "\n"


def vector_key(target: str, case: Any) -> str:
    """16 hex digits identifying a shrunk case (what deduplication compares)."""
    return hashlib.sha256(f"{target}\n{vector_text(case)}".encode()).hexdigest()[:16]


@dataclass
class Findings:
    """The campaign's results as they arrive: shard rows and deduplicated findings.

    Kernel: none.
    """

    rows: dict[str, dict[str, Scalar]] = field(default_factory=dict)
    shards: list[dict[str, Scalar]] = field(default_factory=list)
    #: key -> (target, shrunk case, shrunk failure) of each distinct finding, for saving.
    cases: dict[str, tuple[str, Any, Failure]] = field(default_factory=dict)

    def add(self, task: ShardTask, res: dict[str, Any]) -> list[str]:
        """Record one shard's result; the keys of findings not seen before."""
        new = []
        for f in res["found"]:
            key = vector_key(task.target, f["shrunk_case"])
            row = self.rows.get(key)
            if row is None:
                new.append(key)
                self.cases[key] = (task.target, f["shrunk_case"], f["shrunk_failure"])
                self.rows[key] = {
                    "vector_key": key, "target": task.target, "kind": f["kind"],
                    "seed": task.seed, "case": f["case"], "shard": task.shard,
                    "failure": f["failure"], "shrunk_failure": str(f["shrunk_failure"]),
                    "shrunk_steps": f["shrunk_steps"], "shrunk": vector_text(f["shrunk_case"]),
                    "occurrences": 1, "plant": task.plant or "", "path": "",
                }
            else:
                row["occurrences"] = int(row["occurrences"] or 0) + 1
                if (task.seed, f["case"]) < (row["seed"], row["case"]):   # keep the first
                    row.update(seed=task.seed, case=f["case"], shard=task.shard,
                               failure=f["failure"])
        self.shards.append({
            "target": task.target, "seed": task.seed, "shard": task.shard,
            "shards": task.shards, "cases": res["cases"], "steps": res["steps"],
            "seconds": round(float(res["seconds"]), 3), "failures": len(res["found"]),
            "worker": res.get("worker", ""), "plant": task.plant or "",
            "params": json.dumps({k: v for k, v in asdict(task).items()
                                  if k not in ("target", "seed", "shard", "shards")},
                                 sort_keys=True),
        })
        return new

    def save_case(self, key: str, out_dir: Path) -> Path:
        """Write a distinct finding as a replayable file; remembered in its row."""
        target, case, failure = self.cases[key]
        row = self.rows[key]
        tag = f"{row['seed']}-{row['case']}"
        if target == "svm":
            path = SvmTargetFactory()().save(case, failure, out_dir, tag)
        else:
            path = _GpuvmTargetFactory("core", 0)().save(case, failure, out_dir, tag)
        row["path"] = str(path)
        return path

    def finding_rows(self) -> list[dict[str, Scalar]]:
        return sorted(self.rows.values(), key=lambda r: (str(r["target"]), int(r["seed"] or 0),
                                                         int(r["case"] or 0)))


#: Column types of ``findings.parquet`` (one row per distinct shrunk case).
FINDING_COLUMNS: dict[str, str] = {
    "vector_key": "string", "target": "string", "kind": "string", "seed": "uint64",
    "case": "int64", "shard": "int64", "failure": "string", "shrunk_failure": "string",
    "shrunk_steps": "int64", "shrunk": "string", "occurrences": "int64", "plant": "string",
    "path": "string",
}
#: Column types of ``shards.parquet`` (one row per shard that finished).
SHARD_COLUMNS: dict[str, str] = {
    "target": "string", "seed": "uint64", "shard": "int64", "shards": "int64",
    "cases": "int64", "steps": "int64", "seconds": "float64", "failures": "int64",
    "worker": "string", "plant": "string", "params": "string",
}


def write_table(rows: list[dict[str, Scalar]], columns: dict[str, str], path: Path,
                log: Any = None) -> None:
    """Write ``rows`` as a Parquet table with ``columns``, atomically (pysvm.outputs)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pysvm.outputs import atomic_path

    schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in columns.items()])
    table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows], schema=schema)
    with atomic_path(path, log=log) as tmp:
        pq.write_table(table, tmp)
