"""The Python API: a project on disk plus nodes defined in notebook cells.

Every command of the command line and of the magics is a method here.
"""

from __future__ import annotations

import html
import json
import logging
import os
import shlex
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from seeknal_jupyter import exposures
from seeknal_jupyter.binding import InputPath, check_schemas, first_line
from seeknal_jupyter.cells import cell_label
from seeknal_jupyter.changes import ChangeClass, Definition, definition_reasons
from seeknal_jupyter.dag import Dag, build_dag
from seeknal_jupyter.errors import Problem, RunFailed, UsageError
from seeknal_jupyter.events import (
    NodeFinished,
    Reporter,
    Reporters,
    RunFinished,
    RunStarted,
)
from seeknal_jupyter.execute import (
    WIDE_INTEGERS,
    Built,
    Executor,
    NodeError,
    Settings,
    Task,
    check_source_files,
    connection,
    source_query,
)
from seeknal_jupyter.fingerprint import definition, fingerprints
from seeknal_jupyter.loader import LoadResult, Node, load_nodes, yaml_files
from seeknal_jupyter.report import NodeResult, RunResult, plural
from seeknal_jupyter.sql import quote_literal
from seeknal_jupyter.store import (
    PRODUCTION,
    Entry,
    State,
    Store,
    display_name,
    is_production,
    write_text_atomically,
)
from seeknal_jupyter.yamlfile import Mapping

if TYPE_CHECKING:
    from seeknal_jupyter.cells import NodeChange, NodeRemoval

log = logging.getLogger(__name__)


SCHEMAS_FILE = "schemas.json"


def default_workers() -> int:
    return min(os.cpu_count() or 1, 8)


@dataclass
class Manifest:
    """What ``seeknal plan`` writes: nodes, edges, layers and fingerprints.

    Layers are numbered from 1, as everywhere a user sees them.
    """

    project: str
    path: Path
    dag: Dag
    fingerprints: dict[str, str]
    warnings: list[Problem]

    def to_json(self) -> dict[str, Any]:
        nodes = {}
        for node_id in self.dag.order:
            node = self.dag.nodes[node_id]
            nodes[node_id] = {
                "kind": node.kind,
                "name": node.name,
                "file": node.file,
                "line": node.line,
                "inputs": list(node.inputs),
                "layer": self.dag.layer[node_id] + 1,
                "fingerprint": self.fingerprints[node_id],
                "description": node.spec.get("description"),
                "owner": node.spec.get("owner"),
                "tags": list(node.tags),
                "definition": definition(node),
            }
        return {
            "project": self.project,
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "nodes": nodes,
            "edges": [list(e) for e in self.dag.edges],
            "layers": {
                str(number): ids
                for number, ids in enumerate(self.dag.layers(), start=1)
            },
        }

    @property
    def edge_count(self) -> int:
        return len(self.dag.edges)

    def __str__(self) -> str:
        lines = [
            f"Project {self.project} ({self.path.parent.parent})",
            f"Manifest: {self.path}",
            (
                f"Nodes: {len(self.dag.nodes)}  Edges: {self.edge_count}  "
                f"Layers: {self.dag.layer_count}"
            ),
        ]
        if self.warnings:
            lines.append(
                f"{plural(len(self.warnings), 'warning')}, printed above as "
                "loading found them"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"<Manifest {self.project}: {len(self.dag.nodes)} nodes, "
            f"{self.edge_count} edges, {self.dag.layer_count} layers>"
        )

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{i + 1}</td><td>{len(layer)}</td><td>"
            + ", ".join(f"<code>{html.escape(n)}</code>" for n in layer)
            + "</td></tr>"
            for i, layer in enumerate(self.dag.layers())
        )
        return (
            f"<p><b>{html.escape(self.project)}</b>: {len(self.dag.nodes)} nodes, "
            f"{self.edge_count} edges, {self.dag.layer_count} layers "
            f"(manifest <code>{html.escape(str(self.path))}</code>)</p>"
            "<table><tr><th>layer</th><th>nodes</th><th>ids</th></tr>"
            f"{rows}</table>"
        )


