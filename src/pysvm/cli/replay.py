"""``pysvm replay``: replay a JSON Lines trace and print one result line per event."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, BinaryIO

import msgspec

from pysvm.outputs import is_stdio, open_text_bytes
from pysvm.trace.engine import Engine

HELP = """\
Replay a trace (JSON Lines, one event per line; see docs/trace-format.md)
through the Xe model. Prints one JSON line per event
{"i", "ev", "result", ...} and a final {"summary": {...}} line. Bad events give
an errno result with a "message" and replay continues (a line that is not
UTF-8 too); exit status 0 when the trace was read to the end. A binary file
is refused before anything runs (exit status 2).

example:
  pysvm replay tests/pysvm/traces/xe_madvise_split.jsonl
  pysvm replay trace.jsonl --strict     # stop at the first non-ok result (exit 1)
"""


#: A GPU read's ``data`` at least this long is encoded by msgspec (16x faster than the
#: json module on a 4 GiB read's million values); shorter ones are not worth the checks.
_FAST_DATA = 4096

#: Bytes that may remain in msgspec's encoding of a list of plain ints.
_INT_LIST_BYTES = b"0123456789-,[]"


def result_line(out: dict[str, Any]) -> str:
    """``json.dumps(out)``, the same text, with a long ``data`` list of ints encoded fast.

    The json module spends about 80 ns per value of a GPU read's data; msgspec writes
    the same numbers compactly, and for a list of ints (nothing but digits, signs,
    commas and brackets) putting back the json module's ``", "`` separator gives the
    exact text. Anything else (bools, floats, strings, ints past 64 bits, keys that are
    not strings) goes through the json module.
    """
    data = out.get("data")
    if (type(data) is not list or len(data) < _FAST_DATA
            or not all(type(k) is str for k in out)):
        return json.dumps(out)
    try:
        body = msgspec.json.encode(data)
    except (TypeError, OverflowError, msgspec.EncodeError):
        return json.dumps(out)
    if body.translate(None, _INT_LIST_BYTES):
        return json.dumps(out)
    text = body.replace(b",", b", ").decode()
    return "{" + ", ".join(f"{json.dumps(k)}: {text if k == 'data' else json.dumps(v)}"
                           for k, v in out.items()) + "}"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register the ``replay`` sub-command."""
    p: argparse.ArgumentParser = sub.add_parser(
        "replay", help="replay a JSON Lines trace through the Xe model",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="trace file (.jsonl), or - for stdin")
    p.add_argument("--strict", action="store_true", help="stop at the first non-ok result")
    return p


def run(args: argparse.Namespace) -> int:
    """Replay ``args.file``; 0 when read to the end, 1 when --strict stopped early.

    A binary file (a NUL byte in its first 64 KiB) is refused before anything
    runs, with the message every command gives. A text file is read as bytes
    so that one line that is not UTF-8 becomes one ``EINVAL`` result instead
    of ending the replay (docs/trace-format.md).
    """
    engine = Engine()
    stream: BinaryIO = open_text_bytes(args.file, binary_only=True)  # type: ignore[assignment]
    stopped = False
    try:
        for out in engine.run(stream, strict=args.strict):
            print(result_line(out), flush=False)
            if args.strict and out["result"] != "ok":
                stopped = True
    finally:
        if not is_stdio(args.file):
            stream.close()
    print(json.dumps({"summary": engine.summary()}))
    sys.stdout.flush()
    return 1 if stopped else 0
