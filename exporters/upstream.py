"""Fetching an upstream's /metrics: the one HTTP client of the sidecar and the GPU exporter.

One deadline for the whole answer, connecting included: a watchdog shuts the socket when
it passes, so neither a server that trickles its headers or body a byte at a time nor
one that stops mid-answer can hold a scrape (or its thread and connection) longer. The
deadline is `--timeout`, or less when the scraper says how long it will wait
(Prometheus sends X-Prometheus-Scrape-Timeout-Seconds). A size cap, checked as bytes
arrive; no retries; no gzip (next to the server bandwidth is free, gzip is not);
credentials from the URL sent as basic auth and never printed, or a bearer token read
from a file at each scrape (so a rotated token is picked up). Every failure is named by
one of catalog.SCRAPE_ERROR_REASONS from the exception's type, never from its message.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import http.client
import socket
import ssl
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

ACCEPT = "text/plain; version=0.0.4"  # the classic format keeps vLLM's colons
MAX_BYTES = 64 * 1024 * 1024
DEFAULT_TIMEOUT = 5.0  # below Prometheus' default scrape timeout, 10 s
CHUNK = 1 << 16
# Of the scraper's own timeout, the share the upstream may take: the rest is for mapping
# the payload and sending the answer before the scraper gives up.
SCRAPE_SHARE = 0.8

# The timeout the scraper announced for the scrape being answered in this thread, set by
# serving.py from its X-Prometheus-Scrape-Timeout-Seconds header.
scrape_timeout: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "scrape_timeout", default=None
)


class ScrapeError(Exception):
    """A failed scrape; `reason` is one of catalog.SCRAPE_ERROR_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def metrics_url(target: str) -> str:
    """The /metrics URL of a target given as a base URL or as the metrics URL itself,
    without any credentials it holds."""
    parts = urlsplit(target if "://" in target else f"http://{target}")
    path = parts.path if parts.path not in ("", "/") else "/metrics"
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, path, parts.query, ""))


def basic_auth(target: str) -> str | None:
    """The Authorization header for credentials written in a URL (user:password@host)."""
    parts = urlsplit(target if "://" in target else f"http://{target}")
    if parts.username is None:
        return None
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


class Upstream:
    """One upstream /metrics endpoint, fetched whole within `timeout` seconds."""

    def __init__(
        self,
        target: str,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = MAX_BYTES,
        bearer_token_file: str | None = None,
    ) -> None:
        self.url = metrics_url(target)
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, found {self.url!r}")
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.authorization = basic_auth(target)
        if self.authorization and bearer_token_file:
            raise ValueError("credentials in the URL and a bearer token file: give one")
        self.token_file = Path(bearer_token_file) if bearer_token_file else None
        self._token = self._read_token() if self.token_file else ""
        if self.token_file and not self._token:
            raise ValueError(f"{self.token_file}: empty bearer token file")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._path = parts.path + (f"?{parts.query}" if parts.query else "")

    def _read_token(self) -> str:
        assert self.token_file is not None
        return self.token_file.read_text().strip()

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": ACCEPT, "Accept-Encoding": "identity"}
        if self.token_file:
            # An unreadable or empty file keeps the last token: a rotation may be half done.
            with contextlib.suppress(OSError):
                self._token = self._read_token() or self._token
            headers["Authorization"] = f"Bearer {self._token}"
        elif self.authorization:
            headers["Authorization"] = self.authorization
        return headers

    def budget(self) -> float:
        """Seconds this scrape may take: `timeout`, or less if the scraper waits less."""
        announced = scrape_timeout.get()
        return min(self.timeout, announced * SCRAPE_SHARE) if announced else self.timeout

    def fetch(self) -> str:
        """The body, within `budget()` seconds; ScrapeError if not."""
        budget = self.budget()
        deadline = time.monotonic() + budget
        connection: http.client.HTTPConnection
        if self._https:
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=budget, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=budget)
        expired = threading.Event()

        def cut() -> None:
            expired.set()
            if connection.sock is not None:
                with contextlib.suppress(OSError):
                    connection.sock.shutdown(socket.SHUT_RDWR)

        watchdog = threading.Timer(budget, cut)
        watchdog.daemon = True
        try:
            connection.connect()
            watchdog.start()
            connection.request("GET", self._path, headers=self._headers())
            body = self._read(connection.getresponse(), deadline)
        except ScrapeError as error:
            if expired.is_set() and error.reason == "dropped":  # cut by the watchdog
                raise ScrapeError("timeout", f"no full answer within {budget:g}s") from None
            raise
        except ConnectionRefusedError as error:
            raise ScrapeError("refused", str(error)) from None
        except (TimeoutError, http.client.HTTPException, OSError) as error:
            if expired.is_set() or isinstance(error, TimeoutError):
                raise ScrapeError("timeout", f"no full answer within {budget:g}s") from None
            raise ScrapeError("dropped", f"{type(error).__name__}: {error}") from None
        finally:
            watchdog.cancel()
            connection.close()
        if expired.is_set():
            raise ScrapeError("timeout", f"no full answer within {budget:g}s")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ScrapeError("bad_payload", f"not UTF-8: {error}") from None

    def _read(self, response: http.client.HTTPResponse, deadline: float) -> bytearray:
        if response.status != 200:
            raise ScrapeError("http_status", f"HTTP {response.status}")
        if response.length is not None and response.length > self.max_bytes:
            raise ScrapeError("bad_payload", f"more than {self.max_bytes} bytes")
        body = bytearray()
        while chunk := response.read1(CHUNK):
            body += chunk
            if len(body) > self.max_bytes:
                raise ScrapeError("bad_payload", f"more than {self.max_bytes} bytes")
            if time.monotonic() > deadline:
                raise ScrapeError("timeout", "no full answer within the deadline")
        if response.length:  # the server closed before its Content-Length
            raise ScrapeError("dropped", f"{response.length} bytes short")
        return body
