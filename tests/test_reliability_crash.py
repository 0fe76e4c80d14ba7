"""Crash during ingest: ``provml serve`` on PostgreSQL is SIGKILLed mid-stream, three
times, and restarted on the same port while capture clients keep sending.

Afterwards every batch the server acknowledged is stored, no batch is stored in part
(checked while the server is dead, after each kill), the clients' spools replay what
was not acknowledged, and the store holds every captured record exactly once.

The helpers here (a restartable server, the capture client job, record keys) are used
by the other reliability tests too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_server import TOKEN, free_port

from provml.records import Element
from provml.store.sql import SQLStore

# ------------------------------------------------------------------------ the server


class Server:
    """``provml serve`` on a fixed port that can be killed and started again."""

    def __init__(self, store: str, tmp_path: Path, port: int | None = None, **env: str) -> None:
        self.store = store
        self.tmp_path = tmp_path
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PROVML_WRITE_TOKEN": TOKEN,
            "PROVML_RDF": str(tmp_path / "oxigraph"),
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_path = tmp_path / "serve.log"

    def start(self, timeout: float = 60) -> float:
        """Start and wait until /readyz is green; the seconds it took."""
        started = time.monotonic()
        command = [sys.executable, "-m", "provml.cli", "serve", "--store", self.store]
        command += ["--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.starts += 1
        while True:
            if self.process.poll() is not None:
                raise AssertionError(self.log_path.read_text()[-3000:])
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            assert time.monotonic() - started < timeout, self.log_path.read_text()[-3000:]
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int | None:
        """SIGTERM and wait; the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.terminate()
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def migrated(url: str) -> str:
    with SQLStore(url) as store:
        store.upgrade()  # what `provml db upgrade` runs
    return url


# ------------------------------------------------------------------ the capture client

#: A capture job that notes every batch it tries to send, every batch the server
#: acknowledged and every batch it spooled, by record keys (see ``record_key``).
CLIENT_JOB = textwrap.dedent(
    """
    import json, os, sys, time, uuid
    import provml
    from provml.capture import _export, _spool

    endpoint, token, spool_dir, out, name, steps, delay = sys.argv[1:8]
    steps, delay = int(steps), float(delay)
    os.makedirs(out, exist_ok=True)
    notes = open(os.path.join(out, "notes.jsonl"), "a", buffering=1)

    def key(bundle_id, r):
        if r.get("kind") in ("entity", "activity", "agent"):
            return ["e", bundle_id, r["id"]]
        return ["r", bundle_id, r["kind"], r.get("subject"), r.get("object"), r.get("id")]

    def keys_of(dicts):
        return [key(b["id"], r) for b in dicts for r in b["records"]]

    original_post = _export.HttpDestination.post

    def post(self, payload):
        batch = str(uuid.uuid4())
        notes.write(json.dumps({"try": batch, "keys": keys_of(payload["bundles"])}) + "\\n")
        started = time.monotonic()
        try:
            original_post(self, payload)
        except Exception as exc:
            notes.write(json.dumps({"failed": batch, "why": str(exc)[:200]}) + "\\n")
            raise
        notes.write(json.dumps({"ack": batch, "seconds": time.monotonic() - started}) + "\\n")

    _export.HttpDestination.post = post
    original_append = _spool.Spool.append

    def append(self, payload):
        original_append(self, payload)
        notes.write(json.dumps({"spooled": keys_of(payload["bundles"])}) + "\\n")

    _spool.Spool.append = append

    provml.init(name, endpoint=endpoint, token=token, spool_dir=spool_dir, batch_size=25,
                schedule_delay=0.2, export_timeout=3, exit_timeout=120)

    @provml.training
    def train(learning_rate=0.01):
        for epoch in range(steps):
            with provml.section("epoch", step=epoch):
                provml.log_metric("loss", 1.0 / (epoch + 1))
            time.sleep(delay)
        provml.log_model_version(name, 1)

    train()
    from provml.capture import _state
    from provml.capture._provider import stats
    provider = _state.provider
    delivered = provml.shutdown(120)
    s = stats(provider)
    with open(os.path.join(out, "stats.json"), "w") as f:
        json.dump({"delivered": delivered, "captured": s.captured, "exported": s.exported,
                   "spooled": s.spooled, "replayed": s.replayed, "dropped": dict(s.dropped)}, f)
    """
)


def start_client(
    url: str, tmp_path: Path, name: str, steps: int, delay: float, token: str = TOKEN
) -> subprocess.Popen[bytes]:
    job = tmp_path / "client_job.py"
    if not job.exists():
        job.write_text(CLIENT_JOB)
    out = tmp_path / name
    out.mkdir(exist_ok=True)
    log = (out / "client.log").open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            str(job),
            url,
            token,
            str(out / "spool"),
            str(out),
            name,
            str(steps),
            str(delay),
        ],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@dataclass
class ClientReport:
    tried: dict[str, list[tuple]]  # batch -> record keys
    acked: set[str]
    spooled: list[tuple]
    stats: dict[str, Any]

    @property
    def captured(self) -> set[tuple]:
        """Every record the client handed to the server or to its spool."""
        keys = {k for ks in self.tried.values() for k in ks}
        return keys | set(self.spooled)

    @property
    def acknowledged(self) -> set[tuple]:
        return {k for batch in self.acked for k in self.tried[batch]}


