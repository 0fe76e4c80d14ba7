"""The SQL system of record: :class:`SQLStore` on SQLite or PostgreSQL (psycopg 3).

Every record that provml keeps is stored here first; the RDF side is a projection that
the projector rebuilds from these rows (it learns what changed from the ``outbox``).
This module is the boundary where SQLAlchemy, psycopg and sqlite3 errors become
:mod:`provml.errors`. The schema lives in :mod:`provml.store.models` and changes only
through the Alembic migrations shipped as ``provml.migrations``.

Ingest is one transaction per call, idempotent by record id, and bulk. A bundle the
call creates needs no lookup at all (nothing of it can be stored yet); the stored state
of the other bundles is looked up in a few statements for the whole batch (array
parameters on PostgreSQL, chunked ``IN`` lists on SQLite), digests first and full rows
only where a description must be merged; new rows are written with ``COPY`` on
PostgreSQL, ``executemany`` on SQLite, their JSON encoded once for digest and row.

Imports: sqlalchemy, alembic and ``provml`` core modules; never FastAPI or rdflib.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import operator
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from provml.errors import (
    ConfigurationError,
    Conflict,
    InvalidRecord,
    MissingExtra,
    NotFound,
    ProvmlError,
    QueryRejected,
    SchemaOutdated,
    StoreUnavailable,
)
from provml.records import (
    Attributes,
    AttrValue,
    Bundle,
    Element,
    Literal,
    Record,
    Ref,
    Relation,
    check_bundle,
    decode_value,
    encode_value,
    merge_elements,
)
from provml.store import models
from provml.store.base import BundleInfo, IngestResult, Node, OutboxEntry
from provml.vocab import RELATIONS

__all__ = [
    "DEPENDENCY_EXTRAS",
    "MAX_IRI_BYTES",
    "SQLStore",
    "alembic_config",
    "decode_stored_attributes",
    "encode_stored_attributes",
    "from_iso",
    "merge_descriptions",
]

#: The longest IRI (UTF-8 bytes) the store accepts where it is indexed. PostgreSQL's
#: B-tree entries hold at most ~2.7 kB, and (bundle, IRI) pairs are indexed together;
#: the same limit applies on SQLite so that both backends accept the same documents.
MAX_IRI_BYTES = 1000
_CHUNK = 500  # values in one IN (…) list: well below every backend's parameter limit
_READ_BUNDLES = 32  # bundles read together (see _groups)
_READ_RECORDS = 20_000  # records read together at most, unless one bundle holds more
_BUSY_TIMEOUT_MS = 30_000
_ANALYZE_AFTER = 5_000  # rows one ingest must add before PostgreSQL statistics are refreshed
#: The sample of the ANALYZEs an ingest runs: 300 x 10 = 3,000 rows (PostgreSQL's default
#: target, 100, samples 30,000). They exist so that the planner knows a bulk-loaded table
#: is large and its keys selective, which a small sample tells as well. At 1M records one
#: of these took 17-19 ms against 400-450 ms (nodes) with the default; a 1M-record HTTP
#: ingest ran 26 of them, 7 s at the default. Autovacuum's ANALYZE or an operator's
#: replaces them with full statistics; a column's own target (ALTER TABLE ... SET
#: STATISTICS) still applies. Transaction-scoped: it ends with the ingest's transaction.
_BULK_STATISTICS = "SET LOCAL default_statistics_target = 10"
_DOUBLE = "@double"  # storage tag for floats JSONB would not give back as floats
_SURROGATE = re.compile("[\ud800-\udfff]")
_TEXT_ARRAY = postgresql.ARRAY(sa.Text())  # one array parameter instead of an IN list

#: Extra relation arguments that are dependencies too: an activity depends on the plan
#: it followed, a derived entity on the deriving activity, an activity on the activity
#: whose trigger started or ended it. They become lineage edges beside subject → object.
DEPENDENCY_EXTRAS: dict[str, tuple[str, ...]] = {
    "wasAssociatedWith": ("plan",),
    "wasDerivedFrom": ("activity",),
    "wasStartedBy": ("starter",),
    "wasEndedBy": ("ender",),
}

_B, _N, _R, _E, _O = (
    models.bundles,
    models.nodes,
    models.relations,
    models.lineage_edges,
    models.outbox,
)


# ------------------------------------------------------------------- alembic helpers


def _migrations_dir() -> str:
    return str(Path(str(resources.files("provml.migrations"))))


def alembic_config(url: str | None = None, connection: Connection | None = None):
    """An Alembic ``Config`` built in code: no ``alembic.ini`` needed in the cwd.

    Args:
        url: the database (SQLAlchemy URL) for commands that open their own connection.
        connection: an open connection that ``env.py`` uses instead of ``url``.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", _migrations_dir())
    if url is not None:
        # ConfigParser interpolates "%": escape it (URL-encoded passwords contain it).
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _script_directory():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


# ---------------------------------------------------------------------- value codecs


# Our JSON is lists and encode_value's dicts, whose key order is fixed: no sorting.
_encode_json = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def _to_json(values: list[Any]) -> str:
    # Most relations have neither extras nor attributes: an encoder call costs ~2.5 µs.
    return _encode_json(values) if values else "[]"


# What _to_json writes for a string inside a list (it escapes non-ASCII), without the
# cost of an encoder call, which for None goes through the whole iterative encoder.
_quote = json.encoder.encode_basestring_ascii


def _scalar_json(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def _digest(*texts: str) -> str:
    """A short digest of texts joined by NUL, which neither IRIs nor JSON text contain."""
    data = "\x00".join(texts).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=models.DIGEST_LENGTH // 2).hexdigest()


def _check_text(value: str, record: str | None, field_name: str) -> None:
    # Neither PostgreSQL nor sqlite3 can store a lone UTF-16 surrogate.
    if not value.isascii() and _SURROGATE.search(value):
        raise InvalidRecord(
            f"{field_name} contains a lone surrogate, which is not UTF-8",
            record=record,
            field=field_name,
        )


def _check_iri(value: str, record: str | None, field_name: str) -> None:
    _check_text(value, record, field_name)
    if len(value) > MAX_IRI_BYTES // 4 and len(value.encode()) > MAX_IRI_BYTES:
        raise InvalidRecord(
            f"{field_name} is longer than {MAX_IRI_BYTES} bytes, the store's limit for IRIs",
            record=record,
            field=field_name,
        )


def _encode_value(value: AttrValue, record: str | None, field_name: str) -> Any:
    if type(value) is float:
        text = repr(value)
        # JSONB keeps numbers as decimals: 1e+16 would come back as an int and -0.0
        # as 0.0, so these floats are stored as tagged text.
        if "e" in text or (value == 0 and math.copysign(1.0, value) < 0):
            return {_DOUBLE: text}
        return value
    if isinstance(value, str):
        _check_text(value, record, field_name)
    elif isinstance(value, Literal):
        _check_text(value.lexical, record, field_name)
        _check_text(value.datatype, record, field_name)
        if value.lang is not None:
            _check_text(value.lang, record, field_name)
    elif isinstance(value, Ref):
        _check_text(value.iri, record, field_name)
    return encode_value(value)


def encode_stored_attributes(attributes: Attributes, record: str | None = None) -> list[list[Any]]:
    """The JSON stored for attributes: the wire form, with JSONB-unsafe floats tagged."""
    out = []
    for name, value in attributes:
        _check_text(name, record, "attributes")
        if type(value) is str and value.isascii():  # most values: nothing to check or tag
            out.append([name, value])
        else:
            out.append([name, _encode_value(value, record, f"attributes[{name}]")])
    return out


def decode_stored_attributes(data: list[list[Any]], record: str | None = None) -> Attributes:
    """Inverse of :func:`encode_stored_attributes`."""
    out = []
    for name, value in data:
        if isinstance(value, dict) and _DOUBLE in value:
            out.append((name, float(value[_DOUBLE])))
        else:
            out.append((name, decode_value(value, record, f"attributes[{name}]")))
    return tuple(out)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _from_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _utc(value: datetime | None) -> datetime | None:
    """Naive UTC for the sortable time columns; naive input is taken to be UTC."""
    if value is None:
        return None
    offset = value.utcoffset()
    naive = value.replace(tzinfo=None)
    if offset is None:
        return naive
    try:
        return naive - offset
    except OverflowError:  # within a day of year 1 or 9999
        return datetime.min if offset.total_seconds() > 0 else datetime.max


def _sqlite_time(value: datetime) -> str:
    """A naive datetime as SQLAlchemy's SQLite ``DateTime`` stores it (sortable text)."""
    # Not strftime: its %Y does not pad years before 1000 on every platform.
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"
    )


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _groups(sizes: Sequence[tuple[str, int]]) -> Iterator[list[str]]:
    """Bundle ids, in the order given, in groups to read together: at most
    ``_READ_BUNDLES`` bundles and ``_READ_RECORDS`` records (a bundle's
    ``next_position``) a group, or one bundle alone when it holds more."""
    group: list[str] = []
    records = 0
    for bundle_id, size in sizes:
        if group and (len(group) == _READ_BUNDLES or records + size > _READ_RECORDS):
            yield group
            group, records = [], 0
        group.append(bundle_id)
        records += size
    if group:
        yield group


