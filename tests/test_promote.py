"""Tests for promote on the fraud example: to production and to another environment.

Everything runs on real files with DuckDB; promotes that must survive a crash or a
rival run in real subprocesses, killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from environment_helpers import (
    FEATURES_FILE,
    NEW_FEATURE,
    PROD_EXPORT,
    RISK_FEATURE,
    TRAINING,
    TXN,
    add_ip_feature,
    applied,
    check_production,
    columns,
    count,
    edit,
    production_fingerprints,
    remove_risk_feature,
    same_content,
)

from seeknal_jupyter import cli, environments
from seeknal_jupyter.changes import ChangeClass
from seeknal_jupyter.environments import ApplyResult
from seeknal_jupyter.errors import UsageError
from seeknal_jupyter.inventory import list_environments
from seeknal_jupyter.project import Project
from seeknal_jupyter.promote import PROMOTE_STEPS, PromoteResult, promote
from seeknal_jupyter.store import PRODUCTION

CHILD = """
import sys, time
from seeknal_jupyter.project import Project
from seeknal_jupyter.promote import promote

root, source, target, pause_at, seconds = sys.argv[1:6]

def step(name):
    print(name, flush=True)
    if name == pause_at:
        time.sleep(float(seconds))

result = promote(Project(root), source, target, on_step=step)
print("promoted", result.generation, flush=True)
"""


def test_promote_links_the_environment_into_production(project: Project) -> None:
    add_ip_feature(project)
    plan = applied(project, "experiment")
    old = production_fingerprints(project)
    unchanged = project.output_path("txn_enriched", PRODUCTION)

    result = promote(project, "experiment")

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
    result = promote(project, "relabel")
    assert result.relabelled == [TXN] and result.promoted == []
    entry = project.store.load_state(PRODUCTION).entries[TXN]
    assert entry.node["spec"]["owner"] == "risk-team"
    assert environments.plan(project, "after").to_execute == []


def test_promote_of_a_removed_node_drops_it_from_production(project: Project) -> None:
    (project.root / "seeknal/exposures/15_exposure_training_data.yml").unlink()
    plan = applied(project, "slim")
    assert plan.classes()[TRAINING] == "REMOVED" and plan.to_execute == []
    result = promote(project, "slim")
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
    promote(project, "first")
    with pytest.raises(
        UsageError, match="production changed since 'seeknal plan second'"
    ):
        promote(project, "second")


def test_promote_refuses_an_environment_that_was_not_applied(project: Project) -> None:
    add_ip_feature(project)
    environments.plan(project, "experiment")
    with pytest.raises(UsageError, match="not applied"):
        promote(project, "experiment")


def test_promote_to_staging_then_to_production(project: Project) -> None:
    add_ip_feature(project)
    plan = applied(project, "dev")
    old = production_fingerprints(project)

    staged = promote(project, "dev", "staging")

    assert staged.target == "staging" and staged.linked == 2
    assert production_fingerprints(project) == old
    staging = project.store.load_state("staging")
    assert sorted(staging.entries) == [TRAINING, TXN]
    assert environments.load_plan(project, "staging").to_execute == [TXN, TRAINING]
    full = environments.apply(project, "staging", full=True, parallel=True)
    assert isinstance(full, ApplyResult) and full.count("success") == 15
    exported = project.target / "environments/staging/exports/training_data.parquet"
    assert "ip_reputation_score" in columns(exported)

    promote(project, "staging")

    new = check_production(project)
    assert new[TXN] == plan.fingerprints[TXN]
    assert set(new) == set(old)
    listing = list_environments(project)
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
    listed = list_environments(project).row("experiment")
    assert (listed.status, listed.promoted_to) == (
        ("promoted", PRODUCTION) if committed else ("applied", None)
    )
    if committed:
        assert project.run().count("cached") == 15
        with pytest.raises(
            UsageError, match="'experiment' is already promoted to production"
        ):
            promote(project, "experiment")
    else:
        finished = promote(project, "experiment")
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
        assert list_environments(project).row("dev").promoted_to == "staging"
        with pytest.raises(UsageError, match="'dev' is already promoted to 'staging'"):
            promote(project, "dev", "staging")
    else:
        promote(project, "dev", "staging")
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
        promote(project, "second")


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


def test_promoting_twice_says_it_is_already_promoted(project: Project) -> None:
    add_ip_feature(project)
    applied(project, "experiment")
    promote(project, "experiment")
    with pytest.raises(
        UsageError,
        match=r"'experiment' is already promoted to production \(at \d{4}-\d\d-\d\d ",
    ):
        promote(project, "experiment")
