"""Loading SLO files: the model built from a valid one, and one clear message per mistake."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from llm_slo_stack.cli import command as cli
from llm_slo_stack.exporters import catalog
from llm_slo_stack.slo import spec
from llm_slo_stack.slo.model import AvailabilitySLI, LatencySLI, RatioSLI
from tests.support.paths import ROOT
from tests.support.specs import VALID, generate_refused


def test_a_valid_file_becomes_the_frozen_model() -> None:
    loaded = spec.loads(VALID, "chat.yaml")
    assert loaded.service == "chat"
    assert loaded.period == 30 * 86400  # the default period
    assert dict(loaded.labels) == {"team": "inference"}
    assert dict(loaded.selector) == {"job": "vllm"}
    assert loaded.group_by == ("model",)
    availability, ttft, upstream = loaded.slos
    assert isinstance(availability.sli, AvailabilitySLI)
    assert availability.error_budget == Fraction(1, 1000)  # exact, not 0.0010000000000000009
    assert isinstance(ttft.sli, LatencySLI)
    assert ttft.sli.threshold == 2 and ttft.sli.metric is catalog.TIME_TO_FIRST_TOKEN
    assert isinstance(upstream.sli, RatioSLI)
    assert upstream.sli.numerator.render() == 'http_requests_total{status="5xx"}'
    assert [w.severity for w in upstream.alert_windows] == ["page", "page"]
    assert upstream.alerting.runbook_url == "https://wiki.example.com/5xx"
    with pytest.raises(AttributeError):
        loaded.service = "other"  # type: ignore[misc]


def test_the_default_spec_is_valid_and_its_thresholds_are_bucket_bounds() -> None:
    loaded = spec.load(ROOT / "slo" / "default.yaml")
    assert {s.name for s in loaded.slos} >= {"availability", "ttft", "itl", "e2e"}
    for slo in loaded.slos:
        if isinstance(slo.sli, LatencySLI):
            assert float(slo.sli.threshold) in catalog.PHASES[slo.sli.phase].buckets


def edit(old: str, new: str) -> str:
    assert old in VALID
    return VALID.replace(old, new, 1)


# (id, spec text, line, path, words the message must contain)
MISTAKES = [
    ("yaml-syntax", edit("group_by: [model]", "group_by: [model"), 6, "(file)", "valid YAML"),
    ("empty-file", "", None, "(top level)", "an empty file"),
    ("top-level-list", "- service: chat\n", 1, "(top level)", "a mapping"),
    ("wrong-api-version", edit("llm-slo-stack/v1", "llm-slo-stack/v2"), 1, "apiVersion", "'llm-slo-stack/v1'"),
    ("missing-service", edit("service: chat\n", ""), 1, "service", "found nothing"),
    ("bad-service-name", edit("service: chat", "service: Chat_Bot"), 2, "service", "'Chat_Bot'"),
    ("period-too-short", edit("labels:", "period: 3d\nlabels:"), 3, "period", "from 7d to 365d"),
    ("period-not-duration", edit("labels:", "period: 30\nlabels:"), 3, "period", "found 30"),
    ("unknown-field", edit("group_by:", "groupby:"), 5, "groupby", "did you mean 'group_by'?"),
    ("reserved-label", edit("{team: inference}", "{severity: high}"), 3, "labels.severity", "reserved label 'severity'"),
    ("label-value-not-string", edit("{team: inference}", "{team: 7}"), 3, "labels.team", "a string (quote it)"),
    ("bad-label-name", edit("{team: inference}", "{team-name: x}"), 3, "labels.team-name", "a label name"),
    ("selector-reserved", edit("{job: vllm}", "{le: '2'}"), 4, "selector.le", "reserved label 'le'"),
    ("group-by-not-list", edit("[model]", "model"), 5, "group_by", "a list of label names"),
    ("group-by-duplicate", edit("[model]", "[model, model]"), 5, "group_by[1]", "'model' again"),
    ("no-slos", VALID.split("slos:")[0] + "slos: []\n", 6, "slos", "a non-empty list"),
    ("duplicate-slo-name", edit("name: ttft", "name: availability"), 10, "slos[1].name", "unique"),
    ("objective-100", edit("objective: 99.9", "objective: 100"), 8, "slos[0].objective", "between 0 and 100"),
    ("objective-string", edit("objective: 99.9", "objective: '99.9%'"), 8, "slos[0].objective", "'99.9%'"),
    ("two-sli-kinds", edit("{availability: {}}", "{availability: {}, latency: {}}"), 9, "slos[0].sli", "availability and latency"),
    ("unknown-phase", edit("phase: ttft", "phase: ttfb"), 12, "slos[1].sli.latency.phase", "one of queue, prefill"),
    ("threshold-not-duration", edit("threshold: 2s", "threshold: fast"), 12, "slos[1].sli.latency.threshold", "500ms or 2s"),
    ("threshold-not-a-bound", edit("threshold: 2s", "threshold: 1.8s"), 12, "slos[1].sli.latency.threshold", "nearest: 1.5 and 2"),
    ("ratio-bad-selector", edit("'http_requests_total{status=\"5xx\"}'", "'http_requests_total{status=5xx}'"), 16, "slos[2].sli.ratio.errors", "label matchers"),
    ("ratio-bad-regex", edit("{status=\"5xx\"}", "{status=~\"5(xx\"}"), 16, "slos[2].sli.ratio.errors", "regular expression"),
    ("ratio-errors-equal-total", edit("'http_requests_total{status=\"5xx\"}'", "http_requests_total"), 16, "slos[2].sli.ratio.errors", "same selector as total"),
    ("alerting-not-bool", edit("ticket: false", "ticket: 'no'"), 17, "slos[2].alerting.ticket", "true or false"),
    ("runbook-not-url", edit("https://wiki.example.com/5xx", "wiki/5xx"), 17, "slos[2].alerting.runbook_url", "an http(s) URL"),
    ("duplicate-key", edit("    objective: 99\n", "    objective: 99\n    objective: 98\n"), 12, "slos[1].objective", "duplicate key"),
    ("page-can-never-fire", edit("objective: 99.9", "objective: 90"), 8, "slos[0].objective", "above 144%"),
    ("name-with-final-newline", edit("service: chat", 'service: "chat\\n"'), 2, "service", "'chat\\n'"),
    ("group-by-label-set-on-alert", edit("[model]", "[model, region]").replace("ticket: false,", "ticket: false, labels: {region: eu},"), 17, "slos[2].alerting.labels.region", "not also in group_by"),
    ("template-unbalanced", edit("ticket: false,", "ticket: false, annotations: {summary: '{{ .Bad'},"), 17, "slos[2].alerting.annotations.summary", "template actions are balanced"),
    ("template-stray-close", edit("{team: inference}", "{team: 'a }} b'}"), 3, "labels.team", "template actions are balanced"),
    ("source-unknown", edit("threshold: 2s}", "threshold: 2s, source: gateway}"), 12, "slos[1].sli.latency.source", "one of server, client"),
    ("source-client-phase-unseen", edit("phase: ttft, threshold: 2s}", "phase: prefill, threshold: 2s, source: client}"), 12, "slos[1].sli.latency.source", "clients see only ttft, itl, tpot, e2e"),
    ("availability-unknown-field", edit("{availability: {}}", "{availability: {view: client}}"), 9, "slos[0].sli.availability.view", "unknown field"),
    ("buckets-not-increasing", edit("slos:", "buckets: {ttft: [1, 0.5]}\nslos:"), 6, "buckets.ttft", "strictly increasing"),
    ("latency-phase-and-histogram", edit("phase: ttft,", "phase: ttft, histogram: http_seconds,"), 12, "slos[1].sli.latency", "found both"),
    ("latency-histogram-bucket-name", edit("phase: ttft,", "histogram: 'http_seconds_bucket{job=\"a\"}',"), 12, "slos[1].sli.latency.histogram", "no _bucket"),
    ("latency-histogram-with-le", edit("phase: ttft,", "histogram: 'http_seconds{le=\"1\"}',"), 12, "slos[1].sli.latency.histogram", "without le"),
    ("latency-histogram-with-source", edit("phase: ttft, threshold: 2s}", "histogram: http_seconds, threshold: 2s, source: client}"), 12, "slos[1].sli.latency.source", "no source with histogram"),
    ("goodput-without-targets", edit("{availability: {}}", "{goodput: {}}"), 9, "slos[0].sli.goodput", "a ttft or a tpot target"),
    ("goodput-bad-target", edit("{availability: {}}", "{goodput: {ttft: soon}}"), 9, "slos[0].sli.goodput.ttft", "500ms or 2s"),
    ("tenant-with-server-side-sli", edit("[model]", "[model, tenant]"), 5, "group_by", "SLO 'availability' (availability)"),
    ("alias-bomb", "".join(f"{a}: &{a} [{', '.join([f'*{b}' if b else 'x'] * 9)}]\n" for a, b in zip("abcdefghi", ["", *"abcdefgh"], strict=True)), 1, "(file)", "at most 20000 values once aliases are expanded"),
    ("recursive-alias", "a: &a [*a]\n", 1, "(file)", "a recursive alias"),
    ("nesting-too-deep", "a: " + "[" * 40 + "]" * 40 + "\n", 1, "(file)", "at most 32 levels of nesting"),
    ("nesting-past-the-parser", "a: " + "[" * 5000 + "]" * 5000 + "\n", None, "(file)", "at most 32 levels of nesting"),
    ("key-not-text", "? [a]\n: b\n", 1, "(file)", "keys that are plain text, found a sequence as a key"),
    ("file-too-big", VALID + "#" * (1 << 20), None, "(file)", "at most 1048576 characters"),
    ("include-unknown", edit("slos:", "include: [phases, gpus]\nslos:"), 6, "include[1]", "one of phases, gpu"),
    ("deploy-unknown-engine", edit("slos:", "deploy: {namespace: llm, engine: ollama, model: m}\nslos:"), 6, "deploy.engine", "one of vllm, sglang, tgi, triton"),
    ("deploy-bad-namespace", edit("slos:", "deploy: {namespace: LLM_ns, engine: vllm, model: m}\nslos:"), 6, "deploy.namespace", "a Kubernetes namespace"),
    ("deploy-image-latest", edit("slos:", "deploy: {namespace: llm, engine: vllm, model: m, image: 'vllm/vllm-openai:latest'}\nslos:"), 6, "deploy.image", "pinned by tag"),
    ("dashboard-base-not-url", edit("slos:", "dashboard_base_url: grafana.local\nslos:"), 6, "dashboard_base_url", "Grafana's URL, such as https://"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "line", "path", "words"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES]
)
def test_each_mistake_gets_one_clear_message(
    text: str, line: int | None, path: str, words: str
) -> None:
    with pytest.raises(spec.SpecError) as raised:
        spec.loads(text, "chat.yaml")
    problems = raised.value.problems
    assert len(problems) == 1, [str(p) for p in problems]
    (problem,) = problems
    assert (problem.source, problem.line, problem.path) == ("chat.yaml", line, path)
    assert words in str(problem)
    assert str(problem).startswith(
        f"chat.yaml:{line}: {path}: expected " if line else f"chat.yaml: {path}:"
    )


@pytest.mark.parametrize("text", [m[1] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_an_invalid_spec_writes_nothing(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "chat.yaml"
    path.write_text(text, encoding="utf-8")
    assert "nothing was written" in generate_refused(capsys, tmp_path / "out", path)


def test_every_problem_is_reported_at_once() -> None:
    text = edit("objective: 99.9", "objective: 101").replace("phase: ttft", "phase: ttfb")
    text = text.replace("service: chat", "service: Chat")
    with pytest.raises(spec.SpecError) as raised:
        spec.loads(text, "chat.yaml")
    assert [p.path for p in raised.value.problems] == [
        "service",
        "slos[0].objective",
        "slos[1].sli.latency.phase",
    ]


def test_a_missing_file_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(spec.SpecError) as raised:
        spec.load(tmp_path / "nope.yaml")
    assert "a readable UTF-8 file" in str(raised.value)
    assert "No such file" in str(raised.value)


def test_the_threshold_message_says_how_to_fix_it() -> None:
    with pytest.raises(spec.SpecError) as raised:
        spec.loads(edit("threshold: 2s", "threshold: 1.8s"), "chat.yaml")
    message = str(raised.value)
    assert "use 1.5 or 2 seconds" in message
    assert "--custom-histogram-buckets" in message and "buckets.ttft" in message


def test_a_bucket_override_makes_a_threshold_valid() -> None:
    text = edit("threshold: 2s", "threshold: 1.8s").replace(
        "slos:", "buckets: {ttft: [0.5, 1.8, 4]}\nslos:"
    )
    loaded = spec.loads(text, "chat.yaml")
    assert loaded.buckets_for("ttft") == (0.5, 1.8, 4.0)
    latency = loaded.slos[1].sli
    assert isinstance(latency, LatencySLI) and latency.threshold == Fraction(9, 5)


def test_the_console_script_prints_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("apiVersion: [\n", encoding="utf-8")
    run = subprocess.run(
        [str(Path(sys.executable).with_name("llm-slo")), "check", str(path)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert run.returncode == cli.EXIT_INVALID
    assert "Traceback" not in run.stderr
    assert f"{path}:2: (file): expected valid YAML" in run.stderr
