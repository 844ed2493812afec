"""ASGI middleware for OpenAI-compatible endpoints: what the client sees, per request.

For POST /v1/chat/completions and /v1/completions it reads the request body first (up
to PEEK_LIMIT bytes, then hands the app the same messages: no second read), so the
span starts with the model a sampler may choose by; follows the response (SSE chunk
by chunk when streamed) and records:
- a SERVER span per request after the OpenTelemetry GenAI conventions (`chat {model}`,
  `gen_ai.*` attributes, an event at the first token, outcome and `error.type`),
  continuing an incoming `traceparent`;
- time to first token, each inter-chunk gap, time per output token and end to end
  into the catalog histograms (catalog buckets, exemplars carrying the trace id),
  the requests counter by outcome, and goodput: successful requests that met both their
  TTFT and TPOT targets, which only a place that sees each request whole can count.
Nothing the middleware does can break a request: its own failures are logged and
dropped. Prompt and completion text reach the span only with `capture_content=True`.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import math
import os
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry, Counter, Histogram, make_asgi_app, multiprocess
from prometheus_client.samples import Exemplar

from llm_slo_stack.exporters import catalog
from llm_slo_stack.exporters.cardinality import LabelCap
from llm_slo_stack.slo.model import GoodputSLI, LatencySLI, Spec

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPERATIONS = {"/v1/chat/completions": "chat", "/v1/completions": "text_completion"}
FIRST_TOKEN_EVENT = "gen_ai.first_token"
OUTCOME_ATTRIBUTE = "llm.request.outcome"
TPOT_ATTRIBUTE = "llm.response.time_per_output_token"  # no GenAI attribute holds TPOT
EXCHANGE = "llm_slo_stack.exchange"  # the scope key under which a proxy finds the exchange
# Request parameters as the GenAI conventions name them, from the OpenAI request body.
REQUEST_PARAMETERS = {
    "max_tokens": "gen_ai.request.max_tokens", "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p", "top_k": "gen_ai.request.top_k",
    "seed": "gen_ai.request.seed", "n": "gen_ai.request.choice.count",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
}  # fmt: skip
# How a chunk whose one choice goes on ends: its last key null, then the choices' end,
# then at most a null usage (vLLM's chat ends in "token_ids":null}]}, its completions
# and SGLang's chunks in }],"usage":null}). Two quotes: text, whose quotes are escaped,
# cannot hold this, so a payload cut short inside its text (a raw line end) never ends so.
_PLAIN_END = re.compile(rb'"[a-z_]+": ?null\}\](?:, ?"usage": ?null)?\}\Z')
# What makes such a chunk more than its next text: a finish reason or usage that is not
# null (usage may come before the choices), whatever the spaces after the colon; an error.
_NOT_PLAIN = re.compile(rb'"(?:finish_reason|usage)": *[^n ]|"error"')
# The keys of a chat delta's generated text: the answer, and the reasoning before it
# (vLLM 0.10.2 and SGLang say reasoning_content, vLLM 0.34.0 reasoning). The server's
# TTFT counts a reasoning model's first thought: so does ours. A completion has text.
_CHAT_TEXT = (b'"content":', b'"reasoning_content":', b'"reasoning":')
_COMPLETION_TEXT = (b'"text":',)
# A quote, which may end the text (an escaped one takes the slow path), or a line end,
# which JSON text never holds raw.
_NOT_IN_TEXT = re.compile(rb'["\n\r]')
DEFAULT_MAX_MODELS = 64
DEFAULT_MAX_TENANTS = 64
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's multiprocess mode
MAX_NAME = 128  # characters of a model name kept in labels and span names
OTHER_ERROR = "_OTHER"  # the conventions' error.type when nothing names the error
PEEK_LIMIT = 1024 * 1024  # bytes of a request body read before the app (a chat is kilobytes)
MAX_EVENT = 1024 * 1024  # bytes of an unfinished stream event held: a chunk is hundreds
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Targets:
    """Per-request latency targets for goodput, in seconds (None: no target)."""

    ttft: float | None = None
    tpot: float | None = None

    @classmethod
    def from_spec(cls, spec: Spec) -> Targets:
        """The targets of the SLO file's goodput SLI, which its goodput SLO is judged by;
        without one, its TTFT threshold and its TPOT threshold (else its ITL one)."""
        for slo in spec.slos:
            if isinstance(slo.sli, GoodputSLI):
                ttft, tpot = slo.sli.ttft, slo.sli.tpot
                return cls(
                    None if ttft is None else float(ttft), None if tpot is None else float(tpot)
                )
        thresholds = {
            slo.sli.phase: float(slo.sli.threshold)
            for slo in spec.slos
            if isinstance(slo.sli, LatencySLI) and slo.sli.phase
        }
        return cls(thresholds.get("ttft"), thresholds.get("tpot", thresholds.get("itl")))

    def within(self, e2e: float, tokens: int) -> bool:
        """A whole (non-streamed) answer met both targets if it arrived no later than a
        stream meeting both would have ended: TTFT plus TPOT for each token after the first."""
        budget = math.inf if self.ttft is None else self.ttft
        return e2e <= budget + (self.tpot or 0.0) * max(tokens - 1, 0)

    def met(self, ttft: float | None, tpot: float | None) -> bool:
        ttft_ok = self.ttft is None or (ttft is not None and ttft <= self.ttft)
        tpot_ok = self.tpot is None or tpot is None or tpot <= self.tpot  # one token: no TPOT
        return ttft_ok and tpot_ok


class GenAIMetrics:
    """The GenAI conventions' client metrics, through an OpenTelemetry meter provider,
    for backends that take OTLP metrics rather than scrape Prometheus. The conventions
    recommend buckets for duration and token usage; time to first chunk and per output
    chunk take those of the server's time to first token and per output token."""

    def __init__(self, meter_provider: MeterProvider) -> None:
        meter = meter_provider.get_meter(__name__)
        g = catalog.OTelGenAI
        self.duration = meter.create_histogram(
            g.OPERATION_DURATION, "s", "GenAI operation duration.",
            explicit_bucket_boundaries_advisory=g.DURATION_BUCKETS,
        )  # fmt: skip
        self.first_chunk = meter.create_histogram(
            g.TIME_TO_FIRST_CHUNK, "s", "Time to receive the first chunk of a stream.",
            explicit_bucket_boundaries_advisory=g.TTFT_BUCKETS,
        )  # fmt: skip
        self.per_chunk = meter.create_histogram(
            g.TIME_PER_OUTPUT_CHUNK, "s", "Time between the chunks of a stream after the first.",
            explicit_bucket_boundaries_advisory=g.TPOT_BUCKETS,
        )  # fmt: skip
        self.tokens = meter.create_histogram(
            g.TOKEN_USAGE, "{token}", "Input and output tokens used.",
            explicit_bucket_boundaries_advisory=g.TOKEN_BUCKETS,
        )  # fmt: skip