@dataclass
class ExecutionPlan:
    """What a run would do: per layer, the nodes to run, why, and the cached ones.

    Its text is what ``--dry-run`` prints; :meth:`layout` is what ``--show-plan``
    prints. ``reasons`` says why each node to run runs, and notes a cached node
    read from an out-of-date input that is not selected.
    """

    dag: Dag
    to_run: list[str]
    cached: list[str]
    workers: int
    mode: str
    reasons: dict[str, str] = field(default_factory=dict)

    def _heading(self) -> str:
        return f"{self.mode}, {plural(self.workers, 'worker')}"

    def layers(self) -> list[tuple[int, list[str]]]:
        """The layers holding chosen nodes, by number (from 1), in DAG order."""
        chosen = set(self.to_run) | set(self.cached)
        numbered = []
        for number, layer in enumerate(self.dag.layers(), start=1):
            members = [n for n in layer if n in chosen]
            if members:
                numbered.append((number, members))
        return numbered

    def layout(self) -> PlanLayout:
        """The layers with each node's inputs (what ``--show-plan`` prints)."""
        return PlanLayout(self)

    def __str__(self) -> str:
        lines = [
            (
                f"Dry run ({self._heading()}): {len(self.to_run)} to run, "
                f"{len(self.cached)} cached; nothing was run"
            )
        ]
        run = set(self.to_run)
        for number, members in self.layers():
            running = sum(1 for n in members if n in run)
            lines.append(
                f"Layer {number}: {running} to run, {len(members) - running} cached"
            )
            for node_id in members:
                reason = self.reasons.get(node_id)
                verb = "run   " if node_id in run else "cached"
                lines.append(f"  {verb}  {node_id}" + (f": {reason}" if reason else ""))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(str(self))}</pre>"


