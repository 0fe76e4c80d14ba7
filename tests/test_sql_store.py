"""The SQL record store, once on SQLite and once on the real PostgreSQL server.

Round trips must be exact (records come back equal to what went in, attribute order
kept), ingest is all-or-nothing and idempotent, and refused input changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from provml.errors import Conflict, InvalidRecord, NotFound, SchemaOutdated, StoreUnavailable
from provml.records import Bundle, Element, Literal, Ref, Relation
from provml.store.sql import MAX_IRI_BYTES, SQLStore
from provml.vocab import PROV, PROV_LABEL, PROV_TYPE, RELATIONS, XSD, ml

EX = "https://example.org/"
IST = timezone(timedelta(hours=5, minutes=30))
PST = timezone(timedelta(hours=-8))


def entity(name: str, *attributes, ml_class: str | None = None) -> Element:
    types = ((PROV_TYPE, Ref(ml(ml_class))),) if ml_class else ()
    return Element("entity", EX + name, (*types, *attributes))


# A value for every argument of every relation kind: subject, object and extras.
ARGUMENT_KINDS = {
    "activity": "activity",
    "informed": "activity",
    "informant": "activity",
    "starter": "activity",
    "ender": "activity",
    "agent": "agent",
    "delegate": "agent",
    "responsible": "agent",
    "bundle": "bundle",
    "generation": "relation",
    "usage": "relation",
}


def every_relation_kind() -> list[Relation]:
    relations = []
    for n, (kind, signature) in enumerate(sorted(RELATIONS.items())):
        extras = tuple(
            (name, f"{EX}{ARGUMENT_KINDS.get(name, 'entity')}/{name}") for name in signature.extras
        )
        relations.append(
            Relation(
                kind,
                f"{EX}{ARGUMENT_KINDS.get(signature.subject, 'entity')}/{signature.subject}",
                f"{EX}{ARGUMENT_KINDS.get(signature.object, 'entity')}/{signature.object}",
                id=EX + f"relation/{n}" if n % 2 else None,
                time=datetime(2024, 3, 1, 12, n, tzinfo=PST if n % 3 else None)
                if signature.has_time
                else None,
                extras=extras,
                attributes=((PROV_LABEL, f"{kind} relation"), (EX + "weight", n / 7)),
            )
        )
    return relations


def rich_bundle(bundle_id: str = EX + "bundle/rich") -> Bundle:
    records = (
        entity(
            "data/cube",
            (PROV_LABEL, Literal("Seismic cube", lang="en")),
            (PROV_LABEL, Literal("Cube sismique", lang="fr")),
            (PROV_TYPE, Ref(PROV + "Collection")),
            (ml("sizeBytes"), Literal("123456789012345678901234567890", XSD + "integer")),
            (ml("sampled"), True),
            (EX + "count", 2**70),
            (EX + "ratio", 0.1),
            (EX + "huge", 1e300),
            (EX + "exact", 1e16),
            (EX + "tiny", 5e-324),
            (EX + "negative-zero", -0.0),
            (EX + "whole", 3.0),
            (EX + "seen", datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=IST)),
            (EX + "naive-seen", datetime(2024, 1, 2, 3, 4, 5)),
            (EX + "note", "ünïcödé ✓ 𝔘"),
            (EX + "note", "a second note"),
            ml_class="DomainData",
        ),
        Element(
            "activity",
            EX + "activity/train",
            ((PROV_TYPE, Ref(ml("TrainingExecution"))),),
            start_time=datetime(2024, 1, 2, 3, 4, 5, 1, tzinfo=IST),
            end_time=datetime(2024, 1, 2, 9, 0),  # naive: kept naive
        ),
        Element("agent", EX + "agent/alice", ((PROV_TYPE, Ref(PROV + "Person")),)),
        *every_relation_kind(),
        Relation("used", None, EX + "data/cube", id=EX + "relation/no-subject"),
    )
    return Bundle(
        bundle_id,
        records,
        namespaces=(("ex", EX), ("provml", "https://w3id.org/provml/ns#")),
        attributes=((PROV_LABEL, "a rich bundle"),),
    )


def small_bundle(bundle_id: str, *records) -> Bundle:
    return Bundle(EX + bundle_id, records or (entity(bundle_id + "/thing"),))


# -------------------------------------------------------------------- round trips


def test_a_bundle_comes_back_exactly_as_it_was_ingested(store):
    bundle = rich_bundle()
    store.ingest([bundle])
    assert store.get_bundle(bundle.id) == bundle


def test_the_new_bundles_of_one_batch_keep_their_own_parent_namespaces_and_attributes(store):
    # PostgreSQL creates a batch's new bundles in one statement, a column per array.
    bundles = [
        Bundle(
            EX + "doc/1",
            (entity("doc1/thing"),),
            namespaces=(("géo", EX + "géo/"),),
            attributes=((PROV_LABEL, "levé sismique ✓"), (EX + "scale", 1e16)),
        ),
        Bundle(EX + "doc/1/part", (entity("part/thing"),), parent=EX + "doc/1"),
        Bundle(EX + "doc/2", (entity("doc2/thing"),), attributes=((EX + "zero", -0.0),)),
    ]
    assert store.ingest(bundles).inserted == 3
    for bundle in bundles:
        assert store.get_bundle(bundle.id) == bundle
    assert str(store.get_bundle(EX + "doc/2").attributes[0][1]) == "-0.0"


def test_times_keep_their_offset_or_their_lack_of_one(store):
    bundle = rich_bundle()
    store.ingest([bundle])
    stored = {r.id: r for r in store.get_bundle(bundle.id).records if isinstance(r, Element)}
    activity = stored[EX + "activity/train"]
    assert activity.start_time.utcoffset() == timedelta(hours=5, minutes=30)
    assert activity.end_time.tzinfo is None
    seen = dict(stored[EX + "data/cube"].attributes)[EX + "seen"]
    assert seen.utcoffset() == timedelta(hours=5, minutes=30)


def test_numbers_keep_their_python_type_through_json(store):
    bundle = rich_bundle()
    store.ingest([bundle])
    cube = next(r for r in store.get_bundle(bundle.id).records if r.id == EX + "data/cube")
    values = dict(cube.attributes)
    for name in ("huge", "exact", "tiny", "negative-zero", "whole", "ratio"):
        assert type(values[EX + name]) is float, name
    assert str(values[EX + "negative-zero"]) == "-0.0"
    assert values[EX + "count"] == 2**70 and type(values[EX + "count"]) is int
    assert values[ml("sampled")] is True


def test_every_relation_kind_is_stored(store):
    bundle = rich_bundle()
    store.ingest([bundle])
    kinds = {r.kind for r in store.get_bundle(bundle.id).records if isinstance(r, Relation)}
    assert kinds == set(RELATIONS)


def test_checksums_agree_for_equal_content_in_separate_stores(store, tmp_path):
    other = SQLStore(f"sqlite:///{tmp_path / 'other.sqlite'}")
    other.upgrade()
    try:
        store.ingest([rich_bundle()])
        other.ingest([rich_bundle()])
        assert store.checksum() == other.checksum()
    finally:
        other.close()


# -------------------------------------------------------------------- idempotence


def test_the_same_batch_twice_is_stored_once(store):
    batch = [rich_bundle(), small_bundle("bundle/small")]
    first = store.ingest(batch)
    after_first = store.checksum()
    second = store.ingest(batch)
    records = sum(len(b.records) for b in batch)
    assert (first.inserted, first.unchanged) == (records, 0)
    assert (second.inserted, second.unchanged, second.merged) == (0, records, 0)
    assert store.checksum() == after_first
    assert sorted(info.records for info in store.list_bundles()) == sorted(
        len(b.records) for b in batch
    )


def test_a_record_repeated_within_one_batch_is_stored_once(store):
    thing = entity("data/once")
    store.ingest([small_bundle("bundle/r", thing, thing), small_bundle("bundle/r", thing)])
    assert store.get_bundle(EX + "bundle/r").records == (thing,)


def test_one_invalid_record_rejects_the_whole_batch_naming_record_and_field(store):
    store.ingest([small_bundle("bundle/before")])
    before = store.checksum()
    bad = entity("data/bad", (EX + "note", "nul\x00inside"))
    with pytest.raises(InvalidRecord) as caught:
        store.ingest([rich_bundle(), small_bundle("bundle/bad", entity("data/good"), bad)])
    assert caught.value.record == EX + "data/bad"
    assert caught.value.field == f"attributes[{EX}note]"
    assert store.checksum() == before
    with pytest.raises(NotFound):
        store.get_bundle(rich_bundle().id)


def test_an_iri_longer_than_the_store_limit_is_refused_by_both_backends(store):
    long_iri = EX + "x" * MAX_IRI_BYTES
    with pytest.raises(InvalidRecord) as caught:
        store.ingest([small_bundle("bundle/long", Element("entity", long_iri))])
    assert (caught.value.record, caught.value.field) == (long_iri, "id")


def test_a_lone_surrogate_is_refused_naming_the_field(store):
    bad = entity("data/surrogate", (EX + "note", "half \ud800 a pair"))
    with pytest.raises(InvalidRecord) as caught:
        store.ingest([small_bundle("bundle/s", bad)])
    assert (caught.value.record, caught.value.field) == (bad.id, f"attributes[{EX}note]")


def test_a_relation_id_reused_with_other_content_is_a_conflict_and_changes_nothing(store):
    original = Relation("used", EX + "activity/a", EX + "data/x", id=EX + "relation/u1")
    store.ingest([small_bundle("bundle/c", original)])
    before = store.checksum()
    changed = Relation("used", EX + "activity/a", EX + "data/y", id=EX + "relation/u1")
    with pytest.raises(Conflict) as caught:
        store.ingest([small_bundle("bundle/new"), small_bundle("bundle/c", changed)])
    assert caught.value.details["record"] == EX + "relation/u1"
    assert store.checksum() == before
    assert store.get_bundle(EX + "bundle/c").records == (original,)
    assert [info.id for info in store.list_bundles()] == [EX + "bundle/c"]


def many_workflows(count: int, records_each: int = 50) -> list[Bundle]:
    """``count`` bundles sharing one raw file, ``records_each`` records each.

    Elements come before relations, the order in which a bundle reads back.
    """
    raw = entity("data/raw-shared", ml_class="DomainData")
    bundles = []
    for n in range(count):
        run = Element("activity", EX + f"activity/w{n}")
        outputs = [entity(f"data/w{n}/{k}", (EX + "k", k)) for k in range((records_each - 3) // 2)]
        relations = [Relation("used", run.id, raw.id, id=EX + f"relation/w{n}/used")]
        relations += [Relation("wasGeneratedBy", out.id, run.id) for out in outputs]
        bundles.append(Bundle(EX + f"bundle/w{n}", (raw, run, *outputs, *relations)))
    return bundles


def test_a_batch_of_five_thousand_records_sent_twice_is_stored_once(store):
    batch = many_workflows(100)
    records = sum(len(b.records) for b in batch)
    assert records >= 4_900
    first = store.ingest(batch)
    after_first = store.checksum()
    second = store.ingest(batch)
    assert (first.inserted, first.unchanged) == (records, 0)
    assert (second.inserted, second.unchanged, second.merged) == (0, records, 0)
    assert store.checksum() == after_first
    assert store.get_bundle(batch[57].id) == batch[57]


def test_a_conflict_found_among_many_bundles_names_the_record_and_stores_nothing(store):
    batch = many_workflows(40)
    store.ingest(batch[:20])
    before = store.checksum()
    changed = list(batch)
    run = EX + "activity/w13"
    records = list(changed[13].records)
    index = records.index(
        Relation("used", run, EX + "data/raw-shared", id=EX + "relation/w13/used")
    )
    records[index] = Relation("used", run, EX + "data/other", id=EX + "relation/w13/used")
    changed[13] = Bundle(changed[13].id, tuple(records))
    with pytest.raises(Conflict) as caught:
        store.ingest(changed)
    assert caught.value.details["record"] == EX + "relation/w13/used"
    assert caught.value.details["field"] == "id"
    assert store.checksum() == before
    assert len(store.list_bundles()) == 20


def test_a_replayed_batch_mixed_with_new_bundles_stores_only_the_new(store):
    batch = many_workflows(30, records_each=9)
    store.ingest(batch[:10])
    result = store.ingest(batch)
    assert result.unchanged == sum(len(b.records) for b in batch[:10])
    assert result.inserted == sum(len(b.records) for b in batch[10:])
    assert [store.get_bundle(b.id) for b in batch] == batch


# ------------------------------------------------------------------------ merging


def test_a_second_description_of_an_element_is_merged_into_the_first(store):
    first = entity("data/m", (PROV_LABEL, "first"), ml_class="DomainData")
    second = entity("data/m", (PROV_LABEL, "first"), (EX + "extra", 1))
    store.ingest([small_bundle("bundle/m", first)])
    result = store.ingest([small_bundle("bundle/m", second)])
    assert (result.merged, result.inserted) == (1, 0)
    (stored,) = store.get_bundle(EX + "bundle/m").records
    assert stored.attributes == (*first.attributes, (EX + "extra", 1))
    again = store.ingest([small_bundle("bundle/m", first)])
    assert (again.unchanged, again.merged) == (1, 0)


def test_descriptions_with_different_times_conflict(store):
    run = Element("activity", EX + "activity/t", start_time=datetime(2024, 1, 1, tzinfo=UTC))
    store.ingest([small_bundle("bundle/t", run)])
    later = Element("activity", EX + "activity/t", start_time=datetime(2024, 1, 2, tzinfo=UTC))
    with pytest.raises(Conflict):
        store.ingest([small_bundle("bundle/t", later)])
    assert store.get_bundle(EX + "bundle/t").records == (run,)


def test_get_node_merges_descriptions_across_bundles(store):
    store.ingest([small_bundle("bundle/1", entity("data/n", (PROV_LABEL, "N")))])
    store.ingest(
        [small_bundle("bundle/2", entity("data/n", (EX + "size", 3), ml_class="DomainData"))]
    )
    node = store.get_node(EX + "data/n")
    assert node.bundles == (EX + "bundle/1", EX + "bundle/2")
    assert node.label == "N" and node.ml_class == "DomainData"
    assert (EX + "size", 3) in node.attributes


def test_unknown_bundles_and_nodes_are_not_found(store):
    with pytest.raises(NotFound):
        store.get_bundle(EX + "bundle/none")
    with pytest.raises(NotFound):
        store.get_node(EX + "data/none")


def test_a_document_is_its_bundle_then_the_bundles_nested_in_it(store):
    top = small_bundle("doc")
    nested = [Bundle(EX + f"doc/part{i}", (entity(f"part{i}"),), parent=EX + "doc") for i in (2, 1)]
    store.ingest([*nested, top, small_bundle("unrelated")])
    assert [b.id for b in store.document(EX + "doc")] == [
        EX + "doc",
        EX + "doc/part1",
        EX + "doc/part2",
    ]
    assert sorted(b.id for b in store.iter_bundles()) == sorted(
        [EX + "doc", EX + "doc/part1", EX + "doc/part2", EX + "unrelated"]
    )


# ------------------------------------------------------------------------- outbox


def test_each_ingest_queues_its_bundles_for_the_projector_until_done(store):
    store.ingest([small_bundle("bundle/a"), small_bundle("bundle/b")])
    store.ingest([small_bundle("bundle/a")])
    pending = store.outbox_pending()
    assert [row.bundle_id for row in pending] == [EX + "bundle/a", EX + "bundle/b", EX + "bundle/a"]
    assert [row.seq for row in pending] == sorted(row.seq for row in pending)
    # New bundles: every record from position 0 on; the replay: the whole bundle again.
    assert [(row.from_position, row.merged) for row in pending] == [(0, ()), (0, ()), (None, ())]
    assert store.outbox_backlog() == 3 and store.outbox_backlog(limit=2) == 2
    store.outbox_done([pending[0].seq, pending[1].seq])
    assert store.outbox_pending() == pending[2:]
    assert store.outbox_pending(limit=0) == []
    assert store.outbox_backlog() == 1
    store.outbox_done([pending[2].seq])
    assert store.outbox_backlog() == 0


def test_changed_bundles_reads_groups_of_bundles_as_one_by_one_reads_give_them(store, monkeypatch):
    import provml.store.sql

    monkeypatch.setattr(provml.store.sql, "_READ_BUNDLES", 3)  # several groups
    monkeypatch.setattr(provml.store.sql, "_READ_RECORDS", 4)
    store.ingest([rich_bundle(EX + "bundle/rich")])  # alone: more records than a group
    store.ingest(
        [small_bundle(f"bundle/{i}", entity(f"{i}/a"), entity(f"{i}/b")) for i in range(7)]
    )
    store.ingest([small_bundle("bundle/3", entity("3/a", (PROV_LABEL, "more")), entity("3/c"))])
    changes = {EX + f"bundle/{i}": (0, ()) for i in range(7)}
    changes[EX + "bundle/3"] = (2, (EX + "3/a",))  # from a later position: read alone
    changes[EX + "bundle/rich"] = (0, ())
    changes[EX + "bundle/gone"] = (0, ())
    changes[EX + "bundle/gone-too"] = (1, ())
    read = list(store.changed_bundles(changes))
    assert sorted(bundle_id for bundle_id, _ in read) == sorted(changes)  # each once
    found = dict(read)
    assert found[EX + "bundle/gone"] is None and found[EX + "bundle/gone-too"] is None
    for bundle_id, (first, merged) in changes.items():
        if found[bundle_id] is not None:
            assert found[bundle_id] == store.bundle_changes(bundle_id, first, merged)
    assert [r.id for r in found[EX + "bundle/3"].records] == [EX + "3/a", EX + "3/c"]


def test_bundles_read_back_are_not_checked_again(store, monkeypatch):
    import provml.records

    store.ingest([rich_bundle(EX + "bundle/rich")])
    read = [store.get_bundle(EX + "bundle/rich"), next(store.iter_bundles())]
    read += [bundle for _, bundle in store.changed_bundles({EX + "bundle/rich": (0, ())})]

    def fail(record):
        raise AssertionError("checked again")

    monkeypatch.setattr(provml.records, "check_record", fail)
    for bundle in read:
        assert provml.records.check_bundle(bundle) is bundle


def test_every_bundle_is_iterated_once_in_id_order_across_read_groups(store, monkeypatch):
    import provml.store.sql

    monkeypatch.setattr(provml.store.sql, "_READ_BUNDLES", 4)
    bundles = [small_bundle(f"bundle/{i:02d}", entity(f"{i}/a")) for i in range(10)]
    store.ingest(bundles[::-1])
    assert list(store.iter_bundles()) == bundles


def test_an_outbox_row_names_the_records_its_ingest_added_or_merged(store):
    store.ingest([small_bundle("bundle/a", entity("a/1"), entity("a/2", (PROV_LABEL, "two")))])
    grown = small_bundle(
        "bundle/a",
        entity("a/2", (PROV_LABEL, "second")),  # a merge: the description grows
        entity("a/3"),
        Relation("used", EX + "a/3", EX + "a/1"),
    )
    store.ingest([grown])
    store.ingest([small_bundle("bundle/a", entity("a/2", (PROV_LABEL, "second")))])  # replay
    pending = store.outbox_pending()
    assert [(row.from_position, row.merged) for row in pending] == [
        (0, ()),
        (2, (EX + "a/2",)),
        (None, ()),
    ]
    part = store.bundle_changes(EX + "bundle/a", 2, [EX + "a/2"])
    whole = store.get_bundle(EX + "bundle/a")
    assert part.records == whole.records[1:]  # a/2 as merged now, a/3 and the relation
    assert part.records[0].attributes == ((PROV_LABEL, "two"), (PROV_LABEL, "second"))
    assert (part.namespaces, part.attributes) == (whole.namespaces, whole.attributes)
    assert store.bundle_changes(EX + "bundle/a", 3).records == whole.records[3:]  # the relation
    with pytest.raises(NotFound):
        store.bundle_changes(EX + "bundle/none", 0)


def test_a_refused_batch_queues_nothing(store):
    with pytest.raises(InvalidRecord):
        store.ingest([small_bundle("bundle/x"), Bundle("not an iri")])
    assert store.outbox_pending() == []


# ----------------------------------------------------------------------- searching


def test_find_nodes_filters_by_kind_class_and_text(store):
    store.ingest([rich_bundle()])
    store.ingest([small_bundle("bundle/f", entity("data/100%_done", (PROV_LABEL, "Percent")))])
    assert [n.id for n in store.find_nodes(kind="agent")] == [EX + "agent/alice"]
    assert [n.id for n in store.find_nodes(ml_class="TrainingExecution")] == [EX + "activity/train"]
    assert [n.id for n in store.find_nodes(text="SEISMIC")] == [EX + "data/cube"]
    # LIKE wildcards in the text are matched literally.
    assert [n.id for n in store.find_nodes(text="0%_d")] == [EX + "data/100%_done"]
    assert store.find_nodes(text="%") == store.find_nodes(text="100%")


def test_find_nodes_pages_in_iri_order(store):
    store.ingest([small_bundle("bundle/p", *(entity(f"data/p{i}") for i in range(5)))])
    everything = [n.id for n in store.find_nodes(limit=100)]
    assert everything == sorted(everything)
    pages = store.find_nodes(limit=2) + store.find_nodes(limit=2, offset=2)
    assert [n.id for n in pages] == everything[:4]


# ------------------------------------------------------------------------- schema


def test_an_unmigrated_database_names_the_upgrade_command(store_url):
    unmigrated = SQLStore(store_url)
    try:
        with pytest.raises(SchemaOutdated) as caught:
            unmigrated.ingest([small_bundle("bundle/u")])
        assert "provml db upgrade --store" in str(caught.value)
        with pytest.raises(SchemaOutdated):
            unmigrated.list_bundles()
    finally:
        unmigrated.close()


def test_an_unreachable_server_is_store_unavailable_without_the_password():
    store = SQLStore("postgresql+psycopg://provml:s3cret@127.0.0.1:1/none?connect_timeout=2")
    try:
        with pytest.raises(StoreUnavailable) as caught:
            store.list_bundles()
        assert "s3cret" not in str(caught.value) and "s3cret" not in repr(store)
    finally:
        store.close()


def test_concurrent_writers_into_one_bundle_lose_nothing(store):
    from concurrent.futures import ThreadPoolExecutor

    def seen_by(worker: int, n: int) -> Element:
        # Every batch merges one more attribute into the same element.
        return entity("data/shared", (EX + "seen-by", f"w{worker}-{n}"))

    def write(worker: int) -> None:
        writer = SQLStore(store.url)
        try:
            for n in range(10):
                own = entity(f"data/w{worker}-{n}")
                writer.ingest([small_bundle("bundle/busy", seen_by(worker, n), own)])
        finally:
            writer.close()

    with ThreadPoolExecutor(max_workers=3) as pool:
        for future in [pool.submit(write, worker) for worker in range(3)]:
            future.result()  # re-raises a writer's error
    records = {r.id: r for r in store.get_bundle(EX + "bundle/busy").records}
    assert set(records) == {EX + "data/shared"} | {
        EX + f"data/w{w}-{n}" for w in range(3) for n in range(10)
    }
    assert sorted(v for _, v in records[EX + "data/shared"].attributes) == sorted(
        f"w{w}-{n}" for w in range(3) for n in range(10)
    )


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(sqlite_url):
    store = SQLStore(sqlite_url)
    store.upgrade()
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
    finally:
        store.close()


def test_no_kind_of_batch_leaves_a_row_naming_a_missing_bundle_or_relation(store):
    # The schema has no foreign keys (migration 0005): ingest keeps the references true.
    store.ingest([small_bundle("bundle/a", entity("data/x"), entity("data/y"))])
    store.ingest([small_bundle("bundle/a", entity("data/x", (EX + "note", "merged")))])
    store.ingest([small_bundle("bundle/a", entity("data/x"))])  # a replay
    run = Bundle(
        EX + "bundle/run",
        (
            Element("activity", EX + "run/1"),
            Relation("used", EX + "run/1", EX + "data/x", id=EX + "use/1"),
            Relation("wasGeneratedBy", EX + "data/z", EX + "run/1", id=EX + "gen/1"),
        ),
    )
    store.ingest([run])
    clash = Relation("used", EX + "run/1", EX + "data/y", id=EX + "use/1")
    with pytest.raises(Conflict):  # refused: nothing of the batch may stay
        store.ingest([small_bundle("bundle/new", entity("data/n")), Bundle(run.id, (clash,))])
    assert store.dangling_rows() == {"nodes": 0, "relations": 0, "outbox": 0, "lineage_edges": 0}
    assert EX + "bundle/new" not in {b.id for b in store.list_bundles()}


def test_dangling_rows_finds_a_row_written_around_the_ingest(store):
    import sqlalchemy as sa

    from provml.store import models

    store.ingest([small_bundle("bundle/a", entity("data/x"))])
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(models.outbox).values(
                bundle_id=EX + "bundle/gone", created=datetime(2024, 1, 1)
            )
        )
    assert store.dangling_rows()["outbox"] == 1
    assert store.dangling_rows()["nodes"] == 0


# ------------------------------------------------------------------ property test

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20)
_iris = st.from_regex(r"\Ahttps://example\.org/[a-z0-9/#._~-]{0,12}\Z")
# Whole minutes: ISO 8601 writes ±hh:mm, and records refuse finer offsets.
_offsets = st.integers(-23 * 60, 23 * 60).map(lambda minutes: timedelta(minutes=minutes))
# ISO 8601 has no "fold" (the repeated hour at a DST change): no PROV time carries one.
_times = st.datetimes(timezones=st.none() | st.builds(timezone, _offsets)).map(
    lambda t: t.replace(fold=0)
)
_values = st.one_of(
    _text,
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    _times,
    st.builds(Ref, _iris),
    st.builds(Literal, _text, _iris, st.none() | st.sampled_from(["en", "fr-CA"])),
)
_attributes = st.lists(st.tuples(_iris, _values), max_size=6).map(tuple)
_elements = st.one_of(
    st.builds(Element, st.sampled_from(["entity", "agent"]), _iris, _attributes),
    st.builds(Element, st.just("activity"), _iris, _attributes, _times | st.none()),
)
_relations = st.builds(
    Relation,
    st.just("wasGeneratedBy"),
    _iris,
    _iris | st.none(),
    id=_iris | st.none(),
    time=_times | st.none(),
    attributes=_attributes,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    elements=st.lists(_elements, max_size=4, unique_by=lambda e: e.id),
    relations=st.lists(_relations, max_size=4, unique_by=lambda r: r.id or r),
)
def test_any_valid_bundle_round_trips_exactly(store, elements, relations):
    bundle = Bundle(f"{EX}bundle/{uuid.uuid4()}", (*elements, *relations))
    store.ingest([bundle])
    stored = store.get_bundle(bundle.id)
    assert stored == bundle
    # Equal datetimes may still differ in offset: compare the exact text too.
    assert repr(stored) == repr(bundle)


@pytest.mark.postgres
def test_listings_sort_by_code_point_whatever_the_database_collation(icu_postgres_url):
    store = SQLStore(icu_postgres_url)
    store.upgrade()
    try:
        names = ["a", "B", "a-b", "a_c"]  # en-US order: a, a_c, a-b, B
        store.ingest([small_bundle(f"bundle/{n}", entity(f"data/{n}")) for n in names])
        assert [n.id for n in store.find_nodes()] == sorted(EX + f"data/{n}" for n in names)
        assert [b.id for b in store.iter_bundles()] == sorted(EX + f"bundle/{n}" for n in names)
    finally:
        store.close()


def test_stored_digests_stay_those_earlier_versions_wrote(store):
    # A record's digest covers the JSON text of its row. Were the encoding to change
    # (a shortcut for empty lists, say), every replay of a batch stored by an earlier
    # version would count as a merge and rewrite rows. The digests below are those
    # that commit 05f7ab1 stored for these records.
    double = Literal("0.5", XSD + "double")
    bundle = Bundle(
        EX + "bundle/golden",
        (
            Element(
                "entity",
                EX + "data/1",
                (
                    (PROV_TYPE, Ref(ml("DomainData"))),
                    (PROV_LABEL, "raw survey"),
                    (EX + "size", 12),
                    (EX + "ratio", 0.25),
                    (EX + "big", 1e16),
                    (EX + "name", "séismique"),
                    (EX + "v", double),
                ),
            ),
            Element(
                "activity",
                EX + "run/1",
                ((PROV_TYPE, Ref(ml("TrainingExecution"))),),
                datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                datetime(2026, 1, 2, 4, 0, tzinfo=timezone(timedelta(hours=2))),
            ),
            Relation("used", EX + "run/1", EX + "data/1"),
            Relation(
                "wasGeneratedBy",
                EX + "data/2",
                EX + "run/1",
                id=EX + "gen/1",
                time=datetime(2026, 1, 2, 3, 30, tzinfo=UTC),
                attributes=((PROV + "role", "output"),),
            ),
            Relation(
                "wasDerivedFrom", EX + "data/2", EX + "data/1", extras=(("activity", EX + "run/1"),)
            ),
        ),
    )
    store.ingest([bundle])
    with store.engine.connect() as conn:
        nodes = dict(conn.exec_driver_sql("SELECT iri, digest FROM nodes").all())
        relations = dict(conn.exec_driver_sql("SELECT kind, digest FROM relations").all())
    assert nodes == {
        EX + "data/1": "f121b8d57544eebea2c28ec06736e51c",
        EX + "run/1": "b6f47b3de7de633f6de4c1ea0a3b17b8",
    }
    assert relations == {
        "used": "002544abc1c7e43ab453f22b997953e4",
        "wasGeneratedBy": "8c7b602251a9d7b8ee1550cebde5d804",
        "wasDerivedFrom": "967e57cf239d0aa78844da71758b417d",
    }
    assert store.ingest([bundle]).unchanged == 5


@pytest.mark.postgres
def test_sequential_reads_reuse_the_connection_used_last(postgres_url):
    # After a burst opened several connections, one request at a time keeps landing on
    # the same one (its prepared statements and caches warm), not on each in turn.
    store = SQLStore(postgres_url)
    store.upgrade()
    try:
        with store.read() as first, store.read() as second:  # the pool now holds two
            pids = {
                first.exec_driver_sql("SELECT pg_backend_pid()").scalar(),
                second.exec_driver_sql("SELECT pg_backend_pid()").scalar(),
            }
        assert len(pids) == 2
        seen = []
        for _ in range(6):
            with store.read() as conn:
                seen.append(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar())
        assert len(set(seen)) == 1, seen
    finally:
        store.close()
