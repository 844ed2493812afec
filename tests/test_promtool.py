"""Promtool on the default spec's rules, and proof that its generated tests can fail.

Each mutation breaks the rules the way a generator bug would; the generated promtool
tests must then fail. A test suite that passed them all would prove nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from llm_slo_stack.exporters import catalog
from llm_slo_stack.exporters.gpu import DcgmCollector
from llm_slo_stack.rules import gpu, writer
from llm_slo_stack.slo import conventions, model, spec
from llm_slo_stack.slo.model import AvailabilitySLI
from llm_slo_stack.slo.selector import Matcher, Selector
from tests.support.engines import mapped
from tests.support.paths import FIXTURES, ROOT
from tests.support.promtool import run as run_promtool
from tests.support.scrape import samples

DEFAULT = "slo/default.yaml"


@pytest.fixture
def generated(tmp_path: Path) -> Path:
    loaded = spec.loads((ROOT / DEFAULT).read_text(encoding="utf-8"), DEFAULT)
    for name, text in writer.files(loaded).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def mutate(folder: Path, old: str, new: str) -> None:
    path = folder / "chat.rules.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= 1, f"mutation target not found: {old!r}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_default_rules_pass_check_rules(generated: Path, promtool: str) -> None:
    run = run_promtool(promtool, "check", "rules", generated / "chat.rules.yaml")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS: 167 rules found" in run.stdout  # 4 SLOs x 33 + 7 phases x 5


TTFT = 'service="chat", slo="ttft"'
AVAILABILITY = 'service="chat", slo="availability"'
RATIO = catalog.SLI_ERROR_RATIO.format
COUNTED = "|".join(catalog.AVAILABILITY_COUNTED)
BAD = "|".join(catalog.AVAILABILITY_BAD)
TOTAL_5M = f'sum by (model) (rate({catalog.REQUESTS.name}{{job="vllm", outcome=~"{COUNTED}"}}[5m]))'
MUTATIONS = [
    # The 1h page tier of TTFT (99 %, threshold 0.144) at twice its factor: a total
    # outage now takes 17 minutes of the 1h window to cross it, not 9 + 2.
    ("page-threshold-doubled", f"{RATIO(window='1h')}{{{TTFT}}} > 0.144", f"{RATIO(window='1h')}{{{TTFT}}} > 0.288", "ttft.test"),
    # The 1h tier without its 5m short window stays firing long after recovery.
    ("short-window-dropped", f"and\n      {RATIO(window='5m')}{{{TTFT}}} > 0.144", f"and\n      {RATIO(window='1h')}{{{TTFT}}} > 0.144", "ttft.test"),
    # Matching only prometheus_client's le="2.0" misses Go clients' le="2".
    ("le-go-spelling-missed", 'le=~"2|2\\\\.0"', 'le=~"2\\\\.0"', "ttft.test"),
    # Without `or (0 * total)` a server that never failed has no SLI at all.
    ("missing-error-counter-not-zero", f" or (0 * {TOTAL_5M})", "", "availability.test"),
    # The absent alert waiting 20m instead of 10m.
    ("absent-too-slow", "for: 10m", "for: 20m", "availability.test"),
    # Bad requests (invalid) counted as failures: the error ratio doubles.
    ("invalid-counted-as-bad", f'outcome=~"{BAD}"', f'outcome=~"{BAD}|invalid"', "availability.soak.test"),
    # Clients that left (aborted) counted in the total: the error ratio halves.
    ("aborted-counted-in-total", f'outcome=~"{COUNTED}"', f'outcome=~"{COUNTED}|aborted"', "availability.soak.test"),
    # The lowest (3d/6h) tier at half its factor fires on a burn at 95 % of it.
    ("lowest-factor-halved", f"{RATIO(window='3d')}{{{AVAILABILITY}}} > 0.001\n", f"{RATIO(window='3d')}{{{AVAILABILITY}}} > 0.0005\n", "availability.soak.test"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "test"), [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS]
)
def test_generated_tests_catch_a_broken_rule(
    generated: Path, promtool: str, old: str, new: str, test: str
) -> None:
    test_file = generated / "tests" / f"chat.{test}.yaml"
    clean = run_promtool(promtool, "test", "rules", test_file)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    if old.endswith("\n"):  # the short window of the same tier must move with it
        mutate(
            generated,
            old.replace("ratio_rate3d", "ratio_rate6h"),
            new.replace("ratio_rate3d", "ratio_rate6h"),
        )
    mutate(generated, old, new)
    broken = run_promtool(promtool, "test", "rules", test_file)
    assert broken.returncode != 0, f"the mutation went unnoticed:\n{broken.stdout}"
    assert "FAILED" in broken.stdout + broken.stderr


def test_gpu_alerts_pass_their_tests_and_the_tests_catch_a_missing_hour(
    tmp_path: Path, promtool: str
) -> None:
    for name, text in writer.shared_files([spec.load(ROOT / DEFAULT)]).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    test_file = tmp_path / "tests" / "gpu.test.yaml"
    clean = run_promtool(promtool, "test", "rules", test_file)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    rules = tmp_path / "gpu.rules.yaml"
    # Without the hour of history, a 40-minute-old process would already count as a leak.
    rules.write_text(rules.read_text().replace(" offset 1h", " offset 5m"))
    broken = run_promtool(promtool, "test", "rules", test_file)
    assert broken.returncode != 0 and catalog.ALERT_GPU_MEMORY_LEAK in broken.stdout + broken.stderr


def dcgm_minute(code: int) -> str:
    """One GPU as dcgm-exporter (d5e5f51) shows it, its last XID code `code`."""
    labels = 'gpu="0",UUID="GPU-0",modelName="H100",Hostname="n"'
    return (
        f'{catalog.DCGM.XID}{{{labels},err_code="{code}",err_msg="x"}} {code}\n'
        f"{catalog.DCGM.GPU_UTIL}{{{labels}}} 50\n"
    )


def test_the_first_xid_pages_from_the_series_the_exporter_writes(
    tmp_path: Path, promtool: str
) -> None:
    """The GPU exporter scrapes dcgm-exporter once a minute from its start; an XID 79 at
    minute 5 is the GPU's first. Promtool is fed every XID series exactly as the
    exporter wrote them, minute by minute (absent where it wrote none): the page fires
    at minute 6. Alerting on the per-code series instead (born at 1, so increase() reads
    0) never would: the mutation proves it."""
    for name, text in writer.shared_files([spec.load(ROOT / DEFAULT)]).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    collector = DcgmCollector("http://127.0.0.1:9/")
    codes = [0] * 5 + [79] * 15
    wanted = (catalog.GPU_XID_EVENTS.name, catalog.GPU_XID_ERRORS.name)
    written: dict[tuple[str, frozenset[tuple[str, str]]], list[str]] = {}
    for minute, code in enumerate(codes):
        for key, value in samples(collector.read(dcgm_minute(code))).items():
            if key[0] in wanted:
                written.setdefault(key, ["_"] * len(codes))[minute] = f"{value:g}"
    assert {name for name, _ in written} == set(wanted)
    series = [
        {
            "series": Selector(
                name, tuple(Matcher(k, "=", v) for k, v in sorted(labels) if v)
            ).render(),
            "values": " ".join(values),
        }
        for (name, labels), values in sorted(written.items(), key=lambda item: item[0][0])
    ]
    alert = {a.name: a for a in gpu.ALERTS}[catalog.ALERT_GPU_XID]
    where = {catalog.GPU: "0", catalog.UUID: "GPU-0", catalog.GPU_NAME: "H100", "hostname": "n"}
    links = gpu.Links(conventions.default_runbook_base(), model.DEFAULT_DASHBOARD_BASE)
    test = {
        "rule_files": ["gpu.rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    gpu.expect(alert, "4m", [], links),
                    gpu.expect(alert, "6m", [where], links),
                ],
            }
        ],
    }
    test_file = tmp_path / "first-xid.test.yaml"
    test_file.write_text(yaml.safe_dump(test, sort_keys=False), encoding="utf-8")
    clean = run_promtool(promtool, "test", "rules", test_file)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    rules = tmp_path / "gpu.rules.yaml"
    rules.write_text(rules.read_text().replace(*wanted))
    broken = run_promtool(promtool, "test", "rules", test_file)
    assert broken.returncode != 0 and catalog.ALERT_GPU_XID in broken.stdout + broken.stderr


def test_a_healthy_triton_burns_no_budget(generated: Path, promtool: str) -> None:
    """Triton core's payload with no failure, through the sidecar, its success counter
    growing 100 a minute for 90 minutes: the series exactly as the exporter writes them
    (every failure reason at 0 from the first scrape) give an availability error ratio of
    0 and no burn alert."""
    healthy = re.sub(
        rf"^({catalog.Triton.FAILURE}\{{[^}}]*\}}) \d+$",
        r"\1 0",
        (FIXTURES / "triton_core.metrics").read_text(),
        flags=re.M,
    )
    requests = {
        labels: count
        for (name, labels), count in mapped(healthy).items()
        if name == catalog.REQUESTS.name
    }
    assert {dict(labels)[catalog.OUTCOME] for labels in requests} == {
        catalog.OUTCOME_SUCCESS, catalog.OUTCOME_ERROR, catalog.OUTCOME_REJECTED,
        catalog.OUTCOME_ABORTED,
    }  # fmt: skip
    loaded = spec.loads((ROOT / DEFAULT).read_text(encoding="utf-8"), DEFAULT)
    (slo,) = (s for s in loaded.slos if isinstance(s.sli, AvailabilitySLI))
    series = []
    for labels, count in sorted(requests.items(), key=lambda item: sorted(item[0])):
        step = 100 if dict(labels)[catalog.OUTCOME] == catalog.OUTCOME_SUCCESS else 0
        scraped = {**dict(labels), **loaded.selector}  # as the spec's scrape job labels it
        matchers = tuple(Matcher(k, "=", v) for k, v in sorted(scraped.items()))
        series.append(
            {
                "series": Selector(catalog.REQUESTS.name, matchers).render(),
                "values": f"{count:g}+{step}x90",
            }
        )
    ratio = catalog.SLI_ERROR_RATIO.format(window=conventions.base_window())
    models = sorted({dict(labels)[catalog.MODEL] for labels in requests})
    test = {
        "rule_files": ["chat.rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": Selector(
                            ratio,
                            (
                                Matcher(catalog.SLO, "=", slo.name),
                                Matcher(catalog.MODEL, "=", model),
                            ),
                        ).render(),
                        "eval_time": "60m",
                        "exp_samples": [
                            {
                                "labels": Selector(
                                    ratio,
                                    tuple(
                                        Matcher(k, "=", v)
                                        for k, v in sorted(
                                            {
                                                **conventions.slo_labels(loaded, slo),
                                                catalog.MODEL: model,
                                            }.items()
                                        )
                                    ),
                                ).render(),
                                "value": 0,
                            }
                        ],
                    }
                    for model in models
                ],
                "alert_rule_test": [
                    {"alertname": catalog.ALERT_BUDGET_BURN, "eval_time": t, "exp_alerts": []}
                    for t in ("10m", "60m", "90m")
                ],
            }
        ],
    }
    path = generated / "healthy-triton.test.yaml"
    path.write_text(yaml.safe_dump(test), encoding="utf-8")
    run = run_promtool(promtool, "test", "rules", path)
    assert run.returncode == 0, run.stdout + run.stderr
