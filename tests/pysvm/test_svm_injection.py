"""The fault retry loops under asynchronous events injected at every point.

For every injection point of the fault handler in turn (``fault.start``,
``fault.after_find_range``, ``fault.after_migrate``, ``fault.after_get_pages``,
``fault.before_bind``) a GPU write faults while a munmap (of another page of the
same range, or of the faulting page itself), an eviction, or an invalidation lands
exactly there. The fault converges - or, when its address is gone, fails with
``ENOENT`` (drm_gpusvm_range_find_or_insert: no CPU VMA) - and the per-fault reasons
show the extra iterations each event costs. Every step runs under
:class:`svm_helpers.Sim`, which checks every page's data, the SVM and pagemap
invariants after each event.

Also: ``EAGAIN`` coming back many times in a row (the outer loop is a loop), the
opt-in livelock guard stopping a runaway with ``ELOOP`` and a message saying why,
and no silent cap on retries without it.
"""

from __future__ import annotations

from typing import Any

import pytest
from svm_helpers import BUF, POINTS, SZ_2M, SZ_64K, K, Sim

from pysvm.errors import XeError
from pysvm.xe.pagefault import FaultLivelockError

X = BUF + 8 * K            # the faulting page
OTHER = BUF + 4 * SZ_64K   # another page of the same 2 MiB range

EVENTS: dict[str, dict[str, Any]] = {
    "munmap": {"ev": "munmap", "addr": OTHER, "size": K},
    "munmap_self": {"ev": "munmap", "addr": X, "size": K},
    "evict": {"ev": "evict", "device": "gpu0"},
    "invalidate": {"ev": "invalidate", "addr": BUF, "size": SZ_2M, "event": "clear"},
}

