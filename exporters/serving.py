"""Serving a registry over HTTP, as the exporters do.

prometheus_client's own server gzips every answer at level 9 when the scraper accepts
gzip, which Prometheus always does: 25 ms for a 700 kB answer on this machine, a tenth
of the sidecar's budget. Level 1 takes 1.5 ms and compresses text nearly as well.

The listen side is bounded too: a connection that sends nothing for IDLE_TIMEOUT
seconds is closed (a kept-alive scraper reconnects), and past MAX_CONNECTIONS open at
once a new one is answered 503 and closed, so idle or hostile clients cannot pile up
threads. The scraper's announced timeout (X-Prometheus-Scrape-Timeout-Seconds) is
handed to the upstream fetch of that scrape.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any, Protocol, runtime_checkable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.core import Metric

from llm_slo_stack.exporters.upstream import scrape_timeout

GZIP_LEVEL = 1
IDLE_TIMEOUT = 30.0  # seconds; Prometheus scrapes at most every few seconds, so 30 is idle
MAX_CONNECTIONS = 32
BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """One thread per connection, so a slow upstream never blocks another scraper; at
    most `max_connections` at once."""

    daemon_threads = True
    max_connections = MAX_CONNECTIONS

    def server_activate(self) -> None:
        super().server_activate()
        self._open = threading.BoundedSemaphore(self.max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._open.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(BUSY)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._open.release()


class _QuietHandler(WSGIRequestHandler):
    timeout = IDLE_TIMEOUT  # per socket read: an idle or trickling client is dropped

    def log_message(self, format: str, *args: Any) -> None:  # the base class names it format
        pass


def announced_timeout(app: WSGIApp) -> WSGIApp:
    """Wrap a WSGI app so that the scrape it answers knows the scraper's timeout."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            seconds: float | None = float(environ["HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"])
        except (KeyError, ValueError):
            seconds = None
        if seconds is not None and not 0 < seconds < float("inf"):
            seconds = None
        token = scrape_timeout.set(seconds)
        try:
            return app(environ, start_response)
        finally:
            scrape_timeout.reset(token)

    return wrapped


def parse_listen(text: str) -> tuple[str, int]:
    """`127.0.0.1:9400`, `[::1]:9400` or `:9400` (every address) as (host, port)."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected ADDR:PORT such as 127.0.0.1:9400, found {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def gzip_fast(app: WSGIApp) -> WSGIApp:
    """Wrap a WSGI app so that answers are gzipped at GZIP_LEVEL when the client accepts it."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if "gzip" not in environ.get("HTTP_ACCEPT_ENCODING", ""):
            return app(environ, start_response)
        answer: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            answer["status"], answer["headers"] = status, headers

        body = gzip.compress(b"".join(app(environ, capture)), compresslevel=GZIP_LEVEL)
        headers = [(k, v) for k, v in answer["headers"] if k.lower() != "content-length"]
        start_response(
            answer["status"],
            [*headers, ("Content-Encoding", "gzip"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return wrapped


@runtime_checkable
class Renders(Protocol):
    """A collector that writes its own text format (the sidecar, for speed)."""

    def render(self) -> bytes: ...


def exposition(families: Iterable[Metric]) -> bytes:
    """Families in the text format, as prometheus_client writes them."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(list(families)))
    return generate_latest(registry)


class _Fixed:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def rendering(collector: Renders) -> WSGIApp:
    """A WSGI app answering every GET with the collector's own rendering."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = collector.render()
        start_response(
            "200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))]
        )
        return [body]

    return app


def serve(
    collector: object,
    host: str,
    port: int,
    max_connections: int = MAX_CONNECTIONS,
    idle_timeout: float = IDLE_TIMEOUT,
) -> tuple[WSGIServer, threading.Thread]:
    """Serve a collector at http://host:port/metrics in a background thread: through its
    own render() if it has one, else through prometheus_client's registry."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    server_class = type(
        "Server",
        (_ThreadingServer,),
        {"address_family": family, "max_connections": max_connections},
    )
    if isinstance(collector, Renders):
        inner = rendering(collector)
    else:
        registry = CollectorRegistry()
        registry.register(collector)  # type: ignore[arg-type]
        inner = make_wsgi_app(registry, disable_compression=True)
    app = gzip_fast(announced_timeout(inner))
    handler = type("Handler", (_QuietHandler,), {"timeout": idle_timeout})
    server: WSGIServer = make_server(host, port, app, server_class, handler_class=handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def run(collector: object, listen: str, program: str, what: str) -> int:
    """Serve one collector at ADDR:PORT until interrupted: the exporters' commands."""
    try:
        host, port = parse_listen(listen)
    except ValueError as error:
        print(f"{program}: --listen: {error}", file=sys.stderr)
        return 2
    try:
        server, thread = serve(collector, host, port)
    except OSError as error:
        print(f"{program}: cannot listen on {listen}: {error.strerror}", file=sys.stderr)
        return 1
    print(f"{program}: serving {what} at http://{listen}/metrics", file=sys.stderr)
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
    return 0
