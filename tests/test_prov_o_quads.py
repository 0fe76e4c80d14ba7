"""The direct PROV-O mapping (provml._prov_o) gives exactly the quads of the prov path.

``provml.rdf._bundle_quads`` maps records straight to quads and falls back to prov's
serializer (``_bundle_quads_via_prov``, the reference) for a bundle it does not mirror
exactly. Every test here compares the two as sets of quads, blank-node labels included.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pyoxigraph as ox
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provml import _prov_o
from provml.rdf import _QUALIFYING, _bundle_quads, _bundle_quads_via_prov
from provml.records import Bundle, Element, Literal, Ref, Relation
from provml.vocab import PROV, PROV_LABEL, PROV_LOCATION, PROV_ROLE, PROV_TYPE, RELATIONS, XSD
from tests.conftest import conformance_dir

B = "https://provml.test/"
REPO = Path(__file__).resolve().parents[1]


def outcome(function, bundle: Bundle):
    """The quads as a set, or the type of the error raised."""
    try:
        return set(function(bundle))
    except Exception as exc:  # the two paths must fail alike too
        return type(exc)


def takes_fast_path(bundle: Bundle) -> bool:
    return _prov_o.bundle_quads(bundle, _QUALIFYING) is not None


def assert_same_quads(bundles: list[Bundle], label: str) -> tuple[int, int]:
    """Assert both paths agree on every bundle; return (fast, fallback) counts."""
    fast = fallback = 0
    for bundle in bundles:
        new, old = outcome(_bundle_quads, bundle), outcome(_bundle_quads_via_prov, bundle)
        if new != old:
            detail = (
                (sorted(map(str, new - old))[:5], sorted(map(str, old - new))[:5])
                if isinstance(new, set) and isinstance(old, set)
                else (new, old)
            )
            pytest.fail(f"{label}: {bundle.id} differs (fast only, prov only): {detail}")
        if takes_fast_path(bundle):
            fast += 1
        else:
            fallback += 1
    print(f"{label}: {fast} bundles on the fast path, {fallback} fell back")
    return fast, fallback


# --------------------------------------------------------------------- fixed corpora


@pytest.mark.conformance
def test_fast_path_equals_prov_path_over_the_prov_test_documents():
    from provml.errors import ProvmlError
    from provml.prov_io import parse

    documents = sorted((conformance_dir() / "prov" / "trungdong-prov" / "json").glob("*.json"))
    bundles = []
    for document in documents:
        with contextlib.suppress(ProvmlError):  # refused on import: never projected
            bundles += parse(document.read_bytes(), "json", bundle_id=f"{B}doc/{document.stem}")
    assert len(bundles) > 300
    fast, _ = assert_same_quads(bundles, "prov test documents")
    assert fast > len(bundles) // 2  # the corpus mostly takes the fast path


def test_fast_path_equals_prov_path_over_the_benchmark_workflows():
    sys.path.insert(0, str(REPO / "bench" / "service"))
    try:
        import bench_service
    finally:
        sys.path.remove(str(REPO / "bench" / "service"))
    bundles = bench_service.generate(3000)
    fast, fallback = assert_same_quads(bundles, "bench_service.generate(3000)")
    assert (fast, fallback) == (len(bundles), 0)


def test_fast_path_equals_prov_path_over_captured_training(tmp_path):
    import provml.capture as capture
    from provml.capture.testing import capture as capturing

    raw = tmp_path / "raw.segy"
    raw.write_bytes(b"raw traces")

    @capture.data_transformation(inputs=["raw"], outputs=["tiles"])
    def curate(raw: Path, tiles: Path) -> None:
        tiles.write_bytes(raw.read_bytes() * 2)

    @capture.training(inputs=["tiles"])
    def train(tiles: Path, epochs: int = 3, lr: float = 0.01, optimiser: str = "adam") -> None:
        for epoch in range(epochs):
            with capture.section("epoch", step=epoch):
                capture.log_metric("loss", 0.5 / (epoch + 1))
                capture.log_metric("accuracy", 0.5 + epoch / 10)
        weights = tmp_path / "model.pt"
        weights.write_bytes(b"weights")
        capture.generated(weights, "weights")
        capture.log_model_version("salt-detector", 1)

    @capture.evaluation
    def evaluate() -> dict[str, float]:
        return {"accuracy": 0.9}

    with capturing("prov-o-quads") as exported:
        curate(raw, tmp_path / "tiles")
        train(tmp_path / "tiles", epochs=3, lr=0.001)
        evaluate()
        with capture.inference("predict"):
            capture.used(capture.DataReference("s3://surveys", "block-7.segy"))
            capture.generated(b"predictions")
        capture.shutdown(timeout=10)
        bundles = exported.bundles
    assert bundles
    fast, fallback = assert_same_quads(bundles, "captured training")
    assert (fast, fallback) == (len(bundles), 0)
    # the capture bundles exercise qualified relations, so blank-node labelling too
    assert any(
        q.subject.__class__.__name__ == "BlankNode" for b in bundles for q in _bundle_quads(b)
    )


# ----------------------------------------------------------------------- properties

EX = "https://ex.test/"
IRIS = [EX + "a", EX + "b", EX + "dir/c", EX + "ü/é1", "urn:x:1", EX + "q?x=1", EX + "e#f"]
NAMES = [
    PROV_TYPE,
    PROV_LABEL,
    PROV_LOCATION,
    PROV_ROLE,
    PROV + "value",
    PROV + "qualifiedUsage",
    PROV + "timeZone",  # prov rewrites predicates by substring
    EX + "attr",
    EX + "n/attr2",
]
DATATYPES = [
    XSD + "string",
    XSD + "int",
    XSD + "long",
    XSD + "integer",
    XSD + "double",
    XSD + "boolean",
    XSD + "decimal",
    XSD + "anyURI",
    XSD + "dateTime",
    XSD + "token",
    XSD + "float",
    XSD + "base64Binary",
    PROV + "QUALIFIED_NAME",
    EX + "myType",
]
LEXICALS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["1", "-0", "+42", "2147483648", "1e3", "nan", "-INF", "TRUE", "0", "1.0"]),
    st.sampled_from([PROV + "Revision", "2024-01-01T00:00:00Z", " 1 ", "1_0", "a\tb"]),
)
ZONES = st.sampled_from(
    [None, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(seconds=-30))]
)
DATETIMES = st.builds(
    lambda dt, tz: dt.replace(tzinfo=tz),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)),
    ZONES,
)
VALUES = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([-0.0, 1e300, 5e-324, 0.1]),
    st.booleans(),
    DATETIMES,
    st.builds(Ref, st.sampled_from([*IRIS, PROV + "Revision", PROV + "Quotation"])),
    st.builds(
        Literal,
        LEXICALS,
        st.sampled_from(DATATYPES),
        st.sampled_from([None, None, None, "en", "EN-us", "", "en_US"]),
    ),
)
# now and then a formal attribute name, which prov coerces: the fast path falls back
ATTRIBUTE_NAMES = st.sampled_from([*NAMES * 4, PROV + "plan"])
ATTRIBUTES = st.lists(st.tuples(ATTRIBUTE_NAMES, VALUES), max_size=4).map(tuple)
MAYBE_TIME = st.one_of(st.none(), DATETIMES)


@st.composite
def elements(draw):
    kind = draw(st.sampled_from(["entity", "activity", "agent"]))
    start = end = None
    if kind == "activity":
        start, end = draw(MAYBE_TIME), draw(MAYBE_TIME)
    return Element(kind, draw(st.sampled_from(IRIS)), draw(ATTRIBUTES), start, end)


@st.composite
def relations(draw):
    kind = draw(st.sampled_from(sorted(RELATIONS)))
    signature = RELATIONS[kind]
    rid = draw(st.one_of(st.none(), st.sampled_from([EX + "r1", EX + "r2", EX + "a"])))
    subject = draw(st.sampled_from(IRIS)) if rid is None else draw(st.sampled_from([None, *IRIS]))
    extras = tuple(
        (name, draw(st.sampled_from(IRIS))) for name in signature.extras if draw(st.booleans())
    )
    return Relation(
        kind,
        subject,
        draw(st.sampled_from([None, *IRIS])),
        rid,
        draw(MAYBE_TIME) if signature.has_time else None,
        extras,
        draw(ATTRIBUTES),
    )


BUNDLES = st.builds(
    lambda records, namespaces: Bundle(B + "bundle/h", tuple(records), namespaces),
    st.lists(st.one_of(elements(), relations()), min_size=1, max_size=6),
    st.sampled_from([(), (("ex", EX),), (("", EX),), (("ex", EX + "dir/"), ("", "urn:x:"))]),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BUNDLES)
def test_fast_path_equals_prov_path_on_random_bundles(bundle):
    new, old = outcome(_bundle_quads, bundle), outcome(_bundle_quads_via_prov, bundle)
    if isinstance(new, set) and isinstance(old, set):
        assert sorted(map(str, new)) == sorted(map(str, old))
    else:
        assert new == old


@pytest.mark.parametrize(
    "record",
    [
        Element(  # prov keeps one of two equal decimals
            "entity",
            EX + "a",
            (
                (EX + "d", Literal("1.0", XSD + "decimal")),
                (EX + "d", Literal("1.00", XSD + "decimal")),
            ),
        ),
        Element("entity", EX + "a", ((PROV_TYPE, Literal("x", XSD + "token")),)),
        Element("entity", EX + "a", ((EX + "attr", Literal("x", XSD + "dateTime")),)),
        Element("entity", EX + "a", ((EX + "attr", Literal("x", lang="en_US")),)),
        Element("entity", EX + "a", ((PROV + "entity", Ref(EX + "b")),)),
        Relation("mentionOf", EX + "a", EX + "b", extras=(("bundle", EX + "c"),)),
        Relation(
            "wasDerivedFrom",
            EX + "a",
            EX + "b",
            attributes=((PROV_TYPE, Literal(PROV + "Revision", XSD + "anyURI")),),
        ),
    ],
)
def test_what_the_fast_path_leaves_to_prov_still_gives_the_prov_quads(record):
    bundle = Bundle(B + "bundle/f", (record,))
    assert not takes_fast_path(bundle)
    assert outcome(_bundle_quads, bundle) == outcome(_bundle_quads_via_prov, bundle)


def test_a_qualified_revision_with_an_id_loses_its_derivation_class_as_in_prov():
    revision = Relation(
        "wasDerivedFrom",
        EX + "a",
        EX + "b",
        id=EX + "d1",
        attributes=((PROV_TYPE, Ref(PROV + "Revision")),),
    )
    bundle = Bundle(B + "bundle/r", (revision,))
    assert takes_fast_path(bundle)
    quads = {str(q) for q in _bundle_quads(bundle)}
    assert quads == {str(q) for q in _bundle_quads_via_prov(bundle)}
    assert any("qualifiedRevision" in q for q in quads)
    assert not any(q.endswith(f"<{PROV}Derivation> <{B}bundle/r>") for q in quads)


def test_blank_nodes_are_labelled_as_the_canonicalising_labeller_labels_them():
    from provml.rdf import _label_blank_nodes

    when = datetime(2024, 5, 1, 12, tzinfo=UTC)
    usage = Relation("used", EX + "a", EX + "b", time=when, attributes=((PROV_ROLE, "in"),))
    other = Relation("used", EX + "a", EX + "c", time=when)
    bundle = Bundle(B + "bundle/l", (usage, usage, other))
    quads, has_blank_nodes, _ = _prov_o.bundle_quads(bundle, _QUALIFYING)
    assert has_blank_nodes
    # The reference: each blank node's quads canonicalised by pyoxigraph (RDFC-1.0).
    reference = {
        str(q)
        for q in quads
        if not isinstance(q.subject, ox.BlankNode) and not isinstance(q.object, ox.BlankNode)
    }
    for node in {q.object for q in quads if isinstance(q.object, ox.BlankNode)}:
        dataset = ox.Dataset([q for q in quads if node in (q.subject, q.object)])
        dataset.canonicalize(ox.CanonicalizationAlgorithm.RDFC_1_0)
        canonical = "\n".join(sorted(str(q) for q in dataset))
        label = f"_:bscope_{hashlib.sha256(canonical.encode()).hexdigest()[:16]}_c14n0"
        reference |= {str(q).replace("_:c14n0", label) for q in dataset}
    assert {str(q) for q in _label_blank_nodes(quads, "bscope")} == reference
    # two statements of one relation say the same thing: one node, as prov + RDFC give
    labels = {q.object.value for q in _bundle_quads(bundle) if "qualifiedUsage" in str(q)}
    assert len(labels) == 2
    assert outcome(_bundle_quads, bundle) == outcome(_bundle_quads_via_prov, bundle)
