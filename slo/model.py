"""The validated, frozen SLO model that the rule and dashboard generators read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from llm_slo_stack.exporters import catalog
from llm_slo_stack.slo import burnrate
from llm_slo_stack.slo.selector import Selector

SERVER = "server"  # the server's own view: the sidecar's series
CLIENT = "client"  # what clients saw: the tracing middleware's or proxy's series
SOURCES = (SERVER, CLIENT)
PHASE_RULES = "phases"  # the LLM phase quantile rules and the serving dashboard
GPU_RULES = "gpu"  # the GPU alerts and the GPU dashboard
INCLUDES = (PHASE_RULES, GPU_RULES)
# Where alerts link their dashboards: the Grafana that compose/ and `make demo` start.
DEFAULT_DASHBOARD_BASE = "http://localhost:3000"


@dataclass(frozen=True)
class AvailabilitySLI:
    """bad = requests that failed or were turned away, total = those and the successes
    (invalid and aborted count on neither side), from the server's view or the client's."""

    source: str = SERVER

    @property
    def requests(self) -> catalog.Metric:
        return catalog.CLIENT_REQUESTS if self.source == CLIENT else catalog.REQUESTS


@dataclass(frozen=True)
class LatencySLI:
    """bad = observations slower than `threshold` seconds (a bucket bound): of an LLM
    `phase` from the server's view or the client's, or of the user's own `histogram`
    (its base name and matchers; `phase` is then empty)."""

    phase: str
    threshold: Fraction
    source: str = SERVER
    histogram: Selector | None = None

    @property
    def metric(self) -> catalog.Metric:
        phases = catalog.CLIENT_PHASES if self.source == CLIENT else catalog.PHASES
        return phases[self.phase]

    @property
    def bucket(self) -> Selector:
        if self.histogram is None:
            return Selector(self.metric.bucket)
        return Selector(f"{self.histogram.metric}_bucket", self.histogram.matchers)

    @property
    def count(self) -> Selector:
        if self.histogram is None:
            return Selector(self.metric.count)
        return Selector(f"{self.histogram.metric}_count", self.histogram.matchers)


@dataclass(frozen=True)
class GoodputSLI:
    """bad = requests the gateway passed on that did not meet both their TTFT and TPOT
    targets (errors and rejections included), total = those that succeeded, failed or
    were turned away: the client's view only, where goodput is measured. The targets
    here are the ones the tracing proxy judges by (`--slo`)."""

    ttft: Fraction | None
    tpot: Fraction | None
    source: str = CLIENT


@dataclass(frozen=True)
class RatioSLI:
    """From the user's own counters: the `numerator` selector counts the bad events (or,
    with `good`, the good ones: bad = total - good), `total` all of them."""

    numerator: Selector
    total: Selector
    good: bool = False


SLI = AvailabilitySLI | LatencySLI | GoodputSLI | RatioSLI


@dataclass(frozen=True)
class Alerting:
    page: bool = True
    ticket: bool = True
    runbook_url: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SLO:
    name: str
    objective: Fraction  # percent, exact (99.9 is 999/10)
    sli: SLI
    alerting: Alerting
    description: str = ""
    period: int = burnrate.REFERENCE_PERIOD  # the spec's, in seconds: it sets the windows

    @property
    def error_budget(self) -> Fraction:
        return burnrate.error_budget(self.objective)

    @property
    def objective_ratio(self) -> Fraction:
        return self.objective / 100

    @property
    def alert_windows(self) -> tuple[burnrate.AlertWindow, ...]:
        """The tiers this SLO alerts on, given its alerting switches."""
        wanted = {burnrate.PAGE: self.alerting.page, burnrate.TICKET: self.alerting.ticket}
        return tuple(w for w in burnrate.windows(self.period) if wanted[w.severity])


ENGINES = ("vllm", "sglang", "tgi", "triton")  # what `deploy.engine` may name
PREFILL = "prefill"
DECODE = "decode"
POOLS = (PREFILL, DECODE)
POOL_ENGINES = ("vllm", "sglang")  # the engines that run prefill and decode apart
# With prefill and decode apart every request passes both pools and no server sees it
# whole: the decode pool's series (those the rules read) are true only for these phases.
# Availability and the other phases are the client's view, through the tracing proxy.
POOL_SERVER_PHASES = ("itl", "tpot", "decode")


@dataclass(frozen=True)
class Pool:
    """The prefill or the decode pool of a disaggregated deployment."""

    name: str  # PREFILL or DECODE
    replicas: int
    gpus: int  # per replica


@dataclass(frozen=True)
class Deploy:
    """Where and how the service runs on Kubernetes (`llm-slo k8s`)."""

    namespace: str
    engine: str  # one of ENGINES
    model: str  # the model the engine serves, as clients name it
    image: str = ""  # the engine's image; empty: the k8s generator's pinned default
    gpus: int = 1  # per replica
    replicas: int = 1
    # Prefill and decode as separate pools (POOLS order), or none: one pool does both.
    pools: tuple[Pool, ...] = ()
    router: str = ""  # with pools: the P/D router's URL, where the tracing proxy sends


@dataclass(frozen=True)
class Spec:
    service: str
    period: int  # seconds
    slos: tuple[SLO, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    selector: Mapping[str, str] = field(default_factory=dict)
    group_by: tuple[str, ...] = ()
    buckets: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    runbook_base_url: str = ""
    dashboard_base_url: str = DEFAULT_DASHBOARD_BASE
    source: str = ""
    include: frozenset[str] = frozenset()  # the optional rule sets asked for (INCLUDES)
    deploy: Deploy | None = None

    def buckets_for(self, phase: str) -> tuple[float, ...]:
        """The bucket bounds the server exposes for a phase: the spec's, else the catalog's."""
        return self.buckets.get(phase, catalog.PHASES[phase].buckets)
