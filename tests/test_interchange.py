"""PROV interchange: what ``provml export`` writes, the ``prov`` package's own command line
tools (``prov-convert``, ``prov-compare``) read unchanged, as docs/interchange.md shows.

The provenance is real capture output (a curation and a training run with metrics and a
model version), ingested into an embedded store and exported through ``provml.cli``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provml import capture
from provml.cli import main
from provml.store import open_record_store


def prov_tool(name: str) -> str:
    tool = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if tool is None:
        pytest.fail(f"{name} comes with the prov package (the server extra)")
    return tool


def run_tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([prov_tool(name), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The captured workflow's bundle exported by ``provml export`` in several formats."""
    root = tmp_path_factory.mktemp("interchange")
    raw = root / "cube.bin"
    raw.write_bytes(b"\x00\x01seismic" * 64)
    with capture.testing.capture("interchange") as records:

        @capture.data_transformation(inputs=["source"], outputs=["target"])
        def curate(source: Path, target: Path) -> None:
            target.write_bytes(source.read_bytes()[::2])

        @capture.training(inputs=["tiles"])
        def train(tiles: Path, lr: float = 0.1) -> None:
            for epoch in range(2):
                with capture.section("epoch", step=epoch):
                    capture.log_metric("loss", 1.0 / (epoch + 1))
            capture.log_model_version("salt-detector", 1)

        curate(raw, root / "tiles.bin")
        train(root / "tiles.bin")
        bundles = records.bundles
    store_dir = root / "store"
    store = open_record_store(str(store_dir))
    try:
        store.ingest(bundles)
    finally:
        store.close()
    (bundle,) = {b.id for b in bundles}
    files = {}
    for fmt in ("json", "xml", "provn", "turtle", "jsonld"):
        files[fmt] = root / f"workflow.{fmt}"
        argv = ["export", bundle, "--format", fmt, "-o", str(files[fmt]), "--store", str(store_dir)]
        assert main(argv) == 0
    files["root"] = root
    return files


def test_prov_convert_turns_provmls_prov_json_into_prov_n(exported):
    out = exported["root"] / "converted.provn"
    done = run_tool("prov-convert", "-f", "provn", str(exported["json"]), str(out))
    assert done.returncode == 0, done.stderr[:2000]
    text = out.read_text()
    assert text.startswith("document") and "wasGeneratedBy(" in text


def test_prov_convert_reads_provmls_prov_xml(exported):
    out = exported["root"] / "from-xml.json"
    done = run_tool("prov-convert", "-i", "xml", "-f", "json", str(exported["xml"]), str(out))
    assert done.returncode == 0, done.stderr[:2000]
    assert '"wasDerivedFrom"' in out.read_text()


def test_prov_compare_finds_provmls_json_and_xml_exports_equivalent(exported):
    done = run_tool(
        "prov-compare", "-f", "json", "-F", "xml", str(exported["json"]), str(exported["xml"])
    )
    assert done.returncode == 0, done.stderr[:2000]


def test_prov_convert_reads_provmls_turtle_as_prov_o(exported):
    # prov reads PROV-O Turtle as "rdf". (provml's jsonld is PROV-O JSON-LD, not prov's
    # PROV-JSONLD, so prov does not take it as "jsonld".)
    out = exported["root"] / "from-turtle.provn"
    done = run_tool("prov-convert", "-i", "rdf", "-f", "provn", str(exported["turtle"]), str(out))
    assert done.returncode == 0, done.stderr[:2000]
    assert "specializationOf(" in out.read_text()


def test_a_document_imported_and_exported_again_is_equivalent_to_the_original(exported, capsys):
    again_store = exported["root"] / "again"
    assert main(["import", str(exported["json"]), "--store", str(again_store)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    bundle = line.split("<", 1)[1].split(">", 1)[0]
    again = exported["root"] / "again.json"
    argv = ["export", bundle, "--format", "json", "-o", str(again), "--store", str(again_store)]
    assert main(argv) == 0
    done = run_tool("prov-compare", str(exported["json"]), str(again))
    assert done.returncode == 0, done.stderr[:2000]


def test_prov_compare_tells_a_changed_document_apart(exported):
    changed = exported["root"] / "changed.json"
    changed.write_text(exported["json"].read_text().replace('"loss"', '"accuracy"'))
    done = run_tool("prov-compare", str(exported["json"]), str(changed))
    assert done.returncode == 1, done.stderr
