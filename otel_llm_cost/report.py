"""``otel-llm-cost report``: the cockpit's headline numbers, read from Prometheus, for a terminal.

What it shows, all from the contract's series (``llm_cost_USD_total``, ``llm_tokens_total``,
``llm_requests_total``, ``llm_budget_USD``):

- the spend of today, this week (from Monday) and this month, calendar-aligned in a chosen time
  zone, against the budget of all calls of the same window;
- the month-end projection of the cockpit: spend since the 1st + the spend of the last 24 h x
  the days left in the month;
- the rolling windows of the budget alerts (day = last 24 h, week = last 7 d, month = last
  30 d), each against every ``llm_budget_USD`` of that window (a scoped budget against its
  slice, as ``budget:llm_cost_USD:increase`` matches them), with the alerts' thresholds:
  ``warning`` from 80 % (``LLMBudgetWarning``), ``exceeded`` above 100 % (the ``*Exceeded``
  alerts); and the projection of ``LLMMonthlyBudgetProjectedOverrun`` (spend of the last 23 d
  + 7 x the spend of the last 24 h) against each month budget;
- over a chosen range: the top models and agents by cost, requests, tokens by type, and the
  shares of unpriced and estimated requests.

Prometheus evaluates in UTC and knows no calendar: the window starts are computed here, in the
chosen time zone, and each window is queried as a range ending at the same instant, "now".

How spend over a window is counted: as the spend recording rules of the alerts
(``alerts/llm-cost-rules.yml``) and the dashboards' spend totals count it, with the same PromQL
(:func:`spend_query`). ``increase()`` alone would extrapolate to the window's edges and not count
the first sample of a series that appears inside the window (off by a little, or by everything for
short-lived processes). Each counter series contributes what it gained inside the window:

- its last value in the window minus its value at the window's start (its last sample in the
  hour before the start: a data gap shorter than that at the start changes nothing);
- its whole last value when it had none at the start (first seen inside the window: a new
  process, label combination or model), or less than its value at the start (a reset at the
  start);
- Prometheus' ``increase()`` when the counter was reset inside the window (a process restart
  with the same labels): there the figure is approximate (extrapolated to the window's edges).

The alerts' own ratio (recording rule ``budget:llm_cost_USD:ratio``, when the rules are loaded)
is given next to each budget in the JSON output, and in the text when it would give another
status (the rules were last evaluated a little earlier, or older rules are loaded).

When Prometheus has deleted data (it is older than its retention) and a window reaches further
back, the series it first saw after that are counted from their first sample on (a counter's
value at the retention edge is not spend inside the window) and a note says so.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any

from .budgets import SCOPE_LABELS

__all__ = [
    "DEFAULT_URL",
    "EXCEEDED_ABOVE",
    "WARNING_FROM",
    "PrometheusAPI",
    "ReportError",
    "Window",
    "build_report",
    "calendar_windows",
    "days_left_in_month",
    "parse_range",
    "ratio",
    "render_json",
    "render_text",
    "spend_query",
    "status_of",
]

DEFAULT_URL = "http://127.0.0.1:9090"

COST = "llm_cost_USD_total"
TOKENS = "llm_tokens_total"
REQUESTS = "llm_requests_total"
BUDGET = "llm_budget_USD"
BUDGET_RATIO_RULE = "budget:llm_cost_USD:ratio"
PROJECTED_RATIO_RULE = "budget:llm_cost_USD:projected_ratio"

#: LLMBudgetWarning: ``budget:llm_cost_USD:ratio >= 0.8``.
WARNING_FROM = 0.8
#: LLMDaily/Weekly/MonthlyBudgetExceeded: ``budget:llm_cost_USD:ratio > 1``.
EXCEEDED_ABOVE = 1.0

DAY = 86400.0
#: The budget windows of the alerts: rolling, in seconds.
ROLLING: dict[str, float] = {"day": DAY, "week": 7 * DAY, "month": 30 * DAY}
ROLLING_SPAN = {"day": "24 h", "week": "7 d", "month": "30 d"}
#: LLMMonthlyBudgetProjectedOverrun: the month window 7 days ahead at the last 24 h burn rate
#: (``increase[23d] + 7 * increase[24h]``).
HORIZON_DAYS = 7

#: How far before a window's start its start value is looked for: a series that has a sample in
#: that span (a data gap at the start, such as a Prometheus or collector outage, shorter than it)
#: counts what it gained, not its whole value.
START_LOOKBACK = "1h"

#: The labels spend is broken down by: the four labels budgets can be scoped by.
GROUP = ("gen_ai_provider_name", "gen_ai_request_model", "gen_ai_agent_name", "llm_feature")
OUTCOME = ("error_type", "llm_price_status", "llm_usage_source")
TOKEN_TYPES = ("input", "cache_read", "cache_write", "output", "reasoning")
UNATTRIBUTED = "(unattributed)"

_DURATION = re.compile(r"(\d+)(ms|[ywdhms])")
_UNIT_SECONDS = {"y": 365 * DAY, "w": 7 * DAY, "d": DAY, "h": 3600.0, "m": 60.0, "s": 1.0,
                 "ms": 0.001}  # fmt: skip


class ReportError(Exception):
    """Something that stops the report (Prometheus unreachable, a failed query, no data): the
    message is for the user, the traceback is not."""


# ------------------------------------------------------------------------------------------
# Windows and arithmetic
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """``[start, end]`` in Unix seconds; ``name`` for the output (``today``, ``last 24 h``)."""

    name: str
    start: float
    end: float

    @property
    def ms(self) -> int:
        """The window's length in whole milliseconds, as PromQL ranges are written."""
        return round((self.end - self.start) * 1000)


