"""Identifiers: time-ordered UUIDs, content digests, IRIs under one base, store URLs."""

from __future__ import annotations

import hashlib
import os
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provml import ids
from provml.config import resolve_store
from provml.errors import ConfigurationError


def test_uuid7_ids_are_version_7_and_sort_in_creation_order():
    made = [ids.uuid7() for _ in range(5000)]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in made)
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_the_same_bytes_get_the_same_iri_in_any_file(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"seismic" * 1000)
    b.write_bytes(b"seismic" * 1000)
    (da, sampled), (db, _) = ids.digest_file(a), ids.digest_file(b)
    assert da == db == ids.digest_bytes(b"seismic" * 1000)
    assert not sampled
    assert ids.data_iri(da) == ids.data_iri(db)
    b.write_bytes(b"seismic" * 999 + b"SEISMIC")
    assert ids.digest_file(b)[0] != da


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, (3 << 20) + 7])
def test_a_file_digest_is_the_sha256_that_sha256sum_prints(tmp_path, size):
    path = tmp_path / "volume.npy"
    data = os.urandom(size)
    path.write_bytes(data)
    expected = f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert ids.digest_file(path) == (expected, False)
    assert ids.digest_file(path, size) == (expected, False)
    assert ids.digest_bytes(data) == expected


def test_huge_files_are_digested_from_a_sample_and_say_so(tmp_path, monkeypatch):
    monkeypatch.setattr(ids, "SAMPLE_THRESHOLD", 1024)
    monkeypatch.setattr(ids, "_SAMPLE_CHUNK", 64)
    path = tmp_path / "cube.segy"
    path.write_bytes(bytes(range(256)) * 64)
    digest, sampled = ids.digest_file(path)
    assert sampled
    assert digest.startswith("sha256-sampled:")


def test_directory_digest_depends_on_names_and_content(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_bytes(b"1")
    first = ids.digest_directory(tmp_path / "d")[0]
    (tmp_path / "d" / "x").rename(tmp_path / "d" / "y")
    assert ids.digest_directory(tmp_path / "d")[0] != first


def test_iris_are_built_under_the_configured_base(monkeypatch):
    monkeypatch.setenv("PROVML_BASE_IRI", "https://lab.example.org/prov")
    assert ids.iri("model", "salt detector", "v", 2) == (
        "https://lab.example.org/prov/model/salt%20detector/v/2"
    )
    assert ids.reference_iri("lustre:/proj", "cubes/a.segy") == ids.reference_iri(
        "lustre:/proj", "cubes/a.segy"
    )
    assert ids.reference_iri("lustre:/proj", "a") != ids.reference_iri("s3://bucket", "a")


def test_store_urls_resolve_to_both_sides(monkeypatch, tmp_path):
    monkeypatch.delenv("PROVML_STORE", raising=False)
    monkeypatch.delenv("PROVML_RDF", raising=False)
    default = resolve_store()
    assert default.sql_url == "sqlite:///.provml/provml.sqlite" and default.embedded
    pg = resolve_store("postgresql://postgres@127.0.0.1/lab")
    assert pg.sql_url == "postgresql+psycopg://postgres@127.0.0.1/lab"
    assert not pg.embedded and pg.rdf_path.endswith("oxigraph-lab")
    lite = resolve_store(f"sqlite:///{tmp_path}/p.sqlite")
    assert lite.rdf_path == f"{tmp_path}/p.oxigraph"
    monkeypatch.setenv("PROVML_STORE", str(tmp_path / "store"))
    by_directory = resolve_store()
    assert by_directory.sql_url == f"sqlite:///{tmp_path}/store/provml.sqlite"
    assert resolve_store(by_directory.sql_url) == by_directory


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite://", "https://provml.example.org"])
def test_store_urls_provml_cannot_use_say_what_to_use(url):
    with pytest.raises(ConfigurationError, match="store URL"):
        resolve_store(url)


@given(st.text())
def test_a_segment_is_quoted_exactly_as_quote_does_whether_or_not_it_needs_it(text):
    from urllib.parse import quote

    assert ids.iri("data", text, base="https://example.org/") == (
        "https://example.org/data/" + quote(text, safe="-._~")
    )
