"""Project loading: Seeknal-format YAML files and notebook cells become validated nodes."""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seeknal_jupyter import exposures
from seeknal_jupyter.errors import Problem, ProjectError
from seeknal_jupyter.report import plural
from seeknal_jupyter.sql import KINDS, referenced_nodes
from seeknal_jupyter.yamlfile import Mapping, read_yaml

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
NAME_RULE = "letters, digits, '_' and '-', starting with a letter or '_'"

UNSUPPORTED_KINDS = (
    "model",
    "aggregation",
    "second_order_aggregation",
    "rule",
    "semantic_model",
    "metric",
    "python",
    "profile",
    "common",
)
COMMON_FIELDS = ("kind", "name", "description", "owner", "tags")
FIELDS = {
    "source": COMMON_FIELDS + ("source", "table", "params", "schema", "columns"),
    "transform": COMMON_FIELDS + ("inputs", "transform"),
    "feature_group": COMMON_FIELDS
    + ("inputs", "transform", "features", "entity", "materialization"),
    "exposure": COMMON_FIELDS + ("inputs", "transform", "type", "params"),
}
NOTED_FIELDS = ("freshness", "tests", "columns", "meta", "docs", "version", "config")
SOURCE_FORMATS = ("csv", "parquet", "json")
READERS = {"csv": "read_csv", "parquet": "read_parquet", "json": "read_json_auto"}
OPTION_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
EXPORT_FORMATS = ("parquet", "csv")
SUGGEST_CUTOFF = 0.75  # difflib ratio: a typo or two, not any shared letters

TYPES = {
    "string": "VARCHAR",
    "str": "VARCHAR",
    "varchar": "VARCHAR",
    "text": "VARCHAR",
    "integer": "INTEGER",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "long": "BIGINT",
    "float": "DOUBLE",
    "double": "DOUBLE",
    "real": "REAL",
    "boolean": "BOOLEAN",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "datetime": "TIMESTAMP",
}
DECIMAL = re.compile(r"^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$", re.IGNORECASE)


@dataclass(frozen=True)
class Node:
    """One validated node of the pipeline."""

    kind: str
    name: str
    file: str
    line: int
    spec: dict[str, Any]
    inputs: tuple[str, ...] = ()
    sql: str | None = None
    schema: tuple[tuple[str, str], ...] = ()
    features: tuple[tuple[str, str], ...] = ()
    join_keys: tuple[str, ...] = ()
    event_time_col: str | None = None

    @property
    def id(self) -> str:
        return f"{self.kind}.{self.name}"

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(str(t) for t in self.spec.get("tags") or ())

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def export(self) -> tuple[str, str] | None:
        """The exposure's file path and format, or None."""
        if self.kind != "exposure" or self.spec.get("type") != "file":
            return None
        params = self.spec.get("params") or {}
        path = str(params["path"])
        return path, str(params.get("format") or _format_from_path(path))


def _format_from_path(path: str) -> str | None:
    """The export format a path's extension names, if it names one."""
    suffix = Path(path).suffix.lower().lstrip(".")
    return {"csv": "csv", "parquet": "parquet", "pq": "parquet"}.get(suffix)


def duckdb_type(dtype: Any) -> str | None:
    """The DuckDB type for a Seeknal dtype name, or None if it is not one."""
    text = str(dtype).strip()
    if text.lower() in TYPES:
        return TYPES[text.lower()]
    match = DECIMAL.fullmatch(text)
    if match:
        return f"DECIMAL({match.group(1)},{match.group(2)})"
    return None


def type_hint() -> str:
    return "use one of: " + ", ".join(
        ["string", "integer", "bigint", "float", "real", "double", "boolean", "date"]
        + ["timestamp", "decimal(p,s)"]
    )


@dataclass
class _Draft:
    """A node document being checked, before inputs are resolved."""

    doc: Mapping
    file: str
    kind: str
    name: str
    refs: list[tuple[str, int]] = field(default_factory=list)
    sql: str | None = None


