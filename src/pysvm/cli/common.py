"""What the sub-commands share: the one-line error, output conventions, PNG outputs.

Conventions every command follows (README "Command-line conventions"):

* ``--json`` prints the command's result as JSON on standard output;
  ``--json-out FILE`` writes the same JSON to FILE (``--json FILE``, the old
  spelling of ``bench``, still works and says so once).
* ``-`` as a file name is standard input or standard output; when a file's
  contents go to standard output, the human-readable lines go to stderr.
* Every output file is written to a temporary name and renamed when complete
  (:mod:`pysvm.outputs`); an interrupted command says what it kept.
* Input files must be UTF-8 text; anything else is refused the same way.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from pysvm.outputs import OutputLog, atomic_path, is_stdio
from pysvm.plot.render import Snapshot, render
from pysvm.sim.workload import SimResult

__all__ = ["CliError", "add_json_arguments", "check_output", "draw_result", "json_note",
           "json_target",
           "snapshot_from_result", "write_png"]


class CliError(Exception):
    """Bad input to a sub-command: printed as one line, exit status 2."""


def add_json_arguments(group: argparse._ActionsContainer, what: str) -> None:
    """``--json`` (to standard output) and ``--json-out FILE``, the same in every command."""
    group.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                       help=f"print {what} as JSON on standard output (--json FILE is the "
                       "old spelling of --json-out FILE)")
    group.add_argument("--json-out", metavar="FILE", default=None,
                       help=f"write {what} as JSON to FILE (- for standard output)")


def json_target(args: argparse.Namespace) -> str | None:
    """Where the JSON goes: '-' (stdout), a file, or None; the old spelling noted once."""
    flag, out = getattr(args, "json", None), getattr(args, "json_out", None)
    if flag is not None and out is not None:
        raise CliError("give --json (standard output) or --json-out FILE, not both")
    if flag is not None and flag != "-":
        args._json_deprecated = True       # the note comes at the end (json_note)
        return str(flag)
    return str(out) if out is not None else flag


def json_note(args: argparse.Namespace) -> None:
    """After a successful run: say once that ``--json FILE`` is the old spelling."""
    if getattr(args, "_json_deprecated", False):
        print(f"pysvm {getattr(args, '_name', '')}: note: --json FILE is deprecated; "
              f"write --json-out {args.json}", file=sys.stderr)


def check_output(path: str) -> None:
    """Refuse an output the PNG cannot be written to, before any work is done."""
    if is_stdio(path):
        pass
    elif not path.lower().endswith(".png"):
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
        raise CliError("plotting needs matplotlib: pip install 'gpuvm-svm[plot]'") from None


def write_png(out: str, draw: Callable[[str], object], log: OutputLog | None = None) -> None:
    """Run ``draw(path)`` so that ``out`` is written whole or not at all (``-``: stdout)."""
    try:
        if is_stdio(out):
            with tempfile.TemporaryDirectory(prefix="pysvm-plot-") as d:
                tmp = os.path.join(d, "plot.png")
                draw(tmp)
                sys.stdout.buffer.write(Path(tmp).read_bytes())
                sys.stdout.buffer.flush()
            return
        with atomic_path(out, log=log) as tmp:
            draw(tmp)
    except OSError as e:
        raise CliError(f"cannot write {out}: {e.strerror}") from None


def snapshot_from_result(res: SimResult) -> Snapshot:
    """The picture of a simulation's VM at its end, with the run's timeline."""
    return Snapshot(vm="vm0", vmas=list(res.vmas), ranges=list(res.ranges),
                    devices=list(res.devices), title=res.config.command_line(),
                    timeline=list(res.timeline))


def draw_result(res: SimResult, out: str, timeline: bool, log: OutputLog | None = None
                ) -> None:
    """Draw a simulation's result (``pysvm simulate --plot``, ``pysvm plot --simulate``)."""
    check_output(out)
    snap = snapshot_from_result(res)
    write_png(out, lambda path: render(snap, path, timeline=timeline), log)
