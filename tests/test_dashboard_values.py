"""The dashboards' numbers against ground truth: a known load, a fault part-way, and each
panel's value as Prometheus computes it from the generated rules and the panel's query.

Debian's Prometheus (rules evaluated every second) scrapes the simulator through the
sidecar, the tracing proxy in front of it and the GPU exporter on its NVML fake. The load
runs through the proxy; the test keeps what every answer said (status, tokens, time), and
that record is the truth each panel is held to.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from llm_slo_stack.dashboards import generator as dashboards
from llm_slo_stack.exporters import catalog
from llm_slo_stack.rules import generator
from llm_slo_stack.slo import conventions, spec
from tests.support.paths import ROOT

pytestmark = pytest.mark.prometheus

DEFAULT = spec.load(ROOT / "slo" / "default.yaml")
MODEL = "truth-test"
TOKENS = 6
WINDOW = 30  # seconds: what $__rate_interval stands for here, and each load phase's length
ERROR_SHARE = 0.25  # the simulator's injected error rate in the fault phase
WORKERS = 2
PAUSE = 0.08  # seconds between one worker's requests


@dataclass(frozen=True)
class Answer:
    done: float  # time.time() when the whole answer had arrived
    status: int
    prompt_tokens: int


def board(name: str) -> dict[str, Any]:
    text = {**dashboards.files(DEFAULT), **dashboards.shared_files([DEFAULT])}[name]
    loaded: dict[str, Any] = json.loads(text)
    return loaded


OVERVIEW = board(f"{DEFAULT.service}-slo-overview.json")
SERVING = board(f"{DEFAULT.service}-serving.json")
GPU = board(dashboards.GPU_BOARD)


def targets(dash: dict[str, Any], title: str, row: str | None = None) -> list[dict[str, Any]]:
    """The queries of the panel titled `title` (in the row whose title starts with `row`)."""
    current = ""
    for panel in dash["panels"]:
        if panel["type"] == "row":
            current = panel["title"]
        elif panel["title"] == title and (row is None or current.startswith(row)):
            found: list[dict[str, Any]] = panel["targets"]
            return found
    raise KeyError(title)


def filled(expr: str) -> str:
    variables = {"$service": DEFAULT.service, "$model": ".*", "$instance": ".*",
                 "$__rate_interval": f"{WINDOW}s"}  # fmt: skip
    for variable, value in variables.items():
        expr = expr.replace(variable, value)
    return expr


class Load:
    """Workers sending chat requests through the proxy, every other one streamed."""

    def __init__(self, proxy: str) -> None:
        self.proxy = proxy
        self.answers: list[Answer] = []
        self.lock = threading.Lock()

    def run(self, seconds: float) -> None:
        stop = time.monotonic() + seconds

        def worker(index: int) -> None:
            n = index
            while time.monotonic() < stop:
                body = {
                    "model": MODEL,
                    "messages": [{"role": "user", "content": "count to six"}],
                    "max_tokens": TOKENS,
                    "stream": n % 2 == 0,
                    "stream_options": {"include_usage": True},
                }
                answer = requests.post(f"{self.proxy}/v1/chat/completions", json=body, timeout=30)
                prompt = 0
                if answer.status_code == 200:
                    lines = [x for x in answer.text.splitlines() if '"usage"' in x]
                    usage = json.loads((lines[-1].removeprefix("data: ")) if lines else "{}")
                    prompt = (usage.get("usage") or {}).get("prompt_tokens", 0)
                with self.lock:
                    self.answers.append(Answer(time.time(), answer.status_code, prompt))
                n += WORKERS
                time.sleep(PAUSE)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def between(self, start: float, end: float, status: int | None = None) -> list[Answer]:
        return [
            a
            for a in self.answers
            if start < a.done <= end and (status is None or a.status == status)
        ]


@contextmanager
def stack(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """(Prometheus URL, proxy URL, simulator URL) with everything on loopback."""
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import CollectorRegistry

    from llm_slo_stack.exporters.gpu import NvmlCollector
    from llm_slo_stack.exporters.nvml import FakeNvml
    from llm_slo_stack.exporters.sidecar import SidecarCollector
    from llm_slo_stack.rules import writer
    from llm_slo_stack.simulator.latency import Profile
    from llm_slo_stack.simulator.metrics import parse_custom_buckets
    from llm_slo_stack.simulator.server import Config, create_app
    from llm_slo_stack.slo import buckets as slo_buckets
    from llm_slo_stack.tracing.middleware import Targets
    from llm_slo_stack.tracing.proxy import create_app as proxy_app
    from tests.support import loopback
    from tests.support.gpus import gpus
    from tests.support.prometheus import scraping

    for name, text in {**writer.files(DEFAULT), **writer.shared_files([DEFAULT])}.items():
        (tmp_path / "rules" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "rules" / name).write_text(text)
    custom = parse_custom_buckets(json.dumps(slo_buckets.vllm_families(DEFAULT)))
    fast = Profile(prefill_overhead=0.002, prefill_per_token=0.0, itl=0.001)
    simulator = create_app(Config(served_model_name=MODEL, profile=fast, custom_buckets=custom))
    targets = Targets.from_spec(DEFAULT)

    def host(url: str) -> str:
        return url.removeprefix("http://").split("/")[0]

    with (
        loopback.asgi(simulator) as upstream,
        loopback.exporter(SidecarCollector(upstream)) as sidecar,
        loopback.asgi(proxy_app(upstream, TracerProvider(), CollectorRegistry(), targets)) as proxy,
        loopback.exporter(NvmlCollector(FakeNvml(gpus()))) as nvml,
    ):
        jobs = {"vllm": [host(sidecar)], "proxy": [host(proxy)], "gpu": [host(nvml)]}
        rules = sorted((tmp_path / "rules").glob("*.rules.yaml"))
        with scraping(tmp_path, jobs, rules) as url:
            yield url, proxy, upstream


KEYS = (catalog.MODEL, catalog.OUTCOME, catalog.GPU, catalog.ALERTNAME, catalog.SEVERITY)


def values(url: str, expr: str, at: float) -> dict[str, float]:
    """The query's result at `at`, keyed by the values of the KEYS labels it has."""
    answer = requests.get(
        f"{url}/api/v1/query", params={"query": filled(expr), "time": str(at)}, timeout=10
    ).json()
    assert answer["status"] == "success", answer
    return {
        " ".join(r["metric"][k] for k in KEYS if k in r["metric"]): float(r["value"][1])
        for r in answer["data"]["result"]
    }


