"""ctypes binding of the compiled kernel oracle: a VM with the core's API.

:class:`KernelOracle` loads the library that :mod:`gpuvm_core.kernel.build`
compiled from a kernel tree; calling it (``oracle(start, range,
reserve_addr=, reserve_range=)``) makes a :class:`KernelGpuVm`, which answers
the same calls as ``GpuVm`` / ``RefGpuVm`` that the conformance replay, the
fuzz harness and the benchmarks use:

* ``sm_map_ops_create`` / ``madvise_ops_create`` / ``sm_unmap_ops_create`` /
  ``prefetch_ops_create`` run the kernel's drm_gpuvm_sm_map_ops_create(),
  drm_gpuvm_madvise_ops_create(), drm_gpuvm_sm_unmap_ops_create() and
  drm_gpuvm_prefetch_ops_create(); the op list is read back into
  :class:`KernelOp` objects (``as_dict()`` in the vector format),
* ``apply(ops)`` applies them in C with drm_gpuva_map() / _remap() /
  _unmap() and returns how many inserts the tree refused,
* iteration (drm_gpuvm_for_each_va, reserved node left out), ``len``,
  ``find`` / ``find_first`` / ``find_prev`` / ``find_next``
  (drm_gpuva_find() and friends).

Errors: a request the kernel refuses raises :class:`GpuvmError` with the
kernel's errno; arguments outside u64 (or an object handle outside int64)
raise before reaching C, exactly as the core does.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._common import GpuvmError, OpType, check_obj, check_u64
from .build import OracleBuild, build_oracle

__all__ = ["KernelGpuVa", "KernelGpuVm", "KernelOp", "KernelOps", "KernelOracle",
           "load_oracle"]

_OP_WORDS = 20
_range = range  # the methods below take the kernel's argument name `range`
_U64P = ctypes.POINTER(ctypes.c_uint64)
_KINDS = {"map": 0, "unmap": 1, "madvise": 2, "prefetch": 3}
_OP_NAMES = {0: "map", 1: "remap", 2: "unmap", 3: "prefetch"}


@dataclass(frozen=True)
class KernelGpuVa:
    """One VA read back from the kernel's tree. Kernel: struct drm_gpuva."""

    addr: int
    range: int
    obj: int | None
    offset: int

    def as_tuple(self) -> tuple[int, int, int | None, int]:
        return (self.addr, self.range, self.obj, self.offset)


def _va(w: Sequence[int]) -> KernelGpuVa | None:
    if not w[0]:
        return None
    return KernelGpuVa(w[1], w[2], w[4] if w[3] else None, w[5])


def _fields(va: KernelGpuVa) -> dict[str, Any]:
    return {"addr": va.addr, "range": va.range, "obj": va.obj, "offset": va.offset}


@dataclass(frozen=True)
class KernelOp:
    """One op of a kernel op list. Kernel: struct drm_gpuva_op.

    ``map``: the new VA (map, prefetch: the VA prefetched). ``remap``:
    ``prev``/``next`` pieces and the removed ``va``. ``unmap``: the removed
    ``va``. ``keep``: the kernel's merge hint of a remap/unmap.
    """

    type: OpType
    map: KernelGpuVa | None
    prev: KernelGpuVa | None
    next: KernelGpuVa | None
    va: KernelGpuVa | None
    keep: bool

    def as_dict(self) -> dict[str, Any]:
        """The vector-format record of this op (the recorder's and ``GpuVm``'s form)."""
        t = self.type
        if t == OpType.MAP and self.map is not None:
            return {"op": "map", **_fields(self.map)}
        if t == OpType.PREFETCH and self.map is not None:
            return {"op": "prefetch", **_fields(self.map)}
        assert self.va is not None
        unmap = {**_fields(self.va), "keep": self.keep}
        if t == OpType.REMAP:
            return {"op": "remap", "prev": None if self.prev is None else _fields(self.prev),
                    "next": None if self.next is None else _fields(self.next), "unmap": unmap}
        return {"op": "unmap", **unmap}


