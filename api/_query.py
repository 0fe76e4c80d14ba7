"""REST queries: listings of models, versions, datasets and runs; nodes; lineage; diff.

Lineage answers are graph JSON from :mod:`provml.views` (nodes with their distance from
the root, edges subject → object, PROV kinds and PROV-ML classes).

Imports: FastAPI and provml core, store and lineage modules.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic_core import to_json

from provml import lineage
from provml.api._asof import as_of as restrict_to
from provml.api._asof import point_in_time
from provml.api._deps import READ, MetricsDep, Sql
from provml.api._schemas import ErrorBody, LineageView, NodePage, NodeView
from provml.errors import QueryRejected
from provml.store.base import LineageGraph, Node
from provml.store.sql import SQLStore
from provml.views import lineage_view, node_view
from provml.vocab import ML_CLASS_BY_NAME, ml

router = APIRouter(prefix="/api/v1", tags=["queries"], dependencies=READ)

DATASET_CLASSES = ("DomainData", "FeatureSet", "FeatureSetData")
RUN_CLASSES_HINT = "e.g. TrainingExecution, DataTransformationExecution, WorkflowExecution"
_SCAN_CHUNK = 200
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "a bound or class name is malformed"},
    404: {"model": ErrorBody, "description": "the store knows no such node"},
}

Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
# Bounds keep values inside a 64-bit SQL integer (found by fuzzing: a huge offset overflowed).
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="items to skip")]
Text = Annotated[str | None, Query(description="text in the IRI or label (case-insensitive)")]
NodeId = Annotated[
    str, Query(description="the node's IRI", examples=["https://provml.local/model/unet/v/1"])
]
Depth = Annotated[
    int | None, Query(ge=0, le=1_000_000, description="relations to follow at most; none: all")
]
StopAt = Annotated[
    list[str] | None,
    Query(description="PROV-ML classes the walk includes but does not pass, e.g. DomainData"),
]
MaxNodes = Annotated[int, Query(ge=1, le=100_000, description="most nodes in the answer")]
#: Bundle ids a lineage answer lists per node by default. A shared element (a model, a
#: raw file) is described in every workflow that touches it: at 1M records the model
#: node of an upstream answer is in ~1,500 bundles, and listing every bundle of every
#: node made up 60% of the answer's bytes.
DEFAULT_MAX_BUNDLES = 10
MaxBundles = Annotated[
    int,
    Query(
        ge=0,
        le=1_000_000_000,
        description="bundle ids listed per node (the first, in code-point order); "
        "bundle_count gives the total and GET /api/v1/node?id= lists them all",
    ),
]
AsOf = Annotated[
    str | None,
    Query(
        description="the lineage as it was at this ISO 8601 time, or when this node "
        "(e.g. a model version) was generated",
        examples=["2026-03-01T00:00:00Z"],
    ),
]


def _check_class(name: str | None) -> None:
    if name is not None and name not in ML_CLASS_BY_NAME:
        raise QueryRejected(
            f"{name!r} is not a PROV-ML class; known: {', '.join(sorted(ML_CLASS_BY_NAME))}",
            field="class",
        )


def _scan(
    store: SQLStore, *, kind: str | None, ml_class: str | None, text: str | None
) -> Iterator[Node]:
    """Every matching node in IRI order, read from the store a chunk at a time."""
    offset = 0
    while True:
        chunk = store.find_nodes(
            kind=kind, ml_class=ml_class, text=text, limit=_SCAN_CHUNK, offset=offset
        )
        yield from chunk
        if len(chunk) < _SCAN_CHUNK:
            return
        offset += _SCAN_CHUNK


def _page(
    store: SQLStore,
    *,
    classes: tuple[str | None, ...] = (None,),
    kind: str | None = None,
    text: str | None = None,
    keep: Callable[[Node], bool] | None = None,
    limit: int,
    offset: int,
) -> dict[str, Any]:
    """One page of nodes of any of ``classes``, in IRI order, filtered by ``keep``."""
    for name in classes:
        _check_class(name)
    if keep is None and len(classes) == 1:
        found = store.find_nodes(
            kind=kind, ml_class=classes[0], text=text, limit=limit + 1, offset=offset
        )
    else:
        merged = heapq.merge(
            *(_scan(store, kind=kind, ml_class=c, text=text) for c in classes), key=lambda n: n.id
        )
        found, seen, skipped = [], set(), 0
        for node in merged:
            if node.id in seen or (keep is not None and not keep(node)):
                continue
            seen.add(node.id)
            if skipped < offset:
                skipped += 1
                continue
            found.append(node)
            if len(found) > limit:
                break
    more = len(found) > limit
    return {
        "items": [node_view(n) for n in found[:limit]],
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if more else None,
    }


def _attribute(node: Node, local_name: str) -> str | None:
    wanted = ml(local_name)
    for name, value in node.attributes:
        if name == wanted:
            return getattr(value, "lexical", None) or str(value)
    return None


@router.get("/nodes", response_model=NodePage, summary="Search nodes by kind, class and text")
def list_nodes(
    store: Sql,
    limit: Limit = 50,
    offset: Offset = 0,
    q: Text = None,
    kind: Annotated[Literal["entity", "activity", "agent"] | None, Query()] = None,
    ml_class: Annotated[
        str | None, Query(alias="class", description="a PROV-ML class name")
    ] = None,
) -> dict[str, Any]:
    return _page(store, classes=(ml_class,), kind=kind, text=q, limit=limit, offset=offset)


@router.get("/models", response_model=NodePage, summary="List or search models")
def list_models(
    store: Sql, limit: Limit = 50, offset: Offset = 0, q: Text = None
) -> dict[str, Any]:
    return _page(store, classes=("Model",), text=q, limit=limit, offset=offset)


@router.get("/model-versions", response_model=NodePage, summary="List or search model versions")
def list_model_versions(
    store: Sql,
    limit: Limit = 50,
    offset: Offset = 0,
    q: Text = None,
    model: Annotated[str | None, Query(description="only versions of this model (IRI)")] = None,
) -> dict[str, Any]:
    keep = None
    if model is not None:
        versions = {
            e.subject
            for e in lineage.downstream(store, model, depth=1).edges
            if e.kind == "specializationOf" and e.object == model
        }

        def keep(node: Node) -> bool:
            return node.id in versions

    return _page(store, classes=("ModelVersion",), text=q, keep=keep, limit=limit, offset=offset)


@router.get("/datasets", response_model=NodePage, summary="List or search datasets and domain data")
def list_datasets(
    store: Sql,
    limit: Limit = 50,
    offset: Offset = 0,
    q: Text = None,
    ml_class: Annotated[
        str | None,
        Query(alias="class", description=f"one of {', '.join(DATASET_CLASSES)} (default all)"),
    ] = None,
) -> dict[str, Any]:
    classes = (ml_class,) if ml_class else DATASET_CLASSES
    return _page(store, classes=classes, text=q, limit=limit, offset=offset)


@router.get("/runs", response_model=NodePage, summary="List or search executions (activities)")
def list_runs(
    store: Sql,
    limit: Limit = 50,
    offset: Offset = 0,
    q: Text = None,
    ml_class: Annotated[str | None, Query(alias="class", description=RUN_CLASSES_HINT)] = None,
    status: Annotated[str | None, Query(description="provml:status, e.g. failed")] = None,
    host: Annotated[str | None, Query(description="provml:host of the execution")] = None,
) -> dict[str, Any]:
    keep = None
    if status is not None or host is not None:

        def keep(node: Node) -> bool:
            return (status is None or _attribute(node, "status") == status) and (
                host is None or _attribute(node, "host") == host
            )

    return _page(
        store, classes=(ml_class,), kind="activity", text=q, keep=keep, limit=limit, offset=offset
    )


@router.get(
    "/node", response_model=NodeView, summary="One node with its attributes", responses=_ERRORS
)
def get_node(store: Sql, id: NodeId) -> dict[str, Any]:
    return node_view(store.get_node(id))


def walk(
    store: SQLStore,
    node_id: str,
    direction: str,
    depth: int | None,
    stop_at: list[str] | None,
    max_nodes: int,
    max_bundles: int | None = None,
) -> LineageGraph:
    """The lineage walk an HTTP request names (``up``, ``down`` or ``impact``)."""
    functions = {"up": lineage.upstream, "down": lineage.downstream, "impact": lineage.impact}
    return functions[direction](
        store,
        node_id,
        depth=depth,
        stop_at=tuple(stop_at or ()),
        max_nodes=max_nodes,
        max_bundles=max_bundles,
    )


@router.get(
    "/lineage",
    response_model=LineageView,  # documents the answer; the route encodes it itself
    summary="Lineage of a node: upstream, downstream or impact",
    description=(
        "`up`: what the node came from; `down`: what was made from it; `impact`: the "
        "downstream graph plus the model versions, inference results and evaluations it "
        "reaches. `depth` counts relations from the root (0: the root alone); nodes of a "
        "`stop_at` class are included but not walked past. `as_of` restricts the answer "
        "to what existed at a time (or when a given model version was generated). "
        "`summary=true` answers with the counts and the affected results only. "
        "Each node lists the first `max_bundles` bundles that describe it (code-point "
        "order) and `bundle_count`, how many there are; `GET /api/v1/node?id=` lists all."
    ),
    responses=_ERRORS,
)
def get_lineage(
    store: Sql,
    metrics: MetricsDep,
    id: NodeId,
    direction: Annotated[Literal["up", "down", "impact"], Query()] = "up",
    depth: Depth = None,
    stop_at: StopAt = None,
    max_nodes: MaxNodes = lineage.DEFAULT_MAX_NODES,
    as_of: AsOf = None,
    summary: Annotated[
        bool, Query(description="counts (and for impact the affected results) without the graph")
    ] = False,
    max_bundles: MaxBundles = DEFAULT_MAX_BUNDLES,
) -> Response:
    started = time.perf_counter()
    graph = walk(store, id, direction, depth, stop_at, max_nodes, max_bundles)
    cutoff = point_in_time(store, as_of) if as_of is not None else None
    if cutoff is not None:
        graph = restrict_to(graph, cutoff)
    metrics.observe(
        "provml_lineage_query_duration_seconds", time.perf_counter() - started, walk=direction
    )
    view = lineage_view(graph)
    view.update(node_count=len(view["nodes"]), edge_count=len(view["edges"]))
    if summary:
        # The impact of a raw file shared by many workflows can be most of the store.
        del view["nodes"], view["edges"]
    else:
        # The walk read only the first max_bundles bundles of each node.
        for node in view["nodes"]:
            node["bundle_count"] = graph.nodes[node["id"]].described_in
    if cutoff is not None:
        view["as_of"] = cutoff.isoformat()
    if direction == "impact":
        ordered = sorted(graph.nodes.values(), key=lambda n: (graph.distance[n.id], n.id))
        view["affected"] = {
            name: [n.id for n in ordered if n.ml_class == ml_class and n.id != id]
            for name, ml_class in lineage.IMPACT_CLASSES.items()
        }
    # A response, so FastAPI skips validating the view again against response_model:
    # about 1 ms of a ~20 ms answer of ~170 nodes at 1M records. The view is built to
    # LineageView (a test holds it to that), its required nullable fields as null.
    # Encoded by pydantic-core, as FastAPI encodes a response model: 0.33 ms against
    # 1.28 ms for json.dumps on such an answer (132 KB). Stored values are finite.
    return Response(to_json(view, inf_nan_mode="null"), media_type="application/json")


_VERSION_PARTS = {
    "domain_data": ("DomainData",),
    "datasets": ("FeatureSetData", "FeatureSet", "Feature", "DatasetCharacteristic"),
    "hyperparameters": (
        "LearningHyperparameterValue",
        "ModelHyperparameterValue",
        "LearningHyperparameter",
        "ModelHyperparameter",
    ),
    "models": ("ModelVersion", "Model"),
    "algorithms": ("Algorithm", "LearningTask"),
}
_METRIC_CLASSES = ("MetricValue", "ModelEvaluation")
_EVALUATING = ("EvaluationExecution", "ValidationExecution")


def _class_of(graph: LineageGraph, iri: str) -> str | None:
    node = graph.nodes.get(iri)
    return node.ml_class if node is not None else None


def _metrics_of(
    store: SQLStore, version: str, graph: LineageGraph, max_nodes: int
) -> dict[str, Node]:
    """Metrics and evaluations of a version, which lie downstream of it, not upstream.

    Those generated by the activity that generated the version (or by its sections,
    which it informed), and those generated by evaluations or validations that used the
    version or another entity that activity generated (its weights file). A fine-tuning
    uses the version too, but its metrics are the new version's.
    """
    producers = {
        e.object for e in graph.edges if e.kind == "wasGeneratedBy" and e.subject == version
    }
    found: dict[str, Node] = {}
    roots = [*((p, "wasInformedBy") for p in producers), (version, "used")]
    for root, via in roots:
        down = lineage.downstream(store, root, depth=3, max_nodes=max_nodes)
        if via == "wasInformedBy":
            # What else the training made (the weights file an evaluation loads, when
            # capture recorded the file rather than the version): evaluations of it
            # are evaluations of the version.
            roots += [
                (e.subject, "used")
                for e in down.edges
                if e.kind == "wasGeneratedBy"
                and e.object == root
                and e.subject != version
                and _class_of(down, e.subject) not in _METRIC_CLASSES
                and (e.subject, "used") not in roots
            ]
        activities = {root} if via == "wasInformedBy" else set()
        sections = via == "wasInformedBy"
        activities |= {
            e.subject
            for e in down.edges
            if e.kind == via
            and e.object == root
            and (sections or _class_of(down, e.subject) in _EVALUATING)
        }
        found.update(
            (e.subject, down.nodes[e.subject])
            for e in down.edges
            if e.kind == "wasGeneratedBy"
            and e.object in activities
            and _class_of(down, e.subject) in _METRIC_CLASSES
        )
    return found


@router.get(
    "/model-versions/lineage",
    summary="Everything behind one model version in one answer",
    description=(
        "The upstream lineage of the version grouped by role: domain data, datasets, "
        "hyperparameters, executions, agents, algorithms, upstream models; and the metrics "
        "and evaluations recorded by its training or computed on it."
    ),
    responses=_ERRORS,
)
def get_model_version_lineage(
    store: Sql,
    id: NodeId,
    max_nodes: MaxNodes = lineage.DEFAULT_MAX_NODES,
) -> dict[str, Any]:
    graph = lineage.upstream(store, id, max_nodes=max_nodes)
    nodes = [n for iri, n in sorted(graph.nodes.items()) if iri != id]
    answer: dict[str, Any] = {
        "version": node_view(graph.nodes[id]) if id in graph.nodes else {"id": id}
    }
    for part, classes in _VERSION_PARTS.items():
        answer[part] = [
            node_view(n, graph.distance.get(n.id)) for n in nodes if n.ml_class in classes
        ]
    answer["executions"] = [
        node_view(n, graph.distance.get(n.id)) for n in nodes if n.kind == "activity"
    ]
    answer["agents"] = [node_view(n, graph.distance.get(n.id)) for n in nodes if n.kind == "agent"]
    metrics = _metrics_of(store, id, graph, max_nodes)
    answer["metrics"] = [node_view(n) for _, n in sorted(metrics.items())]
    answer["truncated"] = graph.truncated
    answer["graph"] = lineage_view(graph)
    return answer


def _diff_view(value: Any) -> Any:
    if isinstance(value, Node):
        return node_view(value)
    if isinstance(value, dict):
        return {k: _diff_view(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_diff_view(v) for v in value]
    return value


@router.get(
    "/diff",
    summary="What changed between the lineages of two model versions",
    description=(
        "Data, hyperparameters (with changed values), code, executions and upstream models."
    ),
    responses=_ERRORS,
)
def get_diff(
    store: Sql,
    a: Annotated[str, Query(description="the first model version's IRI")],
    b: Annotated[str, Query(description="the second model version's IRI")],
    max_nodes: MaxNodes = lineage.DEFAULT_MAX_NODES,
) -> dict[str, Any]:
    result = lineage.diff(store, a, b, max_nodes=max_nodes)
    fields = {name: getattr(result, name) for name in result.__dataclass_fields__}
    view = {name: _dataclass_view(value) for name, value in fields.items()}
    view["identical"] = result.identical
    return view


def _dataclass_view(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__") and not isinstance(value, Node):
        out = {name: _dataclass_view(getattr(value, name)) for name in value.__dataclass_fields__}
        if hasattr(type(value), "changed"):
            out["changed"] = value.changed
        return out
    return _diff_view(value)
