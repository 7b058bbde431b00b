"""Kernel-derived scenarios, written from the kernel source alone (issue 14).

Every expected value below was read off the kernel functions named next to it, not off the
model: drivers/gpu/drm/xe/xe_svm.c, xe_vm.c, xe_vm_madvise.c, xe_pagefault.c, xe_bo.c and
drivers/gpu/drm/drm_gpusvm.c, drm_pagemap.c, drm_pagemap_util.c (Linux v6.18 for the 6.18
profile; mainline for the 7.0 profile). Ten topics, three or more scenarios each: prefetch,
userptr, BO atomics, killed VMs, owner groups, purgeable BOs, chunk edges, eviction, garbage
collection and the pagemap cache; then madvise invalidation and range boundaries.

A scenario the model gets wrong is marked xfail(strict=True) with the kernel function that
decides it, so it starts failing the day the model is fixed.
"""

from __future__ import annotations

import errno
from typing import Any

import pytest

import pysvm

K4 = 4 << 10
K64 = 64 << 10
M = 1 << 20
M2 = 2 << 20
A = 1 << 30            # a CPU address, 2 MiB (and 512 MiB) aligned
G = 1 << 40            # a GPU address for BO and userptr binds, far from any CPU mapping
COHERENT_PAT = 1       # a PAT index with a coherency mode (userptr needs one)

BOTH = ["6.18", "7.0"]


# --- helpers ---------------------------------------------------------------------------------

def machine(profile: str = "6.18", *, discrete: bool = True, smem_atomics: bool = False,
            mirror: bool = True, fault_mode: bool = True, vram_mib: int = 64) -> pysvm.World:
    """One device gpu0, one VM vm0 and (by default) a CPU-address-mirror bind over it all."""
    w = pysvm.World(profile)
    if discrete:
        w.device(name="gpu0", vram_mib=vram_mib, smem_atomics=smem_atomics)
    else:   # an integrated device always has device atomics on system memory (xe_pci.c)
        w.device(name="gpu0", discrete=False)
    w.vm_create(vm="vm0", device="gpu0", fault_mode=fault_mode)
    if mirror:
        w.bind(vm="vm0", op="map", addr=0, range=1 << 47, flags=["cpu_addr_mirror"])
    return w


def ranges(w: pysvm.World, vm: str = "vm0") -> list[tuple[int, int, str, bool]]:
    return [(r["addr"], r["range"], r["location"], r["unmapped"])
            for r in w.ranges(vm=vm)["ranges"]]


def vmas(w: pysvm.World, addr: int = 0, size: int | None = None,
         vm: str = "vm0") -> list[dict[str, Any]]:
    if size is None:
        return list(w.query(vm=vm)["vmas"])
    return list(w.query(vm=vm, addr=addr, range=size)["vmas"])


def refused(fn: Any, **kw: Any) -> pysvm.XeError:
    with pytest.raises(pysvm.XeError) as ei:
        fn(**kw)
    return ei.value


def pagemaps(w: pysvm.World) -> list[tuple[str, int, bool]]:
    return [(p["device"], p["refcount"], p["cached"]) for p in w.pagemaps()["pagemaps"]]


# === prefetch =================================================================================

@pytest.mark.parametrize("profile", BOTH)
def test_prefetch_window_starting_and_ending_in_holes(profile: str) -> None:
    # xe_vm.c vm_bind_ioctl_ops_create(), DRM_GPUVA_OP_PREFETCH: the walk starts at the
    # window's first address; xe_svm_range_find_or_insert() -ENOENT there (no CPU VMA,
    # drm_gpusvm_range_find_or_insert() vma_lookup()) makes xe_svm_find_vma_start() jump to
    # the next CPU VMA inside the window, and a window ending in a hole simply stops. The
    # prefetch context has no check_pages_threshold, so the 1 MiB CPU VMA, too small for a
    # 2 MiB chunk, is cut in 64 KiB chunks (drm_gpusvm_range_chunk_size()) without looking
    # at its pages: 1 + 16 ranges.
    w = machine(profile)
    w.mmap(addr=A, size=M2)
    w.mmap(addr=A + 4 * M, size=M)
    w.cpu_write(addr=A, size=M2, value=5)
    out = w.prefetch(vm="vm0", addr=A - M2, range=10 * M, region="vram")
    assert out == {"ranges_bound": 17}
    assert ranges(w) == [(A, M2, "gpu0", False)] + [
        (A + 4 * M + i * K64, K64, "gpu0", False) for i in range(16)]
    # Migration copies the data (drm_pagemap_migrate_to_devmem(); the CPU faults it back
    # through drm_pagemap_migrate_to_ram()); never-touched memory reads 0.
    assert w.cpu_read(addr=A + M2 - K4, size=K4)["data"] == [5]
    assert w.cpu_read(addr=A + 4 * M, size=K4)["data"] == [0]


@pytest.mark.parametrize("profile", BOTH)
def test_prefetch_over_a_mirror_and_a_bo_fails_late(profile: str) -> None:
    # xe_vm_bind_ioctl(): vm_bind_ioctl_ops_prefetch_ranges() migrates the CPU-mirror op's
    # ranges (prefetch_ranges()) before vm_bind_ioctl_ops_execute(); only there does
    # op_lock_and_prep() run xe_bo_migrate() for the BO op, which is -EINVAL for a BO
    # without a VRAM placement (xe_bo_can_migrate()). Nothing is bound: the range already
    # sits in VRAM, unbound, and the next GPU access faults on it.
    w = machine(profile, mirror=False)
    w.bind(vm="vm0", op="map", addr=A, range=M2, flags=["cpu_addr_mirror"])
    w.bo_create(bo="sys", device="gpu0", size=M2, placement=["system"])
    w.bind(vm="vm0", op="map", addr=A + M2, range=M2, bo="sys")
    w.mmap(addr=A, size=M2)
    w.cpu_write(addr=A, size=M2, value=7)
    assert refused(w.prefetch, vm="vm0", addr=A, range=2 * M2,
                   region="vram").errno == errno.EINVAL
    assert ranges(w) == [(A, M2, "gpu0", False)]
    assert w.gpu_access(vm="vm0", addr=A, size=K4, op="read") == {
        "faults": 1, "retries": 0, "data": [7]}


@pytest.mark.parametrize("profile", BOTH)
def test_prefetch_skips_ranges_already_valid_where_asked(profile: str) -> None:
    # vm_bind_ioctl_ops_create(): xe_svm_range_validate() true (bound on every tile, not
    # invalidated, and has_devmem_pages == "a VRAM region was asked for") -> the range is not
    # added to prefetch_range.range and ranges_count stays 0: nothing is bound again.
    w = machine(profile)
    w.mmap(addr=A, size=M2)
    w.cpu_write(addr=A, size=M2, value=1)
    assert w.prefetch(vm="vm0", addr=A, range=M2, region="vram")["ranges_bound"] == 1
    assert w.prefetch(vm="vm0", addr=A, range=M2, region="vram")["ranges_bound"] == 0
    assert w.prefetch(vm="vm0", addr=A, range=M2, region="system")["ranges_bound"] == 1
    assert w.prefetch(vm="vm0", addr=A, range=M2, region=0)["ranges_bound"] == 0


@pytest.mark.parametrize("profile", BOTH)
def test_prefetch_pref_loc_reads_each_vmas_advice(profile: str) -> None:
    # DRM_XE_CONSULT_MEM_ADVISE_PREF_LOC: vm_bind_ioctl_ops_create() resolves the pagemap per
    # prefetch op (one op per VMA, drm_gpuvm_prefetch_ops_create()) with
    # xe_vma_resolve_pagemap(): devmem_fd -1 (DEFAULT_SYSTEM) -> NULL -> system memory;
    # 0 (DEFAULT_DEVICE) on a discrete device -> the tile's own VRAM.
    w = machine(profile)
    w.mmap(addr=A, size=4 * M)
    w.cpu_write(addr=A, size=4 * M, value=2)
    w.madvise(vm="vm0", addr=A, range=M2, type="preferred_loc", devmem_fd=-1)
    assert w.prefetch(vm="vm0", addr=A, range=4 * M, region="pref_loc") == {"ranges_bound": 2}
    assert ranges(w) == [(A, M2, "system", False), (A + M2, M2, "gpu0", False)]


@pytest.mark.parametrize("profile", BOTH)
def test_prefetch_of_read_only_and_shared_cpu_mappings(profile: str) -> None:
    # drm_gpusvm_range_find_or_insert(): a writable GPU VMA over a CPU VMA without VM_WRITE
    # is -EPERM before any range exists; vm_bind_ioctl_ops_create() only steps over -ENOENT,
    # so the prefetch fails with it. A MAP_SHARED (shmem, not vma_is_anonymous()) mapping
    # gets a range whose migrate_devmem is false: xe_svm_range_needs_migrate_to_vram() says
    # no, and the range is bound in system memory - still counted, and the GPU then reads
    # without faulting.
    w = machine(profile)
    w.mmap(addr=A, size=M2, read_only=True)
    assert refused(w.prefetch, vm="vm0", addr=A, range=M2, region="vram").errno == errno.EPERM
    assert ranges(w) == []
    w.mmap(addr=A + M2, size=M2, shared=True)
    w.cpu_write(addr=A + M2, size=K4, value=5)
    assert w.prefetch(vm="vm0", addr=A + M2, range=M2, region="vram") == {"ranges_bound": 1}
    assert ranges(w) == [(A + M2, M2, "system", False)]
    assert w.gpu_access(vm="vm0", addr=A + M2, size=K4, op="read") == {
        "faults": 0, "retries": 0, "data": [5]}


