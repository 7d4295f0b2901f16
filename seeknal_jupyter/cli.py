"""The `seeknal` command line; the `%seeknal` magic parses with the same parser."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import logging
import os
import shlex
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from seeknal_jupyter.errors import (
    LockedError,
    ProjectError,
    RunFailed,
    SeeknalError,
    UsageError,
)
from seeknal_jupyter.events import Reporter
from seeknal_jupyter.examples import EXAMPLES, init_example
from seeknal_jupyter.project import ExecutionPlan, Project
from seeknal_jupyter.report import RunResult, TextReporter, plural
from seeknal_jupyter.sql import KINDS
from seeknal_jupyter.store import PRODUCTION

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130
SCALED_EXAMPLE = "fraud-detection"


class ArgumentError(UsageError):
    """A command line that does not parse; ``parser`` is the (sub-)command's."""

    def __init__(self, message: str, parser: argparse.ArgumentParser) -> None:
        super().__init__(message)
        self.parser = parser


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser that raises UsageError instead of exiting.

    Each parser refuses the words it does not know itself, so that a mistake
    after a command's name gets that command's usage and error, and a misspelt
    option the closest one. ``commands`` are its sub-commands' parsers.
    """

    commands: dict[str, ArgumentParser]

    def error(self, message: str) -> NoReturn:
        raise ArgumentError(f"{self.prog}: {message}", self)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(
                f"unrecognized arguments: {' '.join(extras)}{self._closest(extras)}"
            )
        return parsed, extras

    def _closest(self, words: list[str]) -> str:
        """`` (did you mean --x?)`` naming the options closest to misspelt ones."""
        options = [o for a in self._actions for o in a.option_strings]
        close = [
            match
            for word in words
            if word.startswith("--")
            for match in difflib.get_close_matches(word.split("=", 1)[0], options, n=1)
        ]
        return f" (did you mean {', '.join(close)}?)" if close else ""

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            print(message, file=sys.stderr)
        raise SystemExit(status)


def _csv(value: str) -> list[str]:
    """A comma-separated selection; an empty one is refused, as it would select all."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(
            f"expected one or more comma-separated names, got {value!r}"
        )
    return parts


