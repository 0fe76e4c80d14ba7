"""provml capture: record PROV-ML provenance from ML workflow code, nearly for free.

.. code-block:: python

    import provml

    provml.init(workflow="salt-detection")            # the embedded store by default

    @provml.data_transformation(inputs=["raw"], outputs=["tiles"])
    def curate(raw: Path, tiles: Path) -> None: ...

    @provml.training
    def train(tiles: Path, epochs: int = 10, lr: float = 0.01):
        for epoch in range(epochs):
            with provml.section("epoch", step=epoch):
                provml.log_metric("loss", ...)
        provml.log_model_version("salt-detector", 3)

Code that logs to MLflow gets PROV lineage from ``provml.capture.mlflow_autolog()``: MLflow
runs become executions recording their run id, and registered versions are linked.

Modelled on OpenTelemetry: no-op until :func:`init`; one primitive that is both a
decorator and a context manager (sync, async, generators); context in ``contextvars``;
records go on a bounded queue that a daemon thread batches to the record store or an
HTTP endpoint, spooling to disk when it is down. It never raises into user code:
internal failures are logged once (logger ``provml.capture``); the user's exceptions
are recorded and re-raised unchanged. Only :func:`init` raises, on misconfiguration.

Imports: the standard library and ``provml.records``/``vocab``/``ids``/``errors``/
``config`` only — never sqlalchemy, fastapi, rdflib, prov or pyoxigraph (a test checks
it). The record store is imported on the exporter thread, only when it is the
destination.
"""

from __future__ import annotations

import time as _time
from typing import Any as _Any

from provml.capture import context, testing
from provml.capture._activity import (
    Activity,
    Run,
    Stage,
    StageFactory,
    _current_run_and_activity,
    _enqueue,
    _log_io,
    _log_metric,
    _log_model_version,
    _training_activity,
    section,
)
from provml.capture._activity import (
    current_activity_var as _current_activity_var,
)
from provml.capture._export import Exporter
from provml.capture._mlflow import mlflow_autolog
from provml.capture._provider import flush, init, run, shutdown, stats
from provml.capture._state import Stats
from provml.capture._values import DataReference

__all__ = [
    "Activity",
    "DataReference",
    "Exporter",
    "Run",
    "Stage",
    "StageFactory",
    "Stats",
    "activity",
    "context",
    "current_activity",
    "data_transformation",
    "evaluation",
    "flush",
    "generated",
    "inference",
    "init",
    "log_input",
    "log_metric",
    "log_model_version",
    "log_output",
    "log_param",
    "log_params",
    "mlflow_autolog",
    "run",
    "section",
    "shutdown",
    "stats",
    "testing",
    "training",
    "used",
    "validation",
]

data_transformation = StageFactory(
    "DataTransformation",
    """Record a curation or learning-data preparation step (``DataTransformationExecution``).

    Data it generates is recorded as derived from the data it used, so lineage walks
    from curated files back to raw ones across workflows.""",
)
training = StageFactory(
    "Training", "Record a training stage (``TrainingExecution``); see :class:`StageFactory`."
)
validation = StageFactory(
    "Validation",
    "Record a validation stage (``ValidationExecution``); a returned dict of numbers "
    "is recorded as metric values.",
)
evaluation = StageFactory(
    "Evaluation",
    "Record an evaluation stage (``EvaluationExecution``); a returned dict of numbers "
    "is recorded as metric values.",
)
inference = StageFactory(
    "Inference", "Record an inference stage (``InferenceExecution``); see :class:`StageFactory`."
)
activity = StageFactory(
    None,
    """Record any activity; ``stage="LearningStage"`` (any PROV-ML stage class) types it.

    Without ``stage`` it is a plain ``prov:Activity`` with a ``prov:Plan``.""",
)


def used(
    value: _Any = None,
    name: str | None = None,
    *,
    ml_class: str | None = None,
    data_store: str | None = None,
    reference: str | None = None,
) -> None:
    """Record that the current activity used ``value``.

    Files and directories (a ``str`` counts as a path here), numpy arrays, pandas frames
    and bytes become data entities identified by a digest of their content (taken on the
    exporter thread); numbers and short strings inside containers become hyperparameter
    values. Data that lives elsewhere is named by ``reference`` inside ``data_store``
    (or pass a :class:`DataReference`).

    Args:
        value: the thing used.
        name: its role in the activity (e.g. the argument name).
        ml_class: the PROV-ML class to give data (``"DomainData"``, ``"FeatureSetData"``).
        data_store: the data store holding ``reference``.
        reference: the data's address inside ``data_store``.
    """
    _log_io(None, "used", value, name, _options(ml_class, data_store, reference))


def generated(
    value: _Any = None,
    name: str | None = None,
    *,
    ml_class: str | None = None,
    data_store: str | None = None,
    reference: str | None = None,
) -> None:
    """Record that the current activity generated ``value``; arguments as for :func:`used`."""
    _log_io(None, "generated", value, name, _options(ml_class, data_store, reference))


#: DESIGN.md's names for :func:`used` and :func:`generated`.
log_input = used
log_output = generated


def _options(
    ml_class: str | None, data_store: str | None, reference: str | None
) -> dict[str, _Any]:
    options: dict[str, _Any] = {}
    if ml_class is not None:
        options["ml_class"] = ml_class
    if reference is not None:
        options["reference"] = reference
        options["data_store"] = data_store
    return options


def log_param(name: str, value: _Any) -> None:
    """Record a hyperparameter value (``LearningHyperparameterValue``) used by the current
    activity (or by the run outside any stage)."""
    run_, activity_ = _current_run_and_activity()
    if run_ is not None:
        _enqueue(("param", run_, activity_, name, value, _time.time_ns()))


def log_params(params: dict[str, _Any]) -> None:
    """:func:`log_param` for each item."""
    for name, value in params.items():
        log_param(name, value)


def log_metric(name: str, value: float, step: int | None = None) -> None:
    """Record a metric value (``MetricValue``) generated by the current activity.

    Inside ``provml.section(..., step=n)`` the step defaults to the section's.
    """
    run_, activity_ = _current_run_and_activity()
    if run_ is not None:
        _log_metric(run_, activity_, name, value, step)


def log_model_version(
    model_name: str,
    version: int | None = None,
    *,
    model: _Any = None,
    derived_from: tuple[_Any, ...] | list[_Any] = (),
) -> str | None:
    """Record a model version generated by the current training activity.

    The ``ModelVersion`` entity (``<base>model/<name>/v/<version>``) is a
    ``specializationOf`` the ``Model``, generated by the enclosing non-section activity,
    and derived from every dataset that activity used (plus ``derived_from``).

    Args:
        model_name: the model's name.
        version: its version number; None gives a unique id instead of a number.
        model: the model object: a PyTorch module's parameter count and an estimator's
            ``get_params()`` are recorded.
        derived_from: further data (paths, arrays, IRIs) the version derives from.

    Returns:
        The version's IRI, or None when capture is off.
    """
    run_, activity_ = _current_run_and_activity()
    if run_ is None:
        return None
    return _log_model_version(
        run_,
        _training_activity(activity_),
        model_name,
        version,
        {"model": model, "derived_from": derived_from},
    )


def current_activity() -> Activity | None:
    """The activity the calling code runs in (None outside any stage or before init)."""
    return _current_activity_var.get()
