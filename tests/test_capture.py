"""The capture client in one process, recording into the in-memory exporter.

What a decorated call records (PROV-ML classes, relations, digests, hyperparameters,
metrics, model versions), that user code behaves exactly as undecorated, and that
capture never raises into it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import provml.capture as capture
from provml import ids
from provml.capture import _state
from provml.capture.testing import InMemoryExporter
from provml.capture.testing import capture as capturing
from provml.errors import ConfigurationError
from provml.records import Element, Ref, bundle_from_dict, bundle_to_dict, check_bundle
from provml.vocab import PROV, PROV_LOCATION, PROV_ROLE, PROV_TYPE, ml


@pytest.fixture
def exported():
    with capturing("test-workflow") as exporter:
        yield exporter
    assert _state.provider is None


@pytest.fixture(autouse=True)
def no_capture_left_behind():
    yield
    capture.shutdown(timeout=5)


def attr(element: Element, name: str) -> list:
    return [v for k, v in element.attributes if k == ml(name)]


def one(elements: list[Element]) -> Element:
    assert len(elements) == 1, elements
    return elements[0]


def execution(exporter: InMemoryExporter, ml_class: str, label: str | None = None) -> Element:
    return one(
        [e for e in exporter.elements(ml_class=ml_class) if label is None or e.label == label]
    )


def used_entities(exporter: InMemoryExporter, activity: str) -> list[Element]:
    iris = {r.object for r in exporter.relations("used", subject=activity)}
    return [e for e in exporter.elements() if e.id in iris]


def generated_entities(exporter: InMemoryExporter, activity: str) -> list[Element]:
    iris = {r.subject for r in exporter.relations("wasGeneratedBy", object=activity)}
    return [e for e in exporter.elements() if e.id in iris]


def hyperparameters(exporter: InMemoryExporter, activity: str) -> dict[str, str]:
    return {
        attr(e, "name")[0]: attr(e, "hyperparameterValue")[0]
        for e in used_entities(exporter, activity)
        if e.ml_class == "LearningHyperparameterValue"
    }


# ------------------------------------------------------------------ before init


def test_decorators_are_pass_throughs_before_init():
    calls = []

    @capture.training
    def train(x: int) -> int:
        calls.append(x)
        return x * 2

    assert _state.provider is None
    assert train(21) == 42
    with capture.evaluation("check") as run:
        run.log_metric("acc", 0.9)
        assert run.iri is None
    capture.log_param("lr", 0.1)
    capture.log_metric("loss", 0.5)
    assert capture.log_model_version("m", 1) is None
    assert calls == [21]
    assert capture.stats().captured == 0
    assert capture.flush() is True


@capture.training
def fit_defined_at_import(epochs: int) -> int:
    return epochs


def test_functions_decorated_at_import_are_captured_once_init_has_run():
    assert fit_defined_at_import(1) == 1
    exporter = InMemoryExporter()
    capture.init("late", exporter=exporter)
    assert fit_defined_at_import(2) == 2
    capture.shutdown()
    (act,) = exporter.elements(ml_class="TrainingExecution")
    assert act.label == "fit_defined_at_import"
    assert hyperparameters(exporter, act.id) == {"epochs": "2"}


def test_a_decorated_function_keeps_its_name_signature_and_docstring():
    def fit(tiles: Path, epochs: int = 3, *, lr: float = 0.1) -> str:
        """Fit."""
        return "ok"

    decorated = capture.training(name="fit")(fit)
    assert decorated.__name__ == "fit"
    assert decorated.__doc__ == "Fit."
    assert inspect.signature(decorated) == inspect.signature(fit)
    assert decorated.__wrapped__ is fit


# ---------------------------------------------------------- executions, errors


@pytest.mark.parametrize(
    ("factory", "plan_class"),
    [
        (capture.data_transformation, "DataTransformation"),
        (capture.training, "Training"),
        (capture.validation, "Validation"),
        (capture.evaluation, "Evaluation"),
        (capture.inference, "Inference"),
    ],
)
def test_each_stage_records_its_execution_with_plan_status_times_and_agents(
    exported, factory, plan_class
):
    @factory
    def step() -> None:
        return None

    step()
    act = execution(exported, plan_class + "Execution")
    assert attr(act, "status") == ["completed"]
    assert act.start_time is not None and act.end_time is not None
    assert act.start_time <= act.end_time
    (assoc,) = [r for r in exported.relations("wasAssociatedWith", subject=act.id) if r.extras]
    plan = exported.element(dict(assoc.extras)["plan"])
    assert Ref(PROV + "Plan") in plan.types and Ref(ml(plan_class)) in plan.types
    software = exported.element(assoc.object)
    assert Ref(PROV + "SoftwareAgent") in software.types
    assert attr(software, "pythonVersion") and attr(software, "host")
    persons = [
        exported.element(r.object)
        for r in exported.relations("wasAssociatedWith", subject=act.id)
        if not r.extras
    ]
    assert one(persons).ml_class == "Persona"


def test_a_failing_function_raises_the_same_exception_object_and_is_recorded_failed(exported):
    error = ValueError("tile 7 is empty")

    @capture.data_transformation
    def curate() -> None:
        raise error

    with pytest.raises(ValueError) as caught:
        curate()
    assert caught.value is error
    act = execution(exported, "DataTransformationExecution")
    assert attr(act, "status") == ["failed"]
    assert attr(act, "errorType") == ["ValueError"]
    assert attr(act, "errorMessage") == ["tile 7 is empty"]


def test_a_failing_with_block_reraises_unchanged_and_records_failed(exported):
    class TileError(Exception):
        pass

    error = TileError("bad")
    with pytest.raises(TileError) as caught, capture.training("fit"):
        raise error
    assert caught.value is error
    act = execution(exported, "TrainingExecution")
    assert attr(act, "status") == ["failed"]
    assert attr(act, "errorType") == [f"{__name__}.{TileError.__qualname__}"]


def test_nested_stages_are_informed_by_their_parent_and_top_level_ones_by_the_workflow():
    with capturing("nesting") as exported:
        run = capture.context.current_run()

        @capture.validation
        def validate() -> None:
            return None

        @capture.training
        def train() -> None:
            validate()

        train()
    outer = execution(exported, "TrainingExecution")
    inner = execution(exported, "ValidationExecution")
    assert exported.relations("wasInformedBy", subject=inner.id, object=outer.id)
    assert exported.relations("wasInformedBy", subject=outer.id, object=run.iri)
    workflow = execution(exported, "WorkflowExecution")
    assert workflow.id == run.iri
    assert attr(workflow, "status") == ["completed"]
    assert exported.bundle_ids() == [run.bundle]


def test_with_provml_run_opens_a_bundle_of_its_own(exported):
    default = capture.context.current_run()
    with capture.run("retrain") as second, capture.training("fit"):
        pass
    assert second.bundle != default.bundle
    act = execution(exported, "TrainingExecution")
    assert exported.relations("wasInformedBy", subject=act.id, object=second.iri)
    assert [b.id for b in exported.bundles if any(r == act for r in b.records)] == [second.bundle]
    assert attr(exported.element(second.iri), "status") == ["completed"]


# ------------------------------------------------- generators, async, blocks


def test_a_decorated_generator_records_one_activity_over_its_iteration(exported):
    @capture.data_transformation
    def tiles(n: int):
        yield from range(n)

    seen = []
    for tile in tiles(3):
        seen.append(tile)
        with capture.inference("consumer-work"):
            assert capture.current_activity().name == "consumer-work"
    assert seen == [0, 1, 2]
    gen_act = execution(exported, "DataTransformationExecution")
    assert attr(gen_act, "status") == ["completed"]
    run_iri = capture.context.current_run().iri
    # The consumer's own stages are not nested in the generator.
    for consumer in exported.elements(ml_class="InferenceExecution"):
        assert exported.relations("wasInformedBy", subject=consumer.id, object=run_iri)
    assert len(exported.elements(ml_class="InferenceExecution")) == 3


def test_a_generator_passes_sent_values_and_failures_through(exported):
    error = KeyError("x")

    @capture.activity
    def echo():
        received = yield "ready"
        yield received * 2
        raise error

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send(21) == 42
    with pytest.raises(KeyError) as caught:
        next(gen)
    assert caught.value is error
    (act,) = [e for e in exported.elements(kind="activity") if e.label == "echo"]
    assert attr(act, "status") == ["failed"]


def test_a_generator_closed_early_is_recorded_completed(exported):
    @capture.data_transformation
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    gen = endless()
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    gen.close()
    assert attr(execution(exported, "DataTransformationExecution"), "status") == ["completed"]


def test_async_functions_and_async_with_blocks_are_recorded(exported):
    error = RuntimeError("gpu lost")

    @capture.training
    async def train(epochs: int) -> int:
        await asyncio.sleep(0)
        async with capture.validation("val"):
            await asyncio.sleep(0)
        return epochs

    @capture.evaluation
    async def evaluate() -> None:
        raise error

    async def main():
        assert await train(4) == 4
        with pytest.raises(RuntimeError) as caught:
            await evaluate()
        assert caught.value is error

    asyncio.run(main())
    train_act = execution(exported, "TrainingExecution")
    val_act = execution(exported, "ValidationExecution")
    assert exported.relations("wasInformedBy", subject=val_act.id, object=train_act.id)
    assert hyperparameters(exported, train_act.id) == {"epochs": "4"}
    assert attr(execution(exported, "EvaluationExecution"), "status") == ["failed"]


def test_async_generators_are_recorded_over_their_iteration(exported):
    @capture.inference
    async def predict(batches: int):
        for i in range(batches):
            await asyncio.sleep(0)
            yield i

    async def main():
        return [i async for i in predict(3)]

    assert asyncio.run(main()) == [0, 1, 2]
    act = execution(exported, "InferenceExecution")
    assert attr(act, "status") == ["completed"]


# ----------------------------------------------------- parameters and metrics


def test_arguments_are_bound_to_names_and_scalars_become_hyperparameters(exported):
    @capture.training
    def train(epochs, lr=0.01, *, optimizer="adam", layers=(64, 32), verbose=False):
        return None

    train(10, optimizer="sgd")
    act = execution(exported, "TrainingExecution")
    assert hyperparameters(exported, act.id) == {
        "epochs": "10",
        "lr": "0.01",
        "optimizer": "sgd",
        "layers": "[64, 32]",
        "verbose": "false",
    }
    types = {attr(e, "name")[0]: attr(e, "valueType")[0] for e in used_entities(exported, act.id)}
    assert types == {
        "epochs": "int",
        "lr": "float",
        "optimizer": "str",
        "layers": "tuple",
        "verbose": "bool",
    }


def test_ignored_and_self_arguments_are_not_recorded(exported):
    class Trainer:
        @capture.training(ignore=["secret"])
        def fit(self, epochs: int, secret: str = "token") -> None:
            return None

    Trainer().fit(2)
    act = execution(exported, "TrainingExecution")
    assert hyperparameters(exported, act.id) == {"epochs": "2"}


def test_log_param_and_log_metric_attach_to_the_current_stage(exported):
    with capture.training("fit") as fit:
        capture.log_param("batch_size", 32)
        capture.log_params({"momentum": 0.9})
        capture.log_metric("loss", 0.25, step=7)
    assert hyperparameters(exported, fit.iri) == {"batch_size": "32", "momentum": "0.9"}
    (metric,) = generated_entities(exported, fit.iri)
    assert metric.ml_class == "MetricValue"
    assert attr(metric, "name") == ["loss"]
    assert attr(metric, "metricValue") == [0.25]
    assert attr(metric, "step") == [7]


def test_epochs_are_sections_whose_metrics_default_to_the_section_step(exported):
    @capture.training
    def train(epochs: int) -> None:
        for epoch in range(epochs):
            with capture.section("epoch", step=epoch):
                capture.log_metric("loss", 1.0 / (epoch + 1))

    train(3)
    fit = execution(exported, "TrainingExecution")
    sections = exported.elements(ml_class="LearningStageSectionExecution")
    assert sorted(attr(s, "step")[0] for s in sections) == [0, 1, 2]
    for section in sections:
        assert exported.relations("wasInformedBy", subject=section.id, object=fit.id)
        (metric,) = generated_entities(exported, section.id)
        assert attr(metric, "step") == attr(section, "step")
        assert attr(metric, "metricValue") == [1.0 / (attr(section, "step")[0] + 1)]


def test_a_returned_dict_of_numbers_from_evaluation_becomes_metric_values(exported):
    @capture.evaluation
    def evaluate() -> dict[str, float]:
        return {"accuracy": 0.93, "f1": 0.88}

    assert evaluate() == {"accuracy": 0.93, "f1": 0.88}
    act = execution(exported, "EvaluationExecution")
    values = {
        attr(m, "name")[0]: attr(m, "metricValue")[0] for m in generated_entities(exported, act.id)
    }
    assert values == {"accuracy": 0.93, "f1": 0.88}


def test_a_metric_that_is_not_a_number_is_skipped_with_one_log_line(exported, caplog):
    with caplog.at_level(logging.WARNING, logger="provml.capture"), capture.training("fit") as fit:
        capture.log_metric("loss", "not-a-number")
        capture.log_metric("loss", "still-not")
        capture.log_metric("loss", 0.5)
    assert [attr(m, "metricValue") for m in generated_entities(exported, fit.iri)] == [[0.5]]
    assert len([r for r in caplog.records if "not a number" in r.getMessage()]) == 1


# --------------------------------------------------------------------- data


def test_a_file_is_identified_by_its_content_so_copies_are_one_entity(exported, tmp_path):
    a, b = tmp_path / "cube-a.npy", tmp_path / "copy" / "cube-b.npy"
    b.parent.mkdir()
    a.write_bytes(b"amplitudes" * 1000)
    b.write_bytes(b"amplitudes" * 1000)

    @capture.data_transformation(inputs=["raw"])
    def curate(raw: str) -> None:
        return None

    curate(str(a))
    curate(raw=str(b))
    expected = ids.data_iri(ids.digest_file(a)[0])
    entities = [e for e in exported.elements() if e.ml_class == "DomainData"]
    assert [e.id for e in entities] == [expected]
    assert attr(entities[0], "contentDigest") == [ids.digest_file(a)[0]]
    assert attr(entities[0], "sizeBytes") == [10_000]
    locations = {
        dict(r.attributes)[PROV_LOCATION] for r in exported.relations("used", object=expected)
    }
    assert locations == {str(a), str(b)}


def test_declared_outputs_are_generated_and_derive_from_the_inputs(exported, tmp_path):
    raw, tiles = tmp_path / "raw.bin", tmp_path / "tiles.bin"
    raw.write_bytes(b"raw volume")

    @capture.data_transformation(inputs=["source"], outputs=["target"])
    def curate(source: Path, target: Path) -> None:
        target.write_bytes(source.read_bytes().upper())

    curate(raw, tiles)
    act = execution(exported, "DataTransformationExecution")
    raw_iri = ids.data_iri(ids.digest_file(raw)[0])
    tiles_iri = ids.data_iri(ids.digest_file(tiles)[0])
    assert [e.id for e in used_entities(exported, act.id)] == [raw_iri]
    assert [e.id for e in generated_entities(exported, act.id)] == [tiles_iri]
    (derivation,) = exported.relations("wasDerivedFrom", subject=tiles_iri)
    assert derivation.object == raw_iri and dict(derivation.extras)["activity"] == act.id
    roles = {dict(r.attributes)[PROV_ROLE] for r in exported.relations(subject=act.id, kind="used")}
    assert roles == {"source"}


def test_directories_bytes_and_references_become_data_entities(exported, tmp_path):
    (tmp_path / "survey").mkdir()
    (tmp_path / "survey" / "a.segy").write_bytes(b"a")
    with capture.data_transformation("load") as load:
        capture.used(tmp_path / "survey")
        capture.used(b"header bytes", "header")
        capture.used(reference="cubes/2019/A.segy", data_store="lustre:/proj/seismic")
        capture.used(capture.DataReference("s3://bucket", "region-7.parquet"))
        capture.used(tmp_path / "not-there.bin")
    iris = {e.id for e in used_entities(exported, load.iri)}
    assert iris == {
        ids.data_iri(ids.digest_directory(tmp_path / "survey")[0]),
        ids.data_iri(ids.digest_bytes(b"header bytes")),
        ids.reference_iri("lustre:/proj/seismic", "cubes/2019/A.segy"),
        ids.reference_iri("s3://bucket", "region-7.parquet"),
        ids.reference_iri(
            f"file://{__import__('socket').gethostname()}", str(tmp_path / "not-there.bin")
        ),
    }
    ref = exported.element(ids.reference_iri("lustre:/proj/seismic", "cubes/2019/A.segy"))
    assert attr(ref, "dataStore") == ["lustre:/proj/seismic"]
    assert attr(ref, "dataReference") == ["cubes/2019/A.segy"]


def test_numpy_arrays_are_feature_set_data_identified_by_their_bytes(exported):
    import numpy as np

    features = np.arange(12, dtype=np.float32).reshape(3, 4)

    @capture.training
    def train(x, y, alpha) -> None:
        return None

    train(features, features[:, 1], np.float64(0.5))  # a strided (non-contiguous) column too
    act = execution(exported, "TrainingExecution")
    data = {e.id: e for e in used_entities(exported, act.id) if e.ml_class == "FeatureSetData"}
    assert set(data) == {
        ids.data_iri(ids.digest_bytes(features.tobytes())),
        ids.data_iri(ids.digest_bytes(features[:, 1].tobytes())),
    }
    assert hyperparameters(exported, act.id) == {"alpha": "0.5"}


def test_pandas_frames_are_identified_by_content_regardless_of_object(exported):
    import pandas as pd

    frame = pd.DataFrame({"amplitude": [0.1, 0.2], "salt": [0, 1]})
    with capture.data_transformation("prep") as prep:
        capture.used(frame)
        capture.used(frame.copy())
        capture.generated(frame[["amplitude"]])
    (used,) = used_entities(exported, prep.iri)
    (made,) = generated_entities(exported, prep.iri)
    assert used.ml_class == made.ml_class == "FeatureSetData"
    assert used.id != made.id
    assert used.label == "DataFrame[2x2]"


def test_sklearn_estimator_settings_are_recorded_as_hyperparameters(exported):
    from sklearn import linear_model

    @capture.training
    def fit(model, epochs: int = 1):
        return model

    fit(linear_model.LogisticRegression(C=0.5, max_iter=50))
    act = execution(exported, "TrainingExecution")
    params = hyperparameters(exported, act.id)
    assert params["C"] == "0.5" and params["max_iter"] == "50" and params["epochs"] == "1"


def test_a_pytorch_style_module_is_recorded_with_its_parameter_count(exported):
    class Tensor:
        def __init__(self, n: int) -> None:
            self.n = n

        def numel(self) -> int:
            return self.n

    class Module:  # the duck-typed shape of torch.nn.Module that capture relies on
        def parameters(self):
            return iter([Tensor(100), Tensor(28)])

        def state_dict(self):
            return {}

    with capture.training("fit") as fit:
        capture.used(Module(), "net")
        version = capture.log_model_version("unet", 2, model=Module())
    (algorithm,) = [e for e in used_entities(exported, fit.iri) if e.ml_class == "Algorithm"]
    assert attr(algorithm, "parameterCount") == [128]
    assert attr(exported.element(version), "parameterCount") == [128]


def test_an_unserialisable_argument_is_recorded_by_type_name_and_the_job_goes_on(exported):
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

        __str__ = __repr__

        def __len__(self) -> int:
            raise RuntimeError("no len")

    lock = threading.Lock()

    @capture.training
    def train(handle, lock, epochs: int = 2) -> str:
        return "trained"

    assert train(Hostile(), lock) == "trained"
    act = execution(exported, "TrainingExecution")
    types = {attr(e, "name")[0]: attr(e, "valueType")[0] for e in used_entities(exported, act.id)}
    assert types["handle"].endswith("Hostile")
    assert types["lock"] == "_thread.lock"
    assert types["epochs"] == "int"


# -------------------------------------------------------------- model versions


def test_a_model_version_specialises_its_model_and_derives_from_the_training_data(
    exported, tmp_path
):
    tiles = tmp_path / "tiles.bin"
    tiles.write_bytes(b"tile data")

    @capture.training(inputs=["data"])
    def train(data: str, epochs: int = 2) -> None:
        for epoch in range(epochs):
            with capture.section("epoch", step=epoch):
                if epoch == epochs - 1:
                    capture.log_model_version("salt-detector", 7)

    train(str(tiles))
    fit = execution(exported, "TrainingExecution")
    version_iri = ids.iri("model", "salt-detector", "v", 7)
    version = exported.element(version_iri)
    assert version.ml_class == "ModelVersion"
    assert attr(version, "versionNumber") == [7]
    assert exported.relations(
        "specializationOf", subject=version_iri, object=ids.iri("model", "salt-detector")
    )
    assert exported.element(ids.iri("model", "salt-detector")).ml_class == "Model"
    # Generated by the training execution, not by the epoch section it was logged in.
    assert [r.object for r in exported.relations("wasGeneratedBy", subject=version_iri)] == [fit.id]
    derived = exported.relations("wasDerivedFrom", subject=version_iri)
    assert [r.object for r in derived] == [ids.data_iri(ids.digest_file(tiles)[0])]


def test_a_model_version_without_a_number_gets_a_unique_iri(exported):
    with capture.training("fit"):
        first = capture.log_model_version("m")
        second = capture.log_model_version("m")
    assert first != second
    assert first.startswith(ids.iri("model", "m", "v") + "/")


# ----------------------------------------------------------- context, threads


def test_wrap_carries_the_current_activity_into_worker_threads(exported):
    @capture.inference
    def predict(i: int) -> int:
        return i * i

    with capture.inference("batch") as batch, ThreadPoolExecutor(4) as pool:
        results = list(pool.map(capture.context.wrap(predict), range(8)))
    assert results == [i * i for i in range(8)]
    children = [e for e in exported.elements(ml_class="InferenceExecution") if e.id != batch.iri]
    assert len(children) == 8
    for child in children:
        assert exported.relations("wasInformedBy", subject=child.id, object=batch.iri)


def test_child_env_names_the_bundle_and_the_current_activity(exported):
    with capture.training("fit") as fit:
        env = capture.context.child_env({"PATH": "/bin"})
    run = capture.context.current_run()
    assert env == {"PATH": "/bin", "PROVML_PARENT": f"{run.bundle}|{fit.iri}"}


# --------------------------------------------------------- never raise, init


def test_an_internal_failure_is_logged_once_and_the_user_function_still_runs(
    exported, caplog, monkeypatch
):
    def broken(*args):
        raise OSError("queue exploded")

    monkeypatch.setattr(_state.provider.exporter, "put", broken)

    @capture.training
    def train(x: int) -> int:
        return x + 1

    with caplog.at_level(logging.WARNING, logger="provml.capture"):
        assert [train(i) for i in range(3)] == [1, 2, 3]
        with capture.training("block") as block:
            block.log_metric("loss", 1.0)
    messages = [r.getMessage() for r in caplog.records if "queue exploded" in r.getMessage()]
    assert len(messages) == 1


@pytest.mark.parametrize(
    ("options", "fix"),
    [
        ({"store": "sqlite:///x.sqlite", "endpoint": "http://h:1"}, "give one destination"),
        ({"endpoint": "ftp://host/x"}, "base URL"),
        ({"store": "http://h:8000"}, "endpoint="),
        ({"store": "mongodb://h/db"}, "unknown scheme"),
        ({"queue_size": 0}, "positive whole number"),
        ({"schedule_delay": -1}, "positive number of seconds"),
        ({"exporter": object()}, "export(bundles)"),
        ({"base_iri": "not an iri"}, "absolute IRI"),
    ],
)
def test_init_refuses_misconfiguration_saying_what_to_fix(options, fix):
    with pytest.raises(ConfigurationError, match=None) as caught:
        capture.init("w", **options)
    assert fix in str(caught.value)
    assert _state.provider is None


def test_init_refuses_a_malformed_parent_variable(monkeypatch):
    monkeypatch.setenv("PROVML_PARENT", "not-a-pair")
    with pytest.raises(ConfigurationError, match="PROVML_PARENT"):
        capture.init("w", exporter=InMemoryExporter())


def test_init_twice_ends_the_first_run_and_starts_another():
    first_exporter, second_exporter = InMemoryExporter(), InMemoryExporter()
    first = capture.init("one", exporter=first_exporter)
    second = capture.init("two", exporter=second_exporter)
    assert first.bundle != second.bundle
    assert attr(first_exporter.element(first.iri), "status") == ["completed"]
    capture.shutdown()
    assert second_exporter.element(second.iri).label == "two"


# ----------------------------------------------------------------- counters


def test_stats_count_captured_and_exported_records(exported):
    with capture.training("fit"):
        capture.log_metric("loss", 0.1)
    assert capture.flush() is True
    s = capture.stats()
    assert s.captured == s.exported == len(exported.records) > 0
    assert s.spooled == s.replayed == s.dropped_total == 0


def test_a_full_queue_drops_calls_counts_them_and_logs_the_reason_once(caplog):
    exporter = InMemoryExporter()
    # Three places: the run's start, then two metrics.
    capture.init("w", exporter=exporter, queue_size=3, schedule_delay=3600, batch_size=10_000)
    with caplog.at_level(logging.WARNING, logger="provml.capture"):
        for i in range(5):
            capture.log_metric("loss", float(i))
    assert capture.stats().dropped == {"queue full": 3}
    assert len([r for r in caplog.records if "queue full" in r.getMessage()]) == 1
    capture.flush()
    assert len(exporter.elements(ml_class="MetricValue")) == 2


def test_every_exported_bundle_is_valid_and_survives_the_wire_form(exported, tmp_path):
    (tmp_path / "f").write_bytes(b"x")

    @capture.training(inputs=["path"])
    def train(path: str, lr: float = 0.1) -> None:
        with capture.section("epoch", step=0):
            capture.log_metric("loss", 0.3)
        capture.log_model_version("m", 1)

    train(str(tmp_path / "f"))
    capture.flush()
    for bundle in exported.bundles:
        check_bundle(bundle)
        assert bundle_from_dict(bundle_to_dict(bundle)) == bundle


def test_the_public_names_are_exactly_all():
    public = {n for n in vars(capture) if not n.startswith("_")} - {"annotations"}
    assert public == set(capture.__all__)


def test_prov_type_values_are_iris_of_the_provml_namespace(exported):
    with capture.training("fit"):
        capture.log_param("lr", 0.1)
    for element in exported.elements():
        for value in element.types:
            assert isinstance(value, Ref)
    assert all(
        v.iri.startswith(("http://www.w3.org/ns/prov#", "https://w3id.org/provml/ns#"))
        for e in exported.elements()
        for k, v in e.attributes
        if k == PROV_TYPE
    )


def test_a_captured_workflow_conforms_to_the_prov_ml_shapes(exported, tmp_path):
    from provml import shacl
    from provml.prov_io import bundles_to_dataset

    (tmp_path / "raw").write_bytes(b"raw traces")

    @capture.data_transformation(inputs=["raw"], outputs=["tiles"])
    def curate(raw: Path, tiles: Path) -> None:
        tiles.write_bytes(raw.read_bytes() * 2)

    @capture.training(inputs=["tiles"])
    def train(tiles: Path, epochs: int = 2, layers: tuple = (8, 4)) -> None:
        for epoch in range(epochs):
            with capture.section("epoch", step=epoch):
                capture.log_metric("loss", 0.5 / (epoch + 1))
        capture.log_model_version("salt-detector", 1)

    @capture.evaluation
    def evaluate() -> dict[str, float]:
        return {"accuracy": 0.9}

    curate(tmp_path / "raw", tmp_path / "tiles")
    train(tmp_path / "tiles")
    evaluate()
    with capture.inference("predict"):
        capture.used(capture.DataReference("s3://surveys", "block-7.segy"))
        capture.generated(b"predictions")
    with pytest.raises(ValueError), capture.validation("check"):
        raise ValueError("no validation data")
    capture.shutdown()
    report = shacl.validate(bundles_to_dataset(exported.bundles))
    assert report.conforms, report.text
