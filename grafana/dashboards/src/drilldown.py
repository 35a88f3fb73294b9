"""The "LLM cost drill-down" dashboard (uid ``llm-cost-drilldown``): spend per agent, feature,
user and session, with the cockpit's filters plus ``user`` and ``session``.

``user_id`` and ``session_id`` are labels only when opted in (``OTEL_LLM_COST_METRIC_ATTRIBUTES``
in the app, ``keep_keys`` in the collector); without them the user and session rows are empty,
the rest works. Regenerate the JSON with ``python grafana/dashboards/generate.py``.
"""

from __future__ import annotations

from typing import Any

from dashkit import (
    F,
    bargauge_panel,
    budget_steps,
    gained,
    label_variable,
    link,
    new_dashboard,
    q,
    row,
    sel,
    standard_variables,
    stat_panel,
    table_panel,
    timeseries_panel,
    to_json,
    unattributed,
)

UID = "llm-cost-drilldown"
TITLE = "LLM cost drill-down: agents, features, users, sessions"
COCKPIT_UID = "llm-cost-cockpit"

COST = "llm_cost_USD_total"
TOKENS = "llm_tokens_total"
REQUESTS = "llm_requests_total"

#: The cockpit's filters plus the user and session variables. On a Prometheus without
#: ``user_id`` / ``session_id`` labels, "All" (``.*``) matches the absent label, so these
#: filters change nothing until a user or session is picked.
DF = F + ', user_id=~"$user", session_id=~"$session"'

OPT_IN = (
    "{label} is a label only when opted in: OTEL_LLM_COST_METRIC_ATTRIBUTES={attr} in the app "
    'and "{attr}" in keep_keys of collector/otel-collector-config.yaml. Without it this panel '
    "is empty. Mind the cardinality: one series per {what}, model, token type..."
)


def total(metric: str, window: str = "$__range", *matchers: str, by: str = "") -> str:
    """``sum [by (...)] (<what each series of metric{filters} gained in window>)``: a new
    series counts in full (see :func:`dashkit.gained`)."""
    agg = f"sum by ({by}) " if by else "sum"
    return f"{agg}({gained(sel(metric, *matchers, base=DF), window)})"


def rate(metric: str, *matchers: str, by: str = "") -> str:
    agg = f"sum by ({by}) " if by else "sum"
    return f"{agg}(rate({sel(metric, *matchers, base=DF)}[$__rate_interval]))"


AGENT = "gen_ai_agent_name"
FEATURE = "llm_feature"


# ------------------------------------------------------------------------------------------
# Agents and features
# ------------------------------------------------------------------------------------------


def slice_table(label: str, what: str) -> Any:
    """Spend, requests, cost per request, error share and tokens per agent (or feature)."""
    cost = total(COST, by=label)
    requests = total(REQUESTS, by=label)
    errors = total(REQUESTS, "$__range", 'error_type!=""', by=label)
    tokens = total(TOKENS, by=label)
    return table_panel(
        f"{what.capitalize()}s in the time range",
        f"Per {what} over the dashboard's time range: spend, requests, average cost per request "
        "(failed requests included), share of failed requests and tokens. Calls outside any "
        "usage_context show as (unattributed).",
        [
            q(unattributed(cost, label), instant=True, table_format=True),
            q(unattributed(requests, label), instant=True, table_format=True),
            q(unattributed(f"{cost} / {requests}", label), instant=True, table_format=True),
            q(
                unattributed(f"({errors} or 0 * {requests}) / {requests}", label),
                instant=True,
                table_format=True,
            ),
            q(unattributed(tokens, label), instant=True, table_format=True),
        ],
        {
            label: (what.capitalize(), None),
            "Value #A": ("Cost", "currencyUSD"),
            "Value #B": ("Requests", "short"),
            "Value #C": ("Cost per request", "currencyUSD"),
            "Value #D": ("Errors", "percentunit"),
            "Value #E": ("Tokens", "short"),
        },
        h=9,
        no_value="no requests",
        sort_by="Cost",
    )


