"""`llm-trace-proxy`: a streaming reverse proxy in front of an OpenAI-compatible server,
with the tracing middleware, forwarding `traceparent` so that the server's own span
(vLLM's request span, with --otlp-traces-endpoint) becomes a child of the proxy's.
It serves its own /metrics.

Bounded against a bad upstream or client: a connect timeout, a first-byte timeout (the
answer's headers; a non-streamed answer sends them only when it is done, so the default
is long) and an idle timeout between chunks (a generation still streaming is never
cut); a request-body limit; the upstream request is dropped as soon as the client goes,
even before the upstream has answered. On SIGTERM it stops accepting, lets in-flight
streams finish (up to --drain-timeout), then flushes its spans before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import quote, urlsplit

import aiohttp
from opentelemetry import propagate, trace
from opentelemetry.metrics import MeterProvider
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.types import Receive, Scope, Send
from yarl import URL

from llm_slo_stack.exporters import serving
from llm_slo_stack.slo import spec as slo_spec
from llm_slo_stack.tracing import provider
from llm_slo_stack.tracing.middleware import (
    DEFAULT_MAX_TENANTS,
    LLMTracingMiddleware,
    Targets,
    start_model_call,
)

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
     "transfer-encoding", "upgrade", "host", "content-length"}
)  # fmt: skip
# The upstream's Date and Server are not passed back: uvicorn writes the proxy's own, and
# two of either is malformed (nginx's default too: proxy_pass_header).
NOT_PASSED_BACK = HOP_BY_HOP | {"date", "server"}
# Headers aiohttp adds to a request unless told not to: the upstream sees only what the
# client sent (an added Accept-Encoding would let it compress a stream nobody asked for).
NOT_ADDED = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
CONNECT_TIMEOUT = 5.0
FIRST_BYTE_TIMEOUT = 600.0  # a non-streamed answer's headers come when it is done
IDLE_TIMEOUT = 120.0  # between chunks of an answer: far above any inter-token gap
MAX_BODY = 16 * 1024 * 1024  # bytes of a request body; a chat request is kilobytes
DRAIN_TIMEOUT = 60.0  # seconds in-flight streams get to finish on SIGTERM


@dataclass(frozen=True)
class Limits:
    connect: float = CONNECT_TIMEOUT
    first_byte: float = FIRST_BYTE_TIMEOUT
    idle: float = IDLE_TIMEOUT
    max_body: int = MAX_BODY


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Upstream:
    """The model server: its base URL (a path prefix kept), and its address and port as
    the model call's span names them."""

    base: str  # scheme://host[:port][/prefix], without a trailing slash
    address: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Upstream:
        """ValueError, saying what was expected, unless `url` is an http(s) base URL."""
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:  # not a number, or out of range
            port = -1
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or port == -1
            or parts.query
            or parts.fragment
        ):
            raise ValueError(
                "upstream: expected an http:// or https:// base URL such as "
                f"http://127.0.0.1:8000, found {url!r}"
            )
        default = 443 if parts.scheme == "https" else 80
        return cls(url.rstrip("/"), parts.hostname, port or default)

    def url(self, scope: Scope) -> URL:
        """Where a request goes: the base URL, then the path and query exactly as the
        client sent them (a model name's %2F stays one, not a second path segment)."""
        path = scope.get("raw_path") or quote(scope["path"]).encode("latin-1")
        query = scope.get("query_string", b"")
        target = self.base + path.decode("latin-1")
        return URL(target + "?" + query.decode("latin-1") if query else target, encoded=True)


METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH"})
_GONE, _FIRST_BYTE, _IDLE = "client gone", "first-byte timeout", "idle timeout"  # a cut's why


