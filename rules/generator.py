"""SLO model -> Prometheus rule groups: SLI windows, SLO metadata, burn-rate alerts, quantiles.

One group per SLO holds its recording rules and then its alerts, so each alert reads
ratios recorded in the same evaluation. Windows up to 6h are rates of the raw counters;
1d, 3d and the period average the recorded 5m rates (cheap at 30 days), and every
window's error ratio is bad rate over total rate: a ratio of sums, never a mean of ratios.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llm_slo_stack.exporters import catalog
from llm_slo_stack.slo import burnrate, duration
from llm_slo_stack.slo.conventions import (
    BASE_WINDOW,
    RAW_LIMIT,
    RUNBOOK_ABSENT,
    RUNBOOK_BURN,
    alert_dashboard,
    describe,
    error_ratio,
    number,
    own_series,
    phase_bucket_rate,
    phase_quantile,
    runbook,
    selected,
    sli_rates,
    slo_labels,
    sum_by,
    windows,
)
from llm_slo_stack.slo.model import PHASE_RULES, SLO, Spec
from llm_slo_stack.slo.selector import Matcher, Selector

Rule = dict[str, Any]
Group = dict[str, Any]
ABSENT_FOR = "10m"


def rule_groups(spec: Spec) -> list[Group]:
    """The spec's rule groups, deterministic in order and content."""
    groups = [_slo_group(spec, slo) for slo in spec.slos]
    if PHASE_RULES in spec.include:
        groups.append(_phase_group(spec))
    return groups


def _slo_group(spec: Spec, slo: SLO) -> Group:
    labels = slo_labels(spec, slo)
    rules: list[Rule] = []
    for window in windows(spec):
        name = duration.promql(window)
        bad_name = catalog.SLI_BAD_RATE.format(window=name)
        total_name = catalog.SLI_TOTAL_RATE.format(window=name)
        if window <= RAW_LIMIT:
            bad, total = sli_rates(spec, slo, window)
        else:
            base = duration.promql(BASE_WINDOW)
            bad, total = (
                f"avg_over_time({own_series(series.format(window=base), spec, slo)}[{name}])"
                for series in (catalog.SLI_BAD_RATE, catalog.SLI_TOTAL_RATE)
            )
        rules += [
            {"record": bad_name, "expr": bad, "labels": labels},
            {"record": total_name, "expr": total, "labels": labels},
            {
                "record": catalog.SLI_ERROR_RATIO.format(window=name),
                "expr": f"{own_series(bad_name, spec, slo)} / {own_series(total_name, spec, slo)}",
                "labels": labels,
            },
        ]
    rules += _metadata(spec, slo, labels)
    rules += _burn_alerts(spec, slo)
    rules.append(_absent_alert(spec, slo))
    return {"name": f"llm-slo:{spec.service}:{slo.name}", "rules": rules}


def _metadata(spec: Spec, slo: SLO, labels: dict[str, str]) -> list[Rule]:
    budget = number(slo.error_budget)
    current = error_ratio(spec, slo, BASE_WINDOW)
    period = error_ratio(spec, slo, spec.period)
    rules = [
        {"record": catalog.SLO_OBJECTIVE, "expr": f"vector({number(slo.objective_ratio)})"},
        {"record": catalog.SLO_ERROR_BUDGET, "expr": f"vector({budget})"},
        {"record": catalog.SLO_PERIOD_DAYS, "expr": f"vector({spec.period // burnrate.DAY})"},
        {"record": catalog.SLO_CURRENT_BURN_RATE, "expr": f"{current} / {budget}"},
        {"record": catalog.SLO_PERIOD_BURN_RATE, "expr": f"{period} / {budget}"},
        {
            "record": catalog.SLO_BUDGET_REMAINING,
            "expr": f"1 - {own_series(catalog.SLO_PERIOD_BURN_RATE, spec, slo)}",
        },
    ]
    return [{**rule, "labels": labels} for rule in rules]


def _who(spec: Spec, slo: SLO) -> str:
    groups = ", ".join(f"{{{{ $labels.{label} }}}}" for label in spec.group_by)
    return f"{spec.service}/{slo.name}" + (f" ({groups})" if groups else "")


SLO_DESCRIPTION = "slo_description"  # the annotation holding the spec's description
DASHBOARD_URL = "dashboard_url"  # the annotation linking the SLO overview's burn-rate panel
WINDOWS = "windows"  # the annotation naming the tiers a burn alert fires on
BURN_ONLY = ("summary", "description")  # annotations a spec sets for the burn alerts only


def _burn_alerts(spec: Spec, slo: SLO) -> list[Rule]:
    """One alert per severity: its tiers combined with `or`, so an outage that crosses
    both page tiers pages once (and the Alertmanager fragment holds the ticket back)."""
    severities = dict.fromkeys(w.severity for w in slo.alert_windows)
    return [
        _burn_alert(spec, slo, severity, [w for w in slo.alert_windows if w.severity == severity])
        for severity in severities
    ]


def _tier(spec: Spec, slo: SLO, window: burnrate.AlertWindow) -> str:
    limit = number(burnrate.threshold(window, spec.period, slo.error_budget))
    return (
        f"{error_ratio(spec, slo, window.long)} > {limit}\n"
        f"and\n"
        f"{error_ratio(spec, slo, window.short)} > {limit}"
    )


