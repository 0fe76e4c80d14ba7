"""The HTTP service in-process (FastAPI's TestClient) on an embedded SQLite store.

The story: two raw seismic files are curated into a feature set; model version 1 is
trained on it; a third raw file joins in a second curation, and version 2 is
fine-tuned from version 1 with other hyperparameters; each training logs a loss per
epoch; an inference run with version 2 fails on host node-7. Expected answers come
from that story or from the Python API on the same store, never from the service.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from provml import lineage, prov_io
from provml.api import Settings, create_app
from provml.api._schemas import LineageView
from provml.api._settings import DEFAULT_PROJECT_NICE
from provml.queries import EXAMPLE_BY_NAME
from provml.records import Bundle, Element, Literal, Ref, Relation, bundle_to_dict
from provml.store.sql import SQLStore
from provml.vocab import PROV_LABEL, PROV_TYPE, XSD, ml

EX = "https://provml.local/test/"
RAW = [EX + f"data/raw-{x}.segy" for x in "abc"]
MODEL, V1, V2 = EX + "model/unet", EX + "model/unet/v/1", EX + "model/unet/v/2"
FEATURES = [EX + "data/features-1", EX + "data/features-2"]
HOST_AGENT, FAILED_RUN = EX + "agent/node-7", EX + "run/inference-2"
EVALUATION, EVALUATION_RESULT = EX + "run/evaluation-2", EX + "eval/v2-accuracy"


def element(kind: str, iri: str, ml_class: str | None = None, *attributes: Any) -> Element:
    types = ((PROV_TYPE, Ref(ml(ml_class))),) if ml_class else ()
    label = iri.rsplit("/", 1)[-1]
    return Element(kind, iri, (*types, (PROV_LABEL, label), *attributes))


def day(n: int) -> datetime:
    return datetime(2026, 1, n, 9, 0, tzinfo=UTC)


def timed(activity: Element, start: datetime) -> Element:
    return replace(activity, start_time=start, end_time=start + timedelta(hours=2))


def curation(run: int, raws: list[str]) -> Bundle:
    """Curation ``run`` starts on day 2 * run - 1 (1, 3)."""
    act = EX + f"run/curation-{run}"
    return Bundle(
        EX + f"bundle/curation-{run}",
        (
            *(element("entity", raw, "DomainData") for raw in raws),
            timed(element("activity", act, "DataTransformationExecution"), day(2 * run - 1)),
            element("entity", FEATURES[run - 1], "FeatureSetData"),
            *(Relation("used", act, raw) for raw in raws),
            Relation("wasGeneratedBy", FEATURES[run - 1], act),
        ),
    )


def training(run: int, params: dict[str, str], losses: list[float], base: str | None) -> Bundle:
    """Training ``run`` starts on day 2 * run (2, 4)."""
    act, version = EX + f"run/training-{run}", EX + f"model/unet/v/{run}"
    training_activity = element(
        "activity", act, "TrainingExecution", (ml("codeVersion"), f"git:{run}abc")
    )
    records: list[Any] = [
        timed(training_activity, day(2 * run)),
        element("entity", version, "ModelVersion"),
        element("entity", MODEL, "Model"),
        Relation("used", act, FEATURES[run - 1]),
        Relation("wasGeneratedBy", version, act),
        Relation("specializationOf", version, MODEL),
    ]
    for name, value in params.items():
        param = EX + f"param/{run}/{name}"
        records += [
            element(
                "entity",
                param,
                "LearningHyperparameterValue",
                (ml("name"), name),
                (ml("hyperparameterValue"), value),
            ),
            Relation("used", act, param),
        ]
    for step, loss in enumerate(losses, 1):
        metric = EX + f"metric/{run}/loss/{step}"
        records += [
            element(
                "entity",
                metric,
                "MetricValue",
                (ml("name"), "loss"),
                (ml("metricValue"), Literal(repr(loss), XSD + "double")),
                (ml("step"), step),
            ),
            Relation("wasGeneratedBy", metric, act),
        ]
    if base is not None:
        records += [Relation("used", act, base), Relation("wasDerivedFrom", version, base)]
    return Bundle(EX + f"bundle/training-{run}", tuple(records))


def inference() -> Bundle:
    return Bundle(
        EX + "bundle/inference",
        (
            Element(
                "activity",
                FAILED_RUN,
                (
                    (PROV_TYPE, Ref(ml("InferenceExecution"))),
                    (ml("status"), "failed"),
                    (ml("host"), "node-7"),
                    (ml("errorMessage"), "CUDA out of memory"),
                ),
                start_time=datetime(2026, 1, 5, 12, 0, tzinfo=UTC),
            ),
            element("agent", HOST_AGENT, "Persona", (ml("host"), "node-7")),
            Relation("used", FAILED_RUN, V2),
            Relation("wasAssociatedWith", FAILED_RUN, HOST_AGENT),
            element("activity", EVALUATION, "EvaluationExecution"),
            element("entity", EVALUATION_RESULT, "ModelEvaluation"),
            Relation("used", EVALUATION, V2),
            Relation("wasGeneratedBy", EVALUATION_RESULT, EVALUATION),
        ),
    )


def the_story() -> list[Bundle]:
    return [
        curation(1, RAW[:2]),
        training(1, {"learning_rate": "0.001", "epochs": "2"}, [0.9, 0.5], None),
        curation(2, RAW),
        training(2, {"learning_rate": "0.0001", "epochs": "2"}, [0.4, 0.3], V1),
        inference(),
    ]


def batch(bundles: list[Bundle]) -> bytes:
    """A batch as the capture exporter sends it: gzip JSON."""
    return gzip.compress(json.dumps({"bundles": [bundle_to_dict(b) for b in bundles]}).encode())


GZIP_JSON = {"Content-Type": "application/json", "Content-Encoding": "gzip"}


@contextmanager
def serving(tmp_path: Path, **settings: Any) -> Iterator[TestClient]:
    app = create_app(Settings(store=str(tmp_path / "store"), **settings))
    with TestClient(app) as client:
        yield client


def caught_up(client: TestClient) -> None:
    """Wait until the service has projected what was ingested into the RDF store."""
    projector = client.app.state.services.projector
    projector.wake()
    assert projector.wait_idle(20)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One service holding the story, projected (module scope: tests only read it)."""
    with serving(tmp_path_factory.mktemp("api"), sparql_max_rows=100) as client:
        response = client.post("/api/v1/records", content=batch(the_story()), headers=GZIP_JSON)
        assert response.status_code == 200, response.text
        caught_up(client)
        yield client


