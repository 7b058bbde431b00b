"""``pysvm bench``: time the workloads W1-W4 (gpuvm_core.workloads).

For each size N and workload it times the compiled core through the
single-request path (``*_ops_create`` + ``apply`` per request), through the
batch path (``*_batch`` with numpy arrays), the pure-Python reference
(single path, usually with a smaller M) and, with ``--kernel-tree DIR``, the
kernel's own drm_gpuvm.c from DIR compiled in userspace (its loop and clock in
C), all in the same run; then prints one table with ns/request, requests/s
and the speed-ups over the reference and over the kernel, and the resident
bytes per mapping. Without a tree there is no kernel column, never a number
from elsewhere.

Kernel: drivers/gpu/drm/drm_gpuvm.c of the given tree (gpuvm_core.kernel).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, cast

import gpuvm_core
from gpuvm_core.workloads import (
    CLOCKS,
    WORKLOADS,
    MemoryReport,
    memory_per_mapping,
    time_batch,
    time_kernel,
    time_single,
)
from pysvm.cli.common import CliError, add_json_arguments, json_note, json_target
from pysvm.outputs import OutputLog, atomic_text, check_writable, is_stdio

HELP = """\
Time the deterministic workloads W1-W4 (map_random, unmap_random,
madvise_random, lookup) on a freshly populated VM of N mappings, through the
compiled core's single-request and batch paths and the pure-Python reference,
and with --kernel-tree DIR through DIR's own drm_gpuvm.c compiled in userspace
(timed in C, same run, same machine): "x vs kernel" is its time over ours.
Without --kernel-tree there is no kernel column. Populate is not timed.
Each request = build the ops list + apply it + drop it.
The reference runs --ref-m requests (it is ~100x slower); the table says so.
Memory: bytes per mapping after populate(N) and after W1 (its splits lower the
fill factor), as the resident-set growth of a fresh process and, for the core,
its exact structural count (GpuVm.nbytes).

example:
  pysvm bench                                   # N = 1e3 and 1e5, all workloads
  pysvm bench --sizes 1e3 --workloads W1,W4 --m 20000 --json out.json
  pysvm bench --sizes 1e3,1e5,1e6 --markdown    # the table of docs/benchmarks.md
  pysvm bench --clock cpu                       # thread CPU time (shared machine)
  pysvm bench --kernel-tree ~/src/linux          # side by side with that kernel's C
