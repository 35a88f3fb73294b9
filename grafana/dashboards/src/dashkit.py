"""Shared building blocks of the otel-llm-cost dashboards (Grafana Foundation SDK).

Everything here is about *how* a panel looks; *what* it asks Prometheus lives in
``cockpit.py`` and ``drilldown.py``. Metric and label names are those of the telemetry contract
(CONTRACT.md, "Metrics") and of the recording rules in ``alerts/llm-cost-rules.yml``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    dashboard,
    piechart,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import piechart as pm
from grafana_foundation_sdk.models import prometheus as prom_models

#: Every panel and query reads the data source picked in the ``datasource`` variable.
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")

# ------------------------------------------------------------------------------------------
# Label filters (the template variables)
# ------------------------------------------------------------------------------------------

#: Provider and request model: on every series of the contract.
PM = 'gen_ai_provider_name=~"$provider", gen_ai_request_model=~"$model"'
#: Plus agent and feature: on every series except ``llm_request_cost_USD_*`` (which carries
#: only provider, operation and request model). A regex ``.*`` (the variables' "All") also
#: matches an absent label, so "All" includes unattributed calls.
F = PM + ', gen_ai_agent_name=~"$agent", llm_feature=~"$feature"'

#: A budget without scope labels: the one compared with the total spend.
NO_SCOPE = 'gen_ai_agent_name="", llm_feature="", gen_ai_provider_name="", gen_ai_request_model=""'

#: ``(label, selector of budgets scoped by it, legend)`` for the budget bar gauges.
BUDGET_SCOPES: tuple[tuple[str, str, str], ...] = (
    ("all", NO_SCOPE, "all calls"),
    (
        "agent",
        'gen_ai_agent_name!="", llm_feature="", gen_ai_provider_name="", gen_ai_request_model=""',
        "agent {{gen_ai_agent_name}}",
    ),
    (
        "feature",
        'gen_ai_agent_name="", llm_feature!="", gen_ai_provider_name="", gen_ai_request_model=""',
        "feature {{llm_feature}}",
    ),
    (
        "provider",
        'gen_ai_agent_name="", llm_feature="", gen_ai_provider_name!="", gen_ai_request_model=""',
        "provider {{gen_ai_provider_name}}",
    ),
    (
        "model",
        'gen_ai_agent_name="", llm_feature="", gen_ai_provider_name="", gen_ai_request_model!=""',
        "model {{gen_ai_request_model}}",
    ),
)


def sel(metric: str, *matchers: str, base: str = F) -> str:
    """``metric{<base>, <matchers>}``."""
    return metric + "{" + ", ".join(m for m in (base, *matchers) if m) + "}"


#: How far before a window's start a counter's value at the start is looked for (as in the spend
#: rules of ``alerts/llm-cost-rules.yml`` and ``otel-llm-cost report``).
START_LOOKBACK = "1h"


def gained(selector: str, window: str) -> str:
    """Per series: what the counter ``selector`` (``metric{filters}``) gained in the ``window``
    up to the evaluation time, the PromQL of the spend recording rules and of
    ``otel-llm-cost report`` (``spend_query``). The counters are cumulative since their process
    started: a series first seen inside the window (a new process, model, agent or feature)
    counts its whole last value, where ``increase()`` would ignore its first sample (for a
    short-lived process, all of its spend); a series that was there counts its last value minus
    its value at the start (its last sample of the hour before); ``increase()`` only when the
    counter was reset inside the window. A series that ended inside the window counts too."""
    rng = f"{selector}[{window}]"
    last = f"last_over_time({rng})"
    start = f"last_over_time({selector}[{START_LOOKBACK}] offset {window})"
    exact = f"(({last} - {start}) >= 0) or {last}"
    return f"(({exact}) unless (resets({rng}) > 0)) or increase({rng})"


def unattributed(expr: str, *labels: str) -> str:
    """``expr`` with an empty ``label`` shown as ``(unattributed)`` (calls made outside any
    ``usage_context``), for each of ``labels``."""
    for label in labels:
        expr = f'label_replace({expr}, "{label}", "(unattributed)", "{label}", "")'
    return expr


# ------------------------------------------------------------------------------------------
# Template variables
# ------------------------------------------------------------------------------------------


def datasource_variable() -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_variable(
    name: str, label: str, title: str, metric: str, matchers: str = "", description: str = ""
) -> dashboard.QueryVariable:
    """A multi-value variable of the values of ``label``, with "All" = ``.*``."""
    series = f"{metric}{{{matchers}}}" if matchers else metric
    variable = (
        dashboard.QueryVariable(name)
        .label(title)
        .datasource(DS)
        .query(f"label_values({series}, {label})")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )
    if description:
        variable = variable.description(description)
    return variable


def standard_variables() -> list[Any]:
    """``datasource``, ``provider``, ``model``, ``agent``, ``feature`` (the contract's names)."""
    return [
        datasource_variable(),
        label_variable(
            "provider", "gen_ai_provider_name", "Provider", "llm_requests_total",
            description="gen_ai.provider.name",
        ),
        label_variable(
            "model", "gen_ai_request_model", "Model", "llm_requests_total",
            'gen_ai_provider_name=~"$provider"',
            description="gen_ai.request.model: the model the caller asked for",
        ),
        label_variable(
            "agent", "gen_ai_agent_name", "Agent", "llm_requests_total", PM,
            description="gen_ai.agent.name (usage_context(agent=...)); All includes "
            "unattributed calls",
        ),
        label_variable(
            "feature", "llm_feature", "Feature", "llm_requests_total",
            PM + ', gen_ai_agent_name=~"$agent"',
            description="llm.feature (usage_context(feature=...)); All includes unattributed "
            "calls",
        ),
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------
# Queries
# ------------------------------------------------------------------------------------------


def q(
    expr: str,
    legend: str = "",
    *,
    instant: bool = False,
    table_format: bool = False,
    interval: str | None = None,
) -> prometheus.Dataquery:
    """A Prometheus query on ``${datasource}``; ref ids are given by :func:`targets`."""
    query = (
        prometheus.Dataquery()
        .expr(expr)
        .datasource(DS)
        .editor_mode(prom_models.QueryEditorMode.CODE)
    )
    query = query.instant() if instant else query.range()
    if legend:
        query = query.legend_format(legend)
    if table_format:
        query = query.format(prom_models.PromQueryFormat.TABLE)
    if interval:
        query = query.interval(interval)
    return query


def _with_targets(panel: Any, queries: Sequence[prometheus.Dataquery]) -> Any:
    for index, query in enumerate(queries):
        panel = panel.with_target(query.ref_id(chr(ord("A") + index)))
    return panel


# ------------------------------------------------------------------------------------------
# Colours and thresholds
# ------------------------------------------------------------------------------------------

OK, WARNING, EXCEEDED = "green", "orange", "red"


def steps(*pairs: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for value, color in pairs])
    )


