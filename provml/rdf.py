"""The RDF side of provml: an Oxigraph store, its projector from SQL, and read-only SPARQL.

Each bundle lives in its own named graph (the graph name is the bundle IRI); SPARQL's
default graph is the union of all bundles. A bundle's quads are its PROV-O triples
(:func:`provml.prov_io.bundle_to_rdf`) plus, for every qualified relation, the binary
triple PROV-O pairs with it, so that paths like ``prov:used+`` walk every relation.

The SQL record store is the system of record: :meth:`RDFStore.project` catches the RDF
side up from the SQL outbox and :meth:`RDFStore.rebuild` recreates it from scratch;
both give the same quads.

Two facts about Oxigraph shape this module (DESIGN.md, "two traps"):

* an on-disk store is writable by one process only (RocksDB's lock). Other processes
  open it with ``read_only=True`` and read copies of the snapshots the writer publishes
  for them, never the writer's directory (:meth:`RDFStore.refresh` takes up a newer
  one; until the first, they answer nothing: :meth:`RDFStore.query`);
* pyoxigraph cannot cancel a running query (its Python API has no timeout). A query
  with a ``timeout`` on an on-disk store therefore runs in a worker process that opens
  a read-only checkpoint of the store (:mod:`provml._sparql_worker`,
  :mod:`provml._rdf_snapshots`: the writer's own directory is not safe to read while
  it compacts); at the deadline the worker is
  killed, so an expensive query really stops and costs nothing afterwards. Workers are
  fresh interpreters kept for reuse, not forks: a fork taken while another thread is
  inside pyoxigraph can inherit a held lock and hang. An in-memory store cannot be
  shared with another process, so there the query runs in a daemon thread: the caller
  gets its :class:`~provml.errors.QueryTimeout` on time, but the evaluation runs on to
  its end in the background.

Imports: standard library and provml's core at import time; pyoxigraph, rdflib and
oxrdflib (the ``server`` extra) on use. Must not import FastAPI or SQLAlchemy: the
record store comes in as an object (:class:`provml.store.base.ProjectionSource`).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provml._sparql import inspect_query
from provml.errors import (
    MissingExtra,
    ProvmlError,
    QueryRejected,
    QueryTimeout,
    StoreUnavailable,
    UnsupportedFormat,
)
from provml.records import Literal, Ref
from provml.vocab import PROV, RDF, RDFS, STANDARD_PREFIXES, XSD

if TYPE_CHECKING:
    import pyoxigraph
    import rdflib

    from provml.config import StoreLocation
    from provml.records import Bundle
    from provml.store.base import ProjectionSource

_log = logging.getLogger(__name__)

__all__ = ["PREFIXES", "BlankNode", "QueryResult", "RDFStore", "open_rdf_store", "to_python"]

#: Prefixes every query may use without declaring them, and that output formats use.
PREFIXES: dict[str, str] = {**STANDARD_PREFIXES, "rdf": RDF, "rdfs": RDFS}

# A file inside the Oxigraph directory saying "these quads are not a complete projection":
# written when the directory is made and before a rebuild clears it, removed when a
# rebuild finishes. RocksDB ignores files whose names are not its own.
_REBUILD_MARKER = "provml-rebuild-pending"
# A file inside the Oxigraph directory naming the layout of its quads. Layout 2: every
# triple of a bundle's graph is also a triple of the default graph, which is therefore
# the RDF merge of all bundles (see _merged). A store of another layout (or none: made
# before this file existed) is rebuilt by the next projection.
_LAYOUT_FILE = "provml-rdf-layout"
_LAYOUT = "2: the default graph is the merge of the named graphs\n"
_COUNT_NAMED_GRAPH_QUADS = "SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } }"
_ALL_PENDING = 2**31 - 1  # "every outbox row": fits a LIMIT on every SQL backend
_READ_ONLY_ATTEMPTS = 8  # about 1.4 s in all, see _open_oxigraph
_REBUILD_STOPPED = "the RDF store is shutting down: its rebuild stopped"
_BULK_THRESHOLD = 100_000  # quads; above this a projection batch is bulk-loaded
# The quads a projection adds are gathered over bundles and written together: from this
# many on through the bulk loader, below it in one transaction (Store.extend). Extend
# costs ~13 µs of CPU a quad on a store of millions (a transaction, and a lookup and six
# index entries a quad); the bulk loader ~4-6 µs, but it writes a dozen new files a
# call, which outweighs the saving below ~3,000 quads (pyoxigraph 0.5.13; measured in
# bench/service/RESULTS.md, Runs 31-33).
_BULK_MIN = 5_000  # quads written, the default graph's copies included
_BULK_BATCH = 50_000  # quads written at a time at most (~10k records)
# Quads handed to the bulk loader at a time by _bulk_load: ~40 MB of N-Quads text.
_BULK_CHUNK = 250_000
_BLANK_NODE_CHUNK = 10_000  # quads with blank nodes, bulk_extend'ed at a time
# Oxigraph opens RocksDB with optimize_level_style_compaction(512 MiB): every one of its
# 12 column families gets 128 MiB memtables (up to 6 of them) and is flushed only once
# two are full, and the WAL never forces a flush (max_total_wal_size=0). A writer that
# projects steadily therefore keeps everything it wrote since start-up in memory, about
# 0.6 KiB per quad written (six index entries plus the string table), until GiBs have
# accumulated (measured: the server's RSS grew ~50 MiB per 10 000 records ingested).
# pyoxigraph exposes no RocksDB options, so the projector flushes the memtables itself
# once this many quads were added or removed since the last flush (the default graph's
# copies count: they are written too). The bound also serves the readers: a query
# worker opens the store read-only whenever the projection moved on, and that open
# replays the write-ahead log of everything not yet flushed, about 70 µs per quad
# (measured with pyoxigraph 0.5, alone: 25 000 unflushed quads 1.5 s, 50 000 3.3 s, 100 000
# 6.9 s; 0.05-0.1 s once flushed). A flush costs about 0.1 s, so flushing after every
# batch would cost more than the batch's own writes.
_FLUSH_AFTER_WRITES = 20_000


def _ox():
    try:
        import pyoxigraph
    except ImportError:  # pragma: no cover - the server extra is installed in tests
        raise MissingExtra("pyoxigraph", "server") from None
    return pyoxigraph


# ------------------------------------------------------------------------ term mapping


@dataclass(frozen=True, slots=True)
class BlankNode:
    """A blank node in a query answer (its label is only meaningful within the answer)."""

    id: str


def _rdflib_to_ox(term: Any, blank_nodes: dict[Any, Any]) -> Any:
    """The one place where rdflib terms become pyoxigraph terms.

    Blank nodes get short provisional labels (rdflib's may not be valid N-Triples
    labels); :func:`_bundle_quads` replaces them with canonical ones.
    """
    ox = _ox()
    from rdflib import BNode, URIRef
    from rdflib import Literal as RdfLiteral

    if isinstance(term, URIRef):
        return ox.NamedNode(str(term))
    if isinstance(term, BNode):
        node = blank_nodes.get(term)
        if node is None:
            node = blank_nodes[term] = ox.BlankNode(f"n{len(blank_nodes)}")
        return node
    if isinstance(term, RdfLiteral):
        if term.language:
            return ox.Literal(str(term), language=term.language)
        datatype = ox.NamedNode(str(term.datatype)) if term.datatype else None
        return ox.Literal(str(term), datatype=datatype)
    raise TypeError(f"cannot store {type(term).__name__} {term!r} as an RDF term")


#: PROV-O's qualification table (PROV-O 3.3): qualifying property -> (the unqualified
#: property it stands for, the property of the qualified node naming the influencer).
_QUALIFIED_FORMS = {
    PROV + qualified: (PROV + unqualified, PROV + influencer)
    for qualified, unqualified, influencer in (
        ("qualifiedUsage", "used", "entity"),
        ("qualifiedGeneration", "wasGeneratedBy", "activity"),
        ("qualifiedDerivation", "wasDerivedFrom", "entity"),
        ("qualifiedRevision", "wasRevisionOf", "entity"),
        ("qualifiedQuotation", "wasQuotedFrom", "entity"),
        ("qualifiedPrimarySource", "hadPrimarySource", "entity"),
        ("qualifiedInvalidation", "wasInvalidatedBy", "activity"),
        ("qualifiedStart", "wasStartedBy", "entity"),
        ("qualifiedEnd", "wasEndedBy", "entity"),
        ("qualifiedCommunication", "wasInformedBy", "activity"),
        ("qualifiedAssociation", "wasAssociatedWith", "agent"),
        ("qualifiedAttribution", "wasAttributedTo", "agent"),
        ("qualifiedDelegation", "actedOnBehalfOf", "agent"),
        ("qualifiedInfluence", "wasInfluencedBy", "influencer"),
    )
}


def _with_unqualified_forms(quads: list[Any]) -> list[Any]:
    """Add the binary PROV-O triple beside every qualified relation that lacks it.

    The prov package writes a relation that has a time, an id or attributes in the
    qualified form only (so that reading it back gives one record, not two). PROV-O
    qualifies a relation *in addition to* asserting it, and lineage queries walk the
    binary properties (``prov:used+``), so the projection asserts both.
    """
    ox = _ox()
    by_node: dict[Any, list[Any]] = {}
    for quad in quads:
        by_node.setdefault(quad.subject, []).append(quad)
    existing = set(quads)
    added = []
    for quad in quads:
        form = _QUALIFIED_FORMS.get(quad.predicate.value)
        if form is None:
            continue
        unqualified, influencer = ox.NamedNode(form[0]), form[1]
        for detail in by_node.get(quad.object, ()):
            if detail.predicate.value == influencer:
                shortcut = ox.Quad(quad.subject, unqualified, detail.object, quad.graph_name)
                if shortcut not in existing:
                    existing.add(shortcut)
                    added.append(shortcut)
    return quads + added


def _merged(quads: list[Any]) -> list[Any]:
    """``quads`` and a copy of each in the default graph, which keeps one per triple.

    The default graph is where queries that name no dataset look: holding each
    bundle's triples there makes it the RDF merge of all bundles, a set, as SPARQL's
    dataset says (§13). Oxigraph's union-of-all-graphs view (``use_default_graph_as_union``)
    is a bag instead: a triple stated in 40 bundles matched 40 times, so ``COUNT``s
    came out 40 times too high and every property path step fanned out 40-fold.
    """
    if not quads:
        return quads
    ox = _ox()
    default = ox.DefaultGraph()
    return quads + [ox.Quad(q.subject, q.predicate, q.object, default) for q in quads]


def _bulk_load(
    store: Any, quads: Iterable[Any], chunk: int | None = None, *, merged: bool = False
) -> None:
    """Add ``quads`` with Oxigraph's bulk loader, never holding the GIL for long.

    With ``merged``, each quad of a named graph also goes into the default graph: what
    loading ``_merged(quads)`` does, without making a Quad object for every copy (the
    copy's N-Quads line is the quad's without its graph name; ~3 µs a record against
    ~13 µs for the objects and their lines).

    ``Store.bulk_extend`` holds the GIL while its loader finishes: a rebuild of 1M
    records held it 7.2 s at the end, and a server process whose GIL is held past
    uvicorn's 5 s health check is killed as hung and started anew, to rebuild from
    the start again, for ever. ``Store.bulk_load`` of N-Quads text releases it (0.02 s
    at most in the same rebuild). So the quads are written as N-Quads, ``chunk`` at a
    time (``_BULK_CHUNK`` by default), and each chunk is loaded on a helper thread
    while this one writes the next: the loader's work overlaps the making of the
    quads, and at most two chunks are in memory. Not atomic (neither is
    ``bulk_extend``): a crash leaves part of the quads.

    The parser gives blank nodes new ids, and ours are labelled by content (see
    :func:`_label_blank_nodes`), so quads with a blank node go through
    ``bulk_extend``, a few thousand at a time (~6 µs of GIL a quad).
    """
    ox = _ox()
    blank, named, default = ox.BlankNode, ox.NamedNode, ox.DefaultGraph()

    def load(text: bytes, with_blank_nodes: list[Any]) -> None:
        if text:
            store.bulk_load(input=text, format=ox.RdfFormat.N_QUADS, lenient=True)
        for start in range(0, len(with_blank_nodes), _BLANK_NODE_CHUNK):
            store.bulk_extend(with_blank_nodes[start : start + _BLANK_NODE_CHUNK])

    pending: Future[None] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="provml-bulk-load") as loader:
        it, size = iter(quads), _BULK_CHUNK if chunk is None else chunk
        while batch := list(itertools.islice(it, size)):
            lines, with_blank_nodes = [], []
            for quad in batch:
                copy = merged and type(quad.graph_name) is named
                if type(quad.subject) is blank or type(quad.object) is blank:
                    with_blank_nodes.append(quad)
                    if copy:
                        s, p, o = quad.subject, quad.predicate, quad.object
                        with_blank_nodes.append(ox.Quad(s, p, o, default))
                    continue
                line = str(quad)
                lines.append(line)
                if copy:  # the graph name is last, an IRI: no " <" in it
                    lines.append(line[: line.rindex(" <")])
            lines.append("")  # every line ends with " .\n"
            text = " .\n".join(lines).encode() if len(lines) > 1 else b""
            del batch, lines
            if pending is not None:
                pending.result()  # one load at a time; its error stops the rest
            pending = loader.submit(load, text, with_blank_nodes)
        if pending is not None:
            pending.result()


def _bundle_quads(bundle: Bundle) -> list[pyoxigraph.Quad]:
    """The quads of one bundle: its PROV-O triples in the graph named by the bundle IRI.

    Besides the triples of :func:`provml.prov_io.bundle_to_rdf`, every qualified
    relation also gets its binary triple (see :func:`_with_unqualified_forms`). Blank
    nodes are labelled by their content (see :func:`_label_blank_nodes`), so the quads of
    a bundle are the union of the quads of any split of its records: the projector adds
    what a batch changed and reaches the very store a rebuild makes.

    The triples come from :func:`provml._prov_o.bundle_quads`, which writes what prov's
    serializer writes straight from the records (~10x faster); a bundle holding
    anything it does not mirror exactly takes the prov path
    (:func:`_bundle_quads_via_prov`), which gives the same quads.
    """
    from provml import _prov_o

    fast = _prov_o.bundle_quads(bundle, _QUALIFYING)
    if fast is None:
        return _bundle_quads_via_prov(bundle)
    quads, has_blank_nodes, has_qualified = fast
    if has_qualified:
        quads = _with_unqualified_forms(quads)
    if not has_blank_nodes:
        return quads
    return _label_blank_nodes(quads, _blank_node_scope(bundle.id))


_QUALIFYING = frozenset(_QUALIFIED_FORMS)


def _bundle_quads_via_prov(bundle: Bundle) -> list[pyoxigraph.Quad]:
    """:func:`_bundle_quads` through prov: ProvDocument, prov's serializer, rdflib."""
    from provml.prov_io import bundle_to_rdf

    ox = _ox()
    graph_name = ox.NamedNode(bundle.id)
    blank_nodes: dict[Any, Any] = {}
    quads = _with_unqualified_forms(
        [
            ox.Quad(
                _rdflib_to_ox(s, blank_nodes),
                _rdflib_to_ox(p, blank_nodes),
                _rdflib_to_ox(o, blank_nodes),
                graph_name,
            )
            for s, p, o in bundle_to_rdf(bundle)
        ]
    )
    if not blank_nodes:
        return quads
    return _label_blank_nodes(quads, _blank_node_scope(bundle.id))


