"""The embedded store's inbox: jobs leave batches, whoever opens the store takes them in.

Real files, a real SQLite store, real capture: a job captures with ``provml.init()`` on
an embedded store, the store (``open_record_store``, ``provml serve``) ingests what is
waiting, once, in order; a batch cut short, refused or locked by another reader is
handled as :mod:`provml.inbox` says.
"""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import provml.capture as capture
from provml import inbox
from provml.api import Settings, create_app
from provml.config import resolve_store
from provml.records import Bundle, Element, Relation, bundle_to_dict
from provml.store import open_record_store
from provml.vocab import PROV_LABEL

B = "https://example.org/"


@pytest.fixture(autouse=True)
def no_capture_left_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("PROVML_SPOOL", str(tmp_path / "spool"))
    yield
    capture.shutdown(timeout=5)


def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'provml.sqlite'}"


def batch(bundle: str, *entities: tuple[str, str]) -> dict:
    records = tuple(Element("entity", B + iri, ((PROV_LABEL, label),)) for iri, label in entities)
    return {"records": len(records), "bundles": [bundle_to_dict(Bundle(B + bundle, records))]}


def labels(store, bundle: str) -> list[str]:
    return sorted(r.label for r in store.get_bundle(B + bundle).records)


def test_a_captured_job_leaves_its_batches_and_opening_the_store_takes_them_in(tmp_path):
    url = store_url(tmp_path)
    folder = resolve_store(url).inbox
    run = capture.init("survey-curation", store=url)

    @capture.data_transformation(outputs=["tiles"])
    def curate(raw: bytes) -> bytes:
        return raw[::2]

    curate(b"seismic volume" * 100)
    assert capture.flush() is True
    stats = capture.stats()
    capture.shutdown()
    waiting = inbox.waiting(folder)
    assert waiting, "the job wrote no batch"
    assert stats.exported == stats.captured > 0 and stats.dropped_total == 0
    assert not (tmp_path / "store" / "provml.sqlite").exists(), "the job opened the store"

    with open_record_store(url) as store:
        records = store.get_bundle(run.bundle).records
        assert len(records) >= stats.exported  # and the run's end, written at shutdown
        assert {r.ml_class for r in records if hasattr(r, "ml_class")} >= {
            "WorkflowExecution",
            "DataTransformationExecution",
        }
    assert inbox.waiting(folder) == []
    print(f"inbox: {len(waiting)} batches, {stats.exported} records taken in, 0 left")


def test_batches_are_taken_in_oldest_first_and_a_replayed_batch_is_stored_once(tmp_path):
    url = store_url(tmp_path)
    folder = resolve_store(url).inbox
    first = inbox.write(folder, batch("run/1", ("data/a", "raw-A")))
    inbox.write(folder, batch("run/1", ("data/b", "raw-B")))
    kept = tmp_path / "copy.json"
    shutil.copy(first, kept)
    with open_record_store(url) as store:
        assert labels(store, "run/1") == ["raw-A", "raw-B"]
        # A reader killed between its commit and the unlink leaves the batch: taken twice.
        shutil.copy(kept, folder / first.name)
        before = store.checksum()
        assert inbox.drain(folder, lambda b: store.ingest(_bundles(b))).records == 1
        assert store.checksum() == before
        assert labels(store, "run/1") == ["raw-A", "raw-B"]


def _bundles(wire: list[dict]) -> list[Bundle]:
    from provml.records import bundle_from_dict

    return [bundle_from_dict(b) for b in wire]


def test_a_batch_cut_short_by_a_crash_is_never_read(tmp_path):
    url = store_url(tmp_path)
    folder = resolve_store(url).inbox
    inbox.write(folder, batch("run/1", ("data/a", "raw-A")))
    (folder / "01ffffff-0000-7000-8000-000000000000-99.tmp").write_bytes(b'{"records": 1, "bun')
    with open_record_store(url) as store:
        assert labels(store, "run/1") == ["raw-A"]
    assert [p.suffix for p in folder.iterdir()] == [".tmp"]


