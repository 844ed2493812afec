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


REFERENCE_PERIOD = 30 * DAY  # the period the workbook's table is for
MIN_WINDOW = 2 * MINUTE  # a rate needs a few scrapes: no shorter window at short periods


def windows(period: int) -> tuple[AlertWindow, ...]:
    """The tiers for an SLO period: the workbook's windows scaled by period / 30 days,
    to whole minutes, so that every tier keeps its meaning at any period: the same share
    of the budget spent in its long window, at the same burn-rate factor (14.4, 6, 3 and
    1, as at 30 days). Unscaled, a 7-day period would open tickets at 0.23x (a burn that
    never exhausts the budget) and a 90-day one would never alert below 3x."""
    if period == REFERENCE_PERIOD:
        return WINDOWS

    def scaled(seconds: int) -> int:
        return max(
            MIN_WINDOW, round(Fraction(seconds * period, REFERENCE_PERIOD) / MINUTE) * MINUTE
        )

    return tuple(
        AlertWindow(w.severity, w.budget_share, scaled(w.long), scaled(w.short)) for w in WINDOWS
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
