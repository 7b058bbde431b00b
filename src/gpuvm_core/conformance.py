"""Replay kernel-recorded split/merge vectors against an implementation.

The vector format: JSON Lines, one case per line, each a VM and a list of
steps with the kernel's result, op list and resulting state (the bundled set
was recorded from the kernel's drm_gpuvm.c; :mod:`gpuvm_core.recorder`
records the same format from any kernel tree, see docs/kernel-oracle.md).
:func:`iter_cases` reads and checks a file
(a malformed file is bad input: :class:`ValueError` naming the line and what
is wrong; :func:`read_records` and :func:`checked` are its two halves);
:func:`run_case` replays one case and returns the first mismatch (or a
pass); :func:`run_file` aggregates per category.

Kernel counterparts: each step is issued through the implementation's
``sm_map_ops_create`` / ``madvise_ops_create`` / ``sm_unmap_ops_create``
(drm_gpuvm_sm_map_ops_create / drm_gpuvm_madvise_ops_create /
drm_gpuvm_sm_unmap_ops_create) and applied with ``apply`` (drm_gpuva_map /
_remap / _unmap), the way the vectors' recorder drove the kernel code.
``prefetch`` steps (written by :mod:`gpuvm_core.fuzz`, not by the kernel
recorder) go through ``prefetch_ops_create`` (drm_gpuvm_prefetch_ops_create)
and are not applied.
"""

from __future__ import annotations

import errno
import gzip
import json
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from ._common import GpuvmError

__all__ = ["CaseResult", "Report", "bundled_vectors", "category_of", "check_case", "checked",
           "iter_cases", "read_records", "run_case", "run_file"]

VmFactory = Callable[..., Any]

CALLS = ("map", "unmap", "madvise", "prefetch")
_U64_MAX = (1 << 64) - 1


def bundled_vectors() -> Path:
    """The public vector set (gzipped) shipped with the package.

    An installed wheel carries it as ``gpuvm_core/data/gpuvm-public.jsonl.gz``
    (CMakeLists.txt installs it from ``tests/data/``); a source checkout or an
    editable install reads ``tests/data/`` directly.
    """
    here = Path(__file__).resolve()
    name = "gpuvm-public.jsonl.gz"
    candidates = [here.parent / "data" / name]
    candidates += [base / "tests" / "data" / name for base in (here.parents[2], Path.cwd())]
    for p in candidates:
        if p.exists():
            return p
    raise FileNotFoundError(f"bundled vectors {name} not found (looked in "
                            f"{', '.join(str(c.parent) for c in candidates)})")


def read_records(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, parsed JSON)`` for each non-blank line of a ``.jsonl[.gz]`` file.

    A line that is not JSON raises :class:`ValueError` (``FILE:LINE: not JSON:
    ...``), a corrupt compressed stream :class:`ValueError` too. Errors of the
    file itself propagate unchanged for the caller to word: OSError (missing,
    a directory, ``gzip.BadGzipFile``), :class:`UnicodeDecodeError` (not
    text), :class:`EOFError` (truncated gzip).
    """
    p = Path(path)
    opener: Callable[..., Any] = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8") as fh:
        try:
            for lineno, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{p}:{lineno}: not JSON: {e.msg}") from None
        except zlib.error as e:
            raise ValueError(f"{p}: corrupt compressed data ({e})") from None


def checked(path: str | Path, lineno: int, case: Any) -> dict[str, Any]:
    """``case`` if it is a well-formed vector case, else :class:`ValueError` naming the line."""
    problem = check_case(case)
    if problem:
        raise ValueError(f"{path}:{lineno}: not a vector case: {problem}")
    return cast(dict[str, Any], case)


def iter_cases(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the cases of a ``.jsonl`` or ``.jsonl.gz`` vector file, each checked.

    Errors as :func:`read_records`, plus :class:`ValueError` (one line:
    ``FILE:LINE: not a vector case: ...``) for a case with missing or
    mistyped fields (see :func:`check_case`).
    """
    for lineno, case in read_records(path):
        yield checked(path, lineno, case)


def _is_u64(v: object) -> bool:
    return type(v) is int and 0 <= v <= _U64_MAX


