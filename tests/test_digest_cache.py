"""Content digests remembered across processes: a raw file used by job after job is read
once, and any change to it (content, size, times, a new file at the path) is hashed again.

Real files; each "process" is a fresh :class:`~provml.capture._values.Digests`, which is
what every new capture process makes; the count of files actually hashed is read off a
wrapper around :func:`provml.ids.digest_file`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time

import pytest

from provml import ids
from provml.capture import _values
from provml.capture._digest_cache import RACY_SECONDS

BASE = "https://example.org/"


@pytest.fixture
def hashed(monkeypatch):
    """The paths actually read and hashed, in order."""
    seen: list[str] = []
    real = ids.digest_file

    def counting(path, size=None):
        seen.append(os.fspath(path))
        return real(path, size)

    monkeypatch.setattr(ids, "digest_file", counting)
    return seen


def old_file(path, data: bytes, age: float = 60.0):
    path.write_bytes(data)
    past = time.time() - age
    os.utime(path, (past, past))
    return path


def digest_in_a_new_process(path):
    return _values.Digests(BASE).path(path, None).attributes["contentDigest"]


def test_a_file_hashed_by_one_process_is_not_read_again_by_the_next(tmp_path, hashed):
    raw = old_file(tmp_path / "survey-0001.npy", os.urandom(200_000))
    first = digest_in_a_new_process(raw)
    second = digest_in_a_new_process(raw)
    assert first == second == ids.digest_bytes(raw.read_bytes())
    assert hashed == [str(raw)]


def test_changed_content_with_the_same_size_and_mtime_is_hashed_again(tmp_path, hashed):
    raw = old_file(tmp_path / "survey.npy", b"A" * 4096)
    before = digest_in_a_new_process(raw)
    stat = raw.stat()
    raw.write_bytes(b"B" * 4096)
    os.utime(raw, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the old mtime put back
    assert raw.stat().st_mtime_ns == stat.st_mtime_ns
    after = digest_in_a_new_process(raw)
    assert after != before and after == ids.digest_bytes(b"B" * 4096)
    assert len(hashed) == 2


def test_a_new_file_at_the_same_path_is_hashed_again(tmp_path, hashed):
    raw = old_file(tmp_path / "survey.npy", b"first" * 100)
    digest_in_a_new_process(raw)
    raw.unlink()
    old_file(tmp_path / "survey.npy", b"other" * 100)
    assert digest_in_a_new_process(raw) == ids.digest_bytes(b"other" * 100)
    assert len(hashed) == 2


def test_a_file_modified_just_now_is_not_remembered_across_processes(tmp_path, hashed):
    fresh = tmp_path / "tiles.npy"
    fresh.write_bytes(b"tiles" * 100)
    assert time.time() - fresh.stat().st_mtime < RACY_SECONDS
    digest_in_a_new_process(fresh)
    digest_in_a_new_process(fresh)
    assert len(hashed) == 2


def test_the_cache_can_be_turned_off(tmp_path, hashed, monkeypatch):
    monkeypatch.setenv("PROVML_DIGEST_CACHE", "off")
    raw = old_file(tmp_path / "survey.npy", b"x" * 1000)
    digest_in_a_new_process(raw)
    digest_in_a_new_process(raw)
    assert len(hashed) == 2


def test_a_damaged_cache_line_is_ignored_and_an_unwritable_cache_is_logged_once(
    tmp_path, hashed, monkeypatch, caplog
):
    cache = tmp_path / "digests.jsonl"
    cache.write_bytes(b'{"not": "a cache line"}\n[1, 2\n')
    monkeypatch.setenv("PROVML_DIGEST_CACHE", str(cache))
    raw = old_file(tmp_path / "survey.npy", b"y" * 1000)
    assert digest_in_a_new_process(raw) == ids.digest_bytes(b"y" * 1000)
    digest_in_a_new_process(raw)
    assert len(hashed) == 1

    monkeypatch.setenv("PROVML_DIGEST_CACHE", str(tmp_path / "a-file" / "digests.jsonl"))
    (tmp_path / "a-file").write_text("not a directory")
    with caplog.at_level(logging.INFO, logger="provml.capture"):
        digests = _values.Digests(BASE)
        for name in ("a.npy", "b.npy"):
            digests.path(old_file(tmp_path / name, name.encode() * 50), None)
    assert sum("digest cache" in r.getMessage() for r in caplog.records) == 1


def test_a_second_job_on_the_same_raw_files_does_not_hash_them(tmp_path):
    """Two real capture processes on one raw file: the second reads it from the cache."""
    raw = old_file(tmp_path / "survey.npy", os.urandom(100_000))
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        import provml
        from provml import ids
        from provml.capture.testing import capture

        hashed = []
        real = ids.digest_file
        ids.digest_file = lambda p, size=None: hashed.append(p) or real(p, size)
        with capture() as exported:
            provml.used(Path(sys.argv[1]), name="raw")
            provml.flush()
        (raw,) = exported.elements(ml_class="DomainData")
        print(len(hashed), raw.id)
        """
    )
    outputs = [
        subprocess.run(
            [sys.executable, "-c", script, str(raw)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()
        for _ in range(2)
    ]
    assert [int(n) for n, _ in outputs] == [1, 0]
    assert outputs[0][1] == outputs[1][1] == ids.data_iri(ids.digest_bytes(raw.read_bytes()))


def test_a_path_keeps_only_its_newest_entry_and_the_stale_lines_are_compacted(
    tmp_path, monkeypatch
):
    # A job rewrites its outputs every run: each run added a line for the same path, and
    # the stale lines stayed until the file passed 50,000 lines, read by every job.
    from provml.capture import _digest_cache

    monkeypatch.setattr(_digest_cache, "_COMPACT_LINES", 10)
    cache_file = tmp_path / "digests.jsonl"
    old_ns = time.time_ns() - 3_600 * 10**9
    runs = [
        ("/work/tiles.npy", 1, 100 + run, 4096, old_ns + run, old_ns + run) for run in range(30)
    ]
    raw = ("/data/survey.segy", 1, 7, 10**9, old_ns, old_ns)
    writer = _digest_cache.DigestCache(cache_file)
    writer.put(raw, ("raw-digest", True))
    for run, key in enumerate(runs):
        writer.put(key, (f"tiles-{run}", False))
    assert len(cache_file.read_bytes().splitlines()) == 31

    reader = _digest_cache.DigestCache(cache_file)
    assert reader.get(runs[-1]) == ("tiles-29", False)
    assert reader.get(runs[0]) is None  # a dead entry: that inode and time are gone
    assert reader.get(raw) == ("raw-digest", True)
    lines = cache_file.read_bytes().splitlines()  # compacted on load: 31 lines, 2 live
    assert len(lines) == 2
    assert _digest_cache.DigestCache(cache_file).get(runs[-1]) == ("tiles-29", False)
