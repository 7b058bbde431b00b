"""Hypothesis strategies and the differential property shared by pytest and atheris.

The cases come from :meth:`gpuvm_core.fuzz.GpuvmTarget.make_case`, driven by
hypothesis' ``draw`` instead of :class:`random.Random`, so the seeded runner,
pytest and atheris explore the same space, and hypothesis can shrink every
number the generator draws (toward the lower bound of each ``randint``).

Kernel: drivers/gpu/drm/drm_gpuvm.c (the behaviour the cases exercise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

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


@settings(database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=gpuvm_cases())
def differential_property(case: dict[str, Any]) -> None:
    """System (``GpuVm``) and model (``RefGpuVm``) agree on every step of ``case``."""
    failure = GpuvmTarget().run_case(case)
    assert failure is None, str(failure)
