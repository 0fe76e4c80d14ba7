"""Hostile input against the ingest endpoints and /sparql: a 4xx with a clear message
(or the SPARQL time-limit error), never a 5xx, and the store unchanged.

The corpus runs once per SQL backend (SQLite and the real PostgreSQL server), in
process; each entry's answer is checked for status, error code and a phrase of its
message, and the SQL checksum is taken before and after the whole corpus. Hypothesis
then generates record batches of every shape (wrong types, junk kinds, odd strings,
nesting) and no answer may be a server error.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_api import GZIP_JSON, batch, the_story

from provml.api import Settings, create_app
from provml.store.sql import SQLStore
from provml.vocab import ELEMENT_KINDS, RELATIONS

BODY_LIMIT = 256 * 1024
JSON = {"Content-Type": "application/json"}
B = "https://provml.local/hostile/bundle"
E = "https://provml.local/hostile/"
# A relation stored by the fixture; the corpus sends its id again with other content.
STORED_RELATION = {"kind": "used", "id": E + "rel/1", "subject": E + "act", "object": E + "data-1"}


def records_body(*records: dict[str, Any], bundle: Any = B) -> bytes:
    return json.dumps({"bundles": [{"id": bundle, "records": list(records)}]}).encode()


def raw_records_body(record: bytes) -> bytes:
    """A batch around one record given as raw JSON text (for what json.dumps won't write)."""
    return b'{"bundles": [{"id": "' + B.encode() + b'", "records": [' + record + b"]}]}"


def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


@dataclass(frozen=True)
class Hostile:
    """One hostile request and what a careful service answers."""

    name: str
    status: int
    code: str
    phrase: str  # a part of the message a person acts on
    path: str = "/api/v1/records"
    method: str = "POST"
    content: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    params: dict[str, str] = field(default_factory=dict)


def sparql(name: str, query: str, status: int, code: str, phrase: str) -> Hostile:
    return Hostile(
        name, status, code, phrase, "/sparql", "GET", headers={}, params={"query": query}
    )


CORPUS: list[Hostile] = [
    # -- not JSON, not a batch
    Hostile("malformed JSON", 400, "parse_error", "not JSON", content=b'{"bundles": [}'),
    Hostile("truncated JSON", 400, "parse_error", "not JSON", content=b'{"bundles": [{"id": "htt'),
    Hostile("empty body", 400, "parse_error", "not JSON", content=b""),
    Hostile(
        "non-UTF-8 bytes",
        400,
        "parse_error",
        "utf-8",
        content=b'{"bundles": [{"id": "https://x.org/\xff\xfe", "records": []}]}',
    ),
    Hostile("a JSON list", 422, "invalid_record", '{"bundles"', content=b"[1, 2]"),
    Hostile("bundles not a list", 422, "invalid_record", '{"bundles"', content=b'{"bundles": 7}'),
    Hostile(
        "a bundle that is a number", 422, "invalid_record", "bundle", content=b'{"bundles": [1]}'
    ),
    Hostile(
        "records not a list",
        422,
        "invalid_record",
        "records must be a list",
        content=json.dumps({"bundles": [{"id": B, "records": "all of them"}]}).encode(),
    ),
    # -- wrong types
    Hostile(
        "a bundle id that is a number",
        422,
        "invalid_record",
        "absolute IRI",
        content=records_body(bundle=5),
    ),
    Hostile(
        "an element id that is a list",
        422,
        "invalid_record",
        "id",
        content=records_body({"kind": "entity", "id": ["https://x.org/a"]}),
    ),
    Hostile(
        "a start time that is not a time",
        422,
        "invalid_record",
        "ISO 8601",
        content=records_body({"kind": "activity", "id": E + "a", "startTime": "yesterday"}),
    ),
    Hostile(
        "attributes that are not pairs",
        422,
        "invalid_record",
        "pairs",
        content=records_body({"kind": "entity", "id": E + "a", "attributes": [[1, 2, 3]]}),
    ),
    Hostile(
        "an attribute object with a non-string @value",
        422,
        "invalid_record",
        "must be strings",
        content=records_body(
            {"kind": "entity", "id": E + "a", "attributes": [[E + "p", {"@value": {"@value": 1}}]]}
        ),
    ),
    Hostile(
        "an attribute reference whose @id is a number",
        422,
        "invalid_record",
        "@id must be a string",
        content=records_body(
            {"kind": "entity", "id": E + "a", "attributes": [[E + "p", {"@id": 4}]]}
        ),
    ),
    Hostile(
        "a NaN attribute",
        422,
        "invalid_record",
        "nan",
        content=raw_records_body(
            b'{"kind": "entity", "id": "https://x.org/a", "attributes": [["https://x.org/p", NaN]]}'
        ),
    ),
    Hostile(
        "a language tag that is not BCP 47",
        422,
        "invalid_record",
        "not a BCP 47 tag",
        content=records_body(
            {
                "kind": "entity",
                "id": E + "a",
                "attributes": [[E + "p", {"@value": "hi", "@language": "en_US"}]],
            }
        ),
    ),
    # -- huge strings, deep nesting
    Hostile(
        "an IRI of 200 kB",
        422,
        "invalid_record",
        "longer than",
        content=records_body({"kind": "entity", "id": E + "a" * 200_000}),
    ),
    Hostile(
        "nesting 100 000 levels deep",
        400,
        "parse_error",
        "nested too deeply",
        content=b'{"bundles": [' + nested(100_000).encode() + b"]}",
    ),
    Hostile(
        "an attribute nested 900 levels deep",
        422,
        "invalid_record",
        "unsupported JSON type",
        content=raw_records_body(
            b'{"kind": "entity", "id": "https://x.org/a", "attributes": [["https://x.org/p", '
            + nested(900).encode()
            + b"]]}"
        ),
    ),
    # -- PROV vocabulary
    Hostile(
        "an unknown PROV record kind",
        422,
        "invalid_record",
        "unknown record kind",
        content=records_body({"kind": "wasFrobnicatedBy", "subject": E + "a", "object": E + "b"}),
    ),
    Hostile(
        "an element of unknown kind",
        422,
        "invalid_record",
        "unknown record kind",
        content=records_body({"kind": "thing", "id": E + "a"}),
    ),
    # -- IRIs and text
    Hostile(
        "an IRI with spaces and angle brackets",
        422,
        "invalid_record",
        "absolute IRI",
        content=records_body({"kind": "entity", "id": "http://exa mple/<x>"}),
    ),
    Hostile(
        "a relative IRI",
        422,
        "invalid_record",
        "absolute IRI",
        content=records_body({"kind": "entity", "id": "data/raw.segy"}),
    ),
    Hostile(
        "a relation whose subject is not an IRI",
        422,
        "invalid_record",
        "IRI",
        content=records_body(
            {"kind": "used", "subject": "javascript:alert(1) x", "object": E + "b"}
        ),
    ),
    Hostile(
        "a lone surrogate in an id",
        422,
        "invalid_record",
        "surrogate",
        content=raw_records_body(b'{"kind": "entity", "id": "https://x.org/\\ud800"}'),
    ),
    Hostile(
        "a NUL character in an attribute",
        422,
        "invalid_record",
        "",
        content=records_body(
            {"kind": "entity", "id": E + "nul", "attributes": [[E + "p", "a\u0000b"]]}
        ),
    ),
    # -- contradictions
    Hostile(
        "a stored relation id sent with other content",
        409,
        "conflict",
        "different content",
        content=records_body({**STORED_RELATION, "object": E + "data-2"}),
    ),
    Hostile(
        "one relation id twice with different content in one batch",
        409,
        "conflict",
        "different content",
        content=records_body(
            {"kind": "used", "id": E + "rel/2", "subject": E + "act", "object": E + "x"},
            {"kind": "used", "id": E + "rel/2", "subject": E + "act", "object": E + "y"},
        ),
    ),
    Hostile(
        "a stored entity described as an agent",
        409,
        "conflict",
        "both entity and agent",
        content=records_body({"kind": "agent", "id": E + "data-1"}),
    ),
    Hostile(
        "a good bundle and a bad one in one batch (all or nothing)",
        422,
        "invalid_record",
        "absolute IRI",
        content=json.dumps(
            {
                "bundles": [
                    {"id": B + "-2", "records": [{"kind": "entity", "id": E + "fine"}]},
                    {"id": B + "-3", "records": [{"kind": "entity", "id": "not an iri"}]},
                ]
            }
        ).encode(),
    ),
    # -- bodies and encodings
    Hostile(
        "a body over the limit",
        413,
        "payload_too_large",
        "larger than the limit",
        content=b" " * (BODY_LIMIT + 1),
    ),
    Hostile(
        "a gzip bomb under the limit",
        413,
        "payload_too_large",
        "decompressed",
        content=gzip.compress(b" " * (BODY_LIMIT * 40)),
        headers=GZIP_JSON,
    ),
    Hostile(
        "gzip that is not gzip", 400, "parse_error", "gzip", content=b"plain", headers=GZIP_JSON
    ),
    Hostile(
        "an unknown content encoding",
        415,
        "unsupported_format",
        "Content-Encoding",
        content=b"{}",
        headers={**JSON, "Content-Encoding": "br"},
    ),
    # -- PROV documents
    Hostile(
        "a document in no known format",
        415,
        "unsupported_format",
        "cannot tell the PROV format",
        path="/api/v1/documents",
        content=b"\x00\x01 garbage",
        headers={},
    ),
    Hostile(
        "a PROV-JSON document with an unknown record type",
        400,
        "parse_error",
        "not a PROV-JSON record type",
        path="/api/v1/documents",
        content=b'{"prefix": {"ex": "http://x.org/"}, "wasFooedBy": {"_:u": {}}}',
    ),
    Hostile(
        "a PROV-JSON document nested 100 000 levels deep",
        400,
        "parse_error",
        "PROV-JSON",
        path="/api/v1/documents",
        content=nested(100_000).encode(),
    ),
    Hostile(
        "a PROV-XML document with an external entity",
        400,
        "parse_error",
        "PROV-XML",
        path="/api/v1/documents",
        content=b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<prov:document xmlns:prov="http://www.w3.org/ns/prov#">&e;</prov:document>',
        headers={"Content-Type": "application/xml"},
    ),
    Hostile(
        "a JSON-LD document whose context must be fetched",
        400,
        "parse_error",
        "offline",
        path="/api/v1/documents",
        content=b'{"@context": "http://127.0.0.1:9/context.jsonld", "@id": "http://x.org/a"}',
        headers={"Content-Type": "application/ld+json"},
    ),
    Hostile(
        "an unknown document format parameter",
        415,
        "unsupported_format",
        "unknown format",
        path="/api/v1/documents",
        content=b"{}",
        params={"format": "exe"},
    ),
    Hostile(
        "a document bundle name that is not an IRI",
        422,
        "invalid_record",
        "absolute IRI",
        path="/api/v1/documents",
        content=b"{}",
        params={"bundle": "my bundle"},
    ),
    # -- SPARQL
    sparql(
        "SPARQL INSERT DATA",
        "INSERT DATA { <urn:a> <urn:b> <urn:c> }",
        400,
        "query_rejected",
        "read-only",
    ),
    sparql("SPARQL DELETE WHERE", "DELETE WHERE { ?s ?p ?o }", 400, "query_rejected", "read-only"),
    sparql("SPARQL DROP ALL", "DROP ALL", 400, "query_rejected", "read-only"),
    sparql(
        "SPARQL LOAD a local file", "LOAD <file:///etc/passwd>", 400, "query_rejected", "read-only"
    ),
    sparql(
        "SPARQL SERVICE",
        "SELECT * WHERE { SERVICE <http://127.0.0.1:9/sparql> { ?s ?p ?o } }",
        400,
        "query_rejected",
        "SERVICE",
    ),
    sparql("SPARQL syntax error", "SELECT WHERE {", 400, "query_rejected", "syntax"),
    sparql(
        "SPARQL unknown extension function",
        "SELECT * WHERE { ?s ?p ?o FILTER(<http://x.org/f>(?o)) }",
        400,
        "query_rejected",
        "cannot be evaluated",
    ),
    sparql(
        "SPARQL over the row limit",
        "SELECT * WHERE { ?s ?p ?o }",
        400,
        "row_limit_exceeded",
        "LIMIT and OFFSET",
    ),
    sparql(
        "SPARQL that would run for ever",
        "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l . ?m ?n2 ?o }",
        503,
        "query_timeout",
        "limit of 1 s",
    ),
    Hostile(
        "a SPARQL update as an update operation",
        403,
        "forbidden",
        "read-only",
        path="/sparql",
        content=b"CLEAR ALL",
        headers={"Content-Type": "application/sparql-update"},
    ),
    Hostile(
        "a SPARQL query body that is not UTF-8",
        400,
        "query_rejected",
        "UTF-8",
        path="/sparql",
        content=b"SELECT * WHERE { ?s ?p \xff }",
        headers={"Content-Type": "application/sparql-query"},
    ),
    Hostile(
        "a SPARQL dataset parameter that is not an IRI",
        400,
        "query_rejected",
        "default-graph-uri",
        path="/sparql",
        method="GET",
        headers={},
        params={"query": "ASK {}", "default-graph-uri": "not an iri"},
    ),
]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    """A service holding the test story and one relation with an id, once per backend."""
    if request.param == "sqlite":
        store = str(tmp_path / "store")
    else:
        store = request.getfixturevalue("postgres_url")
        with SQLStore(store) as sql:
            sql.upgrade()
    app = create_app(
        Settings(
            store=store,
            rdf_path=str(tmp_path / "oxigraph"),
            max_body_bytes=BODY_LIMIT,
            sparql_timeout=1.0,
            sparql_max_rows=50,
        )
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        stored = client.post("/api/v1/records", content=batch(the_story()), headers=GZIP_JSON)
        assert stored.status_code == 200, stored.text
        relation = client.post(
            "/api/v1/records",
            content=records_body(
                {"kind": "activity", "id": E + "act"},
                {"kind": "entity", "id": E + "data-1"},
                STORED_RELATION,
            ),
            headers=JSON,
        )
        assert relation.status_code == 200, relation.text
        projector = client.app.state.services.projector
        projector.wake()
        assert projector.wait_idle(30)
        yield client


def send(client: TestClient, case: Hostile) -> Any:
    return client.request(
        case.method,
        case.path,
        content=case.content or None,
        headers=case.headers,
        params=case.params,
    )


def test_every_hostile_input_gets_a_clear_client_error_and_the_store_is_unchanged(service):
    sql = service.app.state.services.sql
    rdf = service.app.state.services.rdf
    before, quads_before = sql.checksum(), rdf.count()
    wrong: list[str] = []
    server_errors = 0
    for case in CORPUS:
        response = send(service, case)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 500 and case.status < 500:
            server_errors += 1
        ok = (
            response.status_code == case.status
            and body.get("error") == case.code
            and case.phrase.lower() in body.get("message", "").lower()
        )
        print(f"  {response.status_code} {body.get('error', '?'):<20} {case.name}")
        if not ok:
            wrong.append(f"{case.name}: {response.status_code} {response.text[:300]}")
    after = sql.checksum()
    print(
        f"hostile inputs tried: {len(CORPUS)}, answered as expected: {len(CORPUS) - len(wrong)}, "
        f"unexpected 5xx: {server_errors}, SQL checksum unchanged: {after == before}, "
        f"RDF quads {quads_before} -> {rdf.count()}"
    )
    assert not wrong, "\n".join(wrong)
    assert server_errors == 0
    assert after == before


def test_a_conflicting_relation_is_reported_and_the_stored_one_is_kept(service):
    sql = service.app.state.services.sql
    response = service.post(
        "/api/v1/records",
        content=records_body({**STORED_RELATION, "object": E + "data-2"}),
        headers=JSON,
    )
    kept = [r for r in sql.get_bundle(B).records if getattr(r, "id", None) == STORED_RELATION["id"]]
    print(f"conflict answer: {response.status_code} {response.json()['message']}")
    assert response.status_code == 409
    assert response.json()["details"]["record"] == STORED_RELATION["id"]
    assert [r.object for r in kept] == [STORED_RELATION["object"]]


def test_dangling_references_are_stored_as_sent_because_prov_allows_them(service):
    # PROV-DM lets a relation name elements described elsewhere (another bundle,
    # another workflow): refusing them would break lineage across workflows. So a
    # dangling reference is not an attack to refuse; it must simply not break reads.
    dangling = {"kind": "used", "subject": E + "ghost-run", "object": E + "ghost-file"}
    stored = service.post(
        "/api/v1/records", content=records_body(dangling, bundle=B + "-d"), headers=JSON
    )
    walk = service.get("/api/v1/lineage", params={"id": E + "ghost-run"})
    print(f"dangling: ingest {stored.status_code}, lineage {walk.status_code}")
    assert stored.status_code == 200 and stored.json()["inserted"] == 1
    assert walk.status_code == 200
    assert {n["id"] for n in walk.json()["nodes"]} == {E + "ghost-run", E + "ghost-file"}


# ------------------------------------------------------------------------- fuzzing

_IRIS = st.sampled_from([E + "a", E + "b", E + "run/1", "urn:uuid:1", "https://x.org/p"])
_JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
_JSON = st.recursive(
    _JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_IRI_OR_JUNK = st.one_of(_IRIS, _IRIS.map(lambda i: i + " x"), st.text(max_size=20), _JSON)
_VALUE = st.one_of(
    _JSON,
    st.fixed_dictionaries({"@id": _IRI_OR_JUNK}),
    st.fixed_dictionaries({"@value": _JSON}, optional={"@type": _IRI_OR_JUNK, "@language": _JSON}),
    st.fixed_dictionaries({"@dt": st.one_of(st.text(max_size=30), _JSON)}),
)
_TIME = st.one_of(st.datetimes().map(lambda d: d.isoformat()), st.text(max_size=30), _JSON)
_KIND = st.one_of(st.sampled_from([*ELEMENT_KINDS, *RELATIONS]), st.text(max_size=12), _JSON)
_RECORD = st.fixed_dictionaries(
    {"kind": _KIND},
    optional={
        "id": _IRI_OR_JUNK,
        "subject": _IRI_OR_JUNK,
        "object": _IRI_OR_JUNK,
        "attributes": st.one_of(
            st.lists(st.tuples(_IRI_OR_JUNK, _VALUE).map(list), max_size=4), _JSON
        ),
        "startTime": _TIME,
        "endTime": _TIME,
        "time": _TIME,
        "extras": st.one_of(st.dictionaries(st.text(max_size=10), _IRI_OR_JUNK, max_size=3), _JSON),
    },
)
_BUNDLE = st.one_of(
    st.fixed_dictionaries(
        {
            "id": st.one_of(st.just(B + "-fuzz"), _IRI_OR_JUNK),
            "records": st.lists(_RECORD, max_size=6),
        },
        optional={
            "parent": _IRI_OR_JUNK,
            "namespaces": st.one_of(
                st.dictionaries(st.text(max_size=5), _IRI_OR_JUNK, max_size=3), _JSON
            ),
            "attributes": _JSON,
        },
    ),
    _JSON,
)
_PAYLOAD = st.one_of(st.fixed_dictionaries({"bundles": st.lists(_BUNDLE, max_size=3)}), _JSON)


def test_generated_record_batches_never_get_a_server_error(tmp_path):
    app = create_app(Settings(store=str(tmp_path / "store"), rdf_path=str(tmp_path / "oxigraph")))
    seen: dict[int, int] = {}
    with TestClient(app, raise_server_exceptions=False) as client:

        @given(payload=_PAYLOAD)
        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
        def check(payload: Any) -> None:
            response = client.post(
                "/api/v1/records", content=json.dumps(payload).encode(), headers=JSON
            )
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (payload, response.text)
            if response.status_code >= 400:
                assert response.json()["message"]

        check()
    print(
        f"generated batches tried: {sum(seen.values())}, by status: {dict(sorted(seen.items()))}, "
        f"5xx seen: {sum(n for s, n in seen.items() if s >= 500)}"
    )


# Text a record may hold: any but NUL (no PostgreSQL text column takes it) and lone
# surrogates (not UTF-8), which records refuse with a 422 naming the field (tested above).
_VALID_TEXT = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=10
)


def test_a_generated_valid_batch_sent_twice_is_stored_once(tmp_path):
    """Whatever valid batch is sent, sending it again changes nothing (idempotent ids)."""
    app = create_app(Settings(store=str(tmp_path / "store"), rdf_path=str(tmp_path / "oxigraph")))
    # Each kind has IRIs of its own, so most batches are accepted; an IRI sent once as
    # an entity and once as an agent cannot happen, the conflict path is tested above.
    element = st.sampled_from(ELEMENT_KINDS).flatmap(
        lambda kind: st.fixed_dictionaries(
            {"kind": st.just(kind), "id": st.sampled_from([E + f"{kind}/{n}" for n in range(4)])},
            optional={"attributes": st.lists(st.tuples(_IRIS, _VALID_TEXT).map(list), max_size=2)},
        )
    )
    valid = st.lists(element, min_size=1, max_size=5)
    tally = {"accepted": 0}
    with TestClient(app, raise_server_exceptions=False) as client:
        sql = client.app.state.services.sql

        @given(records=valid)
        @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
        def check(records: list[dict[str, Any]]) -> None:
            body = records_body(*records, bundle=B + "-valid")
            before = sql.checksum()
            first = client.post("/api/v1/records", content=body, headers=JSON)
            assert first.status_code == 200, first.text
            tally["accepted"] += 1
            assert first.json()["inserted"] + first.json()["merged"] > 0 or (
                sql.checksum() == before
            )
            after = sql.checksum()
            again = client.post("/api/v1/records", content=body, headers=JSON)
            assert again.status_code == 200 and again.json()["inserted"] == 0
            assert sql.checksum() == after

        check()
    print(f"valid generated batches: {tally}")
    assert tally["accepted"] == 100