#: (profile, event, point) -> (result, the fault's reasons), as the kernel code reads:
#: "gc-eagain"/"outer-eagain": the collector reset the VMA's attributes and the VMA was
#: looked up again; "retry": another inner iteration; "bind-eagain": the pages were
#: invalidated after get_pages; "migrate:EINVAL": the range no longer fits the CPU VMA;
#: "get-pages:EFAULT": the range was marked unmapped; 6.18's "migrate:EFAULT": a fresh
#: range whose pages are device pages already cannot be migrated (newest scans first).
EXPECTED: dict[tuple[str, str, str], tuple[str, str]] = {
    ("6.18", "munmap", "fault.start"):
        ("ok", "gc-eagain outer-eagain"),
    ("6.18", "munmap", "fault.after_find_range"):
        ("ok", "migrate:EINVAL retry gc-eagain outer-eagain"),
    ("6.18", "munmap", "fault.after_migrate"):
        ("ok", "get-pages:EFAULT retry gc-eagain outer-eagain migrate:EFAULT retry"),
    ("6.18", "munmap", "fault.after_get_pages"):
        ("ok", "bind-eagain retry gc-eagain outer-eagain migrate:EFAULT retry"),
    ("6.18", "munmap", "fault.before_bind"):
        ("ok", "bind-eagain retry gc-eagain outer-eagain migrate:EFAULT retry"),
    ("6.18", "munmap_self", "fault.start"):
        ("ENOENT", "gc-eagain outer-eagain find-or-insert:ENOENT"),
    ("6.18", "munmap_self", "fault.after_find_range"):
        ("ENOENT", "migrate:EINVAL retry gc-eagain outer-eagain find-or-insert:ENOENT"),
    ("6.18", "munmap_self", "fault.after_migrate"):
        ("ENOENT", "get-pages:EFAULT retry gc-eagain outer-eagain find-or-insert:ENOENT"),
    ("6.18", "munmap_self", "fault.after_get_pages"):
        ("ENOENT", "bind-eagain retry gc-eagain outer-eagain find-or-insert:ENOENT"),
    ("6.18", "munmap_self", "fault.before_bind"):
        ("ENOENT", "bind-eagain retry gc-eagain outer-eagain find-or-insert:ENOENT"),
    ("6.18", "evict", "fault.start"):
        ("ok", ""),
    ("6.18", "evict", "fault.after_find_range"):
        ("ok", ""),
    ("6.18", "evict", "fault.after_migrate"):
        ("ok", ""),
    ("6.18", "evict", "fault.after_get_pages"):
        ("ok", "bind-eagain retry"),
    ("6.18", "evict", "fault.before_bind"):
        ("ok", "bind-eagain retry"),
    ("6.18", "invalidate", "fault.start"):
        ("ok", ""),
    ("6.18", "invalidate", "fault.after_find_range"):
        ("ok", ""),
    ("6.18", "invalidate", "fault.after_migrate"):
        ("ok", ""),
    ("6.18", "invalidate", "fault.after_get_pages"):
        ("ok", "bind-eagain retry"),
    ("6.18", "invalidate", "fault.before_bind"):
        ("ok", "bind-eagain retry"),
    ("newest", "munmap", "fault.start"):
        ("ok", "gc-eagain outer-eagain"),
    ("newest", "munmap", "fault.after_find_range"):
        ("ok", "migrate:EINVAL retry gc-eagain outer-eagain"),
    ("newest", "munmap", "fault.after_migrate"):
        ("ok", "get-pages:EFAULT retry gc-eagain outer-eagain"),
    ("newest", "munmap", "fault.after_get_pages"):
        ("ok", "bind-eagain retry gc-eagain outer-eagain"),
    ("newest", "munmap", "fault.before_bind"):
        ("ok", "bind-eagain retry gc-eagain outer-eagain"),
    ("newest", "munmap_self", "fault.start"):
        ("ENOENT", "gc-eagain outer-eagain find-or-insert:ENOENT"),
    ("newest", "munmap_self", "fault.after_find_range"):
        ("ENOENT", "migrate:EINVAL retry gc-eagain outer-eagain find-or-insert:ENOENT"),
    ("newest", "munmap_self", "fault.after_migrate"):
        ("ENOENT", "get-pages:EFAULT retry gc-eagain outer-eagain find-or-insert:ENOENT"),
    ("newest", "munmap_self", "fault.after_get_pages"):
        ("ENOENT", "bind-eagain retry gc-eagain outer-eagain find-or-insert:ENOENT"),
    ("newest", "munmap_self", "fault.before_bind"):
        ("ENOENT", "bind-eagain retry gc-eagain outer-eagain find-or-insert:ENOENT"),
    ("newest", "evict", "fault.start"):
        ("ok", ""),
    ("newest", "evict", "fault.after_find_range"):
        ("ok", ""),
    ("newest", "evict", "fault.after_migrate"):
        ("ok", ""),
    ("newest", "evict", "fault.after_get_pages"):
        ("ok", "bind-eagain retry"),
    ("newest", "evict", "fault.before_bind"):
        ("ok", "bind-eagain retry"),
    ("newest", "invalidate", "fault.start"):
        ("ok", ""),
    ("newest", "invalidate", "fault.after_find_range"):
        ("ok", ""),
    ("newest", "invalidate", "fault.after_migrate"):
        ("ok", ""),
    ("newest", "invalidate", "fault.after_get_pages"):
        ("ok", "bind-eagain retry"),
    ("newest", "invalidate", "fault.before_bind"):
        ("ok", "bind-eagain retry"),
}


def _setup(profile: str) -> Sim:
    """A 2 MiB range bound in system memory, non-default attributes, preferred location
    switched to the device: the next fault migrates, gets pages and binds."""
    s = Sim(profile, autoreset=True)
    s.mmap(BUF, SZ_2M)
    s.cpu_write(BUF, SZ_2M, 1)
    s.madvise(BUF, SZ_2M, "atomic", val=2)
    s.madvise(BUF, SZ_2M, "preferred_loc", devmem_fd=-1)
    s.gpu("write", BUF, SZ_2M, value=2)
    assert s.spans() == [(BUF, SZ_2M, "system")]
    s.madvise(BUF, SZ_2M, "preferred_loc", devmem_fd=0)       # zaps the GPU mapping
    return s


