"""PROV conformance: the shared third-party PROV documents through provml's formats and store.

Driven by ``../shared/conformance/prov/EXPECTATIONS.csv`` (one row per file). Suites:

- the 398 PROV-JSON documents of the ``prov`` package import as prov reads them, round
  trip through every export format, export Turtle/TriG isomorphic to their paired PROV-O
  file, and survive the SQL store (all on SQLite, a sample on PostgreSQL);
- their paired PROV-O files import to the same documents;
- the PROV-XML examples import, round trip, and provml's export validates against the
  PROV-XML XSD;
- PROV-N files round trip through prov's own PROV-N reader;
- each PROV-N/PROV-XML pair of the PROV-CONSTRAINTS cases imports to one document;
- malformed documents are refused with a ParseError naming the problem, the store unchanged.

Cases provml cannot pass are marked ``xfail(strict=True)`` with the reason. Pass counts
per suite are printed at the end of the run.
"""

from __future__ import annotations

import csv
import decimal
import functools
import logging
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from provml import prov_io
from provml.errors import Conflict, InvalidRecord, ParseError, UnsupportedFormat
from provml.records import Bundle, check_bundle
from tests.conftest import CONFORMANCE, conformance_dir

pytestmark = pytest.mark.conformance

PROV_DIR = CONFORMANCE / "prov"
DOC = "urn:provml-conformance:"


def _rows() -> list[dict[str, str]]:
    table = PROV_DIR / "EXPECTATIONS.csv"
    if not table.is_file():
        return []
    with table.open(newline="") as f:
        return list(csv.DictReader(f))


ROWS = _rows()


def rows(**where: str) -> list[dict[str, str]]:
    return [r for r in ROWS if all(r[k] == v for k, v in where.items())]


def params(selected: list[dict[str, str]], xfails: dict[str, str] | None = None) -> list:
    """One pytest param per row, named by its path; listed rows xfail with their reason."""
    xfails = xfails or {}
    return [
        pytest.param(
            r,
            id=r["path"],
            marks=[pytest.mark.xfail(strict=True, reason=xfails[r["path"]])]
            if r["path"] in xfails
            else [],
        )
        for r in selected
    ]


# The prov package's own PROV-JSON corpus and its PROV-O twins.
JSON_CORPUS = [r for r in rows(format="prov-json", suite="roundtrip") if "/json/" in r["path"]]
SCRUFFY = {r["path"] for r in JSON_CORPUS if "/scruffy-" in r["path"]}
#: JSON documents with nested bundles → their TriG twin (their Turtle twin is flattened).
TRIG_TWIN = {r["pair"]: r["path"] for r in rows(format="prov-o-trig")}
NESTED = set(TRIG_TWIN)


# ------------------------------------------------------------------ shared readings


@functools.cache
def data(path: str) -> bytes:
    return (PROV_DIR / path).read_bytes()


@functools.cache
def parsed(path: str) -> tuple[Bundle, ...]:
    """provml's reading of a file (cached: the bundles are immutable)."""
    return tuple(prov_io.parse(data(path), None, bundle_id=DOC + path, filename=Path(path).name))


def prov_reading(path: str, fmt: str = "json"):
    """The prov package's own reading of a file, unified where PROV-CONSTRAINTS can."""
    from prov.model import ProvDocument

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        document = ProvDocument.deserialize(source=PROV_DIR / path, format=fmt)
        try:
            return document.unified()
        except Exception:  # prov cannot unify the scruffy files: compare as asserted
            return document


def document_of(bundles) -> object:
    return prov_io.to_prov_document(list(bundles))


@functools.cache
def document(path: str) -> object:
    """The prov document of provml's reading of a file (cached; compared, never changed)."""
    return document_of(parsed(path))


def shape(bundles) -> list[tuple[str, str | None]]:
    """Bundle ids and parents: the top bundle, then the nested ones in any order."""
    top, *nested = [(b.id, b.parent) for b in bundles]
    return [top, *sorted(nested)]


@pytest.fixture(scope="module", autouse=True)
def _quiet_rdflib():
    # rdflib logs a traceback for every literal it cannot turn into a Python value
    # (e.g. an xsd:dayTimeDuration of 2**31 days); the literal itself is kept.
    logger = logging.getLogger("rdflib.term")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


def test_conformance_data_is_present():
    assert (conformance_dir() / "prov" / "EXPECTATIONS.csv").is_file()
    assert len(JSON_CORPUS) == 398


