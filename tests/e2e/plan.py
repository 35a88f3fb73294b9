"""The fake server's answers to ``tests/apps/workload.py`` and what they must add up to.

:func:`scripts` gives one :class:`Script` per call of the workload's ``PLAN``, in order.
:func:`expected` computes, from what the server actually sent (``Exchange.usage``, status) and
from genai-prices alone (``tests/expected.py``), the totals that Prometheus must show. Nothing
here uses otel_llm_cost's partition or pricing code.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import genai_prices

from otel_llm_cost.fakes.openai_server import Exchange, Script
from tests.apps.workload import PLAN
from tests.expected import (
    close_to,
    genai_cost,
    openai_chat_wire_cost,
    openai_responses_wire_cost,
)

#: The contract's attributes on every metric (Prometheus labels).
COMMON = {
    "gen_ai_provider_name",
    "gen_ai_operation_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "gen_ai_agent_name",
    "llm_feature",
}
#: Labels each series carries through the collector, besides the ``otel_scope_*`` ones that the
#: exporters add: job/instance from service.name/service.instance.id, and service_name, copied
#: onto the points by the config's transform processor.
PIPELINE = {"__name__", "job", "instance", "service_name"}
LABELS = {
    "llm_cost_USD_total": COMMON | {"llm_token_type"},
    "llm_tokens_total": COMMON | {"llm_token_type"},
    "llm_requests_total": COMMON | {"error_type", "llm_usage_source", "llm_price_status"},
    "llm_request_cost_USD_bucket": {
        "gen_ai_provider_name",
        "gen_ai_operation_name",
        "gen_ai_request_model",
        "le",
    },
    "gen_ai_client_token_usage_bucket": COMMON | {"gen_ai_token_type", "le"},
    "gen_ai_client_operation_duration_seconds_bucket": COMMON | {"error_type", "le"},
    "gen_ai_client_operation_time_to_first_chunk_seconds_bucket": COMMON | {"le"},
}

#: One answer per ``PLAN`` entry (same order). Covers every token type the openai provider
#: produces (input, cache_read, output, reasoning), a dated response model, a 429 and a model
#: that genai-prices does not know.
_SCRIPTS: tuple[Script, ...] = (
    # chat gpt-4o-mini: cached input, answered by the dated model id
    Script(
        prompt_tokens=1200,
        cached_tokens=1024,
        completion_tokens=35,
        response_model="gpt-4o-mini-2024-07-18",
    ),
    # chat gpt-4o-mini, streamed (usage asked for by the instrumentation)
    Script(prompt_tokens=300, completion_tokens=42),
    # chat o4-mini: cached input and reasoning
    Script(prompt_tokens=2000, cached_tokens=1536, completion_tokens=900, reasoning_tokens=640),
    # chat o4-mini, streamed, cached input and reasoning
    Script(prompt_tokens=700, cached_tokens=256, completion_tokens=300, reasoning_tokens=128),
    # responses o4-mini: cached input and reasoning
    Script(prompt_tokens=1500, cached_tokens=512, completion_tokens=700, reasoning_tokens=448),
    # responses gpt-4.1-mini, streamed, cached input
    Script(prompt_tokens=800, cached_tokens=128, completion_tokens=50),
    # embeddings
    Script(prompt_tokens=64),
    # chat gpt-4o-mini: rate limited (the workload's client does not retry)
    Script(status=429),
    # chat with a model nobody prices: tokens counted, cost not
    Script(prompt_tokens=50, completion_tokens=10),
)
assert len(_SCRIPTS) == len(PLAN), "one script per workload call"


def scripts(rounds: int = 1) -> list[Script]:
    """The scripts to enqueue for ``rounds`` runs of the workload's plan."""
    return list(_SCRIPTS) * rounds


@functools.cache
def genai_prices_knows(model: str) -> bool:
    try:
        genai_prices.calc_price(genai_prices.Usage(input_tokens=1), model, provider_id="openai")
    except LookupError:
        return False
    return True


