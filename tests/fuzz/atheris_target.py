"""atheris entry point: coverage-guided fuzzing of the differential property.

Run it (atheris is in the ``fuzz`` extra; atheris 3.0.0 is the last release
with CPython 3.11 wheels, so use its own venv)::

    python3 -m venv .venv-fuzz
    .venv-fuzz/bin/pip install -Cbuild-dir=build/fuzz -e '.[test,fuzz]'
    mkdir -p .fuzz-atheris
    .venv-fuzz/bin/python tests/fuzz/atheris_target.py .fuzz-atheris \\
        -max_total_time=300 -print_final_stats=1

``--debug-fault 1`` plants the compiled core's test fault first (to see the
fuzzer find it). Every other argument goes to libFuzzer (a directory is its
input corpus; ``-runs=N``, ``-max_total_time=S``, ``-max_len=N``,
``-seed=N``). Each input is a byte string
that hypothesis' ``fuzz_one_input`` decodes into a case of
:meth:`gpuvm_core.fuzz.GpuvmTarget.make_case` -- the same generator as the
seeded runner and the pytest property -- and runs through the compiled core
and the reference. Coverage feedback comes from the Python code atheris
instruments at import: the reference, the harness and the ``gpuvm_core``
wrappers (the compiled ``_core`` is C built without ``-fsanitize=fuzzer``, so
atheris sees it as a black box).

On a mismatch the case is shrunk with the harness's shrinker and written as
one vector line to ``fuzz-failures/fuzz-atheris-<time>.jsonl`` (``pysvm
conformance`` replays it); then the AssertionError propagates, atheris prints
it and saves its raw input as ``crash-<sha1>``. Re-run that input with
``.venv-fuzz/bin/python tests/fuzz/atheris_target.py crash-<sha1>``.

Kernel: drivers/gpu/drm/drm_gpuvm.c (via the differential property).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

FAILURE_DIR = Path("fuzz-failures")


def _strategies() -> ModuleType:
    # Imported late: atheris must hook the imports of gpuvm_core first.
    if __package__:
        from . import _strategies as mod
    else:  # run as a script: tests/fuzz is sys.path[0]
        import _strategies as mod  # type: ignore[import-not-found, no-redef]
    return mod


def fuzz_one_input(data: bytes) -> None:
    """One fuzzer input: hypothesis turns ``data`` into a case; raises on a mismatch."""
    _strategies().fuzz_one_input(data)


def _instrument_module(atheris: Any, module: ModuleType) -> None:
    """Add atheris coverage to every Python function and method defined in ``module``."""
    seen: set[int] = set()

    def visit(obj: Any) -> None:
        for value in list(vars(obj).values()):
            func = getattr(value, "fget", value)  # properties: their getter
            if isinstance(value, staticmethod | classmethod):
                func = value.__func__
            if id(func) in seen:
                continue
            seen.add(id(func))
            code = getattr(func, "__code__", None)
            if code is not None and getattr(func, "__module__", None) == module.__name__:
                func.__code__ = atheris.instrument_func(func).__code__
            elif isinstance(value, type) and value.__module__ == module.__name__:
                visit(value)

    visit(module)


def main(argv: list[str] | None = None) -> None:
    """Instrument ``gpuvm_core``, then hand control to atheris (libFuzzer)."""
    atheris: Any = importlib.import_module("atheris")  # the fuzz extra; untyped

    import gpuvm_core._reference
    import gpuvm_core.conformance
    import gpuvm_core.fuzz

    # The editable install loads gpuvm_core through scikit-build-core's own
    # finder, which atheris' import hook does not see (it then reports "no
    # interesting inputs"); instrument the loaded functions in place instead.
    for module in (gpuvm_core._reference, gpuvm_core.fuzz, gpuvm_core.conformance):
        _instrument_module(atheris, module)
    args = list(sys.argv if argv is None else argv)
    if "--debug-fault" in args:  # ours, not libFuzzer's: plant the core's test fault
        i = args.index("--debug-fault")
        import gpuvm_core._core

        gpuvm_core._core._debug_set_fault(int(args[i + 1]))
        del args[i:i + 2]
    mod = _strategies()
    prop: dict[str, Any] = mod.PROPERTY
    prop["save_dir"] = FAILURE_DIR
    atheris.Setup(args, fuzz_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
