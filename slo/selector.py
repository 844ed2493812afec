"""PromQL series selectors (`metric{label="value", other=~"re"}`): parse, extend, render."""

from __future__ import annotations

import re
from dataclasses import dataclass

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")

_MATCHER = re.compile(
    r"""\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\s*(,|$)"""
)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


@dataclass(frozen=True)
class Matcher:
    """One label matcher: `label op "value"`."""

    label: str
    op: str
    value: str

    def render(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.label}{self.op}"{escaped}"'

    def matches(self, value: str) -> bool:
        """Whether a series whose label has `value` ('' when absent) is selected."""
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        hit = re.fullmatch(self.value, value) is not None  # PromQL regexes are anchored
        return hit if self.op == "=~" else not hit


@dataclass(frozen=True)
class Selector:
    """A metric name with label matchers."""

    metric: str
    matchers: tuple[Matcher, ...] = ()

    def extended(self, *matchers: Matcher) -> Selector:
        return Selector(self.metric, self.matchers + tuple(matchers))

    def render(self) -> str:
        if not self.matchers:
            return self.metric
        return f"{self.metric}{{{', '.join(m.render() for m in self.matchers)}}}"


def parse(text: str) -> Selector:
    """Parse a series selector; ValueError says what is wrong with it."""
    text = text.strip()
    name, brace, rest = text.partition("{")
    name = name.strip()
    if not METRIC_NAME.match(name):
        raise ValueError("a metric name such as http_requests_total, optionally with {matchers}")
    if not brace:
        return Selector(name)
    if not rest.endswith("}"):
        raise ValueError("a selector whose label matchers end with '}'")
    body = rest[:-1]
    matchers: list[Matcher] = []
    position = 0
    while position < len(body.rstrip()):
        match = _MATCHER.match(body, position)
        if not match:
            raise ValueError(
                f'label matchers such as status="5xx" or code=~"5.." (stuck at {body[position:]!r})'
            )
        label, op, quoted, _ = match.groups()
        value = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), quoted[1:-1])
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(f"a valid regular expression for {label} ({error})") from None
        matchers.append(Matcher(label, op, value))
        position = match.end()
    return Selector(name, tuple(matchers))