def parse_duration(text: str) -> float | None:
    """Seconds of a Prometheus duration (``90m``, ``1h30m``, ``7d``), None when not one."""
    text = text.strip()
    if not text or _DURATION.sub("", text):
        return None
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION.findall(text))
    return seconds if seconds > 0 else None


def _local_midnight(day: date, tz: tzinfo) -> float:
    # A midnight skipped by a DST change resolves to the first instant of that day.
    return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def calendar_windows(now: float, tz: tzinfo) -> dict[str, Window]:
    """``today``, ``this week`` (from Monday) and ``this month``, up to ``now``, in ``tz``."""
    local = datetime.fromtimestamp(now, tz).date()
    monday = local - timedelta(days=local.weekday())
    return {
        "today": Window("today", _local_midnight(local, tz), now),
        "week": Window("this week", _local_midnight(monday, tz), now),
        "month": Window("this month", _local_midnight(local.replace(day=1), tz), now),
    }


def month_end(now: float, tz: tzinfo) -> float:
    """The first instant of next month in ``tz``."""
    return _local_midnight(_next_month(datetime.fromtimestamp(now, tz).date()), tz)


def days_left_in_month(now: float, tz: tzinfo) -> float:
    """Days of 24 h from ``now`` to the end of the month in ``tz``, today's remainder included:
    the cockpit's ``days_in_month() - day_of_month() + 1 - (time() % 86400) / 86400`` (UTC)."""
    return (month_end(now, tz) - now) / DAY


def parse_range(spec: str, now: float, tz: tzinfo) -> Window:
    """``today``, ``week`` or ``month`` (calendar, in ``tz``), or a duration (``24h``, ``7d``,
    ``90m``: rolling, up to ``now``). Raises ValueError."""
    key = spec.strip().lower()
    key = {"this-week": "week", "this-month": "month", "day": "today"}.get(key, key)
    calendar = calendar_windows(now, tz)
    if key in calendar:
        return calendar[key]
    seconds = parse_duration(key)
    if seconds is None:
        raise ValueError(
            f"--range: expected today, week, month or a duration such as 24h, 7d, 90m; got {spec!r}"
        )
    return Window(f"last {key}", now - seconds, now)


def ratio(spent: float, budget: float | None) -> float | None:
    """``spent / budget`` as PromQL divides (a budget of 0 gives +Inf once anything is spent and
    NaN, here None, while nothing is); None without a budget."""
    if budget is None:
        return None
    if budget == 0:
        return None if spent == 0 else math.copysign(math.inf, spent)
    return spent / budget


def status_of(value: float | None) -> str | None:
    """The alert rules' verdict on a budget ratio: ``exceeded`` above 1 (the ``*Exceeded``
    alerts), ``warning`` from 0.8 (``LLMBudgetWarning``), else ``ok``; None without a ratio."""
    if value is None:
        return None
    if value > EXCEEDED_ABOVE:
        return "exceeded"
    if value >= WARNING_FROM:
        return "warning"
    return "ok"


_SEVERITY = {None: 0, "ok": 0, "warning": 1, "exceeded": 2}


