"""``pysvm fuzz``: random SVM interleavings (and the drm_gpuvm differential fuzzer)."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import math
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
from pysvm.cli.common import CliError
from pysvm.fuzz.generator import RANDOM_EVENTS
from pysvm.fuzz.planted import PLANTED, PlantUnsupported, check_plantable
from pysvm.fuzz.target import SvmTargetFactory, check_events, load_trace
from pysvm.outputs import OutputLog, is_stdio

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

Campaigns (--executor or --data): the seed's cases are split into shards
(case indices shard, shard+N, ...) that run in parallel on a local process
pool or a Ray cluster (the executors of 'pysvm sweep'); a shard does not stop
at its first failure but shrinks it and goes on (up to --max-failures).
Failures that shrink to the same case are one finding. --data DIR writes
DIR/findings.parquet (one row per distinct finding: target, kind, seed, case
index, the shrunk case, occurrences) and DIR/shards.parquet (one row per
shard: cases, steps, seconds, failures), both replaced atomically.

example:
  pysvm fuzz --seconds 60 --seed 1 --jobs 2
  pysvm fuzz --replay fuzz-failures/svm-1-17.jsonl    # re-check a written case
  pysvm fuzz --seconds 600 --jobs 8 --data campaign/  # shards on 8 processes, Parquet out
  pysvm fuzz --seconds 3600 --executor ray --data campaign/   # on $RAY_ADDRESS or local Ray
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
    c = p.add_argument_group("campaign (shards on a process pool or a Ray cluster)")
    c.add_argument("--executor", choices=["local", "process", "ray"], default=None,
                   help="run as a campaign on a local process pool ('process' is the same as "
                   "'local') or on Ray")
    c.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="with --executor ray: the cluster to join (default $RAY_ADDRESS, else "
                   "start a local one)")
    c.add_argument("--shards", type=count_arg, default=None, metavar="N",
                   help="shards per target (default: --jobs, or the Ray cluster's CPUs)")
    c.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="write findings.parquet and shards.parquet into DIR (implies a "
                   "campaign on the local executor unless --executor says otherwise)")
    c.add_argument("--max-failures", type=count_arg, default=5, metavar="N",
                   help="a shard stops after N failures (default 5)")
    c.add_argument("--plant", choices=PLANTED, default=None, help=argparse.SUPPRESS)
    return p


def _check_exclude(names: list[str]) -> None:
    """Refuse an --exclude-event name the generator never draws (a typo would do nothing)."""
    for name in names:
        if name not in RANDOM_EVENTS:
            close = difflib.get_close_matches(name, RANDOM_EVENTS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CliError(f"--exclude-event: unknown event {name!r}{hint}; the fuzzer draws "
                           f"{', '.join(RANDOM_EVENTS)}")


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
    _check_exclude(args.exclude_event)
    if is_stdio(str(args.out)):
        raise CliError("--out is a directory for failing cases; '-' (standard output) "
                       "cannot hold them")
    if args.plant and args.target == "gpuvm":
        raise CliError("--plant plants a bug in the SVM model; use --target svm or all")
    if args.plant:
        try:
            check_plantable()
        except PlantUnsupported as e:
            raise CliError(f"--plant: {e}") from None
    if args.executor is not None or args.data is not None or args.shards is not None:
        return _campaign(args)
    if args.plant:
        raise CliError("--plant needs a campaign (--executor or --data)")
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


def _campaign(args: argparse.Namespace) -> int:
    """Shards on an executor; findings deduplicated; tables written atomically."""
    from pysvm.fuzz.campaign import (
        FINDING_COLUMNS,
        SHARD_COLUMNS,
        Findings,
        ShardTask,
        run_shard_task,
        write_table,
    )
    from pysvm.sweep.executors import ExecutorUnavailable, make_executor, run_tasks

    seed = parse_seed(args.seed)
    if args.data is not None:
        if is_stdio(str(args.data)):
            raise CliError("--data is a directory for two tables; '-' cannot hold them")
        if args.data.exists() and not args.data.is_dir():
            raise CliError(f"--data {args.data}: exists and is not a directory")
    name = "ray" if args.executor == "ray" else "local"
    try:
        executor = make_executor(name, jobs=args.jobs if name == "local" or args.jobs > 1
                                 else None, address=args.ray_address)
    except ExecutorUnavailable as e:
        raise CliError(str(e)) from None
    shards = args.shards or (executor.cpus if name == "ray" else args.jobs)  # type: ignore[union-attr]
    targets = ["svm", "gpuvm"] if args.target == "all" else [args.target]
    seconds = args.seconds / len(targets)
    if not math.isfinite(seconds):
        seconds = 1e9
    tasks = [ShardTask(target=t, seed=seed, shard=j, shards=shards, seconds=seconds,
                       max_cases=args.max_cases, shrink_seconds=args.shrink_seconds,
                       max_failures=args.max_failures, max_steps=args.max_steps,
                       profile=args.profile, exclude=tuple(args.exclude_event),
                       plant=args.plant if t == "svm" else None)
             for t in targets for j in range(shards)]
    excl = f", excluding {', '.join(args.exclude_event)}" if args.exclude_event else ""
    print(f"pysvm fuzz: campaign, seed {seed} (from {args.seed!r}), {args.seconds:g} s, "
          f"{len(tasks)} shard(s) on {name}, target {args.target}{excl}", flush=True)
    found = Findings()
    log = OutputLog()

    def on_result(index: int, res: dict[str, Any]) -> None:
        task = tasks[index]
        for key in found.add(task, res):
            row = found.rows[key]
            if args.out is not None:
                found.save_case(key, args.out)
            print(f"FAIL {task.target} seed {row['seed']} case {row['case']}: {row['failure']}")
            print(f"  shrunk to {row['shrunk_steps']} event(s): {row['shrunk_failure']}")
            if row["path"]:
                print(f"  written: {row['path']}")

    def save() -> None:
        if args.data is None:
            return
        args.data.mkdir(parents=True, exist_ok=True)
        write_table(found.finding_rows(), FINDING_COLUMNS, args.data / "findings.parquet", log)
        write_table(found.shards, SHARD_COLUMNS, args.data / "shards.parquet", log)

    try:
        run_tasks(executor, run_shard_task, tasks, on_result,
                  progress=not args.quiet and sys.stderr.isatty(), desc="fuzz shards")
        save()
    except KeyboardInterrupt:
        # Keep what finished (the tables of the shards done so far), unless a second
        # Ctrl-C stops that too; either way every file is whole or unchanged.
        with contextlib.suppress(KeyboardInterrupt):
            save()
        kept = log.report() if args.data is not None else "no tables asked for (--data)"
        print(f"pysvm fuzz: interrupted after {len(found.shards)} of {len(tasks)} shard(s); "
              f"{kept}", file=sys.stderr)
        return 130
    cases = sum(int(r["cases"] or 0) for r in found.shards)
    steps = sum(int(r["steps"] or 0) for r in found.shards)
    failures = sum(int(r["failures"] or 0) for r in found.shards)
    print(f"campaign: {cases} cases, {steps} steps, {failures} failures, "
          f"{len(found.rows)} distinct finding(s) (seed {seed}, {len(tasks)} shards)")
    if args.data is not None:
        print(f"  tables: {args.data / 'findings.parquet'} ({len(found.rows)} rows), "
              f"{args.data / 'shards.parquet'} ({len(found.shards)} rows)")
    return 1 if found.rows else 0
