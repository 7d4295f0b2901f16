"""The handed cases (tests/cases/C*, copied from shared/cases) as regression tests.

Each test lays a case out as a project in a temporary folder (`seeknal/nodes.yml`
plus `data/`) and asserts the result the case's README calls correct.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from seeknal_jupyter import environments, execute
from seeknal_jupyter.dag import build_dag
from seeknal_jupyter.errors import ProjectError, RunFailed
from seeknal_jupyter.loader import NAME_PATTERN, Node
from seeknal_jupyter.project import Project
from seeknal_jupyter.report import RunResult, TextReporter
from seeknal_jupyter.store import TEMP_SUFFIX

CASES = Path(__file__).parent / "cases"
REPO = Path(__file__).parents[1]


def make_project(
    case: str, dest: Path, nodes_file: str = "nodes.yml", sub: str = ""
) -> Path:
    """Copy a case into ``dest`` as a project; ``sub`` names a C13 sub-project."""
    source = CASES / case
    shutil.copytree(source / "data", dest / "data")
    root = dest / sub if sub else dest
    (root / "seeknal").mkdir(parents=True)
    shutil.copy(source / sub / nodes_file, root / "seeknal" / "nodes.yml")
    return root


def replace_sql(root: Path, name: str, sql: str) -> None:
    """Give node ``name`` of ``seeknal/nodes.yml`` a new ``transform`` body."""
    path = root / "seeknal" / "nodes.yml"
    documents = path.read_text().split("\n---\n")
    named = re.compile(rf"^name: {re.escape(name)}\s*(#.*)?$", re.MULTILINE)
    block = "transform: |\n" + "".join(f"  {line}\n" for line in sql.splitlines())
    for i, document in enumerate(documents):
        if named.search(document):
            head = document[: document.index("transform: |")]
            documents[i] = head + block
    path.write_text("\n---\n".join(documents))


def drop_nodes(root: Path, names: set[str]) -> None:
    """Remove the documents of the named nodes from ``seeknal/nodes.yml``."""
    path = root / "seeknal" / "nodes.yml"
    kept = []
    for document in path.read_text().split("\n---\n"):
        found = re.search(r"^name: (.+?)\s*(#.*)?$", document, re.MULTILINE)
        name = found.group(1).strip("'") if found else None
        if name not in names:
            kept.append(document)
    path.write_text("\n---\n".join(kept))


def rows(project: Project, node: str, order: str = "ALL") -> list[tuple[Any, ...]]:
    path = project.output_path(node)
    with duckdb.connect() as conn:
        return conn.execute(
            f"SELECT * FROM read_parquet('{path}') ORDER BY {order}"
        ).fetchall()


def parquet_types(path: Path) -> list[tuple[str, str]]:
    with duckdb.connect() as conn:
        described = conn.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')")
        return [(r[0], r[1]) for r in described.fetchall()]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_failed(project: Project, **options: Any) -> RunResult:
    with pytest.raises(RunFailed) as failure:
        project.run(**options)
    return failure.value.result


def assert_target_files_sound(target: Path) -> None:
    """No temporary file is left, and every ``*.parquet`` opens as Parquet."""
    assert not [p for p in target.rglob(f"*{TEMP_SUFFIX}")]
    with duckdb.connect() as conn:
        for path in target.rglob("*.parquet"):
            conn.execute(f"SELECT COUNT(*) FROM read_parquet('{path}')").fetchone()


# C01: worker threads must not share one DuckDB connection

C01_NODES = ["source.events"] + [f"transform.agg_g{i}" for i in range(1, 9)]
C01_NODES.append("transform.all_groups")


def c01_expected() -> dict[str, tuple[str, int, int]]:
    with open(CASES / "C01" / "expected.csv", newline="") as handle:
        return {
            f"transform.{r['node']}": (
                r["group_id"],
                int(r["total_amount"]),
                int(r["row_count"]),
            )
            for r in csv.DictReader(handle)
        }


def c01_outputs(root: Path) -> dict[str, Path]:
    state = Project(root).store.load_state("prod")
    return {n: root / "target" / state.entries[n].snapshot for n in C01_NODES}


def c01_assert_values(outputs: dict[str, Path]) -> None:
    with duckdb.connect() as conn:
        for node, expected in c01_expected().items():
            found = conn.execute(f"SELECT * FROM read_parquet('{outputs[node]}')")
            assert found.fetchall() == [expected], node
        events = conn.execute(
            f"SELECT event_id, amount FROM read_parquet('{outputs['source.events']}')"
        ).fetchall()
    assert len(events) == 40
    assert all(amount == event_id for event_id, amount in events)


def c01_output_bytes(outputs: dict[str, Path]) -> dict[str, bytes]:
    return {n: path.read_bytes() for n, path in outputs.items()}


class ConnectionLog:
    """Records which thread built which node on which DuckDB connection."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.created: list[tuple[int, int]] = []
        self.used: list[tuple[int, str, int, str]] = []
        self.lock = threading.Lock()
        self.keep: list[duckdb.DuckDBPyConnection] = []
        original_build = execute.build
        original_open = execute.open_connection

        def opened(settings: execute.Settings) -> duckdb.DuckDBPyConnection:
            conn = original_open(settings)
            with self.lock:
                self.keep.append(conn)
                self.created.append((threading.get_ident(), id(conn)))
            return conn

        def build(conn: duckdb.DuckDBPyConnection, task: execute.Task) -> Any:
            thread = threading.current_thread()
            with self.lock:
                self.used.append(
                    (thread.ident or 0, thread.name, id(conn), task.node_id)
                )
            return original_build(conn, task)

        def forbidden(*_: Any, **__: Any) -> None:
            raise AssertionError("a worker used the module-level duckdb connection")

        monkeypatch.setattr(execute, "open_connection", opened)
        monkeypatch.setattr(execute, "build", build)
        monkeypatch.setattr(duckdb, "sql", forbidden)
        monkeypatch.setattr(duckdb, "execute", forbidden)

    def reset(self) -> None:
        self.created.clear()
        self.used.clear()
        self.keep.clear()


