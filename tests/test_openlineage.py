"""OpenLineage ingest: events built by the real ``openlineage-python`` client, read back.

The story: an Airflow DAG run (the parent) curates seismic survey data. Its task
``survey.tile`` starts reading the raw cube table ``raw.cubes`` (schema: trace, amplitude,
region, quality) and completes writing ``curated.tiles`` (schema: tile, mean_amplitude,
region), whose column-lineage facet says mean_amplitude aggregates amplitude, region is
region unchanged, and the whole table is filtered on quality. A second task,
``survey.qc``, fails with an error message. Expected answers come from that story.

Events go in-process (FastAPI's TestClient) and, once, through the client's own HTTP
transport to a real ``provml serve``; they are read back over REST and SPARQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    column_lineage_dataset,
    error_message_run,
    parent_run,
    schema_dataset,
)
from openlineage.client.serde import Serde
from openlineage.client.transport.http import (
    ApiKeyTokenProvider,
    HttpCompression,
    HttpConfig,
    HttpTransport,
)
from test_api import caught_up, serving
from test_api_server import TOKEN, provml_serve, wait_projected

from provml import ids
from provml.openlineage import (
    OPENLINEAGE,
    column_iri,
    dataset_iri,
    job_iri,
    map_run_event,
    run_iri,
)
from provml.prov_io import bundle_to_rdf
from provml.records import Element
from provml.shacl import validate
from provml.vocab import PROV_TYPE, ml

STORE = "s3://survey"
RAW, TILES = "raw.cubes", "curated.tiles"
DAG_RUN, TILE_RUN, QC_RUN = (
    "01941f29-7c00-7000-8000-00000000000a",
    "01941f29-7c00-7000-8000-00000000000b",
    "01941f29-7c00-7000-8000-00000000000c",
)
PRODUCER = "https://github.com/example/survey-pipelines"
STARTED, ENDED = "2026-01-05T10:00:00+00:00", "2026-01-05T10:20:00+00:00"
ENDPOINT = "/api/v1/openlineage"


def schema(*fields: tuple[str, str]) -> schema_dataset.SchemaDatasetFacet:
    return schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in fields]
    )


def raw_cubes() -> InputDataset:
    fields = (("trace", "BIGINT"), ("amplitude", "DOUBLE"), ("region", "VARCHAR"))
    return InputDataset(
        namespace=STORE, name=RAW, facets={"schema": schema(*fields, ("quality", "DOUBLE"))}
    )


def source(field: str, kind: str, subtype: str) -> column_lineage_dataset.InputField:
    return column_lineage_dataset.InputField(
        namespace=STORE,
        name=RAW,
        field=field,
        transformations=[column_lineage_dataset.Transformation(type=kind, subtype=subtype)],
    )


def curated_tiles() -> OutputDataset:
    lineage = column_lineage_dataset.ColumnLineageDatasetFacet(
        fields={
            "mean_amplitude": column_lineage_dataset.Fields(
                inputFields=[source("amplitude", "DIRECT", "AGGREGATION")]
            ),
            "region": column_lineage_dataset.Fields(
                inputFields=[source("region", "DIRECT", "IDENTITY")]
            ),
        },
        dataset=[source("quality", "INDIRECT", "FILTER")],
    )
    fields = (("tile", "BIGINT"), ("mean_amplitude", "DOUBLE"), ("region", "VARCHAR"))
    return OutputDataset(
        namespace=STORE, name=TILES, facets={"schema": schema(*fields), "columnLineage": lineage}
    )


def parent() -> parent_run.ParentRunFacet:
    return parent_run.ParentRunFacet(
        run=parent_run.Run(runId=DAG_RUN), job=parent_run.Job(namespace="airflow", name="survey")
    )


def event(
    state: RunState, run_id: str, job: str, when: str, run_facets: dict | None = None, **kw: Any
) -> RunEvent:
    return RunEvent(
        eventType=state,
        eventTime=when,
        run=Run(runId=run_id, facets=run_facets or {}),
        job=Job(namespace="airflow", name=job),
        producer=PRODUCER,
        **kw,
    )


def tile_start() -> RunEvent:
    facets = {"parent": parent()}
    return event(RunState.START, TILE_RUN, "survey.tile", STARTED, facets, inputs=[raw_cubes()])


def tile_complete() -> RunEvent:
    return event(
        RunState.COMPLETE,
        TILE_RUN,
        "survey.tile",
        ENDED,
        {"parent": parent()},
        inputs=[raw_cubes()],
        outputs=[curated_tiles()],
    )


def qc_fail() -> RunEvent:
    error = error_message_run.ErrorMessageRunFacet(
        message="quality below threshold in region north", programmingLanguage="PYTHON"
    )
    return event(RunState.FAIL, QC_RUN, "survey.qc", ENDED, {"errorMessage": error})


def as_json(ev: RunEvent) -> dict[str, Any]:
    return json.loads(Serde.to_json(ev))


def post(client: TestClient, body: Any, **headers: str) -> httpx.Response:
    return client.post(ENDPOINT, json=body, headers=headers)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One service holding the story, projected (module scope: tests only read it)."""
    with serving(tmp_path_factory.mktemp("openlineage")) as client:
        for ev in (tile_start(), tile_complete(), qc_fail()):
            response = post(client, as_json(ev))
            assert response.status_code == 200, response.text
        caught_up(client)
        yield client


