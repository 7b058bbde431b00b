"""Compiled core of gpuvm_core: the drm_gpuvm VA tree and split/merge walker.

Kernel: drivers/gpu/drm/drm_gpuvm.c (torvalds/linux cb9f145f).

Layout
------
The kernel keeps every VA (the kernel-reserved node included) in an augmented
interval tree plus an address-ordered list. Here one structure plays both
roles: a sequence of *chunks* (fixed-size struct-of-arrays leaves holding
``addr, range, obj, offset, id``), ordered by ``addr`` with equal addresses in
insertion order (= the kernel's list order), plus ``firsts`` (the first
address of each chunk) for a two-level binary search. Mappings with
``range > 0`` never overlap, so their inclusive ``last`` grows with ``addr``
and "first VA meeting [s, l]" is a predecessor search. Zero-length VAs break
that (``last = addr - 1`` mod 2**64, so one at 0 meets everything); their
addresses are also kept in a tiny sorted side array ``zaddr`` that
``c_iter_first`` consults. ``GpuVm`` owns the chunks, ``firsts``, ``zaddr``
and the reusable op-record buffer; all are allocated with ``PyMem_Raw*``
(visible to tracemalloc, usable without the GIL) and freed in
``__dealloc__``. ``vm.nbytes`` adds them up exactly.

Chunks hold GPUVM_CHUNK (64) slots: populate's appends leave them full; a
full chunk that must take a VA first lends VAs to a neighbour with room and
is split in two only when both neighbours are (nearly) full, which keeps
them ~80% full under random maps (splits alone give ~69%). 64 measured
as fast as 32 and faster than 128 on W1/W4 and needs the least memory.
The C declarations live in ``_core.pxd`` (cimport-able); ``GpuVm`` is a
final class so its C methods are direct (inlinable) calls.

Speed: searches are branch-free binary searches (firsts, then one chunk).
The chunk the last search landed in is kept (``hint``) and tried first: the
searches of one request (the walker's, then apply's unlink and inserts) land
in the same chunk, and two compares against ``firsts`` prove the hint is the
chunk the binary search would pick, so the result never depends on it.
The batch loop prefetches the chunk of request i+1 while request i runs;
``find_first_batch`` runs its queries in software-pipelined groups (one
lock-step search over ``firsts`` per group, prefetch of each query's chunk
keys, then of the answer's value lines). See docs/benchmarks.md.

Identity: each VA carries a 32-bit id (insertion counter). ``GpuVa`` is a view
holding its VM, ``addr``, ``id`` and a copy of the immutable fields, so it can
never read freed or reused memory; using a view whose VA was removed (remove,
``alive``) is detected by an ``(addr, id)`` lookup and refused with ENOENT.
When the counter wraps (after 2**32 inserts) ids are reused, checked: the ids
linked at that moment are collected (sorted) and skipped, so a new VA never
takes the id of a linked VA or of the reserved node (``c_new_id``). 32 bits
keep a slot at 36 bytes; ``_debug_set_next_id`` starts the counter near the
limit so the wrap is testable in milliseconds.

Op lists: the walker writes compact ``OpRec`` records; for a single request
straight into the new ``Ops``'s own block (a pooled one for short lists, so
no list ever sees another call's records and nothing is copied), for the batch
loops into the VM's scratch buffer. ``Ops`` builds Python op objects only
when indexed.
``apply(Ops)`` works on the records directly and refuses a list created
before the VM last changed (generation counter, ESTALE). The scratch buffer
shrinks back to ``SCRATCH_KEEP`` records after a call that grew it past that.

One caller at a time (docs/threads.md): every method that reads or changes
the tree takes the VM's guard (``busy``) for the whole call, after its
arguments are converted (which may run Python code) and before it reads the
tree. A call arriving while the guard is held - from another thread while a
batch runs without the GIL, or re-entrantly from a finalizer, a gc callback
or a generator run in the middle of a call - is refused with EBUSY and
changes nothing. Iterators hold a position, not the guard, and raise
RuntimeError on their next step if the VM changed (as dict iteration does).

Debug / sanitizer build
-----------------------
``GPUVM_DEBUG=1 pip install -e .`` builds into ``build/debug-*`` with
``-DGPUVM_SANITIZE=ON``: Cython ``boundscheck`` and ``wraparound`` on,
``-O1 -g -fsanitize=address,undefined``. Install it into a venv of its own
(the process must preload the ASan runtime, so it does not mix with a normal
one); docs/fuzzing.md has the exact commands::

    python3 -m venv .venv-asan && GPUVM_DEBUG=1 .venv-asan/bin/pip install -e '.[test]'
    LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \\
        .venv-asan/bin/pytest tests/gpuvm_core tests/fuzz -q

(``detect_leaks=0``: CPython's own allocations look like leaks at exit.)

Planted bug for the fuzz harness (debug build only: the release build
compiles it out of the walker): ``_debug_set_fault(1)`` makes case M6 (split
in the middle) compute the next piece's offset one too high.
"""

cimport cython
from cpython.mem cimport PyMem_RawMalloc, PyMem_RawRealloc, PyMem_RawFree
from libc.stdint cimport uint64_t, int64_t, uint32_t
from libc.stdlib cimport qsort
from libc.string cimport memmove, memcpy

import errno as _errno
import operator

import numpy as np

from ._common import GpuvmError, OpType, SmSteps, check_u64, check_obj

cdef extern from *:
    """
    #if defined(__GNUC__)
    #define gpuvm_prefetch(p) __builtin_prefetch((const void*)(p))
    #else
    #define gpuvm_prefetch(p) ((void)0)
    #endif
    """
    void gpuvm_prefetch(const void* p) noexcept nogil

cdef extern from *:
    """
    /* 1 in the debug/sanitizer build (CMake GPUVM_SANITIZE): the planted-bug hook. */
    #ifndef GPUVM_DEBUG_FAULTS
    #define GPUVM_DEBUG_FAULTS 0
    #endif
    """
    const int GPUVM_DEBUG_FAULTS

cdef enum:
    E_INVAL = 22
    E_EXIST = 17
    E_NOMEM = 12
    E_NOENT = 2

cdef enum:
    SCRATCH_KEEP = 256           # op records the scratch buffer keeps between calls
    OPS_MAP = 0                  # GpuVm._ops(what, ...)
    OPS_MADVISE = 1
    OPS_UNMAP = 2
    OPS_PREFETCH = 3

cdef enum:
    FIND_GROUP = 16              # queries per software-pipelined group in c_find_many

cdef u64 U64_MAX = 0xFFFFFFFFFFFFFFFF
cdef int _fault = 0

#: Request kinds of GpuVm.requests_batch.
REQ_MAP = K_MAP
REQ_UNMAP = K_UNMAP
REQ_MADVISE = K_MADVISE
#: Slots per leaf chunk of the sorted structure (a build-time constant).
CHUNK_SLOTS = GPUVM_CHUNK
#: True in the debug/sanitizer build (GPUVM_DEBUG=1): bounds checks, ASan, planted bugs.
DEBUG_BUILD = bool(GPUVM_DEBUG_FAULTS)

_BUSY_MSG = ("the VM is in use by another call (another thread, or a finalizer, gc callback "
             "or generator run in the middle of a call): one caller at a time, see "
             "docs/threads.md")


# ----------------------------------------------------------------------------
# small helpers


cdef inline Py_ssize_t _bisect_right(const u64* a, Py_ssize_t n, u64 key) noexcept nogil:
    """Number of leading a[i] <= key (a sorted). Branch-free (the compiler emits cmov)."""
    cdef const u64* base = a
    cdef Py_ssize_t half
    if n <= 0:
        return 0
    while n > 1:
        half = n >> 1
        base = base + half if base[half] <= key else base
        n -= half
    return (base - a) + (base[0] <= key)


cdef inline Py_ssize_t _bisect_left(const u64* a, Py_ssize_t n, u64 key) noexcept nogil:
    """Number of leading a[i] < key (a sorted). Branch-free."""
    cdef const u64* base = a
    cdef Py_ssize_t half
    if n <= 0:
        return 0
    while n > 1:
        half = n >> 1
        base = base + half if base[half] < key else base
        n -= half
    return (base - a) + (base[0] < key)


cdef int _cmp_u32(const void* a, const void* b) noexcept nogil:
    cdef uint32_t x = (<const uint32_t*>a)[0], y = (<const uint32_t*>b)[0]
    return (x > y) - (x < y)


cdef inline int _poscmp(Pos a, Pos b) noexcept nogil:
    if a.ci != b.ci:
        return -1 if a.ci < b.ci else 1
    if a.si != b.si:
        return -1 if a.si < b.si else 1
    return 0


cdef inline int _push(OpBuf* buf) noexcept nogil:
    """Make room for one more record; -ENOMEM on failure."""
    cdef Py_ssize_t cap
    cdef OpRec* p
    if buf.n == buf.cap:
        cap = buf.cap * 2 if buf.cap else 16
        p = <OpRec*>PyMem_RawRealloc(buf.recs, cap * sizeof(OpRec))
        if p == NULL:
            return -E_NOMEM
        buf.recs = p
        buf.cap = cap
    buf.n += 1
    return 0


cdef inline void _setva(VaRec* v, u64 addr, u64 rng, int64_t obj, u64 off, uint32_t vid) noexcept nogil:
    v.addr = addr
    v.rng = rng
    v.obj = obj
    v.off = off
    v.vid = vid


cdef inline void _move_slots(Chunk* dst, Py_ssize_t di, Chunk* src, Py_ssize_t si,
                             Py_ssize_t n) noexcept nogil:
    """Move slots [si, si+n) of ``src`` to [di, di+n) of ``dst``, every field array.

    Overlap-safe (memmove), so it also shifts slots inside one chunk.
    """
    memmove(&dst.addr[di], &src.addr[si], n * sizeof(u64))
    memmove(&dst.rng[di], &src.rng[si], n * sizeof(u64))
    memmove(&dst.obj[di], &src.obj[si], n * sizeof(int64_t))
    memmove(&dst.off[di], &src.off[si], n * sizeof(u64))
    memmove(&dst.vid[di], &src.vid[si], n * sizeof(uint32_t))


cdef inline object _obj_py(int64_t o):
    return None if o < 0 else o


cdef extern from "Python.h":
    # Cannot fail for an exact int (the only kind passed here); overflow is reported in ``ov``.
    long long PyLong_AsLongLongAndOverflow(object v, int* ov) noexcept


cdef extern from *:
    """
    /* An exact int read without calling into the interpreter, when it is small:
       1 and *out set for an exact int in [0, 2**60) (CPython 3.11: up to two
       30-bit digits) or in [0, 2**30) (3.12+: a "compact" int, read through the
       PyUnstable_Long_* accessors); 0 otherwise, and the caller takes the
       checked path. Never raises. */
    static inline int gpuvm_small_u64(PyObject *v, uint64_t *out) {
        if (!PyLong_CheckExact(v))
            return 0;
    #if PY_VERSION_HEX >= 0x030C0000
        if (PyUnstable_Long_IsCompact((PyLongObject *)v)) {
            Py_ssize_t x = PyUnstable_Long_CompactValue((PyLongObject *)v);
            if (x >= 0) {
                *out = (uint64_t)x;
                return 1;
            }
        }
        return 0;
    #else
        {
            Py_ssize_t size = Py_SIZE(v);
            const digit *d = ((PyLongObject *)v)->ob_digit;
            if (size == 0) {
                *out = 0;
                return 1;
            }
            if (size == 1) {
                *out = (uint64_t)d[0];
                return 1;
            }
            if (size == 2) {
                *out = (uint64_t)d[0] | ((uint64_t)d[1] << PyLong_SHIFT);
                return 1;
            }
        }
        return 0;
    #endif
    }
    """
    bint gpuvm_small_u64(object v, uint64_t* out) noexcept


cdef u64 _u64_slow(object v, str what) except? 0:
    if type(v) is not int:
        v = check_u64(v, what)
    try:
        return <u64>v
    except OverflowError:
        raise GpuvmError(_errno.EINVAL, f"{what}={v} is outside the unsigned 64-bit range") from None


cdef inline u64 _u64(object v, str what) except? 0:
    """``v`` as a u64, or TypeError / EINVAL as check_u64 says.

    Fast path: an exact int in [0, 2**63) is read with one C call and no
    exception state; anything else (int subclasses, ``__index__`` objects,
    2**63 and up, negatives) takes the checked path.
    """
    cdef int ov = 0
    cdef long long x
    cdef u64 y
    if gpuvm_small_u64(v, &y):
        return y
    if type(v) is int:
        x = PyLong_AsLongLongAndOverflow(v, &ov)
        if ov == 0 and x >= 0:
            return <u64>x
    return _u64_slow(v, what)


