"""llm-trace-proxy against bad upstreams and clients, on loopback and bounded in time: a
silent, unreachable, stalled or broken upstream, a client that leaves before the
upstream answers or reads slowly, an oversized body, and SIGTERM with streams in
flight (drained, then every span flushed to a real OTLP receiver)."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from llm_slo_stack.exporters import catalog
from llm_slo_stack.simulator.latency import Profile
from llm_slo_stack.simulator.server import Config
from llm_slo_stack.simulator.server import create_app as simulator_app
from llm_slo_stack.tracing.proxy import Limits, Upstream, main
from llm_slo_stack.tracing.proxy import create_app as proxy_app
from tests.support import loopback, otlp
from tests.support.sampling import Recording
from tests.support.serving import TRACE_MODEL as MODEL
from tests.support.serving import TRACE_TOKENS as TOKENS
from tests.support.serving import chat

g = catalog.OTelGenAI


@contextmanager
def silent() -> Iterator[tuple[str, threading.Event]]:
    """An upstream that accepts connections, reads, and never answers; the event is set
    when a connection it holds is closed by the other side."""
    closed = threading.Event()
    listener = socket.create_server((loopback.HOST, 0))
    stop = threading.Event()

    def hold(connection: socket.socket) -> None:
        connection.settimeout(0.1)
        with connection:
            while not stop.is_set():
                try:
                    if connection.recv(65536) == b"":
                        closed.set()
                        return
                except TimeoutError:
                    continue
                except OSError:
                    closed.set()
                    return

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=hold, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://{loopback.HOST}:{listener.getsockname()[1]}", closed
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}


def test_a_silent_upstream_is_a_504_at_the_first_byte_timeout() -> None:
    with (
        silent() as (upstream, _),
        loopback.asgi(proxy_app(upstream, limits=Limits(first_byte=1))) as front,
    ):
        start = time.monotonic()
        answer = requests.post(f"{front}/v1/chat/completions", json=BODY, timeout=10)
        took = time.monotonic() - start
    assert answer.status_code == 504 and 0.9 < took < 3


def test_a_client_that_leaves_before_the_upstream_answers_drops_the_upstream_call() -> None:
    with silent() as (upstream, closed), loopback.asgi(proxy_app(upstream)) as front:
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.post(f"{front}/v1/chat/completions", json=BODY, timeout=0.5)
        assert closed.wait(5)  # the proxy closed its upstream connection, long before 600 s


def test_a_body_over_the_limit_is_413_and_never_forwarded() -> None:
    seen: list[int] = []

    def answer(handler: object) -> None:
        seen.append(1)

    with (
        loopback.http(answer) as (upstream, _),
        loopback.asgi(proxy_app(upstream, limits=Limits(max_body=1 << 20))) as front,
    ):
        big = requests.post(f"{front}/v1/chat/completions", data=b"x" * (5 << 20), timeout=10)
        chunked = requests.post(
            f"{front}/v1/chat/completions", data=iter([b"x" * (1 << 19)] * 4), timeout=10
        )
    assert big.status_code == chunked.status_code == 413 and seen == []


BULK_EVENTS, BULK_TEXT = 32, "x" * (1 << 20)  # 32 MiB: more than loopback buffers hold


async def pausing(request: Request) -> StreamingResponse:
    """An upstream whose stream pauses: `slow` sends a token every 0.3 s and ends;
    `stalls` sends two tokens, then nothing for 5 s (then ends, so it stops by itself);
    `bulk` sends BULK_EVENTS events of a MiB at once; `breaks` sends two tokens, then
    fails, and the server drops the connection."""
    model = (await request.json())["model"]

    async def events() -> AsyncIterator[bytes]:
        for index in range({"slow": 6, "bulk": BULK_EVENTS}.get(model, 2)):
            delta = {"content": BULK_TEXT if model == "bulk" else f"t{index}"}
            event = {"id": "p", "model": model, "choices": [{"index": 0, "delta": delta}]}
            yield b"data: " + json.dumps(event).encode() + b"\n\n"
            await asyncio.sleep(0.3 if model == "slow" else 0)
        if model == "stalls":
            await asyncio.sleep(5)
        if model == "breaks":  # the server drops the connection mid-answer
            raise RuntimeError("the engine died")
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def pausing_app() -> Starlette:
    return Starlette(routes=[Route("/v1/chat/completions", pausing, methods=["POST"])])


def cut_short(front: str, model: str) -> bytes:
    """What a client reads of a streamed answer that must end without its last chunk
    (an answer that ends whole fails the test)."""
    received = b""
    with (
        pytest.raises(requests.exceptions.ChunkedEncodingError),
        requests.post(
            f"{front}/v1/chat/completions", json={"model": model}, stream=True, timeout=10
        ) as answer,
    ):
        for chunk in answer.iter_content(None):
            received += chunk
    return received


def counted(registry: CollectorRegistry, model: str, outcome: str) -> float | None:
    """The proxy's client-side request count for a model and outcome."""
    labels = {catalog.MODEL: model, catalog.OUTCOME: outcome}
    return registry.get_sample_value(catalog.CLIENT_REQUESTS.name, labels)