def node(client: TestClient, iri: str) -> dict[str, Any]:
    response = client.get("/api/v1/node", params={"id": iri})
    assert response.status_code == 200, response.text
    return response.json()


def values(view: dict[str, Any], name: str) -> list[Any]:
    return [value for key, value in view["attributes"] if key == name]


def upstream(client: TestClient, iri: str) -> set[str]:
    response = client.get("/api/v1/lineage", params={"id": iri, "direction": "up"})
    assert response.status_code == 200, response.text
    return {n["id"] for n in response.json()["nodes"]}


def sparql_values(client: TestClient, query: str) -> set[str]:
    response = client.get(
        "/sparql", params={"query": query}, headers={"Accept": "application/sparql-results+json"}
    )
    assert response.status_code == 200, response.text
    return {b["x"]["value"] for b in response.json()["results"]["bindings"]}


def derived_columns_query(column: str) -> str:
    return f"""
        PREFIX prov: <http://www.w3.org/ns/prov#>
        SELECT DISTINCT ?x WHERE {{ GRAPH ?g {{ <{column}> prov:wasDerivedFrom+ ?x }} }}
    """


# ---------------------------------------------------------------------- the mapping


def test_start_then_complete_give_one_activity_with_both_times(client):
    run = node(client, run_iri(TILE_RUN))
    assert (run["startTime"], run["endTime"]) == (STARTED, ENDED)
    assert values(run, ml("status")) == ["completed"]


def test_the_run_is_a_data_transformation_execution_of_its_job_plan(client):
    plan = node(client, job_iri("airflow", "survey.tile"))
    assert node(client, run_iri(TILE_RUN))["class"] == "DataTransformationExecution"
    assert plan["class"] == "DataTransformation"
    assert plan["id"] in upstream(client, run_iri(TILE_RUN))


def test_the_output_was_generated_by_the_run_and_derived_from_the_input(client):
    reached = upstream(client, dataset_iri(STORE, TILES))
    assert {run_iri(TILE_RUN), dataset_iri(STORE, RAW)} <= reached


def test_an_output_column_lineage_reaches_its_input_column_over_rest(client):
    reached = upstream(client, column_iri(STORE, TILES, "mean_amplitude"))
    assert column_iri(STORE, RAW, "amplitude") in reached
    assert column_iri(STORE, RAW, "region") not in reached


def test_an_output_column_lineage_reaches_its_input_column_over_sparql(client):
    found = sparql_values(client, derived_columns_query(column_iri(STORE, TILES, "region")))
    assert found == {column_iri(STORE, RAW, "region")}


def test_a_dataset_wide_column_dependency_derives_the_output_from_that_column(client):
    found = sparql_values(
        client,
        f"""PREFIX prov: <http://www.w3.org/ns/prov#>
        SELECT ?x WHERE {{ GRAPH ?g {{
            <{dataset_iri(STORE, TILES)}> prov:wasDerivedFrom ?x }} }}""",
    )
    assert found == {dataset_iri(STORE, RAW), column_iri(STORE, RAW, "quality")}


