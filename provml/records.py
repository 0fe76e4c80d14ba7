"""The PROV-ML record model: plain frozen dataclasses for PROV-DM records in bundles.

Elements (entity, activity, agent) and the fifteen PROV-DM relations, with typed
attribute values, grouped in bundles. Every record that enters provml — from capture,
an HTTP batch or an imported document — passes through :func:`check_bundle`, the one
validating entry point; stores may assume what it guarantees.

The wire form (:func:`bundle_to_dict` / :func:`bundle_from_dict`) is plain JSON and is
what capture spools and sends over HTTP.

Imports: standard library and ``provml.vocab``/``provml.errors`` only (capture imports this).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeAlias

from provml.errors import InvalidRecord
from provml.vocab import (
    ELEMENT_KINDS,
    PROV_LABEL,
    PROV_TYPE,
    RELATIONS,
    XSD_STRING,
    ml_class_of,
)


@dataclass(frozen=True, slots=True)
class Ref:
    """An attribute value that names something by IRI (a PROV qualified name)."""

    iri: str


@dataclass(frozen=True, slots=True)
class Literal:
    """A typed or language-tagged literal kept in its lexical form (exact round trips)."""

    lexical: str
    datatype: str = XSD_STRING
    lang: str | None = None


AttrValue: TypeAlias = str | bool | int | float | datetime | Ref | Literal
Attributes: TypeAlias = tuple[tuple[str, AttrValue], ...]


@dataclass(frozen=True, slots=True)
class Element:
    """An entity, activity or agent. ``attributes`` keeps order and repeated names."""

    kind: str
    id: str
    attributes: Attributes = ()
    start_time: datetime | None = None
    end_time: datetime | None = None

    @property
    def types(self) -> list[AttrValue]:
        return [v for k, v in self.attributes if k == PROV_TYPE]

    @property
    def ml_class(self) -> str | None:
        """The PROV-ML class name among the prov:type values, if any."""
        return ml_class_of(self.types)

    @property
    def label(self) -> str | None:
        for k, v in self.attributes:
            if k == PROV_LABEL:
                return v.lexical if isinstance(v, Literal) else str(v)
        return None


@dataclass(frozen=True, slots=True)
class Relation:
    """A PROV-DM relation named by its PROV-N keyword (``used``, ``wasDerivedFrom``, …).

    ``subject`` depends on ``object`` (see ``provml.vocab.RELATIONS``); ``extras`` holds
    the other formal arguments by their PROV-DM names, e.g. ``(("plan", iri),)``.
    """

    kind: str
    # None only for an identified relation whose document left its first argument
    # out (PROV-JSON/PROV-XML allow it, e.g. ``used(ex:u1; -, ex:e1)``).
    subject: str | None
    object: str | None = None
    id: str | None = None
    time: datetime | None = None
    extras: tuple[tuple[str, str], ...] = ()
    attributes: Attributes = ()


Record: TypeAlias = Element | Relation


@dataclass(frozen=True, slots=True)
class Bundle:
    """A PROV bundle: one workflow run, or one imported document.

    ``parent`` is set on bundles that were nested in an imported document, so that the
    document can be exported again as it came.
    """

    id: str
    records: tuple[Record, ...] = ()
    namespaces: tuple[tuple[str, str], ...] = ()
    parent: str | None = None
    attributes: Attributes = field(default=())
    # Set by check_bundle once this (immutable) bundle passed: checking it again, as
    # the HTTP decoder and then the store both do, costs nothing. Not part of equality,
    # and dataclasses.replace() gives a new bundle unchecked.
    _checked: bool = field(default=False, init=False, repr=False, compare=False)


# --------------------------------------------------------------------------- checks

# An absolute IRI: a scheme, then no characters RFC 3987 forbids outright.
_IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`\x00-\x1f]*$")
_MAX_TEXT = 1_000_000  # characters in one attribute value
_SURROGATE = re.compile("[\ud800-\udfff]")
#: A language tag as RDF 1.1 and SPARQL have it (BCP 47's shape: LANGTAG of Turtle).
_LANGUAGE_TAG = re.compile(r"^[a-zA-Z]{1,8}(-[a-zA-Z0-9]{1,8})*$")


def _fail(message: str, record: str | None, field_name: str) -> InvalidRecord:
    return InvalidRecord(message, record=record, field=field_name)


# IRIs already found valid: attribute names, agents and prefixes come back in every record.
_VALID_IRIS: set[str] = set()
_VALID_IRIS_MAX = 4096


def check_iri(value: object, record: str | None, field_name: str) -> str:
    if type(value) is str and value in _VALID_IRIS:
        return value
    if not isinstance(value, str) or not _IRI.match(value):
        raise _fail(f"{field_name} must be an absolute IRI, got {value!r:.200}", record, field_name)
    if len(_VALID_IRIS) < _VALID_IRIS_MAX:
        _VALID_IRIS.add(value)
    return value


def _check_value(value: object, record: str | None, field_name: str) -> None:
    if isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(f"{field_name} is {value}, which PROV cannot carry", record, field_name)
        return
    if isinstance(value, str):
        text = value
    elif isinstance(value, Literal):
        check_iri(value.datatype, record, field_name + ".datatype")
        if value.lang is not None and not _LANGUAGE_TAG.match(value.lang):
            raise _fail(
                f"{field_name} has the language tag {value.lang!r}, which is not a BCP 47 tag "
                "(letters, then '-'-separated letters and digits, e.g. en-US)",
                record,
                field_name + ".lang",
            )
        text = value.lexical
    elif isinstance(value, Ref):
        check_iri(value.iri, record, field_name)
        return
    elif isinstance(value, datetime):
        _check_offset(value, record, field_name)
        return
    else:
        raise _fail(
            f"{field_name} has a value of type {type(value).__name__}, which is not a PROV value",
            record,
            field_name,
        )
    if "\x00" in text:
        raise _fail(f"{field_name} contains a NUL character", record, field_name)
    if _SURROGATE.search(text):
        # Not Unicode text: no UTF-8 serialisation or database can hold it.
        raise _fail(f"{field_name} contains a lone surrogate code point", record, field_name)
    if len(text) > _MAX_TEXT:
        raise _fail(f"{field_name} is longer than {_MAX_TEXT} characters", record, field_name)


def _check_offset(value: datetime, record: str | None, field_name: str) -> None:
    """A time's UTC offset must be whole minutes: ISO 8601 and xsd:dateTime write
    ±hh:mm, so a finer one (Python allows it) would come back changed."""
    if value.tzinfo is None or value.tzinfo is UTC:  # what capture and decoding make
        return
    offset = value.utcoffset()
    if offset is not None and (offset.microseconds or offset.seconds % 60):
        raise _fail(
            f"{field_name} has the UTC offset {offset}, which is not whole minutes "
            "(ISO 8601 writes ±hh:mm)",
            record,
            field_name,
        )


def _check_attributes(attributes: Attributes, record: str | None) -> None:
    if not isinstance(attributes, tuple):
        raise _fail("attributes must be a tuple of (name, value) pairs", record, "attributes")
    for pair in attributes:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise _fail("attributes must be (name, value) pairs", record, "attributes")
        name, value = pair
        if type(name) is not str or name not in _VALID_IRIS:
            check_iri(name, record, "attributes")
        kind = type(value)
        # Every record of every ingest passes here: the common cases first, and the
        # field name (an f-string) made only when there is something to report.
        if kind is int or kind is bool:
            continue
        if kind is str and len(value) <= _MAX_TEXT and "\x00" not in value and value.isascii():
            continue
        if kind is Ref and value.iri in _VALID_IRIS:  # prov:type of nearly every record
            continue
        _check_value(value, record, f"attributes[{name}]")


def check_record(record: object) -> Record:
    """Validate one record; raise :class:`InvalidRecord` naming the record and the field."""
    if isinstance(record, Element):
        rid = record.id
        check_iri(rid, None, "id")
        if record.kind not in ELEMENT_KINDS:
            raise _fail(f"unknown element kind {record.kind!r}", rid, "kind")
        if record.kind != "activity" and (record.start_time or record.end_time):
            raise _fail(f"a {record.kind} has no start or end time", rid, "start_time")
        for name in ("start_time", "end_time"):
            value = getattr(record, name)
            if value is not None:
                if not isinstance(value, datetime):
                    raise _fail(f"{name} must be a datetime", rid, name)
                _check_offset(value, rid, name)
        _check_attributes(record.attributes, rid)
        return record
    if isinstance(record, Relation):
        rid = record.id
        if rid is not None:
            check_iri(rid, None, "id")
        signature = RELATIONS.get(record.kind)
        if signature is None:
            raise _fail(f"unknown PROV relation {record.kind!r}", rid, "kind")
        if record.subject is not None or rid is None:
            check_iri(record.subject, rid, signature.subject)
        if record.object is not None:
            check_iri(record.object, rid, signature.object)
        for name, value in record.extras:
            if name not in signature.extras:
                raise _fail(f"{record.kind} has no argument {name!r}", rid, name)
            check_iri(value, rid, name)
        if record.time is not None:
            if not signature.has_time:
                raise _fail(f"{record.kind} carries no time", rid, "time")
            if not isinstance(record.time, datetime):
                raise _fail("time must be a datetime", rid, "time")
            _check_offset(record.time, rid, "time")
        _check_attributes(record.attributes, rid)
        return record
    raise InvalidRecord(f"not a PROV record: {type(record).__name__}", field="record")


def check_bundle(bundle: Bundle) -> Bundle:
    """The one validating entry point: check a bundle and every record in it."""
    if not isinstance(bundle, Bundle):
        raise InvalidRecord(f"not a bundle: {type(bundle).__name__}", field="bundle")
    if bundle._checked:
        return bundle
    _check_bundle_fields(bundle)
    for record in bundle.records:
        check_record(record)
    object.__setattr__(bundle, "_checked", True)
    return bundle


def _check_bundle_fields(bundle: Bundle) -> None:
    """Check a bundle's own fields (its id, parent, namespaces and attributes)."""
    check_iri(bundle.id, bundle.id, "bundle")
    if bundle.parent is not None:
        check_iri(bundle.parent, bundle.id, "parent")
    for prefix, uri in bundle.namespaces:
        if not isinstance(prefix, str) or not isinstance(uri, str):
            raise _fail("namespaces must be (prefix, IRI) pairs", bundle.id, "namespaces")
    _check_attributes(bundle.attributes, bundle.id)


