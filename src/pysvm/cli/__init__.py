"""The ``pysvm`` console script: :mod:`pysvm.cli.main` and one module per sub-command."""

from pysvm.cli.common import CliError

__all__ = ["CliError"]
