"""The trace adapter: JSON Lines events in, :class:`pysvm.World` calls, JSON Lines out.

:mod:`pysvm.trace.engine` replays decoded events against a :class:`pysvm.World`.

Kernel: none (the ioctl dispatch table, xe_ioctls[] in drivers/gpu/drm/xe/xe_device.c,
plays the engine's role).
"""
