"""What one service process holds: the SQL store, the RDF store and its projector thread.

Made in the app's lifespan and kept on ``app.state.services``; never at import time.

The process that opens the Oxigraph directory for writing owns the RDF side (DESIGN.md,
"two traps"): it runs a projector thread that catches the RDF store up from the SQL
outbox whenever an ingest wakes it, and every ``project_interval`` seconds for rows that
other processes appended; on an embedded store it first takes in the batches training
jobs left in the store's inbox (:mod:`provml.inbox`). Ingest responses
never wait for it. Further worker processes find the directory locked, open it
read-only and, on the same interval, take up the newest snapshot the owner published
for them; they never read the owner's directory, and answer SPARQL with 503 until the
first one (:mod:`provml._rdf_snapshots`). While such readers exist, the owner's
projector publishes as it starts, then at most once an interval as the projection
moves, in mid-catch-up too.

Imports: provml core and stores; never FastAPI or provml.capture.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from provml.api._metrics import Metrics
from provml.api._settings import Settings
from provml.config import StoreLocation, resolve_store
from provml.errors import ProvmlError, StoreUnavailable
from provml.rdf import RDFStore
from provml.store import drain_inbox
from provml.store.sql import SQLStore

logger = logging.getLogger("provml.api")


def open_sql_store(location: StoreLocation) -> SQLStore:
    """Open the SQL store; refuse one whose schema is behind the migrations.

    An embedded store that holds no schema at all is created (its first use, as for
    every provml command); any other store must be at the newest revision, else
    :class:`~provml.errors.SchemaOutdated` names ``provml db upgrade``.
    """
    if location.embedded:
        Path(location.sql_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    store = SQLStore(location.sql_url)
    try:
        if location.embedded and store.current_revision() is None:
            store.upgrade()
        store.check_schema()
    except BaseException:
        store.close()
        raise
    return store


def lower_priority(nice: int) -> None:
    """Lower the calling thread's scheduling priority by ``nice`` (Linux: per thread).

    Linux keeps a nice value per thread, so this leaves the request handlers and the
    database's own processes as they are; the projector then takes the cores they
    leave idle, and all of them when nothing else runs. Pyoxigraph's writes, most of
    a projection's work, release the GIL, so they yield the cores to the handlers
    rather than the interpreter. Elsewhere, or when the system refuses, nothing changes.
    """
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + nice))
    except OSError as exc:
        logger.info("provml: cannot lower the projector's priority: %s", exc)


#: Name prefixes of the threads the RDF store's engine runs by itself: RocksDB's
#: compactions ("rocksdb:low") and flushes ("rocksdb:high").
_ENGINE_THREADS = ("rocksdb:",)


def lower_engine_priority(nice: int) -> None:
    """Give the RDF store engine's own threads the projector's priority (Linux).

    RocksDB starts its compaction and flush threads from the thread that opens the
    store, so they ran at the request handlers' priority. They do a large share of a
    projection's work (a catch-up of 200k records: 6.5 s of CPU in them against 9.6 s
    in the projector thread), and while only the projector yielded, they took that
    share of the cores from the ingest. Idempotent: a thread already as low or lower
    is left as it is; elsewhere, or when the system refuses, nothing changes.
    """
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    try:
        target = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + nice)
        tasks = list(Path("/proc/self/task").iterdir())
    except OSError:
        return
    for task in tasks:
        try:
            if not (task / "comm").read_text().startswith(_ENGINE_THREADS):
                continue
            thread = int(task.name)
            if os.getpriority(os.PRIO_PROCESS, thread) < target:
                os.setpriority(os.PRIO_PROCESS, thread, target)
        except (OSError, ValueError):  # gone meanwhile, or not allowed
            continue


class Projector:
    """A daemon thread that projects outbox rows into the RDF store (the owner's job)."""

    def __init__(
        self,
        sql: SQLStore,
        rdf: RDFStore,
        metrics: Metrics,
        interval: float,
        inbox: Path | None = None,
        nice: int = 0,
    ) -> None:
        self._sql = sql
        self._rdf = rdf
        self._inbox = inbox  # an embedded store's: batches jobs left for it
        self._metrics = metrics
        self._interval = interval
        self._nice = nice
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._lock = threading.Lock()  # one catch-up at a time (thread or caller)
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._loop, name="provml-projector", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Ask for a catch-up soon (after an ingest); returns at once."""
        self._idle.clear()
        self._wake.set()

    def catch_up(self) -> int:
        """Take the inbox in, then project every pending outbox row now.

        Returns the number of bundles projected.
        """
        total = 0
        with self._lock:
            if self._inbox is not None:
                taken = drain_inbox(self._sql, self._inbox)
                if taken:
                    self._metrics.inc("provml_inbox_records_total", taken)
            # Snapshots for the readers in mid-pass too: a long catch-up (minutes after a
            # bulk ingest) would otherwise leave them on the one before it.
            while n := self._rdf.project(self._sql, publish_every=self._interval):
                total += n
        if total:
            self._metrics.inc("provml_rdf_projected_bundles_total", total)
        return total

    def wait_idle(self, timeout: float) -> bool:
        """Wait until a catch-up has run after the last :meth:`wake`."""
        return self._idle.wait(timeout)

    def _loop(self) -> None:
        lower_priority(self._nice)
        lower_engine_priority(self._nice)
        # The store as it opened, for readers already there: they have nothing to read
        # until a first snapshot, and the first catch-up may take minutes.
        with contextlib.suppress(ProvmlError):  # a store closed already: the loop says so
            self._publish()
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.catch_up()
                self.last_error = None
                self._publish()
            except ProvmlError as exc:
                if self._stop.is_set():
                    break  # a rebuild stopped by stop(): the next start rebuilds
                # The SQL store may be briefly unreachable: the rows stay pending.
                if self.last_error != exc.message:
                    logger.warning("provml: RDF projection failed, retrying: %s", exc.message)
                self.last_error = exc.message
            except Exception as exc:  # keep the thread alive; the outbox keeps the work
                logger.exception("provml: RDF projection failed")
                self.last_error = f"{type(exc).__name__}: {exc}"
            if not self._wake.is_set():
                self._idle.set()
            self._wake.wait(self._interval)

    def _publish(self) -> None:
        """A snapshot for the other processes that read the RDF store, once an interval
        at most (:meth:`RDFStore.publish_for_readers`)."""
        try:
            self._rdf.publish_for_readers(self._interval)
        except OSError as exc:  # a full disk, say: the readers keep their last one
            logger.warning("provml: cannot publish an RDF snapshot for the readers: %s", exc)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._rdf.stop_rebuilding()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


class Refresher:
    """For a read-only worker: take a new snapshot of the RDF store every interval."""

    def __init__(self, rdf: RDFStore, interval: float) -> None:
        self._rdf = rdf
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="provml-rdf-refresh", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._rdf.refresh()
            except ProvmlError as exc:
                logger.warning("provml: cannot refresh the read-only RDF store: %s", exc.message)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


@dataclass
class Services:
    """The stores and helpers one app instance uses; see :func:`open_services`."""

    settings: Settings
    location: StoreLocation
    sql: SQLStore
    rdf: RDFStore
    metrics: Metrics
    projector: Projector | None = None  # None when another process owns the RDF store
    refresher: Refresher | None = None
    started: float = field(default_factory=time.time)

    @property
    def owns_rdf(self) -> bool:
        return self.projector is not None

    def lower_priority(self) -> None:
        """Lower the calling thread to the projector's priority: for background work."""
        lower_priority(self.settings.project_nice)

    def close(self) -> None:
        if self.projector is not None:
            self.projector.stop()
        if self.refresher is not None:
            self.refresher.stop()
        self.rdf.close()
        self.sql.close()


def _open_rdf(path: str, attempts: int = 10) -> tuple[RDFStore, bool]:
    """The RDF store, writable if no other process holds it, else read-only.

    Workers started together race: the loser may find the directory locked but not yet
    made, so it tries again for a moment.
    """
    for attempt in range(attempts):
        try:
            return RDFStore.open(path), False
        except StoreUnavailable:
            # Another worker of this service (or a CLI command) owns the RDF store.
            try:
                return RDFStore.open(path, read_only=True), True
            except StoreUnavailable:
                if attempt + 1 == attempts:
                    raise
                time.sleep(0.2)
    raise AssertionError("unreachable")  # pragma: no cover


def open_services(settings: Settings, metrics: Metrics) -> Services:
    """Open the stores named by ``settings`` and start the projector (or refresher).

    Raises:
        SchemaOutdated: the SQL schema is behind; the message names ``provml db upgrade``.
        StoreUnavailable: a store cannot be reached or opened.
    """
    location = resolve_store(settings.store)
    if settings.rdf_path is not None:
        location = StoreLocation(location.sql_url, settings.rdf_path, location.embedded)
    sql = open_sql_store(location)
    try:
        rdf, read_only = _open_rdf(location.rdf_path)
    except BaseException:
        sql.close()
        raise
    services = Services(settings, location, sql, rdf, metrics)
    if read_only:
        services.refresher = Refresher(rdf, settings.project_interval)
        services.refresher.start()
    else:
        services.projector = Projector(
            sql, rdf, metrics, settings.project_interval, location.inbox, settings.project_nice
        )
        services.projector.start()
    rdf.prestart_query_worker()
    return services
