"""`llm-vllm-exporter`: the inference-server sidecar.

Each time Prometheus scrapes the sidecar, it scrapes the server (within a deadline
shorter than a scrape timeout), maps what it finds onto the catalog's names and units,
and yields them with its own health. A server that is down, slow or returns garbage
yields the exporter's upstream-up gauge at 0 and an error count, and no serving metrics at
all: never stale values served as fresh.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import urllib3
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from exporters import backends, catalog, serving, textformat
from exporters.backends import Backend, Rule
from exporters.cardinality import LabelCap

ACCEPT = "text/plain; version=0.0.4"  # the classic format keeps vLLM's colons
MAX_BYTES = 64 * 1024 * 1024
DEFAULT_TIMEOUT = 5.0  # Prometheus' default scrape timeout is 10 s
DEFAULT_MAX_MODELS = 64
DEFAULT_LISTEN = "127.0.0.1:9400"


class ScrapeError(Exception):
    """A failed scrape; `reason` is one of catalog.SCRAPE_ERROR_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass
class _Histogram:
    buckets: dict[float, float] = field(default_factory=lambda: defaultdict(float))
    sum: float = 0.0
    count: float = 0.0


@dataclass(frozen=True, slots=True)
class _Slot:
    """Where the value of one upstream line goes: worked out once per distinct line."""

    series: tuple[str, tuple[str, ...]]  # catalog name, label values
    kind: str  # the rule's kind (backends.HISTOGRAM, COUNTER, ...)
    part: str  # bucket, sum, count or value
    le: float | None  # a bucket's bound in base units
    scale: float
    histogram: bool
    folded: str  # the upstream model when it went over the cap, else ""


_IGNORED = _Slot(("", ()), "", "", None, 1.0, False, "")  # a line the backend does not map
SLOT_LIMIT = 500_000  # lines remembered, about 100 MB at most; beyond, parsed each time


