"""PROV serialisations: round trips per format, format detection, bad input, PROV-O triples."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provml import prov_io
from provml.errors import InvalidRecord, MissingExtra, ParseError, UnsupportedFormat
from provml.records import Bundle, Element, Literal, Ref, Relation, check_bundle
from provml.vocab import PROV, PROVML, RELATIONS, XSD, XSD_ANYURI

EX = "http://example.org/"
PROV_I18N = PROV + "InternationalizedString"
RDF_FORMATS = ("turtle", "jsonld", "nquads", "trig")


# ------------------------------------------------------------------------ helpers


def record_key(record) -> str:
    """A record as comparable text: PROV gives attributes no order."""
    attributes = tuple(sorted(record.attributes, key=repr))
    if isinstance(record, Element):
        return repr((record.kind, record.id, attributes, record.start_time, record.end_time))
    return repr(
        (
            record.kind,
            record.id,
            record.subject,
            record.object,
            record.time,
            record.extras,
            attributes,
        )
    )


def canonical(bundles: list[Bundle]) -> list[tuple]:
    """Bundles as comparable data: PROV gives records no order, nor nested bundles."""
    top, *nested = [(b.id, b.parent, sorted(record_key(r) for r in b.records)) for b in bundles]
    return [top, *sorted(nested)]


def round_trip(bundles: list[Bundle], fmt: str) -> list[Bundle]:
    data = prov_io.serialize(bundles, fmt)
    return prov_io.parse(data, fmt, bundle_id=bundles[0].id)


def sample_bundle() -> Bundle:
    start = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    return Bundle(
        EX + "run/1",
        (
            Element(
                "entity",
                EX + "data/cube7",
                (
                    (PROV + "type", Ref(PROVML + "DomainData")),
                    (PROV + "label", "seismic cube 7"),
                    (PROVML + "sizeBytes", 4096),
                    (PROVML + "sampled", True),
                    (EX + "ratio", 0.25),
                    (EX + "region", Literal("north", PROV_I18N, "en")),
                    (EX + "depth", Literal("12.50", XSD + "decimal")),
                    (EX + "source", Literal("s3://bucket/cube7", XSD_ANYURI)),
                ),
            ),
            Element("activity", EX + "run/1/train", (), start, start + timedelta(hours=2)),
            Element("agent", EX + "people/ana", ((PROV + "type", Ref(PROV + "Person")),)),
            Element("entity", EX + "model/salt-v7"),
            Relation("used", EX + "run/1/train", EX + "data/cube7", time=start),
            Relation(
                "wasGeneratedBy",
                EX + "model/salt-v7",
                EX + "run/1/train",
                id=EX + "gen/salt-v7",
                time=start + timedelta(hours=2),
            ),
            Relation(
                "wasAssociatedWith",
                EX + "run/1/train",
                EX + "people/ana",
                extras=(("plan", EX + "plans/training"),),
                attributes=((PROV + "role", "trainer"),),
            ),
            Relation(
                "wasDerivedFrom",
                EX + "model/salt-v7",
                EX + "data/cube7",
                attributes=((PROV + "type", Ref(PROV + "Revision")),),
            ),
        ),
        namespaces=(("ex", EX),),
    )


# ------------------------------------------------------------- generated documents

_local = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
_iris = st.one_of(
    _local.map(lambda s: EX + s),
    _local.map(lambda s: "http://other.example/ns#" + s),
    st.uuids().map(lambda u: f"urn:uuid:{u}"),
)
_attribute_names = st.one_of(
    st.sampled_from([PROV + "type", PROV + "value", PROV + "location"]),
    _local.map(lambda s: EX + "attr/" + s),
)
_text = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Z"))
    | st.sampled_from(" \t\n\r"),
    max_size=20,
)
_times = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(fold=0)) | st.builds(
    lambda d, minutes: d.replace(tzinfo=timezone(timedelta(minutes=minutes)), fold=0),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
    st.integers(-14 * 60, 14 * 60).map(lambda m: m - m % 15),
)
_values = st.one_of(
    _text,
    st.integers(-(2**31), 2**31 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    _times,
    _iris.map(Ref),
    st.builds(Literal, _text, st.just(PROV_I18N), st.sampled_from(["en", "fr", "pt-BR"])),
    st.builds(
        Literal,
        st.from_regex(r"-?[1-9][0-9]{0,5}\.[0-9]{1,3}", fullmatch=True),
        st.just(XSD + "decimal"),
    ),
    st.builds(Literal, _local, st.just(EX + "datatypes/code")),
    _iris.map(lambda iri: Literal(iri, XSD_ANYURI)),
)
# PROV-DM: a label is a string, possibly language-tagged (PROV-XML writes no other).
_labels = st.tuples(
    st.just(PROV + "label"),
    _text | st.builds(Literal, _text, st.just(PROV_I18N), st.sampled_from(["en", "de"])),
)
_attributes = st.lists(st.tuples(_attribute_names, _values) | _labels, max_size=4, unique=True).map(
    tuple
)


# PROV-O gives these relations no qualified form: no id, no attributes (see PROV-O §4.1).
_UNQUALIFIED = ("specializationOf", "alternateOf", "hadMember", "mentionOf")


@st.composite
def _bundle_records(draw, ids, prov_o):
    pool = st.sampled_from(ids)
    records = []
    fresh = iter(ids)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["entity", "activity", "agent"]))
        start = end = None
        if kind == "activity":
            start = draw(st.none() | _times)
            end = draw(st.none() | _times)
        records.append(Element(kind, next(fresh), draw(_attributes), start, end))
    for kind in draw(st.lists(st.sampled_from(sorted(RELATIONS)), max_size=6)):
        signature = RELATIONS[kind]
        plain = prov_o and kind in _UNQUALIFIED
        extras = tuple(
            sorted(
                (name, draw(pool))
                for name in signature.extras
                # PROV-O writes a mention only with its bundle (prov:asInBundle).
                if draw(st.booleans()) or (prov_o and kind == "mentionOf")
            )
        )
        rid = None if plain else draw(st.none() | st.just(next(fresh)))
        # An argument may be left out ("-") where the relation keeps its id; PROV-O
        # has nothing to hang an unidentified relation without an object on.
        optional = st.none() | pool if rid or not prov_o else pool
        relation = Relation(
            kind,
            draw(optional) if rid and not prov_o else draw(pool),
            draw(pool) if kind in _UNQUALIFIED else draw(optional),
            id=rid,
            time=draw(st.none() | _times) if signature.has_time else None,
            extras=extras,
            attributes=() if plain else draw(_attributes),
        )
        # A statement repeated without an id is the same statement. In PROV-O an
        # identified relation implies its unqualified triple, so a second relation of
        # the same kind and subject would merge into it.
        key = (kind, relation.subject) if prov_o else record_key(relation)
        seen = [(r.kind, getattr(r, "subject", r.id)) if prov_o else record_key(r) for r in records]
        if key not in seen:
            records.append(relation)
    return tuple(records)


@st.composite
def documents(draw, max_bundles=3, prov_o=False):
    """A PROV document as provml bundles: every relation kind, typed attributes."""
    count = draw(st.integers(1, max_bundles))
    bundle_ids = [EX + f"bundles/b{i}" for i in range(count)]
    bundles = []
    for i, bundle_id in enumerate(bundle_ids):
        ids = [EX + f"b{i}/r{n}" for n in range(12)]
        bundles.append(
            Bundle(
                bundle_id,
                draw(_bundle_records(ids, prov_o)),
                namespaces=(("ex", EX),),
                parent=bundle_ids[0] if i else None,
            )
        )
    return [check_bundle(b) for b in bundles]


_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("fmt", ["json", "xml", "provn"])
@_SETTINGS
@given(bundles=documents())
def test_generated_documents_round_trip_through_prov_json_xml_and_n(fmt, bundles):
    back = round_trip(bundles, fmt)
    assert canonical(back) == canonical(bundles)
    assert prov_io.to_prov_document(back) == prov_io.to_prov_document(bundles)


@pytest.mark.parametrize("fmt", ["trig", "nquads", "jsonld"])
@_SETTINGS
@given(bundles=documents(prov_o=True))
def test_generated_documents_round_trip_through_prov_o_datasets(fmt, bundles):
    back = round_trip(bundles, fmt)
    assert canonical(back) == canonical(bundles)
    assert prov_io.to_prov_document(back) == prov_io.to_prov_document(bundles)


@_SETTINGS
@given(bundles=documents(max_bundles=1, prov_o=True))
def test_generated_single_bundles_round_trip_through_turtle(bundles):
    back = round_trip(bundles, "turtle")
    assert canonical(back) == canonical(bundles)


@settings(max_examples=25, deadline=None)
@given(bundles=documents())
def test_prov_document_conversion_is_exact(bundles):
    doc = prov_io.to_prov_document(bundles)
    back = prov_io.from_prov_document(doc, bundles[0].id)
    assert canonical(back) == canonical(bundles)


# ------------------------------------------------------------------ format by format


@pytest.mark.parametrize("fmt", prov_io.EXPORT_FORMATS)
def test_sample_bundle_round_trips_exactly(fmt):
    bundle = sample_bundle()
    (back,) = round_trip([bundle], fmt)
    assert canonical([back]) == canonical([bundle])
    assert back.id == bundle.id and back.parent is None


@pytest.mark.parametrize("fmt", ["json", "xml", "provn", "trig", "nquads", "jsonld"])
def test_nested_bundles_come_back_nested_under_the_top_bundle(fmt):
    top = Bundle(EX + "doc", (Element("entity", EX + "bundles/inner"),))
    inner = Bundle(EX + "bundles/inner", (Element("entity", EX + "x"),), parent=top.id)
    back = round_trip([top, inner], fmt)
    assert [(b.id, b.parent) for b in back] == [(top.id, None), (inner.id, top.id)]
    assert back[1].records == inner.records


def test_turtle_refuses_nested_bundles_and_names_the_formats_that_keep_them():
    top = Bundle(EX + "doc")
    inner = Bundle(EX + "inner", parent=top.id)
    with pytest.raises(UnsupportedFormat, match="trig"):
        prov_io.serialize([top, inner], "turtle")


def test_prov_json_export_declares_the_bundle_namespaces():
    import json

    document = json.loads(prov_io.serialize([sample_bundle()], "json"))
    assert document["prefix"]["ex"] == EX
    assert "ex:run/1/train" not in document["activity"]  # not an NCName: own prefix
    assert len(document["activity"]) == 1


def test_provn_export_is_read_back_by_prov_itself():
    from prov.model import ProvDocument

    data = prov_io.serialize([sample_bundle()], "provn")
    assert data.startswith(b"document")
    assert ProvDocument.deserialize(content=data, format="provn") == prov_io.to_prov_document(
        [sample_bundle()]
    )


def test_literals_keep_their_lexical_form_through_rdf():
    bundle = Bundle(
        EX + "b",
        (
            Element(
                "entity",
                EX + "e",
                (
                    (EX + "d", Literal("P0Y0M0DT0H0M12.225S", XSD + "duration")),
                    (EX + "n", Literal("10", XSD + "decimal")),
                ),
            ),
        ),
    )
    for fmt in RDF_FORMATS:
        assert canonical(round_trip([bundle], fmt)) == canonical([bundle]), fmt


def test_relation_without_its_first_argument_round_trips_when_it_has_an_id():
    relation = Relation("used", None, EX + "e1", id=EX + "use1")
    bundle = Bundle(EX + "b", (relation,))
    for fmt in ("json", "xml", "provn"):
        assert round_trip([bundle], fmt)[0].records == (relation,), fmt


def test_repeated_element_descriptions_are_merged_into_one():
    data = b"""{"prefix": {"ex": "http://example.org/"},
      "entity": {"ex:e1": [{"prov:label": "one"}, {"ex:size": 3}]}}"""
    (bundle,) = prov_io.parse(data, "json", bundle_id=EX + "doc")
    (element,) = bundle.records
    assert set(element.attributes) == {(PROV + "label", "one"), (EX + "size", 3)}


def test_an_id_described_as_entity_and_activity_is_refused():
    data = b"""{"prefix": {"ex": "http://example.org/"},
      "entity": {"ex:x": {}}, "activity": {"ex:x": {}}}"""
    with pytest.raises(InvalidRecord, match="constraint 55"):
        prov_io.parse(data, "json", bundle_id=EX + "doc")


def test_unifiable_relation_statements_sharing_an_id_become_one_relation():
    data = b"""{"prefix": {"ex": "http://example.org/"},
      "used": {"ex:u": [{"prov:activity": "ex:a", "prov:entity": "ex:e"},
                         {"prov:activity": "ex:a", "prov:time": "2020-01-01T00:00:00Z",
                          "prov:label": "x"}]}}"""
    (bundle,) = prov_io.parse(data, "json", bundle_id=EX + "doc")
    (relation,) = bundle.records
    assert relation.object == EX + "e"
    assert relation.time == datetime(2020, 1, 1, tzinfo=UTC)
    assert relation.attributes == ((PROV + "label", "x"),)


# --------------------------------------------------------------------- PROV-O graph


def test_bundle_to_rdf_gives_the_prov_o_triples_of_the_bundle():
    from rdflib import RDF, Graph, URIRef
    from rdflib import Literal as RDFLiteral
    from rdflib.namespace import PROV as P

    graph = prov_io.bundle_to_rdf(sample_bundle())
    assert type(graph) is Graph
    entity, activity = URIRef(EX + "data/cube7"), URIRef(EX + "run/1/train")
    generation = URIRef(EX + "gen/salt-v7")
    assert (entity, RDF.type, P.Entity) in graph
    assert (entity, RDF.type, URIRef(PROVML + "DomainData")) in graph
    usage = graph.value(activity, P.qualifiedUsage)
    assert (usage, P.entity, entity) in graph
    assert (usage, P.atTime, None) in graph
    assert (activity, P.used, entity) not in graph  # only in qualified form
    assert (activity, P.used, entity) in prov_io.bundle_to_rdf(sample_bundle(), shortcuts=True)
    assert (URIRef(EX + "model/salt-v7"), P.qualifiedGeneration, generation) in graph
    assert (generation, P.activity, activity) in graph
    assert (activity, P.startedAtTime, None) in graph
    assert (entity, URIRef(PROVML + "sizeBytes"), None) in graph
    sizes = list(graph.objects(entity, URIRef(PROVML + "sizeBytes")))
    assert sizes == [RDFLiteral("4096", datatype=URIRef(XSD + "int"))]


def test_shortcuts_add_the_unqualified_triples_of_derivation_subtypes():
    from rdflib import URIRef
    from rdflib.namespace import PROV as P

    graph = prov_io.bundle_to_rdf(sample_bundle(), shortcuts=True)
    model, cube = URIRef(EX + "model/salt-v7"), URIRef(EX + "data/cube7")
    assert (model, P.wasDerivedFrom, cube) in graph
    assert (model, P.wasRevisionOf, cube) in graph
    assert (model, P.wasGeneratedBy, URIRef(EX + "run/1/train")) in graph


def test_bundles_to_dataset_puts_each_bundle_in_its_own_named_graph():
    from rdflib import URIRef

    top = sample_bundle()
    inner = Bundle(EX + "inner", (Element("entity", EX + "only-inner"),), parent=top.id)
    dataset = prov_io.bundles_to_dataset([top, inner])
    graphs = {str(g.identifier): g for g in dataset.graphs() if len(g)}
    assert set(graphs) == {top.id, inner.id}
    assert (URIRef(EX + "only-inner"), None, None) in graphs[inner.id]
    assert (URIRef(EX + "only-inner"), None, None) not in graphs[top.id]


def test_bundle_to_rdf_projects_a_thousand_records_quickly():
    import time

    records = tuple(
        Element("entity", EX + f"e/{i}", ((PROV + "label", f"e{i}"),)) for i in range(500)
    )
    records += tuple(
        Relation("wasDerivedFrom", EX + f"e/{i}", EX + f"e/{i - 1}") for i in range(1, 500)
    )
    started = time.perf_counter()
    graph = prov_io.bundle_to_rdf(Bundle(EX + "big", records))
    assert len(graph) == 500 * 2 + 499
    assert time.perf_counter() - started < 2.0


# ------------------------------------------------------------------ format detection


@pytest.mark.parametrize(
    ("media_type", "expected"),
    [
        ("application/json", "json"),
        ("application/xml; charset=utf-8", "xml"),
        ("text/provenance-notation", "provn"),
        ("text/turtle", "turtle"),
        ("application/ld+json", "jsonld"),
        ("application/n-quads", "nquads"),
        ("application/trig", "trig"),
        ("application/rdf+xml", "rdfxml"),
    ],
)
def test_media_types_name_their_format(media_type, expected):
    assert prov_io.detect_format(media_type=media_type) == expected


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("doc.json", "json"),
        ("doc.provx", "xml"),
        ("DOC.XML", "xml"),
        ("doc.provn", "provn"),
        ("doc.ttl", "turtle"),
        ("doc.jsonld", "jsonld"),
        ("doc.nq", "nquads"),
        ("doc.trig", "trig"),
        ("doc.rdf", "rdfxml"),
    ],
)
def test_file_extensions_name_their_format(filename, expected):
    assert prov_io.detect_format(filename=filename) == expected


@pytest.mark.parametrize("fmt", prov_io.EXPORT_FORMATS)
def test_every_export_is_recognised_from_its_content(fmt):
    data = prov_io.serialize([sample_bundle()], fmt)
    detected = prov_io.detect_format(data=data)
    assert detected == fmt or (fmt, detected) == ("turtle", "trig")
    assert canonical(prov_io.parse(data, None, bundle_id=EX + "run/1")) == canonical(
        [sample_bundle()]
    )


def test_json_media_types_are_refined_by_the_content():
    assert prov_io.detect_format(media_type="application/json", data=b'{"@id": "x"}') == "jsonld"
    assert prov_io.detect_format(media_type="application/ld+json", data=b'{"entity": {}}') == (
        "json"
    )


def test_text_documents_are_read_as_utf8():
    (bundle,) = prov_io.parse(
        '{"prefix": {"ex": "http://e/"}, "entity": {"ex:é": {}}}', "json", bundle_id=EX + "d"
    )
    assert bundle.records == (Element("entity", "http://e/é"),)


def test_a_document_nesting_a_bundle_under_its_own_id_is_refused():
    data = b"""{"prefix": {"ex": "http://example.org/"}, "bundle": {"ex:doc": {}}}"""
    with pytest.raises(InvalidRecord, match="nests a bundle"):
        prov_io.parse(data, "json", bundle_id=EX + "doc")


def test_a_specific_media_type_wins_over_the_file_extension():
    assert prov_io.detect_format(filename="x.json", media_type="text/turtle") == "turtle"
    assert prov_io.detect_format(filename="x.ttl", media_type="application/octet-stream") == (
        "turtle"
    )


def test_unknown_formats_are_refused_naming_the_supported_ones():
    with pytest.raises(UnsupportedFormat) as caught:
        prov_io.detect_format(filename="notes.docx", data=b"PK\x03\x04")
    for name in prov_io.FORMATS:
        assert name in caught.value.message
    with pytest.raises(UnsupportedFormat, match="image/png"):
        prov_io.detect_format(media_type="image/png")
    with pytest.raises(UnsupportedFormat, match="import-only"):
        prov_io.serialize([sample_bundle()], "rdfxml")
    with pytest.raises(UnsupportedFormat, match="'yaml'"):
        prov_io.parse(b"a: 1", "yaml", bundle_id=EX + "d")


# ------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("fmt", "data", "expected"),
    [
        ("json", b'{"entity": {"ex:e": {}}', "line 1"),
        ("json", b"[]", "must be a JSON object"),
        ("json", b'{"prefix": []}', "prefix"),
        ("json", b'{"entity": {"ex:e": 3}}', "ex:e"),
        ("json", b'{"wasFooedBy": {}}', "wasFooedBy"),
        (
            "json",
            b'{"prefix": {"ex": "http://e/"}, "entity": {"ex:e": {"ex:a": {"type": "xsd:int"}}}}',
            '"\\$"',
        ),
        ("json", b'{"entity": {"nope:e": {}}}', "prefix 'nope'"),
        ("json", b'{"entity": {"e": {}}}', "no default namespace"),
        ("json", b'{"bundle": {"ex:b": {}}}', "'ex'"),
        ("xml", b"<prov:document xmlns:prov='http://www.w3.org/ns/prov#'><prov:entity>", "line 1"),
        ("xml", b"<html/>", "prov:document"),
        ("provn", b"document\n  entity(ex:e\nendDocument", "line"),
        ("provn", b"document\n  fooOf(ex:e)\nendDocument", "line 2"),
        ("turtle", b"@prefix ex: <http://e/> .\nex:a ex:b", "ends in the middle"),
        ("turtle", b"@prefix ex: <http://e/> .\nex:a ex:b ex:c ex:d .", "line 2"),
        ("trig", b"{ <http://a> <http://b> }", "TriG"),
        ("nquads", b"<http://a> <http://b> .", "N-Quads"),
        ("jsonld", b'{"@id": ', "JSON-LD"),
    ],
)
def test_malformed_documents_raise_parse_errors_that_name_the_problem(fmt, data, expected):
    with pytest.raises(ParseError, match=expected) as caught:
        prov_io.parse(data, fmt, bundle_id=EX + "doc", filename=f"upload.{fmt}")
    assert caught.value.message.startswith("upload.")


def test_rdf_imports_keep_only_the_namespaces_the_data_uses():
    document = b"""<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
        xmlns:prov="http://www.w3.org/ns/prov#" xmlns:ex="http://example.org/">
      <prov:Entity rdf:about="http://example.org/x"/></rdf:RDF>"""
    (bundle,) = prov_io.parse(document, "rdfxml", bundle_id=EX + "doc")
    assert bundle.records == (Element("entity", EX + "x"),)
    assert ("ex", EX) in bundle.namespaces
    assert not {"brick", "csvw", "schema"} & {prefix for prefix, _ in bundle.namespaces}


def test_json_ld_remote_contexts_are_not_fetched():
    document = b'{"@context": "http://127.0.0.1:9/context.jsonld", "@id": "http://e/x"}'
    with pytest.raises(ParseError, match="offline") as refused:
        prov_io.parse(document, "jsonld", bundle_id=EX + "doc")
    assert "127.0.0.1:9" in refused.value.message


def test_json_ld_with_an_embedded_context_is_read():
    document = b"""{"@context": {"prov": "http://www.w3.org/ns/prov#"},
      "@id": "http://e/x", "@type": "prov:Entity"}"""
    (bundle,) = prov_io.parse(document, "jsonld", bundle_id=EX + "doc")
    assert bundle.records == (Element("entity", "http://e/x"),)


def test_prov_json_ld_is_told_apart_from_prov_o_json_ld_by_content():
    document = b'{"@context": ["https://openprovenance.org/prov-jsonld/context.jsonld"]}'
    assert prov_io.detect_format(filename="doc.jsonld", data=document) == "prov-jsonld"
    assert prov_io.detect_format(filename="doc.jsonld", data=b'{"@id": "x"}') == "jsonld"
    assert prov_io.detect_format(filename="doc.json", data=b'{"entity": {}}') == "json"


@pytest.mark.parametrize("fmt", list(prov_io.FORMATS))
def test_empty_documents_are_refused_in_every_format(fmt):
    with pytest.raises(ParseError, match="empty"):
        prov_io.parse(b" \n", fmt, bundle_id=EX + "doc")


def test_json_errors_carry_line_and_column():
    with pytest.raises(ParseError) as caught:
        prov_io.parse(b'{\n  "entity": {\n    "ex:e": {,}\n  }\n}', "json", bundle_id=EX + "d")
    assert caught.value.details["line"] == 3


def test_text_xml_cannot_carry_is_refused_naming_the_record():
    bundle = Bundle(EX + "b", (Element("entity", EX + "e", ((EX + "note", "bell\x07"),)),))
    with pytest.raises(InvalidRecord, match="U\\+0007") as refused:
        prov_io.serialize([bundle], "xml")
    assert refused.value.record == EX + "e"
    assert canonical(round_trip([bundle], "json")) == canonical([bundle])


@pytest.mark.parametrize("fmt", prov_io.EXPORT_FORMATS)
def test_lone_surrogates_are_refused_by_every_writer(fmt):
    bundle = Bundle(EX + "b", (Element("entity", EX + "e", ((EX + "note", "a\ud800"),)),))
    with pytest.raises(InvalidRecord, match="surrogate"):
        prov_io.serialize([bundle], fmt)


def test_ids_that_cannot_be_a_qualified_name_are_refused_on_export():
    with pytest.raises(InvalidRecord, match="qualified name"):
        prov_io.serialize([Bundle(EX + "b", (Element("entity", "x:"),))], "json")


def test_a_statement_leaving_out_the_subject_unifies_with_one_that_gives_it():
    data = b"""{"prefix": {"ex": "http://example.org/"},
      "used": {"ex:u": [{"prov:entity": "ex:e"}, {"prov:activity": "ex:a"}]}}"""
    (bundle,) = prov_io.parse(data, "json", bundle_id=EX + "doc")
    assert bundle.records == (Relation("used", EX + "a", EX + "e", id=EX + "u"),)


# --------------------------------------------------------------------- dependencies


def test_a_missing_rdflib_is_reported_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "rdflib", None)
    with pytest.raises(MissingExtra, match=r"pip install 'provml\[server\]'"):
        prov_io.bundle_to_rdf(sample_bundle())


def test_prov_io_imports_neither_sqlalchemy_nor_fastapi():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('sqlalchemy', 'fastapi'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from provml import prov_io\n"
        "prov_io.serialize([prov_io.Bundle('http://e/b')], 'json')\n"
        "assert prov_io.bundle_to_rdf(prov_io.Bundle('http://e/b')) is not None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_surface_is_exactly_all():
    defined_here = {
        name
        for name, obj in vars(prov_io).items()
        if not name.startswith("_") and getattr(obj, "__module__", None) == prov_io.__name__
    }
    assert defined_here | {"FORMATS", "EXPORT_FORMATS"} == set(prov_io.__all__)
