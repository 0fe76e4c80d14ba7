"""Capture's way out: HTTP endpoint, SQL store, spool and replay, fork, subprocesses.

The endpoint is a real HTTP server on 127.0.0.1 (a thread in this process) that
decodes and collects what capture posts; the store is the real SQL store. Workflows
that must be separate processes (exit hooks, blocked imports, cross-workflow lineage)
run as subprocesses of the test.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import provml.capture as capture
from provml import ids
from provml.capture import _state
from provml.records import bundle_from_dict


@pytest.fixture(autouse=True)
def no_capture_left_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("PROVML_SPOOL", str(tmp_path / "default-spool"))
    yield
    capture.shutdown(timeout=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Collector:
    """A provml-like ingest endpoint: decodes gzip JSON posts and keeps them."""

    def __init__(self, port: int = 0, status: int = 200, delay: float = 0.0) -> None:
        self.status = status
        self.delay = delay
        self.payloads: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                time.sleep(collector.delay)
                if collector.status < 300:
                    collector.payloads.append(json.loads(body))
                collector.headers.append(dict(self.headers))
                collector.paths.append(self.path)
                self.send_response(collector.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def bundles(self) -> list[dict]:
        return [b for p in self.payloads for b in p["bundles"]]

    def records(self) -> list[tuple[str, str]]:
        """Every record received, as (bundle id, canonical JSON), duplicates kept."""
        return [
            (b["id"], json.dumps(r, sort_keys=True)) for b in self.bundles for r in b["records"]
        ]

    def elements(self, ml_class: str | None = None) -> list[dict]:
        out = []
        for b in self.bundles:
            for r in b["records"]:
                if r["kind"] in ("entity", "activity", "agent"):
                    types = [v for k, v in r.get("attributes", []) if k.endswith("#type")]
                    if (
                        ml_class is None
                        or {"@id": "https://w3id.org/provml/ns#" + ml_class} in types
                    ):
                        out.append({**r, "bundle": b["id"]})
        return out

    def relations(self, kind: str) -> list[dict]:
        return [r for b in self.bundles for r in b["records"] if r["kind"] == kind]


@pytest.fixture
def collector():
    c = Collector()
    yield c
    capture.shutdown(timeout=5)
    c.stop()


def label(record: dict) -> str | None:
    for k, v in record.get("attributes", []):
        if k.endswith("#label"):
            return v
    return None


def run_python(code: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done


# --------------------------------------------------------------------- HTTP


def test_records_reach_the_endpoint_as_gzip_json_with_the_bearer_token(collector, tmp_path):
    run = capture.init("w", endpoint=collector.url, token="s3cret", spool_dir=tmp_path / "spool")

    @capture.training
    def train(epochs: int = 2) -> None:
        capture.log_metric("loss", 0.5)

    train()
    assert capture.flush() is True
    assert set(collector.paths) == {"/api/v1/records"}
    assert {h["Content-Encoding"] for h in collector.headers} == {"gzip"}
    assert {h["Authorization"] for h in collector.headers} == {"Bearer s3cret"}
    for b in collector.bundles:
        assert bundle_from_dict(b).id == run.bundle
    assert [label(e) for e in collector.elements("TrainingExecution")] == ["train"]
    s = capture.stats()
    assert s.exported == s.captured == len(collector.records())
    assert s.spooled == 0


def test_a_down_endpoint_spools_and_every_record_arrives_once_in_order_when_it_is_back(
    tmp_path,
):
    port = free_port()
    spool = tmp_path / "spool"
    capture.init("w", endpoint=f"http://127.0.0.1:{port}", spool_dir=spool)

    @capture.training
    def train(step: int) -> int:
        capture.log_metric("loss", 1.0 / step, step=step)
        return step

    results = []
    for step in range(1, 4):
        results.append(train(step))
        assert capture.flush() is False  # one batch per step, each spooled
    assert results == [1, 2, 3]
    s = capture.stats()
    assert s.exported == 0 and s.spooled == s.captured > 0
    assert len(list(spool.glob("*.jsonl"))) == 1

    collector = Collector(port=port)
    try:
        assert capture.flush() is True
        received = collector.records()
        assert all(n == 1 for n in Counter(received).values())
        assert len(received) == s.captured
        steps = [
            v
            for b in collector.bundles
            for r in b["records"]
            for k, v in r.get("attributes", [])
            if k.endswith("#step")
        ]
        assert steps == [1, 2, 3]
        assert capture.stats().replayed == s.spooled
        assert list(spool.glob("*.jsonl")) == []
        # New records go straight through now.
        train(4)
        assert capture.flush() is True
        assert capture.stats().exported > 0
        assert all(n == 1 for n in Counter(collector.records()).values())
    finally:
        collector.stop()


def test_a_slow_endpoint_times_out_and_the_batch_is_spooled_then_replayed(tmp_path):
    collector = Collector(delay=1.5)
    try:
        capture.init("w", endpoint=collector.url, spool_dir=tmp_path / "spool", export_timeout=0.3)
        with capture.training("fit"):
            pass
        assert capture.flush() is False
        assert capture.stats().spooled > 0
        collector.delay = 0
        assert capture.flush() is True
        assert capture.stats().replayed == capture.stats().spooled
        assert "fit" in [label(e) for e in collector.elements("TrainingExecution")]
    finally:
        collector.stop()


def test_an_endpoint_refusing_a_batch_drops_it_and_says_why(tmp_path, caplog):
    collector = Collector(status=422)
    try:
        capture.init("w", endpoint=collector.url, spool_dir=tmp_path / "spool")
        with capture.training("fit"):
            pass
        capture.flush()
        s = capture.stats()
        assert s.dropped == {"refused by the destination": s.captured}
        assert s.spooled == 0
        assert any("refused" in r.getMessage() for r in caplog.records)
    finally:
        collector.stop()


def test_an_unwritable_spool_drops_batches_counts_the_reason_and_the_job_goes_on(tmp_path, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    capture.init("w", endpoint=f"http://127.0.0.1:{free_port()}", spool_dir=blocker / "spool")

    @capture.training
    def train() -> str:
        return "done"

    assert train() == "done"
    assert capture.flush() is False
    (reason,) = capture.stats().dropped
    assert reason.startswith("spool unwritable")
    assert len([r for r in caplog.records if "cannot write the spool" in r.getMessage()]) == 1


# ------------------------------------------------------------- processes

CHILD_WORKFLOW = """
    import provml.capture as capture
    capture.init("child-workflow")

    @capture.validation
    def check(n: int) -> int:
        return n

    check(3)
