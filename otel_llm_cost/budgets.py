"""LLM budgets as a Prometheus rule file: what ``otel-llm-cost budgets`` writes.

A budget is a recording rule of the ``llm-budgets`` group whose series is
``llm_budget_USD{window="day"|"week"|"month"[, <one scope label>]}`` with the amount in USD
(``expr: vector(3)``), exactly the format of the repository's ``alerts/budgets.yml``, which the
budget alerts of ``alerts/llm-cost-rules.yml`` read. Windows are rolling: day = last 24 h,
week = last 7 d, month = last 30 d. A budget without a scope label is compared with the total
spend; one with a scope label (at most one, among :data:`SCOPE_LABELS`) with the spend of that
agent, feature, provider or request model only.

:func:`render_budgets` renders budgets; :func:`parse_budgets` / :func:`load_budgets_file` read
the small YAML format::

    budgets:
      - {window: day, usd: 3}
      - {window: month, usd: 50, scope: {gen_ai_agent_name: support-bot}}
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "EXAMPLE_BUDGETS",
    "SCOPE_LABELS",
    "WINDOWS",
    "Budget",
    "BudgetError",
    "load_budgets_file",
    "make_budget",
    "parse_budgets",
    "render_budgets",
]

#: Budget windows, in the order they are written (rolling: 24 h, 7 d, 30 d).
WINDOWS: tuple[str, ...] = ("day", "week", "month")

#: The labels that scope a budget (at most one per budget), in the order they are written, with
#: what they select (for the comments of the rendered file).
SCOPE_LABELS: dict[str, str] = {
    "gen_ai_agent_name": "agent",
    "llm_feature": "feature",
    "gen_ai_provider_name": "provider",
    "gen_ai_request_model": "request model",
}

_SCOPE_HINTS = {
    "gen_ai_agent_name": "gen_ai.agent.name, set with usage_context(agent=...)",
    "llm_feature": "llm.feature, set with usage_context(feature=...)",
    "gen_ai_provider_name": "gen_ai.provider.name, e.g. openai, anthropic, gcp.gemini",
    "gen_ai_request_model": "gen_ai.request.model, the model asked for, all providers",
}

_ENTRY_KEYS = ("window", "usd", "scope")


class BudgetError(ValueError):
    """Invalid budgets. ``problems`` lists every problem found, one message each."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class Budget:
    """One budget: ``usd`` per rolling ``window``, optionally for one slice (``scope``)."""

    window: str
    usd: float
    scope: tuple[str, str] | None = None
    """``(label, value)``, e.g. ``("gen_ai_agent_name", "support-bot")``; None = all calls."""

    def labels(self) -> dict[str, str]:
        labels = {"window": self.window}
        if self.scope is not None:
            labels[self.scope[0]] = self.scope[1]
        return labels


#: The example budgets of ``alerts/budgets.yml``: 3 / 12 / 20 USD per day / week / month for all
#: calls, and 1 USD per day for the agent ``support-bot``.
EXAMPLE_BUDGETS: tuple[Budget, ...] = (
    Budget("day", 3),
    Budget("week", 12),
    Budget("month", 20),
    Budget("day", 1, ("gen_ai_agent_name", "support-bot")),
)


# ------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------


def _check_usd(value: Any, where: str, problems: list[str]) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append(f"{where}usd: must be a positive number of USD, got {value!r}")
        return None
    if not math.isfinite(value) or value <= 0:
        problems.append(f"{where}usd: must be a positive number of USD, got {value!r}")
        return None
    return float(value)


def _check_window(value: Any, where: str, problems: list[str]) -> str | None:
    if value not in WINDOWS:
        problems.append(
            f"{where}window: must be one of {', '.join(WINDOWS)} "
            f"(rolling 24 h, 7 d, 30 d), got {value!r}"
        )
        return None
    return str(value)


