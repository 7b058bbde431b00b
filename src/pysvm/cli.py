"""The ``pysvm`` console script.

Each sub-command lives in :mod:`pysvm.commands` as a module with two
functions: ``add_parser(subparsers)`` that declares its arguments (with an
example in its help) and ``run(args) -> int`` that does the work. Bad input is
reported as one line ``pysvm <command>: error: <what was wrong>`` on stderr
with exit status 2; no traceback is shown for it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__

#: Sub-command name -> module under pysvm.commands, in --help order.
COMMANDS: dict[str, str] = {
    "conformance": "pysvm.commands.conformance",
    "replay": "pysvm.commands.replay",
    "simulate": "pysvm.commands.simulate",
    "plot": "pysvm.commands.plot",
    "bench": "pysvm.commands.bench",
}


class CliError(Exception):
    """Bad input to a sub-command: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pysvm",
        description="The Linux kernel's GPU VM (drm_gpuvm) and Xe SVM logic, run from Python.",
        epilog="Run 'pysvm COMMAND --help' for a command's options and an example.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pysvm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS.items():
        mod = importlib.import_module(modname)
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run, _name=name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args))
    except CliError as e:
        print(f"pysvm {args._name}: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"pysvm {args._name}: error: no such file: {e.filename}", file=sys.stderr)
        return 2
    except (IsADirectoryError, PermissionError, UnicodeDecodeError, ValueError) as e:
        print(f"pysvm {args._name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pysvm {args._name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
