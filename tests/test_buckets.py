"""Bucket math against hand-worked numbers and against Prometheus itself; the fit; the CLI."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from llm_slo_stack.cli import command as cli
from llm_slo_stack.exporters import catalog
from llm_slo_stack.exporters.catalog import VLLM
from llm_slo_stack.slo import buckets, spec
from tests.support.paths import ROOT
from tests.support.promtool import run as run_promtool

BOUNDS = [1.0, 2.0, 4.0]


@pytest.mark.parametrize(
    ("q", "counts", "expected"),
    [
        # rank 20 falls in (1, 2], which holds samples 11..30: 1 + 1 x 10/20.
        (0.5, [10, 30, 40, 40], 1.5),
        # rank 39.6 falls in (2, 4], samples 31..40: 2 + 2 x 9.6/10.
        (0.99, [10, 30, 40, 40], 3.92),
        # rank 4 falls in the first bucket, whose lower bound is 0: 1 x 4/10.
        (0.1, [10, 30, 40, 40], 0.4),
        # rank 45 lies past the last finite bound: the answer is that bound.
        (0.9, [10, 30, 40, 50], 4.0),
    ],
)
def test_estimate_hand_worked(q: float, counts: list[int], expected: float) -> None:
    assert buckets.estimate(q, BOUNDS, counts) == pytest.approx(expected)


def test_estimate_is_nan_without_samples() -> None:
    assert math.isnan(buckets.estimate(0.5, BOUNDS, [0, 0, 0, 0]))


def test_estimate_agrees_with_prometheus(tmp_path: Path, promtool: str) -> None:
    """promtool evaluates histogram_quantile on the same buckets: Prometheus' own code."""
    rng = random.Random(4)
    data = sorted(rng.lognormvariate(0, 1) for _ in range(1000))
    bounds = [0.25, 0.5, 1.0, 2.0, 3.0]  # about 5 % of the samples lie above 3: +Inf
    counts = buckets.cumulative_counts(data, bounds)
    les = [*map(repr, bounds), "+Inf"]
    quantiles = [0.1, 0.5, 0.9, 0.99]
    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f'latency_bucket{{le="{le}"}}', "values": f"{count}x2"}
                    for le, count in zip(les, counts, strict=True)
                ],
                "promql_expr_test": [
                    {
                        "expr": f"histogram_quantile({q}, latency_bucket)",
                        "eval_time": "1m",
                        "exp_samples": [
                            {"labels": "{}", "value": buckets.estimate(q, bounds, counts)}
                        ],
                    }
                    for q in quantiles
                ],
            }
        ],
    }
    path = tmp_path / "quantile.test.yaml"
    path.write_text(yaml.safe_dump(test))
    run = run_promtool(promtool, "test", "rules", path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert buckets.estimate(0.99, bounds, counts) == 3.0  # the +Inf case is among them


def test_exact_is_the_inverted_cdf() -> None:
    assert buckets.exact([1, 2, 3, 4], 0.5) == 2
    assert buckets.exact([1, 2, 3, 4], 0.51) == 3
    assert buckets.exact([1, 2, 3, 4], 0.99) == 4


def test_evaluate_reports_each_quantile_and_the_inf_share() -> None:
    data = [i / 100 for i in range(1, 101)]  # 0.01 .. 1.00, uniform
    report = buckets.evaluate(data, [0.5, 0.9])
    # p50: exact 0.5; rank 50 fills the first bucket exactly: 0 + 0.5 x 50/50.
    assert report["p50"] == {"exact": 0.5, "estimate": 0.5, "relative_error": 0.0}
    # p95: exact 0.95, but rank 95 is past 0.9 (90 samples): the answer is 0.9.
    assert report["p95"]["estimate"] == 0.9
    assert report["p95"]["relative_error"] == pytest.approx(0.05 / 0.95)
    assert report["inf_share"] == pytest.approx(0.10)


def lognormal(seed: int, n: int = 20_000) -> list[float]:
    rng = random.Random(seed)
    return [rng.lognormvariate(math.log(0.2), 0.6) for _ in range(n)]


def test_a_fitted_set_is_within_1_percent_on_a_fresh_sample() -> None:
    fitted = buckets.fit(lognormal(1), 20, include=[0.5, 2])
    assert len(fitted) <= 20
    assert {0.5, 2.0} <= set(fitted)
    assert fitted == sorted(set(fitted))
    assert buckets.worst_error(lognormal(2), fitted) < 0.01
    # The tuned default TTFT set, for comparison, is within 10 % but not 1 %.
    default_error = buckets.worst_error(lognormal(2), catalog.TIME_TO_FIRST_TOKEN.buckets)
    assert 0.01 < default_error < 0.10


def stalls(seed: int, n: int = 20_000) -> list[float]:
    """12 ms gaps and 1.3 % stalls of 150-600 ms: p99 just above the gap between them."""
    rng = random.Random(seed)
    return [
        rng.uniform(0.15, 0.6) if rng.random() < 0.013 else max(0.002, rng.gauss(0.012, 0.0012))
        for _ in range(n)
    ]


@pytest.mark.parametrize("workload", [lognormal, stalls], ids=["lognormal", "rare-stalls"])
def test_a_fitted_set_stays_within_5_percent_when_the_workload_runs_3x_slower(
    workload: Callable[[int], list[float]],
) -> None:
    """The fit spends bounds where an incident puts the quantiles: each quantile's
    tightest bracket again at 3x (a slower workload is the same shape scaled)."""
    fitted = buckets.fit(workload(1), 20)
    assert buckets.worst_error(workload(2), fitted) < 0.01
    assert buckets.worst_error([3 * x for x in workload(2)], fitted) < 0.05


def test_fit_refuses_a_budget_too_small_and_bad_includes() -> None:
    with pytest.raises(ValueError, match="at least 10"):
        buckets.fit(lognormal(1, 100), 9, include=[0.5, 2])
    with pytest.raises(ValueError, match="positive"):
        buckets.fit(lognormal(1, 100), 20, include=[-1])


def test_vllm_families_hold_every_threshold_and_the_tuned_sets() -> None:
    loaded = spec.load(ROOT / "slo" / "default.yaml")
    families = buckets.vllm_families(loaded)
    assert set(families) == set(VLLM.FAMILY_PHASES)
    assert 2.0 in families[VLLM.FAMILY_TTFT]  # the ttft SLO's threshold
    assert 0.2 in families[VLLM.FAMILY_ITL]  # itl
    assert 60.0 in families[VLLM.FAMILY_REQUEST_LATENCY]  # e2e
    assert set(catalog.REQUEST_QUEUE.buckets) <= set(families[VLLM.FAMILY_REQUEST_LATENCY])
    for bounds in families.values():
        assert bounds == sorted(set(bounds))


def test_vllm_args_includes_an_overridden_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "chat.yaml"
    path.write_text(
        "apiVersion: llm-slo-stack/v1\nservice: chat\nbuckets: {ttft: [0.5, 1.8, 4]}\n"
        "slos:\n  - name: ttft\n    objective: 99\n    sli: {latency: {phase: ttft, threshold: 1.8s}}\n"
    )
    assert cli.main(["vllm-args", str(path)]) == 0
    families = json.loads(capsys.readouterr().out)
    assert families[VLLM.FAMILY_TTFT] == [0.5, 1.8, 4.0]
    # And the simulator, like vLLM, accepts exactly this JSON.
    from llm_slo_stack.simulator.metrics import parse_custom_buckets

    assert parse_custom_buckets(json.dumps(families))[VLLM.FAMILY_TTFT] == (0.5, 1.8, 4.0)


def test_the_misaligned_threshold_error_names_vllm_args() -> None:
    text = (
        "apiVersion: llm-slo-stack/v1\nservice: chat\n"
        "slos:\n  - name: ttft\n    objective: 99\n    sli: {latency: {phase: ttft, threshold: 1.8s}}\n"
    )
    with pytest.raises(spec.SpecError) as raised:
        spec.loads(text, "chat.yaml")
    assert "llm-slo vllm-args chat.yaml" in str(raised.value)


def test_cli_fit_eval_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    samples = tmp_path / "ttft.txt"
    samples.write_text("# seconds\n" + "\n".join(map(str, lognormal(3, 5000))) + "\n")
    assert (
        cli.main(
            [
                "buckets",
                "fit",
                "--samples",
                str(samples),
                "--max-buckets",
                "16",
                "--include",
                "0.5,2s",
            ]
        )
        == 0
    )
    fitted = json.loads(capsys.readouterr().out)
    assert len(fitted) <= 16 and {0.5, 2.0} <= set(fitted)
    assert (
        cli.main(["buckets", "eval", "--samples", str(samples), "--buckets", json.dumps(fitted)])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(json.dumps(buckets.evaluate(buckets.read_samples(samples), fitted)))
    assert set(report) == {"p50", "p90", "p95", "p99", "inf_share"}
    assert cli.main(["buckets", "defaults"]) == 0
    defaults = json.loads(capsys.readouterr().out)
    assert defaults == {phase: list(m.buckets) for phase, m in catalog.PHASES.items()}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("0.1\nfast\n", ":2: expected a latency in seconds, found 'fast'"),
        ("0.1\n", "at least 2"),
        ("0.1\n-1\n", ">= 0"),
    ],
)
def test_bad_samples_are_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    samples = tmp_path / "bad.txt"
    samples.write_text(content)
    assert (
        cli.main(["buckets", "fit", "--samples", str(samples), "--max-buckets", "12"])
        == cli.EXIT_INVALID
    )
    assert message in capsys.readouterr().err


def test_bad_bucket_lists_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["buckets", "eval", "--samples", "x", "--buckets", "[2, 1]"])
    assert "increasing positive bounds" in capsys.readouterr().err
