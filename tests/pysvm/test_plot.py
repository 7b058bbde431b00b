"""`pysvm plot`: the PNG exists, has the expected size, and shows the colours it claims."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg  # the test extra installs matplotlib: no skip
import numpy as np
import pytest

from pysvm.plot.render import (
    ATOMIC_COLOURS,
    DEVICE_COLOURS,
    FAULT_COLOUR,
    KIND_COLOURS,
    PAGEMAP_COLOUR,
    PAT_COLOURS,
    SYSTEM_COLOUR,
    ZOOM_VMAS,
    Snapshot,
    _fmt_addr,
    _zoom_window,
    render,
    snapshot_from_trace,
    vma_kind,
)
from pysvm.sim.workload import TimelinePoint

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


def _rgb(hexcol: str) -> np.ndarray:
    return np.array([int(hexcol[k:k + 2], 16) / 255 for k in (1, 3, 5)])


def colour_pixels(png: Path, hexcol: str, tol: float = 0.02) -> int:
    img = mpimg.imread(png)[..., :3]
    return int((np.abs(img - _rgb(hexcol)).max(axis=-1) < tol).sum())


def vma(addr: int, size: int, fd: Any = 0, atomic: int = 0, pat: int = 0) -> dict[str, Any]:
    return {"addr": addr, "range": size, "flags": ["cpu_addr_mirror"],
            "attrs": {"devmem_fd": fd, "migration_policy": 0, "atomic": atomic,
                      "pat_index": pat, "default_pat_index": 0}}


def synthetic(timeline: bool = False) -> Snapshot:
    vmas = [vma(0, GiB), vma(GiB, 8 * MiB, fd=-1, atomic=1), vma(GiB + 8 * MiB, 8 * MiB, pat=2),
            vma(GiB + 16 * MiB, (1 << 47) - GiB - 16 * MiB)]
    ranges = [{"addr": GiB + k * 2 * MiB, "range": 2 * MiB,
               "location": ["system", "gpu0", "gpu1"][k % 3], "unmapped": k == 5}
              for k in range(9)]
    pts = [TimelinePoint(i=i, ev="evict" if i == 50 else "gpu_access", result="ok",
                         faults=i % 3, migrations_to_vram=i % 2, migrations_to_system=i % 5 == 0)
           for i in range(120)]
    return Snapshot(vm="vm0", vmas=vmas, ranges=ranges, devices=["gpu0", "gpu1"],
                    title="synthetic", timeline=pts if timeline else [])


def test_address_map_shows_each_residency_and_attribute(tmp_path: Path) -> None:
    out = render(synthetic(), tmp_path / "map.png", dpi=100)
    assert 20_000 < out.stat().st_size < 2_000_000
    img = mpimg.imread(out)
    assert img.shape[:2] == (500, 1300)          # figsize (13, 5.0) at 100 dpi
    for colour in (SYSTEM_COLOUR, DEVICE_COLOURS[0], DEVICE_COLOURS[1],
                   ATOMIC_COLOURS[1][1]):
        assert colour_pixels(out, colour) > 500, colour


def test_timeline_adds_fault_and_migration_panels(tmp_path: Path) -> None:
    plain = render(synthetic(), tmp_path / "map.png", dpi=100)
    out = render(synthetic(timeline=True), tmp_path / "tl.png", timeline=True, dpi=100)
    img = mpimg.imread(out)
    assert img.shape[:2] == (950, 1300)          # figsize (13, 5.0 + 4.5) at 100 dpi
    lower = tmp_path / "lower.png"                # the part below the address map
    mpimg.imsave(lower, img[520:, :, :3])
    faults = colour_pixels(lower, FAULT_COLOUR)
    assert faults > 20_000                                        # fault bars
    assert colour_pixels(lower, DEVICE_COLOURS[0]) > 10_000       # migrations to VRAM
    assert colour_pixels(lower, SYSTEM_COLOUR) > 5_000            # migrations to system
    assert colour_pixels(plain, FAULT_COLOUR) < faults / 20       # only text shades there


def _residency(n: int, size: int) -> Snapshot:
    """n adjacent SVM ranges of `size` bytes on gpu1 (orange: no VMA uses that colour)."""
    ranges = [{"addr": GiB + k * size, "range": size, "location": "gpu1", "unmapped": False}
              for k in range(n)]
    return Snapshot(vm="vm0", vmas=[vma(0, 1 << 47)], ranges=ranges, devices=["gpu0", "gpu1"])


def test_dense_rows_stay_solid(tmp_path: Path) -> None:
    # 4000 adjacent 4 KiB ranges: drawn one by one with white gaps the row would be mostly
    # white; merged, it is one solid bar across the window.
    out = render(_residency(4000, 4 * KiB), tmp_path / "dense.png", dpi=100)
    img = mpimg.imread(out)[..., :3]
    orange = np.abs(img - _rgb(DEVICE_COLOURS[1])).max(axis=-1) < 0.02
    line = orange[orange.sum(axis=1).argmax()]          # the pixel row through the bars
    assert line.sum() > 0.8 * 1300 * 0.88 * 0.9, line.sum()
    assert np.count_nonzero(np.diff(line.nonzero()[0]) > 1) == 0      # no gap


def test_few_bars_keep_their_boundaries(tmp_path: Path) -> None:
    out = render(_residency(8, 2 * MiB), tmp_path / "few.png", dpi=100)
    img = mpimg.imread(out)[..., :3]
    orange = np.abs(img - _rgb(DEVICE_COLOURS[1])).max(axis=-1) < 0.02
    line = orange[orange.sum(axis=1).argmax()]
    assert np.count_nonzero(np.diff(line.nonzero()[0]) > 1) == 7       # 8 bars, 7 gaps


@pytest.mark.parametrize(("x", "step", "text"), [
    (1.25 * MiB, 256 * KiB, "0x14_0000"), (3 * GiB, GiB, "0xc000_0000"),
    (12 * KiB, 4 * KiB, "0x3000"), (1024 * MiB, 4 * MiB, "0x4000_0000"),
    (0x40200000 + 17, 2 * MiB, "0x4020_0000"),        # a tick a float off still reads round
    ((1 << 47) - 4096, 4 * KiB, "0x7fff_ffff_f000"), (0, 4 * KiB, "0x0"),
])
def test_address_ticks_are_hex(x: float, step: int, text: str) -> None:
    assert _fmt_addr(x, step) == text


def test_vma_kind_row(tmp_path: Path) -> None:
    snap = synthetic()
    bo = {**vma(GiB + 32 * MiB, 8 * MiB), "flags": [], "bo": "bo1", "offset": 0}
    up = {**vma(GiB + 40 * MiB, 8 * MiB), "flags": [], "userptr": 0}
    null = {**vma(GiB + 48 * MiB, 8 * MiB), "flags": ["null"]}
    assert [vma_kind(v) for v in (bo, up, null, snap.vmas[0])] == \
        ["BO", "userptr", "NULL (sparse)", "CPU mirror"]
    snap.vmas[-1:] = [bo, up, null, vma(GiB + 56 * MiB, (1 << 47) - GiB - 56 * MiB)]
    out = render(snap, tmp_path / "kinds.png", dpi=100)
    for kind in ("BO", "userptr", "NULL (sparse)", "CPU mirror"):
        assert colour_pixels(out, KIND_COLOURS[kind]) > 300, kind


def _many_vmas(n: int) -> Snapshot:
    """n VMAs alternating PAT 0/1: 4 KiB each in the first half, 64 KiB after."""
    vmas, addr = [], GiB
    for k in range(n):
        size = 4 * KiB if k < n // 2 else 64 * KiB
        vmas.append(vma(addr, size, pat=k % 2))
        addr += size
    return Snapshot(vm="vm0", vmas=[vma(0, GiB), *vmas], ranges=[], devices=["gpu0"])


def test_too_many_vmas_get_a_density_row_and_an_automatic_zoom(tmp_path: Path) -> None:
    snap = _many_vmas(5000)
    lo, hi = GiB, GiB + 2500 * 4 * KiB + 2500 * 64 * KiB
    zlo, zhi = _zoom_window(snap.vmas, lo, hi, ZOOM_VMAS)
    # The densest stretch: ZOOM_VMAS of the 4 KiB VMAs, with a small margin.
    assert zlo >= GiB and zhi - zlo < ZOOM_VMAS * 4 * KiB * 1.1
    few = render(_many_vmas(100), tmp_path / "few.png", dpi=100)
    many = render(snap, tmp_path / "many.png", dpi=100)
    assert mpimg.imread(few).shape[:2] == (500, 1300)           # no zoom for 100 VMAs
    img = mpimg.imread(many)
    assert img.shape[:2] == (760, 1300)                          # 5.0 + 2.6 inches: the zoom
    # The overview's PAT row shows the mix where PAT 0 and 1 alternate faster than a
    # pixel (about half its columns yellow), not whichever colour was drawn last.
    top = img[:450, :, :3]
    ty = np.abs(top - _rgb(PAT_COLOURS[1])).max(axis=-1) < 0.02
    pat_line = ty[ty.sum(axis=1).argmax()][700:1150]            # the 64 KiB VMAs
    assert 0.25 < pat_line.mean() < 0.75, pat_line.mean()
    # In the zoom the PAT row alternates colour bar by bar: its boundaries are visible.
    zoom = img[450:, :, :3]
    yellow = np.abs(zoom - _rgb(PAT_COLOURS[1])).max(axis=-1) < 0.02
    line = yellow[yellow.sum(axis=1).argmax()]
    assert np.count_nonzero(np.diff(line.nonzero()[0]) > 1) >= ZOOM_VMAS // 2 - 5


def test_trace_timeline_has_vram_and_pagemap_use(tmp_path: Path) -> None:
    from pysvm.cli.main import main

    trace = tmp_path / "t.jsonl"
    assert main(["simulate", "--steps", "300", "-q", "--record", str(trace)]) == 0
    seen: list[int] = []
    snap = snapshot_from_trace(trace, timeline=True, progress=seen.append)
    assert sum(seen) == len(trace.read_text())           # progress saw every character
    assert len(snap.timeline) == len(trace.read_text().splitlines())
    assert any(sum(u[1].values()) > 0 for u in snap.usage)       # VRAM was allocated
    assert {u[2] for u in snap.usage} >= {2}                     # two devices' pagemaps
    assert [u[0] for u in snap.usage] == sorted({u[0] for u in snap.usage})
    out = render(snap, tmp_path / "use.png", timeline=True, dpi=100)
    img = mpimg.imread(out)
    assert img.shape[0] in (1100, 1360)       # 5 + 6 inches (+ 2.6 when zoomed)
    assert colour_pixels(out, PAGEMAP_COLOUR) > 200


def test_trace_timeline_counts_every_tiles_vram(tmp_path: Path) -> None:
    # A two-tile device's VRAM in use is both tiles' regions: with pages only in tile 1
    # the timeline must not read 0 (it read tile 0's region only).
    trace = write_trace(tmp_path / "t.jsonl", [
        {"ev": "device", "name": "gpu0", "vram_mib": 8, "tiles": 2},
        {"ev": "vm_create", "vm": "vm0", "device": "gpu0", "fault_mode": True},
        {"ev": "bind", "vm": "vm0", "op": "map", "addr": 0, "range": 1 << 47,
         "flags": ["cpu_addr_mirror"]},
        {"ev": "mmap", "addr": 1 << 30, "size": 2 << 20},
        {"ev": "gpu_access", "vm": "vm0", "addr": 1 << 30, "size": 2 << 20, "op": "write",
         "value": 1, "tile": 1},
    ])
    snap = snapshot_from_trace(trace, timeline=True)
    assert snap.usage[-1][1] == {"gpu0": 2 << 20}


def test_no_vma_is_refused(tmp_path: Path) -> None:
    snap = Snapshot(vm="vm0", vmas=[], ranges=[], devices=[])
    with pytest.raises(ValueError, match="no VMA"):
        render(snap, tmp_path / "x.png")


def write_trace(path: Path, events: list[Any]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


MADVISE_TRACE = [
    {"ev": "config", "profile": "6.18"},
    {"ev": "device", "name": "gpu0", "vram_mib": 64, "discrete": True, "smem_atomics": False},
    {"ev": "vm_create", "vm": "vm0", "device": "gpu0", "fault_mode": True},
    {"ev": "bind", "vm": "vm0", "op": "map", "addr": 0, "range": 1 << 47,
     "flags": ["cpu_addr_mirror"], "pat_index": 0},
    {"ev": "madvise", "vm": "vm0", "addr": GiB, "range": 16 * MiB, "type": "atomic", "val": 1},
    {"ev": "madvise", "vm": "vm0", "addr": GiB + 4 * MiB, "range": 4 * MiB,
     "type": "preferred_loc", "devmem_fd": -1, "migration_policy": 0},
    {"ev": "madvise", "vm": "vm0", "addr": GiB + 12 * MiB, "range": 8 * MiB,
     "type": "atomic", "val": 3},
]


def test_snapshot_from_trace_reads_vmas_through_the_engine(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "t.jsonl", MADVISE_TRACE)
    snap = snapshot_from_trace(trace)
    assert snap.vm == "vm0" and snap.devices == ["gpu0"]
    bounds = [(v["addr"], v["range"], v["attrs"]["atomic"], v["attrs"]["devmem_fd"])
              for v in snap.vmas]
    assert (GiB + 4 * MiB, 4 * MiB, 1, -1) in bounds
    # madvise never merges: the atomic=cpu advice spans two VMAs cut by the first advice.
    assert (GiB + 12 * MiB, 4 * MiB, 3, 0) in bounds
    assert (GiB + 16 * MiB, 4 * MiB, 3, 0) in bounds
    out = render(snap, tmp_path / "t.png", dpi=80)
    assert colour_pixels(out, ATOMIC_COLOURS[3][1]) > 200        # atomic=cpu red
    assert colour_pixels(out, ATOMIC_COLOURS[1][1]) > 200        # atomic=device green


def test_trace_that_tears_down_is_drawn_before_the_teardown(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "t.jsonl", [*MADVISE_TRACE, {"ev": "teardown"}])
    snap = snapshot_from_trace(trace)
    assert snap.title == f"t.jsonl: vm0 before event {len(MADVISE_TRACE)} (teardown)"
    assert any(v["attrs"]["atomic"] == 3 for v in snap.vmas)


def cli_env() -> dict[str, str]:
    """The environment for `python -m pysvm`: the interpreter's own install (editable or
    a wheel), never the checkout's src/ (which has no compiled core of its own)."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pysvm", *args], capture_output=True,
                          text=True, timeout=300, env=cli_env())


