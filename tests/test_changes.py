"""Tests for change classification: a matrix of single YAML edits, each with its class."""

from __future__ import annotations

from pathlib import Path

import pytest

from seeknal_jupyter.changes import (
    ChangeClass,
    Definition,
    compare,
    plain,
    sql_reasons,
)
from seeknal_jupyter.dag import build_dag
from seeknal_jupyter.fingerprint import fingerprints
from seeknal_jupyter.loader import load_nodes

SOURCES = """\
kind: source
name: payments
description: Card payments
source: csv
table: data/payments.csv
params:
  delimiter: ","
schema:
  - name: payment_id
    data_type: integer
  - name: customer_id
    data_type: integer
  - name: amount
    data_type: double
  - name: country
    data_type: string
---
kind: source
name: customers
source: csv
table: data/customers.csv
"""

TRANSFORM = """\
kind: transform
name: clean_payments
description: Payments with a positive amount
owner: risk
tags: [payments]
inputs:
  - ref: source.payments
  - ref: source.customers
transform: |
  SELECT payment_id, customer_id, amount, country
  FROM source.payments
  WHERE amount > 0
"""

FEATURES = """\
kind: feature_group
name: payment_features
entity:
  name: payment
  join_keys: [payment_id]
inputs:
  - ref: transform.clean_payments
transform: |
  SELECT payment_id, customer_id, amount, amount * 2 AS double_amount
  FROM transform.clean_payments
features:
  customer_id:
    dtype: integer
  amount:
    dtype: double
"""

EXPOSURE = """\
kind: exposure
name: training_set
type: file
params:
  path: exports/training.parquet
  format: parquet
inputs:
  - ref: feature_group.payment_features
"""

FILES = {
    "sources.yml": SOURCES,
    "clean_payments.yml": TRANSFORM,
    "payment_features.yml": FEATURES,
    "training_set.yml": EXPOSURE,
}

TRANSFORM_ID = "transform.clean_payments"
FEATURES_ID = "feature_group.payment_features"
EXPOSURE_ID = "exposure.training_set"
PAYMENTS_ID = "source.payments"

