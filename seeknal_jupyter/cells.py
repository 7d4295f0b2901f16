"""Nodes defined in notebook cells: made from SQL or YAML, bound, removed and saved.

A cell node lives in ``Project.cells`` (its node document, by node id) beside the
YAML files, and stands in for a file node of the same id; the loader knows it by
its label, ``<cell kind.name>``. ``Project.add_node``, ``Project.remove_node`` and
``Project.save_node`` call this module; the ``%%seeknal_node`` magic calls those.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from seeknal_jupyter.dag import Dag, build_dag
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


def cell_label(node_id: str) -> str:
    """The label a cell node's problems are reported under: ``<cell kind.name>``."""
    return f"<cell {node_id}>"


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
        unbound: the nodes downstream of it whose SQL no longer binds against
            its columns, one problem each (file, line and DuckDB's message).
        saved: the YAML file it was then saved to, relative to the project.
    """

    node_id: str
    replaced: str | None
    node: Node
    layer: int
    classification: str
    unbound: list[Problem] = field(default_factory=list)
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
        lines = [text, self.classification]
        lines += [
            f"warning: {p.node} ({p.file}:{p.line}) no longer binds: {p.message}"
            for p in self.unbound
        ]
        if len(self.unbound) == 1:
            lines.append(
                f"Every plan and run fails until it binds again: change "
                f"{self.node_id} or {self.unbound[0].node}."
            )
        elif self.unbound:
            lines.append(
                f"Every plan and run fails until they bind again: change "
                f"{self.node_id} or those nodes."
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class NodeRemoval:
    """What removing a node did.

    Attributes:
        node_id: the node's id, ``kind.name``.
        file_node: the file and line defining the node again, now that the cell
            standing in for it is gone, or None.
        deleted: the node file deleted with it (the one saving the cell wrote),
            relative to the project, or None.
    """

    node_id: str
    file_node: str | None = None
    deleted: Path | None = None

    def __str__(self) -> str:
        if self.deleted is not None:
            return f"Removed {self.node_id} and deleted its file {self.deleted}."
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
    save: bool = False,
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
    kept = project.cells.get(node_id)
    project.cells[node_id] = document
    try:
        loaded = project.load()
        dag = build_dag(loaded.nodes)
        unbound = _bind_with_readers(project, dag, node_id)
    except ProjectError as error:
        _restore(project, node_id, kept)
        stays = "; the earlier cell's version stays" if kept is not None else ""
        raise UsageError(
            f"{node_id} not added: "
            f"{_one_line(error.problems, cell_label(node_id))}{stays}"
        ) from None
    from seeknal_jupyter.environments import classify_node

    change = NodeChange(
        node_id,
        "an earlier cell" if kept is not None else loaded.set_aside.get(node_id),
        dag.nodes[node_id],
        dag.layer[node_id],
        classify_node(project, node_id, dag, [p.node for p in unbound if p.node]),
        unbound,
    )
    if save:
        change.saved = _save(project, node_id, dag.nodes[node_id])
    return change


def remove_node(project: Project, node: str) -> NodeRemoval:
    """Take a node out of ``project``; see :meth:`Project.remove_node`."""
    cell_id = _cell_id(project, node)
    if cell_id is not None:
        return _remove_cell(project, cell_id)
    return _remove_saved_file(project, node)


def save_node(project: Project, node_id: str) -> Path:
    """Write a cell node to YAML; see :meth:`Project.save_node`."""
    if node_id not in project.cells:
        raise UsageError(f"{node_id} is not a cell node; only cell nodes are saved")
    return _save(project, node_id, project.dag().nodes[node_id])


def yaml_document(kind: str, name: str, body: str, inputs: list[str]) -> Mapping:
    """The node document of a YAML cell body, with the magic line's kind and name.

    Raises:
        UsageError: the YAML is invalid, is not one mapping, names another kind
            or name, or gives inputs both in the body and on the magic line.
    """
    label = cell_label(f"{kind}.{name}")
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
    label = cell_label(f"{kind}.{name}")
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


def _bind_with_readers(project: Project, dag: Dag, node_id: str) -> list[Problem]:
    """Bind the node and every node downstream of it; the downstream problems.

    Raises:
        ProjectError: the node itself (or an input it needs) does not bind.
    """
    downstream = dag.downstream_of([node_id])
    try:
        project.check_nodes([node_id, *downstream], dag)
    except ProjectError as error:
        own = [p for p in error.problems if p.node not in downstream]
        if own:
            raise ProjectError(own) from None
        return error.problems
    return []


def _save(project: Project, node_id: str, cell_node: Node) -> Path:
    """Write the cell node to its file; keep the file once it loads back the same."""
    document = project.cells[node_id]
    relative = _save_path(project, node_id)
    path = project.root / relative
    previous = path.read_text(encoding="utf-8") if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, dump_document(document))
    del project.cells[node_id]
    try:
        with _loader_warnings_shown_already():
            saved = project.dag().nodes.get(node_id)
    except ProjectError as error:
        saved, problems = None, error.problems
    else:
        problems = []
    if saved is None or definition(saved) != definition(cell_node):
        project.cells[node_id] = document
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


@contextlib.contextmanager
def _loader_warnings_shown_already() -> Iterator[None]:
    """Loading the saved node back repeats the warnings its cell already gave."""
    loader_log = logging.getLogger("seeknal_jupyter.loader")
    loader_log.addFilter(_below_warning)
    try:
        yield
    finally:
        loader_log.removeFilter(_below_warning)


def _below_warning(record: logging.LogRecord) -> bool:
    return record.levelno < logging.WARNING


def _default_save_path(node_id: str) -> Path:
    kind, name = node_id.split(".", 1)
    return Path("seeknal") / f"{kind}s" / f"{name}.yml"


def _save_path(project: Project, node_id: str) -> Path:
    files: dict[str, int] = {}
    holder = None
    for doc, file in read_documents(project.root, [], []):
        files[file] = files.get(file, 0) + 1
        if f"{doc.get('kind')}.{doc.get('name')}" == node_id:
            holder = file
    if holder is None:
        return _default_save_path(node_id)
    if files[holder] > 1:
        raise UsageError(
            f"{node_id} is defined in {holder} with other nodes; edit that file "
            "instead of saving the cell"
        )
    return Path(holder)


def _cell_id(project: Project, node: str) -> str | None:
    """The id of the cell node ``node`` names (``kind.name`` or a bare name)."""
    matches = [
        node_id
        for node_id in project.cells
        if node in (node_id, node_id.split(".", 1)[1])
    ]
    if len(matches) > 1:
        raise UsageError(f"{node!r} is ambiguous: {', '.join(sorted(matches))}")
    return matches[0] if matches else None


def _remove_cell(project: Project, node_id: str) -> NodeRemoval:
    """Drop a cell node; refused while only the cell defines it and others read it."""
    try:
        loaded = project.load()
    except ProjectError:
        file_node, readers = _file_definition(project, node_id), []
    else:
        file_node = loaded.set_aside.get(node_id)
        readers = sorted(build_dag(loaded.nodes).downstream[node_id])
    if file_node is None:
        _refuse_if_read(node_id, readers)
    del project.cells[node_id]
    return NodeRemoval(node_id, file_node=file_node)


def _remove_saved_file(project: Project, node: str) -> NodeRemoval:
    """Delete the file that saving a cell node wrote, if that is what defines it."""
    found = []
    in_file: dict[str, int] = {}
    for doc, file in read_documents(project.root, [], []):
        in_file[file] = in_file.get(file, 0) + 1
        doc_id = f"{doc.get('kind')}.{doc.get('name')}"
        if node in (doc_id, doc.get("name")):
            found.append((doc_id, doc, file))
    if not found:
        listed = ", ".join(sorted(project.cells)) or "none"
        raise UsageError(
            f"{node} is not a node of {project.name} (cell nodes: {listed})"
        )
    if len(found) > 1:
        ids = ", ".join(sorted(doc_id for doc_id, _, _ in found))
        raise UsageError(f"{node!r} is ambiguous: {ids}")
    ((node_id, doc, file),) = found
    saved = _default_save_path(node_id)
    if Path(file) != saved or in_file[file] > 1:
        raise UsageError(
            f"{node_id} is defined in {file}:{doc.line}, not by a cell or its --save; "
            "to remove it, delete it from that file"
        )
    _refuse_if_read(node_id, _readers(project, node_id))
    (project.root / saved).unlink()
    return NodeRemoval(node_id, deleted=saved)


def _refuse_if_read(node_id: str, readers: list[str]) -> None:
    if readers:
        raise UsageError(
            f"{node_id} not removed: {', '.join(readers)} "
            f"{'reads' if len(readers) == 1 else 'read'} it; remove or change "
            f"{'that node' if len(readers) == 1 else 'those nodes'} first"
        )


def _readers(project: Project, node_id: str) -> list[str]:
    """The nodes reading ``node_id``; none when the project does not load."""
    try:
        dag = project.dag()
    except ProjectError:
        return []
    return sorted(dag.downstream.get(node_id, ()))


def _file_definition(project: Project, node_id: str) -> str | None:
    """The file and line defining ``node_id``, if a YAML file does."""
    for doc, file in read_documents(project.root, [], []):
        if f"{doc.get('kind')}.{doc.get('name')}" == node_id:
            return f"{file}:{doc.line}"
    return None


def _restore(project: Project, node_id: str, kept: Mapping | None) -> None:
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
