"""PROV, ML Schema and PROV-ML terms as data.

The PROV-ML ontology in ``ontology/provml.ttl`` is the source of truth; this module
mirrors it so that the light capture client can name terms without parsing Turtle, and
``tests/test_ontology.py`` checks that the two agree term by term.

Imports: standard library only (capture imports this).
"""

from __future__ import annotations

from typing import Final, NamedTuple

PROV: Final = "http://www.w3.org/ns/prov#"
MLS: Final = "http://www.w3.org/ns/mls#"
XSD: Final = "http://www.w3.org/2001/XMLSchema#"
RDF: Final = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS: Final = "http://www.w3.org/2000/01/rdf-schema#"
#: The PROV-ML namespace. Chosen once; never change it (every stored IRI depends on it).
PROVML: Final = "https://w3id.org/provml/ns#"

#: Prefixes every provml document declares.
STANDARD_PREFIXES: Final = {"prov": PROV, "mls": MLS, "xsd": XSD, "provml": PROVML}

ELEMENT_KINDS: Final = ("entity", "activity", "agent")


class MLClass(NamedTuple):
    """One PROV-ML class: its local name, PROV kind, PROV-O superclass, ML Schema alignment."""

    name: str
    kind: str  # "entity" | "activity" | "agent"
    prov_class: str  # local name in PROV
    mls_class: str | None  # local name in ML Schema, None when ML Schema has no counterpart


# Prospective classes (the plan) are prov:Plan entities; their ...Execution partners are
# the retrospective prov:Activity records of what ran. See DESIGN.md's vocabulary table.
# In ML Schema a Run (the retrospective side) mls:executes an Implementation (the
# prospective side), so the stage plans align with mls:Implementation, not mls:Process:
# mls:Run is itself an mls:Process, and a plan filed there would blur plan and execution.
_STAGES: Final = (
    ("LearningStage", "Implementation"),
    ("LearningStageSection", "Implementation"),
    ("Training", "Implementation"),
    ("Validation", "Implementation"),
    ("Evaluation", "Implementation"),
    ("DataTransformation", "Implementation"),
    ("Inference", "Implementation"),
)

ML_CLASSES: Final[tuple[MLClass, ...]] = (
    MLClass("Study", "entity", "Plan", "Study"),
    MLClass("LearningExperiment", "entity", "Plan", "Experiment"),
    MLClass("BaseLearningStage", "entity", "Plan", "Implementation"),
    *(MLClass(name, "entity", "Plan", mls) for name, mls in _STAGES),
    MLClass("WorkflowExecution", "activity", "Activity", "Run"),
    *(MLClass(f"{name}Execution", "activity", "Activity", "Run") for name, _ in _STAGES),
    MLClass("Algorithm", "entity", "Entity", "Algorithm"),
    MLClass("LearningTask", "entity", "Entity", "Task"),
    MLClass("LearningHyperparameter", "entity", "Entity", "HyperParameter"),
    MLClass("LearningHyperparameterValue", "entity", "Entity", "HyperParameterSetting"),
    MLClass("ModelHyperparameter", "entity", "Entity", "HyperParameter"),
    MLClass("ModelHyperparameterValue", "entity", "Entity", "HyperParameterSetting"),
    MLClass("FeatureSet", "entity", "Entity", "Dataset"),
    MLClass("FeatureSetData", "entity", "Entity", "Dataset"),
    MLClass("Feature", "entity", "Entity", "Feature"),
    MLClass("DatasetCharacteristic", "entity", "Entity", "DatasetCharacteristic"),
    MLClass("DomainData", "entity", "Entity", "Data"),
    MLClass("Model", "entity", "Entity", "Model"),
    MLClass("ModelVersion", "entity", "Entity", "Model"),
    MLClass("EvaluationMeasure", "entity", "Entity", "EvaluationMeasure"),
    MLClass("ModelEvaluation", "entity", "Entity", "ModelEvaluation"),
    MLClass("MetricValue", "entity", "Entity", "ModelEvaluation"),
    MLClass("InferenceResult", "entity", "Entity", "Data"),
    MLClass("Persona", "agent", "Agent", None),
)
ML_CLASS_BY_NAME: Final = {c.name: c for c in ML_CLASSES}

