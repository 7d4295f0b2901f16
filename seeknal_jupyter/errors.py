"""Typed errors that name the user's node, file and line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from seeknal_jupyter.report import plural

if TYPE_CHECKING:
    from seeknal_jupyter.report import RunResult


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a project, located in a file."""

    message: str
    file: str | None = None
    line: int | None = None
    node: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = self.file or "<project>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        text = f"{where}: {self.node + ': ' if self.node else ''}{self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class SeeknalError(Exception):
    """Base class of every error this package raises on purpose."""


class ProjectError(SeeknalError):
    """The project does not load or validate; nothing has run."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        head = f"{plural(len(problems), 'problem')} in the project"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in problems))


class UsageError(SeeknalError):
    """The command or its arguments are wrong."""


class LockedError(SeeknalError):
    """Another process is writing this project's target/ folder."""


class RunFailed(SeeknalError):
    """A run finished with failed or cancelled nodes; ``result`` holds the details.

    Args:
        result: the run's result, its summary included.
        message: what the error says (default: the verdict, then each failure).
    """

    def __init__(self, result: RunResult, message: str | None = None) -> None:
        self.result = result
        failures = [r.error for r in result.nodes.values() if r.error]
        super().__init__(message or "\n".join([result.headline(), *failures]))

    def _render_traceback_(self) -> list[str]:
        """What IPython shows: the message, without a traceback (the summary
        already names each failure with its file and line)."""
        return [f"{type(self).__name__}: {self}"]
