"""Differential fuzz harness: the compiled core against the pure-Python reference.

Overview
--------
A *case* is a small VA space (8-64 pages, so requests overlap all the time)
and a dense sequence of requests: map, unmap, madvise and prefetch, with and
without objects, offsets that often continue an existing mapping (so ``keep``
and adjacent-object layouts come up), a kernel-reserved node now and then,
VMs at address 0 and at the top of the u64 space (some ending exactly at
2^64), unaligned addresses, and invalid requests (``addr + range``
overflowing, reaching outside the VM, covering the reserved node). Every
request goes to both the *system under test* (default :class:`GpuVm`) and the
*model* (:class:`RefGpuVm`), and after each one we compare

* the result (ok, or the errno of the refusal),
* the op list, op by op (``as_dict()``),
* the number of inserts the tree refused while applying the ops,
* the state (every VA as ``(addr, range, obj, offset)``, in order) and ``len``,
* and the system's own ``check()`` (tree invariants), when it has one;

then the whole case runs again through the system's ``requests_batch`` (the
batch path) on a fresh VM: per-request op counts, refusals with their index,
and the final state must match the model too (failure kind ``batch``).

Zero-length requests are accepted by the kernel and leave a VA whose
inclusive last address is below its start. The kernel-recorded vectors only
ever use them as the last step of a case, so most of our zero-length steps are
last too; a few are placed mid-sequence. That is sound because the kernel's
interval-tree search (include/linux/interval_tree_generic.h,
``_subtree_search``) returns the leftmost node in tree order with
``start <= last_q`` and ``start_q <= last`` for *any* node shapes (its
argument only uses the in-order sort by start and the ``subtree_last``
maximum), which is exactly what the reference computes.

On a mismatch the case is shrunk (steps dropped, numbers simplified while
the same kind of mismatch remains) and written as one line in the vector
format of ``shared/vectors/README.md``, the kernel fields (``result``,
``ops``, ``state``) recorded from the *reference*. ``pysvm conformance FILE``
then replays it: it passes on the reference and fails on the buggy system.

The runner (:func:`run`) knows nothing about GPUVM: it drives any
:class:`Target` (``make_case(rng)`` / ``run_case(case)``), so an SVM-level
target can reuse seeds, sharding, progress and the summary line.

Regression corpus: ``tests/fuzz/corpus/*.jsonl`` holds vector lines of the
same format (hand-picked edge cases and every failure found once); the test
suite replays each of them on both implementations. ``--corpus DIR`` replays
``DIR`` before fuzzing and writes a new failure into it.

Other entry points over the same generator: the hypothesis property and
``RuleBasedStateMachine`` in ``tests/fuzz`` (profiles via
``HYPOTHESIS_PROFILE``), and the atheris target
``tests/fuzz/atheris_target.py`` (the property's ``fuzz_one_input``).
``.ci/run`` fuzzes for 60 s with a seed derived from the commit. Commands,
the sanitizer build and how to add a target: ``docs/fuzzing.md``.

Reproducibility: case ``i`` of seed ``K`` is generated from
``random.Random(f"{K}:{i}")``; worker ``j`` of ``J`` runs cases ``j, j+J, ...``.
A run is time-bounded, so a longer run covers a superset of a shorter one's
cases.

Kernel: drivers/gpu/drm/drm_gpuvm.c -- drm_gpuvm_sm_map_ops_create(),
drm_gpuvm_sm_unmap_ops_create(), drm_gpuvm_madvise_ops_create(),
drm_gpuvm_prefetch_ops_create(), drm_gpuva_map()/_remap()/_unmap().
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import math
import multiprocessing as mp
import random
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO, TypeVar, cast

from ._common import GpuvmError

__all__ = [
    "Chooser",
    "Failure",
    "GpuvmTarget",
    "Summary",
    "Target",
    "main",
    "parse_seed",
    "record_vector",
    "run",
    "write_failure",
]

MASK = (1 << 64) - 1
TOP = 1 << 64

Case = dict[str, Any]
VmFactory = Callable[..., Any]
C = TypeVar("C")


# ----------------------------------------------------------------------------
# The target protocol (shared with other fuzz targets, e.g. an SVM-level one)


class Chooser(Protocol):
    """The randomness a target draws from.

    :class:`random.Random` satisfies it, and so does a wrapper around
    hypothesis' ``draw`` (see ``tests/fuzz``), so one generator serves the
    seeded runner, hypothesis and atheris.
    """

    def randint(self, a: int, b: int) -> int: ...
    def choice(self, seq: Sequence[Any]) -> Any: ...


@dataclass
class Failure:
    """A mismatch between the system under test and the model."""

    step: int  #: index of the step that went wrong (-1: VM construction)
    kind: str  #: result | ops | apply | state | len | check | crash | model
    message: str

    def __str__(self) -> str:
        return f"step {self.step}: {self.kind}: {self.message}"


class Target(Protocol):
    """Something the runner can fuzz.

    Required: ``make_case(rng)`` (a fresh case from a :class:`Chooser`) and
    ``run_case(case)`` (``None`` when the system agrees with the model, else a
    :class:`Failure`). Optional, looked up with ``getattr``: ``case_steps(case)``
    (for the step count), ``shrink(case, failure, deadline)`` returning
    ``(case, failure)``, and ``save(case, failure, out_dir, tag)`` returning
    the path written.

    Kernel: none (test infrastructure).
    """

    name: str

    def make_case(self, rng: Chooser) -> Any: ...
    def run_case(self, case: Any) -> Failure | None: ...


# ----------------------------------------------------------------------------
# The GPUVM target


def _errname(e: BaseException) -> str:
    n = getattr(e, "errno", None)
    return errno.errorcode.get(n or 0, str(n))


def _vm_kwargs(case: Case) -> dict[str, int]:
    v = case["vm"]
    return {"start": v["start"], "range": v["range"], "reserve_addr": v["reserve_addr"],
            "reserve_range": v["reserve_range"]}


def _issue(vm: Any, step: dict[str, Any]) -> Any:
    call = step["call"]
    if call == "map":
        return vm.sm_map_ops_create(step["addr"], step["range"], step["obj"], step["offset"])
    if call == "madvise":
        return vm.madvise_ops_create(step["addr"], step["range"], step["obj"], step["offset"])
    if call == "unmap":
        return vm.sm_unmap_ops_create(step["addr"], step["range"])
    if call == "prefetch":
        return vm.prefetch_ops_create(step["addr"], step["range"])
    raise ValueError(f"unknown call {call!r}")


def _state(vm: Any) -> list[list[Any]]:
    return [[va.addr, va.range, va.obj, va.offset] for va in vm]


def _short_tb(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    where = f" at {tb[-1].filename}:{tb[-1].lineno}" if tb else ""
    return f"{type(e).__name__}: {e}{where}"


@dataclass
class GpuvmTarget:
    """Differential target: ``system`` vs ``model`` on drm_gpuvm request sequences.

    Parameters
    ----------
    system, model
        VM factories called as ``factory(start, range, reserve_addr=, reserve_range=)``.
        ``system`` defaults to :class:`gpuvm_core.GpuVm`, ``model`` to
        :class:`gpuvm_core.RefGpuVm`. Inject any factory (a patched class, a
        core with a planted fault) to test the harness itself.
    max_steps
        Longest request sequence generated.

    Kernel: drivers/gpu/drm/drm_gpuvm.c (the split/merge walkers and the
    ops-applying helpers).
    """

    system: VmFactory | None = None
    model: VmFactory | None = None
    max_steps: int = 30
    name: str = "gpuvm"
    #: Also replay every case through ``requests_batch`` (when the system has it).
    batch: bool = True

    def __post_init__(self) -> None:
        if self.system is None or self.model is None:
            from . import GpuVm, RefGpuVm

            self.system = self.system or GpuVm
            self.model = self.model or RefGpuVm

    # -- generation ---------------------------------------------------------

    def make_case(self, rng: Chooser) -> Case:
        """A fresh dense case (VM + steps) drawn from ``rng``."""
        unit = rng.choice((4096, 4096, 4096, 0x10000, 1))
        pages = rng.randint(8, 64)
        size = pages * unit
        where = rng.randint(0, 9)
        if where <= 3:
            start = 0
        elif where <= 5:
            start = unit * rng.randint(1, 16)
        elif where == 6:
            start = TOP - size  # the VM ends exactly at 2^64 (its end wraps to 0)
        else:
            start = TOP - size - unit * rng.randint(1, 4)
        reserve_addr = reserve_range = 0
        if rng.randint(0, 9) < 2:
            kind = rng.randint(0, 4)
            rpages = rng.randint(1, 4)
            if kind == 0:  # inside
                reserve_addr = start + unit * rng.randint(0, pages - rpages)
            elif kind == 1:  # at the start
                reserve_addr = start
            elif kind == 2:  # at the end
                reserve_addr = start + size - rpages * unit
            elif kind == 3:  # outside, just above the VM (or wrapping past 2^64)
                reserve_addr = (start + size) & MASK
            else:  # straddling the VM's start
                reserve_addr = (start - unit) & MASK
            reserve_range = rpages * unit
        obj_base = {o: rng.randint(0, 255) * 0x100000 for o in (1, 2, 3)}
        ctx = (start, pages, unit, obj_base)
        n = rng.randint(1, self.max_steps)
        steps = [self._make_step(rng, ctx) for _ in range(n)]
        if rng.randint(0, 9) == 0:  # zero-length: usually the last step (see module doc)
            at = len(steps) - 1 if rng.randint(0, 3) else rng.randint(0, len(steps) - 1)
            steps[at] = self._zero_step(rng, ctx)
        return {"vm": {"start": start, "range": size, "reserve_addr": reserve_addr,
                       "reserve_range": reserve_range},
                "unit": unit, "steps": steps}

    @staticmethod
    def _obj_offset(rng: Chooser, addr: int, ctx: tuple[int, int, int, dict[int, int]]
                    ) -> tuple[int | None, int]:
        start, pages, unit, obj_base = ctx
        if rng.randint(0, 9) < 3:
            return None, (0 if rng.randint(0, 3) else unit * rng.randint(0, pages))
        obj = rng.randint(1, 3)
        if rng.randint(0, 9) < 6:  # continues the object's linear layout: merges possible
            return obj, (obj_base[obj] + addr - start) & MASK
        return obj, unit * rng.randint(0, 2 * pages)

    def _make_step(self, rng: Chooser, ctx: tuple[int, int, int, dict[int, int]]
                   ) -> dict[str, Any]:
        start, pages, unit, _ = ctx
        r = rng.randint(0, 99)
        call = "map" if r < 47 else "unmap" if r < 67 else "madvise" if r < 92 else "prefetch"
        if rng.randint(0, 24) == 0:
            addr, range_ = self._invalid_span(rng, ctx)
        else:
            edge = rng.randint(0, 11) == 0  # may start or end just outside the VM
            a = rng.randint(-1, pages) if edge else rng.randint(0, pages - 1)
            longest = pages + 2 if edge else pages - a
            length = rng.randint(1, min(longest, rng.choice((2, 4, longest))))
            addr = (start + a * unit) & MASK
            range_ = length * unit
            if unit > 1 and rng.randint(0, 19) == 0:
                addr = (addr + rng.randint(1, unit - 1)) & MASK
        obj, offset = (None, 0)
        if call in ("map", "madvise"):
            obj, offset = self._obj_offset(rng, addr, ctx)
        return {"call": call, "addr": addr, "range": range_, "obj": obj, "offset": offset}

    @staticmethod
    def _invalid_span(rng: Chooser, ctx: tuple[int, int, int, dict[int, int]]
                      ) -> tuple[int, int]:
        start, pages, unit, _ = ctx
        k = rng.randint(0, 4)
        if k == 0:  # addr + range overflows u64
            return (MASK - unit * rng.randint(0, 3)) & MASK, unit * rng.randint(2, 5)
        if k == 1:  # addr + range == 2^64 exactly
            a = start + unit * rng.randint(0, pages - 1)
            return a, TOP - a
        if k == 2:  # huge range
            return start, MASK - rng.randint(0, 1)
        if k == 3:  # entirely below / above the VM
            return (start - unit * rng.randint(1, 4)) & MASK, unit
        return (start + unit * (pages + rng.randint(0, 3))) & MASK, unit * rng.randint(1, 3)

    def _zero_step(self, rng: Chooser, ctx: tuple[int, int, int, dict[int, int]]
                   ) -> dict[str, Any]:
        start, pages, unit, _ = ctx
        call = rng.choice(("map", "unmap", "madvise"))
        addr = 0 if rng.randint(0, 4) == 0 else start + unit * rng.randint(0, pages)
        if unit > 1 and rng.randint(0, 3) == 0:
            addr += rng.randint(1, unit - 1)
        obj, offset = (None, 0)
        if call != "unmap":
            obj, offset = self._obj_offset(rng, addr & MASK, ctx)
        return {"call": call, "addr": addr & MASK, "range": 0, "obj": obj, "offset": offset}

    # -- running ------------------------------------------------------------

    def case_steps(self, case: Case) -> int:
        return len(case["steps"])

    def run_case(self, case: Case) -> Failure | None:
        """Replay ``case`` on system and model; the first disagreement or ``None``."""
        assert self.system is not None and self.model is not None
        kw = _vm_kwargs(case)
        try:
            ref = self.model(kw.pop("start"), kw.pop("range"), **kw)
        except Exception as e:  # noqa: BLE001 - a model crash is reported, not raised
            return Failure(-1, "model", _short_tb(e))
        kw = _vm_kwargs(case)
        try:
            sut = self.system(kw.pop("start"), kw.pop("range"), **kw)
        except Exception as e:  # noqa: BLE001
            return Failure(-1, "crash", f"constructing the VM: {_short_tb(e)}")
        checker = getattr(sut, "check", None)
        for i, step in enumerate(case["steps"]):
            f = self._step(i, step, ref, sut, checker)
            if f is not None:
                return f
        if self.batch and hasattr(sut, "requests_batch"):
            return self._batch_case(case)
        return None

    def _batch_case(self, case: Case) -> Failure | None:
        """The same steps through ``requests_batch`` on a fresh system VM.

        The batch path (C loop, GIL released, no op objects) must give the
        per-request op counts, the refusals (errno and ``.index``) and the
        state of the request-by-request model. After a refusal the batch is
        re-issued from the next request, as a caller would. Prefetch steps are
        left out (they change nothing and have no batch form).
        """
        import numpy as np

        from . import REQ_MADVISE, REQ_MAP, REQ_UNMAP

        assert self.system is not None and self.model is not None
        kinds = {"map": REQ_MAP, "unmap": REQ_UNMAP, "madvise": REQ_MADVISE}
        steps = [(i, st) for i, st in enumerate(case["steps"]) if st["call"] in kinds]
        kw = _vm_kwargs(case)
        ref = self.model(kw.pop("start"), kw.pop("range"), **kw)
        want: list[tuple[str, int]] = []
        for _, st in steps:
            try:
                ops = _issue(ref, st)
            except GpuvmError as e:
                want.append((_errname(e), 0))
                continue
            want.append(("ok", len(ops)))
            ref.apply(ops)
        kw = _vm_kwargs(case)
        sut = self.system(kw.pop("start"), kw.pop("range"), **kw)

        def representable(st: dict[str, Any]) -> bool:
            return (all(0 <= st[k] <= MASK for k in ("addr", "range", "offset"))
                    and (st["obj"] is None or 0 <= st["obj"] < 1 << 63))

        pos = 0
        try:
            while pos < len(steps):
                i0, st0 = steps[pos]
                if not representable(st0):
                    # Malformed input (a value outside u64): the batch refuses the whole
                    # call with the element's index and changes nothing.
                    before = _state(sut)
                    try:
                        sut.requests_batch([kinds[st0["call"]]], [st0["addr"]], [st0["range"]],
                                           [-1 if st0["obj"] is None else st0["obj"]],
                                           [st0["offset"]])
                        return Failure(i0, "batch", "requests_batch accepted a value outside "
                                       "u64")
                    except GpuvmError as e:
                        if e.errno != errno.EINVAL or e.index != 0 or _state(sut) != before:
                            return Failure(i0, "batch", f"requests_batch on a value outside "
                                           f"u64: {e} (index {e.index}), state changed: "
                                           f"{_state(sut) != before}")
                    if want[pos][0] != "EINVAL":
                        return Failure(i0, "batch", f"reference gave {want[pos][0]} for a "
                                       "value outside u64")
                    pos += 1
                    continue
                end = pos
                while end < len(steps) and representable(steps[end][1]):
                    end += 1
                rest = [st for _, st in steps[pos:end]]
                cols = (np.array([kinds[st["call"]] for st in rest], dtype=np.uint8),
                        np.array([st["addr"] for st in rest], dtype=np.uint64),
                        np.array([st["range"] for st in rest], dtype=np.uint64),
                        np.array([-1 if st["obj"] is None else st["obj"] for st in rest],
                                 dtype=np.int64),
                        np.array([st["offset"] for st in rest], dtype=np.uint64))
                try:
                    counts = sut.requests_batch(*cols).tolist()
                    stop, res = len(rest), None
                except GpuvmError as e:
                    if e.index is None or not 0 <= e.index < len(rest):
                        return Failure(steps[pos][0], "batch",
                                       f"requests_batch refused with index {e.index}: {e}")
                    stop, res, counts = e.index, _errname(e), None
                for k in range(stop):
                    got = want[pos + k][1] if counts is None else counts[k]
                    if want[pos + k] != ("ok", got):
                        return Failure(steps[pos + k][0], "batch",
                                       f"requests_batch request {pos + k}: ok with {got} ops, "
                                       f"reference {want[pos + k]}")
                if res is not None and want[pos + stop][0] != res:
                    return Failure(steps[pos + stop][0], "batch",
                                   f"requests_batch refused request {pos + stop} with {res}, "
                                   f"reference {want[pos + stop][0]}")
                pos += stop + (res is not None)
            got_st, want_st = _state(sut), _state(ref)
            if got_st != want_st:
                return Failure(steps[-1][0], "batch", f"state after requests_batch differs:\n"
                               f"  system:    {got_st}\n  reference: {want_st}")
            checker = getattr(sut, "check", None)
            if checker is not None:
                checker()
        except Exception as e:  # noqa: BLE001 - AssertionError from check() or a crash
            return Failure(steps[min(pos, len(steps) - 1)][0] if steps else -1, "batch",
                           _short_tb(e))
        return None

    def _step(self, i: int, step: dict[str, Any], ref: Any, sut: Any,
              checker: Callable[[], Any] | None) -> Failure | None:
        try:
            ref_ops = _issue(ref, step)
            ref_res = "ok"
        except GpuvmError as e:
            ref_ops, ref_res = None, _errname(e)
        except Exception as e:  # noqa: BLE001
            return Failure(i, "model", _short_tb(e))
        try:
            sut_ops = _issue(sut, step)
            sut_res = "ok"
        except GpuvmError as e:
            sut_ops, sut_res = None, _errname(e)
        except Exception as e:  # noqa: BLE001
            return Failure(i, "crash", f"{step['call']}: {_short_tb(e)}")
        if sut_res != ref_res:
            return Failure(i, "result", f"{step['call']} gave {sut_res}, reference {ref_res}")
        try:
            if ref_ops is not None:
                want = [op.as_dict() for op in ref_ops]
                got = [op.as_dict() for op in sut_ops]
                if got != want:
                    return Failure(i, "ops", f"{step['call']} ops differ:\n  system:    {got}\n"
                                             f"  reference: {want}")
                if step["call"] != "prefetch":
                    ref_fail = ref.apply(ref_ops)
                    sut_fail = sut.apply(sut_ops)
                    if sut_fail != ref_fail:
                        return Failure(i, "apply", f"refused inserts {sut_fail}, "
                                                   f"reference {ref_fail}")
            got_st, want_st = _state(sut), _state(ref)
            if got_st != want_st:
                return Failure(i, "state", f"state differs:\n  system:    {got_st}\n"
                                           f"  reference: {want_st}")
            if len(sut) != len(ref):
                return Failure(i, "len", f"len {len(sut)}, reference {len(ref)}")
        except Exception as e:  # noqa: BLE001
            return Failure(i, "crash", _short_tb(e))
        if checker is not None:
            try:
                checker()
            except Exception as e:  # noqa: BLE001 - AssertionError or worse
                return Failure(i, "check", f"vm.check() after {step['call']}: {_short_tb(e)}")
        return None

    # -- shrinking ----------------------------------------------------------

    def shrink(self, case: Case, failure: Failure, deadline: float) -> tuple[Case, Failure]:
        """Smallest case still failing with the same kind of mismatch (greedy, time-bounded)."""
        best, best_f = _copy_case(case), failure
        best["steps"] = best["steps"][: failure.step + 1] if failure.step >= 0 else []

        def attempt(c: Case) -> bool:
            nonlocal best, best_f
            if time.monotonic() > deadline:
                return False
            f = self.run_case(c)
            if f is not None and f.kind == failure.kind:
                best, best_f = c, f
                best["steps"] = best["steps"][: f.step + 1] if f.step >= 0 else []
                return True
            return False

        changed = True
        while changed and time.monotonic() < deadline:
            changed = False
            # 1. drop chunks of steps, big chunks first (ddmin-style)
            size = max(1, len(best["steps"]) // 2)
            while size >= 1:
                j = 0
                while j < len(best["steps"]):
                    c = _copy_case(best)
                    del c["steps"][j:j + size]
                    if c["steps"] and attempt(c):
                        changed = True
                    else:
                        j += size
                size //= 2
            # 2. drop the reserved node
            if best["vm"]["reserve_range"]:
                c = _copy_case(best)
                c["vm"]["reserve_addr"] = c["vm"]["reserve_range"] = 0
                changed |= attempt(c)
            # 3. simplify numbers in each step
            for j in range(len(best["steps"])):
                for cand in _simpler_steps(best["steps"][j], best["vm"]["start"],
                                           best.get("unit", 1)):
                    c = _copy_case(best)
                    if j >= len(c["steps"]):
                        break
                    c["steps"][j] = cand
                    if attempt(c):
                        changed = True
        return best, best_f

    def save(self, case: Case, failure: Failure, out_dir: Path, tag: str) -> Path:
        """Write ``case`` as one vector line (fields from the model) and return its path."""
        assert self.model is not None
        return write_failure(case, self.model, out_dir, tag)


def _copy_case(case: Case) -> Case:
    return {**case, "vm": dict(case["vm"]), "steps": [dict(s) for s in case["steps"]]}


def _simpler_steps(step: dict[str, Any], start: int, unit: int) -> list[dict[str, Any]]:
    out = []
    if step["obj"] is not None:
        out.append({**step, "obj": None, "offset": 0})
        if step["obj"] != 1:
            out.append({**step, "obj": 1})
    if step["offset"]:
        out.append({**step, "offset": 0})
    if unit > 1 and step["addr"] % unit:
        out.append({**step, "addr": step["addr"] - step["addr"] % unit})
    if unit > 1 and step["range"] % unit:
        out.append({**step, "range": step["range"] - step["range"] % unit})
    if step["range"] > unit:
        out.append({**step, "range": max(unit, (step["range"] // 2) // unit * unit)})
        out.append({**step, "range": step["range"] - unit})
    if step["addr"] > start and step["addr"] - start < TOP // 2:
        out.append({**step, "addr": step["addr"] - unit})
    if step["call"] in ("madvise", "prefetch"):
        out.append({**step, "call": "map"})
    return out


# ----------------------------------------------------------------------------
# Writing a failure as a vector line


def record_vector(case: Case, model: VmFactory, case_id: str) -> dict[str, Any]:
    """The vector-format record of ``case`` with the model's result/ops/state per step.

    A ``prefetch`` step (not part of the kernel-recorded format) is written as
    ``{"call": "prefetch", ..., "ops": [prefetch ops]}``.

    Kernel: the recorder of ``shared/vectors`` (same fields, same order).
    """
    kw = _vm_kwargs(case)
    vm = model(kw.pop("start"), kw.pop("range"), **kw)
    steps = []
    for s in case["steps"]:
        rec: dict[str, Any] = {"call": s["call"], "addr": s["addr"], "range": s["range"],
                               "obj": s["obj"] if s["call"] in ("map", "madvise") else None,
                               "offset": s["offset"] if s["call"] in ("map", "madvise") else 0}
        try:
            ops = _issue(vm, rec)
            rec["result"] = "ok"
            rec["ops"] = [op.as_dict() for op in ops]
            failed = vm.apply(ops) if s["call"] != "prefetch" else 0
        except GpuvmError as e:
            rec["result"], rec["ops"], failed = _errname(e), [], 0
        rec["state"] = _state(vm)
        if failed:
            rec["apply_failures"] = failed
        steps.append(rec)
    return {"id": case_id, "vm": dict(case["vm"]), "steps": steps}


def write_failure(case: Case, model: VmFactory, out_dir: str | Path, tag: str) -> Path:
    """Write ``case`` as ONE vector line to ``out_dir/fuzz-<tag>.jsonl``; return the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"fuzz-{tag}.jsonl"
    serial = int(hashlib.sha256(tag.encode()).hexdigest()[:6], 16)
    line = record_vector(case, model, f"fuzz-shrunk-{tag}-{serial:08d}")
    path.write_text(json.dumps(line, separators=(",", ":")) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------
# The runner (target-agnostic)


def parse_seed(text: str | int) -> int:
    """A seed from the command line: decimal, ``0x`` hex, a bare hex commit id, or any text."""
    if isinstance(text, int):
        return text
    s = text.strip()
    try:
        return int(s, 0)
    except ValueError:
        pass
    try:
        return int(s, 16)
    except ValueError:
        return int(hashlib.sha256(s.encode()).hexdigest()[:16], 16)


@dataclass
class Summary:
    """What a run did."""

    seed: int
    cases: int = 0
    steps: int = 0
    failures: int = 0
    elapsed: float = 0.0
    #: one entry per failure: seed, case index, failure text, shrunk steps, written path
    found: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.cases} cases, {self.steps} steps, {self.failures} failures "
                f"(seed {self.seed}, {self.elapsed:.1f} s)")


