"""Durations as SLO files write them (`500ms`, `2s`, `30d`) and as PromQL ranges."""

from __future__ import annotations

import re
from fractions import Fraction

_UNITS = {
    "ms": Fraction(1, 1000), "s": Fraction(1), "m": Fraction(60), "h": Fraction(3600),
    "d": Fraction(86400), "w": Fraction(604800),
}  # fmt: skip
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")


def parse(text: str) -> Fraction | None:
    """Seconds in `text` (`250ms`, `0.2s`, `2s`, `30d`) as an exact fraction, or None."""
    match = _DURATION.match(text.strip())
    if not match:
        return None
    return Fraction(match.group(1)) * _UNITS[match.group(2)]


def promql(seconds: int) -> str:
    """A PromQL range for whole seconds, in the largest unit that divides it: `1h`, `30d`."""
    for unit in ("d", "h", "m", "s"):
        size = int(_UNITS[unit])
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise ValueError(f"not a whole number of seconds: {seconds}")


def human(exact: float | Fraction) -> str:
    """A short reading of a duration for people: `52s`, `43m`, `2d 2h`."""
    seconds = round(exact)
    if seconds < 120:
        return f"{seconds}s"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes}m"
    hours = round(seconds / 3600)
    if hours < 48:
        return f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"
