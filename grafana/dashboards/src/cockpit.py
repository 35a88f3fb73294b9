"""The "LLM cost cockpit" dashboard (uid ``llm-cost-cockpit``): spend against budgets, where the
money goes, and the health of the traffic that produces it.

Regenerate the JSON with ``python grafana/dashboards/generate.py``.
"""

from __future__ import annotations

from typing import Any

from dashkit import (
    BUDGET_SCOPES,
    EXCEEDED,
    NO_SCOPE,
    OK,
    PM,
    WARNING,
    F,
    bargauge_panel,
    budget_share_properties,
    budget_steps,
    display_name,
    gained,
    link,
    new_dashboard,
    pie_panel,
    q,
    row,
    sel,
    standard_variables,
    stat_panel,
    steps,
    table_panel,
    timeseries_panel,
    to_json,
    unattributed,
)

UID = "llm-cost-cockpit"
TITLE = "LLM cost cockpit"
DRILLDOWN_UID = "llm-cost-drilldown"

COST = "llm_cost_USD_total"
TOKENS = "llm_tokens_total"
REQUESTS = "llm_requests_total"
REQUEST_COST = "llm_request_cost_USD_bucket"
TOKEN_USAGE = "gen_ai_client_token_usage_bucket"
DURATION = "gen_ai_client_operation_duration_seconds_bucket"
FIRST_CHUNK = "gen_ai_client_operation_time_to_first_chunk_seconds_bucket"
#: The base of the spend recording rules: the only level that keeps all four filter labels.
SPEND_RULE = "provider_model_agent_feature:llm_cost_USD:increase"

OPT_IN_NOTE = (
    "{label} is a label only when opted in: OTEL_LLM_COST_METRIC_ATTRIBUTES={attr} in the app "
    'and "{attr}" in keep_keys of collector/otel-collector-config.yaml'
)


# ------------------------------------------------------------------------------------------
# Expressions
# ------------------------------------------------------------------------------------------


def total(metric: str, window: str = "$__range", *matchers: str, by: str = "") -> str:
    """``sum [by (...)] (<what each series of metric{filters} gained in window>)``: a new
    series counts in full (see :func:`dashkit.gained`)."""
    agg = f"sum by ({by}) " if by else "sum"
    return f"{agg}({gained(sel(metric, *matchers), window)})"


def budget(window: str) -> str:
    """The budget of all calls for ``window`` (the smallest, if several are defined)."""
    return f'min(llm_budget_USD{{window="{window}", {NO_SCOPE}}})'


def rolling(window: str) -> str:
    """Spend of the selection over a rolling window, from the recording rules."""
    return f"sum({sel(SPEND_RULE + window)})"


def share(matcher: str, window: str, by: str = "", fn: str = "gained") -> str:
    """Share of requests with ``matcher``: 0 when there are requests but none match. ``fn``:
    ``gained`` (requests in the window, new series in full) or ``rate``."""
    agg = f"sum by ({by}) " if by else "sum"

    def requests(*matchers: str) -> str:
        if fn == "rate":
            return f"{agg}(rate({sel(REQUESTS, *matchers)}[{window}]))"
        return f"{agg}({gained(sel(REQUESTS, *matchers), window)})"

    part, whole = requests(matcher), requests()
    return f"({part} or 0 * {whole}) / {whole}"


def quantile(phi: float, metric: str, by: str, base: str = F) -> str:
    return (
        f"histogram_quantile({phi}, sum by ({by}, le) "
        f"(rate({sel(metric, base=base)}[$__rate_interval])))"
    )


#: Days left in the calendar month (UTC), today's remainder included.
DAYS_LEFT = "(days_in_month() - day_of_month() + 1 - (time() % 86400) / 86400)"

MONTH_END = f"{total(COST)} + {rolling('24h')} * {DAYS_LEFT}"
ROLLING_30D_AHEAD = f"sum({sel(SPEND_RULE + '23d')}) + 7 * {rolling('24h')}"