def agents_row() -> list[Any]:
    agent_filter = f'{AGENT}=~"$agent"'
    rules = {
        "Value #A": ("Last 24 h", "agent:llm_cost_USD:increase24h"),
        "Value #B": ("Last 7 d", "agent:llm_cost_USD:increase7d"),
        "Value #C": ("Last 30 d", "agent:llm_cost_USD:increase30d"),
        "Value #D": ("30 d, 7 days ahead", "agent:llm_cost_USD:projected_increase30d"),
    }
    return [
        timeseries_panel(
            "Cost per hour by agent",
            "USD spent in each hour per gen_ai.agent.name.",
            [
                q(
                    unattributed(total(COST, "1h", by=AGENT), AGENT),
                    "{{gen_ai_agent_name}}",
                    interval="1h",
                )
            ],
            bars=True,
            stacked=True,
            interval="1h",
            h=9,
            no_value="no spend",
        ),
        slice_table(AGENT, "agent"),
        table_panel(
            "Agents, rolling windows",
            "Spend per agent over the rolling windows of the budget alerts (recording rules "
            "agent:llm_cost_USD:increase24h/7d/30d) and the 30-day spend 7 days from now at the "
            "last 24 h burn rate (agent:llm_cost_USD:projected_increase30d). These rules keep "
            "the agent label only: the provider, model, feature, user and session variables do "
            "not filter them.",
            [
                q(unattributed(f"{rule}{{{agent_filter}}}", AGENT), instant=True, table_format=True)
                for _, rule in rules.values()
            ],
            {
                AGENT: ("Agent", None),
                **{key: (header, "currencyUSD") for key, (header, _) in rules.items()},
            },
            no_value="no spend (or the rules of alerts/llm-cost-rules.yml are not loaded)",
            sort_by="Last 30 d",
        ),
        bargauge_panel(
            "Agent budgets: share used",
            "Budgets scoped to an agent (llm_budget_USD with gen_ai_agent_name, "
            "alerts/budgets.yml), rolling, as the alerts see them (budget:llm_cost_USD:ratio), "
            "and each month budget's projected share in 7 days "
            "(budget:llm_cost_USD:projected_ratio). Orange from 80 %, red above 100 %.",
            [
                q(
                    f'budget:llm_cost_USD:ratio{{{AGENT}!="", {agent_filter}}}',
                    "{{gen_ai_agent_name}} · {{window}}",
                    instant=True,
                ),
                q(
                    f'budget:llm_cost_USD:projected_ratio{{{AGENT}!="", {agent_filter}}}',
                    "{{gen_ai_agent_name}} · month, in 7 days",
                    instant=True,
                ),
            ],
            unit="percentunit",
            thresholds=budget_steps(),
            max_value=1,
            w=12,
            h=9,
            no_value="no agent budget (alerts/budgets.yml)",
        ),
        bargauge_panel(
            "Cost by agent and model",
            "USD per agent and request model over the dashboard's time range: which agent "
            "uses which model.",
            [
                q(
                    unattributed(total(COST, by=f"{AGENT}, gen_ai_request_model"), AGENT),
                    "{{gen_ai_agent_name}} · {{gen_ai_request_model}}",
                    instant=True,
                )
            ],
            w=12,
            h=9,
            no_value="no spend",
        ),
        timeseries_panel(
            "Average cost per request by agent",
            "USD per request over time (cost rate / request rate) per agent: a rise means "
            "longer prompts, a pricier model or more reasoning.",
            [
                q(
                    unattributed(f"{rate(COST, by=AGENT)} / {rate(REQUESTS, by=AGENT)}", AGENT),
                    "{{gen_ai_agent_name}}",
                )
            ],
            no_value="no requests",
        ),
        timeseries_panel(
            "Tokens per hour by agent and token type",
            "Tokens in each hour per agent and llm.token.type.",
            [
                q(
                    unattributed(total(TOKENS, "1h", by=f"{AGENT}, llm_token_type"), AGENT),
                    "{{gen_ai_agent_name}} {{llm_token_type}}",
                    interval="1h",
                )
            ],
            unit="short",
            bars=True,
            stacked=True,
            interval="1h",
            w=24,
            no_value="no tokens",
        ),
    ]


def features_row() -> list[Any]:
    return [
        timeseries_panel(
            "Cost per hour by feature",
            "USD spent in each hour per llm.feature.",
            [
                q(
                    unattributed(total(COST, "1h", by=FEATURE), FEATURE),
                    "{{llm_feature}}",
                    interval="1h",
                )
            ],
            bars=True,
            stacked=True,
            interval="1h",
            h=9,
            no_value="no spend",
        ),
        slice_table(FEATURE, "feature"),
        table_panel(
            "Feature x agent",
            "USD per feature and agent over the dashboard's time range.",
            [
                q(
                    unattributed(total(COST, by=f"{FEATURE}, {AGENT}"), FEATURE, AGENT),
                    instant=True,
                    table_format=True,
                ),
                q(
                    unattributed(total(REQUESTS, by=f"{FEATURE}, {AGENT}"), FEATURE, AGENT),
                    instant=True,
                    table_format=True,
                ),
            ],
            {
                FEATURE: ("Feature", None),
                AGENT: ("Agent", None),
                "Value #A": ("Cost", "currencyUSD"),
                "Value #B": ("Requests", "short"),
            },
            w=24,
            no_value="no spend",
            sort_by="Cost",
        ),
    ]


