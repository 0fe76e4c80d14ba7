"""The ``provml`` command line, run in-process through ``provml.cli.main``."""

from __future__ import annotations

import csv
import io
import json

import pytest
import rdflib
from rdflib.namespace import PROV

from provml.cli import main
from tests.conftest import conformance_dir


@pytest.fixture
def store_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PROVML_STORE", str(tmp_path / "store"))
    return tmp_path / "store"


@pytest.fixture
def primer(tmp_path):
    """A small PROV-N document with a derivation chain, written to a file."""
    path = tmp_path / "chain.provn"
    path.write_text(
        """document
  prefix ex <https://example.org/>
  entity(ex:raw, [prov:label="raw cube"])
  activity(ex:curate, 2026-01-01T10:00:00Z, 2026-01-01T10:05:00Z)
  entity(ex:tiles)
  used(ex:curate, ex:raw, -)
  wasGeneratedBy(ex:tiles, ex:curate, -)
  wasDerivedFrom(ex:model, ex:tiles)
endDocument
"""
    )
    return path


def test_import_is_idempotent_and_says_what_it_stored(store_dir, primer, capsys):
    assert main(["import", str(primer)]) == 0
    first = capsys.readouterr().out
    assert "6 records" in first and "6 new" in first
    assert main(["import", str(primer)]) == 0
    assert "0 new, 6 already stored" in capsys.readouterr().out


def test_export_of_the_whole_store_parses_back_in_every_format(store_dir, primer, capsys):
    from provml import prov_io

    main(["import", str(primer)])
    capsys.readouterr()
    for fmt in ("json", "xml", "provn", "jsonld", "trig", "nquads"):
        assert main(["export", "--format", fmt]) == 0
        data = capsys.readouterr().out.encode()
        bundles = prov_io.parse(data, fmt, bundle_id="https://example.org/again")
        ids = {r.id for b in bundles for r in b.records if getattr(r, "id", None)}
        assert "https://example.org/raw" in ids, fmt


def test_turtle_export_names_the_formats_that_keep_bundles_apart(store_dir, primer, capsys):
    main(["import", str(primer)])
    capsys.readouterr()
    assert main(["export", "--format", "turtle"]) == 1
    assert "trig" in capsys.readouterr().err
    bundle = next(line.split("<")[1].split(">")[0] for line in [_imported_as(primer, capsys)])
    assert main(["export", bundle, "--format", "turtle"]) == 0
    graph = rdflib.Graph().parse(data=capsys.readouterr().out, format="turtle")
    assert (rdflib.URIRef("https://example.org/raw"), rdflib.RDF.type, PROV.Entity) in graph


def _imported_as(path, capsys) -> str:
    main(["import", str(path)])
    return capsys.readouterr().out


def test_lineage_walks_upstream_from_the_model_to_the_raw_data(store_dir, primer, capsys):
    main(["import", str(primer)])
    capsys.readouterr()
    assert main(["lineage", "https://example.org/model", "--format", "json"]) == 0
    graph = json.loads(capsys.readouterr().out)
    distance = {n["id"]: n["distance"] for n in graph["nodes"]}
    assert distance["https://example.org/raw"] == 3
    assert main(["lineage", "https://example.org/model", "--depth", "1"]) == 0
    table = capsys.readouterr().out
    assert "https://example.org/tiles" in table and "https://example.org/raw" not in table


def test_impact_of_the_raw_data_reaches_the_model(store_dir, primer, capsys):
    main(["import", str(primer)])
    capsys.readouterr()
    assert main(["lineage", "https://example.org/raw", "-d", "down", "--format", "json"]) == 0
    ids = {n["id"] for n in json.loads(capsys.readouterr().out)["nodes"]}
    assert "https://example.org/model" in ids


def test_lineage_of_an_unknown_node_is_a_clear_error(store_dir, capsys):
    assert main(["lineage", "https://example.org/nothing"]) == 1
    assert "https://example.org/nothing" in capsys.readouterr().err


def test_query_answers_in_every_result_format(store_dir, primer, capsys):
    main(["import", str(primer)])
    capsys.readouterr()
    text = "SELECT ?e WHERE { ?e a prov:Entity } ORDER BY ?e"
    assert main(["query", text, "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out.strip())))
    assert rows[0] == ["e"]
    assert ["https://example.org/raw"] in rows
    assert main(["query", text, "--format", "json"]) == 0
    bindings = json.loads(capsys.readouterr().out)["results"]["bindings"]
    assert {b["e"]["value"] for b in bindings} >= {"https://example.org/raw"}
    assert main(["query", text]) == 0
    assert "https://example.org/tiles" in capsys.readouterr().out


def test_updates_are_refused_by_query(store_dir, capsys):
    assert main(["query", "DELETE WHERE { ?s ?p ?o }"]) == 1
    assert "error" in capsys.readouterr().err


def test_rdf_rebuild_gives_the_quads_projection_gave(store_dir, primer, capsys):
    from provml.config import resolve_store
    from provml.rdf import open_rdf_store

    main(["import", str(primer)])
    main(["rdf", "project"])
    with open_rdf_store(resolve_store()) as rdf:
        before = rdf.checksum()
    assert main(["rdf", "rebuild"]) == 0
    with open_rdf_store(resolve_store()) as rdf:
        assert rdf.checksum() == before


def test_a_malformed_document_is_refused_naming_the_file_and_nothing_is_stored(store_dir, capsys):
    from provml.store import open_record_store

    bad = conformance_dir() / "prov" / "trungdong-prov" / "malformed" / "bad_record_content.json"
    main(["db", "upgrade"])
    with open_record_store() as store:
        before = store.checksum()
    assert main(["import", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad_record_content.json" in err
    with open_record_store() as store:
        assert store.checksum() == before


def test_a_file_that_is_not_there_is_named(store_dir, capsys):
    assert main(["import", "/nonexistent/doc.json"]) == 1
    assert "/nonexistent/doc.json" in capsys.readouterr().err


@pytest.mark.postgres
def test_db_upgrade_brings_an_empty_postgres_database_to_head(postgres_url, capsys):
    assert main(["db", "current", "--store", postgres_url]) == 0
    assert "behind" in capsys.readouterr().out
    assert main(["lineage", "https://example.org/x", "--store", postgres_url]) == 1
    assert "provml db upgrade" in capsys.readouterr().err
    assert main(["db", "upgrade", "--store", postgres_url]) == 0
    assert main(["db", "current", "--store", postgres_url]) == 0
    assert "(current)" in capsys.readouterr().out
