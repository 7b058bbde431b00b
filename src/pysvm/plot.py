"""Pictures of a VM's address space and of a run's faults and migrations.

Kernel: none; it draws what ``xe_vm_query_mem_range_attrs``-style queries
(the trace ``query`` event over the whole VM) and drm_gpusvm's range list
(the trace ``ranges`` event) report at the end of a trace or simulation.

The address map has one row per attribute of ``xe_vma_mem_attr``
(preferred location, atomic access, PAT index) with one bar per VMA, and a
row of SVM ranges coloured by where their pages live (system memory or a
device's VRAM; hatched when the CPU side was unmapped and the range awaits
the garbage collector). The x axis is zoomed to where something happens
(SVM ranges and VMAs with non-default attributes), since the mirror VMA
spans the whole 128 TiB user address space.

The optional timeline panel shows, per bin of events, GPU faults and
migrations to VRAM (up) and back to system memory (down), with device
evictions and unbinds marked.

Inputs are plain dicts as the trace engine prints them, so a picture can be
drawn from any trace (:func:`snapshot_from_trace`) or from a simulation
result (:func:`snapshot_from_result`) without touching model objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pysvm.simulate import TIMELINE_COUNTERS, TimelinePoint

__all__ = ["Snapshot", "render", "snapshot_from_result", "snapshot_from_trace"]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

SYSTEM_COLOUR = "#a9a9a9"
#: Device colours in device order (gpu0 first); the VM's own device is blue.
DEVICE_COLOURS = ("#2f6fb0", "#e8832a", "#3a9d5d", "#9b59b6")
ATOMIC_COLOURS = {0: ("undefined", "#dcdcdc"), 1: ("device", "#3a9d5d"),
                  2: ("global", "#8e5bb8"), 3: ("cpu", "#d1495b")}
PAT_COLOURS = ("#dcdcdc", "#f2c14e", "#5fa8d3", "#f78154", "#4d9078", "#b56576",
               "#6d597a", "#355070")
MARK_EVENTS = {"evict": "#7f7f7f", "unbind_device": "#d1495b", "rmmod": "#000000"}


@dataclass
class Snapshot:
    """A VM's address space at one moment, plus the run's per-event timeline.

    Kernel: none (a picture's input).
    """

    vm: str
    vmas: list[dict[str, Any]]
    ranges: list[dict[str, Any]]
    devices: list[str]
    title: str = ""
    timeline: list[TimelinePoint] = field(default_factory=list)


def snapshot_from_result(res: Any) -> Snapshot:
    """Snapshot of a :class:`pysvm.simulate.SimResult`.

    Kernel: none.
    """
    c = res.config
    title = (f"pysvm simulate --seed {c.seed} --profile {c.profile} --devices {c.devices} "
             f"--steps {c.steps}")
    return Snapshot(vm="vm0", vmas=list(res.vmas), ranges=list(res.ranges),
                    devices=list(res.devices), title=title, timeline=list(res.timeline))


def snapshot_from_trace(path: str | Path, vm: str | None = None,
                        timeline: bool = False, engine: Any = None) -> Snapshot:
    """Replay a trace through the engine and snapshot a VM at its end.

    Kernel: none.

    Parameters
    ----------
    path : the trace (JSON Lines, TRACE.md).
    vm : which VM to draw; default the first one the trace creates.
    timeline : also collect per-event fault/migration counts.

    Raises
    ------
    ValueError : the trace creates no VM, or names none called `vm`.
    """
    if engine is None:
        from pysvm.trace import Engine
        engine = Engine()
    vms: list[str] = []
    devices: list[str] = []
    points: list[TimelinePoint] = []
    last: dict[str, int] = {}
    i = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            # The engine reports a malformed line as EINVAL and goes on, as replay does.
            out = engine.execute_line(line)
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                ev = None
            if isinstance(ev, dict) and out.get("result") == "ok":
                if ev.get("ev") == "vm_create" and isinstance(ev.get("vm"), str):
                    vms.append(ev["vm"])
                if ev.get("ev") == "device" and isinstance(ev.get("name"), str):
                    devices.append(ev["name"])
            if timeline:
                counts = engine.summary()
                pt = TimelinePoint(i=i, ev=str(out.get("ev")), result=str(out.get("result")))
                for key in TIMELINE_COUNTERS:
                    now = int(counts.get(key, 0))
                    setattr(pt, key, now - last.get(key, 0))
                    last[key] = now
                points.append(pt)
            i += 1
    if not vms:
        raise ValueError(f"{path}: the trace creates no VM (no vm_create event) to draw")
    name = vm or vms[0]
    if name not in vms:
        raise ValueError(f"{path}: no VM named {name!r}; the trace creates {', '.join(vms)}")
    q = engine.execute({"ev": "query", "vm": name})     # the whole VM
    if q.get("result") != "ok":
        raise ValueError(f"{path}: cannot query {name} at the end of the trace: "
                         f"{q.get('result')} {q.get('message', '')}".rstrip())
    r = engine.execute({"ev": "ranges", "vm": name})
    return Snapshot(vm=name, vmas=list(q.get("vmas", [])), ranges=list(r.get("ranges", [])),
                    devices=devices, title=f"{Path(path).name}: {name} after {i} events",
                    timeline=points)


# -- drawing --------------------------------------------------------------------------------


def _tick_step(span: int) -> int:
    """A power-of-two step (memory sizes read best that way) giving 6-12 ticks."""
    step = 4 * KiB
    while span // step > 12:
        step *= 2
    return step


def _fmt_addr(x: float, span: float) -> str:
    if span >= 8 * GiB:
        return f"{x / GiB:.0f} GiB"
    if span >= 16 * MiB:
        return f"{x / MiB:.0f} MiB"
    if span >= 2 * MiB:
        return f"{x / MiB:.1f} MiB"
    return f"{x / KiB:.0f} KiB"


def _focus(vmas: list[dict[str, Any]], ranges: list[dict[str, Any]]) -> tuple[int, int]:
    """Address window to draw: where ranges and non-default VMAs are, with a margin."""
    spans = [(int(r["addr"]), int(r["addr"]) + int(r["range"])) for r in ranges]
    for v in vmas:
        a = v.get("attrs", {})
        nondefault = (a.get("devmem_fd", 0) != 0 or a.get("atomic", 0) != 0
                      or a.get("pat_index") != a.get("default_pat_index")
                      or "cpu_addr_mirror" not in v.get("flags", []))
        if nondefault:
            spans.append((int(v["addr"]), int(v["addr"]) + int(v["range"])))
    if not spans:
        spans = [(int(v["addr"]), int(v["addr"]) + int(v["range"])) for v in vmas] or [(0, MiB)]
    lo = min(s for s, _ in spans)
    hi = max(e for _, e in spans)
    pad = max((hi - lo) // 30, 64 * KiB)
    return max(lo - pad, 0), hi + pad


def _device_colour(devices: list[str], name: str) -> str:
    if name == "system":
        return SYSTEM_COLOUR
    if name not in devices:
        devices.append(name)
    return DEVICE_COLOURS[devices.index(name) % len(DEVICE_COLOURS)]


def _preferred(devices: list[str], attrs: dict[str, Any], home: str) -> tuple[str, str]:
    fd = attrs.get("devmem_fd", 0)
    if fd == 0:
        return f"{home} VRAM (faulting device)", _device_colour(devices, home)
    if fd == -1:
        return "system memory", SYSTEM_COLOUR
    if isinstance(fd, str):
        return f"{fd} VRAM (peer)", _device_colour(devices, fd)
    return f"fd {fd}", "#555555"


def _bin(points: list[TimelinePoint], nbins: int) -> tuple[list[float], dict[str, list[int]]]:
    n = points[-1].i + 1 if points else 1
    width = max(1, -(-n // nbins))
    sums: dict[str, list[int]] = {k: [0] * (-(-n // width)) for k in TIMELINE_COUNTERS}
    for p in points:
        for k in TIMELINE_COUNTERS:
            sums[k][p.i // width] += int(getattr(p, k))
    centres = [(b + 0.5) * width for b in range(len(sums["faults"]))]
    return centres, sums


def render(snap: Snapshot, out: str | Path, timeline: bool = False, dpi: int = 110) -> Path:
    """Draw the address map (and the timeline panel) to a PNG file.

    Kernel: none.

    Returns the path written. Raises ValueError when the snapshot has no VMA.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.legend import Legend
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    if not snap.vmas:
        raise ValueError(f"{snap.vm} has no VMA to draw")
    devices = list(snap.devices)
    home = devices[0] if devices else "device"
    lo, hi = _focus(snap.vmas, snap.ranges)
    span = hi - lo
    with_tl = timeline and bool(snap.timeline)
    ratios = [1.15, 0.42, 1.0] if with_tl else [1.15, 0.42]
    fig = plt.figure(figsize=(13, 8.4 if with_tl else 5.0), dpi=dpi)
    grid = fig.add_gridspec(len(ratios), 1, height_ratios=ratios, hspace=0.35, left=0.09,
                            right=0.97, top=0.9 if with_tl else 0.86, bottom=0.07)
    ax = fig.add_subplot(grid[0])
    lax = fig.add_subplot(grid[1])
    lax.axis("off")
    rows = ["SVM ranges\n(residency)", "PAT index", "atomic access", "preferred\nlocation"]
    legends: list[dict[str, Any]] = [{} for _ in rows]
    h = 0.72

    def bar(row: int, a: int, e: int, colour: str, label: str, **kw: Any) -> None:
        s, t = max(a, lo), min(e, hi)
        if t <= s:
            return
        ax.broken_barh([(s, t - s)], (row - h / 2, h), facecolors=colour,
                       edgecolors="white", linewidth=0.6, **kw)
        legends[row].setdefault(label, Patch(facecolor=colour, edgecolor="#666666",
                                             linewidth=0.5, **kw))

    for v in snap.vmas:
        a, e = int(v["addr"]), int(v["addr"]) + int(v["range"])
        attrs = v.get("attrs", {})
        label, colour = _preferred(devices, attrs, home)
        bar(3, a, e, colour, label)
        name, colour = ATOMIC_COLOURS.get(int(attrs.get("atomic", 0)),
                                          (str(attrs.get("atomic")), "#555555"))
        bar(2, a, e, colour, name)
        pat = int(attrs.get("pat_index", 0))
        dflt = int(attrs.get("default_pat_index", 0))
        bar(1, a, e, PAT_COLOURS[pat % len(PAT_COLOURS)],
            f"{pat} (default)" if pat == dflt else f"{pat}")
    n_vram = 0
    for r in snap.ranges:
        a, e = int(r["addr"]), int(r["addr"]) + int(r["range"])
        loc = str(r.get("location", "system"))
        n_vram += loc != "system"
        label = "system memory" if loc == "system" else f"{loc} VRAM"
        colour = _device_colour(devices, loc)
        if r.get("unmapped"):
            bar(0, a, e, colour, f"{label}, CPU-unmapped", hatch="////")
        else:
            bar(0, a, e, colour, label)
    titles = ["SVM range residency", "PAT index", "Atomic access", "Preferred location"]
    for k, row in enumerate((3, 2, 1, 0)):
        handles = legends[row]
        if not handles:
            continue
        order = sorted(handles)
        lg = Legend(lax, [handles[n] for n in order], order, title=titles[row], fontsize=8,
                    title_fontsize=9, loc="upper left", frameon=False,
                    bbox_to_anchor=(k * 0.25, 1.0), borderaxespad=0)
        lg.set_alignment("left")
        lax.add_artist(lg)
    ax.set_yticks(range(len(rows)), rows, fontsize=9)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(MultipleLocator(_tick_step(span)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _p: _fmt_addr(x, span)))
    ax.set_xlabel("virtual address", fontsize=9)
    ax.grid(axis="x", color="#e6e6e6", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"{snap.vm}: {len(snap.vmas)} VMAs, {len(snap.ranges)} SVM ranges "
                 f"({n_vram} in VRAM)", fontsize=11, loc="left")
    if snap.title:
        fig.suptitle(snap.title, fontsize=9, x=0.09, ha="left", color="#555555")

    if with_tl:
        tx = fig.add_subplot(grid[2])
        pts = snap.timeline
        centres, sums = _bin(pts, 160)
        width = centres[1] - centres[0] if len(centres) > 1 else 1.0
        tx.bar(centres, sums["migrations_to_vram"], width=width, color=DEVICE_COLOURS[0],
               label="migrations to VRAM")
        tx.bar(centres, [-x for x in sums["migrations_to_system"]], width=width,
               color=SYSTEM_COLOUR, label="migrations to system")
        tx.step(centres, sums["faults"], where="mid", color="#222222", linewidth=1.0,
                label="GPU faults")
        if any(sums["retries"]):
            tx.step(centres, sums["retries"], where="mid", color="#d1495b", linewidth=1.0,
                    label="fault retries")
        seen: set[str] = set()
        for p in pts:
            if p.ev in MARK_EVENTS:
                tx.axvline(p.i, color=MARK_EVENTS[p.ev], linewidth=0.8,
                           alpha=0.35 if p.ev == "evict" else 0.9,
                           linestyle="--" if p.ev == "evict" else "-",
                           label=None if p.ev in seen else f"{p.ev} event")
                seen.add(p.ev)
        tx.axhline(0, color="#444444", linewidth=0.6)
        tx.set_xlim(0, pts[-1].i + 1)
        tx.set_xlabel(f"event index (bins of {int(width)} events)", fontsize=9)
        tx.set_ylabel("count per bin\n(to system: below 0)", fontsize=9)
        tx.set_title("Faults and migrations over the run", fontsize=11, loc="left", pad=22)
        tx.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.0), frameon=False,
                  ncol=6, borderaxespad=0.2)
        tx.grid(axis="y", color="#e6e6e6", linewidth=0.6)
        tx.set_axisbelow(True)
        for side in ("top", "right"):
            tx.spines[side].set_visible(False)
    path = Path(out)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def timeline_from_outputs(events: Iterable[tuple[dict[str, Any], dict[str, Any]]]
                          ) -> list[TimelinePoint]:
    """Timeline from (event, output) pairs using only per-event output fields.

    Kernel: none. Migrations are not in per-event outputs, so only faults and
    retries are filled in; prefer the engine-summary deltas when available.
    """
    pts = []
    for i, (ev, out) in enumerate(events):
        pts.append(TimelinePoint(i=i, ev=str(ev.get("ev")), result=str(out.get("result")),
                                 faults=int(out.get("faults", 0) or 0),
                                 retries=int(out.get("retries", 0) or 0)))
    return pts
