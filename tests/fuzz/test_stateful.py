"""Stateful differential test: ``GpuVm`` (system) against ``RefGpuVm`` (model).

A hypothesis ``RuleBasedStateMachine`` whose rules are the whole public
surface of CONTRACT.md that changes or reads the tree -- map, unmap, madvise,
prefetch (op lists compared with ``as_dict``, then applied), insert, remove,
find, find_first, find_prev, find_next, range_valid, interval_empty -- on a
small VM (8-64 pages) so that requests overlap. After every rule the states
must be equal, and the system's own ``check()`` (tree invariants) must pass
when it has one.

Kernel: drivers/gpu/drm/drm_gpuvm.c (drm_gpuvm_sm_map_ops_create(),
drm_gpuvm_sm_unmap_ops_create(), drm_gpuvm_madvise_ops_create(),
drm_gpuvm_prefetch_ops_create(), drm_gpuva_insert(), drm_gpuva_remove(),
drm_gpuva_find*(), drm_gpuvm_range_valid(), drm_gpuvm_interval_empty()).
"""

from __future__ import annotations

import errno
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from gpuvm_core import GpuVm, GpuvmError, RefGpuVm

from ._planted import OffByOneVm

MASK = (1 << 64) - 1
TOP = 1 << 64


@st.composite
def geometries(draw: Any) -> dict[str, int]:
    unit = draw(st.sampled_from([4096, 4096, 1]))
    pages = draw(st.integers(8, 64))
    size = unit * pages
    where = draw(st.sampled_from(["zero", "low", "top", "near-top"]))
    start = {"zero": 0, "low": unit * draw(st.integers(1, 16)), "top": TOP - size,
             "near-top": TOP - size - unit * draw(st.integers(1, 4))}[where]
    raddr = rrange = 0
    if draw(st.integers(0, 3)) == 0:
        rrange = unit * draw(st.integers(1, 4))
        raddr = (start + unit * draw(st.integers(-2, pages))) & MASK
    return {"start": start, "range": size, "reserve_addr": raddr, "reserve_range": rrange,
            "unit": unit, "pages": pages}


# A span is either page-relative (start page, length in pages) to the VM, or raw u64s.
spans = st.one_of(
    st.tuples(st.just("page"), st.integers(-2, 66), st.integers(0, 66)),
    st.tuples(st.just("page"), st.integers(0, 63), st.integers(1, 4)),
    st.tuples(st.just("raw"), st.integers(0, MASK), st.integers(0, MASK)),
)
objs = st.one_of(st.none(), st.integers(1, 3))
offsets = st.one_of(st.just("linear"), st.integers(0, 64))


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except GpuvmError as e:
        return errno.errorcode.get(e.errno or 0, str(e.errno)), None


def _va(va: Any) -> tuple[int, int, int | None, int] | None:
    return None if va is None else (va.addr, va.range, va.obj, va.offset)


