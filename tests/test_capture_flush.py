"""A flush drains the queue on its caller's thread when it can keep its timeout.

The caller of ``provml.flush()`` (and the exit hook) waits for the delivery anyway:
doing the work itself spares a thread switch and does not count the same work twice,
once as the caller's wait and once as the exporter thread's CPU. Order, exactly-once
delivery, the spool and the timeout stay as they were.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence

import pytest

import provml.capture as capture
from provml.capture import _export, _state
from provml.records import Bundle, Element


@pytest.fixture(autouse=True)
def no_capture_left_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("PROVML_SPOOL", str(tmp_path / "default-spool"))
    yield
    capture.shutdown(timeout=5)


class Recording:
    """An exporter that notes which thread exported each batch; it can hang or fail."""

    spool = True

    def __init__(self, *, prompt: bool, failures: int = 0) -> None:
        self.prompt = prompt
        self.failures = failures
        self.flushes_inside: list[tuple[bool, float]] = []  # (result, seconds)
        self.flush_inside = False
        self.slow_metric: str | None = None  # a batch holding this metric takes 0.5 s
        self.threads: list[str] = []
        self.bundles: list[Bundle] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()
        self._lock = threading.Lock()

    def export(self, bundles: Sequence[Bundle]) -> None:
        self.entered.set()
        self.release.wait()
        if self.slow_metric is not None and any(
            str(dict(r.attributes).get("http://www.w3.org/ns/prov#label", "")).startswith(
                self.slow_metric
            )
            for b in bundles
            for r in b.records
        ):
            time.sleep(0.5)
        if self.flush_inside:
            began = time.monotonic()
            self.flushes_inside.append((capture.flush(timeout=2), time.monotonic() - began))
        with self._lock:
            self.threads.append(threading.current_thread().name)
            if self.failures:
                self.failures -= 1
                raise ConnectionError("down for now")
            self.bundles.extend(bundles)

    def metric_labels(self) -> list[str]:
        with self._lock:
            return [
                str(dict(r.attributes)["http://www.w3.org/ns/prov#label"])
                for b in self.bundles
                for r in b.records
                if isinstance(r, Element) and r.ml_class == "MetricValue"
            ]


def start(destination: Recording, tmp_path, **options) -> None:
    # A long timer: nothing is exported unless a flush (or a full batch) asks for it.
    options.setdefault("schedule_delay", 60.0)
    capture.init("flush", exporter=destination, spool_dir=tmp_path / "spool", **options)


def test_a_flush_exports_on_its_callers_thread_when_the_destination_is_prompt(tmp_path):
    destination = Recording(prompt=True)
    start(destination, tmp_path)
    capture.log_metric("loss", 0.5, step=1)
    assert capture.flush(timeout=5)
    assert destination.threads == [threading.current_thread().name]
    assert destination.metric_labels() == ["loss = 0.5 @ 1"]


def test_a_flush_without_a_timeout_exports_on_its_callers_thread_whatever_the_destination(
    tmp_path,
):
    destination = Recording(prompt=False)
    start(destination, tmp_path)
    capture.log_metric("loss", 0.5, step=1)
    assert capture.flush(timeout=None)
    assert destination.threads == [threading.current_thread().name]


def test_a_flush_with_a_timeout_leaves_a_destination_that_may_hang_to_the_exporter_thread(
    tmp_path,
):
    destination = Recording(prompt=False)
    start(destination, tmp_path)
    capture.log_metric("loss", 0.5, step=1)
    assert capture.flush(timeout=5)
    assert destination.threads == ["provml-exporter"]


def test_a_flush_with_a_timeout_returns_by_it_while_the_destination_hangs(tmp_path):
    destination = Recording(prompt=False)
    start(destination, tmp_path)
    destination.release.clear()
    capture.log_metric("loss", 0.5, step=1)
    began = time.monotonic()
    assert not capture.flush(timeout=0.3)
    assert time.monotonic() - began < 2
    destination.release.set()
    assert capture.flush(timeout=5)
    assert destination.metric_labels() == ["loss = 0.5 @ 1"]


def test_a_flush_returns_by_its_timeout_while_the_exporter_thread_is_stuck_in_a_prompt_one(
    tmp_path,
):
    destination = Recording(prompt=True)
    start(destination, tmp_path, batch_size=1)  # the first record wakes the thread
    destination.release.clear()
    capture.log_metric("loss", 0.5, step=1)
    assert destination.entered.wait(5)  # the exporter thread holds the drain now
    began = time.monotonic()
    assert not capture.flush(timeout=0.3)
    assert time.monotonic() - began < 2
    destination.release.set()
    assert capture.flush(timeout=5)
    labels = destination.metric_labels()
    assert labels == ["loss = 0.5 @ 1"]


def test_flushes_from_several_threads_deliver_every_record_once_and_in_order(tmp_path):
    destination = Recording(prompt=True)
    start(destination, tmp_path, schedule_delay=0.01, batch_size=7)
    results: list[bool] = []

    def work(name: str) -> None:
        for i in range(60):
            capture.log_metric(name, i, step=i)
            if i % 5 == 4:
                results.append(capture.flush(timeout=10))

    threads = [threading.Thread(target=work, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert capture.flush(timeout=10)
    assert all(results) and len(results) == 4 * 12
    labels = destination.metric_labels()
    assert not [label for label, n in Counter(labels).items() if n > 1]
    for n in range(4):
        mine = [label for label in labels if label.startswith(f"t{n} ")]
        assert mine == [f"t{n} = {i} @ {i}" for i in range(60)]
    stats = capture.stats()
    assert stats.exported == stats.captured and not stats.dropped


def test_a_flush_on_its_callers_thread_replays_the_spool_first_and_in_order(tmp_path):
    destination = Recording(prompt=True, failures=1)
    start(destination, tmp_path, batch_size=1)
    capture.log_metric("loss", 1, step=1)  # the exporter thread fails this one: spooled
    for _ in range(500):
        if capture.stats().spooled:
            break
        time.sleep(0.01)
    capture.log_metric("loss", 2, step=2)
    assert capture.flush(timeout=5)
    assert destination.metric_labels() == ["loss = 1 @ 1", "loss = 2 @ 2"]
    stats = capture.stats()
    assert stats.spooled == stats.replayed > 0 and not stats.dropped


def test_shutdown_delivers_on_its_callers_thread_and_ends_the_exporter_thread(tmp_path):
    destination = Recording(prompt=True)
    start(destination, tmp_path)
    exporter = _state.provider.exporter
    capture.log_metric("loss", 0.5, step=1)
    assert capture.shutdown(timeout=5)
    assert set(destination.threads) == {threading.current_thread().name}
    assert destination.metric_labels() == ["loss = 0.5 @ 1"]
    assert exporter._thread is not None and not exporter._thread.is_alive()


@pytest.mark.parametrize("prompt", [True, False])
def test_a_flush_from_inside_an_export_returns_at_once_and_the_outer_one_delivers(tmp_path, prompt):
    destination = Recording(prompt=prompt)
    start(destination, tmp_path)
    destination.flush_inside = True
    capture.log_metric("loss", 0.5, step=1)
    assert capture.flush(timeout=5)
    assert destination.flushes_inside and all(
        not result and seconds < 0.5 for result, seconds in destination.flushes_inside
    )
    assert destination.metric_labels() == ["loss = 0.5 @ 1"]


def test_a_flush_returns_once_its_records_are_in_though_the_drain_goes_on_with_later_ones(
    tmp_path,
):
    destination = Recording(prompt=True)
    start(destination, tmp_path, batch_size=1)
    assert capture.flush(timeout=5)
    exporter = _state.provider.exporter
    destination.entered.clear()
    destination.release.clear()
    capture.log_metric("first", 1)  # a full batch: the exporter thread takes it and hangs
    assert destination.entered.wait(5)
    outcome: dict[str, float] = {}

    def flush() -> None:
        delivered = capture.flush(timeout=10)
        outcome.update(delivered=delivered, at=time.monotonic())

    flusher = threading.Thread(target=flush)
    flusher.start()
    while not any(isinstance(item, _export._FlushRequest) for item in list(exporter.queue)):
        time.sleep(0.001)
    destination.slow_metric = "later"
    for i in range(4):  # queued after the flush: 2 s of exports for the same drain
        capture.log_metric("later", i)
    released = time.monotonic()
    destination.release.set()
    flusher.join()
    assert outcome["delivered"]
    assert outcome["at"] - released < 1.0
    assert destination.metric_labels()[0] == "first = 1"