"""


def test_a_subprocess_joins_the_run_under_the_current_activity_via_child_env(collector):
    run = capture.init("parent-workflow", endpoint=collector.url)
    with capture.training("launch") as launch:
        env = capture.context.child_env()
        env["PROVML_ENDPOINT"] = collector.url
        done = run_python(CHILD_WORKFLOW, env=env)
    assert done.returncode == 0, done.stderr
    capture.shutdown()
    (child,) = collector.elements("ValidationExecution")
    assert child["bundle"] == run.bundle
    informed = {(r["subject"], r["object"]) for r in collector.relations("wasInformedBy")}
    assert (child["id"], launch.iri) in informed
    # The child joined the run: only the parent describes the WorkflowExecution.
    assert {e["id"] for e in collector.elements("WorkflowExecution")} == {run.iri}


def test_the_exit_hook_delivers_queued_records_and_marks_a_crashed_run_failed(collector):
    done = run_python(
        """
        import provml.capture as capture
        capture.init("crashing")

        @capture.training
        def train():
            return 1

        train()
        raise RuntimeError("main failed")
        """,
        env={**os.environ, "PROVML_ENDPOINT": collector.url},
    )
    assert done.returncode == 1 and "main failed" in done.stderr
    started, ended = collector.elements("WorkflowExecution")
    assert started["id"] == ended["id"] and "endTime" not in started
    attrs = dict(ended["attributes"])
    assert attrs["https://w3id.org/provml/ns#status"] == "failed"
    assert attrs["https://w3id.org/provml/ns#errorType"] == "RuntimeError"
    assert [label(e) for e in collector.elements("TrainingExecution")] == ["train"]


def test_a_spool_left_by_an_exited_process_is_replayed_by_the_next_one(tmp_path):
    spool = tmp_path / "spool"
    port = free_port()
    done = run_python(
        CHILD_WORKFLOW,
        env={
            **os.environ,
            "PROVML_ENDPOINT": f"http://127.0.0.1:{port}",
            "PROVML_SPOOL": str(spool),
        },
    )
    assert done.returncode == 0, done.stderr
    assert str(spool) in done.stderr and "replayed by the next" in done.stderr
    assert len(list(spool.glob("*.jsonl"))) == 1
    collector = Collector(port=port)
    try:
        capture.init("next", endpoint=collector.url, spool_dir=spool)
        assert capture.flush() is True
        workflows = {label(e) for e in collector.elements("WorkflowExecution")}
        assert workflows == {"child-workflow", "next"}
        assert [label(e) for e in collector.elements("ValidationExecution")] == ["check"]
        assert list(spool.glob("*.jsonl")) == []
    finally:
        collector.stop()


BLOCKED_IMPORTS = """
    import sys

    BLOCKED = ("sqlalchemy", "fastapi", "rdflib", "prov", "pyoxigraph", "psycopg", "networkx")

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Blocker())

    import provml
    import provml.capture as capture
    from provml.capture.testing import InMemoryExporter

    with capture.testing.capture() as memory:
        @capture.training
        def train(data: bytes, lr: float = 0.1):
            capture.log_metric("loss", 0.2)
            capture.log_model_version("m", 1)
        train(b"tiles")
    assert memory.elements(ml_class="ModelVersion")

    capture.init("blocked", endpoint=sys.argv[1])
    train(b"tiles")
    assert capture.flush(30), capture.stats()
    capture.shutdown()

    # The embedded store too: the job writes its inbox and never opens the store.
    capture.init("blocked-embedded", store=sys.argv[2])
    train(b"tiles")
    assert capture.flush(30), capture.stats()
    capture.shutdown()
    loaded = sorted(
        m for m in sys.modules if m.split(".")[0] in BLOCKED or m.startswith("provml.store")
    )
    assert not loaded, loaded
    print("ok")