def _label_blank_nodes(quads: list[Any], scope: str) -> list[Any]:
    """Give blank nodes labels that depend only on what the quads say about them.

    The quads that touch blank nodes fall into components (blank nodes joined by a
    quad), each the qualified form of one record (``:a prov:qualifiedUsage _:u .
    _:u prov:entity :e ; prov:atTime …``). A component is canonicalised on its own
    (RDFC-1.0) and its labels are prefixed with ``scope`` (the bundle: two bundles never
    share a blank node) and a digest of its canonical quads. A record's blank nodes
    are then labelled alike whichever other records are converted with it, and two
    components get one label only when they say the same thing. A component of one
    blank node (every relation's, in provml's own records) needs no canonicaliser:
    RDFC-1.0 names a lone blank node ``c14n0``.
    """
    ox = _ox()
    blank, quad_of = ox.BlankNode, ox.Quad
    # Each quad goes to the component of its blank node; a quad that joins two blank
    # nodes (rare: none in provml's own records) joins their components afterwards.
    components: dict[Any, list[Any]] = {}
    joining = []
    out = []
    for quad in quads:
        subject, obj = quad.subject, quad.object
        if type(subject) is blank:
            components.setdefault(subject, []).append(quad)
            if type(obj) is blank:
                joining.append(quad)
        elif type(obj) is blank:
            components.setdefault(obj, []).append(quad)
        else:
            out.append(quad)
    if joining:
        parent = {node: node for node in components}

        def root(node: Any) -> Any:
            while parent[node] != node:
                parent[node] = parent[parent[node]]
                node = parent[node]
            return node

        for quad in joining:
            parent.setdefault(quad.object, quad.object)
            a, b = root(quad.subject), root(quad.object)
            if a != b:
                parent[a] = b
        joined: dict[Any, list[Any]] = {}
        for node, component in components.items():
            joined.setdefault(root(node), []).extend(component)
        components = joined

    def blank_nodes(component: Any) -> set[Any]:
        return {t for q in component for t in (q.subject, q.object) if isinstance(t, blank)}

    def renamed(component: Any, names: dict[Any, Any]) -> list[Any]:
        return [
            quad_of(
                names.get(q.subject, q.subject),
                q.predicate,
                names.get(q.object, q.object),
                q.graph_name,
            )
            for q in component
        ]

    lone = blank("c14n0")
    for node, component in components.items():
        if not joining or len(blank_nodes(component)) == 1:
            canonical = renamed(dict.fromkeys(component), {node: lone})
        else:
            dataset = ox.Dataset(component)
            dataset.canonicalize(ox.CanonicalizationAlgorithm.RDFC_1_0)
            canonical = list(dataset)
        digest = hashlib.sha256("\n".join(sorted(map(str, canonical))).encode()).hexdigest()
        prefix = f"{scope}_{digest[:16]}_"
        out.extend(renamed(canonical, {t: blank(prefix + t.value) for t in blank_nodes(canonical)}))
    return out


