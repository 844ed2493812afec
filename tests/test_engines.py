"""Payloads as the engines write them, mapped by the sidecar, checked series by series
against the observations they hold: every catalog series is the sum of exactly the input
observations it stands for (none twice, none lost), and every input family is mapped or
listed, with its reason, among the unmapped."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from llm_slo_stack.exporters import backends, catalog
from llm_slo_stack.exporters.catalog import VLLM, SGLang, VLLMLegacy
from llm_slo_stack.exporters.sidecar import SidecarCollector
from tests.support import engines, scrape
from tests.support.engines import mapped
from tests.support.paths import FIXTURES, ROOT

Series = dict[tuple[str, frozenset[tuple[str, str]]], object]  # values or pytest.approx


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def histogram(
    metric: catalog.Metric,
    observations: dict[str, list[float]],
    bounds: Iterable[float],
    scale: float = 1.0,
) -> Series:
    """A catalog histogram per model from raw observations (in upstream units)."""
    out: Series = {}
    for model, values in observations.items():
        for bound in (*bounds, math.inf):
            le = floatToGoString(bound * scale if bound != math.inf else bound)
            out[key(metric.bucket, model=model, le=le)] = sum(v <= bound for v in values)
        out[key(metric.sum, model=model)] = pytest.approx(sum(values) * scale)
        out[key(metric.count, model=model)] = len(values)
    return out


def by_model(per_labels: dict[engines.Labels, list[float]]) -> dict[str, list[float]]:
    """Observations of every engine of a model together (the first label is the model)."""
    out: dict[str, list[float]] = defaultdict(list)
    for labels, values in per_labels.items():
        out[labels[0]] += values
    return dict(out)


def total(per_labels: dict[engines.Labels, float]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for labels, value in per_labels.items():
        out[labels[0]] += value
    return dict(out)


def vllm_expected(
    p: engines.Payload,
    histograms: Iterable[tuple[catalog.Metric, str, tuple[float, ...]]],
    scalars: Iterable[tuple[catalog.Metric, str]],
) -> Series:
    """The catalog series of each (metric, upstream family) pair, from the payload's
    observations and values, every engine of a model together."""
    expected: Series = {}
    for metric, family, bounds in histograms:
        expected |= histogram(metric, by_model(p.observations[family]), bounds)
    for metric, family in scalars:
        expected |= {key(metric.name, model=m): n for m, n in total(p.values[family]).items()}
    return expected


LATENCY = engines.REQUEST_LATENCY_BOUNDS
PHASES = (
    (catalog.TIME_TO_FIRST_TOKEN, VLLM.TTFT, engines.TTFT_BOUNDS),
    (catalog.E2E_REQUEST_LATENCY, VLLM.E2E, LATENCY),
    # The current queue name only: the pre-rename one, where written, holds the same.
    (catalog.REQUEST_QUEUE, VLLM.QUEUE, LATENCY),
    (catalog.REQUEST_PREFILL, VLLM.PREFILL, LATENCY),
    (catalog.REQUEST_DECODE, VLLM.DECODE, LATENCY),
)
COUNTS = (
    (catalog.REQUESTS_RUNNING, VLLM.RUNNING),
    (catalog.REQUESTS_WAITING, VLLM.WAITING),
    (catalog.PREEMPTIONS, VLLM.PREEMPTIONS),
    (catalog.PROMPT_TOKENS, VLLM.PROMPT_TOKENS),
    (catalog.GENERATION_TOKENS, VLLM.GENERATION_TOKENS),
)


def test_vllm_writing_both_metric_generations_counts_each_observation_once() -> None:
    p = engines.vllm_both_generations()
    # The new inter-token name only: the deprecated one holds the same observations.
    itl = (catalog.INTER_TOKEN_LATENCY, VLLM.ITL, engines.ITL_BOUNDS)
    inference = (catalog.REQUEST_INFERENCE, VLLM.INFERENCE, LATENCY)
    today = (
        # The current prefix-cache names only: the deprecated ones count the same tokens.
        (catalog.PREFIX_CACHE_QUERIED, VLLM.PREFIX_CACHE_QUERIES),
        (catalog.PREFIX_CACHE_HIT, VLLM.PREFIX_CACHE_HITS),
        (catalog.SPEC_DECODE_DRAFT, VLLM.SPEC_DRAFT_TOKENS),
        (catalog.SPEC_DECODE_ACCEPTED, VLLM.SPEC_ACCEPTED_TOKENS),
    )
    expected = vllm_expected(p, (*PHASES, itl, inference), (*COUNTS, *today))
    # A usage ratio is the mean over engines, from one of its two names.
    expected[key(catalog.KV_CACHE_USAGE.name, model="qwen")] = pytest.approx(0.5)
    expected |= {
        key(catalog.REQUESTS.name, model="qwen", outcome=catalog.OUTCOME_SUCCESS): 5,  # 3+1+1
        key(catalog.REQUESTS.name, model="qwen", outcome=catalog.OUTCOME_ABORTED): 2,
    }
    # The latest LoRA report (it has no model label: the sidecar's --model names it).
    running, waiting = catalog.STATE_RUNNING, catalog.STATE_WAITING
    expected |= {
        key(catalog.LORA_ADAPTERS_MAX.name, model="default"): 4,
        key(catalog.LORA_ADAPTERS.name, model="default", state=running): 2,
        key(catalog.LORA_ADAPTERS.name, model="default", state=waiting): 1,
        key(catalog.LORA_ADAPTER.name, model="default", adapter="sql", state=running): 1,
        key(catalog.LORA_ADAPTER.name, model="default", adapter="summarise", state=running): 1,
        key(catalog.LORA_ADAPTER.name, model="default", adapter="chat-fr", state=waiting): 1,
    }
    assert mapped(p.text) == expected


def test_lora_adapter_names_past_the_cap_fold_and_are_counted() -> None:
    collector = SidecarCollector("http://127.0.0.1:9/", backend="vllm", max_adapters=2)
    labels = f'{VLLM.LABEL_MAX_LORA}="8",{VLLM.LABEL_RUNNING_LORA}="a,b,c,d",{VLLM.LABEL_WAITING_LORA}=""'
    got = scrape.samples(collector.families(collector.read(f"{VLLM.LORA_INFO}{{{labels}}} 1.0\n")))
    active = {
        dict(k)[catalog.ADAPTER]: v
        for (name, k), v in got.items()
        if name == catalog.LORA_ADAPTER.name
    }
    assert active == {"a": 1, "b": 1, catalog.OVERFLOW_VALUE: 2}


def test_the_v0_engine_counts_each_queued_request_once() -> None:
    p = engines.vllm_v0_engine()
    # The pre-rename inter-token name is the only one this release writes: it is read.
    itl = (catalog.INTER_TOKEN_LATENCY, VLLMLegacy.ITL, engines.ITL_BOUNDS)
    inference = (catalog.REQUEST_INFERENCE, VLLM.INFERENCE, LATENCY)
    kv = (catalog.KV_CACHE_USAGE, VLLMLegacy.KV_CACHE)
    expected = vllm_expected(p, (*PHASES, itl, inference), (*COUNTS, kv))
    expected[key(catalog.REQUESTS.name, model="llama", outcome=catalog.OUTCOME_SUCCESS)] = 3
    assert mapped(p.text) == expected


@pytest.mark.parametrize("spelling", ["sglang:", "sglang_"])
def test_sglang_fills_the_series_vllm_does_each_observation_once(spelling: str) -> None:
    p = engines.sglang_two_schedulers()
    text = p.spelled("sglang:", spelling)
    expected = vllm_expected(
        p,
        (
            (catalog.TIME_TO_FIRST_TOKEN, SGLang.TTFT, SGLang.TTFT_BUCKETS),
            (catalog.INTER_TOKEN_LATENCY, SGLang.ITL, SGLang.ITL_BUCKETS),
            (catalog.TIME_PER_OUTPUT_TOKEN, SGLang.TPOT, SGLang.ITL_BUCKETS),
            (catalog.E2E_REQUEST_LATENCY, SGLang.E2E, SGLang.E2E_BUCKETS),
            (catalog.REQUEST_QUEUE, SGLang.QUEUE, SGLang.QUEUE_BUCKETS),
        ),
        (
            (catalog.PROMPT_TOKENS, SGLang.PROMPT_TOKENS),
            (catalog.PREFIX_CACHE_QUERIED, SGLang.PROMPT_TOKENS),
            (catalog.PREFIX_CACHE_HIT, SGLang.CACHED_TOKENS),
            (catalog.GENERATION_TOKENS, SGLang.GENERATION_TOKENS),
            (catalog.PREEMPTIONS, SGLang.RETRACTED_REQUESTS),
            (catalog.REQUESTS_RUNNING, SGLang.RUNNING),
            (catalog.REQUESTS_WAITING, SGLang.WAITING),
        ),
    )
    expected |= {
        key(catalog.KV_CACHE_USAGE.name, model="qwen"): pytest.approx(0.4),  # mean of 0.2, 0.6
        # Five finished, two of them aborted: each request in one class.
        key(catalog.REQUESTS.name, model="qwen", outcome=catalog.OUTCOME_SUCCESS): 3,
        key(catalog.REQUESTS.name, model="qwen", outcome=catalog.OUTCOME_ABORTED): 2,
    }
    assert mapped(text) == expected


def test_a_difference_counter_never_dips_between_scrapes_but_follows_a_restart() -> None:
    """SGLang counts an abort before its request finishes: for a moment the successes
    (finished minus aborted) are one fewer, which Prometheus would read as a restart."""
    collector = SidecarCollector("http://127.0.0.1:9/", backend="sglang")
    success = key(catalog.REQUESTS.name, model="m", outcome=catalog.OUTCOME_SUCCESS)

    def served(finished: int, aborted: int) -> float:
        text = (
            f'{SGLang.REQUESTS}_total{{model_name="m"}} {finished}\n'
            f'{SGLang.ABORTED}_total{{model_name="m"}} {aborted}\n'
        )
        return scrape.samples(collector.families(collector.read(text)))[success]

    assert served(10, 2) == 8
    assert served(10, 3) == 8  # the abort is counted, its request not finished yet: held
    assert served(11, 3) == 8
    assert served(14, 3) == 11
    assert served(2, 1) == 1  # the server restarted: its counters went down, and so does this


TRITON = FIXTURES / "triton_core.metrics"


def outcomes(model: str, success: int, rejected: int, aborted: int, error: int) -> Series:
    """A model's requests per outcome, as Triton's counters give them."""
    counts = {
        catalog.OUTCOME_SUCCESS: success,
        catalog.OUTCOME_REJECTED: rejected,
        catalog.OUTCOME_ABORTED: aborted,
        catalog.OUTCOME_ERROR: error,
    }
    return {key(catalog.REQUESTS.name, model=model, outcome=o): n for o, n in counts.items()}


def mean_only(metric: catalog.Metric, model: str, seconds: float, count: int) -> Series:
    """A duration Triton gives as a sum over successes: the +Inf bucket, sum and count."""
    return {
        key(metric.bucket, model=model, le="+Inf"): count,
        key(metric.sum, model=model): pytest.approx(seconds),
        key(metric.count, model=model): count,
    }


def test_triton_core_every_outcome_in_its_class_and_durations_over_successes() -> None:
    got = mapped(TRITON.read_text())
    expected: Series = {
        # Versions 1 and 2 of llama summed; reasons: REJECTED 2+3, CANCELED 4, BACKEND+OTHER 2.
        **outcomes("llama", success=50, rejected=5, aborted=4, error=2),
        **outcomes("embed", success=7, rejected=0, aborted=0, error=0),
        key(catalog.REQUESTS_WAITING.name, model="llama"): 4,
        key(catalog.REQUESTS_WAITING.name, model="embed"): 0,
        **mean_only(catalog.REQUEST_QUEUE, "llama", 2.5, 50),
        **mean_only(catalog.REQUEST_QUEUE, "embed", 0.007, 7),
        **mean_only(catalog.E2E_REQUEST_LATENCY, "llama", 100.0, 50),
        **mean_only(catalog.E2E_REQUEST_LATENCY, "embed", 0.07, 7),
    }
    ttft = catalog.TIME_TO_FIRST_TOKEN  # milliseconds to seconds
    for le, count in (("0.1", 10), ("0.5", 35), ("2.0", 40), ("5.0", 40), ("+Inf", 40)):
        expected[key(ttft.bucket, model="llama", le=le)] = count
    expected |= {
        key(ttft.sum, model="llama"): pytest.approx(9.0),
        key(ttft.count, model="llama"): 40,
    }
    assert got == expected


def test_triton_serving_vllm_keeps_both_families_and_triton_model_names() -> None:
    got = mapped((FIXTURES / "triton_vllm.metrics").read_text())
    expected: Series = {
        **outcomes("llama", success=20, rejected=1, aborted=2, error=1),
        **outcomes("qwen", success=5, rejected=0, aborted=0, error=0),
        key(catalog.REQUESTS_WAITING.name, model="llama"): 2,
        key(catalog.REQUESTS_WAITING.name, model="qwen"): 0,
        key(catalog.PROMPT_TOKENS.name, model="llama"): 800,
        key(catalog.PROMPT_TOKENS.name, model="qwen"): 100,
        key(catalog.GENERATION_TOKENS.name, model="llama"): 120,
        key(catalog.GENERATION_TOKENS.name, model="qwen"): 10,
        # Triton's queue has no vLLM counterpart there: its mean over successes.
        **mean_only(catalog.REQUEST_QUEUE, "llama", 0.4, 20),
        **mean_only(catalog.REQUEST_QUEUE, "qwen", 0.05, 5),
    }
    # vLLM's histograms, with the backend's copy of vLLM's V0 bucket sets; never Triton's
    # mean-only e2e on top.
    ttft = {"llama": [0.05, 0.2, 0.9, 3.0], "qwen": [0.1]}
    itl = {"llama": [0.02, 0.03, 0.05, 0.2, 0.04], "qwen": [0.01, 0.015]}
    e2e = {"llama": [1.0, 2.0, 6.0, 21.0], "qwen": [0.7]}
    expected |= histogram(catalog.TIME_TO_FIRST_TOKEN, ttft, VLLMLegacy.TTFT_BUCKETS)
    expected |= histogram(catalog.INTER_TOKEN_LATENCY, itl, VLLMLegacy.ITL_BUCKETS)
    expected |= histogram(catalog.E2E_REQUEST_LATENCY, e2e, VLLMLegacy.REQUEST_LATENCY_BUCKETS)
    assert got == expected


def test_tgi_every_series_and_failures_in_their_classes() -> None:
    """The fixture's values, series by series; TGI's mean time per token includes the
    prefill, so nothing feeds the catalog's TPOT."""
    got = mapped((FIXTURES / "tgi.metrics").read_text(), backend="auto", model="mistral")
    m = "mistral"
    r = catalog.REQUESTS.name
    expected: Series = {
        key(r, model=m, outcome=catalog.OUTCOME_SUCCESS): 12,
        key(r, model=m, outcome=catalog.OUTCOME_INVALID): 2,  # validation, template
        key(r, model=m, outcome=catalog.OUTCOME_REJECTED): 2,  # overloaded
        key(r, model=m, outcome=catalog.OUTCOME_ERROR): 3,  # generation, incomplete
        key(r, model=m, outcome=catalog.OUTCOME_ABORTED): 3,  # dropped
        key(catalog.PROMPT_TOKENS.name, model=m): 3400,  # the input length histogram's sum
        key(catalog.GENERATION_TOKENS.name, model=m): 2100,
        key(catalog.REQUESTS_WAITING.name, model=m): 3,
        key(catalog.REQUESTS_RUNNING.name, model=m): 4,
    }
    for metric, buckets, seconds in (
        (catalog.REQUEST_QUEUE, (("0.01", 5), ("0.1", 10), ("1.0", 12)), 0.75),
        (catalog.E2E_REQUEST_LATENCY, (("1.0", 2), ("5.0", 9), ("30.0", 12)), 48.5),
    ):
        for le, count in (*buckets, ("+Inf", 12)):
            expected[key(metric.bucket, model=m, le=le)] = count
        expected |= {
            key(metric.sum, model=m): pytest.approx(seconds),
            key(metric.count, model=m): 12,
        }
    assert got == expected


