"""What the Xe driver objects need from the machine they run in.

Kernel: the context an xe_vm reaches through vm->xe and the process: the kernel
version's behaviour (here a :class:`pysvm.xe.profile.Profile`), the device files
of the process (a madvise ``devmem_fd`` names one), PCI peer-to-peer reachability
(xe_has_interconnect), the work queues (queue_work), the process address space
(current->mm), and the GT statistics counters (xe_gt_stats_incr). The composition
root, :class:`pysvm.World`, implements this Protocol and hands itself to every
:class:`pysvm.xe.vm.Vm`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pysvm.mm.mmap import Mm
    from pysvm.xe.device import Device
    from pysvm.xe.profile import Profile

__all__ = ["XeHost", "INJECTION_POINTS"]

#: Named points in the SVM fault handler where injected work fires
#: (:meth:`pysvm.xe.svm.Svm.fire`).
INJECTION_POINTS = ("fault.start", "fault.after_find_range", "fault.after_migrate",
                    "fault.after_get_pages", "fault.before_bind")


class XeHost(Protocol):
    """The machine around the driver (see the module docstring)."""

    @property
    def profile(self) -> Profile:
        """The modelled kernel version."""

    @property
    def mm(self) -> Mm:
        """The process address space (current->mm of the ioctls: userptr binds pin it)."""

    @property
    def stats(self) -> Counter[str]:
        """Counters of the run's summary (faults, migrations, GC runs, ...)."""

    @property
    def injections(self) -> dict[str, list[Callable[[], object]]]:
        """Injection point -> work fired once when any VM's fault handler gets there."""

    def device_by_fd(self, fd: int) -> Device | None:
        """The device whose file has number ``fd`` (None if none)."""

    def linked(self, a: str, b: str) -> bool:
        """Whether devices ``a`` and ``b`` are the same or joined by a fast interconnect."""

    def queue_work(self, name: str, fn: Callable[[], object]) -> None:
        """Queue deferred work (it runs in the machine's ``run_workers``)."""
