"""Helpers for the tests of pysvm.mm (not a test module)."""

from __future__ import annotations

from pysvm.mm.mmap import Mm, Page, PageRun


class FakeOwner:
    """A device allocation standing in for pysvm.xe.vram.VramAllocation (the
    DevmemOwner Protocol of pysvm.mm.mmap): a CPU fault moves the page back to a
    system page with its value; frees and moves are recorded; no atomic timeslice."""

    owner = object()

    def __init__(self) -> None:
        self.moved: list[tuple[int, int, Page]] = []
        self.freed: list[tuple[int, Page]] = []

    def migrate_to_ram(self, mm: Mm, addr: int) -> None:
        page = mm.page_at(addr)
        assert page is not None and page.alloc is self
        mm.set_page(addr, Page(page.value))

    def clock_ms(self) -> int:
        return 0

    def wait_timeslice(self, *, cpu: bool = False) -> int:
        return 0

    def page_freed(self, page: Page, addr: int | None = None) -> None:
        self.freed.append((addr or 0, page))

    def pages_freed(self, freed: list[tuple[int, Page]]) -> None:
        self.freed += freed

    def run_freed(self, addr: int, runs: list[PageRun], idx: list[int]) -> None:
        self.freed += [(addr + k * 4096, Page.of(r, x))
                       for k, (r, x) in enumerate(zip(runs, idx, strict=True))]

    def pages_moved(self, moved: list[tuple[int, int, Page]]) -> None:
        self.moved += moved
