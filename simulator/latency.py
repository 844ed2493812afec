"""The simulator's latency model: seeded, so a run is reproducible.

Figures from llm-d-inference-sim's references (../shared/reference/inference-servers.md):
batch-1 TTFT for a 256-token prompt 60-120 ms and ITL 10-15 ms (8B on an H100), ITL
std-dev 5-15 % of the mean, 1.5-3.5x slower under load, occasional ITL spikes when a
prefill joins the batch or a request is preempted.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """Latency knobs, in seconds unless named otherwise."""

    prefill_overhead: float = 0.03
    prefill_per_token: float = 0.00025
    itl: float = 0.012
    itl_jitter: float = 0.1  # std-dev as a fraction of the mean
    spike_probability: float = 0.01  # per token: a prefill joins the batch
    spike_factor: float = 4.0
    load_slowdown: float = 1.5  # at a full batch every step takes (1 + this)x as long
    preemption_probability: float = 0.0005  # per token, times the batch load


class LatencyModel:
    """Draws prefill times and token gaps from a seeded generator."""

    def __init__(self, profile: Profile, seed: int) -> None:
        self.profile = profile
        self.rng = random.Random(seed)

    def prefill(self, prompt_tokens: int, load: float) -> float:
        p = self.profile
        base = p.prefill_overhead + p.prefill_per_token * prompt_tokens
        return base * (1 + p.load_slowdown * load)

    def gap(self, load: float) -> tuple[float, bool]:
        """One inter-token gap at a batch load of 0..1, and whether it was a preemption."""
        p = self.profile
        gap = p.itl * (1 + p.load_slowdown * load) * max(0.2, self.rng.gauss(1, p.itl_jitter))
        preempted = self.rng.random() < p.preemption_probability * load
        if preempted or self.rng.random() < p.spike_probability:
            gap *= p.spike_factor
        return gap, preempted
