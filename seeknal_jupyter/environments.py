"""Environments: plan a changed project against production, apply it beside production,
promote it atomically, inspect, list and delete environments.

An environment is a mapping from node ids to snapshots (its state), like production's.
It holds only the outputs its plan built; every other input is read from production's
snapshot in place. Files under ``target/environments/<env>/``:

- ``plan.json``: the saved plan (change classes, the project's fingerprints and
  definitions, and the state digest of every environment when it was made);
- ``plan.pending.json``: a plan that a promote to this environment is giving it,
  with the generation it belongs to: it is the plan only once that generation is
  the current one (the next writer then renames it to ``plan.json``);
- ``env.json``: when the environment was created, planned, applied and promoted;
- ``accessed``: touched whenever its outputs are read (its "last accessed");
- ``cache``: link to its current generation (see :mod:`seeknal_jupyter.store`);
- ``exports``: link to ``cache/exports``, its exposure files (see
  :mod:`seeknal_jupyter.exposures`; production's are never written).
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb

from seeknal_jupyter import exposures
from seeknal_jupyter.changes import (
    Change,
    ChangeClass,
    Definition,
    classify,
)
from seeknal_jupyter.changes import (
    compare as compare_definitions,
)
from seeknal_jupyter.dag import Dag
from seeknal_jupyter.errors import ProjectError, RunFailed, UsageError
from seeknal_jupyter.events import Reporter, Reporters
from seeknal_jupyter.execute import connection
from seeknal_jupyter.fingerprint import fingerprints
from seeknal_jupyter.loader import NAME_PATTERN, NAME_RULE, Node
from seeknal_jupyter.project import (
    ExecutionPlan,
    Project,
    node_record,
    worker_count,
)
from seeknal_jupyter.report import RunResult, plural
from seeknal_jupyter.sql import quote_ident, quote_literal
from seeknal_jupyter.store import (
    PLAN_FILE,
    PRODUCTION,
    Entry,
    State,
    Store,
    display_name,
    is_production,
    write_text_atomically,
)

log = logging.getLogger(__name__)

PENDING_PLAN_FILE = "plan.pending.json"
ENV_FILE = "env.json"
PROMOTE_STEPS = (
    "locked",
    "checked",
    "linked",
    "state-written",
    "exposure-links",
    "pointed",
    "recorded",
)
SECTION_ORDER = (
    ChangeClass.BREAKING,
    ChangeClass.NON_BREAKING,
    ChangeClass.ADDED,
    ChangeClass.REMOVED,
    ChangeClass.DEPENDENT,
    ChangeClass.METADATA,
)
CLASS_COLOURS = {
    ChangeClass.BREAKING: "#b91c1c",
    ChangeClass.NON_BREAKING: "#a16207",
    ChangeClass.ADDED: "#15803d",
    ChangeClass.REMOVED: "#4b5563",
    ChangeClass.DEPENDENT: "#c2410c",
    ChangeClass.METADATA: "#1d4ed8",
    ChangeClass.UNCHANGED: "#6b7280",
}


def environment_name(
    env: str, store: Store, *, production_allowed: bool = False
) -> str:
    """Check an environment name; production only where it makes sense.

    Production is named ``prod`` or ``production``, in any case; both give
    ``PRODUCTION``, and no environment beside production can take either name.
    A name that differs from an existing environment's only by case is refused:
    on many file systems both would be the same folder.

    Raises:
        UsageError: the name is not an identifier, is production where an
            environment beside production is needed, or differs from an
            existing environment's only by case.
    """
    if is_production(env or ""):
        if not production_allowed:
            raise UsageError(
                f"{env!r} is production: plan and apply changes in another "
                "environment, then promote it to production"
            )
        return PRODUCTION
    if not NAME_PATTERN.fullmatch(env or ""):
        raise UsageError(f"environment name {env!r} is not allowed: use {NAME_RULE}")
    twin = next(
        (e for e in environments(store) if e.lower() == env.lower() and e != env),
        None,
    )
    if twin is not None:
        raise UsageError(
            f"environment {env!r} differs from the existing {twin!r} only by case; "
            f"use {twin!r} (file systems may not tell the two apart)"
        )
    return env


def state_digest(state: State) -> str:
    """A short hash of which snapshot and definition each node has."""
    body = [
        [node_id, entry.fingerprint, entry.snapshot, entry.node]
        for node_id, entry in sorted(state.entries.items())
    ]
    text = json.dumps(body, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def environments(store: Store) -> list[str]:
    """Names of the environments that exist beside production, sorted."""
    return store.environments()


def _unknown_environment(store: Store, env: str) -> UsageError:
    known = ", ".join(environments(store)) or "none"
    return UsageError(f"no environment {env!r} (environments: {known})")


def _digests(store: Store) -> dict[str, str]:
    names = [PRODUCTION, *environments(store)]
    return {name: state_digest(store.load_state(name)) for name in names}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _relative(project: Project, path: Path) -> str:
    try:
        return path.relative_to(project.root).as_posix()
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- the plan


@dataclass
class EnvPlan:
    """A saved comparison of the project with production, for one environment.

    ``changes`` holds one entry per node: the project's nodes in topological order,
    then production's nodes that the project no longer has. ``stale`` holds, with
    the reason, the nodes whose definition did not change but whose production
    output is not that of the project now (its data changed): they run in the
    environment too, so that everything it builds or reads from production is up
    to date. ``records`` holds every node's definition when the plan was made.
    """

    env: str
    project: str
    created: str
    changes: dict[str, Change]
    fingerprints: dict[str, str]
    digests: dict[str, str]
    layers: dict[str, int]
    production_nodes: int
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    stale: dict[str, str] = field(default_factory=dict)
    plan_id: str = ""
    path: Path | None = None

    @property
    def to_execute(self) -> list[str]:
        """Nodes that applying the plan runs: changed, added, dependent and stale."""
        return [n for n, c in self.changes.items() if c.runs or n in self.stale]

    def runs(self, node_id: str) -> bool:
        return self.changes[node_id].runs or node_id in self.stale

    def of_class(self, change_class: ChangeClass) -> list[str]:
        return [n for n, c in self.changes.items() if c.change_class == change_class]

    @property
    def breaking(self) -> list[str]:
        return self.of_class(ChangeClass.BREAKING)

    def classes(self) -> dict[str, str]:
        """Every node's change class by id, removed nodes included."""
        return {n: str(c.change_class) for n, c in self.changes.items()}

    def counts(self) -> dict[str, int]:
        """How many nodes each change class has, every class listed."""
        return {str(k): len(self.of_class(k)) for k in ChangeClass}

    @property
    def project_nodes(self) -> int:
        return len(self.fingerprints)

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "project": self.project,
            "created": self.created,
            "base": PRODUCTION,
            "production_nodes": self.production_nodes,
            "fingerprints": self.fingerprints,
            "digests": self.digests,
            "layers": self.layers,
            "changes": [c.to_json() for c in self.changes.values()],
            "records": self.records,
            "stale": self.stale,
            "id": self.plan_id,
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> EnvPlan:
        changes = [Change.from_json(c) for c in body["changes"]]
        return cls(
            env=body["env"],
            project=body["project"],
            created=body["created"],
            changes={c.node_id: c for c in changes},
            fingerprints=body["fingerprints"],
            digests=body["digests"],
            layers=body["layers"],
            production_nodes=body["production_nodes"],
            records=body.get("records", {}),
            stale=dict(body.get("stale", {})),
            plan_id=body.get("id", ""),
        )

    def summary(self) -> str:
        """``N nodes to execute (k BREAKING); added a, removed r``."""
        run = len(self.to_execute)
        breaking = len(self.breaking)
        extra = f" ({breaking} BREAKING)" if breaking else ""
        return (
            f"{plural(run, 'node')} to execute{extra}, "
            f"{self.project_nodes - run} read from production; "
            f"added {len(self.of_class(ChangeClass.ADDED))}, "
            f"removed {len(self.of_class(ChangeClass.REMOVED))}"
        )

    def warning(self) -> str | None:
        if not self.breaking:
            return None
        return (
            f"WARNING: {plural(len(self.breaking), 'BREAKING change')}. Columns that "
            "downstream readers use may be gone or different; check the nodes "
            "marked DEPENDENT on a BREAKING upstream before applying."
        )

    def __str__(self) -> str:
        lines = [
            (
                f"Plan for environment {self.env!r} (project {self.project}, "
                f"{self.created})"
            ),
            (
                "Compared with production: "
                f"{plural(self.production_nodes, 'recorded node')}; "
                f"project: {plural(self.project_nodes, 'node')}"
            ),
        ]
        changed = [s for s in SECTION_ORDER if self.of_class(s)]
        if not changed:
            lines.append("No changes against production.")
        for section in changed:
            members = self.of_class(section)
            lines.append(f"{section} ({len(members)}):")
            lines += [f"  - {self.changes[n].describe()}" for n in members]
        if self.stale:
            lines.append(
                f"Out of date in production, run here too ({len(self.stale)}):"
            )
            lines += [f"  - {n}: {reason}" for n, reason in self.stale.items()]
        warning = self.warning()
        if warning:
            lines.append(warning)
        lines.append(f"Summary: {self.summary()}")
        if self.path is not None:
            lines.append(f"Saved to {self.path}")
        if self.to_execute:
            lines.append(f"Next: seeknal run --env {self.env}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<EnvPlan {self.env}: {self.summary()}>"

    def _rows_html(self) -> str:
        rows = []
        for section in (*SECTION_ORDER, ChangeClass.UNCHANGED):
            for node_id in self.of_class(section):
                reasons = list(self.changes[node_id].reasons)
                if node_id in self.stale:
                    reasons.append(self.stale[node_id])
                rows.append(
                    f"<tr><td><code>{html.escape(node_id)}</code></td>"
                    f"<td style='color:{CLASS_COLOURS[section]};font-weight:bold'>"
                    f"{section}</td><td>{'yes' if self.runs(node_id) else ''}</td>"
                    f"<td>{html.escape('; '.join(reasons))}</td></tr>"
                )
        return "".join(rows)

    def _picture_html(self) -> str:
        from seeknal_jupyter import graph

        return graph.plan_picture(self).html()

    def _repr_html_(self) -> str:
        warning = self.warning()
        return (
            "<div class='seeknal-plan'>"
            f"<p><b>Plan for environment {html.escape(self.env)}</b> "
            f"({html.escape(self.created)}): {html.escape(self.summary())}</p>"
            + (
                f"<p style='color:#b91c1c'><b>{html.escape(warning)}</b></p>"
                if warning
                else ""
            )
            + "<table><thead><tr><th>node</th><th>class</th><th>runs</th>"
            f"<th>reasons</th></tr></thead><tbody>{self._rows_html()}</tbody></table>"
            f"{self._picture_html()}</div>"
        )


def _production_definitions(state: State) -> dict[str, Definition]:
    """Production's manifest: what made each output, and what ran without one."""
    records = dict(state.info.get("definitions", {}))
    records.update({n: e.node for n, e in state.entries.items() if "spec" in e.node})
    return {
        node_id: Definition.from_record(
            node_id, record.get("inputs", []), record["spec"]
        )
        for node_id, record in records.items()
    }


def compare_with_production(dag: Dag, state: State) -> dict[str, Change]:
    """Every node's change class against production's recorded definitions."""
    current = {i: Definition.from_node(n) for i, n in dag.nodes.items()}
    return compare_definitions(current, dag.order, _production_definitions(state))


def plan_path(project: Project, env: str) -> Path:
    return project.store.env_folder(env) / PLAN_FILE


def _pending_plan_path(store: Store, env: str) -> Path:
    return store.env_folder(env) / PENDING_PLAN_FILE


def stale_nodes(
    dag: Dag, changes: dict[str, Change], fps: dict[str, str], production: State
) -> dict[str, str]:
    """Unchanged nodes whose production output is not the project's now, and why.

    The reason names the sources upstream (the node itself included) whose data
    changed since production ran.
    """

    def outdated(node_id: str) -> bool:
        entry = production.entries.get(node_id)
        return entry is not None and entry.fingerprint != fps[node_id]

    position = {n: i for i, n in enumerate(dag.order)}
    changed_data: dict[str, list[str]] = {}
    for node_id in dag.order:
        found = {s for i in dag.nodes[node_id].inputs for s in changed_data[i]}
        if dag.nodes[node_id].kind == "source" and outdated(node_id):
            found.add(node_id)
        changed_data[node_id] = sorted(found, key=position.__getitem__)
    return {
        node_id: _stale_reason(node_id, changed_data[node_id])
        for node_id in dag.order
        if not changes[node_id].runs and outdated(node_id)
    }


def _stale_reason(node_id: str, sources: list[str]) -> str:
    if sources == [node_id]:
        return "out of date in production: its data file changed since production ran"
    if not sources:
        return (
            "out of date in production: it was built from earlier outputs of its inputs"
        )
    named = (
        sources[0]
        if len(sources) == 1
        else (", ".join(sources[:-1]) + " and " + sources[-1])
    )
    return (
        f"out of date in production: the data of {named} changed since production ran"
    )


def _compare(
    project: Project, env: str, dag: Dag, fps: dict[str, str], production: State
) -> EnvPlan:
    changes = compare_with_production(dag, production)
    return EnvPlan(
        env=env,
        project=project.name,
        created=_now(),
        changes=changes,
        fingerprints=fps,
        digests=_digests(project.store),
        layers={n: dag.layer[n] + 1 for n in dag.order},
        production_nodes=len(production.entries),
        records={n: node_record(dag.nodes[n]) for n in dag.order},
        stale=stale_nodes(dag, changes, fps, production),
        plan_id=uuid.uuid4().hex,
    )


def plan(project: Project, env: str) -> EnvPlan:
    """Compare the project with production and save the plan of ``env``.

    Args:
        project: the project as it is now (YAML files and notebook cells).
        env: the environment the change will be tried in (not production).

    Returns:
        The plan, also saved as ``target/environments/ENV/plan.json``.

    Raises:
        ProjectError: the project does not load.
        UsageError: ``env`` is not a valid environment name.
        LockedError: another process is writing the project.
    """
    env = environment_name(env, project.store)
    dag = project.validate()[1]
    fps = fingerprints(dag, project.root)
    store = project.store
    with store.writing(f"seeknal plan {env}"):
        settle_plans(store)
        result = _compare(project, env, dag, fps, store.load_state(PRODUCTION))
        path = plan_path(project, env)
        write_text_atomically(path, json.dumps(result.to_json(), indent=1))
        _record(store, env, planned_at=time.time())
    result.path = path.relative_to(project.root)
    return result


def load_plan(project: Project, env: str) -> EnvPlan:
    """The saved plan of ``env``; for production, how the project compares now.

    A plan that a promote is giving ``env`` counts once the promote has
    committed, and not before.

    Raises:
        UsageError: the environment has no plan yet.
    """
    env = environment_name(env, project.store, production_allowed=True)
    if env == PRODUCTION:
        dag = project.dag()
        fps = fingerprints(dag, project.root)
        return _compare(project, env, dag, fps, project.store.load_state(PRODUCTION))
    path = plan_path(project, env)
    body = _pending_plan(project.store, env)
    try:
        body = body or json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = ", ".join(environments(project.store)) or "none"
        raise UsageError(
            f"environment {env!r} has no plan yet (environments: {known}); "
            f"make one with: seeknal plan {env}"
        ) from None
    result = EnvPlan.from_json(body)
    result.path = path.relative_to(project.root)
    return result


def _pending_plan(store: Store, env: str) -> dict[str, Any] | None:
    """The plan a promote gave ``env``, if that promote has committed."""
    try:
        body = json.loads(_pending_plan_path(store, env).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    current = store.generation(env)
    if current is None or body.get("generation") != current.name:
        return None
    plan_body: dict[str, Any] = body["plan"]
    return plan_body


def settle_plans(store: Store) -> None:
    """Make each committed pending plan the saved plan; drop the others.

    Call it holding the write lock, before reading or changing a plan.
    """
    for pending in sorted(store.target.glob(f"environments/*/{PENDING_PLAN_FILE}")):
        env = pending.parent.name
        body = _pending_plan(store, env)
        if body is None:
            pending.unlink(missing_ok=True)
            continue
        write_text_atomically(pending.with_name(PLAN_FILE), json.dumps(body, indent=1))
        pending.unlink()


def classify_node(
    project: Project,
    node_id: str,
    dag: Dag | None = None,
    unbound: Iterable[str] = (),
) -> str:
    """One line saying how a node's current definition compares with production's.

    ``dag`` is the project's DAG when the caller has just loaded it. Downstream
    nodes in ``unbound`` (whose SQL no longer binds) and the nodes after them
    would not run, so they are not counted among the DEPENDENT ones.
    """
    dag = dag or project.dag()
    node_id = dag.resolve(node_id)
    entry = project.store.load_state(PRODUCTION).entries.get(node_id)
    if entry is None or "spec" not in entry.node:
        return f"{node_id} against production: ADDED (production has no output for it)"
    old = Definition.from_record(
        node_id, entry.node.get("inputs", []), entry.node["spec"]
    )
    change = classify(old, Definition.from_node(dag.nodes[node_id]))
    if change.change_class == ChangeClass.UNCHANGED:
        return f"{node_id} against production: UNCHANGED (same definition)"
    line = f"{node_id} against production: {change.change_class} ({'; '.join(change.reasons)})"
    downstream = dag.downstream_of([node_id]) if change.runs else set()
    stopped = set(unbound)
    downstream -= stopped | dag.downstream_of(stopped)
    if downstream:
        line += f"; {plural(len(downstream), 'downstream node')} would run as DEPENDENT"
    return line


# ---------------------------------------------------------------- env.json


def _record_path(store: Store, env: str) -> Path:
    return store.env_folder(env) / ENV_FILE


def _read_record(store: Store, env: str) -> dict[str, Any]:
    try:
        body = json.loads(_record_path(store, env).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _record(store: Store, env: str, **events: Any) -> None:
    """Note when ``env`` was planned, applied or promoted (hold the write lock)."""
    body = _read_record(store, env)
    now = time.time()
    body.setdefault("created", now)
    body["last_accessed"] = now
    body.update(events)
    write_text_atomically(_record_path(store, env), json.dumps(body, indent=1))


# ---------------------------------------------------------------- apply


@dataclass(repr=False)
class ApplyResult(RunResult):
    """A run of an environment's plan: what ran there and what production supplied.

    ``unbuilt`` lists the planned nodes that this run, once it succeeds, still
    leaves to build as planned (a run limited with ``--nodes``, or a node built
    from production's out-of-date inputs); they are not counted as production's.
    """

    from_production: list[str] = field(default_factory=list)
    unbuilt: list[str] = field(default_factory=list)
    outputs: str = ""

    def totals(self) -> list[tuple[str, str]]:
        result = []
        for name, value in super().totals():
            result.append((name, value))
            if name == "cached":
                result.append(("from production", str(len(self.from_production))))
        return result

    def cached_parts(self) -> list[str]:
        here = self.count("cached") - len(self.from_production)
        parts = [f"{here} cached here"] if here else []
        return [*parts, f"{len(self.from_production)} cached (from production)"]

    def headline(self) -> str:
        if not self.ok:
            verdict = self.verdict
        else:
            verdict = "partly applied" if self.unbuilt else "applied"
        text = (
            f"Environment {self.env!r} {verdict}: {', '.join(self.count_parts())} "
            f"of {plural(len(self.nodes), 'node')} in {self.wall_seconds:.2f}s"
        )
        if self.ok and self.unbuilt:
            text += (
                f"; {plural(len(self.unbuilt), 'planned node')} still to build "
                f"(first {self.unbuilt[0]}): seeknal run --env {self.env}"
            )
        return f"{text}; outputs in {self.outputs}"


def _check_plan_current(
    result: EnvPlan, dag: Dag, fps: dict[str, str], store: Store, command: str
) -> None:
    """Refuse a plan the project or production no longer matches.

    Any change since the plan counts, metadata (description, owner, tags)
    included, so what a promote records is what the plan showed.
    """
    differing = _changed_since_plan(result, dag, fps)
    if differing:
        first, what = differing[0]
        raise UsageError(
            f"the project changed since 'seeknal plan {result.env}' "
            f"({plural(len(differing), 'node')} changed, first {first}: {what}); "
            f"re-plan with: seeknal plan {result.env}"
        )
    if state_digest(store.load_state(PRODUCTION)) != result.digests.get(PRODUCTION):
        raise UsageError(
            f"production changed since 'seeknal plan {result.env}'; re-plan with: "
            f"seeknal plan {result.env} before {command}"
        )


def _changed_since_plan(
    result: EnvPlan, dag: Dag, fps: dict[str, str]
) -> list[tuple[str, str]]:
    """Each node that differs from when the plan was made, with what changed."""
    differing = []
    for node_id in dag.order:
        if node_id not in result.fingerprints:
            differing.append((node_id, "added since the plan"))
            continue
        what = _what_changed(result, dag.nodes[node_id], fps[node_id])
        if what:
            differing.append((node_id, what))
    differing += [
        (n, "removed since the plan") for n in result.fingerprints if n not in fps
    ]
    return differing


def _what_changed(result: EnvPlan, node: Node, fingerprint: str) -> str | None:
    record = result.records.get(node.id)
    current = node_record(node)
    if record is not None and (record["spec"], record["inputs"]) != (
        current["spec"],
        current["inputs"],
    ):
        old = Definition.from_record(node.id, record["inputs"], record["spec"])
        change = classify(old, Definition.from_node(node))
        if change.change_class != ChangeClass.UNCHANGED:
            return "; ".join(change.reasons) or str(change.change_class)
    if fingerprint != result.fingerprints[node.id]:
        return "its data or an input changed"
    return None


def _built(state: State, store: Store, node_id: str, fingerprint: str) -> bool:
    entry = state.entries.get(node_id)
    return (
        entry is not None
        and entry.fingerprint == fingerprint
        and store.file_problem(entry) is None
    )


def apply(
    project: Project,
    env: str,
    reporter: Reporter | None = None,
    fail_fast: bool = False,
    dry_run: bool = False,
    parallel: bool = False,
    max_workers: int | None = None,
    full: bool = False,
    nodes: Iterable[str] = (),
    tags: Iterable[str] = (),
    types: Iterable[str] = (),
    cancel: threading.Event | None = None,
) -> RunResult | ExecutionPlan:
    """Run the plan of ``env``: its changed, dependent and stale nodes, beside production.

    Inputs the plan does not run are read from production's outputs in place;
    exposure files are seen at ``target/environments/ENV/exports/``. The run
    starts a new generation from the environment's outputs of the plan's nodes
    and replaces each as it is rebuilt, so an interrupted or failed apply keeps
    every earlier output plus what finished. Production's name (``prod`` or
    ``production``) runs production, as ``seeknal run`` does.

    Args:
        project: the project, unchanged since the plan was made.
        env: the environment (it needs a plan: ``seeknal plan ENV``).
        reporter: front end receiving progress events.
        fail_fast: start no new node after the first failure.
        dry_run: only say what would run.
        parallel: run independent nodes at the same time.
        max_workers: cap on worker threads (implies ``parallel``).
        full: run every selected node here, not only the plan's.
        nodes: limit to these nodes (``+name`` / ``name+`` as in ``run``).
        tags: limit to nodes with these tags.
        types: limit to nodes of these kinds.
        cancel: set it to stop the run.

    Returns:
        The run's result (an :class:`ApplyResult`, or an :class:`ExecutionPlan`
        with ``dry_run``).

    Raises:
        UsageError: no plan, or the project or production changed since the plan.
        RunFailed: some nodes failed or were cancelled.
        LockedError: another process is writing the project.
    """
    env = environment_name(env, project.store, production_allowed=True)
    options: dict[str, Any] = {
        "parallel": parallel,
        "max_workers": max_workers,
        "full": full,
        "nodes": nodes,
        "tags": tags,
        "types": types,
    }
    if env == PRODUCTION:
        if dry_run:
            return project.execution_plan(**options)
        return project.run(
            fail_fast=fail_fast, reporter=reporter, cancel=cancel, **options
        )
    saved = load_plan(project, env)
    dag = project.dag()
    fps = fingerprints(dag, project.root)
    store = project.store
    command = f"seeknal run --env {env}"
    selected = dag.select(nodes, tags, types)
    workers = worker_count(parallel, max_workers)
    mode = "full" if full else "plan"
    if dry_run:
        _check_plan_current(saved, dag, fps, store, command)
        split = _split(project, saved, dag, selected, fps, full)
        store.touch(env)
        reasons = {
            n: "--full rebuilds every node" if full else _plan_reason(saved.changes[n])
            for n in split.to_run
        }
        return ExecutionPlan(
            dag, split.to_run, split.cached(dag), workers, mode, reasons
        )
    with store.writing(command):
        settle_plans(store)
        saved = load_plan(project, env)
        _check_plan_current(saved, dag, fps, store, command)
        split = _split(project, saved, dag, selected, fps, full)
        store.remove_partials()
        replaced = store.generation(env)
        store.collect(keep=replaced)
        state = State(env, dict(split.seed), {"plan": saved.created})
        generation = store.new_generation(env)
        store.save_state(generation, state)
        store.sync(generation, state)
        store.point(env, generation)
        read = State(env, {**split.production.entries, **split.seed})
        as_read = project._as_read(dag, fps, split.to_run, read)
        result = ApplyResult(
            project.name,
            env,
            mode,
            workers,
            dag.layer_count,
            from_production=split.borrowed,
            unbuilt=split.unbuilt(saved, as_read),
            outputs=_relative(project, store.env_link(env)),
        )
        project._execute(
            dag,
            as_read,
            env,
            generation,
            state,
            split.to_run,
            split.cached(dag),
            workers,
            Reporters(*([reporter] if reporter else [])),
            cancel,
            fail_fast,
            mode,
            fallback=[split.production],
            result=result,
        )
        _record(store, env, applied_at=time.time())
        store.collect(keep=replaced)
    if not result.ok:
        raise RunFailed(result)
    return result


def _plan_reason(change: Change) -> str:
    """Why an environment run builds a node: its class in the plan, and why."""
    if not change.reasons:
        return str(change.change_class)
    return f"{change.change_class} ({'; '.join(change.reasons)})"


@dataclass
class _Split:
    """Which nodes an apply runs, keeps from earlier applies, or reads from production.

    ``seed`` holds the environment's outputs of the plan's nodes (and of the
    nodes ``--full`` runs), current or not: a new generation starts from them.
    ``kept`` are the nodes not run that have a current output among them;
    ``borrowed`` the nodes not run, not planned, that production has.
    """

    to_run: list[str]
    kept: list[str]
    borrowed: list[str]
    seed: dict[str, Entry]
    production: State

    def cached(self, dag: Dag) -> list[str]:
        """The nodes not run: kept here or read from production, in DAG order."""
        chosen = {*self.kept, *self.borrowed}
        return [n for n in dag.order if n in chosen]

    def unbuilt(self, saved: EnvPlan, fps: dict[str, str]) -> list[str]:
        """Planned nodes that remain to build as planned once the run succeeds.

        ``fps`` are the fingerprints the run builds with: a node built from an
        input that is not as planned does not have the plan's.
        """
        running, kept = set(self.to_run), set(self.kept)
        return [
            n
            for n in saved.to_execute
            if (n not in running and n not in kept)
            or (n in running and fps[n] != saved.fingerprints[n])
        ]


def _split(
    project: Project,
    saved: EnvPlan,
    dag: Dag,
    selected: list[str],
    fps: dict[str, str],
    full: bool,
) -> _Split:
    store = project.store
    own = store.load_state(saved.env)
    production = store.load_state(PRODUCTION)
    wanted = selected if full else [n for n in selected if saved.runs(n)]
    ours = {*saved.to_execute, *wanted}
    seed = {n: e for n, e in own.entries.items() if n in ours and n in dag.nodes}
    current = {n for n in seed if project.is_fresh(dag.nodes[n], own, fps[n])}
    to_run = [n for n in wanted if full or n not in current]
    running = set(to_run)
    kept = [n for n in dag.order if n in current and n not in running]
    borrowed = [
        n
        for n in dag.order
        if n not in running
        and n not in current
        and not saved.runs(n)
        and n in production.entries
    ]
    return _Split(to_run, kept, borrowed, seed, production)


# ---------------------------------------------------------------- promote


@dataclass
class PromoteResult:
    """What a promote changed, and how long the commit took."""

    source: str
    target: str
    generation: str
    promoted: list[str]
    kept: int
    removed: list[str]
    relabelled: list[str]
    linked: int
    linked_bytes: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        target = _named(self.target)
        text = (
            f"Promoted {self.source!r} to {target}: "
            f"{plural(len(self.promoted), 'output')} from {self.source}, "
            f"{self.kept} kept, {len(self.removed)} removed, "
            f"{plural(len(self.relabelled), 'definition')} updated without running. "
            f"{plural(self.linked, 'output')} "
            f"({self.linked_bytes / 1e6:.1f} MB) linked, no data copied, in "
            f"{self.seconds:.3f}s; {target} now points to {self.generation}"
        )
        return "\n".join([text, *self.notes])

    def __repr__(self) -> str:
        return (
            f"<PromoteResult {self.source} -> {display_name(self.target)}: "
            f"{len(self.promoted)} promoted>"
        )

    def _repr_html_(self) -> str:
        return "".join(f"<p>{html.escape(line)}</p>" for line in str(self).split("\n"))


def _named(env: str) -> str:
    """An environment as messages name it: production, or 'name'."""
    return "production" if is_production(env) else repr(env)


def _promoted_state(
    target: str, target_state: State, source_state: State, saved: EnvPlan
) -> State:
    """Production keeps its entries and takes the source's; another target mirrors it.

    Only the source's outputs made as planned are taken (an output of an
    earlier plan that a later apply did not rebuild stays behind).
    """
    entries = dict(target_state.entries) if target == PRODUCTION else {}
    if target == PRODUCTION:
        for node_id in saved.of_class(ChangeClass.REMOVED):
            entries.pop(node_id, None)
        for node_id in saved.of_class(ChangeClass.METADATA):
            entry = entries.get(node_id)
            record = saved.records.get(node_id)
            if (
                entry is not None
                and record is not None
                and entry.fingerprint == saved.fingerprints.get(node_id)
            ):
                entries[node_id] = replace(entry, node=record)
    entries.update(
        {
            n: e
            for n, e in source_state.entries.items()
            if e.fingerprint == saved.fingerprints.get(n)
        }
    )
    unbuilt = target_state.info.get("definitions", {}) if target == PRODUCTION else {}
    info = {
        "definitions": {n: r for n, r in unbuilt.items() if n not in entries},
        "promoted_from": saved.env if target == PRODUCTION else source_state.env,
        "promoted_at": time.time(),
        "promoted_digest": state_digest(State(target, entries)),
        "plan": saved.created,
        "plan_id": saved.plan_id,
    }
    return State(target, entries, info)


def promote(
    project: Project,
    source_env: str,
    target_env: str = PRODUCTION,
    *,
    on_step: Callable[[str], None] | None = None,
) -> PromoteResult:
    """Make the outputs of ``source_env`` those of ``target_env``, atomically.

    A new generation of the target is made from hard links to existing snapshots
    and exposure files (no data is copied), then one rename of the target's
    ``cache`` link commits it: a crash at any moment leaves the target wholly old
    or wholly new, its exposure files included, since every ``params.path`` (and
    an environment's ``exports`` folder) is a link through ``cache``.

    Args:
        project: the project.
        source_env: an applied environment.
        target_env: production (default; ``prod`` or ``production``) or another
            environment, which then mirrors the source (its plan included).
        on_step: called with each name of ``PROMOTE_STEPS`` as it is reached.

    Returns:
        What was promoted and how long it took.

    Raises:
        UsageError: the source is production, not applied or already promoted,
            or the target changed since the source's plan was made.
        LockedError: another process (another promote) is writing the project.
    """
    if is_production(source_env or ""):
        raise UsageError(
            f"{source_env!r} is production, which is promoted to, not from; "
            "promote an environment: seeknal promote ENV [TO]"
        )
    store = project.store
    source = environment_name(source_env, store)
    target = environment_name(target_env, store, production_allowed=True)
    if source == target:
        raise UsageError(f"cannot promote {source!r} to itself")
    step = on_step or (lambda name: None)
    with store.writing(f"seeknal promote {source} {display_name(target)}"):
        started = time.perf_counter()
        step("locked")
        settle_plans(store)
        saved = load_plan(project, source)
        _check_not_promoted(store, saved, target)
        target_state = store.load_state(target)
        _check_target_unchanged(saved, target, target_state)
        source_state = store.load_state(source)
        missing = [
            n
            for n in saved.to_execute
            if not _built(source_state, store, n, saved.fingerprints[n])
        ]
        if missing:
            raise UsageError(
                f"{source!r} is not applied "
                f"({plural(len(missing), 'planned node')} not built, "
                f"first {missing[0]}); run: seeknal run --env {source}"
            )
        step("checked")
        store.remove_partials()
        state = _promoted_state(target, target_state, source_state, saved)
        generation = store.new_generation(target)
        linked_bytes = 0
        for node_id, entry in state.entries.items():
            store.publish(generation, node_id, entry)
            linked_bytes += entry.size + (entry.export.size if entry.export else 0)
        step("linked")
        store.save_state(generation, state)
        if target != PRODUCTION:
            _mirror_plan(project, saved, target, state, generation)
        step("state-written")
        if target == PRODUCTION:
            notes = exposures.link_production(store, project.root, state)
        else:
            notes = []
            exposures.link_environment(store, target)
        step("exposure-links")
        replaced = store.generation(target)
        store.point(target, generation)
        seconds = time.perf_counter() - started
        step("pointed")
        settle_plans(store)
        if target == PRODUCTION:
            exposures.unlink_removed(store, project.root, state)
        _record(
            store,
            source,
            promoted_at=time.time(),
            promoted_to=target,
            promoted_digest=state.info["promoted_digest"],
        )
        if target != PRODUCTION:
            _record(store, target, planned_at=time.time(), applied_at=time.time())
        store.collect(keep=replaced)
        step("recorded")
    promoted = sorted(
        n for n, e in source_state.entries.items() if state.entries.get(n) == e
    )
    return PromoteResult(
        source=source,
        target=target,
        generation=generation.name,
        promoted=promoted,
        kept=len(state.entries) - len(promoted),
        removed=[
            n
            for n in saved.of_class(ChangeClass.REMOVED)
            if n in target_state.entries and target == PRODUCTION
        ],
        relabelled=sorted(saved.of_class(ChangeClass.METADATA))
        if target == PRODUCTION
        else [],
        linked=len(state.entries),
        linked_bytes=linked_bytes,
        seconds=seconds,
        notes=notes,
    )


@dataclass(frozen=True)
class _Promotion:
    """Where and when an environment's current plan was promoted, and the state
    digest the target had right then."""

    target: str
    at: float
    digest: str | None


def _promotion(
    store: Store, env: str, saved: EnvPlan | None, states: dict[str, State]
) -> _Promotion | None:
    """Where and when the current plan of ``env`` was promoted, if it was.

    The environment's record says so once the promote finished; the target's
    state says so from the moment it committed (a promote killed in between).
    """
    record = _read_record(store, env)
    if record.get("promoted_at", -1) >= record.get("planned_at", 0):
        return _Promotion(
            str(record.get("promoted_to", PRODUCTION)),
            float(record["promoted_at"]),
            record.get("promoted_digest"),
        )
    if saved is None or not saved.plan_id:
        return None
    for target, state in states.items():
        info = state.info
        if info.get("promoted_from") == env and info.get("plan_id") == saved.plan_id:
            return _Promotion(
                target, float(info.get("promoted_at", 0)), info.get("promoted_digest")
            )
    return None


def _check_not_promoted(store: Store, saved: EnvPlan, target: str) -> None:
    done = _promotion(store, saved.env, saved, {target: store.load_state(target)})
    if done is not None and done.target == target:
        raise UsageError(
            f"{saved.env!r} is already promoted to {_named(target)} (at "
            f"{_stamp(done.at)}); to promote new changes, plan and apply it again: "
            f"seeknal plan {saved.env}; seeknal run --env {saved.env}"
        )


def _check_target_unchanged(saved: EnvPlan, target: str, target_state: State) -> None:
    recorded = saved.digests.get(target, state_digest(State(target)))
    if state_digest(target_state) != recorded:
        raise UsageError(
            f"{_named(target)} changed since 'seeknal plan {saved.env}' was made; "
            f"re-plan and apply {saved.env} (seeknal plan {saved.env}; seeknal run "
            f"--env {saved.env}) before promoting"
        )


def _mirror_plan(
    project: Project, saved: EnvPlan, target: str, state: State, generation: Path
) -> None:
    """Give the target the source's plan, as of the state it is about to get.

    The plan is written as pending, naming ``generation``: readers take it only
    once that generation is the target's current one (see :func:`load_plan`).
    """
    mirrored = replace(saved, env=target, digests=dict(saved.digests))
    mirrored.digests[target] = state_digest(state)
    body = {"generation": generation.name, "plan": mirrored.to_json()}
    write_text_atomically(
        _pending_plan_path(project.store, target), json.dumps(body, indent=1)
    )


# ---------------------------------------------------------------- list, delete


@dataclass
class EnvRow:
    """One environment in ``seeknal env list``.

    ``target_changed`` says that the environment it was promoted to has changed
    since (a later run or promote there).
    """

    name: str
    created: float | None
    last_accessed: float | None
    status: str
    to_execute: int
    outputs: int
    promoted_to: str | None = None
    target_changed: bool = False

    def status_text(self) -> str:
        """The status as listed: ``promoted to production; production has changed
        since``, ``applied``, ..."""
        if self.promoted_to is None:
            return self.status
        target = display_name(self.promoted_to)
        text = f"{self.status} to {target}"
        return text + (f"; {target} has changed since" if self.target_changed else "")


def _stamp(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


@dataclass
class EnvList:
    """The environments of a project, with production's size for reference."""

    production_outputs: int
    rows: list[EnvRow]

    def names(self) -> list[str]:
        return [r.name for r in self.rows]

    def row(self, name: str) -> EnvRow:
        return next(r for r in self.rows if r.name == name)

    def _table(self) -> list[tuple[str, ...]]:
        return [
            (
                r.name,
                _stamp(r.created),
                _stamp(r.last_accessed),
                r.status_text(),
                str(r.to_execute),
                str(r.outputs),
            )
            for r in self.rows
        ]

    HEADINGS = ("name", "created", "last accessed", "status", "to run", "outputs")

    def __str__(self) -> str:
        if not self.rows:
            return (
                f"No environments (production holds {self.production_outputs} "
                "outputs). Make one with: seeknal plan NAME"
            )
        table = [self.HEADINGS, *self._table()]
        widths = [max(len(row[i]) for row in table) for i in range(len(self.HEADINGS))]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
            for row in table
        ]
        lines.append(f"production holds {self.production_outputs} outputs")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<EnvList {', '.join(self.names()) or 'empty'}>"

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in self.HEADINGS)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
            for row in self._table()
        )
        return (
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<p>production holds {self.production_outputs} outputs</p>"
        )


def _status(
    store: Store,
    env: str,
    saved: EnvPlan | None,
    record: dict[str, Any],
    current: tuple[Dag, dict[str, str]] | None,
    production_digest: str,
) -> str:
    """Planned, applied or stale, by the checks apply and promote make.

    Stale: the project (metadata included) or production changed since the
    plan, so that apply would refuse it. ``current`` is None when the project
    does not load; its edits are then left out.
    """
    if saved is None:
        return "empty"
    changed = current is not None and bool(_changed_since_plan(saved, *current))
    if changed or production_digest != saved.digests.get(PRODUCTION):
        return "stale"
    state = store.load_state(env)
    if all(_built(state, store, n, saved.fingerprints[n]) for n in saved.to_execute):
        planned = record.get("planned_at", 0)
        return "applied" if record.get("applied_at", -1) >= planned else "planned"
    return "planned"


def list_environments(project: Project) -> EnvList:
    """Every environment with its dates, status and node counts.

    A project that does not load still lists (statuses then ignore its edits), but
    a folder with no project at all is refused like every other command refuses it.
    """
    store = project.store
    try:
        dag = project.dag()
        current: tuple[Dag, dict[str, str]] | None = (
            dag,
            fingerprints(dag, project.root),
        )
    except ProjectError as error:
        if not (project.root / "seeknal").is_dir() and not project.cells:
            raise
        log.info("statuses ignore project changes: %s", error)
        current = None
    names = environments(store)
    states = {env: store.load_state(env) for env in (PRODUCTION, *names)}
    digest = state_digest(states[PRODUCTION])
    rows = []
    for env in names:
        try:
            saved: EnvPlan | None = load_plan(project, env)
        except UsageError:
            saved = None
        record = _read_record(store, env)
        promotion = _promotion(store, env, saved, states)
        accessed = [t for t in (record.get("last_accessed"), store.accessed(env)) if t]
        row = EnvRow(
            name=env,
            created=record.get("created"),
            last_accessed=max(accessed) if accessed else None,
            status=_status(store, env, saved, record, current, digest),
            to_execute=len(saved.to_execute) if saved else 0,
            outputs=len(states[env].entries),
        )
        if promotion is not None:
            target = states.get(promotion.target)
            row.status, row.promoted_to = "promoted", promotion.target
            row.target_changed = target is None or (
                promotion.digest is not None
                and state_digest(target) != promotion.digest
            )
        rows.append(row)
    rows.sort(key=lambda r: (r.created or 0, r.name))
    return EnvList(len(states[PRODUCTION].entries), rows)


@dataclass
class DeleteResult:
    """What deleting an environment freed.

    ``own`` are the environment's outputs deleted with it and ``shared`` those it
    held that stay (production or another environment uses them); ``others``
    are outputs no environment used any more, also deleted. Sizes in bytes.
    """

    env: str
    own: int
    own_bytes: int
    shared: int
    others: int
    others_bytes: int

    def __str__(self) -> str:
        text = f"Deleted environment {self.env!r}"
        if self.own and self.shared:
            text += (
                f" and {self.own} of its outputs ({_mb(self.own_bytes)} freed); "
                f"{_shared(self.shared)}"
            )
        elif self.own:
            text += (
                f" and its {plural(self.own, 'output')} ({_mb(self.own_bytes)} freed)"
            )
        elif self.shared:
            text += f"; {_shared(self.shared)}"
        else:
            text += " (it held no outputs of its own)"
        if self.others:
            text += (
                f"; also freed {plural(self.others, 'output')} no environment uses "
                f"({_mb(self.others_bytes)})"
            )
        return text

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(str(self))}</p>"


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _shared(count: int) -> str:
    one = count == 1
    return (
        f"{plural(count, 'output')} it held {'stays' if one else 'stay'}: production "
        f"or another environment uses {'it' if one else 'them'}"
    )


