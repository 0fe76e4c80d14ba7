"""Record stores: the SQL system of record and the RDF projection.

:func:`open_record_store` picks the backend by URL (see :mod:`provml.config`). An
embedded SQLite store is created and migrated on first use, so ``provml demo`` needs no
set-up, and opening one first ingests what capture left in its inbox (:mod:`provml.inbox`);
a PostgreSQL store must be migrated with ``provml db upgrade`` first, and opening one
whose schema is behind raises :class:`~provml.errors.SchemaOutdated`.

Imports: standard library at import time; SQLAlchemy only inside the functions, so the
capture client can import this module on its exporter thread only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from provml.config import StoreLocation, resolve_store

if TYPE_CHECKING:
    from provml.store.sql import SQLStore


def open_record_store(store: str | StoreLocation | None = None, *, migrate: bool | None = None):
    """Open the SQL record store named by ``store`` (a URL, a location, or the default).

    Args:
        store: a store URL or directory, a resolved :class:`StoreLocation`, or None for
            ``PROVML_STORE`` / ``./.provml``.
        migrate: run the migrations before use. Defaults to True for embedded stores
            (created on first use) and False for PostgreSQL, whose schema must be current.

    Returns:
        A :class:`provml.store.sql.SQLStore`.
    """
    from provml.store.sql import SQLStore

    location = store if isinstance(store, StoreLocation) else resolve_store(store)
    if location.embedded:
        Path(location.sql_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    record_store: SQLStore = SQLStore(location.sql_url)
    try:
        if migrate if migrate is not None else location.embedded:
            record_store.upgrade()
        else:
            record_store.check_schema()
        if location.inbox is not None:
            drain_inbox(record_store, location.inbox)
    except BaseException:
        record_store.close()
        raise
    return record_store


def drain_inbox(record_store: SQLStore, directory: Path) -> int:
    """Ingest the batches capture left in an embedded store's inbox; records ingested.

    Each batch is one transaction; a batch the store refuses is set aside (and logged)
    by :func:`provml.inbox.drain`; a store error propagates and leaves the rest waiting.
    """
    from provml import inbox
    from provml.errors import Conflict, InvalidRecord
    from provml.records import bundle_from_dict

    def ingest(bundles: list[dict]) -> None:
        record_store.ingest([bundle_from_dict(b) for b in bundles])

    return inbox.drain(directory, ingest, refused=(InvalidRecord, Conflict)).records
