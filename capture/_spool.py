"""The local spool: batches the destination did not take, kept on disk until it does.

One JSON-lines file per process (``<uuid7>-<pid>.jsonl``, so names sort by creation),
each line one batch in the wire form, appended and fsync'd before the batch counts as
spooled. A process holds an exclusive ``flock`` on its own file; any process using the
same directory replays files whose owner is gone, oldest first, then its own. Progress
is kept in ``<file>.offset`` (written after each acknowledged batch) and a file is
deleted once every batch in it was acknowledged — so a batch is delivered once, or, if
the process dies between the acknowledgement and the offset write, sent again to a
destination that ignores a replay because every record has an id.

Imports: standard library and ``provml.ids`` only.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from provml import ids

try:
    import fcntl
except ImportError:  # Windows: no flock; only a process's own file is replayed
    fcntl = None  # type: ignore[assignment]


@dataclass(slots=True)
class SpooledBatch:
    payload: dict[str, Any]
    records: int
    end: int  # offset just after this batch's line


class _Reader:
    """Iterates the unacknowledged batches of one spool file and records progress."""

    def __init__(self, path: Path, handle: BinaryIO, owned: bool) -> None:
        self.path = path
        self.handle = handle
        self.owned = owned  # our own file: keep the handle (and lock) open
        self.offset_path = path.with_suffix(".offset")
        try:
            self.offset = int(self.offset_path.read_text() or 0)
        except (OSError, ValueError):
            self.offset = 0

    def batches(self) -> Iterator[SpooledBatch]:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            position = self.offset
            for line in f:
                end = position + len(line)
                if not line.endswith(b"\n"):
                    return  # a batch cut short by a crash mid-write: never acknowledged
                position = end
                try:
                    payload = json.loads(line)
                except ValueError:
                    continue
                yield SpooledBatch(payload, int(payload.get("records", 0)), end)

    def ack(self, batch: SpooledBatch) -> None:
        self.offset = batch.end
        tmp = self.offset_path.with_suffix(".offset.tmp")
        with tmp.open("w") as f:
            f.write(str(self.offset))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.offset_path)

    def finish(self) -> None:
        """Every batch acknowledged: remove the file and its progress."""
        for p in (self.path, self.offset_path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        if not self.owned:
            self.handle.close()


class Spool:
    """This process's spool file plus the orphaned files of processes that are gone."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).absolute()
        self._path: Path | None = None
        self._file: BinaryIO | None = None
        self._written = 0
        self._read = 0
        self._look_for_orphans = True

    # ----------------------------------------------------------------- writing

    def append(self, payload: dict[str, Any]) -> None:
        """Write one batch durably; raises OSError (disk full, read-only…)."""
        line = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{ids.uuid7()}-{os.getpid()}.jsonl"
            # Unbuffered: a failed write must not leave bytes in a buffer that a later
            # flush (or truncate) would try to write again behind our back.
            handle = path.open("ab", buffering=0)
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._path, self._file, self._written, self._read = path, handle, 0, 0
        try:
            view = memoryview(line)
            while view:  # a raw write may write less than asked (a disk filling up)
                view = view[self._file.write(view) :]
            os.fsync(self._file.fileno())
        except OSError:
            # Cut a partial line off so the file stays readable line by line and the
            # next batch appended does not glue onto it.
            with contextlib.suppress(OSError):
                os.ftruncate(self._file.fileno(), self._written)
            raise
        self._written += len(line)

    # ---------------------------------------------------------------- reading

    def has_pending(self) -> bool:
        return self._written > self._read or self._look_for_orphans

    def rescan(self) -> None:
        self._look_for_orphans = True

    def _orphans(self) -> Iterator[_Reader]:
        try:
            names = sorted(p for p in self.directory.glob("*.jsonl") if p != self._path)
        except OSError:
            return
        for path in names:
            try:
                handle = path.open("rb")
            except OSError:
                continue
            if fcntl is not None:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:  # its process is alive and owns it
                    handle.close()
                    continue
            else:
                handle.close()
                continue
            yield _Reader(path, handle, owned=False)

    def readers(self) -> Iterator[_Reader]:
        """Orphaned files oldest first, then this process's own file."""
        if self._look_for_orphans:
            yield from self._orphans()
            self._look_for_orphans = False
        if self._file is not None and self._path is not None and self._written > self._read:
            reader = _Reader(self._path, self._file, owned=True)
            reader.offset = max(reader.offset, self._read)
            yield reader

    def acknowledged(self, reader: _Reader, batch: SpooledBatch) -> None:
        reader.ack(batch)
        if reader.owned:
            self._read = batch.end

    def finished(self, reader: _Reader) -> None:
        if reader.owned:
            if self._read < self._written:
                return
            if self._file is not None:
                self._file.close()
            self._file, self._path, self._written, self._read = None, None, 0, 0
        reader.finish()

    def pending_files(self) -> list[Path]:
        try:
            return sorted(self.directory.glob("*.jsonl"))
        except OSError:
            return []

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
