"""The record tables drop their foreign keys: the one writer keeps them true.

``nodes``, ``relations`` and ``outbox`` referenced ``bundles``, ``lineage_edges``
referenced ``relations``. The store is append-only and every row reaches these tables
through ``SQLStore.ingest``, which creates or locks a bundle's row before it writes any
row naming it, and writes relations before their edges, all in one transaction. The
constraints re-checked that for every row: on PostgreSQL 15 a trigger and an index probe
per row, about 8 of the 36 µs of server CPU a record cost (in process, 100 000 records of
the service benchmark, two runs each: 36.2-36.3 µs of PostgreSQL CPU a record and
17 027-17 365 records/s with them, 27.9-28.5 µs and 19 538-20 344 without). The invariants are
now checked by ``SQLStore.dangling_rows`` and the tests that run it after every kind of
batch (new, merged, replayed, refused).

SQLite rebuilds the four tables (batch mode); PostgreSQL drops the constraints in place.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# (table, column, referred table, referred column), named as models' convention did.
# The edges' key comes off first and goes back last: SQLite's batch mode rebuilds
# ``relations`` by copy, drop and rename, which a key still pointing at it would follow.
FOREIGN_KEYS = (
    ("lineage_edges", "relation_key", "relations", "key"),
    ("nodes", "bundle_id", "bundles", "id"),
    ("relations", "bundle_id", "bundles", "id"),
    ("outbox", "bundle_id", "bundles", "id"),
)


def _name(table: str, column: str, referred: str) -> str:
    return f"fk_{table}_{column}_{referred}"


def upgrade() -> None:
    for table, column, referred, _ in FOREIGN_KEYS:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(_name(table, column, referred), type_="foreignkey")


def downgrade() -> None:
    for table, column, referred, referred_column in reversed(FOREIGN_KEYS):
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(
                _name(table, column, referred), referred, [column], [referred_column]
            )
