"""Shared pytest configuration: hypothesis profiles.

Choose one with the environment variable ``HYPOTHESIS_PROFILE``:

* ``dev`` (default): the usual 100 examples, a generous deadline (the
  machine is shared, so timing is noisy).
* ``ci``: fewer examples, no deadline, fresh randomness every run (so CI keeps
  exploring) and ``print_blob=True`` so a failure prints the blob that
  reproduces it with ``@reproduce_failure``.
* ``nightly``: many examples, no deadline, for long unattended runs.

Tests marked ``debug_build`` plant bugs in the compiled core
(``_debug_set_fault``), which only the debug/sanitizer build has
(``GPUVM_DEBUG=1 pip install -e .``). With a release core they are
deselected - counted as such in pytest's summary, and named in a closing line
- never skipped silently; .ci/run runs them in its sanitizer venv.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=100, deadline=timedelta(seconds=2))
settings.register_profile("ci", max_examples=30, deadline=None, derandomize=False,
                          print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=5000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def _core_is_debug_build() -> bool:
    try:
        from gpuvm_core import _core
    except ImportError:  # pragma: no cover - no compiled core at all
        return False
    return bool(getattr(_core, "DEBUG_BUILD", False))


_DESELECTED: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _core_is_debug_build():
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("debug_build") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
        _DESELECTED.extend(item.nodeid for item in drop)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _DESELECTED:
        terminalreporter.write_line(
            f"{len(_DESELECTED)} planted-bug test(s) deselected: they need the debug build of "
            "the core (GPUVM_DEBUG=1 pip install -e .; .ci/run runs them): "
            + ", ".join(_DESELECTED))