def _check_scope(value: Any, where: str, problems: list[str]) -> tuple[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        problems.append(
            f"{where}scope: must be a mapping of ONE label to its value, "
            f"e.g. {{gen_ai_agent_name: support-bot}}, got {value!r}"
        )
        return None
    known = ", ".join(SCOPE_LABELS)
    unknown = [str(k) for k in value if k not in SCOPE_LABELS]
    if unknown:
        problems.append(
            f"{where}scope: unknown label(s) {', '.join(unknown)}: a budget is scoped by one of "
            f"{known}"
        )
        return None
    if len(value) != 1:
        if not value:
            problems.append(f"{where}scope: empty (leave it out for a budget of all calls)")
        else:
            problems.append(
                f"{where}scope: at most one scope label per budget, got {' and '.join(value)} "
                "(the budget rules ignore a budget with two; give each slice its own budget)"
            )
        return None
    ((label, raw),) = value.items()
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        problems.append(f"{where}scope.{label}: must be a string, got {raw!r}")
        return None
    text = str(raw)
    if not text.strip():
        problems.append(
            f"{where}scope.{label}: empty value (leave the scope out for a budget of all calls)"
        )
        return None
    return (label, text)


def make_budget(
    window: Any, usd: Any, scope: Mapping[str, Any] | None = None, *, where: str = ""
) -> Budget:
    """A validated :class:`Budget`; raises :class:`BudgetError` naming every problem."""
    problems: list[str] = []
    checked_window = _check_window(window, where, problems)
    checked_usd = _check_usd(usd, where, problems)
    checked_scope = _check_scope(scope, where, problems)
    if problems:
        raise BudgetError(problems)
    assert checked_window is not None and checked_usd is not None
    return Budget(checked_window, checked_usd, checked_scope)


def parse_budgets(data: Any, source: str = "budgets") -> list[Budget]:
    """Budgets from the small YAML/JSON format (already loaded): ``{"budgets": [{"window": ...,
    "usd": ..., "scope": {label: value}}, ...]}``. Raises :class:`BudgetError`."""
    if not isinstance(data, Mapping) or "budgets" not in data:
        raise BudgetError(
            [
                f"{source}: expected a mapping with a `budgets:` list, "
                "e.g. budgets: [{window: day, usd: 3}]"
            ]
        )
    extra = [str(k) for k in data if k != "budgets"]
    entries = data["budgets"]
    problems: list[str] = []
    if extra:
        problems.append(f"{source}: unknown key(s) {', '.join(extra)} (only `budgets`)")
    if not isinstance(entries, list):
        raise BudgetError([*problems, f"{source}: budgets: must be a list"])
    budgets: list[Budget] = []
    for index, entry in enumerate(entries):
        where = f"{source}: budgets[{index}]."
        if not isinstance(entry, Mapping):
            problems.append(f"{where[:-1]}: must be a mapping with window and usd, got {entry!r}")
            continue
        unknown = [str(k) for k in entry if k not in _ENTRY_KEYS]
        if unknown:
            problems.append(
                f"{where[:-1]}: unknown key(s) {', '.join(unknown)} (allowed: window, usd, scope)"
            )
        missing = [k for k in ("window", "usd") if k not in entry]
        if missing:
            problems.append(f"{where[:-1]}: missing {' and '.join(missing)}")
            continue
        try:
            budgets.append(
                make_budget(entry["window"], entry["usd"], entry.get("scope"), where=where)
            )
        except BudgetError as err:
            problems.extend(err.problems)
    if problems:
        raise BudgetError(problems)
    return budgets


def load_budgets_file(path: str | Path) -> list[Budget]:
    """Budgets from a YAML (or JSON) file of the small format; :class:`BudgetError` if invalid,
    ``OSError`` if unreadable."""
    import yaml

    text = Path(path).read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise BudgetError([f"{path}: not valid YAML: {err}"]) from None
    return parse_budgets(data, str(path))


def _check_unique(budgets: Iterable[Budget]) -> None:
    seen: dict[tuple[str, tuple[str, str] | None], Budget] = {}
    problems = []
    for budget in budgets:
        key = (budget.window, budget.scope)
        if key in seen:
            what = "all calls" if budget.scope is None else "{}={}".format(*budget.scope)
            problems.append(
                f"two {budget.window} budgets for {what} ({_amount(seen[key].usd)} and "
                f"{_amount(budget.usd)} USD): keep one"
            )
        else:
            seen[key] = budget
    if problems:
        raise BudgetError(problems)


# ------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------

_HEADER = """\
# otel-llm-cost: LLM budgets (USD), read by the budget alerts of
# alerts/llm-cost-rules.yml. Load both files in prometheus.yml (rule_files).
# Generated by `otel-llm-cost budgets`; edit it by hand or generate it again.
#
# Each budget is one recording rule of the group below:
#
#   - record: llm_budget_USD       # always this name
#     expr: vector(3)              # the amount in USD
#     labels:
#       window: day                # day = last 24 h, week = last 7 d, month = last 30 d (rolling)
#       gen_ai_agent_name: x       # optional scope label, at most ONE of:
#                                  #   gen_ai_agent_name, llm_feature,
#                                  #   gen_ai_provider_name, gen_ai_request_model
#
# A budget without a scope label is compared with the total spend; a budget with
# one is compared with the spend of that agent, feature, provider or request
# model only.
#
# Alerts: LLMBudgetWarning at 80 % of any budget, LLMDaily/Weekly/Monthly-
# BudgetExceeded above 100 %, LLMMonthlyBudgetProjectedOverrun when the burn rate
# of the last 24 h would exceed a month budget within 7 days.
#
# Keep the group's evaluation interval at the default (1 min; under 5 min): the
# alert rules read the latest llm_budget_USD sample.
#
# Check and reload Prometheus:
#   promtool check rules alerts/budgets.yml
#   curl -X POST http://prometheus:9090/-/reload   (or send SIGHUP)
"""

_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]*")


