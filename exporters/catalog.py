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
STATE = "state"
ADAPTER = "adapter"
TENANT = "tenant"
POOL = "pool"  # prefill or decode, where they run apart (set at scrape time)
LE = "le"
QUANTILE = "quantile"
SLO = "slo"
SERVICE = "service"
SEVERITY = "severity"
ALERTNAME = "alertname"
ALERTS = "ALERTS"  # Prometheus' own series of pending and firing alerts
ALERTSTATE = "alertstate"
FIRING = "firing"  # the alertstate of an alert that fires

# Values of `outcome` on llm_requests_total.
OUTCOME_SUCCESS = "success"
OUTCOME_ERROR = "error"  # the server failed the request
OUTCOME_ABORTED = "aborted"  # the client went away
OUTCOME_REJECTED = "rejected"  # admission control or overload
OUTCOME_INVALID = "invalid"  # the request was bad (validation): the client's fault
OUTCOMES = (OUTCOME_SUCCESS, OUTCOME_ERROR, OUTCOME_ABORTED, OUTCOME_REJECTED, OUTCOME_INVALID)
# What availability answers for: the server failed or turned a valid request away. A bad
# request (invalid) or a client that left (aborted) is neither good nor bad service.
AVAILABILITY_BAD = (OUTCOME_ERROR, OUTCOME_REJECTED)
AVAILABILITY_COUNTED = (OUTCOME_SUCCESS, *AVAILABILITY_BAD)


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


# Bucket sets for the latency phases, at most 24 bounds each. Between bounds a quantile
# is interpolated linearly, so the spacing sets the error: a ratio of about 1.5 between
# neighbours keeps p50..p99 within 10 % on the LLM workloads of bench/buckets.py
# wherever they lie between 10 ms and 60 s; and anything above the last bound is +Inf,
# where no quantile can be read, so each set reaches well past its phase's worst case.
# Industry SLO targets (../shared/reference/slo-and-tracing.md) are bounds, so SLOs on
# them are exact. `llm-slo buckets fit` tunes a set to measured latencies instead.

# Queue: from 5 ms (an idle server) to 5 min (a saturated one); heavy-tailed under load,
# so the long end is as finely spaced as the short.
QUEUE_BUCKETS = (
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 1.5, 2.5,
    4.0, 6.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0, 300.0,
)  # fmt: skip
# Prefill: 5 ms (a cached prefix) to 40 s (a 100k-token prompt on a busy GPU).
PREFILL_BUCKETS = (
    0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0,
    1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 40.0,
)  # fmt: skip
# TTFT (queue + prefill): 10 ms to 60 s; MLPerf's p99 targets (0.45, 0.5, 1.5, 2, 4.5
# and 6 s) and most of vLLM's own bounds (0.1, 0.25, 0.5, 1, 2.5, 5, 10) are among them.
# Long-context prompts put p90-p99 at 5-11 s: bounds there are at most 1.36x apart (6
# to 10 s alone was 17 % off at such a p99; bench/buckets.py). 24 bounds at most.
TTFT_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5,
    3.0, 4.5, 5.0, 6.0, 7.5, 10.0, 11.0, 15.0, 30.0, 60.0,
)  # fmt: skip
# ITL and TPOT: 5 ms (a small model, speculative decoding) to 5 s (a stall); finest
# from 10 to 200 ms where decoding lives and MLPerf's TPOT targets (15, 30, 40, 80,
# 100, 175, 200 ms) sit.
ITL_BUCKETS = (
    0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.075, 0.08, 0.1,
    0.125, 0.15, 0.175, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
)  # fmt: skip
# Decode (first to last token): 100 ms to 10 min, tokens x TPOT for 10 to 10k tokens.
DECODE_BUCKETS = (
    0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
    90.0, 120.0, 180.0, 300.0, 600.0,
)  # fmt: skip
# End to end: 100 ms (a one-token answer) to 20 min (a long batch generation).
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
    "went away), rejected (admission or overload), invalid (a bad request).",
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

# What on-call reads from today's engines beyond the phases: the prefix cache (a falling
# hit ratio raises TTFT), speculative decoding (a falling acceptance slows decode) and
# the time a request ran on the engine (prefill plus decode, its queue left out).
REQUEST_INFERENCE = Metric(
    "llm_request_inference_seconds", HISTOGRAM, "seconds",
    "Time a request ran on the engine: prefill plus decode, its queue left out.",
    (MODEL,), E2E_BUCKETS,
)  # fmt: skip
PREFIX_CACHE_QUERIED = Metric(
    "llm_prefix_cache_queried_tokens_total", COUNTER, "tokens",
    "Prompt tokens looked up in the prefix cache.", (MODEL,),
)  # fmt: skip
PREFIX_CACHE_HIT = Metric(
    "llm_prefix_cache_hit_tokens_total", COUNTER, "tokens",
    "Prompt tokens found in the prefix cache: their prefill was skipped.", (MODEL,),
)  # fmt: skip
SPEC_DECODE_DRAFT = Metric(
    "llm_spec_decode_draft_tokens_total", COUNTER, "tokens",
    "Tokens proposed by speculative decoding's drafter.", (MODEL,),
)  # fmt: skip
SPEC_DECODE_ACCEPTED = Metric(
    "llm_spec_decode_accepted_tokens_total", COUNTER, "tokens",
    "Drafted tokens the target model accepted.", (MODEL,),
)  # fmt: skip

