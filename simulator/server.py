"""`llm-sim`: a vLLM-compatible server (OpenAI API + vLLM-format /metrics) without a GPU.

Requests are admitted into a batch of at most --max-num-seqs, wait in a bounded queue
otherwise, and are "generated" with the seeded latency model: real sleeps, real SSE
streaming, real metrics. Faults are switched at run time through /admin/faults.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import propagate, trace
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from llm_slo_stack.exporters.catalog import VLLM
from llm_slo_stack.simulator.faults import Faults
from llm_slo_stack.simulator.latency import LatencyModel, Profile
from llm_slo_stack.simulator.metrics import CURRENT, FLAVORS, VLLMMetrics, parse_custom_buckets
from llm_slo_stack.tracing import provider

GARBAGE = b'<html>502 Bad Gateway</html>\nvllm:num_requests_running{model_name="x" 1\n\x00\xff'
CHAT_TEMPLATE_TOKENS = 4  # role markers a chat template adds per message


@dataclass(frozen=True)
class RequestInfo:
    """What vLLM's span takes from a request: its trace headers and parameters."""

    headers: dict[str, str]
    attributes: dict[str, Any]


@dataclass(frozen=True)
class Config:
    served_model_name: str = "sim-model"
    max_num_seqs: int = 256
    max_waiting: int = 1024  # queue bound; beyond it requests are rejected
    max_model_len: int = 8192
    default_output_tokens: int = 128
    seed: int = 0
    flavor: str = CURRENT
    custom_buckets: dict[str, tuple[float, ...]] = field(default_factory=dict)
    profile: Profile = field(default_factory=Profile)


class Rejected(Exception):
    """The admission queue is full."""


class EngineFailure(Exception):
    """An injected server error."""


class Engine:
    """Admission, the latency model and vLLM's metrics for one served model."""

    def __init__(self, config: Config, tracer: trace.Tracer | None = None) -> None:
        self.config = config
        self.tracer = tracer
        self.running = 0
        self.waiting = 0
        self.faults = Faults()
        self.latency = LatencyModel(config.profile, config.seed)
        self.chance = random.Random(config.seed + 1)
        self.slots = asyncio.Semaphore(config.max_num_seqs)
        self.ids = itertools.count(1)
        self.metrics = VLLMMetrics(
            config.served_model_name,
            config.flavor,
            config.custom_buckets,
            running=lambda: self.running,
            waiting=lambda: self.waiting,
            kv_cache=lambda: min(1.0, self.running / self.config.max_num_seqs),
        )

    @property
    def load(self) -> float:
        return self.running / self.config.max_num_seqs

    def admit_or_fail(self) -> None:
        """Refuse a request up front: it would have to wait and the queue is full, or a
        server error is injected."""
        if self.slots.locked() and self.waiting >= self.config.max_waiting:
            if self.metrics.rejections is not None:
                self.metrics.rejections.inc()
            raise Rejected
        if self.faults.error_rate and self.chance.random() < self.faults.error_rate:
            self.metrics.finished("error")
            raise EngineFailure

    async def generate(
        self,
        prompt_tokens: int,
        output_tokens: int,
        finish: str,
        request: RequestInfo | None = None,
    ) -> AsyncIterator[int]:
        """Yield token indexes at the model's pace; record vLLM's metrics and span as vLLM does."""
        m = self.metrics
        arrival = time.monotonic()
        arrival_ns = time.time_ns()
        self.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        admitted = time.monotonic()
        generated = 0
        scale = self.faults.latency_multiplier
        try:
            if self.faults.stall_seconds:
                await asyncio.sleep(self.faults.stall_seconds)
            await asyncio.sleep(self.latency.prefill(prompt_tokens, self.load) * scale)
            m.prompt_tokens.inc(prompt_tokens)
            first = last = time.monotonic()
            for index in range(output_tokens):
                if index:
                    gap, preempted = self.latency.gap(self.load)
                    if preempted:
                        m.preemptions.inc()
                    await asyncio.sleep(gap * scale)
                    now = time.monotonic()
                    m.itl.observe(now - last)
                    last = now
                generated += 1
                yield index
        except (asyncio.CancelledError, GeneratorExit):
            m.finished("abort")
            raise
        finally:
            self.running -= 1
            self.slots.release()
            m.generation_tokens.inc(generated)
        m.queue.observe(admitted - arrival)
        m.prefill.observe(first - admitted)
        m.ttft.observe(first - arrival)
        m.decode.observe(last - first)
        m.inference.observe(last - admitted)
        m.e2e.observe(last - arrival)
        if m.tpot is not None and generated > 1:
            m.tpot.observe((last - first) / (generated - 1))
        m.finished(finish)
        if self.tracer is not None and request is not None:
            self._span(request, arrival_ns, {
                "gen_ai.latency.time_to_first_token": first - arrival,
                "gen_ai.latency.e2e": last - arrival,
                "gen_ai.latency.time_in_queue": admitted - arrival,
                "gen_ai.latency.time_in_model_prefill": first - admitted,
                "gen_ai.latency.time_in_model_decode": last - first,
                "gen_ai.latency.time_in_model_inference": last - admitted,
                "gen_ai.usage.prompt_tokens": prompt_tokens,
                "gen_ai.usage.completion_tokens": generated,
            })  # fmt: skip

    def _span(self, request: RequestInfo, start_ns: int, attributes: dict[str, Any]) -> None:
        """vLLM's one span per request: request, SERVER, child of the caller's span."""
        assert self.tracer is not None
        parent = propagate.extract(request.headers)
        span = self.tracer.start_span(
            VLLM.SPAN, context=parent, kind=trace.SpanKind.SERVER, start_time=start_ns
        )
        span.set_attributes({**request.attributes, **attributes})
        span.end()


