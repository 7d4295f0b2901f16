"""Tests of project loading: every validation error names its file, line and a hint."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from seeknal_jupyter.errors import ProjectError
from seeknal_jupyter.examples import init_example
from seeknal_jupyter.loader import LoadResult, load_nodes
from seeknal_jupyter.project import Project

SOURCE = """\
kind: source
name: numbers
source: csv
table: data/numbers.csv
"""


def write_project(root: Path, files: dict[str, str]) -> Path:
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "numbers.csv").write_text("n,label\n1,one\n2,two\n")
    for name, text in files.items():
        path = root / "seeknal" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def load(root: Path, files: dict[str, str]) -> LoadResult:
    return load_nodes(write_project(root, files))


def problems(root: Path, files: dict[str, str]) -> list[str]:
    with pytest.raises(ProjectError) as error:
        load(root, files)
    lines = str(error.value).splitlines()
    assert lines[0].endswith("in the project:")
    return [line.strip() for line in lines[1:]]


def test_yaml_syntax_error(tmp_path: Path) -> None:
    found = problems(tmp_path, {"a.yml": SOURCE + "tags: [raw\ndescription: x\n"})

    assert len(found) == 1
    assert found[0].startswith("seeknal/a.yml:6: invalid YAML: ")
    assert found[0].endswith("(check the indentation and the ':' after each key)")


def test_a_tab_further_in_a_line_is_read_as_yaml_reads_it(tmp_path: Path) -> None:
    text = SOURCE + "owner:\tfraud-team\ndescription: spent\tby card\n"
    text += "tags:\n  - raw\n  -\tdaily\n"

    found = problems(tmp_path, {"a.yml": text})
    loaded = load(tmp_path, {"a.yml": text.replace("-\tdaily", "- daily")})

    assert found == [
        (
            "seeknal/a.yml:9: invalid YAML: found character that cannot start any token "
            "(indent with spaces; YAML does not allow tabs for indentation)"
        )
    ]
    spec = loaded.nodes["source.numbers"].spec
    assert (spec["owner"], spec["description"]) == ("fraud-team", "spent\tby card")
    assert loaded.nodes["source.numbers"].tags == ("raw", "daily")


def test_tab_indentation(tmp_path: Path) -> None:
    found = problems(tmp_path, {"a.yml": "kind: source\nparams:\n\tdelimiter: ';'\n"})

    assert len(found) == 1
    assert found[0].startswith("seeknal/a.yml:3: invalid YAML: found character ")
    assert found[0].endswith(
        "that cannot start any token "
        "(indent with spaces; YAML does not allow tabs for indentation)"
    )


def test_duplicate_key(tmp_path: Path) -> None:
    found = problems(tmp_path, {"a.yml": SOURCE + "table: data/other.csv\n"})

    assert found == [
        (
            "seeknal/a.yml:5: invalid YAML: duplicate key 'table' (first on line 4) "
            "(remove or rename one of the keys)"
        )
    ]


def test_empty_documents_are_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        loaded = load(tmp_path, {"a.yml": "---\n# nothing here\n---\n" + SOURCE})

    assert list(loaded.nodes) == ["source.numbers"]
    assert [str(w) for w in loaded.warnings] == [
        (
            "seeknal/a.yml:1: empty YAML document ignored "
            "(remove the extra '---' or write a node there)"
        )
    ]
    assert "empty YAML document ignored" in caplog.text


@pytest.mark.parametrize(
    ("field", "suggestion"),
    [("trasform", "transform"), ("input", "inputs"), ("descripton", "description")],
)
def test_unknown_field_suggests_the_closest(
    tmp_path: Path, field: str, suggestion: str
) -> None:
    text = f"kind: transform\nname: t\n{field}: x\ntransform: SELECT 1 AS one\n"

    found = problems(tmp_path, {"a.yml": text})

    assert found == [
        (
            f"seeknal/a.yml:3: transform.t: unknown field {field!r} "
            f"(did you mean {suggestion!r}?)"
        )
    ]


def test_unknown_field_without_a_close_match_lists_the_fields(tmp_path: Path) -> None:
    found = problems(tmp_path, {"a.yml": SOURCE + "zzz: 1\n"})

    assert found == [
        (
            "seeknal/a.yml:5: source.numbers: unknown field 'zzz' (fields of a source: "
            "kind, name, description, owner, tags, source, table, params, schema, "
            "columns)"
        )
    ]


def test_noted_fields_load_with_a_note(tmp_path: Path) -> None:
    text = (
        "kind: transform\nname: t\ntransform: SELECT 1 AS one\nfreshness: 1d\n"
        "tests: [unique]\ncolumns:\n  one: {dtype: int}\n"
    )

    loaded = load(tmp_path, {"a.yml": text})

    assert "transform.t" in loaded.nodes
    assert [str(w) for w in loaded.warnings] == [
        f"seeknal/a.yml:{line}: transform.t: field {field!r} is read but not "
        "acted on by seeknal_jupyter"
        for line, field in [(4, "freshness"), (5, "tests"), (6, "columns")]
    ]


def test_unknown_kind_suggests_the_closest(tmp_path: Path) -> None:
    found = problems(tmp_path, {"a.yml": "kind: tranform\nname: t\n"})

    assert found == [
        (
            "seeknal/a.yml:1: tranform.t: unknown kind 'tranform' "
            "(did you mean 'transform'?)"
        )
    ]


@pytest.mark.parametrize("kind", ["model", "aggregation", "rule"])
def test_other_seeknal_kinds_are_named_as_unsupported(
    tmp_path: Path, kind: str
) -> None:
    files = {"a.yml": SOURCE, "models/m.yml": f"name: churn\nkind: {kind}\n"}

    found = problems(tmp_path, files)

    assert found == [
        (
            f"seeknal/models/m.yml:2: {kind}.churn: kind {kind!r} is a Seeknal kind that "
            "seeknal_jupyter does not support (supported kinds: source, transform, "
            "feature_group, exposure)"
        )
    ]


def test_missing_kind_and_name(tmp_path: Path) -> None:
    found = problems(tmp_path, {"a.yml": "name: t\n---\nkind: transform\n"})

    assert found == [
        (
            "seeknal/a.yml:1: missing 'kind' (one of: source, transform, "
            "feature_group, exposure)"
        ),
        "seeknal/a.yml:3: missing 'name' (every node needs a name)",
        "seeknal/a.yml:3: a transform needs 'transform': its SQL",
    ]


def test_duplicate_node_ids(tmp_path: Path) -> None:
    found = problems(tmp_path, {"a.yml": SOURCE, "b/c.yaml": "# again\n" + SOURCE})

    assert found == [
        (
            "seeknal/b/c.yaml:2: source.numbers: duplicate node id source.numbers "
            "(also defined at seeknal/a.yml:1) (rename one of them)"
        )
    ]


def test_unknown_input_suggests_a_node(tmp_path: Path) -> None:
    text = "kind: transform\nname: t\ninputs:\n  - ref: source.number\n"
    text += "transform: SELECT 1 AS one\n"

    found = problems(tmp_path, {"a.yml": SOURCE, "b.yml": text})

    assert found == [
        (
            "seeknal/b.yml:4: transform.t: unknown input 'source.number' "
            "(did you mean 'source.numbers'?)"
        )
    ]


@pytest.mark.parametrize(
    ("ref", "hint"),
    [
        ("source.nope", "check the node id (kind.name)"),
        ("source.num", "check the node id (kind.name)"),
        ("sorce.numbers", "did you mean 'source.numbers'?"),
        ("transform.numbers", "did you mean 'source.numbers'?"),
        ("source.numbres", "did you mean 'source.numbers'?"),
        ("source.number_name", "did you mean 'source.numbers_name'?"),
    ],
)
def test_only_a_close_name_is_suggested(tmp_path: Path, ref: str, hint: str) -> None:
    """The kind is not part of the comparison (every source id starts with
    'source.'), and a name must be a typo or two away to be suggested."""
    other = SOURCE.replace("name: numbers", "name: numbers_name")
    text = f"kind: transform\nname: t\ninputs:\n  - ref: {ref}\n"
    text += "transform: SELECT 1 AS one\n"

    found = problems(tmp_path, {"a.yml": SOURCE, "b.yml": text, "c.yml": other})

    assert found == [f"seeknal/b.yml:4: transform.t: unknown input {ref!r} ({hint})"]


def test_unknown_node_in_sql_suggests_a_node(tmp_path: Path) -> None:
    text = "kind: transform\nname: t\ntransform: |\n  SELECT * FROM source.numbrs\n"

    found = problems(tmp_path, {"a.yml": SOURCE, "b.yml": text})

    assert found == [
        (
            "seeknal/b.yml:4: transform.t: SQL reads 'source.numbrs', which is not a "
            "node (did you mean 'source.numbers'?)"
        )
    ]


MERCHANT_RISK = "seeknal/transforms/10_transform_merchant_risk.yml"


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        (
            "owner: fraud-team\n",
            "owner: fraud-team\nowner: risk-team\n",
            8,
            "invalid YAML: duplicate key 'owner' (first on line 7)",
        ),
        (
            "inputs:\n  - ref: source.merchant_data",
            "inputs:\n\t- ref: source.merchant_data",
            10,
            "invalid YAML: found character that cannot start any token",
        ),
        (
            "tags: [fraud, merchants]\n",
            "tags: [fraud, merchants\n",
            9,
            "invalid YAML: ",
        ),
    ],
)
def test_a_broken_file_is_its_only_problem(
    fraud: Path, old: str, new: str, line: int, message: str
) -> None:
    """Nodes reading a node of an unparsable file get no 'unknown input' errors."""
    root = fraud
    path = root / MERCHANT_RISK
    text = path.read_text()
    assert text.count(old) == 1
    path.write_text(text.replace(old, new))

    with pytest.raises(ProjectError) as error:
        load_nodes(root)

    (problem,) = error.value.problems
    assert (problem.file, problem.line) == (MERCHANT_RISK, line)
    assert problem.message.startswith(message)
    assert "unknown input" not in str(error.value)


def test_a_misspelt_kind_is_its_only_problem(fraud: Path) -> None:
    path = fraud / MERCHANT_RISK
    path.write_text(path.read_text().replace("kind: transform\n", "kind: transfrom\n"))

    with pytest.raises(ProjectError) as error:
        load_nodes(fraud)

    assert str(error.value).splitlines() == [
        "1 problem in the project:",
        (
            f"  {MERCHANT_RISK}:1: transfrom.merchant_risk: unknown kind 'transfrom' "
            "(did you mean 'transform'?)"
        ),
    ]


def test_a_document_of_unknown_kind_is_never_suggested(tmp_path: Path) -> None:
    unknown = "kind: transfrom\nname: spend\ntransform: SELECT 1 AS one\n"
    unsupported = "kind: model\nname: scorer\n"
    kindless = "name: labels\ntransform: SELECT 1 AS one\n"
    reader = (
        "kind: transform\nname: reader\n"
        "inputs: [{ref: transform.spend}, {ref: transform.labels}, {ref: scorer}]\n"
        "transform: |\n"
        "  SELECT * FROM transform.spend, transform.labels, scorer, transform.spnd\n"
    )
    files = {"a.yml": unknown, "b.yml": unsupported, "c.yml": kindless}

    found = problems(tmp_path, {**files, "d.yml": reader})

    assert found == [
        (
            "seeknal/a.yml:1: transfrom.spend: unknown kind 'transfrom' (did you mean "
            "'transform'?)"
        ),
        (
            "seeknal/b.yml:1: model.scorer: kind 'model' is a Seeknal kind that "
            "seeknal_jupyter does not support (supported kinds: source, transform, "
            "feature_group, exposure)"
        ),
        (
            "seeknal/c.yml:1: missing 'kind' (one of: source, transform, feature_group, "
            "exposure)"
        ),
        (
            "seeknal/d.yml:5: transform.reader: SQL reads 'transform.spnd', which is "
            "not a node (check the node id (kind.name))"
        ),
    ]


def test_an_unreadable_file_hides_only_unknown_references(tmp_path: Path) -> None:
    reader = "kind: transform\nname: t\ninputs: [{ref: transform.elsewhere}]\n"
    reader += "transform: SELECT * FROM transform.elsewhere\n"
    grouped = "kind: feature_group\nname: g\ninputs: [{ref: transform.elsewhere}]\n"
    grouped += "entity: {name: e, join_keys: [n]}\nfeatures: {n: {dtype: int}}\n"
    bad_field = "kind: transform\nname: u\ninptus: []\ntransform: SELECT 1 AS one\n"
    files = {
        "a.yml": SOURCE,
        "b.yml": reader,
        "c.yml": "kind: [transform\n",
        "d.yml": grouped,
        "e.yml": bad_field,
    }

    found = problems(tmp_path, files)

    assert [f.split(": ")[0] for f in found] == ["seeknal/c.yml:2", "seeknal/e.yml:3"]
    assert "unknown field 'inptus'" in found[1]


def test_input_without_ref(tmp_path: Path) -> None:
    text = "kind: transform\nname: t\ninputs:\n  - {name: numbers}\n"
    text += "transform: SELECT 1 AS one\n"

    found = problems(tmp_path, {"a.yml": SOURCE, "b.yml": text})

    assert found == ["seeknal/b.yml:3: transform.t: each input needs 'ref: kind.name'"]


def test_input_to_an_invalid_node_reports_only_that_node(tmp_path: Path) -> None:
    broken = "kind: transform\nname: t\ntrasform: SELECT 1 AS one\n"
    reader = "kind: transform\nname: u\ninputs: [{ref: transform.t}]\n"
    reader += "transform: SELECT * FROM transform.t\n"

    found = problems(tmp_path, {"a.yml": broken, "b.yml": reader})

    assert found == [
        (
            "seeknal/a.yml:3: transform.t: unknown field 'trasform' "
            "(did you mean 'transform'?)"
        ),
        "seeknal/a.yml:1: transform.t: a transform needs 'transform': its SQL",
    ]


def test_self_reference_in_inputs_and_in_sql(tmp_path: Path) -> None:
    listed = "kind: transform\nname: t\ninputs:\n  - ref: source.numbers\n"
    listed += "  - ref: transform.t\ntransform: SELECT * FROM source.numbers\n"
    in_sql = "kind: transform\nname: u\ntransform: SELECT * FROM transform.u\n"

    found = problems(tmp_path, {"a.yml": SOURCE, "b.yml": listed, "c.yml": in_sql})

    assert found == [
        (
            "seeknal/b.yml:5: transform.t: transform.t lists itself as an input "
            "(a node cannot read its own output; remove this input)"
        ),
        (
            "seeknal/c.yml:3: transform.u: transform.u reads itself in its SQL "
            "(a node cannot read its own output)"
        ),
    ]


def test_cycle_printed_once_in_order(tmp_path: Path) -> None:
    files = {"a.yml": SOURCE}
    for name, reads in [("a", "c"), ("b", "a"), ("c", "b")]:
        files[f"{name}.yml"] = (
            f"kind: transform\nname: {name}\ntransform: SELECT * FROM transform.{reads}\n"
        )
    root = write_project(tmp_path, files)

    with pytest.raises(ProjectError) as error:
        Project(root).plan()

    cycle = "transform.a -> transform.c -> transform.b -> transform.a"
    assert str(error.value).splitlines()[1].strip() == (
        f"seeknal/a.yml:1: Cycle detected: {cycle} "
        "(each arrow means 'reads from'; remove one of these inputs)"
    )
    assert str(error.value).count("transform.b") == 1
    assert not (root / "target" / "manifest.json").exists()


@pytest.mark.parametrize(
    "name",
    ["..", "a/b", "../../outside", "weekly sales", "a\\b", "1st", "x.y", "é", "abc\n"],
)
def test_bad_names(tmp_path: Path, name: str) -> None:
    text = f"kind: transform\nname: {json.dumps(name)}\ntransform: SELECT 1 AS one\n"

    found = problems(tmp_path, {"a.yml": text})

    assert found == [
        (
            f"seeknal/a.yml:2: name {name!r} is not allowed (a name may hold only "
            "letters, digits, '_' and '-', starting with a letter or '_' "
            "(pattern ^[A-Za-z_][A-Za-z0-9_-]*$))"
        )
    ]


def test_a_name_ending_in_a_newline_is_refused(tmp_path: Path) -> None:
    text = "kind: transform\nname: |\n  abc\ntransform: SELECT 1 AS one\n"

    found = problems(tmp_path, {"a.yml": text})

    assert found == [
        (
            "seeknal/a.yml:2: name 'abc\\n' is not allowed (a name may hold only "
            "letters, digits, '_' and '-', starting with a letter or '_' "
            "(pattern ^[A-Za-z_][A-Za-z0-9_-]*$))"
        )
    ]


def test_reserved_words_and_dashes_are_good_names(tmp_path: Path) -> None:
    text = "kind: transform\nname: order\ntransform: SELECT 1 AS one\n---\n"
    text += "kind: transform\nname: group-by_2\ntransform: SELECT * FROM order\n"

    loaded = load(tmp_path, {"a.yml": text})

    assert loaded.nodes["transform.group-by_2"].inputs == ()
    assert set(loaded.nodes) == {"transform.order", "transform.group-by_2"}


FEATURE_GROUP = """\
kind: feature_group
name: number_features
inputs:
  - ref: source.numbers