@dataclass(frozen=True)
class _Known:
    """The node ids that inputs and SQL may name.

    ``ids`` are the nodes defined, and those of a known kind rejected for
    another problem; only they are suggested for a misspelt reference. A file
    that could not be read (``complete`` False), or a document whose kind is
    not known (its name in ``unknown_kind``), may define the node a reference
    names: such a reference is not reported, the file's own problem is.
    """

    ids: set[str]
    unknown_kind: set[str]
    complete: bool
    by_name: dict[str, list[str]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        for node_id in self.ids:
            self.by_name.setdefault(node_id.split(".", 1)[1], []).append(node_id)

    def may_be_defined(self, ref: str) -> bool:
        """Whether a broken file may define what ``ref`` names."""
        return not self.complete or ref.rpartition(".")[2] in self.unknown_kind


@dataclass
class LoadResult:
    """Nodes in load order plus the non-fatal notes collected on the way.

    ``set_aside`` gives, by node id, the file and line of each file node that a
    cell node stands in for.
    """

    nodes: dict[str, Node]
    warnings: list[Problem]
    set_aside: dict[str, str] = field(default_factory=dict)


class _Checker:
    """Collects problems for one document, each with file and line."""

    def __init__(self, doc: Mapping, file: str, problems: list[Problem]) -> None:
        self.doc = doc
        self.file = file
        self.problems = problems
        self.node: str | None = None

    def fail(
        self,
        message: str,
        key: str | None = None,
        hint: str | None = None,
        line: int | None = None,
    ) -> None:
        """Record a problem at ``line``, else at ``key``'s line, else the node's."""
        if line is None:
            line = self.doc.line_of(key) if key else self.doc.line
        self.problems.append(Problem(message, self.file, line, self.node, hint))

    def line_in(self, container: Any, key: Any, key_of_container: str) -> int:
        """The line of ``key`` inside a nested mapping, else of the container."""
        if isinstance(container, Mapping):
            return container.line_of(key)
        return self.doc.line_of(key_of_container)


def yaml_files(root: Path) -> list[Path]:
    """The node files under ``root/seeknal``, in a stable order."""
    folder = root / "seeknal"
    if not folder.is_dir():
        return []
    files = [*folder.rglob("*.yml"), *folder.rglob("*.yaml")]
    return sorted(p for p in files if p.is_file())


def read_documents(
    root: Path,
    problems: list[Problem],
    warnings: list[Problem],
    unreadable: list[str] | None = None,
) -> Iterator[tuple[Mapping, str]]:
    """Every YAML document of the project with the file it came from.

    Files that cannot be read or parsed to the end are added to ``unreadable``.
    """
    for path in yaml_files(root):
        file = path.relative_to(root).as_posix()
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as error:
            problems.append(Problem(f"cannot read file: {error}", file))
            if unreadable is not None:
                unreadable.append(file)
            continue
        parsed = read_yaml(text, file)
        problems.extend(parsed.problems)
        if parsed.problems and unreadable is not None:
            unreadable.append(file)
        warnings.extend(parsed.warnings)
        for document in parsed.documents:
            if not isinstance(document.data, Mapping):
                problems.append(
                    Problem(
                        "a node document must be a mapping of fields",
                        file,
                        document.line,
                        hint="start with 'kind:' and 'name:'",
                    )
                )
                continue
            yield document.data, file


def _check_name(check: _Checker, name: Any) -> str | None:
    if name is None or name == "":
        check.fail("missing 'name'", hint="every node needs a name")
        return None
    text = str(name)
    if ".." in text or "/" in text or "\\" in text or not NAME_PATTERN.fullmatch(text):
        check.fail(
            f"name {text!r} is not allowed",
            "name",
            f"a name may hold only {NAME_RULE} (pattern {NAME_PATTERN.pattern})",
        )
        return None
    return text


def _check_kind(check: _Checker, kind: Any) -> str | None:
    if kind is None:
        check.fail("missing 'kind'", hint="one of: " + ", ".join(KINDS))
        return None
    text = str(kind)
    if text in KINDS:
        return text
    if text in UNSUPPORTED_KINDS:
        check.fail(
            f"kind {text!r} is a Seeknal kind that seeknal_jupyter does not support",
            "kind",
            "supported kinds: " + ", ".join(KINDS),
        )
        return None
    close = difflib.get_close_matches(text, KINDS, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "one of: " + ", ".join(KINDS)
    check.fail(f"unknown kind {text!r}", "kind", hint)
    return None


def _check_fields(check: _Checker, kind: str, warnings: list[Problem]) -> None:
    allowed = FIELDS[kind]
    for key in check.doc:
        if key in allowed:
            continue
        if key in NOTED_FIELDS:
            warnings.append(
                Problem(
                    f"field {key!r} is read but not acted on by seeknal_jupyter",
                    check.file,
                    check.doc.line_of(key),
                    check.node,
                )
            )
            continue
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else f"fields of a {kind}: " + ", ".join(allowed)
        )
        check.fail(f"unknown field {key!r}", key, hint)


def _check_type(check: _Checker, column: str, dtype: Any, line: int) -> str | None:
    resolved = duckdb_type(dtype)
    if resolved is None:
        hint = type_hint()
        if re.match(r"^decimal\(\s*\d+\s*$", str(dtype), re.IGNORECASE):
            hint = "quote it, e.g. 'decimal(10,2)': in {...} a comma ends the value"
        check.fail(f"column {column!r}: unknown type {dtype!r}", hint=hint, line=line)
    return resolved


def _source_schema(check: _Checker) -> tuple[tuple[str, str], ...]:
    doc = check.doc
    columns: list[tuple[str, str]] = []
    schema = doc.get("schema")
    if schema is not None:
        if not isinstance(schema, list):
            check.fail("'schema' must be a list of {name, data_type}", "schema")
            return ()
        for item in schema:
            line = item.line if isinstance(item, Mapping) else doc.line_of("schema")
            if not isinstance(item, dict) or "name" not in item:
                check.fail("each schema entry needs 'name' and 'data_type'", line=line)
                continue
            dtype = _check_type(check, item["name"], item.get("data_type"), line)
            if dtype:
                columns.append((str(item["name"]), dtype))
    described = doc.get("columns")
    if isinstance(described, dict):
        for column, info in described.items():
            dtype_name = info.get("dtype") if isinstance(info, dict) else info
            if dtype_name is None:
                continue
            line = check.line_in(described, column, "columns")
            dtype = _check_type(check, column, dtype_name, line)
            if dtype and all(c != column for c, _ in columns):
                columns.append((str(column), dtype))
    return tuple(columns)


def _check_source(check: _Checker) -> tuple[tuple[str, str], ...]:
    doc = check.doc
    fmt = doc.get("source")
    if fmt not in SOURCE_FORMATS:
        check.fail(
            f"'source' must be one of {', '.join(SOURCE_FORMATS)}, got {fmt!r}",
            "source" if "source" in doc else None,
        )
    table = doc.get("table")
    if not isinstance(table, str) or not table:
        check.fail("a source needs 'table': the path of its data file", None)
    params = doc.get("params")
    if params is not None and not isinstance(params, dict):
        check.fail("'params' must be a mapping of reader options", "params")
    elif isinstance(params, dict):
        _check_reader_options(check, params)
    if doc.get("inputs"):
        check.fail("a source cannot have inputs", "inputs", "remove 'inputs'")
    return _source_schema(check)


def _check_reader_options(check: _Checker, params: dict[str, Any]) -> None:
    """Each option must be a plain value with a name; the schema check then
    holds the names against the reader's (see binding.py)."""
    for key, value in params.items():
        line = check.line_in(params, key, "params")
        if not OPTION_PATTERN.fullmatch(str(key)):
            check.fail(f"reader option {key!r} is not a name", line=line)
        elif isinstance(value, (dict, list)):
            check.fail(f"reader option {key!r} must be a plain value", line=line)


def _check_features(check: _Checker) -> tuple[tuple[str, str], ...]:
    features = check.doc.get("features")
    if not isinstance(features, dict) or not features:
        check.fail(
            "a feature_group needs 'features': a mapping of name to {dtype}",
            "features" if "features" in check.doc else None,
        )
        return ()
    result = []
    for name, info in features.items():
        dtype_name = info.get("dtype") if isinstance(info, dict) else info
        line = check.line_in(features, name, "features")
        dtype = _check_type(check, name, dtype_name, line)
        if dtype:
            result.append((str(name), dtype))
    return tuple(result)


def _check_entity(check: _Checker) -> tuple[str, ...]:
    entity = check.doc.get("entity")
    keys = entity.get("join_keys") if isinstance(entity, dict) else None
    if not isinstance(keys, list) or not keys:
        check.fail(
            "a feature_group needs 'entity: {name, join_keys: [...]}'",
            "entity" if "entity" in check.doc else None,
        )
        return ()
    return tuple(str(k) for k in keys)


def _check_exposure(check: _Checker) -> None:
    kind = check.doc.get("type")
    if kind is None:
        return
    if kind != "file":
        check.fail(f"exposure type {kind!r} is not supported", "type", "use 'file'")
        return
    params = check.doc.get("params")
    path = params.get("path") if isinstance(params, dict) else None
    if not isinstance(params, dict) or not isinstance(path, str) or not path:
        check.fail("a file exposure needs 'params: {path, format}'", "params")
        return
    fmt = params.get("format") or _format_from_path(path)
    if fmt is None:
        check.fail(
            f"params.path {path!r} does not say its format",
            "params",
            "end it in .parquet or .csv, or add 'format: parquet' or 'format: csv'",
        )
        return
    if fmt not in EXPORT_FORMATS:
        check.fail(
            f"export format {fmt!r} is not supported", "params", "parquet or csv"
        )


def _input_refs(check: _Checker) -> list[tuple[str, int]]:
    raw = check.doc.get("inputs")
    if raw is None:
        return []
    if not isinstance(raw, list):
        check.fail("'inputs' must be a list of {ref: kind.name}", "inputs")
        return []
    refs = []
    line = check.doc.line_of("inputs")
    for item in raw:
        ref = item.get("ref") if isinstance(item, dict) else item
        item_line = item.line if isinstance(item, Mapping) else line
        if not isinstance(ref, str) or not ref:
            check.fail("each input needs 'ref: kind.name'", "inputs")
            continue
        refs.append((ref, item_line))
    return refs


def _draft(
    doc: Mapping, file: str, problems: list[Problem], warnings: list[Problem]
) -> tuple[_Draft, dict[str, Any]] | None:
    check = _Checker(doc, file, problems)
    before = len(problems)
    name = _check_name(check, doc.get("name"))
    if name and doc.get("kind") is not None:
        check.node = f"{doc.get('kind')}.{name}"
    kind = _check_kind(check, doc.get("kind"))
    if kind is None:
        return None
    _check_fields(check, kind, warnings)
    extra: dict[str, Any] = {}
    sql = doc.get("transform")
    if sql is not None and not isinstance(sql, str):
        check.fail("'transform' must be SQL text", "transform")
        sql = None
    if kind == "source":
        extra["schema"] = _check_source(check)
    elif kind == "transform" and not (sql and sql.strip()):
        check.fail("a transform needs 'transform': its SQL", None)
    elif kind == "feature_group":
        extra["features"] = _check_features(check)
        extra["join_keys"] = _check_entity(check)
        materialization = doc.get("materialization")
        if isinstance(materialization, dict) and materialization.get("event_time_col"):
            extra["event_time_col"] = str(materialization["event_time_col"])
    elif kind == "exposure":
        _check_exposure(check)
    refs = _input_refs(check) if kind != "source" else []
    if name is None or len(problems) > before:
        return None
    return _Draft(doc, file, kind, name, refs, sql), extra


def _resolve(ref: str, ids: set[str], by_name: dict[str, list[str]]) -> str | None:
    if ref in ids:
        return ref
    if "." not in ref and len(by_name.get(ref, [])) == 1:
        return by_name[ref][0]
    return None


def _suggest(ref: str, ids: Iterable[str]) -> str:
    """A hint naming the node whose name is close to ``ref``'s (its kind is left
    out of the comparison, as every id of a kind shares it), preferring one of
    the same kind."""
    kind, _, name = ref.rpartition(".")
    by_name: dict[str, list[str]] = {}
    for node_id in sorted(ids):
        by_name.setdefault(node_id.split(".", 1)[1], []).append(node_id)
    close = difflib.get_close_matches(name, list(by_name), n=1, cutoff=SUGGEST_CUTOFF)
    if not close:
        return "check the node id (kind.name)"
    same_kind = [i for i in by_name[close[0]] if i.startswith(f"{kind}.")]
    return f"did you mean {(same_kind or by_name[close[0]])[0]!r}?"


def sql_file_line(spec: Any, sql: str, line_in_sql: int) -> int | None:
    """The file line of line ``line_in_sql`` (from 1) of a node's SQL as it runs.

    The SQL runs stripped of leading blank lines, so they are counted back in.
    None when the YAML does not keep the SQL's lines as the file's (see
    :meth:`Mapping.text_line`).
    """
    start = spec.text_line("transform") if isinstance(spec, Mapping) else None
    if start is None:
        return None
    leading = sql[: len(sql) - len(sql.lstrip())].count("\n")
    return start + leading + line_in_sql - 1


def _line_naming(draft: _Draft, word: str) -> int:
    """The file line of the first SQL line naming ``word``, else the transform's."""
    sql = draft.sql or ""
    pattern = _word(word)
    for number, text in enumerate(sql.strip().splitlines(), start=1):
        if pattern.search(text):
            line = sql_file_line(draft.doc, sql, number)
            if line is not None:
                return line
            break
    return draft.doc.line_of("transform")


def _reads(sql: str, input_id: str) -> bool:
    """Whether the SQL may read ``input_id``: it names it, as kind.name or bare.

    A name that appears nowhere in the text cannot be read, so False is certain;
    True may come from a comment or a column of the same name.
    """
    return _word(input_id.split(".", 1)[1]).search(sql) is not None


def _word(word: str) -> re.Pattern[str]:
    """``word`` as a whole identifier, in any case (as SQL reads names)."""
    return re.compile(
        rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", re.IGNORECASE
    )


def _declared_inputs(
    draft: _Draft,
    known: _Known,
    problems: list[Problem],
    warnings: list[Problem],
) -> list[str]:
    """The ids of the node's ``inputs`` list; a repeated one is a warning."""
    node_id = f"{draft.kind}.{draft.name}"
    inputs: list[str] = []
    first_line: dict[str, int] = {}
    for ref, line in draft.refs:
        target = _resolve(ref, known.ids, known.by_name)
        if target == node_id:
            problems.append(
                Problem(
                    f"{node_id} lists itself as an input",
                    draft.file,
                    line,
                    node_id,
                    "a node cannot read its own output; remove this input",
                )
            )
        elif target is None:
            if not known.may_be_defined(ref):
                problems.append(
                    Problem(
                        f"unknown input {ref!r}",
                        draft.file,
                        line,
                        node_id,
                        _suggest(ref, known.ids),
                    )
                )
        elif target in first_line:
            warnings.append(
                Problem(
                    f"input {target} is listed twice in 'inputs', first on line "
                    f"{first_line[target]}",
                    draft.file,
                    line,
                    node_id,
                    "remove one of them",
                )
            )
        else:
            first_line[target] = line
            inputs.append(target)
    if draft.sql:
        for target in inputs:
            if not _reads(draft.sql, target):
                warnings.append(
                    Problem(
                        f"input {target} is declared but not read by the SQL",
                        draft.file,
                        first_line[target],
                        node_id,
                        f"read it in the SQL as {target}, or remove it from 'inputs'",
                    )
                )
    return inputs


def _link(
    draft: _Draft,
    known: _Known,
    problems: list[Problem],
    warnings: list[Problem],
) -> tuple[str, ...]:
    """The node's input ids: its ``inputs`` list, then the nodes its SQL reads
    as ``kind.name`` that the list does not hold.

    A reference that a broken file may define is not reported (the file's own
    problem is); see :class:`_Known`.
    """
    node_id = f"{draft.kind}.{draft.name}"
    inputs = _declared_inputs(draft, known, problems, warnings)
    if draft.sql:
        for ref in referenced_nodes(draft.sql):
            if ref == node_id:
                problems.append(
                    Problem(
                        f"{node_id} reads itself in its SQL",
                        draft.file,
                        _line_naming(draft, ref.split(".", 1)[1]),
                        node_id,
                        "a node cannot read its own output",
                    )
                )
            elif ref not in known.ids:
                if known.may_be_defined(ref):
                    continue
                problems.append(
                    Problem(
                        f"SQL reads {ref!r}, which is not a node",
                        draft.file,
                        _line_naming(draft, ref.split(".", 1)[1]),
                        node_id,
                        _suggest(ref, known.ids),
                    )
                )
            elif ref not in inputs:
                log.info("%s: input %s taken from its SQL", node_id, ref)
                inputs.append(ref)
    if draft.kind in ("feature_group", "exposure") and not draft.sql:
        if len(inputs) > 1:
            problems.append(
                Problem(
                    f"{len(inputs)} inputs and no 'transform'",
                    draft.file,
                    draft.doc.line,
                    node_id,
                    "add a 'transform' with SQL that joins them",
                )
            )
        elif not inputs and not draft.refs:
            problems.append(
                Problem(
                    "no inputs and no 'transform'",
                    draft.file,
                    draft.doc.line,
                    node_id,
                    "add 'inputs' or a 'transform'",
                )
            )
    return tuple(inputs)


def build_nodes(
    documents: Iterable[tuple[Mapping, str]],
    problems: list[Problem],
    warnings: list[Problem],
    complete: bool = True,
) -> dict[str, Node]:
    """Validate documents and link their inputs; later documents may replace none.

    ``complete`` is False when some file could not be read: unknown inputs are then
    not reported, since they may be defined in that file. Nor are references to
    the name of a document whose kind is not known, which may define them.
    """
    drafts: list[tuple[_Draft, dict[str, Any]]] = []
    seen: dict[str, str] = {}
    rejected: set[str] = set()
    unknown_kind: set[str] = set()
    for doc, file in documents:
        made = _draft(doc, file, problems, warnings)
        if made is None:
            if doc.get("kind") in KINDS:
                rejected.add(f"{doc.get('kind')}.{doc.get('name')}")
            else:
                unknown_kind.add(str(doc.get("name")))
            continue
        draft = made[0]
        node_id = f"{draft.kind}.{draft.name}"
        where = f"{file}:{doc.line}"
        if node_id in seen:
            problems.append(
                Problem(
                    f"duplicate node id {node_id} (also defined at {seen[node_id]})",
                    file,
                    doc.line,
                    node_id,
                    "rename one of them",
                )
            )
            continue
        seen[node_id] = where
        drafts.append(made)
    known = _Known(set(seen) | rejected, unknown_kind, complete)
    nodes: dict[str, Node] = {}
    for draft, extra in drafts:
        inputs = _link(draft, known, problems, warnings)
        node = Node(
            kind=draft.kind,
            name=draft.name,
            file=draft.file,
            line=draft.doc.line,
            spec=draft.doc,
            inputs=inputs,
            sql=draft.sql,
            **extra,
        )
        nodes[node.id] = node
    return nodes


def load_nodes(root: Path, cells: Iterable[tuple[Mapping, str]] = ()) -> LoadResult:
    """Load and validate every node of the project at ``root``.

    Args:
        root: the project folder (holding ``seeknal/``).
        cells: extra node documents defined in notebook cells, with a label each;
            a cell node replaces a file node with the same id.

    Returns:
        The nodes by id and the warnings.

    Raises:
        ProjectError: listing every problem found, with file and line.
    """
    problems: list[Problem] = []
    warnings: list[Problem] = []
    unreadable: list[str] = []
    cell_docs = list(cells)
    cell_ids = {f"{d.get('kind')}.{d.get('name')}" for d, _ in cell_docs}
    file_docs = []
    set_aside = {}
    for doc, file in read_documents(root, problems, warnings, unreadable):
        node_id = f"{doc.get('kind')}.{doc.get('name')}"
        if node_id in cell_ids:
            set_aside[node_id] = f"{file}:{doc.line}"
        else:
            file_docs.append((doc, file))
    nodes = build_nodes(
        [*file_docs, *cell_docs], problems, warnings, complete=not unreadable
    )
    problems += exposures.check_paths(nodes.values(), root)
    if problems:
        raise ProjectError(problems)
    for warning in warnings:
        log.warning("%s", warning)
    files = len({file for _, file in file_docs})
    log.info(
        "loaded %s from %s under %s%s",
        plural(len(nodes), "node"),
        plural(files, "file"),
        root / "seeknal",
        f" and {plural(len(cell_docs), 'notebook cell')}" if cell_docs else "",
    )
    return LoadResult(nodes, warnings, set_aside)