def test_the_idle_timeout_cuts_a_stalled_stream_never_a_slow_one() -> None:
    """--idle-timeout bounds the wait between chunks, not the answer: a stream that
    takes 1.8 s with a token every 0.3 s passes a 1 s idle timeout; one that stops
    sending is cut 1 s after its last chunk, and counts as an error."""
    registry = CollectorRegistry()
    with (
        loopback.asgi(pausing_app()) as upstream,
        loopback.asgi(proxy_app(upstream, registry=registry, limits=Limits(idle=1))) as front,
    ):
        slow = requests.post(f"{front}/v1/chat/completions", json={"model": "slow"}, timeout=10)
        start = time.monotonic()
        received = cut_short(front, "stalls")
        took = time.monotonic() - start
    assert slow.status_code == 200 and slow.text.count('"content"') == 6
    assert slow.text.endswith("data: [DONE]\n\n")
    assert received.count(b'"content"') == 2 and b"[DONE]" not in received
    assert 0.9 < took < 3
    success, error = catalog.OUTCOME_SUCCESS, catalog.OUTCOME_ERROR
    assert counted(registry, "slow", success) == counted(registry, "stalls", error) == 1


def test_an_unreachable_upstream_is_a_502_and_a_broken_one_ends_the_answer_broken() -> None:
    """Nothing listening at the upstream's port: a 502 in the OpenAI error shape. An
    upstream that drops the connection mid-stream: the client's answer ends without its
    last chunk, as the upstream's did, never as if whole. Both count as errors."""
    refused_registry, broken_registry = CollectorRegistry(), CollectorRegistry()
    nowhere = f"http://{loopback.HOST}:{loopback.free_port()}"
    with loopback.asgi(proxy_app(nowhere, registry=refused_registry)) as front:
        refused = requests.post(f"{front}/v1/chat/completions", json={"model": "m"}, timeout=10)
    with (
        loopback.asgi(pausing_app()) as upstream,
        loopback.asgi(proxy_app(upstream, registry=broken_registry)) as front,
    ):
        received = cut_short(front, "breaks")
    assert refused.status_code == 502
    assert (
        refused.json()["error"]["type"] == "Bad Gateway" and refused.json()["error"]["code"] == 502
    )
    assert "upstream unreachable" in refused.json()["error"]["message"]
    assert received.count(b'"content"') == 2 and b"[DONE]" not in received
    assert counted(refused_registry, catalog.UNKNOWN_MODEL, catalog.OUTCOME_ERROR) == 1
    assert counted(broken_registry, "breaks", catalog.OUTCOME_ERROR) == 1


def test_a_client_that_reads_slowly_is_never_cut_by_the_idle_timeout() -> None:
    """Time the proxy spends waiting on a slow client is not the upstream's silence: a
    client that stops reading for 2.5 s, with a 1 s idle timeout, still gets every byte."""
    with (
        loopback.asgi(pausing_app()) as upstream,
        loopback.asgi(proxy_app(upstream, limits=Limits(idle=1))) as front,
        requests.post(
            f"{front}/v1/chat/completions", json={"model": "bulk"}, stream=True, timeout=10
        ) as answer,
    ):
        parts = answer.iter_content(1 << 16)
        received = [next(parts)]
        time.sleep(2.5)  # the proxy's buffers and the sockets' fill; it waits on the client
        received += parts
    body = b"".join(received)
    assert body.count(BULK_TEXT.encode()) == BULK_EVENTS and body.endswith(b"data: [DONE]\n\n")


