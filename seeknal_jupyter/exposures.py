"""Exposure files: where each is kept, how it is written, and the links that show it.

An exposure's file is written once, beside its snapshot
(``snapshots/exposure/<name>/<fingerprint>.export.<format>``), and hard-linked into
each generation holding that output at ``exports/<place>``. The place is the
exposure's ``params.path`` relative to the project, without a leading
``target/exports/``; a path outside the project is placed under ``external/``
followed by its absolute path. So the one rename that swaps an environment's
``cache`` link switches its exposure files together with its outputs.

What a user opens are symbolic links that resolve through a ``cache`` link:

- each exposure's ``params.path`` points to ``target/cache/exports/<place>``,
  production's (a relative link inside the project, an absolute one outside);
- an environment's ``target/environments/<env>/exports`` points to its own
  ``cache/exports``.

The ``params.path`` links production made are listed in ``target/exposure_links.json``
(written before a link is made), so one that no exposure has any more is removed by
the next run or promote, even after a crash.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from seeknal_jupyter.errors import Problem
from seeknal_jupyter.sql import quote_literal
from seeknal_jupyter.store import (
    TEMP_SUFFIX,
    ExportFile,
    State,
    Store,
    fsync_file,
    remove_path,
    replace_atomically,
    temp_path_for,
    write_text_atomically,
)
from seeknal_jupyter.yamlfile import Mapping

if TYPE_CHECKING:
    from seeknal_jupyter.loader import Node

log = logging.getLogger(__name__)

LINKS_FILE = "exposure_links.json"
EXPORTS = "exports"


def place(path: str, root: Path) -> str:
    """Where an exposure's file goes under a generation's ``exports/`` folder.

    Args:
        path: the exposure's ``params.path`` (relative to the project, or absolute).
        root: the project folder.

    Returns:
        A relative POSIX path; empty when ``path`` names no file.
    """
    full = Path(os.path.normpath(root / path))
    try:
        parts = full.relative_to(root).parts
    except ValueError:
        return Path("external", *full.relative_to(full.anchor).parts).as_posix()
    if parts[:2] == ("target", EXPORTS):
        parts = parts[2:]
    return Path(*parts).as_posix() if parts else ""


def check_paths(nodes: Iterable[Node], root: Path) -> list[Problem]:
    """Problems with the exposures' ``params.path``, each at the line that sets it.

    A path may not name a file of ``target/`` other than under ``target/exports/``
    (seeknal's own outputs are there), must name a file, and may belong to one
    exposure only.
    """
    problems: list[Problem] = []
    seen: dict[str, Node] = {}
    for node in nodes:
        if node.export is None:
            continue
        path = node.export[0]
        params = node.spec.get("params")
        line = params.line_of("path") if isinstance(params, Mapping) else node.line
        example = f"target/exports/{node.name}.parquet"
        where = place(path, root)
        inside = _project_parts(path, root)
        if inside[:1] == ("target",) and inside[:2] != ("target", EXPORTS):
            problems.append(
                Problem(
                    f"exposure path {path!r} is inside target/, where seeknal keeps "
                    "its outputs",
                    node.file,
                    line,
                    node.id,
                    f"write it under target/exports/ or outside target/, such as "
                    f"{example}",
                )
            )
        elif not where or path.endswith(("/", os.sep)):
            problems.append(
                Problem(
                    f"exposure path {path!r} names no file",
                    node.file,
                    line,
                    node.id,
                    f"give it a file path, such as {example}",
                )
            )
        elif where in seen:
            other = seen[where]
            problems.append(
                Problem(
                    f"exposure path {path!r} is also that of {other.id} "
                    f"({other.location})",
                    node.file,
                    line,
                    node.id,
                    "give each exposure a file of its own",
                )
            )
        else:
            seen[where] = node
    return problems


def _project_parts(path: str, root: Path) -> tuple[str, ...]:
    full = Path(os.path.normpath(root / path))
    try:
        return full.relative_to(root).parts
    except ValueError:
        return ()


def export_file(snapshot: Path, fmt: str) -> Path:
    """The exposure file kept beside ``snapshot`` (``<stem>.export.<fmt>``)."""
    return snapshot.with_name(f"{snapshot.stem}.export.{fmt}")


def write_export(
    conn: duckdb.DuckDBPyConnection, snapshot: Path, path: Path, fmt: str
) -> None:
    """Write an exposure file (``fmt``: parquet or csv) from a snapshot, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        conn.execute(
            f"COPY (SELECT * FROM read_parquet({quote_literal(str(snapshot))})) "
            f"TO {quote_literal(str(tmp))} (FORMAT {'csv' if fmt == 'csv' else 'parquet'})"
        )
        fsync_file(tmp)
        replace_atomically(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_record(store: Store, file: Path, path: str, root: Path) -> ExportFile:
    """What a state entry records of the exposure file a run wrote."""
    return ExportFile(
        file=file.relative_to(store.target).as_posix(),
        size=file.stat().st_size,
        path=path,
        place=place(path, root),
    )


def link_production(store: Store, root: Path, state: State) -> list[str]:
    """Make each exposure's ``params.path`` a link to production's file.

    Cheap, and done by every production run and promote (before a promote's
    commit, so the links already resolve through ``target/cache`` when it swaps).
    A file or a foreign link at ``params.path`` is replaced by the link atomically.

    Args:
        store: the project's store (hold its write lock).
        root: the project folder.
        state: production's state (or the one a promote is about to commit).

    Returns:
        A note for each ``params.path`` that was a file until now, or that could
        not be linked.
    """
    wanted = _wanted_links(store, root, state)
    recorded = _recorded_links(store, root)
    _save_links(store, root, recorded | set(wanted))
    notes = []
    for link, text in sorted(wanted.items()):
        try:
            note = _ensure_link(link, text, root)
        except OSError as error:
            note = f"{_shown(link, root)}: not linked ({error.strerror or error})"
        if note:
            log.warning("%s", note)
            notes.append(note)
    return notes


def unlink_removed(store: Store, root: Path, state: State) -> None:
    """Remove the ``params.path`` links made for exposures ``state`` no longer has.

    Only a link that still points into this project's ``target/`` is removed.
    Call it after the state is committed.
    """
    wanted = set(_wanted_links(store, root, state))
    for link in sorted(_recorded_links(store, root) - wanted):
        _remove_temporaries(link)
        if link.is_symlink() and _points_into(link, store.target):
            link.unlink()
            log.info("removed the exposure link %s", link)
    _save_links(store, root, wanted)


def link_environment(store: Store, env: str) -> None:
    """Make ``target/environments/<env>/exports`` a link to its ``cache/exports``.

    An ``exports`` folder an earlier version wrote there is replaced.
    """
    link = store.env_folder(env) / EXPORTS
    text = f"cache/{EXPORTS}"
    if link.is_symlink() and os.readlink(link) == text:
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_dir() and not link.is_symlink():
        aside = temp_path_for(link)
        link.rename(aside)
        remove_path(aside)
    tmp = temp_path_for(link)
    os.symlink(text, tmp)
    replace_atomically(tmp, link)


def _wanted_links(store: Store, root: Path, state: State) -> dict[Path, str]:
    """Each ``params.path`` of ``state``'s exposures, with the text of its link."""
    wanted = {}
    for entry in state.entries.values():
        if entry.export is None:
            continue
        link = Path(os.path.normpath(root / entry.export.path))
        shown = store.target / "cache" / EXPORTS / entry.export.place
        if _project_parts(entry.export.path, root):
            text = os.path.relpath(shown, os.path.realpath(link.parent))
        else:
            text = str(shown)
        wanted[link] = text
    return wanted


def _ensure_link(link: Path, text: str, root: Path) -> str | None:
    """Make ``link`` a symbolic link reading ``text``; a note if a file was there."""
    _remove_temporaries(link)
    if link.is_symlink() and os.readlink(link) == text:
        return None
    if link.is_dir() and not link.is_symlink():
        return f"{_shown(link, root)}: not linked, a folder is in the way"
    was_file = link.exists() and not link.is_symlink()
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(link)
    os.symlink(text, tmp)
    replace_atomically(tmp, link)
    if not was_file:
        return None
    return (
        f"{_shown(link, root)} was a file; it is now a link to production's "
        "exposure file, so it always shows production's current output"
    )


def _remove_temporaries(link: Path) -> None:
    """Delete temporary links a killed process left beside ``link``."""
    pattern = f".{glob.escape(link.name)}.*{TEMP_SUFFIX}"
    for stale in link.parent.glob(pattern) if link.parent.is_dir() else ():
        stale.unlink(missing_ok=True)


def _points_into(link: Path, folder: Path) -> bool:
    parent = os.path.realpath(link.parent)
    pointed = os.path.normpath(os.path.join(parent, os.readlink(link)))
    return os.path.commonpath([pointed, str(folder)]) == str(folder)


def _recorded_links(store: Store, root: Path) -> set[Path]:
    try:
        listed = json.loads((store.target / LINKS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return {Path(os.path.normpath(root / p)) for p in listed}


def _save_links(store: Store, root: Path, links: set[Path]) -> None:
    if links == _recorded_links(store, root):
        return
    listed = sorted(_shown(link, root) for link in links)
    write_text_atomically(store.target / LINKS_FILE, json.dumps(listed, indent=1))


def _shown(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
