"""llm-trace-proxy against bad upstreams and clients, on loopback and bounded in time: a
silent upstream, a client that leaves before the upstream answers, an oversized body,
and SIGTERM with streams in flight (drained, then every span flushed to a real OTLP
receiver)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

from llm_slo_stack.exporters import catalog
from llm_slo_stack.simulator.latency import Profile
from llm_slo_stack.simulator.server import Config
from llm_slo_stack.simulator.server import create_app as simulator_app
from llm_slo_stack.tracing.proxy import Limits
from llm_slo_stack.tracing.proxy import create_app as proxy_app
from tests.support import loopback, otlp
from tests.support.serving import TRACE_MODEL as MODEL
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


class Recording(Sampler):
    """Samples everything and keeps what each span showed the sampler at its start."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, object]] = {}

    def should_sample(
        self,
        parent_context: object,
        trace_id: int,
        name: str,
        kind: object = None,
        attributes: Any = None,
        links: object = None,
        trace_state: object = None,
    ) -> SamplingResult:
        self.seen[name] = dict(attributes or {})
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return "recording"


def test_the_model_call_shows_a_sampler_its_genai_attributes_at_start() -> None:
    sampler = Recording()
    tracer_provider = TracerProvider(sampler=sampler)
    simulator = simulator_app(Config(served_model_name=MODEL, seed=4))
    with (
        loopback.asgi(simulator) as upstream,
        loopback.asgi(proxy_app(upstream, tracer_provider)) as front,
    ):
        chat(front, max_tokens=2, temperature=0.5, seed=7, stop=["END"])
    call = sampler.seen[f"chat {MODEL}"]
    assert call["gen_ai.operation.name"] == "chat" and call["gen_ai.request.model"] == MODEL
    assert call["server.address"] == "127.0.0.1" and call["gen_ai.provider.name"] == "vllm"
    assert call["gen_ai.request.temperature"] == 0.5 and call["gen_ai.request.seed"] == 7
    assert list(call["gen_ai.request.stop_sequences"]) == ["END"]  # type: ignore[call-overload]
    assert sampler.seen["chat"]["gen_ai.operation.name"] == "chat"  # the incoming request's


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
