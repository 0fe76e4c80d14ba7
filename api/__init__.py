"""The provml HTTP service (FastAPI): ingest, REST lineage, SPARQL 1.1 endpoint, PROV export.

``create_app(settings)`` builds the app; ``provml serve`` runs it under uvicorn. See
:mod:`provml.api._app` for the pieces.

Imports: provml core and FastAPI; never provml.capture internals.
"""

from __future__ import annotations

from provml.api._app import app_from_env, create_app
from provml.api._settings import Settings

__all__ = ["Settings", "app_from_env", "create_app"]
