"""A lean reader of the Prometheus text format (and OpenMetrics' sample lines).

The sidecar needs only the samples it maps, from payloads of tens of thousands of
lines, within a scrape. prometheus_client's parser builds every family and object;
this one finds the name first, skips every line it does not want at the cost of a dict
lookup, and parses the labels of the rest with one `findall` (a careful, escape-aware
path takes the lines that need it). The sidecar goes further and parses a line only
the first time it sees it. prometheus_client's parser stays the oracle in tests: both
must yield the same samples (bench/exporter.py measures both).
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterator

_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"')
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
        sample = parse_line(line, wanted, number)
        if sample is not None:
            yield sample


def parse_line(line: str, wanted: Container[str], number: int = 1) -> Sample | None:
    """One line's sample if its name is in `wanted`, else None; ParseError if malformed.

    `number` is the line's number in its payload, for the error message.
    """
    if not line or line[0] == "#":
        return None
    brace = line.find("{")
    space = line.find(" ")
    end = brace if brace != -1 and (space == -1 or brace < space) else space
    name = line[:end] if end != -1 else line
    if name not in wanted:
        return None
    labels: dict[str, str] = {}
    position = end
    if end == brace:
        # Fast path: no escapes, no `}` or `=` inside a value, no timestamp: one findall,
        # whose pair count the quotes and `=` signs confirm. Anything else takes the
        # careful path below.
        close = line.find("}", brace)
        section = line[brace + 1 : close]
        if close != -1 and "\\" not in section:
            pairs = _PAIR.findall(section)
            tail = line[close + 1 :].split()
            if (
                len(tail) == 1
                and section.count('"') == 2 * len(pairs)
                and section.count("=") == len(pairs)
            ):
                return name, dict(pairs), _float(tail[0], number)
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
    return name, labels, _float(value_match.group(1), number)


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
