"""Tests for exposure files: their place in generations, the ``params.path`` links,
the paths loading refuses, and what interrupted writes leave behind."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import duckdb
import pytest

from seeknal_jupyter import environments, exposures
from seeknal_jupyter.errors import ProjectError
from seeknal_jupyter.project import Project
from seeknal_jupyter.promote import promote
from seeknal_jupyter.store import PRODUCTION

SOURCE = """\
kind: source
name: numbers
source: csv
table: data/numbers.csv
"""
NUMBERS = "n,label\n1,one\n2,two\n3,three\n"


def exposure(path: str, name: str = "numbers_out", sql: str = "n, label") -> str:
    return (
        f"kind: exposure\nname: {name}\ntype: file\n"
        f"params:\n  path: {path}\n  format: parquet\n"
        f"transform: SELECT {sql} FROM source.numbers\n"
    )


def write(root: Path, *documents: str) -> Project:
    (root / "seeknal").mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    (root / "data/numbers.csv").write_text(NUMBERS)
    (root / "seeknal/nodes.yml").write_text("---\n".join([SOURCE, *documents]))
    return Project(root)


def rows(path: Path) -> list[tuple[object, ...]]:
    with duckdb.connect() as conn:
        return conn.execute(
            f"SELECT * FROM read_parquet('{path}') ORDER BY 1"
        ).fetchall()


def recorded_links(project: Project) -> list[str]:
    return list(json.loads((project.target / exposures.LINKS_FILE).read_text()))


@pytest.mark.parametrize(
    ("path", "place"),
    [
        ("target/exports/training_data.parquet", "training_data.parquet"),
        ("target/../target/exports/t.parquet", "t.parquet"),
        ("target/exports/deep/t.csv", "deep/t.csv"),
        ("data/out/t.csv", "data/out/t.csv"),
        ("exports/t.parquet", "exports/t.parquet"),
        ("../../exports/t.parquet", "external/{outside}/exports/t.parquet"),
        ("/srv/shared/t.parquet", "external/srv/shared/t.parquet"),
        ("target/exports", ""),
    ],
)
def test_an_exposure_file_has_one_place_in_every_generation(
    tmp_path: Path, path: str, place: str
) -> None:
    root = tmp_path / "a" / "b" / "project"
    outside = (tmp_path / "a").relative_to("/").as_posix()
    assert exposures.place(path, root) == place.format(outside=outside)


INSIDE = "is inside target/, where seeknal keeps its outputs"
OUTSIDE_HINT = (
    "write it under target/exports/ or outside target/, such as "
    "target/exports/numbers_out.parquet"
)
FILE_HINT = "give it a file path, such as target/exports/numbers_out.parquet"


@pytest.mark.parametrize(
    ("path", "message", "hint"),
    [
        ("target/cache/source/numbers.parquet", INSIDE, OUTSIDE_HINT),
        ("exports/../target/snapshots/x.parquet", INSIDE, OUTSIDE_HINT),
        ("target/exports/", "names no file", FILE_HINT),
    ],
)
def test_loading_refuses_an_exposure_path_among_seeknals_outputs(
    tmp_path: Path, path: str, message: str, hint: str
) -> None:
    project = write(tmp_path, exposure(path))

    with pytest.raises(ProjectError) as raised:
        project.run()

    (problem,) = raised.value.problems
    assert (problem.file, problem.line, problem.node) == (
        "seeknal/nodes.yml",
        10,
        "exposure.numbers_out",
    )
    assert (problem.message, problem.hint) == (
        f"exposure path {path!r} {message}",
        hint,
    )
    assert not (tmp_path / "target/cache").exists()


def test_loading_refuses_two_exposures_writing_one_file(tmp_path: Path) -> None:
    project = write(
        tmp_path,
        exposure("target/exports/n.parquet"),
        exposure("n.parquet", name="again"),
    )

    with pytest.raises(ProjectError) as raised:
        project.load()

    (problem,) = raised.value.problems
    assert str(problem) == (
        "seeknal/nodes.yml:18: exposure.again: exposure path 'n.parquet' is also "
        "that of exposure.numbers_out (seeknal/nodes.yml:6) (give each exposure a "
        "file of its own)"
    )


def test_params_path_is_a_link_through_productions_cache(tmp_path: Path) -> None:
    project = write(tmp_path, exposure("target/exports/n.parquet"))

    project.run()

    shown = tmp_path / "target/exports/n.parquet"
    assert shown.is_symlink()
    assert os.readlink(shown) == "../cache/exports/n.parquet"
    entry = project.store.load_state(PRODUCTION).entries["exposure.numbers_out"]
    assert entry.export is not None
    assert entry.export.file.endswith(".export.parquet")
    assert os.path.samefile(shown, project.target / entry.export.file)
    assert rows(shown) == [(1, "one"), (2, "two"), (3, "three")]
    assert recorded_links(project) == ["target/exports/n.parquet"]


def test_a_file_at_params_path_is_replaced_by_the_link_once(tmp_path: Path) -> None:
    project = write(tmp_path, exposure("target/exports/n.parquet"))
    project.run()
    shown = tmp_path / "target/exports/n.parquet"
    content = shown.read_bytes()
    shown.unlink()
    shown.write_bytes(content)  # as an earlier version wrote it

    first = project.run()

    assert first.count("cached") == 2 and first.executed == 0
    note = (
        "target/exports/n.parquet was a file; it is now a link to production's "
        "exposure file, so it always shows production's current output"
    )
    assert first.messages == [note]
    assert note in str(first)
    assert shown.is_symlink() and rows(shown) == [(1, "one"), (2, "two"), (3, "three")]
    assert not list(shown.parent.glob(".*"))
    assert project.run().messages == []


def test_a_missing_or_foreign_link_is_made_again_without_running(
    tmp_path: Path,
) -> None:
    project = write(tmp_path, exposure("out/n.parquet"))
    project.run()
    shown = tmp_path / "out/n.parquet"
    expected = os.readlink(shown)
    assert expected == "../target/cache/exports/out/n.parquet"

    shown.unlink()
    assert project.run().executed == 0
    assert os.readlink(shown) == expected
    shown.unlink()
    os.symlink("/nowhere", shown)
    assert project.run().executed == 0
    assert os.readlink(shown) == expected


def test_an_exposure_outside_the_project_gets_an_absolute_link(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "shared" / "n.parquet"
    project = write(tmp_path / "project", exposure(str(outside)))

    project.run()

    place = "external/" + outside.relative_to("/").as_posix()
    assert os.readlink(outside) == str(project.target / "cache/exports" / place)
    assert rows(outside) == [(1, "one"), (2, "two"), (3, "three")]


def test_a_changed_path_moves_the_link_and_leaves_other_files_alone(
    tmp_path: Path,
) -> None:
    project = write(
        tmp_path,
        exposure("target/exports/n.parquet"),
        exposure("target/exports/kept.parquet", name="kept"),
    )
    project.run()
    kept = tmp_path / "target/exports/kept.parquet"
    content = kept.read_bytes()
    kept.unlink()
    kept.write_bytes(content)  # the user made it a file of their own...
    nodes = tmp_path / "seeknal/nodes.yml"
    nodes.write_text(
        nodes.read_text()
        .replace("target/exports/n.parquet", "target/exports/v2/n.parquet")
        .replace("target/exports/kept.parquet", "target/exports/v2/kept.parquet")
    )

    result = project.run()

    assert result.count("success") == 2
    assert not os.path.lexists(tmp_path / "target/exports/n.parquet")
    assert kept.read_bytes() == content and not kept.is_symlink()  # ...so it stays
    for name in ("n", "kept"):
        moved = tmp_path / f"target/exports/v2/{name}.parquet"
        assert os.readlink(moved) == f"../../cache/exports/v2/{name}.parquet"
    assert recorded_links(project) == [
        "target/exports/v2/kept.parquet",
        "target/exports/v2/n.parquet",
    ]


def test_promoting_a_removed_exposure_removes_its_link(tmp_path: Path) -> None:
    project = write(tmp_path, exposure("target/exports/n.parquet"))
    project.run()
    (tmp_path / "seeknal/nodes.yml").write_text(SOURCE)
    environments.plan(project, "slim")
    environments.apply(project, "slim")
    assert os.path.lexists(tmp_path / "target/exports/n.parquet")

    promote(project, "slim")

    assert not os.path.lexists(tmp_path / "target/exports/n.parquet")
    assert recorded_links(project) == []


def test_an_environment_sees_its_exposures_through_its_cache(tmp_path: Path) -> None:
    project = write(tmp_path, exposure("target/exports/n.parquet"))
    project.run()
    (tmp_path / "seeknal/nodes.yml").write_text(
        "---\n".join([SOURCE, exposure("target/exports/n.parquet", sql="n * 10")])
    )
    environments.plan(project, "dev")
    folder = tmp_path / "target/environments/dev"
    (folder / "exports").mkdir(parents=True)
    (folder / "exports/old.parquet").write_text("an earlier version's file")

    environments.apply(project, "dev")

    assert os.readlink(folder / "exports") == "cache/exports"
    assert rows(folder / "exports/n.parquet") == [(10,), (20,), (30,)]
    assert rows(tmp_path / "target/exports/n.parquet") == [
        (1, "one"),
        (2, "two"),
        (3, "three"),
    ]
    assert not list(folder.glob(".*partial"))


def test_a_writer_removes_what_a_killed_writer_left_under_target(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "shared" / "n.parquet"
    project = write(tmp_path / "project", exposure(str(outside)))
    project.run()
    target = project.target
    environments.plan(project, "dev")
    left = [
        target / "exports/.x.partial",
        target / ".cache.0123abcd.partial",
        target / "environments/dev/.exports.0123abcd.partial",
        target / "snapshots/source/numbers/.a.parquet.0123abcd.partial",
        outside.with_name(f".{outside.name}.0123abcd.partial"),
    ]
    left[0].parent.mkdir(parents=True, exist_ok=True)
    left[0].write_text("half")
    os.symlink("gens/nowhere", left[1])
    left[2].mkdir()
    (left[2] / "n.parquet").write_text("half")
    left[3].write_text("half")
    os.symlink("/nowhere", left[4])

    assert project.run().executed == 0

    assert not [p for p in left if os.path.lexists(p)]
    assert rows(outside) == [(1, "one"), (2, "two"), (3, "three")]


def test_a_copied_project_keeps_its_links(tmp_path: Path) -> None:
    project = write(tmp_path / "one", exposure("target/exports/n.parquet"))
    project.run()
    shutil.copytree(tmp_path / "one", tmp_path / "two", symlinks=True)
    shutil.rmtree(tmp_path / "one")

    copied = Project(tmp_path / "two")

    assert rows(tmp_path / "two/target/exports/n.parquet")[0] == (1, "one")
    assert copied.run().executed == 0
