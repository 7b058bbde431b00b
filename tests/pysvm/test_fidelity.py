"""Regression tests for the model's kernel divergences fixed for issue 14 (prefetch of
CPU-mirror and BO VMAs, userptr VMAs, the BO atomic check, killed VMs). Each test names
the kernel function whose behaviour it pins down."""

from __future__ import annotations

import errno

import pytest

from pysvm import World, XeError

K = 4096
M = 1 << 20
BUF = 0x40000000


def _world(profile: str = "6.18", vram_mib: int = 64) -> World:
    w = World(profile)
    w.device(name="gpu0", vram_mib=vram_mib)
    w.vm_create(vm="vm0", device="gpu0", fault_mode=True)
    return w


def _mirror(w: World, addr: int = BUF, size: int = 4 * M) -> None:
    w.bind(vm="vm0", op="map", addr=addr, range=size, flags=["cpu_addr_mirror"])


def _errno(fn: object, **kw: object) -> int:
    with pytest.raises(XeError) as ei:
        fn(**kw)  # type: ignore[operator]
    assert ei.value.errno is not None
    return ei.value.errno


def _exc(fn: object, **kw: object) -> XeError:
    with pytest.raises(XeError) as ei:
        fn(**kw)  # type: ignore[operator]
    return ei.value


# -- PREFETCH (xe_vm.c vm_bind_ioctl_ops_create, prefetch_ranges, xe_vm_bind_ioctl) ----

@pytest.mark.parametrize("profile", ["6.18", "7.0"])
def test_prefetch_skips_a_hole_in_the_cpu_mapping(profile: str) -> None:
    # xe_svm_range_find_or_insert() -ENOENT -> xe_svm_find_vma_start(): continue at the
    # next CPU VMA of the window
    w = _world(profile)
    _mirror(w)
    w.mmap(addr=BUF, size=64 * 1024)
    w.mmap(addr=BUF + 128 * 1024, size=64 * 1024)
    out = w.prefetch(vm="vm0", addr=BUF, range=256 * 1024, region="vram")
    assert out["ranges_bound"] == 2
    assert [(r["addr"], r["location"]) for r in w.ranges(vm="vm0")["ranges"]] == [
        (BUF, "gpu0"), (BUF + 128 * 1024, "gpu0")]
    assert w.gpu_access(vm="vm0", addr=BUF + 128 * 1024, size=K, op="read")["faults"] == 0


def test_prefetch_without_any_cpu_mapping_is_zero_and_does_nothing() -> None:
    # xe_svm_find_vma_start() == ULONG_MAX: no range, ops_execute -ENODATA -> 0
    w = _world()
    _mirror(w)
    assert w.prefetch(vm="vm0", addr=BUF, range=M, region="vram") == {"ranges_bound": 0}
    assert w.ranges(vm="vm0")["ranges"] == []


def test_prefetch_vram_failure_is_zero_and_leaves_the_range_unpopulated() -> None:
    # prefetch_ranges(): xe_svm_alloc_vram() fails -> -ENODATA; xe_vm_bind_ioctl() skips
    # the unwind and returns 0
    w = _world(vram_mib=1)
    _mirror(w)
    w.mmap(addr=BUF, size=4 * M)
    w.cpu_write(addr=BUF, size=K, value=5)
    out = w.prefetch(vm="vm0", addr=BUF, range=4 * M, region="vram")
    assert out == {"ranges_bound": 0}
    assert w.summary()["prefetch_enodata"] == 1
    assert all(r["location"] != "gpu0" for r in w.ranges(vm="vm0")["ranges"])
    # not bound: the next GPU read faults once and is served
    out = w.gpu_access(vm="vm0", addr=BUF, size=K, op="read")
    assert out["faults"] == 1 and out["data"] == [5]


def test_prefetch_past_the_vm_end_is_einval_after_the_killed_check() -> None:
    # xe_vm_bind_ioctl(): range > vm->size || addr > vm->size - range -> EINVAL
    w = _world()
    size = 1 << 48
    assert _errno(w.prefetch, vm="vm0", addr=size - M, range=2 * M, region="system") \
        == errno.EINVAL
    w.vm_kill(vm="vm0")
    assert _errno(w.prefetch, vm="vm0", addr=size - M, range=2 * M, region="system") \
        == errno.ENOENT