cdef inline int _u64_into(object v, str what, u64* out) except -1:
    """``_u64`` for the per-request entry points: the value goes to ``out``, so a
    result of 0 (a default offset) needs no PyErr_Occurred() to tell it from an error."""
    if gpuvm_small_u64(v, out):
        return 0
    out[0] = _u64(v, what)
    return 0


cdef inline int64_t _to_obj(object v) except? -2:
    """An object handle: None -> -1, an int in [0, 2**63) as is, else check_obj's error."""
    cdef int ov = 0
    cdef long long x
    cdef u64 y
    if v is None:
        return -1
    if gpuvm_small_u64(v, &y):
        return <int64_t>y
    if type(v) is int:
        x = PyLong_AsLongLongAndOverflow(v, &ov)
        if ov == 0 and x >= 0:
            return <int64_t>x
    v = check_obj(v)
    return <int64_t>v


def _debug_set_fault(n):
    """Plant a bug for the fuzz harness. 0 = off; 1 = M6 next-piece offset off by one.

    Only the debug build (``GPUVM_DEBUG=1 pip install -e .``) has the planted
    bugs; in a release build 0 is accepted (nothing to turn off) and any other
    value raises RuntimeError. Kernel: none (test hook).
    """
    global _fault
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError("fault must be an int")
    if n not in (0, 1):
        raise ValueError("fault must be 0 (off) or 1 (M6 next offset + 1)")
    if n and not GPUVM_DEBUG_FAULTS:
        raise RuntimeError("the planted bugs exist only in the debug build of the core: "
                           "rebuild with GPUVM_DEBUG=1 pip install -e . (docs/fuzzing.md)")
    _fault = n


def _debug_get_fault():
    """The planted bug in effect (always 0 in a release build)."""
    return _fault


# ----------------------------------------------------------------------------
# views and ops

@cython.freelist(16)
@cython.no_gc
cdef class GpuVa:
    """A view of one mapping (fields copied; liveness checked on use).

    Not tracked by the cycle collector (it refers only to its VM, which holds
    no Python objects, so it can never be part of a cycle); kept on a free
    list, as lookups make one per hit. Kernel: struct drm_gpuva.
    """

    def __init__(self):
        raise TypeError("GpuVa objects come from a GpuVm (insert/find/iteration)")

    @property
    def addr(self):
        return self._addr

    @property
    def range(self):
        return self._rng

    @property
    def obj(self):
        return None if self._obj < 0 else self._obj

    @property
    def offset(self):
        return self._off

    @property
    def end(self):
        return <u64>(self._addr + self._rng)

    @property
    def last(self):
        return <u64>(self._addr + self._rng - 1)

    @property
    def reserved(self):
        return self.vm is not None and self.vm.kid != 0 and self._vid == self.vm.kid

    @property
    def alive(self):
        """True while this VA is still in its VM."""
        cdef Pos p
        cdef GpuVm vm = self.vm
        cdef bint found
        if vm is None:
            return False
        vm._enter()
        found = vm.c_locate(self._addr, self._vid, &p)
        vm.busy = 0
        return found

    def as_tuple(self):
        return (self._addr, self._rng, self.obj, self._off)

    def __eq__(self, other):
        if not isinstance(other, GpuVa):
            return NotImplemented
        cdef GpuVa o = <GpuVa>other
        return self.vm is o.vm and self._vid == o._vid and self._addr == o._addr

    def __hash__(self):
        return hash((id(self.vm), self._addr, self._vid))

    def __repr__(self):
        return (f"GpuVa(addr={self._addr:#x}, range={self._rng:#x}, obj={self.obj}, "
                f"offset={self._off:#x})")

    # A view names one VA of one live VM: copying it gives the same view (it is
    # immutable); deepcopy maps it onto the VM's copy when that VM is copied in
    # the same deepcopy, else it stays a view of the original VM.
    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        vm = memo.get(id(self.vm)) if self.vm is not None else None
        if vm is None:
            return self
        cdef VaRec r
        _setva(&r, self._addr, self._rng, self._obj, self._off, self._vid)
        return _make_va(<GpuVm?>vm, &r)

    def __reduce__(self):
        raise TypeError("a GpuVa is a view of a VA in a live GpuVm and cannot be pickled; "
                        "pickle va.as_tuple() (or the GpuVm) instead")


cdef inline GpuVa _va_of(object holder, GpuVa va):
    """``va`` of an op object, or TypeError if the object was made without __init__."""
    if va is None:
        raise TypeError(f"{type(holder).__name__} object has no va: it was made "
                        "without __init__")
    return va


cdef GpuVa _make_va(GpuVm vm, const VaRec* r):
    cdef GpuVa v = GpuVa.__new__(GpuVa)
    v.vm = vm
    v._addr = r.addr
    v._rng = r.rng
    v._obj = r.obj
    v._off = r.off
    v._vid = r.vid
    return v


cdef class OpMap:
    """Create a VA with exactly these values. Kernel: struct drm_gpuva_op_map."""

    def __init__(self, addr, range, obj=None, offset=0):  # noqa: A002
        self._addr = _u64(addr, "addr")
        self._rng = _u64(range, "range")
        self._obj = _to_obj(obj)
        self._off = _u64(offset, "offset")

    type = OpType.MAP

    @property
    def addr(self):
        return self._addr

    @property
    def range(self):
        return self._rng

    @property
    def obj(self):
        return None if self._obj < 0 else self._obj

    @property
    def offset(self):
        return self._off

    cdef dict _va_dict(self):
        return {"addr": self._addr, "range": self._rng, "obj": _obj_py(self._obj),
                "offset": self._off}

    def as_dict(self):
        return {"op": "map", "addr": self._addr, "range": self._rng, "obj": _obj_py(self._obj),
                "offset": self._off}

    def __repr__(self):
        return f"OpMap({self.as_dict()})"

    def __reduce__(self):
        return (OpMap, (self._addr, self._rng, _obj_py(self._obj), self._off))


cdef OpMap _make_map(const VaRec* r):
    cdef OpMap m = OpMap.__new__(OpMap)
    m._addr = r.addr
    m._rng = r.rng
    m._obj = r.obj
    m._off = r.off
    return m


cdef class OpUnmap:
    """Remove ``va``; ``keep`` is the kernel's merge hint. Kernel: struct drm_gpuva_op_unmap."""

    def __init__(self, GpuVa va not None, bint keep=False):
        self.va = va
        self.keep = keep

    type = OpType.UNMAP

    @property
    def addr(self):
        return _va_of(self, self.va)._addr

    @property
    def range(self):
        return _va_of(self, self.va)._rng

    @property
    def obj(self):
        return _va_of(self, self.va).obj

    @property
    def offset(self):
        return _va_of(self, self.va)._off

    cdef dict _fields(self):
        cdef GpuVa va = _va_of(self, self.va)
        return {"addr": va._addr, "range": va._rng, "obj": va.obj,
                "offset": va._off, "keep": bool(self.keep)}

    def as_dict(self):
        d = {"op": "unmap"}
        d.update(self._fields())
        return d

    def __repr__(self):
        if self.va is None:
            return "OpUnmap(<no va>)"
        return f"OpUnmap({self.as_dict()})"

    def __reduce__(self):
        return (OpUnmap, (_va_of(self, self.va), bool(self.keep)))


cdef class OpRemap:
    """Replace ``unmap.va`` by ``prev`` and/or ``next``. Kernel: struct drm_gpuva_op_remap."""

    def __init__(self, prev, next, OpUnmap unmap not None):  # noqa: A002
        if prev is not None and not isinstance(prev, OpMap):
            raise TypeError("prev must be an OpMap or None")
        if next is not None and not isinstance(next, OpMap):
            raise TypeError("next must be an OpMap or None")
        self.prev = prev
        self.next = next
        self.unmap = unmap

    type = OpType.REMAP

    def as_dict(self):
        if self.unmap is None:
            raise TypeError("OpRemap object has no unmap: it was made without __init__")
        return {
            "op": "remap",
            "prev": None if self.prev is None else (<OpMap>self.prev)._va_dict(),
            "next": None if self.next is None else (<OpMap>self.next)._va_dict(),
            "unmap": self.unmap._fields(),
        }

    def __repr__(self):
        if self.unmap is None or self.unmap.va is None:
            return "OpRemap(<no unmap>)"
        return f"OpRemap({self.as_dict()})"

    def __reduce__(self):
        if self.unmap is None:
            raise TypeError("OpRemap object has no unmap: it was made without __init__")
        return (OpRemap, (self.prev, self.next, self.unmap))


cdef class OpPrefetch:
    """Prefetch ``va``. Kernel: struct drm_gpuva_op_prefetch."""

    def __init__(self, GpuVa va not None):
        self.va = va

    type = OpType.PREFETCH

    @property
    def addr(self):
        return _va_of(self, self.va)._addr

    @property
    def range(self):
        return _va_of(self, self.va)._rng

    @property
    def obj(self):
        return _va_of(self, self.va).obj

    @property
    def offset(self):
        return _va_of(self, self.va)._off

    def as_dict(self):
        cdef GpuVa va = _va_of(self, self.va)
        return {"op": "prefetch", "addr": va._addr, "range": va._rng,
                "obj": va.obj, "offset": va._off}

    def __repr__(self):
        if self.va is None:
            return "OpPrefetch(<no va>)"
        return f"OpPrefetch({self.as_dict()})"

    def __reduce__(self):
        return (OpPrefetch, (_va_of(self, self.va),))


# Record blocks of short op lists. An Ops object is zeroed whole each time it
# is made (Cython's allocator clears the struct), so records kept inside it
# cost a ~400-byte clear per request even when the list is empty (W3). Short
# lists (<= OPS_INLINE records, most requests) take a block from this pool
# instead and give it back when the list dies; an empty list takes none.
# Touched only with the GIL held (Ops.__dealloc__, GpuVm._ops): the module
# does not declare itself free-threading safe, so the GIL is always there.
cdef OpRec* _rec_pool[OPS_POOL]
cdef int _rec_npool = 0


cdef inline OpRec* _recs_alloc(Py_ssize_t n) noexcept:
    """A block for ``n`` >= 1 records (NULL if out of memory)."""
    global _rec_npool
    if n > OPS_INLINE:
        return <OpRec*>PyMem_RawMalloc(n * sizeof(OpRec))
    if _rec_npool:
        _rec_npool -= 1
        return _rec_pool[_rec_npool]
    return <OpRec*>PyMem_RawMalloc(OPS_INLINE * sizeof(OpRec))


cdef inline void _recs_free(OpRec* p, Py_ssize_t n) noexcept:
    """Give back a block _recs_alloc(n) returned (NULL: nothing)."""
    global _rec_npool
    if p == NULL:
        return
    if n <= OPS_INLINE and _rec_npool < OPS_POOL:
        _rec_pool[_rec_npool] = p
        _rec_npool += 1
    else:
        PyMem_RawFree(p)


cdef object _make_op(GpuVm vm, const OpRec* r):
    if r.type == T_MAP:
        return _make_map(&r.va)
    if r.type == T_UNMAP:
        return OpUnmap(_make_va(vm, &r.va), r.keep)
    if r.type == T_REMAP:
        return OpRemap(_make_map(&r.prev) if r.has_prev else None,
                       _make_map(&r.next) if r.has_next else None,
                       OpUnmap(_make_va(vm, &r.va), r.keep))
    return OpPrefetch(_make_va(vm, &r.va))


@cython.freelist(8)
@cython.no_gc
cdef class Ops:
    """An op list, valid only while its VM is unchanged. Kernel: struct drm_gpuva_ops.

    Records are kept in C (none for an empty list, a pooled block for up to
    OPS_INLINE, else a heap block); Python op objects are built on first access. Not tracked
    by the cycle collector: it refers only to its VM (which holds no Python
    objects) and to op objects it built itself, none of which can refer back.
    """

    def __init__(self):
        raise TypeError("Ops lists come from GpuVm.*_ops_create()")

    def __dealloc__(self):
        _recs_free(self.recs, self.n)

    def __len__(self):
        return self.n

    cdef list _all(self):
        cdef Py_ssize_t i
        if self._objs is None:
            self._objs = [_make_op(self.vm, &self.recs[i]) for i in range(self.n)]
        return self._objs

    def __getitem__(self, i):
        return self._all()[i]

    def __iter__(self):
        return iter(self._all())

    def __bool__(self):
        return self.n > 0

    def as_dicts(self):
        return [op.as_dict() for op in self._all()]

    def __repr__(self):
        return f"Ops({self._all()!r})"

    def __reduce__(self):
        raise TypeError("an Ops list belongs to the live GpuVm it was made for and cannot be "
                        "pickled; pickle ops.as_dicts() instead")

    def __copy__(self):
        return self       # immutable

    def __deepcopy__(self, memo):
        return self


