"""``otel-llm-cost demo``: an instrumented workload against a built-in fake OpenAI server.

No API key and no network: the fake server listens on 127.0.0.1, the metrics are exposed by
the in-process Prometheus exporter, and the summary printed at the end is read back from that
same ``/metrics`` endpoint, the way Prometheus would see it.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from collections import defaultdict

from .fakes.openai_server import FakeOpenAIServer, Script

_TOKEN_TYPES = ("input", "cache_read", "cache_write", "output", "reasoning")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _workload(base_url: str, server: FakeOpenAIServer) -> None:
    import openai

    from . import usage_context

    client = openai.OpenAI(base_url=base_url, api_key="demo-key-not-a-secret", max_retries=0)
    messages = [{"role": "user", "content": "Summarise our refund policy in one sentence."}]

    with usage_context(agent="support-bot", feature="faq", user="user-17"):
        server.enqueue(Script(prompt_tokens=1800, cached_tokens=1536, completion_tokens=120))
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        for _chunk in client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True
        ):
            pass
    with usage_context(agent="research-agent", feature="deep-dive"):
        server.enqueue(Script(prompt_tokens=900, completion_tokens=2400, reasoning_tokens=1900))
        client.responses.create(model="gpt-5", input="Plan the quarterly report.")
        with client.responses.stream(model="gpt-4.1", input="Draft the intro.") as stream:
            for _ in stream:
                pass
    with usage_context(agent="indexer", feature="search"):
        client.embeddings.create(model="text-embedding-3-small", input=["refunds", "shipping"])
    with usage_context(agent="support-bot", feature="faq"):
        server.enqueue(Script(status=429))
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        except openai.RateLimitError:
            pass
        client.chat.completions.create(model="my-finetune-v3", messages=messages)  # not in catalog
        stream = client.chat.completions.create(model="gpt-4o", messages=messages, stream=True)
        next(iter(stream))
        stream.close()  # broken off early: tokens estimated


def _other_providers() -> int:
    """A few Claude and Gemini calls against their fake servers; returns the exchanges made."""
    import anthropic
    from google import genai
    from google.genai import types

    from . import usage_context
    from .fakes.anthropic_server import AnthropicScript, FakeAnthropicServer
    from .fakes.gemini_server import FakeGeminiServer, GeminiScript

    made = 0
    with FakeAnthropicServer() as server, usage_context(agent="support-bot", feature="triage"):
        client = anthropic.Anthropic(base_url=server.base_url, api_key="demo", max_retries=0)
        server.enqueue(
            AnthropicScript(
                input_tokens=40, cache_read_input_tokens=3000, cache_creation_input_tokens=1200
            )
        )
        kw = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 300,
            "messages": [{"role": "user", "content": "Triage this ticket."}],
        }
        client.messages.create(**kw)
        with client.messages.stream(**kw) as stream:
            stream.until_done()
        made += len(server.exchanges)
    with FakeGeminiServer() as server, usage_context(agent="research-agent", feature="deep-dive"):
        gclient = genai.Client(
            api_key="demo", http_options=types.HttpOptions(base_url=server.base_url)
        )
        server.enqueue(GeminiScript(prompt_tokens=2000, candidates_tokens=300, thoughts_tokens=900))
        gclient.models.generate_content(model="gemini-2.5-flash", contents="Compare the options.")
        server.enqueue(GeminiScript(omit_usage=True, text="no usage reported " * 10))
        for _ in gclient.models.generate_content_stream(model="gemini-2.5-flash", contents="Go."):
            pass
        made += len(server.exchanges)
    return made


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def _summary(text: str) -> str:
    from prometheus_client.parser import text_string_to_metric_families

    cost: dict[str, float] = defaultdict(float)
    tokens: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    requests: dict[str, float] = defaultdict(float)
    unpriced: dict[str, float] = defaultdict(float)
    outcomes: dict[str, float] = defaultdict(float)
    by_agent: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            model = labels.get("gen_ai_request_model", "?")
            if sample.name == "llm_cost_USD_total":
                cost[model] += sample.value
                by_agent[labels.get("gen_ai_agent_name", "(none)")] += sample.value
            elif sample.name == "llm_tokens_total":
                tokens[model][labels.get("llm_token_type", "?")] += sample.value
            elif sample.name == "llm_requests_total":
                requests[model] += sample.value
                if labels.get("llm_price_status") == "unpriced":
                    unpriced[model] += sample.value
                key = (
                    f"error {labels['error_type']}"
                    if labels.get("error_type")
                    else f"{labels.get('llm_usage_source')}/{labels.get('llm_price_status')}"
                )
                outcomes[key] += sample.value
    lines = []
    header = f"{'model':<28}{'requests':>9}" + "".join(f"{t:>12}" for t in _TOKEN_TYPES)
    lines.append(header + f"{'cost USD':>14}")
    lines.append("-" * len(lines[0]))
    for model in sorted(requests):
        row = f"{model:<28}{requests[model]:>9.0f}"
        row += "".join(f"{tokens[model].get(t, 0):>12.0f}" for t in _TOKEN_TYPES)
        if model not in cost and unpriced.get(model):
            lines.append(row + f"{'unpriced':>14}")  # tokens counted, no price: not $0
        else:
            lines.append(row + f"{cost.get(model, 0.0):>14.8f}")
    lines.append("-" * len(lines[0]))
    lines.append(
        f"{'total':<28}{sum(requests.values()):>9.0f}" + " " * 60 + f"{sum(cost.values()):>14.8f}"
    )
    if unpriced:
        lines.append(
            "unpriced (tokens counted, cost not; add to OTEL_LLM_COST_PRICES_FILE): "
            + ", ".join(
                f"{m} ({n:.0f} request{'s' if n != 1 else ''})" for m, n in sorted(unpriced.items())
            )
        )
    lines.append("")
    lines.append(
        "cost by agent: " + ", ".join(f"{a} ${c:.8f}" for a, c in sorted(by_agent.items()))
    )
    lines.append(
        "requests by outcome: " + ", ".join(f"{k}: {v:.0f}" for k, v in sorted(outcomes.items()))
    )
    return "\n".join(lines)


def run_demo(port: int = 0, keep_running: bool = False) -> int:
    """Run the demo; print the scraped series and a summary. Returns an exit code."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import start_http_server

    from . import instrument, uninstrument
    from .instrumentor import shared_recorder

    port = port or _free_port()
    start_http_server(port, addr="127.0.0.1")
    resource = Resource.create({"service.name": "otel-llm-cost-demo"})
    meter_provider = MeterProvider(resource=resource, metric_readers=[PrometheusMetricReader()])
    tracer_provider = TracerProvider(resource=resource)
    recorder = shared_recorder(tracer_provider, meter_provider)
    instrument(recorder=recorder)
    try:
        with FakeOpenAIServer() as server:
            print(f"fake OpenAI server: {server.base_url}")
            _workload(server.base_url, server)
            sent = len(server.exchanges)
        sent += _other_providers()
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        text = _scrape(metrics_url)
    finally:
        uninstrument()
    print(f"workload: {sent} HTTP exchanges; metrics at {metrics_url}\n")
    print("series (excerpt):")
    shown = [line for line in text.splitlines() if line.startswith("llm_cost_USD_total")]
    for line in shown[:4]:
        print("  " + line)
    print(f"  ... {len(text.splitlines())} lines in all")
    print("\n" + _summary(text))
    if keep_running:
        print(f"\nserving {metrics_url} until Ctrl-C")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    meter_provider.shutdown()
    return 0