@pytest.mark.parametrize("profile", BOTH)
def test_fault_with_own_device_fd_advice(profile: str) -> None:
    # A fault (not a prefetch) under preferred_loc = this device's own file descriptor.
    # v6.18 xe_svm.c xe_vma_resolve_pagemap(): a devmem_fd that is a real file ("TODO:
    # Support multi-device with drm_pagemap_from_fd(fd)") resolves to NULL, so
    # __xe_svm_handle_pagefault() never migrates (xe_svm_range_needs_migrate_to_vram() gets
    # no pagemap) and, not devmem_only, clears device_private_page_owner. Mainline:
    # madvise_preferred_mem_loc() stores the drm_pagemap xe_drm_pagemap_from_fd() opened and
    # the resolve returns it -> VRAM.
    w = machine(profile)
    w.mmap(addr=A, size=M2)
    w.cpu_write(addr=A, size=M2, value=3)
    # (6.18 has no region_instance: that u16 is preferred_mem_loc.pad and must be 0.)
    w.madvise(vm="vm0", addr=A, range=M2, type="preferred_loc", devmem_fd="gpu0",
              region_instance=0 if profile == "6.18" else 1)
    assert w.gpu_access(vm="vm0", addr=A, size=K4, op="write", value=4) == {
        "faults": 1, "retries": 0}
    assert ranges(w) == [(A, M2, "system" if profile == "6.18" else "gpu0", False)]
    assert w.devices["gpu0"].vram.used == (0 if profile == "6.18" else M2)
    assert w.cpu_read(addr=A, size=2 * K4)["data"] == [4, 3]


# === userptr ==================================================================================

def _userptr(w: pysvm.World, cpu: int, size: int, gpu: int = G) -> None:
    w.bind(vm="vm0", op="map_userptr", addr=gpu, range=size, offset=cpu,
           pat_index=COHERENT_PAT)


@pytest.mark.parametrize("profile", BOTH)
def test_userptr_aliases_share_the_process_pages(profile: str) -> None:
    # A userptr VMA maps the process pages themselves (xe_vma_userptr_pin_pages() ->
    # drm_gpusvm_get_pages() on the CPU range): two userptr VMAs of the same CPU range at
    # two GPU addresses, and a CPU-address-mirror VMA over the CPU address, are three
    # views of one copy of the data.
    w = machine(profile, mirror=False)
    w.bind(vm="vm0", op="map", addr=A, range=K64, flags=["cpu_addr_mirror"])
    w.mmap(addr=A, size=K64)
    _userptr(w, A, K64, gpu=G)
    _userptr(w, A, K64, gpu=2 * G)
    w.gpu_access(vm="vm0", addr=G + K4, size=K4, op="write", value=9)
    assert w.gpu_access(vm="vm0", addr=2 * G, size=2 * K4, op="read")["data"] == [0, 9]
    assert w.gpu_access(vm="vm0", addr=A, size=2 * K4, op="read")["data"] == [0, 9]
    w.cpu_write(addr=A, size=K4, value=3)
    assert w.gpu_access(vm="vm0", addr=G, size=2 * K4, op="read")["data"] == [3, 9]


@pytest.mark.parametrize("profile", BOTH)
def test_userptr_bind_of_unmapped_cpu_memory_is_efault(profile: str) -> None:
    # xe_vm.c new_vma() pins a userptr VMA at bind time (xe_vma_userptr_pin_pages());
    # hmm_range_fault() over addresses with no CPU VMA fails with -EFAULT and
    # vm_bind_ioctl_ops_unwind() removes the new VMA: the bind changes nothing.
    w = machine(profile, mirror=False)
    before = vmas(w)
    assert refused(w.bind, vm="vm0", op="map_userptr", addr=G, range=K64, offset=A,
                   pat_index=COHERENT_PAT).errno == errno.EFAULT
    assert vmas(w) == before


@pytest.mark.parametrize("profile", BOTH)
def test_userptr_after_munmap_faults_with_efault(profile: str) -> None:
    # munmap -> vma_userptr_invalidate(): in fault mode the VMA's PTEs are zapped
    # (xe_vm_invalidate_vma()). The next GPU access faults; xe_pagefault_handle_vma() sees
    # xe_vma_userptr_check_repin() and repins, and the repin of vanished memory is -EFAULT.
    w = machine(profile, mirror=False)
    w.mmap(addr=A, size=K64)
    _userptr(w, A, K64)
    assert w.gpu_access(vm="vm0", addr=G, size=K4, op="read")["faults"] == 1
    assert w.gpu_access(vm="vm0", addr=G, size=K4, op="read")["faults"] == 0
    w.munmap(addr=A, size=K64)
    e = refused(w.gpu_access, vm="vm0", addr=G, size=K4, op="read")
    assert e.errno == errno.EFAULT and e.details["fault_addr"] == G


@pytest.mark.parametrize("profile", BOTH)
def test_userptr_cpu_unmap_invalidates_the_gpu_mapping(profile: str) -> None:
    # vma_userptr_invalidate(): in fault mode, xe_vm_invalidate_vma() clears the VMA's PTEs.
    # After munmap + a new mmap at the same address the GPU access faults (1), the fault
    # repins (xe_vma_userptr_check_repin() -> xe_vma_userptr_pin_pages()) and reads the new,
    # zero-filled page.
    w = machine(profile, mirror=False)
    w.mmap(addr=A, size=K64)
    w.cpu_write(addr=A, size=K64, value=5)
    _userptr(w, A, K64)
    assert w.gpu_access(vm="vm0", addr=G, size=K4, op="read") == {
        "faults": 1, "retries": 0, "data": [5]}
    w.munmap(addr=A, size=K64)
    w.mmap(addr=A, size=K64)
    assert w.gpu_access(vm="vm0", addr=G, size=K4, op="read") == {
        "faults": 1, "retries": 0, "data": [0]}
    w.munmap(addr=A, size=K64)
    e = refused(w.gpu_access, vm="vm0", addr=G, size=K4, op="read")
    assert e.errno == errno.EFAULT and e.details["faults"] == 1


@pytest.mark.parametrize("profile", BOTH)
def test_userptr_atomic_on_an_integrated_device(profile: str) -> None:
    # xe_pagefault_handle_vma(): a userptr is -EACCES only when xe_vma_need_vram_for_atomic()
    # says VRAM is needed; that function returns 0 when !IS_DGFX, so on an integrated device
    # the atomic runs on the process page.
    w = machine(profile, discrete=False, mirror=False)
    w.mmap(addr=A, size=K64)
    w.cpu_write(addr=A, size=K4, value=41)
    _userptr(w, A, K64)
    w.gpu_access(vm="vm0", addr=G, size=K4, op="atomic")
    assert w.cpu_read(addr=A, size=K4)["data"] == [42]


@pytest.mark.parametrize("profile", BOTH)
def test_userptr_madvise_atomic_only_device_with_smem_atomics(profile: str) -> None:
    # xe_vm_madvise.c madvise_atomic(): a userptr VMA is skipped (no attribute change, no
    # invalidation) unless val is DRM_XE_ATOMIC_DEVICE and the device has
    # has_device_atomics_on_smem.
    w = machine(profile, mirror=False)
    w.mmap(addr=A, size=K64)
    _userptr(w, A, K64)
    for val in (1, 2, 3):
        assert w.madvise(vm="vm0", addr=G, range=K64, type="atomic",
                         val=val) == {"invalidated": []}
        assert [v["attrs"]["atomic"] for v in vmas(w)] == [0]
    s = machine(profile, mirror=False, smem_atomics=True)
    s.mmap(addr=A, size=K64)
    s.cpu_write(addr=A, size=K4, value=10)
    _userptr(s, A, K64)
    # UNDEFINED still needs VRAM on a discrete device -> -EACCES for a userptr ...
    assert refused(s.gpu_access, vm="vm0", addr=G, size=K4, op="atomic").errno == errno.EACCES
    s.madvise(vm="vm0", addr=G, range=K64, type="atomic", val=1)
    assert [v["attrs"]["atomic"] for v in vmas(s)] == [1]
    # ... DEVICE with smem atomics does not (xe_vma_need_vram_for_atomic() returns
    # !has_device_atomics_on_smem), so the atomic runs on the system pages.
    s.gpu_access(vm="vm0", addr=G, size=K4, op="atomic")
    assert s.cpu_read(addr=A, size=K4)["data"] == [11]


