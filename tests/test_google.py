"""The real Google SDKs (google-genai and the legacy google-generativeai) over loopback, REST,
SSE and gRPC, against a fake server speaking Gemini's wire formats.

Expected numbers come from the usage the server sent and from genai-prices.
"""

from __future__ import annotations

import gc
from typing import Any

import google.generativeai as legacy_genai
import pytest
from google import genai

from otel_llm_cost.fakes.gemini_server import FakeGeminiServer, GeminiScript

from .conftest import Telemetry
from .expected import close_to, genai_cost
from .test_fake_gemini_server import (  # noqa: F401 - fixtures
    _close_legacy_async_clients,
    _configure_legacy_grpc,
    _configure_legacy_rest,
    gemini,
    grpc_server,
    legacy,
    server,
    vertex,
)

MODEL = "gemini-2.5-flash"


def wire_counts(usage: dict[str, Any]) -> dict[str, int]:
    """The partition read by hand from a usageMetadata as sent (camelCase or snake_case)."""

    def get(*names: str) -> int:
        for name in names:
            if usage.get(name):
                return int(usage[name])
        return 0

    prompt = get("promptTokenCount", "prompt_token_count")
    cached = get("cachedContentTokenCount", "cached_content_token_count")
    tool = get("toolUsePromptTokenCount", "tool_use_prompt_token_count")
    candidates = get("candidatesTokenCount", "candidates_token_count")
    thoughts = get("thoughtsTokenCount", "thoughts_token_count")
    total = get("totalTokenCount", "total_token_count")
    if not thoughts:
        thoughts = max(0, total - prompt - tool - candidates)
    parts = {
        "input": prompt + tool - cached,
        "cache_read": cached,
        "output": candidates,
        "reasoning": thoughts,
    }
    return {k: v for k, v in parts.items() if v}


def check(telemetry: Telemetry, server: FakeGeminiServer, provider: str, calls: int = 1) -> None:
    assert len(server.exchanges) == calls
    tokens: dict[str, int] = {}
    cost = 0.0
    for exchange in server.exchanges:
        assert exchange.usage, exchange
        parts = wire_counts(exchange.usage)
        for k, v in parts.items():
            tokens[k] = tokens.get(k, 0) + v
        cost += genai_cost(
            "google",
            MODEL,
            input_tokens=parts.get("input", 0) + parts.get("cache_read", 0),
            cache_read_tokens=parts.get("cache_read", 0),
            output_tokens=parts.get("output", 0) + parts.get("reasoning", 0),
        )
    assert telemetry.tokens() == tokens
    assert close_to(telemetry.total("llm.cost"), cost)
    requests = telemetry.requests()
    assert sum(p.value for p in requests) == calls
    for point in requests:
        assert point.attributes["gen_ai.provider.name"] == provider
        assert point.attributes["gen_ai.operation.name"] == "generate_content"
        assert point.attributes["gen_ai.request.model"] == MODEL
        assert point.attributes["llm.usage.source"] == "provider"
    assert len(telemetry.spans) == calls
    assert all(s.name == f"generate_content {MODEL}" for s in telemetry.spans)


THINKING = {
    "prompt_tokens": 120,
    "cached_tokens": 64,
    "candidates_tokens": 40,
    "thoughts_tokens": 300,
}


# -- google-genai ------------------------------------------------------------------------------


def test_genai_generate_content_with_thoughts_and_cache(
    telemetry: Telemetry, server: FakeGeminiServer, gemini: genai.Client
) -> None:
    server.enqueue(GeminiScript(**THINKING))
    gemini.models.generate_content(model=MODEL, contents="Think hard.")
    check(telemetry, server, "gcp.gemini")
    assert telemetry.tokens() == {"input": 56, "cache_read": 64, "output": 40, "reasoning": 300}


def test_genai_stream_takes_the_last_running_total(
    telemetry: Telemetry, server: FakeGeminiServer, gemini: genai.Client
) -> None:
    server.enqueue(GeminiScript(**THINKING, chunks=5))
    chunks = list(gemini.models.generate_content_stream(model=MODEL, contents="hi"))
    assert len(chunks) == 5
    check(telemetry, server, "gcp.gemini")
    assert len(telemetry.points("gen_ai.client.operation.time_to_first_chunk")) == 1


def test_genai_vertex_backend(
    telemetry: Telemetry, server: FakeGeminiServer, vertex: genai.Client
) -> None:
    vertex.models.generate_content(model=MODEL, contents="hi")
    list(vertex.models.generate_content_stream(model=MODEL, contents="hi"))
    check(telemetry, server, "gcp.vertex_ai", calls=2)


def test_genai_chat_counts_each_turn_once(
    telemetry: Telemetry, server: FakeGeminiServer, gemini: genai.Client
) -> None:
    chat = gemini.chats.create(model=MODEL)
    chat.send_message("one")
    for _ in chat.send_message_stream("two"):
        pass
    check(telemetry, server, "gcp.gemini", calls=2)


