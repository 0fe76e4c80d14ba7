"""The service as users run it: a real ``provml serve`` process on a free local port.

The capture client posts to it from another process, SPARQL clients nobody here wrote
(SPARQLWrapper, rdflib's SPARQLStore) query it, an expensive query is stopped at the
time limit while other requests are served, and the same runs against the real
PostgreSQL server.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from test_api import GZIP_JSON, MODEL, RAW, V1, V2, batch, the_story

from provml import lineage
from provml.api import Settings, create_app
from provml.errors import SchemaOutdated
from provml.queries import EXAMPLE_BY_NAME
from provml.records import bundle_from_dict
from provml.store.sql import SQLStore

TOKEN = "test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def provml_serve(store: str, tmp_path: Path, *options: str, **env: str) -> Iterator[str]:
    """Run ``provml serve`` until the block ends; yields its base URL once it is ready."""
    port = free_port()
    environment = {
        **os.environ,
        "PROVML_WRITE_TOKEN": TOKEN,
        "PROVML_RDF": str(tmp_path / "oxigraph"),
        **env,
    }
    log = (tmp_path / "serve.log").open("wb")
    command = [sys.executable, "-m", "provml.cli", "serve", "--store", store, "--port", str(port)]
    command += options
    process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError((tmp_path / "serve.log").read_text())
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def wait_projected(url: str) -> None:
    """Wait until the server's outbox is empty (everything is in the RDF store)."""
    deadline = time.monotonic() + 20
    while httpx.get(url + "/readyz").json()["sql"]["outbox_pending"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def post_story(url: str) -> None:
    headers = {**GZIP_JSON, "Authorization": f"Bearer {TOKEN}"}
    response = httpx.post(url + "/api/v1/records", content=batch(the_story()), headers=headers)
    assert response.status_code == 200, response.text
    wait_projected(url)


CAPTURE_JOB = textwrap.dedent(
    """
    import json, sys
    import provml
    from provml.capture import _export
    from provml.records import bundle_to_dict

    sent = []
    original = _export.HttpDestination.export

    def recording(self, bundles):
        original(self, bundles)  # raises when the server refuses: then nothing is noted
        sent.append([bundle_to_dict(b) for b in bundles])

    _export.HttpDestination.export = recording
    endpoint, token, spool, out = sys.argv[1:5]
    provml.init("server-test", endpoint=endpoint, token=token, spool_dir=spool, batch_size=7)

    @provml.training
    def train(learning_rate=0.1):
        for epoch in range(4):
            with provml.section("epoch", step=epoch):
                provml.log_metric("loss", 1.0 / (epoch + 1))
        provml.log_model_version("unet", 1)

    train()
    provml.shutdown(30)
    stats = provml.stats()
    with open(out, "w") as f:
        json.dump({"sent": sent, "spooled": stats.spooled, "dropped": dict(stats.dropped)}, f)
    """
)


def run_capture_job(url: str, tmp_path: Path) -> dict:
    out = tmp_path / "sent.json"
    job = tmp_path / "job.py"
    job.write_text(CAPTURE_JOB)
    subprocess.run(
        [sys.executable, str(job), url, TOKEN, str(tmp_path / "spool"), str(out)],
        check=True,
        timeout=120,
        cwd=tmp_path,
    )
    return json.loads(out.read_text())


def assert_records_arrived_exactly_once(url: str, server_store: SQLStore, tmp_path: Path) -> None:
    held = list(server_store.iter_bundles())
    before = server_store.checksum()
    report = run_capture_job(url, tmp_path)
    assert report["sent"] and report["spooled"] == 0 and report["dropped"] == {}
    # The server now holds what it held plus what the job sent, each record once: the
    # same as a fresh store that ingested exactly that.
    reference = SQLStore(f"sqlite:///{tmp_path / 'reference.sqlite'}")
    reference.upgrade()
    try:
        reference.ingest(held)
        assert reference.checksum() == before
        for sent in report["sent"]:  # batch by batch, as the server received them
            reference.ingest([bundle_from_dict(b) for b in sent])
        expected = reference.checksum()
    finally:
        reference.close()
    assert server_store.checksum() == expected
    # A client that resends the batches (a retry after a lost answer) adds nothing.
    headers = {**GZIP_JSON, "Authorization": f"Bearer {TOKEN}"}
    resent = [b for sent in report["sent"] for b in sent]
    body = gzip.compress(json.dumps({"bundles": resent}).encode())
    again = httpx.post(url + "/api/v1/records", content=body, headers=headers).json()
    assert again["inserted"] == 0
    assert server_store.checksum() == expected


# ---------------------------------------------------------------------------- SQLite


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory) -> Iterator[tuple[str, SQLStore]]:
    tmp_path = tmp_path_factory.mktemp("serve")
    store_url = f"sqlite:///{tmp_path / 'provml.sqlite'}"
    with provml_serve(store_url, tmp_path, PROVML_SPARQL_TIMEOUT="2") as url:
        post_story(url)
        store = SQLStore(store_url)
        try:
            yield url, store
        finally:
            store.close()


