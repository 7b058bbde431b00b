"""The pysvm console script: help with examples, conformance, and one-line errors for bad input."""

from __future__ import annotations

import builtins
import gzip
import importlib.resources
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pysvm.cli.main import COMMANDS, first_example, main

DATA = Path(__file__).parent / "data" / "gpuvm-public.jsonl.gz"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pysvm", *args], capture_output=True, text=True,
                          timeout=300)


def call(argv: list[str]) -> int:
    """main() in-process; argparse's exits become a return code."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code or 0)


# -- help ----------------------------------------------------------------------------------


def test_help_lists_every_command_with_an_example() -> None:
    res = run_cli("--help")
    assert res.returncode == 0 and res.stderr == ""
    for name in COMMANDS:
        lines = res.stdout.splitlines()
        k = next(i for i, ln in enumerate(lines) if ln.split()[:1] == [name])
        assert lines[k + 1].strip().startswith(f"e.g. pysvm {name}"), lines[k:k + 2]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_help_has_an_example(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert call([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert "example:" in out
    assert first_example(out).startswith(f"pysvm {name}")


def test_first_example_reads_the_example_section() -> None:
    text = "Does things.\n\nexample:\n  pysvm x --a 1     # why\n  pysvm x --b\n"
    assert first_example(text) == "pysvm x --a 1  # why"
    assert first_example("no example here") == ""


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


# -- conformance ---------------------------------------------------------------------------


def _small_file(tmp_path: Path, n: int = 40) -> Path:
    out = tmp_path / "small.jsonl"
    with gzip.open(DATA, "rt") as src, out.open("w") as dst:
        for _, line in zip(range(n), src, strict=False):
            dst.write(line)
    return out


def test_conformance_counts_and_final_line(tmp_path: Path) -> None:
    res = run_cli("conformance", str(_small_file(tmp_path)), "--impl", "both")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().splitlines()[-1] == "80 passed, 0 failed"
    assert "doc-map" in res.stdout


def test_conformance_reports_a_wrong_vector(tmp_path: Path) -> None:
    # Corrupt the kernel's recorded state of one case: the replay must notice.
    with gzip.open(DATA, "rt") as fh:
        case = json.loads(fh.readline())
    case["steps"][0]["state"][0][3] += 4096
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(case) + "\n")
    res = run_cli("conformance", str(bad))
    assert res.returncode == 1
    assert res.stdout.strip().splitlines()[-1] == "0 passed, 1 failed"
    assert "state differs" in res.stdout


# -- bad input: one line on stderr, exit status 2, nothing written -------------------------

TRACE = [
    {"ev": "config", "profile": "6.18"},
    {"ev": "device", "name": "gpu0", "vram_mib": 64, "discrete": True, "smem_atomics": False},
    {"ev": "vm_create", "vm": "vm0", "device": "gpu0", "fault_mode": True},
    {"ev": "bind", "vm": "vm0", "op": "map", "addr": 0, "range": 1 << 47,
     "flags": ["cpu_addr_mirror"], "pat_index": 0},
]
TINY_BENCH = ["bench", "--sizes", "100", "--m", "10", "--ref-m", "0", "--no-memory",
              "--no-progress"]

#: (command, argv, text the one error line must contain). Files are made by `workdir`.
BAD_INPUT: list[tuple[str, list[str], str]] = [
    # igt: choices, a selection that matches nothing, a --record path that is a file
    ("igt", ["igt", "--suite", "xe_nope"], "argument --suite: invalid choice: 'xe_nope'"),
    ("igt", ["igt", "--profile", "5.0"], "argument --profile: invalid choice: '5.0'"),
    ("igt", ["igt", "-k", "no-such-subtest"], "no subtest matches"),
    ("igt", ["igt", "-k", "once-malloc", "--record", "t.jsonl"], "is not a directory"),
    # simulate: numbers, choices, combinations, output paths
    ("simulate", ["simulate", "--seed", "abc"], "argument --seed: invalid int value: 'abc'"),
    ("simulate", ["simulate", "--steps", "0"], "--steps must be in [1, 10000000], got 0"),
    ("simulate", ["simulate", "--steps", "-5"], "--steps must be in [1, 10000000], got -5"),
    ("simulate", ["simulate", "--steps", "1e3"], "argument --steps: invalid int value: '1e3'"),
    ("simulate", ["simulate", "--steps", "99999999999"], "--steps must be in"),
    ("simulate", ["simulate", "--profile", "5.0"], "argument --profile: invalid choice: '5.0'"),
    ("simulate", ["simulate", "--devices", "3"], "argument --devices: invalid choice: 3"),
    ("simulate", ["simulate", "--preferred-loc", "gpu7"], "invalid choice: 'gpu7'"),
    ("simulate", ["simulate", "--migration-policy", "some"], "invalid choice: 'some'"),
    ("simulate", ["simulate", "--atomics", "often"], "invalid choice: 'often'"),
    ("simulate", ["simulate", "--vram-mib", "0"], "--vram-mib must be in [1, 1048576], got 0"),
    ("simulate", ["simulate", "--size", "1"], "--size must be in [4, 16384] MiB, got 1"),
    ("simulate", ["simulate", "--devices", "1", "--unbind"], "--unbind needs --devices 2"),
    ("simulate", ["simulate", "--devices", "1", "--preferred-loc", "peer"],
     "--preferred-loc peer needs --devices 2"),
    ("simulate", ["simulate", "--steps", "1", "--record", "adir"], "cannot write adir"),
    ("simulate", ["simulate", "--steps", "1", "--record", "nodir/x.jsonl"],
     "cannot write nodir/x.jsonl"),
    ("simulate", ["simulate", "--plot", "x.jpg"], "output 'x.jpg' must end in .png"),
    ("simulate", ["simulate", "--plot", "nodir/x.png"], "no directory 'nodir'"),
    ("simulate", ["simulate", "--plot", "dir.png"], "'dir.png' is a directory"),
    ("simulate", ["simulate", "--timeline"], "--timeline needs --plot PNG"),
    ("simulate", ["simulate", "--bogus"], "unrecognized arguments: --bogus"),
    # schema: it takes no input, only its one switch
    ("schema", ["schema", "--all"], "unrecognized arguments: --all"),
    ("schema", ["schema", "x.json"], "unrecognized arguments: x.json"),
    # replay: the trace file itself (bad lines inside a trace are per-event EINVAL results)
    ("replay", ["replay"], "the following arguments are required: file"),
    ("replay", ["replay", "missing.jsonl"], "no such file: missing.jsonl"),
    ("replay", ["replay", "adir"], "is a directory, not a file: adir"),
    ("replay", ["replay", "t.jsonl", "--strict=yes"], "ignored explicit argument 'yes'"),
    ("replay", ["replay", "bin.jsonl"], "bin.jsonl: not a text file (byte 7: NUL byte"),
    # plot: trace, VM name, output, simulation options
    ("plot", ["plot", "t.jsonl"], "the following arguments are required: -o/--output"),
    ("plot", ["plot", "-o", "x.png"], "give a trace file to draw, or --simulate"),
    ("plot", ["plot", "t.jsonl", "-o", "x.jpg"], "must end in .png"),
    ("plot", ["plot", "t.jsonl", "-o", "x.png", "--simulate"], "not both"),
    ("plot", ["plot", "missing.jsonl", "-o", "x.png"], "no such file: missing.jsonl"),
    ("plot", ["plot", "adir", "-o", "x.png"], "is a directory, not a file: adir"),
    ("plot", ["plot", "bin.jsonl", "-o", "x.png"], "bin.jsonl: not a text file"),
    ("plot", ["plot", "garbage.jsonl", "-o", "x.png"], "creates no VM"),
    ("plot", ["plot", "novm.jsonl", "-o", "x.png"], "creates no VM"),
    ("plot", ["plot", "t.jsonl", "-o", "x.png", "--vm", "vm9"], "no VM named 'vm9'"),
    ("plot", ["plot", "t.jsonl", "-o", "nodir/x.png"], "no directory 'nodir'"),
    ("plot", ["plot", "t.jsonl", "-o", "dir.png"], "'dir.png' is a directory"),
    ("plot", ["plot", "--simulate", "--steps", "0", "-o", "x.png"], "--steps must be in"),
    ("plot", ["plot", "--simulate", "--seed", "x", "-o", "x.png"], "invalid int value: 'x'"),
    ("plot", ["plot", "--simulate", "--devices", "1", "--unbind", "-o", "x.png"],
     "--unbind needs"),
    # conformance: vector files
    ("conformance", ["conformance", "missing.jsonl"], "no such file: missing.jsonl"),
    ("conformance", ["conformance", "adir"], "is a directory, not a file: adir"),
    ("conformance", ["conformance", "garbage.jsonl"], "garbage.jsonl:1: not JSON"),
    ("conformance", ["conformance", "bin.jsonl"], "bin.jsonl: not a text file"),
    ("conformance", ["conformance", "bad.jsonl.gz"], "bad.jsonl.gz: Not a gzipped file"),
    ("conformance", ["conformance", "trunc.jsonl.gz"], "trunc.jsonl.gz: file ends early"),
    ("conformance", ["conformance", "empty.jsonl"], "holds no cases"),
    ("conformance", ["conformance", "--impl", "nope"], "argument --impl: invalid choice"),
    # bench: sizes, workload names, counts, output file
    ("bench", ["bench", "--sizes", "abc"], "must be a number like 1000 or 1e5, not 'abc'"),
    ("bench", ["bench", "--sizes", "0"], "must be a whole number in [1, 1e8], not '0'"),
    ("bench", ["bench", "--workloads", "W9"], "unknown workload 'W9'"),
    ("bench", ["bench", "--m", "-1"], "--m must be a whole number"),
    ("bench", ["bench", "--ref-m", "x"], "--ref-m must be a number"),
    ("bench", [*TINY_BENCH, "--json-out", "adir"], "is a directory, not a file: adir"),
    ("bench", [*TINY_BENCH, "--json-out", "nodir/x.json"], "cannot write nodir/x.json"),
    ("bench", [*TINY_BENCH, "--json", "--json-out", "x.json"], "not both"),
    ("simulate", ["simulate", "--record", "-", "--json"], "cannot both write to standard "),
    ("simulate", ["simulate", "--json", "--json-out", "x.json"], "not both"),
    # fuzz: budgets, choices, the trace of --replay
    ("fuzz", ["fuzz", "--seconds", "0"], "--seconds: must be a finite number > 0, not '0'"),
    ("fuzz", ["fuzz", "--seconds", "soon"], "--seconds: not a number of seconds: 'soon'"),
    ("fuzz", ["fuzz", "--seconds", "nan"], "--seconds: must be a finite number > 0, not 'nan'"),
    ("fuzz", ["fuzz", "--seconds", "inf"], "--seconds: must be a finite number > 0, not 'inf'"),
    ("fuzz", ["fuzz", "--shrink-seconds", "-1"], "--shrink-seconds: must be a finite number"),
    ("fuzz", ["fuzz", "--jobs", "0"], "--jobs: must be at least 1, not 0"),
    ("fuzz", ["fuzz", "--max-steps", "0"], "--max-steps: must be at least 1, not 0"),
    ("fuzz", ["fuzz", "--max-cases", "-1"], "--max-cases: must be at least 1, not -1"),
    ("fuzz", ["fuzz", "--max-cases", "x"], "--max-cases: not a whole number: 'x'"),
    ("fuzz", ["fuzz", "--target", "kernel"], "argument --target: invalid choice: 'kernel'"),
    ("fuzz", ["fuzz", "--profile", "5.0"], "argument --profile: invalid choice: '5.0'"),
    ("fuzz", ["fuzz", "--replay", "missing.jsonl"], "no such file: missing.jsonl"),
    ("fuzz", ["fuzz", "--replay", "adir"], "is a directory, not a file: adir"),
    ("fuzz", ["fuzz", "--replay", "bin.jsonl"], "bin.jsonl: not a text file"),
    ("fuzz", ["fuzz", "--replay", "garbage.jsonl"], "garbage.jsonl: not JSON"),
    ("fuzz", ["fuzz", "--bogus"], "unrecognized arguments: --bogus"),
    ("fuzz", ["fuzz", "--exclude-event", "nosuch"], "--exclude-event: unknown event 'nosuch'"),
    ("fuzz", ["fuzz", "--executor", "dask"], "argument --executor: invalid choice: 'dask'"),
    # sweep: the config file, options, the output table
    ("sweep", ["sweep", "missing.toml", "-o", "r.parquet"], "no such file: missing.toml"),
    ("sweep", ["sweep", "adir", "-o", "r.parquet"], "is a directory, not a file: adir"),
    ("sweep", ["sweep", "bin.jsonl", "-o", "r.parquet"], "bin.jsonl: not a text file"),
    ("sweep", ["sweep", "garbage.jsonl", "-o", "r.parquet"], "garbage.jsonl: not valid TOML"),
    ("sweep", ["sweep", "empty.jsonl", "-o", "r.parquet"], "empty.jsonl: missing 'seeds'"),
    ("sweep", ["sweep", "t.jsonl"], "the following arguments are required: -o/--output"),
    ("sweep", ["sweep", "t.jsonl", "-o", "r.parquet", "--jobs", "0"],
     "--jobs must be at least 1, got 0"),
    ("sweep", ["sweep", "t.jsonl", "-o", "r.parquet", "--executor", "dask"],
     "argument --executor: invalid choice: 'dask'"),
    # the command itself
    ("", ["nope"], "argument COMMAND: invalid choice: 'nope'"),
    ("", ["--bogus"], "unrecognized arguments: --bogus"),
]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory with every kind of bad input file, as the current directory."""
    (tmp_path / "adir").mkdir()
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(e) + "\n" for e in TRACE))
    (tmp_path / "novm.jsonl").write_text(json.dumps(TRACE[0]) + "\n")
    (tmp_path / "garbage.jsonl").write_text("{not json\n")
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "bin.jsonl").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(128, 256)))
    (tmp_path / "bad.jsonl.gz").write_text('{"a": 1}\n')
    (tmp_path / "trunc.jsonl.gz").write_bytes(gzip.compress(b'{"a": 1}\n' * 50)[:30])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(("command", "argv", "needle"), BAD_INPUT,
                         ids=[" ".join(a) for _, a, _ in BAD_INPUT])
