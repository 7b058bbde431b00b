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
result (built by the command line from a simulation) without touching model objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pysvm.outputs import open_text
from pysvm.timeline import TIMELINE_COUNTERS, TimelinePoint
from pysvm.trace.engine import Engine

__all__ = ["Snapshot", "render", "snapshot_from_trace"]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

SYSTEM_COLOUR = "#a9a9a9"
FAULT_COLOUR = "#4a4a4a"
#: Device colours in device order (gpu0 first); the VM's own device is blue.
DEVICE_COLOURS = ("#2f6fb0", "#e8832a", "#3a9d5d", "#9b59b6")
ATOMIC_COLOURS = {0: ("undefined", "#dcdcdc"), 1: ("device", "#3a9d5d"),
                  2: ("global", "#8e5bb8"), 3: ("cpu", "#d1495b")}
PAT_COLOURS = ("#dcdcdc", "#f2c14e", "#5fa8d3", "#f78154", "#4d9078", "#b56576",
               "#6d597a", "#355070")
MARK_EVENTS = {"evict": "#7f7f7f", "unbind_device": "#7b2cbf", "rmmod": "#000000"}


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


#: Events after which a VM may no longer answer a query: the map is taken just before them.
VM_ENDING_EVENTS = ("teardown", "vm_kill")


