"""Covering indexes for the lineage walk and for reading an element's descriptions.

* ``nodes (iri, bundle_id, digest)`` replaces ``nodes (iri)``: a shared element (a
  model, a raw file) is described in thousands of bundles, and reading which bundles
  describe it, and with which content, becomes an index-only scan instead of one table
  row per bundle.
* ``lineage_edges`` indexes at both ends also hold ``role`` and ``relation_key``, so a
  walk step reads the edge from the index alone (both backends; SQLite has no INCLUDE).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_nodes_iri_bundle_id_digest", "nodes", ["iri", "bundle_id", "digest"])
    op.drop_index("ix_nodes_iri", table_name="nodes")
    op.create_index(
        "ix_lineage_edges_subject_object_role_relation_key",
        "lineage_edges",
        ["subject", "object", "role", "relation_key"],
    )
    op.drop_index("ix_lineage_edges_subject_object", table_name="lineage_edges")
    op.create_index(
        "ix_lineage_edges_object_subject_role_relation_key",
        "lineage_edges",
        ["object", "subject", "role", "relation_key"],
    )
    op.drop_index("ix_lineage_edges_object_subject", table_name="lineage_edges")


def downgrade() -> None:
    op.create_index("ix_lineage_edges_object_subject", "lineage_edges", ["object", "subject"])
    op.drop_index("ix_lineage_edges_object_subject_role_relation_key", table_name="lineage_edges")
    op.create_index("ix_lineage_edges_subject_object", "lineage_edges", ["subject", "object"])
    op.drop_index("ix_lineage_edges_subject_object_role_relation_key", table_name="lineage_edges")
    op.create_index("ix_nodes_iri", "nodes", ["iri"])
    op.drop_index("ix_nodes_iri_bundle_id_digest", table_name="nodes")