# (case, file, old text, new text, node, class, reason fragment)
EDITS = [
    (
        "description only",
        "clean_payments.yml",
        "description: Payments with a positive amount",
        "description: Every payment above zero",
        TRANSFORM_ID,
        ChangeClass.METADATA,
        "description changed",
    ),
    (
        "tags only",
        "clean_payments.yml",
        "tags: [payments]",
        "tags: [payments, cleaned]",
        TRANSFORM_ID,
        ChangeClass.METADATA,
        "tags changed (+cleaned)",
    ),
    (
        "owner only",
        "clean_payments.yml",
        "owner: risk",
        "owner: fraud-team",
        TRANSFORM_ID,
        ChangeClass.METADATA,
        "owner changed",
    ),
    (
        "entity name only",
        "payment_features.yml",
        "  name: payment\n",
        "  name: card_payment\n",
        FEATURES_ID,
        ChangeClass.METADATA,
        "entity.name changed",
    ),
    (
        "whitespace and comment only SQL",
        "clean_payments.yml",
        "  WHERE amount > 0\n",
        "  -- keep refunds out\n  WHERE   amount >   0\n\n",
        TRANSFORM_ID,
        ChangeClass.UNCHANGED,
        None,
    ),
    (
        "formatting only SQL",
        "clean_payments.yml",
        (
            "  SELECT payment_id, customer_id, amount, country\n"
            "  FROM source.payments\n  WHERE amount > 0\n"
        ),
        (
            "  select\n    payment_id,\n    customer_id,\n    amount,\n    country\n"
            "  from source.payments where (amount > 0)\n"
        ),
        TRANSFORM_ID,
        ChangeClass.UNCHANGED,
        None,
    ),
    (
        "dtype alias only (float is double)",
        "payment_features.yml",
        "  amount:\n    dtype: double",
        "  amount:\n    dtype: float",
        FEATURES_ID,
        ChangeClass.UNCHANGED,
        None,
    ),
    (
        "projection added to the SQL",
        "clean_payments.yml",
        "amount, country\n",
        "amount, country, amount / 100 AS amount_hundreds\n",
        TRANSFORM_ID,
        ChangeClass.NON_BREAKING,
        "SQL now also outputs column amount_hundreds",
    ),
    (
        "column order changed in the SQL",
        "clean_payments.yml",
        "SELECT payment_id, customer_id, amount, country",
        "SELECT payment_id, customer_id, country, amount",
        TRANSFORM_ID,
        ChangeClass.BREAKING,
        "output column order changed",
    ),
    (
        "quotes around plain names only",
        "clean_payments.yml",
        "  FROM source.payments\n",
        '  FROM "source"."payments"\n',
        TRANSFORM_ID,
        ChangeClass.UNCHANGED,
        None,
    ),
    (
        "input read by its bare name instead of kind.name",
        "clean_payments.yml",
        "  FROM source.payments\n",
        "  FROM payments\n",
        TRANSFORM_ID,
        ChangeClass.UNCHANGED,
        None,
    ),
    (
        "window column added",
        "clean_payments.yml",
        "amount, country\n",
        "amount, country,\n  sum(amount) OVER (PARTITION BY customer_id) AS spent\n",
        TRANSFORM_ID,
        ChangeClass.NON_BREAKING,
        "SQL now also outputs column spent",
    ),
    (
        "aggregate added to a row-level query",
        "clean_payments.yml",
        "amount, country\n",
        "amount, country, count(*) AS n\n",
        TRANSFORM_ID,
        ChangeClass.BREAKING,
        "new column n changes the rows: an aggregate turns the query into one row",
    ),
    (
        "feature order changed",
        "payment_features.yml",
        "  customer_id:\n    dtype: integer\n  amount:\n    dtype: double\n",
        "  amount:\n    dtype: double\n  customer_id:\n    dtype: integer\n",
        FEATURES_ID,
        ChangeClass.BREAKING,
        "feature order changed",
    ),
    (
        "feature order changed and a feature added",
        "payment_features.yml",
        "  customer_id:\n    dtype: integer\n  amount:\n    dtype: double\n",
        (
            "  amount:\n    dtype: double\n  customer_id:\n    dtype: integer\n"
            "  double_amount:\n    dtype: double\n"
        ),
        FEATURES_ID,
        ChangeClass.BREAKING,
        "feature order changed",
    ),
    (
        "column removed from the SQL",
        "clean_payments.yml",
        "amount, country\n",
        "amount\n",
        TRANSFORM_ID,
        ChangeClass.BREAKING,
        "SQL no longer outputs column country",
    ),
    (
        "column renamed",
        "clean_payments.yml",
        "amount, country\n",
        "amount, country AS country_code\n",
        TRANSFORM_ID,
        ChangeClass.BREAKING,
        "column country renamed to country_code",
    ),
    (
        "expression of a column changed",
        "payment_features.yml",
        "amount * 2 AS double_amount",
        "amount * 3 AS double_amount",
        FEATURES_ID,
        ChangeClass.BREAKING,
        "expression of column double_amount changed",
    ),
    (
        "WHERE clause changed",
        "clean_payments.yml",
        "WHERE amount > 0",
        "WHERE amount >= 0",
        TRANSFORM_ID,
        ChangeClass.BREAKING,
        "WHERE clause changed",
    ),
    (
        "JOIN added",
        "clean_payments.yml",
        "  FROM source.payments\n",
        "  FROM source.payments\n  JOIN source.customers USING (customer_id)\n",
        TRANSFORM_ID,
        ChangeClass.BREAKING,
        "JOIN added",
    ),
    (
        "column added under DISTINCT",
        "clean_payments.yml",
        "SELECT payment_id, customer_id, amount, country",
        "SELECT DISTINCT payment_id, customer_id, amount, country",
        TRANSFORM_ID,
        ChangeClass.BREAKING,
        "DISTINCT added",
    ),
    (
        "feature added",
        "payment_features.yml",
        "  amount:\n    dtype: double\n",
        "  amount:\n    dtype: double\n  double_amount:\n    dtype: double\n",
        FEATURES_ID,
        ChangeClass.NON_BREAKING,
        "new feature: double_amount",
    ),
    (
        "feature removed",
        "payment_features.yml",
        "  customer_id:\n    dtype: integer\n",
        "",
        FEATURES_ID,
        ChangeClass.BREAKING,
        "removed feature: customer_id",
    ),
    (
        "dtype changed",
        "payment_features.yml",
        "  amount:\n    dtype: double",
        "  amount:\n    dtype: integer",
        FEATURES_ID,
        ChangeClass.BREAKING,
        "dtype of amount changed from DOUBLE to INTEGER",
    ),
    (
        "join keys changed",
        "payment_features.yml",
        "join_keys: [payment_id]",
        "join_keys: [payment_id, customer_id]",
        FEATURES_ID,
        ChangeClass.BREAKING,
        "join keys changed",
    ),
    (
        "source path changed",
        "sources.yml",
        "table: data/payments.csv",
        "table: data/payments_2024.csv",
        PAYMENTS_ID,
        ChangeClass.BREAKING,
        "source path changed from data/payments.csv to data/payments_2024.csv",
    ),
    (
        "reader option changed",
        "sources.yml",
        'delimiter: ","',
        'delimiter: ";"',
        PAYMENTS_ID,
        ChangeClass.BREAKING,
        "reader option delimiter changed",
    ),
    (
        "declared source column added",
        "sources.yml",
        "  - name: country\n    data_type: string\n",
        (
            "  - name: country\n    data_type: string\n"
            "  - name: channel\n    data_type: string\n"
        ),
        PAYMENTS_ID,
        ChangeClass.NON_BREAKING,
        "new column: channel",
    ),
    (
        "input removed",
        "clean_payments.yml",
        "  - ref: source.customers\n",
        "",
        TRANSFORM_ID,
        ChangeClass.BREAKING,
        "input source.customers removed",
    ),
    (
        "export path changed",
        "training_set.yml",
        "path: exports/training.parquet",
        "path: exports/training_v2.parquet",
        EXPOSURE_ID,
        ChangeClass.BREAKING,
        "export path changed",
    ),
]


