"""The three ported suites, in one list: every subtest name IGT defines."""

from __future__ import annotations

import fnmatch

from . import exec_system_allocator, madvise, multigpu_svm
from .runner import Subtest

__all__ = ["SUITES", "EXPECTED_COUNTS", "all_subtests", "select"]

#: Suite name -> its generator, in the order ``pysvm igt --list`` prints them.
SUITES = {
    exec_system_allocator.SUITE: exec_system_allocator.subtests,
    madvise.SUITE: madvise.subtests,
    multigpu_svm.SUITE: multigpu_svm.subtests,
}

#: Suite name -> the number of subtests derived from the suite's source tables.
EXPECTED_COUNTS = {
    exec_system_allocator.SUITE: exec_system_allocator.EXPECTED_COUNT,
    madvise.SUITE: madvise.EXPECTED_COUNT,
    multigpu_svm.SUITE: multigpu_svm.EXPECTED_COUNT,
}


def all_subtests() -> list[Subtest]:
    return [st for gen in SUITES.values() for st in gen()]


def select(suites: list[str] | None = None, patterns: list[str] | None = None) -> list[Subtest]:
    """The subtests of the named suites whose names match any pattern.

    A pattern with ``*``, ``?`` or ``[`` is a shell glob on the subtest name;
    any other pattern matches as a substring (like ``pytest -k``).
    """
    out = []
    for st in all_subtests():
        if suites and st.suite not in suites:
            continue
        if patterns and not any(_match(p, st.name) for p in patterns):
            continue
        out.append(st)
    return out


def _match(pattern: str, name: str) -> bool:
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern in name
