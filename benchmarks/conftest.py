"""Options and builders for the W1-W4 benchmarks.

Command-line options (all optional)::

    --bench-sizes 1e3,1e5   N values (default 1e3,1e5; GPUVM_BENCH_LARGE=1 or
                            --bench-large adds 1e6)
    --bench-m 200000        timed requests per loop for the compiled core
    --bench-slow-m 2000     timed requests for the reference and the peers
    --bench-rounds 3        rounds per benchmark (each on a fresh populated VM)
    --bench-kernel-tree DIR a kernel tree whose own drm_gpuvm.c is timed too
                            (default: $GPUVM_KERNEL_TREE, else the pinned minimal
                            kernel tree next to the repository when present)

The ``kernel`` benchmarks time the kernel tree's drm_gpuvm.c compiled in
userspace (gpuvm_core.kernel), the M-request loop in C, in the same session as
the core. Without a tree they are deselected and the summary says so: the
kernel column is then absent, never filled from elsewhere.

Every round runs on a freshly created and populated VM; populate is done in
pytest-benchmark's ``setup`` hook, so it is never timed. The figure is the
wall time of the whole M-request loop (``--benchmark-timer time.thread_time``
for CPU time on a shared machine); ``extra_info`` holds ns/request.
``--benchmark-disable`` runs every body once, untimed (a smoke test).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

_DEFAULT_TREE = Path(__file__).resolve().parents[1].parent / "shared" / "kernel" / "pinned"
_KERNEL_NOTE: list[str] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("gpuvm benchmarks")
    g.addoption("--bench-sizes", default="1e3,1e5", help="N values (comma-separated)")
    g.addoption("--bench-large", action="store_true", help="also N = 1e6")
    g.addoption("--bench-m", type=int, default=200_000, help="timed requests, compiled core")
    g.addoption("--bench-slow-m", type=int, default=2_000,
                help="timed requests, reference and peers")
    g.addoption("--bench-rounds", type=int, default=3, help="rounds per benchmark")
    g.addoption("--bench-kernel-tree", default=None,
                help="kernel tree whose drm_gpuvm.c is timed side by side (default: "
                     "$GPUVM_KERNEL_TREE, else the pinned tree next to the repository)")


def kernel_tree(config: pytest.Config) -> str | None:
    """The kernel tree to time, or None (then the kernel benchmarks are deselected)."""
    opt = config.getoption("--bench-kernel-tree") or os.environ.get("GPUVM_KERNEL_TREE")
    if opt:
        return str(opt)
    return str(_DEFAULT_TREE) if _DEFAULT_TREE.is_dir() else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if kernel_tree(config) is not None:
        return
    kernel = [it for it in items
              if getattr(it, "callspec", None) is not None
              and it.callspec.params.get("impl") == "kernel"]  # type: ignore[attr-defined]
    if kernel:
        config.hook.pytest_deselected(items=kernel)
        items[:] = [it for it in items if it not in kernel]
        _KERNEL_NOTE.append(f"kernel column absent: {len(kernel)} kernel benchmarks deselected "
                            "(no --bench-kernel-tree, no GPUVM_KERNEL_TREE, no pinned tree "
                            "next to the repository)")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _KERNEL_NOTE:
        terminalreporter.write_line(line, yellow=True)


@pytest.fixture(scope="session")
def kernel_oracle(request: pytest.FixtureRequest) -> Any:
    """The compiled kernel oracle of the chosen tree (built once, cached)."""
    from gpuvm_core.kernel import load_oracle

    tree = kernel_tree(request.config)
    assert tree is not None  # deselected otherwise
    return load_oracle(tree)


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
