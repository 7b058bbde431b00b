"""The grid of a sweep expanded to runs, each with a stable key.

Kernel: none (userspace tooling).

A run is one grid point (every ``pysvm simulate`` option resolved: defaults,
``[fixed]``, ``[grid]``) and one seed. Its key is a hash of exactly those,
so the same run has the same key in every sweep that contains it, whatever
the order of the grid or the other points: that is what resuming matches.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from .config import SweepConfig
from .runner import Scalar

__all__ = ["Run", "expand", "run_key"]


def run_key(params: Mapping[str, Scalar], seed: int) -> str:
    """16 hex digits of SHA-256 over the resolved options and the seed."""
    doc = json.dumps({"params": dict(sorted(params.items())), "seed": seed},
                     sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Run:
    """One run of a sweep: resolved options, seed, key.

    Kernel: none.
    """

    params: dict[str, Scalar]
    seed: int
    key: str


def expand(config: SweepConfig) -> list[Run]:
    """Every run of the sweep: grid points in order, seeds innermost."""
    runs = []
    for point in config.points():
        for seed in config.seeds:
            runs.append(Run(params=point, seed=seed, key=run_key(point, seed)))
    return runs
