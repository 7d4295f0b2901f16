"""Where outputs live: immutable Parquet snapshots, per-environment state and links.

Layout under ``target/``:

- ``snapshots/<kind>/<name>/<fingerprint>[-<suffix>].parquet``: each output, written
  once, atomically, and never changed nor replaced (a rebuild of a fingerprint that
  already has a snapshot gets a new file); deleted once no generation refers to it;
  an exposure's file (Parquet or CSV) is written beside its snapshot, as
  ``<fingerprint>[-<suffix>].export.<format>``;
- ``gens/<env>-<stamp>/``: one generation of an environment: ``state.json`` (which
  snapshot each node has, with its size, rows, columns and the definition that made
  it), ``<kind>/<name>.parquet`` hard links to those snapshots and
  ``exports/<place>`` hard links to the exposure files (see
  :mod:`seeknal_jupyter.exposures`). The current generation gets a link only once
  its ``state.json`` records the entry (a new one is linked before it is current);
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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from seeknal_jupyter.errors import LockedError
from seeknal_jupyter.report import plural

log = logging.getLogger(__name__)

PRODUCTION = "prod"
PRODUCTION_NAMES = (PRODUCTION, "production")
TEMP_SUFFIX = ".partial"
ACCESSED_FILE = "accessed"
PLAN_FILE = "plan.json"
STATE_FILE = "state.json"


def is_production(env: str) -> bool:
    """Whether ``env`` names production (``prod`` or ``production``, in any case)."""
    return env.lower() in PRODUCTION_NAMES


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


@dataclass(frozen=True)
class ExportFile:
    """An exposure's file: where it is kept, its size, and where it is shown.

    ``file`` is relative to ``target/``; ``path`` is the exposure's ``params.path``
    as written; ``place`` is its path under a generation's ``exports/`` folder.
    """

    file: str
    size: int
    path: str
    place: str


EXPORT_FIELDS = tuple(f.name for f in fields(ExportFile))


@dataclass
class Entry:
    """What an environment holds for one node; ``size`` is the snapshot's bytes."""

    fingerprint: str
    snapshot: str
    rows: int
    columns: list[list[str]]
    seconds: float
    finished_at: float
    node: dict[str, Any] = field(default_factory=dict)
    size: int = 0
    export: ExportFile | None = None

    def to_json(self) -> dict[str, Any]:
        """The entry as the state file holds it (values shared, not copied: the
        state is written while runs go on, so this stays cheap)."""
        body = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.export is not None:
            body["export"] = asdict(self.export)
        return body

    def files(self) -> list[str]:
        """The files under ``target/`` it refers to: its snapshot, its export."""
        if self.export is None:
            return [self.snapshot]
        return [self.snapshot, self.export.file]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Entry:
        """An entry as :meth:`to_json` wrote it; fields it does not know are left
        out (an entry without a recorded size or export file is then rebuilt)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in body.items() if k in known}
        export = values.get("export")
        values["export"] = (
            ExportFile(**export)
            if isinstance(export, dict) and set(export) == set(EXPORT_FIELDS)
            else None
        )
        return cls(**values)


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
        entries = {k: Entry.from_json(v) for k, v in body.get("nodes", {}).items()}
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
        if generation is None or not (generation / STATE_FILE).exists():
            return State(env)
        return State.from_json((generation / STATE_FILE).read_text())

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
        write_text_atomically(folder / STATE_FILE, State(env).to_json())
        self.point(env, folder)
        return folder

    def point(self, env: str, generation: Path) -> None:
        """Atomically make ``generation`` the environment's current one."""
        link = self.env_link(env)
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")
        os.symlink(os.path.relpath(generation, link.parent), tmp)
        replace_atomically(tmp, link)

    def publish(self, generation: Path, node_id: str, entry: Entry) -> None:
        """Link an entry's files into ``generation``, each atomically.

        The snapshot goes to ``<kind>/<name>.parquet``, an exposure's file to
        ``exports/<place>``. Call it once ``state.json`` records the entry.
        """
        kind, name = node_id.split(".", 1)
        _link(self.target / entry.snapshot, generation / kind / f"{name}.parquet")
        if entry.export is not None:
            _link(
                self.target / entry.export.file,
                generation / "exports" / entry.export.place,
            )

    def sync(self, generation: Path, state: State) -> None:
        """Make the links of ``generation`` those of ``state``, and no others.

        A writer calls it first: a process killed after saving a state but
        before linking its entries left links behind it. An entry whose files
        are missing or damaged keeps what its links show (it is rebuilt).
        """
        expected = {generation / STATE_FILE}
        for node_id, entry in state.entries.items():
            if self.file_problem(entry) is None:
                self.publish(generation, node_id, entry)
            kind, name = node_id.split(".", 1)
            expected.add(generation / kind / f"{name}.parquet")
            if entry.export is not None:
                expected.add(generation / "exports" / entry.export.place)
        for folder, _, names in os.walk(generation):
            for name in names:
                path = Path(folder) / name
                if path not in expected:
                    path.unlink()

    def file_problem(self, entry: Entry) -> str | None:
        """Why an entry's files are not those it records, or None when they are.

        Sizes are compared, so a file that is missing, truncated or written over
        by another tool counts as not built.
        """
        files = [(entry.snapshot, entry.size)]
        if entry.export is not None:
            files.append((entry.export.file, entry.export.size))
        for file, size in files:
            try:
                found = (self.target / file).stat().st_size
            except OSError:
                return f"its file target/{file} is missing"
            if found != size:
                return (
                    f"its file target/{file} has {plural(found, 'byte')}, "
                    f"{size:,} were written"
                )
        return None

    def save_state(self, generation: Path, state: State) -> None:
        write_text_atomically(generation / STATE_FILE, state.to_json())

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
            keep_snapshots: snapshot files (relative to ``target/``) to leave for
                now, such as those a run replaced in its generation.

        Returns:
            How many generations were deleted, and which snapshot files.
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
            used.update(self.target / s for s in _state_files(generation))
        for folder_name, _, names in os.walk(self.target / "snapshots"):
            for name in names:
                path = Path(folder_name) / name
                if path not in used and not name.endswith(TEMP_SUFFIX):
                    collected.files[path.relative_to(self.target).as_posix()] = (
                        path.stat().st_size
                    )
                    path.unlink()
        if collected.generations or collected.files:
            log.info(
                "deleted %s and %s that nothing refers to any more",
                plural(collected.generations, "generation"),
                plural(len(collected.files), "snapshot file"),
            )
        return collected

    def remove_partials(self) -> int:
        """Delete what an interrupted write left under ``target/``; returns how many.

        Temporary files, links and folders all end in ``.partial``; a writer
        calls this holding the lock, so none of them is still being written.
        """
        count = 0
        for folder, dirs, names in os.walk(self.target):
            for name in [*names, *dirs]:
                if name.endswith(TEMP_SUFFIX):
                    remove_path(Path(folder) / name)
                    count += 1
            dirs[:] = [d for d in dirs if not d.endswith(TEMP_SUFFIX)]
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
    """What :meth:`Store.collect` deleted: generations, and files with their sizes."""

    generations: int = 0
    files: dict[str, int] = field(default_factory=dict)


def _state_files(generation: Path) -> list[str]:
    """The snapshot and exposure files a generation's state refers to."""
    try:
        state = State.from_json((generation / STATE_FILE).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [f for entry in state.entries.values() for f in entry.files()]


def remove_path(path: Path) -> None:
    """Delete a file, a link or a whole folder (a link is never followed)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _link(existing: Path, final: Path) -> None:
    """Make ``final`` another name of ``existing`` (a copy where links fail)."""
    if _same_file(final, existing):
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(final)
    try:
        os.link(existing, tmp)
    except OSError:
        shutil.copyfile(existing, tmp)
    os.replace(tmp, final)


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
