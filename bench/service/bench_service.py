"""Service benchmark (issue 4): ingest over HTTP, REST lineage and the SPARQL endpoint.

Generates a store of PROV-ML records: workflows that curate raw files drawn from one
shared pool (so many workflows share domain data) and train versions of a few models,
each version fine-tuned from the previous one (so lineage is deep as well as wide).
Then, side by side in one run:

* ingest throughput over HTTP into PostgreSQL (batches of ~1,000 records, 4 concurrent
  clients, gzip JSON as the capture client sends them) against two plain PostgreSQL COPYs:
  of the same records, one JSON row per record into an unindexed table (the raw limit of
  this machine), and of the very rows the ingest stored (bundles, nodes, relations,
  lineage edges, outbox), into provml's own schema with its keys and indexes (the limit
  of storing what the service stores);
* lineage of a model version (upstream, depth 20) and impact of a raw file (downstream):
  p50/p99 through the REST API on PostgreSQL and on SQLite, against the same question as
  a SPARQL property path on Oxigraph in memory and on rdflib's in-memory store;
  and against MLflow's ``log_batch`` to a local ``mlflow server`` on the same PostgreSQL
  (a database of its own), batches of 1,000 entities, 4 clients; each server is timed
  once it has settled after start-up (:func:`wait_idle`), taking request bodies made
  before the clock; the CPU a record (a metric) each side used says how far the ratio
  can go on this machine; in-process figures (decoding, planning, ``SQLStore.ingest``)
  show where the time goes;
* the documented SPARQL queries through ``/sparql`` against the same queries on
  pyoxigraph directly, opened read-only on the very on-disk store the endpoint answers
  from and serialising the same SPARQL JSON (the endpoint's overhead; the two timed in
  turns), and against ``rdflib-endpoint`` serving the same quads from rdflib's
  in-memory store.

Usage (the peers live in a venv of their own, made by ``bench/service/setup.sh``)::

    bash bench/service/setup.sh /tmp/bench-service-venv
    /tmp/bench-service-venv/bin/python bench/service/bench_service.py --records 1000000

Needs PostgreSQL at ``PROVML_TEST_POSTGRES_URL`` (default the local server). Prints a
Markdown table; the figures in RESULTS.md were written from such a run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pyoxigraph

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
PEER_TIMEOUT = 120  # seconds an rdflib-endpoint query may take
PATH = f"(<{PROV}wasDerivedFrom>|<{PROV}wasGeneratedBy>|<{PROV}used>)"


@contextlib.contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A new database on the benchmark's PostgreSQL server, dropped afterwards (whoever
    still holds a connection): yields its SQLAlchemy URL."""
    admin = POSTGRES.replace("postgresql+psycopg://", "postgresql://")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
    def __init__(
        self, store: str, workdir: Path, workers: int = 1, rdf: Path | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PROVML_RDF": str(rdf or workdir / f"oxigraph-{self.port}"),
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
                "--workers",
                str(workers),
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    wait_idle(self.process.pid)
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"provml serve did not start; see {self.log.name}")
            time.sleep(0.2)

    def wait_projected(self) -> None:
        """Until the server's RDF store holds every record: no outbox row, no rebuild."""
        while True:
            ready = httpx.get(self.url + "/readyz", timeout=30).json()
            if not ready["sql"].get("outbox_pending") and not ready["rdf"].get("rebuilding"):
                return
            time.sleep(0.5)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


_TICK = os.sysconf("SC_CLK_TCK")
CPU_PARTS = ("server", "projector", "ended", "postgres", "clients")


@dataclasses.dataclass
class CpuSnapshot:
    """CPU seconds used so far (see :func:`cpu_snapshot`)."""

    processes: dict[int, float]  # each server process, its ended threads included
    threads: dict[tuple[int, int], tuple[bool, float]]  # each live thread: niced, seconds
    postgres: float
    clients: float