async def test_genai_async(
    telemetry: Telemetry, server: FakeGeminiServer, gemini: genai.Client
) -> None:
    await gemini.aio.models.generate_content(model=MODEL, contents="hi")
    async for _ in await gemini.aio.models.generate_content_stream(model=MODEL, contents="hi"):
        pass
    chat = gemini.aio.chats.create(model=MODEL)
    await chat.send_message("hi")
    check(telemetry, server, "gcp.gemini", calls=3)


def test_genai_stream_without_usage_is_estimated_not_free(
    telemetry: Telemetry, server: FakeGeminiServer, gemini: genai.Client
) -> None:
    """The failure this project exists to end: a streamed call with no usage recorded at $0."""
    server.enqueue(GeminiScript(omit_usage=True, text="word " * 40, chunks=8))
    list(gemini.models.generate_content_stream(model=MODEL, contents="Write forty words."))
    (request,) = telemetry.requests()
    assert request.attributes["llm.usage.source"] == "estimated"
    assert telemetry.tokens()["output"] > 0
    assert telemetry.total("llm.cost") > 0


def test_genai_early_break_and_abandon(
    telemetry: Telemetry, server: FakeGeminiServer, gemini: genai.Client
) -> None:
    server.enqueue(GeminiScript(chunks=10), GeminiScript(chunks=10))
    for i, _ in enumerate(gemini.models.generate_content_stream(model=MODEL, contents="hi")):
        if i == 2:
            break
    stream = gemini.models.generate_content_stream(model=MODEL, contents="hi")
    next(iter(stream))
    del stream
    gc.collect()
    requests = telemetry.requests()
    assert sum(p.value for p in requests) == 2
    assert all("error.type" not in p.attributes for p in requests)


def test_genai_rate_limit(
    telemetry: Telemetry, server: FakeGeminiServer, gemini: genai.Client
) -> None:
    server.enqueue(GeminiScript(status=429))
    with pytest.raises(genai.errors.ClientError):
        gemini.models.generate_content(model=MODEL, contents="hi")
    (request,) = telemetry.requests()
    assert request.attributes["error.type"] == "429"
    assert request.attributes["llm.usage.source"] == "none"


def test_genai_stream_cut_mid_way(
    telemetry: Telemetry, server: FakeGeminiServer, gemini: genai.Client
) -> None:
    server.enqueue(GeminiScript(chunks=10, cut_after=3))
    with pytest.raises(Exception):  # noqa: B017 - the SDK lets the transport's error through
        for _ in gemini.models.generate_content_stream(model=MODEL, contents="hi"):
            pass
    (request,) = telemetry.requests()
    assert request.attributes["error.type"]
    assert sum(telemetry.tokens().values()) > 0  # the running total (or an estimate) is kept


# -- legacy google-generativeai -------------------------------------------------------------


def test_legacy_rest_generate_content_and_stream(
    telemetry: Telemetry, server: FakeGeminiServer, legacy: Any
) -> None:
    _configure_legacy_rest(legacy, server)
    model = legacy_genai.GenerativeModel(f"models/{MODEL}")
    server.enqueue(GeminiScript(**THINKING), GeminiScript(**THINKING, chunks=4))
    model.generate_content("hi")
    response = model.generate_content("hi", stream=True)
    response.resolve()  # consumed without the caller iterating
    check(telemetry, server, "gcp.gemini", calls=2)
    # the legacy proto has no thoughts field: reasoning comes from the total
    assert telemetry.tokens()["reasoning"] == 600


def test_legacy_chat_session_counts_each_turn_once(
    telemetry: Telemetry, server: FakeGeminiServer, legacy: Any
) -> None:
    _configure_legacy_rest(legacy, server)
    chat = legacy_genai.GenerativeModel(MODEL).start_chat()
    chat.send_message("one")
    for _ in chat.send_message("two", stream=True):
        pass
    check(telemetry, server, "gcp.gemini", calls=2)


def test_legacy_grpc(telemetry: Telemetry, grpc_server: FakeGeminiServer, legacy: Any) -> None:
    _configure_legacy_grpc(legacy, grpc_server)
    model = legacy_genai.GenerativeModel(MODEL)
    grpc_server.enqueue(GeminiScript(**THINKING), GeminiScript(**THINKING, chunks=4))
    model.generate_content("hi")
    for _ in model.generate_content("hi", stream=True):
        pass
    check(telemetry, grpc_server, "gcp.gemini", calls=2)


async def test_legacy_grpc_async(
    telemetry: Telemetry, grpc_server: FakeGeminiServer, legacy: Any
) -> None:
    _configure_legacy_grpc(legacy, grpc_server)
    try:
        model = legacy_genai.GenerativeModel(MODEL)
        await model.generate_content_async("hi")
        response = await model.generate_content_async("hi", stream=True)
        async for _ in response:
            pass
    finally:
        await _close_legacy_async_clients()
    check(telemetry, grpc_server, "gcp.gemini", calls=2)
