"""The RDF side: projection from the SQL outbox, rebuild, and read-only SPARQL.

Projection tests use the ``store`` fixture (SQLite and PostgreSQL); tests of the RDF
store itself (locks, snapshots, time limits) use SQLite only; tests of SPARQL share one
projection in an in-memory Oxigraph store. The conformance tests hold projection,
refusals and result formats to third-party data: the ``prov`` package's PROV-JSON
documents and the W3C SPARQL syntax and result-format suites.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import rdflib

from provml.errors import QueryRejected, QueryTimeout, StoreUnavailable, UnsupportedFormat
from provml.rdf import BlankNode, RDFStore, _merged, open_rdf_store
from provml.records import Bundle, Element, Literal, Ref, Relation
from provml.vocab import PROV, PROV_LABEL, PROV_TYPE, PROVML, XSD, ml
from tests.conftest import conformance_dir

B = "https://provml.test/"
CURATION = B + "bundle/curation"
TRAINING = B + "bundle/training"
RAW = B + "data/raw-cube"
CURATED = B + "data/curated"
MODEL_V1 = B + "model/salt/1"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

SPARQL_RESULTS = "{http://www.w3.org/2005/sparql-results#}"


# ----------------------------------------------------------------------------- data


def curation_bundle() -> Bundle:
    return Bundle(
        CURATION,
        (
            Element("entity", RAW, ((PROV_TYPE, Ref(ml("DomainData"))), (PROV_LABEL, "raw cube"))),
            Element(
                "activity",
                B + "run/curate",
                ((PROV_TYPE, Ref(ml("DataTransformationExecution"))),),
                start_time=T0,
            ),
            Element("entity", CURATED, ((PROV_TYPE, Ref(ml("FeatureSetData"))),)),
            Relation("used", B + "run/curate", RAW, time=T0),
            Relation("wasGeneratedBy", CURATED, B + "run/curate", time=T0),
        ),
    )


def training_bundle(lr: str = "0.01") -> Bundle:
    return Bundle(
        TRAINING,
        (
            Element("entity", CURATED, ((PROV_TYPE, Ref(ml("FeatureSetData"))),)),
            Element(
                "activity",
                B + "run/train",
                ((PROV_TYPE, Ref(ml("TrainingExecution"))),),
                start_time=T0,
            ),
            Element(
                "entity",
                B + "param/lr",
                (
                    (PROV_TYPE, Ref(ml("LearningHyperparameterValue"))),
                    (PROVML + "name", "learning_rate"),
                    (PROVML + "hyperparameterValue", lr),
                ),
            ),
            Element(
                "entity",
                MODEL_V1,
                ((PROV_TYPE, Ref(ml("ModelVersion"))), (PROVML + "versionNumber", 1)),
            ),
            Relation("used", B + "run/train", CURATED, time=T0),
            Relation("used", B + "run/train", B + "param/lr"),
            Relation("wasGeneratedBy", MODEL_V1, B + "run/train", time=T0),
            Relation("wasDerivedFrom", MODEL_V1, CURATED, extras=(("activity", B + "run/train"),)),
        ),
    )


def many_entities_bundle(n: int) -> Bundle:
    """A bundle of ``n`` labelled entities: material for an expensive cross product."""
    return Bundle(
        B + "bundle/many",
        tuple(Element("entity", f"{B}e/{i}", ((PROV_LABEL, f"e{i}"),)) for i in range(n)),
    )


def element_ids(bundle: Bundle) -> set[str]:
    return {r.id for r in bundle.records if isinstance(r, Element)}


def rdf_element_ids(rdf: RDFStore, graph: str) -> set[str]:
    answer = rdf.query(
        f"""SELECT DISTINCT ?x WHERE {{ GRAPH <{graph}> {{
              ?x a ?kind FILTER(?kind IN (prov:Entity, prov:Activity, prov:Agent)) }} }}"""
    )
    return {row[0].iri for row in answer.rows}


# ------------------------------------------------------------------------- fixtures


def sql_store(url: str):
    from provml.store.sql import SQLStore

    records = SQLStore(url)
    records.upgrade()
    return records


@pytest.fixture(scope="module")
def projected(tmp_path_factory) -> Iterator[RDFStore]:
    """An in-memory RDF store with the curation and training bundles projected.

    Shared by the tests of SPARQL, which only read it; SQLite is enough for them (the
    projection tests run on every SQL backend).
    """
    records = sql_store(f"sqlite:///{tmp_path_factory.mktemp('sparql') / 'provml.sqlite'}")
    records.ingest([curation_bundle(), training_bundle()])
    rdf = RDFStore.open()
    rdf.project(records)
    records.close()
    yield rdf
    rdf.close()


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator:
    """A record store for tests about the RDF store itself, which SQLite serves as well."""
    records = sql_store(sqlite_url)
    yield records
    records.close()


# ----------------------------------------------------------------------- projection


def test_each_bundle_is_projected_into_its_own_named_graph(store):
    store.ingest([curation_bundle(), training_bundle()])
    rdf = RDFStore.open()
    assert rdf.project(store) == 2
    assert rdf.graphs() == sorted([CURATION, TRAINING])
    assert rdf_element_ids(rdf, CURATION) == element_ids(curation_bundle())
    assert rdf_element_ids(rdf, TRAINING) == element_ids(training_bundle())
    assert rdf.project(store) == 0  # caught up: the outbox is empty


def test_projecting_the_same_bundles_again_gives_the_same_quads(store):
    rdf = RDFStore.open()
    rdf.project(store)
    store.ingest([curation_bundle(), training_bundle()])
    rdf.project(store)
    first = rdf.checksum()
    store.ingest([curation_bundle(), training_bundle()])  # a replayed batch: new outbox rows
    assert rdf.project(store) == 2
    assert rdf.checksum() == first


def test_a_reingested_bundle_replaces_its_graph_and_leaves_others_alone(store):
    rdf = RDFStore.open()
    rdf.project(store)
    store.ingest([curation_bundle(), training_bundle()])
    rdf.project(store)
    curation_quads = sorted(str(q) for q in rdf.quads(CURATION))
    extra = Element("entity", B + "data/extra", ((PROV_LABEL, "extra"),))
    store.ingest([Bundle(TRAINING, (*training_bundle().records, extra))])
    assert rdf.project(store) == 1
    assert B + "data/extra" in rdf_element_ids(rdf, TRAINING)
    assert sorted(str(q) for q in rdf.quads(CURATION)) == curation_quads


def test_a_reprojected_bundle_loses_quads_that_are_no_longer_true(store):
    store.ingest([curation_bundle(), training_bundle()])
    rdf = RDFStore.open()
    rdf.project(store)
    projected = rdf.checksum()
    stale = (rdflib.URIRef(MODEL_V1), rdflib.RDFS.label, rdflib.Literal("from an old projection"))
    rdf.as_rdflib_dataset().graph(rdflib.URIRef(TRAINING)).add(stale)
    assert rdf.checksum() != projected
    store.ingest([training_bundle()])
    assert rdf.project(store) == 1
    assert rdf.checksum() == projected


def test_the_default_graph_holds_each_triple_once_however_many_bundles_state_it(projected):
    # Both bundles describe the curated data: two quads, one triple of the merge.
    stated = f"<{CURATED}> a provml:FeatureSetData"
    in_graphs = projected.query(f"SELECT (COUNT(*) AS ?n) WHERE {{ GRAPH ?g {{ {stated} }} }}")
    in_default = projected.query(f"SELECT (COUNT(*) AS ?n) WHERE {{ {stated} }}")
    assert in_graphs.rows == [(2,)]
    assert in_default.rows == [(1,)]


def test_a_triple_leaves_the_default_graph_only_when_no_bundle_states_it(sqlite_store):
    sqlite_store.ingest([curation_bundle(), training_bundle()])
    rdf = RDFStore.open()
    rdf.project(sqlite_store)
    # A triple both graphs held once (and so the merge), that neither states any more.
    old = (rdflib.URIRef(CURATED), rdflib.RDFS.label, rdflib.Literal("an old label"))
    dataset = rdf.as_rdflib_dataset()
    for graph in (CURATION, TRAINING):
        dataset.graph(rdflib.URIRef(graph)).add(old)
    dataset.default_graph.add(old)
    ask_old = f'ASK {{ <{CURATED}> rdfs:label "an old label" }}'
    ask_shared = f"ASK {{ <{CURATED}> a provml:FeatureSetData }}"

    sqlite_store.ingest([training_bundle()])  # a replay: the graph is projected whole
    assert rdf.project(sqlite_store) == 1
    assert rdf.query(ask_old).boolean  # the curation bundle still states it
    sqlite_store.ingest([curation_bundle()])
    assert rdf.project(sqlite_store) == 1
    assert not rdf.query(ask_old).boolean
    assert rdf.query(ask_shared).boolean  # stated by both, through both re-projections
    with RDFStore.open() as fresh:
        fresh.rebuild(sqlite_store)
        assert fresh.checksum() == rdf.checksum()


def test_a_store_of_the_earlier_layout_is_rebuilt_by_the_next_projection(sqlite_store, tmp_path):
    path = tmp_path / "oxigraph"
    sqlite_store.ingest([curation_bundle(), training_bundle()])
    with RDFStore.open(path) as rdf:
        rdf.project(sqlite_store)
        expected = rdf.checksum()
    (path / "provml-rdf-layout").unlink()  # as a store made before the layout file
    with RDFStore.open(path) as rdf:
        assert rdf.needs_rebuild
        assert rdf.project(sqlite_store) == 2
        assert not rdf.needs_rebuild
        assert rdf.checksum() == expected
    with RDFStore.open(path) as rdf:
        assert not rdf.needs_rebuild


def test_bundles_never_share_a_blank_node(sqlite_store):
    sqlite_store.ingest([curation_bundle(), training_bundle()])
    rdf = RDFStore.open()
    rdf.project(sqlite_store)

    def blank_nodes(graph: str) -> set[str]:
        return {
            str(term)
            for quad in rdf.quads(graph)
            for term in (quad.subject, quad.object)
            if str(term).startswith("_:")
        }

    assert blank_nodes(CURATION) and blank_nodes(TRAINING)
    assert not blank_nodes(CURATION) & blank_nodes(TRAINING)


def test_ingest_without_projection_then_reopen_leaves_no_lasting_gap(store, tmp_path):
    path = tmp_path / "oxigraph"
    with RDFStore.open(path) as rdf:
        rdf.project(store)  # the new store syncs (nothing yet) and is complete
    store.ingest([curation_bundle()])
    store.ingest([training_bundle()])
    # The process "crashed" after the SQL commit and before projecting.
    with RDFStore.open(path) as rdf:
        assert not rdf.needs_rebuild
        assert rdf.project(store) == 2
        for bundle in store.iter_bundles():
            assert rdf_element_ids(rdf, bundle.id) == element_ids(bundle)
        incremental = rdf.checksum()
    with RDFStore.open() as fresh:
        fresh.rebuild(store)
        assert fresh.checksum() == incremental


class PowerCut(Exception):
    """Stands for the process dying at that point."""


def crashing_store(url: str, at: str):
    """The real SQL store, dying in ``outbox_done`` or half-way through ``iter_bundles``."""
    from provml.store.sql import SQLStore

    class Crashing(SQLStore):
        def outbox_done(self, seqs):
            if at == "outbox_done":
                raise PowerCut
            return super().outbox_done(seqs)

        def iter_bundles(self):
            for number, bundle in enumerate(super().iter_bundles()):
                if at == "iter_bundles" and number == 1:
                    raise PowerCut
                yield bundle

    return Crashing(url)


def test_a_crash_after_the_quads_and_before_the_outbox_is_marked_repeats_harmlessly(
    sqlite_store, sqlite_url, tmp_path
):
    sqlite_store.ingest([curation_bundle(), training_bundle()])
    path = tmp_path / "oxigraph"
    with RDFStore.open(path) as rdf:
        rdf.rebuild(sqlite_store)  # complete and caught up
    sqlite_store.ingest([training_bundle()])
    with (
        RDFStore.open(path) as rdf,
        crashing_store(sqlite_url, "outbox_done") as crashing,
        pytest.raises(PowerCut),
    ):
        rdf.project(crashing)
    assert sqlite_store.outbox_pending()  # the work is still owed
    with RDFStore.open(path) as rdf:
        assert rdf.project(sqlite_store) == 1
        assert not sqlite_store.outbox_pending()
        with RDFStore.open() as fresh:
            fresh.rebuild(sqlite_store)
            assert rdf.checksum() == fresh.checksum()


def test_a_rebuild_cut_short_is_finished_by_the_next_projection(sqlite_store, sqlite_url, tmp_path):
    sqlite_store.ingest([curation_bundle(), training_bundle()])
    path = tmp_path / "oxigraph"
    with RDFStore.open(path) as rdf:
        rdf.project(sqlite_store)
        with crashing_store(sqlite_url, "iter_bundles") as crashing, pytest.raises(PowerCut):
            rdf.rebuild(crashing)
    with RDFStore.open(path) as rdf:
        assert rdf.needs_rebuild  # the half-cleared store says so
        assert rdf.project(sqlite_store) == 2
        assert not rdf.needs_rebuild
        with RDFStore.open() as fresh:
            fresh.rebuild(sqlite_store)
            assert rdf.checksum() == fresh.checksum()


def test_close_stops_a_rebuild_running_in_another_thread(sqlite_store, tmp_path):
    sqlite_store.ingest(
        [Bundle(f"{B}bundle/{i}", (Element("entity", f"{B}e/{i}"),)) for i in range(300)]
    )
    path = tmp_path / "oxigraph"
    rdf = RDFStore.open(path)
    started, outcome = threading.Event(), []

    def slow_progress(done: int) -> None:  # 300 bundles: 6 s unless stopped
        started.set()
        time.sleep(0.02)

    def rebuild() -> None:
        try:
            rdf.rebuild(sqlite_store, progress=slow_progress)
            outcome.append("finished")
        except StoreUnavailable as exc:
            outcome.append(exc.message)

    worker = threading.Thread(target=rebuild)
    worker.start()
    assert started.wait(10)
    began = time.monotonic()
    rdf.close()
    closed_after = time.monotonic() - began
    worker.join(10)
    assert closed_after < 2, f"close() waited {closed_after:.1f} s for the rebuild"
    assert outcome == ["the RDF store is shutting down: its rebuild stopped"]
    with RDFStore.open(path) as reopened:
        assert reopened.needs_rebuild  # the next start rebuilds it whole
        assert reopened.project(sqlite_store) == 300
        assert len(reopened.graphs()) == 300


def test_the_recent_count_is_taken_again_only_when_the_projection_moved_and_aged(
    sqlite_store, tmp_path, monkeypatch
):
    sqlite_store.ingest([curation_bundle()])
    with RDFStore.open(tmp_path / "oxigraph") as rdf:
        rdf.project(sqlite_store)
        counts = []
        real = RDFStore.count
        monkeypatch.setattr(RDFStore, "count", lambda self: counts.append(1) or real(self))
        first = rdf.recent_count(wait=10)
        assert first == real(rdf) > 0 and rdf.recent_count() == first and len(counts) == 1
        sqlite_store.ingest([training_bundle()])
        rdf.project(sqlite_store)
        assert rdf.recent_count() == first and len(counts) == 1  # moved, but 30 s not gone
        grown = rdf.recent_count(max_age=0, wait=10)
        assert grown == real(rdf) > first and len(counts) == 2
        assert rdf.recent_count(max_age=0) == grown and len(counts) == 2  # not moved since


def test_the_recent_count_answers_at_once_while_a_count_runs(sqlite_store, tmp_path, monkeypatch):
    # /readyz reads it: a probe that waited for a count of a large store missed its
    # deadline. The count runs in a thread of its own, one at a time.
    sqlite_store.ingest([curation_bundle()])
    with RDFStore.open(tmp_path / "oxigraph") as rdf:
        rdf.project(sqlite_store)
        real, release, started = RDFStore.count, threading.Event(), []

        def slow(self):
            started.append(1)
            assert release.wait(10)
            return real(self)

        monkeypatch.setattr(RDFStore, "count", slow)
        began = time.monotonic()
        assert rdf.recent_count() is None and rdf.recent_count() is None
        assert time.monotonic() - began < 1 and len(started) == 1
        release.set()
        assert rdf.recent_count(wait=10) == real(rdf) > 0 and len(started) == 1


def test_rebuild_gives_the_same_quads_as_incremental_projection(store):
    incremental = RDFStore.open()
    incremental.project(store)
    store.ingest([curation_bundle()])
    incremental.project(store)
    store.ingest([training_bundle()])
    incremental.project(store)
    extra = Element("entity", B + "data/extra", ((PROV_LABEL, "extra"),))
    # Merged into the stored bundle; one more qualified usage renumbers blank nodes.
    used = Relation("used", B + "run/train", B + "data/extra", time=T0)
    store.ingest([Bundle(TRAINING, (extra, used))])
    incremental.project(store)

    rebuilt = RDFStore.open()
    seen: list[int] = []
    count = rebuilt.rebuild(store, progress=seen.append)
    assert seen == [1, 2]
    assert count == incremental.count() > 0
    assert rebuilt.checksum() == incremental.checksum()
    assert incremental.rebuild(store) == count
    assert incremental.checksum() == rebuilt.checksum()


def long_run_batches(run: str, batches: int, per_batch: int) -> list[Bundle]:
    """One training run's bundle as its exporter sends it: many batches, merges included.

    The activity is described at its start and again at its end (the second description
    merges into the first); every batch has qualified relations (times, attributes, an
    id), so blank nodes, merged elements and shortcut triples all occur.
    """
    bundle, activity = f"{B}bundle/{run}", f"{B}run/{run}"
    out = [
        Bundle(
            bundle,
            (
                Element(
                    "activity",
                    activity,
                    ((PROV_TYPE, Ref(ml("TrainingExecution"))),),
                    start_time=T0,
                ),
            ),
        )
    ]
    for n in range(batches):
        records: list = []
        for i in range(per_batch):
            metric = f"{B}metric/{run}/{n}/{i}"
            records += [
                Element(
                    "entity",
                    metric,
                    ((PROV_TYPE, Ref(ml("ModelEvaluation"))), (PROV_LABEL, f"loss {n}.{i}")),
                ),
                Relation(
                    "wasGeneratedBy",
                    metric,
                    activity,
                    time=T0,
                    attributes=((B + "step", n * per_batch + i),),
                ),
                Relation("used", activity, f"{B}data/shard/{i}", time=T0),
            ]
        records.append(
            Relation("wasAssociatedWith", activity, f"{B}agent/{n}", id=f"{B}assoc/{run}/{n}")
        )
        out.append(Bundle(bundle, tuple(records)))
    end = Element("activity", activity, ((B + "status", "completed"),), end_time=T0)
    out.append(Bundle(bundle, (end,)))
    return out


def test_a_bundle_sent_in_many_batches_is_projected_batch_by_batch_as_a_rebuild_gives_it(store):
    """The projector adds the quads of each batch's records, not of the whole bundle
    the batch joined, and reaches the store that a rebuild makes."""
    fetched: list[int] = []

    class Recording:
        """The SQL store, counting the records each projection reads."""

        def __getattr__(self, name):
            return getattr(store, name)

        def changed_bundles(self, changes):
            for bundle_id, part in store.changed_bundles(changes):
                fetched.append(len(part.records))
                yield bundle_id, part

        def get_bundle(self, bundle_id):
            raise AssertionError(f"{bundle_id} was projected whole")

    rdf = RDFStore.open()
    one, two = long_run_batches("one", 12, 5), long_run_batches("two", 12, 5)
    for a, b in zip(one, two, strict=True):
        store.ingest([a])
        store.ingest([b])
        assert rdf.project(Recording(), limit=2) == 2  # both bundles, one batch each
    assert rdf.project(Recording()) == 0
    batch_sizes = sorted({len(b.records) for b in one})
    assert max(fetched) == max(batch_sizes)  # never the bundle (~200 records) at once
    activity = one[-1].records[0].id  # described at its start, then merged at its end
    merged = rdf.query(
        f"""ASK {{ GRAPH <{one[0].id}> {{ <{activity}> <{B}status> "completed" ;
                                         prov:startedAtTime ?start ; prov:endedAtTime ?end }} }}"""
    )
    assert merged.boolean
    rebuilt = RDFStore.open()
    rebuilt.rebuild(store)
    assert rebuilt.count() == rdf.count() > 0
    assert rebuilt.checksum() == rdf.checksum()


def test_a_bundle_that_cannot_be_projected_holds_up_nothing_after_it(
    sqlite_store, monkeypatch, caplog
):
    import provml.rdf

    real = provml.rdf._bundle_quads

    def failing(bundle):
        if bundle.id == CURATION:
            raise AssertionError("a mapping bug")
        return real(bundle)

    monkeypatch.setattr(provml.rdf, "_bundle_quads", failing)
    sqlite_store.ingest([curation_bundle()])
    sqlite_store.ingest([training_bundle()])
    rdf = RDFStore.open()
    rdf.rebuild(sqlite_store)  # a rebuild goes past it too
    assert rdf.graphs() == [TRAINING]
    sqlite_store.ingest([Bundle(CURATION, (Element("entity", B + "data/late"),))])
    sqlite_store.ingest([Bundle(TRAINING, (Element("entity", B + "data/later"),))])
    assert rdf.project(sqlite_store) == 2
    assert not sqlite_store.outbox_pending()
    assert rdf.unprojectable == {CURATION}
    assert B + "data/later" in rdf_element_ids(rdf, TRAINING)
    errors = [r for r in caplog.records if "cannot project bundle" in r.getMessage()]
    assert len(errors) == 1 and CURATION in errors[0].getMessage()  # once per bundle


def test_a_new_on_disk_store_is_rebuilt_from_sql_on_first_projection(store, tmp_path):
    store.ingest([curation_bundle(), training_bundle()])
    first = RDFStore.open()
    first.project(store)  # marks the outbox done: a second RDF store cannot rely on it
    with RDFStore.open(tmp_path / "oxigraph") as rdf:
        assert rdf.needs_rebuild
        assert rdf.project(store) == 2
        assert not rdf.needs_rebuild
        assert rdf.checksum() == first.checksum()


@pytest.mark.conformance
def test_rebuild_equals_incremental_projection_over_the_prov_test_documents(sqlite_store):
    from provml.errors import ProvmlError
    from provml.prov_io import parse

    rdf = RDFStore.open()
    rdf.project(sqlite_store)
    documents = sorted((conformance_dir() / "prov" / "trungdong-prov" / "json").glob("*.json"))
    stored = 0
    for number, document in enumerate(documents, 1):
        try:
            bundles = parse(document.read_bytes(), "json", bundle_id=f"{B}doc/{document.stem}")
            sqlite_store.ingest(bundles)
            stored += len(bundles)
        except ProvmlError:
            pass  # refusals are the import tests' business; this test needs stored data
        if number % 40 == 0:  # project now and then, in small batches
            while rdf.project(sqlite_store, limit=7):
                pass
    while rdf.project(sqlite_store, limit=7):
        pass
    assert stored > 300
    assert rdf.graphs() == sorted(b.id for b in sqlite_store.iter_bundles() if b.records)
    rebuilt = RDFStore.open()
    rebuilt.rebuild(sqlite_store)
    assert rebuilt.checksum() == rdf.checksum()


def test_importing_the_rdf_module_loads_no_store_or_web_library():
    probe = (
        "import sys, provml.rdf, provml._sparql_worker; "
        "print(sorted(m for m in ('pyoxigraph', 'rdflib', 'sqlalchemy', 'fastapi') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_the_public_surface_is_exactly_all():
    import inspect

    import provml.rdf

    defined_here = {
        name
        for name, value in vars(provml.rdf).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == "provml.rdf"
    }
    assert defined_here | {"PREFIXES"} == set(provml.rdf.__all__)


def test_open_rdf_store_uses_the_locations_oxigraph_directory(tmp_path):
    from provml.config import resolve_store

    location = resolve_store(str(tmp_path / "store"))
    with open_rdf_store(location) as rdf:
        assert rdf.path == Path(location.rdf_path)
        assert rdf.count() == 0


# --------------------------------------------------------------------------- SPARQL


SELECT_MODELS = "SELECT ?m ?v WHERE { ?m a provml:ModelVersion ; provml:versionNumber ?v }"


def test_select_rows_are_python_values(projected):
    result = projected.query(SELECT_MODELS)
    assert result.kind == "select"
    assert result.variables == ["m", "v"]
    assert result.rows == [(Ref(MODEL_V1), 1)]


def test_literals_become_python_values_or_keep_their_lexical_form(projected):
    result = projected.query(
        """SELECT ?s ?i ?d ?f ?b ?t ?l ?o ?bn WHERE {
             BIND("x" AS ?s) BIND(3 AS ?i) BIND(2.5 AS ?d) BIND(1.5e0 AS ?f) BIND(true AS ?b)
             BIND("2025-03-01T12:00:00+00:00"^^xsd:dateTime AS ?t) BIND("hallo"@de AS ?l)
             BIND("P1D"^^xsd:duration AS ?o) BIND(BNODE("k") AS ?bn) }"""
    )
    (row,) = result.rows
    assert row[:7] == (
        "x",
        3,
        Decimal("2.5"),
        1.5,
        True,
        T0,
        Literal("hallo", "http://www.w3.org/1999/02/22-rdf-syntax-ns#langString", "de"),
    )
    assert row[7] == Literal("P1D", XSD + "duration")
    assert isinstance(row[8], BlankNode)


@pytest.mark.parametrize("fmt", ["json", "xml", "csv", "tsv"])
def test_select_results_parse_back_in_every_format(projected, fmt):
    data = projected.query(SELECT_MODELS).serialize(fmt)
    if fmt == "json":
        document = json.loads(data)
        assert document["head"]["vars"] == ["m", "v"]
        (binding,) = document["results"]["bindings"]
        assert binding["m"] == {"type": "uri", "value": MODEL_V1}
        assert binding["v"]["value"] == "1"
    elif fmt == "xml":
        root = ET.fromstring(data)
        names = [v.get("name") for v in root.iter(SPARQL_RESULTS + "variable")]
        assert names == ["m", "v"]
        assert [u.text for u in root.iter(SPARQL_RESULTS + "uri")] == [MODEL_V1]
    else:
        dialect = "excel" if fmt == "csv" else "excel-tab"
        rows = list(csv.reader(io.StringIO(data.decode()), dialect=dialect))
        assert rows[0] == (["m", "v"] if fmt == "csv" else ["?m", "?v"])
        assert rows[1][0] == (MODEL_V1 if fmt == "csv" else f"<{MODEL_V1}>")
        assert rows[1][1] == "1"


@pytest.mark.parametrize("fmt", ["json", "xml", "csv", "tsv"])
def test_ask_results_parse_back_in_every_format(projected, fmt):
    result = projected.query(f"ASK {{ <{MODEL_V1}> prov:wasGeneratedBy ?run }}")
    assert result.kind == "ask"
    assert result.boolean is True
    data = result.serialize(fmt)
    if fmt == "json":
        assert json.loads(data)["boolean"] is True
    elif fmt == "xml":
        assert ET.fromstring(data).find(SPARQL_RESULTS + "boolean").text == "true"
    else:
        assert data.decode().strip() == "true"


CONSTRUCT_LINEAGE = "CONSTRUCT { ?m prov:wasDerivedFrom ?d } WHERE { ?m prov:wasDerivedFrom ?d }"


@pytest.mark.parametrize(
    ("fmt", "rdflib_format"), [("turtle", "turtle"), ("ntriples", "nt"), ("jsonld", "json-ld")]
)
def test_construct_results_parse_back_in_every_format(projected, fmt, rdflib_format):
    result = projected.query(CONSTRUCT_LINEAGE)
    assert result.kind == "construct"
    graph = rdflib.Graph().parse(data=result.serialize(fmt), format=rdflib_format)
    assert set(graph) == {
        (rdflib.URIRef(MODEL_V1), rdflib.URIRef(PROV + "wasDerivedFrom"), rdflib.URIRef(CURATED))
    }


def test_formats_are_chosen_by_name_or_media_type_and_wrong_ones_are_refused(projected):
    select = projected.query(SELECT_MODELS)
    graph = projected.query(CONSTRUCT_LINEAGE)
    assert select.media_type("json") == "application/sparql-results+json"
    assert select.serialize("application/sparql-results+json") == select.serialize("json")
    assert select.serialize("text/csv; charset=utf-8") == select.serialize("csv")
    assert graph.media_type("text/turtle") == "text/turtle"
    assert graph.media_type("json") == "application/ld+json"
    assert "turtle" not in select.formats and "csv" not in graph.formats
    with pytest.raises(UnsupportedFormat, match="csv"):
        graph.serialize("csv")
    with pytest.raises(UnsupportedFormat):
        select.media_type("text/turtle")


def test_the_plain_text_table_shows_prefixed_names(projected):
    table = projected.query(f"SELECT ?type WHERE {{ <{MODEL_V1}> a ?type }} ORDER BY ?type").table()
    assert table.splitlines()[0] == "type"
    assert "prov:Entity" in table and "provml:ModelVersion" in table
    assert projected.query("ASK { ?s ?p ?o }").table() == "true"


def test_the_default_graph_is_the_union_of_all_bundles(projected):
    result = projected.query(
        f"SELECT ?m WHERE {{ ?m prov:wasDerivedFrom ?d . ?run prov:used <{RAW}> }}"
    )
    assert result.rows == [(Ref(MODEL_V1),)]  # one pattern per bundle, joined over both
    plain = projected.query("SELECT * WHERE { ?s ?p ?o }", use_default_graph_as_union=False)
    assert plain.rows == []


def test_graph_clauses_address_one_bundle_at_a_time(projected):
    result = projected.query(
        f"SELECT DISTINCT ?g WHERE {{ GRAPH ?g {{ <{CURATED}> ?p ?o }} }} ORDER BY ?g"
    )
    assert [row[0].iri for row in result.rows] == sorted([CURATION, TRAINING])
    only = projected.query(f"SELECT ?run WHERE {{ GRAPH <{CURATION}> {{ ?run prov:used ?x }} }}")
    assert only.rows == [(Ref(B + "run/curate"),)]


def test_a_from_clause_makes_its_own_default_graph(projected):
    result = projected.query(
        f"SELECT DISTINCT ?run FROM <{TRAINING}> WHERE {{ ?run prov:used ?x }}"
    )
    assert result.rows == [(Ref(B + "run/train"),)]


def test_the_protocols_dataset_overrides_the_querys_own(projected):
    runs = f"SELECT DISTINCT ?run FROM <{CURATION}> WHERE {{ ?run prov:used ?x }}"
    result = projected.query(runs, default_graph_uris=[TRAINING])
    assert result.rows == [(Ref(B + "run/train"),)]
    graphs = projected.query(
        "SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } }", named_graph_uris=[CURATION]
    )
    assert graphs.rows == [(Ref(CURATION),)]


@pytest.mark.parametrize(
    "update",
    [
        "INSERT DATA { <urn:a> <urn:b> <urn:c> }",
        "PREFIX ex: <urn:ex:> DELETE WHERE { ?s ?p ?o }",
        "WITH <urn:g> DELETE { ?s ?p ?o } WHERE { ?s ?p ?o }",
        "LOAD <http://example.org/data.ttl>",
        "CLEAR ALL",
        f"DROP GRAPH <{TRAINING}>",
        "CREATE GRAPH <urn:new>",
        f"COPY <{TRAINING}> TO <urn:copy>",
        f"# a comment first\nMOVE <{TRAINING}> TO DEFAULT",
    ],
)
def test_updates_are_refused_and_change_nothing(projected, update):
    before = projected.checksum()
    with pytest.raises(QueryRejected, match="read-only"):
        projected.query(update)
    assert projected.checksum() == before


def test_service_is_refused_unless_allowed(projected):
    query = "SELECT * WHERE { SERVICE SILENT <http://127.0.0.1:9/sparql> { ?s ?p ?o } }"
    with pytest.raises(QueryRejected, match="SERVICE"):
        projected.query(query)
    # Port 9 is refused by Oxigraph's HTTP client itself: SILENT gives one empty row.
    assert len(projected.query(query, allow_service=True)) == 1


def test_the_word_service_in_a_literal_a_variable_or_a_name_is_not_a_service_clause(projected):
    result = projected.query(
        'PREFIX service: <urn:service:> SELECT ?service WHERE { BIND("SERVICE <x>" AS ?service) '
        "FILTER(?service != service:x) } # SERVICE"
    )
    assert result.rows == [("SERVICE <x>",)]


def test_a_syntax_error_is_refused_with_the_parsers_message(projected):
    with pytest.raises(QueryRejected, match=r"syntax error.*1:") as caught:
        projected.query("SELECT ?s WHERE { ?s ?p }")
    assert caught.value.details["reason"] == "syntax"


def test_max_rows_cuts_the_answer_and_says_so(projected):
    result = projected.query("SELECT * WHERE { ?s ?p ?o }", max_rows=3)
    assert len(result) == 3
    assert result.truncated
    assert "max_rows" in result.table()
    whole = projected.query("SELECT * WHERE { ?s ?p ?o }")
    triples = {(q.subject, q.predicate, q.object) for q in projected.quads()}
    assert not whole.truncated and len(whole) == len(triples)


def live_children() -> set[int]:
    """The processes this test process started that still run (Linux /proc)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if int(parent) == os.getpid() and state != "Z":
            children.add(int(stat.parent.name))
    return children


