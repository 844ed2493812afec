"""The README's FastAPI gateway, importable by `uvicorn --workers N`: the middleware
around an OpenAI-style completions endpoint, /metrics from its registry."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from llm_slo_stack.tracing.middleware import LLMTracingMiddleware, metrics_app

MODEL = "gw"
registry = CollectorRegistry()
app = FastAPI()


@app.post("/v1/completions")
async def completions(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "c1",
        "model": body["model"],
        "choices": [{"index": 0, "text": "hi", "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


app.add_middleware(LLMTracingMiddleware, registry=registry)
app.mount("/metrics", metrics_app(registry))
