"""One sweep run: ``pysvm simulate`` options and a seed in, flat counters out.

Kernel: none (drives the built-in workload; the model underneath cites the
kernel).

This module is the only place the sweep touches the simulation: the import
of :class:`SimConfig` and :func:`simulate` below, and :data:`OPTIONS`, the
``pysvm simulate`` options a sweep may set (named as on the command line,
with underscores for dashes). :func:`run_simulation` is a plain top-level
function of picklable arguments, so a process pool or a Ray worker can call
it by reference; a run depends on nothing but its arguments.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, fields

from pysvm import __version__
from pysvm.sim.workload import SimConfig, simulate

__all__ = [
    "MODEL_VERSION",
    "OPTIONS",
    "Scalar",
    "Option",
    "command_line",
    "default_params",
    "make_config",
    "run_simulation",
]

#: A parameter or counter value as it goes into the results table.
Scalar = int | float | bool | str

#: Written into every row: results of different model versions are not mixed.
MODEL_VERSION = __version__


@dataclass(frozen=True)
class Option:
    """A ``pysvm simulate`` option a sweep can set.

    Kernel: none.
    """

    #: The SimConfig field it sets.
    field: str
    #: The Python type its values must have.
    type: type
    #: The command-line flag, for messages and reproduction commands.
    flag: str


#: ``pysvm simulate`` options by their sweep name (the flag without ``--``,
#: dashes as underscores). ``seed`` is not here: seeds have their own key.
OPTIONS: dict[str, Option] = {
    "steps": Option("steps", int, "--steps"),
    "size": Option("heap_mib", int, "--size"),
    "profile": Option("profile", str, "--profile"),
    "devices": Option("devices", int, "--devices"),
    "vram_mib": Option("vram_mib", int, "--vram-mib"),
    "preferred_loc": Option("preferred_loc", str, "--preferred-loc"),
    "migration_policy": Option("migration_policy", str, "--migration-policy"),
    "atomics": Option("atomics", str, "--atomics"),
    "unbind": Option("unbind", bool, "--unbind"),
    "tiles": Option("tiles", int, "--tiles"),
}

_FIELDS = {f.name for f in fields(SimConfig)}
assert all(o.field in _FIELDS for o in OPTIONS.values()), "OPTIONS out of date with SimConfig"


def default_params() -> dict[str, Scalar]:
    """Every option at its ``pysvm simulate`` default."""
    d = SimConfig()
    out: dict[str, Scalar] = {}
    for name, opt in OPTIONS.items():
        out[name] = getattr(d, opt.field)
    return out


def make_config(params: Mapping[str, Scalar], seed: int) -> SimConfig:
    """The validated SimConfig for a run (ValueError with the simulate message otherwise)."""
    kwargs = {OPTIONS[name].field: value for name, value in params.items()}
    cfg = SimConfig(seed=seed, **kwargs)  # type: ignore[arg-type]
    cfg.validate()
    return cfg


def command_line(params: Mapping[str, Scalar], seed: int) -> str:
    """The ``pysvm simulate`` command that reproduces one run."""
    return make_config(params, seed).command_line()


def _flatten(prefix: str, d: Mapping[str, object], out: dict[str, Scalar]) -> None:
    for k, v in d.items():
        if isinstance(v, bool | int | float):
            out[prefix + k] = v


def run_simulation(params: Mapping[str, Scalar], seed: int) -> dict[str, Scalar]:
    """Run the workload once; every counter it reports, flat, plus ``wall_s``.

    Counters: the engine summary as is (``faults``, ``migrations_to_vram``,
    ...), the simulation's own (``vmas_alive``, ``ranges_in_vram``,
    ``pages_verified``, ...), workload actions as ``workload_*``, events by
    type as ``ev_*``, refused results as ``not_ok_*``, and the data check as
    ``integrity_ok`` / ``mismatches``. ``wall_s`` is the only value that is not
    a function of ``params`` and ``seed``.
    """
    cfg = make_config(params, seed)
    t0 = time.perf_counter()
    res = simulate(cfg)
    wall = time.perf_counter() - t0
    row: dict[str, Scalar] = {}
    _flatten("", res.engine_summary, row)
    sim = res.sim
    for key in ("vmas_alive", "ranges_alive", "ranges_in_vram", "pages_verified",
                "reads_verified", "unexpected_count"):
        row[key] = int(sim[key])
    _flatten("workload_", sim.get("workload", {}), row)
    _flatten("ev_", sim.get("events_by_type", {}), row)
    _flatten("not_ok_", sim.get("results_not_ok", {}), row)
    row["integrity_ok"] = res.ok
    row["mismatches"] = len(res.mismatches)
    row["wall_s"] = round(wall, 4)
    return row
