"""``pysvm igt``: run IGT's Xe SVM suites (generated as scenarios) on the model."""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from pysvm.cli.common import CliError
from pysvm.igt import EXPECTED_COUNTS, PROFILES, SUITES, Result, run_subtest, select

HELP = """\
Run the subtests of three igt-gpu-tools suites - xe_exec_system_allocator,
xe_madvise and xe_multigpu_svm - on the model. Each subtest is generated from
the suite's own tables as trace events plus the checks IGT makes (every value
written is read back, the errnos IGT expects, faults that must fail); one the
model cannot express is listed as "skipped: REASON" (docs/igt.md).

--list prints one line per subtest (suite, IGT name, ported or skipped: REASON)
and per-suite counts. A run prints failures, per-suite counts and a final line
"N passed, M failed, K skipped" (one result per subtest and profile); the exit
status is 1 if any subtest failed.

example:
  pysvm igt --list
  pysvm igt --suite xe_madvise
  pysvm igt -k 'partial-*' --profile newest --json
  pysvm igt -k once-malloc --record traces/   # then: pysvm replay traces/...jsonl
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register the ``igt`` sub-command."""
    p: argparse.ArgumentParser = sub.add_parser(
        "igt", help="run IGT's Xe SVM suites on the model",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", action="append", choices=sorted(SUITES), metavar="SUITE",
                   help=f"only this suite (repeatable; one of {', '.join(SUITES)})")
    p.add_argument("-k", action="append", dest="patterns", metavar="PATTERN",
                   help="only subtests whose name contains PATTERN, or matches it as a "
                        "glob when it has * ? or [ (repeatable: any may match)")
    p.add_argument("--profile", choices=(*PROFILES, "all"), default="all",
                   help="kernel profile to model (default: all = each in turn)")
    p.add_argument("--list", action="store_true", help="list the subtests, run nothing")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per result (or per subtest with --list), then a "
                        "summary object")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="run subtests in N worker processes (default 1; output order is "
                        "unchanged)")
    p.add_argument("--record", metavar="DIR",
                   help="write each run subtest's trace to DIR/SUITE/NAME@PROFILE.jsonl")
    return p


def _counts_line(c: collections.Counter[str]) -> str:
    return f"{c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped"


def _list(subtests: list[Any], as_json: bool) -> int:
    per: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for st in subtests:
        kind = "ported" if st.build is not None else "skipped"
        per[st.suite][kind] += 1
        if as_json:
            print(json.dumps({"suite": st.suite, "name": st.name, "status": kind,
                              **({"reason": st.skip} if st.skip else {}),
                              "profiles": list(st.profiles)}))
        else:
            print(f"{st.suite} {st.name} {st.status}")
    total: collections.Counter[str] = collections.Counter()
    for suite, c in per.items():
        total.update(c)
        n = c["ported"] + c["skipped"]
        line = {"suite": suite, "subtests": n, "ported": c["ported"], "skipped": c["skipped"]}
        if as_json:
            print(json.dumps(line))
        else:
            print(f"# {suite}: {n} subtests ({EXPECTED_COUNTS[suite]} in the source), "
                  f"{c['ported']} ported, {c['skipped']} skipped")
    n = total["ported"] + total["skipped"]
    if as_json:
        print(json.dumps({"summary": {"subtests": n, "ported": total["ported"],
                                      "skipped": total["skipped"]}}))
    else:
        print(f"# total: {n} subtests, {total['ported']} ported, {total['skipped']} skipped")
    return 0


def _one(job: tuple[str, str, str, str | None]) -> Result:
    """Run one (suite, name, profile) in this process (the worker side of --jobs)."""
    suite, name, prof, record = job
    st = _BY_KEY.get((suite, name))
    if st is None:
        _BY_KEY.update({(s.suite, s.name): s for s in select(None, None)})
        st = _BY_KEY[(suite, name)]
    return run_subtest(st, prof, record)


_BY_KEY: dict[tuple[str, str], Any] = {}


def _results(jobs: list[tuple[str, str, str, str | None]], n: int) -> Iterator[Result]:
    if n == 1:
        yield from map(_one, jobs)
        return
    with concurrent.futures.ProcessPoolExecutor(max_workers=n) as pool:
        yield from pool.map(_one, jobs, chunksize=4)


def run(args: argparse.Namespace) -> int:
    """List or run the selected subtests; 1 if any failed."""
    subtests = select(args.suite, args.patterns)
    if not subtests:

        raise CliError("no subtest matches the given --suite/-k selection")
    if args.list:
        return _list(subtests, args.json)
    if args.record is not None and os.path.exists(args.record) \
            and not os.path.isdir(args.record):

        raise CliError(f"--record {args.record!r} exists and is not a directory")
    if not 1 <= args.jobs <= 64:

        raise CliError(f"--jobs must be in [1, 64], got {args.jobs}")
    profiles = PROFILES if args.profile == "all" else (args.profile,)
    jobs = [(st.suite, st.name, prof, args.record) for st in subtests for prof in profiles]
    per: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    total: collections.Counter[str] = collections.Counter()
    t0 = time.perf_counter()
    try:
        _run_jobs(args, jobs, per, total)
    except KeyboardInterrupt:
        # Each trace is written to a temporary name and renamed when whole, so what
        # is in the directory is complete; say how much that is.
        done = sum(total.values())
        kept = (f"; the traces of finished subtests are in {args.record}"
                if args.record is not None and done else "; no trace was written"
                if args.record is not None else "")
        print(f"pysvm igt: interrupted after {done} of {len(jobs)} run(s){kept}",
              file=sys.stderr)
        return 130
    elapsed = time.perf_counter() - t0
    if args.json:
        print(json.dumps({"summary": {"suites": {s: dict(c) for s, c in per.items()},
                                      "passed": total["passed"], "failed": total["failed"],
                                      "skipped": total["skipped"],
                                      "seconds": round(elapsed, 2)}}))
    else:
        for suite, c in per.items():
            print(f"# {suite}: {_counts_line(c)}")
        print(_counts_line(total))
    sys.stdout.flush()
    return 1 if total["failed"] else 0


def _run_jobs(args: argparse.Namespace, jobs: list[tuple[str, str, str, str | None]],
              per: dict[str, collections.Counter[str]],
              total: collections.Counter[str]) -> None:
    for r in _results(jobs, args.jobs):
        per[r.suite][r.status] += 1
        total[r.status] += 1
        if args.json:
            print(json.dumps(r.as_json()), flush=False)
        elif r.status == "failed":
            print(f"FAIL {r.suite} {r.name} [{r.profile}]: {r.message}")
        elif r.counters:
            ctr = ", ".join(f"{k}={v}" for k, v in r.counters.items() if v)
            print(f"bench {r.suite} {r.name} [{r.profile}] {r.seconds:.2f}s: {ctr}")
