"""Tests of the DAG: resolving the names a user types on the command line."""

from __future__ import annotations

import pytest

from seeknal_jupyter.dag import Dag, build_dag
from seeknal_jupyter.errors import UsageError
from seeknal_jupyter.loader import Node


def node(kind: str, name: str, *inputs: str) -> Node:
    return Node(kind, name, "seeknal/nodes.yml", 1, {}, inputs=inputs)


@pytest.fixture
def dag() -> Dag:
    nodes = [
        node("source", "transactions"),
        node("transform", "txn_enriched", "source.transactions"),
        node("feature_group", "txn_features", "transform.txn_enriched"),
        node("transform", "numbers"),
        node("source", "numbers"),
    ]
    return build_dag({n.id: n for n in nodes})


def test_resolve_takes_ids_and_unambiguous_bare_names(dag: Dag) -> None:
    assert dag.resolve("txn_features") == "feature_group.txn_features"
    assert dag.resolve("source.numbers") == "source.numbers"
    with pytest.raises(UsageError) as error:
        dag.resolve("numbers")
    assert str(error.value) == (
        "'numbers' is ambiguous: source.numbers, transform.numbers"
    )


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("txn_featurez", "no node named 'txn_featurez'; did you mean 'txn_features'?"),
        (
            "feature_group.txn_featurez",
            (
                "no node named 'feature_group.txn_featurez'; "
                "did you mean 'feature_group.txn_features'?"
            ),
        ),
        ("zzzz", "no node named 'zzzz'"),
    ],
)
def test_an_unknown_name_suggests_the_closest_node(
    dag: Dag, typed: str, message: str
) -> None:
    with pytest.raises(UsageError) as error:
        dag.select([typed])

    assert str(error.value) == message
