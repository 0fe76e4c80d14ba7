"""Query worker processes: SPARQL with a time limit that really stops the query.

pyoxigraph cannot cancel a running query, so a query with a time limit runs in a
separate process that can be killed. Workers are fresh interpreters (never forked:
a fork taken while another thread is inside pyoxigraph can inherit a held lock and
hang), each opening the on-disk store read-only and answering one query at a time.
Idle workers are kept for the next query; a worker that overran its limit is killed.

A read-only RocksDB handle is a snapshot, so every request names the directory to
read and its *generation*: a writer's newest checkpoint (:mod:`provml._rdf_snapshots`),
or for a read-only store the store itself and the number its refreshes bumped. A worker
reopens its handle when either changed.

Protocol on the worker's stdin/stdout: 8-byte big-endian length, then a pickle.
Request ``(directory, generation, sparql, options, max_rows)``; reply
``("ok", QueryResult)`` or ``("raised", exception)``. End of stdin ends the worker.

Imports: standard library; the worker side imports :mod:`provml.rdf` (pyoxigraph).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from provml.errors import QueryTimeout, StoreUnavailable

_log = logging.getLogger(__name__)
_HEADER = struct.Struct(">Q")
_STARTUP_LIMIT = 60.0  # seconds for a new worker to import pyoxigraph and say it is ready
_READY = "ready"
_STORAGE_ERRORS = ("IO error", "Corruption", "No such file")


# ------------------------------------------------------------------- the worker side


def _read_message(stream: BinaryIO) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    return pickle.loads(stream.read(size))


def _write_message(stream: BinaryIO, message: Any) -> None:
    data = pickle.dumps(message)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def serve() -> None:
    """Answer the queries on stdin until stdin closes."""
    from provml.rdf import _evaluate, _open_read_only

    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but replies may reach the parent's pipe
    store, opened = None, None
    _write_message(replies, _READY)
    while (request := _read_message(requests)) is not None:
        directory, generation, sparql, options, max_rows = request
        reply: tuple[str, Any] = ("raised", StoreUnavailable("no answer"))
        for attempt in (1, 2):
            try:
                if store is None or (directory, generation) != opened:
                    store = None  # let go of the old handle (and its files) first
                    store, opened = _open_read_only(directory), (directory, generation)
                reply = ("ok", _evaluate(store, sparql, options, max_rows))
                break
            except (OSError, RuntimeError) as exc:
                reply = ("raised", exc)
                # The writer compacted away a file this snapshot still lists: reopen.
                if attempt == 2 or not any(m in str(exc) for m in _STORAGE_ERRORS):
                    break
                store = None
            except BaseException as exc:
                reply = ("raised", exc)
                break
        try:
            _write_message(replies, reply)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            failure = StoreUnavailable(f"the query's answer could not be sent back: {exc}")
            _write_message(replies, ("raised", failure))


# ------------------------------------------------------------------- the parent side


class _Worker:
    def __init__(self) -> None:
        # The worker must import this very provml, installed or not.
        here = str(Path(__file__).resolve().parents[1])
        python_path = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "provml._sparql_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": python_path},
        )
        self._buffer = b""
        try:
            ready = self.receive(time.monotonic() + _STARTUP_LIMIT)
        except (QueryTimeout, StoreUnavailable):
            ready = None
        if ready != _READY:
            self.kill()
            raise StoreUnavailable("a SPARQL worker process did not start")

    def send(self, message: Any) -> None:
        assert self.process.stdin is not None
        data = pickle.dumps(message)
        self.process.stdin.write(_HEADER.pack(len(data)) + data)
        self.process.stdin.flush()

    def receive(self, deadline: float) -> Any:
        """The next reply, or :class:`QueryTimeout` when it is not complete by ``deadline``."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        needed = _HEADER.size
        size = None
        while True:
            if len(self._buffer) >= needed:
                if size is None:
                    (size,) = _HEADER.unpack(self._buffer[: _HEADER.size])
                    needed = _HEADER.size + size
                    continue
                data, self._buffer = self._buffer[_HEADER.size : needed], self._buffer[needed:]
                return pickle.loads(data)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise QueryTimeout("deadline", timeout=None)
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise StoreUnavailable("a SPARQL worker process ended without an answer")
            self._buffer += chunk

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def close(self) -> None:
        """Ask the worker to end (end of stdin); kill it if it does not."""
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self.kill()


class WorkerPool:
    """Worker processes for one on-disk store; at most ``size`` queries run at once."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._idle: list[_Worker] = []
        self._busy = 0
        self._closed = False
        self._free = threading.Condition()

    def _acquire(self, deadline: float) -> _Worker:
        with self._free:
            while not self._idle and self._busy >= self.size:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._free.wait(remaining):
                    raise QueryTimeout(
                        f"all {self.size} SPARQL workers stayed busy past the time limit"
                    )
            if self._closed:
                raise StoreUnavailable("the RDF store is closed")
            self._busy += 1
            if self._idle:
                return self._idle.pop()
        try:
            return _Worker()  # started outside the lock: it takes a while
        except BaseException:
            self._release(None)
            raise

    def _release(self, worker: _Worker | None) -> None:
        with self._free:
            self._busy -= 1
            if worker is not None:
                if self._closed:
                    worker.close()
                else:
                    self._idle.append(worker)
            self._free.notify()

    def prestart(self) -> None:
        """Start one worker ahead of the first query, unless one exists or is starting.

        A worker is an interpreter importing pyoxigraph, ~0.1-0.2 s that the first query
        of every server process otherwise waits for. Failing here only logs: the first
        query then starts its own worker and reports what goes wrong.
        """
        with self._free:
            if self._closed or self._idle or self._busy:
                return
            self._busy += 1  # the slot a query would take, so that none starts a second
        try:
            worker = _Worker()
        except Exception as exc:
            self._release(None)
            _log.warning("could not start a SPARQL worker ahead of the first query: %s", exc)
            return
        self._release(worker)

    def run(self, request: tuple[Any, ...], timeout: float) -> Any:
        """Send ``request`` to a worker; return its answer or raise what it raised.

        The time limit counts from when a worker has the query; starting a new worker
        (an interpreter importing pyoxigraph) is not the query's time.
        """
        worker = self._acquire(time.monotonic() + timeout)
        try:
            worker.send(request)
            outcome, value = worker.receive(time.monotonic() + timeout)
        except QueryTimeout:
            worker.kill()  # the only way to stop an Oxigraph query
            self._release(None)
            _log.warning("a SPARQL query ran past its %g s limit; its worker was killed", timeout)
            raise QueryTimeout(
                f"the query ran longer than {timeout:g} s and was stopped", timeout=timeout
            ) from None
        except BaseException:
            worker.kill()
            self._release(None)
            raise
        self._release(worker)
        if outcome == "raised":
            raise value
        return value

    def close(self) -> None:
        with self._free:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()


if __name__ == "__main__":
    serve()
