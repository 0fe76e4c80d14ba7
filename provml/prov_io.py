"""PROV serialisations of provml bundles: PROV-JSON, PROV-XML, PROV-N and PROV-O RDF.

The ``prov`` package is the hub: provml bundles convert exactly to and from a
``prov.model.ProvDocument`` (:mod:`provml._provconv`), prov reads and writes PROV-JSON,
PROV-XML, PROV-N and PROV-O, and rdflib writes the PROV-O graph as Turtle, TriG,
N-Quads or JSON-LD (readers and writers in :mod:`provml._provformats`). Formats sit in
one registry (:data:`FORMATS`), looked up by name, media type, file extension or the
first bytes of a document.

:func:`bundle_to_rdf` gives the PROV-O triples of one bundle; the RDF projector
(``provml.rdf``) calls it for every bundle it writes.

Third-party exceptions stop here: malformed input raises
:class:`provml.errors.ParseError` naming the problem (and the line where the parser
knows it), a document that breaks PROV-DM raises
:class:`provml.errors.InvalidRecord`, an unknown format
:class:`provml.errors.UnsupportedFormat`.

Imports: ``prov``, ``rdflib`` and ``lxml`` lazily (a missing one raises
:class:`provml.errors.MissingExtra`); never sqlalchemy or fastapi.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from provml._provformats import (
    exact_literals,
    prov_reader,
    prov_writer,
    rdf_reader,
    rdf_writer,
    read_prov_json,
    read_prov_xml,
    require,
    write_jsonld,
)
from provml.errors import InvalidRecord, MissingExtra, ParseError, UnsupportedFormat
from provml.records import Bundle, Literal, Ref, check_bundle
from provml.vocab import PROV, PROV_TYPE

if TYPE_CHECKING:
    import prov.model
    import rdflib


def _conv() -> Any:
    require("prov.model")
    from provml import _provconv

    return _provconv


def to_prov_document(bundles: Sequence[Bundle]) -> prov.model.ProvDocument:
    """Build the ``prov`` document of the given bundles.

    Args:
        bundles: ``bundles[0]``'s records become the document's top-level records;
            every further bundle becomes a nested PROV bundle named by its id.

    Returns:
        A ``prov.model.ProvDocument`` equal (per prov's ``__eq__``) to what
        :func:`from_prov_document` would turn back into the same bundles.

    Raises:
        InvalidRecord: a bundle fails :func:`provml.records.check_bundle`, or an id
            cannot be written as a PROV qualified name.
    """
    if not bundles:
        raise InvalidRecord("a PROV document needs at least one bundle", field="bundle")
    for bundle in bundles:
        check_bundle(bundle)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _conv().to_prov_document(bundles)


def from_prov_document(doc: prov.model.ProvDocument, bundle_id: str) -> list[Bundle]:
    """The provml bundles of a ``prov`` document.

    Args:
        doc: The document.
        bundle_id: The id of the bundle that receives the document's top-level
            records; each nested PROV bundle becomes a bundle of its own IRI with
            ``parent=bundle_id``.

    Returns:
        The top-level bundle first, then the nested ones; each passes
        :func:`provml.records.check_bundle`. Statements that describe one element
        twice are merged (union of attributes), as PROV-DM reads them.

    Raises:
        InvalidRecord: the document breaks PROV-DM or provml's checks.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _conv().from_prov_document(doc, bundle_id)


# ------------------------------------------------------------------------- PROV-O


def bundle_to_rdf(bundle: Bundle, *, shortcuts: bool = False) -> rdflib.Graph:
    """The PROV-O triples of one bundle's own records, in a plain graph.

    prov's PROV-O mapping writes a relation that has an id, a time or attributes
    only in its qualified form (``:a prov:qualifiedUsage [ prov:entity :e ]``); the
    unqualified triple (``:a prov:used :e``) is entailed by PROV-O but not written.

    Args:
        bundle: The bundle; nested bundles are not followed (pass each one).
        shortcuts: Also write the unqualified triple of every relation that has both
            ends (``prov:used``, ``prov:wasDerivedFrom``, and ``prov:wasRevisionOf``/
            ``wasQuotedFrom``/``hadPrimarySource`` for derivation subtypes), so that
            SPARQL property paths walk lineage without the qualified pattern.

    Returns:
        An ``rdflib.Graph`` (no named graph) with the bundle's namespaces bound.
    """
    require("rdflib")
    doc = to_prov_document([bundle])
    from prov.serializers.provrdf import ProvRDFSerializer
    from rdflib import URIRef

    with warnings.catch_warnings(), exact_literals():
        warnings.simplefilter("ignore")
        graph = ProvRDFSerializer().encode_container(doc)
    if shortcuts:
        for record in bundle.records:
            if getattr(record, "object", None) and record.subject:
                for predicate in _shortcut_predicates(record):
                    graph.add((URIRef(record.subject), URIRef(predicate), URIRef(record.object)))
    return graph


_SUBTYPE_PREDICATES = {
    PROV + "Revision": PROV + "wasRevisionOf",
    PROV + "Quotation": PROV + "wasQuotedFrom",
    PROV + "PrimarySource": PROV + "hadPrimarySource",
}


def _shortcut_predicates(relation: Any) -> list[str]:
    # Every PROV-N relation keyword is also the name of its PROV-O property.
    predicates = [PROV + relation.kind]
    if relation.kind == "wasDerivedFrom":
        predicates += [
            _SUBTYPE_PREDICATES[v.iri]
            for k, v in relation.attributes
            if k == PROV_TYPE and isinstance(v, Ref) and v.iri in _SUBTYPE_PREDICATES
        ]
    return predicates


def bundles_to_dataset(bundles: Sequence[Bundle]) -> rdflib.Dataset:
    """The PROV-O quads of the bundles: one named graph per bundle, named by its id.

    Args:
        bundles: Bundles to project.

    Returns:
        An ``rdflib.Dataset`` with a named graph per bundle and every bundle's
        namespaces bound.
    """
    rdflib = require("rdflib")
    dataset = rdflib.Dataset()
    for bundle in bundles:
        graph = bundle_to_rdf(bundle)
        for prefix, uri in graph.namespaces():
            dataset.bind(prefix, uri, override=False)
        named = dataset.graph(rdflib.URIRef(bundle.id))
        dataset.addN((s, p, o, named) for s, p, o in graph)
    return dataset


# ------------------------------------------------------------------------ formats


@dataclass(frozen=True)
class Format:
    """One PROV serialisation: how to name it, recognise it, write it and read it.

    ``write`` is None for import-only formats.
    """

    name: str
    media_type: str
    extensions: tuple[str, ...]
    description: str
    read: Callable[[bytes], prov.model.ProvDocument]
    write: Callable[[prov.model.ProvDocument], bytes] | None
    media_aliases: tuple[str, ...] = ()


#: Every PROV serialisation provml reads, by name; those with a writer are exported.
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "json",
            "application/json",
            (".json",),
            "PROV-JSON",
            read_prov_json,
            prov_writer("json", indent=2),
            ("application/prov+json",),
        ),
        Format(
            "xml",
            "application/xml",
            (".xml", ".provx"),
            "PROV-XML",
            read_prov_xml,
            prov_writer("xml"),
            ("text/xml", "application/prov+xml"),
        ),
        Format(
            "provn",
            "text/provenance-notation",
            (".provn", ".pn"),
            "PROV-N",
            prov_reader("provn"),
            prov_writer("provn"),
        ),
        Format(
            "turtle",
            "text/turtle",
            (".ttl",),
            "PROV-O as Turtle",
            rdf_reader("turtle"),
            rdf_writer("turtle"),
            ("application/x-turtle",),
        ),
        Format(
            "jsonld",
            "application/ld+json",
            (".jsonld",),
            "PROV-O as JSON-LD",
            rdf_reader("json-ld"),
            write_jsonld,
        ),
        Format(
            "nquads",
            "application/n-quads",
            (".nq",),
            "PROV-O as N-Quads",
            rdf_reader("nquads"),
            rdf_writer("nquads"),
            ("application/n-triples", "text/plain+nquads"),
        ),
        Format(
            "trig",
            "application/trig",
            (".trig",),
            "PROV-O as TriG",
            rdf_reader("trig"),
            rdf_writer("trig"),
        ),
        Format(
            "prov-jsonld",
            "application/prov+ld+json",
            (),
            "PROV-JSON-LD (W3C member submission)",
            prov_reader("jsonld"),
            None,
        ),
        Format(
            "rdfxml",
            "application/rdf+xml",
            (".rdf", ".owl"),
            "PROV-O as RDF/XML",
            rdf_reader("xml"),
            None,
        ),
    )
}