def budget_steps() -> dashboard.ThresholdsConfig:
    """Share of a budget: ok below 80 %, warning from 80 %, exceeded above 100 %."""
    return steps((None, OK), (0.8, WARNING), (1.0, EXCEEDED))


def fixed(color: str) -> dashboard.FieldColor:
    return dashboard.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color(color)


def by_thresholds() -> dashboard.FieldColor:
    return dashboard.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS)


def palette() -> dashboard.FieldColor:
    return dashboard.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC_BY_NAME)


def _thresholds_json(config: dashboard.ThresholdsConfig) -> object:
    return json.loads(json.dumps(config.build(), cls=JSONEncoder))


def budget_share_properties(display_name: str) -> list[dm.DynamicConfigValue]:
    """Field properties of a "% of budget" value next to a USD value."""
    return [
        dm.DynamicConfigValue(id_val="displayName", value=display_name),
        dm.DynamicConfigValue(id_val="unit", value="percentunit"),
        dm.DynamicConfigValue(id_val="decimals", value=0),
        dm.DynamicConfigValue(id_val="thresholds", value=_thresholds_json(budget_steps())),
        dm.DynamicConfigValue(id_val="color", value={"mode": "thresholds"}),
    ]


def display_name(name: str) -> list[dm.DynamicConfigValue]:
    return [dm.DynamicConfigValue(id_val="displayName", value=name)]


