"""W1-W4 (gpuvm_core.workloads) through every implementation, grouped per (W, N).

Measures, for each workload and N, the wall time of the M-request loop:

* ``core-single``: ``vm.*_ops_create(...)`` + ``vm.apply(ops)`` per request
  (W4: ``vm.find_first(addr, 1)``) on the compiled core;
* ``core-batch``: the numpy batch calls (``sm_map_batch`` ...; W2 alternates
  kinds, so it is one call per request);
* ``reference``: the pure-Python ``RefGpuVm`` (single path, smaller M);
* ``kernel``: the kernel tree's own drm_gpuvm.c compiled in userspace
  (gpuvm_core.kernel), same M as the core, the whole loop in one C call
  (deselected with a message when no kernel tree is given, see conftest);
* ``intervaltree`` / ``portion``: the peers of ``benchmarks/peers.py`` where
  they can express the workload (portion: N <= 1e3, no W3).

pytest-benchmark's figure is per M-request loop; divide by M (in
``extra_info``) for ns/request. Every round starts from a fresh populated VM.
"""

from __future__ import annotations

from typing import Any

import pytest

import gpuvm_core
from benchmarks.peers import PEERS, new_peer
from gpuvm_core.workloads import new_vm, run_batch, run_single, workload

IMPLS = ["core-single", "core-batch", "kernel", "reference", "intervaltree", "portion"]


def _kernel_loop(vm: Any, reqs: Any) -> int:
    return int(vm.run_requests(reqs.codes, reqs.addr, reqs.range, reqs.obj, reqs.offset)[1])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("w", [1, 2, 3, 4], ids=lambda w: f"W{w}")
def test_workload(run_loop: Any, settings: dict[str, int], impl: str, w: int, n: int,
                  request: pytest.FixtureRequest) -> None:
    if impl == "portion" and (w == 3 or n > 1000):
        pytest.skip("portion: no madvise semantics (W3); O(n) per assignment (N > 1e3)")
    slow = impl not in ("core-single", "core-batch", "kernel")
    m = settings["slow_m"] if slow else settings["m"]
    reqs = workload(w, n, m)
    if impl in PEERS:
        def make() -> Any:
            return new_peer(impl, n, w)
    elif impl == "kernel":
        oracle = request.getfixturevalue("kernel_oracle")

        def make() -> Any:
            return new_vm(oracle, n, w)
    else:
        factory = gpuvm_core.RefGpuVm if impl == "reference" else gpuvm_core.GpuVm

        def make() -> Any:
            return new_vm(factory, n, w)
    loop = run_batch if impl == "core-batch" else _kernel_loop if impl == "kernel" else run_single
    result = run_loop(make, loop, reqs, group=f"W{w} N={n:,}")
    if w == 4:
        assert 0 < result <= m
