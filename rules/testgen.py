"""Promtool unit tests for one SLO's generated rules, run on synthetic series.

They prove, with the spec's own objective, period and selectors: a total outage pages
once within the fastest tier's detection time (the workbook's) plus two evaluation
intervals; a steady burn just below the lowest alerting factor never alerts over four
days, while one just above does; after recovery the page holds while any page tier's
short window may still see the outage and resolves within the longest one plus two
evaluation intervals; zero traffic raises nothing; missing data raises the absent alert.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from llm_slo_stack.exporters import catalog
from llm_slo_stack.rules.regex import example
from llm_slo_stack.slo import burnrate, conventions, duration
from llm_slo_stack.slo.model import SLO, AvailabilitySLI, GoodputSLI, LatencySLI, RatioSLI, Spec
from llm_slo_stack.slo.selector import Matcher, Selector

EVAL_MINUTES = 1  # scrape interval of every test, evaluation interval of the incident tests
SOAK_EVAL_MINUTES = 5
ONSET_EVAL_MINUTES = 15  # tiers that open after hours or days: 3 days of history each
SLACK_MINUTES = 2 * EVAL_MINUTES  # "plus two evaluation intervals"
TRAFFIC = 1000  # requests per minute in every scenario
HEALTHY_MINUTES = 60  # clean traffic before each incident
SOAK_MINUTES = 4 * 24 * 60  # longer than the longest alert window (3d)
MARGIN_MINUTES = 5
GROUP_VALUE = "test"
START_ALL = 100_000  # counters start mid-life, as a real server's would
START_BAD = 1_000

BAD, GOOD, ALL = "bad", "good", "all"


class TestGenError(ValueError):
    """No synthetic series can satisfy an SLI's selectors."""


@dataclass(frozen=True)
class Segment:
    """`minutes` of constant traffic: `good` and `bad` events per minute."""

    minutes: int
    good: Fraction
    bad: Fraction


@dataclass(frozen=True)
class Series:
    """One synthetic input series and which events it counts (bad, good or all)."""

    name: str
    labels: dict[str, str]
    counts: str
    start: int

    def selector(self) -> str:
        matchers = tuple(Matcher(k, "=", v) for k, v in sorted(self.labels.items()) if v)
        return Selector(self.name, matchers).render()


def sample(name: str, labels: dict[str, str], value: float) -> dict[str, Any]:
    """An expected promtool sample with exactly these labels."""
    matchers = tuple(Matcher(k, "=", v) for k, v in sorted(labels.items()))
    return {"labels": Selector(name, matchers).render(), "value": value}


def healthy(minutes: int) -> Segment:
    return Segment(minutes, Fraction(TRAFFIC), Fraction(0))


def burning(minutes: int, ratio: Fraction) -> Segment:
    return Segment(minutes, TRAFFIC * (1 - ratio), TRAFFIC * ratio)


def idle(minutes: int) -> Segment:
    return Segment(minutes, Fraction(0), Fraction(0))


def values(start: int, segments: Sequence[Segment], counts: str) -> str:
    """Promtool's expanding notation for a counter over consecutive segments.

    The first segment's samples are t=0..m; each later one's follow on, one per minute.
    """
    parts: list[str] = []
    value = Fraction(start)
    for index, segment in enumerate(segments):
        step = {BAD: segment.bad, GOOD: segment.good, ALL: segment.good + segment.bad}[counts]
        steps = segment.minutes if index == 0 else segment.minutes - 1
        if index:
            value += step
        parts.append(f"{conventions.number(value)}+{conventions.number(step)}x{steps}")
        value += step * steps
    return " ".join(parts)


def minutes(value: Fraction | float) -> str:
    return duration.promql(int(value) * 60)


def unit_tests(spec: Spec, slo: SLO, rule_file: str) -> dict[str, dict[str, Any]]:
    """The promtool test files for one SLO, by file suffix.

    The multi-day soak has a file of its own, evaluated every SOAK_EVAL_MINUTES: a steady
    ratio gives the same verdict at any step, and minute steps over four days cost 35 s.
    """
    cases = TestCases(spec, slo)
    incidents = [
        *cases.outage(),
        *cases.recovery(),
        cases.zero_traffic(),
        *cases.never_failed(),
        *cases.absent(),
    ]
    short, long = cases.onsets()
    out = {"test": _file(rule_file, EVAL_MINUTES, incidents + short)}
    soak = cases.soak()
    if soak:
        out["soak.test"] = _file(rule_file, SOAK_EVAL_MINUTES, soak)
    if long:
        out["onset.test"] = _file(rule_file, ONSET_EVAL_MINUTES, long)
    return out


