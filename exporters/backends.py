"""How each inference server's metrics map onto the catalog's names and units.

vLLM (current and pre-rename names, `vllm:` and `vllm_` spellings), SGLang (`sglang:`
and `sglang_`), TGI, Triton, and Triton serving vLLM through its vLLM backend. A
mapping is data: which upstream sample feeds which catalog metric, how its unit
converts, and which label names the model and the outcome. One upstream sample may feed
several catalog series (Triton's success count is both the requests that succeeded and
the count behind its mean durations); a catalog series is fed by one generation of
names only, never by two at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from llm_slo_stack.exporters import catalog
from llm_slo_stack.exporters.catalog import TGI, VLLM, SGLang, Triton, TritonTRTLLM, VLLMLegacy

HISTOGRAM = "histogram"  # an upstream histogram family, bucket bounds scaled
COUNTER = "counter"  # one upstream sample, summed
GAUGE_SUM = "gauge_sum"  # a gauge that adds up over engines (requests running)
GAUGE_MEAN = "gauge_mean"  # a gauge that averages over engines (a usage ratio)
MEAN_ONLY = "mean_only"  # a sum counter over a count counter: a histogram with +Inf only
LORA_INFO = "lora_info"  # vLLM's LoRA report: the latest series' labels name the adapters
HISTOGRAM_KINDS = (HISTOGRAM, MEAN_ONLY)


@dataclass(frozen=True)
class Rule:
    """One upstream source of one catalog metric."""

    kind: str
    source: str  # histogram family name, or the full sample name (with _total, _sum)
    target: catalog.Metric
    scale: float = 1.0  # upstream unit to the catalog's base unit; -1 subtracts a counter
    outcome: str | None = None  # fixed outcome of llm_requests_total
    outcome_label: str | None = None  # upstream label whose values map to outcomes
    outcomes: Mapping[str, str] = field(default_factory=dict)
    outcome_default: str | None = None  # for a label value not in `outcomes`; None: skip it
    count: str | None = None  # MEAN_ONLY: the sample counting the events
    where: tuple[str, str] | None = None  # (label, value): only the samples with it
    # A pre-rename name some releases write beside the current one, with the same
    # observations: read only for a series the current name does not feed.
    superseded: bool = False


@dataclass(frozen=True)
class Backend:
    name: str
    model_label: str | None  # None: the server has no model label (TGI)
    rules: tuple[Rule, ...]
    dropped_labels: tuple[str, ...] = ()  # summed away, like vLLM's `engine`

    def wanted(self) -> dict[str, tuple[tuple[Rule, str], ...]]:
        """Every sample name this backend reads -> its (rule, part)s, in both spellings."""
        names: dict[str, tuple[tuple[Rule, str], ...]] = {}
        for rule in self.rules:
            if rule.kind == HISTOGRAM:
                parts = {
                    f"{rule.source}_bucket": "bucket",
                    f"{rule.source}_sum": "sum",
                    f"{rule.source}_count": "count",
                }
            elif rule.kind == MEAN_ONLY:
                assert rule.count is not None
                parts = {rule.source: "sum", rule.count: "count"}
            else:
                parts = {rule.source: "value"}
            for name, part in parts.items():
                # Some prometheus_client versions write `vllm_x` for `vllm:x` (client_python #1177).
                for spelling in dict.fromkeys((name, name.replace(":", "_"))):
                    names[spelling] = (*names.get(spelling, ()), (rule, part))
        return names


def _vllm_rules(legacy: bool) -> tuple[Rule, ...]:
    hist = [
        (VLLMLegacy.QUEUE if legacy else VLLM.QUEUE, catalog.REQUEST_QUEUE),
        (VLLM.PREFILL, catalog.REQUEST_PREFILL),
        (VLLM.TTFT, catalog.TIME_TO_FIRST_TOKEN),
        (VLLMLegacy.ITL if legacy else VLLM.ITL, catalog.INTER_TOKEN_LATENCY),
        (VLLM.DECODE, catalog.REQUEST_DECODE),
        (VLLM.E2E, catalog.E2E_REQUEST_LATENCY),
    ]
    if not legacy:
        hist += [
            (VLLM.TPOT, catalog.TIME_PER_OUTPUT_TOKEN),
            (VLLM.INFERENCE, catalog.REQUEST_INFERENCE),
        ]
    rules = [Rule(HISTOGRAM, source, target) for source, target in hist]
    prefix_cache = VLLMLegacy if legacy else VLLM
    rules += [
        Rule(COUNTER, f"{prefix_cache.PREFIX_CACHE_QUERIES}_total", catalog.PREFIX_CACHE_QUERIED),
        Rule(COUNTER, f"{prefix_cache.PREFIX_CACHE_HITS}_total", catalog.PREFIX_CACHE_HIT),
        Rule(COUNTER, f"{VLLM.SPEC_DRAFT_TOKENS}_total", catalog.SPEC_DECODE_DRAFT),
        Rule(COUNTER, f"{VLLM.SPEC_ACCEPTED_TOKENS}_total", catalog.SPEC_DECODE_ACCEPTED),
        Rule(COUNTER, f"{VLLM.PROMPT_TOKENS}_total", catalog.PROMPT_TOKENS),
        Rule(COUNTER, f"{VLLM.GENERATION_TOKENS}_total", catalog.GENERATION_TOKENS),
        Rule(COUNTER, f"{VLLM.PREEMPTIONS}_total", catalog.PREEMPTIONS),
        Rule(
            COUNTER,
            f"{VLLM.REQUEST_SUCCESS}_total",
            catalog.REQUESTS,
            outcome_label=VLLM.LABEL_FINISHED,
            outcomes=VLLM.FINISHED_OUTCOMES,
        ),  # fmt: skip
        Rule(
            COUNTER,
            f"{VLLM.ADMISSION_REJECTIONS}_total",
            catalog.REQUESTS,
            outcome=catalog.OUTCOME_REJECTED,
        ),
        Rule(LORA_INFO, VLLM.LORA_INFO, catalog.LORA_ADAPTERS),
        Rule(GAUGE_SUM, VLLM.RUNNING, catalog.REQUESTS_RUNNING),
        Rule(GAUGE_SUM, VLLM.WAITING, catalog.REQUESTS_WAITING),
        Rule(GAUGE_MEAN, VLLMLegacy.KV_CACHE if legacy else VLLM.KV_CACHE, catalog.KV_CACHE_USAGE),
    ]
    return tuple(rules)


# Current and pre-rename vLLM in one mapping. Some releases write both generations with
# the same observations (the deprecated ITL name beside the new one; the V0 engine's two
# queue histograms): the pre-rename rules are superseded, so nothing counts twice.
_VLLM_CURRENT = _vllm_rules(legacy=False)
_VLLM_LEGACY_ONLY = tuple(
    dataclasses.replace(r, superseded=True)
    for r in _vllm_rules(legacy=True)
    if r not in _VLLM_CURRENT
)

VLLM_BACKEND = Backend(
    "vllm", VLLM.LABEL_MODEL, _VLLM_CURRENT + _VLLM_LEGACY_ONLY, dropped_labels=(VLLM.LABEL_ENGINE,)
)


def _outcomes(
    success: str, failure: str, label: str, outcomes: Mapping[str, str]
) -> tuple[Rule, Rule]:
    """A success counter, and a failure counter whose `label` says the outcome; a reason
    not in `outcomes` is the server's failure (error)."""
    return (
        Rule(COUNTER, success, catalog.REQUESTS, outcome=catalog.OUTCOME_SUCCESS),
        Rule(
            COUNTER,
            failure,
            catalog.REQUESTS,
            outcome_label=label,
            outcomes=outcomes,
            outcome_default=catalog.OUTCOME_ERROR,
        ),
    )