def _row_count(value: str) -> int:
    """A ``--limit``: a whole number, 0 or more."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number, got {value!r}"
        ) from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {number}")
    return number


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--parallel", action="store_true", help="run independent nodes at once"
    )
    parser.add_argument(
        "--max-workers",
        type=int,
        metavar="N",
        help="most nodes at once (default: min(cpu_count, 8)); implies --parallel",
    )
    parser.add_argument(
        "--full", action="store_true", help="rebuild every node, ignoring the cache"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print, layer by layer, what would run and why, and what is cached; "
        "run nothing",
    )
    parser.add_argument(
        "--show-plan",
        action="store_true",
        help="print the layers with each node's inputs; run nothing",
    )
    parser.add_argument(
        "--fail-fast",
        action="store_true",
        help="start no new node after the first failure",
    )
    parser.add_argument(
        "--nodes",
        type=_csv,
        default=[],
        metavar="A,B",
        help="only these nodes; +name adds its upstream, name+ its downstream",
    )
    parser.add_argument(
        "--tags",
        type=_csv,
        default=[],
        metavar="T",
        help="only nodes with any of these tags",
    )
    parser.add_argument(
        "--types",
        type=_csv,
        default=[],
        metavar="KIND",
        help=f"only nodes of these kinds ({', '.join(KINDS)})",
    )


def _add_promote_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="FROM", help="an applied environment")
    parser.add_argument(
        "target",
        metavar="TO",
        nargs="?",
        default="prod",
        help="production (default) or another environment",
    )


def _add_environment_commands(commands: Any, common: ArgumentParser) -> None:
    promote = commands.add_parser(
        "promote",
        parents=[common],
        help="make an environment's outputs production's (or TO's), atomically",
        description="Make FROM's outputs TO's (production by default) in one "
        "atomic step, copying no unchanged data.",
    )
    _add_promote_arguments(promote)
    env = commands.add_parser(
        "env",
        parents=[common],
        help="plan, apply, promote, list or delete environments",
        description="Environments run a changed pipeline beside production.",
    )
    actions = env.add_subparsers(dest="env_command", metavar="ACTION")
    actions.required = True
    env.commands = actions.choices
    plan = actions.add_parser(
        "plan",
        parents=[common],
        help="classify changes against production (same as 'seeknal plan ENV')",
    )
    plan.add_argument("env", metavar="ENV", help="the environment to plan")
    apply = actions.add_parser(
        "apply",
        parents=[common],
        help="run the plan's nodes beside production (same as 'seeknal run --env ENV')",
    )
    apply.add_argument("env", metavar="ENV", help="an environment with a plan")
    _add_run_options(apply)
    promote = actions.add_parser(
        "promote", parents=[common], help="same as 'seeknal promote'"
    )
    _add_promote_arguments(promote)
    actions.add_parser(
        "list", parents=[common], help="environments with their status and counts"
    )
    delete = actions.add_parser(
        "delete", parents=[common], help="remove an environment and unused outputs"
    )
    delete.add_argument("env", metavar="ENV", help="the environment to remove")


VERBOSE_HELP = (
    "log what the package does to stderr: -v each step (nodes loaded, selected, "
    "to run and cached, SQL checked, files deleted), -vv also each node's details "
    "(fingerprints, columns, the SQL it runs)"
)
PROJECT_HELP = "project folder (default: the current folder, or the notebook's project)"


def _option_parents() -> tuple[ArgumentParser, ArgumentParser]:
    """The options every sub-command takes after its name: ``-v`` with
    ``--project`` hidden (for the commands without a project: ``parse`` refuses
    it there as it does before their name) and ``-v`` with ``--project``.

    They default to nothing, so that the same options given before the
    sub-command's name are kept; ``-v`` after it counts apart and is added.
    """
    verbose = ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v",
        "--verbose",
        action="count",
        dest="verbose_after",
        default=argparse.SUPPRESS,
        help=VERBOSE_HELP,
    )
    without_project = ArgumentParser(add_help=False, parents=[verbose])
    without_project.add_argument(
        "--project", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    common = ArgumentParser(add_help=False, parents=[verbose])
    common.add_argument(
        "--project", metavar="PATH", default=argparse.SUPPRESS, help=PROJECT_HELP
    )
    return without_project, common


def build_parser(notebook: bool = False) -> ArgumentParser:
    """The parser of every command; ``notebook`` adds the notebook-only ones."""
    verbose, common = _option_parents()
    parser = ArgumentParser(
        prog="%seeknal" if notebook else "seeknal",
        description="Build and run DuckDB feature pipelines.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help=VERBOSE_HELP)
    parser.add_argument("--project", metavar="PATH", help=PROJECT_HELP)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    parser.commands = commands.choices

    init = commands.add_parser(
        "init",
        parents=[verbose],
        help="write an example project",
        description="Write an example project, with its data, into DIR.",
    )
    init.add_argument(
        "--example", required=True, choices=sorted(EXAMPLES), help="which example"
    )
    init.add_argument("dir", metavar="DIR", help="folder to write the project into")
    init.add_argument(
        "--scale",
        type=int,
        metavar="N",
        help="multiply the row counts (fraud-detection only; default: 1)",
    )

    for name, summary in (
        (
            "plan",
            (
                "validate the project and write target/manifest.json; with ENV, "
                "classify every change against production and save ENV's plan"
            ),
        ),
        ("parse", "same as 'seeknal plan'"),
    ):
        plan = commands.add_parser(
            name,
            parents=[common],
            help=summary,
            description="Validate the project (every node's SQL is bound against "
            "its inputs' columns) and write target/manifest.json. With ENV, "
            "classify every change against production and save ENV's plan.",
        )
        plan.add_argument(
            "env",
            nargs="?",
            metavar="ENV",
            help="environment to plan (saved in target/environments/ENV/plan.json)",
        )

    run = commands.add_parser(
        "run",
        parents=[common],
        help="run the nodes whose outputs are missing or out of date",
        description="Run the nodes whose outputs are missing or out of date, each "
        "as soon as its inputs are done. Exit status 1 when a node fails, 130 "
        "when interrupted.",
    )
    _add_run_options(run)
    run.add_argument(
        "--env",
        metavar="ENV",
        help="run ENV's plan (changed and dependent nodes) beside production",
    )

    _add_environment_commands(commands, common)

    show = commands.add_parser(
        "show",
        parents=[common],
        help="print the first rows of a node's output, or its columns",
        description="Print the first rows of a node's output. A source that has "
        "not run yet is previewed from its data file.",
    )
    show.add_argument("node", metavar="NODE", help="node id or unambiguous name")
    show.add_argument(
        "--env",
        metavar="ENV",
        help="read the output in this environment (default: production)",
    )
    show.add_argument(
        "--limit",
        type=_row_count,
        default=20,
        metavar="N",
        help="rows to print (default: 20)",
    )
    show.add_argument(
        "--schema",
        action="store_true",
        help="print the output's column names and types instead (nothing needs "
        "to have run)",
    )

    diff = commands.add_parser(
        "diff",
        parents=[common],
        help="compare a node's output in ENV with production's",
    )
    diff.add_argument("node", metavar="NODE", help="node id or unambiguous name")
    diff.add_argument(
        "--env", metavar="ENV", required=True, help="the environment to compare"
    )
    diff.add_argument(
        "--limit",
        type=_row_count,
        default=10,
        metavar="N",
        help="differing rows to print per side (default: 10)",
    )

    dag = commands.add_parser(
        "dag",
        parents=[common],
        help="draw the DAG",
        description="Draw the DAG, one rank per layer: text in a terminal, SVG "
        "inline in a notebook or to a file.",
    )
    dag.add_argument(
        "--plan",
        metavar="ENV",
        dest="plan_env",
        help="colour each node by its change class in ENV's plan",
    )
    dag.add_argument("--output", metavar="FILE.svg", help="write the SVG to this file")

    if notebook:
        project = commands.add_parser(
            "project",
            parents=[verbose],
            help="load the project the notebook works on",
        )
        project.add_argument(
            "path",
            nargs="?",
            metavar="PATH",
            help="project folder (default: the notebook's project, else the "
            "working folder)",
        )
    return parser


def parse(argv: Sequence[str] | str, notebook: bool = False) -> argparse.Namespace:
    """Parse a command line (a list, or one string split like a shell would).

    ``--project`` and ``-v`` may come before or after the sub-command; ``verbose``
    is how many ``-v`` were given in all.

    Raises:
        UsageError: the words do not parse (``ArgumentError``, with the parser).
    """
    words = shlex.split(argv) if isinstance(argv, str) else list(argv)
    parser = build_parser(notebook)
    args = parser.parse_args(words)
    args.verbose += vars(args).pop("verbose_after", 0)
    if args.command in ("init", "project") and args.project is not None:
        target = "DIR" if args.command == "init" else "PATH"
        parser.commands[args.command].error(
            f"--project does not apply; give the folder as {target}"
        )
    return args


Handler = Callable[[argparse.Namespace, Project, Reporter | None], Any]


def _init(args: argparse.Namespace, project: Project | None, _: Any) -> Any:
    if args.scale is not None and args.example != SCALED_EXAMPLE:
        raise UsageError(
            f"init --example {args.example}: --scale is for {SCALED_EXAMPLE} "
            "only; leave it out"
        )
    folder = Path(args.dir)
    created = _first_missing(folder)
    before = set(folder.iterdir()) if created is None else set()
    try:
        made = init_example(
            args.example, folder, 1 if args.scale is None else args.scale
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        _remove_new(folder, created, before)
        reason = error.strerror or type(error).__name__
        where = error.filename or folder
        raise UsageError(
            f"cannot write the {args.example} example to {folder}: {reason} "
            f"({where}); choose a folder you can write to"
        ) from None
    return InitResult(args.example, made)


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder of ``folder``'s path that does not exist yet, if any."""
    missing = None
    for candidate in [folder, *folder.absolute().parents]:
        if candidate.exists():
            break
        missing = candidate
    return missing


