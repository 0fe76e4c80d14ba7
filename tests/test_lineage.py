"""The lineage engine on a realistic PROV-ML graph, once per SQL backend.

The graph: raw seismic files → curation → tiles → preparation → train/validation
feature sets → training → model version 1; version 2 fine-tuned from version 1 on
re-curated data (one more raw file) with other hyperparameters; an evaluation of
version 2; inference with each version. Expected answers are derived from that story,
not from the engine's output.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise

import pytest
from conftest import _fresh_postgres_database

from provml import lineage
from provml.errors import NotFound, QueryRejected
from provml.records import Bundle, Element, Ref, Relation
from provml.store.sql import SQLStore
from provml.vocab import PROV, PROV_LABEL, PROV_TYPE, ml

EX = "https://provml.local/"
RAW_A, RAW_B, RAW_C = (EX + f"data/raw-{x}.segy" for x in "abc")
V1, V2, MODEL = EX + "model/unet/v/1", EX + "model/unet/v/2", EX + "model/unet"
PRED_1, PRED_2, EVAL_2 = EX + "pred/with-v1", EX + "pred/with-v2", EX + "eval/v2-accuracy"
ALICE, PLAN = EX + "agent/alice", EX + "plan/training"


def node(kind: str, name: str, ml_class: str | None = None, *attributes) -> Element:
    types = ((PROV_TYPE, Ref(ml(ml_class))),) if ml_class else ()
    return Element(kind, EX + name, (*types, (PROV_LABEL, name), *attributes))


def data(name: str, ml_class: str = "DomainData") -> Element:
    return node("entity", name, ml_class)


def param(name: str, value: str) -> Element:
    return node(
        "entity",
        f"param/{name}={value}",
        "LearningHyperparameterValue",
        (ml("name"), name),
        (ml("hyperparameterValue"), value),
    )


def used(activity: str, entity: str) -> Relation:
    return Relation("used", EX + activity, entity if "://" in entity else EX + entity)


def generated(entity: str, activity: str) -> Relation:
    return Relation("wasGeneratedBy", entity if "://" in entity else EX + entity, EX + activity)


def curation(run: int, raws: list[str]) -> Bundle:
    """Curation run ``run``: raw files → tiles → train (per run) and validation sets."""
    tiles, train = f"data/tiles-{run}", f"data/train-features-{run}"
    records = [
        *(Element("entity", raw, ((PROV_TYPE, Ref(ml("DomainData"))),)) for raw in raws),
        node("activity", f"run/curation-{run}", "DataTransformationExecution"),
        data(tiles),
        node("activity", f"run/preparation-{run}", "DataTransformationExecution"),
        data(train, "FeatureSetData"),
        *(used(f"run/curation-{run}", raw) for raw in raws),
        generated(tiles, f"run/curation-{run}"),
        *(
            Relation(
                "wasDerivedFrom",
                EX + tiles,
                raw,
                extras=(("activity", EX + f"run/curation-{run}"),),
            )
            for raw in raws
        ),
        used(f"run/preparation-{run}", tiles),
        generated(train, f"run/preparation-{run}"),
    ]
    if run == 1:  # the validation set is made once and reused by later trainings
        records += [data("data/validation-features", "FeatureSetData")]
        records += [generated("data/validation-features", "run/preparation-1")]
    return Bundle(EX + f"bundle/curation-{run}", tuple(records))


def training(run: int, params: dict[str, str], code: str, base: str | None) -> Bundle:
    version = EX + f"model/unet/v/{run}"
    act = f"run/training-{run}"
    records = [
        node("activity", act, "TrainingExecution", (ml("codeVersion"), code)),
        node("entity", f"model/unet/v/{run}", "ModelVersion"),
        node("entity", "model/unet", "Model"),
        node("agent", "agent/alice", "Persona"),
        node("entity", "plan/training", "Training", (PROV_TYPE, Ref(PROV + "Plan"))),
        *(param(name, value) for name, value in params.items()),
        used(act, f"data/train-features-{run}"),
        used(act, "data/validation-features"),
        *(used(act, f"param/{name}={value}") for name, value in params.items()),
        Relation("wasAssociatedWith", EX + act, ALICE, extras=(("plan", PLAN),)),
        generated(version, act),
        Relation("specializationOf", version, MODEL),
        Relation("wasAttributedTo", version, ALICE),
    ]
    if base is not None:  # fine-tuning starts from the base version's weights
        records += [
            used(act, base),
            Relation("wasDerivedFrom", version, base, extras=(("activity", EX + act),)),
        ]
    return Bundle(EX + f"bundle/training-{run}", tuple(records))


def using_models() -> Bundle:
    return Bundle(
        EX + "bundle/use",
        (
            node("activity", "run/evaluation-2", "EvaluationExecution"),
            node("entity", "eval/v2-accuracy", "ModelEvaluation"),
            used("run/evaluation-2", V2),
            used("run/evaluation-2", "data/validation-features"),
            generated(EVAL_2, "run/evaluation-2"),
            *(
                record
                for version, prediction in ((V1, PRED_1), (V2, PRED_2))
                for record in (
                    node("activity", f"run/inference-{version[-1]}", "InferenceExecution"),
                    Element("entity", prediction, ((PROV_TYPE, Ref(ml("InferenceResult"))),)),
                    used(f"run/inference-{version[-1]}", version),
                    generated(prediction, f"run/inference-{version[-1]}"),
                )
            ),
        ),
    )


def cycles() -> Bundle:
    """Bad data and alternates: loops the walk must survive."""
    a, b, c = (EX + f"loop/{x}" for x in "abc")
    return Bundle(
        EX + "bundle/loops",
        (
            Element("entity", a),
            Element("entity", b),
            Element("entity", c),
            Relation("alternateOf", a, b),
            Relation("alternateOf", b, a),
            Relation("wasDerivedFrom", b, c),
            Relation("wasDerivedFrom", c, a),
            Relation("wasDerivedFrom", c, RAW_A),
        ),
    )


def the_story() -> list[Bundle]:
    return [
        curation(1, [RAW_A, RAW_B]),
        training(1, {"learning_rate": "0.001", "epochs": "10"}, "git:abc123", None),
        curation(2, [RAW_A, RAW_B, RAW_C]),
        training(2, {"learning_rate": "0.0001", "epochs": "3"}, "git:def456", V1),
        using_models(),
        cycles(),
    ]


# ------------------------------------------------------------------------ fixtures


def _open(url: str) -> SQLStore:
    store = SQLStore(url)
    store.upgrade()
    store.ingest(the_story())
    return store


@pytest.fixture(scope="module")
def sqlite_graph(tmp_path_factory) -> Iterator[SQLStore]:
    store = _open(f"sqlite:///{tmp_path_factory.mktemp('lineage') / 'provml.sqlite'}")
    yield store
    store.close()


@pytest.fixture(scope="module")
def postgresql_graph() -> Iterator[SQLStore]:
    # The walks only read, so one database serves the whole module.
    for url in _fresh_postgres_database("provml_test_lineage_"):
        store = _open(url)
        yield store
        store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def graph(request) -> SQLStore:
    """The story, stored once per backend and module."""
    return request.getfixturevalue(f"{request.param}_graph")


# ------------------------------------------------------------------------ upstream


def test_upstream_of_the_fine_tuned_version_reaches_every_raw_file(graph):
    result = lineage.upstream(graph, V2)
    assert {RAW_A, RAW_B, RAW_C} <= result.nodes.keys()
    assert not result.truncated
    assert result.nodes[RAW_C].ml_class == "DomainData"


def test_upstream_reaches_the_base_version_and_its_own_training_data(graph):
    result = lineage.upstream(graph, V2)
    assert {V1, EX + "run/training-1", EX + "data/train-features-1"} <= result.nodes.keys()


def test_the_plan_of_an_association_is_upstream_of_the_activity(graph):
    result = lineage.upstream(graph, EX + "run/training-1", depth=1)
    plan_edges = [e for e in result.edges if e.object == PLAN]
    assert [(e.kind, e.role) for e in plan_edges] == [("wasAssociatedWith", "plan")]


def test_depth_one_gives_exactly_the_direct_dependencies(graph):
    result = lineage.upstream(graph, V2, depth=1)
    direct = {
        r.object
        for bundle in the_story()
        for r in bundle.records
        if isinstance(r, Relation) and r.subject == V2
    }
    direct |= {EX + "run/training-2"}  # the activity of the derivation from v1
    assert set(result.nodes) == direct | {V2}
    assert set(result.distance.values()) == {0, 1}
    assert result.truncated  # there is more beyond depth 1


def test_each_depth_adds_the_next_ring_of_the_unbounded_walk(graph):
    full = lineage.upstream(graph, V2)
    for depth in range(4):
        bounded = lineage.upstream(graph, V2, depth=depth)
        expected = {n for n, d in full.distance.items() if d <= depth}
        assert set(bounded.nodes) == expected
        assert bounded.distance == {n: full.distance[n] for n in expected}


def test_depth_zero_is_the_root_alone(graph):
    result = lineage.upstream(graph, V2, depth=0)
    assert list(result.nodes) == [V2] and result.edges == []


def test_stop_at_includes_the_stopping_node_but_not_what_lies_behind_it(graph):
    result = lineage.upstream(graph, V2, stop_at=("ModelVersion",))
    assert V1 in result.nodes
    assert EX + "run/training-1" not in result.nodes
    assert EX + "data/train-features-1" not in result.nodes
    assert RAW_C in result.nodes  # reached through v2's own data
    assert not any(e.subject == V1 for e in result.edges)


def test_the_root_is_expanded_even_when_its_class_is_a_stop(graph):
    result = lineage.upstream(graph, V2, stop_at=("ModelVersion",), depth=1)
    assert EX + "run/training-2" in result.nodes


def test_walks_through_cycles_terminate_without_duplicates(graph):
    for depth in (None, 10):
        result = lineage.upstream(graph, EX + "loop/a", depth=depth)
        assert set(result.nodes) == {EX + f"loop/{x}" for x in "abc"} | {RAW_A}
        assert len(result.edges) == len(set(result.edges)) == 5


def test_max_nodes_truncates_to_whole_distance_levels(graph):
    full = lineage.upstream(graph, V2)
    cut = lineage.upstream(graph, V2, max_nodes=6)
    assert cut.truncated and 1 <= len(cut.nodes) <= 6
    deepest = max(cut.distance.values())
    assert set(cut.nodes) == {n for n, d in full.distance.items() if d <= deepest}


def test_edges_point_from_dependent_to_dependency_in_either_direction(graph):
    tiles = EX + "data/tiles-1"
    up = lineage.upstream(graph, tiles, depth=1)
    down = lineage.downstream(graph, tiles, depth=1)
    assert up.edges and all(e.subject == tiles for e in up.edges)
    assert down.edges and all(e.object == tiles for e in down.edges)


# ------------------------------------------------------------ downstream and impact


def test_downstream_of_a_raw_file_reaches_both_versions_and_the_predictions(graph):
    result = lineage.downstream(graph, RAW_A)
    assert {V1, V2, PRED_1, PRED_2, EVAL_2} <= result.nodes.keys()


def test_impact_of_a_shared_raw_file_names_both_versions_and_their_results(graph):
    report = lineage.impact(graph, RAW_B)
    assert {n.id for n in report.model_versions} == {V1, V2}
    assert {n.id for n in report.inference_results} == {PRED_1, PRED_2}
    assert {n.id for n in report.evaluations} == {EVAL_2}


def test_impact_is_the_downstream_graph_with_the_results_picked_out(graph):
    report = lineage.impact(graph, RAW_C)
    walk = lineage.downstream(graph, RAW_C)
    assert (report.direction, report.nodes, report.edges) == ("downstream", walk.nodes, walk.edges)


def test_impact_of_the_file_added_later_spares_the_first_version(graph):
    report = lineage.impact(graph, RAW_C)
    assert {n.id for n in report.model_versions} == {V2}
    assert {n.id for n in report.inference_results} == {PRED_2}


def test_impact_of_a_plan_names_every_version_trained_with_it(graph):
    assert {n.id for n in lineage.impact(graph, PLAN).model_versions} == {V1, V2}


def test_unknown_roots_and_bad_bounds_are_refused(graph):
    with pytest.raises(NotFound):
        lineage.upstream(graph, EX + "nothing/here")
    with pytest.raises(QueryRejected):
        lineage.upstream(graph, V2, depth=-1)
    with pytest.raises(QueryRejected):
        lineage.upstream(graph, V2, stop_at=("NoSuchClass",))
    with pytest.raises(QueryRejected):
        lineage.upstream(graph, V2, max_nodes=0)


# -------------------------------------------------------------- paths and networkx


def test_derivation_path_is_a_shortest_chain_from_source_to_target(graph):
    path = lineage.derivation_path(graph, RAW_C, V2)
    assert path[0].object == RAW_C and path[-1].subject == V2
    for earlier, later in pairwise(path):
        assert earlier.subject == later.object
    assert len(path) == lineage.upstream(graph, V2).distance[RAW_C]


def test_derivation_path_against_the_dependency_direction_is_not_found(graph):
    with pytest.raises(NotFound):
        lineage.derivation_path(graph, V2, RAW_C)


def test_to_networkx_keeps_every_node_and_edge(graph):
    result = lineage.upstream(graph, V1)
    g = lineage.to_networkx(result)
    assert set(g.nodes) == set(result.nodes)
    assert g.number_of_edges() == len(result.edges)
    assert g.nodes[V1]["ml_class"] == "ModelVersion"


# --------------------------------------------------------------------------- diff


def test_diff_of_two_versions_shows_the_changed_data(graph):
    result = lineage.diff(graph, V1, V2)
    assert {n.id for n in result.data.only_b} == {
        RAW_C,
        EX + "data/tiles-2",
        EX + "data/train-features-2",
    }
    assert {n.id for n in result.data.only_a} == {EX + "data/train-features-1"}
    # Both versions validated on the set prepared from the first tiles.
    common = {RAW_A, RAW_B, EX + "data/tiles-1", EX + "data/validation-features"}
    assert {n.id for n in result.data.common} == common


def test_diff_of_two_versions_shows_the_changed_hyperparameters(graph):
    result = lineage.diff(graph, V1, V2)
    changes = {c.name: (c.a, c.b) for c in result.hyperparameter_changes}
    assert changes == {"learning_rate": (("0.001",), ("0.0001",)), "epochs": (("10",), ("3",))}
    assert result.hyperparameters.changed


def test_diff_shows_code_versions_base_model_and_executions(graph):
    result = lineage.diff(graph, V1, V2)
    assert (result.code_versions.a, result.code_versions.b) == (("git:abc123",), ("git:def456",))
    assert {n.id for n in result.code.common} == {ALICE, PLAN}
    assert [n.id for n in result.models.only_b] == [V1]
    assert EX + "run/training-2" in {n.id for n in result.executions.only_b}


def test_a_fine_tuned_versions_diff_leaves_out_the_recipe_behind_its_base_weights(store):
    """v2 loads v1's weights file (captured as a plain file): v2's side of the diff
    names that file, not v1's training, data and settings reached through it."""
    v1, v2 = EX + "model/m/v/1", EX + "model/m/v/2"
    weights = EX + "data/weights-1"

    def training(n: int, lr: str, inputs: list[str], outputs: list[str]) -> Bundle:
        run, version = f"run/fine-tune-{n}", (v1, v2)[n - 1]
        return Bundle(
            EX + f"bundle/fine-tune-{n}",
            (
                node("activity", run, "TrainingExecution"),
                param("lr", lr),
                *(data(name.removeprefix(EX)) for name in inputs + outputs),
                node("entity", version.removeprefix(EX), "ModelVersion"),
                used(run, f"param/lr={lr}"),
                *(used(run, name) for name in inputs),
                *(generated(name, run) for name in outputs),
                generated(version, run),
                *([Relation("wasDerivedFrom", v2, v1)] if n == 2 else []),
            ),
        )

    store.ingest(
        [
            training(1, "0.1", [EX + "data/set-1"], [weights]),
            training(2, "0.01", [EX + "data/set-2", weights], []),
        ]
    )
    result = lineage.diff(store, v1, v2)
    changes = {c.name: (c.a, c.b) for c in result.hyperparameter_changes}
    assert changes == {"lr": (("0.1",), ("0.01",))}
    assert {n.id for n in result.data.only_a} == {EX + "data/set-1"}
    assert {n.id for n in result.data.only_b} == {EX + "data/set-2", weights}
    assert {n.id for n in result.executions.only_b} == {EX + "run/fine-tune-2"}
    assert [n.id for n in result.models.only_b] == [v1]


def test_a_version_does_not_differ_from_itself(graph):
    assert lineage.diff(graph, V2, V2).identical


# ---------------------------------------------------------------------- backends


@pytest.mark.postgres
def test_both_backends_give_the_same_answers(sqlite_graph, postgresql_graph):
    for run in (
        lambda s: lineage.upstream(s, V2),
        lambda s: lineage.upstream(s, V2, depth=2, stop_at=("FeatureSetData",)),
        lambda s: lineage.upstream(s, V2, max_nodes=5),
        lambda s: lineage.downstream(s, RAW_A),
        lambda s: lineage.impact(s, RAW_C),
        lambda s: lineage.derivation_path(s, RAW_A, PRED_2),
        lambda s: lineage.diff(s, V1, V2),
    ):
        assert run(sqlite_graph) == run(postgresql_graph)
