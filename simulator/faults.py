"""Faults the simulator injects, switchable at run time through /admin/faults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class Faults:
    error_rate: float = 0.0  # share of requests failed with a 500
    latency_multiplier: float = 1.0  # every prefill and token gap times this
    stall_seconds: float = 0.0  # each request hangs this long before its first token
    drop_rate: float = 0.0  # share of streamed responses whose connection is cut mid-stream
    metrics_delay_seconds: float = 0.0  # /metrics answers this late
    garbage_metrics: bool = False  # /metrics returns something that is not the text format

    def update(self, changes: dict[str, Any]) -> list[str]:
        """Apply `changes` and return no problems, or apply none and return every problem."""
        known = {f.name: f.type for f in fields(self)}
        problems = []
        for key, value in changes.items():
            if key not in known:
                problems.append(f"unknown fault {key!r}; known: {', '.join(known)}")
            elif known[key] == "bool" and not isinstance(value, bool):
                problems.append(f"{key}: expected true or false")
            elif known[key] == "float" and (
                isinstance(value, bool) or not isinstance(value, int | float) or value < 0
            ):
                problems.append(f"{key}: expected a number >= 0")
        if not problems:
            for key, value in changes.items():
                setattr(self, key, float(value) if known[key] == "float" else value)
        return problems

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
