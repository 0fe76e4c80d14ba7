"""Sustained load on one ``provml serve`` on PostgreSQL: capture clients plus readers.

8 capture clients (separate processes, ``provml.init(endpoint=...)``) stream training
provenance while a lineage reader and a SPARQL reader query the server without pause.
The run prints latency percentiles of ingest (as the clients' exporters saw them),
lineage and SPARQL, the errors seen, whether every captured record was stored, and the
server's memory (RSS, sampled every half second) by quarter of the run.

    python bench/load/load.py --duration 300            # a fresh database on the local server
    python bench/load/load.py --duration 60 --store postgresql+psycopg://…/db  # a migrated one

``tests/test_reliability_load.py`` runs it for 60 s in CI and asserts on its figures.
Loopback only; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

TOKEN = "load-token"
SEED_BUNDLE = "https://provml.local/load/bundle/seed"
SEED_VERSION = "https://provml.local/load/model/seed/v/1"
SEED_RAW = "https://provml.local/load/data/raw.segy"
SPARQL = (
    "PREFIX prov: <http://www.w3.org/ns/prov#> "
    "SELECT ?run ?start WHERE { ?run a prov:Activity ; prov:startedAtTime ?start } "
    "ORDER BY DESC(?start) LIMIT 20"
)

CLIENT = textwrap.dedent(
    """
    import json, sys, time
    import provml
    from provml.capture import _export, _state
    from provml.capture._provider import stats

    endpoint, token, spool, out, name, duration, pause = sys.argv[1:8]
    latencies, failures, delivered_keys = [], [], set()
    original = _export.HttpDestination.post

    def key(bundle_id, r):
        if r.get("kind") in ("entity", "activity", "agent"):
            return ("e", bundle_id, r["id"])
        return ("r", bundle_id, r["kind"], r.get("subject"), r.get("object"), r.get("id"))

    def post(self, payload):
        started = time.perf_counter()
        try:
            original(self, payload)
        except Exception as exc:
            failures.append(str(exc)[:200])
            raise
        latencies.append(time.perf_counter() - started)
        delivered_keys.update(key(b["id"], r) for b in payload["bundles"] for r in b["records"])

    _export.HttpDestination.post = post
    provml.init(name, endpoint=endpoint, token=token, spool_dir=spool, export_timeout=10,
                exit_timeout=60, schedule_delay=0.25)
    deadline = time.monotonic() + float(duration)
    version = 0

    @provml.training
    def train(learning_rate=0.01, epochs=10):
        for epoch in range(epochs):
            with provml.section("epoch", step=epoch):
                provml.log_metric("loss", 1.0 / (epoch + 1))
                provml.log_metric("accuracy", epoch / epochs)
            time.sleep(float(pause))
        provml.log_model_version(name, version)

    while time.monotonic() < deadline:
        version += 1
        train()
    provider = _state.provider
    delivered = provml.shutdown(60)
    s = stats(provider)
    with open(out, "w") as f:
        json.dump({"delivered": delivered, "captured": s.captured, "exported": s.exported,
                   "spooled": s.spooled, "replayed": s.replayed, "dropped": dict(s.dropped),
                   "latencies": latencies, "failures": failures, "trainings": version,
                   "keys": sorted(delivered_keys, key=repr)}, f)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {
        "n": len(ordered),
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "max_ms": ordered[-1] * 1000,
    }


@dataclass
class Reader:
    """A thread asking one question again and again; latencies and non-200 answers."""

    name: str
    url: str
    params: dict[str, str]
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    answer = client.get(self.url, params=self.params)
                except httpx.HTTPError as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                self.latencies.append(time.perf_counter() - started)
                if answer.status_code != 200:
                    self.errors.append(f"{answer.status_code}: {answer.text[:200]}")
                time.sleep(0.02)


def seed() -> bytes:
    """A small story with a known model version, for the lineage reader."""
    from provml.records import Bundle, Element, Relation, bundle_to_dict

    base = "https://provml.local/load/"
    records = (
        Element("entity", SEED_RAW),
        Element("activity", base + "run/seed-training"),
        Element("entity", SEED_VERSION),
        Relation("used", base + "run/seed-training", SEED_RAW),
        Relation("wasGeneratedBy", SEED_VERSION, base + "run/seed-training"),
    )
    body = {"bundles": [bundle_to_dict(Bundle(SEED_BUNDLE, records))]}
    return gzip.compress(json.dumps(body).encode())


