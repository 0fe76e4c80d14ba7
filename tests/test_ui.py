"""The web UI's server side, in process: the pages, the static files and the JSON the
pages read (summary, lookup, model, run, SPARQL examples, subgraph export).

The pages themselves are tested in real Chromium in ``test_ui_browser.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.resources import files

import pytest
from fastapi.testclient import TestClient
from test_api import FAILED_RUN, GZIP_JSON, MODEL, RAW, V1, V2, batch, caught_up, serving, the_story

PAGES = ("/ui/", "/ui/search", "/ui/model", "/ui/lineage", "/ui/compare", "/ui/run", "/ui/sparql")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with serving(tmp_path_factory.mktemp("ui")) as client:
        response = client.post("/api/v1/records", content=batch(the_story()), headers=GZIP_JSON)
        assert response.status_code == 200, response.text
        caught_up(client)
        yield client


def test_the_package_ships_the_page_its_script_and_its_styles():
    ui = files("provml.api") / "ui"
    assert all((ui / name).is_file() for name in ("index.html", "app.js", "app.css"))


def test_the_root_redirects_to_the_ui(client):
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/ui/"


@pytest.mark.parametrize("path", PAGES)
def test_every_page_is_the_same_html_shell(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script src="/ui/static/app.js"' in response.text


def test_an_unknown_page_is_a_404(client):
    assert client.get("/ui/nothing-here").status_code == 404


@pytest.mark.parametrize("name", ["_ui.py", "..%2F_ui.py", "..%2F..%2Fpyproject.toml", "index"])
def test_only_the_ui_folders_script_styles_and_images_are_served(client, name):
    assert client.get(f"/ui/static/{name}").status_code == 404


def test_the_script_is_served_as_javascript(client):
    response = client.get("/ui/static/app.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")


def test_the_summary_counts_the_stored_classes_and_bundles(client):
    summary = client.get("/api/v1/ui/summary").json()
    assert summary["classes"]["ModelVersion"] == 2
    assert summary["bundles"] == len(the_story())


def test_the_summary_lists_failed_executions(client):
    failed = client.get("/api/v1/ui/summary").json()["failed_executions"]
    assert [run["id"] for run in failed] == [FAILED_RUN]


def test_the_summary_lists_the_newest_model_version_first(client):
    newest = client.get("/api/v1/ui/summary").json()["newest_model_versions"]
    assert [v["id"] for v in newest] == [V2, V1]


def test_the_lookup_of_an_unknown_id_answers_with_similar_nodes_not_a_404(client):
    response = client.get("/api/v1/ui/lookup", params={"id": "https://nowhere.example/unet"})
    assert response.status_code == 200
    assert response.json()["node"] is None
    assert MODEL in {n["id"] for n in response.json()["suggestions"]}


def test_the_lookup_recognises_a_bundle(client):
    bundle = client.get("/api/v1/bundles").json()[0]["id"]
    assert client.get("/api/v1/ui/lookup", params={"id": bundle}).json()["bundle"] == bundle


def test_the_model_answer_lists_each_version_with_its_training_run(client):
    versions = client.get("/api/v1/ui/model", params={"id": MODEL}).json()["versions"]
    assert [v["version"]["id"] for v in versions] == [V1, V2]
    assert all(v["training"] for v in versions)


def test_the_model_answer_of_an_unknown_id_is_a_404(client):
    response = client.get("/api/v1/ui/model", params={"id": "https://nowhere.example/m"})
    assert response.status_code == 404


def test_the_run_answer_orders_the_timeline_by_start(client):
    run = client.get("/api/v1/ui/run", params={"id": FAILED_RUN}).json()
    starts = [r["startTime"] for r in run["timeline"] if r["startTime"]]
    assert starts == sorted(starts)
    assert run["timeline"][0]["status"] == "failed"


def test_the_sparql_examples_are_filled_in_with_iris_of_this_store(client):
    examples = client.get("/api/v1/ui/examples").json()
    raw_data = next(e for e in examples if e["name"] == "raw-data-of-model-version")
    assert f"<{V2}>" in raw_data["query"]
    rows = client.post("/sparql", data={"query": raw_data["query"]}).json()["results"]
    assert rows["bindings"]


def test_the_subgraph_export_holds_the_given_nodes_and_the_relations_between_them(client):
    response = client.post(
        "/api/v1/ui/export", params={"format": "provn"}, json={"ids": [V2, V1, RAW[0]]}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/provenance-notation")
    text = response.text
    assert "wasDerivedFrom" in text
    assert RAW[1] not in text


def test_the_subgraph_export_refuses_an_empty_list(client):
    assert client.post("/api/v1/ui/export", json={"ids": []}).status_code == 400


def test_with_a_read_token_the_pages_load_but_their_data_needs_the_token(tmp_path):
    with serving(tmp_path, read_token="r3ad") as client:
        assert client.get("/ui/").status_code == 200
        assert client.get("/api/v1/ui/summary").status_code == 401
        authorised = client.get("/api/v1/ui/summary", headers={"Authorization": "Bearer r3ad"})
        assert authorised.status_code == 200
