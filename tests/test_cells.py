"""Nodes defined in notebook cells, through the Python API (``Project.add_node`` and
friends): binding, the downstream nodes they break, removing and saving."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from seeknal_jupyter import project as project_module
from seeknal_jupyter.cells import NodeChange
from seeknal_jupyter.errors import ProjectError, UsageError
from seeknal_jupyter.project import Project
from seeknal_jupyter.yamlfile import Mapping

FEATURES_FILE = "seeknal/feature_groups/13_feature_group_txn_features.yml"
MERCHANT_IDS_ONLY = (
    "inputs:\n  - ref: source.merchant_data\n"
    "transform: SELECT merchant_id FROM source.merchant_data\n"
)
SPENDERS = "SELECT customer_id, sum(amount) AS total FROM transactions GROUP BY 1"


def test_a_cell_that_breaks_a_downstream_node_is_kept_and_names_it(
    fraud: Path,
) -> None:
    project = Project(fraud)
    project.run()

    change = project.add_node("transform", "merchant_risk", yaml=MERCHANT_IDS_ONLY)

    assert change.replaced == "seeknal/transforms/10_transform_merchant_risk.yml:1"
    (broken,) = change.unbound
    assert (broken.node, broken.file, broken.line) == (
        "feature_group.txn_features",
        FEATURES_FILE,
        24,
    )
    assert broken.message.startswith("Binder Error: ")
    assert '"merchant_risk_score"' in broken.message
    lines = str(change).splitlines()
    assert lines[1].startswith("transform.merchant_risk against production: BREAKING")
    assert "DEPENDENT" not in lines[1]
    warning = (
        f"warning: feature_group.txn_features ({FEATURES_FILE}:24) no longer binds: "
        f"{broken.message}"
    )
    advice = (
        "Every plan and run fails until it binds again: change "
        "transform.merchant_risk or feature_group.txn_features."
    )
    assert lines[2:] == [warning, advice]
    assert list(project.cells) == ["transform.merchant_risk"]
    with pytest.raises(ProjectError) as planned:
        project.plan()
    assert [(p.node, p.file, p.line) for p in planned.value.problems] == [
        ("feature_group.txn_features", FEATURES_FILE, 24)
    ]


def test_only_nodes_that_still_bind_are_forecast_as_dependent(fraud: Path) -> None:
    project = Project(fraud)
    project.add_node("transform", "spenders", sql=SPENDERS, inputs=["transactions"])
    project.add_node(
        "transform",
        "top",
        sql="SELECT customer_id, total FROM spenders",
        inputs=["spenders"],
    )
    project.add_node(
        "transform",
        "customers",
        sql="SELECT DISTINCT customer_id FROM spenders",
        inputs=["spenders"],
    )
    project.add_node(
        "transform",
        "ranked",
        sql="SELECT customer_id, rank() OVER (ORDER BY total) AS r FROM spenders",
        inputs=["spenders"],
    )
    project.add_node("transform", "after_top", sql="SELECT * FROM top", inputs=["top"])
    project.run()

    change = project.add_node(
        "transform",
        "spenders",
        sql="SELECT customer_id, count(*) AS payments FROM transactions GROUP BY 1",
        inputs=["transactions"],
    )

    assert sorted(p.node for p in change.unbound) == [
        "transform.ranked",
        "transform.top",
    ]
    assert all(p.file and p.file.startswith("<cell transform.") for p in change.unbound)
    lines = str(change).splitlines()
    assert lines[1].startswith("transform.spenders against production: BREAKING (")
    assert lines[1].endswith("; 1 downstream node would run as DEPENDENT")
    assert [line.split(" no longer binds: ")[0] for line in lines[2:4]] == [
        "warning: transform.top (<cell transform.top>:1)",
        "warning: transform.ranked (<cell transform.ranked>:1)",
    ]
    assert lines[4] == (
        "Every plan and run fails until they bind again: change transform.spenders "
        "or those nodes."
    )


def test_a_cell_is_loaded_once_and_its_warnings_logged_once(
    fraud: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    loads: list[int] = []
    real = project_module.load_nodes

    def counted(*args: object, **kwargs: object) -> object:
        loads.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(project_module, "load_nodes", counted)
    project = Project(fraud)
    unread = "declared but not read by the SQL"

    with caplog.at_level(logging.WARNING):
        project.add_node(
            "transform",
            "spenders",
            sql=SPENDERS,
            inputs=["transactions", "user_profiles"],
        )
    assert len(loads) == 1
    assert caplog.text.count(unread) == 1

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        change = project.add_node(
            "transform",
            "spenders",
            sql=SPENDERS,
            inputs=["transactions", "user_profiles"],
            save=True,
        )
    assert change.saved == Path("seeknal/transforms/spenders.yml")
    assert len(loads) == 3
    assert caplog.text.count(unread) == 1


def test_cells_hold_their_node_documents(fraud: Path) -> None:
    project = Project(fraud)
    project.add_node("transform", "spenders", sql=SPENDERS, inputs=["transactions"])

    document = project.cells["transform.spenders"]

    assert isinstance(document, Mapping)
    assert document["kind"] == "transform" and document["name"] == "spenders"
    assert document["transform"] == SPENDERS + "\n"
    assert project.dag().nodes["transform.spenders"].file == "<cell transform.spenders>"


def test_removing_a_saved_node_deletes_the_file_save_wrote(fraud: Path) -> None:
    project = Project(fraud)
    change = project.add_node(
        "transform", "spenders", sql=SPENDERS, inputs=["transactions"], save=True
    )
    saved = fraud / "seeknal/transforms/spenders.yml"
    assert isinstance(change, NodeChange) and saved.is_file()
    assert project.cells == {}

    removal = project.remove_node("spenders")

    assert removal.deleted == Path("seeknal/transforms/spenders.yml")
    assert str(removal) == (
        "Removed transform.spenders and deleted its file seeknal/transforms/spenders.yml."
    )
    assert not saved.exists()
    assert "transform.spenders" not in Project(fraud).dag().nodes
    assert len(Project(fraud).dag().nodes) == 15


def test_a_cell_over_a_saved_node_is_removed_first_then_the_file(fraud: Path) -> None:
    project = Project(fraud)
    project.add_node(
        "transform", "spenders", sql=SPENDERS, inputs=["transactions"], save=True
    )
    project.add_node(
        "transform",
        "spenders",
        sql=SPENDERS.replace("sum", "max"),
        inputs=["transactions"],
    )

    first = project.remove_node("transform.spenders")
    second = project.remove_node("transform.spenders")

    assert str(first) == (
        "Removed the cell's transform.spenders; seeknal/transforms/spenders.yml:1 "
        "defines it again."
    )
    assert second.deleted == Path("seeknal/transforms/spenders.yml")
    assert not (fraud / "seeknal/transforms/spenders.yml").exists()


def test_a_node_of_another_file_is_not_removed_but_its_file_and_line_are_named(
    fraud: Path,
) -> None:
    project = Project(fraud)
    several = fraud / "seeknal/transforms/spenders.yml"
    several.write_text(
        "kind: transform\nname: spenders\ninputs: [{ref: source.transactions}]\n"
        f"transform: {SPENDERS.replace('transactions', 'source.transactions')}\n"
        "---\nkind: transform\nname: other\ntransform: SELECT 1 AS one\n"
    )

    with pytest.raises(UsageError) as refused:
        project.remove_node("txn_enriched")
    assert str(refused.value) == (
        "transform.txn_enriched is defined in "
        "seeknal/transforms/09_transform_txn_enriched.yml:1, not by a cell or its "
        "--save; to remove it, delete it from that file"
    )
    with pytest.raises(UsageError) as shared:
        project.remove_node("transform.other")
    assert str(shared.value).startswith(
        "transform.other is defined in seeknal/transforms/spenders.yml:6, "
    )
    with pytest.raises(UsageError) as unknown:
        project.remove_node("nothing")
    assert str(unknown.value) == "nothing is not a node of fraud (cell nodes: none)"
    assert several.is_file()
    assert (fraud / "seeknal/transforms/09_transform_txn_enriched.yml").is_file()


def test_a_saved_node_that_others_read_is_not_deleted(fraud: Path) -> None:
    project = Project(fraud)
    project.add_node(
        "transform", "spenders", sql=SPENDERS, inputs=["transactions"], save=True
    )
    project.add_node(
        "transform", "top", sql="SELECT * FROM spenders", inputs=["spenders"]
    )

    with pytest.raises(UsageError) as refused:
        project.remove_node("spenders")

    assert str(refused.value) == (
        "transform.spenders not removed: transform.top reads it; remove or change "
        "that node first"
    )
    assert (fraud / "seeknal/transforms/spenders.yml").is_file()
