"""HTTP ingest, then the RDF projection's catch-up: how long, and the CPU a record by part.

A fresh PostgreSQL database, ``provml serve --workers 4`` on it, the service benchmark's
generated records POSTed in batches of ~1,000 by 4 clients, then the wait until the RDF
store holds every record. Prints records/s, the catch-up's seconds after the last batch,
and for both phases the CPU µs a record of each part, as ``bench_service.cpu_between``
splits it::

    python bench/service/catch_up.py --records 300000

To compare two versions of the code side by side, run it in turns with the other
checkout first on ``PYTHONPATH`` (its ``provml/`` needs ``api``, ``capture``,
``migrations`` and ``ontology`` linked in, as the installed package maps them)::

    git worktree add --detach /tmp/provml-old <commit>
    for d in api capture migrations ontology; do ln -s ../$d /tmp/provml-old/provml/$d; done
    PYTHONPATH=/tmp/provml-old python bench/service/catch_up.py --records 300000

Needs PostgreSQL at ``PROVML_TEST_POSTGRES_URL`` (default the local server) and nothing
else running: every ``postgres`` process counts towards the PostgreSQL share.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_service import (
    Server,
    batches,
    fresh_database,
    generate,
    ingest_and_catch_up,
    payloads_of,
)

import provml
from provml.store.sql import SQLStore


def by_part(used: dict[str, float]) -> str:
    return " / ".join(f"{part} {us:.1f}" for part, us in used.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    bundles = generate(args.records)
    records = sum(len(b.records) for b in bundles)
    payloads = payloads_of(batches(bundles))
    del bundles
    print(f"provml from {Path(provml.__file__).parent}, {records:,} records")
    with fresh_database("provml_bench") as url:
        store = SQLStore(url)
        store.upgrade()
        store.close()
        server = Server(url, Path(tempfile.mkdtemp(prefix="provml-catch-up-")), args.workers)
        try:
            seconds, catch_up, ingest, after = ingest_and_catch_up(server, payloads, records)
        finally:
            server.stop()
    busy = sum(ingest.values()) * records / 1e6 / seconds
    print(
        f"ingest {records / seconds:,.0f} records/s, {busy:.2f} cores busy; "
        f"CPU µs a record: {by_part(ingest)}"
    )
    print(f"caught up {catch_up:.1f} s after the last batch; CPU µs a record: {by_part(after)}")


if __name__ == "__main__":
    main()
