"""The sidecar exporter over real HTTP on loopback: against the simulator (current and
legacy vLLM), TGI and Triton payloads, and every fault an upstream can have."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from llm_slo_stack.exporters import catalog
from llm_slo_stack.exporters.catalog import VLLM
from llm_slo_stack.exporters.serving import exposition, parse_listen
from llm_slo_stack.exporters.sidecar import SidecarCollector
from llm_slo_stack.exporters.upstream import ScrapeError, metrics_url
from llm_slo_stack.simulator.latency import Profile
from llm_slo_stack.simulator.metrics import CURRENT, LEGACY
from llm_slo_stack.simulator.server import Config, create_app
from tests.support import engines, loopback
from tests.support.engines import through_exporter
from tests.support.paths import FIXTURES
from tests.support.scrape import Series, names, samples_of, scrape, value
from tests.support.serving import MODEL, REQUESTS, TOKENS, load


def serving(series: Series) -> set[str]:
    """Sample names that are not the exporter's own health."""
    own = {m.name.removesuffix("_total") for m in catalog.EXPORTER_METRICS}
    return {n for n in names(series) if not any(n.startswith(o) for o in own)}


def health(series: Series) -> tuple[float, dict[str, float]]:
    errors = {
        dict(labels)["reason"]: v
        for (name, labels), v in series.items()
        if name == catalog.EXPORTER_SCRAPE_ERRORS.name
    }
    return value(series, catalog.EXPORTER_UPSTREAM_UP.name), errors


@pytest.fixture
def simulator(request: pytest.FixtureRequest) -> Iterator[str]:
    flavor = getattr(request, "param", CURRENT)
    fast = Profile(prefill_overhead=0.002, prefill_per_token=0.0, itl=0.001)
    app = create_app(Config(served_model_name=MODEL, flavor=flavor, seed=7, profile=fast))
    with loopback.asgi(app) as url:
        yield url


def test_every_phase_histogram_is_exported_from_current_vllm(simulator: str) -> None:
    load(simulator)
    with loopback.exporter(SidecarCollector(simulator)) as url:
        series = scrape(url)
    assert value(series, catalog.EXPORTER_UPSTREAM_UP.name) == 1
    for metric in catalog.PHASES.values():
        assert metric.count in names(series), metric.name
    for metric in catalog.PHASES.values():
        if metric is not catalog.INTER_TOKEN_LATENCY:
            assert value(series, metric.count, model=MODEL) == REQUESTS, metric.name
            assert value(series, metric.bucket, model=MODEL, le="+Inf") == REQUESTS
    # One inter-token gap per token after the first.
    itl = value(series, catalog.INTER_TOKEN_LATENCY.count, model=MODEL)
    assert itl == REQUESTS * (TOKENS - 1)
    assert value(series, catalog.REQUESTS.name, model=MODEL, outcome="success") == REQUESTS
    assert value(series, catalog.GENERATION_TOKENS.name, model=MODEL) == REQUESTS * TOKENS
    # "two words" plus the chat template's 4 tokens for the one message.
    assert value(series, catalog.PROMPT_TOKENS.name, model=MODEL) == REQUESTS * 6
    # vLLM's own request-latency bounds come through, le written as Python writes it.
    e2e_bucket = frozenset({("model", MODEL), ("le", "0.3")})
    assert (catalog.E2E_REQUEST_LATENCY.bucket, e2e_bucket) in series
    # The engine label is summed away; nothing but model (and le, outcome) remains.
    labels = {k for (_, labelset) in series for k, _ in labelset}
    assert labels <= {"model", "le", "outcome", "reason", "label"}


@pytest.mark.parametrize("simulator", [LEGACY], indirect=True)
def test_legacy_vllm_names_map_onto_the_same_catalog_names(simulator: str) -> None:
    load(simulator)
    with loopback.exporter(SidecarCollector(simulator)) as url:
        series = scrape(url)
    # From vllm:time_in_queue_requests and vllm:time_per_output_token_seconds.
    assert value(series, catalog.REQUEST_QUEUE.count, model=MODEL) == REQUESTS
    assert value(series, catalog.INTER_TOKEN_LATENCY.count, model=MODEL) == REQUESTS * (TOKENS - 1)
    # From vllm:gpu_cache_usage_perc.
    assert value(series, catalog.KV_CACHE_USAGE.name, model=MODEL) == 0
    # Legacy buckets: request latency starts at 1 s.
    e2e_bucket = frozenset({("model", MODEL), ("le", "1.0")})
    assert (catalog.E2E_REQUEST_LATENCY.bucket, e2e_bucket) in series
    assert catalog.TIME_PER_OUTPUT_TOKEN.count not in names(series)  # no per-request TPOT then


