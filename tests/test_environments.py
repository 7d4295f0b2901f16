"""Tests for environments on the fraud example: plan and apply, and the rules of
environment names that promote, diff, list and delete share too.

Everything runs on real files with DuckDB; applies that must survive a crash in real
subprocesses, killed with SIGKILL.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from environment_helpers import (
    PROD_EXPORT,
    TRAINING,
    TXN,
    add_ip_feature,
    applied,
    check_production,
    columns,
    count,
    edit,
    files,
    production_fingerprints,
    query,
    remove_risk_feature,
    same_content,
)

from seeknal_jupyter import cli, environments
from seeknal_jupyter.changes import ChangeClass
from seeknal_jupyter.diff import diff
from seeknal_jupyter.environments import ApplyResult
from seeknal_jupyter.errors import RunFailed, UsageError
from seeknal_jupyter.events import Event, NodeFinished, Reporter
from seeknal_jupyter.inventory import delete, list_environments
from seeknal_jupyter.project import ExecutionPlan, Project
from seeknal_jupyter.promote import promote
from seeknal_jupyter.store import PRODUCTION

# ---------------------------------------------------------------- plan


def test_plan_without_changes(project: Project) -> None:
    plan = environments.plan(project, "experiment")
    assert plan.to_execute == []
    assert set(plan.classes().values()) == {"UNCHANGED"}
    assert len(plan.classes()) == 15
    text = str(plan)
    assert "No changes against production." in text
    assert "0 nodes to execute, 15 read from production; added 0, removed 0" in text
    saved = json.loads(
        (project.target / "environments/experiment/plan.json").read_text()
    )
    assert saved["fingerprints"] == production_fingerprints(project)


def test_adding_a_feature_is_non_breaking_with_one_dependent(project: Project) -> None:
    add_ip_feature(project)
    plan = environments.plan(project, "experiment")
    assert plan.changes[TXN].change_class == ChangeClass.NON_BREAKING
    assert plan.changes[TXN].reasons == ["new feature: ip_reputation_score"]
    dependent = plan.changes[TRAINING]
    assert dependent.change_class == ChangeClass.DEPENDENT
    assert dependent.upstream == [TXN] and not dependent.upstream_breaking
    assert plan.to_execute == [TXN, TRAINING]
    assert plan.counts()["UNCHANGED"] == 13
    text = str(plan)
    assert "NON_BREAKING (1):\n  - feature_group.txn_features (new feature: " in text
    assert "DEPENDENT (1):\n  - exposure.training_data (upstream change in " in text
    assert "2 nodes to execute, 13 read from production; added 0, removed 0" in text
    assert "WARNING" not in text
    loaded = environments.load_plan(project, "experiment")
    assert loaded.classes() == plan.classes()
    assert loaded.changes[TRAINING] == plan.changes[TRAINING]


def test_removing_a_feature_is_breaking_and_warns_before_the_summary(
    project: Project,
) -> None:
    add_ip_feature(project)
    remove_risk_feature(project)
    plan = environments.plan(project, "breaking-test")
    assert plan.changes[TXN].change_class == ChangeClass.BREAKING
    assert "removed feature: merchant_risk_score" in plan.changes[TXN].reasons
    assert plan.changes[TRAINING].change_class == ChangeClass.DEPENDENT
    assert plan.changes[TRAINING].upstream_breaking
    text = str(plan)
    assert text.index("WARNING: 1 BREAKING change") < text.index("Summary:")
    assert "2 nodes to execute (1 BREAKING)" in text
    assert "upstream BREAKING change in feature_group.txn_features" in text


def test_plan_on_the_command_line_and_its_alias(project: Project) -> None:
    add_ip_feature(project)
    for words in (["plan", "experiment"], ["env", "plan", "experiment"]):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "seeknal_jupyter",
                *words,
                "--project",
                str(project.root),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "NON_BREAKING (1):" in done.stdout
        assert "2 nodes to execute" in done.stdout


def test_plan_html_has_a_row_per_node_and_the_coloured_dag(project: Project) -> None:
    add_ip_feature(project)
    page = environments.plan(project, "experiment")._repr_html_()
    assert page.count("<tr><td><code>") == 15
    assert "new feature: ip_reputation_score" in page
    assert "<svg" in page or "<pre>" in page


def test_production_cannot_be_planned(project: Project) -> None:
    with pytest.raises(UsageError, match="production"):
        environments.plan(project, "prod")
    with pytest.raises(UsageError, match="not allowed"):
        environments.plan(project, "../escape")


def test_classify_node_says_how_a_node_compares(project: Project) -> None:
    add_ip_feature(project)
    line = environments.classify_node(project, "txn_features")
    assert line == (
        "feature_group.txn_features against production: NON_BREAKING "
        "(new feature: ip_reputation_score); 1 downstream node would run as "
        "DEPENDENT"
    )
    assert environments.classify_node(project, "user_risk").endswith(
        "UNCHANGED (same definition)"
    )


# ---------------------------------------------------------------- apply


def test_apply_runs_the_plan_and_writes_nothing_for_unchanged_nodes(
    project: Project,
) -> None:
    add_ip_feature(project)
    plan = environments.plan(project, "experiment")
    before = files(project.target)
    prod_export = (project.root / PROD_EXPORT).read_bytes()

    result = environments.apply(project, "experiment", parallel=True)

    assert isinstance(result, ApplyResult)
    assert {n for n, s in result.statuses().items() if s == "success"} == {
        TXN,
        TRAINING,
    }
    assert result.count("cached") == 13 and len(result.from_production) == 13
    assert "2 executed, 13 cached (from production)" in result.headline()
    after = files(project.target)
    assert not set(before) - set(after)
    changed = {k for k in before if k in after and before[k] != after[k]}
    assert changed <= {"environments/experiment/env.json"}
    added = sorted(set(after) - set(before))
    generation = os.readlink(project.target / "environments/experiment/cache")
    generation = Path(generation).name
    fps = plan.fingerprints
    assert added == sorted(
        [
            "environments/experiment/cache",
            "environments/experiment/exports",
            f"gens/{generation}/exports/training_data.parquet",
            f"gens/{generation}/exposure/training_data.parquet",
            f"gens/{generation}/feature_group/txn_features.parquet",
            f"gens/{generation}/state.json",
            f"snapshots/exposure/training_data/{fps[TRAINING]}.export.parquet",
            f"snapshots/exposure/training_data/{fps[TRAINING]}.parquet",
            f"snapshots/feature_group/txn_features/{fps[TXN]}.parquet",
        ]
    )
    assert after["environments/experiment/exports"] == ("link", "cache/exports")
    assert (project.root / PROD_EXPORT).read_bytes() == prod_export
    assert "ip_reputation_score" not in columns(project.root / PROD_EXPORT)

    env_cache = project.target / "environments/experiment/cache"
    built = env_cache / "feature_group/txn_features.parquet"
    assert columns(built)[-1] == "ip_reputation_score"
    assert not (env_cache / "source").exists()
    enriched = project.output_path("txn_enriched", "experiment")
    assert enriched == project.output_path("txn_enriched", PRODUCTION)
    same = query(
        f"SELECT count(*) FROM read_parquet('{built}') f "
        f"JOIN read_parquet('{enriched}') e USING (transaction_id) "
        "WHERE f.ip_reputation_score IS NOT DISTINCT FROM e.ip_reputation_score"
    )
    assert same == [(10_000,)]
    exported = project.target / "environments/experiment/exports/training_data.parquet"
    assert count(exported) == 10_000 and "ip_reputation_score" in columns(exported)


def test_apply_again_keeps_what_it_built(project: Project) -> None:
    add_ip_feature(project)
    environments.plan(project, "experiment")
    environments.apply(project, "experiment")
    again = environments.apply(project, "experiment")
    assert isinstance(again, ApplyResult)
    assert again.count("success") == 0 and again.count("cached") == 15
    assert "0 executed, 2 cached here, 13 cached (from production)" in again.headline()


def test_apply_dry_run_lists_the_plan_without_writing(project: Project) -> None:
    add_ip_feature(project)
    environments.plan(project, "experiment")
    before = files(project.target)
    shown = environments.apply(project, "experiment", dry_run=True)
    assert isinstance(shown, ExecutionPlan)
    assert shown.to_run == [TXN, TRAINING] and len(shown.cached) == 13
    after = files(project.target)
    assert set(after) - set(before) == {"environments/experiment/accessed"}
    assert {k: v for k, v in after.items() if k in before} == before


def test_apply_refuses_a_plan_the_project_no_longer_matches(project: Project) -> None:
    add_ip_feature(project)
    environments.plan(project, "experiment")
    edit(
        project, "  txn_amount:\n    dtype: float", "  txn_amount:\n    dtype: integer"
    )
    with pytest.raises(UsageError, match="re-plan with: seeknal plan experiment"):
        environments.apply(project, "experiment")
    assert not (project.target / "environments/experiment/cache").exists()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "seeknal_jupyter",
            "run",
            "--env",
            "experiment",
            "--project",
            str(project.root),
        ],
        capture_output=True,
        check=False,
        text=True,
    )
    assert done.returncode == cli.EXIT_USAGE
    assert "the project changed since 'seeknal plan experiment'" in done.stderr


def test_apply_refuses_when_production_changed_since_the_plan(project: Project) -> None:
    add_ip_feature(project)
    environments.plan(project, "experiment")
    project.run()
    with pytest.raises(UsageError, match="production changed since"):
        environments.apply(project, "experiment")


def test_apply_without_a_plan_says_how_to_make_one(project: Project) -> None:
    with pytest.raises(UsageError, match="seeknal plan nowhere"):
        environments.apply(project, "nowhere")


def test_apply_on_the_command_line_prints_the_summary_once(project: Project) -> None:
    add_ip_feature(project)
    environments.plan(project, "experiment")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "seeknal_jupyter",
            "env",
            "apply",
            "experiment",
            "--parallel",
            "--project",
            str(project.root),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.count("Environment 'experiment' applied: 2 executed") == 1
    assert "from production: 13" in done.stdout


def test_a_failing_apply_raises_and_leaves_production_alone(project: Project) -> None:
    edit(
        project,
        "    f.is_fraud\n",
        "    f.is_fraud,\n    CAST(f.channel AS INTEGER) AS channel_code\n",
        "seeknal/exposures/15_exposure_training_data.yml",
    )
    plan = environments.plan(project, "failing")
    assert plan.classes()[TRAINING] == "NON_BREAKING" and plan.to_execute == [TRAINING]
    before = files(project.target)
    with pytest.raises(RunFailed) as raised:
        environments.apply(project, "failing")
    result = raised.value.result
    assert isinstance(result, ApplyResult)
    assert result.statuses()[TRAINING] == "failed"
    assert "Environment 'failing' FAILED" in result.headline()
    after = files(project.target)
    assert {k for k in before if before[k] != after.get(k)} <= {
        "environments/failing/env.json"
    }
    check_production(project)


# ---------------------------------------------------------------- the command line


def test_both_parsers_have_diff_and_promote() -> None:
    for notebook in (True, False):
        args = cli.parse("diff txn_features --env experiment", notebook=notebook)
        assert (args.command, args.node, args.env) == (
            "diff",
            "txn_features",
            "experiment",
        )
    args = cli.parse("promote dev staging")
    assert (args.source, args.target) == ("dev", "staging")
    assert cli.parse("env promote dev").target == "prod"
    args = cli.parse("env apply experiment --parallel --max-workers 3")
    assert (args.env_command, args.env, args.max_workers) == ("apply", "experiment", 3)


@pytest.mark.parametrize("words", [["plan", "--help"], ["run", "--help"]])
def test_help_shows_the_environment_options(
    words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        cli.parse(words)
    assert "ENV" in capsys.readouterr().out


# ---------------------------------------------------------------- plan after a re-plan


def test_apply_refuses_metadata_edits_made_after_the_plan(project: Project) -> None:
    add_ip_feature(project)
    environments.plan(project, "experiment")
    edit(project, "owner: fraud-team", "owner: risk-team")
    message = (
        r"the project changed since 'seeknal plan experiment' \(1 node changed, "
        r"first feature_group.txn_features: owner changed\); re-plan with: "
        r"seeknal plan experiment"
    )
    with pytest.raises(UsageError, match=message):
        environments.apply(project, "experiment")
    with pytest.raises(UsageError, match=message):
        environments.apply(project, "experiment", dry_run=True)
    assert not (project.target / "environments/experiment/cache").exists()
    environments.plan(project, "experiment")
    environments.apply(project, "experiment")
    promote(project, "experiment")
    entry = project.store.load_state(PRODUCTION).entries[TXN]
    assert entry.node["spec"]["owner"] == "risk-team"


def test_formatting_only_edits_after_the_plan_are_no_change(project: Project) -> None:
    add_ip_feature(project)
    environments.plan(project, "experiment")
    edit(project, "e.amount AS txn_amount,", "e.amount   AS txn_amount, -- the amount")
    result = environments.apply(project, "experiment")
    assert isinstance(result, ApplyResult) and result.count("success") == 2


# ---------------------------------------------------------------- stale production


def scale_amounts(project: Project, factor: int) -> float:
    """Multiply every transaction amount in the CSV; returns the new total."""
    csv = project.root / "data/transactions.csv"
    scaled = csv.with_name("scaled.csv")
    query(
        f"COPY (SELECT * REPLACE (amount * {factor} AS amount) FROM read_csv('{csv}')) "
        f"TO '{scaled}' (HEADER)"
    )
    scaled.replace(csv)
    total = query(f"SELECT sum(amount) FROM read_csv('{csv}')")[0][0]
    assert isinstance(total, float)
    return total


def txn_amount_total(path: Path) -> float:
    total = query(f"SELECT sum(txn_amount) FROM read_parquet('{path}')")[0][0]
    assert isinstance(total, float)
    return total


STALE = [
    "source.transactions",
    "transform.txn_enriched",
    "transform.card_velocity",
    "transform.alert_features",
    "feature_group.user_risk",
]


def test_nodes_stale_in_production_run_in_the_environment(project: Project) -> None:
    old_total = txn_amount_total(project.output_path("txn_features"))
    total = scale_amounts(project, 10)
    add_ip_feature(project)

    plan = environments.plan(project, "experiment")

    downstream = (
        "out of date in production: the data of source.transactions changed since "
        "production ran"
    )
    assert plan.stale == {
        "source.transactions": (
            "out of date in production: its data file changed since production ran"
        ),
        **{n: downstream for n in STALE[1:]},
    }
    assert {plan.classes()[n] for n in STALE} == {"UNCHANGED"}
    assert plan.to_execute == [n for n in plan.changes if n in {*STALE, TXN, TRAINING}]
    text = str(plan)
    assert "Out of date in production, run here too (5):" in text
    assert (
        "  - source.transactions: out of date in production: its data file changed "
        "since production ran\n"
    ) in text
    assert f"  - transform.card_velocity: {downstream}\n" in text
    assert "((" not in text and "))" not in text
    assert "7 nodes to execute, 8 read from production; added 0, removed 0" in text
    assert text.count("yes") == 0 and plan._repr_html_().count("<td>yes</td>") == 7

    result = environments.apply(project, "experiment")
    assert isinstance(result, ApplyResult)
    assert {n for n, s in result.statuses().items() if s == "success"} == {
        *STALE,
        TXN,
        TRAINING,
    }
    built = project.output_path("txn_features", "experiment")
    assert txn_amount_total(built) == pytest.approx(total)
    promote(project, "experiment")

    production = project.output_path("txn_features")
    assert txn_amount_total(production) == pytest.approx(total)
    assert txn_amount_total(production) == pytest.approx(10 * old_total)
    after = project.run()
    assert after.count("success") == 0 and after.count("cached") == 15
    assert environments.plan(project, "next").to_execute == []


def test_a_partial_apply_on_stale_inputs_does_not_pass_for_the_plan(
    project: Project,
) -> None:
    scale_amounts(project, 10)
    add_ip_feature(project)
    plan = environments.plan(project, "partial")
    result = environments.apply(project, "partial", nodes=["txn_features"])
    assert isinstance(result, ApplyResult) and result.count("success") == 1
    entry = project.store.load_state("partial").entries[TXN]
    assert entry.fingerprint != plan.fingerprints[TXN]
    with pytest.raises(UsageError, match="'partial' is not applied"):
        promote(project, "partial")


def test_the_stale_reason_names_the_source_whose_data_changed(
    project: Project,
) -> None:
    cards = project.root / "data/card_data.csv"
    os.utime(cards, (1e9, 1e9))
    plan = environments.plan(project, "cards")
    reason = (
        "out of date in production: the data of source.card_data changed since "
        "production ran"
    )
    assert plan.stale == {
        "source.card_data": (
            "out of date in production: its data file changed since production ran"
        ),
        "transform.card_velocity": reason,
        "feature_group.user_risk": reason,
        TRAINING: reason,
    }


# ---------------------------------------------------------------- exposure files


def test_a_production_run_rebuilds_a_damaged_exposure_file(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    export = project.root / PROD_EXPORT
    entry = project.store.load_state(PRODUCTION).entries[TRAINING]
    assert entry.export is not None and entry.export.path == PROD_EXPORT
    kept = project.target / entry.export.file
    assert kept.stat().st_size == entry.export.size
    with open(export, "r+b") as handle:  # through the link: another tool writes
        handle.truncate(100)

    healed = project.run()

    assert {n for n, s in healed.statuses().items() if s != "cached"} == {TRAINING}
    assert f"{TRAINING}: its file target/{entry.export.file} has 100 bytes" in (
        caplog.text
    )
    assert count(export) == 10_000
    assert same_content(export, project.target / "cache/exposure/training_data.parquet")
    assert project.run().count("cached") == 15


def test_an_exposure_path_with_dots_does_not_reach_production_exports(
    project: Project,
) -> None:
    export = project.root / PROD_EXPORT
    before = hashlib.sha256(export.read_bytes()).hexdigest()
    exposure = "seeknal/exposures/15_exposure_training_data.yml"
    edit(
        project,
        "path: target/exports/training_data.parquet",
        "path: ../../exports/training_data.parquet",
        exposure,
    )
    edit(project, "    f.is_fraud\n", "    f.is_fraud, 42 AS marker\n", exposure)
    environments.plan(project, "escape")

    environments.apply(project, "escape")

    assert hashlib.sha256(export.read_bytes()).hexdigest() == before
    outside = Path(
        os.path.normpath(project.root / "../../exports/training_data.parquet")
    )
    assert not outside.exists()
    written = (
        project.target
        / "environments/escape/exports/external"
        / outside.relative_to(outside.anchor)
    )
    assert columns(written)[-1] == "marker" and count(written) == 10_000


# ---------------------------------------------------------------- snapshots


RANDOM_NODES = """\
kind: source
name: base
source: csv
table: data/base.csv
---
kind: transform
name: noisy
inputs: [{ref: source.base}]
transform: SELECT id, random() AS r FROM source.base
"""


@pytest.fixture()
def random_project(tmp_path: Path) -> Project:
    root = tmp_path / "noisy"
    (root / "seeknal").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data/base.csv").write_text("id\n" + "\n".join(map(str, range(50))) + "\n")
    (root / "seeknal/nodes.yml").write_text(RANDOM_NODES)
    project = Project(root)
    project.run()
    return project


def values(path: Path) -> list[tuple[object, ...]]:
    return query(f"SELECT id, r FROM read_parquet('{path}') ORDER BY id")


def snapshot_files(project: Project) -> list[Path]:
    return sorted((project.target / "snapshots").rglob("*.parquet"))


def test_a_full_apply_never_changes_a_snapshot_production_uses(
    random_project: Project,
) -> None:
    project = random_project
    production = project.output_path("noisy")
    identity = (production.stat().st_ino, production.stat().st_mtime_ns)
    before = values(production)
    environments.plan(project, "again")

    result = environments.apply(project, "again", full=True)

    assert isinstance(result, ApplyResult) and result.count("success") == 2
    assert project.output_path("noisy") == production
    assert (production.stat().st_ino, production.stat().st_mtime_ns) == identity
    assert values(project.target / "cache/transform/noisy.parquet") == before
    rebuilt = project.output_path("noisy", "again")
    assert rebuilt != production and rebuilt.parent == production.parent
    assert rebuilt.name.startswith(production.stem + "-")
    assert values(rebuilt) != before
    promote(project, "again")
    assert values(project.target / "cache/transform/noisy.parquet") == values(rebuilt)
    assert project.run().count("cached") == 2


def test_full_runs_keep_the_snapshot_count_bounded(random_project: Project) -> None:
    project = random_project
    counts = []
    for _ in range(3):
        project.run(full=True)
        counts.append(len(snapshot_files(project)))
    assert counts == [4, 4, 4]
    live = {
        project.target / e.snapshot
        for e in project.store.load_state(PRODUCTION).entries.values()
    }
    assert live < set(snapshot_files(project))
    environments.plan(project, "dev")
    for _ in range(3):
        environments.apply(project, "dev", full=True)
    assert len(snapshot_files(project)) == 6  # current and replaced generation
    delete(project, "dev")
    assert set(snapshot_files(project)) == live
    assert project.run().count("cached") == 2


# ---------------------------------------------------------------- production's name


def test_production_answers_to_prod_and_production(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    add_ip_feature(project)
    plan = applied(project, "dev")

    result = promote(project, "dev", "PRODUCTION")

    assert result.target == PRODUCTION
    assert str(result).startswith("Promoted 'dev' to production: 2 outputs")
    assert check_production(project)[TXN] == plan.fingerprints[TXN]
    assert os.listdir(project.target / "environments") == ["dev"]
    listing = list_environments(project)
    assert listing.names() == ["dev"]
    assert "promoted to production" in str(listing)
    for name in ("prod", "production", "PROD", "Production"):
        shown = project.show("txn_features", env=name, limit=3)
        assert list(shown.columns)[-1] == "ip_reputation_score"
        with pytest.raises(UsageError, match=f"'{name}' is production"):
            environments.plan(project, name)
        with pytest.raises(UsageError, match=f"'{name}' is production"):
            delete(project, name)
        with pytest.raises(UsageError, match="diff compares an environment with"):
            diff(project, "txn_features", name)
        with pytest.raises(UsageError, match=f"'{name}' is production"):
            promote(project, name, "dev")
        classes = environments.load_plan(project, name).classes()
        assert set(classes.values()) == {"UNCHANGED"}
        assert cli.main(["run", "--env", name, "--project", str(project.root)]) == 0
        assert (
            "Run succeeded: 0 executed, 15 cached of 15 nodes"
            in capsys.readouterr().out
        )
    assert os.listdir(project.target / "environments") == ["dev"]


def test_a_name_differing_from_an_environment_only_by_case_is_refused(
    project: Project,
) -> None:
    add_ip_feature(project)
    applied(project, "dev")
    calls: dict[str, list[Callable[[], object]]] = {
        "Dev": [
            lambda: environments.plan(project, "Dev"),
            lambda: environments.apply(project, "Dev"),
            lambda: promote(project, "Dev"),
            lambda: promote(project, "dev", "Dev"),
            lambda: delete(project, "Dev"),
        ],
        "DEV": [lambda: diff(project, "txn_features", "DEV")],
    }
    for name, tries in calls.items():
        for call in tries:
            with pytest.raises(UsageError) as raised:
                call()
            assert str(raised.value) == (
                f"environment '{name}' differs from the existing 'dev' only by case; "
                "use 'dev' (file systems may not tell the two apart)"
            )
    assert os.listdir(project.target / "environments") == ["dev"]


def test_reading_an_environment_notes_its_last_access(project: Project) -> None:
    add_ip_feature(project)
    applied(project, "experiment")
    record = project.target / "environments/experiment/env.json"
    body = json.loads(record.read_text())
    record.write_text(json.dumps({**body, "last_accessed": 1_000_000_000.0}))

    def accessed() -> float:
        last = list_environments(project).row("experiment").last_accessed
        assert last is not None
        return last

    assert accessed() == 1_000_000_000.0
    project.show("txn_features", env="experiment")
    first = accessed()
    assert first > 1_000_000_000.0
    os.utime(project.target / "environments/experiment/accessed", (1e9, 1e9))
    environments.apply(project, "experiment", dry_run=True)
    assert accessed() > 1_000_000_000.0


def test_unknown_environments_are_one_line_errors(project: Project) -> None:
    add_ip_feature(project)
    applied(project, "experiment")
    for call in (
        lambda: diff(project, "txn_features", "nope"),
        lambda: project.show("txn_features", env="nope"),
        lambda: delete(project, "nope"),
    ):
        with pytest.raises(UsageError) as raised:
            call()
        assert str(raised.value) == "no environment 'nope' (environments: experiment)"


# ---------------------------------------------------------------- interrupted applies


def cancel_after_first_build() -> tuple[threading.Event, Reporter]:
    """A cancel event and a reporter that sets it once a node has been built."""
    cancel = threading.Event()

    class Canceller:
        def handle(self, event: Event) -> None:
            if isinstance(event, NodeFinished) and event.status == "success":
                cancel.set()

        def tick(self) -> None:
            return None

    return cancel, Canceller()


def test_an_interrupted_full_apply_keeps_every_earlier_output(
    project: Project,
) -> None:
    add_ip_feature(project)
    applied(project, "dev")
    promote(project, "dev", "staging")
    before = {
        n: e.snapshot for n, e in project.store.load_state("staging").entries.items()
    }
    assert sorted(before) == [TRAINING, TXN]
    cancel, canceller = cancel_after_first_build()

    with pytest.raises(RunFailed) as raised:
        environments.apply(
            project, "staging", full=True, reporter=canceller, cancel=cancel
        )

    result = raised.value.result
    built = {n for n, s in result.statuses().items() if s == "success"}
    assert len(built) == 1 and result.count("cancelled") >= 1
    state = project.store.load_state("staging")
    assert set(state.entries) == {*before, *built}
    assert {n: state.entries[n].snapshot for n in before} == before
    cache = project.target / "environments/staging/cache"
    assert "ip_reputation_score" in columns(
        cache / "feature_group/txn_features.parquet"
    )
    assert count(cache / "exposure/training_data.parquet") == 10_000
    assert list_environments(project).row("staging").status == "applied"

    resumed = environments.apply(project, "staging", full=True)

    assert isinstance(resumed, ApplyResult) and resumed.count("success") == 15
    assert set(project.store.load_state("staging").entries) == set(
        project.store.load_state(PRODUCTION).entries
    )


DYING_APPLY = """
import os, sys
from seeknal_jupyter import environments
from seeknal_jupyter.project import Project
from seeknal_jupyter.store import Store

