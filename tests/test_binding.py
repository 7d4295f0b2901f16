"""Tests for the schema check: SQL bound against its inputs' columns, in parallel."""

from __future__ import annotations

from pathlib import Path

import pytest

from seeknal_jupyter.binding import check_schemas
from seeknal_jupyter.dag import Dag, build_dag
from seeknal_jupyter.errors import ProjectError
from seeknal_jupyter.execute import sql_body
from seeknal_jupyter.fingerprint import fingerprints
from seeknal_jupyter.loader import load_nodes
from seeknal_jupyter.project import Project

SOURCE = """\
kind: source
name: events
source: csv
table: data/events.csv
schema:
  - {name: id, data_type: integer}
  - {name: amount, data_type: double}
  - {name: total, data_type: bigint}
"""


def transform(name: str, sql: str, inputs: str = "source.events") -> str:
    body = "\n".join(f"  {line}" for line in sql.splitlines())
    return (
        f"---\nkind: transform\nname: {name}\ninputs:\n  - ref: {inputs}\n"
        f"transform: |\n{body}\n"
    )


def project(tmp_path: Path, *transforms: str) -> tuple[Path, Dag, dict[str, str]]:
    (tmp_path / "data").mkdir(parents=True)
    (tmp_path / "data" / "events.csv").write_text("id,amount,total\n1,2.5,3\n")
    (tmp_path / "seeknal").mkdir()
    (tmp_path / "seeknal" / "nodes.yml").write_text(SOURCE + "".join(transforms))
    dag = build_dag(load_nodes(tmp_path).nodes)
    return tmp_path, dag, fingerprints(dag, tmp_path)


WIDE = [
    transform(
        f"t{i}",
        f"SELECT id, amount * {i} AS a{i}, sum(total) AS s FROM events\nGROUP BY ALL",
    )
    for i in range(12)
]


@pytest.mark.parametrize("workers", [1, 4])
def test_columns_are_the_same_whatever_the_number_of_workers(
    tmp_path: Path, workers: int
) -> None:
    """Twelve nodes of one layer read their input by bare name at the same time;
    each cursor's name for it is its own, so every node binds to its columns."""
    root, dag, fps = project(
        tmp_path,
        *WIDE,
        transform(
            "joined",
            "SELECT t0.id, t11.a11 FROM transform.t0\nJOIN transform.t11 USING (id)",
            "transform.t0",
        ),
    )

    found = check_schemas(dag, list(dag.order), None, root, fps, {}, workers)

    assert found[fps["source.events"]] == [
        ["id", "INTEGER"],
        ["amount", "DOUBLE"],
        ["total", "BIGINT"],
    ]
    for i in range(12):
        assert found[fps[f"transform.t{i}"]] == [
            ["id", "INTEGER"],
            [f"a{i}", "DOUBLE"],
            ["s", "HUGEINT"],
        ]
    assert found[fps["transform.joined"]] == [["id", "INTEGER"], ["a11", "DOUBLE"]]


def test_every_problem_is_reported_once_in_topological_order(tmp_path: Path) -> None:
    """Problems found by different threads come back in the project's order, and a
    node reading a broken one is not reported again."""
    root, dag, fps = project(
        tmp_path,
        *WIDE[:3],
        transform("bad_column", "SELECT nope FROM events"),
        transform("bad_syntax", "SELECT id FROM FROM events"),
        transform(
            "reads_bad", "SELECT * FROM transform.bad_column", "transform.bad_column"
        ),
    )

    with pytest.raises(ProjectError) as raised:
        check_schemas(dag, list(dag.order), None, root, fps, {}, workers=4)

    problems = raised.value.problems
    order = list(dag.order)
    assert [p.node for p in problems] == sorted(
        ["transform.bad_column", "transform.bad_syntax"], key=order.index
    )
    assert (
        "nope"
        in problems[[p.node for p in problems].index("transform.bad_column")].message
    )


def test_remembered_columns_are_not_bound_again(tmp_path: Path) -> None:
    """A node whose fingerprint was checked before keeps those columns, and the
    nodes reading it bind against them."""
    root, dag, fps = project(
        tmp_path,
        transform("first", "SELECT id FROM events"),
        transform("second", "SELECT * FROM transform.first", "transform.first"),
    )
    known = {fps["transform.first"]: [["id", "INTEGER"], ["remembered", "VARCHAR"]]}

    found = check_schemas(dag, list(dag.order), None, root, fps, known)

    assert found[fps["transform.second"]] == [
        ["id", "INTEGER"],
        ["remembered", "VARCHAR"],
    ]