def _case_rng(seed: int, index: int) -> random.Random:
    return random.Random(f"{seed}:{index}")


def _worker(target: Any, seed: int, shard: int, jobs: int, deadline: float,
            out_dir: str | None, shrink_seconds: float, max_cases: int | None,
            counters: Any, stop: Any) -> dict[str, Any]:
    """Run cases ``shard, shard+jobs, ...`` until the deadline, a stop, or a failure."""
    steps_of = getattr(target, "case_steps", None)
    cases = steps = 0
    index = shard
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not stop.is_set():
        if max_cases is not None and index >= max_cases:
            break
        case = target.make_case(_case_rng(seed, index))
        f = target.run_case(case)
        cases += 1
        n = steps_of(case) if steps_of else 1
        steps += n
        counters.add(1, n)
        if f is not None:
            stop.set()
            found.append(_handle_failure(target, case, f, seed, index, out_dir, shrink_seconds))
            break
        index += jobs
    return {"cases": cases, "steps": steps, "found": found}


def _handle_failure(target: Any, case: Any, f: Failure, seed: int, index: int,
                    out_dir: str | None, shrink_seconds: float) -> dict[str, Any]:
    info: dict[str, Any] = {"seed": seed, "case": index, "failure": str(f)}
    shrink = getattr(target, "shrink", None)
    small, small_f = case, f
    if shrink is not None:
        small, small_f = shrink(case, f, time.monotonic() + shrink_seconds)
    info["shrunk"] = str(small_f)
    steps_of = getattr(target, "case_steps", None)
    info["shrunk_steps"] = steps_of(small) if steps_of else None
    save = getattr(target, "save", None)
    if save is not None and out_dir is not None:
        info["path"] = str(save(small, small_f, Path(out_dir), f"{seed}-{index}"))
    return info