# ----------------------------------------------------------------------------
# the VM


@cython.final
cdef class GpuVm:
    """A GPU VA space. Kernel: struct drm_gpuvm.

    ``GpuVm(start, range, *, reserve_addr=0, reserve_range=0)``.
    """

    def __cinit__(self):
        self.next_id = 1

    def __init__(self, start, range, *, reserve_addr=0, reserve_range=0):  # noqa: A002
        cdef u64 s = _u64(start, "start")
        cdef u64 r = _u64(range, "range")
        cdef u64 ka = _u64(reserve_addr, "reserve_addr")
        cdef u64 kr = _u64(reserve_range, "reserve_range")
        if self.generation or self.nch or self.busy:
            raise RuntimeError("GpuVm.__init__ called twice")
        self.mm_start, self.mm_range = s, r
        self.reserve_addr, self.reserve_range = ka, kr
        # drm_gpuvm_init(): the reserved node is linked without range checks,
        # and only when its end does not wrap.
        if kr and ka + kr >= ka:
            if self.c_link(ka, kr, -1, 0) < 0:
                raise MemoryError()
            self.kid = self.last_id
            self.count -= 1

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(self.nch):
            PyMem_RawFree(self.chunks[i])
        PyMem_RawFree(self.chunks)
        PyMem_RawFree(self.firsts)
        PyMem_RawFree(self.zaddr)
        PyMem_RawFree(self.buf.recs)
        PyMem_RawFree(self.live_ids)

    cdef int _enter(self) except -1:
        """Take the guard (one caller at a time) or raise EBUSY; the caller clears ``busy``.

        Test-and-set under the GIL, with no Python code in between, so two
        threads cannot both get it. Callers convert their arguments first.
        """
        if self.busy:
            raise GpuvmError(_errno.EBUSY, _BUSY_MSG)
        self.busy = 1
        return 0

    cdef void _trim(self) noexcept:
        """Give back scratch memory a large request grew (keeps SCRATCH_KEEP records)."""
        cdef OpRec* p
        if self.buf.cap > SCRATCH_KEEP:
            p = <OpRec*>PyMem_RawRealloc(self.buf.recs, SCRATCH_KEEP * sizeof(OpRec))
            if p != NULL:
                self.buf.recs = p
                self.buf.cap = SCRATCH_KEEP
                if self.buf.n > SCRATCH_KEEP:
                    self.buf.n = 0

    # -- positions --------------------------------------------------------

    cdef inline Pos c_upper_raw(self, u64 key) noexcept nogil:
        """Where a VA starting at ``key`` is linked: after every VA with addr <= key.

        Not normalised: ``si`` may equal the chunk's ``n`` (append to that chunk).
        Outside batch loops (which prefetch the next request's whole chunk
        themselves), the chunk's key and range lines are prefetched first, so
        the in-chunk search and the range check wait for one memory latency
        instead of a chain of four or five.
        """
        cdef Pos p
        cdef Chunk* c
        cdef Py_ssize_t k
        p.ci = self.hint
        if not (p.ci < self.nch and self.firsts[p.ci] <= key
                and (p.ci + 1 == self.nch or self.firsts[p.ci + 1] > key)):
            p.ci = _bisect_right(self.firsts, self.nch, key) - 1
            if p.ci < 0:
                p.ci = 0
                p.si = 0
                return p
            self.hint = p.ci
        c = self.chunks[p.ci]
        if not self.in_batch:
            for k in range(0, GPUVM_CHUNK, 8):
                gpuvm_prefetch(&c.addr[k])
                gpuvm_prefetch(&c.rng[k])
        p.si = _bisect_right(c.addr, c.n, key)
        return p

    cdef inline Pos c_upper(self, u64 key) noexcept nogil:
        """First position whose addr > key."""
        cdef Pos p = self.c_upper_raw(key)
        if p.ci < self.nch and p.si == self.chunks[p.ci].n:
            p.ci += 1
            p.si = 0
        return p

    cdef inline Pos c_lower(self, u64 key) noexcept nogil:
        """First position whose addr >= key."""
        cdef Pos p
        cdef Chunk* c
        p.si = 0
        if self.nch == 0:
            p.ci = 0
            return p
        p.ci = self.hint
        if not (p.ci < self.nch and self.firsts[p.ci] < key
                and (p.ci + 1 == self.nch or self.firsts[p.ci + 1] >= key)):
            p.ci = _bisect_left(self.firsts, self.nch, key) - 1
            if p.ci < 0:
                p.ci = 0
            self.hint = p.ci
        c = self.chunks[p.ci]
        p.si = _bisect_left(c.addr, c.n, key)
        if p.si == c.n:
            p.ci += 1
            p.si = 0
        return p

    cdef void c_next(self, Pos* p) noexcept nogil:
        p.si += 1
        if p.si == self.chunks[p.ci].n:
            p.ci += 1
            p.si = 0

    cdef bint c_prev(self, Pos* p) noexcept nogil:
        if p.si > 0:
            p.si -= 1
            return True
        if p.ci == 0:
            return False
        p.ci -= 1
        p.si = self.chunks[p.ci].n - 1
        return True

    cdef void c_read(self, Pos p, VaRec* v) noexcept nogil:
        cdef Chunk* c = self.chunks[p.ci]
        v.addr = c.addr[p.si]
        v.rng = c.rng[p.si]
        v.obj = c.obj[p.si]
        v.off = c.off[p.si]
        v.vid = c.vid[p.si]

    cdef bint c_locate(self, u64 addr, uint32_t vid, Pos* out) noexcept nogil:
        """Find the VA (addr, vid)."""
        cdef Pos p = self.c_lower(addr)
        cdef Chunk* c
        while p.ci < self.nch:
            c = self.chunks[p.ci]
            if c.addr[p.si] != addr:
                return False
            if c.vid[p.si] == vid:
                out[0] = p
                return True
            self.c_next(&p)
        return False

    # -- the interval query ---------------------------------------------------

    cdef bint c_iter_first(self, u64 qs, u64 ql, Pos* out) noexcept nogil:
        """First VA in list order whose [addr, last] meets [qs, ql].

        Kernel: drm_gpuva_it_iter_first().
        """
        return self.c_iter_first_from(self.c_upper(qs), qs, ql, out)

    cdef bint c_iter_first_from(self, Pos p, u64 qs, u64 ql, Pos* out) noexcept nogil:
        """c_iter_first() given ``p = c_upper(qs)``."""
        cdef Pos q = p
        cdef Pos a, b
        cdef bint have_a = False
        cdef Chunk* c
        cdef u64 baddr
        cdef Py_ssize_t k
        # range > 0 VAs: last is monotone, so the best one is the last VA
        # starting at or before qs (if it reaches qs) or else the next one.
        while self.c_prev(&q):
            c = self.chunks[q.ci]
            if c.rng[q.si] != 0:
                if c.addr[q.si] + c.rng[q.si] - 1 >= qs:
                    a = q
                    have_a = True
                break
        if not have_a:
            q = p
            while q.ci < self.nch:
                if self.chunks[q.ci].rng[q.si] != 0:
                    a = q
                    have_a = True
                    break
                self.c_next(&q)
        if self.nz:
            # zero-length VAs: last = addr - 1 (mod 2^64) >= qs iff addr == 0 or addr > qs
            k = 0 if self.zaddr[0] == 0 else _bisect_right(self.zaddr, self.nz, qs)
            if k < self.nz:
                baddr = self.zaddr[k]
                b = self.c_lower(baddr)
                while self.chunks[b.ci].rng[b.si] != 0:
                    self.c_next(&b)
                if not have_a or _poscmp(b, a) < 0:
                    a = b
                    have_a = True
        if have_a and self.chunks[a.ci].addr[a.si] <= ql:
            out[0] = a
            return True
        return False

    cdef bint c_range_valid(self, u64 addr, u64 rng) noexcept nogil:
        """Kernel: drm_gpuvm_range_valid()."""
        cdef u64 end = addr + rng
        cdef u64 mm_end, kend
        if end < addr:
            return False
        mm_end = self.mm_start + self.mm_range
        if not (addr >= self.mm_start and end <= mm_end):
            return False
        kend = self.reserve_addr + self.reserve_range
        return not (self.reserve_range and addr < kend and self.reserve_addr < end)

    # -- link / unlink ----------------------------------------------------------

    cdef int c_insert_chunk(self, Py_ssize_t at, Chunk* c) noexcept nogil:
        cdef Py_ssize_t cap
        cdef Chunk** nc
        cdef u64* nf
        if self.nch == self.capch:
            cap = self.capch * 2 if self.capch else 8
            nc = <Chunk**>PyMem_RawRealloc(self.chunks, cap * sizeof(Chunk*))
            if nc == NULL:
                return -E_NOMEM
            self.chunks = nc
            nf = <u64*>PyMem_RawRealloc(self.firsts, cap * sizeof(u64))
            if nf == NULL:
                return -E_NOMEM
            self.firsts = nf
            self.capch = cap
        memmove(&self.chunks[at + 1], &self.chunks[at], (self.nch - at) * sizeof(Chunk*))
        memmove(&self.firsts[at + 1], &self.firsts[at], (self.nch - at) * sizeof(u64))
        self.chunks[at] = c
        self.firsts[at] = c.addr[0] if c.n else 0
        self.nch += 1
        return 0

    cdef void c_drop_chunk(self, Py_ssize_t at) noexcept nogil:
        PyMem_RawFree(self.chunks[at])
        memmove(&self.chunks[at], &self.chunks[at + 1], (self.nch - at - 1) * sizeof(Chunk*))
        memmove(&self.firsts[at], &self.firsts[at + 1], (self.nch - at - 1) * sizeof(u64))
        self.nch -= 1

    cdef void c_shift_right(self, Py_ssize_t ci, Py_ssize_t k) noexcept nogil:
        """Move the last ``k`` VAs of chunk ``ci`` to the front of chunk ``ci + 1``."""
        cdef Chunk* c = self.chunks[ci]
        cdef Chunk* d = self.chunks[ci + 1]
        cdef Py_ssize_t s = c.n - k
        _move_slots(d, k, d, 0, d.n)
        _move_slots(d, 0, c, s, k)
        d.n += k
        c.n = s
        self.firsts[ci + 1] = d.addr[0]

    cdef void c_shift_left(self, Py_ssize_t ci, Py_ssize_t k) noexcept nogil:
        """Move the first ``k`` VAs of chunk ``ci`` to the end of chunk ``ci - 1``."""
        cdef Chunk* c = self.chunks[ci]
        cdef Chunk* d = self.chunks[ci - 1]
        cdef Py_ssize_t m = c.n - k
        _move_slots(d, d.n, c, 0, k)
        _move_slots(c, 0, c, k, m)
        d.n += k
        c.n = m
        self.firsts[ci] = c.addr[0]

    cdef int c_link(self, u64 a, u64 r, int64_t o, u64 f) noexcept nogil:
        """Link a VA after every VA with the same start. 0 or -ENOMEM."""
        return self.c_link_at(self.c_upper_raw(a), a, r, o, f)

    cdef int c_link_at(self, Pos raw, u64 a, u64 r, int64_t o, u64 f) noexcept nogil:
        """Link a VA at ``raw = c_upper_raw(a)``. 0 or -ENOMEM.

        A full chunk first lends VAs to a neighbour with room (this keeps the
        chunks ~80% full under random inserts instead of ~69% with splits
        alone); only when both neighbours are (nearly) full is it split.
        """
        cdef Py_ssize_t ci = raw.ci, si = raw.si, half, m, lf, rf
        cdef Chunk* c
        cdef Chunk* nc
        cdef u64* nz
        if self.nlive == 0 and self.next_id != 0:     # no wrap yet: the counter itself
            self.last_id = self.next_id
            self.next_id += 1
        else:
            self.last_id = self.c_new_id()
            if self.last_id == 0:
                return -E_NOMEM
        if r == 0 and self.nz == self.capz:
            m = self.capz * 2 if self.capz else 4
            nz = <u64*>PyMem_RawRealloc(self.zaddr, m * sizeof(u64))
            if nz == NULL:
                return -E_NOMEM
            self.zaddr = nz
            self.capz = m
        if self.nch == 0:
            c = <Chunk*>PyMem_RawMalloc(sizeof(Chunk))
            if c == NULL:
                return -E_NOMEM
            c.n = 0
            if self.c_insert_chunk(0, c) < 0:
                PyMem_RawFree(c)
                return -E_NOMEM
            ci = 0
            si = 0
        c = self.chunks[ci]
        if c.n == GPUVM_CHUNK:
            lf = GPUVM_CHUNK - self.chunks[ci - 1].n if ci > 0 else 0
            rf = GPUVM_CHUNK - self.chunks[ci + 1].n if ci + 1 < self.nch else 0
            if ci == self.nch - 1 and si == GPUVM_CHUNK:
                # appending at the very end: start a fresh chunk, keep this one full
                nc = <Chunk*>PyMem_RawMalloc(sizeof(Chunk))
                if nc == NULL:
                    return -E_NOMEM
                nc.n = 0
                if self.c_insert_chunk(ci + 1, nc) < 0:
                    PyMem_RawFree(nc)
                    return -E_NOMEM
                ci += 1
                si = 0
                c = nc
            elif rf >= 2 and rf >= lf:
                self.c_shift_right(ci, rf >> 1)
                if si > c.n:
                    si -= c.n
                    ci += 1
                    c = self.chunks[ci]
            elif lf >= 2:
                half = lf >> 1
                self.c_shift_left(ci, half)
                if si < half:
                    ci -= 1
                    c = self.chunks[ci]
                    si += c.n - half
                else:
                    si -= half
            else:
                nc = <Chunk*>PyMem_RawMalloc(sizeof(Chunk))
                if nc == NULL:
                    return -E_NOMEM
                half = GPUVM_CHUNK // 2
                m = GPUVM_CHUNK - half
                _move_slots(nc, 0, c, half, m)
                nc.n = m
                if self.c_insert_chunk(ci + 1, nc) < 0:
                    PyMem_RawFree(nc)
                    return -E_NOMEM
                c.n = half
                if si > half:
                    ci += 1
                    si -= half
                    c = nc
        m = c.n - si
        _move_slots(c, si + 1, c, si, m)
        c.addr[si] = a
        c.rng[si] = r
        c.obj[si] = o
        c.off[si] = f
        c.vid[si] = self.last_id
        c.n += 1
        if si == 0:
            self.firsts[ci] = a
        if r == 0:
            si = _bisect_right(self.zaddr, self.nz, a)
            memmove(&self.zaddr[si + 1], &self.zaddr[si], (self.nz - si) * sizeof(u64))
            self.zaddr[si] = a
            self.nz += 1
        self.count += 1
        self.generation += 1
        return 0

    cdef uint32_t c_new_id(self) noexcept nogil:
        """A fresh VA id, never one a linked VA (or the reserved node) holds; 0 = -ENOMEM.

        Ids count up from 1. When the 32-bit counter wraps, the ids linked at
        that moment are collected (c_restart_ids) and skipped from then on;
        ids given since are above the counter, so they cannot be met again
        before the next wrap. Before any wrap ``nlive`` is 0: one branch.
        """
        cdef uint32_t vid
        while True:
            if self.next_id == 0 and self.c_restart_ids() < 0:
                return 0
            if self.nlive:
                while self.live_pos < self.nlive and self.live_ids[self.live_pos] < self.next_id:
                    self.live_pos += 1
                if self.live_pos < self.nlive and self.live_ids[self.live_pos] == self.next_id:
                    self.next_id += 1
                    continue
            vid = self.next_id
            self.next_id += 1
            return vid

    cdef int c_restart_ids(self) noexcept nogil:
        """Restart the id counter at 1, skipping every id linked now. 0 or -ENOMEM."""
        cdef Py_ssize_t n = 0, ci, si
        cdef uint32_t* ids
        for ci in range(self.nch):
            n += self.chunks[ci].n
        ids = <uint32_t*>PyMem_RawMalloc((n if n else 1) * sizeof(uint32_t))
        if ids == NULL:
            return -E_NOMEM
        n = 0
        for ci in range(self.nch):
            for si in range(self.chunks[ci].n):
                ids[n] = self.chunks[ci].vid[si]
                n += 1
        qsort(ids, n, sizeof(uint32_t), _cmp_u32)
        PyMem_RawFree(self.live_ids)
        self.live_ids = ids
        self.nlive = n
        self.live_pos = 0
        self.next_id = 1
        return 0

    cdef void c_unlink(self, Pos p) noexcept nogil:
        cdef Chunk* c = self.chunks[p.ci]
        cdef Chunk* d
        cdef Py_ssize_t si = p.si, ci = p.ci, m, k
        cdef u64 a = c.addr[si]
        cdef u64 r = c.rng[si]
        if self.kid != 0 and c.vid[si] == self.kid:
            self.kid = 0
            self.count += 1
        m = c.n - si - 1
        _move_slots(c, si, c, si + 1, m)
        c.n -= 1
        if c.n == 0:
            self.c_drop_chunk(ci)
        else:
            if si == 0:
                self.firsts[ci] = c.addr[0]
            if c.n < GPUVM_CHUNK // 4:
                # merge a small chunk into a neighbour
                if ci + 1 < self.nch and c.n + self.chunks[ci + 1].n <= (3 * GPUVM_CHUNK) // 4:
                    d = self.chunks[ci + 1]
                elif ci > 0 and c.n + self.chunks[ci - 1].n <= (3 * GPUVM_CHUNK) // 4:
                    ci -= 1
                    d = c
                    c = self.chunks[ci]
                else:
                    d = NULL
                if d != NULL:
                    k = c.n
                    m = d.n
                    _move_slots(c, k, d, 0, m)
                    c.n += m
                    self.c_drop_chunk(ci + 1)
        if r == 0:
            k = _bisect_left(self.zaddr, self.nz, a)
            memmove(&self.zaddr[k], &self.zaddr[k + 1], (self.nz - k - 1) * sizeof(u64))
            self.nz -= 1
        self.count -= 1
        self.generation += 1

    cdef int c_insert(self, u64 a, u64 r, int64_t o, u64 f) noexcept nogil:
        """Kernel: drm_gpuva_insert(). 0, -EINVAL, -EEXIST or -ENOMEM."""
        cdef Pos p, raw
        if not self.c_range_valid(a, r):
            return -E_INVAL
        # one search serves both the overlap check and the link position
        raw = self.c_upper_raw(a)
        p = raw
        if p.ci < self.nch and p.si == self.chunks[p.ci].n:
            p.ci += 1
            p.si = 0
        if self.c_iter_first_from(p, a, a + r - 1, &p):
            return -E_EXIST
        return self.c_link_at(raw, a, r, o, f)

    # -- the split/merge walker ------------------------------------------------

    cdef int c_sm_map(self, u64 req_addr, u64 req_range, int64_t req_obj, u64 req_offset,
                      bint madvise, OpBuf* buf) noexcept nogil:
        """Kernel: __drm_gpuvm_sm_map(). Fills buf; 0, -EINVAL or -ENOMEM."""
        cdef u64 req_end, end, ls_range
        cdef bint final, merge, found
        cdef Pos p
        cdef VaRec v
        cdef OpRec* rec
        buf.n = 0
        if not self.c_range_valid(req_addr, req_range):
            return -E_INVAL
        req_end = req_addr + req_range
        final = not madvise
        found = self.c_iter_first(req_addr, req_end - 1, &p)
        while found and p.ci < self.nch:
            self.c_read(p, &v)
            if v.addr >= req_end:
                break
            self.c_next(&p)
            end = v.addr + v.rng
            if madvise and v.obj >= 0:
                continue
            merge = v.obj >= 0
            if v.addr == req_addr:
                merge = merge and v.obj == req_obj and v.off == req_offset
                if end == req_end or end < req_end:
                    if not madvise:
                        if _push(buf) < 0:
                            return -E_NOMEM
                        rec = &buf.recs[buf.n - 1]
                        rec.type = T_UNMAP
                        rec.keep = merge
                        rec.va = v
                    if end == req_end:
                        break
                    continue
                if _push(buf) < 0:
                    return -E_NOMEM
                rec = &buf.recs[buf.n - 1]
                rec.type = T_REMAP
                rec.keep = merge
                rec.va = v
                rec.has_prev = 0
                rec.has_next = 1
                _setva(&rec.next, req_end, v.rng - req_range, v.obj, v.off + req_range, 0)
                if madvise:
                    final = True
                break
            if v.addr < req_addr:
                ls_range = req_addr - v.addr
                merge = merge and v.obj == req_obj and v.off + ls_range == req_offset
                if _push(buf) < 0:
                    return -E_NOMEM
                rec = &buf.recs[buf.n - 1]
                rec.type = T_REMAP
                rec.keep = merge
                rec.va = v
                rec.has_prev = 1
                _setva(&rec.prev, v.addr, ls_range, v.obj, v.off, 0)
                if end == req_end:
                    rec.has_next = 0
                    if madvise:
                        final = True
                    break
                if end < req_end:
                    rec.has_next = 0
                    if madvise:
                        if _push(buf) < 0:
                            return -E_NOMEM
                        rec = &buf.recs[buf.n - 1]
                        rec.type = T_MAP
                        rec.keep = 0
                        _setva(&rec.va, req_addr, end - req_addr, -1, 0, 0)
                    continue
                rec.has_next = 1
                _setva(&rec.next, req_end, end - req_end, v.obj,
                       v.off + ls_range + req_range
                       + (<u64>_fault if GPUVM_DEBUG_FAULTS else 0), 0)
                if madvise:
                    final = True
                break
            # v.addr > req_addr
            merge = merge and v.obj == req_obj and v.off == req_offset + (v.addr - req_addr)
            if end == req_end or end < req_end:
                if not madvise:
                    if _push(buf) < 0:
                        return -E_NOMEM
                    rec = &buf.recs[buf.n - 1]
                    rec.type = T_UNMAP
                    rec.keep = merge
                    rec.va = v
                if end == req_end:
                    break
                continue
            if _push(buf) < 0:
                return -E_NOMEM
            rec = &buf.recs[buf.n - 1]
            rec.type = T_REMAP
            rec.keep = merge
            rec.va = v
            rec.has_prev = 0
            rec.has_next = 1
            _setva(&rec.next, req_end, end - req_end, v.obj, v.off + (req_end - v.addr), 0)
            if madvise:
                if _push(buf) < 0:
                    return -E_NOMEM
                rec = &buf.recs[buf.n - 1]
                rec.type = T_MAP
                rec.keep = 0
                _setva(&rec.va, v.addr, req_end - v.addr, -1, 0, 0)
                return 0
            break
        if final:
            if _push(buf) < 0:
                return -E_NOMEM
            rec = &buf.recs[buf.n - 1]
            rec.type = T_MAP
            rec.keep = 0
            _setva(&rec.va, req_addr, req_range, req_obj, req_offset, 0)
        return 0

    cdef int c_sm_unmap(self, u64 req_addr, u64 req_range, OpBuf* buf) noexcept nogil:
        """Kernel: __drm_gpuvm_sm_unmap(). Fills buf; 0, -EINVAL or -ENOMEM."""
        cdef u64 req_end, end
        cdef bint found
        cdef Pos p
        cdef VaRec v
        cdef OpRec* rec
        buf.n = 0
        if not self.c_range_valid(req_addr, req_range):
            return -E_INVAL
        req_end = req_addr + req_range
        found = self.c_iter_first(req_addr, req_end - 1, &p)
        while found and p.ci < self.nch:
            self.c_read(p, &v)
            if v.addr >= req_end:
                break
            self.c_next(&p)
            end = v.addr + v.rng
            if _push(buf) < 0:
                return -E_NOMEM
            rec = &buf.recs[buf.n - 1]
            rec.keep = 0
            rec.va = v
            rec.has_prev = v.addr < req_addr
            rec.has_next = end > req_end
            if rec.has_prev:
                _setva(&rec.prev, v.addr, req_addr - v.addr, v.obj, v.off, 0)
            if rec.has_next:
                _setva(&rec.next, req_end, end - req_end, v.obj, v.off + req_end - v.addr, 0)
            rec.type = T_REMAP if (rec.has_prev or rec.has_next) else T_UNMAP
        return 0

    cdef int c_prefetch(self, u64 addr, u64 rng, OpBuf* buf) noexcept nogil:
        """Kernel: drm_gpuvm_prefetch_ops_create(). No range check."""
        cdef u64 end = addr + rng
        cdef bint found
        cdef Pos p
        cdef VaRec v
        cdef OpRec* rec
        buf.n = 0
        found = self.c_iter_first(addr, end - 1, &p)
        while found and p.ci < self.nch:
            self.c_read(p, &v)
            if v.addr >= end:
                break
            self.c_next(&p)
            if _push(buf) < 0:
                return -E_NOMEM
            rec = &buf.recs[buf.n - 1]
            rec.type = T_PREFETCH
            rec.keep = 0
            rec.va = v
        return 0

    cdef bint c_remap_in_place(self, Pos p, const VaRec* pv) noexcept nogil:
        """Unlink the VA at ``p`` and insert ``pv`` (a remap's prev piece) in one step.

        Done only when the result is provably that of c_unlink(p) followed by
        c_insert(pv): ``pv`` starts where the old VA starts and lies inside it,
        it is a valid range, no zero-length VA exists (so nothing else can meet
        it once the old VA is gone) and ids have not wrapped (so the new id is
        the counter's next value either way). Then the insert would link at the
        very slot the unlink freed, so the slot is rewritten instead of shifting
        the chunk's slots out and back in. Returns False (nothing changed) when
        any condition fails; the caller then unlinks and inserts as usual.
        Kernel: drm_gpuva_remap() = drm_gpuva_remove(op->unmap->va) +
        drm_gpuva_insert(op->prev) (+ op->next, which the caller inserts).
        """
        cdef Chunk* c = self.chunks[p.ci]
        cdef u64 a = c.addr[p.si], r = c.rng[p.si]
        cdef Pos q = p
        if self.nz != 0 or self.nlive != 0 or self.next_id == 0:
            return False
        if r == 0 or pv.rng == 0 or pv.addr != a or pv.rng > r:
            return False
        if not self.c_range_valid(pv.addr, pv.rng):
            return False
        self.c_next(&q)                 # the insert would go after any later VA at addr a
        if q.ci < self.nch and self.chunks[q.ci].addr[q.si] <= a:
            return False
        self.last_id = self.next_id
        self.next_id += 1
        c.rng[p.si] = pv.rng
        c.obj[p.si] = pv.obj
        c.off[p.si] = pv.off
        c.vid[p.si] = self.last_id
        self.generation += 2            # one unlink + one link, as the two-step path counts
        return True

    cdef int c_apply(self, const OpRec* recs, Py_ssize_t n, Py_ssize_t* failed) noexcept nogil:
        """Kernel: drm_gpuva_map/_remap/_unmap. 0, -ENOENT (VA gone) or -ENOMEM."""
        cdef Py_ssize_t i
        cdef Pos p
        cdef int rc
        cdef const OpRec* r
        for i in range(n):
            r = &recs[i]
            if r.type == T_MAP:
                rc = self.c_insert(r.va.addr, r.va.rng, r.va.obj, r.va.off)
                if rc == -E_NOMEM:
                    return rc
                if rc < 0:
                    failed[0] += 1
            elif r.type == T_REMAP or r.type == T_UNMAP:
                if not self.c_locate(r.va.addr, r.va.vid, &p):
                    return -E_NOENT
                if r.type == T_REMAP and r.has_prev and self.c_remap_in_place(p, &r.prev):
                    pass
                else:
                    self.c_unlink(p)
                    if r.type == T_REMAP and r.has_prev:
                        rc = self.c_insert(r.prev.addr, r.prev.rng, r.prev.obj, r.prev.off)
                        if rc == -E_NOMEM:
                            return rc
                        if rc < 0:
                            failed[0] += 1
                if r.type == T_REMAP:
                    if r.has_next:
                        rc = self.c_insert(r.next.addr, r.next.rng, r.next.obj, r.next.off)
                        if rc == -E_NOMEM:
                            return rc
                        if rc < 0:
                            failed[0] += 1
        return 0

    # -- Python surface: validity and lookups ------------------------------------
    #
    # Every method below that reads or changes the tree converts its arguments
    # first, then takes the guard (_enter) and clears it (busy = 0) on every
    # way out; see "One caller at a time" in the module docstring.

    def range_valid(self, addr, range):  # noqa: A002
        """Kernel: drm_gpuvm_range_valid(). (Reads only the VM's fixed bounds: no guard.)"""
        return self.c_range_valid(_u64(addr, "addr"), _u64(range, "range"))

    cdef GpuVa _va_at(self, Pos p):
        cdef VaRec v
        self.c_read(p, &v)
        return _make_va(self, &v)

    cdef object _first(self, u64 qs, u64 ql):
        cdef Pos p
        cdef VaRec v
        cdef bint found
        self._enter()
        found = self.c_iter_first(qs, ql, &p)
        if found:
            self.c_read(p, &v)
        self.busy = 0
        # the view is made from the copied record, after the guard is dropped
        return _make_va(self, &v) if found else None

    def find_first(self, addr, range):  # noqa: A002
        """Kernel: drm_gpuva_find_first()."""
        cdef u64 a, r
        _u64_into(addr, "addr", &a)
        _u64_into(range, "range", &r)
        return self._first(a, a + r - 1)

    def find(self, addr, range):  # noqa: A002
        """Kernel: drm_gpuva_find()."""
        cdef u64 a = _u64(addr, "addr")
        cdef u64 r = _u64(range, "range")
        cdef Pos p
        cdef VaRec v
        cdef bint found
        self._enter()
        found = self.c_iter_first(a, a + r - 1, &p)
        if found:
            self.c_read(p, &v)
            found = v.addr == a and v.rng == r
        self.busy = 0
        return _make_va(self, &v) if found else None

    def find_prev(self, start):
        """Kernel: drm_gpuva_find_prev(). Quirk: may return a VA covering ``start``."""
        cdef u64 s = _u64(start, "start")
        if not self.c_range_valid(s - 1, 1):
            return None
        return self._first(s - 1, s)

    def find_next(self, end):
        """Kernel: drm_gpuva_find_next(). Quirk: may return a VA starting at ``end + 1``."""
        cdef u64 e = _u64(end, "end")
        if not self.c_range_valid(e, 1):
            return None
        return self._first(e, e + 1)

    def interval_empty(self, addr, range):  # noqa: A002
        """Kernel: drm_gpuvm_interval_empty()."""
        cdef u64 a = _u64(addr, "addr")
        cdef u64 r = _u64(range, "range")
        cdef Pos p
        cdef bint found
        self._enter()
        found = self.c_iter_first(a, a + r - 1, &p)
        self.busy = 0
        return not found

    def insert(self, addr, range, obj=None, offset=0):  # noqa: A002
        """Kernel: drm_gpuva_insert()."""
        cdef u64 a = _u64(addr, "addr")
        cdef u64 r = _u64(range, "range")
        cdef int64_t o = _to_obj(obj)
        cdef u64 f = _u64(offset, "offset")
        cdef int rc
        cdef VaRec v
        self._enter()
        rc = self.c_insert(a, r, o, f)
        _setva(&v, a, r, o, f, self.last_id)
        self.busy = 0
        if rc == -E_INVAL:
            raise GpuvmError(_errno.EINVAL,
                             f"[{a:#x}, +{r:#x}) is not a valid range for this VM "
                             "(overflow, outside the VM, or over the reserved node)")
        if rc == -E_EXIST:
            raise GpuvmError(_errno.EEXIST, f"[{a:#x}, +{r:#x}) overlaps an existing VA")
        if rc < 0:
            raise MemoryError()
        return _make_va(self, &v)

    def remove(self, GpuVa va not None):
        """Kernel: drm_gpuva_remove()."""
        cdef Pos p
        cdef bint found
        if va.vm is self and self.kid != 0 and va._vid == self.kid:
            raise GpuvmError(_errno.EINVAL, "the kernel-reserved node cannot be removed")
        if va.vm is not self:
            raise GpuvmError(_errno.ENOENT, f"{va!r} is not in this VM")
        self._enter()
        found = self.c_locate(va._addr, va._vid, &p)
        if found:
            self.c_unlink(p)
        self.busy = 0
        if not found:
            raise GpuvmError(_errno.ENOENT, f"{va!r} is not in this VM")

    def __len__(self):
        """VAs in the VM, reserved node excluded. (One integer read: no guard, never EBUSY.)"""
        return self.count

    cdef list _views(self, Pos p, u64 end, bint bounded, bint skip_reserved):
        """Views from ``p`` on; the caller holds the guard."""
        cdef list out = []
        cdef VaRec v
        while p.ci < self.nch:
            self.c_read(p, &v)
            if bounded and v.addr >= end:
                break
            self.c_next(&p)
            if skip_reserved and self.kid != 0 and v.vid == self.kid:
                continue
            out.append(_make_va(self, &v))
        return out

    def __iter__(self):
        """Address order (list order), reserved node excluded.

        Lazy, like dict iteration: a step after the VM changed raises
        RuntimeError. ``list(vm)`` or ``state()`` for a snapshot.
        """
        cdef GpuVmIterator it = GpuVmIterator.__new__(GpuVmIterator)
        it.vm = self
        it.generation = self.generation
        it.p.ci = 0
        it.p.si = 0
        return it

    def va_range(self, addr, range):  # noqa: A002
        """VAs the kernel's range iterator visits for [addr, addr+range), reserved node excluded.

        A list made in one guarded call. Kernel: drm_gpuvm_for_each_va_range().
        """
        cdef u64 a = _u64(addr, "addr")
        cdef u64 r = _u64(range, "range")
        cdef u64 end = a + r
        cdef Pos p
        self._enter()
        try:
            if not self.c_iter_first(a, end - 1, &p):
                return []
            return self._views(p, end, True, True)
        finally:
            self.busy = 0

    def state(self):
        """Every VA as (addr, range, obj, offset), list order, reserved node excluded.

        A snapshot made in one guarded call.
        """
        cdef list out = []
        cdef Pos p
        cdef VaRec v
        p.ci = 0
        p.si = 0
        self._enter()
        try:
            while p.ci < self.nch:
                self.c_read(p, &v)
                self.c_next(&p)
                if self.kid != 0 and v.vid == self.kid:
                    continue
                out.append((v.addr, v.rng, _obj_py(v.obj), v.off))
            return out
        finally:
            self.busy = 0

    @property
    def kernel_node(self):
        """The kernel-reserved node (Kernel: drm_gpuvm.kernel_alloc_node) or None."""
        cdef Pos p
        if self.kid == 0:
            return None
        cdef VaRec v
        cdef bint found
        self._enter()
        found = self.c_locate(self.reserve_addr, self.kid, &p)
        if found:
            self.c_read(p, &v)
        self.busy = 0
        return _make_va(self, &v) if found else None

    # -- op lists ------------------------------------------------------------------

    cdef object _invalid(self, u64 addr, u64 rng):
        cdef u64 mm_end = self.mm_start + self.mm_range
        if addr + rng < addr:
            why = "addr + range overflows u64"
        elif self.reserve_range and not (addr < self.mm_start or addr + rng > mm_end):
            why = "it overlaps the kernel-reserved node"
        else:
            why = f"it is outside the VM [{self.mm_start:#x}, +{self.mm_range:#x})"
        return GpuvmError(_errno.EINVAL, f"request [{addr:#x}, +{rng:#x}) is invalid: {why}")

    cdef Ops _ops(self, int what, u64 a, u64 r, int64_t o, u64 f):
        """Run the walker under the guard, writing straight into the new list's own
        record block (C only; the object is made before the guard is taken, so no
        Python code runs while it is held). The block starts as a pooled one of
        OPS_INLINE records and grows like the scratch buffer if the list is longer;
        an empty list gives it back."""
        cdef int rc
        cdef OpBuf ob
        cdef Ops ops = Ops.__new__(Ops)
        ops.vm = self
        self._enter()
        ob.recs = _recs_alloc(1)
        ob.n = 0
        ob.cap = OPS_INLINE
        if ob.recs == NULL:
            rc = -E_NOMEM
        elif what == OPS_MAP:
            rc = self.c_sm_map(a, r, o, f, False, &ob)
        elif what == OPS_MADVISE:
            rc = self.c_sm_map(a, r, o, f, True, &ob)
        elif what == OPS_UNMAP:
            rc = self.c_sm_unmap(a, r, &ob)
        else:
            rc = self.c_prefetch(a, r, &ob)
        if rc == 0 and ob.n:
            ops.recs = ob.recs
            ops.n = ob.n
        else:
            _recs_free(ob.recs, ob.cap)
        ops.generation = self.generation
        self.busy = 0
        if rc == -E_INVAL:
            raise self._invalid(a, r)
        if rc < 0:
            raise MemoryError()
        return ops

    cdef Ops _map_ops(self, int what, object addr, object rng, object obj, object offset):
        # The argument reading shared by sm_map_ops_create and madvise_ops_create, in the
        # order the errors name them.
        cdef u64 a, r, f
        cdef int64_t o
        _u64_into(addr, "addr", &a)
        _u64_into(rng, "range", &r)
        o = _to_obj(obj)
        _u64_into(offset, "offset", &f)
        return self._ops(what, a, r, o, f)

    def sm_map_ops_create(self, addr, range, obj=None, offset=0):  # noqa: A002
        """Kernel: drm_gpuvm_sm_map_ops_create()."""
        return self._map_ops(OPS_MAP, addr, range, obj, offset)

    def madvise_ops_create(self, addr, range, obj=None, offset=0):  # noqa: A002
        """Kernel: drm_gpuvm_madvise_ops_create()."""
        return self._map_ops(OPS_MADVISE, addr, range, obj, offset)

    def sm_unmap_ops_create(self, addr, range):  # noqa: A002
        """Kernel: drm_gpuvm_sm_unmap_ops_create()."""
        cdef u64 a, r
        _u64_into(addr, "addr", &a)
        _u64_into(range, "range", &r)
        return self._ops(OPS_UNMAP, a, r, -1, 0)

    def prefetch_ops_create(self, addr, range):  # noqa: A002
        """Kernel: drm_gpuvm_prefetch_ops_create() (no range check; may list the reserved node)."""
        cdef u64 a = _u64(addr, "addr")
        cdef u64 r = _u64(range, "range")
        return self._ops(OPS_PREFETCH, a, r, -1, 0)

    def sm_map(self, steps, addr, range, obj=None, offset=0):  # noqa: A002
        """Kernel: drm_gpuvm_sm_map(): call ``steps.sm_step_*`` for each op in order.

        Like the kernel, a ``steps`` object lacking any of sm_step_map,
        sm_step_remap, sm_step_unmap is refused with EINVAL before anything happens.
        The callbacks run after the op list is made, outside the guard, so
        they may use the VM (typically ``vm.apply([op])``).
        """
        _require_steps(steps, ("sm_step_map", "sm_step_remap", "sm_step_unmap"))
        _dispatch(steps, self.sm_map_ops_create(addr, range, obj, offset))

    def sm_unmap(self, steps, addr, range):  # noqa: A002
        """Kernel: drm_gpuvm_sm_unmap() (needs sm_step_remap and sm_step_unmap only)."""
        _require_steps(steps, ("sm_step_remap", "sm_step_unmap"))
        _dispatch(steps, self.sm_unmap_ops_create(addr, range))

    # -- applying ops ------------------------------------------------------------------

    def apply(self, ops):
        """Apply ``ops`` in order; return how many inserts the tree refused.

        An :class:`Ops` list is refused with ESTALE if the VM changed since it
        was created. A plain sequence (any iterable) of op objects is turned
        into a list first, then checked before anything is applied: an
        unmap/remap naming a VA that is not in this VM (removed, another VM's,
        or named twice) is refused with ENOENT, one naming the kernel-reserved
        node with EINVAL (drm_gpuva_remove refuses that node), and the VM is
        left unchanged. Check and apply run in one guarded call, so nothing
        can change the VM in between: the ops are applied all or none (short
        of running out of memory midway, MemoryError).
        Kernel: drm_gpuva_map() / drm_gpuva_remap() / drm_gpuva_unmap().
        """
        cdef Py_ssize_t failed = 0, i, n
        cdef int rc
        cdef Ops o
        cdef OpRec* recs = NULL
        cdef Pos p
        if isinstance(ops, Ops):
            o = <Ops>ops
            self._enter()
            if o.vm is not self or o.generation != self.generation:
                self.busy = 0
                raise GpuvmError(_errno.ESTALE,
                                 "op list is stale: the VM changed since it was created")
            rc = self.c_apply(o.recs, o.n, &failed)
            self.busy = 0
        else:
            seq = list(ops)             # may run Python code (a generator): before the guard
            n = len(seq)
            recs = <OpRec*>PyMem_RawMalloc((n if n else 1) * sizeof(OpRec))
            if recs == NULL:
                raise MemoryError()
            try:
                for i in range(n):
                    _op_to_rec(self, seq[i], &recs[i])
                named = set()
                self._enter()
                try:
                    for i in range(n):
                        if recs[i].type != T_REMAP and recs[i].type != T_UNMAP:
                            continue
                        if self.kid != 0 and recs[i].va.vid == self.kid:
                            raise GpuvmError(_errno.EINVAL, "an op names the kernel-reserved "
                                                            "node, which cannot be removed")
                        key = (recs[i].va.addr, recs[i].va.vid)
                        if key in named or not self.c_locate(recs[i].va.addr, recs[i].va.vid,
                                                             &p):
                            raise GpuvmError(_errno.ENOENT, f"op {i} ({seq[i]!r}) names a VA "
                                             "that is not (or no longer) in this VM")
                        named.add(key)
                    rc = self.c_apply(recs, n, &failed)
                finally:
                    self.busy = 0
            finally:
                PyMem_RawFree(recs)
        if rc == -E_NOENT:
            raise GpuvmError(_errno.ENOENT, "an op names a VA that is no longer in this VM")
        if rc < 0:
            raise MemoryError()
        return failed

    # -- batch forms -------------------------------------------------------------------

    def sm_map_batch(self, addr, range, obj, offset):  # noqa: A002
        """Map many requests in order (build ops, apply) in C without the GIL.

        Returns per-request op counts (int64). A refused request raises
        GpuvmError with ``.index``; the requests before it stay applied.
        Arrays: any 1-D integer array-like (read-only arrays too); see _as_u64.
        Kernel: drm_gpuvm_sm_map_ops_create() + drm_gpuva_map/_remap/_unmap,
        once per request.
        """
        cdef const u64[::1] A = _as_u64(addr, "addr")
        cdef const u64[::1] R = _as_u64(range, "range")
        cdef const int64_t[::1] O = _as_obj(obj)
        cdef const u64[::1] F = _as_u64(offset, "offset")
        cdef Py_ssize_t n = A.shape[0]
        _same_len(n, R.shape[0], O.shape[0], F.shape[0])
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        return self._batch(NULL, K_MAP, &A[0], &R[0], &O[0], &F[0], n)

    def sm_unmap_batch(self, addr, range):  # noqa: A002
        """Unmap many requests in order. Kernel: drm_gpuvm_sm_unmap_ops_create() per request."""
        cdef const u64[::1] A = _as_u64(addr, "addr")
        cdef const u64[::1] R = _as_u64(range, "range")
        cdef Py_ssize_t n = A.shape[0]
        _same_len(n, R.shape[0])
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        return self._batch(NULL, K_UNMAP, &A[0], &R[0], NULL, NULL, n)

    def madvise_batch(self, addr, range):  # noqa: A002
        """madvise (no object) many requests. Kernel: drm_gpuvm_madvise_ops_create() per request."""
        cdef const u64[::1] A = _as_u64(addr, "addr")
        cdef const u64[::1] R = _as_u64(range, "range")
        cdef Py_ssize_t n = A.shape[0]
        _same_len(n, R.shape[0])
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        return self._batch(NULL, K_MADVISE, &A[0], &R[0], NULL, NULL, n)

    def requests_batch(self, kind, addr, range, obj, offset):  # noqa: A002
        """Map, unmap and madvise requests of mixed kinds, in order, in one C loop.

        ``kind[i]`` is ``REQ_MAP`` (0), ``REQ_UNMAP`` (1) or ``REQ_MADVISE`` (2)
        (any integer array, or strings ``"map"``/``"unmap"``/``"madvise"``);
        ``obj`` (int64, -1 = none) and ``offset`` are used by map and madvise
        rows as ``sm_map_ops_create``/``madvise_ops_create`` use them, and are
        ignored for unmap rows. Same contract as the other batch forms: the
        final state equals issuing the requests one by one, the result is the
        per-request op count (int64), and a refused request raises GpuvmError
        with ``.index`` after the requests before it were applied. A bad kind
        is refused before anything is applied. The GIL is released.
        Kernel: drm_gpuvm_sm_map_ops_create() / drm_gpuvm_sm_unmap_ops_create() /
        drm_gpuvm_madvise_ops_create() + drm_gpuva_map/_remap/_unmap per request.
        """
        cdef const unsigned char[::1] K = _as_kind(kind)
        cdef const u64[::1] A = _as_u64(addr, "addr")
        cdef const u64[::1] R = _as_u64(range, "range")
        cdef const int64_t[::1] O = _as_obj(obj)
        cdef const u64[::1] F = _as_u64(offset, "offset")
        cdef Py_ssize_t n = A.shape[0]
        _same_len(K.shape[0], n, R.shape[0], O.shape[0], F.shape[0])
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        return self._batch(&K[0], 0, &A[0], &R[0], &O[0], &F[0], n)

    cdef object _batch(self, const unsigned char* K, int kind, const u64* A, const u64* R,
                       const int64_t* O, const u64* F, Py_ssize_t n):
        counts = np.empty(n, dtype=np.int64)
        cdef int64_t[::1] C = counts
        cdef Py_ssize_t i = 0, failed = 0
        cdef int rc = 0, k = kind
        self._enter()
        self.in_batch = 1
        with nogil:
            while i < n:
                if i + 1 < n:
                    # Requests depend on each other, so their searches cannot overlap;
                    # but the next request's chunk can be fetched while this one runs
                    # (only a hint: correctness never depends on it).
                    self.c_prefetch_chunk(A[i + 1])
                if K != NULL:
                    k = K[i]
                if k == K_MAP:
                    rc = self.c_sm_map(A[i], R[i], O[i], F[i], False, &self.buf)
                elif k == K_UNMAP:
                    rc = self.c_sm_unmap(A[i], R[i], &self.buf)
                elif O != NULL:
                    rc = self.c_sm_map(A[i], R[i], O[i], F[i], True, &self.buf)
                else:
                    rc = self.c_sm_map(A[i], R[i], -1, 0, True, &self.buf)
                if rc < 0:
                    break
                rc = self.c_apply(self.buf.recs, self.buf.n, &failed)
                if rc < 0:
                    break
                C[i] = self.buf.n
                i += 1
        self.in_batch = 0
        self._trim()
        self.busy = 0
        if rc == -E_INVAL:
            e = self._invalid(A[i], R[i])
            raise GpuvmError(_errno.EINVAL, e.strerror, index=i)
        if rc < 0:
            raise MemoryError()
        return counts

    cdef void c_prefetch_chunk(self, u64 key) noexcept nogil:
        """Ask the CPU to start loading the chunk a request at ``key`` will work in."""
        cdef Py_ssize_t ci = _bisect_right(self.firsts, self.nch, key) - 1
        cdef const char* c
        cdef Py_ssize_t k
        if ci < 0:
            if self.nch == 0:
                return
            ci = 0
        c = <const char*>self.chunks[ci]
        for k in range(0, sizeof(Chunk), 64):
            gpuvm_prefetch(c + k)

    cdef void c_find_many(self, const u64* A, const u64* R, Py_ssize_t n,
                          FindRow* rows) noexcept nogil:
        """find_first for n queries into rows (zeroed by the caller).

        With no zero-length VA in the tree (the common case) the queries run
        in groups of FIND_GROUP: one lock-step binary search over ``firsts``
        for the whole group (independent loads overlap), a prefetch of each
        query's chunk keys, then the in-chunk searches, a prefetch of the
        candidate's value lines, and the answers. The answer is the one
        c_iter_first() gives (see there): the VA before the upper position if
        it reaches qs, else the one at that position, if it starts <= ql.
        With zero-length VAs present every query takes c_iter_first().
        """
        cdef Py_ssize_t cis[FIND_GROUP]
        cdef Py_ssize_t sis[FIND_GROUP]
        cdef Py_ssize_t i = 0, g, j, k, ln, half, b, ci, si, nch = self.nch
        cdef const u64* fs = self.firsts
        cdef Chunk** chunks = self.chunks
        cdef Chunk* c
        cdef FindRow* row
        cdef Pos p
        cdef u64 key
        if nch == 0:
            for i in range(n):
                rows[i].obj = -1
            return
        if self.nz:
            for i in range(n):
                if self.c_iter_first(A[i], A[i] + R[i] - 1, &p):
                    c = chunks[p.ci]
                    rows[i].found = 1
                    rows[i].addr = c.addr[p.si]
                    rows[i].rng = c.rng[p.si]
                    rows[i].obj = c.obj[p.si]
                    rows[i].off = c.off[p.si]
                else:
                    rows[i].obj = -1
            return
        while i < n:
            g = n - i if n - i < FIND_GROUP else FIND_GROUP
            # 1. lock-step search of firsts for the whole group
            for j in range(g):
                cis[j] = 0
            ln = nch
            while ln > 1:
                half = ln >> 1
                for j in range(g):
                    b = cis[j]
                    cis[j] = b + half if fs[b + half] <= A[i + j] else b
                ln -= half
            for j in range(g):
                b = cis[j]
                ci = b if fs[b] <= A[i + j] else b - 1
                cis[j] = ci
                if ci >= 0:
                    c = chunks[ci]
                    for k in range(0, GPUVM_CHUNK, 8):
                        gpuvm_prefetch(&c.addr[k])
            # 2. in-chunk search; prefetch the predecessor's value lines
            for j in range(g):
                ci = cis[j]
                if ci < 0:
                    continue
                c = chunks[ci]
                si = _bisect_right(c.addr, c.n, A[i + j])   # >= 1: c.addr[0] <= key
                sis[j] = si
                gpuvm_prefetch(&c.rng[si - 1])
                gpuvm_prefetch(&c.obj[si - 1])
                gpuvm_prefetch(&c.off[si - 1])
            # 3. answers
            for j in range(g):
                key = A[i + j]
                ci = cis[j]
                if ci < 0:
                    p.ci = 0
                    p.si = 0
                else:
                    c = chunks[ci]
                    si = sis[j]
                    if c.addr[si - 1] + c.rng[si - 1] - 1 >= key:
                        p.ci = ci
                        p.si = si - 1
                    elif si < c.n:
                        p.ci = ci
                        p.si = si
                    else:
                        p.ci = ci + 1
                        p.si = 0
                row = &rows[i + j]
                if p.ci < nch and chunks[p.ci].addr[p.si] <= key + R[i + j] - 1:
                    c = chunks[p.ci]
                    row.found = 1
                    row.addr = c.addr[p.si]
                    row.rng = c.rng[p.si]
                    row.obj = c.obj[p.si]
                    row.off = c.off[p.si]
                else:
                    row.obj = -1
            i += g

    def find_first_batch(self, addr, range):  # noqa: A002
        """find_first for many queries, in C without the GIL.

        Returns a structured array (FIND_DTYPE) with fields found, addr, range,
        obj (-1 none), offset. Kernel: drm_gpuva_find_first().
        """
        cdef const u64[::1] A = _as_u64(addr, "addr")
        cdef const u64[::1] R = _as_u64(range, "range")
        _same_len(A.shape[0], R.shape[0])
        cdef Py_ssize_t n = A.shape[0]
        res = np.zeros(n, dtype=FIND_DTYPE)
        if n == 0:
            return res
        cdef unsigned char[::1] raw = res.view(np.uint8)
        cdef FindRow* rows = <FindRow*>&raw[0]
        self._enter()
        with nogil:
            self.c_find_many(&A[0], &R[0], n, rows)
        self.busy = 0
        return res

    # -- memory ---------------------------------------------------------------------------

    cdef Py_ssize_t c_nbytes(self) noexcept nogil:
        return (self.nch * sizeof(Chunk) + self.capch * (sizeof(Chunk*) + sizeof(u64))
                + self.capz * sizeof(u64) + self.buf.cap * sizeof(OpRec))

    @property
    def nbytes(self):
        """Bytes of C memory this VM owns: chunks, index arrays, zero-length side
        array and the op-record buffer (allocator headers not included)."""
        self._enter()
        cdef Py_ssize_t nb = self.c_nbytes()
        self.busy = 0
        return nb

    def __sizeof__(self):
        return object.__sizeof__(self) + self.nbytes

    def memory_stats(self):
        """Layout figures for memory reports: a dict with ``chunks``, ``slots_used``,
        ``slots_per_chunk``, ``fill`` (used / capacity), ``nbytes`` and
        ``bytes_per_va`` (nbytes per VA, reserved node included)."""
        cdef Py_ssize_t used = 0, i, nb
        self._enter()
        for i in range(self.nch):
            used += self.chunks[i].n
        nb = self.c_nbytes()
        self.busy = 0
        return {"chunks": self.nch, "slots_used": used, "slots_per_chunk": GPUVM_CHUNK,
                "fill": <double>used / (self.nch * GPUVM_CHUNK) if self.nch else 0.0,
                "nbytes": nb, "bytes_per_va": <double>nb / used if used else 0.0}

    # -- invariants -------------------------------------------------------------------------

    def check(self):
        """Full internal invariant check; raises AssertionError with a description."""
        self._enter()
        try:
            self._check()
        finally:
            self.busy = 0

    cdef object _check(self):
        cdef Py_ssize_t ci, si, total = 0, zeros = 0
        cdef Chunk* c
        cdef bint have_prev = False, have_pos = False, seen_k = False
        cdef u64 prev_addr = 0, prev_last = 0, last
        ids = set()
        zl = []
        for ci in range(self.nch):
            c = self.chunks[ci]
            if not (0 < c.n <= GPUVM_CHUNK):
                raise AssertionError(f"chunk {ci} has n={c.n}")
            if self.firsts[ci] != c.addr[0]:
                raise AssertionError(f"firsts[{ci}]={self.firsts[ci]:#x} != {c.addr[0]:#x}")
            for si in range(c.n):
                if have_prev and c.addr[si] < prev_addr:
                    raise AssertionError(f"addr order broken at chunk {ci} slot {si}")
                have_prev = True
                prev_addr = c.addr[si]
                if c.vid[si] == 0 or c.vid[si] in ids:
                    raise AssertionError(f"bad or duplicate id {c.vid[si]}")
                ids.add(c.vid[si])
                if c.obj[si] < -1:
                    raise AssertionError(f"obj {c.obj[si]} < -1")
                if self.kid != 0 and c.vid[si] == self.kid:
                    seen_k = True
                else:
                    total += 1
                if c.rng[si] == 0:
                    zeros += 1
                    zl.append(c.addr[si])
                    continue
                if c.addr[si] + c.rng[si] < c.addr[si]:
                    raise AssertionError(f"VA at {c.addr[si]:#x} wraps")
                last = c.addr[si] + c.rng[si] - 1
                if have_pos and c.addr[si] <= prev_last:
                    raise AssertionError(f"VA at {c.addr[si]:#x} overlaps the previous one")
                have_pos = True
                prev_last = last
        if total != self.count:
            raise AssertionError(f"count {self.count} != {total} VAs found")
        if self.kid != 0 and not seen_k:
            raise AssertionError("reserved node missing")
        if [self.zaddr[i] for i in range(self.nz)] != sorted(zl):
            raise AssertionError("zero-length side array out of sync")
        for ci in range(1, self.nch):
            if self.firsts[ci] < self.firsts[ci - 1]:
                raise AssertionError("firsts not sorted")

    def _chunk_stats(self):
        """(number of chunks, slots used, capacity per chunk) for memory reports."""
        st = self.memory_stats()
        return (st["chunks"], st["slots_used"], GPUVM_CHUNK)

    # -- whole-VM conveniences: pickling, copying, lookups by address, numpy --------

    def __reduce__(self):
        """Pickle as the VM's bounds and its VAs in one structured array (to_numpy()).

        The copy has the same VAs in the same list order; VA ids (and so GpuVa
        views, which refuse pickling) are not carried over.
        """
        return (_vm_restore, (self.mm_start, self.mm_range, self.reserve_addr,
                              self.reserve_range, self.to_numpy()))

    def __copy__(self):
        """An independent VM with the same VAs *and ids* (a C copy of the chunks)."""
        cdef GpuVm new = GpuVm.__new__(GpuVm)
        cdef Py_ssize_t i
        cdef Chunk* c
        self._enter()
        try:
            new.mm_start, new.mm_range = self.mm_start, self.mm_range
            new.reserve_addr, new.reserve_range = self.reserve_addr, self.reserve_range
            new.kid = self.kid
            new.count = self.count
            new.next_id = self.next_id
            new.generation = 0
            if self.nch:
                new.chunks = <Chunk**>PyMem_RawMalloc(self.capch * sizeof(Chunk*))
                new.firsts = <u64*>PyMem_RawMalloc(self.capch * sizeof(u64))
                if new.chunks == NULL or new.firsts == NULL:
                    raise MemoryError()
                new.capch = self.capch
                for i in range(self.nch):
                    c = <Chunk*>PyMem_RawMalloc(sizeof(Chunk))
                    if c == NULL:
                        raise MemoryError()
                    memcpy(c, self.chunks[i], sizeof(Chunk))
                    new.chunks[i] = c
                    new.nch = i + 1
                memcpy(new.firsts, self.firsts, self.nch * sizeof(u64))
            if self.capz:
                new.zaddr = <u64*>PyMem_RawMalloc(self.capz * sizeof(u64))
                if new.zaddr == NULL:
                    raise MemoryError()
                new.capz = self.capz
                new.nz = self.nz
                memcpy(new.zaddr, self.zaddr, self.nz * sizeof(u64))
            if self.nlive:
                new.live_ids = <uint32_t*>PyMem_RawMalloc(self.nlive * sizeof(uint32_t))
                if new.live_ids == NULL:
                    raise MemoryError()
                memcpy(new.live_ids, self.live_ids, self.nlive * sizeof(uint32_t))
                new.nlive = self.nlive
                new.live_pos = self.live_pos
        finally:
            self.busy = 0
        return new

    def __deepcopy__(self, memo):
        """As copy.copy (a VM holds only numbers); views deep-copied along map onto it."""
        new = self.__copy__()
        memo[id(self)] = new
        return new

    def __repr__(self):
        cdef str k = ""
        if self.reserve_range:
            k = f", reserve_addr={self.reserve_addr:#x}, reserve_range={self.reserve_range:#x}"
        return f"GpuVm(start={self.mm_start:#x}, range={self.mm_range:#x}{k}) with {self.count} VAs"

    cdef bint c_cover(self, u64 x, VaRec* v) noexcept nogil:
        """The VA with range > 0 covering ``x`` (reserved node excluded) into ``v``."""
        cdef Pos p = self.c_upper(x)
        # range > 0 VAs do not overlap: the candidate is the last one starting <= x
        while self.c_prev(&p):
            self.c_read(p, v)
            if v.rng == 0:
                continue
            return (x - v.addr < v.rng) and not (self.kid != 0 and v.vid == self.kid)
        return False

    def __contains__(self, addr):
        """``addr in vm``: some VA (range > 0, not the reserved node) covers ``addr``.

        Integers outside u64 are simply not in the VM; non-integers: TypeError.
        """
        cdef VaRec v
        cdef bint found
        if isinstance(addr, bool):
            raise TypeError("addr must be an integer, not bool")
        a = operator.index(addr)
        if a < 0 or a > 0xFFFFFFFFFFFFFFFF:
            return False
        self._enter()
        found = self.c_cover(<u64>a, &v)
        self.busy = 0
        return found

    def __getitem__(self, addr):
        """``vm[addr]``: the VA covering ``addr`` (as ``in``), else KeyError."""
        cdef VaRec v
        cdef bint found = False
        if isinstance(addr, bool):
            raise TypeError("addr must be an integer, not bool")
        a = operator.index(addr)
        if 0 <= a <= 0xFFFFFFFFFFFFFFFF:
            self._enter()
            found = self.c_cover(<u64>a, &v)
            self.busy = 0
        if not found:
            raise KeyError(addr)
        return _make_va(self, &v)

    def to_numpy(self):
        """Every VA (list order, reserved node excluded) as a VA_DTYPE structured array."""
        cdef Py_ssize_t n = self.count, k = 0, ci, si
        cdef Chunk* c
        out = np.empty(n, dtype=VA_DTYPE)
        cdef u64[::1] A = np.empty(n, np.uint64)
        cdef u64[::1] R = np.empty(n, np.uint64)
        cdef int64_t[::1] O = np.empty(n, np.int64)
        cdef u64[::1] F = np.empty(n, np.uint64)
        self._enter()
        for ci in range(self.nch):
            c = self.chunks[ci]
            for si in range(c.n):
                if self.kid != 0 and c.vid[si] == self.kid:
                    continue
                A[k] = c.addr[si]
                R[k] = c.rng[si]
                O[k] = c.obj[si]
                F[k] = c.off[si]
                k += 1
        self.busy = 0
        out["addr"] = A
        out["range"] = R
        out["obj"] = O
        out["offset"] = F
        return out

    @classmethod
    def from_numpy(cls, vas, start, range, *, reserve_addr=0, reserve_range=0):  # noqa: A002
        """A new VM holding the VAs of ``vas`` (fields addr, range, obj (-1 none), offset).

        Rows are taken in address order (a stable sort: equal addresses keep
        their order, which is the list order of zero-length VAs). Each row must
        be a valid range of the VM (EINVAL, ``.index`` = the row) and VAs of
        range > 0 must not overlap (EEXIST); the rows are linked as they are,
        so any state a VM can reach (to_numpy()) comes back exactly.
        """
        return _from_numpy(vas, start, range, reserve_addr, reserve_range)

    def _debug_set_next_id(self, n):
        """Test hook: continue VA ids from ``n`` (1 <= n < 2**32), e.g. near the wrap.

        Ids linked now are collected and skipped, exactly as after a wrap, so
        no id is ever given twice. Kernel: none (the kernel has pointers).
        """
        cdef u64 v = _u64(n, "n")
        if not 1 <= v <= 0xFFFFFFFF:
            raise ValueError("n must be in [1, 2**32)")
        self._enter()
        try:
            if self.c_restart_ids() < 0:
                raise MemoryError()
            self.next_id = <uint32_t>v
        finally:
            self.busy = 0

    @property
    def _next_id(self):
        """The id the next linked VA gets unless it is in use (test introspection)."""
        return self.next_id


