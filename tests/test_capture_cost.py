"""What capture does to save CPU in the user's job records exactly what it did before."""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime

import pytest

import provml.capture as capture
from provml import ids, inbox
from provml.capture import _export
from provml.capture._digest_cache import DigestCache
from provml.capture._values import Digests
from provml.capture.testing import InMemoryExporter
from provml.records import Bundle, Element, Literal, Ref, Relation


@pytest.fixture(autouse=True)
def no_capture_left_behind():
    yield
    capture.shutdown(timeout=5)


def tricky_bundles() -> list[Bundle]:
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    return [
        Bundle(
            'urn:x:"records":[]',  # the key the encoder splices at, inside an id
            (
                Element(
                    "entity",
                    'urn:a"records":[]',
                    (
                        ("urn:p", 'é "records":[] \u2028 \\'),
                        ("urn:q", Ref("urn:r")),
                        ("urn:l", Literal("x", "urn:t", "en")),
                        ("urn:n", 1.5),
                        ("urn:b", True),
                    ),
                ),
                Element("activity", "urn:act", (), when, when),
            ),
            (("ex", "urn:ex:"),),
            parent="urn:parent",
            attributes=(("urn:battr", 2),),
        ),
        Bundle("urn:empty"),
        Bundle(
            "urn:many",  # more records than one encoding chunk, and not a multiple of it
            tuple(
                Relation("used", f"urn:s{i}", f"urn:o{i}", time=when, extras=(("urn:k", "urn:v"),))
                for i in range(3 * _export._ENCODE_CHUNK + 5)
            ),
        ),
    ]


def test_encode_batch_is_the_inbox_json_byte_for_byte() -> None:
    bundles = tricky_bundles()
    for n in range(len(bundles) + 1):
        expected = inbox.encode(_export.wire_batch(bundles[:n], 17))
        assert _export.encode_batch(bundles[:n], 17) == expected


def test_encode_batch_parses_to_the_wire_batch() -> None:
    bundles = tricky_bundles()
    assert json.loads(_export.encode_batch(bundles, 3)) == _export.wire_batch(bundles, 3)


def test_the_inbox_destination_writes_what_inbox_write_would(tmp_path) -> None:
    bundles = tricky_bundles()
    destination = _export.InboxDestination.__new__(_export.InboxDestination)
    destination.directory = tmp_path / "a"
    destination.export(bundles)
    reference = inbox.write(tmp_path / "b", _export.wire_batch(bundles, 2 + 3 * 64 + 5))
    (written,) = inbox.waiting(tmp_path / "a")
    assert written.read_bytes() == reference.read_bytes()
    assert not list((tmp_path / "a").glob("*.tmp"))


def test_encoding_a_batch_leaves_little_for_the_garbage_collector() -> None:
    """The wire form of a whole batch alive at once set off collections on its own."""
    when = datetime(2024, 5, 1, tzinfo=UTC)
    records = tuple(
        Element("entity", f"urn:e{i}", (("urn:a", "x"), ("urn:b", Ref("urn:c")), ("urn:d", 1)))
        for i in range(2000)
    )
    bundles = [Bundle("urn:run", (*records, Element("activity", "urn:act", (), when)))]

    def collections_during(encode) -> int:
        collections: list[int] = []

        def count(phase: str, info: dict) -> None:
            if phase == "start":
                collections.append(info["generation"])

        gc.collect()
        gc.callbacks.append(count)
        try:
            encode()
        finally:
            gc.callbacks.remove(count)
        return len(collections)

    whole = collections_during(lambda: inbox.encode(_export.wire_batch(bundles, 2001)))
    chunked = collections_during(lambda: _export.encode_batch(bundles, 2001))
    assert whole >= 5  # ~9,000 containers alive at once
    assert chunked <= 1


def test_data_iris_are_remembered_and_the_same(tmp_path) -> None:
    digests = Digests("https://example.org/prov/")
    file = tmp_path / "a b%.bin"
    file.write_bytes(b"content")
    first = digests.path(file, None)
    again = digests.path(file, None)
    digest = first.attributes["contentDigest"]
    assert first.iri == again.iri == ids.data_iri(digest, base="https://example.org/prov/")
    assert digests.buffer(b"content", None).iri == first.iri


def test_data_iris_of_sampled_digests_are_those_of_ids_data_iri() -> None:
    digests = Digests("https://example.org/prov#")
    for digest in ("sha256:00ff", "sha256-sampled:abc123", "odd:digest with space/é"):
        assert digests._data_iri(digest) == ids.data_iri(digest, base="https://example.org/prov#")


def read_cache(path) -> dict:
    cache = DigestCache(path)
    cache.get(("", 0, 0, 0, 0, 0))
    return cache._entries


def test_the_digest_cache_reads_every_whole_line_and_skips_damaged_ones(tmp_path) -> None:
    good = [["/a", 1, 2, 3, 4, 5, "sha256:aa", False], ["/b", 1, 3, 3, 4, 5, "sha256:bb", True]]
    lines = [json.dumps(row) for row in good]
    path = tmp_path / "digests.jsonl"
    path.write_text("\n".join(lines) + "\n")
    expected = {tuple(row[:6]): (row[6], row[7]) for row in good}
    assert read_cache(path) == expected
    # A torn line, a line holding two values, blank lines: each read as line by line would.
    path.write_text(
        "\n".join([lines[0], '["/c",1,2', "", '["/d",1,2,3,4,5,"x",false],[1]', lines[1]]) + "\n"
    )
    assert read_cache(path) == expected


def test_repeated_records_of_one_call_are_left_out_and_the_rest_kept_in_order() -> None:
    from provml.capture._build import _distinct

    when = datetime(2024, 5, 1, tzinfo=UTC)
    param = Element("entity", "urn:act/param/lr", (("urn:v", "0.1"),))
    other_value = Element("entity", "urn:act/param/lr", (("urn:v", "0.2"),))  # same id
    used = Relation("used", "urn:act", "urn:data", time=when, attributes=(("urn:role", "x"),))
    used_as_y = Relation("used", "urn:act", "urn:data", time=when, attributes=(("urn:role", "y"),))
    out = [("b", param), ("b", used), ("b", other_value), ("b", param), ("b", used_as_y)]
    out += [("b", used), ("other", used)]
    assert _distinct(out) == list(dict.fromkeys(out))
    assert _distinct(out) == [out[0], out[1], out[2], out[4], out[6]]
    unique = [("b", param), ("b", used)]
    assert _distinct(unique) is unique  # nothing hashed field by field


def test_data_used_twice_under_one_name_in_a_block_gives_one_usage() -> None:
    exporter = InMemoryExporter()
    capture.init("w", exporter=exporter)
    with capture.training("fit") as fit:
        capture.used(b"same bytes", "data")
        capture.used(b"same bytes", "data")
    fit.used(b"same bytes", "data")  # after the end: a call of its own, at its own time
    capture.flush()
    assert len(exporter.relations("used", subject=fit.iri)) == 2