@dataclass
class Snapshot:
    """One scrape's samples, mapped and summed over dropped labels."""

    histograms: dict[tuple[str, tuple[str, ...]], _Histogram] = field(default_factory=dict)
    values: dict[tuple[str, tuple[str, ...]], list[float]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    folded: set[str] = field(default_factory=set)  # model values over the cap


class SidecarCollector:
    """A prometheus_client collector that scrapes one inference server per collect()."""

    def __init__(
        self,
        target: str,
        backend: str = "auto",
        timeout: float = DEFAULT_TIMEOUT,
        max_models: int = DEFAULT_MAX_MODELS,
        model: str = "default",
        keep_engine: bool = False,
    ) -> None:
        self.url = metrics_url(target)
        self.backend = None if backend == "auto" else backends.BACKENDS[backend]
        self.timeout = timeout
        self.model = model
        self.keep_engine = keep_engine
        self.pool = urllib3.PoolManager(maxsize=4)
        self._lock = threading.Lock()
        self._slots: dict[str, dict[str, _Slot]] = {name: {} for name in backends.BACKENDS}
        self._errors: dict[str, float] = dict.fromkeys(catalog.SCRAPE_ERROR_REASONS, 0.0)
        self._models = LabelCap(max_models)
        self._overflow = 0.0
        # Per backend: upstream sample name -> (rule, part).
        self._wanted = {name: backend.wanted() for name, backend in backends.BACKENDS.items()}

    def collect(self) -> Iterator[Metric]:
        start = time.monotonic()
        try:
            text = self.fetch()
            snapshot = self.read(text)
        except ScrapeError as error:
            with self._lock:
                self._errors[error.reason] += 1
            yield from self._health(up=False, seconds=time.monotonic() - start)
            return
        families = list(self.families(snapshot))
        yield from families
        yield from self._health(up=True, seconds=time.monotonic() - start)

    def fetch(self) -> str:
        """The server's /metrics body, within `timeout` seconds (plus at most one read)."""
        deadline = time.monotonic() + self.timeout
        try:
            response = self.pool.request(
                "GET",
                self.url,
                # Identity: next to the server bandwidth is free, gzip is not.
                headers={"Accept": ACCEPT, "Accept-Encoding": "identity"},
                timeout=urllib3.Timeout(connect=self.timeout, read=min(1.0, self.timeout)),
                retries=False,
                preload_content=False,
            )
            try:
                if response.status != 200:
                    raise ScrapeError("http_status", f"HTTP {response.status}")
                body = bytearray()
                for chunk in response.stream(1 << 16):
                    body += chunk
                    if time.monotonic() > deadline:
                        raise ScrapeError("timeout", f"no full answer within {self.timeout}s")
                    if len(body) > MAX_BYTES:
                        raise ScrapeError("bad_payload", f"more than {MAX_BYTES} bytes")
            finally:
                response.release_conn()
        except urllib3.exceptions.NewConnectionError as error:  # before its base class below
            raise ScrapeError("refused", str(error)) from None
        except (urllib3.exceptions.TimeoutError, TimeoutError) as error:
            raise ScrapeError("timeout", str(error)) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ScrapeError("dropped", str(error)) from None
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ScrapeError("bad_payload", f"not UTF-8: {error}") from None

    def read(self, text: str) -> Snapshot:
        """Map a payload's samples onto the catalog; ScrapeError if it is not metrics.

        The sidecar's hot loop. A server writes the same lines at every scrape but for
        their values, so where each line's value goes (a `_Slot`) is worked out once,
        from a careful parse, and remembered by the text before the value.
        """
        backend = self.backend or backends.detect(text)
        if backend is None:
            raise ScrapeError("bad_payload", "no vLLM, TGI or Triton metric in the payload")
        wanted = self._wanted[backend.name]
        slots = self._slots[backend.name]
        snapshot = Snapshot()
        histograms, values = snapshot.histograms, snapshot.values
        found = False
        try:
            for line in text.split("\n"):
                if not line or line[0] == "#":
                    continue
                cut = line.rfind(" ")
                prefix = line[:cut]
                slot = slots.get(prefix)
                if slot is None:
                    slot, value = self._slot(line, backend, wanted, snapshot)
                    # Only a line whose value is its last token may be remembered by its
                    # prefix: a timestamp would otherwise be read as the value.
                    if len(slots) < SLOT_LIMIT and (prefix.endswith("}") or " " not in prefix):
                        slots[prefix] = slot
                else:
                    value = float(line[cut + 1 :])
                if slot is _IGNORED:
                    continue
                found = True
                if slot.folded:
                    snapshot.folded.add(slot.folded)
                if not slot.histogram:
                    samples = values.get(slot.series)
                    if samples is None:
                        samples = values[slot.series] = []
                        snapshot.kinds[slot.series[0]] = slot.kind
                    samples.append(value * slot.scale)
                    continue
                histogram = histograms.get(slot.series)
                if histogram is None:
                    histogram = histograms[slot.series] = _Histogram()
                    snapshot.kinds[slot.series[0]] = slot.kind
                if slot.part == "bucket":
                    histogram.buckets[slot.le] += value
                elif slot.part == "sum":
                    histogram.sum += value * slot.scale
                else:
                    histogram.count += value
        except (textformat.ParseError, ValueError, KeyError) as error:
            raise ScrapeError("bad_payload", f"{type(error).__name__}: {error}") from None
        if not found:
            raise ScrapeError("bad_payload", f"no {backend.name} metric in the payload")
        with self._lock:
            self._overflow += len(snapshot.folded)
        return snapshot

    def _slot(
        self, line: str, backend: Backend, wanted: dict[str, tuple[Rule, str]], snapshot: Snapshot
    ) -> tuple[_Slot, float]:
        """Parse one line carefully: where its value goes, and the value."""
        parsed = textformat.parse_line(line, wanted)
        if parsed is None:
            return _IGNORED, 0.0
        name, labels, value = parsed
        rule, part = wanted[name]
        upstream = (
            labels.get(backend.model_label, self.model) if backend.model_label else self.model
        )
        model = self._models.admit(upstream)
        key: tuple[str, ...] = (model, *(labels.get(n, "") for n in backend.dropped_labels)) if (
            self.keep_engine
        ) else (model,)  # fmt: skip
        if rule.target is catalog.REQUESTS:
            outcome = rule.outcome or rule.outcomes.get(labels.get(rule.outcome_label or "", ""))
            if outcome is None:
                return _IGNORED, value  # a finished_reason we do not know is not guessed at
            key = (*key, outcome)
        le = None
        if part == "bucket":
            le = float(labels["le"])
            if le != le:
                raise ValueError("le is NaN")
            le = le * rule.scale if le != math.inf else le
        folded = upstream if model == catalog.OVERFLOW_VALUE else ""
        histogram = rule.kind in backends.HISTOGRAM_KINDS
        slot = _Slot((rule.target.name, key), rule.kind, part, le, rule.scale, histogram, folded)
        return slot, value

    def _label_names(self, metric: catalog.Metric) -> list[str]:
        names = [catalog.MODEL]
        if self.keep_engine:
            names.append(catalog.VLLM.LABEL_ENGINE)
        if metric is catalog.REQUESTS:
            names.append(catalog.OUTCOME)
        return names

    def families(self, snapshot: Snapshot) -> Iterator[Metric]:
        """The catalog families of one scrape, in name order, series in label order."""
        by_name = {m.name: m for m in catalog.METRICS}
        family: Metric | None = None
        for (name, key), histogram in sorted(snapshot.histograms.items()):
            if family is None or family.name != name:
                if family is not None:
                    yield family
                metric = by_name[name]
                family = HistogramMetricFamily(name, metric.help, labels=self._label_names(metric))
            histogram.buckets[math.inf] = histogram.count
            cumulative = [(_le_text(le), v) for le, v in sorted(histogram.buckets.items())]
            family.add_metric(list(key), cumulative, histogram.sum)
        if family is not None:
            yield family
        family = None
        for (name, key), values in sorted(snapshot.values.items()):
            metric = by_name[name]
            if family is None or family.name != metric.name.removesuffix("_total"):
                if family is not None:
                    yield family
                kind = CounterMetricFamily if metric.kind == catalog.COUNTER else GaugeMetricFamily
                family = kind(name, metric.help, labels=self._label_names(metric))
            total = sum(values)
            mean = snapshot.kinds[name] == backends.GAUGE_MEAN
            family.add_metric(list(key), total / len(values) if mean else total)
        if family is not None:
            yield family

    def _health(self, up: bool, seconds: float) -> Iterator[Metric]:
        m = catalog
        yield GaugeMetricFamily(
            m.EXPORTER_UPSTREAM_UP.name, m.EXPORTER_UPSTREAM_UP.help, value=1 if up else 0
        )
        yield GaugeMetricFamily(
            m.EXPORTER_SCRAPE_DURATION.name, m.EXPORTER_SCRAPE_DURATION.help, value=seconds
        )
        errors = CounterMetricFamily(
            m.EXPORTER_SCRAPE_ERRORS.name, m.EXPORTER_SCRAPE_ERRORS.help, labels=["reason"]
        )
        overflow = CounterMetricFamily(
            m.EXPORTER_LABEL_OVERFLOW.name, m.EXPORTER_LABEL_OVERFLOW.help, labels=["label"]
        )
        with self._lock:
            for reason, count in self._errors.items():
                errors.add_metric([reason], count)
            overflow.add_metric([catalog.MODEL], self._overflow)
        yield errors
        yield overflow


@functools.lru_cache(maxsize=4096)
def _le_text(bound: float) -> str:
    """A bucket bound as prometheus_client writes it ("0.25", "2.0", "+Inf"), formatted once."""
    return floatToGoString(bound)


def metrics_url(target: str) -> str:
    """The /metrics URL of a target given as a base URL or as the metrics URL itself."""
    parts = urlsplit(target if "://" in target else f"http://{target}")
    path = parts.path if parts.path not in ("", "/") else "/metrics"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llm-vllm-exporter", description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="the server's base or /metrics URL")
    parser.add_argument("--backend", choices=["auto", *backends.BACKENDS], default="auto")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="ADDR:PORT")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per upstream scrape"
    )
    parser.add_argument(
        "--max-models", type=int, default=DEFAULT_MAX_MODELS, help="cap on model label values"
    )
    parser.add_argument(
        "--model", default="default", help="model label for servers without one (TGI)"
    )
    parser.add_argument("--keep-engine-label", action="store_true", help="keep vLLM's engine label")
    args = parser.parse_args(argv)
    collector = SidecarCollector(
        args.target, args.backend, args.timeout, args.max_models, args.model, args.keep_engine_label
    )
    return serving.run(collector, args.listen, parser.prog, metrics_url(args.target))


if __name__ == "__main__":
    sys.exit(main())
