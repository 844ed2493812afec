"""How each inference server's metrics map onto the catalog's names and units.

vLLM (current and pre-rename names, `vllm:` and `vllm_` spellings), TGI and Triton.
A mapping is data: which upstream sample feeds which catalog metric, how its unit
converts, and which label names the model and the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from llm_slo_stack.exporters import catalog
from llm_slo_stack.exporters.catalog import TGI, VLLM, Triton, VLLMLegacy

HISTOGRAM = "histogram"  # an upstream histogram family, bucket bounds scaled
COUNTER = "counter"  # one upstream sample, summed
GAUGE_SUM = "gauge_sum"  # a gauge that adds up over engines (requests running)
GAUGE_MEAN = "gauge_mean"  # a gauge that averages over engines (a usage ratio)
MEAN_ONLY = "mean_only"  # a sum counter over a count counter: a histogram with +Inf only
HISTOGRAM_KINDS = (HISTOGRAM, MEAN_ONLY)


@dataclass(frozen=True)
class Rule:
    """One upstream source of one catalog metric."""

    kind: str
    source: str  # histogram family name, or the full sample name (with _total, _sum)
    target: catalog.Metric
    scale: float = 1.0  # upstream unit to the catalog's base unit
    outcome: str | None = None  # fixed outcome of llm_requests_total
    outcome_label: str | None = None  # upstream label whose values map to outcomes
    outcomes: Mapping[str, str] = field(default_factory=dict)
    count: str | None = None  # MEAN_ONLY: the sample counting the events


@dataclass(frozen=True)
class Backend:
    name: str
    model_label: str | None  # None: the server has no model label (TGI)
    rules: tuple[Rule, ...]
    dropped_labels: tuple[str, ...] = ()  # summed away, like vLLM's `engine`

    def wanted(self) -> dict[str, tuple[Rule, str]]:
        """Every sample name this backend reads -> (rule, part), in both spellings."""
        names: dict[str, tuple[Rule, str]] = {}
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
                names.setdefault(name, (rule, part))
                # Some prometheus_client versions write `vllm_x` for `vllm:x` (client_python #1177).
                names.setdefault(name.replace(":", "_"), (rule, part))
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
        hist.append((VLLM.TPOT, catalog.TIME_PER_OUTPUT_TOKEN))
    rules = [Rule(HISTOGRAM, source, target) for source, target in hist]
    rules += [
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
        Rule(GAUGE_SUM, VLLM.RUNNING, catalog.REQUESTS_RUNNING),
        Rule(GAUGE_SUM, VLLM.WAITING, catalog.REQUESTS_WAITING),
        Rule(GAUGE_MEAN, VLLMLegacy.KV_CACHE if legacy else VLLM.KV_CACHE, catalog.KV_CACHE_USAGE),
    ]
    return tuple(rules)


# Current and pre-rename vLLM in one mapping: a server writes one set or the other.
_VLLM_CURRENT = _vllm_rules(legacy=False)
_VLLM_LEGACY_ONLY = tuple(r for r in _vllm_rules(legacy=True) if r not in _VLLM_CURRENT)

VLLM_BACKEND = Backend(
    "vllm", VLLM.LABEL_MODEL, _VLLM_CURRENT + _VLLM_LEGACY_ONLY, dropped_labels=(VLLM.LABEL_ENGINE,)
)

TGI_BACKEND = Backend(
    "tgi",
    None,
    (
        Rule(HISTOGRAM, TGI.QUEUE, catalog.REQUEST_QUEUE),
        Rule(HISTOGRAM, TGI.E2E, catalog.E2E_REQUEST_LATENCY),
        Rule(HISTOGRAM, TGI.TPOT, catalog.TIME_PER_OUTPUT_TOKEN),
        Rule(COUNTER, f"{TGI.INPUT_LENGTH}_sum", catalog.PROMPT_TOKENS),
        Rule(COUNTER, f"{TGI.GENERATED_TOKENS}_sum", catalog.GENERATION_TOKENS),
        Rule(COUNTER, TGI.SUCCESS, catalog.REQUESTS, outcome=catalog.OUTCOME_SUCCESS),
        Rule(COUNTER, TGI.FAILURE, catalog.REQUESTS, outcome=catalog.OUTCOME_ERROR),
        Rule(GAUGE_SUM, TGI.QUEUE_SIZE, catalog.REQUESTS_WAITING),
        Rule(GAUGE_SUM, TGI.BATCH_SIZE, catalog.REQUESTS_RUNNING),
    ),
)

MICROSECONDS = 1e-6
MILLISECONDS = 1e-3
TRITON_BACKEND = Backend(
    "triton",
    Triton.LABEL_MODEL,
    (
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
        Rule(COUNTER, Triton.SUCCESS, catalog.REQUESTS, outcome=catalog.OUTCOME_SUCCESS),
        Rule(COUNTER, Triton.FAILURE, catalog.REQUESTS, outcome=catalog.OUTCOME_ERROR),
        Rule(GAUGE_SUM, Triton.PENDING, catalog.REQUESTS_WAITING),
    ),
)

BACKENDS = MappingProxyType({b.name: b for b in (VLLM_BACKEND, TGI_BACKEND, TRITON_BACKEND)})
_MARKERS = (
    (VLLM_BACKEND, ("vllm:", "vllm_")),
    (TGI_BACKEND, ("tgi_",)),
    (TRITON_BACKEND, ("nv_inference_",)),
)


def detect(text: str) -> Backend | None:
    """The backend whose names appear in a payload (for --backend auto)."""
    for backend, prefixes in _MARKERS:
        if any(f"\n{prefix}" in text or text.startswith(prefix) for prefix in prefixes):
            return backend
    return None
