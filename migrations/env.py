"""Alembic environment for provml's SQL schema.

Run programmatically by :meth:`provml.store.sql.SQLStore.upgrade` (``provml db upgrade``),
which hands over an open connection in ``config.attributes["connection"]``. Run from the
``alembic`` command line (``alembic -c migrations/alembic.ini …``), the database is
``sqlalchemy.url`` if set, else the store named by ``PROVML_STORE``.

Imports: alembic, sqlalchemy, ``provml.store.models`` and ``provml.config``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from provml.config import resolve_store
from provml.store.models import metadata

config = context.config


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or resolve_store().sql_url


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    """Emit the SQL script instead of running it (``alembic upgrade --sql``)."""
    url = _url()
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url())
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
