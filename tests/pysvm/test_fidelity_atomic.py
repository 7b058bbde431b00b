"""The atomic-enable PTE bit (issue 14): a GPU atomic through a valid mapping faults when
the PTE lacks XE_USM_PPGTT_PTE_AE, and the fault handler decides what happens.

Kernel: drivers/gpu/drm/xe/xe_pt.c xe_pt_stage_bind(), xe_atomic_for_vram(),
xe_atomic_for_system(); xe_svm.c xe_svm_handle_pagefault(); xe_pagefault.c
xe_pagefault_handle_vma(), xe_pagefault_begin(); xe_vm.c xe_vma_need_vram_for_atomic();
xe_pci.c (has_device_atomics_on_smem). The rules are the same in both profiles.
"""

from __future__ import annotations

import errno
from typing import Any

import pytest
from test_fidelity import BUF, K, M, _errno, _exc

from pysvm import World
from pysvm.hw.gpu import GPU_REFAULTS
from pysvm.xe.attr import AtomicAccess
from pysvm.xe.bo import Bo
from pysvm.xe.device import Device
from pysvm.xe.pt import atomic_for_system, atomic_for_vram, pte_atomic

PROFILES = ("6.18", "7.0")
CPU, DEVICE, GLOBAL, UNDEFINED = (int(AtomicAccess.CPU), int(AtomicAccess.DEVICE),
                                  int(AtomicAccess.GLOBAL), int(AtomicAccess.UNDEFINED))


def _mirror_world(profile: str, **dev: Any) -> World:
    w = World(profile)
    w.device(name="gpu0", **dev)
    w.vm_create(vm="vm0", device="gpu0", fault_mode=True)
    w.bind(vm="vm0", op="map", addr=BUF, range=4 * M, flags=["cpu_addr_mirror"])
    w.mmap(addr=BUF, size=2 * M)
    return w


def _location(w: World, addr: int) -> str:
    svm = w.vms["vm0"].svm
    assert svm is not None
    r = svm.gpusvm.range_find(addr)
    assert r is not None
    return r.location()


# -- the rule itself (xe_pt.c) ------------------------------------------------------------

class _Vma:
    """Just what xe_atomic_for_*() read: the attribute and the BO."""

    def __init__(self, atomic: int, bo: Bo | None = None) -> None:
        self.attr = type("A", (), {"atomic_access": atomic})()
        self.bo = bo


def _dev(discrete: bool, smem: bool) -> Device:
    return Device("d", 64 * M if discrete else 0, discrete, smem, fd=3)


@pytest.mark.parametrize(("atomic", "want"), [(UNDEFINED, True), (DEVICE, True),
                                              (GLOBAL, True), (CPU, False)])
def test_atomic_for_vram_refuses_only_cpu(atomic: int, want: bool) -> None:
    assert atomic_for_vram(_Vma(atomic)) is want      # type: ignore[arg-type]


@pytest.mark.parametrize(("discrete", "smem", "atomic", "placements", "lr", "want"), [
    (True, False, DEVICE, None, True, False),          # no device atomics on smem: never
    (True, True, CPU, None, True, False),              # CPU attribute: never
    (True, True, DEVICE, None, True, True),            # DEVICE: always
    (True, True, GLOBAL, None, True, False),           # dGPU, LR VM, no BO: no
    (True, True, UNDEFINED, None, True, False),
    (True, True, GLOBAL, None, False, True),           # not LR mode: yes
    (True, True, UNDEFINED, ("system",), True, True),  # BO with a single placement: yes
    (True, True, UNDEFINED, ("vram", "system"), True, False),
    (False, True, GLOBAL, None, True, True),           # integrated: yes
    (False, True, CPU, None, True, False),
])
def test_atomic_for_system_matrix(discrete: bool, smem: bool, atomic: int,
                                  placements: tuple[str, ...] | None, lr: bool,
                                  want: bool) -> None:
    dev = _dev(discrete, smem)
    bo = Bo("b", 1, dev, M, placements) if placements else None
    vma = _Vma(atomic, bo)
    assert atomic_for_system(dev, vma, lr) is want  # type: ignore[arg-type]
    if lr:
        assert pte_atomic(dev, vma, False) is want  # type: ignore[arg-type]