# LoRA adapters, from the engine's latest report of the adapters its requests use.
LORA_ADAPTERS = Metric(
    "llm_lora_adapters", GAUGE, "adapters",
    "LoRA adapters with requests in a state (running, waiting).", (MODEL, STATE),
)  # fmt: skip
LORA_ADAPTERS_MAX = Metric(
    "llm_lora_adapters_max", GAUGE, "adapters",
    "LoRA adapters the engine holds at once (vLLM's --max-loras).", (MODEL,),
)  # fmt: skip
LORA_ADAPTER = Metric(
    "llm_lora_adapter_active", GAUGE, "bool",
    "1 for each LoRA adapter with requests in a state; names past the exporter's "
    "--max-adapters fold into __overflow__, whose value counts them.",
    (MODEL, ADAPTER, STATE),
)  # fmt: skip
STATE_RUNNING = "running"
STATE_WAITING = "waiting"

# The client's view, from the tracing middleware or proxy: the server's time plus the
# gateway's and the network's. A different quantity from the server's, so its own names
# (as OpenTelemetry splits client and server metrics): no sum over jobs can add the two.
CLIENT_TIME_TO_FIRST_TOKEN = Metric(
    "llm_client_time_to_first_token_seconds", HISTOGRAM, "seconds",
    "Time from a request's arrival at the gateway to the first token the client was sent: "
    "streamed answers that succeeded with tokens.",
    (MODEL,), TTFT_BUCKETS,
)  # fmt: skip
CLIENT_INTER_TOKEN_LATENCY = Metric(
    "llm_client_inter_token_latency_seconds", HISTOGRAM, "seconds",
    "Gaps between the chunks carrying tokens that the client was sent (streamed answers).",
    (MODEL,), ITL_BUCKETS,
)  # fmt: skip
CLIENT_TIME_PER_OUTPUT_TOKEN = Metric(
    "llm_client_time_per_output_token_seconds", HISTOGRAM, "seconds",
    "A streamed answer's time from its first token to its last over its tokens after the "
    "first, as the client was sent them.",
    (MODEL,), ITL_BUCKETS,
)  # fmt: skip
CLIENT_E2E_REQUEST_LATENCY = Metric(
    "llm_client_e2e_request_latency_seconds", HISTOGRAM, "seconds",
    "Time from a request's arrival at the gateway to the end of its answer (successes).",
    (MODEL,), E2E_BUCKETS,
)  # fmt: skip
CLIENT_REQUESTS = Metric(
    "llm_client_requests_total", COUNTER, "requests",
    "Requests the gateway answered, by outcome as the client saw it: success, error, "
    "aborted, rejected, invalid.",
    (MODEL, OUTCOME),
)  # fmt: skip
CLIENT_PROMPT_TOKENS = Metric(
    "llm_client_prompt_tokens_total", COUNTER, "tokens",
    "Prompt tokens of the requests the gateway passed on (from each answer's usage).",
    (MODEL,),
)  # fmt: skip
CLIENT_GENERATION_TOKENS = Metric(
    "llm_client_generation_tokens_total", COUNTER, "tokens",
    "Output tokens the client was sent (the answer's usage, else the chunks with text).",
    (MODEL,),
)  # fmt: skip
REQUESTS_GOODPUT = Metric(
    "llm_client_requests_goodput_total", COUNTER, "requests",
    "Successful requests that met both their TTFT and their TPOT targets (DistServe's "
    "goodput): a stream by its own TTFT and TPOT, a whole answer by arriving no later than "
    "a stream meeting both would have ended.",
    (MODEL,),
)  # fmt: skip
CLIENT_PHASES: MappingProxyType[str, Metric] = MappingProxyType(
    {
        "ttft": CLIENT_TIME_TO_FIRST_TOKEN,
        "itl": CLIENT_INTER_TOKEN_LATENCY,
        "tpot": CLIENT_TIME_PER_OUTPUT_TOKEN,
        "e2e": CLIENT_E2E_REQUEST_LATENCY,
    }
)
CLIENT_METRICS = (
    *CLIENT_PHASES.values(), CLIENT_REQUESTS, CLIENT_PROMPT_TOKENS, CLIENT_GENERATION_TOKENS,
    REQUESTS_GOODPUT,
)  # fmt: skip
# With a tenant source configured, the client-side counters carry one more label.
TENANT_COUNTERS = (
    CLIENT_REQUESTS,
    CLIENT_PROMPT_TOKENS,
    CLIENT_GENERATION_TOKENS,
    REQUESTS_GOODPUT,
)
NO_TENANT = "__none__"  # a request that names no tenant
UNKNOWN_MODEL = "__unknown__"  # a model the upstream has not yet served: takes no label slot

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
    REQUEST_INFERENCE,
    PREFIX_CACHE_QUERIED,
    PREFIX_CACHE_HIT,
    SPEC_DECODE_DRAFT,
    SPEC_DECODE_ACCEPTED,
    LORA_ADAPTERS,
    LORA_ADAPTERS_MAX,
    LORA_ADAPTER,
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
# An autoscaling trigger's query as prometheus-adapter serves it to the HPA (k8s/).
EXTERNAL_METRIC = "llm_slo_{trigger}"

