"""Fingerprints: a hash of each node's functional definition, its inputs and its data."""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from seeknal_jupyter.dag import Dag
from seeknal_jupyter.loader import Node
from seeknal_jupyter.sql import normalise


def source_paths(root: Path, node: Node) -> list[Path]:
    """The data files a source reads (its ``table`` may be a glob), sorted."""
    pattern = str(node.spec.get("table", ""))
    full = pattern if os.path.isabs(pattern) else str(root / pattern)
    if glob.has_magic(full):
        return sorted(Path(p) for p in glob.glob(full, recursive=True))
    return [Path(full)]


def definition(node: Node) -> dict[str, Any]:
    """The parts of a node that decide its output; metadata fields are left out."""
    spec = node.spec
    result: dict[str, Any] = {"kind": node.kind, "inputs": sorted(node.inputs)}
    if node.sql is not None:
        result["sql"] = normalise(node.sql, node.inputs)
    if node.kind == "source":
        result["source"] = spec.get("source")
        result["table"] = spec.get("table")
        result["params"] = spec.get("params") or {}
        result["schema"] = [list(c) for c in node.schema]
    if node.kind == "feature_group":
        result["features"] = [list(f) for f in node.features]
        result["join_keys"] = list(node.join_keys)
        result["event_time_col"] = node.event_time_col
    if node.export is not None:
        result["export"] = list(node.export)
    return result


def _data_stamp(root: Path, node: Node) -> list[list[Any]]:
    stamps: list[list[Any]] = []
    for path in source_paths(root, node):
        try:
            info = path.stat()
        except OSError:
            stamps.append([path.name, None, None])
            continue
        stamps.append([path.name, info.st_size, info.st_mtime_ns])
    return stamps


def fingerprints(
    dag: Dag, root: Path, built: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Fingerprint of every node, computed in topological order.

    A fingerprint covers the node's definition (SQL normalised), its inputs'
    fingerprints and, for sources, each data file's size and modification time.

    Args:
        dag: the nodes.
        root: the project folder, where sources' data files are found.
        built: fingerprints to use for some nodes instead of computing them: those
            of existing outputs that a run reads although they are out of date, so
            that what is built from them is fingerprinted from what it really read.
    """
    built = built or {}
    result: dict[str, str] = {}
    for node_id in dag.order:
        if node_id in built:
            result[node_id] = built[node_id]
            continue
        node = dag.nodes[node_id]
        payload: dict[str, Any] = {
            "definition": definition(node),
            "inputs": {i: result[i] for i in sorted(node.inputs)},
        }
        if node.kind == "source":
            payload["data"] = _data_stamp(root, node)
        text = json.dumps(payload, sort_keys=True, default=str)
        result[node_id] = hashlib.sha256(text.encode()).hexdigest()[:20]
    return result