def test_triton_serving_tensorrt_llm_adds_the_backends_gauges_to_tritons_families() -> None:
    got = mapped((FIXTURES / "triton_trtllm.metrics").read_text())
    expected: Series = {
        **outcomes("ensemble", success=30, rejected=0, aborted=0, error=1),
        **outcomes("tensorrt_llm", success=30, rejected=0, aborted=0, error=1),
        **mean_only(catalog.REQUEST_QUEUE, "ensemble", 0.003, 30),
        **mean_only(catalog.REQUEST_QUEUE, "tensorrt_llm", 1.5, 30),
        **mean_only(catalog.E2E_REQUEST_LATENCY, "ensemble", 60.0, 30),
        **mean_only(catalog.E2E_REQUEST_LATENCY, "tensorrt_llm", 59.0, 30),
        key(catalog.REQUESTS_WAITING.name, model="ensemble"): 0,
        # Triton's pending 2, then the batch manager's own queue 3: a request is in one.
        key(catalog.REQUESTS_WAITING.name, model="tensorrt_llm"): 5,
        key(catalog.REQUESTS_RUNNING.name, model="tensorrt_llm"): 4,  # request_type="active"
        key(catalog.KV_CACHE_USAGE.name, model="tensorrt_llm"): pytest.approx(0.4875),
    }
    assert got == expected


