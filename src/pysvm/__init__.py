"""pysvm: a model of the Intel Xe driver's VM, madvise and SVM layers on gpuvm_core."""

__version__ = "0.1.0"