def tiers_text(spec: Spec, tiers: list[burnrate.AlertWindow]) -> str:
    """The windows an alert fires on, as its `windows` annotation reads."""
    return ", or ".join(
        f"{duration.promql(w.long)} and {duration.promql(w.short)} above "
        f"{number(burnrate.factor(w, spec.period))}x"
        for w in tiers
    )


def _burn_alert(spec: Spec, slo: SLO, severity: str, tiers: list[burnrate.AlertWindow]) -> Rule:
    budget = slo.error_budget
    # `or` keeps the first tier that fires: the value is its long window's error ratio.
    expr = "\nor\n".join(
        f"(\n{_tier(spec, slo, w)}\n)" if len(tiers) > 1 else _tier(spec, slo, w) for w in tiers
    )
    fastest = max(tiers, key=lambda w: burnrate.factor(w, spec.period))
    factor = burnrate.factor(fastest, spec.period)
    exhaustion = duration.human(burnrate.exhaustion_time(spec.period, factor))
    meaning = "; ".join(
        f"{number(w.budget_share * 100)}% of the budget spent in {duration.promql(w.long)}"
        for w in tiers
    )
    annotations = {
        "summary": f"{_who(spec, slo)}: error budget burning too fast ({severity})",
        "description": (
            f"SLO {slo.name} of {spec.service} promises that {describe(spec, slo)}, an error "
            f"budget of {number(budget)}. Its error ratio ({{{{ $value | humanizePercentage }}}} "
            f"over the long window) has stayed above a {severity} tier's threshold over both "
            f"of its windows ({meaning}); at {number(factor)}x all of it would be gone in "
            f"{exhaustion}."
        ),
        WINDOWS: tiers_text(spec, tiers),
        "runbook_url": runbook(spec, slo, RUNBOOK_BURN),
        DASHBOARD_URL: alert_dashboard(spec, slo),
        **_described(slo),
        **slo.alerting.annotations,
    }
    return {
        "alert": catalog.ALERT_BUDGET_BURN,
        "expr": expr + "\n",
        "labels": {**slo_labels(spec, slo), catalog.SEVERITY: severity, **slo.alerting.labels},
        "annotations": annotations,
    }


def _absent_alert(spec: Spec, slo: SLO) -> Rule:
    severity = burnrate.PAGE if slo.alerting.page else burnrate.TICKET
    return {
        "alert": catalog.ALERT_SLI_ABSENT,
        "expr": f"absent({error_ratio(spec, slo, BASE_WINDOW)})",
        "for": ABSENT_FOR,
        "labels": {**slo_labels(spec, slo), catalog.SEVERITY: severity, **slo.alerting.labels},
        "annotations": {
            "summary": f"{spec.service}/{slo.name}: no SLI data for {ABSENT_FOR}",
            "description": (
                f"The SLI of SLO {slo.name} ({describe(spec, slo)}) has had no data for "
                f"{ABSENT_FOR}, so its burn-rate alerts cannot fire. The server or its exporter "
                "is not scraped, the selector matches nothing, or (latency) the server's "
                "buckets lack the threshold."
            ),
            "runbook_url": runbook(spec, slo, RUNBOOK_ABSENT),
            DASHBOARD_URL: alert_dashboard(spec, slo),
            **_described(slo),
            # The spec's own summary and description speak of the burn: a missing SLI
            # keeps its own, the spec's other annotations apply to both.
            **{k: v for k, v in slo.alerting.annotations.items() if k not in BURN_ONLY},
        },
    }


def _described(slo: SLO) -> dict[str, str]:
    """The SLO's own description, where the spec gives one."""
    return {SLO_DESCRIPTION: slo.description} if slo.description else {}


def _phase_group(spec: Spec) -> Group:
    labels = {catalog.SERVICE: spec.service, **spec.labels}
    rules: list[Rule] = []
    for metric in catalog.PHASES.values():
        buckets = phase_bucket_rate(spec, metric)
        inner = f"rate({selected(spec, metric.bucket)}[{duration.promql(BASE_WINDOW)}])"
        rules.append(
            {
                "record": buckets,
                "expr": sum_by(spec, inner, catalog.LE, catalog.MODEL),
                "labels": labels,
            }
        )
        own = Selector(buckets, (Matcher(catalog.SERVICE, "=", spec.service),)).render()
        rules += [
            {
                "record": phase_quantile(spec, metric),
                "expr": f"histogram_quantile({q}, {own})",
                "labels": {**labels, catalog.QUANTILE: str(q)},
            }
            for q in catalog.PHASE_QUANTILES
        ]
    return {"name": f"llm-slo:{spec.service}:phases", "rules": rules}


def recorded_series(spec: Spec, bounds: Mapping[str, int] | None = None) -> int:
    """Series the spec's recording rules write per group (per model, for `group_by:
    [model]`): one per rule, and for a bucket-rate rule one per `le` value the server
    exposes (`bounds`, per phase; by default the spec's bounds and +Inf). Multiply by the
    number of groups to size Prometheus, Thanos Ruler or Mimir's ruler."""
    per_phase = {
        phase_bucket_rate(spec, metric): (bounds or {}).get(phase, len(spec.buckets_for(phase)) + 1)
        for phase, metric in catalog.PHASES.items()
    }
    return sum(
        per_phase.get(rule["record"], 1)
        for group in rule_groups(spec)
        for rule in group["rules"]
        if "record" in rule
    )
