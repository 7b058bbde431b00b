"""DRM_IOCTL_XE_VM_GET_PROPERTY(FAULTS) (issue 14, 7.0): the failed faults a VM saves and
the two-call protocol that reads them.

Kernel: drivers/gpu/drm/xe/xe_vm.c xe_vm_get_property_ioctl(), xe_vm_get_property_helper(),
fill_faults(), xe_vm_add_fault_entry_pf(); drivers/gpu/drm/xe/xe_pagefault.c
xe_pagefault_queue_work() -> xe_pagefault_save_to_vm(); drivers/gpu/drm/drm_ioctl.c
drm_ioctl() (an ioctl the driver does not have is EINVAL).
"""

from __future__ import annotations

import errno

import pytest
from test_fidelity import BUF, K, M, _errno, _exc

from pysvm import World
from pysvm.xe.vm_faults import FAULT_ENTRY_SIZE, MAX_FAULTS_SAVED_PER_VM

CPU = 3


def _world(profile: str = "7.0") -> World:
    w = World(profile)
    w.device(name="gpu0")
    w.vm_create(vm="vm0", device="gpu0", fault_mode=True)
    w.bind(vm="vm0", op="map", addr=BUF, range=4 * M, flags=["cpu_addr_mirror"])
    return w


def test_6_18_has_no_such_ioctl() -> None:
    w = _world("6.18")
    assert _errno(w.vm_get_property, vm="vm0") == errno.EINVAL


def test_no_fault_no_entry_and_the_count_call() -> None:
    w = _world()
    w.mmap(addr=BUF, size=M)
    w.gpu_access(vm="vm0", addr=BUF, size=4 * K, op="write", value=1)   # serviced
    assert w.vm_get_property(vm="vm0") == {"size": 0}


def test_failed_faults_are_saved_in_order_and_reading_does_not_consume_them() -> None:
    w = _world()
    w.mmap(addr=BUF, size=M)
    # 1: no CPU mapping behind the mirror (ENOENT from range_find_or_insert)
    assert _errno(w.gpu_access, vm="vm0", addr=BUF + 2 * M, size=K, op="read") == errno.ENOENT
    # 2: an atomic on a page mapped by a read, attribute CPU: EACCES (fault type atomic)
    w.madvise(vm="vm0", addr=BUF, range=K, type="atomic", val=CPU)
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="read")
    assert _errno(w.gpu_access, vm="vm0", addr=BUF, size=K, op="atomic") == errno.EACCES
    # 3: no VMA at all
    assert _errno(w.gpu_access, vm="vm0", addr=BUF + 8 * M, size=K, op="write") == errno.EINVAL
    out = w.vm_get_property(vm="vm0")
    assert out == {"size": 3 * FAULT_ENTRY_SIZE}
    full = w.vm_get_property(vm="vm0", size=3 * FAULT_ENTRY_SIZE)
    assert full["faults"] == [
        {"address": BUF + 2 * M, "address_precision": 4096, "access_type": 0,
         "fault_type": 0, "fault_level": 0},
        {"address": BUF, "address_precision": 4096, "access_type": 2,
         "fault_type": 2, "fault_level": 0},
        {"address": BUF + 8 * M, "address_precision": 4096, "access_type": 1,
         "fault_type": 0, "fault_level": 0},
    ]
    # a smaller multiple returns the oldest entries; the list stays
    assert w.vm_get_property(vm="vm0", size=FAULT_ENTRY_SIZE)["faults"] == full["faults"][:1]
    assert w.vm_get_property(vm="vm0") == {"size": 3 * FAULT_ENTRY_SIZE}


def test_the_list_keeps_at_most_fifty() -> None:
    w = _world()
    for i in range(MAX_FAULTS_SAVED_PER_VM + 5):
        _errno(w.gpu_access, vm="vm0", addr=BUF + 8 * M + i * K, size=K, op="read")
    out = w.vm_get_property(vm="vm0")
    assert out["size"] == MAX_FAULTS_SAVED_PER_VM * FAULT_ENTRY_SIZE
    faults = w.vm_get_property(vm="vm0", size=out["size"])["faults"]
    assert faults[-1]["address"] == BUF + 8 * M + (MAX_FAULTS_SAVED_PER_VM - 1) * K