# -- CPU-address-mirror VMAs (xe_svm_handle_pagefault) -------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_atomic_cpu_on_a_page_a_read_mapped_into_vram_is_eacces(profile: str) -> None:
    # IGT xe_madvise atomic-cpu: the batch fetch maps the page (migrated to VRAM: the
    # default preferred location), then MI_ATOMIC_INC finds a PTE without the AE bit
    # (xe_atomic_for_vram(): attribute CPU), faults, and xe_vma_need_vram_for_atomic()
    # says -EACCES.
    w = _mirror_world(profile)
    w.madvise(vm="vm0", addr=BUF, range=K, type="atomic", val=CPU)
    assert w.gpu_access(vm="vm0", addr=BUF, size=K, op="read")["faults"] == 1
    assert _location(w, BUF) == "gpu0"
    e = _exc(w.gpu_access, vm="vm0", addr=BUF, size=K, op="atomic")
    assert e.errno == errno.EACCES and e.details["faults"] == 1
    assert w.cpu_read(addr=BUF, size=K)["data"] == [0]
    # reads and writes through the same PTE still work
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="write", value=5)
    assert w.cpu_read(addr=BUF, size=K)["data"] == [5]


@pytest.mark.parametrize("profile", PROFILES)
def test_atomic_global_on_a_vram_page_needs_no_fault(profile: str) -> None:
    w = _mirror_world(profile)
    w.madvise(vm="vm0", addr=BUF, range=K, type="atomic", val=GLOBAL)
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="read")
    assert _location(w, BUF) == "gpu0"
    assert w.gpu_access(vm="vm0", addr=BUF, size=K, op="atomic")["faults"] == 0
    assert w.cpu_read(addr=BUF, size=K)["data"] == [1]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("smem", "atomic", "faults", "where"), [
    (False, DEVICE, 1, "gpu0"),     # system PTE without AE: fault, migrate to VRAM
    (True, DEVICE, 0, "system"),    # xe_atomic_for_system(): DEVICE with smem atomics
    (True, GLOBAL, 1, "gpu0"),      # dGPU + LR VM + no BO: no AE, fault migrates
    (True, UNDEFINED, 1, "gpu0"),
])
def test_atomic_on_a_system_page_mapped_by_a_read(profile: str, smem: bool, atomic: int,
                                                  faults: int, where: str) -> None:
    w = _mirror_world(profile, smem_atomics=smem)
    w.madvise(vm="vm0", addr=BUF, range=2 * M, type="preferred_loc", devmem_fd=-1)
    w.madvise(vm="vm0", addr=BUF, range=2 * M, type="atomic", val=atomic)
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="read")
    assert _location(w, BUF) == "system"
    out = w.gpu_access(vm="vm0", addr=BUF, size=K, op="atomic")
    assert out["faults"] == faults and _location(w, BUF) == where
    assert w.cpu_read(addr=BUF, size=K)["data"] == [1]


@pytest.mark.parametrize("profile", PROFILES)
def test_atomic_cpu_on_integrated_device_faults_until_the_job_times_out(profile: str) -> None:
    # iGPU: xe_atomic_for_system() refuses CPU, xe_vma_need_vram_for_atomic() is 0
    # without IS_DGFX, the handler finds the range valid and returns 0: the atomic
    # faults again and again.
    w = World(profile)
    w.device(name="igpu", discrete=False)
    w.vm_create(vm="vm0", device="igpu", fault_mode=True)
    w.bind(vm="vm0", op="map", addr=BUF, range=4 * M, flags=["cpu_addr_mirror"])
    w.mmap(addr=BUF, size=2 * M)
    w.madvise(vm="vm0", addr=BUF, range=K, type="atomic", val=CPU)
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="read")
    e = _exc(w.gpu_access, vm="vm0", addr=BUF, size=K, op="atomic")
    assert e.errno == errno.ETIME and e.details["faults"] == GPU_REFAULTS
    assert w.cpu_read(addr=BUF, size=K)["data"] == [0]
    # any other attribute: the system PTE has the AE bit, no fault at all
    w.madvise(vm="vm0", addr=BUF, range=K, type="atomic", val=GLOBAL)
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="read")
    assert w.gpu_access(vm="vm0", addr=BUF, size=K, op="atomic")["faults"] == 0