def derivation(bundle: str, source: str) -> dict:
    """A batch with the identified relation ``rel/1``: tiles derived from ``source``."""
    relation = Relation("wasDerivedFrom", B + "data/tiles", B + source, id=B + "rel/1")
    return {"records": 1, "bundles": [bundle_to_dict(Bundle(B + bundle, (relation,)))]}


def test_a_refused_batch_is_set_aside_and_logged_and_the_rest_go_on(tmp_path, caplog):
    url = store_url(tmp_path)
    folder = resolve_store(url).inbox
    with open_record_store(url) as store:
        store.ingest(_bundles(derivation("run/1", "data/raw-A")["bundles"]))
        checksum = store.checksum()
    # The same relation id with other content: a conflict the store reports, never applies.
    conflicting = inbox.write(folder, derivation("run/1", "data/raw-B"))
    (folder / "01ffffff-0000-7000-8000-000000000001-99.json").write_bytes(b"not json")
    with caplog.at_level(logging.ERROR, logger="provml.inbox"), open_record_store(url) as store:
        assert store.checksum() == checksum
    inbox.write(folder, batch("run/2", ("data/c", "raw-C")))
    with open_record_store(url) as store:
        assert labels(store, "run/2") == ["raw-C"]
    refused = sorted(p.name for p in (folder / inbox.REFUSED).iterdir())
    assert conflicting.name in refused and len(refused) == 2
    assert inbox.waiting(folder) == []
    assert sum("refused the captured batch" in r.getMessage() for r in caplog.records) == 2


def test_a_batch_another_reader_holds_is_left_to_it(tmp_path):
    url = store_url(tmp_path)
    folder = resolve_store(url).inbox
    held = inbox.write(folder, batch("run/1", ("data/a", "raw-A")))
    inbox.write(folder, batch("run/2", ("data/b", "raw-B")))
    with held.open("rb") as other_reader:
        fcntl.flock(other_reader.fileno(), fcntl.LOCK_EX)
        with open_record_store(url) as store:
            assert labels(store, "run/2") == ["raw-B"]
            assert [b.id for b in store.list_bundles()] == [B + "run/2"]
    assert inbox.waiting(folder) == [held]
    with open_record_store(url) as store:
        assert labels(store, "run/1") == ["raw-A"]


def test_the_server_takes_in_what_jobs_capture_while_it_runs(tmp_path):
    url = store_url(tmp_path)
    app = create_app(Settings(store=url, project_interval=0.2))
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        run = capture.init("training", store=url)
        with capture.training("fit"):
            capture.log_metric("loss", 0.25)
        assert capture.flush() is True
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = client.get("/api/v1/node", params={"id": run.iri})
            if found.status_code == 200:
                break
            time.sleep(0.1)
        assert found.status_code == 200, found.text
        metrics = client.get("/metrics").text
        taken = [ln for ln in metrics.splitlines() if ln.startswith("provml_inbox_records_total")]
        assert taken and float(taken[0].split()[-1]) >= 1
    assert inbox.waiting(resolve_store(url).inbox) == []


def test_an_unwritable_inbox_spools_the_batch_and_the_job_goes_on(tmp_path):
    url = store_url(tmp_path)
    (tmp_path / "store").mkdir()
    resolve_store(url).inbox.write_text("a file where the inbox should be")
    capture.init("w", store=url, spool_dir=tmp_path / "spool")
    with capture.training("fit"):
        capture.log_metric("loss", 0.5)
    assert capture.flush() is False
    stats = capture.stats()
    capture.shutdown(timeout=5)
    assert stats.spooled == stats.captured > 0 and stats.dropped_total == 0
    spooled = [json.loads(line) for p in (tmp_path / "spool").glob("*.jsonl") for line in p.open()]
    # and the run's end, spooled by the exit of capture
    assert sum(p["records"] for p in spooled) > stats.spooled
