"""Real servers on 127.0.0.1 for the tests: the simulator, a payload server, the exporter."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from llm_slo_stack.exporters import serving

HOST = "127.0.0.1"


@contextmanager
def asgi(app: ASGIApp) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port; yields its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host=HOST, port=0, log_level="warning", lifespan="auto")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


Behaviour = Callable[[BaseHTTPRequestHandler], None]


def payload(body: str, status: int = 200) -> Behaviour:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        data = body.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "text/plain; version=0.0.4")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return answer


def cut_short(body: str) -> Behaviour:
    """Promise the whole body, send half of it, close the connection."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        data = body.encode()
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data[: len(data) // 2])
        handler.wfile.flush()
        handler.close_connection = True

    return answer


@contextmanager
def http(behaviour: Behaviour) -> Iterator[tuple[str, list[Behaviour]]]:
    """A plain HTTP server whose every GET runs the current behaviour (replaceable)."""
    current = [behaviour]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server calls
            current[0](self)

        def log_message(self, *args: object) -> None:
            pass

    with threaded(Handler) as port:
        yield f"http://{HOST}:{port}", current


@contextmanager
def threaded(handler: type[BaseHTTPRequestHandler], port: int = 0) -> Iterator[int]:
    """A ThreadingHTTPServer with `handler` on a loopback port (0: a free one); yields the port."""
    server = ThreadingHTTPServer((HOST, port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def wait_until_up(url: str, process: subprocess.Popen[Any], seconds: float = 30) -> None:
    """Poll `url` until something answers over HTTP; fail if the process dies or time runs out."""
    import requests

    deadline = time.monotonic() + seconds
    while True:
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"{process.args!r} did not answer at {url}") from None
            time.sleep(0.1)


@contextmanager
def exporter(collector: object, **options: Any) -> Iterator[str]:
    """Serve a collector over HTTP, as the exporter's CLI does; yields the URL."""
    server, thread = serving.serve(collector, HOST, 0, **options)
    try:
        yield f"http://{HOST}:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port
