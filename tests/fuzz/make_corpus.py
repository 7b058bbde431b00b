"""(Re)write the seeded part of the regression corpus, ``tests/fuzz/corpus/``.

    .venv/bin/python tests/fuzz/make_corpus.py [--check]

Two files come from here (anything else in the directory -- ``fuzz-*.jsonl``
written by ``python -m gpuvm_core.fuzz --corpus tests/fuzz/corpus`` -- is
left alone):

* ``handpicked.jsonl``: request sequences chosen by hand for the kernel's
  quirks (zero-length requests mid-sequence, VMs at the top of the u64
  space, the reserved node at every edge, madvise skipping BO-backed VAs,
  ``keep``, invalid requests). Each case has a ``note`` saying what it pins.
* ``planted.jsonl``: the shrunk output of the harness on every planted bug of
  ``_planted.py`` and on the compiled core's debug fault (fixed seeds).

The kernel fields (``result``, ``ops``, ``state``, ``apply_failures``) are
recorded from the reference (:class:`gpuvm_core.RefGpuVm`), which passes all
2,011 kernel-recorded vectors; ``test_corpus.py`` additionally pins a few of
them to what drivers/gpu/drm/drm_gpuvm.c does, so a corpus regenerated from a
broken reference fails. ``--check`` only compares the files with what this
script would write (exit 1 if they differ).

Kernel: drivers/gpu/drm/drm_gpuvm.c.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__:
    from ._planted import PLANTED
else:  # run as a script
    from _planted import PLANTED  # type: ignore[import-not-found, no-redef]

from gpuvm_core import GpuVm, RefGpuVm
from gpuvm_core.fuzz import GpuvmTarget, _case_rng, record_vector

CORPUS = Path(__file__).resolve().parent / "corpus"
P = 0x1000
TOP = 1 << 64
MASK = TOP - 1


def vm(start: int, pages: int, reserve_addr: int = 0, reserve_pages: int = 0) -> dict[str, int]:
    return {"start": start, "range": pages * P, "reserve_addr": reserve_addr,
            "reserve_range": reserve_pages * P}


def m(addr: int, range_: int, obj: int | None = None, offset: int = 0) -> dict[str, Any]:
    return {"call": "map", "addr": addr & MASK, "range": range_, "obj": obj, "offset": offset}


def a(addr: int, range_: int, obj: int | None = None, offset: int = 0) -> dict[str, Any]:
    return {"call": "madvise", "addr": addr & MASK, "range": range_, "obj": obj,
            "offset": offset}


def u(addr: int, range_: int) -> dict[str, Any]:
    return {"call": "unmap", "addr": addr & MASK, "range": range_, "obj": None, "offset": 0}


def pf(addr: int, range_: int) -> dict[str, Any]:
    return {"call": "prefetch", "addr": addr & MASK, "range": range_, "obj": None, "offset": 0}


HI = TOP - 65 * P  # a 64-page VM ending one page below 2^64
HIEND = TOP - P

#: (category-name, vm, steps, note); ids become corpus-<category-name>-<serial>
HANDPICKED: list[tuple[str, dict[str, int], list[dict[str, Any]], str]] = [
    # -- zero-length requests in the middle of a sequence ---------------------------
    ("zero-split-inside", vm(0, 64),
     [m(4 * P, 4 * P, 1, 0x100000), m(6 * P, 0, 2, 0), m(5 * P, 2 * P, 3, 0), u(0, 64 * P)],
     "a zero-length map strictly inside a VA splits it (prev + next) and leaves a zero-length "
     "VA between the pieces; later requests see all three"),
    ("zero-at-0-grows", vm(0, 64),
     [m(0, 0), m(8 * P, 2 * P, 1, 0), pf(0, 64 * P), u(0, 4 * P)],
     "a zero-length VA at address 0 has inclusive last 2^64-1, so it meets the next map "
     "anywhere; the walker turns it into a remap whose prev is [0, req_addr): it grows"),
    ("zero-unmap-splits", vm(0, 64),
     [m(4 * P, 4 * P, 1, 0), u(6 * P, 0), m(6 * P, P, 1, 2 * P), a(0, 64 * P)],
     "a zero-length unmap inside a VA splits it without removing anything"),
    ("zero-tie-after", vm(0, 64),
     [m(4 * P, 4 * P, 1, 0), m(4 * P, 0, 2, 0), u(4 * P, P), m(0, 16 * P, 3, 0)],
     "zero-length VA at a VA's start, inserted after it: it follows the VA in list order, so "
     "the range walk from the VA visits it too"),
    ("zero-tie-before", vm(0, 64),
     [m(4 * P, 0, 2, 0), m(4 * P, 4 * P, 1, 0), u(4 * P, P), m(0, 16 * P, 3, 0)],
     "zero-length VA at a VA's start, inserted before it: it precedes the VA in list order, so "
     "the range walk starting at the VA never visits it"),
    ("zero-madvise-inside", vm(0, 64),
     [m(0, 16 * P), a(8 * P, 0, None, 0), m(4 * P, 8 * P, 1, 0), u(0, 16 * P)],
     "a zero-length madvise inside a no-object VA splits it and arms the (zero-length) map"),
    ("zero-at-vm-end", vm(16 * P, 32),
     [m(40 * P, 8 * P, 1, 0), m(48 * P, 0), u(16 * P, 32 * P), m(16 * P, 32 * P, 2, 0)],
     "a zero-length map exactly at the VM's end is valid; the walk ending there skips it"),
    # -- the top of the u64 space -------------------------------------------------------
    ("top-vm-ends-at-2^64", vm(TOP - 64 * P, 64),
     [m(TOP - 64 * P, P, 1, 0), m(TOP - 64 * P, 0), u(TOP - 64 * P, 64 * P),
      a(TOP - 32 * P, P), pf(TOP - 64 * P, 64 * P), m(TOP - 2 * P, P, 1, 0)],
     "a VM whose end is exactly 2^64: mm_start + mm_range wraps to 0 in "
     "drm_gpuvm_in_mm_range(), so every request is EINVAL (prefetch has no range check)"),
    ("top-wrapping-offsets", vm(HI, 64),
     [m(HI, 64 * P, 1, TOP - 8 * P), m(HI + 10 * P, 2 * P, 2, 0), u(HIEND - 3 * P, 3 * P),
      m(HIEND - P, P), a(HI, 64 * P), pf(HI, 64 * P)],
     "a 64-page VM ending one page below 2^64, an object offset that wraps past 2^64 inside "
     "the VA: the split pieces' offsets wrap; requests ending exactly at the VM end"),
    ("top-overflowing-requests", vm(HI, 64),
     [m(HIEND - 2 * P, P, 1, 0), m(TOP - P, P), m(MASK, 1), u(HIEND - 2 * P, 1 << 63),
      pf(HIEND - 2 * P, 4 * P), pf(HI, 64 * P)],
     "addr + range reaching or passing 2^64 is EINVAL; prefetch has no range check, and with "
     "an end that wraps to a low address it lists nothing although a VA is there"),
    ("top-reserve-wraps", vm(HI, 64, TOP - 3 * P, 4),
     [m(HIEND - 2 * P, 2 * P, 1, 0), pf(HI, 64 * P), u(HI, 64 * P)],
     "a reserved node whose end wraps past 2^64 is never inserted, and range_valid()'s check "
     "against it (kend wrapped to a low address) blocks nothing"),
    # -- the reserved node ------------------------------------------------------------------
    ("reserved-at-start", vm(0, 64, 0, 1),
     [m(0, 2 * P, 1, 0), m(P, P, 1, 0), m(0, 0), u(0, 64 * P), u(P, 62 * P), pf(0, 64 * P)],
     "reserved node at the VM start: a map over it is EINVAL; a zero-length map at its start "
     "is valid but its insert meets the node (apply_failures); prefetch lists the node"),
    ("reserved-at-end", vm(16 * P, 64, 76 * P, 4),
     [m(70 * P, 6 * P, 1, 0), m(70 * P, 7 * P, 2, 0), a(16 * P, 60 * P), pf(70 * P, 10 * P),
      u(16 * P, 60 * P)],
     "reserved node at the VM end: a map ending where it starts is fine, one page more is "
     "EINVAL; prefetch over it lists the node"),
    ("reserved-straddles-start", vm(16 * P, 64, 15 * P, 2),
     [m(16 * P, P, 1, 0), m(17 * P, P, 1, P), pf(0, 20 * P), u(17 * P, 63 * P)],
     "reserved node straddling the VM start: the VM's first page is unusable"),
    ("reserved-outside-above", vm(0, 64, 64 * P, 2),
     [m(60 * P, 4 * P, 1, 0), pf(60 * P, 8 * P), u(0, 64 * P), m(63 * P, 2 * P)],
     "reserved node just above the VM: maps touching it are fine; prefetch, which has no "
     "range check, lists it although it is outside the VM"),
    # -- madvise and BO-backed VAs ------------------------------------------------------------
    ("madvise-skips-bo", vm(0, 64),
     [m(0, 4 * P, 1, 0), m(4 * P, 4 * P), m(8 * P, 4 * P, 2, 0), a(2 * P, 6 * P),
      a(5 * P, 2 * P), a(0, 12 * P, 3, 0), m(0, 12 * P)],
     "madvise skips BO-backed VAs entirely; a request covering a no-object VA exactly from "
     "inside a BO VA produces no ops; a split in the middle arms the map"),
    ("madvise-inside-bo", vm(0, 64),
     [m(0, 16 * P, 1, 0), a(4 * P, 4 * P), a(0, 16 * P, 1, 0), u(4 * P, 4 * P)],
     "madvise entirely inside a BO-backed VA: no ops at all"),
    # -- keep and invalid requests --------------------------------------------------------------
    ("keep-same-object", vm(0, 64),
     [m(0, 8 * P, 1, 0x100000), m(2 * P, 2 * P, 1, 0x102000), m(0, 8 * P, 1, 0x100000),
      m(P, 2 * P, 1, 0x200000), m(0, 0x10, 2, 0)],
     "remapping an object at its own linear offset sets keep; another offset does not"),
    ("invalid-outside", vm(16 * P, 64),
     [m(15 * P, 2 * P, 1, 0), m(79 * P, 2 * P, 1, 0), u(16 * P, MASK), a(0, MASK),
      m(20 * P, P, 1, 0), u(15 * P, 0), m(80 * P, 0)],
     "requests starting below or ending above the VM, or overflowing, are EINVAL and change "
     "nothing; a zero-length request just below the VM is EINVAL, one at its end is valid"),
]


def handpicked() -> list[dict[str, Any]]:
    out = []
    for serial, (name, v, steps, note) in enumerate(HANDPICKED, 1):
        rec = record_vector({"vm": v, "steps": steps}, RefGpuVm, f"corpus-{name}-{serial:04d}")
        rec["note"] = note
        out.append(rec)
    return out


# planted bug name -> seed whose first failing case is shrunk into the corpus
PLANTED_SEEDS = {"middle-split-offset": 0, "vm-end-bound": 0, "touching-neighbour": 0,
                 "zero-length-last": 0}


def planted() -> list[dict[str, Any]]:
    jobs: list[tuple[str, Any, int]] = [(n, PLANTED[n], s) for n, s in PLANTED_SEEDS.items()]
    core = sys.modules.get("gpuvm_core._core")
    # only the debug build of the core has the planted bug (GPUVM_DEBUG=1)
    debug_core = core is not None and bool(getattr(core, "DEBUG_BUILD", False))
    if debug_core:
        jobs.append(("core-debug-fault-1", GpuVm, 1))
    out = []
    for serial, (name, system, seed) in enumerate(jobs, 1):
        if name.startswith("core-debug-fault"):
            core._debug_set_fault(1)  # type: ignore[union-attr]
        try:
            t = GpuvmTarget(system=system)
            for i in range(100_000):
                case = t.make_case(_case_rng(seed, i))
                f = t.run_case(case)
                if f is not None:
                    break
            else:
                raise SystemExit(f"planted bug {name} not found with seed {seed}")
            small, sf = t.shrink(case, f, time.monotonic() + 60)
        finally:
            if name.startswith("core-debug-fault"):
                core._debug_set_fault(0)  # type: ignore[union-attr]
        rec = record_vector(small, RefGpuVm, f"corpus-planted-{name}-{serial:04d}")
        rec["note"] = (f"shrunk from seed {seed} case {i} of the harness run against the "
                       f"planted bug {name!r} ({sf.kind} mismatch at step {sf.step})")
        out.append(rec)
    if not debug_core:
        # a release core cannot re-derive the core-fault records: keep them as they are
        path = CORPUS / "planted.jsonl"
        if path.exists():
            out.extend(rec for rec in map(json.loads, path.read_text().splitlines())
                       if "-core-debug-fault-" in rec["id"])
    return out


def _dump(cases: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(c, separators=(",", ":")) + "\n" for c in cases)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="compare with the files on disk instead of writing them")
    args = ap.parse_args(argv)
    files = {"handpicked.jsonl": _dump(handpicked()), "planted.jsonl": _dump(planted())}
    bad = 0
    for name, text in files.items():
        path = CORPUS / name
        if args.check:
            same = path.exists() and path.read_text(encoding="utf-8") == text
            print(f"{path}: {'up to date' if same else 'DIFFERS'}")
            bad += not same
        else:
            CORPUS.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"{path}: {text.count(chr(10))} cases")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