@pytest.mark.parametrize(
    ("text", "backend"),
    [
        (lambda: engines.vllm_both_generations().text, "vllm"),
        (lambda: engines.vllm_v0_engine().text, "vllm"),
        (lambda: engines.sglang_two_schedulers().text, "sglang"),
        (lambda: TRITON.read_text(), "triton"),
        (lambda: (FIXTURES / "triton_vllm.metrics").read_text(), "triton-vllm"),
        (lambda: (FIXTURES / "triton_trtllm.metrics").read_text(), "triton-trtllm"),
        (lambda: (FIXTURES / "tgi.metrics").read_text(), "tgi"),
    ],
    ids=[
        "vllm-0.10.2",
        "vllm-0.8.5-v0",
        "sglang-0.5.23",
        "triton-core",
        "triton-vllm",
        "triton-trtllm",
        "tgi-3.3.6",
    ],
)
def test_every_input_family_is_mapped_or_listed_unmapped(text: object, backend: str) -> None:
    payload = text()  # type: ignore[operator]
    detected = backends.detect(payload)
    assert detected is not None and detected.name == backend
    wanted = detected.wanted()
    unknown = []
    for family in text_string_to_metric_families(payload):
        if family.name.endswith("_created"):
            continue  # prometheus_client's creation timestamps
        # The parser adds `_total` to counters that Triton and TGI write without it.
        samples = {n for s in family.samples for n in (s.name, s.name.removesuffix("_total"))}
        if not samples & set(wanted) and family.name not in catalog.UNMAPPED:
            unknown.append(family.name)
    assert unknown == []


