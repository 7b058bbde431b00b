"""Walk one GPU page fault through the code: modules crossed, cross-module calls, nesting.

Sets up one discrete device, a fault-mode VM mirroring the address space and 2 MiB of
CPU memory with data, then profiles the single ``gpu_access`` (an atomic on one page,
which faults once and migrates the 2 MiB range to VRAM) with :func:`sys.setprofile`.

Counted: Python calls whose callee lives in ``pysvm`` or ``gpuvm_core``.
* modules crossed: distinct modules entered;
* cross-module calls: calls whose caller's module differs from the callee's;
* nesting: the deepest chain of cross-module calls active at once;
* calls back from the fault handler into the SVM state module (``--pair``).

Works on this tree and on older ones (it drives the model through trace events, with
whichever replay engine the tree has). Usage::

    python tools/fault_walk.py [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from types import FrameType
from typing import Any

MIB = 1 << 20
BUF = 1 << 30

SETUP: list[dict[str, Any]] = [
    {"ev": "device", "name": "gpu0", "vram_mib": 64},
    {"ev": "vm_create", "vm": "vm0", "device": "gpu0", "fault_mode": True},
    {"ev": "bind", "vm": "vm0", "op": "map", "addr": 0, "range": 1 << 47,
     "flags": ["cpu_addr_mirror"]},
    {"ev": "mmap", "addr": BUF, "size": 2 * MIB},
    {"ev": "cpu_write", "addr": BUF, "size": 2 * MIB, "value": 7},
]
FAULT = {"ev": "gpu_access", "vm": "vm0", "addr": BUF, "size": 4096, "op": "atomic"}


def _engine() -> Any:
    try:
        from pysvm.trace.engine import Engine  # layered tree
    except ModuleNotFoundError:
        from pysvm.trace import Engine  # flat tree (before issue 11)
    return Engine()


def _module(frame: FrameType) -> str | None:
    name = frame.f_globals.get("__name__", "")
    if isinstance(name, str) and (name.startswith("pysvm") or name.startswith("gpuvm_core")):
        return name
    return None


def walk(pair: tuple[str, str]) -> dict[str, Any]:
    """Profile the fault; return the counts."""
    eng = _engine()
    for ev in SETUP:
        out = eng.execute(dict(ev))
        assert out["result"] == "ok", (ev, out)
    modules: set[str] = set()
    cross = 0
    back = 0
    by_pair: Counter[tuple[str, str]] = Counter()
    depth = 0
    max_depth = 0
    stack: list[bool] = []          # per active call: was it a cross-module call?

    def prof(frame: FrameType, event: str, _arg: object) -> None:
        nonlocal cross, back, depth, max_depth
        if event == "call":
            callee = _module(frame)
            caller = _module(frame.f_back) if frame.f_back is not None else None
            crossing = callee is not None and caller is not None and callee != caller
            if callee is not None:
                modules.add(callee)
            if crossing:
                assert caller is not None and callee is not None
                cross += 1
                by_pair[(caller, callee)] += 1
                if caller.endswith(pair[0]) and callee.endswith(pair[1]):
                    back += 1
                depth += 1
                max_depth = max(max_depth, depth)
            stack.append(crossing)
        elif event == "return" and stack and stack.pop():
            depth -= 1

    sys.setprofile(prof)
    try:
        out = eng.execute(dict(FAULT))
    finally:
        sys.setprofile(None)
    assert out["result"] == "ok" and out.get("faults") == 1, out
    return {"modules": len(modules), "cross_module_calls": cross, "max_nesting": max_depth,
            f"calls_{pair[0]}_to_{pair[1]}": back, "module_list": sorted(modules),
            "top_pairs": [f"{a} -> {b}: {n}" for (a, b), n in by_pair.most_common(8)]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the counts as JSON")
    ap.add_argument("--pair", nargs=2, default=None, metavar=("FROM", "TO"),
                    help="count calls from module FROM to module TO (suffixes); default: "
                         "the fault handler into the SVM state")
    args = ap.parse_args(argv)
    layered = "pysvm.xe" in sys.modules or _is_layered()
    pair = tuple(args.pair) if args.pair else (
        ("xe.pagefault", "xe.svm") if layered else ("fault", "svm"))
    res = walk((pair[0], pair[1]))
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"modules crossed {res['modules']}, cross-module calls "
              f"{res['cross_module_calls']}, max nesting {res['max_nesting']}, "
              f"{pair[0]} -> {pair[1]} calls {res[f'calls_{pair[0]}_to_{pair[1]}']}")
        for line in res["top_pairs"]:
            print("  " + line)
    return 0


def _is_layered() -> bool:
    try:
        import pysvm.xe  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
