"""Debian's Prometheus as a child process on loopback, for the tests and bench/queries.py."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.support import loopback

WAIT_SECONDS = 30
SCRAPE_SECONDS = 1
# Without it Prometheus drops the trace ids the client-side histograms carry, and the
# dashboards' exemplar dots never appear (compose/ and `make demo` set it too).
EXEMPLARS = "--enable-feature=exemplar-storage"


class NotStarted(RuntimeError):
    """Prometheus is missing or did not become ready."""


@contextmanager
def running(
    folder: Path, config: dict[str, Any], data: Path | None = None, *flags: str
) -> Iterator[str]:
    """Prometheus with `config` (written to folder/prometheus.yml) and its TSDB in `data`
    (folder/data by default), until the block exits; yields its URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise NotStarted("prometheus not found: run `make promtool` (Debian's prometheus)")
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = loopback.free_port()
    log = folder / "prometheus.log"  # a file, not a pipe: a full pipe would stall Prometheus
    with log.open("w") as stderr:  # Popen keeps its own copy of the descriptor
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={data or folder / 'data'}",
                f"--web.listen-address={loopback.HOST}:{port}",
                "--log.level=warn",
                EXEMPLARS,
                *flags,
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
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
                process.terminate()
                process.wait(timeout=60)
                raise NotStarted(f"prometheus did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


@contextmanager
def scraping(
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
        with running(folder, config) as url:
            yield url
    except NotStarted as error:
        pytest.fail(str(error))


def query(url: str, promql: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result
