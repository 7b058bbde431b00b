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
The batch loop prefetches the chunk of request i+1 while request i runs;
``find_first_batch`` runs its queries in software-pipelined groups (one
lock-step search over ``firsts`` per group, prefetch of each query's chunk
keys, then of the answer's value lines). See docs/benchmarks.md.

Identity: each VA carries a 32-bit id (insertion counter). ``GpuVa`` is a view
holding its VM, ``addr``, ``id`` and a copy of the immutable fields, so it can
never read freed or reused memory; using a view whose VA was removed (remove,
``alive``) is detected by an ``(addr, id)`` lookup and refused with ENOENT.
Ids wrap after 2**32 inserts.

Op lists: the walker writes compact ``OpRec`` records into a reusable C
buffer; ``Ops`` copies them and builds Python op objects only when indexed.
``apply(Ops)`` works on the records directly and refuses a list created
before the VM last changed (generation counter, ESTALE).

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

Planted bug for the fuzz harness: ``_debug_set_fault(1)`` makes case M6
(split in the middle) compute the next piece's offset one too high.
"""

cimport cython
from cpython.mem cimport PyMem_RawMalloc, PyMem_RawRealloc, PyMem_RawFree
from libc.stdint cimport uint64_t, int64_t, uint32_t
from libc.string cimport memmove, memcpy

import errno as _errno

import numpy as np

from ._common import GpuvmError, OpType, check_u64, check_obj

cdef extern from *:
    """
    #if defined(__GNUC__)
    #define gpuvm_prefetch(p) __builtin_prefetch((const void*)(p))
    #else
    #define gpuvm_prefetch(p) ((void)0)
    #endif
    """
    void gpuvm_prefetch(const void* p) noexcept nogil

cdef enum:
    E_INVAL = 22
    E_EXIST = 17
    E_NOMEM = 12
    E_NOENT = 2

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


cdef inline u64 _u64(object v, str what) except? 0:
    if type(v) is not int:
        v = check_u64(v, what)
    try:
        return <u64>v
    except OverflowError:
        raise GpuvmError(_errno.EINVAL, f"{what}={v} is outside the unsigned 64-bit range") from None


cdef inline int64_t _to_obj(object v) except? -2:
    if v is None:
        return -1
    v = check_obj(v)
    return <int64_t>v


def _debug_set_fault(int n):
    """Plant a bug for the fuzz harness. 0 = off; 1 = M6 next-piece offset off by one.

    Kernel: none (test hook).
    """
    global _fault
    if n not in (0, 1):
        raise ValueError("fault must be 0 (off) or 1 (M6 next offset + 1)")
    _fault = n


def _debug_get_fault():
    return _fault


# ----------------------------------------------------------------------------
# views and ops

cdef class GpuVa:
    """A view of one mapping (fields copied; liveness checked on use).

    Kernel: struct drm_gpuva.
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
        if self.vm is None:
            return False
        self.vm._idle()
        return self.vm.c_locate(self._addr, self._vid, &p)

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
        return self.va._addr

    @property
    def range(self):
        return self.va._rng

    @property
    def obj(self):
        return self.va.obj

    @property
    def offset(self):
        return self.va._off

    cdef dict _fields(self):
        return {"addr": self.va._addr, "range": self.va._rng, "obj": self.va.obj,
                "offset": self.va._off, "keep": bool(self.keep)}

    def as_dict(self):
        d = {"op": "unmap"}
        d.update(self._fields())
        return d

    def __repr__(self):
        return f"OpUnmap({self.as_dict()})"


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
        return {
            "op": "remap",
            "prev": None if self.prev is None else (<OpMap>self.prev)._va_dict(),
            "next": None if self.next is None else (<OpMap>self.next)._va_dict(),
            "unmap": self.unmap._fields(),
        }

    def __repr__(self):
        return f"OpRemap({self.as_dict()})"


cdef class OpPrefetch:
    """Prefetch ``va``. Kernel: struct drm_gpuva_op_prefetch."""

    def __init__(self, GpuVa va not None):
        self.va = va

    type = OpType.PREFETCH

    @property
    def addr(self):
        return self.va._addr

    @property
    def range(self):
        return self.va._rng

    @property
    def obj(self):
        return self.va.obj

    @property
    def offset(self):
        return self.va._off

    def as_dict(self):
        return {"op": "prefetch", "addr": self.va._addr, "range": self.va._rng,
                "obj": self.va.obj, "offset": self.va._off}

    def __repr__(self):
        return f"OpPrefetch({self.as_dict()})"


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


cdef class Ops:
    """An op list, valid only while its VM is unchanged. Kernel: struct drm_gpuva_ops.

    Records are kept in C; Python op objects are built on first access.
    """

    def __init__(self):
        raise TypeError("Ops lists come from GpuVm.*_ops_create()")

    def __dealloc__(self):
        PyMem_RawFree(self.recs)

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


cdef Ops _make_ops(GpuVm vm, OpBuf* buf):
    cdef Ops o = Ops.__new__(Ops)
    o.vm = vm
    o.generation = vm.generation
    o.n = buf.n
    if buf.n:
        o.recs = <OpRec*>PyMem_RawMalloc(buf.n * sizeof(OpRec))
        if o.recs == NULL:
            raise MemoryError()
        memcpy(o.recs, buf.recs, buf.n * sizeof(OpRec))
    return o


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
        if self.generation or self.nch:
            raise RuntimeError("GpuVm.__init__ called twice")
        self.mm_start, self.mm_range = s, r
        self.reserve_addr, self.reserve_range = ka, kr
        # drm_gpuvm_init(): the reserved node is linked without range checks,
        # and only when its end does not wrap.
        if kr and ka + kr >= ka:
            self.kid = self.next_id
            if self.c_link(ka, kr, -1, 0) < 0:
                raise MemoryError()
            self.count -= 1

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(self.nch):
            PyMem_RawFree(self.chunks[i])
        PyMem_RawFree(self.chunks)
        PyMem_RawFree(self.firsts)
        PyMem_RawFree(self.zaddr)
        PyMem_RawFree(self.buf.recs)

    cdef int _idle(self) except -1:
        """Refuse use while a batch call of another thread runs on this VM without the GIL."""
        if self.busy:
            raise GpuvmError(_errno.EBUSY, "the VM is in use by a batch call running in "
                                           "another thread")
        return 0

    # -- positions --------------------------------------------------------

    cdef Pos c_upper_raw(self, u64 key) noexcept nogil:
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
        p.ci = _bisect_right(self.firsts, self.nch, key) - 1
        if p.ci < 0:
            p.ci = 0
            p.si = 0
            return p
        c = self.chunks[p.ci]
        if not self.in_batch:
            for k in range(0, GPUVM_CHUNK, 8):
                gpuvm_prefetch(&c.addr[k])
                gpuvm_prefetch(&c.rng[k])
        p.si = _bisect_right(c.addr, c.n, key)
        return p

    cdef Pos c_upper(self, u64 key) noexcept nogil:
        """First position whose addr > key."""
        cdef Pos p = self.c_upper_raw(key)
        if p.ci < self.nch and p.si == self.chunks[p.ci].n:
            p.ci += 1
            p.si = 0
        return p

    cdef Pos c_lower(self, u64 key) noexcept nogil:
        """First position whose addr >= key."""
        cdef Pos p
        cdef Chunk* c
        p.ci = _bisect_left(self.firsts, self.nch, key) - 1
        if p.ci < 0:
            p.ci = 0
        p.si = 0
        if self.nch == 0:
            return p
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
        c.vid[si] = self.next_id
        self.next_id += 1
        if self.next_id == 0:
            self.next_id = 1
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
                       v.off + ls_range + req_range + <u64>_fault, 0)
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
                self.c_unlink(p)
                if r.type == T_REMAP:
                    if r.has_prev:
                        rc = self.c_insert(r.prev.addr, r.prev.rng, r.prev.obj, r.prev.off)
                        if rc == -E_NOMEM:
                            return rc
                        if rc < 0:
                            failed[0] += 1
                    if r.has_next:
                        rc = self.c_insert(r.next.addr, r.next.rng, r.next.obj, r.next.off)
                        if rc == -E_NOMEM:
                            return rc
                        if rc < 0:
                            failed[0] += 1
        return 0

    # -- Python surface: validity and lookups ------------------------------------

    def range_valid(self, addr, range):  # noqa: A002
        """Kernel: drm_gpuvm_range_valid()."""
        return self.c_range_valid(_u64(addr, "addr"), _u64(range, "range"))

    cdef GpuVa _va_at(self, Pos p):
        cdef VaRec v
        self.c_read(p, &v)
        return _make_va(self, &v)

    cdef object _first(self, u64 qs, u64 ql):
        cdef Pos p
        if self.c_iter_first(qs, ql, &p):
            return self._va_at(p)
        return None

    def find_first(self, addr, range):  # noqa: A002
        """Kernel: drm_gpuva_find_first()."""
        self._idle()
        cdef u64 a = _u64(addr, "addr")
        cdef u64 r = _u64(range, "range")
        return self._first(a, a + r - 1)

    def find(self, addr, range):  # noqa: A002
        """Kernel: drm_gpuva_find()."""
        self._idle()
        cdef u64 a = _u64(addr, "addr")
        cdef u64 r = _u64(range, "range")
        cdef Pos p
        cdef Chunk* c
        if self.c_iter_first(a, a + r - 1, &p):
            c = self.chunks[p.ci]
            if c.addr[p.si] == a and c.rng[p.si] == r:
                return self._va_at(p)
        return None

    def find_prev(self, start):
        """Kernel: drm_gpuva_find_prev(). Quirk: may return a VA covering ``start``."""
        self._idle()
        cdef u64 s = _u64(start, "start")
        if not self.c_range_valid(s - 1, 1):
            return None
        return self._first(s - 1, s)

    def find_next(self, end):
        """Kernel: drm_gpuva_find_next(). Quirk: may return a VA starting at ``end + 1``."""
        self._idle()
        cdef u64 e = _u64(end, "end")
        if not self.c_range_valid(e, 1):
            return None
        return self._first(e, e + 1)

    def interval_empty(self, addr, range):  # noqa: A002
        """Kernel: drm_gpuvm_interval_empty()."""
        self._idle()
        cdef u64 a = _u64(addr, "addr")
        cdef u64 r = _u64(range, "range")
        cdef Pos p
        return not self.c_iter_first(a, a + r - 1, &p)

    def insert(self, addr, range, obj=None, offset=0):  # noqa: A002
        """Kernel: drm_gpuva_insert()."""
        self._idle()
        cdef u64 a = _u64(addr, "addr")
        cdef u64 r = _u64(range, "range")
        cdef int64_t o = _to_obj(obj)
        cdef u64 f = _u64(offset, "offset")
        cdef int rc = self.c_insert(a, r, o, f)
        cdef VaRec v
        if rc == -E_INVAL:
            raise GpuvmError(_errno.EINVAL,
                             f"[{a:#x}, +{r:#x}) is not a valid range for this VM "
                             "(overflow, outside the VM, or over the reserved node)")
        if rc == -E_EXIST:
            raise GpuvmError(_errno.EEXIST, f"[{a:#x}, +{r:#x}) overlaps an existing VA")
        if rc < 0:
            raise MemoryError()
        _setva(&v, a, r, o, f, self.next_id - 1 if self.next_id != 1 else 0xFFFFFFFF)
        return _make_va(self, &v)

    def remove(self, GpuVa va not None):
        """Kernel: drm_gpuva_remove()."""
        self._idle()
        cdef Pos p
        if va.vm is self and self.kid != 0 and va._vid == self.kid:
            raise GpuvmError(_errno.EINVAL, "the kernel-reserved node cannot be removed")
        if va.vm is not self or not self.c_locate(va._addr, va._vid, &p):
            raise GpuvmError(_errno.ENOENT, f"{va!r} is not in this VM")
        self.c_unlink(p)

    def __len__(self):
        return self.count

    cdef list _views(self, Pos p, u64 end, bint bounded, bint skip_reserved):
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
        """Address order (list order), reserved node excluded; a snapshot."""
        self._idle()
        cdef Pos p
        p.ci = 0
        p.si = 0
        return iter(self._views(p, 0, False, True))

    def va_range(self, addr, range):  # noqa: A002
        """VAs the kernel's range iterator visits for [addr, addr+range), reserved node excluded.

        Kernel: drm_gpuvm_for_each_va_range().
        """
        self._idle()
        cdef u64 a = _u64(addr, "addr")
        cdef u64 r = _u64(range, "range")
        cdef u64 end = a + r
        cdef Pos p
        if not self.c_iter_first(a, end - 1, &p):
            return []
        return self._views(p, end, True, True)

    def state(self):
        """Every VA as (addr, range, obj, offset), list order, reserved node excluded."""
        return [va.as_tuple() for va in self]

    @property
    def kernel_node(self):
        """The kernel-reserved node (Kernel: drm_gpuvm.kernel_alloc_node) or None."""
        self._idle()
        cdef Pos p
        if self.kid == 0:
            return None
        if not self.c_locate(self.reserve_addr, self.kid, &p):
            return None
        return self._va_at(p)

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

    cdef Ops _finish(self, int rc, u64 addr, u64 rng):
        if rc == -E_INVAL:
            raise self._invalid(addr, rng)
        if rc < 0:
            raise MemoryError()
        return _make_ops(self, &self.buf)

    def sm_map_ops_create(self, addr, range, obj=None, offset=0):  # noqa: A002
        """Kernel: drm_gpuvm_sm_map_ops_create()."""
        self._idle()
        cdef u64 a = _u64(addr, "addr")
        cdef u64 r = _u64(range, "range")
        cdef int64_t o = _to_obj(obj)
        cdef u64 f = _u64(offset, "offset")
        return self._finish(self.c_sm_map(a, r, o, f, False, &self.buf), a, r)

    def madvise_ops_create(self, addr, range, obj=None, offset=0):  # noqa: A002
        """Kernel: drm_gpuvm_madvise_ops_create()."""
        self._idle()
        cdef u64 a = _u64(addr, "addr")
        cdef u64 r = _u64(range, "range")
        cdef int64_t o = _to_obj(obj)
        cdef u64 f = _u64(offset, "offset")
        return self._finish(self.c_sm_map(a, r, o, f, True, &self.buf), a, r)

    def sm_unmap_ops_create(self, addr, range):  # noqa: A002
        """Kernel: drm_gpuvm_sm_unmap_ops_create()."""
        self._idle()
        cdef u64 a = _u64(addr, "addr")
        cdef u64 r = _u64(range, "range")
        return self._finish(self.c_sm_unmap(a, r, &self.buf), a, r)

    def prefetch_ops_create(self, addr, range):  # noqa: A002
        """Kernel: drm_gpuvm_prefetch_ops_create() (no range check; may list the reserved node)."""
        self._idle()
        cdef u64 a = _u64(addr, "addr")
        cdef u64 r = _u64(range, "range")
        return self._finish(self.c_prefetch(a, r, &self.buf), a, r)

    def sm_map(self, steps, addr, range, obj=None, offset=0):  # noqa: A002
        """Kernel: drm_gpuvm_sm_map(): call ``steps.sm_step_*`` for each op in order.

        Like the kernel, a ``steps`` object lacking any of sm_step_map,
        sm_step_remap, sm_step_unmap is refused with EINVAL before anything happens.
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
        was created. A plain sequence of op objects is checked before anything
        is applied: an unmap/remap naming a VA that is not in this VM (removed,
        another VM's, or named twice) is refused with ENOENT, one naming the
        kernel-reserved node with EINVAL (drm_gpuva_remove refuses that node),
        and the VM is left unchanged.
        Kernel: drm_gpuva_map() / drm_gpuva_remap() / drm_gpuva_unmap().
        """
        self._idle()
        cdef Py_ssize_t failed = 0, i, n
        cdef int rc
        cdef Ops o
        cdef OpRec* recs
        cdef Pos p
        if isinstance(ops, Ops):
            o = <Ops>ops
            if o.vm is not self or o.generation != self.generation:
                raise GpuvmError(_errno.ESTALE,
                                 "op list is stale: the VM changed since it was created")
            rc = self.c_apply(o.recs, o.n, &failed)
        else:
            seq = list(ops)
            n = len(seq)
            recs = <OpRec*>PyMem_RawMalloc((n if n else 1) * sizeof(OpRec))
            if recs == NULL:
                raise MemoryError()
            try:
                named = set()
                for i in range(n):
                    _op_to_rec(self, seq[i], &recs[i])
                    if recs[i].type != T_REMAP and recs[i].type != T_UNMAP:
                        continue
                    if self.kid != 0 and recs[i].va.vid == self.kid:
                        raise GpuvmError(_errno.EINVAL, "an op names the kernel-reserved node, "
                                                        "which cannot be removed")
                    key = (recs[i].va.addr, recs[i].va.vid)
                    if key in named or not self.c_locate(recs[i].va.addr, recs[i].va.vid, &p):
                        raise GpuvmError(_errno.ENOENT, f"op {i} ({seq[i]!r}) names a VA that "
                                                        "is not (or no longer) in this VM")
                    named.add(key)
                rc = self.c_apply(recs, n, &failed)
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
        Kernel: drm_gpuvm_sm_map_ops_create() + drm_gpuva_map/_remap/_unmap,
        once per request.
        """
        cdef u64[::1] A = _as_u64(addr, "addr")
        cdef u64[::1] R = _as_u64(range, "range")
        cdef int64_t[::1] O = _as_obj(obj)
        cdef u64[::1] F = _as_u64(offset, "offset")
        cdef Py_ssize_t n = A.shape[0]
        _same_len(n, R.shape[0], O.shape[0], F.shape[0])
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        return self._batch(NULL, K_MAP, &A[0], &R[0], &O[0], &F[0], n)

    def sm_unmap_batch(self, addr, range):  # noqa: A002
        """Unmap many requests in order. Kernel: drm_gpuvm_sm_unmap_ops_create() per request."""
        cdef u64[::1] A = _as_u64(addr, "addr")
        cdef u64[::1] R = _as_u64(range, "range")
        cdef Py_ssize_t n = A.shape[0]
        _same_len(n, R.shape[0])
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        return self._batch(NULL, K_UNMAP, &A[0], &R[0], NULL, NULL, n)

    def madvise_batch(self, addr, range):  # noqa: A002
        """madvise (no object) many requests. Kernel: drm_gpuvm_madvise_ops_create() per request."""
        cdef u64[::1] A = _as_u64(addr, "addr")
        cdef u64[::1] R = _as_u64(range, "range")
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
        cdef unsigned char[::1] K = _as_kind(kind)
        cdef u64[::1] A = _as_u64(addr, "addr")
        cdef u64[::1] R = _as_u64(range, "range")
        cdef int64_t[::1] O = _as_obj(obj)
        cdef u64[::1] F = _as_u64(offset, "offset")
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
        self._idle()
        self.busy = 1
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
        self.busy = 0
        self.in_batch = 0
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
        cdef u64[::1] A = _as_u64(addr, "addr")
        cdef u64[::1] R = _as_u64(range, "range")
        _same_len(A.shape[0], R.shape[0])
        cdef Py_ssize_t n = A.shape[0]
        res = np.zeros(n, dtype=FIND_DTYPE)
        if n == 0:
            return res
        cdef unsigned char[::1] raw = res.view(np.uint8)
        cdef FindRow* rows = <FindRow*>&raw[0]
        self._idle()
        self.busy = 1
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
        self._idle()
        return self.c_nbytes()

    def __sizeof__(self):
        self._idle()
        return object.__sizeof__(self) + self.c_nbytes()

    def memory_stats(self):
        """Layout figures for memory reports: a dict with ``chunks``, ``slots_used``,
        ``slots_per_chunk``, ``fill`` (used / capacity), ``nbytes`` and
        ``bytes_per_va`` (nbytes per VA, reserved node included)."""
        self._idle()
        cdef Py_ssize_t used = 0, i
        for i in range(self.nch):
            used += self.chunks[i].n
        nb = self.c_nbytes()
        return {"chunks": self.nch, "slots_used": used, "slots_per_chunk": GPUVM_CHUNK,
                "fill": <double>used / (self.nch * GPUVM_CHUNK) if self.nch else 0.0,
                "nbytes": nb, "bytes_per_va": <double>nb / used if used else 0.0}

    # -- invariants -------------------------------------------------------------------------

    def check(self):
        """Full internal invariant check; raises AssertionError with a description."""
        self._idle()
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
        self._idle()
        return (self.nch, sum(self.chunks[i].n for i in range(self.nch)), GPUVM_CHUNK)


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
        _check_va(vm, u.va)
        rec.type = T_UNMAP
        _setva(&rec.va, u.va._addr, u.va._rng, u.va._obj, u.va._off, u.va._vid)
    elif isinstance(op, OpRemap):
        rm = <OpRemap>op
        _check_va(vm, rm.unmap.va)
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


def _as_u64(x, what):
    """Convert an array-like to a contiguous uint64 array without loss, or raise EINVAL."""
    a = np.asarray(x)
    if a.dtype.kind == "f" and not isinstance(x, np.ndarray):
        # a list mixing Python ints beyond int64 makes numpy pick float64: keep them exact
        a = np.asarray(x, dtype=object)
    if a.ndim != 1:
        a = a.reshape(-1) if a.ndim == 0 else a
        if a.ndim != 1:
            raise GpuvmError(_errno.EINVAL, f"{what} must be one-dimensional")
    k = a.dtype.kind
    if k == "u":
        return np.ascontiguousarray(a, dtype=np.uint64)
    if k == "i":
        bad = np.flatnonzero(a < 0)
        if bad.size:
            i = int(bad[0])
            raise GpuvmError(_errno.EINVAL, f"{what}[{i}]={int(a[i])} is negative", index=i)
        return np.ascontiguousarray(a, dtype=np.uint64)
    if k == "b":
        raise TypeError(f"{what} must be integers, not bool")
    if k == "f":
        ok = np.isfinite(a) & (a == np.floor(a)) & (a >= 0) & (a < 18446744073709551616.0)
        bad = np.flatnonzero(~ok)
        if bad.size:
            i = int(bad[0])
            raise GpuvmError(_errno.EINVAL, f"{what}[{i}]={a[i]!r} is not a u64 integer",
                             index=i)
        return np.ascontiguousarray(a, dtype=np.uint64)
    # objects (big Python ints) and anything else: element by element
    out = np.empty(a.shape[0], dtype=np.uint64)
    for i, v in enumerate(a.tolist()):
        if isinstance(v, float):
            if not (v.is_integer() and 0 <= v < 18446744073709551616.0):
                raise GpuvmError(_errno.EINVAL, f"{what}[{i}]={v!r} is not a u64 integer",
                                 index=i)
            v = int(v)
        try:
            out[i] = check_u64(v, f"{what}[{i}]")
        except GpuvmError as e:
            raise GpuvmError(_errno.EINVAL, e.strerror, index=i) from None
    return out


_KIND_NAMES = {"map": K_MAP, "unmap": K_UNMAP, "madvise": K_MADVISE}


def _as_kind(x):
    """Request kinds as a contiguous uint8 array (codes or names), or raise EINVAL."""
    a = np.asarray(x)
    if a.ndim == 0:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise GpuvmError(_errno.EINVAL, "kind must be one-dimensional")
    if a.shape[0] == 0:
        return np.zeros(0, dtype=np.uint8)
    if a.dtype.kind in "US":
        if a.dtype.kind == "S":
            a = a.astype(str)
        out = np.full(a.shape[0], 255, dtype=np.uint8)
        for name, code in _KIND_NAMES.items():
            out[a == name] = code
        bad = np.flatnonzero(out == 255)
        if bad.size:
            i = int(bad[0])
            raise GpuvmError(_errno.EINVAL, f"kind[{i}]={str(a[i])!r} is not map, unmap or "
                             "madvise", index=i)
        return out
    if a.dtype.kind not in "iu":
        raise GpuvmError(_errno.EINVAL,
                         f"kind must be integer codes (REQ_MAP/REQ_UNMAP/REQ_MADVISE) or "
                         f"names, not {a.dtype}")
    bad = np.flatnonzero((a < 0) | (a > K_MADVISE))
    if bad.size:
        i = int(bad[0])
        raise GpuvmError(_errno.EINVAL, f"kind[{i}]={int(a[i])} is not REQ_MAP (0), "
                         "REQ_UNMAP (1) or REQ_MADVISE (2)", index=i)
    return np.ascontiguousarray(a, dtype=np.uint8)


def _as_obj(x):
    a = np.asarray(x)
    if a.ndim == 0:
        a = a.reshape(-1)
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
    out = np.empty(a.shape[0], dtype=np.int64)
    for i, v in enumerate(a.tolist()):
        if v is None:
            out[i] = -1
            continue
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, int) and not isinstance(v, bool) and -1 <= v < (1 << 63):
            out[i] = v
        else:
            raise GpuvmError(_errno.EINVAL, f"obj[{i}]={v!r} is not a handle or -1", index=i)
    return out