def test_schema_fields_become_member_columns_with_their_types(client):
    found = sparql_values(
        client,
        f"""PREFIX prov: <http://www.w3.org/ns/prov#>
        PREFIX ol: <{OPENLINEAGE}>
        SELECT ?x WHERE {{ GRAPH ?g {{
            <{dataset_iri(STORE, RAW)}> prov:hadMember ?x . ?x ol:fieldType "DOUBLE" }} }}""",
    )
    assert found == {column_iri(STORE, RAW, f) for f in ("amplitude", "quality")}


def test_the_schema_facet_is_kept_as_an_attribute_of_the_dataset(client):
    dataset = node(client, dataset_iri(STORE, RAW))
    (facet,) = values(dataset, OPENLINEAGE + "datasetFacet.schema")
    assert [f["name"] for f in json.loads(facet)["fields"]] == [
        "trace",
        "amplitude",
        "region",
        "quality",
    ]
    assert values(dataset, ml("dataStore")) == [STORE] and dataset["class"] == "DomainData"


def test_a_column_transformation_is_kept_on_its_derivation(client):
    column = column_iri(STORE, TILES, "mean_amplitude")
    response = client.get("/api/v1/lineage", params={"id": column, "depth": 1})
    (edge,) = [e for e in response.json()["edges"] if e["kind"] == "wasDerivedFrom"]
    assert [OPENLINEAGE + "transformationSubtype", "AGGREGATION"] in edge["attributes"]


def test_the_parent_run_facet_makes_the_run_informed_by_its_parent(client):
    found = sparql_values(
        client,
        f"""PREFIX prov: <http://www.w3.org/ns/prov#>
        SELECT ?x WHERE {{ GRAPH ?g {{ <{run_iri(TILE_RUN)}> prov:wasInformedBy ?x }} }}""",
    )
    assert found == {run_iri(DAG_RUN)}


def test_a_fail_event_marks_the_run_failed_with_its_error_message(client):
    run = node(client, run_iri(QC_RUN))
    assert values(run, ml("status")) == ["failed"] and run["endTime"] == ENDED
    assert values(run, ml("errorMessage")) == ["quality below threshold in region north"]


def test_nested_schema_fields_become_columns_named_by_their_path():
    nested = schema_dataset.SchemaDatasetFacetFields(
        name="location",
        type="STRUCT",
        fields=[schema_dataset.SchemaDatasetFacetFields(name="lat", type="DOUBLE")],
    )
    facet = schema_dataset.SchemaDatasetFacet(fields=[nested])
    survey = InputDataset(namespace=STORE, name="surveys", facets={"schema": facet})
    mapped = map_run_event(
        as_json(event(RunState.START, QC_RUN, "survey.qc", STARTED, inputs=[survey]))
    )
    columns = {
        r.id for r in mapped.bundle.records if isinstance(r, Element) and r.ml_class == "Feature"
    }
    assert columns == {column_iri(STORE, "surveys", c) for c in ("location", "location.lat")}


def test_an_abort_event_marks_the_run_failed_as_aborted():
    mapped = map_run_event(as_json(event(RunState.ABORT, QC_RUN, "survey.qc", ENDED)))
    (run,) = [r for r in mapped.bundle.records if isinstance(r, Element) and r.id == mapped.run]
    assert (ml("status"), "failed") in run.attributes and (
        ml("errorType"),
        "ABORT",
    ) in run.attributes


def test_a_dataset_is_the_entity_capture_names_by_the_same_reference():
    assert dataset_iri(STORE, RAW) == ids.reference_iri(STORE, RAW)


def test_a_completed_run_conforms_to_the_prov_ml_shapes(client):
    bundle = client.app.state.services.sql.get_bundle(
        f"{ids.base_iri()}openlineage/bundle/{TILE_RUN}"
    )
    report = validate(bundle_to_rdf(bundle, shortcuts=True))
    assert report.conforms, report.text


# ------------------------------------------------------------------ idempotence, errors


def test_posting_the_same_events_again_changes_nothing(client):
    store = client.app.state.services.sql
    before = store.checksum()
    answers = [post(client, as_json(ev)).json() for ev in (tile_start(), tile_complete())]
    assert store.checksum() == before
    assert [a["inserted"] + a["merged"] for a in answers] == [0, 0]


def test_the_answer_names_the_run_job_and_datasets(client):
    answer = post(client, as_json(tile_complete())).json()
    assert answer["run"] == run_iri(TILE_RUN) and answer["eventType"] == "COMPLETE"
    assert answer["job"] == job_iri("airflow", "survey.tile")
    assert (answer["inputs"], answer["outputs"]) == (
        [dataset_iri(STORE, RAW)],
        [dataset_iri(STORE, TILES)],
    )


