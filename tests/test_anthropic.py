"""The real anthropic SDK over loopback HTTP against a fake server speaking Anthropic's SSE.

Expected numbers come from the usage the server sent and from genai-prices.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

import otel_llm_cost
from otel_llm_cost.fakes.anthropic_server import AnthropicScript, FakeAnthropicServer

from .conftest import Telemetry
from .expected import close_to, genai_cost
from .sdk_compat import accepts, anthropic_count_tokens, skip_unless

MODEL = "claude-sonnet-4-5-20250929"
MESSAGES = [{"role": "user", "content": "What does this cost?"}]
KW: dict[str, Any] = {"model": MODEL, "max_tokens": 256, "messages": MESSAGES}


@pytest.fixture
def server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as fake:
        yield fake


@pytest.fixture
def client(server: FakeAnthropicServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key="sk-ant-secret", max_retries=0)


@pytest.fixture
def aclient(server: FakeAnthropicServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=server.base_url, api_key="sk-ant-secret", max_retries=0
    )


def wire_partition(wire: dict[str, Any]) -> dict[str, int]:
    parts = {
        "input": wire.get("input_tokens") or 0,
        "cache_read": wire.get("cache_read_input_tokens") or 0,
        "cache_write": wire.get("cache_creation_input_tokens") or 0,
        "output": wire.get("output_tokens") or 0,
    }
    return {k: v for k, v in parts.items() if v}


def wire_cost(wire: dict[str, Any], model: str = MODEL) -> float:
    read = wire.get("cache_read_input_tokens") or 0
    write = wire.get("cache_creation_input_tokens") or 0
    return genai_cost(
        "anthropic",
        model,
        input_tokens=(wire.get("input_tokens") or 0) + read + write,
        cache_read_tokens=read,
        cache_write_tokens=write,
        output_tokens=wire.get("output_tokens") or 0,
    )


def check(telemetry: Telemetry, server: FakeAnthropicServer, calls: int = 1) -> None:
    """Every exchange recorded once, with the wire's partition and genai-prices' cost."""
    assert len(server.exchanges) == calls
    expected_tokens: dict[str, int] = {}
    expected_cost = 0.0
    for exchange in server.exchanges:
        assert exchange.usage is not None
        for k, v in wire_partition(exchange.usage).items():
            expected_tokens[k] = expected_tokens.get(k, 0) + v
        expected_cost += wire_cost(exchange.usage)
    assert telemetry.tokens() == expected_tokens
    assert close_to(telemetry.total("llm.cost"), expected_cost)
    assert sum(p.value for p in telemetry.requests()) == calls
    spans = telemetry.spans
    assert len(spans) == calls, [s.name for s in spans]
    for span in spans:
        assert span.name == f"chat {MODEL}"
        assert span.instrumentation_scope.name == "otel_llm_cost"
        assert span.attributes["gen_ai.provider.name"] == "anthropic"
    for point in telemetry.requests():
        assert point.attributes["llm.usage.source"] == "provider"


CACHE = {"input_tokens": 21, "output_tokens": 180, "cache_read_input_tokens": 1163,
         "cache_creation_input_tokens": 1165}  # fmt: skip


def test_create_with_cache_tokens(
    telemetry: Telemetry, server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    server.enqueue(AnthropicScript(**CACHE))
    message = client.messages.create(**KW)
    assert message.usage.cache_read_input_tokens == 1163
    check(telemetry, server)
    assert telemetry.tokens() == {
        "input": 21,
        "cache_read": 1163,
        "cache_write": 1165,
        "output": 180,
    }
    span = telemetry.spans[0].attributes
    assert span["gen_ai.usage.input_tokens"] == 21 + 1163 + 1165
    assert span["gen_ai.response.finish_reasons"] == ("end_turn",)


def test_create_stream_with_cache_tokens(
    telemetry: Telemetry, server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    server.enqueue(AnthropicScript(**CACHE, chunks=6))
    events = [e.type for e in client.messages.create(**KW, stream=True)]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    check(telemetry, server)
    assert telemetry.tokens()["cache_write"] == 1165


def test_message_delta_usage_is_cumulative_not_added(
    telemetry: Telemetry, server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    server.enqueue(AnthropicScript(**CACHE, usage_in_message_delta=True))
    list(client.messages.create(**KW, stream=True))
    check(telemetry, server)


def test_stream_helper_get_final_message(
    telemetry: Telemetry, server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    with client.messages.stream(**KW) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens > 0
    check(telemetry, server)


def test_stream_helper_text_stream_and_until_done(
    telemetry: Telemetry, server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    with client.messages.stream(**KW) as stream:
        text = "".join(stream.text_stream)
    assert text
    with client.messages.stream(**KW) as stream:
        stream.until_done()
    check(telemetry, server, calls=2)


def test_thinking_stream(
    telemetry: Telemetry, server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    skip_unless(accepts(client.messages.stream, "thinking"), "anthropic", "extended thinking")
    server.enqueue(AnthropicScript(thinking_text="Let me think about it.", output_tokens=216))
    with client.messages.stream(**KW, thinking={"type": "enabled", "budget_tokens": 1024}) as s:
        kinds = {e.type for e in s}
    assert "thinking" in kinds
    check(telemetry, server)
    # The API reports no thinking split here: all generated tokens are output.
    assert telemetry.tokens()["output"] == 216


def test_beta_namespace(
    telemetry: Telemetry, server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    skip_unless(hasattr(client.beta.messages, "stream"), "anthropic", "beta.messages.stream()")
    client.beta.messages.create(**KW)
    with client.beta.messages.stream(**KW) as stream:
        stream.get_final_message()
    check(telemetry, server, calls=2)


async def test_async_create_stream_and_helper(
    telemetry: Telemetry, server: FakeAnthropicServer, aclient: anthropic.AsyncAnthropic
) -> None:
    await aclient.messages.create(**KW)
    stream = await aclient.messages.create(**KW, stream=True)
    async for _ in stream:
        pass
    async with aclient.messages.stream(**KW) as helper:
        async for _ in helper.text_stream:
            pass
    calls = 3
    if hasattr(aclient.beta.messages, "stream"):  # not in the oldest releases
        async with aclient.beta.messages.stream(**KW) as helper:
            await helper.get_final_message()
        calls += 1
    check(telemetry, server, calls=calls)


def test_count_tokens_is_not_a_generation(
    telemetry: Telemetry, server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    result = anthropic_count_tokens(client)(model=MODEL, messages=MESSAGES)
    assert result.input_tokens > 0
    assert telemetry.requests() == []
    assert telemetry.spans == []


def test_sdk_span_is_replaced_by_ours(server: FakeAnthropicServer) -> None:
    """The SDK traces each call itself; with us active there is one span per call, ours."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from otel_llm_cost.config import Settings
    from otel_llm_cost.recorder import Recorder

    skip_unless(
        accepts(anthropic.Anthropic.__init__, "open_telemetry"), "anthropic", "OpenTelemetry spans"
    )
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = anthropic.Anthropic(
        base_url=server.base_url,
        api_key="k",
        max_retries=0,
        open_telemetry={"tracer_provider": tracer_provider},
    )
    client.messages.create(**KW)
    sdk_scopes = {s.instrumentation_scope.name for s in exporter.get_finished_spans()}
    assert sdk_scopes and "otel_llm_cost" not in sdk_scopes  # the SDK's own span
    exporter.clear()

    recorder = Recorder(Settings(), tracer_provider=tracer_provider, meter_provider=MeterProvider())
    otel_llm_cost.instrument(recorder=recorder)
    try:
        client.messages.create(**KW)
        with client.messages.stream(**KW) as stream:
            stream.until_done()
    finally:
        otel_llm_cost.uninstrument()
    scopes = [s.instrumentation_scope.name for s in exporter.get_finished_spans()]
    assert scopes == ["otel_llm_cost", "otel_llm_cost"]

    exporter.clear()
    client.messages.create(**KW)  # uninstrumented again: the SDK's span is back
    assert [s.instrumentation_scope.name for s in exporter.get_finished_spans()] != []
    assert "otel_llm_cost" not in {
        s.instrumentation_scope.name for s in exporter.get_finished_spans()
    }


