"""``otel-llm-cost report`` and ``otel_llm_cost.report``.

The windows, projection and statuses are checked against numbers worked out by hand (epoch
seconds from ``date -u -d``), not recomputed with the module's formulas; the command runs
against a fake Prometheus HTTP API on 127.0.0.1 that answers canned vectors for exactly the
windows a test expects (any other window is an error). The PromQL of a window's spend is
evaluated by the real engine through ``promtool test rules`` (tests/e2e/test_report_e2e.py runs
the whole command against a real Prometheus).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Iterator
from datetime import timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from otel_llm_cost import cli
from otel_llm_cost.report import (
    PrometheusAPI,
    ReportError,
    Window,
    build_report,
    calendar_windows,
    days_left_in_month,
    parse_duration,
    parse_range,
    ratio,
    render_text,
    spend_query,
    status_of,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
UTC = timezone.utc

#: Sunday 2026-03-29 12:30:00 UTC = 14:30 CEST, the day Berlin's clocks went from 02:00 CET to
#: 03:00 CEST (a 23 h day).
NOW = 1774787400.0
H = 3600
D = 86400

# Window lengths at NOW in Europe/Berlin, in milliseconds (from date -u -d):
TODAY_MS = 48_600_000  # since 2026-03-29 00:00 CET = 2026-03-28T23:00Z (1774738800): 13.5 h
WEEK_MS = 567_000_000  # since Monday 2026-03-23 00:00 CET = 2026-03-22T23:00Z (1774220400)
MONTH_MS = 2_467_800_000  # since 2026-03-01 00:00 CET = 2026-02-28T23:00Z (1772319600)
DAY_MS, WEEK7_MS, DAYS30_MS, DAYS23_MS = 86_400_000, 604_800_000, 2_592_000_000, 1_987_200_000
#: To 2026-04-01 00:00 CEST = 2026-03-31T22:00Z (1774994400): 207000 s = 2 d 9.5 h.
DAYS_LEFT = 207000 / 86400


# ------------------------------------------------------------------------------------------
# Windows, ranges, ratios
# ------------------------------------------------------------------------------------------


def test_calendar_windows_in_berlin_on_a_dst_day() -> None:
    windows = calendar_windows(NOW, BERLIN)
    assert windows["today"].start == 1774738800
    assert windows["week"].start == 1774220400
    assert windows["month"].start == 1772319600
    assert {w.end for w in windows.values()} == {NOW}
    assert (windows["today"].ms, windows["week"].ms, windows["month"].ms) == (
        TODAY_MS,
        WEEK_MS,
        MONTH_MS,
    )
    assert days_left_in_month(NOW, BERLIN) == pytest.approx(2.3958333333333335, rel=1e-15)


def test_calendar_windows_in_utc() -> None:
    windows = calendar_windows(NOW, UTC)
    # 2026-03-29T00:00Z, Monday 2026-03-23T00:00Z, 2026-03-01T00:00Z
    assert windows["today"].start == NOW - 12.5 * H
    assert windows["week"].start == NOW - (6 * D + 12.5 * H)
    assert windows["month"].start == NOW - (28 * D + 12.5 * H)
    # to 2026-04-01T00:00Z: 2 d 11.5 h, the cockpit's
    # days_in_month() - day_of_month() + 1 - (time() % 86400) / 86400 = 31 - 29 + 1 - 0.5208333
    assert days_left_in_month(NOW, UTC) == pytest.approx(2.4791666666666665, rel=1e-15)


def test_calendar_windows_in_new_york_on_the_25_hour_day() -> None:
    now = 1793581200  # 2026-11-01 20:00 EST = 2026-11-02T01:00Z; DST ended at 02:00 that day
    windows = calendar_windows(now, NEW_YORK)
    assert windows["today"].start == 1793505600  # 2026-11-01 00:00 EDT: 21 h ago, not 20
    assert windows["month"].start == 1793505600  # the 1st
    assert windows["week"].start == 1792987200  # Monday 2026-10-26 00:00 EDT
    assert days_left_in_month(now, NEW_YORK) == pytest.approx(2520000 / 86400, rel=1e-15)


def test_calendar_windows_at_midnight_and_on_a_monday_the_first() -> None:
    now = 1780272000  # Monday 2026-06-01 00:00:00 UTC
    windows = calendar_windows(now, UTC)
    assert windows["today"].start == windows["week"].start == windows["month"].start == now
    assert windows["today"].ms == 0
    assert days_left_in_month(now, UTC) == 30


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("24h", 86400), ("7d", 604800), ("90m", 5400), ("1h30m", 5400), ("2w", 1209600),
     ("500ms", 0.5), ("15d", 1296000), ("1y", 31536000)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0d", "7", "d", "7 d", "-1h", "1.5h", "week"])
def test_parse_duration_rejects(text: str) -> None:
    assert parse_duration(text) is None


def test_parse_range() -> None:
    assert parse_range("month", NOW, BERLIN).ms == MONTH_MS
    assert parse_range("this-week", NOW, BERLIN).ms == WEEK_MS
    assert parse_range("today", NOW, BERLIN).ms == TODAY_MS
    rolling = parse_range("36h", NOW, BERLIN)
    assert (rolling.start, rolling.end, rolling.name) == (NOW - 36 * H, NOW, "last 36h")
    with pytest.raises(ValueError, match="--range: expected today, week, month"):
        parse_range("fortnight", NOW, BERLIN)


@pytest.mark.parametrize(
    ("spent", "budget", "expected_ratio", "status"),
    [
        (0.0, 3.0, 0.0, "ok"),
        (2.39, 3.0, 0.7966666666666667, "ok"),
        (4.0, 5.0, 0.8, "warning"),  # LLMBudgetWarning: >= 0.8
        (3.0, 3.0, 1.0, "warning"),  # the *Exceeded alerts: > 1, not >= 1
        (3.0000001, 3.0, 1.0000000333333333, "exceeded"),
        (1.0, 0.0, float("inf"), "exceeded"),  # PromQL: x / 0 = +Inf
        (0.0, 0.0, None, None),  # 0 / 0 = NaN: no alert either
        (1.0, None, None, None),  # no budget
    ],
)
def test_ratio_and_status(
    spent: float, budget: float | None, expected_ratio: float | None, status: str | None
) -> None:
    assert ratio(spent, budget) == expected_ratio
    assert status_of(ratio(spent, budget)) == status


# ------------------------------------------------------------------------------------------
# The PromQL of a window's spend, in the real engine (promtool)
# ------------------------------------------------------------------------------------------

PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),
    reason="promtool not on PATH (apt-get install prometheus)",
)
def test_spend_query_counts_what_each_series_gained(tmp_path: Path) -> None:
    """A 30 min window ending at 60m30s (samples every minute): the start, 30m30s, falls
    between samples. Expected values by hand; increase() would give 30, ~21.6, ~29.9, 28.97,
    ~9.7 (it extrapolates and misses the first sample of B)."""
    window = Window("w", 0, 1800)
    exact = {
        "A": 30,  # 0, 1, ..., 60: 60 at the end - 30 at the start
        "B": 25,  # first seen at 40m with 5, up to 25: new inside the window, counted in full
        "C": 31,  # 100 until 30m, then 2..31: reset between the start and the first sample
        # 0..45 then reset, 0..14: increase() (raw 14 - 31 + 45 = 28, extrapolated to the
        # window's 30 min from the 29 min sampled; promtool compares exactly, in this order)
        "D": 28 * (30 / 29),
        "F": 10,  # 0..40 then gone: 40 - 30
    }  # E ended before the window: no sample
    series = {
        "A": "0+1x60",
        "B": "_x40 5+1x20",
        "C": "100x30 2+1x29",
        "D": "0+1x45 0+1x14",
        "E": "0+1x10",
        "F": "0+1x40",
    }

    def samples(values: dict[str, float]) -> list[dict[str, Any]]:
        return [{"labels": f'{{case="{k}"}}', "value": v} for k, v in values.items()]

    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f'llm_cost_USD_total{{case="{k}"}}', "values": v}
                    for k, v in series.items()
                ],
                "promql_expr_test": [
                    {
                        "expr": spend_query(
                            "llm_cost_USD_total", window, ("case",), first_in_full=True
                        ),
                        "eval_time": "60m30s",
                        "exp_samples": samples(exact),
                    },
                    {  # past the retention edge: B from its first sample on, 25 - 5
                        "expr": spend_query(
                            "llm_cost_USD_total", window, ("case",), first_in_full=False
                        ),
                        "eval_time": "60m30s",
                        "exp_samples": samples({**exact, "B": 20}),
                    },
                ],
            }
        ],
    }
    path = tmp_path / "spend_test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    assert PROMTOOL is not None
    run = subprocess.run(
        [PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr


# ------------------------------------------------------------------------------------------
# A fake Prometheus HTTP API
# ------------------------------------------------------------------------------------------


class FakePrometheus:
    """``/api/v1/query`` answering canned series per (metric, window length in ms), summed by
    the query's ``sum by (...)`` labels, plus the few other endpoints the report calls."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, int], list[tuple[dict[str, str], float]]] = {}
        self.instant: dict[str, list[tuple[dict[str, str], float]]] = {}
        self.names = ["llm_cost_USD_total", "llm_requests_total", "llm_tokens_total"]
        self.retention: str | None = "15d"
        self.oldest_data = NOW - 3600.0  # a young Prometheus: nothing deleted yet
        self.refuse: str | None = None  # a query containing this gets a bad_data error
        self.delay = 0.0
        self.queries: list[dict[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, metric: str, ms: int, *rows: tuple[dict[str, str], float]) -> None:
        self.series.setdefault((metric, ms), []).extend(rows)

    def answer(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        if self.delay:
            time.sleep(self.delay)
        if path == "/api/v1/query":
            self.queries.append(params)
            return self.query(params["query"])
        if path == "/api/v1/label/__name__/values":
            return 200, {"status": "success", "data": self.names}
        if path == "/api/v1/labels":
            before = float(params["end"]) >= self.oldest_data
            return 200, {"status": "success", "data": ["__name__", "job"] if before else []}
        if path == "/api/v1/status/runtimeinfo" and self.retention is not None:
            return 200, {"status": "success", "data": {"storageRetention": self.retention}}
        return 404, "404 page not found"

    def query(self, expr: str) -> tuple[int, Any]:
        if self.refuse and self.refuse in expr:
            return 400, {"status": "error", "errorType": "bad_data", "error": "parse error"}
        if expr in self.instant:
            rows = self.instant[expr]
        else:
            found = re.search(r"last_over_time\((\w+)\[(\d+)ms\]\)", expr)
            by = re.match(r"sum by \(([^)]*)\) ", expr)
            if not found or not by:
                return 400, {"status": "error", "errorType": "bad_data", "error": f"? {expr}"}
            key = (found.group(1), int(found.group(2)))
            if key not in self.series:
                error = f"fake: no data for {key} (unexpected window)"
                return 400, {"status": "error", "errorType": "bad_data", "error": error}
            labels = [label.strip() for label in by.group(1).split(",")]
            sums: dict[tuple[str, ...], float] = defaultdict(float)
            for metric, value in self.series[key]:
                sums[tuple(metric.get(label, "") for label in labels)] += value
            rows = [
                ({k: v for k, v in zip(labels, values, strict=True) if v}, total)
                for values, total in sums.items()
            ]
        result = [{"metric": m, "value": [NOW, repr(v)]} for m, v in rows]
        return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, params: dict[str, str]) -> None:
                code, body = fake.answer(urllib.parse.urlsplit(self.path).path, params)
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (the timeout test)
                    pass

            def do_POST(self) -> None:
                if self.path not in ("/api/v1/query", "/api/v1/labels"):  # as Prometheus
                    self.send_error(405)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                self._reply({k: v[-1] for k, v in form.items()})

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                self._reply({k: v[-1] for k, v in query.items()})

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> FakePrometheus:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def series(provider: str, model: str, agent: str = "", feature: str = "", **extra: str) -> dict:
    labels = {
        "gen_ai_provider_name": provider,
        "gen_ai_request_model": model,
        "gen_ai_agent_name": agent,
        "llm_feature": feature,
        "job": "app",
        **extra,
    }
    return {k: v for k, v in labels.items() if v}


GPT = ("openai", "gpt-4o-mini", "support-bot", "faq")
CLAUDE = ("anthropic", "claude-sonnet-4", "planner", "plan")
UNPRICED = ("gcp.gemini", "zz-unpriced", "lab", "x")


def budget(usd: float, window: str, **scope: str) -> tuple[dict[str, str], float]:
    return {"__name__": "llm_budget_USD", "window": window, **scope}, usd


def scenario(fake: FakePrometheus) -> None:
    """Spend per window (USD), by hand:

    ============  =============  ===============  ==========================================
    window        gpt-4o-mini    claude-sonnet-4  vs budgets
    ============  =============  ===============  ==========================================
    today         0.6            0.9              1.5 / 3 = 50 %
    this week     3.5            4.5              8 / 12 = 66.7 %
    this month    5.0 + 0.5 (*)  9.5              15 / 20 = 75 %
    last 24 h     1.2            1.5              2.7 / 3 = 90 % warning; support-bot 1.2 / 1
                                                  = 120 % exceeded
    last 7 d      4.0            5.0              9 / 12 = 75 %; model gpt-4o-mini 4 / 5 = 80 %
                                                  warning
    last 30 d     6.0            10.5             16.5 / 20 = 82.5 % warning; provider
                                                  anthropic 10.5 / 10 = 105 % exceeded
    last 23 d     5.0            8.0
    ============  =============  ===============  ==========================================

    (*) 0.5 without an agent. Month-end: 15 + 2.7 x 2.3958333 days = 21.46875 (107.3 % of
    20). 30 d, 7 d ahead: 13 + 7 x 2.7 = 31.9 (159.5 %: overrun); anthropic 8 + 7 x 1.5 = 18.5
    (185 %, but already exceeded: no overrun).
    """
    cost = "llm_cost_USD_total"
    for ms, gpt, claude in (
        (TODAY_MS, 0.6, 0.9),
        (WEEK_MS, 3.5, 4.5),
        (DAY_MS, 1.2, 1.5),
        (WEEK7_MS, 4.0, 5.0),
        (DAYS30_MS, 6.0, 10.5),
        (DAYS23_MS, 5.0, 8.0),
    ):
        # split over two token types, to be summed
        fake.add(cost, ms, (series(*GPT, llm_token_type="input"), gpt / 4))
        fake.add(cost, ms, (series(*GPT, llm_token_type="output"), gpt * 3 / 4))
        fake.add(cost, ms, (series(*CLAUDE, llm_token_type="output"), claude))
    fake.add(
        cost,
        MONTH_MS,
        (series(*GPT, llm_token_type="output"), 5.0),
        (series("openai", "gpt-4o-mini"), 0.5),
        (series(*CLAUDE, llm_token_type="output"), 9.5),
    )
    requests = "llm_requests_total"
    fake.add(
        requests,
        MONTH_MS,
        (series(*GPT, llm_price_status="catalog", llm_usage_source="provider"), 90),
        (series(*GPT, error_type="429", llm_price_status="catalog", llm_usage_source="none"), 5),
        (series("openai", "gpt-4o-mini", llm_usage_source="estimated"), 5),
        (series(*CLAUDE, llm_price_status="catalog", llm_usage_source="provider"), 40),
        (series(*UNPRICED, llm_price_status="unpriced", llm_usage_source="provider"), 10),
    )
    tokens = "llm_tokens_total"
    fake.add(
        tokens,
        MONTH_MS,
        (series(*GPT, llm_token_type="input"), 1000),
        (series(*GPT, llm_token_type="output"), 500),
        (series(*CLAUDE, llm_token_type="input"), 200),
        (series(*CLAUDE, llm_token_type="cache_read"), 3000),
        (series(*CLAUDE, llm_token_type="cache_write"), 1200),
        (series(*CLAUDE, llm_token_type="output"), 800),
        (series(*UNPRICED, llm_token_type="input"), 50),
        (series(*UNPRICED, llm_token_type="output"), 10),
    )
    fake.instant["llm_budget_USD"] = [
        budget(3, "day"),
        budget(12, "week"),
        budget(20, "month"),
        budget(1, "day", gen_ai_agent_name="support-bot"),
        budget(5, "week", gen_ai_request_model="gpt-4o-mini"),
        budget(10, "month", gen_ai_provider_name="anthropic", team="research"),
        budget(2, "day", gen_ai_agent_name="planner", llm_feature="plan"),  # two scopes
        budget(100, "year"),
    ]
    # What the alert rules computed (increase(): a little less, here).
    fake.instant["budget:llm_cost_USD:ratio"] = [
        ({"__name__": "budget:llm_cost_USD:ratio", "window": "day"}, 0.79),
        (
            {
                "__name__": "budget:llm_cost_USD:ratio",
                "window": "day",
                "gen_ai_agent_name": "support-bot",
            },
            1.19,
        ),
    ]
    fake.instant["budget:llm_cost_USD:projected_ratio"] = []


@pytest.fixture
def fake() -> Iterator[FakePrometheus]:
    with FakePrometheus() as server:
        yield server


@pytest.fixture
def fixed_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "time", SimpleNamespace(time=lambda: NOW))


