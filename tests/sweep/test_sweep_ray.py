"""The same sweep, unchanged, on a Ray cluster of several worker processes.

A head node is started with ``ray start --head --block`` (3 CPUs, so 3 worker
processes) on a free port, and the sweep joins it through ``RAY_ADDRESS``
exactly as it would join a remote cluster. Its table must equal the process
pool's, row for row (wall times aside).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pysvm.cli.main import main
from pysvm.sweep import ExecutorUnavailable, make_executor

ray = pytest.importorskip("ray", reason="Ray is in the test extra: pip install -e '.[test]'")

CONFIG = """\
seeds = 3
[fixed]
steps = 25
[grid]
preferred_loc = ["device", "system"]
size = [16, 32, 64]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: Any) -> Iterator[dict[str, str]]:
    """A head node; yields the environment a driver needs to join it (address, token)."""
    port = _free_port()
    # Ray's token authentication stays on: head and driver share a fresh token.
    env = {"RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    tmp = tmp_path_factory.mktemp("ray")
    exe = Path(sys.executable).with_name("ray")
    log = open(tmp / "head.log", "w")  # noqa: SIM115 - closed below
    head = subprocess.Popen(
        [str(exe), "start", "--head", "--block", f"--port={port}", "--num-cpus=3",
         "--include-dashboard=false", "--disable-usage-stats",
         "--node-ip-address=127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, **env})
    try:
        deadline = time.monotonic() + 90
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("ray head did not start: "
                                   + (tmp / "head.log").read_text()[-2000:])
            time.sleep(0.5)
        yield env
    finally:
        head.terminate()
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        log.close()


def _rows(path: Path) -> list[dict[str, Any]]:
    table = pq.read_table(path).drop(["wall_s"]).sort_by("run_key")
    return [dict(r) for r in table.to_pylist()]


def _pysvm(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The console script as a user runs it (Ray reads its auth settings at import)."""
    exe = Path(sys.executable).with_name("pysvm")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=240,
                          env={**os.environ, **env})


def test_the_same_sweep_runs_unchanged_on_a_ray_cluster(tmp_path: Path,
                                                         ray_cluster: dict[str, str],
                                                         capsys: Any) -> None:
    cfg = tmp_path / "sweep.toml"
    cfg.write_text(CONFIG)
    local = tmp_path / "local.parquet"
    assert main(["sweep", str(cfg), "-o", str(local), "--jobs", "2", "-q"]) == 0
    capsys.readouterr()
    on_ray = tmp_path / "ray.parquet"
    # The cluster comes from RAY_ADDRESS, as on a real cluster's head or login node.
    done = _pysvm("sweep", str(cfg), "-o", str(on_ray), "--executor", "ray", "-q",
                  env=ray_cluster)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on ray, 3 CPU(s): 18 run now" in done.stdout
    assert pq.read_table(on_ray).num_rows == 18
    assert _rows(on_ray) == _rows(local)
    # Resume works the same on Ray; here the cluster is named by --ray-address.
    env = {k: v for k, v in ray_cluster.items() if k != "RAY_ADDRESS"}
    again = _pysvm("sweep", str(cfg), "-o", str(on_ray), "--executor", "ray", "-q",
                   "--ray-address", ray_cluster["RAY_ADDRESS"], env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 run now, 18 already in" in again.stdout


def test_a_local_ray_cluster_is_started_when_no_address_is_given(tmp_path: Path,
                                                                 monkeypatch: Any,
                                                                 capsys: Any) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg = tmp_path / "sweep.toml"
    cfg.write_text(CONFIG.replace("seeds = 3", "seeds = 1"))
    out = tmp_path / "r.parquet"
    assert main(["sweep", str(cfg), "-o", str(out), "--executor", "ray", "--jobs", "2",
                 "-q"]) == 0
    assert "on ray, 2 CPU(s): 6 run now" in capsys.readouterr().out
    assert pq.read_table(out).num_rows == 6
    assert not ray.is_initialized()     # the sweep stopped the cluster it started


def test_ray_missing_is_a_clear_error(monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)     # import ray -> ModuleNotFoundError
    with pytest.raises(ExecutorUnavailable, match=r"needs Ray, which is not installed here: "
                                                  r"pip install 'gpuvm-svm\[ray\]'"):
        make_executor("ray")
