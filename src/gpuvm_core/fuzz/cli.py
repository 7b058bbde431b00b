"""``python -m gpuvm_core.fuzz``: the command line of the drm_gpuvm differential fuzz.

Kernel: none (test infrastructure); see :mod:`gpuvm_core.fuzz`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from .oracle import VmFactory, short_tb
from .runner import Summary, case_rng, handle_failure, parse_seed, run
from .target import GpuvmTarget

__all__ = ["build_parser", "count_arg", "main", "replay_corpus", "seconds_arg",
           "shrink_seconds_arg"]


def _core_factory(impl: str) -> VmFactory:
    from .. import GpuVm, RefGpuVm

    return GpuVm if impl == "core" else RefGpuVm


@dataclass
class _GpuvmTargetFactory:
    """Picklable target factory for worker processes."""

    impl: str
    fault: int
    #: A kernel tree whose own drm_gpuvm.c joins as the oracle (built once, cached).
    kernel_tree: str | None = None

    def __call__(self) -> GpuvmTarget:
        if self.fault:
            _set_fault(self.fault)
        kernel = None
        if self.kernel_tree is not None:
            from ..kernel import load_oracle

            kernel = load_oracle(self.kernel_tree)
        return GpuvmTarget(system=_core_factory(self.impl), kernel=kernel)


def _set_fault(n: int) -> None:
    import importlib

    importlib.import_module("gpuvm_core._core")._debug_set_fault(n)


def replay_corpus(corpus: Path, system: VmFactory) -> tuple[int, list[str]]:
    """Replay every ``*.jsonl`` in ``corpus`` on ``system``; (cases, failure texts)."""
    from ..conformance import iter_cases, run_case

    n, bad = 0, []
    for path in sorted(corpus.glob("*.jsonl")):
        try:
            cases = list(iter_cases(path))
        except ValueError as e:  # a malformed corpus file is a failure, named
            bad.append(str(e))
            continue
        for case in cases:
            n += 1
            try:
                res = run_case(case, system)
            except Exception as e:  # noqa: BLE001 - a crash fails that case, not the run
                bad.append(f"{path}: {case.get('id', '?')}: crash: {short_tb(e)}")
                continue
            if not res.ok:
                bad.append(f"{path}: {res.case_id} step {res.step}: {res.message}")
    return n, bad


def _run_one(target: Any, seed: int, index: int, out_dir: Path, shrink_seconds: float
             ) -> Summary:
    """Case ``index`` of ``seed`` alone (``--case``): the same case the runner would make."""
    t0 = time.monotonic()
    case = target.make_case(case_rng(seed, index))
    summary = Summary(seed=seed, cases=1, steps=target.case_steps(case))
    f = target.run_case(case)
    if f is not None:
        summary.found.append(handle_failure(target, case, f, seed, index, str(out_dir),
                                             shrink_seconds))
    summary.failures = len(summary.found)
    summary.elapsed = time.monotonic() - t0
    return summary


def seconds_arg(text: str) -> float:
    """argparse type: a finite number of seconds > 0 (``nan``/``inf``/``0`` refused)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, not {text!r}")
    return v


def shrink_seconds_arg(text: str) -> float:
    """argparse type: a finite number of seconds >= 0 (0 = do not shrink)."""
    if text.strip() in ("0", "0.0"):
        return 0.0
    return seconds_arg(text)


