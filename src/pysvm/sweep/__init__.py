"""Parameter sweeps of the built-in workload, on a process pool or a Ray cluster.

Kernel: none (userspace tooling above the model).

``pysvm sweep CONFIG.toml -o RESULTS.parquet`` runs a grid of ``pysvm
simulate`` options times seeds and keeps one row per run in a Parquet table.
Modules, top to bottom: :mod:`.campaign` (a whole sweep, resumable),
:mod:`.report` (summary and plots), :mod:`.table` (the Parquet table),
:mod:`.grid` (runs and their keys), :mod:`.config` (the TOML file),
:mod:`.executors` (generic: tasks on a process pool or Ray), :mod:`.runner`
(the one call into the simulation).
"""

from __future__ import annotations

from .campaign import SweepState, check_counters, run_sweep
from .config import SweepConfig, SweepConfigError, load_config, parse_config
from .executors import (
    EXECUTORS,
    Executor,
    ExecutorUnavailable,
    LocalExecutor,
    RayExecutor,
    TaskFailed,
    make_executor,
    run_tasks,
)
from .grid import Run, expand, run_key
from .report import format_summary, write_plots
from .runner import MODEL_VERSION, OPTIONS, run_simulation
from .table import read_rows, write_rows

__all__ = [
    "EXECUTORS",
    "MODEL_VERSION",
    "OPTIONS",
    "Executor",
    "ExecutorUnavailable",
    "LocalExecutor",
    "RayExecutor",
    "Run",
    "SweepConfig",
    "SweepConfigError",
    "SweepState",
    "TaskFailed",
    "check_counters",
    "expand",
    "format_summary",
    "load_config",
    "make_executor",
    "parse_config",
    "read_rows",
    "run_key",
    "run_simulation",
    "run_sweep",
    "run_tasks",
    "write_plots",
    "write_rows",
]
