"""Benchmark: promoting a large environment in which one node changed.

Usage::

    .venv/bin/python benchmarks/promote.py            # fraud 1x and 50x, 2,000 nodes
    .venv/bin/python benchmarks/promote.py --quick    # tiny sizes, to check the script

``benchmarks/run.py`` runs the same cases (each in a fresh process) for its report.

Each case builds production, then three times: edits one node, plans and applies an
environment, and promotes it (the edit alternates, so each promote changes
production). It reports the median promote time (lock to commit, as
``PromoteResult.seconds`` measures it, and the whole call), how many outputs and bytes
the new production generation links, and for comparison how long copying those bytes
would take. Large data makes a copy slower; it should not change the promote.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seeknal_jupyter import environments
from seeknal_jupyter.examples import init_example
from seeknal_jupyter.project import Project
from seeknal_jupyter.promote import promote

FEATURE = "  ip_reputation_score:\n    dtype: float\n"
FEATURES_FILE = "seeknal/feature_groups/13_feature_group_txn_features.yml"


def fraud_project(folder: Path, scale: int) -> tuple[Project, Callable[[int], None]]:
    root = init_example("fraud-detection", folder / f"fraud-{scale}", scale)
    path = root / FEATURES_FILE
    original = path.read_text()

    def edit(round_number: int) -> None:
        path.write_text(original + (FEATURE if round_number % 2 == 0 else ""))

    return Project(root), edit


def wide_project(folder: Path, nodes: int) -> tuple[Project, Callable[[int], None]]:
    """One source, ``nodes - 2`` transforms reading it and one edited transform."""
    root = folder / f"wide-{nodes}"
    (root / "seeknal").mkdir(parents=True)
    (root / "data").mkdir()
    rows = "\n".join(f"{i},{i * 0.5}" for i in range(1000))
    (root / "data/base.csv").write_text("id,v\n" + rows + "\n")
    documents = ["kind: source\nname: base\nsource: csv\ntable: data/base.csv\n"]
    for number in range(1, nodes - 1):
        documents.append(
            f"kind: transform\nname: t{number}\n"
            f"transform: SELECT id, v * {number} AS v FROM source.base\n"
        )
    (root / "seeknal/nodes.yml").write_text("---\n".join(documents))
    last = root / "seeknal/last.yml"

    def edit(round_number: int) -> None:
        extra = f", id + {round_number} AS extra" if round_number % 2 == 0 else ""
        last.write_text(
            f"kind: transform\nname: edited\n"
            f"transform: SELECT id, v{extra} FROM source.base\n"
        )

    last.write_text(
        "kind: transform\nname: edited\ntransform: SELECT id, v FROM source.base\n"
    )
    return Project(root), edit


def copy_seconds(project: Project) -> float:
    """How long copying production's outputs to a new folder takes."""
    state = project.store.load_state("prod")
    destination = project.target / "copy-benchmark"
    destination.mkdir()
    started = time.perf_counter()
    for number, entry in enumerate(state.entries.values()):
        shutil.copyfile(
            project.target / entry.snapshot, destination / f"{number}.parquet"
        )
    seconds = time.perf_counter() - started
    shutil.rmtree(destination)
    return seconds


def measure(
    name: str, project: Project, edit: Callable[[int], None], rounds: int
) -> dict[str, Any]:
    """Promote ``rounds`` environments, each with one node changed; medians in ms."""
    edit(1)
    project.run(parallel=True)
    commits, calls = [], []
    result = None
    for number in range(rounds):
        edit(number)
        env = f"bench{number}"
        plan = environments.plan(project, env)
        changed = [
            n for n in plan.to_execute if plan.changes[n].change_class != "DEPENDENT"
        ]
        assert len(changed) == 1, plan
        environments.apply(project, env, parallel=True)
        started = time.perf_counter()
        result = promote(project, env)
        calls.append(time.perf_counter() - started)
        commits.append(result.seconds)
    assert result is not None
    return {
        "case": name,
        "outputs": result.linked,
        "mb": result.linked_bytes / 1e6,
        "commit_ms": statistics.median(commits) * 1000,
        "call_ms": statistics.median(calls) * 1000,
        "copy_ms": copy_seconds(project) * 1000,
        "commits_ms": [c * 1000 for c in commits],
        "calls_ms": [c * 1000 for c in calls],
    }


def run_case(kind: str, size: int, folder: Path, rounds: int) -> dict[str, Any]:
    """Build one case in ``folder`` and measure it.

    Args:
        kind: ``fraud`` (``size`` is the scale) or ``wide`` (``size`` nodes).
        size: the scale or the node count.
        folder: scratch folder for the project.
        rounds: promotes to measure.
    """
    if kind == "fraud":
        project, edit = fraud_project(folder, size)
        name = f"fraud example {size}x, txn_features changed"
    else:
        project, edit = wide_project(folder, size)
        name = f"{size:,} nodes, one transform changed"
    return measure(name, project, edit, rounds)


def table(results: list[dict[str, Any]]) -> list[str]:
    """The results as the rows of a Markdown table, with its heading."""
    lines = [
        (
            "| case | outputs linked | MB linked | promote, lock to commit (ms) | "
            "promote call (ms) | copying the same outputs (ms) |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['case']} | {r['outputs']:,} | {r['mb']:,.1f} | {r['commit_ms']:.1f} | "
        f"{r['call_ms']:.1f} | {r['copy_ms']:.1f} |"
        for r in results
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    args = parser.parse_args()
    cases = [("fraud", 1), ("fraud", 2), ("wide", 200)]
    if not args.quick:
        cases = [("fraud", 1), ("fraud", 50), ("wide", 2000)]
    results = []
    with tempfile.TemporaryDirectory(prefix="seeknal-promote-") as folder:
        for kind, size in cases:
            results.append(run_case(kind, size, Path(folder), rounds=3))
            print(table(results)[-1], flush=True)
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
