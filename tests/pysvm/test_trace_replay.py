"""Trace replay: golden traces, engine API, registry, error handling, --strict, CLI."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from pysvm.cli import main
from pysvm.errors import XeError
from pysvm.trace import HANDLER_MODULES, HANDLERS, Engine, handler, req_int

TRACES = Path(__file__).parent / "traces"
GOLDEN = sorted(p for p in TRACES.glob("xe_*.jsonl") if not p.name.endswith(".expected.jsonl"))
#: summary counters this layer owns; other layers' counters may be added freely
XE_SUMMARY_KEYS = ("events", "errors", "binds", "unbinds", "madvise_calls", "madvise_splits")


def test_golden_traces_exist() -> None:
    assert len(GOLDEN) >= 3


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = [json.loads(x) for x in path.with_suffix(".expected.jsonl").read_text().splitlines()]
    assert main(["replay", str(path)]) == 0
    got = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(got) == len(expected)
    assert got[:-1] == expected[:-1]
    for key in XE_SUMMARY_KEYS:
        assert got[-1]["summary"].get(key, 0) == expected[-1]["summary"].get(key, 0), key


def test_output_shape_and_key_order() -> None:
    eng = Engine()
    lines = ['{"ev":"device","name":"gpu0","vram_mib":16}', "", '{"ev":"nope"}']
    out = list(eng.run(lines))
    assert [list(o)[:3] for o in out] == [["i", "ev", "result"]] * 2
    assert [o["i"] for o in out] == [0, 1]               # blank lines are not events
    assert out[1]["result"] == "EINVAL" and "nope" in out[1]["message"]
    s = eng.summary()
    assert s["events"] == 2 and s["errors"] == 1
    for k in ("faults", "retries", "migrations_to_vram", "bytes_to_system", "gc_runs",
              "vmas_reset", "pagemaps_alive"):
        assert k in s


def test_errors_do_not_lose_state() -> None:
    eng = Engine()
    ok = [{"ev": "device", "name": "g", "vram_mib": 16},
          {"ev": "vm_create", "vm": "v", "device": "g", "fault_mode": True},
          {"ev": "bind", "vm": "v", "op": "map", "addr": 0, "range": 65536,
           "flags": ["cpu_addr_mirror"]}]
    for ev in ok:
        assert eng.execute(ev)["result"] == "ok"
    bad = [{"ev": "bind", "vm": "v", "op": "map", "addr": 4096, "range": 4096, "bo": "x"},
           {"ev": "madvise", "vm": "v", "addr": 0, "range": 4096, "type": "atomic", "val": 9},
           {"ev": "device", "name": "g"}, {"ev": "vm_create", "vm": "v", "device": "g"}]
    for ev in bad:
        assert eng.execute(ev)["result"] != "ok"
    q = eng.execute({"ev": "query", "vm": "v", "addr": 0, "range": 65536})
    assert [(v["addr"], v["range"]) for v in q["vmas"]] == [(0, 65536)]


def test_strict_stops_and_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = tmp_path / "t.jsonl"
    t.write_text('{"ev":"device","name":"g","vram_mib":16}\n{"ev":"bad"}\n'
                 '{"ev":"device","name":"h","vram_mib":16}\n')
    assert main(["replay", str(t), "--strict"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and json.loads(lines[-1])["summary"]["events"] == 2
    assert main(["replay", str(t)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_missing_file_is_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "/nonexistent/trace.jsonl"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err


def test_registry_and_field_helpers() -> None:
    assert HANDLER_MODULES[0] == "pysvm.events_xe"
    Engine()
    for name in ("config", "device", "vm_create", "bo_create", "bind", "madvise", "query"):
        assert name in HANDLERS

    @handler("_test_echo")
    def echo(engine: Engine, ev: dict) -> dict:
        return {"n": req_int(ev, "n", 0, 10)}

    try:
        eng = Engine()
        assert eng.execute({"ev": "_test_echo", "n": 3}) == {"ev": "_test_echo", "result": "ok",
                                                              "n": 3}
        for bad in ({}, {"n": True}, {"n": 11}, {"n": "3"}):
            r = eng.execute({"ev": "_test_echo", **bad})
            assert r["result"] == "EINVAL" and r["message"]
        with pytest.raises(RuntimeError):
            handler("_test_echo")(lambda e, v: None)
    finally:
        del HANDLERS["_test_echo"]


def test_config_profile() -> None:
    eng = Engine()
    assert eng.execute({"ev": "config", "profile": "newest"})["result"] == "ok"
    assert eng.world.profile.name == "newest"
    assert eng.execute({"ev": "config", "profile": "7.0"})["result"] == "EINVAL"
    eng.execute({"ev": "device", "name": "g", "vram_mib": 16})
    assert eng.execute({"ev": "config", "profile": "6.18"})["result"] == "EBUSY"
    assert eng.world.profile.name == "newest"


def test_madvise_named_device_newest() -> None:
    eng = Engine()
    evs = [{"ev": "config", "profile": "newest"},
           {"ev": "device", "name": "g0", "vram_mib": 16},
           {"ev": "device", "name": "g1", "vram_mib": 16},
           {"ev": "vm_create", "vm": "v", "device": "g0", "fault_mode": True},
           {"ev": "bind", "vm": "v", "op": "map", "addr": 0, "range": 65536,
            "flags": ["cpu_addr_mirror", "autoreset"]}]
    for ev in evs:
        assert eng.execute(ev)["result"] == "ok", ev
    r = eng.execute({"ev": "madvise", "vm": "v", "addr": 0, "range": 4096,
                     "type": "preferred_loc", "devmem_fd": "g1"})
    assert r["result"] == "ENOLINK"        # no interconnect between g0 and g1
    r = eng.execute({"ev": "madvise", "vm": "v", "addr": 0, "range": 4096,
                     "type": "preferred_loc", "devmem_fd": "nothere"})
    assert r["result"] == "ENOENT"
    q = eng.execute({"ev": "query", "vm": "v", "addr": 0, "range": 4096})
    assert q["vmas"][0]["flags"] == ["cpu_addr_mirror", "autoreset"]


def test_xeerror_is_oserror() -> None:
    e = XeError(errno.EBUSY, "x")
    assert isinstance(e, OSError) and e.errno == errno.EBUSY
