"""The documented example queries on bare pyoxigraph, over the service benchmark's store.

    python bench/service/sparql_examples.py --records 300000 --store /tmp/ox300

Builds the generator's store (``bench_service.generate``) into an on-disk Oxigraph
directory once (later runs reuse it), in provml's layout (each bundle's triples in its
named graph and once more in the default graph, their merge: ``provml.rdf._merged``),
then times ``raw-data-of-model-version`` for the
versions with the longest and the shortest fine-tuning chains and
``models-affected-by-file`` for two raw files, and prints each timing with its answer
count. What it measures is the query plan Oxigraph picks for each documented query,
without the endpoint: the side-by-side endpoint figures are ``bench_service.py``'s.
``--union`` queries Oxigraph's union of the named graphs instead of the merged default
graph, the layout provml had before: that view is a bag (a triple once per bundle
stating it), which is what made ``raw-data-of-model-version`` slow.

Imports: pyoxigraph, provml, and ``bench_service`` beside this file.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pyoxigraph as ox

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_service

from provml.queries import EXAMPLE_BY_NAME, PREFIXES
from provml.rdf import _bundle_quads, _merged

VERSIONS = "SELECT ?v WHERE { ?v a provml:ModelVersion }"


def open_store(path: Path, records: int) -> ox.Store:
    if path.exists():
        return ox.Store.read_only(str(path))
    store = ox.Store(str(path))
    store.bulk_extend(q for b in bench_service.generate(records) for q in _merged(_bundle_quads(b)))
    store.flush()
    return store


def timed(store: ox.Store, query: str, repeat: int, union: bool) -> tuple[float, int]:
    samples, rows = [], 0
    for _ in range(repeat):
        began = time.perf_counter()
        rows = len(list(store.query(query, use_default_graph_as_union=union)))
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples), rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python bench/service/sparql_examples.py")
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--union", action="store_true", help="query the union view (a bag)")
    args = parser.parse_args()
    store = open_store(args.store, args.records)
    print(f"{len(store)} quads in {args.store}")
    # Versions are <base>model/<name>/v/<n>, numbered across models in creation order:
    # the highest numbers are fine-tuned from the longest chains of earlier versions.
    versions = sorted(
        (int(r[0].value.rsplit("/", 1)[1]), r[0].value) for r in store.query(PREFIXES + VERSIONS)
    )
    picks = [(v, n) for n, v in versions[-2:] + versions[:2]]
    raw = EXAMPLE_BY_NAME["raw-data-of-model-version"]
    for version, depth in picks:
        ms, rows = timed(store, raw.render(version=version), args.repeat, args.union)
        print(f"raw-data-of-model-version  version {depth:5d}  {rows:5d} answers  {ms:9.1f} ms")
    files = [
        r[0].value
        for r in store.query(PREFIXES + "SELECT ?f WHERE { ?f a provml:DomainData } LIMIT 2")
    ]
    affected = EXAMPLE_BY_NAME["models-affected-by-file"]
    for file in files:
        ms, rows = timed(store, affected.render(file=file), args.repeat, args.union)
        print(f"models-affected-by-file                {rows:5d} answers  {ms:9.1f} ms")


if __name__ == "__main__":
    main()
