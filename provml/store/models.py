"""The SQL schema of the system of record, as SQLAlchemy Core table metadata.

One schema for SQLite and PostgreSQL. It is created and changed only by the Alembic
migrations in ``migrations/versions`` (``provml db upgrade``); ``tests/test_migrations.py``
checks that the migrations produce exactly this metadata.

Tables:

* ``bundles`` — one PROV bundle (a workflow run or an imported document); ``parent`` links
  a nested bundle to the document it came in.
* ``nodes`` — one element description per bundle; an element described in several bundles
  has several rows, merged when read (PROV-DM keeps descriptions per bundle).
* ``relations`` — one PROV relation per row. ``key`` is a digest of the bundle and the
  relation's id (or, for a relation without id, its content), so a replayed document is
  stored once and the key has a fixed length whatever the IRIs.
* ``lineage_edges`` — the dependency edges derived from relations, indexed at both ends:
  the main ``subject → object`` edge, plus the edges that a relation's extra arguments
  imply (an activity depends on the plan it followed, a derived entity on the activity
  that derived it). The lineage walk reads only this narrow table.
* ``outbox`` — one row per bundle per ingest, until the RDF projector has projected it:
  which of the bundle's records changed (those from ``from_position`` on, and the
  elements named in ``merged``), or, where ``from_position`` is NULL, the whole bundle.

No foreign keys (migration 0005): every row names a bundle (and every edge a relation)
that ``SQLStore.ingest`` wrote or locked first in the same transaction, and the
constraints' per-row checks cost a fifth of PostgreSQL's work on ingest.
``SQLStore.dangling_rows`` finds any row that breaks this.

The columns of keys and indexes, and the digests, compare byte by byte on both backends
(``_bytewise``): the same order everywhere, and no locale library in a B-tree probe.

Times keep their exact ISO 8601 text (any offset, or none) for round trips, plus a
naive-UTC ``…_utc`` column that sorts and compares on both backends.

Imports: sqlalchemy only.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

#: JSON that is JSONB on PostgreSQL (indexable, compact) and JSON text on SQLite.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
#: A 64-bit integer that is SQLite's rowid alias when it is the primary key.
BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: Length of the hex digests in ``relations.key`` and the ``digest`` columns.
DIGEST_LENGTH = 32


def _bytewise(length: int | None = None) -> sa.types.TypeEngine[str]:
    """Text that compares byte by byte (code point order) on both backends.

    SQLite's default; the "C" collation on PostgreSQL, whatever the database's own
    (migration 0004). For the columns of keys and indexes: bundle ids, IRIs, digests.
    """
    if length is None:
        return sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


# Constraint names are fixed by convention so that migrations and autogenerate agree.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

bundles = sa.Table(
    "bundles",
    metadata,
    sa.Column("id", _bytewise(), primary_key=True),
    sa.Column("parent", _bytewise(), nullable=True, index=True),
    sa.Column("namespaces", JSONType, nullable=False),  # [[prefix, iri], …] in order
    sa.Column("attributes", JSONType, nullable=False),
    sa.Column("created", sa.DateTime(), nullable=False),  # naive UTC
    # The position the next record of this bundle gets, so records read back in the
    # order they arrived in.
    sa.Column("next_position", sa.BigInteger(), nullable=False),
)

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("bundle_id", _bytewise(), primary_key=True),
    sa.Column("iri", _bytewise(), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("ml_class", _bytewise(64), nullable=True, index=True),
    sa.Column("label", sa.Text(), nullable=True),
    sa.Column("attributes", JSONType, nullable=False),
    sa.Column("start_time", sa.Text(), nullable=True),
    sa.Column("start_utc", sa.DateTime(), nullable=True),
    sa.Column("end_time", sa.Text(), nullable=True),
    sa.Column("end_utc", sa.DateTime(), nullable=True),
    sa.Column("position", sa.BigInteger(), nullable=False),
    sa.Column("digest", _bytewise(DIGEST_LENGTH), nullable=False),
    # Covering: which bundles describe an element, with which content, index-only; in
    # content order, so that grouping an element's descriptions by content needs no sort.
    sa.Index("ix_nodes_iri_digest_bundle_id", "iri", "digest", "bundle_id"),
    # The records a batch added to a bundle, for the RDF projector.
    sa.Index("ix_nodes_bundle_id_position", "bundle_id", "position"),
)

relations = sa.Table(
    "relations",
    metadata,
    sa.Column("key", _bytewise(DIGEST_LENGTH), primary_key=True),
    sa.Column("bundle_id", _bytewise(), nullable=False),
    sa.Column("kind", _bytewise(32), nullable=False, index=True),
    sa.Column("rel_id", sa.Text(), nullable=True),
    sa.Column("subject", sa.Text(), nullable=True),
    sa.Column("object", sa.Text(), nullable=True),
    sa.Column("time", sa.Text(), nullable=True),
    sa.Column("time_utc", sa.DateTime(), nullable=True),
    sa.Column("extras", JSONType, nullable=False),  # [[argument name, iri], …]
    sa.Column("attributes", JSONType, nullable=False),
    sa.Column("position", sa.BigInteger(), nullable=False),
    sa.Column("digest", _bytewise(DIGEST_LENGTH), nullable=False),
    # A bundle's relations, and those a batch added to it (for the RDF projector).
    sa.Index("ix_relations_bundle_id_position", "bundle_id", "position"),
)

lineage_edges = sa.Table(
    "lineage_edges",
    metadata,
    sa.Column("relation_key", _bytewise(DIGEST_LENGTH), primary_key=True),
    # The PROV-DM argument the object end fills: the relation's object ("usedEntity",
    # "agent", …) or an extra argument ("plan", "activity", "starter", "ender").
    sa.Column("role", _bytewise(32), primary_key=True),
    sa.Column("subject", _bytewise(), nullable=False),
    sa.Column("object", _bytewise(), nullable=False),
    # Both ends, each holding every column, so a walk step is an index-only lookup.
    sa.Index(
        "ix_lineage_edges_subject_object_role_relation_key",
        "subject",
        "object",
        "role",
        "relation_key",
    ),
    sa.Index(
        "ix_lineage_edges_object_subject_role_relation_key",
        "object",
        "subject",
        "role",
        "relation_key",
    ),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("seq", BigInt, primary_key=True, autoincrement=True),
    sa.Column("bundle_id", _bytewise(), nullable=False),
    sa.Column("created", sa.DateTime(), nullable=False),
    # The bundle's next_position before the ingest: its records from here on are new.
    # NULL: project the whole bundle (a replay, changed bundle metadata, a row written
    # before migration 0003).
    sa.Column("from_position", sa.BigInteger(), nullable=True),
    sa.Column("merged", JSONType, nullable=True),  # [iri, …]: elements whose description grew
)

__all__ = [
    "DIGEST_LENGTH",
    "BigInt",
    "JSONType",
    "bundles",
    "lineage_edges",
    "metadata",
    "nodes",
    "outbox",
    "relations",
]