def delete(project: Project, env: str) -> DeleteResult:
    """Remove an environment and the outputs nothing else uses.

    Raises:
        UsageError: ``env`` is production or does not exist.
        LockedError: another process is writing the project.
    """
    if is_production(env or ""):
        raise UsageError(
            f"{env!r} is production, which cannot be deleted; delete an "
            "environment beside it"
        )
    store = project.store
    env = environment_name(env, store)
    if env not in environments(store):
        raise _unknown_environment(store, env)
    with store.writing(f"seeknal env delete {env}"):
        settle_plans(store)
        held = list(store.load_state(env).entries.values())
        store.env_link(env).unlink(missing_ok=True)
        shutil.rmtree(store.env_folder(env))
        freed = store.collect().files
    own = [e for e in held if e.snapshot in freed]
    own_files = {f for e in own for f in e.files()}
    others = [f for f in freed if f not in own_files]
    return DeleteResult(
        env=env,
        own=len(own),
        own_bytes=sum(freed[f] for f in own_files if f in freed),
        shared=len(held) - len(own),
        others=sum(1 for f in others if ".export." not in f),
        others_bytes=sum(freed[f] for f in others),
    )


# ---------------------------------------------------------------- diff


@dataclass
class MatchedRows:
    """The rows of both sides matched on a node's keys (a feature group's entity
    join keys), and how their values differ."""

    keys: list[str]
    changed_rows: int
    changed_columns: dict[str, int]
    keys_only_in_env: int
    keys_only_in_production: int


