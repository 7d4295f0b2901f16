"""Tests for the DAG renderer: real SVG from wasm and system dot, and the text view."""

from __future__ import annotations

import html
import itertools
import logging
import random
import re
import shutil
import threading
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest
from IPython.core.formatters import DisplayFormatter

from seeknal_jupyter import render
from seeknal_jupyter.render import DagPicture, DrawNode, draw

SVG = "{http://www.w3.org/2000/svg}"
LEGEND = "__legend__."
GROUP = "__group__."
RED = "#dc2626"
KIND_SHAPES = {
    "source": "cylinder",
    "transform": "box",
    "feature_group": "box3d",
    "exposure": "note",
}

SOURCES = [
    "transactions",
    "user_profiles",
    "device_fingerprints",
    "ip_geolocation",
    "merchants",
    "cards",
    "fraud_labels",
    "alerts",
]


def fraud_nodes() -> list[DrawNode]:
    """The tutorial's shape: 8 sources, 4 transforms, 2 feature groups, 1 exposure."""
    sources = [
        DrawNode(f"source.{name}", "source", 0, (), status="cached", seconds=0.01)
        for name in SOURCES
    ]
    return sources + [
        DrawNode(
            "transform.txn_enriched",
            "transform",
            1,
            ("source.transactions", "source.merchants", "source.cards"),
            status="success",
            seconds=2.5,
            change="BREAKING",
            critical=True,
        ),
        DrawNode(
            "transform.user_risk",
            "transform",
            1,
            ("source.user_profiles", "source.device_fingerprints"),
            status="success",
            seconds=1.25,
            change="NON_BREAKING",
        ),
        DrawNode(
            "transform.alert_stats",
            "transform",
            1,
            ("source.alerts", "source.fraud_labels", "source.ip_geolocation"),
            status="success",
            seconds=0.3,
            change="METADATA",
        ),
        DrawNode(
            "transform.txn_features",
            "transform",
            2,
            ("transform.txn_enriched", "transform.user_risk"),
            status="failed",
            seconds=0.4,
            change="DEPENDENT",
            critical=True,
        ),
        DrawNode(
            "feature_group.merchant_features",
            "feature_group",
            2,
            ("transform.txn_enriched",),
            status="success",
            seconds=75.0,
            change="ADDED",
        ),
        DrawNode(
            "feature_group.user_features",
            "feature_group",
            3,
            ("transform.txn_features", "transform.alert_stats"),
            status="skipped",
            change="REMOVED",
            critical=True,
        ),
        DrawNode(
            "exposure.training_set",
            "exposure",
            3,
            ("feature_group.merchant_features", "transform.alert_stats"),
            status="cancelled",
            change="UNCHANGED",
        ),
    ]


