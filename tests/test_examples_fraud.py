"""Tests of the fraud-detection example: files, generated data, node SQL, rows."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from seeknal_jupyter.examples import fraud
from seeknal_jupyter.graph import kind_nodes
from seeknal_jupyter.project import Project
from seeknal_jupyter.render import draw

EXPECTED_NODE_FILES = [
    "sources/01_source_transactions.yml",
    "sources/02_source_user_profiles.yml",
    "sources/03_source_device_fingerprints.yml",
    "sources/04_source_ip_geolocation.yml",
    "sources/05_source_merchant_data.yml",
    "sources/06_source_card_data.yml",
    "sources/07_source_fraud_labels.yml",
    "sources/08_source_realtime_alerts.yml",
    "transforms/09_transform_txn_enriched.yml",
    "transforms/10_transform_merchant_risk.yml",
    "transforms/11_transform_card_velocity.yml",
    "transforms/12_transform_alert_features.yml",
    "feature_groups/13_feature_group_txn_features.yml",
    "feature_groups/14_feature_group_user_risk.yml",
    "exposures/15_exposure_training_data.yml",
]

EXPECTED_INPUTS = {
    "transform.txn_enriched": [
        "source.transactions",
        "source.user_profiles",
        "source.device_fingerprints",
        "source.ip_geolocation",
    ],
    "transform.merchant_risk": ["source.merchant_data", "source.fraud_labels"],
    "transform.card_velocity": ["source.card_data", "source.transactions"],
    "transform.alert_features": ["source.realtime_alerts", "source.transactions"],
    "feature_group.txn_features": ["transform.txn_enriched", "transform.merchant_risk"],
    "feature_group.user_risk": ["transform.card_velocity", "transform.alert_features"],
    "exposure.training_data": ["feature_group.txn_features", "feature_group.user_risk"],
}

NODE_ROWS_AT_SCALE_1 = {
    "source.transactions": 10_000,
    "source.user_profiles": 5_000,
    "source.device_fingerprints": 8_000,
    "source.ip_geolocation": 3_000,
    "source.merchant_data": 1_500,
    "source.card_data": 6_000,
    "source.fraud_labels": 2_000,
    "source.realtime_alerts": 1_000,
    "transform.txn_enriched": 10_000,
    "transform.merchant_risk": 1_500,
    "transform.card_velocity": 6_000,
    "transform.alert_features": 1_000,
    "feature_group.txn_features": 10_000,
    "feature_group.user_risk": 5_000,
    "exposure.training_data": 10_000,
}

DUCKDB_TYPES = {
    "string": "VARCHAR",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fraud.write_project(tmp_path_factory.mktemp("fraud") / "project", 1)


def load_nodes(project: Path) -> list[dict[str, Any]]:
    nodes = []
    for relative in EXPECTED_NODE_FILES:
        text = (project / "seeknal" / relative).read_text(encoding="utf-8")
        nodes.extend(yaml.safe_load_all(text))
    return nodes


def count_rows(path: Path) -> int:
    with duckdb.connect() as con:
        return con.execute(f"SELECT count(*) FROM '{path.as_posix()}'").fetchall()[0][0]


def digests(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(
            path.read_bytes()
        ).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def source_sql(project: Path, node: dict[str, Any]) -> str:
    path = (project / node["table"]).as_posix()
    columns = {c["name"]: DUCKDB_TYPES[c["data_type"]] for c in node["schema"]}
    if node["source"] == "csv":
        reader = f"read_csv('{path}', header = true, columns = {columns!r})"
    else:
        reader = f"read_parquet('{path}')"
    casts = ", ".join(f"CAST({name} AS {t}) AS {name}" for name, t in columns.items())
    return f"SELECT {casts} FROM {reader}"


def feature_group_sql(node: dict[str, Any]) -> str:
    keys = [*node["entity"]["join_keys"], node["materialization"]["event_time_col"]]
    features = [
        f"CAST({name} AS {DUCKDB_TYPES[spec['dtype']]}) AS {name}"
        for name, spec in node["features"].items()
    ]
    return f"SELECT {', '.join(keys + features)} FROM ({node['transform']})"


def run_nodes(project: Path) -> dict[str, int]:
    """Run every node in file order with plain DuckDB, as the engine would."""
    rows = {}
    with duckdb.connect() as con:
        for schema in ("source", "transform", "feature_group", "exposure"):
            con.execute(f"CREATE SCHEMA {schema}")
        for node in load_nodes(project):
            node_id = f"{node['kind']}.{node['name']}"
            if node["kind"] == "source":
                sql = source_sql(project, node)
            elif node["kind"] == "feature_group":
                sql = feature_group_sql(node)
            else:
                sql = node["transform"]
            con.execute(f"CREATE TABLE {node_id} AS {sql}")
            rows[node_id] = con.execute(f"SELECT count(*) FROM {node_id}").fetchall()[
                0
            ][0]
    return rows


def test_write_project_writes_the_node_files_data_and_readme(project: Path) -> None:
    written = sorted(
        p.relative_to(project / "seeknal").as_posix()
        for p in (project / "seeknal").rglob("*.yml")
    )

    assert written == sorted(EXPECTED_NODE_FILES)
    assert (project / "README.md").read_text(encoding="utf-8").startswith("# Fraud")
    assert sorted(p.name for p in (project / "data").iterdir()) == sorted(
        fraud.DATA_FILES.values()
    )


def test_readme_numbers_the_layers_from_1_like_the_dag_view(project: Path) -> None:
    readme = (project / "README.md").read_text(encoding="utf-8")
    dag = Project(project).dag()
    layer_of: dict[str, int] = {}
    current = 0
    for line in readme.split("```")[1].splitlines():
        heading = re.match(r"layer (\d+) ", line)
        if heading:
            current = int(heading.group(1))
        for name in re.findall(r"(\w+)\s+<-", line):
            layer_of[name] = current

    view = draw(kind_nodes(dag), engine="text").text
    assert re.findall(r"^layer (\d+)$", view, re.MULTILINE) == ["1", "2", "3", "4"]
    assert re.findall(r"^layer (\d+) ", readme, re.MULTILINE) == ["1", "2", "3", "4"]
    assert layer_of == {
        node.name: dag.layer[node.id] + 1 for node in dag.nodes.values() if node.inputs
    }


def test_nodes_form_the_fifteen_node_four_layer_graph(project: Path) -> None:
    nodes = load_nodes(project)
    inputs = {
        f"{n['kind']}.{n['name']}": [i["ref"] for i in n.get("inputs", [])]
        for n in nodes
    }

    assert [n["kind"] for n in nodes].count("source") == 8
    assert {k: v for k, v in inputs.items() if v} == EXPECTED_INPUTS
    assert sum(len(v) for v in inputs.values()) == 16


def test_txn_features_is_ready_for_the_ip_reputation_experiment(project: Path) -> None:
    path = project / "seeknal/feature_groups/13_feature_group_txn_features.yml"
    node = yaml.safe_load(path.read_text(encoding="utf-8"))

    assert node["features"]["merchant_risk_score"] == {"dtype": "float"}
    assert "ip_reputation_score" not in node["features"]
    assert "e.ip_reputation_score" in node["transform"]
    assert node["entity"] == {"name": "transaction", "join_keys": ["transaction_id"]}


def test_training_data_exposure_writes_parquet_inside_the_project(
    project: Path,
) -> None:
    path = project / "seeknal/exposures/15_exposure_training_data.yml"
    node = yaml.safe_load(path.read_text(encoding="utf-8"))

    assert node["type"] == "file"
    assert node["params"] == {
        "path": "target/exports/training_data.parquet",
        "format": "parquet",
    }


@pytest.mark.parametrize("name", sorted(fraud.BASE_ROWS))
def test_generated_file_has_the_tutorial_row_count(project: Path, name: str) -> None:
    path = project / "data" / fraud.DATA_FILES[name]

    assert count_rows(path) == fraud.BASE_ROWS[name]


def test_scale_two_doubles_every_file(tmp_path: Path) -> None:
    fraud.generate_data(tmp_path, 2)

    for name, rows in fraud.BASE_ROWS.items():
        assert count_rows(tmp_path / fraud.DATA_FILES[name]) == 2 * rows, name


def test_generation_is_byte_identical_for_the_same_scale(
    project: Path, tmp_path: Path
) -> None:
    again = fraud.write_project(tmp_path / "again", 1)

    assert digests(again / "data") == digests(project / "data")
    assert digests(again / "seeknal") == digests(project / "seeknal")


def test_scale_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scale"):
        fraud.generate_data(tmp_path, 0)


def test_every_node_runs_with_the_documented_row_count(project: Path) -> None:
    assert run_nodes(project) == NODE_ROWS_AT_SCALE_1


def test_training_data_has_a_label_and_some_fraud(project: Path) -> None:
    labels = project / "data" / fraud.DATA_FILES["fraud_labels"]
    transactions = project / "data" / fraud.DATA_FILES["transactions"]
    with duckdb.connect() as con:
        confirmed, flagged, agreeing = con.execute(
            f"""
            SELECT
                (SELECT count(*) FROM '{labels.as_posix()}' WHERE is_fraud),
                (SELECT count(*) FROM '{transactions.as_posix()}' WHERE is_fraud),
                (SELECT count(*) FROM '{labels.as_posix()}' AS l
                 JOIN '{transactions.as_posix()}' AS t USING (transaction_id)
                 WHERE l.is_fraud = t.is_fraud)
            """
        ).fetchall()[0]

    assert 0.02 * 10_000 < confirmed < 0.10 * 10_000
    assert flagged == confirmed
    assert agreeing == fraud.BASE_ROWS["fraud_labels"]
