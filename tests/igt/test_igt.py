"""pysvm igt: the enumeration of IGT's subtests, a fixed sample run, and the command line."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pysvm.cli.main import main
from pysvm.igt import EXPECTED_COUNTS, all_subtests, run_subtest, select
from pysvm.igt.scenario import Scenario
from pysvm.trace.engine import Engine

# Subtest counts per suite, derived by hand from the suites' sources (docs/igt.md names
# the commits) and cross-checked by expanding their section tables with a script:
# * xe_exec_system_allocator: 25 igt_subtest_f templates in the loop over the 75-entry
#   `sections` table (1,875), then 57 more: 2 prefetch benchmarks, 5 shared-alloc
#   thread subtests, fault, 16 `psections`, unaligned-alloc, 5 fault benchmarks,
#   2 `esections` x (evict-, processes-evict-), 12 `msections`, 10 PAT entries, compute.
# * xe_madvise: 8 purgeable subtests + 3 atomic subtests (two igt_subtest_group blocks).
# * xe_multigpu_svm: one igt_subtest_f over the 19-entry `msections` table.
COUNTS = {"xe_exec_system_allocator": 1932, "xe_madvise": 11, "xe_multigpu_svm": 19}

#: Subtests where the model and IGT disagree (docs/igt.md, "Divergences"): they must
#: fail, and fail at the step documented, until the model changes.
DIVERGENCES: dict[tuple[str, str], str] = {}

#: A fixed sample of a few hundred subtests covering every ported family (fast ones):
#: shell globs on the subtest name (a name without wildcards matches only itself).
SAMPLE_PATTERNS = ["once-*", "twice-*", "partial-*", "madvise-*", "pat-index-*", "fault",
                   "unaligned-alloc", "atomic-*", "mgpu-atomic-op-*", "mgpu-coherency-*",
                   "mgpu-pagefault-*", "threads-many-malloc", "threads-shared-vm-many-mmap",
                   "threads-shared-vm-shared-alloc-many-stride-malloc-race",
                   "many-malloc-race", "many-new-busy", "many-64k-free-madvise",
                   "many-stride-mmap-remap-dontunmap-eocheck", "many-64k-mmap-remap-ro",
                   "threads-many-mmap-remap-ro-eocheck",
                   "threads-shared-vm-many-mmap-shared-remap-dontunmap",
                   "process-many-malloc", "process-many-stride-mmap-shared",
                   "process-many-new-race", "process-many-execqueues-mmap-file",
                   "process-many-large-malloc-busy", "processes-evict-malloc",
                   "process-many-mmap-remap-ro-dontunmap-eocheck",
                   "process-many-stride-mmap-shared-remap-eocheck"]


def _sample() -> list[tuple[str, str]]:
    return [(st.suite, st.name) for st in all_subtests() if st.build is not None
            and any(fnmatch.fnmatchcase(st.name, p) for p in SAMPLE_PATTERNS)]


def test_counts_match_the_sources() -> None:
    subs = all_subtests()
    per = Counter(st.suite for st in subs)
    assert dict(per) == COUNTS == EXPECTED_COUNTS
    assert len({(st.suite, st.name) for st in subs}) == len(subs), "duplicate names"


def test_names_are_spelled_as_igt_spells_them() -> None:
    names = {st.name for st in all_subtests()}
    for n in ("once-malloc", "many-64k-mmap-free-race-nomemset",
              "threads-shared-vm-many-large-execqueues-mmap-new-race-nomemset",
              "process-many-large-execqueues-mmap-remap-ro-dontunmap-eocheck",
              "madvise-preffered-loc-atomic-vram",          # IGT's spelling, kept
              "pat-index-madvise-pat-idx-uc-comp-multi-vma", "partial-atomic-middle-remap-"
              "no-cpu-fault", "threads-shared-alloc-many-stride-malloc-sync",
              "dontneed-before-mmap", "atomic-global", "mgpu-concurrent-access-prefetch"):
        assert n in names, n


def test_every_subtest_is_ported_or_has_a_reason() -> None:
    for st in all_subtests():
        assert (st.build is None) == bool(st.skip), st.name
        if st.build is None:
            assert st.status == f"skipped: {st.skip}" and len(st.skip or "") > 10
        else:
            assert st.status == "ported"


@pytest.mark.parametrize("profile", ["6.18", "newest"])
def test_fixed_sample_passes(profile: str) -> None:
    sample = _sample()
    assert 150 <= len(sample) <= 400, len(sample)
    by_key = {(st.suite, st.name): st for st in all_subtests()}
    failed = []
    ran = 0
    for key in sample:
        r = run_subtest(by_key[key], profile)
        if key in DIVERGENCES:
            assert r.status == "failed" and DIVERGENCES[key] in r.message, (key, r)
            continue
        ran += r.status == "passed"
        if r.status == "failed":
            failed.append(f"{key[1]}: {r.message}")
    assert not failed, "\n".join(failed[:10])
    assert ran > 100


def test_every_remap_subtest_is_ported_process_ones_included() -> None:
    """Every -remap* mode of every template is ported: the process-many-* ones run the
    remap scenario in each child's own address space."""
    remap = [st for st in all_subtests() if st.suite == "xe_exec_system_allocator"
             and "-remap" in st.name and not st.name.startswith("partial-")]
    assert len(remap) == 13 * 25
    assert all(st.build is not None for st in remap), [st.name for st in remap
                                                       if st.build is None][:5]
    assert sum(st.name.startswith("process-many-") for st in remap) == 13 * 5