@pytest.mark.parametrize("profile", BOTH)
def test_userptr_prefetch_repins_and_fails_on_vanished_memory(profile: str) -> None:
    # xe_vm.c vm_bind_ioctl_ops_parse(), DRM_GPUVA_OP_PREFETCH on a userptr VMA:
    # xe_vma_userptr_pin_pages(); its -EFAULT (no CPU VMA any more) fails the ioctl.
    w = machine(profile, mirror=False)
    w.mmap(addr=A, size=K64)
    _userptr(w, A, K64)
    assert w.prefetch(vm="vm0", addr=G, range=K64, region=0) == {"ranges_bound": 0}
    w.munmap(addr=A, size=K64)
    assert refused(w.prefetch, vm="vm0", addr=G, range=K64, region=0).errno == errno.EFAULT


# === BO atomics ===============================================================================

def _bo(w: pysvm.World, placement: list[str], size: int = 4 * K4, name: str = "bo0",
        at: int = G) -> None:
    w.bo_create(bo=name, device="gpu0", size=size, placement=placement)
    w.bind(vm="vm0", op="map", addr=at, range=size, bo=name)


@pytest.mark.parametrize("profile", BOTH)
def test_bo_atomic_attribute_lives_in_the_bo(profile: str) -> None:
    # madvise_atomic() also sets bo->attr.atomic_access, and xe_vma_need_vram_for_atomic()
    # reads the BO's attribute for a BO VMA: CPU -> -EACCES. So a second mapping of the same
    # BO, outside the madvised range, refuses GPU atomics too, although its own VMA attribute
    # still reads 0. The second mapping must not have been bound with the atomic-enable PTE
    # bit before the advice (xe_pt.c xe_atomic_for_vram() reads that VMA's own attribute, and
    # the madvise zaps only the VMAs in its range), so its atomic really faults: nothing
    # touches it first, and the BO sits in system memory, where a discrete device without
    # device atomics on system memory never sets the bit (xe_atomic_for_system()).
    w = machine(profile, mirror=False)
    _bo(w, ["system", "vram"])
    w.bind(vm="vm0", op="map", addr=2 * G, range=4 * K4, bo="bo0")
    w.madvise(vm="vm0", addr=G, range=4 * K4, type="atomic", val=3)
    assert [v["attrs"]["atomic"] for v in vmas(w)] == [3, 0]
    e = refused(w.gpu_access, vm="vm0", addr=2 * G, size=K4, op="atomic")
    assert e.errno == errno.EACCES
    # Reads need no VRAM and are unaffected; the refused atomic changed nothing.
    assert w.gpu_access(vm="vm0", addr=2 * G, size=K4, op="read")["data"] == [0]


@pytest.mark.parametrize("profile", BOTH)
def test_bo_atomic_migrates_a_dual_placement_bo(profile: str) -> None:
    # xe_pagefault_handle_vma(): UNDEFINED on a discrete device needs VRAM ->
    # xe_pagefault_begin() -> xe_bo_migrate(bo, vram->placement); the atomic then adds 1.
    w = machine(profile, mirror=False)
    _bo(w, ["system", "vram"])
    w.gpu_access(vm="vm0", addr=G, size=2 * K4, op="write", value=100)
    w.gpu_access(vm="vm0", addr=G, size=K4, op="atomic")
    assert w.gpu_access(vm="vm0", addr=G, size=2 * K4, op="read")["data"] == [101, 100]


@pytest.mark.parametrize("profile", BOTH)
def test_bo_atomic_on_system_only_bo_of_discrete_device_fails(profile: str) -> None:
    # xe_pagefault_handle_vma(): needs_vram == 1 (UNDEFINED, discrete, no smem atomics) ->
    # xe_pagefault_begin(..., need_vram_move=true) -> xe_bo_migrate(bo, XE_PL_VRAM0) ->
    # !xe_bo_can_migrate() (the BO's placements are [system]) -> -EINVAL.
    w = machine(profile, mirror=False)
    _bo(w, ["system"])
    e = refused(w.gpu_access, vm="vm0", addr=G, size=K4, op="atomic")
    assert e.errno == errno.EINVAL


@pytest.mark.parametrize("profile", BOTH)
def test_bo_atomic_device_advice_with_smem_atomics_needs_no_vram(profile: str) -> None:
    # xe_vma_need_vram_for_atomic(): DEVICE -> !has_device_atomics_on_smem == 0, so
    # xe_pagefault_begin() only validates the BO in place: a system-only BO takes the atomic.
    w = machine(profile, mirror=False, smem_atomics=True)
    _bo(w, ["system"])
    w.madvise(vm="vm0", addr=G, range=4 * K4, type="atomic", val=1)
    w.gpu_access(vm="vm0", addr=G, size=K4, op="atomic")
    w.gpu_access(vm="vm0", addr=G, size=K4, op="atomic")
    assert w.gpu_access(vm="vm0", addr=G, size=K4, op="read")["data"] == [2]


@pytest.mark.parametrize("profile", BOTH)
def test_integrated_device_ignores_cpu_atomic_advice(profile: str) -> None:
    # xe_vma_need_vram_for_atomic() returns 0 before looking at the attribute when !IS_DGFX:
    # the -EACCES for DRM_XE_ATOMIC_CPU exists on discrete devices only, for BO and SVM VMAs.
    # But the bind never sets the atomic-enable PTE bit for attribute CPU (xe_pt.c
    # xe_atomic_for_system() and xe_atomic_for_vram() return false for DRM_XE_ATOMIC_CPU),
    # so on an integrated device the atomic faults, the handler finds nothing to do (no
    # EACCES, no migration) and rebinds without the bit, and the job never completes: the
    # model ends the refault loop with ETIME. Without the advice the atomic lands.
    w = machine(profile, discrete=False)
    w.bo_create(bo="bo0", device="gpu0", size=4 * K4)
    w.bind(vm="vm0", op="map", addr=G, range=4 * K4, bo="bo0")
    w.gpu_access(vm="vm0", addr=G, size=K4, op="atomic")
    assert w.gpu_access(vm="vm0", addr=G, size=K4, op="read")["data"] == [1]
    w.madvise(vm="vm0", addr=G, range=4 * K4, type="atomic", val=3)
    assert refused(w.gpu_access, vm="vm0", addr=G, size=K4, op="atomic").errno == errno.ETIME
    w.mmap(addr=A, size=M2)
    w.gpu_access(vm="vm0", addr=A, size=K4, op="atomic")
    assert w.cpu_read(addr=A, size=K4)["data"] == [1]
    w.madvise(vm="vm0", addr=A, range=M2, type="atomic", val=3)
    assert refused(w.gpu_access, vm="vm0", addr=A, size=K4, op="atomic").errno == errno.ETIME
    assert w.cpu_read(addr=A, size=K4)["data"] == [1]
    d = machine(profile)
    d.mmap(addr=A, size=M2)
    d.madvise(vm="vm0", addr=A, range=M2, type="atomic", val=3)
    assert refused(d.gpu_access, vm="vm0", addr=A, size=K4, op="atomic").errno == errno.EACCES


# === killed VMs ===============================================================================

@pytest.mark.parametrize("profile", BOTH)
def test_killed_vm_pages_are_still_evictable(profile: str) -> None:
    # xe_vm_kill() changes nothing in the SVM state: eviction (xe_svm_bo_evict() ->
    # drm_pagemap_evict_to_ram()) works on the VRAM the killed VM's faults filled, and the
    # migration's notifier still zaps the killed VM's ranges (xe_svm_invalidate() skips the
    # PTE work only for a closed VM). The data is intact.
    w = machine(profile)
    w.mmap(addr=A, size=M2)
    w.gpu_access(vm="vm0", addr=A, size=K4, op="write", value=31)
    w.vm_kill(vm="vm0")
    assert w.evict(device="gpu0") == {"pages": 512}
    assert ranges(w) == [(A, M2, "system", False)]
    assert w.devices["gpu0"].vram.used == 0
    assert w.cpu_read(addr=A, size=K4)["data"] == [31]


def test_killed_vm_keeps_its_pagemap_reference_until_closed() -> None:
    # Mainline: the VM's pagemap references are taken in xe_svm_init() and put only in
    # xe_svm_close() (VM close/destroy), not by xe_vm_kill(); so a killed VM keeps the
    # pagemap active until it is destroyed, then it goes to the cache.
    w = machine("7.0")
    w.vm_kill(vm="vm0")
    assert pagemaps(w) == [("gpu0", 1, False)]
    w.vm_destroy(vm="vm0")
    assert pagemaps(w) == [("gpu0", 0, True)]