TGI_BACKEND = Backend(
    "tgi",
    None,
    (
        Rule(HISTOGRAM, TGI.QUEUE, catalog.REQUEST_QUEUE),
        Rule(HISTOGRAM, TGI.E2E, catalog.E2E_REQUEST_LATENCY),
        Rule(COUNTER, f"{TGI.INPUT_LENGTH}_sum", catalog.PROMPT_TOKENS),
        Rule(COUNTER, f"{TGI.GENERATED_TOKENS}_sum", catalog.GENERATION_TOKENS),
        *_outcomes(TGI.SUCCESS, TGI.FAILURE, TGI.LABEL_ERR, TGI.FAILURE_OUTCOMES),
        Rule(GAUGE_SUM, TGI.QUEUE_SIZE, catalog.REQUESTS_WAITING),
        Rule(GAUGE_SUM, TGI.BATCH_SIZE, catalog.REQUESTS_RUNNING),
    ),
)

# SGLang 0.5.23 (sglang/srt/observability/metrics_collector.py, tokenizer_manager.py).
# It counts every finished request and, apart, the aborts: success is the difference,
# and an abort lands once, in `aborted`. A request the server failed finishes like any
# other there, so SGLang gives no `error` count; `rejected` neither.
SGLANG_BACKEND = Backend(
    "sglang",
    SGLang.LABEL_MODEL,
    (
        Rule(HISTOGRAM, SGLang.TTFT, catalog.TIME_TO_FIRST_TOKEN),
        Rule(HISTOGRAM, SGLang.ITL, catalog.INTER_TOKEN_LATENCY),
        Rule(HISTOGRAM, SGLang.TPOT, catalog.TIME_PER_OUTPUT_TOKEN),
        Rule(HISTOGRAM, SGLang.E2E, catalog.E2E_REQUEST_LATENCY),
        Rule(HISTOGRAM, SGLang.QUEUE, catalog.REQUEST_QUEUE),
        Rule(COUNTER, f"{SGLang.PROMPT_TOKENS}_total", catalog.PROMPT_TOKENS),
        # Every prompt token is looked up in the radix cache; the cached ones were found.
        Rule(COUNTER, f"{SGLang.PROMPT_TOKENS}_total", catalog.PREFIX_CACHE_QUERIED),
        Rule(COUNTER, f"{SGLang.CACHED_TOKENS}_total", catalog.PREFIX_CACHE_HIT),
        Rule(COUNTER, f"{SGLang.GENERATION_TOKENS}_total", catalog.GENERATION_TOKENS),
        Rule(COUNTER, f"{SGLang.RETRACTED_REQUESTS}_total", catalog.PREEMPTIONS),
        Rule(
            COUNTER, f"{SGLang.REQUESTS}_total", catalog.REQUESTS, outcome=catalog.OUTCOME_SUCCESS
        ),
        Rule(
            COUNTER,
            f"{SGLang.ABORTED}_total",
            catalog.REQUESTS,
            scale=-1.0,
            outcome=catalog.OUTCOME_SUCCESS,
        ),
        Rule(COUNTER, f"{SGLang.ABORTED}_total", catalog.REQUESTS, outcome=catalog.OUTCOME_ABORTED),
        Rule(GAUGE_SUM, SGLang.RUNNING, catalog.REQUESTS_RUNNING),
        Rule(GAUGE_SUM, SGLang.WAITING, catalog.REQUESTS_WAITING),
        Rule(GAUGE_MEAN, SGLang.TOKEN_USAGE, catalog.KV_CACHE_USAGE),
    ),
)

