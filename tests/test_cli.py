"""Tests of the `seeknal` command line as a user runs it: real processes, exit
statuses, printed plans, interrupts, and the fraud example end to end."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from seeknal_jupyter import cli
from seeknal_jupyter.errors import UsageError
from seeknal_jupyter.fingerprint import fingerprints
from seeknal_jupyter.project import Project
from seeknal_jupyter.store import Store

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
        .startswith("Run succeeded: 2 executed, 0 cached of 2 nodes in ")
    )
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--bogus"], "error: seeknal run: unrecognized arguments: --bogus"),
        (["--bogus", "run"], "error: seeknal: unrecognized arguments: --bogus"),
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
    last = done.stdout.rstrip().splitlines()[-1]
    assert last.startswith("Run FAILED: 3 executed (1 failed), 0 cached of 3 nodes in ")
    assert "executed: 3, succeeded: 2, cached: 0, failed: 1" in done.stdout
    assert done.stdout.count("Run FAILED") == 1
    assert done.stderr == ""


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
    assert not (root / "target").exists()


def test_show_plan_prints_the_layers_with_each_nodes_inputs(tmp_path: Path) -> None:
    root = write_project(tmp_path)

    done = seeknal("run", "--show-plan", "--parallel", "--max-workers", "2", cwd=root)

    assert done.stdout.splitlines() == [
        "Execution plan (incremental, 2 workers): 2 nodes in 2 layers",
        "Layer 1: 1 node (no inputs)",
        "  source.numbers",
        "Layer 2: 1 node (after layer 1)",
        "  transform.doubled <- source.numbers",
    ]


def test_dry_run_says_why_each_node_would_run(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    nodes = root / "seeknal" / "nodes.yml"
    data = root / "data" / "numbers.csv"

    first = seeknal("run", "--dry-run", cwd=root)
    assert seeknal("run", cwd=root).returncode == 0
    nothing = seeknal("run", "--dry-run", cwd=root)
    os.utime(data, (1_000_000_000, 1_000_000_000))
    touched = seeknal("run", "--dry-run", cwd=root)
    nodes.write_text(nodes.read_text().replace("n * 2 AS n2", "n * 3 AS n2"))
    edited = seeknal("run", "--dry-run", "--nodes", "doubled", cwd=root)
    full = seeknal("run", "--dry-run", "--full", "--nodes", "numbers", cwd=root)

    assert first.stdout.splitlines() == [
        "Dry run (incremental, 1 worker): 2 to run, 0 cached; nothing was run",
        "Layer 1: 1 to run, 0 cached",
        "  run     source.numbers: no output yet",
        "Layer 2: 1 to run, 0 cached",
        "  run     transform.doubled: no output yet",
    ]
    assert nothing.stdout.splitlines() == [
        "Dry run (incremental, 1 worker): 0 to run, 2 cached; nothing was run",
        "Layer 1: 0 to run, 1 cached",
        "  cached  source.numbers",
        "Layer 2: 0 to run, 1 cached",
        "  cached  transform.doubled",
    ]
    assert touched.stdout.splitlines()[1:] == [
        "Layer 1: 1 to run, 0 cached",
        "  run     source.numbers: its data file changed",
        "Layer 2: 1 to run, 0 cached",
        "  run     transform.doubled: input source.numbers re-runs",
    ]
    assert edited.stdout.splitlines()[1:] == [
        "Layer 2: 1 to run, 0 cached",
        (
            "  run     transform.doubled: definition changed (expression of column n2 "
            "changed); built from the old output of source.numbers, which is out of "
            "date and not selected (seeknal run --nodes +doubled refreshes both)"
        ),
    ]
    assert full.stdout.splitlines() == [
        "Dry run (full, 1 worker): 1 to run, 0 cached; nothing was run",
        "Layer 1: 1 to run, 0 cached",
        "  run     source.numbers: --full rebuilds every node",
    ]


def test_a_dry_run_reports_an_unbuilt_input_as_the_run_does(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    message = (
        "error: input source.numbers (seeknal/nodes.yml:1) has no output yet; run it "
        "first or select it too (+name selects a node with its upstream)\n"
    )

    dry = seeknal("run", "--dry-run", "--nodes", "doubled", cwd=root)
    layout = seeknal("run", "--show-plan", "--nodes", "doubled", cwd=root)
    real = seeknal("run", "--nodes", "doubled", cwd=root)

    for done in (dry, layout, real):
        assert (done.returncode, done.stdout, done.stderr) == (2, "", message)
    assert seeknal("run", "--dry-run", "--nodes", "+doubled", cwd=root).stdout == (
        "Dry run (incremental, 1 worker): 2 to run, 0 cached; nothing was run\n"
        "Layer 1: 1 to run, 0 cached\n"
        "  run     source.numbers: no output yet\n"
        "Layer 2: 1 to run, 0 cached\n"
        "  run     transform.doubled: no output yet\n"
    )


def test_a_node_on_an_unselected_stale_input_says_so_and_is_not_rebuilt(
    fraud: Path,
) -> None:
    assert seeknal("run", "--parallel", cwd=fraud).returncode == 0
    (fraud / "data" / "fraud_labels.csv").touch()
    behind = (
        "transform.merchant_risk: built from the old output of source.fraud_labels, "
        "which is out of date and not selected (seeknal run --nodes +merchant_risk "
        "refreshes both)"
    )

    dry = seeknal("run", "--nodes", "merchant_risk", "--dry-run", cwd=fraud)
    real = seeknal("run", "--nodes", "merchant_risk", cwd=fraud)
    refresh = seeknal("run", "--nodes", "+merchant_risk", "--dry-run", cwd=fraud)

    assert (dry.returncode, dry.stderr) == (0, "")
    assert dry.stdout.splitlines() == [
        "Dry run (incremental, 1 worker): 0 to run, 1 cached; nothing was run",
        "Layer 2: 0 to run, 1 cached",
        f"  cached  {behind}",
    ]
    assert (real.returncode, real.stderr) == (0, "")
    lines = real.stdout.splitlines()
    assert lines[lines.index("") + 2 : lines.index("") + 4] == [
        "transform.merchant_risk      2  CACHED          1,500         ",
        f"  {behind}",
    ]
    assert lines[-1].startswith("Run succeeded: 0 executed, 1 cached of 1 node in ")
    assert refresh.stdout.splitlines()[1:] == [
        "Layer 1: 1 to run, 1 cached",
        "  cached  source.merchant_data",
        "  run     source.fraud_labels: its data file changed",
        "Layer 2: 1 to run, 0 cached",
        "  run     transform.merchant_risk: input source.fraud_labels re-runs",
    ]


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
    run.send_signal(signal.SIGINT)
    run.wait(30)
    rest, errors = run.stdout.read(), run.stderr.read()

    assert run.returncode == 130
    assert "CANCELLED transform.long: interrupted while running" in rest, (rest, errors)
    assert re.match(
        r"Run cancelled: [12] executed, 0 cached, [12] cancelled of 3 nodes in ",
        rest.rstrip().splitlines()[-1],
    )
    assert errors.splitlines() == [
        (
            "Stopping: no new node starts and running queries are interrupted "
            "(Ctrl-C again to abort at once)"
        ),
        "Interrupted: what finished is kept; the next run resumes from there.",
    ]
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
    assert list(manifest["layers"]) == ["1", "2", "3", "4"]
    assert [set(layer) for layer in manifest["layers"].values()] == FRAUD_LAYERS
    assert {n["layer"] for n in manifest["nodes"].values()} == {1, 2, 3, 4}
    assert manifest["nodes"]["exposure.training_data"]["layer"] == 4
    assert "Run succeeded: 15 executed, 0 cached of 15 nodes" in sequential.stdout
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
    assert "Run succeeded: 15 executed, 0 cached of 15 nodes" in parallel.stdout
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
            (
                "usage: seeknal show [-h] [-v] [--project PATH] [--env ENV] [--limit N] "
                "[--schema] NODE"
            ),
            "error: seeknal show: argument --limit: must be 0 or more, got -1",
        ),
        (
            ["env", "plan"],
            "usage: seeknal env plan [-h] [-v] [--project PATH] ENV",
            "error: seeknal env plan: the following arguments are required: ENV",
        ),
        (
            [],
            "usage: seeknal [-h] [-v] [--project PATH] COMMAND ...",
            "error: seeknal: the following arguments are required: COMMAND",
        ),
        (
            ["run", "--paralel"],
            (
                "usage: seeknal run [-h] [-v] [--project PATH] [--parallel] "
                "[--max-workers N] [--full] [--dry-run] [--show-plan] [--fail-fast] "
                "[--nodes A,B] [--tags T] [--types KIND] [--env ENV]"
            ),
            (
                "error: seeknal run: unrecognized arguments: --paralel (did you mean "
                "--parallel?)"
            ),
        ),
        (
            ["show", "doubled", "--limt", "3", "extra"],
            (
                "usage: seeknal show [-h] [-v] [--project PATH] [--env ENV] [--limit N] "
                "[--schema] NODE"
            ),
            (
                "error: seeknal show: unrecognized arguments: --limt 3 extra (did you "
                "mean --limit?)"
            ),
        ),
        (
            ["env", "apply", "dev", "--dry-rum"],
            (
                "usage: seeknal env apply [-h] [-v] [--project PATH] [--parallel] "
                "[--max-workers N] [--full] [--dry-run] [--show-plan] [--fail-fast] "
                "[--nodes A,B] [--tags T] [--types KIND] ENV"
            ),
            (
                "error: seeknal env apply: unrecognized arguments: --dry-rum (did you "
                "mean --dry-run?)"
            ),
        ),
        (
            ["init", "--example", "fraud-detection", "--project", "x", "f5"],
            (
                "usage: seeknal init [-h] [-v] --example {fraud-detection,nyc-flights} "
                "[--scale N] DIR"
            ),
            "error: seeknal init: --project does not apply; give the folder as DIR",
        ),
        (
            ["--project", "x", "init", "--example", "fraud-detection", "f5"],
            (
                "usage: seeknal init [-h] [-v] --example {fraud-detection,nyc-flights} "
                "[--scale N] DIR"
            ),
            "error: seeknal init: --project does not apply; give the folder as DIR",
        ),
    ],
)
def test_a_usage_error_prints_the_usage_of_its_command(
    tmp_path: Path, args: list[str], usage: str, error: str
) -> None:
    done = seeknal(*args, cwd=tmp_path)

    assert done.returncode == 2
    *usage_lines, last = done.stderr.splitlines()
    assert " ".join(" ".join(usage_lines).split()) == usage
    assert last == error
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_the_readme_project_folder_is_ignored_by_git() -> None:
    ignored = (Path(__file__).resolve().parents[1] / ".gitignore").read_text()
    assert "fraud-demo/" in ignored.splitlines()


@pytest.mark.parametrize(
    ("folder", "message"),
    [
        (
            "empty",
            (
                "error: no seeknal/ folder in {root}/empty, so it is not a project: "
                "write one with 'seeknal init --example fraud-detection DIR', or give a "
                "project's folder with --project PATH\n"
            ),
        ),
        (
            "demo/seeknal",
            (
                "error: no seeknal/ folder in {root}/demo/seeknal; it is the seeknal/ "
                "folder of the project {root}/demo: run from there, or give --project "
                "{root}/demo\n"
            ),
        ),
        (
            "demo/data",
            (
                "error: no seeknal/ folder in {root}/demo/data; it is inside the project "
                "{root}/demo: run from there, or give --project {root}/demo\n"
            ),
        ),
    ],
)
def test_a_folder_without_seeknal_says_in_one_line_what_to_do(
    tmp_path: Path, folder: str, message: str
) -> None:
    write_project(tmp_path / "demo")
    (tmp_path / "empty").mkdir()

    for words in (["run"], ["plan"], ["env", "list"]):
        done = seeknal(*words, cwd=tmp_path / folder)
        expected = message.format(root=tmp_path.resolve())
        assert (done.returncode, done.stdout, done.stderr) == (2, "", expected)


def test_show_in_an_unknown_environment_is_a_one_line_error(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    assert seeknal("run", cwd=root).returncode == 0

    done = seeknal("show", "doubled", "--env", "nosuch", cwd=root)

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == ("error: no environment 'nosuch' (environments: none)\n")
    production = seeknal("show", "doubled", cwd=root).stdout
    assert production.split() == ["n2", "0", "2", "1", "4", "2", "6"]
    for name in ("prod", "production"):
        assert seeknal("show", "doubled", "--env", name, cwd=root).stdout == production


def test_every_command_taking_an_environment_explains_a_case_clash(
    tmp_path: Path,
) -> None:
    root = write_project(tmp_path)
    assert seeknal("run", cwd=root).returncode == 0
    assert seeknal("plan", "dev", cwd=root).returncode == 0
    message = (
        "error: environment 'DEV' differs from the existing 'dev' only by case; "
        "use 'dev' (file systems may not tell the two apart)\n"
    )

    for words in (
        ["plan", "DEV"],
        ["run", "--env", "DEV"],
        ["run", "--env", "DEV", "--dry-run"],
        ["show", "doubled", "--env", "DEV"],
        ["diff", "doubled", "--env", "DEV"],
        ["dag", "--plan", "DEV"],
        ["promote", "DEV"],
        ["promote", "dev", "DEV"],
        ["env", "plan", "DEV"],
        ["env", "apply", "DEV"],
        ["env", "promote", "DEV"],
        ["env", "delete", "DEV"],
    ):
        done = seeknal(*words, cwd=root)
        assert (done.returncode, done.stdout, done.stderr) == (2, "", message), words


def test_diff_compares_an_environment_with_production(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    assert seeknal("run", cwd=root).returncode == 0
    nodes = root / "seeknal" / "nodes.yml"
    nodes.write_text(
        nodes.read_text().replace(
            "SELECT n * 2 AS n2 FROM numbers",
            "SELECT n * 2 AS n2, n AS n1 FROM numbers WHERE n > 1",
        )
    )
    assert seeknal("plan", "dev", cwd=root).returncode == 0
    assert seeknal("run", "--env", "dev", cwd=root).returncode == 0

    done = seeknal("diff", "doubled", "--env", "dev", "--limit", "1", cwd=root)
    unknown = seeknal("diff", "doubled", "--env", "nosuch", cwd=root)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "transform.doubled: dev vs production",
        "  column n1 (BIGINT) only in dev",
        (
            "  rows: 3 in production, 2 in dev; 0 only in dev, 1 only in production "
            "(compared on the columns both have)"
        ),
        "sample of differing rows:",
        "      side  n2",
        "production   2",
    ]
    assert unknown.returncode == 2
    assert unknown.stderr == ("error: no environment 'nosuch' (environments: dev)\n")


def test_project_and_verbose_go_before_or_after_the_command(tmp_path: Path) -> None:
    root = write_project(tmp_path / "demo")

    details = seeknal("-v", "plan", "-v", "--project", "demo", cwd=tmp_path)
    before = seeknal("--project", "demo", "-v", "plan", cwd=tmp_path)
    after = seeknal("plan", "-v", "--project", "demo", cwd=tmp_path)
    quiet = seeknal("plan", "--project", "demo", cwd=tmp_path)
    ran = seeknal("--project", "demo", "run", cwd=tmp_path)

    loaded = (
        f"info seeknal_jupyter.loader: loaded 2 nodes from 1 file under "
        f"{root.resolve() / 'seeknal'}"
    )
    for done in (before, after, details, ran):
        assert done.returncode == 0, done.stderr
    assert before.stdout == after.stdout == quiet.stdout
    assert loaded in before.stderr.splitlines()
    assert loaded in after.stderr.splitlines()
    assert quiet.stderr == ""
    assert "debug seeknal_jupyter." in details.stderr
    assert "debug" not in before.stderr
    assert ran.stdout.rstrip().splitlines()[-1].startswith("Run succeeded: 2 executed")


def test_v_logs_the_steps_of_a_run_and_vv_each_nodes_details(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    fps = fingerprints(Project(root).dag(), root)

    steps = seeknal("run", "-v", "--dry-run", cwd=root)
    details = seeknal("run", "-vv", "--dry-run", cwd=root)
    built = seeknal("-vv", "run", cwd=root)

    loaded = (
        "info seeknal_jupyter.loader: loaded 2 nodes from 1 file under "
        f"{root.resolve() / 'seeknal'}"
    )
    selected = (
        "info seeknal_jupyter.project: 2 nodes selected in production: 2 to run, "
        "0 cached"
    )
    decisions = [
        f"debug seeknal_jupyter.project: {node}: to run (fingerprint {fps[node]}; "
        "its output's none yet)"
        for node in ("source.numbers", "transform.doubled")
    ]
    assert steps.stderr.splitlines() == [loaded, selected]
    assert details.stderr.splitlines() == [loaded, *decisions, selected]
    assert built.stderr.splitlines()[:4] == [loaded, *decisions, selected]
    assert (
        "debug seeknal_jupyter.execute: transform.doubled: writing "
        f"{fps['transform.doubled']}.parquet from:"
    ) in built.stderr.splitlines()
    assert "debug seeknal_jupyter.binding: transform.doubled binds to columns " in (
        built.stderr
    )


def test_init_takes_no_project_option(tmp_path: Path) -> None:
    done = seeknal(
        "--project", "x", "init", "--example", "fraud-detection", "d", cwd=tmp_path
    )

    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "error: seeknal init: --project does not apply; give the folder as DIR"
    )
    assert list(tmp_path.iterdir()) == []


def _every_parser(parser: Any, words: tuple[str, ...] = ()) -> Any:
    yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _every_parser(sub, (*words, name))


@pytest.mark.parametrize("notebook", [False, True])
def test_every_option_of_every_command_has_help(notebook: bool) -> None:
    parsers = dict(_every_parser(cli.build_parser(notebook)))

    refused = {(("init",), ("--project",)), (("project",), ("--project",))}
    for words, parser in parsers.items():
        for action in parser._actions:
            if (words, tuple(action.option_strings)) in refused:
                continue
            if action.option_strings:
                assert action.help and action.help != argparse.SUPPRESS, (
                    words,
                    action.option_strings,
                )
            elif action.dest not in ("command", "env_command"):
                assert action.help, (words, action.dest)
    options = {
        w: {o for a in p._actions for o in a.option_strings} for w, p in parsers.items()
    }
    assert "--project" not in parsers[("init",)].format_help()
    assert {"--project", "-v", "--verbose"} <= options[("run",)]
    assert {"--env", "--limit", "--schema"} <= options[("show",)]
    assert {"--env", "--limit"} <= options[("diff",)]
    assert "--plan" in options[("dag",)]


def test_dag_help_shows_plan_and_show_help_explains_its_options(tmp_path: Path) -> None:
    dag = seeknal("dag", "--help", cwd=tmp_path).stdout
    show = " ".join(seeknal("show", "--help", cwd=tmp_path).stdout.split())

    assert "--plan ENV" in dag and "change class" in dag
    assert "--env ENV read the output in this environment (default: production)" in show
    assert "--limit N rows to print (default: 20)" in show


def test_dag_prints_the_node_count_once(tmp_path: Path) -> None:
    root = write_project(tmp_path)

    done = seeknal("dag", cwd=root)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        root.name,
        "2 nodes in 2 layers",
        "layer 1",
        "  source.numbers",
        "layer 2",
        "  transform.doubled  <- source.numbers",
    ]


def test_a_late_ctrl_c_keeps_state_and_prints_the_summary(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = write_project(tmp_path)
    save = Store.save_state
    sent: list[int] = []

    def interrupted_save(store: Store, generation: Path, state: Any) -> None:
        if len(state.entries) == 2 and not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)
        save(store, generation, state)

    monkeypatch.setattr(Store, "save_state", interrupted_save)

    status = cli.main(["run", "--project", str(root)])

    out, err = capsys.readouterr()
    assert sent == [1]
    assert status == 130
    assert (
        out.rstrip()
        .splitlines()[-1]
        .startswith("Run succeeded: 2 executed, 0 cached of 2 nodes in ")
    )
    assert "nodes: 2, layers: 2, executed: 2, succeeded: 2" in out
    assert err.splitlines() == [
        (
            "Stopping: no new node starts and running queries are interrupted "
            "(Ctrl-C again to abort at once)"
        ),
        "Interrupted: what finished is kept; the next run resumes from there.",
    ]
    assert set(Project(root).store.load_state("prod").entries) == {
        "source.numbers",
        "transform.doubled",
    }
    monkeypatch.setattr(Store, "save_state", save)
    again = seeknal("run", cwd=root)
    assert "Run succeeded: 0 executed, 2 cached of 2 nodes" in again.stdout


def test_init_into_an_impossible_folder_is_one_line_and_writes_nothing(
    tmp_path: Path,
) -> None:
    done = seeknal("init", "--example", "fraud-detection", "/proc/x", cwd=tmp_path)

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "error: cannot write the fraud-detection example to /proc/x: No such file "
        "or directory (/proc/x); choose a folder you can write to\n"
    )
    assert not Path("/proc/x").exists()
    with pytest.raises(UsageError, match="^cannot write the fraud-detection example"):
        cli.dispatch(
            cli.parse("init --example fraud-detection /proc/x", notebook=True),
            None,
            None,
        )


def test_a_failed_init_removes_what_it_wrote(tmp_path: Path) -> None:
    dest = tmp_path / "demo"
    (dest / "README.md").mkdir(parents=True)
    (dest / "notes.txt").write_text("mine")

    done = seeknal("init", "--example", "fraud-detection", str(dest), cwd=tmp_path)

    assert done.returncode == 2
    assert done.stderr.startswith(
        f"error: cannot write the fraud-detection example to {dest}: Is a directory"
    )
    assert sorted(p.name for p in dest.iterdir()) == ["README.md", "notes.txt"]
    assert (dest / "notes.txt").read_text() == "mine"


def test_one_node_runs_read_in_the_singular(tmp_path: Path) -> None:
    root = write_project(tmp_path)

    done = seeknal("run", "--nodes", "numbers", cwd=root)
    plan = seeknal("run", "--show-plan", "--nodes", "numbers", cwd=root)

    assert done.stdout.splitlines()[0] == (
        f"Running {root.name} [production] — incremental, 1 worker: 1 to run, 0 cached, "
        "2 nodes in 2 layers"
    )
    assert re.search(
        r"\n  \[1/1\] SUCCESS   source.numbers in [\d.]+s, 3 rows\n", done.stdout
    )
    assert (
        done.stdout.rstrip()
        .splitlines()[-1]
        .startswith("Run succeeded: 1 executed, 0 cached of 1 node in ")
    )
    assert "nodes: 1, layers: 1 (of 2), executed: 1" in done.stdout
    assert plan.stdout.splitlines()[:2] == [
        "Execution plan (incremental, 1 worker): 1 node in 1 layer",
        "Layer 1: 1 node (no inputs)",
    ]


C17_NODES = """\
kind: source
name: payments
source: csv
table: data/numbers.csv
---
kind: transform
name: ok_a
transform: SELECT n FROM source.payments
---
kind: transform
name: bad_b
transform: SELECT n * 10 AS m FROM source.payments
---
kind: transform
name: c
transform: SELECT m FROM transform.bad_b
---
kind: transform
name: d
transform: SELECT SUM(n) AS total FROM transform.ok_a
"""


def test_a_failure_marks_older_outputs_stale_and_numbers_only_built_nodes(
    tmp_path: Path,
) -> None:
    root = write_project(tmp_path, C17_NODES)
    assert seeknal("run", cwd=root).returncode == 0
    nodes = root / "seeknal" / "nodes.yml"
    nodes.write_text(
        nodes.read_text().replace("n * 10 AS m", "CAST('x' || n AS INTEGER) AS m")
    )
    (root / "data" / "numbers.csv").write_text("n\n1\n2\n")

    done = seeknal("run", cwd=root)
    stale = seeknal("show", "c", cwd=root)
    fresh = seeknal("show", "d", cwd=root)

    assert done.returncode == 1
    progress = [
        line
        for line in done.stdout.splitlines()
        if line.startswith(("  [", "        "))
    ]
    assert [line[:18] for line in progress[:5]] == [
        "  [1/5] SUCCESS   ",
        "  [2/5] SUCCESS   ",
        "        FAILED    ",
        "        SKIPPED   ",
        "  [3/5] SUCCESS   ",
    ]
    assert (
        "  transform.bad_b: keeps its older output, which is stale (made from an "
        "earlier definition or data)"
    ) in done.stdout.splitlines()
    assert (
        "  transform.c: keeps its older output, which is stale (made from an "
        "earlier definition or data)"
    ) in done.stdout.splitlines()
    assert "transform.d: keeps" not in done.stdout
    assert stale.returncode == 0
    assert stale.stdout.split() == ["m", "0", "10", "1", "20", "2", "30"]
    assert stale.stderr == (
        "warning: transform.c: this output is stale (made from an earlier definition "
        "or data); refresh it with: seeknal run --nodes +c\n"
    )
    assert fresh.stderr == ""


def test_show_schema_and_a_source_preview_before_any_run(tmp_path: Path) -> None:
    shutil.copytree(Path(__file__).parent / "cases" / "C15" / "data", tmp_path / "data")
    (tmp_path / "seeknal").mkdir()
    shutil.copy(
        Path(__file__).parent / "cases" / "C15" / "nodes.yml", tmp_path / "seeknal"
    )

    schema = seeknal("show", "bom_customers", "--schema", cwd=tmp_path)
    union = seeknal("show", "all_customers", "--schema", cwd=tmp_path)
    preview = seeknal("show", "bom_customers", cwd=tmp_path)
    empty = seeknal("show", "missing_customers", cwd=tmp_path)
    not_run = seeknal("show", "all_customers", cwd=tmp_path)

    assert schema.returncode == 0, schema.stderr
    assert schema.stdout.splitlines() == [
        "source.bom_customers (seeknal/nodes.yml:2): 2 columns",
        "  customer_id  INTEGER",
        "  amount       DOUBLE",
    ]
    assert union.stdout.splitlines()[1:] == [
        "  customer_id  INTEGER",
        "  amount       DOUBLE",
    ]
    assert preview.returncode == 0, preview.stderr
    assert preview.stdout.split() == [
        "customer_id",
        "amount",
        "0",
        "1",
        "10.5",
        "1",
        "2",
        "20.0",
    ]
    assert preview.stderr == (
        "warning: source.bom_customers has not run yet; this is its data file "
        "data/bom.csv, read with its declared schema\n"
    )
    assert empty.returncode == 2
    assert empty.stderr == (
        "error: source.missing_customers (seeknal/nodes.yml:27): data file "
        "data/empty.csv is empty (0 bytes, no header row)\n"
    )
    assert not_run.returncode == 2
    assert not_run.stderr == (
        "error: transform.all_customers has no output in production yet; run it first: "
        "seeknal run --nodes +all_customers\n"
    )
    assert not (tmp_path / "target" / "snapshots").exists()
    assert Project(tmp_path).schema("bom_customers").columns == [
        ("customer_id", "INTEGER"),
        ("amount", "DOUBLE"),
    ]


def test_a_failed_environment_run_counts_executed_like_its_summary(
    tmp_path: Path,
) -> None:
    root = write_project(tmp_path)
    assert seeknal("run", cwd=root).returncode == 0
    nodes = root / "seeknal" / "nodes.yml"
    nodes.write_text(
        nodes.read_text().replace("n * 2 AS n2", "CAST('x' || n AS INTEGER) AS n2")
    )
    assert seeknal("plan", "dev", cwd=root).returncode == 0

    done = seeknal("run", "--env", "dev", cwd=root)

    assert done.returncode == 1
    assert done.stderr == ""
    assert "nodes: 2, layers: 2, executed: 1, succeeded: 0, cached: 1" in done.stdout
    assert (
        done.stdout.rstrip()
        .splitlines()[-1]
        .startswith(
            "Environment 'dev' FAILED: 1 executed (1 failed), 1 cached (from "
            "production) of 2 nodes in "
        )
    )


class GoneReader(io.StringIO):
    """Standard output whose reader went away (as in ``seeknal run | head -1``)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_reader_that_goes_away_does_not_stop_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_project(tmp_path)
    monkeypatch.setattr(sys, "stdout", GoneReader())

    status = cli.main(["run", "--project", str(root)])

    assert status == 0
    state = Project(root).store.load_state("prod")
    assert set(state.entries) == {"source.numbers", "transform.doubled"}


