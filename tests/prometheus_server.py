"""Debian's Prometheus as a child process on loopback, for the tests and bench/queries.py."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
import yaml

from tests import loopback

WAIT_SECONDS = 30


class NotStarted(RuntimeError):
    """Prometheus is missing or did not become ready."""


@contextmanager
def running(folder: Path, config: dict, data: Path | None = None, *flags: str) -> Iterator[str]:
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
