"""Change classification: how each node's definition differs from production's.

A node's definition is compared field by field with the one production recorded
when it last built (or was promoted) that node. SQL is parsed with sqlglot and
compared clause by clause and output column by output column, so formatting never
counts as a change.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlglot import exp

from seeknal_jupyter.loader import Node, duckdb_type
from seeknal_jupyter.sql import canonical_statement, normalise

log = logging.getLogger(__name__)


class ChangeClass(StrEnum):
    """The class of one node's change against production."""

    UNCHANGED = "UNCHANGED"
    METADATA = "METADATA"
    NON_BREAKING = "NON_BREAKING"
    BREAKING = "BREAKING"
    DEPENDENT = "DEPENDENT"
    ADDED = "ADDED"
    REMOVED = "REMOVED"


SEVERITY = {
    ChangeClass.UNCHANGED: 0,
    ChangeClass.METADATA: 1,
    ChangeClass.NON_BREAKING: 2,
    ChangeClass.BREAKING: 3,
}
RUNS = (
    ChangeClass.NON_BREAKING,
    ChangeClass.BREAKING,
    ChangeClass.DEPENDENT,
    ChangeClass.ADDED,
)
FUNCTIONAL_FIELDS = (
    "kind",
    "name",
    "inputs",
    "transform",
    "features",
    "entity",
    "materialization",
    "source",
    "table",
    "params",
    "schema",
    "columns",
    "type",
)
CLAUSE_LABELS = {
    "from_": "FROM clause",
    "joins": "JOIN",
    "where": "WHERE clause",
    "group": "GROUP BY",
    "having": "HAVING",
    "qualify": "QUALIFY",
    "order": "ORDER BY",
    "limit": "LIMIT",
    "offset": "OFFSET",
    "distinct": "DISTINCT",
    "windows": "WINDOW clause",
}
ROW_MULTIPLYING = (exp.Unnest, exp.Explode, exp.Posexplode, exp.GenerateSeries)


@dataclass(frozen=True)
class Reason:
    """One difference found in a node's definition, with the class it implies."""

    severity: ChangeClass
    text: str


@dataclass
class Change:
    """How one node classifies against production, and why."""

    node_id: str
    change_class: ChangeClass
    reasons: list[str] = field(default_factory=list)
    upstream: list[str] = field(default_factory=list)
    upstream_breaking: bool = False

    @property
    def runs(self) -> bool:
        """Whether applying the plan executes this node."""
        return self.change_class in RUNS

    def describe(self) -> str:
        """``node_id (reason; reason)``."""
        if not self.reasons:
            return self.node_id
        return f"{self.node_id} ({'; '.join(self.reasons)})"

    def to_json(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "change_class": str(self.change_class),
            "reasons": list(self.reasons),
            "upstream": list(self.upstream),
            "upstream_breaking": self.upstream_breaking,
        }

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Change:
        return cls(
            body["node_id"],
            ChangeClass(body["change_class"]),
            list(body.get("reasons", [])),
            list(body.get("upstream", [])),
            bool(body.get("upstream_breaking", False)),
        )


def plain(value: Any) -> Any:
    """A YAML-loaded value as plain JSON data (what a state file records)."""
    return json.loads(json.dumps(value, default=str))


