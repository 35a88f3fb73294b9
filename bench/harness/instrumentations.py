"""What a measured child process runs before its calls: nothing (the baseline), our
instrumentation, or a peer's, each set up as its documentation says for "instrument the openai
SDK, record spans and metrics, capture no message content, reach no network".

Every mode runs after the same OpenTelemetry SDK set-up (global TracerProvider with
SimpleSpanProcessor(InMemorySpanExporter), global MeterProvider with InMemoryMetricReader); the
peers are handed those global providers (they take them by default). ``env`` is added to the
child's environment (the parent removes every other ``OTEL_*`` variable).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mode:
    name: str
    label: str
    #: Imports what the mode needs (timed as "import") and returns a callable that instruments
    #: (timed as "instrument()"). None for the baseline.
    load: Callable[[], Callable[[], None]] | None
    #: Instrumentation scope name(s) of the spans this mode records (checked).
    scopes: frozenset[str] = frozenset()
    #: Added to the child's environment.
    env: dict[str, str] = field(default_factory=dict)
    #: Ours: its spans must carry the expected usage and cost attributes.
    ours: bool = False
    #: The distribution(s) whose version the report states.
    distributions: tuple[str, ...] = ()
    #: How it is set up, for the report.
    setup: str = ""


def _ours() -> Callable[[], None]:
    import otel_llm_cost

    return otel_llm_cost.instrument


def _openai_v2() -> Callable[[], None]:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    return OpenAIInstrumentor().instrument


def _genai_openai() -> Callable[[], None]:
    from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor

    return OpenAIInstrumentor().instrument


def _openllmetry() -> Callable[[], None]:
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    return OpenAIInstrumentor().instrument


#: OpenLIT's pricing file (per 1K tokens, its own format): only the model the benchmark calls,
#: at the catalog's o4-mini rates, so that OpenLIT computes a cost without fetching its
#: pricing JSON from the internet.
OPENLIT_PRICING = {
    "chat": {
        name: {"promptPrice": 0.0011, "completionPrice": 0.0044}
        for name in ("o4-mini", "o4-mini-2025-04-16")
    }
}


def _openlit() -> Callable[[], None]:
    import openlit
    from openlit._instrumentors import MODULE_NAME_MAP

    pricing = os.path.join(tempfile.mkdtemp(prefix="bench-openlit-"), "pricing.json")
    with open(pricing, "w") as out:
        json.dump(OPENLIT_PRICING, out)

    def instrument() -> None:
        openlit.init(
            capture_message_content=False,
            disable_events=True,
            pricing_json=pricing,
            # instrument openai only (by default it also instruments every HTTP client and
            # framework it finds: httpx, requests, urllib3, ...)
            disabled_instrumentors=[name for name in MODULE_NAME_MAP if name != "openai"],
            collect_gpu_stats=False,
            collect_system_metrics=False,
        )

    return instrument


BASE = Mode("base", "baseline (no instrumentation)", None)
OURS = Mode(
    "ours",
    "otel-llm-cost",
    _ours,
    scopes=frozenset({"otel_llm_cost"}),
    ours=True,
    distributions=("otel-llm-cost",),
    setup="otel_llm_cost.instrument()",
)
OURS_NO_STREAM_USAGE = Mode(
    "ours_no_stream_usage",
    "otel-llm-cost, OTEL_LLM_COST_STREAM_USAGE=false",
    _ours,
    scopes=frozenset({"otel_llm_cost"}),
    env={"OTEL_LLM_COST_STREAM_USAGE": "false"},
    distributions=("otel-llm-cost",),
    setup="otel_llm_cost.instrument() with OTEL_LLM_COST_STREAM_USAGE=false (streams are not "
    "asked for usage: same stream as the baseline, tokens estimated)",
)
PEERS = (
    Mode(
        "openai_v2",
        "opentelemetry-instrumentation-openai-v2",
        _openai_v2,
        # its spans come from opentelemetry-util-genai's handler
        scopes=frozenset({"opentelemetry.util.genai.handler"}),
        distributions=("opentelemetry-instrumentation-openai-v2", "opentelemetry-util-genai"),
        setup="opentelemetry.instrumentation.openai_v2.OpenAIInstrumentor().instrument(); "
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT left unset (no content is its "
        "default; its own code reads the variable as true/false, opentelemetry-util-genai as "
        "NO_CONTENT/SPAN_ONLY/..., so any explicit value makes one of them warn); "
        "OTEL_SEMCONV_STABILITY_OPT_IN unset (its default semantic conventions)",
    ),
    Mode(
        "genai_openai",
        "opentelemetry-instrumentation-genai-openai",
        _genai_openai,
        scopes=frozenset({"opentelemetry.instrumentation.genai.openai"}),
        env={"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "no_content"},
        distributions=("opentelemetry-instrumentation-genai-openai", "opentelemetry-util-genai"),
        setup="opentelemetry.instrumentation.genai.openai.OpenAIInstrumentor().instrument(); "
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=no_content (its default)",
    ),
    Mode(
        "openllmetry",
        "OpenLLMetry (opentelemetry-instrumentation-openai)",
        _openllmetry,
        scopes=frozenset({"opentelemetry.instrumentation.openai.v1"}),
        env={"TRACELOOP_TRACE_CONTENT": "false", "TRACELOOP_METRICS_ENABLED": "true"},
        distributions=("opentelemetry-instrumentation-openai",),
        setup="opentelemetry.instrumentation.openai.OpenAIInstrumentor().instrument(); "
        "TRACELOOP_TRACE_CONTENT=false, TRACELOOP_METRICS_ENABLED=true (its default)",
    ),
    Mode(
        "openlit",
        "OpenLIT",
        _openlit,
        scopes=frozenset({"openlit.instrumentation.openai"}),
        env={"OTEL_LOGS_EXPORTER": "none"},
        distributions=("openlit",),
        setup="openlit.init(capture_message_content=False, disable_events=True, "
        "pricing_json=<a local file with the o4-mini rates>, disabled_instrumentors=[every "
        "instrumentor but openai], collect_gpu_stats=False, collect_system_metrics=False); "
        "OTEL_LOGS_EXPORTER=none. It reuses the global tracer and meter providers (so no OTLP "
        "or console exporter is added) and, given pricing_json, fetches nothing",
    ),
)

MODES = {mode.name: mode for mode in (BASE, OURS, OURS_NO_STREAM_USAGE, *PEERS)}


def get(name: str) -> Mode:
    return MODES[name]