def test_trailing_semicolons_and_comments_are_not_part_of_the_sql(
    tmp_path: Path,
) -> None:
    """`;` followed by a comment ends the SQL; an error keeps its file line."""
    ends = transform("ends", "SELECT id, amount FROM source.events; -- the end")
    two = transform("two", "SELECT id\nFROM events ;\n;  /* done */\n-- really")
    bad = transform("bad", "SELECT nope\nFROM events;\n-- the end\n-- more")
    root, dag, fps = project(tmp_path / "good", ends, two)
    _, bad_dag, bad_fps = project(tmp_path / "bad", ends, two, bad)

    found = check_schemas(dag, list(dag.order), None, root, fps, {})
    with pytest.raises(ProjectError) as raised:
        check_schemas(bad_dag, list(bad_dag.order), None, root, bad_fps, {})

    assert found[fps["transform.ends"]] == [["id", "INTEGER"], ["amount", "DOUBLE"]]
    assert found[fps["transform.two"]] == [["id", "INTEGER"]]
    (problem,) = raised.value.problems
    assert (problem.node, problem.file, problem.line) == (
        "transform.bad",
        "seeknal/nodes.yml",
        32,
    )
    assert problem.message.startswith('Binder Error: Referenced column "nope" not')


@pytest.mark.parametrize(
    ("sql", "body"),
    [
        ("SELECT 1; -- the end", "SELECT 1"),
        ("\n\n  SELECT 'a;' AS s ;\n; /* c */\n", "SELECT 'a;' AS s"),
        ("SELECT $$x;$$ AS d -- no semicolon", "SELECT $$x;$$ AS d"),
        ("SELECT 1\n-- a\nFROM t -- b\n;", "SELECT 1\n-- a\nFROM t"),
        ("SELECT 'open;", "SELECT 'open"),
    ],
)
def test_sql_body_keeps_the_sql_up_to_its_last_token(sql: str, body: str) -> None:
    assert sql_body(sql) == body


def test_a_declared_column_matches_the_files_in_any_case(tmp_path: Path) -> None:
    """DuckDB matches names in any case, so the schema check does too."""
    (tmp_path / "seeknal").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "events.csv").write_text("id,amount,total\n1,2.5,3\n")
    (tmp_path / "seeknal" / "nodes.yml").write_text(
        SOURCE.replace("{name: id,", "{name: ID,")
    )
    dag = build_dag(load_nodes(tmp_path).nodes)
    fps = fingerprints(dag, tmp_path)

    found = check_schemas(dag, list(dag.order), None, tmp_path, fps, {})

    assert found[fps["source.events"]] == [
        ["ID", "INTEGER"],
        ["amount", "DOUBLE"],
        ["total", "BIGINT"],
    ]


def test_reader_options_are_checked_against_duckdbs_readers(tmp_path: Path) -> None:
    """Option names are those of DuckDB's read_csv / read_parquet / read_json_auto
    (in any case); an unknown one is reported at its own line, with the closest,
    even when the data file is not there yet."""
    text = """\
kind: source
name: a
source: csv
table: data/events.csv
params:
  HEADER: true
  delimter: ";"
  quote: '"'
---
kind: source
name: b
source: parquet
table: data/b.parquet
params: {binary_as_string: true, hive_partitioning: false, zzzz: 1}
---
kind: source
name: c
source: json
table: data/c.json
params:
  format: newline_delimited
  recrods: auto
---
kind: source
name: d
source: csv
table: data/events.csv
params: {delim: ",", Header: true, sep: ","}
"""
    (tmp_path / "seeknal").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "events.csv").write_text("id,amount,total\n1,2.5,3\n")
    (tmp_path / "seeknal" / "nodes.yml").write_text(text)
    dag = build_dag(load_nodes(tmp_path).nodes)
    fps = fingerprints(dag, tmp_path)

    with pytest.raises(ProjectError) as raised:
        check_schemas(dag, list(dag.order), None, tmp_path, fps, {})

    assert [str(p) for p in raised.value.problems] == [
        (
            "seeknal/nodes.yml:7: source.a: unknown option 'delimter' of read_csv "
            "(the csv reader) (did you mean 'delimiter'?)"
        ),
        (
            "seeknal/nodes.yml:14: source.b: unknown option 'zzzz' of read_parquet "
            "(the parquet reader) (use one of the named parameters of DuckDB's "
            "read_parquet)"
        ),
        (
            "seeknal/nodes.yml:22: source.c: unknown option 'recrods' of "
            "read_json_auto (the json reader) (did you mean 'records'?)"
        ),
    ]


def test_plan_reports_an_unknown_reader_option_before_the_data_is_read(
    tmp_path: Path,
) -> None:
    root, _, _ = project(tmp_path)
    nodes = root / "seeknal" / "nodes.yml"
    nodes.write_text(nodes.read_text() + 'params: {delimter: ";"}\n')

    with pytest.raises(ProjectError) as raised:
        Project(root).plan()

    assert str(raised.value).splitlines()[1:] == [
        (
            "  seeknal/nodes.yml:9: source.events: unknown option 'delimter' of "
            "read_csv (the csv reader) (did you mean 'delimiter'?)"
        )
    ]
