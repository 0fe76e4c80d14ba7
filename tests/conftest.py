"""Shared fixtures: stores on SQLite and on the real PostgreSQL server.

PostgreSQL tests create a database of their own and drop it afterwards. The server is
named by ``PROVML_TEST_POSTGRES_URL`` (default: the local server with trust auth). In
CI (``CI`` set) an unreachable server fails the tests instead of skipping them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_URL = os.environ.get(
    "PROVML_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
CONFORMANCE = Path(__file__).resolve().parents[2] / "shared" / "conformance"


@pytest.fixture(autouse=True)
def own_digest_cache(tmp_path_factory, monkeypatch):
    """Capture's cross-process digest cache in a directory of the test session's own."""
    cache = tmp_path_factory.getbasetemp() / "digests.jsonl"
    monkeypatch.setenv("PROVML_DIGEST_CACHE", str(cache))


def conformance_dir() -> Path:
    """The shared third-party test data; tests that need it skip outside this workspace."""
    if not CONFORMANCE.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"conformance data missing at {CONFORMANCE}")
        pytest.skip(f"conformance data not found at {CONFORMANCE}")
    return CONFORMANCE


def _admin_connect():
    import psycopg

    dsn = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    return psycopg.connect(dsn, autocommit=True, connect_timeout=5)


def _fresh_postgres_database(prefix: str, options: str = "") -> Iterator[str]:
    """Create a database (``CREATE DATABASE … options``), yield its URL, drop it."""
    import psycopg

    try:
        admin = _admin_connect()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}")
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}" {options}')
    base, _, _ = POSTGRES_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with _admin_connect() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    yield from _fresh_postgres_database("provml_test_")


@pytest.fixture
def icu_postgres_url() -> Iterator[str]:
    """As ``postgres_url``, on a database whose collation sorts like a dictionary
    (ICU en-US: "a", "a_c", "a-b", "B")."""
    yield from _fresh_postgres_database(
        "provml_test_icu_",
        "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'",
    )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'provml.sqlite'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """The same test once per SQL backend."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(store_url: str):
    """A migrated, empty SQL record store, once per backend."""
    from provml.store.sql import SQLStore

    s = SQLStore(store_url)
    s.upgrade()
    try:
        yield s
    finally:
        s.close()


# ------------------------------------------------------- reliability figures in the log

_FIGURES: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep what a passing reliability test printed: its figures (issue 7 asks for the
    numbers in the CI log, and pytest shows captured output only for failures)."""
    if report.when == "call" and report.passed and "test_reliability_" in report.nodeid:
        text = report.capstdout.strip()
        if text:
            _FIGURES.append((report.nodeid, text))


def pytest_terminal_summary(terminalreporter) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures (printed by the tests)")
    for nodeid, text in _FIGURES:
        terminalreporter.write_line(nodeid)
        for line in text.splitlines():
            terminalreporter.write_line("    " + line)
