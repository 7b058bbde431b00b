"""The wheel ships what the kernel oracle compiles at run time: ``oracle.c`` and every shim
header (``pysvm bench/conformance --kernel-tree`` after a plain ``pip install .``), while
Cython's sources and generated C stay out. Builds the wheel with pip (about a minute: an
isolated build environment, then an incremental build in the checkout's build directory).
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNEL = ROOT / "src" / "gpuvm_core" / "kernel"


def test_wheel_has_the_oracle_sources(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                           str(tmp_path), str(ROOT)], capture_output=True, text=True)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shims = sorted(p.relative_to(KERNEL.parent.parent).as_posix()
                   for p in (KERNEL / "shim").rglob("*.h"))
    assert len(shims) >= 10
    want = {"gpuvm_core/kernel/oracle.c", *shims}
    assert want <= names, sorted(want - names)
    assert not [n for n in names if n.endswith((".pyx", ".c.dep", ".html"))]
    assert [n for n in names if n.endswith(".c")] == ["gpuvm_core/kernel/oracle.c"]
