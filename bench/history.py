"""A synthetic serving history in OpenMetrics text, for promtool to backfill.

Per model, one sample a minute of the requests counter (by outcome) and of the TTFT
histogram, as the sidecar would expose them behind the SLO file's selector: a daily cycle,
lognormal TTFT with a per-model median, and incidents (TTFT 6x slower, 5 % errors, more
rejections) a few hours long. Counters are floors of exact running sums, so they are
monotonic and every bucket is at most the next one. Seeded: the same arguments write the
same bytes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from llm_slo_stack.exporters import catalog

MINUTE = 60
DAY = 86_400
SIGMA = 0.5  # lognormal shape of TTFT
INCIDENT_SLOWDOWN = 6.0
# Outcome shares outside and inside an incident; success takes the rest.
_OUTCOMES = (catalog.OUTCOME_ERROR, catalog.OUTCOME_ABORTED, catalog.OUTCOME_REJECTED)
SHARES = {
    False: dict(zip(_OUTCOMES, (0.0005, 0.005, 0.001), strict=True)),
    True: dict(zip(_OUTCOMES, (0.05, 0.02, 0.03), strict=True)),
}


@dataclass(frozen=True)
class Model:
    name: str
    target: Mapping[str, str]  # the scrape's labels: the selector's and instance
    per_minute: float  # mean requests a minute
    median_ttft: float  # seconds, outside incidents
    incidents: tuple[tuple[int, int], ...]  # (first, last) minute index

    def in_incident(self, minute: int) -> bool:
        return any(first <= minute <= last for first, last in self.incidents)

    def load(self, minute: int) -> float:
        """Requests in one minute: a daily cycle between 0.5x and 1.5x the mean."""
        return self.per_minute * (1 + 0.5 * math.sin(2 * math.pi * minute * MINUTE / DAY))


def models(count: int, minutes: int, selector: Mapping[str, str], seed: int = 7) -> list[Model]:
    rng = random.Random(seed)
    out = []
    for index in range(count):
        incidents = []
        for _ in range(2):
            first = rng.randrange(minutes)
            incidents.append((first, min(minutes - 1, first + rng.randrange(60, 240))))
        out.append(
            Model(
                name=f"model-{index + 1:02d}",
                target={**selector, "instance": f"10.0.0.{index + 1}:8000"},
                per_minute=rng.uniform(20, 200),
                median_ttft=rng.uniform(0.15, 0.8),
                incidents=tuple(incidents),
            )
        )
    return out


def _cdf(bound: float, median: float) -> float:
    """Share of lognormal TTFTs at or below `bound`."""
    return 0.5 * (1 + math.erf((math.log(bound) - math.log(median)) / (SIGMA * math.sqrt(2))))


def _labels(model: Model, **extra: str) -> str:
    pairs = {**model.target, catalog.MODEL: model.name, **extra}
    return ",".join(f'{k}="{v}"' for k, v in pairs.items())


def _requests(model: Model, minutes: int) -> Iterator[tuple[str, list[float]]]:
    """Each outcome's counter, one value a minute."""
    outcomes = (catalog.OUTCOME_SUCCESS, *SHARES[False])
    sums = dict.fromkeys(outcomes, 0.0)
    values: dict[str, list[float]] = {o: [] for o in outcomes}
    for minute in range(minutes):
        load = model.load(minute)
        shares = SHARES[model.in_incident(minute)]
        sums[catalog.OUTCOME_SUCCESS] += load * (1 - sum(shares.values()))
        for outcome, share in shares.items():
            sums[outcome] += load * share
        for outcome in outcomes:
            values[outcome].append(math.floor(sums[outcome]))
    for outcome in outcomes:
        labels = _labels(model, **{catalog.OUTCOME: outcome})
        yield f"{catalog.REQUESTS.name}{{{labels}}}", values[outcome]


def _ttft(model: Model, minutes: int) -> Iterator[tuple[str, list[float]]]:
    """The TTFT histogram's buckets, count and sum, one value a minute."""
    metric = catalog.TIME_TO_FIRST_TOKEN
    bounds = metric.buckets
    shares = {
        slow: [_cdf(b, model.median_ttft * (INCIDENT_SLOWDOWN if slow else 1)) for b in bounds]
        for slow in (False, True)
    }
    mean = {slow: model.median_ttft * (INCIDENT_SLOWDOWN if slow else 1) * math.exp(SIGMA**2 / 2)
            for slow in (False, True)}  # fmt: skip
    sums = [0.0] * len(bounds)
    total = seconds = 0.0
    buckets: list[list[float]] = [[] for _ in bounds]
    counts: list[float] = []
    totals: list[float] = []
    for minute in range(minutes):
        load = model.load(minute)
        slow = model.in_incident(minute)
        for index, share in enumerate(shares[slow]):
            sums[index] += load * share
            buckets[index].append(math.floor(sums[index]))
        total += load
        seconds += load * mean[slow]
        counts.append(math.floor(total))
        totals.append(round(seconds, 3))
    for bound, values in zip(bounds, buckets, strict=True):
        yield f"{metric.bucket}{{{_labels(model, **{catalog.LE: repr(float(bound))})}}}", values
    yield f"{metric.bucket}{{{_labels(model, **{catalog.LE: '+Inf'})}}}", counts
    yield f"{metric.count}{{{_labels(model)}}}", counts
    yield f"{metric.sum}{{{_labels(model)}}}", totals


def write(path: Path, count: int, days: int, end: int, selector: Mapping[str, str]) -> int:
    """The history of `count` models over `days` ending at `end` (unix seconds, on a
    minute), scraped behind `selector`'s labels, into `path`; returns the samples written."""
    minutes = days * DAY // MINUTE
    start = end - (minutes - 1) * MINUTE
    stamps = [str(start + i * MINUTE) for i in range(minutes)]
    population = models(count, minutes, selector)
    samples = 0
    families = (
        (catalog.REQUESTS, "counter", _requests),
        (catalog.TIME_TO_FIRST_TOKEN, "histogram", _ttft),
    )
    with path.open("w") as out:
        for metric, kind, series in families:
            family = metric.name.removesuffix("_total")
            out.write(f"# HELP {family} {metric.help}\n# TYPE {family} {kind}\n")
            for model in population:
                for name, values in series(model, minutes):
                    samples += _write_series(out, name, values, stamps)
        out.write("# EOF\n")
    return samples


def _write_series(out: TextIO, name: str, values: list[float], stamps: list[str]) -> int:
    out.write("".join(f"{name} {v} {t}\n" for v, t in zip(values, stamps, strict=True)))
    return len(values)
