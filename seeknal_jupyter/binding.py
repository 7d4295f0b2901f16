"""The schema check: every node's SQL bound against its inputs' columns, before
anything runs.

Each node is bound into an empty table of its output columns, so the nodes that
read it bind against those; independent nodes are bound at the same time, each
thread on its own cursor of one shared in-memory database.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import duckdb

from seeknal_jupyter.dag import Dag
from seeknal_jupyter.errors import Problem, ProjectError
from seeknal_jupyter.execute import (
    STATIC_ERRORS,
    MissingColumns,
    NodeError,
    Settings,
    bare_name_inputs,
    check_source_files,
    configure,
    describe,
    node_query,
    open_connection,
    sql_body,
)
from seeknal_jupyter.loader import READERS, SUGGEST_CUTOFF, Node, sql_file_line
from seeknal_jupyter.report import plural
from seeknal_jupyter.sql import quote_ident, quote_literal
from seeknal_jupyter.yamlfile import Mapping

log = logging.getLogger(__name__)

InputPath = Callable[[str], Path]


def check_schemas(
    dag: Dag,
    to_run: list[str],
    input_path: InputPath | None,
    root: Path,
    fps: dict[str, str],
    known: dict[str, list[list[str]]],
    workers: int | None = None,
) -> dict[str, list[list[str]]]:
    """Bind every node's SQL against its inputs' columns before anything runs.

    Syntax errors, unknown columns or tables, feature groups whose SQL lacks a
    declared feature, sources with an option their reader does not have or a
    declared column their file lacks are reported together as a ProjectError.
    Data problems (a missing or empty file, a failing cast) are left for the run
    to report.

    Args:
        dag: the project's nodes.
        to_run: the nodes to check, in topological order.
        input_path: where the output of an input outside ``to_run`` is.
        root: the project folder (sources' paths are relative to it).
        fps: every node's fingerprint.
        known: output columns by fingerprint of nodes checked before; those
            nodes take them and are not bound again.
        workers: threads binding independent nodes at the same time (default:
            one per core, at most 8).

    Returns:
        The output columns of each checked node, by fingerprint.

    Raises:
        ProjectError: every binding problem found.
    """
    if not to_run:
        return {}
    check = _Check(dag, set(to_run), input_path, root)
    for node_id in to_run:
        if fps[node_id] in known:
            check.columns[node_id] = known[fps[node_id]]
    try:
        check.bind_all(
            [n for n in to_run if n not in check.columns],
            workers or min(os.cpu_count() or 1, 8),
        )
    finally:
        check.conn.close()
    log.info(
        "checked the SQL of %s against their inputs' columns (%d remembered from "
        "an earlier check, %s)",
        plural(len(to_run), "node"),
        sum(1 for n in to_run if fps[n] in known),
        plural(len(check.problems), "problem"),
    )
    if check.problems:
        order = {n: i for i, n in enumerate(to_run)}
        check.problems.sort(key=lambda found: order[found[0]])
        raise ProjectError([problem for _, problem in check.problems])
    return {fps[n]: c for n, c in check.columns.items()}


class _Check:
    """One schema check: a database holding an empty table per bound node."""

    def __init__(
        self, dag: Dag, run_set: set[str], input_path: InputPath | None, root: Path
    ) -> None:
        self.dag = dag
        self.run_set = run_set
        self.input_path = input_path
        self.root = root
        self.settings = Settings()
        self.conn = open_connection(self.settings)
        self.columns: dict[str, list[list[str]]] = {}
        self.problems: list[tuple[str, Problem]] = []
        self.failed: set[str] = set()
        self.staged: set[str] = set()
        self.reader_options: dict[str, frozenset[str]] = {}
        self._local = threading.local()
        self._lock = threading.Lock()

    def bind_all(self, node_ids: list[str], workers: int) -> None:
        """Bind ``node_ids`` layer by layer, each layer's nodes at the same time."""
        bound: list[str] = []
        nodes = [self.dag.nodes[n] for n in node_ids]
        if any(n.kind == "source" and n.spec.get("params") for n in nodes):
            self.reader_options = _reader_options(self.conn)
        with self._cursors() as cursors, ThreadPoolExecutor(max(1, workers)) as pool:
            for layer in self.dag.layers(node_ids):
                ready = [n for n in layer if self._stage_inputs(n)]
                ok = pool.map(lambda n: self._bind(cursors(), n), ready)
                bound += [n for n, done in zip(ready, ok) if done]
        found = _table_columns(self.conn, bound)
        for node_id, columns in found.items():
            log.debug("%s binds to columns %s", node_id, columns)
        self.columns.update(found)

    def _stage_inputs(self, node_id: str) -> bool:
        """Make the node's inputs visible; False when one of them failed."""
        node = self.dag.nodes[node_id]
        if any(i in self.failed for i in node.inputs):
            self.failed.add(node_id)
            return False
        try:
            for input_id in node.inputs:
                if input_id not in self.staged:
                    _stage_input(
                        self.conn, input_id, self.columns, self.run_set, self.input_path
                    )
                    self.staged.add(input_id)
        except duckdb.Error as error:
            log.info("cannot check %s: an input does not open: %s", node_id, error)
            self.failed.add(node_id)
            return False
        return True

    def _bind(self, cursor: duckdb.DuckDBPyConnection, node_id: str) -> bool:
        node = self.dag.nodes[node_id]
        unknown = _unknown_options(node, self.reader_options)
        if unknown:
            for problem in unknown:
                self._fail(node_id, problem)
            return False
        try:
            if node.kind == "source":
                check_source_files(node, self.root)
        except NodeError as error:
            log.info("%s is not checked: %s", node_id, error)
            self._fail(node_id, None)
            return False
        try:
            _bind_node(cursor, node, self.root)
        except (NodeError, *STATIC_ERRORS) as error:
            if node.kind == "source":
                problem = _source_problem(node, error)
            else:
                problem = _schema_problem(node, error, _input_columns(cursor, node))
            self._fail(node_id, problem)
            return False
        except duckdb.Error as error:
            log.info("%s is not checked: %s", node_id, first_line(error))
            self._fail(node_id, None)
            return False
        self.staged.add(node_id)
        return True

    def _fail(self, node_id: str, problem: Problem | None) -> None:
        with self._lock:
            self.failed.add(node_id)
            if problem is not None:
                self.problems.append((node_id, problem))

    @contextmanager
    def _cursors(self) -> Iterator[Callable[[], duckdb.DuckDBPyConnection]]:
        """A function giving each thread its own cursor, closed afterwards."""
        made: list[duckdb.DuckDBPyConnection] = []

        def cursor() -> duckdb.DuckDBPyConnection:
            conn = getattr(self._local, "cursor", None)
            if conn is None:
                conn = self._local.cursor = configure(self.conn.cursor(), self.settings)
                with self._lock:
                    made.append(conn)
            return conn

        try:
            yield cursor
        finally:
            for conn in made:
                conn.close()


def _schema_problem(
    node: Node, error: Exception, inputs: list[tuple[str, list[str]]]
) -> Problem:
    """A binding error of a node's SQL, at the file line of the offending SQL line.

    DuckDB numbers lines of the query it was given, whose first line is the
    node's SQL's first line; a line beyond the SQL is the closing text we wrap it
    in, so the error is at the end of the user's SQL.
    """
    if isinstance(error, NodeError):
        return Problem(
            first_line(error),
            node.file,
            _key_line(node, "features"),
            node.id,
            "fix the SQL or the features so they match",
        )
    message, sql_line = _without_sql_position(str(error))
    if _missing_table(error) is not None:
        message = re.sub(r'\s*Did you mean "[^"]*"\?', "", message)
    sql = node.sql or ""
    body = sql_body(sql).splitlines() or [""]
    line = _key_line(node, "transform")
    if sql_line is not None:
        if sql_line > len(body):
            sql_line = len(body)
            message = re.sub(r'at or near "[^"]*"', "at the end of the SQL", message)
        elif isinstance(error, duckdb.ParserException):
            message += f" in: {body[sql_line - 1].strip()}"
        in_file = sql_file_line(node.spec, sql, sql_line)
        if in_file is None:
            message += f" (line {sql_line} of its SQL)"
        else:
            line = in_file
    return Problem(
        message, node.file, line, node.id, _binding_hint(error, node, inputs)
    )


def _reader_options(conn: duckdb.DuckDBPyConnection) -> dict[str, frozenset[str]]:
    """The named parameters of each source format's DuckDB reader, in lower case
    (``duckdb_functions()`` lists them after the positional path)."""
    rows = conn.execute(
        "SELECT function_name, parameters FROM duckdb_functions() "
        "WHERE function_type = 'table' AND list_contains(?, function_name)",
        [list(READERS.values())],
    ).fetchall()
    return {
        fmt: frozenset(
            name.lower()
            for reader_name, names in rows
            if reader_name == reader
            for name in names[1:]
        )
        for fmt, reader in READERS.items()
    }


def _unknown_options(
    node: Node, reader_options: dict[str, frozenset[str]]
) -> list[Problem]:
    """A problem per option of a source that its reader does not take (DuckDB
    matches option names in any case), at the option's line."""
    params = node.spec.get("params") if node.kind == "source" else None
    fmt = str(node.spec.get("source"))
    if not params or fmt not in reader_options:
        return []
    known = sorted(reader_options[fmt])
    problems = []
    for key in params:
        if str(key).lower() in reader_options[fmt]:
            continue
        close = difflib.get_close_matches(str(key).lower(), known, n=1, cutoff=0.6)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else f"use one of the named parameters of DuckDB's {READERS[fmt]}"
        )
        line = params.line_of(key) if isinstance(params, Mapping) else node.line
        problems.append(
            Problem(
                f"unknown option {key!r} of {READERS[fmt]} (the {fmt} reader)",
                node.file,
                line,
                node.id,
                hint,
            )
        )
    return problems


