"""The kernel oracle itself: build, cache, errors, and its VM against the core."""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from gpuvm_core import GpuVm, GpuvmError, RefGpuVm
from gpuvm_core.kernel import KERNEL_FILES, KernelOracle, KernelTreeError, build_oracle
from gpuvm_core.workloads import new_vm, run_single, workload

P = 0x1000


def test_build_is_cached_by_input_hash(kernel_tree: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUVM_ORACLE_CACHE", str(tmp_path / "cache"))
    first = build_oracle(kernel_tree)
    again = build_oracle(kernel_tree)
    assert not first.cached and again.cached
    assert again.library == first.library and first.library.is_file()
    # A changed input is a different key: a copy with one byte more rebuilds.
    copy = tmp_path / "tree"
    for rel in KERNEL_FILES:
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(kernel_tree / rel, copy / rel)
    with open(copy / "lib/rbtree.c", "a", encoding="utf-8") as fh:
        fh.write("\n")
    other = build_oracle(copy)
    assert not other.cached and other.key != first.key
    # No half-written build left behind: only finished build directories.
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        [first.library.parent.name, other.library.parent.name])


def test_missing_files_are_named(tmp_path: Path, kernel_tree: Path) -> None:
    with pytest.raises(KernelTreeError, match="is not a directory"):
        build_oracle(tmp_path / "nope")
    (tmp_path / "lib").mkdir()
    shutil.copyfile(kernel_tree / "lib/rbtree.c", tmp_path / "lib/rbtree.c")
    with pytest.raises(KernelTreeError, match="drivers/gpu/drm/drm_gpuvm.c") as ei:
        build_oracle(tmp_path)
    assert "lib/rbtree.c," not in str(ei.value).split("(the oracle needs")[0]


def test_no_compiler_is_a_clear_error(kernel_tree: Path, monkeypatch: pytest.MonkeyPatch,
                                      tmp_path: Path) -> None:
    monkeypatch.setenv("GPUVM_ORACLE_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CC", "no-such-cc")
    with pytest.raises(KernelTreeError, match="no C compiler"):
        build_oracle(kernel_tree)