def count_arg(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gpuvm_core.fuzz",
        description="Differential fuzzing of the compiled drm_gpuvm core against the "
                    "pure-Python reference. Exit 0: no mismatch; 1: a mismatch (shrunk and "
                    "written as a vector line); 2: bad arguments.",
        epilog="example: python -m gpuvm_core.fuzz --seconds 60 --seed 1234 --jobs 2")
    p.add_argument("--seconds", type=seconds_arg, default=10.0,
                   help="time budget (default 10)")
    p.add_argument("--seed", default="0",
                   help="int, 0x-hex, or a commit id (hashed); same seed = same cases")
    p.add_argument("--jobs", type=count_arg, default=1, help="worker processes (seed-sharded)")
    p.add_argument("--corpus", type=Path, default=None,
                   help="regression corpus dir (e.g. tests/fuzz/corpus): every *.jsonl in it is "
                        "replayed first, and a new failure is written there")
    p.add_argument("--out", type=Path, default=None,
                   help="where a failure is written (default: the --corpus dir, else "
                        "./fuzz-failures/)")
    p.add_argument("--impl", choices=["core", "reference"], default="core",
                   help="system under test (default core; 'reference' checks the harness)")
    p.add_argument("--kernel-tree", metavar="DIR", default=None,
                   help="add the kernel tree's own drm_gpuvm.c (compiled in userspace, e.g. "
                        "from a kernel checkout) as a third implementation and the oracle: "
                        "the system and the reference are each checked against it")
    p.add_argument("--max-cases", type=count_arg, default=None, help="stop after N cases")
    p.add_argument("--case", type=int, default=None, metavar="I",
                   help="run only case I of the seed (as printed by a failure: 'FAIL seed K "
                        "case I'); reproduces it at once, whatever --seconds/--jobs")
    p.add_argument("--shrink-seconds", type=shrink_seconds_arg, default=30.0,
                   help="time budget for shrinking a failure (default 30)")
    p.add_argument("--debug-fault", type=int, default=0,
                   help="plant the core's debug fault N (only the debug build of the core, "
                        "GPUVM_DEBUG=1 pip install -e ., has the planted bugs)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.case is not None and args.case < 0:
        parser.error("--case must be >= 0")
    seed = parse_seed(args.seed)
    if args.debug_fault:
        from .. import GpuVm, RefGpuVm

        core = sys.modules.get("gpuvm_core._core")
        if GpuVm is cast(Any, RefGpuVm) or core is None or not hasattr(core, "_debug_set_fault"):
            parser.error("--debug-fault needs the compiled core's _debug_set_fault hook")
        if not getattr(core, "DEBUG_BUILD", False):
            parser.error("--debug-fault: the planted bugs exist only in the debug build of the "
                         "core (this one is a release build); build it with GPUVM_DEBUG=1 pip "
                         "install -e . in a venv of its own (docs/fuzzing.md)")
        if args.impl != "core":
            parser.error("--debug-fault only applies to --impl core")
    from .. import GpuVm, RefGpuVm

    impl_note = ("core = reference alias: the compiled core is not built"
                 if args.impl == "core" and GpuVm is cast(Any, RefGpuVm) else args.impl)
    budget = (f"case {args.case} only" if args.case is not None
              else f"{args.seconds:g} s, {args.jobs} job(s)")
    print(f"gpuvm fuzz: seed {seed} (from {args.seed!r}), {budget}, system: {impl_note}",
          flush=True)
    kernel_tree = None
    if args.kernel_tree is not None:
        from ..kernel import KernelTreeError, load_oracle

        try:
            oracle = load_oracle(args.kernel_tree)
        except KernelTreeError as e:
            print(f"python -m gpuvm_core.fuzz: error: {e}", file=sys.stderr)
            return 2
        built = oracle.build
        how = "cached build" if built.cached else f"built in {built.seconds:.1f} s"
        print(f"kernel oracle: {built.tree} ({how}); system and reference are checked "
              "against it", flush=True)
        kernel_tree = str(built.tree)
    out_dir = args.out or args.corpus or Path("fuzz-failures")
    try:
        if args.debug_fault:  # before the corpus replay too (workers set it again)
            _set_fault(args.debug_fault)
        if args.corpus is not None and args.corpus.is_dir():
            n, bad = replay_corpus(args.corpus, _core_factory(args.impl))
            print(f"corpus: {n} cases replayed from {args.corpus}, {len(bad)} failed", flush=True)
            for b in bad:
                print(f"  FAIL {b}")
            if bad:
                return 1
        factory = _GpuvmTargetFactory(args.impl, args.debug_fault, kernel_tree)
        if args.case is not None:
            summary = _run_one(factory(), seed, args.case, out_dir, args.shrink_seconds)
        else:
            summary = run(factory, seconds=args.seconds, seed=seed, jobs=args.jobs,
                          out_dir=out_dir, shrink_seconds=args.shrink_seconds,
                          max_cases=args.max_cases, progress=None if args.quiet else sys.stderr)
    finally:
        if args.debug_fault:
            _set_fault(0)
    for f in summary.found:
        print(f"FAIL seed {f['seed']} case {f['case']}: {f['failure']}")
        print(f"  shrunk to {f['shrunk_steps']} step(s): {f['shrunk']}")
        print(f"  rerun:   python -m gpuvm_core.fuzz --seed {f['seed']} --case {f['case']}"
              + (f" --impl {args.impl}" if args.impl != "core" else "")
              + (f" --debug-fault {args.debug_fault}" if args.debug_fault else "")
              + (f" --kernel-tree {kernel_tree}" if kernel_tree else ""))
        if "path" in f:
            print(f"  written: {f['path']}")
            print(f"  replay:  pysvm conformance {f['path']} --impl both"
                  + ("   (its fields are the kernel's)" if kernel_tree else ""))
            print(f"  vector:  {Path(f['path']).read_text(encoding='utf-8').strip()}")
    print(summary.line(), flush=True)
    return 1 if summary.failures else 0
