"""The lineage web UI: the pages under ``/ui/`` and the few JSON answers only they need.

Every page is the same static shell (``api/ui/index.html``) whose script (``app.js``)
reads the path and draws the page from the public ``/api/v1`` routes, plus the
``/api/v1/ui/...`` routes here: home summary, node lookup without a 404, a model's
versions with their metrics, a run's timeline and metric series, the SPARQL examples
filled in with IRIs from this store, and the PROV export of exactly the subgraph the
lineage view shows. Pages and static files carry no data, so they need no token; the JSON
routes are guarded like every other read.

Imports: FastAPI, SQLAlchemy Core (read-only counting queries over the store's tables)
and provml core, store, lineage and api modules; never provml.capture.
"""

from __future__ import annotations

from datetime import datetime
from importlib.resources import files
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from provml import lineage, prov_io
from provml.api._deps import READ, Sql
from provml.api._export import choose_format
from provml.api._query import get_model_version_lineage
from provml.errors import NotFound, QueryRejected
from provml.ids import iri
from provml.queries import EXAMPLES
from provml.records import Bundle, Element, Relation
from provml.store import models as tables
from provml.store.base import Node
from provml.store.sql import SQLStore
from provml.views import node_view
from provml.vocab import ml

UI_DIR = files("provml.api") / "ui"
# Path pages: each is the same shell; app.js draws the page its path names.
PAGES = ("", "search", "model", "lineage", "compare", "run", "sparql", "node")
MAX_EXPORT_NODES = 5000
_RECENT = 8
_STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

pages = APIRouter(include_in_schema=False)
data = APIRouter(prefix="/api/v1/ui", tags=["web ui"], dependencies=READ)


# ------------------------------------------------------------------------------ pages


@pages.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui/")


def _shell() -> FileResponse:
    # no-store: a new provml version must not be drawn by a cached older script.
    return FileResponse(
        str(UI_DIR / "index.html"),
        media_type="text/html; charset=utf-8",
        headers={"Cache-Control": "no-store"},
    )


@pages.get("/ui/")
def home_page() -> FileResponse:
    return _shell()


@pages.get("/ui/{page}")
def page(page: str) -> FileResponse:
    if page not in PAGES:
        raise NotFound(f"the web UI has no page {page!r}", page=page)
    return _shell()


@pages.get("/ui/static/{name}")
def static(name: str) -> FileResponse:
    # Names only, never paths: nothing outside api/ui/ can be asked for.
    suffix = name[name.rfind(".") :] if "." in name else ""
    path = UI_DIR / name
    if "/" in name or "\\" in name or suffix not in _STATIC_TYPES or not path.is_file():
        raise NotFound(f"the web UI has no file {name!r}", file=name)
    return FileResponse(
        str(path), media_type=_STATIC_TYPES[suffix], headers={"Cache-Control": "no-cache"}
    )


# ------------------------------------------------------------------------------ helpers


def _attribute(node: Node, local_name: str) -> Any:
    wanted = ml(local_name)
    for name, value in node.attributes:
        if name == wanted:
            return getattr(value, "lexical", value)
    return None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _brief(node: Node) -> dict[str, Any]:
    """A node without its attributes, for lists."""
    return {
        "id": node.id,
        "kind": node.kind,
        "class": node.ml_class,
        "label": node.label,
        "startTime": _iso(node.start_time),
        "endTime": _iso(node.end_time),
        "status": _attribute(node, "status"),
        "bundles": list(node.bundles),
    }