def observe_all(child: Histogram, values: Sequence[float], exemplar: dict[str, str] | None) -> None:
    """Every value into one histogram child at once, the last one with the exemplar: the
    bucket counts observe() per value would leave, and their sum to rounding, from the
    sorted values at a bisect a bucket, instead of a locked increment and a validated
    exemplar a value (255 gaps of a stream were a 1.4 ms burst at its end).
    prometheus_client has no bulk observe; its child keeps a value per bucket
    (`_buckets`, not cumulative: observe() counts a value in the first bucket whose
    bound is at or above it) and one for `_sum`, which a test compares with observe().
    Without them, observe() each."""
    if not values:
        return
    buckets = getattr(child, "_buckets", None)
    bounds = getattr(child, "_upper_bounds", None)
    total = getattr(child, "_sum", None)
    if buckets is None or bounds is None or total is None:
        for value in values[:-1]:
            child.observe(value)
        child.observe(values[-1], exemplar)
        return
    ordered = sorted(values)
    total.inc(sum(values))
    counted = 0
    for bucket, bound in zip(buckets, bounds, strict=True):
        upto = bisect.bisect_right(ordered, bound, counted)  # values at or below the bound
        if upto > counted:
            bucket.inc(upto - counted)
            counted = upto
            if counted == len(ordered):
                break
    if exemplar:
        last = values[-1]
        buckets[bisect.bisect_left(bounds, last)].set_exemplar(
            Exemplar(exemplar, last, time.time())
        )


