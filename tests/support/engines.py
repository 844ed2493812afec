"""/metrics payloads as the engines write them, with the observations they hold.

Each payload declares an engine's families with the names, label names and bucket bounds
of that engine's own source at a pinned version (cited per builder), renders them with
prometheus_client in the classic text format, as those engines do, and keeps the raw
observations. The tests compute every catalog series from the observations alone, so a
series counted twice or lost shows as a difference from that ground truth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from llm_slo_stack.exporters import catalog
from llm_slo_stack.exporters.catalog import VLLM, SGLang, VLLMLegacy
from llm_slo_stack.exporters.sidecar import SidecarCollector
from tests.support import loopback, scrape

# vLLM's default bucket families: the same in vllm 0.8.5's and 0.10.2's
# vllm/engine/metrics.py and 0.10.2's vllm/v1/metrics/loggers.py.
TTFT_BOUNDS = VLLM.TTFT_BUCKETS
ITL_BOUNDS = VLLM.ITL_BUCKETS
REQUEST_LATENCY_BOUNDS = VLLM.REQUEST_LATENCY_BUCKETS
ITERATION_TOKEN_BOUNDS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)

Labels = tuple[str, ...]
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]
OWN = {m.name.removesuffix("_total") for m in catalog.EXPORTER_METRICS}


def through_exporter(body: str, **options: object) -> scrape.Series:
    """Serve `body` as an upstream's /metrics over loopback HTTP, put the sidecar in front,
    scrape it once: what Prometheus would store."""
    with (
        loopback.http(loopback.payload(body)) as (upstream, _),
        loopback.exporter(SidecarCollector(upstream, **options)) as url,  # type: ignore[arg-type]
    ):
        return scrape.scrape(url)


def mapped(text: str, backend: str = "auto", model: str = "default") -> Series:
    """The catalog series the sidecar serves for a payload (its own health left out)."""
    return {
        k: v
        for k, v in through_exporter(text, backend=backend, model=model).items()
        if not any(k[0].startswith(own) for own in OWN)
    }


@dataclass
class Payload:
    """A rendered /metrics body and, per upstream family and label values, what it holds:
    the observations of a histogram, or the value of a counter or gauge."""

    source: str
    observations: dict[str, dict[Labels, list[float]]] = field(default_factory=dict)
    values: dict[str, dict[Labels, float]] = field(default_factory=dict)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def histogram(
        self,
        name: str,
        labelnames: Sequence[str],
        bounds: Sequence[float],
        observed: dict[Labels, list[float]],
    ) -> None:
        family = Histogram(
            name, name, list(labelnames), registry=self.registry, buckets=list(bounds)
        )
        for labels, values in observed.items():
            for value in values:
                family.labels(*labels).observe(value)
        self.observations[name] = observed

    def spelled(self, old: str, new: str) -> str:
        """The body with every family's prefix `old` written `new` (`sglang:` as `sglang_`)."""
        return "\n".join(
            line.replace(old, new) if line.startswith(("# HELP", "# TYPE", old)) else line
            for line in self.text.split("\n")
        )

    def counter(self, name: str, labelnames: Sequence[str], counts: Mapping[Labels, float]) -> None:
        family = Counter(name, name, list(labelnames), registry=self.registry)
        for labels, count in counts.items():
            family.labels(*labels).inc(count)
        self.values[name] = dict(counts)

    def gauge(self, name: str, labelnames: Sequence[str], levels: Mapping[Labels, float]) -> None:
        family = Gauge(name, name, list(labelnames), registry=self.registry)
        for labels, level in levels.items():
            family.labels(*labels).set(level)
        self.values[name] = dict(levels)

    @property
    def text(self) -> str:
        return generate_latest(self.registry).decode()


