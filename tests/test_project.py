"""Tests of the Project API: plan manifest, incremental runs, selection, readers,
feature groups, exposures and the project lock, on real files and DuckDB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import pytest

from seeknal_jupyter import environments
from seeknal_jupyter.errors import LockedError, ProjectError, RunFailed, UsageError
from seeknal_jupyter.fingerprint import fingerprints
from seeknal_jupyter.project import Project

NUMBERS = "n,label\n1,one\n2,two\n3,three\n"
SOURCE = """\
kind: source
name: numbers
tags: [raw]
source: csv
table: data/numbers.csv
schema:
  - {name: n, data_type: integer}
  - {name: label, data_type: string}
"""
CHAIN = """\
kind: transform
name: doubled
inputs: [{ref: source.numbers}]
transform: SELECT n, n * 2 AS n2 FROM numbers
---
kind: transform
name: total
tags: [daily]
inputs: [{ref: transform.doubled}]
transform: SELECT SUM(n2) AS total FROM doubled
---
kind: source
name: other
source: csv
table: data/other.csv
---
kind: transform
name: other_count
tags: [daily]
transform: SELECT COUNT(*) AS c FROM source.other
"""


def write_project(
    root: Path, *documents: str, data: dict[str, str] | None = None
) -> Path:
    (root / "seeknal").mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    files = {"numbers.csv": NUMBERS, "other.csv": "x\n1\n2\n"} | (data or {})
    for name, text in files.items():
        (root / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "data" / name).write_text(text)
    (root / "seeknal" / "nodes.yml").write_text("---\n".join(documents))
    return root


def edit(root: Path, old: str, new: str) -> None:
    path = root / "seeknal" / "nodes.yml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def output(project: Project, node: str) -> list[tuple[Any, ...]]:
    with duckdb.connect() as conn:
        path = project.output_path(node)
        return conn.execute(
            f"SELECT * FROM read_parquet('{path}') ORDER BY ALL"
        ).fetchall()


def parquet_columns(path: Path) -> list[tuple[str, str]]:
    with duckdb.connect() as conn:
        rows = conn.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')")
        return [(r[0], r[1]) for r in rows.fetchall()]


def ran(result: Any) -> set[str]:
    return {n for n, s in result.statuses().items() if s == "success"}


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    return write_project(tmp_path, SOURCE, CHAIN)


def test_plan_writes_the_manifest(chain: Path) -> None:
    project = Project(chain)

    manifest = project.plan()

    written = json.loads((chain / "target" / "manifest.json").read_text())
    assert written["project"] == chain.name
    assert list(written["nodes"]) == list(manifest.dag.order)
    assert sorted(map(tuple, written["edges"])) == [
        ("source.numbers", "transform.doubled"),
        ("source.other", "transform.other_count"),
        ("transform.doubled", "transform.total"),
    ]
    assert written["layers"] == {
        "1": ["source.numbers", "source.other"],
        "2": ["transform.doubled", "transform.other_count"],
        "3": ["transform.total"],
    }
    expected = fingerprints(project.dag(), chain)
    assert {n: v["fingerprint"] for n, v in written["nodes"].items()} == expected
    total = written["nodes"]["transform.total"]
    assert total["inputs"] == ["transform.doubled"]
    assert (total["layer"], total["file"], total["tags"]) == (
        3,
        "seeknal/nodes.yml",
        ["daily"],
    )
    assert str(manifest).splitlines()[:3] == [
        f"Project {chain.name} ({chain.resolve()})",
        f"Manifest: {chain.resolve() / 'target' / 'manifest.json'}",
        "Nodes: 5  Edges: 3  Layers: 3",
    ]
    assert not (chain / "target" / "snapshots").exists()


def test_plan_binds_sql_and_rejects_an_unknown_column(chain: Path) -> None:
    edit(chain, "SUM(n2) AS total", "SUM(n3) AS total")

    with pytest.raises(ProjectError) as failure:
        Project(chain).plan()

    problem = failure.value.problems[0]
    assert len(failure.value.problems) == 1
    assert (problem.file, problem.node) == ("seeknal/nodes.yml", "transform.total")
    assert problem.line == 19
    assert 'Referenced column "n3" not found' in problem.message
    assert not (chain / "target" / "manifest.json").exists()


def test_plan_remembers_checked_schemas_and_rechecks_what_changed(
    chain: Path,
) -> None:
    manifest = Project(chain).plan()
    cache = json.loads((chain / "target" / "schemas.json").read_text())
    assert len(cache["columns"]) == 5
    doubled = manifest.fingerprints["transform.doubled"]
    assert cache["columns"][doubled] == [["n", "INTEGER"], ["n2", "INTEGER"]]

    edit(chain, "SUM(n2) AS total", "SUM(n3) AS total")

    with pytest.raises(ProjectError, match='column "n3" not found'):
        Project(chain).plan()


def test_second_run_is_all_cached(chain: Path) -> None:
    project = Project(chain)
    assert ran(project.run()) == set(project.dag().order)

    again = project.run(parallel=True)

    assert set(again.statuses().values()) == {"cached"}
    assert again.nodes["transform.total"].rows == 1
    assert output(project, "total") == [(12,)]


def test_touching_a_data_file_reruns_it_and_its_downstream_only(chain: Path) -> None:
    project = Project(chain)
    project.run()
    data = chain / "data" / "numbers.csv"
    stat = data.stat()
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))

    result = project.run()

    assert ran(result) == {"source.numbers", "transform.doubled", "transform.total"}
    assert result.count("cached") == 2


def test_changed_data_is_picked_up(chain: Path) -> None:
    project = Project(chain)
    project.run()
    (chain / "data" / "numbers.csv").write_text(NUMBERS + "10,ten\n")

    project.run()

    assert output(project, "total") == [(32,)]


def test_formatting_comment_and_metadata_edits_do_not_rerun(chain: Path) -> None:
    project = Project(chain)
    project.run()
    edit(
        chain,
        "transform: SELECT SUM(n2) AS total FROM doubled",
        "description: the sum\nowner: me\ntransform: |\n  -- add them up\n"
        "  select   sum(n2)   as total\n  /* all rows */\n  from doubled\n",
    )
    edit(chain, "tags: [raw]", "tags: [raw, renamed]")

    result = project.run()

    assert set(result.statuses().values()) == {"cached"}


def test_a_cached_run_records_metadata_edits_in_production(chain: Path) -> None:
    """A metadata edit reruns nothing, but production's record takes it: the
    next plan of an environment finds no change (not METADATA again and again)."""
    project = Project(chain)
    project.run()
    edit(chain, "tags: [raw]", "tags: [raw, renamed]")
    assert environments.plan(project, "before").counts()["METADATA"] == 1

    result = project.run()

    assert set(result.statuses().values()) == {"cached"}
    entry = project.store.load_state("prod").entries["source.numbers"]
    assert entry.node["spec"]["tags"] == ["raw", "renamed"]
    plan = environments.plan(project, "after")
    assert set(plan.classes().values()) == {"UNCHANGED"}


def test_full_reruns_everything(chain: Path) -> None:
    project = Project(chain)
    project.run()

    result = project.run(full=True, max_workers=3)

    assert ran(result) == set(project.dag().order)
    assert result.mode == "full"


def test_a_deleted_output_is_rebuilt(chain: Path) -> None:
    project = Project(chain)
    project.run()
    project.output_path("doubled").unlink()

    result = project.run()

    assert ran(result) == {"transform.doubled"}
    assert output(project, "doubled") == [(1, 2), (2, 4), (3, 6)]


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        ({"nodes": ["doubled"]}, {"transform.doubled"}),
        ({"nodes": ["transform.doubled"]}, {"transform.doubled"}),
        (
            {"nodes": ["+doubled"]},
            {"source.numbers", "transform.doubled"},
        ),
        ({"nodes": ["doubled+"]}, {"transform.doubled", "transform.total"}),
        (
            {"nodes": ["+total", "other"]},
            {"source.numbers", "transform.doubled", "transform.total", "source.other"},
        ),
        ({"tags": ["daily"]}, {"transform.total", "transform.other_count"}),
        ({"types": ["source"]}, {"source.numbers", "source.other"}),
        (
            {"tags": ["raw"], "types": ["transform"]},
            {
                "source.numbers",
                "transform.doubled",
                "transform.total",
                "transform.other_count",
            },
        ),
    ],
)
def test_selection(chain: Path, selection: dict[str, Any], expected: set[str]) -> None:
    project = Project(chain)
    project.run()

    result = project.run(full=True, **selection)

    assert set(result.nodes) == expected
    assert ran(result) == expected


def test_selecting_a_node_whose_input_never_ran_is_a_usage_error(chain: Path) -> None:
    with pytest.raises(
        UsageError, match="input transform.doubled .* has no output yet"
    ):
        Project(chain).run(nodes=["total"])
    with pytest.raises(UsageError, match="no node named 'nope'"):
        Project(chain).run(nodes=["nope"])


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        (
            {"types": ["trasform"]},
            "no node has kind 'trasform'; did you mean 'transform'?",
        ),
        ({"tags": ["dialy"]}, "no node has tag 'dialy'; did you mean 'daily'?"),
        ({"tags": ["zzz"]}, "no node has tag 'zzz'; known tags: daily, raw"),
    ],
)
def test_a_tag_or_kind_that_selects_nothing_is_a_usage_error(
    chain: Path, selection: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError) as error:
        Project(chain).run(**selection)

    assert str(error.value) == message
    assert not (chain / "target").exists()


def test_execution_plan_runs_nothing(chain: Path) -> None:
    project = Project(chain)

    plan = project.execution_plan(parallel=True, max_workers=2)

    text = str(plan)
    assert text.splitlines()[0] == (
        "Dry run (incremental, 2 workers): 5 to run, 0 cached; nothing was run"
    )
    assert "Layer 1: 2 to run, 0 cached" in text
    assert "  run     transform.total: no output yet" in text
    assert str(plan.layout()).splitlines() == [
        "Execution plan (incremental, 2 workers): 5 nodes in 3 layers",
        "Layer 1: 2 nodes (no inputs)",
        "  source.numbers",
        "  source.other",
        "Layer 2: 2 nodes (after layer 1)",
        "  transform.doubled <- source.numbers",
        "  transform.other_count <- source.other",
        "Layer 3: 1 node (after layer 2)",
        "  transform.total <- transform.doubled",
    ]
    assert not (chain / "target" / "snapshots").exists()
    project.run(nodes=["+doubled"])
    edit(chain, "SUM(n2) AS total", "SUM(n2) + 1 AS total")
    plan = project.execution_plan()
    assert "  cached  transform.doubled" in str(plan)
    assert "3 to run, 2 cached" in str(plan)
    assert plan.reasons == {
        "source.other": "no output yet",
        "transform.other_count": "no output yet",
        "transform.total": "no output yet",
    }
    assert ran(project.run()) == {
        "transform.total",
        "source.other",
        "transform.other_count",
    }
    edit(chain, "n * 2 AS n2", "n * 3 AS n2")
    assert project.execution_plan().reasons == {
        "transform.doubled": "definition changed (expression of column n2 changed)",
        "transform.total": "input transform.doubled re-runs",
    }


def test_execution_plan_refuses_an_unbuilt_input_as_the_run_does(
    chain: Path,
) -> None:
    project = Project(chain)
    message = (
        "input transform.doubled (seeknal/nodes.yml:10) has no output yet; run it "
        "first or select it too (+name selects a node with its upstream)"
    )

    with pytest.raises(UsageError) as planned:
        project.execution_plan(nodes=["total"])
    with pytest.raises(UsageError) as ran_it:
        project.run(nodes=["total"])

    assert str(planned.value) == str(ran_it.value) == message
    project.run(nodes=["+doubled"])
    assert project.execution_plan(nodes=["total"]).to_run == ["transform.total"]


FEATURE_GROUP = """\
kind: source
name: events
source: csv
table: data/events.csv
---
kind: feature_group
name: user_features
inputs: [{ref: source.events}]
entity: {name: user, join_keys: [user_id]}
materialization: {event_time_col: ts}
transform: |
  SELECT amount * 2 AS amount2, note, ts, user_id,
         COUNT(*) OVER (PARTITION BY user_id) AS events
  FROM events