class KernelOps(list[KernelOp]):
    """An op list still owned by C (drm_gpuva_ops) until applied or dropped."""

    def __init__(self, vm: KernelGpuVm, handle: int, ops: list[KernelOp]) -> None:
        super().__init__(ops)
        self.vm = vm
        self.handle: int | None = handle
        self.generation = vm._generation

    def as_dicts(self) -> list[dict[str, Any]]:
        return [op.as_dict() for op in self]

    def _release(self) -> None:
        h, self.handle = self.handle, None
        if h is not None:
            self.vm._free_ops(h)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing to free into
            self._release()


def _declare(lib: ctypes.CDLL) -> None:
    vp, u64, c_int = ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int
    lib.oracle_vm_create.restype = vp
    lib.oracle_vm_create.argtypes = [u64, u64, u64, u64]
    lib.oracle_vm_destroy.restype = None
    lib.oracle_vm_destroy.argtypes = [vp]
    lib.oracle_vm_len.restype = u64
    lib.oracle_vm_len.argtypes = [vp]
    lib.oracle_warnings_take.restype = ctypes.c_ulong
    lib.oracle_warnings_take.argtypes = []
    lib.oracle_ops_create.restype = c_int
    lib.oracle_ops_create.argtypes = [vp, c_int, u64, u64, c_int, u64, u64,
                                      ctypes.POINTER(vp)]
    lib.oracle_ops_read.restype = u64
    lib.oracle_ops_read.argtypes = [vp, _U64P, u64]
    lib.oracle_ops_free.restype = None
    lib.oracle_ops_free.argtypes = [vp, vp]
    lib.oracle_ops_apply.restype = ctypes.c_long
    lib.oracle_ops_apply.argtypes = [vp, vp]
    lib.oracle_vm_state.restype = u64
    lib.oracle_vm_state.argtypes = [vp, _U64P, u64]
    lib.oracle_find.restype = c_int
    lib.oracle_find.argtypes = [vp, c_int, u64, u64, _U64P]
    lib.oracle_run.restype = ctypes.c_double
    lib.oracle_run.argtypes = [vp, vp, vp, vp, vp, vp, u64, c_int, _U64P, _U64P]


class KernelOracle:
    """A loaded oracle library; call it like a VM class to make a :class:`KernelGpuVm`."""

    def __init__(self, build: OracleBuild) -> None:
        self.build = build
        self.lib = ctypes.CDLL(str(build.library))
        _declare(self.lib)

    @property
    def tree(self) -> Path:
        return self.build.tree

    def __call__(self, start: int, range: int, reserve_addr: int = 0,  # noqa: A002
                 reserve_range: int = 0) -> KernelGpuVm:
        return KernelGpuVm(self, start, range, reserve_addr=reserve_addr,
                           reserve_range=reserve_range)

    def take_warnings(self) -> int:
        """Kernel WARNs fired since the last call (drm_WARN in drm_gpuvm.c), then reset."""
        return int(self.lib.oracle_warnings_take())

    def __repr__(self) -> str:
        return f"KernelOracle({str(self.tree)!r})"


_LOADED: dict[str, KernelOracle] = {}


def load_oracle(tree: str | Path, *, force: bool = False) -> KernelOracle:
    """Build (or reuse) and load the oracle for kernel tree ``tree`` (once per process)."""
    build = build_oracle(tree, force=force)
    key = str(build.library)
    if key not in _LOADED or force:
        _LOADED[key] = KernelOracle(build)
    return _LOADED[key]


