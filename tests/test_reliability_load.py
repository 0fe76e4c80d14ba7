"""Load: 8 capture clients plus lineage and SPARQL readers against one ``provml serve``
on PostgreSQL for three minutes (``PROVML_LOAD_SECONDS`` sets it; ``bench/load/load.py
--duration`` runs by hand).

Two tests. The first runs the RDF projector in process, one growing bundle per client,
and checks that its RSS levels off after a warm-up: what record-level projection and
the memtable flush (provml/rdf.py) guarantee. The second is the load: no errors, every
captured record stored, latency percentiles printed; a sampler here reads the server's
RSS and the records it acknowledged (``provml_ingest_records_total``) every half second,
and after a warm-up (the first third of the ingest) the growth and its slope against
the records acknowledged are bounded. Once the projector has caught up, a read-only
tail (readers alone, 20 s) must be flat, so no request leaks.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from test_reliability_crash import migrated

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "load"))
from load import TOKEN, children, print_figures, rss_kib, run_load

DURATION = float(os.environ.get("PROVML_LOAD_SECONDS", "180"))  # "a few minutes" (issue 7)
WARM_UP = 1 / 3  # of the ingest phase: first allocations, caches filling, RocksDB's first flushes
# Bounds on the server after the warm-up, each client writing one bundle all run: the
# projector adds each batch's records and the memory levels off, within RocksDB's
# flush and compaction sawtooth. Measured over 180 s: 1.7 MiB per 10 000 records and
# +13.9 MiB (over 60 s 15-32 and +45-84, the warm-up then too short on a busy machine);
# before record-level projection, when each batch re-projected its whole bundle, 29-47
# and +81-109 over 60 s. Since the default graph holds the merge of the bundles (every
# triple written twice, so twice the store to hold in RocksDB): 11.4 and
# +88 over 180 s. The bounds leave room for the machine's noise.
MAX_SLOPE_MIB_PER_10K = 25.0
MAX_GROWTH_MIB = 150.0
MAX_READ_TAIL_GROWTH = 1.05  # measured 1.000 once the projector has caught up
PROJECTOR_RECORDS = 24_000
MAX_PROJECTOR_SLOPE_MIB_PER_10K = 15.0  # measured -11.6; 29 without the memtable flush
_RECORDS_TOTAL = re.compile(r"^provml_ingest_records_total\{[^}]*\} (\S+)$", re.M)


@dataclass
class ServerSampler:
    """Samples the ``provml serve`` child of this process: (seconds, RSS KiB, records acked)."""

    samples: list[tuple[float, int, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def _server(self) -> tuple[int, int] | None:
        for pid in children(os.getpid()):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in argv and b"--port" in argv:
                return pid, int(argv[argv.index(b"--port") + 1])
        return None

    def run(self) -> None:
        found = None
        while found is None and not self.stop.wait(0.1):
            found = self._server()
        if found is None:
            return
        pid, port = found
        url = f"http://127.0.0.1:{port}/metrics"
        started = time.monotonic()
        with httpx.Client(timeout=5, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            while not self.stop.wait(0.5):
                try:
                    text = client.get(url).text
                except httpx.HTTPError:
                    continue  # starting or stopping
                acked = sum(int(float(v)) for v in _RECORDS_TOTAL.findall(text))
                rss = rss_kib(pid)
                if rss:
                    self.samples.append((time.monotonic() - started, rss, acked))


def ingest_memory_figures(samples: list[tuple[float, int, int]]) -> dict[str, object]:
    """The ingest phase (records still arriving), its warm-up cut off, as figures."""
    last = max(acked for _, _, acked in samples)
    # The ingest phase ends when the acknowledged count stops moving.
    end = next(i for i, (_, _, acked) in enumerate(samples) if acked == last) + 1
    ingest = samples[:end]
    cut = ingest[0][0] + WARM_UP * (ingest[-1][0] - ingest[0][0])
    steady = [s for s in ingest if s[0] >= cut]
    mib = [rss / 1024 for _, rss, _ in steady]
    acked = [a for _, _, a in steady]
    window = max(1, len(mib) // 10)  # medians of the first and last tenth: no single blip
    slope = statistics.linear_regression(acked, mib).slope * 10_000
    return {
        "records_acknowledged": last,
        "ingest_samples": len(ingest),
        "rss_mib_ingest_every_10th_sample": [round(s[1] / 1024, 1) for s in ingest[::10]],
        "records_at_warm_up_end": acked[0],
        "rss_mib_at_warm_up_end": round(statistics.median(mib[:window]), 1),
        "rss_mib_at_ingest_end": round(statistics.median(mib[-window:]), 1),
        "rss_mib_growth_after_warm_up": round(
            statistics.median(mib[-window:]) - statistics.median(mib[:window]), 1
        ),
        "rss_mib_per_10k_records_after_warm_up": round(slope, 1),
    }


def own_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def training_records(run: str, n: int) -> list:
    """What one ``@provml.training`` call of the load client records, about 42 records."""
    from datetime import UTC, datetime, timedelta

    from provml.records import Element, Relation

    ml = "https://provml.local/load/ml#"
    t0 = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=n)
    activity = f"{run}/training/{n}"
    records = [Element("activity", activity, ((ml + "epochs", 10),), t0, t0 + timedelta(seconds=1))]
    for epoch in range(10):
        section = f"{activity}/epoch/{epoch}"
        at = t0 + timedelta(milliseconds=epoch)
        records += [
            Element("activity", section, ((ml + "step", epoch),), at, at),
            Relation("wasInformedBy", section, activity),
        ]
        for metric, value in (("loss", 1 / (epoch + 1)), ("accuracy", epoch / 10)):
            records += [
                Element("entity", f"{section}/{metric}", ((ml + "value", value),)),
                Relation("wasGeneratedBy", f"{section}/{metric}", section, time=at),
            ]
    version = f"{run}/model/v/{n}"
    records += [
        Element("entity", version, ((ml + "version", n),)),
        Relation("wasGeneratedBy", version, activity, time=t0 + timedelta(seconds=1)),
    ]
    return records


def projector_samples(directory: str) -> list[tuple[int, float]]:
    """Ingest into SQLite and project into Oxigraph, one growing bundle per client;
    (records so far, RSS MiB) after each round."""
    from provml.rdf import RDFStore
    from provml.records import Bundle
    from provml.store.sql import SQLStore

    samples: list[tuple[int, float]] = []
    with (
        SQLStore(f"sqlite:///{Path(directory) / 'records.db'}") as sql,
        RDFStore.open(Path(directory) / "oxigraph") as rdf,
    ):
        sql.upgrade()
        rdf.project(sql)
        records, n = 0, 0
        while records < PROJECTOR_RECORDS:
            n += 1
            for client in range(8):  # one run (bundle) per client, growing all along
                run = f"https://provml.local/load/c{client}/run"
                batch = training_records(run, n)
                for part in (batch[:15], batch[15:30], batch[30:]):
                    sql.ingest([Bundle(run, tuple(part))])
                records += len(batch)
            while rdf.project(sql):
                pass
            samples.append((records, own_rss_mib()))
    return samples


def test_the_rdf_projectors_memory_levels_off_under_sustained_projection(tmp_path):
    # In a fresh process: the test process's own heap (thousands of tests before this
    # one) would blur the figure.
    here = Path(__file__).resolve().parent
    code = (
        f"import json, sys; sys.path[:0] = [{str(here)!r}, {str(here.parent)!r}]; "
        "import test_reliability_load as t; "
        f"print(json.dumps(t.projector_samples({str(tmp_path)!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    samples = [tuple(s) for s in json.loads(done.stdout.splitlines()[-1])]
    records = samples[-1][0]
    steady = samples[len(samples) // 3 :]
    slope = statistics.linear_regression(*zip(*steady, strict=True)).slope * 10_000
    print(f"projector: {records} records, {len(samples)} rounds")
    print(f"  rss_mib every 10th round: {[round(r, 1) for _, r in samples[::10]]}")
    print(f"  rss_mib_per_10k_records_after_warm_up: {slope:.1f}")
    assert slope <= MAX_PROJECTOR_SLOPE_MIB_PER_10K


@pytest.mark.postgres
def test_a_sustained_load_has_no_errors_loses_nothing_and_keeps_server_memory_flat(
    postgres_url, tmp_path
):
    sampler = ServerSampler()
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    try:
        figures = run_load(migrated(postgres_url), tmp_path, duration=DURATION, clients=8)
    finally:
        sampler.stop.set()
        thread.join(10)
    memory = ingest_memory_figures(sampler.samples)
    print(f"load: 8 capture clients + lineage, impact and SPARQL readers for {DURATION:g} s")
    print_figures(figures)
    print_figures(memory)
    assert figures["client_exits"] == [0] * 8
    assert figures["all_delivered"]
    assert figures["ingest_failures"] == 0 and figures["records_spooled"] == 0
    assert figures["records_dropped"] == 0
    assert figures["reader_error_count"] == 0, figures["reader_errors"]
    # Captured counts every description sent (a run's activity at its start and its end);
    # stored counts records, each description merged into one.
    assert figures["records_stored"] == figures["records_distinct_delivered"] > 0
    assert figures["lost"] == 0 and figures["duplicates"] == 0
    assert figures["stored_never_delivered"] == 0
    assert figures["outbox_pending_after"] == 0
    for reader in ("ingest", "lineage", "impact", "sparql"):
        assert figures[reader]["n"] > 10
    assert memory["records_acknowledged"] >= figures["records_captured"]  # + the seed
    assert memory["ingest_samples"] > 40
    assert memory["rss_mib_per_10k_records_after_warm_up"] <= MAX_SLOPE_MIB_PER_10K
    assert memory["rss_mib_growth_after_warm_up"] <= MAX_GROWTH_MIB
    assert figures["rss_growth_read_tail"] is not None
    assert figures["rss_growth_read_tail"] <= MAX_READ_TAIL_GROWTH
