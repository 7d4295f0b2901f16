"""Tests for environments on the fraud example: plan, apply, promote, list, delete, diff.

Everything runs on real files with DuckDB; promotes that must survive a crash or a
rival run in real subprocesses, killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from seeknal_jupyter import cli, environments
from seeknal_jupyter.changes import ChangeClass
from seeknal_jupyter.environments import (
    PROMOTE_STEPS,
    ApplyResult,
    EnvPlan,
    PromoteResult,
)
from seeknal_jupyter.errors import ProjectError, RunFailed, UsageError
from seeknal_jupyter.examples import init_example
from seeknal_jupyter.project import ExecutionPlan, Project
from seeknal_jupyter.store import PRODUCTION, Store

FEATURES_FILE = "seeknal/feature_groups/13_feature_group_txn_features.yml"
TXN = "feature_group.txn_features"
TRAINING = "exposure.training_data"
NEW_FEATURE = "  ip_reputation_score:\n    dtype: float\n"
RISK_FEATURE = "  merchant_risk_score:\n    dtype: float\n"
PROD_EXPORT = "target/exports/training_data.parquet"

CHILD = """
import sys, time
from seeknal_jupyter import environments
from seeknal_jupyter.project import Project

root, source, target, pause_at, seconds = sys.argv[1:6]

def step(name):
    print(name, flush=True)
    if name == pause_at:
        time.sleep(float(seconds))

result = environments.promote(Project(root), source, target, on_step=step)
print("promoted", result.generation, flush=True)
"""


@pytest.fixture(scope="session")
def production_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fraud example after one production run (copied for each test)."""
    folder = init_example("fraud-detection", tmp_path_factory.mktemp("base") / "fraud")
    Project(folder).run(parallel=True)
    return folder


@pytest.fixture()
def project(production_project: Path, tmp_path: Path) -> Project:
    folder = tmp_path / "fraud"
    shutil.copytree(production_project, folder, symlinks=True)
    copied = Project(folder)
    assert copied.run().count("cached") == 15  # links the copied outputs again
    return copied


def edit(project: Project, old: str, new: str, file: str = FEATURES_FILE) -> None:
    path = project.root / file
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not once in {file}"
    path.write_text(text.replace(old, new))


def add_ip_feature(project: Project) -> None:
    path = project.root / FEATURES_FILE
    path.write_text(path.read_text() + NEW_FEATURE)


def remove_risk_feature(project: Project) -> None:
    edit(project, RISK_FEATURE, "")


def production_fingerprints(project: Project) -> dict[str, str]:
    state = project.store.load_state(PRODUCTION)
    return {n: e.fingerprint for n, e in state.entries.items()}


def query(sql: str) -> list[tuple[object, ...]]:
    conn = duckdb.connect()
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def columns(path: Path) -> list[str]:
    return [str(r[0]) for r in query(f"DESCRIBE SELECT * FROM read_parquet('{path}')")]


def count(path: Path) -> int:
    rows = query(f"SELECT count(*) FROM read_parquet('{path}')")[0][0]
    assert isinstance(rows, int)
    return rows


def files(target: Path) -> dict[str, tuple[object, ...]]:
    """Every file and link under ``target`` with its identity (no link followed)."""
    found: dict[str, tuple[object, ...]] = {}
    for folder, dirs, names in os.walk(target):
        for name in names + [d for d in dirs if (Path(folder) / d).is_symlink()]:
            path = Path(folder) / name
            key = path.relative_to(target).as_posix()
            if path.is_symlink():
                found[key] = ("link", os.readlink(path))
            else:
                info = path.stat()
                found[key] = (info.st_ino, info.st_size, info.st_mtime_ns)
    return found


def check_production(project: Project) -> dict[str, str]:
    """Every production output opens with its recorded rows; returns fingerprints."""
    store = Store(project.target)
    state = store.load_state(PRODUCTION)
    generation = store.generation(PRODUCTION)
    assert generation is not None and generation.is_dir()
    linked = {
        p.relative_to(generation).as_posix() for p in generation.rglob("*.parquet")
    }
    expected = {f"{n.replace('.', '/', 1)}.parquet" for n in state.entries}
    assert linked == expected
    for node_id, entry in state.entries.items():
        kind, name = node_id.split(".", 1)
        link = project.target / "cache" / kind / f"{name}.parquet"
        assert os.path.samefile(link, project.target / entry.snapshot)
        assert count(link) == entry.rows
    return {n: e.fingerprint for n, e in state.entries.items()}


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
        "(new feature: ip_reputation_score); 1 downstream node(s) would run as "
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
            "environments/experiment/exports/training_data.parquet",
            f"gens/{generation}/exposure/training_data.parquet",
            f"gens/{generation}/feature_group/txn_features.parquet",
            f"gens/{generation}/state.json",
            f"snapshots/exposure/training_data/{fps[TRAINING]}.parquet",
            f"snapshots/feature_group/txn_features/{fps[TXN]}.parquet",
        ]
    )
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
    assert files(project.target) == before


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