def worst(statuses: Iterable[str | None]) -> str:
    return max(statuses, key=lambda s: _SEVERITY[s], default="ok") or "ok"


# ------------------------------------------------------------------------------------------
# PromQL
# ------------------------------------------------------------------------------------------


def spend_query(metric: str, window: Window, by: Sequence[str], *, first_in_full: bool) -> str:
    """What each series of counter ``metric`` gained inside ``window`` (ending at the query's
    evaluation time), summed by the labels ``by``. The spend recording rules of
    ``alerts/llm-cost-rules.yml`` and the dashboards' spend totals are this same PromQL.

    Per series: last value in the window minus the value at its start (its last sample in the
    :data:`START_LOOKBACK` before the start); the whole last value when there was none at the
    start (``first_in_full``; otherwise last minus first value in the window) or when the last
    value is below it (a reset at the start); ``increase()`` when the counter was reset inside
    the window.
    """
    rng = f"{metric}[{window.ms}ms]"
    last = f"last_over_time({rng})"
    at_start = f"last_over_time({metric}[{START_LOOKBACK}] offset {window.ms}ms)"
    if first_in_full:
        # (A reset at the start, last < at_start, falls to the last term as a new series does.)
        exact = f"(({last} - {at_start}) >= 0) or {last}"
    else:
        first_seen = f"({last} - min_over_time({rng}))"
        exact = f"(({last} - {at_start}) >= 0) or ({last} and {at_start}) or {first_seen}"
    per_series = f"(({exact}) unless (resets({rng}) > 0)) or increase({rng})"
    return f"sum by ({', '.join(by)}) ({per_series})"


# ------------------------------------------------------------------------------------------
# Prometheus HTTP API
# ------------------------------------------------------------------------------------------