def vllm_both_generations() -> Payload:
    """vLLM 0.10.2's V1 engine, two data-parallel engines of model `qwen`, with the
    prefix cache and speculative decoding (three draft tokens per step) on.

    vllm/v1/metrics/loggers.py and vllm/v1/spec_decode/metrics.py (vllm 0.10.2 wheel):
    labels `model_name`, `engine`; the deprecated time-per-output-token histogram
    observes the same inter-token latencies as its successor (record(): both
    `.observe(itl)`), the deprecated GPU cache usage gauge is set to the same value as
    the KV cache usage gauge, and the deprecated `gpu_prefix_cache_*` counters count the
    same tokens as `prefix_cache_*`.
    """
    p = Payload("vllm 0.10.2, vllm/v1/metrics/loggers.py")
    names = (VLLM.LABEL_MODEL, VLLM.LABEL_ENGINE)
    e0: Labels = ("qwen", "0")
    e1: Labels = ("qwen", "1")
    itl = {e0: [0.02, 0.03, 0.3, 0.012], e1: [0.05, 0.2]}
    p.histogram(VLLM.TTFT, names, TTFT_BOUNDS, {e0: [0.2, 1.4], e1: [3.0]})
    p.histogram(VLLMLegacy.ITL, names, ITL_BOUNDS, itl)
    p.histogram(VLLM.ITL, names, ITL_BOUNDS, itl)
    for name, observed in (
        (VLLM.E2E, {e0: [1.2, 2.6], e1: [4.1]}),
        (VLLM.QUEUE, {e0: [0.1, 0.9], e1: [2.2]}),
        (VLLM.INFERENCE, {e0: [1.0, 1.6], e1: [1.8]}),
        (VLLM.PREFILL, {e0: [0.1, 0.4], e1: [0.7]}),
        (VLLM.DECODE, {e0: [0.9, 1.2], e1: [1.1]}),
    ):
        p.histogram(name, names, REQUEST_LATENCY_BOUNDS, observed)
    p.histogram(VLLM.ITERATION_TOKENS, names, ITERATION_TOKEN_BOUNDS, {e0: [8, 64]})
    # Lengths per request, on build_1_2_5_buckets(max_model_len): unmapped.
    lengths = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
    for name, observed in (
        (VLLM.REQUEST_PROMPT_TOKENS, {e0: [300.0, 600.0], e1: [300.0]}),
        (VLLM.REQUEST_GENERATION_TOKENS, {e0: [40.0, 80.0], e1: [40.0]}),
        (VLLM.REQUEST_MAX_GENERATION_TOKENS, {e0: [512.0, 512.0], e1: [256.0]}),
        (VLLM.REQUEST_PARAMS_MAX_TOKENS, {e0: [512.0, 512.0], e1: [256.0]}),
        (VLLM.REQUEST_PARAMS_N, {e0: [1.0, 1.0], e1: [1.0]}),
    ):
        p.histogram(name, names, lengths, observed)
    p.gauge(VLLM.CACHE_CONFIG, ("block_size", "cache_dtype"), {("16", "auto"): 1})
    p.gauge(VLLM.RUNNING, names, {e0: 3, e1: 2})
    p.gauge(VLLM.WAITING, names, {e0: 5, e1: 0})
    p.gauge(VLLMLegacy.KV_CACHE, names, {e0: 0.25, e1: 0.75})
    p.gauge(VLLM.KV_CACHE, names, {e0: 0.25, e1: 0.75})
    # Two LoRA reports: one series per report, set to its time (set_to_current_time()).
    p.gauge(
        VLLM.LORA_INFO,
        (VLLM.LABEL_MAX_LORA, VLLM.LABEL_WAITING_LORA, VLLM.LABEL_RUNNING_LORA),
        {("4", "", "sql"): 1_790_000_000.0, ("4", "chat-fr", "sql,summarise"): 1_790_000_060.5},
    )
    for name, counts in (
        (VLLMLegacy.PREFIX_CACHE_QUERIES, {e0: 1000, e1: 500}),
        (VLLMLegacy.PREFIX_CACHE_HITS, {e0: 400, e1: 100}),
        (VLLM.PREFIX_CACHE_QUERIES, {e0: 1000, e1: 500}),
        (VLLM.PREFIX_CACHE_HITS, {e0: 400, e1: 100}),
        (VLLM.SPEC_DRAFTS, {e0: 40, e1: 10}),
        (VLLM.SPEC_DRAFT_TOKENS, {e0: 120, e1: 30}),
        (VLLM.SPEC_ACCEPTED_TOKENS, {e0: 90, e1: 12}),
        (VLLM.PREEMPTIONS, {e0: 2, e1: 1}),
        (VLLM.PROMPT_TOKENS, {e0: 900, e1: 300}),
        (VLLM.GENERATION_TOKENS, {e0: 120, e1: 40}),
    ):
        p.counter(name, names, counts)
    p.counter(
        VLLM.SPEC_ACCEPTED_PER_POSITION,
        (*names, VLLM.LABEL_POSITION),
        {(*e0, "0"): 40, (*e0, "1"): 30, (*e0, "2"): 20, (*e1, "0"): 8, (*e1, "1"): 4},
    )
    p.counter(
        VLLM.REQUEST_SUCCESS,
        (*names, VLLM.LABEL_FINISHED),
        {(*e0, "stop"): 3, (*e0, "length"): 1, (*e0, "abort"): 2, (*e1, "stop"): 1},
    )
    return p