def test_prefetch_region_is_checked_before_the_killed_vm() -> None:
    # vm_bind_ioctl_check_args(): the region must be in mem_region_mask, before the
    # closed/banned test of xe_vm_bind_ioctl()
    w = World()
    w.device(name="igpu", discrete=False)
    w.vm_create(vm="vm0", device="igpu", fault_mode=True)
    w.vm_kill(vm="vm0")
    assert _errno(w.prefetch, vm="vm0", addr=BUF, range=M, region="vram") == errno.EINVAL


def test_prefetch_of_a_bo_vma_migrates_the_bo() -> None:
    # op_lock_and_prep() DRM_GPUVA_OP_PREFETCH -> xe_bo_migrate(); not EINVAL
    w = _world()
    w.bo_create(bo="b", device="gpu0", size=M, placement=["system", "vram"])
    w.bind(vm="vm0", op="map", addr=BUF, range=M, bo="b")
    assert not w.bos["b"].is_vram
    w.prefetch(vm="vm0", addr=BUF, range=M, region="vram")
    assert w.bos["b"].is_vram
    assert w.gpu_access(vm="vm0", addr=BUF, size=K, op="read")["faults"] == 0
    w.bo_create(bo="s", device="gpu0", size=M, placement=["system"])
    w.bind(vm="vm0", op="map", addr=BUF + M, range=M, bo="s")
    assert _errno(w.prefetch, vm="vm0", addr=BUF + M, range=M, region="vram") == errno.EINVAL


# -- owner groups (xe_svm_init, xe_madvise_details_init) ------------------------------------

def test_nonfault_vm_preferred_loc_naming_any_vram_is_enolink() -> None:
    # xe_svm_init() joins vm->svm.peer to the owner list only for fault-mode VMs; the
    # madvise owner check in xe_madvise_details_init() then fails for every device
    # pagemap, the VM's own device's included
    w = World("7.0")
    w.device(name="gpu0", vram_mib=64)
    w.vm_create(vm="nf", device="gpu0")
    w.bo_create(bo="b", device="gpu0", size=M)
    w.bind(vm="nf", op="map", addr=BUF, range=M, bo="b")
    assert _errno(w.madvise, vm="nf", addr=BUF, range=M, type="preferred_loc",
                  devmem_fd="gpu0") == errno.ENOLINK
    assert w.query(vm="nf")["vmas"][0]["attrs"]["devmem_fd"] == 0      # unchanged
    # the same request from a fault-mode VM of that device succeeds
    w.vm_create(vm="f", device="gpu0", fault_mode=True)
    w.bind(vm="f", op="map", addr=BUF, range=M, flags=["cpu_addr_mirror"])
    w.madvise(vm="f", addr=BUF, range=M, type="preferred_loc", devmem_fd="gpu0")
    assert w.query(vm="f")["vmas"][0]["attrs"]["devmem_fd"] == "gpu0"


# -- purgeable BOs (7.0 xe_vm_madvise.c madvise_purgeable, xe_vma_create,
#    xe_pagefault_begin, vma_lock_and_validate) ----------------------------------------

def _purge_world() -> World:
    w = World("7.0")
    w.device(name="gpu0", vram_mib=64)
    w.vm_create(vm="a", device="gpu0", fault_mode=True)
    w.vm_create(vm="b", device="gpu0", fault_mode=True)
    w.bo_create(bo="p", device="gpu0", size=M)
    w.bind(vm="a", op="map", addr=BUF, range=M, bo="p")
    w.bind(vm="b", op="map", addr=BUF, range=M, bo="p")
    return w


def test_purgeable_state_is_per_vma_and_the_bo_follows_all_vms() -> None:
    w = _purge_world()
    bo = w.bos["p"]
    out = w.madvise(vm="a", addr=BUF, range=M, type="purgeable_state", val=1,
                    union_reserved=0x1000)
    assert out == {"invalidated": [], "retained": 1}
    assert bo.purge_state == 0                 # VM b's VMA still WILLNEED
    assert w.query(vm="a")["vmas"][0]["purgeable"] == "dontneed"
    assert "purgeable" not in w.query(vm="b")["vmas"][0]
    w.madvise(vm="b", addr=BUF, range=M, type="purgeable_state", val=1)
    assert bo.purge_state == 1                 # willneed count 1 -> 0 with VMAs left
    # a new VMA on a DONTNEED BO: xe_vma_create() EBUSY; nothing changes
    assert _errno(w.bind, vm="a", op="map", addr=BUF + M, range=M, bo="p") == errno.EBUSY
    assert len(w.query(vm="a")["vmas"]) == 1
    # a GPU fault on it: xe_pagefault_begin() EACCES
    assert _errno(w.gpu_access, vm="a", addr=BUF, size=K, op="read") == errno.EACCES
    # PREFETCH of it: vma_lock_and_validate() check_purged EBUSY
    assert _errno(w.prefetch, vm="a", addr=BUF, range=M, region="system") == errno.EBUSY
    # WILLNEED again on one VMA: count 0 -> 1, the BO is WILLNEED
    w.madvise(vm="a", addr=BUF, range=M, type="purgeable_state", val=0)
    assert bo.purge_state == 0
    assert w.gpu_access(vm="a", addr=BUF, size=K, op="read")["data"] == [0]


