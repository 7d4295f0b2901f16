"""A project's environments: list them with their status, or delete one."""

from __future__ import annotations

import html
import logging
import shutil
from dataclasses import dataclass
from typing import Any

from seeknal_jupyter.dag import Dag
from seeknal_jupyter.environments import (
    EnvPlan,
    changed_since_plan,
    environments,
    format_time,
    is_built,
    load_plan,
    read_env_record,
    settle_plans,
    state_digest,
)
from seeknal_jupyter.errors import ProjectError, UsageError
from seeknal_jupyter.fingerprint import fingerprints
from seeknal_jupyter.project import Project
from seeknal_jupyter.promote import current_promotion
from seeknal_jupyter.report import plural
from seeknal_jupyter.store import PRODUCTION, Store, display_name, is_production

log = logging.getLogger(__name__)


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
                format_time(r.created),
                format_time(r.last_accessed),
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
    changed = current is not None and bool(changed_since_plan(saved, *current))
    if changed or production_digest != saved.digests.get(PRODUCTION):
        return "stale"
    state = store.load_state(env)
    if all(is_built(state, store, n, saved.fingerprints[n]) for n in saved.to_execute):
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
        record = read_env_record(store, env)
        promotion = current_promotion(store, env, saved, states)
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
    env = project.environment(env)
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
