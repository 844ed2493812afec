"""The catalog: naming conventions, bucket sets, and that it is the only place names are typed."""

from __future__ import annotations

import ast
import itertools
import re

import pytest

from llm_slo_stack.exporters import catalog
from tests.support.paths import ROOT

ALL = (
    catalog.METRICS + catalog.EXPORTER_METRICS + catalog.GPU_METRICS + catalog.GPU_EXPORTER_METRICS
)
UNITS = {"seconds": "_seconds", "ratio": "_ratio", "bytes": "_bytes", "watts": "_watts", "hertz": "_hertz",
         "celsius": "_celsius", "joules": "_joules_total"}  # fmt: skip


@pytest.mark.parametrize("metric", ALL, ids=lambda m: m.name)
def test_names_follow_prometheus_conventions(metric: catalog.Metric) -> None:
    assert re.fullmatch(r"llm_[a-z0-9_]+", metric.name)
    assert (catalog.MODEL in metric.labels) == (metric in catalog.METRICS)
    assert (metric.labels[:3] == catalog.GPU_LABELS) == (metric in catalog.GPU_METRICS)
    if metric.unit in UNITS:
        assert metric.name.endswith(UNITS[metric.unit])
    if metric.kind == catalog.COUNTER:
        assert metric.name.endswith("_total")
    else:
        assert not metric.name.endswith("_total")
    assert metric.help.endswith(".")
    # Units go in the name, not the help text (DESIGN.md).
    assert not re.search(
        r"\bin (seconds|bytes|watts|hertz|percent|milliseconds)\b", metric.help.lower()
    )


@pytest.mark.parametrize("phase", catalog.PHASES)
def test_phase_buckets_are_increasing_bounded_and_at_most_24(phase: str) -> None:
    buckets = catalog.PHASES[phase].buckets
    assert catalog.PHASES[phase].kind == catalog.HISTOGRAM
    assert 0 < len(buckets) <= 24
    assert all(0 < a < b for a, b in itertools.pairwise(buckets))


def test_the_issue_names_are_the_contract() -> None:
    histograms = {m.name for m in catalog.PHASES.values()}
    assert histograms == {
        "llm_request_queue_seconds", "llm_request_prefill_seconds",
        "llm_time_to_first_token_seconds", "llm_inter_token_latency_seconds",
        "llm_time_per_output_token_seconds", "llm_request_decode_seconds",
        "llm_e2e_request_latency_seconds",
    }  # fmt: skip
    assert catalog.REQUESTS.labels == ("model", "outcome")
    assert catalog.OUTCOMES == ("success", "error", "aborted", "rejected", "invalid")


NAME = re.compile(r"\b(llm_(?!slo_stack\b)[a-z0-9_]+|slo:[a-z_]+:[a-z0-9_{}]+|LLM[A-Z][A-Za-z]+)\b")


UPSTREAM = {
    value
    for space in (catalog.VLLM, catalog.VLLMLegacy, catalog.TGI, catalog.Triton, catalog.DCGM)
    for key, value in vars(space).items()
    if key.isupper()
    and isinstance(value, str)
    and value.startswith(("vllm:", "tgi_", "nv_", "DCGM_"))
}


def upstream_name(text: str) -> str | None:
    return next((name for name in UPSTREAM if name in text), None)


def test_no_metric_or_alert_name_is_typed_outside_the_catalog() -> None:
    """Every .py file but the catalog: no string constant names one of our metrics, rules
    or alerts, nor a metric of a server we scrape."""
    offenders = []
    for path in sorted(ROOT.glob("**/*.py")):
        relative = path.relative_to(ROOT)
        # The catalog, and its own test that pins the public names, are exempt.
        if relative.parts[0] in (".venv", "build") or path.name in (
            "catalog.py",
            "test_catalog.py",
        ):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found = NAME.search(node.value)
                name = found.group(0) if found else upstream_name(node.value)
                if name:
                    offenders.append(f"{relative}:{node.lineno}: {name}")
    assert offenders == []


@pytest.mark.parametrize(
    "text",
    ['rate(llm_requests_total{job="x"}[5m])', "slo:sli_error:ratio_rate5m", "LLMErrorBudgetBurn"],
)
def test_the_scan_recognises_names_in_code(text: str) -> None:
    assert NAME.search(text)


def test_the_scan_skips_the_package_namespace_but_not_names_that_start_like_it() -> None:
    assert not NAME.search("from llm_slo_stack.exporters import catalog")
    assert NAME.search("llm_slo_stack_requests_total")


def test_the_scan_knows_the_upstream_names() -> None:
    assert len(UPSTREAM) > 25
    assert upstream_name("rate(vllm:time_to_first_token_seconds_bucket[5m])")
    assert upstream_name("nv_inference_queue_duration_us{model='x'}")
