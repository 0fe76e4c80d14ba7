"""The SQL store's bulk paths: new bundles without lookups, COPY, grouped descriptions.

A bundle that an ingest creates is written with every record of the batch and no
lookup (nothing of it can be stored yet); bundles stored before are looked up in bulk
(array parameters on PostgreSQL). Element descriptions are read grouped by content.
Each test runs once on SQLite and once on the real PostgreSQL server.
"""

from __future__ import annotations

import pytest
from test_sql_store import (
    EX,
    entity,
    every_relation_kind,
    rich_bundle,
    small_bundle,
)

from provml.errors import Conflict, StoreUnavailable
from provml.records import Bundle, Relation
from provml.store.sql import (
    SQLStore,
    _digest,
    _element_row,
    _relation_row,
    _to_json,
    encode_stored_attributes,
)
from provml.vocab import PROV_LABEL


def workflows(count: int, start: int = 0) -> list[Bundle]:
    """``count`` small workflows sharing one raw file, each with ids on its relations."""
    raw = entity("data/raw", ml_class="DomainData")
    out = []
    for n in range(start, start + count):
        run = entity(f"run/{n}")
        out.append(
            Bundle(
                EX + f"bundle/{n}",
                (
                    raw,
                    run,
                    Relation("used", run.id, raw.id, id=EX + f"relation/{n}/used"),
                    Relation("wasDerivedFrom", run.id, raw.id, extras=(("activity", run.id),)),
                ),
            )
        )
    return out


# ------------------------------------------------------------------------ digests


def test_row_digests_are_those_of_the_whole_content_encoded_at_once():
    # Stores written before the rows were assembled from parts must still recognise a
    # replay as unchanged: the digest is that of the JSON of the whole content.
    for record in rich_bundle().records:
        if isinstance(record, Relation):
            row = _relation_row(EX + "bundle/x", record)
            content = [
                record.kind,
                record.subject,
                record.object,
                record.time.isoformat() if record.time else None,
                [[name, value] for name, value in record.extras],
                encode_stored_attributes(record.attributes, record.id),
            ]
            assert row["digest"] == _digest(_to_json(content), record.id or "")
        else:
            row = _element_row(EX + "bundle/x", record)
            times = [t.isoformat() if t else None for t in (record.start_time, record.end_time)]
            content = [record.kind, record.id, encode_stored_attributes(record.attributes), *times]
            assert row["digest"] == _digest(_to_json(content))


# ------------------------------------------------------------------- new bundles


def test_records_added_later_to_a_new_bundle_follow_the_first_batch_in_order(store):
    first = small_bundle("bundle/grow", entity("data/a"), entity("data/b"))
    store.ingest([first])
    more = small_bundle("bundle/grow", entity("data/b"), entity("data/c"), *every_relation_kind())
    result = store.ingest([more])
    assert (result.inserted, result.unchanged) == (len(more.records) - 1, 1)
    assert store.get_bundle(first.id).records == (*first.records, *more.records[1:])


def test_a_large_batch_of_new_bundles_replayed_with_more_is_stored_once(store):
    batch = workflows(300)
    first = store.ingest(batch)
    after_first = store.checksum()
    again = store.ingest([*batch, *workflows(5, start=300)])
    assert first.inserted == sum(len(b.records) for b in batch)
    assert again.unchanged == first.inserted
    assert again.inserted == sum(len(b.records) for b in workflows(5, start=300))
    assert store.ingest(batch).inserted == 0
    assert store.checksum() != after_first
    assert store.get_bundle(EX + "bundle/302") == workflows(5, start=300)[2]


def test_a_conflict_in_a_stored_bundle_leaves_the_new_bundles_of_the_batch_out(store):
    store.ingest(workflows(3))
    before = store.checksum()
    changed = list(workflows(3))
    used = Relation("used", EX + "run/1", EX + "data/other", id=EX + "relation/1/used")
    changed[1] = Bundle(changed[1].id, (*changed[1].records[:2], used))
    with pytest.raises(Conflict) as caught:
        store.ingest([*workflows(50, start=3), *changed])
    assert caught.value.details["record"] == EX + "relation/1/used"
    assert store.checksum() == before
    assert len(store.list_bundles()) == 3


def test_a_failure_after_the_rows_are_copied_stores_nothing(store, monkeypatch):
    store.ingest(workflows(2))
    before = store.checksum()

    def fail(*_args, **_kwargs):
        raise StoreUnavailable("the server went away after the rows were written")

    # The last step of the transaction, after every COPY (or executemany) has run.
    monkeypatch.setattr(store, "_refresh_statistics", fail)
    with pytest.raises(StoreUnavailable):
        store.ingest([*workflows(40, start=2), *workflows(2)])
    monkeypatch.undo()
    assert store.checksum() == before
    assert [b.id for b in store.list_bundles()] == [EX + "bundle/0", EX + "bundle/1"]
    assert [row.bundle_id for row in store.outbox_pending()] == [EX + "bundle/0", EX + "bundle/1"]
    result = store.ingest(workflows(42))
    assert result.inserted == sum(len(b.records) for b in workflows(40, start=2))


