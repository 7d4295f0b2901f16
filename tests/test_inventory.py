"""Tests for listing environments with their status, and deleting them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from environment_helpers import (
    TRAINING,
    TXN,
    add_ip_feature,
    applied,
    check_production,
    edit,
    remove_risk_feature,
)

from seeknal_jupyter import environments
from seeknal_jupyter.errors import UsageError
from seeknal_jupyter.inventory import delete, list_environments
from seeknal_jupyter.project import Project
from seeknal_jupyter.promote import promote
from seeknal_jupyter.store import PRODUCTION


def test_list_shows_statuses_and_counts(project: Project) -> None:
    add_ip_feature(project)
    applied(project, "experiment")
    remove_risk_feature(project)
    environments.plan(project, "breaking-test")
    listing = list_environments(project)
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
    assert list_environments(project).row("breaking-test").status == "applied"
    promote(project, "breaking-test")
    text = str(list_environments(project))
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
    result = delete(project, "experiment")
    assert (result.own, result.shared, result.others) == (2, 0, 0)
    assert result.own_bytes == sizes
    assert str(result) == (
        f"Deleted environment 'experiment' and its 2 outputs ({sizes / 1e6:.1f} MB "
        "freed)"
    )
    assert not snapshot.exists()
    assert not (project.target / "environments/experiment").exists()
    assert list_environments(project).rows == []
    assert len(check_production(project)) == 15
    with pytest.raises(UsageError, match="no environment 'experiment'"):
        delete(project, "experiment")
    with pytest.raises(UsageError, match="production"):
        delete(project, "prod")


def test_delete_keeps_outputs_production_took_by_promote(project: Project) -> None:
    old = project.store.load_state(PRODUCTION).entries
    replaced = [project.target / old[n].snapshot for n in (TXN, TRAINING)]
    replaced.append(project.target / old[TRAINING].export.file)  # type: ignore[union-attr]
    freed = sum(p.stat().st_size for p in replaced)
    add_ip_feature(project)
    applied(project, "experiment")
    promote(project, "experiment")
    result = delete(project, "experiment")
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
    promote(project, "experiment")
    environments.plan(project, "never")
    delete(project, "experiment")
    result = delete(project, "never")
    assert (result.own, result.shared, result.others) == (0, 0, 0)
    assert str(result) == "Deleted environment 'never' (it held no outputs of its own)"

    environments.plan(project, "idle")
    project.run(full=True, nodes=["txn_features"])  # production replaces one output
    done = delete(project, "idle")
    assert (done.own, done.shared, done.others) == (0, 0, 1)
    assert str(done).startswith(
        "Deleted environment 'idle' (it held no outputs of its own); also freed 1 "
        "output no environment uses ("
    )


def test_list_in_a_folder_without_a_project_fails_like_the_other_commands(
    tmp_path: Path,
) -> None:
    with pytest.raises(UsageError) as error:
        list_environments(Project(tmp_path))
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

    listing = list_environments(project)

    assert listing.names() == ["experiment"]


def test_list_says_stale_when_apply_would_refuse_a_metadata_edit(
    project: Project,
) -> None:
    add_ip_feature(project)
    applied(project, "experiment")
    assert list_environments(project).row("experiment").status == "applied"
    edit(project, "owner: fraud-team", "owner: risk-team")

    assert list_environments(project).row("experiment").status == "stale"
    with pytest.raises(UsageError, match="re-plan with: seeknal plan experiment"):
        environments.apply(project, "experiment")


def test_list_says_when_production_changed_after_a_promote(project: Project) -> None:
    add_ip_feature(project)
    applied(project, "experiment")
    promote(project, "experiment")
    assert project.run().count("cached") == 15
    row = list_environments(project).row("experiment")
    assert (row.status_text(), row.target_changed) == ("promoted to production", False)

    project.run(full=True, nodes=["txn_features"])

    listing = list_environments(project)
    row = listing.row("experiment")
    assert row.target_changed
    assert row.status_text() == ("promoted to production; production has changed since")
    assert "promoted to production; production has changed since" in str(listing)
