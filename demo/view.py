"""The demo's live terminal view: per SLO the SLI, burn rate per window, budget left and
alert state; per phase p50 and p99 as the server and as clients saw them; the requests
sent and what the webhook received. Read from Prometheus with the same series names
the rules record (`slo/conventions.py`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.console import Group
from rich.table import Table
from rich.text import Text

from llm_slo_stack.demo import stack
from llm_slo_stack.demo.traffic import Traffic
from llm_slo_stack.exporters import catalog
from llm_slo_stack.slo import burnrate, conventions
from llm_slo_stack.slo.model import SLO, Spec
from llm_slo_stack.slo.selector import Matcher, Selector

QUANTILES = (0.5, 0.99)


@dataclass
class SloRow:
    name: str
    objective: float
    sli: float | None
    budget_left: float | None
    # tier ("page 1h/5m >14.4x") -> its long and short window's burn rates
    burn: dict[str, tuple[float | None, float | None]]
    firing: list[str] = field(default_factory=list)  # severities firing


def _value(running: stack.Stack, promql: str) -> float | None:
    """The worst group's value, or None when there is none yet."""
    found = running.query(promql)
    return float(found[0]["value"][1]) if found else None


def tier_name(loaded: Spec, tier: burnrate.AlertWindow) -> str:
    long, short = conventions.window(tier.long), conventions.window(tier.short)
    factor = conventions.number(burnrate.factor(tier, loaded.period))
    return f"{tier.severity} {long}/{short} >{factor}x"


def slo_rows(running: stack.Stack) -> list[SloRow]:
    loaded = running.spec
    rows = []
    for slo in loaded.slos:
        error = _value(running, f"max({conventions.error_ratio(loaded, slo, loaded.period)})")
        remaining = conventions.own_series(catalog.SLO_BUDGET_REMAINING, loaded, slo)

        def rate(seconds: int, slo: SLO = slo) -> float | None:
            ratio = _value(running, f"max({conventions.error_ratio(loaded, slo, seconds)})")
            return None if ratio is None else ratio / float(slo.error_budget)

        burn = {tier_name(loaded, t): (rate(t.long), rate(t.short)) for t in slo.alert_windows}
        alerts = running.query(conventions.firing_alerts(loaded, slo))
        rows.append(
            SloRow(
                slo.name,
                float(slo.objective_ratio),
                None if error is None else 1 - error,
                _value(running, f"min({remaining})"),
                burn,
                sorted({a["metric"].get(catalog.SEVERITY, "") for a in alerts}),
            )
        )
    return rows


def phase_rows(running: stack.Stack) -> list[tuple[str, list[float | None]]]:
    """Per phase: server p50, p99, then client p50, p99 (None where there is no view)."""
    rows = []
    window = conventions.base_window()
    for phase, metric in catalog.PHASES.items():
        recorded = conventions.phase_quantile(running.spec, metric)
        cells: list[float | None] = [
            _value(
                running,
                f"max({Selector(recorded, (Matcher(catalog.QUANTILE, '=', str(q)),)).render()})",
            )
            for q in QUANTILES
        ]
        client = catalog.CLIENT_PHASES.get(phase)
        for q in QUANTILES:
            if client is None:
                cells.append(None)
                continue
            buckets = f"sum by ({catalog.LE}) (rate({client.bucket}[{window}]))"
            cells.append(_value(running, f"histogram_quantile({q}, {buckets})"))
        rows.append((phase, cells))
    return rows


def _burn(rate: float | None) -> str:
    """A burn rate, short: 0.3, 14, 89."""
    if rate is None or rate != rate:
        return "-"
    return f"{rate:.1f}" if rate < 10 else f"{rate:.0f}"


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or value != value:  # no data, or NaN (no events in the window)
        return "-"
    if unit == "%":
        return f"{value * 100:.3f}".rstrip("0").rstrip(".") + "%"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"
    return f"{value:.1f}{unit}"


def render(running: stack.Stack, traffic: Traffic, started: float, note: str = "") -> Group:
    """One frame of the view."""
    slos = Table(
        title=f"SLOs of {running.spec.service} (period {conventions.window(running.spec.period)})"
    )
    rows = slo_rows(running)
    tiers = list(dict.fromkeys(t for row in rows for t in row.burn))
    for column in ("SLO", "objective", "SLI", "budget left", *tiers, "alerts"):
        slos.add_column(column, justify="left" if column == "SLO" else "right")
    for row in rows:
        style = "bold red" if burnrate.PAGE in row.firing else "yellow" if row.firing else "green"
        slos.add_row(
            row.name,
            _fmt(row.objective, "%"),
            _fmt(row.sli, "%"),
            _fmt(row.budget_left, "%"),
            *["/".join(_burn(r) for r in row.burn[t]) if t in row.burn else "-" for t in tiers],
            Text(", ".join(row.firing) or "ok", style=style),
        )
    phases = Table(title="Latency by phase (server: the engine's view; client: the proxy's)")
    for column in ("phase", "server p50", "server p99", "client p50", "client p99"):
        phases.add_column(column, justify="right" if column != "phase" else "left")
    for phase, cells in phase_rows(running):
        phases.add_row(phase, *[_fmt(c, "s") for c in cells])
    answers = traffic.answers()
    failed = sum(1 for a in answers if a.status != 200)
    delivered = ", ".join(
        f"{d.receiver} at +{d.at - started:.0f}s ({len(d.alerts())} firing)"
        for d in running.webhook.deliveries()
    )
    status = Text(
        f"{len(answers)} requests sent through the proxy ({failed} failed) in "
        f"{time.time() - started:.0f} s. Webhook: {delivered or 'nothing yet'}.\n"
        f"Prometheus {running.prometheus}  Alertmanager {running.alertmanager}  "
        f"proxy {running.proxy}. Ctrl-C stops everything.\n{note}\n"
    )
    return Group(slos, phases, status)