def test_the_readme_lists_every_unmapped_family_with_its_reason() -> None:
    readme = (ROOT / "exporters" / "README.md").read_text()
    missing = [name for name in catalog.UNMAPPED if f"`{name}`" not in readme]
    assert missing == []


def revalued(text: str, factor: float) -> str:
    """The same payload with every sample's value scaled: the shape kept, new values."""
    return re.sub(
        r"^([^#\n][^\n]*) ([^ \n]+)$",
        lambda m: f"{m.group(1)} {float(m.group(2)) * factor!r}",
        text,
        flags=re.M,
    )


@pytest.mark.parametrize(
    "text",
    [
        lambda: engines.vllm_both_generations().text,
        lambda: engines.vllm_v0_engine().text,
        lambda: engines.sglang_two_schedulers().text,
        lambda: TRITON.read_text(),
        lambda: (FIXTURES / "triton_vllm.metrics").read_text(),
        lambda: (FIXTURES / "triton_trtllm.metrics").read_text(),
        lambda: (FIXTURES / "tgi.metrics").read_text(),
        lambda: (FIXTURES / "vllm_many_models.metrics").read_text(),
    ],
    ids=["vllm", "vllm-v0", "sglang", "triton", "triton-vllm", "triton-trtllm", "tgi", "many"],
)
def test_a_replayed_plan_gives_exactly_what_a_careful_read_gives(text: object) -> None:
    """The third payload of one shape is replayed from the plan the first two made; it
    must map to the very same floats as a fresh collector reading it line by line."""
    payload = text()  # type: ignore[operator]
    warm = SidecarCollector("http://127.0.0.1:9/", model="m", max_models=3)
    warm.read(payload)
    warm.read(revalued(payload, 2.0))
    replayed = warm.read(revalued(payload, 3.5))
    assert warm._plan is not None
    careful = SidecarCollector("http://127.0.0.1:9/", model="m", max_models=3)
    fresh = careful.read(revalued(payload, 3.5))
    assert scrape.samples(warm.families(replayed)) == scrape.samples(careful.families(fresh))
    assert (replayed.histograms, replayed.values, replayed.kinds, replayed.folded) == (
        fresh.histograms, fresh.values, fresh.kinds, fresh.folded,
    )  # fmt: skip
    # A payload of another shape is read line by line again, never replayed wrongly.
    other = payload.replace("\n", "\n# a comment\n", 1)
    assert scrape.samples(warm.families(warm.read(other))) == scrape.samples(
        careful.families(careful.read(other))
    )
