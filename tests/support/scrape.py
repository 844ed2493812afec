"""Reading an exporter's /metrics as {(name, labels): value}."""

from __future__ import annotations

from collections.abc import Iterable

import requests
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Series:
    return samples_of(requests.get(url, timeout=10).text)


def samples_of(text: str) -> Series:
    """A /metrics body as {(name, labels): value}."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def samples(families: Iterable[Metric]) -> Series:
    """A collector's families as the same {(name, labels): value}, no HTTP in between."""
    return {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}


def value(series: Series, name: str, **labels: str) -> float:
    return series[(name, frozenset(labels.items()))]


def names(series: Series) -> set[str]:
    return {name for name, _ in series}