def cpu_snapshot(server_pid: int) -> CpuSnapshot:
    """CPU seconds used so far by the server (its supervisor and every process under
    it, however deep: every process, and every live thread with whether it runs niced, as the
    RDF projector does with ``PROVML_PROJECT_NICE``), by PostgreSQL's processes (every
    ``postgres`` process counts, so nothing else may use the server during the
    measurement) and by this benchmark's own process. Read from ``/proc``: user +
    system time."""

    def times(stat_file: Path) -> tuple[str, list[str]]:
        stat = stat_file.read_text()
        return stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()

    def seconds(fields: list[str]) -> float:
        return (int(fields[11]) + int(fields[12])) / _TICK

    listed = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError):  # gone meanwhile
                listed.append((int(entry.name), entry, *times(entry / "stat")))
    server = _descendants(server_pid, {pid: int(fields[1]) for pid, _, _, fields in listed})
    snapshot = CpuSnapshot({}, {}, 0.0, 0.0)
    for pid, entry, name, fields in listed:
        if pid in server:
            snapshot.processes[pid] = seconds(fields)
            for task in (entry / "task").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    _, task_fields = times(task / "stat")
                    niced = int(task_fields[16]) > 0
                    snapshot.threads[pid, int(task.name)] = (niced, seconds(task_fields))
        elif name.startswith("postgres"):
            snapshot.postgres += seconds(fields)
        elif pid == os.getpid():
            snapshot.clients += seconds(fields)
    return snapshot


def _descendants(root: int, parents: dict[int, int]) -> set[int]:
    """``root`` and every process under it, from a map of pid to parent pid."""
    tree, grew = {root}, True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= below
        grew = bool(below)
    return tree


def wait_idle(pid: int, cores: float = 0.1, timeout: float = 180) -> float:
    """Wait until the process tree under ``pid`` uses less than ``cores`` over a second;
    the seconds waited.

    A server answers its health check before it has settled: ``mlflow server`` answers
    once one worker is up, while its other processes go on importing with both of this
    machine's cores for ~10 s more. Timed from its first answer, a peer would run beside
    its own start-up (and flatter every ratio against it).
    """
    started = time.monotonic()
    before = sum(cpu_snapshot(pid).processes.values())
    while time.monotonic() - started < timeout:
        time.sleep(1.0)
        now = sum(cpu_snapshot(pid).processes.values())
        if now - before < cores:
            break
        before = now
    return time.monotonic() - started


