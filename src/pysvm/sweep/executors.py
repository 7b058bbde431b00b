"""Run many independent tasks on a local process pool or a Ray cluster.

Kernel: none (userspace tooling).

Generic on purpose: a task is any picklable value and the function any
importable top-level function of one task, so a sweep runs its grid and a
fuzz campaign could shard its seeds on the same two executors.

* :class:`LocalExecutor` - ``jobs`` worker processes on this machine
  (``jobs=1`` runs in this process, no pool). Workers are started with
  ``spawn`` (no state inherited from the parent) and ignore SIGINT, so Ctrl-C
  reaches only the parent, which stops the pool: no worker tracebacks.
* :class:`RayExecutor` - a Ray cluster: the one at ``address`` (or in
  ``RAY_ADDRESS``) when given, else a local one started for this run. The
  same code runs on a laptop and on a cluster; every node needs this package
  installed.

:func:`run_tasks` drives either one: results as they complete, a progress
bar, and on interruption (or a failed task) the executor stops its workers
before the exception goes on.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

__all__ = [
    "EXECUTORS",
    "Executor",
    "ExecutorUnavailable",
    "LocalExecutor",
    "RayExecutor",
    "TaskFailed",
    "make_executor",
    "run_tasks",
]

T = TypeVar("T")
R = TypeVar("R")

#: Executor names for ``--executor``.
EXECUTORS = ("local", "ray")


class ExecutorUnavailable(ValueError):
    """The executor asked for cannot be used here (not installed, cannot connect)."""


class TaskFailed(Exception):
    """A task raised in a worker: which task, and the worker's traceback."""

    def __init__(self, index: int, detail: str) -> None:
        last = detail.strip().splitlines()[-1] if detail.strip() else "unknown error"
        super().__init__(f"task {index} failed: {last}")
        self.index = index
        self.detail = detail


