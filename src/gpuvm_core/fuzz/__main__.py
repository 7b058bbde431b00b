"""``python -m gpuvm_core.fuzz``: see :mod:`gpuvm_core.fuzz.cli`."""

from gpuvm_core.fuzz.cli import main

raise SystemExit(main())