class GpuvmDifferential(RuleBasedStateMachine):
    """System vs model, rule by rule; the model is the reference VA space."""

    geom: dict[str, int]
    #: the system under test; a subclass may inject another factory
    system: Any = GpuVm

    @initialize(geom=geometries())
    def setup(self, geom: dict[str, int]) -> None:
        self.geom = geom
        kw = {"reserve_addr": geom["reserve_addr"], "reserve_range": geom["reserve_range"]}
        self.ref = RefGpuVm(geom["start"], geom["range"], **kw)
        self.sut = self.system(geom["start"], geom["range"], **kw)

    # -- helpers ------------------------------------------------------------

    def _span(self, span: tuple[str, int, int]) -> tuple[int, int]:
        kind, a, b = span
        if kind == "raw":
            return a, b
        u = self.geom["unit"]
        return (self.geom["start"] + a * u) & MASK, b * u

    def _offset(self, addr: int, obj: int | None, off: str | int) -> int:
        if off == "linear":
            return (addr - self.geom["start"] + (obj or 0) * 0x100000) & MASK
        return int(off) * self.geom["unit"]

    def _ops_step(self, name: str, *args: Any) -> None:
        r_res, r_ops = _outcome(getattr(self.ref, name), *args)
        s_res, s_ops = _outcome(getattr(self.sut, name), *args)
        assert s_res == r_res, f"{name}{args}: system {s_res}, reference {r_res}"
        if r_ops is None:
            return
        got, want = [o.as_dict() for o in s_ops], [o.as_dict() for o in r_ops]
        assert got == want, f"{name}{args}:\n system    {got}\n reference {want}"
        if name != "prefetch_ops_create":
            assert self.sut.apply(s_ops) == self.ref.apply(r_ops)

    # -- rules that change the tree -------------------------------------------

    @rule(span=spans, obj=objs, off=offsets)
    def map(self, span: tuple[str, int, int], obj: int | None, off: str | int) -> None:
        addr, rng = self._span(span)
        self._ops_step("sm_map_ops_create", addr, rng, obj, self._offset(addr, obj, off))

    @rule(span=spans, obj=objs, off=offsets)
    def madvise(self, span: tuple[str, int, int], obj: int | None, off: str | int) -> None:
        addr, rng = self._span(span)
        self._ops_step("madvise_ops_create", addr, rng, obj, self._offset(addr, obj, off))

    @rule(span=spans)
    def unmap(self, span: tuple[str, int, int]) -> None:
        self._ops_step("sm_unmap_ops_create", *self._span(span))

    @rule(span=spans)
    def prefetch(self, span: tuple[str, int, int]) -> None:
        self._ops_step("prefetch_ops_create", *self._span(span))

    @rule(span=spans, obj=objs, off=offsets)
    def insert(self, span: tuple[str, int, int], obj: int | None, off: str | int) -> None:
        addr, rng = self._span(span)
        offset = self._offset(addr, obj, off)
        r_res, r_va = _outcome(self.ref.insert, addr, rng, obj, offset)
        s_res, s_va = _outcome(self.sut.insert, addr, rng, obj, offset)
        assert s_res == r_res, f"insert({addr:#x}, {rng:#x}): system {s_res}, reference {r_res}"
        assert _va(s_va) == _va(r_va)

    @rule(pick=st.integers(0, 1 << 16))
    def remove(self, pick: int) -> None:
        ref_vas, sut_vas = list(self.ref), list(self.sut)
        if not ref_vas:
            return
        i = pick % len(ref_vas)
        self.ref.remove(ref_vas[i])
        self.sut.remove(sut_vas[i])

    # -- queries ----------------------------------------------------------------

    @rule(span=spans)
    def queries(self, span: tuple[str, int, int]) -> None:
        addr, rng = self._span(span)
        for name in ("find", "find_first", "range_valid", "interval_empty"):
            want = getattr(self.ref, name)(addr, rng)
            got = getattr(self.sut, name)(addr, rng)
            if name.startswith("find"):
                want, got = _va(want), _va(got)
            assert got == want, f"{name}({addr:#x}, {rng:#x}): system {got}, reference {want}"
        for name, arg in (("find_prev", addr), ("find_next", addr), ("find_next", rng)):
            want, got = _va(getattr(self.ref, name)(arg)), _va(getattr(self.sut, name)(arg))
            assert got == want, f"{name}({arg:#x}): system {got}, reference {want}"

    # -- invariants ---------------------------------------------------------------

    @invariant()
    def same_state(self) -> None:
        if not hasattr(self, "ref"):
            return
        assert [_va(v) for v in self.sut] == [_va(v) for v in self.ref]
        assert len(self.sut) == len(self.ref)

    @invariant()
    def tree_check(self) -> None:
        if hasattr(self, "sut") and hasattr(self.sut, "check"):
            self.sut.check()


TestGpuvmDifferential = GpuvmDifferential.TestCase


class _PlantedDifferential(GpuvmDifferential):
    system = OffByOneVm


def test_machine_catches_planted_bug() -> None:
    """The machine must fail when the system has a planted off-by-one."""
    with pytest.raises(AssertionError):
        run_state_machine_as_test(
            _PlantedDifferential,
            # no shrink phase: stateful shrinking is slow, finding the bug is the point
            settings=settings(max_examples=300, deadline=None, database=None,
                              derandomize=True, print_blob=False, stateful_step_count=30,
                              phases=[Phase.explicit, Phase.generate],
                              suppress_health_check=list(HealthCheck)))
