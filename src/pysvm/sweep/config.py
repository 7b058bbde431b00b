"""The sweep configuration file (TOML) and its strict validation.

Kernel: none (userspace tooling).

Format::

    seeds = 10                      # a count (seeds 1..10) or a list [1, 5, 9]

    [fixed]                         # simulate options held constant (optional)
    steps = 300

    [grid]                          # simulate options and the values to try
    preferred_loc = ["device", "system"]
    size = [32, 64, 128]

    [report]                        # optional: what the summary and plots show
    group_by = "preferred_loc"      # one line/colour per value (default: first grid key)
    x = "size"                      # x axis (default: the next grid key, if any)
    counters = ["faults", "migrations_to_vram"]

Option names are those of ``pysvm simulate`` without the leading dashes and
with underscores for dashes (``--preferred-loc`` -> ``preferred_loc``,
``--size`` -> ``size``). Anything the file names that is not known - a
table, a key, an option, a value of the wrong type, a combination
``pysvm simulate`` would refuse - is an error naming it, before anything runs.
"""

from __future__ import annotations

import difflib
import itertools
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pysvm.outputs import read_text

from .runner import OPTIONS, Scalar, default_params, make_config

__all__ = [
    "DEFAULT_COUNTERS",
    "MAX_RUNS",
    "SweepConfig",
    "SweepConfigError",
    "load_config",
    "parse_config",
]

#: Counters the summary and plots show unless ``[report] counters`` says otherwise.
DEFAULT_COUNTERS = ("faults", "retries", "migrations_to_vram", "migrations_to_system",
                    "bytes_to_vram", "evictions_pressure", "gc_runs", "ranges_in_vram")

#: A grid larger than this is refused as a likely typo (a count of seeds too large).
MAX_RUNS = 1_000_000

_TOP_KEYS = ("seeds", "fixed", "grid", "report")
_REPORT_KEYS = ("group_by", "x", "counters")


