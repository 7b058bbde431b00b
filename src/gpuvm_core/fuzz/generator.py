"""Case generation for the drm_gpuvm differential fuzz: VMs and dense request sequences.

A *case* is a small VA space (8-64 pages, so requests overlap all the time)
and a dense sequence of requests: map, unmap, madvise and prefetch, with and
without objects, offsets that often continue an existing mapping (so ``keep``
and adjacent-object layouts come up), a kernel-reserved node now and then,
VMs at address 0 and at the top of the u64 space (some ending exactly at
2^64), unaligned addresses, and invalid requests (``addr + range``
overflowing, reaching outside the VM, covering the reserved node).

Zero-length requests are accepted by the kernel and leave a VA whose
inclusive last address is below its start. The kernel-recorded vectors only
ever use them as the last step of a case, so most of our zero-length steps are
last too; a few are placed mid-sequence (see :mod:`gpuvm_core.fuzz`).

The randomness comes from a :class:`Chooser` (``random.Random`` or a
hypothesis ``draw`` wrapper), so one generator serves the seeded runner,
hypothesis and atheris. :func:`simpler_steps` proposes the smaller variants
the shrinker tries.

Kernel: the requests are those of drm_gpuvm_sm_map_ops_create(),
drm_gpuvm_sm_unmap_ops_create(), drm_gpuvm_madvise_ops_create() and
drm_gpuvm_prefetch_ops_create() (drivers/gpu/drm/drm_gpuvm.c).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["MASK", "TOP", "Case", "CaseGenerator", "Chooser", "copy_case", "simpler_steps"]

MASK = (1 << 64) - 1
TOP = 1 << 64

Case = dict[str, Any]


class Chooser(Protocol):
    """The randomness a target draws from.

    :class:`random.Random` satisfies it, and so does a wrapper around
    hypothesis' ``draw`` (see ``tests/fuzz``), so one generator serves the
    seeded runner, hypothesis and atheris.
    """

    def randint(self, a: int, b: int) -> int: ...
    def choice(self, seq: Sequence[Any]) -> Any: ...



@dataclass
class CaseGenerator:
    """Draws fresh dense cases (VM + steps); ``max_steps`` bounds the sequence length."""

    max_steps: int = 30

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


def copy_case(case: Case) -> Case:
    """A copy deep enough to edit steps and the VM without touching ``case``."""
    return {**case, "vm": dict(case["vm"]), "steps": [dict(s) for s in case["steps"]]}


def simpler_steps(step: dict[str, Any], start: int, unit: int) -> list[dict[str, Any]]:
    """Smaller variants of ``step`` for the shrinker, most aggressive first."""
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

