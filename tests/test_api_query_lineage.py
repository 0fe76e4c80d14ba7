"""REST lineage answers list a bounded number of bundle ids per node, and the count.

A shared element (a model, a raw file) is described in every workflow that touches it,
so an answer that listed every bundle of every node grew with the store: each node
lists the first ``max_bundles`` (default 10) in code-point order and ``bundle_count``;
``GET /api/v1/node`` and the Python API still give every bundle unless asked for fewer.
The database cuts the lists (so it sends ten ids, not thousands): every test runs on
both backends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import _fresh_postgres_database
from fastapi.testclient import TestClient

from provml import lineage
from provml.api import Settings, create_app
from provml.api._query import DEFAULT_MAX_BUNDLES
from provml.errors import QueryRejected
from provml.records import Bundle, Element, Ref, Relation
from provml.store.sql import SQLStore
from provml.vocab import PROV_LABEL, PROV_TYPE, ml

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


def _serve(store: str, rdf: Path) -> Iterator[TestClient]:
    app = create_app(Settings(store=store, rdf_path=str(rdf)))
    with TestClient(app) as client:
        client.app.state.services.sql.ingest([_training(i) for i in range(len(NAMES))])
        yield client


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def client(request, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    directory: Path = tmp_path_factory.mktemp("lineage-bundles")
    if request.param == "sqlite":
        yield from _serve(str(directory / "store"), directory / "rdf")
        return
    for url in _fresh_postgres_database("provml_test_bundles_"):
        SQLStore(url).upgrade()
        yield from _serve(url, directory / "rdf")


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


def test_the_python_api_keeps_every_bundle_unless_asked_for_fewer(client):
    store = client.app.state.services.sql
    graph = lineage.upstream(store, VERSIONS[-1])
    model = graph.nodes[MODEL]
    assert model.bundles == tuple(sorted(BUNDLES))
    assert model.bundle_count is None and model.described_in == len(BUNDLES)
    cut = lineage.upstream(store, VERSIONS[-1], max_bundles=2).nodes
    assert cut[MODEL].bundles == tuple(sorted(BUNDLES)[:2])
    assert cut[MODEL].bundle_count == cut[MODEL].described_in == len(BUNDLES)
    # A node with no more bundles than asked for lists them all, as without the bound.
    assert cut[VERSIONS[-1]] == graph.nodes[VERSIONS[-1]]
    assert store.nodes([MODEL], max_bundles=0)[MODEL].bundles == ()
    assert store.nodes([MODEL], max_bundles=0)[MODEL].described_in == len(BUNDLES)
    with pytest.raises(QueryRejected, match="max_bundles"):
        lineage.downstream(store, MODEL, max_bundles=-1)


def test_a_node_whose_descriptions_differ_counts_the_bundles_of_each(client):
    """Two contents of one element are two rows of the query: the counts add up."""
    store = client.app.state.services.sql
    raw = EX + "raw/cube.segy"
    named = [EX + f"bundle/curation-{n}" for n in "abcde"]
    store.ingest(
        [
            Bundle(bundle, (Element("entity", raw, ((PROV_LABEL, "cube " + bundle[-1]),)),))
            for bundle in named[:2]
        ]
        + [Bundle(bundle, (Element("entity", raw),)) for bundle in named[2:]]
    )
    node = store.nodes([raw], max_bundles=3)[raw]
    assert node.described_in == 5 and node.bundles == tuple(named[:3])
    whole = store.nodes([raw])[raw]
    assert whole.bundles == tuple(named) and whole.bundle_count is None
    # The descriptions merge the same whether the lists were cut or not.
    assert node.attributes == whole.attributes and node.label == whole.label == "cube a"


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
