"""One example string for a label-matcher regex, for building synthetic test series."""

from __future__ import annotations

import re
from typing import Any

try:  # Python 3.11+
    from re import _parser as sre_parse  # type: ignore[attr-defined]
except ImportError:  # Python 3.10
    import sre_parse  # type: ignore[no-redef]

_CLASS_EXAMPLES = {"CATEGORY_DIGIT": "0", "CATEGORY_WORD": "a", "CATEGORY_SPACE": " "}


def example(pattern: str) -> str | None:
    """A string the whole pattern matches (PromQL anchors regexes), or None if none is found."""
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError):
        return None
    text = _emit(list(parsed))
    if text is None or re.fullmatch(pattern, text) is None:
        return None
    return text


def _emit(items: list[tuple[Any, Any]]) -> str | None:
    out: list[str] = []
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            piece = chr(arg)
        elif name == "ANY":
            piece = "x"
        elif name == "IN":
            piece = _in(arg)
        elif name == "BRANCH":
            piece = _emit(list(arg[1][0]))
        elif name == "SUBPATTERN":
            piece = _emit(list(arg[-1]))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, _, sub = arg
            one = _emit(list(sub))
            piece = None if one is None else one * low
        elif name == "AT":
            piece = ""
        else:
            return None
        if piece is None:
            return None
        out.append(piece)
    return "".join(out)


def _in(members: list[tuple[Any, Any]]) -> str | None:
    if members and str(members[0][0]) == "NEGATE":
        return None
    for op, arg in members:
        name = str(op)
        if name == "LITERAL":
            return chr(arg)
        if name == "RANGE":
            return chr(arg[0])
        if name == "CATEGORY" and str(arg) in _CLASS_EXAMPLES:
            return _CLASS_EXAMPLES[str(arg)]
    return None
