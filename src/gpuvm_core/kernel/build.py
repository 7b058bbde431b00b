"""Compile a kernel tree's own drm_gpuvm.c into the userspace oracle library.

The build takes, from the tree the user names, exactly these files, unchanged:

* ``drivers/gpu/drm/drm_gpuvm.c`` (the split/merge walkers, the VA tree and
  the op-list helpers),
* ``lib/rbtree.c`` (the red-black tree the interval tree is built on),
* ``include/drm/drm_gpuvm.h``, ``include/linux/rbtree.h``,
  ``include/linux/rbtree_types.h``, ``include/linux/rbtree_augmented.h`` and
  ``include/linux/interval_tree_generic.h``,

and compiles them with the system C compiler against the project's own shim
headers (``gpuvm_core/kernel/shim``: userspace stand-ins for the slab
allocator, reference counts, locks and lockdep, GEM objects, reservation
objects, drm_exec, ...) plus the small driver ``oracle.c``. The kernel
headers are copied into a private include directory of the build, so nothing
else of the tree (its own ``list.h``, ``slab.h``, ...) can leak into the
compile.

The library is cached under ``$GPUVM_ORACLE_CACHE`` (default
``$XDG_CACHE_HOME/gpuvm_core/kernel-oracle``, i.e. ``~/.cache/...``), keyed by
a SHA-256 of every input file, the compiler and its flags: a changed line in
the tree rebuilds, an unchanged tree loads at once. A build is written to a
temporary directory and renamed into place, so a crash never leaves a
half-written library.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["KERNEL_FILES", "KernelTreeError", "OracleBuild", "build_oracle", "cache_root"]

#: Files taken from the kernel tree (relative paths are the kernel's own).
KERNEL_SOURCES = ("drivers/gpu/drm/drm_gpuvm.c", "lib/rbtree.c")
KERNEL_HEADERS = ("include/drm/drm_gpuvm.h", "include/linux/rbtree.h",
                  "include/linux/rbtree_types.h", "include/linux/rbtree_augmented.h",
                  "include/linux/interval_tree_generic.h")
KERNEL_FILES = KERNEL_SOURCES + KERNEL_HEADERS

CFLAGS = ("-O2", "-std=gnu11", "-fPIC", "-shared", "-fno-strict-aliasing", "-w")
_HERE = Path(__file__).resolve().parent
SHIM_DIR = _HERE / "shim"
DRIVER = _HERE / "oracle.c"
LIB_NAME = "libgpuvm_oracle.so"


class KernelTreeError(RuntimeError):
    """The kernel tree or the toolchain cannot produce the oracle (message says why)."""


@dataclass(frozen=True)
class OracleBuild:
    """A built oracle: the library path, whether it came from the cache, build seconds."""

    tree: Path
    library: Path
    key: str
    cached: bool
    seconds: float


def cache_root() -> Path:
    """Where built oracles live (``$GPUVM_ORACLE_CACHE`` or the user cache dir)."""
    env = os.environ.get("GPUVM_ORACLE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpuvm_core" / "kernel-oracle"


def find_compiler() -> str:
    """``$CC``, else ``cc``, ``gcc`` or ``clang`` on PATH; :class:`KernelTreeError` if none."""
    for cand in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cand:
            path = shutil.which(cand)
            if path:
                return path
    raise KernelTreeError("no C compiler found (set CC, or install cc/gcc/clang): the kernel "
                          "oracle compiles drm_gpuvm.c from the kernel tree at run time")


def check_tree(tree: str | Path) -> Path:
    """``tree`` resolved, or :class:`KernelTreeError` naming every missing file."""
    root = Path(tree).expanduser()
    if not root.is_dir():
        raise KernelTreeError(f"kernel tree {str(tree)!r} is not a directory")
    missing = [f for f in KERNEL_FILES if not (root / f).is_file()]
    if missing:
        raise KernelTreeError(f"kernel tree {root} lacks {', '.join(missing)} (the oracle needs "
                              f"{', '.join(KERNEL_FILES)})")
    return root.resolve()


def _shim_files() -> list[Path]:
    return sorted(p for p in SHIM_DIR.rglob("*.h") if p.is_file())


def _compiler_id(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60)
        return out.stdout.splitlines()[0] if out.stdout else cc
    except (OSError, subprocess.SubprocessError):
        return cc


def build_key(root: Path, cc: str) -> str:
    """SHA-256 over the kernel files, the shims, the driver, the compiler and flags."""
    h = hashlib.sha256()
    h.update(f"{cc}\0{_compiler_id(cc)}\0{' '.join(CFLAGS)}\0".encode())
    for rel in KERNEL_FILES:
        h.update(f"kernel:{rel}\0".encode())
        h.update((root / rel).read_bytes())
    for p in [*_shim_files(), DRIVER]:
        h.update(f"own:{p.relative_to(_HERE)}\0".encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def build_oracle(tree: str | Path, *, force: bool = False) -> OracleBuild:
    """Build (or find in the cache) the oracle library for kernel tree ``tree``."""
    root = check_tree(tree)
    if not DRIVER.is_file() or not SHIM_DIR.is_dir():
        raise KernelTreeError(f"the oracle's own sources are missing ({DRIVER}, {SHIM_DIR}): "
                              "install gpuvm_core from a source checkout (pip install -e .)")
    cc = find_compiler()
    key = build_key(root, cc)
    final = cache_root() / key[:24]
    lib = final / LIB_NAME
    if lib.is_file() and not force:
        return OracleBuild(root, lib, key, True, 0.0)
    final.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="build-", dir=final.parent) as tmp:
        work = Path(tmp)
        inc = work / "include"
        for rel in KERNEL_HEADERS:  # only these kernel headers are visible to the compile
            dst = inc / Path(rel).relative_to("include")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / rel, dst)
        out = work / "out"
        out.mkdir()
        cmd = [cc, *CFLAGS, "-I", str(inc), "-I", str(SHIM_DIR), "-o", str(out / LIB_NAME),
               str(root / KERNEL_SOURCES[0]), str(root / KERNEL_SOURCES[1]), str(DRIVER)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
            raise KernelTreeError(f"compiling the kernel oracle from {root} failed "
                                  f"(exit {proc.returncode}):\n  {' '.join(cmd)}\n{tail}")
        (out / "inputs.txt").write_text(f"tree {root}\nkey {key}\ncommand {' '.join(cmd)}\n",
                                        encoding="utf-8")
        if force and final.exists():
            shutil.rmtree(final)
        try:
            out.rename(final)
        except OSError:
            if not lib.is_file():  # not a concurrent build that won the race
                raise
    return OracleBuild(root, lib, key, False, time.monotonic() - t0)
