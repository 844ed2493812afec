"""`llm-serving-exporter` (also `llm-vllm-exporter`, its first name): the inference-server sidecar.

Each time Prometheus scrapes the sidecar, it scrapes the server (within a deadline
shorter than a scrape timeout), maps what it finds onto the catalog's names and units,
and yields them with its own health. A server that is down, slow or returns garbage
yields the exporter's upstream-up gauge at 0 and an error count, and no serving metrics at
all: never stale values served as fresh.
"""

from __future__ import annotations

import argparse
import functools
import gc
import itertools
import math
import operator
import os
import re
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from llm_slo_stack.exporters import backends, catalog, serving, textformat
from llm_slo_stack.exporters.backends import Backend, Rule
from llm_slo_stack.exporters.cardinality import LabelCap
from llm_slo_stack.exporters.health import Health
from llm_slo_stack.exporters.upstream import DEFAULT_TIMEOUT, ScrapeError, Upstream

DEFAULT_MAX_MODELS = 64
DEFAULT_MAX_ADAPTERS = 32
DEFAULT_LISTEN = "127.0.0.1:9400"
COMMANDS = ("llm-serving-exporter", "llm-vllm-exporter")  # its name, and its first name


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
    superseded: bool  # a pre-rename source: kept only where no current one feeds the series
    lora: tuple[str, str, str] | None = None  # a LoRA report's max, running and waiting labels
    rare: bool = False  # folded or a LoRA report: one test in the hot loop for both


Slots = tuple[_Slot, ...]  # where one line's value goes; empty for a line not mapped
# Lines remembered, bounded in bytes (a label set can be long); beyond, parsed each time.
SLOT_BYTES = 64 * 1024 * 1024
LINE_OVERHEAD = 120  # bytes of a remembered line besides its text: the dict entry, the tuple
SLOT_OVERHEAD = 170  # bytes of one _Slot (sys.getsizeof of the object and its key tuple)