def test_capture_records_reach_a_real_server_exactly_once(sqlite_server, tmp_path):
    url, store = sqlite_server
    assert_records_arrived_exactly_once(url, store, tmp_path)


def test_a_write_without_the_token_is_refused_by_the_real_server(sqlite_server):
    url, _ = sqlite_server
    response = httpx.post(url + "/api/v1/records", content=batch(the_story()), headers=GZIP_JSON)
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"


def test_sparqlwrapper_gets_the_answers_of_the_python_api(sqlite_server):
    from SPARQLWrapper import JSON, SPARQLWrapper

    url, store = sqlite_server
    client = SPARQLWrapper(url + "/sparql")
    client.setQuery(EXAMPLE_BY_NAME["models-affected-by-file"].render(file=RAW[0]))
    client.setReturnFormat(JSON)
    rows = client.queryAndConvert()["results"]["bindings"]
    expected = {n.id for n in lineage.impact(store, RAW[0]).model_versions}
    assert {row["version"]["value"] for row in rows} == expected == {V1, V2}


def test_sparqlwrapper_posts_and_reads_csv_and_ask(sqlite_server):
    from SPARQLWrapper import CSV, JSON, POST, SPARQLWrapper

    url, _ = sqlite_server
    client = SPARQLWrapper(url + "/sparql")
    client.setMethod(POST)
    client.setQuery(f"ASK {{ <{V2}> prov:wasDerivedFrom <{V1}> }}")
    client.setReturnFormat(JSON)
    assert client.queryAndConvert()["boolean"] is True
    client.setQuery(f"SELECT ?v WHERE {{ ?v prov:specializationOf <{MODEL}> }} ORDER BY ?v")
    client.setReturnFormat(CSV)
    assert client.queryAndConvert().decode().split() == ["v", V1, V2]


def test_rdflib_sparqlstore_gets_the_answers_of_the_python_api(sqlite_server):
    from rdflib import Graph
    from rdflib.plugins.stores.sparqlstore import SPARQLStore

    url, store = sqlite_server
    graph = Graph(store=SPARQLStore(url + "/sparql", returnFormat="json"))
    query = EXAMPLE_BY_NAME["raw-data-of-model-version"].render(version=V1)
    found = {str(row[0]) for row in graph.query(query)}
    upstream = lineage.upstream(store, V1)
    expected = {n.id for n in upstream.nodes.values() if n.ml_class == "DomainData"}
    assert found == expected == set(RAW[:2])


def test_a_slow_query_stops_at_the_limit_while_others_are_served(sqlite_server):
    url, _ = sqlite_server
    # Four-fold cross product of every triple: far beyond two seconds.
    slow = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l }"
    answer: dict[str, object] = {}

    def run_slow() -> None:
        started = time.monotonic()
        response = httpx.get(url + "/sparql", params={"query": slow}, timeout=30)
        answer.update(response=response, seconds=time.monotonic() - started)

    thread = threading.Thread(target=run_slow)
    thread.start()
    time.sleep(0.3)
    quick: list[float] = []
    while thread.is_alive():
        started = time.monotonic()
        ok = httpx.get(url + "/sparql", params={"query": f"ASK {{ <{V1}> ?p ?o }}"}, timeout=10)
        assert ok.json()["boolean"] is True
        quick.append(time.monotonic() - started)
        time.sleep(0.1)
    thread.join()
    response = answer["response"]
    assert isinstance(response, httpx.Response)
    assert response.status_code == 503 and response.json()["error"] == "query_timeout"
    assert "limit of 2 s" in response.json()["message"]
    assert 2 <= answer["seconds"] < 6  # type: ignore[operator]
    assert quick and max(quick) < 1.5


