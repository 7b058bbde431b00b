"""Sub-commands of the ``pysvm`` console script (one module each)."""