# ------------------------------------------------------------------------------------------
# Panels
# ------------------------------------------------------------------------------------------


def row(title: str) -> dashboard.Row:
    return dashboard.Row(title).datasource(DS)


def _common(
    panel: Any,
    title: str,
    description: str,
    queries: Sequence[prometheus.Dataquery],
    w: int,
    h: int,
    unit: str | None,
    no_value: str | None,
    time_from: str | None = None,
    interval: str | None = None,
) -> Any:
    panel = panel.title(title).description(description).datasource(DS).span(w).height(h)
    if unit:
        panel = panel.unit(unit)
    if no_value:
        panel = panel.no_value(no_value)
    if time_from:
        panel = panel.time_from(time_from)
    if interval:
        panel = panel.interval(interval)
    return _with_targets(panel, queries)


def stat_panel(
    title: str,
    description: str,
    queries: Sequence[prometheus.Dataquery],
    *,
    unit: str = "currencyUSD",
    w: int = 4,
    h: int = 5,
    time_from: str | None = None,
    no_value: str | None = None,
    color: str = "blue",
    thresholds: dashboard.ThresholdsConfig | None = None,
    decimals: int | None = 2,
) -> stat.Panel:
    panel = stat.Panel()
    panel = _common(panel, title, description, queries, w, h, unit, no_value, time_from)
    panel = (
        panel.graph_mode(cm.BigValueGraphMode.NONE)
        .color_mode(cm.BigValueColorMode.VALUE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .justify_mode(cm.BigValueJustifyMode.CENTER)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    if thresholds is not None:
        panel = panel.thresholds(thresholds).color_scheme(by_thresholds())
    else:
        panel = panel.color_scheme(fixed(color))
    return panel


def timeseries_panel(
    title: str,
    description: str,
    queries: Sequence[prometheus.Dataquery],
    *,
    unit: str = "currencyUSD",
    w: int = 12,
    h: int = 8,
    bars: bool = False,
    stacked: bool = False,
    interval: str | None = None,
    threshold: float | None = None,
    no_value: str | None = None,
    min_value: float | None = 0,
) -> timeseries.Panel:
    """Lines, or stacked bars (one bar per ``interval``). ``threshold`` draws a red dashed line
    (an alert's threshold)."""
    panel = timeseries.Panel()
    panel = _common(panel, title, description, queries, w, h, unit, no_value, None, interval)
    panel = (
        panel.legend(
            common.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["sum", "max"] if bars else ["mean", "max", "lastNotNull"])
            .sort_by("Sum" if bars else "Max")
            .sort_desc(True)
        )
        .tooltip(
            common.VizTooltipOptions()
            .mode(cm.TooltipDisplayMode.MULTI)
            .sort(cm.SortOrder.DESCENDING)
        )
        .color_scheme(palette())
    )
    if min_value is not None:
        panel = panel.min(min_value)
    if bars:
        panel = (
            panel.draw_style(cm.GraphDrawStyle.BARS)
            .fill_opacity(80)
            .line_width(1)
            .bar_alignment(cm.BarAlignment.BEFORE)
        )
    else:
        panel = panel.draw_style(cm.GraphDrawStyle.LINE).line_width(2).fill_opacity(10)
    if stacked:
        panel = panel.stacking(common.StackingConfig().mode(cm.StackingMode.NORMAL))
    if threshold is not None:
        panel = panel.thresholds(
            steps((None, "transparent"), (threshold, EXCEEDED))
        ).thresholds_style(
            common.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)
        )
    return panel