def test_with_two_workers_one_projects_and_both_answer_sparql(tmp_path):
    store_url = f"sqlite:///{tmp_path / 'provml.sqlite'}"
    with provml_serve(store_url, tmp_path, "--workers", "2") as url:
        post_story(url)
        expected = sum(
            1 for b in the_story() for r in b.records if getattr(r, "kind", "") == "used"
        )
        query = "SELECT (COUNT(*) AS ?n) WHERE { ?a prov:used ?b }"
        deadline = time.monotonic() + 15
        answers: list[int] = []
        while len(answers) < 10:  # connections land on either worker
            response = httpx.get(
                url + "/sparql", params={"query": query}, headers={"Connection": "close"}
            )
            count = int(response.json()["results"]["bindings"][0]["n"]["value"])
            answers = [*answers, count] if count == expected else []
            assert time.monotonic() < deadline, "a worker never saw the projection"
            time.sleep(0.05)
        # The other worker comes to read a copy of a snapshot the owner published,
        # not the owner's directory, whose files the owner's compactions delete.
        seen: set[object] = set()
        deadline = time.monotonic() + 15
        while not {True, "published snapshot"} <= seen and time.monotonic() < deadline:
            side = httpx.get(url + "/readyz", headers={"Connection": "close"}).json()["rdf"]
            seen.add(side["owner"] or side["reads"])
            time.sleep(0.02)
        assert {True, "published snapshot"} <= seen, seen


def test_a_server_process_keeps_its_garbage_collector_off_the_ingest_path(tmp_path):
    # uvicorn builds each worker's app with app_from_env: that process serves and
    # nothing else, so its modules go to the permanent generation and the young one is
    # collected every 20,000 allocations instead of every 700 (a batch of 1,000
    # records is ~50,000 objects). An app made with create_app, inside someone else's
    # process, leaves that process's collector as it found it.
    probe = textwrap.dedent(
        """
        import gc, json, sys
        from provml.api import Settings, app_from_env, create_app
        from provml.api._app import GC_YOUNG_THRESHOLD
        state = lambda: [gc.get_threshold(), gc.get_freeze_count()]
        before = state()
        create_app(Settings(store=sys.argv[1]))
        embedded = state()
        app_from_env()
        print(json.dumps([before, embedded, state(), GC_YOUNG_THRESHOLD]))
        """
    )
    store = str(tmp_path / "store")
    out = subprocess.run(
        [sys.executable, "-c", probe, store],
        env={**os.environ, "PROVML_STORE": store},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    before, embedded, serving, young = json.loads(out)
    assert embedded == before and before[1] == 0
    threshold, older, oldest = before[0]
    assert serving[0] == [young, older, oldest] and young > threshold
    assert serving[1] > 10_000  # the imported modules and the app, frozen


# ------------------------------------------------------------------------ PostgreSQL


@pytest.mark.postgres
def test_the_service_refuses_a_postgresql_store_without_the_schema(postgres_url, tmp_path):
    app = create_app(Settings(store=postgres_url, rdf_path=str(tmp_path / "oxigraph")))
    from fastapi.testclient import TestClient

    with pytest.raises(SchemaOutdated, match="provml db upgrade"), TestClient(app):
        pass
    serve = subprocess.run(
        [sys.executable, "-m", "provml.cli", "serve", "--store", postgres_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert serve.returncode == 1 and "provml db upgrade" in serve.stderr


@pytest.mark.postgres
def test_a_real_server_on_postgresql_ingests_queries_and_exports(postgres_url, tmp_path):
    store = SQLStore(postgres_url)
    store.upgrade()  # what `provml db upgrade` runs
    try:
        with provml_serve(postgres_url, tmp_path) as url:
            post_story(url)
            assert_records_arrived_exactly_once(url, store, tmp_path)
            walk = httpx.get(url + "/api/v1/lineage", params={"id": V2}).json()
            assert {n["id"]: n["distance"] for n in walk["nodes"]} == (
                lineage.upstream(store, V2).distance
            )
            rows = httpx.get(
                url + "/sparql",
                params={"query": EXAMPLE_BY_NAME["raw-data-of-model-version"].render(version=V2)},
            ).json()["results"]["bindings"]
            assert {r["data"]["value"] for r in rows} == set(RAW)
            exported = httpx.get(
                url + "/api/v1/bundles/export",
                params={"id": the_story()[1].id, "format": "provn"},
            )
            assert exported.status_code == 200 and exported.text.lstrip().startswith("document")
    finally:
        store.close()


@pytest.mark.postgres
def test_readyz_turns_503_when_the_database_goes_away(postgres_url, tmp_path):
    from conftest import _admin_connect
    from fastapi.testclient import TestClient

    store = SQLStore(postgres_url)
    store.upgrade()
    store.close()
    app = create_app(Settings(store=postgres_url, rdf_path=str(tmp_path / "oxigraph")))
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        database = postgres_url.rsplit("/", 1)[1]
        with _admin_connect() as admin:
            admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["sql"]["status"] == "store_unavailable"
        assert client.get("/healthz").status_code == 200  # alive, only not ready