def _summary(store: SQLStore) -> dict[str, Any]:
    nodes, relations = tables.nodes, tables.relations
    with store.read() as conn:
        distinct = sa.select(nodes.c.iri, nodes.c.kind, nodes.c.ml_class).distinct().subquery()
        counts = conn.execute(
            sa.select(distinct.c.kind, distinct.c.ml_class, sa.func.count()).group_by(
                distinct.c.kind, distinct.c.ml_class
            )
        ).all()
        bundles = conn.scalar(sa.select(sa.func.count()).select_from(tables.bundles)) or 0
        runs = list(
            conn.scalars(
                sa.select(nodes.c.iri)
                .where(nodes.c.ml_class == "WorkflowExecution")
                .group_by(nodes.c.iri)
                .order_by(sa.func.max(nodes.c.start_utc).desc(), nodes.c.iri)
                .limit(_RECENT)
            )
        )
        # A cheap textual prefilter; the status attribute itself is checked below.
        failed_candidates = list(
            conn.scalars(
                sa.select(nodes.c.iri)
                .where(nodes.c.kind == "activity")
                .where(sa.cast(nodes.c.attributes, sa.Text).contains('"failed"'))
                .group_by(nodes.c.iri)
                .order_by(sa.func.max(nodes.c.start_utc).desc(), nodes.c.iri)
                .limit(200)
            )
        )
        activity = nodes.alias("activity")
        created = sa.func.max(sa.func.coalesce(relations.c.time_utc, activity.c.end_utc))
        versions = conn.execute(
            sa.select(nodes.c.iri, created.label("created"))
            .select_from(
                nodes.outerjoin(
                    relations,
                    sa.and_(
                        relations.c.subject == nodes.c.iri,
                        relations.c.kind == "wasGeneratedBy",
                    ),
                ).outerjoin(activity, activity.c.iri == relations.c.object)
            )
            .where(nodes.c.ml_class == "ModelVersion")
            .group_by(nodes.c.iri)
            .order_by(sa.case((created.is_(None), 1), else_=0), created.desc(), nodes.c.iri)
            .limit(_RECENT)
        ).all()
    found = store.nodes([*runs, *failed_candidates, *(v.iri for v in versions)])
    by_class: dict[str, int] = {}
    by_kind: dict[str, int] = {}
    for kind, ml_class, count in counts:
        by_kind[kind] = by_kind.get(kind, 0) + count
        if ml_class:
            by_class[ml_class] = by_class.get(ml_class, 0) + count
    failed = [
        _brief(found[i])
        for i in failed_candidates
        if i in found and _attribute(found[i], "status") == "failed"
    ]
    return {
        "bundles": bundles,
        "kinds": by_kind,
        "classes": dict(sorted(by_class.items())),
        "recent_runs": [_brief(found[i]) for i in runs if i in found],
        "failed_executions": failed[:_RECENT],
        "newest_model_versions": [
            {**_brief(found[v.iri]), "created": v.created.isoformat() + "Z" if v.created else None}
            for v in versions
            if v.iri in found
        ],
    }


# ------------------------------------------------------------------------------ routes


@data.get("/summary", summary="Counts and recent activity for the home page")
async def summary(store: Sql) -> dict[str, Any]:
    return await run_in_threadpool(_summary, store)


@data.get("/lookup", summary="A node if the store knows it, else similar nodes (never 404)")
def lookup(store: Sql, id: Annotated[str, Query(max_length=4000)]) -> dict[str, Any]:
    # Pages ask here first, so an unknown id is a message on the page, not a failed
    # request in the browser console.
    node = store.nodes([id]).get(id)
    if node is not None:
        return {"node": node_view(node), "bundle": None, "suggestions": []}
    try:
        return {"node": None, "bundle": store.get_bundle(id).id, "suggestions": []}
    except NotFound:
        pass
    text = id.rstrip("/").rsplit("/", 1)[-1][:100]
    similar = store.find_nodes(text=text, limit=8) if text else []
    return {"node": None, "bundle": None, "suggestions": [_brief(n) for n in similar]}


def _version_row(store: SQLStore, version: Node) -> dict[str, Any]:
    parts = get_model_version_lineage(store, version.id, max_nodes=lineage.DEFAULT_MAX_NODES)
    graph = lineage.upstream(store, version.id, depth=1)
    producers = [
        e.object for e in graph.edges if e.kind == "wasGeneratedBy" and e.subject == version.id
    ]
    created = [e.time for e in graph.edges if e.kind == "wasGeneratedBy" and e.time is not None]
    activities = store.nodes(producers)
    if not created:
        created = [a.end_time for a in activities.values() if a.end_time is not None]
    # The final value of each metric: the one at the highest step.
    final: dict[str, tuple[float, Any]] = {}
    for metric in parts["metrics"]:
        attrs = dict((name, value) for name, value in metric["attributes"])
        name = attrs.get(ml("name"))
        value = attrs.get(ml("metricValue"))
        step = attrs.get(ml("step"))
        step = step if isinstance(step, int | float) else -1
        if name is not None and (name not in final or step >= final[name][0]):
            final[str(name)] = (step, value)
    nearest = min((d.get("distance", 99) for d in parts["datasets"]), default=None)
    return {
        "version": _brief(version),
        "number": _attribute(version, "versionNumber"),
        "created": max(created).isoformat() if created else None,
        "training": [_brief(a) for a in activities.values()],
        "metrics": {name: value for name, (_, value) in sorted(final.items())},
        "datasets": [
            {"id": d["id"], "label": d["label"], "class": d["class"]}
            for d in parts["datasets"]
            if d.get("distance") == nearest
        ],
    }