def test_compile_error_is_reported(kernel_tree: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUVM_ORACLE_CACHE", str(tmp_path / "cache"))
    for rel in KERNEL_FILES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(kernel_tree / rel, tmp_path / rel)
    with open(tmp_path / "drivers/gpu/drm/drm_gpuvm.c", "a", encoding="utf-8") as fh:
        fh.write("\nthis is not C;\n")
    with pytest.raises(KernelTreeError, match="compiling the kernel oracle"):
        build_oracle(tmp_path)
    assert not any((tmp_path / "cache").glob("*/libgpuvm_oracle.so"))


def _random_vm(factory: object, rng: random.Random) -> object:
    vm = factory(0, 64 * P)  # type: ignore[operator]
    for _ in range(40):
        a, r = rng.randrange(64) * P, rng.randint(1, 6) * P
        obj = rng.choice([None, 1, 2])
        with contextlib.suppress(GpuvmError):
            vm.apply(vm.sm_map_ops_create(a, min(r, 64 * P - a), obj, a))
    return vm


def test_lookups_match_the_core(oracle: KernelOracle) -> None:
    for seed in range(5):
        kv = _random_vm(oracle, random.Random(seed))
        cv = _random_vm(GpuVm, random.Random(seed))
        assert [va.as_tuple() for va in kv] == [va.as_tuple() for va in cv]  # type: ignore[attr-defined]
        assert len(kv) == len(cv)  # type: ignore[arg-type]

        def t(va: object) -> object:
            return None if va is None else va.as_tuple()  # type: ignore[attr-defined]

        for a in range(0, 66 * P, P // 2):
            assert t(kv.find_first(a, P)) == t(cv.find_first(a, P))  # type: ignore[attr-defined]
            assert t(kv.find_prev(a)) == t(cv.find_prev(a))  # type: ignore[attr-defined]
            assert t(kv.find_next(a)) == t(cv.find_next(a))  # type: ignore[attr-defined]
            assert t(kv.find(a, 2 * P)) == t(cv.find(a, 2 * P))  # type: ignore[attr-defined]
        kp = [op.as_dict() for op in kv.prefetch_ops_create(0, 64 * P)]  # type: ignore[attr-defined]
        cp = [op.as_dict() for op in cv.prefetch_ops_create(0, 64 * P)]  # type: ignore[attr-defined]
        assert kp == cp and kp


def test_refusals_and_stale_ops(oracle: KernelOracle) -> None:
    vm = oracle(0, 16 * P, reserve_addr=4 * P, reserve_range=P)
    with pytest.raises(GpuvmError) as ei:
        vm.sm_map_ops_create(3 * P, 2 * P, 1, 0)  # covers the reserved node
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(GpuvmError):
        vm.sm_unmap_ops_create(15 * P, 2 * P)  # reaches outside the VM
    with pytest.raises(GpuvmError):
        vm.sm_map_ops_create(1 << 64, P)  # not a u64: refused before C
    ops = vm.sm_map_ops_create(0, P, 7, 0)
    other = vm.sm_map_ops_create(P, P, 7, P)
    assert vm.apply(ops) == 0
    with pytest.raises(GpuvmError, match="stale"):
        vm.apply(ops)
    with pytest.raises(GpuvmError, match="stale"):
        vm.apply(other)  # the VM changed since
    with pytest.raises(GpuvmError, match="not created by this VM"):
        oracle(0, 16 * P).apply(vm.sm_map_ops_create(2 * P, P))
    assert vm.state() == [(0, P, 7, 0)]
    # the reserved node is in the tree (lookups see it) but not in the state
    found = vm.find_first(4 * P, 1)
    assert found is not None and (found.addr, found.range) == (4 * P, P)


def test_zero_length_map_at_zero_is_a_refused_insert(oracle: KernelOracle) -> None:
    """The op builder accepts it; drm_gpuva_insert() refuses it (the query wraps)."""
    vm = oracle(0, 16 * P)
    vm.apply(vm.sm_map_ops_create(0, 2 * P, None, 0))
    ops = vm.sm_map_ops_create(0, 0, None, 0)
    assert vm.apply(ops) == 1
    ref = RefGpuVm(0, 16 * P)
    ref.apply(ref.sm_map_ops_create(0, 2 * P, None, 0))
    assert ref.apply(ref.sm_map_ops_create(0, 0, None, 0)) == 1
    assert vm.state() == ref.state()


@pytest.mark.parametrize("w", [1, 2, 3, 4])
def test_c_timing_loop_matches_the_core(oracle: KernelOracle, w: int) -> None:
    """oracle_run (the C loop the benchmarks time) does what run_single does on the core."""
    n, m = 300, 3_000
    reqs = workload(w, n, m)
    core = new_vm(GpuVm, n, w)
    want = run_single(core, reqs)
    kvm = new_vm(oracle, n, w)
    seconds, got, refused = kvm.run_requests(reqs.codes, reqs.addr, reqs.range, reqs.obj,
                                             reqs.offset)
    assert (got, refused) == (want, 0) and seconds > 0
    assert kvm.state() == [va.as_tuple() for va in core]


def test_kernel_warnings_are_counted(oracle: KernelOracle) -> None:
    oracle.take_warnings()
    oracle(0, 16 * P)
    assert oracle.take_warnings() == 0
    top = (1 << 64) - 8 * P
    oracle(top, 8 * P)  # start + range == 2^64: drm_gpuvm_init() WARNs about the overflow
    assert oracle.take_warnings() >= 1
    assert os.environ["GPUVM_ORACLE_CACHE"]
    assert np.uint64(top) > 0


def test_bench_times_the_kernel_side_by_side(kernel_tree: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from pysvm.cli.main import main

    out = tmp_path / "b.json"
    assert main(["bench", "--sizes", "200", "--workloads", "W1,W4", "--m", "500", "--ref-m",
                 "0", "--no-memory", "--no-progress", "--kernel-tree", str(kernel_tree),
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "x vs kernel" in text and "timed in C in this run" in text
    rows = json.loads(out.read_text())["rows"]
    assert {r["path"] for r in rows} == {"kernel", "single", "batch"}
    by = {(r["workload"], r["path"]): r for r in rows}
    for w in ("W1 map_random", "W4 lookup"):
        k = by[w, "kernel"]
        assert k["ns_per_request"] > 0 and k["kernel_ns"] == k["ns_per_request"]
        for p in ("single", "batch"):
            assert by[w, p]["kernel_ns"] == k["ns_per_request"]  # measured in this run
            assert by[w, p]["final_len"] == k["final_len"] and by[w, p]["ops_or_hits"] == \
                k["ops_or_hits"]
