"""OpenLineage ingest: ``POST /api/v1/openlineage`` takes one RunEvent per request.

A pipeline that already emits OpenLineage (Airflow, Spark, dbt, the ``openlineage-python``
client's HTTP transport) reports into provml by pointing its transport here, e.g.
``url: http://provml:8000``, ``endpoint: api/v1/openlineage``, an ``api_key`` auth with
the write token. The event becomes one bundle (see :mod:`provml.openlineage` for the
mapping), stored in one transaction, idempotent: the same event again stores nothing.

Imports: FastAPI and provml core modules; never provml.capture.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from provml.api._deps import WRITE, MetricsDep, ServicesDep
from provml.api._ingest import json_body, read_body
from provml.api._schemas import ErrorBody, IngestAnswer
from provml.openlineage import EVENT_TYPES, MappedEvent, map_run_event

router = APIRouter(prefix="/api/v1", tags=["ingest"], dependencies=WRITE)


class OpenLineageAnswer(IngestAnswer):
    """What one OpenLineage event stored, and the IRIs it was stored under."""

    bundle: str = Field(description="the IRI of the run's bundle (one per runId)")
    run: str = Field(description="the IRI of the run's activity")
    job: str = Field(description="the IRI of the job's plan")
    eventType: str | None = Field(description="the event's type as sent")
    inputs: list[str] = Field(description="IRIs of the input datasets, in event order")
    outputs: list[str] = Field(description="IRIs of the output datasets, in event order")


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "the body is not readable (bad JSON or gzip)"),
        (401, "a write token is configured and none was sent"),
        (403, "the token does not allow writes"),
        (409, "the event contradicts what is stored (e.g. a second end time); nothing was stored"),
        (413, "the body is larger than the configured limit"),
        (415, "the Content-Encoding is not supported"),
        (422, "the event breaks the OpenLineage spec; details.field is the JSON path"),
        (503, "the store is unavailable or its schema is behind"),
    )
}

_NAMED = {
    "type": "object",
    "required": ["namespace", "name"],
    "properties": {
        "namespace": {"type": "string"},
        "name": {"type": "string"},
        "facets": {"type": "object", "additionalProperties": {"type": "object"}},
    },
}

#: The part of OpenLineage's RunEvent schema (2-0-2) that provml reads; other members
#: are accepted and ignored, as the spec's extensibility requires.
RUN_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["eventTime", "producer", "run", "job"],
    "properties": {
        "eventType": {"type": "string", "enum": list(EVENT_TYPES)},
        "eventTime": {"type": "string", "format": "date-time"},
        "producer": {"type": "string", "format": "uri"},
        "schemaURL": {"type": "string", "format": "uri"},
        "run": {
            "type": "object",
            "required": ["runId"],
            "properties": {
                "runId": {"type": "string", "format": "uuid"},
                "facets": {"type": "object", "additionalProperties": {"type": "object"}},
            },
        },
        "job": _NAMED,
        "inputs": {"type": "array", "items": _NAMED},
        "outputs": {"type": "array", "items": _NAMED},
    },
    "example": {
        "eventType": "COMPLETE",
        "eventTime": "2026-01-05T10:00:00Z",
        "producer": "https://github.com/OpenLineage/OpenLineage/tree/1.54.0/client/python",
        "run": {"runId": "01941f29-7c00-7000-8000-000000000001"},
        "job": {"namespace": "airflow", "name": "curate.tiles"},
        "inputs": [{"namespace": "s3://survey", "name": "raw/cube-a.segy"}],
        "outputs": [{"namespace": "s3://survey", "name": "curated/tiles"}],
    },
}


def _map(data: bytes) -> MappedEvent:
    return map_run_event(json_body(data))


@router.post(
    "/openlineage",
    response_model=OpenLineageAnswer,
    summary="Ingest one OpenLineage RunEvent (START, RUNNING, COMPLETE, FAIL, ABORT, OTHER)",
    description=(
        "The body is an OpenLineage RunEvent as JSON, plain or with "
        "`Content-Encoding: gzip`, as the OpenLineage HTTP transport sends it. Every event "
        "of a run is stored in the run's bundle in one transaction; START and COMPLETE "
        "merge into one activity with both times; sending an event again stores "
        "nothing new (`unchanged`). Jobs become plans, runs activities, datasets "
        "entities; schema and column-lineage facets become column entities and "
        "derivations between them."
    ),
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": RUN_EVENT_SCHEMA}},
        }
    },
)
async def ingest_openlineage(
    request: Request, services: ServicesDep, metrics: MetricsDep
) -> dict[str, Any]:
    data = await read_body(request, services.settings.max_body_bytes)
    mapped = await run_in_threadpool(_map, data)
    result = await run_in_threadpool(services.sql.ingest, [mapped.bundle])
    if services.projector is not None:
        services.projector.wake()
    answer = {
        "bundles": 1,
        "records": len(mapped.bundle.records),
        "inserted": result.inserted,
        "unchanged": result.unchanged,
        "merged": result.merged,
    }
    metrics.inc("provml_ingest_batches_total", source="openlineage")
    for outcome in ("inserted", "unchanged", "merged"):
        metrics.inc("provml_ingest_records_total", answer[outcome], outcome=outcome)
    return {
        **answer,
        "bundle": mapped.bundle.id,
        "run": mapped.run,
        "job": mapped.job,
        "eventType": mapped.event_type,
        "inputs": list(mapped.inputs),
        "outputs": list(mapped.outputs),
    }
