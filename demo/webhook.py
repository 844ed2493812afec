"""A local Alertmanager webhook receiver that records what it is sent: the demo's stand-in
for PagerDuty and Slack, and the end-to-end test's witness of a page delivered."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 1 << 20  # Alertmanager's notifications are a few kB


@dataclass(frozen=True)
class Delivery:
    receiver: str  # the path Alertmanager posted to: page, ticket, default
    at: float  # time.time() on arrival
    payload: dict[str, Any]

    def alerts(self, status: str = "firing") -> list[dict[str, Any]]:
        return [a for a in self.payload.get("alerts", []) if a.get("status") == status]


class Recorder:
    """Every notification received, in order; safe to read from other threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []

    def add(self, delivery: Delivery) -> None:
        with self._lock:
            self._deliveries.append(delivery)

    def deliveries(self, receiver: str | None = None) -> list[Delivery]:
        with self._lock:
            return [d for d in self._deliveries if receiver in (None, d.receiver)]


@contextmanager
def receiving(host: str, port: int) -> Iterator[Recorder]:
    """A webhook receiver on host:port until the block exits."""
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # the name http.server calls
            length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
            try:
                payload = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self.send_response(400)
                self.end_headers()
                return
            recorder.add(Delivery(self.path.strip("/"), time.time(), payload))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            """Quiet: the demo's view shows deliveries."""

    server = ThreadingHTTPServer((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