features:
  events: {dtype: integer}
  amount2: {dtype: double}
  big: {dtype: boolean}
"""


def test_feature_group_output_follows_its_contract(tmp_path: Path) -> None:
    events = "user_id,ts,amount,note\n1,2024-01-01 10:00:00,5,a\n1,2024-01-02,7,b\n"
    events += "2,2024-01-03,1,c\n"
    group = FEATURE_GROUP.replace("COUNT(*) OVER", "amount > 4 AS big, COUNT(*) OVER")
    root = write_project(tmp_path, group, data={"events.csv": events})
    project = Project(root)

    project.run()

    assert parquet_columns(project.output_path("user_features")) == [
        ("user_id", "BIGINT"),
        ("ts", "TIMESTAMP"),
        ("events", "INTEGER"),
        ("amount2", "DOUBLE"),
        ("big", "BOOLEAN"),
    ]
    rows = output(project, "user_features")
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        (1, 2, 10.0, True),
        (1, 2, 14.0, True),
        (2, 1, 2.0, False),
    ]


def test_feature_group_with_one_input_and_no_transform(tmp_path: Path) -> None:
    group = (
        "kind: feature_group\nname: labels\ninputs: [{ref: source.numbers}]\n"
        "entity: {name: number, join_keys: [n]}\nfeatures: {label: {dtype: string}}\n"
    )
    project = Project(write_project(tmp_path, SOURCE, group))

    project.run()

    assert output(project, "labels") == [(1, "one"), (2, "two"), (3, "three")]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_file_exposure_is_written_to_its_path(tmp_path: Path, fmt: str) -> None:
    exposure = (
        f"kind: exposure\nname: export\ntype: file\n"
        f"params: {{path: exports/deep/numbers.{fmt}, format: {fmt}}}\n"
        "inputs: [{ref: source.numbers}]\n"
    )
    project = Project(write_project(tmp_path, SOURCE, exposure))

    project.run()

    written = tmp_path / "exports" / "deep" / f"numbers.{fmt}"
    reader = "read_parquet" if fmt == "parquet" else "read_csv"
    with duckdb.connect() as conn:
        rows = conn.execute(f"SELECT * FROM {reader}('{written}') ORDER BY n")
        assert rows.fetchall() == [(1, "one"), (2, "two"), (3, "three")]
    assert output(project, "export") == [(1, "one"), (2, "two"), (3, "three")]
    assert not list(written.parent.glob(".*"))
    assert written.is_symlink()
    kept = project.target / "cache/exports/exports/deep" / f"numbers.{fmt}"
    assert os.path.samefile(written, kept)
    written.unlink()
    assert ran(project.run()) == set()  # the link is made again, nothing re-runs
    assert os.path.samefile(written, kept)


def test_bare_names_and_ambiguous_names(tmp_path: Path) -> None:
    same_name = (
        "kind: transform\nname: numbers\ninputs: [{ref: source.numbers}]\n"
        "transform: SELECT n + 100 AS n FROM source.numbers\n"
    )
    paired = (
        "kind: transform\nname: paired\n"
        "inputs: [{ref: source.numbers}, {ref: transform.numbers}]\n"
        "transform: |\n  SELECT s.n AS a, t.n AS b FROM source.numbers AS s\n"
        "  JOIN transform.numbers AS t ON t.n = s.n + 100\n"
    )
    bare = (
        "kind: transform\nname: bare\ninputs: [{ref: paired}]\n"
        "transform: SELECT a + b AS c FROM paired\n"
    )
    project = Project(write_project(tmp_path, SOURCE, same_name, paired, bare))

    project.run()

    assert output(project, "paired") == [(1, 101), (2, 102), (3, 103)]
    assert output(project, "bare") == [(102,), (104,), (106,)]
    assert project.dag().nodes["transform.bare"].inputs == ("transform.paired",)


def test_csv_parquet_json_and_glob_sources(tmp_path: Path) -> None:
    with duckdb.connect() as conn:
        (tmp_path / "data").mkdir()
        conn.execute(
            "COPY (SELECT range AS id, range * 1.5 AS score FROM range(4)) "
            f"TO '{tmp_path / 'data' / 'scores.parquet'}'"
        )
    sources = textwrap.dedent("""\
        kind: source
        name: semicolons
        source: csv
        table: data/semicolons.csv
        params: {delimiter: ";", header: true}
        ---
        kind: source
        name: scores
        source: parquet
        table: data/scores.parquet
        ---
        kind: source
        name: records
        source: json
        table: data/records.json
        ---
        kind: source
        name: lines
        source: json
        table: data/lines.ndjson
        ---
        kind: source
        name: parts
        source: csv
        table: data/parts/*.csv
        schema:
          - {name: id, data_type: bigint}
          - {name: price, data_type: "decimal(10,2)"}
        """)
    data = {
        "semicolons.csv": "a;b\n1;x,y\n2;z\n",
        "records.json": '[{"k": 1, "s": "a"}, {"k": 2, "s": "b"}]',
        "lines.ndjson": '{"k": 3, "s": "c"}\n{"k": 4, "s": "d"}\n',
        "parts/p1.csv": "id,price\n1,9.99\n",
        "parts/p2.csv": "id,price\n2,0.5\n",
    }
    project = Project(write_project(tmp_path, sources, data=data))

    project.run(parallel=True)

    assert output(project, "semicolons") == [(1, "x,y"), (2, "z")]
    assert output(project, "scores") == [(0, 0.0), (1, 1.5), (2, 3.0), (3, 4.5)]
    assert output(project, "records") == [(1, "a"), (2, "b")]
    assert output(project, "lines") == [(3, "c"), (4, "d")]
    assert parquet_columns(project.output_path("parts")) == [
        ("id", "BIGINT"),
        ("price", "DECIMAL(10,2)"),
    ]
    assert [r[0] for r in output(project, "parts")] == [1, 2]

    (tmp_path / "data" / "parts" / "p3.csv").write_text("id,price\n3,1\n")
    result = project.run()

    assert ran(result) == {"source.parts"}
    assert [r[0] for r in output(project, "parts")] == [1, 2, 3]


def test_a_missing_data_file_fails_only_its_node(chain: Path) -> None:
    (chain / "data" / "other.csv").unlink()
    project = Project(chain)

    with pytest.raises(RunFailed) as failure:
        project.run()

    result = failure.value.result
    assert result.statuses()["source.other"] == "failed"
    assert "data file data/other.csv not found" in str(
        result.nodes["source.other"].error
    )
    assert result.statuses()["transform.other_count"] == "skipped"
    assert result.statuses()["transform.total"] == "success"


HOLD_LOCK = """
import sys, time
from pathlib import Path
from seeknal_jupyter.store import Store
with Store(Path(sys.argv[1])).writing("test holder"):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_a_second_process_is_refused_with_the_holder_named(chain: Path) -> None:
    project = Project(chain)
    project.run()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(chain / "target")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"

        with pytest.raises(LockedError) as error:
            project.run(full=True)
        with pytest.raises(LockedError):
            project.plan()

        message = str(error.value)
        assert f"process {holder.pid} ('test holder', since " in message
        assert "reading outputs is always allowed" in message
        assert output(project, "total") == [(12,)]
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
    assert set(project.run().statuses().values()) == {"cached"}


def test_headerless_csv_takes_its_column_names_from_the_schema(tmp_path: Path) -> None:
    source = textwrap.dedent("""\
        kind: source
        name: no-header
        source: csv
        table: data/no_header.csv
        params: {delimiter: "|", header: false}
        schema:
          - {name: id, data_type: integer}
          - {name: code, data_type: string}
        """)
    reader = textwrap.dedent("""\
        kind: transform
        name: dashed-reader
        inputs: [{ref: source.no-header}]
        transform: SELECT code, id * 10 AS id10 FROM "no-header"
        """)
    data = {"no_header.csv": "1|x\n2|y\n"}
    project = Project(write_project(tmp_path, source, reader, data=data))

    project.run()

    assert output(project, "no-header") == [(1, "x"), (2, "y")]
    assert parquet_columns(project.output_path("no-header")) == [
        ("id", "INTEGER"),
        ("code", "VARCHAR"),
    ]
    assert output(project, "dashed-reader") == [("x", 10), ("y", 20)]


def test_a_node_run_alone_on_a_stale_input_is_fingerprinted_from_what_it_read(
    chain: Path,
) -> None:
    project = Project(chain)
    project.run()
    edit(chain, "SELECT n, n * 2 AS n2", "SELECT n, n * 200 AS n2")
    behind = (
        "built from the old output of transform.doubled, which is out of date and "
        "not selected (seeknal run --nodes +total refreshes both)"
    )

    planned = project.execution_plan(nodes=["total"])
    alone = project.run(nodes=["total"])
    edit(chain, "SUM(n2) AS total", "SUM(n2) + 1 AS total")
    edited = project.execution_plan(nodes=["total"]).reasons
    changed = project.run(nodes=["total"])
    again = project.run(nodes=["total"])

    assert (planned.to_run, planned.cached) == ([], ["transform.total"])
    assert planned.reasons == {"transform.total": behind}
    assert alone.statuses() == {"transform.total": "cached"}
    assert alone.messages == [f"transform.total: {behind}"]
    assert edited == {
        "transform.total": (
            f"definition changed (expression of column total changed); {behind}"
        )
    }
    assert changed.statuses() == {"transform.total": "success"}
    assert changed.messages == [f"transform.total: {behind}"]
    assert output(project, "total") == [(13,)]
    assert again.statuses() == {"transform.total": "cached"}
    assert ran(project.run(nodes=["doubled"])) == {"transform.doubled"}
    assert project.execution_plan().reasons == {
        "transform.total": "input transform.doubled has a newer output"
    }
    assert ran(project.run()) == {"transform.total"}
    assert output(project, "total") == [(1201,)]
    assert set(project.run().statuses().values()) == {"cached"}
    assert project.run().messages == []


def test_show_refuses_a_negative_limit(chain: Path) -> None:
    project = Project(chain)
    project.run()

    with pytest.raises(UsageError) as error:
        project.show("doubled", limit=-1)

    assert str(error.value) == "limit must be 0 or more, got -1"
    assert len(project.show("doubled", limit=0)) == 0
    assert len(project.show("doubled", limit=2)) == 2


MULTI_LINE = """\
kind: transform
name: wide
description: several lines of SQL
inputs: [{ref: source.numbers}]
transform: |

  SELECT n,
         label,
         n * 2 AS n2,,
  FROM numbers
"""


def one_problem(root: Path) -> Any:
    with pytest.raises(ProjectError) as failure:
        Project(root).plan()
    assert len(failure.value.problems) == 1
    return failure.value.problems[0]


def test_a_syntax_error_points_to_its_line_in_the_file(tmp_path: Path) -> None:
    root = write_project(tmp_path, SOURCE, MULTI_LINE)

    problem = one_problem(root)

    lines = (root / "seeknal" / "nodes.yml").read_text().splitlines()
    assert lines[problem.line - 1] == "         n * 2 AS n2,,"
    assert problem.line == 18
    assert str(problem) == (
        "seeknal/nodes.yml:18: transform.wide: Parser Error: syntax error at or near "
        '"," in: n * 2 AS n2,, (fix the SQL syntax)'
    )


def test_a_syntax_error_at_the_end_names_the_last_line(tmp_path: Path) -> None:
    unfinished = MULTI_LINE.replace(",,", ",").replace(
        "  FROM numbers\n", "  FROM numbers\n  WHERE n >\n"
    )
    root = write_project(tmp_path, SOURCE, unfinished)

    problem = one_problem(root)

    lines = (root / "seeknal" / "nodes.yml").read_text().splitlines()
    assert lines[problem.line - 1] == "  WHERE n >"
    assert (problem.line, problem.hint) == (20, "fix the SQL syntax")
    assert problem.message == "Parser Error: syntax error at the end of the SQL"


def test_an_unknown_column_keeps_duckdbs_candidates(tmp_path: Path) -> None:
    typo = MULTI_LINE.replace("n * 2 AS n2,,", "n * 2 AS n2, lable")
    root = write_project(tmp_path, SOURCE, typo)

    problem = one_problem(root)

    assert problem.line == 18
    assert problem.message == (
        'Binder Error: Referenced column "lable" not found in FROM clause! '
        'Candidate bindings: "label"'
    )
    assert problem.hint == (
        "use a column in scope there; DuckDB's candidates are the closest"
    )


def test_an_unknown_column_in_a_cte_names_the_ctes_columns_only(
    tmp_path: Path,
) -> None:
    """DuckDB's candidates are the CTE's columns; the input's columns, which
    hold the missing one, are not listed as if they were in scope."""
    cte = """\
kind: transform
name: from_cte
transform: |
  WITH picked AS (SELECT n AS k FROM source.numbers)
  SELECT label FROM picked
"""
    root = write_project(tmp_path, SOURCE, cte)

    problem = one_problem(root)

    assert (problem.node, problem.line) == ("transform.from_cte", 14)
    assert problem.message == (
        'Binder Error: Referenced column "label" not found in FROM clause! '
        'Candidate bindings: "k"'
    )
    assert problem.hint == (
        "use a column in scope there; DuckDB's candidates are the closest"
    )


def test_a_column_without_candidates_lists_the_inputs_columns(
    tmp_path: Path,
) -> None:
    bare = "kind: transform\nname: bare\ninputs: [{ref: source.numbers}]\n"
    bare += "transform: SELECT lable\n"
    root = write_project(tmp_path, SOURCE, bare)

    problem = one_problem(root)

    assert problem.message == (
        'Binder Error: Referenced column "lable" was not found because the FROM '
        "clause is missing"
    )
    assert problem.hint == "columns of its inputs: source.numbers: n, label"


def test_an_unknown_table_lists_the_inputs(tmp_path: Path) -> None:
    wrong = MULTI_LINE.replace("  FROM numbers", "  FROM numbrs").replace(",,", ",")
    root = write_project(tmp_path, SOURCE, wrong)

    problem = one_problem(root)

    assert problem.line == 19
    assert problem.message == "Catalog Error: Table with name numbrs does not exist!"
    assert problem.hint == (
        "did you mean 'source.numbers'? the SQL can read its inputs: source.numbers "
        "(as kind.name, or by bare name when unambiguous)"
    )


def test_an_unknown_table_names_no_system_table(tmp_path: Path) -> None:
    """DuckDB suggests a table of its own catalog (pg_enum, duckdb_constraints);
    the node's inputs are what it can read."""
    wrong = MULTI_LINE.replace("  FROM numbers", "  FROM nope").replace(",,", ",")
    root = write_project(tmp_path, SOURCE, wrong)

    problem = one_problem(root)

    assert problem.message == "Catalog Error: Table with name nope does not exist!"
    assert problem.hint == (
        "the SQL can read its inputs: source.numbers (as kind.name, or by bare "
        "name when unambiguous)"
    )


def test_an_unknown_function_keeps_duckdbs_suggestion(tmp_path: Path) -> None:
    wrong = MULTI_LINE.replace("n * 2 AS n2,,", "n * 2 AS n2, lenght(label) AS l")
    root = write_project(tmp_path, SOURCE, wrong)

    problem = one_problem(root)

    assert problem.message.startswith(
        "Catalog Error: Scalar Function with name lenght does not exist! Did you mean"
    )
    assert problem.hint == "check the name of the function or type"


def test_a_missing_feature_points_to_the_features(tmp_path: Path) -> None:
    root = write_project(tmp_path, SOURCE, FEATURE_GROUP.split("---\n")[1])
    (root / "seeknal" / "events.yml").write_text(FEATURE_GROUP.split("---\n")[0])
    (root / "data" / "events.csv").write_text(
        "user_id,amount,note,ts\n1,2.5,a,2024-01-01\n"
    )

    problem = one_problem(root)

    lines = (root / "seeknal" / "nodes.yml").read_text().splitlines()
    assert lines[problem.line - 1] == "features:"
    assert problem.hint == "fix the SQL or the features so they match"
    assert problem.message.startswith("feature or key big not in the SQL output")


def test_show_reads_production_by_either_name_and_refuses_an_unknown_env(
    chain: Path,
) -> None:
    project = Project(chain)
    project.run()

    for env in ("prod", "production"):
        assert project.show("doubled", env=env)["n2"].tolist() == [2, 4, 6]
    with pytest.raises(UsageError) as error:
        project.show("doubled", env="nosuch")
    assert str(error.value) == ("no environment 'nosuch' (environments: none)")
    with pytest.raises(UsageError, match="no environment 'nosuch'"):
        project.output_path("doubled", env="nosuch")


def test_show_warns_when_an_output_is_stale(
    chain: Path, caplog: pytest.LogCaptureFixture
) -> None:
    project = Project(chain)
    project.run()
    edit(chain, "n * 2 AS n2", "CAST('x' || n AS INTEGER) AS n2")

    with pytest.raises(RunFailed) as failure:
        project.run()
    with caplog.at_level("WARNING", logger="seeknal_jupyter"):
        frame = project.show("total")
        fresh = project.show("other_count")

    assert failure.value.result.stale == ["transform.doubled", "transform.total"]
    assert frame["total"].tolist() == [12]
    assert fresh["c"].tolist() == [2]
    assert [r.getMessage() for r in caplog.records] == [
        (
            "transform.total: this output is stale (made from an earlier definition "
            "or data); refresh it with: seeknal run --nodes +total"
        )
    ]


def test_a_subset_run_counts_the_layers_of_its_nodes(chain: Path) -> None:
    result = Project(chain).run(nodes=["numbers", "other"])

    assert (result.layer_count, result.layers) == (1, 3)
    assert ("layers", "1 (of 3)") in result.totals()
    assert result.headline().startswith(
        "Run succeeded: 2 executed, 0 cached of 2 nodes"
    )


def test_schema_needs_no_run_and_gives_the_stored_types(chain: Path) -> None:
    project = Project(chain)

    schema = project.schema("total")

    assert schema.columns == [("total", "BIGINT")]
    assert str(schema).splitlines() == [
        "transform.total (seeknal/nodes.yml:15): 1 column",
        "  total   BIGINT",
    ]
    assert not (chain / "target" / "snapshots").exists()
    project.run()
    assert parquet_columns(project.output_path("total")) == schema.columns


def test_plan_reports_a_declared_column_the_file_lacks_at_its_schema_line(
    tmp_path: Path,
) -> None:
    root = write_project(
        tmp_path, SOURCE.replace("{name: label,", "{name: lable,"), CHAIN
    )

    with pytest.raises(ProjectError) as raised:
        Project(root).plan()

    assert str(raised.value).splitlines()[1:] == [
        (
            "  seeknal/nodes.yml:8: source.numbers: declared column lable not in "
            "data/numbers.csv; the file has: n, label (fix the column's name in "
            "'schema', or read a file that has it)"
        )
    ]
    assert not (root / "target" / "manifest.json").exists()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (None, "data file data/numbers.csv not found (relative to {root})"),
        ("", "data file data/numbers.csv is empty (0 bytes, no header row)"),
    ],
)
def test_a_missing_or_empty_data_file_is_left_for_the_run(
    tmp_path: Path, data: str | None, error: str
) -> None:
    root = write_project(tmp_path, SOURCE, CHAIN)
    numbers = root / "data" / "numbers.csv"
    if data is None:
        numbers.unlink()
    else:
        numbers.write_text(data)
    project = Project(root)

    manifest = project.plan()
    with pytest.raises(RunFailed) as failed:
        project.run()

    assert len(manifest.dag.nodes) == 5
    result = failed.value.result
    assert result.nodes["source.numbers"].error == (
        "source.numbers (seeknal/nodes.yml:1) failed: "
        + error.format(root=root.resolve())
    )
    assert result.statuses()["transform.doubled"] == "skipped"
    assert result.statuses()["transform.other_count"] == "success"
