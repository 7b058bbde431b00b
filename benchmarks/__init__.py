"""Benchmarks of gpuvm_core on the kernel's workloads W1-W4 (gpuvm_core.workloads).

Not collected by a bare ``pytest`` (testpaths = tests). Run::

    pytest benchmarks/ --benchmark-only                    # N = 1e3, 1e5
    GPUVM_BENCH_LARGE=1 pytest benchmarks/ --benchmark-only  # adds N = 1e6
    python -m benchmarks.report                            # regenerates docs/benchmarks.md
"""