entity: {name: number, join_keys: [n]}
transform: |
  SELECT n, length(label) AS label_length FROM source.numbers
features:
  label_length: {dtype: integer}
  label_upper: {dtype: string}
"""


def test_feature_missing_from_sql_fails_before_any_node_runs(tmp_path: Path) -> None:
    root = write_project(tmp_path, {"a.yml": SOURCE, "b.yml": FEATURE_GROUP})

    with pytest.raises(ProjectError) as error:
        Project(root).run()

    assert str(error.value).splitlines()[1].strip() == (
        "seeknal/b.yml:8: feature_group.number_features: feature or key "
        "label_upper not in the SQL output; it produced: n, label_length "
        "(fix the SQL or the features so they match)"
    )
    assert not list((root / "target").rglob("*.parquet"))


@pytest.mark.parametrize("kind", ["feature_group", "exposure"])
def test_several_inputs_without_transform(tmp_path: Path, kind: str) -> None:
    other = SOURCE.replace("name: numbers", "name: more")
    text = f"kind: {kind}\nname: joined\ninputs:\n  - ref: source.numbers\n"
    text += "  - ref: source.more\n"
    if kind == "feature_group":
        text += (
            "entity: {name: n, join_keys: [n]}\nfeatures: {label: {dtype: string}}\n"
        )

    found = problems(tmp_path, {"a.yml": SOURCE + "---\n" + other, "b.yml": text})

    assert found == [
        (
            f"seeknal/b.yml:1: {kind}.joined: 2 inputs and no 'transform' "
            "(add a 'transform' with SQL that joins them)"
        )
    ]


def test_yaml_1_1_values_stay_strings(tmp_path: Path) -> None:
    text = SOURCE + (
        "owner: no\ndescription: 0150\ntags: [12:30, yes, off, 1e3x, 0o17]\n"
        "params: {delimiter: ',', header: true, quote: ~}\n"
    )

    node = load(tmp_path, {"a.yml": text}).nodes["source.numbers"]

    assert node.spec["owner"] == "no"
    assert node.spec["description"] == "0150"
    assert node.spec["tags"] == ["12:30", "yes", "off", "1e3x", "0o17"]
    assert node.spec["params"] == {"delimiter": ",", "header": True, "quote": None}
    assert node.tags == ("12:30", "yes", "off", "1e3x", "0o17")


def test_documents_files_and_folders(tmp_path: Path) -> None:
    transforms = "kind: transform\nname: t1\ninputs: [{ref: source.numbers}]\n"
    transforms += "transform: SELECT * FROM numbers\n"
    transforms += (
        "---\nkind: transform\nname: t2\ntransform: SELECT * FROM transform.t1\n"
    )
    files = {
        "sources/a.yaml": SOURCE,
        "deep/er/still/b.yml": transforms,
        "notes.txt": "kind: model\n",
    }

    loaded = load(tmp_path, files)

    nodes = loaded.nodes
    assert list(nodes) == ["transform.t1", "transform.t2", "source.numbers"]
    assert nodes["transform.t2"].inputs == ("transform.t1",)
    assert nodes["transform.t1"].inputs == ("source.numbers",)
    assert nodes["transform.t2"].location == "seeknal/deep/er/still/b.yml:6"
    assert nodes["source.numbers"].file == "seeknal/sources/a.yaml"


def test_every_problem_of_a_project_is_reported_at_once(tmp_path: Path) -> None:
    files = {
        "a.yml": SOURCE + "tabl: x\n",
        "b.yml": "kind: tranform\nname: t\n",
        "c.yml": "kind: source\nname: [oops\n",
    }

    found = problems(tmp_path, files)

    assert sorted(f.split(":")[0] + ":" + f.split(":")[1] for f in found) == [
        "seeknal/a.yml:5",
        "seeknal/b.yml:1",
        "seeknal/c.yml:3",
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "source: excel\ntable: x.xlsx\n",
            (
                "seeknal/a.yml:3: source.s: 'source' must be one of csv, parquet, json, "
                "got 'excel'"
            ),
        ),
        (
            "source: csv\n",
            (
                "seeknal/a.yml:1: source.s: a source needs 'table': the path of its "
                "data file"
            ),
        ),
        (
            "source: csv\ntable: x.csv\nschema:\n  - {name: a, data_type: money}\n",
            (
                "seeknal/a.yml:6: source.s: column 'a': unknown type 'money' (use one of: "
                "string, integer, bigint, float, real, double, boolean, date, timestamp, "
                "decimal(p,s))"
            ),
        ),
    ],
)
def test_source_fields_are_checked(tmp_path: Path, body: str, message: str) -> None:
    found = problems(tmp_path, {"a.yml": "kind: source\nname: s\n" + body})

    assert found == [message]


def test_unquoted_decimal_in_a_flow_mapping_gets_a_hint(tmp_path: Path) -> None:
    text = "kind: source\nname: s\nsource: csv\ntable: x.csv\nschema:\n"
    text += "  - {name: price, data_type: decimal(10,2)}\n"

    found = problems(tmp_path, {"a.yml": text})

    assert found == [
        (
            "seeknal/a.yml:6: source.s: column 'price': unknown type 'decimal(10' "
            "(quote it, e.g. 'decimal(10,2)': in {...} a comma ends the value)"
        )
    ]


def test_each_unknown_type_is_reported_at_its_own_line(tmp_path: Path) -> None:
    source = """\