class RequestMetrics:
    """The client-side histograms and counters the middleware owns, in one registry; the
    counters also by tenant when the middleware has a tenant source."""

    def __init__(self, registry: CollectorRegistry, tenants: bool = False) -> None:
        def histogram(metric: catalog.Metric) -> Histogram:
            return Histogram(
                metric.name, metric.help, metric.labels, buckets=metric.buckets, registry=registry
            )

        def counter(metric: catalog.Metric) -> Counter:
            labels = (*metric.labels, catalog.TENANT) if tenants else metric.labels
            return Counter(metric.name, metric.help, labels, registry=registry)

        self.ttft = histogram(catalog.CLIENT_TIME_TO_FIRST_TOKEN)
        self.itl = histogram(catalog.CLIENT_INTER_TOKEN_LATENCY)
        self.tpot = histogram(catalog.CLIENT_TIME_PER_OUTPUT_TOKEN)
        self.e2e = histogram(catalog.CLIENT_E2E_REQUEST_LATENCY)
        self.requests = counter(catalog.CLIENT_REQUESTS)
        self.prompt_tokens = counter(catalog.CLIENT_PROMPT_TOKENS)
        self.generation_tokens = counter(catalog.CLIENT_GENERATION_TOKENS)
        self.goodput = counter(catalog.REQUESTS_GOODPUT)
        self._children: dict[tuple[str, ...], _Children] = {}

    def children(self, model: str, tenant: tuple[str, ...]) -> _Children:
        """The series of one model (and tenant), looked up once: labels() validates its
        values on every call. As many as the label caps let through."""
        key = (model, *tenant)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = _Children(
                self.ttft.labels(model), self.itl.labels(model), self.tpot.labels(model),
                self.e2e.labels(model), self.prompt_tokens.labels(*key),
                self.generation_tokens.labels(*key), self.goodput.labels(*key),
            )  # fmt: skip
        return found


@dataclass(frozen=True, slots=True)
class _Children:
    """One model's (and tenant's) series of RequestMetrics, but the requests counter,
    whose outcome label varies."""

    ttft: Histogram
    itl: Histogram
    tpot: Histogram
    e2e: Histogram
    prompt_tokens: Counter
    generation_tokens: Counter
    goodput: Counter


@dataclass(slots=True)
class _Exchange:
    """What one request and its response have shown so far."""

    operation: str
    start: float
    body: list[bytes] = field(default_factory=list)
    status: int = 0
    streamed: bool = False
    complete: bool = False
    disconnected: bool = False
    failed: str = ""
    buffer: bytes = b""
    response: list[bytes] = field(default_factory=list)
    first_token: float | None = None
    last_token: float | None = None
    gaps: list[float] = field(default_factory=list)
    chunks: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    response_id: str = ""
    response_model: str = ""
    finish_reasons: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    thoughts: list[str] = field(default_factory=list)  # reasoning text, captured with `text`
    tenant: tuple[str, ...] = ()  # the tenant label's value, when the middleware has a source
    plain: tuple[bytes, bytes] | None = None  # how this stream's plain token events begin and end
    whole: bool = False  # the request body has been read to its end
    unreadable: int = 0  # stream events whose data is not a JSON object, not counted
    parsed: dict[str, Any] | None = None  # the request body, once read whole and parsed
    call: trace.Span | None = None  # the CLIENT span of the call to the model server (a proxy)
    server: tuple[str, int | None] | None = None  # that model server's address and port

    def token(self, now: float) -> None:
        """A chunk that carried generated text arrived at `now` (perf_counter)."""
        if self.first_token is None:
            self.first_token = now
        else:
            self.gaps.append(now - self.last_token)  # type: ignore[operator]
        self.last_token = now
        self.chunks += 1

    def next_token(self, body: bytes) -> bool:
        """Count `body` as one token if it is one event shaped as this stream's plain
        token events: the prefix and suffix around the text learned from one checked in
        full (`plain`), and between them text with no quote, line end or trailing
        backslash. Such text cannot end its JSON string early, so the body is exactly
        one such event (no second choice, no second event, no usage): a few C scans and
        no Python call for most chunks of a stream."""
        if self.plain is None or self.buffer:
            return False
        prefix, suffix = self.plain
        start, end = len(prefix), len(body) - len(suffix)
        if (
            start >= end  # no text
            or not body.startswith(prefix)
            or not body.endswith(suffix)
            or _NOT_IN_TEXT.search(body, start, end)
            or body[end - 1] == 92  # a backslash: it would escape the suffix's quote
        ):
            return False
        now = time.perf_counter()
        self.gaps.append(now - self.last_token)  # type: ignore[operator]
        self.last_token = now
        self.chunks += 1
        return True

    def request(self) -> dict[str, Any]:
        """The request body as a dict ({} if it is not a JSON object), parsed once: call
        it only once the body has been read whole."""
        if self.parsed is None:
            self.parsed = _json_object(b"".join(self.body)) or {}
        return self.parsed