def test_the_engine_label_can_be_kept(simulator: str) -> None:
    load(simulator, count=2)
    with loopback.exporter(SidecarCollector(simulator, keep_engine=True)) as url:
        series = scrape(url)
    assert value(series, catalog.TIME_TO_FIRST_TOKEN.count, model=MODEL, engine="0") == 2


def test_the_underscore_spelling_of_vllm_names_is_read_alike(simulator: str) -> None:
    load(simulator)
    colon = requests.get(f"{simulator}/metrics", timeout=10).text
    # What prometheus_client 0.23-0.26 write under OpenMetrics (client_python #1177).
    underscore = "\n".join(
        line.replace("vllm:", "vllm_", 1) if line.startswith("vllm:") else line
        for line in colon.split("\n")
    )
    first, second = through_exporter(colon), through_exporter(underscore)
    drop = {catalog.EXPORTER_SCRAPE_DURATION.name}
    assert {k: v for k, v in first.items() if k[0] not in drop} == {
        k: v for k, v in second.items() if k[0] not in drop
    }
    assert catalog.TIME_TO_FIRST_TOKEN.count in names(first)


def test_tgi_payload_maps_with_the_model_flag() -> None:
    body = (FIXTURES / "tgi.metrics").read_text()
    series = through_exporter(body, backend="tgi", model="mistral")
    assert value(series, catalog.REQUESTS.name, model="mistral", outcome="success") == 12
    # generation 2 + incomplete 1; validation and template are the client's: invalid.
    assert value(series, catalog.REQUESTS.name, model="mistral", outcome="error") == 3
    assert value(series, catalog.REQUESTS.name, model="mistral", outcome="invalid") == 2
    assert value(series, catalog.REQUEST_QUEUE.sum, model="mistral") == 0.75
    assert value(series, catalog.E2E_REQUEST_LATENCY.bucket, model="mistral", le="5.0") == 9
    assert value(series, catalog.PROMPT_TOKENS.name, model="mistral") == 3400
    assert value(series, catalog.GENERATION_TOKENS.name, model="mistral") == 2100
    assert value(series, catalog.REQUESTS_WAITING.name, model="mistral") == 3
    assert value(series, catalog.REQUESTS_RUNNING.name, model="mistral") == 4


def test_triton_microsecond_counters_become_seconds() -> None:
    series = through_exporter((FIXTURES / "triton_core.metrics").read_text())  # auto: Triton
    # Versions 1 and 2 summed: 2.5 s of queueing over 50 requests.
    assert value(series, catalog.REQUEST_QUEUE.sum, model="llama") == pytest.approx(2.5)
    assert value(series, catalog.REQUEST_QUEUE.count, model="llama") == 50
    assert value(series, catalog.REQUEST_QUEUE.bucket, model="llama", le="+Inf") == 50
    assert value(series, catalog.E2E_REQUEST_LATENCY.sum, model="llama") == pytest.approx(100)
    # First-response milliseconds become TTFT seconds: le="100" ms is le="0.1".
    assert value(series, catalog.TIME_TO_FIRST_TOKEN.bucket, model="llama", le="0.1") == 10
    assert value(series, catalog.TIME_TO_FIRST_TOKEN.sum, model="llama") == pytest.approx(9)
    assert value(series, catalog.REQUESTS.name, model="llama", outcome="error") == 2
    assert value(series, catalog.REQUESTS_WAITING.name, model="llama") == 4


