"""The fuzz target protocol and the drm_gpuvm differential target.

:class:`GpuvmTarget` replays every generated case on the *system under
test* (default the compiled core), the *model* (the pure-Python reference)
and, when given, the *kernel* (the kernel tree's own drm_gpuvm.c compiled by
:mod:`gpuvm_core.kernel`), and compares after each request

* the result (ok, or the errno of the refusal),
* the op list, op by op (``as_dict()``),
* the number of inserts the tree refused while applying the ops,
* the state (every VA as ``(addr, range, obj, offset)``, in order) and ``len``,
* and the system's own ``check()`` (tree invariants), when it has one;

then the whole case runs again through the system's ``requests_batch`` (the
batch path) on a fresh VM, checked against the kernel when there is one,
else the model. With a kernel, the oracle of every comparison is the kernel:
the system and the model are each checked against it (failure kinds
``kernel-result``, ``kernel-ops``, ... name a model/kernel disagreement), and
a failure is written with the kernel's answers.

Kernel: drivers/gpu/drm/drm_gpuvm.c (the split/merge walkers and the
ops-applying helpers).
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .._common import GpuvmError
from .generator import MASK, Case, CaseGenerator, Chooser, copy_case, simpler_steps
from .oracle import (
    Failure,
    VmFactory,
    errname,
    issue,
    short_tb,
    state_of,
    vm_kwargs,
    write_failure,
)

__all__ = ["GpuvmTarget", "Target"]


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
    kernel
        Optional third implementation and then the oracle: a
        :class:`gpuvm_core.kernel.KernelOracle` (the kernel tree's own
        drm_gpuvm.c). The system and the model are each compared with it.
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

    #: A third implementation, the oracle when given: a factory of VMs running the
    #: kernel's own code (``gpuvm_core.kernel.load_oracle(tree)``).
    kernel: VmFactory | None = None

    def __post_init__(self) -> None:
        if self.system is None or self.model is None:
            from .. import GpuVm, RefGpuVm

            self.system = self.system or GpuVm
            self.model = self.model or RefGpuVm

    # -- generation ---------------------------------------------------------

    def make_case(self, rng: Chooser) -> Case:
        """A fresh dense case (VM + steps) drawn from ``rng`` (see :mod:`.generator`)."""
        return CaseGenerator(self.max_steps).make_case(rng)

    # -- running ------------------------------------------------------------

    def case_steps(self, case: Case) -> int:
        return len(case["steps"])

    def run_case(self, case: Case) -> Failure | None:
        """Replay ``case`` on system, model (and kernel); the first disagreement or ``None``."""
        assert self.system is not None and self.model is not None
        kw = vm_kwargs(case)
        try:
            ref = self.model(kw.pop("start"), kw.pop("range"), **kw)
        except Exception as e:  # noqa: BLE001 - a model crash is reported, not raised
            return Failure(-1, "model", short_tb(e))
        ker = None
        if self.kernel is not None:
            kw = vm_kwargs(case)
            try:
                ker = self.kernel(kw.pop("start"), kw.pop("range"), **kw)
            except Exception as e:  # noqa: BLE001
                return Failure(-1, "kernel", short_tb(e))
        kw = vm_kwargs(case)
        try:
            sut = self.system(kw.pop("start"), kw.pop("range"), **kw)
        except Exception as e:  # noqa: BLE001
            return Failure(-1, "crash", f"constructing the VM: {short_tb(e)}")
        checker = getattr(sut, "check", None)
        for i, step in enumerate(case["steps"]):
            f = self._step(i, step, ref, sut, checker, ker)
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

        from .. import REQ_MADVISE, REQ_MAP, REQ_UNMAP

        assert self.system is not None and self.model is not None
        kinds = {"map": REQ_MAP, "unmap": REQ_UNMAP, "madvise": REQ_MADVISE}
        steps = [(i, st) for i, st in enumerate(case["steps"]) if st["call"] in kinds]
        kw = vm_kwargs(case)
        oracle, oname = self._oracle()
        ref = oracle(kw.pop("start"), kw.pop("range"), **kw)
        want: list[tuple[str, int]] = []
        for _, st in steps:
            try:
                ops = issue(ref, st)
            except GpuvmError as e:
                want.append((errname(e), 0))
                continue
            want.append(("ok", len(ops)))
            ref.apply(ops)
        kw = vm_kwargs(case)
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
                    before = state_of(sut)
                    try:
                        sut.requests_batch([kinds[st0["call"]]], [st0["addr"]], [st0["range"]],
                                           [-1 if st0["obj"] is None else st0["obj"]],
                                           [st0["offset"]])
                        return Failure(i0, "batch", "requests_batch accepted a value outside "
                                       "u64")
                    except GpuvmError as e:
                        if e.errno != errno.EINVAL or e.index != 0 or state_of(sut) != before:
                            return Failure(i0, "batch", f"requests_batch on a value outside "
                                           f"u64: {e} (index {e.index}), state changed: "
                                           f"{state_of(sut) != before}")
                    if want[pos][0] != "EINVAL":
                        return Failure(i0, "batch", f"{oname} gave {want[pos][0]} for a "
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
                    stop, res, counts = e.index, errname(e), None
                for k in range(stop):
                    got = want[pos + k][1] if counts is None else counts[k]
                    if want[pos + k] != ("ok", got):
                        return Failure(steps[pos + k][0], "batch",
                                       f"requests_batch request {pos + k}: ok with {got} ops, "
                                       f"{oname} {want[pos + k]}")
                if res is not None and want[pos + stop][0] != res:
                    return Failure(steps[pos + stop][0], "batch",
                                   f"requests_batch refused request {pos + stop} with {res}, "
                                   f"{oname} {want[pos + stop][0]}")
                pos += stop + (res is not None)
            got_st, want_st = state_of(sut), state_of(ref)
            if got_st != want_st:
                return Failure(steps[-1][0], "batch", f"state after requests_batch differs:\n"
                               f"  system:    {got_st}\n  {oname + ':':<10} {want_st}")
            checker = getattr(sut, "check", None)
            if checker is not None:
                checker()
        except Exception as e:  # noqa: BLE001 - AssertionError from check() or a crash
            return Failure(steps[min(pos, len(steps) - 1)][0] if steps else -1, "batch",
                           short_tb(e))
        return None

    def _oracle(self) -> tuple[VmFactory, str]:
        """The implementation every comparison trusts: the kernel when given."""
        if self.kernel is not None:
            return self.kernel, "kernel"
        assert self.model is not None
        return self.model, "reference"

    def _step(self, i: int, step: dict[str, Any], ref: Any, sut: Any,
              checker: Callable[[], Any] | None, ker: Any = None) -> Failure | None:
        """Issue step ``i`` everywhere; compare the system (and, with a kernel, the model).

        Without a kernel the model is the oracle. With one, the system is
        checked against the kernel (kinds ``result``, ``ops``, ...) and then
        the model against the kernel (kinds ``kernel-result``, ...).
        """
        call = step["call"]
        answers: dict[str, tuple[str, Any]] = {}
        for name, vm in (("reference", ref), ("kernel", ker)):
            if vm is None:
                continue
            try:
                answers[name] = ("ok", issue(vm, step))
            except GpuvmError as e:
                answers[name] = (errname(e), None)
            except Exception as e:  # noqa: BLE001
                return Failure(i, "model" if name == "reference" else "kernel", short_tb(e))
        try:
            sut_ops = issue(sut, step)
            sut_res = "ok"
        except GpuvmError as e:
            sut_ops, sut_res = None, errname(e)
        except Exception as e:  # noqa: BLE001
            return Failure(i, "crash", f"{call}: {short_tb(e)}")
        oname = "kernel" if ker is not None else "reference"
        want_res, want_ops = answers[oname]
        # (label, failure-kind prefix, result, ops, vm) checked against the oracle, in order
        checked = [("system", "", sut_res, sut_ops, sut)]
        if ker is not None:
            checked.append(("reference", "kernel-", *answers["reference"], ref))
        for who, pre, res, _ops, _vm in checked:
            if res != want_res:
                return Failure(i, pre + "result", f"{call} gave {res} on the {who}, "
                                                  f"{want_res} on the {oname}")
        try:
            if want_ops is not None:
                want = [op.as_dict() for op in want_ops]
                for who, pre, _res, ops, _vm in checked:
                    got = [op.as_dict() for op in ops]
                    if got != want:
                        return Failure(i, pre + "ops", f"{call} ops differ:\n  {who + ':':<10} "
                                                       f"{got}\n  {oname + ':':<10} {want}")
                if call != "prefetch":
                    want_fail = (ker if ker is not None else ref).apply(want_ops)
                    for who, pre, _res, ops, vm in checked:
                        fail = vm.apply(ops)
                        if fail != want_fail:
                            return Failure(i, pre + "apply", f"refused inserts {fail} on the "
                                                             f"{who}, {want_fail} on the {oname}")
            want_st = state_of(ker if ker is not None else ref)
            for who, pre, _res, _ops, vm in checked:
                got_st = state_of(vm)
                if got_st != want_st:
                    return Failure(i, pre + "state", f"state differs:\n  {who + ':':<10} "
                                                     f"{got_st}\n  {oname + ':':<10} {want_st}")
                if len(vm) != len(want_st):
                    return Failure(i, pre + "len", f"len {len(vm)} on the {who}, "
                                                   f"{len(want_st)} VAs on the {oname}")
        except Exception as e:  # noqa: BLE001
            return Failure(i, "crash", short_tb(e))
        if checker is not None:
            try:
                checker()
            except Exception as e:  # noqa: BLE001 - AssertionError or worse
                return Failure(i, "check", f"vm.check() after {call}: {short_tb(e)}")
        return None

    # -- shrinking ----------------------------------------------------------

    def shrink(self, case: Case, failure: Failure, deadline: float) -> tuple[Case, Failure]:
        """Smallest case still failing with the same kind of mismatch (greedy, time-bounded)."""
        best, best_f = copy_case(case), failure
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
                    c = copy_case(best)
                    del c["steps"][j:j + size]
                    if c["steps"] and attempt(c):
                        changed = True
                    else:
                        j += size
                size //= 2
            # 2. drop the reserved node
            if best["vm"]["reserve_range"]:
                c = copy_case(best)
                c["vm"]["reserve_addr"] = c["vm"]["reserve_range"] = 0
                changed |= attempt(c)
            # 3. simplify numbers in each step
            for j in range(len(best["steps"])):
                for cand in simpler_steps(best["steps"][j], best["vm"]["start"],
                                           best.get("unit", 1)):
                    c = copy_case(best)
                    if j >= len(c["steps"]):
                        break
                    c["steps"][j] = cand
                    if attempt(c):
                        changed = True
        return best, best_f

    def save(self, case: Case, failure: Failure, out_dir: Path, tag: str) -> Path:
        """Write ``case`` as one vector line (fields from the oracle) and return its path."""
        oracle, _ = self._oracle()
        return write_failure(case, oracle, out_dir, tag, getattr(oracle, "take_warnings", None))


