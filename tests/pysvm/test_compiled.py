"""The compiled / pure split (pysvm.compiled): the build's module list, what an install
reports, and the planted-bug refusal where the fault path is compiled."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

from pysvm import compiled
from pysvm.cli.main import main, version_text
from pysvm.fuzz import planted as planted_mod
from pysvm.xe import garbage_collector

ROOT = Path(__file__).resolve().parents[2]


def _build_script() -> object:
    spec = importlib.util.spec_from_file_location("build_mypyc", ROOT / "tools" / "build_mypyc.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_build_reads_the_same_module_list_without_importing_the_package() -> None:
    build = _build_script()
    assert build.compiled_modules(ROOT / "src") == compiled.COMPILED_MODULES  # type: ignore[attr-defined]
    for name in compiled.COMPILED_MODULES:
        assert (ROOT / "src" / (name.replace(".", "/") + ".py")).is_file(), name
        importlib.import_module(name)


def test_the_build_refuses_a_list_that_is_not_a_literal_tuple(tmp_path: Path) -> None:
    (tmp_path / "pysvm").mkdir()
    (tmp_path / "pysvm" / "compiled.py").write_text("COMPILED_MODULES = tuple(['a'])\n")
    build = _build_script()
    with pytest.raises(SystemExit, match="no literal tuple COMPILED_MODULES"):
        build.compiled_modules(tmp_path)  # type: ignore[attr-defined]


def test_an_install_is_all_compiled_or_all_pure() -> None:
    names = compiled.compiled_modules()
    assert names in ([], list(compiled.COMPILED_MODULES))
    assert compiled.is_compiled() == bool(names)
    for name in names:
        assert not sys.modules[name].__file__.endswith(".py")  # type: ignore[union-attr]


def test_version_says_which_model_is_loaded() -> None:
    line = version_text().splitlines()[-1]
    if compiled.is_compiled():
        assert line == (f"pysvm: fault path compiled (mypyc, {len(compiled.COMPILED_MODULES)} "
                        f"of {len(compiled.COMPILED_MODULES)} modules)")
    else:
        assert line.startswith("pysvm: pure Python")


def test_planting_is_refused_where_the_fault_path_is_compiled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # pysvm.fuzz.planted is plain Python in every install: make it see a compiled module
    monkeypatch.setattr(planted_mod, "compiled_modules", lambda: ["pysvm.xe.svm"])
    before = garbage_collector.set_default_attr
    with (pytest.raises(planted_mod.PlantUnsupported, match="pysvm.xe.svm"),
          planted_mod.planted("gc-skips-set_default_attr")):
        pass
    assert garbage_collector.set_default_attr is before     # nothing was patched
    with planted_mod.planted(None):                          # no bug: nothing to refuse
        pass


def test_fuzz_plant_is_a_usage_error_where_the_fault_path_is_compiled(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(planted_mod, "compiled_modules", lambda: ["pysvm.xe.svm"])
    rc = main(["fuzz", "--target", "svm", "--seconds", "1", "--data", str(tmp_path / "d"),
               "--plant", "gc-skips-set_default_attr"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--plant: planted bugs patch the pure-Python model" in err
    assert not (tmp_path / "d").exists()
