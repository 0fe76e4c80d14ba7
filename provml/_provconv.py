"""Exact conversion between provml's record model and the ``prov`` package's model.

:func:`to_prov_document` and :func:`from_prov_document` are the two halves; every PROV
serialisation in :mod:`provml.prov_io` goes through them, so the value mapping lives
here once:

=========================================  =======================================
provml (``provml.records``)                ``prov.model``
=========================================  =======================================
``Ref(iri)``                               ``QualifiedName``
``Literal(lexical, xsd:anyURI)``           ``Identifier``
``Literal(lexical, datatype, lang)``       ``Literal`` (prov collapses xsd:string,
                                           xsd:int, xsd:double, xsd:boolean and
                                           xsd:dateTime to Python values; so do we)
``str``/``int``/``float``/``bool``/        themselves
``datetime``
=========================================  =======================================

Relations map by their PROV-N keyword to prov's record classes; their formal arguments
(``provml.vocab.RELATIONS``) are prov's formal attributes ``prov:<name>``.

On import, statements that describe one element are merged (PROV-DM: the union of the
attributes); statements of one relation id are unified where PROV-CONSTRAINTS can
(an absent argument matches any) and otherwise kept as asserted; an id described as
both an entity and an activity is refused. Names under no declared namespace get a
generated prefix (``ns1``…), cut so that PROV-XML's xsd:QName values stay valid.

Imports: ``prov`` (the caller checks it is installed), ``provml.records``,
``provml.vocab``, ``provml.errors``. Never sqlalchemy, fastapi or rdflib.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import prov.model as pm
from prov.constants import PROV_N_MAP, PROV_RECORD_IDS_MAP
from prov.identifier import Identifier, Namespace, QualifiedName

from provml.errors import Conflict, InvalidRecord
from provml.records import (
    AttrValue,
    Bundle,
    Element,
    Literal,
    Record,
    Ref,
    Relation,
    check_bundle,
    merge_elements,
)
from provml.vocab import RELATIONS, STANDARD_PREFIXES, XSD_ANYURI, XSD_STRING

_PROV_NS = pm.PROV  # prov's own Namespace objects, shared by every document
_ATTR_TIME = pm.PROV_ATTR_TIME
_ATTR_START = pm.PROV_ATTR_STARTTIME
_ATTR_END = pm.PROV_ATTR_ENDTIME

#: PROV-N keyword of every element kind and relation → prov record type.
_RECORD_TYPES: dict[str, QualifiedName] = {
    kind: PROV_RECORD_IDS_MAP[kind] for kind in (*RELATIONS, "entity", "activity", "agent")
}
#: prov's formal attribute QualifiedName for each PROV-DM argument name.
_FORMAL: dict[str, QualifiedName] = {
    name: _PROV_NS[name]
    for signature in RELATIONS.values()
    for name in (signature.subject, signature.object, *signature.extras)
}

# Characters after which an IRI may be cut into namespace + local part.
_CUT = re.compile(r"[#/:?=&]")
# A local part that is an XML NCName, so PROV-XML's xsd:QName attributes stay valid.
_NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_NCNAME_SUFFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*$")


class _Namer:
    """Turns IRIs into prov QualifiedNames against a bundle's declared namespaces.

    IRIs under no declared namespace get a generated one (``ns1``, ``ns2``, …), cut so
    that the local part is an NCName where the IRI allows it.
    """

    def __init__(
        self, target: pm.ProvBundle, namespaces: Iterable[Namespace], taken: set[str]
    ) -> None:
        self._target = target
        self._namespaces = sorted(
            {ns.uri: ns for ns in namespaces}.values(), key=lambda ns: -len(ns.uri)
        )
        self._taken = taken
        self._cache: dict[str, QualifiedName] = {}

    def qname(self, iri: str) -> QualifiedName:
        found = self._cache.get(iri)
        if found is not None:
            return found
        for ns in self._namespaces:
            if iri.startswith(ns.uri) and _NCNAME.match(iri[len(ns.uri) :]):
                found = QualifiedName(ns, iri[len(ns.uri) :])
                break
        else:
            found = self._generated(iri)
        self._cache[iri] = found
        return found

    def datatype(self, iri: str) -> QualifiedName:
        """A literal's datatype: prov declares the namespaces of names, not of these."""
        name = self.qname(iri)
        if not name.namespace.prefix:
            return name
        declared = self._target.add_namespace(name.namespace)
        if declared is name.namespace:
            return name
        return QualifiedName(declared, name.localpart)

    def _generated(self, iri: str) -> QualifiedName:
        # Cut before the longest NCName suffix, so that PROV-XML's xsd:QName values
        # stay valid; an IRI without one is cut after its last delimiter.
        suffix = _NCNAME_SUFFIX.search(iri)
        if suffix is not None and suffix.start() > 0:
            end = suffix.start()
        else:
            cuts = [m.end() for m in _CUT.finditer(iri) if m.end() < len(iri)]
            if not cuts:
                raise InvalidRecord(f"{iri!r} cannot be written as a PROV qualified name")
            end = cuts[-1]
        uri = iri[:end]
        for ns in self._namespaces:
            if ns.uri == uri:
                return QualifiedName(ns, iri[end:])
        n = len(self._taken) + 1
        while f"ns{n}" in self._taken:
            n += 1
        prefix = f"ns{n}"
        self._taken.add(prefix)
        ns = Namespace(prefix, uri)
        self._namespaces.append(ns)
        self._namespaces.sort(key=lambda item: -len(item.uri))
        return QualifiedName(ns, iri[end:])


