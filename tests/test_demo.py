"""`make demo`'s stack end to end, as its processes run it (loopback only, bounded): an
error burst travels from the simulator to a page at the webhook, every request is counted
once in each view, goodput is whole before the fault, and the ticket waits behind the page."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from llm_slo_stack.cli import command
from llm_slo_stack.dashboards import generator as dashboards
from llm_slo_stack.demo import incident, stack, view
from llm_slo_stack.demo.traffic import Traffic
from llm_slo_stack.exporters import catalog
from llm_slo_stack.rules.alertmanager import GROUP_WAIT_SECONDS
from llm_slo_stack.slo import burnrate, conventions, spec
from tests.support import loopback
from tests.support.paths import ROOT

pytestmark = [pytest.mark.prometheus, pytest.mark.alertmanager]

WARMUP = 40  # seconds of healthy traffic before the burst


def free_ports() -> stack.Ports:
    taken: set[int] = set()
    chosen = {}
    for name in stack.Ports.__dataclass_fields__:
        port = loopback.free_port()
        while port in taken:
            port = loopback.free_port()
        taken.add(port)
        chosen[name] = port
    return stack.Ports(**chosen)


def total(running: stack.Stack, promql: str, at: float | None = None) -> float:
    found = running.query(f"sum({promql})", at)
    return float(found[0]["value"][1]) if found else 0.0


def test_an_error_burst_pages_once_through_the_whole_stack(tmp_path: Path) -> None:
    with stack.running(spec.DEFAULT_PATH, tmp_path, free_ports()) as running:
        traffic = Traffic(running.proxy, stack.MODEL, workers=2, pause=0.1)
        traffic.start()
        started = time.time()
        try:
            time.sleep(WARMUP)
            # Goodput before the fault: every success met its targets, in the panel too.
            calm = time.time()
            goodput = total(running, catalog.REQUESTS_GOODPUT.name, calm)
            success = f'{catalog.CLIENT_REQUESTS.name}{{{catalog.OUTCOME}="success"}}'
            assert goodput > 50 and goodput >= total(running, success, calm) - 1
            serving = json.loads(dashboards.files(running.spec)["chat-serving.json"])
            (panel,) = [p for p in serving["panels"] if p["title"] == "Goodput ratio"]
            expr = panel["targets"][0]["expr"].replace("$model", ".*")
            ratio = running.query(expr.replace("$__rate_interval", "30s"), calm)
            assert [float(r["value"][1]) for r in ratio] == [pytest.approx(1.0, abs=0.02)]

            outcome = incident.run(running, started)
            print(outcome.report())
            # The ticket fires too (its thresholds are lower) and waits behind the page: held
            # past its group_wait, by when it would have gone out.
            seen, tickets = None, []
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                tickets = [a for a in running.alerts()
                           if a["labels"].get(catalog.SEVERITY) == burnrate.TICKET
                           and a["labels"].get(catalog.SLO) == "availability"]  # fmt: skip
                seen = seen or (time.monotonic() if tickets else None)
                if seen and time.monotonic() - seen > GROUP_WAIT_SECONDS + 5:
                    break
                time.sleep(1)
            burn = conventions.error_ratio(running.spec, incident.availability_slo(running.spec),
                                           conventions.BASE_WINDOW)  # fmt: skip
            blamed = running.query(burn)
            # The live view's numbers, read as they are drawn.
            rows = {row.name: row for row in view.slo_rows(running)}
            phases = dict(view.phase_rows(running))
            shown_at = time.time()
        finally:
            traffic.stop()
        time.sleep(3 * 2 + 1)  # two scrapes after the last answer
        answers = traffic.answers()
        counted = {
            "server": total(running, catalog.REQUESTS.name),
            "client": total(running, catalog.CLIENT_REQUESTS.name),
            "server errors": total(running, f'{catalog.REQUESTS.name}{{{catalog.OUTCOME}="error"}}'),
            "client errors": total(running, f'{catalog.CLIENT_REQUESTS.name}{{{catalog.OUTCOME}="error"}}'),
        }  # fmt: skip
        hooks = running.webhook.deliveries()

    # Ground truth: every answer, counted once in each view.
    print(f"sent {len(answers)}, counted {counted}")
    assert {a.status for a in answers} == {200, 500}
    failed = sum(1 for a in answers if a.status == 500)
    assert counted == {"server": len(answers), "client": len(answers),
                       "server errors": failed, "client errors": failed}  # fmt: skip
    # The page: delivered to the page receiver, after group_wait, near the theory.
    page = outcome.page
    assert page is not None and outcome.seconds is not None, outcome.report()
    assert GROUP_WAIT_SECONDS <= outcome.seconds <= outcome.expected.delivery + 20, outcome.report()
    (alert,) = [a for a in page.alerts() if a["labels"][catalog.SLO] == "availability"]
    assert alert["labels"][catalog.MODEL] == stack.MODEL
    assert alert["annotations"]["runbook_url"].endswith("error-budget-burn.md#availability")
    assert f"var-model={stack.MODEL}&viewPanel=panel-" in alert["annotations"]["dashboard_url"]
    # The overview shows the model to blame, burning far above the page's factor.
    assert [r["metric"][catalog.MODEL] for r in blamed] == [stack.MODEL]
    assert float(blamed[0]["value"][1]) / 0.001 > 14.4
    # The live view: the page and ticket firing on availability, its 5m burn rate (all the
    # history there is) the error share since the start over the 0.1 % budget, the SLI
    # below 1, every other SLO calm; every phase with a server p50, the client's too where
    # it measures one.
    since_start = [a for a in answers if a.done <= shown_at]
    share = sum(1 for a in since_start if a.status == 500) / len(since_start)
    availability = rows["availability"]
    assert availability.firing == [burnrate.PAGE, burnrate.TICKET]
    (page_tier,) = [t for t in availability.burn if t.startswith("page 1h/5m")]
    five_minutes = availability.burn[page_tier][1]
    assert five_minutes is not None and abs(five_minutes - share / 0.001) <= 0.2 * share / 0.001
    assert availability.sli is not None and 1 - 2 * share < availability.sli < 1
    for name in ("ttft", "itl", "e2e"):
        assert rows[name].firing == [] and rows[name].sli == 1.0, rows[name]
    for phase, cells in phases.items():
        has_client = phase in catalog.CLIENT_PHASES
        assert cells[0] is not None and (cells[2] is not None) == has_client, (phase, cells)
    # The ticket was inhibited by the page, and never delivered.
    assert tickets and all(t["status"]["inhibitedBy"] for t in tickets), tickets
    assert not [d for d in hooks if d.receiver == burnrate.TICKET]


def test_a_busy_port_is_a_clear_error_and_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ports = free_ports()
    with socket.socket() as holder:
        holder.bind((stack.HOST, ports.prometheus))
        holder.listen()
        code = command.main(["demo", "--workdir", str(tmp_path),
                             *[f"--{n}-port={getattr(ports, n)}" for n in stack.Ports.__dataclass_fields__]])  # fmt: skip
    assert code == 1
    assert f"prometheus {ports.prometheus}" in capsys.readouterr().err
    assert not (tmp_path / "prometheus.yml").exists()


def test_ctrl_c_stops_every_process_the_demo_started(tmp_path: Path) -> None:
    """`make demo` in a terminal: SIGINT once everything is up, and every part is gone
    (all its ports free again, no process left holding its work folder)."""
    import signal
    import subprocess
    import sys

    ports = free_ports()
    flags = [f"--{n}-port={getattr(ports, n)}" for n in stack.Ports.__dataclass_fields__]
    # As `make demo` runs it: the spec by a path relative to the repository.
    demo = subprocess.Popen(
        [str(Path(sys.executable).with_name("llm-slo")), "demo", "slo/default.yaml",
         "--workdir", str(tmp_path), *flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        loopback.wait_until_up(stack.url(ports.alertmanager, "/-/ready"), demo, seconds=90)
        assert len(ports.busy()) == len(stack.Ports.__dataclass_fields__)  # all seven up
        demo.send_signal(signal.SIGINT)
        _, err = demo.communicate(timeout=30)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0, err
    assert "every process the demo started is gone" in err
    assert ports.busy() == []
    left = []
    for proc in Path("/proc").iterdir():
        try:
            if str(tmp_path) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                left.append(proc.name)
        except OSError:
            continue
    assert left == [], left
