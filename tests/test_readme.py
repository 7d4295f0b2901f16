"""The README's examples, run with the `seeknal` command as a reader would run them.

"Writing nodes" gives a small project file by file: the test writes those files
from the README, runs them and checks the rows, the schema and the exported file
the README shows. The environments section's change to the fraud example and the
promote refusals it quotes are replayed on a fresh copy of the example.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SEEKNAL = Path(sys.executable).with_name("seeknal")
FILE_BLOCK = re.compile(
    r"^`([^`\n]+)`:\n\n```(?:yaml|csv)\n(.*?)^```$", re.MULTILINE | re.DOTALL
)
ROW = re.compile(r"^\| `(\w+\.\w+)` \| ([\d,]+) \|$", re.MULTILINE)


def section(title: str) -> str:
    """The README's text from the heading ``## title`` to the next ``## ``."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def flat(text: str) -> str:
    """``text`` with every run of whitespace made one space, as Markdown reads it."""
    return " ".join(text.split())


def code_span(text: str, starting: str) -> str:
    """The one code span of ``text`` that starts with ``starting``, on one line."""
    prose = re.sub(r"^```.*?^```$", "", text, flags=re.MULTILINE | re.DOTALL)
    spans = [flat(s) for s in re.findall(r"`([^`]+)`", prose)]
    found = [s for s in spans if s.startswith(starting)]
    assert len(found) == 1, f"{len(found)} code spans start with {starting!r}"
    return found[0]


def block_after(text: str, lead: str) -> str:
    """The fenced block that follows the words ``lead``."""
    match = re.search(
        re.escape(lead) + r"\n\n```\w*\n(.*?)^```$", text, re.MULTILINE | re.DOTALL
    )
    assert match, f"no code block after {lead!r}"
    return match.group(1)


def seeknal(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SEEKNAL), *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def rows(path: Path) -> int:
    query = f"SELECT count(*) FROM read_parquet('{path}')"
    return int(duckdb.sql(query).fetchall()[0][0])


WRITING = section("Writing nodes")


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's small project, written from its blocks and run once."""
    folder = tmp_path_factory.mktemp("readme") / "shop"
    for name, text in FILE_BLOCK.findall(WRITING):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    run = seeknal("run", cwd=folder)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "warning" not in run.stderr
    return folder


def test_the_small_project_has_a_file_per_block() -> None:
    files = [name for name, _ in FILE_BLOCK.findall(WRITING)]
    assert files == [
        "data/orders/2024-01.csv",
        "data/orders/2024-02.csv",
        "data/customers.csv",
        "seeknal/sources.yml",
        "seeknal/transforms/customer_orders.yml",
        "seeknal/feature_groups.yml",
        "seeknal/exposures/spend_export.yml",
    ]


def test_the_small_project_builds_the_rows_the_readme_lists(shop: Path) -> None:
    expected = {
        node: int(count.replace(",", "")) for node, count in ROW.findall(WRITING)
    }
    assert len(expected) == 6
    built = {}
    for node in expected:
        kind, name = node.split(".")
        built[node] = rows(shop / "target" / "cache" / kind / f"{name}.parquet")
    assert built == expected
    assert "`seeknal run` builds the six nodes in four layers" in flat(WRITING)
    again = seeknal("run", cwd=shop).stdout
    assert "nodes: 6, layers: 4, executed: 0, succeeded: 0, cached: 6" in again


def test_the_feature_group_without_sql_keeps_key_time_and_features(shop: Path) -> None:
    claimed = code_span(WRITING, "seeknal show order_amounts --schema")
    assert claimed == "seeknal show order_amounts --schema"
    sentence = (
        flat(WRITING).split(f"`{claimed}`", 1)[1].split(", and the exported", 1)[0]
    )
    columns = [span.split() for span in re.findall(r"`([^`]+)`", sentence)]
    shown = seeknal("show", "order_amounts", "--schema", cwd=shop)
    assert shown.returncode == 0, shown.stderr
    listed = [line.split() for line in shown.stdout.splitlines()[1:]]
    assert (
        listed
        == columns
        == [
            ["order_id", "BIGINT"],
            ["ordered_at", "TIMESTAMP"],
            ["amount", "DOUBLE"],
            ["country", "VARCHAR"],
        ]
    )


def test_the_exposure_writes_the_file_the_readme_shows(shop: Path) -> None:
    written = shop / "target" / "exports" / "customer_spend.csv"
    assert written.is_symlink()
    expected = block_after(WRITING, "the exported file holds:")
    assert written.read_text(encoding="utf-8") == expected