MICROSECONDS = 1e-6
MILLISECONDS = 1e-3
_TRITON_RULES = (
    # Triton's durations are cumulative microsecond counters: they give a mean, not
    # a distribution, so they become histograms with the +Inf bucket alone.
    Rule(MEAN_ONLY, Triton.QUEUE_US, catalog.REQUEST_QUEUE, MICROSECONDS, count=Triton.SUCCESS),
    Rule(
        MEAN_ONLY,
        Triton.REQUEST_US,
        catalog.E2E_REQUEST_LATENCY,
        MICROSECONDS,
        count=Triton.SUCCESS,
    ),
    Rule(HISTOGRAM, Triton.FIRST_RESPONSE_MS, catalog.TIME_TO_FIRST_TOKEN, MILLISECONDS),
    *_outcomes(Triton.SUCCESS, Triton.FAILURE, Triton.LABEL_REASON, Triton.FAILURE_OUTCOMES),
    Rule(GAUGE_SUM, Triton.PENDING, catalog.REQUESTS_WAITING),
)
TRITON_BACKEND = Backend("triton", Triton.LABEL_MODEL, _TRITON_RULES)

# Triton serving vLLM (triton-inference-server/vllm_backend 8de0c14, src/utils/metrics.py):
# vLLM's families carry Triton's `model` and `version` labels, and Triton counts the
# requests, so vLLM's own request counters (not written there anyway) are left out.
# Triton's mean-only e2e and its first-response histogram measure what vLLM's histograms
# do: they are read only where vLLM's are absent, never added to them.
_VLLM_MEASURES = {r.target for r in VLLM_BACKEND.rules}
TRITON_VLLM_BACKEND = Backend(
    "triton-vllm",
    Triton.LABEL_MODEL,
    tuple(
        dataclasses.replace(r, superseded=True)
        if r.target in _VLLM_MEASURES and r.target is not catalog.REQUESTS
        else r
        for r in _TRITON_RULES
    )
    + tuple(r for r in VLLM_BACKEND.rules if r.target is not catalog.REQUESTS),
)

