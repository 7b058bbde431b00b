"""``pysvm schema``: print the JSON Schema of a trace line."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pysvm.trace.schema import EVENTS, json_schema

HELP = """\
Print the JSON Schema (draft 2020-12) of one trace line: every event with its
fields (type, range, default, description), its errors and its result fields.
It is generated from the same definitions that decode traces
(pysvm.trace.schema), and ships in the wheel as pysvm/trace/trace.schema.json.
docs/trace-format.md describes the same events in prose.

example:
  pysvm schema > trace.schema.json
  pysvm schema --events          # just the event names, one per line
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register the ``schema`` sub-command."""
    p: argparse.ArgumentParser = sub.add_parser(
        "schema", help="print the JSON Schema of a trace line",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", action="store_true", help="print only the event names")
    return p


def run(args: argparse.Namespace) -> int:
    if args.events:
        sys.stdout.write("".join(f"{name}\n" for name in EVENTS))
    else:
        sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
    return 0
