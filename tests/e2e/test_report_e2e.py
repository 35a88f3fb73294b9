"""``otel-llm-cost report`` against the real pipeline: the workload under
``opentelemetry-instrument`` -> the collector -> Debian's Prometheus, which evaluates the
repository's alert rules (``alerts/llm-cost-rules.yml``) and a budget file written for the test.

The totals the command prints (``--json``) must be what the fake server's usage objects cost
according to genai-prices (``tests/e2e/plan.py``), to 1e-9 relative, in every window; budgets set
around that spend must come out ``ok``, ``warning`` and ``exceeded`` (exit status 3).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from otel_llm_cost.budgets import Budget
from tests.apps.workload import PLAN
from tests.e2e import plan
from tests.e2e.conftest import RULE_FILES, Prometheus
from tests.e2e.plan import cost_of
from tests.expected import close_to

RULES = RULE_FILES[0]
assert RULES.name == "llm-cost-rules.yml"


def report(prometheus: Prometheus, *args: str) -> subprocess.CompletedProcess[str]:
    command = shutil.which("otel-llm-cost", path=os.path.dirname(sys.executable))
    assert command, "the package's console script is installed in the virtualenv"
    return subprocess.run(
        [command, "report", "--prometheus", prometheus.url, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def spent_in(start: str, started: float, finished: float, total: float) -> float | None:
    """What a window from ``start`` holds: all of the workload's spend when it starts before the
    workload, nothing when after; None (not checked) when a calendar boundary fell mid-run."""
    instant = datetime.fromisoformat(start).timestamp()
    if instant <= started:
        return total
    if instant >= finished:
        return 0.0
    return None


def test_report_totals_budgets_and_exit_status(
    tmp_path: Path, fake_openai, start_collector, start_prometheus, run_workload
):
    used = plan.scripts()
    server = fake_openai(used)
    started = time.time()
    collector = start_collector()
    prometheus = start_prometheus([collector])

    # Before any call: a message, not a traceback.
    empty = report(prometheus)
    assert empty.returncode == 1, empty.stdout + empty.stderr
    assert empty.stdout == ""
    assert empty.stderr.startswith(
        f"otel-llm-cost report: no llm_* series yet in Prometheus at {prometheus.url}"
    ), empty.stderr

    app = run_workload("e2e-report", server, collector)
    app.wait_exit(90)
    exp = plan.expected(server.exchanges, used)
    plan.assert_totals(prometheus, exp)  # every counter has its final value in Prometheus
    finished = time.time()

    calls = range(len(PLAN))
    planner = cost_of([i for i in calls if PLAN[i].agent == "planner"], server.exchanges, used)
    gpt = cost_of([i for i in calls if PLAN[i].model == "gpt-4o-mini"], server.exchanges, used)
    assert 0 < planner < exp.cost and 0 < gpt < exp.cost
    budgets = [
        Budget("day", exp.cost / 0.9),  # 90 %: warning
        Budget("week", exp.cost * 4),  # 25 %: ok
        Budget("month", exp.cost / 2),  # 200 %: exceeded
        Budget("day", planner * 2, ("gen_ai_agent_name", "planner")),  # 50 %: ok
        Budget("week", gpt / 0.85, ("gen_ai_request_model", "gpt-4o-mini")),  # 85 %: warning
        Budget("day", 1.0, ("gen_ai_agent_name", "nobody")),  # no spend: ok
    ]
    prometheus.load_budgets(budgets, tmp_path / "budgets.yml")
    # The alert rules have joined budgets and spend (the agent "nobody" has no spend series).
    prometheus.wait_for("count(budget:llm_cost_USD:ratio)", lambda v: v == 5, want=5)
    prometheus.wait_for(  # and the rules have evaluated the final spend
        'budget:llm_cost_USD:ratio{window="month"}',
        lambda v: v is not None and abs(v - 2) < 1e-9,
        want=2.0,
    )

    run = report(prometheus, "--json", "--range", "1h")
    assert run.returncode == 3, run.stdout + run.stderr  # the month budget is exceeded
    assert run.stderr == ""
    got = json.loads(run.stdout)
    assert got["prometheus"] == prometheus.url
    assert got["status"] == "exceeded"

    def exact(value: float, expected: float) -> bool:
        return close_to(value, expected) if expected else value == 0

    # Calendar windows (UTC): everything, or nothing when the period began after the workload.
    for row in got["calendar"]:
        want = spent_in(row["start"], started, finished, exp.cost)
        assert want is None or exact(row["spent_usd"], want), (row, want)

    # Rolling windows against every budget.
    rolling = {(r["window"], json.dumps(r["scope"], sort_keys=True)): r for r in got["rolling"]}
    expected_rows = {
        ("day", "{}"): (exp.cost, 0.9, "warning"),
        ("day", '{"gen_ai_agent_name": "nobody"}'): (0.0, 0.0, "ok"),
        ("day", '{"gen_ai_agent_name": "planner"}'): (planner, 0.5, "ok"),
        ("week", "{}"): (exp.cost, 0.25, "ok"),
        ("week", '{"gen_ai_request_model": "gpt-4o-mini"}'): (gpt, 0.85, "warning"),
        ("month", "{}"): (exp.cost, 2.0, "exceeded"),
    }
    assert set(rolling) == set(expected_rows)
    for key, (spent, share, status) in expected_rows.items():
        row = rolling[key]
        assert exact(row["spent_usd"], spent), (key, row["spent_usd"], spent)
        assert abs(row["ratio"] - share) < 1e-9, (key, row["ratio"], share)
        assert row["status"] == status, (key, row)
    # The alerts' own view is there for every budget with spend (rules loaded), and they count
    # alike: the same ratio (the rules count a new series' first sample too).
    for key, (spent, share, _) in expected_rows.items():
        alert_ratio = rolling[key]["alert_ratio"]
        if spent:
            assert alert_ratio is not None and abs(alert_ratio - share) < 1e-9, (key, alert_ratio)
        else:
            assert alert_ratio is None, (key, alert_ratio)

    # LLMMonthlyBudgetProjectedOverrun's projection: the last 23 d + 7 x the last 24 h, both
    # holding the whole run; no overrun flagged, the month budget being exceeded already.
    (projected,) = got["projected_30d"]
    assert close_to(projected["projected_usd"], 8 * exp.cost)
    assert projected["status"] == "exceeded" and projected["overrun"] is False

    # The range (last hour): requests, tokens, shares, top models and agents.
    section = got["range"]
    assert close_to(section["cost_usd"], exp.cost)
    assert section["requests"] == exp.calls
    assert section["tokens"] == dict(exp.tokens)
    failed = sum(n for (error, _, _), n in exp.requests.items() if error)
    unpriced = sum(n for (_, price, _), n in exp.requests.items() if price == "unpriced")
    assert (section["failed_requests"], section["unpriced_requests"]) == (failed, unpriced)
    assert (failed, unpriced) == (1, 1)
    assert section["unpriced_share"] == unpriced / exp.calls
    assert section["estimated_share"] == 0
    models = {(m["provider"], m["model"]): m for m in section["top_models"]}
    assert set(models) == {("openai", call.model) for call in PLAN}
    for (_, model), row in models.items():
        want = cost_of([i for i in calls if PLAN[i].model == model], server.exchanges, used)
        assert exact(row["cost_usd"], want), (model, row, want)
        assert row["requests"] == sum(1 for call in PLAN if call.model == model)
    assert models["openai", "zz-e2e-unpriced-model"]["cost_usd"] == 0
    agents = {a["agent"]: a for a in section["top_agents"]}
    assert set(agents) == {call.agent for call in PLAN}
    assert close_to(agents["planner"]["cost_usd"], planner)
    assert section["top_models"][0]["cost_usd"] == max(m["cost_usd"] for m in models.values())

    # The same for a terminal (the month's range by default), with the warning.
    text = report(prometheus, "--tz", "Europe/Paris", "--top", "3")
    assert text.returncode == 3, text.stdout + text.stderr
    print(text.stdout)  # shown with pytest -s: an example of the output
    assert re.search(r"^  24 h +all calls +\S+ +\S+ +90\.0 % +warning\b", text.stdout, re.M)
    assert "Top models by cost (this month)" in text.stdout
    assert "status: exceeded" in text.stdout
