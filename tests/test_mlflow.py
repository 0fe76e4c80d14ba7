"""MLflow both ways: ``provml import mlflow`` and the live ``mlflow_autolog`` integration.

A real MLflow tracking store (SQLite database, file artifact root) is populated once per
module by the real ``mlflow`` client: two training runs with params, stepped metrics, a
``mlflow.log_input`` pandas dataset and a scikit-learn model registered as versions 1
and 2 of one model; a failed run; a parent run with a nested one. MLflow's tracking URI
is set only through ``MonkeyPatch`` (never for the whole process).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")
pd = pytest.importorskip("pandas")
linear_model = pytest.importorskip("sklearn.linear_model")

from mlflow import MlflowClient  # noqa: E402

from provml import capture, lineage, shacl  # noqa: E402
from provml.cli import main  # noqa: E402
from provml.errors import NotFound  # noqa: E402
from provml.mlflow_import import (  # noqa: E402
    dataset_iri,
    import_mlflow,
    model_iri,
    model_version_iri,
    run_activity_iri,
)
from provml.prov_io import bundles_to_dataset  # noqa: E402
from provml.store import open_record_store  # noqa: E402
from provml.vocab import PROVML  # noqa: E402

COMMIT = "3f1c2a9e0b7d4c6e8f5a1b2c3d4e5f6a7b8c9d0e"
MODEL = "salt-detector"


def attr(node, name):
    return [v for k, v in node.attributes if k == PROVML + name]


def tiles(scale: float) -> pd.DataFrame:
    return pd.DataFrame(
        {"amplitude": [0.1 * scale, 0.4 * scale, 0.8 * scale, 0.9 * scale], "salt": [0, 0, 1, 1]}
    )


def train_run(name: str, data: pd.DataFrame, source: Path, lr: float, depth: int) -> str:
    with mlflow.start_run(
        run_name=name, tags={"mlflow.source.git.commit": COMMIT, "team": "geo"}
    ) as run:
        mlflow.log_params({"lr": lr, "max_depth": depth})
        for step in range(4):
            mlflow.log_metric("loss", 1.0 / (step + 1) * lr, step=step)
        dataset = mlflow.data.from_pandas(data, source=str(source), name="tiles", targets="salt")
        mlflow.log_input(dataset, context="training")
        model = linear_model.LogisticRegression(max_iter=depth * 10).fit(
            data[["amplitude"]], data["salt"]
        )
        mlflow.sklearn.log_model(
            model, name="model", registered_model_name=MODEL, pip_requirements=["scikit-learn"]
        )
        return run.info.run_id


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """The populated MLflow store: its URI and the ids of what was logged."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        client = MlflowClient(uri)
        experiment = client.create_experiment(
            "salt-detection", artifact_location=(root / "artifacts").as_uri()
        )
        mp.setenv("MLFLOW_EXPERIMENT_ID", experiment)
        ids = {
            "v1": train_run("train-v1", tiles(1.0), root / "tiles-v1.parquet", 0.1, 2),
            "v2": train_run("train-v2", tiles(2.0), root / "tiles-v2.parquet", 0.05, 3),
        }
        try:
            with mlflow.start_run(run_name="diverged"):
                ids["failed"] = mlflow.active_run().info.run_id
                mlflow.log_param("lr", 10.0)
                raise FloatingPointError("loss is NaN")
        except FloatingPointError:
            pass
        with mlflow.start_run(run_name="sweep") as parent:
            ids["parent"] = parent.info.run_id
            with mlflow.start_run(run_name="trial-0", nested=True) as child:
                ids["child"] = child.info.run_id
                mlflow.log_param("lr", 0.2)
    ids["uri"] = uri
    ids["root"] = root
    ids["experiment"] = experiment
    ids["digest_v2"] = mlflow.data.from_pandas(tiles(2.0), name="tiles", targets="salt").digest
    ids["digest_v1"] = mlflow.data.from_pandas(tiles(1.0), name="tiles", targets="salt").digest
    return ids


@pytest.fixture(scope="module")
def imported(tracking, tmp_path_factory):
    """A provml store with the MLflow store imported once, and the import's counts."""
    store = open_record_store(str(tmp_path_factory.mktemp("provml")))
    result = import_mlflow(store, tracking["uri"])
    yield store, result
    store.close()


@pytest.fixture
def store(imported):
    return imported[0]