def rows_by(rows: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(json.dumps(r[k], sort_keys=True) for k in keys): r for r in rows}


def test_report_numbers(fake: FakePrometheus) -> None:
    scenario(fake)
    report = build_report(PrometheusAPI(fake.url), NOW, BERLIN, "month", 2, "Europe/Berlin")

    # Every query at the same instant, each window once (the month is the range too).
    assert {q["time"] for q in fake.queries} == {"1774787400.000"}
    windows = [int(m) for q in fake.queries for m in re.findall(r"\[(\d+)ms\]", q["query"])[:1]]
    assert sorted(set(windows)) == sorted(
        {TODAY_MS, WEEK_MS, MONTH_MS, DAY_MS, WEEK7_MS, DAYS30_MS, DAYS23_MS}
    )
    assert len(windows) == 9  # 7 windows of cost + tokens and requests of the range
    assert report["time"] == "2026-03-29T12:30:00Z"
    assert report["tz"] == "Europe/Berlin"
    assert report["local_time"] == "2026-03-29T14:30:00+02:00"

    calendar = {r["period"]: r for r in report["calendar"]}
    assert calendar["today"]["start"] == "2026-03-29T00:00:00+01:00"
    assert calendar["this week"]["start"] == "2026-03-23T00:00:00+01:00"
    assert calendar["this month"]["start"] == "2026-03-01T00:00:00+01:00"
    assert [calendar[p]["spent_usd"] for p in ("today", "this week", "this month")] == [
        pytest.approx(1.5, rel=1e-12),
        pytest.approx(8.0, rel=1e-12),
        pytest.approx(15.0, rel=1e-12),
    ]
    assert [calendar[p]["budget_usd"] for p in calendar] == [3, 12, 20]
    assert [calendar[p]["ratio"] for p in calendar] == [
        pytest.approx(0.5),
        pytest.approx(2 / 3),
        pytest.approx(0.75),
    ]
    assert [calendar[p]["status"] for p in calendar] == ["ok", "ok", "ok"]

    end = report["month_end"]
    assert end["end"] == "2026-04-01T00:00:00+02:00"
    assert end["days_left"] == pytest.approx(2.3958333333333335, rel=1e-12)
    assert end["burn_usd_per_day"] == pytest.approx(2.7, rel=1e-12)
    assert end["projected_usd"] == pytest.approx(21.46875, rel=1e-12)
    assert end["ratio"] == pytest.approx(1.0734375, rel=1e-12)
    assert end["status"] == "exceeded"

    rolling = rows_by(report["rolling"], "window", "scope")
    assert list(rolling) == [
        ('"day"', "{}"),
        ('"day"', '{"gen_ai_agent_name": "support-bot"}'),
        ('"week"', "{}"),
        ('"week"', '{"gen_ai_request_model": "gpt-4o-mini"}'),
        ('"month"', "{}"),
        ('"month"', '{"gen_ai_provider_name": "anthropic"}'),
    ]
    got = [(r["spent_usd"], r["budget_usd"], r["ratio"], r["status"]) for r in rolling.values()]
    assert got == [
        (pytest.approx(2.7), 3, pytest.approx(0.9), "warning"),
        (pytest.approx(1.2), 1, pytest.approx(1.2), "exceeded"),
        (pytest.approx(9.0), 12, pytest.approx(0.75), "ok"),
        (pytest.approx(4.0), 5, pytest.approx(0.8), "warning"),
        (pytest.approx(16.5), 20, pytest.approx(0.825), "warning"),
        (pytest.approx(10.5), 10, pytest.approx(1.05), "exceeded"),
    ]
    assert [r["alert_ratio"] for r in rolling.values()] == [0.79, 1.19, None, None, None, None]
    assert rolling['"month"', '{"gen_ai_provider_name": "anthropic"}']["scope_text"] == (
        'provider "anthropic" {team=research}'
    )

    projected = {r["scope_text"]: r for r in report["projected_30d"]}
    assert projected["all calls"]["projected_usd"] == pytest.approx(31.9)
    assert projected["all calls"]["ratio"] == pytest.approx(1.595)
    assert projected["all calls"]["overrun"] is True
    anthropic = projected['provider "anthropic" {team=research}']
    assert anthropic["projected_usd"] == pytest.approx(18.5)
    assert anthropic["ratio"] == pytest.approx(1.85)
    assert anthropic["overrun"] is False  # LLMMonthlyBudgetExceeded fires instead

    assert [b["reason"] for b in report["ignored_budgets"]] == [
        "more than one scope label (the budget rules ignore it too)",
        "window 'year' is not one of day, week, month",
    ]
    assert report["status"] == "exceeded"

    section = report["range"]
    assert section["name"] == "this month"
    assert section["cost_usd"] == pytest.approx(15.0)
    assert section["requests"] == 150
    assert section["failed_requests"] == 5
    assert section["unpriced_share"] == pytest.approx(10 / 150)
    assert section["estimated_share"] == pytest.approx(5 / 150)
    assert section["tokens"] == {"input": 1250, "cache_read": 3000, "cache_write": 1200,
                                 "output": 1310}  # fmt: skip
    models = [(m["provider"], m["model"], m["cost_usd"], m["requests"], m["tokens"])
              for m in section["top_models"]]  # fmt: skip
    assert models == [
        ("anthropic", "claude-sonnet-4", pytest.approx(9.5), 40, 5200),
        ("openai", "gpt-4o-mini", pytest.approx(5.5), 100, 1500),
    ]
    assert section["top_models"][0]["share"] == pytest.approx(9.5 / 15)
    assert section["top_models"][1]["cost_per_request_usd"] == pytest.approx(0.055)
    assert section["more_models"] == {"count": 1, "cost_usd": 0.0, "requests": 10}
    agents = [(a["agent"], a["cost_usd"], a["requests"]) for a in section["top_agents"]]
    assert agents == [("planner", pytest.approx(9.5), 40), ("support-bot", pytest.approx(5.0), 95)]
    assert section["more_agents"] == {"count": 2, "cost_usd": pytest.approx(0.5), "requests": 15}
    assert report["notes"] == [
        'budget {gen_ai_agent_name="planner", llm_feature="plan", window="day"} ignored: '
        "more than one scope label (the budget rules ignore it too)",
        "budget {window=\"year\"} ignored: window 'year' is not one of day, week, month",
    ]


