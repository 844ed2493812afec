"""Multiwindow, multi-burn-rate alerting math, as pure functions.

Source: Google SRE Workbook, "Alerting on SLOs", table 5-8 and the text around it
(also ../shared/reference/slo-and-tracing.md). An alert window spends a share of the
error budget over its long window; its factor is that share times the SLO period over
the long window (0.02 x 720h / 1h = 14.4). The short window is 1/12 of the long one so
the alert resets soon after the burn stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

MINUTE = 60
HOUR = 3600
DAY = 86400

PAGE = "page"
TICKET = "ticket"


@dataclass(frozen=True)
class AlertWindow:
    """One tier: spend `budget_share` of the budget within `long` seconds and alert."""

    severity: str
    budget_share: Fraction
    long: int
    short: int


# The workbook's four-window variant: two page tiers, two ticket tiers.
WINDOWS: tuple[AlertWindow, ...] = (
    AlertWindow(PAGE, Fraction(2, 100), 1 * HOUR, 5 * MINUTE),
    AlertWindow(PAGE, Fraction(5, 100), 6 * HOUR, 30 * MINUTE),
    AlertWindow(TICKET, Fraction(10, 100), 1 * DAY, 2 * HOUR),
    AlertWindow(TICKET, Fraction(10, 100), 3 * DAY, 6 * HOUR),
)


def error_budget(objective_percent: Fraction) -> Fraction:
    """The allowed error ratio: 1 - objective (99.9 % leaves 0.001)."""
    return 1 - objective_percent / 100


def factor(window: AlertWindow, period: int) -> Fraction:
    """Burn-rate factor of a tier: budget share x period / long window."""
    return window.budget_share * period / window.long


def threshold(window: AlertWindow, period: int, budget: Fraction) -> Fraction:
    """Error ratio above which the tier's windows count as burning: factor x budget."""
    return factor(window, period) * budget


def detection_time(
    window: AlertWindow, period: int, budget: Fraction, error_ratio: Fraction
) -> Fraction:
    """Seconds of a constant `error_ratio` until the tier's long window crosses its factor.

    t = W x B x b / e (the short window, 1/12 as long, is crossed first).
    """
    return window.long * factor(window, period) * budget / error_ratio


def exhaustion_time(period: int, burn_rate: Fraction) -> Fraction:
    """Seconds until a whole period's budget is spent at a constant burn rate."""
    return period / burn_rate
