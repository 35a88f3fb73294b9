"""otel-llm-cost: what every LLM call costs, as OpenTelemetry spans and metrics.

>>> import otel_llm_cost
>>> otel_llm_cost.instrument()          # every installed provider SDK
>>> with otel_llm_cost.usage_context(agent="support-bot", user="u-42"):
...     client.chat.completions.create(...)
"""

from __future__ import annotations

from typing import Any

from .attribution import current_attribution, usage_context
from .version import __version__

__all__ = [
    "__version__",
    "current_attribution",
    "instrument",
    "instrumentors",
    "uninstrument",
    "usage_context",
]


def instrumentors() -> list[Any]:
    """The instrumentor of every provider SDK this package supports (installed or not)."""
    from .providers.anthropic import AnthropicInstrumentor
    from .providers.google_genai import GoogleGenAIInstrumentor
    from .providers.google_generativeai import GoogleGenerativeAIInstrumentor
    from .providers.openai import OpenAIInstrumentor

    return [
        OpenAIInstrumentor(),
        AnthropicInstrumentor(),
        GoogleGenAIInstrumentor(),
        GoogleGenerativeAIInstrumentor(),
    ]


def instrument(**options: Any) -> None:
    """Instrument every supported provider SDK that is installed.

    ``options`` go to each instrumentor (``tracer_provider``, ``meter_provider``). SDKs that
    are not installed are skipped silently; an installed SDK of an unsupported version is
    skipped with one warning.
    """
    from .instrumentor import shared_recorder

    if "recorder" not in options:
        options["recorder"] = shared_recorder(
            options.get("tracer_provider"), options.get("meter_provider")
        )
    for instrumentor in instrumentors():
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(skip_dep_check=True, **options)


def uninstrument() -> None:
    """Restore every SDK method this package wrapped."""
    for instrumentor in instrumentors():
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