@pytest.fixture
def store(client: TestClient) -> SQLStore:
    return client.app.state.services.sql


def ids(items: list[dict[str, Any]]) -> set[str]:
    return {item["id"] for item in items}


# ------------------------------------------------------------------ package surface


def test_the_public_surface_is_exactly_all():
    import provml.api

    public = {n for n in vars(provml.api) if not n.startswith("_")} - {"annotations"}
    assert public == set(provml.api.__all__) == {"Settings", "create_app", "app_from_env"}


def test_the_service_never_imports_the_capture_client():
    import subprocess
    import sys

    probe = "import sys, provml.api; print('provml.capture' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_dependency_of_a_route_runs_in_the_thread_pool():
    # FastAPI runs a plain ``def`` dependency in its thread pool: a hop to a worker
    # thread and back, per dependency and request, for work that never blocks. Every
    # route takes its dependencies from these aliases and lists.
    import inspect
    import typing

    from provml.api import _deps

    aliases = (_deps.ServicesDep, _deps.Sql, _deps.Rdf, _deps.MetricsDep)
    depends = [typing.get_args(alias)[1] for alias in aliases] + _deps.READ + _deps.WRITE
    calls = [d.dependency for d in depends]
    calls += [  # what those depend on in turn
        p.annotation and typing.get_args(p.annotation)[1].dependency
        for call in calls
        for p in inspect.signature(call, eval_str=True).parameters.values()
        if typing.get_origin(p.annotation) is typing.Annotated
    ]
    assert len(calls) == len(aliases) + 2 + 2  # get_sql and get_rdf need get_services
    assert [call.__name__ for call in calls if not inspect.iscoroutinefunction(call)] == []


def test_settings_come_from_the_environment_and_refuse_nonsense():
    from provml.errors import ConfigurationError

    env = {
        "PROVML_STORE": "sqlite:///x.sqlite",
        "PROVML_WRITE_TOKEN": "w",
        "PROVML_SPARQL_TIMEOUT": "2.5",
        "PROVML_SPARQL_ALLOW_SERVICE": "yes",
        "PROVML_CORS_ORIGINS": "https://a.example, https://b.example",
    }
    settings = Settings.from_env(env)
    assert settings.store == "sqlite:///x.sqlite" and settings.write_token == "w"
    assert settings.sparql_timeout == 2.5 and settings.allow_service is True
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.read_token is None and Settings.from_env({}).cors_origins == ()
    with pytest.raises(ConfigurationError, match="PROVML_SPARQL_MAX_ROWS"):
        Settings.from_env({"PROVML_SPARQL_MAX_ROWS": "lots"})
    with pytest.raises(ConfigurationError, match="PROVML_MAX_BODY_BYTES"):
        Settings.from_env({"PROVML_MAX_BODY_BYTES": "-5"})
    assert Settings.from_env({}).project_nice == DEFAULT_PROJECT_NICE == 19
    assert Settings.from_env({"PROVML_PROJECT_NICE": "0"}).project_nice == 0
    for bad in ("20", "-1", "low"):
        with pytest.raises(ConfigurationError, match="PROVML_PROJECT_NICE"):
            Settings.from_env({"PROVML_PROJECT_NICE": bad})


def test_the_projector_thread_runs_below_the_request_handlers(tmp_path):
    """Under a burst of ingests the cores go to storing batches; the projection follows.

    Linux keeps a nice value per thread: the projector's is raised, the process's not.
    """

    def niceness(client: TestClient) -> tuple[int, int]:
        caught_up(client)  # the projector's loop has started
        projector = client.app.state.services.projector._thread.native_id
        here = threading.get_native_id()
        return os.getpriority(os.PRIO_PROCESS, projector), os.getpriority(os.PRIO_PROCESS, here)

    with serving(tmp_path / "default") as client:
        projector, others = niceness(client)
        assert projector == min(19, others + DEFAULT_PROJECT_NICE)
    with serving(tmp_path / "equal", project_nice=0) as client:
        projector, others = niceness(client)
        assert projector == others


def test_readiness_counts_the_rdf_store_in_the_background_at_the_projectors_priority(
    tmp_path, monkeypatch
):
    # A count walks every quad: no request's work, and it must not take the cores from
    # the handlers, nor (at normal priority) from the projector catching up.
    import provml.rdf

    real, seen = provml.rdf.RDFStore.count, []

    def recording(self, graph=None):
        thread = threading.current_thread()
        seen.append((thread.name, os.getpriority(os.PRIO_PROCESS, thread.native_id)))
        return real(self, graph)

    monkeypatch.setattr(provml.rdf.RDFStore, "count", recording)
    with serving(tmp_path) as client:
        caught_up(client)
        assert counted_quads(client) is not None
    here = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    low = min(19, here + DEFAULT_PROJECT_NICE)
    assert ("provml-rdf-count", low) in seen
    assert set(seen) <= {("provml-rdf-count", low), ("provml-projector", low)}  # no handler


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_the_rdf_engines_own_threads_run_at_the_projectors_priority(tmp_path):
    """RocksDB compacts and flushes in threads it starts as the store opens, at the
    priority of the thread that opened it; they are a large share of a projection's work,
    so they yield to the request handlers as the projector does."""

    def engine_threads() -> dict[int, int]:
        found = {}
        for task in Path("/proc/self/task").iterdir():
            with contextlib.suppress(OSError):
                if (task / "comm").read_text().startswith("rocksdb:"):
                    found[int(task.name)] = os.getpriority(os.PRIO_PROCESS, int(task.name))
        return found

    here = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    with serving(tmp_path / "store") as client:
        client.app.state.services.sql.ingest(the_story())
        caught_up(client)
        niced = engine_threads()
    assert niced, "the RDF store's engine started no threads of its own"
    assert set(niced.values()) == {min(19, here + DEFAULT_PROJECT_NICE)}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == here


