"""Tests for environments on the fraud example: plan, apply, promote, list, delete, diff.

Everything runs on real files with DuckDB; promotes that must survive a crash or a
rival run in real subprocesses, killed with SIGKILL.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
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
from seeknal_jupyter.events import Event, NodeFinished, Reporter
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
    """Every production output opens with its recorded rows, and each exposure's
    ``params.path`` shows the exposure file production's state records; returns
    fingerprints."""
    store = Store(project.target)
    state = store.load_state(PRODUCTION)
    generation = store.generation(PRODUCTION)
    assert generation is not None and generation.is_dir()
    linked = {
        p.relative_to(generation).as_posix() for p in generation.rglob("*.parquet")
    }
    expected = {f"{n.replace('.', '/', 1)}.parquet" for n in state.entries}
    expected |= {
        f"exports/{e.export.place}" for e in state.entries.values() if e.export
    }
    assert linked == expected
    for node_id, entry in state.entries.items():
        kind, name = node_id.split(".", 1)
        link = project.target / "cache" / kind / f"{name}.parquet"
        assert os.path.samefile(link, project.target / entry.snapshot)
        assert count(link) == entry.rows
        if entry.export is not None:
            shown = project.root / entry.export.path
            assert shown.is_symlink()
            assert os.path.samefile(shown, project.target / entry.export.file)
            assert count(shown) == entry.rows
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
    with pytest.raises(
        UsageError, match="production changed since 'seeknal plan second'"
    ):
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
    project: Project,
    source: str,
    pause_at: str,
    seconds: float = 120,
    target: str = PRODUCTION,
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(project.root),
            source,
            target,
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


def kill_promote_at(
    project: Project, source: str, step: str, target: str = PRODUCTION
) -> None:
    child = promoting_child(project, source, step, target=target)
    assert wait_for_step(child, step)[-1] == step
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL


def same_content(a: Path, b: Path) -> bool:
    """Same columns in the same order and the same rows (as multisets)."""
    if columns(a) != columns(b):
        return False
    differing = query(
        f"SELECT (SELECT count(*) FROM (SELECT * FROM read_parquet('{a}') EXCEPT ALL "
        f"SELECT * FROM read_parquet('{b}'))), (SELECT count(*) FROM (SELECT * FROM "
        f"read_parquet('{b}') EXCEPT ALL SELECT * FROM read_parquet('{a}')))"
    )
    return differing == [(0, 0)]


def after_step(step: str, reached: str) -> bool:
    return PROMOTE_STEPS.index(step) >= PROMOTE_STEPS.index(reached)


@pytest.mark.parametrize("step", PROMOTE_STEPS)
def test_promote_killed_at_each_step_leaves_production_old_or_new(
    project: Project, step: str
) -> None:
    add_ip_feature(project)
    plan = applied(project, "experiment")
    old = check_production(project)
    new = {**old, TXN: plan.fingerprints[TXN], TRAINING: plan.fingerprints[TRAINING]}
    export = project.root / PROD_EXPORT
    cached_training = project.target / "cache/exposure/training_data.parquet"

    kill_promote_at(project, "experiment", step)

    after = check_production(project)  # params.path shows the state's file
    committed = after_step(step, "pointed")
    assert after == (new if committed else old)
    assert count(export) == 10_000
    assert ("ip_reputation_score" in columns(export)) == committed
    assert same_content(export, cached_training)
    listed = environments.list_environments(project).row("experiment")
    assert (listed.status, listed.promoted_to) == (
        ("promoted", PRODUCTION) if committed else ("applied", None)
    )
    if committed:
        assert project.run().count("cached") == 15
        with pytest.raises(
            UsageError, match="'experiment' is already promoted to production"
        ):
            environments.promote(project, "experiment")
    else:
        finished = environments.promote(project, "experiment")
        assert check_production(project) == new
        assert finished.linked == 15
        assert "ip_reputation_score" in columns(export)
        assert same_content(export, cached_training)
        assert project.run().count("cached") == 15
    assert not list(project.target.rglob("*.partial"))
    assert len(list((project.target / "gens").iterdir())) <= 3


@pytest.mark.parametrize("step", PROMOTE_STEPS)
def test_promote_to_staging_killed_at_each_step_leaves_staging_old_or_new(
    project: Project, step: str
) -> None:
    remove_risk_feature(project)
    staging_plan = applied(project, "staging")
    staging_old = {
        n: e.fingerprint for n, e in project.store.load_state("staging").entries.items()
    }
    (project.root / FEATURES_FILE).write_text(
        (project.root / FEATURES_FILE).read_text() + RISK_FEATURE + NEW_FEATURE
    )
    dev_plan = applied(project, "dev")
    dev = {n: e.fingerprint for n, e in project.store.load_state("dev").entries.items()}
    assert staging_old.keys() == dev.keys() == {TXN, TRAINING}
    assert staging_old[TXN] != dev[TXN]
    production = check_production(project)

    exported = project.target / "environments/staging/exports/training_data.parquet"
    staged = (
        project.target / "environments/staging/cache/exposure/training_data.parquet"
    )
    assert "ip_reputation_score" not in columns(exported)

    kill_promote_at(project, "dev", step, target="staging")

    def staging() -> tuple[str, dict[str, str]]:
        state = project.store.load_state("staging")
        fps = {n: e.fingerprint for n, e in state.entries.items()}
        return environments.load_plan(project, "staging").plan_id, fps

    committed = after_step(step, "pointed")
    expected = (
        (dev_plan.plan_id, dev) if committed else (staging_plan.plan_id, staging_old)
    )
    assert staging() == expected
    assert ("ip_reputation_score" in columns(exported)) == committed
    assert same_content(exported, staged)
    assert check_production(project) == production
    environments.plan(project, "bystander")  # the next writer settles the plan
    assert staging() == expected
    assert not (project.target / "environments/staging/plan.pending.json").exists()
    saved = json.loads((project.target / "environments/staging/plan.json").read_text())
    assert saved["id"] == expected[0] and saved["env"] == "staging"
    if committed:
        assert environments.list_environments(project).row("dev").promoted_to == (
            "staging"
        )
        with pytest.raises(UsageError, match="'dev' is already promoted to 'staging'"):
            environments.promote(project, "dev", "staging")
    else:
        environments.promote(project, "dev", "staging")
        assert staging() == (dev_plan.plan_id, dev)
    again = environments.apply(project, "staging")
    assert isinstance(again, ApplyResult) and again.count("success") == 0
    assert "ip_reputation_score" in columns(exported)
    assert same_content(exported, staged)
    assert check_production(project) == production


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
    assert "seeknal promote first production" in rival.stderr
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
    assert "breaking-test" in text and "promoted to production" in text
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
    held = project.store.load_state("experiment").entries.values()
    sizes = sum((project.target / f).stat().st_size for e in held for f in e.files())
    result = environments.delete(project, "experiment")
    assert (result.own, result.shared, result.others) == (2, 0, 0)
    assert result.own_bytes == sizes
    assert str(result) == (
        f"Deleted environment 'experiment' and its 2 outputs ({sizes / 1e6:.1f} MB "
        "freed)"
    )
    assert not snapshot.exists()
    assert not (project.target / "environments/experiment").exists()
    assert environments.list_environments(project).rows == []
    assert len(check_production(project)) == 15
    with pytest.raises(UsageError, match="no environment 'experiment'"):
        environments.delete(project, "experiment")
    with pytest.raises(UsageError, match="production"):
        environments.delete(project, "prod")


def test_delete_keeps_outputs_production_took_by_promote(project: Project) -> None:
    old = project.store.load_state(PRODUCTION).entries
    replaced = [project.target / old[n].snapshot for n in (TXN, TRAINING)]
    replaced.append(project.target / old[TRAINING].export.file)  # type: ignore[union-attr]
    freed = sum(p.stat().st_size for p in replaced)
    add_ip_feature(project)
    applied(project, "experiment")
    environments.promote(project, "experiment")
    result = environments.delete(project, "experiment")
    assert (result.own, result.shared, result.others) == (0, 2, 2)
    assert result.others_bytes == freed
    assert str(result) == (
        "Deleted environment 'experiment'; 2 outputs it held stay: production or "
        "another environment uses them; also freed 2 outputs no environment uses "
        f"({freed / 1e6:.1f} MB)"
    )
    assert not any(p.exists() for p in replaced)
    assert check_production(project)
    assert project.run().count("cached") == 15


def test_deleting_an_environment_that_never_ran_says_what_it_freed(
    project: Project,
) -> None:
    add_ip_feature(project)
    applied(project, "experiment")
    environments.promote(project, "experiment")
    environments.plan(project, "never")
    environments.delete(project, "experiment")
    result = environments.delete(project, "never")
    assert (result.own, result.shared, result.others) == (0, 0, 0)
    assert str(result) == "Deleted environment 'never' (it held no outputs of its own)"

    environments.plan(project, "idle")
    project.run(full=True, nodes=["txn_features"])  # production replaces one output
    done = environments.delete(project, "idle")
    assert (done.own, done.shared, done.others) == (0, 0, 1)
    assert str(done).startswith(
        "Deleted environment 'idle' (it held no outputs of its own); also freed 1 "
        "output no environment uses ("
    )


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

    found = environments.diff(project, "txn_features", "integer", limit=3)

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


def test_diff_without_keys_samples_the_rows_found_on_one_side(
    project: Project,
) -> None:
    edit(
        project,
        "    f.is_fraud\n",
        "    CAST(f.is_fraud AS INTEGER) * 2 AS is_fraud\n",
        "seeknal/exposures/15_exposure_training_data.yml",
    )
    applied(project, "retyped")
    frauds = query(
        f"SELECT count(*) FROM read_parquet('{project.root / PROD_EXPORT}') "
        "WHERE is_fraud"
    )[0][0]
    assert isinstance(frauds, int) and frauds > 2

    found = environments.diff(project, "training_data", "retyped", limit=2)

    assert found.matched is None
    assert found.type_changes == [("is_fraud", "BOOLEAN", "INTEGER")]
    assert found.compared_as == {"is_fraud": "INTEGER"}
    assert found.rows_only_in_env == found.rows_only_in_production == frauds
    assert list(found.sample["side"]) == ["retyped", "retyped"] + ["production"] * 2
    assert list(found.sample["is_fraud"]) == [2, 2, 1, 1]
    assert "sample of differing rows:\n" in str(found)


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
    environments.promote(project, "experiment")
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
    environments.promote(project, "experiment")

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
        environments.promote(project, "partial")


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
    environments.promote(project, "again")
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
    environments.delete(project, "dev")
    assert set(snapshot_files(project)) == live
    assert project.run().count("cached") == 2


# ---------------------------------------------------------------- production's name


def test_production_answers_to_prod_and_production(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    add_ip_feature(project)
    plan = applied(project, "dev")

    result = environments.promote(project, "dev", "PRODUCTION")

    assert result.target == PRODUCTION
    assert str(result).startswith("Promoted 'dev' to production: 2 outputs")
    assert check_production(project)[TXN] == plan.fingerprints[TXN]
    assert os.listdir(project.target / "environments") == ["dev"]
    listing = environments.list_environments(project)
    assert listing.names() == ["dev"]
    assert "promoted to production" in str(listing)
    for name in ("prod", "production", "PROD", "Production"):
        shown = project.show("txn_features", env=name, limit=3)
        assert list(shown.columns)[-1] == "ip_reputation_score"
        with pytest.raises(UsageError, match=f"'{name}' is production"):
            environments.plan(project, name)
        with pytest.raises(UsageError, match=f"'{name}' is production"):
            environments.delete(project, name)
        with pytest.raises(UsageError, match="diff compares an environment with"):
            environments.diff(project, "txn_features", name)
        with pytest.raises(UsageError, match=f"'{name}' is production"):
            environments.promote(project, name, "dev")
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
            lambda: environments.promote(project, "Dev"),
            lambda: environments.promote(project, "dev", "Dev"),
            lambda: environments.delete(project, "Dev"),
        ],
        "DEV": [lambda: environments.diff(project, "txn_features", "DEV")],
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


def test_promoting_twice_says_it_is_already_promoted(project: Project) -> None:
    add_ip_feature(project)
    applied(project, "experiment")
    environments.promote(project, "experiment")
    with pytest.raises(
        UsageError,
        match=r"'experiment' is already promoted to production \(at \d{4}-\d\d-\d\d ",
    ):
        environments.promote(project, "experiment")


def test_reading_an_environment_notes_its_last_access(project: Project) -> None:
    add_ip_feature(project)
    applied(project, "experiment")
    record = project.target / "environments/experiment/env.json"
    body = json.loads(record.read_text())
    record.write_text(json.dumps({**body, "last_accessed": 1_000_000_000.0}))

    def accessed() -> float:
        last = environments.list_environments(project).row("experiment").last_accessed
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
        lambda: environments.diff(project, "txn_features", "nope"),
        lambda: project.show("txn_features", env="nope"),
        lambda: environments.delete(project, "nope"),
    ):
        with pytest.raises(UsageError) as raised:
            call()
        assert str(raised.value) == "no environment 'nope' (environments: experiment)"


# ---------------------------------------------------------------- statuses


def test_list_says_stale_when_apply_would_refuse_a_metadata_edit(
    project: Project,
) -> None:
    add_ip_feature(project)
    applied(project, "experiment")
    assert environments.list_environments(project).row("experiment").status == (
        "applied"
    )
    edit(project, "owner: fraud-team", "owner: risk-team")

    assert environments.list_environments(project).row("experiment").status == "stale"
    with pytest.raises(UsageError, match="re-plan with: seeknal plan experiment"):
        environments.apply(project, "experiment")


def test_list_says_when_production_changed_after_a_promote(project: Project) -> None:
    add_ip_feature(project)
    applied(project, "experiment")
    environments.promote(project, "experiment")
    assert project.run().count("cached") == 15
    row = environments.list_environments(project).row("experiment")
    assert (row.status_text(), row.target_changed) == ("promoted to production", False)

    project.run(full=True, nodes=["txn_features"])

    listing = environments.list_environments(project)
    row = listing.row("experiment")
    assert row.target_changed
    assert row.status_text() == ("promoted to production; production has changed since")
    assert "promoted to production; production has changed since" in str(listing)


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
    environments.promote(project, "dev", "staging")
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
    assert environments.list_environments(project).row("staging").status == "applied"

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
    environments.promote(project, "dev", "staging")
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
    assert environments.list_environments(project).row("partial").status == "planned"

    second = environments.apply(project, "partial", nodes=["txn_features"])

    assert isinstance(second, ApplyResult) and second.unbuilt == [TRAINING]
    assert "1 planned node still to build (first exposure.training_data)" in (
        second.headline()
    )
    assert environments.list_environments(project).row("partial").status == "planned"

    last = environments.apply(project, "partial")

    assert isinstance(last, ApplyResult) and last.unbuilt == []
    assert {n for n, s in last.statuses().items() if s == "success"} == {TRAINING}
    assert last.headline().startswith(
        "Environment 'partial' applied: 1 executed, 1 cached here, 13 cached (from "
        "production) of 15 nodes"
    )
    assert environments.list_environments(project).row("partial").status == "applied"


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