def test_model_values_over_the_cap_fold_into_overflow_without_losing_data() -> None:
    body = (FIXTURES / "vllm_many_models.metrics").read_text()
    with (
        loopback.http(loopback.payload(body)) as (upstream, _),
        loopback.exporter(SidecarCollector(upstream, max_models=2)) as url,
    ):
        first = scrape(url)
        second = scrape(url)
    tokens = {
        dict(labels)["model"]: v
        for (name, labels), v in first.items()
        if name == catalog.PROMPT_TOKENS.name
    }
    assert tokens == {"a": 15, "b": 20, catalog.OVERFLOW_VALUE: 120}  # 30 + 40 + 50: none lost
    # c, d, e folded at each scrape; the cap is sticky, so a and b keep their places.
    assert value(first, catalog.EXPORTER_LABEL_OVERFLOW.name, label="model") == 3
    assert value(second, catalog.EXPORTER_LABEL_OVERFLOW.name, label="model") == 6
    # A ratio gauge averages over engines instead of adding up past 1.
    assert value(first, catalog.KV_CACHE_USAGE.name, model="a") == pytest.approx(0.4)


def test_a_server_that_is_down_is_up_0_refused() -> None:
    with loopback.exporter(SidecarCollector(f"http://127.0.0.1:{loopback.free_port()}")) as url:
        series = scrape(url)
    up, errors = health(series)
    assert up == 0 and errors["refused"] == 1
    assert serving(series) == set()


def test_a_slow_server_times_out_within_the_deadline(simulator: str) -> None:
    faults = {"metrics_delay_seconds": 3}
    requests.post(f"{simulator}/admin/faults", json=faults, timeout=5).raise_for_status()
    with loopback.exporter(SidecarCollector(simulator, timeout=0.5)) as url:
        start = time.monotonic()
        series = scrape(url)
        took = time.monotonic() - start
    up, errors = health(series)
    assert up == 0 and errors["timeout"] == 1
    assert took < 2.5  # the 0.5 s deadline plus at most one 1 s read, never the 3 s stall


def test_garbage_stale_values_and_recovery(simulator: str) -> None:
    load(simulator, count=2)
    faults = f"{simulator}/admin/faults"
    with loopback.exporter(SidecarCollector(simulator)) as url:
        assert catalog.TIME_TO_FIRST_TOKEN.count in names(scrape(url))
        requests.post(faults, json={"garbage_metrics": True}, timeout=5).raise_for_status()
        broken = scrape(url)
        requests.delete(faults, timeout=5).raise_for_status()
        healed = scrape(url)
    up, errors = health(broken)
    assert up == 0 and errors["bad_payload"] == 1
    assert serving(broken) == set()  # nothing stale served as fresh
    up, errors = health(healed)
    assert up == 1 and errors["bad_payload"] == 1  # the counter keeps the past error
    assert value(healed, catalog.TIME_TO_FIRST_TOKEN.count, model=MODEL) == 2


def test_an_http_error_and_a_cut_connection_are_counted_apart() -> None:
    body = (FIXTURES / "tgi.metrics").read_text()
    with (
        loopback.http(loopback.payload("oops", status=500)) as (upstream, behaviour),
        loopback.exporter(SidecarCollector(upstream)) as url,
    ):
        first = scrape(url)
        behaviour[0] = loopback.cut_short(body)
        second = scrape(url)
    up, errors = health(first)
    assert up == 0 and errors["http_status"] == 1 and errors["dropped"] == 0
    up, errors = health(second)
    assert up == 0 and errors["dropped"] == 1 and errors["http_status"] == 1


def test_a_payload_of_no_known_server_is_bad() -> None:
    up, errors = health(through_exporter("# just a comment\nsomething_else 1\n"))
    assert up == 0 and errors["bad_payload"] == 1


@pytest.mark.parametrize(
    ("target", "url"),
    [
        ("http://10.0.0.1:8000", "http://10.0.0.1:8000/metrics"),
        ("127.0.0.1:8000", "http://127.0.0.1:8000/metrics"),
        ("http://h:1/custom/metrics", "http://h:1/custom/metrics"),
    ],
)
def test_targets_are_base_or_metrics_urls(target: str, url: str) -> None:
    assert metrics_url(target) == url


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:9400") == ("127.0.0.1", 9400)
    assert parse_listen("[::1]:9400") == ("::1", 9400)
    assert parse_listen(":9400") == ("0.0.0.0", 9400)
    with pytest.raises(ValueError):
        parse_listen("localhost")