def _union(first: Attributes, second: Attributes) -> Attributes:
    """The union of two attribute lists, in order, as :func:`merge_elements` does."""
    seen = set()
    out = []
    for pair in (*first, *second):
        key = (pair[0], type(pair[1]).__name__, pair[1])
        if key not in seen:
            seen.add(key)
            out.append(pair)
    return tuple(out)


# ------------------------------------------------------------------- ingest planning


@dataclass
class _BundlePlan:
    """One bundle of an ingest call, validated and encoded before the transaction."""

    id: str
    parent: str | None = None
    namespaces: list[tuple[str, str]] = field(default_factory=list)
    attributes: Attributes = ()
    elements: dict[str, Element] = field(default_factory=dict)
    relations: dict[str, dict[str, Any]] = field(default_factory=dict)  # key → row
    edges: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # key → rows


def _merge_namespaces(
    current: list[tuple[str, str]], new: Iterable[tuple[str, str]], bundle_id: str
) -> list[tuple[str, str]]:
    out = list(current)
    bound = dict(out)
    for prefix, uri in new:
        if prefix not in bound:
            out.append((prefix, uri))
            bound[prefix] = uri
        elif bound[prefix] != uri:
            raise Conflict(
                f"bundle {bundle_id} binds prefix {prefix!r} to {bound[prefix]} and to {uri}",
                record=bundle_id,
                field="namespaces",
            )
    return out


def _merge_parent(current: str | None, new: str | None, bundle_id: str) -> str | None:
    if current is not None and new is not None and current != new:
        raise Conflict(
            f"bundle {bundle_id} is nested in {current}, not in {new}",
            record=bundle_id,
            field="parent",
        )
    return current if current is not None else new


def _element_row(bundle_id: str, element: Element) -> dict[str, Any]:
    """The ``nodes`` row of a description; JSON columns hold JSON text (see _insert_rows)."""
    attributes = _to_json(encode_stored_attributes(element.attributes, element.id))
    start, end = _iso(element.start_time), _iso(element.end_time)
    # The digest covers the JSON of [kind, id, attributes, start, end]; the array is
    # assembled from the attributes' text instead of encoding them a second time.
    content = (
        f"[{_quote(element.kind)},{_quote(element.id)},{attributes},"
        f"{_scalar_json(start)},{_scalar_json(end)}]"
    )
    return {
        "bundle_id": bundle_id,
        "iri": element.id,
        "kind": element.kind,
        "ml_class": element.ml_class,
        "label": element.label,
        "attributes": attributes,
        "start_time": start,
        "start_utc": _utc(element.start_time),
        "end_time": end,
        "end_utc": _utc(element.end_time),
        "digest": _digest(content),
    }


def _relation_row(bundle_id: str, relation: Relation) -> dict[str, Any]:
    """The ``relations`` row of a relation; JSON columns hold JSON text (see _insert_rows)."""
    rid = relation.id
    for name, value in (("subject", relation.subject), ("object", relation.object)):
        if value is not None:
            _check_iri(value, rid, name)
    if rid is not None:
        _check_iri(rid, rid, "id")
    for name, value in relation.extras:
        _check_text(value, rid, name)
    extras = _to_json([[name, value] for name, value in relation.extras])
    attributes = _to_json(encode_stored_attributes(relation.attributes, rid))
    time = _iso(relation.time)
    # The JSON of [kind, subject, object, time, extras, attributes], assembled from parts.
    text = (
        f"[{_quote(relation.kind)},{_scalar_json(relation.subject)},"
        f"{_scalar_json(relation.object)},{_scalar_json(time)},{extras},{attributes}]"
    )
    # Keyed by id within the bundle, or by content for a relation without id.
    key = _digest("id", bundle_id, rid) if rid is not None else _digest("content", bundle_id, text)
    return {
        "key": key,
        "bundle_id": bundle_id,
        "kind": relation.kind,
        "rel_id": rid,
        "subject": relation.subject,
        "object": relation.object,
        "time": time,
        "time_utc": _utc(relation.time),
        "extras": extras,
        "attributes": attributes,
        "digest": _digest(text, rid or ""),
    }


def _edge_rows(key: str, relation: Relation) -> list[dict[str, str]]:
    subject = relation.subject
    if subject is None:  # an identified relation whose document left it out
        return []
    out = []
    if relation.object is not None:
        role = RELATIONS[relation.kind].object
        out.append(
            {"relation_key": key, "role": role, "subject": subject, "object": relation.object}
        )
    dependencies = DEPENDENCY_EXTRAS.get(relation.kind, ())
    for name, value in relation.extras:
        if name in dependencies:
            out.append({"relation_key": key, "role": name, "subject": subject, "object": value})
    return out


def _plan(bundles: Sequence[Bundle]) -> dict[str, _BundlePlan]:
    """Validate and encode everything before touching the database."""
    plans: dict[str, _BundlePlan] = {}
    for bundle in bundles:
        check_bundle(bundle)
        _check_iri(bundle.id, bundle.id, "bundle")
        if bundle.parent is not None:
            _check_iri(bundle.parent, bundle.id, "parent")
        for prefix, uri in bundle.namespaces:
            _check_text(prefix, bundle.id, "namespaces")
            _check_text(uri, bundle.id, "namespaces")
        encode_stored_attributes(bundle.attributes, bundle.id)
        plan = plans.setdefault(bundle.id, _BundlePlan(bundle.id))
        plan.parent = _merge_parent(plan.parent, bundle.parent, bundle.id)
        plan.namespaces = _merge_namespaces(plan.namespaces, bundle.namespaces, bundle.id)
        plan.attributes = _union(plan.attributes, bundle.attributes)
        for record in bundle.records:
            if isinstance(record, Element):
                _check_iri(record.id, record.id, "id")
                known = plan.elements.get(record.id)
                plan.elements[record.id] = merge_elements(known, record) if known else record
                continue
            row = _relation_row(bundle.id, record)
            known_row = plan.relations.get(row["key"])
            if known_row is None:
                plan.relations[row["key"]] = row
                plan.edges[row["key"]] = _edge_rows(row["key"], record)
            elif known_row["digest"] != row["digest"]:
                raise Conflict(
                    f"relation {record.id} appears twice with different content",
                    record=record.id,
                    field="id",
                )
    return plans


