"""The record model: one validating entry point, exact wire round trips, PROV-DM merging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provml.errors import Conflict, InvalidRecord
from provml.records import (
    Bundle,
    Element,
    Literal,
    Ref,
    Relation,
    bundle_from_dict,
    bundle_to_dict,
    check_bundle,
    merge_elements,
    record_from_dict,
)
from provml.vocab import PROV_TYPE, PROVML, RELATIONS, XSD

EX = "https://example.org/"


def entity(name: str, *attributes) -> Element:
    return Element("entity", EX + name, tuple(attributes))


def test_a_bundle_with_one_bad_record_is_refused_naming_record_and_field():
    bad = Relation("used", EX + "train", "not an iri", id=EX + "u1")
    with pytest.raises(InvalidRecord) as info:
        check_bundle(Bundle(EX + "b", (entity("e"), bad)))
    assert info.value.record == EX + "u1"
    assert info.value.field == "entity"
    assert "absolute IRI" in info.value.message


def test_unknown_relation_kinds_and_misplaced_arguments_are_refused():
    with pytest.raises(InvalidRecord, match="unknown PROV relation"):
        check_bundle(Bundle(EX + "b", (Relation("wasEatenBy", EX + "a", EX + "b"),)))
    with pytest.raises(InvalidRecord, match="has no argument 'plan'"):
        check_bundle(
            Bundle(EX + "b", (Relation("used", EX + "a", EX + "e", extras=(("plan", EX + "p"),)),))
        )
    with pytest.raises(InvalidRecord, match="carries no time"):
        check_bundle(
            Bundle(
                EX + "b", (Relation("wasAttributedTo", EX + "e", EX + "g", time=datetime.now(UTC)),)
            )
        )


def test_only_activities_have_start_and_end_times():
    with pytest.raises(InvalidRecord) as info:
        check_bundle(Bundle(EX + "b", (Element("entity", EX + "e", start_time=datetime.now(UTC)),)))
    assert info.value.field == "start_time"


@pytest.mark.parametrize(
    "value, problem",
    [(float("nan"), "cannot carry"), ("a\x00b", "NUL"), (object(), "not a PROV value")],
)
def test_values_prov_cannot_carry_are_refused(value, problem):
    with pytest.raises(InvalidRecord, match=problem) as info:
        check_bundle(Bundle(EX + "b", (entity("e", (EX + "attr", value)),)))
    assert info.value.record == EX + "e"


def test_times_whose_utc_offset_is_finer_than_minutes_are_refused_by_field():
    # Python allows an offset of 1 µs; ISO 8601 writes ±hh:mm, so the stored time came
    # back in UTC, changed (a property test found it).
    odd = datetime(2000, 1, 1, tzinfo=timezone(timedelta(microseconds=1)))
    cases = [
        (Element("activity", EX + "a", start_time=odd), "start_time"),
        (Element("activity", EX + "a", end_time=odd), "end_time"),
        (Relation("wasGeneratedBy", EX + "e", EX + "a", time=odd), "time"),
        (entity("e", (EX + "when", odd)), f"attributes[{EX}when]"),
    ]
    for record, field in cases:
        with pytest.raises(InvalidRecord, match="not whole minutes") as info:
            check_bundle(Bundle(EX + "b", (record,)))
        assert info.value.field == field
    minutes = datetime(2000, 1, 1, tzinfo=timezone(timedelta(hours=-3, minutes=-30)))
    check_bundle(Bundle(EX + "b", (Element("activity", EX + "a", start_time=minutes),)))


def test_wire_form_refuses_unknown_kinds_and_bad_times_with_the_field():
    with pytest.raises(InvalidRecord) as info:
        record_from_dict({"kind": "activity", "id": EX + "a", "startTime": "yesterday"})
    assert info.value.field == "startTime"
    with pytest.raises(InvalidRecord, match="unknown record kind"):
        record_from_dict({"kind": "table", "id": EX + "t"})


def test_merging_two_descriptions_takes_the_union_of_attributes():
    a = entity("e", (PROV_TYPE, Ref(PROVML + "DomainData")), (EX + "size", 3))
    b = entity("e", (EX + "size", 3), (EX + "region", "Santos"))
    merged = merge_elements(a, b)
    assert merged.attributes == (
        (PROV_TYPE, Ref(PROVML + "DomainData")),
        (EX + "size", 3),
        (EX + "region", "Santos"),
    )


def test_merging_keeps_values_of_different_types_apart():
    merged = merge_elements(entity("e", (EX + "flag", 1)), entity("e", (EX + "flag", True)))
    assert len(merged.attributes) == 2


def test_merging_two_different_start_times_is_a_conflict():
    t = datetime(2026, 1, 1, tzinfo=UTC)
    a = Element("activity", EX + "a", start_time=t)
    b = Element("activity", EX + "a", start_time=t + timedelta(seconds=1))
    with pytest.raises(Conflict):
        merge_elements(a, b)


def test_ml_class_and_label_come_from_prov_type_and_prov_label():
    e = entity(
        "v1",
        (PROV_TYPE, Ref(PROVML + "ModelVersion")),
        ("http://www.w3.org/ns/prov#label", Literal("salt detector v1", XSD + "string")),
    )
    assert e.ml_class == "ModelVersion"
    assert e.label == "salt detector v1"


# ------------------------------------------------------------------ wire round trips

iris = st.builds(lambda s: EX + s, st.text("abcdefghij0123456789-_", min_size=1, max_size=12))
times = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1)).flatmap(
    lambda d: st.sampled_from(
        [d, d.replace(tzinfo=UTC), d.replace(tzinfo=timezone(timedelta(hours=-3)))]
    )
)
values = st.one_of(
    st.text(max_size=20).filter(lambda s: "\x00" not in s),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    times,
    iris.map(Ref),
    st.builds(Literal, st.text(max_size=10).filter(lambda s: "\x00" not in s), iris),
    st.builds(
        lambda s, lang: Literal(s, XSD + "string", lang),
        st.text(max_size=5).filter(lambda s: "\x00" not in s),
        st.sampled_from(["en", "pt-BR"]),
    ),
)
attributes = st.lists(st.tuples(iris, values), max_size=4).map(tuple)
elements = st.one_of(
    st.builds(Element, st.sampled_from(["entity", "agent"]), iris, attributes),
    st.builds(Element, st.just("activity"), iris, attributes, st.none() | times, st.none() | times),
)


@st.composite
def relations(draw):
    kind = draw(st.sampled_from(sorted(RELATIONS)))
    signature = RELATIONS[kind]
    extras = tuple(sorted((name, draw(iris)) for name in signature.extras if draw(st.booleans())))
    return Relation(
        kind,
        draw(iris),
        draw(st.none() | iris),
        id=draw(st.none() | iris),
        time=draw(st.none() | times) if signature.has_time else None,
        extras=extras,
        attributes=draw(attributes),
    )


bundles = st.builds(
    Bundle,
    iris,
    st.lists(st.one_of(elements, relations()), max_size=8).map(tuple),
    st.just((("ex", EX),)),
)


@settings(max_examples=60, deadline=None)
@given(bundles)
def test_every_valid_bundle_survives_the_wire_form_unchanged(bundle):
    import json

    check_bundle(bundle)
    assert bundle_from_dict(json.loads(json.dumps(bundle_to_dict(bundle)))) == bundle