@pytest.mark.parametrize("profile", BOTH)
def test_killed_vm_svm_fault_and_collector_are_enoent(profile: str) -> None:
    # xe_svm.c xe_svm_garbage_collector() returns -ENOENT for a closed-or-banned VM, both
    # at the top of __xe_svm_handle_pagefault() and for an explicit collector run.
    # The MMU notifier still marks and queues ranges (xe_svm_invalidate() only skips PTE
    # work for a *closed* VM; xe_svm_range_notifier_event_end() queues on UNMAP unless
    # closed), so an unmapped range stays listed, waiting for a collector that cannot run.
    w = machine(profile)
    w.mmap(addr=A, size=4 * M)
    w.gpu_access(vm="vm0", addr=A, size=K4, op="write", value=1)
    w.vm_kill(vm="vm0")
    if profile == "6.18":
        # v6.18 xe_vm_find_vma_by_addr(): the vm->usm.last_fault_vma fast path finds the
        # mirror VMA (xe_vm_find_overlapping_vma() would return NULL for a banned VM), so the
        # fault reaches __xe_svm_handle_pagefault() and its collector's -ENOENT.
        assert refused(w.gpu_access, vm="vm0", addr=A + M2, size=K4,
                       op="read").errno == errno.ENOENT
    w.munmap(addr=A, size=M2)
    assert [(a, r, u) for a, r, _, u in ranges(w)] == [(A, M2, True)]
    assert refused(w.gc, vm="vm0").errno == errno.ENOENT
    assert [(a, r, u) for a, r, _, u in ranges(w)] == [(A, M2, True)]


@pytest.mark.parametrize("profile", BOTH)
def test_killed_vm_leaves_migrated_data_readable_by_the_cpu(profile: str) -> None:
    # xe_vm_kill() only sets XE_VM_FLAG_BANNED and kills the exec queues; device pages stay
    # where they are, and a CPU access faults them home through the pagemap's
    # migrate_to_ram (drm_pagemap.c drm_pagemap_migrate_to_ram()), which never looks at the
    # VM. Destroying the killed VM then works and frees the name (xe_vm_destroy_ioctl()).
    w = machine(profile)
    w.mmap(addr=A, size=M2)
    w.gpu_access(vm="vm0", addr=A, size=2 * K4, op="write", value=77)
    assert ranges(w)[0][2] == "gpu0"
    w.vm_kill(vm="vm0")
    assert w.cpu_read(addr=A, size=2 * K4)["data"] == [77, 77]
    w.vm_destroy(vm="vm0")
    w.vm_create(vm="vm0", device="gpu0", fault_mode=True)
    w.bind(vm="vm0", op="map", addr=0, range=1 << 47, flags=["cpu_addr_mirror"])
    assert w.gpu_access(vm="vm0", addr=A, size=K4, op="read")["data"] == [77]


# === owner groups (mainline: drm_pagemap_acquire_owner()) =====================================

def _three_devices(links: list[tuple[str, str]]) -> pysvm.World:
    w = pysvm.World("7.0")
    for name in ("gpu0", "gpu1", "gpu2"):
        w.device(name=name, vram_mib=64)
    for a, b in links:
        w.link(a=a, b=b)
    return w


def _fault_vm(w: pysvm.World, vm: str, device: str) -> None:
    w.vm_create(vm=vm, device=device, fault_mode=True)
    w.bind(vm=vm, op="map", addr=0, range=1 << 47, flags=["cpu_addr_mirror"])


def test_owner_group_needs_a_link_to_every_member_first_vm_in_the_middle() -> None:
    # drm_pagemap_util.c drm_pagemap_acquire_owner(): a new peer joins the first group (in
    # owner-list order) whose every member has_interconnect() with it, else gets a new owner.
    # xe_svm_init() makes the VM a peer, then xe_svm_get_pagemaps() -> xe_pagemap_create()
    # makes the tile's pagemap a peer. Links gpu0-gpu1 and gpu1-gpu2, not gpu0-gpu2.
    w = _three_devices([("gpu0", "gpu1"), ("gpu1", "gpu2")])
    w.mmap(addr=A, size=M2)
    _fault_vm(w, "vmB", "gpu1")   # group X: vmB, pagemap(gpu1)
    _fault_vm(w, "vmA", "gpu0")   # linked to every gpu1 member -> X; pagemap(gpu0) -> X
    _fault_vm(w, "vmC", "gpu2")   # gpu0 members of X are not linked -> new group Y
    # xe_vm_madvise.c xe_madvise_details_init(): a devmem_fd placement whose
    # pagemap->owner != vm->svm.peer.owner is -ENOLINK, before any VMA is split.
    before = vmas(w, vm="vmC")
    e = refused(w.madvise, vm="vmC", addr=A, range=M2, type="preferred_loc", devmem_fd="gpu1")
    assert e.errno == errno.ENOLINK
    assert vmas(w, vm="vmC") == before
    w.madvise(vm="vmA", addr=A, range=M2, type="preferred_loc", devmem_fd="gpu1")
    w.madvise(vm="vmB", addr=A, range=M2, type="preferred_loc", devmem_fd="gpu0")
    w.madvise(vm="vmC", addr=A, range=M2, type="preferred_loc", devmem_fd="gpu2")


def test_owner_group_membership_depends_on_join_order() -> None:
    # Same links, other order: gpu2's VM first, so gpu1 joins gpu2's group and gpu0 (not
    # linked to gpu2) is alone - now gpu0 -> gpu1 is the refused placement.
    w = _three_devices([("gpu0", "gpu1"), ("gpu1", "gpu2")])
    w.mmap(addr=A, size=M2)
    _fault_vm(w, "vmC", "gpu2")
    _fault_vm(w, "vmB", "gpu1")
    _fault_vm(w, "vmA", "gpu0")
    assert refused(w.madvise, vm="vmA", addr=A, range=M2, type="preferred_loc",
                   devmem_fd="gpu1").errno == errno.ENOLINK
    w.madvise(vm="vmC", addr=A, range=M2, type="preferred_loc", devmem_fd="gpu1")
    w.madvise(vm="vmB", addr=A, range=M2, type="preferred_loc", devmem_fd="gpu2")


def test_618_has_no_owner_check_and_faults_stay_in_system_memory() -> None:
    # v6.18 xe_vm_madvise.c has no xe_madvise_details_init(): a devmem_fd naming another,
    # unlinked device passes madvise_args_are_sane() and is stored. The fault then resolves
    # it with xe_vma_resolve_pagemap() to NULL ("TODO: Support multi-device"): no migration
    # anywhere, the range is served from system memory.
    w = pysvm.World("6.18")
    w.device(name="gpu0", vram_mib=64)
    w.device(name="gpu1", vram_mib=64)
    _fault_vm(w, "vm0", "gpu0")
    w.mmap(addr=A, size=M2)
    w.madvise(vm="vm0", addr=A, range=M2, type="preferred_loc", devmem_fd="gpu1",
              region_instance=0)
    assert [v["attrs"]["devmem_fd"] for v in vmas(w, A, M2)] == ["gpu1"]
    w.gpu_access(vm="vm0", addr=A, size=K4, op="write", value=2)
    assert ranges(w) == [(A, M2, "system", False)]
    assert w.devices["gpu0"].vram.used == w.devices["gpu1"].vram.used == 0


def test_enolink_for_an_unlinked_device_leaves_its_new_pagemap_cached() -> None:
    # Mainline xe_madvise_details_init(): xe_drm_pagemap_from_fd() -> xe_devmem_open() ->
    # xe_pagemap_find_or_create() creates gpu1's pagemap (no VM of gpu1 made one yet);
    # xe_pagemap_create() joins it to the owner list (drm_pagemap_acquire_owner()), where,
    # unlinked to gpu0, it gets an owner of its own. The owner test fails (-ENOLINK) before
    # xe_vm_alloc_madvise_vma(), so no VMA is split, and drm_pagemap_put() leaves the new
    # pagemap idle on gpu1's shrinker list.
    w = pysvm.World("7.0")
    w.device(name="gpu0", vram_mib=64)
    w.device(name="gpu1", vram_mib=64)
    _fault_vm(w, "vm0", "gpu0")
    assert pagemaps(w) == [("gpu0", 1, False)]
    assert refused(w.madvise, vm="vm0", addr=A, range=M2, type="preferred_loc",
                   devmem_fd="gpu1").errno == errno.ENOLINK
    assert len(vmas(w)) == 1
    assert pagemaps(w) == [("gpu0", 1, False), ("gpu1", 0, True)]
    assert w.shrink(device="gpu1") == {"listed": 1, "freed": 1}


# === purgeable BOs (mainline) =================================================================

def _purgeable(w: pysvm.World, at: int = G, val: int = 1, **kw: Any) -> dict[str, Any]:
    return dict(w.madvise(vm="vm0", addr=at, range=4 * K4, type="purgeable_state", val=val,
                          **kw))


def test_purgeable_dontneed_is_per_vma_and_the_bo_follows_its_willneed_vmas() -> None:
    # xe_vm_madvise.c madvise_purgeable(): DONTNEED moves one VMA's state and drops one
    # WILLNEED count of the BO (xe_bo_willneed_put_locked()); it never zaps PTEs
    # (skip_invalidation). The BO is DONTNEED only when no WILLNEED VMA is left, and the
    # fault path tests the BO (xe_pagefault_begin(): xe_bo_madv_is_dontneed(bo)).
    w = machine("7.0", mirror=False)
    _bo(w, ["system"])
    w.bind(vm="vm0", op="map", addr=2 * G, range=4 * K4, bo="bo0")
    assert _purgeable(w) == {"invalidated": []}
    assert [v.get("purgeable") for v in vmas(w)] == ["dontneed", None]
    # The BO is still WILLNEED through its second VMA: even the DONTNEED VMA's fault works.
    w.gpu_access(vm="vm0", addr=G, size=K4, op="write", value=4)
    assert w.gpu_access(vm="vm0", addr=2 * G, size=K4, op="read")["data"] == [4]
    assert _purgeable(w, at=2 * G) == {"invalidated": []}
    assert [v.get("purgeable") for v in vmas(w)] == ["dontneed", "dontneed"]