def test_purged_bo_is_terminal_and_retained_reports_it() -> None:
    w = _purge_world()
    w.gpu_access(vm="a", addr=BUF, size=K, op="write", value=8)
    assert _errno(w.bo_purge, bo="p") == errno.EBUSY          # not DONTNEED
    for vm in ("a", "b"):
        w.madvise(vm=vm, addr=BUF, range=M, type="purgeable_state", val=1)
    assert w.bo_purge(bo="p") == {"zapped": 1}                # only VM a had it mapped
    assert _errno(w.gpu_access, vm="a", addr=BUF, size=K, op="read") == errno.EACCES
    out = w.madvise(vm="a", addr=BUF, range=M, type="purgeable_state", val=0,
                    union_reserved=0x1000)
    assert out["retained"] == 0
    assert w.bos["p"].purge_state == 2                        # WILLNEED does not revive it
    assert _errno(w.bind, vm="a", op="map", addr=BUF + M, range=M, bo="p") == errno.EINVAL
    assert w.query(vm="b")["vmas"][0]["purgeable"] == "purged"


def test_purgeable_type_does_not_exist_in_6_18() -> None:
    w = _world("6.18")
    assert _errno(w.madvise, vm="vm0", addr=BUF, range=M, type="purgeable_state",
                  val=1) == errno.EINVAL
    w.bo_create(bo="x", device="gpu0", size=M)
    assert _errno(w.bo_purge, bo="x") == errno.EINVAL


# -- PREFETCH targets: region instances and DRM_XE_CONSULT_MEM_ADVISE_PREF_LOC -------------

def test_prefetch_region_instances() -> None:
    # vm_bind_ioctl_check_args(): the instance must be a bit of mem_region_mask;
    # 0 is system memory, 1 the first VRAM tile
    w = _world()
    _mirror(w)
    w.mmap(addr=BUF, size=2 * M)
    assert _errno(w.prefetch, vm="vm0", addr=BUF, range=M, region=2) == errno.EINVAL
    w.prefetch(vm="vm0", addr=BUF, range=M, region=1)
    assert [r["location"] for r in w.ranges(vm="vm0")["ranges"]] == ["gpu0"]
    w.prefetch(vm="vm0", addr=BUF, range=M, region=0)
    assert [r["location"] for r in w.ranges(vm="vm0")["ranges"]] == ["system"]


@pytest.mark.parametrize("profile, fd, where", [
    ("6.18", -1, "system"), ("6.18", 0, "gpu0"), ("6.18", "gpu1", "system"),
    ("7.0", -1, "system"), ("7.0", 0, "gpu0"), ("7.0", "gpu1", "gpu1"),
])
def test_prefetch_to_the_preferred_location(profile: str, fd: int | str, where: str) -> None:
    # vm_bind_ioctl_ops_create(): xe_vma_resolve_pagemap() per CPU-mirror VMA (6.18: an fd
    # resolves to nothing, i.e. system memory; 7.0: that device's pagemap)
    w = World(profile)
    w.device(name="gpu0", vram_mib=64)
    w.device(name="gpu1", vram_mib=64)
    w.link(a="gpu0", b="gpu1")
    w.vm_create(vm="vm0", device="gpu0", fault_mode=True)
    _mirror(w)
    w.mmap(addr=BUF, size=2 * M)
    kw: dict[str, object] = {"devmem_fd": fd}
    if profile == "6.18" and isinstance(fd, str):
        kw["region_instance"] = 0            # the 6.18 pad must be 0
    w.madvise(vm="vm0", addr=BUF, range=M, type="preferred_loc", **kw)  # type: ignore[arg-type]
    w.prefetch(vm="vm0", addr=BUF, range=M, region="pref_loc")
    # the madvise split the VMA at BUF + M, so 64 KiB chunks fit: 16 ranges
    locs = [r["location"] for r in w.ranges(vm="vm0")["ranges"]]
    assert len(locs) == 16 and set(locs) == {where}


