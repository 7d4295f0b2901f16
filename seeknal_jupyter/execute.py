"""The executor: a ready queue feeding worker threads, each with its own DuckDB
connection; nodes exchange data only through Parquet files."""

from __future__ import annotations

import codecs
import heapq
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import sqlglot
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from seeknal_jupyter.dag import Dag
from seeknal_jupyter.events import NodeFinished, NodeStarted, Reporters
from seeknal_jupyter.exposures import write_export
from seeknal_jupyter.fingerprint import source_paths
from seeknal_jupyter.loader import READERS, Node
from seeknal_jupyter.report import NodeResult
from seeknal_jupyter.sql import KINDS, quote_ident, quote_literal, referenced_nodes
from seeknal_jupyter.store import fsync_file, temp_path_for

log = logging.getLogger(__name__)

STATIC_ERRORS = (
    duckdb.ParserException,
    duckdb.BinderException,
    duckdb.CatalogException,
)


class NodeError(Exception):
    """A node cannot be built; the message is for the user."""


class MissingColumns(NodeError):
    """A source declares columns that its data file does not have.

    Attributes:
        missing: the declared columns not in the file, in declared order.
        found: the file's columns.
    """

    def __init__(self, table: str, missing: list[str], found: list[str]) -> None:
        super().__init__(
            f"declared {'column' if len(missing) == 1 else 'columns'} "
            f"{', '.join(missing)} not in {table}; the file has: {', '.join(found)}"
        )
        self.missing = missing
        self.found = found