class LLMTracingMiddleware:
    """Wrap an ASGI app serving OpenAI-compatible endpoints (FastAPI, Starlette, a proxy)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        registry: CollectorRegistry | None = None,
        targets: Targets | None = None,
        capture_content: bool = False,
        provider_name: str = "vllm",
        max_models: int = DEFAULT_MAX_MODELS,
        models: Iterable[str] = (),
        tenant_header: str | None = None,
        tenant_from_api_key: bool = False,
        max_tenants: int = DEFAULT_MAX_TENANTS,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.app = app
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        # Its own registry unless given one: two instances in one process never collide.
        self.registry = CollectorRegistry() if registry is None else registry
        self.tenant_header = tenant_header.lower() if tenant_header else None
        self.tenant_from_api_key = tenant_from_api_key
        self.tenants = LabelCap(max_tenants)
        tenanted = bool(self.tenant_header or tenant_from_api_key)
        self.metrics = RequestMetrics(self.registry, tenants=tenanted)
        self.genai = GenAIMetrics(meter_provider) if meter_provider is not None else None
        self.targets = targets or Targets()
        self.capture_content = capture_content
        self.provider_name = provider_name
        self.models = LabelCap(max_models)
        self.allowed = frozenset(models)  # model names that take a label slot from the start
        self.known: set[str] = set()  # names the upstream has served

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        operation = OPERATIONS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if operation is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(operation, time.perf_counter())
        arrived = time.time_ns()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.tenant_header or self.tenant_from_api_key:
            exchange.tenant = (self._tenant(headers),)
        parent = propagate.extract(headers)
        at_start: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": self.provider_name,
            "http.request.method": "POST",
            "url.path": scope["path"],
        }
        server = scope.get("server")
        if isinstance(server, tuple | list) and len(server) == 2 and server[1] is not None:
            at_start["server.address"], at_start["server.port"] = server[0], server[1]
        peeked = await self._peek(exchange, receive)
        model = exchange.request().get("model") if exchange.whole else None
        if isinstance(model, str) and model:  # sampling-relevant: a sampler may choose by it
            at_start["gen_ai.request.model"] = model[:MAX_NAME]
        span = self.tracer.start_span(
            operation, context=parent, kind=SpanKind.SERVER, attributes=at_start, start_time=arrived
        )
        scope[EXCHANGE] = (exchange, span, self)

        async def observed_receive() -> Message:
            if peeked:  # what the middleware read first, given to the app as it came
                return peeked.popleft()
            message = await receive()
            if message["type"] == "http.request":
                exchange.body.append(message.get("body", b""))
            elif message["type"] == "http.disconnect":
                exchange.disconnected = True
            return message

        async def observed_send(message: Message) -> None:
            if exchange.streamed and message["type"] == "http.response.body":
                try:  # the per-chunk path: kept lean
                    body = message.get("body", b"")
                    if not exchange.next_token(body):
                        self._read_events(exchange, body)
                except Exception:
                    log.exception("llm tracing middleware: reading a stream failed")
            else:
                self._guard(self._on_send, exchange, message)
            try:
                await send(message)
            except OSError:
                exchange.disconnected = True
                raise

        token = context.attach(trace.set_span_in_context(span, parent))
        try:
            await self.app(scope, observed_receive, observed_send)
        except BaseException as error:
            exchange.failed = type(error).__name__
            raise
        finally:
            context.detach(token)
            self._guard(self._finish, exchange, span, scope)

    @staticmethod
    async def _peek(exchange: _Exchange, receive: Receive) -> deque[Message]:
        """The request body's messages, read before the app reads them (up to PEEK_LIMIT
        bytes, so a huge body is left to the app's own limit), so the model is known at
        the span's start. The app is given the same messages afterwards."""
        messages: deque[Message] = deque()
        size = 0
        while size <= PEEK_LIMIT:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                exchange.disconnected = message["type"] == "http.disconnect"
                break
            body = message.get("body", b"")
            exchange.body.append(body)
            size += len(body)
            if not message.get("more_body", False):
                exchange.whole = True
                break
        return messages

    @staticmethod
    def _guard(step: Callable[..., None], *args: Any) -> None:
        try:
            step(*args)
        except Exception:  # the middleware must never break the request it observes
            log.exception("llm tracing middleware: %s failed", step.__name__)

    def _on_send(self, exchange: _Exchange, message: Message) -> None:
        if message["type"] == "http.response.start":
            exchange.status = message["status"]
            content_type = dict(message.get("headers", [])).get(b"content-type", b"")
            exchange.streamed = content_type.startswith(b"text/event-stream")
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if exchange.streamed:
                self._read_events(exchange, body)
            else:
                exchange.response.append(body)
                if not message.get("more_body", False):
                    exchange.complete = True
                    # Not JSON (a load balancer's error page): nothing to read, but the status.
                    answer = _json_object(b"".join(exchange.response))
                    if answer:
                        self._read_choice_data(exchange, answer)

    def _read_events(self, exchange: _Exchange, body: bytes) -> None:
        # One event, one line, one token: most chunks of a stream. `data: ` as Python's
        # servers write it, `data:` as axum's json_data does (TGI 3.3.7: axum 0.7.9).
        start = 6 if body.startswith(b"data: {") else 5 if body.startswith(b"data:{") else 0
        if (
            start
            and not exchange.buffer
            and body.endswith(b"}\n\n")
            and body.find(b"\n") == len(body) - 2
            and b"\r" not in body
            and self._plain_token(exchange, body[start:-2], body[:start])
        ):
            return
        data = exchange.buffer + body if exchange.buffer else body
        held = False
        if b"\r" in data:
            # SSE lines may end in \r\n or \r (sse-starlette writes \r\n): made \n here.
            # A \r that ends the data may be half of a \r\n: it waits for the next chunk.
            held = data.endswith(b"\r")
            data = (data[:-1] if held else data).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        while (end := data.find(b"\n\n")) != -1:
            event, data = data[:end], data[end + 2 :]
            lines = (event,) if b"\n" not in event else event.split(b"\n")
            for line in lines:
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    exchange.complete = True
                elif payload and not self._plain_token(exchange, payload, None):
                    chunk = _json_object(payload)
                    if chunk is None:
                        exchange.unreadable += 1
                    else:
                        self._read_chunk(exchange, chunk)
        if len(data) > MAX_EVENT:  # no event end in sight (not SSE, or compressed): let go
            exchange.unreadable += 1
            data, held = b"", False
        exchange.buffer = data + b"\r" if held else data

    def _plain_token(self, exchange: _Exchange, payload: bytes, head: bytes | None) -> bool:
        """Count a chunk that only carries one choice's next token without parsing it;
        with `head`, the bytes before it in its event's one line, learn its shape for
        next_token().

        Most of a stream is such chunks, and json.loads is most of the per-chunk cost.
        The shape is checked at C speed, a handful of scans: one choice, no finish reason
        or usage but null ones (vLLM follows the finish reason with `"token_ids":null`,
        SGLang the choices with `"usage":null`), no error, and a text key (the first of
        the delta's or the completion's that holds a string) whose text is not empty.
        Anything else (the first chunk, an empty delta, a finish reason, usage, several
        choices, a tool call, captured content) is parsed in full. Inside JSON strings
        quotes are escaped, so these byte patterns cannot come from generated text.
        """
        if (
            self.capture_content
            or not exchange.response_model
            or payload.count(b'"index"') != 1
            or not _PLAIN_END.search(payload, len(payload) - 64)
            or _NOT_PLAIN.search(payload)
        ):
            return False
        for key in _CHAT_TEXT if b'"delta":' in payload else _COMPLETION_TEXT:
            at = payload.find(key) + len(key)
            if at == len(key) - 1:  # not there
                continue
            if payload[at : at + 1] == b" ":
                at += 1
            if payload[at : at + 1] == b'"':
                break  # a string: null would leave the text to the next key
        else:
            return False
        if payload[at + 1 : at + 2] == b'"':
            return False  # an empty text: nothing generated, or the role's first chunk
        exchange.token(time.perf_counter())
        close = payload.find(b'"', at + 1)  # the text's end, if it has no escapes
        if head is not None and close != -1 and payload.find(b"\\", at + 1, close) == -1:
            exchange.plain = (head + payload[: at + 1], payload[close:] + b"\n\n")
        return True

    def _read_chunk(self, exchange: _Exchange, chunk: dict[str, Any]) -> None:
        if chunk.get("error"):  # the server failed the generation mid-stream
            exchange.failed = _stream_error(chunk)
            return
        now = time.perf_counter()
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}  # a completion's choice has none: its text
            text = delta.get("content") if "delta" in choice else choice.get("text")
            if text or _thought_or_call(delta):
                exchange.token(now)
            if self.capture_content:
                _capture(exchange, text, delta)
            if choice.get("finish_reason"):
                exchange.finish_reasons.append(choice["finish_reason"])
                exchange.complete = True
        self._read_choice_data(exchange, chunk, choices=False)

    def _read_choice_data(
        self, exchange: _Exchange, data: dict[str, Any], choices: bool = True
    ) -> None:
        exchange.response_id = exchange.response_id or str(data.get("id", ""))
        exchange.response_model = exchange.response_model or str(data.get("model", ""))
        if isinstance(data.get("usage"), dict):  # counts only: anything else is not used
            exchange.usage = {
                k: v
                for k, v in data["usage"].items()
                if isinstance(v, int) and not isinstance(v, bool) and v >= 0
            }
        if choices:
            for choice in data.get("choices") or []:
                if choice.get("finish_reason"):
                    exchange.finish_reasons.append(choice["finish_reason"])
                if self.capture_content:
                    message = choice.get("message") or {}
                    _capture(exchange, message.get("content") or choice.get("text"), message)

    def _outcome(self, exchange: _Exchange) -> str | None:
        if exchange.disconnected and not exchange.complete:
            return catalog.OUTCOME_ABORTED
        if exchange.failed or (exchange.status >= 500 and exchange.status != 503):
            return catalog.OUTCOME_ERROR
        if exchange.status in (429, 503):
            return catalog.OUTCOME_REJECTED
        if exchange.status >= 400:
            return catalog.OUTCOME_INVALID  # the client's mistake: not the server's failure
        # A choice the server finished as failed or aborted ("error", "abort": vLLM's
        # words, SGLang's too) counts as the server-side view counts it.
        finished = {catalog.VLLM.FINISHED_OUTCOMES.get(r) for r in exchange.finish_reasons}
        for outcome in (catalog.OUTCOME_ERROR, catalog.OUTCOME_ABORTED):
            if outcome in finished:
                return outcome
        return catalog.OUTCOME_SUCCESS if exchange.complete else catalog.OUTCOME_ERROR

    def _tenant(self, headers: dict[str, str]) -> str:
        """The tenant: the configured header's value, else a hash of the API key (never
        the key itself), capped like the model label."""
        tenant = headers.get(self.tenant_header or "", "")[:MAX_NAME]
        if not tenant and self.tenant_from_api_key:
            scheme, _, key = headers.get("authorization", "").partition(" ")
            if scheme.lower() == "bearer" and key:
                tenant = "key-" + hashlib.sha256(key.encode()).hexdigest()[:16]
        return self.tenants.admit(tenant) if tenant else catalog.NO_TENANT

    def _label(self, model: str, served: bool) -> str:
        """The model label: a name takes a slot only once the upstream has served it (a
        2xx answer naming it) or it is in the allow-list; any other is
        catalog.UNKNOWN_MODEL, so requests naming made-up models cannot fill the cap."""
        if served or model in self.known or model in self.allowed:
            label = self.models.admit(model)
            if label == model:
                self.known.add(model)  # bounded by the cap: only admitted names are kept
            return label
        return catalog.UNKNOWN_MODEL

    def _finish(self, exchange: _Exchange, span: trace.Span, scope: Scope) -> None:
        end = time.perf_counter()
        request = exchange.request()
        model = str(request.get("model") or exchange.response_model or "unknown")[:MAX_NAME]
        outcome = self._outcome(exchange)
        if exchange.unreadable:  # one line a request, not a traceback a chunk
            log.warning(
                "llm tracing middleware: %d stream events of an answer from %r were not"
                " JSON objects and were not counted",
                exchange.unreadable,
                model,
            )
        served = 200 <= exchange.status < 300 and (
            bool(exchange.response_model) or outcome == catalog.OUTCOME_SUCCESS
        )
        label = self._label(exchange.response_model[:MAX_NAME] or model, served)
        # Latencies of answers that succeeded only: an error answer's few milliseconds
        # would make an overload look fast. TTFT, gaps and TPOT only where the client saw
        # tokens arrive (a stream); a whole answer at once has an end-to-end time only.
        timed = outcome == catalog.OUTCOME_SUCCESS
        streamed = timed and exchange.streamed and exchange.first_token is not None
        ttft = exchange.first_token - exchange.start if streamed else None  # type: ignore[operator]
        tokens = exchange.usage.get("completion_tokens") or exchange.chunks
        decode = (exchange.last_token or 0) - (exchange.first_token or 0)
        tpot = decode / (tokens - 1) if streamed and tokens > 1 else None
        context_ = span.get_span_context()
        exemplar = (
            {"trace_id": format(context_.trace_id, "032x")}
            if context_.trace_flags.sampled
            else None
        )
        m = self.metrics.children(label, exchange.tenant)
        if ttft is not None:
            m.ttft.observe(ttft, exemplar)
            observe_all(m.itl, exchange.gaps, exemplar)
            if tpot is not None:
                m.tpot.observe(tpot, exemplar)
        if timed:
            e2e = end - exchange.start
            m.e2e.observe(e2e, exemplar)
            met = self.targets.met(ttft, tpot) if streamed else self.targets.within(e2e, tokens)
            if met:
                m.goodput.inc()
        if outcome is not None:
            self.metrics.requests.labels(label, outcome, *exchange.tenant).inc()
        if exchange.usage.get("prompt_tokens"):
            m.prompt_tokens.inc(exchange.usage["prompt_tokens"])
        if tokens:
            m.generation_tokens.inc(tokens)
        if self.genai is not None:
            self._record(self.genai, exchange, model, outcome, ttft, end, scope)
        genai = self._annotate(exchange, request, model, ttft, tpot)
        if exchange.call is None:  # the app is the model server: all on the SERVER span
            self._conclude(span, exchange, outcome, genai)
            span.update_name(f"{exchange.operation} {model}")
        else:  # a proxy: the GenAI attributes are the model call's
            self._conclude(span, exchange, outcome, {})
            self._conclude(exchange.call, exchange, outcome, genai)
            exchange.call.end()
            span.update_name(f"POST {scope['path']}")
        span.end()

    def _record(
        self,
        genai: GenAIMetrics,
        exchange: _Exchange,
        model: str,
        outcome: str | None,
        ttft: float | None,
        end: float,
        scope: Scope,
    ) -> None:
        """One request into the GenAI client metrics, with the conventions' attributes."""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": exchange.operation,
            "gen_ai.provider.name": self.provider_name,
            "gen_ai.request.model": model,
        }
        if exchange.response_model:
            attributes["gen_ai.response.model"] = exchange.response_model[:MAX_NAME]
        server = exchange.server or scope.get("server")
        if isinstance(server, tuple | list) and len(server) == 2 and server[1] is not None:
            attributes["server.address"], attributes["server.port"] = server[0], server[1]
        if outcome != catalog.OUTCOME_SUCCESS:
            attributes["error.type"] = _error_type(exchange, outcome)
        genai.duration.record(end - exchange.start, attributes)
        if ttft is not None:
            genai.first_chunk.record(ttft, attributes)
            for gap in exchange.gaps:
                genai.per_chunk.record(gap, attributes)
        token_type = catalog.OTelGenAI.TOKEN_TYPE
        if exchange.usage.get("prompt_tokens"):
            genai.tokens.record(
                exchange.usage["prompt_tokens"], {**attributes, token_type: "input"}
            )
        output = exchange.usage.get("completion_tokens") or exchange.chunks
        if output:
            genai.tokens.record(output, {**attributes, token_type: "output"})

    def _annotate(
        self,
        exchange: _Exchange,
        request: dict[str, Any],
        model: str,
        ttft: float | None,
        tpot: float | None,
    ) -> dict[str, Any]:
        """The GenAI attributes of the model call known at its end (a proxy's model call
        has had the request's since its start)."""
        attributes = request_attributes(request, model) if exchange.call is None else {}
        if exchange.response_id:
            attributes["gen_ai.response.id"] = exchange.response_id
        if exchange.response_model:
            attributes["gen_ai.response.model"] = exchange.response_model
        if exchange.finish_reasons:
            attributes["gen_ai.response.finish_reasons"] = exchange.finish_reasons
        if "prompt_tokens" in exchange.usage:
            attributes["gen_ai.usage.input_tokens"] = exchange.usage["prompt_tokens"]
        output_tokens = exchange.usage.get("completion_tokens") or exchange.chunks
        if output_tokens:
            attributes["gen_ai.usage.output_tokens"] = output_tokens
        if ttft is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = ttft
        if tpot is not None:
            attributes[TPOT_ATTRIBUTE] = tpot
        if self.capture_content:
            attributes |= _messages(request, exchange)
        return attributes

    @staticmethod
    def _conclude(
        span: trace.Span, exchange: _Exchange, outcome: str | None, genai: dict[str, Any]
    ) -> None:
        """A span's outcome, with `genai` (the model call's attributes, if it is that
        span) in one set; the first-token event on the model call's span."""
        attributes = {
            **genai,
            "http.response.status_code": exchange.status,
            OUTCOME_ATTRIBUTE: outcome or "unknown",
        }
        if outcome in (catalog.OUTCOME_ERROR, catalog.OUTCOME_REJECTED, catalog.OUTCOME_ABORTED):
            attributes["error.type"] = _error_type(exchange, outcome)
            if outcome == catalog.OUTCOME_ERROR:
                span.set_status(Status(StatusCode.ERROR))
        elif outcome is None:
            attributes["error.type"] = str(exchange.status)
        span.set_attributes(attributes)
        if "gen_ai.response.time_to_first_chunk" in genai:
            span.add_event(FIRST_TOKEN_EVENT, timestamp=_ns_at(exchange.first_token))  # type: ignore[arg-type]


