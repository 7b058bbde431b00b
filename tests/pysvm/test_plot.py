"""`pysvm plot`: the PNG exists, has the expected size, and shows the colours it claims."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")
import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402

from pysvm.plot import (  # noqa: E402
    ATOMIC_COLOURS,
    DEVICE_COLOURS,
    SYSTEM_COLOUR,
    Snapshot,
    render,
    snapshot_from_trace,
)
from pysvm.simulate import TimelinePoint  # noqa: E402

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


def test_timeline_adds_a_panel(tmp_path: Path) -> None:
    out = render(synthetic(timeline=True), tmp_path / "tl.png", timeline=True, dpi=100)
    img = mpimg.imread(out)
    assert img.shape[:2] == (840, 1300)
    # The evict marker is the only mid-grey dashed line; the bars use device blue.
    assert colour_pixels(out, DEVICE_COLOURS[0]) > 2000


def test_no_vma_is_refused(tmp_path: Path) -> None:
    snap = Snapshot(vm="vm0", vmas=[], ranges=[], devices=[])
    with pytest.raises(ValueError, match="no VMA"):
        render(snap, tmp_path / "x.png")


def write_trace(path: Path, events: list[dict[str, Any]]) -> Path:
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


def cli_env() -> dict[str, str]:
    """The environment for `python -m pysvm`, finding src/ even from another directory."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
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


@pytest.mark.parametrize("args, msg", [
    (["-o", "x.png"], "give a trace file to draw, or --simulate"),
    (["t.jsonl", "-o", "x.jpg"], "must end in .png"),
    (["t.jsonl", "-o", "x.png", "--simulate"], "not both"),
    (["missing.jsonl", "-o", "x.png"], "no such file"),
    (["novm.jsonl", "-o", "x.png"], "creates no VM"),
    (["t.jsonl", "-o", "x.png", "--vm", "vm9"], "no VM named 'vm9'"),
    (["--simulate", "--devices", "1", "--unbind", "-o", "x.png"], "--unbind needs"),
])
def test_cli_plot_bad_input_one_line(tmp_path: Path, args: list[str], msg: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    write_trace(tmp_path / "t.jsonl", MADVISE_TRACE)
    write_trace(tmp_path / "novm.jsonl", MADVISE_TRACE[:2])
    monkeypatch.chdir(tmp_path)
    res = subprocess.run([sys.executable, "-m", "pysvm", "plot", *args], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path, env=cli_env())
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.count("\n") == 1 and msg in res.stderr, res.stderr
    assert not (tmp_path / "x.png").exists()