def _remove_new(folder: Path, created: Path | None, before: set[Path]) -> None:
    """Remove what a failed ``init`` wrote: the folders it made, or the new
    entries of a folder that existed."""
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    for entry in set(folder.iterdir()) - before:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


class InitResult:
    """What ``seeknal init`` made."""

    def __init__(self, example: str, folder: Path) -> None:
        self.example = example
        self.folder = folder.resolve()

    def __str__(self) -> str:
        files = len(list((self.folder / "seeknal").rglob("*.y*ml")))
        return (
            f"Wrote the {self.example} example to {self.folder} ({files} node files).\n"
            f"Next: seeknal run --parallel --project {shlex.quote(str(self.folder))}"
        )

    def __repr__(self) -> str:
        return f"<InitResult {self.example} at {self.folder}>"


def _plan(args: argparse.Namespace, project: Project, _: Any) -> Any:
    if args.env:
        from seeknal_jupyter import environments

        return environments.plan(project, args.env)
    return project.plan()


def _run(args: argparse.Namespace, project: Project, reporter: Reporter | None) -> Any:
    options: dict[str, Any] = {
        "parallel": args.parallel,
        "max_workers": args.max_workers,
        "full": args.full,
        "nodes": args.nodes,
        "tags": args.tags,
        "types": args.types,
    }
    if args.env:
        return _apply(args, project, reporter)
    if args.dry_run or args.show_plan:
        plan = project.execution_plan(**options)
        return plan.layout() if args.show_plan else plan
    return project.run(
        fail_fast=args.fail_fast,
        reporter=reporter,
        cancel=getattr(reporter, "cancel", None),
        **options,
    )


