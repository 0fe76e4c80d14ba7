"""Readers and writers behind :mod:`provml.prov_io`'s format registry.

Each reader turns bytes into a ``prov.model.ProvDocument`` and each writer the reverse.
prov does PROV-JSON, PROV-XML, PROV-N and the PROV-O mapping; rdflib parses and writes
the RDF syntaxes. What lives here is what those libraries leave to their caller:

- PROV-JSON and PROV-XML are checked for shape first, so that a malformed document is
  refused naming the place (prov forgives some shapes PROV-JSON forbids);
- RDF is read offline (no remote JSON-LD context is fetched) and with literals kept in
  their lexical form, and every IRI gets a namespace before prov decodes it;
- PROV-O is written with typed literals quoted, so no digit is lost.

Imports: ``prov``, ``rdflib`` and ``lxml`` inside functions only (:func:`require` turns
a missing one into :class:`provml.errors.MissingExtra`); never sqlalchemy or fastapi.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import io
import json
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from provml.errors import MissingExtra, ParseError


def require(module: str) -> Any:
    """Import an optional dependency, or raise MissingExtra naming the install command."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(module.split(".")[0], "server") from None


# ------------------------------------------------------------------ prov's own formats


def prov_reader(prov_format: str, **options: Any) -> Callable[[bytes], Any]:
    """A reader for one of prov's own formats ("json", "xml", "provn", "jsonld")."""

    def read(data: bytes) -> Any:
        from prov.model import ProvDocument

        return ProvDocument.deserialize(source=io.BytesIO(data), format=prov_format, **options)

    return read


def prov_writer(prov_format: str, **options: Any) -> Callable[[Any], bytes]:
    """A writer for one of prov's own formats; ``options`` go to prov's serializer."""

    def write(doc: Any) -> bytes:
        buffer = io.BytesIO()
        doc.serialize(buffer, format=prov_format, **options)
        return buffer.getvalue()

    return write


def read_prov_json(data: bytes) -> Any:
    """Read PROV-JSON, refusing shapes PROV-JSON forbids before prov sees them."""
    # prov's reader forgives shapes that PROV-JSON forbids (a list at the top, a
    # string where a record map belongs); check the shape first, naming the place.
    try:
        tree = json.loads(data)
    except UnicodeDecodeError as exc:
        raise ParseError(f"PROV-JSON is not UTF-8 text: {exc.reason}", field="document") from None
    except json.JSONDecodeError as exc:
        raise ParseError(
            f"not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            field="document",
            line=exc.lineno,
            column=exc.colno,
        ) from None
    _check_prov_json(tree, "document")
    return prov_reader("json")(data)


_PROV_JSON_RECORDS = frozenset(
    (
        "entity",
        "activity",
        "agent",
        "wasGeneratedBy",
        "used",
        "wasInformedBy",
        "wasStartedBy",
        "wasEndedBy",
        "wasInvalidatedBy",
        "wasDerivedFrom",
        "wasAttributedTo",
        "wasAssociatedWith",
        "actedOnBehalfOf",
        "wasInfluencedBy",
        "specializationOf",
        "alternateOf",
        "hadMember",
        "mentionOf",
    )
)


_BUILTIN_PREFIXES = {"prov": "", "xsd": "", "xsi": ""}


def _check_prov_json(tree: Any, where: str, prefixes: dict[str, str] | None = None) -> None:
    if not isinstance(tree, dict):
        raise ParseError(
            f"{where}: a PROV-JSON document must be a JSON object, got {type(tree).__name__}",
            field=where,
        )
    declared = dict(prefixes or _BUILTIN_PREFIXES)
    if isinstance(tree.get("prefix"), dict):
        declared.update(tree["prefix"])
    for key, value in tree.items():
        place = f"{where}.{key}"
        if key == "prefix":
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise ParseError(f"{place} must map prefixes to namespace IRIs", field=place)
        elif key == "bundle":
            if where != "document":
                raise ParseError(f"{place}: bundles cannot be nested in bundles", field=place)
            if not isinstance(value, dict):
                raise ParseError(f"{place} must map bundle ids to bundles", field=place)
            for bundle_id, content in value.items():
                _check_id(bundle_id, place, declared)
                _check_prov_json(content, f"bundle {bundle_id}", declared)
        elif key in _PROV_JSON_RECORDS:
            if not isinstance(value, dict):
                raise ParseError(f"{place} must map record ids to records", field=place)
            for record_id, content in value.items():
                if not record_id.startswith("_:"):  # a blank id: a relation without id
                    _check_id(record_id, place, declared)
                statements = content if isinstance(content, list) else [content]
                if not statements or not all(isinstance(s, dict) for s in statements):
                    raise ParseError(
                        f"{place}.{record_id} must be an object of attributes",
                        record=record_id,
                        field=place,
                    )
        else:
            raise ParseError(f"{place}: {key!r} is not a PROV-JSON record type", field=place)


