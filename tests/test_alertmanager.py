"""The generated Alertmanager configuration, checked by amtool and run by a real
Alertmanager on loopback: pages and tickets routed apart, a ticket inhibited by the page
of the same alert, service, SLO and model, and only that one."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import requests

from llm_slo_stack.exporters import catalog
from llm_slo_stack.rules import alertmanager as generated
from llm_slo_stack.rules import writer
from llm_slo_stack.slo import burnrate, spec
from tests.support import loopback
from tests.support.specs import VALID


def config_file(folder: Path) -> Path:
    path = folder / generated.FILE
    path.write_text(
        writer.shared_files([spec.loads(VALID, "chat.yaml")])[generated.FILE], encoding="utf-8"
    )
    return path


def test_amtool_accepts_it_and_routes_pages_and_tickets_apart(
    tmp_path: Path, alertmanager: tuple[str, str]
) -> None:
    _, amtool = alertmanager
    path = config_file(tmp_path)
    check = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    for severity, receiver in (
        (burnrate.PAGE, burnrate.PAGE),
        (burnrate.TICKET, burnrate.TICKET),
        ("info", generated.DEFAULT_RECEIVER),
    ):
        routed = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={path}",
             f"{catalog.SEVERITY}={severity}", f"{catalog.SERVICE}=chat", f"{catalog.SLO}=ttft"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert routed.stdout.strip() == receiver, routed.stdout + routed.stderr


def alert(severity: str, slo: str, model: str = "llama") -> dict[str, object]:
    return {
        "labels": {
            catalog.ALERTNAME: catalog.ALERT_BUDGET_BURN,
            catalog.SERVICE: "chat",
            catalog.SLO: slo,
            catalog.MODEL: model,
            catalog.SEVERITY: severity,
        }
    }


def test_a_page_inhibits_the_ticket_of_its_slo_and_model_only(
    tmp_path: Path, alertmanager: tuple[str, str]
) -> None:
    server, _ = alertmanager
    port = loopback.free_port()
    base = f"http://{loopback.HOST}:{port}"
    command = [
        server, f"--config.file={config_file(tmp_path)}", f"--storage.path={tmp_path / 'data'}",
        f"--web.listen-address={loopback.HOST}:{port}", "--cluster.listen-address=",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        loopback.wait_until_up(f"{base}/-/ready", process)
        sent = [
            alert(burnrate.PAGE, "ttft"),
            alert(burnrate.TICKET, "ttft"),
            alert(burnrate.TICKET, "availability"),
            alert(burnrate.TICKET, "ttft", model="qwen"),
        ]
        requests.post(f"{base}/api/v2/alerts", json=sent, timeout=10).raise_for_status()
        deadline = time.monotonic() + 10
        while True:
            got = requests.get(f"{base}/api/v2/alerts", timeout=10).json()
            inhibited = {
                (
                    a["labels"][catalog.SLO],
                    a["labels"][catalog.SEVERITY],
                    a["labels"][catalog.MODEL],
                ): bool(a["status"]["inhibitedBy"])
                for a in got
            }
            if (len(inhibited) == 4 and any(inhibited.values())) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert inhibited == {
        ("ttft", burnrate.PAGE, "llama"): False,
        ("ttft", burnrate.TICKET, "llama"): True,
        ("availability", burnrate.TICKET, "llama"): False,
        ("ttft", burnrate.TICKET, "qwen"): False,
    }
