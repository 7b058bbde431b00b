"""Differential fuzzing with the kernel as the third implementation and the oracle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpuvm_core import GpuVm, RefGpuVm
from gpuvm_core.conformance import iter_cases, run_case
from gpuvm_core.fuzz import GpuvmTarget, case_rng, main, run
from gpuvm_core.kernel import KernelOracle


def test_core_and_reference_agree_with_the_kernel(oracle: KernelOracle) -> None:
    """Single and batch paths of the core, and the reference, on 400 generated cases."""
    summary = run(lambda: GpuvmTarget(kernel=oracle), seconds=600, seed=20261206,
                  max_cases=400, out_dir=None, progress=None)
    assert summary.cases == 400 and summary.failures == 0, summary.found


def test_batch_path_is_checked_against_the_kernel(oracle: KernelOracle) -> None:
    """A batch path that drops every other request is caught, with the kernel as oracle."""

    class SkippingBatch:
        def __init__(self, *a: Any, **kw: Any) -> None:
            self._vm = GpuVm(*a, **kw)

        def __getattr__(self, name: str) -> Any:
            if name.startswith("_"):
                raise AttributeError(name)
            return getattr(self._vm, name)

        def __iter__(self) -> Any:
            return iter(self._vm)

        def __len__(self) -> int:
            return len(self._vm)

        def requests_batch(self, kinds: Any, addr: Any, rng: Any, obj: Any, off: Any) -> Any:
            counts = self._vm.requests_batch(kinds[::2], addr[::2], rng[::2], obj[::2],
                                             off[::2])
            return np.repeat(counts, 2)[: len(kinds)]

    target = GpuvmTarget(system=SkippingBatch, kernel=oracle)
    kinds = set()
    for i in range(200):
        f = target.run_case(target.make_case(case_rng(5, i)))
        if f is not None:
            kinds.add(f.kind)
            assert "kernel" in f.message
    assert kinds == {"batch"}


def test_planted_kernel_change_fails_the_fuzz_with_a_shrunk_vector(
        planted_tree: Path, planted_oracle: KernelOracle, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--kernel-tree", str(planted_tree), "--seed", "7", "--seconds", "60",
               "--shrink-seconds", "20", "--out", str(tmp_path), "-q"])
    text = capsys.readouterr().out
    assert rc == 1, text
    assert "FAIL seed 7" in text and "shrunk to" in text
    written = sorted(tmp_path.glob("fuzz-*.jsonl"))
    assert len(written) == 1
    case = json.loads(written[0].read_text(encoding="utf-8"))
    assert 1 <= len(case["steps"]) <= 4  # shrunk
    # The vector carries the planted kernel's answers: it passes on that kernel
    # and fails on the core and on the reference.
    (vec,) = list(iter_cases(written[0]))
    assert run_case(vec, planted_oracle).ok
    assert not run_case(vec, GpuVm).ok
    assert not run_case(vec, RefGpuVm).ok


def test_bad_tree_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--kernel-tree", str(tmp_path), "--max-cases", "1", "-q"]) == 2
    assert "lacks" in capsys.readouterr().err
