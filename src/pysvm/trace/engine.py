"""The trace replay engine: a thin adapter from JSON Lines to :class:`pysvm.World`.

A trace is JSON Lines, one event per line (docs/trace-format.md). The engine decodes a
line with :func:`pysvm.trace.schema.decode` (unknown fields, wrong types and missing
fields are refused there with EINVAL naming the field), runs the event with
:meth:`pysvm.World.run_event` (the handlers the ``World`` methods use) and returns the
output line; replay prints it with its index ``i``.

Kernel: none (the ioctl dispatch table, xe_ioctls[] in drivers/gpu/drm/xe/xe_device.c,
plays this role).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pysvm.trace.schema import TraceDecodeError, decode
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

        A line that is not an event (not UTF-8, not JSON, not an object, an unknown event,
        an unknown field, a wrong type) counts as an event refused with ``EINVAL``; its
        ``"ev"`` is the event name if the line named one, else null.
        """
        try:
            ev = decode(line)
        except TraceDecodeError as e:
            self.world.note_bad_line()
            return {"ev": e.ev, "result": "EINVAL", "message": e.strerror}
        return self.world.run_event(ev)

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
