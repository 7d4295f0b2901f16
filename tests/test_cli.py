"""Tests of the `seeknal` command line as a user runs it: real processes, exit
statuses, printed plans, interrupts, and the fraud example end to end."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from seeknal_jupyter.project import Project

SEEKNAL = [sys.executable, "-m", "seeknal_jupyter"]
NODES = """\
kind: source
name: numbers
source: csv
table: data/numbers.csv
---
kind: transform
name: doubled
inputs: [{ref: source.numbers}]
transform: SELECT n * 2 AS n2 FROM numbers
"""
FAILING = """\
---
kind: transform
name: broken
inputs: [{ref: source.numbers}]
transform: SELECT CAST('x' || n AS INTEGER) AS bad FROM numbers
"""
LONG = """\
---
kind: transform
name: long
inputs: [{ref: source.numbers}]
transform: SELECT SUM(r) AS s FROM range(10000000000) AS t(r), numbers
"""


def seeknal(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SEEKNAL, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        check=False,
    )


def write_project(root: Path, nodes: str = NODES) -> Path:
    (root / "seeknal").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data" / "numbers.csv").write_text("n\n1\n2\n3\n")
    (root / "seeknal" / "nodes.yml").write_text(nodes)
    return root


def test_success_exits_0_and_prints_the_summary(tmp_path: Path) -> None:
    root = write_project(tmp_path)

    done = seeknal("run", "--parallel", cwd=root)

    assert done.returncode == 0, done.stderr
    assert "SUCCESS   transform.doubled" in done.stdout
    assert (
        done.stdout.rstrip()
        .splitlines()[-1]
        .startswith("Run succeeded: 2 success of 2 nodes in ")
    )
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--bogus"], "error: seeknal: unrecognized arguments: --bogus"),
        ([], "error: seeknal: the following arguments are required: COMMAND"),
        (["run", "--max-workers", "0"], "error: --max-workers must be 1 or more"),
        (["show", "nope"], "error: no node named 'nope'"),
        (["run", "--project", "/no/such/folder"], "does not exist"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    root = write_project(tmp_path)

    done = seeknal(*args, cwd=root)

    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_validation_error_exits_2_before_anything_runs(tmp_path: Path) -> None:
    root = write_project(tmp_path, NODES.replace("inputs:", "inptus:"))

    done = seeknal("run", cwd=root)

    assert done.returncode == 2
    assert (
        "seeknal/nodes.yml:8: transform.doubled: unknown field 'inptus' "
        "(did you mean 'inputs'?)"
    ) in done.stderr
    assert not (root / "target").exists()


def test_node_failure_exits_1_after_the_summary(tmp_path: Path) -> None:
    root = write_project(tmp_path, NODES + FAILING)

    done = seeknal("run", cwd=root)

    assert done.returncode == 1
    assert "FAILED    transform.broken" in done.stdout
    assert "Could not convert string 'x1' to INT32" in done.stdout
    assert "Run FAILED: 2 success, 1 failed of 3 nodes" in done.stdout
    assert "error: Run FAILED" in done.stderr


def test_fail_fast_flag(tmp_path: Path) -> None:
    source, doubled = NODES.split("---\n")
    root = write_project(tmp_path, source + FAILING + "---\n" + doubled)

    done = seeknal("run", "--fail-fast", cwd=root)

    assert done.returncode == 1
    assert "SKIPPED   transform.doubled" in done.stdout
    assert "not started: --fail-fast after a failure" in done.stdout


def test_plan_prints_and_writes_the_manifest(tmp_path: Path) -> None:
    root = write_project(tmp_path)

    done = seeknal("parse", "--project", str(root))

    assert done.returncode == 0, done.stderr
    assert "Nodes: 2  Edges: 1  Layers: 2" in done.stdout
    manifest = json.loads((root / "target" / "manifest.json").read_text())
    assert manifest["edges"] == [["source.numbers", "transform.doubled"]]


@pytest.mark.parametrize("flag", ["--dry-run", "--show-plan"])
def test_dry_run_and_show_plan_run_nothing(tmp_path: Path, flag: str) -> None:
    root = write_project(tmp_path)

    done = seeknal("run", flag, "--nodes", "+doubled", cwd=root)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "Execution plan (incremental, 1 worker): 2 to run, 0 cached",
        "Layer 1: 1 node(s) (no inputs)",
        "  [run   ] source.numbers",
        "Layer 2: 1 node(s) (after layer 1)",
        "  [run   ] transform.doubled <- source.numbers",
    ]
    assert not (root / "target").exists()


HOLD_LOCK = """
import sys
from pathlib import Path
from seeknal_jupyter.store import Store
with Store(Path(sys.argv[1])).writing("seeknal run"):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_a_locked_project_exits_2_naming_the_holder(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(root / "target")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        done = seeknal("run", cwd=root)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)

    assert done.returncode == 2
    assert f"is being written by process {holder.pid} ('seeknal run'" in done.stderr
    assert seeknal("run", cwd=root).returncode == 0


