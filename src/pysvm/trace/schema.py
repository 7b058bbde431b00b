"""The trace events: one msgspec Struct per event, decoding, validation, JSON Schema.

A trace line is a JSON object whose ``"ev"`` names the event; the other keys
are the event's fields. Each event below is a Struct tagged with its name;
unknown fields are refused, every field has the type (and for integers the
range) its kernel counterpart has, and absent optional fields take the
defaults written here. Checks that depend on model state (does the VM exist,
is the range aligned, is the profile the right one) stay in the model: the
kernel makes them in its own order, after some of its argument checks and
before others, and the errno a trace sees depends on that order.

Public API: :data:`EVENTS`, :func:`decode`, :func:`decode_object`,
:func:`convert`, :func:`as_kwargs`, :func:`json_schema`; every refusal is a
:class:`TraceDecodeError`, an :class:`~pysvm.errors.XeError` with errno EINVAL
whose message names the field.

Kernel: the argument structs of include/uapi/drm/xe_drm.h (struct
drm_xe_vm_create, drm_xe_gem_create, drm_xe_vm_bind_op, drm_xe_madvise,
drm_xe_vm_query_mem_range_attr) give the integer widths used here.
"""

import errno
import json
import re
import typing
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal, Union

import msgspec
from msgspec import UNSET, Meta, UnsetType

from ..clock import MAX_ADVANCE_MS
from ..errors import XeError
from ..xe.device import ATOMIC_SVM_TIMESLICE_MS, MAX_TILES_PER_DEVICE
from . import results as R

__all__ = [
    "EVENTS", "Event", "AnyEvent", "TraceDecodeError", "decode", "decode_object", "convert",
    "as_kwargs", "json_schema", "U64_MAX", "PROFILES", "PLACEMENTS", "BIND_FLAGS",
    "MADVISE_TYPES", "INJECTION_POINTS", "NOTIFY_EVENTS", "MREMAP_FLAGS", "MAIN_PROCESS",
]

U64_MAX = (1 << 64) - 1
S64_MIN, S64_MAX = -(1 << 63), (1 << 63) - 1
MIB = 1 << 20

# -- field types -----------------------------------------------------------------
# msgspec's own bounds stop at int64; the u64 top is checked by _check_u64 and
# written into the JSON Schema as "maximum".


U64 = Annotated[int, Meta(ge=0, extra_json_schema={"maximum": U64_MAX})]


#: Choices, in the order the refusal messages list them.
PROFILES = ("6.18", "7.0", "newest")
PLACEMENTS = ("vram", "system")
BIND_OPS = ("map", "unmap", "map_userptr")
BIND_FLAGS = ("autoreset", "cpu_addr_mirror", "dumpable", "immediate", "null", "read_only")
MADVISE_TYPES = ("atomic", "pat", "preferred_loc", "purgeable_state")
GPU_OPS = ("read", "write", "atomic")
REGIONS = ("vram", "system")
NOTIFY_EVENTS = ("clear", "protection_vma", "protection_page", "soft_dirty", "migrate",
                 "exclusive")
INJECTION_POINTS = ("fault.start", "fault.after_find_range", "fault.after_migrate",
                    "fault.after_get_pages", "fault.before_bind")

Profile = Literal["6.18", "7.0", "newest"]
Placement = Literal["vram", "system"]
BindOp = Literal["map", "unmap", "map_userptr"]
BindFlagName = Literal["autoreset", "cpu_addr_mirror", "dumpable", "immediate", "null",
                       "read_only"]
MadviseType = Literal["atomic", "pat", "preferred_loc", "purgeable_state"]
GpuOp = Literal["read", "write", "atomic"]
Region = Literal["vram", "system"]
#: A prefetch target: a region name, "pref_loc" (DRM_XE_CONSULT_MEM_ADVISE_PREF_LOC) or a
#: prefetch_mem_region_instance number (0 system, 1.. VRAM tiles).
PrefetchRegion = Union[  # noqa: UP007
    Literal["vram", "system", "pref_loc"], Annotated[int, Meta(ge=0, le=255)]]
NotifyEvent = Literal["clear", "protection_vma", "protection_page", "soft_dirty", "migrate",
                      "exclusive"]
InjectionPoint = Literal["fault.start", "fault.after_find_range", "fault.after_migrate",
                         "fault.after_get_pages", "fault.before_bind"]

VmName = Annotated[str, Meta(description="the VM's name (given at vm_create)")]
DeviceName = Annotated[str, Meta(description="the device's name (given at device)")]
Addr = Annotated[U64, Meta(description="virtual address, bytes")]
#: The process every trace starts with (the one running the trace).
MAIN_PROCESS = "main"
ProcessName = Annotated[str, Meta(description=(
    "the process whose address space (and device file) the event acts in: main (the "
    "process every trace starts with) or a name given at process_start"))]
Value = Annotated[int, Meta(ge=S64_MIN, le=S64_MAX,
                            description="the value stored in every page (signed 64-bit)")]


class Event(msgspec.Struct, tag_field="ev", forbid_unknown_fields=True, kw_only=True):
    """Base of the event Structs. ``kernel`` says what the event stands for,
    ``errors`` the refusals it can give (errno name, when), ``result`` its result
    fields."""

    kernel: ClassVar[str] = ""
    errors: ClassVar[tuple[tuple[str, str], ...]] = ()
    result: ClassVar[type[R.Result]] = R.NoResult


_EINVAL_FIELDS = ("EINVAL", "an unknown field, a missing required field, a wrong type or "
                  "an integer out of range")


class ConfigEvent(Event, tag="config"):
    """Choose the kernel profile the model follows.

    Allowed only before the first device or VM, unless it names the profile already in
    force. A trace without config runs the 6.18 profile.
    """

    kernel: ClassVar[str] = (
        "No kernel counterpart: a model setting. 6.18 follows Linux v6.18 (madvise "
        "autoreset included); 7.0 follows mainline as stored ("
        "neighbour absorption on CPU-mirror binds, multi-device pagemaps, "
        "purgeable-state madvise); newest is an alias of the newest modelled release (7.0). "
        "docs/profiles.md lists every difference with its kernel function.")
    errors = (_EINVAL_FIELDS,
              ("EBUSY", "the profile changes after the first device or VM was created"))
    result = R.ConfigResult
    profile: Annotated[Profile, Meta(description="the kernel profile")] = "6.18"


class DeviceEvent(Event, tag="device"):
    """Create a device (one GPU with one or two tiles, each with its own VRAM) and open
    its DRM file.

    The result's fd is the number this device's file has; a madvise may give it as an
    integer devmem_fd instead of the device name.
    """

    kernel: ClassVar[str] = (
        "The driver probe (drivers/gpu/drm/xe/xe_pci.c: xe_pci_probe()) followed by an open() "
        "of the device file (drivers/gpu/drm/xe/xe_device.c: xe_file_open()).")
    errors = (_EINVAL_FIELDS,
              ("EEXIST", "a device with this name exists"),
              ("EINVAL", "discrete with vram_mib 0, or integrated with vram_mib > 0"),
              ("EINVAL", "integrated with smem_atomics false"),
              ("EINVAL", "tiles below 1 or above XE_MAX_TILES_PER_DEVICE (2)"))
    result = R.DeviceResult
    name: DeviceName
    discrete: Annotated[bool, Meta(
        description="a discrete GPU with VRAM (false: integrated, no VRAM)")] = True
    vram_mib: Annotated[int, Meta(ge=0, le=U64_MAX // MIB, description=(
        "VRAM size in MiB of each tile (so a one-tile device has vram_mib in all); default "
        "256 when discrete, 0 when integrated"))] | UnsetType = UNSET
    tiles: Annotated[int, Meta(ge=0, le=255, description=(
        "number of tiles (xe->info.tile_count), 1 to XE_MAX_TILES_PER_DEVICE "
        f"({MAX_TILES_PER_DEVICE}); each tile has its own GT (gpu_access tile), its own "
        "VRAM region (region instance tile + 1) and its own VRAM pagemap; default 1"))] = 1
    smem_atomics: Annotated[bool, Meta(description=(
        "the device can do atomics on system memory (info.has_device_atomics_on_smem: "
        "no VRAM migration needed); default false when discrete (a PVC-like part), true "
        "when integrated (xe_pci.c sets it on every platform but PVC, which is discrete; "
        "false there is EINVAL)"))] | UnsetType = UNSET
    atomic_svm_timeslice_ms: Annotated[int, Meta(ge=0, le=(1 << 32) - 1, description=(
        "xe->atomic_svm_timeslice_ms: the minimum time pages migrated to VRAM for a GPU "
        "atomic stay there before a CPU fault may move them back (doubled on each retry "
        "of the fault); default 5 (xe_device.c xe_device_create()), the debugfs file "
        "atomic_svm_timeslice_ms sets it (xe_debugfs.c)"))] = ATOMIC_SVM_TIMESLICE_MS
    l2_flush_optimized: Annotated[bool, Meta(description=(
        "the device has the optimised L2 flush (xe_device_is_l2_flush_optimized()): in "
        "profile 7.0 userptr and cpu_addr_mirror binds, imported BOs and a madvise PAT over "
        "them need pat_index 19 or a 2-way coherent entry; no effect in 6.18"))] = False
    pat_coh: Annotated[list[Annotated[int, Meta(ge=0, le=15)]], Meta(
        min_length=1, max_length=64, description=(
            "the device's PAT table as the coherency mode of each index (xe->pat.table[i]"
            ".coh_mode, xe_pat.c): 0 reserved, 1 XE_COH_NONE, 2 1-way (6.18: "
            "XE_COH_AT_LEAST_1WAY), 3 XE_COH_2WAY (7.0 only; 6.18 refuses it as above "
            "at-least-1-way), larger values are unknown modes (refused in both); default: "
            "the Xe2 table with 2-way entries read as 1-way"))] | UnsetType = UNSET


