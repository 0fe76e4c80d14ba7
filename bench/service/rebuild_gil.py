"""How long an RDF rebuild holds the GIL: Oxigraph's bulk_extend against provml's _bulk_load.

A process serving requests must answer uvicorn's health check within 5 s, and its other
threads wait while one holds the GIL. This loads the service benchmark's generated
records into a fresh PostgreSQL database (``SQLStore.ingest`` in process), then rebuilds
an on-disk Oxigraph store from them twice, side by side: once with every quad handed to
``Store.bulk_extend`` in one call (what the rebuild did before), once through
``provml.rdf._bulk_load`` (N-Quads chunks for ``Store.bulk_load``, which releases the
GIL). A thread that wakes every 10 ms records how long it waited each time; the longest
waits are the longest GIL holds. Prints both, the rebuild times and their ratios::

    python bench/service/rebuild_gil.py --records 1000000

Needs PostgreSQL at ``PROVML_TEST_POSTGRES_URL`` (default the local server).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_service import batches, fresh_database, generate

from provml import rdf as rdf_module
from provml.rdf import RDFStore
from provml.store.sql import SQLStore


def rebuild(store: SQLStore, loader: Callable) -> tuple[float, list[float]]:
    """Seconds of one rebuild with ``loader`` as rdf._bulk_load, and the longest waits."""
    waits: list[float] = []
    done = threading.Event()

    def ticker() -> None:
        last = time.monotonic()
        while not done.is_set():
            time.sleep(0.01)
            now = time.monotonic()
            waits.append(now - last - 0.01)
            last = now

    original = rdf_module._bulk_load
    rdf_module._bulk_load = loader
    rdf = RDFStore.open(os.path.join(tempfile.mkdtemp(prefix="provml-rebuild-gil-"), "oxigraph"))
    thread = threading.Thread(target=ticker, daemon=True)
    try:
        thread.start()
        started = time.perf_counter()
        rdf.rebuild(store)
        seconds = time.perf_counter() - started
    finally:
        done.set()
        thread.join()
        rdf_module._bulk_load = original
        rdf.close()
    return seconds, sorted(waits, reverse=True)[:3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=300_000)
    args = parser.parse_args()
    bundles = generate(args.records)
    records = sum(len(b.records) for b in bundles)
    with fresh_database("provml_bench") as url:
        store = SQLStore(url)
        try:
            measure(store, bundles, records)
        finally:
            store.close()


def measure(store: SQLStore, bundles: list, records: int) -> None:
    """Load ``bundles`` into ``store``, then rebuild with each loader in turn."""
    store.upgrade()
    for batch in batches(bundles):
        store.ingest(batch)
    # A serving process does not hold a million records as objects: with them alive,
    # every full garbage collection walks them all (1-2 s, the GIL held), which would
    # be measured here as the loader's.
    bundles.clear()
    gc.collect()
    print(f"{records:,} records in PostgreSQL; rebuilding an on-disk Oxigraph store")
    runs = {
        "bulk_extend, one call": lambda target, quads, chunk=None: target.bulk_extend(quads),
        "_bulk_load (N-Quads chunks)": rdf_module._bulk_load,
    }
    results = {}
    for label, loader in runs.items():
        seconds, longest = rebuild(store, loader)
        results[label] = (seconds, longest[0])
        print(
            f"{label:28s} rebuild {seconds:6.1f} s; longest GIL waits "
            + ", ".join(f"{w:.2f}" for w in longest)
            + " s",
            flush=True,
        )
    (old_s, old_hold), (new_s, new_hold) = results.values()
    print(f"longest hold, new / old: {new_hold / old_hold:.3f}")
    print(f"rebuild time, new / old: {new_s / old_s:.2f}")


if __name__ == "__main__":
    main()
