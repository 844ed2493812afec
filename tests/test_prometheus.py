"""A real Prometheus (Debian's) scraping the sidecar in front of the simulator."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from llm_slo_stack.exporters import catalog
from llm_slo_stack.exporters.sidecar import SidecarCollector
from llm_slo_stack.simulator.latency import Profile
from llm_slo_stack.simulator.server import Config, create_app
from tests.support import loopback, prometheus
from tests.support.serving import MODEL, load


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
