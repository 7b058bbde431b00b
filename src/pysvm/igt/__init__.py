"""IGT's Xe SVM suites, generated as scenarios on the model (``pysvm igt``).

Three suites of igt-gpu-tools are ported: xe_exec_system_allocator,
xe_madvise and xe_multigpu_svm (docs/igt.md names the commits). Each suite
module restates the suite's tables and expands them into every subtest name,
each with a scenario builder (trace events plus the checks IGT makes) or the
reason the model cannot express it. :mod:`.target` is the one place where a
scenario's events reach the model.
"""

from __future__ import annotations

from .catalog import EXPECTED_COUNTS, SUITES, all_subtests, select
from .runner import PROFILES, Result, Subtest, record_trace, run_subtest

__all__ = ["EXPECTED_COUNTS", "PROFILES", "Result", "SUITES", "Subtest", "all_subtests",
           "record_trace", "run_subtest", "select"]
