"""Trace replay: golden traces byte for byte, output shape, bad events, --strict, CLI.

The format is ../shared/TRACE.md plus docs/trace-format.md. A golden trace
``xe_NAME.jsonl`` must replay to exactly the bytes of ``xe_NAME.expected.jsonl``
(every line, the summary included). After an intended change, regenerate with
``pysvm replay tests/pysvm/traces/xe_NAME.jsonl > tests/pysvm/traces/xe_NAME.expected.jsonl``
and review the diff line by line.
"""

from __future__ import annotations

import difflib
import errno
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pysvm.cli.main import main
from pysvm.errors import XeError, errno_name
from pysvm.trace.engine import Engine
from pysvm.world import EVENTS, SUMMARY_KEYS, World

TRACES = Path(__file__).parent / "traces"
GOLDEN = sorted(p for p in TRACES.glob("xe_*.jsonl") if not p.name.endswith(".expected.jsonl"))


def expected_of(path: Path) -> Path:
    return path.with_name(path.stem + ".expected.jsonl")


def test_golden_traces_exist() -> None:
    names = {p.stem for p in GOLDEN}
    assert {"xe_bind_bo", "xe_errors", "xe_madvise_split", "xe_newest",
            "xe_split_shapes"} <= names
    for p in GOLDEN:
        assert expected_of(p).is_file(), p


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_byte_identical(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    want = expected_of(path).read_bytes()
    assert main(["replay", str(path)]) == 0
    got = capsys.readouterr().out.encode()
    if got != want:
        diff = "\n".join(difflib.unified_diff(want.decode().splitlines(),
                                              got.decode().splitlines(), "expected", "got",
                                              lineterm="", n=0))
        pytest.fail(f"{path.name} replays differently:\n{diff[:4000]}")


def test_golden_through_the_console_script_exit_status_and_bytes() -> None:
    path = TRACES / "xe_errors.jsonl"          # has errors, still read to the end: exit 0
    r = subprocess.run([sys.executable, "-m", "pysvm", "replay", str(path)],
                       capture_output=True, check=False)
    assert r.returncode == 0 and r.stderr == b""
    assert r.stdout == expected_of(path).read_bytes()
    r = subprocess.run([sys.executable, "-m", "pysvm", "replay", "-", "--strict"],
                       input=path.read_bytes(), capture_output=True, check=False)
    lines = r.stdout.decode().splitlines()
    assert r.returncode == 1 and json.loads(lines[-2])["result"] != "ok"
    assert all(json.loads(x)["result"] == "ok" for x in lines[:-2])


def test_every_output_line_has_the_documented_shape() -> None:
    for path in GOLDEN:
        lines = [json.loads(x) for x in expected_of(path).read_text().splitlines()]
        body, last = lines[:-1], lines[-1]
        assert list(last) == ["summary"] and list(last["summary"])[:len(SUMMARY_KEYS)] == \
            list(SUMMARY_KEYS)
        assert last["summary"]["events"] == len(body)
        assert last["summary"]["errors"] == sum(o["result"] != "ok" for o in body)
        for k, o in enumerate(body):
            assert list(o)[:3] == ["i", "ev", "result"] and o["i"] == k
            if o["result"] != "ok":
                assert o["result"] == errno_name(getattr(errno, o["result"]))
                assert isinstance(o["message"], str) and o["message"]


def test_output_shape_and_key_order() -> None:
    eng = Engine()
    lines = ['{"ev":"device","name":"gpu0","vram_mib":16}', "", "  \t", '{"ev":"nope"}']
    out = list(eng.run(lines))
    assert [list(o)[:3] for o in out] == [["i", "ev", "result"]] * 2
    assert [o["i"] for o in out] == [0, 1]               # blank lines are not events
    assert out[1]["result"] == "EINVAL" and "nope" in out[1]["message"]
    s = eng.summary()
    assert s["events"] == 2 and s["errors"] == 1
    assert list(s)[:len(SUMMARY_KEYS)] == list(SUMMARY_KEYS)


BASE: list[dict[str, Any]] = [{"ev": "device", "name": "g", "vram_mib": 16},
        {"ev": "vm_create", "vm": "v", "device": "g", "fault_mode": True},
        {"ev": "bind", "vm": "v", "op": "map", "addr": 0, "range": 65536,
         "flags": ["cpu_addr_mirror"]},
        {"ev": "madvise", "vm": "v", "addr": 0, "range": 4096, "type": "atomic", "val": 2}]


def state(eng: Engine) -> list[object]:
    return eng.execute({"ev": "query", "vm": "v"})["vmas"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("line, msg", [
    ('{"ev":"frobnicate"}', "unknown event 'frobnicate'"),
    ('{"ev":7}', 'missing or non-string field "ev"'),
    ('{"vm":"v"}', 'missing or non-string field "ev"'),
    ('[1, 2]', "an event must be a JSON object"),
    ('nul', "not valid JSON"),
    ('{"ev":"madvise","vm":"v","addr":0,"type":"atomic","val":1}', 'missing field "range"'),
    ('{"ev":"madvise","vm":"v","addr":"0","range":4096,"type":"atomic"}',
     'field "addr" must be an integer'),
    ('{"ev":"madvise","vm":"v","addr":0,"range":4096,"type":"atomic","val":-1}',
     'field "val" = -1 is below 0'),
    ('{"ev":"madvise","vm":"v","addr":0,"range":4096,"type":{"x":1}}',
     'field "type" must be an integer'),
    ('{"ev":"bind","vm":"v","op":"map","addr":0,"range":4096,"flags":[3]}', "unknown flag 3"),
    ('{"ev":"query","vm":"v","addr":18446744073709551616}', "is above"),
    ('{"ev":"device","name":"h","discrete":"yes"}', "must be true or false"),
    ('{"ev":"bind","vm":"v","op":"map","addr":0,"range":4096,"flags":["null"],'
     '"pat_index":70000}', 'field "pat_index" = 70000 is above 65535'),
])
def test_bad_event_is_einval_with_message_and_keeps_state(line: str, msg: str) -> None:
    eng = Engine()
    for ev in BASE:
        assert eng.execute(ev)["result"] == "ok", ev
    before = state(eng)
    out = eng.execute_line(line)
    assert out["result"] == "EINVAL" and msg in out["message"], out
    assert state(eng) == before
    assert eng.execute({**BASE[3], "val": 3})["result"] == "ok"   # replay goes on


def test_undecodable_lines() -> None:
    eng = Engine()
    bad_utf8 = eng.execute_line(b'{"ev":"query","vm":"caf\xe9"}')
    assert bad_utf8 == {"ev": None, "result": "EINVAL", "message": "not valid UTF-8 at byte 23"}
    deep = eng.execute_line("[" * 200000 + "]" * 200000)
    assert deep == {"ev": None, "result": "EINVAL", "message": "not valid JSON: nested too deeply"}
    assert eng.summary()["events"] == 2 and eng.summary()["errors"] == 2


def test_errors_do_not_lose_state() -> None:
    eng = Engine()
    for ev in BASE[:3]:
        assert eng.execute(ev)["result"] == "ok"
    bad: list[dict[str, Any]] = [
           {"ev": "bind", "vm": "v", "op": "map", "addr": 4096, "range": 4096, "bo": "x"},
           {"ev": "madvise", "vm": "v", "addr": 0, "range": 4096, "type": "atomic", "val": 9},
           {"ev": "device", "name": "g"}, {"ev": "vm_create", "vm": "v", "device": "g"}]
    for bad_ev in bad:
        assert eng.execute(bad_ev)["result"] != "ok"
    q = eng.execute({"ev": "query", "vm": "v", "addr": 0, "range": 65536})
    assert [(v["addr"], v["range"]) for v in q["vmas"]] == [(0, 65536)]


def test_strict_stops_and_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = tmp_path / "t.jsonl"
    t.write_text('{"ev":"device","name":"g","vram_mib":16}\n{"ev":"bad"}\n'
                 '{"ev":"device","name":"h","vram_mib":16}\n')
    assert main(["replay", str(t), "--strict"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and json.loads(lines[1])["result"] == "EINVAL"
    assert json.loads(lines[-1])["summary"]["events"] == 2
    assert main(["replay", str(t)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and json.loads(lines[-1])["summary"]["events"] == 3
    t.write_text('{"ev":"device","name":"g","vram_mib":16}\n')
    assert main(["replay", str(t), "--strict"]) == 0          # all ok: read to the end


def test_missing_file_is_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "/nonexistent/trace.jsonl"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err


def test_every_event_is_a_world_method_and_fields_are_checked() -> None:
    for name in ("config", "device", "vm_create", "bo_create", "bind", "madvise", "query",
                 "vm_kill", "mmap", "gpu_access", "teardown"):
        assert name in EVENTS
    for name in EVENTS:
        assert callable(getattr(World, name)), name
    eng = Engine()
    assert eng.execute({"ev": "device", "name": "g", "vram_mib": 16}) == {
        "ev": "device", "result": "ok", "fd": 3}
    for bad in ({}, {"vram_mib": True}, {"vram_mib": -1}, {"vram_mib": "3"}):
        r = eng.execute({"ev": "device", "name": "h", **bad} if bad else {"ev": "device"})
        assert r["result"] == "EINVAL" and r["message"], (bad, r)
    assert "h" not in eng.world.devices
    r = eng.execute({"ev": "no_such_event"})
    assert r == {"ev": "no_such_event", "result": "EINVAL",
                 "message": "unknown event 'no_such_event'"}


def test_config_profile() -> None:
    eng = Engine()
    # "newest" is an alias of the newest modelled release, 7.0
    assert eng.execute({"ev": "config", "profile": "newest"}) == {
        "ev": "config", "result": "ok", "profile": "newest"}
    assert eng.world.profile.name == "7.0"
    assert eng.execute({"ev": "config", "profile": "6.19"})["result"] == "EINVAL"
    eng.execute({"ev": "device", "name": "g", "vram_mib": 16})
    assert eng.execute({"ev": "config", "profile": "6.18"})["result"] == "EBUSY"
    assert eng.execute({"ev": "config", "profile": "7.0"})["result"] == "ok"  # no change
    assert eng.world.profile.name == "7.0"


def test_unknown_bo_name_is_enoent_after_argument_checks() -> None:
    eng = Engine()
    for ev in BASE[:2]:
        eng.execute(ev)
    bind = {"ev": "bind", "vm": "v", "op": "map", "range": 4096, "bo": "ghost"}
    assert eng.execute({**bind, "addr": 1})["result"] == "EINVAL"
    assert eng.execute({**bind, "addr": 0})["result"] == "ENOENT"


def test_query_range_zero_and_default() -> None:
    eng = Engine()
    for ev in BASE[:3]:
        eng.execute(ev)
    assert [v["addr"] for v in eng.execute({"ev": "query", "vm": "v", "addr": 8192,
                                            "range": 0})["vmas"]] == [0]
    assert [v["addr"] for v in eng.execute({"ev": "query", "vm": "v", "addr": 0,
                                            "range": 0})["vmas"]] == []
    assert len(eng.execute({"ev": "query", "vm": "v"})["vmas"]) == 1


def test_errno_names_are_the_kernels() -> None:
    assert errno_name(errno.EOPNOTSUPP) == "EOPNOTSUPP"      # not the libc alias ENOTSUP
    assert errno_name(errno.EDEADLK) == "EDEADLK"
    assert errno_name(errno.ENOLINK) == "ENOLINK" and errno_name(100000) == "E100000"


def test_xeerror_is_oserror() -> None:
    e = XeError(errno.EBUSY, "x")
    assert isinstance(e, OSError) and e.errno == errno.EBUSY and str(e) == "[EBUSY] x"