@dataclass
class Snapshot:
    """One scrape's samples, mapped and summed over dropped labels."""

    histograms: dict[tuple[str, tuple[str, ...]], _Histogram] = field(default_factory=dict)
    values: dict[tuple[str, tuple[str, ...]], list[float]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    folded: set[str] = field(default_factory=set)  # model values over the cap
    # Per model: the LoRA reports (time of the report, its max, running and waiting labels).
    lora: dict[str, list[tuple[float, tuple[str, str, str]]]] = field(default_factory=dict)

    def settle(self, superseded: Snapshot) -> None:
        """Take the superseded sources' series that no current source fed."""
        for key, histogram in superseded.histograms.items():
            self.histograms.setdefault(key, histogram)
        for key, values in superseded.values.items():
            self.values.setdefault(key, values)
        for name, kind in superseded.kinds.items():
            self.kinds.setdefault(name, kind)


# Every line's last space-separated token: a sample line's value (what `_read_lines`
# takes after line.rfind(" ")), or a comment's last word. Splitting a payload on it gives
# its shape (the text between the tokens) and the tokens, in one C-level pass.
_LAST_TOKEN = re.compile(r" ([^ \n]+)$", re.M)
Series = tuple[str, tuple[str, ...]]
# A served series: its metric, label values, (bound, cumulative count)s or None, value.
Row = tuple[catalog.Metric, tuple[str, ...], list[tuple[float, float]] | None, float]
Getter = Callable[[list[float]], tuple[float, ...]]
Lines = list[tuple[int, float]]  # (index or position, scale)


def shape_of(text: str) -> tuple[int, list[str]]:
    """A payload split at its lines' last tokens: its shape (a hash of everything but
    those tokens) and the pieces, text and tokens alternating (tokens at odd indices)."""
    pieces = _LAST_TOKEN.split(text)
    return hash(tuple(pieces[0::2])), pieces


@dataclass
class _Plan:
    """Where each value of a payload of one shape goes: replayed on the next payload of
    that shape with C-level sums, the same additions in the same order as
    `_read_lines`, so both give the same floats."""

    backend: Backend
    shape: int
    # While being built: per histogram series, per part (a bucket's bound, "sum" or
    # "count"), the (token index, scale)s added; per scalar series, the same.
    histograms: dict[Series, dict[float | str, list[tuple[int, float]]]] = field(
        default_factory=dict
    )
    values: dict[Series, list[tuple[int, float]]] = field(default_factory=dict)
    lora: list[tuple[str, tuple[str, str, str], int]] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)
    folded: set[str] = field(default_factory=set)
    # Once settled: the tokens read (in token order), and per series what replay does
    # with their floats, by position among them.
    _read: Callable[[list[str]], Any] = field(default=lambda tokens: ())
    # Per histogram series: its buckets' getters, its count's and sum's, and the scale of
    # its sum's sources.
    _histograms: list[tuple[Series, list[tuple[float, Getter]], Getter, Getter, float]] = field(
        default_factory=list
    )
    _values: list[tuple[Series, Lines]] = field(default_factory=list)

    def add(self, slot: _Slot, index: int) -> None:
        if slot.folded:
            self.folded.add(slot.folded)
        if slot.lora is not None:
            self.lora.append((slot.series[1][0], slot.lora, index))
            return
        self.kinds.setdefault(slot.series[0], slot.kind)
        if not slot.histogram:
            self.values.setdefault(slot.series, []).append((index, slot.scale))
            return
        part: float | str = slot.le if slot.le is not None else slot.part
        scale = slot.scale if part == "sum" else 1.0
        self.histograms.setdefault(slot.series, {}).setdefault(part, []).append((index, scale))

    def settle(self, superseded: _Plan) -> bool:
        """Take the superseded sources' series that no current source fed (as
        Snapshot.settle), then index what replay reads. False where a histogram's sum has
        sources of different scales, which no mapping has: such payloads are read line
        by line."""
        for key, parts in superseded.histograms.items():
            self.histograms.setdefault(key, parts)
        for key, lines in superseded.values.items():
            self.values.setdefault(key, lines)
        for name, kind in superseded.kinds.items():
            self.kinds.setdefault(name, kind)
        self.folded |= superseded.folded
        read = sorted(
            {i for parts in self.histograms.values() for lines in parts.values() for i, _ in lines}
            | {i for lines in self.values.values() for i, _ in lines}
            | {i for _, _, i in self.lora}
        )
        at = {index: position for position, index in enumerate(read)}
        self._read = _getter(read)

        def getter(lines: list[tuple[int, float]]) -> Getter:
            return _getter([at[i] for i, _ in lines])

        for series, parts in self.histograms.items():
            buckets = [(p, getter(lines)) for p, lines in parts.items() if not isinstance(p, str)]
            empty: list[tuple[int, float]] = []
            count, total = parts.get("count", empty), parts.get("sum", empty)
            scales = {scale for _, scale in total} or {1.0}
            if len(scales) > 1:
                return False
            self._histograms.append((series, buckets, getter(count), getter(total), scales.pop()))
        self._values += [
            (series, [(at[i], s) for i, s in lines]) for series, lines in self.values.items()
        ]
        self.lora = [(model, info, at[i]) for model, info, i in self.lora]
        self.histograms, self.values = {}, {}
        return True

    def replay(self, tokens: list[str]) -> Snapshot:
        """The snapshot of a payload of this shape, from its last tokens; ValueError if
        a value read is not a number."""
        floats = list(map(float, self._read(tokens)))
        snapshot = Snapshot(kinds=dict(self.kinds), folded=set(self.folded))
        for series, buckets, count, total, scale in self._histograms:
            histogram = _Histogram(
                buckets=defaultdict(float, {le: sum(get(floats), 0.0) for le, get in buckets}),
                count=sum(count(floats), 0.0),
            )
            if scale == 1.0:
                histogram.sum = sum(total(floats), 0.0)
            else:
                histogram.sum = sum([f * scale for f in total(floats)], 0.0)
            snapshot.histograms[series] = histogram
        snapshot.values = {
            series: [floats[i] * s for i, s in lines] for series, lines in self._values
        }
        for model, info, position in self.lora:
            snapshot.lora.setdefault(model, []).append((floats[position], info))
        return snapshot