def test_bad_input_is_one_line(workdir: Path, command: str, argv: list[str], needle: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    before = _listing(workdir)
    rc = call(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    prefix = f"pysvm {command}: error: " if command else "pysvm: error: "
    assert err.startswith(prefix), err
    assert needle in err, err
    assert _listing(workdir) == before          # bad input changes nothing


def test_every_command_has_bad_input_cases() -> None:
    assert {c for c, _, _ in BAD_INPUT if c} == set(COMMANDS)


def test_unreadable_file_is_one_line(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    # chmod 000 does not stop root, so refuse the read the way the OS would.
    real_open = builtins.open

    def deny(file: Any, *args: Any, **kw: Any) -> Any:
        if str(file).endswith("t.jsonl"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kw)

    monkeypatch.setattr(builtins, "open", deny)
    for argv in (["replay", "t.jsonl"], ["plot", "t.jsonl", "-o", "x.png"]):
        assert call(argv) == 2
        err = capsys.readouterr().err
        assert err == f"pysvm {argv[0]}: error: permission denied: t.jsonl\n"


def test_plot_without_matplotlib_is_one_line(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)    # import fails as if not installed
    assert call(["plot", "t.jsonl", "-o", "x.png"]) == 2
    assert capsys.readouterr().err == ("pysvm plot: error: plotting needs matplotlib: "
                                       "pip install 'gpuvm-svm[plot]'\n")
    assert call(["simulate", "--plot", "x.png"]) == 2
    assert "plotting needs matplotlib" in capsys.readouterr().err


def test_real_process_bad_input_has_no_traceback(tmp_path: Path) -> None:
    res = run_cli("replay", str(tmp_path / "missing.jsonl"))
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == f"pysvm replay: error: no such file: {tmp_path / 'missing.jsonl'}\n"


def test_garbage_trace_lines_are_results_not_errors(workdir: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # TRACE.md: a bad line is an EINVAL result and replay goes on (exit 0).
    assert call(["replay", "garbage.jsonl"]) == 0
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert lines[0]["result"] == "EINVAL" and "summary" in lines[-1]


def test_closed_pipe_is_quiet(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps(e) + "\n" for e in TRACE) * 3000)
    proc = subprocess.Popen([sys.executable, "-m", "pysvm", "replay", str(trace)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()                          # as `| head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert json.loads(first)["i"] == 0
    assert err == ""



# -- the README's set-up commands ----------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_readme_has_exactly_the_two_setup_commands() -> None:
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = [ln.strip() for ln in setup.splitlines() if ln.startswith("    ")]
    assert len(commands) == 2, commands
    assert commands[0] == ("python3 -m venv .venv && .venv/bin/pip install . && "
                           ".venv/bin/pysvm simulate")
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines()
          if ln.startswith("python3 -m venv")]
    assert ci == [commands[1]]                       # byte-identical to what CI runs


def test_schema_prints_the_shipped_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert call(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    shipped = importlib.resources.files("pysvm.trace").joinpath("trace.schema.json")
    assert printed == json.loads(shipped.read_text())
    assert call(["schema", "--events"]) == 0
    names = capsys.readouterr().out.split()
    assert len(names) == 38 and names[0] == "config" and "gpu_access" in names


def test_version_names_the_distribution_and_the_core_build(
        capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import metadata

    from gpuvm_core import _core

    assert call(["--version"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"gpuvm-svm {metadata.version('gpuvm-svm')}"
    build = "debug build" if _core.DEBUG_BUILD else "release build"
    assert out[1].startswith(f"gpuvm_core: compiled core, {build}")