def one(url: str, expr: str, at: float) -> float:
    (value,) = values(url, expr, at).values()
    return value


def by_legend(dash: dict[str, Any], title: str, needle: str) -> str:
    (expr,) = [str(t["expr"]) for t in targets(dash, title) if needle in t["legendFormat"]]
    return expr


def near(value: float, truth: float, tolerance: float) -> bool:
    return abs(value - truth) <= tolerance * abs(truth)


def settle() -> float:
    """A query time after the last answers were scraped and the rules evaluated on them."""
    time.sleep(3)
    return time.time()


def test_panels_show_the_load_and_the_fault_as_they_happened(tmp_path: Path) -> None:
    with stack(tmp_path) as (url, proxy, upstream):
        load = Load(proxy)
        start = time.time()
        load.run(WINDOW + 10)  # the window falls inside the phase, past series births
        calm = settle()
        healthy = load.between(calm - WINDOW, calm)
        assert len(healthy) > 100 and all(a.status == 200 for a in load.answers)
        truth_rate = len(healthy) / WINDOW

        # Requests: each counted once in each view, at the rate they were sent.
        server = targets(SERVING, "Requests by outcome, server")[0]["expr"]
        client = targets(SERVING, "Requests by outcome, client")[0]["expr"]
        served = values(url, server, calm)
        seen = values(url, client, calm)
        # (A counter the engine writes at 0 before its first event reads 0 here.)
        assert {k for k, v in served.items() if v} == set(seen) == {f"{MODEL} success"}
        assert near(served[f"{MODEL} success"], truth_rate, 0.15), (served, truth_rate)
        assert near(seen[f"{MODEL} success"], served[f"{MODEL} success"], 0.05)
        # Goodput: every request met its targets (the simulator answers in milliseconds).
        goodput = targets(SERVING, "Goodput ratio")[0]["expr"]
        assert values(url, goodput, calm) == {MODEL: pytest.approx(1.0, abs=0.02)}
        # Lengths: the tokens each answer carried (within the one or two requests in flight
        # at the window's start, whose prompt is counted before they finish).
        lengths = "Prompt and output length"
        output = one(url, by_legend(SERVING, lengths, "out"), calm)
        assert output == pytest.approx(TOKENS, rel=0.01)
        prompts = {a.prompt_tokens for a in load.answers if a.prompt_tokens}
        assert len(prompts) == 1, "one prompt, one token count"
        prompt = one(url, by_legend(SERVING, lengths, "in"), calm)
        assert prompt == pytest.approx(prompts.pop(), rel=0.01)
        tokens_out = one(url, by_legend(SERVING, "Tokens per second", "out"), calm)
        assert near(tokens_out, TOKENS * truth_rate, 0.15)
        # The SLOs: nothing failed, nothing burns, the whole budget is left.
        sli = targets(OVERVIEW, "SLI over 30d", "availability")[0]["expr"]
        budget = targets(OVERVIEW, "Error budget left", "availability")[0]["expr"]
        burn = targets(OVERVIEW, "Burn rate per alert window", "availability")
        exhaustion = targets(OVERVIEW, "Time to budget exhaustion", "availability")[0]["expr"]
        assert values(url, sli, calm) == {MODEL: 1.0}
        assert values(url, budget, calm) == {MODEL: 1.0}
        assert all(values(url, t["expr"], calm) == {MODEL: 0.0} for t in burn)
        assert values(url, exhaustion, calm) == {}  # shown as "not burning"
        # Sizing: with one model, the recorded series are what the sizing formula says for
        # the bounds the server exposes (the simulator keeps vLLM's own outside the families
        # --custom-histogram-buckets sets, so they are counted, not assumed).
        recorded = values(url, f'count({{__name__=~".+:.+", service="{DEFAULT.service}"}})', calm)
        exposed = {
            phase: int(one(url, f'count(count by (le) ({metric.bucket}{{job="vllm"}}))', calm))
            for phase, metric in catalog.PHASES.items()
        }
        assert recorded == {"": generator.recorded_series(DEFAULT, exposed)}
        # GPUs: the fake's exact readings.
        memory = targets(GPU, "Memory used / total")[0]["expr"]
        assert sorted(values(url, memory, calm).values()) == [1 / 80, 0.5]
        assert set(values(url, by_legend(GPU, "GPUs up", "{{gpu_name}}"), calm).values()) == {1.0}

        # The fault: a quarter of requests fail from now on.
        set_faults = requests.post(f"{upstream}/admin/faults", json={"error_rate": ERROR_SHARE})
        assert set_faults.status_code == 200
        fault = time.time()
        load.run(WINDOW + 10)  # the window falls inside the phase, past series births
        hot = settle()
        errors = load.between(hot - WINDOW, hot, 500)
        ok = load.between(hot - WINDOW, hot, 200)
        share = len(errors) / (len(errors) + len(ok))
        assert 0.15 < share < 0.35 and {a.status for a in load.between(fault, hot)} == {200, 500}

        served = values(url, server, hot)
        seen = values(url, client, hot)
        for view in (served, seen):
            assert near(view[f"{MODEL} error"], len(errors) / WINDOW, 0.2), (view, len(errors))
            assert near(view[f"{MODEL} success"], len(ok) / WINDOW, 0.2), (view, len(ok))
        # Failed requests are not successes that missed their targets: goodput stays 1.
        assert values(url, goodput, hot) == {MODEL: pytest.approx(1.0, abs=0.02)}
        # Burn rate over 5m (all the history there is): the error share since the start
        # over the 0.1 % budget.
        everything = load.between(start, hot)
        failed = [a for a in everything if a.status == 500]
        since_start = len(failed) / len(everything)
        (five_minutes,) = [t["expr"] for t in burn if " 5m (" in t["legendFormat"]]
        assert near(one(url, five_minutes, hot), since_start / 0.001, 0.2)
        # Budget left and SLI agree with each other and with the errors seen.
        period_error = 1 - one(url, sli, hot)
        assert 0.5 * since_start < period_error < 1.5 * ERROR_SHARE
        assert one(url, budget, hot) == pytest.approx(1 - period_error / 0.001, rel=1e-6)
        assert one(url, exhaustion, hot) == 0.0  # the budget is gone already
        # The page fires and the overview's table shows it, with its runbook links.
        table = targets(OVERVIEW, "Firing alerts", "availability")[0]["expr"]
        deadline = time.monotonic() + 30
        while not (rows := values(url, table, time.time())) and time.monotonic() < deadline:
            time.sleep(1)
        alerts = requests.get(f"{url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    assert f"{MODEL} {catalog.ALERT_BUDGET_BURN} page" in rows, rows
    # Its link, as Prometheus expanded it, opens this model's burn-rate panel.
    (page,) = [a for a in alerts if a["labels"].get(catalog.SEVERITY) == "page"
               and a["labels"][catalog.SLO] == "availability" and a["state"] == "firing"]  # fmt: skip
    (availability,) = [slo for slo in DEFAULT.slos if slo.name == "availability"]
    uid = conventions.dashboard_uid(DEFAULT, conventions.BOARD_OVERVIEW)
    panel = conventions.panel_id(uid, conventions.slo_panel(availability, conventions.PANEL_BURN))
    assert page["annotations"]["dashboard_url"] == (
        f"http://localhost:3000/d/{uid}?var-model={MODEL}&viewPanel=panel-{panel}"
    )
    assert panel in {p["id"] for p in OVERVIEW["panels"]}