# ------------------------------------------------------------------------------------------
# Panels
# ------------------------------------------------------------------------------------------


def spend_vs_budget(
    title: str, description: str, spend: str, window: str, *, time_from: str | None = None
) -> Any:
    """A stat: USD spent and its share of the ``window`` budget of all calls."""
    return (
        stat_panel(
            title,
            description,
            [q(spend, "spent", instant=True), q(f"{spend} / {budget(window)}", instant=True)],
            time_from=time_from,
            no_value="no spend",
        )
        .override_by_query("B", budget_share_properties(f"of {window} budget"))
        .override_by_query("A", display_name("spent"))
    )


#: How the calendar and range totals count (dashkit.gained).
COUNTED = (
    " Counted as the budget alerts count: what each counter series gained in the range, a "
    "series first seen in it (a new process, model, agent or feature) in full."
)

BUDGET_NOTE = (
    ' The share is against the {window} budget of all calls (llm_budget_USD{{window="{window}"}} '
    "without scope labels, alerts/budgets.yml; the smallest one if several): green below 80 %, "
    "orange from 80 %, red above 100 %. Without such a budget only USD shows. With a provider, "
    "model, agent or feature selected, the spend is that selection's and the budget is still the "
    "total one."
)


def calendar_row() -> list[Any]:
    note_day = BUDGET_NOTE.format(window="day")
    return [
        spend_vs_budget(
            "Today",
            "Spend since midnight (dashboard time zone), calendar-aligned: the panel's time "
            "range is now/d, whatever the dashboard's." + COUNTED + note_day,
            total(COST),
            "day",
            time_from="now/d",
        ),
        spend_vs_budget(
            "This week",
            "Spend since Monday 00:00 (now/w). The week budget is for a rolling 7 days; at the "
            "end of the week the two compare directly." + BUDGET_NOTE.format(window="week"),
            total(COST),
            "week",
            time_from="now/w",
        ),
        spend_vs_budget(
            "This month",
            "Spend since the 1st of the month, 00:00 (now/M). The month budget is for a rolling "
            "30 days; at the end of the month the two compare directly."
            + BUDGET_NOTE.format(window="month"),
            total(COST),
            "month",
            time_from="now/M",
        ),
        spend_vs_budget(
            "Month-end projection",
            "Where this calendar month ends if the last 24 h burn rate goes on: spend since the "
            "1st + (spend of the last 24 h, recording rule "
            "provider_model_agent_feature:llm_cost_USD:increase24h) x days left in the month "
            "(counted in UTC)." + BUDGET_NOTE.format(window="month"),
            MONTH_END,
            "month",
            time_from="now/M",
        ),
        stat_panel(
            "Burn rate (USD per day)",
            "Spend of the last 24 h (recording rule "
            "provider_model_agent_feature:llm_cost_USD:increase24h): the rate the projections "
            "and LLMMonthlyBudgetProjectedOverrun assume.",
            [q(rolling("24h"), "last 24 h", instant=True)],
            no_value="no spend",
        ),
        stat_panel(
            "Selected time range",
            "Spend over the dashboard's time range and the average cost of one request "
            "(failed requests included)." + COUNTED,
            [
                q(total(COST), "spent", instant=True),
                q(f"{total(COST)} / {total(REQUESTS)}", "per request", instant=True),
            ],
            no_value="no spend",
            decimals=None,
        ).override_by_query("B", [*display_name("per request")]),
    ]