def test_ctrl_c_cancels_the_run_and_the_next_run_resumes(tmp_path: Path) -> None:
    root = write_project(tmp_path, NODES + LONG)
    run = subprocess.Popen(
        [*SEEKNAL, "run", "--parallel"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert run.stdout is not None and run.stderr is not None
    while "start   transform.long" not in run.stdout.readline():
        assert run.poll() is None
    started = time.monotonic()
    run.send_signal(signal.SIGINT)
    run.wait(30)
    rest, errors = run.stdout.read(), run.stderr.read()

    assert time.monotonic() - started < 10
    assert run.returncode == 130
    assert "CANCELLED transform.long: interrupted while running" in rest, (rest, errors)
    assert "Run cancelled; the next run resumes." in errors
    state = Project(root).store.load_state("prod")
    assert "transform.long" not in state.entries
    assert "source.numbers" in state.entries

    nodes = root / "seeknal" / "nodes.yml"
    nodes.write_text(nodes.read_text().replace("10000000000", "4"))
    done = seeknal("run", cwd=root)
    assert done.returncode == 0, done.stderr
    assert "SUCCESS   transform.long" in done.stdout
    assert "source.numbers" not in done.stdout.split("Running")[1].split("node")[0]


FRAUD_LAYERS = [
    {
        "source.transactions",
        "source.user_profiles",
        "source.device_fingerprints",
        "source.ip_geolocation",
        "source.merchant_data",
        "source.card_data",
        "source.fraud_labels",
        "source.realtime_alerts",
    },
    {
        "transform.txn_enriched",
        "transform.merchant_risk",
        "transform.card_velocity",
        "transform.alert_features",
    },
    {"feature_group.txn_features", "feature_group.user_risk"},
    {"exposure.training_data"},
]
FRAUD_ROWS = {
    "source.transactions": 10_000,
    "source.user_profiles": 5_000,
    "source.device_fingerprints": 8_000,
    "source.ip_geolocation": 3_000,
    "source.merchant_data": 1_500,
    "source.card_data": 6_000,
    "source.fraud_labels": 2_000,
    "source.realtime_alerts": 1_000,
    "transform.txn_enriched": 10_000,
    "transform.merchant_risk": 1_500,
    "transform.card_velocity": 6_000,
    "transform.alert_features": 1_000,
    "feature_group.txn_features": 10_000,
    "feature_group.user_risk": 5_000,
    "exposure.training_data": 10_000,
}


def same_rows(conn: duckdb.DuckDBPyConnection, a: Path, b: Path) -> bool:
    """Whether two Parquet files hold the same rows, in any order."""
    difference = (
        f"(SELECT * FROM read_parquet('{a}') EXCEPT ALL "
        f"SELECT * FROM read_parquet('{b}')) UNION ALL "
        f"(SELECT * FROM read_parquet('{b}') EXCEPT ALL "
        f"SELECT * FROM read_parquet('{a}'))"
    )
    return conn.execute(f"SELECT COUNT(*) FROM ({difference})").fetchone() == (0,)


def test_fraud_example_end_to_end(tmp_path: Path) -> None:
    root = tmp_path / "fraud"

    init = seeknal("init", "--example", "fraud-detection", str(root))
    plan = seeknal("plan", "--project", str(root))
    sequential = seeknal("run", "--project", str(root))

    assert init.returncode == plan.returncode == sequential.returncode == 0
    assert "Nodes: 15  Edges: 16  Layers: 4" in plan.stdout
    manifest = json.loads((root / "target" / "manifest.json").read_text())
    assert len(manifest["nodes"]) == 15 and len(manifest["edges"]) == 16
    assert [set(layer) for layer in manifest["layers"]] == FRAUD_LAYERS
    assert "15 success of 15 nodes" in sequential.stdout
    project = Project(root)
    state = project.store.load_state("prod")
    assert {n: e.rows for n, e in state.entries.items()} == FRAUD_ROWS
    saved = tmp_path / "sequential"
    saved.mkdir()
    for node in FRAUD_ROWS:
        shutil.copy(project.output_path(node), saved / f"{node}.parquet")
    export = root / "target" / "exports" / "training_data.parquet"
    shutil.copy(export, saved / "export.parquet")

    parallel = seeknal("run", "--parallel", "--max-workers", "4", "--full", cwd=root)

    assert parallel.returncode == 0, parallel.stderr
    assert "4 workers" in parallel.stdout
    assert "15 success of 15 nodes" in parallel.stdout
    with duckdb.connect() as conn:
        for node in FRAUD_ROWS:
            assert same_rows(conn, saved / f"{node}.parquet", project.output_path(node))
        assert same_rows(conn, saved / "export.parquet", export)
    again = seeknal("run", "--parallel", cwd=root)
    assert "0 to run, 15 cached" in again.stdout


def test_show_refuses_a_negative_limit_in_one_line(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    assert seeknal("run", cwd=root).returncode == 0

    done = seeknal("show", "doubled", "--limit", "-1", cwd=root)

    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "error: seeknal show: argument --limit: must be 0 or more, got -1"
    )
    assert "Traceback" not in done.stderr
    zero = seeknal("show", "doubled", "--limit", "0", cwd=root)
    assert zero.returncode == 0, zero.stderr


def test_dag_output_writes_the_svg_and_says_so_in_one_line(tmp_path: Path) -> None:
    root = write_project(tmp_path)

    done = seeknal("dag", "--output", "dag.svg", cwd=root)

    assert done.returncode == 0, done.stderr
    assert done.stdout == "Wrote dag.svg (2 nodes)\n"
    assert (root / "dag.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (
            "/nonexistent/dir/x.svg",
            "error: cannot write /nonexistent/dir/x.svg: No such file or directory",
        ),
        (
            "x.png",
            "error: dag --output x.png: only SVG can be written; name the file *.svg",
        ),
    ],
)
def test_dag_output_errors_are_one_line(
    tmp_path: Path, output: str, message: str
) -> None:
    root = write_project(tmp_path)

    done = seeknal("dag", "--output", output, cwd=root)

    assert done.returncode == 2
    assert done.stderr == message + "\n"
    assert done.stdout == ""
    assert not (root / "x.png").exists()


