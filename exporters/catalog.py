"""The one place that names every metric, label and bucket set this stack emits.

Exporters, the tracing middleware, the rule generator, the dashboards and the tests
import names from here; nobody else writes a metric name as a string literal. The
names are a public contract: users' own queries and dashboards depend on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"

# Label names.
MODEL = "model"
OUTCOME = "outcome"
LE = "le"
QUANTILE = "quantile"
SLO = "slo"
SERVICE = "service"
SEVERITY = "severity"
LONG_WINDOW = "long_window"
SHORT_WINDOW = "short_window"
ALERTNAME = "alertname"
ALERTSTATE = "alertstate"

# Values of `outcome` on llm_requests_total.
OUTCOME_SUCCESS = "success"
OUTCOME_ERROR = "error"  # the server failed the request
OUTCOME_ABORTED = "aborted"  # the client went away
OUTCOME_REJECTED = "rejected"  # admission control or overload
OUTCOMES = (OUTCOME_SUCCESS, OUTCOME_ERROR, OUTCOME_ABORTED, OUTCOME_REJECTED)


@dataclass(frozen=True)
class Metric:
    """A metric family: its name, type, base unit, help text, labels and buckets."""

    name: str
    kind: str
    unit: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()

    @property
    def bucket(self) -> str:
        """The `_bucket` series of a histogram."""
        return f"{self.name}_bucket"

    @property
    def count(self) -> str:
        """The `_count` series of a histogram."""
        return f"{self.name}_count"

    @property
    def sum(self) -> str:
        """The `_sum` series of a histogram."""
        return f"{self.name}_sum"


# Bucket sets for the latency phases. Each is at most 24 bounds, covers the range an
# LLM server really sees in that phase (from cached-prompt TTFTs of a few ms to
# multi-minute batch jobs) and includes the industry targets of
# ../shared/reference/slo-and-tracing.md as bounds (TTFT 0.45, 0.5, 1.5, 2 s; TPOT
# 0.015 to 0.2 s) so that SLOs on those targets are exact.
QUEUE_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0,
    10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
PREFILL_BUCKETS = (
    0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0,
    1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 40.0,
)  # fmt: skip
TTFT_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.45, 0.5, 0.75, 1.0, 1.5,
    2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.075, 0.08, 0.1,
    0.125, 0.15, 0.175, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
)  # fmt: skip
DECODE_BUCKETS = (
    0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
    90.0, 120.0, 180.0, 300.0, 600.0,
)  # fmt: skip
E2E_BUCKETS = (
    0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
    90.0, 120.0, 180.0, 300.0, 600.0, 1200.0,
)  # fmt: skip

REQUEST_QUEUE = Metric(
    "llm_request_queue_seconds", HISTOGRAM, "seconds",
    "Time a request waited in the server's queue before it was scheduled.",
    (MODEL,), QUEUE_BUCKETS,
)  # fmt: skip
REQUEST_PREFILL = Metric(
    "llm_request_prefill_seconds", HISTOGRAM, "seconds",
    "Time the engine spent on a request's prefill (prompt processing).",
    (MODEL,), PREFILL_BUCKETS,
)  # fmt: skip
TIME_TO_FIRST_TOKEN = Metric(
    "llm_time_to_first_token_seconds", HISTOGRAM, "seconds",
    "Time from a request's arrival to its first output token (queue + prefill).",
    (MODEL,), TTFT_BUCKETS,
)  # fmt: skip
INTER_TOKEN_LATENCY = Metric(
    "llm_inter_token_latency_seconds", HISTOGRAM, "seconds",
    "Gap between consecutive output tokens (or chunks) of a request.",
    (MODEL,), ITL_BUCKETS,
)  # fmt: skip
TIME_PER_OUTPUT_TOKEN = Metric(
    "llm_time_per_output_token_seconds", HISTOGRAM, "seconds",
    "Per request, decode time divided by output tokens after the first.",
    (MODEL,), ITL_BUCKETS,
)  # fmt: skip
REQUEST_DECODE = Metric(
    "llm_request_decode_seconds", HISTOGRAM, "seconds",
    "Time from a request's first output token to its last.",
    (MODEL,), DECODE_BUCKETS,
)  # fmt: skip
E2E_REQUEST_LATENCY = Metric(
    "llm_e2e_request_latency_seconds", HISTOGRAM, "seconds",
    "Time from a request's arrival to its last output token.",
    (MODEL,), E2E_BUCKETS,
)  # fmt: skip

REQUESTS = Metric(
    "llm_requests_total", COUNTER, "requests",
    "Finished requests by outcome: success, error (server failed), aborted (client "
    "went away), rejected (admission or overload).",
    (MODEL, OUTCOME),
)  # fmt: skip
PROMPT_TOKENS = Metric(
    "llm_prompt_tokens_total", COUNTER, "tokens", "Prompt tokens processed.", (MODEL,)
)
GENERATION_TOKENS = Metric(
    "llm_generation_tokens_total", COUNTER, "tokens", "Output tokens generated.", (MODEL,)
)
PREEMPTIONS = Metric(
    "llm_preemptions_total", COUNTER, "preemptions",
    "Requests preempted by the scheduler (KV cache full), to be recomputed later.",
    (MODEL,),
)  # fmt: skip

REQUESTS_RUNNING = Metric(
    "llm_requests_running", GAUGE, "requests", "Requests in the running batch.", (MODEL,)
)
REQUESTS_WAITING = Metric(
    "llm_requests_waiting", GAUGE, "requests", "Requests waiting to be scheduled.", (MODEL,)
)
KV_CACHE_USAGE = Metric(
    "llm_kv_cache_usage_ratio", GAUGE, "ratio",
    "Fraction of the KV cache in use, 0 to 1.", (MODEL,),
)  # fmt: skip

# The latency phases, by the names SLO files use for them.
PHASES: MappingProxyType[str, Metric] = MappingProxyType(
    {
        "queue": REQUEST_QUEUE,
        "prefill": REQUEST_PREFILL,
        "ttft": TIME_TO_FIRST_TOKEN,
        "itl": INTER_TOKEN_LATENCY,
        "tpot": TIME_PER_OUTPUT_TOKEN,
        "decode": REQUEST_DECODE,
        "e2e": E2E_REQUEST_LATENCY,
    }
)

METRICS: tuple[Metric, ...] = (
    *PHASES.values(),
    REQUESTS,
    PROMPT_TOKENS,
    GENERATION_TOKENS,
    PREEMPTIONS,
    REQUESTS_RUNNING,
    REQUESTS_WAITING,
    KV_CACHE_USAGE,
)

# Series recorded by the generated rules, in Prometheus' level:metric:operations form.
# Per SLO (labels `slo`, `service`, the spec's labels and its group_by labels):
SLI_BAD_RATE = "slo:sli_bad:rate{window}"  # bad events per second over the window
SLI_TOTAL_RATE = "slo:sli_total:rate{window}"  # all events per second over the window
SLI_ERROR_RATIO = "slo:sli_error:ratio_rate{window}"  # bad / total over the window
SLO_OBJECTIVE = "slo:objective:ratio"
SLO_ERROR_BUDGET = "slo:error_budget:ratio"
SLO_PERIOD_DAYS = "slo:time_period:days"
SLO_CURRENT_BURN_RATE = "slo:current_burn_rate:ratio"
SLO_PERIOD_BURN_RATE = "slo:period_burn_rate:ratio"
SLO_BUDGET_REMAINING = "slo:period_error_budget_remaining:ratio"
# Per latency phase, by model and the spec's group_by labels (`level` joins them):
PHASE_BUCKET_RATE = "{level}:{metric}_bucket:rate5m"
PHASE_QUANTILE = "{level}:{metric}:histogram_quantile_rate5m"  # label `quantile`
PHASE_QUANTILES = (0.5, 0.9, 0.95, 0.99)

# Alert names.
ALERT_BUDGET_BURN = "LLMErrorBudgetBurn"
ALERT_SLI_ABSENT = "LLMSLIDataAbsent"
