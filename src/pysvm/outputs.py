"""Output files that are never half-written, and input files that are text.

Kernel: none (command-line plumbing shared by every ``pysvm`` command).

Outputs
-------
:func:`atomic_output` and :func:`atomic_path` write to a temporary file in
the destination's own directory (so the final step is a rename within one
file system), flush and ``fsync`` it, and rename it over the destination only
when the block that writes it finishes. If the block raises - an error, or
``KeyboardInterrupt`` from Ctrl-C - the temporary file is removed and the
destination is left exactly as it was (absent, or its previous complete
contents). Each outcome is recorded in an :class:`OutputLog` so a command can
say what it kept.

``"-"`` as a path means standard output (:func:`is_stdio`); it is written in
place, as a pipe cannot be renamed.

Inputs
------
:func:`read_text` and :func:`open_text` refuse a file that is not UTF-8 text
(a NUL byte, or bytes that do not decode) with :class:`NotTextError`, one
sentence naming the file and the first bad byte. ``"-"`` reads standard input.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Literal, cast

__all__ = [
    "STDIO",
    "NotTextError",
    "OutputLog",
    "atomic_output",
    "atomic_path",
    "atomic_text",
    "check_writable",
    "is_stdio",
    "open_text",
    "open_text_bytes",
    "read_text",
]

#: The path that means standard output (or standard input, for an input).
STDIO = "-"

#: How many bytes :func:`open_text` inspects before handing the stream over.
SNIFF_BYTES = 64 * 1024


def is_stdio(path: str | os.PathLike[str]) -> bool:
    """True for ``"-"``: write to standard output / read standard input."""
    return os.fspath(path) == STDIO


@dataclass
class OutputLog:
    """What happened to each output file of a command: written, or not.

    Kernel: none.
    """

    written: list[str] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)

    def report(self) -> str:
        """One line for stderr after an interruption: what was kept, what was not."""
        parts = []
        if self.written:
            parts.append("kept " + ", ".join(self.written))
        if self.discarded:
            parts.append("not written (left unchanged) " + ", ".join(self.discarded))
        return "; ".join(parts) if parts else "no output file was written"


#: The log :func:`atomic_output` and :func:`atomic_path` record into by default.
DEFAULT_LOG = OutputLog()


def check_writable(path: str | os.PathLike[str]) -> None:
    """ValueError unless ``path`` can be written (checked before any work is done).

    ``"-"`` (standard output) always can; otherwise ``path`` must not be a
    directory and its directory must exist and be writable.
    """
    name = os.fspath(path)
    if is_stdio(name):
        return
    if os.path.isdir(name):
        raise ValueError(f"cannot write {name}: is a directory")
    parent = os.path.dirname(name) or "."
    if not os.path.isdir(parent):
        raise ValueError(f"cannot write {name}: no directory {parent!r}")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"cannot write {name}: directory {parent!r} is not writable")


def _tmp_name(path: str) -> str:
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
    os.close(fd)
    return tmp


def _commit(tmp: str, path: str) -> None:
    """fsync the finished temporary file, then rename it over the destination."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    # mkstemp creates 0600; an output file gets the usual permissions (umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
    # Make the rename itself durable (the directory entry).
    with contextlib.suppress(OSError):
        dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], log: OutputLog | None = None) -> Iterator[str]:
    """Yield a temporary path to write; it becomes ``path`` only if the block completes.

    For libraries that want a file name (pyarrow, matplotlib). ``"-"`` is
    refused: such writers cannot stream to stdout. The temporary file keeps
    the destination's suffix so writers that look at it (``savefig``) see it.
    """
    dest = os.fspath(path)
    if is_stdio(dest):
        raise ValueError("this output cannot be written to standard output ('-'); "
                         "give a file name")
    log = DEFAULT_LOG if log is None else log
    tmp = _tmp_name(dest)
    suffix = os.path.splitext(dest)[1]
    named = tmp + suffix if suffix else tmp
    if named != tmp:
        os.replace(tmp, named)
    try:
        yield named
        _commit(named, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(named)
        log.discarded.append(dest)
        raise
    log.written.append(dest)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], mode: Literal["w", "wb"] = "w",
                  log: OutputLog | None = None) -> Iterator[IO[str] | IO[bytes]]:
    """Open ``path`` for writing through a temporary file renamed on success.

    ``"-"`` yields standard output (text or binary per ``mode``), never closed.
    """
    dest = os.fspath(path)
    if is_stdio(dest):
        yield sys.stdout if mode == "w" else sys.stdout.buffer
        return
    with atomic_path(dest, log=log) as tmp:
        if mode == "w":
            with open(tmp, "w", encoding="utf-8") as ft:
                yield ft
        else:
            with open(tmp, "wb") as fb:
                yield fb


