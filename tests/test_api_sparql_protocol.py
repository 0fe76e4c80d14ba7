"""The W3C SPARQL 1.1 Protocol tests (``sparql11/protocol/manifest.ttl``) against ``/sparql``.

The manifest describes each test as HTTP requests in RDF (method, path and query
string, headers, body with its character encoding) and the expected response (status
class, result format, boolean answer). Each test's ``ut:graphData`` files are loaded
into the RDF store as named graphs before the first query. The endpoint is read-only
by design, so the tests that expect an update to succeed are expected failures; the
ones that expect a bad update to be refused pass like any other.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from conftest import conformance_dir
from fastapi.testclient import TestClient

from provml.api import Settings, create_app

MF = "http://www.w3.org/2001/sw/DataAccess/tests/test-manifest#"
HT = "http://www.w3.org/2011/http#"
HTS = "http://www.w3.org/2011/http-statusCodes#"
UT = "http://www.w3.org/2009/sparql/tests/test-update#"
CNT = "http://www.w3.org/2011/content#"
DAWGT = "http://www.w3.org/2001/sw/DataAccess/tests/test-dawg#"
RDFS_LABEL = "http://www.w3.org/2000/01/rdf-schema#label"

#: The media types each expected result format may come in.
FORMATS = {
    "tabular": {
        "application/sparql-results+json",
        "application/sparql-results+xml",
        "text/csv",
        "text/tab-separated-values",
    },
    "boolean": {"application/sparql-results+json", "application/sparql-results+xml"},
    "RDF": {"text/turtle", "application/n-triples", "application/rdf+xml", "application/ld+json"},
}
READ_ONLY = "the endpoint is read-only by design (issue 4): updates are refused"
SUMMARY: dict[str, int] = {}


def _manifest():
    import rdflib

    path = conformance_dir() / "sparql/rdf-tests/sparql11/protocol/manifest.ttl"
    return rdflib.Graph().parse(path, format="turtle")


def _tests() -> list[dict[str, Any]]:
    import rdflib
    from rdflib.collection import Collection

    g = _manifest()

    def one(subject: Any, predicate: str) -> Any:
        return g.value(subject, rdflib.URIRef(predicate))

    tests = []
    for test in g.subjects(rdflib.RDF.type, rdflib.URIRef(MF + "ProtocolTest")):
        if (test, rdflib.URIRef(DAWGT + "approval"), rdflib.URIRef(DAWGT + "Approved")) not in g:
            continue
        graphs = [
            (Path(str(one(d, UT + "graph")).removeprefix("file://")), str(one(d, RDFS_LABEL)))
            for d in g.objects(test, rdflib.URIRef(UT + "graphData"))
        ]
        requests = []
        for request in Collection(g, one(one(test, MF + "action"), HT + "requests")):
            body = one(request, HT + "body")
            headers = {}
            if one(request, HT + "headers") is not None:
                for header in Collection(g, one(request, HT + "headers")):
                    headers[str(one(header, HT + "fieldName"))] = str(
                        one(header, HT + "fieldValue")
                    )
            response = one(request, HT + "resp")
            requests.append(
                {
                    "method": str(one(request, HT + "methodName")),
                    "path": str(one(request, HT + "absolutePath")),
                    "headers": headers,
                    "body": None
                    if body is None
                    else str(one(body, CNT + "chars")).encode(
                        str(one(body, CNT + "characterEncoding") or "UTF-8")
                    ),
                    "status": {
                        int(str(s).removeprefix(HTS + "StatusCode")[0])
                        for s in g.objects(response, rdflib.URIRef(MF + "expectedStatus"))
                    },
                    "format": str(one(response, MF + "expectedFormat") or "") or None,
                    "boolean": one(response, MF + "expectedBoolean"),
                }
            )
        tests.append({"id": str(test).rsplit("#", 1)[-1], "graphs": graphs, "requests": requests})
    return sorted(tests, key=lambda t: t["id"])


def _cases() -> list:
    try:
        tests = _tests()
    except pytest.skip.Exception:
        return []
    return [pytest.param(t, id=t["id"]) for t in tests]


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Iterator[TestClient]:
    import rdflib

    app = create_app(Settings(store=str(tmp_path_factory.mktemp("protocol") / "store")))
    with TestClient(app) as client:
        services = app.state.services
        services.projector.wake()
        assert services.projector.wait_idle(20)  # the first projection clears the store
        dataset = services.rdf.as_rdflib_dataset()  # test data is not PROV: load it directly
        for path, name in {pair for test in _tests() for pair in test["graphs"]}:
            dataset.graph(rdflib.URIRef(name)).parse(path, format="nt")
        yield client
    print("\nW3C SPARQL 1.1 protocol tests through /sparql:", SUMMARY)


def _check(response: Any, expected: dict[str, Any]) -> str | None:
    """What is wrong with ``response``, or None."""
    if response.status_code // 100 not in expected["status"]:
        return f"status {response.status_code}, expected {sorted(expected['status'])}xx"
    media_type = response.headers.get("content-type", "").split(";")[0].strip()
    if expected["format"] and media_type not in FORMATS[expected["format"]]:
        return f"{media_type!r} is not a {expected['format']} result format"
    if expected["boolean"] is not None:
        answer = json.loads(response.content)["boolean"]
        if answer is not expected["boolean"].toPython():
            return f"answered {answer}, expected {expected['boolean']}"
    return None


@pytest.mark.parametrize("test", _cases())
def test_protocol_suite_requests_get_the_expected_responses(client, test):
    problems = []
    for request in test["requests"]:
        parts = urlsplit(request["path"])
        # The suite's endpoint is /sparql/; its query strings repeat parameters.
        response = client.request(
            request["method"],
            "/sparql",
            params=parse_qsl(parts.query, keep_blank_values=True),
            content=request["body"],
            headers=request["headers"],
        )
        problem = _check(response, request)
        if problem:
            problems.append(f"{request['method']} {request['path'][:80]}: {problem}")
    outcome = "passed" if not problems else "failed"
    if problems and test["id"].startswith("update_"):
        outcome = "refused updates (read-only by design)"
    SUMMARY[outcome] = SUMMARY.get(outcome, 0) + 1
    if outcome.startswith("refused"):
        pytest.xfail(READ_ONLY)
    assert not problems, problems