def test_readiness_does_not_walk_an_rdf_store_another_process_writes(tmp_path):
    # A process that does not own the RDF store reads only the snapshots the owner
    # publishes: the owner's live directory can lose a file to a compaction under a walk,
    # and pyoxigraph then spins (a benchmark's /readyz poll hung past 30 s so). Until the
    # first snapshot it has nothing to count, and SPARQL says the store is being built.
    from provml.rdf import RDFStore

    rdf_path = tmp_path / "oxigraph"
    # The owner, in this process, publishes when told to; the service opens it read-only.
    with (
        RDFStore.open(str(rdf_path)) as owner,
        serving(
            tmp_path, rdf_path=str(rdf_path), project_interval=0.1, sparql_timeout=0.5
        ) as client,
    ):
        assert not client.app.state.services.owns_rdf
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready"  # REST reads SQL
        assert ready["rdf"]["reads"] == "nothing yet" and ready["rdf"]["quads"] is None
        refused = client.get("/sparql", params={"query": "ASK { }"})
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "store_unavailable"
        assert "being built" in refused.json()["message"]
        owner.rebuild(client.app.state.services.sql)
        assert owner.publish_for_readers(0)
        deadline = time.monotonic() + 10
        while ready["rdf"]["reads"] != "published snapshot" and time.monotonic() < deadline:
            time.sleep(0.05)
            ready = client.get("/readyz").json()
        assert ready["rdf"]["reads"] == "published snapshot"
        assert counted_quads(client) == 0
        answer = client.get("/sparql", params={"query": "ASK { ?s ?p ?o }"})
        assert answer.json()["boolean"] is False  # the owner's store, empty
    with serving(tmp_path, rdf_path=str(rdf_path)) as client:  # now it owns the store
        assert counted_quads(client) == 0


def counted_quads(client: TestClient, seconds: float = 10) -> int | None:
    """``rdf.quads`` of ``/readyz`` once the count it starts in the background is done."""
    deadline = time.monotonic() + seconds
    while (quads := client.get("/readyz").json()["rdf"]["quads"]) is None:
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)
    return quads


def reads_a_copy_soon(reader: Any, seconds: float = 10) -> bool:
    """Whether a read-only RDF store takes up a snapshot the owner published in time."""
    deadline = time.monotonic() + seconds
    while not reader.reads_copy and time.monotonic() < deadline:
        reader.refresh()
        time.sleep(0.05)
    return reader.reads_copy


def test_the_owner_publishes_its_store_for_readers_as_it_starts_before_catching_up(
    tmp_path, monkeypatch
):
    # The owner published only once a catch-up was done: a reader had nothing to read
    # (or read the owner's live directory) for as long as the first one took, minutes
    # after a restart behind a bulk ingest.
    import provml.rdf
    from provml.rdf import RDFStore

    with serving(tmp_path) as service:
        stored = service.post("/api/v1/records", content=batch(the_story()), headers=GZIP_JSON)
        assert stored.status_code == 200, stored.text
        caught_up(service)
        location = service.app.state.services.location
    records = SQLStore(location.sql_url)
    records.ingest(
        [
            Bundle(EX + f"bundle/later/{i}", (element("entity", EX + f"later/{i}"),))
            for i in range(2)
        ]
    )  # left for the next owner to project
    records.close()
    real, release = provml.rdf.RDFStore._project_bundle, threading.Event()

    def held(self, *args):  # the catch-up stays at its first bundle until released
        release.wait(30)
        return real(self, *args)

    monkeypatch.setattr(provml.rdf.RDFStore, "_project_bundle", held)
    reader = RDFStore.open(location.rdf_path, read_only=True)  # a reader before the owner
    try:
        with serving(tmp_path) as service:
            assert reads_a_copy_soon(reader)  # while the catch-up is held
            assert set(reader.graphs()) == {b.id for b in the_story()}
            assert service.app.state.services.sql.outbox_backlog() == 2
            release.set()
            caught_up(service)
    finally:
        release.set()
        reader.close()


def test_the_owner_publishes_for_readers_once_an_interval_during_a_long_catch_up(
    tmp_path, monkeypatch
):
    # The owner published only once the outbox was empty: after a bulk ingest of 1M
    # records the readers served the snapshot from before it for the 85-110 s the
    # projection took.
    import provml.rdf
    from provml.rdf import RDFStore

    interval = 0.2
    with serving(tmp_path, project_interval=interval) as service:
        services = service.app.state.services
        published = Path(services.location.rdf_path + ".snapshots") / "PUBLISHED"

        def serial() -> int:  # how many snapshots the owner has taken
            return int(published.read_text().rsplit("-", 1)[1])

        reader = RDFStore.open(services.location.rdf_path, read_only=True)
        try:
            assert reads_a_copy_soon(reader)  # the owner's empty store
            real = provml.rdf.RDFStore._project_bundle

            def slow(self, *args):  # one pass of 30 bundles, 3 s: 15 intervals
                time.sleep(0.1)
                return real(self, *args)

            monkeypatch.setattr(provml.rdf.RDFStore, "_project_bundle", slow)
            bundles = [
                Bundle(EX + f"bundle/slow/{i}", (element("entity", EX + f"slow/{i}"),))
                for i in range(30)
            ]
            first = serial()
            began = time.monotonic()
            stored = service.post("/api/v1/records", content=batch(bundles), headers=GZIP_JSON)
            assert stored.status_code == 200, stored.text
            seen: set[int] = set()  # bundles in the snapshots read while the pass ran
            while services.sql.outbox_backlog() and time.monotonic() - began < 30:
                reader.refresh()
                seen.add(len(reader.graphs()))
                time.sleep(0.05)
            took = time.monotonic() - began
            taken = serial() - first
            caught_up(service)
            deadline = time.monotonic() + 10  # the last snapshot comes an interval later
            while len(reader.graphs()) < 30 and time.monotonic() < deadline:
                reader.refresh()
                time.sleep(0.05)
            assert len(reader.graphs()) == 30
        finally:
            reader.close()
    assert len(seen - {0, 30}) >= 3, seen  # progress, published in mid-pass
    assert taken <= took / interval + 2  # at most once an interval


def test_a_service_starts_a_sparql_worker_before_its_first_query(tmp_path):
    with serving(tmp_path) as client:
        rdf = client.app.state.services.rdf
        deadline = time.monotonic() + 30
        while not (rdf._workers and rdf._workers._idle) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rdf._workers is not None and len(rdf._workers._idle) == 1