# ------------------------------------------------------- the 398 PROV-JSON documents


@pytest.mark.parametrize("row", params(JSON_CORPUS))
def test_json_document_imports_as_prov_reads_it(row):
    bundles = parsed(row["path"])
    for bundle in bundles:
        check_bundle(bundle)
    assert document(row["path"]) == prov_reading(row["path"])


_SCRUFFY_PROV_O = (
    "PROV-O has one node per relation id: two statements of one id that PROV-CONSTRAINTS "
    "cannot unify (different times, starters, activities) become one node with two values "
    "of a formal property, which prov refuses to decode as a single record"
)


def _round_trip_params() -> list:
    out = []
    for row in JSON_CORPUS:
        for fmt in prov_io.EXPORT_FORMATS:
            marks = []
            if row["path"] in SCRUFFY and fmt in ("turtle", "trig", "nquads", "jsonld"):
                marks = [pytest.mark.xfail(strict=True, raises=ParseError, reason=_SCRUFFY_PROV_O)]
            out.append(pytest.param(row, fmt, id=f"{row['path']}-{fmt}", marks=marks))
    return out


@pytest.mark.parametrize(("row", "fmt"), _round_trip_params())
def test_json_document_round_trips_through_export_format(row, fmt):
    bundles = list(parsed(row["path"]))
    if fmt == "turtle" and len(bundles) > 1:
        # Turtle has no named graphs: provml refuses rather than merge the bundles.
        with pytest.raises(UnsupportedFormat, match="trig"):
            prov_io.serialize(bundles, fmt)
        return
    back = prov_io.parse(prov_io.serialize(bundles, fmt), fmt, bundle_id=bundles[0].id)
    assert shape(back) == shape(bundles)
    assert document_of(back) == document(row["path"])


def _by_value(graph):
    """A graph whose typed literals are spelled canonically ("10" and 10.0 alike)."""
    import rdflib

    out = rdflib.Graph()
    for s, p, o in graph:
        if isinstance(o, rdflib.Literal) and o.datatype is not None:
            value = o.toPython()
            if isinstance(value, decimal.Decimal):
                lexical = str(value.normalize())
            elif isinstance(value, bool | int | float):
                lexical = repr(value)
            else:
                lexical = str(o)
            o = rdflib.Literal(lexical, datatype=o.datatype, normalize=False)
        out.add((s, p, o))
    return out


@pytest.mark.filterwarnings("ignore::DeprecationWarning:rdflib")
@pytest.mark.parametrize("row", params(JSON_CORPUS))
def test_prov_o_export_is_isomorphic_to_the_paired_file(row):
    import rdflib
    from rdflib.compare import isomorphic

    bundles = list(parsed(row["path"]))
    if row["path"] in NESTED:
        pair = PROV_DIR / TRIG_TWIN[row["path"]]
        ours, theirs = rdflib.Dataset(), rdflib.Dataset()
        ours.parse(data=prov_io.serialize(bundles, "trig"), format="trig")
        theirs.parse(pair, format="trig")
        names = {g.identifier for g in theirs.graphs()} | {g.identifier for g in ours.graphs()}
        for name in names:
            assert isomorphic(_by_value(ours.graph(name)), _by_value(theirs.graph(name))), name
    else:
        ours = rdflib.Graph().parse(data=prov_io.serialize(bundles, "turtle"), format="turtle")
        theirs = rdflib.Graph().parse(PROV_DIR / row["pair"], format="turtle")
        assert isomorphic(_by_value(ours), _by_value(theirs))


PROV_O_FILES = rows(format="prov-o-turtle") + rows(format="prov-o-trig")


_PROV_O_XFAILS = {
    "trungdong-prov/rdf/bundle2.ttl": (
        "the Turtle twin flattens two bundles in which ex:e1 and ex:a1 swap kinds; in one "
        "graph each id is typed both prov:Entity and prov:Activity, and prov reads an "
        "entity with prov:type prov:Activity, not the flattened document's two records"
    ),
}


@pytest.mark.parametrize("row", params(PROV_O_FILES, _PROV_O_XFAILS))
def test_paired_prov_o_file_imports_to_the_json_document(row):
    if "prov-ambiguous" in row["expected"]:
        # Several values of one formal property: provml refuses, naming the relation.
        with pytest.raises(ParseError, match="more than one value") as refused:
            parsed(row["path"])
        assert "http://example.org/" in refused.value.message
        return
    expected = prov_reading(row["pair"])
    if row["path"].endswith(".ttl") and row["pair"] in NESTED:
        expected = expected.flattened()  # Turtle carries every bundle in one graph
    assert document_of(parsed(row["path"])) == expected