def cpu_between(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """CPU seconds used between two snapshots, by part (``CPU_PARTS``): the server's
    threads at normal priority ("server": request handling), its niced threads
    ("projector": the RDF projection), its threads that ended in between ("ended"),
    PostgreSQL, and the clients.

    ``/proc`` keeps no times for a thread that ended, only its process's total, so
    "ended" is the process's time less that of its threads still alive. These are
    mostly the RDF bulk loader's threads: the niced projector thread starts them (so
    they are niced too), and Oxigraph starts threads of its own for every load.
    """
    parts = dict.fromkeys(CPU_PARTS, 0.0)
    live: dict[int, float] = {}
    for (pid, tid), (niced, used) in after.threads.items():
        spent = used - before.threads.get((pid, tid), (niced, 0.0))[1]
        parts["projector" if niced else "server"] += spent
        live[pid] = live.get(pid, 0.0) + spent
    for pid, total in after.processes.items():
        parts["ended"] += total - before.processes.get(pid, 0.0) - live.get(pid, 0.0)
    parts["postgres"] = after.postgres - before.postgres
    parts["clients"] = after.clients - before.clients
    return parts


def payloads_of(grouped: list[list[Bundle]]) -> list[bytes]:
    """One gzip JSON request body per batch, as the capture exporter sends them."""
    return [
        gzip.compress(json.dumps({"bundles": [bundle_to_dict(b) for b in batch]}).encode())
        for batch in grouped
    ]


def ingest_and_catch_up(
    server: Server, payloads: list[bytes], records: int
) -> tuple[float, float, dict[str, float], dict[str, float]]:
    """POST every payload (4 clients), then wait for the RDF projection to catch up:
    the ingest's seconds, the catch-up's seconds after it, and the CPU µs a record
    each part (see :func:`cpu_between`) used during the ingest and during the catch-up."""
    before = cpu_snapshot(server.process.pid)
    seconds = http_ingest(server.url, payloads)
    middle = cpu_snapshot(server.process.pid)
    started = time.perf_counter()
    server.wait_projected()
    catch_up = time.perf_counter() - started
    after = cpu_snapshot(server.process.pid)

    def per_record(used: dict[str, float]) -> dict[str, float]:
        return {part: used[part] / records * 1e6 for part in used}

    return (
        seconds,
        catch_up,
        per_record(cpu_between(before, middle)),
        per_record(cpu_between(middle, after)),
    )


def run_clients(work, clients: int) -> float:
    """Seconds for ``clients`` threads running ``work``; the first error it recorded is raised.

    ``work(errors)`` appends a message to ``errors`` for every call that failed.
    """
    errors: list[str] = []
    threads = [threading.Thread(target=work, args=(errors,)) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return time.perf_counter() - started


def post_all(url: str, bodies: list[bytes], headers: dict[str, str], clients: int = 4) -> float:
    """Seconds to POST every body to ``url`` with ``clients`` concurrent connections."""
    queue = list(reversed(bodies))
    lock = threading.Lock()

    def client(errors: list[str]) -> None:
        with httpx.Client(timeout=300) as http:
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                response = http.post(url, content=body, headers=headers)
                if response.status_code != 200:
                    errors.append(response.text[:200])

    return run_clients(client, clients)


def http_ingest(url: str, payloads: list[bytes], clients: int = 4) -> float:
    """Seconds to POST every payload to provml's record ingest, ``clients`` at a time."""
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    return post_all(url + "/api/v1/records", payloads, headers, clients)


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


#: The tables an ingest writes, in the order a load into an empty schema takes them.
STORED_TABLES = ("bundles", "nodes", "relations", "lineage_edges", "outbox")


def copy_stored_rows(source_dsn: str, target_url: str) -> tuple[float, int]:
    """Seconds for a plain COPY of the rows an ingest stored, into provml's own schema.

    The rows are read out of ``source_dsn`` (the database the HTTP ingest filled) in
    PostgreSQL's binary COPY format, then loaded into a fresh database migrated to the
    same schema, with its keys and indexes, in one transaction on one connection: the
    physical limit of storing what the service stores, on this machine. Returns the
    seconds and the number of rows.
    """
    dumps: dict[str, list[bytes]] = {}
    with psycopg.connect(source_dsn) as source:
        for table in STORED_TABLES:
            with source.cursor().copy(f"COPY {table} TO STDOUT (FORMAT binary)") as copy:
                dumps[table] = [bytes(chunk) for chunk in copy]
            source.commit()
        rows = sum(
            source.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in STORED_TABLES
        )
    schema = SQLStore(target_url)
    schema.upgrade()
    schema.close()
    target_dsn = target_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(target_dsn) as target:
        started = time.perf_counter()
        for table in STORED_TABLES:
            with target.cursor().copy(f"COPY {table} FROM STDIN (FORMAT binary)") as copy:
                for chunk in dumps[table]:
                    copy.write(chunk)
        target.commit()
        return time.perf_counter() - started, rows


def in_process(dsn_url: str, bundles: list[Bundle], payloads: list[bytes]) -> dict[str, float]:
    """Records/s of each ingest stage in this process: decode, plan, SQLStore.ingest."""
    from provml.api._ingest import _batch
    from provml.store.sql import _plan

    records = sum(len(b.records) for b in bundles)
    raw = [gzip.decompress(p) for p in payloads]
    started = time.perf_counter()
    decoded = [_batch(r) for r in raw]
    decode = records / (time.perf_counter() - started)
    started = time.perf_counter()
    for batch in decoded:
        _plan(batch)
    plan = records / (time.perf_counter() - started)
    store = SQLStore(dsn_url)
    store.upgrade()
    started = time.perf_counter()
    for batch in decoded:
        store.ingest(batch)
    ingest = records / (time.perf_counter() - started)
    started = time.perf_counter()
    for batch in decoded:
        store.ingest(batch)
    replay = records / (time.perf_counter() - started)
    store.close()
    return {"decode": decode, "plan": plan, "ingest": ingest, "replay": replay}


class MlflowServer:
    """``mlflow server`` on its own PostgreSQL database (needs the bench venv)."""

    def __init__(self, backend: str, workdir: Path, settle: bool = True) -> None:
        """Start it and wait for its first answer, then (``settle``) for it to go idle."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (workdir / "mlflow.log").open("wb")
        mlflow = Path(sys.executable).with_name("mlflow")
        self.process = subprocess.Popen(
            [
                str(mlflow),
                "server",
                "--backend-store-uri",
                backend,
                "--default-artifact-root",
                str(workdir / "mlflow-artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    if settle:
                        wait_idle(self.process.pid)
                    return
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"mlflow server did not start; see {self.log.name}")
            time.sleep(0.5)

    def stop(self) -> None:
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(30)
        self.process.kill()
        self.log.close()


def mlflow_bodies(url: str, batches_of: list[int]) -> list[bytes]:
    """Request bodies for MLflow's ``log-batch``: 1,000 metrics each, one run per batch.

    One metric per provml record of the batch: the same number of entities, each a row
    in MLflow's metrics table. The runs are created here, before any clock starts, and
    the bodies are made here too, as provml's are: both servers are then timed taking
    ready bodies (MLflow's client spent ~40 us of CPU a metric making its JSON, a sixth
    of what the server and PostgreSQL spent on it). They go to ``log-batch`` of MLflow's
    REST API, the endpoint its ``log_batch`` calls (see :func:`mlflow_ingest`).
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    experiment = client.create_experiment(f"bench-{uuid.uuid4().hex[:8]}")
    now = int(time.time() * 1000)
    bodies = []
    for size in batches_of:
        run = client.create_run(experiment).info.run_id
        for start in range(0, size, 1000):  # log_batch's limit
            metrics = [
                {"key": f"m{j % 50}", "value": j / 7, "timestamp": now, "step": j}
                for j in range(start, min(size, start + 1000))
            ]
            bodies.append(json.dumps({"run_id": run, "metrics": metrics}).encode())
    return bodies


def mlflow_ingest(url: str, bodies: list[bytes], clients: int = 4) -> float:
    """Seconds to POST every body to MLflow's ``log-batch``, ``clients`` at a time."""
    headers = {"Content-Type": "application/json"}
    return post_all(url + "/api/2.0/mlflow/runs/log-batch", bodies, headers, clients)


class RdflibPeer:
    """rdflib-endpoint over rdflib's in-memory store, in a process of its own
    (``rdflib_peer.py``): a query it cannot finish is stopped by killing the process,
    and its memory is capped, so the peer can neither outlive its timeout nor take the
    machine's memory from the benchmark."""

    MAX_GIB = 10.0

    def __init__(self, nquads: Path, timings: dict[str, list[str]], workdir: Path) -> None:
        self.spec = workdir / "rdflib-peer.json"
        self.spec.write_text(
            json.dumps({"nquads": str(nquads), "max_gib": self.MAX_GIB, "timings": timings})
        )
        self.script = Path(__file__).with_name("rdflib_peer.py")
        self.log = workdir / "rdflib-peer.log"
        self.in_process = self._start()

    def _start(self) -> dict:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(self.script), str(self.spec), str(self.port)],
                stdout=subprocess.PIPE,
                stderr=log,
            )
        line = self.process.stdout.readline()  # after loading and the in-process timings
        # With millions of triples loaded, rdflib-endpoint took over a minute more to
        # start answering (2026-12-03, 1M records).
        deadline = time.monotonic() + 600
        while line:
            try:
                HTTP.get(self.url + "/", timeout=5)
                return json.loads(line)
            except httpx.TransportError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    break
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"rdflib-endpoint did not start; see {self.log}")

    def query(self, query: str) -> None:
        response = HTTP.get(
            self.url + "/",
            params={"query": query},
            headers={"Accept": "application/sparql-results+json"},
            timeout=PEER_TIMEOUT,
        )
        response.raise_for_status()

    def restart(self) -> None:
        """A fresh peer after a query that did not finish (it may still be running)."""
        self.stop()
        self._start()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(30)
        self.process.stdout.close()


