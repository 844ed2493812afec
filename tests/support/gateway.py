"""The README's FastAPI gateway: the middleware around an OpenAI-style completions
endpoint, /metrics from its registry. `app` is importable by `uvicorn --workers N`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry

from llm_slo_stack.tracing.middleware import LLMTracingMiddleware, Targets, metrics_app

MODEL = "gw"


def create(
    registry: CollectorRegistry,
    tracer_provider: TracerProvider | None = None,
    targets: Targets | None = None,
) -> FastAPI:
    """The gateway as the README builds it."""
    gateway = FastAPI()

    @gateway.post("/v1/completions")
    async def completions(body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": "c1",
            "model": body["model"],
            "choices": [{"index": 0, "text": "hi", "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    gateway.add_middleware(
        LLMTracingMiddleware, tracer_provider=tracer_provider, registry=registry, targets=targets
    )
    gateway.mount("/metrics", metrics_app(registry))
    return gateway


app = create(CollectorRegistry())
