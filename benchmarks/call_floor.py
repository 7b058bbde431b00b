"""The Python call floor of the single-request path, beside the kernel and the core.

    python -m benchmarks.call_floor --kernel-tree ~/src/linux --sizes 1e3 --clock cpu

The single-request path (``gpuvm_core.workloads.run_single``: one Python call
per request to ``*_ops_create`` plus one to ``apply``, or one ``find_first``
for W4) pays the interpreter for every request before any work starts: the
loop step, the method lookup and vectorcall, reading the integer arguments,
making and dropping the returned object. The kernel oracle's loop runs in C
and pays none of it. This tool measures that floor directly: it compiles
``_call_floor.pyx`` (a do-nothing stand-in VM with the same methods, built the
same way as the core: def methods of a final cdef class, same arguments, same
kind of return value, answers fed from the real core) and times
``run_single`` over it, in the same process and with the same clock as the
kernel's C loop and the core's single path, each the fastest of ``--repeat``
loops. Parity with the kernel through this path needs floor + the core's own
work <= the kernel's time; where the floor alone reaches the kernel's time,
no single-call implementation can. Needs Cython and a C compiler (it builds
the stand-in at run time, cached under the kernel oracle's cache root).

Kernel: the timed kernel loop is drivers/gpu/drm/drm_gpuvm.c via
:mod:`gpuvm_core.kernel` (drm_gpuvm_*_ops_create() + drm_gpuva_map/remap/unmap
+ drm_gpuva_ops_free(), drm_gpuva_find_first() for W4).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import gpuvm_core
from gpuvm_core.kernel.build import cache_root, find_compiler
from gpuvm_core.workloads import (
    CLOCKS,
    WORKLOADS,
    Requests,
    new_vm,
    run_single,
    time_kernel,
    time_single,
    workload,
)

PYX = Path(__file__).resolve().parent / "_call_floor.pyx"
CFLAGS = ["-O3", "-shared", "-fPIC", "-fno-strict-aliasing"]


def build_floor(force: bool = False) -> Any:
    """Compile ``_call_floor.pyx`` (cached by source, Python and compiler) and import it."""
    cc = find_compiler()
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    key = hashlib.sha256(PYX.read_bytes() + f"{sys.version}\0{cc}\0{CFLAGS}".encode())
    out_dir = cache_root().parent / "call-floor" / key.hexdigest()[:16]
    lib = out_dir / f"_call_floor{suffix}"
    if force or not lib.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
            c_file = Path(tmp) / "_call_floor.c"
            subprocess.run([sys.executable, "-m", "cython", "-3", "-X", "boundscheck=False",
                            "-X", "wraparound=False", str(PYX), "-o", str(c_file)], check=True)
            tmp_lib = Path(tmp) / lib.name
            subprocess.run([cc, *CFLAGS, "-I", sysconfig.get_paths()["include"], str(c_file),
                            "-o", str(tmp_lib)], check=True)
            os.replace(tmp_lib, lib)
    spec = importlib.util.spec_from_file_location("_call_floor", lib)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def answers(w: int, n: int, reqs: Requests) -> list[int]:
    """What the real core answers per request (op count; W4: 1 on a hit), untimed."""
    vm = new_vm(gpuvm_core.GpuVm, n, w)
    if w == 4:
        found = vm.find_first_batch(reqs.addr, reqs.range)["found"]
        return [int(x) for x in found.astype(np.int64).tolist()]
    counts = vm.requests_batch(reqs.codes, reqs.addr, reqs.range, reqs.obj, reqs.offset)
    return [int(x) for x in counts.tolist()]


@dataclass(frozen=True)
class FloorRow:
    n: int
    workload: str
    kernel_ns: float | None
    floor_ns: float
    single_ns: float


def measure(floor_mod: Any, sizes: list[int], ws: list[int], m: int, clock: str, repeat: int,
            kernel: Any = None) -> list[FloorRow]:
    """Kernel, call floor and core single per (N, W), each the fastest of ``repeat`` loops."""
    now = CLOCKS[clock]
    rows = []
    for n in sizes:
        for w in ws:
            reqs = workload(w, n, m)
            ans = answers(w, n, reqs)
            expect = sum(ans)
            k_ns = None
            if kernel is not None:
                k_ns = min(time_kernel(kernel, w, n, m, clock).ns_per_request
                           for _ in range(repeat))
            floors, singles = [], []
            for _ in range(repeat):
                fvm = floor_mod.FloorVm(ans)
                t0 = now()
                got = run_single(fvm, reqs)
                floors.append((now() - t0) * 1e9 / m)
                if got != expect:
                    raise AssertionError(f"floor loop W{w} N={n}: {got} != {expect}")
                t = time_single(gpuvm_core.GpuVm, w, n, m, clock)
                if t.result != expect:
                    raise AssertionError(f"core single W{w} N={n}: {t.result} != {expect}")
                singles.append(t.ns_per_request)
            rows.append(FloorRow(n, f"W{w} {WORKLOADS[w]}", k_ns, min(floors), min(singles)))
    return rows


def format_rows(rows: list[FloorRow]) -> list[str]:
    out = ["| N | workload | kernel (C loop) | call floor | core single | single - floor "
           "| floor / kernel | single / kernel |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        k = "-" if r.kernel_ns is None else f"{r.kernel_ns:,.0f}"
        fk = "-" if r.kernel_ns is None else f"{r.floor_ns / r.kernel_ns:.2f}"
        sk = "-" if r.kernel_ns is None else f"{r.single_ns / r.kernel_ns:.2f}"
        out.append(f"| {r.n:,} | {r.workload} | {k} | {r.floor_ns:,.0f} | {r.single_ns:,.0f} "
                   f"| {r.single_ns - r.floor_ns:,.0f} | {fk} | {sk} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.call_floor", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1e3", help="comma-separated N values (default 1e3)")
    ap.add_argument("--workloads", default="1,2,3,4", help="subset, e.g. 3,4")
    ap.add_argument("--m", type=int, default=200_000, help="requests per loop (default 200000)")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    ap.add_argument("--repeat", type=int, default=3, help="keep the fastest of this many loops")
    ap.add_argument("--kernel-tree", metavar="DIR", default=None,
                    help="also time DIR's own drivers/gpu/drm/drm_gpuvm.c in its C loop")
    args = ap.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    ws = [int(s.strip().lstrip("Ww")) for s in args.workloads.split(",") if s.strip()]
    if any(w not in WORKLOADS for w in ws) or args.m < 1 or args.repeat < 1 or not sizes:
        ap.error("workloads are 1-4; --m and --repeat must be >= 1; give at least one size")
    kernel = None
    if args.kernel_tree is not None:
        from gpuvm_core.kernel import load_oracle

        kernel = load_oracle(args.kernel_tree)
    floor_mod = build_floor()
    load = os.getloadavg()
    rows = measure(floor_mod, sizes, ws, args.m, args.clock, args.repeat, kernel)
    print(f"# ns/request, clock {args.clock}, M = {args.m:,}, fastest of {args.repeat}; load "
          f"average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    print("\n".join(format_rows(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