# --------------------------------------------------------------------- row decoding


def from_iso(value: str | None) -> datetime | None:
    """A stored exact time (ISO 8601 text) back as a datetime."""
    return _from_iso(value)


def _json(value: Any) -> Any:
    """A JSON column's value, read decoded or as text (see ``_NODE_READ``)."""
    return load_stored_json(value) if type(value) is str else value


def _element(row: Any) -> Element:
    return Element(
        kind=row.kind,
        id=row.iri,
        attributes=decode_stored_attributes(_json(row.attributes), row.iri),
        start_time=_from_iso(row.start_time),
        end_time=_from_iso(row.end_time),
    )


def _relation(row: Any) -> Relation:
    extras = _json(row.extras)
    return Relation(
        kind=row.kind,
        subject=row.subject,
        object=row.object,
        id=row.rel_id,
        time=_from_iso(row.time),
        extras=tuple((name, value) for name, value in extras) if extras else (),
        attributes=decode_stored_attributes(_json(row.attributes), row.rel_id),
    )


# The columns records are read back from (the projector reads every record once): the
# JSON ones as text, which load_stored_json decodes faster than the driver's JSON
# loader does (most relations' extras and many attributes are "[]"), and all rows at
# once. 20 -> 11 µs a record on PostgreSQL (bench/service/RESULTS.md).
_NODE_READ = (
    _N.c.bundle_id,
    _N.c.position,
    _N.c.kind,
    _N.c.iri,
    sa.cast(_N.c.attributes, sa.Text).label("attributes"),
    _N.c.start_time,
    _N.c.end_time,
)
_RELATION_READ = (
    _R.c.bundle_id,
    _R.c.position,
    _R.c.kind,
    _R.c.subject,
    _R.c.object,
    _R.c.rel_id,
    _R.c.time,
    sa.cast(_R.c.extras, sa.Text).label("extras"),
    sa.cast(_R.c.attributes, sa.Text).label("attributes"),
)


def _stored_bundle(row: Any, positioned: list[tuple[int, Record]]) -> Bundle:
    """A bundle from its ``bundles`` row and its records with their positions.

    Marked checked: every stored record passed :func:`check_bundle` on its way in, so
    the projector does not check each one again (~7 us a record).
    """
    positioned.sort(key=lambda pair: pair[0])
    bundle = Bundle(
        id=row.id,
        records=tuple(record for _, record in positioned),
        namespaces=tuple((prefix, uri) for prefix, uri in row.namespaces),
        parent=row.parent,
        attributes=decode_stored_attributes(row.attributes, row.id),
    )
    object.__setattr__(bundle, "_checked", True)
    return bundle


def merge_descriptions(elements: Iterable[Element]) -> Element | None:
    """Merge an element's descriptions from several bundles, tolerating disagreement.

    Bundles are independent accounts, so two may disagree on a time or even a kind; the
    first description (by bundle id) wins such a field and the attributes are unioned.
    """
    merged: Element | None = None
    for element in elements:
        if merged is None:
            merged = element
            continue
        try:
            merged = merge_elements(merged, element)
        except Conflict:
            merged = merge_elements(merged, Element(merged.kind, merged.id, element.attributes))
    return merged


def _node(elements: list[Element], bundle_ids: list[str], bundle_count: int | None) -> Node:
    element = elements[0] if len(elements) == 1 else merge_descriptions(elements)
    assert element is not None  # callers pass at least one description
    return Node(
        id=element.id,
        kind=element.kind,
        ml_class=element.ml_class,
        label=element.label,
        attributes=element.attributes,
        start_time=element.start_time,
        end_time=element.end_time,
        bundles=tuple(bundle_ids),
        bundle_count=bundle_count,
    )


# The descriptions of a set of elements, one row per distinct content: the full row of
# the first bundle (by code point: the key columns compare bytes on both backends)
# holding it, how many bundles hold it and the first :max_bundles of them (all if
# NULL). A raw file or a model shared by a thousand workflows is described in a thousand
# bundles, and a lineage answer lists ten: sending every id made up a sixth of a
# lineage query's time at 1M records. Attributes come as JSON text, decoded by
# load_stored_json (quicker than psycopg's JSONB loader, and most are empty). Each full
# row is read by its primary key (OFFSET 0 keeps the planner from turning the lateral
# subquery into a join): estimating the grouped rows far too low, it hashed the whole
# nodes table instead, which made an impact answer of 10,000 nodes 3x slower.
_DESCRIBE_POSTGRESQL = """
SELECT d.bundle_ids, d.bundle_count, n.bundle_id, n.iri, n.kind,
       CAST(n.attributes AS text) AS attributes, n.start_time, n.end_time
FROM (
    SELECT iri, digest, min(bundle_id) AS first, count(*) AS bundle_count,
           (array_agg(bundle_id ORDER BY bundle_id))[
               1 : COALESCE(CAST(:max_bundles AS integer), 2147483647)
           ] AS bundle_ids
    FROM nodes WHERE iri = ANY(CAST(:iris AS text[])) GROUP BY iri, digest
) AS d CROSS JOIN LATERAL (
    SELECT * FROM nodes AS n WHERE n.bundle_id = d.first AND n.iri = d.iri OFFSET 0
) AS n
"""
# JSON1 is built into SQLite; in process, every id costs little: cut in Python.
_DESCRIBE_SQLITE = """
SELECT d.bundle_ids, d.bundle_count, n.bundle_id, n.iri, n.kind, n.attributes,
       n.start_time, n.end_time
FROM (
    SELECT iri, digest, json_group_array(bundle_id) AS bundle_ids, count(*) AS bundle_count,
           min(bundle_id) AS first
    FROM nodes WHERE iri IN :iris GROUP BY iri, digest
) AS d JOIN nodes AS n ON n.bundle_id = d.first AND n.iri = d.iri
"""


def load_stored_json(text: str) -> Any:
    """A JSON column read as text (``CAST(… AS text)``): most are empty lists."""
    return [] if text == "[]" else json.loads(text)