# ------------------------------------------------------------------- health, metrics


def test_healthz_answers_ok(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_both_stores_and_the_schema_revision(client, store):
    body = client.get("/readyz").json()
    assert body["status"] == "ready"
    assert body["sql"]["revision"] == store.head_revision()
    assert body["rdf"]["owner"] is True and counted_quads(client) > 0
    assert body["rdf"]["rebuilding"] is False


def test_readiness_reports_a_rebuild_of_the_rdf_store_until_it_is_done(tmp_path, monkeypatch):
    import provml.rdf

    with serving(tmp_path) as service:
        stored = service.post("/api/v1/records", content=batch(the_story()), headers=GZIP_JSON)
        assert stored.status_code == 200, stored.text
        caught_up(service)
        rdf_path = service.app.state.services.location.rdf_path
    shutil.rmtree(rdf_path)  # the SQL records stay: the next start rebuilds from them
    # The projector rebuilds through RDFStore._rebuild (also what `rebuild` runs).
    real, release = provml.rdf.RDFStore._rebuild, threading.Event()

    def held(self, *args, **kwargs):
        assert release.wait(20)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(provml.rdf.RDFStore, "_rebuild", held)
    with serving(tmp_path) as service:
        during = service.get("/readyz")
        release.set()
        caught_up(service)
        after = service.get("/readyz").json()
        quads = counted_quads(service)
    assert during.status_code == 200  # REST reads SQL, which is complete
    assert during.json()["rdf"]["rebuilding"] is True
    assert after["rdf"]["rebuilding"] is False and quads > 0


def test_a_service_stops_promptly_while_its_rdf_store_is_being_rebuilt(tmp_path, monkeypatch):
    import provml.rdf

    with serving(tmp_path) as service:
        stored = service.post("/api/v1/records", content=batch(the_story()), headers=GZIP_JSON)
        assert stored.status_code == 200, stored.text
        rdf_path = service.app.state.services.location.rdf_path
    shutil.rmtree(rdf_path)
    real, rebuilding = provml.rdf.RDFStore._quads_of, threading.Event()

    def slow(self, bundle):  # 5 bundles, 10 s: a rebuild of minutes, as on a large store
        rebuilding.set()
        time.sleep(2)
        return real(self, bundle)

    monkeypatch.setattr(provml.rdf.RDFStore, "_quads_of", slow)
    with serving(tmp_path) as service:
        assert rebuilding.wait(20)
        assert service.get("/readyz").json()["rdf"]["rebuilding"] is True
        began = time.monotonic()
    assert time.monotonic() - began < 4  # it stops after the bundle at hand, not all 5
    monkeypatch.setattr(provml.rdf.RDFStore, "_quads_of", real)
    with serving(tmp_path) as service:  # the next start rebuilds it whole
        caught_up(service)
        ready = service.get("/readyz").json()["rdf"]
        quads = counted_quads(service)
    assert ready["rebuilding"] is False and quads > 0


def test_metrics_count_requests_ingested_records_and_query_latencies(client):
    client.get("/sparql", params={"query": "ASK { ?s ?p ?o }"})
    text = client.get("/metrics").text
    records = sum(len(b.records) for b in the_story())
    assert f'provml_ingest_records_total{{outcome="inserted"}} {records}' in text
    assert (
        'provml_http_requests_total{method="POST",route="/api/v1/records",status="200"} 1' in text
    )
    latencies = re.search(r"^provml_sparql_query_duration_seconds_count (\d+)$", text, re.M)
    assert latencies is not None and int(latencies.group(1)) >= 1
    assert 'provml_sparql_queries_total{outcome="ok"}' in text
    assert "provml_rdf_outbox_pending 0" in text
    assert "provml_rdf_unprojectable_bundles 0" in text


def test_openapi_documents_every_resource(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/v1/records", "/api/v1/documents", "/api/v1/lineage", "/sparql", "/readyz"):
        assert path in paths


# ------------------------------------------------------------------------------ ingest


def test_a_replayed_batch_stores_nothing_new(tmp_path):
    with serving(tmp_path) as client:
        first = client.post("/api/v1/records", content=batch(the_story()), headers=GZIP_JSON)
        store = client.app.state.services.sql
        before = store.checksum()
        again = client.post("/api/v1/records", content=batch(the_story()), headers=GZIP_JSON)
        assert first.json()["inserted"] == first.json()["records"] > 0
        assert again.json()["inserted"] == 0
        assert again.json()["unchanged"] == again.json()["records"]
        assert store.checksum() == before


def test_plain_json_batches_are_accepted_too(tmp_path):
    with serving(tmp_path) as client:
        body = {"bundles": [bundle_to_dict(curation(1, RAW[:2]))]}
        answer = client.post("/api/v1/records", json=body).json()
        assert answer == {"bundles": 1, "records": 7, "inserted": 7, "unchanged": 0, "merged": 0}


def test_a_bad_record_rejects_the_whole_batch_naming_record_and_field(tmp_path):
    with serving(tmp_path) as client:
        good = bundle_to_dict(curation(1, RAW[:2]))
        bad = bundle_to_dict(curation(2, RAW))
        bad["records"][1]["id"] = "not an iri"
        store = client.app.state.services.sql
        before = store.checksum()
        response = client.post("/api/v1/records", json={"bundles": [good, bad]})
        assert response.status_code == 422
        body = response.json()
        assert body["error"] == "invalid_record"
        assert body["details"]["field"] == "id"
        assert body["details"]["bundle"] == bad["id"] and body["details"]["bundle_index"] == 1
        assert store.checksum() == before


def test_unreadable_bodies_are_400_with_a_reason(client):
    not_json = client.post(
        "/api/v1/records", content=b"{oops", headers={"Content-Type": "application/json"}
    )
    not_gzip = client.post("/api/v1/records", content=b"plain", headers=GZIP_JSON)
    assert not_json.status_code == 400 and not_json.json()["error"] == "parse_error"
    assert not_gzip.status_code == 400 and "gzip" in not_gzip.json()["message"]


def test_bodies_over_the_limit_are_refused_declared_or_decompressed(tmp_path):
    with serving(tmp_path, max_body_bytes=2000) as client:
        too_big = client.post("/api/v1/records", content=b" " * 3000)
        bomb = gzip.compress(json.dumps({"bundles": [], "pad": "x" * 100_000}).encode())
        inflated = client.post("/api/v1/records", content=bomb, headers=GZIP_JSON)
        assert len(bomb) < 2000
        assert too_big.status_code == 413 and too_big.json()["error"] == "payload_too_large"
        assert inflated.status_code == 413


def test_a_configured_write_token_guards_writes_only(tmp_path):
    with serving(tmp_path, write_token="s3cret") as client:
        body = batch([curation(1, RAW[:2])])
        missing = client.post("/api/v1/records", content=body, headers=GZIP_JSON)
        wrong = client.post(
            "/api/v1/records", content=body, headers={**GZIP_JSON, "Authorization": "Bearer nope"}
        )
        right = client.post(
            "/api/v1/records", content=body, headers={**GZIP_JSON, "Authorization": "Bearer s3cret"}
        )
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith(
            "Bearer"
        )
        assert wrong.status_code == 403 and wrong.json()["error"] == "forbidden"
        assert right.status_code == 200
        assert client.get("/api/v1/models").status_code == 200


def test_a_read_token_guards_reads_and_the_write_token_also_reads(tmp_path):
    with serving(tmp_path, write_token="w", read_token="r") as client:
        assert client.get("/api/v1/models").status_code == 401
        assert client.get("/sparql", params={"query": "ASK {}"}).status_code == 401
        assert (
            client.get("/api/v1/models", headers={"Authorization": "Bearer r"}).status_code == 200
        )
        assert (
            client.get("/api/v1/models", headers={"Authorization": "Bearer w"}).status_code == 200
        )
        assert client.get("/healthz").status_code == 200
        read_only = client.post(
            "/api/v1/records", json={"bundles": []}, headers={"Authorization": "Bearer r"}
        )
        assert read_only.status_code == 403


def test_cors_is_off_unless_origins_are_configured(tmp_path):
    origin = {"Origin": "https://ui.example.org"}
    with serving(tmp_path / "off") as client:
        assert "access-control-allow-origin" not in client.get("/healthz", headers=origin).headers
    with serving(tmp_path / "on", cors_origins=("https://ui.example.org",)) as client:
        allowed = client.get("/healthz", headers=origin).headers
        assert allowed["access-control-allow-origin"] == "https://ui.example.org"


# --------------------------------------------------------------------------- documents


def test_documents_are_read_by_content_type_into_the_named_bundle(tmp_path):
    bundle = curation(1, RAW[:2])
    with serving(tmp_path) as client:
        for name in ("json", "xml", "provn", "turtle", "jsonld"):
            data = prov_io.serialize([bundle], name)
            target = EX + f"bundle/imported-{name}"
            response = client.post(
                "/api/v1/documents",
                params={"bundle": target},
                content=data,
                headers={"Content-Type": prov_io.FORMATS[name].media_type},
            )
            assert response.status_code == 200, (name, response.text)
            assert response.json()["format"] == name and response.json()["bundle"] == target
            stored = client.app.state.services.sql.get_bundle(target)
            assert len(stored.records) == len(bundle.records), name


def test_a_document_without_a_bundle_name_is_named_by_its_content(tmp_path):
    data = prov_io.serialize([curation(1, RAW[:2])], "provn")
    with serving(tmp_path) as client:
        headers = {"Content-Type": "text/provenance-notation"}
        first = client.post("/api/v1/documents", content=data, headers=headers).json()
        again = client.post("/api/v1/documents", content=data, headers=headers).json()
        assert first["bundle"] == again["bundle"]
        assert again["inserted"] == 0 and again["unchanged"] == first["inserted"]


def test_broken_and_unknown_documents_are_refused_with_the_reason(client):
    broken = client.post(
        "/api/v1/documents",
        content=b"document\n entity(",
        headers={"Content-Type": "text/provenance-notation"},
    )
    unknown = client.post(
        "/api/v1/documents", content=b"\x00\x01", headers={"Content-Type": "image/png"}
    )
    assert broken.status_code == 400 and broken.json()["error"] == "parse_error"
    assert unknown.status_code == 415 and unknown.json()["error"] == "unsupported_format"


# ---------------------------------------------------------------------------- listings


def test_models_and_model_versions_are_listed(client):
    assert ids(client.get("/api/v1/models").json()["items"]) == {MODEL}
    versions = client.get("/api/v1/model-versions", params={"model": MODEL}).json()["items"]
    assert ids(versions) == {V1, V2}
    assert client.get("/api/v1/model-versions", params={"model": EX + "other"}).status_code == 404


def test_datasets_span_domain_data_and_feature_sets_in_stable_pages(client):
    everything = ids(client.get("/api/v1/datasets").json()["items"])
    assert everything == {*RAW, *FEATURES}
    pages, offset = [], 0
    while offset is not None:
        page = client.get("/api/v1/datasets", params={"limit": 2, "offset": offset}).json()
        pages += page["items"]
        offset = page["next_offset"]
    assert [p["id"] for p in pages] == sorted(everything)
    domain = client.get("/api/v1/datasets", params={"class": "DomainData", "q": "raw-c"}).json()
    assert ids(domain["items"]) == {RAW[2]}


def test_runs_filter_by_class_status_and_host(client):
    trainings = client.get("/api/v1/runs", params={"class": "TrainingExecution"}).json()["items"]
    failed = client.get("/api/v1/runs", params={"status": "failed", "host": "node-7"}).json()[
        "items"
    ]
    assert ids(trainings) == {EX + "run/training-1", EX + "run/training-2"}
    assert ids(failed) == {FAILED_RUN}
    assert client.get("/api/v1/runs", params={"host": "node-8"}).json()["items"] == []


def test_an_unknown_class_or_bad_page_is_a_client_error(client):
    unknown = client.get("/api/v1/nodes", params={"class": "Modle"})
    negative = client.get("/api/v1/nodes", params={"offset": -1})
    assert unknown.status_code == 400 and "Modle" in unknown.json()["message"]
    assert negative.status_code == 422 and negative.json()["error"] == "invalid_request"


def test_a_node_comes_with_its_attributes_and_bundles(client):
    node = client.get("/api/v1/node", params={"id": FAILED_RUN}).json()
    assert node["class"] == "InferenceExecution" and node["kind"] == "activity"
    assert [ml("status"), "failed"] in node["attributes"]
    assert node["bundles"] == [EX + "bundle/inference"]
    assert node["startTime"].startswith("2026-01-05T12:00:00")


def test_an_unknown_node_is_404_naming_it(client):
    response = client.get("/api/v1/node", params={"id": EX + "nothing"})
    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "message": f"no element {EX}nothing in the store",
        "details": {"record": EX + "nothing"},
    }


# ----------------------------------------------------------------------------- lineage


def test_upstream_lineage_equals_the_python_api(client, store):
    answer = client.get("/api/v1/lineage", params={"id": V2}).json()
    expected = lineage.upstream(store, V2)
    assert {n["id"]: n["distance"] for n in answer["nodes"]} == expected.distance
    assert len(answer["edges"]) == len(expected.edges)
    assert set(RAW) <= ids(answer["nodes"])


@pytest.mark.parametrize(
    "params",
    [
        {"id": V2},
        {"id": V2, "depth": 1, "max_bundles": 1},
        {"id": RAW[0], "direction": "impact"},
        {"id": RAW[0], "direction": "impact", "summary": True},
        {"id": V2, "as_of": V1},
    ],
)
def test_a_lineage_answer_is_what_its_schema_validates_to(client, params):
    # The route encodes its view itself instead of passing it through response_model:
    # the answer must validate, required fields there even when null, and come out of
    # the schema unchanged (no field the schema would coerce or leave out).
    response = client.get("/api/v1/lineage", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    validated = LineageView.model_validate(answer).model_dump(
        mode="json", by_alias=True, exclude_unset=True
    )
    assert answer == validated
    assert "depth" in answer
    assert all("class" in n and "label" in n for n in answer.get("nodes", []))


def test_depth_and_stop_at_bound_the_walk(client):
    direct = client.get("/api/v1/lineage", params={"id": V2, "depth": 1}).json()
    stopped = client.get("/api/v1/lineage", params={"id": V2, "stop_at": ["ModelVersion"]}).json()
    assert ids(direct["nodes"]) == {V2, V1, MODEL, EX + "run/training-2"}
    assert V1 in ids(stopped["nodes"]) and EX + "run/training-1" not in ids(stopped["nodes"])


def test_impact_of_a_raw_file_names_the_model_versions_it_reaches(client):
    first = client.get("/api/v1/lineage", params={"id": RAW[0], "direction": "impact"}).json()
    late = client.get("/api/v1/lineage", params={"id": RAW[2], "direction": "impact"}).json()
    assert set(first["affected"]["model_versions"]) == {V1, V2}
    assert late["affected"]["model_versions"] == [V2]
    assert first["direction"] == "downstream"


def test_a_summary_answer_has_the_counts_and_affected_results_without_the_graph(client):
    params = {"id": RAW[0], "direction": "impact"}
    full = client.get("/api/v1/lineage", params=params).json()
    summary = client.get("/api/v1/lineage", params={**params, "summary": True}).json()
    assert "nodes" not in summary and "edges" not in summary
    assert summary["node_count"] == len(full["nodes"]) and summary["edge_count"] == len(
        full["edges"]
    )
    assert summary["affected"] == full["affected"]


def test_impact_as_of_a_time_names_only_what_existed_then(client):
    def affected(as_of: str) -> list[str]:
        params = {"id": RAW[0], "direction": "impact", "as_of": as_of}
        answer = client.get("/api/v1/lineage", params=params).json()
        return answer["affected"]["model_versions"]

    assert affected("2026-01-01T12:00:00+00:00") == []
    assert affected("2026-01-03T00:00:00Z") == [V1]
    assert sorted(affected("2026-02-01T00:00:00Z")) == [V1, V2]


def test_impact_as_of_a_model_version_is_the_state_when_it_was_made(client):
    params = {"id": RAW[0], "direction": "impact"}
    as_of_v1 = client.get("/api/v1/lineage", params={**params, "as_of": V1}).json()
    as_of_v2 = client.get("/api/v1/lineage", params={**params, "as_of": V2}).json()
    assert as_of_v1["affected"]["model_versions"] == [V1]
    assert as_of_v1["as_of"] == "2026-01-02T11:00:00+00:00"  # training 1 ended
    assert FEATURES[1] not in ids(as_of_v1["nodes"]) and FEATURES[1] in ids(as_of_v2["nodes"])


def test_an_as_of_point_without_a_time_is_a_client_error(client):
    params = {"id": RAW[0], "direction": "down"}
    untimed = client.get("/api/v1/lineage", params={**params, "as_of": RAW[1]})
    garbage = client.get("/api/v1/lineage", params={**params, "as_of": "last tuesday"})
    assert untimed.status_code == 422 and untimed.json()["details"]["field"] == "as_of"
    assert garbage.status_code == 422 and "ISO 8601" in garbage.json()["message"]


def test_the_lineage_of_a_model_version_comes_in_one_answer(client):
    answer = client.get("/api/v1/model-versions/lineage", params={"id": V1}).json()
    assert ids(answer["domain_data"]) == set(RAW[:2])
    assert ids(answer["datasets"]) == {FEATURES[0]}
    assert {dict(map(tuple, p["attributes"]))[ml("name")] for p in answer["hyperparameters"]} == {
        "learning_rate",
        "epochs",
    }
    assert ids(answer["executions"]) == {EX + "run/training-1", EX + "run/curation-1"}
    assert ids(answer["metrics"]) == {EX + "metric/1/loss/1", EX + "metric/1/loss/2"}


def test_a_version_lineage_has_its_evaluations_but_not_the_metrics_of_its_fine_tunings(client):
    v1 = client.get("/api/v1/model-versions/lineage", params={"id": V1}).json()
    v2 = client.get("/api/v1/model-versions/lineage", params={"id": V2}).json()
    assert EVALUATION_RESULT not in ids(v1["metrics"])
    assert ids(v2["metrics"]) == {EVALUATION_RESULT, EX + "metric/2/loss/1", EX + "metric/2/loss/2"}


def test_an_evaluation_of_the_weights_file_a_training_wrote_counts_for_its_version(tmp_path):
    # Capture records the file an evaluation loads, not the version entity: the
    # evaluation is found through the training that generated both.
    train, version, weights = EX + "run/t", EX + "model/m/v/1", EX + "data/weights.pkl"
    evaluation, score, fine_tune = EX + "run/e", EX + "eval/score", EX + "run/ft"
    records = (
        element("activity", train, "TrainingExecution"),
        element("entity", version, "ModelVersion"),
        element("entity", weights, "DomainData"),
        Relation("wasGeneratedBy", version, train),
        Relation("wasGeneratedBy", weights, train),
        element("activity", evaluation, "EvaluationExecution"),
        element("entity", score, "ModelEvaluation"),
        Relation("used", evaluation, weights),
        Relation("wasGeneratedBy", score, evaluation),
        element("activity", fine_tune, "TrainingExecution"),  # uses the file too
        element("entity", EX + "metric/ft-loss", "MetricValue"),
        Relation("used", fine_tune, weights),
        Relation("wasGeneratedBy", EX + "metric/ft-loss", fine_tune),
    )
    with serving(tmp_path) as service:
        stored = service.post(
            "/api/v1/records", content=batch([Bundle(EX + "bundle/w", records)]), headers=GZIP_JSON
        )
        assert stored.status_code == 200, stored.text
        answer = service.get("/api/v1/model-versions/lineage", params={"id": version}).json()
    assert ids(answer["metrics"]) == {score}


def test_readiness_and_metrics_name_a_bundle_the_projector_could_not_map(tmp_path, monkeypatch):
    import provml.rdf

    real, bad = provml.rdf._bundle_quads, EX + "bundle/unmappable"

    def failing(bundle):
        if bundle.id == bad:
            raise ValueError("a mapping bug")
        return real(bundle)

    monkeypatch.setattr(provml.rdf, "_bundle_quads", failing)
    with serving(tmp_path) as service:
        bundles = [Bundle(bad, (element("entity", EX + "data/x"),)), curation(1, RAW[:1])]
        stored = service.post("/api/v1/records", content=batch(bundles), headers=GZIP_JSON)
        assert stored.status_code == 200, stored.text
        caught_up(service)
        ready = service.get("/readyz")
        metrics = service.get("/metrics").text
        graphs = service.app.state.services.rdf.graphs()
    assert ready.status_code == 200  # the rest is projected and served
    assert ready.json()["rdf"]["unprojectable_bundles"] == [bad]
    assert "provml_rdf_unprojectable_bundles 1" in metrics
    assert graphs == [EX + "bundle/curation-1"]


def test_the_diff_of_two_versions_names_changed_data_and_hyperparameters(client):
    answer = client.get("/api/v1/diff", params={"a": V1, "b": V2}).json()
    changes = {c["name"]: (c["a"], c["b"]) for c in answer["hyperparameter_changes"]}
    assert changes == {"learning_rate": (["0.001"], ["0.0001"])}
    assert ids(answer["models"]["only_b"]) == {V1}
    assert answer["identical"] is False
    assert answer["code_versions"] == {"name": "codeVersion", "a": ["git:1abc"], "b": ["git:2abc"]}


def test_a_lineage_of_an_unknown_node_is_404(client):
    assert client.get("/api/v1/lineage", params={"id": EX + "nothing"}).status_code == 404


# ------------------------------------------------------------------------------ SPARQL

USED = "SELECT ?run ?data WHERE { ?run prov:used ?data } ORDER BY ?run ?data"


def sparql_json(client: TestClient, query: str) -> list[dict[str, str]]:
    response = client.get("/sparql", params={"query": query})
    assert response.status_code == 200, response.text
    return [{k: v["value"] for k, v in b.items()} for b in response.json()["results"]["bindings"]]


def test_sparql_get_post_form_and_post_body_give_the_same_answer(client):
    get = client.get("/sparql", params={"query": USED}).json()
    form = client.post("/sparql", data={"query": USED}).json()
    body = client.post(
        "/sparql", content=USED, headers={"Content-Type": "application/sparql-query"}
    ).json()
    assert get == form == body
    assert len(get["results"]["bindings"]) == sum(
        isinstance(r, Relation) and r.kind == "used" for b in the_story() for r in b.records
    )


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        ("application/sparql-results+json", "application/sparql-results+json"),
        ("application/sparql-results+xml", "application/sparql-results+xml"),
        ("text/csv", "text/csv"),
        ("text/tab-separated-values", "text/tab-separated-values"),
        ("text/html;q=0.9, text/csv", "text/csv"),
        ("*/*", "application/sparql-results+json"),
    ],
)
def test_select_results_follow_the_accept_header(client, accept, media_type):
    response = client.get("/sparql", params={"query": USED}, headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == media_type


def test_csv_results_hold_the_same_rows_as_json(client):
    text = client.get("/sparql", params={"query": USED}, headers={"Accept": "text/csv"}).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows == sparql_json(client, USED)


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        ("text/turtle", "turtle"),
        ("application/n-triples", "nt"),
        ("application/ld+json", "json-ld"),
    ],
)
def test_construct_results_are_rdf_in_the_accepted_syntax(client, accept, fmt):
    import rdflib

    query = "CONSTRUCT { ?run prov:used ?data } WHERE { ?run prov:used ?data }"
    response = client.get("/sparql", params={"query": query}, headers={"Accept": accept})
    assert response.headers["content-type"].startswith(accept)
    graph = rdflib.Graph().parse(data=response.text, format=fmt)
    assert len(graph) == len(sparql_json(client, USED))


