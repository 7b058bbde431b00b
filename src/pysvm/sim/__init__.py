"""The built-in SVM workload behind ``pysvm simulate`` (sim/workload.py)."""
