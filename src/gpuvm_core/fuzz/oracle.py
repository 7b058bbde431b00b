"""Judging a fuzz case: the failure record, issuing steps, and writing a case as a vector.

:class:`Failure` is what a target reports when the system under test and an
oracle (the pure-Python reference, or the kernel's own drm_gpuvm.c compiled
by :mod:`gpuvm_core.kernel`) disagree. :func:`record_vector` /
:func:`write_failure` turn a case into one line of the vector format (the
oracle's result, ops and state per step, via :mod:`gpuvm_core.recorder`), so
``pysvm conformance FILE`` replays it: it passes on the oracle and fails on
the buggy system.

Kernel: drm_gpuvm_sm_map_ops_create(), drm_gpuvm_sm_unmap_ops_create(),
drm_gpuvm_madvise_ops_create(), drm_gpuvm_prefetch_ops_create(),
drm_gpuva_map()/_remap()/_unmap() (drivers/gpu/drm/drm_gpuvm.c).
"""

from __future__ import annotations

import errno
import hashlib
import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..recorder import record_case
from .generator import Case

__all__ = ["Failure", "VmFactory", "errname", "issue", "record_vector", "short_tb", "state_of",
           "vm_kwargs", "write_failure"]

VmFactory = Callable[..., Any]


@dataclass
class Failure:
    """A mismatch between the system under test and the model."""

    step: int  #: index of the step that went wrong (-1: VM construction)
    kind: str  #: result | ops | apply | state | len | check | crash | model
    message: str

    def __str__(self) -> str:
        return f"step {self.step}: {self.kind}: {self.message}"



def errname(e: BaseException) -> str:
    """The errno name of a refusal (``EINVAL``), as the vectors write it."""
    n = getattr(e, "errno", None)
    return errno.errorcode.get(n or 0, str(n))


def vm_kwargs(case: Case) -> dict[str, int]:
    v = case["vm"]
    return {"start": v["start"], "range": v["range"], "reserve_addr": v["reserve_addr"],
            "reserve_range": v["reserve_range"]}



def issue(vm: Any, step: dict[str, Any]) -> Any:
    """Issue one step's request to ``vm``; its op list (refusals raise GpuvmError)."""
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



def state_of(vm: Any) -> list[list[Any]]:
    """Every VA of ``vm`` as ``[addr, range, obj, offset]``, in tree order."""
    return [[va.addr, va.range, va.obj, va.offset] for va in vm]



def short_tb(e: BaseException) -> str:
    """``Type: message at file:line`` of an exception, for a failure text."""
    tb = traceback.extract_tb(e.__traceback__)
    where = f" at {tb[-1].filename}:{tb[-1].lineno}" if tb else ""
    return f"{type(e).__name__}: {e}{where}"


def record_vector(case: Case, model: VmFactory, case_id: str,
                  take_warnings: Callable[[], int] | None = None) -> dict[str, Any]:
    """The vector-format record of ``case`` with the model's result/ops/state per step.

    A ``prefetch`` step (not part of the kernel-recorded format) is written as
    ``{"call": "prefetch", ..., "ops": [prefetch ops]}``.

    Kernel: the same recorder as the shipped vectors (:mod:`gpuvm_core.recorder`).
    """
    return record_case({"id": case_id, "vm": case["vm"], "steps": case["steps"]}, model,
                       take_warnings)


def write_failure(case: Case, model: VmFactory, out_dir: str | Path, tag: str,
                  take_warnings: Callable[[], int] | None = None) -> Path:
    """Write ``case`` as ONE vector line to ``out_dir/fuzz-<tag>.jsonl``; return the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"fuzz-{tag}.jsonl"
    serial = int(hashlib.sha256(tag.encode()).hexdigest()[:6], 16)
    line = record_vector(case, model, f"fuzz-shrunk-{tag}-{serial:08d}", take_warnings)
    path.write_text(json.dumps(line, separators=(",", ":")) + "\n", encoding="utf-8")
    return path