def test_ask_and_named_graphs_work(client):
    graph = EX + "bundle/inference"
    ask = client.get(
        "/sparql", params={"query": f"ASK {{ GRAPH <{graph}> {{ ?a prov:used <{V2}> }} }}"}
    )
    assert ask.json()["boolean"] is True
    rows = sparql_json(client, "SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } } ORDER BY ?g")
    assert {r["g"] for r in rows} == {b.id for b in the_story()}


def test_dataset_parameters_replace_the_default_graph_and_the_named_graphs(client):
    inference, training = EX + "bundle/inference", EX + "bundle/training-2"
    users = "SELECT DISTINCT ?a WHERE { ?a prov:used ?x } ORDER BY ?a"
    params = {"query": users, "default-graph-uri": inference}
    only_inference = client.get("/sparql", params=params).json()["results"]["bindings"]
    assert [r["a"]["value"] for r in only_inference] == sorted([EVALUATION, FAILED_RUN])
    graphs = "SELECT DISTINCT ?g FROM <urn:ignored> WHERE { GRAPH ?g { ?s ?p ?o } }"
    form = {"query": graphs, "named-graph-uri": [inference, training]}
    named = client.post("/sparql", data=form).json()["results"]["bindings"]
    assert {r["g"]["value"] for r in named} == {inference, training}