class SweepConfigError(ValueError):
    """A sweep configuration that cannot be run, with one sentence saying why."""


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep: fixed options, grid options with their values, seeds.

    Kernel: none.
    """

    grid: dict[str, list[Scalar]]
    seeds: list[int]
    fixed: dict[str, Scalar] = field(default_factory=dict)
    group_by: str | None = None
    x: str | None = None
    counters: tuple[str, ...] = DEFAULT_COUNTERS
    #: Where it came from, for messages.
    source: str = "<config>"

    def points(self) -> list[dict[str, Scalar]]:
        """Every grid point: all options resolved (defaults, fixed, grid), grid order."""
        base = default_params()
        base.update(self.fixed)
        names = list(self.grid)
        out = []
        for values in itertools.product(*(self.grid[n] for n in names)):
            p = dict(base)
            p.update(zip(names, values, strict=True))
            out.append(p)
        return out

    @property
    def n_runs(self) -> int:
        n = len(self.seeds)
        for values in self.grid.values():
            n *= len(values)
        return n


def _unknown(what: str, name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {name!r}{hint}; known: {', '.join(known)}"


def _check_value(src: str, where: str, name: str, value: object) -> Scalar:
    opt = OPTIONS[name]
    # TOML booleans are Python bools, and bool is an int subclass: keep them apart.
    ok = isinstance(value, opt.type) and (opt.type is bool or not isinstance(value, bool))
    if not ok:
        raise SweepConfigError(f"{src}: {where}{name} = {value!r}: {opt.flag} takes "
                               f"{'true/false' if opt.type is bool else opt.type.__name__} "
                               f"values")
    assert isinstance(value, bool | int | float | str)
    return value


def _check_option_name(src: str, table: str, name: str) -> None:
    if name == "seed":
        raise SweepConfigError(f"{src}: [{table}] seed: give seeds with the top-level key "
                               f"'seeds' (a count or a list)")
    if name not in OPTIONS:
        hint = {"heap_mib": "size"}.get(name.replace("-", "_"))
        if "-" in name and name.replace("-", "_") in OPTIONS:
            hint = name.replace("-", "_")
        msg = _unknown("simulate option", name, list(OPTIONS))
        if hint:
            msg = f"unknown simulate option {name!r} (write {hint!r}); known: " \
                  f"{', '.join(OPTIONS)}"
        raise SweepConfigError(f"{src}: [{table}] {msg}")


#: The largest seed a sweep accepts: the results table's ``seed`` column is int64.
MAX_SEED = (1 << 63) - 1


def _seeds(src: str, value: object) -> list[int]:
    if isinstance(value, bool) or not isinstance(value, int | list):
        raise SweepConfigError(f"{src}: seeds must be a count or a list of integers, "
                               f"got {value!r}")
    if isinstance(value, int):
        if not 1 <= value <= MAX_RUNS:
            raise SweepConfigError(f"{src}: seeds = {value}: a count must be in "
                                   f"[1, {MAX_RUNS}]")
        return list(range(1, value + 1))
    if not value:
        raise SweepConfigError(f"{src}: seeds = []: give at least one seed")
    seeds: list[int] = []
    for s in value:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise SweepConfigError(f"{src}: seeds: {s!r} is not a non-negative integer")
        if s > MAX_SEED:
            raise SweepConfigError(f"{src}: seeds: {s} is past {MAX_SEED} (the results "
                                   "table keeps seeds as 64-bit signed integers)")
        if s in seeds:
            raise SweepConfigError(f"{src}: seeds: {s} is listed twice")
        seeds.append(s)
    return seeds


def parse_config(data: Mapping[str, object], source: str = "<config>") -> SweepConfig:
    """Validate a decoded TOML document (SweepConfigError naming what is wrong)."""
    src = source
    for key in data:
        if key not in _TOP_KEYS:
            raise SweepConfigError(f"{src}: {_unknown('key', key, _TOP_KEYS)}")
    if "seeds" not in data:
        raise SweepConfigError(f"{src}: missing 'seeds' (a count like 10, or a list of seeds)")
    seeds = _seeds(src, data["seeds"])

    tables: dict[str, Mapping[str, object]] = {}
    for name in ("fixed", "grid", "report"):
        t = data.get(name, {})
        if not isinstance(t, Mapping):
            raise SweepConfigError(f"{src}: '{name}' must be a table ([{name}])")
        tables[name] = t

    fixed: dict[str, Scalar] = {}
    for name, value in tables["fixed"].items():
        _check_option_name(src, "fixed", name)
        fixed[name] = _check_value(src, "[fixed] ", name, value)

    grid: dict[str, list[Scalar]] = {}
    if not tables["grid"]:
        raise SweepConfigError(f"{src}: [grid] is missing or empty: name at least one "
                               f"simulate option and the values to try")
    for name, values in tables["grid"].items():
        _check_option_name(src, "grid", name)
        if name in fixed:
            raise SweepConfigError(f"{src}: {name} is in both [fixed] and [grid]")
        if not isinstance(values, list) or not values:
            raise SweepConfigError(f"{src}: [grid] {name} = {values!r}: give a non-empty "
                                   f"list of values (one value belongs in [fixed])")
        checked: list[Scalar] = []
        for v in values:
            cv = _check_value(src, "[grid] ", name, v)
            if cv in checked:
                raise SweepConfigError(f"{src}: [grid] {name}: {v!r} is listed twice")
            checked.append(cv)
        grid[name] = checked

    report = tables["report"]
    for key in report:
        if key not in _REPORT_KEYS:
            raise SweepConfigError(f"{src}: [report] {_unknown('key', key, _REPORT_KEYS)}")
    names = list(grid)
    group_by = report.get("group_by", names[0])
    x = report.get("x", next((n for n in names if n != group_by), None))
    for key, val in (("group_by", group_by), ("x", x)):
        if val is None and key == "x":
            continue
        if not isinstance(val, str) or val not in grid:
            raise SweepConfigError(f"{src}: [report] {key} = {val!r}: must name a [grid] "
                                   f"option ({', '.join(names)})")
    if x is not None and x == group_by:
        raise SweepConfigError(f"{src}: [report] x and group_by are both {x!r}")
    counters = report.get("counters", list(DEFAULT_COUNTERS))
    if (not isinstance(counters, list) or not counters
            or not all(isinstance(c, str) for c in counters)):
        raise SweepConfigError(f"{src}: [report] counters must be a non-empty list of "
                               f"counter names")

    cfg = SweepConfig(grid=grid, seeds=seeds, fixed=fixed, group_by=str(group_by),
                      x=None if x is None else str(x), counters=tuple(counters), source=src)
    if cfg.n_runs > MAX_RUNS:
        raise SweepConfigError(f"{src}: {cfg.n_runs} runs is more than {MAX_RUNS}")
    # Refuse a combination simulate would refuse now, not half-way through.
    for point in cfg.points():
        try:
            make_config(point, seeds[0])
        except ValueError as e:
            row = ", ".join(f"{n}={point[n]!r}" for n in grid)
            raise SweepConfigError(f"{src}: grid point {row}: {e}") from None
    return cfg


def load_config(path: str | os.PathLike[str]) -> SweepConfig:
    """Read and validate a sweep TOML file."""
    name = os.fspath(path)
    text = read_text(name)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SweepConfigError(f"{name}: not valid TOML ({e})") from None
    return parse_config(data, source=name)
