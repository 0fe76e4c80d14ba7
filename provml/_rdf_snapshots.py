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
0.13-0.2 s on a store of 1M quads; while a projection runs, the projector makes it
between two bundles, see :class:`ReadSnapshots`), shared by the queries that arrive
meanwhile, and deleted once a newer one exists and no query is using it. A worker that
still holds an older one open is never sent a query for it again (requests name the
newest), so the deletion cannot reach a query. Other processes reading the store copy
the snapshots the owner publishes for them (:class:`CopiedSnapshots`), and read nothing
else: until the owner has published one, they have nothing to answer from. So the owner
publishes one as it starts, before it catches up, and during a catch-up between two
bundles once an interval (:meth:`ReadSnapshots.publish_between_bundles`), not only once
the outbox is empty: a catch-up after a bulk ingest of 1M records ran 85-110 s.

Imports: standard library only; the store comes in as a pyoxigraph ``Store``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_log = logging.getLogger("provml.rdf")

_WAIT = 2.0  # seconds a query waits for the writer's checkpoint before reading the newest
_FRESH = 1.0  # seconds a snapshot is young enough to serve while the writer projects
_PUBLISHED = "PUBLISHED"  # in the owner's snapshots directory: the newest one's name
# Seconds a snapshot serves before it is renewed because the writer compacted the table
# files it holds (see ReadSnapshots._compacted_since).
_SETTLE = 10.0


#: In mid-pass, the projection runs this many times as long as the last checkpoint took
#: before the next one (:meth:`ReadSnapshots.publish_between_bundles`).
_MID_PASS_PAUSES = 20


