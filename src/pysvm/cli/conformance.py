"""``pysvm conformance``: replay kernel-recorded split/merge vectors."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gpuvm_core import GpuVm, RefGpuVm
from gpuvm_core.conformance import VmFactory, bundled_vectors, checked, read_records, run_file

HELP = """\
Replay a vector file recorded from the kernel's drm_gpuvm code (JSON Lines,
optionally gzipped) through the compiled core and/or the pure-Python
reference, and print pass/fail counts per category.

example:
  pysvm conformance                      # the bundled public vectors
  pysvm conformance ../shared/vectors/gpuvm-public.jsonl --impl both -v
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "conformance", help="replay kernel split/merge vectors and count passes",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", nargs="?", help="vector file (.jsonl or .jsonl.gz); "
                   "default: the bundled public set")
    p.add_argument("--impl", choices=["core", "reference", "both"], default="core",
                   help="which implementation to check (default: core)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every failing case")
    return p


def run(args: argparse.Namespace) -> int:
    path = args.file or bundled_vectors()
    # Read the whole file before judging any case, so that a file-level fault
    # (truncated gzip, not text) is reported as such rather than as a bad case.
    records = list(read_records(path))
    cases = [checked(path, lineno, case) for lineno, case in records]
    if not cases:
        print(f"pysvm conformance: error: {path} holds no cases", file=sys.stderr)
        return 2
    choices: dict[str, list[tuple[str, VmFactory]]] = {
        "core": [("core", GpuVm)], "reference": [("reference", RefGpuVm)],
        "both": [("core", GpuVm), ("reference", RefGpuVm)]}
    impls = choices[args.impl]
    total_failed = total_passed = 0
    for name, factory in impls:
        rep = run_file(cases, factory)
        print(f"{name}: {path}")
        width = max(len(c) for c in rep.per_category)
        print(f"  {'category':<{width}}  passed  failed")
        for cat in sorted(rep.per_category):
            p, f = rep.per_category[cat]
            print(f"  {cat:<{width}}  {p:>6}  {f:>6}")
        shown = rep.failures if args.verbose else rep.failures[:5]
        for res in shown:
            print(f"  FAIL {res.case_id} step {res.step}: {res.message}")
        if len(rep.failures) > len(shown):
            print(f"  ... {len(rep.failures) - len(shown)} more failures (use -v)")
        total_passed += rep.passed
        total_failed += rep.failed
    print(f"{total_passed} passed, {total_failed} failed")
    return 1 if total_failed else 0