class KernelGpuVm:
    """A drm_gpuvm living in the compiled kernel code (see module docstring).

    Kernel: drm_gpuvm_init() with the given reserved node; freed with
    drm_gpuvm_put() once every VA is removed.
    """

    def __init__(self, oracle: KernelOracle, start: int, range: int,  # noqa: A002
                 reserve_addr: int = 0, reserve_range: int = 0) -> None:
        vals = [check_u64(v, n) for v, n in ((start, "start"), (range, "range"),
                                             (reserve_addr, "reserve_addr"),
                                             (reserve_range, "reserve_range"))]
        self._oracle = oracle
        self._lib = oracle.lib
        self._vm: int | None = None
        self._generation = 0
        #: op lists handed out and not yet applied or freed: the C VM must outlive
        #: them (the garbage collector may finalize a VM before its op lists).
        self._live: set[int] = set()
        handle = self._lib.oracle_vm_create(*vals)
        if not handle:
            raise MemoryError("oracle_vm_create: out of memory")
        self._vm = handle

    def _free_ops(self, handle: int) -> None:
        if handle in self._live:
            self._live.discard(handle)
            self._lib.oracle_ops_free(self._vm, handle)

    def __del__(self) -> None:
        if self._vm is not None:
            with contextlib.suppress(Exception):  # interpreter shutdown
                for h in list(self._live):
                    self._free_ops(h)
                self._lib.oracle_vm_destroy(self._vm)
            self._vm = None

    # -- requests -------------------------------------------------------------

    def _ops(self, kind: str, addr: int, size: int, obj: int | None, offset: int) -> KernelOps:
        a, r, f = check_u64(addr, "addr"), check_u64(size, "range"), check_u64(offset, "offset")
        o = check_obj(obj)
        handle = ctypes.c_void_p()
        ret = self._lib.oracle_ops_create(self._vm, _KINDS[kind], a, r, o is not None,
                                          0 if o is None else o, f, ctypes.byref(handle))
        if ret == -errno.ENOMEM:
            raise MemoryError(f"{kind}: the kernel ran out of memory")
        if ret:
            raise GpuvmError(-ret, f"drm_gpuvm refused {kind} [{a:#x}, +{r:#x})")
        h = int(handle.value or 0)
        self._live.add(h)
        n = int(self._lib.oracle_ops_read(h, None, 0))
        buf = np.zeros(max(n, 1) * _OP_WORDS, dtype=np.uint64)
        self._lib.oracle_ops_read(h, buf.ctypes.data_as(_U64P), n)
        words = buf.tolist()
        ops = []
        for i in _range(n):
            w = words[i * _OP_WORDS:(i + 1) * _OP_WORDS]
            t = OpType(w[0])
            ops.append(KernelOp(t, _va(w[1:7]) if t in (OpType.MAP, OpType.PREFETCH) else None,
                                _va(w[1:7]) if t == OpType.REMAP else None, _va(w[7:13]),
                                _va(w[13:19]), bool(w[19])))
        return KernelOps(self, h, ops)

    def sm_map_ops_create(self, addr: int, range: int, obj: int | None = None,  # noqa: A002
                          offset: int = 0) -> KernelOps:
        """Kernel: drm_gpuvm_sm_map_ops_create()."""
        return self._ops("map", addr, range, obj, offset)

    def madvise_ops_create(self, addr: int, range: int, obj: int | None = None,  # noqa: A002
                           offset: int = 0) -> KernelOps:
        """Kernel: drm_gpuvm_madvise_ops_create()."""
        return self._ops("madvise", addr, range, obj, offset)

    def sm_unmap_ops_create(self, addr: int, range: int) -> KernelOps:  # noqa: A002
        """Kernel: drm_gpuvm_sm_unmap_ops_create()."""
        return self._ops("unmap", addr, range, None, 0)

    def prefetch_ops_create(self, addr: int, range: int) -> KernelOps:  # noqa: A002
        """Kernel: drm_gpuvm_prefetch_ops_create()."""
        return self._ops("prefetch", addr, range, None, 0)

    def apply(self, ops: KernelOps) -> int:
        """Apply ``ops`` with drm_gpuva_map/_remap/_unmap; inserts the tree refused.

        The list must come from this VM, unchanged since (else EINVAL, nothing
        applied); it is consumed (its C memory freed by drm_gpuva_ops_free()).
        Prefetch ops change nothing.
        """
        if not isinstance(ops, KernelOps) or ops.vm is not self:
            raise GpuvmError(errno.EINVAL, "apply: ops were not created by this VM")
        if ops.handle is None or ops.generation != self._generation:
            raise GpuvmError(errno.EINVAL, "apply: ops are stale (already applied, or the "
                                           "VM changed since they were created)")
        if all(op.type == OpType.PREFETCH for op in ops):
            return 0
        h, ops.handle = ops.handle, None
        ret = int(self._lib.oracle_ops_apply(self._vm, h))
        if ret == -errno.ENOMEM:
            self._free_ops(h)
            raise MemoryError("apply: out of memory")
        self._live.discard(h)  # oracle_ops_apply freed it
        self._generation += 1
        return ret

    # -- state ----------------------------------------------------------------

    def state(self) -> list[tuple[int, int, int | None, int]]:
        """Every VA but the reserved node, in tree order, as tuples."""
        n = int(self._lib.oracle_vm_state(self._vm, None, 0))
        buf = np.zeros(max(n, 1) * 5, dtype=np.uint64)
        self._lib.oracle_vm_state(self._vm, buf.ctypes.data_as(_U64P), n)
        w = buf.tolist()
        return [(w[i], w[i + 1], w[i + 3] if w[i + 2] else None, w[i + 4])
                for i in _range(0, 5 * n, 5)]

    def __iter__(self) -> Iterator[KernelGpuVa]:
        return iter([KernelGpuVa(*t) for t in self.state()])

    def __len__(self) -> int:
        return int(self._lib.oracle_vm_len(self._vm))

    def _find(self, kind: int, a: int, b: int) -> KernelGpuVa | None:
        out = (ctypes.c_uint64 * 5)()
        if not self._lib.oracle_find(self._vm, kind, a, b, out):
            return None
        return KernelGpuVa(out[0], out[1], out[3] if out[2] else None, out[4])

    def find(self, addr: int, range: int) -> KernelGpuVa | None:  # noqa: A002
        """Kernel: drm_gpuva_find() (exact match)."""
        return self._find(0, check_u64(addr, "addr"), check_u64(range, "range"))

    def find_first(self, addr: int, range: int) -> KernelGpuVa | None:  # noqa: A002
        """Kernel: drm_gpuva_find_first()."""
        return self._find(1, check_u64(addr, "addr"), check_u64(range, "range"))

    def find_prev(self, start: int) -> KernelGpuVa | None:
        """Kernel: drm_gpuva_find_prev()."""
        return self._find(2, check_u64(start, "start"), 0)

    def find_next(self, end: int) -> KernelGpuVa | None:
        """Kernel: drm_gpuva_find_next()."""
        return self._find(3, check_u64(end, "end"), 0)

    # -- timing -----------------------------------------------------------------

    def run_requests(self, codes: npt.NDArray[np.uint8], addr: npt.NDArray[np.uint64],
                     range: npt.NDArray[np.uint64], obj: npt.NDArray[np.int64],  # noqa: A002
                     offset: npt.NDArray[np.uint64], clock: str = "wall"
                     ) -> tuple[float, int, int]:
        """Issue a request stream in C; ``(seconds, ops applied or hits, refused)``.

        ``codes``: 0 map, 1 unmap, 2 madvise, 255 find_first. The loop runs in
        the oracle (ops_create + drm_gpuva_map/remap/unmap + ops_free per
        request), timed with CLOCK_MONOTONIC (``wall``) or this thread's CPU
        time (``cpu``), so no Python call is in the measured time.
        """
        arrs: list[npt.NDArray[Any]] = [np.ascontiguousarray(codes, dtype=np.uint8),
                np.ascontiguousarray(addr, dtype=np.uint64),
                np.ascontiguousarray(range, dtype=np.uint64),  # (the argument, not the builtin)
                np.ascontiguousarray(obj, dtype=np.int64),
                np.ascontiguousarray(offset, dtype=np.uint64)]
        m = len(arrs[0])
        if any(len(a) != m for a in arrs):
            raise ValueError("run_requests: the five arrays differ in length")
        res, bad = ctypes.c_uint64(), ctypes.c_uint64()
        ns = self._lib.oracle_run(self._vm, *(a.ctypes.data for a in arrs), m,
                                  1 if clock == "cpu" else 0, ctypes.byref(res),
                                  ctypes.byref(bad))
        self._generation += 1
        return ns / 1e9, int(res.value), int(bad.value)