def test_an_expensive_query_stops_at_its_time_limit_while_another_query_answers(
    sqlite_store, tmp_path
):
    sqlite_store.ingest([many_entities_bundle(300), training_bundle()])
    rdf = RDFStore.open(tmp_path / "oxigraph")
    rdf.project(sqlite_store)
    before = live_children()
    # Start two workers first, so that starting one is not part of what is timed.
    warm_up = [
        threading.Thread(target=rdf.query, args=(SELECT_MODELS,), kwargs={"timeout": 60})
        for _ in range(2)
    ]
    for thread in warm_up:
        thread.start()
    for thread in warm_up:
        thread.join()
    # ~900 triples cubed, filtered to nothing: minutes of work without a limit.
    expensive = """SELECT * WHERE { ?a ?p ?b . ?c ?q ?d . ?e ?r ?f
                     FILTER(STRLEN(CONCAT(STR(?b), STR(?d), STR(?f))) < 0) }"""
    outcome: dict[str, object] = {}

    def run_expensive() -> None:
        started = time.monotonic()
        try:
            rdf.query(expensive, timeout=2.0)
        except QueryTimeout as exc:
            outcome["timeout"] = exc
        outcome["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=run_expensive)
    worker.start()
    time.sleep(0.1)
    quick = rdf.query(SELECT_MODELS, timeout=5.0)
    outcome["quick_answered_while_running"] = worker.is_alive()
    worker.join(30)
    assert quick.rows == [(Ref(MODEL_V1), 1)]
    assert outcome["quick_answered_while_running"] is True
    assert isinstance(outcome["timeout"], QueryTimeout)
    assert 2.0 <= outcome["seconds"] < 5.0
    # The expensive query's worker was killed; the quick query's one waits for more.
    assert len(live_children() - before) == 1
    rdf.close()
    assert live_children() - before == set()


def test_a_query_with_a_time_limit_sees_what_was_just_projected(sqlite_store, tmp_path):
    with RDFStore.open(tmp_path / "oxigraph") as rdf:
        sqlite_store.ingest([curation_bundle()])
        rdf.project(sqlite_store)
        graphs = "SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } } ORDER BY ?g"
        assert rdf.query(graphs, timeout=30).rows == [(Ref(CURATION),)]
        sqlite_store.ingest([training_bundle()])
        rdf.project(sqlite_store)  # the worker's snapshot is now old: it takes a new one
        assert rdf.query(graphs, timeout=30).rows == [(Ref(CURATION),), (Ref(TRAINING),)]


def test_while_the_writer_projects_a_query_reads_a_young_snapshot_or_one_made_between_bundles(
    sqlite_store, tmp_path, monkeypatch
):
    import provml._rdf_snapshots

    graphs = "SELECT (COUNT(DISTINCT ?g) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } }"
    with RDFStore.open(tmp_path / "oxigraph") as rdf:
        sqlite_store.ingest([curation_bundle()])
        rdf.project(sqlite_store)
        assert rdf.query(graphs, timeout=30).rows == [(1,)]  # a snapshot of one bundle
        sqlite_store.ingest([training_bundle()])
        rdf.project(sqlite_store)  # the projection has moved past that snapshot
        slow_bundles = [
            Bundle(f"{B}bundle/slow/{i}", (Element("entity", f"{B}slow/{i}"),)) for i in range(10)
        ]
        sqlite_store.ingest(slow_bundles)
        real, projecting = RDFStore._project_bundle, threading.Event()

        def slow(self, *args):  # a pass of 3 s, holding the projection lock throughout
            projecting.set()
            time.sleep(0.3)
            return real(self, *args)

        monkeypatch.setattr(RDFStore, "_project_bundle", slow)
        writer = threading.Thread(target=rdf.project, args=(sqlite_store,))
        writer.start()
        try:
            assert projecting.wait(5)
            monkeypatch.setattr(provml._rdf_snapshots, "_FRESH", 60.0)
            began = time.monotonic()
            assert rdf.query(graphs, timeout=30).rows == [(1,)]  # young enough: served as is
            assert time.monotonic() - began < 1.0
            monkeypatch.setattr(provml._rdf_snapshots, "_FRESH", 0.0)
            began = time.monotonic()
            ((seen,),) = rdf.query(graphs, timeout=30).rows  # old: the projector makes one
            waited = time.monotonic() - began
        finally:
            writer.join(10)
        assert 2 <= seen < 12  # taken between two bundles of the running pass
        assert waited < 1.5  # within a bundle or two, not the 2 s a query waits at most
        assert rdf.query(graphs, timeout=30).rows == [(12,)]


def test_the_first_query_of_a_new_store_waits_for_its_build_within_its_time_limit(
    sqlite_store, tmp_path, monkeypatch
):
    # A CI run answered 503 ("no snapshot to query yet") to the first query of a new
    # service: the build of its new store held the projection lock past the 2 s a query
    # waits for a fresher snapshot, and with no snapshot at all there was nothing to read.
    graphs = "SELECT (COUNT(DISTINCT ?g) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } }"
    sqlite_store.ingest(
        [Bundle(f"{B}bundle/early/{i}", (Element("entity", f"{B}early/{i}"),)) for i in range(6)]
    )
    real, building = RDFStore._quads_of, threading.Event()

    def slow(self, bundle):  # a build of 3 s, holding the projection lock throughout
        building.set()
        time.sleep(0.5)
        return real(self, bundle)

    monkeypatch.setattr(RDFStore, "_quads_of", slow)
    with RDFStore.open(tmp_path / "oxigraph") as rdf:
        assert rdf.needs_rebuild
        writer = threading.Thread(target=rdf.project, args=(sqlite_store,))
        writer.start()
        try:
            assert building.wait(5)
            with pytest.raises(StoreUnavailable, match="being rebuilt"):
                rdf.query(graphs, timeout=0.5)  # its limit ends before the build
            assert rdf.query(graphs, timeout=30).rows == [(6,)]  # the whole built store
        finally:
            writer.join(10)


def project_in_table_files(rdf: RDFStore, store, parts: int = 6) -> None:
    """Project ``parts`` bundles of 200 entities, flushing after each: as many table files."""
    for part in range(parts):
        bundle = Bundle(
            f"{B}bundle/part/{part}",
            tuple(Element("entity", f"{B}e/{part}/{i}", ()) for i in range(200)),
        )
        store.ingest([bundle])
        rdf.project(store)
        rdf._store.flush()


def test_a_query_worker_reads_on_after_the_writer_compacted_its_files(sqlite_store, tmp_path):
    # RocksDB opens a read-only handle's table files on first use. A compaction in the
    # writer deletes the files it merged; a worker reading the writer's own directory
    # then met a missing file in mid-query and pyoxigraph looped on the error until the
    # time limit killed it. Workers read a checkpoint, whose files are hard links.
    with RDFStore.open(tmp_path / "oxigraph") as rdf:
        project_in_table_files(rdf, sqlite_store)  # more than the 16 opened up front
        assert rdf.query("ASK { }", timeout=10).boolean  # a worker opens its snapshot
        rdf._store.optimize()  # compacts: the writer's table files are replaced
        answer = rdf.query(
            "SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s a prov:Entity } }", timeout=10
        )
        assert answer.rows == [(1200,)]


def test_a_query_worker_is_started_ahead_of_the_first_query(tmp_path, monkeypatch):
    # With several server processes, the first query each one received waited for its
    # worker's interpreter to start (~200 ms against ~70 ms warm at 300k records).
    from provml import _sparql_worker

    started = []
    real = _sparql_worker._Worker.__init__

    def counted(self) -> None:
        started.append(threading.get_ident())
        real(self)

    monkeypatch.setattr(_sparql_worker._Worker, "__init__", counted)
    with RDFStore.open(tmp_path / "oxigraph") as rdf:
        rdf.prestart_query_worker()
        rdf.prestart_query_worker()  # one is enough: a second call starts none
        deadline = time.monotonic() + 30
        while not rdf._workers._idle and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(rdf._workers._idle) == 1
        assert started and threading.get_ident() not in started  # not on the caller's thread
        assert rdf.query("ASK { }", timeout=10).boolean  # it takes the started worker
        assert len(started) == 1
    in_memory = RDFStore.open()
    in_memory.prestart_query_worker()  # its queries run in threads: nothing to start
    assert in_memory._workers is None


def test_a_snapshot_is_renewed_once_the_writer_has_compacted_its_files(
    sqlite_store, tmp_path, monkeypatch
):
    # A snapshot taken right after a burst of writes keeps the burst's table files,
    # uncompacted: at 300k records the readers' queries ran 2.3x slower than on the
    # writer's compacted directory, and nothing renewed the snapshot while nothing new
    # was projected. Both the owner's queries and what it publishes for readers renew.
    from pyoxigraph import NamedNode, Quad

    from provml import _rdf_snapshots

    monkeypatch.setattr(_rdf_snapshots, "_SETTLE", 0.0)
    count = "SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s a prov:Entity } }"
    snapshots = tmp_path / "oxigraph.snapshots"
    (tmp_path / f"oxigraph.snapshots-{os.getpid()}").mkdir()  # a live reader

    def served() -> set[str]:
        return {path.name for path in snapshots.iterdir() if path.is_dir()}

    with RDFStore.open(tmp_path / "oxigraph") as rdf:
        project_in_table_files(rdf, sqlite_store)  # for a compaction to merge
        assert rdf.publish_for_readers(0)
        first = served()
        assert not rdf.publish_for_readers(0)  # nothing projected, nothing compacted
        assert rdf.query(count, timeout=10).rows == [(1200,)]
        assert served() == first
        rdf._store.optimize()  # the writer's table files are merged
        assert rdf.publish_for_readers(0)
        second = served()
        assert second != first and (snapshots / "PUBLISHED").read_text() in second
        # The owner's own queries renew too (any change of the writer's table files).
        rdf._store.add(Quad(NamedNode(f"{B}x"), NamedNode(f"{B}p"), NamedNode(f"{B}y")))
        rdf._store.flush()
        assert rdf.query(count, timeout=10).rows == [(1200,)]
        assert served() != second and len(served()) == 1


def test_query_snapshots_are_deleted_once_a_newer_one_serves(sqlite_store, tmp_path):
    graphs = "SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } } ORDER BY ?g"
    with RDFStore.open(tmp_path / "oxigraph") as rdf:
        for part in range(4):
            sqlite_store.ingest([Bundle(f"{B}bundle/p{part}", (Element("entity", f"{B}p{part}"),))])
            rdf.project(sqlite_store)
            assert len(rdf.query(graphs, timeout=10).rows) == part + 1
        snapshots = tmp_path / "oxigraph.snapshots"
        kept = [path.name for path in snapshots.iterdir() if path.is_dir()]
        assert kept == [(snapshots / "PUBLISHED").read_text()]  # the newest; others deleted
        assert rdf.query(graphs, timeout=10).rows  # nothing projected: no new snapshot
        assert [path.name for path in snapshots.iterdir() if path.is_dir()] == kept
    assert not snapshots.exists()


def test_on_an_in_memory_store_the_caller_gets_its_timeout_on_time(sqlite_store):
    sqlite_store.ingest([many_entities_bundle(700)])
    rdf = RDFStore.open()  # no process can share it: the query runs in a thread
    rdf.project(sqlite_store)
    expensive = """SELECT * WHERE { ?a ?p ?b . ?c ?q ?d
                     FILTER(STRLEN(CONCAT(STR(?b), STR(?d))) < 0) }"""  # about a second
    started = time.monotonic()
    with pytest.raises(QueryTimeout):
        rdf.query(expensive, timeout=0.1)
    assert time.monotonic() - started < 0.5


def test_a_query_within_its_time_limit_answers_like_one_without(projected):
    limited = projected.query(SELECT_MODELS, timeout=10.0)
    assert limited.rows == projected.query(SELECT_MODELS).rows
    with pytest.raises(QueryRejected, match="syntax error"):
        projected.query("SELECT ?s WHERE { ?s ?p }", timeout=10.0)


def test_a_qualified_relation_is_also_asserted_as_its_binary_triple(projected):
    # `used` with a time is written by prov as prov:qualifiedUsage only.
    result = projected.query(
        f"""SELECT ?time WHERE {{ GRAPH <{CURATION}> {{
              <{B}run/curate> prov:used <{RAW}> ;
                  prov:qualifiedUsage [ prov:entity <{RAW}> ; prov:atTime ?time ] }} }}"""
    )
    assert result.rows == [(T0,)]


def test_a_property_path_finds_the_raw_data_a_model_version_was_trained_on(projected):
    result = projected.query(
        f"""SELECT DISTINCT ?raw WHERE {{
              <{MODEL_V1}> (prov:wasDerivedFrom|prov:wasGeneratedBy|prov:used)+ ?raw .
              ?raw a provml:DomainData }}"""
    )
    assert result.rows == [(Ref(RAW),)]


def test_the_rdflib_view_gives_the_same_answers_as_query(projected):
    query = """SELECT ?s ?o WHERE { ?s prov:used ?o } ORDER BY ?s ?o"""
    expected = [tuple(str(v.iri) for v in row) for row in projected.query(query).rows]
    dataset = projected.as_rdflib_dataset()
    through_oxigraph = [tuple(map(str, row)) for row in dataset.query(query)]
    # rdflib's own SPARQL engine, reading triples through the store interface:
    through_rdflib = [
        tuple(map(str, row)) for row in dataset.query(query, use_store_provided=False)
    ]
    assert expected == through_oxigraph == through_rdflib
    assert len(expected) == 3


def test_the_rdflib_view_sees_each_bundle_as_a_named_graph(projected):
    dataset = projected.as_rdflib_dataset()
    names = {str(g.identifier) for g in dataset.graphs()}
    assert {CURATION, TRAINING} <= names
    graph = dataset.graph(rdflib.URIRef(CURATION))
    assert len(graph) == projected.count(CURATION)


# ----------------------------------------------------------------- one writer only


WRITER = textwrap.dedent(
    """
    import sys
    from provml.rdf import RDFStore
    store = RDFStore.open(sys.argv[1])
    print("ready", flush=True)
    for line in sys.stdin:  # each line asks for a snapshot for the readers
        print(store.publish_for_readers(0), flush=True)
    store.close()
    """
)


@contextlib.contextmanager
def writer_process(path: Path) -> Iterator[tuple[int, Callable[[], bool]]]:
    """Another process holding the store at ``path`` for writing; yields its pid and a
    function that makes it publish a snapshot for the readers (True if it took one)."""
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdin is not None and writer.stdout is not None
    stdin, stdout = writer.stdin, writer.stdout

    def publish() -> bool:
        stdin.write("publish\n")
        stdin.flush()
        return stdout.readline().strip() == "True"

    try:
        assert stdout.readline().strip() == "ready"
        yield writer.pid, publish
    finally:
        writer.communicate("", timeout=30)
    assert writer.returncode == 0


def files_open_in(directory: Path, but_not: int) -> list[str]:
    """The files inside ``directory`` that this process or its children but ``but_not``
    hold open."""
    found = []
    for pid in {os.getpid(), *live_children()} - {but_not}:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            with contextlib.suppress(OSError):  # closed meanwhile
                target = os.readlink(fd)
                if target.startswith(f"{directory}{os.sep}"):
                    found.append(target)
    return found


def test_a_second_process_opens_the_store_read_only_while_the_writer_holds_it(
    sqlite_store, tmp_path
):
    path = tmp_path / "oxigraph"
    sqlite_store.ingest([curation_bundle(), training_bundle()])
    with RDFStore.open(path) as rdf:
        rdf.project(sqlite_store)
        expected = rdf.checksum()
    with writer_process(path) as (_, publish):
        with pytest.raises(StoreUnavailable, match=r"another process.*read-only"):
            RDFStore.open(path)
        with RDFStore.open(path, read_only=True) as reader:
            assert publish()
            reader.refresh()
            assert reader.checksum() == expected
            assert reader.query(SELECT_MODELS, timeout=5.0).rows == [(Ref(MODEL_V1), 1)]
            with pytest.raises(StoreUnavailable, match="read-only"):
                reader.project(sqlite_store)


def test_a_reader_never_opens_the_writers_directory_and_waits_for_its_first_snapshot(
    sqlite_store, tmp_path
):
    # Until the writer published a snapshot, another process read the writer's live
    # directory, where a compaction can delete a table file under a query: pyoxigraph
    # then spins until the worker is killed (provml._rdf_snapshots).
    path = tmp_path / "oxigraph"
    sqlite_store.ingest([curation_bundle(), training_bundle()])
    with RDFStore.open(path) as rdf:
        rdf.project(sqlite_store)
    with writer_process(path) as (writer, publish), RDFStore.open(path, read_only=True) as reader:
        with pytest.raises(StoreUnavailable, match=r"being built.*no snapshot.*after 0\.5 s"):
            reader.query(SELECT_MODELS, timeout=0.5)  # its limit passes with none published
        with pytest.raises(StoreUnavailable, match="being built"):
            reader.count()
        assert not reader.reads_copy and files_open_in(path, but_not=writer) == []
        published: list[bool] = []
        later = threading.Timer(0.3, lambda: published.append(publish()))
        later.start()
        try:
            # The query waits for the snapshot within its time limit.
            assert reader.query(SELECT_MODELS, timeout=10).rows == [(Ref(MODEL_V1), 1)]
        finally:
            later.join(10)
        assert published == [True] and reader.reads_copy
        assert files_open_in(path, but_not=writer) == []  # not here nor in a query worker


def test_a_store_being_rebuilt_is_not_published_for_readers(sqlite_store, tmp_path):
    # Its readers would answer from a partial projection, or from nothing, as if it were
    # the whole store; they say it is being built instead, as the owner's queries do.
    path = tmp_path / "oxigraph"
    sqlite_store.ingest([curation_bundle()])
    with RDFStore.open(path) as writer, RDFStore.open(path, read_only=True) as reader:
        assert writer.needs_rebuild  # a new store
        assert not writer.publish_for_readers(0)
        with pytest.raises(StoreUnavailable, match="being built"):
            reader.query("ASK { }", timeout=0.2)
        writer.project(sqlite_store)  # rebuilds it
        assert writer.publish_for_readers(0)
        reader.refresh()
        assert reader.graphs() == [CURATION]


def test_a_readers_count_keeps_its_copy_while_newer_ones_are_taken_up(sqlite_store, tmp_path):
    # A reader's copies beyond the two newest are deleted as newer ones are taken up,
    # and RocksDB reading a copy deleted under it spins for ever: a /readyz count at 1M
    # records hung so while the owner published twice during it. Here the two
    # publications happen inside the count's query.
    path = tmp_path / "oxigraph"
    sqlite_store.ingest([curation_bundle()])
    with RDFStore.open(path) as writer:
        writer.project(sqlite_store)
        expected = writer.count()
        reader = RDFStore.open(path, read_only=True)
        assert writer.publish_for_readers(0)
        reader.refresh()
        first = reader._reading

        class Racing:
            """The reader's handle, two newer snapshots taken up during its query."""

            def __init__(self, store):
                self.store = store

            def query(self, *args, **kwargs):
                for lr in ("0.1", "0.2"):
                    sqlite_store.ingest([training_bundle(lr)])
                    writer.project(sqlite_store)
                    assert writer.publish_for_readers(0)
                    reader.refresh()
                assert reader._reading != first
                assert first.is_dir(), "the copy under a running read was deleted"
                return self.store.query(*args, **kwargs)

        reader._inner = Racing(reader._inner)
        assert reader.count() == expected  # what the copy it began on holds
        assert not first.exists()  # let go once the read ended
        assert reader.count() == writer.count()
        reader.close()


def test_a_read_only_store_sees_later_projections_after_refresh(sqlite_store, tmp_path):
    path = tmp_path / "oxigraph"
    sqlite_store.ingest([curation_bundle()])
    with RDFStore.open(path) as writer:
        writer.project(sqlite_store)
        reader = RDFStore.open(path, read_only=True)
        assert writer.publish_for_readers(0)
        assert reader.graphs() == [CURATION]
        sqlite_store.ingest([training_bundle()])
        writer.project(sqlite_store)
        assert writer.publish_for_readers(0)
        assert reader.graphs() == [CURATION]  # a snapshot
        reader.refresh()
        assert reader.graphs() == sorted([CURATION, TRAINING])
        assert reader.checksum() == writer.checksum()
        reader.close()


def test_a_reader_reads_copies_of_what_the_writer_publishes_whatever_the_writer_deletes(
    sqlite_store, tmp_path
):
    # A reading process's worker on the writer's live directory met the files the
    # writer's compactions deleted, and spun (see test_a_query_worker_reads_on_after_…).
    path = tmp_path / "oxigraph"
    count = "SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s a prov:Entity } }"

    def part(n: int) -> Bundle:
        return Bundle(
            f"{B}bundle/part/{n}", tuple(Element("entity", f"{B}e/{n}/{i}") for i in range(200))
        )

    with RDFStore.open(path) as writer:
        for n in range(6):  # many small table files
            sqlite_store.ingest([part(n)])
            writer.project(sqlite_store)
            writer._store.flush()
        assert not writer.publish_for_readers(0)  # nobody reads copies: nothing to do
        reader = RDFStore.open(path, read_only=True)
        try:
            assert writer.publish_for_readers(0)  # a reader now: a snapshot, published
            assert not writer.publish_for_readers(0)  # the projection has not moved
            reader.refresh()
            copies = tmp_path / f"oxigraph.snapshots-{os.getpid()}"
            assert reader._reading is not None and reader._reading.parent == copies
            assert reader.query(count, timeout=10).rows == [(1200,)]
            sqlite_store.ingest([part(6)])
            writer.project(sqlite_store)
            writer._store.optimize()  # the writer's table files are replaced
            assert writer.publish_for_readers(0)  # and its older snapshot deleted
            assert reader.query(count, timeout=10).rows == [(1200,)]  # our copy still reads
            reader.refresh()
            assert reader.query(count, timeout=10).rows == [(1400,)]
            assert reader.count() == writer.count()
            assert len(list(copies.iterdir())) <= 2
        finally:
            reader.close()
        assert not copies.exists()
        assert not writer.publish_for_readers(0)
        dead = tmp_path / "oxigraph.snapshots-999999999"  # a reader that was killed
        dead.mkdir()
        assert not writer.publish_for_readers(0) and not dead.exists()


def test_a_reader_takes_up_the_snapshots_of_a_restarted_writer(sqlite_store, tmp_path):
    path = tmp_path / "oxigraph"
    sqlite_store.ingest([curation_bundle()])
    with RDFStore.open(path) as writer:
        writer.project(sqlite_store)
    reader = RDFStore.open(path, read_only=True)
    try:
        for bundles in ([CURATION], [CURATION, TRAINING]):
            with RDFStore.open(path) as writer:  # a new owner process, say
                if len(bundles) == 2:
                    sqlite_store.ingest([training_bundle()])
                    writer.project(sqlite_store)
                assert writer.publish_for_readers(0)  # a new owner: its first snapshot
                reader.refresh()
                assert reader.reads_copy and reader.graphs() == sorted(bundles)
    finally:
        reader.close()


def test_a_second_writable_handle_in_the_same_process_is_refused_clearly(tmp_path):
    with (
        RDFStore.open(tmp_path / "oxigraph"),
        pytest.raises(StoreUnavailable, match="already open for writing in this process"),
    ):
        RDFStore.open(tmp_path / "oxigraph")


def test_a_missing_store_cannot_be_opened_read_only(tmp_path):
    with pytest.raises(StoreUnavailable, match="no RDF store"):
        RDFStore.open(tmp_path / "nothing", read_only=True)


# ------------------------------------------------- the W3C SPARQL syntax test suites

MF = "http://www.w3.org/2001/sw/DataAccess/tests/test-manifest#"
SYNTAX_SUITES = [
    "sparql11/syntax-query",
    "sparql11/syntax-update-1",
    "sparql11/syntax-update-2",
    "sparql11/syntax-fed",
    *(f"sparql10/syntax-sparql{n}" for n in range(1, 6)),
]


def syntax_tests(suite: str) -> list[tuple[str, str, Path]]:
    """(test IRI, test type local name, query file) of one W3C manifest."""
    folder = conformance_dir() / "sparql" / "rdf-tests" / suite
    manifest = rdflib.Graph().parse(folder / "manifest.ttl", publicID=folder.as_uri() + "/")
    out = []
    for test, kind in manifest.subject_objects(rdflib.RDF.type):
        if str(kind).startswith(MF) and "Syntax" in str(kind):
            action = manifest.value(test, rdflib.URIRef(MF + "action"))
            out.append(
                (
                    str(test),
                    str(kind)[len(MF) :],
                    Path(rdflib.URIRef(action).removeprefix("file://")),
                )
            )
    return sorted(out)


def engine_failures() -> set[str]:
    """Tests pyoxigraph gets wrong by itself (measured once; not provml's to fix)."""
    baseline = json.loads((conformance_dir() / "sparql" / "ENGINE_BASELINE_FAILS.json").read_text())
    return {
        test
        for group in baseline.values()
        if isinstance(group, dict)
        for test in group.get("oxigraph", [])
    }


def outcome_of(rdf: RDFStore, text: str, base_iri: str) -> str:
    try:
        rdf.query(text, base_iri=base_iri)
    except QueryRejected as exc:
        return "refused: " + exc.details.get("reason", exc.details.get("operation", ""))
    return "answered"


@pytest.mark.conformance
@pytest.mark.parametrize("suite", SYNTAX_SUITES)
def test_the_w3c_syntax_tests_are_answered_or_refused_as_they_should_be(suite):
    """Valid queries are answered, invalid ones refused; every update is refused as one.

    This holds the lexical checks (update, SERVICE) to real queries: a keyword seen
    where there is none would refuse a valid query here.
    """
    from provml._sparql import UPDATE_FORMS, inspect_query

    rdf = RDFStore.open()
    known = engine_failures()
    tests = [t for t in syntax_tests(suite) if t[0] not in known]
    wrong = []
    for _, kind, path in tests:
        text = path.read_text(encoding="utf-8")
        outcome = outcome_of(rdf, text, path.as_uri())
        form = inspect_query(text).form
        if kind.startswith("PositiveUpdate"):
            # An update with no operation at all ("# Empty") is not a query either.
            expected = {f"refused: {form}"} if form in UPDATE_FORMS else {"refused: syntax"}
        elif kind.startswith("NegativeUpdate"):
            expected = {"refused: syntax", f"refused: {form}"}  # refused before parsing
        elif kind.startswith("Negative"):
            expected = {"refused: syntax"}
        elif suite.endswith("syntax-fed"):
            expected = {"refused: SERVICE"}  # every one uses SERVICE; allow_service is off
        else:
            # Parsed, though Oxigraph cannot run an unknown extension function.
            expected = {"answered", "refused: evaluation"}
        if outcome not in expected:
            wrong.append(f"{path.name} ({kind}): {outcome}, expected {' or '.join(expected)}")
    assert tests
    assert wrong == []


QT = "http://www.w3.org/2001/sw/DataAccess/tests/test-query#"


def result_format_tests(suite: str) -> list[tuple[str, Path, Path, Path]]:
    """(test IRI, query, data, expected result) of the W3C result format tests of a folder."""
    folder = conformance_dir() / "sparql" / "rdf-tests" / suite
    manifest = rdflib.Graph().parse(folder / "manifest.ttl", publicID=folder.as_uri() + "/")

    def local(node) -> Path:
        return Path(str(node).removeprefix("file://"))

    out = []
    for test, result in manifest.subject_objects(rdflib.URIRef(MF + "result")):
        action = manifest.value(test, rdflib.URIRef(MF + "action"))
        query = manifest.value(action, rdflib.URIRef(QT + "query"))
        data = manifest.value(action, rdflib.URIRef(QT + "data"))
        out.append((str(test), local(query), local(data), local(result)))
    return sorted(out)


def comparable(text: str, fmt: str) -> tuple[set[str], list[dict[str, object]]]:
    """Variables and rows of a results document, blank node labels wildcarded.

    Oxigraph lists the variables of ``SELECT *`` in its own order, which the
    specification leaves open, so columns are compared by name.
    """

    def blank(value: object) -> object:
        if isinstance(value, dict) and value.get("type") == "bnode":
            return {"type": "bnode"}
        if isinstance(value, str) and value.startswith("_:"):
            return "_:"
        if fmt == "csv" and isinstance(value, str):  # Oxigraph keeps numbers, not their
            with contextlib.suppress(ValueError):  # lexical forms: 1.0E6 comes back 1000000
                return float(value)
        return value

    if fmt == "srj":
        document = json.loads(text)
        if "boolean" in document:
            return set(), [{"boolean": document["boolean"]}]
        rows = [{k: blank(v) for k, v in b.items()} for b in document["results"]["bindings"]]
        return set(document["head"]["vars"]), rows
    reader = csv.reader(io.StringIO(text), dialect="excel" if fmt == "csv" else "excel-tab")
    header, *lines = list(reader)
    names = [name.lstrip("?") for name in header]
    return set(names), [dict(zip(names, map(blank, line), strict=True)) for line in lines]


@pytest.mark.conformance
@pytest.mark.parametrize("suite", ["sparql11/json-res", "sparql11/csv-tsv-res"])
def test_results_are_written_as_the_w3c_result_format_tests_expect(suite):
    import pyoxigraph

    known = engine_failures()
    wrong = []
    tests = [t for t in result_format_tests(suite) if t[0] not in known]
    for _, query, data, expected in tests:
        inner = pyoxigraph.Store()  # the test data laid out as a bundle's would be
        inner.load(
            path=data, format=pyoxigraph.RdfFormat.TURTLE, to_graph=pyoxigraph.NamedNode(B + "g")
        )
        inner.extend(_merged(list(inner)))  # its named graph, merged into the default one
        result = RDFStore(inner, None, False).query(query.read_text(), base_iri=query.as_uri())
        fmt = expected.suffix.lstrip(".")
        written = result.serialize({"srj": "json"}.get(fmt, fmt)).decode()
        if comparable(written, fmt) != comparable(expected.read_text(), fmt):
            wrong.append(f"{expected.name}:\n{written}")
    assert tests
    assert wrong == []


def test_mid_pass_checkpoints_take_a_small_share_of_a_long_catch_up(tmp_path):
    # Between two bundles of a long catch-up the owner publishes for its readers once
    # an interval; a checkpoint stops the projection while it is taken (0.13-0.2 s at
    # 1M quads), so with a short interval they would take most of the pass. The next
    # one waits 20 times as long as the last took, whatever the interval asked.
    from pyoxigraph import NamedNode, Quad, Store

    from provml._rdf_snapshots import ReadSnapshots

    store = Store(str(tmp_path / "oxigraph"))
    store.extend(
        Quad(NamedNode(f"{B}s{i}"), NamedNode(f"{B}p"), NamedNode(f"{B}o{i}"), NamedNode(f"{B}g"))
        for i in range(20_000)
    )
    snapshots = ReadSnapshots(tmp_path / "oxigraph")
    (tmp_path / f"oxigraph.snapshots-{os.getpid()}").mkdir()  # a live reader
    began, in_checkpoints, taken = time.monotonic(), 0.0, 0
    while time.monotonic() - began < 1.5:
        store.add(Quad(NamedNode(f"{B}x{taken}"), NamedNode(f"{B}p"), NamedNode(f"{B}y")))
        started = time.monotonic()
        if snapshots.publish_between_bundles(store, 1, min_age=0.0):  # "every bundle"
            in_checkpoints += time.monotonic() - started
            taken += 1
    assert taken >= 1  # the readers got one right away
    assert in_checkpoints <= 0.2 * (time.monotonic() - began), (taken, in_checkpoints)
    snapshots.close()


def test_the_bulk_loader_keeps_every_term_as_it_was_given():
    """_bulk_load writes quads as N-Quads for Oxigraph's GIL-free loader: escapes,
    language tags, typed literals, the default graph and (through bulk_extend, since
    the parser renames them) blank nodes all arrive as bulk_extend would add them; and
    with ``merged``, as bulk_extend adds ``_merged(quads)``, the default graph's copies
    cut from the quads' lines (a literal holding " <…>" included)."""
    import pyoxigraph as ox

    from provml import rdf as rdf_module

    ex = "https://provml.local/test/"
    text = 'a "quote"\nnew line\\ é \u2028\ttab'
    quads = [
        ox.Quad(
            ox.NamedNode(ex + "s"), ox.NamedNode(ex + "p"), ox.Literal(text), ox.NamedNode(ex + "g")
        ),
        ox.Quad(
            ox.NamedNode(ex + "s"),
            ox.NamedNode(ex + "p"),
            ox.Literal("hi", language="en-US"),
            ox.DefaultGraph(),
        ),
        ox.Quad(
            ox.BlankNode("b0content"),
            ox.NamedNode(ex + "p"),
            ox.Literal("2026-01-01T00:00:00+00:00", datatype=ox.NamedNode(XSD + "dateTime")),
            ox.NamedNode(ex + "g"),
        ),
        ox.Quad(
            ox.NamedNode(ex + "s"),
            ox.NamedNode(ex + "p"),
            ox.Literal("1e16", datatype=ox.NamedNode(XSD + "double")),
            ox.DefaultGraph(),
        ),
        ox.Quad(
            ox.NamedNode(ex + "s?x=1#f"),
            ox.NamedNode(ex + "p"),
            ox.BlankNode("b1content"),
            ox.NamedNode(ex + "g2"),
        ),
        ox.Quad(
            ox.NamedNode(ex + "s"),
            ox.NamedNode(ex + "p"),
            ox.Literal(f"see <{ex}g> and <{ex}g2> <", language="en"),
            ox.NamedNode(ex + "g"),
        ),
        ox.Quad(
            ox.NamedNode(ex + "s"),
            ox.NamedNode(ex + "p"),
            ox.NamedNode(ex + "o"),
            ox.NamedNode(ex + "g2"),
        ),
    ]
    expected, expected_merged = ox.Store(), ox.Store()
    expected.bulk_extend(quads)
    expected_merged.bulk_extend(rdf_module._merged(quads))
    assert len(expected_merged) > len(expected)
    for chunk in (1, 2, 10):
        loaded, merged = ox.Store(), ox.Store()
        rdf_module._bulk_load(loaded, quads, chunk=chunk)
        assert set(loaded) == set(expected)
        rdf_module._bulk_load(merged, quads, chunk=chunk, merged=True)
        assert set(merged) == set(expected_merged)
    assert {q.subject for q in expected if isinstance(q.subject, ox.BlankNode)} == {
        ox.BlankNode("b0content")
    }


def test_a_failed_chunk_stops_the_bulk_load_with_its_error():
    from provml import rdf as rdf_module

    class Failing:
        def __init__(self) -> None:
            self.loads = 0

        def bulk_load(self, **_: object) -> None:
            self.loads += 1
            if self.loads == 2:
                raise OSError("disk full")

    import pyoxigraph as ox

    quad = ox.Quad(ox.NamedNode(B + "s"), ox.NamedNode(B + "p"), ox.Literal("x"), ox.DefaultGraph())
    store = Failing()
    with pytest.raises(OSError, match="disk full"):
        rdf_module._bulk_load(store, [quad] * 10, chunk=2)
    assert store.loads == 2  # nothing is loaded after the chunk that failed


def counted_bulk_loads(monkeypatch) -> list[int]:
    """The number of quads of each _bulk_load call from now on (the calls still load)."""
    from provml import rdf as rdf_module

    loads: list[int] = []
    original = rdf_module._bulk_load

    def counted(target, quads, chunk=None, **options):
        quads = list(quads)
        loads.append(len(quads))
        return original(target, quads, chunk, **options)

    monkeypatch.setattr(rdf_module, "_bulk_load", counted)
    return loads


@pytest.mark.parametrize("on_disk", [False, True])
def test_a_rebuild_loaded_in_many_chunks_equals_incremental_projection(
    store, tmp_path, monkeypatch, on_disk
):
    """A rebuild hands the bulk loader a few quads at a time (_BULK_CHUNK): the chunks,
    blank nodes and merged descriptions included, add up to what projection makes."""
    from provml import rdf as rdf_module

    for batch in long_run_batches("chunked", batches=4, per_batch=5):
        store.ingest([batch])
    incremental = RDFStore.open()
    incremental.project(store)

    monkeypatch.setattr(rdf_module, "_BULK_CHUNK", 7)
    monkeypatch.setattr(rdf_module, "_BLANK_NODE_CHUNK", 3)
    loads = counted_bulk_loads(monkeypatch)
    with RDFStore.open(tmp_path / "oxigraph" if on_disk else None) as rebuilt:
        rebuilt.rebuild(store)
        assert loads and loads[0] > 7  # more than one chunk
        assert rebuilt.count() == incremental.count() > 0
        assert rebuilt.checksum() == incremental.checksum()


@pytest.mark.parametrize("on_disk", [False, True])
def test_a_projection_gathers_what_bundles_add_and_bulk_loads_it_as_transactions_would(
    store, tmp_path, monkeypatch, on_disk
):
    """The quads new records add are gathered over bundles and written together, through
    the bulk loader once there are enough (_BULK_MIN), every _BULK_BATCH quads: with
    blank nodes, merged descriptions and a bundle replaced whole in the same pass, the
    store is the one that writing each bundle in its own transaction makes, and the one
    a rebuild makes."""
    from provml import rdf as rdf_module
    from provml.store.sql import SQLStore

    one, two = long_run_batches("one", 6, 5), long_run_batches("two", 6, 5)
    steps = [[a, b] for a, b in zip(one, two, strict=True)]
    steps[3].append(curation_bundle())
    steps[4] += [training_bundle(), curation_bundle()]  # a replay: projected whole

    # Step by step, each bundle in a transaction of its own (too few quads to bulk-load).
    transactional = RDFStore.open()
    for step in steps:
        store.ingest(step)
        while transactional.project(store):
            pass

    # The same ingests into a second SQL store, then one pass over all of them.
    loads = counted_bulk_loads(monkeypatch)
    monkeypatch.setattr(rdf_module, "_BULK_MIN", 10)
    monkeypatch.setattr(rdf_module, "_BULK_BATCH", 40)
    monkeypatch.setattr(rdf_module, "_BULK_CHUNK", 7)
    monkeypatch.setattr(rdf_module, "_BLANK_NODE_CHUNK", 3)
    other = SQLStore(f"sqlite:///{tmp_path / 'other.sqlite'}")
    other.upgrade()
    try:
        with RDFStore.open(tmp_path / "oxigraph" if on_disk else None) as gathered:
            gathered.project(other)  # a new store's first projection builds it (empty)
            loads.clear()
            for step in steps:
                other.ingest(step)
            while gathered.project(other):
                pass
            assert len(loads) > 2 and max(loads) >= 20  # bulk-loaded, in several writes
            assert gathered.count() == transactional.count() > 0
            assert gathered.checksum() == transactional.checksum()
            rebuilt = RDFStore.open()
            rebuilt.rebuild(other)
            assert rebuilt.checksum() == gathered.checksum()
    finally:
        other.close()