def _declare(target: pm.ProvBundle, namespaces: Iterable[tuple[str, str]]) -> list[Namespace]:
    declared = []
    for prefix, uri in namespaces:
        if prefix in ("", "default"):
            target.set_default_namespace(uri)
            declared.append(Namespace("", uri))
        elif uri not in (pm.PROV.uri, pm.XSD.uri, pm.XSI.uri):
            declared.append(target.add_namespace(prefix, uri))
    return declared


def _standard_namespaces() -> list[Namespace]:
    return [pm.PROV, pm.XSD, *(Namespace(p, u) for p, u in STANDARD_PREFIXES.items())]


def _value_to_prov(value: AttrValue, namer: _Namer) -> Any:
    if isinstance(value, Ref):
        return namer.qname(value.iri)
    if isinstance(value, Literal):
        if value.datatype == XSD_ANYURI and value.lang is None:
            return Identifier(value.lexical)
        return pm.Literal(value.lexical, namer.datatype(value.datatype), value.lang)
    return value


def _value_from_prov(value: Any) -> AttrValue:
    if isinstance(value, QualifiedName):
        return Ref(value.uri)
    if isinstance(value, Identifier):
        return Literal(value.uri, XSD_ANYURI)
    if isinstance(value, pm.Literal):
        datatype = value.datatype.uri if value.datatype is not None else XSD_STRING
        return Literal(value.value, datatype, value.langtag)
    if isinstance(value, str | bool | int | float | datetime):
        return value
    raise InvalidRecord(f"unsupported attribute value {value!r:.80}", field="attributes")


def _record_to_prov(record: Record, target: pm.ProvBundle, namer: _Namer) -> None:
    q = namer.qname
    extra = [(q(name), _value_to_prov(value, namer)) for name, value in record.attributes]
    if isinstance(record, Element):
        formal = []
        if record.start_time is not None:
            formal.append((_ATTR_START, record.start_time))
        if record.end_time is not None:
            formal.append((_ATTR_END, record.end_time))
        target.new_record(_RECORD_TYPES[record.kind], q(record.id), formal, extra)
        return
    signature = RELATIONS[record.kind]
    formal = []
    if record.subject is not None:
        formal.append((_FORMAL[signature.subject], q(record.subject)))
    if record.object is not None:
        formal.append((_FORMAL[signature.object], q(record.object)))
    formal.extend((_FORMAL[name], q(iri)) for name, iri in record.extras)
    if record.time is not None:
        formal.append((_ATTR_TIME, record.time))
    identifier = q(record.id) if record.id is not None else None
    target.new_record(_RECORD_TYPES[record.kind], identifier, formal, extra)