def vllm_v0_engine() -> Payload:
    """vLLM 0.8.5's V0 engine run with --show-hidden-metrics-for-version=0.8.

    vllm/engine/metrics.py (vllm 0.8.5 wheel): label `model_name` only; the deprecated
    time-in-queue histogram "duplicates" the request queue time histogram (both log each
    finished request's queue time); inter-token latency only under its pre-rename name.
    """
    p = Payload("vllm 0.8.5, vllm/engine/metrics.py")
    names = (VLLM.LABEL_MODEL,)
    m: Labels = ("llama",)
    queue = {m: [0.6, 0.2, 3.5]}
    p.histogram(VLLM.QUEUE, names, REQUEST_LATENCY_BOUNDS, queue)
    p.histogram(VLLMLegacy.QUEUE, names, REQUEST_LATENCY_BOUNDS, queue)
    p.histogram(VLLMLegacy.ITL, names, ITL_BOUNDS, {m: [0.02, 0.04, 0.08]})
    p.histogram(VLLM.TTFT, names, TTFT_BOUNDS, {m: [0.3, 0.7, 4.0]})
    for name, observed in (
        (VLLM.E2E, {m: [2.0, 1.1, 9.0]}),
        (VLLM.INFERENCE, {m: [1.4, 0.9, 5.5]}),
        (VLLM.PREFILL, {m: [0.1, 0.2, 0.5]}),
        (VLLM.DECODE, {m: [1.3, 0.7, 5.0]}),
    ):
        p.histogram(name, names, REQUEST_LATENCY_BOUNDS, observed)
    p.gauge(VLLM.RUNNING, names, {m: 2})
    p.gauge(VLLM.WAITING, names, {m: 1})
    p.gauge(VLLMLegacy.KV_CACHE, names, {m: 0.4})
    for name, counts in (
        (VLLM.PREEMPTIONS, {m: 1}),
        (VLLM.PROMPT_TOKENS, {m: 700}),
        (VLLM.GENERATION_TOKENS, {m: 90}),
    ):
        p.counter(name, names, counts)
    p.counter(
        VLLM.REQUEST_SUCCESS, (*names, VLLM.LABEL_FINISHED), {(*m, "stop"): 2, (*m, "length"): 1}
    )
    return p


