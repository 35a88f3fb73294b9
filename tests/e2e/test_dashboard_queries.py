"""Every panel query of the Grafana dashboards, run against a real Prometheus fed by the pipeline.

``tests/apps/workload_all_providers.py`` (no OpenTelemetry code) runs under
``opentelemetry-instrument`` against the fake OpenAI, Anthropic and Gemini servers, and exports
OTLP to the collector built from ``collector/``; Prometheus scrapes it and evaluates
``alerts/llm-cost-rules.yml`` and ``alerts/budgets.yml`` (the conftest's config). The scripts
below make every provider, every token type (``cache_write`` from Anthropic), a 429, an unpriced
model, streams and an estimated usage show up, so that each panel has something to show.

Then every query of ``grafana/dashboards/*.json`` runs with the template variables at "All"
(``.*``) and Grafana's ``$__range`` & co substituted (as ``tests/test_dashboards.py`` does for
promtool): none may fail, and every panel has data except those of :data:`MAY_BE_EMPTY`, for the
reason given there; the spend panels ("Today", the rolling ones) show the counters' whole sum.
Twice: without and with the ``user.id`` / ``session.id`` opt-in.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_llm_cost.fakes.anthropic_server import AnthropicScript, FakeAnthropicServer
from otel_llm_cost.fakes.gemini_server import FakeGeminiServer, GeminiScript
from otel_llm_cost.fakes.openai_server import FakeOpenAIServer, Script
from tests.apps.workload_all_providers import PLAN
from tests.e2e.conftest import (
    COLLECTOR_CONFIG,
    REPO,
    Proc,
    Prometheus,
    clean_env,
    with_collector_opt_in,
)
from tests.expected import close_to
from tests.test_dashboards import FILES, load, panels, substitute

WORKLOAD = REPO / "tests" / "apps" / "workload_all_providers.py"
ROUNDS = 3

#: One answer per call of the workload's PLAN, per provider, in order.
SCRIPTS: dict[str, tuple[Any, ...]] = {
    "openai": (
        # gpt-4o-mini: cached input, answered by the dated model id
        Script(
            prompt_tokens=1200,
            cached_tokens=1024,
            completion_tokens=35,
            response_model="gpt-4o-mini-2024-07-18",
        ),
        # o4-mini, streamed: cached input and reasoning (time to first chunk)
        Script(prompt_tokens=700, cached_tokens=256, completion_tokens=300, reasoning_tokens=128),
        # gpt-4o-mini: rate limited (no retries)
        Script(status=429),
        # a model nobody prices: tokens counted, cost not
        Script(prompt_tokens=50, completion_tokens=10),
    ),
    "anthropic": (
        # cache read and cache write (creation)
        AnthropicScript(
            input_tokens=40,
            cache_read_input_tokens=3000,
            cache_creation_input_tokens=1200,
            output_tokens=80,
        ),
        # streamed, cache write
        AnthropicScript(input_tokens=300, cache_creation_input_tokens=500, output_tokens=120),
    ),
    "gemini": (
        # cached input and thoughts (reasoning)
        GeminiScript(
            prompt_tokens=2000, cached_tokens=512, candidates_tokens=300, thoughts_tokens=900
        ),
        # streamed without any usage: estimated
        GeminiScript(omit_usage=True, text="no usage reported " * 10),
    ),
}
assert all(len(SCRIPTS[p]) == sum(1 for call in PLAN if call.provider == p) for p in SCRIPTS), (
    "one script per workload call"
)

#: Panels that may show no data (and do, without the opt-in), by dashboard file, with the reason.
#: With the opt-in every panel of both dashboards has data.
OPT_IN_ONLY = (
    "user_id / session_id are labels only when opted in: OTEL_LLM_COST_METRIC_ATTRIBUTES in the "
    "app and keep_keys in the collector"
)
MAY_BE_EMPTY: dict[str, dict[str, str]] = {
    "llm-cost-cockpit.json": {
        "Top 10 users by cost": OPT_IN_ONLY,
        "Top 10 sessions by cost": OPT_IN_ONLY,
    },
    "llm-cost-drilldown.json": {
        title: OPT_IN_ONLY
        for what in ("user", "session")
        for title in (
            f"{what.capitalize()}s with spend",
            f"Spend per {what}",
            f"Top {what}'s share of spend",
            f"Top 20 {what}s by cost",
            f"Cost per hour, top 10 {what}s",
        )
    },
}

TOKEN_TYPES = {"input", "cache_read", "cache_write", "output", "reasoning"}
PROVIDERS = {"openai", "anthropic", "gcp.gemini"}


# ------------------------------------------------------------------------------------------
# Set-up
# ------------------------------------------------------------------------------------------


@pytest.fixture
def fakes() -> Iterator[dict[str, Any]]:
    servers = {
        "openai": FakeOpenAIServer().start(),
        "anthropic": FakeAnthropicServer().start(),
        "gemini": FakeGeminiServer().start(),
    }
    for name, server in servers.items():
        server.enqueue(*(SCRIPTS[name] * ROUNDS))
    yield servers
    for server in servers.values():
        server.stop()


def opt_in_config(target: Path) -> Path:
    """The repository's collector config with user.id and session.id kept."""
    with_collector_opt_in("user.id", target)
    text = target.read_text()
    new, count = re.subn(r'^(\s*)"user\.id",$', r'\1"user.id",\n\1"session.id",', text, flags=re.M)
    assert count == 1
    target.write_text(new)
    return target


