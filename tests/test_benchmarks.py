"""The benchmark script runs end to end at tiny sizes and reports every measure.

Speed is not asserted here: numbers from a shared test machine say nothing. The
full run is made by hand (``benchmarks/run.py``) and its report is committed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"

MEASURES = (
    "fraud 1x: parallel speed-up over sequential",
    "fraud 1x: peak memory",
    "wide DAG (20 nodes): parallel wall (RunResult.wall_seconds) / lower bound",
    "30 trivial nodes, sequential: overhead per node",
    "30 trivial nodes, parallel: overhead per node",
    "plan of 100 nodes",
    "load + DAG of 100 nodes",
    "no-op incremental run",
    "start-up alone",
    "promote, fraud example 1x, txn_features changed: lock to commit",
    "promote, 50 nodes, one transform changed: lock to commit",
)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("benchmarks") / "results"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return out, json.loads((out / "report.json").read_text())


def test_quick_run_writes_both_reports_with_every_measure(
    quick: tuple[Path, dict[str, Any]],
) -> None:
    out, report = quick
    markdown = (out / "report.md").read_text()
    measures = [row["measure"] for row in report["table"]]
    for measure in MEASURES:
        assert [m for m in measures if m.startswith(measure)], measure
        assert f"| {measure}" in markdown, measure
    for row in report["table"]:
        assert isinstance(row["number"], (int, float)), row
        assert row["met"] in (True, False, None), row
    table = [
        line
        for line in markdown.split("## Misses")[0].splitlines()
        if line.startswith("| ")
    ]
    assert len(table) == len(report["table"]) + 2  # with header and rule
    assert not (out / "work").exists()


def test_quick_run_measures_what_it_says(quick: tuple[Path, dict[str, Any]]) -> None:
    _, report = quick
    fraud = report["fraud"]["1"]
    assert fraud["workers"] >= 1
    assert fraud["sequential"]["wall"] > 0 and fraud["parallel"]["wall"] > 0
    assert fraud["sequential"]["peak_rss_mb"] > 10
    assert len(fraud["sequential"]["median_run"]["node_seconds"]) == 15
    wide = report["wide_dag"]
    assert wide["nodes"] == 20 and wide["sources"] == 2
    assert wide["median"]["bound"] >= wide["median"]["critical_seconds"]
    assert "parallel_strict_split" not in wide and "parallel_strict_split" not in fraud
    assert report["trivial"]["nodes"] == 30
    assert report["plan"]["nodes"] == 100
    assert report["noop"]["all_cached"] is True
    promotes = {case["case"]: case for case in report["promote"]}
    fraud_promote = promotes["fraud example 1x, txn_features changed"]
    assert fraud_promote["outputs"] == 15
    assert 0 < fraud_promote["commit_ms"] <= fraud_promote["call_ms"]
    assert promotes["50 nodes, one transform changed"]["outputs"] == 50


def test_the_wide_dag_bound_comes_from_the_sequential_runs_node_seconds(
    quick: tuple[Path, dict[str, Any]],
) -> None:
    """Each parallel run is held against the uncontended node seconds of the
    sequential run of its repeat (one repeat at --quick sizes)."""
    _, report = quick
    wide = report["wide_dag"]
    row, sequential = wide["median"], wide["sequential"]
    assert (row["work"], row["critical_seconds"]) == (
        sequential["work"],
        sequential["critical_seconds"],
    )
    assert row["parallel_work"] == wide["parallel"]["work"]
    lanes = min(wide["workers"], wide["cores"])
    assert row["lanes"] == lanes
    assert row["bound"] == max(
        sequential["critical_seconds"], sequential["work"] / lanes
    )
    assert row["ratio_engine"] == row["engine_wall"] / row["bound"]


def test_quick_reports_default_to_a_git_ignored_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = importlib.util.spec_from_file_location("benchmarks_run", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    results = SCRIPT.parent / "results"

    assert module.report_folder(None, True) == results / "quick"
    assert module.report_folder(None, False) == results
    assert module.report_folder(Path("elsewhere"), True) == Path("elsewhere")
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "benchmarks/results/quick/report.md"],
        cwd=SCRIPT.parents[1],
        check=False,
    )
    assert ignored.returncode == 0