def _file(rule_file: str, every: int, tests: list[dict[str, Any]]) -> dict[str, Any]:
    return {"rule_files": [rule_file], "evaluation_interval": minutes(every), "tests": tests}


class TestCases:
    """The scenarios for one SLO, expressed in its own series and labels."""

    def __init__(self, spec: Spec, slo: SLO) -> None:
        self.spec = spec
        self.slo = slo
        self.layout = series_layout(spec, slo)
        self.group = {
            g: self.layout[0].labels[g] for g in spec.group_by if self.layout[0].labels.get(g)
        }
        self.title = f"{spec.service}/{slo.name} ({conventions.describe(spec, slo)})"

    def case(
        self,
        name: str,
        segments: Sequence[Segment],
        checks: list[dict[str, Any]],
        layout: list[Series] | None = None,
    ) -> dict[str, Any]:
        """One promtool test: the input series over `segments`, then the checks."""
        layout = self.layout if layout is None else layout
        return {
            "name": f"{self.title}: {name}",
            "interval": minutes(EVAL_MINUTES),
            "input_series": [
                {"series": s.selector(), "values": values(s.start, segments, s.counts)}
                for s in layout
            ],
            "promql_expr_test": checks,
        }

    def alerts(self, alertname: str, **labels: str) -> str:
        matchers = {
            catalog.ALERTNAME: alertname,
            catalog.SERVICE: self.spec.service,
            catalog.SLO: self.slo.name,
            **labels,
        }
        return Selector(
            catalog.ALERTS, tuple(Matcher(k, "=", v) for k, v in matchers.items())
        ).render()

    def firing(self, severity: str, at: int) -> dict[str, Any]:
        """A check that exactly one burn alert, of `severity`, fires at minute `at`, with
        all its labels: the tiers of a severity are one alert."""
        labels = {
            catalog.ALERTNAME: catalog.ALERT_BUDGET_BURN,
            catalog.ALERTSTATE: catalog.FIRING,
            **conventions.slo_labels(self.spec, self.slo),
            **self.group,
            catalog.SEVERITY: severity,
            **self.slo.alerting.labels,
        }
        return {
            "expr": self.alerts(
                catalog.ALERT_BUDGET_BURN,
                **{catalog.SEVERITY: severity, catalog.ALERTSTATE: catalog.FIRING},
            ),
            "eval_time": minutes(at),
            "exp_samples": [sample(catalog.ALERTS, labels, 1)],
        }

    def quiet(
        self, at: int, alertname: str = catalog.ALERT_BUDGET_BURN, **labels: str
    ) -> dict[str, Any]:
        return {
            "expr": self.alerts(alertname, **labels),
            "eval_time": minutes(at),
            "exp_samples": [],
        }

    def never(self, until: int) -> dict[str, Any]:
        """No burn alert was pending or firing at any evaluation up to minute `until`."""
        expr = f"count_over_time({self.alerts(catalog.ALERT_BUDGET_BURN)}[{minutes(until)}])"
        return {"expr": expr, "eval_time": minutes(until), "exp_samples": []}

    def pages(self) -> list[burnrate.AlertWindow]:
        return [w for w in self.slo.alert_windows if w.severity == burnrate.PAGE]

    def detect(self, window: burnrate.AlertWindow) -> int:
        """Whole minutes until a total outage crosses the tier (workbook: W x B x b / e)."""
        seconds = burnrate.detection_time(
            window, self.spec.period, self.slo.error_budget, Fraction(1)
        )
        return math.ceil(seconds / 60)

    def history(self, tiers: list[burnrate.AlertWindow]) -> int:
        """Minutes of clean traffic before an incident: the tiers' longest window, so that
        a slow tier, joined by `or` to a fast one, sees a full window and not a short
        history that an outage fills at once (it would mask the fast tier's timing)."""
        return max(HEALTHY_MINUTES, *(w.long // 60 for w in tiers))

    def outage(self) -> list[dict[str, Any]]:
        pages = self.pages()
        if not pages:
            return []
        start = self.history(pages)
        fastest = min(pages, key=self.detect)
        first = self.detect(fastest)
        at = start + first + SLACK_MINUTES
        checks = [
            self.quiet(start),
            self.quiet(start, catalog.ALERT_SLI_ABSENT),
            self.firing(burnrate.PAGE, at),
        ]
        name = (
            f"a total outage from minute {start} pages once by minute {at} (the "
            f"{duration.promql(fastest.long)} tier's detection {first}m + {SLACK_MINUTES} "
            "evaluation intervals)"
        )
        length = max(self.detect(w) for w in pages) + SLACK_MINUTES + MARGIN_MINUTES
        return [self.case(name, [healthy(start), burning(length, Fraction(1))], checks)]

    def soak(self) -> list[dict[str, Any]]:
        tiers = self.slo.alert_windows
        if not tiers:
            return []
        lowest = min(tiers, key=lambda w: burnrate.factor(w, self.spec.period))
        limit = burnrate.threshold(lowest, self.spec.period, self.slo.error_budget)
        below, above = limit * Fraction(95, 100), limit * Fraction(105, 100)
        factor = conventions.number(burnrate.factor(lowest, self.spec.period))
        return [
            self.case(
                f"a steady error ratio of {conventions.number(below)} (95% of the lowest factor, "
                f"{factor}x) never alerts in {minutes(SOAK_MINUTES)}",
                [burning(SOAK_MINUTES, below)],
                [self.never(SOAK_MINUTES)],
            ),
            self.case(
                f"a steady error ratio of {conventions.number(above)} (105% of the lowest factor) "
                f"opens the {lowest.severity} alert ({duration.promql(lowest.long)} tier) "
                f"within {HEALTHY_MINUTES}m",
                [burning(HEALTHY_MINUTES, above)],
                [self.firing(lowest.severity, HEALTHY_MINUTES)],
            ),
        ]

    def onsets(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Per tier, a steady burn at 1.05x its factor after a clean long window: its
        alert opens when theory says (the first tier of that severity to cross, at
        W x factor x budget / ratio), not a margin before and by a margin after. Onsets
        within RAW_LIMIT go in the minute file, the rest in a file evaluated every
        ONSET_EVAL_MINUTES (each check on an evaluation)."""
        short: list[dict[str, Any]] = []
        long: list[dict[str, Any]] = []
        period, budget = self.spec.period, self.slo.error_budget
        for window in self.slo.alert_windows:
            ratio = Fraction(105, 100) * burnrate.threshold(window, period, budget)
            if ratio >= 1:
                continue  # no steady error ratio can burn that fast
            kin = [w for w in self.slo.alert_windows if w.severity == window.severity]
            crossing = [
                burnrate.detection_time(w, period, budget, ratio)
                for w in kin
                if burnrate.threshold(w, period, budget) < ratio
            ]
            onset = math.ceil(min(crossing) / 60)
            start = self.history(kin)  # every tier of the alert sees a full window
            soaked = start + onset > conventions.RAW_LIMIT // 60
            every = ONSET_EVAL_MINUTES if soaked else EVAL_MINUTES
            # Two evaluations, and the 5m base rate that the day-long windows average.
            margin = 2 * every + conventions.BASE_WINDOW // 60
            factor = conventions.number(burnrate.factor(window, period))
            by = math.ceil((start + onset + margin) / every) * every
            checks = [self.firing(window.severity, by)]
            name = (
                f"a steady error ratio of {conventions.number(ratio)} (1.05x the "
                f"{duration.promql(window.long)} tier's {factor}x) after {minutes(start)} clean "
                f"opens the {window.severity} alert at {onset}m"
            )
            if onset > margin:
                before = (start + onset - margin) // every * every
                checks.insert(0, self.quiet(before, **{catalog.SEVERITY: window.severity}))
                name += f", not {margin}m before"
            name += f" and by {margin}m after"
            burn = burning(by - start + every, ratio)
            case = self.case(name, [healthy(start), burn], checks)
            (long if soaked else short).append(case)
        return short, long

    def recovery(self) -> list[dict[str, Any]]:
        pages = self.pages()
        if not pages:
            return []
        start = self.history(pages)
        length = max(self.detect(w) for w in pages) + SLACK_MINUTES + MARGIN_MINUTES
        end = start + length
        slowest = max(w.short for w in pages) // 60
        at = end + slowest + SLACK_MINUTES
        after = slowest + SLACK_MINUTES + MARGIN_MINUTES
        checks = [
            self.firing(burnrate.PAGE, end),
            self.quiet(at, **{catalog.SEVERITY: burnrate.PAGE}),
        ]
        name = (
            f"after an outage from minute {start} to {end} the page resolves by minute {at} "
            f"(the longest page short window, {duration.promql(slowest * 60)}, + "
            f"{SLACK_MINUTES} intervals)"
        )
        segments = [healthy(start), burning(length, Fraction(1)), healthy(after)]
        go_style = series_layout(self.spec, self.slo, go_le=True)
        return [self.case(name, segments, checks, layout=go_style)]

    def zero_traffic(self) -> dict[str, Any]:
        span = 2 * HEALTHY_MINUTES
        return self.case(
            f"{span}m without traffic raises no alert (no NaN pages, no absent alert)",
            [idle(span)],
            [self.never(span), self.quiet(span, catalog.ALERT_SLI_ABSENT)],
        )

    def never_failed(self) -> list[dict[str, Any]]:
        """A counter of bad events that does not exist yet reads as 0 errors, not as no data."""
        layout = [s for s in self.layout if s.counts != BAD]
        if len(layout) == len(self.layout):
            return []
        at = 10 + SLACK_MINUTES
        ratio = catalog.SLI_ERROR_RATIO.format(window=duration.promql(conventions.BASE_WINDOW))
        labels = {**conventions.slo_labels(self.spec, self.slo), **self.group}
        checks = [
            {
                "expr": conventions.error_ratio(self.spec, self.slo, conventions.BASE_WINDOW),
                "eval_time": minutes(at),
                "exp_samples": [sample(ratio, labels, 0)],
            },
            self.quiet(at, catalog.ALERT_SLI_ABSENT),
        ]
        name = "a server whose error counter does not exist yet has an error ratio of 0"
        return [self.case(name, [healthy(at)], checks, layout=layout)]

    def absent(self) -> list[dict[str, Any]]:
        """Missing data raises the absent alert after its `for` (10m), not before."""
        fires = 10 + SLACK_MINUTES
        labels = {
            catalog.ALERTNAME: catalog.ALERT_SLI_ABSENT,
            catalog.ALERTSTATE: catalog.FIRING,
            **conventions.slo_labels(self.spec, self.slo),
            catalog.SEVERITY: burnrate.PAGE if self.slo.alerting.page else burnrate.TICKET,
            **self.slo.alerting.labels,
        }
        checks = [
            self.quiet(
                fires - SLACK_MINUTES - 1, catalog.ALERT_SLI_ABSENT, alertstate=catalog.FIRING
            ),
            {
                "expr": self.alerts(catalog.ALERT_SLI_ABSENT),
                "eval_time": minutes(fires),
                "exp_samples": [sample(catalog.ALERTS, labels, 1)],
            },
        ]
        unrelated = [Series("up", {"job": "unrelated"}, ALL, START_ALL)]
        cases = [
            self.case(
                "no series at all raises the absent alert",
                [healthy(fires)],
                checks,
                layout=unrelated,
            )
        ]
        if isinstance(self.slo.sli, LatencySLI):
            wrong = [
                Series(
                    s.name,
                    {**s.labels, catalog.LE: "+Inf"} if catalog.LE in s.labels else s.labels,
                    s.counts,
                    s.start,
                )
                for s in self.layout
            ]
            cases.append(
                self.case(
                    "a server whose buckets lack the threshold raises the absent alert",
                    [healthy(fires)],
                    checks,
                    layout=wrong,
                )
            )
        return cases


def series_layout(spec: Spec, slo: SLO, go_le: bool = False) -> list[Series]:
    """Input series whose sums are exactly the SLI's bad and total events.

    `go_le` writes a latency bucket's bound as Go clients do (le="2") rather than as
    prometheus_client does (le="2.0"); the SLI must match both.
    """
    base = [Matcher(k, "=", v) for k, v in spec.selector.items()]
    sli = slo.sli
    if isinstance(sli, AvailabilitySLI):
        name = sli.requests.name
        bad = solve(
            name, [*base, Matcher(catalog.OUTCOME, "=", catalog.OUTCOME_ERROR)], spec.group_by
        )
        good = {**bad, catalog.OUTCOME: catalog.OUTCOME_SUCCESS}
        # Bad requests and clients that left, as many as the bad and all events: an SLI
        # that counted them would alert at twice or half the true ratio.
        invalid = {**bad, catalog.OUTCOME: catalog.OUTCOME_INVALID}
        aborted = {**bad, catalog.OUTCOME: catalog.OUTCOME_ABORTED}
        return [
            Series(name, bad, BAD, START_BAD),
            Series(name, good, GOOD, START_ALL),
            Series(name, invalid, BAD, START_BAD),
            Series(name, aborted, ALL, START_ALL),
        ]
    if isinstance(sli, LatencySLI):
        count, bucket = sli.count, sli.bucket
        labels = solve(count.metric, [*base, *count.matchers], spec.group_by)
        go, python = conventions.le_spellings(float(sli.threshold))
        le = go if go_le else python
        return [
            Series(count.metric, labels, ALL, START_ALL),
            Series(bucket.metric, {**labels, catalog.LE: le}, GOOD, START_ALL - START_BAD),
        ]
    if isinstance(sli, GoodputSLI):
        name = catalog.CLIENT_REQUESTS.name
        answered = solve(
            name, [*base, Matcher(catalog.OUTCOME, "=", catalog.OUTCOME_SUCCESS)], spec.group_by
        )
        good = {k: v for k, v in answered.items() if k != catalog.OUTCOME}
        # Requests that met their targets, among successes; bad requests and clients that
        # left, as many as all events: a total that counted them would halve the ratio.
        return [
            Series(name, answered, ALL, START_ALL),
            Series(catalog.REQUESTS_GOODPUT.name, good, GOOD, START_ALL - START_BAD),
            Series(name, {**answered, catalog.OUTCOME: catalog.OUTCOME_INVALID}, ALL, START_BAD),
            Series(name, {**answered, catalog.OUTCOME: catalog.OUTCOME_ABORTED}, ALL, START_BAD),
        ]
    assert isinstance(sli, RatioSLI)
    # The numerator's events, and the total's others: bad and good, or good and bad.
    counted, rest = (GOOD, BAD) if sli.good else (BAD, GOOD)
    start = {BAD: START_BAD, GOOD: START_ALL}
    numerator = [*sli.numerator.matchers, *base]
    total = [*sli.total.matchers, *base]
    if sli.numerator.metric != sli.total.metric or not _satisfiable(numerator + total):
        # Apart: different metrics, or one metric whose total is a series of its own
        # (OpenSLO's example: code=~"2xx|3xx" over code="total").
        some = solve(sli.numerator.metric, numerator, spec.group_by)
        fixed = {g: some[g] for g in spec.group_by}
        every = solve(sli.total.metric, total, spec.group_by, fixed=fixed)
        return [
            Series(sli.numerator.metric, some, counted, start[counted]),
            Series(sli.total.metric, every, ALL, START_ALL),
        ]
    some = solve(sli.numerator.metric, numerator + total, spec.group_by)
    fixed = {g: some[g] for g in spec.group_by}
    others = solve(
        sli.total.metric, total, spec.group_by, fixed=fixed, avoid=sli.numerator.matchers
    )
    return [
        Series(sli.numerator.metric, some, counted, start[counted]),
        Series(sli.total.metric, others, rest, start[rest]),
    ]


def solve(
    metric: str,
    required: list[Matcher],
    group_by: Iterable[str],
    fixed: dict[str, str] | None = None,
    avoid: Sequence[Matcher] = (),
) -> dict[str, str]:
    """Label values that every `required` matcher selects and (if given) some `avoid` one does not.

    An empty value stands for an absent label, as in PromQL.
    """
    group_by = tuple(group_by)
    labels = dict.fromkeys([*group_by, *(m.label for m in required), *(m.label for m in avoid)])
    chosen: dict[str, str] = {}
    for label in labels:
        options = (
            [fixed[label]]
            if fixed and label in fixed
            else _candidates(label, [*required, *avoid], group_by)
        )
        value = next((v for v in options if _fits(label, v, required)), None)
        if value is None:
            raise TestGenError(
                f"no value of label {label!r} of {metric} satisfies {_show(required)}"
            )
        chosen[label] = value
    if avoid and all(m.matches(chosen.get(m.label, "")) for m in avoid):
        for matcher in avoid:
            for value in _candidates(matcher.label, [*required, *avoid], group_by):
                if _fits(matcher.label, value, required) and not matcher.matches(value):
                    return {**chosen, matcher.label: value}
        raise TestGenError(
            f"no series of {metric} matches {_show(required)} but not {_show(avoid)}"
        )
    return chosen


def _satisfiable(matchers: list[Matcher]) -> bool:
    """Whether one series can match all of `matchers` at once."""
    try:
        solve("", matchers, ())
    except TestGenError:
        return False
    return True


def _fits(label: str, value: str, matchers: Iterable[Matcher]) -> bool:
    return all(m.matches(value) for m in matchers if m.label == label)


def _candidates(label: str, matchers: Iterable[Matcher], group_by: tuple[str, ...]) -> list[str]:
    found: list[str] = [GROUP_VALUE] if label in group_by else []
    for matcher in matchers:
        if matcher.label != label:
            continue
        if matcher.op in ("=", "!="):
            found.append(matcher.value)
        sample = example(matcher.value) if matcher.op in ("=~", "!~") else None
        if sample is not None:
            found.append(sample)
    return [*dict.fromkeys([*found, "", "other", "llm-slo-test"])]


def _show(matchers: Iterable[Matcher]) -> str:
    return "{" + ", ".join(m.render() for m in matchers) + "}"
