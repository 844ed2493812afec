"""What differs between the engines `deploy.engine` may name: the pinned image, how to
start it, where it answers health checks and /metrics."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from llm_slo_stack.slo import buckets
from llm_slo_stack.slo.model import Deploy, Spec

PORT = 8000  # every engine serves its API here inside the pod
OTLP = "$(OTEL_EXPORTER_OTLP_ENDPOINT)"  # the container's env, expanded by Kubernetes


def _vllm(spec: Spec, deploy: Deploy) -> list[str]:
    # vLLM >= 0.30.1 takes bounds that hold every latency threshold of the spec.
    families = json.dumps(buckets.vllm_families(spec), separators=(",", ":"))
    return [
        deploy.model,
        "--port",
        str(PORT),
        "--custom-histogram-buckets",
        families,
        "--otlp-traces-endpoint",
        OTLP,
    ]


def _sglang(spec: Spec, deploy: Deploy) -> list[str]:
    return [
        "python3",
        "-m",
        "sglang.launch_server",
        "--model-path",
        deploy.model,
        "--host",
        "0.0.0.0",
        "--port",
        str(PORT),
        "--enable-metrics",
    ]


def _tgi(spec: Spec, deploy: Deploy) -> list[str]:
    return ["--model-id", deploy.model, "--port", str(PORT), "--otlp-endpoint", OTLP]


def _triton(spec: Spec, deploy: Deploy) -> list[str]:
    return [
        "tritonserver",
        "--model-repository=/models",
        f"--http-port={PORT}",
        "--allow-metrics=true",
        "--metrics-port=8002",
    ]


def _vllm_pool(pool: str) -> list[str]:
    # vLLM's NIXL connector: each instance both sends and receives KV blocks; the P/D
    # router's request says which part an instance does (vLLM's NixlConnector guide).
    config = {"kv_connector": "NixlConnector", "kv_role": "kv_both"}
    return ["--kv-transfer-config", json.dumps(config, separators=(",", ":"))]


def _sglang_pool(pool: str) -> list[str]:
    return ["--disaggregation-mode", pool]  # SGLang's PD disaggregation guide


def runs_whole(pool: str) -> list[str]:
    raise ValueError(f"an engine that runs prefill and decode apart, not one for {pool}")


@dataclass(frozen=True)
class Engine:
    image: str  # pinned by tag
    health: str  # HTTP path that answers 200 once the model is loaded
    metrics_port: int  # where the engine's /metrics is
    args: Callable[[Spec, Deploy], list[str]]
    pool_args: Callable[[str], list[str]] = (
        runs_whole  # more arguments for a prefill or decode pool
    )


ENGINES: dict[str, Engine] = {
    "vllm": Engine("vllm/vllm-openai:v0.30.1", "/health", PORT, _vllm, _vllm_pool),
    "sglang": Engine("lmsysorg/sglang:v0.5.2-cu126", "/health", PORT, _sglang, _sglang_pool),
    "tgi": Engine("ghcr.io/huggingface/text-generation-inference:3.3.4", "/health", PORT, _tgi),
    "triton": Engine(
        "nvcr.io/nvidia/tritonserver:25.08-vllm-python-py3", "/v2/health/ready", 8002, _triton
    ),
}
