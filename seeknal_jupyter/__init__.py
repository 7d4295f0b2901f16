"""seeknal_jupyter: DuckDB feature pipelines for Jupyter notebooks and the shell."""

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
]
__version__ = "0.1.0"
