"""The demo incident's theory: when a window's error ratio crosses a tier's threshold,
checked against the ratio the window then holds, not against hard-coded times."""

from __future__ import annotations

import pytest

from llm_slo_stack.demo import incident
from llm_slo_stack.slo import burnrate, spec
from tests.support.paths import ROOT


def held(window: int, error: float, history: float, t: float) -> float:
    """The error ratio a window of `window` s holds `t` s into a constant burst at
    `error`, after `history` s of clean traffic at the same rate."""
    covered = min(window, history + t)
    return error * min(t, window) / covered


@pytest.mark.parametrize("window", [300, 3600, 21600])
@pytest.mark.parametrize("history", [30.0, 600.0, 86400.0])
@pytest.mark.parametrize("error", [0.02, 0.2, 1.0])
def test_the_crossing_is_when_the_window_holds_the_threshold(
    window: int, history: float, error: float
) -> None:
    theta = 0.0144
    t = incident.crossing(window, theta, error, history)
    assert held(window, error, history, t) == pytest.approx(theta, rel=1e-9)
    assert held(window, error, history, 0.99 * t) < theta


def test_below_the_threshold_a_window_never_crosses() -> None:
    assert incident.crossing(3600, 0.0144, 0.01, 60.0) == float("inf")


def test_with_a_full_hour_of_history_the_page_is_the_burnrate_detection_time() -> None:
    loaded = spec.load(ROOT / "slo" / "default.yaml")
    slo = incident.availability_slo(loaded)
    expected = incident.expect(loaded, slo, 0.2, history=30 * 86400)
    fastest = max((w for w in slo.alert_windows if w.severity == burnrate.PAGE),
                  key=lambda w: burnrate.factor(w, loaded.period))  # fmt: skip
    assert expected.detection == pytest.approx(expected.full_history)
    assert expected.full_history == pytest.approx(fastest.long * 0.0144 / 0.2)
