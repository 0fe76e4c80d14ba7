"""Example PROV-ML SPARQL queries, documented and tested, shared by the demo, the CLI
docs and the service. Each takes its parameters as IRIs, bound with VALUES (or written
into a subquery, which an outer VALUES does not reach), and checked to be IRIs, so a
query stays valid SPARQL whatever is substituted.

Imports: standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIXES = """PREFIX prov: <http://www.w3.org/ns/prov#>
PREFIX provml: <https://w3id.org/provml/ns#>
PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>
"""


@dataclass(frozen=True)
class ExampleQuery:
    name: str
    question: str
    text: str  # with ``{param}`` placeholders for IRIs
    params: tuple[str, ...] = ()

    def render(self, **values: str) -> str:
        missing = set(self.params) - values.keys()
        if missing:
            raise KeyError(f"{self.name} needs {', '.join(sorted(missing))}")
        for name, value in values.items():
            if any(c in value for c in '<>"{}|^`\\ \n'):
                raise ValueError(f"{name} is not an IRI: {value!r}")
        return PREFIXES + self.text.format(**{k: f"<{v}>" for k, v in values.items()})


EXAMPLES = (
    ExampleQuery(
        "raw-data-of-model-version",
        "Which raw domain data trained model version V?",
        """SELECT DISTINCT ?data ?label WHERE {{
  VALUES ?version {{ {version} }}
  ?version (prov:wasDerivedFrom|prov:wasGeneratedBy|prov:used)+ ?data .
  # The class as a FILTER, not a triple pattern: as a pattern Oxigraph joins every
  # DomainData entity first and walks the path once per candidate (20-35 s on 300k
  # records, for a version fine-tuned ~400 times); as a filter it walks the path once
  # from the version and tests what it reached (0.6 s). Same answers.
  FILTER EXISTS {{ ?data a provml:DomainData }}
  FILTER NOT EXISTS {{ ?data prov:wasGeneratedBy ?producer }}
  OPTIONAL {{ ?data rdfs:label ?label }}
}} ORDER BY ?label""",
        ("version",),
    ),
    ExampleQuery(
        "models-affected-by-file",
        "Which model versions are affected by raw file F?",
        """SELECT DISTINCT ?version WHERE {{
  VALUES ?file {{ {file} }}
  ?version a provml:ModelVersion ;
           (prov:wasDerivedFrom|prov:wasGeneratedBy|prov:used)+ ?file .
}} ORDER BY ?version""",
        ("file",),
    ),
    ExampleQuery(
        "hyperparameters-and-final-metrics",
        "Hyperparameters and final metrics of every version of model M",
        """SELECT ?version ?parameter ?value WHERE {{
  VALUES ?model {{ {model} }}
  ?version prov:specializationOf ?model ; prov:wasGeneratedBy ?training .
  {{
    ?training prov:used ?p .
    ?p a provml:LearningHyperparameterValue ;
       provml:name ?parameter ; provml:hyperparameterValue ?value .
  }} UNION {{
    # The final value of each metric is the one at the highest step. A grouped MAX
    # per (training, metric name), joined back, finds it in one pass; a FILTER NOT
    # EXISTS comparing every metric with every other walked the property path once
    # per pair and did not finish within 30 s on 100k records.
    {{
      SELECT ?training ?parameter (MAX(?s) AS ?step) WHERE {{
        ?v prov:specializationOf {model} ; prov:wasGeneratedBy ?training .
        ?mm prov:wasGeneratedBy/prov:wasInformedBy* ?training .
        ?mm a provml:MetricValue ; provml:name ?parameter ; provml:step ?s .
      }} GROUP BY ?training ?parameter
    }}
    ?m prov:wasGeneratedBy/prov:wasInformedBy* ?training .
    ?m a provml:MetricValue ; provml:name ?parameter ; provml:step ?step ;
       provml:metricValue ?value .
  }}
}} ORDER BY ?version ?parameter""",
        ("model",),
    ),
    ExampleQuery(
        "failed-executions-on-host",
        "Which executions ran on host H and failed?",
        """SELECT ?execution ?error WHERE {{
  ?execution provml:status "failed" ;
             prov:wasAssociatedWith ?agent .
  ?agent provml:host {host} .
  OPTIONAL {{ ?execution provml:errorMessage ?error }}
}}""",
        ("host",),
    ),
)
EXAMPLE_BY_NAME = {q.name: q for q in EXAMPLES}