class PrometheusAPI:
    """The few calls of Prometheus' HTTP API the report needs (standard library only)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"--prometheus: expected an http:// or https:// URL, got {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(
        self, path: str, params: Sequence[tuple[str, str]], what: str, *, post: bool = False
    ) -> Any:
        """GET (or POST, form-encoded: no URL length limit, for queries) ``/api/v1/<path>``."""
        encoded = urllib.parse.urlencode(params)
        if post:
            request = urllib.request.Request(
                f"{self.url}/api/v1/{path}",
                data=encoded.encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                method="POST",
            )
        else:
            query = f"?{encoded}" if encoded else ""
            request = urllib.request.Request(f"{self.url}/api/v1/{path}{query}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            answer = _json_or_none(raw)
            if isinstance(answer, dict) and answer.get("status") == "error":
                raise ReportError(_api_error(answer, what)) from None
            raise ReportError(
                f"{self.url}/api/v1/{path} answered HTTP {exc.code} {exc.reason}: is this the URL "
                "of a Prometheus (or compatible) server?"
            ) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise ReportError(self._timed_out()) from None
            text = getattr(reason, "strerror", None) or str(reason)
            raise ReportError(f"cannot reach Prometheus at {self.url}: {text}") from None
        except TimeoutError:
            raise ReportError(self._timed_out()) from None
        except OSError as exc:
            raise ReportError(
                f"cannot reach Prometheus at {self.url}: {exc.strerror or exc}"
            ) from None
        answer = _json_or_none(raw)
        if not isinstance(answer, dict) or "status" not in answer:
            raise ReportError(
                f"{self.url}/api/v1/{path} did not answer with Prometheus' JSON: is this the URL "
                "of a Prometheus (or compatible) server?"
            )
        if answer["status"] != "success":
            raise ReportError(_api_error(answer, what))
        return answer.get("data")

    def _timed_out(self) -> str:
        return (
            f"Prometheus at {self.url} did not answer within {self.timeout:g} s "
            "(a longer --timeout may help on a large Prometheus)"
        )

    def query(self, expr: str, at: float) -> list[tuple[dict[str, str], float]]:
        """An instant query at ``at``: ``[(labels, value)]`` (a scalar has no labels)."""
        data = self._call(
            "query", [("query", expr), ("time", f"{at:.3f}")], f"query {expr}", post=True
        )
        if not isinstance(data, dict):
            raise ReportError(f"unexpected answer to the query {expr}: {data!r}")
        kind, result = data.get("resultType"), data.get("result")
        try:
            if kind == "scalar":
                return [({}, float(result[1]))]  # type: ignore[index]
            if kind == "vector":
                return [(dict(r["metric"]), float(r["value"][1])) for r in result]  # type: ignore[union-attr]
        except (KeyError, IndexError, TypeError, ValueError):
            pass
        raise ReportError(f"unexpected answer to the query {expr}: {kind} {result!r}"[:500])

    def metric_names(self, pattern: str, start: float, end: float) -> list[str]:
        """Names of the metrics matching the regex ``pattern`` with samples in ``[start, end]``."""
        data = self._call(
            "label/__name__/values",
            [
                ("match[]", '{__name__=~"' + pattern + '"}'),
                ("start", f"{start:.3f}"),
                ("end", f"{end:.3f}"),
            ],
            "the metric names",
        )
        return [str(name) for name in data or []]

    def has_data_before(self, instant: float) -> bool:
        """Whether Prometheus holds any sample (of any series) at or before ``instant``."""
        return bool(self._call("labels", [("end", f"{instant:.3f}")], "the label names"))

    def retention(self) -> float | None:
        """Prometheus' time-based retention in seconds; None when unknown (no such API, as on
        some compatible servers, or a size-only retention)."""
        try:
            data = self._call("status/runtimeinfo", [], "the runtime information")
        except ReportError:
            return None
        text = str((data or {}).get("storageRetention") or "")
        for part in text.split(" or "):
            seconds = parse_duration(part)
            if seconds is not None:
                return seconds
        return None


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _api_error(answer: Mapping[str, Any], what: str) -> str:
    kind = answer.get("errorType") or "error"
    return f"Prometheus refused {what}: {kind}: {answer.get('error')}"


# ------------------------------------------------------------------------------------------
# The report
# ------------------------------------------------------------------------------------------


def _iso(instant: float, tz: tzinfo) -> str:
    return datetime.fromtimestamp(instant, tz).isoformat(timespec="seconds")


def _grouped(
    rows: Iterable[tuple[dict[str, str], float]], labels: Sequence[str]
) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for metric, value in rows:
        if math.isfinite(value):
            out[tuple(metric.get(label, "") for label in labels)] += value
    return dict(out)


def _slice(groups: Mapping[tuple[str, ...], float], scope: Mapping[str, str]) -> float:
    """The spend of the series matching ``scope`` (every label equal) in ``groups`` keyed by
    :data:`GROUP`."""
    index = {label: GROUP.index(label) for label in scope}
    return sum(
        value
        for key, value in groups.items()
        if all(key[index[label]] == want for label, want in scope.items())
    )


def _label_key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__" and v != ""))


@dataclass
class _Budget:
    window: str
    usd: float
    scope: dict[str, str]
    labels: dict[str, str]

    def scope_text(self) -> str:
        if not self.scope:
            text = "all calls"
        else:
            ((label, value),) = self.scope.items()
            text = f'{SCOPE_LABELS[label]} "{value}"'
        extra = {k: v for k, v in self.labels.items() if k not in SCOPE_LABELS and k != "window"}
        if extra:
            text += " {" + ", ".join(f"{k}={v}" for k, v in sorted(extra.items())) + "}"
        return text


class _Reporter:
    def __init__(self, api: PrometheusAPI, now: float, tz: tzinfo) -> None:
        self.api = api
        self.now = now
        self.tz = tz
        self.notes: list[str] = []
        self._trust: dict[float, bool] = {}
        self._deleted_before: float | None = None
        self._retention = 0.0

    # -- data horizon ------------------------------------------------------------------------

    def check_horizon(self) -> None:
        """Find whether Prometheus has deleted old data (then windows reaching past the
        retention edge count first-seen series from their first sample only)."""
        retention = self.api.retention()
        if retention is None:
            return
        edge = self.now - retention
        # Data from within an hour of the retention edge: Prometheus has been running at least
        # that long, so anything older was deleted.
        if self.api.has_data_before(edge + 3600):
            self._deleted_before = edge
            self._retention = retention

    def first_in_full(self, window: Window) -> bool:
        if self._deleted_before is None or window.start >= self._deleted_before + 300:
            return True
        if window.start not in self._trust:
            self._trust[window.start] = self.api.has_data_before(window.start)
        return self._trust[window.start]

    # -- queries -----------------------------------------------------------------------------

    def gained(
        self, metric: str, window: Window, by: Sequence[str]
    ) -> dict[tuple[str, ...], float]:
        if window.ms < 1:
            return {}
        full = self.first_in_full(window)
        if not full:
            note = (
                f"Prometheus keeps {_span(self._retention)} of data and {window.name} starts "
                f"before that: spend older than "
                f"{_iso(self._deleted_before or 0, self.tz)} is missing from it"
            )
            if note not in self.notes:
                self.notes.append(note)
        rows = self.api.query(spend_query(metric, window, by, first_in_full=full), self.now)
        return _grouped(rows, by)

    def budgets(self) -> tuple[list[_Budget], list[dict[str, Any]]]:
        kept: list[_Budget] = []
        ignored: list[dict[str, Any]] = []
        for labels, value in self.api.query(BUDGET, self.now):
            labels = {k: v for k, v in labels.items() if k != "__name__"}
            scope = {k: labels[k] for k in SCOPE_LABELS if labels.get(k)}
            window = labels.get("window", "")
            reason = None
            if window not in ROLLING:
                reason = f"window {window!r} is not one of day, week, month"
            elif len(scope) > 1:
                reason = "more than one scope label (the budget rules ignore it too)"
            elif not math.isfinite(value):
                reason = f"amount {value} is not a number"
            if reason:
                ignored.append({"labels": labels, "budget_usd": _finite(value), "reason": reason})
                self.notes.append(f"budget {_labels_text(labels)} ignored: {reason}")
                continue
            kept.append(_Budget(window, value, scope, labels))
        order = {w: i for i, w in enumerate(ROLLING)}
        kept.sort(key=lambda b: (order[b.window], bool(b.scope), b.scope_text(), b.usd))
        return kept, ignored

    def alert_ratios(self, rule: str) -> dict[tuple[tuple[str, str], ...], float]:
        try:
            rows = self.api.query(rule, self.now)
        except ReportError:
            return {}
        return {_label_key(labels): value for labels, value in rows}


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _labels_text(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _span(seconds: float) -> str:
    for unit, size in (("d", DAY), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _verdict(spent: float, budget: float | None) -> dict[str, Any]:
    value = ratio(spent, budget)
    return {"budget_usd": budget, "ratio": _finite(value), "status": status_of(value)}


def build_report(
    api: PrometheusAPI,
    now: float,
    tz: tzinfo,
    range_spec: str = "month",
    top: int = 10,
    tz_name: str = "UTC",
) -> dict[str, Any]:
    """The report as a JSON-able dict (see :func:`render_text` for the human form).

    Raises :class:`ReportError` (Prometheus unreachable, a query refused, no ``llm_*`` series)
    and ValueError (a bad ``range_spec``).
    """
    chosen = parse_range(range_spec, now, tz)
    calendar = calendar_windows(now, tz)
    rolling = {w: Window(f"last {ROLLING_SPAN[w]}", now - s, now) for w, s in ROLLING.items()}
    burn = rolling["day"]
    ahead = Window("last 23 d", now - (30 - HORIZON_DAYS) * DAY, now)

    reporter = _Reporter(api, now, tz)
    earliest = min(chosen.start, calendar["month"].start, rolling["month"].start)
    found = api.metric_names(f"{COST}|{TOKENS}|{REQUESTS}", earliest, now)
    if REQUESTS not in found:
        since = _iso(earliest, tz)
        raise ReportError(
            f"no llm_* series yet in Prometheus at {api.url} (no {REQUESTS} since {since}): "
            "is the application instrumented (otel_llm_cost.instrument() or "
            "opentelemetry-instrument), and does Prometheus scrape its exporter or the collector?"
        )
    reporter.check_horizon()

    # Spend per (provider, model, agent, feature) for every window, each queried once.
    windows = [*calendar.values(), *rolling.values(), ahead, chosen]
    spend: dict[Window, dict[tuple[str, ...], float]] = {}
    by_length: dict[int, dict[tuple[str, ...], float]] = {}
    for window in windows:
        if window.ms not in by_length:
            by_length[window.ms] = reporter.gained(COST, window, GROUP)
        spend[window] = by_length[window.ms]

    def total(window: Window) -> float:
        return sum(spend[window].values())

    budgets, ignored = reporter.budgets()
    unscoped: dict[str, float] = {}
    for budget in budgets:
        if not budget.scope:  # the cockpit's stat panels: the smallest budget of all calls
            unscoped[budget.window] = min(budget.usd, unscoped.get(budget.window, math.inf))

    calendar_rows = []
    for key, window in calendar.items():
        spent = total(window)
        calendar_rows.append(
            {
                "period": window.name,
                "start": _iso(window.start, tz),
                "spent_usd": spent,
                **_verdict(spent, unscoped.get("day" if key == "today" else key)),
            }
        )

    month_so_far = total(calendar["month"])
    burn_rate = total(burn)
    days_left = days_left_in_month(now, tz)
    projected_month = month_so_far + burn_rate * days_left
    month_end_row = {
        "end": _iso(month_end(now, tz), tz),
        "spent_usd": month_so_far,
        "burn_usd_per_day": burn_rate,
        "days_left": days_left,
        "projected_usd": projected_month,
        **_verdict(projected_month, unscoped.get("month")),
    }

    alert_ratio = reporter.alert_ratios(BUDGET_RATIO_RULE)
    projected_alert = reporter.alert_ratios(PROJECTED_RATIO_RULE)
    rolling_rows: list[dict[str, Any]] = []
    projected_rows: list[dict[str, Any]] = []
    for window_key, window in rolling.items():
        mine = [b for b in budgets if b.window == window_key]
        if not any(not b.scope for b in mine):  # the total, even without a budget
            rolling_rows.append(
                {"window": window_key, "span": ROLLING_SPAN[window_key], "scope": {},
                 "labels": {}, "scope_text": "all calls", "spent_usd": total(window),
                 **_verdict(total(window), None), "alert_ratio": None}
            )  # fmt: skip
        for budget in mine:
            row = {
                "window": window_key,
                "span": ROLLING_SPAN[window_key],
                "scope": budget.scope,
                "labels": budget.labels,
                "scope_text": budget.scope_text(),
                "spent_usd": _slice(spend[window], budget.scope),
                **_verdict(_slice(spend[window], budget.scope), budget.usd),
                "alert_ratio": _finite(alert_ratio.get(_label_key(budget.labels))),
            }
            rolling_rows.append(row)
            if window_key == "month":
                spent_23d = _slice(spend[ahead], budget.scope)
                burn_slice = _slice(spend[burn], budget.scope)
                projected = spent_23d + HORIZON_DAYS * burn_slice
                value = ratio(projected, budget.usd)
                projected_rows.append(
                    {
                        "scope": budget.scope,
                        "labels": budget.labels,
                        "scope_text": budget.scope_text(),
                        "spent_23d_usd": spent_23d,
                        "burn_usd_per_day": burn_slice,
                        "projected_usd": projected,
                        "budget_usd": budget.usd,
                        "ratio": _finite(value),
                        "status": status_of(value),
                        # LLMMonthlyBudgetProjectedOverrun: projected > 1, month not yet > 1.
                        "overrun": bool(
                            value is not None
                            and value > EXCEEDED_ABOVE
                            and row["status"] != "exceeded"
                        ),
                        "alert_ratio": _finite(projected_alert.get(_label_key(budget.labels))),
                    }
                )

    # The chosen range: top models and agents, requests, tokens.
    cost = spend[chosen]
    tokens = reporter.gained(TOKENS, chosen, (*GROUP[:3], "llm_token_type"))
    requests = reporter.gained(REQUESTS, chosen, (*GROUP[:3], *OUTCOME))
    range_section = _range_section(chosen, tz, cost, tokens, requests, top)

    status = worst([r["status"] for r in calendar_rows] + [r["status"] for r in rolling_rows])
    return {
        "prometheus": api.url,
        "time": _iso(now, timezone.utc).replace("+00:00", "Z"),
        "tz": tz_name,
        "local_time": _iso(now, tz),
        "status": status,
        "calendar": calendar_rows,
        "month_end": month_end_row,
        "rolling": rolling_rows,
        "projected_30d": projected_rows,
        "range": range_section,
        "ignored_budgets": ignored,
        "notes": reporter.notes,
    }


def _range_section(
    window: Window,
    tz: tzinfo,
    cost: Mapping[tuple[str, ...], float],
    tokens: Mapping[tuple[str, ...], float],
    requests: Mapping[tuple[str, ...], float],
    top: int,
) -> dict[str, Any]:
    """Keys: cost by :data:`GROUP`; tokens by provider, model, agent, token type; requests by
    provider, model, agent, :data:`OUTCOME`."""
    models: dict[tuple[str, str], dict[str, float]] = defaultdict(
        lambda: {"cost_usd": 0.0, "requests": 0.0, "tokens": 0.0}
    )
    agents: dict[str, dict[str, float]] = defaultdict(
        lambda: {"cost_usd": 0.0, "requests": 0.0, "tokens": 0.0}
    )
    for (provider, model, agent, _feature), value in cost.items():
        models[provider, model]["cost_usd"] += value
        agents[agent]["cost_usd"] += value
    by_type: dict[str, float] = defaultdict(float)
    for (provider, model, agent, kind), value in tokens.items():
        models[provider, model]["tokens"] += value
        agents[agent]["tokens"] += value
        by_type[kind] += value
    count = failed = unpriced = estimated = 0.0
    for (provider, model, agent, error, price, usage), value in requests.items():
        models[provider, model]["requests"] += value
        agents[agent]["requests"] += value
        count += value
        failed += value if error else 0.0
        unpriced += value if price == "unpriced" else 0.0
        estimated += value if usage == "estimated" else 0.0
    spent = sum(cost.values())

    def ranked(items: Iterable[tuple[Any, dict[str, float]]]) -> list[tuple[Any, dict[str, float]]]:
        nonzero = [(k, v) for k, v in items if any(v.values())]
        return sorted(nonzero, key=lambda kv: (-kv[1]["cost_usd"], -kv[1]["requests"], kv[0]))

    def entry(values: dict[str, float]) -> dict[str, Any]:
        return {
            "cost_usd": values["cost_usd"],
            "share": values["cost_usd"] / spent if spent > 0 else None,
            "requests": values["requests"],
            "cost_per_request_usd": (
                values["cost_usd"] / values["requests"] if values["requests"] else None
            ),
            "tokens": values["tokens"],
        }

    top_models = ranked(models.items())
    top_agents = ranked(agents.items())
    ordered_types = [t for t in TOKEN_TYPES if t in by_type] + sorted(
        t for t in by_type if t not in TOKEN_TYPES
    )
    return {
        "name": window.name,
        "start": _iso(window.start, tz),
        "end": _iso(window.end, tz),
        "cost_usd": spent,
        "requests": count,
        "failed_requests": failed,
        "unpriced_requests": unpriced,
        "estimated_requests": estimated,
        "unpriced_share": unpriced / count if count else None,
        "estimated_share": estimated / count if count else None,
        "tokens": {kind: by_type[kind] for kind in ordered_types},
        "top_models": [
            {"provider": provider, "model": model, **entry(values)}
            for (provider, model), values in top_models[:top]
        ],
        "more_models": _rest(top_models[top:]),
        "top_agents": [
            {"agent": agent or None, **entry(values)} for agent, values in top_agents[:top]
        ],
        "more_agents": _rest(top_agents[top:]),
    }


def _rest(items: Sequence[tuple[Any, dict[str, float]]]) -> dict[str, float] | None:
    if not items:
        return None
    return {
        "count": len(items),
        "cost_usd": sum(v["cost_usd"] for _, v in items),
        "requests": sum(v["requests"] for _, v in items),
    }


# ------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------


def render_json(report: Mapping[str, Any]) -> str:
    """The report as JSON (no NaN or Infinity: a ratio that is not finite is null)."""
    return json.dumps(report, indent=2, allow_nan=False) + "\n"


def usd(value: float | None) -> str:
    """USD for a terminal: cents from 1 up, four significant digits (at least two decimals)
    below, since single LLM calls cost fractions of a cent."""
    if value is None:
        return "-"
    if value == 0:
        return "0.00"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    if abs(value) < 1e-4:
        return f"{value:.2e}"
    text = f"{value:.4g}"
    return text if len(text.partition(".")[2]) >= 2 else f"{value:.2f}"


def percent(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value * 100:.1f} %"


def count(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def _ratio_or_inf(row: Mapping[str, Any]) -> float | None:
    if row["ratio"] is None and row.get("status") == "exceeded":
        return math.inf
    return row["ratio"]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [
            str(c).rjust(widths[i]) if i in right else str(c).ljust(widths[i])
            for i, c in enumerate(r)
        ]
        lines.append("  " + "  ".join(cells).rstrip())
    return lines


def _wrap(text: str, first: str = "  ", width: int = 100) -> list[str]:
    return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=first + "  ")


def _short(iso: str) -> str:
    """``2026-12-04T00:00:00+01:00`` -> ``2026-12-04 00:00``."""
    return iso[:16].replace("T", " ")


def render_text(report: Mapping[str, Any]) -> str:
    """The report for a terminal."""
    tz = report["tz"]
    out = [
        f"LLM spend at {_short(report['local_time'])} {tz} ({report['time']}), "
        f"from {report['prometheus']}",
        "",
    ]

    out.append(f"Calendar ({tz})")
    rows = [
        [r["period"], _short(r["start"]), usd(r["spent_usd"]), usd(r["budget_usd"]),
         percent(_ratio_or_inf(r)), r["status"] or ""]
        for r in report["calendar"]
    ]  # fmt: skip
    end = report["month_end"]
    rows.append(
        ["month-end projection", "to " + _short(end["end"]), usd(end["projected_usd"]),
         usd(end["budget_usd"]), percent(_ratio_or_inf(end)), end["status"] or ""]
    )  # fmt: skip
    out += _table(["period", "since", "spent", "budget", "used", "status"], rows, {2, 3, 4})
    out.append(
        f"  (projection: {usd(end['spent_usd'])} so far + {usd(end['burn_usd_per_day'])} "
        f"spent in the last 24 h x {end['days_left']:.2f} days left)"
    )
    out.append("")

    out.append("Rolling windows, as the budget alerts compare them (budgets: llm_budget_USD)")
    rows = []
    differ = False
    for r in report["rolling"]:
        alert = ""
        if r["alert_ratio"] is not None and status_of(r["alert_ratio"]) != r["status"]:
            alert, differ = f"alerts: {percent(r['alert_ratio'])}", True
        rows.append(
            [r["span"], r["scope_text"], usd(r["spent_usd"]), usd(r["budget_usd"]),
             percent(_ratio_or_inf(r)), r["status"] or "", alert]
        )  # fmt: skip
    for r in report["projected_30d"]:
        flag = "overrun" if r["overrun"] else (r["status"] or "")
        rows.append(
            [f"30 d +{HORIZON_DAYS} d", r["scope_text"], usd(r["projected_usd"]),
             usd(r["budget_usd"]), percent(_ratio_or_inf(r)), flag, ""]
        )  # fmt: skip
    out += _table(["window", "scope", "spent", "budget", "used", "status", ""], rows, {2, 3, 4})
    if report["projected_30d"]:
        out += _wrap(
            f"(30 d +{HORIZON_DAYS} d: the 30-day window {HORIZON_DAYS} days from now if the last "
            f"24 h burn rate goes on: spend of the last 23 d + {HORIZON_DAYS} x the last 24 h, "
            "as LLMMonthlyBudgetProjectedOverrun computes it)"
        )
    if differ:
        out += _wrap(
            "(alerts: the alert rules' own ratio, budget:llm_cost_USD:ratio, where it gives "
            "another status: their increase() extrapolates and misses a new series' first sample)"
        )
    out.append("")

    section = report["range"]
    since = f"{_short(section['start'])} to {_short(section['end'])} {tz}"
    out.append(f"{section['name'].capitalize()} ({since})")
    out.append(
        f"  spent {usd(section['cost_usd'])} USD on {count(section['requests'])} requests "
        f"({count(section['failed_requests'])} failed); "
        f"unpriced {percent(section['unpriced_share'])}, "
        f"estimated usage {percent(section['estimated_share'])}"
    )
    if section["tokens"]:
        out.append(
            "  tokens: " + ", ".join(f"{k} {count(v)}" for k, v in section["tokens"].items())
        )
    out.append("")
    for title, key, name in (
        ("Top models", "top_models", lambda r: f"{r['provider']} {r['model']}"),
        ("Top agents", "top_agents", lambda r: r["agent"] or UNATTRIBUTED),
    ):
        entries = section[key]
        out.append(f"{title} by cost ({section['name']})")
        if not entries:
            out.append("  none")
        else:
            rows = [
                [name(r), usd(r["cost_usd"]), percent(r["share"]), count(r["requests"]),
                 usd(r["cost_per_request_usd"]), count(r["tokens"])]
                for r in entries
            ]  # fmt: skip
            rest = section["more_" + key.split("_")[1]]
            if rest:
                rows.append(
                    [f"({rest['count']} more)", usd(rest["cost_usd"]), "", count(rest["requests"]),
                     "", ""]
                )  # fmt: skip
            out += _table(
                ["", "cost", "share", "requests", "per request", "tokens"], rows, {1, 2, 3, 4, 5}
            )
        out.append("")

    for note in report["notes"]:
        out += _wrap(f"note: {note}", first="")
    if report["notes"]:
        out.append("")
    out.append(f"status: {report['status']}")
    return "\n".join(out) + "\n"