def test_vllm_finished_reasons_cover_every_outcome_but_rejected_and_invalid() -> None:
    outcomes = set(VLLM.FINISHED_OUTCOMES.values())
    assert outcomes == set(catalog.OUTCOMES) - {catalog.OUTCOME_REJECTED, catalog.OUTCOME_INVALID}


def running(collector: SidecarCollector, payload: str) -> float:
    snapshot = collector.read(payload)
    ((_, values),) = [
        (k, v) for k, v in snapshot.values.items() if k[0] == catalog.REQUESTS_RUNNING.name
    ]
    return sum(values)


def test_remembered_lines_take_each_scrapes_value_never_a_timestamp() -> None:
    """Where a line's value goes is remembered by the text before the value; a line
    with a timestamp must not be, or the timestamp would be read as the value."""
    collector = SidecarCollector("http://unused")
    gauge = f'{VLLM.RUNNING}{{engine="0",model_name="m"}}'
    assert running(collector, f"{gauge} 3\n") == 3
    assert running(collector, f"{gauge} 4\n") == 4  # the same line, a new value
    assert running(collector, f"{gauge} 5 1700000000000\n") == 5
    assert running(collector, f"{gauge} 5 1700000000001\n") == 5
    assert running(collector, f"{gauge} 6 1700000000002\n") == 6
    bare = VLLM.RUNNING
    assert running(collector, f"{bare} 7 1700000000003\n") == 7
    assert running(collector, f"{bare} 7 1700000000004\n") == 7


def test_a_remembered_line_with_a_garbage_value_is_still_bad() -> None:
    collector = SidecarCollector("http://unused")
    gauge = f'{VLLM.RUNNING}{{engine="0",model_name="m"}}'
    assert running(collector, f"{gauge} 3\n") == 3
    with pytest.raises(ScrapeError):
        collector.read(f"{gauge} three\n")


@pytest.mark.parametrize(
    "payload",
    [
        lambda: engines.vllm_both_generations().text,
        lambda: engines.sglang_two_schedulers().text,
        lambda: (FIXTURES / "triton_core.metrics").read_text(),
        lambda: (FIXTURES / "vllm_many_models.metrics").read_text(),
        # A model name needing escapes, and values that are not numbers.
        lambda: (
            f'{VLLM.RUNNING}{{engine="0",model_name="a\\\\b \\"q\\"\\nz"}} NaN\n'
            f'{VLLM.PREEMPTIONS}_total{{engine="0",model_name="m"}} +Inf\n'
            f'{VLLM.TTFT}_bucket{{engine="0",model_name="m",le="0.5"}} 1e+21\n'
            f'{VLLM.TTFT}_bucket{{engine="0",model_name="m",le="+Inf"}} 1e+21\n'
            f'{VLLM.TTFT}_count{{engine="0",model_name="m"}} 1e+21\n'
            f'{VLLM.TTFT}_sum{{engine="0",model_name="m"}} 0.000001\n'
        ),
    ],
    ids=["vllm", "sglang", "triton", "many-models", "escapes"],
)
def test_the_sidecars_own_text_is_byte_for_byte_what_prometheus_client_writes(
    payload: object,
) -> None:
    text = payload()  # type: ignore[operator]
    ours, reference = SidecarCollector("http://unused"), SidecarCollector("http://unused")
    written = ours.text(ours.read(text)).encode()
    assert written == exposition(reference.families(reference.read(text)))


def test_the_collector_in_a_registry_serves_what_render_does() -> None:
    """The sidecar is also a prometheus_client collector (collect()); registered in a
    registry it serves the same series as its own render(), but the scrape's duration."""
    from prometheus_client import CollectorRegistry, generate_latest

    body = (FIXTURES / "triton_core.metrics").read_text()
    with loopback.http(loopback.payload(body)) as (upstream, _):
        collector = SidecarCollector(upstream)
        registry = CollectorRegistry()
        registry.register(collector)
        collected = samples_of(generate_latest(registry).decode())
        rendered = samples_of(collector.render().decode())
    duration = catalog.EXPORTER_SCRAPE_DURATION.name
    assert {k: v for k, v in collected.items() if k[0] != duration} == {
        k: v for k, v in rendered.items() if k[0] != duration
    }