EXPECTED_TEXT = """\
LLM spend at 2026-03-29 14:30 Europe/Berlin (2026-03-29T12:30:00Z), from <URL>

Calendar (Europe/Berlin)
  period                since                spent  budget     used  status
  today                 2026-03-29 00:00      1.50    3.00   50.0 %  ok
  this week             2026-03-23 00:00      8.00   12.00   66.7 %  ok
  this month            2026-03-01 00:00     15.00   20.00   75.0 %  ok
  month-end projection  to 2026-04-01 00:00  21.47   20.00  107.3 %  exceeded
  (projection: 15.00 so far + 2.70 spent in the last 24 h x 2.40 days left)

Rolling windows, as the budget alerts compare them (budgets: llm_budget_USD)
  window     scope                                 spent  budget     used  status
  24 h       all calls                              2.70    3.00   90.0 %  warning   alerts: 79.0 %
  24 h       agent "support-bot"                    1.20    1.00  120.0 %  exceeded
  7 d        all calls                              9.00   12.00   75.0 %  ok
  7 d        request model "gpt-4o-mini"            4.00    5.00   80.0 %  warning
  30 d       all calls                             16.50   20.00   82.5 %  warning
  30 d       provider "anthropic" {team=research}  10.50   10.00  105.0 %  exceeded
  30 d +7 d  all calls                             31.90   20.00  159.5 %  overrun
  30 d +7 d  provider "anthropic" {team=research}  18.50   10.00  185.0 %  exceeded
  (30 d +7 d: the 30-day window 7 days from now if the last 24 h burn rate goes on: spend of the
    last 23 d + 7 x the last 24 h, as LLMMonthlyBudgetProjectedOverrun computes it)
  (alerts: the alert rules' own ratio, budget:llm_cost_USD:ratio, where it gives another status:
    their increase() extrapolates and misses a new series' first sample)

This month (2026-03-01 00:00 to 2026-03-29 14:30 Europe/Berlin)
  spent 15.00 USD on 150 requests (5 failed); unpriced 6.7 %, estimated usage 3.3 %
  tokens: input 1,250, cache_read 3,000, cache_write 1,200, output 1,310

Top models by cost (this month)
                             cost   share  requests  per request  tokens
  anthropic claude-sonnet-4  9.50  63.3 %        40       0.2375   5,200
  openai gpt-4o-mini         5.50  36.7 %       100        0.055   1,500
  (1 more)                   0.00                10

Top agents by cost (this month)
               cost   share  requests  per request  tokens
  planner      9.50  63.3 %        40       0.2375   5,200
  support-bot  5.00  33.3 %        95      0.05263   1,500
  (2 more)     0.50                15

note: budget {gen_ai_agent_name="planner", llm_feature="plan", window="day"} ignored: more than one
  scope label (the budget rules ignore it too)
note: budget {window="year"} ignored: window 'year' is not one of day, week, month

status: exceeded
"""