# ----------------------------------------------------------------------- wire form
# Attribute values in JSON: str/bool/int/float as themselves; others tagged:
#   {"@id": iri}  {"@value": lexical, "@type": datatype, "@language": tag}  {"@dt": iso}


_PLAIN = frozenset((str, int, float, bool))  # JSON carries these as themselves


def encode_value(value: AttrValue) -> Any:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, Ref):
        return {"@id": value.iri}
    if isinstance(value, Literal):
        out: dict[str, str] = {"@value": value.lexical, "@type": value.datatype}
        if value.lang is not None:
            out["@language"] = value.lang
        return out
    if isinstance(value, datetime):
        return {"@dt": value.isoformat()}
    return value


def decode_value(data: Any, record: str | None = None, field_name: str = "value") -> AttrValue:
    if isinstance(data, dict):
        if "@id" in data:
            if not isinstance(data["@id"], str):
                raise _fail(f"{field_name}: @id must be a string", record, field_name)
            return Ref(data["@id"])
        if "@dt" in data:
            try:
                return datetime.fromisoformat(data["@dt"])
            except (TypeError, ValueError):
                raise _fail(f"{field_name} is not an ISO 8601 time", record, field_name) from None
        if "@value" in data:
            lexical, datatype = data["@value"], data.get("@type", XSD_STRING)
            language = data.get("@language")
            if not (
                isinstance(lexical, str)
                and isinstance(datatype, str)
                and (language is None or isinstance(language, str))
            ):
                raise _fail(
                    f"{field_name}: @value, @type and @language must be strings",
                    record,
                    field_name,
                )
            return Literal(lexical, datatype, language)
        raise _fail(f"{field_name} is an object of unknown form", record, field_name)
    if isinstance(data, str | bool | int | float):
        return data
    raise _fail(f"{field_name} has unsupported JSON type {type(data).__name__}", record, field_name)


