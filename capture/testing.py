"""Helpers for testing code that uses provml capture: an in-memory exporter.

.. code-block:: python

    from provml.capture.testing import capture

    def test_training_records_its_model_version():
        with capture() as exported:
            train(...)
        (version,) = exported.elements(ml_class="ModelVersion")

Imports: standard library and ``provml.records`` only.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from provml.capture import _provider, _state
from provml.records import Bundle, Element, Record, Relation, merge_elements

__all__ = ["InMemoryExporter", "capture"]


class InMemoryExporter:
    """Keeps every exported bundle in memory; query it with the methods below.

    Reading flushes the capture queue first when this exporter is the active destination,
    so assertions see everything captured so far.
    """

    spool = False  # nothing to spool: export never fails
    prompt = True  # a flush exports on its caller's thread

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bundles: list[Bundle] = []

    def export(self, bundles: Sequence[Bundle]) -> None:
        with self._lock:
            self._bundles.extend(bundles)

    def describe(self) -> str:
        return "an in-memory exporter"

    def _sync(self) -> None:
        provider = _state.provider
        if provider is not None and provider.destination is self:
            provider.exporter.flush(30.0)

    @property
    def bundles(self) -> list[Bundle]:
        """Every exported batch, one Bundle per workflow run per batch, in export order."""
        self._sync()
        with self._lock:
            return list(self._bundles)

    @property
    def records(self) -> list[Record]:
        return [r for b in self.bundles for r in b.records]

    def bundle_ids(self) -> list[str]:
        return list(dict.fromkeys(b.id for b in self.bundles))

    def elements(self, *, ml_class: str | None = None, kind: str | None = None) -> list[Element]:
        """Elements merged by id across batches (PROV-DM union), in first-seen order."""
        merged: dict[str, Element] = {}
        for record in self.records:
            if isinstance(record, Element):
                known = merged.get(record.id)
                merged[record.id] = record if known is None else merge_elements(known, record)
        return [
            e
            for e in merged.values()
            if (ml_class is None or e.ml_class == ml_class) and (kind is None or e.kind == kind)
        ]

    def element(self, iri: str) -> Element:
        for e in self.elements():
            if e.id == iri:
                return e
        raise KeyError(iri)

    def relations(
        self, kind: str | None = None, *, subject: str | None = None, object: str | None = None
    ) -> list[Relation]:
        return [
            r
            for r in self.records
            if isinstance(r, Relation)
            and (kind is None or r.kind == kind)
            and (subject is None or r.subject == subject)
            and (object is None or r.object == object)
        ]

    def clear(self) -> None:
        self._sync()
        with self._lock:
            self._bundles.clear()


@contextlib.contextmanager
def capture(workflow: str = "test", **init_options: Any) -> Iterator[InMemoryExporter]:
    """Capture into a fresh :class:`InMemoryExporter` for the block, then stop capturing.

    Any other ``provml.init`` option can be passed (``user=``, ``base_iri=``…). Whatever
    was configured before is shut down first; after the block capture is off.
    """
    exporter = InMemoryExporter()
    _provider.init(workflow, exporter=exporter, **init_options)
    try:
        yield exporter
    finally:
        _provider.shutdown()
