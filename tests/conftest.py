"""Shared pytest configuration: hypothesis profiles.

Choose one with the environment variable ``HYPOTHESIS_PROFILE``:

* ``dev`` (default): the usual 100 examples, a generous deadline (the
  machine is shared, so timing is noisy).
* ``ci``: fewer examples, no deadline, fresh randomness every run (so CI keeps
  exploring) and ``print_blob=True`` so a failure prints the blob that
  reproduces it with ``@reproduce_failure``.
* ``nightly``: many examples, no deadline, for long unattended runs.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=100, deadline=timedelta(seconds=2))
settings.register_profile("ci", max_examples=30, deadline=None, derandomize=False,
                          print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=5000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
