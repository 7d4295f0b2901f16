"""Both examples run through the engine, sequentially and in parallel, with equal outputs.

The fraud example's per-node row counts are asserted in test_cli.py, through the
command line as the README runs it.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from seeknal_jupyter import Project
from seeknal_jupyter.examples import init_example

FLIGHTS_ROWS = {
    "source.flights": 336_776,
    "transform.flights_clean": 328_521,
    "feature_group.route_daily_delays": 63_250,
    "exposure.departure_delay_training": 328_521,
}


def content(path: Path) -> tuple[object, ...]:
    """Row count and an order-independent sum of row hashes of a Parquet file."""
    query = f"SELECT count(*), sum(hash(t)) FROM read_parquet('{path}') AS t"
    return duckdb.sql(query).fetchall()[0]


def outputs(project: Project) -> dict[str, tuple[object, ...]]:
    return {n: content(project.output_path(n)) for n in project.dag().order}


@pytest.fixture(scope="module", params=["fraud-detection", "nyc-flights"])
def example(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp(request.param) / "project"
    init_example(request.param, folder)
    return request.param, Project(folder)


def test_sequential_and_parallel_outputs_are_equal(example) -> None:
    name, project = example
    sequential = project.run(full=True)
    rows = {n: r.rows for n, r in sequential.nodes.items()}
    if name == "nyc-flights":
        assert {n: rows[n] for n in FLIGHTS_ROWS} == FLIGHTS_ROWS
    assert set(sequential.statuses().values()) == {"success"}
    first = outputs(project)

    parallel = project.run(full=True, parallel=True, max_workers=4)
    assert parallel.workers == 4
    assert {n: r.rows for n, r in parallel.nodes.items()} == rows
    assert outputs(project) == first

    again = project.run(parallel=True)
    assert set(again.statuses().values()) == {"cached"}


def test_fraud_shape_matches_the_tutorial(tmp_path: Path) -> None:
    project = Project(init_example("fraud-detection", tmp_path / "fraud"))
    manifest = project.plan()
    layers = manifest.dag.layers()
    assert [len(layer) for layer in layers] == [8, 4, 2, 1]
    assert manifest.edge_count == 16
    assert sorted(layers[2]) == [
        "feature_group.txn_features",
        "feature_group.user_risk",
    ]
    assert layers[3] == ["exposure.training_data"]
    export = tmp_path / "fraud" / "target" / "exports" / "training_data.parquet"
    project.run(parallel=True)
    assert duckdb.sql(f"SELECT count(*) FROM '{export}'").fetchall() == [(10_000,)]
