"""JSON views of store results, shared by the CLI and the HTTP API.

Plain dictionaries built from :mod:`provml.store.base` dataclasses; attribute values use
the wire encoding of :mod:`provml.records` so nothing is lost on the way out.

Imports: standard library and provml's record model only.
"""

from __future__ import annotations

from typing import Any

from provml.records import encode_attributes
from provml.store.base import Edge, LineageGraph, Node


def node_view(node: Node, distance: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": node.id,
        "kind": node.kind,
        "class": node.ml_class,
        "label": node.label,
        "attributes": encode_attributes(node.attributes),
        "bundles": list(node.bundles),
    }
    if node.start_time is not None:
        out["startTime"] = node.start_time.isoformat()
    if node.end_time is not None:
        out["endTime"] = node.end_time.isoformat()
    if distance is not None:
        out["distance"] = distance
    return out


def edge_view(edge: Edge) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": edge.kind,
        "subject": edge.subject,
        "object": edge.object,
        "bundle": edge.bundle,
    }
    if edge.id is not None:
        out["id"] = edge.id
    if edge.time is not None:
        out["time"] = edge.time.isoformat()
    if edge.attributes:
        out["attributes"] = encode_attributes(edge.attributes)
    return out


def lineage_view(graph: LineageGraph) -> dict[str, Any]:
    nodes = sorted(graph.nodes.values(), key=lambda n: (graph.distance.get(n.id, 0), n.id))
    return {
        "root": graph.root,
        "direction": graph.direction,
        "depth": graph.depth,
        "truncated": graph.truncated,
        "nodes": [node_view(n, graph.distance.get(n.id)) for n in nodes],
        "edges": [edge_view(e) for e in graph.edges],
    }


def format_table(header: list[str], rows: list[list[Any]], max_width: int = 80) -> str:
    """A plain-text table for terminals; long cells are shortened with an ellipsis."""

    def cell(value: Any) -> str:
        text = "" if value is None else str(value)
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)