def _apply(
    args: argparse.Namespace, project: Project, reporter: Reporter | None
) -> Any:
    from seeknal_jupyter import environments

    result = environments.apply(
        project,
        args.env,
        reporter=reporter,
        fail_fast=args.fail_fast,
        dry_run=args.dry_run or args.show_plan,
        parallel=args.parallel,
        max_workers=args.max_workers,
        full=args.full,
        nodes=args.nodes,
        tags=args.tags,
        types=args.types,
        cancel=getattr(reporter, "cancel", None),
    )
    return (
        result.layout()
        if isinstance(result, ExecutionPlan) and args.show_plan
        else result
    )


def _promote(args: argparse.Namespace, project: Project, _: Any) -> Any:
    from seeknal_jupyter.promote import promote

    return promote(project, args.source, args.target)


def _env(args: argparse.Namespace, project: Project, reporter: Reporter | None) -> Any:
    from seeknal_jupyter import environments, inventory

    if args.env_command == "plan":
        return environments.plan(project, args.env)
    if args.env_command == "apply":
        return _apply(args, project, reporter)
    if args.env_command == "promote":
        return _promote(args, project, reporter)
    if args.env_command == "delete":
        return inventory.delete(project, args.env)
    return inventory.list_environments(project)


def _diff(args: argparse.Namespace, project: Project, _: Any) -> Any:
    from seeknal_jupyter.diff import diff

    env = project.environment(args.env)
    return diff(project, args.node, env, limit=args.limit)


def _show(args: argparse.Namespace, project: Project, _: Any) -> Any:
    if args.schema:
        if args.env is not None:
            raise UsageError(
                "show --schema describes the node as the project defines it; "
                "leave out --env"
            )
        return project.schema(args.node)
    return project.show(args.node, env=args.env or PRODUCTION, limit=args.limit)


def _dag(args: argparse.Namespace, project: Project, _: Any) -> Any:
    from seeknal_jupyter import graph

    path = svg_path(args.output) if args.output else None
    engine = "auto" if path is not None else "text"
    picture = graph.picture(project, plan_env=args.plan_env, engine=engine)
    if path is None:
        return picture
    write_svg(picture, path)
    return WroteFile(path, len(project.dag().nodes))


def svg_path(output: str) -> Path:
    """The file ``dag --output`` writes, refused unless it ends in ``.svg``."""
    path = Path(output)
    if path.suffix.lower() != ".svg":
        raise UsageError(
            f"dag --output {output}: only SVG can be written; name the file *.svg"
        )
    return path


def write_svg(picture: Any, path: Path) -> None:
    """Write a DagPicture's SVG; a missing renderer or folder is a UsageError."""
    if picture.svg is None:
        raise UsageError(f"{picture.problem}; {path} was not written")
    try:
        path.write_text(picture.svg, encoding="utf-8")
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UsageError(f"cannot write {path}: {reason}") from None


