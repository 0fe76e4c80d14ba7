"""OpenLineage RunEvents as PROV-ML records: a pure mapping, no I/O.

Airflow, Spark, dbt and other tools emit OpenLineage events (https://openlineage.io);
:func:`map_run_event` turns one event, parsed from JSON, into one provml
:class:`~provml.records.Bundle` that the SQL store ingests like any other. A malformed
event raises :class:`~provml.errors.InvalidRecord` whose ``field`` is the JSON path of
the offending value (``run.runId``, ``inputs[0].name``,
``outputs[1].facets.columnLineage.fields.total.inputFields[0].field``).

The mapping:

- **bundle** — one per run, ``<base>openlineage/bundle/<runId>``: every event of a run
  lands in the same bundle, so the store's upsert merges them (below).
- **job** ``(namespace, name)`` → a ``prov:Plan`` of PROV-ML class
  ``DataTransformation`` (OpenLineage jobs are data pipelines' steps), IRI
  ``<base>openlineage/job/<namespace>/<name>``.
- **run** ``runId`` → a ``DataTransformationExecution`` activity,
  ``<base>openlineage/run/<runId>`` (the UUID in lower case), associated
  (``wasAssociatedWith``, ``plan`` = the job) with the event's ``producer`` as a
  ``prov:SoftwareAgent``. ``START`` gives ``prov:startedAtTime``; ``COMPLETE``,
  ``FAIL`` and ``ABORT`` give ``prov:endedAtTime`` and ``provml:status``
  (``completed``, or ``failed`` with ``provml:errorMessage`` from the ``errorMessage``
  facet, ``provml:errorType`` ``ABORT`` for an abort); ``RUNNING``, ``OTHER`` and a
  missing type add facts but no time. Each event describes the activity with only what
  it knows, so START then COMPLETE (in either order) merge in the store into one
  activity with both times — the PROV-DM union the store applies to element
  descriptions of one bundle, which capture relies on too. No ``running`` status is
  written at the start, because the union would then say running and completed at
  once. Two terminal events of one run with different times contradict each other: the
  store refuses the second with 409 Conflict and keeps the first.
- **datasets** ``(namespace, name)`` → ``DomainData`` entities with ``provml:dataStore``
  = namespace and ``provml:dataReference`` = name, identified by
  :func:`provml.ids.reference_iri` exactly as capture identifies data logged by
  reference: a dataset a Spark job wrote and a training job read through
  ``provml.log_input(reference=…)`` is one entity, and lineage crosses the tools.
  Inputs are ``used`` by the run, outputs ``wasGeneratedBy`` it and ``wasDerivedFrom``
  every input (``activity`` = the run).
- **facets** are kept whole as JSON text attributes (keys sorted, so a replay is
  byte-identical) named ``ol:<level>Facet.<name>`` in the namespace
  :data:`OPENLINEAGE`: run facets on the activity, job facets on the plan, dataset
  facets on the entity, input/output facets (per-run statistics) on the ``used`` /
  ``wasGeneratedBy`` relation.
- **schema facet** → one ``Feature`` entity per field (nested fields as
  ``parent.child``), IRI :func:`column_iri` (dataset IRI + ``#`` + field), with
  ``provml:name``, ``ol:fieldType`` and ``ol:fieldDescription``; the dataset becomes a
  ``prov:Collection`` that ``hadMember`` each column.
- **column-lineage facet** → ``wasDerivedFrom`` from each output column to each of its
  input columns, with the transformation's type, subtype and description as ``ol:``
  attributes and the run as ``ol:run``. Not as the ``activity`` argument: provml walks
  that argument as a lineage edge, and run → its inputs → their member columns would
  make every input column upstream of every output column. The facet's dataset-wide
  dependencies become derivations of the output dataset from those input columns.
  Columns named only here get their entity and ``hadMember`` too, so REST lineage and
  SPARQL (``prov:wasDerivedFrom+``) reach input columns from an output column.
- **parent run facet** → ``wasInformedBy`` from this run to the parent run (an activity
  ``<base>openlineage/run/<parent runId>`` known here by its id only; its own events
  give it its class and times).

Relations carry no ids: the store keys them by content, so re-sending an event stores
nothing new, and the same dataset named by START and by COMPLETE is used once (twice
when the two carry different input facets).

Imports: standard library and ``provml.records``/``ids``/``vocab``/``errors`` only.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

from provml import ids
from provml.errors import InvalidRecord
from provml.records import AttrValue, Bundle, Element, Ref, Relation, merge_elements
from provml.vocab import PROV, PROV_LABEL, PROV_TYPE, ml

__all__ = [
    "EVENT_TYPES",
    "OPENLINEAGE",
    "MappedEvent",
    "column_iri",
    "dataset_iri",
    "job_iri",
    "map_run_event",
    "run_iri",
]

#: The namespace of the OpenLineage-specific attributes provml records (facets, field
#: types, transformations). Not the closed PROV-ML namespace: these terms come from
#: OpenLineage's spec, not from PROV-ML.
OPENLINEAGE: Final = "https://w3id.org/provml/openlineage#"

#: The run states of the OpenLineage spec (2-0-2).
EVENT_TYPES: Final = ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER")
_TERMINAL: Final = {"COMPLETE": "completed", "FAIL": "failed", "ABORT": "failed"}

_PLAN_TYPES: Final = ((PROV_TYPE, Ref(PROV + "Plan")), (PROV_TYPE, Ref(ml("DataTransformation"))))
_RUN_TYPE: Final = (PROV_TYPE, Ref(ml("DataTransformationExecution")))
_COLLECTION: Final = (PROV_TYPE, Ref(PROV + "Collection"))
_MAX_NESTING = 32  # schema fields nested deeper are refused rather than recursed into
# The SQL store's limit for IRIs (provml.store.sql.MAX_IRI_BYTES, not imported: that
# module needs sqlalchemy). Checked here so that the error names the event's field.
_MAX_IRI_BYTES = 1000


def _ol(term: str) -> str:
    return OPENLINEAGE + term


# ------------------------------------------------------------------------ identities


def job_iri(namespace: str, name: str, base: str | None = None) -> str:
    """The plan of an OpenLineage job."""
    return ids.iri("openlineage", "job", namespace, name, base=base)


def run_iri(run_id: str, base: str | None = None) -> str:
    """The activity of an OpenLineage run (``run_id`` as the event sends it)."""
    return ids.iri("openlineage", "run", _canonical_uuid(run_id), base=base)


def dataset_iri(namespace: str, name: str, base: str | None = None) -> str:
    """The entity of a dataset: the same IRI capture gives data in store ``namespace``."""
    return ids.reference_iri(namespace, name, base=base)


def column_iri(namespace: str, name: str, field: str, base: str | None = None) -> str:
    """The entity of one column (field) of a dataset: the dataset IRI + ``#`` + field."""
    return dataset_iri(namespace, name, base) + "#" + quote(field, safe="-._~")