def run_workload(
    workdir: Path, fakes: dict[str, Any], collector: Any, register: Any, opt_in: bool
) -> Proc:
    launcher = shutil.which("opentelemetry-instrument", path=os.path.dirname(sys.executable))
    assert launcher, "opentelemetry-instrument is installed with the package's otlp extra"
    workdir.mkdir()
    env = clean_env(
        OPENAI_BASE_URL=fakes["openai"].base_url,
        OPENAI_API_KEY="sk-not-a-real-key",
        ANTHROPIC_BASE_URL=fakes["anthropic"].base_url,
        ANTHROPIC_API_KEY="not-a-real-key",
        WORKLOAD_GEMINI_BASE_URL=fakes["gemini"].base_url,
        WORKLOAD_ROUNDS=str(ROUNDS),
        WORKLOAD_PAUSE="0.4",
        OTEL_SERVICE_NAME="e2e-dashboards",
        OTEL_LOGS_EXPORTER="none",
        OTEL_METRIC_EXPORT_INTERVAL="500",
        OTEL_BSP_SCHEDULE_DELAY="200",
        # The legacy google-generativeai SDK is not used: do not import it at start-up.
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="llm_cost_google_generativeai",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.otlp_http,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_METRICS_EXPORTER="otlp",
        PYTHONUNBUFFERED="1",
        PYTHONWARNINGS="ignore",
    )
    for key in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI"):
        env.pop(key, None)
    if opt_in:
        env["OTEL_LLM_COST_METRIC_ATTRIBUTES"] = "user.id,session.id"
    proc = Proc(
        workdir.name,
        [launcher, sys.executable, str(WORKLOAD)],
        env,
        workdir / "stderr.log",
        stdout=workdir / "stdout.log",
    )
    register(proc)
    return proc


def wait_for_data(prometheus: Prometheus, calls: int) -> None:
    """Until the raw series are complete and the recording rules have seen them."""
    prometheus.wait_for("sum(llm_requests_total)", lambda v: v == calls, 60, want=calls)
    prometheus.wait_for(
        "count by (llm_token_type) (llm_tokens_total)",
        lambda got: set(got) == {(t,) for t in TOKEN_TYPES},
        30,
        fetch=lambda q: prometheus.by(q, "llm_token_type"),
        want=TOKEN_TYPES,
    )
    # Each rule group evaluates every second: wait until the last level of each has the data.
    for query in (
        'count(budget:llm_cost_USD:ratio{window="day"})',
        "count(budget:llm_cost_USD:projected_ratio)",
        "count(provider:llm_requests_errors:ratio_rate10m)",
        "count(agent:llm_cost_USD:projected_increase30d)",
    ):
        prometheus.wait_for(query, lambda v: v is not None and v >= 1, 30, want=">= 1")
    spent = "sum(increase(llm_cost_USD_total[5m]))"
    prometheus.wait_for(spent, lambda v: v is not None and v > 0, 30, want="> 0")


# ------------------------------------------------------------------------------------------
# Running the dashboards' queries
# ------------------------------------------------------------------------------------------


def api(prometheus: Prometheus, path: str, **params: str) -> tuple[dict[str, Any] | None, str]:
    """``(data, "")`` or ``(None, error)``: a failed query is a result here, not an exception."""
    url = f"{prometheus.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            body = json.load(exc)
        except ValueError:
            return None, f"HTTP {exc.code}"
    if body.get("status") != "success":
        return None, f"{body.get('errorType')}: {body.get('error')}"
    return body["data"], ""


def finite_values(data: dict[str, Any]) -> list[float]:
    if data["resultType"] == "scalar":
        return [float(data["result"][1])]
    values: list[float] = []
    for series in data["result"]:
        samples = series.get("values") or [series["value"]]
        values += [float(v) for _, v in samples if math.isfinite(float(v))]
    return values


