"""Checks of the Prometheus alert rules, budgets and Alertmanager example in alerts/.

Runs promtool and amtool when they are on PATH (Debian/Ubuntu: packages
`prometheus` and `prometheus-alertmanager`; or the release tarballs) and skips
those tests otherwise. The YAML checks need only PyYAML.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from otel_llm_cost.report import GROUP, Window, spend_query

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "alerts"
RULES = ALERTS / "llm-cost-rules.yml"
BUDGETS = ALERTS / "budgets.yml"
ALERTMANAGER = ALERTS / "alertmanager.yml"
RULE_TESTS = sorted((ALERTS / "tests").glob("*.yml"))

# The alert names of the telemetry contract (section "Alert rules and budgets").
CONTRACT_ALERTS = [
    "LLMBudgetWarning",
    "LLMDailyBudgetExceeded",
    "LLMWeeklyBudgetExceeded",
    "LLMMonthlyBudgetExceeded",
    "LLMMonthlyBudgetProjectedOverrun",
    "LLMHighCostPerRequest",
    "LLMHighErrorRate",
    "LLMSlowResponses",
    "LLMUnpricedModel",
    "LLMTelemetryAbsent",
]
BUDGET_WINDOWS = {"day", "week", "month"}
BUDGET_SCOPE_LABELS = {
    "gen_ai_agent_name",
    "llm_feature",
    "gen_ai_provider_name",
    "gen_ai_request_model",
}

PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),  # in CI a missing tool is a failure
    reason="promtool not on PATH (install Prometheus, e.g. apt-get install prometheus)",
)
needs_amtool = pytest.mark.skipif(
    AMTOOL is None and not os.environ.get("CI"),
    reason="amtool not on PATH (apt-get install prometheus-alertmanager)",
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )


def assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, (
        f"{' '.join(proc.args)} exited with {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )


def load(path: Path) -> dict:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def rules(path: Path) -> list[dict]:
    return [rule for group in load(path)["groups"] for rule in group["rules"]]


def recorded(name: str) -> dict:
    (rule,) = [rule for rule in rules(RULES) if rule.get("record") == name]
    return rule


def alerts() -> dict[str, dict]:
    found: dict[str, dict] = {}
    for rule in rules(RULES):
        if "alert" in rule:
            assert rule["alert"] not in found, f"alert {rule['alert']} defined twice"
            found[rule["alert"]] = rule
    return found


# --- promtool ---------------------------------------------------------------


@needs_promtool
@pytest.mark.parametrize("path", [RULES, BUDGETS], ids=lambda p: p.name)
def test_promtool_check_rules(path: Path) -> None:
    assert_ok(run(PROMTOOL, "check", "rules", str(path)))


def test_rule_tests_exist() -> None:
    assert RULE_TESTS, "no promtool test files in alerts/tests/"


@needs_promtool
@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_test_rules(path: Path) -> None:
    assert_ok(run(PROMTOOL, "test", "rules", str(path)))


# --- amtool -----------------------------------------------------------------


@needs_amtool
def test_amtool_check_config() -> None:
    assert_ok(run(AMTOOL, "check-config", str(ALERTMANAGER)))


@needs_amtool
@pytest.mark.parametrize(
    ("severity", "receiver"), [("critical", "llm-pager"), ("warning", "llm-chat")]
)
def test_alertmanager_routes_by_severity(severity: str, receiver: str) -> None:
    assert_ok(
        run(
            AMTOOL,
            "config",
            "routes",
            "test",
            f"--config.file={ALERTMANAGER}",
            f"--verify.receivers={receiver}",
            f"severity={severity}",
            "alertname=LLMDailyBudgetExceeded",
        )
    )


# --- YAML checks ------------------------------------------------------------


@pytest.mark.parametrize("name", CONTRACT_ALERTS)
def test_contract_alert_defined(name: str) -> None:
    rule = alerts().get(name)
    assert rule is not None, f"alert {name} missing from {RULES.relative_to(ROOT)}"
    assert rule.get("labels", {}).get("severity") in {"warning", "critical"}, name
    annotations = rule.get("annotations", {})
    for key in ("summary", "description"):
        assert str(annotations.get(key, "")).strip(), f"{name} has no {key} annotation"


def test_alerts_have_severity_and_annotations() -> None:
    """Also any alert added later, beyond the contract list."""
    for name, rule in alerts().items():
        assert rule.get("labels", {}).get("severity") in {"warning", "critical"}, name
        assert {"summary", "description"} <= set(rule.get("annotations", {})), name


def test_recording_rule_names_follow_convention() -> None:
    for rule in rules(RULES):
        if "record" in rule:
            assert re.fullmatch(r"([a-z_]+:)?[A-Za-z0-9_]+:[a-z0-9_]+", rule["record"]), rule[
                "record"
            ]


@pytest.mark.parametrize("name", CONTRACT_ALERTS)
def test_every_alert_has_a_firing_test(name: str) -> None:
    """Each contract alert is expected to fire in at least one promtool test case."""
    for path in RULE_TESTS:
        for case in load(path).get("tests", []):
            for check in case.get("alert_rule_test", []):
                if check.get("alertname") == name and check.get("exp_alerts"):
                    return
    pytest.fail(f"no promtool test in alerts/tests/ expects {name} to fire")


def test_budgets_file_format() -> None:
    """The simple format that users edit and `otel-llm-cost budgets` generates."""
    groups = load(BUDGETS)["groups"]
    assert len(groups) == 1 and groups[0]["name"] == "llm-budgets"
    budgets = groups[0]["rules"]
    assert budgets, "no budget in budgets.yml"
    seen = set()
    for rule in budgets:
        assert rule.get("record") == "llm_budget_USD", rule
        assert re.fullmatch(r"vector\(\s*\d+(\.\d+)?\s*\)", str(rule.get("expr", "")).strip()), rule
        labels = rule.get("labels", {})
        assert labels.get("window") in BUDGET_WINDOWS, rule
        scopes = BUDGET_SCOPE_LABELS & set(labels)
        assert len(scopes) <= 1, f"a budget may have at most one scope label: {rule}"
        assert not {"severity", "alertname"} & set(labels), rule
        key = tuple(sorted(labels.items()))
        assert key not in seen, f"duplicate budget {labels}"
        seen.add(key)


# --- spend: the same PromQL as `otel-llm-cost report` -------------------------

#: The windows of the base spend rules, in seconds.
SPEND_WINDOWS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "23d": 23 * 86400, "30d": 30 * 86400}


def squeezed(expr: str) -> str:
    return re.sub(r"\s+", "", expr)


@pytest.mark.parametrize("window", SPEND_WINDOWS)
def test_spend_rules_are_the_reports_promql(window: str) -> None:
    """The base spend rules count what `otel-llm-cost report` counts (new series in full,
    growth of the others, increase() across a reset): report.spend_query's PromQL, the window
    written as the rule writes it. The promtool tests hold both to the expected values."""
    seconds = SPEND_WINDOWS[window]
    query = spend_query("llm_cost_USD_total", Window(window, 0, seconds), GROUP, first_in_full=True)
    expected = query.replace(f"{seconds * 1000}ms", window)
    rule = recorded(f"provider_model_agent_feature:llm_cost_USD:increase{window}")
    assert squeezed(rule["expr"]) == squeezed(expected)


def test_only_the_base_spend_rules_read_the_cost_counter() -> None:
    """Every other spend rule is summed from provider_model_agent_feature:llm_cost_USD:*, so
    that the 30 days of raw samples are read once per window."""
    readers = {r["record"] for r in rules(RULES) if "llm_cost_USD_total" in str(r.get("expr", ""))}
    assert readers == {
        f"provider_model_agent_feature:llm_cost_USD:increase{window}" for window in SPEND_WINDOWS
    }