def test_prefetch_pref_loc_over_a_bo_vma_is_refused() -> None:
    w = _world()
    w.bo_create(bo="b", device="gpu0", size=M)
    w.bind(vm="vm0", op="map", addr=BUF, range=M, bo="b")
    assert _errno(w.prefetch, vm="vm0", addr=BUF, range=M, region="pref_loc") == errno.EINVAL


# -- destroying one VM (xe_vm_destroy_ioctl -> xe_vm_close_and_put -> xe_svm_close) -------

@pytest.mark.parametrize("profile", ["6.18", "7.0"])
def test_vm_destroy_mid_trace(profile: str) -> None:
    w = _world(profile)
    w.vm_create(vm="other", device="gpu0", fault_mode=True)
    _mirror(w)
    w.mmap(addr=BUF, size=2 * M)
    w.cpu_write(addr=BUF, size=K, value=6)
    w.prefetch(vm="vm0", addr=BUF, range=2 * M, region="vram")
    w.bo_create(bo="b", device="gpu0", size=M)
    w.bind(vm="vm0", op="map", addr=BUF + 8 * M, range=M, bo="b")
    assert w.vm_destroy(vm="vm0") == {}
    w.check_invariants()
    assert w.bos["b"].vma_count == 0 and w.bos["b"].willneed == 0
    assert _errno(w.vm_destroy, vm="vm0") == errno.ENOENT
    assert _errno(w.query, vm="vm0") == errno.EINVAL
    assert _errno(w.gpu_access, vm="vm0", addr=BUF, size=K, op="read") == errno.ENOENT
    # the device pages stay until the CPU touches them; then they come back
    assert w.cpu_read(addr=BUF, size=K)["data"] == [6]
    # the other VM still works, the name can be used again
    w.bind(vm="other", op="map", addr=BUF, range=2 * M, flags=["cpu_addr_mirror"])
    assert w.gpu_access(vm="other", addr=BUF, size=K, op="read")["data"] == [6]
    w.vm_create(vm="vm0", device="gpu0")
    w.check_invariants()
    assert w.teardown()["leftovers"] == []


# -- the pagemap shrinker (drm_pagemap_shrinker_count / _scan) -------------------------------

def test_shrink_frees_idle_cached_pagemaps() -> None:
    w = World("7.0")
    w.device(name="gpu0", vram_mib=64)
    assert w.shrink(device="gpu0") == {"listed": 0, "freed": 0}
    w.vm_create(vm="vm0", device="gpu0", fault_mode=True)
    w.vm_destroy(vm="vm0")          # the VM's pagemap reference goes: idle, cached
    w.run_workers()
    idle = [p for p in w.pagemaps()["pagemaps"] if p["cached"]]
    assert len(idle) == 1
    assert w.shrink(device="gpu0", nr_to_scan=1) == {"listed": 1, "freed": 1}
    assert not [p for p in w.pagemaps()["pagemaps"] if p["cached"]]
    assert w.shrink(device="gpu0") == {"listed": 0, "freed": 0}
    # a new fault-mode VM revives the pagemap (created again)
    w.vm_create(vm="vm1", device="gpu0", fault_mode=True)
    w.check_invariants()
    w.unbind_device(device="gpu0")
    assert _errno(w.shrink, device="gpu0") == errno.ENODEV
    assert _errno(w.shrink, device="nope") == errno.ENOENT


# -- BO cpu_caching (xe_vm_bind_ioctl_validate_bo) -------------------------------------------

def test_wb_and_imported_bos_need_a_coherent_pat_index() -> None:
    w = _world()
    w.bo_create(bo="wb", device="gpu0", size=M, cpu_caching="wb")
    w.bo_create(bo="wc", device="gpu0", size=M, cpu_caching="wc")
    w.bo_create(bo="imp", device="gpu0", size=M, imported=True)
    # pat_index 0 is XE_COH_NONE in the modelled table, 1 is coherent
    assert _errno(w.bind, vm="vm0", op="map", addr=BUF, range=M, bo="wb",
                  pat_index=0) == errno.EINVAL
    assert _errno(w.bind, vm="vm0", op="map", addr=BUF, range=M, bo="imp",
                  pat_index=0) == errno.EINVAL
    assert w.query(vm="vm0")["vmas"] == []
    w.bind(vm="vm0", op="map", addr=BUF, range=M, bo="wc", pat_index=0)
    w.bind(vm="vm0", op="map", addr=BUF + M, range=M, bo="wb", pat_index=1)
    w.bind(vm="vm0", op="map", addr=BUF + 2 * M, range=M, bo="imp", pat_index=1)
    assert len(w.query(vm="vm0")["vmas"]) == 3
    assert _errno(w.bo_create, bo="x", device="gpu0", size=M, imported=True,
                  cpu_caching="wb") == errno.EINVAL