# Alert names.
ALERT_BUDGET_BURN = "LLMErrorBudgetBurn"
ALERT_SLI_ABSENT = "LLMSLIDataAbsent"
ALERT_GPU_MEMORY_FULL = "LLMGPUMemoryNearlyFull"
ALERT_GPU_THROTTLED = "LLMGPUThrottled"
ALERT_GPU_XID = "LLMGPUXidError"
ALERT_GPU_DOWN = "LLMGPUDown"
ALERT_GPU_MISSING = "LLMGPUMissing"
INSTANCE = "instance"  # Prometheus' own target label: which exporter a series came from
ALERT_GPU_MEMORY_LEAK = "LLMGPUProcessMemoryLeak"
ALERT_GPU_IDLE_WAITING = "LLMGPUIdleWhileRequestsWait"
ALERT_GPU_SATURATED = "LLMGPUSaturatedQueueGrowing"
GPU_ALERTS = (
    ALERT_GPU_MEMORY_FULL, ALERT_GPU_THROTTLED, ALERT_GPU_XID, ALERT_GPU_DOWN, ALERT_GPU_MISSING,
    ALERT_GPU_MEMORY_LEAK, ALERT_GPU_IDLE_WAITING, ALERT_GPU_SATURATED,
)  # fmt: skip

# The sidecar exporter's own health.
EXPORTER_UPSTREAM_UP = Metric(
    "llm_exporter_upstream_up", GAUGE, "bool",
    "1 if the last scrape of the inference server succeeded, else 0.", (),
)  # fmt: skip
EXPORTER_SCRAPE_DURATION = Metric(
    "llm_exporter_scrape_duration_seconds", GAUGE, "seconds",
    "Time the last scrape of the inference server took, parsing included.", (),
)  # fmt: skip
EXPORTER_SCRAPE_ERRORS = Metric(
    "llm_exporter_scrape_errors_total", COUNTER, "errors",
    "Failed scrapes of the inference server by reason: timeout, refused, dropped "
    "(connection broken mid-answer), http_status, bad_payload.",
    ("reason",),
)  # fmt: skip
EXPORTER_LABEL_OVERFLOW = Metric(
    "llm_exporter_label_overflow_total", COUNTER, "series",
    "Label values over the cap, counted once a scrape, whose series were folded into the "
    "value __overflow__.",
    ("label",),
)  # fmt: skip
EXPORTER_METRICS = (
    EXPORTER_UPSTREAM_UP, EXPORTER_SCRAPE_DURATION, EXPORTER_SCRAPE_ERRORS,
    EXPORTER_LABEL_OVERFLOW,
)  # fmt: skip
OVERFLOW_VALUE = "__overflow__"
SCRAPE_ERROR_REASONS = ("timeout", "refused", "dropped", "http_status", "bad_payload")
# The GPU exporter's own failure reasons, before those of a dcgm-exporter scrape.
GPU_NO_DRIVER = "no_driver"
GPU_LOST = "gpu_lost"
GPU_NVML_ERROR = "nvml"  # any other NVML error
GPU_ERROR_REASONS = (GPU_NO_DRIVER, GPU_LOST, GPU_NVML_ERROR, *SCRAPE_ERROR_REASONS)


class VLLM:
    """vLLM's metric names (engine v1, checked against vLLM 0.33's source).

    Labels `model_name` and `engine` (data-parallel rank); counters gain `_total`.
    """

    SPAN = "llm_request"  # its one span per request (--otlp-traces-endpoint)
    LABEL_MODEL = "model_name"
    LABEL_ENGINE = "engine"
    LABEL_FINISHED = "finished_reason"
    QUEUE = "vllm:request_queue_time_seconds"
    PREFILL = "vllm:request_prefill_time_seconds"
    TTFT = "vllm:time_to_first_token_seconds"
    ITL = "vllm:inter_token_latency_seconds"
    TPOT = "vllm:request_time_per_output_token_seconds"
    DECODE = "vllm:request_decode_time_seconds"
    E2E = "vllm:e2e_request_latency_seconds"
    INFERENCE = "vllm:request_inference_time_seconds"
    PREFIX_CACHE_QUERIES = "vllm:prefix_cache_queries"
    PREFIX_CACHE_HITS = "vllm:prefix_cache_hits"
    SPEC_DRAFTS = "vllm:spec_decode_num_drafts"
    SPEC_DRAFT_TOKENS = "vllm:spec_decode_num_draft_tokens"
    SPEC_ACCEPTED_TOKENS = "vllm:spec_decode_num_accepted_tokens"
    SPEC_ACCEPTED_PER_POSITION = "vllm:spec_decode_num_accepted_tokens_per_pos"
    LABEL_POSITION = "position"
    # A gauge set to the time of the engine's latest report, one series per report's
    # label values (vllm/v1/metrics/loggers.py, 0.10.2): adapters joined by commas.
    LORA_INFO = "vllm:lora_requests_info"
    LABEL_MAX_LORA = "max_lora"
    LABEL_RUNNING_LORA = "running_lora_adapters"
    LABEL_WAITING_LORA = "waiting_lora_adapters"
    ITERATION_TOKENS = "vllm:iteration_tokens_total"
    REQUEST_PARAMS_N = "vllm:request_params_n"
    REQUEST_PARAMS_MAX_TOKENS = "vllm:request_params_max_tokens"
    REQUEST_PROMPT_TOKENS = "vllm:request_prompt_tokens"  # histograms of lengths per request
    REQUEST_GENERATION_TOKENS = "vllm:request_generation_tokens"
    REQUEST_MAX_GENERATION_TOKENS = "vllm:request_max_num_generation_tokens"
    CACHE_CONFIG = "vllm:cache_config_info"
    PROMPT_TOKENS = "vllm:prompt_tokens"
    GENERATION_TOKENS = "vllm:generation_tokens"
    PREEMPTIONS = "vllm:num_preemptions"
    REQUEST_SUCCESS = "vllm:request_success"
    ADMISSION_REJECTIONS = "vllm:admission_rejections"
    RUNNING = "vllm:num_requests_running"
    WAITING = "vllm:num_requests_waiting"
    KV_CACHE = "vllm:kv_cache_usage_perc"  # a 0..1 fraction despite the name
    # finished_reason values: stop, length, repetition are successes.
    FINISHED_OUTCOMES = MappingProxyType(
        {"stop": OUTCOME_SUCCESS, "length": OUTCOME_SUCCESS, "repetition": OUTCOME_SUCCESS,
         "abort": OUTCOME_ABORTED, "error": OUTCOME_ERROR}
    )  # fmt: skip
    # Default bucket families (vllm/v1/metrics/buckets.py).
    TTFT_BUCKETS = (
        0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
        7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
    )  # fmt: skip
    ITL_BUCKETS = (
        0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
        10.0, 20.0, 40.0, 80.0,
    )  # fmt: skip
    REQUEST_LATENCY_BUCKETS = (
        0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
        120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
    )  # fmt: skip
    # --custom-histogram-buckets family keys, and the phases whose histograms use each.
    FAMILY_TTFT = "time_to_first_token"
    FAMILY_ITL = "inter_token_latency"
    FAMILY_REQUEST_LATENCY = "request_latency"
    FAMILY_PHASES = MappingProxyType(
        {
            FAMILY_TTFT: ("ttft",),
            FAMILY_ITL: ("itl", "tpot"),
            FAMILY_REQUEST_LATENCY: ("queue", "prefill", "decode", "e2e"),
        }
    )


