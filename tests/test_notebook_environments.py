"""02_feature_experimentation run top to bottom on a real kernel, checked by what it shows."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

NOTEBOOK = (
    Path(__file__).resolve().parents[1] / "notebooks/02_feature_experimentation.ipynb"
)


def execute(workdir: Path, kernel: str) -> Any:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook,
        kernel_name=kernel,
        timeout=300,
        resources={"metadata": {"path": str(workdir)}},
    ).execute()
    return notebook


def cell_outputs(notebook: Any, starts: str) -> list[Any]:
    """Outputs of the one code cell whose source starts with ``starts``."""
    (cell,) = [
        c
        for c in notebook.cells
        if c.cell_type == "code" and c.source.startswith(starts)
    ]
    return list(cell.outputs)


def text(outputs: list[Any]) -> str:
    return "".join(o.text for o in outputs if o.output_type == "stream")


def data(outputs: list[Any], mime: str) -> list[str]:
    return [o.data[mime] for o in outputs if mime in o.get("data", {})]


def test_committed_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_the_notebook_runs_on_this_environments_python(seeknal_kernel: str) -> None:
    spec = KernelSpecManager().get_kernel_spec(seeknal_kernel)
    assert spec.argv[:3] == [sys.executable, "-m", "ipykernel_launcher"]


def test_feature_experimentation_notebook(tmp_path: Path, seeknal_kernel: str) -> None:
    notebook = execute(tmp_path, seeknal_kernel)
    every = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in every if o.output_type == "error"]

    first = cell_outputs(notebook, "%seeknal plan experiment")
    assert data(first, "text/plain") == [
        (
            "<EnvPlan experiment: 0 nodes to execute, 15 read from production; "
            "added 0, removed 0>"
        )
    ]

    (page,) = data(
        cell_outputs(notebook, "plan = %seeknal plan experiment"), "text/html"
    )
    assert page.count("<tr><td><code>") == 15
    assert len(re.findall(r">NON_BREAKING</td>", page)) == 1
    assert len(re.findall(r">DEPENDENT</td>", page)) == 1
    assert len(re.findall(r">UNCHANGED</td>", page)) == 13
    assert "<svg" in page

    listed = text(cell_outputs(notebook, "for node_id in plan.to_execute"))
    assert listed.splitlines() == [
        "feature_group.txn_features: NON_BREAKING (new feature: ip_reputation_score)",
        (
            "exposure.training_data: DEPENDENT (upstream change in "
            "feature_group.txn_features)"
        ),
        "nodes to execute: 2",
        "unchanged: 13",
    ]

    (svg,) = data(
        cell_outputs(notebook, "%seeknal dag --plan experiment"), "image/svg+xml"
    )
    assert "NON_BREAKING" in svg and "DEPENDENT" in svg

    applied = text(cell_outputs(notebook, "print(applied.headline())"))
    assert (
        "Environment 'experiment' applied: 2 executed, 13 cached (from production)"
        in (applied)
    )
    assert (
        "['exports/training_data.parquet', 'exposure/training_data.parquet', "
        "'feature_group/txn_features.parquet']" in applied
    )

    (diff_page,) = data(
        cell_outputs(notebook, "difference = %seeknal diff"), "text/html"
    )
    assert "column ip_reputation_score (DOUBLE) only in experiment" in diff_page
    assert "0 only in experiment, 0 only in production" in diff_page

    (scores,) = data(cell_outputs(notebook, "import duckdb"), "text/plain")
    assert re.search(r"0\s+10000\s+0\.\d+\s+0", scores)

    breaking = text(cell_outputs(notebook, "original = features_file.read_text()"))
    assert (
        "BREAKING (1):\n  - feature_group.txn_features (removed feature: " in breaking
    )
    assert "upstream BREAKING change in feature_group.txn_features" in breaking
    assert breaking.index("WARNING: 1 BREAKING") < breaking.index("Summary:")
    assert "2 nodes to execute (1 BREAKING)" in breaking

    promoted = text(cell_outputs(notebook, "promoted = %seeknal promote"))
    assert promoted.startswith(
        "Promoted 'experiment' to production: 2 outputs from experiment, 13 kept"
    )
    assert "15 outputs" in promoted and "no data copied" in promoted

    after = cell_outputs(notebook, "after = %seeknal run --parallel")
    assert "Run succeeded: 0 executed, 15 cached of 15 nodes" in text(after)
    assert (
        "<EnvPlan check-after-promote: 0 nodes to execute"
        in data(after, "text/plain")[-1]
    )

    (listing,) = data(cell_outputs(notebook, "%seeknal env list"), "text/html")
    rows = re.findall(r"<tr>(.*?)</tr>", listing)
    statuses = {
        re.findall(r"<td>(.*?)</td>", row)[0]: re.findall(r"<td>(.*?)</td>", row)[3]
        for row in rows[1:]
    }
    assert statuses == {
        "experiment": "promoted to production",
        "breaking-test": "stale",
        "check-after-promote": "planned",
    }
    deleted = cell_outputs(notebook, 'for name in ("breaking-test"')
    assert text(deleted).count("Deleted environment") == 2
    assert data(deleted, "text/plain") == ["<EnvList experiment>"]

    cell = text(cell_outputs(notebook, "%%seeknal_node exposure training_data"))
    assert (
        "exposure.training_data against production: NON_BREAKING (SQL now also "
        "outputs column unusual_amount" in cell
    )

    planned = text(cell_outputs(notebook, "cell_plan = %seeknal plan cell-change"))
    assert planned.splitlines() == [
        (
            "exposure.training_data: NON_BREAKING (SQL now also outputs column "
            "unusual_amount; description changed; owner changed; tags changed "
            "(-fraud -training))"
        ),
        "nodes to execute: 1",
        "unchanged: 14",
    ]
    assert notebook.cells[-1].source.startswith("## Recap")

    project = tmp_path / "workspace/experiment/fraud"
    assert (project / "seeknal").is_dir()
    assert (project / "target/environments/cell-change/plan.json").is_file()
