"""``provml demo``: a scientific-ML lifecycle run end to end under capture.

Raw seismic-like volumes are "acquired" (generated in code); then separate processes,
as on a cluster, curate them, prepare learning data, train a salt detector (version 1),
curate again when a new survey arrives, fine-tune version 2 on the changed data,
evaluate both on a held-out survey and run batch inference with version 2. Afterwards
the demo prints what was captured, the lineage of the final model version, and three
SPARQL queries with their answers.

The workflows (:mod:`provml.demo.workflows`) use only the public capture API.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from provml.config import resolve_store
from provml.errors import ConfigurationError, ProvmlError

MARKER = "made-by-provml-demo"


def _prepare_store(store: str | None, fresh: bool) -> tuple[str, Path]:
    """The store URL the demo writes to and its data directory, emptied when fresh.

    The demo only ever deletes a store that it made itself (it leaves a marker file).
    """
    location = resolve_store(store)
    if not location.embedded:
        data = Path(".provml") / "demo-data"
        data.mkdir(parents=True, exist_ok=True)
        return store or os.environ["PROVML_STORE"], data
    sqlite = Path(location.sql_url.removeprefix("sqlite:///"))
    home = sqlite.parent
    marker = home / MARKER
    if fresh and sqlite.exists():
        if not marker.exists():
            raise ConfigurationError(
                f"{home} holds a store the demo did not make; run the demo elsewhere, "
                "e.g. provml demo --store .provml-demo"
            )
        sqlite.unlink()
        for extra in (Path(str(sqlite) + "-wal"), Path(str(sqlite) + "-shm")):
            extra.unlink(missing_ok=True)
        shutil.rmtree(location.rdf_path, ignore_errors=True)
        shutil.rmtree(home / "demo-data", ignore_errors=True)
        shutil.rmtree(home / "spool", ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    marker.write_text("This store was made by `provml demo`; the demo may delete it.\n")
    return location.sql_url, home / "demo-data"


def _step(store: str, data: Path, *args: str) -> None:
    _steps(store, data, args)


def _steps(store: str, data: Path, *steps: tuple[str, ...]) -> None:
    """Run workflow steps as concurrent processes and wait for all of them."""
    env = {**os.environ, "PROVML_STORE": store, "PROVML_SPOOL": str(data.parent / "spool")}
    running = [
        (
            args,
            subprocess.Popen(
                [sys.executable, "-m", "provml.demo.workflows", *args, "--data", str(data)],
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            ),
        )
        for args in steps
    ]
    for args, process in running:
        out, err = process.communicate()
        sys.stdout.write(out)
        if process.returncode != 0:
            sys.stderr.write(err)
            raise ProvmlError(f"demo step {' '.join(args)} failed (exit {process.returncode})")


def run_demo(store: str | None = None, fresh: bool = True) -> int:
    from provml.demo import report, science

    started = time.monotonic()
    store_url, data = _prepare_store(store, fresh)
    print(f"provml demo: a seismic salt-detection lifecycle, captured into {store_url}\n")
    print("Acquisition: synthetic 3-D seismic volumes")
    for survey in (
        *science.SURVEYS,
        science.LATE_SURVEY,
        science.HOLDOUT_SURVEY,
        science.TARGET_SURVEY,
    ):
        path = science.write_raw(survey, data / "raw")
        print(f"  {path.name}: {survey.region}, acquired {survey.acquired}")
    first = ",".join(s.name for s in science.SURVEYS)
    second = ",".join(s.name for s in (*science.SURVEYS, science.LATE_SURVEY))
    print("\nWorkflows (each its own process):")
    _step(store_url, data, "curate", "--surveys", first, "--tag", "a")
    _step(store_url, data, "prepare", "--tag", "a")
    _step(store_url, data, "train", "--tag", "a", "--version", "1", "--epochs", "12")
    print(f"  new survey {science.LATE_SURVEY.name} arrives: curate again, fine-tune version 2")
    _step(store_url, data, "curate", "--surveys", second, "--tag", "b")
    _step(store_url, data, "prepare", "--tag", "b")
    _step(
        store_url,
        data,
        "train",
        "--tag",
        "b",
        "--version",
        "2",
        "--epochs",
        "6",
        "--learning-rate",
        "0.005",
        "--base",
        "1",
    )
    _steps(
        store_url,
        data,
        ("evaluate", "--tag", "a", "--version", "1"),
        ("evaluate", "--tag", "b", "--version", "2"),
        ("infer", "--tag", "b", "--version", "2"),
    )
    report.print_report(store_url, data)
    print(f"\nDone in {time.monotonic() - started:.1f} s.")
    # Last, so the way into the web UI is what stays on the screen.
    print("\nOpen it in the web UI: serve the store, then open the URL")
    print(f"  provml serve --store {store_url}")
    print("  http://127.0.0.1:8000/ui/")
    return 0