def _getter(positions: list[int]) -> Callable[[list[Any]], tuple[Any, ...]]:
    """The items at `positions` as a tuple (itemgetter returns a bare item for one)."""
    if len(positions) == 1:
        position = positions[0]
        return lambda items: (items[position],)
    if not positions:
        return lambda items: ()
    return operator.itemgetter(*positions)


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
        bearer_token_file: str | None = None,
        max_adapters: int = DEFAULT_MAX_ADAPTERS,
        freeze_gc: bool = False,
    ) -> None:
        self.upstream = Upstream(target, timeout, bearer_token_file=bearer_token_file)
        self.backend = None if backend == "auto" else backends.BACKENDS[backend]
        self.model = model
        self.keep_engine = keep_engine
        self.freeze_gc = freeze_gc  # the command's own process only: gc.freeze() is global
        self.health = Health(
            catalog.EXPORTER_UPSTREAM_UP,
            catalog.EXPORTER_SCRAPE_ERRORS,
            catalog.SCRAPE_ERROR_REASONS,
        )
        self._lock = threading.Lock()
        # Per backend: line prefix -> [where its value goes, the stamp of its last scrape].
        self._slots: dict[str, dict[str, list[Any]]] = {name: {} for name in backends.BACKENDS}
        self._stamps = itertools.count(1)
        self._plan: _Plan | None = None
        self._shape = 0  # of the last payload read line by line
        self._slot_bytes = dict.fromkeys(backends.BACKENDS, 0)
        self._models = LabelCap(max_models)
        self._adapters = LabelCap(max_adapters)
        self._overflow = 0.0
        # Per counter series: (the sum of its positive sources, the value served) last time.
        self._served: dict[tuple[str, tuple[str, ...]], tuple[float, float]] = {}
        # Per backend: upstream sample name -> (rule, part).
        self._wanted = {name: backend.wanted() for name, backend in backends.BACKENDS.items()}

    def collect(self) -> Iterator[Metric]:
        start = time.monotonic()
        try:
            text = self.upstream.fetch()
            snapshot = self.read(text)
        except ScrapeError as error:
            self.health.count(error.reason)
            yield from self._health(up=False, seconds=time.monotonic() - start)
            return
        families = list(self.families(snapshot))
        yield from families
        yield from self._health(up=True, seconds=time.monotonic() - start)

    def read(self, text: str) -> Snapshot:
        """Map a payload's samples onto the catalog; ScrapeError if it is not metrics.

        A server writes the same lines at every scrape but for their values. When this
        payload has the shape (every line but its value, in order) that the last two
        careful reads had, their mapping is replayed on its values (`_Plan`); otherwise
        each line is read (`_read_lines`).
        """
        shape, pieces = shape_of(text)
        plan = self._plan
        if plan is not None and plan.shape == shape and self.backend in (None, plan.backend):
            try:
                snapshot = plan.replay(pieces[1::2])
            except ValueError as error:
                raise ScrapeError("bad_payload", f"ValueError: {error}") from None
        else:
            backend = self.backend or backends.detect(text)
            if backend is None:
                raise ScrapeError(
                    "bad_payload", "no vLLM, SGLang, TGI or Triton metric in the payload"
                )
            snapshot = self._read_lines(text, backend)
            if self._shape == shape:  # the second time: worth a plan
                self._plan = self._planned(pieces, backend, shape)
                if self.freeze_gc:
                    # The remembered lines and the plan live as long as the process:
                    # frozen, the cyclic GC's full passes stop walking them (those passes
                    # were the p99 of a scrape, bench/exporter.py). Freed by refcount
                    # when replaced: they hold no cycles.
                    gc.freeze()
            self._shape = shape
        with self._lock:
            self._overflow += len(snapshot.folded)
        self._lora(snapshot)
        return snapshot

    def _read_lines(self, text: str, backend: Backend) -> Snapshot:
        """Read every line: where each line's value goes (a `_Slot`) is worked out once,
        from a careful parse, and remembered by the text before the value."""
        wanted = self._wanted[backend.name]
        slots = self._slots[backend.name]
        snapshot, superseded = Snapshot(), Snapshot()
        # Each remembered line's cell holds the stamp of the last scrape that wrote it, so
        # a line written twice in one payload is caught without a set built per scrape.
        stamp = next(self._stamps)
        unremembered: set[str] = set()
        found = False
        try:
            for line in text.split("\n"):
                if not line or line[0] == "#":
                    continue
                cut = line.rfind(" ")
                prefix = line[:cut]
                cell = slots.get(prefix)
                if cell is None:
                    group, value = self._slots_of(line, backend, wanted)
                    # Only a line whose value is its last token may be remembered by its
                    # prefix: a timestamp would otherwise be read as the value.
                    if prefix.endswith("}") or " " not in prefix:
                        size = len(prefix) + LINE_OVERHEAD + SLOT_OVERHEAD * len(group)
                        if self._slot_bytes[backend.name] + size <= SLOT_BYTES:
                            slots[prefix] = cell = [group, 0]
                            self._slot_bytes[backend.name] += size
                else:
                    group = cell[0]
                    value = float(line[cut + 1 :])
                if not group:
                    continue
                if cell is not None:
                    twice = cell[1] == stamp
                    cell[1] = stamp
                else:
                    twice = prefix in unremembered
                    unremembered.add(prefix)
                if twice:
                    # The format allows a series once: which of two values is true is
                    # unknowable, so the payload is bad rather than summed or guessed.
                    raise ValueError(f"series written twice: {prefix}")
                found = True
                for slot in group:
                    into = superseded if slot.superseded else snapshot
                    if slot.rare:
                        if slot.folded:
                            into.folded.add(slot.folded)
                        if slot.lora is not None:
                            into.lora.setdefault(slot.series[1][0], []).append((value, slot.lora))
                            continue
                    if not slot.histogram:
                        samples = into.values.get(slot.series)
                        if samples is None:
                            samples = into.values[slot.series] = []
                            into.kinds[slot.series[0]] = slot.kind
                        samples.append(value * slot.scale)
                        continue
                    histogram = into.histograms.get(slot.series)
                    if histogram is None:
                        histogram = into.histograms[slot.series] = _Histogram()
                        into.kinds[slot.series[0]] = slot.kind
                    if slot.le is not None:
                        histogram.buckets[slot.le] += value
                    elif slot.part == "sum":
                        histogram.sum += value * slot.scale
                    else:
                        histogram.count += value
        except (textformat.ParseError, ValueError, KeyError) as error:
            raise ScrapeError("bad_payload", f"{type(error).__name__}: {error}") from None
        if not found:
            raise ScrapeError("bad_payload", f"no {backend.name} metric in the payload")
        snapshot.settle(superseded)
        snapshot.folded |= superseded.folded
        return snapshot

    def _planned(self, pieces: list[str], backend: Backend, shape: int) -> _Plan | None:
        """The mapping of a payload just read, by the index of each line's last token;
        None if a mapped line is not remembered (the cache is full)."""
        slots = self._slots[backend.name]
        plan, superseded = _Plan(backend, shape), _Plan(backend, shape)
        for index in range(len(pieces) // 2):
            before = pieces[2 * index]
            line = before[before.rfind("\n") + 1 :]
            if not line or line[0] == "#":
                continue
            cell = slots.get(line)
            if cell is None:
                return None
            for slot in cell[0]:
                (superseded if slot.superseded else plan).add(slot, index)
        return plan if plan.settle(superseded) else None

    def _slots_of(
        self, line: str, backend: Backend, wanted: dict[str, tuple[tuple[Rule, str], ...]]
    ) -> tuple[Slots, float]:
        """Parse one line carefully: where its value goes, and the value."""
        parsed = textformat.parse_line(line, wanted)
        if parsed is None:
            return (), 0.0
        name, labels, value = parsed
        upstream = (
            labels.get(backend.model_label, self.model) if backend.model_label else self.model
        )
        model = self._models.admit(upstream)
        base: tuple[str, ...] = (model, *(labels.get(n, "") for n in backend.dropped_labels)) if (
            self.keep_engine
        ) else (model,)  # fmt: skip
        folded = upstream if model == catalog.OVERFLOW_VALUE else ""
        group: list[_Slot] = []
        for rule, part in wanted[name]:
            if rule.where is not None and labels.get(rule.where[0]) != rule.where[1]:
                continue
            key = base
            if rule.target is catalog.REQUESTS:
                source = labels.get(rule.outcome_label or "", "")
                outcome = rule.outcome or rule.outcomes.get(source, rule.outcome_default)
                if outcome is None:
                    continue  # a finished_reason we do not know is not guessed at
                key = (*key, outcome)
            le = None
            if part == "bucket":
                le = float(labels["le"])
                if le != le:
                    raise ValueError("le is NaN")
                le = le * rule.scale if le != math.inf else le
            histogram = rule.kind in backends.HISTOGRAM_KINDS
            lora = None
            if rule.kind == backends.LORA_INFO:
                v = catalog.VLLM
                lora = (
                    labels.get(v.LABEL_MAX_LORA, ""),
                    labels.get(v.LABEL_RUNNING_LORA, ""),
                    labels.get(v.LABEL_WAITING_LORA, ""),
                )
            group.append(
                _Slot(
                    (rule.target.name, key), rule.kind, part, le, rule.scale, histogram, folded,
                    rule.superseded, lora, bool(folded) or lora is not None,
                )
            )  # fmt: skip
        return tuple(group), value

    def _lora(self, snapshot: Snapshot) -> None:
        """vLLM writes a new LoRA report series whenever the adapters in use change and
        sets it to the time of the report; the old ones stay. Per model, the latest one
        says which adapters have requests running or waiting now."""
        for model, reports in snapshot.lora.items():
            _, (most, running, waiting) = max(reports)
            # The report has no engine label: with --keep-engine-label its engine is "".
            base = (model, "") if self.keep_engine else (model,)
            if most:
                snapshot.values[(catalog.LORA_ADAPTERS_MAX.name, base)] = [float(most)]
                snapshot.kinds[catalog.LORA_ADAPTERS_MAX.name] = backends.GAUGE_SUM
            for state, names in (
                (catalog.STATE_RUNNING, running),
                (catalog.STATE_WAITING, waiting),
            ):
                adapters = [a for a in names.split(",") if a]
                snapshot.values[(catalog.LORA_ADAPTERS.name, (*base, state))] = [len(adapters)]
                for adapter in adapters:
                    series = (
                        catalog.LORA_ADAPTER.name,
                        (*base, self._adapters.admit(adapter), state),
                    )
                    snapshot.values.setdefault(series, []).append(1.0)
            snapshot.kinds[catalog.LORA_ADAPTERS.name] = backends.GAUGE_SUM
            snapshot.kinds[catalog.LORA_ADAPTER.name] = backends.GAUGE_SUM

    def _label_names(self, metric: catalog.Metric) -> list[str]:
        names = [catalog.MODEL]
        if self.keep_engine:
            names.append(catalog.VLLM.LABEL_ENGINE)
        return names + [label for label in metric.labels if label != catalog.MODEL]

    def rows(self, snapshot: Snapshot) -> Iterator[Row]:
        """Each catalog series of a scrape, in name then label order: its metric, label
        values, and for a histogram its (bound, cumulative count)s and sum, else its value."""
        by_name = {m.name: m for m in catalog.METRICS}
        for (name, key), histogram in sorted(snapshot.histograms.items()):
            histogram.buckets[math.inf] = histogram.count
            yield by_name[name], key, sorted(histogram.buckets.items()), histogram.sum
        for (name, key), values in sorted(snapshot.values.items()):
            metric = by_name[name]
            total = sum(values)
            if metric.kind == catalog.COUNTER:
                total = self._monotonic((name, key), values, total)
            if snapshot.kinds[name] == backends.GAUGE_MEAN:
                total /= len(values)
            yield metric, key, None, total

    def families(self, snapshot: Snapshot) -> Iterator[Metric]:
        """The catalog families of one scrape, for prometheus_client's registry."""
        current: catalog.Metric | None = None
        family: Metric | None = None
        for metric, key, buckets, value in self.rows(snapshot):
            if metric is not current:
                if family is not None:
                    yield family
                current, names = metric, self._label_names(metric)
                if metric.kind == catalog.HISTOGRAM:
                    family = HistogramMetricFamily(metric.name, metric.help, labels=names)
                elif metric.kind == catalog.COUNTER:
                    family = CounterMetricFamily(metric.name, metric.help, labels=names)
                else:
                    family = GaugeMetricFamily(metric.name, metric.help, labels=names)
            if buckets is None:
                family.add_metric(list(key), value)  # type: ignore[union-attr]
            else:
                cumulative = [(_le_text(le), count) for le, count in buckets]
                family.add_metric(list(key), cumulative, value)  # type: ignore[union-attr]
        if family is not None:
            yield family

    def text(self, snapshot: Snapshot) -> str:
        """The catalog families of one scrape in the text format, written directly: the
        same lines prometheus_client's generate_latest() writes for families(), at a
        tenth of its cost on a big scrape (tests/test_sidecar.py compares the two)."""
        out: list[str] = []
        current: catalog.Metric | None = None
        names: tuple[str, ...] = ()
        for metric, key, buckets, value in self.rows(snapshot):
            if metric is not current:
                current, names = metric, tuple(self._label_names(metric))
                doc = metric.help.replace("\\", r"\\").replace("\n", r"\n")
                out.append(f"# HELP {metric.name} {doc}\n# TYPE {metric.name} {metric.kind}\n")
            before, after = _label_text(names, key)
            labels = f"{before},{after}" if before and after else before or after
            if buckets is None:
                out.append(f"{metric.name}{{{labels}}} {_number(value)}\n")
                continue
            head = f"{metric.name}_bucket{{{before}," if before else f"{metric.name}_bucket{{"
            tail = f",{after}}}" if after else "}"
            out += [f'{head}le="{_le_text(le)}"{tail} {_number(n)}\n' for le, n in buckets]
            out.append(
                f"{metric.name}_count{{{labels}}} {_number(buckets[-1][1])}\n"
                f"{metric.name}_sum{{{labels}}} {_number(value)}\n"
            )
        return "".join(out)

    def render(self) -> bytes:
        """One scrape as the text format: the catalog families, then the health ones."""
        start = time.monotonic()
        try:
            body = self.text(self.read(self.upstream.fetch()))
        except ScrapeError as error:
            self.health.count(error.reason)
            return serving.exposition(self._health(up=False, seconds=time.monotonic() - start))
        health = serving.exposition(self._health(up=True, seconds=time.monotonic() - start))
        return body.encode() + health

    def _monotonic(
        self, series: tuple[str, tuple[str, ...]], values: list[float], total: float
    ) -> float:
        """A counter that is a difference (SGLang's successes: finished minus aborted)
        dips for a moment when an abort is counted before its request finishes, and
        Prometheus reads any dip as a restart. The last value served is held unless the
        counters it is taken from went down themselves (the server restarted)."""
        added = math.fsum(v for v in values if v > 0)
        with self._lock:
            last = self._served.get(series)
            if last is not None and added >= last[0]:
                total = max(total, last[1])
            self._served[series] = (added, total)
        return total

    def _health(self, up: bool, seconds: float) -> Iterator[Metric]:
        m = catalog
        yield from self.health.families(up)
        yield GaugeMetricFamily(
            m.EXPORTER_SCRAPE_DURATION.name, m.EXPORTER_SCRAPE_DURATION.help, value=seconds
        )
        overflow = CounterMetricFamily(
            m.EXPORTER_LABEL_OVERFLOW.name, m.EXPORTER_LABEL_OVERFLOW.help, labels=["label"]
        )
        with self._lock:
            overflow.add_metric([catalog.MODEL], self._overflow)
        yield overflow


@functools.lru_cache(maxsize=65536)
def _label_text(names: tuple[str, ...], values: tuple[str, ...]) -> tuple[str, str]:
    """A series' labels as prometheus_client writes them (sorted by name, values
    escaped), split where a bucket's `le` goes: (those before it, those after it)."""
    escaped = (v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"") for v in values)
    pairs = sorted(zip(names, escaped, strict=True))
    before = ",".join(f'{n}="{v}"' for n, v in pairs if n < catalog.LE)
    after = ",".join(f'{n}="{v}"' for n, v in pairs if n > catalog.LE)
    return before, after


