"""IPython magics: ``%seeknal`` (the command line's commands) and ``%%seeknal_node``.

``%load_ext seeknal_jupyter`` registers them. The project lives in the kernel: the
first command loads it (``%seeknal project PATH``, or the working folder), later
ones reuse it and the engine re-reads its YAML on every command. Each folder has one
kernel project, so nodes defined in cells (``Project.cells``) stay with it while the
notebook works on another folder.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.magic import (
    Magics,
    cell_magic,
    line_magic,
    magics_class,
    output_can_be_silenced,
)
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Enum, Integer, TraitError, validate

from seeknal_jupyter import cli, graph
from seeknal_jupyter.cells import is_yaml_body
from seeknal_jupyter.errors import LockedError, RunFailed, SeeknalError
from seeknal_jupyter.errors import UsageError as SeeknalUsageError
from seeknal_jupyter.progress import ProgressPanel
from seeknal_jupyter.project import Project
from seeknal_jupyter.render import MAX_NODES
from seeknal_jupyter.report import RunResult, TextReporter, plural

log = logging.getLogger(__name__)


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
        MAX_NODES,
        help="Above this many nodes '%seeknal dag' draws one box per layer and kind.",
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.project: Project | None = None
        self.projects: dict[Path, Project] = {}
        self.last_result: RunResult | None = None
        self._last_result_root: Path | None = None

    @validate("max_workers")
    def _check_max_workers(self, proposal: Any) -> int | None:
        value: int | None = proposal["value"]
        if value is not None and value < 1:
            raise TraitError(
                f"SeeknalMagics.max_workers must be 1 or more, got {value} (None "
                "means min(cpu_count, 8))"
            )
        return value

    @validate("dag_max_nodes")
    def _check_dag_max_nodes(self, proposal: Any) -> int:
        value: int = proposal["value"]
        if value < 1:
            raise TraitError(
                f"SeeknalMagics.dag_max_nodes must be 1 or more, got {value}"
            )
        return value

    @line_magic
    @output_can_be_silenced
    def seeknal(self, line: str) -> Any:
        """Run a seeknal command in the notebook: ``%seeknal COMMAND [OPTIONS]``.

        It takes the command line's commands and options (``%seeknal -h`` lists
        them) plus ``project PATH``, which loads the project the notebook works on.
        Results come back as objects with HTML and text views; ``show`` returns a
        pandas DataFrame. A ``;`` ending the line only hides the result, as it
        does after any Python expression.
        """
        try:
            args = cli.parse(line.rstrip().removesuffix(";"), notebook=True)
        except SeeknalUsageError as error:
            raise IPythonUsageError(_as_magic(str(error))) from None
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
    @argument(
        "--remove",
        action="store_true",
        help="take the node out of the project again: the cell's node, or the "
        "file --save wrote (the other options and the body are ignored)",
    )
    @cell_magic
    def seeknal_node(self, line: str, cell: str) -> None:
        """Add or replace a node of the notebook's project with this cell.

        The body is the node's SQL, or its YAML (the fields of a node file).
        Running the cell again replaces the node; a node that does not load or
        whose SQL does not bind is not kept, and downstream nodes that no longer
        bind are named at once. ``--remove`` added to the first line takes the
        node out again (IPython needs a body, so leave it as it is).
        """
        args = parse_argstring(self.seeknal_node, line)
        inputs = [part.strip() for part in args.inputs.split(",") if part.strip()]
        with _user_errors():
            project = self.current_project()
            if args.remove:
                print(project.remove_node(f"{args.kind}.{args.name}"))
                return
            body = {"yaml": cell} if is_yaml_body(cell) else {"sql": cell}
            print(
                project.add_node(
                    args.kind, args.name, inputs=inputs, save=args.save, **body
                )
            )

    def current_project(self) -> Project:
        """The notebook's project, loading the working folder the first time."""
        if self.project is not None:
            return self.project
        project = self._kernel_project(".")
        self._switch(project)
        return project

    def use_project(self, path: str | Path) -> Project:
        """Make the project at ``path`` the notebook's project and check it loads.

        The folder's kernel project is reused, with the nodes defined in cells for
        it; the previous project keeps its own until the notebook comes back to it.
        """
        project = _with_nodes(self._kernel_project(path))
        dag = project.dag()
        counts = (
            f"{plural(len(dag.nodes), 'node')} in {plural(dag.layer_count, 'layer')}"
        )
        if project is self.project:
            print(
                f"Project {project.name} at {project.root}: {counts}; already the "
                f"notebook's project, {plural(len(project.cells), 'cell node')} kept"
            )
            return project
        left = self._switch(project)
        print(f"Project {project.name} at {project.root}: {counts}{left}")
        return project

    def _kernel_project(self, path: str | Path) -> Project:
        """The kernel's project for the folder ``path``, made the first time."""
        root = _folder(path)
        return self.projects.get(root) or Project(root)

    def _switch(self, project: Project) -> str:
        """Make ``project`` the notebook's; what the previous one keeps, as a clause."""
        previous, self.project = self.project, project
        self.projects[project.root] = project
        if previous is None or previous is project or not previous.cells:
            return ""
        count = plural(len(previous.cells), "cell node")
        if previous.root == project.root:
            return f"; {count} of the project this folder held dropped"
        back = shlex.quote(str(previous.root))
        return (
            f"; {count} left with {previous.name} at {previous.root} "
            f"(%seeknal project {back} brings them back)"
        )

    def _command(self, args: Any) -> Any:
        if args.command == "project":
            if args.path is None and self.project is not None:
                return self.project
            return self.use_project(args.path or ".")
        if args.command == "init":
            made = cli.dispatch(args, None, None)
            left = self._switch(Project(made.folder))
            print(
                f"{str(made).splitlines()[0]} It is now the notebook's project{left}."
            )
            return made
        if args.project is None:
            project = _with_nodes(self.current_project())
        else:
            project = _with_nodes(self._kernel_project(args.project))
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
            raise RunFailed(failure.result, _verdict(failure.result)) from None
        if isinstance(result, RunResult):
            self._remember(project, result)
            if isinstance(reporter, ProgressPanel):
                self._shown_in_this_cell(result)
        return result

    def _shown_in_this_cell(self, result: RunResult) -> None:
        """The panel's display is the summary now: the cell's own display of the
        returned result would show it twice, a later cell's shows it again."""
        if self.shell is None:
            return
        result.summary_shown = True
        events = self.shell.events

        def cell_done(*_: Any) -> None:
            result.summary_shown = False
            events.unregister("post_run_cell", cell_done)

        events.register("post_run_cell", cell_done)

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
        """The widget panel in a kernel (or when asked for), else printed lines."""
        in_kernel = getattr(self.shell, "kernel", None) is not None
        if self.progress == "widget" or (self.progress == "auto" and in_kernel):
            return ProgressPanel()
        return TextReporter()