def _bundle_iri(run_id: str, base: str | None) -> str:
    return ids.iri("openlineage", "bundle", run_id, base=base)


def _canonical_uuid(value: str) -> str:
    return str(uuid.UUID(value))


# --------------------------------------------------------------------- JSON reading


def _invalid(path: str, message: str) -> InvalidRecord:
    return InvalidRecord(f"{path} {message}", field=path)


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _invalid(path, f"must be a JSON object, got {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _text(obj: Mapping[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    where = f"{path}.{key}" if path else key
    if value is None:
        if required:
            raise _invalid(where, "is required")
        return None
    if not isinstance(value, str):
        raise _invalid(where, f"must be a string, got {_json_type(value)}")
    if required and not value.strip():
        raise _invalid(where, "must not be empty")
    return _unicode(value, where)


def _unicode(value: str, where: str) -> str:
    # JSON lets "\ud800" through; no IRI, UTF-8 body or database can hold it.
    try:
        value.encode()
    except UnicodeEncodeError:
        raise _invalid(where, "contains a lone surrogate, which is not Unicode text") from None
    return value


def _array(obj: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = obj.get(key)
    where = f"{path}.{key}" if path else key
    if value is None:
        return []
    if not isinstance(value, list):
        raise _invalid(where, f"must be an array, got {_json_type(value)}")
    return value


def _facets(obj: Mapping[str, Any], key: str, path: str) -> dict[str, Mapping[str, Any]]:
    value = obj.get(key)
    where = f"{path}.{key}"
    if value is None:
        return {}
    facets = _object(value, where)
    return {
        _unicode(name, where): _object(facet, f"{where}.{name}") for name, facet in facets.items()
    }


def _fits(iri: str, where: str) -> str:
    if len(iri.encode()) > _MAX_IRI_BYTES:
        raise _invalid(where, f"is too long: its IRI would exceed {_MAX_IRI_BYTES} bytes")
    return iri


def _required(obj: Mapping[str, Any], key: str, path: str) -> str:
    value = _text(obj, key, path)
    assert value is not None  # _text raises for a missing required value
    return value


def _dataset_key(obj: Mapping[str, Any], path: str) -> tuple[str, str]:
    return _required(obj, "namespace", path), _required(obj, "name", path)


def _time(event: Mapping[str, Any]) -> datetime:
    text = _required(event, "eventTime", "")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _invalid("eventTime", f"is not an ISO 8601 date-time: {text!r:.80}") from None
    if "t" not in text.lower():
        raise _invalid("eventTime", f"must be a date and a time, got {text!r:.80}")
    return value


def _run_id(obj: Mapping[str, Any], path: str) -> str:
    text = _required(obj, "runId", path)
    try:
        return _canonical_uuid(text)
    except ValueError:
        raise _invalid(f"{path}.runId", f"must be a UUID, got {text!r:.80}") from None


def _facet_attributes(
    level: str, facets: Mapping[str, Mapping[str, Any]], path: str
) -> list[tuple[str, Any]]:
    # Whole facets as sorted-key JSON: lossless, and a replayed event is byte-identical.
    out = []
    for name, facet in sorted(facets.items()):
        try:
            text = json.dumps(facet, sort_keys=True)
        except RecursionError:
            raise _invalid(f"{path}.{name}", "nests JSON too deeply") from None
        out.append((_ol(f"{level}Facet.{quote(name, safe='-._~')}"), text))
    return out


# --------------------------------------------------------------------------- mapping


@dataclass(frozen=True, slots=True)
class MappedEvent:
    """One event as provml records, with the IRIs a caller wants to name in an answer."""

    bundle: Bundle
    event_type: str | None
    run: str
    job: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


class _Builder:
    """Collects records, merging repeated element descriptions and dropping repeats."""

    def __init__(self, base: str | None) -> None:
        self.base = base
        self.elements: dict[str, Element] = {}
        self.relations: dict[Relation, None] = {}

    def element(self, element: Element) -> str:
        known = self.elements.get(element.id)
        self.elements[element.id] = merge_elements(known, element) if known else element
        return element.id

    def relation(self, relation: Relation) -> None:
        self.relations[relation] = None

    def dataset(
        self, key: tuple[str, str], facets: Mapping[str, Mapping[str, Any]], where: str
    ) -> str:
        attrs = (*_dataset_identity(*key), *_facet_attributes("dataset", facets, where))
        return self.element(Element("entity", dataset_iri(*key, self.base), attrs))

    def column(
        self,
        namespace: str,
        name: str,
        field: str,
        where: str,
        extra: tuple[tuple[str, AttrValue], ...] = (),
    ) -> str:
        dataset = dataset_iri(namespace, name, self.base)
        self.element(Element("entity", dataset, (*_dataset_identity(namespace, name), _COLLECTION)))
        column = _fits(column_iri(namespace, name, field, self.base), where)
        attrs = ((PROV_TYPE, Ref(ml("Feature"))), (PROV_LABEL, field), (ml("name"), field), *extra)
        self.element(Element("entity", column, attrs))
        self.relation(Relation("hadMember", dataset, column))
        return column

    def schema(
        self, key: tuple[str, str], parent: Mapping[str, Any], path: str, prefix: str = ""
    ) -> None:
        """Columns for the fields of ``parent`` (the schema facet), nested ones as ``a.b``."""
        if path.count(".fields[") > _MAX_NESTING:
            raise _invalid(path, f"nests fields deeper than {_MAX_NESTING} levels")
        for index, item in enumerate(_array(parent, "fields", path)):
            where = f"{path}.fields[{index}]"
            field = _object(item, where)
            field_name = prefix + _required(field, "name", where)
            extra: list[tuple[str, AttrValue]] = []
            for name, term in (("type", "fieldType"), ("description", "fieldDescription")):
                value = _text(field, name, where, required=False)
                if value is not None:
                    extra.append((_ol(term), value))
            self.column(*key, field_name, f"{where}.name", tuple(extra))
            if field.get("fields"):
                self.schema(key, field, where, field_name + ".")

    def column_lineage(
        self, output: tuple[str, str], run: str, facet: Mapping[str, Any], path: str
    ) -> None:
        fields = facet.get("fields")
        if fields is not None:
            for out_field, spec in _object(fields, f"{path}.fields").items():
                where = f"{path}.fields.{_unicode(out_field, f'{path}.fields')}"
                spec = _object(spec, where)
                target = self.column(*output, out_field, where)
                base_attrs: list[tuple[str, AttrValue]] = []
                for key, term in (
                    ("transformationType", "transformationType"),
                    ("transformationDescription", "transformationDescription"),
                ):
                    value = _text(spec, key, where, required=False)
                    if value is not None:
                        base_attrs.append((_ol(term), value))
                for index, item in enumerate(_array(spec, "inputFields", where)):
                    self._derivation(target, run, item, f"{where}.inputFields[{index}]", base_attrs)
        for index, item in enumerate(_array(facet, "dataset", path)):
            target = dataset_iri(*output, self.base)
            self._derivation(target, run, item, f"{path}.dataset[{index}]", [])

    def _derivation(
        self, target: str, run: str, item: Any, where: str, attrs: list[tuple[str, AttrValue]]
    ) -> None:
        source = _object(item, where)
        field = _required(source, "field", where)
        column = self.column(*_dataset_key(source, where), field, f"{where}.field")
        transformation_attrs = list(attrs)
        for t_index, transformation in enumerate(_array(source, "transformations", where)):
            t_where = f"{where}.transformations[{t_index}]"
            transformation = _object(transformation, t_where)
            for key, term in (
                ("type", "transformationType"),
                ("subtype", "transformationSubtype"),
                ("description", "transformationDescription"),
            ):
                value = _text(transformation, key, t_where, required=False)
                if value is not None:
                    transformation_attrs.append((_ol(term), value))
            masking = transformation.get("masking")
            if masking is not None:
                if not isinstance(masking, bool):
                    raise _invalid(
                        f"{t_where}.masking", f"must be a boolean, got {_json_type(masking)}"
                    )
                transformation_attrs.append((_ol("masking"), masking))
        self.relation(
            # The run is named by an attribute, not by the ``activity`` argument: that
            # argument is a lineage edge, and through the run's inputs and their
            # members it would make every input column upstream of every output column.
            Relation(
                "wasDerivedFrom",
                target,
                column,
                attributes=((_ol("run"), Ref(run)), *transformation_attrs),
            )
        )


def _dataset_identity(namespace: str, name: str) -> tuple[tuple[str, AttrValue], ...]:
    return (
        (PROV_TYPE, Ref(ml("DomainData"))),
        (PROV_LABEL, name),
        (ml("dataStore"), namespace),
        (ml("dataReference"), name),
    )


def _dataset_facets(
    b: _Builder, key: tuple[str, str], dataset: Mapping[str, Any], where: str
) -> dict[str, Mapping[str, Any]]:
    facets = _facets(dataset, "facets", where)
    if "schema" in facets:
        b.schema(key, facets["schema"], f"{where}.facets.schema")
    return facets


def map_run_event(event: Any, base: str | None = None) -> MappedEvent:
    """Map one OpenLineage RunEvent (parsed JSON) to provml records.

    Args:
        event: the event as ``json.loads`` gives it.
        base: the base IRI; None for ``PROVML_BASE_IRI``.

    Returns:
        The bundle of the event's run and the IRIs of its run, job and datasets.

    Raises:
        InvalidRecord: the event breaks the OpenLineage spec; ``field`` is the JSON path.
    """
    event = _object(event, "event")
    when = _time(event)
    event_type = _text(event, "eventType", "", required=False)
    if event_type is not None and event_type not in EVENT_TYPES:
        raise _invalid(
            "eventType", f"must be one of {', '.join(EVENT_TYPES)}, got {event_type!r:.40}"
        )
    producer = _required(event, "producer", "")
    run_obj = _object(event.get("run"), "run")
    run_id = _run_id(run_obj, "run")
    run_facets = _facets(run_obj, "facets", "run")
    job_obj = _object(event.get("job"), "job")
    job_namespace, job_name = _dataset_key(job_obj, "job")
    job_facets = _facets(job_obj, "facets", "job")

    b = _Builder(base)
    plan = b.element(
        Element(
            "entity",
            _fits(job_iri(job_namespace, job_name, base), "job.name"),
            (
                *_PLAN_TYPES,
                (PROV_LABEL, job_name),
                (ml("name"), job_name),
                (_ol("namespace"), job_namespace),
                *_facet_attributes("job", job_facets, "job.facets"),
            ),
        )
    )
    run = run_iri(run_id, base)
    run_attrs: list[tuple[str, AttrValue]] = [
        _RUN_TYPE,
        (PROV_LABEL, f"{job_name} run"),
        (_ol("runId"), run_id),
    ]
    start = end = None
    if event_type == "START":
        start = when
    elif event_type in _TERMINAL:
        end = when
        run_attrs.append((ml("status"), _TERMINAL[event_type]))
        if event_type == "ABORT":
            run_attrs.append((ml("errorType"), "ABORT"))
        error = run_facets.get("errorMessage")
        if event_type != "COMPLETE" and error is not None:
            message = _required(error, "message", "run.facets.errorMessage")
            run_attrs.append((ml("errorMessage"), message))
    run_attrs.extend(_facet_attributes("run", run_facets, "run.facets"))
    b.element(Element("activity", run, tuple(run_attrs), start, end))
    agent = b.element(
        Element(
            "agent",
            _fits(ids.iri("openlineage", "producer", producer, base=base), "producer"),
            ((PROV_TYPE, Ref(PROV + "SoftwareAgent")), (PROV_LABEL, producer)),
        )
    )
    b.relation(Relation("wasAssociatedWith", run, agent, extras=(("plan", plan),)))

    parent = run_facets.get("parent")
    if parent is not None:
        parent_run_obj = _object(parent.get("run"), "run.facets.parent.run")
        parent_id = _run_id(parent_run_obj, "run.facets.parent.run")
        # Only the identity: the parent's class and times come with its own events, and
        # an execution class without a start time here would break the PROV-ML shapes.
        parent_run = b.element(
            Element("activity", run_iri(parent_id, base), ((_ol("runId"), parent_id),))
        )
        b.relation(Relation("wasInformedBy", run, parent_run))

    inputs: list[tuple[str, str]] = []
    for index, item in enumerate(_array(event, "inputs", "")):
        where = f"inputs[{index}]"
        dataset = _object(item, where)
        key = _dataset_key(dataset, where)
        entity = b.dataset(key, _dataset_facets(b, key, dataset, where), f"{where}.facets")
        usage = _facet_attributes(
            "input", _facets(dataset, "inputFacets", where), f"{where}.inputFacets"
        )
        b.relation(Relation("used", run, entity, attributes=tuple(usage)))
        inputs.append(key)

    outputs: list[tuple[str, str]] = []
    for index, item in enumerate(_array(event, "outputs", "")):
        where = f"outputs[{index}]"
        dataset = _object(item, where)
        key = _dataset_key(dataset, where)
        facets = _dataset_facets(b, key, dataset, where)
        entity = b.dataset(key, facets, f"{where}.facets")
        if "columnLineage" in facets:
            b.column_lineage(key, run, facets["columnLineage"], f"{where}.facets.columnLineage")
        generation = _facet_attributes(
            "output", _facets(dataset, "outputFacets", where), f"{where}.outputFacets"
        )
        b.relation(Relation("wasGeneratedBy", entity, run, attributes=tuple(generation)))
        for source in inputs:
            if source == key:  # a table updated in place is not derived from itself
                continue
            b.relation(
                Relation(
                    "wasDerivedFrom",
                    entity,
                    dataset_iri(*source, base),
                    extras=(("activity", run),),
                )
            )
        outputs.append(key)

    bundle = Bundle(
        _bundle_iri(run_id, base),
        (*b.elements.values(), *b.relations),
        namespaces=(("ol", OPENLINEAGE),),
    )
    return MappedEvent(
        bundle=bundle,
        event_type=event_type,
        run=run,
        job=plan,
        inputs=tuple(dataset_iri(*k, base) for k in inputs),
        outputs=tuple(dataset_iri(*k, base) for k in outputs),
    )
