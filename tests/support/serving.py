"""Traffic for a simulated vLLM: chat requests whose counts the tests check."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

MODEL = "llama-test"
REQUESTS = 6
TOKENS = 5
TRACE_MODEL = "trace-test"  # what the tracing tests send through the proxy
TRACE_TOKENS = 6
PROMPT = "a secret prompt"


def load(url: str, count: int = REQUESTS) -> None:
    """`count` chat requests of TOKENS tokens each, every other one streamed."""

    def one(index: int) -> None:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "two words"}],
            "max_tokens": TOKENS,
            "stream": index % 2 == 0,
        }
        answer = requests.post(f"{url}/v1/chat/completions", json=body, timeout=30)
        assert answer.status_code == 200
        assert answer.content  # read the whole stream

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(count)))


def chat(
    base: str, stream: bool = True, headers: dict[str, Any] | None = None, **extra: object
) -> requests.Response:
    body = {
        "model": TRACE_MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": TRACE_TOKENS,
        "stream": stream,
        "stream_options": {"include_usage": True},
        **extra,
    }
    answer = requests.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer
