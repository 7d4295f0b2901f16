"""Tests of the executor: ready-queue scheduling, worker connections, failures and
cancellation, on real DuckDB connections and Parquet files."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from seeknal_jupyter import execute
from seeknal_jupyter.errors import RunFailed
from seeknal_jupyter.events import Event, NodeFinished, NodeStarted, RunStarted
from seeknal_jupyter.examples import init_example
from seeknal_jupyter.project import Project
from seeknal_jupyter.report import RunResult

LONG_QUERY = "SELECT SUM(r) AS total FROM range(10000000000) AS t(r)"


def write_project(root: Path, nodes: str) -> Path:
    (root / "seeknal").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data" / "numbers.csv").write_text("n\n1\n2\n3\n")
    (root / "seeknal" / "nodes.yml").write_text(
        "kind: source\nname: numbers\nsource: csv\ntable: data/numbers.csv\n"
        "---\n" + nodes
    )
    return root


def transform(name: str, sql: str, inputs: tuple[str, ...] = ()) -> str:
    listed = "".join(f"  - ref: {i}\n" for i in inputs)
    return (
        f"kind: transform\nname: {name}\n"
        + (f"inputs:\n{listed}" if inputs else "")
        + f"transform: |\n  {sql}\n---\n"
    )


def output(project: Project, node: str) -> list[tuple[Any, ...]]:
    with duckdb.connect() as conn:
        query = (
            f"SELECT * FROM read_parquet('{project.output_path(node)}') ORDER BY ALL"
        )
        return conn.execute(query).fetchall()


class Recorder:
    """A reporter that keeps every event and can act on one."""

    def __init__(self, on_event: Any = None) -> None:
        self.events: list[tuple[float, Event]] = []
        self.on_event = on_event
        self.ticks = 0
        self.threads: set[str] = set()

    def handle(self, event: Event) -> None:
        self.threads.add(threading.current_thread().name)
        self.events.append((time.monotonic(), event))
        if self.on_event is not None:
            self.on_event(event)

    def tick(self) -> None:
        self.ticks += 1

    def finished(self) -> list[str]:
        return [e.node_id for _, e in self.events if isinstance(e, NodeFinished)]


def run_failed(project: Project, **options: Any) -> RunResult:
    with pytest.raises(RunFailed) as failure:
        project.run(**options)
    return failure.value.result


def test_a_node_starts_when_its_inputs_are_done_not_its_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = transform("slow", "SELECT 1 AS one", ("source.numbers",))
    nodes += transform("a", "SELECT n FROM numbers", ("source.numbers",))
    nodes += transform("b", "SELECT n * 2 AS m FROM transform.a")
    project = Project(write_project(tmp_path, nodes))
    b_started = threading.Event()
    original = execute.build

    def build(conn: duckdb.DuckDBPyConnection, task: execute.Task) -> Any:
        if task.node_id == "transform.slow":
            assert b_started.wait(20), "transform.b waited for the whole layer"
        if task.node_id == "transform.b":
            b_started.set()
        return original(conn, task)

    monkeypatch.setattr(execute, "build", build)

    result = project.run(max_workers=2)

    assert result.ok
    assert [result.nodes[n].layer for n in ("transform.a", "transform.b")] == [1, 2]
    assert result.nodes["transform.slow"].layer == 1
    assert output(project, "b") == [(2,), (4,), (6,)]


def test_every_worker_connection_is_configured_the_same(tmp_path: Path) -> None:
    setting = (
        "SELECT current_setting('TimeZone') AS tz, current_setting('threads') AS "
        "threads, current_setting('memory_limit') AS memory, "
        "(SELECT COUNT(*) FROM numbers) AS n"
    )
    nodes = "".join(
        transform(f"probe{i}", setting, ("source.numbers",)) for i in range(6)
    )
    project = Project(write_project(tmp_path, nodes))
    seen = set()

    for workers in (1, 3, 8):
        project.run(max_workers=workers, full=True)
        seen |= {tuple(output(project, f"probe{i}")[0]) for i in range(6)}

    assert len(seen) == 1
    tz, threads, memory, n = seen.pop()
    assert (tz, threads, n) == ("UTC", 1, 3)
    settings = execute.Settings.for_machine()
    assert settings.threads == 1 and settings.memory_limit is not None
    assert memory != ""


def sha256_of_outputs(project: Project) -> dict[str, str]:
    """SHA-256 of every node's current Parquet output."""
    state = project.store.load_state("prod")
    return {
        node_id: hashlib.sha256(
            (project.target / entry.snapshot).read_bytes()
        ).hexdigest()
        for node_id, entry in state.entries.items()
    }