@dataclass
class NodeDiff:
    """How a node's output in an environment differs from production's.

    Columns both sides have are compared by name; a column whose type changed is
    compared as ``compared_as[column]`` on both sides. With ``matched``, the
    sample holds matched rows that differ, each differing column as in
    production beside its value in the environment; otherwise it holds rows found
    on one side only, with a ``side`` column.
    """

    node_id: str
    env: str
    env_path: Path | None
    production_path: Path | None
    only_in_env: list[tuple[str, str]]
    only_in_production: list[tuple[str, str]]
    type_changes: list[tuple[str, str, str]]
    env_rows: int
    production_rows: int
    rows_only_in_env: int
    rows_only_in_production: int
    sample: Any
    compared_as: dict[str, str] = field(default_factory=dict)
    matched: MatchedRows | None = None

    @property
    def same(self) -> bool:
        return not (
            self.only_in_env
            or self.only_in_production
            or self.type_changes
            or self.rows_only_in_env
            or self.rows_only_in_production
        )

    def _lines(self) -> list[str]:
        if self.env_path is None:
            own = f"{self.env} has no output of its own for {self.node_id}"
            return [f"{own}: it reads production's."]
        lines = []
        lines += [f"column {c} ({t}) only in {self.env}" for c, t in self.only_in_env]
        lines += [
            f"column {c} ({t}) only in production" for c, t in self.only_in_production
        ]
        lines += [
            f"column {c}: {old} in production, {new} in {self.env} (compared as "
            f"{self.compared_as.get(c, new)})"
            for c, old, new in self.type_changes
        ]
        lines.append(
            f"rows: {self.production_rows:,} in production, {self.env_rows:,} in "
            f"{self.env}; {self.rows_only_in_env:,} only in {self.env}, "
            f"{self.rows_only_in_production:,} only in production "
            "(compared on the columns both have)"
        )
        if self.matched is not None:
            lines.append(self._matched_line(self.matched))
        return lines

    def _matched_line(self, matched: MatchedRows) -> str:
        columns = ", ".join(
            f"{c} {n:,}" for c, n in matched.changed_columns.items() if n
        )
        return (
            f"matched on {', '.join(matched.keys)}: "
            f"{plural(matched.changed_rows, 'row')} with different values"
            + (f" ({columns})" if columns else "")
            + f"; {matched.keys_only_in_env:,} keys only in {self.env}, "
            f"{matched.keys_only_in_production:,} only in production"
        )

    def _sample_heading(self) -> str:
        if self.matched is None:
            return "sample of differing rows"
        return (
            "sample of matched rows that differ (each differing column in "
            f"production, then in {self.env})"
        )

    def __str__(self) -> str:
        head = f"{self.node_id}: {self.env} vs production"
        text = "\n".join([head, *("  " + line for line in self._lines())])
        if self.sample is not None and len(self.sample):
            text += f"\n{self._sample_heading()}:\n" + self.sample.to_string(
                index=False
            )
        return text

    def __repr__(self) -> str:
        verdict = "same" if self.same else "different"
        return f"<NodeDiff {self.node_id} {self.env} vs production: {verdict}>"

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in self._lines())
        sample = ""
        if self.sample is not None and len(self.sample):
            heading = html.escape(self._sample_heading().capitalize())
            sample = f"<p>{heading}:</p>" + self.sample.to_html(index=False)
        return (
            f"<div><p><b>{html.escape(self.node_id)}</b>: {html.escape(self.env)} vs "
            f"production</p><ul>{items}</ul>{sample}</div>"
        )