def rolling_row() -> list[Any]:
    def rolling_stat(title: str, rule: str, window: str, span: str) -> Any:
        return (
            spend_vs_budget(
                title,
                f"Spend of the last {span}, rolling (recording rule "
                f"provider_model_agent_feature:llm_cost_USD:increase{rule}), the window the "
                f"{window} budget alerts use (LLMBudgetWarning, LLM{window.capitalize()}ly"
                "BudgetExceeded)." + BUDGET_NOTE.format(window=window),
                rolling(rule),
                window,
            )
            .height(7)
            .span(3)
        )

    every_budget = bargauge_panel(
        "Every budget: share used (rolling)",
        "Every budget of alerts/budgets.yml, scoped ones included, as the alerts see it "
        "(recording rule budget:llm_cost_USD:ratio): day = last 24 h, week = last 7 d, month "
        "= last 30 d. Orange from 80 % (LLMBudgetWarning), red above 100 % (the *Exceeded "
        "alerts). Not filtered by the variables: a budget's scope is its own. Empty when no "
        "budget is defined or its slice has no spend.",
        [
            q(f"budget:llm_cost_USD:ratio{{{selector}}}", "{{window}} · " + legend, instant=True)
            for _, selector, legend in BUDGET_SCOPES
        ],
        unit="percentunit",
        thresholds=budget_steps(),
        max_value=1,
        w=6,
        h=7,
        no_value="no budget (alerts/budgets.yml)",
    )
    projected = bargauge_panel(
        "Month budgets: projected share in 7 days",
        "The rolling 30-day spend 7 days from now if the last 24 h burn rate goes on (spend "
        "of the last 23 d + 7 x spend of the last 24 h), against each month budget "
        "(recording rule budget:llm_cost_USD:projected_ratio). Above 100 % while the month "
        "budget is not yet exceeded, LLMMonthlyBudgetProjectedOverrun fires. Not filtered by "
        "the variables.",
        [
            q(f"budget:llm_cost_USD:projected_ratio{{{selector}}}", legend, instant=True)
            for _, selector, legend in BUDGET_SCOPES
        ],
        unit="percentunit",
        thresholds=budget_steps(),
        max_value=1,
        w=6,
        h=7,
        no_value="no month budget",
    )
    return [
        rolling_stat("Last 24 h", "24h", "day", "24 h"),
        rolling_stat("Last 7 days", "7d", "week", "7 days"),
        rolling_stat("Last 30 days", "30d", "month", "30 days"),
        spend_vs_budget(
            "Last 30 days, 7 days ahead",
            "The rolling 30-day spend 7 days from now at the last 24 h burn rate (spend of the "
            "last 23 d + 7 x spend of the last 24 h, as LLMMonthlyBudgetProjectedOverrun "
            "computes it) for the selection." + BUDGET_NOTE.format(window="month"),
            ROLLING_30D_AHEAD,
            "month",
        )
        .height(7)
        .span(3),
        every_budget,
        projected,
    ]


def over_time_row() -> list[Any]:
    by_pm = "gen_ai_provider_name, gen_ai_request_model"
    pm_legend = "{{gen_ai_provider_name}} {{gen_ai_request_model}}"
    return [
        timeseries_panel(
            "Cost per hour by provider and model",
            "USD spent in each hour (one bar per hour; over long ranges "
            "Grafana may widen the step and skip hours: use the per-day panel).",
            [q(total(COST, "1h", by=by_pm), pm_legend, interval="1h")],
            bars=True,
            stacked=True,
            interval="1h",
            h=9,
            no_value="no spend",
        ),
        timeseries_panel(
            "Cost per day by provider and model",
            "USD spent in each day (one bar per day; days are UTC days, "
            "Prometheus steps being aligned on the epoch).",
            [q(total(COST, "1d", by=by_pm), pm_legend, interval="1d")],
            bars=True,
            stacked=True,
            interval="1d",
            h=9,
            no_value="no spend",
        ),
        timeseries_panel(
            "Tokens per hour by token type",
            "Tokens in each hour by llm.token.type, a partition of the bill: input (normal "
            "rate), cache_read, cache_write (Anthropic cache creation), output, reasoning.",
            [q(total(TOKENS, "1h", by="llm_token_type"), "{{llm_token_type}}", interval="1h")],
            unit="short",
            bars=True,
            stacked=True,
            interval="1h",
            h=9,
            no_value="no tokens",
        ),
        timeseries_panel(
            "Tokens per hour by provider and model",
            "Tokens of every type in each hour (unpriced models included: they have tokens "
            "but no cost).",
            [q(total(TOKENS, "1h", by=by_pm), pm_legend, interval="1h")],
            unit="short",
            bars=True,
            stacked=True,
            interval="1h",
            h=9,
            no_value="no tokens",
        ),
    ]


