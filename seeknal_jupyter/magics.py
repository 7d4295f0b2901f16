"""IPython magics: ``%seeknal`` (the command line's commands) and ``%%seeknal_node``.

``%load_ext seeknal_jupyter`` registers them. The project lives in the kernel: the
first command loads it (``%seeknal project PATH``, or the working folder), later
ones reuse it and the engine re-reads its YAML on every command. Nodes defined in
cells live in ``Project.cells`` beside the files.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from traitlets import Enum, Integer

from seeknal_jupyter import cli, graph
from seeknal_jupyter.environments import classify_node
from seeknal_jupyter.errors import Problem, ProjectError, RunFailed, SeeknalError
from seeknal_jupyter.errors import UsageError as SeeknalUsageError
from seeknal_jupyter.fingerprint import definition
from seeknal_jupyter.loader import FIELDS, NOTED_FIELDS, Node, read_documents
from seeknal_jupyter.progress import ProgressPanel
from seeknal_jupyter.project import Project
from seeknal_jupyter.report import RunResult, TextReporter, plural
from seeknal_jupyter.store import write_text_atomically
from seeknal_jupyter.yamlfile import Mapping, read_yaml

log = logging.getLogger(__name__)

NODE_FIELDS = frozenset(f for fields in FIELDS.values() for f in fields) | set(
    NOTED_FIELDS
)
YAML_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:")


@magics_class
class SeeknalMagics(Magics):
    """``%seeknal`` and ``%%seeknal_node``, with settings for ``%config``."""

    max_workers = Integer(
        None,
        allow_none=True,
        help="Workers for 'run --parallel' without --max-workers "
        "(default: min(cpu_count, 8)).",
    ).tag(config=True)
    progress = Enum(
        ("auto", "widget", "text"),
        default_value="auto",
        help="How runs show progress: 'widget' (an ipywidgets panel), 'text' "
        "(printed lines) or 'auto' (widgets in a kernel, text in a terminal).",
    ).tag(config=True)
    dag_engine = Enum(
        ("auto", "dot", "wasm", "text"),
        default_value="auto",
        help="Renderer of '%seeknal dag': system dot, Graphviz compiled to "
        "WebAssembly, or text ('auto' tries them in that order).",
    ).tag(config=True)
    dag_max_nodes = Integer(
        300,
        help="Above this many nodes '%seeknal dag' draws one box per layer and kind.",
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.project: Project | None = None
        self.last_result: RunResult | None = None
        self._last_result_root: Path | None = None

    @line_magic
    def seeknal(self, line: str) -> Any:
        """Run a seeknal command in the notebook: ``%seeknal COMMAND [OPTIONS]``.

        It takes the command line's commands and options (``%seeknal -h`` lists
        them) plus ``project PATH``, which loads the project the notebook works on.
        Results come back as objects with HTML and text views; ``show`` returns a
        pandas DataFrame.
        """
        try:
            args = cli.parse(line, notebook=True)
        except SeeknalUsageError as error:
            raise IPythonUsageError(str(error)) from None
        except ValueError as error:
            raise IPythonUsageError(f"%seeknal: {error}") from None
        except SystemExit:
            return None
        with _user_errors(), _logging(args.verbose):
            return self._command(args)

    @magic_arguments()
    @argument("kind", help="source, transform, feature_group or exposure")
    @argument("name", help="the node's name; its id is KIND.NAME")
    @argument(
        "--inputs",
        default="",
        metavar="A,B",
        help="upstream nodes of a SQL body (kind.name, or a bare name)",
    )
    @argument(
        "--save",
        action="store_true",
        help="also write the node to seeknal/<kind>s/<name>.yml",
    )
    @cell_magic
    def seeknal_node(self, line: str, cell: str) -> None:
        """Add or replace a node of the notebook's project with this cell.

        The body is the node's SQL, or its YAML (the fields of a node file).
        Running the cell again replaces the node; an invalid node is not kept.
        """
        args = parse_argstring(self.seeknal_node, line)
        inputs = [part.strip() for part in args.inputs.split(",") if part.strip()]
        with _user_errors():
            project = self.current_project()
            change = define_node(project, args.kind, args.name, cell, inputs, args.save)
            print(change)
            print(classify_node(project, change.node_id))

    def current_project(self) -> Project:
        """The notebook's project, loading the working folder the first time."""
        if self.project is None:
            self.project = Project(".")
        return self.project

    def use_project(self, path: str | Path) -> Project:
        """Make the project at ``path`` the notebook's project and check it loads."""
        project = Project(path)
        self.project = project
        dag = project.dag()
        print(
            f"Project {project.name} at {project.root}: "
            f"{plural(len(dag.nodes), 'node')} in {plural(dag.layer_count, 'layer')}"
        )
        return project

    def _command(self, args: Any) -> Any:
        if args.command == "project":
            if args.path is None and self.project is not None:
                return self.project
            return self.use_project(args.path or ".")
        if args.command == "init":
            made = cli.dispatch(args, None, None)
            self.project = Project(made.folder)
            print(f"{str(made).splitlines()[0]} It is now the notebook's project.")
            return made
        project = Project(args.project) if args.project else self.current_project()
        if args.command == "run" or getattr(args, "env_command", None) == "apply":
            return self._run(args, project)
        if args.command == "dag":
            return self._dag(args, project)
        return cli.dispatch(args, project, None)

    def _run(self, args: Any, project: Project) -> Any:
        if args.parallel and args.max_workers is None:
            args.max_workers = self.max_workers
        reporter = None if args.dry_run or args.show_plan else self._reporter()
        try:
            result = cli.dispatch(args, project, reporter)
        except RunFailed as failure:
            self._remember(project, failure.result)
            display(failure.result)
            raise IPythonUsageError(failure.result.headline()) from None
        if isinstance(result, RunResult):
            self._remember(project, result)
        return result

    def _dag(self, args: Any, project: Project) -> Any:
        result = self.last_result if self._last_result_root == project.root else None
        path = cli.svg_path(args.output) if args.output else None
        picture = graph.picture(
            project,
            plan_env=args.plan_env,
            result=result,
            max_nodes=self.dag_max_nodes,
            engine=self.dag_engine,
        )
        if path is not None:
            cli.write_svg(picture, path)
            print(f"Wrote {path}")
        return picture

    def _remember(self, project: Project, result: RunResult) -> None:
        self.last_result = result
        self._last_result_root = project.root

    def _reporter(self) -> ProgressPanel | TextReporter:
        in_kernel = getattr(self.shell, "kernel", None) is not None
        if self.progress == "widget" or (self.progress == "auto" and in_kernel):
            return ProgressPanel()
        return TextReporter()


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the package's errors into IPython's one-line usage errors."""
    try:
        yield
    except SeeknalError as error:
        raise IPythonUsageError(str(error)) from None


@contextlib.contextmanager
def _logging(verbose: int) -> Iterator[None]:
    """With ``-v`` (``-vv``), the package's INFO (DEBUG) log goes to stderr."""
    if not verbose:
        yield
        return
    with cli.package_logging(verbose):
        yield