"""

PATHS = ("single", "batch", "reference", "kernel")


@dataclass
class Row:
    """One timed loop."""

    n: int
    workload: str
    path: str
    m: int
    ns_per_request: float
    requests_per_s: float
    vs_reference: float | None
    #: the kernel's ns/request for the same (N, workload), measured in this run
    kernel_ns: float | None
    final_len: int
    ops_or_hits: int


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "bench", help="time workloads W1-W4 (core single/batch vs reference [vs kernel])",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1e3,1e5", help="comma-separated N values (default 1e3,1e5)")
    p.add_argument("--workloads", default="W1,W2,W3,W4", help="subset, e.g. W1,W4 (default all)")
    p.add_argument("--m", type=str, default="200000",
                   help="timed requests per workload for the core (default 200000)")
    p.add_argument("--ref-m", type=str, default="2000",
                   help="timed requests for the pure-Python reference (default 2000; 0 = skip)")
    p.add_argument("--kernel-tree", metavar="DIR", default=None,
                   help="also time DIR's own drivers/gpu/drm/drm_gpuvm.c (e.g. a kernel "
                        "checkout), compiled in userspace, in the same run")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="wall: elapsed time (default); cpu: this thread's CPU time, steadier "
                        "on a shared machine")
    p.add_argument("--repeat", type=str, default="1",
                   help="run each loop this many times and keep the fastest (default 1)")
    p.add_argument("--no-memory", action="store_true",
                   help="skip the bytes-per-mapping measurement (a child process per N)")
    add_json_arguments(p, "the rows and machine info")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _count(text: str, what: str, minimum: int = 1) -> int:
    try:
        v = float(text)
    except ValueError:
        raise CliError(f"{what} must be a number like 1000 or 1e5, not {text!r}") from None
    if v != int(v) or v < minimum or v > 10**8:
        raise CliError(f"{what} must be a whole number in [{minimum}, 1e8], not {text!r}")
    return int(v)


def parse_sizes(text: str) -> list[int]:
    sizes = [_count(t.strip(), "each size") for t in text.split(",") if t.strip()]
    if not sizes:
        raise CliError("--sizes needs at least one N")
    return sizes


def parse_workloads(text: str) -> list[int]:
    out = []
    for t in text.split(","):
        t = t.strip().upper()
        if not t:
            continue
        if t.removeprefix("W") not in ("1", "2", "3", "4"):
            raise CliError(f"unknown workload {t!r}: choose from W1, W2, W3, W4")
        out.append(int(t.removeprefix("W")))
    if not out:
        raise CliError("--workloads needs at least one of W1, W2, W3, W4")
    return out


def machine_info() -> dict[str, Any]:
    """Python, numpy, Cython, compiler and CPU, for the report header."""
    import numpy

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "compiled_core": gpuvm_core.GpuVm is not cast(Any, gpuvm_core.RefGpuVm),
        "core_module": getattr(gpuvm_core.GpuVm, "__module__", "?"),
    }
    try:
        from importlib.metadata import version

        info["cython"] = version("Cython")
    except Exception:  # not installed (only needed to build)
        info["cython"] = None
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        info["cpu"] = f"{names[0]} x{len(names)}" if names else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    import sysconfig

    info["cc"] = sysconfig.get_config_var("CC")
    import os

    info["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return info


def measure(sizes: list[int], workloads: list[int], m: int, ref_m: int, *,
            progress: bool = True, clock: str = "wall", repeat: int = 1,
            kernel: Callable[..., Any] | None = None) -> list[Row]:
    """Run every (N, workload, path) loop and return the rows.

    ``kernel`` (a :class:`gpuvm_core.kernel.KernelOracle`) adds the ``kernel``
    path: the same M requests in the oracle's C loop. With ``repeat`` > 1 each
    loop runs that many times (each on a fresh VM) and the fastest counts: on
    a shared machine the minimum is the run least disturbed by other
    processes. The loops of one (N, W) run back to back, so every ratio
    compares runs made under the same load.
    """
    from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

    core, ref = gpuvm_core.GpuVm, gpuvm_core.RefGpuVm
    tasks = [(n, w, p) for n in sizes for w in workloads for p in PATHS
             if (p != "reference" or ref_m > 0) and (p != "kernel" or kernel is not None)]
    rows: list[Row] = []
    ref_ns: dict[tuple[int, int], float] = {}
    ker_ns: dict[tuple[int, int], float] = {}
    bar = tqdm(tasks, desc="pysvm bench", unit="loop", file=sys.stderr,
               disable=None if progress else True, leave=False)
    # The reference and the kernel go first per (N, W) so the core rows can show ratios.
    first = {"reference": 0, "kernel": 1, "single": 2, "batch": 3}
    order = sorted(tasks, key=lambda t: (t[0], t[1], first[t[2]]))
    for n, w, path in order:
        bar.set_postfix_str(f"N={n:g} W{w} {path}")
        runs = []
        for _ in range(max(repeat, 1)):
            if path == "reference":
                runs.append(time_single(ref, w, n, ref_m, clock))
            elif path == "kernel":
                assert kernel is not None
                runs.append(time_kernel(kernel, w, n, m, clock))
            elif path == "single":
                runs.append(time_single(core, w, n, m, clock))
            else:
                runs.append(time_batch(core, w, n, m, clock))
        t = min(runs, key=lambda x: x.seconds)
        ns = t.ns_per_request
        if path == "reference":
            ref_ns[n, w] = ns
        if path == "kernel":
            ker_ns[n, w] = ns
        vs = ref_ns.get((n, w))
        rows.append(Row(n, f"W{w} {WORKLOADS[w]}", path, t.requests, ns,
                        1e9 / ns if ns > 0 else float("inf"),
                        None if path in ("reference", "kernel") or vs is None else vs / ns,
                        ker_ns.get((n, w)), t.final_len, t.result))
        bar.update(1)
    bar.close()
    return rows


def _fmt_ns(ns: float) -> str:
    return f"{ns:,.0f}" if ns >= 10 else f"{ns:.1f}"


def _fmt_rate(r: float) -> str:
    return f"{r / 1e6:.2f} M/s" if r >= 1e6 else f"{r / 1e3:,.1f} k/s"


def vs_kernel(r: Row) -> float | None:
    """The kernel's ns/request over this row's (> 1: faster than the kernel), same run."""
    if r.kernel_ns is None or r.path == "kernel" or r.ns_per_request <= 0:
        return None
    return r.kernel_ns / r.ns_per_request


def format_table(rows: list[Row], markdown: bool) -> str:
    """The W1-W4 table; the kernel columns only when the run timed a kernel."""
    with_kernel = any(r.path == "kernel" for r in rows)
    head = ["N", "workload", "path", "M", "ns/request", "requests/s", "x vs ref"]
    if with_kernel:
        head.append("x vs kernel")
    head.append("VAs at end")
    body = []
    for r in rows:
        line = [f"{r.n:,}", r.workload, r.path, f"{r.m:,}", _fmt_ns(r.ns_per_request),
                _fmt_rate(r.requests_per_s),
                "-" if r.vs_reference is None else f"{r.vs_reference:,.1f}x"]
        if with_kernel:
            vk = vs_kernel(r)
            line.append("-" if vk is None else f"{vk:,.2f}x")
        line.append(f"{r.final_len:,}")
        body.append(line)
    return _table(head, body, markdown)


def _table(head: list[str], body: list[list[str]], markdown: bool) -> str:
    lines = []
    if markdown:
        lines.append("| " + " | ".join(head) + " |")
        lines.append("| " + " | ".join("---" for _ in head) + " |")
        lines += ["| " + " | ".join(b) + " |" for b in body]
    else:
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
                  for i, h in enumerate(head)]
        lines.append("  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)))
        lines += ["  ".join(c.rjust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


def format_memory(memory: list[MemoryReport], markdown: bool) -> str:
    """Bytes per mapping: RSS growth of a fresh process and the structure's own count."""
    head = ["impl", "N", "VAs after populate", "RSS B/VA", "nbytes B/VA", "VAs after W1",
            "RSS B/VA", "nbytes B/VA"]

    def b(x: float | None) -> str:
        return "-" if x is None else f"{x:,.1f}"

    body = [[r.impl, f"{r.n:,}", f"{r.vas_populate:,}", b(r.rss_populate),
             b(r.nbytes_populate), f"{r.vas_w1:,}", b(r.rss_w1), b(r.nbytes_w1)]
            for r in memory]
    return _table(head, body, markdown)


