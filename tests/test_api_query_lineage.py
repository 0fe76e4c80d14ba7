"""REST lineage answers list a bounded number of bundle ids per node, and the count.

A shared element (a model, a raw file) is described in every workflow that touches it,
so an answer that listed every bundle of every node grew with the store: each node
lists the first ``max_bundles`` (default 10) in code-point order and ``bundle_count``;
``GET /api/v1/node`` and the Python API still give every bundle.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from provml import lineage
from provml.api import Settings, create_app
from provml.api._query import DEFAULT_MAX_BUNDLES
from provml.records import Bundle, Element, Ref, Relation
from provml.vocab import PROV_TYPE, ml

EX = "https://provml.local/test/"
MODEL = EX + "model/unet"
# Code-point order is not numeric order ("run-10" < "run-2") and puts capitals first.
NAMES = [f"run-{n}" for n in range(1, 13)] + ["Run-Z"]
BUNDLES = [EX + f"bundle/{name}" for name in NAMES]
VERSIONS = [EX + f"model/unet/v/{name}" for name in NAMES]


def _training(index: int) -> Bundle:
    name, version = NAMES[index], VERSIONS[index]
    run = EX + f"run/{name}"
    records = [
        Element("activity", run, ((PROV_TYPE, Ref(ml("TrainingExecution"))),)),
        Element("entity", version, ((PROV_TYPE, Ref(ml("ModelVersion"))),)),
        Element("entity", MODEL, ((PROV_TYPE, Ref(ml("Model"))),)),
        Relation("wasGeneratedBy", version, run),
        Relation("specializationOf", version, MODEL),
    ]
    if index:
        records.append(Relation("wasDerivedFrom", version, VERSIONS[index - 1]))
    return Bundle(BUNDLES[index], tuple(records))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    directory: Path = tmp_path_factory.mktemp("lineage-bundles")
    app = create_app(Settings(store=str(directory / "store")))
    with TestClient(app) as client:
        client.app.state.services.sql.ingest([_training(i) for i in range(len(NAMES))])
        yield client


def _lineage(client: TestClient, root: str, **params: object) -> dict:
    response = client.get("/api/v1/lineage", params={"id": root, **params})
    assert response.status_code == 200, response.text
    return response.json()


def _nodes(answer: dict) -> dict[str, dict]:
    return {node["id"]: node for node in answer["nodes"]}


def test_a_node_lists_its_first_bundles_in_code_point_order_and_counts_them_all(client):
    nodes = _nodes(_lineage(client, VERSIONS[-1]))
    assert DEFAULT_MAX_BUNDLES == 10 < len(BUNDLES)
    assert nodes[MODEL]["bundle_count"] == len(BUNDLES)
    assert nodes[MODEL]["bundles"] == sorted(BUNDLES)[:10]
    assert nodes[MODEL]["bundles"][0] == EX + "bundle/Run-Z"
    assert nodes[MODEL]["bundles"][2] == EX + "bundle/run-10"
    # A node described once lists its one bundle.
    assert nodes[VERSIONS[-1]]["bundles"] == [BUNDLES[-1]]
    assert nodes[VERSIONS[-1]]["bundle_count"] == 1


def test_max_bundles_sets_how_many_and_the_node_route_lists_every_one(client):
    none = _nodes(_lineage(client, VERSIONS[-1], max_bundles=0))
    three = _nodes(_lineage(client, VERSIONS[-1], max_bundles=3))
    every = _nodes(_lineage(client, VERSIONS[-1], max_bundles=1000))
    assert all(node["bundles"] == [] for node in none.values())
    assert {iri: node["bundle_count"] for iri, node in none.items()} == {
        iri: node["bundle_count"] for iri, node in every.items()
    }
    assert three[MODEL]["bundles"] == sorted(BUNDLES)[:3]
    complete = client.get("/api/v1/node", params={"id": MODEL}).json()["bundles"]
    assert every[MODEL]["bundles"] == complete == sorted(BUNDLES)
    assert client.get("/api/v1/lineage", params={"id": MODEL, "max_bundles": -1}).status_code == 422


def test_impact_and_downstream_answers_are_bounded_too_and_summaries_unchanged(client):
    impact = _lineage(client, MODEL, direction="impact")
    assert _nodes(impact)[MODEL]["bundles"] == sorted(BUNDLES)[:10]
    assert _nodes(impact)[MODEL]["bundle_count"] == len(BUNDLES)
    assert sorted(impact["affected"]["model_versions"]) == sorted(VERSIONS)
    summary = _lineage(client, MODEL, direction="impact", summary=True)
    assert "nodes" not in summary and summary["node_count"] == len(impact["nodes"])


def test_the_python_api_keeps_every_bundle(client):
    store = client.app.state.services.sql
    graph = lineage.upstream(store, VERSIONS[-1])
    assert graph.nodes[MODEL].bundles == tuple(sorted(BUNDLES))


def test_the_openapi_document_describes_the_bound_and_the_count(client):
    spec = client.get("/openapi.json").json()
    route = spec["paths"]["/api/v1/lineage"]["get"]
    parameter = next(p for p in route["parameters"] if p["name"] == "max_bundles")
    assert parameter["schema"]["default"] == DEFAULT_MAX_BUNDLES
    assert parameter["schema"]["minimum"] == 0
    node = spec["components"]["schemas"]["LineageNodeView"]
    assert "bundle_count" in node["required"] and "bundles" in node["required"]
    items = spec["components"]["schemas"]["LineageView"]["properties"]["nodes"]["anyOf"][0]
    assert items["items"]["$ref"].endswith("/LineageNodeView")