def request_attributes(request: dict[str, Any], model: str) -> dict[str, Any]:
    """The GenAI request attributes of an OpenAI request body."""
    attributes: dict[str, Any] = {
        "gen_ai.request.model": model,
        "gen_ai.request.stream": bool(request.get("stream")),
    }
    for key, name in REQUEST_PARAMETERS.items():
        value = request.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attributes[name] = value
    stop = request.get("stop")
    stops = [stop] if isinstance(stop, str) else stop
    if isinstance(stops, list) and stops and all(isinstance(s, str) for s in stops):
        attributes["gen_ai.request.stop_sequences"] = [s[:MAX_NAME] for s in stops]
    return attributes


def _messages(request: dict[str, Any], exchange: _Exchange) -> dict[str, str]:
    """Prompt and answer in the conventions' message schema (opt-in content capture)."""
    asked = request.get("messages")
    if not isinstance(asked, list):
        asked = [{"role": "user", "content": request.get("prompt")}]
    inputs = [
        {"role": m.get("role", "user"), "parts": [{"type": "text", "content": m.get("content")}]}
        for m in asked
        if isinstance(m, dict)
    ]
    thought = [{"type": "reasoning", "content": "".join(exchange.thoughts)}]
    output = {
        "role": "assistant",
        "parts": [
            *(thought if exchange.thoughts else []),
            {"type": "text", "content": "".join(exchange.text)},
        ],
        "finish_reason": exchange.finish_reasons[0] if exchange.finish_reasons else None,
    }
    return {
        "gen_ai.input.messages": json.dumps(inputs),
        "gen_ai.output.messages": json.dumps([output]),
    }


