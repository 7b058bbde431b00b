"""``--debug-fault N`` needs the debug build of the core: a release build gives a usage
error (argparse, exit status 2, no traceback) before anything runs."""

from __future__ import annotations

import pytest

import gpuvm_core
from gpuvm_core.fuzz.cli import main

core = getattr(gpuvm_core, "_core", None)


@pytest.mark.skipif(core is None or core.DEBUG_BUILD,
                    reason="the refusal is for a release build of the compiled core")
def test_debug_fault_refused_cleanly_in_release_build(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        main(["--seconds", "1", "--debug-fault", "1", "-q"])
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert "--debug-fault" in err and "debug build" in err and "GPUVM_DEBUG=1" in err
    assert "Traceback" not in err
    assert core is not None and core._debug_get_fault() == 0
