"""Point-in-time copies of the writable Oxigraph store, for the SPARQL query workers.

A query worker cannot read the writer's directory safely. RocksDB opens a read-only
handle's table files lazily (16 at open, the rest on first use), and the writer deletes
the files a compaction replaced. A handle opened before a compaction then meets a
missing file in mid-query, and pyoxigraph 0.5's quad iterator returns that error on every
step without ever ending: the query spins until its worker is killed at the time limit.
Under the load test this made one or two SPARQL requests in 180 s run past 30 s
(``py-spy dump --native`` of the worker: ``rocksdb::Status::ToString`` and
``StorageError::from`` in a loop inside ``_evaluate``).

So the writer hands the workers a RocksDB checkpoint (``Store.backup``) instead: its
table files are hard links, which the writer's compactions cannot take away, and the
checkpoint flushes the memtables first, so a worker's open has no write-ahead log to
replay (0.04-0.1 s instead of 0.7 s after 20 000 unflushed quads). A snapshot is made
when a query arrives and the projection has moved since the last one (a backup takes
0.13-0.2 s on a store of 1M quads), shared by the queries that arrive meanwhile, and
deleted once a newer one exists and no query is using it. A worker that still holds an
older one open is never sent a query for it again (requests name the newest), so the
deletion cannot reach a query.

Imports: standard library only; the store comes in as a pyoxigraph ``Store``.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_WAIT = 2.0  # seconds a query waits for the writer before reading the newest snapshot


class ReadSnapshots:
    """Checkpoints of one writable on-disk store, in ``<store directory>.snapshots``."""

    def __init__(self, store_directory: Path) -> None:
        self.root = store_directory.with_name(store_directory.name + ".snapshots")
        shutil.rmtree(self.root, ignore_errors=True)  # an earlier process's leftovers
        self._lock = threading.Lock()
        self._newest: tuple[int, Path] | None = None  # (generation, directory)
        self._users: Counter[Path] = Counter()
        self._serial = 0

    @contextlib.contextmanager
    def use(self, store: Any, generation: int, writes: Any) -> Iterator[Path]:
        """The directory of a snapshot of ``generation`` (or the newest, while the writer is
        busy), kept while in use.

        ``writes`` is the writer's projection lock, so a checkpoint is taken between
        projections, never while one writes from another thread. In one CI run of the
        load test the projector stopped for good, with checkpoints taken during its
        writes; not reproduced yet, a deadlock between ``Store.backup``'s flush and a
        concurrent write is the suspect. A rebuild holds that lock for minutes: past
        ``_WAIT`` s the query reads the newest snapshot.

        Raises:
            OSError: the checkpoint could not be written (a full disk, say), or there
                is no snapshot yet and the writer stayed busy.
        """
        with self._lock:
            if self._newest is None or self._newest[0] != generation:
                if writes.acquire(timeout=_WAIT):
                    try:
                        self._serial += 1
                        directory = self.root / f"{self._serial:08d}"
                        self.root.mkdir(parents=True, exist_ok=True)
                        store.backup(str(directory))
                        self._newest = (generation, directory)
                    finally:
                        writes.release()
                    self._collect()
                elif self._newest is None:
                    raise OSError("the RDF store is being rebuilt; no snapshot to query yet")
            directory = self._newest[1]
            self._users[directory] += 1
        try:
            yield directory
        finally:
            with self._lock:
                self._users[directory] -= 1
                if not self._users[directory]:
                    del self._users[directory]
                    if self._newest is None or directory != self._newest[1]:
                        self._collect()  # the last query on a superseded snapshot left

    def _collect(self) -> None:
        """Delete the snapshots that are neither the newest nor in use (lock held)."""
        if not self.root.is_dir():
            return
        newest = self._newest[1] if self._newest is not None else None
        for directory in self.root.iterdir():
            if directory != newest and directory not in self._users:
                shutil.rmtree(directory, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            self._newest = None
            self._users.clear()
            shutil.rmtree(self.root, ignore_errors=True)
