"""Run the Python snippets of Markdown files and check what they print.

Every fenced ```python block that is not a doctest (no ``>>>``) is executed in a fresh
namespace; its whole-line comments (``# ...`` at the start of a line) are the expected
output, compared with whitespace collapsed. Doctest blocks are run by ``python -m
doctest``. Usage: python tools/doc_snippets.py README.md [more.md ...]
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def expected_output(code: str) -> str:
    """The whole-line comments (``# ...`` at the start of a line): what the block prints."""
    out = [line[2:] for line in code.splitlines() if line.startswith("# ")]
    return " ".join(" ".join(out).split())


def check(path: Path) -> list[str]:
    problems: list[str] = []
    for n, m in enumerate(BLOCK.finditer(path.read_text(encoding="utf-8")), 1):
        code = m.group(1)
        if ">>>" in code:
            continue
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                exec(compile(code, f"{path}:block{n}", "exec"), {"__name__": "__snippet__"})
        except Exception as e:  # noqa: BLE001 - report any failure of a snippet
            problems.append(f"{path} python block {n}: {type(e).__name__}: {e}")
            continue
        got = " ".join(buf.getvalue().split())
        want = expected_output(code)
        if want and got != want:
            problems.append(f"{path} python block {n} printed\n  {got}\nexpected\n  {want}")
    return problems


def main(argv: list[str]) -> int:
    problems = [p for a in argv for p in check(Path(a))]
    for p in problems:
        print(p)
    print(f"doc snippets: {len(problems)} problem(s) in {', '.join(argv)}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
