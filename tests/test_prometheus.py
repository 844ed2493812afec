"""A real Prometheus (Debian's) scraping the sidecar in front of the simulator."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from llm_slo_stack.dashboards import generator as dashboards
from llm_slo_stack.exporters import catalog
from llm_slo_stack.exporters.sidecar import SidecarCollector
from llm_slo_stack.simulator.latency import Profile
from llm_slo_stack.simulator.server import Config, create_app
from llm_slo_stack.slo import spec
from llm_slo_stack.tracing.middleware import Targets
from llm_slo_stack.tracing.proxy import create_app as proxy_app
from tests.support import loopback, prometheus
from tests.support.paths import ROOT
from tests.support.serving import MODEL, TRACE_MODEL, chat, load

DEFAULT_SPEC = spec.load(ROOT / "slo" / "default.yaml")


@pytest.mark.prometheus
def test_prometheus_sees_every_catalog_histogram_with_data(tmp_path: Path) -> None:
    fast = Profile(prefill_overhead=0.002, prefill_per_token=0.0, itl=0.001)
    app = create_app(Config(served_model_name=MODEL, seed=3, profile=fast))
    with (
        loopback.asgi(app) as simulator,
        loopback.exporter(SidecarCollector(simulator)) as exporter,
    ):
        load(simulator)
        target = exporter.removeprefix("http://").removesuffix("/metrics")
        with prometheus.scraping(tmp_path, {"llm": [target]}) as url:
            histograms = [m.count for m in catalog.PHASES.values()]
            deadline = time.monotonic() + prometheus.WAIT_SECONDS
            while True:
                missing = [
                    h
                    for h in histograms
                    if not prometheus.query(url, f'{h}{{model="{MODEL}"}} > 0')
                ]
                if not missing or time.monotonic() > deadline:
                    break
                time.sleep(prometheus.SCRAPE_SECONDS)
            assert missing == []
            up = prometheus.query(url, catalog.EXPORTER_UPSTREAM_UP.name)
            assert [float(r["value"][1]) for r in up] == [1.0]
            buckets = prometheus.query(url, f"count({catalog.TIME_TO_FIRST_TOKEN.bucket})")
            assert int(buckets[0]["value"][1]) > 10  # vLLM's TTFT bounds, not a lone +Inf


@pytest.mark.prometheus
def test_sidecar_and_proxy_together_count_each_request_once_and_goodput_is_whole(
    tmp_path: Path,
) -> None:
    """The simulator behind the proxy, the sidecar beside it, a real Prometheus scraping
    both: 10 requests (half streamed), all within loose targets. Summed over every job,
    the server counts 10 and the client 10 (never 20), and the serving dashboard's
    goodput panel, evaluated as Grafana would, reads exactly 1 (it read 0.5 when the two
    views shared names)."""
    fast = Profile(prefill_overhead=0.002, prefill_per_token=0.0, itl=0.001)
    app = create_app(Config(served_model_name=TRACE_MODEL, seed=3, profile=fast))
    loose = Targets(ttft=10.0, tpot=1.0)
    with (
        loopback.asgi(app) as simulator,
        loopback.asgi(proxy_app(simulator, targets=loose)) as front,
        loopback.exporter(SidecarCollector(simulator)) as exporter,
    ):
        jobs = {
            "llm": [exporter.removeprefix("http://").removesuffix("/metrics")],
            "gateway": [front.removeprefix("http://")],
        }
        with prometheus.scraping(tmp_path, jobs) as url:

            def total(metric: catalog.Metric) -> float:
                found = prometheus.query(url, f'sum({metric.name}{{outcome="success"}})')
                return float(found[0]["value"][1]) if found else 0.0

            def until(count: float) -> None:
                """Until Prometheus has scraped `count` successes from both views."""
                deadline = time.monotonic() + prometheus.WAIT_SECONDS
                while time.monotonic() < deadline and (
                    total(catalog.CLIENT_REQUESTS) < count or total(catalog.REQUESTS) < count
                ):
                    time.sleep(prometheus.SCRAPE_SECONDS)

            # Two batches, each seen by Prometheus: a rate needs the counters' growth.
            for index in range(4):
                chat(front, stream=index % 2 == 0)
            until(4)
            for index in range(6):
                chat(front, stream=index % 2 == 0)
            until(10)
            board = json.loads(
                dashboards.files(DEFAULT_SPEC)[f"{DEFAULT_SPEC.service}-serving.json"]
            )
            (goodput,) = [
                t["expr"]
                for p in board["panels"]
                if p.get("title") == "Goodput ratio"
                for t in p["targets"]
            ]
            filled = goodput.replace("$model", ".*").replace("$__rate_interval", "1m")
            ratio = prometheus.query(url, filled)
            assert (total(catalog.REQUESTS), total(catalog.CLIENT_REQUESTS)) == (10.0, 10.0)
    assert [float(r["value"][1]) for r in ratio] == [1.0]