# A value as prometheus_client writes it; a scrape repeats many (bucket counts), so cached.
_number = functools.lru_cache(maxsize=65536)(floatToGoString)


@functools.lru_cache(maxsize=4096)
def _le_text(bound: float) -> str:
    """A bucket bound as prometheus_client writes it ("0.25", "2.0", "+Inf"), formatted once."""
    return str(floatToGoString(bound))


def main(argv: list[str] | None = None) -> int:
    called = os.path.basename(sys.argv[0])
    prog = called if called in COMMANDS else COMMANDS[0]
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target",
        required=True,
        help="the server's base or /metrics URL; user:password@ in it is sent as basic auth",
    )
    parser.add_argument(
        "--bearer-token-file", metavar="PATH", help="send the token in PATH (read each scrape)"
    )
    parser.add_argument("--backend", choices=["auto", *backends.BACKENDS], default="auto")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="ADDR:PORT")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds for the whole upstream answer (less if Prometheus' scrape timeout is less)",
    )
    parser.add_argument(
        "--max-models", type=int, default=DEFAULT_MAX_MODELS, help="cap on model label values"
    )
    parser.add_argument(
        "--max-adapters", type=int, default=DEFAULT_MAX_ADAPTERS, help="cap on LoRA adapter names"
    )
    parser.add_argument(
        "--model",
        default="default",
        help="model label for servers without one (TGI) and for vLLM's LoRA report",
    )
    parser.add_argument("--keep-engine-label", action="store_true", help="keep vLLM's engine label")
    args = parser.parse_args(argv)
    try:
        collector = SidecarCollector(
            args.target, args.backend, args.timeout, args.max_models, args.model,
            args.keep_engine_label, args.bearer_token_file, args.max_adapters, freeze_gc=True,
        )  # fmt: skip
    except (ValueError, OSError) as error:
        print(f"{parser.prog}: {error}", file=sys.stderr)
        return 2
    return serving.run(collector, args.listen, parser.prog, collector.upstream.url)


if __name__ == "__main__":
    sys.exit(main())