class ReadSnapshots:
    """Checkpoints of one writable on-disk store, in ``<store directory>.snapshots``.

    A checkpoint is only ever taken by the thread holding the writer's projection
    lock (``writes``): by a query when the lock is free, or by the projector itself,
    between two bundles of a pass, when a query asked for one (:meth:`serve_request`)
    or the readers are due one (:meth:`publish_between_bundles`).
    In one CI run of the load test the projector stopped for good while checkpoints
    were taken beside its writes (a deadlock between ``Store.backup``'s flush and a
    concurrent write is the suspect, not reproduced). Waiting for the lock instead
    made queries wait for whole passes: the load test's SPARQL p50 went from 284 to
    475 ms.
    """

    def __init__(self, store_directory: Path) -> None:
        self.store_directory = store_directory
        self.root = store_directory.with_name(store_directory.name + ".snapshots")
        shutil.rmtree(self.root, ignore_errors=True)  # an earlier process's leftovers
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a new newest snapshot
        self._newest: tuple[int, Path] | None = None  # (generation, directory)
        self._taken = 0.0  # time.monotonic() when the newest was taken
        self._newest_tables: frozenset[str] = frozenset()  # the newest one's table files
        self._wanted = False  # a query waits for the writer to take one
        self._publish_due = 0.0  # see publish_between_bundles: not before this time
        self._users: Counter[Path] = Counter()
        self._serial = 0
        # Names unique across restarts of the owner: a reader tells a new one by name.
        self._prefix = f"{os.getpid()}-{secrets.token_hex(4)}"

    @contextlib.contextmanager
    def use(
        self, store: Any, generation: int, writes: Any, first_wait: float = _WAIT
    ) -> Iterator[Path]:
        """The directory of a snapshot of ``generation``, or near it, kept while in use.

        With the writer idle, a query takes a checkpoint itself. While the writer
        projects, a snapshot under ``_FRESH`` s old serves at once; an older one is
        renewed by the projector at its next bundle, and the query waits for that up to
        ``_WAIT`` s (a rebuild holds the lock for minutes), then reads the newest. So
        answers lag the projection by about a second at most while it runs.

        With no snapshot at all yet (a new service whose store is being built), there
        is nothing older to read: the query waits up to ``first_wait`` s (its own time
        limit) for the writer to finish, then takes the first one. A CI run answered
        503 to the first query of a new, empty service after the 2 s wait, while the
        rebuild of its empty store ran on a busy machine.

        Raises:
            OSError: the checkpoint could not be written (a full disk, say), or there
                is no snapshot yet and the writer stayed busy for ``first_wait`` s.
        """
        with self._lock:
            stale = self._newest is None or self._newest[0] != generation
            if not stale and self._compacted_since():
                self._take_if_idle(store, generation, writes)  # else the newest serves on
            elif stale and not self._take_if_idle(store, generation, writes):
                if self._newest is None:
                    self._wait_for_first(store, generation, writes, first_wait)
                elif time.monotonic() - self._taken >= _FRESH:
                    before, self._wanted = self._newest, True
                    self._changed.wait_for(lambda: self._newest is not before, timeout=_WAIT)
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

    def _compacted_since(self) -> bool:
        """Whether the newest snapshot is ``_SETTLE`` s old and the writer's table files
        are no longer the ones it holds (our lock held).

        A snapshot taken right after a burst of writes keeps the burst's table files
        as they were, before RocksDB's compactions merged them in the writer's
        directory. Queries on it stay slow for as long as it serves, and with nothing
        new projected it served on: 147 ms against 65 ms on the compacted directory
        for the same query at 300k records (48 table files against 20).
        """
        if self._newest is None or time.monotonic() - self._taken < _SETTLE:
            return False
        return _table_files(self.store_directory) != self._newest_tables

    def _take_if_idle(self, store: Any, generation: int, writes: Any) -> bool:
        """Take a checkpoint if the writer is idle (its projection lock free); our lock
        held. True if one was taken."""
        if not writes.acquire(blocking=False):
            return False
        try:
            self._take(store, generation)
        finally:
            writes.release()
        return True

    def _wait_for_first(self, store: Any, generation: int, writes: Any, wait: float) -> None:
        """Wait up to ``wait`` s for the first snapshot (our lock held; released while
        waiting): made by the projector between two bundles, or by us once it is idle.
        """
        deadline = time.monotonic() + wait
        self._wanted = True
        while self._newest is None:
            if self._take_if_idle(store, generation, writes):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OSError(
                    f"the RDF store is being rebuilt; no snapshot to query yet after {wait:g} s"
                )
            self._changed.wait(min(remaining, 0.05))

    @property
    def wanted(self) -> bool:
        """Whether a query waits for the writer to take a checkpoint."""
        return self._wanted

    def serve_request(self, store: Any, generation: int) -> None:
        """Take the checkpoint a waiting query asked for; the writer calls this between
        two bundles, holding its projection lock. Costs nothing when none is wanted."""
        if not self._wanted:
            return
        with self._lock:
            if not self._wanted:
                return
            try:
                self._take(store, generation)
            except OSError as exc:  # the projection goes on; the query reads the newest
                _log.warning("provml: cannot checkpoint the RDF store for a query: %s", exc)
                self._wanted = False
                self._changed.notify_all()

    def publish(self, store: Any, generation: int, min_age: float, writes: Any) -> bool:
        """Checkpoint for the other processes reading the store, if there are any, the
        projection moved since the newest snapshot (or the writer compacted the files it
        holds, see :meth:`_compacted_since`), and that is ``min_age`` s old.

        The projector calls this every interval, so without readers it costs a
        directory listing and no lock. ``writes`` is the projection lock, as for
        :meth:`use`. True if it took one.
        """
        if not _readers_exist(self.root):
            return False
        with writes, self._lock:
            if self._newest is not None and (
                time.monotonic() - self._taken < min_age
                or (self._newest[0] == generation and not self._compacted_since())
            ):
                return False
            self._take(store, generation)
            return True

    def publish_between_bundles(self, store: Any, generation: int, min_age: float) -> bool:
        """:meth:`publish` for the projector in mid-pass, between two bundles, holding
        the projection lock: a checkpoint if there are readers and the newest snapshot
        is ``min_age`` s old. True if it took one.

        The pass has written since the newest snapshot, so the generation (which moves
        only at the pass's end) is not compared; the snapshot carries the pass's
        generation, as one taken for a query in mid-pass does. Called after every
        bundle, so it reads the clock and nothing else until ``min_age`` s have passed:
        the readers are looked for once a ``min_age`` at most. A checkpoint stops the
        pass while it is taken (0.13-0.2 s at 1M quads, more on a bigger store), so the
        next one also waits :data:`_MID_PASS_PAUSES` times as long as this one took:
        checkpoints then take at most ~5 % of a long catch-up, whatever the interval.
        """
        now = time.monotonic()
        if now < self._publish_due:
            return False
        self._publish_due = now + min_age
        if not _readers_exist(self.root):
            return False
        with self._lock:
            if self._newest is not None and now - self._taken < min_age:
                self._publish_due = self._taken + min_age  # one taken for a query meanwhile
                return False
            self._take(store, generation)
            took = self._taken - now
            self._publish_due = self._taken + max(min_age, _MID_PASS_PAUSES * took)
            return True

    def _take(self, store: Any, generation: int) -> None:
        """Checkpoint the store as the newest snapshot and name it in ``PUBLISHED``,
        for the processes that read copies of it (both locks held)."""
        self._serial += 1
        directory = self.root / f"{self._prefix}-{self._serial:08d}"
        self.root.mkdir(parents=True, exist_ok=True)
        store.backup(str(directory))
        self._newest, self._taken, self._wanted = (generation, directory), time.monotonic(), False
        self._newest_tables = _table_files(directory)  # a snapshot's files never change
        staged = self.root / (_PUBLISHED + ".new")
        staged.write_text(directory.name)
        os.replace(staged, self.root / _PUBLISHED)
        self._changed.notify_all()
        self._collect()

    def _collect(self) -> None:
        """Delete the snapshots that are neither the newest nor in use (lock held)."""
        if not self.root.is_dir():
            return
        newest = self._newest[1] if self._newest is not None else None
        for directory in self.root.iterdir():
            if directory.is_dir() and directory != newest and directory not in self._users:
                shutil.rmtree(directory, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            self._newest = None
            self._users.clear()
            shutil.rmtree(self.root, ignore_errors=True)


class CopiedSnapshots:
    """For a process that reads a store another process writes: private copies of the
    snapshots the owner publishes, in ``<store directory>.snapshots-<pid>``.

    Such a process cannot take checkpoints of its own that are worth having: RocksDB
    makes one from a read-only handle, but without what the writer holds in its
    write-ahead log (a test here: 12 000 of 12 500 quads). And it must not read the
    owner's directory or the owner's snapshots in place, which the owner deletes
    (the spin of the module docstring). So it hard-links the newest published snapshot
    into a directory of its own: the links keep the files whatever the owner deletes.
    The owner publishes while such a directory of a live process exists
    (:meth:`ReadSnapshots.publish`).
    """

    def __init__(self, store_directory: Path) -> None:
        self.source = store_directory.with_name(store_directory.name + ".snapshots")
        self.root = store_directory.with_name(f"{store_directory.name}.snapshots-{os.getpid()}")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        self._lock = threading.Lock()
        self._current: Path | None = None
        self._previous: Path | None = None  # kept a round longer: the last handle on it
        self._users: Counter[Path] = Counter()

    def update(self) -> Path | None:
        """Copy the newest published snapshot if it is newer than ours; the directory of
        our newest copy, or None while the owner has published none."""
        try:
            name = (self.source / _PUBLISHED).read_text().strip()
        except OSError:
            return self._current
        if self._current is not None and self._current.name == name:
            return self._current
        copy = self.root / name
        try:
            shutil.copytree(self.source / name, copy, copy_function=os.link)
        except (OSError, shutil.Error):
            # Superseded and deleted while we linked: the next update takes the newer one.
            shutil.rmtree(copy, ignore_errors=True)
            return self._current
        with self._lock:
            self._previous, self._current = self._current, copy
            self._collect()
        return copy

    @contextlib.contextmanager
    def use(self) -> Iterator[Path | None]:
        """Our newest copy (None: none yet), kept while in use."""
        with self._lock:
            directory = self._current
            if directory is not None:
                self._users[directory] += 1
        try:
            yield directory
        finally:
            if directory is not None:
                self.unpin(directory)

    def pin(self, directory: Path) -> None:
        """Keep ``directory``, one of our two newest copies, until :meth:`unpin`.

        For a read in this process of a handle opened earlier: RocksDB reading a copy
        deleted under it does not fail, it spins for ever.
        """
        with self._lock:
            if directory not in (self._current, self._previous) and directory not in self._users:
                raise ValueError(f"{directory} is not a copy this process keeps")
            self._users[directory] += 1

    def unpin(self, directory: Path) -> None:
        with self._lock:
            self._users[directory] -= 1
            if not self._users[directory]:
                del self._users[directory]
                self._collect()

    def _collect(self) -> None:
        """Delete our copies that are neither of the two newest nor in use (lock held)."""
        for directory in self.root.iterdir():
            if directory not in (self._current, self._previous) and directory not in self._users:
                shutil.rmtree(directory, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            self._current = self._previous = None
            self._users.clear()
            shutil.rmtree(self.root, ignore_errors=True)


def _table_files(directory: Path) -> frozenset[str]:
    """The names of a RocksDB directory's table files (a snapshot's are hard links)."""
    try:
        return frozenset(e.name for e in os.scandir(directory) if e.name.endswith(".sst"))
    except OSError:
        return frozenset()


def _readers_exist(snapshots_root: Path) -> bool:
    """Whether a live process reads copies of this store; dead ones' copies are removed."""
    found = False
    for directory in snapshots_root.parent.glob(snapshots_root.name + "-*"):
        pid = directory.name.rsplit("-", 1)[1]
        if pid.isdigit() and _alive(int(pid)):
            found = True
        else:
            shutil.rmtree(directory, ignore_errors=True)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
