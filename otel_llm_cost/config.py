"""Settings read from the environment (names fixed by the telemetry contract)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

ENV_PRICES_FILE = "OTEL_LLM_COST_PRICES_FILE"
ENV_METRIC_ATTRIBUTES = "OTEL_LLM_COST_METRIC_ATTRIBUTES"
ENV_STREAM_USAGE = "OTEL_LLM_COST_STREAM_USAGE"
ENV_ESTIMATE_TOKENS = "OTEL_LLM_COST_ESTIMATE_TOKENS"
ENV_CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

_FALSE = {"false", "0", "no", "off"}
_TRUE = {"true", "1", "yes", "on"}


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return default


def _csv(name: str) -> frozenset[str]:
    raw = os.environ.get(name) or ""
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """What the instrumentation does; defaults follow the contract."""

    prices_file: str | None = None
    metric_attributes: frozenset[str] = field(default_factory=frozenset)
    stream_usage: bool = True
    estimate_tokens: bool = True
    capture_content: bool = False

    @classmethod
    def from_env(cls) -> Settings:
        """Read every ``OTEL_LLM_COST_*`` variable (and the GenAI content-capture flag)."""
        return cls(
            prices_file=os.environ.get(ENV_PRICES_FILE) or None,
            metric_attributes=_csv(ENV_METRIC_ATTRIBUTES),
            stream_usage=_flag(ENV_STREAM_USAGE, True),
            estimate_tokens=_flag(ENV_ESTIMATE_TOKENS, True),
            capture_content=_flag(ENV_CAPTURE_CONTENT, False),
        )
