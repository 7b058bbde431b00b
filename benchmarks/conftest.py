"""Options and builders for the W1-W4 benchmarks.

Command-line options (all optional)::

    --bench-sizes 1e3,1e5   N values (default 1e3,1e5; GPUVM_BENCH_LARGE=1 or
                            --bench-large adds 1e6)
    --bench-m 200000        timed requests per loop for the compiled core
    --bench-slow-m 2000     timed requests for the reference and the peers
    --bench-rounds 3        rounds per benchmark (each on a fresh populated VM)

Every round runs on a freshly created and populated VM; populate is done in
pytest-benchmark's ``setup`` hook, so it is never timed. The figure is the
wall time of the whole M-request loop (``--benchmark-timer time.thread_time``
for CPU time on a shared machine); ``extra_info`` holds ns/request.
``--benchmark-disable`` runs every body once, untimed (a smoke test).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("gpuvm benchmarks")
    g.addoption("--bench-sizes", default="1e3,1e5", help="N values (comma-separated)")
    g.addoption("--bench-large", action="store_true", help="also N = 1e6")
    g.addoption("--bench-m", type=int, default=200_000, help="timed requests, compiled core")
    g.addoption("--bench-slow-m", type=int, default=2_000,
                help="timed requests, reference and peers")
    g.addoption("--bench-rounds", type=int, default=3, help="rounds per benchmark")


def bench_sizes(config: pytest.Config) -> list[int]:
    sizes = [int(float(s)) for s in str(config.getoption("--bench-sizes")).split(",") if s]
    if config.getoption("--bench-large") or os.environ.get("GPUVM_BENCH_LARGE") == "1":
        sizes.append(1_000_000)
    return sorted(set(sizes))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "n" in metafunc.fixturenames:
        metafunc.parametrize("n", bench_sizes(metafunc.config), ids=lambda n: f"N={n:.0e}")


@pytest.fixture
def settings(request: pytest.FixtureRequest) -> dict[str, int]:
    c = request.config
    return {"m": c.getoption("--bench-m"), "slow_m": c.getoption("--bench-slow-m"),
            "rounds": c.getoption("--bench-rounds")}


@pytest.fixture
def run_loop(benchmark: Any, settings: dict[str, int]) -> Callable[..., Any]:
    """``run_loop(make_vm, loop, reqs, group)``: time ``loop(vm, reqs)`` on fresh VMs."""

    def go(make_vm: Callable[[], Any], loop: Callable[[Any, Any], int], reqs: Any,
           group: str) -> int:
        benchmark.group = group
        results: list[int] = []

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            return (make_vm(),), {}

        def target(vm: Any) -> None:
            results.append(loop(vm, reqs))

        benchmark.pedantic(target, setup=setup, rounds=settings["rounds"], iterations=1,
                           warmup_rounds=0)
        m = len(reqs)
        benchmark.extra_info["M"] = m
        if benchmark.stats is not None:  # None under --benchmark-disable (a smoke run)
            benchmark.extra_info["ns_per_request"] = (benchmark.stats.stats.median * 1e9
                                                      / max(m, 1))
        return results[-1]

    return go
