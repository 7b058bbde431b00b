"""Regenerate the measured part of docs/benchmarks.md.

    python -m benchmarks.report                       # N = 1e3, 1e5, 1e6 (a few minutes;
                                                      # each cell the fastest of --repeat 3)
    python -m benchmarks.report --clock cpu           # thread CPU time (shared machine)
    python -m benchmarks.report --sizes 1e3 --no-write  # quick check, prints only

Runs the same loops as ``pysvm bench`` (compiled core single and batch paths,
reference) plus the peers of :mod:`benchmarks.peers`, the populate cost, the
memory per mapping (after populate and after W1), the cost growth and a check
of every target of issue 3, and rewrites the text between the GENERATED
markers of docs/benchmarks.md. The prose around it is written by hand.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gpuvm_core
from benchmarks.peers import PEERS, new_peer
from gpuvm_core.workloads import (
    CLOCKS,
    VM_RANGE,
    WORKLOADS,
    MemoryReport,
    memory_per_mapping,
    populate,
    run_batch,
    run_single,
    workload,
)
from pysvm.cli.bench import (
    Row,
    format_memory,
    format_table,
    kernel_note,
    machine_info,
    measure,
    parse_sizes,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
BEGIN, END = "<!-- BEGIN GENERATED (python -m benchmarks.report) -->", "<!-- END GENERATED -->"


def peer_rows(sizes: list[int], m: int, clock: str) -> list[tuple[str, int, int, float]]:
    now = CLOCKS[clock]
    out = []
    for name, (_, ws) in PEERS.items():
        for n in sizes:
            if name == "portion" and n > 1000:
                continue  # O(n) per assignment: populate alone is O(n^2)
            if name == "intervaltree" and n > 100_000:
                continue  # populate alone takes minutes and GBs
            for w in ws:
                vm = new_peer(name, n, w)
                reqs = workload(w, n, m)
                t0 = now()
                run_single(vm, reqs)
                out.append((name, n, w, (now() - t0) * 1e9 / m))
    return out


def populate_ns(n: int, clock: str, kernel: Any = None) -> dict[str, float]:
    now = CLOCKS[clock]
    res = {}
    if kernel is not None:
        reqs = populate(n)
        kvm = kernel(0, VM_RANGE)
        secs, _, _ = kvm.run_requests(reqs.codes, reqs.addr, reqs.range, reqs.obj, reqs.offset,
                                      clock)
        res["kernel"] = secs * 1e9 / n
    for name, factory, loop in (("core single", gpuvm_core.GpuVm, run_single),
                                ("core batch", gpuvm_core.GpuVm, run_batch),
                                ("reference", gpuvm_core.RefGpuVm, run_single)):
        if name == "reference" and n > 100_000:
            res[name] = float("nan")
            continue
        reqs = populate(n)
        vm = factory(0, VM_RANGE)
        t0 = now()
        loop(vm, reqs)
        res[name] = (now() - t0) * 1e9 / n
    return res


def growth(rows: list[Row]) -> list[str]:
    sizes = sorted({r.n for r in rows})
    if len(sizes) < 2:
        return []
    lo, hi = sizes[0], sizes[-1]
    lines = [f"| workload | path | ns/req at N={lo:,} | at N={hi:,} | growth |",
             "| --- | --- | --- | --- | --- |"]
    by = {(r.n, r.workload, r.path): r.ns_per_request for r in rows}
    for w in sorted({r.workload for r in rows}):
        for p in ("single", "batch", "reference", "kernel"):
            if (lo, w, p) in by and (hi, w, p) in by:
                a, b = by[lo, w, p], by[hi, w, p]
                name = "kernel (C, this run)" if p == "kernel" else p
                lines.append(f"| {w} | {name} | {a:,.0f} | {b:,.0f} | {b / a:.1f}x |")
    return lines


def targets(rows: list[Row], memory: list[MemoryReport]) -> list[str]:
    """Every target of issue 3 with the measured value and met / MISSED."""
    by = {(r.n, int(r.workload[1]), r.path): r for r in rows}

    def ns(n: int, w: int, p: str) -> float | None:
        r = by.get((n, w, p))
        return None if r is None else r.ns_per_request

    def ratio(n: int, w: int, p: str) -> float | None:
        r = by.get((n, w, p))
        return None if r is None else r.vs_reference

    out = ["| target | measured | |", "| --- | --- | --- |"]

    def row(what: str, val: float | None, limit: float, unit: str, at_most: bool) -> None:
        if val is None or math.isnan(val):
            out.append(f"| {what} | not measured | - |")
            return
        ok = val <= limit if at_most else val >= limit
        out.append(f"| {what} | {val:,.1f} {unit} | {'met' if ok else '**MISSED**'} |")

    row("W1 single, N=1e5: <= 2,900 ns", ns(100_000, 1, "single"), 2_900, "ns", True)
    row("W1 single, N=1e6: <= 4,500 ns", ns(1_000_000, 1, "single"), 4_500, "ns", True)
    row("W1 single vs reference, N=1e5: >= 10x", ratio(100_000, 1, "single"), 10, "x", False)
    row("W1 batch, N=1e6: <= 1,500 ns", ns(1_000_000, 1, "batch"), 1_500, "ns", True)
    row("W4 find_first_batch, N=1e6: <= 150 ns", ns(1_000_000, 4, "batch"), 150, "ns", True)
    row("W1 batch vs reference, N=1e5: >= 40x", ratio(100_000, 1, "batch"), 40, "x", False)
    row("W4 batch vs reference, N=1e5: >= 50x", ratio(100_000, 4, "batch"), 50, "x", False)
    for r in memory:
        if r.impl == "core" and r.n == 1_000_000:
            row("memory, N=1e6, after populate (RSS): <= 48 B/mapping", r.rss_populate, 48,
                "B", True)
            row("memory, N=1e6, after populate + W1 (RSS): <= 48 B/mapping", r.rss_w1, 48,
                "B", True)
    for p in ("single", "batch"):
        a, b = ns(1_000, 1, p), ns(1_000_000, 1, p)
        row(f"growth W1 {p}, N=1e3 -> 1e6: <= 3x", None if a is None or b is None else b / a,
            3, "x", True)
    return out


def floor_section(sizes: list[int], m: int, clock: str, repeat: int, kernel: Any) -> list[str]:
    """The call-floor table (benchmarks.call_floor), or a line saying why it is absent."""
    if not sizes:
        return []
    head = ["", "### The Python call floor of the single path", "",
            "call floor = `run_single` over a do-nothing compiled stand-in VM (same methods, "
            "arguments and kind of return value, no work; `benchmarks/call_floor.py`); kernel "
            "and core single timed again beside it, each cell the fastest of "
            f"{repeat} loops of M = {m:,}.", ""]
    try:
        from benchmarks.call_floor import build_floor, format_rows
        from benchmarks.call_floor import measure as measure_floor
        from gpuvm_core.kernel import KernelTreeError

        mod = build_floor()
    except (ImportError, OSError, subprocess.CalledProcessError, KernelTreeError) as e:
        return head + [f"Not measured: the stand-in could not be built ({type(e).__name__}: "
                       "it needs Cython and a C compiler)."]
    return head + format_rows(measure_floor(mod, sizes, [1, 2, 3, 4], m, clock, repeat,
                                            kernel))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1e3,1e5,1e6")
    ap.add_argument("--m", type=int, default=200_000)
    ap.add_argument("--ref-m", type=int, default=2_000)
    ap.add_argument("--peer-m", type=int, default=2_000)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall (default) or cpu (this thread's CPU time; shared machines)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per cell, the fastest counts (default 3)")
    ap.add_argument("--kernel-tree", metavar="DIR", default=None,
                    help="time DIR's own drm_gpuvm.c (compiled in userspace) in the same run; "
                         "without it the kernel columns are absent")
    ap.add_argument("--floor-sizes", default="1e3",
                    help="sizes for the Python call-floor table (benchmarks.call_floor; needs "
                         "Cython and a C compiler); '' to skip it (default 1e3)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    kernel = None
    if args.kernel_tree is not None:
        from gpuvm_core.kernel import load_oracle

        kernel = load_oracle(args.kernel_tree)
    sizes = parse_sizes(args.sizes)
    info = machine_info()
    if not info["compiled_core"]:
        print("the compiled core is not built: refusing to publish reference numbers as core",
              file=sys.stderr)
        return 1
    load_before = info["load"]
    t_start = time.perf_counter()
    # The reference's populate alone costs ~10-30 us/map: skip it above 1e5.
    small = [n for n in sizes if n <= 100_000]
    rows = measure(small, [1, 2, 3, 4], args.m, args.ref_m, clock=args.clock,
                   repeat=args.repeat, kernel=kernel) if small else []
    rows += measure([n for n in sizes if n > 100_000], [1, 2, 3, 4], args.m, 0,
                    clock=args.clock, repeat=args.repeat, kernel=kernel)
    order = ("reference", "kernel", "single", "batch")
    rows.sort(key=lambda r: (r.n, r.workload, order.index(r.path)))
    big = max(small) if small else max(sizes)
    memory = [memory_per_mapping("core", n, m=args.m) for n in sizes]
    memory.append(memory_per_mapping("reference", big, m=args.ref_m))
    peers = peer_rows(small, args.peer_m, args.clock)
    pop = {n: populate_ns(n, args.clock, kernel) for n in sizes}
    floor = floor_section(parse_sizes(args.floor_sizes) if args.floor_sizes.strip() else [],
                          args.m, args.clock, args.repeat, kernel)
    elapsed = time.perf_counter() - t_start
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())

    clock_txt = ("wall time (time.perf_counter)" if args.clock == "wall" else
                 "thread CPU time (time.thread_time: time the benchmark thread was on a core; "
                 "other processes' cache pressure still counts)")
    out = [BEGIN, "",
           f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} in {elapsed:.0f} s, one run of "
           f"the report, each W1-W4 cell the fastest of {args.repeat} loops, "
           f"clock: {clock_txt}. Load average (1, 5, 15 min) {load_before} before, "
           f"{load_after} after. Python {info['python']}, numpy {info['numpy']}, "
           f"compiler `{info['cc']}`, {info['cpu']}, {info['platform']}. "
           f"Core: M = {args.m:,} requests per loop; reference: M = {args.ref_m:,} "
           f"(N <= 1e5 only); peers: M = {args.peer_m:,}.", "",
           "### Targets (issue 3)", "", *targets(rows, memory), "",
           "### W1-W4: compiled core vs reference vs the kernel", "",
           kernel_note(kernel).lstrip("# ").replace(str(kernel.build.tree) + "/", "")
           if kernel is not None else kernel_note(None).lstrip("# "), "",
           format_table(rows, markdown=True), "",
           "### Cost growth", "", *growth(rows), "",
           "### Peers (single path, ns/request)", "",
           "| peer | N | " + " | ".join(f"W{w} {WORKLOADS[w]}" for w in (1, 2, 3, 4)) + " |",
           "| --- | --- | --- | --- | --- | --- |"]
    for name in PEERS:
        for n in sorted({p[1] for p in peers if p[0] == name}):
            cells = {p[2]: p[3] for p in peers if p[0] == name and p[1] == n}
            out.append(f"| {name} | {n:,} | " + " | ".join(
                f"{cells[w]:,.0f}" if w in cells else "not expressible" for w in (1, 2, 3, 4))
                + " |")
    out += ["", "### Memory per mapping", "",
            "RSS: resident-set growth of a fresh process (request arrays built before the "
            "baseline, VM fed in slices of 4,096, freed heap returned with malloc_trim) / VAs "
            "held; nbytes: the core's own exact count (GpuVm.nbytes).", "",
            format_memory(memory, markdown=True), "",
            "### Populate (append-only maps in address order, ns/map)", "",
            "| N | core single | core batch | reference | kernel (this run) |",
            "| --- | --- | --- | --- | --- |"]
    for n in sizes:
        ref = pop[n]["reference"]
        kn = pop[n].get("kernel")
        out.append(f"| {n:,} | {pop[n]['core single']:,.0f} | {pop[n]['core batch']:,.0f} | "
                   f"{'-' if math.isnan(ref) else f'{ref:,.0f}'} | "
                   f"{'absent (no --kernel-tree)' if kn is None else f'{kn:,.0f}'} |")
    out += floor
    out += ["", END]
    text = "\n".join(out)
    print(text)
    if not args.no_write:
        doc = DOC.read_text()
        if BEGIN not in doc or END not in doc:
            print(f"{DOC}: GENERATED markers missing", file=sys.stderr)
            return 1
        head, rest = doc.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        DOC.write_text(head + text + tail)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