@dataclass
class Expected:
    calls: int = 0
    cost: float = 0.0
    tokens: Counter[str] = field(default_factory=Counter)
    """``llm.token.type`` -> tokens."""
    requests: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """``(error_type, llm_price_status, llm_usage_source)`` -> requests ("" = no error)."""


def _partition(path: str, wire: dict[str, Any]) -> dict[str, int]:
    """The contract's token types, from the wire usage (totals include their parts)."""
    if path.endswith("/responses"):
        total_in, total_out = wire["input_tokens"], wire["output_tokens"]
        cached = (wire.get("input_tokens_details") or {}).get("cached_tokens") or 0
        reasoning = (wire.get("output_tokens_details") or {}).get("reasoning_tokens") or 0
    else:
        total_in, total_out = wire["prompt_tokens"], wire.get("completion_tokens", 0)
        cached = (wire.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        reasoning = (wire.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {
        "input": total_in - cached,
        "cache_read": cached,
        "output": total_out - reasoning,
        "reasoning": reasoning,
    }


def _wire_cost(path: str, model: str, wire: dict[str, Any]) -> float:
    if path.endswith("/responses"):
        return openai_responses_wire_cost(model, wire)
    if path.endswith("/embeddings"):
        return genai_cost("openai", model, input_tokens=wire["prompt_tokens"])
    return openai_chat_wire_cost(model, wire)


def expected(exchanges: list[Exchange], used: list[Script]) -> Expected:
    """Totals for the exchanges the server answered with the scripts ``used`` (same order)."""
    assert len(exchanges) == len(used), (len(exchanges), len(used))
    out = Expected()
    for exchange, script in zip(exchanges, used, strict=True):
        out.calls += 1
        model = script.response_model or exchange.request["model"]
        priced = genai_prices_knows(model) or genai_prices_knows(exchange.request["model"])
        error = str(exchange.status) if exchange.status >= 400 else ""
        wire = exchange.usage
        out.requests[
            (error, "catalog" if priced else "unpriced", "none" if wire is None else "provider")
        ] += 1
        if wire is None:
            continue
        for kind, count in _partition(exchange.path, wire).items():
            if count:
                out.tokens[kind] += count
        if priced:
            out.cost += _wire_cost(exchange.path, model, wire)
    return out


def cost_of(calls: Iterable[int], exchanges: list[Exchange], used: list[Script]) -> float:
    """What genai-prices says the calls (indexes into the exchanges and scripts) cost."""
    calls = list(calls)
    return expected([exchanges[i] for i in calls], [used[i] for i in calls]).cost


def assert_totals(prometheus: Any, exp: Expected, selector: str = "", timeout: float = 30) -> None:
    """Wait until Prometheus shows exactly the expected totals (cost to 1e-9 relative).

    ``prometheus`` is the conftest's ``Prometheus``; ``selector`` narrows every series, e.g.
    ``service_name="x"``. Each check polls: the last export may land a scrape later.
    """
    sel = "{" + selector + "}" if selector else ""
    prometheus.wait_for(
        f"sum(llm_requests_total{sel})", lambda v: v == exp.calls, timeout, want=exp.calls
    )
    prometheus.wait_for(
        f"sum(llm_cost_USD_total{sel})",
        lambda v: v is not None and close_to(v, exp.cost),
        timeout,
        want=exp.cost,
    )

    def tokens(query: str) -> dict[str, float]:
        return {k[0]: v for k, v in prometheus.by(query, "llm_token_type").items()}

    prometheus.wait_for(
        f"sum by (llm_token_type) (llm_tokens_total{sel})",
        lambda got: got == dict(exp.tokens),
        timeout,
        fetch=tokens,
        want=dict(exp.tokens),
    )
    outcome = ("error_type", "llm_price_status", "llm_usage_source")
    prometheus.wait_for(
        f"sum by ({', '.join(outcome)}) (llm_requests_total{sel})",
        lambda got: got == dict(exp.requests),
        timeout,
        fetch=lambda query: prometheus.by(query, *outcome),
        want=dict(exp.requests),
    )
