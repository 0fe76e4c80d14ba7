"""FastAPI dependencies: the stores of the running app and the bearer-token checks.

Routes declare what they need with the ``Annotated`` aliases (``Sql``, ``Rdf``,
``Services_``) and guard themselves with :data:`READ` or :data:`WRITE`.

Every dependency here is ``async def``: none blocks, and FastAPI runs a plain ``def``
dependency in its thread pool, a hop to a worker thread and back for each (four per
lineage request, three per ingest batch).

Imports: FastAPI and provml's api/store modules.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from provml.api._errors import Forbidden, Unauthorized
from provml.api._metrics import Metrics
from provml.api._services import Services
from provml.errors import StoreUnavailable
from provml.rdf import RDFStore
from provml.store.sql import SQLStore


async def get_services(request: Request) -> Services:
    services = getattr(request.app.state, "services", None)
    if services is None:
        raise StoreUnavailable("the service is starting or stopping: its stores are not open")
    return services


async def get_sql(services: Annotated[Services, Depends(get_services)]) -> SQLStore:
    return services.sql


async def get_rdf(services: Annotated[Services, Depends(get_services)]) -> RDFStore:
    return services.rdf


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


ServicesDep = Annotated[Services, Depends(get_services)]
Sql = Annotated[SQLStore, Depends(get_sql)]
Rdf = Annotated[RDFStore, Depends(get_rdf)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def _matches(token: str, expected: str | None) -> bool:
    # Constant-time: the comparison must not tell an attacker how much of a guess was right.
    return expected is not None and hmac.compare_digest(token.encode(), expected.encode())


async def require_write(request: Request) -> None:
    """Writes need the write token when one is configured (401 without, 403 if wrong)."""
    expected = request.app.state.settings.write_token
    if expected is None:
        return
    token = _bearer(request)
    if token is None:
        raise Unauthorized("this server takes writes with a bearer token only")
    if not _matches(token, expected):
        raise Forbidden("the bearer token does not allow writes")


async def require_read(request: Request) -> None:
    """Reads need the read (or write) token when a read token is configured."""
    settings = request.app.state.settings
    if settings.read_token is None:
        return
    token = _bearer(request)
    if token is None:
        raise Unauthorized("this server answers reads with a bearer token only")
    if not (_matches(token, settings.read_token) or _matches(token, settings.write_token)):
        raise Forbidden("the bearer token does not allow reads")


READ = [Depends(require_read)]
WRITE = [Depends(require_write)]