def _blank_node_scope(bundle_id: str) -> str:
    """The prefix of a bundle's blank node labels: two bundles never share one."""
    return "b" + hashlib.sha256(bundle_id.encode()).hexdigest()[:16]


_XSD_INTEGERS = {
    XSD + name
    for name in (
        "integer",
        "int",
        "long",
        "short",
        "byte",
        "nonNegativeInteger",
        "positiveInteger",
        "nonPositiveInteger",
        "negativeInteger",
        "unsignedLong",
        "unsignedInt",
        "unsignedShort",
        "unsignedByte",
    )
}


def _python_literal(lexical: str, datatype: str) -> Any:
    if datatype == XSD + "string":
        return lexical
    if datatype in _XSD_INTEGERS:
        return int(lexical)
    if datatype in (XSD + "double", XSD + "float"):
        return float(lexical)
    if datatype == XSD + "decimal":
        return Decimal(lexical)
    if datatype == XSD + "boolean":
        if lexical in ("true", "1", "false", "0"):
            return lexical in ("true", "1")
        raise ValueError(lexical)
    if datatype == XSD + "dateTime":
        return datetime.fromisoformat(lexical)
    if datatype == XSD + "date":
        return date.fromisoformat(lexical)
    raise ValueError(lexical)


def to_python(term: Any) -> Any:
    """A pyoxigraph term as a Python value.

    IRIs become :class:`~provml.records.Ref`, blank nodes :class:`BlankNode`, literals
    of the usual XSD types ``str``/``int``/``float``/``Decimal``/``bool``/``datetime``/
    ``date``; every other literal (language-tagged, other datatypes, ill-formed lexical
    forms) a :class:`~provml.records.Literal` that keeps its exact lexical form.
    """
    ox = _ox()
    if term is None:
        return None
    if isinstance(term, ox.NamedNode):
        return Ref(term.value)
    if isinstance(term, ox.BlankNode):
        return BlankNode(term.value)
    if isinstance(term, ox.Literal):
        if term.language:
            return Literal(term.value, RDF + "langString", term.language)
        datatype = term.datatype.value
        try:
            return _python_literal(term.value, datatype)
        except (ValueError, InvalidOperation):
            return Literal(term.value, datatype)
    if isinstance(term, ox.Triple):
        return tuple(to_python(t) for t in (term.subject, term.predicate, term.object))
    raise TypeError(f"not an RDF term: {term!r}")


def _short(term: Any) -> str:
    """A term as a person reads it in a table: prefixed IRIs, bare plain literals."""
    ox = _ox()
    if term is None:
        return ""
    if isinstance(term, ox.NamedNode):
        for prefix, namespace in PREFIXES.items():
            if term.value.startswith(namespace) and len(term.value) > len(namespace):
                return f"{prefix}:{term.value[len(namespace) :]}"
        return term.value
    if isinstance(term, ox.BlankNode):
        return f"_:{term.value}"
    if isinstance(term, ox.Literal):
        if term.language:
            return f"{term.value}@{term.language}"
        return term.value
    return str(term)


def _term_json(term: Any) -> dict[str, Any]:
    """One RDF term in the SPARQL 1.1 Query Results JSON format."""
    ox = _ox()
    if isinstance(term, ox.NamedNode):
        return {"type": "uri", "value": term.value}
    if isinstance(term, ox.BlankNode):
        return {"type": "bnode", "value": term.value}
    if isinstance(term, ox.Literal):
        out: dict[str, Any] = {"type": "literal", "value": term.value}
        if term.language:
            out["xml:lang"] = term.language
        elif term.datatype.value != XSD + "string":
            out["datatype"] = term.datatype.value
        return out
    if isinstance(term, ox.Triple):
        return {
            "type": "triple",
            "value": {
                "subject": _term_json(term.subject),
                "predicate": _term_json(term.predicate),
                "object": _term_json(term.object),
            },
        }
    raise TypeError(f"not an RDF term: {term!r}")


# ----------------------------------------------------------------------- query results

_SOLUTION_KINDS = ("select", "ask")
_GRAPH_KINDS = ("construct",)


@dataclass(frozen=True, slots=True)
class _Format:
    name: str
    kinds: tuple[str, ...]
    media_type: str
    aliases: tuple[str, ...] = ()  # other names and media types that mean this format


# Names as the CLI and the HTTP endpoint use them. "json" means SPARQL results JSON for
# solutions and JSON-LD for graphs, so that one --format json serves both.
_FORMATS = (
    _Format(
        "json",
        _SOLUTION_KINDS,
        "application/sparql-results+json",
        ("srj", "application/json"),
    ),
    _Format("xml", _SOLUTION_KINDS, "application/sparql-results+xml", ("srx", "application/xml")),
    _Format("csv", _SOLUTION_KINDS, "text/csv; charset=utf-8", ("text/csv",)),
    _Format(
        "tsv",
        _SOLUTION_KINDS,
        "text/tab-separated-values; charset=utf-8",
        ("text/tab-separated-values",),
    ),
    _Format("turtle", _GRAPH_KINDS, "text/turtle", ("ttl", "application/x-turtle")),
    _Format("ntriples", _GRAPH_KINDS, "application/n-triples", ("nt", "n-triples")),
    _Format("jsonld", _GRAPH_KINDS, "application/ld+json", ("json-ld", "json", "application/json")),
    _Format("table", (*_SOLUTION_KINDS, *_GRAPH_KINDS), "text/plain; charset=utf-8", ("text",)),
)


