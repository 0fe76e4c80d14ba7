"""PROV-O quads of provml records, mapped directly (no ``prov`` model, no rdflib).

The reference mapping is the ``prov`` package's PROV-O serializer
(``prov.serializers.provrdf.ProvRDFSerializer.encode_container``), reached through
:func:`provml.prov_io.bundle_to_rdf`: records become a ``prov.model.ProvDocument``
(:mod:`provml._provconv`), prov writes an rdflib graph, and :mod:`provml.rdf` turns it
into pyoxigraph quads. That path costs ~100 µs per record; this module writes the same
quads straight from the records, mirroring what prov writes, term for term:

* an element: ``id rdf:type prov:Entity|Activity|Agent``; ``prov:type``/``prov:label``/
  ``prov:location`` become ``rdf:type``/``rdfs:label``/``prov:atLocation``, start and
  end times ``prov:startedAtTime``/``prov:endedAtTime``, every other attribute keeps
  its IRI as the predicate;
* a relation without an id, time or attributes: the binary triple only
  (``:a prov:used :e``);
* any other relation: a qualification node (the relation id, or a blank node typed by
  the relation class) hanging off ``prov:qualified<Class>``, carrying the influencer
  and the other arguments and attributes under the predicates prov picks
  (:data:`_RELATIONS`, :func:`_node_predicate`). prov keeps the binary triple beside
  the node only for the relations whose influencer it also writes on the node
  (communication, attribution, delegation, influence) and for specialization,
  membership and alternate; ``alternateOf`` never gets a node. A ``prov:type`` of
  ``prov:Revision``/``Quotation``/``PrimarySource`` renames the node's class and
  qualifying property;
* values as prov's ``encode_rdf_representation`` writes them under provml's
  ``exact_literals()`` (:func:`_value`): ``str`` plain, ``int`` as xsd:int/long/integer
  by magnitude, ``float`` as xsd:double in ``repr`` form, ``bool`` as xsd:boolean,
  ``datetime`` as xsd:dateTime in ISO form, ``Ref`` as an IRI, ``Literal`` kept as
  written except where prov collapses it to a Python value first (xsd:string, the
  integers, xsd:double, xsd:boolean).

:func:`bundle_quads` returns None when a bundle holds anything mirrored here only
approximately (:class:`_Fallback`); the caller then takes the prov path, which stays
the reference. What falls back: ``mentionOf`` (prov fails on an unidentified one with
attributes); prov's formal argument names used as attributes (``prov:plan``,
``prov:time``…, which prov coerces and allows once); ``Literal`` values typed
xsd:dateTime, xsd:QName, prov:QUALIFIED_NAME, rdf:langString, xsd:normalizedString,
xsd:token or base64Binary, with an empty or non-BCP-47 language tag, or two xsd:decimal
values of one attribute (prov keeps one of two equal decimals); values of subclasses of
the value types; a relation ``prov:type`` given as a literal naming a derivation
subtype, or an identified subtyped one that also states its own class (prov's
output then depends on attribute order); an IRI ending in ``:``; a bundle failing
:func:`~provml.records.check_bundle`. The tests (``tests/test_prov_o_quads.py``) hold
the two paths equal.

Imports: pyoxigraph lazily (the ``server`` extra); standard library and provml's core.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import re
from typing import Any

from provml.records import Bundle, Element, Literal, Ref, Relation, check_bundle
from provml.vocab import PROV, RDF, RDFS, RELATIONS, XSD

__all__ = ["bundle_quads"]


class _Fallback(Exception):
    """Something the direct mapping does not mirror exactly: use the prov path."""


_RDF_TYPE = RDF + "type"
_RDF_LANGSTRING = RDF + "langString"

#: Per relation kind: (PROV-O class, written qualified-only, influencer also on the
#: node, predicate rewrites). prov writes the binary triple of a "qualified-only"
#: relation only when it has nothing but its two main arguments; the rewrites are
#: prov's ``_RELATION_PREDICATE_REWRITES`` (substring needle -> predicate, in order).
_TIMED = (
    ("time", "atTime"),
    ("ender", "hadActivity"),
    ("starter", "hadActivity"),
    ("location", "atLocation"),
)
_RELATIONS: dict[str, tuple[str, bool, bool, tuple[tuple[str, str], ...]]] = {
    "wasGeneratedBy": ("Generation", True, False, _TIMED),
    "used": ("Usage", True, False, (("used", "entity"), *_TIMED)),
    "wasInformedBy": ("Communication", False, True, ()),
    "wasStartedBy": ("Start", True, False, (("trigger", "entity"), *_TIMED)),
    "wasEndedBy": ("End", True, False, (("trigger", "entity"), *_TIMED)),
    "wasInvalidatedBy": ("Invalidation", True, False, _TIMED),
    "wasDerivedFrom": (
        "Derivation",
        True,
        False,
        (
            ("activity", "hadActivity"),
            ("generation", "hadGeneration"),
            ("usage", "hadUsage"),
            ("usedEntity", "entity"),
        ),
    ),
    "wasAttributedTo": ("Attribution", False, True, ()),
    "wasAssociatedWith": ("Association", True, False, ()),
    "actedOnBehalfOf": ("Delegation", False, True, (("activity", "hadActivity"),)),
    "wasInfluencedBy": ("Influence", False, True, ()),
    "specializationOf": ("Specialization", False, False, ()),
    "alternateOf": ("Alternate", False, False, ()),
    "hadMember": ("Membership", False, False, ()),
    # mentionOf is left to prov: its unidentified form with attributes has no node
    # for them, which prov's serializer does not handle.
}
#: prov's ``_COMMON_PREDICATE_REWRITES``, applied before the per-kind ones.
_COMMON_REWRITES = (("plan", "hadPlan"), ("informant", "activity"), ("responsible", "agent"))
#: prov's ``_QUALIFIED_ATTR_PREDICATES``: attributes with a PROV-O property on a node.
_NODE_ATTRIBUTES = {
    PROV + "role": PROV + "hadRole",
    PROV + "plan": PROV + "hadPlan",
    PROV + "type": _RDF_TYPE,
    PROV + "label": RDFS + "label",
}
#: prov's ``_ELEMENT_ATTR_PREDICATES`` plus ``prov:location``.
_ELEMENT_ATTRIBUTES = {
    PROV + "type": _RDF_TYPE,
    PROV + "label": RDFS + "label",
    PROV + "location": PROV + "atLocation",
}
_ELEMENT_CLASSES = {"entity": "Entity", "activity": "Activity", "agent": "Agent"}
#: prov's formal attribute names (``PROV_ATTRIBUTES``): as an ordinary attribute prov
#: coerces their values (to a qualified name or a time) and allows one value only.
_FORMAL_NAMES = frozenset(
    PROV + name
    for name in [
        "entity",
        "activity",
        "trigger",
        "informed",
        "informant",
        "starter",
        "ender",
        "agent",
        "plan",
        "delegate",
        "responsible",
        "generatedEntity",
        "usedEntity",
        "generation",
        "usage",
        "specificEntity",
        "generalEntity",
        "alternate1",
        "alternate2",
        "bundle",
        "influencee",
        "influencer",
        "collection",
        "time",
        "startTime",
        "endTime",
    ]
)
_SUBTYPES = frozenset(PROV + name for name in ("Revision", "Quotation", "PrimarySource"))
_PROV_TYPE = PROV + "type"
#: prov's formal attribute IRIs of each relation kind, in its order.
_FORMAL = {
    kind: tuple(
        PROV + name for name in (s.subject, s.object, *s.extras, *(("time",) if s.has_time else ()))
    )
    for kind, s in RELATIONS.items()
}

# Literal datatypes prov treats specially: collapsed to a Python value first
# (string, the integers, double, boolean), or rewritten in ways not mirrored here
# (dateTime parsing, qualified names, base64, rdflib's whitespace folding of
# normalizedString/token, rdf:langString without a tag).
_XSD_STRING, _XSD_ANYURI, _XSD_DOUBLE, _XSD_BOOLEAN = (
    XSD + "string",
    XSD + "anyURI",
    XSD + "double",
    XSD + "boolean",
)
_XSD_INT, _XSD_LONG, _XSD_INTEGER = XSD + "int", XSD + "long", XSD + "integer"
_XSD_DATETIME, _XSD_DECIMAL = XSD + "dateTime", XSD + "decimal"
_UNMIRRORED_DATATYPES = frozenset(
    (
        _XSD_DATETIME,
        XSD + "normalizedString",
        XSD + "token",
        XSD + "QName",
        PROV + "QUALIFIED_NAME",
        _RDF_LANGSTRING,
    )
)
# rdflib's language-tag check (full match: rdflib's ``$`` would let a newline end it).
_LANGTAG = re.compile(r"[a-zA-Z]+(?:-[a-zA-Z0-9]+)*")
_INT32, _INT64 = 2**31, 2**63


class _Terms:
    """pyoxigraph terms, made once: IRIs recur in every record."""

    def __init__(self) -> None:
        import pyoxigraph

        self.ox = pyoxigraph
        self.named: dict[str, Any] = {}
        self.node_predicates: dict[tuple[str, str], Any] = {}

    def iri(self, iri: str) -> Any:
        node = self.named.get(iri)
        if node is None:
            # _provconv cannot name "scheme:" IRIs as PROV qualified names and refuses
            # them; leave such bundles to that path and its error.
            if iri.endswith(":"):
                raise _Fallback(iri)
            if len(self.named) > 200_000:
                self.named.clear()
            node = self.named[iri] = self.ox.NamedNode(iri)
        return node


_TERMS: _Terms | None = None


def _terms() -> _Terms:
    global _TERMS
    if _TERMS is None:
        _TERMS = _Terms()
    return _TERMS


class _State:
    __slots__ = ("blank", "graph", "qualified", "qualifying")

    def __init__(self, graph: Any, qualifying: frozenset[str]) -> None:
        self.graph, self.qualifying = graph, qualifying
        self.blank, self.qualified = 0, False


def _datetime_text(value: _dt.datetime) -> str:
    """prov's ``_xsd_datetime_text``: ISO 8601, odd (LMT) offsets moved to UTC."""
    offset = value.utcoffset()
    if offset is not None and (offset.total_seconds() % 60 or offset.microseconds):
        value = value.astimezone(_dt.UTC)
    return value.isoformat()