class Executor(Protocol):
    """Runs ``fn(task)`` for every task and yields ``(index, result)`` as each completes.

    Kernel: none.
    """

    name: str

    def map_unordered(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[tuple[int, R]]:
        ...

    def shutdown(self, cancel: bool) -> None:
        """Release the workers; ``cancel`` stops tasks still running (interruption)."""
        ...


def _call(packed: tuple[Callable[[Any], Any], int, Any]) -> tuple[int, bool, Any]:
    """Worker side: run one task, turning an exception into its formatted traceback."""
    fn, index, task = packed
    try:
        return index, True, fn(task)
    except Exception:
        return index, False, traceback.format_exc()


def _ignore_sigint() -> None:
    # Ctrl-C goes to the whole foreground process group; only the parent acts on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LocalExecutor:
    """A pool of ``jobs`` processes on this machine (``jobs=1``: this process).

    Kernel: none.
    """

    name = "local"

    def __init__(self, jobs: int = 1) -> None:
        if jobs < 1:
            raise ExecutorUnavailable(f"--jobs must be at least 1, got {jobs}")
        self.jobs = jobs
        self._pool: Any = None

    def map_unordered(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[tuple[int, R]]:
        packed = [(fn, i, t) for i, t in enumerate(tasks)]
        if self.jobs == 1 or len(tasks) <= 1:
            outcomes: Iterator[tuple[int, bool, Any]] = map(_call, packed)
        else:
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")
            # Workers start with SIGINT ignored (the disposition survives exec), so a
            # Ctrl-C even while they boot cannot print a traceback from them.
            main = threading.current_thread() is threading.main_thread()
            old = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
            try:
                self._pool = ctx.Pool(min(self.jobs, len(tasks)), initializer=_ignore_sigint)
            finally:
                if main:
                    signal.signal(signal.SIGINT, old)
            outcomes = self._pool.imap_unordered(_call, packed, chunksize=1)
        for index, ok, value in outcomes:
            if not ok:
                raise TaskFailed(index, str(value))
            yield index, value

    def shutdown(self, cancel: bool) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if cancel:
            pool.terminate()
        else:
            pool.close()
        pool.join()


class RayExecutor:
    """Tasks on a Ray cluster: ``address`` / ``RAY_ADDRESS``, else a new local one.

    ``address`` is anything ``ray.init`` accepts: ``HOST:PORT`` of a head node,
    ``auto`` for the cluster already running on this machine, ``ray://...``.

    Kernel: none.

    A local cluster gets ``jobs`` CPUs (all of this machine's when None). At
    most twice the cluster's CPUs tasks are in flight at once, so a large
    sweep does not queue every task up front and Ctrl-C has little to cancel.
    """

    name = "ray"

    def __init__(self, address: str | None = None, jobs: int | None = None) -> None:
        try:
            ray: Any = importlib.import_module("ray")
        except ModuleNotFoundError:
            raise ExecutorUnavailable(
                "--executor ray needs Ray, which is not installed here: "
                "pip install 'gpuvm-svm[ray]' (or pip install ray)") from None
        self._ray: Any = ray
        self._owns = False
        self._pending: list[Any] = []
        address = address or os.environ.get("RAY_ADDRESS") or None
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, log_to_driver=False,
                             logging_level=logging.WARNING)
                else:
                    # "local": a new cluster for this run, even if another one runs here
                    # (plain ray.init() would join that one).
                    ray.init(address="local", num_cpus=jobs, include_dashboard=False,
                             log_to_driver=False,
                             logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise ExecutorUnavailable(f"cannot start or reach a Ray cluster"
                                          f"{' at ' + address if address else ''}: {e}") from None
            self._owns = True
        self.cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def map_unordered(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[tuple[int, R]]:
        ray = self._ray
        remote = ray.remote(num_cpus=1)(_call)
        window = 2 * self.cpus
        todo = iter(enumerate(tasks))
        self._pending = []
        for i, t in todo:
            self._pending.append(remote.remote((fn, i, t)))
            if len(self._pending) >= window:
                break
        while self._pending:
            done, self._pending = ray.wait(self._pending, num_returns=1)
            index, ok, value = ray.get(done[0])
            nxt = next(todo, None)
            if nxt is not None:
                self._pending.append(remote.remote((fn, nxt[0], nxt[1])))
            if not ok:
                raise TaskFailed(index, str(value))
            yield index, value

    def shutdown(self, cancel: bool) -> None:
        ray = self._ray
        if cancel:
            for ref in self._pending:
                with contextlib.suppress(Exception):  # best effort while stopping
                    ray.cancel(ref, force=True)
        self._pending = []
        if self._owns and ray.is_initialized():
            ray.shutdown()
            self._owns = False


def make_executor(name: str, jobs: int | None = None,
                  address: str | None = None) -> LocalExecutor | RayExecutor:
    """The executor ``--executor NAME`` asks for (ExecutorUnavailable if it cannot be had)."""
    if name == "local":
        if address:
            raise ExecutorUnavailable("--ray-address needs --executor ray")
        return LocalExecutor(jobs if jobs is not None else 1)
    if name == "ray":
        return RayExecutor(address=address, jobs=jobs)
    raise ExecutorUnavailable(f"unknown executor {name!r}; choose one of "
                              f"{', '.join(EXECUTORS)}")


def run_tasks(executor: Executor, fn: Callable[[T], R], tasks: Sequence[T],
              on_result: Callable[[int, R], None], progress: bool = False,
              desc: str = "tasks") -> None:
    """Run every task, calling ``on_result(index, result)`` in the parent as each completes.

    ``progress`` shows a tqdm bar on stderr. On KeyboardInterrupt or a
    failed task the executor cancels what is still running and the exception
    goes on to the caller, after ``on_result`` has seen every result that
    completed before it.
    """
    from tqdm import tqdm  # type: ignore[import-untyped]

    bar = tqdm(total=len(tasks), desc=desc, unit="run", file=sys.stderr, disable=not progress,
               leave=False, dynamic_ncols=True)
    cancel = True
    try:
        for index, result in executor.map_unordered(fn, tasks):
            on_result(index, result)
            bar.update(1)
        cancel = False
    finally:
        bar.close()
        executor.shutdown(cancel=cancel)