def read_client(out: Path) -> ClientReport:
    tried: dict[str, list[tuple]] = {}
    acked: set[str] = set()
    spooled: list[tuple] = []
    notes = out / "notes.jsonl"
    for line in notes.read_text().splitlines() if notes.exists() else []:
        note = json.loads(line)
        if "try" in note:
            tried[note["try"]] = [tuple(k) for k in note["keys"]]
        elif "ack" in note:
            acked.add(note["ack"])
        elif "spooled" in note:
            spooled.extend(tuple(k) for k in note["spooled"])
    stats_path = out / "stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    return ClientReport(tried, acked, spooled, stats)


def record_key(bundle_id: str, record: Any) -> tuple:
    if isinstance(record, Element):
        return ("e", bundle_id, record.id)
    return ("r", bundle_id, record.kind, record.subject, record.object, record.id)


def stored_records(store: SQLStore) -> list[tuple]:
    """Every stored record's key, one entry per stored row."""
    return [record_key(b.id, r) for b in store.iter_bundles() for r in b.records]


def wait_clients(clients: list[subprocess.Popen[bytes]], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    for client in clients:
        try:
            codes.append(client.wait(max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            client.kill()
            codes.append(client.wait())
    return codes


def summarise(reports: list[ClientReport], stored: list[tuple]) -> dict[str, int]:
    captured = set().union(*(r.captured for r in reports))
    acknowledged = set().union(*(r.acknowledged for r in reports))
    counts = Counter(stored)
    stored_set = set(stored)
    mine = stored_set  # a fresh database: everything in it came from these clients
    return {
        "records captured": len(captured),
        "batches sent": sum(len(r.tried) for r in reports),
        "batches acknowledged": sum(len(r.acked) for r in reports),
        "records acknowledged": len(acknowledged),
        "records spooled": len({k for r in reports for k in r.spooled}),
        "records replayed": sum(r.stats.get("replayed", 0) for r in reports),
        "records stored": len(mine),
        "duplicates": sum(n - 1 for n in counts.values() if n > 1),
        "lost (captured, not stored)": len(captured - stored_set),
        "lost (acknowledged, not stored)": len(acknowledged - stored_set),
        "unexpected (stored, never captured)": len(mine - captured),
        "dropped": sum(sum(r.stats.get("dropped", {}).values()) for r in reports),
    }


def batches_in_part(reports: list[ClientReport], stored: set[tuple]) -> list[str]:
    """Batches of which some records but not all are stored, counting only the records
    that no other batch carries (a run's activity is described in several batches)."""
    seen: Counter[tuple] = Counter(k for r in reports for ks in r.tried.values() for k in set(ks))
    partial = []
    for report in reports:
        for batch, keys in report.tried.items():
            own = {k for k in keys if seen[k] == 1}
            present = own & stored
            if present and present != own:
                partial.append(f"{batch}: {len(present)} of {len(own)} records")
    return partial


# ------------------------------------------------------------------------------ test


@pytest.mark.postgres
def test_acknowledged_batches_survive_three_sigkills_and_every_record_is_stored_once(
    postgres_url, tmp_path
):
    server = Server(migrated(postgres_url), tmp_path)
    server.start()
    clients = [start_client(server.url, tmp_path, f"crash-client-{n}", 300, 0.05) for n in range(3)]
    outs = [tmp_path / f"crash-client-{n}" for n in range(3)]
    partial: list[str] = []
    restarts = []
    store = SQLStore(postgres_url)
    try:
        for _ in range(3):
            time.sleep(1.5)
            server.kill()
            # While it is dead: whatever was committed is whole batches only.
            partial += batches_in_part([read_client(o) for o in outs], set(stored_records(store)))
            time.sleep(0.5)
            restarts.append(server.start())
        codes = wait_clients(clients, 180)
        reports = [read_client(o) for o in outs]
        stored = stored_records(store)
        partial += batches_in_part(reports, set(stored))
    finally:
        server.stop()
        store.close()
    figures = summarise(reports, stored)
    print(f"crash during ingest: kills 3, restarts {[f'{s:.1f}s' for s in restarts]}")
    for name, value in figures.items():
        print(f"  {name}: {value}")
    print(f"  client exits: {codes}, batches in part: {len(partial)}")
    assert codes == [0, 0, 0], [(o / "client.log").read_text()[-2000:] for o in outs]
    assert all(r.stats["delivered"] for r in reports), [r.stats for r in reports]
    assert figures["batches sent"] > figures["batches acknowledged"]  # some were cut off
    assert figures["records spooled"] > 0 and figures["records replayed"] > 0
    assert partial == []
    assert figures["lost (acknowledged, not stored)"] == 0
    assert figures["lost (captured, not stored)"] == 0
    assert figures["duplicates"] == 0 and figures["unexpected (stored, never captured)"] == 0
    assert figures["dropped"] == 0
    assert not any(os.listdir(o / "spool") for o in outs if (o / "spool").exists())
