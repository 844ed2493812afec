"""OpenSLO v1 in: the specification's own examples import to exactly the SLO file they
mean, generate rules that promtool accepts and whose own tests pass, and whatever does
not map is a problem naming the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llm_slo_stack.cli import command as cli
from llm_slo_stack.rules import writer
from llm_slo_stack.slo import openslo, spec
from llm_slo_stack.slo.model import LatencySLI, RatioSLI
from tests.support.paths import FIXTURES
from tests.support.promtool import run as run_promtool

OPENSLO = FIXTURES / "openslo"
RATIO = (OPENSLO / "ratio-prometheus.yaml").read_text()


def imported(text: str, source: str = "in.yaml") -> dict[str, dict[str, object]]:
    return {name: yaml.safe_load(body) for name, body in openslo.convert(text, source).items()}


def test_the_ratio_example_imports_to_exactly_its_meaning() -> None:
    assert imported(RATIO) == {
        "web-shop": {
            "apiVersion": spec.API_VERSION,
            "service": "web-shop",
            "period": "28d",
            "slos": [
                {
                    "name": "foo-slo",
                    "description": "Requests to foo answered with a 2xx or 3xx.",
                    "objective": 98.0,
                    "sli": {
                        "ratio": {
                            "good": 'localhost_server_requests{code=~"2xx|3xx", host="*", '
                            'instance="127.0.0.1:9090"}',
                            "total": 'localhost_server_requests{code="total", host="*", '
                            'instance="127.0.0.1:9090"}',
                        }
                    },
                    # The policy's one condition has severity page: no ticket.
                    "alerting": {"page": True, "ticket": False},
                }
            ],
        }
    }


def test_the_threshold_example_is_a_latency_slo_over_its_histogram() -> None:
    (body,) = openslo.convert((OPENSLO / "threshold-histogram.yaml").read_text(), "t.yaml").values()
    loaded = spec.loads(body, "web-shop.yaml")
    assert loaded.period == 14 * 86400
    (slo,) = loaded.slos
    assert isinstance(slo.sli, LatencySLI)
    assert slo.sli.histogram is not None
    assert slo.sli.count.render() == 'search_duration_seconds_count{job="web-shop"}'
    assert float(slo.sli.threshold) == 0.5 and float(slo.objective) == 99
    assert (slo.alerting.page, slo.alerting.ticket) == (False, True)  # the condition's ticket


@pytest.mark.promtool
def test_imported_examples_generate_rules_promtool_accepts_and_their_tests_pass(
    promtool: str, tmp_path: Path
) -> None:
    for fixture in ("ratio-prometheus.yaml", "threshold-histogram.yaml"):
        (body,) = openslo.convert((OPENSLO / fixture).read_text(), fixture).values()
        loaded = spec.loads(body, fixture)
        out = tmp_path / fixture.removesuffix(".yaml")
        for name, text in writer.files(loaded).items():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text(text, encoding="utf-8")
        check = run_promtool(promtool, "check", "rules", *sorted(out.glob("*.rules.yaml")))
        assert check.returncode == 0, check.stdout + check.stderr
        tests = run_promtool(promtool, "test", "rules", *sorted((out / "tests").glob("*.yaml")))
        assert tests.returncode == 0, tests.stdout + tests.stderr


def test_the_good_ratio_counts_total_minus_good_as_bad() -> None:
    (body,) = openslo.convert(RATIO, "in.yaml").values()
    (slo,) = spec.loads(body, "web-shop.yaml").slos
    assert isinstance(slo.sli, RatioSLI) and slo.sli.good


def test_the_time_slices_example_says_everything_that_does_not_map() -> None:
    with pytest.raises(spec.SpecError) as raised:
        openslo.convert((OPENSLO / "timeslices.yaml").read_text(), "timeslices.yaml")
    lines = [str(p) for p in raised.value.problems]
    where = "timeslices.yaml:{}: SLO service-availability: spec."
    assert [line.split(" expected")[0] for line in lines] == [
        where.format(30) + "timeWindow[0].isRolling:",
        where.format(34) + "budgetingMethod:",
        where.format(35) + "objectives:",
        where.format(17) + "indicator.spec.ratioMetric.counter:",
    ]
    assert "found 'Timeslices'" in lines[1] and "found a list" in lines[2]


# (id, edit of the ratio example, the field, words of the message)
UNMAPPABLE = [
    ("calendar-window", ("      isRolling: true", "      isRolling: false"), "SLO foo-slo: spec.timeWindow[0].isRolling", "a rolling window"),
    ("month-window", ("duration: 28d", "duration: 1M"), "SLO foo-slo: spec.timeWindow[0].duration", "whole days or weeks"),
    ("ratio-timeslices", ("budgetingMethod: Occurrences", "budgetingMethod: RatioTimeslices"), "SLO foo-slo: spec.budgetingMethod", "'RatioTimeslices'"),
    ("other-source", ("        type: Prometheus\n        metricSourceRef: prometheus-datasource\n        spec:\n          query: sum(", "        type: Datadog\n        spec:\n          query: sum("), "SLI foo-error: spec.ratioMetric.good.metricSource.type", "expected Prometheus, found 'Datadog'"),
    ("a-quantile-query", ('query: localhost_server_requests{code="total"', 'query: histogram_quantile(0.9, x{code="total"'), "SLI foo-error: spec.ratioMetric.total.metricSource.spec.query", "a Prometheus series selector"),
    ("gauge-ratio", ("  ratioMetric:\n    counter: true", "  ratioMetric:\n    counter: false"), "SLI foo-error: spec.ratioMetric.counter", "found false"),
    ("sev1", ("severity: page", "severity: sev1"), "AlertPolicy AlertPolicy: spec.conditions[0].spec.severity", "page or ticket, found 'sev1'"),
    ("missing-sli", ("indicatorRef: foo-error", "indicatorRef: bar-error"), "SLO foo-slo: spec.indicatorRef", "the name of an SLI object"),
    ("bad-name", ("  name: foo-slo", "  name: Foo_SLO"), "slos[0].name", "lowercase letters"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "field", "words"), [u[1:] for u in UNMAPPABLE], ids=[u[0] for u in UNMAPPABLE]
)
def test_what_does_not_map_is_one_clear_problem(
    edit: tuple[str, str], field: str, words: str
) -> None:
    old, new = edit
    assert old in RATIO
    with pytest.raises(spec.SpecError) as raised:
        openslo.convert(RATIO.replace(old, new, 1), "in.yaml")
    (problem,) = raised.value.problems
    assert f": {field}: expected " in str(problem) and words in str(problem), str(problem)


def test_the_command_writes_one_file_per_service_or_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "specs"
    good = tmp_path / "good.yaml"
    good.write_text(RATIO)
    bad = tmp_path / "bad.yaml"
    bad.write_text(RATIO.replace("budgetingMethod: Occurrences", "budgetingMethod: Timeslices"))
    assert cli.main(["import", "openslo", str(good), str(bad), "--out-dir", str(out)]) == 1
    assert not out.exists()
    assert "nothing was written" in capsys.readouterr().err
    assert cli.main(["import", "openslo", str(good), "--out-dir", str(out)]) == 0
    written = out / "web-shop.yaml"
    assert spec.load(written).service == "web-shop"
    assert cli.main(["generate", str(written), "--rules-dir", str(tmp_path / "rules"),
                     "--dashboards-dir", str(tmp_path / "boards")]) == 0  # fmt: skip


def test_one_threshold_sli_shared_by_two_slos_takes_each_slos_own_value() -> None:
    sli = (
        "apiVersion: openslo/v1\nkind: SLI\nmetadata: {name: search}\nspec:\n"
        "  thresholdMetric:\n    metricSource:\n      type: Prometheus\n"
        "      spec: {query: 'search_seconds_bucket{job=\"shop\"}'}\n"
    )
    slo = (
        "---\napiVersion: openslo/v1\nkind: SLO\nmetadata: {{name: {name}}}\nspec:\n"
        "  service: shop\n  indicatorRef: search\n  budgetingMethod: Occurrences\n"
        "  timeWindow: [{{duration: 4w, isRolling: true}}]\n"
        "  objectives: [{{op: lte, value: {value}, target: 0.99}}]\n"
    )
    text = sli + slo.format(name="fast", value=0.5) + slo.format(name="slow", value=2)
    (service,) = imported(text).values()
    thresholds = {s["name"]: s["sli"]["latency"]["threshold"] for s in service["slos"]}  # type: ignore[attr-defined]
    assert thresholds == {"fast": 0.5, "slow": 2}