def write_project(folder: Path, files: dict[str, str]) -> Path:
    (folder / "seeknal").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / "seeknal" / name).write_text(text, encoding="utf-8")
    return folder


def definitions(folder: Path) -> tuple[dict[str, Definition], list[str]]:
    nodes = load_nodes(folder).nodes
    dag = build_dag(nodes)
    return {i: Definition.from_node(n) for i, n in nodes.items()}, list(dag.order)


def production(folder: Path) -> dict[str, Definition]:
    """What a state file records: resolved inputs and the spec as plain JSON."""
    nodes = load_nodes(folder).nodes
    return {
        i: Definition.from_record(i, list(n.inputs), plain(dict(n.spec)))
        for i, n in nodes.items()
    }


@pytest.fixture()
def recorded(tmp_path: Path) -> dict[str, Definition]:
    return production(write_project(tmp_path / "prod", FILES))


def edited(tmp_path: Path, file: str, old: str, new: str) -> Path:
    assert FILES[file].count(old) == 1, f"edit text not found once in {file}"
    files = dict(FILES)
    files[file] = files[file].replace(old, new)
    return write_project(tmp_path / "edit", files)


def test_matrix_has_every_listed_kind_of_edit() -> None:
    assert len(EDITS) >= 16
    assert {e[5] for e in EDITS} >= {
        ChangeClass.METADATA,
        ChangeClass.UNCHANGED,
        ChangeClass.NON_BREAKING,
        ChangeClass.BREAKING,
    }


def test_an_unedited_project_has_no_changes(
    tmp_path: Path, recorded: dict[str, Definition]
) -> None:
    current, order = definitions(write_project(tmp_path / "same", FILES))
    changes = compare(current, order, recorded)
    assert {c.change_class for c in changes.values()} == {ChangeClass.UNCHANGED}
    assert len(changes) == 5


@pytest.mark.parametrize(
    ("case", "file", "old", "new", "node", "expected", "reason"),
    EDITS,
    ids=[e[0] for e in EDITS],
)
def test_single_edit_classifies(
    tmp_path: Path,
    recorded: dict[str, Definition],
    case: str,
    file: str,
    old: str,
    new: str,
    node: str,
    expected: ChangeClass,
    reason: str | None,
) -> None:
    current, order = definitions(edited(tmp_path, file, old, new))
    changes = compare(current, order, recorded)
    change = changes[node]
    assert change.change_class == expected, change.reasons
    if reason is None:
        assert change.reasons == []
    else:
        assert any(reason in r for r in change.reasons), change.reasons
    others = {
        n: c.change_class
        for n, c in changes.items()
        if n != node and c.change_class != ChangeClass.DEPENDENT
    }
    assert set(others.values()) == {ChangeClass.UNCHANGED}, others