#: PROV-ML datatype properties (local names in the PROVML namespace) with their XSD range.
ML_PROPERTIES: Final = {
    "name": "string",  # the parameter, metric, model or dataset name
    "hyperparameterValue": "string",  # lexical value; the original type is in provml:valueType
    "valueType": "string",
    "metricValue": "double",
    "step": "integer",  # epoch or batch index of a metric or section
    "versionNumber": "integer",
    "dataStore": "string",  # where referenced data lives (e.g. "lustre:/proj", "s3://bucket")
    "dataReference": "string",  # the data's address inside its store
    "contentDigest": "string",  # "<algorithm>:<hex>" of the content
    "sampled": "boolean",  # true when the digest was taken over a sample of the bytes
    "sizeBytes": "integer",
    "status": "string",  # "running" | "completed" | "failed"
    "errorType": "string",
    "errorMessage": "string",
    "host": "string",
    "codeVersion": "string",  # e.g. git commit of the workflow code
    "pythonVersion": "string",
    "packageVersions": "string",
    "parameterCount": "integer",
    "mlflowRunId": "string",
}

#: PROV-ML object properties (local names in the PROVML namespace) with the ML Schema or
#: PROV property each one refines. ``executes`` links an ...Execution to the plan it ran
#: (the prospective/retrospective pairing); PROV carries the same link as
#: ``prov:qualifiedAssociation/prov:hadPlan``, and the ontology derives one from the other.
ML_OBJECT_PROPERTIES: Final = {
    "executes": MLS + "executes",
}


class RelationSignature(NamedTuple):
    """A PROV-DM relation: its two main formal arguments and the optional others."""

    subject: str  # the influencee (the record that depends on the other)
    object: str  # the influencer
    extras: tuple[str, ...]  # further formal arguments holding identifiers
    has_time: bool


#: Every PROV-DM relation by its PROV-N name. ``subject`` always depends on ``object``,
#: so "upstream" lineage walks subject → object for every relation alike.
RELATIONS: Final[dict[str, RelationSignature]] = {
    "wasGeneratedBy": RelationSignature("entity", "activity", (), True),
    "used": RelationSignature("activity", "entity", (), True),
    "wasInformedBy": RelationSignature("informed", "informant", (), False),
    "wasStartedBy": RelationSignature("activity", "trigger", ("starter",), True),
    "wasEndedBy": RelationSignature("activity", "trigger", ("ender",), True),
    "wasInvalidatedBy": RelationSignature("entity", "activity", (), True),
    "wasDerivedFrom": RelationSignature(
        "generatedEntity", "usedEntity", ("activity", "generation", "usage"), False
    ),
    "wasAttributedTo": RelationSignature("entity", "agent", (), False),
    "wasAssociatedWith": RelationSignature("activity", "agent", ("plan",), False),
    "actedOnBehalfOf": RelationSignature("delegate", "responsible", ("activity",), False),
    "wasInfluencedBy": RelationSignature("influencee", "influencer", (), False),
    "specializationOf": RelationSignature("specificEntity", "generalEntity", (), False),
    "alternateOf": RelationSignature("alternate1", "alternate2", (), False),
    "hadMember": RelationSignature("collection", "entity", (), False),
    "mentionOf": RelationSignature("specificEntity", "generalEntity", ("bundle",), False),
}

#: Subtypes of wasDerivedFrom, carried as a prov:type attribute as PROV-DM says.
DERIVATION_SUBTYPES: Final = {
    "revision": PROV + "Revision",
    "quotation": PROV + "Quotation",
    "primary_source": PROV + "PrimarySource",
}

# Attribute names used everywhere.
PROV_TYPE: Final = PROV + "type"
PROV_LABEL: Final = PROV + "label"
PROV_VALUE: Final = PROV + "value"
PROV_LOCATION: Final = PROV + "location"
PROV_ROLE: Final = PROV + "role"
XSD_STRING: Final = XSD + "string"
XSD_ANYURI: Final = XSD + "anyURI"
XSD_DATETIME: Final = XSD + "dateTime"


def ml(name: str) -> str:
    """The IRI of a PROV-ML class or property; an unknown name raises (a closed namespace)."""
    if (
        name not in ML_CLASS_BY_NAME
        and name not in ML_PROPERTIES
        and name not in ML_OBJECT_PROPERTIES
    ):
        raise KeyError(f"{name!r} is not a PROV-ML term")
    return PROVML + name


def ml_class_of(prov_types: object) -> str | None:
    """The PROV-ML class name among an element's prov:type values, if any."""
    for value in prov_types if isinstance(prov_types, (list, tuple)) else (prov_types,):
        iri = getattr(value, "iri", value)
        if isinstance(iri, str) and iri.startswith(PROVML):
            name = iri[len(PROVML) :]
            if name in ML_CLASS_BY_NAME:
                return name
    return None
