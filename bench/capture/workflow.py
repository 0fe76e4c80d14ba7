"""The capture benchmark's reference workflow, with one variant per provenance tracker.

A salt-detection study a geoscientist would recognise, built on :mod:`provml.demo.science`:
curation of acquired seismic-like volumes into tiles (quality filter on dead traces),
learning-data preparation (normalisation, train/validation split), training of a
logistic-regression salt detector epoch by epoch (per-epoch loss and accuracy), a second
model version fine-tuned from the first, evaluation on held-out surveys, and batch
inference over new surveys.

The workflow is written once (:func:`pipeline`) against a small :class:`Tracker` adapter;
each variant is the adapter a user of that tool would write, doing what the tool's
documentation shows: provml decorators, sections and ``log_*`` calls; MLflow nested runs
with ``log_params``/``log_metrics`` and ``mlflow.sklearn.log_model``; Flowcept's
``@flowcept_task`` inside a ``Flowcept`` workflow in offline mode; yProv4ML's
``start_run``/``log_param``/``log_metric``/``log_artifact``/``end_run``. Every variant
logs the same parameters, per-epoch metrics, evaluation scores, inference summaries and
two model versions; what else each tool records by itself is listed in RESULTS.md.

Run one variant as a whole process (the way :mod:`bench.capture.run` does)::

    python bench/capture/workflow.py generate --raw /tmp/raw --surveys 240
    python bench/capture/workflow.py run provml --raw /tmp/raw --work /tmp/w1

The ``run`` command prints one JSON line: the variant, the seconds the workflow took
inside the process (tracker start and final flush included) and the tracker's counters.

Imports: numpy, scikit-learn and provml.demo.science at module level; each tracker is
imported only by its own variant, so the undecorated variant loads none of them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from provml.demo import science

WORKFLOW = "seismic-salt-detection"
MODEL = "salt-detector"
#: Every seventh acquired survey has too many dead traces and is dropped by curation.
DEAD_EVERY = 7
HOLDOUT = 4  # labelled surveys kept for evaluation
TARGETS = 40  # new surveys batch inference runs on


# ------------------------------------------------------------------ the raw data


def surveys(count: int, first_seed: int, prefix: str) -> list[science.Survey]:
    """``count`` synthetic surveys with distinct seeds; some have many dead traces."""
    return [
        science.Survey(
            f"{prefix}-{i:04d}",
            f"Santos Basin, block S-{i % 17 + 1}",
            2010 + i % 15,
            seed=first_seed + i,
            dead_trace_fraction=0.35 if prefix == "SRV" and i % DEAD_EVERY == 3 else 0.01,
        )
        for i in range(count)
    ]


def generate(raw: Path, count: int) -> None:
    """Write the acquired volumes every variant reads: training, holdout and target surveys."""
    for group, (n, seed) in {
        "SRV": (count, 1000),
        "HLD": (HOLDOUT, 50_000),
        "TGT": (TARGETS, 60_000),
    }.items():
        for survey in surveys(n, seed, group):
            science.write_raw(survey, raw)


def _volumes(raw: Path, prefix: str) -> list[str]:
    paths = (p for p in raw.glob(f"{prefix}-*.npy") if not p.name.endswith(".salt-mask.npy"))
    return sorted(map(str, paths))


# ----------------------------------------------------------------- the trackers


class Tracker:
    """The undecorated workflow: every hook does nothing.

    ``stage(kind, name)`` decorates a stage function (kind is the PROV-ML stage class:
    DataTransformation, Training, Evaluation, Inference); ``task(name, fn)`` decorates a
    fine-grained function called many times (an epoch, one volume's prediction);
    ``epoch(step)`` wraps one epoch. ``context`` names the stage for trackers that file
    values under one (yProv4ML).
    """

    name = "undecorated"

    def start(self, params: dict[str, Any]) -> None:
        pass

    def stage(self, kind: str, name: str) -> Callable[[Callable], Callable]:
        return _identity

    def task(self, name: str, fn: Callable) -> Callable:
        return fn

    def epoch(self, step: int) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def params(self, values: dict[str, Any], context: str) -> None:
        pass

    def metrics(self, values: dict[str, float], step: int, context: str) -> None:
        pass

    def used(self, path: Path, name: str, ml_class: str, context: str) -> None:
        pass

    def generated(self, path: Path, name: str, ml_class: str, context: str) -> None:
        pass

    def model_version(self, version: int, model: Any, path: Path, context: str) -> None:
        pass

    def finish(self) -> dict[str, Any]:
        return {}


def _identity(fn: Callable) -> Callable:
    return fn


class Provml(Tracker):
    """provml capture: stage decorators, epoch sections, ``log_*``, digests of the files.

    ``memory=True`` exports to :class:`provml.capture.testing.InMemoryExporter` instead
    of the embedded store, isolating the capture hot path and record building from storage.
    ``references=True`` names files by path (a ``DataReference`` in the ``file:`` data
    store of this host) instead of by a digest of their content: the cost of content
    identity, which no peer offers, shows as the difference.
    """

    def __init__(self, memory: bool = False, references: bool = False, cold: bool = False) -> None:
        import socket

        if cold:  # no digests remembered from earlier jobs: every input file is hashed
            os.environ["PROVML_DIGEST_CACHE"] = "off"
        import provml

        self.provml = provml
        self.memory = memory
        self.references = references
        self.data_store = f"file://{socket.gethostname()}"
        self.name = (
            "provml-memory"
            if memory
            else "provml-ref"
            if references
            else "provml-cold"
            if cold
            else "provml"
        )
        self.factories = {
            "DataTransformation": provml.data_transformation,
            "Training": provml.training,
            "Evaluation": provml.evaluation,
            "Inference": provml.inference,
        }

    def start(self, params: dict[str, Any]) -> None:
        if self.memory:
            from provml.capture.testing import InMemoryExporter

            self.provml.init(workflow=WORKFLOW, exporter=InMemoryExporter())
        else:  # the zero-configuration default: the embedded store under ./.provml
            self.provml.init(workflow=WORKFLOW)
        self.provml.log_params(params)

    def stage(self, kind: str, name: str) -> Callable[[Callable], Callable]:
        # Inputs and parameters are logged explicitly below, as the demo workflows do.
        return self.factories[kind](name, capture_args=False, capture_return=False)

    def task(self, name: str, fn: Callable) -> Callable:
        if name == "epoch":  # epochs are sections, opened by epoch()
            return fn
        return self.provml.inference(name, capture_args=False, capture_return=False)(fn)

    def epoch(self, step: int) -> contextlib.AbstractContextManager[Any]:
        return self.provml.section("epoch", step=step)

    def params(self, values: dict[str, Any], context: str) -> None:
        self.provml.log_params(values)

    def metrics(self, values: dict[str, float], step: int, context: str) -> None:
        for name, value in values.items():
            self.provml.log_metric(name, value, step=step)

    def used(self, path: Path, name: str, ml_class: str, context: str) -> None:
        if self.references:
            self.provml.used(
                None, name, ml_class=ml_class, data_store=self.data_store, reference=str(path)
            )
        else:
            self.provml.used(path, name, ml_class=ml_class)

    def generated(self, path: Path, name: str, ml_class: str, context: str) -> None:
        if self.references:
            self.provml.generated(
                None, name, ml_class=ml_class, data_store=self.data_store, reference=str(path)
            )
        else:
            self.provml.generated(path, name, ml_class=ml_class)

    def model_version(self, version: int, model: Any, path: Path, context: str) -> None:
        self.generated(path, f"{MODEL}-v{version}-weights", "DomainData", context)
        self.provml.log_model_version(MODEL, version, model=model)

    def finish(self) -> dict[str, Any]:
        self.provml.flush()
        stats = self.provml.stats()
        return {
            "records": stats.exported,
            "captured": stats.captured,
            "dropped": stats.dropped_total,
        }


class MLflow(Tracker):
    """MLflow tracking: a run, a nested run per stage, params, metrics with steps, models.

    The tracking store is SQLite (``sqlite:///mlflow.db``): MLflow 3 deprecates the
    ``file:`` store (and its model registry needs a database). Models are logged with
    ``mlflow.sklearn.log_model`` and registered, one registry version per model version;
    ``pip_requirements`` is given so that MLflow skips inferring them (which would run a
    subprocess and cost seconds more).
    """

    name = "mlflow"

    def __init__(self) -> None:
        import mlflow
        import mlflow.sklearn

        self.mlflow = mlflow

    def start(self, params: dict[str, Any]) -> None:
        self.mlflow.set_tracking_uri(f"sqlite:///{Path.cwd() / 'mlflow.db'}")
        self.mlflow.set_experiment(WORKFLOW)
        self.mlflow.start_run(run_name=WORKFLOW)
        self.mlflow.log_params(params)

    def stage(self, kind: str, name: str) -> Callable[[Callable], Callable]:
        mlflow = self.mlflow

        def decorate(fn: Callable) -> Callable:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with mlflow.start_run(run_name=name, nested=True):
                    mlflow.set_tag("stage", kind)
                    return fn(*args, **kwargs)

            return wrapper

        return decorate

    def params(self, values: dict[str, Any], context: str) -> None:
        self.mlflow.log_params(values)

    def metrics(self, values: dict[str, float], step: int, context: str) -> None:
        self.mlflow.log_metrics(values, step=step)

    def model_version(self, version: int, model: Any, path: Path, context: str) -> None:
        self.mlflow.sklearn.log_model(
            model,
            name=MODEL,
            registered_model_name=MODEL,
            pip_requirements=["scikit-learn", "numpy"],
        )

    def finish(self) -> dict[str, Any]:
        self.mlflow.end_run()
        return {}


class Flowcept(Tracker):
    """Flowcept offline: ``@flowcept_task`` on each stage, epoch and per-volume function.

    Offline means no message queue and no database: Flowcept buffers task messages in
    memory and dumps them to ``flowcept_buffer.jsonl`` when the workflow stops (its
    default settings, with no settings file). Arguments and return values of each task
    are its record, so parameters and metrics reach it through them.
    """

    name = "flowcept"

    def __init__(self) -> None:
        from flowcept import Flowcept as Controller
        from flowcept import flowcept_task

        self.controller_class = Controller
        self.flowcept_task = flowcept_task
        self.controller: Any = None

    def start(self, params: dict[str, Any]) -> None:
        self.controller = self.controller_class(workflow_name=WORKFLOW, workflow_args=params)
        self.controller.start()

    def stage(self, kind: str, name: str) -> Callable[[Callable], Callable]:
        return lambda fn: self.flowcept_task(fn, tags=[kind])

    def task(self, name: str, fn: Callable) -> Callable:
        return self.flowcept_task(fn)

    def finish(self) -> dict[str, Any]:
        self.controller.stop()
        lines = Path("flowcept_buffer.jsonl")
        return {"records": sum(1 for _ in lines.open()) if lines.exists() else 0}


class YProv4ML(Tracker):
    """yProv4ML: one run, params and metrics filed under a context per stage, artifacts.

    Inputs and outputs are logged with ``log_artifact`` (inputs without copying them;
    model files are copied into the provenance directory, as its ``log_model`` does).
    ``end_run`` writes the PROV-JSON document (no graph or SVG rendering).
    """

    name = "yprov4ml"

    def __init__(self) -> None:
        import yprov4ml

        self.y = yprov4ml

    def start(self, params: dict[str, Any]) -> None:
        self.y.start_run(
            experiment_name=WORKFLOW,
            prov_user_namespace="https://example.org/",
            provenance_save_dir="prov",
            save_after_n_logs=100,
        )
        self.params(params, "workflow")

    def params(self, values: dict[str, Any], context: str) -> None:
        for name, value in values.items():
            self.y.log_param(name, value, context=context)

    def metrics(self, values: dict[str, float], step: int, context: str) -> None:
        for name, value in values.items():
            self.y.log_metric(name, value, context=context, step=step)

    def used(self, path: Path, name: str, ml_class: str, context: str) -> None:
        self.y.log_artifact(
            name, str(path), context=context, is_input=True, log_copy_in_prov_directory=False
        )

    def generated(self, path: Path, name: str, ml_class: str, context: str) -> None:
        self.y.log_artifact(name, str(path), context=context, log_copy_in_prov_directory=False)

    def model_version(self, version: int, model: Any, path: Path, context: str) -> None:
        self.y.log_artifact(f"{MODEL}-v{version}", str(path), context=context, is_model=True)

    def finish(self) -> dict[str, Any]:
        self.y.end_run(create_graph=False, create_svg=False)
        return {}


class Metered(Tracker):
    """Wraps a tracker and adds up the time the workflow's own thread spends in it.

    Hooks are timed around the call. A decorated function is timed twice, outside the
    tracker's wrapper and inside it, and the difference is the wrapper's cost; hooks
    called inside the function are timed on their own, so nothing counts twice. Together
    with the CPU time of the process's other threads (the tracker's exporters and
    flushers) this attributes overhead to the tracker directly, instead of reading it
    off the difference of two noisy workflow timings.
    """

    def __init__(self, inner: Tracker) -> None:
        self.inner = inner
        self.name = inner.name
        self.seconds = 0.0  # the workflow thread's wall time inside the tracker

    def _timed(self, method: Callable[..., Any], *args: Any) -> Any:
        began = time.perf_counter()
        try:
            return method(*args)
        finally:
            self.seconds += time.perf_counter() - began

    def _wrap(self, decorate: Callable[[Callable], Callable], fn: Callable) -> Callable:
        inside = [0.0]

        def timed_inner(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                inside[0] += time.perf_counter() - began

        timed_inner.__name__ = fn.__name__
        timed_inner.__qualname__ = fn.__qualname__
        decorated = self._timed(decorate, timed_inner)

        def timed_outer(*args: Any, **kwargs: Any) -> Any:
            inside[0] = 0.0
            began = time.perf_counter()
            try:
                return decorated(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - began - inside[0]

        return timed_outer

    def start(self, params: dict[str, Any]) -> None:
        self._timed(self.inner.start, params)

    def stage(self, kind: str, name: str) -> Callable[[Callable], Callable]:
        decorate = self._timed(self.inner.stage, kind, name)
        return lambda fn: self._wrap(decorate, fn)

    def task(self, name: str, fn: Callable) -> Callable:
        return self._wrap(lambda f: self.inner.task(name, f), fn)

    @contextlib.contextmanager
    def epoch(self, step: int) -> Iterator[None]:
        manager = self._timed(self.inner.epoch, step)
        self._timed(manager.__enter__)
        try:
            yield
        finally:
            self._timed(manager.__exit__, None, None, None)

    def params(self, values: dict[str, Any], context: str) -> None:
        self._timed(self.inner.params, values, context)

    def metrics(self, values: dict[str, float], step: int, context: str) -> None:
        self._timed(self.inner.metrics, values, step, context)

    def used(self, path: Path, name: str, ml_class: str, context: str) -> None:
        self._timed(self.inner.used, path, name, ml_class, context)

    def generated(self, path: Path, name: str, ml_class: str, context: str) -> None:
        self._timed(self.inner.generated, path, name, ml_class, context)

    def model_version(self, version: int, model: Any, path: Path, context: str) -> None:
        self._timed(self.inner.model_version, version, model, path, context)

    def finish(self) -> dict[str, Any]:
        return self._timed(self.inner.finish)


VARIANTS: dict[str, Callable[[], Tracker]] = {
    "undecorated": Tracker,
    "provml": Provml,
    "provml-memory": lambda: Provml(memory=True),
    "provml-ref": lambda: Provml(references=True),
    "provml-cold": lambda: Provml(cold=True),
    "mlflow": MLflow,
    "flowcept": Flowcept,
    "yprov4ml": YProv4ML,
}


# ------------------------------------------------------------------ the workflow


def pipeline(t: Tracker, raw: Path, work: Path, epochs: int) -> dict[str, Any]:
    """Curate, prepare, train two model versions, evaluate, run batch inference.

    Stage functions take and return paths as ``str``, as much scientific code does: a
    tracker that records arguments (Flowcept) then records the paths themselves.
    """
    work.mkdir(parents=True, exist_ok=True)

    @t.stage("DataTransformation", "quality filter and tiling")
    def curate(volumes: list[str], out: str, max_dead: float) -> str:
        paths = [Path(v) for v in volumes]
        for path in paths:
            t.used(path, path.stem, "DomainData", "curation")
        t.params(
            {"max_dead_trace_fraction": max_dead, "tile": "x".join(map(str, science.TILE))},
            "curation",
        )
        tiles, _ = science.curate(paths, Path(out), max_dead=max_dead)
        t.generated(tiles, "tiles", "DomainData", "curation")
        return str(tiles)

    @t.stage("DataTransformation", "normalise and split")
    def prepare(tiles: str, val_fraction: float, seed: int) -> tuple[str, str]:
        train, val = work / "train.npz", work / "val.npz"
        t.used(Path(tiles), "tiles", "DomainData", "preparation")
        t.params({"val_fraction": val_fraction, "split_seed": seed}, "preparation")
        science.prepare(tiles, train, val, val_fraction, seed)
        t.generated(train, "training-set", "FeatureSetData", "preparation")
        t.generated(val, "validation-set", "FeatureSetData", "preparation")
        return str(train), str(val)

    train_epoch = t.task("epoch", science.train_epoch)

    @t.stage("Training", "fit salt detector")
    def fit(train: str, val: str, version: int, learning_rate: float, base: str | None) -> str:
        context = f"training-v{version}"
        t.used(Path(train), "training-set", "FeatureSetData", context)
        t.used(Path(val), "validation-set", "FeatureSetData", context)
        t.params({"epochs": epochs, "learning_rate": learning_rate, "alpha": 1e-4}, context)
        if base is None:
            model = science.new_classifier(learning_rate, 1e-4, seed=version)
        else:  # fine-tune the previous version with a smaller step
            t.used(Path(base), "base-model-weights", "DomainData", context)
            model = science.load_model(Path(base))
            model.set_params(eta0=learning_rate)
        for epoch in range(epochs):
            with t.epoch(epoch):
                scores = train_epoch(model, train, val, seed=epoch)
                t.metrics(scores, epoch, context)
        path = science.save_model(model, work / f"model-v{version}.pkl")
        t.model_version(version, model, path, context)
        return str(path)

    @t.stage("Evaluation", "held-out surveys")
    def evaluate(model_file: str, holdout: list[str], scaling: str) -> dict[str, float]:
        t.used(Path(model_file), "model-weights", "DomainData", "evaluation")
        model = science.load_model(Path(model_file))
        per_volume = []
        for path in map(Path, holdout):
            t.used(path, path.stem, "DomainData", "evaluation")
            per_volume.append(science.evaluate(model, path, scaling))
        scores = {k: float(np.mean([s[k] for s in per_volume])) for k in per_volume[0]}
        t.metrics(scores, 0, "evaluation")
        return scores

    def predict_volume(model: Any, volume: str, scaling: str, out: str) -> dict[str, float]:
        path = Path(volume)
        t.used(path, path.stem, "DomainData", "inference")
        summary = science.predict(model, path, scaling, out)
        t.generated(Path(out), f"salt-probability-{path.stem}", "InferenceResult", "inference")
        return summary

    predict_one = t.task("predict volume", predict_volume)

    @t.stage("Inference", "batch inference")
    def infer(model_file: str, targets: list[str], scaling: str) -> float:
        t.used(Path(model_file), "model-weights", "DomainData", "inference")
        model = science.load_model(Path(model_file))
        fractions = []
        for step, volume in enumerate(targets):
            out = str(work / f"salt-{Path(volume).stem}.npy")
            summary = predict_one(model, volume, scaling, out)
            t.metrics({"salt_fraction": summary["salt_fraction"]}, step, "inference")
            fractions.append(summary["salt_fraction"])
        return float(np.mean(fractions))

    tiles = curate(_volumes(raw, "SRV"), str(work / "tiles.npz"), 0.1)
    train, val = prepare(tiles, 0.25, 7)
    v1 = fit(train, val, 1, 0.01, None)
    v2 = fit(train, val, 2, 0.003, v1)
    scores = evaluate(v2, _volumes(raw, "HLD"), train)
    salt = infer(v2, _volumes(raw, "TGT"), train)
    return {**scores, "mean_salt_fraction": salt}


def run(variant: str, raw: Path, work: Path, epochs: int) -> dict[str, Any]:
    """Run the workflow under ``variant`` in ``work`` (also the working directory)."""
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # every tracker's local files (stores, buffers, prov dirs) land here
    tracker = Metered(VARIANTS[variant]())
    began = time.perf_counter()
    cpu, main_cpu = time.process_time(), time.thread_time()
    tracker.start({"workflow": WORKFLOW, "epochs": epochs, "seed": 7})
    results = pipeline(tracker, raw, work / "data", epochs)
    counters = tracker.finish()
    seconds = time.perf_counter() - began
    # CPU of every thread but this one (exporters, flushers; numeric libraries' pools
    # are kept to one thread by run.py so they do not count here).
    background = (time.process_time() - cpu) - (time.thread_time() - main_cpu)
    return {
        "variant": variant,
        "workflow_s": seconds,
        "in_tracker_s": tracker.seconds,
        "background_cpu_s": background,
        "results": results,
        "tracker": counters,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python bench/capture/workflow.py")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write the raw volumes")
    gen.add_argument("--raw", type=Path, required=True)
    gen.add_argument("--surveys", type=int, default=240)
    one = sub.add_parser("run", help="run the workflow under one tracker")
    one.add_argument("variant", choices=sorted(VARIANTS))
    one.add_argument("--raw", type=Path, required=True)
    one.add_argument("--work", type=Path, required=True)
    one.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args(argv)
    if args.command == "generate":
        generate(args.raw, args.surveys)
        return
    outcome = run(args.variant, args.raw.absolute(), args.work.absolute(), args.epochs)
    sys.stdout.write(json.dumps(outcome) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
