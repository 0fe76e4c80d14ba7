"""What ``provml demo`` prints after its workflows: the captured provenance, the lineage
of the final model version, and example SPARQL queries with their answers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from provml import lineage
from provml.config import resolve_store
from provml.ids import iri
from provml.queries import EXAMPLE_BY_NAME
from provml.rdf import open_rdf_store
from provml.store import open_record_store
from provml.views import format_table

MODEL = "salt-detector"


def final_version_iri() -> str:
    return iri("model", MODEL, "v", 2)


def print_report(store_url: str, data: Path) -> None:
    with open_record_store(store_url) as store:
        nodes = store.find_nodes(limit=100_000)
        bundles = store.list_bundles()
        print(f"\nCaptured: {len(bundles)} workflow runs (bundles), {len(nodes)} PROV elements")
        counts = Counter(n.ml_class or n.kind for n in nodes)
        print(format_table(["PROV-ML class", "count"], sorted(counts.items())))

        version = final_version_iri()
        graph = lineage.upstream(store, version)
        # Raw data: domain data that no activity generated (it came from the instrument).
        generated = {e.subject for e in graph.edges if e.kind == "wasGeneratedBy"}
        raw = sorted(
            (
                n
                for n in graph.nodes.values()
                if n.ml_class == "DomainData" and n.id not in generated
            ),
            key=lambda n: n.label or n.id,
        )
        print(f"\nLineage of {MODEL} version 2 ({version}):")
        print(f"  {len(graph.nodes)} upstream nodes, {len(graph.edges)} relations")
        print("  raw domain data it came from:")
        for node in raw:
            print(f"    {node.label or ''}  {node.id}")

        with open_rdf_store(resolve_store(store_url)) as rdf:
            while rdf.project(store):
                pass
            examples = [
                ("raw-data-of-model-version", {"version": version}),
                ("models-affected-by-file", {"file": raw[0].id} if raw else {"file": version}),
                ("hyperparameters-and-final-metrics", {"model": iri("model", MODEL)}),
            ]
            for name, params in examples:
                query = EXAMPLE_BY_NAME[name]
                result = rdf.query(query.render(**params))
                print(f"\nSPARQL: {query.question}\n")
                print(result.table())

    print("\nExplore it:")
    print(f"  provml lineage {version} --store {store_url}")
    print(
        f"  provml lineage {raw[0].id if raw else version} --direction impact --store {store_url}"
    )
    print(f"  provml export --format provn --store {store_url}")
    print(f"  provml query 'SELECT * WHERE {{ ?s a provml:ModelVersion }}' --store {store_url}")