def stored_keys(store: str) -> list[tuple]:
    """One key per stored record (the seed left out), as the clients make them."""
    from provml.records import Element
    from provml.store.sql import SQLStore

    keys = []
    with SQLStore(store) as sql:
        for bundle in sql.iter_bundles():
            if bundle.id == SEED_BUNDLE:
                continue
            for r in bundle.records:
                if isinstance(r, Element):
                    keys.append(("e", bundle.id, r.id))
                else:
                    keys.append(("r", bundle.id, r.kind, r.subject, r.object, r.id))
    return keys


def run_load(
    store: str,
    workdir: Path,
    duration: float = 60.0,
    clients: int = 8,
    pause: float = 0.1,
    read_tail: float = 20.0,
) -> dict[str, Any]:
    """Run the load against a migrated store; the figures as a dict (see module doc)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PROVML_WRITE_TOKEN": TOKEN, "PROVML_RDF": str(workdir / "oxigraph")}
    log = (workdir / "serve.log").open("wb")
    command = [sys.executable, "-m", "provml.cli", "serve", "--store", store, "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (workdir / "serve.log").read_text()
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Authorization": f"Bearer {TOKEN}",
        }
        assert httpx.post(url + "/api/v1/records", content=seed(), headers=headers).is_success
        job = workdir / "client.py"
        job.write_text(CLIENT)
        outs = [workdir / f"client-{n}.json" for n in range(clients)]
        started = time.monotonic()
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(job),
                    url,
                    TOKEN,
                    str(workdir / f"spool-{n}"),
                    str(out),
                    f"load-client-{n}-{uuid.uuid4().hex[:6]}",
                    str(duration),
                    str(pause),
                ],
                cwd=workdir,
                stdout=subprocess.DEVNULL,
                stderr=(workdir / f"client-{n}.log").open("wb"),
            )
            for n, out in enumerate(outs)
        ]
        stop = threading.Event()
        readers = [
            Reader("lineage", url + "/api/v1/lineage", {"id": SEED_VERSION}),
            Reader(
                "impact",
                url + "/api/v1/lineage",
                {"id": SEED_RAW, "direction": "impact"},
            ),
            Reader("sparql", url + "/sparql", {"query": SPARQL}),
        ]
        threads = [threading.Thread(target=r.run, args=(stop,), daemon=True) for r in readers]
        for thread in threads:
            thread.start()
        samples: list[tuple[float, int, int]] = []
        while any(p.poll() is None for p in procs):
            kids = sum(rss_kib(c) for c in children(server.pid))
            samples.append((time.monotonic() - started, rss_kib(server.pid), kids))
            if time.monotonic() - started > duration + 120:
                for p in procs:
                    p.kill()
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        ingest_samples = len(samples)
        # The projector catches up with the last batches (the readers go on)...
        pending = 1
        wait_until = time.monotonic() + 60
        while pending and time.monotonic() < wait_until:
            pending = httpx.get(url + "/readyz").json()["sql"]["outbox_pending"]
            time.sleep(0.2)
        caught_up = time.monotonic() - started - elapsed
        # ...then a read-only tail: the readers go on alone, so memory that grows per
        # request (a leak) shows apart from memory that grows with the data.
        tail_started = time.monotonic()
        while time.monotonic() - tail_started < read_tail:
            samples.append((time.monotonic() - started, rss_kib(server.pid), 0))
            time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join(30)
        reports = [json.loads(o.read_text()) if o.exists() else {} for o in outs]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    stored = stored_keys(store)
    delivered = {tuple(k) for r in reports for k in r.get("keys", [])}
    rss = [s[1] for s in samples[:ingest_samples]]
    quarter = max(1, len(rss) // 4)
    tail = [s[1] for s in samples[ingest_samples:]]
    half = max(1, len(tail) // 2)
    tail_first = statistics.median(tail[:half]) if tail else 0
    tail_last = statistics.median(tail[half:]) if len(tail) > 1 else 0
    q2 = statistics.median(rss[quarter : 2 * quarter]) if len(rss) >= 4 else 0
    q4 = statistics.median(rss[-quarter:]) if rss else 0
    captured = sum(r.get("captured", 0) for r in reports)
    return {
        "duration_s": round(elapsed, 1),
        "clients": clients,
        "client_exits": [p.returncode for p in procs],
        "trainings": sum(r.get("trainings", 0) for r in reports),
        "records_captured": captured,
        "records_exported_first_try": sum(r.get("exported", 0) for r in reports),
        "records_spooled": sum(r.get("spooled", 0) for r in reports),
        "records_dropped": sum(sum(r.get("dropped", {}).values()) for r in reports),
        "records_distinct_delivered": len(delivered),
        "records_stored": len(stored),
        "duplicates": len(stored) - len(set(stored)),
        "lost": len(delivered - set(stored)),
        "stored_never_delivered": len(set(stored) - delivered),
        "all_delivered": all(r.get("delivered") for r in reports) and len(reports) == clients,
        "ingest_failures": sum(len(r.get("failures", [])) for r in reports),
        "ingest": percentiles([x for r in reports for x in r.get("latencies", [])]),
        **{r.name: percentiles(r.latencies) for r in readers},
        "reader_errors": {r.name: r.errors[:5] for r in readers if r.errors},
        "reader_error_count": sum(len(r.errors) for r in readers),
        "records_per_s": round(captured / elapsed, 1) if elapsed else 0,
        "outbox_pending_after": pending,
        "projection_caught_up_after_s": round(caught_up, 1),
        "rss_samples": len(rss),
        "rss_mib_first": round(rss[0] / 1024, 1) if rss else 0,
        "rss_mib_q2_median": round(q2 / 1024, 1),
        "rss_mib_q4_median": round(q4 / 1024, 1),
        "rss_mib_max": round(max(rss) / 1024, 1) if rss else 0,
        "rss_growth_q4_over_q2": round(q4 / q2, 3) if q2 else None,
        "rss_mib_per_10k_records": (
            round((q4 - q2) / 1024 / (captured / 2) * 10_000, 1) if captured and q2 else None
        ),
        "read_tail_s": read_tail,
        "rss_mib_read_tail_first_half": round(tail_first / 1024, 1),
        "rss_mib_read_tail_second_half": round(tail_last / 1024, 1),
        "rss_growth_read_tail": round(tail_last / tail_first, 3) if tail_first else None,
    }


def print_figures(figures: dict[str, Any]) -> None:
    for name, value in figures.items():
        if isinstance(value, dict) and "n" in value:
            text = ", ".join(
                f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items()
            )
            print(f"  {name}: {text}")
        else:
            print(f"  {name}: {value}")


def _fresh_database() -> tuple[str, Any]:
    """A new database on the local server (PROVML_TEST_POSTGRES_URL), and its dropper."""
    import psycopg

    server = os.environ.get(
        "PROVML_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    dsn = server.replace("postgresql+psycopg://", "postgresql://")
    name = f"provml_load_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')  # a name we made, not input

    def drop() -> None:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return server.rpartition("/")[0] + "/" + name, drop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--pause", type=float, default=0.1, help="seconds between epochs")
    parser.add_argument("--read-tail", type=float, default=20.0, help="seconds of reads only")
    parser.add_argument("--store", help="a migrated PostgreSQL URL (default: a fresh database)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    from provml.store.sql import SQLStore

    drop = None
    store = args.store
    if store is None:
        store, drop = _fresh_database()
    try:
        with SQLStore(store) as sql:
            sql.upgrade()
        with tempfile.TemporaryDirectory(prefix="provml-load-") as workdir:
            figures = run_load(
                store, Path(workdir), args.duration, args.clients, args.pause, args.read_tail
            )
    finally:
        if drop is not None:
            drop()
    print(f"load: {args.clients} capture clients + lineage and SPARQL readers, one server")
    print_figures(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