class VmCreateEvent(Event, tag="vm_create"):
    """Create a VM on a device, in a process (default main).

    The VM belongs to the process's device file: a fault-mode VM mirrors the address
    space of the process that created it (its SVM state takes current->mm), and the VM is
    closed when that process exits (process_exit).
    """

    kernel: ClassVar[str] = (
        "DRM_IOCTL_XE_VM_CREATE: drivers/gpu/drm/xe/xe_vm.c: xe_vm_create_ioctl() (struct "
        "drm_xe_vm_create; fault_mode is DRM_XE_VM_CREATE_FLAG_FAULT_MODE); the VM is stored "
        "in the file's xef->vm.xa, and drivers/gpu/drm/xe/xe_svm.c: xe_svm_init() hands "
        "current->mm to drm_gpusvm_init().")
    errors = (_EINVAL_FIELDS,
              ("ESRCH", "process names no live process (never started, or exited)"),
              ("ENOENT", "no device has this name"),
              ("EEXIST", "a VM with this name exists"))
    vm: Annotated[str, Meta(description="a new, unique VM name")]
    device: DeviceName
    process: Annotated[ProcessName, Meta(description=(
        "the process creating the VM through its own open of the device file; a fault-mode "
        "VM mirrors that process's address space, and the VM is closed when it exits"))] = (
        MAIN_PROCESS)
    fault_mode: Annotated[bool, Meta(description=(
        "a fault-mode VM (GPU page faults, SVM); binds need not be made up front"))] = False
    va_bits: Annotated[int, Meta(ge=32, le=57,
                                 description="the VM spans [0, 2^va_bits) bytes")] = 48


class BoCreateEvent(Event, tag="bo_create"):
    """Create a buffer object (GEM object)."""

    kernel: ClassVar[str] = (
        "DRM_IOCTL_XE_GEM_CREATE: drivers/gpu/drm/xe/xe_bo.c: xe_gem_create_ioctl() (struct "
        "drm_xe_gem_create; placement is its region mask).")
    errors = (_EINVAL_FIELDS,
              ("ENOENT", "no device has this name"),
              ("EEXIST", "a BO with this name exists"),
              ("EINVAL", "size is 0 or not a multiple of 4 KiB; a placement is listed twice; "
                         "vram on an integrated device"))
    bo: Annotated[str, Meta(description="a new, unique BO name")]
    device: DeviceName
    size: Annotated[U64, Meta(description="size in bytes, a non-zero multiple of 4096")]
    # An empty list means the default too (the handler treats [] as ["system"]).
    placement: Annotated[list[Placement], Meta(description=(
        'memory regions the BO may live in; [] means ["system"]'))] = (
        msgspec.field(default_factory=lambda: ["system"]))
    cpu_caching: Annotated[Literal["wb", "wc"], Meta(description=(
        "drm_xe_gem_create.cpu_caching; a WB BO refuses a non-coherent (COH_NONE) PAT "
        "index at bind (xe_vm_bind_ioctl_validate_bo). Not given: not checked"))] | \
        UnsetType = UNSET
    imported: Annotated[bool, Meta(description=(
        "the BO stands for an imported dma-buf (no cpu_caching): a COH_NONE PAT index is "
        "refused at bind"))] = False


class BindEvent(Event, tag="bind"):
    """One VM bind operation: map a BO, userptr, NULL or CPU-address-mirror range, or unmap.

    op map with bo maps the BO at offset; without bo it needs the null flag (a sparse
    mapping) or cpu_addr_mirror (SVM: the GPU sees the process address space and faults
    pages in on demand). op map_userptr maps the CPU memory at offset and needs a
    coherent PAT index. The autoreset flag exists only in the newest profile (EINVAL in
    6.18) and needs cpu_addr_mirror on op map. In the newest profile a cpu_addr_mirror map
    first widens over neighbouring CPU-mirror VMAs with default attributes, which merge
    into the new VMA, and may replace whole mirror VMAs that still have SVM ranges.
    Refusals come in the kernel's order: argument checks, unknown VM, killed VM, range
    outside the VM, unknown BO, range or offset outside the BO, live SVM ranges.
    """

    kernel: ClassVar[str] = (
        "DRM_IOCTL_XE_VM_BIND with one struct drm_xe_vm_bind_op: drivers/gpu/drm/xe/xe_vm.c: "
        "xe_vm_bind_ioctl() (argument checks in vm_bind_ioctl_check_args()).")
    errors = (_EINVAL_FIELDS,
              ("EINVAL", "no VM has this name (xe_vm_lookup() fails), or argument checks: "
                         "alignment, zero range, flags that do not go with "
                         "op (autoreset needs cpu_addr_mirror on map and the newest profile; "
                         "cpu_addr_mirror needs a fault-mode VM; a BO with null or "
                         "cpu_addr_mirror)"),
              ("ENOENT", "the VM was killed (vm_kill)"),
              ("EINVAL", "the range lies outside the VM"),
              ("ENOENT", "no BO has this name"),
              ("EINVAL", "range or offset outside the BO; map_userptr without a coherent "
                         "PAT index"),
              ("EBUSY", "live SVM ranges in a cut-out part, or in an unmapped CPU-mirror VMA"))
    vm: VmName
    op: Annotated[BindOp, Meta(description=(
        "DRM_XE_VM_BIND_OP_MAP, _UNMAP or _MAP_USERPTR"))]
    addr: Annotated[U64, Meta(description="GPU virtual address, bytes (4 KiB aligned)")]
    range: Annotated[U64, Meta(description="length in bytes (4 KiB aligned, non-zero)")]
    flags: Annotated[list[BindFlagName], Meta(description=(
        "DRM_XE_VM_BIND_FLAG_* by name: read_only, immediate, null, dumpable, "
        "cpu_addr_mirror; autoreset is DRM_XE_VM_BIND_FLAG_MADVISE_AUTORESET"))] = []
    pat_index: Annotated[int, Meta(ge=0, le=0xFFFF, description="the PAT index (u16)")] = 0
    offset: Annotated[U64, Meta(description=(
        "op map: offset into the BO, bytes; op map_userptr: the CPU address"))] = 0
    bo: Annotated[str, Meta(description=(
        "op map: the BO to map (none: a NULL or CPU-mirror map)"))] | UnsetType = UNSET