class VLLMLegacy:
    """Names before the v1 engine renames (about vLLM 0.10); only `model_name`, no engine."""

    ITL = "vllm:time_per_output_token_seconds"
    KV_CACHE = "vllm:gpu_cache_usage_perc"
    QUEUE = "vllm:time_in_queue_requests"
    PREFIX_CACHE_QUERIES = "vllm:gpu_prefix_cache_queries"
    PREFIX_CACHE_HITS = "vllm:gpu_prefix_cache_hits"
    TTFT_BUCKETS = (
        0.001,
        0.005,
        0.01,
        0.02,
        0.04,
        0.06,
        0.08,
        0.1,
        0.25,
        0.5,
        0.75,
        1.0,
        2.5,
        5.0,
        7.5,
        10.0,
    )
    ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
    REQUEST_LATENCY_BUCKETS = (1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0)


class TGI:
    """Text Generation Inference: no model label; durations in seconds.

    Failure reasons as TGI 3.3.6 (db931fc) writes them: router/src/infer/mod.rs,
    router/src/server.rs, backends/v3/src/{backend,queue}.rs.
    """

    QUEUE = "tgi_request_queue_duration"
    E2E = "tgi_request_duration"
    TPOT = "tgi_request_mean_time_per_token_duration"
    INPUT_LENGTH = "tgi_request_input_length"  # histogram of prompt tokens
    GENERATED_TOKENS = "tgi_request_generated_tokens"  # histogram of output tokens
    SUCCESS = "tgi_request_success"
    FAILURE = "tgi_request_failure"
    LABEL_ERR = "err"
    FAILURE_OUTCOMES = MappingProxyType(
        {
            "overloaded": OUTCOME_REJECTED,  # the queue is full
            "validation": OUTCOME_INVALID,  # a bad request (HTTP 422)
            "template": OUTCOME_INVALID,  # the chat template cannot render the request
            "incomplete": OUTCOME_ERROR,  # generation ended without its last token
            "generation": OUTCOME_ERROR,  # the model server failed
            "dropped": OUTCOME_ABORTED,  # the client's stream was closed
        }
    )
    QUEUE_SIZE = "tgi_queue_size"
    BATCH_SIZE = "tgi_batch_current_size"
    REQUEST_COUNT = "tgi_request_count"
    VALIDATION = "tgi_request_validation_duration"
    INFERENCE = "tgi_request_inference_duration"
    MAX_NEW_TOKENS = "tgi_request_max_new_tokens"
    BATCH_MAX_TOKENS = "tgi_batch_current_max_tokens"
    BATCH_MAX_TOTAL_TOKENS = "tgi_batch_max_total_tokens"
    BATCH_INFERENCE_COUNT = "tgi_batch_inference_count"
    BATCH_INFERENCE_SUCCESS = "tgi_batch_inference_success"
    BATCH_INFERENCE_DURATION = "tgi_batch_inference_duration"


