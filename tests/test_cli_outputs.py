"""Every command's outputs are whole or absent, and the conventions are the same everywhere.

Each command is interrupted (a simulated Ctrl-C: ``KeyboardInterrupt`` raised
in the middle of writing an output) and must leave no file, no temporary file,
exit 130 and say what it kept. ``simulate --record`` and ``fuzz --jobs 2``
also get a real SIGINT in a subprocess (tests/fuzz/test_fuzz_campaign.py has
the fuzz one). ``--json`` prints JSON on standard output in every command,
``--json-out FILE`` writes it, ``-`` is standard input/output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pysvm.cli.bench as bench_cli
import pysvm.cli.common as common
import pysvm.cli.simulate as simulate_cli
import pysvm.fuzz.target as fuzz_target
from gpuvm_core.recorder import write_records
from pysvm.cli.main import main

TINY_BENCH = ["bench", "--sizes", "100", "--m", "10", "--ref-m", "0", "--no-memory",
              "--no-progress"]


def _files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def _interrupt_after(n: int, real: Callable[..., Any]) -> Callable[..., Any]:
    """``real``, but the n-th call raises KeyboardInterrupt (like Ctrl-C at that moment)."""
    calls = [0]

    def wrapped(*a: Any, **kw: Any) -> Any:
        calls[0] += 1
        if calls[0] >= n:
            raise KeyboardInterrupt
        return real(*a, **kw)
    return wrapped


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_simulate_record_interrupted_mid_trace(here: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    real = simulate_cli.simulate

    def half(cfg: Any, record: Any = None, progress: Any = None) -> Any:
        record.write('{"ev":"config","profile":"6.18"}\n' * 50)    # half a trace ...
        record.flush()
        assert _files(here) and not (here / "r.jsonl").exists()    # ... in a temporary file
        raise KeyboardInterrupt
    monkeypatch.setattr(simulate_cli, "simulate", half)
    assert main(["simulate", "--steps", "20", "--record", "r.jsonl", "-q"]) == 130
    assert _files(here) == []
    assert "pysvm simulate: interrupted; not written (left unchanged) r.jsonl" \
        in capsys.readouterr().err
    monkeypatch.setattr(simulate_cli, "simulate", real)


def test_simulate_json_out_interrupted_keeps_the_whole_trace(
        here: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "s.json").write_text("old\n")
    real = json.dumps

    def summary_dumps(obj: Any, **kw: Any) -> str:
        if kw.get("indent"):             # the summary, not a trace line
            raise KeyboardInterrupt
        return real(obj, **kw)
    monkeypatch.setattr(simulate_cli.json, "dumps", summary_dumps)
    assert main(["simulate", "--steps", "20", "--record", "r.jsonl", "--json-out", "s.json",
                 "-q"]) == 130
    monkeypatch.undo()
    assert _files(here) == ["r.jsonl", "s.json"]
    assert (here / "s.json").read_text() == "old\n"          # the previous file, untouched
    err = capsys.readouterr().err
    assert "kept r.jsonl; not written (left unchanged) s.json" in err
    assert main(["replay", str(here / "r.jsonl")]) == 0      # the kept trace is whole


@pytest.mark.parametrize("argv", [
    ["simulate", "--steps", "20", "-q", "--plot", "m.png"],
    ["plot", "--simulate", "--steps", "20", "-q", "-o", "m.png"],
])
def test_png_interrupted_mid_write(argv: list[str], here: Path,
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    def half(snap: Any, path: Any, timeline: bool = False) -> None:
        Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
        raise KeyboardInterrupt
    monkeypatch.setattr(common, "render", half)
    assert main(argv) == 130
    assert _files(here) == []
    assert "not written (left unchanged) m.png" in capsys.readouterr().err


def test_plot_of_a_trace_interrupted(here: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--steps", "20", "-q", "--record", "t.jsonl"]) == 0
    import pysvm.cli.plot as plot_cli

    def half(snap: Any, path: Any, timeline: bool = False) -> None:
        Path(path).write_bytes(b"\x89PNG")
        raise KeyboardInterrupt
    monkeypatch.setattr(plot_cli, "render", half)
    assert main(["plot", "t.jsonl", "-o", "t.png"]) == 130
    assert _files(here) == ["t.jsonl"]
    assert "not written (left unchanged) t.png" in capsys.readouterr().err


def test_bench_json_out_interrupted(here: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    def half(obj: Any, fh: Any, **kw: Any) -> None:
        fh.write('{"machine": ')
        raise KeyboardInterrupt
    monkeypatch.setattr(bench_cli.json, "dump", half)
    assert main([*TINY_BENCH, "--json-out", "b.json"]) == 130
    assert _files(here) == []
    assert "pysvm bench: interrupted; not written (left unchanged) b.json" \
        in capsys.readouterr().err


@pytest.mark.pure_model   # plants a bug
def test_fuzz_failing_case_interrupted_mid_write(here: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # The 3rd event line of the shrunk trace is where Ctrl-C lands.
    monkeypatch.setattr(fuzz_target.json, "dumps", _interrupt_after(3, json.dumps))
    rc = main(["fuzz", "--seconds", "120", "--max-cases", "12", "--max-steps", "40",
               "--profile", "6.18", "--shrink-seconds", "2", "--plant",
               "gc-skips-set_default_attr", "--data", "d", "--out", "f", "-q"])
    assert rc == 130
    assert [f for f in _files(here) if f.startswith("f")] in ([], ["f"])
    assert not [f for f in _files(here) if f.endswith(".tmp")]
    assert "pysvm fuzz: interrupted after 0 of 1 shard(s)" in capsys.readouterr().err


def test_fuzz_tables_interrupted_mid_write(here: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow.parquet as pq

    def half(table: Any, where: Any, **kw: Any) -> None:
        Path(where).write_bytes(b"PAR1")
        raise KeyboardInterrupt
    monkeypatch.setattr(pq, "write_table", half)
    # Ctrl-C while the tables are written (and again while they are saved on the way out).
    assert main(["fuzz", "--seconds", "60", "--max-cases", "2", "--max-steps", "10", "--data",
                 "d", "-q"]) == 130
    assert _files(here) == ["d"]
    assert ("interrupted after 1 of 1 shard(s); not written (left unchanged) "
            "d/findings.parquet") in capsys.readouterr().err


def test_conformance_record_writer_interrupted(here: Path) -> None:
    def cases() -> Any:
        yield {"id": "a"}
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        write_records(here / "v.jsonl.gz", cases())
    assert _files(here) == []


def test_igt_interrupted_says_what_it_kept(here: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import pysvm.cli.igt as igt_cli

    monkeypatch.setattr(igt_cli, "_one", _interrupt_after(2, igt_cli._one))
    assert main(["igt", "-k", "once-*", "--profile", "6.18", "--record", "tr"]) == 130
    err = capsys.readouterr().err
    assert "pysvm igt: interrupted after 1 of" in err and "finished subtests are in tr" in err
    traces = [f for f in _files(here) if f.endswith(".jsonl")]
    assert len(traces) == 1 and not [f for f in _files(here) if "tmp" in f]


def test_simulate_record_to_stdout_and_replay_from_stdin(here: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    assert main(["simulate", "--steps", "20", "-q", "--record", "-"]) == 0
    cap = capsys.readouterr()
    lines = cap.out.splitlines()
    assert lines and all(json.loads(line)["ev"] for line in lines)   # only the trace
    assert "recorded" in cap.err and "events to -" in cap.err        # the summary: stderr
    assert _files(here) == []                                        # no file named '-'
    exe = Path(sys.executable).with_name("pysvm")
    done = subprocess.run([str(exe), "replay", "-"], input=cap.out, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and '"summary"' in done.stdout.splitlines()[-1]


def test_json_means_stdout_in_every_command(here: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--steps", "20", "-q", "--json"]) == 0
    assert "summary" in json.loads(capsys.readouterr().out)
    assert main([*TINY_BENCH, "--json"]) == 0
    cap = capsys.readouterr()
    assert "rows" in json.loads(cap.out) and "W1" in cap.err       # the table: stderr
    assert main(["igt", "-k", "once-malloc", "--profile", "6.18", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["summary"]["passed"] >= 1
    assert _files(here) == []


def test_json_out_writes_a_file_and_the_old_bench_spelling_still_works(
        here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--steps", "20", "-q", "--json-out", "s.json"]) == 0
    assert "summary" in json.loads((here / "s.json").read_text())
    assert "json          s.json" in capsys.readouterr().out
    assert main([*TINY_BENCH, "--json", "old.json"]) == 0
    assert "rows" in json.loads((here / "old.json").read_text())
    assert "--json FILE is deprecated; write --json-out old.json" in capsys.readouterr().err


def test_plot_png_to_stdout(here: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    assert main(["plot", "--simulate", "--steps", "20", "-q", "-o", "-"]) == 0
    cap = capfdbinary.readouterr()
    assert cap.out.startswith(b"\x89PNG\r\n\x1a\n") and b"simulation seed" in cap.err
    assert _files(here) == []


def test_binary_input_refused_the_same_way_everywhere(here: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    (here / "b.bin").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(128, 256)))
    for argv in (["replay", "b.bin"], ["plot", "b.bin", "-o", "x.png"],
                 ["conformance", "b.bin"], ["fuzz", "--replay", "b.bin"],
                 ["sweep", "b.bin", "-o", "r.parquet"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "error: b.bin: not a text file (byte 7: NUL byte" in err, (argv, err)


def test_real_sigint_during_simulate_record(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("pysvm")
    proc = subprocess.Popen([str(exe), "simulate", "--steps", "1000000", "--record",
                             "r.jsonl", "-q"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not [p for p in tmp_path.iterdir() if p.name.startswith(".r.jsonl")]:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    time.sleep(1.0)                         # well inside the run, the trace half-written
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    assert "pysvm simulate: interrupted; not written (left unchanged) r.jsonl" in err
    assert list(tmp_path.iterdir()) == []
