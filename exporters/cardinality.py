"""A cap on the values of one label, so that no upstream or client can blow up
Prometheus' cardinality (model names come from servers and from request bodies)."""

from __future__ import annotations

import threading

from llm_slo_stack.exporters import catalog


class LabelCap:
    """Admits the first `limit` distinct values; later ones become catalog.OVERFLOW_VALUE.

    A value keeps its place once admitted, so series do not flip between scrapes.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def admit(self, value: str) -> str:
        if value in self._values:
            return value
        with self._lock:
            if value in self._values or len(self._values) < self.limit:
                self._values.add(value)
                return value
        return catalog.OVERFLOW_VALUE