# ------------------------------------------------------------------------- import


def test_the_lineage_of_version_2_names_its_run_params_and_input_dataset(tracking, store):
    graph = lineage.upstream(store, model_version_iri(MODEL, 2))
    run = graph.nodes[run_activity_iri(tracking["v2"])]
    assert run.ml_class == "TrainingExecution"
    assert attr(run, "mlflowRunId") == [tracking["v2"]]
    params = {
        attr(n, "name")[0]: attr(n, "hyperparameterValue")[0]
        for n in graph.nodes.values()
        if n.ml_class == "LearningHyperparameterValue"
    }
    assert params == {"lr": "0.05", "max_depth": "3"}
    data = [n for n in graph.nodes.values() if n.ml_class == "FeatureSetData"]
    assert [n.id for n in data] == [dataset_iri("tiles", tracking["digest_v2"])]
    assert attr(data[0], "contentDigest") == [f"mlflow:{tracking['digest_v2']}"]


def test_version_2_does_not_reach_the_data_version_1_was_trained_on(tracking, store):
    graph = lineage.upstream(store, model_version_iri(MODEL, 2))
    assert dataset_iri("tiles", tracking["digest_v1"]) not in graph.nodes


def test_the_lineage_of_version_2_reaches_the_file_its_dataset_came_from(tracking, store):
    graph = lineage.upstream(store, model_version_iri(MODEL, 2))
    files = [attr(n, "dataReference") for n in graph.nodes.values() if n.ml_class == "DomainData"]
    assert files == [[str(tracking["root"] / "tiles-v2.parquet")]]


def test_a_model_version_is_a_specialization_of_the_registered_model_generated_by_its_run(
    tracking, store
):
    graph = lineage.upstream(store, model_version_iri(MODEL, 1), depth=1)
    version = model_version_iri(MODEL, 1)
    edges = {(e.kind, e.object) for e in graph.edges if e.subject == version and e.role is None}
    assert ("specializationOf", model_iri(MODEL)) in edges
    assert ("wasGeneratedBy", run_activity_iri(tracking["v1"])) in edges
    assert attr(graph.nodes[version], "versionNumber") == [1]


def test_metric_histories_are_recorded_point_by_point_with_their_steps(tracking, store):
    graph = lineage.downstream(store, run_activity_iri(tracking["v1"]), depth=1)
    steps = sorted(
        attr(n, "step")[0]
        for n in graph.nodes.values()
        if n.ml_class == "MetricValue" and attr(n, "name") == ["loss"]
    )
    assert steps == [0, 1, 2, 3]


def test_a_failed_run_is_recorded_as_failed(tracking, store):
    run = store.get_node(run_activity_iri(tracking["failed"]))
    assert attr(run, "status") == ["failed"]
    assert run.end_time is not None


def test_a_finished_run_is_recorded_as_completed_with_its_times(tracking, store):
    run = store.get_node(run_activity_iri(tracking["v1"]))
    assert attr(run, "status") == ["completed"]
    assert run.start_time <= run.end_time


def test_the_source_git_commit_is_the_code_version_of_the_runs_software_agent(tracking, store):
    graph = lineage.upstream(store, run_activity_iri(tracking["v1"]), depth=1)
    agents = [n for n in graph.nodes.values() if n.kind == "agent" and attr(n, "codeVersion")]
    assert [attr(a, "codeVersion") for a in agents] == [[COMMIT]]


def test_user_tags_become_attributes_of_the_run(tracking, store):
    run = store.get_node(run_activity_iri(tracking["v1"]))
    assert ("https://w3id.org/provml/mlflow-tag#team", "geo") in run.attributes


def test_the_experiment_is_the_learning_experiment_plan_of_its_runs(tracking, store):
    graph = lineage.upstream(store, run_activity_iri(tracking["v1"]), depth=1)
    plans = [n.label for n in graph.nodes.values() if n.ml_class == "LearningExperiment"]
    assert plans == ["salt-detection"]


def test_a_nested_run_is_informed_by_its_parent_workflow_execution(tracking, store):
    graph = lineage.upstream(store, run_activity_iri(tracking["child"]), depth=1)
    parent = graph.nodes[run_activity_iri(tracking["parent"])]
    assert parent.ml_class == "WorkflowExecution"
    assert any(e.kind == "wasInformedBy" for e in graph.edges)