def _folder(path: str | Path) -> Path:
    """``path`` as an absolute folder; a missing folder or a file is a UsageError."""
    folder = Path(path).expanduser().resolve()
    if folder.is_file():
        raise SeeknalUsageError(
            f"{folder} is a file, not a folder; give the project folder (the one "
            "holding seeknal/)"
        )
    if not folder.is_dir():
        raise SeeknalUsageError(f"project folder {folder} does not exist")
    return folder


def _with_nodes(project: Project) -> Project:
    """``project``, refused in one line when it has neither ``seeknal/`` nor cells."""
    if not (project.root / "seeknal").is_dir() and not project.cells:
        raise SeeknalUsageError(
            f"no seeknal/ folder in {project.root}: load a project with "
            "%seeknal project PATH, or write one with %seeknal init --example "
            "fraud-detection DIR"
        )
    return project


def _verdict(result: RunResult) -> str:
    """A failed run in one line: the headline, the first failure (so a notebook
    run from the shell says why), and whether the next run resumes."""
    failures = [r.error for r in result.nodes.values() if r.status == "failed"]
    first = next((e.splitlines()[0] for e in failures if e), None)
    return (
        result.headline()
        + (f"; first failure: {first}" if first else "")
        + ("; the next run resumes" if result.count("cancelled") else "")
    )


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the package's errors into IPython's one-line usage errors, naming
    seeknal commands as the magic spells them; a run with failed nodes stays a
    RunFailed (shown in one line too)."""
    try:
        yield
    except RunFailed:
        raise
    except LockedError as error:
        raise IPythonUsageError(str(error)) from None
    except SeeknalError as error:
        raise IPythonUsageError(_as_magic(str(error))) from None


_COMMAND = re.compile(
    r"(?<![\w%/.-])seeknal (?=(?:" + "|".join(sorted(cli.HANDLERS)) + r")\b)"
)


def _as_magic(text: str) -> str:
    """``text`` with each ``seeknal COMMAND`` it names written ``%seeknal COMMAND``."""
    return _COMMAND.sub("%seeknal ", text)


@contextlib.contextmanager
def _logging(verbose: int) -> Iterator[None]:
    """With ``-v`` (``-vv``), the package's INFO (DEBUG) log goes to stderr."""
    if not verbose:
        yield
        return
    with cli.package_logging(verbose):
        yield


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
