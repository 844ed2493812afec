"""The PromQL every generator, test and bench shares: series names, selectors, windows.

One place, as in Sloth's conventions: the rule generator records a series under a name
built here, and the dashboards, the promtool tests and the benches read it back through
the same function, so none of them retypes a selector, a window or a label set. Names of
metrics come from the catalog; what is built from them (with the spec's selector, group
labels and windows) comes from here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from fractions import Fraction
from importlib import metadata

from llm_slo_stack.exporters import catalog
from llm_slo_stack.slo import burnrate, duration
from llm_slo_stack.slo.model import (
    DECODE,
    SLO,
    AvailabilitySLI,
    GoodputSLI,
    LatencySLI,
    RatioSLI,
    Spec,
)
from llm_slo_stack.slo.selector import Matcher, Selector

BASE_WINDOW = 5 * burnrate.MINUTE
# Windows up to this are rates of the raw counters; longer ones average the base
# window's recorded rate (cheap over days).
RAW_LIMIT = 6 * burnrate.HOUR
POD_JOIN = f"{catalog.NAMESPACE}, {catalog.POD}"  # GPU series meet serving series on these
# The scrape jobs of the stack's own parts where Prometheus is configured for them (the
# demo, compose/, k8s/): the sidecar's is the spec's selector's, so the rules match it.
JOB = "job"
DEFAULT_SIDECAR_JOB = "vllm"  # where the spec's selector names no job
PROXY_JOB = "llm-trace-proxy"
GPU_JOB = "llm-gpu-exporter"
DISTRIBUTION = "llm-slo-stack"
RUNBOOK_BURN = "error-budget-burn.md"
RUNBOOK_ABSENT = "sli-data-absent.md"
RUNBOOK_GPU = "gpu.md"


def windows(spec: Spec) -> tuple[int, ...]:
    """Every window an SLI is recorded over, in seconds, shortest first: the base window,
    each tier's long and short windows at the spec's period, and the period."""
    tiers = burnrate.windows(spec.period)
    every = {BASE_WINDOW, spec.period, *(w.long for w in tiers), *(w.short for w in tiers)}
    return tuple(sorted(every))


def window(seconds: int) -> str:
    """A window as PromQL writes it in a range or a series name: 5m, 1d, 30d."""
    return duration.promql(seconds)


def base_window() -> str:
    return window(BASE_WINDOW)


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


def slo_labels(spec: Spec, slo: SLO) -> dict[str, str]:
    """Labels every series and alert of one SLO carries (group labels come from the data)."""
    return {catalog.SLO: slo.name, catalog.SERVICE: spec.service, **spec.labels}


def _own(spec: Spec, slo: SLO, service: str | None) -> tuple[Matcher, ...]:
    return (
        Matcher(catalog.SERVICE, "=", spec.service if service is None else service),
        Matcher(catalog.SLO, "=", slo.name),
    )


def own_series(name: str, spec: Spec, slo: SLO, service: str | None = None, *extra: Matcher) -> str:
    """A selector for one SLO's recorded series; `service` may be a dashboard variable,
    `extra` narrows to some groups (a dashboard's chosen models)."""
    return Selector(name, (*_own(spec, slo, service), *extra)).render()


def error_ratio(
    spec: Spec, slo: SLO, seconds: int, service: str | None = None, *extra: Matcher
) -> str:
    """The SLO's recorded error ratio over a window."""
    name = catalog.SLI_ERROR_RATIO.format(window=window(seconds))
    return own_series(name, spec, slo, service, *extra)


def firing_alerts(spec: Spec, slo: SLO, service: str | None = None, *extra: Matcher) -> str:
    """The SLO's alerts that fire now, from Prometheus' ALERTS series."""
    firing = Matcher(catalog.ALERTSTATE, "=", catalog.FIRING)
    return own_series(catalog.ALERTS, spec, slo, service, firing, *extra)


def sidecar_labels(spec: Spec) -> tuple[str, dict[str, str]]:
    """The job to scrape the sidecar as, and the other target labels the spec's selector
    needs, so that every rule's selector finds its series."""
    labels = dict(spec.selector)
    return labels.pop(JOB, DEFAULT_SIDECAR_JOB), labels


def pool_job(spec: Spec, pool: str) -> str:
    """The job a pool's sidecar is scraped as: the spec's for the decode pool, whose
    series the rules read (each request once, as it is answered); a job of its own for
    the prefill pool, so that no rule adds its count of the same requests."""
    job, _ = sidecar_labels(spec)
    return job if pool == DECODE else f"{job}-{pool}"


def pool_selected(spec: Spec, pool: str, metric: str) -> str:
    """`metric` of one pool's engines, within the spec's selector."""
    labels = {**spec.selector, JOB: pool_job(spec, pool), catalog.POOL: pool}
    return Selector(metric, tuple(Matcher(k, "=", v) for k, v in labels.items())).render()


def selected(spec: Spec, metric: str | Selector, *extra: Matcher) -> str:
    """`metric` within the spec's selector, with more matchers."""
    base = metric if isinstance(metric, Selector) else Selector(metric)
    spec_matchers = tuple(Matcher(k, "=", v) for k, v in spec.selector.items())
    return base.extended(*spec_matchers, *extra).render()


def sum_by(spec: Spec, inner: str, *by: str) -> str:
    """`sum by` the given labels and the spec's group labels."""
    labels = list(dict.fromkeys((*by, *spec.group_by)))
    return f"sum by ({', '.join(labels)}) ({inner})" if labels else f"sum({inner})"


def sli_rates(spec: Spec, slo: SLO, seconds: int) -> tuple[str, str]:
    """PromQL for the SLI's bad and total events per second over a raw window."""
    rng = window(seconds)

    def rate(series: str) -> str:
        return sum_by(spec, f"rate({series}[{rng}])")

    sli = slo.sli
    if isinstance(sli, AvailabilitySLI):
        # What the server answers for: invalid requests and clients that left count on
        # neither side (exporters/README.md, "One meaning per outcome").
        counted = Matcher(catalog.OUTCOME, "=~", "|".join(catalog.AVAILABILITY_COUNTED))
        failed = Matcher(catalog.OUTCOME, "=~", "|".join(catalog.AVAILABILITY_BAD))
        total = rate(selected(spec, sli.requests.name, counted))
        # A counter for errors may not exist before the first error: count that as 0.
        bad = f"{rate(selected(spec, sli.requests.name, failed))} or (0 * {total})"
    elif isinstance(sli, LatencySLI):
        total = rate(selected(spec, sli.count))
        le = Matcher(catalog.LE, "=~", le_pattern(float(sli.threshold)))
        # No `or`: a missing bucket means the server's buckets lack the threshold, and
        # the SLI must then be absent (and alert as such), not read as zero.
        bad = f"{total} - {rate(selected(spec, sli.bucket, le))}"
    elif isinstance(sli, GoodputSLI):
        counted = Matcher(catalog.OUTCOME, "=~", "|".join(catalog.AVAILABILITY_COUNTED))
        total = rate(selected(spec, catalog.CLIENT_REQUESTS.name, counted))
        # Before the first request that met its targets there is no goodput series: 0.
        good = rate(selected(spec, catalog.REQUESTS_GOODPUT.name))
        bad = f"{total} - ({good} or (0 * {total}))"
    else:
        total = rate(selected(spec, sli.total))
        numerator = f"{rate(selected(spec, sli.numerator))} or (0 * {total})"
        # A counter not yet born counts 0 events: no errors yet, or no successes yet.
        bad = f"{total} - ({numerator})" if sli.good else numerator
    return bad, total


def phase_level(spec: Spec) -> str:
    """The level part of phase rule names: the labels they keep, `model` first."""
    return "_".join(dict.fromkeys((catalog.MODEL, *spec.group_by)))


def phase_bucket_rate(spec: Spec, metric: catalog.Metric) -> str:
    """The recorded per-bucket rate of a phase histogram."""
    return catalog.PHASE_BUCKET_RATE.format(level=phase_level(spec), metric=metric.name)


def phase_quantile(spec: Spec, metric: catalog.Metric) -> str:
    """The recorded quantiles of a phase histogram."""
    return catalog.PHASE_QUANTILE.format(level=phase_level(spec), metric=metric.name)


def describe(spec: Spec, slo: SLO) -> str:
    """What the SLO promises, in words: `99.9% of requests do not fail over 30d`."""
    sli = slo.sli
    if isinstance(sli, AvailabilitySLI):
        what = "of requests do not fail"
    elif isinstance(sli, LatencySLI):
        # The ITL histogram observes every gap between tokens, not every request.
        if sli.histogram is not None:
            events = f"observations of {sli.histogram.render()} are"
        elif sli.phase == "itl":
            events = "inter-token gaps are"
        else:
            events = f"requests have {sli.phase}"
        what = f"of {events} at or under {number(sli.threshold)}s"
    elif isinstance(sli, GoodputSLI):
        targets = [
            f"{name} at or under {number(target)}s"
            for name, target in (("TTFT", sli.ttft), ("TPOT", sli.tpot))
            if target is not None
        ]
        what = f"of requests meet their targets ({' and '.join(targets)}, as clients saw it)"
    else:
        assert isinstance(sli, RatioSLI)
        events = f"{sli.total.render()} are"
        what = f"of {events} {'' if sli.good else 'not '}{sli.numerator.render()}"
    return f"{number(slo.objective)}% {what} over {window(spec.period)}"


def default_runbook_base() -> str:
    """Where a spec without `runbook_base_url` links: the runbooks of the installed
    release in the project's repository (pyproject's Repository URL, tag v<version>),
    the text that release's alerts were written for."""
    meta = metadata.metadata(DISTRIBUTION)
    urls = dict(url.split(", ", 1) for url in meta.get_all("Project-URL") or [])
    return f"{urls['Repository']}/blob/v{meta['Version']}/rules/runbooks/"


def runbook(spec: Spec, slo: SLO, page: str) -> str:
    """The runbook link of an SLO's alerts: its own, else the stack's runbook section."""
    if slo.alerting.runbook_url:
        return slo.alerting.runbook_url
    sli = slo.sli
    if isinstance(sli, LatencySLI):
        anchor = f"latency-{sli.phase}" if sli.phase else "latency"
    else:
        anchor = type(sli).__name__[:-3].lower()
    return f"{spec.runbook_base_url or default_runbook_base()}{page}#{anchor}"


# Dashboards, by key: their UIDs, panel ids and URLs are built here, so that an alert's
# link and the panel it names come from one function.
BOARD_OVERVIEW = "slo"
BOARD_SERVING = "serving"
BOARD_GPU = "gpu"
PANEL_BURN = "burn-rate"  # the key of an SLO's burn-rate panel on its overview


def dashboard_uid(spec: Spec | None, board: str) -> str:
    """A dashboard's stable UID (Grafana allows 40 characters): per service, or shared."""
    key = board if spec is None else f"{spec.service}/{board}"
    return "llm-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def panel_id(uid: str, key: str) -> int:
    """A panel's id from its dashboard and its own key, not its position: a link to a
    panel keeps working when other panels come and go."""
    return int(hashlib.sha256(f"{uid}/{key}".encode()).hexdigest()[:6], 16) + 1


def dashboard_url(
    base: str, uid: str, variables: Mapping[str, str], panel: str | None = None
) -> str:
    """A link to a dashboard with its variables set, optionally to one panel (Grafana's
    `viewPanel`). Values are kept as given, so an alert's `{{ $labels.x }}` survives."""
    query = [f"var-{name}={value}" for name, value in variables.items()]
    if panel is not None:
        query.append(f"viewPanel=panel-{panel_id(uid, panel)}")
    return f"{base.rstrip('/')}/d/{uid}" + (f"?{'&'.join(query)}" if query else "")


def pod_panel(metric: catalog.Metric) -> str:
    """The key of the GPU dashboard's panel that shows `metric` per serving pod."""
    return f"{metric.name}/pod"


def slo_panel(slo: SLO, role: str) -> str:
    """The key of one of an SLO's panels on its overview."""
    return f"{slo.name}/{role}"


def alert_dashboard(spec: Spec, slo: SLO) -> str:
    """The SLO overview at the SLO's burn-rate panel, for the group that alerted."""
    groups = {label: f"{{{{ $labels.{label} | urlquery }}}}" for label in spec.group_by}
    return dashboard_url(
        spec.dashboard_base_url,
        dashboard_uid(spec, BOARD_OVERVIEW),
        {k: v for k, v in groups.items() if k == catalog.MODEL},
        slo_panel(slo, PANEL_BURN),
    )


# What a chat notification (Slack) of an alert says, in Alertmanager's templates: which
# SLO, then per alert its summary and the two links on-call opens first.
NOTIFICATION_TITLE = (
    "{{ .CommonLabels.alertname }}: {{ .CommonLabels.service }}/{{ .CommonLabels.slo }}"
)
NOTIFICATION_TEXT = (
    "{{ range .Alerts }}{{ .Annotations.summary }}\n{{ .Annotations.runbook_url }}\n"
    "{{ .Annotations.dashboard_url }}\n{{ end }}"
)
