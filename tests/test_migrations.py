"""The Alembic migrations: they build exactly the schema in provml.store.models.

Run against a fresh database on each backend (SQLite file, real PostgreSQL).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.dialects import postgresql

from provml.errors import SchemaOutdated, StoreUnavailable
from provml.records import Bundle, Element, Relation
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


def collations(store: SQLStore) -> dict[tuple[str, str], str | None]:
    """The collation of every text column of provml's tables, as PostgreSQL reports it."""
    query = sa.text(
        "SELECT table_name, column_name, collation_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND data_type IN ('text', 'character varying')"
    )
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return {(t, c): collation for t, c, collation in rows if t in metadata.tables}


def bytewise_in_the_models() -> dict[tuple[str, str], str | None]:
    """What the models ask for: "C" where a column's PostgreSQL type says COLLATE "C"."""
    dialect = postgresql.dialect()
    expected = {}
    for table in metadata.tables.values():
        for column in table.columns:
            rendered = column.type.compile(dialect=dialect)
            if rendered.startswith(("TEXT", "VARCHAR")):
                expected[table.name, column.name] = "C" if 'COLLATE "C"' in rendered else None
    return expected


@pytest.mark.postgres
def test_key_columns_compare_bytes_on_postgresql_and_downgrade_restores_the_default(
    postgres_url,
):
    # compare_metadata does not notice a missing collation: check it here.
    store = SQLStore(postgres_url)
    try:
        store.upgrade()
        expected = bytewise_in_the_models()
        assert {("nodes", "iri"), ("lineage_edges", "subject"), ("bundles", "id")} <= {
            key for key, collation in expected.items() if collation == "C"
        }
        assert expected["nodes", "label"] is None
        assert collations(store) == expected
        store.downgrade("0003")
        assert set(collations(store).values()) == {None}
    finally:
        store.close()


def test_records_read_back_the_same_after_0004_down_and_up_again(fresh):
    # The collation change rewrites columns that keys and foreign keys hold.
    fresh.upgrade()
    bundle = Bundle(
        EX + "bundle",
        (
            Element("entity", EX + "raw.segy"),
            Element("entity", EX + "cube"),
            Relation("wasDerivedFrom", EX + "cube", EX + "raw.segy"),
        ),
    )
    fresh.ingest([bundle])
    fresh.downgrade("0003")
    fresh.upgrade()
    assert fresh.current_revision() == fresh.head_revision()
    assert fresh.get_bundle(bundle.id) == bundle
    assert [n.id for n in fresh.find_nodes()] == [EX + "cube", EX + "raw.segy"]
    fresh.ingest([Bundle(EX + "later", (Element("entity", EX + "cube"),))])
    assert fresh.get_node(EX + "cube").bundles == (EX + "bundle", EX + "later")


def test_0005_drops_the_foreign_keys_and_its_downgrade_restores_them(fresh):
    def foreign_keys() -> set[tuple[str, str]]:
        inspector = sa.inspect(fresh.engine)
        return {
            (table, fk["referred_table"])
            for table in ("nodes", "relations", "lineage_edges", "outbox")
            for fk in inspector.get_foreign_keys(table)
        }

    fresh.upgrade()
    fresh.ingest([Bundle(EX + "bundle", (Relation("used", EX + "run", EX + "raw.segy"),))])
    assert foreign_keys() == set()
    fresh.downgrade("0004")
    assert foreign_keys() == {
        ("nodes", "bundles"),
        ("relations", "bundles"),
        ("lineage_edges", "relations"),
        ("outbox", "bundles"),
    }
    fresh.upgrade()
    assert foreign_keys() == set()
    assert fresh.dangling_rows() == {"nodes": 0, "relations": 0, "outbox": 0, "lineage_edges": 0}


def test_0006_orders_the_description_index_by_content_and_its_downgrade_restores_it(fresh):
    def index_columns() -> list[str]:
        (index,) = [
            i
            for i in sa.inspect(fresh.engine).get_indexes("nodes")
            if i["column_names"][0] == "iri"
        ]
        return index["column_names"]

    fresh.upgrade()
    bundle = Bundle(EX + "bundle", (Element("entity", EX + "cube"),))
    fresh.ingest([bundle, Bundle(EX + "other", (Element("entity", EX + "cube"),))])
    assert index_columns() == ["iri", "digest", "bundle_id"]
    fresh.downgrade("0005")
    assert index_columns() == ["iri", "bundle_id", "digest"]
    fresh.upgrade()
    assert index_columns() == ["iri", "digest", "bundle_id"]
    assert fresh.get_node(EX + "cube").bundles == (EX + "bundle", EX + "other")
