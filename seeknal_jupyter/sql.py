"""SQL helpers built on sqlglot: node references, normalised text, quoting."""

from __future__ import annotations

import functools
import logging

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


@functools.lru_cache(maxsize=16384)
def _analyse(sql: str) -> tuple[tuple[str, ...], str]:
    """The node references and the normalised text of one SQL text, parsed once.

    Every load asks both of every node, so the answers are kept (small strings),
    not the parsed trees (tens of kilobytes each).
    """
    statements = _parse(sql)
    return _references(statements, sql), _normalised(statements, sql)


def referenced_nodes(sql: str) -> list[str]:
    """Node ids (``kind.name``) that the SQL reads from, in order of appearance.

    Comments and string literals never count: the SQL is parsed, and only table
    references whose schema is a node kind are taken.
    """
    return list(_analyse(sql)[0])


def normalise(sql: str) -> str:
    """SQL text with comments, whitespace and keyword case removed from the picture."""
    return _analyse(sql)[1]


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


def _normalised(statements: tuple[exp.Expr, ...] | None, sql: str) -> str:
    if statements is not None:
        # The trees are this call's own, so the generator may skip copying them.
        return ";\n".join(
            s.sql(
                dialect="duckdb",
                comments=False,
                normalize_functions="upper",
                copy=False,
            )
            for s in statements
        )
    return " ".join(
        text if kind != TokenType.STRING else quote_literal(text)
        for kind, text in _tokens(sql)
    )
