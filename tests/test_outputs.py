"""pysvm.outputs: atomic output files, '-' for stdout, text-only inputs."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from pysvm.outputs import (
    NotTextError,
    OutputLog,
    atomic_output,
    atomic_path,
    is_stdio,
    open_text,
    read_text,
)


def names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_complete_write_replaces_the_file(tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    out.write_text("old")
    log = OutputLog()
    with atomic_output(out, log=log) as f:
        f.write("new")  # type: ignore[arg-type]
        assert out.read_text() == "old"          # not visible until complete
    assert out.read_text() == "new"
    assert names(tmp_path) == ["a.json"]
    assert log.written == [str(out)] and log.report() == f"kept {out}"
    mode = out.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask                 # not mkstemp's 0600


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path: Path,
                                                               exc: type[BaseException]) -> None:
    out = tmp_path / "a.bin"
    out.write_bytes(b"old")
    fresh = tmp_path / "b.bin"
    log = OutputLog()
    with pytest.raises(exc), atomic_output(out, "wb", log=log) as f:
        f.write(b"half")  # type: ignore[arg-type]
        raise exc()
    with pytest.raises(exc), atomic_path(fresh, log=log) as tmp:
        Path(tmp).write_bytes(b"half")
        raise exc()
    assert out.read_bytes() == b"old"
    assert names(tmp_path) == ["a.bin"]
    assert log.report() == f"not written (left unchanged) {out}, {fresh}"


def test_atomic_path_keeps_the_suffix_for_writers_that_look_at_it(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "plot.png") as tmp:
        assert tmp.endswith(".png") and os.path.dirname(tmp) == str(tmp_path)
        Path(tmp).write_bytes(b"x")
    assert names(tmp_path) == ["plot.png"]
    with pytest.raises(ValueError, match="standard output"), atomic_path("-"):
        pass


def test_dash_is_stdout(capsys: Any) -> None:
    assert is_stdio("-") and not is_stdio("./-")
    with atomic_output("-") as f:
        f.write("to stdout\n")  # type: ignore[arg-type]
    assert capsys.readouterr().out == "to stdout\n"


def test_text_inputs_are_checked(tmp_path: Path, monkeypatch: Any) -> None:
    good = tmp_path / "ok.txt"
    good.write_text("héllo\n", encoding="utf-8")
    assert read_text(good) == "héllo\n"
    with open_text(good) as f:
        assert f.read() == "héllo\n"
    nul = tmp_path / "bin"
    nul.write_bytes(b"abc\x00def")
    for reader in (read_text, open_text):
        with pytest.raises(NotTextError, match=r"bin: not a text file \(byte 3: NUL byte"):
            reader(nul)
    latin = tmp_path / "latin"
    latin.write_bytes(b"caf\xe9\n")
    with pytest.raises(NotTextError, match=r"latin: not a text file \(byte 3: invalid"):
        read_text(latin)
    with pytest.raises(NotTextError, match=r"byte 3"):
        open_text(latin)
    # A bad byte past the sniffed block still fails when it is read (strict decoding).
    late = tmp_path / "late"
    late.write_bytes(b"a" * (70 * 1024) + b"\xff")
    with open_text(late) as f, pytest.raises(UnicodeDecodeError):
        f.read()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\x00x")))
    with pytest.raises(NotTextError, match=r"<stdin>: not a text file"):
        read_text("-")
    assert isinstance(NotTextError("f", 0, "r"), ValueError)   # the CLI's one-line errors