def run_panel(prometheus: Prometheus, panel: dict[str, Any], now: float) -> tuple[bool, list[str]]:
    """``(has data, errors)`` of a panel: its instant queries at ``now``, its range queries over
    the last 5 minutes (and at ``now``)."""
    errors = []
    has_data = False
    for target in panel["targets"]:
        expr = substitute(target["expr"])
        runs = [("query", {"query": expr, "time": str(now)})]
        if not target.get("instant"):
            runs.append(
                (
                    "query_range",
                    {"query": expr, "start": str(now - 300), "end": str(now), "step": "15"},
                )
            )
        for path, params in runs:
            data, error = api(prometheus, path, **params)
            if data is None:
                errors.append(f"{panel['title']} / {target['refId']} ({path}): {error}\n  {expr}")
            elif finite_values(data):
                has_data = True
    return has_data, errors


def labels_of(prometheus: Prometheus, panel: dict[str, Any], label: str, now: float) -> set[str]:
    found = set()
    for target in panel["targets"]:
        data, error = api(prometheus, "query", query=substitute(target["expr"]), time=str(now))
        assert data is not None, error
        found |= {series["metric"].get(label, "") for series in data["result"]}
    return found


# ------------------------------------------------------------------------------------------
# The test
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("opt_in", [False, True], ids=["default", "user-session-opt-in"])
def test_every_dashboard_query_runs_and_shows_data(
    opt_in: bool, tmp_path: Path, fakes, start_collector, start_prometheus, procs
) -> None:
    config = opt_in_config(tmp_path / "opt-in.yaml") if opt_in else COLLECTOR_CONFIG
    collector = start_collector("collector", config=config)
    prometheus = start_prometheus([collector])
    app = run_workload(tmp_path / "app", fakes, collector, procs, opt_in)
    try:
        code = app.popen.wait(timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail(f"workload still running:\n{app.tail(60)}")
    assert code == 0, f"workload exited with {code}:\n{app.tail(60)}"
    assert app.text().count(": HTTP 429") == ROUNDS
    calls = ROUNDS * len(PLAN)
    assert sum(len(server.exchanges) for server in fakes.values()) == calls
    wait_for_data(prometheus, calls)

    now = time.time()
    errors: list[str] = []
    empty: dict[str, set[str]] = {}
    checked = 0
    for path in FILES:
        board = load(path)
        empty[path.name] = set()
        for panel in panels(board):
            if panel["type"] == "row":
                continue
            has_data, panel_errors = run_panel(prometheus, panel, now)
            checked += 1
            errors += [f"{path.name}: {e}" for e in panel_errors]
            if not has_data:
                empty[path.name].add(panel["title"])
    assert not errors, "\n".join(errors)
    assert checked > 50, checked  # both dashboards, rows aside
    for name, titles in empty.items():
        expected = set() if opt_in else set(MAY_BE_EMPTY[name])
        assert titles == expected, (
            f"{name}: panels without data {sorted(titles - expected)}; "
            f"expected empty but with data {sorted(expected - titles)}"
        )

    # The workload covers what the dashboards break down.
    cockpit = {panel["title"]: panel for panel in panels(load(FILES[0]))}
    assert (
        labels_of(prometheus, cockpit["Cost by token type"], "llm_token_type", now) == TOKEN_TYPES
    )
    assert labels_of(prometheus, cockpit["Cost by provider"], "gen_ai_provider_name", now) == (
        PROVIDERS
    )
    agents = labels_of(prometheus, cockpit["Cost by agent"], "gen_ai_agent_name", now)
    assert agents == {"support-bot", "planner", "researcher"}, agents  # "lab" is unpriced
    # Every series is new to this Prometheus: the spend panels count each one in full, so they
    # show the counters' final sum (their first samples hold much of it, which increase() ignores).
    spent = prometheus.value("sum(llm_cost_USD_total)")
    assert spent is not None and spent > 0
    for title in ("Today", "Selected time range", "Last 24 h", "Last 30 days"):
        prometheus.wait_for(
            substitute(cockpit[title]["targets"][0]["expr"]),
            lambda v: v is not None and close_to(v, spent),
            want=spent,
        )
    # The variables' label_values queries list values.
    for path in FILES:
        for variable in load(path)["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["query"])
            assert match, variable["query"]
            data, error = api(
                prometheus,
                f"label/{match.group(2)}/values",
                **{"match[]": substitute(match.group(1))},
            )
            assert data is not None, error
            if variable["name"] in ("user", "session") and not opt_in:
                assert data == [], (variable["name"], data)
            else:
                assert data, variable["name"]
