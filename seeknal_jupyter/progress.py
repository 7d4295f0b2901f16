"""Live run progress in a notebook: an ipywidgets panel with bars, node rows and Cancel.

The executor hands every event to the panel on the thread that called ``run`` (the
kernel's main thread) and calls ``tick()`` a few times a second; worker threads never
touch a widget. When the run ends, the panel's display becomes the run's summary (HTML
and text), which a saved notebook keeps without any widget state. While a cell runs
the kernel reads no messages from the front end, so ``tick()`` also handles the
widget messages waiting on the kernel's shell channel (that is how the Cancel
button's click arrives) and hands every other message back to the kernel, in order,
for when the cell is done.
"""

from __future__ import annotations

import asyncio
import html
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
from IPython.display import display as ipython_display

from seeknal_jupyter.events import (
    Event,
    NodeFinished,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from seeknal_jupyter.report import RunResult, plural

log = logging.getLogger(__name__)

COMM_MESSAGES = ("comm_open", "comm_msg", "comm_close")
STATE_COLOURS = {
    "queued": "#6b7280",
    "running": "#1d4ed8",
    "success": "#2e7d32",
    "cached": "#546e7a",
    "failed": "#c62828",
    "skipped": "#ef6c00",
    "cancelled": "#6a1b9a",
}
GOOD_STATES = ("success", "cached")
BAD_STATES = ("failed", "cancelled", "skipped")


def progress_count(rows: list[NodeRow], total: int) -> str:
    """'good / total', followed by how many failed, were cancelled or skipped."""
    good = sum(1 for r in rows if r.state in GOOD_STATES)
    bad = [(s, sum(1 for r in rows if r.state == s)) for s in BAD_STATES]
    text = f"{good} / {total}"
    problems = ", ".join(f"{n} {s}" for s, n in bad if n)
    return f"{text} ({problems})" if problems else text


@dataclass
class NodeRow:
    """What the panel knows of one node of the run."""

    node_id: str
    layer: int
    state: str = "queued"
    rows: int | None = None
    seconds: float | None = None
    started: float | None = None


class KernelComms:
    """Handles front-end widget messages that reach ipykernel while a cell runs.

    Messages for widgets (comm open, message, close) are handled at once; any
    other message (a queued cell, a completion request) is scheduled back on the
    kernel's event loop, where it waits for the running cell like it would have.
    Needs ipykernel 7 or later.
    """

    def __init__(self, kernel: Any) -> None:
        from ipykernel.eventloops import get_shell_stream

        self.kernel = kernel
        self.stream = get_shell_stream(kernel)
        self.loop = kernel.io_loop.asyncio_loop
        self._requeued: set[asyncio.Task[Any]] = set()

    @classmethod
    def of_running_kernel(cls) -> KernelComms | None:
        """The pump of the kernel this code runs in, or None (terminal, old kernel)."""
        from IPython import get_ipython

        kernel = getattr(get_ipython(), "kernel", None)
        if kernel is None or not hasattr(kernel, "shell_main"):
            return None
        try:
            return cls(kernel)
        except (ImportError, AttributeError) as error:
            log.debug("no widget messages during runs: %s", error)
            return None

    def poll(self) -> int:
        """Handle every message waiting now; returns how many were widget messages."""
        handled = 0
        socket = self.stream.socket
        while socket.poll(0):
            frames = socket.recv_multipart(copy=False)
            if self._handle_comm(frames):
                handled += 1
            else:
                self._requeue(frames)
        return handled

    def _handle_comm(self, frames: list[Any]) -> bool:
        session = self.kernel.session
        idents, parts = session.feed_identities(frames, copy=False)
        header = session.deserialize(parts, content=False, copy=False)["header"]
        if header["msg_type"] not in COMM_MESSAGES:
            return False
        message = session.deserialize(parts, content=True, copy=False)
        try:
            self.kernel.shell_handlers[header["msg_type"]](self.stream, idents, message)
        except Exception:
            log.warning("widget message failed during a run", exc_info=True)
        return True

    def _requeue(self, frames: list[Any]) -> None:
        task = self.loop.create_task(self.kernel.shell_main(None, frames))
        self._requeued.add(task)
        task.add_done_callback(self._requeued.discard)


class ProgressPanel:
    """A reporter that shows a run as ipywidgets, updated a few times a second.

    Args:
        refresh_seconds: the least time between two widget updates.
        display: shows the panel (IPython's ``display`` by default).
        clock: monotonic seconds, injectable for tests.
        poll: called on every tick to process front-end messages; by default
            the running kernel's :class:`KernelComms`, when there is one.

    Attributes:
        cancel: set by the Cancel button; pass it to ``Project.run(cancel=...)``.
    """

    def __init__(
        self,
        *,
        refresh_seconds: float = 0.25,
        display: Callable[..., Any] = ipython_display,
        clock: Callable[[], float] = time.monotonic,
        poll: Callable[[], Any] | None = None,
    ) -> None:
        self.cancel = threading.Event()
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._display = display
        if poll is None:
            comms = KernelComms.of_running_kernel()
            poll = comms.poll if comms else None
        self._poll = poll
        self.can_cancel = poll is not None
        self.nodes: dict[str, NodeRow] = {}
        self.result: RunResult | None = None
        self._started: RunStarted | None = None
        self._dirty = False
        self._last_refresh = float("-inf")
        self._handle: Any = None
        self.title = widgets.HTML()
        self.overall = widgets.IntProgress(
            min=0, max=1, description="all nodes", bar_style="info"
        )
        self.overall_count = widgets.Label()
        self.layer_bars: list[widgets.IntProgress] = []
        self.layer_counts: list[widgets.Label] = []
        self.bar_layers: list[int] = []
        self.table = widgets.HTML()
        self.cancel_button = widgets.Button(
            description="Cancel", button_style="warning", icon="stop"
        )
        self.cancel_button.on_click(self._on_cancel)
        self.stop_note = widgets.HTML(
            "<i>Interrupt the kernel to stop the run (the Cancel button needs "
            "ipykernel 7 or later).</i>"
        )
        self.box = widgets.VBox()

    def handle(self, event: Event) -> None:
        """Record one event; the widgets follow at the next refresh."""
        if isinstance(event, RunStarted):
            self._start(event)
        elif isinstance(event, NodeStarted):
            row = self.nodes[event.node_id]
            row.state, row.started = "running", self.clock()
        elif isinstance(event, NodeFinished):
            row = self.nodes[event.node_id]
            row.state, row.rows = event.status, event.rows
            untimed = event.status in ("cached", "skipped")
            row.seconds = None if untimed else event.seconds
        elif isinstance(event, RunFinished):
            self._finish(event.result)
            return
        self._dirty = True

    def tick(self) -> None:
        """Process front-end messages, then refresh if the last refresh is old enough."""
        if self._poll is not None:
            self._poll()
        running = any(r.state == "running" for r in self.nodes.values())
        if (self._dirty or running) and (
            self.clock() - self._last_refresh >= self.refresh_seconds
        ):
            self.refresh()

    def refresh(self) -> None:
        """Bring every widget up to date now."""
        rows = list(self.nodes.values())
        self.overall.value = sum(1 for r in rows if r.state in GOOD_STATES)
        self.overall_count.value = progress_count(rows, len(rows))
        for bar, count, layer in zip(
            self.layer_bars, self.layer_counts, self.bar_layers, strict=True
        ):
            members = [r for r in rows if r.layer == layer]
            bar.value = sum(1 for r in members if r.state in GOOD_STATES)
            count.value = progress_count(members, bar.max)
            if any(r.state in BAD_STATES for r in members):
                bar.bar_style = "danger"
        self.table.value = self._table_html()
        self._dirty = False
        self._last_refresh = self.clock()

    def text(self) -> str:
        """The panel as plain text, for front ends that cannot show widgets.

        Such a front end shows it when the run starts; when the run ends, the
        summary's text takes its place.
        """
        lines = [self._headline()]
        rows = list(self.nodes.values())
        lines.append(
            f"all nodes  {progress_count(rows, len(rows)).replace(' / ', '/')}"
        )
        for bar, count in zip(self.layer_bars, self.layer_counts, strict=True):
            lines.append(f"{bar.description:<9}  {count.value.replace(' / ', '/')}")
        return "\n".join(lines)

    def _start(self, event: RunStarted) -> None:
        self._started = event
        chosen = set(event.to_run) | set(event.cached)
        self.nodes = {
            node_id: NodeRow(node_id, number)
            for number, layer in enumerate(event.layers)
            for node_id in layer
            if node_id in chosen
        }
        self.title.value = f"<b>{html.escape(self._headline())}</b>"
        self.overall.max = max(1, len(self.nodes))
        self.layer_bars, self.layer_counts, self.bar_layers = [], [], []
        for number, layer in enumerate(event.layers):
            members = sum(1 for n in layer if n in chosen)
            if members:
                self.layer_bars.append(
                    widgets.IntProgress(
                        min=0, max=members, description=f"layer {number + 1}"
                    )
                )
                self.layer_counts.append(widgets.Label())
                self.bar_layers.append(number)
        rows = [widgets.HBox([self.overall, self.overall_count])] + [
            widgets.HBox([bar, count])
            for bar, count in zip(self.layer_bars, self.layer_counts, strict=True)
        ]
        stop = self.cancel_button if self.can_cancel else self.stop_note
        self.box.children = [self.title, *rows, self.table, stop]
        self.refresh()
        self._handle = self._display(_PanelView(self), display_id=True)

    def _finish(self, result: object) -> None:
        self.result = result if isinstance(result, RunResult) else None
        self.refresh()
        ok = self.result is not None and self.result.ok
        self.overall.bar_style = "success" if ok else "danger"
        for bar in self.layer_bars:
            if bar.bar_style != "danger":
                bar.bar_style = "success" if bar.value == bar.max else "warning"
        self.cancel_button.disabled = True
        self.cancel_button.description = (
            "Cancelled" if self.cancel.is_set() else "Finished"
        )
        if self.result is None:
            if self._handle is not None:
                self._handle.update(_PanelView(self))
            return
        self.title.value = f"<b>{html.escape(self.result.headline())}</b>"
        summary = _SummaryView(self.result)
        if self._handle is not None:
            self._handle.update(summary)
        else:
            self._handle = self._display(summary, display_id=True)

    def _on_cancel(self, _: widgets.Button) -> None:
        self.cancel.set()
        self.cancel_button.description = "Cancelling…"
        self.cancel_button.disabled = True

    def _headline(self) -> str:
        if self._started is None:
            return "Waiting for the run to start"
        event = self._started
        workers = plural(event.workers, "worker")
        return (
            f"Running {event.project} [{event.env}], {event.mode}, {workers}: "
            f"{len(event.to_run)} to run, {len(event.cached)} cached"
        )

    def _table_html(self) -> str:
        now = self.clock()
        body = []
        for row in self.nodes.values():
            seconds = row.seconds
            if row.state == "running" and row.started is not None:
                seconds = now - row.started
            colour = STATE_COLOURS.get(row.state, "inherit")
            body.append(
                f"<tr><td><code>{html.escape(row.node_id)}</code></td>"
                f"<td>{row.layer + 1}</td>"
                f"<td style='color:{colour};font-weight:bold'>{row.state}</td>"
                f"<td style='text-align:right'>"
                f"{'' if row.rows is None else f'{row.rows:,}'}</td>"
                f"<td style='text-align:right'>"
                f"{'' if seconds is None else f'{seconds:.2f}'}</td></tr>"
            )
        return (
            "<div style='max-height:22em;overflow-y:auto'><table>"
            "<thead><tr><th>node</th><th>layer</th><th>state</th><th>rows</th>"
            f"<th>seconds</th></tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        )


class _SummaryView:
    """What the panel's display becomes when the run ends: the run's summary."""

    def __init__(self, result: RunResult) -> None:
        self.result = result

    def _repr_mimebundle_(self, **_: Any) -> dict[str, Any]:
        return self.result.summary_bundle()


class _PanelView:
    """The panel's display: the widget where widgets render, its text elsewhere."""

    def __init__(self, panel: ProgressPanel) -> None:
        self.panel = panel

    def _repr_mimebundle_(self, **_: Any) -> dict[str, Any]:
        bundle = dict(self.panel.box._repr_mimebundle_() or {})
        bundle["text/plain"] = self.panel.text()
        return bundle