def _query_vm(engine: Engine, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return (engine.execute({"ev": "query", "vm": name}),     # no addr/range: the whole VM
            engine.execute({"ev": "ranges", "vm": name}))


def snapshot_from_trace(path: str | Path, vm: str | None = None,
                        timeline: bool = False, engine: Engine | None = None) -> Snapshot:
    """Replay a trace through the engine and snapshot a VM at its end.

    Kernel: none.

    Parameters
    ----------
    path : the trace (JSON Lines, docs/trace-format.md).
    vm : which VM to draw; default the first one the trace creates.
    timeline : also collect per-event fault/migration counts.

    If the trace ends its VMs (a ``teardown`` or ``vm_kill`` event), the map
    shows the VM as it was just before the first such event.

    Raises
    ------
    ValueError : the trace creates no VM, or names none called `vm`.
    """
    if engine is None:
        engine = Engine()
    vms: list[str] = []
    devices: list[str] = []
    points: list[TimelinePoint] = []
    last: dict[str, int] = {}
    before_end: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    ended_at = ""
    i = 0
    with open_text(path) as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                ev = None
            name = ev.get("ev") if isinstance(ev, dict) else None
            if name in VM_ENDING_EVENTS and not before_end and vms:
                # Snapshot queries change no state (the engine's event count aside, which
                # only the summary line shows, and the timeline uses deltas of other counters).
                before_end = {v: _query_vm(engine, v) for v in vms}
                ended_at = f"before event {i} ({name})"
            # The engine reports a malformed line as EINVAL and goes on, as replay does.
            out = engine.execute_line(line)
            if isinstance(ev, dict) and out.get("result") == "ok":
                if name == "vm_create" and isinstance(ev.get("vm"), str):
                    vms.append(ev["vm"])
                if name == "device" and isinstance(ev.get("name"), str):
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
    q, r = _query_vm(engine, name)
    when = f"after {i} events"
    if q.get("result") != "ok" and name in before_end:
        q, r = before_end[name]
        when = ended_at
    if q.get("result") != "ok":
        raise ValueError(f"{path}: cannot query {name} at the end of the trace: "
                         f"{q.get('result')} {q.get('message', '')}".rstrip())
    return Snapshot(vm=name, vmas=list(q.get("vmas", [])), ranges=list(r.get("ranges", [])),
                    devices=devices, title=f"{Path(path).name}: {name} {when}",
                    timeline=points)


# -- drawing --------------------------------------------------------------------------------


def _tick_step(span: int) -> int:
    """A power-of-two step (memory sizes read best that way) giving 6-12 ticks."""
    step = 4 * KiB
    while span // step > 12:
        step *= 2
    return step


def _fmt_addr(x: float, step: int) -> str:
    """An address tick in the largest unit that shows every tick of ``step`` exactly.

    >>> _fmt_addr(1.25 * MiB, 256 * KiB), _fmt_addr(3 * GiB, GiB), _fmt_addr(12 * KiB, 4 * KiB)
    ('1.25 MiB', '3 GiB', '12 KiB')
    """
    for unit, name in ((GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")):
        if step >= unit // 4 or unit == KiB:
            digits = 0
            while digits < 2 and round(step / unit, digits) != step / unit:
                digits += 1
            return f"{x / unit:.{digits}f} {name}"
    raise AssertionError("unreachable")


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


@dataclass
class _Seg:
    """One bar of the address map: [start, end) in a row, with its legend label."""

    start: int
    end: int
    label: str
    colour: str
    hatch: str | None = None


def _layout(segs: list[_Seg], lo: int, hi: int, px: float) -> tuple[bool, list[_Seg]]:
    """Clip to the window and decide how to draw a row ``px`` pixels wide.

    Returns (separated, segments). A row with room for every bar (4 px each on
    average) draws each VMA or range with a white gap so their boundaries show.
    (Bars under 4 px get no gap, which would hide them.) A denser row
    (thousands of small ranges) would be all gap: there, bars of one label
    that touch are merged into one and drawn without gaps. Every bar is at
    least one pixel wide, so a 4 KiB range still shows.
    """
    clipped = [_Seg(max(g.start, lo), min(g.end, hi), g.label, g.colour, g.hatch)
               for g in segs if min(g.end, hi) > max(g.start, lo)]
    clipped.sort(key=lambda g: g.start)
    one_px = (hi - lo) / px
    if len(clipped) * 4 <= px:
        for g in clipped:
            g.end = max(g.end, int(g.start + one_px))
        return True, clipped
    merged: list[_Seg] = []
    for g in clipped:
        last = merged[-1] if merged else None
        if last is not None and last.label == g.label and last.end >= g.start:
            last.end = max(last.end, g.end)
        else:
            merged.append(g)
    for g in merged:
        g.end = max(g.end, int(g.start + one_px))
    return False, merged


def render(snap: Snapshot, out: str | Path, timeline: bool = False, dpi: int = 110) -> Path:
    """Draw the address map (and the timeline panels) to a PNG file.

    Kernel: none.

    The figure is 13 x 5 inches (13 x 9 with the timeline) at ``dpi``.
    Returns the path written. Raises ValueError when the snapshot has no VMA.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.legend import Legend
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MaxNLocator, MultipleLocator

    if not snap.vmas:
        raise ValueError(f"{snap.vm} has no VMA to draw")
    devices = list(snap.devices)
    home = devices[0] if devices else "device"
    lo, hi = _focus(snap.vmas, snap.ranges)
    span = hi - lo
    with_tl = timeline and bool(snap.timeline)
    ratios = [1.15, 0.42, 0.55, 0.75] if with_tl else [1.15, 0.42]
    left, right = 0.09, 0.97
    fig = plt.figure(figsize=(13, 9.0 if with_tl else 5.0), dpi=dpi)
    grid = fig.add_gridspec(len(ratios), 1, height_ratios=ratios, hspace=0.45, left=left,
                            right=right, top=0.91 if with_tl else 0.86,
                            bottom=0.06 if with_tl else 0.07)
    ax = fig.add_subplot(grid[0])
    lax = fig.add_subplot(grid[1])
    lax.axis("off")
    rows = ["SVM ranges\n(residency)", "PAT index", "atomic access", "preferred\nlocation"]
    segs: list[list[_Seg]] = [[] for _ in rows]

    for v in snap.vmas:
        a, e = int(v["addr"]), int(v["addr"]) + int(v["range"])
        attrs = v.get("attrs", {})
        label, colour = _preferred(devices, attrs, home)
        segs[3].append(_Seg(a, e, label, colour))
        name, colour = ATOMIC_COLOURS.get(int(attrs.get("atomic", 0)),
                                          (str(attrs.get("atomic")), "#555555"))
        segs[2].append(_Seg(a, e, name, colour))
        pat = int(attrs.get("pat_index", 0))
        dflt = int(attrs.get("default_pat_index", 0))
        segs[1].append(_Seg(a, e, f"{pat} (default)" if pat == dflt else f"{pat}",
                            PAT_COLOURS[pat % len(PAT_COLOURS)]))
    n_vram = 0
    for r in snap.ranges:
        a, e = int(r["addr"]), int(r["addr"]) + int(r["range"])
        loc = str(r.get("location", "system"))
        n_vram += loc != "system"
        label = "system memory" if loc == "system" else f"{loc} VRAM"
        colour = _device_colour(devices, loc)
        if r.get("unmapped"):
            segs[0].append(_Seg(a, e, f"{label}, CPU-unmapped", colour, "////"))
        else:
            segs[0].append(_Seg(a, e, label, colour))

    axis_px = 13 * dpi * (right - left)
    h = 0.72
    legends: list[dict[str, Patch]] = [{} for _ in rows]
    for row, row_segs in enumerate(segs):
        separated, drawn = _layout(row_segs, lo, hi, axis_px)
        groups: dict[str, list[_Seg]] = {}
        for g in drawn:
            groups.setdefault(g.label, []).append(g)
        for label, gs in groups.items():
            first = gs[0]
            gap_px = 4 * span / axis_px
            ax.broken_barh([(g.start, g.end - g.start) for g in gs], (row - h / 2, h),
                           facecolors=first.colour, edgecolors="white",
                           linewidths=[0.6 if separated and g.end - g.start >= gap_px else 0.0
                                       for g in gs],
                           hatch=first.hatch, antialiased=separated)
            legends[row][label] = Patch(facecolor=first.colour, edgecolor="#666666",
                                        linewidth=0.5, hatch=first.hatch)
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
    step = _tick_step(span)
    ax.set_yticks(range(len(rows)), rows, fontsize=9)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(MultipleLocator(step))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _p: _fmt_addr(x, step)))
    ax.set_xlabel("virtual address", fontsize=9)
    ax.grid(axis="x", color="#e6e6e6", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"{snap.vm}: {len(snap.vmas)} VMAs, {len(snap.ranges)} SVM ranges "
                 f"({n_vram} in VRAM)", fontsize=11, loc="left")
    if snap.title:
        fig.suptitle(snap.title, fontsize=9, x=left, ha="left", color="#555555")

    if with_tl:
        fx = fig.add_subplot(grid[2])
        mx = fig.add_subplot(grid[3], sharex=fx)
        pts = snap.timeline
        centres, sums = _bin(pts, 160)
        width = centres[1] - centres[0] if len(centres) > 1 else 1.0
        fx.bar(centres, sums["faults"], width=width, color=FAULT_COLOUR, label="GPU faults")
        if any(sums["retries"]):
            fx.bar(centres, sums["retries"], width=width * 0.5, color="#d1495b",
                   label="fault retries")
        mx.bar(centres, sums["migrations_to_vram"], width=width, color=DEVICE_COLOURS[0],
               label="to VRAM")
        mx.bar(centres, [-x for x in sums["migrations_to_system"]], width=width,
               color=SYSTEM_COLOUR, label="to system memory")
        mx.axhline(0, color="#444444", linewidth=0.6)
        for tx in (fx, mx):
            seen: set[str] = set()
            for p in pts:
                if p.ev in MARK_EVENTS:
                    # Device events are labelled once, in the faults panel's legend.
                    tx.axvline(p.i, color=MARK_EVENTS[p.ev], linewidth=0.9,
                               alpha=0.6 if p.ev == "evict" else 0.9,
                               linestyle="--" if p.ev == "evict" else "-",
                               label=None if p.ev in seen or tx is mx else f"{p.ev} event",
                               zorder=0)
                    seen.add(p.ev)
            tx.grid(axis="y", color="#e6e6e6", linewidth=0.6)
            tx.set_axisbelow(True)
            tx.yaxis.set_major_locator(MaxNLocator(4, integer=True))
            tx.yaxis.set_major_formatter(FuncFormatter(lambda y, _p: f"{abs(y):,.0f}"))
            tx.tick_params(labelsize=8)
            for side in ("top", "right"):
                tx.spines[side].set_visible(False)
            tx.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False,
                      ncol=4, borderaxespad=0.2)
        fx.set_xlim(0, pts[-1].i + 1)
        fx.tick_params(labelbottom=False)
        fx.set_ylabel("faults\nper bin", fontsize=9)
        mx.set_ylabel("migrations\nper bin", fontsize=9)
        mx.set_xlabel("event index" + (f" (each bar sums {int(width)} events)" if width > 1
                                       else " (one bar per event)"), fontsize=9)
        fx.set_title("GPU faults over the run", fontsize=11, loc="left")
        mx.set_title("Migrations: to VRAM above the line, to system memory below", fontsize=11,
                     loc="left")
    path = Path(out)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