class _LocalCounters:
    def __init__(self) -> None:
        self.cases = 0
        self.steps = 0

    def add(self, c: int, s: int) -> None:
        self.cases += c
        self.steps += s

    def get(self) -> tuple[int, int]:
        return self.cases, self.steps


class _SharedCounters:
    def __init__(self, ctx: Any) -> None:
        self._c = ctx.Value("q", 0)
        self._s = ctx.Value("q", 0)

    def add(self, c: int, s: int) -> None:
        with self._c.get_lock():
            self._c.value += c
        with self._s.get_lock():
            self._s.value += s

    def get(self) -> tuple[int, int]:
        return int(self._c.value), int(self._s.value)


class _LocalStop:
    def __init__(self) -> None:
        self.flag = False

    def set(self) -> None:
        self.flag = True

    def is_set(self) -> bool:
        return self.flag


class _Progress:
    """A status line every ``every`` seconds (stderr; CI logs keep it)."""

    def __init__(self, counters: Any, seconds: float, every: float, stream: TextIO | None
                 ) -> None:
        self.counters, self.seconds, self.every, self.stream = counters, seconds, every, stream
        self.t0 = time.monotonic()
        self.next = self.t0 + every

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.stream is None or (now < self.next and not force):
            return
        self.next = now + self.every
        c, s = self.counters.get()
        print(f"fuzz: {now - self.t0:6.1f}/{self.seconds:.0f} s  {c} cases  {s} steps",
              file=self.stream, flush=True)