def test_report_text_and_exit_status(
    fake: FakePrometheus, fixed_now: None, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario(fake)
    argv = ["report", "--prometheus", fake.url + "/", "--tz", "Europe/Berlin", "--top", "2"]
    assert cli.main(argv) == cli.EXIT_EXCEEDED
    out, err = capsys.readouterr()
    assert err == ""
    assert out == EXPECTED_TEXT.replace("<URL>", fake.url)


def test_report_json_is_the_report(
    fake: FakePrometheus, fixed_now: None, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario(fake)
    assert cli.main(["report", "--prometheus", fake.url, "--tz", "Europe/Berlin", "--json"]) == 3
    out = capsys.readouterr().out
    report = json.loads(out)
    assert report == json.loads(json.dumps(build_report(
        PrometheusAPI(fake.url), NOW, BERLIN, "month", 10, "Europe/Berlin")))  # fmt: skip
    assert "NaN" not in out and "Infinity" not in out
    assert len(report["range"]["top_agents"]) == 4
    assert report["range"]["top_agents"][2] == {
        "agent": None,  # unattributed
        "cost_usd": 0.5,
        "share": pytest.approx(0.5 / 15),
        "requests": 5.0,
        "cost_per_request_usd": 0.1,
        "tokens": 0.0,
    }


def test_report_ok_without_budgets_and_a_rolling_range(
    fake: FakePrometheus, fixed_now: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """No budget at all: statuses are null and the exit status 0; --range 36h queries that."""
    cost = "llm_cost_USD_total"
    # In UTC the calendar windows are others: 12.5 h, 6 d 12.5 h, 28 d 12.5 h.
    utc_today, utc_week, utc_month = 45_000_000, 563_400_000, 2_464_200_000
    for ms in (utc_today, utc_week, utc_month, DAY_MS, WEEK7_MS, DAYS30_MS, DAYS23_MS):
        fake.add(cost, ms, (series(*GPT), 1.0))
    for metric in (cost, "llm_tokens_total", "llm_requests_total"):
        fake.add(metric, 36 * H * 1000, (series(*GPT, llm_token_type="input"), 2.0))
    fake.instant["llm_budget_USD"] = []
    fake.instant["budget:llm_cost_USD:ratio"] = []
    fake.instant["budget:llm_cost_USD:projected_ratio"] = []
    assert cli.main(["report", "--prometheus", fake.url, "--range", "36h", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "ok"
    assert report["tz"] == "UTC"
    assert [r["status"] for r in report["calendar"] + report["rolling"]] == [None] * 6
    assert [r["budget_usd"] for r in report["rolling"]] == [None] * 3
    assert report["projected_30d"] == []
    assert report["range"]["name"] == "last 36h"
    assert report["range"]["cost_usd"] == 2.0
    assert report["range"]["tokens"] == {"input": 2.0}
    assert [r["spent_usd"] for r in report["calendar"]] == [1.0, 1.0, 1.0]


def test_windows_past_the_retention_edge(fake: FakePrometheus) -> None:
    """A Prometheus older than its 15 d retention: the 23 d / 30 d / month windows start where
    its data was deleted, so series first seen there are not counted in full, and a note says
    so; the shorter windows are as usual."""
    scenario(fake)
    fake.oldest_data = NOW - 16 * D
    report = build_report(PrometheusAPI(fake.url), NOW, BERLIN, "month", 10, "Europe/Berlin")
    in_full = {}
    for q in fake.queries:
        found = re.search(r"\[(\d+)ms\]", q["query"])
        if found:
            in_full[int(found.group(1))] = "min_over_time" not in q["query"]
    assert in_full == {
        TODAY_MS: True,
        WEEK_MS: True,
        DAY_MS: True,
        WEEK7_MS: True,
        MONTH_MS: False,
        DAYS23_MS: False,
        DAYS30_MS: False,
    }
    notes = [n for n in report["notes"] if "retention" in n or "keeps" in n]
    # 15 d before NOW: 2026-03-14T12:30Z, 13:30 in Berlin (CET, before the DST change)
    assert notes == [
        "Prometheus keeps 15d of data and this month starts before that: spend older than "
        "2026-03-14T13:30:00+01:00 is missing from it",
        "Prometheus keeps 15d of data and last 30 d starts before that: spend older than "
        "2026-03-14T13:30:00+01:00 is missing from it",
        "Prometheus keeps 15d of data and last 23 d starts before that: spend older than "
        "2026-03-14T13:30:00+01:00 is missing from it",
    ]


# ------------------------------------------------------------------------------------------
# Errors: a message and exit status 1 (or 2 for usage), never a traceback
# ------------------------------------------------------------------------------------------


def run_report(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["report", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_no_llm_series_yet(
    fake: FakePrometheus, fixed_now: None, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.names = []
    code, out, err = run_report(capsys, "--prometheus", fake.url)
    assert (code, out) == (1, "")
    assert err.startswith(
        f"otel-llm-cost report: no llm_* series yet in Prometheus at {fake.url} "
        "(no llm_requests_total since 2026-02-27T12:30:00+00:00): is the application instrumented"
    )


def test_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    with FakePrometheus() as closed:
        url = closed.url
    code, out, err = run_report(capsys, "--prometheus", url, "--timeout", "5")
    assert (code, out) == (1, "")
    assert err == f"otel-llm-cost report: cannot reach Prometheus at {url}: Connection refused\n"


def test_query_refused(
    fake: FakePrometheus, fixed_now: None, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario(fake)
    fake.refuse = "llm_tokens_total"
    code, out, err = run_report(capsys, "--prometheus", fake.url, "--tz", "Europe/Berlin")
    assert (code, out) == (1, "")
    assert err.startswith("otel-llm-cost report: Prometheus refused query sum by (")
    assert err.endswith(": bad_data: parse error\n")


def test_not_a_prometheus(fake: FakePrometheus, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_report(capsys, "--prometheus", fake.url + "/grafana")
    assert code == 1
    assert err == (
        f"otel-llm-cost report: {fake.url}/grafana/api/v1/label/__name__/values answered "
        "HTTP 404 Not Found: is this the URL of a Prometheus (or compatible) server?\n"
    )


def test_timeout(fake: FakePrometheus, capsys: pytest.CaptureFixture[str]) -> None:
    fake.delay = 1.0
    code, _, err = run_report(capsys, "--prometheus", fake.url, "--timeout", "0.2")
    assert code == 1
    assert err == (
        f"otel-llm-cost report: Prometheus at {fake.url} did not answer within 0.2 s "
        "(a longer --timeout may help on a large Prometheus)\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tz", "Mars/Olympus"], "--tz: unknown time zone 'Mars/Olympus'"),
        (["--range", "fortnight"], "--range: expected today, week, month or a duration"),
        (["--prometheus", "localhost:9090"], "--prometheus: expected an http:// or https:// URL"),
        (["--top", "0"], "--top: must be at least 1"),
        (["--timeout", "0"], "--timeout: must be a positive number of seconds"),
    ],
)
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_report(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.startswith(f"otel-llm-cost report: {message}")


def test_argparse_usage_error_is_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["report", "--top", "many"])
    assert exc.value.code == 2


def test_render_text_of_an_empty_range() -> None:
    """Nothing spent in the range (and no budgets): dashes and "none", no division by zero."""
    report = {
        "prometheus": "http://127.0.0.1:9090",
        "time": "2026-03-29T12:30:00Z",
        "tz": "UTC",
        "local_time": "2026-03-29T12:30:00+00:00",
        "status": "ok",
        "calendar": [{"period": "today", "start": "2026-03-29T00:00:00+00:00", "spent_usd": 0.0,
                      "budget_usd": None, "ratio": None, "status": None}],
        "month_end": {"end": "2026-04-01T00:00:00+00:00", "spent_usd": 0.0,
                      "burn_usd_per_day": 0.0, "days_left": 2.48, "projected_usd": 0.0,
                      "budget_usd": None, "ratio": None, "status": None},
        "rolling": [],
        "projected_30d": [],
        "range": {"name": "today", "start": "2026-03-29T00:00:00+00:00",
                  "end": "2026-03-29T12:30:00+00:00", "cost_usd": 0.0, "requests": 0.0,
                  "failed_requests": 0.0, "unpriced_share": None, "estimated_share": None,
                  "tokens": {}, "top_models": [], "more_models": None, "top_agents": [],
                  "more_agents": None},
        "notes": [],
    }  # fmt: skip
    text = render_text(report)
    assert "  today                 2026-03-29 00:00      0.00       -     -" in text
    assert "spent 0.00 USD on 0 requests (0 failed); unpriced -, estimated usage -" in text
    assert text.count("  none\n") == 2


def test_usd_formatting() -> None:
    from otel_llm_cost.report import usd

    assert [usd(v) for v in (None, 0.0, 1234.5, 1.006, 0.5, 0.0123456, 0.00001234)] == [
        "-", "0.00", "1,234.50", "1.01", "0.50", "0.01235", "1.23e-05",
    ]  # fmt: skip


def test_report_error_is_an_exception_with_the_message() -> None:
    assert str(ReportError("x")) == "x"