"""


def test_capture_runs_with_sqlalchemy_fastapi_rdflib_prov_and_pyoxigraph_blocked(
    collector, tmp_path
):
    from provml.store import open_record_store

    store_url = f"sqlite:///{tmp_path / 'embedded' / 'provml.sqlite'}"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(BLOCKED_IMPORTS), collector.url, store_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert [label(e) for e in collector.elements("TrainingExecution")] == ["train"]
    # What the light job left in the inbox is in the store once something opens it.
    with open_record_store(store_url) as store:
        assert [n.label for n in store.find_nodes(ml_class="TrainingExecution")] == ["train"]


def test_a_forked_child_restarts_the_exporter_and_exports_its_own_records(collector):
    run = capture.init("forking", endpoint=collector.url)
    with capture.training("parent") as parent:
        pid = os.fork()
        if pid == 0:  # the child: record a stage, then what its exit hook would do
            status = 1
            try:
                with capture.validation("in-child"):
                    pass
                status = 0 if capture.shutdown(20) else 2
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert capture.shutdown() is True
    (child,) = collector.elements("ValidationExecution")
    assert child["bundle"] == run.bundle
    informed = {(r["subject"], r["object"]) for r in collector.relations("wasInformedBy")}
    assert (child["id"], parent.iri) in informed
    # The parent's exporter did not send the child's records, nor the child the parent's.
    assert [label(e) for e in collector.elements("TrainingExecution")] == ["parent"]
    # Only the parent ends the run.
    ends = [e for e in collector.elements("WorkflowExecution") if "endTime" in e]
    assert len(ends) == 1


def _work_in_a_multiprocessing_child() -> None:
    @capture.inference
    def predict(batch: int) -> int:
        return batch

    predict(7)  # no flush: the child's exit must deliver it


def test_a_multiprocessing_child_delivers_its_records_when_it_exits(collector):
    import multiprocessing

    capture.init("mp", endpoint=collector.url)
    with capture.training("launch") as launch:
        child = multiprocessing.get_context("fork").Process(target=_work_in_a_multiprocessing_child)
        child.start()
        child.join(60)
    assert child.exitcode == 0
    (predict,) = collector.elements("InferenceExecution")
    informed = {(r["subject"], r["object"]) for r in collector.relations("wasInformedBy")}
    assert (predict["id"], launch.iri) in informed


# -------------------------------------------------------------- SQL store


def taken_in(store):
    """``store`` once it has ingested what capture left in its inbox (embedded stores)."""
    from provml.config import resolve_store
    from provml.store import drain_inbox

    location = resolve_store(store.url)
    if location.inbox is not None:
        drain_inbox(store, location.inbox)
    return store


def test_capture_into_the_sql_store(store, tmp_path):
    run = capture.init("to-store", store=store.url, spool_dir=tmp_path / "spool")
    with capture.training("fit") as fit:
        capture.log_param("lr", 0.1)
    capture.shutdown()
    stored = taken_in(store).get_bundle(run.bundle)
    iris = {r.id for r in stored.records if hasattr(r, "start_time")}
    assert {fit.iri, run.iri} <= iris
    assert capture.stats().dropped_total == 0


def test_an_unreachable_store_spools_and_every_record_arrives_once_when_it_is_back(tmp_path):
    from provml.store import open_record_store

    blocker = tmp_path / "store"
    blocker.write_text("a file where the store's directory should be")
    url = f"sqlite:///{blocker / 'provml.sqlite'}"
    run = capture.init("w", store=url, spool_dir=tmp_path / "spool")
    with capture.training("fit") as fit:
        capture.log_metric("loss", 0.1)
    assert capture.flush() is False
    spooled = capture.stats().spooled
    assert spooled == capture.stats().captured > 0

    blocker.unlink()
    assert capture.flush() is True
    assert capture.stats().replayed == spooled
    store = open_record_store(url)  # creates the store and takes its inbox in
    try:
        records = store.get_bundle(run.bundle).records
        assert len(records) == len(set(records)) == spooled
        assert fit.iri in {r.id for r in records if hasattr(r, "start_time")}
    finally:
        store.close()


CURATE = """
    import sys
    from pathlib import Path
    import provml.capture as capture

    capture.init("curation", store=sys.argv[1])

    @capture.data_transformation(inputs=["raw"], outputs=["tiles"])
    def curate(raw: Path, tiles: Path) -> None:
        tiles.write_bytes(raw.read_bytes()[::2])

    curate(Path(sys.argv[2]), Path(sys.argv[3]))
