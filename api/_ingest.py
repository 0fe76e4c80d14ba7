"""Ingest: record batches from the capture exporter and whole PROV documents.

Both end in one :meth:`SQLStore.ingest` call, one transaction, idempotent by record id;
the RDF projector is woken afterwards and the answer does not wait for it.

Imports: FastAPI and provml core modules; never provml.capture.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from provml import prov_io
from provml.api._deps import WRITE, MetricsDep, ServicesDep
from provml.api._errors import PayloadTooLarge
from provml.api._schemas import DocumentAnswer, ErrorBody, IngestAnswer, RecordBatch
from provml.errors import InvalidRecord, ParseError, UnsupportedFormat
from provml.ids import iri
from provml.records import Bundle, bundle_from_dict, check_iri
from provml.store.base import IngestResult
from provml.store.sql import SQLStore

router = APIRouter(prefix="/api/v1", tags=["ingest"], dependencies=WRITE)

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "the body is not readable (bad JSON, gzip or document syntax)"),
        (401, "a write token is configured and none was sent"),
        (403, "the token does not allow writes"),
        (409, "a record contradicts what is stored; nothing was stored"),
        (413, "the body is larger than the configured limit"),
        (415, "the Content-Type or Content-Encoding is not supported"),
        (422, "a record breaks the PROV-ML rules; details name the record and field"),
        (503, "the store is unavailable or its schema is behind"),
    )
}


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, gunzipped when sent with ``Content-Encoding: gzip``.

    The limit applies to the decompressed size too, so a small gzip bomb is refused.
    """
    data = await request.body()
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return data
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedFormat(
            f"Content-Encoding {encoding!r} is not supported: send gzip, deflate or none",
            encoding=encoding,
        )
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ParseError(f"the body is not valid {encoding} data: {exc}", field="body") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(
            f"the decompressed body is larger than the limit of {limit} bytes", limit=limit
        )
    if not inflater.eof:
        raise ParseError(f"the {encoding} body is truncated", field="body")
    return out


def json_body(data: bytes) -> Any:
    """The request body as JSON, or a :class:`ParseError` naming the line."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        raise ParseError(f"the body is not JSON: {exc}", field="body", line=line) from None
    except RecursionError:
        # json's decoder recurses per nesting level; no record needs a fraction of this.
        raise ParseError("the body is nested too deeply to read", field="body") from None


def _batch(data: bytes) -> list[Bundle]:
    payload = json_body(data)
    if not isinstance(payload, dict) or not isinstance(payload.get("bundles"), list):
        raise InvalidRecord('the body must be a JSON object {"bundles": [...]}', field="bundles")
    bundles = []
    for index, item in enumerate(payload["bundles"]):
        try:
            bundles.append(bundle_from_dict(item))
        except InvalidRecord as exc:
            exc.details.setdefault("bundle_index", index)
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                exc.details.setdefault("bundle", item["id"])
            raise
    return bundles


def _read_and_store(data: bytes, sql: SQLStore) -> tuple[list[Bundle], IngestResult]:
    """Decode a record batch and store it: one trip to a worker thread for both."""
    bundles = _batch(data)
    return bundles, sql.ingest(bundles)


def _answer(bundles: list[Bundle], result: Any) -> dict[str, int]:
    return {
        "bundles": len(bundles),
        "records": sum(len(b.records) for b in bundles),
        "inserted": result.inserted,
        "unchanged": result.unchanged,
        "merged": result.merged,
    }


def _count(metrics: Any, source: str, answer: dict[str, int]) -> None:
    metrics.inc("provml_ingest_batches_total", source=source)
    for outcome in ("inserted", "unchanged", "merged"):
        metrics.inc("provml_ingest_records_total", answer[outcome], outcome=outcome)


@router.post(
    "/records",
    response_model=IngestAnswer,
    summary="Ingest a batch of PROV-ML records (the capture exporter's format)",
    description=(
        'The body is `{"bundles": [...]}` in provml\'s wire form, plain or with '
        "`Content-Encoding: gzip`. The whole batch is stored in one transaction or not "
        "at all; sending it again stores nothing new (`unchanged`)."
    ),
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": RecordBatch.model_json_schema()}},
        }
    },
)
async def ingest_records(
    request: Request, services: ServicesDep, metrics: MetricsDep
) -> dict[str, int]:
    data = await read_body(request, services.settings.max_body_bytes)
    bundles, result = await run_in_threadpool(_read_and_store, data, services.sql)
    if services.projector is not None:
        services.projector.wake()
    answer = _answer(bundles, result)
    _count(metrics, "records", answer)
    return answer


@router.post(
    "/documents",
    response_model=DocumentAnswer,
    summary="Ingest a PROV document (PROV-JSON, PROV-XML, PROV-N, Turtle, JSON-LD…)",
    description=(
        "The format comes from `format`, else the Content-Type (`application/json`, "
        "`application/xml`, `text/provenance-notation`, `text/turtle`, "
        "`application/ld+json`, `application/trig`, `application/n-quads`), else the "
        "content. Top-level records go into the bundle named by `bundle`, or by default "
        "into `<base>document/<hash of the content>`, so uploading the same document "
        "again changes nothing; nested PROV bundles keep their own IRIs."
    ),
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                prov_io.FORMATS[name].media_type: {"schema": {"type": "string"}}
                for name in ("json", "xml", "provn", "turtle", "jsonld")
            },
        }
    },
)
async def ingest_document(
    request: Request,
    services: ServicesDep,
    metrics: MetricsDep,
    bundle: str | None = Query(None, description="IRI of the bundle receiving the records"),
    format: str | None = Query(
        None, description=f"one of {', '.join(prov_io.FORMATS)}; default from Content-Type"
    ),
) -> dict[str, Any]:
    data = await read_body(request, services.settings.max_body_bytes)
    if bundle is not None:
        check_iri(bundle, bundle, "bundle")
    if format is not None and format not in prov_io.FORMATS:
        raise UnsupportedFormat(
            f"unknown format {format!r}; choose one of {', '.join(prov_io.FORMATS)}",
            format=format,
        )
    fmt = format or prov_io.detect_format(media_type=request.headers.get("content-type"), data=data)
    bundle_id = bundle or iri("document", hashlib.blake2b(data, digest_size=16).hexdigest())
    bundles = await run_in_threadpool(prov_io.parse, data, fmt, bundle_id=bundle_id)
    result = await run_in_threadpool(services.sql.ingest, bundles)
    if services.projector is not None:
        services.projector.wake()
    answer = _answer(bundles, result)
    _count(metrics, "documents", answer)
    return {**answer, "bundle": bundle_id, "format": fmt, "nested": [b.id for b in bundles[1:]]}