def _amount(usd: float) -> str:
    """``3`` for 3.0, ``2.5``, ``0.01``: the shortest text that PromQL reads back as ``usd``."""
    if usd == int(usd) and abs(usd) < 1e15:
        return str(int(usd))
    return repr(float(usd))


def _yaml_str(value: str) -> str:
    """``value`` as a YAML scalar that loads back as this very string."""
    import yaml

    if _PLAIN.fullmatch(value) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def _sort_key(budget: Budget) -> tuple[int, str, int]:
    if budget.scope is None:
        return (0, "", WINDOWS.index(budget.window))
    label, value = budget.scope
    return (1 + list(SCOPE_LABELS).index(label), value, WINDOWS.index(budget.window))


def _coerce(item: Budget | Mapping[str, Any], index: int) -> Budget:
    if isinstance(item, Budget):
        # Re-validate: a Budget can be built by hand with anything in it.
        scope = None if item.scope is None else {item.scope[0]: item.scope[1]}
        return make_budget(item.window, item.usd, scope, where=f"budget {index}: ")
    if isinstance(item, Mapping):
        return parse_budgets({"budgets": [item]}, f"budget {index}")[0]
    raise BudgetError([f"budget {index}: expected a Budget or a mapping, got {item!r}"])


def render_budgets(budgets: Iterable[Budget | Mapping[str, Any]]) -> str:
    """The Prometheus rule file (group ``llm-budgets``) for ``budgets``, in the format of
    ``alerts/budgets.yml``: budgets of all calls first, then per scope label and value, each by
    window (day, week, month). Items are :class:`Budget` or mappings of the small format
    (``{"window": "day", "usd": 3, "scope": {...}}``). Raises :class:`BudgetError` for invalid
    budgets, for two budgets of the same window and slice, and for none at all."""
    checked: list[Budget] = []
    problems: list[str] = []
    for index, item in enumerate(budgets):
        try:
            checked.append(_coerce(item, index))
        except BudgetError as err:
            problems.extend(err.problems)
    if problems:
        raise BudgetError(problems)
    if not checked:
        raise BudgetError(["no budget given"])
    _check_unique(checked)

    lines = [_HEADER, "groups:", "  - name: llm-budgets", "    rules:"]
    previous: tuple[str, str] | bool | None = False  # False: no group comment written yet
    for budget in sorted(checked, key=_sort_key):
        if budget.scope != previous:
            if budget.scope is None:
                lines.append("      # Total spend of all LLM calls")
            else:
                label, value = budget.scope
                lines.append(
                    f"      # Spend of {SCOPE_LABELS[label]} "
                    f"{json.dumps(value, ensure_ascii=False)} only ({_SCOPE_HINTS[label]})"
                )
            previous = budget.scope
        lines += [
            "      - record: llm_budget_USD",
            f"        expr: vector({_amount(budget.usd)})",
            "        labels:",
        ]
        lines += [f"          {key}: {_yaml_str(value)}" for key, value in budget.labels().items()]
    return "\n".join(lines) + "\n"
