"""SLO model -> Prometheus rule groups: SLI windows, SLO metadata, burn-rate alerts, quantiles.

One group per SLO holds its recording rules and then its alerts, so each alert reads
ratios recorded in the same evaluation. Windows up to 6h are rates of the raw counters;
1d, 3d and the period average the recorded 5m rates (cheap at 30 days), and every
window's error ratio is bad rate over total rate: a ratio of sums, never a mean of ratios.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from exporters import catalog
from slo import burnrate, duration
from slo.model import SLO, AvailabilitySLI, LatencySLI, RatioSLI, Spec
from slo.selector import Matcher, Selector

Rule = dict[str, Any]
Group = dict[str, Any]

RAW_WINDOWS = (
    5 * burnrate.MINUTE,
    30 * burnrate.MINUTE,
    burnrate.HOUR,
    2 * burnrate.HOUR,
    6 * burnrate.HOUR,
)
LONG_WINDOWS = (burnrate.DAY, 3 * burnrate.DAY)
BASE_WINDOW = RAW_WINDOWS[0]
ABSENT_FOR = "10m"
DEFAULT_RUNBOOK_BASE = "rules/runbooks/"
RUNBOOK_BURN = "error-budget-burn.md"
RUNBOOK_ABSENT = "sli-data-absent.md"


def windows(spec: Spec) -> tuple[int, ...]:
    """Every window an SLI is recorded over, in seconds, shortest first."""
    return (*RAW_WINDOWS, *LONG_WINDOWS, spec.period)


def number(value: Fraction | float) -> str:
    """A number as PromQL and YAML read it back exactly: 0.0144, 14.4, 30."""
    as_float = float(value)
    return str(int(as_float)) if as_float.is_integer() else repr(as_float)


def le_spellings(bound: float) -> tuple[str, str]:
    """A bound's `le` label as Go clients write it ("2") and as prometheus_client does ("2.0")."""
    python = repr(float(bound))
    return python.removesuffix(".0"), python


def le_pattern(bound: float) -> str:
    """A regex matching the `le` label of a bound in either spelling."""
    return "|".join(form.replace(".", "\\.") for form in dict.fromkeys(le_spellings(bound)))


def rule_groups(spec: Spec) -> list[Group]:
    """The spec's rule groups, deterministic in order and content."""
    groups = [_slo_group(spec, slo) for slo in spec.slos]
    groups.append(_phase_group(spec))
    return groups


def slo_labels(spec: Spec, slo: SLO) -> dict[str, str]:
    """Labels every series and alert of one SLO carries (group labels come from the data)."""
    return {catalog.SLO: slo.name, catalog.SERVICE: spec.service, **spec.labels}


def own_series(name: str, spec: Spec, slo: SLO) -> str:
    """A selector for one SLO's recorded series."""
    return Selector(
        name, (Matcher(catalog.SERVICE, "=", spec.service), Matcher(catalog.SLO, "=", slo.name))
    ).render()


def _selected(spec: Spec, metric: str | Selector, *extra: Matcher) -> str:
    base = metric if isinstance(metric, Selector) else Selector(metric)
    spec_matchers = tuple(Matcher(k, "=", v) for k, v in spec.selector.items())
    return base.extended(*spec_matchers, *extra).render()


def _sum(spec: Spec, inner: str, *by: str) -> str:
    labels = list(dict.fromkeys((*by, *spec.group_by)))
    return f"sum by ({', '.join(labels)}) ({inner})" if labels else f"sum({inner})"


def sli_rates(spec: Spec, slo: SLO, window: int) -> tuple[str, str]:
    """PromQL for the SLI's bad and total events per second over a raw window."""
    rng = duration.promql(window)

    def rate(series: str) -> str:
        return _sum(spec, f"rate({series}[{rng}])")

    sli = slo.sli
    if isinstance(sli, AvailabilitySLI):
        total = rate(_selected(spec, catalog.REQUESTS.name))
        error = Matcher(catalog.OUTCOME, "=", catalog.OUTCOME_ERROR)
        # A counter for errors may not exist before the first error: count that as 0.
        bad = f"{rate(_selected(spec, catalog.REQUESTS.name, error))} or (0 * {total})"
    elif isinstance(sli, LatencySLI):
        total = rate(_selected(spec, sli.metric.count))
        le = Matcher(catalog.LE, "=~", le_pattern(float(sli.threshold)))
        # No `or`: a missing bucket means the server's buckets lack the threshold, and
        # the SLI must then be absent (and alert as such), not read as zero.
        bad = f"{total} - {rate(_selected(spec, sli.metric.bucket, le))}"
    elif isinstance(sli, RatioSLI):
        total = rate(_selected(spec, sli.total))
        bad = f"{rate(_selected(spec, sli.errors))} or (0 * {total})"
    else:  # pragma: no cover - the model admits no other SLI
        raise TypeError(sli)
    return bad, total


def _slo_group(spec: Spec, slo: SLO) -> Group:
    labels = slo_labels(spec, slo)
    rules: list[Rule] = []
    for window in windows(spec):
        name = duration.promql(window)
        bad_name = catalog.SLI_BAD_RATE.format(window=name)
        total_name = catalog.SLI_TOTAL_RATE.format(window=name)
        if window in RAW_WINDOWS:
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
    rules += [_burn_alert(spec, slo, window) for window in slo.alert_windows]
    rules.append(_absent_alert(spec, slo))
    return {"name": f"llm-slo:{spec.service}:{slo.name}", "rules": rules}