@contextlib.contextmanager
def atomic_text(path: str | os.PathLike[str], log: OutputLog | None = None) -> Iterator[IO[str]]:
    """:func:`atomic_output` for text (UTF-8): ``"-"`` is standard output."""
    dest = os.fspath(path)
    if is_stdio(dest):
        yield sys.stdout
        return
    with atomic_path(dest, log=log) as tmp, open(tmp, "w", encoding="utf-8") as f:
        yield f


class NotTextError(ValueError):
    """An input file that is not UTF-8 text (binary, or another encoding)."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path}: not a text file (byte {offset}: {reason})")
        self.path = path
        self.offset = offset


def _check_text(name: str, data: bytes, final: bool) -> None:
    """NotTextError unless ``data`` is UTF-8 without NUL bytes.

    ``final=False`` accepts a multi-byte character cut at the end (a sniffed
    block of a longer stream).
    """
    nul = data.find(b"\0")
    if nul >= 0:
        raise NotTextError(name, nul, "NUL byte, a binary file")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=final)
    except UnicodeDecodeError as e:
        raise NotTextError(name, e.start, e.reason) from None


def read_text(path: str | os.PathLike[str]) -> str:
    """The whole of a UTF-8 text file (``"-"``: standard input); NotTextError otherwise."""
    name = os.fspath(path)
    if is_stdio(name):
        data = sys.stdin.buffer.read()
        name = "<stdin>"
    else:
        with open(name, "rb") as f:
            data = f.read()
    _check_text(name, data, final=True)
    return data.decode("utf-8")


def open_text_bytes(path: str | os.PathLike[str], binary_only: bool = False) -> IO[bytes]:
    """Open a text input as bytes (``"-"``: standard input), refused like :func:`open_text`.

    For readers that decode line by line and report a bad line themselves
    (``pysvm replay``): the first :data:`SNIFF_BYTES` are checked up front, so
    a binary file is refused before anything is done with it. With
    ``binary_only`` only a NUL byte refuses the file (what binary files have
    and text never does); a line that is not UTF-8 is then left to the reader.
    """
    name = os.fspath(path)
    raw: io.BufferedReader
    if is_stdio(name):
        raw = sys.stdin.buffer  # type: ignore[assignment]
        name = "<stdin>"
    else:
        raw = cast(io.BufferedReader, open(name, "rb", buffering=SNIFF_BYTES))  # noqa: SIM115
    try:
        head = raw.peek(SNIFF_BYTES)[:SNIFF_BYTES]
        if binary_only:
            nul = head.find(b"\0")
            if nul >= 0:
                raise NotTextError(name, nul, "NUL byte, a binary file")
        else:
            _check_text(name, head, final=False)
    except BaseException:
        if not is_stdio(os.fspath(path)):
            raw.close()
        raise
    return raw


def open_text(path: str | os.PathLike[str]) -> IO[str]:
    """Open a UTF-8 text input for streaming (``"-"``: standard input).

    The first :data:`SNIFF_BYTES` are checked up front, so a binary file is
    refused before anything is done with it; a bad byte further on raises
    :class:`UnicodeDecodeError` when it is read (strict decoding).
    """
    name = os.fspath(path)
    raw: io.BufferedReader
    if is_stdio(name):
        raw = sys.stdin.buffer  # type: ignore[assignment]
        name = "<stdin>"
    else:
        raw = cast(io.BufferedReader, open(name, "rb", buffering=SNIFF_BYTES))  # noqa: SIM115
    try:
        head = raw.peek(SNIFF_BYTES)[:SNIFF_BYTES]
        _check_text(name, head, final=False)
    except BaseException:
        if not is_stdio(os.fspath(path)):
            raw.close()
        raise
    return io.TextIOWrapper(raw, encoding="utf-8", errors="strict")