def start_model_call(scope: Scope, address: str, port: int | None) -> context.Context | None:
    """For a proxy about to call the model server: a CLIENT span for the call, child of
    the middleware's SERVER span, with the GenAI attributes a sampler needs set at its
    start; the context to propagate to the model server. None outside the middleware."""
    found = scope.get(EXCHANGE)
    if found is None:
        return None
    exchange, server_span, middleware = found
    request = exchange.request()
    model = str(request.get("model") or "unknown")[:MAX_NAME]
    attributes = {
        "gen_ai.operation.name": exchange.operation,
        "gen_ai.provider.name": middleware.provider_name,
        "server.address": address,
        **request_attributes(request, model),
    }
    if port is not None:
        attributes["server.port"] = port
    parent = trace.set_span_in_context(server_span)
    exchange.server = (address, port)
    exchange.call = middleware.tracer.start_span(
        f"{exchange.operation} {model}", context=parent, kind=SpanKind.CLIENT, attributes=attributes
    )
    return trace.set_span_in_context(exchange.call, parent)


def metrics_app(registry: CollectorRegistry) -> ASGIApp:
    """An ASGI app serving the middleware's metrics. Under several worker processes
    (`uvicorn --workers N`), set PROMETHEUS_MULTIPROC_DIR to an empty folder before the
    workers start: every worker then writes its counts there and this app adds them up,
    so each scrape sees every request once, whichever worker answers it (prometheus_client's
    multiprocess mode; it keeps no exemplars)."""
    if os.environ.get(MULTIPROCESS_DIR):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return make_asgi_app(registry)


