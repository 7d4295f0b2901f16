"""The `seeknal` command line; the `%seeknal` magic parses with the same parser."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from seeknal_jupyter.errors import (
    LockedError,
    ProjectError,
    RunFailed,
    SeeknalError,
    UsageError,
)
from seeknal_jupyter.events import Reporter
from seeknal_jupyter.examples import EXAMPLES, init_example
from seeknal_jupyter.project import Project
from seeknal_jupyter.report import RunResult, TextReporter
from seeknal_jupyter.sql import KINDS

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130


class ArgumentError(UsageError):
    """A command line that does not parse; ``parser`` is the (sub-)command's."""

    def __init__(self, message: str, parser: argparse.ArgumentParser) -> None:
        super().__init__(message)
        self.parser = parser


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser that raises UsageError instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise ArgumentError(f"{self.prog}: {message}", self)

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
    parser.add_argument("--full", action="store_true", help="ignore cached outputs")
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would run; run nothing"
    )
    parser.add_argument(
        "--show-plan",
        action="store_true",
        help="print the layers with each node's inputs; run nothing",
    )
    parser.add_argument(
        "--fail-fast", action="store_true", help="start no node after a failure"
    )
    parser.add_argument(
        "--nodes",
        type=_csv,
        default=[],
        metavar="A,B",
        help="run these nodes; +name adds upstream, name+ adds downstream",
    )
    parser.add_argument(
        "--tags", type=_csv, default=[], metavar="T", help="run nodes with these tags"
    )
    parser.add_argument(
        "--types",
        type=_csv,
        default=[],
        metavar="KIND",
        help=f"run nodes of these kinds ({', '.join(KINDS)})",
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
    )
    _add_promote_arguments(promote)
    env = commands.add_parser(
        "env",
        parents=[common],
        help="plan, apply, promote, list or delete environments",
    )
    actions = env.add_subparsers(dest="env_command", metavar="ACTION")
    actions.required = True
    plan = actions.add_parser(
        "plan", parents=[common], help="classify changes against production"
    )
    plan.add_argument("env", metavar="ENV")
    apply = actions.add_parser(
        "apply", parents=[common], help="run the plan's nodes beside production"
    )
    apply.add_argument("env", metavar="ENV")
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
    delete.add_argument("env", metavar="ENV")


def build_parser(notebook: bool = False) -> ArgumentParser:
    """The parser of every command; ``notebook`` adds the notebook-only ones."""
    common = ArgumentParser(add_help=False)
    common.add_argument(
        "--project",
        metavar="PATH",
        help="project folder (default: the current folder, or the notebook's project)",
    )
    parser = ArgumentParser(
        prog="%seeknal" if notebook else "seeknal",
        description="Build and run DuckDB feature pipelines.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    init = commands.add_parser(
        "init", parents=[common], help="write an example project"
    )
    init.add_argument("--example", required=True, choices=sorted(EXAMPLES))
    init.add_argument("dir", metavar="DIR", help="folder to write the project into")
    init.add_argument("--scale", type=int, default=1, help="multiply the row counts")

    for name in ("plan", "parse"):
        plan = commands.add_parser(
            name,
            parents=[common],
            help="validate the project and write target/manifest.json; with ENV, "
            "classify every change against production and save ENV's plan",
        )
        plan.add_argument(
            "env",
            nargs="?",
            metavar="ENV",
            help="environment to plan (saved in target/environments/ENV/plan.json)",
        )

    run = commands.add_parser("run", parents=[common], help="run the pipeline")
    _add_run_options(run)
    run.add_argument(
        "--env",
        metavar="ENV",
        help="run ENV's plan (changed and dependent nodes) beside production",
    )

    _add_environment_commands(commands, common)

    show = commands.add_parser(
        "show", parents=[common], help="print the first rows of a node's output"
    )
    show.add_argument("node", metavar="NODE")
    show.add_argument("--env", metavar="ENV", default="prod")
    show.add_argument("--limit", type=_row_count, default=20, metavar="N")

    dag = commands.add_parser("dag", parents=[common], help="draw the DAG")
    dag.add_argument("--plan", metavar="ENV", dest="plan_env", help=argparse.SUPPRESS)
    dag.add_argument(
        "--output", metavar="FILE.svg", help="write the SVG here (command line)"
    )

    if notebook:
        diff = commands.add_parser(
            "diff",
            parents=[common],
            help="compare a node's output in ENV with production's",
        )
        diff.add_argument("node", metavar="NODE")
        diff.add_argument("--env", metavar="ENV", required=True)
        diff.add_argument(
            "--limit",
            type=_row_count,
            default=10,
            metavar="N",
            help="sample rows per side",
        )

        project = commands.add_parser(
            "project", help="load the project the notebook works on"
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
    """Parse a command line (a list, or one string split like a shell would)."""
    words = shlex.split(argv) if isinstance(argv, str) else list(argv)
    return build_parser(notebook).parse_args(words)


Handler = Callable[[argparse.Namespace, Project, Reporter | None], Any]


def _init(args: argparse.Namespace, project: Project | None, _: Any) -> Any:
    try:
        folder = init_example(args.example, args.dir, args.scale)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return InitResult(args.example, folder)


class InitResult:
    """What ``seeknal init`` made."""

    def __init__(self, example: str, folder: Path) -> None:
        self.example = example
        self.folder = folder.resolve()

    def __str__(self) -> str:
        files = len(list((self.folder / "seeknal").rglob("*.y*ml")))
        return (
            f"Wrote the {self.example} example to {self.folder} ({files} node files).\n"
            f"Next: seeknal run --parallel --project {self.folder}"
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
        return project.execution_plan(**options)
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

    return environments.apply(
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


def _promote(args: argparse.Namespace, project: Project, _: Any) -> Any:
    from seeknal_jupyter import environments

    return environments.promote(project, args.source, args.target)


def _env(args: argparse.Namespace, project: Project, reporter: Reporter | None) -> Any:
    from seeknal_jupyter import environments

    if args.env_command == "plan":
        return environments.plan(project, args.env)
    if args.env_command == "apply":
        return _apply(args, project, reporter)
    if args.env_command == "promote":
        return _promote(args, project, reporter)
    if args.env_command == "delete":
        return environments.delete(project, args.env)
    return environments.list_environments(project)


def _diff(args: argparse.Namespace, project: Project, _: Any) -> Any:
    from seeknal_jupyter import environments

    return environments.diff(project, args.node, args.env, limit=args.limit)


def _show(args: argparse.Namespace, project: Project, _: Any) -> Any:
    return project.show(args.node, env=args.env, limit=args.limit)


def _dag(args: argparse.Namespace, project: Project, _: Any) -> Any:
    from seeknal_jupyter import graph

    path = svg_path(args.output) if args.output else None
    picture = graph.picture(project, plan_env=args.plan_env)
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
        raise UsageError(f"no SVG renderer is available; {path} was not written")
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
        return f"Wrote {self.path} ({self.nodes} node{'s' if self.nodes != 1 else ''})"

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
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        result = dispatch(args, None, TextReporter())
    except RunFailed as failure:
        if failure.result.count("cancelled"):
            print("Run cancelled; the next run resumes.", file=sys.stderr)
            return EXIT_CANCELLED
        print(f"error: {failure.result.headline()}", file=sys.stderr)
        return EXIT_FAILED
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
        print(result)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
