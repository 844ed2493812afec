"""An exporter's own health: an up gauge and failures counted by reason.

Every reason is exported from the first scrape at 0, so `increase()` sees the first
failure of each kind; counts are guarded by a lock because scrapes run in threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from llm_slo_stack.exporters import catalog


class Health:
    """`up` (with fixed labels, such as the source) and `errors` by reason."""

    def __init__(
        self,
        up: catalog.Metric,
        errors: catalog.Metric,
        reasons: Iterable[str],
        labels: dict[str, str] | None = None,
    ) -> None:
        self.up = up
        self.errors = errors
        self.labels = dict(labels or {})
        self._counts = dict.fromkeys(reasons, 0.0)
        self._lock = threading.Lock()

    def count(self, reason: str) -> None:
        """One more failure of this reason (one of those given at construction)."""
        with self._lock:
            self._counts[reason] += 1

    def counts(self) -> dict[str, float]:
        with self._lock:
            return dict(self._counts)

    def families(self, up: bool) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(self.up.name, self.up.help, labels=list(self.labels))
        gauge.add_metric(list(self.labels.values()), 1 if up else 0)
        errors = CounterMetricFamily(self.errors.name, self.errors.help, labels=[catalog.REASON])
        for reason, count in self.counts().items():
            errors.add_metric([reason], count)
        yield gauge
        yield errors