# -------------------------------------------------------------------- the SQL store


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory):
    from provml.store.sql import SQLStore

    store = SQLStore(f"sqlite:///{tmp_path_factory.mktemp('corpus') / 'provml.sqlite'}")
    store.upgrade()
    yield store
    store.close()


_STORE_CONFLICT = (
    "the store keys a relation by its id and refuses (Conflict) two statements of one id "
    "that PROV-CONSTRAINTS cannot unify; prov itself fails to unify them"
)


@pytest.mark.parametrize(
    "row", params(JSON_CORPUS, dict.fromkeys(sorted(SCRUFFY), _STORE_CONFLICT))
)
def test_json_document_survives_the_sqlite_store(row, sqlite_store, tmp_path):
    from provml.store.sql import SQLStore

    bundles = list(parsed(row["path"]))
    store = sqlite_store
    if row["path"] in NESTED:
        # The bundle documents reuse nested bundle ids (ex:bundle1…): a store each.
        store = SQLStore(f"sqlite:///{tmp_path / 'nested.sqlite'}")
        store.upgrade()
    try:
        before = store.checksum()
        try:
            store.ingest(bundles)
        except Conflict:
            assert store.checksum() == before  # refused as a whole
            raise
        back = store.document(bundles[0].id)
    finally:
        if store is not sqlite_store:
            store.close()
    assert shape(back) == shape(bundles)
    assert document_of(back) == document(row["path"])


@pytest.mark.postgres
def test_json_sample_survives_the_postgresql_store(postgres_url):
    from provml.store.sql import SQLStore

    sample = [r for r in JSON_CORPUS[::8] if r["path"] not in SCRUFFY and r["path"] not in NESTED]
    assert len(sample) >= 40
    store = SQLStore(postgres_url)
    store.upgrade()
    try:
        for row in sample:
            bundles = list(parsed(row["path"]))
            store.ingest(bundles)
            assert document_of(store.document(bundles[0].id)) == document_of(bundles), row
    finally:
        store.close()


# ------------------------------------------------------------------------- PROV-XML

_UNPREFIXED_QNAME = (
    "an xsd:QName value without a prefix ('{}') in a document that declares no default "
    "namespace names no IRI; prov (and provml) refuse it"
)
XML_EXAMPLES = [r for r in rows(format="prov-xml") if r["path"].startswith("trungdong-prov/xml/")]
_XML_XFAILS = {
    f"trungdong-prov/xml/example_{n}.xml": _UNPREFIXED_QNAME.format(name)
    for n, name in {
        "11": "Discuss",
        "12": "Editing",
        "17": "map",
        "22": "editorship",
        "23": "operator",
        "24": "operator",
        "25": "workflow",
        "27": "report",
        "28": "report",
        "37": "StillImage",
        "38": "loggedInUser",
        "39": "document",
    }.items()
} | {
    "trungdong-prov/xml/example_34.xml": (
        "the example types a value as xsd:Qname (sic), which is not an XSD type; the export "
        "keeps the datatype, so its xsi:type fails prov.xsd (as the original does)"
    ),
}


@functools.cache
def prov_xsd():
    from lxml import etree

    return etree.XMLSchema(etree.parse(PROV_DIR / "trungdong-prov" / "schemas" / "prov.xsd"))


@pytest.mark.parametrize("row", params(XML_EXAMPLES, _XML_XFAILS))
def test_prov_xml_example_imports_round_trips_and_exports_valid_prov_xml(row):
    from lxml import etree

    bundles = list(parsed(row["path"]))
    assert document_of(bundles) == prov_reading(row["path"], "xml")
    exported = prov_io.serialize(bundles, "xml")
    schema = prov_xsd()
    assert schema.validate(etree.fromstring(exported)), schema.error_log.last_error
    back = prov_io.parse(exported, "xml", bundle_id=bundles[0].id)
    assert document_of(back) == document_of(bundles)