class SGLang:
    """SGLang's metric names (sglang 0.5.23 wheel, sglang/srt/observability/metrics_collector.py).

    The tokenizer process writes the request series (labels `model_name`, `engine_type`,
    some also `is_streaming`), each scheduler its gauges and queue time (also `tp_rank`,
    `pp_rank`, `moe_ep_rank`, and `dp_rank` under data parallelism).
    """

    LABEL_MODEL = "model_name"
    DROPPED_LABELS = ("engine_type", "tp_rank", "pp_rank", "moe_ep_rank", "dp_rank", "is_streaming")
    TTFT = "sglang:time_to_first_token_seconds"
    ITL = "sglang:inter_token_latency_seconds"
    TPOT = "sglang:request_time_per_output_token_seconds"
    E2E = "sglang:e2e_request_latency_seconds"
    QUEUE = "sglang:queue_time_seconds"
    PROMPT_TOKENS = "sglang:prompt_tokens"
    GENERATION_TOKENS = "sglang:generation_tokens"
    CACHED_TOKENS = "sglang:cached_tokens"  # label cache_source: device, host, storage
    # Every finished request, aborted ones included (observe_one_finished_request), and
    # the aborts sent to the scheduler (observe_one_aborted_request).
    REQUESTS = "sglang:num_requests"
    ABORTED = "sglang:num_aborted_requests"
    RUNNING = "sglang:num_running_reqs"
    WAITING = "sglang:num_queue_reqs"
    TOKEN_USAGE = "sglang:token_usage"  # KV cache tokens in use over the pool, 0..1
    STRUCTURED_REQUESTS = "sglang:num_so_requests"
    SPEC_VERIFY_CALLS = "sglang:spec_verify_calls"
    PROMPT_TOKENS_HISTOGRAM = "sglang:prompt_tokens_histogram"
    UNCACHED_PROMPT_TOKENS_HISTOGRAM = "sglang:uncached_prompt_tokens_histogram"
    GENERATION_TOKENS_HISTOGRAM = "sglang:generation_tokens_histogram"
    GET_LOADS = "sglang:get_loads_duration_seconds"
    STARTUP = "sglang:startup_time_seconds"
    STARTUP_CUDA_GRAPH = "sglang:startup_cuda_graph_time_seconds"
    GRAMMAR_QUEUE = "sglang:num_grammar_queue_reqs"
    GEN_THROUGHPUT = "sglang:gen_throughput"
    CACHE_HIT_RATE = "sglang:cache_hit_rate"
    SPEC_ACCEPT_RATE = "sglang:spec_accept_rate"
    SPEC_ACCEPT_LENGTH = "sglang:spec_accept_length"
    # Decode requests sent back to the queue when the KV cache runs out: preemptions.
    RETRACTED_REQUESTS = "sglang:num_retracted_requests"
    RETRACTED_NOW = "sglang:num_retracted_reqs"
    # Default bucket sets (TokenizerMetricsCollector, SchedulerMetricsCollector).
    TTFT_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400)
    E2E_BUCKETS = (*TTFT_BUCKETS, 600, 1200, 1800, 2400)
    ITL_BUCKETS = (
        0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040, 0.060,
        0.080, 0.100, 0.200, 0.400, 0.600, 0.800, 1.000, 2.000, 4.000, 6.000, 8.000,
    )  # fmt: skip
    QUEUE_BUCKETS = (
        0.0, 0.001, 0.005, 0.010, 0.050, 0.100, 0.200, 0.500, 1, 2, 3, 4, 5, 10, 15, 20, 30,
        40, 50, 60, 70, 80, 90, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1200,
        1400, 1600, 1800, 2000, 2500, 3000,
    )  # fmt: skip


class Triton:
    """Triton Inference Server: label `model`; cumulative microsecond counters.

    As triton-inference-server/core 73aad7c writes them (src/metrics.cc,
    src/metric_model_reporter.cc): durations add up over successes only.
    """

    LABEL_MODEL = "model"
    SUCCESS = "nv_inference_request_success"
    FAILURE = "nv_inference_request_failure"
    LABEL_REASON = "reason"
    FAILURE_OUTCOMES = MappingProxyType(
        {
            "REJECTED": OUTCOME_REJECTED,  # queue full, overload
            "CANCELED": OUTCOME_ABORTED,  # the client cancelled
            "BACKEND": OUTCOME_ERROR,
            "OTHER": OUTCOME_ERROR,
        }
    )
    QUEUE_US = "nv_inference_queue_duration_us"
    REQUEST_US = "nv_inference_request_duration_us"
    FIRST_RESPONSE_MS = "nv_inference_first_response_histogram_ms"
    PENDING = "nv_inference_pending_request_count"
    COUNT = "nv_inference_count"
    EXEC_COUNT = "nv_inference_exec_count"
    COMPUTE_INPUT_US = "nv_inference_compute_input_duration_us"
    COMPUTE_INFER_US = "nv_inference_compute_infer_duration_us"
    COMPUTE_OUTPUT_US = "nv_inference_compute_output_duration_us"
    MODEL_LOAD = "nv_model_load_duration_secs"
    PINNED_TOTAL = "nv_pinned_memory_pool_total_bytes"
    PINNED_USED = "nv_pinned_memory_pool_used_bytes"
    GPU_UTIL = "nv_gpu_utilization"
    GPU_MEMORY_USED = "nv_gpu_memory_used_bytes"


class TritonTRTLLM:
    """The TensorRT-LLM backend's families beside Triton's own, as its published sample
    shows them (triton-inference-server/tensorrtllm_backend 0b9d7d5, README.md "Triton
    Metrics"): gauges whose second label says what each value is."""

    REQUESTS = "nv_trt_llm_request_metrics"
    LABEL_REQUEST_TYPE = "request_type"
    ACTIVE = "active"  # requests in flight in the batch manager: the running batch
    WAITING = "waiting"  # requests queued in the batch manager (Triton's pending: before it)
    KV_CACHE = "nv_trt_llm_kv_cache_block_metrics"
    LABEL_KV_CACHE_TYPE = "kv_cache_block_type"
    KV_FRACTION = "fraction"  # used blocks over max blocks, 0..1
    RUNTIME_MEMORY = "nv_trt_llm_runtime_memory_metrics"
    INFLIGHT_BATCHER = "nv_trt_llm_inflight_batcher_metrics"
    GENERAL = "nv_trt_llm_general_metrics"
    DISAGGREGATED = "nv_trt_llm_disaggregated_serving_metrics"
    V1 = "nv_trt_llm_v1_metrics"


# GPUs (llm-gpu-exporter), from NVML or dcgm-exporter, in base units.
GPU = "gpu"  # the index
UUID = "uuid"
GPU_NAME = "gpu_name"
GPU_LABELS = (GPU, UUID, GPU_NAME)
# Kubernetes' labels, set on serving series by service discovery and on GPU series by
# dcgm-exporter's pod mapping: the GPU dashboard joins the two on them.
POD = "pod"
NAMESPACE = "namespace"
REASON = "reason"
KIND = "kind"
PID = "pid"
XID = "xid"
SOURCE = "source"
METRIC = "metric"


