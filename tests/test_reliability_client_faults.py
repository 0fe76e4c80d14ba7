"""Client faults: the capture exporter with its endpoint down, slow, answering 500, or
its spool on a full or read-only filesystem.

Each case runs a real job in a subprocess: the job always completes (exit 0, its own
work not slowed), every captured record is either spooled or counted as dropped in
``provml.capture.stats()``, and the job's log holds exactly one line for the cause
(plus the exit hook's one summary line). Full and read-only filesystems are tiny tmpfs
mounts (the tests run as root in CI); without root they fall back to a file-size limit
(``RLIMIT_FSIZE``) and a read-only directory mode.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_api_server import free_port

FAULT_JOB = textwrap.dedent(
    """
    import json, os, resource, signal, sys, time
    import provml
    from provml.capture import _state
    from provml.capture._provider import stats

    endpoint, spool_dir, calls, export_timeout = sys.argv[1:5]
    if os.environ.get("FAULT_FSIZE"):  # a full disk without root: writes past N fail
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limit = int(os.environ["FAULT_FSIZE"])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    provml.init("fault-job", endpoint=endpoint, spool_dir=spool_dir, batch_size=20,
                schedule_delay=0.1, export_timeout=float(export_timeout), exit_timeout=3)

    @provml.training
    def train():
        for step in range(int(calls)):
            provml.log_metric("loss", 1.0 / (step + 1), step=step)
            time.sleep(0.002)
        return "trained"

    started = time.monotonic()
    result = train()
    work = time.monotonic() - started
    provider = _state.provider
    shutdown_started = time.monotonic()
    provml.shutdown()
    s = stats(provider)
    print(json.dumps({"result": result, "work_seconds": work,
                      "shutdown_seconds": time.monotonic() - shutdown_started,
                      "captured": s.captured, "exported": s.exported, "spooled": s.spooled,
                      "replayed": s.replayed, "dropped": dict(s.dropped)}))
    """
)


def run_job(
    endpoint: str, spool: Path, tmp_path: Path, calls: int = 400, timeout: float = 1.0, **env: str
) -> tuple[dict, list[str], float]:
    job = tmp_path / "fault_job.py"
    job.write_text(FAULT_JOB)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(job), endpoint, str(spool), str(calls), str(timeout)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, **env},
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    lines = [line for line in done.stderr.splitlines() if line.startswith("provml capture:")]
    return report, lines, elapsed


def show(case: str, report: dict, lines: list[str], elapsed: float) -> None:
    dropped = sum(report["dropped"].values())
    print(
        f"{case}: job exit 0 in {elapsed:.1f} s (its work {report['work_seconds']:.2f} s, "
        f"exit hook {report['shutdown_seconds']:.2f} s); records captured {report['captured']}, "
        f"exported {report['exported']}, spooled {report['spooled']}, dropped {dropped} "
        f"{report['dropped']}, lost uncounted "
        f"{report['captured'] - report['exported'] - report['spooled'] - dropped}; "
        f"log lines {len(lines)}"
    )
    for line in lines:
        print(f"    {line[:160]}")


def assert_one_line_for(lines: list[str], cause: str) -> None:
    matching = [line for line in lines if cause in line]
    assert len(matching) == 1, lines
    summary = [line for line in lines if "not everything reached" in line]
    assert len(summary) == 1, lines
    assert len(lines) == 2, lines  # the cause and the exit hook's summary, nothing else


class Endpoint:
    """A tiny HTTP endpoint answering ``status`` after ``delay`` seconds."""

    def __init__(self, status: int, delay: float = 0.0) -> None:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(endpoint.delay)
                body = b'{"error": "internal_error", "message": "the server failed"}'
                with contextlib.suppress(OSError):  # the client may have given up
                    self.send_response(endpoint.status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, *args) -> None:
                return None

        self.status, self.delay = status, delay
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def spool_records(spool: Path) -> int:
    return sum(
        json.loads(line)["records"]
        for path in spool.glob("*.jsonl")
        for line in path.read_text().splitlines()
    )


def test_an_endpoint_that_is_down_spools_every_record_and_says_so_once(tmp_path):
    spool = tmp_path / "spool"
    report, lines, elapsed = run_job(f"http://127.0.0.1:{free_port()}", spool, tmp_path)
    show("endpoint down", report, lines, elapsed)
    assert report["result"] == "trained"
    assert report["spooled"] == report["captured"] > 400 and report["dropped"] == {}
    assert spool_records(spool) == report["spooled"]
    assert_one_line_for(lines, "is unavailable")
    assert str(spool) in lines[0]


def test_an_endpoint_answering_500_spools_every_record_and_says_so_once(tmp_path):
    endpoint = Endpoint(500)
    spool = tmp_path / "spool"
    try:
        report, lines, elapsed = run_job(endpoint.url, spool, tmp_path)
    finally:
        endpoint.close()
    show("endpoint answering 500", report, lines, elapsed)
    assert report["spooled"] == report["captured"] > 400 and report["dropped"] == {}
    assert spool_records(spool) == report["spooled"]
    assert_one_line_for(lines, "HTTP 500")


def test_a_slow_endpoint_neither_slows_the_job_nor_loses_records(tmp_path):
    endpoint = Endpoint(200, delay=3.0)
    spool = tmp_path / "spool"
    try:
        report, lines, elapsed = run_job(endpoint.url, spool, tmp_path, timeout=0.3)
    finally:
        endpoint.close()
    show("endpoint sleeping 3 s", report, lines, elapsed)
    # 400 calls with a 2 ms pause: about 1 s of work whatever the endpoint does.
    assert report["work_seconds"] < 2.5
    assert report["shutdown_seconds"] < 3 + 1  # the exit timeout, and a little
    assert report["dropped"] == {}
    assert report["exported"] + report["spooled"] == report["captured"]
    assert report["spooled"] > 0 and spool_records(spool) == report["spooled"]
    assert_one_line_for(lines, "timed out")


@contextlib.contextmanager
def tiny_filesystem(path: Path, size: str, read_only: bool = False) -> Iterator[dict[str, str]]:
    """A tmpfs of ``size`` at ``path`` (as root); else the closest unprivileged stand-in,
    given as environment for the job."""
    path.mkdir()
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )
    try:
        if mounted:
            yield {}
        elif read_only:
            path.chmod(0o555)
            yield {}
        else:
            yield {"FAULT_FSIZE": str(64 * 1024)}
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)
        else:
            path.chmod(0o755)


def test_a_full_spool_disk_keeps_what_fits_counts_the_rest_as_dropped_and_says_so_once(tmp_path):
    spool = tmp_path / "full"
    with tiny_filesystem(spool, "64k") as env:
        report, lines, elapsed = run_job(
            f"http://127.0.0.1:{free_port()}", spool, tmp_path, calls=1500, **env
        )
        kept = spool_records(spool)
    show("spool disk full", report, lines, elapsed)
    (reason,) = report["dropped"]
    assert reason.startswith("spool unwritable")
    assert "No space left" in reason or "too large" in reason
    assert report["spooled"] > 0 and kept == report["spooled"]
    assert report["spooled"] + report["dropped"][reason] == report["captured"]
    assert len([line for line in lines if "cannot write the spool" in line]) == 1
    assert len([line for line in lines if "is unavailable" in line]) == 1
    assert len(lines) == 3  # the two causes and the exit hook's summary


def test_a_read_only_spool_counts_every_record_as_dropped_and_says_so_once(tmp_path):
    spool = tmp_path / "read-only"
    with tiny_filesystem(spool, "64k", read_only=True) as env:
        report, lines, elapsed = run_job(f"http://127.0.0.1:{free_port()}", spool, tmp_path, **env)
    show("spool read-only", report, lines, elapsed)
    (reason,) = report["dropped"]
    assert "Read-only file system" in reason or "Permission denied" in reason
    assert report["dropped"][reason] == report["captured"] and report["spooled"] == 0
    assert len([line for line in lines if "cannot write the spool" in line]) == 1
    assert len([line for line in lines if "is unavailable" in line]) == 1
    assert len(lines) == 3  # the two causes and the exit hook's summary


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
