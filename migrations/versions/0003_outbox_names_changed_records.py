"""The outbox says which records of a bundle changed, so the projector adds only those.

* ``outbox.from_position``: the bundle's ``next_position`` before the ingest (its
  records from there on are new); NULL means "project the whole bundle", which is how
  every row written before this revision is read.
* ``outbox.merged``: the elements whose stored description an ingest merged with a new
  one (they keep their position).
* ``nodes (bundle_id, position)`` and ``relations (bundle_id, position)``, so reading a
  batch's records is a range scan; the latter replaces ``relations (bundle_id)``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("from_position", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("merged", JSON, nullable=True))
    op.create_index("ix_nodes_bundle_id_position", "nodes", ["bundle_id", "position"])
    op.create_index("ix_relations_bundle_id_position", "relations", ["bundle_id", "position"])
    op.drop_index("ix_relations_bundle_id", table_name="relations")


def downgrade() -> None:
    op.create_index("ix_relations_bundle_id", "relations", ["bundle_id"])
    op.drop_index("ix_relations_bundle_id_position", table_name="relations")
    op.drop_index("ix_nodes_bundle_id_position", table_name="nodes")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("merged")
        batch.drop_column("from_position")
