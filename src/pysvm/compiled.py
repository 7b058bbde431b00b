"""Which of the model's modules this install runs as compiled code.

A wheel (``pip install gpuvm-svm``, ``pip install .``) compiles the modules on the GPU
fault path - the ones in :data:`COMPILED_MODULES` - with mypyc: the same Python source,
translated to C against its type annotations (the build runs
``tools/build_mypyc.py``). An editable install (``pip install -e .``) keeps every module
pure Python, so an edit to the model takes effect at the next import; so does a wheel
built with ``-C cmake.define.PYSVM_MYPYC=OFF``. Both run the same code: the test suite
runs against each in CI.

What differs in a compiled install: a compiled module's functions call each other
directly and its classes are C types, so replacing a module attribute or a method from
Python (``setattr``, ``unittest.mock.patch``, pytest's ``monkeypatch``) does not reach
callers inside the compiled group, and Python classes cannot subclass a compiled class.
:func:`pysvm.fuzz.planted.planted` refuses to run there for that reason.

Kernel: none (packaging).
"""

from __future__ import annotations

import importlib
from importlib.machinery import EXTENSION_SUFFIXES

__all__ = ["COMPILED_MODULES", "compiled_modules", "is_compiled"]

#: The modules a wheel build compiles (read by ``tools/build_mypyc.py``; a literal tuple
#: so that the build reads it without importing the package).
COMPILED_MODULES = (
    "pysvm.clock",
    "pysvm.mm.interval_tree",
    "pysvm.mm.mmu_notifier",
    "pysvm.mm.mmap",
    "pysvm.drm.gpusvm_notifier",
    "pysvm.drm.gpusvm",
    "pysvm.drm.pagemap_util",
    "pysvm.drm.pagemap",
    "pysvm.xe.attr",
    "pysvm.xe.profile",
    "pysvm.xe.device",
    "pysvm.xe.vma",
    "pysvm.xe.vm",
    "pysvm.xe.vram",
    "pysvm.xe.pagemap",
    "pysvm.xe.migrate",
    "pysvm.xe.garbage_collector",
    "pysvm.xe.svm",
    "pysvm.xe.pagefault_types",
    "pysvm.xe.pagefault",
    "pysvm.hw.gpu",
)


def compiled_modules() -> list[str]:
    """The modules of :data:`COMPILED_MODULES` that were loaded from an extension module
    (imports them)."""
    out = []
    for name in COMPILED_MODULES:
        origin = getattr(importlib.import_module(name), "__file__", None) or ""
        if origin.endswith(tuple(EXTENSION_SUFFIXES)):
            out.append(name)
    return out


def is_compiled() -> bool:
    """True when the fault path runs compiled (any module of :data:`COMPILED_MODULES`)."""
    return bool(compiled_modules())
