"""Replay kernel-recorded split/merge vectors against an implementation.

The vector format is described in ``shared/vectors/README.md``: JSON Lines,
one case per line, each a VM and a list of steps with the kernel's result,
op list and resulting state. :func:`run_case` replays one case and returns
the first mismatch (or ``None``); :func:`run_file` aggregates per category.
"""

from __future__ import annotations

import errno
import gzip
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._common import GpuvmError

__all__ = ["CaseResult", "Report", "bundled_vectors", "category_of", "iter_cases", "run_case",
           "run_file"]

VmFactory = Callable[..., Any]


def bundled_vectors() -> Path:
    """The public vector set shipped with the package's tests (gzipped)."""
    here = Path(__file__).resolve()
    for base in (here.parents[2], Path.cwd()):
        p = base / "tests" / "data" / "gpuvm-public.jsonl.gz"
        if p.exists():
            return p
    raise FileNotFoundError("bundled vectors tests/data/gpuvm-public.jsonl.gz not found")


def iter_cases(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the cases of a ``.jsonl`` or ``.jsonl.gz`` vector file."""
    p = Path(path)
    opener: Callable[..., Any] = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{p}:{lineno}: not JSON: {e.msg}") from None


_CAT = re.compile(r"^[^-]+-(.*?)-\d+$")


def category_of(case_id: str) -> str:
    """``pub-doc-map-05-asdrawn-00153`` -> ``doc-map``; ``pub-random-long-7`` -> ``random-long``."""
    m = _CAT.match(case_id)
    body = m.group(1) if m else case_id
    parts = body.split("-")
    if parts[0] in ("doc", "touch", "invalid", "reserved"):
        return "-".join(parts[:2])
    if parts[0] in ("random", "madvise", "contig"):
        return "-".join(parts[:2])
    return parts[0]


@dataclass
class CaseResult:
    case_id: str
    ok: bool
    step: int | None = None
    message: str = ""


@dataclass
class Report:
    per_category: dict[str, list[int]] = field(default_factory=dict)  # cat -> [passed, failed]
    failures: list[CaseResult] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(p for p, _ in self.per_category.values())

    @property
    def failed(self) -> int:
        return sum(f for _, f in self.per_category.values())

    def add(self, case_id: str, res: CaseResult) -> None:
        row = self.per_category.setdefault(category_of(case_id), [0, 0])
        row[0 if res.ok else 1] += 1
        if not res.ok:
            self.failures.append(res)


def _state(vm: Any) -> list[list[Any]]:
    return [[va.addr, va.range, va.obj, va.offset] for va in vm]


def run_case(case: dict[str, Any], factory: VmFactory) -> CaseResult:
    """Replay one case; return the first mismatch (steps continue from our own state)."""
    cid = case.get("id", "?")
    v = case["vm"]
    vm = factory(v["start"], v["range"], reserve_addr=v["reserve_addr"],
                 reserve_range=v["reserve_range"])
    for i, step in enumerate(case["steps"]):
        call = step["call"]
        try:
            if call == "map":
                ops = vm.sm_map_ops_create(step["addr"], step["range"], step["obj"], step["offset"])
            elif call == "madvise":
                ops = vm.madvise_ops_create(step["addr"], step["range"], step["obj"],
                                            step["offset"])
            elif call == "unmap":
                ops = vm.sm_unmap_ops_create(step["addr"], step["range"])
            else:
                return CaseResult(cid, False, i, f"unknown call {call!r}")
            result = "ok"
        except GpuvmError as e:
            ops, result = None, errno.errorcode.get(e.errno or 0, str(e.errno))
        if result != step["result"]:
            return CaseResult(cid, False, i, f"result {result} != kernel's {step['result']}")
        if ops is None:
            continue
        got = [op.as_dict() for op in ops]
        if got != step["ops"]:
            return CaseResult(cid, False, i, f"ops differ:\n  ours:   {got}\n  kernel: {step['ops']}")
        failures = vm.apply(ops)
        if failures != step.get("apply_failures", 0):
            return CaseResult(cid, False, i, f"apply_failures {failures} != "
                                             f"{step.get('apply_failures', 0)}")
        st = _state(vm)
        if st != step["state"]:
            return CaseResult(cid, False, i, f"state differs:\n  ours:   {st}\n  kernel: {step['state']}")
    return CaseResult(cid, True)


def run_file(cases: Iterable[dict[str, Any]], factory: VmFactory,
             progress: Callable[[int], None] | None = None) -> Report:
    """Replay every case; ``progress`` is called with 1 after each."""
    rep = Report()
    for case in cases:
        try:
            res = run_case(case, factory)
        except Exception as e:  # a crash is a failure of that case, not of the run
            res = CaseResult(case.get("id", "?"), False, None, f"{type(e).__name__}: {e}")
        rep.add(case.get("id", "?"), res)
        if progress is not None:
            progress(1)
    return rep