def _records_to_prov(bundle: Bundle, target: pm.ProvBundle, namer: _Namer) -> None:
    try:
        for record in bundle.records:
            _record_to_prov(record, target, namer)
    except pm.ProvException as exc:
        raise InvalidRecord(f"{bundle.id}: {exc}", record=bundle.id) from None


def to_prov_document(bundles: Sequence[Bundle]) -> pm.ProvDocument:
    """Build the ``prov`` document of provml bundles.

    ``bundles[0]``'s records become the document's top-level records; every further
    bundle becomes a nested PROV bundle named by its id.
    """
    doc = pm.ProvDocument()
    taken = {prefix for bundle in bundles for prefix, _ in bundle.namespaces}
    top, *nested = bundles
    top_declared = _declare(doc, top.namespaces)
    top_namer = _Namer(doc, [*_standard_namespaces(), *top_declared], taken)
    _records_to_prov(top, doc, top_namer)
    for bundle in nested:
        target = doc.bundle(top_namer.qname(bundle.id))
        declared = _declare(target, bundle.namespaces)
        namer = _Namer(target, [*_standard_namespaces(), *top_declared, *declared], taken)
        _records_to_prov(bundle, target, namer)
    return doc


# ------------------------------------------------------------------------- import


# Namespaces rdflib binds in every graph it parses: not the document's own.
_PARSER_NAMESPACES = frozenset(("urn:x-rdflib:", "http://www.w3.org/XML/1998/namespace"))


def _namespaces_of(container: pm.ProvBundle) -> tuple[tuple[str, str], ...]:
    pairs = [
        (ns.prefix, ns.uri)
        for ns in container.get_registered_namespaces()
        if ns.uri not in _PARSER_NAMESPACES
    ]
    default = container.get_default_namespace()
    if default is not None:
        pairs.append(("", default.uri))
    return tuple(pairs)


def _element_from_prov(record: pm.ProvRecord, kind: str, rid: str) -> Element:
    start = end = None
    attributes = []
    for name, value in record.attributes:
        if name == _ATTR_START:
            start = value
        elif name == _ATTR_END:
            end = value
        else:
            attributes.append((name.uri, _value_from_prov(value)))
    return Element(kind, rid, tuple(attributes), start, end)


def _relation_from_prov(record: pm.ProvRecord, kind: str, rid: str | None) -> Relation:
    signature = RELATIONS[kind]
    formal = {name.localpart: value for name, value in record.formal_attributes}
    subject = formal.get(signature.subject)
    if subject is None and rid is None:
        raise InvalidRecord(f"a {kind} without an id has no {signature.subject}", field=kind)
    obj = formal.get(signature.object)
    extras = tuple(
        sorted((name, formal[name].uri) for name in signature.extras if formal.get(name))
    )
    formal_names = set(record.FORMAL_ATTRIBUTES)
    attributes = tuple(
        (name.uri, _value_from_prov(value))
        for name, value in record.attributes
        if name not in formal_names
    )
    return Relation(
        kind=kind,
        subject=subject.uri if subject is not None else None,
        object=obj.uri if obj is not None else None,
        id=rid,
        time=formal.get("time"),
        extras=extras,
        attributes=attributes,
    )


