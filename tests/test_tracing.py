"""Tracing on the serving path, against a real OTLP receiver over loopback: the proxy in
front of the simulator, spans and their parent/child links, the catalog histograms,
goodput, aborts, a collector that is down; and the middleware inside a plain app."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as OtlpStatus
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from llm_slo_stack.exporters import catalog
from llm_slo_stack.exporters.catalog import VLLM
from llm_slo_stack.simulator.latency import Profile
from llm_slo_stack.simulator.server import Config
from llm_slo_stack.simulator.server import create_app as simulator_app
from llm_slo_stack.slo import spec
from llm_slo_stack.tracing import middleware as middleware_module
from llm_slo_stack.tracing import provider
from llm_slo_stack.tracing.middleware import (
    FIRST_TOKEN_EVENT,
    OUTCOME_ATTRIBUTE,
    PEEK_LIMIT,
    LLMTracingMiddleware,
    Targets,
)
from llm_slo_stack.tracing.proxy import create_app as proxy_app
from tests.support import gateway, loopback, otlp
from tests.support.paths import ROOT
from tests.support.sampling import Recording
from tests.support.scrape import Series, samples, scrape, value
from tests.support.serving import PROMPT, chat
from tests.support.serving import TRACE_MODEL as MODEL
from tests.support.serving import TRACE_TOKENS as TOKENS

FAST = Profile(prefill_overhead=0.002, prefill_per_token=0.0, itl=0.001, itl_jitter=0.0)


@contextmanager
def stack(
    receiver_url: str, targets: Targets | None = None, profile: Profile = FAST
) -> Iterator[tuple[str, str, CollectorRegistry, list[TracerProvider]]]:
    """The simulator (writing vLLM's request spans) behind the proxy; both export over OTLP/HTTP."""
    sim_tracing = provider.configure("vllm", receiver_url, provider.HTTP)
    proxy_tracing = provider.configure("llm-trace-proxy", receiver_url, provider.HTTP)
    registry = CollectorRegistry()
    simulator = simulator_app(Config(served_model_name=MODEL, seed=5, profile=profile), sim_tracing)
    with loopback.asgi(simulator) as upstream:
        proxy = proxy_app(upstream, proxy_tracing, registry, targets)
        with loopback.asgi(proxy) as front:
            yield front, upstream, registry, [proxy_tracing, sim_tracing]
    for tracing in (proxy_tracing, sim_tracing):
        tracing.shutdown()


def settled(base: str, name: str, expected: float, **labels: str) -> Series:
    """The proxy's metrics once `name{labels}` reaches `expected` (within 5 s): a request
    is counted just after its last byte reaches the client."""
    deadline = time.monotonic() + 5
    metrics = scrape(f"{base}/metrics")
    while (
        metrics.get((name, frozenset(labels.items()))) != expected and time.monotonic() < deadline
    ):
        time.sleep(0.02)
        metrics = scrape(f"{base}/metrics")
    return metrics


def test_spans_link_proxy_and_server_and_histograms_count_every_request() -> None:
    with otlp.receiver() as (url, got), stack(url) as (front, upstream, registry, tracings):
        for index in range(4):
            chat(front, stream=index % 2 == 0)
        parent_trace, parent_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
        chat(front, headers={"traceparent": f"00-{parent_trace}-{parent_span}-01"})
        metrics = settled(front, catalog.CLIENT_REQUESTS.name, 5, model=MODEL, outcome="success")
        for tracing in tracings:
            tracing.force_flush()
        proxy_spans = got.wait_for(f"chat {MODEL}", 5)
        server_spans = got.wait_for(VLLM.SPAN, 5)
    assert len(proxy_spans) == 5 and len(server_spans) == 5
    incoming = {s.span_id: s for s in got.named("POST /v1/chat/completions")}
    by_id = {s.span_id: s for s in proxy_spans}
    for server_span in server_spans:  # each vLLM-like span is the child of a proxy's call
        parent = by_id[server_span.parent_span_id]
        assert parent.trace_id == server_span.trace_id
        assert server_span.service == "vllm" and server_span.kind == OtlpSpan.SPAN_KIND_SERVER
        assert server_span.attributes["gen_ai.usage.completion_tokens"] == TOKENS
        assert server_span.attributes["gen_ai.latency.time_to_first_token"] > 0
    # The proxy's SERVER span for the incoming request, its CLIENT span for the call to
    # the model server; the client's own traceparent makes the SERVER span its child.
    for call in proxy_spans:
        assert incoming[call.parent_span_id].kind == OtlpSpan.SPAN_KIND_SERVER
    (continued,) = [s for s in incoming.values() if s.trace_id == parent_trace]
    assert continued.parent_span_id == parent_span
    upstream_port = int(upstream.rsplit(":", 1)[1])
    for span in proxy_spans:
        a = span.attributes
        assert span.service == "llm-trace-proxy" and span.kind == OtlpSpan.SPAN_KIND_CLIENT
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == MODEL
        assert a["server.address"] == "127.0.0.1" and a["server.port"] == upstream_port
        assert a["gen_ai.response.model"] == MODEL and a["gen_ai.request.max_tokens"] == TOKENS
        assert a["gen_ai.usage.output_tokens"] == TOKENS and a["gen_ai.usage.input_tokens"] == 7
        assert a["gen_ai.response.finish_reasons"] == ["length"]
        assert a[OUTCOME_ATTRIBUTE] == "success"
        assert PROMPT not in json.dumps(a)  # no prompt text unless asked for
        if a["gen_ai.request.stream"]:
            assert a["gen_ai.response.time_to_first_chunk"] > 0
            assert FIRST_TOKEN_EVENT in span.events
        else:  # a whole answer at once: the client saw no first chunk before the last
            assert "gen_ai.response.time_to_first_chunk" not in a
    # 3 streamed answers (TTFT, gaps, TPOT) and 2 whole ones (end to end only).
    assert value(metrics, catalog.CLIENT_TIME_TO_FIRST_TOKEN.count, model=MODEL) == 3
    assert value(metrics, catalog.CLIENT_E2E_REQUEST_LATENCY.count, model=MODEL) == 5
    assert value(metrics, catalog.CLIENT_TIME_PER_OUTPUT_TOKEN.count, model=MODEL) == 3
    assert value(metrics, catalog.CLIENT_REQUESTS.name, model=MODEL, outcome="success") == 5
    assert value(metrics, catalog.CLIENT_INTER_TOKEN_LATENCY.count, model=MODEL) == 3 * (TOKENS - 1)
    # Tokens from each answer's usage: the simulator counts 7 prompt tokens for PROMPT.
    assert value(metrics, catalog.CLIENT_PROMPT_TOKENS.name, model=MODEL) == 5 * 7
    assert value(metrics, catalog.CLIENT_GENERATION_TOKENS.name, model=MODEL) == 5 * TOKENS
    # The client's view has its own names: none of the server's series come from here.
    assert not {name for name, _ in metrics} & {
        n for m in catalog.METRICS for n in (m.name, m.bucket, m.count, m.sum)
    }


def test_goodput_counts_the_requests_that_met_both_targets() -> None:
    targets = Targets(ttft=1.0, tpot=0.05)  # the fast requests take ~3 ms and ~1 ms a token
    with otlp.receiver() as (url, _), stack(url, targets) as (front, upstream, registry, _):
        for _ in range(3):
            chat(front)
        # 100x slower tokens (~100 ms each): TTFT still met, TPOT not.
        requests.post(f"{upstream}/admin/faults", json={"latency_multiplier": 100}, timeout=5)
        for _ in range(2):
            chat(front, max_tokens=3)
        metrics = settled(front, catalog.CLIENT_REQUESTS.name, 5, model=MODEL, outcome="success")
    assert value(metrics, catalog.CLIENT_REQUESTS.name, model=MODEL, outcome="success") == 5
    assert value(metrics, catalog.REQUESTS_GOODPUT.name, model=MODEL) == 3


def test_a_whole_answer_meets_its_targets_by_the_deadline_of_a_compliant_stream() -> None:
    targets = Targets(ttft=2.0, tpot=0.2)
    # 11 tokens: a stream meeting both targets ends by 2 + 10 x 0.2 = 4 s.
    assert targets.within(3.99, 11) and not targets.within(4.01, 11)
    assert targets.within(1.9, 1) and not targets.within(2.1, 1)  # one token: the TTFT alone
    assert Targets(tpot=0.2).within(1e6, 11)  # no TTFT target: no deadline


def test_targets_come_from_the_slo_file() -> None:
    targets = Targets.from_spec(spec.load(ROOT / "slo" / "default.yaml"))
    assert targets == Targets(ttft=2.0, tpot=0.2)  # no tpot SLO there: the itl threshold
    assert targets.met(1.9, 0.19) and not targets.met(2.1, 0.1) and not targets.met(1.0, 0.3)


def test_a_goodput_slo_sets_the_targets_its_goodput_is_judged_by() -> None:
    """The goodput SLI's own targets win over the latency SLOs' thresholds: the proxy
    counts goodput by exactly what the SLO promises."""
    text = (ROOT / "slo" / "default.yaml").read_text()
    text += "  - name: goodput\n    objective: 95\n    sli: {goodput: {ttft: 1s, tpot: 50ms}}\n"
    assert Targets.from_spec(spec.loads(text, "chat.yaml")) == Targets(ttft=1.0, tpot=0.05)
    only_ttft = text.replace("{ttft: 1s, tpot: 50ms}", "{ttft: 1s}")
    assert Targets.from_spec(spec.loads(only_ttft, "chat.yaml")) == Targets(ttft=1.0, tpot=None)


def test_a_client_that_goes_away_ends_the_span_aborted_and_cancels_upstream() -> None:
    slow = Profile(prefill_overhead=0.002, prefill_per_token=0.0, itl=0.03, itl_jitter=0.0)
    with otlp.receiver() as (url, got), stack(url, profile=slow) as (front, upstream, _, tracings):
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 200,
            "stream": True,
        }
        with requests.post(
            f"{front}/v1/chat/completions", json=body, stream=True, timeout=30
        ) as answer:
            assert any(b"tok0" in line for line in answer.iter_lines())  # then hang up
        # The simulator sees its request cancelled, well before its 200 tokens (6 s).
        deadline = time.monotonic() + 5
        abort = (
            f"{VLLM.REQUEST_SUCCESS}_total",
            frozenset({("model_name", MODEL), ("engine", "0"), ("finished_reason", "abort")}),
        )
        while scrape(f"{upstream}/metrics").get(abort, 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert scrape(f"{upstream}/metrics").get(abort, 0) == 1
        metrics = settled(front, catalog.CLIENT_REQUESTS.name, 1, model=MODEL, outcome="aborted")
        tracings[0].force_flush()
        (span,) = got.wait_for(f"chat {MODEL}", 1)
    assert value(metrics, catalog.CLIENT_REQUESTS.name, model=MODEL, outcome="aborted") == 1
    assert (
        span.attributes[OUTCOME_ATTRIBUTE] == "aborted"
        and span.attributes["error.type"] == "aborted"
    )


def test_a_collector_that_is_down_never_delays_a_request() -> None:
    dead = f"http://127.0.0.1:{loopback.free_port()}"
    with stack(dead) as (front, _, registry, _):
        chat(front)  # warm up connections
        times = []
        for _ in range(20):
            start = time.monotonic()
            chat(front)
            times.append(time.monotonic() - start)
        metrics = settled(front, catalog.CLIENT_REQUESTS.name, 21, model=MODEL, outcome="success")
    assert max(times) < 0.5  # each takes ~10 ms; an export attempt would take 5 s
    assert value(metrics, catalog.CLIENT_REQUESTS.name, model=MODEL, outcome="success") == 21


# The middleware inside a plain Starlette app, spans to a real OTLP receiver.

# How servers end a stream that failed after its first token, each answered 200 and
# followed by `data: [DONE]`, by the model the test asks for.
FAILED_MIDWAY = {
    # vllm 0.10.2 wheel, vllm/entrypoints/openai/serving_chat.py: an exception in the
    # stream generator becomes create_streaming_error_response(str(e)) (serving_engine.py:
    # json.dumps of ErrorResponse(error=ErrorInfo(message, type="BadRequestError", code=400))).
    "vllm-error": b'data: {"error": {"message": "Expected 2 output tokens, got 1", '
    b'"type": "BadRequestError", "param": null, "code": 400}}\n\n',
    # TGI 3.3.7 (huggingface/text-generation-inference@db931fc), router/src/server.rs: an
    # InferError on an OpenAI route becomes into_openai_event() (router/src/infer/mod.rs).
    "tgi-error": b'data: {"error":{"message":"Request failed during generation: CUDA '
    b'error","http_status_code":422}}\n\n',
    # vllm 0.10.2, vllm/v1/engine/__init__.py: FinishReason.ABORT, "aborted for another
    # reason" than the client leaving, which the server-side view counts as aborted.
    "server-abort": b'data: {"id":"x3","model":"server-abort","choices":[{"index":0,'
    b'"delta":{"content":""},"finish_reason":"abort"}]}\n\n',
}


THINK = 0.5  # seconds a reasoning model thinks, by its answer's time, before answering


def vllm_chunk(model: str, delta: str, finish: str | None = None) -> bytes:
    """A vLLM chat chunk with this delta, as vllm 0.10.2's serving_chat.py writes it
    (protocol.py's field order, exclude_unset; the last token's also has stop_reason),
    and as 0.34.0's does."""
    ending = (
        f'"finish_reason":"{finish}","stop_reason":null,"token_ids":null'
        if finish
        else '"finish_reason":null,"token_ids":null'
    )
    return (
        f'{{"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"{model}",'
        f'"choices":[{{"index":0,"delta":{delta},"logprobs":null,{ending}}}]}}'
    ).encode()


def vllm_event(model: str, delta: str, finish: str | None = None) -> bytes:
    return b"data: " + vllm_chunk(model, delta, finish) + b"\n\n"


# Streams whose output is not all answer text, as vLLM 0.10.2 writes them: (seconds to
# wait, chunk). A reasoning parser's thoughts come as reasoning_content, a tool parser's
# call as tool_calls (DeltaToolCall: id, type and name first, then the arguments).
def generated_streams(model: str) -> list[tuple[float, bytes]]:
    role = vllm_event(model, '{"role":"assistant","content":""}')
    usage = (
        f'data: {{"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"{model}",'
        f'"choices":[],"usage":{{"prompt_tokens":4,"total_tokens":9,"completion_tokens":5}}}}\n\n'
    ).encode()
    if model == "reasoner":
        thoughts = [vllm_event(model, f'{{"reasoning_content":"{t}"}}') for t in ("Hm", ",", " ok")]
        answer = [
            vllm_event(model, '{"content":"Yes"}'),
            vllm_event(model, '{"content":"."}', "stop"),
        ]
        return [
            (0, role),
            *((0, c) for c in thoughts),
            (THINK, answer[0]),
            (0, answer[1]),
            (0, usage),
        ]
    call = '{"tool_calls":[{"id":"chatcmpl-tool-1","type":"function","index":0,"function":{"name":"f"}}]}'
    arguments = '{"tool_calls":[{"index":0,"function":{"arguments":"{\\"a\\": 1"}}]}'
    return [
        (0, role),
        (0, vllm_event(model, call)),
        (0, vllm_event(model, arguments)),
        (0, vllm_event(model, '{"tool_calls":[{"index":0,"function":{"arguments":"}"}}]}')),
        (0, vllm_event(model, "{}", "tool_calls")),
        (0, usage),
    ]


async def stream_app(request: Request) -> Response:
    body = await request.json()
    if body.get("model") in ("reasoner", "tool-caller"):
        paced = [*generated_streams(body["model"]), (0.0, b"data: [DONE]\n\n")]

        async def generated() -> Iterator[bytes]:  # type: ignore[misc]
            for pause, chunk in paced:
                await asyncio.sleep(pause)
                yield chunk

        return StreamingResponse(generated(), media_type="text/event-stream")
    if body.get("model") in FAILED_MIDWAY:
        model = body["model"]
        token = {"id": "x3", "model": model, "choices": [{"index": 0, "delta": {"content": "a"}}]}
        sent = (
            f"data: {json.dumps(token)}\n\n".encode(),
            FAILED_MIDWAY[model],
            b"data: [DONE]\n\n",
        )

        async def failing() -> Iterator[bytes]:  # type: ignore[misc]
            for chunk in sent:
                yield chunk

        return StreamingResponse(failing(), media_type="text/event-stream")
    if body.get("model") == "boom":
        raise RuntimeError("the app failed")
    if body.get("model") == "reasoner-whole":  # vLLM 0.10.2's ChatMessage.reasoning_content
        message = {"role": "assistant", "content": "Yes.", "reasoning_content": "Hm, ok"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return JSONResponse({"id": "chatcmpl-8", "model": "reasoner-whole", "choices": [choice]})
    if body.get("model") == "lb-page":  # what a load balancer in front answers
        return HTMLResponse("<html><body><h1>502 Bad Gateway</h1></body></html>", 502)
    if body.get("model") == "busy":
        return JSONResponse({"error": "overloaded"}, status_code=503)
    if body.get("model") == "bad":
        return JSONResponse({"error": "bad request"}, status_code=400)
    if str(body.get("model")).startswith("nope"):
        return JSONResponse({"error": "no such model"}, status_code=404)
    if body.get("model") == "crlf":  # sse-starlette's framing, split mid line ending
        first = (
            b'data: {"id":"x2","model":"crlf","choices":[{"index":0,"delta":{"content":"a"}}]}\r'
        )
        rest = (
            b'\n\r\ndata: {"id":"x2","model":"crlf","choices":[{"index":0,"delta":{"content":"b"},'
            b'"finish_reason":"stop"}]}\r\rdata: [DONE]\r\n\r\n'
        )
        chunks = (first, rest)

        async def crlf() -> Iterator[bytes]:  # type: ignore[misc]
            for chunk in chunks:
                yield chunk

        return StreamingResponse(crlf(), media_type="text/event-stream")

    async def events() -> Iterator[bytes]:  # type: ignore[misc]
        yield b'data: {"id":"x1","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}\n\n'
        yield b"data: {not json}\n\n" if body.get("model") == "garbled" else b""
        yield b'data: {"id":"x1","model":"m","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}\n\n'
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture
def plain() -> Iterator[tuple[str, otlp.Receiver, CollectorRegistry]]:
    registry = CollectorRegistry()
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", stream_app, methods=["POST"]),
            Route("/health", lambda r: Response("ok")),
        ]
    )
    with otlp.exported() as (tracer_provider, got):
        wrapped = LLMTracingMiddleware(
            app, tracer_provider=tracer_provider, registry=registry, capture_content=True
        )
        with loopback.asgi(wrapped) as base:
            yield base, got, registry