def test_a_child_remaps_in_its_own_address_space() -> None:
    """process-many-mmap-remap-ro-dontunmap-eocheck: each child's mprotect and mremap name
    the child (its mm), and the subtest passes; the same mremap sent to the main process
    (whose mm does not map the buffer) fails the subtest."""
    from dataclasses import replace

    from pysvm.igt.runner import run_scenario
    st = next(iter(select(["xe_exec_system_allocator"],
                          ["process-many-mmap-remap-ro-dontunmap-eocheck"])))
    assert st.build is not None
    sc = st.build("6.18")
    moves = [k for k, s in enumerate(sc.steps) if s.ev["ev"] in ("mremap", "mprotect")]
    assert moves and all(sc.steps[k].ev.get("process", "main").startswith("child")
                         for k in moves)
    assert len({sc.steps[k].ev["process"] for k in moves}) > 1     # every child remaps
    assert run_scenario(sc)[0] == "passed"
    k = next(k for k in moves if sc.steps[k].ev["ev"] == "mremap")
    ev = {key: v for key, v in sc.steps[k].ev.items() if key != "process"}
    sc.steps[k] = replace(sc.steps[k], ev=ev)
    status, msg, _, _ = run_scenario(sc)
    assert status == "failed", msg


def test_remap_moves_device_pages_and_the_next_exec_uses_them_in_vram() -> None:
    """twice-mmap-remap-eocheck: the first exec stores into the buffer (its pages go to
    VRAM) and nothing reads them back before the mremap, so the move carries device
    pages; the second exec runs the batch written before the move, at the new address,
    without the pages leaving VRAM in between."""
    from pysvm.world import World
    st = next(iter(select(["xe_exec_system_allocator"], ["twice-mmap-remap-eocheck"])))
    assert st.build is not None
    sc = st.build("6.18")
    k = next(i for i, s in enumerate(sc.steps) if s.ev["ev"] == "mremap")
    w = World()
    for step in sc.steps[:k]:
        assert w.execute(dict(step.ev))["result"] in step.want, step
    old, new = sc.steps[k].ev["addr"], sc.steps[k].ev["new_addr"]
    before = w.mm.page_at(old)
    assert before is not None and before.is_device
    assert w.execute(dict(sc.steps[k].ev)) == {"ev": "mremap", "result": "ok", "addr": new}
    assert w.mm.page_at(new) == before and w.mm.page_at(old) is None
    to_system = w.summary().get("migrations_to_system", 0)
    gpu = next(s for s in sc.steps[k + 1:] if s.ev["ev"] == "gpu_access")
    assert gpu.ev["addr"] == new and gpu.data is not None
    out = w.execute(dict(gpu.ev))
    assert out["result"] == "ok" and tuple(out["data"]) == gpu.data
    assert w.summary().get("migrations_to_system", 0) == to_system   # read in VRAM


