"""The embedded store's inbox: batches written by jobs, ingested by whoever opens the store.

A training job that captures into the embedded store does not open the store: that
would import SQLAlchemy, check the schema and run SQLite transactions inside the user's
job, half a CPU second before the first record. Instead the capture exporter drops each
batch into ``<store>.inbox/`` (standard library only: write, fsync, rename), and the next
process that opens the store for reading or serving — ``open_record_store``, every
``provml`` command, ``provml serve`` on its projection interval — ingests the waiting
batches, oldest first, one transaction each, and deletes them.

One file per batch, ``<uuid7>-<pid>.json`` (so names sort by creation), in the spool's
wire form (``{"records": n, "bundles": [...]}``). A batch is written to ``*.tmp`` and
renamed when complete, so a reader never sees half of one. A reader holds an exclusive
``flock`` on the file it ingests, so two readers never ingest one batch at the same time;
a batch ingested twice (a reader killed between the commit and the unlink) is harmless,
because records have ids. A batch the store refuses (a conflict, an invalid record) is
moved to ``refused/`` beside the others and logged, never silently deleted.

Imports: standard library and ``provml.ids`` only (capture imports this).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provml import ids

try:
    import fcntl
except ImportError:  # Windows: no flock; one reader at a time is the user's to ensure
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("provml.inbox")

SUFFIX = ".json"
REFUSED = "refused"


def write(directory: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Put one batch into the inbox durably; raises OSError (disk full, read-only…)."""
    return write_encoded(directory, encode(payload))


def encode(payload: dict[str, Any]) -> bytes:
    """A batch as :func:`write` puts it on disk: compact UTF-8 JSON."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def write_encoded(directory: str | os.PathLike[str], data: bytes) -> Path:
    """:func:`write` for a batch already encoded as :func:`encode` does."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{ids.uuid7()}-{os.getpid()}"
    tmp, final = folder / (name + ".tmp"), folder / (name + SUFFIX)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _sync_directory(folder)
    return final


def _sync_directory(folder: Path) -> None:
    """fsync the directory, so the rename survives a power cut (POSIX only)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def waiting(directory: str | os.PathLike[str]) -> list[Path]:
    """The batches in the inbox, oldest first."""
    try:
        return sorted(Path(directory).glob("*" + SUFFIX))
    except OSError:
        return []


@dataclass(slots=True)
class Drained:
    batches: int = 0
    records: int = 0
    refused: int = 0


def drain(
    directory: str | os.PathLike[str],
    ingest: Callable[[list[dict[str, Any]]], None],
    *,
    refused: tuple[type[BaseException], ...] = (),
) -> Drained:
    """Ingest every waiting batch, oldest first; stop at the first failure to ingest.

    ``ingest`` takes one batch's bundles (wire form) and commits them in one
    transaction. An exception of a type in ``refused`` means the store will never take
    that batch: it is moved to ``refused/`` and draining goes on; any other exception
    propagates and leaves the batch (and everything after it) waiting.
    """
    done = Drained()
    for path, payload in _claimed(Path(directory)):
        try:
            ingest(list(payload.get("bundles", ())))
        except refused as exc:
            _refuse(path, exc)
            done.refused += int(payload.get("records", 0))
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        done.batches += 1
        done.records += int(payload.get("records", 0))
    return done


def _claimed(folder: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Each waiting batch, read while this process holds its lock."""
    for path in waiting(folder):
        try:
            handle = path.open("rb")
        except OSError:  # ingested and deleted by another reader meanwhile
            continue
        with handle:
            if fcntl is not None:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:  # another reader is ingesting it
                    continue
            if os.fstat(handle.fileno()).st_nlink == 0:
                continue  # ingested and deleted while we waited for the lock
            try:
                payload = json.loads(handle.read())
            except ValueError as exc:
                _refuse(path, exc)
                continue
            if not isinstance(payload, dict):
                _refuse(path, ValueError("not a batch object"))
                continue
            yield path, payload


def _refuse(path: Path, exc: BaseException) -> None:
    target = path.parent / REFUSED / path.name
    with contextlib.suppress(OSError):
        target.parent.mkdir(exist_ok=True)
        os.replace(path, target)
    logger.error(
        "provml: the store refused the captured batch %s (%s); kept in %s", path.name, exc, target
    )
