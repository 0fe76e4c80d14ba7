"""RDF projection cost: what the projector and a rebuild spend per record.

Loads the service benchmark's generated records into a fresh PostgreSQL database
(``SQLStore.ingest`` in process, batches of ~1,000), then, in this process, projects them
into an on-disk Oxigraph store from the outbox (as ``provml serve``'s projector does after
an ingest) and rebuilds that store from SQL (``provml rdf rebuild``). Prints wall and CPU
microseconds per record for each, and the quads written. Run it at two commits to compare
them (``git worktree add`` the older one and run its copy of this script)::

    python bench/service/projection.py --records 60000

Needs PostgreSQL at ``PROVML_TEST_POSTGRES_URL`` (default the local server).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_service import batches, fresh_database, generate

from provml.rdf import RDFStore
from provml.store.sql import SQLStore


def per_record(work, records: int) -> str:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return (
        f"wall {(time.perf_counter() - wall) / records * 1e6:.1f} µs, "
        f"CPU {(time.process_time() - cpu) / records * 1e6:.1f} µs a record"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=60_000)
    args = parser.parse_args()
    bundles = generate(args.records)
    records = sum(len(b.records) for b in bundles)
    with fresh_database("provml_projection") as url:
        store = SQLStore(url)
        rdf = RDFStore.open(os.path.join(tempfile.mkdtemp(prefix="provml-projection-"), "oxigraph"))
        try:
            store.upgrade()
            rdf.rebuild(store)  # empty: the store is complete, so project() works incrementally
            for batch in batches(bundles):
                store.ingest(batch)

            def project() -> None:
                while rdf.project(store):
                    pass

            print(f"{records:,} records in {len(bundles):,} bundles, PostgreSQL, Oxigraph on disk")
            print(
                f"projection from the outbox: {per_record(project, records)}; {rdf.count():,} quads"
            )
            print(f"rebuild from SQL:           {per_record(lambda: rdf.rebuild(store), records)}")
        finally:
            rdf.close()
            store.close()


if __name__ == "__main__":
    main()
