"""``pysvm simulate``: run the built-in seeded SVM workload and print its summary."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack
from typing import Any

from pysvm.cli.common import (
    CliError,
    add_json_arguments,
    check_output,
    draw_result,
    json_note,
    json_target,
)
from pysvm.outputs import OutputLog, atomic_text, check_writable, is_stdio
from pysvm.sim.workload import (
    ATOMICS,
    MIGRATION_POLICIES,
    PREFERRED_LOCS,
    SimConfig,
    format_summary,
    simulate,
)
from pysvm.sim.workloads import (
    SCHEMA_VERSION,
    WORKLOADS,
    WorkloadConfig,
    format_workload_summary,
    make_workload,
    run_workload,
)

HELP = """\
Run a built-in, seeded workload on a simulated machine: one or two discrete
devices with small VRAM, a VM bound as a CPU-address mirror over the whole
process address space, and an application that allocates, madvises, runs GPU
kernels (faults, migrations), reads and writes from the CPU, unmaps parts of
its heap and re-maps them, under VRAM pressure. Every read is checked against
the simulator's own copy of the data. Exit status 1 if any read differs.

At the end it prints a summary: GPU faults and retries, migrations and bytes
moved each way, garbage-collector runs and VMA attribute resets, VMAs and SVM
ranges alive, wall time and events per second, refusals with their reason,
and the data check. A progress bar shows while it runs on a terminal.

example:
  pysvm simulate                                   # default run, a few seconds
  pysvm simulate --profile newest --preferred-loc peer --unbind
  pysvm simulate --seed 7 --record run.jsonl --json > sim.json
  pysvm replay run.jsonl | tail -1                 # the same summary, from the trace
  pysvm simulate --steps 500 --quiet --plot map.png --timeline

application workloads (--workload NAME; docs/workloads.md): each touches its
whole --size in 2 MiB chunks, reports faults, retries, migrations and bytes each
way, evictions, the thrash ratio (bytes migrated / working set) and counters
per phase, checks every read, and records and replays like the default run:
  pysvm simulate --workload stream --size 32768 --vram-mib 16384
  pysvm simulate --workload oversubscribe-1.5x --size 1024 --passes 2 --json
  pysvm simulate --workload free-no-munmap --record storm.jsonl
