"""Sweeps end to end on the local process pool: table, resume, reproducibility, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pyarrow.parquet as pq
import pytest

from pysvm.cli.main import main
from pysvm.sweep import (
    LocalExecutor,
    SweepState,
    TaskFailed,
    parse_config,
    read_rows,
    run_simulation,
    run_sweep,
    run_tasks,
)
from pysvm.sweep.runner import MODEL_VERSION, OPTIONS, command_line
from pysvm.sweep.table import TAIL_COLUMNS

T = TypeVar("T")
R = TypeVar("R")

CONFIG = """\
seeds = {seeds}
[fixed]
steps = 25
[grid]
preferred_loc = ["device", "system"]
size = [16, 32, 64]
"""


def write_config(tmp_path: Path, seeds: str = "3") -> Path:
    p = tmp_path / "sweep.toml"
    p.write_text(CONFIG.format(seeds=seeds))
    return p


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp") or ".tmp." in p.name)


def test_sweep_with_two_jobs_writes_one_row_per_run(tmp_path: Path, capsys: Any) -> None:
    cfg = write_config(tmp_path)
    out = tmp_path / "res.parquet"
    assert main(["sweep", str(cfg), "-o", str(out), "--jobs", "2", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "18 runs (2 preferred_loc x 3 size x 3 seeds) on local, 2 job(s): 18 run now" in text
    assert "integrity     18 of 18 runs verified" in text
    table = pq.read_table(out)
    assert table.num_rows == 18
    cols = table.column_names
    assert cols[:2] == ["run_key", "seed"]
    assert cols[2:2 + len(OPTIONS)] == list(OPTIONS)
    assert cols[-len(TAIL_COLUMNS):] == list(TAIL_COLUMNS)
    for counter in ("faults", "retries", "migrations_to_vram", "bytes_to_vram", "gc_runs",
                    "vmas_alive", "ranges_in_vram", "pages_verified"):
        assert counter in cols
    rows = table.to_pylist()
    assert len({r["run_key"] for r in rows}) == 18
    assert {(r["preferred_loc"], r["size"], r["seed"]) for r in rows} == {
        (p, s, seed) for p in ("device", "system") for s in (16, 32, 64) for seed in (1, 2, 3)}
    assert all(r["steps"] == 25 and r["model_version"] == MODEL_VERSION for r in rows)
    assert all(r["integrity_ok"] for r in rows)
    assert sum(r["faults"] for r in rows) > 0
    assert leftovers(tmp_path) == []


def test_every_row_is_reproducible_from_its_parameters_and_seed(tmp_path: Path,
                                                                capsys: Any) -> None:
    cfg = parse_config({"seeds": [4, 9], "fixed": {"steps": 30},
                        "grid": {"preferred_loc": ["device", "mixed"]}})
    out = tmp_path / "r.parquet"
    run_sweep(cfg, out, LocalExecutor(2))
    rows = read_rows(out)
    assert len(rows) == 4
    for row in rows[:2]:
        params = {k: row[k] for k in OPTIONS}
        again = run_simulation(params, int(row["seed"]))
        for key, value in again.items():
            if key != "wall_s":
                assert row[key] == value, key
        # Counters the rerun did not report (refusal kinds) were filled with 0.
        for key in set(row) - set(again) - {"run_key", "seed", "model_version", *OPTIONS}:
            assert row[key] == 0, key
    # ... and so does the 'pysvm simulate' command --dry-run prints for the row.
    row = rows[-1]
    cmd = command_line({k: row[k] for k in OPTIONS}, int(row["seed"])).split()
    assert cmd[:2] == ["pysvm", "simulate"]
    capsys.readouterr()
    assert main([*cmd[1:], "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary and all(row[k] == v for k, v in summary.items())
    # Different seeds really are different runs.
    assert len({(r["faults"], r["migrations_to_vram"], r["bytes_to_vram"]) for r in rows}) > 1


def test_resume_skips_runs_already_in_the_table(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "res.parquet"
    first = SweepState()
    run_sweep(parse_config({"seeds": [1], "fixed": {"steps": 20},
                            "grid": {"preferred_loc": ["device", "system"],
                                     "size": [16, 32, 64]}}),
              out, LocalExecutor(2), state=first)
    assert (first.total, first.skipped, first.done) == (6, 0, 6)
    before = {r["run_key"]: r for r in read_rows(out)}
    second = SweepState()
    run_sweep(parse_config({"seeds": 2, "fixed": {"steps": 20},
                            "grid": {"preferred_loc": ["device", "system"],
                                     "size": [16, 32, 64]}}),
              out, LocalExecutor(2), state=second)
    assert (second.total, second.skipped, second.done) == (12, 6, 6)
    after = {r["run_key"]: r for r in read_rows(out)}
    assert len(after) == 12
    # The first six rows were not run again: even their wall times are the same.
    # (Columns new counters added read 0 in the old rows.)
    for key, row in before.items():
        assert {k: after[key][k] for k in row} == row
        assert all(after[key][k] == 0 for k in set(after[key]) - set(row))
    # The same command a third time runs nothing.
    cfg = tmp_path / "s.toml"
    cfg.write_text(CONFIG.format(seeds=2).replace("steps = 25", "steps = 20"))
    assert main(["sweep", str(cfg), "-o", str(out), "--quiet"]) == 0
    assert "0 run now, 12 already in" in capsys.readouterr().out
    assert main(["sweep", str(cfg), "-o", str(out), "--dry-run"]) == 0
    listing = capsys.readouterr().out
    assert "12 already in" in listing and listing.count("  done  ") == 12
    assert "pysvm simulate --steps 20 --seed 1 --size 16 --preferred-loc device" in listing


class InterruptAfter:
    """An executor that behaves like Ctrl-C after ``n`` results."""

    name = "local"

    def __init__(self, n: int) -> None:
        self.inner = LocalExecutor(1)
        self.n = n
        self.cancelled: bool | None = None

    def map_unordered(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[tuple[int, R]]:
        for k, item in enumerate(self.inner.map_unordered(fn, tasks)):
            if k == self.n:
                raise KeyboardInterrupt
            yield item

    def shutdown(self, cancel: bool) -> None:
        self.cancelled = cancel
        self.inner.shutdown(cancel)


def test_interruption_keeps_only_complete_tables(tmp_path: Path) -> None:
    cfg = parse_config({"seeds": 2, "fixed": {"steps": 15},
                        "grid": {"preferred_loc": ["device", "system"]}})
    out = tmp_path / "res.parquet"
    # Interrupted before any run finished: no file at all.
    ex0 = InterruptAfter(0)
    state0 = SweepState()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, out, ex0, state=state0)
    assert not out.exists() and leftovers(tmp_path) == []
    assert ex0.cancelled is True and state0.log.report() == "no output file was written"
    # Interrupted after 3 runs: a complete table of exactly those 3.
    ex3 = InterruptAfter(3)
    state3 = SweepState()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, out, ex3, state=state3)
    assert pq.read_table(out).num_rows == 3 == state3.rows_saved
    assert leftovers(tmp_path) == []
    assert state3.log.report() == f"kept {out}"
    # Resuming runs only the last one.
    state = SweepState()
    run_sweep(cfg, out, LocalExecutor(1), state=state)
    assert (state.skipped, state.done, pq.read_table(out).num_rows) == (3, 1, 4)


def test_cli_reports_what_an_interruption_kept(tmp_path: Path, capsys: Any,
                                               monkeypatch: Any) -> None:
    import pysvm.sweep

    monkeypatch.setattr(pysvm.sweep, "make_executor", lambda *a, **k: InterruptAfter(2))
    cfg = write_config(tmp_path, seeds="1")
    out = tmp_path / "res.parquet"
    assert main(["sweep", str(cfg), "-o", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"interrupted after 2 new run(s) of 6; kept {out} (2 rows); run the same command" \
        in err
    assert pq.read_table(out).num_rows == 2


def test_ctrl_c_on_a_pool_stops_cleanly_without_tracebacks(tmp_path: Path) -> None:
    cfg = tmp_path / "s.toml"
    # 1,000 runs: more than the compiled model finishes in the 6 s below (80 did)
    cfg.write_text("seeds = 500\n[fixed]\nsteps = 1000\n[grid]\nsize = [16, 32]\n")
    out = tmp_path / "res.parquet"
    exe = Path(sys.executable).with_name("pysvm")
    proc = subprocess.Popen([str(exe), "sweep", str(cfg), "-o", str(out), "--jobs", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    time.sleep(6)        # the pool is up and some runs may have finished
    os.killpg(proc.pid, signal.SIGINT)   # like Ctrl-C: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert "pysvm sweep: interrupted after" in err
    assert leftovers(tmp_path) == []
    if out.exists():
        assert f"kept {out}" in err
        assert 0 < pq.read_table(out).num_rows < 1000
    else:
        assert "no output file was written" in err


def _boom(task: int) -> int:
    if task == 2:
        raise RuntimeError("task two is broken")
    return task * 10


@pytest.mark.parametrize("jobs", [1, 2])
def test_generic_executor_maps_tasks_and_names_a_failed_one(jobs: int) -> None:
    got: dict[int, int] = {}
    run_tasks(LocalExecutor(jobs), _boom, [0, 1, 3, 4], lambda i, r: got.__setitem__(i, r))
    assert got == {0: 0, 1: 10, 2: 30, 3: 40}
    with pytest.raises(TaskFailed) as e:
        run_tasks(LocalExecutor(jobs), _boom, [0, 1, 2], lambda i, r: None)
    assert e.value.index == 2 and "RuntimeError: task two is broken" in str(e.value)
    assert "Traceback" in e.value.detail


def test_cli_errors_are_one_line(tmp_path: Path, capsys: Any) -> None:
    cfg = write_config(tmp_path)
    cases = [
        (["sweep", str(tmp_path / "nope.toml"), "-o", "x.parquet"], "no such file"),
        (["sweep", str(cfg), "-o", str(tmp_path / "no" / "r.parquet")], "does not exist"),
        (["sweep", str(cfg), "-o", "-"], "give a file name"),
        (["sweep", str(cfg), "-o", str(tmp_path)], "is a directory; give the table's file"),
        (["sweep", str(cfg), "-o", "r.parquet", "--jobs", "0"], "--jobs must be at least 1"),
        (["sweep", str(cfg), "-o", "r.parquet", "--ray-address", "x:1"],
         "--ray-address needs --executor ray"),
        (["sweep", str(cfg), "-o", "r.parquet", "--executor", "dask"], "invalid choice"),
    ]
    for argv, needle in cases:
        try:
            status = main(argv)
        except SystemExit as e:          # argparse's own usage errors
            status = int(e.code or 0)
        assert status == 2, argv
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
    notparquet = tmp_path / "notes.parquet"
    notparquet.write_text("hello")
    assert main(["sweep", str(cfg), "-o", str(notparquet)]) == 2
    assert "exists and is not a Parquet table" in capsys.readouterr().err
    assert notparquet.read_text() == "hello"
    bad_counter = tmp_path / "c.toml"
    bad_counter.write_text(CONFIG.format(seeds=1) + '[report]\ncounters = ["fautls"]\n')
    assert main(["sweep", str(bad_counter), "-o", str(tmp_path / "c.parquet")]) == 2
    assert "unknown 'fautls'" in capsys.readouterr().err
    assert not (tmp_path / "c.parquet").exists()


def test_plots_one_png_per_counter(tmp_path: Path, capsys: Any) -> None:
    pytest.importorskip("matplotlib")
    cfg = tmp_path / "s.toml"
    cfg.write_text(CONFIG.format(seeds=2).replace("steps = 25", "steps = 10")
                   + '[report]\ncounters = ["faults", "migrations_to_vram"]\n')
    plots = tmp_path / "plots"
    assert main(["sweep", str(cfg), "-o", str(tmp_path / "r.parquet"), "--jobs", "2",
                 "--plots", str(plots), "-q"]) == 0
    assert sorted(p.name for p in plots.iterdir()) == ["faults.png", "migrations_to_vram.png"]
    assert (plots / "faults.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "preferred_loc  size  faults  migrations_to_vram" in out
