"""`llm-slo demo`: the whole stack on this machine with steady traffic and a live view;
`--incident` injects an error burst and reports the time from fault to page delivered."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path
from types import FrameType

from llm_slo_stack.demo import incident, stack
from llm_slo_stack.demo.traffic import Traffic

WARMUP_SECONDS = 60  # healthy traffic before the incident: a baseline to burn against
FRAME_SECONDS = 2


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser("demo", help="run the whole stack here with traffic and a live view")
    demo.add_argument(
        "spec", nargs="?", metavar="SPEC", help="an SLO file (default: the shipped one)"
    )
    demo.add_argument(
        "--incident",
        action="store_true",
        help=f"after {WARMUP_SECONDS} s, fail {incident.ERROR_RATE:.0%} of requests until the page",
    )
    demo.add_argument(
        "--duration", type=float, metavar="SECONDS", help="stop by itself after this long"
    )
    demo.add_argument(
        "--workdir", metavar="DIR", help="configs, data and logs (default: a new temp dir)"
    )
    for field in fields(stack.Ports):
        demo.add_argument(f"--{field.name}-port", type=int, default=field.default, metavar="N")
    demo.set_defaults(run=run)


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    from llm_slo_stack.demo import view

    console = Console()
    ports = stack.Ports(**{f.name: getattr(args, f"{f.name}_port") for f in fields(stack.Ports)})
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="llm-slo-demo-"))
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    outcome: incident.Outcome | None = None
    try:
        with stack.running(Path(args.spec), folder, ports) as running:
            traffic = Traffic(running.proxy, stack.MODEL)
            traffic.start()
            started = time.time()
            end = started + args.duration if args.duration else float("inf")
            try:
                with Live(console=console, auto_refresh=False) as live:
                    shown = 0.0
                    while time.time() < end:
                        if (
                            args.incident
                            and outcome is None
                            and time.time() - started > WARMUP_SECONDS
                        ):
                            outcome = incident.inject(running, started)
                        elif outcome is not None and outcome.page is None:
                            outcome = incident.delivered(running, outcome)
                        note = "" if outcome is None else outcome.report()
                        if console.is_terminal or time.time() - shown >= 10 * FRAME_SECONDS:
                            live.update(view.render(running, traffic, started, note), refresh=True)
                            shown = time.time()
                        time.sleep(FRAME_SECONDS)
            finally:
                traffic.stop()
    except KeyboardInterrupt:
        print("stopped: every process the demo started is gone", file=sys.stderr)
    except stack.StackError as error:
        print(f"llm-slo demo: {error}", file=sys.stderr)
        return 1
    if outcome is not None:
        print(outcome.report())
    print(f"configs and logs: {folder}")
    return 0
