"""The summary printout and comparison plots of a sweep.

Kernel: none (userspace tooling).

Both average each counter over the seeds of a grid point (mean and sample
standard deviation). The plots draw one PNG per counter: the ``x`` option
along the x axis, one line per value of ``group_by`` (and of any other grid
option), error bars of one standard deviation.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Sequence

from pysvm.outputs import OutputLog, atomic_path

from .config import SweepConfig
from .runner import Scalar

__all__ = ["format_summary", "grid_means", "write_plots"]

Row = dict[str, Scalar]


def _num(v: Scalar | None) -> float:
    return float(v) if isinstance(v, int | float) else 0.0


def grid_means(config: SweepConfig, rows: Sequence[Row], counter: str
               ) -> dict[tuple[Scalar, ...], tuple[float, float, int]]:
    """Grid point (values in [grid] order) -> (mean, sd, runs) of ``counter`` over seeds."""
    names = list(config.grid)
    groups: dict[tuple[Scalar, ...], list[float]] = {}
    for r in rows:
        groups.setdefault(tuple(r[n] for n in names), []).append(_num(r.get(counter)))
    out = {}
    for point, vals in groups.items():
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        out[point] = (statistics.fmean(vals), sd, len(vals))
    return out


def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 1e6:
        return f"{x:.3g}"
    if abs(x) >= 100 or x == int(x):
        return f"{x:.0f}"
    return f"{x:.2f}"


def format_summary(config: SweepConfig, rows: Sequence[Row]) -> str:
    """Mean of each counter of interest per grid point, and the data check."""
    names = list(config.grid)
    bad = sum(1 for r in rows if not r.get("integrity_ok", True))
    lines = [f"  integrity     {len(rows) - bad} of {len(rows)} runs verified"
             + (f", {bad} with DATA MISMATCHES" if bad else "")]
    means = {c: grid_means(config, rows, c) for c in config.counters}
    points = sorted({tuple(r[n] for n in names) for r in rows},
                    key=lambda p: [config.grid[n].index(v) for n, v in zip(names, p,
                                                                            strict=True)])
    header = [*names, *(f"{c}" for c in config.counters)]
    table = [header]
    for p in points:
        table.append([*(str(v) for v in p), *(_fmt(means[c][p][0]) for c in config.counters)])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines.append(f"  mean over {len(config.seeds)} seed(s) per grid point:")
    for row in table:
        lines.append("    " + "  ".join(cell.rjust(w) if i >= len(names) else cell.ljust(w)
                                       for i, (cell, w) in enumerate(zip(row, widths,
                                                                         strict=True))))
    return "\n".join(lines)


def write_plots(config: SweepConfig, rows: Sequence[Row], directory: str,
                log: OutputLog | None = None) -> list[str]:
    """One PNG per counter in ``directory`` (created); the paths written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        raise ValueError("--plots needs matplotlib: pip install 'gpuvm-svm[plot]'") from None
    os.makedirs(directory, exist_ok=True)
    names = list(config.grid)
    x = config.x
    others = [n for n in names if n != x]
    written = []
    for counter in config.counters:
        means = grid_means(config, rows, counter)
        fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
        series: dict[tuple[Scalar, ...], list[tuple[int, float, float]]] = {}
        for point, (m, sd, _n) in means.items():
            values = dict(zip(names, point, strict=True))
            label = tuple(values[n] for n in others)
            xi = config.grid[x].index(values[x]) if x else 0
            series.setdefault(label, []).append((xi, m, sd))
        order = sorted(series, key=lambda lab: [config.grid[n].index(v)
                                               for n, v in zip(others, lab, strict=True)])
        width = 0.8 / max(1, len(order))
        for k, lab in enumerate(order):
            pts = sorted(series[lab])
            text = ", ".join(f"{n}={v}" for n, v in zip(others, lab, strict=True))
            xs = [p[0] for p in pts]
            ms = [p[1] for p in pts]
            sds = [0.0 if math.isnan(p[2]) else p[2] for p in pts]
            if x:
                ax.errorbar(xs, ms, yerr=sds, marker="o", capsize=3, label=text)
            else:
                ax.bar([k * width], ms, width=width, yerr=sds, capsize=3, label=text)
        if x:
            ax.set_xticks(range(len(config.grid[x])), [str(v) for v in config.grid[x]])
            ax.set_xlabel(x)
        else:
            ax.set_xticks([])
        ax.set_ylabel(f"{counter} (mean ± sd over {len(config.seeds)} seeds)")
        ax.set_title(f"{counter} by {', '.join(others) or x}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        path = os.path.join(directory, f"{counter}.png")
        try:
            with atomic_path(path, log=log) as tmp:
                fig.savefig(tmp, dpi=100)
        finally:
            plt.close(fig)
        written.append(path)
    return written