@pytest.mark.parametrize("profile", ["6.18", "7.0"])
def test_madvise_extensions_are_never_checked(profile: str) -> None:
    # xe_vm_madvise_ioctl() and madvise_args_are_sane() never read args->extensions
    w = _world(profile)
    _mirror(w)
    out = w.madvise(vm="vm0", addr=BUF, range=M, type="atomic", val=2,
                    extensions=0xDEAD_BEEF_0000)
    assert out == {"invalidated": [[BUF, M]]}
    assert w.query(vm="vm0", addr=BUF, range=M)["vmas"][0]["attrs"]["atomic"] == 2


# -- the purgeable retained pointer (7.0) --------------------------------------------------

def test_retained_pointer_read_errors_come_before_any_change() -> None:
    # xe_vm_madvise_ioctl(): after madvise_args_are_sane() and before xe_svm_flush() and
    # the VM lock, get_user() of retained_ptr faults -> EFAULT, a non-zero value -> EINVAL
    w = _purge_world()
    before = w.query(vm="a")
    assert _errno(w.madvise, vm="a", addr=BUF, range=M, type="purgeable_state", val=1,
                  union_reserved=0x1000, retained_fault="read") == errno.EFAULT
    assert _errno(w.madvise, vm="a", addr=BUF, range=M, type="purgeable_state", val=1,
                  union_reserved=0x1000, retained_init=1) == errno.EINVAL
    assert w.query(vm="a") == before and w.bos["p"].purge_state == 0
    # the argument checks come first: a bad val is EINVAL even with an unreadable pointer
    # (madvise_args_are_sane() before do_retained)
    assert _errno(w.madvise, vm="a", addr=BUF, range=M, type="purgeable_state", val=2,
                  union_reserved=0x1000, retained_fault="read") == errno.EINVAL
    # no pointer: neither field is read (do_retained is false)
    assert w.madvise(vm="a", addr=BUF, range=M, type="purgeable_state", val=0,
                     retained_init=7, retained_fault="read") == {"invalidated": []}
    # ...and the read comes before the killed-VM test (ENOENT is after the VM lock)
    w.vm_kill(vm="a")
    assert _errno(w.madvise, vm="a", addr=BUF, range=M, type="purgeable_state", val=1,
                  union_reserved=0x1000, retained_fault="read") == errno.EFAULT


def test_retained_pointer_write_fault_is_efault_after_the_madvise() -> None:
    # xe_madvise_purgeable_retained_to_user(): put_user() after the locks are dropped; the
    # ioctl returns -EFAULT but the purgeable state is already set
    w = _purge_world()
    assert _errno(w.madvise, vm="a", addr=BUF, range=M, type="purgeable_state", val=1,
                  union_reserved=0x1000, retained_fault="write") == errno.EFAULT
    assert w.query(vm="a")["vmas"][0]["purgeable"] == "dontneed"
    # the same pointer on 6.18: type 3 is unknown, EINVAL from the argument checks
    w6 = _world("6.18")
    assert _errno(w6.madvise, vm="vm0", addr=BUF, range=M, type="purgeable_state", val=1,
                  union_reserved=0x1000, retained_fault="read") == errno.EINVAL


# -- an array of binds: xe_vm_bind_ioctl() with num_binds > 1 ------------------------------

def _array_world() -> World:
    w = World("7.0")
    w.device(name="gpu0", vram_mib=64)
    w.vm_create(vm="a", device="gpu0", fault_mode=True)
    w.bo_create(bo="p", device="gpu0", size=M)
    return w


def test_bind_array_applies_every_op_in_order() -> None:
    w = _array_world()
    assert w.bind_array(vm="a", binds=[
        {"op": "map", "addr": BUF, "range": M, "bo": "p"},
        {"op": "map", "addr": BUF + M, "range": 2 * M, "flags": ["null"]},
        {"op": "unmap", "addr": BUF + 2 * M, "range": M}]) == {}
    assert [(v["addr"], v["range"]) for v in w.query(vm="a")["vmas"]] == [
        (BUF, M), (BUF + M, M)]
    # num_binds == 0: -ENODATA after the killed check, turned into 0
    assert w.bind_array(vm="a", binds=[]) == {}
    w.vm_kill(vm="a")
    assert _errno(w.bind_array, vm="a", binds=[]) == errno.ENOENT