# PROV-XML's schema is stricter than PROV-DM: it cannot hold some corpus documents.
_XSD_REQUIRES_BOTH_ENDS = {
    "wasAttributedTo",
    "wasInformedBy",
    "actedOnBehalfOf",
    "wasDerivedFrom",
    "wasInfluencedBy",
    "hadMember",
    "specializationOf",
    "alternateOf",
    "mentionOf",
}
_XSD_1_1_AND_RDF_TYPES = {
    "http://www.w3.org/2001/XMLSchema#yearMonthDuration",
    "http://www.w3.org/2001/XMLSchema#dayTimeDuration",
    "http://www.w3.org/1999/02/22-rdf-syntax-ns#XMLLiteral",
}


def _beyond_prov_xsd(path: str) -> str | None:
    """Why prov.xsd cannot validate any PROV-XML of this document, if it cannot."""
    from provml.records import Literal, Relation
    from provml.vocab import PROV, PROV_LABEL

    records = [r for b in parsed(path) for r in b.records]
    for r in records:
        if isinstance(r, Relation) and (
            r.subject is None
            or (r.object is None and r.kind in _XSD_REQUIRES_BOTH_ENDS)
            or (r.kind == "mentionOf" and not r.extras)
        ):
            return f"{r.kind} {r.id} leaves out an argument that prov.xsd requires"
    for r in records:
        for name, value in r.attributes:
            if (
                isinstance(value, Literal)
                and value.lang is not None
                and name.startswith(PROV)
                and name != PROV_LABEL
            ):
                return f"of PROV's attributes, prov.xsd allows xml:lang on prov:label only ({name})"
    for r in records:
        for _, value in r.attributes:
            if isinstance(value, Literal) and value.datatype in _XSD_1_1_AND_RDF_TYPES:
                return f"prov.xsd (XSD 1.0) has no type {value.datatype} for xsi:type"
    return None


def _xsd_params() -> list:
    out = []
    for row in JSON_CORPUS:
        reason = _beyond_prov_xsd(row["path"]) if PROV_DIR.is_dir() else None
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(row, id=row["path"], marks=marks))
    return out


@pytest.mark.parametrize("row", _xsd_params())
def test_prov_xml_export_of_json_document_validates_against_prov_xsd(row):
    from lxml import etree

    exported = prov_io.serialize(list(parsed(row["path"])), "xml")
    schema = prov_xsd()
    assert schema.validate(etree.fromstring(exported)), schema.error_log.last_error


# --------------------------------------------------------------------------- PROV-N

PROVN_FILES = rows(format="prov-n", suite="roundtrip", expected="valid")
_PROVN_XFAILS = {
    r["path"]: f"prov's PROV-N reader refuses it: {r['notes']}"
    for r in PROVN_FILES
    if "parse=FAIL" in r["observed_prov_3.2.3"]
}


@pytest.mark.parametrize("row", params(PROVN_FILES, _PROVN_XFAILS))
def test_provn_file_round_trips_through_prov_n(row):
    bundles = list(parsed(row["path"]))
    assert document_of(bundles) == prov_reading(row["path"], "provn")
    exported = prov_io.serialize(bundles, "provn")
    back = prov_io.parse(exported, "provn", bundle_id=bundles[0].id)
    assert document_of(back) == document_of(bundles)


PAIRS = [r for r in rows(format="prov-n") if r["pair"]]
_PAIR_XFAILS = {
    "provtoolbox/validate/pc1-full.provn": (
        "pc1-full.xml is not well-formed XML: it uses the undeclared prefix "
        "org.openprovenance.prov.xml (line 5)"
    ),
    "provtoolbox/validate/unification/bundle-success1.provn": (
        "the XML nests records in the pre-Recommendation <prov:bundle> element; PROV-XML "
        "has <prov:bundleContent>, and prov reads the children as attribute values"
    ),
    "provtoolbox/validate/unification/bundle-success2.provn": (
        "the XML nests records in the pre-Recommendation <prov:bundle> element; PROV-XML "
        "has <prov:bundleContent>, and prov reads the children as attribute values"
    ),
    "provtoolbox/validate/issue/tom-bytheway.provn": (
        "the two files name different ids: the XML has __builtin__, _abcoll, __init__.pyc "
        "where the PROV-N has _builtin_, abcoll, _init_.pyc"
    ),
    "provtoolbox/validate/issue/picaso.provn": (
        "the two files name different ids: the XML appends '_' to ids ending in '/' "
        "(http://dblp.org/db/_ for http://dblp.org/db/)"
    ),
}


def _read_or_refusal(path: str):
    try:
        return document_of(parsed(path))
    except (ParseError, InvalidRecord) as exc:
        return type(exc)


