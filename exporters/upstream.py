"""Fetching an upstream's /metrics: the one HTTP client of the sidecar and the GPU exporter.

A deadline for the whole answer (not per read, so a server that trickles bytes cannot hold
a scrape), a size cap, no retries, no gzip (next to the server bandwidth is free, gzip is
not), and every failure named by one of catalog.SCRAPE_ERROR_REASONS from the exception's
type, never from its message.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit, urlunsplit

import urllib3

ACCEPT = "text/plain; version=0.0.4"  # the classic format keeps vLLM's colons
MAX_BYTES = 64 * 1024 * 1024
DEFAULT_TIMEOUT = 5.0  # Prometheus' default scrape timeout is 10 s
READ_SLICE = 1.0  # the longest one socket read may block before the deadline is checked


class ScrapeError(Exception):
    """A failed scrape; `reason` is one of catalog.SCRAPE_ERROR_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def metrics_url(target: str) -> str:
    """The /metrics URL of a target given as a base URL or as the metrics URL itself."""
    parts = urlsplit(target if "://" in target else f"http://{target}")
    path = parts.path if parts.path not in ("", "/") else "/metrics"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class Upstream:
    """One upstream /metrics endpoint, fetched whole within `timeout` seconds."""

    def __init__(
        self, target: str, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = MAX_BYTES
    ) -> None:
        self.url = metrics_url(target)
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.pool = urllib3.PoolManager(maxsize=4)

    def fetch(self) -> str:
        """The body, within `timeout` seconds (plus at most one READ_SLICE); ScrapeError if not."""
        deadline = time.monotonic() + self.timeout
        try:
            response = self.pool.request(
                "GET",
                self.url,
                headers={"Accept": ACCEPT, "Accept-Encoding": "identity"},
                timeout=urllib3.Timeout(connect=self.timeout, read=min(READ_SLICE, self.timeout)),
                retries=False,
                preload_content=False,
            )
            try:
                if response.status != 200:
                    raise ScrapeError("http_status", f"HTTP {response.status}")
                body = bytearray()
                for chunk in response.stream(1 << 16):
                    body += chunk
                    if time.monotonic() > deadline:
                        raise ScrapeError("timeout", f"no full answer within {self.timeout}s")
                    if len(body) > self.max_bytes:
                        raise ScrapeError("bad_payload", f"more than {self.max_bytes} bytes")
            finally:
                response.release_conn()
        except urllib3.exceptions.NewConnectionError as error:
            cause = error.__cause__
            reason = "refused" if isinstance(cause, ConnectionRefusedError) else "dropped"
            raise ScrapeError(reason, str(error)) from None
        except (urllib3.exceptions.TimeoutError, TimeoutError) as error:
            raise ScrapeError("timeout", str(error)) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ScrapeError("dropped", str(error)) from None
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ScrapeError("bad_payload", f"not UTF-8: {error}") from None
