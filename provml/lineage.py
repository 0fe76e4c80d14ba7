"""The lineage engine: what a record came from, what was made from it, what a change hits.

Walks run in the database over ``lineage_edges`` (SQLAlchemy Core, every value a bound
parameter), the same statements on SQLite and PostgreSQL: breadth first, one indexed
query per distance level, each node expanded once (see :func:`_breadth_first` for why
not one recursive CTE); the extracted subgraph then goes to networkx for paths and
comparisons.

Semantics shared by every walk:

* **Direction.** Every PROV relation reads "subject depends on object"
  (:data:`provml.vocab.RELATIONS`), so *upstream* follows subject → object and
  *downstream* object → subject. Extra arguments that are dependencies too (the plan of
  an association, the activity of a derivation) count as edges: see
  :data:`provml.store.sql.DEPENDENCY_EXTRAS`.
* **Depth** counts edges from the root: ``depth=0`` is the root alone, ``depth=1`` its
  direct neighbours; ``None`` is unbounded. ``distance`` holds each node's shortest
  distance.
* **Cycles** (``alternateOf`` both ways, or bad data) are safe: the walk adds a node at
  most once, so it terminates and nothing is duplicated.
* **stop_at** names PROV-ML classes where the walk does not go on: such a node is in
  the answer, its own neighbours are not (the root is always expanded).
* **max_nodes** bounds the answer. Walks are breadth-first, and when the bound cuts a
  distance level the whole level is left out, so a truncated answer is the same on
  every backend: every node up to some distance, ``truncated=True``.

Imports: sqlalchemy, networkx and ``provml`` core and store modules; never FastAPI.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from itertools import pairwise
from typing import Any, NamedTuple

import networkx as nx
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from provml.errors import NotFound, QueryRejected
from provml.records import AttrValue, Literal, Ref
from provml.store import models
from provml.store.base import Edge, LineageGraph, Node
from provml.store.sql import SQLStore, decode_stored_attributes, from_iso, load_stored_json
from provml.vocab import ML_CLASS_BY_NAME, PROV, PROV_LABEL, PROV_TYPE, PROV_VALUE, RELATIONS, ml

__all__ = [
    "CategoryDiff",
    "Impact",
    "LineageDiff",
    "ValueChange",
    "derivation_path",
    "diff",
    "downstream",
    "impact",
    "to_networkx",
    "upstream",
]

DEFAULT_MAX_NODES = 10_000
_CHUNK = 500

_E, _N, _R = models.lineage_edges, models.nodes, models.relations
_TEXT_ARRAY = postgresql.ARRAY(sa.Text())

# The PROV kind each formal argument of a relation holds, for nodes that relations
# mention but no bundle describes (their Node is inferred from the edges).
_ARGUMENT_KINDS = {
    "entity": "entity",
    "generatedEntity": "entity",
    "usedEntity": "entity",
    "specificEntity": "entity",
    "generalEntity": "entity",
    "alternate1": "entity",
    "alternate2": "entity",
    "collection": "entity",
    "trigger": "entity",
    "plan": "entity",
    "activity": "activity",
    "informed": "activity",
    "informant": "activity",
    "starter": "activity",
    "ender": "activity",
    "agent": "agent",
    "delegate": "agent",
    "responsible": "agent",
}


# ------------------------------------------------------------------------ the walk


def _check_bounds(
    depth: int | None, stop_at: Collection[str], max_nodes: int, max_bundles: int | None
) -> frozenset[str]:
    for name, bound in (("depth", depth), ("max_bundles", max_bundles)):
        if bound is not None and (
            isinstance(bound, bool) or not isinstance(bound, int) or bound < 0
        ):
            raise QueryRejected(f"{name} must be a whole number ≥ 0 or None, got {bound!r}")
    if isinstance(max_nodes, bool) or not isinstance(max_nodes, int) or max_nodes < 1:
        raise QueryRejected(f"max_nodes must be a whole number ≥ 1, got {max_nodes!r}")
    if isinstance(stop_at, str):  # a lone class name would be split into letters
        stop_at = (stop_at,)
    unknown = sorted(set(stop_at) - ML_CLASS_BY_NAME.keys())
    if unknown:
        raise QueryRejected(f"stop_at names no PROV-ML class: {', '.join(unknown)}")
    return frozenset(stop_at)


def _any_of(
    conn: sa.Connection, column: sa.ColumnElement[str], values: list[str]
) -> list[sa.ColumnElement[bool]]:
    """``column`` among ``values``: conditions to query one after another.

    On PostgreSQL one array parameter, so the statement's text is the same whatever
    the number of values and psycopg prepares it once (an IN list is planned anew for
    every length); on SQLite chunks of IN lists, below its parameter limit.
    """
    if conn.dialect.name == "postgresql":
        return [column == sa.any_(sa.bindparam("values", values, type_=_TEXT_ARRAY))]
    return [column.in_(chunk) for chunk in _chunks(values)]


def _frontier_links(
    conn: sa.Connection,
    frontier: list[str],
    upstream_walk: bool,
    relations: dict[str, _Relation] | None = None,
) -> list[_Link]:
    """Every lineage edge leaving the frontier, oriented the way the walk goes.

    With ``relations`` (PostgreSQL), the columns of each edge's relation come in the same
    query and go there by key, as in the one-statement walk: nearly every edge a walk
    reads ends up in its answer, and reading the relations of a wide walk afterwards, by
    10,000 keys at once, made PostgreSQL scan the whole table.
    """
    links = []
    if not frontier:
        return links
    if conn.dialect.name == "sqlite":
        # The statement as text: a walk runs one per level, and compiling the IN list
        # anew each time cost more than SQLite's own work (in process, no round trip).
        here = "subject" if upstream_walk else "object"
        rows: Iterable[Any] = (
            row
            for chunk in _chunks(frontier)
            for row in conn.exec_driver_sql(
                f"{_SQLITE_LINKS} {here} IN ({', '.join('?' * len(chunk))})", tuple(chunk)
            ).all()
        )
    else:
        here_column = _E.c.subject if upstream_walk else _E.c.object
        query = sa.select(_E.c.relation_key, _E.c.role, _E.c.subject, _E.c.object)
        if relations is not None:
            query = query.add_columns(*_RELATION_COLUMNS).outerjoin(
                _R, _R.c.key == _E.c.relation_key
            )
        rows = [
            row
            for condition in _any_of(conn, here_column, frontier)
            for row in conn.execute(query.where(condition)).all()
        ]
        if relations is not None:
            for key, _, _, _, kind, *columns, attributes in rows:
                if kind is not None and key not in relations:
                    relations[key] = _Relation(kind, *columns, load_stored_json(attributes))
            rows = [row[:4] for row in rows]
    for key, role, subject, obj in rows:
        source, target = (subject, obj) if upstream_walk else (obj, subject)
        links.append(_Link(key, role, source, target))
    return links


_SQLITE_LINKS = "SELECT relation_key, role, subject, object FROM lineage_edges WHERE"


class _Level(NamedTuple):
    """Where a walk stands: every node reached so far, and the edges just read."""

    distance: dict[str, int]  # node → its distance, for every node reached
    order: list[str]  # the nodes reached, level by level
    links: list[_Link]  # every edge read so far
    stopped: set[str]  # nodes of a stop_at class (after the root): not expanded
    found: list[_Link]  # the edges leaving the last level, just read
    level: int  # the last level's distance


def _breadth_first(
    conn: sa.Connection,
    root: str,
    upstream_walk: bool,
    depth: int | None,
    stop: frozenset[str],
    max_nodes: int,
    start: _Level | None = None,
    relations: dict[str, _Relation] | None = None,
) -> tuple[list[str], list[_Link], set[str]]:
    """The nodes reached level by level, the edges leaving them, and the stop nodes.

    One indexed query per distance level (per chunk of it), not one recursive CTE: a
    CTE bounded by depth must carry (node, depth) pairs, because a recursive term
    cannot see which nodes earlier levels found, so on a DAG of fine-tuned models
    every node comes back once per path length that reaches it and each copy is
    expanded again. Here a node is expanded once, at its shortest distance.
    (PostgreSQL walks the first levels in one statement instead, carrying the nodes
    seen as an array: :func:`_breadth_first_postgresql`, which hands over here as
    ``start`` once the array grows.)

    The edges of the last level within the depth bound are read too (not followed),
    so that the caller can tell whether the bound cut anything; the walk stops after
    the first level that takes it past ``max_nodes``, which the caller leaves out.
    """
    if start is None:
        found = _frontier_links(conn, [root], upstream_walk, relations)
        start = _Level({root: 0}, [root], list(found), set(), found, 0)
    distance, order, links, stopped, found, level = start
    while depth is None or level < depth:
        level += 1
        frontier = []
        for link in found:
            if link.target not in distance:
                distance[link.target] = level
                frontier.append(link.target)
        if not frontier:
            break
        order.extend(frontier)
        if len(order) > max_nodes:
            break
        if stop:
            for condition in _any_of(conn, _N.c.iri, frontier):
                query = sa.select(_N.c.iri).where(condition, _N.c.ml_class.in_(sorted(stop)))
                stopped.update(conn.scalars(query))
        found = _frontier_links(
            conn, [n for n in frontier if n not in stopped], upstream_walk, relations
        )
        links.extend(found)
    return order, links, stopped


# The first levels of :func:`_breadth_first` in one PostgreSQL statement: each step of
# the recursion is one whole distance level (its frontier as an array, with every node
# seen so far), so a node is expanded once, at its shortest distance, and those levels
# cost one round trip instead of one each. The walk goes on from a level while it is
# within the depth bound and has passed neither max_nodes (the level that passes it is
# kept, unexpanded, for the caller to leave out) nor :lean nodes: every step reads the
# whole array of nodes seen, so a wide walk is left to the per-level queries from
# there. Then every reached node comes back with its distance, once per edge leaving
# it (or once alone): the edges of every level but one that passed max_nodes, stop
# nodes (after the root) not expanded; with the columns of its relation an edge shows.
# The arrays start in the "C" collation of the IRI columns (migration 0004): the
# recursive term's collation must match the first term's.
_WALK_POSTGRESQL = """
WITH RECURSIVE walk(level, frontier, seen) AS (
    SELECT 0, ARRAY[CAST(:root AS text) COLLATE "C"], ARRAY[CAST(:root AS text) COLLATE "C"]
  UNION ALL
    SELECT w.level + 1, n.found, w.seen || n.found
    FROM walk AS w CROSS JOIN LATERAL (
        SELECT array_agg(x.iri) AS found FROM (
            SELECT e.{there} AS iri FROM lineage_edges AS e
            WHERE e.{here} = ANY(w.frontier){expandable}
            EXCEPT SELECT unnest(w.seen)
        ) AS x
    ) AS n
    WHERE n.found IS NOT NULL
      AND (CAST(:depth AS bigint) IS NULL OR w.level < CAST(:depth AS bigint))
      AND cardinality(w.seen) <= CAST(:max_nodes AS bigint)
      AND cardinality(w.seen) <= CAST(:lean AS bigint)
), reached AS (
    SELECT w.level, r.iri, cardinality(w.seen) <= CAST(:max_nodes AS bigint) AS read,
           {stopped} AS stopped
    FROM walk AS w CROSS JOIN LATERAL unnest(w.frontier) AS r(iri)
)
SELECT r.level, r.iri, r.stopped, e.relation_key, e.role, e.subject, e.object,
       rel.kind, rel.bundle_id, rel.rel_id, rel.time, CAST(rel.attributes AS text) AS attributes
