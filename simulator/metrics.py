"""The simulator's /metrics, in vLLM's own format: names, labels, buckets, `le` text.

Built with prometheus_client, as vLLM builds it, so the exposition matches byte for
byte in form. `legacy` writes the names from before the v1 engine renames, with only
the `model_name` label and the older, shorter buckets.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from llm_slo_stack.exporters.catalog import VLLM, VLLMLegacy
from llm_slo_stack.slo.buckets import valid_bounds

CURRENT = "current"
LEGACY = "legacy"
FLAVORS = (CURRENT, LEGACY)
# Families vLLM accepts in --custom-histogram-buckets; it refuses any other key.
BUCKET_FAMILIES = (
    "request_latency", "time_to_first_token", "inter_token_latency", "iteration_tokens",
    "request_params_n", "request_num_preemptions", "request_tokens", "kv_cache_residency",
)  # fmt: skip


def parse_custom_buckets(text: str) -> dict[str, tuple[float, ...]]:
    """vLLM's --custom-histogram-buckets JSON; ValueError says what is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object of family name to a list of bounds")
    result = {}
    for family, bounds in data.items():
        if family not in BUCKET_FAMILIES:
            raise ValueError(f"unknown family {family!r}; known: {', '.join(BUCKET_FAMILIES)}")
        if not valid_bounds(bounds):
            raise ValueError(f"{family}: expected strictly increasing positive finite bounds")
        result[family] = tuple(float(b) for b in bounds)
    return result


class VLLMMetrics:
    """vLLM's engine metrics for one served model, in a registry of their own."""

    def __init__(
        self,
        model_name: str,
        flavor: str = CURRENT,
        custom_buckets: dict[str, tuple[float, ...]] | None = None,
        running: Callable[[], float] = lambda: 0,
        waiting: Callable[[], float] = lambda: 0,
        kv_cache: Callable[[], float] = lambda: 0,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        legacy = flavor == LEGACY
        defaults = VLLMLegacy if legacy else VLLM
        custom = custom_buckets or {}
        ttft = custom.get(VLLM.FAMILY_TTFT, defaults.TTFT_BUCKETS)
        itl = custom.get(VLLM.FAMILY_ITL, defaults.ITL_BUCKETS)
        request = custom.get(VLLM.FAMILY_REQUEST_LATENCY, defaults.REQUEST_LATENCY_BUCKETS)
        names = [VLLM.LABEL_MODEL] if legacy else [VLLM.LABEL_MODEL, VLLM.LABEL_ENGINE]
        self.labels = {VLLM.LABEL_MODEL: model_name} if legacy else {
            VLLM.LABEL_MODEL: model_name, VLLM.LABEL_ENGINE: "0"
        }  # fmt: skip
        r = self.registry

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, names, buckets=buckets, registry=r).labels(**self.labels)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, names, registry=r).labels(**self.labels)

        self.ttft = histogram(VLLM.TTFT, "Histogram of time to first token in seconds.", ttft)
        self.itl = histogram(
            VLLMLegacy.ITL if legacy else VLLM.ITL,
            "Histogram of inter-token latency in seconds.",
            itl,
        )
        self.tpot = None if legacy else histogram(
            VLLM.TPOT, "Histogram of time_per_output_token_seconds per request.", itl
        )  # fmt: skip
        self.queue = histogram(
            VLLMLegacy.QUEUE if legacy else VLLM.QUEUE,
            "Histogram of time spent in WAITING phase for request.",
            request,
        )
        self.prefill = histogram(
            VLLM.PREFILL, "Histogram of time spent in PREFILL phase for request.", request
        )
        self.decode = histogram(
            VLLM.DECODE, "Histogram of time spent in DECODE phase for request.", request
        )
        self.inference = histogram(
            VLLM.INFERENCE, "Histogram of time spent in RUNNING phase for request.", request
        )
        self.e2e = histogram(VLLM.E2E, "Histogram of e2e request latency in seconds.", request)
        self.prompt_tokens = counter(VLLM.PROMPT_TOKENS, "Number of prefill tokens processed.")
        self.generation_tokens = counter(
            VLLM.GENERATION_TOKENS, "Number of generation tokens processed."
        )
        self.preemptions = counter(
            VLLM.PREEMPTIONS, "Cumulative number of preemption from the engine."
        )
        self._success = Counter(
            VLLM.REQUEST_SUCCESS, "Count of successfully processed requests.",
            [*names, VLLM.LABEL_FINISHED], registry=r,
        )  # fmt: skip
        self.rejections = None if legacy else Counter(
            VLLM.ADMISSION_REJECTIONS, "Requests rejected at admission.",
            [VLLM.LABEL_MODEL, "reason"], registry=r,
        ).labels(model_name=model_name, reason="queue_full")  # fmt: skip
        for name, doc, read in (
            (VLLM.RUNNING, "Number of requests in model execution batches.", running),
            (VLLM.WAITING, "Number of requests waiting to be processed.", waiting),
            (
                VLLMLegacy.KV_CACHE if legacy else VLLM.KV_CACHE,
                "KV-cache usage. 1 means 100 percent usage.",
                kv_cache,
            ),
        ):
            Gauge(name, doc, names, registry=r).labels(**self.labels).set_function(read)

    def finished(self, reason: str) -> None:
        """Count a finished request by vLLM's finished_reason (stop, length, abort, error)."""
        self._success.labels(**self.labels, finished_reason=reason).inc()