def test_the_first_import_counts_every_run_and_version_as_new(imported):
    result = imported[1]
    assert (result.runs, result.new_runs, result.known_runs) == (5, 5, 0)
    assert (result.model_versions, result.new_model_versions) == (2, 2)


def test_a_second_import_stores_nothing_new(tracking, store):
    before = store.checksum()
    result = import_mlflow(store, tracking["uri"], experiments=["salt-detection"])
    assert (result.new_runs, result.known_runs, result.inserted) == (0, 5, 0)
    assert store.checksum() == before


def test_imported_runs_satisfy_the_prov_ml_shapes(tracking, store):
    bundles = [store.get_bundle(b.id) for b in store.list_bundles()]
    report = shacl.validate(bundles_to_dataset(bundles))
    assert report.conforms, report.text


def test_runs_logged_after_an_import_are_the_only_new_ones_on_the_next(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'later.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv(
        "MLFLOW_EXPERIMENT_ID",
        MlflowClient(uri).create_experiment("later", (tmp_path / "artifacts").as_uri()),
    )
    with mlflow.start_run(run_name="first"):
        mlflow.log_param("lr", 0.1)
    store = open_record_store(str(tmp_path / "provml"))
    try:
        assert import_mlflow(store, uri).new_runs == 1
        with mlflow.start_run(run_name="second"):
            mlflow.log_param("lr", 0.2)
        again = import_mlflow(store, uri)
    finally:
        store.close()
    assert (again.runs, again.new_runs, again.known_runs) == (2, 1, 1)


def test_a_named_experiment_that_does_not_exist_is_an_error_listing_the_known_ones(tracking, store):
    with pytest.raises(NotFound, match="salt-detection"):
        import_mlflow(store, tracking["uri"], experiments=["no-such-experiment"])


def test_a_missing_sqlite_database_is_an_error_and_is_not_created(tmp_path, store):
    missing = tmp_path / "nothing.db"
    with pytest.raises(NotFound, match="no MLflow database"):
        import_mlflow(store, f"sqlite:///{missing}")
    assert not missing.exists()


def test_provml_import_mlflow_says_how_many_runs_were_new(tracking, tmp_path, capsys):
    argv = ["import", "mlflow", "--tracking-uri", tracking["uri"], "--store", str(tmp_path)]
    argv += ["--experiment", "salt-detection"]
    assert main(argv) == 0
    assert "5 runs in 1 experiment(s): 5 new" in capsys.readouterr().out
    assert main(argv) == 0
    assert "0 new, 0 updated (were running), 5 already imported" in capsys.readouterr().out


def test_mlflow_options_without_the_mlflow_source_are_refused(tracking, tmp_path, capsys):
    argv = ["import", "doc.json", "--tracking-uri", tracking["uri"], "--store", str(tmp_path)]
    assert main(argv) == 1
    assert "provml import mlflow" in capsys.readouterr().err


# --------------------------------------------------------------------------- live