def test_a_dataset_parameter_that_is_not_an_iri_is_400(client):
    params = {"query": USED, "named-graph-uri": "not an iri"}
    response = client.get("/sparql", params=params)
    assert response.status_code == 400 and "named-graph-uri" in response.json()["message"]


def test_an_unacceptable_format_is_406(client):
    response = client.get("/sparql", params={"query": USED}, headers={"Accept": "image/png"})
    assert response.status_code == 406 and "text/csv" in response.json()["message"]


def test_updates_are_refused_as_query_or_as_update_operation(client):
    as_query = client.post(
        "/sparql",
        content="INSERT DATA { <urn:a> <urn:b> <urn:c> }",
        headers={"Content-Type": "application/sparql-query"},
    )
    as_update = client.post("/sparql", data={"update": "DROP ALL"})
    as_update_body = client.post(
        "/sparql", content="CLEAR ALL", headers={"Content-Type": "application/sparql-update"}
    )
    assert as_query.status_code == 400 and "read-only" in as_query.json()["message"]
    assert as_update.status_code == 403 and as_update_body.status_code == 403
    assert sparql_json(client, "SELECT * WHERE { <urn:a> ?p ?o }") == []


def test_service_is_refused_unless_enabled(client):
    query = "SELECT * WHERE { SERVICE <http://127.0.0.1:1/sparql> { ?s ?p ?o } }"
    response = client.get("/sparql", params={"query": query})
    assert response.status_code == 400 and "SERVICE" in response.json()["message"]