def _thought(message: dict[str, Any]) -> Any:
    """A delta's or a whole message's reasoning text, under either name (see _CHAT_TEXT)."""
    return message.get("reasoning_content") or message.get("reasoning")


def _thought_or_call(delta: dict[str, Any]) -> bool:
    """Whether a chat delta without answer text still carries generated tokens: reasoning
    or a tool call's id, name or arguments (vLLM's DeltaToolCall)."""
    return bool(_thought(delta) or delta.get("tool_calls"))


def _capture(exchange: _Exchange, text: Any, message: dict[str, Any]) -> None:
    """Answer text, and the reasoning before it, kept for the output message (opt-in)."""
    if isinstance(text, str) and text:
        exchange.text.append(text)
    thought = _thought(message)
    if isinstance(thought, str) and thought:
        exchange.thoughts.append(thought)


def _json_object(raw: bytes) -> dict[str, Any] | None:
    """`raw` parsed, if it is a JSON object; None if it is not JSON (or not UTF-8, or
    nested too deep), or JSON but not an object."""
    try:
        parsed = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _stream_error(event: dict[str, Any]) -> str:
    """The error.type of an error event in a stream: its error's type (vLLM 0.10.2 and
    SGLang send {"error": {"message", "type", "param", "code"}}), else OTHER_ERROR
    (TGI 3.3.7's OpenAI routes send {"error": {"message", "http_status_code"}})."""
    error = event["error"]
    kind = error.get("type") if isinstance(error, dict) else None
    return kind[:MAX_NAME] if isinstance(kind, str) and kind else OTHER_ERROR


def _error_type(exchange: _Exchange, outcome: str | None) -> str:
    """What a request that did not succeed failed with: the app's exception or the
    stream's error event, else an error status, else the outcome itself."""
    return exchange.failed or (str(exchange.status) if exchange.status >= 400 else str(outcome))


def _ns_at(moment: float) -> int:
    """A perf_counter() reading as wall-clock nanoseconds, for span event timestamps."""
    return time.time_ns() - int((time.perf_counter() - moment) * 1e9)