def _metadata(spec: Spec, slo: SLO, labels: dict[str, str]) -> list[Rule]:
    budget = number(slo.error_budget)
    ratio = catalog.SLI_ERROR_RATIO
    current = own_series(ratio.format(window=duration.promql(BASE_WINDOW)), spec, slo)
    period = own_series(ratio.format(window=duration.promql(spec.period)), spec, slo)
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


def describe(spec: Spec, slo: SLO) -> str:
    """What the SLO promises, in words: `99.9% of requests succeed over 30d`."""
    sli = slo.sli
    if isinstance(sli, AvailabilitySLI):
        what = "of requests do not fail"
    elif isinstance(sli, LatencySLI):
        # The ITL histogram observes every gap between tokens, not every request.
        events = (
            "inter-token gaps are"
            if sli.metric is catalog.INTER_TOKEN_LATENCY
            else (f"requests have {sli.phase}")
        )
        what = f"of {events} at or under {number(sli.threshold)}s"
    else:
        assert isinstance(sli, RatioSLI)
        what = f"of {sli.total.render()} are not {sli.errors.render()}"
    return f"{number(slo.objective)}% {what} over {duration.promql(spec.period)}"


def _who(spec: Spec, slo: SLO) -> str:
    groups = ", ".join(f"{{{{ $labels.{label} }}}}" for label in spec.group_by)
    return f"{spec.service}/{slo.name}" + (f" ({groups})" if groups else "")


def runbook(spec: Spec, slo: SLO, page: str) -> str:
    """The runbook link of an SLO's alerts: its own, else the stack's runbook section."""
    if slo.alerting.runbook_url:
        return slo.alerting.runbook_url
    sli = slo.sli
    anchor = (
        f"latency-{sli.phase}" if isinstance(sli, LatencySLI) else type(sli).__name__[:-3].lower()
    )
    return f"{spec.runbook_base_url or DEFAULT_RUNBOOK_BASE}{page}#{anchor}"


def _burn_alert(spec: Spec, slo: SLO, window: burnrate.AlertWindow) -> Rule:
    budget = slo.error_budget
    factor = burnrate.factor(window, spec.period)
    limit = number(burnrate.threshold(window, spec.period, budget))
    long, short = duration.promql(window.long), duration.promql(window.short)
    ratio = catalog.SLI_ERROR_RATIO
    expr = (
        f"{own_series(ratio.format(window=long), spec, slo)} > {limit}\n"
        f"and\n"
        f"{own_series(ratio.format(window=short), spec, slo)} > {limit}\n"
    )
    exhaustion = duration.human(burnrate.exhaustion_time(spec.period, factor))
    annotations = {
        "summary": f"{_who(spec, slo)}: error budget burning over {number(factor)}x too fast",
        "description": (
            f"SLO {slo.name} of {spec.service} promises that {describe(spec, slo)}. Its error "
            f"ratio has stayed above {limit} ({number(factor)}x the {number(budget)} budget) over "
            f"both the last {long} and {short}: {number(window.budget_share * 100)}% of the "
            f"budget is spent in {long}, and all of it would be gone in {exhaustion}."
        ),
        "runbook_url": runbook(spec, slo, RUNBOOK_BURN),
        **slo.alerting.annotations,
    }
    return {
        "alert": catalog.ALERT_BUDGET_BURN,
        "expr": expr,
        "labels": {
            **slo_labels(spec, slo),
            catalog.SEVERITY: window.severity,
            catalog.LONG_WINDOW: long,
            catalog.SHORT_WINDOW: short,
            **slo.alerting.labels,
        },
        "annotations": annotations,
    }


def _absent_alert(spec: Spec, slo: SLO) -> Rule:
    ratio = catalog.SLI_ERROR_RATIO.format(window=duration.promql(BASE_WINDOW))
    severity = burnrate.PAGE if slo.alerting.page else burnrate.TICKET
    return {
        "alert": catalog.ALERT_SLI_ABSENT,
        "expr": f"absent({own_series(ratio, spec, slo)})",
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
            **slo.alerting.annotations,
        },
    }


def phase_level(spec: Spec) -> str:
    """The level part of phase rule names: the labels they keep, `model` first."""
    return "_".join(dict.fromkeys((catalog.MODEL, *spec.group_by)))


def _phase_group(spec: Spec) -> Group:
    labels = {catalog.SERVICE: spec.service, **spec.labels}
    level = phase_level(spec)
    rules: list[Rule] = []
    for metric in catalog.PHASES.values():
        buckets = catalog.PHASE_BUCKET_RATE.format(level=level, metric=metric.name)
        inner = f"rate({_selected(spec, metric.bucket)}[{duration.promql(BASE_WINDOW)}])"
        rules.append(
            {
                "record": buckets,
                "expr": _sum(spec, inner, catalog.LE, catalog.MODEL),
                "labels": labels,
            }
        )
        own = Selector(buckets, (Matcher(catalog.SERVICE, "=", spec.service),)).render()
        rules += [
            {
                "record": catalog.PHASE_QUANTILE.format(level=level, metric=metric.name),
                "expr": f"histogram_quantile({q}, {own})",
                "labels": {**labels, catalog.QUANTILE: str(q)},
            }
            for q in catalog.PHASE_QUANTILES
        ]
    return {"name": f"llm-slo:{spec.service}:phases", "rules": rules}