@dataclass(slots=True)
class QueryResult:
    """The answer to one SPARQL query, held in memory, serialisable in the standard formats.

    ``kind`` is ``"select"``, ``"ask"`` or ``"construct"`` (CONSTRUCT and DESCRIBE both
    give a graph). ``truncated`` is True when ``max_rows`` cut the answer short.
    """

    kind: str
    variables: list[str] = field(default_factory=list)
    boolean: bool | None = None
    truncated: bool = False
    _terms: list[tuple[Any, ...]] = field(default_factory=list, repr=False)

    # ------------------------------------------------------------------ contents
    @property
    def rows(self) -> list[tuple[Any, ...]]:
        """SELECT rows (or CONSTRUCT triples) as Python values, see :func:`to_python`."""
        return [tuple(to_python(t) for t in row) for row in self._terms]

    @property
    def terms(self) -> list[tuple[Any, ...]]:
        """SELECT rows (or CONSTRUCT triples) as pyoxigraph terms, unbound as None."""
        return list(self._terms)

    def __len__(self) -> int:
        return len(self._terms)

    # ------------------------------------------------------------------ formats
    @property
    def formats(self) -> list[str]:
        """The format names this result can be serialised to."""
        return [f.name for f in _FORMATS if self.kind in f.kinds]

    def _format(self, media_type_or_format: str) -> _Format:
        wanted = media_type_or_format.split(";", 1)[0].strip().lower()
        for fmt in _FORMATS:
            if self.kind in fmt.kinds and (
                wanted == fmt.name
                or wanted in fmt.aliases
                or wanted == fmt.media_type.split(";", 1)[0]
            ):
                return fmt
        raise UnsupportedFormat(
            f"a {self.kind.upper()} result cannot be written as {media_type_or_format!r}; "
            f"choose one of {', '.join(self.formats)}",
            format=media_type_or_format,
        )

    def media_type(self, media_type_or_format: str) -> str:
        """The media type (for a Content-Type header) of a format name or media type."""
        return self._format(media_type_or_format).media_type

    def serialize(self, media_type_or_format: str = "json") -> bytes:
        """The result in a format named by name (``json``, ``xml``, ``csv``, ``tsv``,
        ``turtle``, ``ntriples``, ``jsonld``, ``table``) or by media type.

        Raises:
            UnsupportedFormat: the format does not exist for this kind of result.
        """
        fmt = self._format(media_type_or_format)
        if fmt.name == "table":
            return self.table().encode()
        ox = _ox()
        if self.kind == "construct":
            rdf_format = {
                "turtle": ox.RdfFormat.TURTLE,
                "ntriples": ox.RdfFormat.N_TRIPLES,
                "jsonld": ox.RdfFormat.JSON_LD,
            }[fmt.name]
            triples = [ox.Triple(*t) for t in self._terms]
            prefixes = PREFIXES if rdf_format is ox.RdfFormat.TURTLE else None
            return ox.serialize(triples, format=rdf_format, prefixes=prefixes) or b""
        json_bytes = self._results_json()
        if fmt.name == "json":
            return json_bytes
        # pyoxigraph writes XML/CSV/TSV with the escaping rules of each specification;
        # it reads our JSON back (cheap) because its result objects cannot be built.
        results_format = {
            "xml": ox.QueryResultsFormat.XML,
            "csv": ox.QueryResultsFormat.CSV,
            "tsv": ox.QueryResultsFormat.TSV,
        }[fmt.name]
        parsed = ox.parse_query_results(json_bytes, ox.QueryResultsFormat.JSON)
        return parsed.serialize(format=results_format) or b""

    def _results_json(self) -> bytes:
        import json

        if self.kind == "ask":
            return json.dumps({"head": {}, "boolean": bool(self.boolean)}).encode()
        bindings = [
            {
                var: _term_json(term)
                for var, term in zip(self.variables, row, strict=True)
                if term is not None
            }
            for row in self._terms
        ]
        document = {"head": {"vars": self.variables}, "results": {"bindings": bindings}}
        return json.dumps(document, ensure_ascii=False).encode()

    def table(self, max_width: int = 80) -> str:
        """A plain-text table for terminals (IRIs shortened with the standard prefixes)."""
        from provml.views import format_table

        if self.kind == "ask":
            return "true" if self.boolean else "false"
        header = self.variables if self.kind == "select" else ["subject", "predicate", "object"]
        rows = [[_short(t) for t in row] for row in self._terms]
        text = format_table(header, rows, max_width=max_width)
        if self.truncated:
            text += f"\n(only the first {len(rows)} rows: the answer was cut at max_rows)"
        return text


def _evaluate(
    store: Any, sparql: str, options: dict[str, Any], max_rows: int | None
) -> QueryResult:
    """Run a query on a pyoxigraph store and collect its answer (at most ``max_rows``)."""
    ox = _ox()
    answer = store.query(sparql, **options)
    if isinstance(answer, ox.QueryBoolean):
        return QueryResult("ask", boolean=bool(answer))
    if isinstance(answer, ox.QuerySolutions):
        result = QueryResult("select", variables=[v.value for v in answer.variables])
        rows = (tuple(solution) for solution in answer)
    else:
        result = QueryResult("construct")
        rows = ((t.subject, t.predicate, t.object) for t in answer)
    for row in rows:
        if max_rows is not None and len(result._terms) >= max_rows:
            result.truncated = True
            break
        result._terms.append(row)
    return result


# ----------------------------------------------------------------- deadline runners