@dataclass
class PlanLayout:
    """The layers of a run with each node's inputs, as ``--show-plan`` prints them."""

    plan: ExecutionPlan

    def __str__(self) -> str:
        plan = self.plan
        chosen = len(plan.to_run) + len(plan.cached)
        layers = plan.layers()
        lines = [
            (
                f"Execution plan ({plan._heading()}): {plural(chosen, 'node')} in "
                f"{plural(len(layers), 'layer')}"
            )
        ]
        for number, members in layers:
            after = "no inputs" if number == 1 else f"after layer {number - 1}"
            lines.append(f"Layer {number}: {plural(len(members), 'node')} ({after})")
            for node_id in members:
                inputs = plan.dag.nodes[node_id].inputs
                arrow = f" <- {', '.join(inputs)}" if inputs else ""
                lines.append(f"  {node_id}{arrow}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(str(self))}</pre>"


class Project:
    """A seeknal project: the YAML files under ``seeknal/`` plus cell-defined nodes.

    Args:
        path: the project folder (the one holding ``seeknal/``).
    """

    def __init__(self, path: str | Path = ".") -> None:
        self.root = Path(path).expanduser().resolve()
        if not self.root.is_dir():
            raise UsageError(f"project folder {self.root} does not exist")
        self.target = self.root / "target"
        self.store = Store(self.target)
        self.cells: dict[str, Mapping] = {}

    @property
    def name(self) -> str:
        return self.root.name

    def __repr__(self) -> str:
        return f"<Project {self.name} at {self.root}>"

    def load(self) -> LoadResult:
        """Read and validate every node now (YAML edits are picked up).

        Raises:
            UsageError: the folder has no ``seeknal/`` folder (nor cell nodes).
            ProjectError: every problem found, with file and line.
        """
        if not (self.root / "seeknal").is_dir() and not self.cells:
            raise UsageError(_not_a_project(self.root))
        return load_nodes(
            self.root, [(doc, cell_label(n)) for n, doc in self.cells.items()]
        )

    def dag(self) -> Dag:
        return build_dag(self.load().nodes)

    def validate(self) -> tuple[LoadResult, Dag]:
        """Load the project and bind every node's SQL against its inputs' columns.

        Raises:
            ProjectError: every problem found, with file and line.
        """
        loaded, dag, _, _ = self._validated()
        return loaded, dag

    def _validated(
        self,
    ) -> tuple[LoadResult, Dag, dict[str, str], dict[str, list[list[str]]]]:
        loaded = self.load()
        dag = build_dag(loaded.nodes)
        fps = fingerprints(dag, self.root)
        found = check_schemas(
            dag, list(dag.order), None, self.root, fps, self._known_schemas()
        )
        return loaded, dag, fps, found

    def _known_schemas(self) -> dict[str, list[list[str]]]:
        """Output columns already checked, by fingerprint (``target/schemas.json``)."""
        try:
            body = json.loads((self.target / SCHEMAS_FILE).read_text())
        except (OSError, ValueError):
            return {}
        if body.get("duckdb") != duckdb.__version__:
            return {}
        return dict(body.get("columns", {}))

    def plan(self) -> Manifest:
        """Validate the project and write ``target/manifest.json``."""
        loaded, dag, fps, found = self._validated()
        manifest = Manifest(
            self.name, self.target / "manifest.json", dag, fps, loaded.warnings
        )
        with self.store.writing("seeknal plan"):
            write_text_atomically(manifest.path, json.dumps(manifest.to_json()))
            log.info("wrote %s", manifest.path)
            write_text_atomically(
                self.target / SCHEMAS_FILE,
                json.dumps({"duckdb": duckdb.__version__, "columns": found}),
            )
        return manifest

    def execution_plan(
        self,
        *,
        env: str = PRODUCTION,
        parallel: bool = False,
        max_workers: int | None = None,
        full: bool = False,
        nodes: Iterable[str] = (),
        tags: Iterable[str] = (),
        types: Iterable[str] = (),
    ) -> ExecutionPlan:
        """What :meth:`run` would do with these options, without running anything.

        Raises:
            UsageError: an input of a node to run has no output and is not
                selected, as the run itself would say.
        """
        env = PRODUCTION if is_production(env) else env
        dag = self.dag()
        fps = fingerprints(dag, self.root)
        selected = dag.select(nodes, tags, types)
        state = self.store.load_state(env)
        as_read = self._as_read(dag, fps, selected, state)
        to_run, cached = self._split(dag, selected, as_read, state, full)
        _check_inputs_built(dag, to_run, self._input_resolver(dag, [state]))
        workers = worker_count(parallel, max_workers)
        run_set = set(to_run)
        reasons = {
            n: self._run_reason(dag, n, as_read, state, run_set, full) for n in to_run
        }
        for node_id, inputs in _behind_inputs(dag, selected, fps, state).items():
            note = _behind_note(node_id, inputs)
            reasons[node_id] = (
                f"{reasons[node_id]}; {note}" if node_id in reasons else note
            )
        return ExecutionPlan(dag, to_run, cached, workers, _mode(full), reasons)

    def _run_reason(
        self,
        dag: Dag,
        node_id: str,
        fps: dict[str, str],
        state: State,
        to_run: set[str],
        full: bool,
    ) -> str:
        """Why a run would build this node, in a few words."""
        if full:
            return "--full rebuilds every node"
        entry = state.entries.get(node_id)
        if entry is None:
            return "no output yet"
        problem = self.store.file_problem(entry)
        if problem:
            return problem
        node = dag.nodes[node_id]
        if entry.fingerprint == fps[node_id]:
            return "its exposure file is missing"
        changes = definition_changes(node, entry.node)
        if changes:
            return "definition changed (" + "; ".join(changes) + ")"
        if node.kind == "source":
            return "its data file changed"
        rerun = [i for i in node.inputs if i in to_run]
        if rerun:
            return f"input {rerun[0]} re-runs" + _others(rerun)
        newer = [
            i
            for i in node.inputs
            if i in state.entries and state.entries[i].finished_at > entry.finished_at
        ]
        if newer:
            return f"input {newer[0]}{_others(newer)} has a newer output"
        return "an input's output changed since it was built"

    def _split(
        self,
        dag: Dag,
        selected: list[str],
        fps: dict[str, str],
        state: State,
        full: bool,
    ) -> tuple[list[str], list[str]]:
        to_run: list[str] = []
        cached: list[str] = []
        for node_id in selected:
            fresh = self.is_fresh(dag.nodes[node_id], state, fps[node_id])
            (cached if fresh and not full else to_run).append(node_id)
            entry = state.entries.get(node_id)
            log.debug(
                "%s: %s (fingerprint %s; its output's %s)",
                node_id,
                "cached" if fresh and not full else "to run",
                fps[node_id],
                entry.fingerprint if entry else "none yet",
            )
        log.info(
            "%s selected in %s: %d to run, %d cached",
            plural(len(selected), "node"),
            display_name(state.env),
            len(to_run),
            len(cached),
        )
        return to_run, cached

    def is_fresh(self, node: Node, state: State, fingerprint: str) -> bool:
        """Whether ``state`` holds an output of ``node`` that a run may keep.

        It must have this fingerprint and its files must be those it records
        (same sizes; an exposure's file included). A damaged file is logged as a
        warning naming the node, which then runs again.
        """
        entry = state.entries.get(node.id)
        if entry is None or entry.fingerprint != fingerprint:
            return False
        problem = self.store.file_problem(entry)
        if problem:
            log.warning("%s: %s; it will be built again", node.id, problem)
            return False
        return node.export is None or entry.export is not None

    def run(
        self,
        *,
        env: str = PRODUCTION,
        parallel: bool = False,
        max_workers: int | None = None,
        full: bool = False,
        nodes: Iterable[str] = (),
        tags: Iterable[str] = (),
        types: Iterable[str] = (),
        fail_fast: bool = False,
        reporter: Reporter | None = None,
        cancel: threading.Event | None = None,
    ) -> RunResult:
        """Run the selected nodes whose outputs are missing or out of date.

        Args:
            env: the environment whose outputs to build (production by default).
            parallel: run independent nodes at the same time.
            max_workers: cap on worker threads (implies ``parallel``).
            full: ignore cached outputs.
            nodes: node names; ``+name`` adds upstream, ``name+`` downstream.
            tags: run nodes with any of these tags.
            types: run nodes of these kinds.
            fail_fast: start no new node after the first failure.
            reporter: front end receiving progress events.
            cancel: set it to stop the run (running queries are interrupted).

        Returns:
            The run's result.

        Raises:
            ProjectError: the project does not validate; nothing ran.
            RunFailed: some nodes failed or were cancelled (after the summary).
            LockedError: another process is writing the project.
        """
        env = PRODUCTION if is_production(env) else env
        dag = self.dag()
        fps = fingerprints(dag, self.root)
        selected = dag.select(nodes, tags, types)
        workers = worker_count(parallel, max_workers)
        with self.store.writing("seeknal run"):
            self.store.remove_partials()
            generation = self.store.ensure_generation(env)
            state = self.store.load_state(env)
            self.store.sync(generation, state)
            replaced = [f for e in state.entries.values() for f in e.files()]
            as_read = self._as_read(dag, fps, selected, state)
            to_run, cached = self._split(dag, selected, as_read, state, full)
            result = self._execute(
                dag,
                as_read,
                env,
                generation,
                state,
                to_run,
                cached,
                workers,
                Reporters(*([reporter] if reporter else [])),
                cancel,
                fail_fast,
                _mode(full),
                fallback=[],
                behind=_behind_inputs(dag, selected, fps, state),
            )
            if to_run:
                self.store.collect(keep_snapshots=replaced)
        if not result.ok:
            raise RunFailed(result)
        return result

    def _as_read(
        self, dag: Dag, fps: dict[str, str], chosen: list[str], state: State
    ) -> dict[str, str]:
        """``fps`` with the ``chosen`` nodes fingerprinted from the outputs they read.

        An input left out of the run is read as it was last built. When its
        definition or data changed since, what is built from it must not pass for
        up to date later, so its fingerprint is that of the output it really read;
        and an output already built from that same input is up to date with it.
        """
        run_set = set(chosen)
        read = {
            i: state.entries[i].fingerprint
            for n in chosen
            for i in dag.nodes[n].inputs
            if _out_of_date_outside(i, run_set, fps, state)
        }
        if not read:
            return fps
        as_read = fingerprints(dag, self.root, read)
        return {n: as_read[n] if n in run_set else f for n, f in fps.items()}

    def _input_resolver(self, dag: Dag, states: list[State]) -> Any:
        def input_path(node_id: str) -> Path:
            for state in states:
                entry = state.entries.get(node_id)
                if entry is not None and self.store.file_problem(entry) is None:
                    return self.target / entry.snapshot
            node = dag.nodes[node_id]
            raise UsageError(
                f"input {node_id} ({node.location}) has no output yet; run it first "
                f"or select it too (+name selects a node with its upstream)"
            )

        return input_path

    def _execute(
        self,
        dag: Dag,
        fps: dict[str, str],
        env: str,
        generation: Path,
        state: State,
        to_run: list[str],
        cached: list[str],
        workers: int,
        reporters: Reporters,
        cancel: threading.Event | None,
        fail_fast: bool,
        mode: str,
        fallback: list[State],
        result: RunResult | None = None,
        behind: dict[str, list[str]] | None = None,
    ) -> RunResult:
        """Build ``to_run`` into ``generation`` and record them in ``state``.

        Inputs outside ``to_run`` are read where ``state`` (then each of
        ``fallback``) says their output is; ``generation`` already links every
        entry of ``state``. Each built node is linked into it once the saved
        state records it. Production's exposure links are then checked (an
        environment's ``exports`` folder link for another). ``result`` is the
        object to fill (an environment passes its own kind). ``behind`` gives
        the out-of-date inputs, not selected, that nodes are built from: each
        node built or cached from one gets a note in the summary.
        """
        started = time.perf_counter()
        input_path = self._input_resolver(dag, [state, *fallback])
        _check_inputs_built(dag, to_run, input_path)
        checked = check_schemas(
            dag, to_run, input_path, self.root, fps, self._known_schemas()
        )
        snapshots = {n: self.store.new_snapshot_path(n, fps[n]) for n in to_run}
        tasks = {
            n: Task(
                dag.nodes[n],
                fps[n],
                dag.layer[n],
                snapshots[n],
                self.root,
                _export_file(dag.nodes[n], snapshots[n]),
                checked.get(fps[n]),
            )
            for n in to_run
        }
        reporters.handle(
            RunStarted(
                self.name,
                display_name(env),
                mode,
                workers,
                dag.layers(),
                to_run,
                cached,
                len(dag.nodes),
            )
        )
        result = result or RunResult(self.name, env, mode, workers, dag.layer_count)
        for node_id in cached:
            entry = state.entries.get(node_id)
            if entry is None:
                entry = next(
                    s.entries[node_id] for s in fallback if node_id in s.entries
                )
            else:
                _record_metadata(state, dag.nodes[node_id])
            result.nodes[node_id] = NodeResult(
                node_id, dag.layer[node_id], "cached", entry.rows
            )
            reporters.handle(
                NodeFinished(node_id, dag.layer[node_id], "cached", entry.rows)
            )
        saver = _StateSaver(self.store, generation, state)

        def on_success(task: Task, built: Built) -> None:
            export = task.node.export
            state.entries[task.node_id] = Entry(
                fingerprint=task.fingerprint,
                snapshot=task.snapshot.relative_to(self.target).as_posix(),
                rows=built.rows,
                columns=built.columns,
                seconds=round(built.seconds, 4),
                finished_at=time.time(),
                node=node_record(task.node),
                size=task.snapshot.stat().st_size,
                export=None
                if task.export_path is None or export is None
                else exposures.export_record(
                    self.store, task.export_path, export[0], self.root
                ),
            )
            saver.changed(task.node_id)

        executor = Executor(
            dag, workers, Settings.for_machine(), reporters, cancel, fail_fast
        )
        try:
            result.nodes.update(executor.run(tasks, input_path, on_success))
        finally:
            state.info["last_run"] = time.time()
            if env == PRODUCTION:
                state.info["definitions"] = unbuilt_definitions(dag, state)
            saver.save()
        if env == PRODUCTION:
            result.messages += exposures.link_production(self.store, self.root, state)
            exposures.unlink_removed(self.store, self.root, state)
        else:
            exposures.link_environment(self.store, env)
        result.nodes = {n: result.nodes[n] for n in dag.order if n in result.nodes}
        seconds = {
            n: r.seconds for n, r in result.nodes.items() if r.status == "success"
        }
        result.critical_path = dag.critical_path(seconds)[0] if seconds else []
        result.stale = stale_outputs(result, state, fps)
        result.messages += [
            f"{node_id}: {_behind_note(node_id, inputs)}"
            for node_id, inputs in (behind or {}).items()
            if node_id in result.nodes
            and result.nodes[node_id].status in ("success", "cached")
        ]
        result.wall_seconds = time.perf_counter() - started
        reporters.handle(RunFinished(result))
        return result

    def environment(self, env: str) -> str:
        """The name of an existing environment; "prod" and "production" are
        production.

        Raises:
            UsageError: the name is not allowed, differs from an existing
                environment's only by case, or names no environment (the
                existing ones are listed).
        """
        from seeknal_jupyter.environments import environment_name, unknown_environment

        env = environment_name(env, self.store, production_allowed=True)
        if env != PRODUCTION and env not in self.store.environments():
            raise unknown_environment(self.store, env)
        return env

    def _entry(self, node_id: str, env: str) -> Entry | None:
        """The state entry of a node's output in ``env``, else production's.

        Reading notes the environment's "last accessed".

        Raises:
            UsageError: the entry's file is missing or not the size written (it
                was damaged outside seeknal).
        """
        self.store.touch(env)
        for state in _states(self.store, env):
            entry = state.entries.get(node_id)
            if entry is None:
                continue
            problem = self.store.file_problem(entry)
            if problem is not None:
                raise UsageError(_damaged_output(node_id, env, problem))
            return entry
        return None

    def output_path(self, node: str, env: str = PRODUCTION) -> Path:
        """The Parquet file holding a node's current output in an environment.

        An environment without its own output of the node reads production's.

        Raises:
            UsageError: ``env`` is no environment, or neither it nor production
                has an output of the node.
        """
        env = self.environment(env)
        node_id = self.dag().resolve(node)
        entry = self._entry(node_id, env)
        if entry is None:
            raise UsageError(_no_output(node_id, env))
        return self.target / entry.snapshot

    def show(self, node: str, env: str = PRODUCTION, limit: int | None = 20) -> Any:
        """A node's output as a pandas DataFrame (the first ``limit`` rows).

        An output that no longer matches the node's definition or data is still
        returned, with a warning logged that it is stale. A source that has not run
        yet is previewed from its data file, read with its declared schema.

        Raises:
            UsageError: ``limit`` is negative, the node or environment is unknown,
                or a node other than a source has no output in ``env``.
        """
        if limit is not None and int(limit) < 0:
            raise UsageError(f"limit must be 0 or more, got {limit}")
        env = self.environment(env)
        dag = self.dag()
        node_id = dag.resolve(node)
        entry = self._entry(node_id, env)
        if entry is None:
            if dag.nodes[node_id].kind != "source":
                raise UsageError(_no_output(node_id, env))
            return self._preview_source(dag.nodes[node_id], limit)
        if entry.fingerprint != fingerprints(dag, self.root)[node_id]:
            log.warning(
                "%s: this output is stale (made from an earlier definition or "
                "data); refresh it with: seeknal run --nodes +%s",
                node_id,
                dag.nodes[node_id].name,
            )
        path = quote_literal(str(self.target / entry.snapshot))
        with connection() as conn:
            return _rows(conn, f"SELECT * FROM read_parquet({path})", limit)

    def _preview_source(self, node: Node, limit: int | None) -> Any:
        """The first rows of a source's data file, read as a run would read it."""
        try:
            check_source_files(node, self.root)
            with connection() as conn:
                frame = _rows(conn, source_query(conn, node, self.root), limit)
        except (NodeError, duckdb.Error) as error:
            raise UsageError(
                f"{node.id} ({node.location}): {first_line(error)}"
            ) from None
        log.warning(
            "%s has not run yet; this is its data file %s, read with its declared "
            "schema",
            node.id,
            node.spec["table"],
        )
        return frame

    def schema(self, node: str) -> NodeSchema:
        """A node's output columns and types, as the plan's schema check binds them.

        Nothing needs to have run: sources are described from their data files
        with their declared schema, other nodes by binding their SQL. Types are
        those the output stores (128-bit integers become BIGINT).

        Raises:
            ProjectError: the node or one of its upstream nodes does not bind.
            UsageError: unknown node, or a source upstream cannot be read.
        """
        dag = self.dag()
        node_id = dag.resolve(node)
        wanted = dag.upstream_of([node_id]) | {node_id}
        fps = fingerprints(dag, self.root)
        found = check_schemas(
            dag,
            [n for n in dag.order if n in wanted],
            None,
            self.root,
            fps,
            self._known_schemas(),
        )
        columns = found.get(fps[node_id])
        if columns is None:
            why = _unreadable(dag, wanted, self.root)
            raise UsageError(f"the columns of {node_id} are not known: {why}")
        stored = [(c, "BIGINT" if t in WIDE_INTEGERS else t) for c, t in columns]
        return NodeSchema(node_id, dag.nodes[node_id].location, stored)

    def add_node(
        self,
        kind: str,
        name: str,
        sql: str | None = None,
        yaml: str | None = None,
        inputs: Iterable[str] = (),
        save: bool = False,
    ) -> NodeChange:
        """Add a node to the project, or replace the one with the same id, in memory.

        The node lives in :attr:`cells` beside the YAML files (a file node of the
        same id is set aside) until :meth:`remove_node` or :meth:`save_node`. Its
        SQL is bound against its inputs' columns, and the SQL of every node
        downstream of it against its new columns: a downstream node that no
        longer binds does not stop the change (as editing a file would not), and
        is listed in the result's ``unbound``.

        Args:
            kind: source, transform, feature_group or exposure.
            name: the node's name; its id is ``kind.name``.
            sql: the node's SQL (not for sources).
            yaml: or the node's YAML fields, as in a node file.
            inputs: upstream nodes of a SQL node (``kind.name`` or a bare name).
            save: then write it to YAML, as :meth:`save_node` does.

        Returns:
            What was added or replaced, with how the node classifies against
            production and the downstream nodes that no longer bind.

        Raises:
            UsageError: the node is malformed, the project does not load with it,
                or its SQL does not bind against its inputs' columns; the previous
                definition is kept.
        """
        from seeknal_jupyter import cells

        return cells.add_node(self, kind, name, sql, yaml, inputs, save)

    def remove_node(self, node: str) -> NodeRemoval:
        """Take a node out of the project: a cell node, or the file saving one wrote.

        A cell node standing in for a file node gives the file its node back. A
        node defined by ``seeknal/<kind>s/<name>.yml`` alone (as :meth:`save_node`
        writes it) is removed by deleting that file.

        Raises:
            UsageError: ``node`` is unknown or ambiguous, another YAML file defines
                it (the message names the file and line to edit), or other nodes
                read it and nothing else would define it.
        """
        from seeknal_jupyter import cells

        return cells.remove_node(self, node)

    def save_node(self, node_id: str) -> Path:
        """Write a cell node to ``seeknal/<kind>s/<name>.yml`` and let the file define it.

        The file is the one already defining the node alone, if there is one. The
        cell entry is dropped once the project loads the file back to the same node.

        Returns:
            The file written, relative to the project folder.

        Raises:
            UsageError: ``node_id`` is not a cell node, another file defines it among
                other nodes, or the file does not load back to the same node
                (nothing is kept then).
        """
        from seeknal_jupyter import cells

        return cells.save_node(self, node_id)

    def check_nodes(self, node_ids: Iterable[str], dag: Dag) -> None:
        """Bind some nodes' SQL against their inputs' columns, as ``plan`` does.

        Inputs with an up-to-date production output are read from it; the others
        are bound too, or taken from an earlier plan's schema check.

        Args:
            node_ids: the nodes to bind.
            dag: the project's DAG, as :meth:`dag` loaded it.

        Raises:
            ProjectError: every node (or input they need) that does not bind.
        """
        wanted = set(node_ids)
        fps = fingerprints(dag, self.root)
        state = self.store.load_state(PRODUCTION)
        built = {
            n: self.target / entry.snapshot
            for n, entry in state.entries.items()
            if n in dag.nodes
            and entry.fingerprint == fps[n]
            and self.store.file_problem(entry) is None
        }
        needed = (dag.upstream_of(wanted) - set(built)) | wanted
        to_check = [n for n in dag.order if n in needed]
        check_schemas(
            dag, to_check, built.__getitem__, self.root, fps, self._known_schemas()
        )


def _check_inputs_built(dag: Dag, to_run: list[str], input_path: InputPath) -> None:
    """Raise the UsageError of ``input_path`` for the first input of a node to
    run that is not run itself and has no output."""
    run_set = set(to_run)
    for node_id in to_run:
        for input_id in dag.nodes[node_id].inputs:
            if input_id not in run_set:
                input_path(input_id)


def _behind_inputs(
    dag: Dag, selected: list[str], fps: dict[str, str], state: State
) -> dict[str, list[str]]:
    """By selected node, the inputs outside the selection whose out-of-date
    output it reads, directly or through selected nodes (in DAG order); nodes
    without any are left out."""
    chosen = set(selected)
    behind: dict[str, list[str]] = {}
    for node_id in dag.order:
        if node_id not in chosen:
            continue
        found: set[str] = set()
        for input_id in dag.nodes[node_id].inputs:
            if input_id in chosen:
                found.update(behind.get(input_id, []))
            elif _out_of_date_outside(input_id, chosen, fps, state):
                found.add(input_id)
        if found:
            behind[node_id] = [n for n in dag.order if n in found]
    return behind


def _out_of_date_outside(
    input_id: str, chosen: set[str], fps: dict[str, str], state: State
) -> bool:
    """Whether an input left out of the run has an output, made from an earlier
    definition or data, that the run reads as it is."""
    entry = state.entries.get(input_id)
    return (
        input_id not in chosen
        and entry is not None
        and entry.fingerprint != fps[input_id]
    )


def _behind_note(node_id: str, inputs: list[str]) -> str:
    """What ``--dry-run`` and the summary say of a node built from out-of-date
    inputs that were not selected, and how to refresh them."""
    name = node_id.split(".", 1)[1]
    if len(inputs) == 1:
        old = f"the old output of {inputs[0]}, which is out of date"
        both = "both"
    else:
        old = f"the old outputs of {', '.join(inputs)}, which are out of date"
        both = "them all"
    return (
        f"built from {old} and not selected (seeknal run --nodes +{name} "
        f"refreshes {both})"
    )


def _others(inputs: list[str]) -> str:
    """`` (and N others)`` after the first of several inputs."""
    return f" (and {plural(len(inputs) - 1, 'other')})" if len(inputs) > 1 else ""


def _not_a_project(folder: Path) -> str:
    """Why a folder without ``seeknal/`` is no project, and what to do: go to the
    project holding it, if there is one, else write one."""
    holder = next((p for p in folder.parents if yaml_files(p)), None)
    if holder is None:
        return (
            f"no seeknal/ folder in {folder}, so it is not a project: write one with "
            "'seeknal init --example fraud-detection DIR', or give a project's "
            "folder with --project PATH"
        )
    where = "the seeknal/ folder of" if folder == holder / "seeknal" else "inside"
    return (
        f"no seeknal/ folder in {folder}; it is {where} the project {holder}: run "
        f"from there, or give --project {shlex.quote(str(holder))}"
    )


def _rows(conn: duckdb.DuckDBPyConnection, query: str, limit: int | None) -> Any:
    """The rows of a query as a pandas DataFrame, at most ``limit`` of them."""
    if limit is not None:
        query = f"SELECT * FROM ({query}\n) LIMIT {int(limit)}"
    return conn.execute(query).df()


def _no_output(node_id: str, env: str) -> str:
    name = node_id.split(".", 1)[1]
    where = "production" if env == PRODUCTION else f"{env!r} or in production"
    return (
        f"{node_id} has no output in {where} yet; run it first: "
        f"seeknal run --nodes +{name}"
    )


def _damaged_output(node_id: str, env: str, problem: str) -> str:
    again = (
        f"seeknal run --nodes {node_id.split('.', 1)[1]}"
        if is_production(env)
        else f"seeknal plan {env}, then seeknal run --env {env}"
    )
    return f"{node_id}'s output cannot be read: {problem}; build it again: {again}"


def _unreadable(dag: Dag, wanted: set[str], root: Path) -> str:
    """Why a source among ``wanted`` cannot be read, in one line."""
    for node_id in dag.order:
        node = dag.nodes[node_id]
        if node_id in wanted and node.kind == "source":
            try:
                check_source_files(node, root)
            except NodeError as error:
                return f"{node_id} ({node.location}): {error}"
    return "a source it reads cannot be read yet; run it to see why"


@dataclass
class NodeSchema:
    """A node's output columns with their DuckDB types (``show --schema``)."""

    node_id: str
    location: str
    columns: list[tuple[str, str]]

    def __str__(self) -> str:
        width = max([len(c) for c, _ in self.columns] + [6])
        lines = [
            f"{self.node_id} ({self.location}): {plural(len(self.columns), 'column')}"
        ]
        lines += [f"  {name:<{width}}  {dtype}" for name, dtype in self.columns]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td><code>{html.escape(c)}</code></td><td>{html.escape(t)}</td></tr>"
            for c, t in self.columns
        )
        return (
            f"<p><b>{html.escape(self.node_id)}</b> "
            f"({html.escape(self.location)})</p>"
            f"<table><tr><th>column</th><th>type</th></tr>{rows}</table>"
        )