cdef class GpuVmIterator:
    """Iterator over a GpuVm's VAs in list order (reserved node excluded).

    Holds a position and the VM's generation, not the guard: each step takes
    the guard for itself and raises RuntimeError if the VM changed since the
    iterator was made, as dict iteration does.
    """

    cdef GpuVm vm
    cdef u64 generation
    cdef Pos p

    def __init__(self):
        raise TypeError("GpuVmIterator objects come from iter(GpuVm)")

    def __iter__(self):
        return self

    def __next__(self):
        cdef GpuVm vm = self.vm
        cdef VaRec v
        if vm is None:
            raise StopIteration
        vm._enter()
        try:
            if vm.generation != self.generation:
                self.vm = None
                raise RuntimeError("GpuVm changed during iteration")
            while True:
                if self.p.ci >= vm.nch:
                    self.vm = None
                    raise StopIteration
                vm.c_read(self.p, &v)
                vm.c_next(&self.p)
                if vm.kid == 0 or v.vid != vm.kid:
                    break
        finally:
            vm.busy = 0
        return _make_va(vm, &v)

    def __reduce__(self):
        raise TypeError("a GpuVm iterator cannot be pickled")


#: Any op object (a type alias for annotations and isinstance checks).
Op = OpMap | OpRemap | OpUnmap | OpPrefetch