def _unify_relations(first: Relation, second: Relation) -> Relation | None:
    """One relation from two statements sharing an id, or None when they conflict.

    PROV-CONSTRAINTS unifies formal arguments position by position (absent matches
    anything, two different values do not) and unions the other attributes.
    """
    if first.kind != second.kind:
        return None
    merged: dict[str, Any] = {}
    for name in ("subject", "object", "time"):
        a, b = getattr(first, name), getattr(second, name)
        if a is not None and b is not None and a != b:
            return None
        merged[name] = a if a is not None else b
    extras = dict(first.extras)
    for name, value in second.extras:
        if extras.setdefault(name, value) != value:
            return None
    attributes = list(first.attributes)
    attributes.extend(pair for pair in second.attributes if pair not in attributes)
    return Relation(
        kind=first.kind,
        id=first.id,
        extras=tuple(sorted(extras.items())),
        attributes=tuple(attributes),
        **merged,
    )


def _records_from_prov(container: pm.ProvBundle) -> tuple[Record, ...]:
    records: list[Record] = []
    elements: dict[tuple[str, str], int] = {}  # (id, kind) → position in records
    relations: dict[str, list[int]] = {}
    for record in container.get_records():
        kind = PROV_N_MAP.get(record.get_type())
        if kind is None or kind == "bundle":
            raise InvalidRecord(f"unknown PROV record type {record.get_type()}", field="kind")
        rid = record.identifier.uri if record.identifier is not None else None
        if kind in ("entity", "activity", "agent"):
            element = _element_from_prov(record, kind, rid)
            key = (rid, kind)
            # A PROV document may describe one element in several statements;
            # PROV-DM reads them as one element with the union of the attributes.
            if key in elements:
                try:
                    records[elements[key]] = merge_elements(records[elements[key]], element)
                except Conflict as exc:
                    raise InvalidRecord(
                        exc.message, record=rid, field=exc.details.get("field")
                    ) from None
                continue
            # An agent may also be an entity or an activity, but nothing is both an
            # entity and an activity (PROV-CONSTRAINTS, constraint 55).
            other = "activity" if kind == "entity" else "entity" if kind == "activity" else None
            if (rid, other) in elements:
                raise InvalidRecord(
                    f"{rid} is described as both an entity and an activity, "
                    "which PROV-CONSTRAINTS forbids (constraint 55)",
                    record=rid,
                    field="kind",
                )
            elements[key] = len(records)
            records.append(element)
            continue
        relation = _relation_from_prov(record, kind, rid)
        if rid is not None:
            # Unify with an earlier statement of the same id where PROV-CONSTRAINTS
            # can; statements that cannot be unified stay as asserted (the
            # document is PROV-DM, not PROV-CONSTRAINTS, valid).
            for position in relations.get(rid, ()):
                unified = _unify_relations(records[position], relation)  # type: ignore[arg-type]
                if unified is not None:
                    records[position] = unified
                    break
            else:
                relations.setdefault(rid, []).append(len(records))
                records.append(relation)
            continue
        records.append(relation)
    return tuple(records)


def from_prov_document(doc: pm.ProvDocument, bundle_id: str) -> list[Bundle]:
    """The provml bundles of a ``prov`` document: the top level, then nested bundles.

    Raises:
        InvalidRecord: a record breaks PROV-DM (e.g. two descriptions of one activity
            with different start times) or provml's checks.
    """
    bundles = [Bundle(bundle_id, _records_from_prov(doc), _namespaces_of(doc))]
    for nested in doc.bundles:
        if nested.identifier.uri == bundle_id:
            raise InvalidRecord(
                f"the document nests a bundle named {bundle_id}, the id given to the "
                "document itself",
                record=bundle_id,
                field="bundle",
            )
        bundles.append(
            Bundle(
                nested.identifier.uri,
                _records_from_prov(nested),
                _namespaces_of(nested),
                parent=bundle_id,
            )
        )
    for bundle in bundles:
        check_bundle(bundle)
    return bundles


__all__ = ["from_prov_document", "to_prov_document"]