def where_row() -> list[Any]:
    def pie(title: str, label: str, legend: str, description: str, *, fill: bool = False) -> Any:
        expr = total(COST, by=label)
        if fill:
            expr = unattributed(expr, label)
        return pie_panel(
            title,
            description + " Over the dashboard's time range.",
            [q(expr, legend, instant=True)],
            no_value="no spend",
        )

    return [
        pie("Cost by provider", "gen_ai_provider_name", "{{gen_ai_provider_name}}",
            "USD by gen_ai.provider.name."),
        pie("Cost by model", "gen_ai_request_model", "{{gen_ai_request_model}}",
            "USD by request model (the model asked for)."),
        pie("Cost by token type", "llm_token_type", "{{llm_token_type}}",
            "USD by llm.token.type: input, cache_read, cache_write, output, reasoning. A "
            "large input share with little cache_read means prompt caching is not working."),
        pie("Cost by agent", "gen_ai_agent_name", "{{gen_ai_agent_name}}",
            "USD by gen_ai.agent.name (usage_context(agent=...)); calls outside any "
            "usage_context show as (unattributed).", fill=True),
        pie("Cost by feature", "llm_feature", "{{llm_feature}}",
            "USD by llm.feature (usage_context(feature=...)); calls outside any "
            "usage_context show as (unattributed).", fill=True),
        bargauge_panel(
            "Tokens by type",
            "Tokens by llm.token.type over the dashboard's time range.",
            [q(total(TOKENS, by="llm_token_type"), "{{llm_token_type}}", instant=True)],
            unit="short",
            h=9,
            no_value="no tokens",
        ),
    ]  # fmt: skip


def top_table(label: str, attr: str, what: str) -> Any:
    matcher = f'{label}!=""'
    top = f"topk(10, {total(COST, '$__range', matcher, by=label)})"
    requests = total(REQUESTS, "$__range", matcher, by=label)
    cost = total(COST, "$__range", matcher, by=label)
    note = OPT_IN_NOTE.format(label=label, attr=attr)
    return table_panel(
        f"Top 10 {what}s by cost",
        f"The {what}s that cost the most over the dashboard's time range, with their requests "
        f"and average cost per request. {note}; without it this table is empty. Mind the "
        "cardinality: one series per value.",
        [
            q(top, instant=True, table_format=True),
            q(f"{requests} and on ({label}) {top}", instant=True, table_format=True),
            q(f"({cost} / {requests}) and on ({label}) {top}", instant=True, table_format=True),
        ],
        {
            label: (what.capitalize(), None),
            "Value #A": ("Cost", "currencyUSD"),
            "Value #B": ("Requests", "short"),
            "Value #C": ("Cost per request", "currencyUSD"),
        },
        h=9,
        no_value=f"No {label} label: opt in with OTEL_LLM_COST_METRIC_ATTRIBUTES={attr} "
        "(and keep_keys in the collector)",
        sort_by="Cost",
    )


def top_row() -> list[Any]:
    return [
        top_table("user_id", "user.id", "user"),
        top_table("session_id", "session.id", "session"),
    ]