#: Row type of GpuVm.to_numpy() / from_numpy(): one VA.
VA_DTYPE = np.dtype([("addr", np.uint64), ("range", np.uint64), ("obj", np.int64),
                     ("offset", np.uint64)])


cdef GpuVm _from_numpy(object vas, object start, object size, object reserve_addr,
                       object reserve_range):
    """GpuVm.from_numpy (a function of its own: the method's ``range`` argument
    would shadow the builtin its loops use)."""
    cdef const u64[::1] A0
    cdef const u64[::1] R0
    cdef const int64_t[::1] O0
    cdef const u64[::1] F0
    cdef const int64_t[::1] idx
    cdef GpuVm vm
    cdef Py_ssize_t n, j, i
    cdef u64 prev_end = 0, a, r
    cdef bint have = False
    names = getattr(getattr(vas, "dtype", None), "names", None) or ()
    missing = [f for f in ("addr", "range", "obj", "offset") if f not in names]
    if missing:
        raise TypeError(f"vas must be a structured array with fields addr, range, obj, "
                        f"offset (missing: {', '.join(missing)})")
    A0 = _as_u64(vas["addr"], "addr")
    R0 = _as_u64(vas["range"], "range")
    O0 = _as_obj(vas["obj"])
    F0 = _as_u64(vas["offset"], "offset")
    order = np.argsort(np.asarray(A0), kind="stable")
    idx = order.astype(np.int64)
    vm = GpuVm(start, size, reserve_addr=reserve_addr, reserve_range=reserve_range)
    n = A0.shape[0]
    for j in range(n):
        i = idx[j]
        a = A0[i]
        r = R0[i]
        if not vm.c_range_valid(a, r):
            raise GpuvmError(_errno.EINVAL, f"vas[{i}] [{a:#x}, +{r:#x}) is not a valid "
                             "range of this VM", index=i)
        if r == 0:
            continue
        if have and a < prev_end:
            raise GpuvmError(_errno.EEXIST, f"vas[{i}] [{a:#x}, +{r:#x}) overlaps "
                             "another VA", index=i)
        have = True
        prev_end = a + r
    for j in range(n):
        i = idx[j]
        if vm.c_link(A0[i], R0[i], O0[i], F0[i]) < 0:
            raise MemoryError()
    return vm