def test_cli_plot_of_a_trace(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "t.jsonl", MADVISE_TRACE)
    out = tmp_path / "cli.png"
    res = run_cli("plot", str(trace), "-o", str(out), "--timeline")
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 20_000
    assert "vm0" in res.stdout


@pytest.mark.parametrize("ending", [{"ev": "vm_destroy", "vm": "vm0"},
                                    {"ev": "process_exit", "process": "main"}])
def test_a_destroyed_vm_or_exited_process_is_drawn_before_it_ended(
        tmp_path: Path, ending: dict[str, Any]) -> None:
    trace = write_trace(tmp_path / "t.jsonl", [*MADVISE_TRACE, ending, {"ev": "teardown"}])
    snap = snapshot_from_trace(trace)
    assert snap.title == f"t.jsonl: vm0 before event {len(MADVISE_TRACE)} ({ending['ev']})"
    assert any(v["attrs"]["atomic"] == 3 for v in snap.vmas)


def test_a_child_process_vm_is_drawn_before_the_child_exits(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "t.jsonl", [
        {"ev": "device", "name": "gpu0"}, {"ev": "process_start", "name": "c"},
        {"ev": "vm_create", "vm": "vmc", "device": "gpu0", "fault_mode": True,
         "process": "c"},
        {"ev": "bind", "vm": "vmc", "op": "map", "addr": 0, "range": 1 << 47,
         "flags": ["cpu_addr_mirror"]},
        {"ev": "mmap", "addr": GiB, "size": 2 * MiB, "process": "c"},
        {"ev": "gpu_access", "vm": "vmc", "addr": GiB, "size": 4096, "op": "write",
         "value": 1},
        {"ev": "process_exit", "process": "main"},     # not vmc's process: no snapshot
        {"ev": "process_exit", "process": "c"}])
    snap = snapshot_from_trace(trace)
    assert snap.title == "t.jsonl: vmc before event 7 (process_exit)"
    assert [r["addr"] for r in snap.ranges] == [GiB]