@pytest.mark.parametrize(
    ("edit", "downstream"),
    [
        ("projection added to the SQL", [FEATURES_ID, EXPOSURE_ID]),
        ("WHERE clause changed", [FEATURES_ID, EXPOSURE_ID]),
        ("feature added", [EXPOSURE_ID]),
        ("source path changed", [TRANSFORM_ID, FEATURES_ID, EXPOSURE_ID]),
        ("description only", []),
        ("formatting only SQL", []),
    ],
)
def test_downstream_nodes_are_dependent_with_their_cause(
    tmp_path: Path,
    recorded: dict[str, Definition],
    edit: str,
    downstream: list[str],
) -> None:
    case = next(e for e in EDITS if e[0] == edit)
    _, file, old, new, node, expected, _ = case
    current, order = definitions(edited(tmp_path, file, old, new))
    changes = compare(current, order, recorded)
    dependent = [n for n, c in changes.items() if c.change_class == "DEPENDENT"]
    assert dependent == downstream
    for node_id in dependent:
        change = changes[node_id]
        assert change.upstream == [node]
        assert change.upstream_breaking == (expected == ChangeClass.BREAKING)
        word = "BREAKING change" if expected == ChangeClass.BREAKING else "change"
        assert change.reasons[0] == f"upstream {word} in {node}"
        assert change.runs


def test_node_added_and_node_removed(
    tmp_path: Path, recorded: dict[str, Definition]
) -> None:
    files = dict(FILES)
    del files["training_set.yml"]
    files["audit.yml"] = (
        "kind: transform\nname: audit\ninputs:\n  - ref: transform.clean_payments\n"
        "transform: SELECT count(*) AS payments FROM transform.clean_payments\n"
    )
    current, order = definitions(write_project(tmp_path / "edit", files))
    changes = compare(current, order, recorded)
    assert changes["transform.audit"].change_class == ChangeClass.ADDED
    assert changes["transform.audit"].reasons == ["new node"]
    assert changes[EXPOSURE_ID].change_class == ChangeClass.REMOVED
    assert list(changes)[-1] == EXPOSURE_ID
    assert not changes[EXPOSURE_ID].runs
    rest = {n for n, c in changes.items() if c.change_class == "UNCHANGED"}
    assert rest == {PAYMENTS_ID, "source.customers", TRANSFORM_ID, FEATURES_ID}


def test_a_breaking_change_is_carried_through_a_non_breaking_one(
    tmp_path: Path, recorded: dict[str, Definition]
) -> None:
    files = dict(FILES)
    files["clean_payments.yml"] = files["clean_payments.yml"].replace(
        "WHERE amount > 0", "WHERE amount > 10"
    )
    files["payment_features.yml"] = files["payment_features.yml"].replace(
        "AS double_amount", "AS double_amount, amount * 4 AS quadruple_amount"
    )
    current, order = definitions(write_project(tmp_path / "edit", files))
    changes = compare(current, order, recorded)
    assert changes[TRANSFORM_ID].change_class == ChangeClass.BREAKING
    assert changes[FEATURES_ID].change_class == ChangeClass.NON_BREAKING
    exposure = changes[EXPOSURE_ID]
    assert exposure.change_class == ChangeClass.DEPENDENT
    assert exposure.upstream == [FEATURES_ID]
    assert exposure.upstream_breaking
    assert exposure.reasons == [
        f"upstream BREAKING change in {TRANSFORM_ID} (through {FEATURES_ID})"
    ]
    features = changes[FEATURES_ID]
    assert features.upstream == [TRANSFORM_ID] and features.upstream_breaking
    assert (
        features.reasons[-1] == f"also downstream of BREAKING change in {TRANSFORM_ID}"
    )


