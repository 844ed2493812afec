"""SLO files for the tests, and running `llm-slo generate` on ones it must refuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_slo_stack.cli import command as cli

VALID = """\
apiVersion: llm-slo-stack/v1
service: chat
labels: {team: inference}
selector: {job: vllm}
group_by: [model]
slos:
  - name: availability
    objective: 99.9
    sli: {availability: {}}
  - name: ttft
    objective: 99
    sli: {latency: {phase: ttft, threshold: 2s}}
  - name: upstream-5xx
    objective: 99.5
    sli:
      ratio: {errors: 'http_requests_total{status="5xx"}', total: http_requests_total}
    alerting: {ticket: false, runbook_url: 'https://wiki.example.com/5xx'}
"""


def generate_refused(capsys: pytest.CaptureFixture[str], out: Path, *specs: Path) -> str:
    """Run `llm-slo generate` expecting it to refuse the specs; returns its stderr.

    Refusing means exit status 1 and not a single file written.
    """

    boards = out.parent / "dashboards"
    command = [
        "generate",
        *map(str, specs),
        "--rules-dir",
        str(out),
        "--dashboards-dir",
        str(boards),
    ]
    assert cli.main(command) == cli.EXIT_INVALID
    assert not out.exists() and not boards.exists()
    return capsys.readouterr().err
