# The call floor of the single-request path (benchmarks/call_floor.py).
#
# FloorVm has the methods gpuvm_core.workloads.run_single calls (find_first,
# sm_map_ops_create, sm_unmap_ops_create, madvise_ops_create, apply) with the
# same signatures, defined the same way (def methods of a final cdef class),
# reading their integer arguments the same way, and returning the same kind of
# object (a small free-listed view on a lookup hit, None on a miss; an op-list
# object whose len() is the real request's op count) - and doing nothing else:
# no search, no walker, no guard. run_single over a FloorVm therefore costs
# what any Python call per request costs before the work starts. The answers
# (hit or not, op count) are the real core's, fed in before the clock starts.
# Kernel: none (a yardstick for the kernel comparison, not a model).

cimport cython
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.stdint cimport uint64_t, int64_t


@cython.freelist(16)
@cython.no_gc
cdef class FloorVa:
    cdef readonly object vm
    cdef uint64_t addr
    cdef uint64_t rng


@cython.freelist(8)
@cython.no_gc
cdef class FloorOps:
    cdef readonly object vm
    cdef Py_ssize_t n

    def __len__(self):
        return self.n


@cython.final
cdef class FloorVm:
    cdef Py_ssize_t* answers
    cdef Py_ssize_t count
    cdef Py_ssize_t pos

    def __cinit__(self, answers):
        cdef Py_ssize_t i
        seq = list(answers)
        self.count = len(seq)
        self.answers = <Py_ssize_t*>PyMem_Malloc((self.count or 1) * sizeof(Py_ssize_t))
        if self.answers == NULL:
            raise MemoryError()
        for i in range(self.count):
            self.answers[i] = seq[i]

    def __dealloc__(self):
        PyMem_Free(self.answers)

    cdef inline Py_ssize_t _next(self) noexcept:
        cdef Py_ssize_t x = self.answers[self.pos] if self.count else 0
        self.pos += 1
        if self.pos >= self.count:
            self.pos = 0
        return x

    cdef FloorOps _ops(self):
        cdef FloorOps ops = FloorOps.__new__(FloorOps)
        ops.vm = self
        ops.n = self._next()
        return ops

    def find_first(self, addr, range):  # noqa: A002
        cdef uint64_t a = addr
        cdef uint64_t r = range
        cdef FloorVa va
        if not self._next():
            return None
        va = FloorVa.__new__(FloorVa)
        va.vm = self
        va.addr = a
        va.rng = r
        return va

    def sm_map_ops_create(self, addr, range, obj=None, offset=0):  # noqa: A002
        cdef uint64_t a = addr
        cdef uint64_t r = range
        cdef int64_t o = -1 if obj is None else obj
        cdef uint64_t f = offset
        return self._ops()

    def madvise_ops_create(self, addr, range, obj=None, offset=0):  # noqa: A002
        cdef uint64_t a = addr
        cdef uint64_t r = range
        cdef int64_t o = -1 if obj is None else obj
        cdef uint64_t f = offset
        return self._ops()

    def sm_unmap_ops_create(self, addr, range):  # noqa: A002
        cdef uint64_t a = addr
        cdef uint64_t r = range
        return self._ops()

    def apply(self, ops):
        if not isinstance(ops, FloorOps):
            raise TypeError("not a FloorOps")
        return 0