SLOW = Profile(prefill_overhead=0.002, prefill_per_token=0.0, itl=0.05, itl_jitter=0.0)


def test_sigterm_drains_in_flight_streams_then_flushes_every_span() -> None:
    """20 quick requests, then 3 streams of 1.5 s each: SIGTERM half-way through them.
    The streams still finish whole, and all 23 spans reach the receiver."""
    simulator = simulator_app(Config(served_model_name=MODEL, seed=3, profile=SLOW))
    with otlp.receiver() as (receiver_url, got), loopback.asgi(simulator) as upstream:
        port = loopback.free_port()
        front = f"http://{loopback.HOST}:{port}"
        proxy = Path(sys.executable).with_name("llm-trace-proxy")
        command = [
            str(proxy), "--upstream", upstream, "--listen", f"{loopback.HOST}:{port}",
            "--otlp-endpoint", receiver_url, "--drain-timeout", "20",
        ]  # fmt: skip
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        try:
            loopback.wait_until_up(f"{front}/metrics", process)
            for _ in range(20):
                chat(front, max_tokens=2)
            with ThreadPoolExecutor(3) as pool:
                streams = [pool.submit(chat, front, max_tokens=30) for _ in range(3)]
                time.sleep(0.7)
                process.send_signal(signal.SIGTERM)
                answers = [s.result(timeout=30) for s in streams]
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        spans = got.wait_for(f"chat {MODEL}", 23, seconds=5)
        exported = set(got.metrics)
    assert all(a.status_code == 200 and a.text.rstrip().endswith("[DONE]") for a in answers)
    assert len(spans) == 23
    # The GenAI client metrics went over OTLP too, flushed at shutdown (the export
    # interval, 60 s, never came).
    assert {g.OPERATION_DURATION, g.TIME_TO_FIRST_CHUNK, g.TOKEN_USAGE} <= exported


def test_the_proxy_forwards_the_query_and_every_header_and_refuses_other_methods() -> None:
    """Forwarding is the proxy's own ASGI code: the query string goes up as sent, a
    repeated response header comes back repeated, a method it does not forward is 405."""
    seen: list[str] = []

    def answer(handler: Any) -> None:
        seen.append(handler.path)
        body = b'{"ok": true}'
        handler.send_response(200)
        handler.send_header("Set-Cookie", "a=1")
        handler.send_header("Set-Cookie", "b=2")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    with loopback.http(answer) as (upstream, _), loopback.asgi(proxy_app(upstream)) as front:
        got = requests.get(f"{front}/v1/models?a=1&a=2&b=", timeout=10)
        other = requests.request("OPTIONS", f"{front}/v1/models", timeout=10)
    assert seen == ["/v1/models?a=1&a=2&b="]
    assert got.status_code == 200 and got.json() == {"ok": True}
    assert got.raw.headers.getlist("set-cookie") == ["a=1", "b=2"]
    assert other.status_code == 405


