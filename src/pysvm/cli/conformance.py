"""``pysvm conformance``: replay kernel-recorded split/merge vectors, or record them from a tree."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from gpuvm_core import GpuVm, RefGpuVm
from gpuvm_core.conformance import (
    Report,
    VmFactory,
    bundled_vectors,
    checked,
    read_records,
    run_file,
)
from pysvm.outputs import is_stdio, open_text_bytes

HELP = """\
Replay a vector file recorded from the kernel's drm_gpuvm code (JSON Lines,
optionally gzipped) through the compiled core and/or the pure-Python
reference, and print pass/fail counts per category.

With --kernel-tree DIR, the vectors are first recorded from that kernel tree:
its drivers/gpu/drm/drm_gpuvm.c and lib/rbtree.c are compiled in userspace
(see docs/kernel-oracle.md), the request streams of FILE (default: the
bundled public set) are issued to it, and what it answered is what the core
is checked against. The recording is also compared with FILE line by line
(the first differing vector is printed); --record OUT keeps it.

example:
  pysvm conformance                      # the bundled public vectors
  pysvm conformance vectors.jsonl --impl both -v
  pysvm conformance --kernel-tree ~/src/linux --record my-tree.jsonl.gz
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "conformance", help="replay kernel split/merge vectors and count passes",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", nargs="?", help="vector file (.jsonl or .jsonl.gz); "
                   "default: the bundled public set. With --kernel-tree: the request "
                   "streams to record (their recorded outcomes are compared, not used)")
    p.add_argument("--impl", choices=["core", "reference", "both"], default="core",
                   help="which implementation to check (default: core)")
    p.add_argument("--kernel-tree", metavar="DIR", default=None,
                   help="record the vectors from this kernel tree's own drm_gpuvm.c first "
                        "(e.g. a kernel checkout)")
    p.add_argument("--record", metavar="OUT", default=None,
                   help="with --kernel-tree: write the recorded vectors to OUT "
                        "(.jsonl or .jsonl.gz; written whole or not at all)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every failing case")
    return p


def _print_report(name: str, path: object, rep: Report, verbose: bool) -> None:
    print(f"{name}: {path}")
    width = max(len(c) for c in rep.per_category)
    print(f"  {'category':<{width}}  passed  failed")
    for cat in sorted(rep.per_category):
        p, f = rep.per_category[cat]
        print(f"  {cat:<{width}}  {p:>6}  {f:>6}")
    shown = rep.failures if verbose else rep.failures[:5]
    for res in shown:
        print(f"  FAIL {res.case_id} step {res.step}: {res.message}")
    if len(rep.failures) > len(shown):
        print(f"  ... {len(rep.failures) - len(shown)} more failures (use -v)")


def _answers(case: dict[str, Any]) -> tuple[Any, ...]:
    """What a recording decides: the VM and every step's request and outcome."""
    keys = ("call", "addr", "range", "obj", "offset", "result", "ops", "state",
            "apply_failures")
    return (case.get("vm"), [tuple(st.get(k) for k in keys) for st in case["steps"]])


def _first_difference(mine: dict[str, Any], theirs: dict[str, Any]) -> str:
    """Where a recorded case first departs from the file's: 'step I: field'."""
    if mine.get("vm") != theirs.get("vm"):
        return "vm"
    for i, (a, b) in enumerate(zip(mine["steps"], theirs["steps"], strict=False)):
        for k in ("result", "ops", "state", "apply_failures"):
            if a.get(k) != b.get(k):
                return (f"step {i} ({a['call']} [{a['addr']:#x}, +{a['range']:#x})) {k}:\n"
                        f"      this tree: {a.get(k)}\n      {'file':<9}: {b.get(k)}")
    return "step count"


def _record(args: argparse.Namespace, path: Any, cases: list[dict[str, Any]]
            ) -> list[dict[str, Any]] | None:
    from gpuvm_core.kernel import KernelTreeError, load_oracle
    from gpuvm_core.recorder import dumps, record_case, request_stream, write_records

    t0 = time.monotonic()
    try:
        oracle = load_oracle(args.kernel_tree)
    except KernelTreeError as e:
        print(f"pysvm conformance: error: {e}", file=sys.stderr)
        return None
    b = oracle.build
    how = "cached build" if b.cached else f"built in {b.seconds:.1f} s"
    print(f"kernel oracle: {b.tree} ({how}: {b.library})")
    recorded = [record_case(request_stream(c), oracle, oracle.take_warnings) for c in cases]
    same = [_answers(r) == _answers(c) for r, c in zip(recorded, cases, strict=True)]
    exact = sum(dumps(r) == dumps(c) for r, c in zip(recorded, cases, strict=True))
    print(f"recorded {len(recorded)} cases from {b.tree} in {time.monotonic() - t0:.1f} s "
          f"(request streams of {path})")
    print(f"  same answers as {path}: {sum(same)} of {len(same)} cases "
          f"({exact} byte-identical lines)")
    warned = sum(r.get("warnings") != c.get("warnings") for r, c in zip(recorded, cases,
                                                                        strict=True))
    if warned:
        print(f"  kernel WARN counts differ from the file's 'warnings' field in {warned} "
              "cases (drm_WARN in drm_gpuvm.c; not part of the replay)")
    firsts = [i for i, s in enumerate(same) if not s]
    for i in firsts[: (len(firsts) if args.verbose else 1)]:
        print(f"  first differing vector: {cases[i]['id']} at "
              f"{_first_difference(recorded[i], cases[i])}")
        print(f"  vector: {dumps(recorded[i])[:2000]}")
    if args.record:
        n = write_records(args.record, recorded)
        print(f"  wrote {n} cases to {args.record}")
    return recorded


def run(args: argparse.Namespace) -> int:
    if args.record and not args.kernel_tree:
        print("pysvm conformance: error: --record needs --kernel-tree (it keeps the vectors "
              "recorded from that tree)", file=sys.stderr)
        return 2
    path = args.file or bundled_vectors()
    if args.record and Path(args.record).resolve() == Path(path).resolve():
        print(f"pysvm conformance: error: --record {args.record} would overwrite the input "
              "file", file=sys.stderr)
        return 2
    if not str(path).endswith(".gz") and not is_stdio(str(path)):
        # A binary file is refused the way every command refuses it (pysvm.outputs).
        open_text_bytes(path).close()
    # Read the whole file before judging any case, so that a file-level fault
    # (truncated gzip, not text) is reported as such rather than as a bad case.
    records = list(read_records(path))
    cases = [checked(path, lineno, case) for lineno, case in records]
    if not cases:
        print(f"pysvm conformance: error: {path} holds no cases", file=sys.stderr)
        return 2
    source: object = path
    if args.kernel_tree:
        recorded = _record(args, path, cases)
        if recorded is None:
            return 2
        cases, source = recorded, f"recorded from {args.kernel_tree}"
    choices: dict[str, list[tuple[str, VmFactory]]] = {
        "core": [("core", GpuVm)], "reference": [("reference", RefGpuVm)],
        "both": [("core", GpuVm), ("reference", RefGpuVm)]}
    impls = choices[args.impl]
    total_failed = total_passed = 0
    for name, factory in impls:
        rep = run_file(cases, factory)
        _print_report(name, source, rep, args.verbose)
        total_passed += rep.passed
        total_failed += rep.failed
    print(f"{total_passed} passed, {total_failed} failed")
    return 1 if total_failed else 0