def test_purgeable_dontneed_bo_refuses_faults_but_not_live_mappings() -> None:
    # xe_pagefault_handle_vma(): a non-atomic fault on a VMA whose GPU mapping is still valid
    # returns before xe_pagefault_begin() - and DONTNEED does not invalidate. A fault that
    # does reach xe_pagefault_begin() on a DONTNEED (or purged) BO of a VM without scratch
    # pages is -EACCES; atomics always get there.
    w = machine("7.0", mirror=False)
    _bo(w, ["system"])
    w.bo_create(bo="cold", device="gpu0", size=4 * K4)
    w.bind(vm="vm0", op="map", addr=2 * G, range=4 * K4, bo="cold")
    w.gpu_access(vm="vm0", addr=G, size=4 * K4, op="write", value=8)   # faulted and bound
    _purgeable(w)
    _purgeable(w, at=2 * G)
    r = w.gpu_access(vm="vm0", addr=G, size=2 * K4, op="read")
    assert r["faults"] == 0 and r["data"] == [8, 8]
    assert refused(w.gpu_access, vm="vm0", addr=G, size=K4, op="atomic").errno == errno.EACCES
    e = refused(w.gpu_access, vm="vm0", addr=2 * G, size=K4, op="read")
    assert e.errno == errno.EACCES and e.details["faults"] == 1


def test_purgeable_retained_is_zero_if_any_bo_in_the_range_was_purged() -> None:
    # madvise_purgeable() walks every VMA of the range: a purged BO is skipped ("once purged,
    # always purged") and sets details->has_purged_bo, the other BOs still change state;
    # xe_madvise_purgeable_retained_to_user() writes retained = !has_purged_bo.
    w = machine("7.0", mirror=False)
    _bo(w, ["system"], name="gone")
    _bo(w, ["system"], name="kept", at=G + 4 * K4)
    w.madvise(vm="vm0", addr=G, range=8 * K4, type="purgeable_state", val=1)
    assert [v.get("purgeable") for v in vmas(w)] == ["dontneed", "dontneed"]
    w.bo_purge(bo="gone")
    out = w.madvise(vm="vm0", addr=G, range=8 * K4, type="purgeable_state", val=0,
                    union_reserved=0x1000)
    assert out == {"invalidated": [], "retained": 0}
    assert [v.get("purgeable") for v in vmas(w)] == ["purged", None]
    assert w.gpu_access(vm="vm0", addr=G + 4 * K4, size=K4, op="read")["data"] == [0]
    assert refused(w.gpu_access, vm="vm0", addr=G, size=K4, op="read").errno == errno.EACCES


def test_purgeable_madvise_skips_non_bo_vmas() -> None:
    # madvise_purgeable(): "Purgeable state applies to BOs only, skip non-BO VMAs" -
    # skip_invalidation, no state, nothing zapped; a GPU mapping over CPU-mirror memory
    # stays valid. madvise_args_are_sane() accepts only WILLNEED (0) and DONTNEED (1).
    w = machine("7.0")
    w.mmap(addr=A, size=M2)
    w.gpu_access(vm="vm0", addr=A, size=K4, op="write", value=1)
    assert refused(w.madvise, vm="vm0", addr=A, range=M2, type="purgeable_state",
                   val=2).errno == errno.EINVAL
    assert w.madvise(vm="vm0", addr=A, range=M2, type="purgeable_state",
                     val=1) == {"invalidated": []}
    assert all("purgeable" not in v for v in vmas(w))
    assert w.gpu_access(vm="vm0", addr=A, size=K4, op="read") == {
        "faults": 0, "retries": 0, "data": [1]}


def test_unbinding_the_last_willneed_vma_makes_the_bo_purgeable() -> None:
    # Mainline: destroying a VMA recomputes the BO's state from the VMAs left
    # (xe_vma_destroy() -> xe_bo_recompute_purgeable_state(), all DONTNEED -> DONTNEED).
    # Then a fault that reaches xe_pagefault_begin() (an atomic always does) is -EACCES; the
    # shrinker may purge it, xe_bo_move_notify() zapping the PTEs, so even a read faults
    # and is -EACCES.
    w = machine("7.0", mirror=False)
    _bo(w, ["system"])
    w.bind(vm="vm0", op="map", addr=2 * G, range=4 * K4, bo="bo0")
    w.gpu_access(vm="vm0", addr=2 * G, size=K4, op="write", value=6)
    _purgeable(w, at=2 * G)
    assert refused(w.bo_purge, bo="bo0").errno == errno.EBUSY   # G's VMA is WILLNEED
    w.bind(vm="vm0", op="unmap", addr=G, range=4 * K4)
    assert refused(w.gpu_access, vm="vm0", addr=2 * G, size=K4,
                   op="atomic").errno == errno.EACCES
    assert w.bo_purge(bo="bo0") == {"zapped": 1}
    e = refused(w.gpu_access, vm="vm0", addr=2 * G, size=K4, op="read")
    assert e.errno == errno.EACCES and e.details["faults"] == 1


# === chunk edges (drm_gpusvm_range_chunk_size(), chunks 2M, 64K, 4K) =========================

@pytest.mark.parametrize("profile", BOTH)
def test_chunk_at_the_start_of_a_cpu_vma(profile: str) -> None:
    # drm_gpusvm_range_chunk_size(): a chunk's aligned span must start at or after
    # vas->vm_start. A CPU VMA starting 4 KiB past a 2 MiB boundary: the first page gets
    # neither the 2 MiB nor the 64 KiB span (both start below the VMA), only 4 KiB; from
    # the next 64 KiB boundary on, 64 KiB chunks fit (pages touched, so
    # drm_gpusvm_check_pages() passes).
    w = machine(profile)
    w.mmap(addr=A + K4, size=M2 - K4)
    w.cpu_write(addr=A + K4, size=M2 - K4, value=1)
    w.gpu_access(vm="vm0", addr=A + K4, size=K4, op="read")
    w.gpu_access(vm="vm0", addr=A + K64 + K4, size=K4, op="read")
    assert [(a, r) for a, r, _, _ in ranges(w)] == [(A + K4, K4), (A + K64, K64)]


@pytest.mark.parametrize("profile", BOTH)
def test_chunk_threshold_is_zero_on_an_integrated_device(profile: str) -> None:
    # __xe_svm_handle_pagefault(): check_pages_threshold = devmem_possible ? SZ_64K : 0, so
    # without VRAM the 64 KiB chunk is taken without looking at the CPU pages.
    w = machine(profile, discrete=False)
    w.mmap(addr=A, size=M2 + K64)
    w.gpu_access(vm="vm0", addr=A + M2 + 2 * K4, size=K4, op="read")
    assert ranges(w) == [(A + M2, K64, "system", False)]


@pytest.mark.parametrize("profile", BOTH)
def test_chunk_bounded_by_the_gpu_vma(profile: str) -> None:
    # xe_svm_range_find_or_insert() passes xe_vma_start()/xe_vma_end() of the CPU-mirror VMA
    # as gpuva_start/end. A mirror bind of [A, A + 1 MiB + 64 KiB) over a 4 MiB CPU mapping:
    # no 2 MiB chunk fits; 64 KiB chunks do (the CPU pages are touched); past the VMA's end
    # there is no GPU VMA at all (xe_vm_find_vma_by_addr() -> -EINVAL).
    w = machine(profile, mirror=False)
    w.bind(vm="vm0", op="map", addr=A, range=M + K64, flags=["cpu_addr_mirror"])
    w.mmap(addr=A, size=4 * M)
    w.cpu_write(addr=A, size=4 * M, value=1)
    w.gpu_access(vm="vm0", addr=A + M + K4, size=K4, op="read")
    w.gpu_access(vm="vm0", addr=A, size=K4, op="read")
    assert [(a, r) for a, r, _, _ in ranges(w)] == [(A, K64), (A + M, K64)]
    assert refused(w.gpu_access, vm="vm0", addr=A + M + K64, size=K4,
                   op="read").errno == errno.EINVAL


@pytest.mark.parametrize("profile", BOTH)
def test_chunk_bounded_by_a_madvise_split(profile: str) -> None:
    # xe_vm_alloc_madvise_vma() splits the mirror VMA at the madvise range's ends; faults on
    # either side see the smaller GPU VMA in drm_gpusvm_range_chunk_size().
    w = machine(profile)
    w.mmap(addr=A, size=M2)
    w.cpu_write(addr=A, size=M2, value=1)
    w.madvise(vm="vm0", addr=A + M, range=M, type="atomic", val=2)
    w.gpu_access(vm="vm0", addr=A + M - K4, size=K4, op="read")
    w.gpu_access(vm="vm0", addr=A + M, size=K4, op="read")
    assert [(a, r) for a, r, _, _ in ranges(w)] == [(A + M - K64, K64), (A + M, K64)]


