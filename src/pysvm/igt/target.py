"""The one seam between the ported IGT suites and the model.

Every scenario step is a trace event (a dict as in docs/trace-format.md);
:func:`execute` is the only place that hands one to the model, through
:meth:`pysvm.World.execute` (the same validation and handlers as the ``World``
methods named after the events, and as ``pysvm replay``).
"""

from __future__ import annotations

from typing import Any

from pysvm.world import World

__all__ = ["Target", "new_target", "execute", "counters"]

#: The object a scenario runs against: the whole simulated machine.
Target = World


def new_target() -> Target:
    """A fresh model: no device, no VM, an empty address space."""
    return World()


def execute(target: Target, ev: dict[str, Any]) -> dict[str, Any]:
    """Run one trace event; return its result line (``{"ev", "result", ...}``)."""
    return target.execute(ev)


def counters(target: Target) -> dict[str, int]:
    """The model's summary counters (those of ``pysvm replay``'s last line)."""
    return target.summary()