async def _respond(send: Send, status: int, body: bytes = b"", kind: str = "") -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if kind:
        headers.append((b"content-type", kind.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, status: int, message: str) -> None:
    """An error in the shape of OpenAI's API and vLLM 0.10.2's (ErrorResponse)."""
    error = {"message": message, "type": HTTPStatus(status).phrase, "param": None, "code": status}
    body = json.dumps({"error": error}).encode()
    await _respond(send, status, body, "application/json")


def create_app(
    upstream: str,
    tracer_provider: trace.TracerProvider | None = None,
    registry: CollectorRegistry | None = None,
    targets: Targets | None = None,
    capture_content: bool = False,
    limits: Limits = DEFAULT_LIMITS,
    tenant_header: str | None = None,
    tenant_from_api_key: bool = False,
    max_tenants: int = DEFAULT_MAX_TENANTS,
    meter_provider: MeterProvider | None = None,
) -> LLMTracingMiddleware:
    """The proxy as an ASGI app: forwarding inside, the middleware around it. At
    shutdown (after uvicorn has drained the in-flight requests) it closes its upstream
    connections and flushes the tracer provider's spans.

    Forwarding is plain ASGI over aiohttp, each chunk sent on as it arrives: a framework's
    streaming response (a task group and a queue per request) cost the first token 1.4 ms
    and, at 32 fast streams, 30 ms (bench/tracing.py)."""
    registry = CollectorRegistry() if registry is None else registry
    target = Upstream.parse(upstream)
    sessions: list[aiohttp.ClientSession] = []  # made in the server's event loop, on first use

    def session() -> aiohttp.ClientSession:
        if not sessions:
            # No total or read timeout: a long generation streams for minutes at the
            # client's pace; the first-byte and idle timeouts are the proxy's own.
            # aiohttp rather than httpx: about 1 ms less to the first chunk (bench/tracing.py).
            # No cookie jar: one client's cookies must never go up with another's request.
            sessions.append(
                aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=None, connect=limits.connect),
                    connector=aiohttp.TCPConnector(limit=0),
                    cookie_jar=aiohttp.DummyCookieJar(),
                    skip_auto_headers=NOT_ADDED,
                    auto_decompress=False,
                )
            )
        return sessions[0]

    async def forward(scope: Scope, receive: Receive, send: Send) -> None:
        body = await _body(scope, receive, limits.max_body)
        if body is None:
            await _error(send, 413, f"request body over {limits.max_body} bytes")
            return
        # The call to the model server gets its own CLIENT span (GenAI attributes from its
        # start); the model server's span becomes its child.
        call = start_model_call(scope, target.address, target.port)
        trace_headers: dict[str, str] = {}
        propagate.inject(trace_headers, context=call)
        headers = [
            (name, v.decode("latin-1"))
            for k, v in scope["headers"]
            if (name := k.decode("latin-1").lower()) not in HOP_BY_HOP and name not in trace_headers
        ]  # a list: a header the client repeated goes up repeated
        headers += trace_headers.items()
        watch = _Watch(receive)
        answer: aiohttp.ClientResponse | None = None
        try:
            watch.arm(limits.first_byte, _FIRST_BYTE)
            answer = await session().request(
                scope["method"],
                target.url(scope),
                headers=headers,
                data=body or None,  # small JSON: sent whole, with a length, not chunked
            )
            watch.disarm()
            kept = [
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in answer.headers.items()
                if k.lower() not in NOT_PASSED_BACK
            ]
            await send({"type": "http.response.start", "status": answer.status, "headers": kept})
            await _relay(answer, send, limits.idle, watch)
        except asyncio.CancelledError:
            if not watch.caught():
                raise
            if watch.why == _GONE:
                if answer is None:
                    await _respond(send, 499)  # nobody reads it: the client has gone
            elif answer is None:
                await _error(send, 504, f"upstream sent no answer within {limits.first_byte:g}s")
            else:  # the response ends broken, as the upstream's did
                raise TimeoutError(f"{watch.why}: the upstream sent nothing in time") from None
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            if answer is not None:
                raise  # a broken upstream ends the response broken too
            await _error(send, 502, f"upstream unreachable: {type(error).__name__}")
        finally:
            watch.close()
            if answer is not None:
                answer.close()  # if not read to its end (the client went), the call is dropped

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, sessions, tracer_provider, meter_provider)
        elif scope["type"] != "http":
            return
        elif scope["path"] == "/metrics" and scope["method"] == "GET":
            accept = dict(scope["headers"]).get(b"accept", b"").decode("latin-1")
            encoder, content_type = choose_encoder(accept)
            await _respond(send, 200, encoder(registry), content_type)
        elif scope["method"] not in METHODS:
            await _respond(send, 405)
        else:
            await forward(scope, receive, send)

    return LLMTracingMiddleware(
        serve,
        tracer_provider=tracer_provider,
        registry=registry,
        targets=targets,
        capture_content=capture_content,
        tenant_header=tenant_header,
        tenant_from_api_key=tenant_from_api_key,
        max_tenants=max_tenants,
        meter_provider=meter_provider,
    )


async def _lifespan(
    receive: Receive,
    send: Send,
    sessions: list[aiohttp.ClientSession],
    *telemetry: trace.TracerProvider | MeterProvider | None,
) -> None:
    """Nothing to start; at shutdown, the upstream connections closed and the spans and
    metrics flushed. Here, not after uvicorn.run(): on SIGTERM uvicorn re-raises the
    signal once it has shut down, and the process would die with its spans still queued."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            for open_session in sessions:
                await open_session.close()
            for provider_ in telemetry:
                flush = getattr(provider_, "force_flush", None)
                if flush is not None:
                    flush()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The request body, or None once it passes `limit` bytes (read no further)."""
    declared = dict(scope["headers"]).get(b"content-length", b"")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _disconnected(receive: Receive) -> None:
    """Return when the client goes away (its body already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class _Watch:
    """Cuts the task serving a request short when its client goes away or a deadline
    passes, and says why. The upstream call and the relay run in that one task: a task
    and an asyncio.wait for each phase cost the first token about 0.1 ms (bench/tracing.py).
    A cut is a cancellation of the task that `caught()` takes back, as asyncio.timeout
    does; cancellations that are not its own go on."""

    def __init__(self, receive: Receive) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a watch cuts the task it is made in: make it in one")
        self.task = task
        self.cancelling = task.cancelling()
        self.why = ""
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None
        self.listener = asyncio.ensure_future(_disconnected(receive))
        self.listener.add_done_callback(self._left)

    def _left(self, listener: asyncio.Future[None]) -> None:
        if not listener.cancelled() and listener.exception() is None:
            self.cut(_GONE)

    def cut(self, why: str) -> None:
        if not self.why and not self.closed:
            self.why = why
            self.task.cancel()

    def arm(self, seconds: float, why: str) -> None:
        """Cut for `why` in `seconds`, unless disarmed first."""
        self.after(seconds, self.cut, why)

    def after(self, seconds: float, step: Callable[..., None], *args: object) -> None:
        """Run `step` in `seconds` (it may cut, or call after() again), unless disarmed first."""
        self.timer = asyncio.get_running_loop().call_later(seconds, step, *args)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def caught(self) -> bool:
        """After a CancelledError: whether it was this watch's cut (then taken back)."""
        return bool(self.why) and self.task.uncancel() <= self.cancelling

    def close(self) -> None:
        self.closed = True
        self.disarm()
        self.listener.cancel()