@pytest.mark.parametrize("profile", BOTH)
def test_notifier_edges_never_cut_a_chunk(profile: str) -> None:
    # drm_gpusvm_notifier_alloc(): notifiers span ALIGN_DOWN(addr, notifier_size) with the
    # default xe_modparam.svm_notifier_size of 512 MiB; every chunk is naturally aligned and
    # no larger than 2 MiB, so the two 2 MiB chunks either side of a 512 MiB boundary both
    # fit their own notifier.
    edge = 3 << 29
    w = machine(profile)
    w.mmap(addr=edge - M2, size=2 * M2)
    w.gpu_access(vm="vm0", addr=edge - K4, size=2 * K4, op="write", value=1)
    assert [(a, r) for a, r, _, _ in ranges(w)] == [(edge - M2, M2), (edge, M2)]


@pytest.mark.parametrize("profile", BOTH)
def test_prefetch_takes_64k_chunks_without_checking_cpu_pages(profile: str) -> None:
    # vm_bind_ioctl_ops_create() builds the prefetch drm_gpusvm_ctx with only read_only and
    # devmem_possible: check_pages_threshold stays 0, so untouched memory in a 192 KiB CPU
    # VMA gets 64 KiB chunks (a fault there would get 4 KiB ones, see above).
    w = machine(profile)
    w.mmap(addr=A, size=3 * K64)
    assert w.prefetch(vm="vm0", addr=A, range=3 * K64, region="vram")["ranges_bound"] == 3
    assert ranges(w) == [(A + i * K64, K64, "gpu0", False) for i in range(3)]


# === eviction =================================================================================

@pytest.mark.parametrize("profile", BOTH)
def test_evict_moves_every_page_home_and_keeps_the_data(profile: str) -> None:
    # xe_svm_bo_evict() -> drm_pagemap_evict_to_ram(): all pages of each VRAM allocation go
    # back to system memory (copy_to_ram). Two 2 MiB ranges = 1024 pages; a second evict
    # finds nothing.
    w = machine(profile)
    w.mmap(addr=A, size=4 * M)
    w.cpu_write(addr=A, size=4 * M, value=12)
    w.gpu_access(vm="vm0", addr=A, size=K4, op="write", value=13)
    w.gpu_access(vm="vm0", addr=A + M2, size=K4, op="read")
    assert [loc for _, _, loc, _ in ranges(w)] == ["gpu0", "gpu0"]
    assert w.evict(device="gpu0") == {"pages": 1024}
    assert [loc for _, _, loc, _ in ranges(w)] == ["system", "system"]
    assert w.devices["gpu0"].vram.used == 0
    assert w.cpu_read(addr=A, size=2 * K4)["data"] == [13, 12]
    assert w.evict(device="gpu0") == {"pages": 0}


@pytest.mark.parametrize("profile", BOTH)
def test_after_eviction_the_next_gpu_access_faults_and_migrates_again(profile: str) -> None:
    # Eviction's migration runs the MMU notifier (not an UNMAP): xe_svm_invalidate() zaps the
    # range, which stays in the tree. The next access finds it invalid
    # (xe_svm_range_is_valid()), and xe_svm_range_needs_migrate_to_vram() (preferred
    # location: the faulting device) migrates it back; no collector work, no new range.
    w = machine(profile)
    w.mmap(addr=A, size=M2)
    w.gpu_access(vm="vm0", addr=A, size=K4, op="write", value=5)
    w.evict(device="gpu0")
    r = w.gpu_access(vm="vm0", addr=A, size=K4, op="read")
    assert r["faults"] == 1 and r["data"] == [5]
    assert ranges(w) == [(A, M2, "gpu0", False)]
    assert w.gpu_access(vm="vm0", addr=A, size=K4, op="read")["faults"] == 0


@pytest.mark.parametrize("profile", BOTH)
def test_evict_is_per_device_and_system_advice_keeps_pages_home(profile: str) -> None:
    # xe_svm_bo_evict() works on one device's VRAM BOs: evicting gpu1 leaves gpu0's pages.
    # With preferred_loc DEFAULT_SYSTEM, xe_vma_resolve_pagemap() gives NULL and the fault
    # after eviction binds system pages (no migration).
    w = pysvm.World(profile)
    w.device(name="gpu0", vram_mib=64)
    w.device(name="gpu1", vram_mib=64)
    _fault_vm(w, "vm0", "gpu0")
    w.mmap(addr=A, size=M2)
    w.gpu_access(vm="vm0", addr=A, size=K4, op="write", value=9)
    assert w.evict(device="gpu1") == {"pages": 0}
    assert ranges(w) == [(A, M2, "gpu0", False)]
    w.madvise(vm="vm0", addr=A, range=M2, type="preferred_loc", devmem_fd=-1)
    assert w.evict(device="gpu0") == {"pages": 512}
    assert w.gpu_access(vm="vm0", addr=A, size=K4, op="read")["data"] == [9]
    assert ranges(w) == [(A, M2, "system", False)]


def test_two_vms_share_the_device_pages_of_one_process() -> None:
    # Two fault-mode VMs of one process mirror the same CPU pages. The second VM's fault
    # tries to migrate: drm_pagemap.c drm_pagemap_migrate_to_devmem() selects only system
    # pages (MIGRATE_VMA_SELECT_SYSTEM), finds none (migrate.cpages == 0) and fails -EFAULT;
    # v6.18 __xe_svm_handle_pagefault() retries without migration (migrate_try_count spent)
    # and drm_gpusvm_range_get_pages() maps the device pages it already owns (same
    # device_private_page_owner). One copy of the data, in VRAM, for both.
    w = pysvm.World("6.18")
    w.device(name="gpu0", vram_mib=64)
    _fault_vm(w, "v1", "gpu0")
    _fault_vm(w, "v2", "gpu0")
    w.mmap(addr=A, size=M2)
    w.gpu_access(vm="v1", addr=A, size=K4, op="write", value=4)
    assert w.gpu_access(vm="v2", addr=A, size=K4, op="read") == {
        "faults": 1, "retries": 1, "data": [4]}
    assert ranges(w, "v1") == ranges(w, "v2") == [(A, M2, "gpu0", False)]
    assert w.devices["gpu0"].vram.used == M2
    # drm_pagemap_evict_to_ram() moves the one allocation: 512 pages, both VMs' ranges are
    # invalidated by the migration's notifier.
    assert w.evict(device="gpu0") == {"pages": 512}
    assert ranges(w, "v1") == ranges(w, "v2") == [(A, M2, "system", False)]


@pytest.mark.parametrize("profile", BOTH)
def test_vram_pressure_evicts_the_oldest_allocation(profile: str) -> None:
    # Each migrated range is one VRAM BO (xe_drm_pagemap_populate_mm() ->
    # xe_bo_create_locked(), no VM, so no bulk-move LRU); when the next allocation does not
    # fit, TTM evicts from the head of the VRAM manager's LRU - the oldest allocation - and
    # xe_bo_move() hands an SVM BO to xe_svm_bo_evict() -> drm_pagemap_evict_to_ram(). GPU
    # accesses do not touch the BO LRU. 4 MiB of VRAM hold two 2 MiB ranges.
    w = machine(profile, vram_mib=4)
    w.mmap(addr=A, size=3 * M2)
    for i in range(3):
        w.gpu_access(vm="vm0", addr=A + i * M2, size=K4, op="write", value=i + 1)
    assert [loc for _, _, loc, _ in ranges(w)] == ["system", "gpu0", "gpu0"]
    w.gpu_access(vm="vm0", addr=A + M2, size=K4, op="read")     # no LRU bump
    # The first range faults back in and evicts the now-oldest, the second.
    r = w.gpu_access(vm="vm0", addr=A, size=K4, op="read")
    assert r["faults"] == 1 and r["data"] == [1]
    assert [loc for _, _, loc, _ in ranges(w)] == ["gpu0", "system", "gpu0"]
    assert w.cpu_read(addr=A + M2, size=K4)["data"] == [2]


# === garbage collection =======================================================================

@pytest.mark.parametrize("profile", BOTH)
def test_partial_munmap_collects_the_whole_range(profile: str) -> None:
    # xe_svm_invalidate() -> xe_svm_range_notifier_event_end(): an UNMAP anywhere in a range
    # marks the whole range unmapped (drm_gpusvm_range_set_unmapped()) and queues it;
    # __xe_svm_garbage_collector() unbinds and removes the whole range. The still-mapped
    # pages keep their data and get new, smaller ranges on the next fault (the CPU VMAs are
    # now [A, A + 1 MiB) and [A + 1 MiB + 4 KiB, A + 2 MiB)).
    w = machine(profile)
    w.mmap(addr=A, size=M2)
    w.cpu_write(addr=A, size=M2, value=21)
    w.gpu_access(vm="vm0", addr=A, size=K4, op="read")
    w.munmap(addr=A + M, size=K4)
    assert [(a, r, u) for a, r, _, u in ranges(w)] == [(A, M2, True)]
    w.gc(vm="vm0")
    assert ranges(w) == []
    r = w.gpu_access(vm="vm0", addr=A + M + K64, size=K4, op="read")
    assert r["faults"] == 1 and r["data"] == [21]
    [(addr, size, _, unmapped)] = ranges(w)
    assert size < M2 and addr >= A + M + K4 and not unmapped


