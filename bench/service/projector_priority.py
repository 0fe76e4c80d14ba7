"""HTTP ingest at two projector priorities, side by side: what ``PROVML_PROJECT_NICE`` buys.

For each round and each nice value (in turns, the order alternating by round): a fresh
PostgreSQL database, ``provml serve --workers 4`` with that ``PROVML_PROJECT_NICE``, the
service benchmark's generated records POSTed in batches of ~1,000 by 4 clients, then the
wait until the RDF projection has caught up. Prints records/s, the catch-up and the CPU a
record by part (as ``bench_service.cpu_between`` splits it), and per round the ratio of
the first value's rate to the second's::

    python bench/service/projector_priority.py --records 200000 --nice 19,10 --rounds 3

Needs PostgreSQL at ``PROVML_TEST_POSTGRES_URL`` (default the local server) and nothing
else running: every ``postgres`` process counts towards the PostgreSQL share.
"""

from __future__ import annotations

import argparse
import os
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

from provml.store.sql import SQLStore


def one_ingest(payloads: list[bytes], records: int, nice: int) -> float:
    """Records/s of one HTTP ingest into a fresh database, the projector at ``nice``."""
    os.environ["PROVML_PROJECT_NICE"] = str(nice)
    with fresh_database("provml_bench") as url:
        store = SQLStore(url)
        store.upgrade()
        store.close()
        server = Server(url, Path(tempfile.mkdtemp(prefix="provml-priority-")), workers=4)
        try:
            seconds, catch_up, cpu, _ = ingest_and_catch_up(server, payloads, records)
        finally:
            server.stop()
    parts = " ".join(f"{part} {us:.1f}" for part, us in cpu.items())
    rate = records / seconds
    print(
        f"  nice {nice:2d}: {rate:9,.0f} records/s; projection caught up "
        f"{catch_up:5.1f} s later; CPU µs a record: {parts}",
        flush=True,
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--nice", default="19,10", help="two nice values, compared in turns")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    first, second = (int(n) for n in args.nice.split(","))
    bundles = generate(args.records)
    records = sum(len(b.records) for b in bundles)
    payloads = payloads_of(batches(bundles))
    print(f"{records:,} records, {len(payloads)} batches, 4 clients, 4 server processes")
    ratios = []
    for round_ in range(args.rounds):
        order = (first, second) if round_ % 2 == 0 else (second, first)
        print(f"round {round_ + 1}:")
        rates = {nice: one_ingest(payloads, records, nice) for nice in order}
        ratios.append(rates[first] / rates[second])
        print(f"  nice {first} / nice {second}: {ratios[-1]:.2f}")
    ratios.sort()
    print(f"ratios: {', '.join(f'{r:.2f}' for r in ratios)}; median {ratios[len(ratios) // 2]:.2f}")


if __name__ == "__main__":
    main()