def _vm_restore(start, range, reserve_addr, reserve_range, vas):  # noqa: A002
    """Unpickle a GpuVm (see GpuVm.__reduce__)."""
    return GpuVm.from_numpy(vas, start, range, reserve_addr=reserve_addr,
                            reserve_range=reserve_range)


FIND_DTYPE = np.dtype([("found", np.bool_), ("addr", np.uint64), ("range", np.uint64),
                       ("obj", np.int64), ("offset", np.uint64)], align=True)


cdef void _op_to_rec(GpuVm vm, object op, OpRec* rec) except *:
    cdef OpMap m
    cdef OpUnmap u
    cdef OpRemap rm
    rec.keep = 0
    rec.has_prev = 0
    rec.has_next = 0
    if isinstance(op, OpMap):
        m = <OpMap>op
        rec.type = T_MAP
        _setva(&rec.va, m._addr, m._rng, m._obj, m._off, 0)
    elif isinstance(op, OpUnmap):
        u = <OpUnmap>op
        _check_va(vm, _va_of(u, u.va))
        rec.type = T_UNMAP
        _setva(&rec.va, u.va._addr, u.va._rng, u.va._obj, u.va._off, u.va._vid)
    elif isinstance(op, OpRemap):
        rm = <OpRemap>op
        if rm.unmap is None:
            raise TypeError("OpRemap object has no unmap: it was made without __init__")
        _check_va(vm, _va_of(rm.unmap, rm.unmap.va))
        rec.type = T_REMAP
        _setva(&rec.va, rm.unmap.va._addr, rm.unmap.va._rng, rm.unmap.va._obj,
               rm.unmap.va._off, rm.unmap.va._vid)
        if rm.prev is not None:
            m = <OpMap>rm.prev
            rec.has_prev = 1
            _setva(&rec.prev, m._addr, m._rng, m._obj, m._off, 0)
        if rm.next is not None:
            m = <OpMap>rm.next
            rec.has_next = 1
            _setva(&rec.next, m._addr, m._rng, m._obj, m._off, 0)
    elif isinstance(op, OpPrefetch):
        rec.type = T_PREFETCH
    else:
        raise TypeError(f"not an op: {op!r}")