# Triton serving TensorRT-LLM: Triton's own families, and the backend's gauges for the
# running batch, its own queue (after Triton's pending one: a request is in one or the
# other, so the two add up) and the KV cache.
T = TritonTRTLLM
TRITON_TRTLLM_BACKEND = Backend(
    "triton-trtllm",
    Triton.LABEL_MODEL,
    (
        *_TRITON_RULES,
        Rule(
            GAUGE_SUM, T.REQUESTS, catalog.REQUESTS_RUNNING, where=(T.LABEL_REQUEST_TYPE, T.ACTIVE)
        ),
        Rule(
            GAUGE_SUM, T.REQUESTS, catalog.REQUESTS_WAITING, where=(T.LABEL_REQUEST_TYPE, T.WAITING)
        ),
        Rule(
            GAUGE_MEAN,
            T.KV_CACHE,
            catalog.KV_CACHE_USAGE,
            where=(T.LABEL_KV_CACHE_TYPE, T.KV_FRACTION),
        ),
    ),
)

BACKENDS = MappingProxyType(
    {
        b.name: b
        for b in (
            VLLM_BACKEND, SGLANG_BACKEND, TGI_BACKEND, TRITON_BACKEND, TRITON_VLLM_BACKEND,
            TRITON_TRTLLM_BACKEND,
        )
    }
)  # fmt: skip
_MARKERS = {
    VLLM_BACKEND.name: ("vllm:", "vllm_"),
    SGLANG_BACKEND.name: ("sglang:", "sglang_"),
    TGI_BACKEND.name: ("tgi_",),
    TRITON_BACKEND.name: ("nv_inference_",),
}


def _has(text: str, prefixes: tuple[str, ...]) -> bool:
    return any(f"\n{prefix}" in text or text.startswith(prefix) for prefix in prefixes)


def detect(text: str) -> Backend | None:
    """The backend whose names appear in a payload (for --backend auto)."""
    found = {name for name, prefixes in _MARKERS.items() if _has(text, prefixes)}
    if {TRITON_BACKEND.name, VLLM_BACKEND.name} <= found:
        return TRITON_VLLM_BACKEND
    if TRITON_BACKEND.name in found and _has(text, ("nv_trt_llm_",)):
        return TRITON_TRTLLM_BACKEND
    for name in _MARKERS:
        if name in found:
            return BACKENDS[name]
    return None