def sglang_two_schedulers() -> Payload:
    """SGLang 0.5.23 serving `qwen` with two data-parallel schedulers.

    sglang/srt/observability/metrics_collector.py (sglang 0.5.23 wheel): the tokenizer's
    request families (labels `model_name`, `engine_type`, some `is_streaming`) and the
    schedulers' basics, token usage, retractions and queue time (also `tp_rank`,
    `pp_rank`, `moe_ep_rank`, `dp_rank`), with their default buckets. Every finished
    request counts in `num_requests_total`, an aborted one too (tokenizer_manager.py).
    The scheduler's disaggregation, hierarchical-cache, LoRA and storage families are
    not in this payload.
    """
    p = Payload("sglang 0.5.23, sglang/srt/observability/metrics_collector.py")
    tok = (SGLang.LABEL_MODEL, "engine_type")
    streamed = (*tok, "is_streaming")
    sched = (*tok, "tp_rank", "pp_rank", "moe_ep_rank", "dp_rank")
    t: Labels = ("qwen", "unified")
    yes: Labels = (*t, "true")
    no: Labels = (*t, "false")
    d0: Labels = (*t, "0", "0", "0", "0")
    d1: Labels = (*t, "0", "0", "0", "1")
    p.histogram(SGLang.TTFT, streamed, SGLang.TTFT_BUCKETS, {yes: [0.15, 0.5, 2.5], no: [1.5]})
    p.histogram(SGLang.ITL, tok, SGLang.ITL_BUCKETS, {t: [0.009, 0.012, 0.03, 0.5, 0.011]})
    p.histogram(SGLang.TPOT, streamed, SGLang.ITL_BUCKETS, {yes: [0.012, 0.02], no: [0.05]})
    p.histogram(SGLang.E2E, streamed, SGLang.E2E_BUCKETS, {yes: [1.2, 3.5, 30.0], no: [4.0]})
    p.histogram(SGLang.QUEUE, sched, SGLang.QUEUE_BUCKETS, {d0: [0.0, 0.3], d1: [1.5, 12.0]})
    for name, labelnames, counts in (
        (SGLang.PROMPT_TOKENS, streamed, {yes: 3000, no: 800}),
        (SGLang.GENERATION_TOKENS, streamed, {yes: 400, no: 120}),
        (SGLang.CACHED_TOKENS, (*tok, "cache_source"), {(*t, "device"): 1200, (*t, "host"): 300}),
        # Five finished, two of them aborted.
        (SGLang.REQUESTS, streamed, {yes: 4, no: 1}),
        (SGLang.ABORTED, tok, {t: 2}),
        (SGLang.STRUCTURED_REQUESTS, tok, {t: 1}),
        (SGLang.SPEC_VERIFY_CALLS, tok, {t: 0}),
        (SGLang.RETRACTED_REQUESTS, sched, {d0: 2, d1: 1}),
    ):
        p.counter(name, labelnames, counts)
    for name, levels in (
        (SGLang.RUNNING, {d0: 3, d1: 5}),
        (SGLang.WAITING, {d0: 1, d1: 0}),
        (SGLang.TOKEN_USAGE, {d0: 0.2, d1: 0.6}),
        (SGLang.GRAMMAR_QUEUE, {d0: 0, d1: 0}),
        (SGLang.GEN_THROUGHPUT, {d0: 812.5, d1: 640.0}),
        (SGLang.CACHE_HIT_RATE, {d0: 0.4, d1: 0.3}),
        (SGLang.SPEC_ACCEPT_RATE, {d0: 0.0, d1: 0.0}),
        (SGLang.SPEC_ACCEPT_LENGTH, {d0: 0.0, d1: 0.0}),
        (SGLang.RETRACTED_NOW, {d0: 0, d1: 1}),
    ):
        p.gauge(name, sched, levels)
    p.gauge(SGLang.STARTUP, (*tok, "phase"), {(*t, "load_weight"): 21.5})
    p.gauge(SGLang.STARTUP_CUDA_GRAPH, (*tok, "phase"), {(*t, "capture"): 8.0})
    # Token-length histograms (unmapped), with the first of their 35 default bounds.
    tokens = (100, 300, 500, 700, 1000, 1500, 2000, 3000, 4000)
    lengths: tuple[tuple[str, list[float]], ...] = (
        (SGLang.PROMPT_TOKENS_HISTOGRAM, [800, 1200, 1000, 600, 200]),
        (SGLang.UNCACHED_PROMPT_TOKENS_HISTOGRAM, [300, 900, 800, 500, 0]),
        (SGLang.GENERATION_TOKENS_HISTOGRAM, [100, 150, 120, 90, 60]),
    )
    for name, observed in lengths:
        p.histogram(name, tok, tokens, {t: observed})
    p.histogram(SGLang.GET_LOADS, tok, (0.0001, 0.001, 0.01, 0.1, 1.0), {t: [0.0004]})
    return p
