"""The spend recording rules, the budget alerts and the cockpit's spend panels in the real pipeline:
two short-lived processes (``tests/apps/workload.py`` under ``opentelemetry-instrument``, one
after the other) -> the collector -> Debian's Prometheus, which evaluates
``alerts/llm-cost-rules.yml`` every second with a budget file written for the test.

Every series here is new to Prometheus, and each process its own series (its own
``service.instance.id``, hence ``instance``): their first samples hold much of the spend, all of
it for the series that got all their calls before the first export. The rules and the panels
must show exactly what the fake server's usage objects cost according to genai-prices
(``tests/e2e/plan.py``), to 1e-9 relative, and the budget alerts must fire. With
``increase()`` alone they showed a fraction of it, and the alerts stayed silent.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from otel_llm_cost.budgets import Budget
from tests.apps.workload import PLAN
from tests.e2e import plan
from tests.e2e.conftest import Prometheus
from tests.e2e.test_dashboard_queries import api
from tests.expected import close_to
from tests.test_dashboards import COCKPIT, load, panels, substitute

PROCESSES = 2


def value_at(prometheus: Prometheus, expr: str, at: float) -> float | None:
    """The single value of an instant query at ``at`` (None when empty)."""
    data, error = api(prometheus, "query", query=expr, time=str(at))
    assert data is not None, f"{error}\n  {expr}"
    if data["resultType"] == "scalar":
        return float(data["result"][1])
    result = data["result"]
    assert len(result) <= 1, (expr, result)
    return float(result[0]["value"][1]) if result else None


def firing(alerts: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """``(alertname, window, scope)`` of the budget alerts, with their state checked."""
    found = set()
    for alert in alerts:
        labels = alert["labels"]
        if "window" not in labels:
            continue
        assert alert["state"] == "firing", alert  # no `for:` on the budget alerts
        scope = ",".join(
            f"{k}={labels[k]}" for k in ("gen_ai_agent_name", "gen_ai_request_model") if k in labels
        )
        found.add((labels["alertname"], labels["window"], scope))
    return found


def test_spend_rules_alerts_and_panels_count_new_series_in_full(
    tmp_path: Path, fake_openai, start_collector, start_prometheus, run_workload
):
    used = plan.scripts(PROCESSES)
    server = fake_openai(used)
    collector = start_collector()
    prometheus = start_prometheus([collector])
    for index in range(PROCESSES):  # a batch job run twice
        run_workload(f"e2e-spend-{index}", server, collector).wait_exit(90)
    exp = plan.expected(server.exchanges, used)
    plan.assert_totals(prometheus, exp)  # every counter has its final value in Prometheus
    # Two processes, two instances: every series of the second one is new in every window.
    instances = prometheus.by("count by (instance) (llm_cost_USD_total)", "instance")
    assert len(instances) == PROCESSES, instances

    calls = range(len(used))
    planner = plan.cost_of(
        [i for i in calls if PLAN[i % len(PLAN)].agent == "planner"], server.exchanges, used
    )
    gpt = plan.cost_of(
        [i for i in calls if PLAN[i % len(PLAN)].model == "gpt-4o-mini"], server.exchanges, used
    )
    assert 0 < planner < exp.cost and 0 < gpt < exp.cost
    budgets = [
        Budget("day", exp.cost / 0.9),  # 90 %: LLMBudgetWarning
        Budget("week", exp.cost * 4),  # 25 %: silent
        Budget("month", exp.cost / 2),  # 200 %: LLMMonthlyBudgetExceeded and the warning
        Budget("day", planner * 2, ("gen_ai_agent_name", "planner")),  # 50 %: silent
        Budget("day", gpt / 1.25, ("gen_ai_request_model", "gpt-4o-mini")),  # 125 %: exceeded
    ]
    prometheus.load_budgets(budgets, tmp_path / "budgets.yml")

    # The rules evaluate every second: wait until the last of them holds the final spend.
    prometheus.wait_for(
        "llm_cost_USD:projected_increase30d",
        lambda v: v is not None and close_to(v, 8 * exp.cost),
        want=8 * exp.cost,
    )
    prometheus.wait_for(
        'budget:llm_cost_USD:ratio{window="day", gen_ai_agent_name="", gen_ai_request_model=""}',
        lambda v: v is not None and abs(v - 0.9) < 1e-9,
        want=0.9,
    )
    now = time.time()

    def exact(expr: str, expected: float) -> None:
        got = value_at(prometheus, expr, now)
        assert got is not None and close_to(got, expected), (expr, got, expected)

    # The recording rules, every window and level: exactly the spend.
    for window in ("1h", "24h", "7d", "30d"):
        exact(f"llm_cost_USD:increase{window}", exp.cost)
    for window in ("1h", "24h", "7d", "23d", "30d"):
        exact(f"sum(provider_model_agent_feature:llm_cost_USD:increase{window})", exp.cost)
    exact('agent:llm_cost_USD:increase24h{gen_ai_agent_name="planner"}', planner)
    exact('model:llm_cost_USD:increase7d{gen_ai_request_model="gpt-4o-mini"}', gpt)
    exact('sum(window:llm_cost_USD:increase{window="month"})', exp.cost)
    exact("llm_cost_USD:projected_increase30d", 8 * exp.cost)  # 23 d + 7 x 24 h
    ratios = {
        'window="day", gen_ai_agent_name="", gen_ai_request_model=""': 0.9,
        'window="week"': 0.25,
        'window="month"': 2.0,
        'window="day", gen_ai_agent_name="planner"': 0.5,
        'window="day", gen_ai_request_model="gpt-4o-mini"': 1.25,
    }
    for selector, share in ratios.items():
        got = value_at(prometheus, f"budget:llm_cost_USD:ratio{{{selector}}}", now)
        assert got is not None and abs(got - share) < 1e-9, (selector, got, share)

    # The budget alerts: over 80 % warns, over 100 % is exceeded, the rest stays silent.
    prometheus.wait_for("count(ALERTS{window!=''})", lambda v: v == 5, want=5)
    assert firing(prometheus.alerts()) == {
        ("LLMBudgetWarning", "day", ""),
        ("LLMBudgetWarning", "month", ""),
        ("LLMMonthlyBudgetExceeded", "month", ""),
        ("LLMBudgetWarning", "day", "gen_ai_request_model=gpt-4o-mini"),
        ("LLMDailyBudgetExceeded", "day", "gen_ai_request_model=gpt-4o-mini"),
    }

    # The cockpit's spend panels, variables at "All" and the range an hour (the calendar
    # panels' now/d, now/w, now/M hold the whole run as well): exactly the spend.
    by_title = {panel["title"]: panel for panel in panels(load(COCKPIT))}
    for title in (
        "Today",
        "This week",
        "This month",
        "Selected time range",
        "Burn rate (USD per day)",
        "Last 24 h",
        "Last 7 days",
        "Last 30 days",
    ):
        exact(substitute(by_title[title]["targets"][0]["expr"]), exp.cost)
    exact(substitute(by_title["Today"]["targets"][1]["expr"]), 0.9)  # of the day budget
    exact(substitute(by_title["Last 30 days, 7 days ahead"]["targets"][0]["expr"]), 8 * exp.cost)
    per_request = substitute(by_title["Selected time range"]["targets"][1]["expr"])
    exact(per_request, exp.cost / exp.calls)  # failed requests included
