"""The ``pysvm`` console script.

Each sub-command lives in :mod:`pysvm.cli` as a module with two
functions: ``add_parser(subparsers)`` that declares its arguments (with an
``example:`` section in its description) and ``run(args) -> int`` that does
the work. :data:`COMMANDS` is the registry; ``pysvm --help`` lists every entry
with the first example from its description.

Bad input is reported as one line ``pysvm <command>: error: <what was wrong>``
on stderr with exit status 2, never a traceback: argparse's usage errors, a
:class:`CliError` raised by a command, and the usual ways a path can be wrong
(missing, a directory, unreadable, not text). Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import errno
import gc
import json
import os
import re
import sys
from collections.abc import Sequence
from types import ModuleType as Command
from typing import Any, NoReturn

from pysvm import __version__
from pysvm.cli import bench, conformance, fuzz, igt, plot, replay, schema, simulate, sweep
from pysvm.cli.common import CliError

__all__ = ["COMMANDS", "CliError", "main", "first_example"]

#: Sub-command name -> its module, in --help order.
COMMANDS: dict[str, Command] = {
    "simulate": simulate,
    "replay": replay,
    "plot": plot,
    "schema": schema,
    "conformance": conformance,
    "bench": bench,
    "fuzz": fuzz,
    "igt": igt,
    "sweep": sweep,
}

DESCRIPTION = """\
The Linux kernel's GPU VM (drm_gpuvm) and Intel Xe SVM logic, run from Python.

commands (each with an example; 'pysvm COMMAND --help' shows all options):
"""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit status 2).

    argparse prints the whole usage block before the error; for a person who
    mistyped one option that buries the message, so we print only the message
    and where to look for the rest. Sub-parsers inherit the class.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def first_example(description: str | None) -> str:
    """The first command line of the ``example:`` section of a description ('' if none)."""
    lines = (description or "").splitlines()
    for k, line in enumerate(lines):
        if line.strip().lower().rstrip(":") in ("example", "examples"):
            for ex in lines[k + 1:]:
                if ex.strip():
                    # "cmd   # why" -> "cmd  # why": the overview aligns nothing.
                    return re.sub(r"\s+#\s*", "  # ", ex.strip())
    return ""


#: The name this package is installed under (``pip install gpuvm-svm``); the import
#: names are ``pysvm`` and ``gpuvm_core``.
DISTRIBUTION = "gpuvm-svm"


def version_text() -> str:
    """``pysvm --version``: distribution and version, and which build of the core is loaded."""
    from importlib import metadata

    try:
        version = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:   # run from a source tree, not installed
        version = f"{__version__} (not installed)"
    try:
        from gpuvm_core import _core
    except ImportError:
        core = "gpuvm_core: no compiled core (pure-Python reference only)"
    else:
        kind = ("debug build (GPUVM_DEBUG=1: planted faults, sanitizers)"
                if getattr(_core, "DEBUG_BUILD", False) else "release build")
        core = f"gpuvm_core: compiled core, {kind}"
    from pysvm.compiled import COMPILED_MODULES, compiled_modules

    n = len(compiled_modules())
    model = (f"pysvm: fault path compiled (mypyc, {n} of {len(COMPILED_MODULES)} modules)"
             if n else "pysvm: pure Python (editable install or PYSVM_MYPYC=OFF)")
    return f"{DISTRIBUTION} {version}\n{core}\n{model}"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="pysvm", usage="pysvm [-h] [--version] COMMAND [options]",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=version_text(),
                        help="show the distribution, its version and the core's build; exit")
    # The overview in the description replaces argparse's own list of choices.
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", help=argparse.SUPPRESS,
                                prog="pysvm")
    overview: list[str] = []
    for name, mod in COMMANDS.items():
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run, _name=name)
        helps = {a.dest: a.help for a in sub._choices_actions}
        overview.append(f"  {name:<12} {helps.get(name) or ''}".rstrip())
        example = first_example(p.description)
        if example:
            overview.append(f"  {'':<12}   e.g. {example}")
    parser.description = DESCRIPTION + "\n".join(overview)
    parser.epilog = ("Bad input gives one line 'pysvm COMMAND: error: ...' on stderr and exit "
                     "status 2.\nSee README.md and docs/ for the model and the trace format.")
    return parser


def _input_path(args: argparse.Namespace) -> str:
    """The input file a command was given, to name it in a message that lacks it."""
    for attr in ("file", "trace", "replay"):
        val = getattr(args, attr, None)
        if isinstance(val, str | os.PathLike):
            return os.fspath(val)
    return ""


def _path_error(e: OSError, fallback: str = "") -> str:
    """One sentence for an OSError about a path the user gave."""
    name = e.filename if e.filename is not None else fallback
    what = {errno.ENOENT: "no such file", errno.EISDIR: "is a directory, not a file",
            errno.EACCES: "permission denied", errno.ENOTDIR: "a parent is not a directory",
            errno.EPERM: "permission denied", errno.ENOSPC: "no space left on the device",
            errno.EROFS: "read-only file system"}.get(e.errno or 0)
    if what is None:
        what = e.strerror or str(e)
    if e.filename is not None:
        return f"{what}: {name}"
    detail = str(e) or what
    return f"{name}: {detail}" if name else detail


def _quiet_broken_pipe() -> None:
    # The reader (e.g. `| head`) went away: stop without a second error at exit.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """parse_args, but an unknown option is reported by the sub-command it was given to."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        msg = f"unrecognized arguments: {' '.join(extra)}"
        name = getattr(args, "_name", None)
        for action in parser._subparsers._group_actions if parser._subparsers else []:
            choices = action.choices if isinstance(action.choices, dict) else {}
            if name in choices:
                choices[name].error(msg)
        parser.error(msg)
    return args


#: CPython's cyclic collector thresholds while a command runs. The model keeps
#: one small long-lived object per resident 4 KiB page (a 4 GiB replay holds a
#: million), and with the default thresholds (700, 10, 10) every few hundred
#: thousand new pages trigger a full collection that walks all of them again:
#: about a third of the CPU time of replaying a 4 GiB first-touch trace
#: (docs/benchmarks-svm.md). A larger first generation makes collections rare;
#: reference counting still frees every page the moment it is dropped, so
#: memory use does not change. The caller's thresholds are restored on return.
_GC_THRESHOLDS = (100_000, 50, 100)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, argv)
    run: Any = getattr(args, "_run", None)
    if run is None:
        parser.print_help()
        return 2
    name = args._name
    saved = gc.get_threshold()
    gc.set_threshold(*_GC_THRESHOLDS)
    try:
        return int(run(args))
    except CliError as e:
        msg = str(e)
    except OSError as e:
        if e.errno == errno.EPIPE:
            _quiet_broken_pipe()
            return 0
        msg = _path_error(e, _input_path(args))
    except json.JSONDecodeError as e:
        msg = f"{_input_path(args) or 'input'}: not JSON ({e.msg}, column {e.colno})"
    except UnicodeDecodeError as e:
        msg = f"{_input_path(args) or 'input'}: not a text file (byte {e.start}: {e.reason})"
    except EOFError as e:     # truncated gzip
        msg = f"{_input_path(args) or 'input'}: file ends early ({e})"
    except ValueError as e:
        msg = str(e)
    except KeyboardInterrupt:
        print(f"pysvm {name}: interrupted", file=sys.stderr)
        return 130
    finally:
        gc.set_threshold(*saved)
    msg = " ".join(msg.split())            # one line, whatever the message held
    print(f"pysvm {name}: error: {msg}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
