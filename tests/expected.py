"""Independent expectations: costs straight from genai-prices for the usage a fake server sent.

Nothing here uses otel_llm_cost's own partition or pricing code.
"""

from __future__ import annotations

from typing import Any

import genai_prices


def genai_cost(provider_id: str, model: str, **usage: int) -> float:
    """genai-prices' own total for ``usage`` (its keys: input_tokens = all input, ...)."""
    result = genai_prices.calc_price(
        genai_prices.Usage(**{k: v for k, v in usage.items() if v}), model, provider_id=provider_id
    )
    return float(result.total_price)


def openai_chat_wire_cost(model: str, wire: dict[str, Any]) -> float:
    """Cost of an OpenAI chat/completions usage object as sent on the wire."""
    details = wire.get("prompt_tokens_details") or {}
    out_details = wire.get("completion_tokens_details") or {}
    return genai_cost(
        "openai",
        model,
        input_tokens=wire["prompt_tokens"],
        cache_read_tokens=details.get("cached_tokens") or 0,
        output_tokens=wire.get("completion_tokens", 0),
        output_reasoning_tokens=out_details.get("reasoning_tokens") or 0,
    )


def openai_responses_wire_cost(model: str, wire: dict[str, Any]) -> float:
    details = wire.get("input_tokens_details") or {}
    out_details = wire.get("output_tokens_details") or {}
    return genai_cost(
        "openai",
        model,
        input_tokens=wire["input_tokens"],
        cache_read_tokens=details.get("cached_tokens") or 0,
        output_tokens=wire["output_tokens"],
        output_reasoning_tokens=out_details.get("reasoning_tokens") or 0,
    )


def close_to(a: float, b: float, rel: float = 1e-9) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)