def _double_text(value: float) -> str:
    """prov's ``_xsd_double_text``: INF, -INF, NaN, else ``repr``."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "INF" if value > 0 else "-INF"
    return float.__repr__(value)


def _int_datatype(value: int) -> str:
    """prov's ``canonical_xsd_datatype`` for an int: the smallest of int/long/integer."""
    if -_INT32 <= value < _INT32:
        return _XSD_INT
    if -_INT64 <= value < _INT64:
        return _XSD_LONG
    return _XSD_INTEGER


def _value(value: Any, t: _Terms) -> Any:
    """The RDF term prov writes for an attribute value (after its literal collapse)."""
    kind = type(value)
    ox = t.ox
    if kind is str:
        return ox.Literal(value)
    if kind is Ref:
        return t.iri(value.iri)
    if kind is bool:
        return ox.Literal("true" if value else "false", datatype=t.iri(_XSD_BOOLEAN))
    if kind is int:
        return ox.Literal(str(value), datatype=t.iri(_int_datatype(value)))
    if kind is float:
        return ox.Literal(_double_text(value), datatype=t.iri(_XSD_DOUBLE))
    if kind is _dt.datetime:
        return ox.Literal(_datetime_text(value), datatype=t.iri(_XSD_DATETIME))
    if kind is Literal:
        return _literal(value, t)
    raise _Fallback(kind.__name__)  # subclasses (numpy floats, ...) print their own way