def growth_lines(rows: list[Row]) -> list[str]:
    """Per-request cost at the largest N over the smallest, per workload and path."""
    sizes = sorted({r.n for r in rows})
    if len(sizes) < 2:
        return []
    lo, hi = sizes[0], sizes[-1]
    by = {(r.n, r.workload, r.path): r.ns_per_request for r in rows}
    out = []
    for w in sorted({r.workload for r in rows}):
        parts = [f"{p} {by[hi, w, p] / by[lo, w, p]:.1f}x" for p in PATHS
                 if (lo, w, p) in by and (hi, w, p) in by]
        out.append(f"  {w}: " + ", ".join(parts))
    return [f"Growth of ns/request from N={lo:,} to N={hi:,}:", *out]


def kernel_note(kernel: Any) -> str:
    """One header line saying where the kernel column comes from, or that it is absent."""
    if kernel is None:
        return ("# kernel column absent: no --kernel-tree given (pass a kernel tree to time its "
                "own drm_gpuvm.c side by side in this run)")
    b = kernel.build
    return (f"# kernel = {b.tree}/drivers/gpu/drm/drm_gpuvm.c compiled here ({b.library.name}, "
            "cc -O2), M as the core, timed in C in this run; x vs kernel = kernel ns / "
            "our ns (> 1: faster than the kernel)")