@dataclass(frozen=True)
class Definition:
    """A node's definition in the terms the classifier compares."""

    node_id: str
    kind: str
    inputs: tuple[str, ...]
    sql: str | None
    features: tuple[tuple[str, str], ...]
    join_keys: tuple[str, ...]
    event_time_col: str | None
    reader: tuple[Any, Any]
    reader_options: dict[str, Any]
    schema: tuple[tuple[str, str], ...]
    export: tuple[Any, Any] | None
    spec: dict[str, Any]

    @classmethod
    def from_node(cls, node: Node) -> Definition:
        return cls.from_record(node.id, list(node.inputs), plain(dict(node.spec)))

    @classmethod
    def from_record(
        cls, node_id: str, inputs: Iterable[str], spec: Mapping[str, Any]
    ) -> Definition:
        """Build from what a state entry records: resolved inputs and the spec."""
        kind = node_id.split(".", 1)[0]
        entity = _mapping(spec, "entity")
        timing = _mapping(spec, "materialization")
        params = _mapping(spec, "params")
        inputs = tuple(inputs)
        return cls(
            node_id=node_id,
            kind=kind,
            inputs=inputs,
            sql=_effective_sql(kind, spec.get("transform"), inputs),
            features=_typed(spec.get("features")) if kind == "feature_group" else (),
            join_keys=tuple(str(k) for k in entity.get("join_keys") or ()),
            event_time_col=timing.get("event_time_col"),
            reader=(spec.get("source"), spec.get("table"))
            if kind == "source"
            else (None, None),
            reader_options=dict(params) if kind == "source" else {},
            schema=_source_schema(spec) if kind == "source" else (),
            export=_export(spec) if kind == "exposure" else None,
            spec=dict(spec),
        )

    def functional(self) -> dict[str, Any]:
        """What decides the output apart from SQL (which :func:`sql_reasons` reads)."""
        return {
            "inputs": sorted(self.inputs),
            "features": list(self.features),
            "join_keys": list(self.join_keys),
            "event_time_col": self.event_time_col,
            "reader": list(self.reader),
            "reader_options": self.reader_options,
            "schema": list(self.schema),
            "export": list(self.export) if self.export else None,
        }


