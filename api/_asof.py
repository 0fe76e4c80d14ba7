"""Lineage "as of" a point in time: the walk restricted to what existed then.

Datasets and models are versioned entities, so the past of a node never changes, but
what was *made from* it grows: the impact of a raw file as of last March names only
the model versions trained by then. The point is a time or a node (a model version):
a node stands for the time it was generated.

Times come from the records: an activity's start (else end) time; an entity's
generation time (the ``wasGeneratedBy`` time, else its activity's end or start); a
relation's own time, else that of the activity or entity it belongs to. A node or
relation with no known time is kept: provml does not guess.

Imports: standard library, provml core and store modules.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime

from provml import lineage
from provml.errors import InvalidRecord
from provml.store.base import Edge, LineageGraph, Node
from provml.store.sql import SQLStore


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _activity_time(node: Node | None) -> datetime | None:
    if node is None or node.kind != "activity":
        return None
    return _aware(node.start_time or node.end_time)


def _generation_times(graph: LineageGraph) -> dict[str, datetime]:
    """The earliest known generation time of each entity in the graph."""
    found: dict[str, datetime] = {}
    for edge in graph.edges:
        if edge.kind != "wasGeneratedBy" or edge.role is not None:
            continue
        activity = graph.nodes.get(edge.object)
        when = _aware(edge.time) or (
            _aware(activity.end_time or activity.start_time) if activity is not None else None
        )
        if when is not None and (edge.subject not in found or when < found[edge.subject]):
            found[edge.subject] = when
    return found


def node_times(graph: LineageGraph) -> dict[str, datetime]:
    """When each node of the graph came to be, where the records say."""
    times = _generation_times(graph)
    for iri, node in graph.nodes.items():
        when = _activity_time(node)
        if when is not None:
            times[iri] = when
    return times


def _edge_time(edge: Edge, times: dict[str, datetime]) -> datetime | None:
    return _aware(edge.time) or times.get(edge.subject) or times.get(edge.object)


def point_in_time(store: SQLStore, as_of: str) -> datetime:
    """The time ``as_of`` names: an ISO 8601 time, or the generation time of a node.

    Raises:
        InvalidRecord: neither a time nor a node whose time the records give.
        NotFound: ``as_of`` looks like an IRI the store does not know.
    """
    try:
        return _aware(datetime.fromisoformat(as_of))  # type: ignore[return-value]
    except ValueError:
        pass
    if ":" not in as_of:
        raise InvalidRecord(
            f"as_of must be an ISO 8601 time or a node IRI, got {as_of!r}", field="as_of"
        )
    around = lineage.upstream(store, as_of, depth=1)
    when = node_times(around).get(as_of)
    if when is None:
        raise InvalidRecord(
            f"the records give no time for {as_of}: no generation or activity time",
            record=as_of,
            field="as_of",
        )
    return when


def as_of(graph: LineageGraph, cutoff: datetime) -> LineageGraph:
    """The part of ``graph`` that existed at ``cutoff`` and is still connected to the root.

    Distances are measured again over what is left; ``truncated`` is kept.
    """
    times = node_times(graph)
    alive = {iri for iri in graph.nodes if times.get(iri) is None or times[iri] <= cutoff}
    alive.add(graph.root)
    edges = [
        e
        for e in graph.edges
        if e.subject in alive
        and e.object in alive
        and ((t := _edge_time(e, times)) is None or t <= cutoff)
    ]
    upstream_walk = graph.direction == "upstream"
    neighbours: dict[str, list[str]] = {}
    for e in edges:
        start, end = (e.subject, e.object) if upstream_walk else (e.object, e.subject)
        neighbours.setdefault(start, []).append(end)
    distance = {graph.root: 0}
    queue = deque([graph.root])
    while queue:
        here = queue.popleft()
        for there in neighbours.get(here, ()):
            if there not in distance and graph.distance.get(there) is not None:
                distance[there] = distance[here] + 1
                queue.append(there)
    return LineageGraph(
        root=graph.root,
        direction=graph.direction,
        depth=graph.depth,
        nodes={iri: n for iri, n in graph.nodes.items() if iri in distance},
        distance=distance,
        edges=[e for e in edges if e.subject in distance and e.object in distance],
        truncated=graph.truncated,
    )