def oxigraph_direct(path: Path):
    """The endpoint's own on-disk store, opened read-only by bare pyoxigraph.

    Its default graph is the merge of the bundles (``provml.rdf._merged``), which is
    what ``/sparql`` queries too.
    """
    store = pyoxigraph.Store.read_only(str(path))

    def query(text: str) -> bytes:
        answer = store.query(text)
        return answer.serialize(format=pyoxigraph.QueryResultsFormat.JSON)

    return query


# One client, kept open, for every timed request: ``httpx.get`` builds a new client,
# and with it an SSL context, per call, which alone costs tens of milliseconds.
HTTP = httpx.Client(timeout=120)


def _sparql(url: str, query: str) -> None:
    response = HTTP.get(url + "/sparql", params={"query": query})
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.json()['message'][:120]}")


def timed(call, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def alternated(first, second, repeat: int) -> tuple[list[float], list[float]]:
    """Time two calls in turns, first-second then second-first, so that a machine
    whose speed drifts during the run (it swung 2x within one hour on 2026-12-03)
    slows both alike."""
    a, b = [], []
    for round_ in range(repeat):
        pairs = ((first, a), (second, b)) if round_ % 2 == 0 else ((second, b), (first, a))
        for call, samples in pairs:
            samples.extend(timed(call, 1))
    return a, b


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def reference_loop() -> str:
    """CPU seconds of a fixed pure-Python loop, best of three: how fast this machine's
    cores run right now. On this shared virtual machine such a loop has run 1.7 times
    slower minutes apart (0.70 against 1.18 s), and every absolute latency moves with
    it; the ratios, measured side by side, do not."""
    best = float("inf")
    for _ in range(3):
        started, total = time.process_time(), 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.process_time() - started)
    return f"{best:.2f} s CPU for 10M additions"


