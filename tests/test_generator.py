"""Properties of the generated rules that hold for any spec."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

import pytest

from llm_slo_stack.exporters import catalog
from llm_slo_stack.rules import generator, gpu, writer
from llm_slo_stack.slo import burnrate, conventions, model, spec
from llm_slo_stack.slo.model import Spec
from tests.support.paths import ROOT
from tests.support.specs import VALID


@pytest.fixture(scope="module")
def loaded() -> Spec:
    return spec.loads(VALID.replace("slos:", "include: [phases]\nslos:"), "chat.yaml")


def rules_of(groups: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"] if key in rule]


def test_le_pattern_matches_both_client_spellings_and_nothing_else() -> None:
    assert conventions.le_pattern(2.0) == "2|2\\.0"
    assert conventions.le_pattern(0.25) == "0\\.25"
    pattern = conventions.le_pattern(2.0)
    assert re.fullmatch(pattern, "2") and re.fullmatch(pattern, "2.0")
    for other in ("20", "2x0", "2.00", "12"):
        assert not re.fullmatch(pattern, other)


def test_numbers_render_exactly() -> None:
    assert conventions.number(Fraction(144, 10000)) == "0.0144"
    assert conventions.number(Fraction(999, 1000)) == "0.999"
    assert conventions.number(Fraction(30)) == "30"


def test_every_window_ratio_is_a_ratio_of_sums(loaded: Spec) -> None:
    groups = generator.rule_groups(loaded)
    records = {
        (r["record"], r["labels"]["slo"]): r["expr"] for r in rules_of(groups[:-1], "record")
    }
    for slo in loaded.slos:
        for window in conventions.windows(loaded):
            name = conventions.window(window)
            bad = catalog.SLI_BAD_RATE.format(window=name)
            total = catalog.SLI_TOTAL_RATE.format(window=name)
            ratio = records[(catalog.SLI_ERROR_RATIO.format(window=name), slo.name)]
            assert ratio == (
                f"{conventions.own_series(bad, loaded, slo)} / {conventions.own_series(total, loaded, slo)}"
            )
            if window > conventions.RAW_LIMIT:
                # Long windows average the 5m rates: the ratio of the averages is the
                # ratio of sums, weighting each 5m by its traffic.
                base = catalog.SLI_BAD_RATE.format(window="5m")
                assert records[(bad, slo.name)].startswith(f"avg_over_time({base}{{")
                assert records[(bad, slo.name)].endswith(f"[{name}])")
            else:
                assert f"[{name}]))" in records[(total, slo.name)]


def test_one_alert_per_severity_fires_on_any_of_its_tiers_both_windows_above_factor(
    loaded: Spec,
) -> None:
    alerts = [
        a
        for a in rules_of(generator.rule_groups(loaded), "alert")
        if a["alert"] == catalog.ALERT_BUDGET_BURN
    ]
    for slo in loaded.slos:
        mine = [a for a in alerts if a["labels"]["slo"] == slo.name]
        severities = list(dict.fromkeys(w.severity for w in slo.alert_windows))
        assert [a["labels"]["severity"] for a in mine] == severities
        for alert in mine:
            tiers = [w for w in slo.alert_windows if w.severity == alert["labels"]["severity"]]
            branches = []
            for window in tiers:
                limit = burnrate.threshold(window, loaded.period, slo.error_budget)
                long, short = (conventions.window(w) for w in (window.long, window.short))
                branches.append(
                    [
                        f"{conventions.own_series(catalog.SLI_ERROR_RATIO.format(window=long), loaded, slo)} > {conventions.number(limit)}",
                        "and",
                        f"{conventions.own_series(catalog.SLI_ERROR_RATIO.format(window=short), loaded, slo)} > {conventions.number(limit)}",
                    ]
                )
            if len(branches) == 1:
                expected = branches[0]
            else:
                expected = []
                for branch in branches:
                    expected += [*(["or"] if expected else []), "(", *branch, ")"]
            assert alert["expr"].splitlines() == expected
            assert alert["annotations"][generator.WINDOWS] == generator.tiers_text(loaded, tiers)
            assert set(alert["annotations"]) >= {"summary", "description", "runbook_url"}


def test_default_runbook_links_name_a_shipped_runbook_and_one_of_its_headings() -> None:
    """Without `runbook_base_url`, every alert links the runbooks of this release in the
    repository (pyproject's Repository URL at tag v<version>): a file we ship, and an
    anchor GitHub makes from one of its headings."""
    base = conventions.default_runbook_base()
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+/blob/v[\w.]+/rules/runbooks/", base)
    specs = [spec.load(ROOT / "slo" / "default.yaml")] + [
        spec.load(path) for path in sorted((ROOT / "tests" / "golden").glob("*/spec.yaml"))
    ]
    groups = [g for s in specs for g in generator.rule_groups(s)]
    groups += gpu.rule_groups(gpu.Links(base, model.DEFAULT_DASHBOARD_BASE))
    links = {a["annotations"]["runbook_url"] for a in rules_of(groups, "alert")}
    own = sorted(link for link in links if link.startswith(base))
    assert len(own) >= 10
    for link in own:
        page, anchor = link.removeprefix(base).split("#")
        text = (ROOT / "rules" / "runbooks" / page).read_text()
        slugs = {
            re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in text.splitlines()
            if line.startswith("#")
        }
        assert anchor in slugs, f"{link}: no heading makes #{anchor}"


def test_upstream_5xx_pages_only_and_uses_its_own_runbook(loaded: Spec) -> None:
    alerts = [
        a
        for a in rules_of(generator.rule_groups(loaded), "alert")
        if a["labels"]["slo"] == "upstream-5xx"
    ]
    assert [a["labels"]["severity"] for a in alerts] == ["page", "page"]  # both tiers, absent
    assert {a["annotations"]["runbook_url"] for a in alerts} == {"https://wiki.example.com/5xx"}


def test_phase_quantiles_sum_buckets_by_le_before_histogram_quantile(loaded: Spec) -> None:
    phases = generator.rule_groups(loaded)[-1]["rules"]
    assert len(phases) == len(catalog.PHASES) * (1 + len(catalog.PHASE_QUANTILES))
    for metric in catalog.PHASES.values():
        bucket_rule = next(r for r in phases if r["record"] == f"model:{metric.name}_bucket:rate5m")
        assert (
            bucket_rule["expr"] == f'sum by (le, model) (rate({metric.bucket}{{job="vllm"}}[5m]))'
        )
        quantiles = [
            r for r in phases if r["record"] == f"model:{metric.name}:histogram_quantile_rate5m"
        ]
        assert [r["labels"]["quantile"] for r in quantiles] == ["0.5", "0.9", "0.95", "0.99"]
        for rule in quantiles:
            assert rule["expr"] == (
                f'histogram_quantile({rule["labels"]["quantile"]}, '
                f'model:{metric.name}_bucket:rate5m{{service="chat"}})'
            )


def test_generation_is_deterministic_byte_for_byte() -> None:
    default = spec.load(ROOT / "slo" / "default.yaml")
    first, second = writer.files(default), writer.files(spec.load(ROOT / "slo" / "default.yaml"))
    assert first == second
    for text in first.values():
        assert text.startswith("# Generated by `make` from")
        assert text.endswith("\n")


def test_the_committed_default_output_is_fresh() -> None:
    default = spec.loads((ROOT / "slo" / "default.yaml").read_text(), "slo/default.yaml")
    for name, text in writer.files(default).items():
        assert (ROOT / "rules" / "generated" / name).read_text() == text, f"stale {name}: run make"


def test_the_slo_description_is_annotated_and_a_summary_override_is_the_burns_only() -> None:
    text = VALID.replace(
        "  - name: availability\n",
        "  - name: availability\n    description: Requests the server does not fail.\n"
        "    alerting: {annotations: {summary: 'chat is failing', team_channel: '#chat'}}\n",
    )
    groups = generator.rule_groups(spec.loads(text, "chat.yaml"))
    alerts = [
        rule
        for rule in rules_of(groups, "alert")
        if rule["labels"].get(catalog.SLO) == "availability"
    ]
    burns = [a for a in alerts if a["alert"] == catalog.ALERT_BUDGET_BURN]
    (absent,) = [a for a in alerts if a["alert"] == catalog.ALERT_SLI_ABSENT]
    for alert in (*burns, absent):
        annotations = alert["annotations"]
        assert annotations[generator.SLO_DESCRIPTION] == "Requests the server does not fail."
        assert annotations["team_channel"] == "#chat"  # the spec's others apply to both
    assert all(b["annotations"]["summary"] == "chat is failing" for b in burns)
    assert "no SLI data" in absent["annotations"]["summary"]


def test_rules_load_into_thanos_ruler_and_mimir_as_they_are() -> None:
    """No rule reads what only one Prometheus holds (its ALERTS and ALERTS_FOR_STATE):
    a ruler evaluating the files against Thanos or Mimir sees the same series. Group names
    are unique per file and non-empty, as both rulers require."""
    specs = [spec.load(ROOT / "slo" / "default.yaml")] + [
        spec.load(path) for path in sorted((ROOT / "tests" / "golden").glob("*/spec.yaml"))
    ]
    for loaded in specs:
        groups = generator.rule_groups(loaded)
        names = [g["name"] for g in groups]
        assert all(names) and len(names) == len(set(names)), names
        for rule in rules_of(groups, "record") + rules_of(groups, "alert"):
            assert not re.search(r"\bALERTS(_FOR_STATE)?\b", rule["expr"]), rule
    gpu_rules = gpu.rule_groups(gpu.Links("https://r/", model.DEFAULT_DASHBOARD_BASE))
    assert all("ALERTS" not in r["expr"] for g in gpu_rules for r in g["rules"])