def test_the_upstream_sees_what_the_client_sent_and_nothing_more() -> None:
    """Under a base URL with a path prefix: the path and query go up byte for byte (a
    model name's %2F is not a second path segment), a repeated header goes up repeated,
    no header is added (an Accept-Encoding would let the upstream compress a stream the
    client cannot read), and a cookie the upstream set in one client's answer never goes
    up with the next client's request (a hostname, not an IP: aiohttp's jar keeps
    cookies only for names). Back come one Date and one Server, not the upstream's too."""
    seen: list[tuple[str, list[tuple[str, str]]]] = []

    def answer(handler: Any) -> None:
        seen.append((handler.path, [(k.lower(), v) for k, v in handler.headers.items()]))
        handler.send_response(200)  # with http.server's own Date and Server
        handler.send_header("Set-Cookie", "session=alice; Path=/")
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"{}")

    answers = []
    with loopback.http(answer) as (upstream, _):
        named = upstream.replace(loopback.HOST, "localhost") + "/gateway/"
        with loopback.asgi(proxy_app(named)) as front:
            for _ in range(2):  # two clients, each on its own connection
                client = http.client.HTTPConnection(front.removeprefix("http://"), timeout=10)
                client.putrequest(
                    "GET", "/v1/models/org%2Fname?x=a%2Fb&y=", skip_accept_encoding=True
                )
                client.putheader("X-Team", "a")
                client.putheader("X-Team", "b")
                client.endheaders()
                response = client.getresponse()
                answers.append((response.status, response.read(), response.headers))
                client.close()
    path = "/gateway/v1/models/org%2Fname?x=a%2Fb&y="
    sent = [("x-team", "a"), ("x-team", "b")]
    assert [(p, [h for h in headers if h[0] != "host"]) for p, headers in seen] == [
        (path, sent)
    ] * 2
    for status, body, headers in answers:
        assert status == 200 and body == b"{}"
        assert headers.get_all("Set-Cookie") == ["session=alice; Path=/"]
        assert len(headers.get_all("Date") or []) == len(headers.get_all("Server") or []) == 1


@pytest.mark.parametrize(
    ("url", "base", "address", "port"),
    [
        ("http://vllm", "http://vllm", "vllm", 80),  # the scheme's port (RFC 9110)
        ("https://gw.example/vllm/", "https://gw.example/vllm", "gw.example", 443),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000", "127.0.0.1", 8000),
    ],
)
def test_an_upstream_names_its_base_and_the_server_address_and_port_the_span_carries(
    url: str, base: str, address: str, port: int
) -> None:
    """server.port is conditionally required beside server.address: a URL without a port
    names its scheme's."""
    assert Upstream.parse(url) == Upstream(base, address, port)


