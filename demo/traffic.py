"""Steady chat traffic through the tracing proxy, with a record of every answer: the
ground truth the demo and the end-to-end test hold every view to."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

PROMPT = "Name three prime numbers."  # no user text: the demo's own prompt
TOKENS = 16


@dataclass(frozen=True)
class Answer:
    done: float  # time.time() when the whole answer had arrived
    status: int  # HTTP status; 0 when the connection failed


class Traffic:
    """`workers` threads, each sending a request then pausing `pause` seconds, every other
    request streamed, until stopped."""

    def __init__(self, proxy: str, model: str, workers: int = 2, pause: float = 0.25) -> None:
        self.url = f"{proxy}/v1/chat/completions"
        self.model = model
        self.workers = workers
        self.pause = pause
        self._answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _send(self, stream: bool) -> int:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": TOKENS,
            "stream": stream,
        }
        request = urllib.request.Request(
            self.url, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                answer.read()
                return int(answer.status)
        except urllib.error.HTTPError as error:
            error.read()
            return error.code
        except (urllib.error.URLError, OSError):
            return 0

    def _worker(self, index: int) -> None:
        sent = index
        while not self._stop.is_set():
            status = self._send(stream=sent % 2 == 0)
            with self._lock:
                self._answers.append(Answer(time.time(), status))
            sent += self.workers
            self._stop.wait(self.pause)

    def start(self) -> None:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._worker, args=(i,), daemon=True)
            for i in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop and wait for the requests in flight to finish."""
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def answers(self, since: float = 0.0, until: float = float("inf")) -> list[Answer]:
        with self._lock:
            return [a for a in self._answers if since < a.done <= until]