# ---------------------------------------------------------------- promote


def applied(project: Project, env: str) -> EnvPlan:
    plan = environments.plan(project, env)
    environments.apply(project, env)
    return plan


def test_promote_links_the_environment_into_production(project: Project) -> None:
    add_ip_feature(project)
    plan = applied(project, "experiment")
    old = production_fingerprints(project)
    unchanged = project.output_path("txn_enriched", PRODUCTION)

    result = environments.promote(project, "experiment")

    assert isinstance(result, PromoteResult)
    assert result.promoted == [TRAINING, TXN] and result.kept == 13
    assert result.linked == 15
    new = check_production(project)
    assert new == {
        **old,
        TXN: plan.fingerprints[TXN],
        TRAINING: plan.fingerprints[TRAINING],
    }
    cache = project.target / "cache"
    assert os.path.samefile(cache / "transform/txn_enriched.parquet", unchanged)
    assert os.path.samefile(
        cache / "feature_group/txn_features.parquet",
        project.target
        / "environments/experiment/cache/feature_group/txn_features.parquet",
    )
    assert "ip_reputation_score" in columns(project.root / PROD_EXPORT)
    assert project.run().count("cached") == 15
    assert environments.plan(project, "next").to_execute == []
    assert "no data copied" in str(result)


def test_promote_of_a_metadata_change_records_the_new_definition(
    project: Project,
) -> None:
    edit(project, "owner: fraud-team", "owner: risk-team")
    plan = applied(project, "relabel")
    assert plan.changes[TXN].change_class == ChangeClass.METADATA
    assert plan.to_execute == []
    result = environments.promote(project, "relabel")
    assert result.relabelled == [TXN] and result.promoted == []
    entry = project.store.load_state(PRODUCTION).entries[TXN]
    assert entry.node["spec"]["owner"] == "risk-team"
    assert environments.plan(project, "after").to_execute == []


def test_promote_of_a_removed_node_drops_it_from_production(project: Project) -> None:
    (project.root / "seeknal/exposures/15_exposure_training_data.yml").unlink()
    plan = applied(project, "slim")
    assert plan.classes()[TRAINING] == "REMOVED" and plan.to_execute == []
    result = environments.promote(project, "slim")
    assert result.removed == [TRAINING]
    assert TRAINING not in check_production(project)


def test_promote_refuses_when_the_target_changed_since_the_plan(
    project: Project,
) -> None:
    add_ip_feature(project)
    applied(project, "first")
    path = project.root / FEATURES_FILE
    text = path.read_text()
    remove_risk_feature(project)
    applied(project, "second")
    path.write_text(text)
    environments.promote(project, "first")
    with pytest.raises(UsageError, match="'prod' changed since 'seeknal plan second'"):
        environments.promote(project, "second")


def test_promote_refuses_an_environment_that_was_not_applied(project: Project) -> None:
    add_ip_feature(project)
    environments.plan(project, "experiment")
    with pytest.raises(UsageError, match="not applied"):
        environments.promote(project, "experiment")


def test_promote_to_staging_then_to_production(project: Project) -> None:
    add_ip_feature(project)
    plan = applied(project, "dev")
    old = production_fingerprints(project)

    staged = environments.promote(project, "dev", "staging")

    assert staged.target == "staging" and staged.linked == 2
    assert production_fingerprints(project) == old
    staging = project.store.load_state("staging")
    assert sorted(staging.entries) == [TRAINING, TXN]
    assert environments.load_plan(project, "staging").to_execute == [TXN, TRAINING]
    full = environments.apply(project, "staging", full=True, parallel=True)
    assert isinstance(full, ApplyResult) and full.count("success") == 15
    exported = project.target / "environments/staging/exports/training_data.parquet"
    assert "ip_reputation_score" in columns(exported)

    environments.promote(project, "staging")

    new = check_production(project)
    assert new[TXN] == plan.fingerprints[TXN]
    assert set(new) == set(old)
    listing = environments.list_environments(project)
    assert listing.row("dev").status == "promoted"
    assert listing.row("dev").promoted_to == "staging"
    assert listing.row("staging").status == "promoted"


