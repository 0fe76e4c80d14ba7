"""Service benchmark (issue 4): ingest over HTTP, REST lineage and the SPARQL endpoint.

Generates a store of PROV-ML records: workflows that curate raw files drawn from one
shared pool (so many workflows share domain data) and train versions of a few models,
each version fine-tuned from the previous one (so lineage is deep as well as wide).
Then, side by side in one run:

* ingest throughput over HTTP into PostgreSQL (batches of ~1,000 records, 4 concurrent
  clients, gzip JSON as the capture client sends them) against a plain PostgreSQL COPY of
  the same records (one JSON row per record: the physical limit of this machine);
* lineage of a model version (upstream, depth 20) and impact of a raw file (downstream):
  p50/p99 through the REST API on PostgreSQL and on SQLite, against the same question as
  a SPARQL property path on Oxigraph in memory and on rdflib's in-memory store;
* the documented SPARQL queries through ``/sparql`` against Oxigraph directly.

Usage::

    /tmp/venv/bin/python bench/service/bench_service.py --records 100000

Needs PostgreSQL at ``PROVML_TEST_POSTGRES_URL`` (default the local server). Prints a
Markdown table; the figures in RESULTS.md were written from such a run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import psycopg

from provml.queries import EXAMPLE_BY_NAME
from provml.rdf import RDFStore
from provml.records import Bundle, Element, Literal, Ref, Relation, bundle_to_dict
from provml.store.sql import SQLStore
from provml.vocab import PROV_LABEL, PROV_TYPE, XSD, ml

EX = "https://bench.provml.local/"
POSTGRES = os.environ.get(
    "PROVML_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
PROV = "http://www.w3.org/ns/prov#"
PATH = f"(<{PROV}wasDerivedFrom>|<{PROV}wasGeneratedBy>|<{PROV}used>)"


def entity(iri: str, ml_class: str, *attributes) -> Element:
    return Element(
        "entity", iri, ((PROV_TYPE, Ref(ml(ml_class))), (PROV_LABEL, iri[-24:]), *attributes)
    )


def workflow(
    n: int, rng: random.Random, raw_pool: int, models: int, last: dict[int, str]
) -> Bundle:
    """One curation + training workflow: about 40 records."""
    raws = [EX + f"raw/{rng.randrange(raw_pool)}.segy" for _ in range(3)]
    curation, training = EX + f"run/curation/{n}", EX + f"run/training/{n}"
    features = EX + f"data/features/{n}"
    model = rng.randrange(models)
    version = EX + f"model/{model}/v/{n}"
    records: list = [
        *(entity(r, "DomainData") for r in dict.fromkeys(raws)),
        Element("activity", curation, ((PROV_TYPE, Ref(ml("DataTransformationExecution"))),)),
        entity(features, "FeatureSetData"),
        *(Relation("used", curation, r) for r in dict.fromkeys(raws)),
        Relation("wasGeneratedBy", features, curation),
        *(Relation("wasDerivedFrom", features, r) for r in dict.fromkeys(raws)),
        Element("activity", training, ((PROV_TYPE, Ref(ml("TrainingExecution"))),)),
        entity(version, "ModelVersion"),
        entity(EX + f"model/{model}", "Model"),
        Relation("used", training, features),
        Relation("wasGeneratedBy", version, training),
        Relation("specializationOf", version, EX + f"model/{model}"),
    ]
    for name, value in (
        ("lr", rng.choice(["0.1", "0.01", "0.001"])),
        ("epochs", str(rng.randrange(1, 50))),
    ):
        param = EX + f"param/{n}/{name}"
        records += [
            entity(
                param,
                "LearningHyperparameterValue",
                (ml("name"), name),
                (ml("hyperparameterValue"), value),
            ),
            Relation("used", training, param),
        ]
    for step in range(5):
        metric = EX + f"metric/{n}/{step}"
        records += [
            entity(
                metric,
                "MetricValue",
                (ml("name"), "loss"),
                (ml("metricValue"), Literal(str(1 / (step + 1)), XSD + "double")),
                (ml("step"), step),
            ),
            Relation("wasGeneratedBy", metric, training),
        ]
    if model in last:  # fine-tuned from the model's previous version
        records += [
            Relation("used", training, last[model]),
            Relation("wasDerivedFrom", version, last[model]),
        ]
    last[model] = version
    return Bundle(EX + f"bundle/{n}", tuple(records))


def generate(total: int, seed: int = 7) -> list[Bundle]:
    rng = random.Random(seed)
    raw_pool, models = max(50, total // 400), 20
    bundles, count, last = [], 0, {}
    while count < total:
        bundle = workflow(len(bundles), rng, raw_pool, models, last)
        bundles.append(bundle)
        count += len(bundle.records)
    return bundles


def batches(bundles: list[Bundle], size: int = 1000) -> list[list[Bundle]]:
    out, current, count = [], [], 0
    for bundle in bundles:
        current.append(bundle)
        count += len(bundle.records)
        if count >= size:
            out.append(current)
            current, count = [], 0
    return out + ([current] if current else [])


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[
        min(len(ordered) - 1, int(len(ordered) * 0.99))
    ] * 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, store: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PROVML_RDF": str(workdir / f"oxigraph-{self.port}"),
            "PROVML_SPARQL_MAX_ROWS": "1000000",
        }
        self.log = (workdir / f"serve-{self.port}.log").open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "provml.cli",
                "serve",
                "--store",
                store,
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"provml serve did not start; see {self.log.name}")
            time.sleep(0.2)

    def wait_projected(self) -> None:
        while httpx.get(self.url + "/readyz", timeout=30).json()["sql"].get("outbox_pending"):
            time.sleep(0.5)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


def http_ingest(url: str, payloads: list[bytes], clients: int = 4) -> float:
    """Seconds to POST every payload with ``clients`` concurrent connections."""
    queue = list(reversed(payloads))
    lock = threading.Lock()
    errors: list[str] = []

    def client() -> None:
        with httpx.Client(timeout=300) as http:
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                response = http.post(
                    url + "/api/v1/records",
                    content=body,
                    headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
                )
                if response.status_code != 200:
                    errors.append(response.text[:200])

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return time.perf_counter() - started


def copy_ingest(dsn: str, bundles: list[Bundle]) -> float:
    """Seconds for a plain COPY of the same records (one JSON row each)."""
    rows = [(b.id, json.dumps(r)) for b in bundles for r in bundle_to_dict(b)["records"]]
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE bench_copy (bundle text, record jsonb)")
        started = time.perf_counter()
        with conn.cursor().copy("COPY bench_copy (bundle, record) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return time.perf_counter() - started


def _sparql(url: str, query: str) -> None:
    response = httpx.get(url + "/sparql", params={"query": query}, timeout=120)
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.json()['message'][:120]}")


def timed(call, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()

    bundles = generate(args.records)
    total = sum(len(b.records) for b in bundles)
    payloads = [
        gzip.compress(json.dumps({"bundles": [bundle_to_dict(b) for b in batch]}).encode())
        for batch in batches(bundles)
    ]
    print(f"{total} records in {len(bundles)} workflows, {len(payloads)} batches", file=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="provml-service-bench-"))
    admin_dsn = POSTGRES.replace("postgresql+psycopg://", "postgresql://")
    names = [f"provml_bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        for name in names:
            admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES.rsplit("/", 1)[0]
    pg_url, copy_dsn = (
        f"{base}/{names[0]}",
        f"{base.replace('postgresql+psycopg://', 'postgresql://')}/{names[1]}",
    )
    sqlite_url = f"sqlite:///{workdir / 'provml.sqlite'}"
    results: list[tuple[str, str]] = []
    servers: list[Server] = []
    try:
        SQLStore(pg_url).upgrade()
        pg = Server(pg_url, workdir)
        servers.append(pg)
        seconds = http_ingest(pg.url, payloads)
        copy_seconds = copy_ingest(copy_dsn, bundles)
        http_rate, copy_rate = total / seconds, total / copy_seconds
        results += [
            ("ingest over HTTP into PostgreSQL, 4 clients", f"{http_rate:,.0f} records/s"),
            ("PostgreSQL COPY of the same records", f"{copy_rate:,.0f} records/s"),
            ("HTTP ingest / COPY", f"{http_rate / copy_rate:.2f}"),
        ]
        print(f"ingest done: {http_rate:.0f}/s vs COPY {copy_rate:.0f}/s", file=sys.stderr)

        store = SQLStore(sqlite_url)
        store.upgrade()
        for batch in batches(bundles):
            store.ingest(batch)
        store.close()
        lite = Server(sqlite_url, workdir)
        servers.append(lite)
        # Measure with both servers idle: a projection catching up competes for the CPU.
        pg.wait_projected()
        lite.wait_projected()

        versions = sorted(
            {
                r.id
                for b in bundles[-200:]
                for r in b.records
                if isinstance(r, Element) and r.ml_class == "ModelVersion"
            }
        )
        raw = EX + "raw/0.segy"
        rng = random.Random(1)
        for label, server in (("PostgreSQL", pg), ("SQLite", lite)):
            up = timed(
                lambda s=server: httpx.get(
                    s.url + "/api/v1/lineage",
                    params={"id": rng.choice(versions), "depth": 20},
                    timeout=60,
                ).raise_for_status(),
                args.repeat,
            )
            down = timed(
                lambda s=server: httpx.get(
                    s.url + "/api/v1/lineage", params={"id": raw, "direction": "impact"}, timeout=60
                ).raise_for_status(),
                args.repeat,
            )
            results += [
                (
                    f"REST lineage upstream depth 20, {label} (p50 / p99)",
                    "{:.1f} / {:.1f} ms".format(*percentiles(up)),
                ),
                (
                    f"REST impact of a raw file, {label} (p50 / p99)",
                    "{:.1f} / {:.1f} ms".format(*percentiles(down)),
                ),
            ]

        memory = RDFStore.open(None)
        sql = SQLStore(pg_url)
        memory.rebuild(sql)

        def up_q(version: str) -> str:
            return f"SELECT DISTINCT ?x WHERE {{ <{version}> {PATH}+ ?x }}"

        down_q = f"SELECT DISTINCT ?x WHERE {{ ?x {PATH}+ <{raw}> }}"
        ox_up = timed(lambda: memory.query(up_q(rng.choice(versions))), args.repeat)
        ox_down = timed(lambda: memory.query(down_q), args.repeat)
        results += [
            (
                "SPARQL property path upstream, Oxigraph in memory (p50 / p99)",
                "{:.1f} / {:.1f} ms".format(*percentiles(ox_up)),
            ),
            (
                "SPARQL property path impact, Oxigraph in memory (p50 / p99)",
                "{:.1f} / {:.1f} ms".format(*percentiles(ox_down)),
            ),
        ]
        import rdflib

        plain = rdflib.Dataset(default_union=True)
        nquads = b"".join(str(q).encode() + b" .\n" for q in memory.quads())
        plain.parse(data=nquads, format="nquads")
        few = max(3, args.repeat // 10)
        rl_up = timed(lambda: list(plain.query(up_q(rng.choice(versions)))), few)
        rl_down = timed(lambda: list(plain.query(down_q)), few)
        results += [
            (
                f"SPARQL property path upstream, rdflib in memory (p50 / p99 of {few})",
                "{:.1f} / {:.1f} ms".format(*percentiles(rl_up)),
            ),
            (
                f"SPARQL property path impact, rdflib in memory (p50 / p99 of {few})",
                "{:.1f} / {:.1f} ms".format(*percentiles(rl_down)),
            ),
        ]

        model = EX + "model/0"
        documented = {
            "raw-data-of-model-version": EXAMPLE_BY_NAME["raw-data-of-model-version"].render(
                version=versions[-1]
            ),
            "models-affected-by-file": EXAMPLE_BY_NAME["models-affected-by-file"].render(file=raw),
            "hyperparameters-and-final-metrics": EXAMPLE_BY_NAME[
                "hyperparameters-and-final-metrics"
            ].render(model=model),
        }
        for name, query in documented.items():
            runs = max(1, args.repeat // 5)
            try:
                endpoint = timed(lambda q=query: _sparql(pg.url, q), runs)
            except RuntimeError as exc:
                results.append((f"/sparql: {name}", str(exc)))
                continue
            direct = timed(lambda q=query: memory.query(q), runs)
            p50_endpoint, p50_direct = percentiles(endpoint)[0], percentiles(direct)[0]
            ratio = p50_endpoint / p50_direct
            results.append(
                (
                    f"/sparql vs Oxigraph directly: {name} (p50)",
                    f"{p50_endpoint:.1f} vs {p50_direct:.1f} ms ({ratio:.2f}x)",
                )
            )
        sql.close()
    finally:
        for server in servers:
            server.stop()
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            for name in names:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"\n{total:,} records, {len(bundles):,} workflows, {os.cpu_count()} cores (shared)\n")
    print("| measurement | result |\n|---|---|")
    for name, value in results:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