FROM reached AS r LEFT JOIN lineage_edges AS e
  ON r.read AND NOT r.stopped AND e.{here} = r.iri
LEFT JOIN relations AS rel ON rel.key = e.relation_key
"""
_STOP_CLASS = (
    "EXISTS (SELECT 1 FROM nodes AS s"
    " WHERE s.iri = {node} AND s.ml_class = ANY(CAST(:stop AS text[])))"
)
# Nodes seen after which the statement hands over to one query per level: a step of
# the statement costs ~0.4 µs per node seen (PostgreSQL 15, 1M records), a query of
# its own ~0.3 ms of round trip. An upstream answer of depth 20 is ~170 nodes.
_LEAN = 1000


def _walk_statement(upstream_walk: bool, stop: bool) -> sa.TextClause:
    here, there = ("subject", "object") if upstream_walk else ("object", "subject")
    expandable = f"\n              AND (w.level = 0 OR NOT {_STOP_CLASS.format(node='e.' + here)})"
    # Like the per-level walk, which looks for stop nodes only in levels it expands.
    stopped = (
        "(w.level > 0 AND cardinality(w.seen) <= CAST(:max_nodes AS bigint)"
        f" AND {_STOP_CLASS.format(node='r.iri')})"
    )
    return sa.text(
        _WALK_POSTGRESQL.format(
            here=here,
            there=there,
            expandable=expandable if stop else "",
            stopped=stopped if stop else "false",
        )
    )


_WALK_STATEMENTS = {
    (upstream_walk, stop): _walk_statement(upstream_walk, stop)
    for upstream_walk in (True, False)
    for stop in (True, False)
}


def _breadth_first_postgresql(
    conn: sa.Connection,
    root: str,
    upstream_walk: bool,
    depth: int | None,
    stop: frozenset[str],
    max_nodes: int,
    relations: dict[str, _Relation] | None = None,
) -> tuple[list[str], list[_Link], set[str]]:
    """What :func:`_breadth_first` answers, its first levels in one statement.

    See ``_WALK_POSTGRESQL``; a walk that outgrows ``_LEAN`` nodes within its bounds
    goes on level by level from where the statement stopped. The relations of the
    edges the statement read go into ``relations``, by key.
    """
    params: dict[str, object] = {
        "root": root,
        "depth": depth,
        "max_nodes": max_nodes,
        "lean": _LEAN,
    }
    if stop:
        params["stop"] = sorted(stop)
    rows = conn.execute(_WALK_STATEMENTS[upstream_walk, bool(stop)], params).all()
    distance: dict[str, int] = {}
    stopped = set()
    links = []
    # Unpacked: a walk of depth 20 reads some 400 rows, and a Row's attribute look-ups
    # add up.
    for level, iri, is_stop, key, role, subject, obj, *relation in rows:
        distance[iri] = level
        if is_stop:
            stopped.add(iri)
        if key is not None:
            links.append(
                _Link(key, role, subject, obj) if upstream_walk else _Link(key, role, obj, subject)
            )
            if relations is not None and key not in relations:
                kind, bundle_id, rel_id, time, attributes = relation
                relations[key] = _Relation(
                    kind, bundle_id, rel_id, time, load_stored_json(attributes)
                )
    order = list(distance)
    level = max(distance.values())
    if len(order) <= _LEAN or len(order) > max_nodes or (depth is not None and level >= depth):
        return order, links, stopped  # the statement walked it all
    found = [link for link in links if distance[link.source] == level]
    start = _Level(distance, order, links, stopped, found, level)
    return _breadth_first(conn, root, upstream_walk, depth, stop, max_nodes, start, relations)


def _chunks(values: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


class _Link(NamedTuple):
    """One lineage edge as the walk sees it: from ``source`` on to ``target``."""

    key: str  # the relation's key
    role: str
    source: str
    target: str


class _Relation(NamedTuple):
    """The columns of a relation that an edge shows."""

    kind: str
    bundle_id: str
    rel_id: str | None
    time: str | None
    attributes: list[list[Any]]  # as stored (see decode_stored_attributes)


_SQLITE_RELATIONS = "SELECT key, kind, bundle_id, rel_id, time, attributes FROM relations WHERE"
# The columns of _Relation on PostgreSQL, attributes as text for load_stored_json.
_RELATION_COLUMNS = (
    _R.c.kind,
    _R.c.bundle_id,
    _R.c.rel_id,
    _R.c.time,
    sa.cast(_R.c.attributes, sa.Text()),
)


def _relations(conn: sa.Connection, keys: list[str]) -> dict[str, _Relation]:
    """The relations of these keys (as text on SQLite: see :func:`_frontier_links`)."""
    out = {}
    if not keys:
        return out
    if conn.dialect.name == "sqlite":
        for chunk in _chunks(keys):
            statement = f"{_SQLITE_RELATIONS} key IN ({', '.join('?' * len(chunk))})"
            for key, *columns, attributes in conn.exec_driver_sql(statement, tuple(chunk)):
                out[key] = _Relation(*columns, json.loads(attributes))
        return out
    columns = (_R.c.key, *_RELATION_COLUMNS)
    for condition in _any_of(conn, _R.c.key, keys):
        for key, kind, bundle_id, rel_id, time, stored in conn.execute(
            sa.select(*columns).where(condition)
        ).all():
            out[key] = _Relation(kind, bundle_id, rel_id, time, load_stored_json(stored))
    return out


def _edge(link: _Link, relation: _Relation, upstream_walk: bool) -> Edge:
    subject, obj = (link.source, link.target) if upstream_walk else (link.target, link.source)
    return Edge(
        kind=relation.kind,
        subject=subject,
        object=obj,
        bundle=relation.bundle_id,
        id=relation.rel_id,
        time=from_iso(relation.time),
        attributes=decode_stored_attributes(relation.attributes, relation.rel_id),
        role=None if link.role == RELATIONS[relation.kind].object else link.role,
    )


def _measure(
    root: str,
    reached: list[str],
    links: list[_Link],
    stopped: set[str],
    depth: int | None,
    max_nodes: int,
) -> tuple[dict[str, int], list[_Link], bool]:
    """Distances by breadth-first search, the edges walked, and whether a bound cut."""
    members = set(reached)
    adjacent: dict[str, list[str]] = {}
    for link in links:
        if link.target in members:
            adjacent.setdefault(link.source, []).append(link.target)
    distance = {root: 0}
    queue = deque([root])
    while queue:
        node = queue.popleft()
        if node in stopped or (depth is not None and distance[node] >= depth):
            continue
        for neighbour in adjacent.get(node, ()):
            if neighbour not in distance:
                distance[neighbour] = distance[node] + 1
                queue.append(neighbour)

    truncated = False
    if len(members) > max_nodes:
        # The bound cut the last level the CTE returned: leave that level out whole.
        last = max(distance.values())
        distance = {n: d for n, d in distance.items() if d < last or last == 0}
        truncated = True

    kept = []
    for link in links:
        if link.source not in distance or link.source in stopped:
            continue
        if depth is not None and distance[link.source] >= depth:
            truncated |= link.target not in members  # the depth bound cut this way short
        elif link.target in distance:
            kept.append(link)
        else:
            truncated = True
    return distance, kept, truncated


def _walk(
    store: SQLStore,
    root: str,
    direction: str,
    depth: int | None,
    stop_at: Collection[str],
    max_nodes: int,
    max_bundles: int | None,
) -> LineageGraph:
    stop = _check_bounds(depth, stop_at, max_nodes, max_bundles)
    upstream_walk = direction == "upstream"
    with store.read() as conn:
        relations: dict[str, _Relation] = {}
        if conn.dialect.name == "postgresql":
            reached, links, stopped = _breadth_first_postgresql(
                conn, root, upstream_walk, depth, stop, max_nodes, relations
            )
        else:
            reached, links, stopped = _breadth_first(
                conn, root, upstream_walk, depth, stop, max_nodes
            )
        # A root with edges the walk's way is known; only a lone one needs a look-up.
        if (
            not links
            and not conn.execute(
                sa.select(
                    sa.exists().where(_N.c.iri == root)
                    | sa.exists().where(_E.c.subject == root)
                    | sa.exists().where(_E.c.object == root)
                )
            ).scalar()
        ):
            raise NotFound(f"{root} is neither described nor related in the store", record=root)
        distance, kept, truncated = _measure(root, reached, links, stopped, depth, max_nodes)
        # Then the relations behind the edges kept (those the walk did not read yet).
        relations.update(_relations(conn, sorted({link.key for link in kept} - relations.keys())))
        order = sorted(distance, key=lambda n: (distance[n], n))
        # In the same transaction: one snapshot for the whole answer.
        described = store.nodes(order, connection=conn, max_bundles=max_bundles)
    walked = sorted(
        (_edge(link, relations[link.key], upstream_walk) for link in kept), key=_edge_key
    )
    nodes = {n: described.get(n) or _undescribed(n, walked) for n in order}
    return LineageGraph(
        root=root,
        direction=direction,
        depth=depth,
        nodes=nodes,
        distance={n: distance[n] for n in order},
        edges=walked,
        truncated=truncated,
    )


def _edge_key(edge: Edge) -> tuple[str, ...]:
    return (edge.subject, edge.object, edge.kind, edge.role or "", edge.bundle, edge.id or "")


def _undescribed(iri: str, edges: list[Edge]) -> Node:
    """A node that relations mention but no bundle describes; its kind from its role."""
    kind = "unknown"
    for edge in edges:
        signature = RELATIONS[edge.kind]
        if edge.subject == iri:
            kind = _ARGUMENT_KINDS.get(signature.subject, kind)
        elif edge.object == iri:
            kind = _ARGUMENT_KINDS.get(edge.role or signature.object, kind)
        if kind != "unknown":
            break
    return Node(id=iri, kind=kind, ml_class=None, label=None)


def upstream(
    store: SQLStore,
    node_id: str,
    *,
    depth: int | None = None,
    stop_at: Collection[str] = (),
    max_nodes: int = DEFAULT_MAX_NODES,
    max_bundles: int | None = None,
) -> LineageGraph:
    """What ``node_id`` came from: the walk from it along subject → object.

    Args:
        store: the SQL record store.
        node_id: the IRI to start from.
        depth: how many edges to follow at most (1: direct dependencies); None: all.
        stop_at: PROV-ML class names whose nodes end the walk (included, not passed).
        max_nodes: the most nodes to return; more sets ``truncated``.
        max_bundles: list at most this many bundles per node (``Node.bundle_count``
            then says how many describe it: a shared raw file can be described in
            thousands); None lists every one.

    Raises:
        NotFound: the store neither describes nor relates ``node_id``.
        QueryRejected: a bound is malformed or ``stop_at`` names no PROV-ML class.
    """
    return _walk(store, node_id, "upstream", depth, stop_at, max_nodes, max_bundles)


def downstream(
    store: SQLStore,
    node_id: str,
    *,
    depth: int | None = None,
    stop_at: Collection[str] = (),
    max_nodes: int = DEFAULT_MAX_NODES,
    max_bundles: int | None = None,
) -> LineageGraph:
    """What was made from ``node_id``: the walk from it along object → subject.

    Arguments and errors as for :func:`upstream`.
    """
    return _walk(store, node_id, "downstream", depth, stop_at, max_nodes, max_bundles)


# ------------------------------------------------------------------------- impact

#: The PROV-ML classes an impact report names, by the report's field.
IMPACT_CLASSES = {
    "model_versions": "ModelVersion",
    "inference_results": "InferenceResult",
    "evaluations": "ModelEvaluation",
}


@dataclass(frozen=True, slots=True)
class Impact(LineageGraph):
    """What a bad input reaches: its downstream graph, and the ML results in it.

    A :class:`LineageGraph` (direction ``"downstream"``), so it prints and converts like
    one, with the affected results listed nearest first.
    """

    model_versions: tuple[Node, ...] = ()
    inference_results: tuple[Node, ...] = ()
    evaluations: tuple[Node, ...] = ()


def impact(
    store: SQLStore,
    node_id: str,
    *,
    depth: int | None = None,
    stop_at: Collection[str] = (),
    max_nodes: int = DEFAULT_MAX_NODES,
    max_bundles: int | None = None,
) -> Impact:
    """Which model versions, inference results and evaluations depend on ``node_id``.

    The downstream walk (arguments and errors as for :func:`upstream`), with the
    affected ModelVersions, InferenceResults and ModelEvaluations, nearest first.
    """
    graph = downstream(
        store,
        node_id,
        depth=depth,
        stop_at=stop_at,
        max_nodes=max_nodes,
        max_bundles=max_bundles,
    )
    found: dict[str, list[Node]] = {name: [] for name in IMPACT_CLASSES}
    for iri, node in graph.nodes.items():
        if iri == node_id:
            continue
        for name, ml_class in IMPACT_CLASSES.items():
            if node.ml_class == ml_class:
                found[name].append(node)
    walked = {f.name: getattr(graph, f.name) for f in fields(LineageGraph)}
    return Impact(**walked, **{name: tuple(nodes) for name, nodes in found.items()})


# ----------------------------------------------------------------------- networkx


def to_networkx(graph: LineageGraph) -> nx.MultiDiGraph:
    """The lineage graph for networkx, edges pointing subject → object (dependency).

    Node attributes: ``kind``, ``ml_class``, ``label``, ``distance``, ``node`` (the
    :class:`Node`); edge attributes: ``kind``, ``role``, ``bundle``, ``id``, ``edge``.
    """
    g = nx.MultiDiGraph(root=graph.root, direction=graph.direction)
    for iri, node in graph.nodes.items():
        g.add_node(
            iri,
            kind=node.kind,
            ml_class=node.ml_class,
            label=node.label,
            distance=graph.distance.get(iri),
            node=node,
        )
    for edge in graph.edges:
        g.add_edge(
            edge.subject,
            edge.object,
            kind=edge.kind,
            role=edge.role,
            bundle=edge.bundle,
            id=edge.id,
            edge=edge,
        )
    return g


def derivation_path(
    store: SQLStore, source: str, target: str, *, max_nodes: int = DEFAULT_MAX_NODES
) -> list[Edge]:
    """The shortest chain of relations by which ``target`` depends on ``source``.

    Edges come in order from ``source`` to ``target``: the first edge's ``object`` is
    ``source``, the last edge's ``subject`` is ``target``, and each edge's subject is the
    next edge's object. Where relations run in parallel the first in (kind, role,
    bundle, id) order is taken, so the answer is the same on every backend.

    Raises:
        NotFound: ``target`` does not depend on ``source`` (within ``max_nodes``).
    """
    graph = upstream(store, target, max_nodes=max_nodes)
    if source == target:
        return []
    g = to_networkx(graph)
    if source not in g:
        raise NotFound(
            f"{target} does not depend on {source}"
            + (" within the node bound" if graph.truncated else ""),
            record=target,
        )
    nodes = nx.shortest_path(g, target, source)
    path = []
    for subject, obj in pairwise(nodes):
        parallel = [data["edge"] for data in g.get_edge_data(subject, obj).values()]
        path.append(min(parallel, key=_edge_key))
    path.reverse()
    return path


# --------------------------------------------------------------------------- diff

_DATA_CLASSES = frozenset(
    {"DomainData", "FeatureSetData", "FeatureSet", "Feature", "DatasetCharacteristic"}
)
_HYPERPARAMETER_CLASSES = frozenset(
    {
        "LearningHyperparameterValue",
        "ModelHyperparameterValue",
        "LearningHyperparameter",
        "ModelHyperparameter",
    }
)
_MODEL_CLASSES = frozenset({"ModelVersion", "Model"})
_PROV_PLAN = PROV + "Plan"
_NAME, _VALUE, _CODE_VERSION = ml("name"), ml("hyperparameterValue"), ml("codeVersion")


@dataclass(frozen=True, slots=True)
class CategoryDiff:
    """The nodes of one category in either lineage, by IRI."""

    only_a: tuple[Node, ...] = ()
    only_b: tuple[Node, ...] = ()
    common: tuple[Node, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.only_a or self.only_b)


@dataclass(frozen=True, slots=True)
class ValueChange:
    """A named setting whose values differ; each side lists its values, sorted."""

    name: str
    a: tuple[str, ...]
    b: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LineageDiff:
    """How the upstream lineages of two model versions differ, by category.

    Each lineage stops at other model versions (a fine-tuned version shows its base
    model under ``models`` rather than inheriting the base model's whole recipe).
    """

    version_a: str
    version_b: str
    data: CategoryDiff
    hyperparameters: CategoryDiff
    hyperparameter_changes: tuple[ValueChange, ...]  # by provml:name
    code: CategoryDiff  # agents, plans, algorithms
    code_versions: ValueChange | None  # provml:codeVersion values, when they differ
    executions: CategoryDiff
    models: CategoryDiff  # base model versions and models
    truncated: bool = False

    @property
    def identical(self) -> bool:
        categories = (self.data, self.hyperparameters, self.code, self.executions, self.models)
        return not any(c.changed for c in categories) and self.code_versions is None


def _text(value: AttrValue) -> str:
    if isinstance(value, Literal):
        return value.lexical
    if isinstance(value, Ref):
        return value.iri
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _first(node: Node, *names: str) -> str | None:
    for name in names:
        for key, value in node.attributes:
            if key == name:
                return _text(value)
    return None


def _is_code(node: Node) -> bool:
    if node.kind == "agent" or node.ml_class == "Algorithm":
        return True
    if node.ml_class and ML_CLASS_BY_NAME[node.ml_class].prov_class == "Plan":
        return True
    return any(_text(v) == _PROV_PLAN for k, v in node.attributes if k == PROV_TYPE)


def _recipe(graph: LineageGraph) -> dict[str, Node]:
    """The nodes of a version's own recipe: its upstream graph without what it reaches
    through an entity another training generated (a base model's weights file).

    Such an entity stays (the fine-tuned version did use it); the training behind it,
    and its data and settings, belong to the base version's recipe. The walk already
    stops at other ModelVersions; this also stops at their artifacts, which capture
    records as plain files.
    """
    generated_by: dict[str, set[str]] = {}
    depends_on: dict[str, set[str]] = {}
    for edge in graph.edges:
        depends_on.setdefault(edge.subject, set()).add(edge.object)
        if edge.kind == "wasGeneratedBy" and edge.role is None:
            generated_by.setdefault(edge.subject, set()).add(edge.object)
    own = generated_by.get(graph.root, set())

    def foreign(iri: str) -> bool:
        return any(
            activity not in own
            and (node := graph.nodes.get(activity)) is not None
            and node.ml_class == "TrainingExecution"
            for activity in generated_by.get(iri, ())
        )

    seen, frontier = {graph.root}, [graph.root]
    while frontier:
        iri = frontier.pop()
        if iri != graph.root and foreign(iri):
            continue
        for target in depends_on.get(iri, ()):
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    return {iri: node for iri, node in graph.nodes.items() if iri in seen}


def _categories(nodes: dict[str, Node], root: str) -> dict[str, dict[str, Node]]:
    out: dict[str, dict[str, Node]] = {
        name: {} for name in ("data", "hyperparameters", "code", "executions", "models")
    }
    for iri, node in nodes.items():
        if iri == root:
            continue
        if node.ml_class in _DATA_CLASSES:
            out["data"][iri] = node
        elif node.ml_class in _HYPERPARAMETER_CLASSES:
            out["hyperparameters"][iri] = node
        elif node.ml_class in _MODEL_CLASSES:
            out["models"][iri] = node
        elif node.kind == "activity":
            out["executions"][iri] = node
        elif _is_code(node):
            out["code"][iri] = node
    return out


def _compare(a: dict[str, Node], b: dict[str, Node]) -> CategoryDiff:
    return CategoryDiff(
        only_a=tuple(a[i] for i in sorted(a.keys() - b.keys())),
        only_b=tuple(b[i] for i in sorted(b.keys() - a.keys())),
        common=tuple(a[i] for i in sorted(a.keys() & b.keys())),
    )


def _settings(nodes: Iterable[Node]) -> dict[str, tuple[str, ...]]:
    values: dict[str, set[str]] = {}
    for node in nodes:
        if node.ml_class not in ("LearningHyperparameterValue", "ModelHyperparameterValue"):
            continue
        name = _first(node, _NAME, PROV_LABEL) or node.id
        value = _first(node, _VALUE, PROV_VALUE)
        values.setdefault(name, set()).update(() if value is None else (value,))
    return {name: tuple(sorted(v)) for name, v in values.items()}


def _code_versions(nodes: dict[str, Node]) -> tuple[str, ...]:
    return tuple(
        sorted(
            {_text(v) for node in nodes.values() for k, v in node.attributes if k == _CODE_VERSION}
        )
    )


def diff(
    store: SQLStore,
    version_a: str,
    version_b: str,
    *,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> LineageDiff:
    """Compare the upstream lineages of two model versions.

    Categories: data (DomainData, FeatureSetData, …), hyperparameters (with the values
    that changed by ``provml:name``), code (agents, plans, algorithms and the
    ``provml:codeVersion`` values), executions (activities) and models (upstream model
    versions, e.g. the base of a fine-tuning). Each side is the version's own recipe
    (:func:`_recipe`): what its base version's training used is the base's.

    Raises:
        NotFound: either version is unknown to the store.
    """
    graphs = [
        upstream(store, version, stop_at=("ModelVersion",), max_nodes=max_nodes)
        for version in (version_a, version_b)
    ]
    recipes = [_recipe(g) for g in graphs]
    cats_a, cats_b = (_categories(r, g.root) for r, g in zip(recipes, graphs, strict=True))
    settings_a = _settings(cats_a["hyperparameters"].values())
    settings_b = _settings(cats_b["hyperparameters"].values())
    changes = tuple(
        ValueChange(name, settings_a.get(name, ()), settings_b.get(name, ()))
        for name in sorted(settings_a.keys() | settings_b.keys())
        if settings_a.get(name, ()) != settings_b.get(name, ())
    )
    code_a, code_b = (_code_versions(r) for r in recipes)
    return LineageDiff(
        version_a=version_a,
        version_b=version_b,
        data=_compare(cats_a["data"], cats_b["data"]),
        hyperparameters=_compare(cats_a["hyperparameters"], cats_b["hyperparameters"]),
        hyperparameter_changes=changes,
        code=_compare(cats_a["code"], cats_b["code"]),
        code_versions=ValueChange("codeVersion", code_a, code_b) if code_a != code_b else None,
        executions=_compare(cats_a["executions"], cats_b["executions"]),
        models=_compare(cats_a["models"], cats_b["models"]),
        truncated=any(g.truncated for g in graphs),
    )