@dataclass
class NodeChange:
    """What ``%%seeknal_node`` did to the project."""

    node_id: str
    replaced: str | None
    node: Node
    layer: int
    saved: Path | None = None

    def __str__(self) -> str:
        verb = (
            f"Replaced {self.node_id} (was {self.replaced})"
            if self.replaced
            else (f"Added {self.node_id}")
        )
        inputs = ", ".join(self.node.inputs)
        reads = f"inputs {inputs}" if inputs else "no inputs"
        text = f"{verb}: layer {self.layer + 1}, {reads}."
        if self.saved is not None:
            text += f" Saved to {self.saved}."
        return text


def define_node(
    project: Project,
    kind: str,
    name: str,
    body: str,
    inputs: list[str] | None = None,
    save: bool = False,
) -> NodeChange:
    """Add or replace a node of ``project`` from a notebook cell's text.

    Args:
        project: the project to change (its ``cells``).
        kind: the node's kind.
        name: the node's name.
        body: the node's SQL, or its YAML fields.
        inputs: upstream nodes of a SQL body.
        save: also write the node to a YAML file under ``seeknal/``.

    Returns:
        What changed.

    Raises:
        UsageError: the cell is malformed, or the project does not load with
            it (the cell is then not kept).
    """
    document = cell_document(kind, name, body, inputs or [])
    node_id = f"{kind}.{name}"
    label = f"<cell {node_id}>"
    before = _where_defined(project, node_id)
    kept = project.cells.get(node_id)
    project.cells[node_id] = (document, label)
    try:
        dag = project.dag()
    except ProjectError as error:
        _restore(project, node_id, kept)
        raise SeeknalUsageError(
            f"{node_id} not added: {_one_line(error.problems, label)}"
        ) from None
    change = NodeChange(node_id, before, dag.nodes[node_id], dag.layer[node_id])
    if save:
        change.saved = save_node(project, node_id)
    return change