def traffic_row() -> list[Any]:
    by_p = "gen_ai_provider_name"
    return [
        timeseries_panel(
            "Requests per second by provider",
            "LLM calls per second (one logical SDK call = one request, whatever its retries), "
            "failed ones included.",
            [q(f"sum by ({by_p}) (rate({sel(REQUESTS)}[$__rate_interval]))", "{{" + by_p + "}}")],
            unit="reqps",
            w=8,
            no_value="no requests",
        ),
        timeseries_panel(
            "Error rate by provider",
            "Share of requests with error.type set (HTTP status such as 429, or an exception "
            "name). The dashed line is the 5 % of LLMHighErrorRate (which looks at 10 min).",
            [q(share('error_type!=""', "$__rate_interval", by_p, "rate"), "{{" + by_p + "}}")],
            unit="percentunit",
            w=8,
            threshold=0.05,
            no_value="no requests",
        ),
        bargauge_panel(
            "Errors by provider and type",
            "Failed requests over the dashboard's time range by error.type: 429 = rate limit "
            "or quota, 401/403 = API key, 5xx = provider outage, an exception name = network "
            "or client side.",
            [
                q(
                    total(REQUESTS, "$__range", 'error_type!=""', by=f"{by_p}, error_type"),
                    "{{" + by_p + "}} {{error_type}}",
                    instant=True,
                )
            ],
            unit="short",
            thresholds=steps((None, EXCEEDED)),
            no_value="no errors",
        ),
        timeseries_panel(
            "Latency p50 / p95 by provider",
            "gen_ai.client.operation.duration, failed calls included (a timeout is a slow "
            "call). The dashed line is the 2 s of LLMSlowResponses (p95 per provider and model "
            "over 10 min).",
            [
                q(quantile(0.5, DURATION, by_p), "p50 {{" + by_p + "}}"),
                q(quantile(0.95, DURATION, by_p), "p95 {{" + by_p + "}}"),
            ],
            unit="s",
            w=8,
            threshold=2,
            no_value="no requests",
        ),
        timeseries_panel(
            "Time to first chunk p95 by provider",
            "gen_ai.client.operation.time_to_first_chunk: streamed calls only (what a user "
            "waits before text starts to appear). Dashed line at 2 s.",
            [q(quantile(0.95, FIRST_CHUNK, by_p), "p95 {{" + by_p + "}}")],
            unit="s",
            w=8,
            threshold=2,
            no_value="no streamed calls",
        ),
        timeseries_panel(
            "Cost per request p50 / p95 by provider and model",
            "llm.request.cost per call. This histogram carries provider, operation and request "
            "model only, so the agent and feature variables do not filter it. The dashed line "
            "is the 0.10 USD of LLMHighCostPerRequest (p95 over 30 min).",
            [
                q(
                    quantile(0.5, REQUEST_COST, f"{by_p}, gen_ai_request_model", base=PM),
                    "p50 {{" + by_p + "}} {{gen_ai_request_model}}",
                ),
                q(
                    quantile(0.95, REQUEST_COST, f"{by_p}, gen_ai_request_model", base=PM),
                    "p95 {{" + by_p + "}} {{gen_ai_request_model}}",
                ),
            ],
            w=8,
            threshold=0.1,
            no_value="no priced requests",
        ),
        timeseries_panel(
            "Tokens per request p50 / p95 by direction",
            "gen_ai.client.token.usage per call (semantic conventions: input includes cached "
            "tokens, output includes reasoning).",
            [
                q(quantile(0.5, TOKEN_USAGE, "gen_ai_token_type"), "p50 {{gen_ai_token_type}}"),
                q(quantile(0.95, TOKEN_USAGE, "gen_ai_token_type"), "p95 {{gen_ai_token_type}}"),
            ],
            unit="short",
            no_value="no tokens",
        ),
        bargauge_panel(
            "Average cost per request by model",
            "USD per request over the dashboard's time range (cost / requests, failed requests "
            "included), per provider and request model. Unpriced models have no cost and do "
            "not show.",
            [
                q(
                    f"{total(COST, by=f'{by_p}, gen_ai_request_model')} / "
                    f"{total(REQUESTS, by=f'{by_p}, gen_ai_request_model')}",
                    "{{" + by_p + "}} {{gen_ai_request_model}}",
                    instant=True,
                )
            ],
            w=12,
            no_value="no priced requests",
        ),
    ]