@pytest.mark.parametrize("bad, want", [
    # vm_bind_ioctl_check_args(): every op's argument checks come before the VM state
    ({"op": "map", "addr": BUF + 3, "range": M, "flags": ["null"]}, errno.EINVAL),
    ({"op": "map", "addr": BUF, "range": M, "bo": "nope"}, errno.ENOENT),
    ({"op": "map", "addr": BUF, "range": 2 * M, "bo": "p"}, errno.EINVAL),   # validate_bo
    ({"op": "map", "addr": 1 << 50, "range": M, "flags": ["null"]}, errno.EINVAL),
    ({"op": "unmap", "addr": BUF, "range": 0}, errno.EINVAL),
])
def test_bind_array_refuses_before_any_change(bad: dict[str, object], want: int) -> None:
    # xe_vm_bind_ioctl(): each stage (check_args, range in VM, BO lookup +
    # xe_vm_bind_ioctl_validate_bo) runs over all ops before vm_bind_ioctl_ops_create()
    w = _array_world()
    good = {"op": "map", "addr": 2 * BUF, "range": M, "flags": ["null"]}
    assert _errno(w.bind_array, vm="a", binds=[good, bad]) == want
    assert w.query(vm="a")["vmas"] == []


def test_bind_array_stage_order() -> None:
    # an op-1 argument error beats an op-0 range error (check_args before the VM-size
    # loop); a killed VM beats a later op's range error but not an argument error
    w = _array_world()
    out_of_vm = {"op": "map", "addr": 1 << 50, "range": M, "flags": ["null"]}
    unaligned = {"op": "map", "addr": BUF + 3, "range": M, "flags": ["null"]}
    no_bo = {"op": "map", "addr": BUF, "range": M, "bo": "nope"}
    assert _errno(w.bind_array, vm="a", binds=[out_of_vm, unaligned]) == errno.EINVAL
    assert "aligned" in str(_exc(w.bind_array, vm="a", binds=[out_of_vm, unaligned]))
    # the VM-size loop runs over every op before any BO lookup
    assert "outside the VM" in str(_exc(w.bind_array, vm="a", binds=[no_bo, out_of_vm]))
    w.vm_kill(vm="a")
    assert _errno(w.bind_array, vm="a", binds=[unaligned]) == errno.EINVAL
    assert _errno(w.bind_array, vm="a", binds=[out_of_vm]) == errno.ENOENT


# -- the Xe2 PAT table ------------------------------------------------------------------------

def test_xe2_pat_table_reserves_16_to_19_and_defines_20_to_31() -> None:
    # xe_pat.c xe2_pat_table[]: 16..19 are left all-zero (coherency 0, refused as
    # hardware-reserved by vm_bind_ioctl_check_args() and madvise_args_are_sane());
    # 20..31 are real entries (CLOS 1-3), 22/23/26/27/30/31 coherent
    from pysvm.xe.attr import CohMode
    from pysvm.xe.device import DEFAULT_PAT_COH
    assert [i for i, c in enumerate(DEFAULT_PAT_COH) if c == CohMode.INVALID] == [16, 17, 18, 19]
    assert [i for i, c in enumerate(DEFAULT_PAT_COH) if c == CohMode.AT_LEAST_1WAY] == [
        1, 2, 4, 5, 7, 22, 23, 26, 27, 30, 31]
    w = _world()
    for pat, want in ((16, errno.EINVAL), (19, errno.EINVAL)):
        assert _errno(w.bind, vm="vm0", op="map", addr=BUF, range=M, flags=["null"],
                      pat_index=pat) == want
        assert _errno(w.madvise, vm="vm0", addr=BUF, range=M, type="pat", val=pat) == want
    # a userptr bind needs a coherent entry: 27 is (2-way), 28 is not
    w.mmap(addr=BUF, size=2 * M)
    w.bind(vm="vm0", op="map_userptr", addr=BUF, range=M, offset=BUF, pat_index=27)
    assert _errno(w.bind, vm="vm0", op="map_userptr", addr=BUF + M, range=M,
                  offset=BUF + M, pat_index=28) == errno.EINVAL
