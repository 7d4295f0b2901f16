"""Where outputs live: immutable Parquet snapshots, per-environment state and links.

Layout under ``target/``:

- ``snapshots/<kind>/<name>/<fingerprint>[-<suffix>].parquet``: each output, written
  once, atomically, and never changed nor replaced (a rebuild of a fingerprint that
  already has a snapshot gets a new file); deleted once no generation refers to it;
- ``gens/<env>-<stamp>/``: one generation of an environment: ``state.json`` (which
  snapshot each node has, with rows, columns and the definition that made it) and
  ``<kind>/<name>.parquet`` hard links to those snapshots;
- ``cache`` (production) and ``environments/<env>/cache``: symbolic links to the
  environment's current generation, swapped with one atomic rename.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from seeknal_jupyter.errors import LockedError

log = logging.getLogger(__name__)

PRODUCTION = "prod"
PRODUCTION_NAMES = (PRODUCTION, "production")
TEMP_SUFFIX = ".partial"
ACCESSED_FILE = "accessed"
PLAN_FILE = "plan.json"


def is_production(env: str) -> bool:
    """Whether ``env`` names production (``prod`` or ``production``)."""
    return env in PRODUCTION_NAMES


def display_name(env: str) -> str:
    """How messages name an environment: production is always "production"."""
    return "production" if is_production(env) else env


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def replace_atomically(tmp: Path, final: Path) -> None:
    """Make ``tmp`` (a complete file in the same folder) the file at ``final``."""
    os.replace(tmp, final)
    try:
        folder = os.open(final.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def write_text_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    replace_atomically(tmp, path)


def temp_path_for(final: Path) -> Path:
    """A temporary name beside ``final`` that no ``*.parquet`` glob matches."""
    return final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")


@dataclass
class Entry:
    """What an environment holds for one node."""

    fingerprint: str
    snapshot: str
    rows: int
    columns: list[list[str]]
    seconds: float
    finished_at: float
    node: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class State:
    """An environment's current mapping from node ids to snapshots."""

    env: str
    entries: dict[str, Entry] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        body = {
            "env": self.env,
            "info": self.info,
            "nodes": {k: v.to_json() for k, v in sorted(self.entries.items())},
        }
        # Key order inside a recorded spec is meaningful (features are output
        # columns in that order), so keys are written as they are held.
        return json.dumps(body)

    @classmethod
    def from_json(cls, text: str) -> State:
        body = json.loads(text)
        entries = {k: Entry(**v) for k, v in body.get("nodes", {}).items()}
        return cls(body["env"], entries, body.get("info", {}))