def _columns(conn: duckdb.DuckDBPyConnection, path: Path) -> list[tuple[str, str]]:
    rows = conn.execute(
        f"DESCRIBE SELECT * FROM read_parquet({quote_literal(str(path))})"
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def diff(project: Project, node: str, env: str, limit: int = 10) -> NodeDiff:
    """Compare a node's output in ``env`` with production's.

    Args:
        project: the project.
        node: node id or unambiguous name.
        env: the environment.
        limit: rows of each side (or matched rows) to show in the sample.

    Returns:
        Schema differences, row counts and a sample, compared on the columns both
        outputs share (by name; a column whose type changed is cast so its
        values compare). A feature group's rows are also matched on its entity's
        join keys, when they are unique on both sides.

    Raises:
        UsageError: ``env`` is production or no environment, or neither side has
            an output for the node.
    """
    store = project.store
    if is_production(env or ""):
        raise UsageError(
            f"diff compares an environment with production; name one of: "
            f"{', '.join(environments(store)) or 'none (make one with: seeknal plan NAME)'}"
        )
    env = environment_name(env, store)
    if env not in environments(store):
        raise _unknown_environment(store, env)
    dag = project.dag()
    node_id = dag.resolve(node)
    own = store.load_state(env).entries.get(node_id)
    production = store.load_state(PRODUCTION).entries.get(node_id)
    if own is None and production is None:
        raise UsageError(f"{node_id} has no output in {env!r} or in production yet")
    store.touch(env)
    env_path = store.target / own.snapshot if own else None
    prod_path = store.target / production.snapshot if production else None
    found = dag.nodes[node_id]
    keys = list(found.join_keys) if found.kind == "feature_group" else []
    with connection() as conn:
        return _compare_outputs(conn, node_id, env, env_path, prod_path, keys, limit)


def _compare_outputs(
    conn: duckdb.DuckDBPyConnection,
    node_id: str,
    env: str,
    env_path: Path | None,
    prod_path: Path | None,
    keys: list[str],
    limit: int,
) -> NodeDiff:
    if env_path is None:
        assert prod_path is not None
        rows = conn.execute(
            f"SELECT count(*) FROM read_parquet({quote_literal(str(prod_path))})"
        ).fetchone()
        count = int(rows[0]) if rows else 0
        return NodeDiff(
            node_id, env, None, prod_path, [], [], [], count, count, 0, 0, None
        )
    new = _columns(conn, env_path)
    old = _columns(conn, prod_path) if prod_path else []
    old_types, new_types = dict(old), dict(new)
    sides = _Sides(conn, env_path, prod_path)
    shared = [c for c, _ in new if c in old_types]
    casts = {
        c: sides.comparable_type(c, old_types[c], new_types[c])
        for c in shared
        if old_types[c] != new_types[c]
    }
    picked = ", ".join(sides.value(c, casts) for c in shared)
    picked = picked or "1 AS no_shared_column"
    conn.execute(
        f"CREATE TEMP TABLE only_env AS SELECT {picked} FROM {sides.env} "
        f"EXCEPT ALL SELECT {picked} FROM {sides.production}"
    )
    conn.execute(
        f"CREATE TEMP TABLE only_prod AS SELECT {picked} FROM {sides.production} "
        f"EXCEPT ALL SELECT {picked} FROM {sides.env}"
    )
    counts = conn.execute(
        f"SELECT (SELECT count(*) FROM {sides.env}), "
        f"(SELECT count(*) FROM {sides.production}), "
        "(SELECT count(*) FROM only_env), (SELECT count(*) FROM only_prod)"
    ).fetchone()
    assert counts is not None
    matched = None
    if keys and all(k in old_types for k in keys) and sides.unique(keys, casts):
        matched, sample = sides.matched(env, keys, shared, casts, limit)
    else:
        sample = conn.execute(
            f"(SELECT {quote_literal(env)} AS side, * FROM only_env "
            f"LIMIT {int(limit)}) UNION ALL (SELECT 'production' AS side, * "
            f"FROM only_prod LIMIT {int(limit)})"
        ).df()
    return NodeDiff(
        node_id=node_id,
        env=env,
        env_path=env_path,
        production_path=prod_path,
        only_in_env=[(c, t) for c, t in new if c not in old_types],
        only_in_production=[(c, t) for c, t in old if c not in new_types],
        type_changes=[
            (c, old_types[c], t) for c, t in new if c in old_types and old_types[c] != t
        ],
        env_rows=int(counts[0]),
        production_rows=int(counts[1]),
        rows_only_in_env=int(counts[2]),
        rows_only_in_production=int(counts[3]),
        sample=sample,
        compared_as=casts,
        matched=matched,
    )


class _Sides:
    """SQL over the two outputs a diff compares (``e``: the environment's, ``p``:
    production's, empty when production has none)."""

    def __init__(
        self, conn: duckdb.DuckDBPyConnection, env_path: Path, prod_path: Path | None
    ) -> None:
        self.conn = conn
        self.env = f"read_parquet({quote_literal(str(env_path))})"
        self.production = (
            f"read_parquet({quote_literal(str(prod_path))})"
            if prod_path
            else f"(SELECT * FROM {self.env} LIMIT 0)"
        )

    @staticmethod
    def value(column: str, casts: dict[str, str]) -> str:
        """A column as compared: cast to its comparable type when it changed."""
        name = quote_ident(column)
        if column not in casts:
            return name
        return f"CAST({name} AS {casts[column]}) AS {name}"

    @staticmethod
    def _compared(alias: str, column: str, casts: dict[str, str]) -> str:
        name = f"{alias}.{quote_ident(column)}"
        return f"CAST({name} AS {casts[column]})" if column in casts else name

    def comparable_type(self, column: str, old: str, new: str) -> str:
        """The type both sides of a changed column are compared as: the one
        DuckDB would combine them into, else text."""
        try:
            row = self.conn.execute(
                f"DESCRIBE SELECT CAST(NULL AS {old}) AS v "
                f"UNION ALL SELECT CAST(NULL AS {new})"
            ).fetchone()
            combined = str(row[1]) if row else "VARCHAR"
            for side in (self.env, self.production):
                self.conn.execute(
                    f"SELECT count(CAST({quote_ident(column)} AS {combined})) "
                    f"FROM {side}"
                ).fetchall()
        except duckdb.Error:
            return "VARCHAR"
        return combined

    def unique(self, keys: list[str], casts: dict[str, str]) -> bool:
        """Whether ``keys`` identify one row on each side."""
        row = ", ".join(self._compared("t", k, casts) for k in keys)
        for side in (self.env, self.production):
            found = self.conn.execute(
                f"SELECT count(*) - count(DISTINCT ({row})) FROM {side} AS t"
            ).fetchone()
            if found is None or found[0] != 0:
                return False
        return True

    def matched(
        self,
        env: str,
        keys: list[str],
        shared: list[str],
        casts: dict[str, str],
        limit: int,
    ) -> tuple[MatchedRows, Any]:
        """Rows matched on ``keys``: how many differ, per column, and a sample."""
        on = " AND ".join(
            f"{self._compared('e', k, casts)} IS NOT DISTINCT FROM "
            f"{self._compared('p', k, casts)}"
            for k in keys
        )
        values = [c for c in shared if c not in keys]
        differs = {
            c: f"{self._compared('e', c, casts)} IS DISTINCT FROM "
            f"{self._compared('p', c, casts)}"
            for c in values
        }
        joined = f"{self.env} AS e JOIN {self.production} AS p ON {on}"
        any_differs = " OR ".join(differs.values()) or "false"
        filters = "".join(
            f", count(*) FILTER (WHERE {condition})" for condition in differs.values()
        )
        row = self.conn.execute(
            f"SELECT count(*) FILTER (WHERE {any_differs}){filters} FROM {joined}"
        ).fetchone()
        assert row is not None
        per_column = dict(zip(values, (int(n) for n in row[1:])))
        only = [
            self.conn.execute(
                f"SELECT count(*) FROM {a} AS e ANTI JOIN {b} AS p ON {on}"
            ).fetchone()
            for a, b in ((self.env, self.production), (self.production, self.env))
        ]
        shown = [c for c in values if per_column[c]]
        picked = [f"e.{quote_ident(k)}" for k in keys]
        for c in shown:
            picked.append(f"p.{quote_ident(c)} AS {quote_ident(f'{c} (production)')}")
            picked.append(f"e.{quote_ident(c)} AS {quote_ident(f'{c} ({env})')}")
        sample = self.conn.execute(
            f"SELECT {', '.join(picked)} FROM {joined} WHERE {any_differs} "
            f"ORDER BY {', '.join(f'e.{quote_ident(k)}' for k in keys)} "
            f"LIMIT {int(limit)}"
        ).df()
        matched = MatchedRows(
            keys=keys,
            changed_rows=int(row[0]),
            changed_columns=per_column,
            keys_only_in_env=int(only[0][0]) if only[0] else 0,
            keys_only_in_production=int(only[1][0]) if only[1] else 0,
        )
        return matched, sample