def _run_in_thread(work: Callable[[], Any], timeout: float) -> Any:
    """Run ``work`` in a daemon thread; give up waiting at the deadline (no cancel)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="provml-sparql", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise QueryTimeout(
            f"the query ran longer than {timeout:g} s; it was abandoned", timeout=timeout
        )
    if "error" in box:
        raise box["error"]
    return box["value"]


# --------------------------------------------------------------------------- the store


class RDFStore:
    """An Oxigraph store holding one named graph per bundle.

    Open it with :meth:`open` (or :func:`open_rdf_store`). A store opened writable may
    project and rebuild; a read-only one only answers queries.
    """

    def __init__(self, inner: Any, path: Path | None, read_only: bool) -> None:
        self._inner = inner
        self.path = path
        self.read_only = read_only
        self._lock = threading.RLock()  # one projection or rebuild at a time
        self._stale = path is None  # an in-memory store starts empty: rebuild first
        self._unflushed_writes = 0  # quads added or removed since the last memtable flush
        self._added: list[Any] = []  # quads a running projection gathered, not yet written
        self._added_since = 0.0  # when the first of them was gathered (time.monotonic)
        # Query workers hold read-only snapshots; this number tells them to renew theirs.
        self._generation = 0
        #: Bundles whose quads could not be made (see :meth:`_quads_of`), by id.
        self.unprojectable: set[str] = set()
        self._workers: Any = None  # a provml._sparql_worker.WorkerPool, made on first use
        self._snapshots: Any = None  # their provml._rdf_snapshots.ReadSnapshots (a writer's)
        self._workers_lock = threading.Lock()  # not self._lock: a rebuild holds that long
        self._closing = threading.Event()  # see stop_rebuilding()
        self._copies: Any = None  # a reader's CopiedSnapshots of what the writer published
        self._reading: Path | None = None  # the copy a reader's handle reads, if any
        self._adopting = threading.Lock()  # a reader takes up one copy at a time
        #: The last whole-store count: (generation, monotonic time, quads, during a rebuild).
        self._counted: tuple[int, float, int, bool] | None = None
        self._counting: threading.Thread | None = None  # see recent_count()
        self._counting_lock = threading.Lock()

    # --------------------------------------------------------------- opening
    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, read_only: bool = False) -> RDFStore:
        """Open the Oxigraph store in directory ``path``, or a new in-memory one (None).

        Args:
            path: the store directory; made (and marked for a rebuild) if missing.
            read_only: read the snapshots the writer publishes, for processes other
                than the one that projects (the writer holds RocksDB's lock): the
                newest one now; :meth:`refresh` takes up a newer one. The writer's own
                directory is never opened (see :mod:`provml._rdf_snapshots`), so until
                the writer publishes its first, the store answers nothing (see
                :meth:`query`).

        Raises:
            StoreUnavailable: another process holds the store open for writing, or a
                read-only store does not exist yet.
        """
        ox = _ox()
        if path is None:
            if read_only:
                raise StoreUnavailable("an in-memory RDF store cannot be opened read-only")
            return cls(ox.Store(), None, False)
        directory = Path(path)
        if read_only:
            if not directory.is_dir():
                raise StoreUnavailable(
                    f"there is no RDF store at {directory}; the process that owns it makes it "
                    "(provml rdf rebuild)",
                    path=str(directory),
                )
            from provml._rdf_snapshots import CopiedSnapshots

            store = cls(None, directory, True)
            store._copies = CopiedSnapshots(directory)
            store._adopt_published()
            return store
        fresh = not directory.exists()
        directory.parent.mkdir(parents=True, exist_ok=True)
        store = cls(_open_oxigraph(ox.Store, directory), directory, False)
        if fresh or not store._layout_current():
            store._mark_stale()
        return store

    def _layout_current(self) -> bool:
        assert self.path is not None
        try:
            return (self.path / _LAYOUT_FILE).read_text() == _LAYOUT
        except OSError:
            return False

    def refresh(self) -> None:
        """Make a read-only store see what the writer has projected since: take up the
        newest snapshot the writer published, if it is newer than ours."""
        if not self.read_only or self.path is None:
            return
        self._adopt_published()

    def _adopt_published(self) -> bool:
        """Read the writer's newest published snapshot, through a private copy
        (:class:`provml._rdf_snapshots.CopiedSnapshots`); True if it is a new one."""
        assert self.path is not None and self.read_only
        with self._adopting:  # the refresher's thread and queries waiting for a first one
            copies = self._copies
            if copies is None:  # closed
                return False
            current = copies.update()
            if current is None or current == self._reading:
                return False
            self._inner, self._reading = _open_read_only(current), current
            self._generation += 1
            return True

    def _wait_for_published(self, wait: float) -> Any:
        """A reader's copies, once it reads one: waits up to ``wait`` s for the writer's
        first snapshot (its store was being rebuilt, or it had not yet seen this
        reader), never reading the writer's own directory meanwhile.

        Raises:
            StoreUnavailable: nothing published within ``wait`` s, or the store closed.
        """
        deadline = time.monotonic() + wait
        while self._reading is None and not self._adopt_published():
            if self._copies is None:
                break
            if time.monotonic() >= deadline:
                raise StoreUnavailable(_nothing_published(f"after {wait:g} s"), path=str(self.path))
            time.sleep(0.05)
        copies = self._copies
        if copies is None:
            raise StoreUnavailable("the RDF store is closed")
        return copies

    @property
    def reads_copy(self) -> bool:
        """A reader that reads a copy of a snapshot the writer published (False until
        the writer has published one: it then reads nothing)."""
        return self._reading is not None

    def publish_for_readers(self, min_age: float) -> bool:
        """Checkpoint for the processes that read this store, if any (the owner's
        projector calls this every interval, and as it starts); True if one was taken.

        A store that :attr:`needs_rebuild` is not published: its readers would answer
        from a partial projection, or from nothing, as if it were the whole store.
        They say the store is being built instead, as the owner's own queries do
        before its first snapshot.
        """
        if self.read_only or self.path is None or self.needs_rebuild:
            return False
        # The generation moves only in the projector's thread, which calls this.
        snapshots = self._reader_snapshots()
        return snapshots.publish(self._store, self._generation, min_age, self._lock)

    def stop_rebuilding(self) -> None:
        """Stop a rebuild running in another thread at its next bundle, and refuse later
        ones: for shutting down, so that a server asked to stop does not wait minutes
        for a rebuild (it did; the orchestrator then kills it). The store stays marked
        incomplete, and the next open rebuilds it. :meth:`close` calls this first.
        """
        self._closing.set()

    def close(self) -> None:
        """Release the store (and with it RocksDB's lock), after :meth:`stop_rebuilding`."""
        self.stop_rebuilding()
        with self._workers_lock:
            if self._workers is not None:
                self._workers.close()
                self._workers = None
            if self._snapshots is not None:
                self._snapshots.close()
                self._snapshots = None
            if self._copies is not None:
                self._copies.close()
                self._copies = None
        with self._lock:
            if self._inner is not None and not self.read_only:
                with contextlib.suppress(OSError):  # in memory: nothing to flush
                    self._inner.flush()
            self._inner = None

    def __enter__(self) -> RDFStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _store(self) -> Any:
        inner = self._inner
        if inner is None and self.read_only and self._copies is not None:
            self._adopt_published()  # nothing read yet: the writer may have published
            inner = self._inner
            if inner is None:
                raise StoreUnavailable(_nothing_published("yet"), path=str(self.path))
        if inner is None:
            raise StoreUnavailable("the RDF store is closed")
        return inner

    @contextlib.contextmanager
    def _handle(self) -> Iterator[Any]:
        """The Oxigraph store to read in this process, for the length of the block.

        A reader's handle reads a copy of a published snapshot, and the refresher takes
        up newer copies meanwhile, deleting all but the two newest. RocksDB reading a
        copy deleted under it spins for ever (a ``/readyz`` count at 1M records did,
        while the owner published twice during it), so the copy is pinned until the
        block ends. The owner's handle needs no pin.
        """
        copies = self._copies
        if copies is None:
            yield self._store
            return
        self._store  # noqa: B018 - takes up a first published copy, or raises
        with self._adopting:  # no copy is taken up between reading the two
            store, directory = self._inner, self._reading
            if store is None or directory is None:
                raise StoreUnavailable("the RDF store is closed")
            copies.pin(directory)
        try:
            yield store
        finally:
            copies.unpin(directory)

    # --------------------------------------------------------------- projection
    @property
    def needs_rebuild(self) -> bool:
        """True when the quads are not a complete projection (new store, broken rebuild)."""
        if self.path is not None:
            return (self.path / _REBUILD_MARKER).exists()
        return self._stale

    def _mark_stale(self) -> None:
        if self.path is not None:
            (self.path / _REBUILD_MARKER).touch()
        self._stale = True

    def _mark_complete(self) -> None:
        if self.path is not None:
            (self.path / _LAYOUT_FILE).write_text(_LAYOUT)
            (self.path / _REBUILD_MARKER).unlink(missing_ok=True)
        self._stale = False

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreUnavailable(
                f"the RDF store at {self.path} is open read-only; "
                "only the process that owns it projects",
                path=str(self.path),
            )

    def project(
        self,
        record_store: ProjectionSource,
        *,
        limit: int = 1000,
        publish_every: float | None = None,
    ) -> int:
        """Catch up with the SQL outbox: project what up to ``limit`` rows changed.

        An ingest only ever adds to a bundle (new records, element descriptions merged
        into a union), and a bundle's quads are the union of its records' quads (see
        :func:`_bundle_quads`). So for most rows the quads of the records they name are
        added, and the work is that of the batch, not of the bundle it joined. A row
        that names the whole bundle (a replay, changed bundle metadata) makes its named
        graph equal to the quads of its current SQL content (a bundle gone from SQL
        loses its graph). Then the outbox rows are marked done. A crash before the
        marking only means the same records are projected again next time, which
        gives the same quads. A store that :attr:`needs_rebuild` is rebuilt instead.

        Readers never see a bundle vanish while it is replaced: the new quads go in
        first (one transaction), then the quads no longer true come out.

        Args:
            record_store: the SQL store.
            limit: the most outbox rows to take in this call.
            publish_every: publish a snapshot for the processes reading this store
                between two bundles once this many seconds have passed since the newest
                one (see :meth:`publish_for_readers`); None publishes nothing. The
                service's projector passes its interval: a catch-up after a bulk ingest
                of 1M records ran 85-110 s, and the readers saw none of it until it
                ended. Not during a rebuild, which is one bulk load.

        Returns:
            The number of bundles projected (0 when the RDF side is caught up).
        """
        self._check_writable()
        if self.needs_rebuild:
            bundles, _ = self._rebuild(record_store, None)
            return bundles
        rows = record_store.outbox_pending(limit)
        if not rows:
            return 0
        # Per bundle: None (project it whole) or the earliest new position and the
        # merged elements of its rows in this batch (earlier rows are projected).
        changes: dict[str, tuple[int, set[str]] | None] = {}
        for row in rows:
            known = changes.get(row.bundle_id, (row.from_position, set()))
            if row.from_position is None or known is None:
                changes[row.bundle_id] = None
                continue
            first, merged = known
            changes[row.bundle_id] = (min(first, row.from_position), merged | set(row.merged))
        writes = 0
        with self._lock:
            # One bundle at a time: the working set (the records as prov objects,
            # rdflib triples, quads and a scratch store) is then that of one bundle's
            # changes, beside the group of bundles the SQL store reads together (read
            # one by one, the reads cost more than decoding the rows). The memtables
            # are flushed as the writes add up, not once at the end: a batch of 1 000
            # rows behind a busy ingest wrote 90 000 quads, and a query worker opening
            # the store next replayed them all (see _FLUSH_AFTER_WRITES).
            # The quads a bundle adds are gathered (self._added) and written together
            # (_write_added): every _BULK_BATCH quads, before a snapshot is taken, and
            # at the end; so a snapshot between bundles still holds every bundle before
            # it.
            wanted = {b: change or (0, ()) for b, change in changes.items()}
            try:
                for bundle_id, bundle in record_store.changed_bundles(wanted):
                    writes += self._project_bundle(bundle_id, bundle, changes[bundle_id])
                    if 2 * len(self._added) >= _BULK_BATCH or self._snapshot_due(publish_every):
                        writes += self._write_added()
                    self._offer_snapshot(publish_every)
                writes += self._write_added()
            finally:
                self._added = []  # an error: the outbox rows stay pending, all comes again
            self._generation += 1
            self._offer_snapshot(publish_every)
        record_store.outbox_done([row.seq for row in rows])
        _log.debug(
            "projected %d bundle(s) into the RDF store (%d quads written)", len(changes), writes
        )
        return len(changes)

    def _project_bundle(
        self,
        bundle_id: str,
        bundle: Bundle | None,
        change: tuple[int, set[str]] | None,
    ) -> int:
        """Project what ``change`` names of a bundle, as read (None: deleted since);
        ``change`` None projects the bundle whole. Returns the quads written: the quads
        of new records are only gathered, for :meth:`_write_added`."""
        if bundle is None or change is None:
            # A replacement reads the store (the graph's quads, the other graphs' for
            # the default graph's copies): what was gathered goes in first.
            written = self._write_added()
            if bundle is None:
                return written + self._replace_graph(bundle_id, [])  # deleted since: it goes
            quads = self._quads_of(bundle)
            return written + (self._replace_graph(bundle_id, quads) if quads is not None else 0)
        quads = self._quads_of(bundle)
        if quads is not None:
            if not self._added:
                self._added_since = time.monotonic()
            self._added += quads  # with their default graph's copies when written
        return 0

    def _write_added(self) -> int:
        """Write the quads gathered since the last write; returns how many.

        Many go through the bulk loader (see ``_BULK_MIN``), which writes files, not
        memtables, so they need no flush; it is not one transaction, but the readers
        only ever see snapshots taken between two writes, and a crash leaves the outbox
        rows pending, so the same quads come again. A few go in one transaction.
        """
        added, self._added = self._added, []
        written = 2 * len(added)  # each with its copy in the default graph
        if written >= _BULK_MIN:
            _bulk_load(self._store, added, merged=True)
        elif added:
            self._store.extend(_merged(added))  # one transaction; a quad stored stays one
            self._flush_if_due(written)
        return written

    def _snapshot_due(self, publish_every: float | None) -> bool:
        """Whether a snapshot may be taken after this bundle: a query waits for one, or
        the quads gathered first are ``publish_every`` s old (the readers' interval)."""
        if not self._added:
            return False
        if self._snapshots is not None and self._snapshots.wanted:
            return True
        return publish_every is not None and time.monotonic() - self._added_since >= publish_every

    def _quads_of(self, bundle: Bundle) -> list[Any] | None:
        """The bundle's quads, or None (logged, counted) when they cannot be made.

        Ingest checks every record, so this is a bug of ours or a record shape the
        PROV-O mapping fails on. One such bundle must not hold up the projection of
        everything stored after it: its records stay in SQL (lineage and exports have
        them), the RDF store goes without them, and ``unprojectable`` names it.
        """
        try:
            return _bundle_quads(bundle)
        except Exception as exc:
            if bundle.id not in self.unprojectable:
                _log.error(
                    "cannot project bundle %s into the RDF store (%s: %s); its records stay "
                    "in SQL, SPARQL does not see them",
                    bundle.id,
                    type(exc).__name__,
                    exc,
                )
            self.unprojectable.add(bundle.id)
            return None

    def _offer_snapshot(self, publish_every: float | None) -> None:
        """Checkpoint for the queries waiting on this projection, if any, and for the
        readers once ``publish_every`` s have passed (lock held; see :meth:`project`)."""
        if self._snapshots is not None:
            self._snapshots.serve_request(self._store, self._generation)
        if publish_every is None or self.path is None:
            return
        try:
            self._reader_snapshots().publish_between_bundles(
                self._store, self._generation, publish_every
            )
        except OSError as exc:  # a full disk, say: the projection goes on
            _log.warning("provml: cannot publish an RDF snapshot for the readers: %s", exc)

    def _flush_if_due(self, writes: int) -> None:
        """Flush RocksDB's memtables once ``_FLUSH_AFTER_WRITES`` quads were written.

        Bounds the writer's memory (see ``_FLUSH_AFTER_WRITES``); an in-memory store has
        no memtables to flush.
        """
        if self.path is None:
            return
        self._unflushed_writes += writes
        if self._unflushed_writes >= _FLUSH_AFTER_WRITES:
            self._store.flush()
            self._unflushed_writes = 0

    def _replace_graph(self, bundle_id: str, quads: list[Any]) -> int:
        """Make a bundle's named graph equal to ``quads``; the number of quads written
        (added or removed, the default graph's copies included).

        The default graph keeps a triple while any bundle's graph holds it: a triple
        the bundle no longer states leaves it only when no other graph states it.
        """
        ox = _ox()
        store = self._store
        name = ox.NamedNode(bundle_id)
        old = set(store.quads_for_pattern(None, None, None, name))
        if len(quads) > _BULK_THRESHOLD:
            # Too big for a scratch store: replace wholesale through the bulk loader
            # (``old`` is still held, for the default graph's reference check).
            store.remove_graph(name)
            _bulk_load(store, quads, merged=True)
            # The bulk loader writes SST files, not memtables; the removal before it
            # does, about as many quads as the new graph holds.
            return 2 * len(quads) + self._drop_unstated(old - set(quads))
        # Oxigraph keeps typed literals as values and writes them back in canonical form
        # ("…+00:00" comes back "…Z"), so the new quads pass through a scratch store to
        # compare with the stored ones like for like.
        scratch = ox.Store()
        scratch.extend(quads)
        new = set(scratch.quads_for_pattern(None, None, None, name))
        added, obsolete = new - old, old - new
        store.extend(_merged(list(added)))  # one transaction
        for quad in obsolete:
            store.remove(quad)
        return 2 * len(added) + len(obsolete) + self._drop_unstated(obsolete)

    def _drop_unstated(self, removed: set[Any]) -> int:
        """Remove from the default graph the triples of ``removed`` no graph states now."""
        ox = _ox()
        store, default, dropped = self._store, ox.DefaultGraph(), 0
        for quad in removed:
            s, p, o = quad.subject, quad.predicate, quad.object
            if not any(q.graph_name != default for q in store.quads_for_pattern(s, p, o, None)):
                store.remove(ox.Quad(s, p, o, default))
                dropped += 1
        return dropped

    def rebuild(
        self, record_store: ProjectionSource, progress: Callable[[int], None] | None = None
    ) -> int:
        """Clear the store and project every bundle of ``record_store`` again.

        Args:
            record_store: the SQL store.
            progress: called with the number of bundles projected so far.

        Returns:
            The number of quads in the rebuilt store.
        """
        self._check_writable()
        _, quads = self._rebuild(record_store, progress)
        return quads

    def _rebuild(
        self, record_store: ProjectionSource, progress: Callable[[int], None] | None
    ) -> tuple[int, int]:
        # Outbox rows pending now are covered by this rebuild; rows that arrive during
        # it stay pending and are projected (again, harmlessly) by the next project().
        pending = [row.seq for row in record_store.outbox_pending(_ALL_PENDING)]
        done = 0

        def all_quads() -> Iterator[Any]:
            nonlocal done
            for bundle in record_store.iter_bundles():
                if self._closing.is_set():
                    raise StoreUnavailable(_REBUILD_STOPPED)
                yield from self._quads_of(bundle) or []
                done += 1
                if progress is not None:
                    progress(done)

        with self._lock:
            if self._closing.is_set():
                raise StoreUnavailable(_REBUILD_STOPPED)
            self._mark_stale()  # a crash from here on leaves the store marked incomplete
            store = self._store
            store.clear()
            _bulk_load(store, all_quads(), merged=True)
            if self.path is not None:
                store.flush()  # bulk loads bypass the write-ahead log
                self._unflushed_writes = 0
            self._mark_complete()
            self._generation += 1
        for start in range(0, len(pending), 10_000):
            record_store.outbox_done(pending[start : start + 10_000])
        quads = self.count()
        _log.info("rebuilt the RDF store: %d bundle(s), %d quad(s)", done, quads)
        return done, quads

    # --------------------------------------------------------------- queries
    def query(
        self,
        sparql: str,
        *,
        timeout: float | None = None,
        max_rows: int | None = None,
        use_default_graph_as_union: bool = True,
        allow_service: bool = False,
        base_iri: str | None = None,
        default_graph_uris: Sequence[str] = (),
        named_graph_uris: Sequence[str] = (),
    ) -> QueryResult:
        """Run a read-only SPARQL 1.1 query.

        The default graph is the RDF merge of all bundles, each triple once however
        many bundles state it (unless the query names its own dataset with FROM / FROM
        NAMED, or ``use_default_graph_as_union`` is False: then it is empty);
        each bundle is addressable as ``GRAPH <bundle IRI>``. The prefixes ``prov``,
        ``mls``, ``provml``, ``xsd``, ``rdf`` and ``rdfs`` need no declaration.

        Args:
            sparql: the query text.
            timeout: seconds after which the query is stopped; None for no limit.
            max_rows: keep at most this many rows (or triples) and set ``truncated``.
            use_default_graph_as_union: see above.
            allow_service: allow federated queries (SERVICE), which make the store
                fetch from other servers. Off by default.
            base_iri: the IRI that relative IRIs in the query resolve against (an HTTP
                endpoint passes its own URL); without one, relative IRIs are an error.
            default_graph_uris: the SPARQL protocol's ``default-graph-uri``: the graphs
                whose merge is the default graph, overriding the query's FROM.
            named_graph_uris: the protocol's ``named-graph-uri``: the only graphs
                ``GRAPH`` may reach, overriding the query's FROM NAMED.

        Raises:
            QueryRejected: an update (INSERT, DELETE, LOAD, CLEAR, DROP, CREATE…), a
                SERVICE clause not allowed, a syntax error (with the parser's message),
                or a query Oxigraph cannot evaluate (an unknown extension function).
            QueryTimeout: the query ran longer than ``timeout``.
            StoreUnavailable: the store cannot answer. On a read-only store: the writer
                has published no snapshot yet, within ``timeout`` (a read-only store
                never reads the writer's own directory, see :mod:`provml._rdf_snapshots`),
                or at once without a ``timeout``.
        """
        shape = inspect_query(sparql)
        if shape.is_update:
            raise QueryRejected(
                f"SPARQL {shape.form} is an update; this store answers read-only queries only",
                operation=shape.form,
            )
        if shape.uses_service and not allow_service:
            raise QueryRejected(
                "federated queries (SERVICE) are not allowed: they would make this "
                "server fetch from other servers",
                operation="SERVICE",
            )
        if max_rows is not None and max_rows < 0:
            raise QueryRejected("max_rows must not be negative", max_rows=max_rows)
        if timeout is not None and timeout <= 0:
            raise QueryRejected("a query's time limit must be positive", timeout=timeout)
        ox = _ox()
        options: dict[str, Any] = {"prefixes": PREFIXES, "base_iri": base_iri}
        if default_graph_uris or named_graph_uris:  # the protocol's dataset wins (§2.1.4)
            options["default_graph"] = [ox.NamedNode(iri) for iri in default_graph_uris]
            options["named_graphs"] = [ox.NamedNode(iri) for iri in named_graph_uris]
        elif not use_default_graph_as_union and not shape.has_dataset_clause:
            options["default_graph"] = []  # an empty default graph
        # Otherwise the default graph is the store's own: the merge of all bundles.
        store = self._store if not self.read_only else None  # a reader's may come later

        query = (sparql, options, max_rows)

        def work() -> QueryResult:
            if store is not None:
                return _evaluate(store, *query)
            with self._handle() as handle:
                return _evaluate(handle, *query)

        try:
            if timeout is None:
                return work()
            if self.path is None or os.name == "nt":  # no select() on pipes on Windows
                return _run_in_thread(work, timeout)
            pool = self._worker_pool()
            began = time.monotonic()  # a new store's first query may wait for its build
            if self.read_only:  # another process writes; the generation is ours
                copies = self._wait_for_published(timeout)
                with copies.use() as copy:
                    left = _time_left(timeout, began)
                    return pool.run((str(copy), self._generation, *query), left)
            snapshots = self._reader_snapshots()
            with snapshots.use(store, self._generation, self._lock, timeout) as directory:
                return pool.run((str(directory), 0, *query), _time_left(timeout, began))
        except SyntaxError as exc:
            raise QueryRejected(f"SPARQL syntax error: {exc}", reason="syntax") from None
        except RuntimeError as exc:
            # pyoxigraph's evaluation errors, e.g. a call of an unknown extension function
            raise QueryRejected(
                f"the query cannot be evaluated: {exc}", reason="evaluation"
            ) from None
        except OSError as exc:
            if shape.uses_service:
                raise StoreUnavailable(f"a SERVICE call failed: {exc}") from exc
            raise StoreUnavailable(f"the RDF store failed to answer: {exc}") from exc

    def prestart_query_worker(self) -> None:
        """Start a SPARQL query worker in the background, for an on-disk store.

        Returns at once. A service calls this as it starts: with several server
        processes, the first query each one received waited for its worker's
        interpreter to start (at 300k records: ~200 ms against ~70 ms warm).
        """
        if self.path is None or os.name == "nt":  # the same stores as query() sends off
            return
        try:
            pool = self._worker_pool()
        except StoreUnavailable:
            return
        threading.Thread(target=pool.prestart, name="provml-sparql-prestart", daemon=True).start()

    def _worker_pool(self) -> Any:
        from provml._sparql_worker import WorkerPool

        with self._workers_lock:
            if self._inner is None and self._copies is None:  # a reader has none at first
                raise StoreUnavailable("the RDF store is closed")
            if self._workers is None:
                self._workers = WorkerPool()
            return self._workers

    def _reader_snapshots(self) -> Any:
        """The checkpoints the query workers read (:mod:`provml._rdf_snapshots`)."""
        from provml._rdf_snapshots import ReadSnapshots

        assert self.path is not None and not self.read_only
        with self._workers_lock:
            if self._snapshots is None:
                self._snapshots = ReadSnapshots(self.path)
            return self._snapshots

    def as_rdflib_dataset(self) -> rdflib.Dataset:
        """An rdflib Dataset over this store (through oxrdflib), default graph = the merge.

        rdflib code (its own SPARQL engine, graph walks, serialisers) reads the same
        quads. Meant for reading: writes through it bypass the projection and are lost
        at the next rebuild.
        """
        try:
            from oxrdflib import OxigraphStore
            from rdflib import Dataset
        except ImportError:  # pragma: no cover
            raise MissingExtra("oxrdflib", "server") from None
        # The store's default graph is already the merge of all bundles (see _merged).
        dataset = Dataset(store=OxigraphStore(store=self._store), default_union=False)
        for prefix, namespace in PREFIXES.items():
            dataset.bind(prefix, namespace)
        return dataset

    # --------------------------------------------------------------- inspection
    def quads(self, graph: str | None = None) -> Iterator[pyoxigraph.Quad]:
        """Every quad (pyoxigraph ``Quad``), the default graph's too, or one bundle's.

        Lazy; a reader's copy stays pinned (see :meth:`_handle`) until the iterator is
        used up or closed.
        """
        ox = _ox()
        name = ox.NamedNode(graph) if graph is not None else None
        with self._handle() as store:
            yield from store.quads_for_pattern(None, None, None, name)

    def count(self, graph: str | None = None) -> int:
        """The number of quads in the bundles' graphs, or in one bundle's graph.

        The default graph's copies of them (see :func:`_merged`) are not counted.
        The whole store's are counted by Oxigraph's query engine, which lets go of the
        GIL, so other requests are served meanwhile (a count walked in Python, or
        ``len(store)``, holds it). It still walks every quad: see :meth:`recent_count`.
        """
        if graph is not None:  # one bundle: small
            return sum(1 for _ in self.quads(graph))
        with self._handle() as store:
            (row,) = store.query(_COUNT_NAMED_GRAPH_QUADS)
            return int(row[0].value)

    def recent_count(
        self,
        max_age: float = 30.0,
        wait: float = 0.0,
        in_thread: Callable[[], None] | None = None,
    ) -> int | None:
        """:meth:`count` of the whole store as last taken, without waiting for a new one
        (None before the first is done); up to ``wait`` s for one it starts.

        A new count starts, in a thread of its own, when the projection has moved since
        the last one and that one is ``max_age`` seconds old (or was taken during a
        rebuild; until the new one is done, a count taken during a rebuild that has
        ended is not given). ``in_thread`` runs first in the counting thread (the
        service lowers its priority with it).

        For ``/readyz``, which must answer at once: a count walks every quad (1.5-2 s
        of CPU at 2.4M quads, more beside a catch-up), and a probe that waited for it
        missed the benchmark's 30 s deadline; a probe every few seconds that counted
        each time spent most of a core on counting.
        """
        now, generation = time.monotonic(), self._generation
        counted = self._counted
        if counted is not None:
            counted_generation, when, quads, partial = counted
            if counted_generation == generation or (now - when < max_age and not partial):
                return quads
        with self._counting_lock:
            if self._counting is None or not self._counting.is_alive():
                self._counting = threading.Thread(
                    target=self._count_for_later,
                    args=(generation, in_thread),
                    name="provml-rdf-count",
                    daemon=True,
                )
                self._counting.start()
            counting = self._counting
        if wait > 0:
            counting.join(wait)
        counted = self._counted
        if counted is None or (counted[3] and not self.needs_rebuild):
            return None  # none yet, or one of a rebuild that has ended since
        return counted[2]

    def _count_for_later(self, generation: int, in_thread: Callable[[], None] | None) -> None:
        try:
            if in_thread is not None:
                in_thread()
            quads = self.count()
        except ProvmlError as exc:  # closed meanwhile, or nothing published yet
            _log.debug("provml: the RDF store was not counted: %s", exc)
            return
        self._counted = (generation, time.monotonic(), quads, self.needs_rebuild)

    def graphs(self) -> list[str]:
        """The names of the named graphs (one per projected bundle), sorted."""
        with self._handle() as store:
            return sorted(g.value for g in store.named_graphs())

    def checksum(self) -> str:
        """A SHA-256 digest of the sorted N-Quads of the store: equal stores, equal digests."""
        digest = hashlib.sha256()
        with self._handle() as store:
            lines = sorted(str(q) for q in store)
        for line in lines:
            digest.update(line.encode())
            digest.update(b"\n")
        return digest.hexdigest()

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "memory"
        return f"<RDFStore {where}{' read-only' if self.read_only else ''}>"


def _open_oxigraph(opener: Callable[[str], Any], directory: Path, attempts: int = 1) -> Any:
    """Open an Oxigraph directory; turn RocksDB's errors into messages to act on.

    A read-only open reads RocksDB's manifest while the writer may be replacing the
    files it lists (at start-up, flush or compaction); the next attempt reads the new
    manifest, so read-only opens try ``attempts`` times before giving up.
    """
    for attempt in range(attempts):
        try:
            return opener(str(directory))
        except (OSError, RuntimeError) as exc:
            text = str(exc)
            if isinstance(exc, OSError) and "lock" in text.lower():
                holder = "this process" if "current process" in text else "another process"
                raise StoreUnavailable(
                    f"the RDF store at {directory} is already open for writing in {holder} "
                    "(Oxigraph allows one writer: a running `provml serve` or CLI command). "
                    "Open it read-only, or use the writer's handle.",
                    path=str(directory),
                ) from None
            if attempt + 1 == attempts:
                raise StoreUnavailable(
                    f"cannot open the RDF store at {directory}: {text}", path=str(directory)
                ) from exc
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def _time_left(timeout: float, began: float) -> float:
    """What is left of a query's ``timeout`` after waiting for a snapshot since ``began``."""
    left = timeout - (time.monotonic() - began)
    if left <= 0:
        raise QueryTimeout(
            f"the RDF store was being built for the whole {timeout:g} s time limit",
            timeout=timeout,
        )
    return left


def _nothing_published(when: str) -> str:
    """The message of a reader that has no snapshot of the writer's to read."""
    return (
        "the RDF store is being built: the process that owns it has published no snapshot "
        f"to query {when}; try again shortly"
    )


def _open_read_only(path: str | os.PathLike[str]) -> Any:
    """A read-only snapshot of the on-disk store at ``path``."""
    return _open_oxigraph(_ox().Store.read_only, Path(path), _READ_ONLY_ATTEMPTS)


def open_rdf_store(location: StoreLocation, read_only: bool = False) -> RDFStore:
    """Open the RDF side of a provml store location (see :mod:`provml.config`)."""
    return RDFStore.open(location.rdf_path, read_only=read_only)