def test_syntax_errors_and_missing_queries_are_400(client):
    broken = client.get("/sparql", params={"query": "SELECT WHERE {"})
    missing = client.get("/sparql")
    assert broken.status_code == 400 and "syntax" in broken.json()["message"]
    assert missing.status_code == 400 and "no query" in missing.json()["message"]


def test_an_answer_over_the_row_limit_is_a_clear_error(client):
    response = client.get("/sparql", params={"query": "SELECT * WHERE { ?s ?p ?o }"})
    assert response.status_code == 400
    assert response.json()["error"] == "row_limit_exceeded"
    assert "100 rows" in response.json()["message"] and "LIMIT" in response.json()["message"]


def test_the_example_query_for_raw_data_agrees_with_the_lineage_api(client, store):
    query = EXAMPLE_BY_NAME["raw-data-of-model-version"].render(version=V2)
    graph = lineage.upstream(store, V2)
    generated = {e.subject for e in graph.edges if e.kind == "wasGeneratedBy"}
    expected = {n.id for n in graph.nodes.values() if n.ml_class == "DomainData"} - generated
    assert {row["data"] for row in sparql_json(client, query)} == expected == set(RAW)


def test_the_example_query_for_affected_models_agrees_with_impact(client, store):
    query = EXAMPLE_BY_NAME["models-affected-by-file"].render(file=RAW[2])
    expected = {n.id for n in lineage.impact(store, RAW[2]).model_versions}
    assert {row["version"] for row in sparql_json(client, query)} == expected == {V2}