class WroteFile:
    """What ``seeknal dag --output FILE`` did: one line, not the whole picture."""

    def __init__(self, path: Path, nodes: int) -> None:
        self.path = path
        self.nodes = nodes

    def __str__(self) -> str:
        return f"Wrote {self.path} ({plural(self.nodes, 'node')})"

    def __repr__(self) -> str:
        return f"<WroteFile {self.path}>"


HANDLERS: dict[str, Handler] = {
    "init": _init,
    "plan": _plan,
    "parse": _plan,
    "run": _run,
    "show": _show,
    "dag": _dag,
    "promote": _promote,
    "env": _env,
    "diff": _diff,
}


def dispatch(
    args: argparse.Namespace, project: Project | None, reporter: Reporter | None
) -> Any:
    """Carry out a parsed command and return its result object."""
    handler = HANDLERS.get(args.command)
    if handler is None:
        raise UsageError(f"'{args.command}' is not available here")
    if args.command == "init":
        return handler(args, project, reporter)  # type: ignore[arg-type]
    if project is None:
        project = Project(args.project or ".")
    return handler(args, project, reporter)


class _LogFormatter(logging.Formatter):
    """``warning: ...`` for warnings; ``info module: ...`` for what ``-v`` adds."""

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower()
        if record.levelno >= logging.WARNING:
            return f"{level}: {record.getMessage()}"
        return f"{level} {record.name}: {record.getMessage()}"


@contextlib.contextmanager
def package_logging(verbose: int, stream: TextIO | None = None) -> Iterator[None]:
    """Send the package's log to stderr: warnings, and with ``-v`` INFO, ``-vv``
    DEBUG. Only the package's own loggers are touched."""
    logger = logging.getLogger("seeknal_jupyter")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_LogFormatter())
    level = logging.WARNING if verbose <= 0 else logging.INFO
    if verbose >= 2:
        level = logging.DEBUG
    previous = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous[0])
        logger.propagate = previous[1]


@contextlib.contextmanager
def _stop_on_interrupt(cancel: threading.Event) -> Iterator[None]:
    """While a run goes on, the first Ctrl-C sets ``cancel``: no new node starts,
    running queries are interrupted, state stays consistent and the summary is
    printed. A second Ctrl-C aborts at once."""

    def handle(signum: int, frame: Any) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print(
            "Stopping: no new node starts and running queries are interrupted "
            "(Ctrl-C again to abort at once)",
            file=sys.stderr,
            flush=True,
        )

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _is_run(args: argparse.Namespace) -> bool:
    running = args.command == "run" or getattr(args, "env_command", None) == "apply"
    return running and not (args.dry_run or args.show_plan)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``seeknal`` command; returns the exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse(words)
    except UsageError as error:
        parser = error.parser if isinstance(error, ArgumentError) else build_parser()
        parser.print_usage(sys.stderr)
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    with package_logging(args.verbose):
        return _carry_out(args)


def _carry_out(args: argparse.Namespace) -> int:
    """Dispatch a parsed command line, print its result, and give the exit status.

    A run prints its own progress and summary, so only its exit status is added.
    """
    cancel = threading.Event()
    reporter = TextReporter(cancel=cancel)
    try:
        if _is_run(args):
            with _stop_on_interrupt(cancel):
                result = dispatch(args, None, reporter)
        else:
            result = dispatch(args, None, reporter)
    except RunFailed:
        return _interrupted() if cancel.is_set() else EXIT_FAILED
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return EXIT_CANCELLED
    except (ProjectError, UsageError, LockedError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except SeeknalError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    if result is not None and not isinstance(result, RunResult):
        _print_result(_printable(args, result))
    return _interrupted() if cancel.is_set() else EXIT_OK


def _printable(args: argparse.Namespace, result: Any) -> Any:
    """What the command line prints for a result: the rows of ``show`` (a pandas
    DataFrame) whole, every column and row, wrapped to the terminal's width."""
    if args.command == "show" and not args.schema:
        return result.to_string(line_width=shutil.get_terminal_size().columns)
    return result


def _print_result(result: Any) -> None:
    """Print a result; a reader that went away (``| head``) ends it quietly."""
    try:
        print(result, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _interrupted() -> int:
    print(
        "Interrupted: what finished is kept; the next run resumes from there.",
        file=sys.stderr,
    )
    return EXIT_CANCELLED


if __name__ == "__main__":
    raise SystemExit(main())
