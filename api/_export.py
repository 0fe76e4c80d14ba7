"""PROV export over HTTP: a stored bundle, or the lineage subgraph of a node.

The format comes from a ``format`` parameter or the Accept header: PROV-JSON
(``application/json``), PROV-XML (``application/xml``), PROV-N
(``text/provenance-notation``), Turtle, JSON-LD, TriG, N-Quads.

Imports: FastAPI and provml core, store and lineage modules.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from provml import lineage, prov_io
from provml.api._deps import READ, Sql
from provml.api._errors import NotAcceptable
from provml.api._query import Depth, MaxNodes, NodeId, StopAt, walk
from provml.api._schemas import BundleInfoView, ErrorBody
from provml.api._sparql import _accepted
from provml.errors import NotFound
from provml.ids import iri
from provml.records import Bundle, Element, Relation
from provml.store.base import LineageGraph
from provml.store.sql import SQLStore

router = APIRouter(prefix="/api/v1", tags=["export"], dependencies=READ)

FormatName = Annotated[
    str | None,
    Query(
        description=f"one of {', '.join(prov_io.EXPORT_FORMATS)}; default from Accept, else json"
    ),
]
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the PROV document",
        "content": {prov_io.FORMATS[n].media_type: {} for n in prov_io.EXPORT_FORMATS},
    },
    404: {"model": ErrorBody, "description": "no such bundle or node"},
    406: {"model": ErrorBody, "description": "no PROV format matches the Accept header"},
}


def choose_format(fmt: str | None, accept: str | None) -> str:
    """An export format name from a ``format`` parameter, else the Accept header."""
    if fmt:
        if fmt not in prov_io.EXPORT_FORMATS:
            raise NotAcceptable(
                f"cannot export as {fmt!r}; choose one of {', '.join(prov_io.EXPORT_FORMATS)}",
                format=fmt,
            )
        return fmt
    ranges = _accepted(accept)
    if not ranges:
        return "json"
    for media in ranges:
        if media in ("*/*", "application/*"):
            return "json"
        for name in prov_io.EXPORT_FORMATS:
            spec = prov_io.FORMATS[name]
            if media in (spec.media_type, *spec.media_aliases):
                return name
    raise NotAcceptable(
        "no PROV format matches the Accept header; available: "
        + ", ".join(prov_io.FORMATS[n].media_type for n in prov_io.EXPORT_FORMATS),
        accept=accept,
    )


def _document(bundles: list[Bundle], fmt: str) -> Response:
    data = prov_io.serialize(bundles, fmt)
    return Response(data, media_type=prov_io.FORMATS[fmt].media_type)


@router.get("/bundles", response_model=list[BundleInfoView], summary="Every stored bundle")
def list_bundles(store: Sql) -> list[dict[str, Any]]:
    return [
        {"id": b.id, "parent": b.parent, "records": b.records, "created": b.created.isoformat()}
        for b in store.list_bundles()
    ]


@router.get(
    "/bundles/export",
    summary="A bundle (with the bundles nested in it) as a PROV document",
    response_class=Response,
    responses=_RESPONSES,
)
async def export_bundle(
    request: Request,
    store: Sql,
    id: Annotated[str, Query(description="the bundle's IRI")],
    format: FormatName = None,
) -> Response:
    fmt = choose_format(format, request.headers.get("accept"))
    bundles = await run_in_threadpool(store.document, id)
    return await run_in_threadpool(_document, bundles, fmt)


def lineage_bundle(store: SQLStore, graph: LineageGraph) -> Bundle:
    """The records of a lineage subgraph as one bundle: its elements and the relations walked.

    Relations come from the bundles that hold them, so they keep their ids, times,
    extra arguments and attributes.
    """
    keys = {(e.kind, e.subject, e.object, e.id) for e in graph.edges if e.role is None}
    namespaces: dict[str, str] = {}
    relations: dict[tuple[Any, ...], Relation] = {}
    for bundle_id in sorted({e.bundle for e in graph.edges}):
        bundle = store.get_bundle(bundle_id)
        for prefix, uri in bundle.namespaces:
            namespaces.setdefault(prefix, uri)
        for record in bundle.records:
            if isinstance(record, Relation):
                key = (record.kind, record.subject, record.object, record.id)
                if key in keys:
                    relations.setdefault(key, record)
    elements = [
        Element(n.kind, n.id, n.attributes, n.start_time, n.end_time)
        for _, n in sorted(graph.nodes.items())
        if n.kind in ("entity", "activity", "agent")
    ]
    name = hashlib.blake2b(f"{graph.direction}\n{graph.root}".encode(), digest_size=16).hexdigest()
    return Bundle(
        iri("lineage", name),
        (*elements, *relations.values()),
        tuple(sorted(namespaces.items())),
    )


@router.get(
    "/lineage/export",
    summary="The lineage subgraph of a node as a PROV document",
    response_class=Response,
    responses=_RESPONSES,
)
async def export_lineage(
    request: Request,
    store: Sql,
    id: NodeId,
    direction: Annotated[str, Query(pattern="^(up|down)$")] = "up",
    depth: Depth = None,
    stop_at: StopAt = None,
    max_nodes: MaxNodes = lineage.DEFAULT_MAX_NODES,
    format: FormatName = None,
) -> Response:
    fmt = choose_format(format, request.headers.get("accept"))
    graph = await run_in_threadpool(walk, store, id, direction, depth, stop_at, max_nodes)
    if not graph.nodes:
        raise NotFound(f"no element {id} in the store", record=id)
    bundle = await run_in_threadpool(lineage_bundle, store, graph)
    return await run_in_threadpool(_document, [bundle], fmt)