def _export_file(node: Node, snapshot: Path) -> Path | None:
    """Where a run writes an exposure's file: beside the node's new snapshot."""
    if node.export is None:
        return None
    return exposures.export_file(snapshot, node.export[1])


def _states(store: Store, env: str) -> list[State]:
    states = [store.load_state(env)]
    if env != PRODUCTION:
        states.append(store.load_state(PRODUCTION))
    return states


def stale_outputs(result: RunResult, state: State, fps: dict[str, str]) -> list[str]:
    """Nodes of ``result`` that did not build but keep an older, stale output.

    Args:
        result: a finished run.
        state: the environment's state after the run.
        fps: the fingerprints the run built with.

    Returns:
        Failed, skipped or cancelled nodes whose kept output was made from
        another fingerprint (an earlier definition or data), in DAG order.
    """
    return [
        node_id
        for node_id, outcome in result.nodes.items()
        if outcome.status in ("failed", "skipped", "cancelled")
        and node_id in state.entries
        and state.entries[node_id].fingerprint != fps[node_id]
    ]


def definition_changes(node: Node, record: dict[str, Any]) -> list[str]:
    """How a node's current definition differs from the one that made its output.

    Args:
        node: the node as the project defines it now.
        record: what the state entry of its output recorded (``node_record``).

    Returns:
        The functional differences, in the classifier's words (metadata left
        out); ``["definition changed"]`` when the record is too old to compare.
    """
    if "spec" not in record:
        return ["definition changed"]
    old = Definition.from_record(node.id, record.get("inputs", []), record["spec"])
    return [
        reason.text
        for reason in definition_reasons(old, Definition.from_node(node))
        if reason.severity != ChangeClass.METADATA
    ]


