"""The lean text-format reader against prometheus_client's parser, the oracle.

On every fixture, on the simulator's real payload and on generated payloads, both must
yield the same samples for the names asked for.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from llm_slo_stack.exporters import textformat
from llm_slo_stack.simulator.metrics import VLLMMetrics

FIXTURES = Path(__file__).parent / "fixtures"


def canonical(name: str, labels: dict[str, str], value: float) -> tuple[Any, ...]:
    return name, tuple(sorted(labels.items())), "nan" if math.isnan(value) else value


def oracle(text: str) -> list[tuple[Any, ...]]:
    """prometheus_client's samples, with the names as written on the wire, sorted.

    It calls a counter sample written without `_total` by the `_total` name: undo that.
    """
    written = {
        line.split("{")[0].split(" ")[0] for line in text.split("\n") if line and line[0] != "#"
    }
    samples = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name = s.name if s.name in written else s.name.removesuffix("_total")
            samples.append(canonical(name, s.labels, s.value))
    return sorted(samples, key=repr)


def ours(text: str, wanted: set[str]) -> list[tuple[Any, ...]]:
    return sorted((canonical(*sample) for sample in textformat.samples(text, wanted)), key=repr)


def simulator_payload() -> str:
    metrics = VLLMMetrics("llama")
    for seconds in (0.004, 0.2, 1.5, 30):
        metrics.ttft.observe(seconds)
        metrics.e2e.observe(seconds * 3)
    metrics.finished("stop")
    metrics.finished("abort")
    return generate_latest(metrics.registry).decode()


PAYLOADS = {
    "tgi": (FIXTURES / "tgi.metrics").read_text(),
    "triton": (FIXTURES / "triton_core.metrics").read_text(),
    "many-models": (FIXTURES / "vllm_many_models.metrics").read_text(),
    "simulator": simulator_payload(),
}


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_same_samples_as_prometheus_client(payload: str) -> None:
    expected = oracle(payload)
    wanted = {sample[0] for sample in expected}
    assert ours(payload, wanted) == expected
    assert len(expected) > 5


def test_unwanted_lines_are_skipped_unparsed() -> None:
    text = 'wanted 1\nbroken{ this is not a sample\nwanted{a="x"} 2\n'
    assert ours(text, {"wanted"}) == sorted(
        [("wanted", (), 1.0), ("wanted", (("a", "x"),), 2.0)], key=repr
    )


@pytest.mark.parametrize(
    "line",
    ['x{a="1" 2', 'x{a="1"}', "x", "x{a=1} 2", 'x{a="1"} two', 'x{="1"} 2'],
)
def test_malformed_wanted_lines_raise(line: str) -> None:
    with pytest.raises(textformat.ParseError):
        list(textformat.samples(line + "\n", {"x"}))


def test_timestamps_escapes_and_special_values() -> None:
    text = (
        'x{path="a\\"b\\\\c\\nd",q="}{ # x"} +Inf 1700000000000\n'
        "x -Inf\n"
        "x NaN\n"
        'x{a="1",} 1e-3\n'
    )
    assert ours(text, {"x"}) == oracle(text)


NAMES = st.sampled_from(["vllm:a_total", "vllm_b", "tgi_c_bucket", "nv_d_us"])
LABEL_NAMES = st.sampled_from(["model_name", "engine", "le", "reason"])
LABEL_VALUES = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12
)
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**12), max_value=10**12).map(float),
)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@st.composite
def payloads(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(1, 20))):
        name = draw(NAMES)
        labels = draw(st.dictionaries(LABEL_NAMES, LABEL_VALUES, max_size=3))
        rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        value = draw(VALUES)
        text = (
            repr(value)
            if math.isfinite(value)
            else {math.inf: "+Inf", -math.inf: "-Inf"}.get(value, "NaN")
        )
        stamp = draw(st.sampled_from(["", " 1700000000000"]))
        lines.append(f"{name}{{{rendered}}} {text}{stamp}" if labels else f"{name} {text}{stamp}")
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None)
@given(payloads())
def test_generated_payloads_agree_with_the_oracle(payload: str) -> None:
    expected = oracle(payload)
    assert ours(payload, {s[0] for s in expected}) == expected