def promoting_child(
    project: Project, source: str, pause_at: str, seconds: float = 120
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(project.root),
            source,
            PRODUCTION,
            pause_at,
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_step(child: subprocess.Popen[str], step: str) -> list[str]:
    assert child.stdout is not None and child.stderr is not None
    seen = []
    for line in child.stdout:
        seen.append(line.strip())
        if line.strip() == step:
            return seen
    raise AssertionError(f"child ended before {step}: {seen}, {child.stderr.read()}")


@pytest.mark.parametrize("step", PROMOTE_STEPS)
def test_promote_killed_at_each_step_leaves_production_old_or_new(
    project: Project, step: str
) -> None:
    add_ip_feature(project)
    plan = applied(project, "experiment")
    old = check_production(project)
    new = {**old, TXN: plan.fingerprints[TXN], TRAINING: plan.fingerprints[TRAINING]}

    child = promoting_child(project, "experiment", step)
    assert wait_for_step(child, step)[-1] == step
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL

    after = check_production(project)
    committed = PROMOTE_STEPS.index(step) >= PROMOTE_STEPS.index("pointed")
    assert after == (new if committed else old)
    assert count(project.root / PROD_EXPORT) == 10_000
    if committed:
        assert project.run().count("cached") == 15
        with pytest.raises(UsageError, match="changed since"):
            environments.promote(project, "experiment")
    else:
        finished = environments.promote(project, "experiment")
        assert check_production(project) == new
        assert finished.linked == 15
    assert not list(project.target.rglob("*.partial"))
    assert len(list((project.target / "gens").iterdir())) <= 3


def test_two_promotes_at_once_have_exactly_one_winner(project: Project) -> None:
    add_ip_feature(project)
    first = applied(project, "first")
    remove_risk_feature(project)
    applied(project, "second")

    holder = promoting_child(project, "first", "checked", seconds=2)
    wait_for_step(holder, "checked")
    rival = subprocess.run(
        [
            sys.executable,
            "-m",
            "seeknal_jupyter",
            "promote",
            "second",
            "--project",
            str(project.root),
        ],
        capture_output=True,
        check=False,
        text=True,
    )
    assert holder.wait(timeout=60) == 0
    assert rival.returncode == cli.EXIT_USAGE
    assert "is being written by process" in rival.stderr
    assert "seeknal promote first prod" in rival.stderr
    assert check_production(project)[TXN] == first.fingerprints[TXN]
    with pytest.raises(UsageError, match="changed since"):
        environments.promote(project, "second")


def test_simultaneous_promotes_from_the_command_line(project: Project) -> None:
    add_ip_feature(project)
    plans = {"first": applied(project, "first")}
    remove_risk_feature(project)
    plans["second"] = applied(project, "second")
    children = {
        env: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "seeknal_jupyter",
                "promote",
                env,
                "--project",
                str(project.root),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for env in plans
    }
    codes = {env: child.wait(timeout=60) for env, child in children.items()}
    winners = [env for env, code in codes.items() if code == 0]
    assert len(winners) == 1, codes
    loser = next(env for env in plans if env not in winners)
    assert codes[loser] == cli.EXIT_USAGE
    assert check_production(project)[TXN] == plans[winners[0]].fingerprints[TXN]


# ---------------------------------------------------------------- list, delete, diff


def test_list_shows_statuses_and_counts(project: Project) -> None:
    add_ip_feature(project)
    applied(project, "experiment")
    remove_risk_feature(project)
    environments.plan(project, "breaking-test")
    listing = environments.list_environments(project)
    assert listing.names() == ["experiment", "breaking-test"]
    experiment = listing.row("experiment")
    assert (experiment.status, experiment.to_execute, experiment.outputs) == (
        "stale",
        2,
        2,
    )
    breaking = listing.row("breaking-test")
    assert (breaking.status, breaking.to_execute, breaking.outputs) == (
        "planned",
        2,
        0,
    )
    environments.apply(project, "breaking-test")
    assert environments.list_environments(project).row("breaking-test").status == (
        "applied"
    )
    environments.promote(project, "breaking-test")
    text = str(environments.list_environments(project))
    assert "breaking-test" in text and "promoted to prod" in text
    assert "production holds 15 outputs" in text
    assert experiment.created is not None and experiment.last_accessed is not None
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "seeknal_jupyter",
            "env",
            "list",
            "--project",
            str(project.root),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.splitlines()[0].split() == [
        "name",
        "created",
        "last",
        "accessed",
        "status",
        "to",
        "run",
        "outputs",
    ]


def test_delete_removes_the_environment_and_outputs_no_one_uses(
    project: Project,
) -> None:
    add_ip_feature(project)
    plan = applied(project, "experiment")
    snapshot = (
        project.target
        / f"snapshots/feature_group/txn_features/{plan.fingerprints[TXN]}.parquet"
    )
    assert snapshot.exists()
    result = environments.delete(project, "experiment")
    assert result.snapshots == 2 and result.generations == 1
    assert not snapshot.exists()
    assert not (project.target / "environments/experiment").exists()
    assert environments.list_environments(project).rows == []
    assert len(check_production(project)) == 15
    with pytest.raises(UsageError, match="no environment 'experiment'"):
        environments.delete(project, "experiment")
    with pytest.raises(UsageError, match="production"):
        environments.delete(project, "prod")


def test_delete_keeps_outputs_production_took_by_promote(project: Project) -> None:
    add_ip_feature(project)
    applied(project, "experiment")
    environments.promote(project, "experiment")
    result = environments.delete(project, "experiment")
    assert result.snapshots == 2
    assert check_production(project)
    assert project.run().count("cached") == 15


def test_diff_of_an_added_feature(project: Project) -> None:
    add_ip_feature(project)
    applied(project, "experiment")
    found = environments.diff(project, "txn_features", "experiment")
    assert found.only_in_env == [("ip_reputation_score", "DOUBLE")]
    assert found.only_in_production == [] and found.type_changes == []
    assert (found.env_rows, found.production_rows) == (10_000, 10_000)
    assert (found.rows_only_in_env, found.rows_only_in_production) == (0, 0)
    assert "column ip_reputation_score (DOUBLE) only in experiment" in str(found)
    unchanged = environments.diff(project, "user_risk", "experiment")
    assert unchanged.env_path is None and unchanged.same


def test_diff_of_changed_values_shows_a_sample(project: Project) -> None:
    edit(project, "e.amount AS txn_amount,", "round(e.amount) AS txn_amount,")
    plan = applied(project, "rounded")
    assert plan.changes[TXN].reasons == ["expression of column txn_amount changed"]
    found = environments.diff(project, "txn_features", "rounded", limit=5)
    whole = query(
        "SELECT count(*) FROM read_parquet("
        f"'{project.output_path('txn_features', PRODUCTION)}') "
        "WHERE txn_amount <> round(txn_amount)"
    )[0][0]
    assert isinstance(whole, int) and whole > 0
    assert found.rows_only_in_env == found.rows_only_in_production == whole
    assert list(found.sample["side"]) == ["rounded"] * 5 + ["production"] * 5
    assert "<table" in found._repr_html_()


def test_notebook_parser_has_diff_and_the_shell_has_promote() -> None:
    args = cli.parse("diff txn_features --env experiment", notebook=True)
    assert (args.command, args.node, args.env) == ("diff", "txn_features", "experiment")
    with pytest.raises(UsageError):
        cli.parse("diff txn_features --env experiment")
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


def test_list_in_a_folder_without_a_project_fails_like_the_other_commands(
    tmp_path: Path,
) -> None:
    with pytest.raises(ProjectError) as error:
        environments.list_environments(Project(tmp_path))
    assert f"no seeknal/ folder in {tmp_path.resolve()}" in str(error.value)

    def seeknal(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "seeknal_jupyter", *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
        )

    listed, ran = seeknal("env", "list"), seeknal("run")
    assert (listed.returncode, ran.returncode) == (2, 2)
    assert listed.stderr == ran.stderr
    assert "no seeknal/ folder" in listed.stderr
    assert listed.stdout == ""


def test_list_still_works_when_the_project_does_not_load(project: Project) -> None:
    add_ip_feature(project)
    environments.plan(project, "experiment")
    edit(project, "  ip_reputation_score:\n", "  ip_reputation_score: [\n")

    listing = environments.list_environments(project)

    assert listing.names() == ["experiment"]
