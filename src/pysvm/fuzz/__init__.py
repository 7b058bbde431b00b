"""SVM fuzzing: random interleavings of trace events, checked after every step.

:mod:`pysvm.fuzz.generator` makes the cases, :mod:`pysvm.fuzz.oracle` replays a
case through :class:`pysvm.World` and checks it after every event,
:mod:`pysvm.fuzz.target` ties them to :func:`gpuvm_core.fuzz.run` (seeds, jobs,
shrinking, saved failures). ``pysvm fuzz`` is the command line.
"""
