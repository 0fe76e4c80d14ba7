"""The application factory: :func:`create_app` builds one FastAPI app from :class:`Settings`.

Stores are opened in the lifespan (never at import) and kept on ``app.state``; each
resource has its router; two small ASGI middlewares bound request bodies and count
requests for ``/metrics``.

Imports: FastAPI/Starlette and provml's api modules; never provml.capture.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from provml.api import _export, _health, _ingest, _openlineage, _query, _sparql, _ui
from provml.api._errors import PayloadTooLarge, error_body, install_handlers
from provml.api._metrics import Metrics
from provml.api._services import open_services
from provml.api._settings import Settings


class BodyLimit:
    """Refuse request bodies above ``limit`` bytes (413), declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise PayloadTooLarge(
                        f"the request body is larger than the limit of {self.limit} bytes",
                        limit=self.limit,
                    )
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            error_body(
                "payload_too_large",
                f"the request body is larger than the limit of {self.limit} bytes",
                {"limit": self.limit},
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class RequestMetrics:
    """Count requests by method, route template and status; time them by route."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            route = scope.get("route")
            # The template, not the raw path: IRIs in query strings must not make series.
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.inc(
                "provml_http_requests_total", method=scope["method"], route=name, status=str(status)
            )
            self.metrics.observe(
                "provml_http_request_duration_seconds", time.perf_counter() - started, route=name
            )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the provml service.

    Args:
        settings: how to run; None reads :meth:`Settings.from_env`.

    Returns:
        A FastAPI app. Its lifespan opens the stores (refusing a SQL schema behind the
        migrations with :class:`~provml.errors.SchemaOutdated`, whose message names
        ``provml db upgrade``), catches the RDF projection up in the background and
        closes everything at shutdown.
    """
    settings = settings if settings is not None else Settings.from_env()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await run_in_threadpool(open_services, settings, metrics)
        app.state.services = services
        try:
            yield
        finally:
            app.state.services = None
            await run_in_threadpool(services.close)

    app = FastAPI(
        title="provml",
        summary="W3C PROV provenance of machine-learning workflows (PROV-ML)",
        description=(
            "Ingest PROV-ML records and PROV documents, ask lineage questions, query "
            "with SPARQL 1.1 and export PROV. Errors are JSON "
            '`{"error": code, "message": ..., "details": {...}}`.'
        ),
        version=_version(),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.services = None
    install_handlers(app)
    for module in (_health, _ingest, _openlineage, _query, _export, _sparql, _ui):
        app.include_router(module.router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Content-Encoding"],
        )
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app


def app_from_env() -> FastAPI:
    """The app configured by ``PROVML_*`` variables (for ``uvicorn --factory``).

    This is a server process's entry point (``provml serve`` runs one per worker), so
    it also sets the process's garbage collector up for serving (:func:`tune_gc`).
    """
    app = create_app(Settings.from_env())
    tune_gc()
    return app


#: Allocations between two young-generation collections in a server process (CPython's
#: default is 700).
GC_YOUNG_THRESHOLD = 20_000


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a process that serves ingests.

    A batch of records lives as tens of thousands of objects until its transaction
    ends, and CPython collects the young generation every 700 net allocations: reading
    and planning 50 batches of 1,000 records ran 405 young, 37 middle and 2 full
    collections, each traversing the batch's survivors, the full ones also the
    ~120,000 objects of the imported modules. So the modules and the app go to the
    permanent generation (:func:`gc.freeze`; they live as long as the process) and the
    young generation is collected every :data:`GC_YOUNG_THRESHOLD` allocations: 10.4-11.7
    against 8.8 µs a record in process (bench/service/RESULTS.md). Reference counting
    still frees at once everything that is not in a cycle.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("provml")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


__all__: list[Any] = ["app_from_env", "create_app", "tune_gc"]
