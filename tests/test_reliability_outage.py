"""Database outage during ingest, on the test's own PostgreSQL database.

The shared PostgreSQL server keeps running (other tests use it): the test database
stops taking connections (``ALTER DATABASE … ALLOW_CONNECTIONS false``) and every
connection to it is ended with ``pg_terminate_backend``, for a few seconds, while
capture clients stream to ``provml serve``. The service answers 503 with Retry-After,
/readyz goes red then green, and once the clients have retried nothing is lost or
duplicated.
"""

from __future__ import annotations

import time

import httpx
import pytest
from conftest import _admin_connect
from test_api import GZIP_JSON, RAW, batch, curation
from test_api_server import TOKEN
from test_reliability_crash import (
    Server,
    migrated,
    read_client,
    start_client,
    stored_records,
    summarise,
    wait_clients,
)

from provml.store.sql import SQLStore


def set_connections(database: str, allowed: bool) -> int:
    """Allow or refuse connections to ``database``; when refusing, end the open ones."""
    with _admin_connect() as admin:
        admin.execute(
            f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {"true" if allowed else "false"}'
        )
        if allowed:
            return 0
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
        return len(rows)


@pytest.mark.postgres
def test_an_outage_of_the_database_gives_503_with_retry_after_and_loses_nothing(
    postgres_url, tmp_path
):
    database = postgres_url.rsplit("/", 1)[1]
    server = Server(migrated(postgres_url), tmp_path)
    server.start()
    clients = [
        start_client(server.url, tmp_path, f"outage-client-{n}", 160, 0.05) for n in range(2)
    ]
    outs = [tmp_path / f"outage-client-{n}" for n in range(2)]
    headers = {**GZIP_JSON, "Authorization": f"Bearer {TOKEN}"}
    probe = batch([curation(1, RAW[:2])])
    readiness: list[int] = []
    refused: list[httpx.Response] = []
    try:
        time.sleep(2)
        terminated = set_connections(database, allowed=False)
        outage_started = time.monotonic()
        try:
            while time.monotonic() - outage_started < 4:
                readiness.append(httpx.get(server.url + "/readyz", timeout=10).status_code)
                answer = httpx.post(
                    server.url + "/api/v1/records", content=probe, headers=headers, timeout=10
                )
                if answer.status_code != 200:
                    refused.append(answer)
                time.sleep(0.2)
        finally:
            set_connections(database, allowed=True)
        outage = time.monotonic() - outage_started
        recovered_after = None
        while recovered_after is None or readiness[-1] != 200:
            readiness.append(httpx.get(server.url + "/readyz", timeout=10).status_code)
            recovered_after = time.monotonic() - outage_started - outage
            assert recovered_after < 30, "/readyz did not turn green again"
            time.sleep(0.1)
        after = httpx.post(server.url + "/api/v1/records", content=probe, headers=headers)
        codes = wait_clients(clients, 180)
    finally:
        server.stop()
    reports = [read_client(o) for o in outs]
    with SQLStore(postgres_url) as store:
        stored = stored_records(store)
    probe_bundle = curation(1, RAW[:2]).id  # the test's own probe, not a client's
    figures = summarise(reports, [k for k in stored if k[1] != probe_bundle])
    client_503s = sum(
        1
        for o in outs
        for line in (o / "notes.jsonl").read_text().splitlines()
        if '"failed"' in line and "HTTP 503" in line
    )
    print(
        f"database outage: {outage:.1f} s, connections terminated {terminated}, "
        f"/readyz answers {readiness[0]} ... {readiness[-1]} "
        f"({readiness.count(503)} x 503), probe refusals {[r.status_code for r in refused]}, "
        f"green again {recovered_after:.1f} s after, clients saw 503 {client_503s} times"
    )
    for name, value in figures.items():
        print(f"  {name}: {value}")
    assert readiness[0] == 503 and readiness[-1] == 200
    assert refused and all(r.status_code == 503 for r in refused)
    assert all(r.headers.get("retry-after", "").isdigit() for r in refused)
    assert all(r.json()["error"] == "store_unavailable" for r in refused)
    assert after.status_code == 200
    assert codes == [0, 0]
    assert all(r.stats["delivered"] for r in reports), [r.stats for r in reports]
    assert figures["records spooled"] > 0
    assert figures["lost (captured, not stored)"] == 0
    assert figures["lost (acknowledged, not stored)"] == 0
    assert figures["duplicates"] == 0 and figures["dropped"] == 0