#: The formats :func:`serialize` writes.
EXPORT_FORMATS: tuple[str, ...] = tuple(name for name, f in FORMATS.items() if f.write)

_BY_MEDIA_TYPE = {m: f.name for f in FORMATS.values() for m in (f.media_type, *f.media_aliases)}
_BY_EXTENSION = {ext: f.name for f in FORMATS.values() for ext in f.extensions}
_SINGLE_GRAPH_FORMATS = frozenset(("turtle",))
_JSON_FAMILY = frozenset(("json", "jsonld", "prov-jsonld"))
_GENERIC_MEDIA_TYPES = frozenset(("application/octet-stream", "text/plain", ""))
_PROVN_START = re.compile(rb"^\s*(//[^\n]*\n\s*|/\*.*?\*/\s*)*document\b", re.DOTALL)
_QUAD_LINE = re.compile(rb"^\s*(<[^>\s]*>|_:\S+)\s+<[^>\s]*>\s+.+\.\s*$")


def _unsupported(what: str) -> UnsupportedFormat:
    names = ", ".join(
        f"{n} ({f.description}, {f.media_type}{'' if f.write else ', import only'})"
        for n, f in FORMATS.items()
    )
    return UnsupportedFormat(f"{what}; supported formats: {names}", supported=list(FORMATS))


