"""The ipywidgets progress panel, driven by real runs of the fraud example."""

from __future__ import annotations

import itertools
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from seeknal_jupyter.errors import RunFailed
from seeknal_jupyter.events import NodeFinished, NodeStarted, RunFinished, RunStarted
from seeknal_jupyter.progress import ProgressPanel
from seeknal_jupyter.project import Project

LAYER_SIZES = [8, 4, 2, 1]
SLOW_NODE = """kind: transform
name: slow
transform: SELECT sum(hash(range)) AS total FROM range(100000000000)
"""


class Shown:
    """Stands in for IPython's display: records what the panel shows."""

    def __init__(self) -> None:
        self.displayed: list[dict[str, Any]] = []
        self.updated: list[dict[str, Any]] = []

    def __call__(self, view: Any, display_id: bool = False) -> Shown:
        assert display_id
        self.displayed.append(view._repr_mimebundle_())
        return self

    def update(self, view: Any) -> None:
        self.updated.append(view._repr_mimebundle_())


def table_rows(panel: ProgressPanel) -> list[tuple[str, str, str, str]]:
    """(node, layer, state, rows) of each row of the panel's node table."""
    return re.findall(
        r"<tr><td><code>([^<]+)</code></td><td>(\d+)</td><td[^>]*>(\w+)</td>"
        r"<td[^>]*>([\d,]*)</td>",
        panel.table.value,
    )


def test_the_panel_reaches_its_maximum_after_a_parallel_run(fraud: Path) -> None:
    shown = Shown()
    panel = ProgressPanel(display=shown, poll=lambda: None)

    result = Project(fraud).run(parallel=True, reporter=panel, cancel=panel.cancel)

    assert panel.overall.max == 15
    assert panel.overall.value == 15
    assert panel.overall.bar_style == "success"
    assert [bar.max for bar in panel.layer_bars] == LAYER_SIZES
    assert [bar.value for bar in panel.layer_bars] == LAYER_SIZES
    assert [bar.description for bar in panel.layer_bars] == [
        "layer 1",
        "layer 2",
        "layer 3",
        "layer 4",
    ]
    assert [count.value for count in panel.layer_counts] == [
        "8 / 8",
        "4 / 4",
        "2 / 2",
        "1 / 1",
    ]
    rows = table_rows(panel)
    assert len(rows) == 15
    for node_id, layer, state, count in rows:
        outcome = result.nodes[node_id]
        assert (int(layer), state) == (outcome.layer + 1, "success")
        assert int(count.replace(",", "")) == outcome.rows
    assert panel.cancel_button.disabled
    assert panel.cancel_button.description == "Finished"
    assert not panel.cancel.is_set()

    assert len(shown.displayed) == 1
    assert "application/vnd.jupyter.widget-view+json" in shown.displayed[0]
    assert shown.displayed[0]["text/plain"].splitlines()[1:] == [
        "all nodes  0/15",
        "layer 1    0/8",
        "layer 2    0/4",
        "layer 3    0/2",
        "layer 4    0/1",
    ]
    final = shown.updated[-1]
    assert sorted(final) == ["text/html", "text/plain"]
    assert final["text/plain"] == str(result)
    assert final["text/plain"].splitlines()[-1] == result.headline()
    assert final["text/html"].count(">SUCCESS<") == 15
    assert f"<b>{result.headline()}</b>" in final["text/html"]
    assert "<td><code>source.transactions</code></td><td>1</td>" in final["text/html"]
    assert "10,000" in final["text/html"]
    assert panel.box.children[-1] is panel.cancel_button


def test_cached_nodes_count_as_done(fraud: Path) -> None:
    Project(fraud).run()
    panel = ProgressPanel(display=Shown(), poll=lambda: None)

    Project(fraud).run(parallel=True, reporter=panel)

    assert panel.overall.value == panel.overall.max == 15
    assert {state for _, _, state, _ in table_rows(panel)} == {"cached"}
    assert "15 cached" in panel.title.value


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_widget_updates_are_throttled_to_the_refresh_interval() -> None:
    clock = Clock()
    panel = ProgressPanel(display=Shown(), clock=clock, poll=lambda: None)
    refreshes: list[float] = []
    panel.table.observe(lambda _: refreshes.append(clock.now), "value")
    ids = [f"transform.n{i}" for i in range(40)]
    panel.handle(RunStarted("p", "prod", "full", 4, [ids], ids, [], len(ids)))
    refreshes.clear()

    for node_id in ids:
        panel.handle(NodeStarted(node_id, 0, "w", 0.0))
        clock.now += 0.01
        panel.tick()
        panel.handle(NodeFinished(node_id, 0, "success", 1, 0.01))
        clock.now += 0.01
        panel.tick()

    assert clock.now == pytest.approx(0.8)
    assert 3 <= len(refreshes) <= 4
    gaps = [b - a for a, b in itertools.pairwise(refreshes)]
    assert all(gap >= 0.25 - 1e-9 for gap in gaps)
    assert panel.overall.value < 40

    panel.handle(RunFinished(object()))
    assert panel.overall.value == 40