def _source_problem(node: Node, error: Exception) -> Problem:
    """A source that does not bind: a declared column its file lacks, at that
    column's ``schema`` entry, or DuckDB's error, at the reader's options."""
    if isinstance(error, MissingColumns):
        return Problem(
            first_line(error),
            node.file,
            _schema_line(node, error.missing[0]),
            node.id,
            "fix the column's name in 'schema', or read a file that has it",
        )
    message, _ = _without_sql_position(str(error))
    return Problem(
        message,
        node.file,
        _key_line(node, "params" if "params" in node.spec else "table"),
        node.id,
        "check the source's 'params' (its reader's options) and 'schema'",
    )


def _schema_line(node: Node, column: str) -> int:
    """The line declaring a source's column: its ``schema`` entry, else its key
    under ``columns``."""
    spec = node.spec
    if not isinstance(spec, Mapping):
        return node.line
    for entry in spec.get("schema") or []:
        if isinstance(entry, Mapping) and str(entry.get("name")) == column:
            return entry.line
    described = spec.get("columns")
    if isinstance(described, Mapping) and column in described:
        return described.line_of(column)
    return _key_line(node, "schema")


def _key_line(node: Node, key: str) -> int:
    return node.spec.line_of(key) if isinstance(node.spec, Mapping) else node.line