@pytest.mark.parametrize("profile", PROFILES)
def test_atomic_span_stops_at_the_first_page_without_the_bit(profile: str) -> None:
    # one range, two attributes: the page with attribute CPU faults, the other does not
    w = _mirror_world(profile)
    w.gpu_access(vm="vm0", addr=BUF, size=2 * K, op="read")
    w.madvise(vm="vm0", addr=BUF + K, range=K, type="atomic", val=CPU)
    w.gpu_access(vm="vm0", addr=BUF, size=2 * K, op="read")
    e = _exc(w.gpu_access, vm="vm0", addr=BUF, size=2 * K, op="atomic")
    assert e.errno == errno.EACCES and e.details["fault_addr"] == BUF + K
    assert w.cpu_read(addr=BUF, size=2 * K)["data"] == [1, 0]


# -- the device's has_device_atomics_on_smem (xe_pci.c) -------------------------------------

def test_integrated_device_has_smem_atomics_and_false_is_einval() -> None:
    w = World()
    w.device(name="igpu", discrete=False)
    assert w.devices["igpu"].smem_atomics is True
    assert _errno(w.device, name="igpu2", discrete=False, smem_atomics=False) == errno.EINVAL
    assert "igpu2" not in w.devices
    w.device(name="gpu0")
    assert w.devices["gpu0"].smem_atomics is False     # discrete default: PVC-like


# -- BO VMAs (xe_pagefault_handle_vma, xe_pagefault_begin) ---------------------------------

def _bo_world(profile: str, placement: list[str], **dev: Any) -> World:
    w = World(profile)
    w.device(name="gpu0", **dev)
    w.vm_create(vm="vm0", device="gpu0", fault_mode=True)
    w.bo_create(bo="b", device="gpu0", size=M, placement=placement)
    w.bind(vm="vm0", op="map", addr=BUF, range=M, bo="b")
    return w


@pytest.mark.parametrize("profile", PROFILES)
def test_bo_atomic_migrates_a_system_resident_bo_to_vram(profile: str) -> None:
    w = _bo_world(profile, ["system", "vram"])
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="read")
    out = w.gpu_access(vm="vm0", addr=BUF, size=K, op="atomic")
    assert out["faults"] == 1 and w.bos["b"].is_vram
    assert w.gpu_access(vm="vm0", addr=BUF, size=K, op="atomic")["faults"] == 0
    assert w.gpu_access(vm="vm0", addr=BUF, size=K, op="read")["data"] == [2]


@pytest.mark.parametrize("profile", PROFILES)
def test_bo_atomic_needing_vram_without_a_vram_placement_is_einval(profile: str) -> None:
    # xe_pagefault_begin(need_vram_move) -> xe_bo_migrate(): !xe_bo_can_migrate -> -EINVAL
    w = _bo_world(profile, ["system"])
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="read")
    e = _exc(w.gpu_access, vm="vm0", addr=BUF, size=K, op="atomic")
    assert e.errno == errno.EINVAL and not w.bos["b"].is_vram
    assert w.gpu_access(vm="vm0", addr=BUF, size=K, op="read")["data"] == [0]


@pytest.mark.parametrize("profile", PROFILES)
def test_bo_atomic_on_single_placement_system_bo_with_smem_atomics(profile: str) -> None:
    # xe_atomic_for_system(): a BO with a single placement gets the AE bit on a dGPU;
    # xe_vma_need_vram_for_atomic() still says 1 for UNDEFINED, but no fault happens
    w = _bo_world(profile, ["system"], smem_atomics=True)
    w.gpu_access(vm="vm0", addr=BUF, size=K, op="read")
    assert w.gpu_access(vm="vm0", addr=BUF, size=K, op="atomic")["faults"] == 0