def test_a_second_end_time_for_a_run_is_a_conflict_that_stores_nothing(client):
    store = client.app.state.services.sql
    before = store.checksum()
    later = as_json(tile_complete()) | {"eventTime": "2026-01-05T11:00:00+00:00"}
    response = post(client, later)
    assert response.status_code == 409 and store.checksum() == before


MISSING = object()
COLUMN_FIELD = ("outputs", 0, "facets", "columnLineage", "fields", "region", "inputFields", 0)

#: (where in the COMPLETE event, what to put there, the field the answer must name)
MALFORMED: list[tuple[tuple[str | int, ...], Any, str]] = [
    (("run", "runId"), MISSING, "run.runId"),
    (("run", "runId"), "not-a-uuid", "run.runId"),
    (("eventTime",), "yesterday", "eventTime"),
    (("eventTime",), "2026-01-05", "eventTime"),
    (("eventType",), "DONE", "eventType"),
    (("job", "name"), 42, "job.name"),
    (("inputs",), {"name": "x"}, "inputs"),
    (("inputs", 0, "namespace"), None, "inputs[0].namespace"),
    (
        (*COLUMN_FIELD, "field"),
        7,
        "outputs[0].facets.columnLineage.fields.region.inputFields[0].field",
    ),
    (("run", "facets", "parent"), "cold", "run.facets.parent"),
]


def broken(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """The COMPLETE event with ``value`` at ``path`` (or nothing there, for MISSING)."""
    body = as_json(tile_complete())
    inner: Any = body
    for key in path[:-1]:
        inner = inner[key]
    if value is MISSING:
        del inner[path[-1]]
    else:
        inner[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("path", "value", "field"),
    MALFORMED,
    ids=[f"{field}={'missing' if v is MISSING else repr(v)}" for _, v, field in MALFORMED],
)
def test_a_malformed_event_is_refused_naming_the_field_and_stores_nothing(
    client, path, value, field
):
    store = client.app.state.services.sql
    before = store.checksum()
    response = post(client, broken(path, value))
    assert response.status_code == 422, response.text
    assert response.json()["details"]["field"] == field
    assert store.checksum() == before


def test_a_body_that_is_not_json_is_a_parse_error(client):
    response = client.post(
        ENDPOINT, content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"] == "parse_error"


def test_the_write_token_is_required_when_one_is_configured(tmp_path):
    with serving(tmp_path, write_token=TOKEN) as service:
        assert post(service, as_json(tile_start())).status_code == 401
        wrong = post(service, as_json(tile_start()), Authorization="Bearer nope")
        right = post(service, as_json(tile_start()), Authorization=f"Bearer {TOKEN}")
        assert (wrong.status_code, right.status_code) == (403, 200)


# -------------------------------------------------------------------- a real server


def test_the_openlineage_http_transport_reports_into_a_real_server(tmp_path):
    store = f"sqlite:///{tmp_path / 'provml.sqlite'}"
    with provml_serve(store, tmp_path) as url:
        config = HttpConfig(
            url=url,
            endpoint="api/v1/openlineage",
            auth=ApiKeyTokenProvider({"apiKey": TOKEN}),
            compression=HttpCompression.GZIP,
        )
        client = OpenLineageClient(transport=HttpTransport(config))
        for ev in (tile_start(), tile_complete()):
            client.emit(ev)
        wait_projected(url)
        column = column_iri(STORE, TILES, "mean_amplitude")
        lineage = httpx.get(url + "/api/v1/lineage", params={"id": column, "direction": "up"})
        query = derived_columns_query(column)
        answer = httpx.get(
            url + "/sparql",
            params={"query": query},
            headers={"Accept": "application/sparql-results+json"},
        )
    assert column_iri(STORE, RAW, "amplitude") in {n["id"] for n in lineage.json()["nodes"]}
    assert {b["x"]["value"] for b in answer.json()["results"]["bindings"]} == {
        column_iri(STORE, RAW, "amplitude")
    }


def test_the_prov_type_of_a_column_is_feature(client):
    column = node(client, column_iri(STORE, RAW, "amplitude"))
    assert column["class"] == "Feature" and {"@id": ml("Feature")} in values(column, PROV_TYPE)