def generated_nodes(count: int) -> list[DrawNode]:
    """`count` nodes in 4 layers, each past layer 0 reading two of the layer before."""
    kinds = {0: ["source"], 1: ["transform"], 2: ["transform", "feature_group"]}
    nodes: list[DrawNode] = []
    by_layer: dict[int, list[str]] = {}
    for index in range(count):
        layer = min(index * 4 // count, 3)
        kind = kinds.get(layer, ["feature_group", "exposure"])[index % 2 - 1]
        upstream = by_layer.get(layer - 1, [])
        inputs = (
            ()
            if layer == 0
            else tuple(upstream[(index + step) % len(upstream)] for step in (0, 7))
        )
        node_id = f"{kind}.n{index}"
        status = "failed" if index % 50 == 0 else "success"
        nodes.append(DrawNode(node_id, kind, layer, inputs, status))
        by_layer.setdefault(layer, []).append(node_id)
    return nodes


def node_groups(svg: str) -> dict[str, ET.Element]:
    """Every `<g class="node">` of the SVG by its `<title>` (the DOT node id)."""
    root = ET.fromstring(svg)
    groups = {}
    for group in root.iter(f"{SVG}g"):
        if group.get("class") == "node":
            title = group.find(f"{SVG}title")
            assert title is not None and title.text is not None
            assert title.text not in groups
            groups[title.text] = group
    return groups


def edge_groups(svg: str) -> dict[str, ET.Element]:
    root = ET.fromstring(svg)
    return {
        group.findtext(f"{SVG}title", ""): group
        for group in root.iter(f"{SVG}g")
        if group.get("class") == "edge"
    }


def drawn_nodes(svg: str) -> dict[str, ET.Element]:
    return {k: v for k, v in node_groups(svg).items() if not k.startswith(LEGEND)}


def legend_labels(svg: str) -> list[str]:
    return sorted(k.removeprefix(LEGEND) for k in node_groups(svg) if LEGEND in k)


def shape_fill(group: ET.Element) -> str | None:
    for element in group:
        is_shape = element.tag in (f"{SVG}polygon", f"{SVG}path", f"{SVG}ellipse")
        if is_shape and element.get("fill") not in (None, "none"):
            return element.get("fill")
    return None


def shape_stroke(group: ET.Element) -> tuple[str | None, str | None]:
    for element in group:
        if element.tag in (f"{SVG}polygon", f"{SVG}path", f"{SVG}ellipse"):
            return element.get("stroke"), element.get("stroke-width")
    return None, None


def texts(group: ET.Element) -> list[str]:
    return [text.text or "" for text in group.iter(f"{SVG}text")]


def centre_x(group: ET.Element) -> float:
    text = group.find(f"{SVG}text")
    assert text is not None
    return float(text.get("x", "nan"))


def rank_blocks(dot: str) -> dict[int, list[str]]:
    """The node ids inside each `subgraph "layer N" { rank=same; ... }` of the DOT."""
    blocks = {}
    pattern = r'subgraph "layer (\d+)" \{\n    rank=same;\n(.*?)\n  \}'
    for layer, body in re.findall(pattern, dot, flags=re.DOTALL):
        ids = re.findall(r"^    <(.*?)> \[", body, flags=re.MULTILINE)
        blocks[int(layer)] = [unescape_id(node_id) for node_id in ids]
    return blocks


def unescape_id(escaped: str) -> str:
    return ET.fromstring(f"<x>{escaped}</x>").text or ""


@pytest.fixture
def no_system_dot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render.shutil, "which", lambda name: None)


def test_svg_has_one_node_group_per_node_and_a_kind_legend() -> None:
    nodes = fraud_nodes()

    picture = draw(nodes, title="fraud", engine="wasm")

    assert picture.engine == "wasm"
    assert picture.svg is not None
    assert set(drawn_nodes(picture.svg)) == {node.id for node in nodes}
    assert len(drawn_nodes(picture.svg)) == 15
    assert legend_labels(picture.svg) == [
        "exposure",
        "feature_group",
        "source",
        "transform",
    ]
    assert len(edge_groups(picture.svg)) == 15
    assert "fraud" in texts(ET.fromstring(picture.svg))


def test_kind_mode_fills_by_kind_and_labels_with_the_short_name() -> None:
    picture = draw(fraud_nodes(), engine="wasm")

    assert picture.svg is not None
    groups = drawn_nodes(picture.svg)
    assert shape_fill(groups["source.cards"]) == "#dbeafe"
    assert shape_fill(groups["transform.user_risk"]) == "#fef3c7"
    assert shape_fill(groups["feature_group.user_features"]) == "#dcfce7"
    assert shape_fill(groups["exposure.training_set"]) == "#f3e8ff"
    assert texts(groups["transform.user_risk"]) == ["user_risk", "transform"]