def _mapping(spec: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = spec.get(key)
    return value if isinstance(value, dict) else {}


def _effective_sql(kind: str, sql: Any, inputs: tuple[str, ...]) -> str | None:
    if isinstance(sql, str) and sql.strip():
        return sql
    if kind in ("feature_group", "exposure") and len(inputs) == 1:
        return f"SELECT * FROM {inputs[0]}"
    return None


def _dtype(value: Any) -> str:
    name = value.get("dtype") if isinstance(value, dict) else value
    return duckdb_type(name) or str(name)


def _typed(mapping: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(mapping, dict):
        return ()
    return tuple((str(k), _dtype(v)) for k, v in mapping.items())


def _source_schema(spec: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    columns: list[tuple[str, str]] = []
    for item in spec.get("schema") or ():
        if isinstance(item, dict) and "name" in item:
            columns.append((str(item["name"]), _dtype(item.get("data_type"))))
    described = spec.get("columns")
    if isinstance(described, dict):
        for name, info in described.items():
            has_type = isinstance(info, dict) and info.get("dtype") is not None
            if (has_type or isinstance(info, str)) and all(
                c != name for c, _ in columns
            ):
                columns.append((str(name), _dtype(info)))
    return tuple(columns)


def _export(spec: Mapping[str, Any]) -> tuple[Any, Any] | None:
    if spec.get("type") != "file":
        return None
    params = _mapping(spec, "params")
    path = params.get("path")
    fmt = params.get("format") or (
        "csv" if str(path).lower().endswith(".csv") else "parquet"
    )
    return path, fmt


def _sql_text(node: exp.Expression | None) -> str:
    if node is None:
        return ""
    return node.sql(dialect="duckdb", comments=False, normalize_functions="upper")


def _arg_text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_arg_text(v) for v in value)
    if isinstance(value, exp.Expression):
        return _sql_text(value)
    return "" if value in (None, False) else str(value)


def _projections(select: exp.Select) -> dict[str, str]:
    """Output column name -> expression text, in output order."""
    result: dict[str, str] = {}
    for item in select.expressions:
        body = item.this if isinstance(item, exp.Alias) else item
        text = _sql_text(body)
        name = item.alias_or_name
        if name == "*" or not name:
            name = text
        result[name] = text
    return result


def _cte_reasons(old: Any, new: Any) -> list[Reason]:
    def ctes(value: Any) -> dict[str, str]:
        if not isinstance(value, exp.Expression):
            return {}
        return {c.alias_or_name: _sql_text(c.this) for c in value.expressions}

    before, after = ctes(old), ctes(new)
    reasons = [
        Reason(ChangeClass.BREAKING, f"CTE {name} changed")
        for name in before
        if name in after and before[name] != after[name]
    ]
    reasons += [
        Reason(ChangeClass.BREAKING, f"CTE {name} removed")
        for name in before
        if name not in after
    ]
    reasons += [
        Reason(ChangeClass.BREAKING, f"CTE {name} added")
        for name in after
        if name not in before
    ]
    return reasons


def _clause_reasons(old: exp.Select, new: exp.Select) -> list[Reason]:
    reasons: list[Reason] = []
    keys = list(dict.fromkeys([*old.args, *new.args]))
    for key in keys:
        if key == "expressions":
            continue
        before, after = old.args.get(key), new.args.get(key)
        if _arg_text(before) == _arg_text(after):
            continue
        if key in ("with", "with_"):
            reasons += _cte_reasons(before, after)
            continue
        label = CLAUSE_LABELS.get(key, key.strip("_").upper())
        if not _arg_text(before):
            text = f"{label} added"
        elif not _arg_text(after):
            text = f"{label} removed"
        else:
            text = f"{label} changed"
        reasons.append(Reason(ChangeClass.BREAKING, text))
    return reasons


def _is_aggregating(select: exp.Select) -> bool:
    """Whether the query returns one row per group rather than one per input row."""
    if select.args.get("group"):
        return True
    return any(_aggregates(item) for item in select.expressions)


def _aggregates(item: exp.Expr) -> bool:
    """Whether ``item`` aggregates the query's rows (not in a window or subquery)."""
    inner = item.walk(prune=lambda n: isinstance(n, (exp.Query, exp.Window)))
    return any(isinstance(n, exp.AggFunc) for n in inner)


def _added_column_changes_rows(old: exp.Select, new: exp.Select, name: str) -> str:
    """Why adding output column ``name`` can change the rows, or ``""``."""
    item = next(
        (i for i in new.expressions if name in (i.alias_or_name, _sql_text(i))), None
    )
    if new.args.get("distinct"):
        return "under DISTINCT it is part of what makes a row unique"
    if item is None:
        return ""
    if any(isinstance(n, ROW_MULTIPLYING) for n in item.walk()):
        return "it produces several rows per input row"
    group = new.args.get("group")
    if group is not None and group.args.get("all") and not _aggregates(item):
        return "under GROUP BY ALL it becomes a grouping key"
    if _aggregates(item) and not _is_aggregating(old):
        return "an aggregate turns the query into one row per group"
    return ""


def _columns(names: list[str], most: int = 6) -> str:
    """``column a``, ``columns a, b and c``, or the first few of many and a count."""
    if len(names) == 1:
        return f"column {names[0]}"
    if len(names) <= most:
        return f"columns {', '.join(names[:-1])} and {names[-1]}"
    return (
        f"{len(names)} columns: {', '.join(names[:most])} and {len(names) - most} more"
    )


def _projection_reasons(old: exp.Select, new: exp.Select) -> list[Reason]:
    before, after = _projections(old), _projections(new)
    removed = [n for n in before if n not in after]
    added = [n for n in after if n not in before]
    reasons = _star_reasons(removed, added)
    renamed: set[str] = set()
    gone = []
    for name in removed:
        target = next(
            (a for a in added if a not in renamed and after[a] == before[name]), None
        )
        if target is not None:
            renamed.add(target)
            reasons.append(
                Reason(ChangeClass.BREAKING, f"column {name} renamed to {target}")
            )
        else:
            gone.append(name)
    if gone:
        reasons.append(
            Reason(ChangeClass.BREAKING, f"SQL no longer outputs {_columns(gone)}")
        )
    for name in before:
        if name in after and before[name] != after[name]:
            reasons.append(
                Reason(ChangeClass.BREAKING, f"expression of column {name} changed")
            )
    plain = []
    for name in added:
        if name in renamed:
            continue
        why = _added_column_changes_rows(old, new, name)
        if why:
            reasons.append(
                Reason(
                    ChangeClass.BREAKING,
                    f"new column {name} changes the rows: {why}",
                )
            )
        else:
            plain.append(name)
    if plain:
        reasons.append(
            Reason(ChangeClass.NON_BREAKING, f"SQL now also outputs {_columns(plain)}")
        )
    kept_before = [n for n in before if n in after]
    kept_after = [n for n in after if n in before]
    if kept_before != kept_after:
        reasons.append(Reason(ChangeClass.BREAKING, "output column order changed"))
    return reasons + _position_reasons(list(before), list(after), new)


def _star_reasons(removed: list[str], added: list[str]) -> list[Reason]:
    """A changed ``*`` projection (``* EXCLUDE (a)``, ``t.*``) as one reason; the
    star entries are taken out of ``removed`` and ``added``."""
    old = [n for n in removed if _is_star(n)]
    new = [n for n in added if _is_star(n)]
    for name in old + new:
        (removed if name in old else added).remove(name)
    if not old and not new:
        return []
    text = (
        f"star projection {', '.join(old) or '(none)'} is now "
        f"{', '.join(new) or '(none)'}"
    )
    return [Reason(ChangeClass.BREAKING, text)]


def _is_star(name: str) -> bool:
    return name.startswith("*") or name.split(" ", 1)[0].endswith(".*")


def _position_reasons(
    before: list[str], after: list[str], new: exp.Select
) -> list[Reason]:
    """ORDER BY and GROUP BY positions (``ORDER BY 2``) now naming another column."""
    reasons = []
    for label, position in dict.fromkeys(_positions(new)):
        was = before[position - 1] if 0 < position <= len(before) else None
        now = after[position - 1] if 0 < position <= len(after) else None
        if was != now:
            reasons.append(
                Reason(
                    ChangeClass.BREAKING,
                    f"{label} {position} now refers to column {now} (was {was})",
                )
            )
    return reasons


def _positions(select: exp.Select) -> list[tuple[str, int]]:
    found = []
    for key, label in (("order", "ORDER BY"), ("group", "GROUP BY")):
        clause = select.args.get(key)
        for item in clause.expressions if clause is not None else ():
            target = item.this if isinstance(item, exp.Ordered) else item
            if isinstance(target, exp.Literal) and target.is_int:
                found.append((label, int(target.name)))
    return found


def sql_reasons(
    old: str | None,
    new: str | None,
    old_inputs: Iterable[str] = (),
    new_inputs: Iterable[str] = (),
) -> list[Reason]:
    """Differences between two versions of a node's SQL.

    Args:
        old: production's SQL (None when the node had none).
        new: the current SQL.
        old_inputs: production's inputs of the node (to read bare names).
        new_inputs: the current inputs.

    Returns:
        No reasons when the two have the same canonical text (what fingerprints
        hash: formatting, comments, keyword case, quotes and redundant parentheses
        don't count); a NON_BREAKING reason per output column that was only
        added without changing the rows; a BREAKING reason for anything else.
    """
    if old is None or new is None:
        if old == new:
            return []
        return [
            Reason(
                ChangeClass.BREAKING, "SQL " + ("added" if old is None else "removed")
            )
        ]
    if normalise(old, old_inputs) == normalise(new, new_inputs):
        return []
    before = canonical_statement(old, old_inputs)
    after = canonical_statement(new, new_inputs)
    if before is None or after is None:
        return [Reason(ChangeClass.BREAKING, "SQL changed (it could not be parsed)")]
    if not (isinstance(before, exp.Select) and isinstance(after, exp.Select)):
        return [Reason(ChangeClass.BREAKING, "SQL changed")]
    reasons = _clause_reasons(before, after) + _projection_reasons(before, after)
    return reasons or [Reason(ChangeClass.BREAKING, "SQL changed")]


def _list_reasons(
    label: str,
    before: tuple[tuple[str, str], ...],
    after: tuple[tuple[str, str], ...],
    added: str,
    removed: str,
) -> list[Reason]:
    old, new = dict(before), dict(after)
    reasons = [
        Reason(ChangeClass.BREAKING, f"{removed}: {name}")
        for name in old
        if name not in new
    ]
    reasons += [
        Reason(
            ChangeClass.BREAKING,
            f"dtype of {name} changed from {old[name]} to {new[name]}",
        )
        for name in old
        if name in new and old[name] != new[name]
    ]
    reasons += [
        Reason(ChangeClass.NON_BREAKING, f"{added}: {name}")
        for name in new
        if name not in old
    ]
    kept_before = [n for n in old if n in new]
    kept_after = [n for n in new if n in old]
    if kept_before != kept_after:
        reasons.append(Reason(ChangeClass.BREAKING, f"{label} order changed"))
    return reasons


def _input_reasons(old: Definition, new: Definition) -> list[Reason]:
    reasons = [
        Reason(ChangeClass.BREAKING, f"input {i} removed")
        for i in old.inputs
        if i not in new.inputs
    ]
    return reasons + [
        Reason(ChangeClass.NON_BREAKING, f"new input {i}")
        for i in new.inputs
        if i not in old.inputs
    ]


def _entity_reasons(old: Definition, new: Definition) -> list[Reason]:
    reasons = []
    if old.join_keys != new.join_keys:
        reasons.append(
            Reason(
                ChangeClass.BREAKING,
                f"join keys changed from {list(old.join_keys)} to {list(new.join_keys)}",
            )
        )
    if old.event_time_col != new.event_time_col:
        reasons.append(
            Reason(
                ChangeClass.BREAKING,
                f"event time column changed from {old.event_time_col} to "
                f"{new.event_time_col}",
            )
        )
    return reasons


def _source_reasons(old: Definition, new: Definition) -> list[Reason]:
    reasons = []
    (old_format, old_path), (new_format, new_path) = old.reader, new.reader
    if old_format != new_format:
        reasons.append(
            Reason(
                ChangeClass.BREAKING,
                f"source format changed from {old_format} to {new_format}",
            )
        )
    if old_path != new_path:
        reasons.append(
            Reason(
                ChangeClass.BREAKING,
                f"source path changed from {old_path} to {new_path}",
            )
        )
    for option in dict.fromkeys([*old.reader_options, *new.reader_options]):
        if old.reader_options.get(option) != new.reader_options.get(option):
            reasons.append(
                Reason(ChangeClass.BREAKING, f"reader option {option} changed")
            )
    if bool(old.schema) != bool(new.schema):
        state = "now declared" if new.schema else "no longer declared"
        reasons.append(Reason(ChangeClass.BREAKING, f"schema {state}"))
    else:
        reasons += _list_reasons(
            "declared column", old.schema, new.schema, "new column", "removed column"
        )
    return reasons


def _export_reasons(old: Definition, new: Definition) -> list[Reason]:
    if old.export == new.export:
        return []
    if old.export is None or new.export is None:
        state = "added" if old.export is None else "removed"
        return [Reason(ChangeClass.BREAKING, f"export file {state}")]
    reasons = []
    if old.export[0] != new.export[0]:
        reasons.append(
            Reason(
                ChangeClass.BREAKING,
                f"export path changed from {old.export[0]} to {new.export[0]}",
            )
        )
    if old.export[1] != new.export[1]:
        reasons.append(
            Reason(
                ChangeClass.BREAKING,
                f"export format changed from {old.export[1]} to {new.export[1]}",
            )
        )
    return reasons


def _nested_metadata(old: Definition, new: Definition) -> list[Reason]:
    """Fields inside ``entity`` and ``materialization`` that do not shape rows."""
    reasons = []
    functional = {"entity": ("join_keys",), "materialization": ("event_time_col",)}
    for key, kept in functional.items():
        before, after = _mapping(old.spec, key), _mapping(new.spec, key)
        for inner in dict.fromkeys([*before, *after]):
            if inner not in kept and before.get(inner) != after.get(inner):
                reasons.append(Reason(ChangeClass.METADATA, f"{key}.{inner} changed"))
    return reasons


def _metadata_reasons(old: Definition, new: Definition) -> list[Reason]:
    reasons = []
    for key in dict.fromkeys([*old.spec, *new.spec]):
        if key in FUNCTIONAL_FIELDS or old.spec.get(key) == new.spec.get(key):
            continue
        if key == "tags":
            before = set(map(str, old.spec.get("tags") or ()))
            after = set(map(str, new.spec.get("tags") or ()))
            moves = [f"+{t}" for t in sorted(after - before)]
            moves += [f"-{t}" for t in sorted(before - after)]
            text = f"tags changed ({' '.join(moves)})" if moves else "tag order changed"
        else:
            text = f"{key} changed"
        reasons.append(Reason(ChangeClass.METADATA, text))
    return reasons + _nested_metadata(old, new)


def definition_reasons(old: Definition, new: Definition) -> list[Reason]:
    """Every difference between production's definition and the current one."""
    functional = [
        *_input_reasons(old, new),
        *sql_reasons(old.sql, new.sql, old.inputs, new.inputs),
        *_list_reasons(
            "feature", old.features, new.features, "new feature", "removed feature"
        ),
        *_entity_reasons(old, new),
        *_source_reasons(old, new),
        *_export_reasons(old, new),
    ]
    if not functional and old.functional() != new.functional():
        functional.append(Reason(ChangeClass.BREAKING, "definition changed"))
    return functional + _metadata_reasons(old, new)


def classify(old: Definition, new: Definition) -> Change:
    """The class of one node present in both production and the project."""
    reasons = definition_reasons(old, new)
    worst = max(
        (r.severity for r in reasons),
        key=SEVERITY.__getitem__,
        default=ChangeClass.UNCHANGED,
    )
    return Change(new.node_id, worst, [r.text for r in reasons])


def compare(
    current: Mapping[str, Definition],
    order: Iterable[str],
    production: Mapping[str, Definition],
) -> dict[str, Change]:
    """Classify every node of the project, then list production's removed nodes.

    Args:
        current: the project's definitions by node id.
        order: the project's node ids in topological order.
        production: production's recorded definitions by node id.

    Returns:
        One change per node: project nodes in ``order``, then removed ones.
    """
    changes: dict[str, Change] = {}
    breaking_upstream: dict[str, list[str]] = {}
    for node_id in order:
        new = current[node_id]
        old = production.get(node_id)
        if old is None:
            change = Change(node_id, ChangeClass.ADDED, ["new node"])
        else:
            change = classify(old, new)
        followed: list[str] = []
        breaking: list[str] = []
        for input_id in new.inputs:
            upstream = changes.get(input_id)
            if upstream is None or not upstream.runs:
                continue
            if upstream.change_class == ChangeClass.DEPENDENT:
                followed += upstream.upstream
            else:
                followed.append(input_id)
            breaking += breaking_upstream[input_id]
        followed, breaking = (
            list(dict.fromkeys(followed)),
            list(dict.fromkeys(breaking)),
        )
        if followed and not change.runs:
            change = _dependent(change, followed, breaking)
        elif breaking:
            change.reasons.append(
                f"also downstream of BREAKING change in {', '.join(breaking)}"
            )
            change.upstream, change.upstream_breaking = breaking, True
        breaking_upstream[node_id] = breaking + (
            [node_id] if change.change_class == ChangeClass.BREAKING else []
        )
        changes[node_id] = change
    for node_id in production:
        if node_id not in current:
            changes[node_id] = Change(
                node_id, ChangeClass.REMOVED, ["no longer in the project"]
            )
    return changes


def _dependent(change: Change, followed: list[str], breaking: list[str]) -> Change:
    """``change`` (unchanged or metadata only) as DEPENDENT on changed upstreams.

    Args:
        change: the node's own classification.
        followed: the nearest changed nodes upstream.
        breaking: the BREAKING nodes upstream, however far.
    """
    if breaking:
        through = [n for n in followed if n not in breaking]
        reason = f"upstream BREAKING change in {', '.join(breaking)}" + (
            f" (through {', '.join(through)})" if through else ""
        )
    else:
        reason = f"upstream change in {', '.join(followed)}"
    return Change(
        change.node_id,
        ChangeClass.DEPENDENT,
        [reason, *change.reasons],
        followed,
        bool(breaking),
    )