def _check_id(record_id: str, place: str, declared: dict[str, str]) -> None:
    prefix, colon, _ = record_id.partition(":")
    if colon and prefix in declared:
        return
    if colon and any(uri and record_id.startswith(uri) for uri in declared.values()):
        return  # a full IRI under a declared namespace
    if not colon and "default" in declared:
        return
    problem = (
        f"uses the prefix {prefix!r}, which is not declared"
        if colon
        else "has no prefix and no default namespace is declared"
    )
    raise ParseError(f"{place}: the id {record_id!r} {problem}", record=record_id, field=place)


def read_prov_xml(data: bytes) -> Any:
    """Read PROV-XML: well-formed XML whose root element is prov:document."""
    etree = require("lxml.etree")
    try:
        root = etree.fromstring(data, parser=etree.XMLParser(resolve_entities=False))
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        raise ParseError(
            f"not well-formed XML: {exc.msg}", field="document", line=line, column=column
        ) from None
    if root is None or etree.QName(root).text != "{http://www.w3.org/ns/prov#}document":
        found = etree.QName(root).text if root is not None else "nothing"
        raise ParseError(
            f"a PROV-XML document's root element is prov:document, not {found}",
            field="document",
            line=getattr(root, "sourceline", None),
        )
    return prov_reader("xml")(data)


# ------------------------------------------------------------------------ PROV-O

_RDF_LOCK = threading.Lock()


@contextmanager
def exact_literals() -> Iterator[None]:
    """Keep RDF literals in their lexical form while provml reads or writes PROV-O.

    rdflib rewrites literals to a canonical form on creation ("P0Y0M0DT0H0M12.225S"
    becomes "PT12.225S"), which breaks exact round trips. Its switch is a module
    global, hence the lock.
    """
    rdflib = require("rdflib")
    with _RDF_LOCK:
        saved = rdflib.NORMALIZE_LITERALS
        rdflib.NORMALIZE_LITERALS = False
        try:
            yield
        finally:
            rdflib.NORMALIZE_LITERALS = saved


def _namespace_of(iri: str) -> str:
    cut = max(iri.rfind("#"), iri.rfind("/"))
    if cut < 0:
        cut = iri.rfind(":")
    return iri[: cut + 1]


def _document_namespaces(dataset: Any) -> list[tuple[str, str]]:
    """The prefixes to give prov: every namespace the data uses, and no others.

    prov names every IRI by a namespace; N-Quads and JSON-LD declare none, so each
    IRI's "directory" gets one (``ns1``…). rdflib binds dozens of prefixes of its own
    (brick, csvw, …) in every graph; those the data does not use are left out.
    """
    from rdflib import Literal as RDFLiteral
    from rdflib import URIRef

    used = set()
    for quad in dataset.quads((None, None, None, None)):
        for term in quad:
            if isinstance(term, URIRef):
                used.add(_namespace_of(str(term)))
            elif isinstance(term, RDFLiteral) and term.datatype is not None:
                used.add(_namespace_of(str(term.datatype)))
    bound = [(prefix, str(uri)) for prefix, uri in dataset.namespaces()]
    keep = [
        (prefix, uri)
        for prefix, uri in bound
        if (prefix, uri) not in _rdflib_prefixes() or any(u.startswith(uri) for u in used)
    ]
    taken = {prefix for prefix, _ in bound}
    known = {uri for _, uri in bound}
    n = 0
    for uri in sorted(used - known - {""}):
        n += 1
        while f"ns{n}" in taken:
            n += 1
        dataset.bind(f"ns{n}", uri, override=False)
        keep.append((f"ns{n}", uri))
    return keep


@functools.cache
def _rdflib_prefixes() -> frozenset[tuple[str, str]]:
    rdflib = require("rdflib")
    return frozenset((prefix, str(uri)) for prefix, uri in rdflib.Graph().namespaces())


