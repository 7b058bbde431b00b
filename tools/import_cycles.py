"""Fail if any import cycle exists among the modules of src/ (function-local imports count;
imports under ``if TYPE_CHECKING:`` do not).

Usage: python tools/import_cycles.py   (exit status 1 and the cycles printed if any)
"""

from __future__ import annotations

import sys

import grimp


def cycles(packages: tuple[str, ...] = ("pysvm", "gpuvm_core")) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    graph = grimp.build_graph(*packages, exclude_type_checking_imports=True)
    mods = sorted(graph.modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.find_modules_directly_imported_by(v)):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for m in mods:
        if m not in index:
            visit(m)
    return out


def main() -> int:
    found = cycles()
    for comp in found:
        print("import cycle: " + " <-> ".join(comp))
    print(f"import cycles: {len(found)}")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
