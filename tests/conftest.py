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

Tests marked ``pure_model`` patch the model from Python (a planted bug, a
``monkeypatch`` of a model function) and so need its pure-Python modules: in an
install whose fault path is compiled (:mod:`pysvm.compiled`) they are deselected the
same way, named in a closing line; .ci/run runs the whole suite on the editable
(pure) install first, then on the compiled wheel.
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


def _model_is_compiled() -> bool:
    from pysvm.compiled import is_compiled

    return is_compiled()


_DESELECTED: list[str] = []
_DESELECTED_PURE: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    debug = _core_is_debug_build()
    compiled = _model_is_compiled()
    keep = []
    for item in items:
        if not debug and item.get_closest_marker("debug_build"):
            _DESELECTED.append(item.nodeid)
        elif compiled and item.get_closest_marker("pure_model"):
            _DESELECTED_PURE.append(item.nodeid)
        else:
            keep.append(item)
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _DESELECTED:
        terminalreporter.write_line(
            f"{len(_DESELECTED)} planted-bug test(s) deselected: they need the debug build of "
            "the core (GPUVM_DEBUG=1 pip install -e .; .ci/run runs them): "
            + ", ".join(_DESELECTED))
    if _DESELECTED_PURE:
        terminalreporter.write_line(
            f"{len(_DESELECTED_PURE)} test(s) that patch the model deselected: this install's "
            "fault path is compiled (pysvm --version; the editable install runs them): "
            + ", ".join(_DESELECTED_PURE))
