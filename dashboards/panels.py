"""The panel shapes every dashboard here uses, built with grafana-foundation-sdk.

Each panel reads the `datasource` variable, has a unit and a description that says what a
bad value means, and gets its id from its key (`conventions.panel_id`), so that alert
links to a panel survive other panels coming and going. `Board` places panels left to
right and writes the dashboard as plain JSON (Grafana's schemaVersion 42).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as board_builder
from grafana_foundation_sdk.builders import heatmap, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cog
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import heatmap as heatmap_model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from llm_slo_stack.slo import conventions

WIDTH = 24
HEIGHT = 8
DATASOURCE = common.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAG = "llm-slo-stack"

Step = tuple[float | None, str]  # a threshold: from this value up (None: the base), a colour


def query(
    expr: str,
    legend: str = "",
    ref: str = "A",
    *,
    fmt: PromQueryFormat = PromQueryFormat.TIME_SERIES,
    instant: bool = False,
    exemplar: bool = False,
) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref).format(fmt).datasource(DATASOURCE)
    q = q.legend_format(legend or "__auto").exemplar(exemplar)
    return q.instant() if instant else q.range()


def thresholds(steps: Sequence[Step]) -> board_builder.ThresholdsConfig:
    return (
        board_builder.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


def series(
    title: str,
    description: str,
    unit: str,
    *queries: prometheus.Dataquery,
    steps: Sequence[Step] = (),
    ratio: bool = False,
) -> timeseries.Panel:
    """A time series; `steps` draws its alert levels as lines; `ratio` fixes 0 to 1."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .targets(list(queries))
        .legend(
            common_builder.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(
            common_builder.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )
    if ratio:
        panel = panel.min(0).max(1)
    if steps:
        style = common_builder.GraphThresholdsStyleConfig()
        panel = panel.thresholds(thresholds(steps)).thresholds_style(
            style.mode(common.GraphThresholdsStyleMode.LINE)
        )
    return panel


def single(
    title: str, description: str, unit: str, q: prometheus.Dataquery, steps: Sequence[Step]
) -> stat.Panel:
    """A stat showing the latest value (not a mean over the range), coloured by `steps`."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .targets([q])
        .thresholds(thresholds(steps))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .decimals(2)
    )


def distribution(title: str, description: str, unit: str, expr: str) -> heatmap.Panel:
    """A heatmap of a histogram's per-bucket rates: Grafana reads the `le` series as
    buckets (format heatmap), so each band is a population, not a cumulative count."""
    return (
        heatmap.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets([query(expr, "{{le}}", fmt=PromQueryFormat.HEATMAP)])
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit(unit))
        .cell_values(heatmap.CellValues().unit("reqps"))
        .color(
            heatmap.HeatmapColorOptions()
            .mode(heatmap_model.HeatmapColorMode.SCHEME)
            .scheme("Spectral")
            .scale(heatmap_model.HeatmapColorScale.EXPONENTIAL)
            .exponent(0.5)
            .steps(64)
            .reverse(False)
        )
        .tooltip(heatmap.HeatmapTooltip().mode(common.TooltipDisplayMode.SINGLE).y_histogram(True))
        .unit("reqps")
    )


def link(title: str, url: str) -> board_builder.DashboardLink:
    return (
        board_builder.DashboardLink(title)
        .type(model.DashboardLinkType.LINK)
        .url(url)
        .target_blank(True)
    )


def alerts(
    title: str, description: str, expr: str, links: Sequence[board_builder.DashboardLink]
) -> table.Panel:
    """A table of the alerts firing now, one row each, linking their runbooks."""
    return (
        table.Panel()
        .title(title)
        .description(description)
        .unit("short")
        .datasource(DATASOURCE)
        .targets([query(expr, fmt=PromQueryFormat.TABLE, instant=True)])
        .data_links(list(links))
        .no_value("none firing")
        .with_transformation(
            model.DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": {"Time": True, "Value": True, "__name__": True}},
            )
        )
    )


class Board:
    """One dashboard being built: panels placed left to right, wrapping at the grid's
    width, each panel's id taken from its key."""

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.x = self.y = self.tallest = 0
        self.panels: list[cog.Builder[Any]] = []

    def _wrap(self) -> None:
        self.x, self.y, self.tallest = 0, self.y + self.tallest, 0

    def _id(self, key: str) -> int:
        return conventions.panel_id(self.uid, key)

    def add(self, panel: Any, key: str, width: int = 12, height: int = HEIGHT) -> None:
        if self.x + width > WIDTH:
            self._wrap()
        grid = model.GridPos(h=height, w=width, x=self.x, y=self.y)
        self.panels.append(panel.id(self._id(key)).grid_pos(grid))
        self.x += width
        self.tallest = max(self.tallest, height)

    def row(self, title: str) -> None:
        if self.x:
            self._wrap()
        grid = model.GridPos(h=1, w=WIDTH, x=0, y=self.y)
        self.panels.append(board_builder.Row(title).id(self._id(f"row/{title}")).grid_pos(grid))
        self.y += 1

    def build(
        self, title: str, description: str, variables: Sequence[cog.Builder[Any]]
    ) -> dict[str, Any]:
        """The dashboard as sorted plain JSON. It links every other dashboard of the
        stack (by tag), keeping the time range and the variables (the model)."""
        others = (
            board_builder.DashboardLink("LLM SLO dashboards")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
        built = (
            board_builder.Dashboard(title)
            .uid(self.uid)
            .description(description)
            .tags([TAG])
            .timezone("utc")
            .time("now-6h", "now")
            .refresh("1m")
            .tooltip(model.DashboardCursorSync.CROSSHAIR)
            .readonly()
            .variables(list(variables))
            .link(others)
            .build()
        )
        # The SDK's own placement would move a panel given (0, 0); ours are final.
        built.panels = [panel.build() for panel in self.panels]
        data: dict[str, Any] = json.loads(json.dumps(built, cls=JSONEncoder, sort_keys=True))
        return data