def test_status_mode_fills_by_status_shows_seconds_and_marks_critical_path() -> None:
    picture = draw(fraud_nodes(), mode="status", engine="wasm")

    assert picture.svg is not None
    groups = drawn_nodes(picture.svg)
    expected = {
        "source.cards": "#bfdbfe",
        "transform.user_risk": "#86efac",
        "transform.txn_features": "#fca5a5",
        "feature_group.user_features": "#e5e7eb",
        "exposure.training_set": "#fdba74",
    }
    assert {node: shape_fill(groups[node]) for node in expected} == expected
    assert texts(groups["transform.user_risk"]) == ["user_risk", "success · 1.25 s"]
    assert texts(groups["feature_group.merchant_features"])[1] == "success · 1m 15s"
    assert texts(groups["feature_group.user_features"])[1] == "skipped"
    assert shape_stroke(groups["transform.txn_enriched"]) == (RED, "3")
    assert shape_stroke(groups["transform.user_risk"])[0] != RED
    edges = edge_groups(picture.svg)
    red_edges = {title for title, edge in edges.items() if shape_stroke(edge)[0] == RED}
    assert red_edges == {
        "transform.txn_enriched->transform.txn_features",
        "transform.txn_features->feature_group.user_features",
    }
    assert legend_labels(picture.svg) == sorted(
        ["failed", "cancelled", "skipped", "success", "cached", "not run"]
        + ["critical path", *KIND_SHAPES]
    )


def test_plan_mode_fills_by_change_class() -> None:
    picture = draw(fraud_nodes(), mode="plan", engine="wasm")

    assert picture.svg is not None
    groups = drawn_nodes(picture.svg)
    expected = {
        "transform.txn_enriched": "#fca5a5",
        "transform.user_risk": "#fde68a",
        "transform.alert_stats": "#bfdbfe",
        "transform.txn_features": "#fed7aa",
        "feature_group.merchant_features": "#86efac",
        "feature_group.user_features": "#d1d5db",
        "exposure.training_set": "#ffffff",
    }
    assert {node: shape_fill(groups[node]) for node in expected} == expected
    assert texts(groups["transform.txn_enriched"]) == ["txn_enriched", "BREAKING"]
    legend = node_groups(picture.svg)
    assert shape_fill(legend[LEGEND + "BREAKING"]) == "#fca5a5"
    assert len(legend_labels(picture.svg)) == 7 + len(KIND_SHAPES)


def test_nodes_of_one_layer_share_a_rank() -> None:
    nodes = fraud_nodes()

    picture = draw(nodes, engine="wasm")

    blocks = rank_blocks(picture.dot)
    expected: dict[int, list[str]] = {}
    for node in nodes:
        expected.setdefault(node.layer, []).append(node.id)
    assert blocks == expected
    assert picture.svg is not None
    groups = drawn_nodes(picture.svg)
    columns = [
        {round(centre_x(groups[node_id]), 1) for node_id in expected[layer]}
        for layer in sorted(expected)
    ]
    assert all(len(column) == 1 for column in columns)
    xs = [column.pop() for column in columns]
    assert xs == sorted(xs)
    legend_xs = {
        round(centre_x(group), 1)
        for node_id, group in node_groups(picture.svg).items()
        if node_id.startswith(LEGEND)
    }
    assert len(legend_xs) == 1
    assert legend_xs.pop() > xs[-1]


AWKWARD_IDS = [
    "transform.a:b",
    'source.x<y>&"z"',
    "transform.it's",
    "transform.back\\slash",
    "transform.ends\\",
    'transform.q\\"uote',
    "transform.with space",
    "transform.a&amp;b",
]


def awkward_nodes() -> list[DrawNode]:
    source = DrawNode('source.x<y>&"z"', "source", 0, ())
    transforms = [
        DrawNode(node_id, "transform", 1, (source.id,))
        for node_id in AWKWARD_IDS
        if node_id != source.id
    ]
    return [source, *transforms]


def assert_awkward_names_survive(picture: DagPicture) -> None:
    assert picture.svg is not None
    groups = drawn_nodes(picture.svg)
    assert set(groups) == set(AWKWARD_IDS)
    for node_id, group in groups.items():
        kind = node_id.split(".", 1)[0]
        assert texts(group)[0] == node_id.removeprefix(f"{kind}.")
    assert set(edge_groups(picture.svg)) == {
        f'source.x<y>&"z"->{node_id}' for node_id in AWKWARD_IDS[:1] + AWKWARD_IDS[2:]
    }


