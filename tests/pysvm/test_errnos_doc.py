"""docs/errnos.md stays true: every row is classified and every cited test exists.

The table lists each error return of the Xe VM ioctls and the fault path with
its status in the model. A ``modelled: <node id>`` status must name a test
function that exists and that names the row's errno (``errno.ENOENT``, a
result string ...), or, for a golden trace (``test_golden_byte_identical[x]``),
a trace whose expected output holds that errno. A ``not modelled: <why>``
status must give a reason. The checks read source files with ``ast``; nothing
is imported or run, so this stays fast.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "errnos.md"
TRACES = ROOT / "tests" / "pysvm" / "traces"
HEADER = ["id", "function (file)", "condition", "errno", "order", "release", "status"]
RELEASES = {"6.18", "7.0", "6.18, 7.0"}
ERRNO = re.compile(r"^(0|E[A-Z0-9]+(, E[A-Z0-9]+)*)$")
ORDER = re.compile(r"^\d+(\.\d+)?$")
STATUS = re.compile(r"^(modelled: (?P<node>\S+)|not modelled: (?P<why>.{8,}))$")
NODE = re.compile(r"^(?P<file>tests/[\w/]+\.py)::(?P<name>\w+(::\w+)?)(\[(?P<param>[\w.-]+)\])?$")

Row = dict[str, str]


def split(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse(text: str) -> list[Row]:
    """Rows of every table in the document whose header is :data:`HEADER`."""
    rows: list[Row] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and split(lines[i]) == HEADER:
            i += 2                                   # header and |---| separator
            while i < len(lines) and lines[i].startswith("|"):
                cells = split(lines[i])
                assert len(cells) == len(HEADER), f"docs/errnos.md: malformed row {lines[i]!r}"
                rows.append(dict(zip(HEADER, cells, strict=True)))
                i += 1
        else:
            i += 1
    return rows


@cache
def rows() -> list[Row]:
    return parse(DOC.read_text(encoding="utf-8"))


@cache
def functions(path: Path) -> dict[str, str]:
    """Source text of every test function (``name`` or ``Class::name``) in a file."""
    text = path.read_text(encoding="utf-8")
    out: dict[str, str] = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = ast.get_source_segment(text, node) or ""
        elif isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef):
                    out[f"{node.name}::{sub.name}"] = ast.get_source_segment(text, sub) or ""
    return out


def node_problem(node: str, errnos: list[str]) -> str | None:
    """Why ``node`` does not back the errnos, or None when it does."""
    m = NODE.match(node)
    if not m:
        return f"{node!r} is not a pytest node id (tests/...py::test_name[param])"
    path = ROOT / m["file"]
    if not path.is_file():
        return f"{m['file']} does not exist"
    src = functions(path).get(m["name"])
    if src is None:
        return f"{m['file']} has no test {m['name']}"
    if not m["name"].split("::")[-1].startswith("test"):
        return f"{m['name']} is not a test function"
    if m["param"]:
        if "@pytest.mark.parametrize" not in src and m["name"] != "test_golden_byte_identical":
            return f"{m['name']} is not parametrized, [{m['param']}] cannot select a case"
        trace = TRACES / f"{m['param']}.expected.jsonl"
        if m["name"] == "test_golden_byte_identical":
            if not trace.is_file():
                return f"no golden trace {trace.name}"
            src = trace.read_text(encoding="utf-8")
    missing = [e for e in errnos if e != "0" and e not in src]
    if missing:
        return f"{node} never names {', '.join(missing)}"
    return None


def test_document_has_every_entry_point() -> None:
    text = DOC.read_text(encoding="utf-8")
    for entry in ("xe_vm_bind_ioctl", "xe_vm_madvise_ioctl", "xe_vm_query_vmas_attrs_ioctl",
                  "xe_svm_handle_pagefault", "xe_drm_pagemap_from_fd"):
        assert f"## {entry}" in text or entry in text, entry
    prefixes = {r["id"][0] for r in rows()}
    assert prefixes >= {"B", "M", "Q", "F", "P"}, prefixes


def test_every_row_is_well_formed_and_classified() -> None:
    assert len(rows()) >= 100, "docs/errnos.md lost rows"
    seen: set[str] = set()
    for r in rows():
        assert re.fullmatch(r"[A-Z]\d{2}", r["id"]), r
        assert r["id"] not in seen, f"duplicate row id {r['id']}"
        seen.add(r["id"])
        assert r["release"] in RELEASES, r
        assert ERRNO.match(r["errno"]), r
        assert ORDER.match(r["order"]), r
        assert r["condition"] and r["function (file)"], r
        assert STATUS.match(r["status"]), f"{r['id']}: status must be 'modelled: <node id>' " \
                                          f"or 'not modelled: <why>', got {r['status']!r}"


def test_order_never_goes_backwards_within_a_table() -> None:
    last: dict[str, tuple[int, int]] = {}
    for r in rows():
        a, _, b = r["order"].partition(".")
        key = (int(a), int(b or 0))
        prev = last.get(r["id"][0])
        assert prev is None or key >= prev, f"{r['id']}: order {r['order']} after {prev}"
        last[r["id"][0]] = key


@pytest.mark.parametrize("row", [r for r in rows() if r["status"].startswith("modelled:")],
                         ids=lambda r: r["id"])
def test_modelled_rows_name_an_existing_test_that_checks_the_errno(row: Row) -> None:
    m = STATUS.match(row["status"])
    assert m and m["node"]
    problem = node_problem(m["node"], row["errno"].split(", "))
    assert problem is None, f"{row['id']}: {problem}"


def test_checker_rejects_what_it_should() -> None:
    assert node_problem("tests/pysvm/test_vm_bind.py::test_no_such_test", ["EINVAL"])
    assert node_problem("tests/pysvm/nope.py::test_x", ["EINVAL"])
    assert node_problem("test_vm_bind.py::test_bo_checks", ["EINVAL"])
    assert node_problem("tests/pysvm/test_vm_bind.py::test_bo_checks", ["ENOLINK"])
    assert node_problem("tests/pysvm/test_trace_replay.py::test_golden_byte_identical[nope]",
                        ["EINVAL"])
    assert node_problem("tests/pysvm/test_vm_bind.py::test_bo_checks", ["EINVAL"]) is None
    bad = parse("| id | function (file) | condition | errno | order | release | status |\n"
                "|---|---|---|---|---|---|---|\n| X01 | f (x.c) | c | EINVAL | 1 | 6.18 | |\n")
    assert bad == [dict(zip(HEADER, ["X01", "f (x.c)", "c", "EINVAL", "1", "6.18", ""],
                            strict=True))]
    assert not STATUS.match(bad[0]["status"])