def _literal(value: Literal, t: _Terms) -> Any:
    """A ``Literal`` as prov writes it: ``_auto_literal_conversion`` then rdflib."""
    ox = t.ox
    lexical, datatype, lang = value.lexical, value.datatype, value.lang
    if lang is not None:
        # prov keeps a tagged literal as it is and writes the tag only; rdflib refuses
        # tags it does not like, and an empty tag is not a tag to prov's writer.
        if not _LANGTAG.fullmatch(lang):
            raise _Fallback(lang)
        return ox.Literal(lexical, language=lang)
    if datatype == _XSD_STRING:
        return ox.Literal(lexical)
    if datatype == _XSD_ANYURI:  # an Identifier to prov, written as xsd:anyURI
        return ox.Literal(lexical, datatype=t.iri(datatype))
    if datatype in _UNMIRRORED_DATATYPES or "base64Binary" in datatype:
        raise _Fallback(datatype)
    if datatype in (_XSD_INT, _XSD_LONG, _XSD_INTEGER):
        try:
            number = int(lexical)
        except ValueError:
            pass
        else:
            # prov collapses an integer literal only when its datatype is the one it
            # would give the number itself.
            if _int_datatype(number) == datatype:
                return ox.Literal(str(number), datatype=t.iri(datatype))
    elif datatype == _XSD_DOUBLE:
        try:
            return ox.Literal(_double_text(float(lexical)), datatype=t.iri(datatype))
        except ValueError:
            pass
    elif datatype == _XSD_BOOLEAN:
        folded = lexical.lower()
        if folded in ("true", "1", "false", "0"):
            text = "true" if folded in ("true", "1") else "false"
            return ox.Literal(text, datatype=t.iri(datatype))
    return ox.Literal(lexical, datatype=t.iri(datatype))


