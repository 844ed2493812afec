"""The vLLM simulator: its API, its metrics, its latency model and its faults."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from llm_slo_stack.exporters.catalog import VLLM
from llm_slo_stack.simulator.latency import LatencyModel, Profile
from llm_slo_stack.simulator.server import Config, create_app, parse_args
from tests.support import loopback

MODEL = "sim-test"
FAST = Profile(prefill_overhead=0.001, prefill_per_token=0.0, itl=0.001)


def vllm_samples(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = requests.get(f"{base}/metrics", timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def finished(base: str, reason: str) -> float:
    labels = {VLLM.LABEL_MODEL: MODEL, VLLM.LABEL_ENGINE: "0", VLLM.LABEL_FINISHED: reason}
    return vllm_samples(base).get((f"{VLLM.REQUEST_SUCCESS}_total", frozenset(labels.items())), 0)


def chat(base: str, **extra: object) -> requests.Response:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 3,
        **extra,
    }
    return requests.post(f"{base}/v1/chat/completions", json=body, timeout=30)


def test_custom_histogram_buckets_flag_sets_the_ttft_bounds() -> None:
    _, config = parse_args(["--custom-histogram-buckets", '{"time_to_first_token": [0.05, 2]}'])
    with loopback.asgi(create_app(config)) as base:
        bounds = {
            dict(labels)["le"]
            for name, labels in vllm_samples(base)
            if name == f"{VLLM.TTFT}_bucket"
        }
    assert bounds == {"0.05", "2.0", "+Inf"}


@pytest.mark.parametrize(
    "flag",
    ['{"time_to_first_tokens": [1]}', '{"time_to_first_token": [2, 1]}', "[1, 2]", "{not json"],
)
def test_bad_custom_buckets_are_refused_at_start(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--custom-histogram-buckets", flag])
    assert "--custom-histogram-buckets" in capsys.readouterr().err


def test_the_latency_model_is_seeded_and_slows_under_load() -> None:
    first, second, other = (LatencyModel(Profile(), seed) for seed in (5, 5, 6))
    draws = [first.gap(0.5) for _ in range(100)]
    assert draws == [second.gap(0.5) for _ in range(100)]
    assert draws != [other.gap(0.5) for _ in range(100)]
    idle = statistics.mean(first.gap(0.0)[0] for _ in range(2000))
    busy = statistics.mean(first.gap(1.0)[0] for _ in range(2000))
    assert 2.2 < busy / idle < 2.8  # load_slowdown 1.5: 2.5x at a full batch
    assert first.prefill(256, 0) == pytest.approx(0.03 + 0.00025 * 256)  # 94 ms, 8B/H100-like


def test_openai_shapes_and_errors() -> None:
    app = create_app(Config(served_model_name=MODEL, profile=FAST))
    with loopback.asgi(app) as base:
        answer = chat(base).json()
        assert answer["choices"][0]["message"]["content"] == "tok0 tok1 tok2 "
        assert answer["choices"][0]["finish_reason"] == "length"
        assert answer["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
        text = requests.post(
            f"{base}/v1/completions", json={"prompt": "a b", "max_tokens": 2}, timeout=10
        )
        assert text.json()["choices"][0]["text"] == "tok0 tok1 "
        assert requests.get(f"{base}/v1/models", timeout=10).json()["data"][0]["id"] == MODEL
        assert requests.get(f"{base}/health", timeout=10).status_code == 200
        missing = chat(base, model="other")
        # vLLM 0.10.2's answer (vllm/entrypoints/openai/serving_engine.py: _check_model)
        assert missing.status_code == 404 and missing.json() == {
            "error": {
                "message": "The model `other` does not exist.",
                "type": "NotFoundError",
                "param": None,
                "code": 404,
            }
        }
        assert requests.post(f"{base}/v1/completions", data="{", timeout=10).status_code == 400
        assert chat(base, max_tokens=0).status_code == 400


def stream_lines(base: str, path: str, body: dict[str, object]) -> list[str]:
    answer = requests.post(f"{base}{path}", json={**body, "stream": True}, timeout=10)
    return [line for line in answer.text.split("\n") if line]


def test_streams_are_written_as_vllm_writes_them() -> None:
    """Byte for byte vLLM 0.10.2's streams (vllm 0.10.2 wheel, protocol.py, serving_chat.py
    and serving_completion.py: pydantic's compact JSON in its models' field order). Chat:
    the role's chunk first, then a chunk per token, unset fields left out, the last
    token's with its finish reason, then usage (the stream option) and [DONE]. A
    completion: every field of every chunk. The middleware and the benchmark see the
    bytes a real server sends."""
    app = create_app(Config(served_model_name=MODEL, profile=FAST))
    with loopback.asgi(app) as base:
        chat_lines = stream_lines(
            base,
            "/v1/chat/completions",
            {
                "messages": [{"role": "user", "content": "hi there"}],
                "max_tokens": 3,
                "stream_options": {"include_usage": True},
            },
        )
        text_lines = stream_lines(base, "/v1/completions", {"prompt": "a b", "max_tokens": 2})

    def head(line: str, kind: str) -> str:
        first = json.loads(line.removeprefix("data: "))
        return (
            f'data: {{"id":"{first["id"]}","object":"{kind}","created":{first["created"]},'
            f'"model":"{MODEL}","choices":'
        )

    chat = head(chat_lines[0], "chat.completion.chunk")
    token = '[{{"index":0,"delta":{{"content":"{}"}},"logprobs":null,{}"token_ids":null}}]}}'
    going, done = '"finish_reason":null,', '"finish_reason":"length","stop_reason":null,'
    assert chat_lines == [
        chat + '[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,'
        '"finish_reason":null}],"prompt_token_ids":null}',
        chat + token.format("tok0 ", going),
        chat + token.format("tok1 ", going),
        chat + token.format("tok2 ", done),
        chat + '[],"usage":{"prompt_tokens":6,"total_tokens":9,"completion_tokens":3}}',
        "data: [DONE]",
    ]
    text = head(text_lines[0], "text_completion")
    piece = (
        '[{{"index":0,"text":"{}","logprobs":null,"finish_reason":{},"stop_reason":null,'
        '"prompt_token_ids":null,"token_ids":null}}],"usage":null}}'
    )
    assert text_lines == [
        text + piece.format("tok0 ", "null"),
        text + piece.format("tok1 ", '"length"'),
        "data: [DONE]",
    ]


def test_a_full_queue_rejects_and_counts_it() -> None:
    slow = Profile(prefill_overhead=0.5, prefill_per_token=0.0, itl=0.001)
    app = create_app(Config(served_model_name=MODEL, max_num_seqs=1, max_waiting=0, profile=slow))
    with loopback.asgi(app) as base:
        first = threading.Thread(target=chat, args=(base,))
        first.start()
        time.sleep(0.2)  # the first request holds the only slot
        second = chat(base)
        first.join()
        rejections = vllm_samples(base)[
            (
                f"{VLLM.ADMISSION_REJECTIONS}_total",
                frozenset({(VLLM.LABEL_MODEL, MODEL), ("reason", "queue_full")}),
            )
        ]
    assert second.status_code == 503
    assert rejections == 1


def test_a_client_that_goes_away_is_an_abort() -> None:
    slow = Profile(prefill_overhead=0.001, prefill_per_token=0.0, itl=0.05)
    app = create_app(Config(served_model_name=MODEL, profile=slow))
    with loopback.asgi(app) as base:
        with chat_stream(base, max_tokens=100) as response:
            next(response.iter_lines())  # the first chunk, then hang up
        deadline = time.monotonic() + 5
        while finished(base, "abort") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert finished(base, "abort") == 1
        assert finished(base, "length") == 0


def chat_stream(base: str, **extra: object) -> requests.Response:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        **extra,
    }
    return requests.post(f"{base}/v1/chat/completions", json=body, stream=True, timeout=30)


def test_faults_switch_at_run_time() -> None:
    app = create_app(Config(served_model_name=MODEL, profile=FAST))
    with loopback.asgi(app) as base:
        faults = f"{base}/admin/faults"
        assert requests.post(faults, json={"error_rate": "lots"}, timeout=5).status_code == 400
        assert requests.post(faults, json={"nonsense": 1}, timeout=5).status_code == 400
        requests.post(faults, json={"error_rate": 1}, timeout=5).raise_for_status()
        assert chat(base).status_code == 500
        assert finished(base, "error") == 1
        requests.post(faults, json={"error_rate": 0, "drop_rate": 1}, timeout=5).raise_for_status()
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            chat(base, stream=True, max_tokens=10).content  # noqa: B018
        requests.post(
            faults, json={"drop_rate": 0, "latency_multiplier": 20}, timeout=5
        ).raise_for_status()
        start = time.monotonic()
        chat(base, max_tokens=2)
        assert time.monotonic() - start > 20 * 0.001 * 2  # prefill and one gap, 20x
        requests.post(faults, json={"latency_multiplier": 1, "stall_seconds": 0.3}, timeout=5)
        start = time.monotonic()
        with chat_stream(base, max_tokens=2) as response:
            lines = response.iter_lines()
            assert b'"role":"assistant"' in next(lines)  # with the first token, as vLLM
            assert time.monotonic() - start >= 0.3  # a hung engine, then tokens
            assert any(b"tok0" in line for line in lines)
        requests.delete(faults, timeout=5).raise_for_status()
        assert requests.get(faults, timeout=5).json()["latency_multiplier"] == 1


def test_llm_sim_runs_as_a_command(tmp_path: Path) -> None:
    port = loopback.free_port()
    command: list[str | Path] = [
        Path(sys.executable).parent / "llm-sim",
        "--port",
        str(port),
        "--served-model-name",
        MODEL,
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        loopback.wait_until_up(f"http://127.0.0.1:{port}/health", process)
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
