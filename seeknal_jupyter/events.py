"""Events a run posts for front ends, and the reporter interface that consumes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class RunStarted:
    """A run is about to start ``to_run`` of ``total`` nodes."""

    project: str
    env: str
    mode: str
    workers: int
    layers: list[list[str]]
    to_run: list[str]
    cached: list[str]
    total: int


@dataclass(frozen=True)
class NodeStarted:
    node_id: str
    layer: int
    worker: str
    at: float


@dataclass(frozen=True)
class NodeFinished:
    node_id: str
    layer: int
    status: str
    rows: int | None = None
    seconds: float = 0.0
    error: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class RunFinished:
    result: object = field(repr=False)


Event = RunStarted | NodeStarted | NodeFinished | RunFinished


class Reporter(Protocol):
    """A front end: gets every event on the thread that called ``run``."""

    def handle(self, event: Event) -> None: ...

    def tick(self) -> None:
        """Called a few times a second while the run waits on workers."""
        ...


class Reporters:
    """Fans events out to several reporters."""

    def __init__(self, *reporters: Reporter) -> None:
        self.reporters = [r for r in reporters if r is not None]

    def handle(self, event: Event) -> None:
        for reporter in self.reporters:
            reporter.handle(event)

    def tick(self) -> None:
        for reporter in self.reporters:
            reporter.tick()
