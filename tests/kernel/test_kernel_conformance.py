"""Vectors recorded from the kernel tree, replayed through the core (``pysvm conformance``)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from gpuvm_core import GpuVm
from gpuvm_core.conformance import bundled_vectors, iter_cases, run_file
from gpuvm_core.kernel import KernelOracle
from gpuvm_core.recorder import dumps, record_case, request_stream
from pysvm.cli.main import main

from .conftest import SHIPPED_GPUVM_BLOB, git_blob


def test_recording_passes_through_the_core(oracle: KernelOracle, kernel_tree: Path) -> None:
    shipped = list(iter_cases(bundled_vectors()))
    recorded = [record_case(request_stream(c), oracle, oracle.take_warnings) for c in shipped]
    rep = run_file(recorded, GpuVm)
    assert (rep.passed, rep.failed) == (len(shipped), 0), rep.failures[:3]
    if git_blob(kernel_tree / "drivers/gpu/drm/drm_gpuvm.c") == SHIPPED_GPUVM_BLOB:
        # The tree the shipped set came from: the recording is the shipped set.
        assert [dumps(r) for r in recorded] == [dumps(c) for c in shipped]


def test_cli_records_and_keeps(kernel_tree: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine.jsonl.gz"
    assert main(["conformance", "--kernel-tree", str(kernel_tree), "--record", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2011 passed, 0 failed" in text and f"wrote 2011 cases to {out}" in text
    lines = gzip.decompress(out.read_bytes()).decode().splitlines()
    assert len(lines) == 2011
    if git_blob(kernel_tree / "drivers/gpu/drm/drm_gpuvm.c") == SHIPPED_GPUVM_BLOB:
        assert "same answers as" in text and "2011 of 2011 cases (2011 byte-identical" in text
        assert gzip.decompress(out.read_bytes()) == gzip.decompress(
            bundled_vectors().read_bytes())


def test_planted_change_fails_with_the_first_differing_vector(
        planted_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "planted.jsonl"
    assert main(["conformance", "--kernel-tree", str(planted_tree), "--record", str(out)]) == 1
    text = capsys.readouterr().out
    first = next(line for line in text.splitlines() if "first differing vector:" in line)
    assert "ops:" in first  # the changed offset shows in the op list first
    fails = [line for line in text.splitlines() if line.startswith("  FAIL ")]
    assert fails and "ops differ" in fails[0]
    # the core fails on the very case the comparison named first
    assert first.split("first differing vector: ")[1].split(" ")[0] in fails[0]
    assert " 0 failed" not in text.splitlines()[-1]


def test_record_needs_a_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "--record", str(tmp_path / "x.jsonl")]) == 2
    assert "--record needs --kernel-tree" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_bad_tree_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "--kernel-tree", str(tmp_path)]) == 2
    assert "lacks drivers/gpu/drm/drm_gpuvm.c" in capsys.readouterr().err