@pytest.fixture
def live(tracking, monkeypatch):
    """Capture into memory with the MLflow integration on, in a fresh experiment."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking["uri"])
    client = MlflowClient(tracking["uri"])
    name = f"live-{len(client.search_experiments())}"
    experiment = client.create_experiment(
        name, artifact_location=(tracking["root"] / name).as_uri()
    )
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment)
    with capture.testing.capture("live") as exported:
        assert capture.mlflow_autolog()
        try:
            yield exported
        finally:
            capture.mlflow_autolog(disable=True)


def test_an_mlflow_run_started_inside_a_provml_training_records_its_run_id(live):
    @capture.training
    def train():
        with mlflow.start_run() as run:
            return run.info.run_id

    run_id = train()
    (execution,) = live.elements(ml_class="TrainingExecution")
    assert attr(execution, "mlflowRunId") == [run_id]


def test_an_mlflow_run_outside_provml_becomes_a_training_execution_with_its_run_id(live):
    with mlflow.start_run(run_name="fit") as run:
        pass
    (execution,) = live.elements(ml_class="TrainingExecution")
    assert execution.label == "fit"
    assert attr(execution, "mlflowRunId") == [run.info.run_id]
    assert attr(execution, "status") == ["completed"]


def test_params_and_metrics_logged_to_mlflow_are_mirrored_with_their_steps(live):
    with mlflow.start_run():
        mlflow.log_params({"lr": 0.1})
        mlflow.log_metric("loss", 0.5, step=3)
    (param,) = live.elements(ml_class="LearningHyperparameterValue")
    assert attr(param, "name") == ["lr"]
    (metric,) = live.elements(ml_class="MetricValue")
    assert (attr(metric, "metricValue"), attr(metric, "step")) == ([0.5], [3])


def test_a_dataset_logged_to_mlflow_is_the_entity_the_import_gives_it(live):
    data = tiles(3.0)
    dataset = mlflow.data.from_pandas(data, name="tiles", targets="salt")
    with mlflow.start_run():
        mlflow.log_input(dataset, context="training")
    (entity,) = live.elements(ml_class="FeatureSetData")
    assert entity.id == dataset_iri("tiles", dataset.digest)


def test_a_model_version_mlflow_registers_is_generated_by_the_linked_execution(live):
    data = tiles(1.0)
    model = linear_model.LogisticRegression().fit(data[["amplitude"]], data["salt"])
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name="live-model", pip_requirements=["sklearn"]
        )
    version = model_version_iri("live-model", int(info.registered_model_version))
    (execution,) = live.elements(ml_class="TrainingExecution")
    assert live.relations("wasGeneratedBy", subject=version, object=execution.id)
    assert live.relations("specializationOf", subject=version, object=model_iri("live-model"))


def test_a_failed_mlflow_run_fails_its_execution_and_the_error_reaches_the_user(live):
    with pytest.raises(ZeroDivisionError), mlflow.start_run():
        1 / 0  # noqa: B018
    (execution,) = live.elements(ml_class="TrainingExecution")
    assert attr(execution, "status") == ["failed"]
    assert attr(execution, "errorType") == ["ZeroDivisionError"]


def test_mlflow_works_unchanged_when_the_integration_is_on_but_capture_is_off(tracking, live):
    capture.shutdown()
    with mlflow.start_run() as run:
        mlflow.log_metric("loss", 0.1)
    assert MlflowClient(tracking["uri"]).get_run(run.info.run_id).info.status == "FINISHED"


def test_capture_does_not_import_mlflow_until_the_integration_is_enabled():
    probe = (
        "import sys\n"
        "from provml.capture import testing, training\n"
        "with testing.capture('probe'):\n"
        "    with training('fit'):\n"
        "        pass\n"
        "print('mlflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------- a tracking server


@pytest.fixture(scope="module")
def tracking_server(tracking):
    """``mlflow server`` on the populated store (its own process group, stopped after)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exe = Path(sys.executable).with_name("mlflow")
    command = [exe, "server", "--backend-store-uri", tracking["uri"], "--host", "127.0.0.1"]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("mlflow server did not start")
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_importing_through_a_tracking_server_finds_the_runs_imported_from_its_database(
    tracking_server, store
):
    result = import_mlflow(store, tracking_server, experiments=["salt-detection"])
    assert (result.runs, result.new_runs, result.known_runs) == (5, 0, 5)
    assert (result.model_versions, result.new_model_versions) == (2, 0)


FRESH_MLFLOW_AFTER_INIT = """
    import sys
    import mlflow
    import provml

    provml.init(workflow="salt-detection", store=sys.argv[1])
    provml.capture.mlflow_autolog()
    mlflow.set_tracking_uri(sys.argv[2])  # a database MLflow creates only now
    with mlflow.start_run(run_name="fit"):
        mlflow.log_param("lr", 0.01)
        for step in range(3):
            mlflow.log_metric("loss", 1 / (step + 1), step=step)
    assert provml.flush(60), provml.capture.stats()
"""


def test_mlflow_may_create_its_database_after_provml_init_on_the_embedded_store(tmp_path):
    # Both create SQLite schemas with Alembic, whose context is process-global: the job
    # must not migrate provml's store while MLflow migrates its own. It never opens it.
    store = f"sqlite:///{tmp_path / 'provml' / 'provml.sqlite'}"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(FRESH_MLFLOW_AFTER_INIT),
            store,
            f"sqlite:///{tmp_path / 'mlflow.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with open_record_store(store) as records:
        (fit,) = records.find_nodes(ml_class="TrainingExecution")
        assert fit.label == "fit"
        assert any(k.endswith("#mlflowRunId") for k, _ in fit.attributes)