async def _relay(answer: aiohttp.ClientResponse, send: Send, idle: float, watch: _Watch) -> None:
    """The upstream's body to the client as it arrives; a client that went away ends it
    quietly, a broken upstream raises, and one that sends nothing for `idle` seconds
    while the proxy waits on it is cut (time spent sending to a slow client does not
    count). The idle clock is a reading per chunk and one timer that re-arms itself for
    the time left, where aiohttp's read timeout cancels and makes a timer for every chunk."""
    loop = asyncio.get_running_loop()
    waiting_since: float | None = loop.time()  # None while sending to the client

    def check() -> None:
        waited = 0.0 if waiting_since is None else loop.time() - waiting_since
        if waited >= idle:
            watch.cut(_IDLE)
        else:
            watch.after(idle - waited, check)

    watch.after(idle, check)
    try:
        async for chunk in answer.content.iter_any():
            waiting_since = None
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            waiting_since = loop.time()
        await send({"type": "http.response.body", "body": b""})
    except OSError as error:
        if isinstance(error, aiohttp.ClientError):
            raise
    finally:
        watch.disarm()


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(prog="llm-trace-proxy", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--upstream", required=True, help="the server's base URL, e.g. http://127.0.0.1:8000"
    )
    parser.add_argument("--listen", default="127.0.0.1:8080", metavar="ADDR:PORT")
    parser.add_argument(
        "--slo", metavar="SPEC", help="SLO file whose TTFT/TPOT thresholds define goodput"
    )
    parser.add_argument("--service-name", default="llm-trace-proxy")
    parser.add_argument("--otlp-endpoint", help="OTLP endpoint (else OTEL_EXPORTER_OTLP_ENDPOINT)")
    parser.add_argument(
        "--capture-content", action="store_true", help="put prompts and completions in spans"
    )
    for flag, default, meaning in (
        ("--connect-timeout", CONNECT_TIMEOUT, "seconds to connect to the upstream"),
        ("--first-byte-timeout", FIRST_BYTE_TIMEOUT, "seconds to the upstream's answer headers"),
        ("--idle-timeout", IDLE_TIMEOUT, "seconds between chunks of an answer"),
        ("--drain-timeout", DRAIN_TIMEOUT, "seconds in-flight requests get on SIGTERM"),
    ):
        parser.add_argument(flag, type=float, default=default, metavar="S", help=meaning)
    parser.add_argument("--max-body", type=int, default=MAX_BODY, metavar="BYTES")
    parser.add_argument(
        "--tenant-header", metavar="NAME", help="label the client-side counters by this header"
    )
    parser.add_argument(
        "--tenant-from-api-key",
        action="store_true",
        help="else by a hash of the bearer API key (never the key itself)",
    )
    parser.add_argument(
        "--max-tenants",
        type=int,
        default=DEFAULT_MAX_TENANTS,
        metavar="N",
        help="tenant label values kept; later tenants count as __overflow__ (the guard "
        "on per-tenant SLOs' series)",
    )
    args = parser.parse_args(argv)
    try:
        host, port = serving.parse_listen(args.listen)
        Upstream.parse(args.upstream)
    except ValueError as error:
        parser.error(str(error))
    targets = Targets()
    if args.slo:
        try:
            targets = Targets.from_spec(slo_spec.load(args.slo))
        except slo_spec.SpecError as error:
            print(error, file=sys.stderr)
            return 1
    try:
        tracer_provider = provider.configure(args.service_name, args.otlp_endpoint)
        meter_provider = provider.meters(args.service_name, args.otlp_endpoint)
    except provider.ConfigError as error:
        print(f"{parser.prog}: {error}", file=sys.stderr)
        return 2
    limits = Limits(args.connect_timeout, args.first_byte_timeout, args.idle_timeout, args.max_body)
    app = create_app(
        args.upstream,
        tracer_provider,
        targets=targets,
        capture_content=args.capture_content,
        limits=limits,
        tenant_header=args.tenant_header,
        tenant_from_api_key=args.tenant_from_api_key,
        max_tenants=args.max_tenants,
        meter_provider=meter_provider,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=int(args.drain_timeout),
    )
    tracer_provider.shutdown()
    if meter_provider is not None:
        meter_provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
