"""Per-call cost of capture: one probe per process, printing one JSON line.

A probe calls a no-op function (or a tracker's logging call) many times and reports
microseconds per call, measured with ``time.perf_counter`` around plain ``for`` loops::

    python bench/capture/percall.py provml-on --calls 1000000

Probes:

- ``plain``: the undecorated no-op, the floor every other figure includes.
- ``provml-off``: ``@provml.activity`` before ``provml.init`` (libraries decorated at
  import time in a job that does not capture).
- ``provml-on``: ``@provml.activity`` after ``provml.init`` with the in-memory exporter.
  Calls run in chunks smaller than the queue; the exporter thread runs during the chunk
  (on two cores it competes for the GIL, as it does in a real job) and the queue is
  flushed between chunks outside the timed part. ``with_export_us`` adds the flushes:
  the cost per call when every record is also built and exported. ``records_per_s`` is
  the exporter's sustained rate over the whole probe.
- ``provml-hot``: the hot path alone: as ``provml-on`` but with a batch size above the
  chunk and a long schedule delay, so the exporter thread sleeps while the calls run
  and builds their records only at the flush between chunks.
- ``provml-store``: as ``provml-on``, exporting to the embedded store (its inbox: the
  store takes the batches in when it is next opened, not timed here).
- ``provml-log_metric``: ``provml.log_metric`` inside an activity.
- ``flowcept-task``: Flowcept's ``@flowcept_task`` no-op inside an offline ``Flowcept``.
- ``mlflow-trace``: MLflow's function decorator, ``@mlflow.trace``, to a SQLite store.
- ``mlflow-log_metric``: ``mlflow.log_metric`` in an active run, SQLite store.
- ``yprov4ml-log_metric``: ``yprov4ml.log_metric`` in a run.

Imports: the standard library; each probe imports its own tracker.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

CHUNK = 50_000  # calls between flushes: below provml's default queue of 100 000


def noop(x: int) -> int:
    return x


def _loop(fn: Callable[[int], Any], calls: int) -> float:
    """Seconds for ``calls`` calls of ``fn`` (the loop's own cost included, as in ``plain``)."""
    began = time.perf_counter()
    for i in range(calls):
        fn(i)
    return time.perf_counter() - began


def _calibrated(fn: Callable[[int], Any], calls: int, seconds: float) -> int:
    """At most ``calls``, fewer when the tracker is too slow to do them in ``seconds``."""
    trial = _loop(fn, 50)
    per_call = max(trial / 50, 1e-9)
    return max(50, min(calls, int(seconds / per_call)))


def probe_plain(calls: int, seconds: float) -> dict[str, Any]:
    return {"calls": calls, "us": _loop(noop, calls) / calls * 1e6}


def probe_provml_off(calls: int, seconds: float) -> dict[str, Any]:
    import provml

    fn = provml.activity(noop)
    return {"calls": calls, "us": _loop(fn, calls) / calls * 1e6}


def _provml_chunked(calls: int, exporter: Any = None, **options: Any) -> dict[str, Any]:
    import provml

    if exporter is None:
        provml.init(workflow="percall", **options)  # the embedded store under ./.provml
    else:
        provml.init(workflow="percall", exporter=exporter, **options)
    fn = provml.activity("noop", capture_args=False)(noop)
    _loop(fn, 1000)
    provml.flush()
    before = provml.stats().exported
    in_calls = 0.0
    began = time.perf_counter()
    done = 0
    while done < calls:
        n = min(CHUNK, calls - done)
        in_calls += _loop(fn, n)
        provml.flush()
        if exporter is not None:
            exporter.clear()  # keep memory flat: the probe measures cost, not storage
        done += n
    total = time.perf_counter() - began
    stats = provml.stats()
    records = stats.exported - before
    return {
        "calls": calls,
        "us": in_calls / calls * 1e6,
        "with_export_us": total / calls * 1e6,
        "records": records,
        "records_per_call": records / calls,
        "records_per_s": records / total,
        "dropped": stats.dropped_total,
    }


def probe_provml_on(calls: int, seconds: float) -> dict[str, Any]:
    from provml.capture.testing import InMemoryExporter

    return _provml_chunked(calls, InMemoryExporter())


def probe_provml_hot(calls: int, seconds: float) -> dict[str, Any]:
    from provml.capture.testing import InMemoryExporter

    return _provml_chunked(calls, InMemoryExporter(), batch_size=CHUNK + 1, schedule_delay=3600)


def probe_provml_store(calls: int, seconds: float) -> dict[str, Any]:
    return _provml_chunked(calls)


def probe_provml_log_metric(calls: int, seconds: float) -> dict[str, Any]:
    import provml
    from provml.capture.testing import InMemoryExporter

    exporter = InMemoryExporter()
    provml.init(workflow="percall", exporter=exporter)
    in_calls = 0.0
    done = 0
    with provml.training("fit"):
        while done < calls:
            n = min(CHUNK, calls - done)
            began = time.perf_counter()
            for i in range(n):
                provml.log_metric("loss", 0.5, step=i)
            in_calls += time.perf_counter() - began
            provml.flush()
            exporter.clear()
            done += n
    return {"calls": calls, "us": in_calls / calls * 1e6}


def probe_flowcept_task(calls: int, seconds: float) -> dict[str, Any]:
    from flowcept import Flowcept, flowcept_task

    fn = flowcept_task(noop)
    with Flowcept(workflow_name="percall"):
        n = _calibrated(fn, calls, seconds)
        us = _loop(fn, n) / n * 1e6
    return {"calls": n, "us": us}


def _mlflow() -> Any:
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(f"sqlite:///{os.getcwd()}/mlflow.db")
    mlflow.set_experiment("percall")
    return mlflow


def probe_mlflow_trace(calls: int, seconds: float) -> dict[str, Any]:
    mlflow = _mlflow()
    fn = mlflow.trace(noop)
    n = _calibrated(fn, calls, seconds)
    us = _loop(fn, n) / n * 1e6
    return {"calls": n, "us": us}


def probe_mlflow_log_metric(calls: int, seconds: float) -> dict[str, Any]:
    mlflow = _mlflow()
    with mlflow.start_run():
        n = _calibrated(lambda i: mlflow.log_metric("loss", 0.5, step=i), calls, seconds)
        began = time.perf_counter()
        for i in range(n):
            mlflow.log_metric("loss", 0.5, step=i)
        us = (time.perf_counter() - began) / n * 1e6
    return {"calls": n, "us": us}


def probe_yprov4ml_log_metric(calls: int, seconds: float) -> dict[str, Any]:
    import yprov4ml

    yprov4ml.start_run(experiment_name="percall", provenance_save_dir="prov")
    n = _calibrated(
        lambda i: yprov4ml.log_metric("loss", 0.5, context="training", step=i), calls, seconds
    )
    began = time.perf_counter()
    for i in range(n):
        yprov4ml.log_metric("loss", 0.5, context="training", step=i)
    us = (time.perf_counter() - began) / n * 1e6
    yprov4ml.end_run()
    return {"calls": n, "us": us}


PROBES: dict[str, Callable[[int, float], dict[str, Any]]] = {
    "plain": probe_plain,
    "provml-off": probe_provml_off,
    "provml-on": probe_provml_on,
    "provml-hot": probe_provml_hot,
    "provml-store": probe_provml_store,
    "provml-log_metric": probe_provml_log_metric,
    "flowcept-task": probe_flowcept_task,
    "mlflow-trace": probe_mlflow_trace,
    "mlflow-log_metric": probe_mlflow_log_metric,
    "yprov4ml-log_metric": probe_yprov4ml_log_metric,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python bench/capture/percall.py")
    parser.add_argument("probe", choices=list(PROBES))
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="time budget for slow trackers' loops"
    )
    args = parser.parse_args(argv)
    os.chdir(tempfile.mkdtemp(prefix=f"percall-{args.probe}-"))
    gc.collect()
    result = {"probe": args.probe, **PROBES[args.probe](args.calls, args.seconds)}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