def _sniff(data: bytes) -> str | None:
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith((b"{", b"[")):
        if b'"@context"' in head or b'"@graph"' in head or b'"@id"' in head:
            return "prov-jsonld" if b"openprovenance.org/prov-jsonld" in head else "jsonld"
        return "json"
    if head.startswith((b"<", b"_:")) and _QUAD_LINE.match(head.split(b"\n", 1)[0]):
        return "nquads"
    if head.startswith(b"<"):
        if b"http://www.w3.org/ns/prov#" in head and b"document" in head:
            return "xml"
        if b"http://www.w3.org/1999/02/22-rdf-syntax-ns#" in head:
            return "rdfxml"
        return "xml"
    if _PROVN_START.match(head):
        return "provn"
    if re.match(rb"^(@prefix|@base|prefix|base|#)", head, re.IGNORECASE):
        return "trig" if re.search(rb"^\s*(GRAPH\b|\{|\S+\s*\{)", head, re.M | re.I) else "turtle"
    return None


def _refined(name: str, data: bytes | None) -> str:
    # PROV-JSON, JSON-LD and PROV-JSON-LD share extensions and media types in the
    # wild; the content tells them apart.
    if name in _JSON_FAMILY and data:
        sniffed = _sniff(data)
        if sniffed in _JSON_FAMILY:
            return sniffed
    return name


def detect_format(
    filename: str | None = None, media_type: str | None = None, data: bytes | None = None
) -> str:
    """Name the PROV format of a document from its media type, file name or content.

    A specific media type wins over the file extension, which wins over the content.

    Args:
        filename: The document's file name (its extension is used).
        media_type: A media type such as ``text/turtle; charset=utf-8``.
        data: The document's bytes (the first few kilobytes are looked at).

    Returns:
        A key of :data:`FORMATS`.

    Raises:
        UnsupportedFormat: none of the clues names a supported format; the message
            lists the supported ones.
    """
    if media_type is not None:
        mt = media_type.split(";", 1)[0].strip().lower()
        if mt in _BY_MEDIA_TYPE:
            return _refined(_BY_MEDIA_TYPE[mt], data)
        if mt not in _GENERIC_MEDIA_TYPES and filename is None and data is None:
            raise _unsupported(f"media type {mt!r} is not a PROV serialisation")
    if filename:
        suffix = filename.lower().rpartition(".")[2]
        name = _BY_EXTENSION.get("." + suffix)
        if name is not None:
            return _refined(name, data)
    if data:
        sniffed = _sniff(data)
        if sniffed is not None:
            return sniffed
    clues = [c for c in (media_type and f"media type {media_type!r}", filename) if c]
    raise _unsupported(
        "cannot tell the PROV format of " + (" / ".join(clues) if clues else "the document")
    )


def _format(fmt: str) -> Format:
    found = FORMATS.get(fmt)
    if found is None:
        raise _unsupported(f"unknown format {fmt!r}")
    return found


