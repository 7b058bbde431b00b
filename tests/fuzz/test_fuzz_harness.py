"""The differential fuzz harness itself: clean runs, determinism, planted bugs, shrinking.

Kernel: drivers/gpu/drm/drm_gpuvm.c (the harness compares implementations of it).
"""

from __future__ import annotations

import errno
import io
import json
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

import gpuvm_core
from gpuvm_core import GpuVm, GpuvmError, RefGpuVm
from gpuvm_core.conformance import iter_cases, run_case
from gpuvm_core.fuzz import (
    GpuvmTarget,
    _case_rng,
    main,
    parse_seed,
    record_vector,
    run,
)
from pysvm.cli import conformance as conformance_cmd
from pysvm.cli import main as cli

from . import _strategies, atheris_target
from ._planted import PLANTED, OffByOneVm
from ._strategies import differential_property

PAGE = 4096

#: How many cases a planted bug may need before the harness finds it. The
#: runner makes about 3,000 cases/s on one core of the 2-core box and about
#: 430 cases/s under ASan with the machine loaded (docs/fuzzing.md), so this
#: budget is well inside "within a minute" -- and, being a case count rather
#: than a clock, the test does not depend on timing.
CASE_BUDGET = 20_000

# The @given property that atheris_target.py fuzzes, also run as a plain test.
test_differential_property = differential_property


def _quiet_run(factory: Any, **kw: Any) -> Any:
    return run(factory, progress=None, **kw)


def test_reference_against_itself_is_clean(tmp_path: Path) -> None:
    s = _quiet_run(lambda: GpuvmTarget(system=RefGpuVm), seconds=2, seed=7, out_dir=tmp_path)
    assert s.failures == 0 and s.found == []
    assert s.cases > 50 and s.steps > s.cases
    assert "0 failures" in s.line() and "seed 7" in s.line()
    assert not list(tmp_path.iterdir())


def test_same_seed_same_cases() -> None:
    t = GpuvmTarget()
    a = [t.make_case(_case_rng(11, i)) for i in range(30)]
    b = [t.make_case(_case_rng(11, i)) for i in range(30)]
    c = [t.make_case(_case_rng(12, i)) for i in range(30)]
    assert a == b and a != c


def test_jobs_shard_the_same_cases() -> None:
    def fac() -> GpuvmTarget:
        return GpuvmTarget(system=RefGpuVm)

    one = _quiet_run(fac, seconds=60, seed=3, max_cases=40, out_dir=None)
    two = _quiet_run(fac, seconds=60, seed=3, max_cases=40, jobs=2, out_dir=None)
    assert one.cases == two.cases == 40
    assert one.steps == two.steps


def test_generator_covers_the_edges() -> None:
    t = GpuvmTarget()
    seen: set[str] = set()
    for i in range(600):
        case = t.make_case(_case_rng(5, i))
        v = case["vm"]
        end = v["start"] + v["range"]
        seen.add("vm-at-0" if v["start"] == 0 else "vm-at-2^64" if end == 1 << 64
                 else "vm-near-top" if end > (1 << 63) else "vm-low")
        if v["reserve_range"]:
            seen.add("reserved")
        for s in case["steps"]:
            seen.add(s["call"])
            if s["range"] == 0:
                seen.add("zero")
            if s["addr"] + s["range"] > (1 << 64) - 1:
                seen.add("overflow")
            if s["obj"] is None and s["call"] == "map":
                seen.add("no-object")
        rec = record_vector(case, RefGpuVm, "x")
        for s in rec["steps"]:
            seen.add(s["result"])
            for op in s["ops"]:
                if op.get("keep") or (op["op"] == "remap" and op["unmap"]["keep"]):
                    seen.add("keep")
                if op["op"] == "remap" and op["prev"] and op["next"]:
                    seen.add("split-middle")
    want = {"vm-at-0", "vm-at-2^64", "vm-near-top", "vm-low", "reserved", "map", "unmap",
            "madvise", "prefetch", "zero", "overflow", "no-object", "ok", "EINVAL", "keep",
            "split-middle"}
    assert want <= seen, want - seen


def test_zero_length_mostly_last() -> None:
    t = GpuvmTarget()
    last = mid = 0
    for i in range(1500):
        steps = t.make_case(_case_rng(9, i))["steps"]
        zeros = [j for j, s in enumerate(steps) if s["range"] == 0]
        assert len(zeros) <= 1
        if zeros:
            last += zeros[0] == len(steps) - 1
            mid += zeros[0] < len(steps) - 1
    assert last > 2 * mid > 0