def cell_document(kind: str, name: str, body: str, inputs: list[str]) -> Mapping:
    """The node document of a cell: its YAML body, or its SQL with kind and name."""
    label = f"<cell {kind}.{name}>"
    if _is_yaml(body):
        document = _yaml_document(body, label)
        for key, value in (("kind", kind), ("name", name)):
            if key in document and str(document[key]) != value:
                raise SeeknalUsageError(
                    f"{label}: the body says {key}: {document[key]}, the magic "
                    f"line says {value}; make them agree"
                )
        if inputs and "inputs" in document:
            raise SeeknalUsageError(
                f"{label}: inputs are given twice; keep --inputs or the YAML's "
                "'inputs', not both"
            )
        fields: dict[str, Any] = {"kind": kind, "name": name, **document}
        if inputs:
            fields["inputs"] = [_mapping({"ref": ref}) for ref in inputs]
        return _mapping(fields, document.line, document.key_lines)
    if kind == "source":
        raise SeeknalUsageError(
            f"{label}: a source is described in YAML (source:, table:, schema:), "
            "not SQL"
        )
    if not body.strip():
        raise SeeknalUsageError(f"{label}: the cell is empty; write the node's SQL")
    fields = {"kind": kind, "name": name}
    if inputs:
        fields["inputs"] = [_mapping({"ref": ref}) for ref in inputs]
    fields["transform"] = body.strip() + "\n"
    return _mapping(fields)


def save_node(project: Project, node_id: str) -> Path:
    """Write a cell node to a YAML file and make the file its definition.

    The file is the one already defining the node alone, else
    ``seeknal/<kind>s/<name>.yml``. The cell entry is dropped once the project
    loads the file back to the same node.

    Returns:
        The file written, relative to the project folder.

    Raises:
        UsageError: another file defines the node among other nodes, or the
            file does not load back to the same node (nothing is kept then).
    """
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
            else ("it loads back as a different node")
        )
        raise SeeknalUsageError(f"{node_id} not saved to {relative}: {detail}")
    return relative


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
        raise SeeknalUsageError(
            f"{node_id} is defined in {holder} with other nodes; edit that file "
            "instead of saving the cell"
        )
    return Path(holder)


def _where_defined(project: Project, node_id: str) -> str | None:
    if node_id in project.cells:
        return "an earlier cell"
    for doc, file in read_documents(project.root, [], []):
        if f"{doc.get('kind')}.{doc.get('name')}" == node_id:
            return f"{file}:{doc.line}"
    return None


def _restore(project: Project, node_id: str, kept: tuple[Mapping, str] | None) -> None:
    if kept is None:
        project.cells.pop(node_id, None)
    else:
        project.cells[node_id] = kept


def _one_line(problems: list[Problem], label: str) -> str:
    """The problems of ``label`` (or all of them) joined on one line."""
    own = [p for p in problems if p.file == label] or problems
    return "; ".join(str(p) for p in own)


def _is_yaml(body: str) -> bool:
    """Whether a cell body is YAML: its first line starts with a node field."""
    for line in body.splitlines():
        text = line.strip()
        if not text or text.startswith("#") or text == "---":
            continue
        match = YAML_KEY.match(text)
        return bool(match and match.group(1) in NODE_FIELDS)
    return False


def _yaml_document(body: str, label: str) -> Mapping:
    parsed = read_yaml(body, label)
    if parsed.problems:
        raise SeeknalUsageError(str(parsed.problems[0]))
    if len(parsed.documents) != 1 or not isinstance(parsed.documents[0].data, Mapping):
        raise SeeknalUsageError(
            f"{label}: the body must be one YAML mapping of the node's fields"
        )
    return parsed.documents[0].data


def _mapping(
    fields: dict[str, Any], line: int = 1, key_lines: dict[str, int] | None = None
) -> Mapping:
    document = Mapping(fields)
    document.line = line
    document.key_lines = {key: (key_lines or {}).get(key, line) for key in fields}
    return document


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%seeknal`` and ``%%seeknal_node`` (``%load_ext seeknal_jupyter``)."""
    magics = SeeknalMagics(shell=ipython)
    ipython.register_magics(magics)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics again (``%unload_ext seeknal_jupyter``)."""
    manager = ipython.magics_manager
    magics = manager.registry.pop(SeeknalMagics.__name__, None)
    if magics is None:
        return
    for kind, table in magics.magics.items():
        for name in table:
            manager.magics[kind].pop(name, None)
    ipython.configurables[:] = [c for c in ipython.configurables if c is not magics]
