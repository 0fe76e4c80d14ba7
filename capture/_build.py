"""Queue items → PROV-ML records, on the exporter thread.

An ended :class:`~provml.capture._activity.Activity` becomes its ``…Execution``
activity, its plan, its agents, the entities it used and generated (data by content
digest, hyperparameter values, metric values, model versions) and the relations between
them. Plans and agents are described once per bundle and process.

Imports: standard library, ``provml.records``/``provml.vocab``/``provml.ids`` only.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime
from inspect import Parameter
from typing import Any
from urllib.parse import quote

from provml import ids
from provml.capture import _agent
from provml.capture._activity import SECTION, Activity, ModelVersionLog, Run
from provml.capture._values import (
    Algorithm,
    Data,
    DataReference,
    Description,
    Digests,
    Opaque,
    Param,
    classify,
    estimator_params,
    is_data_like,
    is_estimator,
    is_torch_module,
)
from provml.records import Element, Record, Ref, Relation
from provml.vocab import PROV, PROV_LABEL, PROV_LOCATION, PROV_ROLE, PROV_TYPE, ml

_TYPE_PLAN = (PROV_TYPE, Ref(PROV + "Plan"))
_METRIC_STAGES = ("Evaluation", "Validation")


def _time(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


#: ``ml(name)``, remembered: the same few terms name the attributes of every record.
_ml_iri = functools.cache(ml)


@functools.cache
def _ml_type(name: str) -> tuple[str, Ref]:
    """The ``prov:type`` attribute naming the PROV-ML class ``name``, made once."""
    return (PROV_TYPE, Ref(ml(name)))


def _ml_attrs(values: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [(_ml_iri(k), v) for k, v in values.items() if v is not None]


def _distinct(out: list[tuple[str, Record]]) -> list[tuple[str, Record]]:
    """``out`` without repeated records, first occurrences in order.

    Equal records have equal kinds, ids and ends, so when those (plain strings, hashed
    in C) are all distinct, nothing repeats and the records themselves (dataclasses
    hashed field by field in Python, ~1 ms a run of the benchmark workflow) need no hash.
    """
    keys = {
        (b, r.kind, r.id) if type(r) is Element else (b, r.kind, r.subject, r.object, r.id)
        for b, r in out
    }
    return out if len(keys) == len(out) else list(dict.fromkeys(out))


class RecordBuilder:
    """Turns queue items into ``(bundle id, record)`` pairs; keeps what it described."""

    def __init__(self, base: str, user: str, packages: tuple[str, ...]) -> None:
        self.base = base
        self.user = user
        self.packages = packages
        self.digests = Digests(base)
        self._agents: dict[str, tuple[str, str, _agent.AgentInfo]] = {}
        self._plans: dict[tuple[str, str | None, str], str] = {}
        self._described: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ entry

    def build(self, item: Any) -> list[tuple[str, Record]]:
        out: list[tuple[str, Record]] = []
        if isinstance(item, Activity):
            self._activity(item, out)
        elif item[0] == "param":
            _, run, activity, name, value, _t = item
            act = activity.iri if activity is not None else run.activity
            for d in classify(name, value, declared_data=False, ml_class=None, digests=None):
                self._use(run, act, d, None, None, out)
        elif item[0] == "metric":
            _, run, activity, name, value, step, t = item
            if step is None and activity is not None and activity.spec.stage == SECTION:
                step = activity.spec.step
            act = activity.iri if activity is not None else run.activity
            self._metric(run.bundle, act, name, value, step, t, out)
        elif item[0] == "io":
            _, run, activity, direction, name, value, options, t = item
            act = activity.iri if activity is not None else run.activity
            for d in self._describe_io(name, value, options):
                if direction == "used":
                    self._use(run, act, d, _time(t), name, out)
                else:
                    self._generate(run, act, d, _time(t), name, out)
        elif item[0] == "model":
            _, run, activity, log = item
            act = activity.iri if activity is not None else run.activity
            self._model_version(run, act, log, [], out)
        elif item[0] == "run_start":
            self._run(item[1], out, ended=False)
        elif item[0] == "run_end":
            self._run(item[1], out, ended=True)
        # One call may describe an entity twice (an estimator passed and returned).
        return _distinct(out)

    # --------------------------------------------------------------- pieces

    def _once(self, bundle: str, iri: str) -> bool:
        key = (bundle, iri)
        if key in self._described:
            return False
        if len(self._described) > 100_000:
            self._described.clear()
        self._described.add(key)
        return True

    def _agent_iris(self, run: Run, out: list[tuple[str, Record]]) -> tuple[str, str]:
        known = self._agents.get(run.workflow)
        if known is None:
            info = _agent.collect(self.user, run.workflow, self.packages)
            known = (info.person_iri(self.base), info.software_iri(self.base), info)
            self._agents[run.workflow] = known
        person, software, info = known
        b = run.bundle
        if self._once(b, person):
            out.append(
                (
                    b,
                    Element(
                        "agent",
                        person,
                        (
                            (PROV_TYPE, Ref(PROV + "Person")),
                            _ml_type("Persona"),
                            (PROV_LABEL, info.user),
                        ),
                    ),
                )
            )
        if self._once(b, software):
            attrs = [
                (PROV_TYPE, Ref(PROV + "SoftwareAgent")),
                (PROV_LABEL, f"{info.workflow} on {info.host}"),
                *_ml_attrs(
                    {
                        "host": info.host,
                        "pythonVersion": info.python_version,
                        "packageVersions": info.package_versions or None,
                        "codeVersion": info.code_version,
                    }
                ),
            ]
            out.append((b, Element("agent", software, tuple(attrs))))
            out.append((b, Relation("actedOnBehalfOf", software, person)))
        return person, software

    def _plan(self, run: Run, stage: str | None, name: str, out: list) -> str:
        key = (run.workflow, stage, name)
        plan = self._plans.get(key)
        if plan is None:
            plan = ids.iri("plan", run.workflow, stage or "Activity", name, base=self.base)
            if len(self._plans) > 10_000:
                self._plans.clear()
            self._plans[key] = plan
        if self._once(run.bundle, plan):
            attrs: list[tuple[str, Any]] = [_TYPE_PLAN]
            if stage is not None:
                attrs.append(_ml_type(stage))
            attrs.append((PROV_LABEL, name))
            out.append((run.bundle, Element("entity", plan, tuple(attrs))))
        return plan

    def _describe_io(self, name: Any, value: Any, options: Mapping[str, Any]) -> list[Description]:
        if options.get("reference") is not None:
            value = DataReference(
                str(options.get("data_store") or "default"), str(options["reference"])
            )
        return classify(
            str(name) if name is not None else "value",
            value,
            declared_data=True,
            ml_class=options.get("ml_class"),
            digests=self.digests,
        )

    def _entity(self, bundle: str, act: str, d: Description, out: list) -> str:
        """Describe ``d`` as an entity (once per bundle for data) and return its IRI."""
        if isinstance(d, Data):
            if self._once(bundle, d.iri):
                attrs: list[tuple[str, Any]] = [_ml_type(d.ml_class)]
                if d.label:
                    attrs.append((PROV_LABEL, d.label))
                attrs.extend(_ml_attrs(d.attributes))
                out.append((bundle, Element("entity", d.iri, tuple(attrs))))
            return d.iri
        if isinstance(d, Param):
            iri = f"{act}/param/{quote(d.name, safe='-._~')}"
            attrs = [
                _ml_type("LearningHyperparameterValue"),
                (PROV_LABEL, f"{d.name} = {d.lexical[:200]}"),
                *_ml_attrs(
                    {"name": d.name, "hyperparameterValue": d.lexical, "valueType": d.value_type}
                ),
            ]
            out.append((bundle, Element("entity", iri, tuple(attrs))))
            return iri
        if isinstance(d, Algorithm):
            iri = f"{act}/algorithm/{quote(d.name, safe='-._~')}"
            attrs = [
                _ml_type("Algorithm"),
                (PROV_LABEL, d.type_name),
                *_ml_attrs(
                    {"name": d.name, "valueType": d.type_name, "parameterCount": d.parameter_count}
                ),
            ]
            out.append((bundle, Element("entity", iri, tuple(attrs))))
            return iri
        assert isinstance(d, Opaque)
        iri = f"{act}/value/{quote(d.name, safe='-._~')}"
        attrs = [
            (PROV_LABEL, f"{d.name}: {d.type_name}"),
            *_ml_attrs({"name": d.name, "valueType": d.type_name}),
        ]
        out.append((bundle, Element("entity", iri, tuple(attrs))))
        return iri

    @staticmethod
    def _relation_attrs(d: Description, role: str | None) -> tuple[tuple[str, Any], ...]:
        attrs: list[tuple[str, Any]] = []
        if role:
            attrs.append((PROV_ROLE, role))
        if isinstance(d, Data) and d.location:
            attrs.append((PROV_LOCATION, d.location))
        return tuple(attrs)

    def _use(
        self, run: Run, act: str, d: Description, t: datetime | None, role: str | None, out: list
    ) -> str:
        iri = self._entity(run.bundle, act, d, out)
        out.append(
            (
                run.bundle,
                Relation("used", act, iri, time=t, attributes=self._relation_attrs(d, role)),
            )
        )
        return iri

    def _generate(
        self, run: Run, act: str, d: Description, t: datetime | None, role: str | None, out: list
    ) -> str:
        iri = self._entity(run.bundle, act, d, out)
        out.append(
            (
                run.bundle,
                Relation(
                    "wasGeneratedBy", iri, act, time=t, attributes=self._relation_attrs(d, role)
                ),
            )
        )
        return iri

    def _metric(
        self, bundle: str, act: str, name: str, value: float, step: Any, t: int, out: list
    ) -> None:
        iri = f"{self.base}metric/{ids.uuid7()}"  # ids.new_iri's form; a UUID needs no quoting
        values: dict[str, Any] = {"name": str(name), "metricValue": float(value)}
        if isinstance(step, int) and not isinstance(step, bool):
            values["step"] = step
        label = f"{name} = {value:g}" + (f" @ {step}" if "step" in values else "")
        attrs = (
            _ml_type("MetricValue"),
            (PROV_LABEL, label),
            *_ml_attrs(values),
        )
        out.append((bundle, Element("entity", iri, attrs)))
        out.append((bundle, Relation("wasGeneratedBy", iri, act, time=_time(t))))

    def _model_version(
        self, run: Run, act: str, log: ModelVersionLog, data_inputs: list[str], out: list
    ) -> None:
        b = run.bundle
        model = ids.iri("model", log.model_name, base=self.base)
        if self._once(b, model):
            out.append(
                (
                    b,
                    Element(
                        "entity",
                        model,
                        (
                            _ml_type("Model"),
                            (PROV_LABEL, log.model_name),
                            (_ml_iri("name"), log.model_name),
                        ),
                    ),
                )
            )
        attrs: list[tuple[str, Any]] = [
            _ml_type("ModelVersion"),
            (PROV_LABEL, f"{log.model_name} v{log.version}"),
            (_ml_iri("name"), log.model_name),
        ]
        if isinstance(log.version, int):
            attrs.append((_ml_iri("versionNumber"), log.version))
        hyper: list[Description] = []
        if log.model is not None:
            if is_torch_module(log.model):
                count = classify(
                    "model", log.model, declared_data=False, ml_class=None, digests=None
                )
                for d in count:
                    if isinstance(d, Algorithm) and d.parameter_count is not None:
                        attrs.append((_ml_iri("parameterCount"), d.parameter_count))
            elif is_estimator(log.model):
                hyper = estimator_params("model", log.model)
        out.append((b, Element("entity", log.iri, tuple(attrs))))
        out.append((b, Relation("specializationOf", log.iri, model)))
        out.append((b, Relation("wasGeneratedBy", log.iri, act, time=_time(log.time_ns))))
        sources = list(data_inputs)
        for value in log.derived_from:
            if (
                isinstance(value, str)
                and ":" in value
                and "/" in value
                and not value.startswith("/")
            ):
                sources.append(value)  # an IRI
                continue
            for d in classify(
                "data", value, declared_data=True, ml_class=None, digests=self.digests
            ):
                if isinstance(d, Data):
                    sources.append(self._entity(b, act, d, out))
        for source in dict.fromkeys(sources):
            out.append(
                (b, Relation("wasDerivedFrom", log.iri, source, extras=(("activity", act),)))
            )
        for d in hyper:
            self._use(run, act, d, None, None, out)

    def _run(self, run: Run, out: list, *, ended: bool) -> None:
        """The WorkflowExecution: described when the run starts (so a running or killed
        job shows), then again, complete, when it ends; a store merges the two."""
        if not run.owned:
            return
        person, software = self._agent_iris(run, out)
        plan = ids.iri("plan", run.workflow, base=self.base)
        if self._once(run.bundle, plan):
            out.append(
                (
                    run.bundle,
                    Element(
                        "entity",
                        plan,
                        (
                            _TYPE_PLAN,
                            _ml_type("LearningExperiment"),
                            (PROV_LABEL, run.workflow),
                        ),
                    ),
                )
            )
        attrs: list[tuple[str, Any]] = [
            _ml_type("WorkflowExecution"),
            (PROV_LABEL, run.workflow),
        ]
        end = None
        if ended:
            # No "running" status at the start: the union of both descriptions must not
            # say running and completed at once.
            attrs.extend(
                _ml_attrs(
                    {
                        "status": run.status,
                        "errorType": run.error_type,
                        "errorMessage": run.error_message,
                    }
                )
            )
            end = _time(run.end_ns) if run.end_ns else None
        out.append(
            (run.bundle, Element("activity", run.activity, tuple(attrs), _time(run.start_ns), end))
        )
        out.append(
            (
                run.bundle,
                Relation("wasAssociatedWith", run.activity, software, extras=(("plan", plan),)),
            )
        )
        out.append((run.bundle, Relation("wasAssociatedWith", run.activity, person)))

    # ------------------------------------------------------------ activities

    def _activity(self, a: Activity, out: list[tuple[str, Record]]) -> None:
        run, spec = a.run, a.spec
        b, act = run.bundle, a.iri
        start, end = _time(a.start_ns), _time(a.end_ns)
        attrs: list[tuple[str, Any]] = []
        if spec.stage is not None:
            attrs.append(_ml_type(spec.stage + "Execution"))
        attrs.append((PROV_LABEL, spec.name))
        attrs.extend(
            _ml_attrs(
                {
                    "status": a.status,
                    "errorType": a.error_type,
                    "errorMessage": a.error_message,
                    "step": spec.step if isinstance(spec.step, int) else None,
                }
            )
        )
        out.append((b, Element("activity", act, tuple(attrs), start, end)))
        informant = a.parent.iri if a.parent is not None else run.activity
        out.append((b, Relation("wasInformedBy", act, informant)))
        person, software = self._agent_iris(run, out)
        plan = self._plan(run, spec.stage, spec.name, out)
        out.append((b, Relation("wasAssociatedWith", act, software, extras=(("plan", plan),))))
        out.append((b, Relation("wasAssociatedWith", act, person)))

        data_in: list[str] = []
        data_out: list[str] = []
        for role, value, data, is_output in self._arguments(a):
            for d in classify(role, value, declared_data=data, ml_class=None, digests=self.digests):
                if is_output:
                    iri = self._generate(run, act, d, end, role, out)
                    if isinstance(d, Data):
                        data_out.append(iri)
                else:
                    iri = self._use(run, act, d, start, role, out)
                    if isinstance(d, Data):
                        data_in.append(iri)
        for name, value, options in a.inputs:
            for d in self._describe_io(name, value, options):
                iri = self._use(run, act, d, start, name, out)
                if isinstance(d, Data):
                    data_in.append(iri)
        for name, value, options in a.outputs:
            for d in self._describe_io(name, value, options):
                iri = self._generate(run, act, d, end, name, out)
                if isinstance(d, Data):
                    data_out.append(iri)
        self._return_value(a, act, end, data_out, out)
        for log in a.model_versions:
            self._model_version(run, act, log, data_in, out)
        if spec.stage == "DataTransformation":
            # Curated data derives from the data it was made from: lineage across
            # workflows walks these without needing to know the activity.
            for target in dict.fromkeys(data_out):
                for source in dict.fromkeys(data_in):
                    if source != target:
                        out.append(
                            (
                                b,
                                Relation(
                                    "wasDerivedFrom", target, source, extras=(("activity", act),)
                                ),
                            )
                        )

    def _arguments(self, a: Activity) -> list[tuple[str, Any, bool, bool]]:
        """(role, value, declared as data, is an output) for each bound argument."""
        spec = a.spec
        if spec.signature is None or not (a.args or a.kwargs):
            return []
        try:
            bound = spec.signature.bind(*a.args, **a.kwargs)
            bound.apply_defaults()
            pairs = list(bound.arguments.items())
        except TypeError:
            pairs = [(f"arg{i}", v) for i, v in enumerate(a.args)] + list(a.kwargs.items())
        params = spec.signature.parameters
        out = []
        for name, value in pairs:
            kind = params[name].kind if name in params else None
            if kind is Parameter.VAR_POSITIONAL:
                items = [(f"{name}[{i}]", v) for i, v in enumerate(value)]
            elif kind is Parameter.VAR_KEYWORD:
                items = list(value.items())
            else:
                items = [(name, value)]
            for role, v in items:
                if role in ("self", "cls") or role in spec.ignore:
                    continue
                if role in spec.outputs:
                    out.append((role, v, True, True))
                elif role in spec.inputs:
                    out.append((role, v, True, False))
                elif role in spec.params or spec.capture_args:
                    out.append((role, v, False, False))
        return out

    def _return_value(
        self, a: Activity, act: str, end: datetime, data_out: list[str], out: list
    ) -> None:
        spec, result, run = a.spec, a.result, a.run
        if a.status != "completed" or result is None:
            return
        if "return" in spec.outputs:
            declared = True
        elif spec.capture_return and (
            is_data_like(result) or is_estimator(result) or is_torch_module(result)
        ):
            declared = False
        elif (
            spec.capture_return
            and spec.stage in _METRIC_STAGES
            and isinstance(result, Mapping)
            and result
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in result.values())
        ):
            for name, value in result.items():
                self._metric(run.bundle, act, str(name), float(value), None, a.end_ns, out)
            return
        else:
            return
        for d in classify(
            "return", result, declared_data=declared, ml_class=None, digests=self.digests
        ):
            if isinstance(d, Param):  # an estimator's settings: used, not made, by the run
                self._use(run, act, d, None, "return", out)
                continue
            iri = self._generate(run, act, d, end, "return", out)
            if isinstance(d, Data):
                data_out.append(iri)