def _without_sql_position(text: str) -> tuple[str, int | None]:
    """DuckDB's message without its ``LINE n:`` excerpt, and that n."""
    kept: list[str] = []
    for line in text.splitlines():
        found = re.match(r"\s*LINE (\d+):", line)
        if found:
            return " ".join(kept), int(found.group(1))
        if line.strip():
            kept.append(line.strip())
    return " ".join(kept), None


def _binding_hint(
    error: Exception, node: Node, inputs: list[tuple[str, list[str]]]
) -> str:
    """What to do about a SQL error, by its kind.

    A table DuckDB cannot find is held against the node's inputs (DuckDB's own
    suggestion names its system catalog). For a column, DuckDB's candidate
    bindings are the columns in scope where it is used (a CTE's, a subquery's),
    so the inputs' columns are listed only when it names none.
    """
    if isinstance(error, duckdb.ParserException):
        return "fix the SQL syntax"
    table = _missing_table(error)
    if table is not None:
        if not node.inputs:
            return "it has no inputs; list the nodes it reads in 'inputs'"
        readable = (
            "the SQL can read its inputs: "
            + ", ".join(node.inputs)
            + " (as kind.name, or by bare name when unambiguous)"
        )
        names = {i.split(".", 1)[1]: i for i in node.inputs}
        close = difflib.get_close_matches(
            table.lower(), list(names), n=1, cutoff=SUGGEST_CUTOFF
        )
        return f"did you mean {names[close[0]]!r}? " + readable if close else readable
    if isinstance(error, duckdb.CatalogException):
        return "check the name of the function or type"
    text = str(error)
    unknown_column = "not found" in text or "does not have a column" in text
    if unknown_column and "Candidate bindings" in text:
        return "use a column in scope there; DuckDB's candidates are the closest"
    if unknown_column and inputs:
        return "columns of its inputs: " + "; ".join(
            f"{input_id}: {_listed(columns)}" for input_id, columns in inputs
        )
    return "fix the SQL so it binds against its inputs' columns and types"