def _gpu(name: str, kind: str, unit: str, doc: str, *extra: str) -> Metric:
    return Metric(name, kind, unit, doc, (*GPU_LABELS, *extra))


GPU_UP = _gpu(
    "llm_gpu_up", GAUGE, "bool", "1 if the GPU answered this scrape, 0 if it is lost or failing."
)
GPU_UTILIZATION = _gpu(
    "llm_gpu_utilization_ratio", GAUGE, "ratio",
    "Share of time a kernel was running (not how busy the SMs were: see the SM active ratio).",
)  # fmt: skip
GPU_MEMORY_USED = _gpu("llm_gpu_memory_used_bytes", GAUGE, "bytes", "GPU memory in use.")
GPU_MEMORY_TOTAL = _gpu("llm_gpu_memory_total_bytes", GAUGE, "bytes", "GPU memory in all.")
GPU_POWER = _gpu("llm_gpu_power_watts", GAUGE, "watts", "Power draw.")
GPU_POWER_LIMIT = _gpu("llm_gpu_power_limit_watts", GAUGE, "watts", "Enforced power limit.")
GPU_ENERGY = _gpu(
    "llm_gpu_energy_joules_total", COUNTER, "joules", "Energy used since the driver loaded."
)
GPU_TEMPERATURE = _gpu("llm_gpu_temperature_celsius", GAUGE, "celsius", "GPU core temperature.")
GPU_SM_CLOCK = _gpu("llm_gpu_sm_clock_hertz", GAUGE, "hertz", "SM clock.")
GPU_MEMORY_CLOCK = _gpu("llm_gpu_memory_clock_hertz", GAUGE, "hertz", "Memory clock.")
GPU_CLOCKS_EVENT = _gpu(
    "llm_gpu_clocks_event_active", GAUGE, "bool",
    "1 while clocks are held down for this reason (throttling), else 0.", REASON,
)  # fmt: skip
GPU_ECC_ERRORS = _gpu(
    "llm_gpu_ecc_errors_total",
    COUNTER,
    "errors",
    "ECC memory errors by kind (corrected, uncorrected).",
    KIND,
)
GPU_REMAPPED_ROWS = _gpu(
    "llm_gpu_remapped_rows_total",
    COUNTER,
    "rows",
    "Memory rows remapped by kind (correctable, uncorrectable).",
    KIND,
)
GPU_PCIE_REPLAYS = _gpu(
    "llm_gpu_pcie_replays_total", COUNTER, "replays", "PCIe replays (link errors)."
)
GPU_PROCESS_MEMORY = _gpu(
    "llm_gpu_process_memory_used_bytes", GAUGE, "bytes",
    "GPU memory of the processes using the most (top N per GPU).", PID,
)  # fmt: skip
GPU_XID_ERRORS = _gpu(
    "llm_gpu_xid_errors_total", COUNTER, "errors", "Critical XID errors by code.", XID
)
GPU_XID_EVENTS = _gpu(
    "llm_gpu_xid_events_total", COUNTER, "events",
    "Critical XID events on the GPU, every code together. Written at 0 from the first "
    "scrape, so that the first event shows in increase(); the code is in "
    "llm_gpu_xid_errors_total.",
)  # fmt: skip
GPU_SM_ACTIVE = _gpu(
    "llm_gpu_sm_active_ratio",
    GAUGE,
    "ratio",
    "Share of SM time with a warp resident (DCGM profiling).",
)
GPU_TENSOR_ACTIVE = _gpu(
    "llm_gpu_tensor_active_ratio",
    GAUGE,
    "ratio",
    "Share of cycles the tensor pipes were busy (DCGM profiling).",
)
GPU_DRAM_ACTIVE = _gpu(
    "llm_gpu_dram_active_ratio",
    GAUGE,
    "ratio",
    "Share of cycles device memory was busy (DCGM profiling).",
)
GPU_ENGINE_ACTIVE = _gpu(
    "llm_gpu_graphics_engine_active_ratio",
    GAUGE,
    "ratio",
    "Share of time the graphics engine was busy (DCGM).",
)
GPU_EXPORTER_SOURCE_UP = Metric(
    "llm_gpu_exporter_source_up", GAUGE, "bool",
    "1 if the GPU source (nvml or dcgm) answered this scrape, else 0.", (SOURCE,),
)  # fmt: skip
GPU_EXPORTER_ERRORS = Metric(
    "llm_gpu_exporter_errors_total", COUNTER, "errors",
    "Failed reads by reason: no_driver, gpu_lost, nvml (another NVML error), timeout, "
    "refused, dropped, http_status, bad_payload.",
    (REASON,),
)  # fmt: skip
GPU_METRICS = (
    GPU_UP, GPU_UTILIZATION, GPU_MEMORY_USED, GPU_MEMORY_TOTAL, GPU_POWER, GPU_POWER_LIMIT,
    GPU_ENERGY, GPU_TEMPERATURE, GPU_SM_CLOCK, GPU_MEMORY_CLOCK, GPU_CLOCKS_EVENT,
    GPU_ECC_ERRORS, GPU_REMAPPED_ROWS, GPU_PCIE_REPLAYS, GPU_PROCESS_MEMORY, GPU_XID_ERRORS,
    GPU_XID_EVENTS, GPU_SM_ACTIVE, GPU_TENSOR_ACTIVE, GPU_DRAM_ACTIVE, GPU_ENGINE_ACTIVE,
)  # fmt: skip
GPU_EXPORTER_MISSING = Metric(
    "llm_gpu_exporter_metric_missing", GAUGE, "bool",
    "1 for each GPU metric the source gave for no GPU at the last scrape (for "
    "dcgm-exporter: a field missing from its counters file).", (METRIC,),
)  # fmt: skip
GPU_EXPORTER_METRICS = (GPU_EXPORTER_SOURCE_UP, GPU_EXPORTER_ERRORS, GPU_EXPORTER_MISSING)
# NVML's clocks-event reason bits (nvmlClocksEventReason*), by the names we label them.
GPU_CLOCK_EVENT_REASONS = MappingProxyType(
    {
        0x1: "gpu_idle",
        0x2: "applications_clocks_setting",
        0x4: "sw_power_cap",
        0x8: "hw_slowdown",
        0x10: "sync_boost",
        0x20: "sw_thermal_slowdown",
        0x40: "hw_thermal_slowdown",
        0x80: "hw_power_brake_slowdown",
        0x100: "display_clock_setting",
    }
)