def test_early_break_and_gc_finalize_once(
    telemetry: Telemetry, server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    server.enqueue(AnthropicScript(chunks=30, input_tokens=40))
    stream = client.messages.create(**KW, stream=True)
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    stream2 = client.messages.create(**KW, stream=True)
    next(iter(stream2))
    del stream2
    gc.collect()
    requests = telemetry.requests()
    assert sum(p.value for p in requests) == 2
    assert {p.attributes["llm.usage.source"] for p in requests} == {"estimated"}
    assert all("error.type" not in p.attributes for p in requests)
    # message_start's input count is real: only output is estimated.
    assert telemetry.tokens()["input"] >= 40


def test_long_stream_cut_before_usage_estimates_output_from_its_text(
    telemetry: Telemetry, server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    # 200 deltas of 4 characters, cut after the last one, before message_delta's usage: more
    # deltas than the accumulator keeps to measure, so the rest count at the kept average.
    text = "abcd" * 200
    server.enqueue(AnthropicScript(text=text, chunks=200, cut_after=3 + 200))
    seen = 0
    with pytest.raises((anthropic.APIConnectionError, httpx_cut_error())):
        for event in client.messages.create(**KW, stream=True):
            seen += event.type == "content_block_delta"
    assert seen == 200
    (request,) = telemetry.requests()
    assert request.attributes["llm.usage.source"] == "estimated"
    assert telemetry.tokens()["output"] == len(text) // 4


def httpx_cut_error() -> type[BaseException]:
    """What older anthropic releases let through for a cut stream body (httpx or httpx2)."""
    from .sdk_compat import http_library

    return http_library("anthropic").RemoteProtocolError  # type: ignore[no-any-return]


def test_error_event_mid_stream_is_a_failure_with_tokens(
    telemetry: Telemetry, server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    server.enqueue(AnthropicScript(chunks=10, error_event_after=5))
    with pytest.raises(anthropic.APIStatusError):
        for _ in client.messages.create(**KW, stream=True):
            pass
    (request,) = telemetry.requests()
    assert request.attributes["error.type"]
    assert request.attributes["llm.usage.source"] == "estimated"
    assert telemetry.tokens().get("input", 0) > 0


def test_rate_limit(
    telemetry: Telemetry, server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    server.enqueue(AnthropicScript(status=429))
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(**KW)
    (request,) = telemetry.requests()
    assert request.attributes["error.type"] == "429"
    assert request.attributes["llm.usage.source"] == "none"


def test_raw_response(
    telemetry: Telemetry, server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    raw = client.messages.with_raw_response.create(**KW)
    assert raw.parse().usage.output_tokens > 0
    check(telemetry, server)


def test_one_hour_cache_writes_priced_at_their_own_rate(
    telemetry: Telemetry, server: FakeAnthropicServer, client: anthropic.Anthropic
) -> None:
    server.enqueue(
        AnthropicScript(
            input_tokens=100,
            output_tokens=50,
            cache_creation_input_tokens=1000,
            cache_creation_1h_input_tokens=400,
        )
    )
    list(client.messages.create(**KW, stream=True))
    expected = genai_cost(
        "anthropic",
        MODEL,
        input_tokens=1100,
        cache_write_tokens=1000,
        cache_write_1h_tokens=400,
        output_tokens=50,
    )
    assert close_to(telemetry.total("llm.cost"), expected)
    assert telemetry.tokens() == {"input": 100, "cache_write": 1000, "output": 50}
    # and it is not the 5-minute price for all 1000
    assert not close_to(expected, wire_cost(server.exchanges[0].usage))