def encode_attributes(attributes: Attributes) -> list[list[Any]]:
    return [[name, encode_value(value)] for name, value in attributes]


def decode_attributes(data: Any, record: str | None = None) -> Attributes:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise _fail("attributes must be a list of [name, value] pairs", record, "attributes")
    out = []
    for pair in data:
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and isinstance(pair[0], str)):
            raise _fail("attributes must be [name, value] pairs", record, "attributes")
        name, value = pair
        if type(value) in _PLAIN:  # the common cases, without building a field name
            out.append((name, value))
        elif type(value) is dict and len(value) == 1 and type(value.get("@id")) is str:
            out.append((name, Ref(value["@id"])))  # prov:type of nearly every record
        else:
            out.append((name, decode_value(value, record, f"attributes[{name}]")))
    return tuple(out)


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(data: Any, record: str | None, field_name: str) -> datetime | None:
    if data is None:
        return None
    try:
        return datetime.fromisoformat(data)
    except (TypeError, ValueError):
        raise _fail(
            f"{field_name} is not an ISO 8601 time: {data!r:.80}", record, field_name
        ) from None


def record_to_dict(record: Record) -> dict[str, Any]:
    if isinstance(record, Element):
        out: dict[str, Any] = {"kind": record.kind, "id": record.id}
        if record.start_time is not None:
            out["startTime"] = _time(record.start_time)
        if record.end_time is not None:
            out["endTime"] = _time(record.end_time)
    else:
        out = {"kind": record.kind}
        if record.subject is not None:
            out["subject"] = record.subject
        if record.object is not None:
            out["object"] = record.object
        if record.id is not None:
            out["id"] = record.id
        if record.time is not None:
            out["time"] = _time(record.time)
        if record.extras:
            out["extras"] = dict(record.extras)
    if record.attributes:
        out["attributes"] = encode_attributes(record.attributes)
    return out


