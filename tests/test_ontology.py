"""The PROV-ML ontology: well-formed, aligned with PROV-O and ML Schema, and in step
with ``provml.vocab`` term by term (so the Turtle and the Python cannot drift apart).

PROV-O and ML Schema are read from the shared conformance data (W3C namespace documents).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import pytest
import rdflib
from rdflib import OWL, RDF, RDFS, SKOS, BNode, Literal, URIRef
from rdflib.namespace import DCTERMS

from provml import shacl
from provml.vocab import (
    ML_CLASSES,
    ML_OBJECT_PROPERTIES,
    ML_PROPERTIES,
    MLS,
    PROV,
    PROVML,
    XSD,
)
from tests.conftest import conformance_dir

ONTOLOGY_IRI = URIRef("https://w3id.org/provml/ns")
KIND_ROOT = {"entity": "Entity", "activity": "Activity", "agent": "Agent"}


@pytest.fixture(scope="module")
def ontology() -> rdflib.Graph:
    return shacl.load_ontology()


@pytest.fixture(scope="module")
def prov_o() -> rdflib.Graph:
    return rdflib.Graph().parse(conformance_dir() / "ontology" / "w3c-ns" / "prov-o.ttl")


@pytest.fixture(scope="module")
def mls() -> rdflib.Graph:
    return rdflib.Graph().parse(conformance_dir() / "ontology" / "w3c-ns" / "mls.ttl")


@pytest.fixture(scope="module")
def world(ontology, prov_o, mls) -> rdflib.Graph:
    """PROV-ML together with what it imports."""
    return ontology + prov_o + mls


def named_superclasses(graph: rdflib.Graph, cls: URIRef) -> set[URIRef]:
    """Every named class ``cls`` is a subclass of (itself included), through
    rdfs:subClassOf and owl:equivalentClass in either direction."""
    seen = {cls}
    todo = [cls]
    while todo:
        current = todo.pop()
        nexts = [
            *graph.objects(current, RDFS.subClassOf),
            *graph.objects(current, OWL.equivalentClass),
        ]
        nexts += graph.subjects(OWL.equivalentClass, current)
        for parent in nexts:
            if isinstance(parent, URIRef) and parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def most_specific(graph: rdflib.Graph, classes: Iterable[URIRef]) -> set[URIRef]:
    classes = set(classes)
    return {c for c in classes if not any(c in named_superclasses(graph, d) - {d} for d in classes)}


def provml_terms(graph: rdflib.Graph, rdf_type: URIRef) -> set[str]:
    return {
        str(s)[len(PROVML) :]
        for s in graph.subjects(RDF.type, rdf_type)
        if str(s).startswith(PROVML)
    }


def iris_in(graph: rdflib.Graph, namespace: str) -> set[URIRef]:
    return {
        term
        for triple in graph
        for term in triple
        if isinstance(term, URIRef) and str(term).startswith(namespace)
    }


def restrictions(graph: rdflib.Graph, cls: URIRef, on: str, kind: URIRef) -> set[URIRef]:
    out = set()
    for parent in graph.objects(cls, RDFS.subClassOf):
        if isinstance(parent, BNode) and graph.value(parent, OWL.onProperty) == URIRef(on):
            value = graph.value(parent, kind)
            if value is not None:
                out.add(value)
    return out


# ----------------------------------------------------------------------------- the header


def test_ontology_header_names_version_license_and_imports(ontology):
    assert (ONTOLOGY_IRI, RDF.type, OWL.Ontology) in ontology
    assert ontology.value(ONTOLOGY_IRI, OWL.versionInfo) == Literal("0.1.0")
    assert ontology.value(ONTOLOGY_IRI, DCTERMS.license) == URIRef(
        "https://www.apache.org/licenses/LICENSE-2.0"
    )
    assert set(ontology.objects(ONTOLOGY_IRI, OWL.imports)) == {
        URIRef("http://www.w3.org/ns/prov-o#"),
        URIRef(MLS),
    }
    assert ontology.value(ONTOLOGY_IRI, DCTERMS.title) is not None
    assert ontology.value(ONTOLOGY_IRI, DCTERMS.description) is not None


def test_ontology_references_both_prov_ml_papers_with_citations(ontology):
    references = set(ontology.objects(ONTOLOGY_IRI, DCTERMS.references))
    assert len(references) == 2
    citations = [str(ontology.value(r, DCTERMS.bibliographicCitation)) for r in references]
    assert any("WORKS" in c for c in citations)
    assert any("Concurrency and Computation" in c for c in citations)


def test_imported_ontology_iris_are_the_ones_the_w3c_documents_declare(prov_o, mls):
    assert (URIRef("http://www.w3.org/ns/prov-o#"), RDF.type, OWL.Ontology) in prov_o
    assert (URIRef(MLS), RDF.type, OWL.Ontology) in mls


# ----------------------------------------------------------------------------- vocab <-> Turtle


def test_turtle_classes_are_exactly_the_python_vocabulary_classes(ontology):
    assert provml_terms(ontology, OWL.Class) == {c.name for c in ML_CLASSES}


def test_turtle_datatype_properties_are_exactly_the_python_vocabulary_properties(ontology):
    assert provml_terms(ontology, OWL.DatatypeProperty) == set(ML_PROPERTIES)


def test_turtle_object_properties_are_exactly_the_python_vocabulary_ones(ontology):
    assert provml_terms(ontology, OWL.ObjectProperty) == set(ML_OBJECT_PROPERTIES)


@pytest.mark.parametrize("name, xsd_type", sorted(ML_PROPERTIES.items()))
def test_datatype_property_range_matches_the_python_vocabulary(ontology, name, xsd_type):
    assert set(ontology.objects(URIRef(PROVML + name), RDFS.range)) == {URIRef(XSD + xsd_type)}


@pytest.mark.parametrize("name, refined", sorted(ML_OBJECT_PROPERTIES.items()))
def test_object_property_refines_the_property_the_python_vocabulary_names(ontology, name, refined):
    assert URIRef(refined) in set(ontology.objects(URIRef(PROVML + name), RDFS.subPropertyOf))


@pytest.mark.parametrize("ml_class", ML_CLASSES, ids=lambda c: c.name)
def test_class_sits_under_the_prov_class_and_kind_the_python_vocabulary_says(world, ml_class):
    supers = named_superclasses(world, URIRef(PROVML + ml_class.name))
    prov_classes = {c for c in supers if str(c).startswith(PROV)}
    assert most_specific(world, prov_classes) == {URIRef(PROV + ml_class.prov_class)}
    assert URIRef(PROV + KIND_ROOT[ml_class.kind]) in supers


@pytest.mark.parametrize("ml_class", ML_CLASSES, ids=lambda c: c.name)
def test_class_aligns_with_the_ml_schema_class_the_python_vocabulary_says(world, ml_class):
    supers = named_superclasses(world, URIRef(PROVML + ml_class.name))
    mls_classes = most_specific(world, {c for c in supers if str(c).startswith(MLS)})
    expected = set() if ml_class.mls_class is None else {URIRef(MLS + ml_class.mls_class)}
    assert mls_classes == expected


@pytest.mark.parametrize("ml_class", [c for c in ML_CLASSES if c.mls_class], ids=lambda c: c.name)
def test_class_states_its_ml_schema_alignment_directly(ontology, ml_class):
    # Stated on the class itself, not only inherited, so a reader sees it in one place.
    cls = URIRef(PROVML + ml_class.name)
    stated = {*ontology.objects(cls, RDFS.subClassOf), *ontology.objects(cls, OWL.equivalentClass)}
    assert URIRef(MLS + ml_class.mls_class) in stated


# ------------------------------------------------------------------- alignment targets exist


def test_every_prov_term_the_ontology_uses_is_defined_by_prov_o(ontology, prov_o):
    used = iris_in(ontology, PROV)
    assert used, "the ontology should build on PROV-O"
    undefined = {t for t in used if (t, None, None) not in prov_o}
    assert undefined == set()


def test_every_mls_term_the_ontology_uses_is_defined_by_ml_schema(ontology, mls):
    used = iris_in(ontology, MLS) - {URIRef(MLS)}
    assert used, "the ontology should align with ML Schema"
    undefined = {t for t in used if (t, RDF.type, None) not in mls}
    assert undefined == set()


def test_every_provml_term_the_ontology_uses_is_declared_in_it(ontology):
    declared = {
        s
        for s in ontology.subjects(RDF.type, None)
        if isinstance(s, URIRef) and str(s).startswith(PROVML)
    }
    assert iris_in(ontology, PROVML) - declared == set()


def test_ml_schema_alignments_point_at_classes(ontology, mls):
    for predicate in (RDFS.subClassOf, OWL.equivalentClass):
        for _, target in ontology.subject_objects(predicate):
            if str(target).startswith(MLS):
                assert (target, RDF.type, OWL.Class) in mls, target


# ----------------------------------------------------------------------------- consistency


def test_no_class_falls_under_two_classes_prov_o_declares_disjoint(world, ontology):
    disjoint = {frozenset(pair) for pair in world.subject_objects(OWL.disjointWith)}
    assert frozenset((URIRef(PROV + "Activity"), URIRef(PROV + "Entity"))) in disjoint
    for cls in ontology.subjects(RDF.type, OWL.Class):
        supers = named_superclasses(world, cls)
        clashes = [pair for pair in disjoint if pair <= supers]
        assert clashes == [], f"{cls} is under disjoint classes {clashes}"


def test_no_class_is_both_a_plan_and_an_activity_or_agent(world, ontology):
    roots = [URIRef(PROV + n) for n in ("Entity", "Activity", "Agent")]
    for cls in ontology.subjects(RDF.type, OWL.Class):
        supers = named_superclasses(world, cls)
        assert sum(root in supers for root in roots) == 1, cls


def test_class_hierarchy_has_no_cycles(ontology):
    for cls in ontology.subjects(RDF.type, OWL.Class):
        for parent in ontology.objects(cls, RDFS.subClassOf):
            if isinstance(parent, URIRef):
                assert cls not in named_superclasses(ontology, parent) - set(
                    ontology.objects(cls, OWL.equivalentClass)
                ), f"{cls} is its own superclass"


# The vocabulary owlrl reports inconsistencies in (as err:ErrorMessage nodes).
OWLRL_ERR = rdflib.Namespace("http://www.daml.org/2002/03/agents/agent-ont#")


def owl_rl_errors(world: rdflib.Graph, members: dict[str, list[str]]) -> list[str]:
    """OWL 2 RL inconsistencies (owlrl's error messages) once the given individuals,
    each typed with the given PROV-ML classes, are added to the ontologies."""
    import owlrl  # installed with pyshacl (the dev extra)

    graph = rdflib.Graph()
    graph += world
    for individual, classes in members.items():
        for name in classes:
            graph.add((URIRef(f"urn:x:{individual}"), RDF.type, URIRef(PROVML + name)))
    owlrl.DeductiveClosure(owlrl.OWLRL_Semantics).expand(graph)
    errors = graph.subjects(RDF.type, OWLRL_ERR.ErrorMessage)
    return [str(graph.value(e, OWLRL_ERR.error)) for e in errors]


def test_owl_rl_finds_no_inconsistency_with_one_member_of_every_class(world):
    assert owl_rl_errors(world, {c.name: [c.name] for c in ML_CLASSES}) == []


def test_owl_rl_finds_a_member_that_is_both_an_execution_and_a_model_version_inconsistent(world):
    # The control for the test above: PROV-O's Activity/Entity disjointness reaches ours.
    errors = owl_rl_errors(world, {"odd": ["TrainingExecution", "ModelVersion"]})
    assert any("disjoint" in e.lower() for e in errors), errors


def test_plan_linked_by_qualified_association_is_inferred_as_executed(world):
    import owlrl  # installed with pyshacl (the dev extra)

    ex = rdflib.Namespace("urn:x:")
    prov = rdflib.Namespace(PROV)
    graph = rdflib.Graph()
    graph += world
    graph.add((ex.run, RDF.type, URIRef(PROVML + "TrainingExecution")))
    graph.add((ex.run, prov.qualifiedAssociation, ex.assoc))
    graph.add((ex.assoc, prov.hadPlan, ex.plan))
    owlrl.DeductiveClosure(owlrl.OWLRL_Semantics).expand(graph)
    assert (ex.run, URIRef(PROVML + "executes"), ex.plan) in graph
    assert (ex.run, URIRef(MLS + "executes"), ex.plan) in graph
    # provml:TrainingExecution executes only provml:Training plans.
    assert (ex.plan, RDF.type, URIRef(PROVML + "Training")) in graph


# ----------------------------------------------------------------------------- PROV-ML structure


@pytest.mark.parametrize(
    "sub, sup",
    [
        ("Training", "LearningStage"),
        ("Validation", "LearningStage"),
        ("Evaluation", "LearningStage"),
        ("LearningStage", "BaseLearningStage"),
        ("LearningStageSection", "BaseLearningStage"),
        ("BaseLearningStage", "DataTransformation"),
        ("Inference", "DataTransformation"),
        ("TrainingExecution", "LearningStageExecution"),
        ("ValidationExecution", "LearningStageExecution"),
        ("EvaluationExecution", "LearningStageExecution"),
        ("LearningStageExecution", "DataTransformationExecution"),
        ("LearningStageSectionExecution", "DataTransformationExecution"),
        ("InferenceExecution", "DataTransformationExecution"),
    ],
)
def test_stage_hierarchy_follows_prov_ml(ontology, sub, sup):
    assert (URIRef(PROVML + sub), RDFS.subClassOf, URIRef(PROVML + sup)) in ontology


@pytest.mark.parametrize(
    "ml_class",
    [c for c in ML_CLASSES if c.name.endswith("Execution") and c.name != "WorkflowExecution"],
    ids=lambda c: c.name,
)
def test_each_execution_executes_only_plans_of_its_prospective_partner(ontology, ml_class):
    cls = URIRef(PROVML + ml_class.name)
    plan = URIRef(PROVML + ml_class.name.removesuffix("Execution"))
    assert restrictions(ontology, cls, PROVML + "executes", OWL.allValuesFrom) == {plan}


@pytest.mark.parametrize(
    "value, specification",
    [
        ("LearningHyperparameterValue", "LearningHyperparameter"),
        ("ModelHyperparameterValue", "ModelHyperparameter"),
        ("FeatureSetData", "FeatureSet"),
        ("ModelEvaluation", "EvaluationMeasure"),
        ("MetricValue", "EvaluationMeasure"),
    ],
)
def test_each_retrospective_value_is_specified_by_its_prospective_partner(
    ontology, value, specification
):
    found = restrictions(ontology, URIRef(PROVML + value), MLS + "specifiedBy", OWL.allValuesFrom)
    assert found == {URIRef(PROVML + specification)}


def test_every_model_version_is_a_specialization_of_some_model(ontology):
    found = restrictions(
        ontology, URIRef(PROVML + "ModelVersion"), PROV + "specializationOf", OWL.someValuesFrom
    )
    assert found == {URIRef(PROVML + "Model")}


def test_persona_is_a_prov_agent(ontology):
    assert (URIRef(PROVML + "Persona"), RDFS.subClassOf, URIRef(PROV + "Agent")) in ontology


@pytest.mark.parametrize(
    "term",
    [c.name for c in ML_CLASSES] + sorted(ML_PROPERTIES) + sorted(ML_OBJECT_PROPERTIES),
)
def test_every_term_has_an_english_label_and_a_definition(ontology, term):
    iri = URIRef(PROVML + term)
    labels = [lbl for lbl in ontology.objects(iri, RDFS.label) if lbl.language == "en"]
    definitions = [*ontology.objects(iri, SKOS.definition), *ontology.objects(iri, RDFS.comment)]
    assert len(labels) == 1
    assert definitions and all(len(str(d)) > 20 for d in definitions)
    assert ontology.value(iri, RDFS.isDefinedBy) == ONTOLOGY_IRI


# ----------------------------------------------------------------------------- JSON-LD context


@pytest.fixture(scope="module")
def context() -> dict:
    return json.loads(shacl.load_context())["@context"]


def test_context_declares_the_standard_prefixes(context):
    assert context["prov"] == PROV
    assert context["mls"] == MLS
    assert context["provml"] == PROVML
    assert context["xsd"] == XSD


def test_context_has_a_term_for_every_class_and_property(context):
    expected = {c.name for c in ML_CLASSES} | set(ML_PROPERTIES) | set(ML_OBJECT_PROPERTIES)
    mapped = {
        name
        for name, value in context.items()
        if not name.startswith("@")
        and (value if isinstance(value, str) else value.get("@id")) == f"provml:{name}"
    }
    assert expected - mapped == set()


def test_context_types_every_non_string_property_with_its_range(context):
    for name, xsd_type in ML_PROPERTIES.items():
        term = context[name]
        if xsd_type == "string":
            assert isinstance(term, str) or "@type" not in term, name
        else:
            assert term["@type"] == f"xsd:{xsd_type}", name


def test_json_ld_with_the_context_yields_the_ontology_s_terms_and_datatypes(context):
    document = {
        "@context": context,
        "@id": "https://example.org/run/1",
        "@type": "TrainingExecution",
        "startedAtTime": "2024-05-01T10:00:00Z",
        "used": {"@id": "https://example.org/data/1", "@type": "FeatureSetData"},
        "status": "completed",
        "step": 3,
        "metricValue": 0.25,
        "sampled": False,
    }
    graph = rdflib.Graph().parse(data=json.dumps(document), format="json-ld")
    run = URIRef("https://example.org/run/1")
    p = rdflib.Namespace(PROVML)
    assert (run, RDF.type, p.TrainingExecution) in graph
    assert (run, URIRef(PROV + "used"), URIRef("https://example.org/data/1")) in graph
    assert graph.value(run, URIRef(PROV + "startedAtTime")).datatype == URIRef(XSD + "dateTime")
    assert graph.value(run, p.step).datatype == URIRef(XSD + "integer")
    assert graph.value(run, p.metricValue).datatype == URIRef(XSD + "double")
    assert graph.value(run, p.sampled).datatype == URIRef(XSD + "boolean")
    assert str(graph.value(run, p.status)) == "completed"