def finished(got: otlp.Receiver, count: int) -> list[otlp.ReceivedSpan]:
    """The spans received, once there are `count`: a span ends just after the last byte
    reaches the client, so a test may ask a moment too early."""
    deadline = time.monotonic() + 5
    while len(got.spans) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    with got.lock:
        return list(got.spans)


def post(base: str, model: str) -> requests.Response:
    return requests.post(
        f"{base}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )


@pytest.mark.parametrize("peek_limit", [PEEK_LIMIT, 16])
def test_a_sampler_sees_the_model_at_the_start_and_the_app_the_body_as_sent(
    peek_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The middleware reads the body before the app (a chunked upload, several
    messages) so that the root span shows its sampler the model; the app still reads
    the body whole. A body past the peek limit is left to the app: no model at start,
    the same answer, the model on the span at its end."""
    monkeypatch.setattr(middleware_module, "PEEK_LIMIT", peek_limit)
    sampler = Recording()
    app = Starlette(routes=[Route("/v1/chat/completions", stream_app, methods=["POST"])])
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi" * 50}]})

    def upload() -> Iterator[bytes]:  # chunked, a pause between parts: one message each
        for at in range(0, len(body), 40):
            time.sleep(0.01)
            yield body[at : at + 40].encode()

    with otlp.exported(sampler) as (tracer_provider, got):
        wrapped = LLMTracingMiddleware(app, tracer_provider=tracer_provider)
        with loopback.asgi(wrapped) as base:
            answer = requests.post(f"{base}/v1/chat/completions", data=upload(), timeout=10)
            (span,) = finished(got, 1)
    assert answer.status_code == 200 and "lo" in answer.text  # the app parsed it
    at_start = sampler.seen["chat"]
    assert at_start["gen_ai.operation.name"] == "chat"
    assert at_start.get("gen_ai.request.model") == ("m" if peek_limit > len(body) else None)
    assert span.attributes["gen_ai.request.model"] == "m"
    assert span.attributes[OUTCOME_ATTRIBUTE] == "success"


def test_outcomes_capture_and_a_garbled_stream_in_a_plain_app(plain: tuple[Any, ...]) -> None:
    base, got, registry = plain
    assert post(base, "m").text.endswith("data: [DONE]\n\n")
    assert post(base, "garbled").status_code == 200  # the middleware's parse failure stays its own
    assert post(base, "busy").status_code == 503
    assert post(base, "bad").status_code == 400
    assert post(base, "boom").status_code == 500
    assert requests.get(f"{base}/health", timeout=5).text == "ok"  # not an LLM endpoint: untouched
    done = finished(got, 5)
    unknown = catalog.UNKNOWN_MODEL  # never served: no label slot of its own
    metrics = {
        name: registry.get_sample_value(
            catalog.CLIENT_REQUESTS.name, {"model": model, "outcome": outcome}
        )
        for name, model, outcome in (
            ("ok", "m", "success"),
            ("busy", unknown, "rejected"),
            ("boom", unknown, "error"),
        )
    }
    assert metrics == {"ok": 2.0, "busy": 1.0, "boom": 1.0}  # m and garbled both answered model m
    invalid = {"model": unknown, "outcome": catalog.OUTCOME_INVALID}
    assert registry.get_sample_value(catalog.CLIENT_REQUESTS.name, invalid) == 1  # the 400
    finished_by_model = {s.attributes["gen_ai.request.model"]: s for s in done}
    by_model = finished_by_model
    assert set(by_model) == {"m", "garbled", "busy", "bad", "boom"}
    assert by_model["m"].name == "chat m"
    (answer,) = json.loads(by_model["m"].attributes["gen_ai.output.messages"])
    assert answer["parts"] == [{"type": "text", "content": "Hello"}]
    assert answer["role"] == "assistant" and answer["finish_reason"] == "stop"
    assert "hi" in by_model["m"].attributes["gen_ai.input.messages"]  # captured: asked for
    assert by_model["boom"].attributes["error.type"] == "RuntimeError"
    assert by_model["busy"].attributes["error.type"] == "503"
    assert by_model["bad"].attributes[OUTCOME_ATTRIBUTE] == catalog.OUTCOME_INVALID
    assert by_model["m"].kind == OtlpSpan.SPAN_KIND_SERVER  # the app is the model server


def client_count(registry: CollectorRegistry, metric: catalog.Metric, model: str) -> float:
    return registry.get_sample_value(metric.count, {"model": model}) or 0.0


def test_sse_framed_with_crlf_or_cr_is_read_and_errors_observe_no_latency(
    plain: tuple[Any, ...],
) -> None:
    base, got, registry = plain
    assert post(base, "crlf").status_code == 200
    assert post(base, "busy").status_code == 503
    finished(got, 2)
    assert client_count(registry, catalog.CLIENT_TIME_TO_FIRST_TOKEN, "crlf") == 1
    assert client_count(registry, catalog.CLIENT_INTER_TOKEN_LATENCY, "crlf") == 1  # a to b
    sample = {"model": "crlf", "outcome": "success"}
    assert registry.get_sample_value(catalog.CLIENT_REQUESTS.name, sample) == 1
    for metric in catalog.CLIENT_PHASES.values():  # the 503 was fast, and is no latency
        assert client_count(registry, metric, catalog.UNKNOWN_MODEL) == 0


def test_a_stream_the_server_failed_midway_counts_as_its_failure_and_no_latency(
    plain: tuple[Any, ...],
) -> None:
    """Answered 200, a first token, then the server's error event or an abort, then
    [DONE]: error (or aborted, as the server-side view counts an abort), never success,
    and no latency observed, as for any answer that failed."""
    base, got, registry = plain
    for model in FAILED_MIDWAY:
        assert post(base, model).status_code == 200
    spans = {span.attributes["gen_ai.request.model"]: span for span in finished(got, 3)}
    expected = {
        "vllm-error": (catalog.OUTCOME_ERROR, "BadRequestError"),
        "tgi-error": (catalog.OUTCOME_ERROR, middleware_module.OTHER_ERROR),
        "server-abort": (catalog.OUTCOME_ABORTED, catalog.OUTCOME_ABORTED),
    }
    for model, (outcome, kind) in expected.items():
        sample = {"model": model, "outcome": outcome}
        assert registry.get_sample_value(catalog.CLIENT_REQUESTS.name, sample) == 1, model
        assert spans[model].attributes[OUTCOME_ATTRIBUTE] == outcome
        assert spans[model].attributes["error.type"] == kind
        for metric in catalog.CLIENT_PHASES.values():
            assert client_count(registry, metric, model) == 0, (model, metric.name)
    failed = {spans[model].status_code for model in ("vllm-error", "tgi-error")}
    assert failed == {OtlpStatus.STATUS_CODE_ERROR}


def test_reasoning_and_tool_calls_are_generated_tokens_from_the_first(
    plain: tuple[Any, ...],
) -> None:
    """TTFT is the first generated chunk's, thoughts and tool calls included, as the
    server's TTFT counts them; every such chunk is a gap, and TPOT spans them all: a
    reasoning model that thinks THINK seconds before its answer's first word has a TTFT
    of milliseconds, four gaps for five chunks, and a TPOT of at least THINK / 4."""
    base, got, registry = plain
    for model in ("reasoner", "tool-caller", "reasoner-whole"):
        assert post(base, model).status_code == 200
    spans = {span.attributes["gen_ai.request.model"]: span for span in finished(got, 3)}
    for model in ("reasoner", "reasoner-whole"):  # captured: the fixture opts in
        (answer,) = json.loads(spans[model].attributes["gen_ai.output.messages"])
        assert answer["parts"] == [
            {"type": "reasoning", "content": "Hm, ok"},
            {"type": "text", "content": "Yes."},
        ], model

    def observed(metric: catalog.Metric, model: str) -> tuple[float, float]:
        labels = {"model": model}
        return (
            registry.get_sample_value(metric.count, labels) or 0.0,
            registry.get_sample_value(metric.name + "_sum", labels) or 0.0,
        )

    ttft = observed(catalog.CLIENT_TIME_TO_FIRST_TOKEN, "reasoner")
    assert ttft[0] == 1 and ttft[1] < THINK / 2
    assert observed(catalog.CLIENT_INTER_TOKEN_LATENCY, "reasoner")[0] == 4
    tpot = observed(catalog.CLIENT_TIME_PER_OUTPUT_TOKEN, "reasoner")
    assert tpot[0] == 1 and tpot[1] >= THINK / 4
    assert observed(catalog.CLIENT_TIME_TO_FIRST_TOKEN, "tool-caller")[0] == 1
    assert observed(catalog.CLIENT_INTER_TOKEN_LATENCY, "tool-caller")[0] == 2  # name, 2 parts


def test_an_answer_or_a_chunk_that_is_not_json_is_no_traceback(
    plain: tuple[Any, ...], caplog: pytest.LogCaptureFixture
) -> None:
    """A load balancer's HTML error page counts by its status; a stream event that is not
    JSON counts nothing and is one warning line for its request, never a traceback."""
    base, got, registry = plain
    with caplog.at_level(logging.WARNING):
        assert post(base, "lb-page").status_code == 502
        assert post(base, "garbled").status_code == 200
        finished(got, 2)
    unknown = {"model": catalog.UNKNOWN_MODEL, "outcome": catalog.OUTCOME_ERROR}
    assert registry.get_sample_value(catalog.CLIENT_REQUESTS.name, unknown) == 1
    assert [r for r in caplog.records if r.exc_info] == []
    warned = [r.getMessage() for r in caplog.records if "not JSON" in r.getMessage()]
    assert warned == [
        "llm tracing middleware: 1 stream events of an answer from 'garbled'"
        " were not JSON objects and were not counted"
    ]


def test_a_stream_without_event_ends_is_not_held_whole() -> None:
    """Bytes that never end an event (not SSE, or compressed) are let go past MAX_EVENT
    and counted unreadable, not kept for the whole answer; events after them count."""
    from llm_slo_stack.tracing.middleware import MAX_EVENT, _Exchange

    middleware = LLMTracingMiddleware(lambda *a: None, registry=CollectorRegistry())  # type: ignore[arg-type]
    exchange = _Exchange("chat", 0.0)
    held = []
    for _ in range(3 * MAX_EVENT // 65536):
        middleware._read_events(exchange, b"\x1f\x8b" + b"x" * 65534)
        held.append(len(exchange.buffer))
    middleware._read_events(
        exchange, b"\n\n" + ENGINE_CHUNKS["vllm-0.10.2-last-token"].join((b"data: ", b"\n\n"))
    )
    assert max(held) <= MAX_EVENT
    assert exchange.unreadable == 2  # let go at 17 and 34 pieces of 64 KiB (past 1 MiB)
    assert exchange.chunks == 1 and exchange.finish_reasons == ["length"]


def test_made_up_model_names_cannot_fill_the_label_cap_or_grow_metrics(
    plain: tuple[Any, ...],
) -> None:
    base, got, registry = plain
    for index in range(70):  # more than the 64 label slots, each answered 404
        assert post(base, f"nope-{index}").status_code == 404
    long_name = "m" * 200_000
    requests.post(
        f"{base}/v1/chat/completions",
        json={"model": long_name, "messages": []},
        timeout=10,
    )
    assert post(base, "m").status_code == 200
    done = finished(got, 72)
    assert registry.get_sample_value(
        catalog.CLIENT_REQUESTS.name, {"model": "m", "outcome": "success"}
    ) == 2  # fmt: skip
    assert all(len(span.name) < 200 for span in done)
    from prometheus_client import generate_latest

    assert len(generate_latest(registry)) < 50_000


def test_a_body_nested_too_deep_is_tolerated(plain: tuple[Any, ...]) -> None:
    base, got, registry = plain
    deep = b"[" * 100_000 + b"]" * 100_000
    answer = requests.post(f"{base}/v1/chat/completions", data=deep, timeout=10)
    assert answer.status_code == 500  # the app's own failure, not the middleware's
    (span,) = finished(got, 1)
    assert span.attributes[OUTCOME_ATTRIBUTE] == "error"
    sample = {"model": catalog.UNKNOWN_MODEL, "outcome": "error"}
    assert registry.get_sample_value(catalog.CLIENT_REQUESTS.name, sample) == 1


def test_exemplars_carry_the_trace_id(plain: tuple[Any, ...]) -> None:
    base, got, registry = plain
    post(base, "m")
    (span,) = finished(got, 1)
    trace_id = span.trace_id
    from prometheus_client.openmetrics.exposition import generate_latest

    text = generate_latest(registry).decode()
    ttft_lines = [
        line
        for line in text.splitlines()
        if line.startswith(catalog.CLIENT_TIME_TO_FIRST_TOKEN.bucket)
    ]
    assert any(f'trace_id="{trace_id}"' in line for line in ttft_lines)


def test_configure_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    configured = provider.configure()
    processor = configured._active_span_processor._span_processors[0]  # the one we added
    assert isinstance(processor, BatchSpanProcessor)
    assert type(processor.span_exporter).__module__.endswith("grpc.trace_exporter")
    assert configured.resource.attributes["service.name"] == "from-env"
    assert not configured.get_tracer("t").start_span("x").get_span_context().trace_flags.sampled
    with pytest.raises(provider.ConfigError, match="protocol"):
        provider.configure(endpoint="http://x", protocol="carrier-pigeon")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    assert (
        not provider.configure()._active_span_processor._span_processors
    )  # no endpoint: no export


def test_the_readme_fastapi_gateway() -> None:
    """The README's snippet: the middleware added to a FastAPI app, metrics mounted."""
    registry = CollectorRegistry()
    targets = Targets.from_spec(spec.load(ROOT / "slo" / "default.yaml"))
    with (
        otlp.exported() as (tracer_provider, got),
        loopback.asgi(gateway.create(registry, tracer_provider, targets)) as base,
    ):
        answer = requests.post(
            f"{base}/v1/completions", json={"model": gateway.MODEL, "prompt": "x"}, timeout=10
        )
        assert answer.json()["choices"][0]["text"] == "hi"
        (span,) = finished(got, 1)
        text = requests.get(f"{base}/metrics/", timeout=10).text
    assert span.name == f"text_completion {gateway.MODEL}"
    assert f'{catalog.REQUESTS_GOODPUT.name}{{model="{gateway.MODEL}"}} 1.0' in text


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_TRACES_SAMPLER_ARG", "half"),
        ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "pigeon"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "pigeon"),
    ],
)
def test_a_bad_otel_setting_is_one_line_naming_it(variable: str, value: str) -> None:
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", variable: value}
    proxy = Path(sys.executable).with_name("llm-trace-proxy")
    run = subprocess.run(
        [str(proxy), "--upstream", "http://127.0.0.1:9", "--listen", "127.0.0.1:0"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert repr(value) in run.stderr and variable in run.stderr


def test_two_middleware_instances_in_one_process_each_own_their_registry() -> None:
    first, second = LLMTracingMiddleware(stream_app), LLMTracingMiddleware(stream_app)  # type: ignore[arg-type]
    assert first.registry is not second.registry  # the default registry would refuse the second


def test_every_request_is_counted_once_under_uvicorn_workers(tmp_path: Path) -> None:
    """`uvicorn --workers 2` with PROMETHEUS_MULTIPROC_DIR: whichever worker answers a
    scrape, it shows all 20 requests (without it, scrapes alternate between workers)."""
    port = loopback.free_port()
    base = f"http://{loopback.HOST}:{port}"
    command = [
        sys.executable, "-m", "uvicorn", "tests.support.gateway:app", "--workers", "2",
        "--host", loopback.HOST, "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    sample = (
        catalog.CLIENT_REQUESTS.name,
        frozenset({("model", gateway.MODEL), ("outcome", "success")}),
    )
    try:
        loopback.wait_until_up(f"{base}/metrics/", process)
        for _ in range(20):  # a new connection each: the workers share them out
            requests.post(
                f"{base}/v1/completions",
                json={"model": gateway.MODEL, "prompt": "x"},
                headers={"Connection": "close"},
                timeout=10,
            ).raise_for_status()
        counts = [scrape(f"{base}/metrics/").get(sample) for _ in range(6)]
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert counts == [20.0] * 6


def test_tenants_from_a_header_or_a_hash_of_the_api_key_never_the_key() -> None:
    registry = CollectorRegistry()
    app = Starlette(routes=[Route("/v1/chat/completions", stream_app, methods=["POST"])])
    wrapped = LLMTracingMiddleware(
        app, registry=registry, tenant_header="X-Tenant", tenant_from_api_key=True, max_tenants=2
    )
    secret = "sk-do-not-leak-0123456789"
    with loopback.asgi(wrapped) as base:
        for headers in (
            {"X-Tenant": "acme"},
            {"X-Tenant": "acme"},
            {"Authorization": f"Bearer {secret}"},
            {"X-Tenant": "third"},  # past the cap of 2
            {},
        ):
            requests.post(
                f"{base}/v1/chat/completions",
                json={"model": "m", "messages": []},
                headers=headers,
                timeout=10,
            ).raise_for_status()
    from prometheus_client import generate_latest

    assert secret not in generate_latest(registry).decode()
    by_tenant = {
        dict(labels)[catalog.TENANT]: v
        for (name, labels), v in samples(registry.collect()).items()
        if name == catalog.CLIENT_REQUESTS.name
    }
    hashed = next(t for t in by_tenant if t.startswith("key-"))
    assert by_tenant == {"acme": 2, hashed: 1, catalog.OVERFLOW_VALUE: 1, catalog.NO_TENANT: 1}
    tokens = {
        dict(labels)[catalog.TENANT]: v
        for (name, labels), v in samples(registry.collect()).items()
        if name == catalog.CLIENT_GENERATION_TOKENS.name
    }
    assert tokens["acme"] == 4  # two streams of two chunks with text each


def test_genai_client_metrics_through_an_opentelemetry_meter_provider() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    app = Starlette(routes=[Route("/v1/chat/completions", stream_app, methods=["POST"])])
    wrapped = LLMTracingMiddleware(app, meter_provider=MeterProvider(metric_readers=[reader]))
    with loopback.asgi(wrapped) as base:
        assert post(base, "m").status_code == 200  # a stream of two chunks
        assert post(base, "busy").status_code == 503
        assert post(base, "vllm-error").status_code == 200  # vLLM's error event after a token
    data = reader.get_metrics_data()
    points = {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics  # type: ignore[union-attr]
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    g = catalog.OTelGenAI
    durations = {p.attributes.get("error.type"): p for p in points[g.OPERATION_DURATION]}
    assert set(durations) == {None, "503", "BadRequestError"}  # as the span's error.type
    assert all(p.count == 1 for p in durations.values())
    assert list(durations[None].explicit_bounds) == list(g.DURATION_BUCKETS)
    ok = durations[None].attributes
    assert ok["gen_ai.operation.name"] == "chat" and ok["gen_ai.request.model"] == "m"
    (first,) = points[g.TIME_TO_FIRST_CHUNK]
    (per_chunk,) = points[g.TIME_PER_OUTPUT_CHUNK]
    assert first.count == 1 and per_chunk.count == 1  # Hel, then lo
    (output,) = [p for p in points[g.TOKEN_USAGE] if "error.type" not in p.attributes]
    assert output.attributes[g.TOKEN_TYPE] == "output" and output.sum == 2


def test_observing_all_gaps_at_once_leaves_what_observing_each_would() -> None:
    """The end-of-stream bulk observation against prometheus_client's own observe():
    the same bucket counts (bounds themselves included), the same sum to rounding, and
    one exemplar, on the last gap's bucket."""
    from prometheus_client import Histogram

    from llm_slo_stack.tracing.middleware import observe_all

    metric = catalog.CLIENT_INTER_TOKEN_LATENCY
    gaps = [0.004, 0.01, 0.0125, 0.2, 0.2000001, 7.0, 0.03] * 40
    each, once = CollectorRegistry(), CollectorRegistry()
    by_each, by_once = (
        Histogram(metric.name, metric.help, metric.labels, buckets=metric.buckets, registry=r)
        for r in (each, once)
    )
    for gap in gaps:
        by_each.labels("m").observe(gap)
    observe_all(by_once.labels("m"), gaps, {"trace_id": "ab"})

    def samples(registry: CollectorRegistry) -> dict[tuple[str, str], Any]:
        return {
            (s.name, s.labels.get("le", "")): s
            for family in registry.collect()
            for s in family.samples
            if not s.name.endswith("_created")
        }

    got, want = samples(once), samples(each)
    assert got.keys() == want.keys()
    for key, sample in want.items():
        assert got[key].value == pytest.approx(sample.value, rel=1e-12), key
    with_exemplar = [key for key, s in got.items() if s.exemplar is not None]
    assert with_exemplar == [(f"{metric.name}_bucket", "0.03")]  # the last gap: le="0.03"


# Chunks as the engines write them (pydantic's compact JSON, the models' field order),
# text "hm". vllm 0.10.2 wheel, vllm/entrypoints/openai/protocol.py and serving_chat.py
# / serving_completion.py (the chat's token, last-token and continuous-usage chunks,
# exclude_unset; the completion's, exclude_unset=False); vllm 0.34.0 wheel,
# vllm/entrypoints/generate/base/protocol.py (DeltaMessage.reasoning); sglang 0.5.23
# wheel, sglang/srt/entrypoints/openai/protocol.py and serving_chat.py (every field,
# tool_calls left out when None); TGI 3.3.7 (huggingface/text-generation-inference@db931fc)
# router/src/lib.rs, serde (the "object" tag first, the role in every delta).
_HEAD = b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":'
ENGINE_CHUNKS = {
    "vllm-0.10.2-chat": vllm_chunk("m", '{"content":"hm"}'),
    "vllm-0.10.2-completion": b'{"id":"cmpl-1","object":"text_completion","created":1,"model":"m",'
    b'"choices":[{"index":0,"text":"hm","logprobs":null,"finish_reason":null,"stop_reason":null,'
    b'"prompt_token_ids":null,"token_ids":null}],"usage":null}',
    "vllm-0.10.2-last-token": vllm_chunk("m", '{"content":"hm"}', "length"),
    "vllm-0.10.2-continuous-usage": _HEAD
    + b'[{"index":0,"delta":{"content":"hm"},"logprobs":null,"finish_reason":null,"token_ids":null}],'
    b'"usage":{"prompt_tokens":5,"total_tokens":7,"completion_tokens":2}}',
    "vllm-0.10.2-reasoning": vllm_chunk("m", '{"reasoning_content":"hm"}'),
    "vllm-0.34.0-reasoning": vllm_chunk("m", '{"reasoning":"hm"}'),
    "vllm-0.10.2-tool-call": vllm_chunk(
        "m", '{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\": \\"hm"}}]}'
    ),
    "sglang-0.5.23-chat": _HEAD
    + b'[{"index":0,"delta":{"role":null,"content":"hm","reasoning_content":null},"logprobs":null,'
    b'"finish_reason":null,"matched_stop":null}],"usage":null}',
    "tgi-3.3.7-chat": b'{"object":"chat.completion.chunk","id":"","created":1,"model":"m",'
    b'"system_fingerprint":"3.3.7-native","choices":[{"index":0,"delta":{"role":"assistant",'
    b'"content":"hm"},"logprobs":null,"finish_reason":null}],"usage":null}',
    "sglang-0.5.23-reasoning": _HEAD
    + b'[{"index":0,"delta":{"role":null,"content":null,"reasoning_content":"hm"},"logprobs":null,'
    b'"finish_reason":null,"matched_stop":null}],"usage":null}',
}


@pytest.mark.parametrize(
    "chunk",
    [
        b'{"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}',
        b'{"id": "x", "model": "m", "choices": [{"index": 0, "delta": {"content": "hi"}, "logprobs": null, "finish_reason": null}]}',
        b'{"id":"x","model":"m","choices":[{"finish_reason":null,"index":0,"delta":{"content":"hi"}}]}',
        b'{"id":"x","model":"m","choices":[{"index":0,"text":"hi","finish_reason":null}]}',
        b'{"id":"x","model":"m","choices":[{"index":0,"delta":{"content":""},"finish_reason":null}]}',
        b'{"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null},{"index":1,"delta":{"content":"b"},"finish_reason":null}]}',
        b'{"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],"usage":{"completion_tokens":9}}',
        b'{"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"say \\"hi\\""},"finish_reason":null}]}',
        b'{"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"a\\\\"},"finish_reason":null}]}',
        b'{"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}\n\ndata: {"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"b"},"finish_reason":null}]}',
        b'{"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"a\nb"},"finish_reason":null}]}',
        b'{"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"a\rb"},"finish_reason":null}]}',
        b'{"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"a}]}\nb"},"finish_reason":null}]}',
        b'{"id":"x","model":"m","usage":{"completion_tokens":9},"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}',
        b'{"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":  "stop","token_ids":null}]}',
        *ENGINE_CHUNKS.values(),
    ],
    ids=[
        "compact", "spaced", "other-key-order", "completion", "empty", "two-choices", "usage",
        "escaped-quotes", "ending-backslash", "two-events", "raw-line-feed", "raw-carriage-return",
        "raw-line-feed-after-an-ending", "usage-first", "finish-reason-after-two-spaces",
        *ENGINE_CHUNKS,
    ],
)  # fmt: skip
def test_the_fast_path_counts_exactly_what_parsing_counts(chunk: bytes) -> None:
    """A chunk the fast paths take counts as one token; any other falls to json.loads:
    the count, the gaps and the usage are those of parsing every chunk, and a chunk
    parsing cannot read (a raw line break ends an SSE line) is unreadable to both and
    counts nothing. Each chunk follows a plain one, whose prefix and suffix the
    stream's fast path learns."""
    from llm_slo_stack.tracing.middleware import _Exchange

    first = b'data: {"id":"x","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
    plain = b'data: {"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
    results = []
    for fast in (True, False):
        middleware = LLMTracingMiddleware(lambda *a: None, registry=CollectorRegistry())  # type: ignore[arg-type]
        exchange = _Exchange("chat", 0.0)
        unreadable = 0
        for body in (first, plain, b"data: " + chunk + b"\n\n", b"data: " + chunk + b"\n\n"):
            if fast:  # the middleware counts a chunk it cannot read, and nothing of it
                if not exchange.next_token(body):
                    middleware._read_events(exchange, body)
                continue
            for line in body.split(b"\n"):
                if line.startswith(b"data: "):
                    try:
                        middleware._read_chunk(exchange, json.loads(line[6:]))
                    except ValueError:
                        unreadable += 1
        unreadable += exchange.unreadable
        results.append(
            (
                exchange.chunks,
                len(exchange.gaps),
                exchange.usage,
                exchange.finish_reasons,
                unreadable,
            )
        )
    assert results[0] == results[1]


@pytest.mark.parametrize(
    "shape",
    [
        "vllm-0.10.2-chat",
        "vllm-0.10.2-completion",
        "vllm-0.34.0-reasoning",
        "sglang-0.5.23-reasoning",
        "tgi-3.3.7-chat",
    ],
)
def test_the_fast_path_takes_every_token_chunk_of_a_real_engine_stream(shape: str) -> None:
    """Once a stream's first token chunk has been checked in full, each next one of the
    same shape is counted by the byte check alone (no json.loads): the per-chunk cost
    bench/tracing.py measures is that of the engines' own chunks, not only the
    simulator's. TGI writes `data:` without the space (axum 0.7.9's json_data)."""
    from llm_slo_stack.tracing.middleware import _Exchange

    middleware = LLMTracingMiddleware(lambda *a: None, registry=CollectorRegistry())  # type: ignore[arg-type]
    exchange = _Exchange("chat", 0.0)
    exchange.response_model = "m"  # as the role chunk before them leaves it
    chunk = ENGINE_CHUNKS[shape]
    head = b"data:" if shape.startswith("tgi") else b"data: "
    middleware._read_events(exchange, head + chunk + b"\n\n")
    taken = [
        exchange.next_token(head + chunk.replace(b'"hm"', text) + b"\n\n")
        for text in (b'"a"', b'" the"', b'"x y z"')
    ]
    assert taken == [True, True, True] and exchange.chunks == 4