def _error(status: int, kind: str, message: str) -> JSONResponse:
    """vLLM 0.10.2's error answer (vllm/entrypoints/openai/protocol.py: ErrorResponse)."""
    error = {"message": message, "type": kind, "param": None, "code": status}
    return JSONResponse({"error": error}, status_code=status)


def _count_tokens(body: dict[str, Any], chat: bool) -> int:
    if chat:
        messages = body.get("messages") or []
        words = sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))
        return words + CHAT_TEMPLATE_TOKENS * len(messages)
    prompt = body.get("prompt", "")
    prompts = prompt if isinstance(prompt, list) else [prompt]
    return sum(len(str(p).split()) for p in prompts)


def create_app(config: Config, tracer_provider: trace.TracerProvider | None = None) -> Starlette:
    """The simulator; with a tracer provider it also writes vLLM's request spans."""
    tracer = tracer_provider.get_tracer("vllm.simulator") if tracer_provider is not None else None
    engine = Engine(config, tracer)

    async def completions(request: Request) -> Response:
        chat = request.url.path.endswith("/chat/completions")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "BadRequestError", "the body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "BadRequestError", "the body must be a JSON object")
        if body.get("model", config.served_model_name) != config.served_model_name:
            return _error(404, "NotFoundError", f"The model `{body.get('model')}` does not exist.")
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
        ):
            return _error(400, "BadRequestError", "max_tokens must be a positive integer")
        output_tokens = limit or config.default_output_tokens
        finish = "length" if limit else "stop"
        prompt_tokens = _count_tokens(body, chat)
        try:
            engine.admit_or_fail()
        except Rejected:
            return _error(503, "ServiceUnavailableError", "the server's queue is full")
        except EngineFailure:
            return _error(500, "InternalServerError", "simulated engine failure")
        reply = _Reply(chat, config.served_model_name, next(engine.ids), prompt_tokens)
        params: dict[str, Any] = {
            "gen_ai.request.id": reply.id,
            "gen_ai.request.max_tokens": output_tokens,
        }
        for key in ("temperature", "top_p", "n"):
            if isinstance(body.get(key), int | float) and not isinstance(body.get(key), bool):
                params[f"gen_ai.request.{key}"] = body[key]
        info = RequestInfo(dict(request.headers), params)
        tokens = engine.generate(prompt_tokens, output_tokens, finish, info)
        if not body.get("stream"):
            count = 0
            async for _ in tokens:
                count += 1
            return JSONResponse(reply.whole(count, finish))
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        drop = engine.faults.drop_rate and engine.chance.random() < engine.faults.drop_rate
        return StreamingResponse(
            reply.stream(
                tokens, output_tokens, finish, usage, output_tokens // 2 if drop else None
            ),
            media_type="text/event-stream",
        )

    async def models(_: Request) -> Response:
        created = int(time.time())
        model = {
            "id": config.served_model_name,
            "object": "model",
            "created": created,
            "owned_by": "vllm",
            "root": config.served_model_name,
            "max_model_len": config.max_model_len,
        }
        return JSONResponse({"object": "list", "data": [model]})

    async def health(_: Request) -> Response:
        return Response(status_code=200)

    async def metrics(request: Request) -> Response:
        if engine.faults.metrics_delay_seconds:
            await asyncio.sleep(engine.faults.metrics_delay_seconds)
        if engine.faults.garbage_metrics:
            return Response(GARBAGE, media_type="text/plain")
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(engine.metrics.registry), headers={"Content-Type": content_type})

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            engine.faults = Faults()
        elif request.method == "POST":
            try:
                changes = await request.json()
            except json.JSONDecodeError:
                return _error(400, "BadRequestError", "the body is not JSON")
            problems = (
                engine.faults.update(changes)
                if isinstance(changes, dict)
                else ["expected an object"]
            )
            if problems:
                return _error(400, "BadRequestError", "; ".join(problems))
        return JSONResponse(engine.faults.as_dict())

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/models", models),
            Route("/health", health),
            Route("/metrics", metrics),
            Route("/admin/faults", faults, methods=["GET", "POST", "DELETE"]),
        ]
    )
    app.state.engine = engine
    return app