def test_show_prints_every_column_and_row_wrapped_to_the_terminal(
    tmp_path: Path,
) -> None:
    columns = ", ".join(f"n * {i} AS column_{i:02d}" for i in range(29))
    wide = (
        "---\nkind: transform\nname: wide\ninputs: [{ref: source.numbers}]\n"
        f"transform: SELECT {columns} FROM numbers, range(25) AS r(i)\n"
    )
    root = write_project(tmp_path, NODES + wide)
    assert seeknal("run", cwd=root).returncode == 0
    narrow = {**os.environ, "COLUMNS": "100"}

    done = subprocess.run(
        [*SEEKNAL, "show", "wide", "--limit", "75"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env=narrow,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    headers = [word for line in lines for word in line.split() if "column_" in word]
    assert headers == [f"column_{i:02d}" for i in range(29)]
    blocks = [line for line in lines if line.startswith("74 ")]
    assert len(blocks) > 1 and "..." not in done.stdout
    assert done.stdout.count("\n0 ") == len(blocks)


@pytest.mark.parametrize("scale", ["2", "1"])
def test_scale_is_refused_for_an_example_without_one(
    tmp_path: Path, scale: str
) -> None:
    done = seeknal(
        "init", "--example", "nyc-flights", "flights", "--scale", scale, cwd=tmp_path
    )

    assert done.returncode == 2
    assert done.stderr == (
        "error: init --example nyc-flights: --scale is for fraud-detection only; "
        "leave it out\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_environment_name_ending_in_a_newline_is_refused(tmp_path: Path) -> None:
    root = write_project(tmp_path)

    done = seeknal("plan", "dev\n", cwd=root)

    assert done.returncode == 2
    assert done.stderr == (
        "error: environment name 'dev\\n' is not allowed: use letters, digits, '_' "
        "and '-', starting with a letter or '_'\n"
    )
    assert not (root / "target" / "environments").exists()
