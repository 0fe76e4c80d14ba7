"""Where the CPU of an ingest goes, in process: the server's stages and PostgreSQL's statements.

The HTTP benchmark gives the CPU a record by process (``bench_service.cpu_between``);
this script splits the two largest parts further, on the benchmark's generated records:

* the server's Python, a stage at a time, with the collector tuned as the service tunes
  it (``provml.api._app.tune_gc``): JSON, ``record_from_dict`` (building and checking
  each record), the rest of decoding a batch, ``_plan`` and ``SQLStore.ingest``'s own
  work (the thread's CPU, which leaves out PostgreSQL's);
* PostgreSQL's CPU (every ``postgres`` process, read from ``/proc``) while
  ``SQLStore.ingest`` locks the bundles, copies each table's rows and does the rest of
  the transaction, batches of ~1,000 records into a fresh database on one connection::

    python bench/service/ingest_cost.py --records 200000

Needs PostgreSQL at ``PROVML_TEST_POSTGRES_URL`` (default the local server) and nothing
else using it.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_service import batches, fresh_database, generate, payloads_of

import provml.store.sql as sql
from provml.api._app import tune_gc
from provml.api._ingest import _batch
from provml.records import record_from_dict

_TICK = os.sysconf("SC_CLK_TCK")


def postgres_pids() -> list[int]:
    """The ``postgres`` processes running now (the server's, and our connection's)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().startswith("postgres"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def postgres_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by the processes ``pids`` (those still running)."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / _TICK


def best_of(call: Callable[[], Any], records: int, repeat: int = 5) -> float:
    """The least thread CPU µs a record of ``repeat`` runs of ``call``."""
    best = float("inf")
    for _ in range(repeat):
        started = time.thread_time()
        call()
        best = min(best, time.thread_time() - started)
    return best / records * 1e6


def server_stages(raws: list[bytes], records: int) -> dict[str, float]:
    """Thread CPU µs a record of each stage; results dropped as they come (as served)."""
    wire = [r for raw in raws for b in json.loads(raw)["bundles"] for r in b["records"]]
    decoded = [_batch(raw) for raw in raws]

    def each(call: Callable[[Any], Any], items: list[Any]) -> Callable[[], None]:
        def run() -> None:
            for item in items:
                call(item)

        return run

    stages = {
        "JSON": best_of(each(json.loads, raws), records),
        "record_from_dict": best_of(each(record_from_dict, wire), records),
        "whole decode (_batch)": best_of(each(_batch, raws), records),
        "_plan": best_of(each(sql._plan, decoded), records),
    }
    stages["rest of decoding"] = stages["whole decode (_batch)"] - stages["JSON"]
    stages["rest of decoding"] -= stages["record_from_dict"]
    return stages


def own_cpu(raws: list[bytes], records: int) -> float:
    """``SQLStore.ingest``'s own thread CPU µs a record (planning and rows included,
    PostgreSQL's work not), batches into a fresh database on one connection."""
    own = 0.0
    with fresh_database("provml_bench_cost") as url:
        store = sql.SQLStore(url)
        store.upgrade()
        for raw in raws:
            bundles = _batch(raw)
            started = time.thread_time()
            store.ingest(bundles)
            own += time.thread_time() - started
        store.close()
    return own / records * 1e6


def postgres_statements(raws: list[bytes], records: int) -> dict[str, float]:
    """PostgreSQL's CPU µs a record by statement of ``SQLStore.ingest`` (the first
    batch, which opens the connection, is left out)."""
    spent: collections.Counter[str] = collections.Counter()
    pids: list[int] = []

    def measured(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: Any, conn: Any, *args: Any) -> Any:
            part = args[0].name if args and hasattr(args[0], "name") else name
            before = postgres_cpu(pids)
            try:
                return method(self, conn, *args)
            finally:
                spent[part] += postgres_cpu(pids) - before

        return wrapper

    originals = {
        name: getattr(sql.SQLStore, name)
        for name in ("_lock_bundles", "_insert_rows", "_refresh_statistics")
    }
    with fresh_database("provml_bench_cost") as url:
        store = sql.SQLStore(url)
        store.upgrade()
        first, *rest = raws
        store.ingest(_batch(first))
        pids.extend(postgres_pids())
        try:
            for name, method in originals.items():
                setattr(sql.SQLStore, name, measured(name.strip("_"), method))
            for raw in rest:
                bundles = _batch(raw)
                before = postgres_cpu(pids)
                store.ingest(bundles)
                spent["whole transaction"] += postgres_cpu(pids) - before
        finally:
            for name, method in originals.items():
                setattr(sql.SQLStore, name, method)
            store.close()
    counted = records * len(rest) / len(raws)
    return {part: used / counted * 1e6 for part, used in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    bundles = generate(args.records)
    records = sum(len(b.records) for b in bundles)
    raws = [gzip.decompress(p) for p in payloads_of(batches(bundles))]
    del bundles
    tune_gc()
    print(f"{records:,} records")
    for stage, us in server_stages(raws, records).items():
        print(f"server, {stage}: {us:.2f} µs a record")
    own = own_cpu(raws, records)
    print(f"server, SQLStore.ingest (_plan included, PostgreSQL's work not): {own:.2f} µs a record")
    for part, us in postgres_statements(raws, records).items():
        print(f"PostgreSQL, {part}: {us:.2f} µs a record")


if __name__ == "__main__":
    main()
