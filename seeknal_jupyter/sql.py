"""SQL helpers built on sqlglot: node references, normalised text, quoting."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

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


@dataclass
class _Parts:
    """The parts of one parsed statement that the analysis reads or rewrites,
    gathered in one walk of its tree (tables in order of appearance)."""

    tables: list[exp.Table] = field(default_factory=list)
    identifiers: list[exp.Identifier] = field(default_factory=list)
    parens: list[exp.Paren] = field(default_factory=list)
    ctes: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, statement: exp.Expr) -> _Parts:
        parts = cls()
        for node in statement.walk():
            if isinstance(node, exp.Identifier):
                parts.identifiers.append(node)
            elif isinstance(node, exp.Table):
                parts.tables.append(node)
            elif isinstance(node, exp.Paren):
                parts.parens.append(node)
            elif isinstance(node, exp.CTE):
                parts.ctes.add(node.alias_or_name)
        return parts

    def references(self) -> list[str]:
        return [
            f"{t.db}.{t.name}"
            for t in self.tables
            if t.db in KINDS and t.name and not t.catalog
        ]

    def bare_tables(self) -> set[str]:
        return {
            t.name
            for t in self.tables
            if not t.db
            and isinstance(t.this, exp.Identifier)
            and t.name not in self.ctes
        }


@functools.lru_cache(maxsize=16384)
def _analyse(sql: str) -> _Analysis:
    """Parse one SQL text once; keep the answers (small), not the trees (large)."""
    statements = _parse(sql)
    if statements is None:
        return _Analysis(_token_references(sql), _token_text(sql), frozenset())
    parts = [_Parts.of(s) for s in statements]
    references = tuple(dict.fromkeys(r for p in parts for r in p.references()))
    bare = frozenset(n for p in parts for n in p.bare_tables())
    return _Analysis(references, _text(statements, parts, {}), bare)


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
    parts = _Parts.of(statements[0])
    qualified = _qualifications(frozenset(parts.bare_tables()), inputs)
    return _canonical(statements[0], parts, qualified)


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
    return _text(statements, [_Parts.of(s) for s in statements], dict(qualified))


def _text(
    statements: tuple[exp.Expr, ...], parts: list[_Parts], qualified: dict[str, str]
) -> str:
    # The trees are this call's own, so they may be changed and not copied.
    return ";\n".join(
        _canonical(s, p, qualified).sql(
            dialect="duckdb", comments=False, normalize_functions="upper", copy=False
        )
        for s, p in zip(statements, parts)
    )


def _canonical(
    statement: exp.Expr, parts: _Parts, qualified: dict[str, str]
) -> exp.Expr:
    """Rewrite ``statement`` in place: plain names unquoted, redundant parentheses
    dropped, inputs read by bare name qualified with their kind."""
    for identifier in parts.identifiers:
        if identifier.quoted and SIMPLE_NAME.fullmatch(identifier.name):
            identifier.set("quoted", False)
    for paren in parts.parens:
        if _redundant(paren):
            paren.replace(paren.this)
    for table in parts.tables:
        kind = qualified.get(table.name) if qualified and not table.db else None
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


def _token_references(sql: str) -> tuple[str, ...]:
    """Node references read from tokens, for SQL that sqlglot cannot parse."""
    tokens = _tokens(sql)
    found = [
        f"{kind}.{name}"
        for (_, kind), (dot, _), (name_type, name) in zip(
            tokens, tokens[1:], tokens[2:]
        )
        if kind in KINDS
        and dot == TokenType.DOT
        and name_type in (TokenType.VAR, TokenType.IDENTIFIER)
    ]
    return tuple(dict.fromkeys(found))


def _token_text(sql: str) -> str:
    return " ".join(
        text if kind != TokenType.STRING else quote_literal(text)
        for kind, text in _tokens(sql)
    )