def test_a_merge_into_a_stored_bundle_reads_the_stored_description(store):
    store.ingest([small_bundle("bundle/m", entity("data/m", (PROV_LABEL, "one")))])
    result = store.ingest(
        [small_bundle("bundle/m", entity("data/m", (EX + "k", 2))), *workflows(3)]
    )
    assert (result.merged, result.inserted) == (1, sum(len(b.records) for b in workflows(3)))
    (stored,) = store.get_bundle(EX + "bundle/m").records
    assert stored.attributes == ((PROV_LABEL, "one"), (EX + "k", 2))


# ---------------------------------------------------------------- descriptions


def test_a_node_lists_every_bundle_in_code_point_order_merging_in_that_order(store):
    names = ["b", "B", "a-b", "a_c", "é", "a"]
    for n, name in enumerate(names):
        extra = ((EX + "seen", "early" if name == "B" else "late"),) if n % 2 else ()
        store.ingest([small_bundle(f"bundle/{name}", entity("data/shared", *extra))])
    node = store.get_node(EX + "data/shared")
    assert list(node.bundles) == sorted(EX + f"bundle/{name}" for name in names)
    # "B" sorts first by code point, so its description's attribute comes first.
    assert node.attributes == ((EX + "seen", "early"), (EX + "seen", "late"))


def test_nodes_answers_many_iris_at_once_and_leaves_out_the_unknown(store):
    store.ingest(workflows(30))
    iris = [EX + f"run/{n}" for n in range(30)] + [EX + "data/raw", EX + "data/none"]
    found = store.nodes(iris * 2)
    assert sorted(found) == sorted(set(iris) - {EX + "data/none"})
    assert len(found[EX + "data/raw"].bundles) == 30
    assert found[EX + "run/7"].bundles == (EX + "bundle/7",)


# ----------------------------------------------------------------- PostgreSQL only


@pytest.mark.postgres
def test_a_bulk_load_leaves_statistics_for_the_lookup_columns(postgres_url):
    import psycopg

    store = SQLStore(postgres_url)
    store.upgrade()
    try:
        for start in range(0, 2000, 500):
            store.ingest(workflows(500, start=start))
        dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn) as conn:
            analysed = {
                (table, column)
                for table, column in conn.execute(
                    "SELECT tablename, attname FROM pg_stats WHERE schemaname = current_schema()"
                )
            }
        assert {("nodes", "iri"), ("relations", "key"), ("lineage_edges", "subject")} <= analysed
        assert ("nodes", "attributes") not in analysed  # JSON: never compared, costly
    finally:
        store.close()


@pytest.mark.postgres
def test_a_bulk_load_samples_few_rows_for_its_statistics_and_keeps_the_setting_local(
    postgres_url,
):
    import psycopg

    store = SQLStore(postgres_url)
    store.upgrade()
    dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    try:
        for start in range(0, 2000, 500):
            store.ingest(workflows(500, start=start))
        with psycopg.connect(dsn) as conn:
            default = conn.execute("SHOW default_statistics_target").fetchone()[0]
            (bounds,) = conn.execute(
                "SELECT array_length(CAST(CAST(histogram_bounds AS text) AS text[]), 1) "
                "FROM pg_stats WHERE schemaname = current_schema() "
                "AND tablename = 'relations' AND attname = 'key'"
            ).fetchone()
        # 4,000 distinct relation keys: a default ANALYZE would keep 101 bounds.
        assert int(default) >= 100
        assert 2 <= bounds <= 11
        with store.read() as conn:  # the pooled connection the ingests ran on
            assert conn.exec_driver_sql("SHOW default_statistics_target").scalar() == default
    finally:
        store.close()


@pytest.mark.postgres
def test_concurrent_ingests_creating_the_same_new_bundles_store_them_once(postgres_url):
    from concurrent.futures import ThreadPoolExecutor

    SQLStore(postgres_url).upgrade()
    batch = workflows(60)

    def write(_worker: int):
        writer = SQLStore(postgres_url)
        try:
            return writer.ingest(batch)
        finally:
            writer.close()

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(write, range(3)))
    records = sum(len(b.records) for b in batch)
    assert sorted(r.inserted for r in results) == [0, 0, records]
    assert all(r.inserted + r.unchanged == records for r in results)
    store = SQLStore(postgres_url)
    try:
        assert [store.get_bundle(b.id) for b in batch] == batch
    finally:
        store.close()


@pytest.mark.postgres
def test_descriptions_merge_in_code_point_order_whatever_the_collation(icu_postgres_url):
    store = SQLStore(icu_postgres_url)
    store.upgrade()
    try:
        names = ["a", "B", "a-b", "a_c"]  # en-US order: a, a_c, a-b, B
        for name in names:
            store.ingest([small_bundle(f"bundle/{name}", entity("data/x", (EX + "by", name)))])
        node = store.get_node(EX + "data/x")
        assert list(node.bundles) == sorted(EX + f"bundle/{n}" for n in names)
        assert [value for _, value in node.attributes] == sorted(names)
    finally:
        store.close()