def _assert_reproduces(path: Path, buggy: Any) -> dict[str, Any]:
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    (case,) = list(iter_cases(path))
    assert run_case(case, RefGpuVm).ok, "the vector must pass on the reference"
    bad = run_case(case, buggy)
    assert not bad.ok, "the vector must fail on the buggy system"
    return case


def test_planted_bug_is_found_shrunk_and_written(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    s = _quiet_run(lambda: GpuvmTarget(system=OffByOneVm), seconds=600, seed=1,
                   max_cases=CASE_BUDGET, out_dir=tmp_path, shrink_seconds=20)
    assert s.failures == 1, s.line()
    f = s.found[0]
    assert f["case"] < CASE_BUDGET
    assert f["shrunk_steps"] <= 2  # one map to create the VA, one map inside it
    case = _assert_reproduces(Path(f["path"]), OffByOneVm)
    last = case["steps"][-1]
    assert last["call"] == "map"
    assert any(op["op"] == "remap" and op["prev"] and op["next"] for op in last["ops"])
    # `pysvm conformance FILE` replays it: passes on the reference, fails on the buggy class
    with redirect_stdout(io.StringIO()) as out:
        assert cli.main(["conformance", f["path"], "--impl", "reference"]) == 0
    assert "1 passed, 0 failed" in out.getvalue()
    monkeypatch.setattr(conformance_cmd, "GpuVm", OffByOneVm)
    with redirect_stdout(io.StringIO()) as out:
        assert cli.main(["conformance", f["path"], "--impl", "core"]) == 1
    assert "0 passed, 1 failed" in out.getvalue()


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_each_planted_off_by_one_is_found_within_budget(name: str, tmp_path: Path) -> None:
    """Four different off-by-ones, each needing another corner of the generator."""
    buggy = PLANTED[name]
    s = _quiet_run(lambda: GpuvmTarget(system=buggy), seconds=600, seed=0,
                   max_cases=CASE_BUDGET, out_dir=tmp_path, shrink_seconds=20)
    assert s.failures == 1, f"{name} not found in {CASE_BUDGET} cases: {s.line()}"
    f = s.found[0]
    assert f["case"] < CASE_BUDGET and f["shrunk_steps"] <= 3, f
    _assert_reproduces(Path(f["path"]), buggy)


def test_planted_bug_found_with_jobs(tmp_path: Path) -> None:
    s = _quiet_run(lambda: GpuvmTarget(system=OffByOneVm), seconds=60, seed=2, jobs=2,
                   out_dir=tmp_path, shrink_seconds=10)
    assert s.failures >= 1
    _assert_reproduces(Path(s.found[0]["path"]), OffByOneVm)


@pytest.mark.debug_build
def test_real_core_with_debug_fault(tmp_path: Path) -> None:
    core = getattr(gpuvm_core, "_core", None)
    # the compiled core must carry the planted-fault hook this harness is tested with
    assert core is not None and hasattr(core, "_debug_set_fault")
    core._debug_set_fault(1)
    try:
        s = _quiet_run(lambda: GpuvmTarget(system=GpuVm), seconds=600, seed=1,
                       max_cases=CASE_BUDGET, out_dir=tmp_path, shrink_seconds=20)
        assert s.failures == 1, s.line()
        assert s.found[0]["case"] < CASE_BUDGET
        _assert_reproduces(Path(s.found[0]["path"]), GpuVm)
    finally:
        core._debug_set_fault(0)
    clean = _quiet_run(lambda: GpuvmTarget(system=GpuVm), seconds=2, seed=1, out_dir=None)
    assert clean.failures == 0


def test_shrinker_drops_noise() -> None:
    noise = [{"call": "unmap", "addr": 40 * PAGE, "range": PAGE, "obj": None, "offset": 0},
             {"call": "prefetch", "addr": 0, "range": 64 * PAGE, "obj": None, "offset": 0},
             {"call": "madvise", "addr": 50 * PAGE, "range": 3 * PAGE, "obj": None,
              "offset": 0}]
    case = {"vm": {"start": 0, "range": 64 * PAGE, "reserve_addr": 60 * PAGE,
                   "reserve_range": PAGE}, "unit": PAGE,
            "steps": noise + [
                {"call": "map", "addr": 0, "range": 16 * PAGE, "obj": 2, "offset": 7 * PAGE},
                *noise,
                {"call": "map", "addr": 4 * PAGE, "range": 2 * PAGE, "obj": 3, "offset": 0},
                *noise]}
    t = GpuvmTarget(system=OffByOneVm)
    f = t.run_case(case)
    assert f is not None and f.kind == "ops"
    small, sf = t.shrink(case, f, time.monotonic() + 20)
    assert sf.kind == "ops"
    assert [s["call"] for s in small["steps"]] == ["map", "map"]
    assert small["vm"]["reserve_range"] == 0
    assert small["steps"][1]["obj"] is None and small["steps"][1]["offset"] == 0
    assert t.run_case(small) is not None


class _WrongErrno(RefGpuVm):
    def sm_unmap_ops_create(self, addr: int, range: int) -> Any:  # noqa: A002
        try:
            return super().sm_unmap_ops_create(addr, range)
        except GpuvmError as e:
            raise GpuvmError(errno.ERANGE, "wrong errno") from e


class _CrashOnApply(RefGpuVm):
    def apply(self, ops: Any) -> int:
        if len(self) >= 3:
            raise IndexError("boom")
        return super().apply(ops)


class _BrokenCheck(RefGpuVm):
    def check(self) -> None:
        assert len(self) < 2, "tree invariant violated"


class _WrongLen(RefGpuVm):
    def __len__(self) -> int:
        return max(0, super().__len__() - (1 if super().__len__() > 3 else 0))


class _LoopBatch(RefGpuVm):
    """A correct ``requests_batch`` for the reference: one request at a time."""

    def requests_batch(self, kind: Any, addr: Any, range: Any, obj: Any,  # noqa: A002
                       offset: Any) -> Any:
        import numpy as np
        rows = list(zip(*(np.asarray(c).tolist() for c in (kind, addr, range, obj, offset)),
                        strict=True))
        for i, (_, *vals) in enumerate(rows):
            for v in vals[:2] + vals[3:]:
                if not 0 <= v < 1 << 64:
                    raise GpuvmError(errno.EINVAL, f"value {v} outside u64", index=i)
        counts = []
        for i, (k, a, r, o, f) in enumerate(rows):
            try:
                if k == gpuvm_core.REQ_UNMAP:
                    ops = self.sm_unmap_ops_create(a, r)
                elif k == gpuvm_core.REQ_MAP:
                    ops = self.sm_map_ops_create(a, r, None if o < 0 else o, f)
                else:
                    ops = self.madvise_ops_create(a, r, None if o < 0 else o, f)
            except GpuvmError as e:
                raise GpuvmError(e.errno or 0, e.strerror or "", index=i) from None
            counts.append(len(ops))
            self.apply(ops)
        return np.array(counts, dtype=np.int64)


class _BatchSkipsUnmaps(_LoopBatch):
    """A batch path that silently drops every unmap request."""

    def requests_batch(self, kind: Any, addr: Any, range: Any, obj: Any,  # noqa: A002
                       offset: Any) -> Any:
        import numpy as np
        k = np.asarray(kind)
        keep = k != gpuvm_core.REQ_UNMAP
        if keep.all():
            return super().requests_batch(kind, addr, range, obj, offset)
        out = np.zeros(len(k), dtype=np.int64)
        out[keep] = super().requests_batch(*(np.asarray(c)[keep]
                                             for c in (kind, addr, range, obj, offset)))
        return out


def test_batch_path_of_a_correct_system_is_clean(tmp_path: Path) -> None:
    s = _quiet_run(lambda: GpuvmTarget(system=_LoopBatch), seconds=2, seed=3, out_dir=tmp_path)
    assert s.failures == 0 and s.cases > 20


@pytest.mark.parametrize(("cls", "kind"), [(_WrongErrno, "result"), (_CrashOnApply, "crash"),
                                           (_BrokenCheck, "check"), (_WrongLen, "len"),
                                           (_BatchSkipsUnmaps, "batch")])
def test_each_kind_of_mismatch_is_caught(cls: Any, kind: str, tmp_path: Path) -> None:
    s = _quiet_run(lambda: GpuvmTarget(system=cls), seconds=30, seed=4, out_dir=tmp_path,
                   shrink_seconds=5)
    assert s.failures == 1
    assert f": {kind}: " in s.found[0]["failure"]


def test_cli_clean_run_prints_summary_and_seed(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--seconds", "1", "--seed", "5fc3f3a", "--impl", "reference", "-q"])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"seed {parse_seed('5fc3f3a')}" in out and "'5fc3f3a'" in out
    last = out.strip().splitlines()[-1]
    assert " cases, " in last and " steps, 0 failures" in last


def test_cli_replays_corpus_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = record_vector({"vm": {"start": 0, "range": 8 * PAGE, "reserve_addr": 0,
                                 "reserve_range": 0},
                          "steps": [{"call": "map", "addr": 0, "range": PAGE, "obj": 1,
                                     "offset": 0}]}, RefGpuVm, "fuzz-regress-x-1")
    (tmp_path / "a.jsonl").write_text(json.dumps(good) + "\n")
    assert main(["--seconds", "0.5", "--seed", "1", "--corpus", str(tmp_path), "-q"]) == 0
    assert "corpus: 1 cases replayed" in capsys.readouterr().out
    good["steps"][0]["state"] = []  # now the corpus disagrees with every implementation
    (tmp_path / "a.jsonl").write_text(json.dumps(good) + "\n")
    assert main(["--seconds", "0.5", "--seed", "1", "--corpus", str(tmp_path), "-q"]) == 1


@pytest.mark.parametrize("argv", [["--seconds", "0"], ["--seconds", "nan"], ["--seconds", "inf"],
                                  ["--jobs", "0"], ["--max-cases", "-1"],
                                  ["--shrink-seconds", "nan"]])
def test_cli_bad_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert f"argument {argv[0]}:" in capsys.readouterr().err


def test_parse_seed() -> None:
    assert parse_seed("42") == 42
    assert parse_seed("0x10") == 16
    assert parse_seed("abc") == 0xABC
    assert parse_seed("not-hex!") == parse_seed("not-hex!") >= 0


@pytest.mark.debug_build
def test_cli_case_reruns_one_case_and_prints_the_vector(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    core = getattr(gpuvm_core, "_core", None)
    assert core is not None and hasattr(core, "_debug_set_fault")
    out = str(tmp_path)
    assert main(["--seconds", "60", "--seed", "5", "--debug-fault", "1", "--out", out,
                 "--shrink-seconds", "5", "-q"]) == 1
    text = capsys.readouterr().out
    fail = next(line for line in text.splitlines() if line.startswith("FAIL seed"))
    index = int(fail.split(" case ")[1].split(":")[0])
    assert f"--seed 5 --case {index} --debug-fault 1" in text
    vector = next(line for line in text.splitlines() if line.strip().startswith("vector:"))
    written = next(tmp_path.glob("*.jsonl"))
    assert vector.split("vector:", 1)[1].strip() == written.read_text().strip()
    # --case alone reproduces it, with the same shrunk vector
    written.unlink()
    assert main(["--seed", "5", "--case", str(index), "--debug-fault", "1", "--out", out,
                 "--shrink-seconds", "5", "-q"]) == 1
    assert "1 cases" in capsys.readouterr().out
    (again,) = tmp_path.glob("*.jsonl")
    _assert_reproduces(again, OffByOneVm)
    # without the fault the same case is clean
    assert main(["--seed", "5", "--case", str(index), "--out", out, "-q"]) == 0


@pytest.mark.debug_build
def test_cli_corpus_gets_new_failures_and_replays_them(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    """--corpus DIR: a failure found once is written there and replayed on every later run."""
    core = getattr(gpuvm_core, "_core", None)
    assert core is not None and hasattr(core, "_debug_set_fault")
    corpus = tmp_path / "corpus"
    args = ["--seconds", "60", "--seed", "3", "--corpus", str(corpus), "-q"]
    assert main([*args, "--debug-fault", "1", "--shrink-seconds", "5"]) == 1
    (path,) = corpus.glob("fuzz-*.jsonl")
    (case,) = iter_cases(path)
    assert run_case(case, RefGpuVm).ok and run_case(case, GpuVm).ok
    capsys.readouterr()
    # the bug comes back: the corpus replay fails before any fuzzing
    assert main([*args, "--debug-fault", "1"]) == 1
    out = capsys.readouterr().out
    assert "corpus: 1 cases replayed" in out and "1 failed" in out and " cases, " not in out
    # fixed: the replay passes and fuzzing goes on
    assert main(["--seconds", "0.5", "--seed", "3", "--corpus", str(corpus), "-q"]) == 0
    assert "corpus: 1 cases replayed" in capsys.readouterr().out


def test_atheris_entry_point_finds_planted_bug(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``fuzz_one_input`` (what atheris calls) decodes bytes into cases and catches a bug."""
    import random

    rng = random.Random(0)
    for _ in range(50):  # the real system: clean
        atheris_target.fuzz_one_input(rng.randbytes(rng.randint(64, 4096)))
    assert not list(tmp_path.iterdir())
    monkeypatch.setitem(_strategies.PROPERTY, "target",
                        lambda: GpuvmTarget(system=OffByOneVm))
    monkeypatch.setitem(_strategies.PROPERTY, "save_dir", tmp_path)
    monkeypatch.setitem(_strategies.PROPERTY, "shrink_seconds", 5.0)
    for _ in range(5000):
        try:
            atheris_target.fuzz_one_input(rng.randbytes(rng.randint(64, 4096)))
        except AssertionError as e:
            assert "ops" in str(e) and "written:" in str(e)
            break
    else:
        pytest.fail("5000 random inputs never reached a middle split")
    (path,) = tmp_path.glob("fuzz-atheris-*.jsonl")
    _assert_reproduces(path, OffByOneVm)