def test_awkward_names_render_and_keep_their_spelling_with_wasm() -> None:
    picture = draw(awkward_nodes(), engine="wasm")

    assert picture.engine == "wasm"
    assert_awkward_names_survive(picture)


@pytest.mark.skipif(shutil.which("dot") is None, reason="no system Graphviz")
def test_awkward_names_render_and_keep_their_spelling_with_system_dot() -> None:
    picture = draw(awkward_nodes(), engine="dot")

    assert picture.engine == "dot"
    assert_awkward_names_survive(picture)


@pytest.mark.skipif(shutil.which("dot") is None, reason="no system Graphviz")
def test_auto_prefers_system_dot() -> None:
    picture = draw(fraud_nodes(), mode="status", engine="auto")

    assert picture.engine == "dot"
    assert picture.svg is not None
    assert len(drawn_nodes(picture.svg)) == 15


def test_auto_renders_with_wasm_when_there_is_no_system_dot(
    no_system_dot: None,
) -> None:
    picture = draw(fraud_nodes(), engine="auto")

    assert picture.engine == "wasm"
    assert picture.svg is not None
    assert len(drawn_nodes(picture.svg)) == 15


def test_forced_dot_without_system_dot_falls_back_to_wasm(
    no_system_dot: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=render.__name__):
        picture = draw(fraud_nodes(), engine="dot")

    assert picture.engine == "wasm"
    assert picture.svg is not None
    assert "'dot' unavailable" in caplog.text


def test_text_engine_lists_layers_with_inputs_and_status() -> None:
    picture = draw(fraud_nodes(), title="fraud", mode="status", engine="text")

    assert picture.engine == "text"
    assert picture.svg is None
    assert picture._repr_svg_() is None
    lines = repr(picture).splitlines()
    assert lines[:3] == ["fraud", "15 nodes in 4 layers", "layer 1"]
    assert [line for line in lines if line.startswith("layer")] == [
        "layer 1",
        "layer 2",
        "layer 3",
        "layer 4",
    ]
    assert "  source.transactions  [cached · 0.01 s]" in lines
    assert (
        "  transform.txn_features  <- transform.txn_enriched, transform.user_risk"
        "  [failed · 0.40 s, critical]"
    ) in lines
    assert "digraph dag {" in picture.dot


def test_text_view_in_plan_mode_shows_change_classes() -> None:
    picture = draw(fraud_nodes(), mode="plan", engine="text")

    assert (
        "  transform.txn_enriched  <- source.transactions, source.merchants,"
        " source.cards  [BREAKING]"
    ) in repr(picture).splitlines()


def test_html_is_the_inline_svg_or_an_escaped_text_view() -> None:
    rendered = draw(awkward_nodes(), engine="wasm")
    text_only = draw(awkward_nodes(), engine="text")

    assert rendered.html().startswith("<svg")
    assert rendered._repr_svg_() == rendered.svg
    html = text_only.html()
    assert html.startswith("<pre>") and html.endswith("</pre>")
    assert "source.x&lt;y&gt;&amp;&quot;z&quot;" in html


def test_a_notebook_stores_the_picture_once() -> None:
    formatter = DisplayFormatter()
    rendered = draw(fraud_nodes(), engine="wasm")
    text_only = draw(fraud_nodes(), engine="text")

    shown, _ = formatter.format(rendered)
    fallback, _ = formatter.format(text_only)

    assert sorted(shown) == ["image/svg+xml", "text/plain"]
    assert shown["image/svg+xml"] == rendered.svg
    assert shown["text/plain"] == rendered.text
    assert sorted(fallback) == ["text/html", "text/plain"]
    assert fallback["text/html"] == f"<pre>{html.escape(text_only.text)}</pre>"


