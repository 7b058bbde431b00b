"""Trace generators for the SVM-layer performance targets.

Each function returns the trace as a list of JSON Lines (``str``) that
``pysvm replay`` and :class:`pysvm.trace.engine.Engine` accept. Write them to a file
with ``python -m benchmarks.svm_traces NAME OUT.jsonl [GIB]``:

``first_touch``
    One discrete device with enough VRAM, a VM mirroring the CPU address space,
    ``GIB`` GiB of fresh anonymous memory written by the CPU, then written by the GPU
    (one 2 MiB first-touch fault per chunk: 2,048 for 4 GiB, all migrated to VRAM),
    read back by the GPU, incremented with GPU atomics, and unmapped.
``oversub``
    ``GIB`` GiB touched by the GPU through ``GIB / 2`` GiB of VRAM: written, then
    incremented with atomics 1 GiB at a time (VRAM pressure evicts the oldest
    ranges), sampled back from the CPU 1 MiB per GiB, and unmapped. Large spans
    are sent as 1 GiB events so no result line holds millions of values.

The default simulation's trace comes from the simulator itself
(``pysvm simulate --record FILE``, defaults); :func:`default_sim` writes it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["first_touch", "oversub", "default_sim", "write"]

GIB = 1 << 30
MIB = 1 << 20
BASE = 1 << 32          # heap start: 4 GiB, 2 MiB aligned


def _line(**ev: object) -> str:
    return json.dumps(ev, separators=(",", ":"))


def _setup(vram_mib: int) -> list[str]:
    return [
        _line(ev="device", name="gpu0", vram_mib=vram_mib, discrete=True),
        _line(ev="vm_create", vm="vm0", device="gpu0", fault_mode=True),
        _line(ev="bind", vm="vm0", op="map", addr=0, range=1 << 47,
              flags=["cpu_addr_mirror"], pat_index=0),
    ]


def first_touch(gib: int = 4) -> list[str]:
    """CPU write, GPU write (first-touch faults), GPU read, GPU atomics, munmap."""
    size = gib * GIB
    out = _setup(vram_mib=gib * 1024 + 256)
    out.append(_line(ev="mmap", addr=BASE, size=size))
    out.append(_line(ev="cpu_write", addr=BASE, size=size, value=1))
    out.append(_line(ev="gpu_access", vm="vm0", addr=BASE, size=size, op="write", value=2))
    out.append(_line(ev="gpu_access", vm="vm0", addr=BASE, size=size, op="read"))
    out.append(_line(ev="gpu_access", vm="vm0", addr=BASE, size=size, op="atomic"))
    out.append(_line(ev="munmap", addr=BASE, size=size))
    return out


def oversub(gib: int = 16) -> list[str]:
    """``gib`` GiB through ``gib / 2`` GiB of VRAM, 1 GiB per event."""
    size = gib * GIB
    out = _setup(vram_mib=gib * 512)
    out.append(_line(ev="mmap", addr=BASE, size=size))
    for op in ("write", "atomic"):
        for i in range(gib):
            out.append(_line(ev="gpu_access", vm="vm0", addr=BASE + i * GIB, size=GIB,
                             op=op, value=3))
    for i in range(gib):
        out.append(_line(ev="cpu_read", addr=BASE + i * GIB, size=MIB))
    out.append(_line(ev="munmap", addr=BASE, size=size))
    return out


def default_sim(path: Path) -> None:
    """Record the default simulation (``pysvm simulate --record``) to ``path``."""
    try:
        from pysvm.cli.main import main
    except ImportError:         # an older checkout: pysvm.cli was one module
        from pysvm.cli import main  # type: ignore[assignment]
    rc = main(["simulate", "--quiet", "--record", str(path)])
    if rc not in (0, None):
        raise SystemExit(f"simulate failed with {rc}")


def write(lines: list[str], path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    name, dest = sys.argv[1], Path(sys.argv[2])
    arg = int(sys.argv[3]) if len(sys.argv) > 3 else None
    if name == "first_touch":
        write(first_touch(arg or 4), dest)
    elif name == "oversub":
        write(oversub(arg or 16), dest)
    elif name == "default_sim":
        default_sim(dest)
    else:
        raise SystemExit(f"unknown trace {name!r}: first_touch, oversub or default_sim")