class MadviseEvent(Event, tag="madvise"):
    """Set one memory-range attribute over a range of a VM.

    type selects the member of the kernel's union: preferred_loc reads devmem_fd,
    migration_policy and region_instance; atomic and pat read val; purgeable_state reads
    val (7.0: 0 WILLNEED or 1 DONTNEED, set per BO VMA, the BO's state following its
    WILLNEED VMAs over every VM; union_reserved non-zero is the retained pointer, and the
    result then has retained; 6.18: an unknown type). pad, union_reserved and reserved
    are the raw uAPI fields a validation test may set non-zero. In 6.18
    region_instance is the pad u16 of preferred_mem_loc (must be 0). CPU-mirror VMAs are
    split at the range's ends first; a BO atomic-placement failure or (newest,
    integrated device) a non-coherent PAT over CPU-mirror or userptr memory is reported
    after the split, as in the kernel, and the split stays.
    """

    kernel: ClassVar[str] = (
        "DRM_IOCTL_XE_MADVISE: drivers/gpu/drm/xe/xe_vm_madvise.c: xe_vm_madvise_ioctl() "
        "(struct drm_xe_madvise; argument checks in madvise_args_are_sane()).")
    errors = (_EINVAL_FIELDS,
              ("EINVAL", "no VM has this name; argument checks (alignment, range below 4 KiB, "
                         "unknown type, bad val, non-zero pad or reserved, reserved PAT "
                         "index)"),
              ("ENOENT", "the VM was killed; devmem_fd names no device or no xe file; the "
                         "device has no such VRAM region"),
              ("ENODEV", "the devmem_fd device is unbound"),
              ("ENOLINK", "the devmem_fd device's VRAM is not reachable from the VM's device"),
              ("EINVAL", "after the split: atomic GLOBAL/DEVICE on a BO without the needed "
                         "placements; newest, integrated device: a non-coherent PAT over "
                         "CPU-mirror or userptr memory"),
              ("ENOLINK", "7.0: the VM is not in fault mode (it joined no owner group) "
                          "and devmem_fd names a device"),
              ("EFAULT", "a split would cut a userptr VMA (the new piece pins CPU address "
                         "0); nothing changes"),
              ("EFAULT", "7.0 purgeable_state: the retained pointer cannot be read (after "
                         "the argument checks, nothing changes) or cannot be written (last: "
                         "the madvise took effect)"),
              ("EINVAL", "7.0 purgeable_state: the retained pointer does not hold 0 "
                         "(after the argument checks, nothing changes)"))
    result = R.MadviseResult
    vm: VmName
    addr: Annotated[U64, Meta(description=(
        "start address, bytes (drm_xe_madvise.start; 4 KiB aligned)"))]
    range: Annotated[U64, Meta(description="length in bytes (at least 4 KiB, 4 KiB aligned)")]
    type: Annotated[MadviseType | Annotated[int, Meta(ge=0, le=0xFFFFFFFF)], Meta(description=(
        "the attribute: preferred_loc (0), atomic (1), pat (2), purgeable_state (3, newest), "
        "or the raw u32 DRM_XE_MEM_RANGE_ATTR_* number"))]
    devmem_fd: Annotated[Annotated[int, Meta(ge=-(1 << 31), le=(1 << 32) - 1)] | str, Meta(
        description=("preferred_loc: a device name (its file), or the raw number "
                     "(0 = DRM_XE_PREFERRED_LOC_DEFAULT_DEVICE, -1 = _DEFAULT_SYSTEM; a "
                     "u32 above 2^31 reads as negative, as in the kernel)"))] = 0
    migration_policy: Annotated[int, Meta(ge=0, le=0xFFFF, description=(
        "preferred_loc: 0 = DRM_XE_MIGRATE_ALL_PAGES, 1 = DRM_XE_MIGRATE_ONLY_SYSTEM_PAGES"
    ))] = 0
    region_instance: Annotated[int, Meta(ge=0, le=0xFFFF, description=(
        "preferred_loc: the VRAM region of the devmem_fd device (u16; k = tile k-1's VRAM, "
        "a tile the device lacks is ENOENT); default 1 when devmem_fd names a device, "
        "else 0"))] | UnsetType = UNSET
    val: Annotated[int, Meta(ge=0, le=0xFFFFFFFF, description=(
        "atomic: DRM_XE_ATOMIC_* (0 undefined, 1 device, 2 global, 3 cpu); pat: the PAT "
        "index; purgeable_state: 0 WILLNEED, 1 DONTNEED"))] = 0
    pad: Annotated[int, Meta(ge=0, le=0xFFFFFFFF,
                             description="the union member's pad (u32); must be 0")] = 0
    union_reserved: Annotated[U64, Meta(
        description=("the union member's trailing reserved u64; must be 0, except for "
                     "7.0 purgeable_state, where it is purge_state_val.retained_ptr "
                     "(readable and writable and holding 0 unless retained_init or "
                     "retained_fault say otherwise)"))] = 0
    retained_init: Annotated[int, Meta(ge=0, le=0xFFFFFFFF, description=(
        "7.0 purgeable_state with a retained pointer: the u32 it holds before the call; "
        "non-zero is EINVAL before anything changes"))] = 0
    retained_fault: Annotated[Literal["read", "write"], Meta(description=(
        "7.0 purgeable_state with a retained pointer: read = the pointer cannot be read "
        "(EFAULT before anything changes); write = it reads but cannot be written "
        "(EFAULT after the madvise took effect)"))] | UnsetType = UNSET
    reserved: Annotated[tuple[U64, U64], Meta(description=(
        "drm_xe_madvise.reserved[2]; must be [0, 0]"))] = (0, 0)
    extensions: Annotated[U64, Meta(description=(
        "drm_xe_madvise.extensions: never read by xe_vm_madvise_ioctl() or "
        "madvise_args_are_sane() (6.18 and 7.0), so any value is accepted"))] = 0


class QueryEvent(Event, tag="query"):
    """The memory-range attributes of the VMAs in a range.

    Like the kernel's query there is no alignment or VM-size check and a killed VM can
    still be queried; a zero range reports the VMA containing addr (if any). Each VMA's
    flags and default_pat_index are model additions (the kernel reports start, end,
    devmem_fd, migration_policy, atomic and pat_index).
    """

    kernel: ClassVar[str] = (
        "DRM_IOCTL_XE_VM_QUERY_MEM_RANGE_ATTRS: drivers/gpu/drm/xe/xe_vm.c: "
        "xe_vm_query_vmas_attrs_ioctl() (no alignment or VM-size checks; a killed VM can be "
        "queried).")
    errors = (_EINVAL_FIELDS, ("EINVAL", "no VM has this name"))
    result = R.QueryResult
    vm: VmName
    addr: Annotated[U64, Meta(description="start address, bytes")] = 0
    range: Annotated[int, Meta(ge=0, extra_json_schema={"maximum": U64_MAX}, description=(
        "length in bytes; default: to the end of the VM (0 if addr is beyond it); 0 reports "
        "the VMA containing addr"))] | UnsetType = UNSET


class QueryMemRangeAttrsEvent(Event, tag="query_mem_range_attrs"):
    """The memory-range-attribute query with the uAPI's two-call protocol.

    Call once with num_mem_ranges 0, sizeof_mem_range_attr 0 and no vector to learn
    the count and the entry size (64); then again with a vector of that many entries.
    The arguments are checked before the VM is looked up; more VMAs than entries is
    ENOSPC (the VMA count changed between the calls). Like the kernel, no alignment,
    VM-size or killed-VM check.
    """

    kernel: ClassVar[str] = (
        "DRM_IOCTL_XE_VM_QUERY_MEM_RANGE_ATTRS: drivers/gpu/drm/xe/xe_vm.c: "
        "xe_vm_query_vmas_attrs_ioctl(), xe_vm_query_vmas(), get_mem_attrs().")
    errors = (_EINVAL_FIELDS,
              ("EINVAL", "num_mem_ranges 0 with a vector or a non-zero "
                         "sizeof_mem_range_attr; num_mem_ranges > 0 without a vector or "
                         "with sizeof_mem_range_attr != 64 (checked before the VM lookup)"),
              ("EINVAL", "no VM has this name"),
              ("ENOSPC", "more VMAs in the range than num_mem_ranges"))
    result = R.QueryMemRangeAttrsResult
    vm: VmName
    start: Annotated[U64, Meta(description="first address")] = 0
    range: Annotated[U64, Meta(description="length in bytes")] = 0
    num_mem_ranges: Annotated[int, Meta(ge=0, le=(1 << 32) - 1, description=(
        "entries in the vector (0: the count call)"))] = 0
    sizeof_mem_range_attr: Annotated[int, Meta(ge=0, le=(1 << 32) - 1, description=(
        "the caller's entry size (64 = sizeof(struct drm_xe_mem_range_attr))"))] = 0
    vector: Annotated[bool, Meta(description=(
        "vector_of_mem_attr is a valid pointer (false: NULL)"))] = False


class VmKillEvent(Event, tag="vm_kill"):
    """Ban a VM, as the driver does after a fatal error."""

    kernel: ClassVar[str] = "drivers/gpu/drm/xe/xe_vm.c: xe_vm_kill()."
    errors = (_EINVAL_FIELDS, ("EINVAL", "no VM has this name"))
    vm: VmName


class VmDestroyEvent(Event, tag="vm_destroy"):
    """Destroy one VM mid-trace.

    Its SVM ranges are unbound and removed, its pagemap references dropped and its VMAs
    destroyed; device pages it migrated stay in VRAM until the CPU touches them. Later
    events naming the VM find none (bind, madvise, query: EINVAL; gpu_access, prefetch:
    ENOENT), and the name may be used again.
    """

    kernel: ClassVar[str] = (
        "DRM_IOCTL_XE_VM_DESTROY: drivers/gpu/drm/xe/xe_vm.c: xe_vm_destroy_ioctl() -> "
        "xe_vm_close_and_put() -> xe_svm_close() (drivers/gpu/drm/xe/xe_svm.c).")
    errors = (_EINVAL_FIELDS, ("ENOENT", "no VM has this name"))
    vm: VmName