def _record_metadata(state: State, node: Node) -> None:
    """Keep a cached output's record up to date with its node's metadata
    (description, owner, tags, file and line), which do not change its output."""
    record = node_record(node)
    entry = state.entries[node.id]
    if entry.node != record:
        state.entries[node.id] = replace(entry, node=record)


def unbuilt_definitions(dag: Dag, state: State) -> dict[str, dict[str, Any]]:
    """Records of the nodes production ran without an output (failed or skipped).

    With the entries' records they make production's manifest, so that a node
    that failed in production is not reported as added by the next plan.
    """
    return {n: node_record(dag.nodes[n]) for n in dag.order if n not in state.entries}


def node_record(node: Node) -> dict[str, Any]:
    """The definition a state entry keeps beside a node's output."""
    return {
        "file": node.file,
        "line": node.line,
        "inputs": list(node.inputs),
        "spec": json.loads(json.dumps(dict(node.spec), default=str)),
    }


def worker_count(parallel: bool, max_workers: int | None) -> int:
    """How many workers a run gets: ``max_workers``, else the default when parallel."""
    if max_workers is not None:
        if max_workers < 1:
            raise UsageError(f"--max-workers must be 1 or more, got {max_workers}")
        return max_workers
    return default_workers() if parallel else 1


def _mode(full: bool) -> str:
    return "full" if full else "incremental"


class _StateSaver:
    """Writes an environment's state file at most every half second, and at the end.

    Each node built since the last save is linked into the generation right
    after the save that records it, so no link shows an output the saved state
    does not have.
    """

    def __init__(self, store: Store, generation: Path, state: State) -> None:
        self.store = store
        self.generation = generation
        self.state = state
        self.last = 0.0
        self.unlinked: list[str] = []

    def changed(self, node_id: str) -> None:
        self.unlinked.append(node_id)
        if time.monotonic() - self.last > 0.5:
            self.save()

    def save(self) -> None:
        self.store.save_state(self.generation, self.state)
        for node_id in self.unlinked:
            self.store.publish(self.generation, node_id, self.state.entries[node_id])
        self.unlinked = []
        self.last = time.monotonic()
