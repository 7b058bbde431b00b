"""The trace replay engine: a thin adapter from JSON Lines to :class:`pysvm.World`.

A trace is JSON Lines, one event per line (docs/trace-format.md). The engine decodes a
line, runs it with :meth:`pysvm.World.execute` (the same handlers the ``World`` methods
use) and returns the output line; replay prints it with its index ``i``.

Kernel: none (the ioctl dispatch table, xe_ioctls[], plays this role).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from pysvm.world import World

__all__ = ["Engine"]


class Engine:
    """Replays trace events against a :class:`World`.

    ``execute(ev)`` returns the output line without ``"i"``; ``run(lines)``
    yields full output lines; ``summary()`` the counters for the final line.
    """

    def __init__(self, world: World | None = None) -> None:
        self.world = world if world is not None else World()
        self.index = 0

    def execute(self, ev: Any) -> dict[str, Any]:
        """Run one decoded event; return ``{"ev", "result", ...}`` (no ``"i"``).

        Anything that is not an object with a string ``ev`` naming an event,
        and every refusal, becomes an errno result with a ``"message"``;
        ``"ev"`` is null unless the event named a string.
        """
        return self.world.execute(ev)

    def execute_line(self, line: str | bytes) -> dict[str, Any]:
        """Decode one input line and execute it.

        A line that is not UTF-8, not JSON (or nested too deeply to decode)
        counts as an event with ``"ev": null`` and result ``EINVAL``.
        """
        try:
            text = line.decode("utf-8") if isinstance(line, bytes) else line
            ev = json.loads(text)
        except UnicodeDecodeError as e:
            return self._bad_line(f"not valid UTF-8 at byte {e.start}")
        except json.JSONDecodeError as e:
            return self._bad_line(f"not valid JSON: {e.msg} (column {e.colno})")
        except RecursionError:
            return self._bad_line("not valid JSON: nested too deeply")
        except ValueError as e:
            return self._bad_line(f"not valid JSON: {e}")
        return self.execute(ev)

    def _bad_line(self, message: str) -> dict[str, Any]:
        self.world.note_bad_line()
        return {"ev": None, "result": "EINVAL", "message": message}

    def run(self, lines: Iterable[str | bytes], *,
            strict: bool = False) -> Iterator[dict[str, Any]]:
        """Yield ``{"i", "ev", "result", ...}`` per non-blank line; stop early if strict.

        ``i`` counts events from 0; blank (whitespace-only) lines are skipped
        and not counted. With ``strict`` the first non-ok line is the last.
        """
        for line in lines:
            if not line.strip():
                continue
            out = {"i": self.index, **self.execute_line(line)}
            self.index += 1
            yield out
            if strict and out["result"] != "ok":
                return

    def summary(self) -> dict[str, int]:
        """The counters of the final ``{"summary": ...}`` line."""
        return self.world.summary()