def serialize(bundles: Sequence[Bundle], fmt: str) -> bytes:
    """Write bundles as one PROV document.

    Args:
        bundles: ``bundles[0]`` is the document's top level, the others its nested
            bundles (as :meth:`RecordStore.document` returns them).
        fmt: A name in :data:`EXPORT_FORMATS`. ``turtle`` cannot name graphs, so it
            takes a single bundle; ``trig``/``nquads``/``jsonld`` keep nested bundles
            in named graphs.

    Returns:
        The document as UTF-8 bytes.

    Raises:
        UnsupportedFormat: ``fmt`` is unknown or import-only, or is ``turtle`` and
            there are nested bundles.
        InvalidRecord: an id cannot be written in PROV, or a value holds a character
            the format cannot carry (XML 1.0 has no U+0001).
    """
    spec = _format(fmt)
    if spec.write is None:
        raise _unsupported(f"{fmt} is import-only")
    if len(bundles) > 1 and fmt in _SINGLE_GRAPH_FORMATS:
        raise _unsupported(
            f"{spec.description} has no named graphs to keep {len(bundles) - 1} nested "
            "bundle(s) apart; export as trig, nquads or jsonld (PROV-O), or json/xml/provn"
        )
    doc = to_prov_document(bundles)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return spec.write(doc)
    except (ValueError, UnicodeError) as exc:  # lxml refuses text XML cannot carry
        raise _unwritable(bundles, spec, exc) from None


# Characters XML 1.0 cannot carry (and lone surrogates, which nothing can).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _unwritable(bundles: Sequence[Bundle], spec: Format, exc: Exception) -> InvalidRecord:
    for bundle in bundles:
        for record in bundle.records:
            for name, value in record.attributes:
                text = value.lexical if isinstance(value, Literal) else value
                found = _NOT_XML.search(text) if isinstance(text, str) else None
                if found is not None:
                    return InvalidRecord(
                        f"{record.id or record.kind}: {name} holds the character "
                        f"U+{ord(found.group()):04X}, which {spec.description} cannot carry",
                        record=record.id,
                        field=name,
                    )
    return InvalidRecord(f"the bundles cannot be written as {spec.description}: {exc}")


def parse(
    data: bytes | str, fmt: str | None, *, bundle_id: str, filename: str | None = None
) -> list[Bundle]:
    """Read a PROV document into provml bundles.

    Args:
        data: The document's bytes (text is taken as UTF-8).
        fmt: A key of :data:`FORMATS`, or None to detect it from ``filename`` and
            the content.
        bundle_id: The IRI of the bundle that receives the top-level records.
        filename: Used to detect the format and to name the document in errors.

    Returns:
        The top-level bundle, then one per nested PROV bundle (``parent=bundle_id``).

    Raises:
        ParseError: the bytes are not a document of the format; the message names
            the problem and, where the parser knows it, the line.
        InvalidRecord: the document is well-formed but breaks PROV-DM.
        UnsupportedFormat: the format is unknown or cannot be detected.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if fmt is None:
        fmt = detect_format(filename=filename, data=data)
    spec = _format(fmt)
    source = filename or "document"
    if not data.strip():
        raise ParseError(f"{source} is empty: no {spec.description} to read", field="document")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            doc = spec.read(bytes(data))
    except ParseError as exc:
        if exc.message.startswith(source):
            raise
        raise ParseError(f"{source}: {exc.message}", **exc.details) from None
    except MissingExtra:
        raise
    except Exception as exc:  # the boundary: prov, lxml, rdflib errors become ours
        raise _parse_error(exc, spec, source) from None
    return from_prov_document(doc, bundle_id)


def _parse_error(exc: Exception, spec: Format, source: str) -> ParseError:
    line = getattr(exc, "line", None) or getattr(exc, "lineno", None)
    column = getattr(exc, "column", None) or getattr(exc, "colno", None)
    if line is None and hasattr(exc, "position"):
        line, column = exc.position
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, IndexError) and spec.name in ("turtle", "trig"):
        # rdflib's Turtle parser runs off the end of a truncated statement.
        text = "the document ends in the middle of a statement"
    where = f" at line {line}" if line and f"line {line}" not in text else ""
    return ParseError(
        f"{source} is not valid {spec.description}{where}: {text:.500}",
        field="document",
        line=line,
        column=column,
        format=spec.name,
    )


__all__ = [
    "EXPORT_FORMATS",
    "FORMATS",
    "Format",
    "bundle_to_rdf",
    "bundles_to_dataset",
    "detect_format",
    "from_prov_document",
    "parse",
    "serialize",
    "to_prov_document",
]