def _missing_table(error: Exception) -> str | None:
    """The table a CatalogException says does not exist, if it is about one."""
    if not isinstance(error, duckdb.CatalogException):
        return None
    found = re.search(r"Table with name (\S+) does not exist", str(error))
    return found.group(1) if found else None


def _listed(names: list[str], most: int = 12) -> str:
    shown = ", ".join(names[:most])
    return shown + (f", ... ({len(names) - most} more)" if len(names) > most else "")


def _input_columns(
    conn: duckdb.DuckDBPyConnection, node: Node
) -> list[tuple[str, list[str]]]:
    """The column names of each input staged for binding ``node``."""
    found = []
    for input_id in node.inputs:
        kind, name = input_id.split(".", 1)
        try:
            described = describe(
                conn, f"SELECT * FROM {quote_ident(kind)}.{quote_ident(name)}"
            )
        except duckdb.Error:
            continue
        found.append((input_id, [column for column, _ in described]))
    return found


def _stage_input(
    conn: duckdb.DuckDBPyConnection,
    input_id: str,
    columns: dict[str, list[list[str]]],
    run_set: set[str],
    input_path: InputPath | None,
) -> None:
    """An empty table ``"kind"."name"`` with the input's columns."""
    kind, name = input_id.split(".", 1)
    table = f"{quote_ident(kind)}.{quote_ident(name)}"
    if input_id in run_set:
        body = ", ".join(f"{quote_ident(c)} {t}" for c, t in columns[input_id] or [])
        conn.execute(f"CREATE TABLE {table} ({body})")
    else:
        assert input_path is not None, f"{input_id} is outside the check"
        path = quote_literal(str(input_path(input_id)))
        conn.execute(
            f"CREATE TABLE {table} AS SELECT * FROM read_parquet({path}) LIMIT 0"
        )


def _bind_node(conn: duckdb.DuckDBPyConnection, node: Node, root: Path) -> None:
    """Bind the node's SQL into an empty table ``"kind"."name"`` of its columns.

    Inputs read by bare name are visible through temporary views, which only
    this cursor sees.
    """
    aliases = []
    for input_id in bare_name_inputs(node):
        kind, name = input_id.split(".", 1)
        alias = quote_ident(name)
        conn.execute(
            f"CREATE TEMP VIEW {alias} AS SELECT * FROM "
            f"{quote_ident(kind)}.{quote_ident(name)}"
        )
        aliases.append(alias)
    table = f"{quote_ident(node.kind)}.{quote_ident(node.name)}"
    try:
        conn.execute(
            f"CREATE TABLE {table} AS SELECT * FROM ({node_query(conn, node, root)}"
            "\n) LIMIT 0"
        )
    finally:
        for alias in aliases:
            conn.execute(f"DROP VIEW temp.{alias}")


def _table_columns(
    conn: duckdb.DuckDBPyConnection, node_ids: list[str]
) -> dict[str, list[list[str]]]:
    """The columns of the tables :func:`_bind_node` made, in order, by node id."""
    wanted = set(node_ids)
    found: dict[str, list[list[str]]] = {n: [] for n in node_ids}
    rows = conn.execute(
        "SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = current_database() "
        "ORDER BY schema_name, table_name, column_index"
    ).fetchall()
    for kind, name, column, data_type in rows:
        node_id = f"{kind}.{name}"
        if node_id in wanted:
            found[node_id].append([column, data_type])
    return found


def first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines[:2])