@pytest.mark.parametrize("profile", ["6.18", "newest"])
@pytest.mark.parametrize("event", list(EVENTS))
@pytest.mark.parametrize("point", POINTS)
def test_injected_event_at_every_point(profile: str, event: str, point: str) -> None:
    s = _setup(profile)
    s.inject(point, EVENTS[event])
    out = s.gpu("write", X, K, value=3)
    result, text = EXPECTED[(profile, event, point)]
    reasons = text.split()
    assert [i["at"] for i in out["injected"]] == [point]     # fired exactly there, once
    assert out["injected"][0]["fault_addr"] == X
    st = s.last_fault()
    assert (out["result"], st.reasons) == (result, reasons)
    extra = reasons.count("retry") + reasons.count("outer-eagain")
    assert st.retries == out["retries"] == extra
    assert st.outer_iterations == 1 + reasons.count("outer-eagain")
    if result == "ok":
        assert s.cpu_read(X) == [3]
        assert s.gpu("read", X)["data"] == [3]
    else:
        assert out["fault_addr"] == X and st.result != 0
    assert s.cpu_read(BUF, K) == [2]                          # untouched neighbours intact
    if event.startswith("munmap"):
        # the munmapped range was collected and its span got default attributes back
        assert all(r["range"] <= SZ_64K for r in s.ranges())
        assert s.query(BUF, K)[0]["attrs"]["atomic"] == 0


def _chain(s: Sim, point: str, events: list[dict[str, Any]]) -> None:
    """Inject ``events`` one per arrival at ``point`` (each firing arms the next)."""
    todo = list(events)

    def fire() -> dict[str, Any]:
        ev = todo.pop(0)
        out = s.checker.engine.execute(dict(ev))
        if todo:
            s.checker.pending[point].append(todo[0])
            s.svm.inject(point, fire)
        return out

    s.checker.pending[point].append(todo[0])
    s.svm.inject(point, fire)


@pytest.mark.parametrize("profile", ["6.18", "newest"])
def test_eagain_many_times_in_a_row(profile: str) -> None:
    """Five unmaps land one after another, each in another madvised VMA: the collector
    answers EAGAIN five times and the outer loop looks the VMA up five times."""
    s = Sim(profile, autoreset=True)
    s.mmap(BUF, SZ_2M)
    for c in range(8):                      # eight 64 KiB VMAs, each non-default, each bound
        a = BUF + c * SZ_64K
        s.cpu_write(a, SZ_64K, c)
        s.madvise(a, SZ_64K, "atomic", val=2)
        s.madvise(a, SZ_64K, "preferred_loc", devmem_fd=-1)   # stays in system memory
        assert s.gpu("read", a, SZ_64K)["faults"] == 1
    s.ok({"ev": "invalidate", "addr": BUF, "size": K})     # page 0 must fault again
    _chain(s, "fault.start", [{"ev": "munmap", "addr": BUF + c * SZ_64K + K, "size": K}
                              for c in range(1, 6)])
    out = s.gpu("write", BUF, K, value=99)
    assert out["result"] == "ok" and out["faults"] == 1
    assert len(out["injected"]) == 5
    st = s.last_fault()
    assert st.gc_eagain == 5 and st.outer_iterations == 6
    assert st.reasons.count("outer-eagain") == 5 and out["retries"] == 5
    assert s.cpu_read(BUF, K) == [99]
    for c in range(1, 6):                   # the unmapped VMAs' spans are default again
        assert s.query(BUF + c * SZ_64K, K)[0]["attrs"]["atomic"] == 0
    for c in (6, 7):
        assert s.query(BUF + c * SZ_64K, K)[0]["attrs"]["atomic"] == 2
        assert s.gpu("read", BUF + c * SZ_64K)["data"] == [c]


