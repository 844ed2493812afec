"""A real Prometheus (Debian's) scraping the sidecar in front of the simulator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from exporters import catalog
from exporters.sidecar import SidecarCollector
from simulator.latency import Profile
from simulator.server import Config, create_app
from tests import loopback, prometheus_server
from tests.test_sidecar import MODEL, load

SCRAPE_SECONDS = 1


@contextmanager
def prometheus(
    folder: Path,
    jobs: dict[str, list[str]],
    rules: list[Path] = (),  # type: ignore[assignment]
    labels: dict[str, dict[str, str]] | None = None,
) -> Iterator[str]:
    """Debian's Prometheus scraping each job's targets (host:port) every second, with
    `rules` loaded and evaluated every second; yields its URL. `labels` adds target labels
    per job, as Kubernetes service discovery would (pod, namespace)."""
    config = {
        "global": {
            "scrape_interval": f"{SCRAPE_SECONDS}s",
            "evaluation_interval": f"{SCRAPE_SECONDS}s",
        },
        "scrape_configs": [
            {
                "job_name": job,
                "static_configs": [{"targets": targets, "labels": (labels or {}).get(job, {})}],
            }
            for job, targets in jobs.items()
        ],
        "rule_files": [str(rule) for rule in rules],
    }
    try:
        with prometheus_server.running(folder, config) as url:
            yield url
    except prometheus_server.NotStarted as error:
        pytest.fail(str(error))


def query(url: str, promql: str) -> list[dict]:
    answer = requests.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_prometheus_sees_every_catalog_histogram_with_data(tmp_path: Path) -> None:
    fast = Profile(prefill_overhead=0.002, prefill_per_token=0.0, itl=0.001)
    app = create_app(Config(served_model_name=MODEL, seed=3, profile=fast))
    with (
        loopback.asgi(app) as simulator,
        loopback.exporter(SidecarCollector(simulator)) as exporter,
    ):
        load(simulator)
        target = exporter.removeprefix("http://").removesuffix("/metrics")
        with prometheus(tmp_path, {"llm": [target]}) as url:
            histograms = [m.count for m in catalog.PHASES.values()]
            deadline = time.monotonic() + prometheus_server.WAIT_SECONDS
            while True:
                missing = [h for h in histograms if not query(url, f'{h}{{model="{MODEL}"}} > 0')]
                if not missing or time.monotonic() > deadline:
                    break
                time.sleep(SCRAPE_SECONDS)
            assert missing == []
            up = query(url, catalog.EXPORTER_UPSTREAM_UP.name)
            assert [float(r["value"][1]) for r in up] == [1.0]
            buckets = query(url, f"count({catalog.TIME_TO_FIRST_TOKEN.bucket})")
            assert int(buckets[0]["value"][1]) > 10  # vLLM's TTFT bounds, not a lone +Inf
