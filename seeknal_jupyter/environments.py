"""Environments: plan a changed project against production, apply it beside production.

Promoting an applied environment is in :mod:`seeknal_jupyter.promote`, comparing its
outputs with production's in :mod:`seeknal_jupyter.diff`, listing and deleting
environments in :mod:`seeknal_jupyter.inventory`; they share the helpers here.

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
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from seeknal_jupyter.errors import RunFailed, UsageError
from seeknal_jupyter.events import Reporter, Reporters
from seeknal_jupyter.fingerprint import fingerprints
from seeknal_jupyter.loader import NAME_PATTERN, NAME_RULE, Node
from seeknal_jupyter.project import (
    ExecutionPlan,
    Project,
    node_record,
    worker_count,
)
from seeknal_jupyter.report import RunResult, plural
from seeknal_jupyter.store import (
    PLAN_FILE,
    PRODUCTION,
    Entry,
    State,
    Store,
    is_production,
    write_text_atomically,
)

PENDING_PLAN_FILE = "plan.pending.json"
UNBUILT_IN_PRODUCTION = (
    "no output in production: it failed, was skipped or was never run there"
)
ENV_FILE = "env.json"
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


def is_built(state: State, store: Store, node_id: str, fingerprint: str) -> bool:
    """Whether ``state`` has the node's output made with ``fingerprint``, intact."""
    entry = state.entries.get(node_id)
    return (
        entry is not None
        and entry.fingerprint == fingerprint
        and store.file_problem(entry) is None
    )


def environments(store: Store) -> list[str]:
    """Names of the environments that exist beside production, sorted."""
    return store.environments()


def unknown_environment(store: Store, env: str) -> UsageError:
    """The error for an environment that does not exist, listing those that do."""
    known = ", ".join(environments(store)) or "none"
    return UsageError(f"no environment {env!r} (environments: {known})")


def _digests(store: Store) -> dict[str, str]:
    names = [PRODUCTION, *environments(store)]
    return {name: state_digest(store.load_state(name)) for name in names}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def format_time(seconds: float | None) -> str:
    """A time in seconds since the epoch as messages show it (``-`` for none)."""
    if seconds is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


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


def pending_plan_path(store: Store, env: str) -> Path:
    """Where a promote to ``env`` leaves the plan it gives it."""
    return store.env_folder(env) / PENDING_PLAN_FILE


def stale_nodes(
    dag: Dag, changes: dict[str, Change], fps: dict[str, str], production: State
) -> dict[str, str]:
    """Unchanged nodes whose production output is not the project's now, and why.

    A node production has no output of (it failed or was skipped there) is one.
    For the others, the reason names the sources upstream (the node itself
    included) whose data changed since production ran.
    """

    def outdated(node_id: str) -> bool:
        entry = production.entries.get(node_id)
        return entry is not None and entry.fingerprint != fps[node_id]

    def unbuilt(node_id: str) -> bool:
        return node_id not in production.entries

    position = {n: i for i, n in enumerate(dag.order)}
    changed_data: dict[str, list[str]] = {}
    for node_id in dag.order:
        found = {s for i in dag.nodes[node_id].inputs for s in changed_data[i]}
        if dag.nodes[node_id].kind == "source" and outdated(node_id):
            found.add(node_id)
        changed_data[node_id] = sorted(found, key=position.__getitem__)
    stale = {}
    for node_id in dag.order:
        if changes[node_id].runs:
            continue
        if unbuilt(node_id):
            stale[node_id] = UNBUILT_IN_PRODUCTION
        elif outdated(node_id):
            stale[node_id] = _stale_reason(node_id, changed_data[node_id])
    return stale


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
        update_env_record(store, env, planned_at=time.time())
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
        body = json.loads(pending_plan_path(store, env).read_text(encoding="utf-8"))
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


def read_env_record(store: Store, env: str) -> dict[str, Any]:
    """What ``env.json`` says of ``env`` (empty when it has none or is unreadable)."""
    try:
        body = json.loads(_record_path(store, env).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def update_env_record(store: Store, env: str, **events: Any) -> None:
    """Note when ``env`` was planned, applied or promoted (hold the write lock)."""
    body = read_env_record(store, env)
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
    differing = changed_since_plan(result, dag, fps)
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


def changed_since_plan(
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
        update_env_record(store, env, applied_at=time.time())
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