cdef int _check_va(GpuVm vm, GpuVa va) except -1:
    if va.vm is not vm:
        raise GpuvmError(_errno.ENOENT, f"{va!r} belongs to another VM")
    return 0


def _require_steps(steps, names):
    missing = [n for n in names if not callable(getattr(steps, n, None))]
    if missing:
        raise GpuvmError(_errno.EINVAL, f"the steps object has no {', '.join(missing)}")


def _dispatch(steps, ops):
    for op in ops:
        if isinstance(op, OpMap):
            steps.sm_step_map(op)
        elif isinstance(op, OpRemap):
            steps.sm_step_remap(op)
        elif isinstance(op, OpUnmap):
            steps.sm_step_unmap(op)


def _same_len(*ns):
    if len(set(ns)) != 1:
        raise GpuvmError(_errno.EINVAL, f"batch arrays differ in length: {ns}")


def _vector(x, what):
    """``x`` as a 1-D numpy array, or TypeError/ValueError naming ``what``.

    A scalar is a vector of one. Masked arrays are refused (np.asarray would
    drop the mask and use the hidden values). Python ints beyond int64 in a
    list make an object array, handled element by element by the callers.
    """
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{what} must be a plain integer array, not a masked array "
                        "(its mask would be ignored)")
    try:
        a = np.asarray(x)
    except OverflowError:
        a = np.asarray(x, dtype=object)
    if not isinstance(x, np.ndarray) and (
            a.dtype.kind == "f"
            or (a.dtype.kind in "iu" and (type(x) is list or type(x) is tuple)
                and any(isinstance(v, (bool, np.bool_)) for v in x))):
        # a list mixing Python ints beyond int64 makes numpy pick float64, and
        # one holding True/False makes it int: keep every element as it is (the
        # callers refuse floats and bools element by element)
        a = np.asarray(x, dtype=object)
    if a.ndim == 0:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, not shape {a.shape}")
    if a.shape[0] == 0 and not isinstance(x, np.ndarray):
        return np.zeros(0, dtype=np.int64)     # [] is float64 to numpy: an empty vector here
    if a.dtype.kind == "O" and any(type(v) is list or type(v) is tuple for v in a.tolist()):
        raise ValueError(f"{what} must be one-dimensional (it holds sequences)")
    return a