def bargauge_panel(
    title: str,
    description: str,
    queries: Sequence[prometheus.Dataquery],
    *,
    unit: str = "currencyUSD",
    w: int = 8,
    h: int = 8,
    thresholds: dashboard.ThresholdsConfig | None = None,
    max_value: float | None = None,
    no_value: str | None = None,
    time_from: str | None = None,
) -> bargauge.Panel:
    panel = bargauge.Panel()
    panel = _common(panel, title, description, queries, w, h, unit, no_value, time_from)
    panel = (
        panel.display_mode(cm.BarGaugeDisplayMode.BASIC)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .value_mode(cm.BarGaugeValueMode.COLOR)
        .name_placement(cm.BarGaugeNamePlacement.TOP)
        .show_unfilled(True)
        .min(0)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if max_value is not None:
        panel = panel.max(max_value)
    if thresholds is not None:
        panel = panel.thresholds(thresholds).color_scheme(by_thresholds())
    else:
        panel = panel.color_scheme(
            dashboard.FieldColor().mode(dm.FieldColorModeId.CONTINUOUS_BL_PU)
        )
    return panel


def pie_panel(
    title: str,
    description: str,
    queries: Sequence[prometheus.Dataquery],
    *,
    unit: str = "currencyUSD",
    w: int = 8,
    h: int = 9,
    no_value: str | None = None,
) -> piechart.Panel:
    panel = piechart.Panel()
    panel = _common(panel, title, description, queries, w, h, unit, no_value)
    return (
        panel.pie_type(pm.PieChartType.DONUT)
        .decimals(2)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .legend(
            piechart.PieChartLegendOptions()
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.RIGHT)
            .show_legend(True)
            .values([pm.PieChartLegendValues.VALUE, pm.PieChartLegendValues.PERCENT])
            .sort_by("Value")
            .sort_desc(True)
        )
        .tooltip(common.VizTooltipOptions().mode(cm.TooltipDisplayMode.SINGLE))
        .color_scheme(palette())
    )


def table_panel(
    title: str,
    description: str,
    queries: Sequence[prometheus.Dataquery],
    columns: dict[str, tuple[str, str | None]],
    *,
    w: int = 12,
    h: int = 8,
    no_value: str | None = None,
    sort_by: str | None = None,
) -> table.Panel:
    """A table of instant queries in table format, joined on their labels (``merge``).

    ``columns`` maps each field to keep (a label, or ``Value #<ref>`` for a query's value) to
    ``(header, unit)``, in display order; every other field (Time...) is hidden."""
    panel = table.Panel()
    panel = _common(panel, title, description, queries, w, h, None, no_value)
    order = {name: index for index, name in enumerate(columns)}
    renames = {name: header for name, (header, _) in columns.items()}
    if "Value #A" in columns:
        # Grafana names the value "Value", not "Value #A", when only one query returns frames.
        order["Value"] = order["Value #A"]
        renames["Value"] = renames["Value #A"]
    panel = panel.with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
    panel = panel.with_transformation(
        dm.DataTransformerConfig(
            id_val="organize",
            options={
                "excludeByName": {"Time": True},
                "indexByName": order,
                "renameByName": renames,
            },
        )
    )
    for header, unit in columns.values():
        if unit:
            panel = panel.override_by_name(
                header, [dm.DynamicConfigValue(id_val="unit", value=unit)]
            )
    if sort_by:
        panel = panel.sort_by([common.TableSortByFieldState().display_name(sort_by).desc(True)])
    return panel.cell_height(cm.TableCellHeight.SM).filterable(False)


# ------------------------------------------------------------------------------------------
# Dashboard
# ------------------------------------------------------------------------------------------


def link(title: str, uid: str, tooltip: str) -> dashboard.DashboardLink:
    """A link to another dashboard that keeps the time range and the variables."""
    return (
        dashboard.DashboardLink(title)
        .type(dm.DashboardLinkType.LINK)
        .url(f"/d/{uid}")
        .tooltip(tooltip)
        .icon("dashboard")
        .include_vars(True)
        .keep_time(True)
        .as_dropdown(False)
        .target_blank(False)
    )


def new_dashboard(
    uid: str, title: str, description: str, tags: Sequence[str]
) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(list(tags))
        .timezone("browser")
        .week_start("monday")
        .time("now-7d", "now")
        .refresh("1m")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
    )


def to_json(builder: dashboard.Dashboard) -> dict[str, Any]:
    """The dashboard as plain JSON data, panel ids numbered 1, 2, ... in layout order."""
    data: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    next_id = 1
    for panel in data.get("panels", []):
        panel["id"] = next_id
        next_id += 1
        for inner in panel.get("panels", []):
            inner["id"] = next_id
            next_id += 1
    return data


def dumps(data: dict[str, Any]) -> str:
    """Commit-ready JSON: sorted keys, indent 2, trailing newline."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
