"""The trace replay engine and its event-handler registry.

A trace is JSON Lines, one event per line (docs/trace-format.md; the
event and field definitions are :mod:`pysvm.trace.schema`). Each layer registers handlers with
``@handler("event_name")``; a handler takes ``(engine, ev)`` and returns the
extra output fields, or raises :class:`pysvm.errors.XeError` for an errno
result. Handlers must decide every refusal before changing state.

Kernel: none (the ioctl dispatch table, xe_ioctls[], plays this role).
"""

from __future__ import annotations

import errno
import importlib
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import XeError, errno_name
from ..world import World

__all__ = ["Engine", "handler", "HANDLERS", "HANDLER_MODULES", "req_int", "opt_int",
           "req_str", "opt_str", "opt_bool", "opt_list", "req_u64", "opt_u64", "choice",
           "U64_MAX"]

U64_MAX = (1 << 64) - 1

Handler = Callable[["Engine", dict[str, Any]], "dict[str, Any] | None"]

#: event name -> handler
HANDLERS: dict[str, Handler] = {}

#: Modules whose import registers handlers; a module that does not exist yet is skipped.
HANDLER_MODULES = ("pysvm.events_xe", "pysvm.events_svm", "pysvm.events_pagemap")


def handler(name: str) -> Callable[[Handler], Handler]:
    """Register ``fn`` as the handler of event ``name`` (one handler per name)."""
    def deco(fn: Handler) -> Handler:
        if name in HANDLERS and HANDLERS[name] is not fn:
            raise RuntimeError(f"two handlers for trace event {name!r}")
        HANDLERS[name] = fn
        return fn
    return deco


def _load_handlers() -> None:
    for mod in HANDLER_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


# -- field helpers: missing or ill-typed -> EINVAL ------------------------------

_MISSING = object()


def _get(ev: dict[str, Any], key: str) -> Any:
    if key not in ev:
        raise XeError(errno.EINVAL, f'missing field "{key}"')
    return ev[key]


def _as_int(key: str, v: Any, lo: int | None, hi: int | None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise XeError(errno.EINVAL, f'field "{key}" must be an integer, not {json.dumps(v)}')
    if lo is not None and v < lo:
        raise XeError(errno.EINVAL, f'field "{key}" = {v} is below {lo}')
    if hi is not None and v > hi:
        raise XeError(errno.EINVAL, f'field "{key}" = {v} is above {hi}')
    return v


def req_int(ev: dict[str, Any], key: str, lo: int | None = None, hi: int | None = None) -> int:
    """ev[key] as an integer in [lo, hi]; EINVAL if missing, not an integer or out of range."""
    return _as_int(key, _get(ev, key), lo, hi)


def opt_int(ev: dict[str, Any], key: str, default: int, lo: int | None = None,
            hi: int | None = None) -> int:
    """Like :func:`req_int`, ``default`` when the field is absent."""
    return _as_int(key, ev[key], lo, hi) if key in ev else default


def req_u64(ev: dict[str, Any], key: str) -> int:
    """An unsigned 64-bit integer field."""
    return req_int(ev, key, 0, U64_MAX)


def opt_u64(ev: dict[str, Any], key: str, default: int) -> int:
    """An optional unsigned 64-bit integer field."""
    return opt_int(ev, key, default, 0, U64_MAX)


def req_str(ev: dict[str, Any], key: str) -> str:
    """ev[key] as a string; EINVAL if missing or not a string."""
    v = _get(ev, key)
    if not isinstance(v, str):
        raise XeError(errno.EINVAL, f'field "{key}" must be a string, not {json.dumps(v)}')
    return v


def opt_str(ev: dict[str, Any], key: str, default: str | None = None) -> str | None:
    """Like :func:`req_str`, ``default`` when the field is absent."""
    return req_str(ev, key) if key in ev else default


def opt_bool(ev: dict[str, Any], key: str, default: bool) -> bool:
    """ev[key] as true/false (``default`` when absent); EINVAL for any other value."""
    if key not in ev:
        return default
    v = ev[key]
    if not isinstance(v, bool):
        raise XeError(errno.EINVAL, f'field "{key}" must be true or false, not {json.dumps(v)}')
    return v


def opt_list(ev: dict[str, Any], key: str) -> list[Any]:
    """ev[key] as a list ([] when absent); EINVAL if it is not a list."""
    if key not in ev:
        return []
    v = ev[key]
    if not isinstance(v, list):
        raise XeError(errno.EINVAL, f'field "{key}" must be a list, not {json.dumps(v)}')
    return v


def choice(ev: dict[str, Any], key: str, choices: Iterable[str], default: str | None = None) -> str:
    """ev[key] as one of ``choices`` (``default`` when absent, if given); EINVAL otherwise."""
    opts = list(choices)
    v = req_str(ev, key) if (key in ev or default is None) else default
    if v not in opts:
        raise XeError(errno.EINVAL, f'field "{key}" = {v!r}: expected one of {opts}')
    return v


class Engine:
    """Replays trace events against a :class:`World`.

    ``execute(ev)`` returns the output line without ``"i"``; ``run(lines)``
    yields full output lines; ``summary()`` the counters for the final line.
    """

    def __init__(self, world: World | None = None) -> None:
        _load_handlers()
        self.world = world if world is not None else World()
        self.index = 0

    def execute(self, ev: Any) -> dict[str, Any]:
        """Run one decoded event; return ``{"ev", "result", ...}`` (no ``"i"``).

        Anything that is not an object with a string ``ev`` naming a handler,
        and every :class:`XeError` a handler raises, becomes an errno result
        with a ``"message"``; ``"ev"`` is null unless the event named a string.
        """
        name = ev.get("ev") if isinstance(ev, dict) else None
        out: dict[str, Any] = {"ev": name if isinstance(name, str) else None, "result": "ok"}
        stats = self.world.stats
        stats["events"] += 1
        try:
            if not isinstance(ev, dict):
                raise XeError(errno.EINVAL, "an event must be a JSON object")
            if not isinstance(name, str):
                raise XeError(errno.EINVAL, 'missing or non-string field "ev"')
            fn = HANDLERS.get(name)
            if fn is None:
                raise XeError(errno.EINVAL, f"unknown event {name!r}")
            extra = fn(self, ev)
            if extra:
                out.update(extra)
        except XeError as e:
            out["result"] = errno_name(e.errno or errno.EINVAL)
            out["message"] = e.strerror
            stats["errors"] += 1
        return out

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
        self.world.stats["events"] += 1
        self.world.stats["errors"] += 1
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
