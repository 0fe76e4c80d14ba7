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

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# (table, column, type): the columns of a key or an index, and the digests, as of this
# revision.
KEY_COLUMNS = (
    ("bundles", "id", None),
    ("bundles", "parent", None),
    ("nodes", "bundle_id", None),
    ("nodes", "iri", None),
    ("nodes", "ml_class", 64),
    ("nodes", "digest", 32),
    ("relations", "key", 32),
    ("relations", "bundle_id", None),
    ("relations", "kind", 32),
    ("relations", "digest", 32),
    ("lineage_edges", "relation_key", 32),
    ("lineage_edges", "role", 32),
    ("lineage_edges", "subject", None),
    ("lineage_edges", "object", None),
    ("outbox", "bundle_id", None),
)


def _text(length: int | None, collation: str | None) -> sa.types.TypeEngine:
    return sa.Text(collation=collation) if length is None else sa.String(length, collation)


def _collate(collation: str | None) -> None:
    """Every key column in ``collation`` (None: the database's default)."""
    if op.get_context().dialect.name != "postgresql":
        return
    for table, column, length in KEY_COLUMNS:
        op.alter_column(
            table,
            column,
            type_=_text(length, collation),
            existing_type=_text(length, None),
        )


def upgrade() -> None:
    _collate("C")


def downgrade() -> None:
    _collate(None)