def test_large_graph_collapses_to_one_box_per_layer_and_kind() -> None:
    nodes = generated_nodes(1000)
    groups_expected = {(node.layer, node.kind) for node in nodes}

    picture = draw(nodes, title="big", mode="status", engine="wasm")

    assert picture.svg is not None
    groups = drawn_nodes(picture.svg)
    assert len(groups) == len(groups_expected) == 6
    counts = {
        texts(group)[0].split(" × ")[0] + f"@{title.split('.')[1]}": int(
            texts(group)[0].split(" × ")[1]
        )
        for title, group in groups.items()
    }
    assert counts == {
        "source@0": 250,
        "transform@1": 250,
        "transform@2": 125,
        "feature_group@2": 125,
        "feature_group@3": 125,
        "exposure@3": 125,
    }
    assert sum(counts.values()) == 1000
    edge_counts = [
        int(label)
        for edge in edge_groups(picture.svg).values()
        for label in texts(edge)
    ]
    assert sum(edge_counts) == sum(len(node.inputs) for node in nodes)
    assert texts(groups[f"{GROUP}0.source"]) == [
        "source × 250",
        "layer 1",
        "5 failed · 245 success",
    ]
    assert shape_fill(groups[f"{GROUP}0.source"]) == "#fca5a5"
    assert "(collapsed: 1,000 nodes shown as 6 groups of (layer, kind))" in picture.dot
    assert sorted(rank_blocks(picture.dot)) == [0, 1, 2, 3]
    assert "transform × 125  <- transform × 250 in layer 2 (250 edges)" in repr(picture)


def timed_nodes(count: int) -> list[DrawNode]:
    """`generated_nodes(count)` with seconds: node i took i / 100 s, cached ones none."""
    return [
        replace(node, seconds=index / 100)
        if index % 3
        else replace(node, status="cached")
        for index, node in enumerate(generated_nodes(count))
    ]


def test_the_default_collapses_above_a_hundred_nodes() -> None:
    assert render.MAX_NODES == 100
    full = draw(timed_nodes(100), mode="status", engine="wasm")
    collapsed = draw(timed_nodes(101), mode="status", engine="wasm")

    assert full.svg is not None and collapsed.svg is not None
    assert len(drawn_nodes(full.svg)) == 100
    assert "collapsed" not in full.text
    assert collapsed.text.splitlines()[:2] == [
        "(collapsed: 101 nodes shown as 6 groups of (layer, kind))",
        "6 groups in 4 layers",
    ]
    assert len(drawn_nodes(collapsed.svg)) == 6


def test_collapsed_groups_keep_their_layer_with_counts_and_summed_seconds() -> None:
    nodes = timed_nodes(101)
    sources = [node for node in nodes if node.id.startswith("source.")]
    timed = [node.seconds for node in sources if node.seconds is not None]
    assert (len(sources), len(timed)) == (26, 17)

    picture = draw(nodes, mode="status", engine="wasm")

    assert picture.svg is not None
    group = drawn_nodes(picture.svg)[f"{GROUP}0.source"]
    assert texts(group) == [
        "source × 26",
        "layer 1",
        "17 success · 9 cached",
        "2.17 s in all",
    ]
    assert sum(timed) == pytest.approx(2.17)
    assert (
        "  source × 26  [17 success · 9 cached, 2.17 s in all]"
        in picture.text.splitlines()
    )
    plan = draw(nodes, mode="plan", engine="text")
    assert "  source × 26  [26 UNCHANGED]" in plan.text.splitlines()
    kinds = draw(nodes, engine="wasm")
    assert kinds.svg is not None
    assert texts(drawn_nodes(kinds.svg)[f"{GROUP}0.source"]) == [
        "source × 26",
        "layer 1",
    ]


def test_graph_at_max_nodes_is_not_collapsed() -> None:
    nodes = generated_nodes(40)

    picture = draw(nodes, max_nodes=40, engine="wasm")

    assert picture.svg is not None
    assert len(drawn_nodes(picture.svg)) == 40


def test_five_thousand_nodes_draw_collapsed() -> None:
    nodes = generated_nodes(5000)

    picture = draw(nodes, mode="plan", engine="wasm")

    assert picture.engine == "wasm"
    assert picture.svg is not None
    assert len(drawn_nodes(picture.svg)) == 6