def _runaway(s: Sim, n: int | None) -> None:
    """An invalidation before every bind, ``n`` times (None: forever)."""
    left = [n]
    ev = {"ev": "invalidate", "addr": BUF, "size": K}

    def fire() -> dict[str, Any]:
        out = s.checker.engine.execute(dict(ev))
        if left[0] is None or left[0] > 1:
            if left[0] is not None:
                left[0] -= 1
            s.checker.pending["fault.before_bind"].append(ev)
            s.svm.inject("fault.before_bind", fire)
        return out

    s.checker.pending["fault.before_bind"].append(ev)
    s.svm.inject("fault.before_bind", fire)


@pytest.mark.parametrize("profile", ["6.18", "newest"])
def test_livelock_guard_stops_a_runaway_with_a_clear_error(profile: str) -> None:
    s = Sim(profile, guard=50)
    s.mmap(BUF, SZ_64K)
    s.cpu_write(BUF, SZ_64K, 6)
    _runaway(s, None)
    with pytest.raises(FaultLivelockError) as e:
        s.checker.engine.world.gpu_access(vm="vm0", addr=BUF, size=K, op="write", value=7)
    assert isinstance(e.value, XeError) and e.value.errno == 40   # ELOOP
    msg = str(e.value)
    assert "livelock guard" in msg and "51 loop iterations" in msg and "bind-eagain" in msg
    st = e.value.stats
    assert st.bind_eagain == 49 and st.inner_iterations == 50 and st.outer_iterations == 1
    # Through the trace: the same stop, reported as ELOOP with the fault's address.
    out = s.checker.engine.execute({"ev": "gpu_access", "vm": "vm0", "addr": BUF, "size": K,
                                    "op": "write", "value": 7})
    assert out["result"] == "ELOOP" and out["fault_addr"] == BUF
    s.svm.injections["fault.before_bind"].clear()
    s.checker.pending["fault.before_bind"].clear()
    s.checker.check_world()                                   # nothing was damaged
    assert s.cpu_read(BUF, SZ_64K) == [6] * 16


@pytest.mark.parametrize("profile", ["6.18", "newest"])
def test_no_silent_cap_without_the_guard(profile: str) -> None:
    s = Sim(profile, guard=None)
    s.ok({"ev": "fault_guard", "vm": "vm0", "max_iterations": 0})    # no guard at all
    assert s.svm.max_fault_iterations is None
    s.mmap(BUF, SZ_64K)
    _runaway(s, 300)
    out = s.gpu("write", BUF, K, value=8)
    assert out["result"] == "ok" and len(out["injected"]) == 300
    st = s.last_fault()
    assert st.bind_eagain == 300 and out["retries"] == 300
    assert s.cpu_read(BUF) == [8]


def test_guard_event_sets_and_clears_the_guard() -> None:
    s = Sim("6.18", guard=None)
    s.ok({"ev": "fault_guard", "vm": "vm0", "max_iterations": 0})
    assert s.svm.max_fault_iterations is None
    assert s.ok({"ev": "fault_guard", "vm": "vm0", "max_iterations": 7})["max_iterations"] == 7
    assert s.svm.max_fault_iterations == 7
    s.ok({"ev": "fault_guard", "vm": "vm0", "max_iterations": 0})
    assert s.svm.max_fault_iterations is None
    bad = s.checker.engine.execute({"ev": "fault_guard", "vm": "vm0", "max_iterations": -1})
    assert bad["result"] == "EINVAL"
    assert s.svm.max_fault_iterations is None


def test_unknown_injection_point_is_refused() -> None:
    s = Sim("6.18")
    out = s.checker.engine.execute({"ev": "inject", "at": "fault.nowhere",
                                    "event": {"ev": "evict", "device": "gpu0"}})
    assert out["result"] == "EINVAL" and "fault.start" in out["message"]
    out = s.checker.engine.execute({"ev": "inject", "at": "fault.start",
                                    "event": {"ev": "gpu_access", "vm": "vm0"}})
    assert out["result"] == "EINVAL"
    assert all(not q for q in s.svm.injections.values())
