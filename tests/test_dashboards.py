"""Checks of the Grafana dashboards (grafana/dashboards/*.json) and their provisioning.

- the committed JSON is exactly what ``grafana/dashboards/generate.py`` makes of the sources
  (needs the Grafana Foundation SDK, Python >= 3.11; skipped without it);
- uid, title and template variables of the telemetry contract, ``${datasource}`` everywhere,
  no ``__inputs`` / ``${DS_...}`` (the files are provisioned as they are);
- every query names only the contract's series and labels, the recording rules of alerts/, and
  PromQL functions of an allow-list, and filters raw series by the template variables;
- every query is valid PromQL: ``promtool check rules`` on a rule file made of the queries (the
  template variables substituted), when promtool is on PATH.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_llm_cost.report import Window, spend_query

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "grafana" / "dashboards"
PROVISIONING = ROOT / "grafana" / "provisioning"
GENERATE = DASHBOARDS / "generate.py"
RULE_FILES = (ROOT / "alerts" / "llm-cost-rules.yml", ROOT / "alerts" / "budgets.yml")
COCKPIT = DASHBOARDS / "llm-cost-cockpit.json"
DRILLDOWN = DASHBOARDS / "llm-cost-drilldown.json"
FILES = (COCKPIT, DRILLDOWN)

# ------------------------------------------------------------------------------------------
# The telemetry contract (CONTRACT.md, "Metrics"): series and the labels each one carries.
# ------------------------------------------------------------------------------------------

COMMON = {
    "gen_ai_provider_name",
    "gen_ai_operation_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "gen_ai_agent_name",
    "llm_feature",
    # Attribution promoted to labels only when opted in (OTEL_LLM_COST_METRIC_ATTRIBUTES).
    "user_id",
    "session_id",
}
REQUEST_COST_LABELS = {"gen_ai_provider_name", "gen_ai_operation_name", "gen_ai_request_model"}
SCOPE_LABELS = {"gen_ai_agent_name", "llm_feature", "gen_ai_provider_name", "gen_ai_request_model"}


def _histogram(base: str, labels: set[str]) -> dict[str, set[str]]:
    return {f"{base}_bucket": labels | {"le"}, f"{base}_sum": labels, f"{base}_count": labels}


SERIES: dict[str, set[str]] = {
    "llm_cost_USD_total": COMMON | {"llm_token_type"},
    "llm_tokens_total": COMMON | {"llm_token_type"},
    "llm_requests_total": COMMON | {"error_type", "llm_usage_source", "llm_price_status"},
    **_histogram("llm_request_cost_USD", REQUEST_COST_LABELS),
    **_histogram("gen_ai_client_token_usage", COMMON | {"gen_ai_token_type"}),
    **_histogram("gen_ai_client_operation_duration_seconds", COMMON | {"error_type"}),
    **_histogram("gen_ai_client_operation_time_to_first_chunk_seconds", COMMON),
    "llm_budget_USD": {"window"} | SCOPE_LABELS,
}
LABELS = set().union(*SERIES.values())

#: PromQL functions and aggregations the dashboards may use.
FUNCTIONS = {
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "topk",
    "quantile",
    "increase",
    "rate",
    "last_over_time",
    "resets",
    "histogram_quantile",
    "label_replace",
    "time",
    "days_in_month",
    "day_of_month",
}
KEYWORDS = {"and", "or", "unless", "bool", "offset"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}

#: What Grafana puts in place of its own variables, for promtool and for the e2e queries.
GRAFANA_VARIABLES = {"__range": "1h", "__rate_interval": "5m", "__interval": "1m"}


def recording_rules() -> set[str]:
    names = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            names.update(rule["record"] for rule in group["rules"] if "record" in rule)
    return names


# ------------------------------------------------------------------------------------------
# Reading the dashboards
# ------------------------------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows and the panels of collapsed rows included."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(board: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """``(panel, target)`` for every query of the dashboard."""
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield panel, target


def substitute(expr: str) -> str:
    """``expr`` with Grafana's variables replaced: durations for ``$__range`` & co, ``.*``
    (the "All" of every variable here) for the template variables."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name.startswith("__"):
            return GRAFANA_VARIABLES[name]
        return ".*"

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