class DCGM:
    """dcgm-exporter's field names (../shared/reference/gpus.md) and labels."""

    GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"  # percent
    FB_USED = "DCGM_FI_DEV_FB_USED"  # MiB
    FB_FREE = "DCGM_FI_DEV_FB_FREE"  # MiB
    FB_RESERVED = "DCGM_FI_DEV_FB_RESERVED"  # MiB
    POWER = "DCGM_FI_DEV_POWER_USAGE"  # W
    POWER_LIMIT = "DCGM_FI_DEV_POWER_MGMT_LIMIT"  # W
    ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"  # mJ, counter
    TEMPERATURE = "DCGM_FI_DEV_GPU_TEMP"  # Celsius
    SM_CLOCK = "DCGM_FI_DEV_SM_CLOCK"  # MHz
    MEM_CLOCK = "DCGM_FI_DEV_MEM_CLOCK"  # MHz
    PCIE_REPLAYS = "DCGM_FI_DEV_PCIE_REPLAY_COUNTER"
    XID = "DCGM_FI_DEV_XID_ERRORS"  # gauge: the last XID code seen
    CORRECTABLE_ROWS = "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS"
    UNCORRECTABLE_ROWS = "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS"
    ECC_CORRECTED = "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL"
    ECC_UNCORRECTED = "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL"
    CLOCKS_EVENT = "DCGM_FI_DEV_CLOCKS_EVENT_REASONS"  # bit mask, as NVML's
    CLOCKS_THROTTLE = "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"  # its older name
    SM_ACTIVE = "DCGM_FI_PROF_SM_ACTIVE"  # ratio
    TENSOR_ACTIVE = "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"
    DRAM_ACTIVE = "DCGM_FI_PROF_DRAM_ACTIVE"
    ENGINE_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
    LABEL_GPU = "gpu"
    # In dcgm-exporter's default counters (d5e5f51, etc/default-counters.csv), not read.
    MEM_COPY_UTIL = "DCGM_FI_DEV_MEM_COPY_UTIL"
    ENC_UTIL = "DCGM_FI_DEV_ENC_UTIL"
    DEC_UTIL = "DCGM_FI_DEV_DEC_UTIL"
    MEMORY_TEMP = "DCGM_FI_DEV_MEMORY_TEMP"
    NVLINK_BANDWIDTH = "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL"
    ROW_REMAP_FAILURE = "DCGM_FI_DEV_ROW_REMAP_FAILURE"
    PCIE_TX = "DCGM_FI_PROF_PCIE_TX_BYTES"
    PCIE_RX = "DCGM_FI_PROF_PCIE_RX_BYTES"
    LABEL_UUID = "UUID"
    LABEL_UUID_OLD = "uuid"  # --use-old-namespace (dcgm-exporter d5e5f51, gpu_collector.go)
    LABEL_MODEL = "modelName"
    LABEL_MIG_INSTANCE = "GPU_I_ID"
    # dcgm-exporter label -> ours, passed through so GPU series join serving series. With
    # --use-old-namespace the pod labels are pod_name, pod_namespace and container_name
    # (d5e5f51, internal/pkg/transformation/const.go).
    PASSTHROUGH = MappingProxyType(
        {
            "Hostname": "hostname", "hostname": "hostname", "pod": POD, "namespace": NAMESPACE,
            "container": "container", "pod_name": POD, "pod_namespace": NAMESPACE,
            "container_name": "container", "GPU_I_PROFILE": "mig_profile",
            LABEL_MIG_INSTANCE: "mig_instance",
        }
    )  # fmt: skip


class OTelGenAI:
    """OpenTelemetry GenAI semantic conventions' recommended explicit buckets, in seconds
    (../shared/reference/slo-and-tracing.md); bench/buckets.py compares against them."""

    TTFT_BUCKETS = (
        0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    )  # fmt: skip
    TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
    DURATION_BUCKETS = (
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    )  # fmt: skip
    TOKEN_BUCKETS = tuple(4**power for power in range(14))  # 1, 4, 16 ... 67108864
    # The client metrics (semantic conventions v1.41, docs/gen-ai/gen-ai-metrics.md) the
    # tracing middleware records through an OpenTelemetry meter provider.
    OPERATION_DURATION = "gen_ai.client.operation.duration"
    TIME_TO_FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"
    TIME_PER_OUTPUT_CHUNK = "gen_ai.client.operation.time_per_output_chunk"
    TOKEN_USAGE = "gen_ai.client.token.usage"
    TOKEN_TYPE = "gen_ai.token.type"


