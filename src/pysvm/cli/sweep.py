"""``pysvm sweep``: a grid of simulate options times seeds, in parallel, as a Parquet table."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

HELP = """\
Run the built-in workload ('pysvm simulate') over a grid of its options times
a list of seeds, in parallel, and keep one row per run in a Parquet table:
every option, the seed, every counter, the data check, the wall time and the
model version. Then print the mean of the counters of interest per grid point
and, with --plots, draw one comparison PNG per counter.

CONFIG is a TOML file: 'seeds' (a count or a list), a [grid] table mapping
simulate option names (underscores for dashes: preferred_loc, size, steps,
...) to lists of values, optionally [fixed] options and a [report] table
(group_by, x, counters). See docs/sweep.md.

Re-running with the same -o skips the runs already in the table, so an
interrupted sweep (Ctrl-C keeps every finished run) resumes where it stopped.
The table is replaced atomically, never left half-written. Each row is
reproducible: 'pysvm simulate' with its options and seed gives the same counters.

example:
  pysvm sweep policies.toml -o results.parquet --jobs 2 --plots plots/
  pysvm sweep policies.toml -o results.parquet --executor ray   # local or RAY_ADDRESS cluster
  pysvm sweep policies.toml -o results.parquet --dry-run        # list the runs, run nothing
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from pysvm.sweep import EXECUTORS

    p: argparse.ArgumentParser = sub.add_parser(
        "sweep", help="run a grid of simulate options x seeds in parallel into a Parquet table",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", metavar="CONFIG.toml", help="the sweep: seeds, [grid], [fixed], "
                   "[report]")
    p.add_argument("-o", "--output", metavar="RESULTS.parquet", required=True,
                   help="results table; runs already in it are not run again")
    p.add_argument("--jobs", "-j", type=int, default=None, metavar="N",
                   help="parallel runs: worker processes (local, default 1) or CPUs of the "
                   "local Ray cluster (ray, default all)")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local process pool (default) or Ray")
    p.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="with --executor ray: the cluster to join (default $RAY_ADDRESS, "
                   "else start a local one)")
    p.add_argument("--plots", metavar="DIR", default=None,
                   help="write one comparison PNG per counter of interest into DIR")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs (and which are already done), run nothing")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p


def _describe(cfg: Any) -> str:
    dims = " x ".join(f"{len(v)} {k}" for k, v in cfg.grid.items())
    return f"{cfg.n_runs} runs ({dims} x {len(cfg.seeds)} seeds)"


def run(args: argparse.Namespace) -> int:
    from pysvm.cli import CliError
    from pysvm.sweep import (
        ExecutorUnavailable,
        SweepState,
        TaskFailed,
        check_counters,
        expand,
        format_summary,
        load_config,
        make_executor,
        read_rows,
        run_sweep,
        write_plots,
    )
    from pysvm.sweep.config import DEFAULT_COUNTERS
    from pysvm.sweep.runner import command_line

    if args.jobs is not None and args.jobs < 1:
        raise CliError(f"--jobs must be at least 1, got {args.jobs}")
    if args.ray_address and args.executor != "ray":
        raise CliError("--ray-address needs --executor ray")
    cfg = load_config(args.config)
    if args.dry_run:
        done = {str(r["run_key"]) for r in read_rows(args.output)}
        runs = expand(cfg)
        print(f"pysvm sweep: {_describe(cfg)}, {sum(r.key in done for r in runs)} already in "
              f"{args.output}")
        for r in runs:
            mark = "done" if r.key in done else "todo"
            print(f"  {mark}  {r.key}  {command_line(r.params, r.seed)}")
        return 0
    if cfg.counters != DEFAULT_COUNTERS:
        check_counters(cfg)
    try:
        executor = make_executor(args.executor, jobs=args.jobs, address=args.ray_address)
    except ExecutorUnavailable as e:
        raise CliError(str(e)) from None
    state = SweepState()
    show = not args.quiet and sys.stderr.isatty()
    where = (f"{args.executor}, {args.jobs or 1} job(s)" if args.executor == "local"
             else f"ray, {getattr(executor, 'cpus', '?')} CPU(s)")
    try:
        run_sweep(cfg, args.output, executor, progress=show, state=state)
    except KeyboardInterrupt:
        print(f"pysvm sweep: interrupted after {state.done} new run(s) of "
              f"{state.total - state.skipped}; {state.log.report()}"
              + (f" ({state.rows_saved} rows); run the same command again to finish"
                 if state.log.written else ""), file=sys.stderr)
        return 130
    except TaskFailed as e:
        print(e.detail.rstrip(), file=sys.stderr)
        kept = f"; {state.log.report()} ({state.rows_saved} rows)" if state.log.written else ""
        raise CliError(f"a run failed ({e}){kept}") from None
    print(f"pysvm sweep: {_describe(cfg)} on {where}: {state.done} run now, "
          f"{state.skipped} already in {args.output}, {state.wall_s:.1f} s")
    print(f"  table         {args.output}: {state.rows_saved} rows"
          + (f" ({state.other_rows} from points not in this config)" if state.other_rows
             else ""))
    print(format_summary(cfg, state.rows))
    if args.plots:
        paths = write_plots(cfg, state.rows, args.plots)
        print(f"  plots         {len(paths)} PNG in {os.path.join(args.plots, '')}")
    bad = sum(1 for r in state.rows if not r.get("integrity_ok", True))
    if bad:
        print(f"pysvm sweep: DATA INTEGRITY FAILED in {bad} run(s)", file=sys.stderr)
        return 1
    return 0
