"""Run results and the plain-text progress reporter."""

from __future__ import annotations

import html
import sys
import threading
from dataclasses import dataclass, field
from typing import TextIO

from seeknal_jupyter.events import (
    Event,
    NodeFinished,
    NodeStarted,
    RunFinished,
    RunStarted,
)

VERDICT = {"success": "succeeded", "failed": "FAILED", "cancelled": "cancelled"}


def plural(count: int, word: str, many: str | None = None) -> str:
    """``count`` followed by ``word``, in the plural unless it is one.

    Args:
        count: how many.
        word: the singular ("node").
        many: the plural when it is not ``word + "s"``.

    Returns:
        "1 node", "2 nodes", "1,500 rows".
    """
    return f"{count:,} {word if count == 1 else many or word + 's'}"


@dataclass
class NodeResult:
    """The outcome of one node in a run; ``layer`` counts from 0 like the DAG's."""

    node_id: str
    layer: int
    status: str
    rows: int | None = None
    seconds: float = 0.0
    error: str | None = None
    reason: str | None = None


@dataclass
class RunResult:
    """Everything a run did, per node and in total.

    ``layers`` is the number of layers of the project's DAG; :attr:`layer_count`
    is how many of them the run's nodes are in. ``stale`` lists the nodes that did
    not build (failed, skipped, cancelled) and keep an output made from an earlier
    definition or data. ``messages`` are other notes for the summary.
    ``summary_shown`` is set while the summary a front end has just displayed
    should not be displayed again (the ``%seeknal run`` magic sets it until its
    cell ends).
    """

    project: str
    env: str
    mode: str
    workers: int
    layers: int
    nodes: dict[str, NodeResult] = field(default_factory=dict)
    wall_seconds: float = 0.0
    critical_path: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    summary_shown: bool = field(default=False, repr=False, compare=False)

    def count(self, status: str) -> int:
        return sum(1 for n in self.nodes.values() if n.status == status)

    @property
    def ok(self) -> bool:
        return not (self.count("failed") or self.count("cancelled"))

    @property
    def executed(self) -> int:
        """Nodes the run ran to an outcome, succeeded or failed (not cached,
        skipped or cancelled): the one meaning of "executed" in every summary."""
        return self.count("success") + self.count("failed")

    @property
    def layer_count(self) -> int:
        """How many layers the run's nodes are in."""
        return len({n.layer for n in self.nodes.values()})

    @property
    def verdict(self) -> str:
        """ "succeeded", "FAILED" (some node failed) or "cancelled"."""
        if self.count("failed"):
            return VERDICT["failed"]
        return VERDICT["cancelled"] if self.count("cancelled") else VERDICT["success"]

    def statuses(self) -> dict[str, str]:
        return {k: v.status for k, v in self.nodes.items()}

    def count_parts(self) -> list[str]:
        """The headline's counts: executed (with its failures), cached, and the
        skipped and cancelled nodes when there are any."""
        executed = f"{self.executed} executed"
        if self.count("failed"):
            executed += f" ({self.count('failed')} failed)"
        others = [
            f"{self.count(s)} {s}" for s in ("skipped", "cancelled") if self.count(s)
        ]
        return [executed, *self.cached_parts(), *others]

    def cached_parts(self) -> list[str]:
        return [f"{self.count('cached')} cached"]

    def headline(self) -> str:
        return (
            f"Run {self.verdict}: {', '.join(self.count_parts())} of "
            f"{plural(len(self.nodes), 'node')} in {self.wall_seconds:.2f}s"
        )

    def notes(self) -> list[str]:
        """One line per node that failed, was skipped or was cancelled, saying why,
        then one per such node that keeps a stale output, then the messages."""
        notes = []
        for result in self.nodes.values():
            if result.error:
                notes.append(result.error)
            elif result.reason:
                notes.append(f"{result.node_id}: {result.reason}")
        notes += [
            f"{node_id}: keeps its older output, which is stale (made from an "
            "earlier definition or data)"
            for node_id in self.stale
        ]
        return notes + self.messages

    def summary_rows(self) -> list[tuple[str, str, str, str, str]]:
        rows = []
        for result in sorted(self.nodes.values(), key=lambda r: r.layer):
            rows.append(
                (
                    result.node_id,
                    str(result.layer + 1),
                    result.status.upper(),
                    "" if result.rows is None else f"{result.rows:,}",
                    ""
                    if result.status in ("cached", "skipped")
                    else f"{result.seconds:.2f}",
                )
            )
        return rows

    def totals(self) -> list[tuple[str, str]]:
        return [
            ("nodes", str(len(self.nodes))),
            ("layers", self._layers_text()),
            ("executed", str(self.executed)),
            ("succeeded", str(self.count("success"))),
            ("cached", str(self.count("cached"))),
            ("failed", str(self.count("failed"))),
            ("skipped", str(self.count("skipped"))),
            ("cancelled", str(self.count("cancelled"))),
            ("workers", str(self.workers)),
            ("wall time", f"{self.wall_seconds:.2f}s"),
        ]

    def _layers_text(self) -> str:
        if self.layer_count < self.layers:
            return f"{self.layer_count} (of {self.layers})"
        return str(self.layer_count)

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

    def summary_bundle(self) -> dict[str, str]:
        """The summary as a display: its HTML table, and its text for front ends
        without HTML."""
        return {"text/html": self._repr_html_(), "text/plain": str(self)}

    def _ipython_display_(self) -> None:
        """Show the HTML summary, unless ``summary_shown`` says it just was."""
        if self.summary_shown:
            return
        from IPython.display import display

        display({"text/html": self._repr_html_(), "text/plain": repr(self)}, raw=True)

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
    """Prints one line per node event and the summary; for terminals and logs.

    The counter ``[k/N]`` counts the nodes built so far out of the N to run, so it
    reaches N only when every one of them succeeded; failed, skipped and cancelled
    nodes are listed without a number. ``cancel``, when given, is the event that
    stops the run (a front end sets it, for instance on Ctrl-C). When the reader
    of the stream goes away (``seeknal run | head``), printing stops and the run
    goes on.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        verbose: bool = True,
        cancel: threading.Event | None = None,
    ) -> None:
        self.stream: TextIO | None = stream or sys.stdout
        self.verbose = verbose
        self.cancel = cancel
        self.total = 0
        self.built = 0

    def _print(self, text: str) -> None:
        if self.stream is None:
            return
        try:
            print(text, file=self.stream, flush=True)
        except BrokenPipeError:
            self.stream = None

    def handle(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.total = len(event.to_run)
            self._print(
                f"Running {event.project} [{event.env}] — {event.mode}, "
                f"{plural(event.workers, 'worker')}: {len(event.to_run)} to run, "
                f"{len(event.cached)} cached, {plural(event.total, 'node')} in "
                f"{plural(len(event.layers), 'layer')}"
            )
        elif isinstance(event, NodeStarted) and self.verbose:
            self._print(f"  start   {event.node_id} (layer {event.layer + 1})")
        elif isinstance(event, NodeFinished) and event.status != "cached":
            self._print(f"  {self._counter(event.status)} {self._line(event)}")
        elif isinstance(event, RunFinished):
            self._print("")
            self._print(str(event.result))

    def _counter(self, status: str) -> str:
        width = len(f"[{self.total}/{self.total}]")
        if status != "success":
            return " " * width
        self.built += 1
        return f"[{self.built}/{self.total}]".rjust(width)

    @staticmethod
    def _line(event: NodeFinished) -> str:
        if event.error:
            line = event.error
        elif event.reason:
            line = f"{event.node_id}: {event.reason}"
        else:
            rows = f", {plural(event.rows, 'row')}" if event.rows is not None else ""
            line = f"{event.node_id} in {event.seconds:.2f}s{rows}"
        return f"{event.status.upper():<9} {line}"

    def tick(self) -> None:
        return None