def test_the_example_query_for_hyperparameters_and_final_metrics(client):
    query = EXAMPLE_BY_NAME["hyperparameters-and-final-metrics"].render(model=MODEL)
    rows = {(r["version"], r["parameter"], r["value"]) for r in sparql_json(client, query)}
    assert (V1, "learning_rate", "0.001") in rows and (V2, "learning_rate", "0.0001") in rows
    assert {(v, float(x)) for v, p, x in rows if p == "loss"} == {(V1, 0.5), (V2, 0.3)}


def test_ingested_records_reach_sparql_without_a_restart(client):
    extra = Bundle(EX + "bundle/late", (element("entity", EX + "data/late", "DomainData"),))
    assert (
        client.post("/api/v1/records", content=batch([extra]), headers=GZIP_JSON).status_code == 200
    )
    caught_up(client)
    rows = sparql_json(client, f"SELECT ?t WHERE {{ <{EX}data/late> a ?t }}")
    assert ml("DomainData") in {r["t"] for r in rows}


# ------------------------------------------------------------------------------ export


@pytest.mark.parametrize("fmt", ["json", "xml", "provn", "turtle", "jsonld"])
def test_a_bundle_exports_in_every_prov_format_and_reads_back(client, store, fmt):
    bundle_id = EX + "bundle/training-1"
    response = client.get("/api/v1/bundles/export", params={"id": bundle_id, "format": fmt})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(prov_io.FORMATS[fmt].media_type)
    back = prov_io.parse(response.content, fmt, bundle_id=bundle_id)
    assert len(back[0].records) == len(store.get_bundle(bundle_id).records)


def test_the_export_format_follows_the_accept_header(client):
    bundle_id = EX + "bundle/curation-1"
    provn = client.get(
        "/api/v1/bundles/export",
        params={"id": bundle_id},
        headers={"Accept": "text/provenance-notation"},
    )
    assert provn.headers["content-type"].startswith("text/provenance-notation")
    assert provn.text.lstrip().startswith("document")


def test_the_lineage_subgraph_of_a_node_exports_as_prov(client, store):
    response = client.get("/api/v1/lineage/export", params={"id": V1, "format": "json"})
    back = prov_io.parse(response.content, "json", bundle_id=EX + "back")[0]
    walked = lineage.upstream(store, V1)
    elements = {r.id for r in back.records if isinstance(r, Element)}
    relations = [r for r in back.records if isinstance(r, Relation)]
    assert elements == set(walked.nodes)
    assert len(relations) == len([e for e in walked.edges if e.role is None])


def test_exporting_an_unknown_bundle_is_404(client):
    response = client.get("/api/v1/bundles/export", params={"id": EX + "nothing"})
    assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_bundles_are_listed_with_their_record_counts(client):
    listed = {b["id"]: b["records"] for b in client.get("/api/v1/bundles").json()}
    for bundle in the_story():
        assert listed[bundle.id] == len(bundle.records)
