"""The SPARQL 1.1 Protocol endpoint at ``/sparql``: read-only queries over all bundles.

GET with ``query=``, POST as a form (``application/x-www-form-urlencoded``) or with the
query as the body (``application/sparql-query``). The default graph is the union of all
bundles; each bundle is the named graph of its IRI; ``default-graph-uri`` and
``named-graph-uri`` replace that dataset as the protocol says. The answer's format
follows the ``Accept`` header (or a ``format`` parameter): SELECT/ASK as SPARQL JSON,
XML, CSV or TSV; CONSTRUCT/DESCRIBE as Turtle, N-Triples or JSON-LD. Updates are refused
(403 when sent as an update operation, 400 when sent as a query), SERVICE unless
enabled; every query runs under the configured time limit and row limit. The request
waits on a worker thread while the RDF store's query worker process evaluates (see
:mod:`provml.rdf`), so other requests keep being served.

Imports: FastAPI and provml's rdf and query modules.
"""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from provml.api._deps import READ, MetricsDep, ServicesDep
from provml.api._errors import Forbidden, NotAcceptable, RowLimitExceeded
from provml.api._ingest import read_body
from provml.api._schemas import ErrorBody
from provml.errors import InvalidRecord, ProvmlError, QueryRejected, QueryTimeout
from provml.queries import EXAMPLES
from provml.rdf import QueryResult
from provml.records import check_iri

router = APIRouter(tags=["sparql"], dependencies=READ)

_DEFAULT_FORMAT = {"select": "json", "ask": "json", "construct": "turtle"}
# Names SPARQL clients send in a format/output parameter, mapped to ours.
_FORMAT_NAMES = {"n3": "turtle", "json-ld": "jsonld", "nt": "ntriples", "n-triples": "ntriples"}


def _accepted(header: str | None) -> list[str]:
    """Media ranges of an Accept header, most preferred first (q=0 left out)."""
    if not header:
        return []
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media and quality > 0:
            ranked.append((-quality, position, media.lower()))
    return [media for _, _, media in sorted(ranked)]


def negotiate(result: QueryResult, accept: str | None, fmt: str | None) -> str:
    """The format name to write ``result`` in, from a ``format`` parameter or Accept.

    Raises:
        NotAcceptable: nothing acceptable fits this kind of result.
    """
    if fmt:
        name = _FORMAT_NAMES.get(fmt.lower(), fmt.lower())
        if name in result.formats:
            return name
    ranges = _accepted(accept)
    if not ranges:
        return _DEFAULT_FORMAT[result.kind]
    for media in ranges:
        if media in ("*/*", "application/*", "text/*"):
            default = _DEFAULT_FORMAT[result.kind]
            if media == "*/*" or result.media_type(default).startswith(media[:-1]):
                return default
            continue
        try:
            result.media_type(media)
        except ProvmlError:
            continue
        return media
    raise NotAcceptable(
        f"a {result.kind.upper()} answer is available as "
        + ", ".join(
            result.media_type(name).split(";")[0] for name in result.formats if name != "table"
        )
        + f"; the request accepts only {accept}",
        accept=accept,
    )


async def _read_request(
    request: Request, limit: int
) -> tuple[str | None, list[str], list[str], str | None]:
    """(query, default-graph-uri values, named-graph-uri values, format) of a request."""
    params = request.query_params
    query = params.get("query")
    defaults, named = params.getlist("default-graph-uri"), params.getlist("named-graph-uri")
    fmt = params.get("format") or params.get("output")
    if "update" in params:
        raise Forbidden("this SPARQL endpoint is read-only: updates are not accepted")
    if request.method == "POST":
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await read_body(request, request.app.state.settings.max_body_bytes)
        if content_type == "application/sparql-update":
            raise Forbidden("this SPARQL endpoint is read-only: updates are not accepted")
        if content_type == "application/x-www-form-urlencoded":
            form = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
            if "update" in form:
                raise Forbidden("this SPARQL endpoint is read-only: updates are not accepted")
            if query is not None and "query" in form:
                raise QueryRejected("give the query once: in the URL or in the form, not both")
            if "query" in form:
                if len(form["query"]) > 1:
                    raise QueryRejected("give exactly one query parameter")
                query = form["query"][0]
            defaults += form.get("default-graph-uri", [])
            named += form.get("named-graph-uri", [])
            fmt = fmt or (form.get("format") or form.get("output") or [None])[0]
        elif content_type == "application/sparql-query":
            if query is not None:
                raise QueryRejected("give the query once: in the URL or in the body, not both")
            try:
                query = body.decode("utf-8")
            except UnicodeDecodeError:
                raise QueryRejected("the query is not UTF-8 text") from None
        else:
            raise QueryRejected(
                "POST a query as application/sparql-query or as an "
                f"application/x-www-form-urlencoded form, not {content_type or 'no content type'}",
                content_type=content_type,
            )
    elif len(params.getlist("query")) > 1:
        raise QueryRejected("give exactly one query parameter")
    return query, defaults, named, fmt