def quality_row() -> list[Any]:
    unpriced = 'llm_price_status="unpriced"'
    estimated = 'llm_usage_source="estimated"'
    flag = steps((None, OK), (1e-9, WARNING))
    by_model = "gen_ai_provider_name, gen_ai_request_model, gen_ai_response_model"
    # A series whose first sample already counts the request counts in full (gained()).
    unpriced_requests = f"{total(REQUESTS, '$__range', unpriced, by=by_model)} > 0"
    return [
        stat_panel(
            "Unpriced requests",
            "Share of requests whose model has no known price (llm.price.status = unpriced): "
            "their tokens are counted, their cost is not, so every USD figure misses them. Add "
            "the model to the price file (OTEL_LLM_COST_PRICES_FILE). Orange above 0.",
            [q(share(unpriced, "$__range"), "unpriced", instant=True)],
            unit="percentunit",
            thresholds=flag,
            no_value="no requests",
            w=4,
            h=8,
        ),
        stat_panel(
            "Estimated usage",
            "Share of requests whose tokens were counted locally because the API reported "
            "none (llm.usage.source = estimated: e.g. a stream closed early or cut). Their "
            "cost is an estimate. Orange above 0.",
            [q(share(estimated, "$__range"), "estimated", instant=True)],
            unit="percentunit",
            thresholds=flag,
            no_value="no requests",
            w=4,
            h=8,
        ),
        table_panel(
            "Unpriced models",
            "Models with unpriced requests over the dashboard's time range, with their tokens "
            "(the cost that is missing). Empty is good.",
            [
                q(unpriced_requests, instant=True, table_format=True),
                q(
                    f"{total(TOKENS, by=by_model)} and on ({by_model}) {unpriced_requests}",
                    instant=True,
                    table_format=True,
                ),
            ],
            {
                "gen_ai_provider_name": ("Provider", None),
                "gen_ai_request_model": ("Request model", None),
                "gen_ai_response_model": ("Response model", None),
                "Value #A": ("Requests", "short"),
                "Value #B": ("Tokens", "short"),
            },
            w=8,
            no_value="every request was priced",
            sort_by="Requests",
        ),
        timeseries_panel(
            "Unpriced and estimated share over time",
            "Share of requests unpriced (cost missing) and with estimated usage (cost "
            "approximate).",
            [
                q(share(unpriced, "$__rate_interval", fn="rate"), "unpriced"),
                q(share(estimated, "$__rate_interval", fn="rate"), "estimated"),
            ],
            unit="percentunit",
            w=8,
            no_value="no requests",
        ),
    ]


def build() -> dict[str, Any]:
    board = new_dashboard(
        UID,
        TITLE,
        "What LLM calls cost (otel-llm-cost): spend today, this week and this month against "
        "the budgets, where the money goes, and the health of the traffic behind it.",
        ["llm", "cost", "otel-llm-cost"],
    )
    for variable in standard_variables():
        board = board.with_variable(variable)
    board = board.link(
        link(
            "Drill-down: agents, users, sessions",
            DRILLDOWN_UID,
            "Per agent, feature, user and session, with the same filters",
        )
    )
    sections = [
        ("Spend and budgets (calendar: today, this week, this month)", calendar_row()),
        ("Rolling windows (what the budget alerts compare)", rolling_row()),
        ("Cost and tokens over time", over_time_row()),
        ("Where the money goes (dashboard time range)", where_row()),
        ("Top users and sessions (opt-in labels)", top_row()),
        ("Requests, errors and latency", traffic_row()),
        ("Data quality: unpriced and estimated", quality_row()),
    ]
    for title, panels in sections:
        board = board.with_row(row(title))
        for panel in panels:
            board = board.with_panel(panel)
    return to_json(board)