def record_from_dict(data: Mapping[str, Any]) -> Record:
    """Build a record from its wire form; raise :class:`InvalidRecord` on any bad field."""
    if not isinstance(data, Mapping):
        raise InvalidRecord("a record must be a JSON object", field="record")
    kind = data.get("kind")
    rid = data.get("id") if isinstance(data.get("id"), str) else None
    if not isinstance(kind, str):  # a list or object would not even hash
        raise _fail(f"kind must be a string naming a PROV record, got {kind!r:.80}", rid, "kind")
    if kind in ELEMENT_KINDS:
        record: Record = Element(
            kind=kind,
            id=data.get("id"),  # type: ignore[arg-type]  # checked below
            attributes=decode_attributes(data.get("attributes"), rid),
            start_time=_parse_time(data.get("startTime"), rid, "startTime"),
            end_time=_parse_time(data.get("endTime"), rid, "endTime"),
        )
    elif kind in RELATIONS:
        extras = data.get("extras") or {}
        if not isinstance(extras, Mapping):
            raise _fail("extras must be an object", rid, "extras")
        record = Relation(
            kind=kind,
            subject=data.get("subject"),  # type: ignore[arg-type]
            object=data.get("object"),
            id=data.get("id"),
            time=_parse_time(data.get("time"), rid, "time"),
            extras=tuple(sorted(extras.items())),
            attributes=decode_attributes(data.get("attributes"), rid),
        )
    else:
        raise _fail(f"unknown record kind {kind!r:.80}", rid, "kind")
    return check_record(record)


def bundle_to_dict(bundle: Bundle) -> dict[str, Any]:
    out: dict[str, Any] = {"id": bundle.id, "records": [record_to_dict(r) for r in bundle.records]}
    if bundle.namespaces:
        out["namespaces"] = dict(bundle.namespaces)
    if bundle.parent is not None:
        out["parent"] = bundle.parent
    if bundle.attributes:
        out["attributes"] = encode_attributes(bundle.attributes)
    return out


def bundle_from_dict(data: Mapping[str, Any]) -> Bundle:
    if not isinstance(data, Mapping):
        raise InvalidRecord("a bundle must be a JSON object", field="bundle")
    records = data.get("records")
    if not isinstance(records, list):
        raise InvalidRecord("records must be a list", record=data.get("id"), field="records")
    namespaces = data.get("namespaces") or {}
    if not isinstance(namespaces, Mapping):
        raise InvalidRecord(
            "namespaces must be an object", record=data.get("id"), field="namespaces"
        )
    bundle = Bundle(
        id=data.get("id"),  # type: ignore[arg-type]
        records=tuple(record_from_dict(r) for r in records),
        namespaces=tuple(namespaces.items()),
        parent=data.get("parent"),
        attributes=decode_attributes(data.get("attributes"), data.get("id")),
    )
    _check_bundle_fields(bundle)  # record_from_dict has checked every record
    object.__setattr__(bundle, "_checked", True)
    return bundle


def merge_elements(first: Element, second: Element) -> Element:
    """Merge two descriptions of one element as PROV-DM does: the union of attributes.

    Raises :class:`~provml.errors.Conflict` when both carry different times.
    """
    from provml.errors import Conflict

    if first.kind != second.kind:
        raise Conflict(
            f"{first.id} is described as both {first.kind} and {second.kind}",
            record=first.id,
            field="kind",
        )
    times = {}
    for name in ("start_time", "end_time"):
        a, b = getattr(first, name), getattr(second, name)
        if a is not None and b is not None and a != b:
            raise Conflict(f"{first.id} has two different {name}s", record=first.id, field=name)
        times[name] = a if a is not None else b
    seen = set()
    attributes = []
    for pair in (*first.attributes, *second.attributes):
        key = (pair[0], type(pair[1]).__name__, pair[1])
        if key not in seen:
            seen.add(key)
            attributes.append(pair)
    return Element(first.kind, first.id, tuple(attributes), **times)


def iter_elements(records: Iterable[Record]) -> Iterable[Element]:
    return (r for r in records if isinstance(r, Element))


def iter_relations(records: Iterable[Record]) -> Iterable[Relation]:
    return (r for r in records if isinstance(r, Relation))
