"""Run results and the plain-text progress reporter."""

from __future__ import annotations

import html
import sys
from dataclasses import dataclass, field
from typing import TextIO

from seeknal_jupyter.events import (
    Event,
    NodeFinished,
    NodeStarted,
    RunFinished,
    RunStarted,
)

STATUSES = ("success", "cached", "failed", "skipped", "cancelled")


@dataclass
class NodeResult:
    """The outcome of one node in a run."""

    node_id: str
    layer: int
    status: str
    rows: int | None = None
    seconds: float = 0.0
    error: str | None = None
    reason: str | None = None


@dataclass
class RunResult:
    """Everything a run did, per node and in total."""

    project: str
    env: str
    mode: str
    workers: int
    layers: int
    nodes: dict[str, NodeResult] = field(default_factory=dict)
    wall_seconds: float = 0.0
    critical_path: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for n in self.nodes.values() if n.status == status)

    @property
    def ok(self) -> bool:
        return not (self.count("failed") or self.count("cancelled"))

    @property
    def executed(self) -> int:
        return self.count("success") + self.count("failed")

    def statuses(self) -> dict[str, str]:
        return {k: v.status for k, v in self.nodes.items()}

    def headline(self) -> str:
        parts = [f"{self.count(s)} {s}" for s in STATUSES if self.count(s)]
        verdict = "succeeded" if self.ok else "FAILED"
        return (
            f"Run {verdict}: {', '.join(parts) or 'nothing to do'} "
            f"of {len(self.nodes)} nodes in {self.wall_seconds:.2f}s"
        )

    def notes(self) -> list[str]:
        """One line per node that failed, was skipped or was cancelled, saying why."""
        notes = []
        for result in self.nodes.values():
            if result.error:
                notes.append(result.error)
            elif result.reason:
                notes.append(f"{result.node_id}: {result.reason}")
        return notes

    def summary_rows(self) -> list[tuple[str, str, str, str, str]]:
        rows = []
        for result in sorted(self.nodes.values(), key=lambda r: r.layer):
            rows.append(
                (
                    result.node_id,
                    str(result.layer + 1),
                    result.status.upper(),
                    "" if result.rows is None else f"{result.rows:,}",
                    f"{result.seconds:.2f}" if result.status != "cached" else "",
                )
            )
        return rows

    def totals(self) -> list[tuple[str, str]]:
        return [
            ("nodes", str(len(self.nodes))),
            ("layers", str(self.layers)),
            ("executed", str(self.executed)),
            ("succeeded", str(self.count("success"))),
            ("cached", str(self.count("cached"))),
            ("failed", str(self.count("failed"))),
            ("skipped", str(self.count("skipped"))),
            ("cancelled", str(self.count("cancelled"))),
            ("workers", str(self.workers)),
            ("wall time", f"{self.wall_seconds:.2f}s"),
        ]

    def __str__(self) -> str:
        width = max([len(r[0]) for r in self.summary_rows()] + [4])
        lines = [f"{'node':<{width}}  layer  status     rows        seconds"]
        for node_id, layer, status, rows, seconds in self.summary_rows():
            lines.append(
                f"{node_id:<{width}}  {layer:>5}  {status:<9}  {rows:>10}  {seconds:>7}"
            )
        lines += [f"  {note}" for note in self.notes()]
        lines.append("")
        lines.append(", ".join(f"{k}: {v}" for k, v in self.totals()))
        lines.append(self.headline())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<RunResult {self.headline()}>"

    def _repr_html_(self) -> str:
        colour = {
            "SUCCESS": "#2e7d32",
            "CACHED": "#546e7a",
            "FAILED": "#c62828",
            "SKIPPED": "#ef6c00",
            "CANCELLED": "#6a1b9a",
        }
        body = "".join(
            f"<tr><td><code>{html.escape(n)}</code></td><td>{layer}</td>"
            f"<td style='color:{colour.get(s, 'inherit')};font-weight:bold'>{s}</td>"
            f"<td style='text-align:right'>{rows}</td>"
            f"<td style='text-align:right'>{sec}</td></tr>"
            for n, layer, s, rows, sec in self.summary_rows()
        )
        errors = "".join(f"<li>{html.escape(note)}</li>" for note in self.notes())
        totals = " · ".join(f"{k}: <b>{v}</b>" for k, v in self.totals())
        return (
            f"<div class='seeknal-run'><p><b>{html.escape(self.headline())}</b></p>"
            "<table><thead><tr><th>node</th><th>layer</th><th>status</th>"
            f"<th>rows</th><th>seconds</th></tr></thead><tbody>{body}</tbody></table>"
            f"{'<ul>' + errors + '</ul>' if errors else ''}<p>{totals}</p></div>"
        )


class TextReporter:
    """Prints one line per node event and the summary; for terminals and logs."""

    def __init__(self, stream: TextIO | None = None, verbose: bool = True) -> None:
        self.stream = stream or sys.stdout
        self.verbose = verbose
        self.total = 0
        self.done = 0

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def handle(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.total = len(event.to_run)
            self._print(
                f"Running {event.project} [{event.env}] — {event.mode}, "
                f"{event.workers} worker{'s' if event.workers != 1 else ''}: "
                f"{len(event.to_run)} to run, {len(event.cached)} cached, "
                f"{event.total} nodes in {len(event.layers)} layers"
            )
        elif isinstance(event, NodeStarted) and self.verbose:
            self._print(f"  start   {event.node_id} (layer {event.layer + 1})")
        elif isinstance(event, NodeFinished) and event.status != "cached":
            self.done += 1
            rows = f", {event.rows:,} rows" if event.rows is not None else ""
            line = f"{event.node_id} in {event.seconds:.2f}s{rows}"
            if event.error:
                line = event.error
            elif event.reason:
                line = f"{event.node_id}: {event.reason}"
            self._print(
                f"  [{self.done}/{self.total}] {event.status.upper():<9} {line}"
            )
        elif isinstance(event, RunFinished):
            self._print("")
            self._print(str(event.result))

    def tick(self) -> None:
        return None