# Upstream families the exporters read nothing from, and why (exporters/README.md lists
# them too). prometheus_client's `*_created` series are never read.
UNMAPPED = MappingProxyType(
    {
        # vLLM
        VLLM.ITERATION_TOKENS: "tokens per engine step: capacity tuning, not on-call",
        VLLM.REQUEST_PARAMS_N: "a request parameter, not an outcome",
        VLLM.REQUEST_PARAMS_MAX_TOKENS: "a request parameter, not an outcome",
        VLLM.REQUEST_PROMPT_TOKENS: "prompt lengths: the token counters carry the totals",
        VLLM.REQUEST_GENERATION_TOKENS: "output lengths: the token counters carry the totals",
        VLLM.REQUEST_MAX_GENERATION_TOKENS: "a request's token budget, not an outcome",
        VLLM.CACHE_CONFIG: "the engine's KV cache settings, as labels: not a serving series",
        VLLM.SPEC_DRAFTS: "draft steps: the token counters carry the acceptance ratio",
        VLLM.SPEC_ACCEPTED_PER_POSITION: (
            "acceptance per draft position: drafter tuning, not on-call"
        ),
        # Triton
        Triton.COUNT: "inferences per batch item, not requests",
        Triton.EXEC_COUNT: "model executions (batches), not requests",
        Triton.COMPUTE_INPUT_US: "a part of the request duration",
        Triton.COMPUTE_INFER_US: "a part of the request duration",
        Triton.COMPUTE_OUTPUT_US: "a part of the request duration",
        Triton.MODEL_LOAD: "model load time: not a serving series",
        Triton.PINNED_TOTAL: "host memory pool: not a serving series",
        Triton.PINNED_USED: "host memory pool: not a serving series",
        Triton.GPU_UTIL: "GPU series come from llm-gpu-exporter (NVML or DCGM)",
        Triton.GPU_MEMORY_USED: "GPU series come from llm-gpu-exporter (NVML or DCGM)",
        # TGI
        TGI.TPOT: ("a request's whole time over its tokens: includes the prefill, so not TPOT"),
        TGI.REQUEST_COUNT: (
            "requests received, not finished: outcomes come from the success and failure counters"
        ),
        TGI.VALIDATION: "a part of the request duration",
        TGI.INFERENCE: "a part of the request duration",
        TGI.MAX_NEW_TOKENS: "a request parameter, not an outcome",
        TGI.BATCH_MAX_TOKENS: "batcher state: capacity tuning, not on-call",
        TGI.BATCH_MAX_TOTAL_TOKENS: "batcher state: capacity tuning, not on-call",
        TGI.BATCH_INFERENCE_COUNT: "batches, not requests",
        TGI.BATCH_INFERENCE_SUCCESS: "batches, not requests",
        TGI.BATCH_INFERENCE_DURATION: "per batch, not per request",
        # Triton's TensorRT-LLM backend (what of a family is read: exporters/README.md)
        TritonTRTLLM.RUNTIME_MEMORY: "memory of the runtime: GPU series come from llm-gpu-exporter",
        TritonTRTLLM.INFLIGHT_BATCHER: "batcher internals (micro batch id, tokens of the step)",
        TritonTRTLLM.GENERAL: "an iteration counter and a timestamp: not a serving series",
        TritonTRTLLM.DISAGGREGATED: "disaggregated serving's KV transfers: not on-call yet",
        TritonTRTLLM.V1: "the V1 (non-inflight) batcher's token counts: a legacy model type",
        # dcgm-exporter
        DCGM.MEM_COPY_UTIL: "memory bandwidth share by sampling: the DRAM active ratio is read",
        DCGM.ENC_UTIL: "the video encoder: not used by LLM serving",
        DCGM.DEC_UTIL: "the video decoder: not used by LLM serving",
        DCGM.MEMORY_TEMP: "HBM temperature: the GPU temperature and the throttle reasons are read",
        DCGM.NVLINK_BANDWIDTH: "NVLink traffic: capacity tuning, not on-call",
        DCGM.ROW_REMAP_FAILURE: "a row remap failure also shows as uncorrectable remapped rows",
        DCGM.PCIE_TX: "PCIe traffic: capacity tuning, not on-call",
        DCGM.PCIE_RX: "PCIe traffic: capacity tuning, not on-call",
        # SGLang
        SGLang.STRUCTURED_REQUESTS: "structured-output requests: a subset of all requests",
        SGLang.SPEC_VERIFY_CALLS: "verification passes, not tokens: no acceptance ratio",
        SGLang.PROMPT_TOKENS_HISTOGRAM: "prompt lengths: the counters carry the totals",
        SGLang.UNCACHED_PROMPT_TOKENS_HISTOGRAM: "prompt lengths: the counters carry the totals",
        SGLang.GENERATION_TOKENS_HISTOGRAM: "output lengths: the counters carry the totals",
        SGLang.GET_LOADS: "time serving /v1/loads: a control endpoint, not serving",
        SGLang.STARTUP: "start-up phases: not a serving series",
        SGLang.STARTUP_CUDA_GRAPH: "start-up phases: not a serving series",
        SGLang.GRAMMAR_QUEUE: "requests compiling a grammar: a part of the waiting ones",
        SGLang.GEN_THROUGHPUT: "a rate of the last interval: Prometheus derives it",
        SGLang.CACHE_HIT_RATE: "a ratio of the last batch: the token counters carry it",
        SGLang.SPEC_ACCEPT_RATE: "a ratio of the last batch: no counter to add up",
        SGLang.SPEC_ACCEPT_LENGTH: "a mean of the last batch: no counter to add up",
        SGLang.RETRACTED_NOW: "retractions of the last batch: the counter carries the total",
    }
)
