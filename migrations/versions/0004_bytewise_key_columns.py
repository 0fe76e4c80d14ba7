"""Key and index columns compare byte by byte on PostgreSQL too (``COLLATE "C"``).

Every column that is part of a key or an index — bundle ids, IRIs, relation keys,
kinds and roles — and the digests get the "C" collation. SQLite compares text as bytes
already, so nothing changes there. On PostgreSQL a database collation such as
``C.UTF-8`` or an ICU locale sends every B-tree comparison through the locale library
(PostgreSQL 15 takes its ``strcmp`` fast path only for "C" and "POSIX"), which makes each
indexed insert and each index probe of the lineage walk slower, and orders IRIs
differently from SQLite; the listings then sorted with an explicit ``COLLATE "C"`` that no
index could serve.

Changing a column's collation rebuilds the indexes that hold it; it takes a lock on the
tables for as long as that lasts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# (table, column, SQL type): the columns of a key or an index, and the digests, as of
# this revision.
KEY_COLUMNS = (
    ("bundles", "id", "text"),
    ("bundles", "parent", "text"),
    ("nodes", "bundle_id", "text"),
    ("nodes", "iri", "text"),
    ("nodes", "ml_class", "varchar(64)"),
    ("nodes", "digest", "varchar(32)"),
    ("relations", "key", "varchar(32)"),
    ("relations", "bundle_id", "text"),
    ("relations", "kind", "varchar(32)"),
    ("relations", "digest", "varchar(32)"),
    ("lineage_edges", "relation_key", "varchar(32)"),
    ("lineage_edges", "role", "varchar(32)"),
    ("lineage_edges", "subject", "text"),
    ("lineage_edges", "object", "text"),
    ("outbox", "bundle_id", "text"),
)


def _collate(collation: str) -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    tables: dict[str, list[str]] = {}
    for table, column, sql_type in KEY_COLUMNS:
        tables.setdefault(table, []).append(
            f'ALTER COLUMN "{column}" TYPE {sql_type} COLLATE {collation}'
        )
    # One statement per table, so each table's indexes are rebuilt once.
    for table, clauses in tables.items():
        op.execute(f'ALTER TABLE "{table}" ' + ", ".join(clauses))


def upgrade() -> None:
    _collate('"C"')


def downgrade() -> None:
    _collate('"default"')
