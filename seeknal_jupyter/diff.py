"""Diff: how a node's output in an environment differs from production's."""

from __future__ import annotations

import html
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from seeknal_jupyter.environments import (
    environments,
)
from seeknal_jupyter.errors import UsageError
from seeknal_jupyter.execute import connection
from seeknal_jupyter.project import Project
from seeknal_jupyter.report import plural
from seeknal_jupyter.sql import quote_ident, quote_literal
from seeknal_jupyter.store import PRODUCTION, is_production


@dataclass
class MatchedRows:
    """The rows of both sides matched on a node's keys (a feature group's entity
    join keys), and how their values differ."""

    keys: list[str]
    changed_rows: int
    changed_columns: dict[str, int]
    keys_only_in_env: int
    keys_only_in_production: int


@dataclass
class NodeDiff:
    """How a node's output in an environment differs from production's.

    Columns both sides have are compared by name; a column whose type changed is
    compared as ``compared_as[column]`` on both sides. With ``matched``, the
    sample holds matched rows that differ, each differing column as in
    production beside its value in the environment; otherwise it holds rows found
    on one side only, with a ``side`` column: each side's first rows in sorted
    order, so rows that share their leading columns face each other.
    """

    node_id: str
    env: str
    env_path: Path | None
    production_path: Path | None
    only_in_env: list[tuple[str, str]]
    only_in_production: list[tuple[str, str]]
    type_changes: list[tuple[str, str, str]]
    env_rows: int
    production_rows: int
    rows_only_in_env: int
    rows_only_in_production: int
    sample: Any
    compared_as: dict[str, str] = field(default_factory=dict)
    matched: MatchedRows | None = None

    @property
    def same(self) -> bool:
        return not (
            self.only_in_env
            or self.only_in_production
            or self.type_changes
            or self.rows_only_in_env
            or self.rows_only_in_production
        )

    def _lines(self) -> list[str]:
        if self.env_path is None:
            own = f"{self.env} has no output of its own for {self.node_id}"
            return [f"{own}: it reads production's."]
        lines = []
        lines += [f"column {c} ({t}) only in {self.env}" for c, t in self.only_in_env]
        lines += [
            f"column {c} ({t}) only in production" for c, t in self.only_in_production
        ]
        lines += [
            f"column {c}: {old} in production, {new} in {self.env} (compared as "
            f"{self.compared_as.get(c, new)})"
            for c, old, new in self.type_changes
        ]
        lines.append(
            f"rows: {self.production_rows:,} in production, {self.env_rows:,} in "
            f"{self.env}; {self.rows_only_in_env:,} only in {self.env}, "
            f"{self.rows_only_in_production:,} only in production "
            "(compared on the columns both have)"
        )
        if self.matched is not None:
            lines.append(self._matched_line(self.matched))
        return lines

    def _matched_line(self, matched: MatchedRows) -> str:
        columns = ", ".join(
            f"{c} {n:,}" for c, n in matched.changed_columns.items() if n
        )
        return (
            f"matched on {', '.join(matched.keys)}: "
            f"{plural(matched.changed_rows, 'row')} with different values"
            + (f" ({columns})" if columns else "")
            + f"; {matched.keys_only_in_env:,} keys only in {self.env}, "
            f"{matched.keys_only_in_production:,} only in production"
        )

    def _sample_heading(self) -> str:
        if self.matched is None:
            return "sample of differing rows"
        return (
            "sample of matched rows that differ (each differing column in "
            f"production, then in {self.env})"
        )

    def __str__(self) -> str:
        head = f"{self.node_id}: {self.env} vs production"
        text = "\n".join([head, *("  " + line for line in self._lines())])
        if self.sample is not None and len(self.sample):
            text += f"\n{self._sample_heading()}:\n" + self.sample.to_string(
                index=False, line_width=shutil.get_terminal_size().columns
            )
        return text

    def __repr__(self) -> str:
        verdict = "same" if self.same else "different"
        return f"<NodeDiff {self.node_id} {self.env} vs production: {verdict}>"

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in self._lines())
        sample = ""
        if self.sample is not None and len(self.sample):
            heading = html.escape(self._sample_heading().capitalize())
            sample = f"<p>{heading}:</p>" + self.sample.to_html(index=False)
        return (
            f"<div><p><b>{html.escape(self.node_id)}</b>: {html.escape(self.env)} vs "
            f"production</p><ul>{items}</ul>{sample}</div>"
        )