def _model(store: SQLStore, model_id: str) -> dict[str, Any]:
    node = store.nodes([model_id]).get(model_id)
    if node is None:
        raise NotFound(f"no element {model_id} in the store", record=model_id)
    if node.ml_class == "ModelVersion":
        up = lineage.upstream(store, model_id, depth=1)
        general = [e.object for e in up.edges if e.kind == "specializationOf"]
        if general:
            return _model(store, general[0])
    down = lineage.downstream(store, model_id, depth=1)
    version_ids = [
        e.subject for e in down.edges if e.kind == "specializationOf" and e.object == model_id
    ]
    versions = [n for n in store.nodes(version_ids).values() if n.ml_class == "ModelVersion"]
    rows = [_version_row(store, v) for v in versions]
    rows.sort(key=lambda r: (r["number"] is None, r["number"] or 0, r["version"]["id"]))
    return {"model": node_view(node), "versions": rows}


@data.get("/model", summary="A model with its versions, their metrics, runs and data")
async def model(store: Sql, id: Annotated[str, Query(max_length=4000)]) -> dict[str, Any]:
    return await run_in_threadpool(_model, store, id)


def _bundle_of(store: SQLStore, run_id: str) -> Bundle:
    node = store.nodes([run_id]).get(run_id)
    if node is not None and node.bundles:
        return store.get_bundle(node.bundles[0])
    return store.get_bundle(run_id)  # raises NotFound when it is no bundle either


def _run(store: SQLStore, run_id: str) -> dict[str, Any]:
    bundle = _bundle_of(store, run_id)
    elements = [r for r in bundle.records if isinstance(r, Element)]
    relations = [r for r in bundle.records if isinstance(r, Relation)]
    merged = store.nodes(e.id for e in elements)
    parent = {r.subject: r.object for r in relations if r.kind == "wasInformedBy"}
    generated_by = {r.subject: r.object for r in relations if r.kind == "wasGeneratedBy"}
    activities = [merged[e.id] for e in elements if e.kind == "activity" and e.id in merged]

    def depth(activity: str) -> int:
        seen, level = {activity}, 0
        while activity in parent and parent[activity] not in seen:
            activity = parent[activity]
            seen.add(activity)
            level += 1
        return level

    timeline = []
    for a in sorted(activities, key=lambda n: (n.start_time is None, n.start_time or 0, n.id)):
        duration = (
            (a.end_time - a.start_time).total_seconds()
            if a.start_time is not None and a.end_time is not None
            else None
        )
        timeline.append(
            {**_brief(a), "parent": parent.get(a.id), "depth": depth(a.id), "duration": duration}
        )
    series: dict[str, list[dict[str, Any]]] = {}
    for e in elements:
        node = merged.get(e.id)
        if node is None or node.ml_class != "MetricValue":
            continue
        name, value, step = (
            _attribute(node, "name"),
            _attribute(node, "metricValue"),
            _attribute(node, "step"),
        )
        if name is None or not isinstance(value, int | float) or isinstance(value, bool):
            continue
        series.setdefault(str(name), []).append(
            {"step": step, "value": value, "activity": generated_by.get(e.id)}
        )
    for points in series.values():
        points.sort(key=lambda p: (p["step"] is None, p["step"] or 0))
    root = next((a for a in activities if a.ml_class == "WorkflowExecution"), None)
    return {
        "bundle": bundle.id,
        "run": _brief(root) if root is not None else None,
        "timeline": timeline,
        "metrics": dict(sorted(series.items())),
    }


