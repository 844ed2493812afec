"""A lean reader of the Prometheus text format (and OpenMetrics' sample lines).

The sidecar needs only the samples it maps, from payloads of tens of thousands of
lines, within a scrape. prometheus_client's parser builds every family and takes
about 16 us a line here; this one finds the name first, skips every line it does not
want at the cost of a dict lookup, and parses the rest with two precompiled regexes.
prometheus_client's parser stays the oracle in tests: both must yield the same samples.
"""

from __future__ import annotations

import math
import re
from collections.abc import Container, Iterator

_LABELS = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|(?=\}))')
_VALUE = re.compile(r"\s+(\S+)(?:\s+-?[0-9.eE+-]+)?\s*(?:#.*)?$")
_ESCAPE = re.compile(r"\\(.)")
_UNESCAPE = {"n": "\n", "\\": "\\", '"': '"'}

Sample = tuple[str, dict[str, str], float]


class ParseError(ValueError):
    """A wanted line that is not a valid sample."""


def samples(text: str, wanted: Container[str]) -> Iterator[Sample]:
    """(name, labels, value) of every sample whose name is in `wanted`, in payload order."""
    for number, line in enumerate(text.split("\n"), 1):
        if not line or line[0] == "#":
            continue
        brace = line.find("{")
        space = line.find(" ")
        end = brace if brace != -1 and (space == -1 or brace < space) else space
        name = line[:end] if end != -1 else line
        if name not in wanted:
            continue
        labels: dict[str, str] = {}
        position = end
        if end == brace:
            position += 1
            while True:
                match = _LABELS.match(line, position)
                if match is None:
                    break
                key, value = match.group(1), match.group(2)
                labels[key] = _ESCAPE.sub(_unescape, value) if "\\" in value else value
                position = match.end()
            position = _skip_space(line, position)
            if position >= len(line) or line[position] != "}":
                raise ParseError(f"line {number}: malformed labels in {line[:200]!r}")
            position += 1
        value_match = _VALUE.match(line, position)
        if value_match is None:
            raise ParseError(f"line {number}: no value in {line[:200]!r}")
        yield name, labels, _float(value_match.group(1), number)


def _skip_space(line: str, position: int) -> int:
    while position < len(line) and line[position] in " \t":
        position += 1
    return position


def _unescape(match: re.Match[str]) -> str:
    char = match.group(1)
    return _UNESCAPE.get(char, "\\" + char)


def _float(text: str, number: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise ParseError(f"line {number}: {text[:50]!r} is not a number") from None


def parse_le(text: str) -> float:
    """A bucket's `le` label as a float ("+Inf" included)."""
    value = float(text)
    if math.isnan(value):
        raise ValueError("le is NaN")
    return value