def test_failing_renderers_fall_back_to_text(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(dot: str) -> str:
        raise RuntimeError("renderer exploded")

    monkeypatch.setitem(render._RENDERERS, "dot", broken)
    monkeypatch.setitem(render._RENDERERS, "wasm", broken)

    with caplog.at_level(logging.WARNING, logger=render.__name__):
        picture = draw(fraud_nodes(), engine="auto")

    assert (picture.engine, picture.svg) == ("text", None)
    assert picture.problem == "dot and wasm failed (renderer exploded)"
    assert "layer 4" in repr(picture)
    assert caplog.messages[-1] == (
        "dot and wasm failed (renderer exploded); showing the text view"
    )


def test_renderer_output_that_is_not_svg_falls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(render._RENDERERS, "wasm", lambda dot: "garbage")

    picture = draw(fraud_nodes(), engine="wasm")

    assert (picture.engine, picture.svg) == ("text", None)


def test_a_renderer_that_hangs_times_out_to_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release, finished = threading.Event(), threading.Event()

    def hanging(dot: str) -> str:
        release.wait(30)
        finished.set()
        return "<svg/>"

    monkeypatch.setitem(render._RENDERERS, "wasm", hanging)

    try:
        picture = draw(fraud_nodes(), engine="wasm", timeout=0.2)

        assert picture.engine == "text"
        assert not finished.is_set(), "draw waited for the renderer to finish"
    finally:
        release.set()


class HangingBackend:
    """A wasm backend whose render holds the instance's lock until released."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def render(self, dot: str, format: str) -> bytes:
        self.release.wait()
        return b"<svg></svg>"


def test_a_wasm_render_that_times_out_does_not_block_the_next_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The timed-out render keeps its instance's lock; the next render gets a new
    instance, so it draws (well within its time) instead of waiting on that lock."""
    hanging = HangingBackend()
    stuck_instance = render._WasmGraphviz()
    stuck_instance._backend = hanging
    monkeypatch.setattr(render, "_wasm", stuck_instance)

    try:
        stuck = draw(fraud_nodes(), engine="wasm", timeout=0.2)
        picture = draw(fraud_nodes(), engine="wasm", timeout=120)
    finally:
        hanging.release.set()

    assert stuck.engine == "text"
    assert stuck.problem is not None and "took more than 0.2 s" in stuck.problem
    assert render._wasm is not stuck_instance
    assert picture.engine == "wasm"
    assert picture.svg is not None
    assert len(drawn_nodes(picture.svg)) == 15


def test_a_cycle_draws_without_looping() -> None:
    nodes = [
        DrawNode("transform.a", "transform", 0, ("transform.b",), critical=True),
        DrawNode("transform.b", "transform", 1, ("transform.a",), critical=True),
    ]

    picture = draw(nodes, mode="status", engine="wasm", max_nodes=1)
    small = draw(nodes, mode="status", engine="wasm")

    assert picture.svg is not None and small.svg is not None
    assert set(drawn_nodes(small.svg)) == {"transform.a", "transform.b"}
    assert len(edge_groups(small.svg)) == 2


def test_inputs_outside_the_drawing_are_left_out() -> None:
    nodes = [DrawNode("transform.t", "transform", 1, ("source.elsewhere",))]

    picture = draw(nodes, engine="wasm")

    assert picture.svg is not None
    assert set(drawn_nodes(picture.svg)) == {"transform.t"}
    assert edge_groups(picture.svg) == {}


def test_empty_graph_still_has_a_legend() -> None:
    picture = draw([], engine="wasm")

    assert picture.svg is not None
    assert drawn_nodes(picture.svg) == {}
    assert len(legend_labels(picture.svg)) == 4
    assert repr(picture) == "0 nodes in 0 layers"


@pytest.mark.parametrize(("option", "value"), [("mode", "colour"), ("engine", "png")])
def test_unknown_mode_or_engine_is_a_value_error(option: str, value: str) -> None:
    with pytest.raises(ValueError, match=value):
        draw(fraud_nodes(), **{option: value})  # type: ignore[arg-type]


def legend_statements(dot: str) -> dict[str, str]:
    """Each legend entry's attributes in the DOT, by its label."""
    found = re.findall(
        r"^ +<__legend__\.([^>]*)> \[(label=.*)\];$", dot, flags=re.MULTILINE
    )
    return {unescape_id(label): attributes for label, attributes in found}


@pytest.mark.parametrize("mode", ["kind", "status", "plan"])
def test_every_legend_explains_the_kind_shapes(mode: str) -> None:
    picture = draw(fraud_nodes(), mode=mode, engine="wasm")

    legend = legend_statements(picture.dot)
    for kind, shape in KIND_SHAPES.items():
        assert f'shape="{shape}"' in legend[kind], (mode, kind)
    assert picture.svg is not None
    shown = node_groups(picture.svg)
    fills = {kind: shape_fill(shown[LEGEND + kind]) for kind in KIND_SHAPES}
    if mode == "kind":
        assert fills == {
            "source": "#dbeafe",
            "transform": "#fef3c7",
            "feature_group": "#dcfce7",
            "exposure": "#f3e8ff",
        }
    else:
        assert set(fills.values()) == {"#ffffff"}
    titles = re.findall(
        r"subgraph cluster_legend_\d+ \{\n    label=\"([^\"]*)\"", picture.dot
    )
    expected = {"kind": [], "status": ["run status"], "plan": ["change class"]}
    assert titles == ["node kinds", *expected[mode]]


def deep_nodes(count: int) -> list[DrawNode]:
    """Like the benchmark's large project: 1% sources, then transforms each reading
    one to three of the 400 nodes made just before; layers follow the inputs."""
    chooser = random.Random(20240601)
    sources = max(2, count // 100)
    nodes = [DrawNode(f"source.s{i}", "source", 0, ()) for i in range(sources)]
    layer = {node.id: 0 for node in nodes}
    for i in range(count - sources):
        recent = [node.id for node in nodes[-400:]]
        inputs = tuple(
            chooser.sample(recent, k=min(len(recent), chooser.randint(1, 3)))
        )
        node_id = f"transform.t{i}"
        layer[node_id] = 1 + max(layer[upstream] for upstream in inputs)
        nodes.append(DrawNode(node_id, "transform", layer[node_id], inputs))
    return nodes


def edges_in_text(text: str) -> int:
    """Every node edge the text view of a collapsed graph accounts for."""
    total = 0
    for line in text.splitlines():
        if "  <- " in line:
            inputs = line.split("  <- ", 1)[1].split("  [", 1)[0]
            for upstream in inputs.split(", "):
                counted = re.search(r"\((\d[\d,]*) edges\)$", upstream)
                total += int(counted.group(1).replace(",", "")) if counted else 1
        within = re.search(r"(\d[\d,]*) edges? within", line)
        if within:
            total += int(within.group(1).replace(",", ""))
    return total


def test_a_deep_dag_collapses_into_bands_of_layers_and_draws_few_edges() -> None:
    nodes = deep_nodes(5000)
    layers = max(node.layer for node in nodes) + 1
    band = -(-layers // render.MAX_BANDS)
    assert layers > render.MAX_BANDS

    picture = draw(nodes, title="big", engine="wasm")

    assert picture.engine == "wasm"
    assert picture.svg is not None
    ranks = rank_blocks(picture.dot)
    assert len(ranks) == -(-layers // band) <= render.MAX_BANDS
    lines = picture.text.splitlines()
    groups = len(drawn_nodes(picture.svg))
    assert lines[1] == (
        f"(collapsed: 5,000 nodes shown as {groups} groups of (band of layers, "
        f"kind); {layers} layers in bands of {band})"
    )
    assert lines[2] == f"{groups} groups in {layers} layers"
    assert lines[3] == f"layers 1-{band}"
    group_edges = sum(line.count(" in layer") for line in lines[4:])
    assert len(edge_groups(picture.svg)) == group_edges <= render.MAX_GROUP_EDGES
    assert edges_in_text(picture.text) == sum(len(node.inputs) for node in nodes)
    assert "rankdir=TB" in picture.dot
    source_group = drawn_nodes(picture.svg)[f"{GROUP}0.source"]
    assert texts(source_group)[:2] == ["source × 50", "layer 1"]
    first_band = drawn_nodes(picture.svg)[f"{GROUP}0.transform"]
    assert texts(first_band)[1] == f"layers 2-{band}"
    assert re.fullmatch(r"\d+ edges within", texts(first_band)[2])


def test_the_critical_path_and_each_groups_largest_input_are_always_drawn() -> None:
    nodes = deep_nodes(2000)
    by_id = {node.id: node for node in nodes}
    chain = [max(nodes, key=lambda node: node.layer)]
    while chain[-1].inputs:
        inputs = [by_id[i] for i in chain[-1].inputs]
        chain.append(max(inputs, key=lambda node: node.layer))
    critical = {node.id for node in chain}
    timed = [replace(n, status="success", critical=n.id in critical) for n in nodes]
    band = -(-(chain[0].layer + 1) // render.MAX_BANDS)

    def group(node: DrawNode) -> str:
        return f"{GROUP}{node.layer // band}.{node.kind}"

    picture = draw(timed, mode="status", engine="wasm")

    assert picture.svg is not None
    drawn = edge_groups(picture.svg)
    assert len(drawn) == render.MAX_GROUP_EDGES
    lines = picture.text.splitlines()
    group_edges = sum(line.count(" in layer") for line in lines[2:])
    assert group_edges > render.MAX_GROUP_EDGES
    assert lines[0].endswith(
        f"; the {render.MAX_GROUP_EDGES} largest of {group_edges} group edges drawn)"
    )
    assert edges_in_text(picture.text) == sum(len(node.inputs) for node in nodes)
    red = {title for title, edge in drawn.items() if shape_stroke(edge)[0] == RED}
    assert red == {
        f"{group(upstream)}->{group(node)}"
        for node, upstream in itertools.pairwise(chain)
        if group(upstream) != group(node)
    }
    heads = {title.split("->")[1] for title in drawn}
    assert set(drawn_nodes(picture.svg)) - heads == {f"{GROUP}0.source"}


def test_a_dag_of_few_layers_is_drawn_left_to_right() -> None:
    assert "rankdir=LR" in draw(fraud_nodes(), engine="text").dot
    assert "rankdir=LR" in draw(generated_nodes(1000), engine="text").dot


def test_renderers_that_time_out_are_reported_as_timed_out(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()

    def hanging(dot: str) -> str:
        release.wait(30)
        return "<svg/>"

    monkeypatch.setitem(render._RENDERERS, "dot", hanging)
    monkeypatch.setitem(render._RENDERERS, "wasm", hanging)
    try:
        with caplog.at_level(logging.WARNING, logger=render.__name__):
            picture = draw(fraud_nodes(), engine="auto", timeout=0.2)
    finally:
        release.set()

    assert (picture.engine, picture.svg) == ("text", None)
    assert picture.problem == "dot and wasm took more than 0.2 s"
    assert caplog.messages[-1] == (
        "dot and wasm took more than 0.2 s; showing the text view"
    )
    assert "unavailable" not in caplog.text


def test_a_missing_renderer_and_one_that_timed_out_are_told_apart(
    no_system_dot: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(render._RENDERERS, "wasm", _raise_timeout)

    picture = draw(fraud_nodes(), engine="dot", timeout=5)

    assert picture.problem == (
        "dot unavailable (no `dot` executable on PATH); wasm took more than 5 s"
    )
    assert draw(fraud_nodes(), engine="text").problem == "the text engine draws no SVG"


def _raise_timeout(dot: str) -> str:
    raise TimeoutError("stands in for a render that outlasts its time")