@pytest.mark.parametrize("option", ["--nodes", "--tags", "--types"])
@pytest.mark.parametrize("value", ["", " , "])
def test_an_empty_selection_is_a_usage_error(
    tmp_path: Path, option: str, value: str
) -> None:
    root = write_project(tmp_path)

    done = seeknal("run", option, value, cwd=root)

    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"error: seeknal run: argument {option}: expected one or more "
        f"comma-separated names, got {value!r}"
    )
    assert not (root / "target").exists()


def test_a_misspelt_node_gets_a_suggestion(tmp_path: Path) -> None:
    root = write_project(tmp_path)

    done = seeknal("run", "--nodes", "doubeld", cwd=root)

    assert done.returncode == 2
    assert done.stderr == "error: no node named 'doubeld'; did you mean 'doubled'?\n"


@pytest.mark.parametrize(
    ("args", "usage", "error"),
    [
        (
            ["show", "doubled", "--limit", "-1"],
            "usage: seeknal show [-h] [--project PATH] [--env ENV] [--limit N] NODE",
            "error: seeknal show: argument --limit: must be 0 or more, got -1",
        ),
        (
            ["env", "plan"],
            "usage: seeknal env plan [-h] [--project PATH] ENV",
            "error: seeknal env plan: the following arguments are required: ENV",
        ),
        (
            [],
            "usage: seeknal [-h] [-v] COMMAND ...",
            "error: seeknal: the following arguments are required: COMMAND",
        ),
    ],
)
def test_a_usage_error_prints_the_usage_of_its_command(
    tmp_path: Path, args: list[str], usage: str, error: str
) -> None:
    done = seeknal(*args, cwd=tmp_path)

    assert done.returncode == 2
    assert done.stderr.splitlines() == [usage, error]


def test_the_readme_project_folder_is_ignored_by_git() -> None:
    ignored = (Path(__file__).resolve().parents[1] / ".gitignore").read_text()
    assert "fraud-demo/" in ignored.splitlines()