class Store:
    """Snapshots and environment generations of one project's ``target/`` folder."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def snapshot_path(self, node_id: str, fingerprint: str) -> Path:
        kind, name = node_id.split(".", 1)
        return self.target / "snapshots" / kind / name / f"{fingerprint}.parquet"

    def new_snapshot_path(self, node_id: str, fingerprint: str) -> Path:
        """Where a new build of a node goes: never a file that already exists.

        Snapshots are immutable (other environments may point to one), so a
        rebuild of a fingerprint that has a snapshot gets a name of its own.
        """
        path = self.snapshot_path(node_id, fingerprint)
        while os.path.lexists(path):
            path = path.with_name(f"{fingerprint}-{uuid.uuid4().hex[:8]}.parquet")
        return path

    def env_link(self, env: str) -> Path:
        """The ``cache`` link of an environment (production's is ``target/cache``)."""
        if is_production(env):
            return self.target / "cache"
        return self.target / "environments" / env / "cache"

    def env_folder(self, env: str) -> Path:
        if is_production(env):
            return self.target
        return self.target / "environments" / env

    def generation(self, env: str) -> Path | None:
        link = self.env_link(env)
        return link.resolve() if link.is_symlink() else None

    def load_state(self, env: str) -> State:
        """The environment's state, empty when it has never run."""
        generation = self.generation(env)
        if generation is None or not (generation / "state.json").exists():
            return State(env)
        return State.from_json((generation / "state.json").read_text())

    def new_generation(self, env: str) -> Path:
        folder = self.target / "gens" / f"{env}-{time.strftime('%Y%m%dT%H%M%S')}"
        folder = folder.with_name(f"{folder.name}-{uuid.uuid4().hex[:6]}")
        folder.mkdir(parents=True)
        return folder

    def ensure_generation(self, env: str) -> Path:
        """The environment's current generation, made (empty) if it has none."""
        current = self.generation(env)
        if current is not None and current.is_dir():
            return current
        folder = self.new_generation(env)
        write_text_atomically(folder / "state.json", State(env).to_json())
        self.point(env, folder)
        return folder

    def point(self, env: str, generation: Path) -> None:
        """Atomically make ``generation`` the environment's current one."""
        link = self.env_link(env)
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")
        os.symlink(os.path.relpath(generation, link.parent), tmp)
        replace_atomically(tmp, link)

    def publish(self, generation: Path, node_id: str, snapshot: Path) -> None:
        """Link ``snapshot`` at ``<generation>/<kind>/<name>.parquet`` atomically."""
        kind, name = node_id.split(".", 1)
        final = generation / kind / f"{name}.parquet"
        if _same_file(final, snapshot):
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path_for(final)
        try:
            os.link(snapshot, tmp)
        except OSError:
            shutil.copyfile(snapshot, tmp)
        os.replace(tmp, final)

    def save_state(self, generation: Path, state: State) -> None:
        write_text_atomically(generation / "state.json", state.to_json())

    def touch(self, env: str) -> None:
        """Note that an environment's outputs were read (its "last accessed").

        A file's modification time, so that readers need neither the lock nor a
        read-modify-write of the environment's record.
        """
        folder = self.env_folder(env)
        if is_production(env) or not folder.is_dir():
            return
        (folder / ACCESSED_FILE).touch()

    def accessed(self, env: str) -> float | None:
        """When :meth:`touch` last noted a read of the environment, if ever."""
        try:
            return (self.env_folder(env) / ACCESSED_FILE).stat().st_mtime
        except OSError:
            return None

    def environments(self) -> list[str]:
        """Names of the environments beside production (planned or built), sorted."""
        folder = self.target / "environments"
        if not folder.is_dir():
            return []
        return sorted(
            p.name
            for p in folder.iterdir()
            if p.is_dir()
            and not is_production(p.name)
            and ((p / PLAN_FILE).exists() or (p / "cache").is_symlink())
        )

    def live_generations(self) -> set[Path]:
        """The generations that production and each environment point to."""
        links = [self.env_link(PRODUCTION)]
        links += sorted((self.target / "environments").glob("*/cache"))
        return {link.resolve() for link in links if link.is_symlink()}

    def collect(
        self, keep: Path | None = None, keep_snapshots: Iterable[str] = ()
    ) -> Collected:
        """Delete generations and snapshots that nothing refers to any more.

        Call it holding the write lock: only writers make generations and
        snapshots. A snapshot is kept while the state of a generation that is
        kept refers to it.

        Args:
            keep: a generation to leave for now (one just replaced, which a reader
                may have opened a moment ago).
            keep_snapshots: snapshots (relative to ``target/``) to leave for now,
                such as those a run replaced in its generation.

        Returns:
            How many generations and snapshots were deleted, and the bytes freed.
        """
        live = self.live_generations()
        if keep is not None:
            live.add(keep.resolve())
        collected = Collected()
        folder = self.target / "gens"
        for generation in sorted(folder.iterdir()) if folder.is_dir() else ():
            if generation.resolve() not in live:
                shutil.rmtree(generation, ignore_errors=True)
                collected.generations += 1
        used = {self.target / s for s in keep_snapshots}
        for generation in live:
            used.update(self.target / s for s in _state_snapshots(generation))
        for path in (self.target / "snapshots").rglob("*.parquet"):
            if path not in used:
                collected.freed_bytes += path.stat().st_size
                path.unlink()
                collected.snapshots += 1
        return collected

    def remove_partials(self) -> int:
        """Delete temporary files left by an interrupted write; returns how many."""
        count = 0
        for folder in ("snapshots", "gens"):
            for path in (self.target / folder).rglob(f"*{TEMP_SUFFIX}"):
                path.unlink(missing_ok=True)
                count += 1
        return count

    @contextmanager
    def writing(self, command: str) -> Iterator[None]:
        """Hold the project's write lock, or fail naming the process that holds it."""
        self.target.mkdir(parents=True, exist_ok=True)
        holder = self.target / ".lock.holder"
        lock = FileLock(str(self.target / ".lock"), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise LockedError(
                f"{self.target} is being written by {_describe_holder(holder)}; "
                "wait for it to finish (reading outputs is always allowed)"
            ) from None
        try:
            write_text_atomically(
                holder,
                json.dumps(
                    {"pid": os.getpid(), "command": command, "since": time.time()}
                ),
            )
            yield
        finally:
            holder.unlink(missing_ok=True)
            lock.release()


@dataclass
class Collected:
    """What :meth:`Store.collect` deleted."""

    generations: int = 0
    snapshots: int = 0
    freed_bytes: int = 0


def _state_snapshots(generation: Path) -> list[str]:
    try:
        body = json.loads((generation / "state.json").read_text())
    except (OSError, ValueError):
        return []
    return [entry["snapshot"] for entry in body.get("nodes", {}).values()]


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _describe_holder(holder: Path) -> str:
    try:
        info = json.loads(holder.read_text())
    except (OSError, ValueError):
        return "another process"
    since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
    return f"process {info.get('pid')} ({info.get('command')!r}, since {since})"