def run(args: argparse.Namespace) -> int:
    sizes = parse_sizes(args.sizes)
    workloads = parse_workloads(args.workloads)
    m = _count(args.m, "--m")
    ref_m = _count(args.ref_m, "--ref-m", minimum=0)
    info = machine_info()
    repeat = _count(args.repeat, "--repeat")
    json_out = json_target(args)
    if json_out:
        # Check the output first, so a bad path does not cost a whole benchmark run;
        # the file itself is only written (atomically) at the end.
        if os.path.isdir(json_out):
            raise IsADirectoryError(errno.EISDIR, "is a directory", json_out)
        check_writable(json_out)
    log = OutputLog()
    try:
        rc = _run(args, info, sizes, workloads, m, ref_m, repeat, json_out, log)
        json_note(args)
        return rc
    except KeyboardInterrupt:
        print(f"pysvm bench: interrupted; {log.report()}", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, info: dict[str, Any], sizes: list[int],
         workloads: list[int], m: int, ref_m: int, repeat: int, json_out: str | None,
         log: OutputLog) -> int:
    # With the JSON on standard output, the human-readable table goes to stderr.
    text = sys.stderr if json_out and is_stdio(json_out) else sys.stdout
    kernel = None
    if args.kernel_tree is not None:
        from gpuvm_core.kernel import KernelTreeError, load_oracle

        try:
            kernel = load_oracle(args.kernel_tree)
        except KernelTreeError as e:
            raise CliError(str(e).replace("\n", " | ")) from None
        info["kernel_tree"] = str(kernel.build.tree)
        info["kernel_build_seconds"] = kernel.build.seconds
    rows = measure(sizes, workloads, m, ref_m, progress=not args.no_progress, clock=args.clock,
                   repeat=repeat, kernel=kernel)
    memory: list[MemoryReport] = []
    if not args.no_memory:
        for impl in ("core", "reference") if ref_m else ("core",):
            for n in sizes:
                memory.append(memory_per_mapping(impl, n, m=min(m, 200_000) if impl == "core"
                                                 else min(ref_m, 200_000)))
    core = "compiled core" if info["compiled_core"] else \
        "NOTE: gpuvm_core.GpuVm is still the pure-Python reference (core not built)"
    print(f"# {core}; Python {info['python']}, numpy {info['numpy']}, Cython {info['cython']}, "
          f"{info['cpu']}; load average {info['load']}", file=text)
    print(f"# core paths: M={m:,} requests; reference: M={ref_m:,} requests (single path); "
          f"clock: {args.clock}; best of {repeat}", file=text)
    print(kernel_note(kernel), file=text)
    print(format_table(rows, args.markdown), file=text)
    growth = growth_lines(rows)
    if growth:
        print(file=text)
        print("\n".join(growth), file=text)
    if memory:
        print(file=text)
        print("Bytes per mapping (RSS: resident-set growth of a fresh process / VAs; "
              "nbytes: the core's own exact count):", file=text)
        print(format_memory(memory, args.markdown), file=text)
    if json_out:
        with atomic_text(json_out, log=log) as fh:
            json.dump({"machine": info, "m": m, "ref_m": ref_m, "clock": args.clock,
                       "repeat": repeat,
                       "rows": [asdict(r) for r in rows],
                       "bytes_per_mapping": {impl: {str(r.n): asdict(r) for r in memory
                                                    if r.impl == impl}
                                             for impl in sorted({r.impl for r in memory})}},
                      fh, indent=1)
            fh.write("\n")
    return 0
