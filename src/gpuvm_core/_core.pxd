# Declarations of gpuvm_core._core: the C structures of the VA tree and the
# split/merge walker, and the cdef classes with their C-level attributes and
# methods, so other Cython code can ``cimport gpuvm_core._core`` and work on a
# GpuVm without going through Python. The behaviour is documented in _core.pyx.
# Kernel: drivers/gpu/drm/drm_gpuvm.c.

cimport cython
from libc.stdint cimport uint64_t, int64_t, uint32_t

ctypedef uint64_t u64

cdef extern from *:
    """
    /* Slots per chunk (a leaf of the sorted structure); a power of two. */
    #define GPUVM_CHUNK 64
    """
    enum: GPUVM_CHUNK


cdef enum:
    T_MAP = 0
    T_REMAP = 1
    T_UNMAP = 2
    T_PREFETCH = 3

# Request kinds of GpuVm.requests_batch (exported as REQ_MAP, REQ_UNMAP, REQ_MADVISE).
cdef enum:
    K_MAP = 0
    K_UNMAP = 1
    K_MADVISE = 2


cdef struct Chunk:
    # One leaf: up to GPUVM_CHUNK VAs in address order, struct-of-arrays.
    Py_ssize_t n                 # used slots, 1..GPUVM_CHUNK (never 0 while linked)
    u64 addr[GPUVM_CHUNK]        # sorted; equal addrs in insertion order
    u64 rng[GPUVM_CHUNK]         # range (0 = zero-length VA)
    int64_t obj[GPUVM_CHUNK]     # object handle, -1 = none
    u64 off[GPUVM_CHUNK]         # offset into obj
    uint32_t vid[GPUVM_CHUNK]    # insertion id (identity of the VA)


cdef struct Pos:
    Py_ssize_t ci                # chunk index; ci == nch means "end"
    Py_ssize_t si                # slot index, < chunks[ci].n when not end


cdef struct VaRec:
    u64 addr
    u64 rng
    int64_t obj
    u64 off
    uint32_t vid


cdef struct OpRec:
    # One op of an op list (drm_gpuva_op), as the walker writes it.
    int type                     # T_MAP / T_REMAP / T_UNMAP / T_PREFETCH
    int keep
    int has_prev
    int has_next
    VaRec va                     # MAP: the new VA; UNMAP/REMAP/PREFETCH: the existing VA
    VaRec prev
    VaRec next


cdef struct OpBuf:
    OpRec* recs
    Py_ssize_t n
    Py_ssize_t cap


cdef struct FindRow:             # matches the aligned numpy dtype FIND_DTYPE
    unsigned char found
    u64 addr
    u64 rng
    int64_t obj
    u64 off


cdef class GpuVm


@cython.freelist(16)
@cython.no_gc
cdef class GpuVa:
    cdef readonly GpuVm vm
    cdef u64 _addr
    cdef u64 _rng
    cdef int64_t _obj
    cdef u64 _off
    cdef uint32_t _vid


cdef class OpMap:
    cdef u64 _addr
    cdef u64 _rng
    cdef int64_t _obj
    cdef u64 _off
    cdef dict _va_dict(self)


cdef class OpUnmap:
    cdef readonly GpuVa va
    cdef readonly bint keep
    cdef dict _fields(self)


cdef class OpRemap:
    cdef readonly object prev
    cdef readonly object next
    cdef readonly OpUnmap unmap


cdef class OpPrefetch:
    cdef readonly GpuVa va


cdef enum:
    OPS_INLINE = 3               # lists of up to this many records use a pooled small block
    OPS_POOL = 32                # small record blocks kept for reuse (module-wide, GIL held)


@cython.freelist(8)
@cython.no_gc
cdef class Ops:
    cdef readonly GpuVm vm
    cdef readonly u64 generation
    cdef OpRec* recs               # NULL when n == 0; a pooled OPS_INLINE block when
                                   # n <= OPS_INLINE; else a PyMem_Raw block of n records
    cdef Py_ssize_t n
    cdef list _objs
    cdef list _all(self)