class MmapEvent(Event, tag="mmap"):
    """Map memory into the process at a fixed address: private anonymous by default.

    read_only maps it without PROT_WRITE: an SVM range over it is EPERM for every GPU
    access unless the GPU VMA is read-only too (drm_gpusvm_range_find_or_insert(): the
    context's read_only comes from the GPU VMA). shared (MAP_SHARED anonymous: shmem) and
    file (a file mapping) are not anonymous: their ranges never migrate to VRAM, so reads
    and writes are served from system memory and an atomic that needs VRAM is EACCES
    (__xe_svm_handle_pagefault()).
    """

    kernel: ClassVar[str] = (
        "mmap(MAP_FIXED | MAP_ANONYMOUS): mm/mmap.c: do_mmap(); replaced pages are unmapped "
        "first, sending MMU_NOTIFY_UNMAP. drivers/gpu/drm/drm_gpusvm.c: "
        "drm_gpusvm_range_find_or_insert() (VM_WRITE, vma_is_anonymous()).")
    errors = (_EINVAL_FIELDS,
              ("ESRCH", "process names no live process (never started, or exited)"),
              ("EINVAL", "addr or size not 4 KiB aligned, size 0, or the end wraps"))
    addr: Annotated[U64, Meta(description="CPU virtual address, bytes (4 KiB aligned)")]
    size: Annotated[U64, Meta(description="length in bytes (4 KiB aligned, non-zero)")]
    read_only: Annotated[bool, Meta(description="PROT_READ only (no VM_WRITE)")] = False
    shared: Annotated[bool, Meta(description="MAP_SHARED (shmem: not anonymous)")] = False
    file: Annotated[bool, Meta(description="a file mapping (not anonymous)")] = False
    process: ProcessName = MAIN_PROCESS


class MunmapEvent(Event, tag="munmap"):
    """Unmap process memory; SVM ranges over it are unmapped and queued for collection."""

    kernel: ClassVar[str] = (
        "munmap(): mm/vma.c: do_vmi_munmap() -> mmu_notifier_invalidate_range_start() "
        "(MMU_NOTIFY_UNMAP) -> drivers/gpu/drm/xe/xe_svm.c: xe_svm_invalidate().")
    errors = MmapEvent.errors
    addr: Annotated[U64, Meta(description="CPU virtual address, bytes (4 KiB aligned)")]
    size: Annotated[U64, Meta(description="length in bytes (4 KiB aligned, non-zero)")]
    process: ProcessName = MAIN_PROCESS


MremapFlagName = Literal["maymove", "fixed", "dontunmap"]
#: mremap flag names, in the order of their bits (MREMAP_MAYMOVE 1, _FIXED 2, _DONTUNMAP 4).
MREMAP_FLAGS = ("maymove", "fixed", "dontunmap")


class MremapEvent(Event, tag="mremap"):
    """Move and/or resize a CPU mapping; the result's addr is where it is now.

    Pages move with the mapping: system pages and device pages alike (a page in VRAM stays
    there). The old span's SVM ranges see an unmap (they are unmapped and queued for the
    collector), so the GPU faults the pages in again at the new address. fixed with equal
    sizes moves every mapping in the old span (the gaps kept); dontunmap leaves the old
    span mapped and empty (an anonymous one reads zero pages). Refusals come in the
    kernel's order: the argument checks (all EINVAL), then the mapping checks (EFAULT),
    then growth that fits nowhere (ENOMEM); nothing changes on a refusal.
    """

    kernel: ClassVar[str] = (
        "mremap(): mm/mremap.c: do_mremap() (check_mremap_params(), check_prep_vma(), "
        "remap_move(), mremap_to(), mremap_at()) -> move_vma() -> move_page_tables() -> "
        "mmu_notifier_invalidate_range_start() (MMU_NOTIFY_UNMAP over the old span) -> "
        "drivers/gpu/drm/xe/xe_svm.c: xe_svm_invalidate().")
    errors = (_EINVAL_FIELDS,
              ("ESRCH", "process names no live process (never started, or exited)"),
              ("EINVAL", "addr not 4 KiB aligned; new_size 0 or past TASK_SIZE; with fixed or "
                         "dontunmap: new_addr not 4 KiB aligned, its span past TASK_SIZE, "
                         "no maymove, dontunmap with old_size != new_size, or the spans "
                         "overlap; old_size 0 with a move or growth"),
              ("EFAULT", "addr is not mapped, or a move or growth crosses the end of its "
                         "mapping"),
              ("ENOMEM", "growth without maymove that does not fit in place, or no free "
                         "address space"))
    result = R.MremapResult
    addr: Annotated[U64, Meta(description="CPU address of the mapping (4 KiB aligned)")]
    old_size: Annotated[U64, Meta(description="bytes to take from addr (rounded up to 4 KiB)")]
    new_size: Annotated[U64, Meta(description="new length in bytes (rounded up to 4 KiB)")]
    flags: Annotated[list[MremapFlagName], Meta(description=(
        "MREMAP_* by name: maymove, fixed, dontunmap"))] = []
    new_addr: Annotated[U64, Meta(description=(
        "with fixed: the target address; with dontunmap alone: a hint"))] = 0
    process: ProcessName = MAIN_PROCESS


class MprotectEvent(Event, tag="mprotect"):
    """Make a span of CPU memory read-only or read-write again.

    GPU mappings over a span whose protection changes are zapped (an invalidation that
    is not an unmap: nothing is queued for the collector); pages stay where they are.
    A read-only span gives EFAULT to CPU writes and EPERM to GPU writes and atomics.
    """

    kernel: ClassVar[str] = (
        "mprotect(PROT_READ[|PROT_WRITE]): mm/mprotect.c: do_mprotect_pkey() -> "
        "mprotect_fixup() -> change_protection() -> mmu_notifier_invalidate_range_start() "
        "(MMU_NOTIFY_PROTECTION_VMA) -> drivers/gpu/drm/xe/xe_svm.c: xe_svm_invalidate().")
    errors = (_EINVAL_FIELDS,
              ("ESRCH", "process names no live process (never started, or exited)"),
              ("EINVAL", "addr not 4 KiB aligned"),
              ("ENOMEM", "the span wraps or part of it is not mapped"))
    addr: Annotated[U64, Meta(description="CPU virtual address, bytes (4 KiB aligned)")]
    size: Annotated[U64, Meta(description="length in bytes (rounded up to 4 KiB; 0 does "
                                          "nothing)")]
    read_only: Annotated[bool, Meta(description=(
        "PROT_READ only (true) or PROT_READ|PROT_WRITE (false)"))]
    process: ProcessName = MAIN_PROCESS


class CpuWriteEvent(Event, tag="cpu_write"):
    """The CPU stores a value to every page of a range."""

    kernel: ClassVar[str] = (
        "A CPU store; a page in device memory faults back first: "
        "drivers/gpu/drm/drm_pagemap.c: drm_pagemap_migrate_to_ram().")
    errors = (_EINVAL_FIELDS,
              ("ESRCH", "process names no live process (never started, or exited)"),
              ("EINVAL", "addr or size not 4 KiB aligned or size 0; more than the model "
                         "serves in one event (64 GiB written, 4 GiB read: "
                         "pysvm.mm.mmap.MAX_ACCESS_BYTES, MAX_READ_BYTES)"),
              ("EFAULT", "a page is not mapped"))
    addr: Annotated[U64, Meta(description="CPU virtual address, bytes (4 KiB aligned)")]
    size: Annotated[U64, Meta(description="length in bytes (4 KiB aligned, non-zero)")]
    value: Value = 0
    process: ProcessName = MAIN_PROCESS


class CpuReadEvent(Event, tag="cpu_read"):
    """The CPU loads every page of a range."""

    kernel: ClassVar[str] = CpuWriteEvent.kernel.replace("store", "load")
    errors = CpuWriteEvent.errors
    result = R.CpuReadResult
    addr: Annotated[U64, Meta(description="CPU virtual address, bytes (4 KiB aligned)")]
    size: Annotated[U64, Meta(description="length in bytes (4 KiB aligned, non-zero)")]
    process: ProcessName = MAIN_PROCESS


class SmapsEvent(Event, tag="smaps"):
    """What /proc/PID/smaps says of a range of process memory: resident, clean and dirty."""

    kernel: ClassVar[str] = (
        "A read of /proc/PID/smaps: fs/proc/task_mmu.c show_smap() -> smaps_pte_entry() -> "
        "smaps_account(), summed over the parts of the CPU VMAs inside the range (the file "
        "reports whole VMAs, one block each). "
        "A page is dirty when its PTE or its folio is: a CPU store dirties it, and so does a "
        "GPU fault served from system memory on a writable VMA that populates it, even a "
        "read (drm_gpusvm_get_pages() asks hmm_range_fault() for write access unless the "
        "VMA is read-only); GPU writes do not, and a page migrated back from VRAM is dirty "
        "only if it was dirty before it left (mm/migrate.c remove_migration_pte()).")
    errors = (_EINVAL_FIELDS,
              ("ESRCH", "process names no live process (never started, or exited)"),
              ("EINVAL", "addr or size not 4 KiB aligned, size 0, or the end beyond 2^64"))
    result = R.SmapsResult
    addr: Annotated[U64, Meta(description="CPU virtual address, bytes (4 KiB aligned)")]
    size: Annotated[U64, Meta(description="length in bytes (4 KiB aligned, non-zero)")]
    process: ProcessName = MAIN_PROCESS