# ----------------------------------------------------------------------- the engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling defers BEGIN until the first write, which
    # lets two writers deadlock on lock upgrade; we emit BEGIN ourselves (see below).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the one writer
    cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe with WAL
    cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    # A write transaction takes the write lock up front (waiting up to busy_timeout),
    # so that its reads and writes see one consistent state.
    write = connection.get_execution_options().get("provml_write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError as exc:
        raise ConfigurationError(f"not a database URL: {url!r}") from exc
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            options: dict[str, Any] = {}
            if parsed.database in (None, "", ":memory:"):
                # One in-memory database shared by every use of this store.
                options = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
            engine = sa.create_engine(parsed, **options)
            event.listen(engine, "connect", _sqlite_on_connect)
            event.listen(engine, "begin", _sqlite_on_begin)
            return engine
        if backend == "postgresql":
            # LIFO: the connection used last serves the next request, so under light
            # load the same few stay warm (their statements prepared, their pages and
            # catalogue cached) instead of each of the pool's taking turns.
            return sa.create_engine(parsed, pool_pre_ping=True, pool_use_lifo=True)
    except (ImportError, sa_exc.NoSuchModuleError) as exc:
        raise MissingExtra(parsed.drivername, "server") from exc
    raise ConfigurationError(
        f"unsupported SQL store {parsed.drivername!r}: use sqlite:///file or "
        "postgresql+psycopg://user@host/db"
    )


def _missing_schema(exc: sa_exc.DBAPIError) -> bool:
    if getattr(exc.orig, "sqlstate", None) in ("42P01", "42703"):  # undefined table/column
        return True
    text = str(exc.orig)
    return "no such table" in text or "no such column" in text


# A batch's bundles on PostgreSQL, one array per column (see SQLStore._lock_bundles).
_CREATE_BUNDLES_SQL = (
    "INSERT INTO bundles (id, parent, namespaces, attributes, created, next_position) "
    "SELECT * FROM unnest(CAST(:id AS text[]), CAST(:parent AS text[]), "
    "CAST(CAST(:namespaces AS text[]) AS jsonb[]), CAST(CAST(:attributes AS text[]) AS jsonb[]), "
    "CAST(:created AS timestamp[]), CAST(:next_position AS bigint[])) "
    "ON CONFLICT (id) DO NOTHING RETURNING id"
)
# The stored nodes rows of (bundle, IRI) pairs on PostgreSQL, narrow or whole: a join
# with the pairs probes the primary key once per pair.
_STORED_DIGESTS_SQL = (
    "SELECT n.bundle_id, n.iri, n.digest FROM nodes AS n JOIN unnest(CAST(:b AS text[]), "
    "CAST(:i AS text[])) AS w(b, i) ON n.bundle_id = w.b AND n.iri = w.i"
)
_STORED_ROWS_SQL = (
    "SELECT n.* FROM nodes AS n JOIN unnest(CAST(:b AS text[]), "
    "CAST(:i AS text[])) AS w(b, i) ON n.bundle_id = w.b AND n.iri = w.i"
)


def _analysed_columns(table_name: str) -> str:
    """``table (columns…)`` for ANALYZE: every column but the JSON ones.

    No query filters, joins or sorts on a JSON column, and their statistics (detoasting
    and comparing whole JSONB documents) are most of an ANALYZE's cost: leaving them
    out halves the pauses a bulk load takes for its statistics. Names come from our
    metadata, never from input.
    """
    table = models.metadata.tables[table_name]
    columns = [f'"{c.name}"' for c in table.columns if not isinstance(c.type, sa.JSON)]
    return f"{table.name} ({', '.join(columns)})"


class SQLStore:
    """The record store on SQLite (the embedded default) or PostgreSQL.

    Args:
        url: a SQLAlchemy URL, ``sqlite:///path/provml.sqlite`` or
            ``postgresql+psycopg://user@host/db``. Nothing is opened until first use.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url)
        self.dialect = self.engine.dialect.name
        self._schema_ok = False
        # Rows inserted per table since its last ANALYZE (see _refresh_statistics).
        self._unanalysed: dict[str, int] = {}
        self._statistics_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SQLStore({self._safe_url!r})"

    @property
    def _safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    # ------------------------------------------------------------ errors and schema

    def _translate(self, exc: sa_exc.SQLAlchemyError) -> ProvmlError:
        if isinstance(exc, sa_exc.DBAPIError):
            if _missing_schema(exc):
                return self._outdated("has no provml schema or an incomplete one")
            if isinstance(exc, sa_exc.IntegrityError):
                return Conflict(
                    f"a concurrent write to the SQL store changed the same records: {exc.orig}"
                )
            if isinstance(exc, sa_exc.DataError):
                return InvalidRecord(f"the SQL store refused a value: {exc.orig}")
            return StoreUnavailable(f"the SQL store at {self._safe_url} is unavailable: {exc.orig}")
        return StoreUnavailable(f"the SQL store at {self._safe_url} failed: {exc}")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sa_exc.SQLAlchemyError as exc:
            raise self._translate(exc) from exc

    @contextmanager
    def _transaction(self, *, write: bool = False) -> Iterator[Connection]:
        """One transaction, after checking once per store that the schema is current."""
        with self._errors():
            if not self._schema_ok:
                self.check_schema()
            with self.engine.connect() as conn:
                if write:
                    # READ COMMITTED on PostgreSQL: after waiting for a bundle's row lock,
                    # the next statements see what the other writer committed.
                    conn.execution_options(provml_write=True)
                elif self.dialect == "postgresql":
                    # A read of several statements sees one snapshot, as SQLite's does.
                    conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction for queries that live outside this module (lineage).

        The schema is checked and SQLAlchemy errors become :mod:`provml.errors`, as for
        the store's own methods.
        """
        with self._transaction() as conn:
            yield conn

    def _outdated(self, state: str) -> SchemaOutdated:
        return SchemaOutdated(
            f"the SQL store at {self._safe_url} {state}: "
            f"run `provml db upgrade --store {self._safe_url}`",
            store=self._safe_url,
        )

    def upgrade(self, revision: str = "head") -> None:
        """Run the Alembic migrations up to ``revision`` (creating the schema if needed)."""
        from alembic import command

        database = self.engine.url.database
        if self.dialect == "sqlite" and database not in (None, "", ":memory:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        if revision == "head" and self.current_revision() == self.head_revision():
            # Nothing to run: skipping Alembic's environment here keeps opening a current
            # store cheap, and keeps clear of Alembic's process-wide context, which
            # another library's migrations in the same process (MLflow's) also use.
            self._schema_ok = True
            return
        with self._errors(), self.engine.connect() as conn:
            conn.execution_options(provml_write=True)
            with conn.begin():
                command.upgrade(alembic_config(connection=conn), revision)
        self._schema_ok = False

    def downgrade(self, revision: str) -> None:
        """Run the migrations down to ``revision`` (``"base"`` drops every table)."""
        from alembic import command

        with self._errors(), self.engine.connect() as conn:
            conn.execution_options(provml_write=True)
            with conn.begin():
                command.downgrade(alembic_config(connection=conn), revision)
        self._schema_ok = False

    def current_revision(self) -> str | None:
        """The schema revision the database is at; ``None`` for an empty database."""
        from alembic.runtime.migration import MigrationContext

        with self._errors(), self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str:
        """The newest schema revision this version of provml knows."""
        head = _script_directory().get_current_head()
        assert head is not None  # the package ships revision 0001 at least
        return head

    def check_schema(self) -> None:
        """Raise :class:`SchemaOutdated`, naming the command to run, unless at head."""
        current, head = self.current_revision(), self.head_revision()
        if current == head:
            self._schema_ok = True
            return
        if current is None:
            raise self._outdated("has no provml schema")
        known = {script.revision for script in _script_directory().walk_revisions()}
        if current not in known:
            raise StoreUnavailable(
                f"the SQL store at {self._safe_url} is at schema revision {current}, "
                f"newer than this provml knows (head {head}): upgrade provml",
                store=self._safe_url,
            )
        raise self._outdated(f"is at schema revision {current}, provml needs {head}")

    # --------------------------------------------------------------------- ingest

    def ingest(self, bundles: Sequence[Bundle]) -> IngestResult:
        """Store the bundles in one transaction: all of them, or nothing.

        Idempotent by record id: records already stored unchanged count as
        ``unchanged``; an element description already in the bundle is merged with
        the new one (the PROV-DM union); a relation whose id is stored with other
        content raises :class:`Conflict`. One outbox row is appended per bundle
        of the batch.

        Raises:
            InvalidRecord: a record breaks the rules (names the record and field).
            Conflict: a record contradicts what is stored; nothing was stored.
            SchemaOutdated, StoreUnavailable: the database cannot take the batch.
        """
        plans = _plan(bundles)
        if not plans:
            return IngestResult()
        with self._transaction(write=True) as conn:
            return self._apply(conn, plans)

    def _lock_bundles(self, conn: Connection, plans: dict[str, _BundlePlan]) -> dict[str, Any]:
        """Create the batch's new bundles and lock the stored ones, in a fixed order.

        Returns the stored rows of the bundles that existed before this transaction; a
        bundle this transaction created is left out, since nothing of it can be stored
        yet (every key of ``nodes`` and ``relations`` contains the bundle id): its
        records are all new and need no lookup. A new bundle's row is written with the
        position its records end at, so it needs no update either.
        """
        now = _now()
        rows = [
            {
                "id": i,
                "parent": plans[i].parent,
                "namespaces": [list(p) for p in plans[i].namespaces],
                "attributes": encode_stored_attributes(plans[i].attributes, i),
                "created": now,
                "next_position": len(plans[i].elements) + len(plans[i].relations),
            }
            for i in sorted(plans)
        ]
        if self.dialect == "postgresql":
            # The conflict clause skips the bundles already stored, or being created by
            # a concurrent ingest (which it waits for): whoever comes second merges,
            # under the row lock taken below. RETURNING names the rows written here.
            # One array per column keeps the statement's text fixed, so psycopg
            # prepares it once: as a multi-row VALUES list, rendered and split anew
            # for every batch, it cost ~6 ms a batch of 1,000 records in the client.
            columns = {
                name: [row[name] for row in rows]
                for name in ("id", "parent", "created", "next_position")
            }
            for name in ("namespaces", "attributes"):
                columns[name] = [json.dumps(row[name], ensure_ascii=False) for row in rows]
            created = set(conn.execute(sa.text(_CREATE_BUNDLES_SQL), columns).scalars())
            stored = sorted(set(plans) - created)
            if not stored:
                return {}
            # Lock in a fixed order: concurrent ingests into one bundle then serialise,
            # so positions and merges never interleave. The lookups that follow run
            # after the locks, so they see what a writer before us committed.
            ids = sa.bindparam("ids", stored, type_=_TEXT_ARRAY)
            query = sa.select(_B).where(_B.c.id == sa.any_(ids)).order_by(_B.c.id)
            return {row.id: row for row in conn.execute(query.with_for_update())}
        # SQLite: the transaction holds the database's write lock (BEGIN IMMEDIATE).
        found = {}
        for chunk in _chunks(sorted(plans)):
            found.update(
                {row.id: row for row in conn.execute(sa.select(_B).where(_B.c.id.in_(chunk)))}
            )
        missing = [row for row in rows if row["id"] not in found]
        if missing:
            conn.execute(sa.insert(_B), missing)
        return found

    def _stored_node_rows(
        self, conn: Connection, pairs: list[tuple[str, str]], *, narrow: bool
    ) -> dict[tuple[str, str], Any]:
        """Stored ``nodes`` rows of (bundle, IRI) pairs: only their digests if ``narrow``."""
        if not pairs:
            return {}
        found: dict[tuple[str, str], Any] = {}
        if self.dialect == "postgresql":
            # A join with the pairs probes the primary key once per pair, in one statement
            # whose text does not change with the batch (psycopg prepares it).
            query = sa.text(_STORED_DIGESTS_SQL if narrow else _STORED_ROWS_SQL)
            bundle_ids, iris = zip(*pairs, strict=True)
            for row in conn.execute(query, {"b": list(bundle_ids), "i": list(iris)}).all():
                found[row.bundle_id, row.iri] = row
            return found
        # Two IN lists, not a row-value IN (which SQLite answers with a table scan);
        # the few extra rows the two lists admit are dropped here.
        wanted = set(pairs)
        columns = (_N.c.bundle_id, _N.c.iri, _N.c.digest) if narrow else (_N,)
        bundle_ids = sorted({b for b, _ in pairs})
        iris = sorted({i for _, i in pairs})
        for bundle_chunk in _chunks(bundle_ids, _CHUNK // 2):
            for iri_chunk in _chunks(iris, _CHUNK // 2):
                query = sa.select(*columns).where(
                    _N.c.bundle_id.in_(bundle_chunk), _N.c.iri.in_(iri_chunk)
                )
                for row in conn.execute(query):
                    if (row.bundle_id, row.iri) in wanted:
                        found[row.bundle_id, row.iri] = row
        return found

    def _stored_digests(self, conn: Connection, keys: list[str]) -> dict[str, str]:
        """Content digests of the relation keys already stored, in bulk."""
        if not keys:
            return {}
        if self.dialect == "postgresql":
            param = sa.bindparam("keys", keys, type_=_TEXT_ARRAY)
            query = sa.select(_R.c.key, _R.c.digest).where(_R.c.key == sa.any_(param))
            return dict(conn.execute(query).all())
        stored: dict[str, str] = {}
        for chunk in _chunks(keys):
            query = sa.select(_R.c.key, _R.c.digest).where(_R.c.key.in_(chunk))
            stored.update(conn.execute(query).all())
        return stored

    def _insert_rows(self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """Insert rows known to be new (checked under the bundles' row locks).

        JSON columns hold JSON text already (the row builders encode it once, for the
        digest and the row alike). PostgreSQL gets the rows through ``COPY … FROM
        STDIN``: an ``executemany`` of INSERTs costs a statement per row on the server
        and is several times slower. The rows' keys all contain a bundle id whose row
        this transaction has locked or created, so no concurrent ingest can write the
        same keys (a duplicate would still fail on the primary key and roll the batch
        back). SQLite's ``executemany`` is already one prepared statement run in process.
        """
        if not rows:
            return
        columns = list(rows[0])
        pick = operator.itemgetter(*columns)
        values = pick if len(columns) > 1 else lambda row: (pick(row),)
        quoted = ", ".join(f'"{name}"' for name in columns)
        if self.dialect != "postgresql":
            # The driver's executemany without SQLAlchemy's per-value bind processing,
            # which costs as much as SQLite's own work. Times are written in the text
            # form SQLAlchemy's SQLite DateTime stores and parses.
            times = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, sa.DateTime)]
            marks = ", ".join("?" for _ in columns)
            data = [values(row) for row in rows]
            if times:
                data = [
                    tuple(
                        _sqlite_time(v) if i in times and v is not None else v
                        for i, v in enumerate(item)
                    )
                    for item in data
                ]
            conn.exec_driver_sql(f'INSERT INTO "{table.name}" ({quoted}) VALUES ({marks})', data)
            return
        import psycopg

        statement = f"COPY {table.name} ({quoted}) FROM STDIN"
        cursor = conn.connection.driver_connection.cursor()
        try:
            with cursor.copy(statement) as copy:
                write = copy.write_row
                for row in rows:
                    write(values(row))
        except psycopg.Error as exc:
            # Through SQLAlchemy's own wrapper, so _errors translates it as any other.
            raise sa_exc.DBAPIError.instance(statement, None, exc, psycopg.Error) from exc
        finally:
            cursor.close()

    def _apply(self, conn: Connection, plans: dict[str, _BundlePlan]) -> IngestResult:
        stored_bundles = self._lock_bundles(conn, plans)
        # Only the bundles stored before can hold any of the batch's records.
        pairs, keys, new_rows_of = [], [], {}
        for bundle_id in stored_bundles:
            plan = plans[bundle_id]
            for iri, element in plan.elements.items():
                row = _element_row(bundle_id, element)
                new_rows_of[bundle_id, iri] = row
                pairs.append((bundle_id, iri))
            keys.extend(plan.relations)
        stored_nodes = self._stored_node_rows(conn, pairs, narrow=True)
        stored_digests = self._stored_digests(conn, keys)
        # Full rows only where a description differs from the stored one (a merge).
        differing = [
            pair for pair, row in stored_nodes.items() if row.digest != new_rows_of[pair]["digest"]
        ]
        full_rows = self._stored_node_rows(conn, differing, narrow=False)

        inserted = unchanged = merged = 0
        new_nodes: list[dict[str, Any]] = []
        node_updates: list[dict[str, Any]] = []
        new_relations: list[dict[str, Any]] = []
        new_edges: list[dict[str, str]] = []
        bundle_updates: list[dict[str, Any]] = []
        outbox_rows: list[dict[str, Any]] = []
        now = _now()

        for bundle_id in sorted(plans):
            plan, row = plans[bundle_id], stored_bundles.get(bundle_id)
            if row is None:  # created by this transaction: every record is new
                outbox_rows.append(
                    {"bundle_id": bundle_id, "created": now, "from_position": 0, "merged": "[]"}
                )
                position = 0
                for element in plan.elements.values():
                    node_row = _element_row(bundle_id, element)
                    node_row["position"] = position
                    new_nodes.append(node_row)
                    position += 1
                for key, relation_row in plan.relations.items():
                    relation_row["position"] = position
                    new_relations.append(relation_row)
                    new_edges.extend(plan.edges[key])
                    position += 1
                inserted += position
                continue

            position = row.next_position
            parent = _merge_parent(row.parent, plan.parent, bundle_id)
            namespaces = _merge_namespaces(
                [tuple(p) for p in row.namespaces], plan.namespaces, bundle_id
            )
            stored_attributes = decode_stored_attributes(row.attributes, bundle_id)
            attributes = _union(stored_attributes, plan.attributes)
            meta_changed = (
                parent != row.parent
                or namespaces != [tuple(p) for p in row.namespaces]
                or attributes != stored_attributes
            )

            # Element descriptions: new, identical, or merged with the stored one.
            merged_iris: list[str] = []
            for iri, element in plan.elements.items():
                new_row = new_rows_of[bundle_id, iri]
                stored = stored_nodes.get((bundle_id, iri))
                if stored is None:
                    new_row["position"] = position
                    new_nodes.append(new_row)
                    position += 1
                    inserted += 1
                    continue
                if new_row["digest"] == stored.digest:
                    unchanged += 1
                    continue
                full = full_rows[bundle_id, iri]
                merged_row = _element_row(bundle_id, merge_elements(_element(full), element))
                if merged_row["digest"] == stored.digest:
                    unchanged += 1
                    continue
                merged_row["b_bundle_id"] = merged_row.pop("bundle_id")
                merged_row["b_iri"] = merged_row.pop("iri")
                merged_row["attributes"] = json.loads(merged_row["attributes"])
                node_updates.append(merged_row)
                merged_iris.append(iri)
                merged += 1

            # Relations: keyed by id (or content), so a stored key means a replay.
            for key, relation_row in plan.relations.items():
                digest = stored_digests.get(key)
                if digest is None:
                    relation_row["position"] = position
                    new_relations.append(relation_row)
                    new_edges.extend(plan.edges[key])
                    position += 1
                    inserted += 1
                elif digest == relation_row["digest"]:
                    unchanged += 1
                else:
                    rid = relation_row["rel_id"]
                    raise Conflict(
                        f"relation {rid} is already stored in bundle {bundle_id} "
                        "with different content; nothing was stored",
                        record=rid,
                        field="id",
                    )

            # The projector adds the quads of what changed. It re-projects the whole
            # bundle where the metadata changed, and on a pure replay: that may be
            # the very repair of a lost projection.
            changed = position != row.next_position or merged_iris
            whole = meta_changed or not changed
            outbox_rows.append(
                {
                    "bundle_id": bundle_id,
                    "created": now,
                    "from_position": None if whole else row.next_position,
                    "merged": None if whole else json.dumps(merged_iris),  # JSON text
                }
            )
            if position != row.next_position or meta_changed:
                bundle_updates.append(
                    {
                        "b_id": bundle_id,
                        "parent": parent,
                        "namespaces": [list(p) for p in namespaces],
                        "attributes": encode_stored_attributes(attributes, bundle_id),
                        "next_position": position,
                    }
                )

        self._insert_rows(conn, _N, new_nodes)
        if node_updates:
            where = (_N.c.bundle_id == sa.bindparam("b_bundle_id")) & (
                _N.c.iri == sa.bindparam("b_iri")
            )
            conn.execute(sa.update(_N).where(where), node_updates)
        # Relations before their edges: lineage_edges.relation_key references them.
        self._insert_rows(conn, _R, new_relations)
        self._insert_rows(conn, _E, new_edges)
        if bundle_updates:
            conn.execute(sa.update(_B).where(_B.c.id == sa.bindparam("b_id")), bundle_updates)
        self._refresh_statistics(
            conn, {_N: len(new_nodes), _R: len(new_relations), _E: len(new_edges)}
        )
        # Every bundle of the batch is queued, even a replayed one (see above).
        self._insert_rows(conn, _O, outbox_rows)
        return IngestResult(
            bundles=len(plans), inserted=inserted, unchanged=unchanged, merged=merged
        )

    def _refresh_statistics(self, conn: Connection, inserted: dict[sa.Table, int]) -> None:
        """Analyse PostgreSQL tables that have at least doubled since their last ANALYZE.

        A freshly bulk-loaded table has no statistics until autovacuum gets round to it
        (a minute or more, or never where autovacuum is off), and the planner then
        answers IN lookups with sequential scans a hundred times slower than the index.
        Rows are counted across ingests, since batches of 1,000 records never reach the
        threshold one by one: a bulk load pays for O(log n) ANALYZEs, each of a small
        sample (see ``_BULK_STATISTICS``).
        """
        if self.dialect != "postgresql":
            return
        with self._statistics_lock:
            for table, count in inserted.items():
                self._unanalysed[table.name] = self._unanalysed.get(table.name, 0) + count
            if sum(self._unanalysed.values()) < _ANALYZE_AFTER:
                return
            pending = dict(self._unanalysed)
        query = (
            sa.select(sa.column("relname"), sa.column("reltuples"))
            .select_from(sa.table("pg_class"))
            .where(
                sa.column("relname").in_(sorted(pending)),
                sa.column("relnamespace") == sa.func.to_regnamespace(sa.func.current_schema()),
            )
        )
        estimates = {name: count for name, count in conn.execute(query)}
        sampled = False
        for name, count in sorted(pending.items()):
            # Never analysed (-1), or at least doubled since the last ANALYZE.
            if count and count > estimates.get(name, -1):
                if not sampled:
                    conn.exec_driver_sql(_BULK_STATISTICS)
                    sampled = True
                # ANALYZE sees this transaction's own rows, so the new batch counts.
                conn.exec_driver_sql(f"ANALYZE {_analysed_columns(name)}")
                with self._statistics_lock:
                    self._unanalysed[name] = max(0, self._unanalysed[name] - count)

    # ---------------------------------------------------------------------- reads

    def _read_bundle(
        self,
        conn: Connection,
        bundle_id: str,
        from_position: int = 0,
        merged: Sequence[str] = (),
    ) -> Bundle:
        row = conn.execute(sa.select(_B).where(_B.c.id == bundle_id)).first()
        if row is None:
            raise NotFound(f"no bundle {bundle_id} in the store", bundle=bundle_id)
        wanted_nodes = _N.c.bundle_id == bundle_id
        if from_position:
            changed = _N.c.position >= from_position
            if merged:
                changed = changed | _N.c.iri.in_(sorted(set(merged)))
            wanted_nodes = wanted_nodes & changed
        nodes = conn.execute(sa.select(*_NODE_READ).where(wanted_nodes)).all()
        positioned: list[tuple[int, Record]] = [(r.position, _element(r)) for r in nodes]
        wanted_relations = (_R.c.bundle_id == bundle_id) & (_R.c.position >= from_position)
        relations = conn.execute(sa.select(*_RELATION_READ).where(wanted_relations)).all()
        positioned.extend((r.position, _relation(r)) for r in relations)
        return _stored_bundle(row, positioned)

    def _read_whole_bundles(self, conn: Connection, group: Sequence[str]) -> dict[str, Bundle]:
        """A group of whole bundles (:func:`_groups`) in three statements, not three a
        bundle; the ids not stored are left out. Each as :meth:`_read_bundle` reads it."""
        query = sa.select(_B).where(self._among(_B.c.id, group))
        metadata = {row.id: row for row in conn.execute(query)}
        positioned: dict[str, list[tuple[int, Record]]] = {b: [] for b in metadata}
        nodes = sa.select(*_NODE_READ).where(self._among(_N.c.bundle_id, group))
        for r in conn.execute(nodes).all():
            positioned[r.bundle_id].append((r.position, _element(r)))
        relations = sa.select(*_RELATION_READ).where(self._among(_R.c.bundle_id, group))
        for r in conn.execute(relations).all():
            positioned[r.bundle_id].append((r.position, _relation(r)))
        return {b: _stored_bundle(metadata[b], records) for b, records in positioned.items()}

    def _among(self, column: Any, values: Sequence[str]) -> Any:
        """``column IN values``; on PostgreSQL one array parameter, so the statement's
        text stays the same whatever the number of values (psycopg prepares it)."""
        if self.dialect == "postgresql":
            return column == sa.any_(sa.bindparam("among", list(values), type_=_TEXT_ARRAY))
        return column.in_(values)

    def bundle_changes(
        self, bundle_id: str, from_position: int, merged: Sequence[str] = ()
    ) -> Bundle:
        """The bundle with only the records an outbox row names (see ``OutboxEntry``)."""
        with self._transaction() as conn:
            return self._read_bundle(conn, bundle_id, from_position, merged)

    def changed_bundles(
        self, changes: Mapping[str, tuple[int, Sequence[str]]]
    ) -> Iterator[tuple[str, Bundle | None]]:
        """What :meth:`bundle_changes` gives, for several bundles: each id of ``changes``
        once, with its bundle, or None when it is no longer stored.

        ``changes`` maps a bundle id to its ``(from_position, merged)``. The bundles
        read from their first record on (new bundles, the common case) are read in
        groups (:func:`_groups`), a few statements a group: read one by one, the
        statements and transactions cost the projector more than decoding the rows.
        A bundle read from a later position is read alone, so that a long-running
        bundle's earlier records are not read again. At most one group is held at a
        time: a caller that projects each bundle before taking the next holds no more.
        """
        whole = [bundle_id for bundle_id, (first, _) in changes.items() if first == 0]
        sizes: dict[str, int] = {}
        with self._transaction() as conn:
            for chunk in _chunks(whole):
                query = sa.select(_B.c.id, _B.c.next_position).where(self._among(_B.c.id, chunk))
                sizes.update((row.id, row.next_position) for row in conn.execute(query))
        for group in _groups([(b, sizes[b]) for b in whole if b in sizes]):
            with self._transaction() as conn:
                found = self._read_whole_bundles(conn, group)
            yield from ((bundle_id, found.get(bundle_id)) for bundle_id in group)
        yield from ((bundle_id, None) for bundle_id in whole if bundle_id not in sizes)
        for bundle_id, (first, merged) in changes.items():
            if first == 0:
                continue
            try:
                yield bundle_id, self.bundle_changes(bundle_id, first, merged)
            except NotFound:
                yield bundle_id, None

    def get_bundle(self, bundle_id: str) -> Bundle:
        """The bundle with every record stored in it, in arrival order.

        Raises:
            NotFound: no such bundle.
        """
        with self._transaction() as conn:
            return self._read_bundle(conn, bundle_id)

    def document(self, bundle_id: str) -> list[Bundle]:
        """The bundle first, then the bundles nested in it (an imported document)."""
        with self._transaction() as conn:
            first = self._read_bundle(conn, bundle_id)
            query = sa.select(_B.c.id).where(_B.c.parent == bundle_id).order_by(_B.c.id)
            children = list(conn.scalars(query))
            return [first, *(self._read_bundle(conn, child) for child in children)]

    def list_bundles(self) -> list[BundleInfo]:
        """Every bundle with its record count, oldest first."""
        counts = {}
        with self._transaction() as conn:
            for table in (_N, _R):
                query = sa.select(table.c.bundle_id, sa.func.count()).group_by(table.c.bundle_id)
                for bundle_id, count in conn.execute(query):
                    counts[bundle_id] = counts.get(bundle_id, 0) + count
            rows = conn.execute(
                sa.select(_B.c.id, _B.c.parent, _B.c.created).order_by(_B.c.created, _B.c.id)
            ).all()
        return [
            BundleInfo(r.id, r.parent, counts.get(r.id, 0), r.created.replace(tzinfo=UTC))
            for r in rows
        ]

    def iter_bundles(self) -> Iterator[Bundle]:
        """Every bundle in id order, a group at a time (:func:`_groups`: memory stays
        bounded on big stores), each group read in a transaction of its own."""
        with self._transaction() as conn:
            sizes = conn.execute(sa.select(_B.c.id, _B.c.next_position).order_by(_B.c.id)).all()
        for group in _groups([(bundle_id, size) for bundle_id, size in sizes]):
            with self._transaction() as conn:
                found = self._read_whole_bundles(conn, group)
            yield from (found[bundle_id] for bundle_id in group if bundle_id in found)

    def nodes(
        self,
        iris: Iterable[str],
        *,
        connection: Connection | None = None,
        max_bundles: int | None = None,
    ) -> dict[str, Node]:
        """The described elements among ``iris``, descriptions merged, in bundle-id order.

        Args:
            iris: the elements wanted; those no bundle describes are left out.
            connection: an open :meth:`read` transaction to read in (the same snapshot
                as the caller's other reads, and no second transaction); else one of
                its own.
            max_bundles: list only the first this many bundles of each node (with
                ``Node.bundle_count`` saying how many describe it); None lists all.
        """
        if connection is None:
            with self._transaction() as conn:
                return self.nodes(iris, connection=conn, max_bundles=max_bundles)
        conn = connection
        wanted = sorted(set(iris))
        # Per IRI: (first bundle, description) for each distinct content, every bundle
        # (or the first max_bundles) that describes it, and how many do.
        descriptions: dict[str, list[tuple[str, Element]]] = {}
        bundles_of: dict[str, list[str]] = {}
        counts: dict[str, int] = {}
        postgres = self.dialect == "postgresql"
        # A shared element (a model, a raw file) can be described identically in
        # thousands of bundles. The database groups the narrow (iri, bundle, digest)
        # index entries by content and hands back one full row per distinct content
        # (that of its first bundle), with the bundle ids as one array: one round
        # trip and a row per description, not per bundle. Merging a description
        # again changes nothing, so the merge is the same as over every bundle's.
        chunks = [wanted] if postgres else list(_chunks(wanted))
        for chunk in chunks:
            if not chunk:
                continue
            if postgres:
                query = sa.text(_DESCRIBE_POSTGRESQL)
                params: dict[str, Any] = {"iris": list(chunk), "max_bundles": max_bundles}
            else:
                query = sa.text(_DESCRIBE_SQLITE).bindparams(sa.bindparam("iris", expanding=True))
                params = {"iris": list(chunk)}
            rows = conn.execute(query, params).all()
            for bundle_ids, count, bundle_id, iri, kind, attributes, start, end in rows:
                element = Element(
                    kind,
                    iri,
                    decode_stored_attributes(load_stored_json(attributes), iri),
                    _from_iso(start),
                    _from_iso(end),
                )
                if not postgres:
                    bundle_ids = json.loads(bundle_ids)
                if iri in descriptions:
                    descriptions[iri].append((bundle_id, element))
                    bundles_of[iri].extend(bundle_ids)
                    counts[iri] += count
                else:
                    descriptions[iri] = [(bundle_id, element)]
                    bundles_of[iri] = bundle_ids
                    counts[iri] = count
        out = {}
        for iri in wanted:
            if iri not in descriptions:
                continue
            found = descriptions[iri]
            if len(found) > 1:
                # Code point order, which is the order of the "C" collation (UTF-8 bytes).
                found.sort(key=lambda pair: pair[0])
            bundle_ids = sorted(bundles_of[iri])
            if max_bundles is not None:
                bundle_ids = bundle_ids[:max_bundles]
            count = counts[iri]
            out[iri] = _node(
                [element for _, element in found],
                bundle_ids,
                None if count == len(bundle_ids) else count,
            )
        return out

    def get_node(self, node_id: str) -> Node:
        """One element with its descriptions merged across bundles.

        Raises:
            NotFound: no bundle describes it.
        """
        node = self.nodes([node_id]).get(node_id)
        if node is None:
            raise NotFound(f"no element {node_id} in the store", record=node_id)
        return node

    def find_nodes(
        self,
        *,
        kind: str | None = None,
        ml_class: str | None = None,
        text: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Node]:
        """Elements by PROV kind, PROV-ML class and/or text in IRI or label, by IRI.

        ``text`` matches case-insensitively anywhere in the IRI or the label.
        """
        if limit < 0 or offset < 0:
            raise QueryRejected("limit and offset must not be negative")
        iri = _N.c.iri  # code point order on both backends, as every key column
        query = sa.select(iri).distinct()
        if kind is not None:
            query = query.where(_N.c.kind == kind)
        if ml_class is not None:
            query = query.where(_N.c.ml_class == ml_class)
        if text:
            query = query.where(
                sa.or_(
                    _N.c.iri.icontains(text, autoescape=True),
                    _N.c.label.icontains(text, autoescape=True),
                )
            )
        query = query.order_by(iri).limit(limit).offset(offset)
        with self._transaction() as conn:
            iris = list(conn.scalars(query))
        found = self.nodes(iris)
        return [found[iri] for iri in iris if iri in found]

    def checksum(self) -> str:
        """A digest of every stored record and bundle, independent of row order.

        Each row is hashed and the hashes are summed, so the result does not depend on
        how a backend sorts text. Records are represented by their content digests
        (written with the content by the one ingest path), which keeps this fast on
        millions of rows; bundles by their content.
        """
        total = 0
        count = 0
        columns = (
            (_B, ["id", "parent", "namespaces", "attributes"]),
            (_N, ["bundle_id", "iri", "digest", "position"]),
            (_R, ["key", "digest", "position"]),
        )
        with self._transaction() as conn:
            for table, names in columns:
                query = sa.select(*(table.c[name] for name in names))
                result = conn.execution_options(stream_results=True, yield_per=2000).execute(query)
                for row in result:
                    if table is _B:  # JSONB reorders object keys: sort them
                        text = json.dumps(list(row), sort_keys=True, separators=(",", ":"))
                    else:  # IRIs, hex digests and integers: NUL cannot occur in them
                        text = "\x00".join(map(str, row))
                    data = f"{table.name}\x00{text}".encode()
                    total += int.from_bytes(hashlib.blake2b(data).digest(), "big")
                    count += 1
        total %= 1 << 512
        return hashlib.blake2b(f"{count}:{total:x}".encode(), digest_size=32).hexdigest()

    def dangling_rows(self) -> dict[str, int]:
        """Rows naming a bundle (or, for an edge, a relation) that is not stored, by table.

        The schema has no foreign keys (migration 0005); :meth:`ingest` writes or locks
        the bundle before any row naming it, and a relation before its edges, in one
        transaction. A store that keeps that promise answers all zeros.
        """
        checks = (
            (_N, _N.c.bundle_id, _B.c.id),
            (_R, _R.c.bundle_id, _B.c.id),
            (_O, _O.c.bundle_id, _B.c.id),
            (_E, _E.c.relation_key, _R.c.key),
        )
        with self._transaction() as conn:
            return {
                table.name: conn.execute(
                    sa.select(sa.func.count())
                    .select_from(table)
                    .where(~sa.exists().where(target == column))
                ).scalar_one()
                for table, column, target in checks
            }

    # --------------------------------------------------------------------- outbox

    def outbox_pending(self, limit: int = 1000) -> list[OutboxEntry]:
        """The oldest outbox entries, for the RDF projector."""
        query = (
            sa.select(_O.c.seq, _O.c.bundle_id, _O.c.from_position, _O.c.merged)
            .order_by(_O.c.seq)
            .limit(limit)
        )
        with self._transaction() as conn:
            return [
                OutboxEntry(seq, bundle_id, from_position, tuple(merged or ()))
                for seq, bundle_id, from_position, merged in conn.execute(query)
            ]

    def outbox_backlog(self, limit: int = 10_000) -> int:
        """How many outbox entries wait for the projector, counted up to ``limit``.

        For ``/readyz``, which is polled: it reads the narrow primary key only, where
        :meth:`outbox_pending` fetches and decodes up to ``limit`` whole rows.
        """
        waiting = sa.select(_O.c.seq).limit(limit).subquery()
        with self._transaction() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(waiting)).scalar_one()

    def outbox_done(self, seqs: Iterable[int]) -> None:
        """Remove outbox entries the projector has applied."""
        values = sorted(set(seqs))
        with self._transaction(write=True) as conn:
            for chunk in _chunks(values):
                conn.execute(sa.delete(_O).where(_O.c.seq.in_(chunk)))

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> SQLStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
