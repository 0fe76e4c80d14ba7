"""Content digests of files remembered across processes, as Git's index and DVC do.

A raw survey or cube is read by job after job; hashing it again in every job costs a
read of every byte. The digest of a file is remembered under its path, device, inode,
size, modification and status-change times (nanoseconds): if any of them differs the
file is hashed again. A file modified less than :data:`RACY_SECONDS` before it was hashed
is not remembered (Git's "racy" rule): a write in the same clock tick as the hash would
not change its times.

The cache is one JSON-lines file per user (``PROVML_DIGEST_CACHE``, default
``$XDG_CACHE_HOME/provml/digests.jsonl``; ``off`` disables it), read once per process on
the exporter thread and appended to (one short ``O_APPEND`` write per new digest, so
concurrent jobs interleave whole lines). A line that does not parse is ignored. Only
the newest entry of a path is kept: a file rewritten at that path has a new inode or
status-change time, which never goes back, so the older entries can never match again
(a job's outputs are rewritten by every run, and each run added a line). When the file
holds more than twice as many lines as live entries (and over ``_COMPACT_LINES``) it is
rewritten (to a temporary file, then renamed).

Imports: standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from provml.capture._state import log_once

RACY_SECONDS = 2.0
_COMPACT_LINES = 1_000

Key = tuple[str, int, int, int, int, int]


def default_path() -> Path | None:
    configured = os.environ.get("PROVML_DIGEST_CACHE")
    if configured == "off":
        return None
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "provml" / "digests.jsonl"


def key_of(path: str, stat: os.stat_result) -> Key:
    return (path, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _rows(lines: list[bytes]) -> list[object]:
    """Each line's JSON value, leaving out lines that do not parse.

    One parse of all lines as a JSON array first (a job reads hundreds of lines at
    start-up, a parse each cost ~1 ms); it stands only if it gives exactly one value
    per line, as it does when every line is whole. Otherwise line by line.
    """
    lines = [line for line in lines if line.strip()]
    try:
        rows = json.loads(b"[" + b",".join(lines) + b"]")
    except ValueError:
        rows = None
    if isinstance(rows, list) and len(rows) == len(lines):
        return rows
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


class DigestCache:
    """Digests by :func:`key_of`, loaded lazily from and appended to one file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[Key, tuple[str, bool]] | None = None
        self._newest: dict[str, Key] = {}  # path -> the key of its one live entry
        self._lines = 0

    def _keep(
        self, entries: dict[Key, tuple[str, bool]], key: Key, value: tuple[str, bool]
    ) -> None:
        """Remember ``value`` under ``key``, forgetting the path's older entry."""
        older = self._newest.get(key[0])
        if older is not None and older != key:
            entries.pop(older, None)
        self._newest[key[0]] = key
        entries[key] = value

    def _load(self) -> dict[Key, tuple[str, bool]]:
        entries: dict[Key, tuple[str, bool]] = {}
        if self.path is not None:
            try:
                lines = self.path.read_bytes().splitlines()
            except FileNotFoundError:
                lines = []
            except OSError as exc:
                lines = []
                self._unusable(exc)
            self._lines += len(lines)
            for row in _rows(lines):
                try:
                    *key, digest, sampled = row  # type: ignore[misc]
                    if len(key) != 6 or not isinstance(key[0], str):
                        continue
                    self._keep(entries, tuple(key), (digest, bool(sampled)))  # type: ignore[arg-type]
                except (ValueError, TypeError):
                    continue
        self._entries = entries
        if self._lines > max(_COMPACT_LINES, 2 * len(entries)):
            self._compact()
        return entries

    def get(self, key: Key) -> tuple[str, bool] | None:
        entries = self._entries if self._entries is not None else self._load()
        return entries.get(key)

    def put(self, key: Key, value: tuple[str, bool]) -> None:
        entries = self._entries if self._entries is not None else self._load()
        mtime_s = key[4] / 1e9
        if time.time() - mtime_s < RACY_SECONDS:
            return  # modified too recently to trust its times
        self._keep(entries, key, value)
        if self.path is None:
            return
        line = json.dumps([*key, *value], separators=(",", ":")).encode() + b"\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
            self._lines += 1
        except OSError as exc:
            self._unusable(exc)

    def _compact(self) -> None:
        if self.path is None or self._entries is None:
            return
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as f:
                for key, value in self._entries.items():
                    f.write(json.dumps([*key, *value], separators=(",", ":")).encode() + b"\n")
            os.replace(tmp, self.path)
            self._lines = len(self._entries)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            self._unusable(exc)

    def _unusable(self, exc: OSError) -> None:
        log_once(
            f"digest-cache:{self.path}",
            "provml capture: cannot use the digest cache %s (%s); files are hashed every time",
            self.path,
            exc,
            level=20,
        )
        self.path = None
