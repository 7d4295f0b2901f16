"""seeknal_jupyter: DuckDB feature pipelines for Jupyter notebooks and the shell."""

from typing import Any

from seeknal_jupyter.errors import (
    LockedError,
    ProjectError,
    RunFailed,
    SeeknalError,
    UsageError,
)
from seeknal_jupyter.project import Project
from seeknal_jupyter.report import RunResult

__all__ = [
    "LockedError",
    "Project",
    "ProjectError",
    "RunFailed",
    "RunResult",
    "SeeknalError",
    "UsageError",
    "load_ipython_extension",
    "unload_ipython_extension",
]
__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext seeknal_jupyter``: register ``%seeknal`` and ``%%seeknal_node``."""
    from seeknal_jupyter import magics

    magics.load_ipython_extension(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext seeknal_jupyter``: remove the magics."""
    from seeknal_jupyter import magics

    magics.unload_ipython_extension(ipython)
