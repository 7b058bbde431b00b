"""Known bugs the fuzzer must find: planted into the model to test the harness itself.

Kernel: none (test infrastructure). Each bug is a realistic mistake in a
function that models the kernel, named after the kernel function it breaks:

* ``gc-skips-set_default_attr`` - the garbage collector never resets the
  attributes of the span a collected range covered
  (drivers/gpu/drm/xe/xe_svm.c, ``xe_svm_range_set_default_attr()``);
* ``eviction-loses-a-value`` - moving device pages back to system memory
  zeroes the first page it moves (``drm_pagemap_evict_to_ram()`` path);
* ``get_pages-drops-a-page`` - ``drm_gpusvm_get_pages()`` records a copy of
  the last page instead of the CPU's page;
* ``fast-path-keeps-old-seqno`` - ``drm_gpusvm_get_pages()`` returns early for
  pages still valid without recording the notifier's fresh sequence number (the
  kernel's fast path does record it: ``goto set_seqno``), so a bind's
  ``read_retry`` fails forever: the livelock the fault loop must be guarded against.

:func:`planted` applies one for the duration of a ``with`` block and restores
the model afterwards. It patches module attributes of this process, so a
campaign applies it in each worker (``pysvm fuzz --plant BUG``): that is how a
campaign on a process pool or a Ray cluster is tested end to end. A compiled install
(:mod:`pysvm.compiled`) cannot be patched this way - its modules call each other
directly - so there :func:`planted` refuses (:class:`PlantUnsupported`) instead of
running a campaign whose bug was never in the code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from pysvm.compiled import compiled_modules
from pysvm.drm.gpusvm import GpuSvm, GpuSvmCtx, SvmRange
from pysvm.mm.mmap import PAGE_SHIFT, Mm, Page
from pysvm.xe import garbage_collector
from pysvm.xe import vram as _vram

__all__ = ["PLANTED", "PlantUnsupported", "planted", "check_plantable"]


class PlantUnsupported(RuntimeError):
    """The model's fault path is compiled here, so a planted bug would not take effect."""


def check_plantable() -> None:
    """Raise :class:`PlantUnsupported` naming the compiled modules, if any."""
    names = compiled_modules()
    if names:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise PlantUnsupported(
            f"planted bugs patch the pure-Python model, but this install runs "
            f"{len(names)} of its modules compiled (mypyc: {shown}), "
            "where a patch does not reach the callers; use an editable install "
            "(pip install -e .) or a wheel built with -C cmake.define.PYSVM_MYPYC=OFF")


def _patches(which: str) -> list[tuple[Any, str, Any]]:
    """(object, attribute, replacement) for the planted bug ``which``."""
    if which == "gc-skips-set_default_attr":
        def no_reset(svm: Any, start: int, end: int) -> int:
            return 0
        return [(garbage_collector, "set_default_attr", no_reset)]
    if which == "eviction-loses-a-value":
        orig_move: Callable[..., int] = _vram._move_to_system

        def move(mm: Mm, alloc: Any, addrs: list[int] | None = None, *,
                 runs: list[tuple[int, int]] | None = None) -> int:
            first = (min(addrs) if addrs else
                     alloc.pages.start + (runs[0][0] << PAGE_SHIFT) if runs else None)
            n = orig_move(mm, alloc, addrs, runs=runs)
            if first is not None:
                page = mm.page_at(first)
                if page is not None:
                    page.value = 0
            return n
        return [(_vram, "_move_to_system", move)]
    if which == "get_pages-drops-a-page":
        orig_get = GpuSvm.range_get_pages

        def get_pages(self: GpuSvm, rng: SvmRange, ctx: GpuSvmCtx) -> None:
            orig_get(self, rng, ctx)
            if rng.pages is not None and len(rng.pages) > 1:
                rng.pages.replace(len(rng.pages) - 1, Page(rng.pages[-1].value))
                rng.pages_uniform = False       # as get_pages would have seen them
        return [(GpuSvm, "range_get_pages", get_pages)]
    if which == "fast-path-keeps-old-seqno":
        orig_pages = GpuSvm.range_get_pages

        def stale(self: GpuSvm, rng: SvmRange, ctx: GpuSvmCtx) -> None:
            if rng.pages_valid:
                return
            orig_pages(self, rng, ctx)
        return [(GpuSvm, "range_get_pages", stale)]
    raise ValueError(f"unknown planted bug {which!r}; choose one of {', '.join(PLANTED)}")


#: The planted bugs by name.
PLANTED = ("gc-skips-set_default_attr", "eviction-loses-a-value", "get_pages-drops-a-page",
           "fast-path-keeps-old-seqno")


@contextlib.contextmanager
def planted(which: str | None) -> Iterator[None]:
    """Run the block with the planted bug ``which`` (None: the model as it is)."""
    if which is None:
        yield
        return
    patches = _patches(which)
    check_plantable()
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    try:
        for obj, name, new in patches:
            setattr(obj, name, new)
        yield
    finally:
        for obj, name, old in saved:
            setattr(obj, name, old)