def _node_predicate(kind: str, name: str, formal: tuple[str, ...], t: _Terms) -> Any:
    """prov's ``_qualified_attr_predicate``: the predicate of an attribute on a node."""
    key = (kind, name)
    found = t.node_predicates.get(key)
    if found is None:
        predicate = name if name in formal else _NODE_ATTRIBUTES.get(name, name)
        for needle, replacement in (*_COMMON_REWRITES, *_RELATIONS[kind][3]):
            if PROV + needle in predicate:  # prov tests substrings, so do we
                predicate = PROV + replacement
        if len(t.node_predicates) > 20_000:
            t.node_predicates.clear()
        found = t.node_predicates[key] = t.iri(predicate)
    return found


def _attributes(attributes: tuple[tuple[str, Any], ...], state: _State) -> list[Any]:
    """The attributes prov keeps, in order; raise _Fallback for those it coerces.

    prov stores each attribute's values in a set keyed by (type, value) of the value it
    collapsed them to, keeping the first: of 0.0 and -0.0, or of two times at the same
    instant in different offsets, only the first is written.
    """
    kept = []
    seen = set()
    for name, value in attributes:
        if name in _FORMAL_NAMES:
            raise _Fallback(name)
        if name in state.qualifying:  # an attribute may be named prov:qualifiedUsage
            state.qualified = True
        kind = type(value)
        key: Any = None
        if kind is float or kind is _dt.datetime:
            key = (name, kind, value)
        elif kind is Literal and value.lang is None:
            if value.datatype == _XSD_DECIMAL:  # prov compares decimals by value
                key = (name, _XSD_DECIMAL, value.lexical)
                if any(k[0] == name and k[1] == _XSD_DECIMAL for k in seen):
                    raise _Fallback(name)
            elif value.datatype == _XSD_DOUBLE:
                with contextlib.suppress(ValueError):
                    key = (name, float, float(value.lexical))
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        kept.append((name, value))
    return kept


def _element(record: Element, t: _Terms, add: Any, state: _State) -> None:
    if record.kind not in _ELEMENT_CLASSES:
        raise _Fallback(record.kind)
    attributes = _attributes(record.attributes, state)
    subject = t.iri(record.id)
    add(subject, t.iri(_RDF_TYPE), t.iri(PROV + _ELEMENT_CLASSES[record.kind]))
    if record.start_time is not None:
        add(subject, t.iri(PROV + "startedAtTime"), _value(record.start_time, t))
    if record.end_time is not None:
        add(subject, t.iri(PROV + "endedAtTime"), _value(record.end_time, t))
    for name, value in attributes:
        add(subject, t.iri(_ELEMENT_ATTRIBUTES.get(name, name)), _value(value, t))


