"""The results table: one row per run, written as Parquet (pyarrow).

Kernel: none (userspace tooling).

Columns, in order: ``run_key``, ``seed``, every ``pysvm simulate`` option
(named as in the config), every counter the run reported (sorted by name;
a counter a run did not report, such as ``not_ok_EBUSY`` when nothing was
refused, is 0), then ``integrity_ok``, ``mismatches``, ``wall_s`` and
``model_version``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from pysvm.outputs import OutputLog, atomic_path

from .runner import OPTIONS, Scalar

__all__ = ["TAIL_COLUMNS", "ResultsTableError", "read_rows", "write_rows"]

HEAD_COLUMNS = ("run_key", "seed")
TAIL_COLUMNS = ("integrity_ok", "mismatches", "wall_s", "model_version")

Row = dict[str, Scalar]


class ResultsTableError(ValueError):
    """An existing output file that is not a sweep results table."""


def _column_order(rows: Sequence[Row]) -> list[str]:
    seen: set[str] = set()
    for r in rows:
        seen.update(r)
    fixed = {*HEAD_COLUMNS, *OPTIONS, *TAIL_COLUMNS}
    counters = sorted(seen - fixed)
    return [*HEAD_COLUMNS, *(o for o in OPTIONS if o in seen), *counters,
            *(c for c in TAIL_COLUMNS if c in seen)]


def _pa_type(values: list[Scalar | None]) -> object:
    import pyarrow as pa

    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.bool_()
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.int64()
    if present and all(isinstance(v, int | float) and not isinstance(v, bool)
                       for v in present):
        return pa.float64()
    return pa.string()


def to_arrow(rows: Sequence[Row]) -> object:
    """A pyarrow Table of the rows (missing numeric counters filled with 0)."""
    import pyarrow as pa

    columns = {}
    for name in _column_order(rows):
        values: list[Scalar | None] = [r.get(name) for r in rows]
        typ = _pa_type(values)
        is_counter = name not in (*HEAD_COLUMNS, *OPTIONS, *TAIL_COLUMNS)
        if is_counter and typ in (pa.int64(), pa.float64()):
            values = [0 if v is None else v for v in values]
        columns[name] = pa.array(values, type=typ)
    return pa.table(columns)


def write_rows(rows: Sequence[Row], path: str | os.PathLike[str],
               log: OutputLog | None = None) -> None:
    """Write the table atomically: the old file stays whole until the new one is."""
    import pyarrow.parquet as pq

    table = to_arrow(rows)
    with atomic_path(path, log=log) as tmp:
        pq.write_table(table, tmp)


def read_rows(path: str | os.PathLike[str]) -> list[Row]:
    """The rows of an existing results table ([] if the file does not exist)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = os.fspath(path)
    if not os.path.exists(name):
        return []
    try:
        table = pq.read_table(name)
    except (pa.ArrowInvalid, OSError) as e:
        raise ResultsTableError(f"{name} exists and is not a Parquet table ({e}); "
                                f"give another -o or remove it") from None
    missing = [c for c in (*HEAD_COLUMNS, "model_version") if c not in table.column_names]
    if missing:
        raise ResultsTableError(f"{name} is not a sweep results table (no column "
                                f"{', '.join(missing)}); give another -o")
    return [dict(r) for r in table.to_pylist()]
