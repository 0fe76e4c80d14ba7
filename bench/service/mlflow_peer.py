"""MLflow's ``log_batch`` timed three ways, side by side: what the benchmark's peer costs.

Until stop 26 the service benchmark timed MLflow from its first answer to ``/health``,
with MLflow's client building each request's JSON inside the timed window. This script
times the same metrics, on a fresh ``mlflow server`` each time, in turns:

* ``client, at once``: ``MlflowClient.log_batch`` from the first answer to ``/health``
  (the old way);
* ``client, settled``: the same, once the server's processes have gone idle
  (``bench_service.wait_idle``);
* ``REST, settled``: request bodies made before the clock, POSTed to the REST
  ``log-batch`` endpoint the client calls, once settled (the benchmark's way now, and
  how provml's own ingest is timed: ready gzip bodies).

For each it prints metrics/s, the cores busy and the CPU a metric by part::

    python bench/service/mlflow_peer.py --metrics 100000 --rounds 2

Needs the benchmark's venv (``bench/service/setup.sh``) and PostgreSQL at
``PROVML_TEST_POSTGRES_URL``, with nothing else running: every ``postgres`` process
counts towards the PostgreSQL share.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_service import (
    MlflowServer,
    cpu_between,
    cpu_snapshot,
    fresh_database,
    mlflow_bodies,
    mlflow_ingest,
    run_clients,
)


def client_ingest(url: str, sizes: list[int], clients: int = 4) -> float:
    """Seconds for ``MlflowClient.log_batch`` of the same metrics, the JSON made by the client."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    experiment = client.create_experiment(f"bench-client-{time.monotonic_ns()}")
    now = int(time.time() * 1000)
    work = [
        (
            client.create_run(experiment).info.run_id,
            [Metric(f"m{j % 50}", j / 7, now, j) for j in range(size)],
        )
        for size in sizes
    ]
    queue = list(reversed(work))
    lock = threading.Lock()

    def worker(errors: list[str]) -> None:
        mine = MlflowClient(tracking_uri=url)
        while True:
            with lock:
                if not queue:
                    return
                run, metrics = queue.pop()
            try:
                for start in range(0, len(metrics), 1000):
                    mine.log_batch(run, metrics=metrics[start : start + 1000])
            except Exception as exc:
                errors.append(str(exc)[:200])

    return run_clients(worker, clients)


def one(way: str, sizes: list[int]) -> str:
    settle = way != "client, at once"
    with fresh_database("provml_bench_mlflow") as url, tempfile.TemporaryDirectory() as work:
        server = MlflowServer(url, Path(work), settle=settle)
        try:
            bodies = mlflow_bodies(server.url, sizes) if way == "REST, settled" else None
            before = cpu_snapshot(server.process.pid)
            if bodies is None:
                seconds = client_ingest(server.url, sizes)
            else:
                seconds = mlflow_ingest(server.url, bodies)
            used = cpu_between(before, cpu_snapshot(server.process.pid))
        finally:
            server.stop()
    metrics = sum(sizes)
    per = {part: spent / metrics * 1e6 for part, spent in used.items()}
    server_us = per["server"] + per["projector"] + per["ended"]
    total = sum(per.values())
    return (
        f"{way:16s} {metrics / seconds:8,.0f} metrics/s, {total * metrics / 1e6 / seconds:.2f} "
        f"cores busy; CPU us a metric: server {server_us:.1f} / postgres {per['postgres']:.1f}"
        f" / clients {per['clients']:.1f} = {total:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--metrics", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    sizes = [1000] * (args.metrics // 1000)
    ways = ["client, at once", "client, settled", "REST, settled"]
    for round_ in range(args.rounds):
        order = ways[round_ % 3 :] + ways[: round_ % 3]
        for way in order:
            print(one(way, sizes), flush=True)


if __name__ == "__main__":
    main()
