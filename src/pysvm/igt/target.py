"""The one seam between the ported IGT suites and the model.

Every scenario step is a trace event (a dict as in docs/trace-format.md);
:func:`execute` is the only place that hands one to the model. After the
layering work this is where the call switches to the ``World`` methods named
after the events.
"""

from __future__ import annotations

from typing import Any

from ..trace import Engine

__all__ = ["Target", "new_target", "execute", "counters"]

#: The object a scenario runs against (today the trace replay engine).
Target = Engine


def new_target() -> Target:
    """A fresh model: no device, no VM, an empty address space."""
    return Engine()


def execute(target: Target, ev: dict[str, Any]) -> dict[str, Any]:
    """Run one trace event; return its result line (``{"ev", "result", ...}``)."""
    return target.execute(ev)


def counters(target: Target) -> dict[str, int]:
    """The model's summary counters (those of ``pysvm replay``'s last line)."""
    return target.summary()