def _int_elem(v, what, i):
    """One element of an object array: an int (not bool), else TypeError."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{what}[{i}]={v!r} is not an integer")
    return int(v)


def _as_u64(x, what):
    """A contiguous uint64 array equal to ``x`` element by element, or raise.

    Accepted: 1-D arrays (read-only ones too: the batch calls only read them)
    and sequences of integers. Refused: other dtypes (bool, float, complex,
    datetime, strings, ...) and non-integer elements with TypeError, other
    shapes with ValueError, values outside u64 with GpuvmError EINVAL and the
    index; never a silent conversion.
    """
    a = _vector(x, what)
    k = a.dtype.kind
    if k == "u":
        return np.ascontiguousarray(a, dtype=np.uint64)
    if k == "i":
        bad = np.flatnonzero(a < 0)
        if bad.size:
            i = int(bad[0])
            raise GpuvmError(_errno.EINVAL, f"{what}[{i}]={int(a[i])} is negative", index=i)
        return np.ascontiguousarray(a, dtype=np.uint64)
    if k != "O":
        raise TypeError(f"{what} must be an integer array, not {a.dtype}")
    out = np.empty(a.shape[0], dtype=np.uint64)
    for i, v in enumerate(a.tolist()):
        v = _int_elem(v, what, i)
        if v < 0 or v > 0xFFFFFFFFFFFFFFFF:
            raise GpuvmError(_errno.EINVAL, f"{what}[{i}]={v} is outside the unsigned 64-bit "
                             "range", index=i)
        out[i] = v
    return out


_KIND_NAMES = {"map": K_MAP, "unmap": K_UNMAP, "madvise": K_MADVISE}


def _as_kind(x):
    """Request kinds as a contiguous uint8 array (codes or names), or raise.

    Names may be str or bytes arrays (compared as they are: bytes that are not
    ASCII simply match no name). Other dtypes: TypeError; bad values: EINVAL.
    """
    a = _vector(x, "kind")
    if a.shape[0] == 0:
        return np.zeros(0, dtype=np.uint8)
    k = a.dtype.kind
    if k in "US":
        out = np.full(a.shape[0], 255, dtype=np.uint8)
        for name, code in _KIND_NAMES.items():
            out[a == (name if k == "U" else name.encode())] = code
        bad = np.flatnonzero(out == 255)
        if bad.size:
            i = int(bad[0])
            raise GpuvmError(_errno.EINVAL, f"kind[{i}]={a[i].item()!r} is not map, unmap or "
                             "madvise", index=i)
        return out
    if k == "O":
        a = np.array([_int_elem(v, "kind", i) for i, v in enumerate(a.tolist())], dtype=object)
        k = "i"
        bad = np.flatnonzero((a < 0) | (a > K_MADVISE))
    elif k in "iu":
        bad = np.flatnonzero((a < 0) | (a > K_MADVISE))
    else:
        raise TypeError(f"kind must be integer codes (REQ_MAP/REQ_UNMAP/REQ_MADVISE) or "
                        f"names, not {a.dtype}")
    if bad.size:
        i = int(bad[0])
        raise GpuvmError(_errno.EINVAL, f"kind[{i}]={int(a[i])} is not REQ_MAP (0), "
                         "REQ_UNMAP (1) or REQ_MADVISE (2)", index=i)
    return np.ascontiguousarray(a, dtype=np.uint8)


def _as_obj(x):
    """Object handles as a contiguous int64 array (-1 or None = no object), or raise."""
    a = _vector(x, "obj")
    k = a.dtype.kind
    if k in "iu":
        if k == "u":
            bad = np.flatnonzero(a > np.uint64(0x7FFFFFFFFFFFFFFF))
        else:
            bad = np.flatnonzero(a < -1)
        if bad.size:
            i = int(bad[0])
            raise GpuvmError(_errno.EINVAL, f"obj[{i}]={int(a[i])} is not a handle or -1",
                             index=i)
        return np.ascontiguousarray(a, dtype=np.int64)
    if k != "O":
        raise TypeError(f"obj must be an integer array (-1 = no object), not {a.dtype}")
    out = np.empty(a.shape[0], dtype=np.int64)
    for i, v in enumerate(a.tolist()):
        if v is None:
            out[i] = -1
            continue
        v = _int_elem(v, "obj", i)
        if not -1 <= v < (1 << 63):
            raise GpuvmError(_errno.EINVAL, f"obj[{i}]={v} is not a handle or -1", index=i)
        out[i] = v
    return out