@pytest.mark.parametrize("row", params(PAIRS, _PAIR_XFAILS))
def test_prov_n_and_prov_xml_of_a_constraints_case_import_alike(row):
    provn, xml = _read_or_refusal(row["path"]), _read_or_refusal(row["pair"])
    # Both import to one document, or both are refused (documents PROV-DM forbids).
    assert provn == xml
    if isinstance(provn, type):
        assert "fail" in row["path"].lower()


# ---------------------------------------------------------------------- bad documents

MALFORMED = rows(format="malformed")
# What each refusal must name.
_PROBLEMS = {
    "bad_bundle_shape.json": "document.bundle must map bundle ids",
    "bad_prefix_map.json": "document.prefix must map prefixes",
    "bad_record_content.json": "ex:e1",
    "bad_record_shape.json": "document.entity must map record ids",
    "bad_typed_literal.json": 'missing its required "\\$"',
    "empty.json": "empty",
    "empty.xml": "empty",
    "empty.rdf": "empty",
    "empty_root.xml": "root element is prov:document, not foo",
    "not_json.json": "line 1, column 2",
    "not_turtle.ttl": "line 1",
    "not_well_formed.xml": "line 2",
    "top_level_list.json": "must be a JSON object, got list",
    "top_level_scalar.json": "must be a JSON object, got int",
    "unknown_record_type.json": "'notarealtype' is not a PROV-JSON record type",
    "wrong_root.xml": "root element is prov:document, not html",
}


@pytest.mark.parametrize("row", params(MALFORMED))
def test_malformed_document_is_refused_and_changes_nothing(row, sqlite_store):
    name = Path(row["path"]).name
    before = sqlite_store.checksum()
    try:
        bundles = prov_io.parse(data(row["path"]), None, bundle_id=DOC + name, filename=name)
    except ParseError as refused:
        assert refused.message.startswith(name)
        assert refused.details.get("field")
        assert _PROBLEMS[name].replace("\\", "") in refused.message
    else:
        # Only "reject-or-empty" files may be read, and then as an empty document.
        assert row["expected"] == "reject-or-empty", name
        assert [b.records for b in bundles] == [()]
        sqlite_store.ingest(bundles)
        assert sqlite_store.document(DOC + name)[0].records == ()
        return
    assert sqlite_store.checksum() == before


def test_malformed_documents_leave_every_store_backend_unchanged(store):
    before = store.checksum()
    refused = 0
    for row in MALFORMED:
        name = Path(row["path"]).name
        try:
            bundles = prov_io.parse(data(row["path"]), None, bundle_id=DOC + name, filename=name)
        except ParseError:
            refused += 1
            continue
        assert all(not b.records for b in bundles), name  # read as empty, so not stored
    assert refused >= 14
    assert store.checksum() == before


# ------------------------------------------------------------------- other samples

OTHER_DOCUMENTS = [
    r
    for r in rows(format="prov-jsonld", expected="valid") + rows(format="prov-json")
    if r["suite"] == "roundtrip" and r not in JSON_CORPUS
]


@pytest.mark.parametrize("row", params(OTHER_DOCUMENTS))
def test_other_sample_document_imports_and_round_trips_through_prov_json(row):
    bundles = list(parsed(row["path"]))
    assert sum(len(b.records) for b in bundles) > 0
    back = prov_io.parse(prov_io.serialize(bundles, "json"), "json", bundle_id=bundles[0].id)
    assert document_of(back) == document_of(bundles)


# ---------------------------------------------------------------------------- summary


class _SuiteCounts:
    """Counts outcomes per test function of this module; prints them at the end."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.counts: dict[str, Counter] = defaultdict(Counter)

    def pytest_runtest_logreport(self, report) -> None:
        if not report.nodeid.startswith(self.module):
            return
        if report.when != "call" and not (report.when == "setup" and not report.passed):
            return
        suite = report.nodeid.split("::")[-1].split("[")[0]
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        else:
            outcome = report.outcome
        self.counts[suite][outcome] += 1

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.counts:
            return
        terminalreporter.section("PROV conformance (provml)")
        for suite, counts in self.counts.items():
            parts = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
            terminalreporter.write_line(f"{suite}: {parts}")


@pytest.fixture(scope="module", autouse=True)
def _count_outcomes(request):
    name = "provml-prov-conformance-counts"
    if request.config.pluginmanager.get_plugin(name) is None:
        module = request.node.nodeid.split("::")[0]
        request.config.pluginmanager.register(_SuiteCounts(module), name)
    yield
