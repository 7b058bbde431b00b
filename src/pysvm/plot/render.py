"""Pictures of a VM's address space and of a run's faults and migrations.

Kernel: none; it draws what ``xe_vm_query_mem_range_attrs``-style queries
(the trace ``query`` event over the whole VM) and drm_gpusvm's range list
(the trace ``ranges`` event) report at the end of a trace or simulation.

The address map has a row of VMA kinds (BO, userptr, CPU-address mirror,
NULL; ``struct xe_vma`` flags in drivers/gpu/drm/xe/xe_vm_types.h), one row
per attribute of ``xe_vma_mem_attr`` (preferred location, atomic access, PAT
index) with one bar per VMA, and a row of SVM ranges coloured by where their
pages live (system memory or a device's VRAM; hatched when the CPU side was
unmapped and the range awaits the garbage collector). Addresses are in hex,
as the kernel prints them. The x axis is zoomed to where something happens
(SVM ranges and VMAs with non-default attributes), since the mirror VMA
spans the whole 128 TiB user address space. When there are too many VMAs to
separate at the figure's width (more than one per 4 pixels), a "VMAs per
bin" row shows how many VMAs start in each pixel column, and a second map
zooms automatically on the densest stretch of :data:`ZOOM_VMAS` VMAs (marked
on the first).

The optional timeline panels show, per bin of events, GPU faults and
migrations to VRAM (up) and back to system memory (down), with device
unbinds and module unloads marked and evictions as ticks; and, for a trace,
the VRAM each device has allocated and the number of live pagemaps after
every event (``struct drm_pagemap`` lifetimes, drivers/gpu/drm/drm_pagemap.c).

Inputs are plain dicts as the trace engine prints them, so a picture can be
drawn from any trace (:func:`snapshot_from_trace`) or from a simulation
result (built by the command line from a simulation) without touching model objects.
"""

from __future__ import annotations

import json
from collections.abc import Callable
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
#: VMA kinds (the VMA kind row), in legend order.
KIND_COLOURS = {"BO": "#c0392b", "userptr": "#16a085", "CPU mirror": "#95a5a6",
                "NULL (sparse)": "#34495e", "other": "#555555"}
#: How many VMAs the automatic zoom shows (the densest stretch of that many).
ZOOM_VMAS = 120
PAGEMAP_COLOUR = "#7b2cbf"


def vma_kind(v: dict[str, Any]) -> str:
    """BO, userptr, CPU mirror or NULL: what backs a VMA (xe_vma_bo(), xe_vma_is_userptr(),
    xe_vma_is_cpu_addr_mirror(), xe_vma_is_null() in drivers/gpu/drm/xe/xe_vm.h)."""
    flags = v.get("flags", [])
    if "bo" in v:
        return "BO"
    if "userptr" in v:
        return "userptr"
    if "cpu_addr_mirror" in flags:
        return "CPU mirror"
    if "null" in flags:
        return "NULL (sparse)"
    return "other"


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
    #: (event index, VRAM bytes allocated per device, live pagemaps) after each event;
    #: filled from a trace (empty for a simulation result: no usage panel then).
    usage: list[tuple[int, dict[str, int], int]] = field(default_factory=list)


#: Events after which a VM may no longer answer a query: the map is taken just before them.
#: The first two end every VM's map; vm_destroy ends the VM it names, process_exit the VMs
#: the exiting process created (xe_file_close() closes them).
VM_ENDING_EVENTS = ("teardown", "vm_kill", "vm_destroy", "process_exit")