class _DeclaredNamespaces:
    """A dataset as prov's decoder sees it, with only the namespaces given."""

    def __init__(self, dataset: Any, namespaces: list[tuple[str, str]]) -> None:
        self._dataset = dataset
        self._namespaces = namespaces

    def namespaces(self) -> list[tuple[str, str]]:
        return self._namespaces

    def graphs(self) -> Any:
        return self._dataset.graphs()


_OFFLINE: contextvars.ContextVar[bool] = contextvars.ContextVar("provml_offline", default=False)
_AUDIT_HOOK: list[bool] = []


def _refuse_remote_fetches(event: str, args: tuple[Any, ...]) -> None:
    if event == "urllib.Request" and _OFFLINE.get():
        url = getattr(args[0], "full_url", args[0]) if args else "?"
        raise ParseError(
            f"the document asks to fetch {url}; provml reads documents offline "
            "(embed JSON-LD contexts instead of referencing them)",
            field="@context",
        )


@contextmanager
def _offline() -> Iterator[None]:
    """Refuse network and file fetches while parsing an uploaded document.

    rdflib's JSON-LD parser dereferences remote ``@context`` IRIs with urllib; a
    server must not fetch URLs named by its uploads. Python has no per-call switch
    for that, so an audit hook (installed once) refuses them inside this block.
    """
    if not _AUDIT_HOOK:
        sys.addaudithook(_refuse_remote_fetches)
        _AUDIT_HOOK.append(True)
    token = _OFFLINE.set(True)
    try:
        yield
    finally:
        _OFFLINE.reset(token)


def rdf_reader(rdf_format: str) -> Callable[[bytes], Any]:
    """A PROV-O reader for one rdflib syntax: offline, literals as written."""

    def read(data: bytes) -> Any:
        rdflib = require("rdflib")
        from prov.model import ProvDocument
        from prov.serializers.provrdf import ProvRDFSerializer

        with exact_literals(), _offline():
            dataset = rdflib.Dataset(default_union=True)
            dataset.parse(data=data, format=rdf_format)
            namespaces = _document_namespaces(dataset)
            doc = ProvDocument()
            ProvRDFSerializer(doc).decode_document(
                _DeclaredNamespaces(dataset, namespaces),  # type: ignore[arg-type]
                doc,
            )
        return doc

    return read


def prov_o_dataset(doc: Any) -> Any:
    """prov's PROV-O encoding of a document, typed literals written as they are.

    rdflib's Turtle/TriG writers abbreviate numbers and booleans to their own
    canonical spelling (``10.0`` for ``"10"^^xsd:decimal``, ``1e+07`` for
    ``"10000001.0"^^xsd:double``, losing digits); quoting them keeps the lexical form.
    """
    from prov.serializers.provrdf import ProvRDFSerializer
    from rdflib import XSD
    from rdflib import Literal as RDFLiteral

    class QuotedLiteral(RDFLiteral):
        def _literal_n3(self, use_plain: bool = False, qname_callback: Any = None) -> str:
            return super()._literal_n3(False, qname_callback)

    dataset = ProvRDFSerializer(doc).encode_document(doc)
    typed = [
        quad
        for quad in dataset.quads((None, None, None, None))
        if isinstance(quad[2], RDFLiteral)
        and quad[2].datatype is not None
        and quad[2].datatype != XSD.string
    ]
    for s, p, o, graph in typed:
        dataset.remove((s, p, o, graph))
        dataset.add((s, p, QuotedLiteral(str(o), datatype=o.datatype), graph))
    return dataset


def rdf_writer(rdf_format: str) -> Callable[[Any], bytes]:
    """A PROV-O writer for one rdflib syntax (Turtle, TriG, N-Quads)."""

    def write(doc: Any) -> bytes:
        require("rdflib")
        with exact_literals():
            return prov_o_dataset(doc).serialize(format=rdf_format, encoding="utf-8")

    return write


def write_jsonld(doc: Any) -> bytes:
    """PROV-O as JSON-LD (expanded form, one named graph per nested bundle)."""
    require("rdflib")
    from rdflib import RDF
    from rdflib import Literal as RDFLiteral

    with exact_literals():
        dataset = prov_o_dataset(doc)
        # prov:type values may be literals (rdf:type "x"^^dt); JSON-LD's @type holds
        # IRIs only, so rdf:type is written as a plain property when any is a literal.
        literal_types = any(isinstance(o, RDFLiteral) for o in dataset.objects(None, RDF.type))
        return dataset.serialize(format="json-ld", use_rdf_type=literal_types, encoding="utf-8")