def test_remap_checks_the_address_mremap_returns() -> None:
    """The mremap step must return the target IGT gave (MREMAP_FIXED): a wrong target
    in the check fails the subtest."""
    st = next(iter(select(["xe_exec_system_allocator"], ["twice-mmap-remap"])))
    assert st.build is not None
    sc = st.build("newest")
    k = next(i for i, s in enumerate(sc.steps) if s.ev["ev"] == "mremap")
    good = sc.steps[k]
    assert good.addr == good.ev["new_addr"]
    from dataclasses import replace

    from pysvm.igt.runner import run_scenario
    assert run_scenario(sc)[0] == "passed"
    sc.steps[k] = replace(good, addr=good.ev["new_addr"] + 4096)
    status, msg, _, _ = run_scenario(sc)
    assert status == "failed" and "returned address" in msg


def test_scenario_checks_catch_a_wrong_value() -> None:
    """A read-back check that cannot fail would prove nothing: corrupt one and see it fail."""
    st = next(iter(select(["xe_exec_system_allocator"], ["once-malloc"])))
    assert st.build is not None
    sc = st.build("6.18")
    k = next(i for i, s in enumerate(sc.steps) if s.data)
    bad = sc.steps[k]
    assert bad.data is not None
    sc.steps[k] = type(bad)(bad.ev, bad.want, (bad.data[0] + 1,) + bad.data[1:], bad.stop_on,
                            bad.why)
    from pysvm.igt.runner import run_scenario
    status, msg, _, _ = run_scenario(sc)
    assert status == "failed" and "not equal to what was written" in msg


def test_expected_errno_is_checked() -> None:
    sc = Scenario("6.18")
    sc.device("gpu0")
    sc.vm("vm0")
    sc.bind_mirror("vm0")
    sc.mmap(0x10_0000_0000, 4096)
    sc.gpu("vm0", "write", 0x10_0000_0000, 4, 7, want=("ENOENT",), why="must fail")
    from pysvm.igt.runner import run_scenario
    status, msg, _, _ = run_scenario(sc)
    assert status == "failed" and "IGT expects ENOENT" in msg


# -- the command line ---------------------------------------------------------------------

def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = int(e.code or 0)
    return rc, capsys.readouterr().out