@pytest.mark.parametrize(
    "upstream",
    ["localhost:8000", "ftp://127.0.0.1:8000", "http://", "http://h:99999", "http://h/?a=1"],
)
def test_an_upstream_that_is_not_an_http_base_url_is_a_clear_error(
    upstream: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused at start with what was expected, not a traceback on every request."""
    with pytest.raises(SystemExit) as exited:
        main(["--upstream", upstream])
    assert exited.value.code == 2
    assert (
        f"expected an http:// or https:// base URL such as http://127.0.0.1:8000, found {upstream!r}"
        in capsys.readouterr().err
    )


# The GenAI conventions' inference span for the model call (kind CLIENT, named
# `{operation} {model}`): attribute, requirement level, and whether a sampler must see it
# at the span's start. Levels from semantic-conventions' gen-ai-spans.md (development).
GENAI_CALL = [
    ("gen_ai.operation.name", "required", True),
    ("gen_ai.provider.name", "required", True),
    ("gen_ai.request.model", "conditionally required", True),
    ("server.address", "recommended", True),
    ("server.port", "conditionally required", True),
    ("gen_ai.request.max_tokens", "recommended", True),
    ("gen_ai.request.temperature", "recommended", True),
    ("gen_ai.request.top_p", "recommended", True),
    ("gen_ai.request.top_k", "recommended", True),
    ("gen_ai.request.seed", "conditionally required", True),
    ("gen_ai.request.frequency_penalty", "recommended", True),
    ("gen_ai.request.presence_penalty", "recommended", True),
    ("gen_ai.request.stop_sequences", "recommended", True),
    ("gen_ai.request.choice.count", "conditionally required", True),
    ("gen_ai.response.id", "recommended", False),
    ("gen_ai.response.model", "recommended", False),
    ("gen_ai.response.finish_reasons", "recommended", False),
    ("gen_ai.usage.input_tokens", "recommended", False),
    ("gen_ai.usage.output_tokens", "recommended", False),
    ("gen_ai.response.time_to_first_chunk", "recommended", False),
    ("error.type", "conditionally required", False),
    ("gen_ai.input.messages", "opt-in", False),
    ("gen_ai.output.messages", "opt-in", False),
]


PREFILL = 0.05  # seconds: the simulator's whole prefill, so its first token comes no sooner
KNOWN_PREFILL = Profile(prefill_overhead=PREFILL, prefill_per_token=0.0, itl=0.001, itl_jitter=0.0)


def genai_conformance() -> tuple[list[tuple[str, str, object, object, object]], dict[str, object]]:
    """One streamed chat through the proxy to the simulator, its spans read back from a
    real OTLP receiver and a sampler: per attribute of GENAI_CALL, its level, the value
    expected for this request, the value on the exported CLIENT span, and (for those a
    sampler needs) the value the sampler saw at the span's start; and what the sampler
    saw at the start of the incoming request's SERVER span, the trace's root."""
    sampler = Recording()
    with otlp.exported(sampler) as (tracer_provider, got):
        config = Config(served_model_name=MODEL, seed=4, profile=KNOWN_PREFILL)
        simulator = simulator_app(config)
        with (
            loopback.asgi(simulator) as upstream,
            loopback.asgi(proxy_app(upstream, tracer_provider)) as front,
        ):
            chat(
                front, temperature=0.5, top_p=0.9, top_k=40, seed=7, n=1,
                frequency_penalty=0.1, presence_penalty=0.2, stop=["END"],
            )  # fmt: skip
            (call,) = got.wait_for(f"chat {MODEL}", 1)
    at_start = sampler.seen[call.name]
    expected: dict[str, object] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "vllm",
        "gen_ai.request.model": MODEL,
        "server.address": loopback.HOST,
        "server.port": int(upstream.rsplit(":", 1)[1]),
        "gen_ai.request.max_tokens": TOKENS,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.top_k": 40,
        "gen_ai.request.seed": 7,
        "gen_ai.request.frequency_penalty": 0.1,
        "gen_ai.request.presence_penalty": 0.2,
        "gen_ai.request.stop_sequences": ["END"],
        "gen_ai.request.choice.count": 1,
        "gen_ai.response.id": Check("the simulator's chatcmpl-… id", _is_completion_id),
        "gen_ai.response.model": MODEL,
        "gen_ai.response.finish_reasons": ["length"],
        "gen_ai.usage.input_tokens": 7,  # the simulator's count for PROMPT
        "gen_ai.usage.output_tokens": TOKENS,
        "gen_ai.response.time_to_first_chunk": Check(
            f"seconds, at least the simulator's {PREFILL:g} s prefill", _is_after_prefill
        ),
        "error.type": None,  # a success
        "gen_ai.input.messages": None,  # content capture is off by default
        "gen_ai.output.messages": None,
    }
    assert call.kind == OtlpSpan.SPAN_KIND_CLIENT
    rows = [
        (
            name,
            level,
            expected[name],
            call.attributes.get(name),
            at_start.get(name) if start else "-",
        )
        for name, level, start in GENAI_CALL
    ]
    return rows, sampler.seen["chat"]


def test_the_model_call_span_carries_the_genai_conventions_attributes() -> None:
    """Every attribute of the conventions' inference span, against what this request
    must give: on the exported span, and at its start for those a sampler may use; and
    the root SERVER span shows a sampler the operation and the model at its start."""
    rows, root = genai_conformance()
    wrong = [
        row
        for row in rows
        if not _meets(row[2], row[3]) or (row[4] != "-" and not _meets(row[2], row[4]))
    ]
    assert not wrong, wrong
    assert root["gen_ai.operation.name"] == "chat" and root["gen_ai.request.model"] == MODEL


@dataclass(frozen=True)
class Check:
    """An expected value that is a property rather than one value."""

    description: str
    holds: Callable[[object], bool]

    def __repr__(self) -> str:
        return self.description


def _meets(expected: object, value: object) -> bool:
    if isinstance(value, tuple):  # a sequence attribute, as the SDK's sampler sees it
        value = list(value)
    return expected.holds(value) if isinstance(expected, Check) else value == expected


def _is_completion_id(value: object) -> bool:
    return isinstance(value, str) and value.startswith("chatcmpl-")


def _is_after_prefill(value: object) -> bool:
    return isinstance(value, float) and PREFILL <= value < PREFILL + 1
