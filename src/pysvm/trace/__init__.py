"""The trace adapter: JSON Lines events in, :class:`pysvm.World` calls, JSON Lines out.

:mod:`pysvm.trace.schema` defines every event (one msgspec Struct each), decodes and
validates lines and objects, and produces the JSON Schema (``pysvm schema``);
:mod:`pysvm.trace.results` defines the result fields; :mod:`pysvm.trace.engine`
replays decoded lines against a :class:`pysvm.World`. The schema sits below the
``World`` (whose methods validate their keyword arguments with it), the engine above.

Kernel: none (the ioctl dispatch table, xe_ioctls[] in drivers/gpu/drm/xe/xe_device.c,
plays the engine's role).
"""
