"""Request and response schemas of the HTTP API (pydantic), apart from storage types.

Graph-shaped answers (nodes, lineage) are documented here and built by
:mod:`provml.views`, whose JSON the CLI prints too.

Imports: pydantic and the standard library only.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """Every error answer."""

    error: str = Field(examples=["invalid_record"])
    message: str = Field(examples=["id must be an absolute IRI, got 'x'"])
    details: dict[str, Any] = Field(default_factory=dict, examples=[{"record": "x", "field": "id"}])


class RecordBatch(BaseModel):
    """A batch from the capture exporter: bundles in provml's wire form."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "bundles": [
                        {
                            "id": "https://provml.local/bundle/run-1",
                            "records": [
                                {"kind": "entity", "id": "https://provml.local/data/raw-a"},
                                {"kind": "activity", "id": "https://provml.local/run/1"},
                                {
                                    "kind": "used",
                                    "subject": "https://provml.local/run/1",
                                    "object": "https://provml.local/data/raw-a",
                                },
                            ],
                        }
                    ]
                }
            ]
        }
    )

    bundles: list[dict[str, Any]]


class IngestAnswer(BaseModel):
    """What one ingest transaction stored."""

    bundles: int = Field(description="bundles in the batch")
    records: int = Field(description="records in the batch")
    inserted: int = Field(description="records stored for the first time")
    unchanged: int = Field(description="records already stored with the same content")
    merged: int = Field(description="element descriptions merged into a stored one")


class DocumentAnswer(IngestAnswer):
    bundle: str = Field(description="the IRI of the bundle holding the document")
    format: str = Field(description="the PROV format the document was read as")
    nested: list[str] = Field(description="IRIs of the document's nested bundles")


class NodeView(BaseModel):
    """One element, its descriptions merged across bundles (see provml.views)."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    kind: str
    ml_class: str | None = Field(alias="class")
    label: str | None
    attributes: list[list[Any]] = Field(description="[name IRI, value in the wire encoding]")
    bundles: list[str]
    startTime: str | None = None
    endTime: str | None = None
    distance: int | None = None


class LineageNodeView(NodeView):
    """A node of a lineage answer: ``bundles`` lists the first ``max_bundles`` only."""

    bundles: list[str] = Field(
        description="the first max_bundles bundles that describe the node, in code-point "
        "order (all of them: GET /api/v1/node?id=)"
    )
    bundle_count: int = Field(description="how many bundles describe the node")


class EdgeView(BaseModel):
    kind: str
    subject: str
    object: str
    bundle: str
    id: str | None = None
    time: str | None = None
    attributes: list[list[Any]] | None = None


class NodePage(BaseModel):
    items: list[NodeView]
    limit: int
    offset: int
    next_offset: int | None = Field(description="offset of the next page; null on the last")


class LineageView(BaseModel):
    """A lineage walk: nodes (with distance from the root) and the relations walked."""

    root: str
    direction: str
    depth: int | None
    truncated: bool
    node_count: int = Field(description="nodes reached, the root included")
    edge_count: int = Field(description="relations walked")
    nodes: list[LineageNodeView] | None = Field(
        default=None, description="left out with summary=true"
    )
    edges: list[EdgeView] | None = Field(default=None, description="left out with summary=true")
    as_of: str | None = None
    affected: dict[str, list[str]] | None = Field(
        default=None, description="impact only: model versions, inference results, evaluations"
    )


class BundleInfoView(BaseModel):
    id: str
    parent: str | None
    records: int
    created: str


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    sql: dict[str, Any]
    rdf: dict[str, Any]
