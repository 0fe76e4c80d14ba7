"""The rdflib peer of the service benchmark, in a process of its own.

Loads an N-Quads file into rdflib's in-memory ``Dataset`` (default graph: the union of
the named graphs), times the given property-path queries on it in process, prints one
JSON line with those timings, then serves the same dataset through ``rdflib-endpoint``
on the given port until it is killed.

A process of its own, with its address space capped, because a query rdflib cannot
finish keeps computing after the client gives up: in the benchmark's own process one
such query grew to 23 GB and the kernel killed the benchmark (2026-12-03). Here the
benchmark kills the peer after its timeout, and the cap turns a runaway query into a
``MemoryError`` (an HTTP 500) instead of taking the machine.

Usage: ``python rdflib_peer.py SPEC.json PORT`` where SPEC holds ``nquads`` (a path),
``max_gib`` and ``timings`` (a label → list of queries; each is run once).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def _timed(dataset, queries: list[str]) -> list[float] | str:
    samples = []
    for query in queries:
        started = time.perf_counter()
        try:
            list(dataset.query(query))
        except RecursionError:  # rdflib evaluates a + path by recursion, a frame a step
            return "RecursionError (rdflib recurses once per path step)"
        except MemoryError:
            return "MemoryError (over the peer's address-space cap)"
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    port = int(sys.argv[2])
    cap = int(spec["max_gib"] * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    import rdflib
    import uvicorn
    from rdflib_endpoint import SparqlEndpoint

    dataset = rdflib.Dataset(default_union=True)
    started = time.perf_counter()
    dataset.parse(spec["nquads"], format="nquads")
    loaded = time.perf_counter() - started
    timings = {label: _timed(dataset, queries) for label, queries in spec["timings"].items()}
    print(json.dumps({"load_s": loaded, "timings": timings}), flush=True)
    app = SparqlEndpoint(graph=dataset, public_url=f"http://127.0.0.1:{port}/")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
