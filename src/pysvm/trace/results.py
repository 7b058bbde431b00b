"""The result fields of every trace event, as msgspec Structs.

An output line is ``{"i", "ev", "result", ...}``: after ``result`` (``"ok"`` or
a kernel errno name) and, when it is not ok, ``message``, come the fields of
the event's result Struct below. These Structs are the single source for the
JSON Schema (:func:`pysvm.trace.schema.json_schema`) and for
docs/trace-format.md; tests check every golden output line against them.

Kernel: none (these are the values the ioctls return or that the model reports).
"""

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

__all__ = [
    "Result", "NoResult", "ConfigResult", "DeviceResult", "MadviseResult", "VmaAttrs",
    "VmaInfo", "QueryResult", "CpuReadResult", "SmapsResult", "Injected", "GpuAccessResult",
    "PrefetchResult", "RangeInfo", "RangesResult", "GcResult", "EvictResult",
    "FaultGuardResult", "LinkResult", "UnbindDeviceResult", "RmmodResult",
    "RunWorkersResult", "PagemapInfo", "PagemapsResult", "TeardownResult", "MremapResult",
    "ProcessExitResult", "AdvanceResult", "SUMMARY_KEYS",
]

Count = Annotated[int, Meta(ge=0)]
Addr = Annotated[int, Meta(ge=0, extra_json_schema={"maximum": (1 << 64) - 1},
                           description="GPU / CPU virtual address, bytes")]
Size = Annotated[int, Meta(ge=0, extra_json_schema={"maximum": (1 << 64) - 1},
                           description="length in bytes")]

#: The counters of the final ``{"summary": {...}}`` line that are always
#: present, in this order (0 when nothing happened); other counters follow.
SUMMARY_KEYS = ("events", "errors", "faults", "retries", "migrations_to_vram",
                "migrations_to_system", "bytes_to_vram", "bytes_to_system", "gc_runs",
                "vmas_reset", "pagemaps_alive")