# ------------------------------------------------------------------------------------------
# A rough PromQL reader: enough to list the names a query uses.
# ------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?:ms|[smhdwy])?(?:\d+(?:ms|[smhdwy]))*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^=<>(){}\[\],])
  | (?P<space>\s+)
    """,
    re.VERBOSE,
)


def tokens(expr: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        assert match, f"cannot read {expr[pos : pos + 30]!r} in {expr!r}"
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            out.append((kind, match.group()))
        pos = match.end()
    return out


def names(expr: str) -> tuple[set[str], set[str], set[str], list[tuple[str, set[str]]]]:
    """``(metrics, labels, functions, selectors)`` of a (substituted) PromQL expression;
    ``selectors`` lists each metric with the labels its ``{...}`` matches on."""
    toks = tokens(expr)
    metrics: set[str] = set()
    labels: set[str] = set()
    functions: set[str] = set()
    selectors: list[tuple[str, set[str]]] = []
    matchers: set[str] | None = None  # inside {...}: the labels matched on
    label_list = False  # inside the (...) of by / without / on / ignoring / group_*
    brackets = 0  # inside [...]: a range or subquery duration
    previous = ""  # the token before this one
    for i, (kind, text) in enumerate(toks):
        following = toks[i + 1][1] if i + 1 < len(toks) else ""
        before, previous = previous, text
        if kind == "op" and text in "[]":
            brackets += 1 if text == "[" else -1
        elif brackets:
            continue
        elif text == "{":
            matchers = set()
            selectors.append((before if before in metrics else "", matchers))
        elif text == "}":
            matchers = None
        elif matchers is not None:
            if kind == "ident" and following in ("=", "!=", "=~", "!~"):
                matchers.add(text)
                labels.add(text)
        elif label_list:
            if text == ")":
                label_list = False
            elif kind == "ident":
                labels.add(text)
        elif kind != "ident" or text in KEYWORDS:
            continue
        elif text in GROUPING:
            label_list = following == "("
        elif following in ("(", "by", "without"):
            functions.add(text)  # a function, or an aggregation with its grouping first
        else:
            metrics.add(text)
            if following != "{":
                selectors.append((text, set()))
    return metrics, labels, functions, selectors


def test_reader_on_a_known_query() -> None:
    expr = (
        'label_replace(sum by (gen_ai_agent_name) (increase(llm_cost_USD_total{llm_feature=~".*",'
        ' error_type!=""}[1h] offset 5m)), "x", "(y)", "z", "") / on () group_left () '
        'min(llm_budget_USD{window="day"}) > bool 1e-09 or vector(0)'
    )
    metrics, labels, functions, selectors = names(expr)
    assert metrics == {"llm_cost_USD_total", "llm_budget_USD"}
    assert labels == {"gen_ai_agent_name", "llm_feature", "error_type", "window"}
    assert functions == {"label_replace", "sum", "increase", "min", "vector"}
    assert selectors == [
        ("llm_cost_USD_total", {"llm_feature", "error_type"}),
        ("llm_budget_USD", {"window"}),
    ]


# ------------------------------------------------------------------------------------------
# Generation
# ------------------------------------------------------------------------------------------


def test_committed_json_is_what_the_sources_generate() -> None:
    pytest.importorskip("grafana_foundation_sdk", reason="Grafana Foundation SDK not installed")
    spec = importlib.util.spec_from_file_location("generate_dashboards", GENERATE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.render()
    assert set(rendered) == {path.name for path in FILES}
    for path in FILES:
        committed = path.read_text(encoding="utf-8")
        assert rendered[path.name] == committed, (
            f"{path.name} is out of date: run python grafana/dashboards/generate.py"
        )
    # Twice the same bytes (no set ordering or time stamps leaking into the output).
    assert module.render() == rendered


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_json_is_commit_ready(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and not text.endswith("\n\n")
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------------------------------
# Structure
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_import_inputs(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "__inputs" not in text and "${DS_" not in text and "__requires" not in text


def test_provisioning_has_no_import_inputs() -> None:
    for path in PROVISIONING.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert "${DS_" not in text and "__inputs" not in text, path


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_panel_ids_are_unique(path: Path) -> None:
    ids = [panel["id"] for panel in panels(load(path))]
    assert len(ids) == len(set(ids)), ids
    assert all(isinstance(i, int) and i > 0 for i in ids)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_panel_and_query_reads_the_datasource_variable(path: Path) -> None:
    for panel in panels(load(path)):
        assert panel.get("datasource") == {"type": "prometheus", "uid": "${datasource}"}, panel[
            "title"
        ]
        for target in panel.get("targets", []):
            assert target.get("datasource") == panel["datasource"], (panel["title"], target)
    variables = load(path)["templating"]["list"]
    for variable in variables:
        if variable["type"] == "query":
            assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_panels_fit_the_grid_without_overlap(path: Path) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in load(path)["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_panel_has_a_title_a_description_and_queries(path: Path) -> None:
    for panel in panels(load(path)):
        assert panel.get("title")
        if panel["type"] != "row":
            assert len(panel.get("description", "")) > 30, panel["title"]
            assert panel.get("targets"), panel["title"]
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)) and all(refs), panel["title"]


def test_cockpit_uid_title_and_variables() -> None:
    board = load(COCKPIT)
    assert board["uid"] == "llm-cost-cockpit"
    assert board["title"] == "LLM cost cockpit"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables) == ["datasource", "provider", "model", "agent", "feature"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    check_label_variables(variables)


def test_drilldown_uid_and_variables() -> None:
    board = load(DRILLDOWN)
    assert board["uid"] == "llm-cost-drilldown"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables) == [
        "datasource",
        "provider",
        "model",
        "agent",
        "feature",
        "user",
        "session",
    ]
    assert variables["datasource"]["type"] == "datasource"
    check_label_variables(variables)


def check_label_variables(variables: dict[str, dict[str, Any]]) -> None:
    expected = {
        "provider": "gen_ai_provider_name",
        "model": "gen_ai_request_model",
        "agent": "gen_ai_agent_name",
        "feature": "llm_feature",
        "user": "user_id",
        "session": "session_id",
    }
    for name, variable in variables.items():
        if name == "datasource":
            continue
        assert variable["type"] == "query", name
        assert variable["multi"] is True and variable["includeAll"] is True, name
        assert variable["allValue"] == ".*", name
        match = re.fullmatch(r"label_values\((\w+)(\{.*\})?, (\w+)\)", variable["query"])
        assert match, variable["query"]
        assert match.group(1) in ("llm_requests_total", "llm_cost_USD_total"), name
        assert match.group(3) == expected[name], name
        if match.group(2):
            _, labels, _, _ = names(substitute(match.group(1) + match.group(2)))
            assert labels <= SCOPE_LABELS | {"user_id"}, (name, labels)


def test_dashboards_link_to_each_other() -> None:
    cockpit, drilldown = load(COCKPIT), load(DRILLDOWN)
    assert any(link.get("url") == "/d/llm-cost-drilldown" for link in cockpit["links"])
    assert any(link.get("url") == "/d/llm-cost-cockpit" for link in drilldown["links"])
    for link in cockpit["links"] + drilldown["links"]:
        assert link["includeVars"] and link["keepTime"]


def test_calendar_panels_are_calendar_aligned() -> None:
    by_title = {panel["title"]: panel for panel in panels(load(COCKPIT))}
    expected = {
        "Today": "now/d",
        "This week": "now/w",
        "This month": "now/M",
        "Month-end projection": "now/M",
    }
    for title, time_from in expected.items():
        panel = by_title[title]
        assert panel["type"] == "stat"
        assert panel["timeFrom"] == time_from, title
        assert all("[$__range]" in t["expr"] for t in panel["targets"]), title
        assert all(t["instant"] for t in panel["targets"]), title
    # Only those: every other panel follows the dashboard's time range.
    assert {p["title"] for p in by_title.values() if p.get("timeFrom")} == set(expected)


def squeezed(expr: str) -> str:
    return re.sub(r"\s+", "", expr)


def test_spend_totals_count_as_the_alerts_and_the_report() -> None:
    """The calendar and range totals count what each counter series gained in the range, a new
    series in full: the PromQL of the spend rules and of ``otel-llm-cost report``
    (``spend_query``), with the panel's filters and ``$__range``. No panel sums a bare
    ``increase()`` of a raw counter (it ignores a new series' first sample)."""
    by_title = {panel["title"]: panel for panel in panels(load(COCKPIT))}
    for title in ("Today", "This week", "This month", "Selected time range"):
        expr = by_title[title]["targets"][0]["expr"]
        selector = re.search(r"llm_cost_USD_total\{[^}]*\}", expr)
        assert selector, expr
        query = spend_query(selector.group(), Window("", 0, 3600), ("x",), first_in_full=True)
        per_series = query.removeprefix("sum by (x) (").removesuffix(")")
        expected = "sum(" + per_series.replace("3600000ms", "$__range") + ")"
        assert squeezed(expr) == squeezed(expected), title
    for file, where, expr in QUERIES:
        for found in re.finditer(r"increase\((\w+)\{", expr):
            if found.group(1) in SERIES:  # only as the reset branch of the exact shape
                assert f"resets({found.group(1)}{{" in expr, (file, where, expr)


def test_budget_shares_are_coloured_ok_warning_exceeded() -> None:
    """The "% of budget" values: green below 80 %, orange from 80 %, red above 100 %."""
    found = 0
    for panel in panels(load(COCKPIT)):
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            props = {p["id"]: p.get("value") for p in override["properties"]}
            if str(props.get("displayName", "")).endswith("budget"):
                found += 1
                assert props["unit"] == "percentunit"
                assert [s["value"] for s in props["thresholds"]["steps"]] == [None, 0.8, 1.0]
                assert [s["color"] for s in props["thresholds"]["steps"]] == [
                    "green",
                    "orange",
                    "red",
                ]
                ref = override["matcher"]["options"]
                (target,) = [t for t in panel["targets"] if t["refId"] == ref]
                window = re.search(r'llm_budget_USD\{window="(\w+)", ([^}]*)\}', target["expr"])
                assert window, target["expr"]
                assert window.group(1) in props["displayName"]
                # The budget of all calls: every scope label empty.
                assert set(re.findall(r'(\w+)=""', window.group(2))) == SCOPE_LABELS
    assert found == 8  # today, week, month, month end, 24 h, 7 d, 30 d, 30 d ahead


def test_alert_thresholds_are_drawn() -> None:
    by_title = {panel["title"]: panel for panel in panels(load(COCKPIT))}
    for title, value in {
        "Error rate by provider": 0.05,
        "Latency p50 / p95 by provider": 2,
        "Time to first chunk p95 by provider": 2,
        "Cost per request p50 / p95 by provider and model": 0.1,
    }.items():
        defaults = by_title[title]["fieldConfig"]["defaults"]
        assert defaults["custom"]["thresholdsStyle"]["mode"] in ("line", "dashed"), title
        assert [s["value"] for s in defaults["thresholds"]["steps"]] == [None, value], title


def test_every_contract_series_is_shown() -> None:
    used: set[str] = set()
    for path in FILES:
        for _, target in queries(load(path)):
            used |= names(substitute(target["expr"]))[0]
    bare = {name for name in SERIES if not name.endswith(("_sum", "_count"))}
    assert bare <= used, bare - used


# ------------------------------------------------------------------------------------------
# Queries: names, filters, syntax
# ------------------------------------------------------------------------------------------


def all_queries() -> list[tuple[str, str, str]]:
    """``(dashboard file, panel title / ref, expr)`` of every query of both dashboards."""
    out = []
    for path in FILES:
        for panel, target in queries(load(path)):
            out.append((path.name, f"{panel['title']} / {target['refId']}", target["expr"]))
    return out


QUERIES = all_queries()


@pytest.mark.parametrize(
    ("file", "where", "expr"), QUERIES, ids=[f"{f}:{w}" for f, w, _ in QUERIES]
)
def test_query_uses_only_contract_names(file: str, where: str, expr: str) -> None:
    rules = recording_rules()
    metrics, labels, functions, selectors = names(substitute(expr))
    assert metrics, expr
    assert metrics <= set(SERIES) | rules, metrics - set(SERIES) - rules
    assert labels <= LABELS, labels - LABELS
    assert functions <= FUNCTIONS, functions - FUNCTIONS
    for metric, matched in selectors:
        if metric in SERIES:
            assert matched <= SERIES[metric], (metric, matched - SERIES[metric])


@pytest.mark.parametrize(
    ("file", "where", "expr"), QUERIES, ids=[f"{f}:{w}" for f, w, _ in QUERIES]
)
def test_query_is_filtered_by_the_variables(file: str, where: str, expr: str) -> None:
    """Raw series (and the recording rules that keep all four labels) are filtered by provider
    and model, and, when they carry those labels, by agent and feature."""
    filters = {
        "gen_ai_provider_name": "$provider",
        "gen_ai_request_model": "$model",
        "gen_ai_agent_name": "$agent",
        "llm_feature": "$feature",
    }
    for metric in re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)(?=[\[{])", expr):
        assert metric in SERIES or metric in recording_rules(), metric
    for metric, selector in re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)\{([^}]*)\}", expr):
        if metric == "llm_budget_USD" or metric.startswith(("budget:", "agent:")):
            continue  # a budget's scope is its own; agent:* rules keep only the agent label
        carried = SERIES.get(metric) or set(filters)
        for label, variable in filters.items():
            if label in carried:
                assert f'{label}=~"{variable}"' in selector, (metric, label, selector)
    for metric in SERIES:
        if metric != "llm_budget_USD":
            assert not re.search(rf"\b{metric}\[", expr), f"{metric} without a selector"


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),
    reason="promtool not on PATH (apt-get install prometheus)",
)
def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """Every query, variables substituted, as the expression of a recording rule: promtool
    parses each one as Prometheus would."""
    assert PROMTOOL is not None, "promtool is needed in CI"
    rules = [
        {"record": f"dashboard:query_{index}", "expr": substitute(expr)}
        for index, (_, _, expr) in enumerate(QUERIES)
    ]
    for index, path in enumerate(FILES):
        for variable in load(path)["templating"]["list"]:
            if variable["type"] == "query":
                inner = re.fullmatch(r"label_values\((.*), \w+\)", variable["query"])
                assert inner, variable["query"]
                rules.append(
                    {
                        "record": f"dashboard:variable_{index}_{variable['name']}",
                        "expr": f"count({substitute(inner.group(1))})",
                    }
                )
    rule_file = tmp_path / "dashboard-queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    run = subprocess.run(
        [PROMTOOL, "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(rules)} rules found" in run.stdout


# ------------------------------------------------------------------------------------------
# Provisioning
# ------------------------------------------------------------------------------------------


def test_datasource_provisioning() -> None:
    config = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert config["apiVersion"] == 1
    (source,) = config["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"] == "prometheus"
    assert source["url"] == "http://127.0.0.1:9090"
    assert source["isDefault"] is True


def test_dashboard_provisioning() -> None:
    config = yaml.safe_load((PROVISIONING / "dashboards" / "llm-cost.yml").read_text())
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "LLM cost"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    compose = yaml.safe_load((ROOT / "collector" / "docker-compose.yaml").read_text())
    volumes = compose["services"]["grafana"]["volumes"]
    assert "../grafana/dashboards:/var/lib/grafana/dashboards:ro" in volumes
    assert "../grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
