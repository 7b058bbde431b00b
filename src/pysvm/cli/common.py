"""What the sub-commands share: the one-line error and the PNG output checks."""

from __future__ import annotations

import os

from pysvm.plot.render import Snapshot, render
from pysvm.sim.workload import SimResult

__all__ = ["CliError", "check_output", "draw_result", "snapshot_from_result"]


class CliError(Exception):
    """Bad input to a sub-command: printed as one line, exit status 2."""


def check_output(path: str) -> None:
    """Refuse an output the PNG cannot be written to, before any work is done."""
    if not path.lower().endswith(".png"):
        raise CliError(f"output {path!r} must end in .png")
    if os.path.isdir(path):
        raise CliError(f"output {path!r} is a directory; give a file name ending in .png")
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        raise CliError(f"cannot write {path}: no directory {parent!r}")
    if not os.access(parent, os.W_OK):
        raise CliError(f"cannot write {path}: directory {parent!r} is not writable")
    try:
        import matplotlib  # noqa: F401, PLC0415 - optional dependency, checked late
    except ModuleNotFoundError:
        raise CliError("plotting needs matplotlib: pip install 'pysvm[plot]'") from None


def snapshot_from_result(res: SimResult) -> Snapshot:
    """The picture of a simulation's VM at its end, with the run's timeline."""
    return Snapshot(vm="vm0", vmas=list(res.vmas), ranges=list(res.ranges),
                    devices=list(res.devices), title=res.config.command_line(),
                    timeline=list(res.timeline))


def draw_result(res: SimResult, out: str, timeline: bool) -> None:
    """Draw a simulation's result (``pysvm simulate --plot``, ``pysvm plot --simulate``)."""
    check_output(out)
    try:
        render(snapshot_from_result(res), out, timeline=timeline)
    except OSError as e:
        raise CliError(f"cannot write {out}: {e.strerror}") from None
