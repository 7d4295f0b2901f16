"""SQL helpers built on sqlglot: node references, normalised text, quoting."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

log = logging.getLogger(__name__)

KINDS = ("source", "transform", "feature_group", "exposure")


def quote_ident(name: str) -> str:
    """Quote a DuckDB identifier, doubling any embedded double quote."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """Quote a DuckDB string literal, doubling any embedded single quote."""
    return "'" + text.replace("'", "''") + "'"


def _parse(sql: str) -> tuple[exp.Expr, ...] | None:
    try:
        return tuple(e for e in sqlglot.parse(sql, read="duckdb") if e is not None)
    except SqlglotError as error:
        log.debug("sqlglot could not parse SQL, using tokens instead: %s", error)
        return None


def _tokens(sql: str) -> list[tuple[TokenType, str]]:
    try:
        return [(t.token_type, t.text) for t in sqlglot.tokenize(sql, read="duckdb")]
    except SqlglotError:
        return [(TokenType.VAR, word) for word in sql.split()]


SIMPLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ATOMIC = (exp.Column, exp.Literal, exp.Identifier, exp.Paren, exp.Star, exp.Null)
CLAUSES = (exp.Where, exp.Having, exp.Qualify, exp.Select, exp.Alias, exp.Ordered)


@dataclass(frozen=True)
class _Analysis:
    """What one SQL text says: the nodes it reads, its normalised text, and the
    tables it names without a kind (which may be inputs read by bare name)."""

    references: tuple[str, ...]
    text: str
    bare_tables: frozenset[str]


@functools.lru_cache(maxsize=16384)
def _analyse(sql: str) -> _Analysis:
    """Parse one SQL text once; keep the answers (small), not the trees (large)."""
    statements = _parse(sql)
    references = _references(statements, sql)
    if statements is None:
        return _Analysis(references, _token_text(sql), frozenset())
    bare = frozenset(n for s in statements for n in _bare_tables(s))
    return _Analysis(references, _text(statements, {}), bare)


def referenced_nodes(sql: str) -> list[str]:
    """Node ids (``kind.name``) that the SQL reads from, in order of appearance.

    Comments and string literals never count: the SQL is parsed, and only table
    references whose schema is a node kind are taken.
    """
    return list(_analyse(sql).references)


def normalise(sql: str, inputs: Iterable[str] = ()) -> str:
    """SQL text in a canonical form, for fingerprints and change classification.

    Comments, whitespace, keyword case, quotes around plain names and parentheses
    that change nothing are left out, and an input read by its bare name reads
    as ``kind.name``: two texts that differ only in these ways are equal.

    Args:
        sql: the node's SQL.
        inputs: the node's input ids, to qualify bare names with.
    """
    analysis = _analyse(sql)
    qualified = _qualifications(analysis.bare_tables, inputs)
    if not qualified:
        return analysis.text
    return _qualified_text(sql, tuple(sorted(qualified.items())))


def canonical_statement(sql: str, inputs: Iterable[str] = ()) -> exp.Expr | None:
    """The one statement of ``sql`` in the canonical form of :func:`normalise`.

    Returns:
        A fresh tree the caller may change, or None when the SQL does not parse
        or holds more than one statement.
    """
    statements = _parse(sql)
    if statements is None or len(statements) != 1:
        return None
    statement = statements[0]
    bare = frozenset(_bare_tables(statement))
    return _canonical(statement, _qualifications(bare, inputs))


def _bare_tables(statement: exp.Expr) -> Iterable[str]:
    ctes = {c.alias_or_name for c in statement.find_all(exp.CTE)}
    for table in statement.find_all(exp.Table):
        if (
            not table.db
            and isinstance(table.this, exp.Identifier)
            and table.name not in ctes
        ):
            yield table.name


def _qualifications(bare: frozenset[str], inputs: Iterable[str]) -> dict[str, str]:
    """Bare table name -> kind, for the names that are exactly one input's."""
    if not bare:
        return {}
    kinds: dict[str, list[str]] = {}
    for input_id in inputs:
        kind, name = input_id.split(".", 1)
        kinds.setdefault(name, []).append(kind)
    return {n: k[0] for n, k in kinds.items() if n in bare and len(k) == 1}


@functools.lru_cache(maxsize=1024)
def _qualified_text(sql: str, qualified: tuple[tuple[str, str], ...]) -> str:
    statements = _parse(sql)
    assert statements is not None
    return _text(statements, dict(qualified))


def _text(statements: tuple[exp.Expr, ...], qualified: dict[str, str]) -> str:
    # The trees are this call's own, so they may be changed and not copied.
    return ";\n".join(
        _canonical(s, qualified).sql(
            dialect="duckdb", comments=False, normalize_functions="upper", copy=False
        )
        for s in statements
    )


def _canonical(statement: exp.Expr, qualified: dict[str, str]) -> exp.Expr:
    for identifier in statement.find_all(exp.Identifier):
        if identifier.quoted and SIMPLE_NAME.match(identifier.name):
            identifier.set("quoted", False)
    for paren in list(statement.find_all(exp.Paren)):
        if _redundant(paren):
            paren.replace(paren.this)
    if qualified:
        for table in statement.find_all(exp.Table):
            kind = qualified.get(table.name) if not table.db else None
            if kind and isinstance(table.this, exp.Identifier):
                table.set("db", exp.to_identifier(kind))
    return statement


def _redundant(paren: exp.Paren) -> bool:
    """Whether dropping these parentheses leaves the meaning as it is."""
    inner, parent = paren.this, paren.parent
    if isinstance(inner, ATOMIC) or (
        isinstance(inner, exp.Func) and not isinstance(inner, exp.Binary)
    ):
        return True
    if isinstance(parent, CLAUSES) or (
        isinstance(parent, exp.Join) and paren.arg_key == "on"
    ):
        return True
    return isinstance(parent, exp.Func) and not isinstance(
        parent, (exp.Binary, exp.Unary)
    )


def _references(statements: tuple[exp.Expr, ...] | None, sql: str) -> tuple[str, ...]:
    found: list[str] = []
    if statements is not None:
        for statement in statements:
            for table in statement.find_all(exp.Table):
                if table.db in KINDS and table.name and not table.catalog:
                    found.append(f"{table.db}.{table.name}")
    else:
        tokens = _tokens(sql)
        for i in range(len(tokens) - 2):
            (_, kind), (dot, _), (_, name) = tokens[i : i + 3]
            if (
                kind in KINDS
                and dot == TokenType.DOT
                and tokens[i + 2][0]
                in (
                    TokenType.VAR,
                    TokenType.IDENTIFIER,
                )
            ):
                found.append(f"{kind}.{name}")
    return tuple(dict.fromkeys(found))


def _token_text(sql: str) -> str:
    return " ".join(
        text if kind != TokenType.STRING else quote_literal(text)
        for kind, text in _tokens(sql)
    )