def runs_digests(project: Project) -> list[dict[str, str]]:
    """Output digests of two sequential full runs and one with 8 workers."""
    digests = []
    for workers in (1, 1, 8):
        result = project.run(max_workers=workers, full=True)
        assert set(result.statuses().values()) == {"success"}
        digests.append(sha256_of_outputs(project))
    return digests


def test_fraud_outputs_are_byte_identical_sequential_or_parallel(
    tmp_path: Path,
) -> None:
    root = init_example("fraud-detection", tmp_path / "fraud", scale=3)
    project = Project(root)

    first, second, parallel = runs_digests(project)

    assert len(first) == 15
    assert first == second == parallel


def test_float_sums_and_many_groups_are_byte_identical_run_to_run(
    tmp_path: Path,
) -> None:
    root = tmp_path / "groups"
    (root / "seeknal").mkdir(parents=True)
    (root / "data").mkdir()
    with duckdb.connect() as conn:
        conn.execute(
            "COPY (SELECT r AS id, r % 50000 AS g, sqrt(r) / 7 AS x "
            "FROM range(600000) AS t(r)) "
            f"TO '{root / 'data' / 'facts.parquet'}' (FORMAT parquet)"
        )
    (root / "seeknal" / "nodes.yml").write_text(
        "kind: source\nname: facts\nsource: parquet\ntable: data/facts.parquet\n"
        "---\n"
        + transform(
            "sums",
            "SELECT g, sum(x) AS total, count(*) AS n FROM source.facts GROUP BY g",
        )
        + transform(
            "joined",
            "SELECT f.id, f.x * s.total AS weighted FROM source.facts AS f "
            "JOIN transform.sums AS s ON f.g = s.g",
        )
        + transform("grand", "SELECT sum(x) AS total FROM source.facts")
    )
    project = Project(root)

    first, second, parallel = runs_digests(project)

    assert first == second == parallel
    sums = output(project, "sums")
    assert len(sums) == 50000 and sum(n for *_, n in sums) == 600000
    assert output(project, "grand")[0][0] == pytest.approx(
        sum(r**0.5 for r in range(600000)) / 7
    )