def test_noted_and_unknown_fields_say_what_the_readme_quotes(shop: Path) -> None:
    sources = shop / "seeknal" / "sources.yml"
    original = sources.read_text(encoding="utf-8")
    try:
        sources.write_text(original + "freshness: {warn_after: 1d}\n---\n---\n")
        noted = seeknal("plan", cwd=shop)
        assert noted.returncode == 0, noted.stderr
        warning = code_span(WRITING, "field 'freshness'")
        assert f"source.customers: {warning}" in noted.stderr
        assert noted.stderr.count("empty YAML document ignored") == 2
    finally:
        sources.write_text(original)
    groups = shop / "seeknal" / "feature_groups.yml"
    original = groups.read_text(encoding="utf-8")
    try:
        groups.write_text(original.replace("materialization:", "materialisation:", 1))
        wrong = seeknal("plan", cwd=shop)
        assert wrong.returncode == 2
        message = code_span(WRITING, "unknown field 'materialisation'")
        hint = code_span(WRITING, "did you mean 'materialization'?")
        assert "seeknal/feature_groups.yml:7: feature_group.customer_spend: " in (
            wrong.stderr
        )
        assert f"{message} ({hint})" in wrong.stderr
    finally:
        groups.write_text(original)


def test_two_inputs_without_sql_are_refused(shop: Path) -> None:
    groups = shop / "seeknal" / "feature_groups.yml"
    original = groups.read_text(encoding="utf-8")
    extra = "  - ref: transform.customer_orders\n  - ref: source.orders\nfeatures:"
    try:
        groups.write_text(
            original.replace("  - ref: transform.customer_orders\nfeatures:", extra)
        )
        refused = seeknal("plan", cwd=shop)
    finally:
        groups.write_text(original)
    assert refused.returncode == 2
    assert (
        "feature_group.order_amounts: 2 inputs and no 'transform' (add a 'transform' "
        "with SQL that joins them)" in refused.stderr
    )


ENVIRONMENTS = section("Environments: try a change beside production")


def test_the_environment_walkthrough_and_its_refusals(fraud: Path) -> None:
    assert seeknal("run", "--parallel", cwd=fraud).returncode == 0
    features = fraud / "seeknal/feature_groups/13_feature_group_txn_features.yml"
    assert "`seeknal/feature_groups/13_feature_group_txn_features.yml`" in ENVIRONMENTS
    snippet = block_after(ENVIRONMENTS, "the same indentation as the others:")
    features.write_text(features.read_text(encoding="utf-8") + snippet)

    plan = seeknal("plan", "dev", cwd=fraud)
    assert plan.returncode == 0, plan.stderr
    assert (
        "NON_BREAKING (1):\n  - feature_group.txn_features (new feature: "
        "ip_reputation_score)" in plan.stdout
    )
    assert "DEPENDENT (1):\n  - exposure.training_data" in plan.stdout
    assert "2 nodes to execute, 13 read from production" in plan.stdout
    assert '"2 nodes to execute, 13 read from production"' in flat(ENVIRONMENTS)

    early = seeknal("promote", "dev", cwd=fraud)
    assert early.returncode == 2
    assert early.stderr.strip() == code_span(
        ENVIRONMENTS, "error: 'dev' is not applied"
    )

    assert seeknal("run", "--env", "dev", cwd=fraud).returncode == 0
    diff = seeknal("diff", "training_data", "--env", "dev", cwd=fraud)
    assert "column ip_reputation_score (DOUBLE) only in dev" in diff.stdout
    assert "rows: 10,000 in production, 10,000 in dev" in diff.stdout

    assert seeknal("run", cwd=fraud).returncode == 0
    late = seeknal("promote", "dev", cwd=fraud)
    assert late.returncode == 2
    assert late.stderr.strip() == code_span(
        ENVIRONMENTS, "error: production changed since"
    )

    assert seeknal("plan", "dev", cwd=fraud).returncode == 0
    assert seeknal("run", "--env", "dev", cwd=fraud).returncode == 0
    assert seeknal("promote", "dev", cwd=fraud).returncode == 0
    again = seeknal("promote", "dev", cwd=fraud)
    assert again.returncode == 2 and "already promoted" in again.stderr

    text = features.read_text(encoding="utf-8")
    features.write_text(text.replace("  merchant_risk_score:\n    dtype: float\n", ""))
    breaking = seeknal("plan", "experiment", cwd=fraud)
    assert "BREAKING (1):\n  - feature_group.txn_features" in breaking.stdout
    assert "Removing `merchant_risk_score` from the features instead is BREAKING" in (
        flat(ENVIRONMENTS)
    )