def test_cancel_stops_the_run_and_interrupts_a_long_query(fraud: Path) -> None:
    (fraud / "seeknal/transforms/slow.yml").write_text(SLOW_NODE)
    clicked: list[float] = []
    panel: ProgressPanel

    def front_end() -> None:
        row = panel.nodes.get("transform.slow")
        if (
            not clicked
            and row is not None
            and row.state == "running"
            and row.started is not None
            and time.monotonic() - row.started > 0.3
        ):
            clicked.append(time.monotonic())
            panel.cancel_button.click()

    shown = Shown()
    panel = ProgressPanel(display=shown, poll=front_end)

    with pytest.raises(RunFailed) as failure:
        Project(fraud).run(
            parallel=True, max_workers=2, reporter=panel, cancel=panel.cancel
        )

    assert clicked
    assert panel.cancel.is_set()
    slow = failure.value.result.nodes["transform.slow"]
    assert slow.status == "cancelled"
    assert slow.error == "transform.slow: interrupted while running"
    assert panel.nodes["transform.slow"].state == "cancelled"
    assert panel.cancel_button.description == "Cancelled"
    assert panel.cancel_button.disabled
    assert panel.overall.bar_style == "danger"
    statuses = failure.value.result.statuses()
    assert set(statuses.values()) <= {"success", "cancelled", "skipped"}
    summary = shown.updated[-1]
    assert summary["text/plain"].splitlines()[-1].startswith("Run cancelled: ")
    assert "transform.slow: interrupted while running" in summary["text/html"]


def test_a_click_while_cancelling_shows_cancelling_until_the_run_ends() -> None:
    panel = ProgressPanel(display=Shown(), poll=lambda: None)
    ids = ["transform.a", "transform.b"]
    panel.handle(RunStarted("p", "prod", "full", 2, [ids], ids, [], len(ids)))

    panel.cancel_button.click()

    assert panel.cancel.is_set()
    assert (panel.cancel_button.description, panel.cancel_button.disabled) == (
        "Cancelling…",
        True,
    )
    panel.handle(RunFinished(object()))
    assert (panel.cancel_button.description, panel.cancel_button.disabled) == (
        "Cancelled",
        True,
    )


def test_a_failed_run_shows_what_failed_and_was_skipped_not_all_done(
    tmp_path: Path,
) -> None:
    case = Path(__file__).parent / "cases" / "C17"
    project_dir = tmp_path / "c17"
    (project_dir / "seeknal").mkdir(parents=True)
    shutil.copytree(case / "data", project_dir / "data")
    shutil.copy(case / "nodes.yml", project_dir / "seeknal" / "nodes.yml")
    panel = ProgressPanel(display=Shown(), poll=lambda: None)

    with pytest.raises(RunFailed):
        Project(project_dir).run(max_workers=4, reporter=panel, cancel=panel.cancel)

    assert (panel.overall.value, panel.overall.max) == (3, 6)
    assert panel.overall_count.value == "3 / 6 (1 failed, 2 skipped)"
    assert panel.overall.bar_style == "danger"
    assert [c.value for c in panel.layer_counts] == [
        "1 / 1",
        "1 / 2 (1 failed)",
        "1 / 2 (1 skipped)",
        "0 / 1 (1 skipped)",
    ]
    assert [b.bar_style for b in panel.layer_bars] == [
        "success",
        "danger",
        "danger",
        "danger",
    ]


def test_without_a_way_to_deliver_clicks_the_panel_says_to_interrupt(
    fraud: Path,
) -> None:
    shown = Shown()
    panel = ProgressPanel(display=shown)

    Project(fraud).run(parallel=True, reporter=panel, cancel=panel.cancel)

    assert not panel.can_cancel
    assert panel.cancel_button not in panel.box.children
    assert panel.box.children[-1] is panel.stop_note
    assert panel.stop_note.value == (
        "<i>Interrupt the kernel to stop the run (the Cancel button needs "
        "ipykernel 7 or later).</i>"
    )


def test_the_summary_of_a_failed_run_lists_what_failed_and_why(tmp_path: Path) -> None:
    case = Path(__file__).parent / "cases" / "C17"
    project_dir = tmp_path / "c17"
    (project_dir / "seeknal").mkdir(parents=True)
    shutil.copytree(case / "data", project_dir / "data")
    shutil.copy(case / "nodes.yml", project_dir / "seeknal" / "nodes.yml")
    shown = Shown()
    panel = ProgressPanel(display=shown, poll=lambda: None)

    with pytest.raises(RunFailed) as failure:
        Project(project_dir).run(max_workers=4, reporter=panel)

    result = failure.value.result
    (summary,) = shown.updated
    text = summary["text/plain"].splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in text[1:7]}
    assert {node: row[1] for node, row in rows.items()} == {
        "source.payments": "SUCCESS",
        "transform.ok_a": "SUCCESS",
        "transform.bad_b": "FAILED",
        "transform.d": "SUCCESS",
        "transform.c": "SKIPPED",
        "transform.e": "SKIPPED",
    }
    assert rows["source.payments"][:3] == ["1", "SUCCESS", "3"]
    assert rows["transform.d"][:3] == ["3", "SUCCESS", "1"]
    assert rows["transform.c"] == ["3", "SKIPPED"]
    assert text[7:10] == [f"  {note}" for note in result.notes()]
    assert text[7].startswith(
        "  transform.bad_b (seeknal/nodes.yml:21) failed: Conversion Error: "
    )
    assert text[-1] == result.headline()
    assert summary["text/html"].count(">SKIPPED<") == 2
    assert "Could not convert string" in summary["text/html"]
    assert panel.cancel_button.description == "Finished"