@cython.final
cdef class GpuVm:
    cdef Chunk** chunks            # the leaves, in address order
    cdef u64* firsts               # firsts[i] == chunks[i].addr[0]
    cdef Py_ssize_t nch
    cdef Py_ssize_t capch
    cdef Py_ssize_t hint           # chunk of the last search, tried first (checked)
    cdef u64* zaddr                # sorted addresses of the zero-length VAs
    cdef Py_ssize_t nz
    cdef Py_ssize_t capz
    cdef Py_ssize_t count          # VAs excluding the reserved node
    cdef uint32_t next_id
    cdef readonly uint32_t kid     # id of the reserved node, 0 = none
    cdef readonly u64 generation   # bumped on every link/unlink
    cdef readonly u64 mm_start
    cdef readonly u64 mm_range
    cdef readonly u64 reserve_addr
    cdef readonly u64 reserve_range
    cdef OpBuf buf                 # the walker's scratch; read only under the guard
    cdef int busy                  # the guard: a call is running on this VM (others: EBUSY)
    cdef int in_batch              # a batch loop (it prefetches itself) is running
    # checked id reuse after the 32-bit counter wrapped (or _debug_set_next_id):
    cdef uint32_t* live_ids        # sorted ids linked when the counter restarted
    cdef Py_ssize_t nlive
    cdef Py_ssize_t live_pos       # first live_ids[i] >= next_id
    cdef uint32_t last_id          # the id c_link_at gave last

    # positions
    cdef inline Pos c_upper_raw(self, u64 key) noexcept nogil
    cdef inline Pos c_upper(self, u64 key) noexcept nogil
    cdef inline Pos c_lower(self, u64 key) noexcept nogil
    cdef void c_next(self, Pos* p) noexcept nogil
    cdef bint c_prev(self, Pos* p) noexcept nogil
    cdef void c_read(self, Pos p, VaRec* v) noexcept nogil
    cdef bint c_locate(self, u64 addr, uint32_t vid, Pos* out) noexcept nogil
    # queries
    cdef bint c_iter_first_from(self, Pos p, u64 qs, u64 ql, Pos* out) noexcept nogil
    cdef bint c_iter_first(self, u64 qs, u64 ql, Pos* out) noexcept nogil
    cdef bint c_range_valid(self, u64 addr, u64 rng) noexcept nogil
    # link / unlink
    cdef int c_insert_chunk(self, Py_ssize_t at, Chunk* c) noexcept nogil
    cdef void c_drop_chunk(self, Py_ssize_t at) noexcept nogil
    cdef void c_shift_right(self, Py_ssize_t ci, Py_ssize_t k) noexcept nogil
    cdef void c_shift_left(self, Py_ssize_t ci, Py_ssize_t k) noexcept nogil
    cdef int c_link_at(self, Pos raw, u64 a, u64 r, int64_t o, u64 f) noexcept nogil
    cdef int c_link(self, u64 a, u64 r, int64_t o, u64 f) noexcept nogil
    cdef void c_unlink(self, Pos p) noexcept nogil
    cdef int c_insert(self, u64 a, u64 r, int64_t o, u64 f) noexcept nogil
    cdef uint32_t c_new_id(self) noexcept nogil
    cdef int c_restart_ids(self) noexcept nogil
    # the walker and apply
    cdef int c_sm_map(self, u64 req_addr, u64 req_range, int64_t req_obj, u64 req_offset,
                      bint madvise, OpBuf* buf) noexcept nogil
    cdef int c_sm_unmap(self, u64 req_addr, u64 req_range, OpBuf* buf) noexcept nogil
    cdef int c_prefetch(self, u64 addr, u64 rng, OpBuf* buf) noexcept nogil
    cdef bint c_remap_in_place(self, Pos p, const VaRec* pv) noexcept nogil
    cdef int c_apply(self, const OpRec* recs, Py_ssize_t n, Py_ssize_t* failed) noexcept nogil
    cdef void c_prefetch_chunk(self, u64 key) noexcept nogil
    cdef void c_find_many(self, const u64* A, const u64* R, Py_ssize_t n,
                          FindRow* rows) noexcept nogil
    cdef Py_ssize_t c_nbytes(self) noexcept nogil
    cdef bint c_cover(self, u64 x, VaRec* v) noexcept nogil
    # Python-level helpers
    cdef int _enter(self) except -1
    cdef void _trim(self) noexcept
    cdef object _check(self)
    cdef GpuVa _va_at(self, Pos p)
    cdef object _first(self, u64 qs, u64 ql)
    cdef list _views(self, Pos p, u64 end, bint bounded, bint skip_reserved)
    cdef object _invalid(self, u64 addr, u64 rng)
    cdef Ops _ops(self, int what, u64 a, u64 r, int64_t o, u64 f)
    cdef Ops _map_ops(self, int what, object addr, object rng, object obj, object offset)
    cdef object _batch(self, const unsigned char* K, int kind, const u64* A, const u64* R,
                       const int64_t* O, const u64* F, Py_ssize_t n)