kind: source
name: s
source: csv
table: data/numbers.csv
schema:
  - {name: n, data_type: integer}
  - name: label
    data_type: strng
columns:
  n: {dtype: int}
  label:
    dtype: txt
"""
    group = """\
kind: feature_group
name: g
inputs: [{ref: source.s}]
transform: SELECT n, label FROM source.s
entity: {name: e, join_keys: [n]}
features:
  n:
    dtype: integer
  label:
    dtype: flaot
  other: {dtype: flaot}
"""

    found = problems(tmp_path, {"a.yml": source, "b.yml": group})

    assert [(f.split(": ")[0], f.split("'")[1]) for f in found] == [
        ("seeknal/a.yml:7", "label"),
        ("seeknal/a.yml:11", "label"),
        ("seeknal/b.yml:9", "label"),
        ("seeknal/b.yml:11", "other"),
    ]


def test_inputs_are_the_list_and_what_the_sql_reads(tmp_path: Path) -> None:
    other = SOURCE.replace("name: numbers", "name: other")
    text = (
        "kind: transform\nname: t\ninputs: [{ref: source.numbers}]\n"
        "transform: SELECT * FROM numbers JOIN source.other USING (n)\n"
    )

    loaded = load(tmp_path, {"a.yml": SOURCE, "b.yml": other, "c.yml": text})

    assert loaded.nodes["transform.t"].inputs == ("source.numbers", "source.other")
    assert loaded.warnings == []


def test_an_input_listed_twice_is_a_warning(tmp_path: Path) -> None:
    text = (
        "kind: transform\nname: t\ninputs:\n  - ref: source.numbers\n"
        "  - ref: numbers\ntransform: SELECT n FROM numbers\n"
    )

    loaded = load(tmp_path, {"a.yml": SOURCE, "b.yml": text})

    assert loaded.nodes["transform.t"].inputs == ("source.numbers",)
    assert [str(w) for w in loaded.warnings] == [
        (
            "seeknal/b.yml:5: transform.t: input source.numbers is listed twice in "
            "'inputs', first on line 4 (remove one of them)"
        )
    ]


def test_an_input_the_sql_never_reads_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = SOURCE.replace("name: numbers", "name: other")
    text = (
        "kind: transform\nname: t\ninputs:\n  - ref: source.numbers\n"
        "  - ref: source.other\ntransform: |\n  SELECT n\n  FROM numbers\n"
    )

    with caplog.at_level(logging.WARNING, logger="seeknal_jupyter"):
        loaded = load(tmp_path, {"a.yml": SOURCE, "b.yml": other, "c.yml": text})

    expected = (
        "seeknal/c.yml:5: transform.t: input source.other is declared but not read "
        "by the SQL (read it in the SQL as source.other, or remove it from 'inputs')"
    )
    assert loaded.nodes["transform.t"].inputs == ("source.numbers", "source.other")
    assert [str(w) for w in loaded.warnings] == [expected]
    assert [r.getMessage() for r in caplog.records] == [expected]


def test_the_examples_load_without_warnings(tmp_path: Path) -> None:
    for name in ("fraud-detection", "nyc-flights"):
        root = init_example(name, tmp_path / name)
        assert load_nodes(root).warnings == [], name


@pytest.mark.parametrize("path", ["out/spend.xlsx", "out/spend.txt", "out/spend"])
def test_an_exposure_path_without_a_known_extension_needs_a_format(
    tmp_path: Path, path: str
) -> None:
    """Not Parquet bytes under a name that says otherwise: the format is asked for."""
    exposure = (
        "kind: exposure\nname: e\ntype: file\ninputs: [{ref: source.numbers}]\n"
        f"params: {{path: {path}}}\n"
    )
    found = problems(tmp_path, {"a.yml": SOURCE, "e.yml": exposure})

    assert found == [
        (
            f"seeknal/e.yml:5: exposure.e: params.path '{path}' does not say its "
            "format (end it in .parquet or .csv, or add 'format: parquet' or "
            "'format: csv')"
        )
    ]


def test_a_misspelt_ref_of_a_feature_group_without_sql_is_its_only_problem(
    tmp_path: Path,
) -> None:
    grouped = (
        "kind: feature_group\nname: g\ninputs: [{ref: source.z}]\n"
        "entity: {name: e, join_keys: [n]}\nfeatures: {n: {dtype: int}}\n"
    )
    found = problems(tmp_path, {"a.yml": SOURCE, "g.yml": grouped})

    assert len(found) == 1
    assert found[0].startswith("seeknal/g.yml:3: feature_group.g: unknown input")