# ------------------------------------------------------------------------------------------
# Users and sessions (opt-in labels)
# ------------------------------------------------------------------------------------------


def opt_in_row(label: str, attr: str, what: str) -> list[Any]:
    present = f'{label}!=""'
    note = OPT_IN.format(label=label, attr=attr, what=what)
    per = total(COST, "$__range", present, by=label)
    requests = total(REQUESTS, "$__range", present, by=label)
    tokens = total(TOKENS, "$__range", present, by=label)
    top = f"topk(20, {per})"
    return [
        stat_panel(
            f"{what.capitalize()}s with spend",
            f"Distinct {what}s with spend over the dashboard's time range. {note}",
            [q(f"count({per} > 0)", what + "s", instant=True)],
            unit="short",
            decimals=0,
            w=6,
            no_value=f"no {label} label",
        ),
        stat_panel(
            f"Spend per {what}",
            f"Median, 90th percentile and largest spend of one {what} over the dashboard's "
            f"time range. {note}",
            [
                q(f"quantile(0.5, {per})", "median", instant=True),
                q(f"quantile(0.9, {per})", "p90", instant=True),
                q(f"max({per})", "max", instant=True),
            ],
            w=10,
            no_value=f"no {label} label",
        ),
        stat_panel(
            f"Top {what}'s share of spend",
            f"The share of the selection's spend that its most expensive {what} accounts for. "
            f"{note}",
            [q(f"max({per}) / {total(COST)}", "top " + what, instant=True)],
            unit="percentunit",
            decimals=1,
            w=8,
            no_value=f"no {label} label",
        ),
        table_panel(
            f"Top 20 {what}s by cost",
            f"The {what}s that cost the most over the dashboard's time range, with their "
            f"requests, average cost per request and tokens. {note}",
            [
                q(top, instant=True, table_format=True),
                q(f"{requests} and on ({label}) {top}", instant=True, table_format=True),
                q(
                    f"({per} / {requests}) and on ({label}) {top}",
                    instant=True,
                    table_format=True,
                ),
                q(f"{tokens} and on ({label}) {top}", instant=True, table_format=True),
            ],
            {
                label: (what.capitalize(), None),
                "Value #A": ("Cost", "currencyUSD"),
                "Value #B": ("Requests", "short"),
                "Value #C": ("Cost per request", "currencyUSD"),
                "Value #D": ("Tokens", "short"),
            },
            h=10,
            no_value=f"No {label} label: opt in with OTEL_LLM_COST_METRIC_ATTRIBUTES={attr}",
            sort_by="Cost",
        ),
        timeseries_panel(
            f"Cost per hour, top 10 {what}s",
            f"USD in each hour of the 10 most expensive {what}s of that hour. {note}",
            [
                q(
                    f"topk(10, {total(COST, '1h', present, by=label)})",
                    "{{" + label + "}}",
                    interval="1h",
                )
            ],
            bars=True,
            stacked=True,
            interval="1h",
            h=10,
            no_value=f"no {label} label",
        ),
    ]


def build() -> dict[str, Any]:
    board = new_dashboard(
        UID,
        TITLE,
        "Where LLM spend comes from, per agent, feature, user and session (otel-llm-cost).",
        ["llm", "cost", "otel-llm-cost"],
    )
    variables = [
        *standard_variables(),
        label_variable(
            "user",
            "user_id",
            "User",
            COST,
            F,
            description="user.id: a label only when opted in (OTEL_LLM_COST_METRIC_ATTRIBUTES)",
        ),
        label_variable(
            "session",
            "session_id",
            "Session",
            COST,
            F + ', user_id=~"$user"',
            description="session.id: a label only when opted in (OTEL_LLM_COST_METRIC_ATTRIBUTES)",
        ),
    ]
    for variable in variables:
        board = board.with_variable(variable)
    board = board.link(
        link("LLM cost cockpit", COCKPIT_UID, "Spend against budgets, with the same filters")
    )
    sections = [
        ("Agents", agents_row()),
        ("Features", features_row()),
        ("Users (needs the user.id opt-in)", opt_in_row("user_id", "user.id", "user")),
        (
            "Sessions (needs the session.id opt-in)",
            opt_in_row("session_id", "session.id", "session"),
        ),
    ]
    for title, panels in sections:
        board = board.with_row(row(title))
        for panel in panels:
            board = board.with_panel(panel)
    return to_json(board)