class GpuAccessEvent(Event, tag="gpu_access"):
    """The GPU reads, writes or atomically increments every page of a range of a VM."""

    kernel: ClassVar[str] = (
        "A GPU access: a missing or invalid PTE raises a page fault, serviced by "
        "drivers/gpu/drm/xe/xe_svm.c: xe_svm_handle_pagefault() for CPU-mirror VMAs; an "
        "atomic on a discrete device needs the range in VRAM "
        "(xe_svm_range_needs_migrate_to_vram()).")
    errors = (_EINVAL_FIELDS,
              ("ENOENT", "no VM has this name, or the VM was killed"),
              ("EINVAL", "the VM is not in fault mode; addr or size not 4 KiB aligned or "
                         "size 0; no VMA at a page; more than the model serves in one event "
                         "(64 GiB, 4 GiB for a read); tile is not a tile of the device"),
              ("EPERM", "write or atomic to a read-only VMA"),
              ("ETIME", "an atomic that keeps faulting because the range cannot move to "
                        "VRAM (the GPU job would time out)"),
              ("ELOOP", "the fault_guard limit was reached"),
              ("other", "the fault handler's own errno (ENOENT, EBUSY, ENOMEM, ...), with "
                      "faults, retries and fault_addr"))
    result = R.GpuAccessResult
    vm: VmName
    addr: Annotated[U64, Meta(description="GPU virtual address, bytes (4 KiB aligned)")]
    size: Annotated[U64, Meta(description="length in bytes (4 KiB aligned, non-zero)")]
    op: Annotated[GpuOp, Meta(description="read, write (stores value) or atomic (adds 1)")]
    value: Value = 0
    tile: Annotated[int, Meta(ge=0, le=255, description=(
        "the tile whose GT runs the access (its PTEs, and the tile a fault is serviced "
        "for: validity, migration target and rebind, xe_pagefault.c gt_to_tile()); "
        "default 0; a tile the device lacks is EINVAL"))] = 0


class PrefetchEvent(Event, tag="prefetch"):
    """PREFETCH a range of a VM: CPU-mirror ranges are made, migrated and bound; BO VMAs
    are migrated to the region (xe_bo_migrate); userptr VMAs are pinned."""

    kernel: ClassVar[str] = (
        "DRM_IOCTL_XE_VM_BIND with DRM_XE_VM_BIND_OP_PREFETCH on CPU-address-mirror VMAs: "
        "drivers/gpu/drm/xe/xe_vm.c: xe_vm_bind_ioctl().")
    errors = (_EINVAL_FIELDS,
              ("ENOENT", "no VM has this name"),
              ("EINVAL", "the VM is not in fault mode; the region is not in the device's "
                         "mem_region_mask; bad alignment; the range passes the VM's end "
                         "(checked after the killed test); pref_loc over a BO VMA; "
                         "a BO VMA whose placements lack the region"),
              ("ENOENT", "the VM was killed"),
              ("EBUSY", "7.0: a BO in the range is DONTNEED (EINVAL if purged)"),
              ("other", "the errno of range creation or binding; a failed VRAM allocation "
                        "or get_pages EOPNOTSUPP/EFAULT/EPERM is success with nothing bound"))
    result = R.PrefetchResult
    vm: VmName
    addr: Annotated[U64, Meta(description="GPU virtual address, bytes (4 KiB aligned)")]
    range: Annotated[U64, Meta(description="length in bytes")]
    region: Annotated[PrefetchRegion, Meta(description=(
        "where the pages should end up: vram, system, pref_loc (each CPU-mirror VMA's "
        "madvised preferred location, DRM_XE_CONSULT_MEM_ADVISE_PREF_LOC) or a region "
        "instance number (0 system, k tile k-1's VRAM; vram is 1); the ranges are bound "
        "on every tile"))]


class RangesEvent(Event, tag="ranges"):
    """List the VM's SVM ranges."""

    kernel: ClassVar[str] = (
        "No ioctl (an inspection of the model): the struct drm_gpusvm_range tree of "
        "drivers/gpu/drm/drm_gpusvm.c.")
    errors = (_EINVAL_FIELDS, ("ENOENT", "no VM has this name"),
              ("EINVAL", "the VM is not in fault mode"))
    result = R.RangesResult
    vm: VmName


class GcEvent(Event, tag="gc"):
    """Run the VM's SVM garbage collector now."""

    kernel: ClassVar[str] = (
        "drivers/gpu/drm/xe/xe_svm.c: xe_svm_garbage_collector() (normally run from the fault "
        "handler or its work item).")
    errors = (_EINVAL_FIELDS, ("ENOENT", "no VM has this name"),
              ("EINVAL", "the VM is not in fault mode"),
              ("other", "the collector failed (not -EAGAIN)"))
    result = R.GcResult
    vm: VmName


class BoPurgeEvent(Event, tag="bo_purge"):
    """The shrinker purges a DONTNEED buffer object now (7.0).

    Purging is decided by memory pressure in the kernel, so a trace says when it
    happens. The BO's backing store is dropped (its pages read 0 afterwards through
    existing mappings of the model) and the GPU mappings of every VMA of the BO are
    zapped; a later GPU fault on it is EACCES, a new bind EINVAL, and a purgeable
    madvise over it reports retained 0.
    """

    kernel: ClassVar[str] = (
        "drivers/gpu/drm/xe/xe_shrinker.c -> xe_bo_shrink() purging a DONTNEED BO, "
        "xe_bo_move_notify() zapping its PTEs (7.0); state per xe_bo.h madv_purgeable.")
    errors = (_EINVAL_FIELDS,
              ("ENOENT", "no BO has this name"),
              ("EBUSY", "the BO is not DONTNEED (a model rule: the shrinker only purges "
                        "DONTNEED BOs)"),
              ("EINVAL", "profile 6.18 (no purgeable BOs)"))
    result = R.BoPurgeResult
    bo: Annotated[str, Meta(description="the BO to purge")]


class ShrinkEvent(Event, tag="shrink"):
    """Memory pressure: the core mm runs the device's drm_pagemap shrinker once.

    count_objects first (the idle cached pagemaps listed), then, if any, scan_objects
    for up to nr_to_scan of them, oldest first; each is taken from its tile's cache and
    destroyed. Only the 7.0 pagemap cache lists pagemaps; in 6.18 the device holds its
    pagemap, so the list is always empty.
    """

    kernel: ClassVar[str] = (
        "drivers/gpu/drm/drm_pagemap_util.c: drm_pagemap_shrinker_count(), "
        "drm_pagemap_shrinker_scan() (called by mm/shrinker.c do_shrink_slab()).")
    errors = (_EINVAL_FIELDS, ("ENOENT", "no device has this name"),
              ("ENODEV", "the device is unbound (its shrinker was freed)"))
    result = R.ShrinkResult
    device: DeviceName
    nr_to_scan: Annotated[int, Meta(ge=1, le=1 << 20, description=(
        "the most pagemaps to free (shrink_control.nr_to_scan; the core's batch is 128)"))] = 128


class AdvanceEvent(Event, tag="advance"):
    """Let time pass: the virtual clock moves forward by ms milliseconds.

    The model never reads wall time. The clock starts at 0; besides this event only a CPU
    access or a device's page collection moves it, when it has to wait for an atomic
    timeslice to expire (counted in the summary as cpu_timeslice_waits and
    cpu_timeslice_wait_ms, or hmm_timeslice_waits and hmm_timeslice_wait_ms). ms 0 reads
    the clock.
    """

    kernel: ClassVar[str] = (
        "The passing of jiffies (include/linux/jiffies.h: get_jiffies_64(), HZ=1000), as "
        "read by drivers/gpu/drm/drm_pagemap.c: drm_pagemap_migrate_to_devmem() (sets "
        "timeslice_expiration) and __drm_pagemap_migrate_to_ram() (declines to migrate "
        "before it).")
    errors = (_EINVAL_FIELDS,)
    result = R.AdvanceResult
    ms: Annotated[int, Meta(ge=0, le=MAX_ADVANCE_MS, description=(
        "milliseconds to let pass (0: just read the clock)"))]


class EvictEvent(Event, tag="evict"):
    """Move every page out of a device's VRAM (every tile's, or one tile's) to system
    memory."""

    kernel: ClassVar[str] = (
        "TTM eviction of the VRAM BOs backing SVM memory: drivers/gpu/drm/xe/xe_svm.c: "
        "xe_svm_bo_evict() -> drivers/gpu/drm/drm_pagemap.c: drm_pagemap_evict_to_ram(); "
        "each tile's VRAM region has its own TTM manager (xe_ttm_vram_mgr.c).")
    errors = (_EINVAL_FIELDS, ("ENOENT", "no device has this name"),
              ("EINVAL", "tile is not a tile of the device"))
    result = R.EvictResult
    device: DeviceName
    tile: Annotated[int, Meta(ge=0, le=255, description=(
        "evict only this tile's VRAM (default: every tile's)"))] | UnsetType = UNSET