class _ProgressCounters(_LocalCounters):
    def __init__(self, progress_every: float, seconds: float, stream: TextIO | None) -> None:
        super().__init__()
        self.progress = _Progress(self, seconds, progress_every, stream)

    def add(self, c: int, s: int) -> None:
        super().add(c, s)
        self.progress.tick()


def _proc_main(target_factory: Callable[[], Any], seed: int, shard: int, jobs: int,
               deadline: float, out_dir: str | None, shrink_seconds: float,
               max_cases: int | None, counters: Any, stop: Any, results: Any) -> None:
    try:
        res = _worker(target_factory(), seed, shard, jobs, deadline, out_dir, shrink_seconds,
                      max_cases, counters, stop)
    except Exception as e:  # noqa: BLE001 - a harness crash must reach the parent
        res = {"cases": 0, "steps": 0, "found": [], "error": _short_tb(e)}
    results.put(res)


def run(target_factory: Callable[[], Any], *, seconds: float, seed: int, jobs: int = 1,
        out_dir: str | Path | None = "fuzz-failures", shrink_seconds: float = 30.0,
        max_cases: int | None = None, progress_every: float = 10.0,
        progress: TextIO | None = sys.stderr) -> Summary:
    """Fuzz ``target_factory()`` for ``seconds`` from ``seed``; stop at the first failure.

    Parameters
    ----------
    target_factory
        Builds the :class:`Target` (called once per worker process, so it
        need not be picklable when ``jobs == 1``; with ``jobs > 1`` workers
        are forked where the platform allows).
    seconds, seed, jobs
        Time budget, seed, and number of worker processes (seed-sharded).
    out_dir
        Where the shrunk failing case is written (``None``: not written).
    max_cases
        Stop after this many cases (case indices ``0 .. max_cases-1``).

    Kernel: none (test infrastructure).
    """
    t0 = time.monotonic()
    deadline = t0 + seconds
    summary = Summary(seed=seed)
    out = None if out_dir is None else str(out_dir)
    if jobs <= 1:
        counters = _ProgressCounters(progress_every, seconds, progress)
        res = _worker(target_factory(), seed, 0, 1, deadline, out, shrink_seconds, max_cases,
                      counters, _LocalStop())
        results = [res]
    else:
        methods = mp.get_all_start_methods()
        ctx: Any = mp.get_context("fork" if "fork" in methods else methods[0])
        shared = _SharedCounters(ctx)
        stop = ctx.Event()
        queue = ctx.Queue()
        procs = [ctx.Process(target=_proc_main, args=(target_factory, seed, j, jobs, deadline,
                                                      out, shrink_seconds, max_cases, shared,
                                                      stop, queue), daemon=True)
                 for j in range(jobs)]
        for p in procs:
            p.start()
        prog = _Progress(shared, seconds, progress_every, progress)
        results = []
        while len(results) < jobs:
            try:
                results.append(queue.get(timeout=1.0))
            except Exception:  # noqa: BLE001 - queue.Empty: just a tick
                if not any(p.is_alive() for p in procs) and queue.empty():
                    break
            prog.tick()
        for p in procs:
            p.join(timeout=5)
        if len(results) < jobs:
            raise RuntimeError(f"{jobs - len(results)} fuzz worker(s) died without a result")
    for r in results:
        if "error" in r:
            raise RuntimeError(f"fuzz worker crashed: {r['error']}")
        summary.cases += r["cases"]
        summary.steps += r["steps"]
        summary.found.extend(r["found"])
    summary.failures = len(summary.found)
    summary.elapsed = time.monotonic() - t0
    return summary


