"""vLLM-shaped /metrics payloads of a given size, for the benchmarks."""

from __future__ import annotations

import random

from prometheus_client import generate_latest

from llm_slo_stack.simulator.metrics import VLLMMetrics

ENGINES = 4


def vllm_payload(series: int, seed: int = 1) -> str:
    """A payload of about `series` samples: models x engines of vLLM's metrics, with data."""
    rng = random.Random(seed)
    one = _engine_payload("m0", "0", rng)
    per_engine = sum(1 for line in one.split("\n") if line and not line.startswith("#"))
    engines = max(1, round(series / per_engine))
    parts = []
    for index in range(engines):
        model, engine = f"model-{index // ENGINES}", str(index % ENGINES)
        parts.append(_engine_payload(model, engine, rng))
    return "".join(parts)


def _engine_payload(model: str, engine: str, rng: random.Random) -> str:
    metrics = VLLMMetrics(model)
    for _ in range(20):
        for histogram in (
            metrics.ttft,
            metrics.itl,
            metrics.queue,
            metrics.prefill,
            metrics.decode,
            metrics.e2e,
        ):
            histogram.observe(rng.expovariate(2))
        metrics.finished("stop")
    text = generate_latest(metrics.registry).decode()
    if engine != "0":  # a series without an engine label is the model's, written once
        text = "".join(line for line in text.splitlines(True) if 'engine="' in line)
    return text.replace('engine="0"', f'engine="{engine}"')
