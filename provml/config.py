"""Where the stores are: one URL (``--store`` or ``PROVML_STORE``) resolves to both sides.

* a directory path (default ``./.provml``): the embedded store, an SQLite file
  ``provml.sqlite`` and an Oxigraph directory ``provml.oxigraph/`` inside it, made on
  first use (the same pair ``sqlite:///<dir>/provml.sqlite`` names);
* ``sqlite:///path/to/file.sqlite``: that file, with ``<file stem>.oxigraph/`` beside it;
* ``postgresql+psycopg://…`` (or ``postgresql://…``): PostgreSQL; the RDF side is
  ``PROVML_RDF`` (an Oxigraph directory) or ``./.provml/oxigraph-<database>``.

``PROVML_RDF`` overrides the RDF location for every kind of store.

Imports: standard library only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from provml.errors import ConfigurationError

DEFAULT_STORE = ".provml"


@dataclass(frozen=True, slots=True)
class StoreLocation:
    """The SQL URL (SQLAlchemy form) and the Oxigraph directory of one provml store."""

    sql_url: str
    rdf_path: str
    embedded: bool  # an SQLite store whose schema provml may create on first use

    @property
    def backend(self) -> str:
        return "postgresql" if self.sql_url.startswith("postgresql") else "sqlite"

    @property
    def inbox(self) -> Path | None:
        """Where capture leaves batches for an embedded store (:mod:`provml.inbox`)."""
        if not self.embedded:
            return None
        file = Path(self.sql_url.removeprefix("sqlite:///"))
        return file.with_name(file.stem + ".inbox")


def resolve_store(url: str | None = None) -> StoreLocation:
    """Resolve ``url`` (or ``PROVML_STORE``, or the default ``./.provml``) to a location."""
    url = url or os.environ.get("PROVML_STORE") or DEFAULT_STORE
    rdf_override = os.environ.get("PROVML_RDF")
    scheme = urlsplit(url).scheme
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        sql_url = "postgresql+psycopg://" + url.split("://", 1)[1]
        database = urlsplit(sql_url).path.lstrip("/") or "postgres"
        rdf = rdf_override or str(Path(DEFAULT_STORE) / f"oxigraph-{database}")
        return StoreLocation(sql_url, rdf, embedded=False)
    if scheme == "sqlite":
        path = url.split("sqlite:///", 1)[1] if url.startswith("sqlite:///") else ""
        if not path:
            raise ConfigurationError(
                f"store URL {url!r} names no file: use sqlite:///path/to/provml.sqlite"
            )
        file = Path(path)
        rdf = rdf_override or str(file.with_name(file.stem + ".oxigraph"))
        return StoreLocation(f"sqlite:///{file}", rdf, embedded=True)
    if scheme in ("http", "https"):
        raise ConfigurationError(
            f"store URL {url!r}: a remote provml server is a capture endpoint "
            "(provml.init(endpoint=...)), not a store for this command"
        )
    if scheme and len(scheme) > 1:
        raise ConfigurationError(
            f"store URL {url!r} has an unknown scheme {scheme!r}: use a directory, "
            "sqlite:///file or postgresql+psycopg://user@host/db"
        )
    directory = Path(url)
    return StoreLocation(
        f"sqlite:///{directory / 'provml.sqlite'}",
        rdf_override or str(directory / "provml.oxigraph"),
        embedded=True,
    )