def _query_vm(engine: Engine, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return (engine.execute({"ev": "query", "vm": name}),     # no addr/range: the whole VM
            engine.execute({"ev": "ranges", "vm": name}))


def snapshot_from_trace(path: str | Path, vm: str | None = None,
                        timeline: bool = False, engine: Engine | None = None,
                        progress: Callable[[int], None] | None = None) -> Snapshot:
    """Replay a trace through the engine and snapshot a VM at its end.

    Kernel: none.

    Parameters
    ----------
    path : the trace (JSON Lines, docs/trace-format.md); ``-`` reads standard input.
    vm : which VM to draw; default the first one the trace creates.
    timeline : also collect per-event fault/migration counts, VRAM and pagemap use.
    progress : called with the number of characters of each line read (a progress bar).

    If the trace ends its VMs (a ``teardown`` or ``vm_kill`` event; for one VM also a
    ``vm_destroy`` of it or the ``process_exit`` of the process that created it), the map
    shows the VM as it was just before the first such event.

    Raises
    ------
    ValueError : the trace creates no VM, or names none called `vm`.
    """
    if engine is None:
        engine = Engine()
    world = engine.world
    stats = world.stats
    vms: list[str] = []
    devices: list[str] = []
    points: list[TimelinePoint] = []
    usage: list[tuple[int, dict[str, int], int]] = []
    last = dict.fromkeys(TIMELINE_COUNTERS, 0)
    before_end: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    ended_at: dict[str, str] = {}
    creator: dict[str, str] = {}          # VM -> the process that created it
    i = 0
    prev_use: tuple[dict[str, int], int] | None = None
    with open_text(path) as fh:
        for line in fh:
            if progress is not None:
                progress(len(line))
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                ev = None
            name = ev.get("ev") if isinstance(ev, dict) else None
            if name in VM_ENDING_EVENTS and isinstance(ev, dict):
                ending = (vms if name in ("teardown", "vm_kill")
                          else [v for v in vms if v == ev.get("vm")] if name == "vm_destroy"
                          else [v for v in vms if creator.get(v) == ev.get("process")])
                for v in ending:
                    if v not in before_end:
                        # Snapshot queries change no state (the engine's event count aside,
                        # which only the summary line shows, and the timeline uses deltas of
                        # other counters).
                        before_end[v] = _query_vm(engine, v)
                        ended_at[v] = f"before event {i} ({name})"
            # The engine reports a malformed line as EINVAL and goes on, as replay does.
            out = engine.execute_line(line)
            if isinstance(ev, dict) and out.get("result") == "ok":
                if name == "vm_create" and isinstance(ev.get("vm"), str):
                    vms.append(ev["vm"])
                    creator[ev["vm"]] = str(ev.get("process", "main"))
                if name == "device" and isinstance(ev.get("name"), str):
                    devices.append(ev["name"])
            if timeline:
                # The counters straight from the world's statistics: building the whole
                # summary after every event cost more than drawing the picture.
                pt = TimelinePoint(i=i, ev=str(out.get("ev")), result=str(out.get("result")))
                for key in TIMELINE_COUNTERS:
                    now = stats[key]
                    setattr(pt, key, now - last[key])
                    last[key] = now
                points.append(pt)
                # a device's VRAM in use: every tile's region
                vram = {d.name: sum(v.used for v in d.vrams) for d in world.devices.values()
                        if d.vrams}
                use = (vram, len(world.pagemaps_system.alive()))
                if use != prev_use:          # keep the changes only (a step plot)
                    usage.append((i, use[0], use[1]))
                    prev_use = use
            i += 1
    if timeline and usage and usage[-1][0] != i - 1 and prev_use is not None:
        usage.append((i - 1, prev_use[0], prev_use[1]))
    if not vms:
        raise ValueError(f"{path}: the trace creates no VM (no vm_create event) to draw")
    name = vm or vms[0]
    if name not in vms:
        raise ValueError(f"{path}: no VM named {name!r}; the trace creates {', '.join(vms)}")
    q, r = _query_vm(engine, name)
    when = f"after {i} events"
    if q.get("result") != "ok" and name in before_end:
        q, r = before_end[name]
        when = ended_at[name]
    if q.get("result") != "ok":
        raise ValueError(f"{path}: cannot query {name} at the end of the trace: "
                         f"{q.get('result')} {q.get('message', '')}".rstrip())
    title = "<stdin>" if str(path) == "-" else Path(path).name
    return Snapshot(vm=name, vmas=list(q.get("vmas", [])), ranges=list(r.get("ranges", [])),
                    devices=devices, title=f"{title}: {name} {when}",
                    timeline=points, usage=usage)


# -- drawing --------------------------------------------------------------------------------


def _size(n: int) -> str:
    """A power-of-two-ish size as people say it: 4 KiB, 2 MiB, 1 GiB."""
    for unit, name in ((1 << 40, "TiB"), (GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")):
        if n >= unit:
            return f"{n / unit:g} {name}"
    return f"{n} B"


def _fmt_addr(x: float, step: int) -> str:
    """An address tick in hex, as the kernel prints addresses (``0x%llx``).

    Ticks are multiples of a power-of-two ``step``, so they read as round hex
    numbers; a ``_`` separates groups of four digits in long addresses.

    >>> _fmt_addr(0x40200000, 2 * MiB), _fmt_addr(0x7fff_ffff_f000, 4 * KiB)
    ('0x4020_0000', '0x7fff_ffff_f000')
    """
    v = max(int(round(x / step)) * step, 0)
    digits = f"{v:x}"
    groups = []
    while digits:
        groups.append(digits[-4:])
        digits = digits[:-4]
    return "0x" + "_".join(reversed(groups)) if groups else "0x0"


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
    (thousands of small VMAs or ranges) is drawn per pixel column instead:
    each column shows the label covering most of its bytes, and columns of
    one label are merged into one bar without gaps - so a stretch where
    labels alternate faster than a pixel shows their mix, not whichever label
    happened to be drawn last. A column something covers is never empty, so
    a lone 4 KiB range still shows.
    """
    clipped = [_Seg(max(g.start, lo), min(g.end, hi), g.label, g.colour, g.hatch)
               for g in segs if min(g.end, hi) > max(g.start, lo)]
    clipped.sort(key=lambda g: g.start)
    one_px = (hi - lo) / px
    if len(clipped) * 4 <= px:
        for g in clipped:
            g.end = max(g.end, int(g.start + one_px))
        return True, clipped
    import numpy as np

    ncols = max(1, int(px))
    width = (hi - lo) / ncols
    labels: dict[str, _Seg] = {}
    for g in clipped:
        labels.setdefault(g.label, g)
    names = list(labels)
    index = {n: k for k, n in enumerate(names)}
    cover = np.zeros((len(names), ncols), dtype=np.float64)
    for g in clipped:
        a = (g.start - lo) / width
        b = (g.end - lo) / width
        ca, cb = int(a), min(int(b), ncols - 1)
        row = cover[index[g.label]]
        if ca >= ncols:
            continue
        if ca == cb:
            row[ca] += b - a
        else:
            row[ca] += ca + 1 - a
            row[ca + 1:cb] += 1.0
            row[cb] += b - cb
    best = cover.argmax(axis=0)
    covered = cover.max(axis=0) > 0
    merged: list[_Seg] = []
    col = 0
    while col < ncols:
        if not covered[col]:
            col += 1
            continue
        k = best[col]
        end = col + 1
        while end < ncols and covered[end] and best[end] == k:
            end += 1
        first = labels[names[k]]
        merged.append(_Seg(int(lo + col * width), int(lo + end * width), first.label,
                           first.colour, first.hatch))
        col = end
    return False, merged


def _zoom_window(vmas: list[dict[str, Any]], lo: int, hi: int, count: int
                 ) -> tuple[int, int]:
    """The narrowest address span holding ``count`` consecutive VMAs inside [lo, hi)."""
    starts = sorted(max(int(v["addr"]), lo) for v in vmas
                    if int(v["addr"]) < hi and int(v["addr"]) + int(v["range"]) > lo)
    if len(starts) <= count:
        return lo, hi
    best = min(range(len(starts) - count), key=lambda k: starts[k + count] - starts[k])
    a, b = starts[best], starts[best + count]
    pad = max((b - a) // 40, 4 * KiB)
    return max(a - pad, lo), min(b + pad, hi)


def _map_rows(snap: Snapshot, devices: list[str], home: str) -> tuple[list[str], list[list[_Seg]]]:
    """The address map's rows (bottom to top) and their bars."""
    rows = ["SVM ranges\n(residency)", "PAT index", "atomic access", "preferred\nlocation",
            "VMA kind"]
    segs: list[list[_Seg]] = [[] for _ in rows]
    for v in snap.vmas:
        a, e = int(v["addr"]), int(v["addr"]) + int(v["range"])
        attrs = v.get("attrs", {})
        kind = vma_kind(v)
        segs[4].append(_Seg(a, e, kind, KIND_COLOURS[kind]))
        label, colour = _preferred(devices, attrs, home)
        segs[3].append(_Seg(a, e, label, colour))
        name, colour = ATOMIC_COLOURS.get(int(attrs.get("atomic", 0)),
                                          (str(attrs.get("atomic")), "#555555"))
        segs[2].append(_Seg(a, e, name, colour))
        pat = int(attrs.get("pat_index", 0))
        dflt = int(attrs.get("default_pat_index", 0))
        segs[1].append(_Seg(a, e, f"{pat} (default)" if pat == dflt else f"{pat}",
                            PAT_COLOURS[pat % len(PAT_COLOURS)]))
    for r in snap.ranges:
        a, e = int(r["addr"]), int(r["addr"]) + int(r["range"])
        loc = str(r.get("location", "system"))
        label = "system memory" if loc == "system" else f"{loc} VRAM"
        colour = _device_colour(devices, loc)
        if r.get("unmapped"):
            segs[0].append(_Seg(a, e, f"{label}, CPU-unmapped", colour, "////"))
        else:
            segs[0].append(_Seg(a, e, label, colour))
    return rows, segs


def _draw_map(ax: Any, rows: list[str], segs: list[list[_Seg]], vmas: list[dict[str, Any]],
              lo: int, hi: int, axis_px: float, density: bool,
              legends: list[dict[str, Any]]) -> None:
    """Draw the rows of the address map over [lo, hi) into ``ax``; collect legend patches."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    span = hi - lo
    h = 0.72
    for row, row_segs in enumerate(segs):
        separated, drawn = _layout(row_segs, lo, hi, axis_px)
        groups: dict[str, list[_Seg]] = {}
        for g in drawn:
            groups.setdefault(g.label, []).append(g)
        gap_px = 4 * span / axis_px
        for label, gs in groups.items():
            first = gs[0]
            ax.broken_barh([(g.start, g.end - g.start) for g in gs], (row - h / 2, h),
                           facecolors=first.colour, edgecolors="white",
                           linewidths=[0.6 if separated and g.end - g.start >= gap_px else 0.0
                                       for g in gs],
                           hatch=first.hatch, antialiased=separated)
            legends[row][label] = Patch(facecolor=first.colour, edgecolor="#666666",
                                        linewidth=0.5, hatch=first.hatch)
    labels = list(rows)
    if density:
        # Aggregation: how many VMAs start in each pixel column (boundaries that a bar
        # row cannot show at this width), as a grey strip above the map.
        import numpy as np

        nbins = max(1, int(axis_px))
        starts = np.array([int(v["addr"]) for v in vmas
                           if lo <= int(v["addr"]) < hi], dtype=np.float64)
        counts, edges = np.histogram(starts, bins=nbins, range=(lo, hi))
        y = len(rows)
        top = max(int(counts.max()), 1) if counts.size else 1
        from matplotlib.colors import PowerNorm

        # A square-root scale: one or two VMAs per column still show against dozens.
        ax.imshow(counts[np.newaxis, :], aspect="auto", cmap="Greys",
                  norm=PowerNorm(0.5, vmin=0, vmax=top),
                  extent=(lo, hi, y - h / 2, y + h / 2), interpolation="nearest")
        labels.append(f"VMAs per bin\n(0-{top})")
    step = _tick_step(span)
    ax.set_yticks(range(len(labels)), labels, fontsize=9)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(MultipleLocator(step))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _p: _fmt_addr(x, step)))
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel(f"virtual address (hex; a tick every {_size(step)})", fontsize=9)
    ax.grid(axis="x", color="#e6e6e6", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _tick_step(span: int) -> int:
    """A power-of-two step giving at most 8 ticks (hex labels are wide)."""
    step = 4 * KiB
    while span // step > 8:
        step *= 2
    return step


def render(snap: Snapshot, out: str | Path, timeline: bool = False, dpi: int = 110) -> Path:
    """Draw the address map (a zoom when VMAs are dense, and the timeline panels) to a PNG.

    Kernel: none.

    The figure is 13 inches wide; 5 inches high, plus 2.6 for a zoom and 4.5
    (6 with VRAM/pagemap use) for the timeline, at ``dpi``. Returns the path
    written. Raises ValueError when the snapshot has no VMA.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.legend import Legend
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    if not snap.vmas:
        raise ValueError(f"{snap.vm} has no VMA to draw")
    devices = list(snap.devices)
    home = devices[0] if devices else "device"
    lo, hi = _focus(snap.vmas, snap.ranges)
    left, right = 0.10, 0.97
    axis_px = 13 * dpi * (right - left)
    in_window = sum(1 for v in snap.vmas
                    if int(v["addr"]) < hi and int(v["addr"]) + int(v["range"]) > lo)
    dense = in_window * 4 > axis_px
    with_tl = timeline and bool(snap.timeline)
    with_use = with_tl and bool(snap.usage)
    ratios = [1.3, 0.42]
    if dense:
        ratios.append(1.1)
    if with_tl:
        ratios += [0.55, 0.75] + ([0.6] if with_use else [])
    height = 5.0 + (2.6 if dense else 0) + ((6.0 if with_use else 4.5) if with_tl else 0)
    fig = plt.figure(figsize=(13, height), dpi=dpi)
    grid = fig.add_gridspec(len(ratios), 1, height_ratios=ratios, hspace=0.55, left=left,
                            right=right, top=1 - 0.8 / height, bottom=0.45 / height)
    ax = fig.add_subplot(grid[0])
    lax = fig.add_subplot(grid[1])
    lax.axis("off")
    rows, segs = _map_rows(snap, devices, home)
    legends: list[dict[str, Any]] = [{} for _ in rows]
    _draw_map(ax, rows, segs, snap.vmas, lo, hi, axis_px, dense, legends)
    n_vram = sum(1 for r in snap.ranges if str(r.get("location", "system")) != "system")
    ax.set_title(f"{snap.vm}: {len(snap.vmas):,} VMAs, {len(snap.ranges):,} SVM ranges "
                 f"({n_vram:,} in VRAM)" + (f"; {in_window:,} VMAs here are too many to "
                                           "separate: see the zoom below" if dense else ""),
                 fontsize=11, loc="left")
    nxt = 2
    if dense:
        zlo, zhi = _zoom_window(snap.vmas, lo, hi, ZOOM_VMAS)
        zx = fig.add_subplot(grid[nxt])
        nxt += 1
        _draw_map(zx, rows, segs, snap.vmas, zlo, zhi, axis_px, False, legends)
        n_z = sum(1 for v in snap.vmas if zlo <= int(v["addr"]) < zhi)
        zx.set_title(f"zoom: the densest stretch, {n_z} VMAs in {_size(zhi - zlo)} "
                     f"({_fmt_addr(zlo, 1)}-{_fmt_addr(zhi, 1)}; boxed above)",
                     fontsize=10, loc="left")
        ax.add_patch(Rectangle((zlo, -0.55), max(zhi - zlo, (hi - lo) / axis_px * 3),
                               len(rows) + 0.1, fill=False, edgecolor="#d1495b",
                               linewidth=1.2, zorder=5))
    titles = ["SVM range residency", "PAT index", "Atomic access", "Preferred location",
              "VMA kind"]
    for k, row in enumerate((4, 3, 2, 1, 0)):
        handles = legends[row]
        if not handles:
            continue
        order = ([n for n in KIND_COLOURS if n in handles] if row == 4 else sorted(handles))
        lg = Legend(lax, [handles[n] for n in order], order, title=titles[row], fontsize=8,
                    title_fontsize=9, loc="upper left", frameon=False,
                    bbox_to_anchor=(k * 0.2, 1.0), borderaxespad=0)
        lg.set_alignment("left")
        lax.add_artist(lg)
    if snap.title:
        fig.suptitle(snap.title, fontsize=9, x=left, ha="left", color="#555555")

    if with_tl:
        fx = fig.add_subplot(grid[nxt])
        mx = fig.add_subplot(grid[nxt + 1], sharex=fx)
        panels = [fx, mx]
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
        evicts = [p.i for p in pts if p.ev == "evict"]
        if evicts:
            # Evictions can be hundreds: ticks along the top of the faults panel, not lines.
            fx.plot(evicts, [1.0] * len(evicts), "|", transform=fx.get_xaxis_transform(),
                    color=MARK_EVENTS["evict"], markersize=7, clip_on=False,
                    label=f"evict event ({len(evicts)})")
        if with_use:
            ux = fig.add_subplot(grid[nxt + 2], sharex=fx)
            panels.append(ux)
            xs = [u[0] for u in snap.usage]
            names = sorted({d for u in snap.usage for d in u[1]},
                           key=lambda d: (d not in devices, devices.index(d)
                                          if d in devices else 0, d))
            for d in names:
                ux.step(xs, [u[1].get(d, 0) / MiB for u in snap.usage], where="post",
                        color=_device_colour(devices, d), linewidth=1.2,
                        label=f"{d} VRAM allocated (MiB)")
            px = ux.twinx()
            px.step(xs, [u[2] for u in snap.usage], where="post", color=PAGEMAP_COLOUR,
                    linewidth=1.0, linestyle="--", label="live pagemaps (right)")
            px.yaxis.set_major_locator(MaxNLocator(3, integer=True))
            px.tick_params(labelsize=8)
            px.set_ylabel("pagemaps", fontsize=9, color=PAGEMAP_COLOUR)
            px.set_ylim(bottom=0)
            px.spines["top"].set_visible(False)
            ux.set_ylim(bottom=0)
            ux.set_ylabel("VRAM\nMiB", fontsize=9)
            ux.set_title("VRAM allocated per device, and live pagemaps", fontsize=11,
                         loc="left")
            h1, l1 = ux.get_legend_handles_labels()
            h2, l2 = px.get_legend_handles_labels()
            ux.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower right",
                      bbox_to_anchor=(1.0, 1.0), frameon=False, ncol=4, borderaxespad=0.2)
        for tx in panels:
            seen: set[str] = set()
            for p in pts:
                if p.ev in MARK_EVENTS and p.ev != "evict":
                    # Device events are labelled once, in the faults panel's legend.
                    tx.axvline(p.i, color=MARK_EVENTS[p.ev], linewidth=0.9, alpha=0.9,
                               label=None if p.ev in seen or tx is not fx else f"{p.ev} event",
                               zorder=0)
                    seen.add(p.ev)
            tx.grid(axis="y", color="#e6e6e6", linewidth=0.6)
            tx.set_axisbelow(True)
            if tx is not panels[-1] or not with_use:
                tx.yaxis.set_major_locator(MaxNLocator(4, integer=True))
                tx.yaxis.set_major_formatter(FuncFormatter(lambda y, _p: f"{abs(y):,.0f}"))
            tx.tick_params(labelsize=8)
            for side in ("top", "right"):
                tx.spines[side].set_visible(False)
            if tx is not panels[-1] or not with_use:
                tx.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 1.0),
                          frameon=False, ncol=4, borderaxespad=0.2)
        fx.set_xlim(0, pts[-1].i + 1)
        for tx in panels[:-1]:
            tx.tick_params(labelbottom=False)
        fx.set_ylabel("faults\nper bin", fontsize=9)
        mx.set_ylabel("migrations\nper bin", fontsize=9)
        panels[-1].set_xlabel("event index" + (f" (each bar sums {int(width)} events)"
                                               if width > 1 else " (one bar per event)"),
                              fontsize=9)
        fx.set_title("GPU faults over the run", fontsize=11, loc="left")
        mx.set_title("Migrations: to VRAM above the line, to system memory below", fontsize=11,
                     loc="left")
    path = Path(out)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