# ----------------------------------------------------------------------------
# Command line


def _core_factory(impl: str) -> VmFactory:
    from . import GpuVm, RefGpuVm

    return GpuVm if impl == "core" else RefGpuVm


@dataclass
class _GpuvmTargetFactory:
    """Picklable target factory for worker processes."""

    impl: str
    fault: int

    def __call__(self) -> GpuvmTarget:
        if self.fault:
            _set_fault(self.fault)
        return GpuvmTarget(system=_core_factory(self.impl))


def _set_fault(n: int) -> None:
    import importlib

    importlib.import_module("gpuvm_core._core")._debug_set_fault(n)


def replay_corpus(corpus: Path, system: VmFactory) -> tuple[int, list[str]]:
    """Replay every ``*.jsonl`` in ``corpus`` on ``system``; (cases, failure texts)."""
    from .conformance import iter_cases, run_case

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
                bad.append(f"{path}: {case.get('id', '?')}: crash: {_short_tb(e)}")
                continue
            if not res.ok:
                bad.append(f"{path}: {res.case_id} step {res.step}: {res.message}")
    return n, bad


def _run_one(target: Any, seed: int, index: int, out_dir: Path, shrink_seconds: float
             ) -> Summary:
    """Case ``index`` of ``seed`` alone (``--case``): the same case the runner would make."""
    t0 = time.monotonic()
    case = target.make_case(_case_rng(seed, index))
    summary = Summary(seed=seed, cases=1, steps=target.case_steps(case))
    f = target.run_case(case)
    if f is not None:
        summary.found.append(_handle_failure(target, case, f, seed, index, str(out_dir),
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
    p.add_argument("--max-cases", type=count_arg, default=None, help="stop after N cases")
    p.add_argument("--case", type=int, default=None, metavar="I",
                   help="run only case I of the seed (as printed by a failure: 'FAIL seed K "
                        "case I'); reproduces it at once, whatever --seconds/--jobs")
    p.add_argument("--shrink-seconds", type=shrink_seconds_arg, default=30.0,
                   help="time budget for shrinking a failure (default 30)")
    p.add_argument("--debug-fault", type=int, default=0,
                   help="plant the core's debug fault N (needs gpuvm_core._core._debug_set_fault)")
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
        from . import GpuVm, RefGpuVm

        core = sys.modules.get("gpuvm_core._core")
        if GpuVm is cast(Any, RefGpuVm) or core is None or not hasattr(core, "_debug_set_fault"):
            parser.error("--debug-fault needs the compiled core's _debug_set_fault hook")
        if args.impl != "core":
            parser.error("--debug-fault only applies to --impl core")
    from . import GpuVm, RefGpuVm

    impl_note = ("core = reference alias: the compiled core is not built"
                 if args.impl == "core" and GpuVm is cast(Any, RefGpuVm) else args.impl)
    budget = (f"case {args.case} only" if args.case is not None
              else f"{args.seconds:g} s, {args.jobs} job(s)")
    print(f"gpuvm fuzz: seed {seed} (from {args.seed!r}), {budget}, system: {impl_note}",
          flush=True)
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
        factory = _GpuvmTargetFactory(args.impl, args.debug_fault)
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
              + (f" --debug-fault {args.debug_fault}" if args.debug_fault else ""))
        if "path" in f:
            print(f"  written: {f['path']}")
            print(f"  replay:  pysvm conformance {f['path']} --impl both")
            print(f"  vector:  {Path(f['path']).read_text(encoding='utf-8').strip()}")
    print(summary.line(), flush=True)
    return 1 if summary.failures else 0


if __name__ == "__main__":
    # `python -m gpuvm_core.fuzz` runs this file as __main__, a second copy of
    # the module; hand over to the imported one so pickled names resolve.
    from gpuvm_core.fuzz import main as _main

    raise SystemExit(_main())
