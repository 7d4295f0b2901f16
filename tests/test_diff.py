"""Tests for diff on the fraud example: columns, rows and values against production."""

from __future__ import annotations

import pytest
from environment_helpers import (
    PROD_EXPORT,
    TXN,
    add_ip_feature,
    applied,
    edit,
    query,
)

from seeknal_jupyter.changes import ChangeClass
from seeknal_jupyter.diff import diff
from seeknal_jupyter.project import Project
from seeknal_jupyter.store import PRODUCTION


def test_diff_of_an_added_feature(project: Project) -> None:
    add_ip_feature(project)
    applied(project, "experiment")
    found = diff(project, "txn_features", "experiment")
    assert found.only_in_env == [("ip_reputation_score", "DOUBLE")]
    assert found.only_in_production == [] and found.type_changes == []
    assert (found.env_rows, found.production_rows) == (10_000, 10_000)
    assert (found.rows_only_in_env, found.rows_only_in_production) == (0, 0)
    assert "column ip_reputation_score (DOUBLE) only in experiment" in str(found)
    unchanged = diff(project, "user_risk", "experiment")
    assert unchanged.env_path is None and unchanged.same


def test_diff_of_changed_values_shows_a_sample(project: Project) -> None:
    edit(project, "e.amount AS txn_amount,", "round(e.amount) AS txn_amount,")
    plan = applied(project, "rounded")
    assert plan.changes[TXN].reasons == ["expression of column txn_amount changed"]
    found = diff(project, "txn_features", "rounded", limit=5)
    whole = query(
        "SELECT count(*) FROM read_parquet("
        f"'{project.output_path('txn_features', PRODUCTION)}') "
        "WHERE txn_amount <> round(txn_amount)"
    )[0][0]
    assert isinstance(whole, int) and whole > 0
    assert found.rows_only_in_env == found.rows_only_in_production == whole
    assert found.matched is not None
    assert found.matched.keys == ["transaction_id"]
    assert found.matched.changed_rows == whole
    assert {c: n for c, n in found.matched.changed_columns.items() if n} == {
        "txn_amount": whole
    }
    assert (found.matched.keys_only_in_env, found.matched.keys_only_in_production) == (
        0,
        0,
    )
    assert list(found.sample.columns) == [
        "transaction_id",
        "txn_amount (production)",
        "txn_amount (rounded)",
    ]
    assert len(found.sample) == 5
    assert list(found.sample["transaction_id"]) == sorted(
        found.sample["transaction_id"]
    )
    for _, row in found.sample.iterrows():
        assert row["txn_amount (rounded)"] == round(row["txn_amount (production)"])
        assert row["txn_amount (rounded)"] != row["txn_amount (production)"]
    text = str(found)
    assert (
        f"matched on transaction_id: {whole:,} rows with different values "
        f"(txn_amount {whole:,}); 0 keys only in rounded, 0 only in production"
    ) in text
    assert (
        "sample of matched rows that differ (each differing column in production, "
        "then in rounded):\n"
    ) in text
    page = found._repr_html_()
    assert "<table" in page and "txn_amount (rounded)" in page


def test_diff_compares_a_column_whose_type_changed(project: Project) -> None:
    edit(
        project, "  txn_amount:\n    dtype: float", "  txn_amount:\n    dtype: integer"
    )
    plan = applied(project, "integer")
    assert plan.changes[TXN].change_class == ChangeClass.BREAKING
    production = project.output_path("txn_features", PRODUCTION)
    fractional = query(
        f"SELECT count(*) FROM read_parquet('{production}') "
        "WHERE txn_amount <> round(txn_amount)"
    )[0][0]
    assert isinstance(fractional, int) and fractional > 0

    found = diff(project, "txn_features", "integer", limit=3)

    assert found.type_changes == [("txn_amount", "DOUBLE", "INTEGER")]
    assert found.compared_as == {"txn_amount": "DOUBLE"}
    assert found.rows_only_in_env == found.rows_only_in_production == fractional
    assert found.matched is not None and found.matched.changed_rows == fractional
    assert found.matched.changed_columns["txn_amount"] == fractional
    for _, row in found.sample.iterrows():
        old, new = row["txn_amount (production)"], row["txn_amount (integer)"]
        assert new == int(new) and abs(new - old) <= 0.5 and new != old
    assert (
        "column txn_amount: DOUBLE in production, INTEGER in integer (compared as "
        "DOUBLE)" in str(found)
    )


def retype_is_fraud(project: Project) -> None:
    """Apply, in environment ``retyped``, training_data with ``is_fraud`` as an
    integer (0 or 2): an exposure without keys whose fraud rows all differ."""
    edit(
        project,
        "    f.is_fraud\n",
        "    CAST(f.is_fraud AS INTEGER) * 2 AS is_fraud\n",
        "seeknal/exposures/15_exposure_training_data.yml",
    )
    applied(project, "retyped")


def test_diff_without_keys_samples_the_rows_found_on_one_side(
    project: Project,
) -> None:
    retype_is_fraud(project)
    frauds = query(
        f"SELECT count(*) FROM read_parquet('{project.root / PROD_EXPORT}') "
        "WHERE is_fraud"
    )[0][0]
    assert isinstance(frauds, int) and frauds > 2

    found = diff(project, "training_data", "retyped", limit=2)

    assert found.matched is None
    assert found.type_changes == [("is_fraud", "BOOLEAN", "INTEGER")]
    assert found.compared_as == {"is_fraud": "INTEGER"}
    assert found.rows_only_in_env == found.rows_only_in_production == frauds
    assert list(found.sample["side"]) == ["retyped", "retyped"] + ["production"] * 2
    assert list(found.sample["is_fraud"]) == [2, 2, 1, 1]
    assert "sample of differing rows:\n" in str(found)


def test_diff_without_keys_lines_up_both_sides_and_fits_the_terminal(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each side's sample is its first rows in sorted order, so the same leading
    columns (here the transaction) face each other; the text wraps to COLUMNS."""
    retype_is_fraud(project)
    monkeypatch.setenv("COLUMNS", "60")

    found = diff(project, "training_data", "retyped", limit=3)

    sides = found.sample.groupby("side", sort=False)
    leading = {side: rows.iloc[:, 1].tolist() for side, rows in sides}
    assert leading["retyped"] == leading["production"] == sorted(leading["retyped"])
    sample = str(found).split("sample of differing rows:\n")[1]
    assert max(len(line) for line in sample.splitlines()) <= 60
