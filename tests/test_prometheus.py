"""A real Prometheus (Debian's) scraping the sidecar in front of the simulator."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import yaml

from exporters import catalog
from exporters.sidecar import SidecarCollector
from simulator.latency import Profile
from simulator.server import Config, create_app
from tests import loopback
from tests.test_sidecar import MODEL, load

SCRAPE_SECONDS = 1
WAIT_SECONDS = 30


@contextmanager
def prometheus(folder: Path, jobs: dict[str, list[str]], rules: list[Path] = ()) -> Iterator[str]:  # type: ignore[assignment]
    """Debian's Prometheus scraping each job's targets (host:port) every second, with
    `rules` loaded and evaluated every second; yields its URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found: run `make test` (it installs Debian's prometheus)")
    config = {
        "global": {
            "scrape_interval": f"{SCRAPE_SECONDS}s",
            "evaluation_interval": f"{SCRAPE_SECONDS}s",
        },
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": targets}]}
            for job, targets in jobs.items()
        ],
        "rule_files": [str(rule) for rule in rules],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = loopback.free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address={loopback.HOST}:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://{loopback.HOST}:{port}"
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"prometheus did not start: {process.stderr.read().decode()[-2000:]}"
                )
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


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
            deadline = time.monotonic() + WAIT_SECONDS
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