def test_thread_connections_are_per_thread_and_reused() -> None:
    connections = execute.ThreadConnections(execute.Settings())
    seen: dict[str, list[int]] = {}
    lock = threading.Lock()

    def use(name: str) -> None:
        for _ in range(3):
            conn = connections.get()
            conn.execute("SELECT 42").fetchall()
            with lock:
                seen.setdefault(name, []).append(id(conn))

    threads = [threading.Thread(target=use, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert all(len(set(ids)) == 1 for ids in seen.values())
        assert len({ids[0] for ids in seen.values()}) == 4
    finally:
        connections.close_all()


def test_events_reach_reporters_on_the_calling_thread(tmp_path: Path) -> None:
    nodes = transform("a", "SELECT n FROM numbers", ("source.numbers",))
    nodes += transform("b", "SELECT n FROM numbers", ("source.numbers",))
    project = Project(write_project(tmp_path, nodes))
    recorder = Recorder()

    project.run(max_workers=2, reporter=recorder)

    assert recorder.threads == {threading.current_thread().name}
    kinds = [type(e).__name__ for _, e in recorder.events]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished"
    assert kinds.count("NodeStarted") == kinds.count("NodeFinished") == 3
    started = [e for _, e in recorder.events if isinstance(e, NodeStarted)]
    assert {e.worker.split("_")[0] for e in started} == {"seeknal-worker"}


def test_sequential_and_parallel_runs_share_state(tmp_path: Path) -> None:
    nodes = transform("a", "SELECT n FROM numbers", ("source.numbers",))
    nodes += transform("b", "SELECT SUM(n) AS s FROM transform.a")
    root = write_project(tmp_path, nodes)

    assert Project(root).run().count("success") == 3
    assert Project(root).run(max_workers=4).count("cached") == 3
    nodes_file = root / "seeknal" / "nodes.yml"
    nodes_file.write_text(nodes_file.read_text().replace("SUM(n)", "MAX(n)"))
    parallel = Project(root).run(max_workers=4)
    sequential = Project(root).run()

    assert parallel.statuses() == {
        "source.numbers": "cached",
        "transform.a": "cached",
        "transform.b": "success",
    }
    assert set(sequential.statuses().values()) == {"cached"}
    assert output(Project(root), "b") == [(3,)]


def test_fail_fast_lets_running_nodes_finish_and_starts_no_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = transform("slow", "SELECT n FROM numbers", ("source.numbers",))
    nodes += transform(
        "bad", "SELECT CAST('x' || n AS INTEGER) AS broken FROM numbers", ("numbers",)
    )
    nodes += transform("later", "SELECT n FROM numbers", ("source.numbers",))
    project = Project(write_project(tmp_path, nodes))
    bad_finished = threading.Event()
    original = execute.build

    def build(conn: duckdb.DuckDBPyConnection, task: execute.Task) -> Any:
        if task.node_id == "transform.slow":
            assert bad_finished.wait(20)
        return original(conn, task)

    def on_event(event: Event) -> None:
        if isinstance(event, NodeFinished) and event.node_id == "transform.bad":
            bad_finished.set()

    monkeypatch.setattr(execute, "build", build)

    result = run_failed(
        project, max_workers=2, fail_fast=True, reporter=Recorder(on_event)
    )

    assert result.statuses() == {
        "source.numbers": "success",
        "transform.slow": "success",
        "transform.bad": "failed",
        "transform.later": "skipped",
    }
    assert result.nodes["transform.later"].reason == (
        "not started: --fail-fast after a failure"
    )
    assert output(project, "slow") == [(1,), (2,), (3,)]


def test_without_fail_fast_independent_nodes_go_on(tmp_path: Path) -> None:
    nodes = transform("bad", "SELECT CAST('x' AS INTEGER) AS broken")
    nodes += transform("child", "SELECT * FROM transform.bad")
    nodes += transform("later", "SELECT n FROM numbers", ("source.numbers",))
    project = Project(write_project(tmp_path, nodes))

    result = run_failed(project, max_workers=1)

    assert result.statuses() == {
        "source.numbers": "success",
        "transform.bad": "failed",
        "transform.later": "success",
        "transform.child": "skipped",
    }
    error = str(result.nodes["transform.bad"].error)
    assert "transform.bad" in error and "seeknal/nodes.yml:6" in error
    assert "Could not convert string 'x' to INT32" in error


def long_project(tmp_path: Path) -> Project:
    nodes = transform("long", LONG_QUERY + " CROSS JOIN numbers", ("source.numbers",))
    nodes += transform("after_long", "SELECT total FROM transform.long")
    nodes += transform("quick", "SELECT n FROM numbers", ("source.numbers",))
    return Project(write_project(tmp_path, nodes))


def cancel_when_started(node: str, cancel: threading.Event) -> Recorder:
    def on_event(event: Event) -> None:
        if isinstance(event, NodeStarted) and event.node_id == node:
            cancel.set()

    return Recorder(on_event)


@pytest.mark.parametrize("workers", [1, 2])
def test_cancel_interrupts_a_long_query_and_the_next_run_resumes(
    tmp_path: Path, workers: int
) -> None:
    project = long_project(tmp_path)
    cancel = threading.Event()

    result = run_failed(
        project,
        max_workers=workers,
        cancel=cancel,
        reporter=cancel_when_started("transform.long", cancel),
    )

    statuses = result.statuses()
    assert statuses["source.numbers"] == "success"
    assert statuses["transform.long"] == "cancelled"
    assert result.nodes["transform.long"].error == (
        "transform.long: interrupted while running"
    )
    assert statuses["transform.after_long"] == "cancelled"
    assert result.nodes["transform.after_long"].reason == (
        "run cancelled before it started"
    )
    assert statuses["transform.quick"] in ("success", "cancelled")
    assert result.headline().startswith("Run cancelled: ")
    state = project.store.load_state("prod")
    assert set(state.entries) == {n for n, s in statuses.items() if s == "success"}
    assert not list((tmp_path / "target").rglob("*.partial"))

    nodes_file = tmp_path / "seeknal" / "nodes.yml"
    nodes_file.write_text(nodes_file.read_text().replace("10000000000", "10"))
    resumed = project.run(max_workers=workers)

    assert resumed.statuses()["source.numbers"] == "cached"
    assert resumed.statuses()["transform.long"] == "success"
    assert output(project, "after_long") == [(135,)]


def test_descendants_of_a_cancelled_node_are_cancelled_not_skipped(
    tmp_path: Path,
) -> None:
    nodes = transform("long", LONG_QUERY + " CROSS JOIN numbers", ("source.numbers",))
    nodes += transform("after_long", "SELECT total FROM transform.long")
    nodes += transform("last", "SELECT total FROM transform.after_long")
    nodes += transform("quick", "SELECT n FROM numbers", ("source.numbers",))
    project = Project(write_project(tmp_path, nodes))
    cancel = threading.Event()

    result = run_failed(
        project,
        max_workers=1,
        cancel=cancel,
        reporter=cancel_when_started("transform.long", cancel),
    )

    assert result.statuses() == {
        "source.numbers": "success",
        "transform.long": "cancelled",
        "transform.after_long": "cancelled",
        "transform.last": "cancelled",
        "transform.quick": "cancelled",
    }
    assert {n: r.reason for n, r in result.nodes.items() if r.reason} == {
        "transform.after_long": "run cancelled before it started",
        "transform.last": "run cancelled before it started",
        "transform.quick": "run cancelled before it started",
    }
    assert result.headline().startswith(
        "Run cancelled: 1 executed, 0 cached, 4 cancelled of 5 nodes in "
    )


def test_cancel_just_before_the_query_starts_still_interrupts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = long_project(tmp_path)
    cancel = threading.Event()
    interrupted = threading.Event()
    original_attach = execute.attach_inputs
    original_interrupt = execute.Executor._interrupt_running

    def interrupt(executor: execute.Executor) -> None:
        original_interrupt(executor)
        interrupted.set()

    def attach(conn: duckdb.DuckDBPyConnection, node: Any, inputs: Any) -> Any:
        if node.id == "transform.long":
            cancel.set()
            assert interrupted.wait(20)
        return original_attach(conn, node, inputs)

    monkeypatch.setattr(execute.Executor, "_interrupt_running", interrupt)
    monkeypatch.setattr(execute, "attach_inputs", attach)

    result = run_failed(project, max_workers=1, cancel=cancel)

    assert result.statuses()["transform.long"] == "cancelled"


def test_an_error_in_a_reporter_interrupts_running_queries(tmp_path: Path) -> None:
    project = long_project(tmp_path)

    def on_event(event: Event) -> None:
        if isinstance(event, NodeStarted) and event.node_id == "transform.long":
            raise RuntimeError("the front end broke")

    with pytest.raises(RuntimeError, match="the front end broke"):
        project.run(max_workers=1, reporter=Recorder(on_event))

    state = project.store.load_state("prod")
    assert set(state.entries) == {"source.numbers"}
    assert project.run(max_workers=1, nodes=["quick"]).statuses() == {
        "transform.quick": "success"
    }


@pytest.mark.parametrize("event_type", [NodeStarted, NodeFinished])
def test_a_keyboard_interrupt_anywhere_in_the_loop_cancels_the_run(
    tmp_path: Path, event_type: type
) -> None:
    project = long_project(tmp_path)
    interrupts: list[Event] = []

    def on_event(event: Event) -> None:
        if isinstance(event, event_type) and not interrupts:
            interrupts.append(event)
            raise KeyboardInterrupt

    result = run_failed(project, max_workers=2, reporter=Recorder(on_event))

    statuses = result.statuses()
    assert statuses["source.numbers"] == "success"
    assert statuses["transform.long"] == "cancelled"
    state = project.store.load_state("prod")
    assert set(state.entries) == {n for n, s in statuses.items() if s == "success"}


def test_run_started_lists_what_runs_and_what_is_cached(tmp_path: Path) -> None:
    nodes = transform("a", "SELECT n FROM numbers", ("source.numbers",))
    project = Project(write_project(tmp_path, nodes))
    project.run()
    (tmp_path / "seeknal" / "nodes.yml").write_text(
        (tmp_path / "seeknal" / "nodes.yml")
        .read_text()
        .replace("SELECT n", "SELECT n + 1 AS m, n")
    )
    recorder = Recorder()

    project.run(reporter=recorder)

    started = [e for _, e in recorder.events if isinstance(e, RunStarted)]
    assert len(started) == 1
    assert started[0].to_run == ["transform.a"]
    assert started[0].cached == ["source.numbers"]
    assert started[0].layers == [["source.numbers"], ["transform.a"]]


def test_integer_sums_are_stored_as_exact_bigint_not_double(tmp_path: Path) -> None:
    big = 2**53 + 1
    nodes = transform(
        "totals",
        f"SELECT SUM(n) AS total, SUM(n) + {big} AS large FROM source.numbers",
        ("source.numbers",),
    )
    project = Project(write_project(tmp_path, nodes))

    project.run()

    assert output(project, "totals") == [(6, 6 + big)]
    with duckdb.connect() as conn:
        types = conn.execute(
            f"DESCRIBE SELECT * FROM read_parquet('{project.output_path('totals')}')"
        ).fetchall()
    assert [(name, kind) for name, kind, *_ in types] == [
        ("total", "BIGINT"),
        ("large", "BIGINT"),
    ]


def test_a_sum_too_large_for_bigint_fails_with_a_hint(tmp_path: Path) -> None:
    nodes = transform(
        "checksum",
        "SELECT SUM(hash(n)) AS total FROM source.numbers",
        ("source.numbers",),
    )
    project = Project(write_project(tmp_path, nodes))

    with pytest.raises(RunFailed) as failure:
        project.run()

    error = failure.value.result.nodes["transform.checksum"].error or ""
    assert "transform.checksum" in error
    assert "cast this column to DOUBLE or DECIMAL(38,0)" in error