class Result(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Base of the result Structs (the fields after ``result``/``message``)."""


class NoResult(Result):
    """No result fields."""


class ConfigResult(Result):
    """The profile now in force."""

    profile: Annotated[Literal["6.18", "7.0", "newest"], Meta(description="the kernel profile")]


class DeviceResult(Result):
    """The new device's file number."""

    fd: Annotated[int, Meta(ge=3, description=(
        "the number of the device's DRM file (3, 4, ... in creation order); a madvise "
        "devmem_fd may give it as an integer"))]


class MremapResult(Result):
    """Where the mapping is now."""

    addr: Annotated[Addr, Meta(description=(
        "the mapping's CPU address after the call (mremap()'s return value)"))]


class MadviseResult(Result):
    """What the madvise invalidated."""

    invalidated: Annotated[list[tuple[Addr, Size]], Meta(description=(
        "[addr, range] of every VMA whose GPU mappings the call zapped (not skipped, not "
        "NULL), in address order, after the split"))]
    retained: Annotated[int, Meta(ge=0, le=1, description=(
        "purgeable_state with a retained pointer (union_reserved != 0, 7.0): the value "
        "written back, 0 when a BO in the range was already purged, else 1"))] | UnsetType = UNSET


class VmaAttrs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A VMA's memory-range attributes (struct xe_vma_mem_attr)."""

    devmem_fd: Annotated[int | str, Meta(description=(
        "preferred location: 0 (the faulting device), -1 (system memory), the device "
        "name when it is a device's file, else the raw number"))]
    migration_policy: Annotated[int, Meta(ge=0, le=0xFFFF, description=(
        "0 = DRM_XE_MIGRATE_ALL_PAGES, 1 = DRM_XE_MIGRATE_ONLY_SYSTEM_PAGES"))]
    atomic: Annotated[int, Meta(ge=0, le=0xFFFFFFFF, description=(
        "DRM_XE_ATOMIC_*: 0 undefined, 1 device, 2 global, 3 cpu"))]
    pat_index: Annotated[int, Meta(ge=0, le=0xFFFF, description="the PAT index in force")]
    default_pat_index: Annotated[int, Meta(ge=0, le=0xFFFF, description=(
        "the PAT index the VMA was bound with (what an attribute reset restores)"))]


class VmaInfo(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """One VMA of a query."""

    addr: Addr
    range: Size
    flags: Annotated[list[Literal["cpu_addr_mirror", "null", "read_only", "autoreset",
                                  "dumpable"]],
                     Meta(description="the VMA's bind flags")]
    attrs: VmaAttrs
    bo: Annotated[str, Meta(description="BO-backed VMA: the BO's name")] | UnsetType = UNSET
    offset: Annotated[int, Meta(ge=0, description=(
        "BO-backed VMA: the offset into the BO, bytes"))] | UnsetType = UNSET
    userptr: Annotated[int, Meta(ge=0, description=(
        "userptr VMA: the CPU address it maps"))] | UnsetType = UNSET
    purgeable: Annotated[Literal["dontneed", "purged"], Meta(description=(
        "7.0, BO-backed VMA: the VMA was madvised DONTNEED, or its BO was purged (a model "
        "addition: the kernel's query does not report it)"))] | UnsetType = UNSET


class QueryResult(Result):
    """The VMAs that intersect the queried range."""

    vmas: Annotated[list[VmaInfo], Meta(description="in address order")]


class CpuReadResult(Result):
    """The value of every page read."""

    data: Annotated[list[int], Meta(description="one value per 4 KiB page, in order")]


class SmapsResult(Result):
    """What /proc/PID/smaps would add up over the range, in kB (4 per page)."""

    rss: Annotated[int, Meta(ge=0, description=(
        "Rss: pages present, in system memory or in device memory (a device-private entry "
        "counts as present); zero pages are not counted"))]
    anonymous: Annotated[int, Meta(ge=0, description=(
        "Anonymous: the part of rss in anonymous mappings"))]
    private_clean: Annotated[int, Meta(ge=0, description=(
        "Private_Clean: rss that is not dirty"))]
    private_dirty: Annotated[int, Meta(ge=0, description=(
        "Private_Dirty: rss whose PTE is dirty or whose folio has PG_dirty"))]
    device: Annotated[int, Meta(ge=0, description=(
        "the part of rss in device memory (a model addition: smaps has no such field)"))]
    zero: Annotated[int, Meta(ge=0, description=(
        "pages mapping the zero page, which a read fault maps and smaps skips (a model "
        "addition)"))]


class Injected(msgspec.Struct, kw_only=True):
    """An injected event that fired during a gpu_access: the point, the faulting address,
    then that event's own output line without `i` (its `ev`, `result`, `message` and
    result fields)."""

    at: Annotated[str, Meta(description="the injection point")]
    fault_addr: Addr
    ev: Annotated[str | None, Meta(description=(
        "the injected event's name"))] | UnsetType = UNSET
    result: Annotated[str, Meta(description='"ok" or its errno name')]
    message: Annotated[str, Meta(description="when not ok: what was wrong")] | UnsetType = UNSET


class GpuAccessResult(Result):
    """Fault statistics of the access (also on failure), and the data read."""

    faults: Annotated[Count, Meta(description="GPU page faults raised")]
    retries: Annotated[Count, Meta(description="fault-handler retries (-EAGAIN loops)")]
    data: Annotated[list[int], Meta(description=(
        "op read: one value per 4 KiB page"))] | UnsetType = UNSET
    fault_addr: Annotated[int, Meta(ge=0, description=(
        "on failure: the page address that failed"))] | UnsetType = UNSET
    injected: Annotated[list[Injected], Meta(description=(
        "injected events that fired during this access, in firing order"))] | UnsetType = UNSET


class PrefetchResult(Result):
    """How many SVM ranges the prefetch bound."""

    ranges_bound: Count


class RangeInfo(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One SVM range (struct drm_gpusvm_range)."""

    addr: Addr
    range: Size
    location: Annotated[str, Meta(description=(
        '"system" or the name of the device whose VRAM holds the pages'))]
    unmapped: Annotated[bool, Meta(description=(
        "the CPU mapping is gone and the range waits for the garbage collector"))]


class RangesResult(Result):
    """The VM's SVM ranges in address order."""

    ranges: list[RangeInfo]


class GcResult(Result):
    """Whether the collector stopped early."""

    eagain: Annotated[bool, Meta(description=(
        "the collector returned -EAGAIN (work left for a later run)"))]


class MemRangeAttr(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One struct drm_xe_mem_range_attr as the kernel fills it."""

    start: Addr
    end: Addr
    devmem_fd: Annotated[int, Meta(description="preferred_mem_loc.devmem_fd (raw)")]
    migration_policy: Annotated[int, Meta(ge=0)]
    atomic: Annotated[int, Meta(ge=0, description="atomic.val")]
    pat_index: Annotated[int, Meta(ge=0, description="pat_index.val")]


class QueryMemRangeAttrsResult(Result):
    """The count call's answer, or the filled vector."""

    num_mem_ranges: Annotated[Count, Meta(description=(
        "count call: the VMAs in the range; fill call: the entries written"))]
    sizeof_mem_range_attr: Annotated[Count, Meta(description=(
        "the size the kernel expects (64; echoed back on a fill call)"))]
    mem_ranges: Annotated[list[MemRangeAttr], Meta(description=(
        "fill call only: the entries written, in address order"))] | UnsetType = UNSET


class VmFault(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One struct xe_vm_fault as fill_faults() writes it (7.0)."""

    address: Annotated[int, Meta(ge=0, extra_json_schema={"maximum": (1 << 64) - 1},
                                 description="the faulting page, canonical form")]
    address_precision: Annotated[int, Meta(ge=0, description="bytes (always 4096)")]
    access_type: Annotated[int, Meta(ge=0, description="0 read, 1 write, 2 atomic")]
    fault_type: Annotated[int, Meta(ge=0, description=(
        "0 not present, 1 write access, 2 atomic access"))]
    fault_level: Annotated[int, Meta(ge=0, description=(
        "page-table level of the fault; the model has no levels and reports 0"))]


class VmGetPropertyResult(Result):
    """The count call's size, or the filled fault entries (7.0)."""

    size: Annotated[Count, Meta(description=(
        "count call (size 0): the bytes the saved faults need (48 per entry); fill call: "
        "the size given"))]
    faults: Annotated[list[VmFault], Meta(description=(
        "fill call only: the first size / 48 saved faults, oldest first"))] | UnsetType = UNSET


class AdvanceResult(Result):
    """The virtual clock after the advance."""

    now_ms: Annotated[Count, Meta(description=(
        "milliseconds since the run started (the model's jiffies at HZ=1000); moved only by "
        "advance events and by CPU accesses that wait out an atomic timeslice"))]


class ShrinkResult(Result):
    """What one shrinker pass found and freed."""

    listed: Annotated[Count, Meta(description=(
        "cached inactive pagemaps on the device's shrinker before the scan (count_objects)"))]
    freed: Annotated[Count, Meta(description="pagemaps the scan destroyed")]


class BoPurgeResult(Result):
    """The purged BO's VMAs whose GPU mappings were zapped."""

    zapped: Annotated[Count, Meta(description=(
        "VMAs (over all VMs) whose GPU mappings of the BO were invalidated"))]


class EvictResult(Result):
    """Pages moved out of the device's VRAM."""

    pages: Annotated[Count, Meta(description="4 KiB pages migrated to system memory")]


class FaultGuardResult(Result):
    """The guard now in force."""

    max_iterations: Annotated[Count, Meta(description="0 = no guard")]


class LinkResult(Result):
    """No result fields."""


class UnbindDeviceResult(Result):
    """Pages moved to system memory by the unbind."""

    evicted_pages: Count


class RmmodResult(Result):
    """Pages moved to system memory when the unload had to unbind the device first."""

    evicted_pages: Count | UnsetType = UNSET


class RunWorkersResult(Result):
    """What the deferred work did."""

    work_items: Annotated[Count, Meta(description="driver work items run (GC work, ...)")]
    pagemaps_destroyed: Annotated[Count, Meta(description="drm_pagemaps freed")]
    holds_dropped: Annotated[Count, Meta(description="pagemap device holds dropped")]


class PagemapInfo(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One live drm_pagemap."""

    device: Annotated[str, Meta(description="the device providing the VRAM")]
    refcount: Count
    cached: Annotated[bool, Meta(description=(
        "unreferenced, kept on the pagemap cache's shrinker list for reuse"))]
    device_held: Annotated[bool, Meta(description=(
        "holds a reference on the device and its module"))]


class PagemapsResult(Result):
    """The live drm_pagemaps in creation order."""

    pagemaps: list[PagemapInfo]


class TeardownResult(Result):
    """What was still referenced after the teardown."""

    leftovers: Annotated[list[str], Meta(description="empty when everything was released")]


class ProcessExitResult(Result):
    """What the exit tore down."""

    unmapped: Annotated[Size, Meta(description=(
        "bytes of the process's mappings unmapped by the address-space teardown"))]
    vms_closed: Annotated[Count, Meta(description=(
        "VMs the process had created that its file's close closed"))]