@pytest.mark.parametrize("profile", BOTH)
def test_a_fault_elsewhere_runs_the_collector_first(profile: str) -> None:
    # __xe_svm_handle_pagefault(): "Always process UNMAPs first" - xe_svm_garbage_collector()
    # runs at the top of every fault, whatever address faults.
    w = machine(profile)
    w.mmap(addr=A, size=4 * M)
    w.gpu_access(vm="vm0", addr=A, size=K4, op="read")
    w.munmap(addr=A, size=M2)
    assert [(a, r, u) for a, r, _, u in ranges(w)] == [(A, M2, True)]
    w.gpu_access(vm="vm0", addr=A + M2, size=K4, op="read")
    assert [(a, r, u) for a, r, _, u in ranges(w)] == [(A + M2, M2, False)]


@pytest.mark.parametrize("profile", BOTH)
def test_remap_before_collection_reads_fresh_memory(profile: str) -> None:
    # munmap + mmap of the same addresses before any collector run: the old range is queued
    # (unmapped), the fault's collector pass removes it, and the new range is built over the
    # new anonymous memory (zero-filled), not the old pages.
    w = machine(profile)
    w.mmap(addr=A, size=M2)
    w.gpu_access(vm="vm0", addr=A, size=K4, op="write", value=99)
    w.munmap(addr=A, size=M2)
    w.mmap(addr=A, size=M2)
    r = w.gpu_access(vm="vm0", addr=A, size=K4, op="read")
    assert r["faults"] == 1 and r["data"] == [0]
    assert [(a, r, u) for a, r, _, u in ranges(w)] == [(A, M2, False)]


@pytest.mark.parametrize("profile", BOTH)
def test_non_unmap_invalidation_is_not_collected(profile: str) -> None:
    # xe_svm_range_notifier_event_end() queues for the collector only on MMU_NOTIFY_UNMAP;
    # other events zap the PTEs (xe_svm_range_notifier_event_begin()) and leave the range.
    w = machine(profile)
    w.mmap(addr=A, size=M2)
    w.gpu_access(vm="vm0", addr=A, size=K4, op="write", value=3)
    w.invalidate(addr=A, size=K4, event="protection_vma")
    assert [(a, r, u) for a, r, _, u in ranges(w)] == [(A, M2, False)]
    assert w.gc(vm="vm0") == {"eagain": False}
    assert [(a, r, u) for a, r, _, u in ranges(w)] == [(A, M2, False)]
    r = w.gpu_access(vm="vm0", addr=A, size=K4, op="read")
    assert r["faults"] == 1 and r["data"] == [3]
    assert ranges(w) == [(A, M2, "gpu0", False)]
    if profile == "6.18":
        # The notifier's drm_gpusvm_range_unmap_pages() cleared has_devmem_pages, so v6.18
        # __xe_svm_handle_pagefault() tries a migration; drm_pagemap_migrate_to_devmem()
        # finds only device pages (migrate.cpages == 0, -EFAULT) and the handler retries
        # once without migrating: one retry.
        assert r["retries"] == 1


def test_618_collector_keeps_advice_without_autoreset() -> None:
    # v6.18 xe_svm_garbage_collector() -> xe_svm_range_set_default_attr(): a VMA not bound
    # with DRM_XE_VM_BIND_FLAG_MADVISE_AUTORESET keeps its attributes after its range is
    # collected, and nothing is split, so the collector returns 0 (no -EAGAIN).
    w = machine("6.18")
    w.mmap(addr=A, size=M2)
    w.gpu_access(vm="vm0", addr=A, size=K4, op="read")
    w.madvise(vm="vm0", addr=A, range=M2, type="atomic", val=2)
    w.munmap(addr=A, size=M2)
    assert w.gc(vm="vm0") == {"eagain": False}
    assert [v["attrs"]["atomic"] for v in vmas(w)] == [0, 2, 0]


def test_618_accepts_the_autoreset_bind_flag() -> None:
    # vm_bind_ioctl_check_args(): MADVISE_AUTORESET is in SUPPORTED_FLAGS and only needs
    # is_cpu_addr_mirror && op == MAP; vm_bind_ioctl_ops_create() turns it into
    # XE_VMA_MADV_AUTORESET, which xe_svm_range_set_default_attr() tests.
    w = machine("6.18", mirror=False)
    w.bind(vm="vm0", op="map", addr=A, range=M2, flags=["cpu_addr_mirror", "autoreset"])
    assert [sorted(v["flags"]) for v in vmas(w)] == [["autoreset", "cpu_addr_mirror"]]


# === pagemap cache (mainline drm_pagemap_util.c, xe_svm.c xe_pagemap_find_or_create()) ======

def test_pagemap_exists_only_while_fault_mode_vms_hold_it() -> None:
    # xe_pagemap_cache_create() only makes an empty cache at probe; xe_svm_init() (fault mode
    # only) takes a reference per VRAM tile through xe_svm_get_pagemaps() ->
    # xe_pagemap_find_or_create(); xe_svm_close() puts it. At refcount 0
    # drm_pagemap_shrinker_add() parks it on the shrinker list (cached) while the device
    # lives; drm_pagemap_shrinker_scan() destroys it.
    w = machine("7.0", mirror=False, fault_mode=False)
    assert pagemaps(w) == []
    w.vm_create(vm="f", device="gpu0", fault_mode=True)
    assert pagemaps(w) == [("gpu0", 1, False)]
    w.vm_destroy(vm="f")
    assert pagemaps(w) == [("gpu0", 0, True)]
    # drm_pagemap_shrinker_scan() calls drm_pagemap_destroy(dpagemap, true): from reclaim,
    # xe_pagemap_destroy() queues xe_pagemap_destroy_work() instead of freeing in place.
    assert w.shrink(device="gpu0") == {"listed": 1, "freed": 1}
    assert pagemaps(w) == [("gpu0", 0, False)]
    assert w.shrink(device="gpu0") == {"listed": 0, "freed": 0}
    assert w.run_workers()["pagemaps_destroyed"] == 1
    assert pagemaps(w) == []


def test_pagemap_is_shared_and_revived_from_the_cache() -> None:
    # drm_pagemap_get_from_cache(): an active pagemap is returned with a new reference
    # (drm_pagemap_get_unless_zero()); an inactive one is taken off the shrinker list
    # (drm_pagemap_shrinker_cancel()) and reused, so no second pagemap is created.
    w = machine("7.0", mirror=False)
    w.vm_create(vm="vm1", device="gpu0", fault_mode=True)
    assert pagemaps(w) == [("gpu0", 2, False)]
    w.vm_destroy(vm="vm1")
    assert pagemaps(w) == [("gpu0", 1, False)]
    assert w.shrink(device="gpu0") == {"listed": 0, "freed": 0}
    w.vm_destroy(vm="vm0")
    assert pagemaps(w) == [("gpu0", 0, True)]
    created = w.summary()["pagemaps_created"]
    w.vm_create(vm="vm2", device="gpu0", fault_mode=True)
    assert pagemaps(w) == [("gpu0", 1, False)]
    assert w.summary()["pagemaps_created"] == created
    assert w.shrink(device="gpu0") == {"listed": 0, "freed": 0}


def test_pagemap_shrinker_and_cache_are_per_device() -> None:
    # xe_pagemap_shrinker_create() registers one drm_pagemap_shrinker per device and each
    # tile has its own drm_pagemap_cache: shrinking gpu1 cannot free gpu0's cached pagemap.
    # Device removal runs drm_pagemap_cache_fini(), which destroys an inactive pagemap.
    w = pysvm.World("7.0")
    w.device(name="gpu0", vram_mib=64)
    w.device(name="gpu1", vram_mib=64)
    w.vm_create(vm="a", device="gpu0", fault_mode=True)
    w.vm_create(vm="b", device="gpu1", fault_mode=True)
    w.vm_destroy(vm="a")
    w.vm_destroy(vm="b")
    assert pagemaps(w) == [("gpu0", 0, True), ("gpu1", 0, True)]
    assert w.shrink(device="gpu1", nr_to_scan=1) == {"listed": 1, "freed": 1}
    assert w.run_workers()["pagemaps_destroyed"] == 1
    assert pagemaps(w) == [("gpu0", 0, True)]
    # drm_pagemap_cache_fini() cancels the shrinker entry and calls
    # drm_pagemap_destroy(dpagemap, false): destroyed at once, no deferred work.
    w.unbind_device(device="gpu0")
    assert pagemaps(w) == []


