"""Liveness, readiness and Prometheus metrics.

Imports: FastAPI and provml's api modules.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from provml.api._deps import MetricsDep, ServicesDep
from provml.api._metrics import CONTENT_TYPE
from provml.api._schemas import Health, Readiness
from provml.errors import ProvmlError

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is alive")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="SQL and RDF stores reachable and the schema current",
    responses={503: {"model": Readiness, "description": "a store is not ready"}},
)
def readyz(services: ServicesDep) -> JSONResponse:
    sql: dict[str, object] = {"backend": services.location.backend}
    rdf: dict[str, object] = {"owner": services.owns_rdf}
    if not services.owns_rdf:  # what this process's SPARQL reads: see provml._rdf_snapshots
        # Never the owner's live directory; nothing (SPARQL answers 503) until the owner
        # has published a snapshot.
        rdf["reads"] = "published snapshot" if services.rdf.reads_copy else "nothing yet"
    ready = True
    try:
        services.sql.check_schema()
        sql.update(status="ok", revision=services.sql.current_revision())
        sql["outbox_pending"] = services.sql.outbox_backlog(10_000)
    except ProvmlError as exc:
        ready = False
        sql.update(status=exc.code, message=exc.message)
    try:
        # Ready while the RDF store is rebuilt or not yet published: REST reads SQL.
        # A reader with no snapshot yet has nothing to count: it never opens the owner's
        # live directory (see provml._rdf_snapshots).
        walkable = services.owns_rdf or services.rdf.reads_copy
        rdf.update(
            status="ok",
            # Counted in the background, at the projector's priority: it is no request's
            # work, and at normal priority it took the cores from the catch-up.
            quads=services.rdf.recent_count(in_thread=services.lower_priority)
            if walkable
            else None,
            rebuilding=services.rdf.needs_rebuild,
        )
        if services.projector is not None and services.projector.last_error:
            rdf["projection_error"] = services.projector.last_error
        if services.rdf.unprojectable:  # stored in SQL, missing from SPARQL (logged)
            rdf["unprojectable_bundles"] = sorted(services.rdf.unprojectable)[:100]
    except ProvmlError as exc:
        ready = False
        rdf.update(status=exc.code, message=exc.message)
    body = Readiness(status="ready" if ready else "unavailable", sql=sql, rdf=rdf)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE.split(";")[0]: {}}}},
)
def metrics(services: ServicesDep, registry: MetricsDep) -> Response:
    gauges = {
        "provml_uptime_seconds": (
            "Seconds since the service started.",
            time.time() - services.started,
        )
    }
    gauges["provml_rdf_unprojectable_bundles"] = (
        "Bundles the RDF projector could not turn into quads (stored in SQL only; logged).",
        len(services.rdf.unprojectable),
    )
    try:
        # Capped: a count, not a scan of a huge backlog, on every scrape.
        pending = len(services.sql.outbox_pending(10_000))
        gauges["provml_rdf_outbox_pending"] = (
            "Outbox rows (changed bundles) waiting for RDF projection, capped at 10000.",
            pending,
        )
    except ProvmlError:
        pass  # /readyz reports an unreachable store; metrics still answer
    return Response(registry.render(gauges), media_type=CONTENT_TYPE)