def test_a_job_timeout_is_not_a_failed_fault() -> None:
    # integrated device, atomic attribute CPU: every fault succeeds, the job times out
    w = World("7.0")
    w.device(name="igpu", discrete=False)
    w.vm_create(vm="vm0", device="igpu", fault_mode=True)
    w.bind(vm="vm0", op="map", addr=BUF, range=4 * M, flags=["cpu_addr_mirror"])
    w.mmap(addr=BUF, size=M)
    w.madvise(vm="vm0", addr=BUF, range=K, type="atomic", val=CPU)
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="read")
    assert _errno(w.gpu_access, vm="vm0", addr=BUF, size=K, op="atomic") == errno.ETIME
    assert w.vm_get_property(vm="vm0") == {"size": 0}


@pytest.mark.parametrize(("kw", "err"), [
    ({"extensions": 1}, errno.EINVAL),
    ({"pad": 1}, errno.EINVAL),
    ({"reserved": (0, 0, 1)}, errno.EINVAL),
    ({"vm": "nope"}, errno.ENOENT),
    ({"property": 1}, errno.EINVAL),
    ({"size": 2 * FAULT_ENTRY_SIZE}, errno.EINVAL),          # more than saved
    ({"size": FAULT_ENTRY_SIZE - 8}, errno.EINVAL),          # not a multiple
    ({"size": FAULT_ENTRY_SIZE, "data": False}, errno.EFAULT),
], ids=["extensions", "pad", "reserved", "no-vm", "property", "size-too-big",
        "size-not-multiple", "data-null"])
def test_errnos_in_the_kernels_order(kw: dict[str, object], err: int) -> None:
    w = _world()
    _errno(w.gpu_access, vm="vm0", addr=BUF + 8 * M, size=K, op="read")     # one fault
    args: dict[str, object] = {"vm": "vm0", **kw}
    e = _exc(w.vm_get_property, **args)
    assert e.errno == err, e
    assert w.vm_get_property(vm="vm0") == {"size": FAULT_ENTRY_SIZE}


def test_mbz_fields_are_checked_before_the_vm_lookup() -> None:
    w = _world()
    assert _errno(w.vm_get_property, vm="nope", pad=1) == errno.EINVAL


def test_the_ioctl_works_on_a_non_fault_vm_and_reports_nothing() -> None:
    w = _world()
    w.vm_create(vm="vm1", device="gpu0")
    assert w.vm_get_property(vm="vm1") == {"size": 0}


def test_each_check_of_the_ioctl_in_turn() -> None:
    """One call per check of xe_vm_get_property_ioctl() / _helper() / fill_faults(), each
    failing only that check; nothing changes (the docs/errnos.md G rows cite this)."""
    w = _world()
    _errno(w.gpu_access, vm="vm0", addr=BUF + 8 * M, size=K, op="read")     # one fault
    assert _errno(w.vm_get_property, vm="vm0", reserved=(1, 0, 0)) == errno.EINVAL
    assert _errno(w.vm_get_property, vm="vm0", extensions=1) == errno.EINVAL
    assert _errno(w.vm_get_property, vm="nope") == errno.ENOENT
    assert _errno(w.vm_get_property, vm="vm0", property=1) == errno.EINVAL
    assert _errno(w.vm_get_property, vm="vm0", size=FAULT_ENTRY_SIZE + 1) == errno.EINVAL
    assert _errno(w.vm_get_property, vm="vm0", size=FAULT_ENTRY_SIZE,
                  data=False) == errno.EFAULT
    assert len(w.vm_get_property(vm="vm0", size=FAULT_ENTRY_SIZE)["faults"]) == 1


def test_the_address_is_canonical() -> None:
    # fill_faults() reports xe_device_canonicalize_addr(): bit 47 of a 48-bit VA is
    # sign-extended
    w = _world()
    high = 0x9000_0000_0000
    assert _errno(w.gpu_access, vm="vm0", addr=high, size=K, op="read") == errno.EINVAL
    (f,) = w.vm_get_property(vm="vm0", size=FAULT_ENTRY_SIZE)["faults"]
    assert f["address"] == 0xFFFF_9000_0000_0000