def _columns(conn: duckdb.DuckDBPyConnection, path: Path) -> list[tuple[str, str]]:
    rows = conn.execute(
        f"DESCRIBE SELECT * FROM read_parquet({quote_literal(str(path))})"
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def diff(project: Project, node: str, env: str, limit: int = 10) -> NodeDiff:
    """Compare a node's output in ``env`` with production's.

    Args:
        project: the project.
        node: node id or unambiguous name.
        env: the environment.
        limit: rows of each side (or matched rows) to show in the sample.

    Returns:
        Schema differences, row counts and a sample, compared on the columns both
        outputs share (by name; a column whose type changed is cast so its
        values compare). A feature group's rows are also matched on its entity's
        join keys, when they are unique on both sides.

    Raises:
        UsageError: ``env`` is production or no environment, or neither side has
            an output for the node.
    """
    store = project.store
    if is_production(env or ""):
        raise UsageError(
            f"diff compares an environment with production; name one of: "
            f"{', '.join(environments(store)) or 'none (make one with: seeknal plan NAME)'}"
        )
    env = project.environment(env)
    dag = project.dag()
    node_id = dag.resolve(node)
    own = store.load_state(env).entries.get(node_id)
    production = store.load_state(PRODUCTION).entries.get(node_id)
    if own is None and production is None:
        raise UsageError(f"{node_id} has no output in {env!r} or in production yet")
    store.touch(env)
    env_path = store.target / own.snapshot if own else None
    prod_path = store.target / production.snapshot if production else None
    found = dag.nodes[node_id]
    keys = list(found.join_keys) if found.kind == "feature_group" else []
    with connection() as conn:
        return _compare_outputs(conn, node_id, env, env_path, prod_path, keys, limit)


def _compare_outputs(
    conn: duckdb.DuckDBPyConnection,
    node_id: str,
    env: str,
    env_path: Path | None,
    prod_path: Path | None,
    keys: list[str],
    limit: int,
) -> NodeDiff:
    if env_path is None:
        assert prod_path is not None
        rows = conn.execute(
            f"SELECT count(*) FROM read_parquet({quote_literal(str(prod_path))})"
        ).fetchone()
        count = int(rows[0]) if rows else 0
        return NodeDiff(
            node_id, env, None, prod_path, [], [], [], count, count, 0, 0, None
        )
    new = _columns(conn, env_path)
    old = _columns(conn, prod_path) if prod_path else []
    old_types, new_types = dict(old), dict(new)
    sides = _Sides(conn, env_path, prod_path)
    shared = [c for c, _ in new if c in old_types]
    casts = {
        c: sides.comparable_type(c, old_types[c], new_types[c])
        for c in shared
        if old_types[c] != new_types[c]
    }
    picked = ", ".join(sides.value(c, casts) for c in shared)
    picked = picked or "1 AS no_shared_column"
    conn.execute(
        f"CREATE TEMP TABLE only_env AS SELECT {picked} FROM {sides.env} "
        f"EXCEPT ALL SELECT {picked} FROM {sides.production}"
    )
    conn.execute(
        f"CREATE TEMP TABLE only_prod AS SELECT {picked} FROM {sides.production} "
        f"EXCEPT ALL SELECT {picked} FROM {sides.env}"
    )
    counts = conn.execute(
        f"SELECT (SELECT count(*) FROM {sides.env}), "
        f"(SELECT count(*) FROM {sides.production}), "
        "(SELECT count(*) FROM only_env), (SELECT count(*) FROM only_prod)"
    ).fetchone()
    assert counts is not None
    matched = None
    if keys and all(k in old_types for k in keys) and sides.unique(keys, casts):
        matched, sample = sides.matched(env, keys, shared, casts, limit)
    else:
        sample = conn.execute(
            f"(SELECT {quote_literal(env)} AS side, * FROM only_env ORDER BY ALL "
            f"LIMIT {int(limit)}) UNION ALL (SELECT 'production' AS side, * "
            f"FROM only_prod ORDER BY ALL LIMIT {int(limit)})"
        ).df()
    return NodeDiff(
        node_id=node_id,
        env=env,
        env_path=env_path,
        production_path=prod_path,
        only_in_env=[(c, t) for c, t in new if c not in old_types],
        only_in_production=[(c, t) for c, t in old if c not in new_types],
        type_changes=[
            (c, old_types[c], t) for c, t in new if c in old_types and old_types[c] != t
        ],
        env_rows=int(counts[0]),
        production_rows=int(counts[1]),
        rows_only_in_env=int(counts[2]),
        rows_only_in_production=int(counts[3]),
        sample=sample,
        compared_as=casts,
        matched=matched,
    )


class _Sides:
    """SQL over the two outputs a diff compares (``e``: the environment's, ``p``:
    production's, empty when production has none)."""

    def __init__(
        self, conn: duckdb.DuckDBPyConnection, env_path: Path, prod_path: Path | None
    ) -> None:
        self.conn = conn
        self.env = f"read_parquet({quote_literal(str(env_path))})"
        self.production = (
            f"read_parquet({quote_literal(str(prod_path))})"
            if prod_path
            else f"(SELECT * FROM {self.env} LIMIT 0)"
        )

    @staticmethod
    def value(column: str, casts: dict[str, str]) -> str:
        """A column as compared: cast to its comparable type when it changed."""
        name = quote_ident(column)
        if column not in casts:
            return name
        return f"CAST({name} AS {casts[column]}) AS {name}"

    @staticmethod
    def _compared(alias: str, column: str, casts: dict[str, str]) -> str:
        name = f"{alias}.{quote_ident(column)}"
        return f"CAST({name} AS {casts[column]})" if column in casts else name

    def comparable_type(self, column: str, old: str, new: str) -> str:
        """The type both sides of a changed column are compared as: the one
        DuckDB would combine them into, else text."""
        try:
            row = self.conn.execute(
                f"DESCRIBE SELECT CAST(NULL AS {old}) AS v "
                f"UNION ALL SELECT CAST(NULL AS {new})"
            ).fetchone()
            combined = str(row[1]) if row else "VARCHAR"
            for side in (self.env, self.production):
                self.conn.execute(
                    f"SELECT count(CAST({quote_ident(column)} AS {combined})) "
                    f"FROM {side}"
                ).fetchall()
        except duckdb.Error:
            return "VARCHAR"
        return combined

    def unique(self, keys: list[str], casts: dict[str, str]) -> bool:
        """Whether ``keys`` identify one row on each side."""
        row = ", ".join(self._compared("t", k, casts) for k in keys)
        for side in (self.env, self.production):
            found = self.conn.execute(
                f"SELECT count(*) - count(DISTINCT ({row})) FROM {side} AS t"
            ).fetchone()
            if found is None or found[0] != 0:
                return False
        return True

    def matched(
        self,
        env: str,
        keys: list[str],
        shared: list[str],
        casts: dict[str, str],
        limit: int,
    ) -> tuple[MatchedRows, Any]:
        """Rows matched on ``keys``: how many differ, per column, and a sample."""
        on = " AND ".join(
            f"{self._compared('e', k, casts)} IS NOT DISTINCT FROM "
            f"{self._compared('p', k, casts)}"
            for k in keys
        )
        values = [c for c in shared if c not in keys]
        differs = {
            c: f"{self._compared('e', c, casts)} IS DISTINCT FROM "
            f"{self._compared('p', c, casts)}"
            for c in values
        }
        joined = f"{self.env} AS e JOIN {self.production} AS p ON {on}"
        any_differs = " OR ".join(differs.values()) or "false"
        filters = "".join(
            f", count(*) FILTER (WHERE {condition})" for condition in differs.values()
        )
        row = self.conn.execute(
            f"SELECT count(*) FILTER (WHERE {any_differs}){filters} FROM {joined}"
        ).fetchone()
        assert row is not None
        per_column = dict(zip(values, (int(n) for n in row[1:])))
        only = [
            self.conn.execute(
                f"SELECT count(*) FROM {a} AS e ANTI JOIN {b} AS p ON {on}"
            ).fetchone()
            for a, b in ((self.env, self.production), (self.production, self.env))
        ]
        shown = [c for c in values if per_column[c]]
        picked = [f"e.{quote_ident(k)}" for k in keys]
        for c in shown:
            picked.append(f"p.{quote_ident(c)} AS {quote_ident(f'{c} (production)')}")
            picked.append(f"e.{quote_ident(c)} AS {quote_ident(f'{c} ({env})')}")
        sample = self.conn.execute(
            f"SELECT {', '.join(picked)} FROM {joined} WHERE {any_differs} "
            f"ORDER BY {', '.join(f'e.{quote_ident(k)}' for k in keys)} "
            f"LIMIT {int(limit)}"
        ).df()
        matched = MatchedRows(
            keys=keys,
            changed_rows=int(row[0]),
            changed_columns=per_column,
            keys_only_in_env=int(only[0][0]) if only[0] else 0,
            keys_only_in_production=int(only[1][0]) if only[1] else 0,
        )
        return matched, sample
