"""Packaging: the distribution's name and licence, and an sdist holding exactly the sources.

The sdist is built from a copy of the tracked files into which the junk a
checkout collects has been planted (the tour's run.png, traces, results
tables, fuzz-failures/, a venv, build trees, generated C, compiled modules):
none of it may reach the archive, and every tracked source, test and doc must.
The wheel is then built from that sdist - which also proves the sdist is
complete enough to build - and checked for the compiled core and the licence.
"""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNEL = ROOT / "src" / "gpuvm_core" / "kernel"

#: Tracked files that are not part of a source distribution (CI and git plumbing).
NOT_SHIPPED = {".ci/run", ".gitignore"}

#: What a checkout collects and an sdist must never contain.
JUNK = ["run.png", "run.jsonl", "sim.json", "results.parquet", "plots/faults.png",
        "fuzz-failures/svm/crash-1.jsonl", ".venv/bin/python", ".venv-fuzz/pyvenv.cfg",
        "build/cp311/CMakeCache.txt", "dist/old.tar.gz", ".fuzz-atheris/corpus/1",
        "src/gpuvm_core/_core.c", "src/gpuvm_core/_core.c.dep", "src/gpuvm_core/_core.html",
        "src/gpuvm_core/_core.cpython-311-x86_64-linux-gnu.so",
        "src/pysvm/__pycache__/cli.cpython-311.pyc", "tests/.hypothesis/examples/x",
        ".pytest_cache/v/cache/lastfailed", ".mypy_cache/3.11/x.json", "gpuvm_svm.egg-info/x"]


def build(*args: str, cwd: Path) -> None:
    """python -m build ARGS, failing with its output."""
    done = subprocess.run([sys.executable, "-m", "build", *args], capture_output=True,
                          text=True, cwd=cwd)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]


def tracked_files() -> list[str]:
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("needs a git checkout (lists the tracked files)")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [f for f in out.stdout.decode().split("\0") if f and (ROOT / f).is_file()]


def test_distribution_name_and_licence() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # 'pysvm' on the package index is an unrelated project; the import names stay.
    assert meta["name"] == "gpuvm-svm"
    assert meta["license"] == "MIT" and meta["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the gpuvm_core and pysvm authors" in text
    assert any(d.startswith("pyarrow") for d in meta["dependencies"])
    assert meta["optional-dependencies"]["ray"] == ["ray>=2.9"]


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    pytest.importorskip("build", reason="'build' is in the test extra")
    files = tracked_files()
    src = tmp_path_factory.mktemp("checkout")
    for f in files:
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, src / f)
    for junk in JUNK:
        (src / junk).parent.mkdir(parents=True, exist_ok=True)
        (src / junk).write_text("junk\n")
    out = tmp_path_factory.mktemp("dist")
    build("--sdist", "-o", str(out), str(src), cwd=out)
    (archive,) = out.glob("gpuvm_svm-*.tar.gz")
    return archive, files


def test_sdist_holds_exactly_the_sources(sdist: tuple[Path, list[str]]) -> None:
    archive, files = sdist
    with tarfile.open(archive) as tar:
        names = [m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()]
        pkg_info = tar.extractfile(next(m for m in tar.getmembers()
                                        if m.name.endswith("/PKG-INFO")))
        assert pkg_info is not None
        meta = email.message_from_bytes(pkg_info.read())
    assert archive.name.startswith("gpuvm_svm-")
    expected = (set(files) - NOT_SHIPPED) | {"PKG-INFO"}
    assert set(names) == expected, (sorted(set(names) - expected), sorted(expected - set(names)))
    for must in ("LICENSE", "README.md", "CMakeLists.txt", "src/gpuvm_core/_core.pyx",
                 "src/pysvm/sweep/runner.py", "docs/sweep.md", "tests/sweep/test_sweep_run.py"):
        assert must in names
    assert meta["Name"] == "gpuvm-svm"
    assert meta["License-Expression"] == "MIT"


def test_wheel_built_from_the_sdist(sdist: tuple[Path, list[str]], tmp_path: Path) -> None:
    archive, _ = sdist
    # Building compiles the core (about a minute on two loaded cores).
    build("--wheel", "-o", str(tmp_path), str(archive), cwd=tmp_path)
    (wheel,) = tmp_path.glob("gpuvm_svm-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = email.message_from_bytes(z.read(meta_name))
    assert any(n.startswith("gpuvm_core/_core.") and n.endswith(".so") for n in names)
    assert "pysvm/sweep/runner.py" in names and "pysvm/outputs.py" in names
    assert "gpuvm_core/_core.pxd" in names and "gpuvm_core/py.typed" in names
    assert not [n for n in names if n.endswith((".pyx", ".c.dep", ".html", ".png"))]
    # The one C source in the wheel is the kernel oracle's driver, compiled at run time
    # with every shim header beside it (`--kernel-tree` after a plain `pip install`).
    assert [n for n in names if n.endswith(".c")] == ["gpuvm_core/kernel/oracle.c"]
    shims = sorted(p.relative_to(KERNEL.parent.parent).as_posix()
                   for p in (KERNEL / "shim").rglob("*.h"))
    assert len(shims) >= 10 and set(shims) <= set(names), sorted(set(shims) - set(names))
    assert not [n for n in names if n.startswith(("tests/", "docs/", "benchmarks/"))]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert meta["Name"] == "gpuvm-svm"
    requires = meta.get_all("Requires-Dist") or []
    assert any(r.startswith("pyarrow") for r in requires)
    assert any(r.startswith("ray") and 'extra == "ray"' in r for r in requires)
