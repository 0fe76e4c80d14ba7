"""What capture does to save CPU in the user's job records exactly what it did before."""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime

from provml import ids, inbox
from provml.capture import _export
from provml.capture._values import Digests
from provml.records import Bundle, Element, Literal, Ref, Relation


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