class _Reply:
    """One request's answer as vLLM 0.10.2 writes it (vllm/entrypoints/openai/protocol.py
    and serving_chat.py / serving_completion.py): pydantic's compact JSON, fields in its
    models' order; a chat stream's chunks leave unset fields out, a completion stream's
    keep every field."""

    def __init__(self, chat: bool, model: str, number: int, prompt_tokens: int) -> None:
        self.chat = chat
        self.model = model
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-sim{number}"
        self.created = int(time.time())
        self.prompt_tokens = prompt_tokens

    def _usage(self, completion: int) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "total_tokens": self.prompt_tokens + completion,
            "completion_tokens": completion,
        }

    def _envelope(self, choices: list[dict[str, Any]], chunk: bool = False) -> dict[str, Any]:
        kind = ("chat.completion" if self.chat else "text_completion") + (
            ".chunk" if chunk and self.chat else ""
        )
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def whole(self, count: int, finish: str) -> dict[str, Any]:
        text = "".join(f"tok{i} " for i in range(count))
        choice = (
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            if self.chat
            else {"index": 0, "text": text, "finish_reason": finish}
        )
        return {**self._envelope([choice]), "usage": self._usage(count)}

    @staticmethod
    def _event(body: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"

    def _role(self) -> bytes:
        """A chat stream's first chunk: the role, with an empty text."""
        delta = {"role": "assistant", "content": ""}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        return self._event({**self._envelope([choice], chunk=True), "prompt_token_ids": None})

    def _chunk(self, text: str, finish: str | None) -> bytes:
        """A token's chunk; the last token's carries the finish reason."""
        choice: dict[str, Any] = {"index": 0}
        if self.chat:
            choice |= {"delta": {"content": text}, "logprobs": None, "finish_reason": finish}
            if finish:
                choice["stop_reason"] = None
            choice["token_ids"] = None
            return self._event(self._envelope([choice], chunk=True))
        choice |= {"text": text, "logprobs": None, "finish_reason": finish, "stop_reason": None}
        choice |= {"prompt_token_ids": None, "token_ids": None}
        return self._event({**self._envelope([choice], chunk=True), "usage": None})

    async def stream(
        self,
        tokens: AsyncIterator[int],
        total: int,
        finish: str,
        usage: bool,
        drop_after: int | None,
    ) -> AsyncIterator[bytes]:
        count = 0
        async for index in tokens:
            if self.chat and index == 0:
                yield self._role()  # vLLM sends the role with the first output, not before
            if drop_after is not None and count >= drop_after:
                await tokens.aclose()  # type: ignore[attr-defined]
                raise ConnectionAbortedError("simulated dropped connection")
            count += 1
            yield self._chunk(f"tok{index} ", finish if index == total - 1 else None)
        if usage:
            yield self._event({**self._envelope([], chunk=True), "usage": self._usage(count)})
        yield b"data: [DONE]\n\n"


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Config]:
    parser = argparse.ArgumentParser(prog="llm-sim", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", default=Config.served_model_name)
    parser.add_argument("--max-num-seqs", type=int, default=Config.max_num_seqs)
    parser.add_argument("--max-waiting", type=int, default=Config.max_waiting)
    parser.add_argument("--max-model-len", type=int, default=Config.max_model_len)
    parser.add_argument("--default-output-tokens", type=int, default=Config.default_output_tokens)
    parser.add_argument("--seed", type=int, default=Config.seed)
    parser.add_argument("--metrics-flavor", choices=FLAVORS, default=CURRENT)
    parser.add_argument("--custom-histogram-buckets", default="", metavar="JSON")
    parser.add_argument(
        "--otlp-traces-endpoint",
        default="",
        metavar="URL",
        help="OTLP endpoint for vLLM's request spans; protocol as vLLM reads it: "
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, default grpc",
    )
    defaults = Profile()
    parser.add_argument(
        "--prefill-overhead-ms", type=float, default=defaults.prefill_overhead * 1e3
    )
    parser.add_argument(
        "--prefill-per-token-ms", type=float, default=defaults.prefill_per_token * 1e3
    )
    parser.add_argument("--itl-ms", type=float, default=defaults.itl * 1e3)
    parser.add_argument("--itl-jitter", type=float, default=defaults.itl_jitter)
    args = parser.parse_args(argv)
    try:
        buckets = (
            parse_custom_buckets(args.custom_histogram_buckets)
            if args.custom_histogram_buckets
            else {}
        )
    except ValueError as error:
        parser.error(f"--custom-histogram-buckets: {error}")
    profile = Profile(
        prefill_overhead=args.prefill_overhead_ms / 1e3,
        prefill_per_token=args.prefill_per_token_ms / 1e3,
        itl=args.itl_ms / 1e3,
        itl_jitter=args.itl_jitter,
    )
    config = Config(
        served_model_name=args.served_model_name, max_num_seqs=args.max_num_seqs,
        max_waiting=args.max_waiting, max_model_len=args.max_model_len,
        default_output_tokens=args.default_output_tokens, seed=args.seed,
        flavor=args.metrics_flavor, custom_buckets=buckets, profile=profile,
    )  # fmt: skip
    return args, config


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    args, config = parse_args(argv)
    tracer_provider = None
    if args.otlp_traces_endpoint:
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", provider.GRPC)
        try:
            tracer_provider = provider.configure("vllm", args.otlp_traces_endpoint, protocol)
        except provider.ConfigError as error:
            print(f"llm-sim: {error}", file=sys.stderr)
            return 2
    app = create_app(config, tracer_provider)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    if tracer_provider is not None:
        tracer_provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