@dataclass(frozen=True)
class Settings:
    """How every DuckDB connection of a run is configured: the same for every
    worker, whatever the number of workers.

    Each connection runs one thread. A query then gives the same rows in the
    same order and the same float sums on every run (a multi-threaded DuckDB
    orders GROUP BY and JOIN rows, and adds floats, in whatever order its threads
    finish), so sequential and parallel runs write byte-identical Parquet
    files. A run gets its parallelism from building independent nodes at once.
    """

    threads: int = 1
    memory_limit: str | None = None
    time_zone: str = "UTC"

    @classmethod
    def for_machine(cls) -> Settings:
        """One thread and an equal share of three quarters of the machine's memory.

        The share is that of the most workers a run has by default (one per
        core, at most 8), so it does not depend on the run's worker count; with
        more workers than that, their limits add up to more than three quarters.
        """
        workers = min(os.cpu_count() or 1, 8)
        try:
            memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return cls()
        share_mb = max(256, int(memory * 0.75 / workers) // 2**20)
        return cls(memory_limit=f"{share_mb}MB")


@dataclass
class Task:
    """What a worker needs to build one node."""

    node: Node
    fingerprint: str
    layer: int
    snapshot: Path
    root: Path
    export_path: Path | None = None
    columns: list[list[str]] | None = None
    inputs: dict[str, Path] = field(default_factory=dict)

    @property
    def node_id(self) -> str:
        return self.node.id


@dataclass(frozen=True)
class Built:
    rows: int
    columns: list[list[str]]
    seconds: float


def open_connection(settings: Settings) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB connection configured from ``settings``."""
    config: dict[str, Any] = {"threads": settings.threads}
    if settings.memory_limit:
        config["memory_limit"] = settings.memory_limit
    conn = configure(duckdb.connect(":memory:", config=config), settings)
    for kind in KINDS:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(kind)}")
    return conn


@contextmanager
def connection() -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection for reading outputs outside a run, configured like a worker's,
    closed afterwards."""
    conn = open_connection(Settings.for_machine())
    try:
        yield conn
    finally:
        conn.close()


def configure(
    conn: duckdb.DuckDBPyConnection, settings: Settings
) -> duckdb.DuckDBPyConnection:
    """Apply the per-connection settings (a cursor does not inherit them)."""
    conn.execute(f"SET TimeZone = {quote_literal(settings.time_zone)}")
    conn.execute("SET enable_progress_bar = false")
    return conn


class ThreadConnections:
    """One DuckDB connection per worker thread, created on the thread's first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[duckdb.DuckDBPyConnection] = []

    def get(self) -> duckdb.DuckDBPyConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = open_connection(self.settings)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close_all(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return quote_literal(str(value))


BLANK_FILE_BYTES = 64
CSV_OPTION_NAMES = {"delimiter": "delim", "sep": "delim", "separator": "delim"}


def source_read(node: Node, root: Path, typed: bool = True) -> str:
    """The DuckDB table function call that reads a source's file(s), unchecked.

    ``typed`` False leaves out the declared types of a CSV's columns, so the
    file's own columns can be read even when a declared one is not among them.
    """
    pattern = str(node.spec["table"])
    full = pattern if os.path.isabs(pattern) else str(root / pattern)
    fmt = node.spec.get("source")
    params = dict(node.spec.get("params") or {})
    if fmt == "csv":
        options: dict[str, Any] = {"header": True}
        for key, value in params.items():
            name = str(key).lower()
            options[CSV_OPTION_NAMES.get(name, name)] = value
        args = [f"{k} = {_literal(v)}" for k, v in options.items()]
        if node.schema and options["header"] is False:
            names = ", ".join(quote_literal(c) for c, _ in node.schema)
            args.append(f"names = [{names}]")
        if node.schema and typed:
            types = ", ".join(
                f"{quote_literal(c)}: {quote_literal(t)}" for c, t in node.schema
            )
            args.append(f"types = {{{types}}}")
        return f"read_csv({quote_literal(full)}, {', '.join(args)})"
    reader = READERS[str(fmt)]
    extra = "".join(f", {k} = {_literal(v)}" for k, v in params.items())
    return f"{reader}({quote_literal(full)}{extra})"


def check_source_files(node: Node, root: Path) -> None:
    """Fail clearly when a source's data file is missing or empty."""
    table = node.spec["table"]
    paths = source_paths(root, node)
    existing = [p for p in paths if p.exists()]
    if not existing:
        raise NodeError(f"data file {table} not found (relative to {root})")
    if all(p.stat().st_size == 0 for p in existing):
        raise NodeError(f"data file {table} is empty (0 bytes, no header row)")
    if all(_blank(p) for p in existing):
        raise NodeError(
            f"data file {table} is empty (only blank lines or a byte-order mark, "
            "no header row)"
        )


def _blank(path: Path) -> bool:
    """Whether a small file holds nothing but whitespace and a UTF-8 byte-order
    mark (DuckDB would read it as one made-up column)."""
    if path.stat().st_size > BLANK_FILE_BYTES:
        return False
    return not path.read_bytes().removeprefix(codecs.BOM_UTF8).strip()


def describe(conn: duckdb.DuckDBPyConnection, query: str) -> list[list[str]]:
    """Column names and types of a query, without running it."""
    return [[r[0], r[1]] for r in conn.execute(f"DESCRIBE {query}").fetchall()]


def source_query(
    conn: duckdb.DuckDBPyConnection, node: Node, root: Path, checked: bool = False
) -> str:
    """SELECT over a source's file with its declared schema applied, in order.

    Unless ``checked`` (the schema check already bound it), the file's columns are
    read first to name any declared column it lacks (in any case, as DuckDB
    matches names).

    Raises:
        MissingColumns: a declared column is not in the file.
    """
    read = source_read(node, root)
    if not node.schema:
        return f"SELECT * FROM {read}"
    columns = ", ".join(
        f"CAST({quote_ident(c)} AS {t}) AS {quote_ident(c)}" for c, t in node.schema
    )
    if checked:
        return f"SELECT {columns} FROM {read}"
    untyped = source_read(node, root, typed=False)
    found = [c for c, _ in describe(conn, f"SELECT * FROM {untyped}")]
    present = {c.lower() for c in found}
    missing = [c for c, _ in node.schema if c.lower() not in present]
    if missing:
        raise MissingColumns(str(node.spec["table"]), missing, found)
    return f"SELECT {columns} FROM {read}"


def sql_body(sql: str) -> str:
    """A node's SQL as it runs, ready to be wrapped in a subquery.

    Leading whitespace is dropped, and so is everything after the last token
    that is not a semicolon: semicolons, comments and whitespace. Every line
    kept keeps its number. SQL that does not tokenize is only stripped; DuckDB
    then reports its syntax error.
    """
    text = sql.lstrip()
    try:
        tokens = sqlglot.tokenize(text, read="duckdb")
    except SqlglotError:
        return text.rstrip().rstrip(";").rstrip()
    kept = [t for t in tokens if t.token_type != TokenType.SEMICOLON]
    return text[: kept[-1].end + 1] if kept else ""


def _body(node: Node) -> str:
    if node.sql:
        return sql_body(node.sql)
    kind, name = node.inputs[0].split(".", 1)
    return f"SELECT * FROM {quote_ident(kind)}.{quote_ident(name)}"


def _check_contract(
    conn: duckdb.DuckDBPyConnection, node: Node, body: str, wanted: list[str]
) -> None:
    produced = [c for c, _ in describe(conn, f"SELECT * FROM ({body}\n)")]
    missing = [c for c in wanted + [f for f, _ in node.features] if c not in produced]
    if missing:
        raise NodeError(
            f"{'feature or key' if len(missing) == 1 else 'features or keys'} "
            f"{', '.join(missing)} not in the SQL output; "
            f"it produced: {', '.join(produced)}"
        )


def node_query(
    conn: duckdb.DuckDBPyConnection, node: Node, root: Path, checked: bool = False
) -> str:
    """The SELECT that produces a node's output; inputs must already be visible.

    Args:
        conn: the connection the inputs are visible on.
        node: the node.
        root: the project folder (sources' paths are relative to it).
        checked: the schema check already bound this node, so the columns its
            SQL or file produces need not be read again to check the contract.

    Raises:
        NodeError: a declared column or feature is not produced.
    """
    if node.kind == "source":
        return source_query(conn, node, root, checked)
    body = _body(node)
    if node.kind != "feature_group":
        return body
    wanted = list(node.join_keys)
    if node.event_time_col:
        wanted.append(node.event_time_col)
    if not checked:
        _check_contract(conn, node, body, wanted)
    features = [c for c, _ in node.features]
    keys = [c for c in wanted if c not in features]
    columns = [quote_ident(c) for c in keys] + [
        f"CAST({quote_ident(c)} AS {t}) AS {quote_ident(c)}" for c, t in node.features
    ]
    return f"SELECT {', '.join(columns)} FROM ({body}\n) AS __seeknal_feature_group"


def attach_inputs(
    conn: duckdb.DuckDBPyConnection, node: Node, inputs: dict[str, Path]
) -> list[str]:
    """Create a view per input as ``kind.name``, and by bare name where needed.

    Returns the view names, to drop afterwards.
    """
    created = []
    bare = set(bare_name_inputs(node))
    for input_id in node.inputs:
        kind, name = input_id.split(".", 1)
        read = f"SELECT * FROM read_parquet({quote_literal(str(inputs[input_id]))})"
        views = [f"{quote_ident(kind)}.{quote_ident(name)}"]
        if input_id in bare:
            views.append(f"main.{quote_ident(name)}")
        for view in views:
            conn.execute(f"CREATE OR REPLACE VIEW {view} AS {read}")
            created.append(view)
    return created


def bare_name_inputs(node: Node) -> list[str]:
    """Inputs the SQL may read by bare name: those it does not name as ``kind.name``,
    whose name no other input shares."""
    if not node.sql:
        return []
    qualified = set(referenced_nodes(node.sql))
    names = [i.split(".", 1)[1] for i in node.inputs]
    return [
        i
        for i in node.inputs
        if i not in qualified and names.count(i.split(".", 1)[1]) == 1
    ]


WIDE_INTEGERS = ("HUGEINT", "UHUGEINT")


def parquet_safe(
    conn: duckdb.DuckDBPyConnection,
    query: str,
    columns: list[list[str]] | None = None,
) -> tuple[str, list[list[str]]]:
    """The query with 128-bit integer columns cast to BIGINT, and its columns.

    DuckDB's Parquet writer stores HUGEINT (what SUM of integers returns) as DOUBLE,
    which loses precision silently; BIGINT keeps integers exact and fails loudly on
    the rare value that does not fit.

    Args:
        conn: the connection the query's inputs are visible on.
        query: the node's SELECT.
        columns: the query's columns when the schema check already bound it;
            otherwise they are read with a DESCRIBE.
    """
    if columns is None:
        columns = describe(conn, query)
    wide = [c for c, t in columns if t in WIDE_INTEGERS]
    if not wide:
        return query, columns
    casts = ", ".join(
        f"CAST({quote_ident(c)} AS BIGINT) AS {quote_ident(c)}" for c in wide
    )
    columns = [[c, "BIGINT" if c in wide else t] for c, t in columns]
    return f"SELECT * REPLACE ({casts}) FROM ({query}\n) AS __seeknal_output", columns


def build(conn: duckdb.DuckDBPyConnection, task: Task) -> Built:
    """Compute one node into its snapshot file (and export), atomically."""
    started = time.perf_counter()
    node = task.node
    if node.kind == "source":
        check_source_files(node, task.root)
    views = attach_inputs(conn, node, task.inputs)
    task.snapshot.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(task.snapshot)
    try:
        checked = task.columns is not None
        query = node_query(conn, node, task.root, checked)
        query, columns = parquet_safe(conn, query, task.columns)
        log.debug("%s: writing %s from:\n%s", node.id, task.snapshot.name, query)
        rows = conn.execute(
            f"COPY ({query}\n) TO {quote_literal(str(tmp))} (FORMAT parquet)"
        ).fetchone()
        fsync_file(tmp)
        os.replace(tmp, task.snapshot)
        if task.export_path is not None and node.export is not None:
            write_export(conn, task.snapshot, task.export_path, node.export[1])
    finally:
        tmp.unlink(missing_ok=True)
        for view in views:
            conn.execute(f"DROP VIEW IF EXISTS {view}")
    return Built(int(rows[0]) if rows else 0, columns, time.perf_counter() - started)


def describe_error(task: Task, error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines()]
    message = []
    for line in lines:
        if line.startswith("LINE "):
            break
        if line:
            message.append(line)
    first = " ".join(message[:3])
    if "INT128" in first and "INT64" in first:
        first += (
            " (outputs store 128-bit integers such as SUM() results as BIGINT; "
            "cast this column to DOUBLE or DECIMAL(38,0) in the SQL)"
        )
    return f"{task.node_id} ({task.node.location}) failed: {first}"


@dataclass
class Outcome:
    status: str
    built: Built | None = None
    error: str | None = None
    seconds: float = 0.0


OnSuccess = Callable[[Task, Built], None]

CANCELLED_BEFORE_START = "run cancelled before it started"


class Executor:
    """Runs tasks on worker threads as soon as their inputs are done.

    The thread that calls :meth:`run` owns scheduling, state callbacks and the
    reporters; workers only build nodes and post events.
    """

    def __init__(
        self,
        dag: Dag,
        workers: int,
        settings: Settings,
        reporters: Reporters,
        cancel: threading.Event | None = None,
        fail_fast: bool = False,
        tick_seconds: float = 0.1,
    ) -> None:
        self.dag = dag
        self.workers = max(1, workers)
        self.connections = ThreadConnections(settings)
        self.reporters = reporters
        self.cancel = cancel or threading.Event()
        self.fail_fast = fail_fast
        self.tick_seconds = tick_seconds
        self._events: queue.Queue[NodeStarted] = queue.Queue()
        self._busy: dict[str, duckdb.DuckDBPyConnection] = {}
        self._busy_lock = threading.Lock()

    def _work(self, task: Task) -> Outcome:
        conn = self.connections.get()
        if self.cancel.is_set():
            return Outcome(
                "cancelled", error=f"{task.node_id}: cancelled before it started"
            )
        with self._busy_lock:
            self._busy[task.node_id] = conn
        self._events.put(
            NodeStarted(
                task.node_id, task.layer, threading.current_thread().name, time.time()
            )
        )
        started = time.perf_counter()
        try:
            built = build(conn, task)
            return Outcome("success", built, seconds=built.seconds)
        except duckdb.InterruptException:
            return Outcome(
                "cancelled",
                error=f"{task.node_id}: interrupted while running",
                seconds=time.perf_counter() - started,
            )
        except (NodeError, duckdb.Error, OSError) as error:
            return Outcome(
                "failed",
                error=describe_error(task, error),
                seconds=time.perf_counter() - started,
            )
        finally:
            with self._busy_lock:
                self._busy.pop(task.node_id, None)

    def _stop(self, running: dict[Future[Outcome], str]) -> None:
        """Interrupt workers still running when the loop ends by an exception."""
        pending = [f for f in running if not f.done()]
        while pending:
            self.cancel.set()
            self._interrupt_running()
            pending = list(wait(pending, timeout=self.tick_seconds).not_done)

    def _interrupt_running(self) -> None:
        with self._busy_lock:
            for conn in self._busy.values():
                conn.interrupt()

    def _height(self, tasks: dict[str, Task]) -> dict[str, int]:
        height: dict[str, int] = {}
        for node_id in reversed(self.dag.order):
            if node_id in tasks:
                below = [height[d] for d in self.dag.downstream[node_id] if d in height]
                height[node_id] = 1 + max(below, default=0)
        return height

    def _flush_events(self) -> None:
        while True:
            try:
                self.reporters.handle(self._events.get_nowait())
            except queue.Empty:
                return

    def run(
        self,
        tasks: dict[str, Task],
        input_path: Callable[[str], Path],
        on_success: OnSuccess,
    ) -> dict[str, NodeResult]:
        """Build every task, each once all its inputs are built.

        Args:
            tasks: the nodes to build, by id.
            input_path: where to read an input that is not among ``tasks``.
            on_success: called on this thread after each node's snapshot is written.

        Returns:
            A result per task: success, failed, skipped or cancelled.
        """
        results: dict[str, NodeResult] = {}
        order = {n: i for i, n in enumerate(self.dag.order)}
        height = self._height(tasks)
        waiting = {
            n: {i for i in t.node.inputs if i in tasks} for n, t in tasks.items()
        }
        ready: list[tuple[int, int, str]] = []
        for node_id, inputs in waiting.items():
            if not inputs:
                heapq.heappush(ready, (-height[node_id], order[node_id], node_id))
        running: dict[Future[Outcome], str] = {}
        stopping: str | None = None
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="seeknal-worker")
        try:
            while ready or running:
                try:
                    while ready and not stopping and len(running) < self.workers:
                        node_id = heapq.heappop(ready)[2]
                        task = tasks[node_id]
                        for input_id in task.node.inputs:
                            task.inputs[input_id] = (
                                tasks[input_id].snapshot
                                if input_id in tasks
                                else input_path(input_id)
                            )
                        running[pool.submit(self._work, task)] = node_id
                    if not running:
                        break
                    done, _ = wait(
                        list(running),
                        timeout=self.tick_seconds,
                        return_when=FIRST_COMPLETED,
                    )
                    self._flush_events()
                    self.reporters.tick()
                    for future in done:
                        task = tasks[running[future]]
                        outcome = future.result()
                        if task.node_id not in results:
                            if outcome.status == "success" and outcome.built:
                                on_success(task, outcome.built)
                            self._finish(results, task, outcome)
                        if outcome.status == "success":
                            for nxt in self.dag.downstream[task.node_id]:
                                if nxt in waiting and task.node_id in waiting[nxt]:
                                    waiting[nxt].discard(task.node_id)
                                    if not waiting[nxt] and nxt not in results:
                                        rank = (-height[nxt], order[nxt], nxt)
                                        heapq.heappush(ready, rank)
                        else:
                            self._skip_downstream(results, tasks, task.node_id)
                            if self.fail_fast and not stopping:
                                stopping = "fail-fast"
                        del running[future]
                except KeyboardInterrupt:
                    self.cancel.set()
                if self.cancel.is_set():
                    stopping = "cancel"
                    self._interrupt_running()
        finally:
            self._stop(running)
            pool.shutdown(wait=True)
            self._flush_events()
            self.connections.close_all()
        for node_id in self.dag.order:
            if node_id in tasks and node_id not in results:
                status = "cancelled" if stopping == "cancel" else "skipped"
                reason = (
                    CANCELLED_BEFORE_START
                    if stopping == "cancel"
                    else "not started: --fail-fast after a failure"
                )
                self._finish(
                    results, tasks[node_id], Outcome(status, error=None), reason
                )
        return results

    def _finish(
        self,
        results: dict[str, NodeResult],
        task: Task,
        outcome: Outcome,
        reason: str | None = None,
    ) -> None:
        result = NodeResult(
            task.node_id,
            task.layer,
            outcome.status,
            outcome.built.rows if outcome.built else None,
            outcome.seconds,
            outcome.error,
            reason,
        )
        results[task.node_id] = result
        self.reporters.handle(
            NodeFinished(
                result.node_id,
                result.layer,
                result.status,
                result.rows,
                result.seconds,
                result.error,
                result.reason,
            )
        )

    def _skip_downstream(
        self, results: dict[str, NodeResult], tasks: dict[str, Task], stopped: str
    ) -> None:
        """Finish the descendants of a node that failed or was cancelled.

        A failure's descendants are SKIPPED. A node is cancelled only when the
        run is, so its descendants are CANCELLED: not started because the run
        was cancelled.
        """
        status = "cancelled" if results[stopped].status == "cancelled" else "skipped"
        cause = {stopped: results[stopped].status}
        for node_id in self.dag.order:
            if node_id not in tasks or node_id in results:
                continue
            upstream = [i for i in self.dag.nodes[node_id].inputs if i in cause]
            if upstream:
                reason = (
                    CANCELLED_BEFORE_START
                    if status == "cancelled"
                    else f"upstream {upstream[0]} {cause[upstream[0]]}"
                )
                self._finish(results, tasks[node_id], Outcome(status), reason)
                cause[node_id] = status