"""

TRAIN = """
    import sys
    from pathlib import Path
    import provml.capture as capture

    capture.init("training", store=sys.argv[1])

    @capture.training(inputs=["tiles"])
    def train(tiles: Path, epochs: int = 3) -> None:
        for epoch in range(epochs):
            with capture.section("epoch", step=epoch):
                capture.log_metric("loss", 1.0 / (epoch + 1))
        capture.log_model_version("salt-detector", 1)

    train(Path(sys.argv[2]))
"""


def test_lineage_crosses_workflows_from_a_model_version_back_to_the_raw_file(store, tmp_path):
    from provml import lineage

    raw, tiles = tmp_path / "survey-A.raw", tmp_path / "survey-A.tiles"
    raw.write_bytes(bytes(range(256)) * 64)
    env = {**os.environ, "PROVML_SPOOL": str(tmp_path / "spool")}
    for script, args in ((CURATE, [raw, tiles]), (TRAIN, [tiles])):
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script), store.url, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        assert "not everything reached" not in done.stderr, done.stderr

    version = ids.iri("model", "salt-detector", "v", 1)
    graph = lineage.upstream(taken_in(store), version)
    raw_iri = ids.data_iri(ids.digest_file(raw)[0])
    tiles_iri = ids.data_iri(ids.digest_file(tiles)[0])
    assert raw_iri in graph.nodes and tiles_iri in graph.nodes
    assert graph.nodes[raw_iri].ml_class == "DomainData"
    # Two workflows, two bundles, one shared tiles entity.
    assert len(graph.nodes[tiles_iri].bundles) == 2
    assert _state.provider is None
