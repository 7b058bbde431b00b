"""Tests against a kernel tree's own drm_gpuvm.c (the kernel oracle).

The tree comes from the environment variable ``GPUVM_KERNEL_TREE``, else
``../shared/kernel/pinned`` next to the repository (a minimal kernel tree with
the files the oracle compiles), else nowhere: then every test here is
*deselected* and the run says so in its header and in its summary (a
deselected test is reported, a silent skip would hide that the kernel was
never consulted).

A C compiler is needed too; without one the tests are deselected the same way.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from gpuvm_core.kernel import KERNEL_FILES, KernelOracle, load_oracle
from gpuvm_core.kernel.build import KernelTreeError, check_tree, find_compiler

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_TREE = REPO.parent / "shared" / "kernel" / "pinned"

#: drivers/gpu/drm/drm_gpuvm.c of the kernel the shipped vectors were recorded
#: from (git blob id): with this file, a recording must equal the shipped set.
SHIPPED_GPUVM_BLOB = "af63f4d003155d54e3b7afc28389f9bebd2068b3"

#: The one-line change planted into a copy of the tree: the offset of the
#: ``next`` piece when a VA starting inside the request sticks out above it
#: (__drm_gpuvm_sm_map(), the split logic) becomes one too high.
PLANT_FROM = ".gem.offset = offset + req_end - addr,"
PLANT_TO = ".gem.offset = offset + req_end - addr + 1,"


def _tree() -> tuple[Path | None, str]:
    env = os.environ.get("GPUVM_KERNEL_TREE")
    cand = Path(env) if env else DEFAULT_TREE
    where = f"GPUVM_KERNEL_TREE={env}" if env else f"default {DEFAULT_TREE}"
    try:
        root = check_tree(cand)
        find_compiler()
    except KernelTreeError as e:
        return None, f"kernel-oracle tests deselected: {e} ({where})"
    return root, f"kernel-oracle tests use {root} ({where})"


TREE, TREE_NOTE = _tree()


def pytest_report_header(config: pytest.Config) -> str:
    return TREE_NOTE


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if TREE is not None:
        return
    mine = [it for it in items if HERE in Path(str(it.path)).parents]
    if mine:
        config.hook.pytest_deselected(items=mine)
        items[:] = [it for it in items if it not in mine]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TREE is None:
        terminalreporter.write_line(TREE_NOTE, yellow=True)


def git_blob(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture(scope="session", autouse=True)
def _oracle_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Builds go to a private cache, so the tests never touch the user's."""
    os.environ["GPUVM_ORACLE_CACHE"] = str(tmp_path_factory.mktemp("oracle-cache"))


@pytest.fixture(scope="session")
def kernel_tree() -> Path:
    assert TREE is not None
    return TREE


@pytest.fixture(scope="session")
def oracle(kernel_tree: Path, _oracle_cache: None) -> KernelOracle:
    return load_oracle(kernel_tree)


@pytest.fixture(scope="session")
def planted_tree(kernel_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the oracle's files from the tree with one line of the split logic changed."""
    root = tmp_path_factory.mktemp("planted-tree")
    for rel in KERNEL_FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(kernel_tree / rel, root / rel)
    src = root / "drivers/gpu/drm/drm_gpuvm.c"
    text = src.read_text(encoding="utf-8")
    assert text.count(PLANT_FROM) == 1, "the planted line is not in this tree"
    src.write_text(text.replace(PLANT_FROM, PLANT_TO), encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def planted_oracle(planted_tree: Path, _oracle_cache: None) -> KernelOracle:
    return load_oracle(planted_tree)
