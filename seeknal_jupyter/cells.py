"""Nodes defined in notebook cells: made from SQL or YAML, bound, removed and saved.

A cell node lives in ``Project.cells`` (its document and a ``<cell kind.name>``
label, by node id) beside the YAML files, and stands in for a file node of the same
id. ``Project.add_node``, ``Project.remove_node`` and ``Project.save_node`` call this
module; the ``%%seeknal_node`` magic calls those.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from seeknal_jupyter.errors import Problem, ProjectError, UsageError
from seeknal_jupyter.fingerprint import definition
from seeknal_jupyter.loader import FIELDS, NOTED_FIELDS, Node, read_documents
from seeknal_jupyter.store import write_text_atomically
from seeknal_jupyter.yamlfile import Mapping, read_yaml

if TYPE_CHECKING:
    from seeknal_jupyter.project import Project

NODE_FIELDS = frozenset(f for fields in FIELDS.values() for f in fields) | set(
    NOTED_FIELDS
)
YAML_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:")


@dataclass
class NodeChange:
    """What adding a cell node did, and how the node compares with production.

    Attributes:
        node_id: the node's id, ``kind.name``.
        replaced: what defined the node before ("an earlier cell", or a file and
            line), or None when the node is new.
        node: the node as the project now loads it.
        layer: its 0-based layer.
        classification: one line saying how it classifies against production.
        saved: the YAML file it was then saved to, relative to the project.
    """

    node_id: str
    replaced: str | None
    node: Node
    layer: int
    classification: str
    saved: Path | None = None

    def __str__(self) -> str:
        verb = (
            f"Replaced {self.node_id} (was {self.replaced})"
            if self.replaced
            else f"Added {self.node_id}"
        )
        inputs = (
            f"inputs {', '.join(self.node.inputs)}" if self.node.inputs else "no inputs"
        )
        text = f"{verb}: layer {self.layer + 1}, {inputs}."
        if self.saved is not None:
            text += f" Saved to {self.saved}."
        return f"{text}\n{self.classification}"


@dataclass(frozen=True)
class NodeRemoval:
    """What removing a cell node did: the file defining the node, if any, is back."""

    node_id: str
    file_node: str | None

    def __str__(self) -> str:
        if self.file_node is None:
            return f"Removed {self.node_id}, defined in a cell."
        return f"Removed the cell's {self.node_id}; {self.file_node} defines it again."


def is_yaml_body(body: str) -> bool:
    """Whether a cell body is YAML: its first line starts with a node field."""
    for line in body.splitlines():
        text = line.strip()
        if not text or text.startswith("#") or text == "---":
            continue
        match = YAML_KEY.match(text)
        return bool(match and match.group(1) in NODE_FIELDS)
    return False


def add_node(
    project: Project,
    kind: str,
    name: str,
    sql: str | None = None,
    yaml_body: str | None = None,
    inputs: Iterable[str] = (),
) -> NodeChange:
    """Add or replace a cell node of ``project``; see :meth:`Project.add_node`."""
    if (sql is None) == (yaml_body is None):
        raise UsageError(f"{kind}.{name}: give the node's SQL or its YAML, not both")
    refs = list(inputs)
    if yaml_body is not None:
        document = yaml_document(kind, name, yaml_body, refs)
    else:
        document = sql_document(kind, name, sql or "", refs)
    node_id = f"{kind}.{name}"
    label = f"<cell {node_id}>"
    before = _where_defined(project, node_id)
    kept = project.cells.get(node_id)
    project.cells[node_id] = (document, label)
    try:
        dag = project.dag()
        project.check_node(node_id)
    except ProjectError as error:
        _restore(project, node_id, kept)
        stays = "; the earlier cell's version stays" if kept else ""
        raise UsageError(
            f"{node_id} not added: {_one_line(error.problems, label)}{stays}"
        ) from None
    from seeknal_jupyter.environments import classify_node

    return NodeChange(
        node_id,
        before,
        dag.nodes[node_id],
        dag.layer[node_id],
        classify_node(project, node_id),
    )


def remove_node(project: Project, node: str) -> NodeRemoval:
    """Take a cell node out of ``project``; see :meth:`Project.remove_node`."""
    node_id = _cell_id(project, node)
    file_node = _file_definition(project, node_id)
    if file_node is None:
        readers = _readers(project, node_id)
        if readers:
            raise UsageError(
                f"{node_id} not removed: {', '.join(readers)} read(s) it; remove "
                "or change those first"
            )
    del project.cells[node_id]
    return NodeRemoval(node_id, file_node)


def save_node(project: Project, node_id: str) -> Path:
    """Write a cell node to YAML; see :meth:`Project.save_node`."""
    if node_id not in project.cells:
        raise UsageError(f"{node_id} is not a cell node; only cell nodes are saved")
    document, label = project.cells[node_id]
    cell_node = project.dag().nodes[node_id]
    relative = _save_path(project, node_id)
    path = project.root / relative
    previous = path.read_text(encoding="utf-8") if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, dump_document(document))
    del project.cells[node_id]
    try:
        saved = project.dag().nodes.get(node_id)
    except ProjectError as error:
        saved, problems = None, error.problems
    else:
        problems = []
    if saved is None or definition(saved) != definition(cell_node):
        project.cells[node_id] = (document, label)
        if previous is None:
            path.unlink()
        else:
            write_text_atomically(path, previous)
        detail = (
            _one_line(problems, relative.as_posix())
            if problems
            else "it loads back as a different node"
        )
        raise UsageError(f"{node_id} not saved to {relative}: {detail}")
    return relative


def yaml_document(kind: str, name: str, body: str, inputs: list[str]) -> Mapping:
    """The node document of a YAML cell body, with the magic line's kind and name.

    Raises:
        UsageError: the YAML is invalid, is not one mapping, names another kind
            or name, or gives inputs both in the body and on the magic line.
    """
    label = f"<cell {kind}.{name}>"
    parsed = read_yaml(body, label)
    if parsed.problems:
        raise UsageError(str(parsed.problems[0]))
    if len(parsed.documents) != 1 or not isinstance(parsed.documents[0].data, Mapping):
        raise UsageError(
            f"{label}: the body must be one YAML mapping of the node's fields"
        )
    document = parsed.documents[0].data
    for key, value in (("kind", kind), ("name", name)):
        if key in document and str(document[key]) != value:
            raise UsageError(
                f"{label}: the body says {key}: {document[key]}, the magic line says "
                f"{value}; make them agree"
            )
    if inputs and "inputs" in document:
        raise UsageError(
            f"{label}: inputs are given twice; keep --inputs or the YAML's 'inputs', "
            "not both"
        )
    fields: dict[str, Any] = {"kind": kind, "name": name, **document}
    if inputs:
        fields["inputs"] = [_mapping({"ref": ref}) for ref in inputs]
    return _mapping(fields, document.line, document.key_lines)


def sql_document(kind: str, name: str, sql: str, inputs: list[str]) -> Mapping:
    """The node document of a SQL cell body.

    Raises:
        UsageError: the node is a source (described in YAML) or the SQL is empty.
    """
    label = f"<cell {kind}.{name}>"
    if kind == "source":
        raise UsageError(
            f"{label}: a source is described in YAML (source:, table:, schema:), "
            "not SQL"
        )
    if not sql.strip():
        raise UsageError(f"{label}: the cell is empty; write the node's SQL")
    fields: dict[str, Any] = {"kind": kind, "name": name}
    if inputs:
        fields["inputs"] = [_mapping({"ref": ref}) for ref in inputs]
    fields["transform"] = sql.strip() + "\n"
    return _mapping(fields)


def dump_document(document: dict[str, Any]) -> str:
    """A node document as YAML, SQL kept as a literal block."""
    return yaml.dump(
        _plain(document), Dumper=_BlockDumper, sort_keys=False, allow_unicode=True
    )


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings as ``|`` blocks."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_BlockDumper.add_representer(str, _represent_text)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _cell_id(project: Project, node: str) -> str:
    """The id of the cell node ``node`` names (``kind.name`` or a bare name)."""
    matches = [
        node_id
        for node_id in project.cells
        if node in (node_id, node_id.split(".", 1)[1])
    ]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UsageError(f"{node!r} is ambiguous: {', '.join(sorted(matches))}")
    listed = ", ".join(sorted(project.cells)) or "none"
    raise UsageError(f"{node} is not a cell node (cell nodes: {listed})")


def _readers(project: Project, node_id: str) -> list[str]:
    """The nodes reading ``node_id``; none when the project does not load."""
    try:
        dag = project.dag()
    except ProjectError:
        return []
    return sorted(dag.downstream.get(node_id, ()))


def _save_path(project: Project, node_id: str) -> Path:
    kind, name = node_id.split(".", 1)
    default = Path("seeknal") / f"{kind}s" / f"{name}.yml"
    files: dict[str, int] = {}
    holder = None
    for doc, file in read_documents(project.root, [], []):
        files[file] = files.get(file, 0) + 1
        if f"{doc.get('kind')}.{doc.get('name')}" == node_id:
            holder = file
    if holder is None:
        return default
    if files[holder] > 1:
        raise UsageError(
            f"{node_id} is defined in {holder} with other nodes; edit that file "
            "instead of saving the cell"
        )
    return Path(holder)


def _file_definition(project: Project, node_id: str) -> str | None:
    """The file and line defining ``node_id``, if a YAML file does."""
    for doc, file in read_documents(project.root, [], []):
        if f"{doc.get('kind')}.{doc.get('name')}" == node_id:
            return f"{file}:{doc.line}"
    return None


def _where_defined(project: Project, node_id: str) -> str | None:
    if node_id in project.cells:
        return "an earlier cell"
    return _file_definition(project, node_id)


def _restore(project: Project, node_id: str, kept: tuple[Mapping, str] | None) -> None:
    if kept is None:
        project.cells.pop(node_id, None)
    else:
        project.cells[node_id] = kept


def _one_line(problems: list[Problem], label: str) -> str:
    """The problems of ``label`` (or all of them) joined on one line."""
    own = [p for p in problems if p.file == label] or problems
    return "; ".join(str(p) for p in own)


def _mapping(
    fields: dict[str, Any], line: int = 1, key_lines: dict[str, int] | None = None
) -> Mapping:
    document = Mapping(fields)
    document.line = line
    document.key_lines = {key: (key_lines or {}).get(key, line) for key in fields}
    return document
