"""One example string for a label-matcher regex, for building synthetic test series."""

from __future__ import annotations

import re
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

_CLASS_EXAMPLES = {"CATEGORY_DIGIT": "0", "CATEGORY_WORD": "a", "CATEGORY_SPACE": " "}


_FILLS = "x0aZ_-"  # tried in turn for `.` and negated classes such as [^2]


def example(pattern: str) -> str | None:
    """A string the whole pattern matches (PromQL anchors regexes), or None if none is found."""
    try:
        parsed = list(sre_parse.parse(pattern))
    except (re.error, RecursionError):
        return None
    for fill in _FILLS:
        text = _emit(parsed, fill)
        if text is not None and re.fullmatch(pattern, text):
            return text
    return None


def _emit(items: list[tuple[Any, Any]], fill: str) -> str | None:
    out: list[str] = []
    for op, arg in items:
        name = str(op)
        piece: str | None
        if name == "LITERAL":
            piece = chr(arg)
        elif name == "ANY":
            piece = fill
        elif name == "NOT_LITERAL":
            piece = fill if chr(arg) != fill else None
        elif name == "IN":
            piece = _in(arg, fill)
        elif name == "BRANCH":
            piece = _emit(list(arg[1][0]), fill)
        elif name == "SUBPATTERN":
            piece = _emit(list(arg[-1]), fill)
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, _, sub = arg
            one = _emit(list(sub), fill)
            piece = None if one is None else one * low
        elif name == "AT":
            piece = ""
        else:
            return None
        if piece is None:
            return None
        out.append(piece)
    return "".join(out)


def _in(members: list[tuple[Any, Any]], fill: str) -> str | None:
    if members and str(members[0][0]) == "NEGATE":
        return fill  # example() checks that the whole string matches
    for op, arg in members:
        name = str(op)
        if name == "LITERAL":
            return chr(arg)
        if name == "RANGE":
            return chr(arg[0])
        if name == "CATEGORY" and str(arg) in _CLASS_EXAMPLES:
            return _CLASS_EXAMPLES[str(arg)]
    return None