def test_c01_parallel_runs_equal_expected_and_sequential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project("C01", tmp_path)
    project = Project(root)
    project.run(max_workers=1)
    c01_assert_values(c01_outputs(root))
    sequential = c01_output_bytes(c01_outputs(root))
    log = ConnectionLog(monkeypatch)
    threads_seen: set[str] = set()

    for _ in range(20):
        log.reset()
        result = project.run(max_workers=8, full=True)

        assert result.statuses() == {n: "success" for n in C01_NODES}
        outputs = c01_outputs(root)
        c01_assert_values(outputs)
        assert c01_output_bytes(outputs) == sequential
        worker_conns = {(t, c) for t, _, c, _ in log.used}
        threads = {t for t, _ in worker_conns}
        conns = {c for _, c in worker_conns}
        assert len(worker_conns) == len(threads) == len(conns)
        assert worker_conns <= set(log.created)
        assert len(log.created) == len(threads) <= 8
        assert {name.split("_")[0] for _, name, _, _ in log.used} == {"seeknal-worker"}
        assert sorted(n for *_, n in log.used) == sorted(C01_NODES)
        threads_seen |= {name for _, name, _, _ in log.used}
    assert len(threads_seen) > 1


def test_c01_fresh_process_run(tmp_path: Path) -> None:
    root = make_project("C01", tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "seeknal_jupyter", "run", "--max-workers", "8"]
        + ["--full", "--project", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "10 success of 10 nodes" in done.stdout
    c01_assert_values(c01_outputs(root))


# C04: a failed or interrupted write keeps the earlier Parquet output intact

C04_V2 = (CASES / "C04" / "readings_clean_v2.sql").read_text()
C04_CACHE = Path("target/cache/transform/readings_clean.parquet")


def c04_step1(tmp_path: Path) -> tuple[Path, str]:
    root = make_project("C04", tmp_path, "nodes_v1.yml")
    project = Project(root)
    project.run()
    assert rows(project, "sensor_totals") == [("s1", 22), ("s2", 16), ("s3", 4)]
    assert len(rows(project, "readings_clean")) == 5
    return root, sha256(root / C04_CACHE)


def c04_assert_v1_output_kept(root: Path, digest: str) -> None:
    cache = root / C04_CACHE
    assert sha256(cache) == digest
    with duckdb.connect() as conn:
        count = conn.execute(f"SELECT COUNT(*) FROM read_parquet('{cache}')")
        assert count.fetchone() == (5,)


def test_c04_failed_rewrite_keeps_earlier_output(tmp_path: Path) -> None:
    root, digest = c04_step1(tmp_path)
    replace_sql(root, "readings_clean", C04_V2)
    project = Project(root)
    new_fingerprint = project.plan().fingerprints["transform.readings_clean"]

    result = run_failed(project)

    failed = result.nodes["transform.readings_clean"]
    assert failed.status == "failed"
    assert "transform.readings_clean" in str(failed.error)
    assert "Conversion Error" in str(failed.error)
    assert result.nodes["transform.sensor_totals"].status == "skipped"
    assert result.nodes["source.readings"].status == "cached"
    c04_assert_v1_output_kept(root, digest)
    assert not project.store.snapshot_path(
        "transform.readings_clean", new_fingerprint
    ).exists()
    assert_target_files_sound(root / "target")


def test_c04_killed_run_leaves_only_whole_files(tmp_path: Path) -> None:
    root, digest = c04_step1(tmp_path)
    replace_sql(root, "readings_clean", C04_V2)
    snapshots = root / "target" / "snapshots" / "transform" / "readings_clean"
    run = subprocess.Popen(
        [sys.executable, "-m", "seeknal_jupyter", "run", "--project", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        partial = None
        deadline = time.monotonic() + 60
        while partial is None and run.poll() is None and time.monotonic() < deadline:
            partial = next(snapshots.glob(f"*{TEMP_SUFFIX}"), None)
            time.sleep(0.001)
        run.send_signal(signal.SIGKILL)
    finally:
        run.wait(10)
    assert partial is not None, "the run ended before readings_clean started writing"

    c04_assert_v1_output_kept(root, digest)
    with duckdb.connect() as conn:
        for path in (root / "target").rglob("*.parquet"):
            conn.execute(f"SELECT COUNT(*) FROM read_parquet('{path}')").fetchone()

    result = run_failed(Project(root))
    assert result.nodes["transform.readings_clean"].status == "failed"
    assert result.nodes["transform.sensor_totals"].status == "skipped"
    c04_assert_v1_output_kept(root, digest)
    assert_target_files_sound(root / "target")


def test_c04_failed_first_write_creates_nothing(tmp_path: Path) -> None:
    root, _ = c04_step1(tmp_path)
    shutil.rmtree(root / "target")
    replace_sql(root, "readings_clean", C04_V2)

    result = run_failed(Project(root))

    assert result.statuses() == {
        "source.readings": "success",
        "transform.readings_clean": "failed",
        "transform.sensor_totals": "skipped",
    }
    assert not (root / C04_CACHE).exists()
    snapshots = root / "target" / "snapshots" / "transform"
    assert not [p for p in snapshots.rglob("*") if p.is_file()]
    assert_target_files_sound(root / "target")


# C13: cycles, self references and references found only in comments

C13_CYCLE = (
    "transform.step_a -> transform.step_c -> transform.step_b -> transform.step_a"
)


def test_c13_cycle_is_named_once_and_nothing_runs(tmp_path: Path) -> None:
    root = make_project("C13", tmp_path, sub="cycle")
    project = Project(root)

    for attempt in (project.plan, project.run):
        with pytest.raises(ProjectError) as error:
            attempt()
        message = str(error.value)
        assert message.count(C13_CYCLE) == 1
        assert "Cycle detected" in message
        assert "seeknal/nodes.yml" in message
    assert not (root / "target" / "snapshots").exists()
    assert not (root / "target" / "cache").exists()


def test_c13_self_reference_is_rejected(tmp_path: Path) -> None:
    root = make_project("C13", tmp_path, sub="selfref")

    with pytest.raises(ProjectError) as error:
        Project(root).run()

    assert "transform.running_total lists itself as an input" in str(error.value)
    assert "seeknal/nodes.yml:11" in str(error.value)
    assert not (root / "target").exists()


def test_c13_references_in_comments_and_strings_do_not_count(
    tmp_path: Path,
) -> None:
    root = make_project("C13", tmp_path, sub="comment_ref")
    project = Project(root)

    assert project.dag().nodes["transform.doubled"].inputs == ("source.seed_numbers",)
    project.run()

    assert rows(project, "doubled") == [
        (1, 2, "transform.doubled v2"),
        (2, 4, "transform.doubled v2"),
        (3, 6, "transform.doubled v2"),
    ]


def chain(length: int) -> dict[str, Node]:
    nodes = {"source.s": Node("source", "s", "chain.yml", 1, {})}
    for i in range(1, length):
        upstream = "source.s" if i == 1 else f"transform.t{i - 1:05d}"
        node = Node("transform", f"t{i:05d}", "chain.yml", i + 1, {}, (upstream,))
        nodes[node.id] = node
    return nodes


def with_input(nodes: dict[str, Node], node_id: str, extra: str) -> None:
    node = nodes[node_id]
    nodes[node_id] = Node(
        node.kind, node.name, node.file, node.line, {}, node.inputs + (extra,)
    )


@pytest.mark.parametrize(
    ("reader", "read", "cycle"),
    [
        (
            "transform.t04997",
            "transform.t04999",
            (
                "transform.t04997 -> transform.t04999 -> transform.t04998 "
                "-> transform.t04997"
            ),
        ),
        ("transform.t00001", "transform.t04999", None),
    ],
)
def test_c13_cycle_in_5000_nodes_found_fast(
    reader: str, read: str, cycle: str | None
) -> None:
    nodes = chain(5000)
    with_input(nodes, reader, read)

    started = time.perf_counter()
    with pytest.raises(ProjectError) as error:
        build_dag(nodes)
    elapsed = time.perf_counter() - started

    assert elapsed < 0.5
    message = str(error.value)
    if cycle is None:
        assert message.count("transform.t") == 4999 + 1
        assert "transform.t00001 -> transform.t04999 -> transform.t04998" in message
    else:
        assert message.count(cycle) == 1


# C14: names that are keywords, hold spaces or quotes, inject SQL or escape target/

C14_BAD = {
    "weekly sales",
    "store's_stats",
    'x"; DROP TABLE sentinel; --',
    "../../outside",
}


def test_c14_bad_names_rejected_at_load(tmp_path: Path) -> None:
    root = make_project("C14", tmp_path)

    with pytest.raises(ProjectError) as error:
        Project(root).run()

    message = str(error.value)
    for name in C14_BAD:
        assert f"name {name!r} is not allowed" in message
    assert NAME_PATTERN.pattern in message
    assert message.count("seeknal/nodes.yml:") == 4
    assert not (root / "target").exists()
    assert not (tmp_path.parent / "outside.parquet").exists()


def test_c14_reserved_words_work_once_bad_names_are_removed(tmp_path: Path) -> None:
    root = make_project("C14", tmp_path)
    drop_nodes(root, C14_BAD)
    project = Project(root)

    result = project.run(parallel=True)

    assert result.statuses() == {
        "source.order": "success",
        "transform.group": "success",
        "transform.sentinel": "success",
    }
    assert rows(project, "group") == [("x", 2), ("y", 1)]
    assert rows(project, "sentinel") == [(42,)]
    assert rows(project, "order") == [(1, "a", "x"), (2, "b", "x"), (3, "c", "y")]
    state = project.store.load_state("prod")
    columns = [c for c, _ in state.entries["source.order"].columns]
    assert columns == ["id", "select", "group"]


# C15: CSV edge cases: BOM, quoted newlines, header only, 0 bytes, CRLF

C15_CUSTOMERS = [(1, 10.5), (2, 20.0)]


def test_c15_csv_edge_cases(tmp_path: Path) -> None:
    root = make_project("C15", tmp_path)
    project = Project(root)
    first_plan = project.plan().fingerprints

    result = run_failed(project)

    assert result.statuses() == {
        "source.bom_customers": "success",
        "source.tickets": "success",
        "source.new_customers": "success",
        "source.missing_customers": "failed",
        "source.crlf_customers": "success",
        "transform.all_customers": "success",
    }
    error = str(result.nodes["source.missing_customers"].error)
    assert "source.missing_customers" in error
    assert "data/empty.csv is empty" in error
    assert "sniff" not in error and "dialect" not in error

    customers_types = [("customer_id", "INTEGER"), ("amount", "DOUBLE")]
    for node in ("bom_customers", "crlf_customers"):
        assert rows(project, node) == C15_CUSTOMERS
        assert parquet_types(project.output_path(node)) == customers_types
    state = project.store.load_state("prod")
    assert state.entries["source.bom_customers"].columns[0] == [
        "customer_id",
        "INTEGER",
    ]
    assert rows(project, "tickets", "ticket_id") == [
        (1, "first line\nsecond line", 5),
        (2, 'has "quotes", and a comma', 7),
        (3, "plain", 9),
    ]
    assert rows(project, "new_customers") == []
    assert parquet_types(project.output_path("new_customers")) == customers_types
    assert rows(project, "all_customers") == sorted(C15_CUSTOMERS * 2)
    assert parquet_types(project.output_path("all_customers")) == customers_types

    rerun = run_failed(project)
    assert project.plan().fingerprints == first_plan
    assert {n: s for n, s in rerun.statuses().items() if s != "cached"} == {
        "source.missing_customers": "failed"
    }
    plan = environments.plan(project, "check")
    assert set(plan.classes().values()) == {"UNCHANGED"}
    assert plan.to_execute == []


# C17: a failure in the middle of a layer skips only its descendants

C17_FIRST = {
    "source.payments": "success",
    "transform.ok_a": "success",
    "transform.bad_b": "failed",
    "transform.c": "skipped",
    "transform.d": "success",
    "transform.e": "skipped",
}


def c17_first_run(root: Path, workers: int) -> tuple[RunResult, str]:
    out = io.StringIO()
    with pytest.raises(RunFailed) as failure:
        Project(root).run(
            max_workers=workers, full=True, reporter=TextReporter(out, verbose=False)
        )
    return failure.value.result, out.getvalue()


@pytest.mark.parametrize(
    ("workers", "attempt"), [(1, 1)] + [(4, attempt) for attempt in range(1, 6)]
)
def test_c17_failure_skips_only_descendants(
    tmp_path: Path, workers: int, attempt: int
) -> None:
    root = make_project("C17", tmp_path)

    result, printed = c17_first_run(root, workers)

    assert result.statuses() == C17_FIRST
    error = str(result.nodes["transform.bad_b"].error)
    assert "transform.bad_b" in error and "Conversion Error" in error
    assert result.nodes["transform.c"].reason == "upstream transform.bad_b failed"
    assert result.nodes["transform.e"].reason == "upstream transform.c skipped"
    assert (result.count("success"), result.count("failed")) == (3, 1)
    assert (result.count("skipped"), len(result.nodes)) == (2, 6)
    assert "nodes: 6" in printed and "succeeded: 3" in printed
    assert "failed: 1" in printed and "skipped: 2" in printed
    assert printed.rstrip().endswith(result.headline())
    assert "Run FAILED" in printed and "Run succeeded" not in printed
    project = Project(root)
    assert rows(project, "payments", "payment_id") == [
        (1, "acc1", 100),
        (2, "acc2", 250),
        (3, "acc1", 50),
    ]
    assert rows(project, "ok_a") == [("acc1", 150), ("acc2", 250)]
    assert rows(project, "d") == [(400,)]
    state = project.store.load_state("prod")
    for name in ("bad_b", "c", "e"):
        assert f"transform.{name}" not in state.entries
        snapshots = root / "target" / "snapshots" / "transform" / name
        assert not [p for p in snapshots.rglob("*") if p.is_file()]
        assert not (
            root / "target" / "cache" / "transform" / f"{name}.parquet"
        ).exists()


def test_c17_fixed_node_reruns_exactly_its_branch(tmp_path: Path) -> None:
    root = make_project("C17", tmp_path)
    c17_first_run(root, 4)
    replace_sql(root, "bad_b", (CASES / "C17" / "bad_b_fixed.sql").read_text())
    project = Project(root)

    result = project.run(max_workers=4)

    assert result.statuses() == {
        "source.payments": "cached",
        "transform.ok_a": "cached",
        "transform.bad_b": "success",
        "transform.c": "success",
        "transform.d": "cached",
        "transform.e": "success",
    }
    assert rows(project, "e") == [(3, 400)]


def test_c17_fail_fast_starts_nothing_after_the_failure(tmp_path: Path) -> None:
    root = make_project("C17", tmp_path)

    result = run_failed(Project(root), max_workers=1, fail_fast=True)

    assert result.statuses() == {
        "source.payments": "success",
        "transform.ok_a": "success",
        "transform.bad_b": "failed",
        "transform.c": "skipped",
        "transform.d": "skipped",
        "transform.e": "skipped",
    }
    assert "fail-fast" in str(result.nodes["transform.d"].reason)
    snapshots = root / "target" / "snapshots" / "transform" / "d"
    assert not [p for p in snapshots.rglob("*") if p.is_file()]


def test_c17_fail_fast_with_workers_keeps_finished_nodes(tmp_path: Path) -> None:
    root = make_project("C17", tmp_path)

    result = run_failed(Project(root), max_workers=4, fail_fast=True)

    statuses = result.statuses()
    assert statuses["transform.bad_b"] == "failed"
    assert statuses["transform.ok_a"] == "success"
    assert statuses["transform.c"] == statuses["transform.e"] == "skipped"
    assert statuses["transform.d"] in ("success", "skipped")
    assert "cancelled" not in statuses.values()
    assert rows(Project(root), "ok_a") == [("acc1", 150), ("acc2", 250)]


def test_cases_folder_is_a_copy_of_the_handed_cases() -> None:
    handed = REPO.parent / "shared" / "cases"
    if not handed.is_dir():
        pytest.skip("shared/cases is not beside this checkout")
    for path in CASES.rglob("*"):
        if path.is_file():
            original = handed / path.relative_to(CASES)
            assert original.read_bytes() == path.read_bytes(), path
    assert os.path.getsize(CASES / "C15" / "data" / "empty.csv") == 0


def test_c17_earlier_outputs_of_failed_and_skipped_nodes_stay_and_are_stale(
    tmp_path: Path,
) -> None:
    root = make_project("C17", tmp_path)
    failing = (root / "seeknal" / "nodes.yml").read_text()
    replace_sql(root, "bad_b", (CASES / "C17" / "bad_b_fixed.sql").read_text())
    Project(root).run(max_workers=4)
    cache = root / "target" / "cache" / "transform"
    before = {n: sha256(cache / f"{n}.parquet") for n in ("bad_b", "c", "e")}
    (root / "seeknal" / "nodes.yml").write_text(failing)

    result = run_failed(Project(root), max_workers=4)

    assert result.statuses() == C17_FIRST | {
        "source.payments": "cached",
        "transform.ok_a": "cached",
        "transform.d": "cached",
    }
    assert {n: sha256(cache / f"{n}.parquet") for n in before} == before
    assert Project(root).execution_plan().to_run == [
        "transform.bad_b",
        "transform.c",
        "transform.e",
    ]
