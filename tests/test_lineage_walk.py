"""The breadth-first walk in one PostgreSQL statement answers as the per-level walk does.

On PostgreSQL the first levels of a walk run as one recursive statement (a level per
step, the nodes seen carried as an array) and a walk that outgrows ``_LEAN`` nodes
goes on with one query per level. Both must give what the per-level walk gives,
whatever the depth, stop classes and node bound, on a random graph with shared
nodes, paths of different lengths and cycles; and whole answers must be the same on
SQLite.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from conftest import _fresh_postgres_database

from provml import lineage
from provml.records import Bundle, Element, Ref, Relation
from provml.store.sql import SQLStore
from provml.views import lineage_view
from provml.vocab import PROV_LABEL, PROV_TYPE, ml

pytestmark = pytest.mark.postgres

EX = "https://provml.local/walk/"
CLASSES = ["DomainData", "FeatureSetData", "ModelVersion", "MetricValue"]


def _graph(seed: int = 11) -> list[Bundle]:
    """Entities in layers, derived from random earlier ones; a few alternateOf cycles.

    Some relations have ids, times and attributes, so that an answer shows whether each
    way of reading an edge's relation read the right columns.
    """
    rng = random.Random(seed)
    entities = [EX + f"e/{n}" for n in range(60)]
    bundles = []
    for n, iri in enumerate(entities):
        records: list = [Element("entity", iri, ((PROV_TYPE, Ref(ml(CLASSES[n % len(CLASSES)]))),))]
        for source in rng.sample(entities[:n], min(n, rng.randrange(0, 4))):
            weight = ((EX + "weight", rng.random()),) if n % 2 else ()
            records.append(Relation("wasDerivedFrom", iri, source, attributes=weight))
        if n and n % 9 == 0:
            activity, at = EX + f"a/{n}", datetime(2026, 1, 1 + n % 28, 12, tzinfo=UTC)
            records += [
                Element("activity", activity),
                Relation("wasGeneratedBy", iri, activity, id=EX + f"gen/{n}", time=at),
                Relation(
                    "used",
                    activity,
                    entities[rng.randrange(n)],
                    time=at,
                    attributes=((PROV_LABEL, f"input of {n}"),),
                ),
            ]
        bundles.append(Bundle(EX + f"bundle/{n}", tuple(records)))
    cycles = [
        Relation("alternateOf", entities[a], entities[b])
        for a, b in ((5, 40), (40, 5), (12, 13), (13, 12), (30, 30))
    ]
    bundles.append(Bundle(EX + "bundle/cycles", tuple(cycles)))
    return bundles


@pytest.fixture(scope="module")
def postgresql(tmp_path_factory) -> Iterator[SQLStore]:
    for url in _fresh_postgres_database("provml_test_walk_"):
        store = SQLStore(url)
        store.upgrade()
        store.ingest(_graph())
        yield store
        store.close()


@pytest.fixture(scope="module")
def sqlite(tmp_path_factory) -> Iterator[SQLStore]:
    store = SQLStore(f"sqlite:///{tmp_path_factory.mktemp('walk') / 'provml.sqlite'}")
    store.upgrade()
    store.ingest(_graph())
    yield store
    store.close()


ROOTS = [EX + f"e/{n}" for n in (0, 5, 12, 30, 41, 59)] + [EX + "a/27"]
BOUNDS = [
    (depth, stop, max_nodes)
    for depth in (None, 0, 1, 2, 4)
    for stop in (frozenset(), frozenset({"ModelVersion"}), frozenset({"DomainData", "MetricValue"}))
    for max_nodes in (1, 4, 15, 10_000)
]


def _normal(answer: tuple[list[str], list, set[str]]) -> tuple:
    order, links, stopped = answer
    return sorted(order), sorted(links), sorted(stopped), len(order)


@pytest.mark.parametrize("lean", [0, 3, 20, 1000])
def test_the_statement_walks_as_the_per_level_queries_do(postgresql, monkeypatch, lean):
    monkeypatch.setattr(lineage, "_LEAN", lean)
    with postgresql.read() as conn:
        for root in ROOTS:
            for upstream_walk in (True, False):
                for depth, stop, max_nodes in BOUNDS:
                    args = (conn, root, upstream_walk, depth, stop, max_nodes)
                    per_level = lineage._breadth_first(*args)
                    statement = lineage._breadth_first_postgresql(*args)
                    assert _normal(statement) == _normal(per_level), (lean, args[1:])


def test_the_walk_reaches_past_the_statement_where_a_wide_walk_hands_over(postgresql, monkeypatch):
    everything = lineage.downstream(postgresql, EX + "e/0")
    monkeypatch.setattr(lineage, "_LEAN", 2)
    handed_over = lineage.downstream(postgresql, EX + "e/0")
    assert len(everything.nodes) > 10
    assert handed_over == everything
    # The edges past the hand-over carry their relations' columns.
    assert any(edge.time and edge.id for edge in handed_over.edges)
    assert any(edge.attributes for edge in handed_over.edges)


def _answer(store: SQLStore, root: str, direction: str, **bounds) -> str:
    walk = lineage.upstream if direction == "up" else lineage.downstream
    return json.dumps(lineage_view(walk(store, root, **bounds)), sort_keys=True)


def test_answers_are_the_same_on_sqlite_and_postgresql(sqlite, postgresql):
    for root in ROOTS:
        for direction in ("up", "down"):
            for bounds in (
                {},
                {"depth": 1},
                {"depth": 3, "stop_at": ("ModelVersion",)},
                {"max_nodes": 6},
                {"stop_at": ("DomainData",), "max_nodes": 20},
            ):
                assert _answer(sqlite, root, direction, **bounds) == _answer(
                    postgresql, root, direction, **bounds
                ), (root, direction, bounds)
