"""The Alembic migrations: they build exactly the schema in provml.store.models.

Run against a fresh database on each backend (SQLite file, real PostgreSQL).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from provml.errors import SchemaOutdated, StoreUnavailable
from provml.records import Bundle, Element
from provml.store.models import metadata
from provml.store.sql import SQLStore

EX = "https://example.org/"


@pytest.fixture
def fresh(store_url):
    """A store on an empty database: nothing migrated yet."""
    store = SQLStore(store_url)
    yield store
    store.close()


def schema_differences(store: SQLStore) -> list:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, metadata)


def test_upgrade_builds_exactly_the_models_schema(fresh):
    fresh.upgrade()
    assert schema_differences(fresh) == []


def test_an_empty_database_is_at_no_revision_and_head_after_upgrade(fresh):
    assert fresh.current_revision() is None
    fresh.upgrade()
    assert fresh.current_revision() == fresh.head_revision()
    fresh.check_schema()  # does not raise


def test_upgrade_needs_no_alembic_ini_in_the_working_directory(fresh, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fresh.upgrade()
    assert fresh.current_revision() == fresh.head_revision()


def test_downgrade_to_base_removes_every_table_and_upgrade_restores_them(fresh):
    fresh.upgrade()
    fresh.ingest([Bundle(EX + "bundle", (Element("entity", EX + "thing"),))])
    fresh.downgrade("base")
    assert fresh.current_revision() is None
    assert set(sa.inspect(fresh.engine).get_table_names()) <= {"alembic_version"}
    with pytest.raises(SchemaOutdated):
        fresh.list_bundles()
    fresh.upgrade()
    assert schema_differences(fresh) == []
    assert fresh.list_bundles() == []


def test_a_schema_newer_than_this_provml_asks_to_upgrade_provml(fresh):
    fresh.upgrade()
    with fresh.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'from-the-future'"))
    with pytest.raises(StoreUnavailable) as caught:
        fresh.check_schema()
    assert not isinstance(caught.value, SchemaOutdated)
    assert "upgrade provml" in str(caught.value)


def test_upgrading_a_current_store_runs_no_migration_environment(fresh, monkeypatch):
    import alembic.command

    fresh.upgrade()

    def refuse(*args, **kwargs):
        raise AssertionError("a current store ran Alembic's upgrade again")

    # Alembic's migration context is process-wide; another library's migrations in the
    # same process (MLflow's) collide with ours if we enter it without need.
    monkeypatch.setattr(alembic.command, "upgrade", refuse)
    fresh.upgrade()
    assert fresh.current_revision() == fresh.head_revision()
