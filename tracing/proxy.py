"""`llm-trace-proxy`: a streaming reverse proxy in front of an OpenAI-compatible server,
with the tracing middleware, forwarding `traceparent` so that the server's own span
(vLLM's request span, with --otlp-traces-endpoint) becomes a child of the proxy's.
It serves its own /metrics."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator

import aiohttp
from opentelemetry import propagate, trace
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from llm_slo_stack.exporters import serving
from llm_slo_stack.slo import spec as slo_spec
from llm_slo_stack.tracing import provider
from llm_slo_stack.tracing.middleware import LLMTracingMiddleware, Targets

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
     "transfer-encoding", "upgrade", "host", "content-length"}
)  # fmt: skip
CONNECT_TIMEOUT = 5.0


def create_app(
    upstream: str,
    tracer_provider: trace.TracerProvider | None = None,
    registry: CollectorRegistry | None = None,
    targets: Targets | None = None,
    capture_content: bool = False,
) -> LLMTracingMiddleware:
    """The proxy as an ASGI app: forwarding inside, the middleware around it."""
    registry = CollectorRegistry() if registry is None else registry
    sessions: list[aiohttp.ClientSession] = []  # made in the server's event loop, on first use

    def session() -> aiohttp.ClientSession:
        if not sessions:
            # No read timeout: a long generation streams for minutes at the client's pace.
            # aiohttp rather than httpx: about 1 ms less to the first chunk (bench/tracing.py).
            sessions.append(
                aiohttp.ClientSession(
                    base_url=upstream.rstrip("/"),
                    timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT),
                    connector=aiohttp.TCPConnector(limit=0),
                    auto_decompress=False,
                )
            )
        return sessions[0]

    async def metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), headers={"Content-Type": content_type})

    async def forward(request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        propagate.inject(
            headers
        )  # the middleware's span is current: the server's span is its child
        try:
            answer = await session().request(
                request.method,
                request.url.path,
                params=list(request.query_params.multi_items()),
                headers=headers,
                # Request bodies are small JSON: sent whole, with a length, not chunked.
                data=await request.body(),
            )
        except (aiohttp.ClientError, OSError) as error:
            body = {
                "object": "error",
                "message": f"upstream unreachable: {type(error).__name__}",
                "code": 502,
            }
            return JSONResponse(body, status_code=502)
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
        return StreamingResponse(
            _relay(answer),
            status_code=answer.status,
            headers=kept,
            background=BackgroundTask(answer.close),
        )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        for open_session in sessions:
            await open_session.close()

    app = Starlette(
        routes=[
            Route("/metrics", metrics),
            Route("/{path:path}", forward, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ],
        lifespan=lifespan,
    )
    return LLMTracingMiddleware(
        app,
        tracer_provider=tracer_provider,
        registry=registry,
        targets=targets,
        capture_content=capture_content,
    )


async def _relay(answer: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The upstream's body as it arrives; closing it when the client goes away cancels
    the upstream request too."""
    try:
        async for chunk in answer.content.iter_any():
            yield chunk
    finally:
        answer.close()


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
    args = parser.parse_args(argv)
    try:
        host, port = serving.parse_listen(args.listen)
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
    except provider.ConfigError as error:
        print(f"{parser.prog}: {error}", file=sys.stderr)
        return 2
    app = create_app(
        args.upstream, tracer_provider, targets=targets, capture_content=args.capture_content
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
    tracer_provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