def check_case(case: object) -> str | None:
    """Return what is wrong with ``case`` as a vector case, or ``None`` if it is well formed.

    Checks the structure of the format (fields present, integers in u64,
    ``call`` known); it does not judge the recorded ops and states, which is
    what replaying does.
    """
    if not isinstance(case, dict):
        return f"expected a JSON object, got {type(case).__name__}"
    cid = case.get("id")
    if not isinstance(cid, str):
        return "missing or non-string field 'id'"
    vm = case.get("vm")
    if not isinstance(vm, dict):
        return f"case {cid}: missing field 'vm' (an object)"
    for k in ("start", "range", "reserve_addr", "reserve_range"):
        if not _is_u64(vm.get(k)):
            return f"case {cid}: vm.{k} missing or not an unsigned 64-bit integer"
    steps = case.get("steps")
    if not isinstance(steps, list):
        return f"case {cid}: missing field 'steps' (a list)"
    for i, st in enumerate(steps):
        where = f"case {cid} step {i}"
        if not isinstance(st, dict):
            return f"{where}: expected an object"
        if st.get("call") not in CALLS:
            return f"{where}: 'call' must be one of {', '.join(CALLS)}, got {st.get('call')!r}"
        for k in ("addr", "range", "offset"):
            if not _is_u64(st.get(k)):
                return f"{where}: {k} missing or not an unsigned 64-bit integer"
        if "obj" not in st or not (st["obj"] is None or type(st["obj"]) is int):
            return f"{where}: obj missing or neither null nor an integer"
        if not isinstance(st.get("result"), str):
            return f"{where}: missing field 'result' (\"ok\" or an errno name)"
        if not isinstance(st.get("ops"), list):
            return f"{where}: missing field 'ops' (a list)"
        if not isinstance(st.get("state"), list):
            return f"{where}: missing field 'state' (a list)"
        if type(st.get("apply_failures", 0)) is not int:
            return f"{where}: apply_failures is not an integer"
    return None


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
    """Outcome of one case: ``ok``, or the first mismatching ``step`` and why."""

    case_id: str
    ok: bool
    step: int | None = None
    message: str = ""


@dataclass
class Report:
    """Pass/fail counts per category and the failing cases."""

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


def _differs(what: str, ours: object, kernel: object) -> str:
    return f"{what}:\n  ours:   {ours}\n  kernel: {kernel}"


def run_case(case: dict[str, Any], factory: VmFactory) -> CaseResult:
    """Replay one case; return the first mismatch (steps continue from our own state).

    ``factory(start, range, reserve_addr=..., reserve_range=...)`` builds the
    VM (``GpuVm`` or ``RefGpuVm``; kernel: drm_gpuvm_init).
    """
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
            elif call == "prefetch":
                ops = vm.prefetch_ops_create(step["addr"], step["range"])
            else:
                return CaseResult(cid, False, i, f"unknown call {call!r}")
            result = "ok"
        except GpuvmError as e:
            ops, result = None, errno.errorcode.get(e.errno or 0, str(e.errno))
        if result != step["result"]:
            return CaseResult(cid, False, i, f"result {result} != kernel's {step['result']}")
        if ops is not None:
            got = [op.as_dict() for op in ops]
            if got != step["ops"]:
                return CaseResult(cid, False, i, _differs("ops differ", got, step["ops"]))
            failures = vm.apply(ops) if call != "prefetch" else 0
            if failures != step.get("apply_failures", 0):
                return CaseResult(cid, False, i, f"apply_failures {failures} != "
                                                 f"{step.get('apply_failures', 0)}")
        st = _state(vm)
        if st != step["state"]:
            return CaseResult(cid, False, i, _differs("state differs", st, step["state"]))
    return CaseResult(cid, True)


def _case_id(case: object) -> str:
    cid = case.get("id") if isinstance(case, dict) else None
    return cid if isinstance(cid, str) else "?"


def run_file(cases: Iterable[dict[str, Any]], factory: VmFactory,
             progress: Callable[[int], None] | None = None) -> Report:
    """Replay every case; ``progress`` is called with 1 after each."""
    rep = Report()
    for case in cases:
        try:
            res = run_case(case, factory)
        except Exception as e:  # a crash is a failure of that case, not of the run
            res = CaseResult(_case_id(case), False, None, f"{type(e).__name__}: {e}")
        rep.add(_case_id(case), res)
        if progress is not None:
            progress(1)
    return rep
