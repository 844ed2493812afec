"""The demo's incident: an error burst in the simulator, the time until the page reaches
the webhook, and what burn-rate theory expects for it.

Theory (slo/burnrate.py): at a constant error ratio e, a tier whose threshold is
theta = factor x budget fires once both its windows' error ratios pass theta. A window W
with a full W of healthy history crosses after theta x W / e. The demo's Prometheus has
only H seconds of history, so a window longer than H + t holds e x t / (H + t) and crosses
after theta x H / (e - theta): much sooner. Then one rule evaluation, and Alertmanager's
group_wait before the first notification.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction

from llm_slo_stack.demo import stack
from llm_slo_stack.demo.webhook import Delivery
from llm_slo_stack.exporters import catalog
from llm_slo_stack.rules.alertmanager import GROUP_WAIT_SECONDS
from llm_slo_stack.slo import burnrate, duration
from llm_slo_stack.slo.model import SLO, AvailabilitySLI, Spec

ERROR_RATE = 0.2  # the burst: a fifth of requests fail
PAGE_WAIT_SECONDS = 300


def crossing(window: int, theta: float, error: float, history: float) -> float:
    """Seconds after the fault until a window's error ratio passes theta."""
    if error <= theta:
        return float("inf")
    early = theta * history / (error - theta)  # while the window still holds all history
    return early if history + early <= window else theta * window / error


@dataclass(frozen=True)
class Expectation:
    full_history: float  # seconds to detection with a whole long window of healthy history
    detection: float  # seconds to detection with the history this run had
    delivery: float  # detection, one evaluation and Alertmanager's group_wait


def expect(loaded: Spec, slo: SLO, error: float, history: float) -> Expectation:
    """The page's timing for `slo` at error ratio `error` after `history` healthy seconds:
    the soonest of its page tiers."""
    pages = [w for w in slo.alert_windows if w.severity == burnrate.PAGE]
    full, now = [], []
    for tier in pages:
        theta = float(burnrate.threshold(tier, loaded.period, slo.error_budget))
        full.append(
            float(burnrate.detection_time(tier, loaded.period, slo.error_budget, Fraction(error)))
        )
        now.append(max(crossing(w, theta, error, history) for w in (tier.long, tier.short)))
    detection = min(now)
    evaluation = duration.parse(stack.INTERVAL) or 0
    return Expectation(min(full), detection, detection + evaluation + GROUP_WAIT_SECONDS)


def availability_slo(loaded: Spec) -> SLO:
    """The SLO an error burst pages on."""
    for slo in loaded.slos:
        if isinstance(slo.sli, AvailabilitySLI):
            return slo
    raise ValueError(f"{loaded.source}: the incident needs an availability SLO")


def page_for(running: stack.Stack, slo: SLO, since: float) -> Delivery | None:
    """The first page notification for `slo` that arrived after `since`."""
    for delivery in running.webhook.deliveries(burnrate.PAGE):
        if delivery.at > since and any(
            a["labels"].get(catalog.SLO) == slo.name for a in delivery.alerts()
        ):
            return delivery
    return None


@dataclass(frozen=True)
class Outcome:
    fault_at: float
    page: Delivery | None
    expected: Expectation

    @property
    def seconds(self) -> float | None:
        return None if self.page is None else self.page.at - self.fault_at

    def report(self) -> str:
        e = self.expected
        theory = (
            f"theory: {e.delivery:.0f} s with this run's history (detection {e.detection:.0f} s "
            f"+ evaluation + group_wait {GROUP_WAIT_SECONDS} s); {e.full_history:.0f} s of "
            "detection with a full hour of healthy history"
        )
        if self.seconds is None:
            waited = time.time() - self.fault_at
            if waited < PAGE_WAIT_SECONDS:
                return f"{waited:.0f} s since the fault, no page yet; {theory}"
            return f"no page within {PAGE_WAIT_SECONDS} s of the fault; {theory}"
        return f"fault to page delivered: {self.seconds:.0f} s measured; {theory}"


def inject(running: stack.Stack, started: float, error: float = ERROR_RATE) -> Outcome:
    """Start the burst; the outcome has no page yet."""
    slo = availability_slo(running.spec)
    fault_at = time.time()
    running.faults(error_rate=error)
    return Outcome(fault_at, None, expect(running.spec, slo, error, fault_at - started))


def delivered(running: stack.Stack, outcome: Outcome) -> Outcome:
    """The outcome with its page, once the webhook has it."""
    page = page_for(running, availability_slo(running.spec), outcome.fault_at)
    return Outcome(outcome.fault_at, page, outcome.expected)


def run(running: stack.Stack, started: float, error: float = ERROR_RATE) -> Outcome:
    """Inject the burst and wait (bounded) for the page at the webhook."""
    outcome = inject(running, started, error)
    deadline = time.monotonic() + PAGE_WAIT_SECONDS
    while outcome.page is None and time.monotonic() < deadline:
        time.sleep(1)
        outcome = delivered(running, outcome)
    return outcome
