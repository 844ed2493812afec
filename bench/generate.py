"""Benchmark: generating the files of a 50-SLO spec (rules, their promtool tests,
dashboards), in memory, with libyaml's emitter and with PyYAML's pure-Python one side by
side. promtool's own check is left out: it runs only when installed.

Target (issue 14): under a second for 50 SLOs.

    .venv/bin/python -m bench.generate
"""

from __future__ import annotations

import time
from pathlib import Path
from unittest import mock

import yaml

from llm_slo_stack.cli import generation
from llm_slo_stack.slo import emitter, spec
from llm_slo_stack.slo.model import Spec

SLOS = 50
TARGET_SECONDS = 1.0


def fifty() -> str:
    """A spec of 50 SLOs: availability and latency ones over every phase, grouped by model."""
    phases = [("ttft", "2s"), ("itl", "200ms"), ("e2e", "60s"), ("queue", "1s"), ("tpot", "100ms")]
    slos = []
    for index in range(SLOS):
        if index % 2 == 0:
            sli = "{availability: {}}"
        else:
            phase, threshold = phases[index % len(phases)]
            sli = f"{{latency: {{phase: {phase}, threshold: {threshold}}}}}"
        slos.append(f"  - name: slo-{index}\n    objective: 99\n    sli: {sli}\n")
    head = "apiVersion: llm-slo-stack/v1\nservice: chat\nselector: {job: vllm}\ngroup_by: [model]\n"
    return head + "slos:\n" + "".join(slos)


def seconds(loaded: Spec) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        generation.plan([loaded], {"rules": Path("rules"), "dashboards": Path("dashboards")})
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    loaded = spec.loads(fifty(), "fifty.yaml")
    fast = seconds(loaded)
    # The same dumper (representers, no aliases) on PyYAML's pure-Python emitter.
    python = type("PythonDumper", (yaml.SafeDumper,), dict(emitter.Dumper.__dict__))
    with mock.patch.object(emitter, "Dumper", python):
        slow = seconds(loaded)
    met = "met" if fast < TARGET_SECONDS else "MISSED"
    print(
        f"{SLOS} SLOs: {fast:.2f} s with libyaml, {slow:.2f} s pure Python "
        f"(target < {TARGET_SECONDS:g} s: {met})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