_DESCRIPTION = (
    "SPARQL 1.1 Protocol, read-only. Example PROV-ML queries (parameters are IRIs):\n\n"
    + "\n\n".join(f"**{q.name}**: {q.question}\n```sparql\n{q.text}\n```" for q in EXAMPLES)
)
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the answer in the negotiated format",
        "content": {
            media: {}
            for media in (
                "application/sparql-results+json",
                "application/sparql-results+xml",
                "text/csv",
                "text/tab-separated-values",
                "text/turtle",
                "application/n-triples",
                "application/ld+json",
            )
        },
    },
    400: {"model": ErrorBody, "description": "syntax error, update, SERVICE, row limit exceeded"},
    403: {"model": ErrorBody, "description": "an update operation"},
    406: {"model": ErrorBody, "description": "no acceptable format for this kind of answer"},
    503: {"model": ErrorBody, "description": "the query hit the time limit"},
}


async def _answer(request: Request, services: Any, metrics: Any) -> Response:
    settings = services.settings
    query, defaults, named, fmt = await _read_request(request, settings.max_body_bytes)
    if query is None or not query.strip():
        raise QueryRejected("no query: send one in the query parameter or as the body")
    for parameter, iris in (("default-graph-uri", defaults), ("named-graph-uri", named)):
        for iri in iris:
            try:
                check_iri(iri, None, parameter)
            except InvalidRecord:
                raise QueryRejected(
                    f"{parameter} must be an absolute IRI, got {iri!r:.200}", parameter=parameter
                ) from None
    started = time.perf_counter()
    outcome = "error"
    try:
        result = await run_in_threadpool(
            services.rdf.query,
            query,
            timeout=settings.sparql_timeout,
            max_rows=settings.sparql_max_rows,
            allow_service=settings.allow_service,
            base_iri=str(request.url.replace(query="", fragment="")),
            default_graph_uris=defaults,
            named_graph_uris=named,
        )
        if result.truncated:
            raise RowLimitExceeded(
                f"the answer has more than {settings.sparql_max_rows} rows, this endpoint's "
                "limit: narrow the query or page through it with LIMIT and OFFSET",
                max_rows=settings.sparql_max_rows,
            )
        name = negotiate(result, request.headers.get("accept"), fmt)
        body = await run_in_threadpool(result.serialize, name)
        outcome = "ok"
    except QueryTimeout as exc:
        outcome = "timeout"
        exc.message = (
            f"the query ran longer than this endpoint's limit of {settings.sparql_timeout:g} s "
            "and was stopped"
        )
        raise
    except (QueryRejected, RowLimitExceeded):
        outcome = "rejected"
        raise
    finally:
        metrics.inc("provml_sparql_queries_total", outcome=outcome)
        metrics.observe("provml_sparql_query_duration_seconds", time.perf_counter() - started)
    return Response(body, media_type=result.media_type(name))


@router.get(
    "/sparql", summary="SPARQL 1.1 query (GET)", description=_DESCRIPTION, responses=_RESPONSES
)
async def sparql_get(
    request: Request,
    services: ServicesDep,
    metrics: MetricsDep,
    query: Annotated[str | None, Query(description="the SPARQL query")] = None,
) -> Response:
    return await _answer(request, services, metrics)


@router.post(
    "/sparql",
    summary="SPARQL 1.1 query (POST form or application/sparql-query)",
    description=_DESCRIPTION,
    responses=_RESPONSES,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/sparql-query": {"schema": {"type": "string"}},
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {"query": {"type": "string"}},
                        "required": ["query"],
                    }
                },
            }
        }
    },
)
async def sparql_post(request: Request, services: ServicesDep, metrics: MetricsDep) -> Response:
    return await _answer(request, services, metrics)
