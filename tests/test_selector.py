"""Series selectors and regex examples, as the ratio SLI and the test generator use them."""

from __future__ import annotations

import re

import pytest

from llm_slo_stack.rules.regex import example
from llm_slo_stack.slo import selector
from llm_slo_stack.slo.selector import Matcher, Selector


def test_parse_and_render_round_trip() -> None:
    parsed = selector.parse(
        """ http_requests_total{status=~"5..", handler!='/health', path="a\\"b"} """
    )
    assert parsed.metric == "http_requests_total"
    assert parsed.matchers == (
        Matcher("status", "=~", "5.."),
        Matcher("handler", "!=", "/health"),
        Matcher("path", "=", 'a"b'),
    )
    assert selector.parse(parsed.render()) == parsed


def test_a_bare_metric_name_is_a_selector() -> None:
    assert selector.parse("router_requests_total") == Selector("router_requests_total")


@pytest.mark.parametrize(
    "text",
    ["{status='5xx'}", "x{status=5xx}", "x{status='5xx'", "x{a='1' b='2'}", "x{a=~'('}", "9x"],
)
def test_malformed_selectors_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        selector.parse(text)


def test_matchers_follow_promql_semantics() -> None:
    assert Matcher("code", "=~", "5..").matches("503")
    assert not Matcher("code", "=~", "5..").matches("5034")  # anchored, as PromQL's are
    assert Matcher("code", "!=", "429").matches("")  # an absent label is the empty string
    assert not Matcher("code", "!~", "4..|5..").matches("404")


@pytest.mark.parametrize(
    "pattern", ["5..", "5xx|500", "(5|4)\\d\\d", "[a-c]+-x?", "GET|POST", ".*", "a{3}b"]
)
def test_regex_examples_match_their_pattern(pattern: str) -> None:
    text = example(pattern)
    assert text is not None
    assert re.fullmatch(pattern, text)


def test_negated_classes_get_an_example_outside_the_class() -> None:
    assert example("[^2]..") == "xxx"
    assert example("[^a-z]") == "0"


def test_no_example_for_patterns_it_cannot_build() -> None:
    assert example("[^a-zA-Z0-9_-]") is None
    assert example("(") is None
    assert example("a^b") is None  # parses, but nothing matches it
