"""The DAG of nodes: edges, topological order, layers, selection and critical path."""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from seeknal_jupyter.errors import Problem, ProjectError, UsageError
from seeknal_jupyter.loader import Node
from seeknal_jupyter.sql import KINDS


@dataclass(frozen=True)
class Dag:
    """Nodes in topological order with their layers and downstream edges."""

    nodes: dict[str, Node]
    order: tuple[str, ...]
    layer: dict[str, int]
    downstream: dict[str, tuple[str, ...]]

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(i, n) for n in self.order for i in self.nodes[n].inputs]

    @property
    def layer_count(self) -> int:
        return max(self.layer.values(), default=-1) + 1

    def layers(self, ids: Iterable[str] | None = None) -> list[list[str]]:
        """Node ids grouped by layer, each in topological order.

        Args:
            ids: only these nodes (every layer is still listed, maybe empty).
        """
        chosen = None if ids is None else set(ids)
        grouped: list[list[str]] = [[] for _ in range(self.layer_count)]
        for node_id in self.order:
            if chosen is None or node_id in chosen:
                grouped[self.layer[node_id]].append(node_id)
        return grouped

    def upstream_of(self, ids: Iterable[str]) -> set[str]:
        return _walk(ids, lambda n: self.nodes[n].inputs)

    def downstream_of(self, ids: Iterable[str]) -> set[str]:
        return _walk(ids, lambda n: self.downstream[n])

    def resolve(self, name: str) -> str:
        """The node id for ``kind.name`` or an unambiguous bare name."""
        if name in self.nodes:
            return name
        matches = [n for n in self.nodes if n.split(".", 1)[1] == name]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise UsageError(f"{name!r} is ambiguous: {', '.join(sorted(matches))}")
        bare = {n.split(".", 1)[1] for n in self.nodes}
        known = sorted(self.nodes if "." in name else bare)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"no node named {name!r}{hint}")

    def select(
        self,
        names: Iterable[str] = (),
        tags: Iterable[str] = (),
        kinds: Iterable[str] = (),
    ) -> list[str]:
        """Node ids chosen by names (with ``+name`` / ``name+``), tags or kinds.

        With no criteria every node is chosen. The result is in topological order.
        """
        names, tags, kinds = list(names), set(tags), set(kinds)
        if not (names or tags or kinds):
            return list(self.order)
        chosen: set[str] = set()
        for raw in names:
            spec = raw.strip()
            with_up, with_down = spec.startswith("+"), spec.endswith("+")
            node_id = self.resolve(spec.strip("+"))
            chosen.add(node_id)
            if with_up:
                chosen |= self.upstream_of([node_id])
            if with_down:
                chosen |= self.downstream_of([node_id])
        _check_known("tag", tags, {t for n in self.nodes.values() for t in n.tags})
        _check_known("kind", kinds, set(KINDS))
        chosen |= {n for n in self.order if tags & set(self.nodes[n].tags)}
        chosen |= {n for n in self.order if self.nodes[n].kind in kinds}
        return [n for n in self.order if n in chosen]

    def critical_path(self, seconds: Mapping[str, float]) -> tuple[list[str], float]:
        """The heaviest path through the DAG by node seconds, and its length."""
        best: dict[str, float] = {}
        previous: dict[str, str | None] = {}
        for node_id in self.order:
            inputs = [i for i in self.nodes[node_id].inputs if i in best]
            before = max(inputs, key=lambda i: best[i], default=None)
            best[node_id] = seconds.get(node_id, 0.0) + (
                best[before] if before else 0.0
            )
            previous[node_id] = before
        if not best:
            return [], 0.0
        end: str | None = max(best, key=lambda n: best[n])
        total = best[end] if end else 0.0
        path = []
        while end is not None:
            path.append(end)
            end = previous[end]
        return path[::-1], total


def _check_known(what: str, asked: set[str], known: set[str]) -> None:
    """Refuse a tag or kind that selects nothing, so a typo never runs nothing."""
    for word in sorted(asked - known):
        close = difflib.get_close_matches(word, sorted(known), n=1)
        listed = ", ".join(sorted(known)) or "none"
        hint = f"did you mean {close[0]!r}?" if close else f"known {what}s: {listed}"
        raise UsageError(f"no node has {what} {word!r}; {hint}")


def _walk(start: Iterable[str], step: object) -> set[str]:
    seen: set[str] = set()
    queue = deque(start)
    while queue:
        for nxt in step(queue.popleft()):  # type: ignore[operator]
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def find_cycle(nodes: Mapping[str, Node], remaining: set[str]) -> list[str]:
    """One cycle among the nodes that topological sorting could not place.

    Each of them has an input among them, so following inputs must come back to a
    node already seen; the cycle is returned from its least id, closed.
    """
    start = min(remaining)
    path: list[str] = []
    position: dict[str, int] = {}
    current = start
    while current not in position:
        position[current] = len(path)
        path.append(current)
        current = min(i for i in nodes[current].inputs if i in remaining)
    cycle = path[position[current] :]
    first = cycle.index(min(cycle))
    cycle = cycle[first:] + cycle[:first]
    return cycle + [cycle[0]]


def build_dag(nodes: dict[str, Node]) -> Dag:
    """Order the nodes topologically and assign layers (linear time).

    Raises:
        ProjectError: when the inputs form a cycle; the cycle is printed in order.
    """
    downstream: dict[str, list[str]] = {n: [] for n in nodes}
    pending = {n: len(node.inputs) for n, node in nodes.items()}
    for node_id, node in nodes.items():
        for upstream in node.inputs:
            downstream[upstream].append(node_id)
    layer: dict[str, int] = {}
    order: list[str] = []
    ready = deque(n for n in nodes if pending[n] == 0)
    while ready:
        node_id = ready.popleft()
        order.append(node_id)
        inputs = nodes[node_id].inputs
        layer[node_id] = max((layer[i] + 1 for i in inputs), default=0)
        for nxt in downstream[node_id]:
            pending[nxt] -= 1
            if pending[nxt] == 0:
                ready.append(nxt)
    if len(order) < len(nodes):
        cycle = find_cycle(nodes, set(nodes) - set(order))
        first = nodes[cycle[0]]
        raise ProjectError(
            [
                Problem(
                    "Cycle detected: " + " -> ".join(cycle),
                    first.file,
                    first.line,
                    hint="each arrow means 'reads from'; remove one of these inputs",
                )
            ]
        )
    return Dag(nodes, tuple(order), layer, {k: tuple(v) for k, v in downstream.items()})
