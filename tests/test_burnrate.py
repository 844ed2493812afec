"""Burn-rate math against numbers worked by hand from the SRE Workbook's table."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from llm_slo_stack.slo import burnrate

DAY = 86400
ONE_H, SIX_H, ONE_D, THREE_D = burnrate.WINDOWS


def test_the_windows_are_the_workbooks_four() -> None:
    assert [(w.severity, w.budget_share, w.long, w.short) for w in burnrate.WINDOWS] == [
        ("page", Fraction(2, 100), 3600, 300),  # 2 % of budget in 1h, short 5m
        ("page", Fraction(5, 100), 21600, 1800),  # 5 % in 6h, short 30m
        ("ticket", Fraction(10, 100), 86400, 7200),  # 10 % in 1d, short 2h
        ("ticket", Fraction(10, 100), 259200, 21600),  # 10 % in 3d, short 6h
    ]
    for window in burnrate.WINDOWS:
        assert window.short * 12 == window.long  # the short window is 1/12 of the long


@pytest.mark.parametrize(
    ("days", "factors"),
    [
        # 0.02 x 720h / 1h = 14.4; 0.05 x 720 / 6 = 6; 0.1 x 720 / 24 = 3; 0.1 x 720 / 72 = 1
        (30, (Fraction(72, 5), 6, 3, 1)),
        # 0.02 x 672 = 13.44; 0.05 x 672 / 6 = 5.6; 0.1 x 672 / 24 = 2.8; 0.1 x 672 / 72 = 14/15
        (28, (Fraction(336, 25), Fraction(28, 5), Fraction(14, 5), Fraction(14, 15))),
        # 0.02 x 168 = 3.36; 0.05 x 168 / 6 = 1.4; 0.1 x 168 / 24 = 0.7; 0.1 x 168 / 72 = 7/30
        (7, (Fraction(84, 25), Fraction(7, 5), Fraction(7, 10), Fraction(7, 30))),
    ],
)
def test_factors_follow_from_budget_share_and_period(days: int, factors: tuple[Any, ...]) -> None:
    assert tuple(burnrate.factor(w, days * DAY) for w in burnrate.WINDOWS) == factors


def test_error_budget_is_exact() -> None:
    assert burnrate.error_budget(Fraction(999, 10)) == Fraction(1, 1000)
    assert burnrate.error_budget(Fraction(99)) == Fraction(1, 100)


def test_threshold_is_factor_times_budget() -> None:
    assert burnrate.threshold(ONE_H, 30 * DAY, Fraction(1, 1000)) == Fraction(144, 10000)
    assert burnrate.threshold(THREE_D, 30 * DAY, Fraction(1, 100)) == Fraction(1, 100)


def test_detection_times_match_the_workbook_examples() -> None:
    budget = Fraction(1, 1000)
    # A total outage at 99.9 %: 1h x 14.4 x 0.001 = 51.84 s ("about 52 s").
    assert burnrate.detection_time(ONE_H, 30 * DAY, budget, Fraction(1)) == Fraction(5184, 100)
    # 2 % errors (a 20x burn): 1h x 14.4 / 20 = 43.2 min.
    assert burnrate.detection_time(ONE_H, 30 * DAY, budget, Fraction(2, 100)) == 43 * 60 + 12
    # The 6h tier on a total outage: 6h x 6 x 0.001 = 129.6 s.
    assert burnrate.detection_time(SIX_H, 30 * DAY, budget, Fraction(1)) == Fraction(1296, 10)


def test_exhaustion_time() -> None:
    # At 14.4x a 30-day budget lasts 720h / 14.4 = 50h; at 1x exactly the period.
    assert burnrate.exhaustion_time(30 * DAY, Fraction(72, 5)) == 50 * 3600
    assert burnrate.exhaustion_time(30 * DAY, Fraction(1)) == 30 * DAY


@pytest.mark.parametrize("days", [7, 28, 30, 90, 365])
def test_every_period_keeps_the_workbook_factors_and_budget_shares(days: int) -> None:
    tiers = burnrate.windows(days * DAY)
    assert [w.budget_share for w in tiers] == [w.budget_share for w in burnrate.WINDOWS]
    factors = [float(burnrate.factor(w, days * DAY)) for w in tiers]
    # Windows are whole minutes: the factors are the workbook's to within a rounding.
    assert factors == pytest.approx([14.4, 6, 3, 1], rel=0.01)
    # The short window stays 1/12 of the long one, or the shortest a rate may have.
    assert all(
        w.short == burnrate.MIN_WINDOW or w.short * 12 == pytest.approx(w.long, rel=0.1)
        for w in tiers
    )
