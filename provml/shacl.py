"""SHACL validation of PROV-ML documents against the shapes shipped with provml.

The PROV-ML ontology (``ontology/provml.ttl``) and the SHACL shapes every document provml
emits must satisfy (``ontology/shapes.ttl``) are package data of ``provml.ontology``;
this module loads them and runs pyshacl. The ontology's class hierarchy is mixed into the
data graph while validating, so that shapes aimed at a class (``sh:targetClass``,
``sh:class``) also reach its PROV-ML subclasses: no RDFS or OWL inference runs.

Imports: rdflib (the ``server`` extra) and pyshacl (the ``dev`` extra), both on first use,
each raising :class:`~provml.errors.MissingExtra` when absent. Must not import sqlalchemy,
fastapi or ``provml.capture``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, NamedTuple

from provml.errors import MissingExtra, ProvmlError
from provml.vocab import MLS, PROV, PROVML, RDF, RDFS, XSD

if TYPE_CHECKING:
    import rdflib

ONTOLOGY_PACKAGE = "provml.ontology"
ONTOLOGY_FILE = "provml.ttl"
SHAPES_FILE = "shapes.ttl"
CONTEXT_FILE = "context.jsonld"

_SH = "http://www.w3.org/ns/shacl#"
# Prefixes for rendering result paths; full IRIs in angle brackets otherwise.
_PREFIXES = {"prov": PROV, "provml": PROVML, "mls": MLS, "rdf": RDF, "rdfs": RDFS, "xsd": XSD}


class Violation(NamedTuple):
    """One SHACL result of severity sh:Violation.

    ``focus_node`` is the IRI (or ``_:`` blank node id) of the offending node, ``path`` the
    property path in SPARQL syntax with the usual prefixes (None for node-level
    constraints), ``message`` the shape's message.
    """

    focus_node: str
    path: str | None
    message: str


@dataclass(frozen=True)
class ShapesReport:
    """The outcome of :func:`validate`: whether the graph conforms, and why not."""

    conforms: bool
    violations: list[Violation] = field(default_factory=list)
    text: str = ""


def _rdflib():
    try:
        import rdflib
    except ImportError:  # pragma: no cover - rdflib ships with the server extra
        raise MissingExtra("rdflib", "server") from None
    return rdflib


def _read(name: str) -> str:
    return resources.files(ONTOLOGY_PACKAGE).joinpath(name).read_text(encoding="utf-8")


def load_ontology() -> rdflib.Graph:
    """The PROV-ML ontology (OWL in Turtle) as a fresh rdflib graph.

    Returns:
        A new graph the caller may modify.
    """
    return _rdflib().Graph().parse(data=_read(ONTOLOGY_FILE), format="turtle")


def load_shapes() -> rdflib.Graph:
    """The PROV-ML SHACL shapes as a fresh rdflib graph.

    Returns:
        A new graph the caller may modify.
    """
    return _rdflib().Graph().parse(data=_read(SHAPES_FILE), format="turtle")


def load_context() -> str:
    """The PROV-ML JSON-LD context document, as JSON text."""
    return _read(CONTEXT_FILE)


@functools.cache
def _shared_graphs() -> tuple[rdflib.Graph, rdflib.Graph]:
    """The shapes, and the ontology's named class hierarchy to mix into data graphs.

    SHACL follows only rdfs:subClassOf (for targets and sh:class), so only those triples
    are mixed in: the rest of the ontology (labels, restrictions) would cost time on every
    validation and change nothing. Parsed once per process; never handed out.
    """
    rdflib = _rdflib()
    hierarchy = rdflib.Graph()
    for sub, sup in load_ontology().subject_objects(rdflib.RDFS.subClassOf):
        if isinstance(sub, rdflib.URIRef) and isinstance(sup, rdflib.URIRef):
            hierarchy.add((sub, rdflib.RDFS.subClassOf, sup))
    return load_shapes(), hierarchy


def validate(data_graph: rdflib.Graph) -> ShapesReport:
    """Validate an RDF graph of PROV-ML provenance against the packaged shapes.

    Args:
        data_graph: PROV-O RDF as provml emits it (e.g. a bundle serialised with the
            ``prov`` package). A :class:`rdflib.Dataset` (one named graph per bundle) is
            validated as the union of its graphs, so an entity described in one bundle
            may be used in another. The graph is not modified.

    Returns:
        The report: ``conforms``, the violations (focus node, path, message) sorted for
        stable output, and pyshacl's text report.

    Raises:
        MissingExtra: pyshacl is not installed (``pip install 'provml[dev]'``).
        ProvmlError: pyshacl could not run the validation at all.
    """
    try:
        import pyshacl
        from pyshacl.errors import ReportableRuntimeError
    except ImportError:
        raise MissingExtra("pyshacl", "dev") from None
    shapes, hierarchy = _shared_graphs()
    try:
        conforms, results, text = pyshacl.validate(
            data_graph,
            shacl_graph=shapes,
            ont_graph=hierarchy,
            inference="none",
            advanced=False,
        )
    except ReportableRuntimeError as exc:
        raise ProvmlError(f"SHACL validation could not run: {exc.message}") from exc
    return ShapesReport(conforms=bool(conforms), violations=_violations(results), text=text)


def _violations(results: rdflib.Graph) -> list[Violation]:
    rdflib = _rdflib()
    sh = rdflib.Namespace(_SH)
    out = []
    for result in results.subjects(rdflib.RDF.type, sh.ValidationResult):
        if results.value(result, sh.resultSeverity) != sh.Violation:
            continue
        focus = results.value(result, sh.focusNode)
        path = results.value(result, sh.resultPath)
        messages = sorted(str(m) for m in results.objects(result, sh.resultMessage))
        out.append(
            Violation(
                focus_node=_node_text(focus),
                path=None if path is None else _path_text(results, path),
                message="; ".join(messages),
            )
        )
    return sorted(out, key=lambda v: (v.focus_node, v.path or "", v.message))


def _node_text(node: object) -> str:
    rdflib = _rdflib()
    if isinstance(node, rdflib.BNode):
        return f"_:{node}"
    return str(node)


def _compact(iri: str) -> str:
    for prefix, namespace in _PREFIXES.items():
        if iri.startswith(namespace) and iri[len(namespace) :].isidentifier():
            return f"{prefix}:{iri[len(namespace) :]}"
    return f"<{iri}>"


def _path_text(graph: rdflib.Graph, path: object) -> str:
    """A SHACL property path (RDF form) in SPARQL property path syntax."""
    rdflib = _rdflib()
    from rdflib.collection import Collection

    sh = rdflib.Namespace(_SH)
    if isinstance(path, rdflib.URIRef):
        return _compact(str(path))
    if graph.value(path, rdflib.RDF.first) is not None:
        steps = Collection(graph, path)
        return "(" + "/".join(_path_text(graph, p) for p in steps) + ")"
    alternatives = graph.value(path, sh.alternativePath)
    if alternatives is not None:
        steps = Collection(graph, alternatives)
        return "(" + "|".join(_path_text(graph, p) for p in steps) + ")"
    for predicate, template in (
        (sh.inversePath, "^{}"),
        (sh.zeroOrMorePath, "{}*"),
        (sh.oneOrMorePath, "{}+"),
        (sh.zeroOrOnePath, "{}?"),
    ):
        inner = graph.value(path, predicate)
        if inner is not None:
            return template.format(_path_text(graph, inner))
    return _node_text(path)


__all__ = [
    "ShapesReport",
    "Violation",
    "load_context",
    "load_ontology",
    "load_shapes",
    "validate",
]