def p50_p99(samples: list[float]) -> str:
    return "{:.1f} / {:.1f} ms".format(*percentiles(samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument(
        "--workers",
        type=int,
        default=4,
        help="provml serve --workers (default 4: the deployment guide's, and mlflow server's)",
    )
    parser.add_argument("--no-peers", action="store_true", help="skip MLflow and rdflib")
    parser.add_argument(
        "--no-sparql",
        action="store_true",
        help="stop after the REST lineage figures (skip the RDF store and SPARQL comparisons)",
    )
    args = parser.parse_args()

    load_before = uptime()
    run_started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    bundles = generate(args.records)
    total = sum(len(b.records) for b in bundles)
    grouped = batches(bundles)
    payloads = payloads_of(grouped)
    print(f"{total} records in {len(bundles)} workflows, {len(payloads)} batches", file=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="provml-service-bench-"))
    admin_dsn = POSTGRES.replace("postgresql+psycopg://", "postgresql://")
    names = [f"provml_bench_{uuid.uuid4().hex[:8]}" for _ in range(5)]
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        autovacuum = admin.execute("SHOW autovacuum").fetchone()[0]
        for name in names:
            admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES.rsplit("/", 1)[0]
    plain_base = base.replace("postgresql+psycopg://", "postgresql://")
    pg_url, copy_dsn = f"{base}/{names[0]}", f"{plain_base}/{names[1]}"
    scratch_url, mlflow_url = f"{base}/{names[2]}", f"{base}/{names[3]}"
    stored_copy_url = f"{base}/{names[4]}"
    sqlite_url = f"sqlite:///{workdir / 'provml.sqlite'}"
    results: list[tuple[str, str]] = []
    servers: list = []

    def note(name: str, value: str) -> None:
        results.append((name, value))
        print(f"{time.strftime('%H:%M:%S')} {name}: {value}", file=sys.stderr)

    try:
        # ------------------------------------------------------------ ingest
        note("machine speed before the ingest (reference loop)", reference_loop())
        sample = max(1, min(len(payloads), 50_000 // 1000))
        stages = in_process(
            scratch_url, [b for batch in grouped[:sample] for b in batch], payloads[:sample]
        )
        note(
            f"in process, first {sample} batches: decode+check / plan / "
            "SQLStore.ingest (PostgreSQL, 1 connection) / replay",
            " / ".join(f"{stages[k]:,.0f}" for k in ("decode", "plan", "ingest", "replay"))
            + " records/s",
        )
        SQLStore(pg_url).upgrade()
        pg = Server(pg_url, workdir, args.workers)
        servers.append(pg)
        # The peers run on an idle machine: the projection the ingest left behind
        # would otherwise take their cores (and flatter every ratio below).
        seconds, projected_after, cpu, _ = ingest_and_catch_up(pg, payloads, total)
        copy_seconds = copy_ingest(copy_dsn, bundles)
        http_rate, copy_rate = total / seconds, total / copy_seconds
        note(
            f"ingest over HTTP into PostgreSQL, 4 clients, {args.workers} server worker(s)",
            f"{http_rate:,.0f} records/s",
        )
        note(
            "PostgreSQL COPY of the same records (one JSON row each)", f"{copy_rate:,.0f} records/s"
        )
        note(
            "RDF projection of the ingested records caught up, after the last batch, in",
            f"{projected_after:.0f} s ({total / (seconds + projected_after):,.0f} records/s "
            "from the first batch until both stores held every record)",
        )
        per_record = sum(cpu.values())
        note(
            "CPU a record during the HTTP ingest: server request handling / RDF projector "
            "(niced) / ended server threads (RDF bulk loads, niced) / PostgreSQL / clients",
            " / ".join(f"{cpu[part]:.1f}" for part in CPU_PARTS)
            + f" us = {per_record:.1f} us; {per_record * http_rate / 1e6:.2f} of "
            f"{os.cpu_count()} cores busy; at this cost {os.cpu_count()} cores take at most "
            f"{os.cpu_count() / per_record * 1e6:,.0f} records/s",
        )
        note("HTTP ingest / COPY", f"{http_rate / copy_rate:.3f}")
        stored_seconds, stored_rows = copy_stored_rows(f"{plain_base}/{names[0]}", stored_copy_url)
        stored_rate = total / stored_seconds
        note(
            f"PostgreSQL COPY of the rows the ingest stored ({stored_rows:,} rows in "
            f"{len(STORED_TABLES)} tables) into provml's schema, 1 connection",
            f"{stored_rate:,.0f} records/s",
        )
        note("HTTP ingest / COPY of the stored rows", f"{http_rate / stored_rate:.3f}")
        if not args.no_peers:
            mlflow_server = MlflowServer(mlflow_url, workdir)
            servers.append(mlflow_server)
            sizes = [sum(len(b.records) for b in batch) for batch in grouped]
            bodies = mlflow_bodies(mlflow_server.url, sizes)
            before = cpu_snapshot(mlflow_server.process.pid)
            ml_seconds = mlflow_ingest(mlflow_server.url, bodies)
            ml_cpu = cpu_between(before, cpu_snapshot(mlflow_server.process.pid))
            del bodies
            ml_rate = sum(sizes) / ml_seconds
            note(
                "MLflow log_batch to mlflow server on PostgreSQL, 4 clients",
                f"{ml_rate:,.0f} metrics/s",
            )
            note("HTTP ingest / MLflow log_batch", f"{http_rate / ml_rate:.1f}x")
            ml_per_metric = {part: used / sum(sizes) * 1e6 for part, used in ml_cpu.items()}
            ml_total = sum(ml_per_metric.values())
            ml_postgres, ml_clients = ml_per_metric["postgres"], ml_per_metric["clients"]
            note(
                "CPU a metric during MLflow's ingest: server (every process) / PostgreSQL / "
                "clients",
                f"{ml_total - ml_postgres - ml_clients:.1f} / {ml_postgres:.1f} / "
                f"{ml_clients:.1f} us = {ml_total:.1f} us; "
                f"{ml_total * ml_rate / 1e6:.2f} cores busy",
            )
            note(
                "CPU a MLflow metric / CPU a provml record (the ingest ratio where both "
                "fill the cores)",
                f"{ml_total / per_record:.1f}x",
            )
            mlflow_server.stop()
            servers.remove(mlflow_server)

        store = SQLStore(sqlite_url)
        store.upgrade()
        # The SQLite server answers only the REST lineage (SQL); every SPARQL figure
        # comes from the PostgreSQL server's RDF store. Projecting the same records a
        # second time would only compete for the two cores, so its RDF store is made
        # complete while the SQL store is still empty, and the outbox is cleared after
        # the load. (A store the server finds incomplete, e.g. an empty directory not
        # made by provml, it rebuilds from SQL: that ran through the lineage timings
        # of earlier runs: RESULTS.md, Run 8.)
        empty_rdf = workdir / "oxigraph-sqlite-unused"
        unused = RDFStore.open(str(empty_rdf))
        unused.rebuild(store)
        unused.close()
        started = time.perf_counter()
        for batch in grouped:
            store.ingest(batch)
        note(
            "SQLStore.ingest into SQLite in process (loading the SQLite side)",
            f"{total / (time.perf_counter() - started):,.0f} records/s",
        )
        while pending := store.outbox_pending(10_000):
            store.outbox_done(row.seq for row in pending)
        store.close()
        # One process on SQLite: several writing one file is the trap the deployment
        # guide warns of (this one only answers the lineage timings).
        lite = Server(sqlite_url, workdir, 1, rdf=empty_rdf)
        servers.append(lite)
        # Measure with the servers idle: a projection catching up competes for the CPU.
        pg.wait_projected()
        lite.wait_projected()
        if autovacuum != "on":
            # Autovacuum is off on this server: do once what it would do after a bulk
            # load (statistics, visibility map for index-only scans).
            with psycopg.connect(f"{plain_base}/{names[0]}", autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")

        # ------------------------------------------------------------ lineage
        note("machine speed before the lineage timings (reference loop)", reference_loop())
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
        answers: list[bytes] = []
        for label, server in (("PostgreSQL", pg), ("SQLite", lite)):

            def up_call(s=server) -> None:
                # Timed to the last byte of the answer; parsing it is the client's work
                # and comes after the timings (below).
                response = HTTP.get(
                    s.url + "/api/v1/lineage",
                    params={"id": rng.choice(versions), "depth": 20},
                    timeout=60,
                )
                response.raise_for_status()
                answers.append(response.content)

            # The first calls after the load read pages no query has touched yet; they
            # are reported apart from the same number of calls after them (steady state).
            cold = timed(up_call, args.repeat)
            up = timed(up_call, args.repeat)
            down = timed(
                lambda s=server: HTTP.get(
                    s.url + "/api/v1/lineage", params={"id": raw, "direction": "impact"}, timeout=60
                ).raise_for_status(),
                max(5, args.repeat // 5),
            )
            note(
                f"REST lineage upstream depth 20, {label}, first {args.repeat} calls (p50 / p99)",
                p50_p99(cold),
            )
            note(
                f"REST lineage upstream depth 20, {label}, the {args.repeat} after (p50 / p99)",
                p50_p99(up),
            )
            note(
                f"REST impact of a raw file (max_nodes 10,000 default), {label} (p50 / p99)",
                p50_p99(down),
            )
        sizes_seen = [len(json.loads(body)["nodes"]) for body in answers]
        note(
            "nodes in an upstream depth-20 answer (median)", f"{statistics.median(sizes_seen):.0f}"
        )
        note(
            "bytes of an upstream depth-20 answer (median)",
            f"{statistics.median(len(body) for body in answers):,.0f}",
        )

        if not args.no_sparql:  # else the ingest and REST figures only
            # Oxigraph directly: pyoxigraph in memory, loaded with the quads the endpoint's
            # own on-disk store holds (the same data, read through no provml code).
            on_disk = pyoxigraph.Store.read_only(str(workdir / f"oxigraph-{pg.port}"))
            memory = pyoxigraph.Store()
            memory.bulk_extend(on_disk)
            # Each bundle's triples are in its named graph and once more in the default
            # graph, their merge (provml.rdf._merged), which a query with no dataset reads.
            named = [q for q in memory if not isinstance(q.graph_name, pyoxigraph.DefaultGraph)]
            note(
                "quads in the RDF store (named graphs / with the default graph)",
                f"{len(named):,} / {len(memory):,}",
            )

            def ox(text: str) -> list:
                return list(memory.query(text))

            def up_q(version: str) -> str:
                return f"SELECT DISTINCT ?x WHERE {{ <{version}> {PATH}+ ?x }}"

            down_q = f"SELECT DISTINCT ?x WHERE {{ ?x {PATH}+ <{raw}> }}"
            ox_up = timed(lambda: ox(up_q(rng.choice(versions))), args.repeat)
            ox_down = timed(lambda: ox(down_q), max(5, args.repeat // 5))
            note(
                "SPARQL property path upstream (unbounded), Oxigraph in memory (p50 / p99)",
                p50_p99(ox_up),
            )
            note(
                "SPARQL property path impact (unbounded), Oxigraph in memory (p50 / p99)",
                p50_p99(ox_down),
            )
            peer = None
            if not args.no_peers:
                # The bundles' graphs only; rdflib's union of them is a set, the merge.
                nquads = workdir / "bundles.nq"
                nquads.write_bytes(pyoxigraph.serialize(named, format=pyoxigraph.RdfFormat.N_QUADS))
                few = 3
                peer = RdflibPeer(
                    nquads,
                    {
                        "upstream": [up_q(rng.choice(versions)) for _ in range(few)],
                        "impact": [down_q] * few,
                    },
                    workdir,
                )
                servers.append(peer)
                for label, samples in peer.in_process["timings"].items():
                    name = f"SPARQL property path {label}, rdflib in memory (p50 / p99 of {few})"
                    note(name, samples if isinstance(samples, str) else p50_p99(samples))
            del memory, named

            # ------------------------------------------------------------ SPARQL endpoint
            direct = oxigraph_direct(workdir / f"oxigraph-{pg.port}")
            model = EX + "model/0"
            documented = {
                "raw-data-of-model-version": EXAMPLE_BY_NAME["raw-data-of-model-version"].render(
                    version=versions[-1]
                ),
                "models-affected-by-file": EXAMPLE_BY_NAME["models-affected-by-file"].render(
                    file=raw
                ),
                "hyperparameters-and-final-metrics": EXAMPLE_BY_NAME[
                    "hyperparameters-and-final-metrics"
                ].render(model=model),
            }
            runs = max(5, args.repeat // 6)
            endpoint_p50: dict[str, float] = {}
            for name, query in documented.items():
                try:
                    # Warm workers, as the direct store is warm: each server process
                    # answers the query a first time, on new connections (any process
                    # may take one), before the timed runs.
                    for _ in range(2 * args.workers):
                        with httpx.Client(timeout=120) as fresh:
                            fresh.get(pg.url + "/sparql", params={"query": query})
                    direct(query)
                    endpoint, bare = alternated(
                        lambda q=query: _sparql(pg.url, q), lambda q=query: direct(q), runs
                    )
                except RuntimeError as exc:
                    note(f"/sparql: {name}", str(exc))
                    continue
                p50_endpoint, p50_direct = percentiles(endpoint)[0], percentiles(bare)[0]
                endpoint_p50[name] = p50_endpoint
                note(
                    f"/sparql vs pyoxigraph on the same on-disk store: {name} (p50)",
                    f"{p50_endpoint:.1f} vs {p50_direct:.1f} ms ({p50_endpoint / p50_direct:.2f}x)",
                )
            # The peer last, in its own process: one it cannot finish in time is killed,
            # and a fresh one started for the next query (only then: at 1M records a
            # start reloads the quads and repeats the in-process timings, minutes).
            stuck = False
            for name, query in documented.items():
                if peer is None:
                    break
                if name not in endpoint_p50:  # /sparql gave no answer to compare with
                    continue
                if stuck:
                    peer.restart()
                    stuck = False
                try:
                    slow = timed(lambda q=query: peer.query(q), 1)
                except httpx.HTTPStatusError as exc:
                    status, text = exc.response.status_code, exc.response.text[:160]
                    note(f"rdflib-endpoint: {name}", f"no answer: HTTP {status}: {text}")
                    continue
                except httpx.TransportError as exc:  # over the timeout, or the peer died
                    died = peer.process.poll() is not None
                    note(
                        f"rdflib-endpoint: {name}",
                        "no answer: the peer process died (see its log)"
                        if died
                        else f"no answer within {PEER_TIMEOUT} s ({type(exc).__name__})",
                    )
                    stuck = True
                    continue
                p50_endpoint = endpoint_p50[name]
                note(
                    f"rdflib-endpoint vs /sparql: {name} (1 run vs p50)",
                    f"{slow[0] * 1000:.1f} vs {p50_endpoint:.1f} ms "
                    f"(/sparql {slow[0] * 1000 / p50_endpoint:.1f}x faster)",
                )
    finally:
        for server in servers:
            server.stop()
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            for name in names:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    load_after = uptime()
    print(
        f"\n{total:,} records, {len(bundles):,} workflows, {os.cpu_count()} cores (shared), "
        f"run started {run_started}, PostgreSQL autovacuum {autovacuum}\n"
    )
    print(f"load before: {load_before}\nload after:  {load_after}\n")
    print("| measurement | result |\n|---|---|")
    for name, value in results:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