def _relation(record: Relation, t: _Terms, add: Any, out: dict[Any, None], state: _State) -> None:
    kind = record.kind
    entry = _RELATIONS.get(kind)
    if entry is None:
        raise _Fallback(kind)
    cls, qualified_only, influencer_on_node, _ = entry
    signature = RELATIONS[kind]
    attributes = _attributes(record.attributes, state) if record.attributes else ()
    # prov's formal attributes in its order: subject, object, the others, time.
    formal = _FORMAL[kind]
    values: list[Any] = [record.subject, record.object]
    if signature.extras:
        extras = dict(record.extras)
        if len(extras) != len(record.extras):  # prov allows one value per argument
            raise _Fallback("extras")
        values += [extras.get(n) for n in signature.extras]
    if signature.has_time:
        values.append(None)  # the time, a literal: set below
    qualifier, node_class = cls, PROV + cls
    types = [v for k, v in attributes if k == _PROV_TYPE]
    if types:
        if any(type(v) is Literal and v.lexical in _SUBTYPES for v in types):
            raise _Fallback("subtype literal")  # prov fails on these
        subtypes = [v.iri for v in dict.fromkeys(types) if type(v) is Ref and v.iri in _SUBTYPES]
        if subtypes:  # prov: the last prov:Revision/Quotation/PrimarySource wins
            qualifier = subtypes[-1][len(PROV) :]
            node_class = subtypes[-1]
    else:
        subtypes = []

    terms = [None if v is None else t.iri(v) for v in values]
    if signature.has_time and record.time is not None:
        terms[-1] = _value(record.time, t)
    subject = terms[0]
    skip = {0}  # formal positions already written by the binary triple
    if record.id is not None:
        node = t.iri(record.id)
        type_quad = (node, t.iri(_RDF_TYPE), t.iri(PROV + cls))
        add(*type_quad)
        if kind == "alternateOf":
            return
        if subject is not None:
            qualifying = PROV + "qualified" + qualifier
            state.qualified |= qualifying in state.qualifying
            add(subject, t.iri(qualifying), node)
        removed = bool(subtypes) and subject is not None
    else:
        if subject is None:
            raise _Fallback("no subject")
        has_qualifiers = bool(record.attributes) or any(v is not None for v in terms[2:])
        if terms[1] is not None and not (qualified_only and has_qualifiers):
            if not (influencer_on_node and has_qualifiers):
                skip.add(1)
            add(subject, t.iri(PROV + kind), terms[1])
        if kind == "alternateOf" or not has_qualifiers:
            return
        state.blank += 1
        node = t.ox.BlankNode(f"n{state.blank}")
        qualifying = PROV + "qualified" + qualifier
        state.qualified |= qualifying in state.qualifying
        add(subject, t.iri(qualifying), node)
        add(node, t.iri(_RDF_TYPE), t.iri(node_class))
        removed = False
    written = []
    for position, term in enumerate(terms):
        if term is not None and position not in skip:
            written.append((_node_predicate(kind, formal[position], formal, t), term))
    for name, value in attributes:
        written.append((_node_predicate(kind, name, formal, t), _value(value, t)))
    for predicate, term in written:
        add(node, predicate, term)
    if removed:
        # prov drops the relation's own class for a subtype (and re-runs that drop
        # before each attribute, which an attribute restating the class would race).
        if any((node, p, o) == type_quad for p, o in written):
            raise _Fallback("restated class")
        out.pop(t.ox.Quad(*type_quad, state.graph), None)


def bundle_quads(bundle: Bundle, qualifying: frozenset[str]) -> tuple[list[Any], bool, bool] | None:
    """The PROV-O quads prov's serializer gives for the bundle's records, or None.

    Args:
        bundle: The bundle (nested bundles are not followed).
        qualifying: The qualifying properties (``prov:qualifiedUsage``…) whose
            binary forms the caller adds (:func:`provml.rdf._with_unqualified_forms`).

    Returns:
        ``(quads, has_blank_nodes, has_qualifying_quads)`` in the graph named by the
        bundle IRI, blank nodes labelled provisionally (``n1``, ``n2``…); or None when
        the bundle holds something mirrored here only approximately, or fails
        :func:`provml.records.check_bundle`: the prov path then decides.
    """
    t = _terms()
    try:
        check_bundle(bundle)
        for _, uri in bundle.namespaces:
            if not uri or uri.isspace():
                return None
        graph = t.iri(bundle.id)
        state = _State(graph, qualifying)
        out: dict[Any, None] = {}
        quad = t.ox.Quad

        def add(s: Any, p: Any, o: Any) -> None:
            out[quad(s, p, o, graph)] = None

        for record in bundle.records:
            if type(record) is Element:
                _element(record, t, add, state)
            elif type(record) is Relation:
                _relation(record, t, add, out, state)
            else:
                return None
    except Exception:  # _Fallback, or anything unforeseen: the prov path decides
        return None
    return list(out), state.blank > 0, state.qualified