root, env, entries = sys.argv[1:4]
save = Store.save_state

def dying(store, generation, state):
    if len(state.entries) >= int(entries):
        print("dying", sorted(state.entries), flush=True)
        os._exit(9)
    save(store, generation, state)

Store.save_state = dying
environments.apply(Project(root), env, full=True)
"""


def test_a_build_killed_before_its_state_is_saved_is_not_visible(
    project: Project,
) -> None:
    add_ip_feature(project)
    applied(project, "dev")
    promote(project, "dev", "staging")
    seeded = project.store.load_state("staging").entries

    done = subprocess.run(
        [sys.executable, "-c", DYING_APPLY, str(project.root), "staging", "3"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 9, done.stderr
    generation = project.store.generation("staging")
    assert generation is not None
    linked = sorted(
        p.relative_to(generation).as_posix() for p in generation.rglob("*.parquet")
    )
    assert linked == [
        "exports/training_data.parquet",
        "exposure/training_data.parquet",
        "feature_group/txn_features.parquet",
    ]
    state = project.store.load_state("staging")
    assert state.entries == seeded
    unlinked = [
        p
        for p in (project.target / "snapshots/source").rglob("*.parquet")
        if not any(p.samefile(q) for q in generation.rglob("*.parquet"))
        and str(p.relative_to(project.target))
        not in {
            e.snapshot for e in project.store.load_state(PRODUCTION).entries.values()
        }
    ]
    assert len(unlinked) == 1  # built, never recorded: collected by the next writer

    resumed = environments.apply(project, "staging", full=True)

    assert isinstance(resumed, ApplyResult) and resumed.count("success") == 15
    assert not any(p.exists() for p in unlinked)


# ---------------------------------------------------------------- partial applies


def test_a_partial_apply_says_what_is_still_to_build(project: Project) -> None:
    add_ip_feature(project)
    environments.plan(project, "partial")

    first = environments.apply(project, "partial", nodes=["training_data"])

    assert isinstance(first, ApplyResult)
    assert first.unbuilt == [TXN, TRAINING]
    assert TXN not in first.from_production and len(first.from_production) == 13
    assert TXN not in first.nodes
    assert first.headline().startswith(
        "Environment 'partial' partly applied: 1 executed, 13 cached (from "
        "production) of 14 nodes in "
    )
    assert (
        "; 2 planned nodes still to build (first feature_group.txn_features): "
        "seeknal run --env partial; outputs in target/environments/partial/cache"
    ) in first.headline()
    assert list_environments(project).row("partial").status == "planned"

    second = environments.apply(project, "partial", nodes=["txn_features"])

    assert isinstance(second, ApplyResult) and second.unbuilt == [TRAINING]
    assert "1 planned node still to build (first exposure.training_data)" in (
        second.headline()
    )
    assert list_environments(project).row("partial").status == "planned"

    last = environments.apply(project, "partial")

    assert isinstance(last, ApplyResult) and last.unbuilt == []
    assert {n for n, s in last.statuses().items() if s == "success"} == {TRAINING}
    assert last.headline().startswith(
        "Environment 'partial' applied: 1 executed, 1 cached here, 13 cached (from "
        "production) of 15 nodes"
    )
    assert list_environments(project).row("partial").status == "applied"


# ---------------------------------------------------------------- damaged snapshots


def test_a_truncated_snapshot_is_not_cached(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    entry = project.store.load_state(PRODUCTION).entries["transform.txn_enriched"]
    snapshot = project.target / entry.snapshot
    assert snapshot.stat().st_size == entry.size
    with open(snapshot, "r+b") as handle:
        handle.truncate(entry.size // 2)

    plan = project.execution_plan()

    assert plan.to_run == ["transform.txn_enriched"]
    assert plan.reasons["transform.txn_enriched"] == (
        f"its file target/{entry.snapshot} has {entry.size // 2:,} bytes, "
        f"{entry.size:,} were written"
    )
    result = project.run()
    assert {n for n, s in result.statuses().items() if s != "cached"} == {
        "transform.txn_enriched"
    }
    assert "transform.txn_enriched: its file target/" in caplog.text
    assert "it will be built again" in caplog.text
    assert count(project.output_path("txn_enriched")) == 10_000
    assert project.run().count("cached") == 15
