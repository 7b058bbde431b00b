"""``pysvm plot``: a PNG of a VM's address space at the end of a trace or a simulation."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pysvm.cli.common import CliError, check_output, draw_result, write_png
from pysvm.cli.simulate import add_sim_arguments, config_from_args, run_simulation
from pysvm.outputs import OutputLog, is_stdio
from pysvm.plot.render import render, snapshot_from_trace

HELP = """\
Draw a VM's address space at the end of a trace (replayed through the trace
engine) or of a built-in simulation: VMAs as bars coloured by their madvise
attributes (preferred location, atomic access, PAT index) and SVM ranges
coloured by residency (system memory or a device's VRAM). With --timeline,
two more panels show GPU faults (and retries) and migrations to VRAM and back
over the run, with evictions and unbinds marked. A trace that tears its VMs
down is drawn as it was just before. Needs matplotlib (pip install
'pysvm[plot]').

example:
  pysvm plot run.jsonl -o run.png --timeline
  pysvm plot --simulate --seed 3 --unbind -o sim.png --timeline
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:

    p: argparse.ArgumentParser = sub.add_parser(
        "plot", help="draw a VM's address space (VMAs, SVM ranges) to a PNG",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trace", nargs="?",
                   help="trace file (JSON Lines), - for stdin; omit with --simulate")
    p.add_argument("-o", "--output", required=True, metavar="PNG",
                   help="PNG file to write (- for standard output)")
    p.add_argument("--timeline", action="store_true",
                   help="add a panel of faults and migrations per event")
    p.add_argument("--vm", help="which VM of the trace to draw (default: the first created)")
    p.add_argument("--simulate", action="store_true",
                   help="draw a built-in simulation instead of a trace (options below)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_sim_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    check_output(args.output)
    log = OutputLog()
    try:
        return _run(args, log)
    except KeyboardInterrupt:
        print(f"pysvm plot: interrupted; {log.report()}", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, log: OutputLog) -> int:
    # With the PNG on standard output, the line about it goes to stderr.
    text = sys.stderr if is_stdio(args.output) else sys.stdout
    if args.simulate:
        if args.trace:
            raise CliError("give either a trace file or --simulate, not both")
        cfg = config_from_args(args, timeline=args.timeline)
        res = run_simulation(cfg, None, args.quiet)
        draw_result(res, args.output, args.timeline, log)
        verdict = "data verified" if res.ok else "DATA INTEGRITY FAILED"
        print(f"{args.output}: simulation seed {cfg.seed}, {res.sim['events']} events, "
              f"{res.sim['vmas_alive']} VMAs, {res.sim['ranges_alive']} ranges, {verdict}",
              file=text)
        return 0 if res.ok else 1
    if not args.trace:
        raise CliError("give a trace file to draw, or --simulate")
    snap = _replay_with_progress(args)
    write_png(args.output, lambda path: render(snap, path, timeline=args.timeline), log)
    print(f"{args.output}: {snap.vm}, {len(snap.vmas)} VMAs, {len(snap.ranges)} SVM ranges",
          file=text)
    return 0


def _replay_with_progress(args: argparse.Namespace) -> Any:
    """Replay the trace for the picture, with a progress bar (bytes read) on a terminal."""
    if args.quiet or not sys.stderr.isatty() or is_stdio(args.trace):
        return snapshot_from_trace(args.trace, vm=args.vm, timeline=args.timeline)
    import os

    from tqdm import tqdm  # type: ignore[import-untyped]

    size = os.path.getsize(args.trace)
    with tqdm(total=size, unit="B", unit_scale=True, file=sys.stderr, leave=False,
              desc="replaying trace") as bar:
        return snapshot_from_trace(args.trace, vm=args.vm, timeline=args.timeline,
                                   progress=bar.update)
