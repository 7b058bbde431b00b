"""Differential fuzz harness: the compiled core against the pure-Python reference
and, given a kernel tree, against the kernel's own drm_gpuvm.c.

Overview
--------
:mod:`.generator` draws a *case*: a small VA space (8-64 pages, so requests
overlap all the time) and a dense sequence of map, unmap, madvise and
prefetch requests, edge cases included (objects and none, offsets that
continue a mapping, reserved nodes, VMs at 0 and ending at 2^64, unaligned
and invalid requests, zero-length requests). :mod:`.target` replays it on
the *system under test* (default :class:`GpuVm`), the *model*
(:class:`RefGpuVm`) and, with ``--kernel-tree DIR``, the *kernel*
(:mod:`gpuvm_core.kernel`: DIR's drivers/gpu/drm/drm_gpuvm.c compiled in
userspace), comparing after every request the result, the op list, the
refused inserts, the state, ``len`` and the system's ``check()``; then the
whole case again through the system's ``requests_batch`` (the batch path).
With a kernel, the kernel is the oracle: system and model are each checked
against it.

Zero-length requests are accepted by the kernel and leave a VA whose
inclusive last address is below its start. The kernel-recorded vectors only
ever use them as the last step of a case, so most of our zero-length steps are
last too; a few are placed mid-sequence. That is sound because the kernel's
interval-tree search (include/linux/interval_tree_generic.h,
``_subtree_search``) returns the leftmost node in tree order with
``start <= last_q`` and ``start_q <= last`` for *any* node shapes (its
argument only uses the in-order sort by start and the ``subtree_last``
maximum), which is exactly what the reference computes.

On a mismatch the case is shrunk (steps dropped, numbers simplified while
the same kind of mismatch remains) and written by :mod:`.oracle` as one line
in the vector format the conformance replay reads, the expected fields
(``result``, ``ops``, ``state``) recorded from the oracle (the kernel when
given, else the reference). ``pysvm conformance FILE`` then replays it: it
passes on the oracle and fails on the buggy system.

:mod:`.runner` (:func:`run`) knows nothing about GPUVM: it drives any
:class:`Target` (``make_case(rng)`` / ``run_case(case)``), so an SVM-level
target can reuse seeds, sharding, progress and the summary line.
:mod:`.cli` is ``python -m gpuvm_core.fuzz``.

Regression corpus: ``tests/fuzz/corpus/*.jsonl`` holds vector lines of the
same format (hand-picked edge cases and every failure found once); the test
suite replays each of them on both implementations. ``--corpus DIR`` replays
``DIR`` before fuzzing and writes a new failure into it.

Other entry points over the same generator: the hypothesis property and
``RuleBasedStateMachine`` in ``tests/fuzz`` (profiles via
``HYPOTHESIS_PROFILE``), and the atheris target
``tests/fuzz/atheris_target.py`` (the property's ``fuzz_one_input``).
``.ci/run`` fuzzes for 60 s with a seed derived from the commit, and for a
short while against the kernel when a kernel tree is at hand. Commands, the
sanitizer build and how to add a target: ``docs/fuzzing.md``.

Reproducibility: case ``i`` of seed ``K`` is generated from
``random.Random(f"{K}:{i}")``; worker ``j`` of ``J`` runs cases ``j, j+J, ...``.
A run is time-bounded, so a longer run covers a superset of a shorter one's
cases.

Kernel: drivers/gpu/drm/drm_gpuvm.c -- drm_gpuvm_sm_map_ops_create(),
drm_gpuvm_sm_unmap_ops_create(), drm_gpuvm_madvise_ops_create(),
drm_gpuvm_prefetch_ops_create(), drm_gpuva_map()/_remap()/_unmap().
"""

from __future__ import annotations

from .cli import (
    _core_factory,
    _GpuvmTargetFactory,
    _run_one,
    _set_fault,
    build_parser,
    count_arg,
    main,
    replay_corpus,
    seconds_arg,
    shrink_seconds_arg,
)
from .generator import MASK, TOP, Case, CaseGenerator, Chooser, copy_case, simpler_steps
from .oracle import (
    Failure,
    VmFactory,
    errname,
    issue,
    record_vector,
    short_tb,
    state_of,
    vm_kwargs,
    write_failure,
)
from .runner import Summary, case_rng, handle_failure, parse_seed, run, run_shard
from .target import GpuvmTarget, Target

# The names the single-module harness had (tests and tools import them).
_case_rng = case_rng
_handle_failure = handle_failure
_copy_case = copy_case
_simpler_steps = simpler_steps
_short_tb = short_tb

__all__ = [
    "MASK",
    "TOP",
    "Case",
    "CaseGenerator",
    "Chooser",
    "Failure",
    "GpuvmTarget",
    "Summary",
    "Target",
    "VmFactory",
    "build_parser",
    "case_rng",
    "copy_case",
    "count_arg",
    "errname",
    "handle_failure",
    "issue",
    "main",
    "parse_seed",
    "record_vector",
    "replay_corpus",
    "run",
    "run_shard",
    "seconds_arg",
    "short_tb",
    "shrink_seconds_arg",
    "simpler_steps",
    "state_of",
    "vm_kwargs",
    "write_failure",
    "_GpuvmTargetFactory",
    "_core_factory",
    "_run_one",
    "_set_fault",
]
