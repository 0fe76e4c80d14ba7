"""The store interfaces: small Protocols that every backend implements.

``RecordStore`` is the system of record (SQL); the RDF store and the lineage engine
read from it. Result types are plain dataclasses, separate from storage models and
from the HTTP schemas.

Imports: standard library and ``provml.records`` only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from provml.records import Attributes, Bundle

if TYPE_CHECKING:  # for annotations only: the RDF module needs the server extra
    from provml.rdf import QueryResult


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one ingest transaction did."""

    bundles: int = 0
    inserted: int = 0  # records stored for the first time
    unchanged: int = 0  # records already stored with the same content (a replayed batch)
    merged: int = 0  # element descriptions merged into an existing one (PROV-DM union)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One pending outbox row: what an ingest changed in one bundle.

    ``from_position`` is ``None`` when the whole bundle is to be projected again; else
    the bundle's records from that position on are new, and the elements named in
    ``merged`` have a description that grew (they keep their position).
    """

    seq: int
    bundle_id: str
    from_position: int | None = None
    merged: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BundleInfo:
    id: str
    parent: str | None
    records: int
    created: datetime


@dataclass(frozen=True, slots=True)
class Node:
    """One element as the store knows it, its descriptions merged across bundles."""

    id: str
    kind: str
    ml_class: str | None
    label: str | None
    attributes: Attributes = ()
    start_time: datetime | None = None
    end_time: datetime | None = None
    #: The bundles describing it, in code-point order; only the first ``max_bundles``
    #: when a read asked for fewer (then ``bundle_count`` says how many there are).
    bundles: tuple[str, ...] = ()
    bundle_count: int | None = None  # None: ``bundles`` lists them all

    @property
    def described_in(self) -> int:
        """How many bundles describe it, whether ``bundles`` lists them all or not."""
        return len(self.bundles) if self.bundle_count is None else self.bundle_count


@dataclass(frozen=True, slots=True)
class Edge:
    """One relation: ``subject`` depends on ``object`` (see ``provml.vocab.RELATIONS``)."""

    kind: str
    subject: str
    object: str
    bundle: str
    id: str | None = None
    time: datetime | None = None
    attributes: Attributes = ()
    # None for the relation's own subject → object edge; otherwise the extra argument
    # the object end fills ("plan" of wasAssociatedWith, "activity" of wasDerivedFrom…).
    role: str | None = None


@dataclass(frozen=True, slots=True)
class LineageGraph:
    """A lineage answer: the nodes reached (with their distance) and the edges walked."""

    root: str
    direction: str
    depth: int | None
    nodes: dict[str, Node] = field(default_factory=dict)
    distance: dict[str, int] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    truncated: bool = False  # a depth or fan-out bound cut the walk short


class RecordStore(Protocol):
    """The system of record. Every method is one transaction."""

    url: str

    def ingest(self, bundles: Sequence[Bundle]) -> IngestResult:
        """Store the bundles all-or-nothing; idempotent by record id."""
        ...

    def get_bundle(self, bundle_id: str) -> Bundle:
        """The bundle with every record stored in it; ``NotFound`` if absent."""
        ...

    def document(self, bundle_id: str) -> list[Bundle]:
        """The bundle first, then the bundles nested in it (an imported document)."""
        ...

    def list_bundles(self) -> list[BundleInfo]: ...

    def iter_bundles(self) -> Iterator[Bundle]: ...

    def get_node(self, node_id: str) -> Node:
        """One element with its descriptions merged; ``NotFound`` if no bundle describes it."""
        ...

    def find_nodes(
        self,
        *,
        kind: str | None = None,
        ml_class: str | None = None,
        text: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Node]: ...

    def checksum(self) -> str:
        """A digest of everything stored, to show that a refused input changed nothing."""
        ...

    def close(self) -> None: ...


class ProjectionSource(Protocol):
    """What the RDF projector (``provml.rdf``) reads from the record store.

    Each ingest appends one outbox row per bundle it touched, in the same transaction;
    the projector reads pending rows in order and marks them done once the bundles'
    quads are in the RDF store (so a crash in between only repeats work).
    """

    def get_bundle(self, bundle_id: str) -> Bundle: ...

    def changed_bundles(
        self, changes: Mapping[str, tuple[int, Sequence[str]]]
    ) -> Iterator[tuple[str, Bundle | None]]:
        """For each ``bundle id: (from_position, merged)``, once: the bundle with only
        its records from ``from_position`` on and the elements named in ``merged`` (as
        stored now), its metadata whole; or None when the bundle is no longer stored.
        Bundles may be read in groups, but are yielded one at a time."""
        ...

    def iter_bundles(self) -> Iterator[Bundle]: ...

    def outbox_pending(self, limit: int = 1000) -> list[OutboxEntry]:
        """Up to ``limit`` pending rows, oldest first."""
        ...

    def outbox_done(self, seqs: Sequence[int]) -> None:
        """Mark outbox rows done (unknown or already done seqs are ignored)."""
        ...


class SparqlStore(Protocol):
    """A read-only SPARQL 1.1 query service over the projected bundles.

    ``provml.rdf.RDFStore`` (embedded Oxigraph) implements it; the HTTP SPARQL endpoint
    needs nothing more. The default graph is the union of all bundles, each bundle a
    named graph named by its IRI; updates and SERVICE are refused.
    """

    def query(
        self,
        sparql: str,
        *,
        timeout: float | None = None,
        max_rows: int | None = None,
        base_iri: str | None = None,
        default_graph_uris: Sequence[str] = (),
        named_graph_uris: Sequence[str] = (),
    ) -> QueryResult: ...

    def close(self) -> None: ...
