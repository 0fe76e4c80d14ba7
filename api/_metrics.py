"""Prometheus metrics of one service process, written in the text exposition format 0.0.4.

Counters and histograms are kept in plain dictionaries under one lock: the service
needs a handful of series and no dependency for them.

Imports: standard library only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import ClassVar

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: Iterable[tuple[str, str]] = ()) -> str:
    pairs = [*labels, *extra]
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


class _Histogram:
    __slots__ = ("counts", "sum", "total")

    def __init__(self) -> None:
        self.counts = [0] * len(_BUCKETS)
        self.sum = 0.0
        self.total = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(_BUCKETS):
            if value <= bound:
                self.counts[i] += 1
        self.sum += value
        self.total += 1


class Metrics:
    """The service's counters and latency histograms; :meth:`render` writes them out."""

    _HELP: ClassVar[dict[str, tuple[str, str]]] = {
        "provml_http_requests_total": ("counter", "HTTP requests by method, route and status."),
        "provml_http_request_duration_seconds": ("histogram", "HTTP request latency by route."),
        "provml_ingest_batches_total": ("counter", "Ingested batches and documents by source."),
        "provml_ingest_records_total": ("counter", "Ingested records by outcome."),
        "provml_sparql_queries_total": ("counter", "SPARQL queries by outcome."),
        "provml_sparql_query_duration_seconds": ("histogram", "SPARQL query latency."),
        "provml_lineage_query_duration_seconds": ("histogram", "Lineage query latency by walk."),
        "provml_rdf_projected_bundles_total": ("counter", "Bundles projected to the RDF store."),
        "provml_inbox_records_total": (
            "counter",
            "Records taken in from the embedded store's inbox (batches left by capture).",
        ),
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = {}
        self._histograms: dict[str, dict[Labels, _Histogram]] = {}

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._counters.setdefault(name, {})
            series[key] = series.get(key, 0) + amount

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._histograms.setdefault(name, {}).setdefault(key, _Histogram()).observe(seconds)

    def value(self, name: str, **labels: str) -> float:
        """A counter's current value (0 if never incremented)."""
        with self._lock:
            return self._counters.get(name, {}).get(tuple(sorted(labels.items())), 0)

    def render(self, gauges: dict[str, tuple[str, float]] | None = None) -> str:
        """Every series in the Prometheus text format, plus ``gauges`` (name → help, value)."""
        lines: list[str] = []
        with self._lock:
            for name in sorted(self._counters.keys() | self._histograms.keys()):
                kind, text = self._HELP.get(name, ("untyped", name))
                lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
                for labels, value in sorted(self._counters.get(name, {}).items()):
                    lines.append(f"{name}{_labels(labels)} {value:g}")
                for labels, hist in sorted(self._histograms.get(name, {}).items()):
                    for bound, count in zip(_BUCKETS, hist.counts, strict=True):
                        lines.append(
                            f"{name}_bucket{_labels(labels, [('le', f'{bound:g}')])} {count}"
                        )
                    lines.append(f"{name}_bucket{_labels(labels, [('le', '+Inf')])} {hist.total}")
                    lines.append(f"{name}_sum{_labels(labels)} {hist.sum:.6f}")
                    lines.append(f"{name}_count{_labels(labels)} {hist.total}")
        for name, (text, value) in sorted((gauges or {}).items()):
            lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge", f"{name} {value:g}"]
        return "\n".join(lines) + "\n"
