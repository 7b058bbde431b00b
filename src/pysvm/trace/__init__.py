"""The trace adapter: JSON Lines events in, model calls, JSON Lines results out.

:mod:`pysvm.trace.schema` defines every event (one msgspec Struct each), decodes
and validates lines and produces the JSON Schema; :mod:`pysvm.trace.engine`
replays decoded events against a :class:`pysvm.world.World`.

Kernel: none (the ioctl dispatch table, xe_ioctls[] in drivers/gpu/drm/xe/xe_device.c,
plays the engine's role).
"""

from .engine import (
    HANDLER_MODULES,
    HANDLERS,
    U64_MAX,
    Engine,
    _load_handlers,
    choice,
    handler,
    opt_bool,
    opt_int,
    opt_list,
    opt_str,
    opt_u64,
    req_int,
    req_str,
    req_u64,
)

__all__ = ["Engine", "handler", "HANDLERS", "HANDLER_MODULES", "req_int", "opt_int",
           "req_str", "opt_str", "opt_bool", "opt_list", "req_u64", "opt_u64", "choice",
           "U64_MAX", "_load_handlers"]
