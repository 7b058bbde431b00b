"""Both implementations replay all kernel-recorded public vectors exactly, and the
replay itself (gpuvm_core.conformance, ``pysvm conformance``) notices every kind
of wrong vector and refuses malformed files with one clear line."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from gpuvm_core import GpuVm, RefGpuVm
from gpuvm_core.conformance import (
    bundled_vectors,
    category_of,
    check_case,
    iter_cases,
    run_case,
    run_file,
)
from pysvm.cli import main as cli

IMPLS = [pytest.param(GpuVm, id="core"), pytest.param(RefGpuVm, id="reference")]


@pytest.fixture(scope="module")
def cases() -> list[dict[str, Any]]:
    return list(iter_cases(bundled_vectors()))


@pytest.mark.parametrize("impl", IMPLS)
def test_all_public_vectors_pass(impl: Any, cases: list[dict[str, Any]]) -> None:
    rep = run_file(cases, impl)
    assert rep.failed == 0, [(f.case_id, f.step, f.message[:300]) for f in rep.failures[:3]]
    assert rep.passed == 2011
    # every category of the vectors README is present
    assert {"doc-map", "doc-unmap", "doc-madvise", "doc-madvdiag", "touch-map", "identical",
            "contig-c", "contig-nc", "mixed", "vmedge", "reserved-mid", "invalid-range0",
            "madvise-reqobj", "random-long", "random-med"} <= set(rep.per_category)


def test_compiled_is_not_the_reference() -> None:
    core: Any = GpuVm
    assert core is not RefGpuVm
    assert type(GpuVm(0, 1 << 20)).__module__ == "gpuvm_core._core"


def test_check_after_every_vector_step(cases: list[dict[str, Any]]) -> None:
    # replay the first cases step by step and run the compiled core's invariant check
    for case in cases[:300]:
        v = case["vm"]
        vm = GpuVm(v["start"], v["range"], reserve_addr=v["reserve_addr"],
                   reserve_range=v["reserve_range"])
        for step in case["steps"]:
            if step["result"] != "ok":
                continue
            if step["call"] == "map":
                ops = vm.sm_map_ops_create(step["addr"], step["range"], step["obj"], step["offset"])
            elif step["call"] == "madvise":
                ops = vm.madvise_ops_create(step["addr"], step["range"], step["obj"],
                                            step["offset"])
            else:
                ops = vm.sm_unmap_ops_create(step["addr"], step["range"])
            vm.apply(ops)
            vm.check()


def test_category_names() -> None:
    assert category_of("pub-doc-map-05-asdrawn-00153") == "doc-map"
    assert category_of("pub-random-long-00007") == "random-long"
    assert category_of("pub-identical-00012") == "identical"
    assert category_of("pub-invalid-range0-map-00900") == "invalid-range0"


# ---------------------------------------------------------------------------
# Every kind of wrong vector is caught, by both implementations.


def _find(cases: list[dict[str, Any]], pred: Any) -> dict[str, Any]:
    return copy.deepcopy(next(c for c in cases if pred(c)))


def _first_op(c: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for st in c["steps"]:
        for op in st["ops"]:
            if op["op"] == kind:
                return dict(op)
    return None


CORRUPTIONS = ["map-addr", "remap-next-offset", "keep", "op-order", "extra-op", "missing-op",
               "result", "state-extra", "state-offset", "error-step-state", "apply-failures"]


def _corrupt(cases: list[dict[str, Any]], kind: str) -> tuple[dict[str, Any], str]:
    """A copy of a real case with one recorded detail made wrong; and the expected message."""
    if kind == "map-addr":
        c = _find(cases, lambda c: _first_op(c, "map"))
        st = next(s for s in c["steps"] if any(o["op"] == "map" for o in s["ops"]))
        next(o for o in st["ops"] if o["op"] == "map")["addr"] += 1
        return c, "ops differ"
    if kind == "remap-next-offset":
        c = _find(cases, lambda c: any(o["op"] == "remap" and o["next"]
                                       for s in c["steps"] for o in s["ops"]))
        st = next(s for s in c["steps"] if any(o["op"] == "remap" and o["next"] for o in s["ops"]))
        next(o for o in st["ops"] if o["op"] == "remap" and o["next"])["next"]["offset"] += 1
        return c, "ops differ"
    if kind == "keep":
        c = _find(cases, lambda c: c["id"].startswith("pub-identical"))
        st = next(s for s in c["steps"] if any(o["op"] == "unmap" for o in s["ops"]))
        op = next(o for o in st["ops"] if o["op"] == "unmap")
        op["keep"] = not op["keep"]
        return c, "ops differ"
    if kind == "op-order":
        c = _find(cases, lambda c: any(len(s["ops"]) >= 2 for s in c["steps"]))
        st = next(s for s in c["steps"] if len(s["ops"]) >= 2)
        st["ops"].reverse()
        return c, "ops differ"
    if kind == "extra-op":
        c = _find(cases, lambda c: any(s["ops"] for s in c["steps"]))
        st = next(s for s in c["steps"] if s["ops"])
        st["ops"].append(dict(st["ops"][-1]))
        return c, "ops differ"
    if kind == "missing-op":
        c = _find(cases, lambda c: any(s["ops"] for s in c["steps"]))
        next(s for s in c["steps"] if s["ops"])["ops"].pop()
        return c, "ops differ"
    if kind == "result":
        c = _find(cases, lambda c: c["steps"][0]["result"] == "ok")
        c["steps"][0]["result"] = "EINVAL"
        return c, "result ok != kernel's EINVAL"
    if kind == "state-extra":
        c = _find(cases, lambda c: True)
        c["steps"][-1]["state"].append([1, 1, None, 0])
        return c, "state differs"
    if kind == "state-offset":
        c = _find(cases, lambda c: c["steps"][0]["state"])
        c["steps"][0]["state"][0][3] += 4096
        return c, "state differs"
    if kind == "error-step-state":
        # a refused request must leave the VM unchanged: a recorded change is a mismatch
        c = _find(cases, lambda c: any(s["result"] != "ok" for s in c["steps"]))
        st = next(s for s in c["steps"] if s["result"] != "ok")
        st["state"] = st["state"] + [[7, 1, None, 0]]
        return c, "state differs"
    assert kind == "apply-failures"
    c = _find(cases, lambda c: c["steps"][0]["result"] == "ok")
    c["steps"][0]["apply_failures"] = 1
    return c, "apply_failures 0 != 1"


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_each_kind_of_wrong_vector_fails(impl: Any, kind: str, cases: list[dict[str, Any]]) -> None:
    bad, needle = _corrupt(cases, kind)
    assert check_case(bad) is None                 # still well formed
    res = run_case(bad, impl)
    assert not res.ok and needle in res.message, res.message
    # the untouched original passes
    orig = next(c for c in cases if c["id"] == bad["id"])
    assert run_case(orig, impl).ok


def test_prefetch_steps_replay(cases: list[dict[str, Any]]) -> None:
    # gpuvm_core.fuzz writes prefetch steps; they are checked but not applied
    vm = {"start": 0, "range": 1 << 20, "reserve_addr": 0, "reserve_range": 0}
    case: dict[str, Any] = {
            "id": "fuzz-prefetch-1", "vm": vm,
            "steps": [{"call": "map", "addr": 0x1000, "range": 0x1000, "obj": 3, "offset": 0,
                       "result": "ok", "ops": [{"op": "map", "addr": 0x1000, "range": 0x1000,
                                                "obj": 3, "offset": 0}],
                       "state": [[0x1000, 0x1000, 3, 0]]},
                      {"call": "prefetch", "addr": 0, "range": 0x4000, "obj": None, "offset": 0,
                       "result": "ok", "ops": [{"op": "prefetch", "addr": 0x1000,
                                                "range": 0x1000, "obj": 3, "offset": 0}],
                       "state": [[0x1000, 0x1000, 3, 0]]}]}
    assert check_case(case) is None
    impls: list[Any] = [GpuVm, RefGpuVm]
    for impl in impls:
        assert run_case(case, impl).ok
        wrong: Any = copy.deepcopy(case)
        wrong["steps"][1]["ops"] = []
        assert not run_case(wrong, impl).ok


# ---------------------------------------------------------------------------
# `pysvm conformance FILE`


def _write(tmp_path: Path, name: str, lines: list[Any]) -> Path:
    p = tmp_path / name
    p.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return p


def test_cli_counts_a_corrupted_copy(tmp_path: Path, cases: list[dict[str, Any]],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    # 60 real cases from all over the file, 5 of them made wrong
    sample = [copy.deepcopy(c) for c in cases[::34]][:60]
    for c in sample[:3] + sample[-2:]:
        c["steps"][-1]["state"].append([3, 3, None, 0])
    cats = [category_of(c["id"]) for c in sample]
    path = _write(tmp_path, "corrupt.jsonl", sample)
    assert cli.main(["conformance", str(path), "--impl", "both"]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "110 passed, 10 failed"
    rows = {ln.split()[0]: ln.split()[1:] for ln in out if ln.startswith("  ") and
            len(ln.split()) == 3 and ln.split()[1].isdigit()}
    assert len(set(cats)) > 10
    for cat in set(cats):
        bad = sum(1 for c, k in zip(sample, cats, strict=True) if k == cat and
                  c in sample[:3] + sample[-2:])
        assert rows[cat] == [str(cats.count(cat) - bad), str(bad)]
    # the same file, gzipped, gives the same answer
    gz = tmp_path / "corrupt.jsonl.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert cli.main(["conformance", str(gz)]) == 1
    assert capsys.readouterr().out.strip().splitlines()[-1] == "55 passed, 5 failed"


def test_cli_passes_the_bundled_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["conformance"]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == "2011 passed, 0 failed"
    assert "doc-map" in out and "random-long" in out


GOOD = {"id": "x-doc-map-01-asdrawn-1",
        "vm": {"start": 0, "range": 1 << 20, "reserve_addr": 0, "reserve_range": 0},
        "steps": [{"call": "unmap", "addr": 0, "range": 0x1000, "obj": None, "offset": 0,
                   "result": "ok", "ops": [], "state": []}]}


def _without(path: list[Any]) -> dict[str, Any]:
    c = copy.deepcopy(GOOD)
    node: Any = c
    for k in path[:-1]:
        node = node[k]
    del node[path[-1]]
    return c


def _with(path: list[Any], value: Any) -> dict[str, Any]:
    c = copy.deepcopy(GOOD)
    node: Any = c
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return c


BAD_FILES: list[tuple[str, list[Any], str]] = [
    ("not-json", ["{not json"], "not JSON"),
    ("json-array", [[1, 2]], "expected a JSON object"),
    ("no-id", [_without(["id"])], "'id'"),
    ("no-vm", [_without(["vm"])], "missing field 'vm'"),
    ("no-vm-start", [_without(["vm", "start"])], "vm.start"),
    ("vm-range-str", [_with(["vm", "range"], "4096")], "vm.range"),
    ("vm-start-negative", [_with(["vm", "start"], -1)], "vm.start"),
    ("no-steps", [_without(["steps"])], "missing field 'steps'"),
    ("step-no-call", [_without(["steps", 0, "call"])], "'call' must be one of"),
    ("step-bad-call", [_with(["steps", 0, "call"], "bind")], "'call' must be one of"),
    ("step-no-addr", [_without(["steps", 0, "addr"])], "addr missing"),
    ("step-range-2**64", [_with(["steps", 0, "range"], 1 << 64)], "range missing or not"),
    ("step-no-obj", [_without(["steps", 0, "obj"])], "obj missing"),
    ("step-no-result", [_without(["steps", 0, "result"])], "'result'"),
    ("step-no-ops", [_without(["steps", 0, "ops"])], "'ops'"),
    ("step-no-state", [_without(["steps", 0, "state"])], "'state'"),
    ("second-line-bad", [GOOD, _without(["vm"])], ":2: not a vector case"),
]


@pytest.mark.parametrize(("lines", "needle"), [b[1:] for b in BAD_FILES],
                         ids=[b[0] for b in BAD_FILES])
def test_cli_bad_file_is_one_line(tmp_path: Path, lines: list[Any], needle: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "bad.jsonl", lines)
    assert cli.main(["conformance", str(path)]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""                               # nothing replayed, no table
    err = cap.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pysvm conformance: error: "), cap.err
    assert needle in err[0]


def _corrupt_deflate() -> bytes:
    data = bytearray(gzip.compress(json.dumps(GOOD).encode() * 50))
    for i in range(20, 60):
        data[i] ^= 0x55
    return bytes(data)


@pytest.mark.parametrize("content", [
    b"\x1f\x8b\x08garbage",
    gzip.compress(json.dumps(GOOD).encode() * 3)[:40],
    _corrupt_deflate(),
    b"plain text, not gzip\n",
], ids=["bad-header", "truncated", "corrupt-stream", "not-gzip"])
def test_cli_bad_gzip_is_one_line(tmp_path: Path, content: bytes,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    # the wording of file-level errors is the CLI's; here: one line naming the file
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(content)
    assert cli.main(["conformance", str(path)]) == 2
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert cap.out == "" and len(err) == 1 and "bad.jsonl.gz" in err[0], err
    assert err[0].startswith("pysvm conformance: error: ")


def test_cli_not_utf8_and_empty_are_one_line(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "bin.jsonl"
    p.write_bytes(b"\xff\xfe\x00\n")
    assert cli.main(["conformance", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bin.jsonl" in err[0], err
    p = tmp_path / "empty.jsonl"
    p.write_text("\n\n")
    assert cli.main(["conformance", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no cases" in err[0]


def test_good_case_is_well_formed() -> None:
    assert check_case(GOOD) is None
    assert check_case({**GOOD, "steps": []}) is None
    for impl in (GpuVm, RefGpuVm):
        assert run_case(GOOD, impl).ok
