"""Fraud-example edits and output checks that the environment tests share."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from seeknal_jupyter import environments
from seeknal_jupyter.environments import EnvPlan
from seeknal_jupyter.project import Project
from seeknal_jupyter.store import PRODUCTION, Store

FEATURES_FILE = "seeknal/feature_groups/13_feature_group_txn_features.yml"
TXN = "feature_group.txn_features"
TRAINING = "exposure.training_data"
NEW_FEATURE = "  ip_reputation_score:\n    dtype: float\n"
RISK_FEATURE = "  merchant_risk_score:\n    dtype: float\n"
PROD_EXPORT = "target/exports/training_data.parquet"


def edit(project: Project, old: str, new: str, file: str = FEATURES_FILE) -> None:
    path = project.root / file
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not once in {file}"
    path.write_text(text.replace(old, new))


def add_ip_feature(project: Project) -> None:
    path = project.root / FEATURES_FILE
    path.write_text(path.read_text() + NEW_FEATURE)


def remove_risk_feature(project: Project) -> None:
    edit(project, RISK_FEATURE, "")


def production_fingerprints(project: Project) -> dict[str, str]:
    state = project.store.load_state(PRODUCTION)
    return {n: e.fingerprint for n, e in state.entries.items()}


def query(sql: str) -> list[tuple[object, ...]]:
    conn = duckdb.connect()
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def columns(path: Path) -> list[str]:
    return [str(r[0]) for r in query(f"DESCRIBE SELECT * FROM read_parquet('{path}')")]


def count(path: Path) -> int:
    rows = query(f"SELECT count(*) FROM read_parquet('{path}')")[0][0]
    assert isinstance(rows, int)
    return rows


def same_content(a: Path, b: Path) -> bool:
    """Same columns in the same order and the same rows (as multisets)."""
    if columns(a) != columns(b):
        return False
    differing = query(
        f"SELECT (SELECT count(*) FROM (SELECT * FROM read_parquet('{a}') EXCEPT ALL "
        f"SELECT * FROM read_parquet('{b}'))), (SELECT count(*) FROM (SELECT * FROM "
        f"read_parquet('{b}') EXCEPT ALL SELECT * FROM read_parquet('{a}')))"
    )
    return differing == [(0, 0)]


def files(target: Path) -> dict[str, tuple[object, ...]]:
    """Every file and link under ``target`` with its identity (no link followed)."""
    found: dict[str, tuple[object, ...]] = {}
    for folder, dirs, names in os.walk(target):
        for name in names + [d for d in dirs if (Path(folder) / d).is_symlink()]:
            path = Path(folder) / name
            key = path.relative_to(target).as_posix()
            if path.is_symlink():
                found[key] = ("link", os.readlink(path))
            else:
                info = path.stat()
                found[key] = (info.st_ino, info.st_size, info.st_mtime_ns)
    return found


def check_production(project: Project) -> dict[str, str]:
    """Every production output opens with its recorded rows, and each exposure's
    ``params.path`` shows the exposure file production's state records; returns
    fingerprints."""
    store = Store(project.target)
    state = store.load_state(PRODUCTION)
    generation = store.generation(PRODUCTION)
    assert generation is not None and generation.is_dir()
    linked = {
        p.relative_to(generation).as_posix() for p in generation.rglob("*.parquet")
    }
    expected = {f"{n.replace('.', '/', 1)}.parquet" for n in state.entries}
    expected |= {
        f"exports/{e.export.place}" for e in state.entries.values() if e.export
    }
    assert linked == expected
    for node_id, entry in state.entries.items():
        kind, name = node_id.split(".", 1)
        link = project.target / "cache" / kind / f"{name}.parquet"
        assert os.path.samefile(link, project.target / entry.snapshot)
        assert count(link) == entry.rows
        if entry.export is not None:
            shown = project.root / entry.export.path
            assert shown.is_symlink()
            assert os.path.samefile(shown, project.target / entry.export.file)
            assert count(shown) == entry.rows
    return {n: e.fingerprint for n, e in state.entries.items()}


def applied(project: Project, env: str) -> EnvPlan:
    plan = environments.plan(project, env)
    environments.apply(project, env)
    return plan
