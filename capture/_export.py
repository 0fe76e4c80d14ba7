"""The exporter: a bounded queue, a daemon thread that batches, and the destinations.

The caller's thread only appends to the queue (:meth:`BatchExporter.put`), except in
an explicit flush, which it waits for anyway and so drains itself when it can. The
exporter thread turns items into records, batches them by size and time, and delivers
them to one destination: the embedded store's inbox (files, standard library only), a
PostgreSQL record store (imported lazily, on this thread only), an HTTP endpoint (gzip
JSON over ``urllib``), or an in-memory exporter (tests). A batch the destination does
not take goes to the spool and is replayed before anything newer.

Imports: standard library and ``provml.records``/``provml.config``/``provml.errors``/
``provml.inbox``.
``provml.store`` is imported inside :class:`StoreDestination` on the exporter thread.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any, Protocol, runtime_checkable

from provml import inbox
from provml.capture._spool import Spool
from provml.capture._state import Counters, internal_error, log_once, logger
from provml.config import StoreLocation
from provml.errors import Conflict, InvalidRecord, ProvmlError, StoreUnavailable
from provml.records import Bundle, bundle_from_dict, bundle_to_dict, check_record, record_to_dict
from provml.vocab import STANDARD_PREFIXES

_NAMESPACES = tuple(STANDARD_PREFIXES.items())
_MAX_BACKOFF = 30.0
# At exit, a destination that failed one attempt (restarting, busy replaying other
# jobs' spools) gets a few more, each after this pause, within the exit bound.
_EXIT_RETRY_PAUSES = (0.5, 1.0, 2.0)
# A flush waiting for another thread's drain looks this often whether its own request
# is done already (a long drain goes on with what was queued after it).
_LOCK_POLL = 0.005


@runtime_checkable
class Exporter(Protocol):
    """Where batches go. Raise :class:`provml.errors.StoreUnavailable` (or any error that
    is not an :class:`~provml.errors.InvalidRecord`) to have the batch spooled and
    retried; raise ``InvalidRecord``/``Conflict`` to have it dropped as refused.

    An exporter whose every export ends promptly (memory, local files) may say so with
    a class attribute ``prompt = True``: a flush with a timeout then does the export on
    its caller's thread. Otherwise only a flush without a timeout does.
    """

    def export(self, bundles: Sequence[Bundle]) -> None: ...


class Refused(Exception):
    """The destination understood the batch and will never take it."""


def wire_batch(bundles: Sequence[Bundle], records: int) -> dict[str, Any]:
    """A batch as the spool and the inbox keep it: ``{"records": n, "bundles": [...]}``."""
    return {"records": records, "bundles": [bundle_to_dict(b) for b in bundles]}


# Circular structures cannot occur in records' wire form: without the check (a dict
# insert and delete per list and dict) the same bytes come ~15 % faster.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode
#: Records encoded at a time by :func:`encode_batch`.
_ENCODE_CHUNK = 64


def _with_list(shell: dict[str, Any], key: str, items: Iterable[str]) -> str:
    """The JSON of ``shell``, its empty list under ``key`` filled with encoded ``items``.

    ``shell`` holds ``key`` after nothing but its string-valued ``"id"``, if anything:
    in JSON text a quote inside a string is escaped, so the first ``"key":[]`` is the key.
    """
    head, found, tail = _encode(shell).partition(f'"{key}":[]')
    if not found:
        raise ValueError(f"no empty {key!r} list to fill")
    return "".join((head, f'"{key}":[', ",".join(items), "]", tail))


def _encoded_records(records: Sequence[Any]) -> Iterator[str]:
    for i in range(0, len(records), _ENCODE_CHUNK):
        # [1:-1]: the records of the chunk without the list's brackets (never empty here).
        yield _encode([record_to_dict(r) for r in records[i : i + _ENCODE_CHUNK]])[1:-1]


def encode_batch(bundles: Sequence[Bundle], records: int) -> bytes:
    """``wire_batch(bundles, records)`` as the inbox keeps it: :func:`provml.inbox.write`'s
    JSON (compact, UTF-8), byte for byte.

    Encoded a few records at a time: the wire form of a whole batch is thousands of
    dicts and lists alive at once, enough to set off the garbage collector (full
    collections, tens of milliseconds in a big process, on whichever thread is
    allocating, the user's included) and to hold the GIL for one long C call.
    """
    encoded = (
        _with_list(bundle_to_dict(replace(b, records=())), "records", _encoded_records(b.records))
        for b in bundles
    )
    return _with_list(wire_batch((), records), "bundles", encoded).encode()


def _describe(destination: Any) -> str:
    describe = getattr(destination, "describe", None)
    return describe() if callable(describe) else type(destination).__name__


class StoreDestination:
    """A PostgreSQL record store, opened on first export (on the exporter thread)."""

    def __init__(self, location: StoreLocation) -> None:
        self.location = location
        self._store: Any = None

    def describe(self) -> str:
        return f"the record store {self.location.sql_url}"

    def export(self, bundles: Sequence[Bundle]) -> None:
        try:
            if self._store is None:
                try:
                    from provml.store import open_record_store
                    from provml.store.sql import SQLStore  # noqa: F401 - fail here, clearly
                except ImportError as exc:
                    # Spooled, not dropped: installing the extra (or giving an
                    # endpoint) and running again delivers it.
                    raise StoreUnavailable(
                        f"the record store needs {exc.name or 'its libraries'}: "
                        "pip install 'provml[server]', or capture with "
                        "provml.init(endpoint=...) to a provml server"
                    ) from exc
                self._store = open_record_store(self.location)
            self._store.ingest(bundles)
        except (InvalidRecord, Conflict) as exc:
            raise Refused(str(exc)) from exc
        except Exception as exc:
            self.close()
            if isinstance(exc, StoreUnavailable):
                raise
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(Exception):
                store.close()


class InboxDestination:
    """The embedded store, by way of its inbox (:mod:`provml.inbox`): standard library only.

    The job never opens the store; whoever opens it next (any ``provml`` command, the
    server, ``open_record_store``) ingests the batches. Written is delivered: the batch
    is on disk, fsync'd, where the store will find it.
    """

    # Local files: a flush writes them on its caller's thread, within any timeout.
    prompt = True

    def __init__(self, location: StoreLocation) -> None:
        self.location = location
        self.directory = location.inbox

    def describe(self) -> str:
        return f"the inbox of the embedded store {self.directory}"

    def export(self, bundles: Sequence[Bundle]) -> None:
        try:
            count = sum(len(b.records) for b in bundles)
            inbox.write_encoded(self.directory, encode_batch(bundles, count))
        except OSError as exc:
            raise StoreUnavailable(f"cannot write {self.directory}: {exc}") from exc


class HttpDestination:
    """A provml server: ``POST <endpoint>/api/v1/records``, gzip JSON, optional bearer token."""

    def __init__(self, endpoint: str, token: str | None, timeout: float) -> None:
        self.url = endpoint.rstrip("/") + "/api/v1/records"
        self.token = token
        self.timeout = timeout

    def describe(self) -> str:
        return f"the provml server at {self.url}"

    def export(self, bundles: Sequence[Bundle]) -> None:
        self.post({"bundles": [bundle_to_dict(b) for b in bundles]})

    def post(self, payload: dict[str, Any]) -> None:
        # urllib.request pulls in http.client, email and ssl: imported on the exporter
        # thread when first needed, so importing capture stays cheap.
        import urllib.error
        import urllib.request

        body = gzip.compress(json.dumps(payload, separators=(",", ":")).encode(), compresslevel=5)
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode(errors="replace")
            if self.token:
                # A proxy may echo the request's headers: the token must not reach a log.
                detail = detail.replace(self.token, "<token>")
            if 400 <= exc.code < 500 and exc.code not in (401, 403, 404, 408, 409, 429):
                raise Refused(f"HTTP {exc.code}: {detail}") from exc
            raise StoreUnavailable(f"HTTP {exc.code} from {self.url}: {detail}") from exc
        except (OSError, ValueError) as exc:  # URLError, timeouts, resets are OSErrors
            raise StoreUnavailable(f"{self.url} unreachable: {exc}") from exc


class _FlushRequest:
    """A marker in the queue: everything before it is delivered, spooled or dropped
    when :meth:`BatchExporter._drain` reaches it, whichever thread drains."""

    __slots__ = ("delivered", "done", "force")

    def __init__(self, force: bool) -> None:
        self.done = threading.Event()
        self.delivered = False
        self.force = force


class _Stop:
    __slots__ = ()


class BatchExporter:
    """The queue and the daemon thread that empties it."""

    def __init__(
        self,
        destination: Any,
        builder: Any,
        counters: Counters,
        spool: Spool | None,
        *,
        queue_size: int,
        batch_size: int,
        schedule_delay: float,
    ) -> None:
        self.destination = destination
        self.builder = builder
        self.counters = counters
        self.spool = spool
        self.queue: deque[Any] = deque()
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.schedule_delay = schedule_delay
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._retry_at = 0.0
        self._backoff = 0.5
        self._stopped = False
        self._dropped_at_flush = 0  # a flush that saw new drops did not deliver everything
        # The batch being exported, so a stuck exit can spool it (see _rescue).
        self._in_flight: tuple[list[Bundle], int] | None = None
        self._spool_lock = threading.Lock()
        # Held by whichever thread drains the queue (the exporter thread, or a caller
        # of flush): one drain at a time keeps batches in order and each call once.
        self._drain_lock = threading.Lock()
        self._drainer: threading.Thread | None = None  # the thread holding _drain_lock
        self._stop_seen = False

    # ------------------------------------------------------------ caller side

    def put(self, item: Any) -> None:
        """The hot path: append, and wake the thread only when a batch is full."""
        queue = self.queue
        if len(queue) >= self.queue_size:
            self.counters.drop("queue full", 1)
            return
        queue.append(item)
        if len(queue) >= self.batch_size and not self._wake.is_set():
            self._wake.set()

    def pending(self) -> int:
        """Calls queued and not yet built into records (flush/stop markers left out)."""
        return sum(1 for item in list(self.queue) if not isinstance(item, _FlushRequest | _Stop))

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="provml-exporter", daemon=True)
            self._thread.start()

    def flush(self, timeout: float | None, force: bool = True) -> bool:
        """Deliver everything queued so far; True if nothing is left undelivered.

        The caller drains the queue up to its flush on its own thread when it can keep
        the timeout: it waits anyway, and handing the work to the exporter thread costs
        a thread switch and the same CPU. It cannot keep a timeout while a destination
        that may hang (a server, someone's exporter) has the batch, so then the
        exporter thread does the work and the caller waits for it at most ``timeout``.
        """
        if self._thread is None or not self._thread.is_alive():
            if self._stopped:
                return not self.queue
            self.start()
        me = threading.current_thread()
        if self._drainer is me:
            # Called from inside a drain (an exporter that flushes, a signal handler):
            # the drain under way delivers; waiting for it here would wait for ourselves.
            return False
        request = _FlushRequest(force)
        self.queue.append(request)
        if me is not self._thread and (
            timeout is None or getattr(self.destination, "prompt", False)
        ):
            if not self._take_drain(request, timeout):
                return request.done.is_set() and request.delivered
            self._drainer = me
            try:
                if not request.done.is_set():
                    self._drain(until=request)
            finally:
                self._drainer = None
                self._drain_lock.release()
            return request.done.is_set() and request.delivered
        self._wake.set()
        return request.done.wait(timeout) and request.delivered

    def _take_drain(self, request: _FlushRequest, timeout: float | None) -> bool:
        """Hold the drain lock; False if another drain handled ``request`` meanwhile
        (it may go on with what was queued later) or the timeout passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._drain_lock.acquire(timeout=_LOCK_POLL):
            if request.done.is_set() or (deadline is not None and time.monotonic() >= deadline):
                return False
        return True

    def shutdown(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        dropped_before = self._dropped_at_flush  # what the last flush reported
        delivered = self.flush(timeout)
        for pause in _EXIT_RETRY_PAUSES:
            # Only what the spool keeps can still be delivered; a drop stays a drop.
            left = None if deadline is None else deadline - time.monotonic() - pause
            alive = self._thread is not None and self._thread.is_alive()
            kept = self.spool is not None and self.spool.has_pending()
            if delivered or not alive or not kept or (left is not None and left <= 0):
                break
            time.sleep(pause)
            delivered = self.flush(left)
        delivered = delivered and self.counters.dropped_total() == dropped_before
        if not delivered and self._thread is not None and self._thread.is_alive():
            # The exporter is stuck (a destination that does not answer): what it holds
            # and what is still queued would die with the process. Spool it from here.
            self._rescue()
        self._stopped = True
        self.queue.append(_Stop())
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(0.5 if timeout is None else min(timeout, 0.5))
        close = getattr(self.destination, "close", None)
        if callable(close) and (self._thread is None or not self._thread.is_alive()):
            with contextlib.suppress(Exception):
                close()
        if self.spool is not None:
            self.spool.close()
        return delivered

    def _rescue(self) -> None:
        """Spool the batch in flight and every queued call, on the caller's thread.

        The batch in flight may still arrive, and then it is sent again from the spool:
        at least once, and the destination keeps one copy because records have ids.
        """
        if self.spool is None:
            return
        with self._spool_lock:
            in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            self._spool(*in_flight)
        pending: dict[str, list[Any]] = {}
        count = 0
        while True:
            try:
                item = self.queue.popleft()
            except IndexError:
                break
            if isinstance(item, _FlushRequest | _Stop):
                continue
            count += self._build_into(item, pending)
        if count:
            self.counters.add("captured", count)
            bundles = [Bundle(b, tuple(rs), _NAMESPACES) for b, rs in pending.items()]
            self._spool(bundles, count)

    # ------------------------------------------------------------ thread side

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.schedule_delay)
            self._wake.clear()
            try:
                with self._drain_lock:
                    self._drainer = threading.current_thread()
                    try:
                        self._drain()
                    finally:
                        self._drainer = None
            except Exception as exc:  # a bug of ours: keep the thread alive
                internal_error("the exporter thread", exc)
            if self._stop_seen:
                return

    def _drain(self, until: _FlushRequest | None = None) -> None:
        """Empty the queue into batches, or up to and including ``until``.

        Only with ``_drain_lock`` held. A stop marker ends the exporter thread after
        this drain (:attr:`_stop_seen`), whichever thread drained it.
        """
        pending: dict[str, list[Any]] = {}
        count = 0
        while True:
            try:
                item = self.queue.popleft()
            except IndexError:
                break
            if isinstance(item, _FlushRequest):
                self._send(pending, count, force=item.force)
                pending, count = {}, 0
                replayed = self._replay(force=item.force, rescan=True)
                dropped = self.counters.dropped_total()
                item.delivered = (
                    replayed
                    and not (self.spool is not None and self.spool.has_pending())
                    and dropped == self._dropped_at_flush
                )
                self._dropped_at_flush = dropped
                item.done.set()
                if item is until:
                    return
                continue
            if isinstance(item, _Stop):
                self._send(pending, count, force=True)
                pending, count = {}, 0
                self._stop_seen = True
                continue
            count += self._build_into(item, pending)
            if count >= self.batch_size:
                self._send(pending, count, force=False)
                pending, count = {}, 0
        self._send(pending, count, force=False)

    def _build_into(self, item: Any, pending: dict[str, list[Any]]) -> int:
        """Build one captured item's records into ``pending``; how many were added.

        A record we cannot build or that breaks the rules is a bug of ours: it is
        logged and counted as dropped, and the rest of the batch goes on.
        """
        try:
            pairs = self.builder.build(item)
        except Exception as exc:
            internal_error("building records", exc)
            self.counters.drop("internal error while building records", 1)
            return 0
        added = 0
        for bundle, record in pairs:
            try:
                check_record(record)
            except InvalidRecord as exc:
                internal_error(f"an invalid record ({exc.field})", exc)
                self.counters.drop("invalid record", 1)
                continue
            pending.setdefault(bundle, []).append(record)
            added += 1
        return added

    def _send(self, pending: dict[str, list[Any]], count: int, *, force: bool) -> None:
        if not pending:
            if self.spool is not None and self.spool.has_pending():
                self._replay(force=force)
            return
        self.counters.add("captured", count)
        bundles = [Bundle(b, tuple(rs), _NAMESPACES) for b, rs in pending.items()]
        # Nothing newer may overtake what is spooled: replay first, or spool behind it.
        if self.spool is not None and self.spool.has_pending() and not self._replay(force=force):
            self._spool(bundles, count)
            return
        if not force and time.monotonic() < self._retry_at and self.spool is not None:
            self._spool(bundles, count)
            return
        with self._spool_lock:
            self._in_flight = (bundles, count)
        try:
            self.destination.export(bundles)
        except Exception as exc:
            if not self._taken_back(bundles):
                return  # the exit hook spooled it meanwhile, and counted it
            if isinstance(exc, Refused | InvalidRecord | Conflict):
                self._refused(exc, count)
                return
            self._failed(exc)
            self._spool(bundles, count)
            return
        if not self._taken_back(bundles):
            return  # delivered, but also spooled by the exit hook: replayed harmlessly
        self._succeeded()
        self.counters.add("exported", count)

    def _taken_back(self, bundles: list[Bundle]) -> bool:
        """Clear the in-flight batch; False if the exit hook rescued it meanwhile."""
        with self._spool_lock:
            mine = self._in_flight is not None and self._in_flight[0] is bundles
            if mine:
                self._in_flight = None
            return mine

    def _refused(self, exc: BaseException, count: int) -> None:
        log_once(
            f"refused:{type(exc).__name__}",
            "provml capture: %s refused a batch of %d records (%s); it is dropped",
            _describe(self.destination),
            count,
            exc,
        )
        self.counters.drop("refused by the destination", count)

    def _failed(self, exc: BaseException) -> None:
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, _MAX_BACKOFF)
        where = self.spool.directory if self.spool is not None else "nowhere (no spool)"
        log_once(
            f"unavailable:{_describe(self.destination)}",
            "provml capture: %s is unavailable (%s); spooling batches in %s and retrying",
            _describe(self.destination),
            exc if isinstance(exc, ProvmlError) else f"{type(exc).__name__}: {exc}",
            where,
        )

    def _succeeded(self) -> None:
        if self._retry_at:
            logger.info("provml capture: %s is reachable again", _describe(self.destination))
        self._retry_at = 0.0
        self._backoff = 0.5

    def _spool(self, bundles: list[Bundle], count: int) -> None:
        if self.spool is None:
            self.counters.drop("destination unavailable and no spool", count)
            return
        try:
            self.spool.append(wire_batch(bundles, count))
        except OSError as exc:
            reason = f"spool unwritable ({exc.strerror or type(exc).__name__})"
            # One line for the cause: what failed, and that batches are now dropped.
            log_once(
                f"spool-error:{exc.errno}",
                "provml capture: cannot write the spool in %s: %s; batches the destination "
                "does not take are dropped and counted in provml.capture.stats()",
                self.spool.directory,
                exc,
            )
            self.counters.drop(reason, count, logged=True)
            return
        self.counters.add("spooled", count)

    def _replay(self, *, force: bool, rescan: bool = False) -> bool:
        """Send spooled batches in order; True when the spool is empty afterwards."""
        spool = self.spool
        if spool is None:
            return True
        if rescan:
            spool.rescan()
        if not spool.has_pending():
            return True
        if not force and time.monotonic() < self._retry_at:
            return False
        for reader in spool.readers():
            try:
                for batch in reader.batches():
                    try:
                        bundles = [bundle_from_dict(b) for b in batch.payload.get("bundles", ())]
                        self.destination.export(bundles)
                    except (Refused, InvalidRecord, Conflict) as exc:
                        self._refused(exc, batch.records)
                    except Exception as exc:
                        self._failed(exc)
                        if not reader.owned:
                            reader.handle.close()
                        spool.rescan()
                        return False
                    else:
                        self._succeeded()
                        self.counters.add("replayed", batch.records)
                    spool.acknowledged(reader, batch)
                spool.finished(reader)
            except OSError as exc:
                log_once(
                    f"spool-read:{reader.path}",
                    "provml capture: cannot read spool file %s (%s)",
                    reader.path,
                    exc,
                )
                if not reader.owned:
                    reader.handle.close()
        return not spool.has_pending()
