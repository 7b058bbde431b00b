"""``pysvm fuzz``: random SVM interleavings (and the drm_gpuvm differential fuzzer)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gpuvm_core.fuzz import (
    _GpuvmTargetFactory,
    count_arg,
    parse_seed,
    seconds_arg,
    shrink_seconds_arg,
)
from gpuvm_core.fuzz import run as fuzz_run
from pysvm.fuzz.target import SvmTargetFactory, check_events, load_trace

HELP = """\
Fuzz the SVM model: random interleavings of mmap/munmap/re-mmap, CPU and GPU
reads, writes and atomics, madvise (all three types), prefetch, eviction,
events injected inside the GPU fault handler at every injection point,
garbage collection, and a second device that is linked, unbound and
unloaded, under both kernel profiles. After every step the shadow data,
Svm.check_invariants, the pagemap lifetime invariants and the errno of every
failed fault are checked (see pysvm.fuzz.target). A failure prints its seed and
writes the shrunk case as a trace that 'pysvm replay' replays; exit status 1.
--target gpuvm runs the drm_gpuvm differential fuzzer (core vs reference) on
the same runner; --target all splits the time between both.

example:
  pysvm fuzz --seconds 60 --seed 1 --jobs 2
  pysvm fuzz --replay fuzz-failures/svm-1-17.jsonl    # re-check a written case
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "fuzz", help="fuzz the SVM fault/GC/migration model (and the gpuvm core)",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=seconds_arg, default=10.0, help="time budget (default 10)")
    p.add_argument("--seed", default="0",
                   help="int, 0x-hex, or any text (hashed); the same seed gives the same cases")
    p.add_argument("--jobs", type=count_arg, default=1, help="worker processes (seed-sharded)")
    p.add_argument("--target", choices=["svm", "gpuvm", "all"], default="svm",
                   help="what to fuzz (default svm)")
    p.add_argument("--profile", choices=["6.18", "newest"], default=None,
                   help="only this kernel profile (default: both, chosen per case)")
    p.add_argument("--max-steps", type=count_arg, default=60,
                   help="random events per SVM case, at most (default 60)")
    p.add_argument("--exclude-event", action="append", default=[], metavar="EV",
                   help="never generate this event (repeatable), e.g. while a known "
                        "failure in another layer is being fixed")
    p.add_argument("--max-cases", type=count_arg, default=None, help="stop after N cases")
    p.add_argument("--out", type=Path, default=Path("fuzz-failures"),
                   help="where a failing case is written (default ./fuzz-failures)")
    p.add_argument("--shrink-seconds", type=shrink_seconds_arg, default=30.0,
                   help="time budget for shrinking a failure (default 30)")
    p.add_argument("--replay", type=Path, default=None, metavar="FILE",
                   help="check one trace file with every SVM check instead of fuzzing")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return p


def _replay(path: Path) -> int:
    events = load_trace(path)
    f = check_events(events)
    if f is None:
        print(f"{path}: {len(events)} events, every check passed")
        return 0
    print(f"{path}: FAIL at event {f.step}: {f.kind}: {f.message}")
    return 1


def run(args: argparse.Namespace) -> int:
    if args.replay is not None:
        return _replay(args.replay)
    seed = parse_seed(args.seed)
    targets: list[tuple[str, Any]] = []
    if args.target in ("svm", "all"):
        targets.append(("svm", SvmTargetFactory(args.max_steps, args.profile,
                                                tuple(args.exclude_event))))
    if args.target in ("gpuvm", "all"):
        targets.append(("gpuvm", _GpuvmTargetFactory("core", 0)))
    seconds = args.seconds / len(targets)
    excl = f", excluding {', '.join(args.exclude_event)}" if args.exclude_event else ""
    print(f"pysvm fuzz: seed {seed} (from {args.seed!r}), {args.seconds:g} s, {args.jobs} "
          f"job(s), target {args.target}{excl}", flush=True)
    failed = 0
    for name, factory in targets:
        summary = fuzz_run(factory, seconds=seconds, seed=seed, jobs=args.jobs,
                           out_dir=args.out, shrink_seconds=args.shrink_seconds,
                           max_cases=args.max_cases,
                           progress=None if args.quiet else sys.stderr)
        for f in summary.found:
            print(f"FAIL {name} seed {f['seed']} case {f['case']}: {f['failure']}")
            print(f"  shrunk to {f['shrunk_steps']} event(s): {f['shrunk']}")
            if "path" in f:
                print(f"  written: {f['path']}")
                if name == "svm":
                    print(f"  replay:  pysvm replay {f['path']}")
                    print(f"  check:   pysvm fuzz --replay {f['path']}")
                else:
                    print(f"  replay:  pysvm conformance {f['path']}")
        print(f"{name}: {summary.line()}", flush=True)
        failed += summary.failures
    return 1 if failed else 0
