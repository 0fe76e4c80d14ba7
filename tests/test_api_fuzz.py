"""Property-based fuzzing of the service from its own OpenAPI schema (schemathesis).

Every operation gets generated requests against a real ``provml serve`` holding the
test story; no answer may be a server error, and every answer must match the schema
the service documents for it (status, content type, body).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)
from test_api_server import TOKEN, post_story, provml_serve

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    tmp_path = tmp_path_factory.mktemp("fuzz")
    store = f"sqlite:///{tmp_path / 'provml.sqlite'}"
    with provml_serve(store, tmp_path, PROVML_SPARQL_TIMEOUT="2") as url:
        post_story(url)
        yield url


def operations() -> list[str]:
    """The documented operations, read from the app without starting it."""
    from provml.api import Settings, create_app

    spec = create_app(Settings()).openapi()
    return [f"{method.upper()} {path}" for path, item in spec["paths"].items() for method in item]


@pytest.mark.parametrize("operation", operations())
def test_no_generated_request_gets_a_server_error_or_an_undocumented_answer(server, operation):
    method, path = operation.split(" ", 1)
    api = schemathesis.openapi.from_url(server + "/openapi.json")
    found = api[path][method]

    @given(case=found.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case) -> None:
        case.call_and_validate(
            base_url=server, headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS
        )

    check()
