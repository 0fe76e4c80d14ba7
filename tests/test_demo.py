"""``provml demo`` end to end: separate captured processes, one store, lineage that
reaches the raw volumes, example SPARQL answers, and documents that satisfy the shapes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provml.ids import iri

FIRST = ("SRV-2019-A", "SRV-2020-B", "SRV-2023-D")
LATE = "SRV-2024-E"


def provml_cli(*args: str, store: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("provml", path=str(Path(sys.executable).parent))
    assert exe is not None
    return subprocess.run(
        [exe, *args, "--store", str(store)], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    store = tmp_path_factory.mktemp("demo") / "store"
    done = provml_cli("demo", store=store)
    assert done.returncode == 0, done.stderr
    return store, done.stdout


def labels_upstream(store: Path, version: int) -> set[str]:
    done = provml_cli(
        "lineage", iri("model", "salt-detector", "v", version), "--format", "json", store=store
    )
    assert done.returncode == 0, done.stderr
    return {n["label"] for n in json.loads(done.stdout)["nodes"] if n["label"]}


def test_lineage_of_the_final_version_names_the_raw_volumes(demo):
    store, _ = demo
    labels = labels_upstream(store, 2)
    assert {f"{name}.npy" for name in (*FIRST, LATE)} <= labels


def test_version_one_predates_the_late_survey(demo):
    store, _ = demo
    labels = labels_upstream(store, 1)
    assert {f"{name}.npy" for name in FIRST} <= labels
    assert f"{LATE}.npy" not in labels


def test_impact_of_the_late_survey_reaches_version_two_and_the_predictions(demo):
    from provml import lineage
    from provml.store import open_record_store

    store, _ = demo
    with open_record_store(str(store)) as records:
        raw = next(
            n
            for n in records.find_nodes(ml_class="DomainData", limit=1000)
            if n.label == f"{LATE}.npy"
        )
        affected = lineage.impact(records, raw.id)
    classes = {n.ml_class for n in affected.nodes.values()}
    assert iri("model", "salt-detector", "v", 2) in affected.nodes
    assert iri("model", "salt-detector", "v", 1) not in affected.nodes
    assert "InferenceResult" in classes


def test_the_demo_prints_three_answered_sparql_queries(demo):
    _, out = demo
    assert out.count("SPARQL:") == 3
    assert "https://provml.local/model/salt-detector/v/2" in out
    assert f"{LATE}.npy" in out


def test_every_captured_document_satisfies_the_prov_ml_shapes(demo):
    from provml import prov_io
    from provml.shacl import validate
    from provml.store import open_record_store

    store, _ = demo
    with open_record_store(str(store)) as records:
        bundles = list(records.iter_bundles())
    assert len(bundles) == 9
    report = validate(prov_io.bundles_to_dataset(bundles))
    assert report.conforms, report.text