def test_pagemap_opened_by_a_refused_madvise_is_left_cached() -> None:
    # xe_madvise_details_init(): xe_drm_pagemap_from_fd() -> xe_devmem_open() ->
    # xe_pagemap_find_or_create() creates the pagemap before the owner test; on -ENOLINK
    # drm_pagemap_put() drops the only reference, so the new pagemap goes to the cache.
    w = machine("7.0", mirror=False, fault_mode=False)
    w.bo_create(bo="bo0", device="gpu0", size=M2)
    w.bind(vm="vm0", op="map", addr=G, range=M2, bo="bo0")
    assert pagemaps(w) == []
    assert refused(w.madvise, vm="vm0", addr=G, range=M2, type="preferred_loc",
                   devmem_fd="gpu0").errno == errno.ENOLINK
    assert pagemaps(w) == [("gpu0", 0, True)]
    # A region instance the device does not have is -ENOENT from xe_devmem_open(), before
    # any pagemap is looked up.
    assert refused(w.madvise, vm="vm0", addr=G, range=M2, type="preferred_loc",
                   devmem_fd="gpu0", region_instance=2).errno == errno.ENOENT


def test_device_pages_keep_the_pagemap_active_after_their_vm_is_gone() -> None:
    # Mainline drm_pagemap_zdd_alloc() takes a drm_pagemap reference for every migrated
    # allocation (zdd->dpagemap = drm_pagemap_get()), dropped in drm_pagemap_zdd_destroy()
    # when the last device page is freed. Destroying the VM (xe_svm_close() puts its own
    # reference) leaves the pagemap active while its pages are in VRAM; the CPU touching
    # them (drm_pagemap_migrate_to_ram()) frees them, and the idle pagemap is cached.
    w = machine("7.0")
    w.mmap(addr=A, size=M2)
    w.gpu_access(vm="vm0", addr=A, size=K4, op="write", value=8)
    w.vm_destroy(vm="vm0")
    assert pagemaps(w) == [("gpu0", 1, False)]
    assert w.cpu_read(addr=A, size=K4)["data"] == [8]
    assert pagemaps(w) == [("gpu0", 0, True)]
    assert w.devices["gpu0"].vram.used == 0


# === madvise invalidation and range boundaries ================================================

@pytest.mark.parametrize("profile", BOTH)
def test_madvise_of_an_unchanged_attribute_does_not_invalidate(profile: str) -> None:
    # madvise_atomic(): a VMA whose attribute already has the value gets skip_invalidation,
    # and xe_zap_ptes_in_madvise_range() leaves its ranges' PTEs alone: no new fault. A real
    # change zaps the ranges (xe_svm_ranges_zap_ptes_in_range()): the next access faults.
    w = machine(profile)
    w.mmap(addr=A, size=M2)
    w.cpu_write(addr=A, size=M2, value=6)
    w.gpu_access(vm="vm0", addr=A, size=K4, op="read")
    assert w.madvise(vm="vm0", addr=A, range=M2, type="atomic",
                     val=2) == {"invalidated": [[A, M2]]}
    assert w.gpu_access(vm="vm0", addr=A, size=K4, op="read")["faults"] == 1
    assert w.madvise(vm="vm0", addr=A, range=M2, type="atomic", val=2) == {"invalidated": []}
    assert w.gpu_access(vm="vm0", addr=A, size=K4, op="read")["faults"] == 0


@pytest.mark.parametrize("profile", BOTH)
def test_madvise_edge_through_a_range_removes_it(profile: str) -> None:
    # xe_vm_alloc_madvise_vma() -> vm_bind_ioctl_ops_parse(), REMAP of a CPU-mirror VMA with
    # XE_VMA_OPS_FLAG_MADVISE: xe_svm_unmap_address_range() removes every range the new VMA
    # edges cut (evicting a VRAM range to system memory first, drm_gpusvm_range_evict()),
    # at once, without the collector. The data survives; the next fault builds a chunk that
    # fits the new, smaller VMA.
    w = machine(profile)
    w.mmap(addr=A, size=4 * M)
    w.cpu_write(addr=A, size=4 * M, value=6)
    w.gpu_access(vm="vm0", addr=A, size=K4, op="read")
    assert ranges(w) == [(A, M2, "gpu0", False)]
    w.madvise(vm="vm0", addr=A + M, range=M2, type="pat", val=COHERENT_PAT)
    assert ranges(w) == []
    assert w.devices["gpu0"].vram.used == 0
    assert w.cpu_read(addr=A, size=K4)["data"] == [6]
    assert w.gpu_access(vm="vm0", addr=A, size=K4, op="read")["data"] == [6]
    assert [(a, r) for a, r, _, _ in ranges(w)] == [(A, K64)]


@pytest.mark.parametrize("profile", BOTH)
def test_madvise_preferred_loc_skips_bo_vmas(profile: str) -> None:
    # madvise_preferred_mem_loc(): "TODO: Extend attributes to bo based vmas" - a VMA that is
    # not a CPU-address mirror is skipped (skip_invalidation, attribute unchanged).
    w = machine(profile, mirror=False)
    _bo(w, ["system", "vram"])
    assert w.madvise(vm="vm0", addr=G, range=4 * K4, type="preferred_loc",
                     devmem_fd=-1) == {"invalidated": []}
    assert [v["attrs"]["devmem_fd"] for v in vmas(w)] == [0]


def test_devmem_fd_that_is_no_file() -> None:
    # v6.18 madvise_args_are_sane() only refuses fd < DRM_XE_PREFERRED_LOC_DEFAULT_SYSTEM;
    # nothing looks the number up, so any fd is stored (and resolves to system memory).
    # Mainline xe_madvise_details_init() -> xe_drm_pagemap_from_fd(): fget() fails ->
    # -ENOENT, before any split; and devmem_fd <= 0 with a region_instance is -EINVAL
    # (madvise_args_are_sane(); in 6.18 that u16 is the pad, also -EINVAL).
    old = machine("6.18")
    old.madvise(vm="vm0", addr=A, range=M2, type="preferred_loc", devmem_fd=999,
                region_instance=0)
    assert [v["attrs"]["devmem_fd"] for v in vmas(old, A, M2)] == [999]
    new = machine("7.0")
    before = vmas(new)
    assert refused(new.madvise, vm="vm0", addr=A, range=M2, type="preferred_loc",
                   devmem_fd=999, region_instance=1).errno == errno.ENOENT
    assert vmas(new) == before
    for w in (old, new):
        assert refused(w.madvise, vm="vm0", addr=A, range=M2, type="preferred_loc",
                       devmem_fd=0, region_instance=1).errno == errno.EINVAL


def test_madvised_pagemap_is_referenced_by_the_vma() -> None:
    # Mainline madvise_preferred_mem_loc(): a changed VMA drops its old pagemap reference and
    # takes one on the madvised drm_pagemap (drm_pagemap_get()); the ioctl's own reference
    # is dropped in xe_madvise_details_fini(). Advising system memory drops it again.
    w = machine("7.0")
    assert pagemaps(w) == [("gpu0", 1, False)]
    w.madvise(vm="vm0", addr=A, range=M2, type="preferred_loc", devmem_fd="gpu0")
    assert pagemaps(w) == [("gpu0", 2, False)]
    w.madvise(vm="vm0", addr=A, range=M2, type="preferred_loc", devmem_fd=-1)
    assert pagemaps(w) == [("gpu0", 1, False)]


@pytest.mark.parametrize("profile", BOTH)
def test_an_atomic_overrides_a_system_memory_preference(profile: str) -> None:
    # __xe_svm_handle_pagefault(): with DEFAULT_SYSTEM advice xe_vma_resolve_pagemap() is
    # NULL, so a read binds system pages. An atomic on a discrete device (UNDEFINED atomic
    # attribute, xe_vma_need_vram_for_atomic() == 1) sets ctx.devmem_only: the bound system
    # range is not valid for it (xe_svm_range_is_valid(..., devmem_only)), and
    # xe_svm_range_needs_migrate_to_vram(range, vma, !!dpagemap || devmem_only) migrates it
    # to the local tile anyway (xe_svm_alloc_vram()).
    w = machine(profile)
    w.mmap(addr=A, size=2 * M2)
    w.madvise(vm="vm0", addr=A, range=M2, type="preferred_loc", devmem_fd=-1)
    w.gpu_access(vm="vm0", addr=A, size=K4, op="read")
    assert ranges(w) == [(A, M2, "system", False)]
    assert w.gpu_access(vm="vm0", addr=A, size=K4, op="atomic") == {"faults": 1, "retries": 0}
    assert ranges(w) == [(A, M2, "gpu0", False)]
    assert w.cpu_read(addr=A, size=K4)["data"] == [1]
    # migration_policy ONLY_SYSTEM_PAGES over pages that are all in system memory changes
    # nothing ("Till multi-device support is not added migration_policy is of no use",
    # madvise_preferred_mem_loc()): the read fault migrates as usual.
    w.madvise(vm="vm0", addr=A + M2, range=M2, type="preferred_loc", devmem_fd=0,
              migration_policy=1)
    w.gpu_access(vm="vm0", addr=A + M2, size=K4, op="read")
    assert ranges(w)[-1] == (A + M2, M2, "gpu0", False)
