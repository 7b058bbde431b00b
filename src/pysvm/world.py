"""The whole simulated machine: devices, VMs, BOs, the process mm, deferred work.

Kernel: no single counterpart; it groups what a trace names (devices, VMs,
BOs) with the work queues the kernel runs later (GC work, pagemap unhold).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .profile import Profile, get_profile

if TYPE_CHECKING:
    from .bo import Bo
    from .device import Device
    from .vm import Vm

__all__ = ["World", "SUMMARY_KEYS"]

#: Counters always present in the trace summary (0 when nothing happened).
SUMMARY_KEYS = ("events", "errors", "faults", "retries", "migrations_to_vram",
                "migrations_to_system", "bytes_to_vram", "bytes_to_system", "gc_runs",
                "vmas_reset", "pagemaps_alive")


class World:
    """Devices, VMs and BOs by name, the process address space and deferred work.

    ``mm`` is the process address space (set by the SVM layer, pysvm.mm);
    ``links`` holds the device pairs joined by a fast interconnect (the
    pagemap layer's ``link`` event);
    ``deferred`` is the queue of work the kernel would run later, run only by
    :meth:`run_workers`. ``stats`` is shared by all layers for the summary.
    ``summary_hooks`` let other layers add computed counters (e.g. pagemaps
    alive).
    """

    def __init__(self, profile: str | Profile = "6.18") -> None:
        self.profile: Profile = profile if isinstance(profile, Profile) else get_profile(profile)
        self.devices: dict[str, Device] = {}
        self.vms: dict[str, Vm] = {}
        self.bos: dict[str, Bo] = {}
        self.mm: Any = None
        self.links: set[frozenset[str]] = set()
        self.deferred: list[tuple[str, Callable[[], object]]] = []
        self.stats: Counter[str] = Counter()
        self.summary_hooks: list[Callable[[World], dict[str, int]]] = []
        self._fds = itertools.count(3)       # 0-2 are stdio in a real process
        self._handles = itertools.count(1)

    def set_profile(self, name: str) -> None:
        """Switch the kernel profile (see :mod:`pysvm.profile`)."""
        self.profile = get_profile(name)

    def next_fd(self) -> int:
        """The next device file number (3, 4, ...: 0-2 are stdio)."""
        return next(self._fds)

    def next_handle(self) -> int:
        """The next GEM handle (the gpuvm object id of a BO)."""
        return next(self._handles)

    def device_by_fd(self, fd: int) -> Device | None:
        """The device whose file has number ``fd`` (None if no device has it)."""
        for dev in self.devices.values():
            if dev.fd == fd:
                return dev
        return None

    def linked(self, a: str, b: str) -> bool:
        """Whether devices ``a`` and ``b`` are the same or joined by a ``link``."""
        return a == b or frozenset((a, b)) in self.links

    def queue_work(self, name: str, fn: Callable[[], object]) -> None:
        """Queue deferred work; it runs only in :meth:`run_workers`. Kernel: queue_work()."""
        self.deferred.append((name, fn))

    def run_workers(self) -> int:
        """Run queued work in FIFO order (work queued meanwhile runs too); return count."""
        n = 0
        while self.deferred:
            _, fn = self.deferred.pop(0)
            fn()
            n += 1
        return n

    def summary(self) -> dict[str, int]:
        """:data:`SUMMARY_KEYS` (0 if untouched), then every other counter and hook value."""
        out: dict[str, int] = {k: 0 for k in SUMMARY_KEYS}
        out.update(self.stats)
        for hook in self.summary_hooks:
            out.update(hook(self))
        return out
