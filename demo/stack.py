"""The whole stack as local processes, without Docker: the vLLM simulator, the sidecar,
the tracing proxy, the GPU exporter on simulated GPUs, Debian's Prometheus (the generated
rules, exemplar storage) and Alertmanager (the generated routing, pages and tickets to a
local webhook). What `llm-slo demo` runs and the end-to-end test checks.

Every process listens on loopback at a configurable port; a busy port is refused before
anything starts, and leaving the `with` block stops every process it started.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from llm_slo_stack.demo import configs, webhook
from llm_slo_stack.rules import writer
from llm_slo_stack.slo import buckets, spec
from llm_slo_stack.slo.model import Spec

HOST = "127.0.0.1"
INTERVAL = "2s"  # Prometheus' scrape and rule evaluation: a demo wants quick feedback
MODEL = "demo-llama-8b"  # the name the simulator serves
READY_SECONDS = 60
STOP_SECONDS = 10


@dataclass(frozen=True)
class Ports:
    """Where each part listens (all on loopback)."""

    simulator: int = 8000
    proxy: int = 8080
    sidecar: int = 9410
    gpu: int = 9411
    prometheus: int = 9090
    alertmanager: int = 9093
    webhook: int = 9095

    def busy(self, host: str = HOST) -> list[str]:
        """`name port` of each port something already listens on."""
        taken = []
        for field in fields(self):
            port = getattr(self, field.name)
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((host, port))
                except OSError:
                    taken.append(f"{field.name} {port}")
        return taken


class StackError(Exception):
    """The stack cannot start: a busy port, a missing program, a part that never came up."""


def url(port: int, path: str = "") -> str:
    return f"http://{HOST}:{port}{path}"


def _program(*names: str) -> str:
    """A program next to this Python (the package's console scripts) or on PATH."""
    for name in names:
        beside = Path(sys.executable).with_name(name)
        found = str(beside) if beside.exists() else shutil.which(name)
        if found:
            return found
    hint = "run `make demo`, which installs Debian's prometheus and prometheus-alertmanager"
    raise StackError(f"{names[0]} not found: {hint}")


def write_configs(spec_path: Path, folder: Path, ports: Ports) -> Spec:
    """The rules, Prometheus' and Alertmanager's files under `folder`, from the spec."""
    loaded = spec.load(spec_path)
    rules = folder / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    for name, text in {**writer.files(loaded), **writer.shared_files([loaded])}.items():
        if name.endswith(".rules.yaml"):
            (rules / name).write_text(text, encoding="utf-8")
    parts = (ports.sidecar, ports.proxy, ports.gpu, ports.alertmanager)
    where = configs.Targets(*(f"{HOST}:{port}" for port in parts))
    scrape = configs.scrape_config(loaded, where, "rules/*.rules.yaml", INTERVAL)
    routing = configs.alerting_config(loaded, configs.webhooks(url(ports.webhook)))
    (folder / "prometheus.yml").write_text(yaml.safe_dump(scrape))
    (folder / "alertmanager.yml").write_text(yaml.safe_dump(routing))
    return loaded


class Stack:
    """The running parts, their URLs, and what the webhook received."""

    def __init__(self, loaded: Spec, ports: Ports, hooks: webhook.Recorder) -> None:
        self.spec = loaded
        self.ports = ports
        self.webhook = hooks
        self.prometheus = url(ports.prometheus)
        self.alertmanager = url(ports.alertmanager)
        self.proxy = url(ports.proxy)
        self.simulator = url(ports.simulator)

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """Prometheus' instant query; [] when it cannot answer."""
        params = {"query": promql, **({"time": str(at)} if at is not None else {})}
        found = _get_json(f"{self.prometheus}/api/v1/query?{urllib.parse.urlencode(params)}")
        result: list[dict[str, Any]] = (found or {}).get("data", {}).get("result", [])
        return result

    def faults(self, **changes: float) -> None:
        """Switch the simulator's faults (error_rate, latency_multiplier, ...)."""
        request = urllib.request.Request(
            f"{self.simulator}/admin/faults",
            json.dumps(changes).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def alerts(self) -> list[dict[str, Any]]:
        """Alertmanager's alerts, with their inhibition state."""
        found = _get_json(f"{self.alertmanager}/api/v2/alerts")
        return found if isinstance(found, list) else []


def _get_json(address: str) -> Any:
    try:
        with urllib.request.urlopen(address, timeout=10) as answer:
            return json.loads(answer.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _wait_ready(name: str, address: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(address, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
    raise StackError(f"{name} did not come up at {address}:\n{tail}")


@contextmanager
def running(spec_path: Path, folder: Path, ports: Ports) -> Iterator[Stack]:
    """Every part started in dependency order, each ready before the next; all stopped
    (terminated, then killed after STOP_SECONDS) when the block exits, however it exits."""
    busy = ports.busy()
    if busy:
        raise StackError(
            f"port(s) in use: {', '.join(busy)}; pass another (llm-slo demo --<part>-port N)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    spec_path = spec_path.resolve()  # the parts run in `folder`: a relative path would miss
    loaded = write_configs(spec_path, folder, ports)
    families = json.dumps(buckets.vllm_families(loaded))
    parts = [
        (
            "simulator",
            [
                _program("llm-sim"),
                "--host",
                HOST,
                "--port",
                str(ports.simulator),
                "--served-model-name",
                MODEL,
                "--custom-histogram-buckets",
                families,
            ],
            url(ports.simulator, "/v1/models"),
        ),
        (
            "sidecar",
            [
                _program("llm-serving-exporter"),
                "--target",
                url(ports.simulator, "/metrics"),
                "--listen",
                f"{HOST}:{ports.sidecar}",
            ],
            url(ports.sidecar, "/metrics"),
        ),
        (
            "proxy",
            [
                _program("llm-trace-proxy"),
                "--upstream",
                url(ports.simulator),
                "--listen",
                f"{HOST}:{ports.proxy}",
                "--slo",
                str(spec_path),
            ],
            url(ports.proxy, "/metrics"),
        ),
        (
            "gpu",
            [_program("llm-gpu-exporter"), "--source", "fake", "--listen", f"{HOST}:{ports.gpu}"],
            url(ports.gpu, "/metrics"),
        ),
        (
            "prometheus",
            [
                _program("prometheus"),
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'prometheus-data'}",
                f"--web.listen-address={HOST}:{ports.prometheus}",
                "--enable-feature=exemplar-storage",
            ],
            url(ports.prometheus, "/-/ready"),
        ),
        (
            "alertmanager",
            [
                _program("prometheus-alertmanager", "alertmanager"),
                f"--config.file={folder / 'alertmanager.yml'}",
                f"--storage.path={folder / 'alertmanager-data'}",
                f"--web.listen-address={HOST}:{ports.alertmanager}",
                "--cluster.listen-address=",
            ],
            url(ports.alertmanager, "/-/ready"),
        ),
    ]
    processes: list[subprocess.Popen[bytes]] = []
    with ExitStack() as stack:
        stack.callback(_stop_all, processes)
        hooks = stack.enter_context(webhook.receiving(HOST, ports.webhook))
        for name, command, ready in parts:
            log = folder / f"{name}.log"
            with log.open("wb") as out:  # Popen keeps its own descriptor
                process = subprocess.Popen(
                    command,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=folder,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            processes.append(process)
            _wait_ready(name, ready, process, log)
        yield Stack(loaded, ports, hooks)


def _stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """Terminate in reverse order of start, then kill what is still running."""
    for process in reversed(processes):
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for process in reversed(processes):
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
