"""Record split/merge vectors: issue request streams to an implementation, write what it did.

A *request stream* is a case without outcomes: ``{"id", "vm", "steps"}`` with
each step's ``call``, ``addr``, ``range``, ``obj`` and ``offset``. Recording
it through a VM factory (the compiled kernel oracle of
:mod:`gpuvm_core.kernel`, or any implementation with the core's API) issues
every step, applies the returned ops, and writes the vector format the
conformance replay reads (:mod:`gpuvm_core.conformance`): per step
``result`` (``"ok"`` or the errno name), ``ops`` in the implementation's
order, ``state`` after applying, ``apply_failures`` when an insert was
refused, and per case ``warnings`` when the kernel code emitted a WARN.
Keys are written in the order of the shipped vector set and with the same
separators, so a recording of the same streams from the same kernel is
byte-identical to it.

Kernel: the requests go through drm_gpuvm_sm_map_ops_create(),
drm_gpuvm_madvise_ops_create(), drm_gpuvm_sm_unmap_ops_create() (and
drm_gpuvm_prefetch_ops_create() for ``prefetch`` steps, which are not
applied), then drm_gpuva_map() / _remap() / _unmap().
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ._common import GpuvmError

__all__ = ["dumps", "iter_recorded", "record_case", "request_stream", "write_records"]

VmFactory = Callable[..., Any]


def request_stream(case: dict[str, Any]) -> dict[str, Any]:
    """The requests of a vector case (outcomes dropped): what a recorder replays."""
    steps = [{"call": s["call"], "addr": s["addr"], "range": s["range"],
              "obj": s["obj"] if s["call"] in ("map", "madvise") else None,
              "offset": s["offset"] if s["call"] in ("map", "madvise") else 0}
             for s in case["steps"]]
    return {"id": case["id"], "vm": dict(case["vm"]), "steps": steps}


def _issue(vm: Any, s: dict[str, Any]) -> Any:
    call = s["call"]
    if call == "map":
        return vm.sm_map_ops_create(s["addr"], s["range"], s["obj"], s["offset"])
    if call == "madvise":
        return vm.madvise_ops_create(s["addr"], s["range"], s["obj"], s["offset"])
    if call == "unmap":
        return vm.sm_unmap_ops_create(s["addr"], s["range"])
    if call == "prefetch":
        return vm.prefetch_ops_create(s["addr"], s["range"])
    raise ValueError(f"unknown call {call!r}")


def record_case(stream: dict[str, Any], factory: VmFactory,
                take_warnings: Callable[[], int] | None = None) -> dict[str, Any]:
    """Record one request stream through ``factory``; the vector-format case.

    ``take_warnings`` (e.g. :meth:`KernelOracle.take_warnings`) returns and
    resets the kernel WARN count; it is called before and after the case.
    """
    if take_warnings is not None:
        take_warnings()
    v = stream["vm"]
    vm = factory(v["start"], v["range"], reserve_addr=v["reserve_addr"],
                 reserve_range=v["reserve_range"])
    steps = []
    for s in stream["steps"]:
        call = s["call"]
        rec: dict[str, Any] = {"call": call, "addr": s["addr"], "range": s["range"],
                               "obj": s["obj"] if call in ("map", "madvise") else None,
                               "offset": s["offset"] if call in ("map", "madvise") else 0}
        failed = 0
        try:
            ops = _issue(vm, rec)
            rec["result"], rec["ops"] = "ok", [op.as_dict() for op in ops]
            failed = vm.apply(ops) if call != "prefetch" else 0
        except GpuvmError as e:
            rec["result"], rec["ops"] = errno.errorcode.get(e.errno or 0, str(e.errno)), []
        rec["state"] = [[va.addr, va.range, va.obj, va.offset] for va in vm]
        if failed:
            rec["apply_failures"] = failed
        steps.append(rec)
    out: dict[str, Any] = {"id": stream["id"], "vm": dict(stream["vm"]), "steps": steps}
    warned = take_warnings() if take_warnings is not None else 0
    if warned:
        out["warnings"] = warned
    return out


def dumps(case: dict[str, Any]) -> str:
    """One vector line (compact separators, as the shipped set)."""
    return json.dumps(case, separators=(",", ":"))


def write_records(path: str | Path, cases: Iterable[dict[str, Any]]) -> int:
    """Write ``cases`` as JSON Lines (gzipped if ``path`` ends in ``.gz``); the count.

    Written to a temporary file next to ``path`` and renamed over it, so a
    crash or an error never leaves a half-written file.
    """
    import gzip

    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent or Path("."))
    n = 0
    try:
        with os.fdopen(fd, "wb") as raw:
            if p.suffix == ".gz":
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                    for case in cases:
                        gz.write((dumps(case) + "\n").encode())
                        n += 1
            else:
                for case in cases:
                    raw.write((dumps(case) + "\n").encode())
                    n += 1
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def iter_recorded(streams: Iterable[dict[str, Any]], factory: VmFactory,
                  take_warnings: Callable[[], int] | None = None) -> Iterator[dict[str, Any]]:
    """:func:`record_case` over many streams, lazily."""
    for s in streams:
        yield record_case(s, factory, take_warnings)