@data.get("/run", summary="A workflow run's execution timeline and metric series")
async def run(store: Sql, id: Annotated[str, Query(max_length=4000)]) -> dict[str, Any]:
    return await run_in_threadpool(_run, store, id)


def _first(store: SQLStore, ml_class: str) -> str | None:
    found = store.find_nodes(ml_class=ml_class, limit=1)
    return found[0].id if found else None


def _examples(store: SQLStore) -> list[dict[str, Any]]:
    summary = _summary(store)
    newest = summary["newest_model_versions"]
    hosts = [
        _attribute(n, "host")
        for n in store.find_nodes(kind="agent", limit=50)
        if _attribute(n, "host") is not None
    ]
    raw_file = None
    if newest:
        raw_file = next(
            iter(store.find_nodes(ml_class="DomainData", text=".npy", limit=1)), None
        ) or next(iter(store.find_nodes(ml_class="DomainData", limit=1)), None)
    values = {
        "version": newest[0]["id"] if newest else _first(store, "ModelVersion"),
        "model": _first(store, "Model"),
        "file": raw_file.id if raw_file is not None else _first(store, "DomainData"),
        # A host is a literal, not an IRI: the example is rendered by hand below.
        "host": None,
    }
    out = []
    for example in EXAMPLES:
        params = {p: values.get(p) or iri("example", p) for p in example.params if p != "host"}
        text = example.render(**params, **({"host": "HOST"} if "host" in example.params else {}))
        if "host" in example.params:
            host = str(hosts[0] if hosts else "localhost").replace("\\", "").replace('"', "")
            text = text.replace("<HOST>", f'"{host}"')
        out.append({"name": example.name, "question": example.question, "query": text})
    return out


@data.get("/examples", summary="The documented SPARQL examples, filled in from this store")
async def examples(store: Sql) -> list[dict[str, Any]]:
    return await run_in_threadpool(_examples, store)


def _subgraph_bundle(store: SQLStore, ids: list[str]) -> Bundle:
    """The shown nodes and every stored relation between two of them, as one bundle."""
    wanted = set(ids)
    found = store.nodes(wanted)
    if not found:
        raise NotFound("none of the given nodes is in the store", records=len(wanted))
    namespaces: dict[str, str] = {}
    relations: dict[tuple[Any, ...], Relation] = {}
    for bundle_id in sorted({b for n in found.values() for b in n.bundles}):
        bundle = store.get_bundle(bundle_id)
        for prefix, uri in bundle.namespaces:
            namespaces.setdefault(prefix, uri)
        for record in bundle.records:
            if isinstance(record, Relation) and record.subject in found and record.object in found:
                key = (record.kind, record.subject, record.object, record.id)
                relations.setdefault(key, record)
    elements = [
        Element(n.kind, n.id, n.attributes, n.start_time, n.end_time)
        for _, n in sorted(found.items())
    ]
    return Bundle(
        iri("lineage", "subgraph"),
        (*elements, *relations.values()),
        tuple(sorted(namespaces.items())),
    )


@data.post(
    "/export",
    summary="The lineage subgraph the UI shows (its nodes and the relations among them)",
    response_class=Response,
)
async def export_subgraph(
    request: Request,
    store: Sql,
    ids: Annotated[list[str], Body(embed=True, description="IRIs of the shown nodes")],
    format: Annotated[str | None, Query(description="a PROV export format name")] = None,
) -> Response:
    if not ids or len(ids) > MAX_EXPORT_NODES:
        raise QueryRejected(
            f"send between 1 and {MAX_EXPORT_NODES} node IRIs", field="ids", count=len(ids)
        )
    fmt = choose_format(format, request.headers.get("accept"))
    bundle = await run_in_threadpool(_subgraph_bundle, store, ids)
    data = await run_in_threadpool(prov_io.serialize, [bundle], fmt)
    return Response(data, media_type=prov_io.FORMATS[fmt].media_type)


# One router for create_app; included last, as include_router copies the routes it has.
router = APIRouter()
router.include_router(pages)
router.include_router(data)

__all__ = ["router"]