class InvalidateEvent(Event, tag="invalidate"):
    """An MMU notifier invalidation that is not an unmap: the CPU mapping stays."""

    kernel: ClassVar[str] = (
        "mm/mmu_notifier.c: mmu_notifier_invalidate_range_start() with an event other than "
        "MMU_NOTIFY_UNMAP (reclaim, MADV_DONTNEED, mprotect, KSM, ...) -> "
        "drivers/gpu/drm/xe/xe_svm.c: xe_svm_invalidate(): GPU mappings zapped, nothing "
        "queued for the collector, page contents unchanged.")
    errors = (_EINVAL_FIELDS,
              ("ESRCH", "process names no live process (never started, or exited)"),
              ("EINVAL", "addr or size not 4 KiB aligned, size 0, or the end beyond 2^64"))
    addr: Annotated[U64, Meta(description="CPU virtual address, bytes (4 KiB aligned)")]
    size: Annotated[U64, Meta(description="length in bytes (4 KiB aligned, non-zero)")]
    event: Annotated[NotifyEvent, Meta(description="MMU_NOTIFY_* event, by name")] = "clear"
    process: ProcessName = MAIN_PROCESS


class FaultGuardEvent(Event, tag="fault_guard"):
    """Bound the fault loop of a VM (a model guard against livelock)."""

    kernel: ClassVar[str] = (
        "No kernel counterpart: the kernel's fault loop is unbounded. With a guard a fault "
        "still not serviced after max_iterations rounds fails with ELOOP and says why it kept "
        "retrying.")
    errors = (_EINVAL_FIELDS, ("ENOENT", "no VM has this name"),
              ("EINVAL", "the VM is not in fault mode"))
    result = R.FaultGuardResult
    vm: VmName
    max_iterations: Annotated[int, Meta(ge=0, le=1 << 31, description=(
        "fault-loop rounds allowed; 0 removes the guard"))]


class InjectEvent(Event, tag="inject"):
    """Queue an event to run once, the next time any VM's fault handler reaches a point."""

    kernel: ClassVar[str] = (
        "No kernel counterpart: stands for a concurrent CPU munmap, eviction or invalidation "
        "racing drivers/gpu/drm/xe/xe_svm.c: xe_svm_handle_pagefault() at one of its steps. "
        "The injected event's output appears in the gpu_access result under injected.")
    errors = (("EINVAL", "an unknown field, a missing required field, a wrong type or an "
                         "integer out of range, in the inject event or in its event"),
              ("EINVAL", "event is an inject, gpu_access or prefetch (the fault handler "
                         "holds the VM lock); no fault-mode VM exists yet"))
    at: Annotated[InjectionPoint, Meta(description=(
        "fault.start (before the collector runs in each round), fault.after_find_range, "
        "fault.after_migrate, fault.after_get_pages, fault.before_bind"))]
    event: Annotated["AnyEvent", Meta(description="the event to run, a whole event object")]


class LinkEvent(Event, tag="link"):
    """Join two devices by a fast interconnect (peer-to-peer VRAM access)."""

    kernel: ClassVar[str] = (
        "PCI peer-to-peer reachability between two devices. In the newest driver "
        "xe_has_interconnect() (drivers/gpu/drm/xe/xe_svm.c) decides it and linked devices "
        "share one pagemap owner group (drivers/gpu/drm/drm_pagemap_util.c: "
        "drm_pagemap_acquire_owner()); 6.18 has one owner per device.")
    errors = (_EINVAL_FIELDS, ("ENOENT", "a or b names no device"))
    result = R.LinkResult
    a: DeviceName
    b: DeviceName


class UnbindDeviceEvent(Event, tag="unbind_device"):
    """Unbind the driver from a device: its pages move to RAM, its pagemaps go."""

    kernel: ClassVar[str] = (
        "Driver unbind: drivers/gpu/drm/xe/xe_pci.c: xe_pci_remove() (drm_dev_unplug(), "
        "device memory migrated to RAM, devm teardown).")
    errors = (_EINVAL_FIELDS, ("ENOENT", "no device has this name"),
              ("ENODEV", "the device is already unbound"))
    result = R.UnbindDeviceResult
    device: DeviceName


class RmmodEvent(Event, tag="rmmod"):
    """Unload the driver module of a device (unbinding it first if still bound)."""

    kernel: ClassVar[str] = (
        "delete_module() (kernel/module/main.c), refused while a pagemap device hold pins the "
        "module.")
    errors = (_EINVAL_FIELDS, ("ENOENT", "no device has this name; its module is not loaded"),
              ("EBUSY", "pagemap device holds pin the module (run_workers drops released "
                        "holds)"))
    result = R.RmmodResult
    device: DeviceName


class RunWorkersEvent(Event, tag="run_workers"):
    """Run all queued deferred work until the queues are empty."""

    kernel: ClassVar[str] = (
        "The work items the kernel runs later: the SVM garbage-collector work "
        "(drivers/gpu/drm/xe/xe_svm.c), the Xe pagemap destroy work and the drm_pagemap "
        "device-unhold work (drivers/gpu/drm/drm_pagemap.c).")
    errors = (_EINVAL_FIELDS,)
    result = R.RunWorkersResult


class PagemapsEvent(Event, tag="pagemaps"):
    """List the live drm_pagemaps."""

    kernel: ClassVar[str] = (
        "No ioctl (an inspection of the model): the struct drm_pagemap objects of "
        "drivers/gpu/drm/drm_pagemap.c and their cache (drm_pagemap_util.c).")
    errors = (_EINVAL_FIELDS,)
    result = R.PagemapsResult


class TeardownEvent(Event, tag="teardown"):
    """End of the simulation: close every VM, evict, run the work, unload every module."""

    kernel: ClassVar[str] = (
        "Process exit (every VM file closed) then unloading every driver module and the "
        "drm_pagemap module; what is still referenced afterwards is a leak.")
    errors = (_EINVAL_FIELDS,)
    result = R.TeardownResult



# -- an array of binds (issue 14, P3-B) -----------------------------------------------------