def test_list_names_every_subtest(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _run(["igt", "--list"], capsys)
    assert rc == 0
    lines = [ln for ln in out.splitlines() if not ln.startswith("#")]
    assert len(lines) == sum(COUNTS.values())
    suite, name, status = lines[0].split(" ", 2)
    assert (suite, name) == ("xe_exec_system_allocator", "once-malloc") and status == "ported"
    assert any(ln.split(" ", 2)[2].startswith("skipped: ") for ln in lines)
    assert "# total: 1962 subtests" in out


def test_k_and_suite_select(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _run(["igt", "--list", "--suite", "xe_madvise", "-k", "atomic"], capsys)
    names = [ln.split()[1] for ln in out.splitlines() if not ln.startswith("#")]
    assert rc == 0 and names == ["atomic-device", "atomic-global", "atomic-cpu"]
    rc, out = _run(["igt", "--list", "-k", "partial-*remap-cpu-fault"], capsys)
    names = [ln.split()[1] for ln in out.splitlines() if not ln.startswith("#")]
    assert names == ["partial-remap-cpu-fault", "partial-middle-remap-cpu-fault",
                     "partial-atomic-remap-cpu-fault", "partial-atomic-middle-remap-cpu-fault"]


def test_run_json_and_exit_status(capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    rc, out = _run(["igt", "-k", "once-malloc-madvise", "--json"], capsys)
    rows = [json.loads(ln) for ln in out.splitlines()]
    assert rc == 0
    assert [(r["name"], r["profile"], r["status"]) for r in rows[:-1]] == [
        ("once-malloc-madvise", "6.18", "passed"), ("once-malloc-madvise", "newest", "passed")]
    assert rows[-1]["summary"]["passed"] == 2 and rows[-1]["summary"]["failed"] == 0
    rc, out = _run(["igt", "-k", "once-malloc-madvise", "--json", "--jobs", "2"], capsys)
    rows2 = [json.loads(ln) for ln in out.splitlines()]

    def key(r: dict[str, object]) -> tuple[object, ...]:
        return (r["name"], r["profile"], r["status"], r["steps"])

    assert rc == 0 and [key(r) for r in rows2[:-1]] == [key(r) for r in rows[:-1]]
    assert rows2[-1]["summary"]["passed"] == 2
    rc, out = _run(["igt", "--suite", "xe_madvise", "-k", "atomic-cpu",
                    "--profile", "newest"], capsys)
    assert rc == 0 and out.splitlines()[-1] == "1 passed, 0 failed, 0 skipped"
    # a failing subtest makes the exit status 1 (none fails today: make one fail)
    import pysvm.cli.igt as cli_igt
    from pysvm.igt.runner import Result

    def failing(st: Any, prof: str, record: str | None = None) -> Result:
        return Result(st.suite, st.name, prof, "failed", "made to fail")

    monkeypatch.setattr(cli_igt, "run_subtest", failing)
    rc, out = _run(["igt", "--suite", "xe_madvise", "-k", "atomic-cpu",
                    "--profile", "newest"], capsys)
    assert rc == 1 and out.splitlines()[-1] == "0 passed, 1 failed, 0 skipped"


def test_no_match_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        rc = main(["igt", "-k", "no-such-subtest"])
    except SystemExit as e:
        rc = int(e.code or 0)
    assert rc == 2
    assert "no subtest matches" in capsys.readouterr().err


def test_record_writes_replayable_traces(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    rc, _ = _run(["igt", "-k", "partial-atomic-remap-cpu-fault", "--profile", "newest",
                  "--record", str(tmp_path)], capsys)
    assert rc == 0
    files = list(tmp_path.rglob("*.jsonl"))
    assert [f.name for f in files] == ["partial-atomic-remap-cpu-fault@newest.jsonl"]
    assert not list(tmp_path.rglob(".tmp-*"))
    res = subprocess.run([sys.executable, "-m", "pysvm", "replay", str(files[0])],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    outs = [json.loads(ln) for ln in res.stdout.splitlines()]
    assert outs[0] == {"i": 0, "ev": "config", "result": "ok", "profile": "newest"}
    # The same events through the engine directly give the same results.
    eng = Engine()
    direct = [eng.execute(json.loads(ln)) for ln in files[0].read_text().splitlines()]
    assert [o["result"] for o in outs[:-1]] == [d["result"] for d in direct]
    assert all(o["result"] == "ok" for o in outs[:-1])


@pytest.mark.parametrize("profile", ["6.18", "newest"])
def test_race_modes_interleave_a_cpu_access_mid_fault(profile: str) -> None:
    """-race: the CPU's read of the fence page fires inside the GPU fault and forces retries."""
    st = next(s for s in all_subtests() if s.name == "many-malloc-race")
    assert st.build is not None
    eng = Engine()
    fired = retries = 0
    for step in st.build(profile).steps:
        out = eng.execute(step.ev)
        assert out["result"] in step.want, (step.ev, out)
        fired += len(out.get("injected", []))
        retries += out.get("retries", 0)
    assert fired > 50 and retries > 0
