"""The initial provml schema: bundles, nodes, relations, lineage edges, outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Spelled out here rather than imported from provml.store.models: a migration is a
# frozen record of the schema at its revision, whatever the models become later.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DIGEST = sa.String(32)


def upgrade() -> None:
    op.create_table(
        "bundles",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("parent", sa.Text(), nullable=True),
        sa.Column("namespaces", JSON, nullable=False),
        sa.Column("attributes", JSON, nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("next_position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bundles"),
    )
    op.create_index("ix_bundles_parent", "bundles", ["parent"])

    op.create_table(
        "nodes",
        sa.Column("bundle_id", sa.Text(), nullable=False),
        sa.Column("iri", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ml_class", sa.String(64), nullable=True),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("attributes", JSON, nullable=False),
        sa.Column("start_time", sa.Text(), nullable=True),
        sa.Column("start_utc", sa.DateTime(), nullable=True),
        sa.Column("end_time", sa.Text(), nullable=True),
        sa.Column("end_utc", sa.DateTime(), nullable=True),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("digest", DIGEST, nullable=False),
        sa.ForeignKeyConstraint(["bundle_id"], ["bundles.id"], name="fk_nodes_bundle_id_bundles"),
        sa.PrimaryKeyConstraint("bundle_id", "iri", name="pk_nodes"),
    )
    op.create_index("ix_nodes_iri", "nodes", ["iri"])
    op.create_index("ix_nodes_ml_class", "nodes", ["ml_class"])

    op.create_table(
        "relations",
        sa.Column("key", DIGEST, nullable=False),
        sa.Column("bundle_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("rel_id", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("object", sa.Text(), nullable=True),
        sa.Column("time", sa.Text(), nullable=True),
        sa.Column("time_utc", sa.DateTime(), nullable=True),
        sa.Column("extras", JSON, nullable=False),
        sa.Column("attributes", JSON, nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("digest", DIGEST, nullable=False),
        sa.ForeignKeyConstraint(
            ["bundle_id"], ["bundles.id"], name="fk_relations_bundle_id_bundles"
        ),
        sa.PrimaryKeyConstraint("key", name="pk_relations"),
    )
    op.create_index("ix_relations_bundle_id", "relations", ["bundle_id"])
    op.create_index("ix_relations_kind", "relations", ["kind"])

    op.create_table(
        "lineage_edges",
        sa.Column("relation_key", DIGEST, nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("object", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["relation_key"], ["relations.key"], name="fk_lineage_edges_relation_key_relations"
        ),
        sa.PrimaryKeyConstraint("relation_key", "role", name="pk_lineage_edges"),
    )
    op.create_index("ix_lineage_edges_subject_object", "lineage_edges", ["subject", "object"])
    op.create_index("ix_lineage_edges_object_subject", "lineage_edges", ["object", "subject"])

    op.create_table(
        "outbox",
        sa.Column("seq", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("bundle_id", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["bundle_id"], ["bundles.id"], name="fk_outbox_bundle_id_bundles"),
        sa.PrimaryKeyConstraint("seq", name="pk_outbox"),
    )


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_index("ix_lineage_edges_object_subject", table_name="lineage_edges")
    op.drop_index("ix_lineage_edges_subject_object", table_name="lineage_edges")
    op.drop_table("lineage_edges")
    op.drop_index("ix_relations_kind", table_name="relations")
    op.drop_index("ix_relations_bundle_id", table_name="relations")
    op.drop_table("relations")
    op.drop_index("ix_nodes_ml_class", table_name="nodes")
    op.drop_index("ix_nodes_iri", table_name="nodes")
    op.drop_table("nodes")
    op.drop_index("ix_bundles_parent", table_name="bundles")
    op.drop_table("bundles")