class BindArrayOp(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """One struct drm_xe_vm_bind_op of a bind_array: the fields of the bind event."""

    op: Annotated[BindOp, Meta(description="map, map_userptr or unmap")]
    addr: Annotated[U64, Meta(description="start address, bytes (4 KiB aligned)")]
    range: Annotated[U64, Meta(description="length in bytes (4 KiB aligned, non-zero)")]
    flags: Annotated[list[BindFlagName], Meta(description=(
        "DRM_XE_VM_BIND_FLAG_* by name, as in the bind event"))] = []
    pat_index: Annotated[int, Meta(ge=0, le=0xFFFF, description="the PAT index (u16)")] = 0
    offset: Annotated[U64, Meta(description=(
        "op map: offset into the BO, bytes; op map_userptr: the CPU address"))] = 0
    bo: Annotated[str, Meta(description=(
        "op map: the BO to map (none: a NULL or CPU-mirror map)"))] | UnsetType = UNSET


class BindArrayEvent(Event, tag="bind_array"):
    """Several bind operations in one ioctl (num_binds = the length of binds).

    Each refusal stage runs over every op before the next stage starts, so a bad op
    anywhere refuses the whole array before anything changes: the argument checks of
    every op, then the killed VM, then every op's range inside the VM, then every op's BO
    (lookup, then its range, offset and caching). An empty array does nothing and
    succeeds. The ops are then applied in order with the effects of single binds; when
    one fails while its VMAs are created (live SVM ranges, a DONTNEED or purged BO), the
    earlier ops are unwound and nothing is left changed.
    """

    kernel: ClassVar[str] = (
        "DRM_IOCTL_XE_VM_BIND with num_binds > 1 and vector_of_binds: drivers/gpu/drm/xe/"
        "xe_vm.c: xe_vm_bind_ioctl(), vm_bind_ioctl_check_args(), "
        "xe_vm_bind_ioctl_validate_bo(), vm_bind_ioctl_ops_unwind().")
    errors = (_EINVAL_FIELDS,
              ("EINVAL", "no VM has this name; any op's argument checks (as for bind)"),
              ("EOPNOTSUPP", "7.0: any op with the decompress flag"),
              ("ENOENT", "the VM was killed"),
              ("EINVAL", "any op's range lies outside the VM"),
              ("ENOENT", "any op names no BO"),
              ("EINVAL", "any op's range or offset outside its BO, or a non-coherent PAT "
                         "index for a CPU-cached or imported BO"),
              ("EBUSY", "an op's live SVM ranges or DONTNEED BO (earlier ops are unwound)"),
              ("EINVAL", "7.0: an op maps a purged BO (earlier ops are unwound)"))
    vm: VmName
    binds: Annotated[list[BindArrayOp], Meta(description=(
        "the ops (struct drm_xe_vm_bind_op), in order"))]


class VmGetPropertyEvent(Event, tag="vm_get_property"):
    """DRM_IOCTL_XE_VM_GET_PROPERTY (7.0): the VM's failed GPU page faults.

    Two calls: with size 0 the result's size is what the saved faults need (48 bytes
    each); then with that size (or a smaller multiple of 48) and a data pointer the
    result lists that many faults, oldest first. A fault is saved when the fault
    handler fails it (at most 50 per VM; later ones are dropped); a fault that is
    serviced, or an atomic that keeps faulting until the job times out, is not saved.
    Reading does not empty the list. 6.18 has no such ioctl (EINVAL).
    """

    kernel: ClassVar[str] = (
        "DRM_IOCTL_XE_VM_GET_PROPERTY: drivers/gpu/drm/xe/xe_vm.c: "
        "xe_vm_get_property_ioctl(), xe_vm_get_property_helper(), fill_faults(); the "
        "faults are saved by drivers/gpu/drm/xe/xe_pagefault.c: xe_pagefault_save_to_vm() "
        "-> xe_vm_add_fault_entry_pf().")
    errors = (_EINVAL_FIELDS,
              ("EINVAL", "6.18: the ioctl does not exist"),
              ("EINVAL", "non-zero extensions, pad or reserved"),
              ("ENOENT", "no VM has this name"),
              ("EINVAL", "property is not 0 (FAULTS)"),
              ("EINVAL", "size larger than the saved faults need, or not a multiple of 48"),
              ("EFAULT", "size > 0 without a data pointer"))
    result = R.VmGetPropertyResult
    vm: VmName
    property: Annotated[int, Meta(ge=0, le=(1 << 32) - 1, description=(
        "DRM_XE_VM_GET_PROPERTY_*: 0 is FAULTS"))] = 0
    size: Annotated[int, Meta(ge=0, le=(1 << 32) - 1, description=(
        "bytes of the data buffer (0: the count call)"))] = 0
    data: Annotated[bool, Meta(description=(
        "data is a valid pointer (false: NULL or unmapped)"))] = True
    extensions: Annotated[U64, Meta(description="must be 0")] = 0
    pad: Annotated[int, Meta(ge=0, le=(1 << 32) - 1, description="must be 0")] = 0
    reserved: Annotated[tuple[U64, U64, U64], Meta(description=(
        "drm_xe_vm_get_property.reserved[3]; must be [0, 0, 0]"))] = (0, 0, 0)


# -- more than one process (issue 16) ----------------------------------------------------

class ProcessStartEvent(Event, tag="process_start"):
    """Start another process: an address space of its own, empty, sharing the devices.

    Later events name it in their process field: mmap, munmap, cpu_write, cpu_read and
    invalidate act in its address space, and vm_create makes a VM through its own open of
    the device file. Devices (and so their VRAM, and eviction under pressure) are shared
    by every process. Its address space starts empty, as after execve(): a fork()ed
    child's copy-on-write view of its parent's pages is not modelled.
    """

    kernel: ClassVar[str] = (
        "A new task with its own struct mm_struct: kernel/fork.c: mm_alloc() (via fs/exec.c: "
        "bprm_mm_init() after fork()), then an open() of the device file in that task "
        "(drivers/gpu/drm/xe/xe_device.c: xe_file_open()).")
    errors = (_EINVAL_FIELDS,
              ("EEXIST", "a live process has this name"))
    name: Annotated[str, Meta(description=(
        "a new process name, unique among the live processes (main is the first one)"))]


class ProcessExitEvent(Event, tag="process_exit"):
    """A process exits: its address space is torn down, then its device files are closed.

    In do_exit()'s order: the address space goes first (every interval notifier hears
    MMU_NOTIFY_RELEASE over the whole space, then MMU_NOTIFY_UNMAP over each mapping,
    whose pages are freed: device pages give their VRAM back), then the last reference to
    each device file is dropped and every VM the process created is closed (its SVM state
    torn down, its VMAs destroyed) and its name freed. Its name may be started again.
    """

    kernel: ClassVar[str] = (
        "kernel/exit.c: do_exit() -> exit_mm() -> mmput() -> mm/mmap.c: exit_mmap() "
        "(mm/mmu_notifier.c: mmu_notifier_release() -> mn_itree_release() with "
        "MMU_NOTIFY_RELEASE, then unmap_vmas() with MMU_NOTIFY_UNMAP); then exit_files() -> "
        "the file's release -> drivers/gpu/drm/xe/xe_device.c: xe_file_close() -> "
        "xe_vm_close_and_put() for each VM in xef->vm.xa.")
    errors = (_EINVAL_FIELDS,
              ("ESRCH", "process names no live process (never started, or exited)"))
    result = R.ProcessExitResult
    process: Annotated[str, Meta(description="the process that exits")]


AnyEvent = Union[  # noqa: UP007 - a runtime union object msgspec can decode into
    ConfigEvent, DeviceEvent, VmCreateEvent, BoCreateEvent, BindEvent, MadviseEvent,
    QueryEvent, VmKillEvent, MmapEvent, MunmapEvent, MremapEvent, MprotectEvent,
    CpuWriteEvent, CpuReadEvent, SmapsEvent,
    GpuAccessEvent, PrefetchEvent, RangesEvent, GcEvent, EvictEvent, InvalidateEvent,
    FaultGuardEvent, InjectEvent, LinkEvent, UnbindDeviceEvent, RmmodEvent,
    RunWorkersEvent, PagemapsEvent, TeardownEvent, BoPurgeEvent, VmDestroyEvent,
    QueryMemRangeAttrsEvent, ShrinkEvent,
    BindArrayEvent, VmGetPropertyEvent, ProcessStartEvent, ProcessExitEvent,
    AdvanceEvent,
]

#: event name -> its Struct, in documentation order.
EVENTS: Mapping[str, type[Event]] = MappingProxyType({
    typing.cast(str, cls.__struct_config__.tag): cls for cls in typing.get_args(AnyEvent)})

_DECODER = msgspec.json.Decoder(AnyEvent)


class TraceDecodeError(XeError):
    """A line or object that is not a valid event: errno EINVAL, message naming the field.

    ``ev`` is the event name when the input was an object whose ``"ev"`` is a string
    (whether or not such an event exists), else None; it is what an output line
    reports as ``"ev"``.
    """

    def __init__(self, message: str, ev: str | None = None) -> None:
        super().__init__(errno.EINVAL, message)
        self.ev = ev


# -- decoding --------------------------------------------------------------------

# Any integer above U64_MAX has at least 20 digits: only such lines need the
# Python-level u64 check (msgspec decodes big JSON integers without complaint).
_LONG_INT_B = re.compile(rb"[1-9][0-9]{19}")
_LONG_INT_S = re.compile(r"[1-9][0-9]{19}")


def decode(line: bytes | str) -> Event:
    """One trace line -> its event Struct; :class:`TraceDecodeError` (EINVAL) if invalid."""
    try:
        ev: Event = _DECODER.decode(line)
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise _explain_line(line) from None
    if (_LONG_INT_B.search(line) if isinstance(line, bytes) else _LONG_INT_S.search(line)):
        _check_u64(ev, "")
    return ev


def decode_object(obj: object) -> Event:
    """An already parsed event (``{"ev": ..., fields...}``) -> its Struct, as :func:`decode`."""
    if not isinstance(obj, dict):
        raise TraceDecodeError("an event must be a JSON object")
    name = obj.get("ev")
    if not isinstance(name, str):
        raise TraceDecodeError('missing or non-string field "ev"')
    cls = EVENTS.get(name)
    if cls is None:
        raise TraceDecodeError(f"unknown event {name!r}", name)
    try:
        ev = msgspec.convert(obj, cls, strict=True)
    except msgspec.ValidationError as e:
        raise TraceDecodeError(_explain(name, str(e), obj), name) from None
    _check_u64(ev, "")
    return ev


def convert(name: str, fields: Mapping[str, object]) -> Event:
    """Event ``name`` from keyword arguments (its fields without ``ev``), as :func:`decode`."""
    if "ev" in fields:
        raise TraceDecodeError(f'unknown field "ev" in {name} (give the event as name)',
                               name if name in EVENTS else None)
    return decode_object({"ev": name, **fields})


def as_kwargs(event: Event) -> dict[str, object]:
    """The event's fields without ``ev``; an absent optional field without a fixed default
    is None, and a nested event (inject's ``event``) is a plain ``{"ev": ...}`` dict."""
    out = msgspec.structs.asdict(event)
    for f in _FIXUP[type(event)]:
        v = out[f]
        if v is UNSET:
            out[f] = None
        elif isinstance(v, Event):
            out[f] = msgspec.to_builtins(v)
    if isinstance(event, BindArrayEvent):       # the ops as plain dicts, as a caller writes them
        out["binds"] = msgspec.to_builtins(event.binds)
    return out


def _is_u64(t: object) -> bool:
    """Whether a msgspec.inspect type is (or has a union member that is) a u64 integer."""
    mi = msgspec.inspect
    if isinstance(t, mi.Metadata):
        return isinstance(t.type, mi.IntType) and \
            (t.extra_json_schema or {}).get("maximum") == U64_MAX
    if isinstance(t, mi.UnionType):
        return any(_is_u64(x) for x in t.types)
    return False


def _u64_fields(cls: type[msgspec.Struct]) -> tuple[tuple[str, bool], ...]:
    """(field, is_sequence) of the u64 fields of ``cls`` (maximum U64_MAX in the schema)."""
    mi = msgspec.inspect
    out: list[tuple[str, bool]] = []
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    for f in info.fields:
        t = f.type.type if isinstance(f.type, mi.Metadata) else f.type
        if _is_u64(f.type):
            out.append((f.name, False))
        elif isinstance(t, mi.TupleType | mi.ListType) and any(
                _is_u64(x) for x in (t.item_types if isinstance(t, mi.TupleType)
                                      else (t.item_type,))):
            out.append((f.name, True))
    return tuple(out)


_U64: dict[type[Event], tuple[tuple[str, bool], ...]] = {c: _u64_fields(c) for c in EVENTS.values()}

def _fixup_fields(cls: type[Event]) -> tuple[str, ...]:
    """The fields :func:`as_kwargs` rewrites: optional without a default (UNSET when
    absent) and inject's nested event."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return tuple(f.name for f in info.fields
                 if (not f.required and f.default is msgspec.NODEFAULT
                     and f.default_factory is msgspec.NODEFAULT)
                 or (cls is InjectEvent and f.name == "event"))


_FIXUP: dict[type[Event], tuple[str, ...]] = {c: _fixup_fields(c) for c in EVENTS.values()}


def _check_u64(ev: Event, prefix: str, outer: str | None = None) -> None:
    """Refuse u64 fields above U64_MAX (msgspec bounds stop at int64)."""
    tag = outer or _tag(ev)
    for name, seq in _U64[type(ev)]:
        v = getattr(ev, name)
        if seq:
            if any(x > U64_MAX for x in v):
                raise TraceDecodeError(_custom(_tag(ev), name, v)
                                       or f'field "{prefix}{name}" holds a value above '
                                       f"{U64_MAX}", tag)
        elif isinstance(v, int) and v > U64_MAX:
            raise TraceDecodeError(f'field "{prefix}{name}" = {v} is above {U64_MAX}', tag)
    if isinstance(ev, InjectEvent):
        _check_u64(ev.event, prefix + "event.", tag)


def _tag(ev: Event) -> str:
    return typing.cast(str, ev.__struct_config__.tag)


# -- refusal messages (slow path only) ---------------------------------------------


def _explain_line(line: bytes | str) -> TraceDecodeError:
    """Why ``line`` is not an event, in the words of the old field helpers."""
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
        obj = json.loads(text)
    except UnicodeDecodeError as e:
        return TraceDecodeError(f"not valid UTF-8 at byte {e.start}")
    except json.JSONDecodeError as e:
        return TraceDecodeError(f"not valid JSON: {e.msg} (column {e.colno})")
    except RecursionError:
        return TraceDecodeError("not valid JSON: nested too deeply")
    except ValueError as e:
        return TraceDecodeError(f"not valid JSON: {e}")
    try:
        decode_object(obj)
    except TraceDecodeError as e:
        return e
    # The stdlib parser and msgspec disagree (e.g. a lone surrogate escape).
    try:
        _DECODER.decode(line)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        return TraceDecodeError(f"not valid JSON: {e}", obj.get("ev"))
    raise AssertionError("unreachable: the line decodes")  # pragma: no cover


_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_TYPE_WORDS = {"int": "an integer", "str": "a string", "bool": "true or false",
               "array": "a list", "object": "an object", "null": "null", "float": "a number"}


def _dumps(v: object) -> str:
    try:
        return json.dumps(v)
    except (TypeError, ValueError):
        return repr(v)


def _choices(name: str, field: str) -> list[str] | None:
    """The Literal choices of ``field`` of event ``name``, in their declared order."""
    cls = EVENTS[name]
    t = typing.get_type_hints(cls, include_extras=False).get(field)
    for cand in (t, *typing.get_args(t)):
        while typing.get_origin(cand) is list:
            cand = typing.get_args(cand)[0]
        if typing.get_origin(cand) is Literal:
            return [str(x) for x in typing.get_args(cand)]
    return None


def _custom(name: str, field: str, value: object) -> str | None:
    """Refusal messages that name the problem in the event's own words."""
    if name == "bind" and field == "flags" and isinstance(value, list):
        bad = next((f for f in value if not isinstance(f, str) or f not in BIND_FLAGS), None)
        if bad is not None or not value:
            return f"bind: unknown flag {bad!r}; use {sorted(BIND_FLAGS)}"
    if name == "bo_create" and field == "placement" and isinstance(value, list):
        bad = next((p for p in value if p not in PLACEMENTS), None)
        return f"bo_create: unknown placement {bad!r}; use {list(PLACEMENTS)}"
    if name == "madvise" and field == "type" and isinstance(value, str):
        return f"madvise: unknown type {value!r}; use {sorted(MADVISE_TYPES)}"
    if name == "madvise" and field == "reserved" and isinstance(value, list | tuple):
        if len(value) != 2:
            return 'madvise: "reserved" must hold two integers'
        return 'madvise: "reserved" must hold two u64 integers'
    return None


def _explain(name: str, msg: str, obj: Mapping[str, object]) -> str:
    """msgspec's ValidationError text for event ``name`` -> a message naming the field."""
    m = _AT.match(msg)
    assert m is not None
    what, path = m["what"], m["path"] or ""
    keys: list[str | int] = [k if k is not None else int(i)
                             for k, i in _PATH_PART.findall(path)]
    if name == "inject" and keys[:1] == ["event"]:
        inner = obj.get("event")
        if keys[1:] == ["ev"] or (len(keys) == 1 and not what.startswith("Object ")) or \
                what == "Object missing required field `ev`":
            if isinstance(inner, dict) and isinstance(inner.get("ev"), str):
                return f"inject: unknown event {inner['ev']!r} in field \"event\""
            return 'inject: field "event" must be an event object with "ev"'
        assert isinstance(inner, dict)
        inner_name = inner["ev"]
        return "inject: " + _explain(inner_name, msg.replace("$.event", "$"), inner)
    field = next((k for k in keys if isinstance(k, str)), None)
    fm = re.match(r"Object (contains unknown|missing required) field `(.*)`$", what)
    if fm:
        if fm[1] == "missing required":
            return f'missing field "{fm[2]}"'
        return f'unknown field "{fm[2]}" in {name}'
    value: object = obj
    for k in keys:
        try:
            value = value[k]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            break
    top = obj.get(field) if field is not None else None
    if field is not None:
        special = _custom(name, field, top)
        if special is not None:
            return special
    fname = ".".join(str(k) for k in keys) if keys else "?"
    fname = re.sub(r"\.(\d+)", r"[\1]", fname)
    if what.startswith("Invalid enum value"):
        choices = _choices(name, field) if field is not None else None
        return f'field "{fname}" = {value!r}: expected one of {choices}'
    rm = re.match(r"Expected `int` (>=|<=) (-?\d+)$", what)
    if rm:
        return f'field "{fname}" = {value} is {"below" if rm[1] == ">=" else "above"} {rm[2]}'
    lm = re.match(r"Expected `array` of length (\d+)", what)
    if lm:
        return f'field "{fname}" must hold {lm[1]} items, not {_dumps(value)}'
    tm = re.match(r"Expected `([^`]*)`", what)
    if tm:
        words = " or ".join(_TYPE_WORDS.get(t.strip(), t.strip()) for t in tm[1].split("|"))
        return f'field "{fname}" must be {words}, not {_dumps(value)}'
    return f'field "{fname}": {what}'


# -- JSON Schema -----------------------------------------------------------------


def json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of one trace line, from the Structs above.

    Each event definition adds ``x-kernel`` (what it stands for), ``x-errors``
    (errno, when) and ``x-result`` (a reference to its result Struct's schema).
    """
    results = sorted({c.result for c in EVENTS.values()}, key=lambda c: c.__name__)
    (top, *_), defs = msgspec.json.schema_components(
        [AnyEvent, *results], ref_template="#/$defs/{name}")
    for name, cls in EVENTS.items():
        d = defs[cls.__name__]
        d["x-event"] = name
        d["x-kernel"] = cls.kernel
        d["x-errors"] = [list(e) for e in cls.errors]
        d["x-result"] = {"$ref": f"#/$defs/{cls.result.__name__}"}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://pysvm.invalid/trace.schema.json",
            "title": "pysvm trace event",
            "description": ("One line of a pysvm trace (JSON Lines): an object whose \"ev\" "
                            "names the event. The x-result of each event definition gives "
                            "the fields its output line adds after \"result\"."),
            **top, "$defs": defs}