"""


def add_sim_arguments(p: argparse.ArgumentParser) -> None:
    """The workload options, shared with ``pysvm plot --simulate``."""
    d = SimConfig()
    g = p.add_argument_group("workload")
    g.add_argument("--steps", type=int, default=d.steps,
                   help=f"workload steps (default {d.steps}; ~1-3 events each)")
    g.add_argument("--size", type=int, default=d.heap_mib, metavar="MIB", dest="heap_mib",
                   help=f"heap size in MiB the application allocates from (default {d.heap_mib})")
    g.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    g.add_argument("--profile", choices=["6.18", "newest"], default=d.profile,
                   help=f"kernel behaviour to model (default {d.profile})")
    g.add_argument("--devices", type=int, choices=[1, 2], default=d.devices,
                   help=f"number of discrete devices (default {d.devices})")
    g.add_argument("--vram-mib", type=int, default=None,
                   help=f"VRAM per device (per tile with --tiles 2) in MiB; small means eviction "
                   f"(default {d.vram_mib}; "
                   "with --workload, the workload's own)")
    g.add_argument("--preferred-loc", choices=PREFERRED_LOCS, default=d.preferred_loc,
                   help="what madvise preferred_loc asks for: the faulting device's VRAM, "
                   "system memory, the peer device's VRAM, or a mix of them (the peer only "
                   f"with --profile newest) (default {d.preferred_loc})")
    g.add_argument("--migration-policy", choices=list(MIGRATION_POLICIES),
                   default=d.migration_policy,
                   help="madvise migration_policy: migrate all pages, or only those in system "
                   f"memory (default {d.migration_policy})")
    g.add_argument("--atomics", choices=[*ATOMICS, "mixed"], default=d.atomics,
                   help=f"madvise atomic value the application uses (default {d.atomics})")
    g.add_argument("--unbind", action="store_true",
                   help="unbind the second device half-way through (needs --devices 2)")
    g.add_argument("--tiles", type=int, choices=[1, 2], default=d.tiles,
                   help="tiles per device, each with its own VRAM of --vram-mib; with 2, "
                   f"each GPU kernel runs on one of them (default {d.tiles})")


def config_from_args(args: argparse.Namespace, timeline: bool = False) -> Any:
    """Build a validated SimConfig, turning a bad value into a CliError."""
    cfg = SimConfig(steps=args.steps, seed=args.seed, profile=args.profile,
                    devices=args.devices,
                    vram_mib=SimConfig.vram_mib if args.vram_mib is None else args.vram_mib,
                    heap_mib=args.heap_mib,
                    preferred_loc=args.preferred_loc, migration_policy=args.migration_policy,
                    atomics=args.atomics,
                    unbind=args.unbind, tiles=args.tiles, timeline=timeline)
    try:
        cfg.validate()
    except ValueError as e:
        raise CliError(str(e)) from None
    return cfg


def run_simulation(cfg: Any, record: str | None, quiet: bool,
                   log: OutputLog | None = None) -> Any:
    """Run with a tqdm progress bar on stderr (only on a TTY and without --quiet).

    The trace (``record``) goes to a temporary file renamed over ``record``
    only when the run completes (pysvm.outputs); ``-`` is standard output.
    """
    with ExitStack() as stack:
        rec = None
        if record:
            try:
                rec = stack.enter_context(atomic_text(record, log=log))
            except OSError as e:
                raise CliError(f"cannot write {record}: {e.strerror}") from None
        progress = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm  # type: ignore[import-untyped]

            bar = stack.enter_context(tqdm(total=cfg.steps, unit="step", file=sys.stderr,
                                           leave=False, desc="simulate"))

            def progress(step: int) -> None:
                if step % 50 == 49:
                    bar.update(50)
        return simulate(cfg, record=rec, progress=progress)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "simulate", help="run the built-in seeded SVM workload and verify its data",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sim_arguments(p)
    w = p.add_argument_group("application workloads")
    w.add_argument("--workload", choices=list(WORKLOADS), metavar="NAME",
                   help="run an application pattern instead of the default random "
                   f"workload: {', '.join(WORKLOADS)} (uses --size, --seed, --profile, "
                   "--vram-mib, --passes)")
    w.add_argument("--passes", type=int, default=0, metavar="N",
                   help="with --workload: passes, iterations or rounds (default: the "
                   "workload's own)")
    out = p.add_argument_group("output")
    out.add_argument("--record", metavar="FILE",
                     help="write the executed events as a trace (replay with 'pysvm replay'); "
                     "- for standard output (the summary then goes to stderr)")
    add_json_arguments(out, "the summary")
    out.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    out.add_argument("--plot", metavar="PNG", help="also draw the final address space to PNG")
    out.add_argument("--timeline", action="store_true",
                     help="with --plot: add a panel of faults and migrations per event")
    return p


#: Options of the default workload that --workload does not use -> their flag.
_DEFAULT_ONLY = {"steps": "--steps", "devices": "--devices", "preferred_loc": "--preferred-loc",
                 "migration_policy": "--migration-policy", "atomics": "--atomics",
                 "unbind": "--unbind", "tiles": "--tiles"}


def workload_config_from_args(args: argparse.Namespace) -> WorkloadConfig:
    """A validated WorkloadConfig; an option that does not apply is a CliError."""
    d = SimConfig()
    for key, flag in _DEFAULT_ONLY.items():
        if getattr(args, key) != getattr(d, key):
            raise CliError(f"{flag} does not apply to --workload (it sets the default "
                           "workload's behaviour)")
    if args.plot or args.timeline:
        raise CliError("--plot and --timeline do not apply to --workload")
    if args.vram_mib is not None and args.vram_mib < 1:
        raise CliError(f"--vram-mib must be in [1, 1048576], got {args.vram_mib}")
    if args.passes < 0 or args.passes > 1000:
        raise CliError(f"--passes must be in [1, 1000], got {args.passes}")
    cfg = WorkloadConfig(workload=args.workload, size_mib=args.heap_mib, seed=args.seed,
                         profile=args.profile, vram_mib=args.vram_mib or 0,
                         passes=args.passes)
    try:
        cfg.validate()
        make_workload(cfg.workload).resolve(cfg)
    except ValueError as e:
        raise CliError(str(e)) from None
    return cfg


def _check_outputs(args: argparse.Namespace, plot: str | None) -> tuple[str | None, bool]:
    """Where the JSON goes and whether standard output carries a file's contents; every
    output is checked before any work (pysvm.outputs)."""
    json_out = json_target(args)
    stdout_users = [what for what, path in (("--record", args.record), ("--json", json_out),
                                            ("--plot", plot)) if path and is_stdio(path)]
    if len(stdout_users) > 1:
        raise CliError(f"{' and '.join(stdout_users)} cannot both write to standard output")
    for path in (args.record, json_out):
        if path:
            check_writable(path)
    return json_out, bool(stdout_users)


def _write_results(args: argparse.Namespace, json_out: str | None, text: Any, log: OutputLog,
                   as_json: dict[str, Any], summary: str, events: int) -> None:
    """The JSON (atomically) and, unless it went to standard output, the human summary."""
    if json_out:
        with atomic_text(json_out, log=log) as f:
            f.write(json.dumps(as_json, indent=2, sort_keys=True) + "\n")
    if not json_out or not is_stdio(json_out):
        print(summary, file=text)
        if args.record:
            print(f"  recorded      {events} events to {args.record}; "
                  f"'pysvm replay {args.record} | tail -1' ends with the same counters",
                  file=text)
        if json_out:
            print(f"  json          {json_out}", file=text)


def run_workload_cli(args: argparse.Namespace) -> int:
    """``pysvm simulate --workload NAME``: run, print the summary or JSON, exit 1 on a
    data mismatch or an event the workload expected to succeed. Outputs follow the
    command's conventions: checked before the run, written atomically, ``-`` is stdout."""
    cfg = workload_config_from_args(args)
    json_out, stdout_taken = _check_outputs(args, None)
    log = OutputLog()
    text = sys.stderr if stdout_taken else sys.stdout
    try:
        with ExitStack() as stack:
            rec = stack.enter_context(atomic_text(args.record, log=log)) if args.record else None
            progress = None
            if not args.quiet and sys.stderr.isatty():
                from tqdm import tqdm

                bar = stack.enter_context(tqdm(unit="ev", file=sys.stderr, leave=False,
                                               desc=cfg.workload))

                def progress(n: int) -> None:
                    if n % 100 == 0:
                        bar.update(100)
            res = run_workload(cfg, record=rec, progress=progress)
        _write_results(args, json_out, text, log, res.as_json(), format_workload_summary(res),
                       res.sim["events"])
    except KeyboardInterrupt:
        print(f"pysvm simulate: interrupted; {log.report()}", file=sys.stderr)
        return 130
    json_note(args)
    if not res.ok:
        print(f"pysvm simulate: {len(res.mismatches)} read(s) differ, "
              f"{len(res.unexpected)} unexpected refusal(s)", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    if args.workload:
        return run_workload_cli(args)
    if args.passes:
        raise CliError("--passes needs --workload")
    if args.timeline and not args.plot:
        raise CliError("--timeline needs --plot PNG")
    json_out, stdout_taken = _check_outputs(args, args.plot)
    if args.plot:
        check_output(args.plot)
    cfg = config_from_args(args, timeline=bool(args.plot and args.timeline))
    log = OutputLog()
    try:
        res = run_simulation(cfg, args.record, args.quiet, log)
        # The human summary moves to stderr when stdout carries a file's contents.
        text = sys.stderr if stdout_taken else sys.stdout
        _write_results(args, json_out, text, log,
                       {"schema_version": SCHEMA_VERSION, **res.as_json()}, format_summary(res),
                       res.sim["events"])
        if args.plot:
            draw_result(res, args.plot, timeline=args.timeline, log=log)
            if not json_out or not is_stdio(json_out):
                print(f"  plot          {args.plot}", file=text)
    except KeyboardInterrupt:
        print(f"pysvm simulate: interrupted; {log.report()}", file=sys.stderr)
        return 130
    json_note(args)
    if not res.ok:
        print(f"pysvm simulate: DATA INTEGRITY FAILED: {len(res.mismatches)} page(s) differ",
              file=sys.stderr)
        return 1
    return 0