def test_metadata_and_dependent_together_keep_both_reasons(
    tmp_path: Path, recorded: dict[str, Definition]
) -> None:
    files = dict(FILES)
    files["clean_payments.yml"] = files["clean_payments.yml"].replace(
        "WHERE amount > 0", "WHERE amount > 1"
    )
    files["training_set.yml"] = "description: the model's input\n" + EXPOSURE
    current, order = definitions(write_project(tmp_path / "edit", files))
    exposure = compare(current, order, recorded)[EXPOSURE_ID]
    assert exposure.change_class == ChangeClass.DEPENDENT
    assert exposure.reasons == [
        f"upstream BREAKING change in {TRANSFORM_ID}",
        "description changed",
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("SELECT a FROM t", "select a\nfrom t -- same", []),
        ("SELECT a FROM t", "SELECT a, b FROM t", ["SQL now also outputs column b"]),
        (
            "SELECT a FROM t",
            "SELECT a, unnest(list) AS item FROM t",
            [
                "new column item changes the rows: it produces several rows per input row"
            ],
        ),
        ("SELECT a, b FROM t", "SELECT b, a FROM t", ["output column order changed"]),
        (
            "SELECT a, b FROM t",
            "SELECT b, a, c FROM t",
            ["SQL now also outputs column c", "output column order changed"],
        ),
        (
            "SELECT a FROM t",
            "SELECT a, (SELECT max(x) FROM u) AS top FROM t",
            ["SQL now also outputs column top"],
        ),
        (
            "SELECT * FROM t",
            "SELECT * EXCLUDE (a) FROM t",
            ["star projection * is now * EXCLUDE"],
        ),
        (
            "SELECT a, b FROM t ORDER BY 2",
            "SELECT a, c, b FROM t ORDER BY 2",
            [
                "SQL now also outputs column c",
                "ORDER BY 2 now refers to column c",
            ],
        ),
        (
            "SELECT a, b FROM t ORDER BY 2",
            "SELECT a, b, c FROM t ORDER BY 2",
            ["SQL now also outputs column c"],
        ),
        (
            "SELECT k, count(*) AS n FROM t GROUP BY ALL",
            "SELECT k, channel, count(*) AS n FROM t GROUP BY ALL",
            [
                (
                    "new column channel changes the rows: under GROUP BY ALL it becomes "
                    "a grouping key"
                )
            ],
        ),
        (
            "SELECT k, count(*) AS n FROM t GROUP BY k",
            "SELECT k, count(*) AS n, sum(v) AS total FROM t GROUP BY k",
            ["SQL now also outputs column total"],
        ),
        (
            "SELECT k, count(*) AS n FROM t GROUP BY ALL",
            "SELECT k, count(*) AS n, max(v) AS top FROM t GROUP BY ALL",
            ["SQL now also outputs column top"],
        ),
        (
            "SELECT 1 AS x FROM t",
            "SELECT 1 AS x, count(*) AS n FROM t",
            [
                (
                    "new column n changes the rows: an aggregate turns the query into "
                    "one row per group"
                )
            ],
        ),
        ("SELECT a FROM t WHERE (a > 1)", "SELECT (a) FROM t WHERE a > 1", []),
        (
            "SELECT (a + b) * 2 AS c FROM t",
            "SELECT a + b * 2 AS c FROM t",
            ["expression of column c changed"],
        ),
        ('SELECT "Amount" AS "Total" FROM t', "SELECT Amount AS Total FROM t", []),
        (
            'SELECT "a b" FROM t',
            "SELECT a AS b FROM t",
            [
                "SQL no longer outputs column a b",
                "SQL now also outputs column b",
            ],
        ),
        (
            "SELECT a, b, c FROM t",
            "SELECT a, d, e FROM t",
            [
                "SQL no longer outputs columns b and c",
                "SQL now also outputs columns d and e",
            ],
        ),
        (
            "SELECT " + ", ".join(f"c{i}" for i in range(9)) + " FROM t",
            "SELECT c0 FROM t",
            ["SQL no longer outputs 8 columns: c1, c2, c3, c4, c5, c6 and 2 more"],
        ),
        ("SELECT a FROM t", "SELECT a FROM t ORDER BY a", ["ORDER BY added"]),
        ("SELECT a FROM t LIMIT 5", "SELECT a FROM t", ["LIMIT removed"]),
        (
            "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
            "WITH x AS (SELECT 2 AS a) SELECT a FROM x",
            ["CTE x changed"],
        ),
        ("SELECT a FROM t UNION SELECT a FROM u", "SELECT a FROM t", ["SQL changed"]),
        ("SELECT a FROM t", "SELECT a FROM t WHERE", ["SQL changed"]),
    ],
)
def test_sql_reasons(old: str, new: str, expected: list[str]) -> None:
    reasons = sql_reasons(old, new)
    assert [r.text.split(" (")[0] for r in reasons] == expected


@pytest.mark.parametrize(
    ("case", "file", "old", "new", "node", "expected", "reason"),
    EDITS,
    ids=[e[0] for e in EDITS],
)
def test_fingerprints_change_exactly_when_the_class_says_the_output_may(
    tmp_path: Path,
    case: str,
    file: str,
    old: str,
    new: str,
    node: str,
    expected: ChangeClass,
    reason: str | None,
) -> None:
    """A plan and a run must agree: an edit classed UNCHANGED or METADATA keeps
    the node's fingerprint (it stays cached); any other edit changes it."""
    before = fingerprints(
        build_dag(load_nodes(write_project(tmp_path / "a", FILES)).nodes),
        tmp_path / "a",
    )
    folder = edited(tmp_path, file, old, new)
    after = fingerprints(build_dag(load_nodes(folder).nodes), folder)
    same = expected in (ChangeClass.UNCHANGED, ChangeClass.METADATA)
    assert (before[node] == after[node]) == same
