"""Hypothesis strategies and the differential property shared by pytest and atheris.

The cases come from :meth:`gpuvm_core.fuzz.GpuvmTarget.make_case`, driven by
hypothesis' ``draw`` instead of :class:`random.Random`, so the seeded runner,
pytest and atheris explore the same space, and hypothesis can shrink every
number the generator draws (toward the lower bound of each ``randint``).

:data:`PROPERTY` configures what :func:`differential_property` checks: the
target factory (a planted-bug system in the tests) and, for atheris, a
directory where a failing case is shrunk and written as a vector line before
the assertion propagates (atheris does not shrink, and its crash file holds
raw bytes that only this generator can read back).

Kernel: drivers/gpu/drm/drm_gpuvm.c (the behaviour the cases exercise).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuvm_core.fuzz import GpuvmTarget

MASK = (1 << 64) - 1


class DrawChooser:
    """A :class:`gpuvm_core.fuzz.Chooser` backed by hypothesis' ``draw``."""

    def __init__(self, draw: Callable[[Any], Any]) -> None:
        self._draw = draw

    def randint(self, a: int, b: int) -> int:
        return int(self._draw(st.integers(a, b)))

    def choice(self, seq: Sequence[Any]) -> Any:
        return self._draw(st.sampled_from(list(seq)))


@st.composite
def gpuvm_cases(draw: Callable[[Any], Any], max_steps: int = 30) -> dict[str, Any]:
    """A dense drm_gpuvm request sequence (see :mod:`gpuvm_core.fuzz`)."""
    return GpuvmTarget(max_steps=max_steps).make_case(DrawChooser(draw))


#: ``target``: builds the GpuvmTarget to check; ``save_dir``: where a failure
#: is shrunk to and written (``None``: not written); ``shrink_seconds``.
PROPERTY: dict[str, Any] = {"target": GpuvmTarget, "save_dir": None, "shrink_seconds": 10.0}


def check_case(case: dict[str, Any]) -> None:
    """Run ``case`` through :data:`PROPERTY`'s target; raise AssertionError on a mismatch."""
    target = PROPERTY["target"]()
    failure = target.run_case(case)
    if failure is None:
        return
    save_dir = PROPERTY["save_dir"]
    if save_dir is not None:
        small, small_f = target.shrink(case, failure,
                                       time.monotonic() + PROPERTY["shrink_seconds"])
        tag = f"atheris-{time.strftime('%Y%m%d-%H%M%S')}"
        path = target.save(small, small_f, Path(save_dir), tag)
        raise AssertionError(f"{failure}\n  shrunk: {small_f}\n  written: {path}")
    raise AssertionError(str(failure))


@settings(database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=gpuvm_cases())
def differential_property(case: dict[str, Any]) -> None:
    """System (``GpuVm``) and model (``RefGpuVm``) agree on every step of ``case``."""
    check_case(case)


#: One fuzzer input (bytes) -> one property run; hypothesis decodes the bytes
#: into a case. Raises the property's AssertionError on a mismatch.
fuzz_one_input: Callable[[bytes], Any] = cast(Any, differential_property).hypothesis.fuzz_one_input
