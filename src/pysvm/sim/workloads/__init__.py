"""Application workloads for ``pysvm simulate --workload NAME`` (see docs/workloads.md).

One module per pattern; :data:`WORKLOADS` lists them explicitly (nothing registers
itself by being imported). Each is seeded and deterministic, checks every page it
reads, and can be recorded and replayed like the built-in simulation.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import IO

from pysvm.sim.workload import EventRunner
from pysvm.sim.workloads.base import SCHEMA_VERSION, Workload, WorkloadConfig, WorkloadResult
from pysvm.sim.workloads.format import format_workload_summary
from pysvm.sim.workloads.free_no_munmap import FreeMunmap, FreeNoMunmap
from pysvm.sim.workloads.gather import Gather
from pysvm.sim.workloads.oversubscribe import RATIOS, Oversubscribe
from pysvm.sim.workloads.pingpong import PingPong, PingPongTiles
from pysvm.sim.workloads.prodcons import ProducerConsumer
from pysvm.sim.workloads.stencil import Stencil
from pysvm.sim.workloads.stream import Stream

__all__ = ["SCHEMA_VERSION", "WORKLOADS", "WorkloadConfig", "WorkloadResult",
           "format_workload_summary", "make_workload", "run_workload"]

#: ``--workload`` name -> a factory of a fresh workload object (one per run).
WORKLOADS: dict[str, Callable[[], Workload]] = {
    "stream": Stream,
    "stencil": Stencil,
    "gather": Gather,
    **{f"oversubscribe-{r}x": partial(Oversubscribe, r) for r in RATIOS},
    "ping-pong": PingPong,
    "ping-pong-tiles": PingPongTiles,
    "producer-consumer": ProducerConsumer,
    "free-no-munmap": FreeNoMunmap,
    "free-munmap": FreeMunmap,
}


def make_workload(name: str) -> Workload:
    """The workload named ``name``; ValueError naming the choices for an unknown one."""
    factory = WORKLOADS.get(name)
    if factory is None:
        raise ValueError(f"unknown workload {name!r}; choose one of {', '.join(WORKLOADS)}")
    return factory()


def run_workload(cfg: WorkloadConfig, record: IO[str] | None = None,
                 progress: Callable[[int], None] | None = None,
                 engine: EventRunner | None = None) -> WorkloadResult:
    """Run the workload ``cfg.workload`` once; never raises on a data mismatch.

    Kernel: none (see each workload module for the kernel paths it drives).
    """
    return make_workload(cfg.workload).run(cfg, engine=engine, record=record,
                                           progress=progress)
