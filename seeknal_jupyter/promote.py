"""Promote an applied environment to production (or another one), atomically."""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from seeknal_jupyter import exposures
from seeknal_jupyter.changes import ChangeClass
from seeknal_jupyter.environments import (
    EnvPlan,
    environment_name,
    format_time,
    is_built,
    load_plan,
    pending_plan_path,
    read_env_record,
    settle_plans,
    state_digest,
    update_env_record,
)
from seeknal_jupyter.errors import UsageError
from seeknal_jupyter.project import Project
from seeknal_jupyter.report import plural
from seeknal_jupyter.store import (
    PRODUCTION,
    State,
    Store,
    display_name,
    is_production,
    write_text_atomically,
)

PROMOTE_STEPS = (
    "locked",
    "checked",
    "linked",
    "state-written",
    "exposure-links",
    "pointed",
    "recorded",
)


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
            if not is_built(source_state, store, n, saved.fingerprints[n])
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
        update_env_record(
            store,
            source,
            promoted_at=time.time(),
            promoted_to=target,
            promoted_digest=state.info["promoted_digest"],
        )
        if target != PRODUCTION:
            update_env_record(
                store, target, planned_at=time.time(), applied_at=time.time()
            )
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
class Promotion:
    """Where and when an environment's current plan was promoted, and the state
    digest the target had right then."""

    target: str
    at: float
    digest: str | None


def current_promotion(
    store: Store, env: str, saved: EnvPlan | None, states: dict[str, State]
) -> Promotion | None:
    """Where and when the current plan of ``env`` was promoted, if it was.

    The environment's record says so once the promote finished; the target's
    state says so from the moment it committed (a promote killed in between).

    Args:
        store: the project's store.
        env: the environment promoted from.
        saved: its current plan, if it has one.
        states: the states of the targets it may have been promoted to, by name.

    Returns:
        The promotion, or None when the current plan was not promoted.
    """
    record = read_env_record(store, env)
    if record.get("promoted_at", -1) >= record.get("planned_at", 0):
        return Promotion(
            str(record.get("promoted_to", PRODUCTION)),
            float(record["promoted_at"]),
            record.get("promoted_digest"),
        )
    if saved is None or not saved.plan_id:
        return None
    for target, state in states.items():
        info = state.info
        if info.get("promoted_from") == env and info.get("plan_id") == saved.plan_id:
            return Promotion(
                target, float(info.get("promoted_at", 0)), info.get("promoted_digest")
            )
    return None


def _check_not_promoted(store: Store, saved: EnvPlan, target: str) -> None:
    done = current_promotion(
        store, saved.env, saved, {target: store.load_state(target)}
    )
    if done is not None and done.target == target:
        raise UsageError(
            f"{saved.env!r} is already promoted to {_named(target)} "
            f"(at {format_time(done.at)}); to promote new changes, plan and apply "
            f"it again: seeknal plan {saved.env}; seeknal run --env {saved.env}"
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
        pending_plan_path(project.store, target), json.dumps(body, indent=1)
    )
